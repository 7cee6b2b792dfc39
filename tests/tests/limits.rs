//! Per-client limits against real processes: a client limited to 50/s
//! hammering three nodes that share a real `redis-server` gets 50 ± 5
//! accepted per second cluster-wide over 10 s, the rest 429 with
//! `Retry-After`, while an unlimited client alongside is unaffected and
//! costs no Redis command; a client with `max_streams = 3` gets three SSE
//! streams and two 429s, and closing one frees a slot on another node; with
//! Redis frozen the limiter fails open or closed as configured; and on the
//! memory backend the same limits hold in one process.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use rhizome_tests::harness::cli::refuses;
use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::{Client, Resp};
use rhizome_tests::harness::metrics;
use rhizome_tests::harness::redis::RedisServer;
use rhizome_tests::harness::secrets::CLIENT_KEY;
use rhizome_tests::harness::{wait_for, Env, Mock, Node};
use serde_json::json;

const LIMITED_KEY: &str = "ck-limited-4d5e6f7a8b9c";
const STREAMER_KEY: &str = "ck-streamer-9c8b7a6d5e4f";

/// Two more clients: `limited` (a rate) and `streamer` (a stream cap).
fn clients(rate: &str, max_streams: u32) -> String {
    format!(
        "\n[[clients]]\nname = \"limited\"\nkey = \"{LIMITED_KEY}\"\nrate = \"{rate}\"\n\n\
         [[clients]]\nname = \"streamer\"\nkey = \"{STREAMER_KEY}\"\nmax_streams = {max_streams}\n"
    )
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Redis commands since `before`, without health pings and the harness's INFO.
fn delta(redis: &RedisServer, before: &HashMap<String, u64>) -> BTreeMap<String, u64> {
    redis
        .commands()
        .into_iter()
        .filter(|(k, _)| k != "ping" && k != "info")
        .filter_map(|(k, v)| {
            let d = v - before.get(&k).copied().unwrap_or(0);
            (d > 0).then_some((k, d))
        })
        .collect()
}

fn assert_rate_limited(r: &Resp) {
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "rate_limited");
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!(retry >= 1, "{retry}");
    assert_eq!(r.header("ratelimit-policy"), Some("\"rate\";q=50;w=1"));
    assert!(
        r.header("ratelimit")
            .is_some_and(|v| v.starts_with("\"rate\";r=0;t=")),
        "{:?}",
        r.headers
    );
}

/// Counts of one load loop.
#[derive(Debug, Default)]
struct Tally {
    ok: AtomicU64,
    limited: AtomicU64,
}

/// `workers` loops, spread over `nodes`, each sending `GET /s/…` with `key`
/// about every 20 ms until `window` has passed; 429s are checked.
async fn hammer(nodes: &[Node], key: &str, workers: usize, window: Duration) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let end = tokio::time::Instant::now() + window;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let url = nodes[w % nodes.len()].url(&format!("/s/load/{w}"));
        let (auth, tally) = (bearer(key), tally.clone());
        tasks.push(tokio::spawn(async move {
            let c = Client::new();
            let mut pace = tokio::time::interval(Duration::from_millis(20));
            while tokio::time::Instant::now() < end {
                pace.tick().await;
                let r = c.get(&url, &[("authorization", auth.as_str())]).await;
                match r.status {
                    200 => tally.ok.fetch_add(1, Ordering::Relaxed),
                    _ => {
                        assert_rate_limited(&r);
                        tally.limited.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for t in tasks {
        t.await.expect("load loop");
    }
    tally
}

#[tokio::test]
async fn a_client_limited_to_50_per_second_gets_50_per_second_across_3_nodes() {
    let tuning = Tuning {
        extra: clients("50/s", 3),
        ..Tuning::default()
    };
    let fixture::Cluster {
        env,
        redis,
        mock: _mock,
        nodes,
        ..
    } = fixture::cluster("limits_rate", &[], 3, tuning).await;
    let c = Client::new();
    let limited = bearer(LIMITED_KEY);
    let first = c
        .get(
            &nodes[0].url("/s/first"),
            &[("authorization", limited.as_str())],
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("ratelimit-policy"), Some("\"rate\";q=50;w=1"));

    // Spend the burst (50 by default) until the first 429, so the window
    // below measures the sustained rate: requests back to back, well over
    // 50/s, for at most 20 s.
    let drain_until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < drain_until,
            "the burst was never spent"
        );
        let r = c
            .get(
                &nodes[1].url("/s/drain"),
                &[("authorization", limited.as_str())],
            )
            .await;
        if r.status == 429 {
            break;
        }
    }

    // 12 loops over 3 nodes at ~50/s each: ~12× the rate, for 10 s; an
    // unlimited client alongside at the same pace.
    let window = Duration::from_secs(10);
    let (tally, free) = tokio::join!(
        hammer(&nodes, LIMITED_KEY, 12, window),
        hammer(&nodes, CLIENT_KEY, 3, window),
    );
    let ok = tally.ok.load(Ordering::Relaxed);
    let refused = tally.limited.load(Ordering::Relaxed);
    let per_second = ok as f64 / window.as_secs_f64();
    println!(
        "50/s over 3 nodes for 10 s: {ok} accepted ({per_second:.1}/s), {refused} refused; \
         unlimited alongside: {} accepted, {} refused",
        free.ok.load(Ordering::Relaxed),
        free.limited.load(Ordering::Relaxed)
    );
    assert!(
        refused > ok,
        "the demand was well over the rate: {ok} accepted, {refused} refused"
    );
    assert!(
        (45.0..=55.0).contains(&per_second),
        "50 ± 5 accepted per second cluster-wide: {per_second:.1}/s ({ok} in 10 s)"
    );
    assert_eq!(
        free.limited.load(Ordering::Relaxed),
        0,
        "unlimited is unaffected"
    );
    assert!(free.ok.load(Ordering::Relaxed) > 0);

    // Redis cost: one EVALSHA per limited request, none for the unlimited.
    let ci = fixture::bearer();
    let before = redis.commands();
    for i in 0..200 {
        let r = c
            .get(
                &nodes[i % 3].url("/s/free"),
                &[("authorization", ci.as_str())],
            )
            .await;
        assert_eq!(r.status, 200);
        assert!(r.header("ratelimit").is_none(), "no limit, no fields");
    }
    let unlimited = delta(&redis, &before);
    let before = redis.commands();
    for i in 0..20 {
        c.get(
            &nodes[i % 3].url("/s/paid"),
            &[("authorization", limited.as_str())],
        )
        .await;
    }
    let paid = delta(&redis, &before);
    println!("redis commands: 200 unlimited requests {unlimited:?}; 20 limited {paid:?}");
    assert!(
        unlimited.is_empty(),
        "unlimited requests cost 0 commands: {unlimited:?}"
    );
    assert_eq!(paid.get("evalsha"), Some(&20), "{paid:?}");

    let mut refused_total = 0.0;
    for n in &nodes {
        let text = n.metrics_text().await;
        refused_total += metrics::value(
            &text,
            r#"rhizome_rate_limited_total{client="limited",reason="rate"}"#,
        )
        .expect("exported");
    }
    assert!(
        refused_total >= refused as f64,
        "{refused_total} < {refused}"
    );
    env.assert_logs_clean();
}

/// Opens `GET /e/sse/manual/{name}` as an event stream for `key`.
async fn open_stream(node: &Node, name: &str, key: &str) -> http::Response<hyper::body::Incoming> {
    let auth = bearer(key);
    Client::new()
        .open(
            Method::GET,
            &node.url(&format!("/e/sse/manual/{name}")),
            &[
                ("authorization", auth.as_str()),
                ("accept", "text/event-stream"),
            ],
            "",
        )
        .await
}

async fn manual_open(mock: &Mock, name: &str) -> u64 {
    mock.stats().await["sse_manual_open"][name]
        .as_u64()
        .unwrap_or(0)
}

async fn assert_too_many_streams(resp: http::Response<hyper::body::Incoming>) {
    use http_body_util::BodyExt;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"]["code"], "too_many_streams", "{v}");
}

#[tokio::test]
async fn three_streams_of_five_open_and_a_closed_one_frees_a_slot_on_another_node() {
    let tuning = Tuning {
        extra: clients("50/s", 3),
        ..Tuning::default()
    };
    let fixture::Cluster {
        env,
        redis: _redis,
        mock,
        nodes,
        ..
    } = fixture::cluster("limits_streams", &[], 3, tuning).await;
    let mut open = Vec::new();
    for i in 0..5 {
        let resp = open_stream(&nodes[i % 3], &format!("st{i}"), STREAMER_KEY).await;
        if i < 3 {
            assert_eq!(resp.status(), 200, "stream {i}");
            open.push(resp);
        } else {
            assert_too_many_streams(resp).await;
        }
    }
    for i in 0..3 {
        let name = format!("st{i}");
        wait_for("upstream stream open", Duration::from_secs(10), || async {
            (manual_open(&mock, &name).await == 1).then_some(())
        })
        .await;
    }
    for i in 3..5 {
        assert_eq!(
            manual_open(&mock, &format!("st{i}")).await,
            0,
            "a refused stream never reaches the upstream"
        );
    }
    // An unlimited client's streams are not counted.
    let free = open_stream(&nodes[1], "free", CLIENT_KEY).await;
    assert_eq!(free.status(), 200);

    // Close the stream held through n1; n2 then grants one.
    drop(open.remove(0));
    let again = wait_for(
        "a slot freed on another node",
        Duration::from_secs(15),
        || async {
            let resp = open_stream(&nodes[1], "st5", STREAMER_KEY).await;
            (resp.status() == 200).then_some(resp)
        },
    )
    .await;
    let refused = open_stream(&nodes[2], "st6", STREAMER_KEY).await;
    assert_too_many_streams(refused).await;
    drop(again);
    let text = nodes[0].metrics_text().await;
    assert!(
        metrics::value(
            &text,
            r#"rhizome_rate_limited_total{client="streamer",reason="streams"}"#
        )
        .is_some(),
        "{text}"
    );
    env.assert_logs_clean();
}

#[tokio::test]
async fn a_killed_nodes_stream_slots_free_themselves_and_live_ones_stay_counted() {
    let tuning = Tuning {
        extra: clients("50/s", 3),
        ..Tuning::default()
    };
    let fixture::Cluster {
        env,
        redis: _redis,
        mock: _mock,
        nodes,
        ..
    } = fixture::cluster("limits_stream_leases", &[], 3, tuning).await;
    // Two streams through n1 (it lives), one through n3 (it dies).
    let mut held = Vec::new();
    for (i, n) in [0, 0, 2].into_iter().enumerate() {
        let resp = open_stream(&nodes[n], &format!("kl{i}"), STREAMER_KEY).await;
        assert_eq!(resp.status(), 200, "stream {i}");
        held.push(resp);
    }
    assert_too_many_streams(open_stream(&nodes[1], "kl-full", STREAMER_KEY).await).await;
    nodes[2].proc.signal("KILL");
    // n3's lease is no longer refreshed: it expires (10 s) and n2 grants a
    // stream. n1's two, open all along, were refreshed and still count.
    let fresh = wait_for(
        "the dead node's slot freed",
        Duration::from_secs(30),
        || async {
            let resp = open_stream(&nodes[1], "kl-new", STREAMER_KEY).await;
            (resp.status() == 200).then_some(resp)
        },
    )
    .await;
    assert_too_many_streams(open_stream(&nodes[1], "kl-over", STREAMER_KEY).await).await;
    drop((fresh, held));
    env.assert_logs_clean();
}

#[tokio::test]
async fn with_redis_frozen_limits_fail_open_or_closed_as_configured() {
    let tuning = Tuning {
        extra: clients("50/s", 3),
        ..Tuning::default()
    };
    let fixture::Cluster {
        env,
        redis,
        mock,
        nodes,
        tuning,
    } = fixture::cluster("limits_store_error", &[], 1, tuning).await;
    let closed_tuning = Tuning {
        extra: format!("{}\n[limits]\non_store_error = \"closed\"\n", tuning.extra),
        ..tuning
    };
    let closed = fixture::node(&env, "closed", &mock, &closed_tuning).await;
    let open = &nodes[0];
    let c = Client::new();
    let limited = bearer(LIMITED_KEY);
    let ci = fixture::bearer();
    for n in [open, &closed] {
        let r = c
            .get(&n.url("/s/before"), &[("authorization", limited.as_str())])
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }

    redis.pause();
    let on = |n: &Node, key: &str| {
        let (url, auth) = (n.url("/s/during"), key.to_string());
        async move {
            let c = Client::new();
            c.get(&url, &[("authorization", auth.as_str())]).await
        }
    };
    let r = on(open, &limited).await;
    assert_eq!(r.status, 200, "open: admitted unlimited: {}", r.text());
    assert!(r.header("ratelimit").is_none(), "nothing was counted");
    let r = on(&closed, &limited).await;
    assert_eq!(r.status, 503, "closed: refused: {}", r.text());
    assert_eq!(r.json()["error"]["code"], "state_store_unavailable");
    assert!(r.header("retry-after").is_some());
    let r = on(&closed, &ci).await;
    assert_eq!(
        r.status,
        200,
        "an unlimited client needs no Redis: {}",
        r.text()
    );
    let s = open_stream(&closed, "frozen", STREAMER_KEY).await;
    assert_eq!(s.status(), 503, "closed also for streams");
    drop(s);
    redis.resume();

    let open_errors = open
        .metric(r#"rhizome_rate_limit_store_errors_total{outcome="open"}"#)
        .await;
    let closed_errors = closed
        .metric(r#"rhizome_rate_limit_store_errors_total{outcome="closed"}"#)
        .await;
    assert!(open_errors >= Some(1.0), "{open_errors:?}");
    assert!(closed_errors >= Some(2.0), "{closed_errors:?}");
    wait_for("limits counted again", Duration::from_secs(10), || async {
        let r = on(&closed, &limited).await;
        r.header("ratelimit").is_some().then_some(())
    })
    .await;
    env.assert_logs_clean();
}

#[tokio::test]
async fn on_the_memory_backend_limits_hold_in_one_node_and_on_the_intent_api() {
    let tuning = Tuning {
        extra: "\n[[clients]]\nname = \"limited\"\nkey = \"ck-limited-4d5e6f7a8b9c\"\nrate = \"6/m\"\nburst = 3\n\n\
                [[clients]]\nname = \"streamer\"\nkey = \"ck-streamer-9c8b7a6d5e4f\"\nmax_streams = 1\n"
            .into(),
        ..Tuning::default()
    };
    let fixture::World { env, mock, node } = fixture::world("limits_memory", &[], &tuning).await;
    let c = Client::new();
    let limited = bearer(LIMITED_KEY);
    let h = [("authorization", limited.as_str())];
    for remaining in [2, 1, 0] {
        let r = c.get(&node.url("/s/m"), &h).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit-policy"), Some("\"rate\";q=6;w=60"));
        let state = r.header("ratelimit").expect("RateLimit").to_string();
        assert!(
            state.starts_with(&format!("\"rate\";r={remaining};")),
            "{state}"
        );
    }
    let r = c.get(&node.url("/s/m"), &h).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limited");
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(
        (1..=10).contains(&retry),
        "about one interval of 6/m: {retry}"
    );
    let intent = json!({"route": "s", "path": "/x"}).to_string();
    let r = c.post(&node.url("/v1/proxy"), &h, intent).await;
    assert_eq!(r.status, 429, "the intent API is limited too: {}", r.text());

    let first = open_stream(&node, "m1", STREAMER_KEY).await;
    assert_eq!(first.status(), 200);
    assert_too_many_streams(open_stream(&node, "m2", STREAMER_KEY).await).await;
    drop(first);
    wait_for("the slot back", Duration::from_secs(10), || async {
        let resp = open_stream(&node, "m3", STREAMER_KEY).await;
        (resp.status() == 200).then_some(())
    })
    .await;
    let _ = mock;
    env.assert_logs_clean();
}

#[test]
fn a_bad_rate_is_refused_naming_the_field() {
    let env = Env::new("limits_config");
    let cfg = env.write(
        "bad-rate.toml",
        "[[clients]]\nname = \"a\"\nkey = \"k\"\nrate = \"100/d\"\nburst = 5\n\n\
         [[clients]]\nname = \"b\"\nkey = \"k2\"\nburst = 5\nmax_streams = 0\n",
    );
    let err = refuses("check-config", &cfg, &[]);
    for want in [
        "clients[0].rate: expected \"<count>/s|m|h\"",
        "clients[1].burst: only applies together with rate",
        "clients[1].max_streams: must be at least 1",
    ] {
        assert!(err.contains(want), "{want} in:\n{err}");
    }
}
