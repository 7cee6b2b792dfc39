//! Resumable SSE: a client whose stream breaks reconnects with
//! `Last-Event-ID` — to the same node on the embedded default, to any node
//! with Redis — and gets every event it missed exactly once, in order, then
//! the rest live (S2); history that is gone is signalled, never replayed in
//! part (S4); ids are bound to their client and cannot be forged (S5);
//! buffers are bounded and expire; a Redis outage mid-stream keeps the live
//! stream flowing and turns the events it lost into a gap for a resume.

use std::time::{Duration, Instant};

use http::Method;
use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::Client;
use rhizome_tests::harness::secrets::OTHER_CLIENT_KEY;
use rhizome_tests::harness::sse::{open, Event, Reader};
use rhizome_tests::harness::Node;

const WAIT: Duration = Duration::from_secs(10);

/// `[routes.sse]` of the replay tests; variants add retention settings.
const REPLAY: &str = "replay = true\non_client_disconnect = \"detach\"\ndetach_grace = \"20s\"";
const REPLAY_20_EVENTS: &str =
    "replay = true\non_client_disconnect = \"detach\"\ndetach_grace = \"20s\"\nbuffer_events = 20";
const REPLAY_SHORT_TTL: &str = "replay = true\non_client_disconnect = \"detach\"\ndetach_grace = \"20s\"\nbuffer_events = 50\nbuffer_ttl = \"3s\"";

/// One node on the embedded default with `sse` as route `e`'s `[routes.sse]`.
async fn replay_world(test: &str, sse: &'static str) -> fixture::World {
    let tuning = Tuning {
        sse,
        ..Tuning::default()
    };
    fixture::world(test, &[], &tuning).await
}

fn client_key() -> String {
    fixture::bearer().trim_start_matches("Bearer ").to_string()
}

/// The upstream's event number carried in `data` (`{"n":k}`).
fn n(ev: &Event) -> u64 {
    serde_json::from_str::<serde_json::Value>(&ev.data)
        .ok()
        .and_then(|v| v["n"].as_u64())
        .unwrap_or_else(|| panic!("not an upstream event: {ev:?}"))
}

async fn take(reader: &mut Reader, count: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < count {
        out.push(reader.next(WAIT).await.expect("an event"));
    }
    out
}

fn assert_exactly(events: &[Event], from: u64, to: u64) {
    let got: Vec<u64> = events.iter().map(n).collect();
    let want: Vec<u64> = (from..=to).collect();
    assert_eq!(got, want, "every event exactly once, in order");
}

#[tokio::test]
async fn embedded_default_drop_and_reconnect_loses_nothing() {
    let fixture::World {
        env,
        mock: _m,
        node,
    } = replay_world("replay_embedded", REPLAY).await;
    let key = client_key();
    let path = "/e/sse?count=30&interval_ms=20";
    let (status, mut first, _) = open(&node, path, &key, None).await;
    assert_eq!(status, 200);
    let seen = take(&mut first, 10).await;
    assert_exactly(&seen, 1, 10);
    let last = seen[9].id.clone().expect("rhizome id");
    assert!(
        last.starts_with("v1."),
        "Rhizome's own id, not upstream's: {last}"
    );
    drop(first);
    let (status, mut again, gap) = open(&node, path, &key, Some(&last)).await;
    assert_eq!(status, 200);
    assert!(gap.is_none());
    let rest = again.rest(WAIT).await;
    assert_exactly(&rest, 11, 30);
    env.assert_logs_clean();
}

/// S2 on three nodes: 200 events at 50 ms; the client drops after 40 and
/// reconnects through another node.
#[tokio::test]
async fn reconnecting_through_another_node_gets_every_later_event_once_in_order() {
    let fixture::Cluster {
        env,
        redis: _redis,
        mock: _m,
        nodes,
        ..
    } = replay_cluster("replay_s2").await;
    let key = client_key();
    let path = "/e/sse?count=200&interval_ms=50";
    let (status, mut first, _) = open(&nodes[0], path, &key, None).await;
    assert_eq!(status, 200);
    let seen = take(&mut first, 40).await;
    assert_exactly(&seen, 1, 40);
    let t1 = seen[0].at;
    let last = seen[39].id.clone().expect("id");
    drop(first);
    let (status, mut again, _) = open(&nodes[1], path, &key, Some(&last)).await;
    assert_eq!(status, 200);
    let rest = again.rest(WAIT).await;
    assert_exactly(&rest, 41, 200);
    for ev in &rest {
        // Upstream wrote event k about (k-1) × 50 ms after event 1.
        let due = t1 + Duration::from_millis((n(ev) - 1) * 50);
        let late = ev.at.saturating_duration_since(due);
        assert!(
            late < Duration::from_millis(1000) + Duration::from_millis(500),
            "event {} arrived {late:?} after its upstream time",
            n(ev)
        );
    }
    env.assert_logs_clean();
}

#[tokio::test]
async fn history_older_than_the_buffer_is_a_gap_not_a_partial_replay() {
    let fixture::World {
        env,
        mock: _m,
        node,
    } = replay_world("replay_s4", REPLAY_20_EVENTS).await;
    let key = client_key();
    let path = "/e/sse?count=100&interval_ms=1";
    let (_, mut first, _) = open(&node, path, &key, None).await;
    let all = first.rest(WAIT).await;
    assert_exactly(&all, 1, 100);
    let old = all[4].id.clone().expect("id");
    let (status, mut again, gap) = open(&node, path, &key, Some(&old)).await;
    assert_eq!(status, 200);
    assert_eq!(gap.as_deref(), Some("earliest"));
    let got = again.rest(WAIT).await;
    assert_eq!(
        got.len(),
        1,
        "the gap signal and nothing replayed in part: {got:?}"
    );
    assert_eq!(got[0].event.as_deref(), Some("rhizome-gap"));
    let info: serde_json::Value = serde_json::from_str(&got[0].data).expect("json");
    assert_eq!(info["requested"], old.as_str());
    assert_eq!(info["reason"], "expired");
    assert!(info["oldest"]
        .as_str()
        .is_some_and(|o| o.starts_with("v1.")));
    assert!(
        node.metric(r#"rhizome_sse_gaps_total{reason="expired"}"#)
            .await
            >= Some(1.0)
    );
    env.assert_logs_clean();
}

#[tokio::test]
async fn ids_are_bound_to_their_client_and_cannot_be_forged() {
    let fixture::World {
        env,
        mock: _m,
        node,
    } = replay_world("replay_s5", REPLAY).await;
    let key = client_key();
    let path = "/e/sse?count=5&interval_ms=1";
    let (_, mut first, _) = open(&node, path, &key, None).await;
    let all = first.rest(WAIT).await;
    let id = all[1].id.clone().expect("id");
    // Another client presenting a genuine id: 404, as for a stream that never existed.
    let (status, _, _) = open(&node, path, OTHER_CLIENT_KEY, Some(&id)).await;
    assert_eq!(status, 404);
    let mut forged = id.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    for bad in [forged.as_str(), &id[..id.len() - 3], "v1.garbage", "v1...."] {
        let (status, _, _) = open(&node, path, &key, Some(bad)).await;
        assert_eq!(status, 400, "{bad}");
    }
    env.assert_logs_clean();
}

async fn wait_stream_keys_gone(redis: &rhizome_tests::harness::redis::RedisServer) {
    rhizome_tests::harness::wait_for("the idle stream's keys to expire", WAIT, || async {
        (redis.cli(&["KEYS", "rz:sse:*"]).trim().is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn buffers_are_bounded_and_an_idle_stream_expires() {
    let fixture::Cluster {
        env,
        redis,
        mock: _m,
        nodes,
        ..
    } = replay_nodes("replay_retention", 1, REPLAY_SHORT_TTL).await;
    let key = client_key();
    let (_, mut first, _) = open(&nodes[0], "/e/sse?count=150&interval_ms=1", &key, None).await;
    let all = first.rest(WAIT).await;
    assert_exactly(&all, 1, 150);
    let keys = redis.cli(&["KEYS", "rz:sse:*:log"]);
    let log = keys
        .lines()
        .next()
        .expect("a replay log")
        .trim()
        .to_string();
    let len: u64 = redis.cli(&["XLEN", &log]).trim().parse().expect("XLEN");
    assert!(
        len <= 50 + 100,
        "XLEN {len} after 150 events with buffer_events = 50"
    );
    assert!(len >= 50, "XLEN {len}: the last 50 are kept");
    wait_stream_keys_gone(&redis).await;
    env.assert_logs_clean();
}

#[tokio::test]
async fn redis_frozen_mid_stream_keeps_it_live_and_a_resume_into_the_outage_is_a_gap() {
    let fixture::Cluster {
        env,
        redis,
        mock: _m,
        nodes,
        ..
    } = replay_nodes("replay_outage", 2, REPLAY).await;
    let key = client_key();
    let path = "/e/sse?count=120&interval_ms=50";
    let (_, mut live, _) = open(&nodes[0], path, &key, None).await;
    let before = take(&mut live, 10).await;
    let resume_from = before[9].id.clone().expect("id");
    // Redis frozen for 3 s (60 events at 50 ms).
    redis.pause();
    let started = Instant::now();
    let during = take(&mut live, 60).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the live stream kept flowing: {:?}",
        started.elapsed()
    );
    redis.resume();
    let after = live.rest(WAIT).await;
    let late = after[after.len() - 11].id.clone().expect("id");
    let mut all = before;
    all.extend(during);
    all.extend(after);
    assert_exactly(&all, 1, 120);
    // A resume that needs events produced during the outage is told so.
    let (_, mut again, gap) = open(&nodes[1], path, &key, Some(&resume_from)).await;
    assert_eq!(gap.as_deref(), Some("earliest"));
    let first = again.next(WAIT).await.expect("gap event");
    assert_eq!(first.event.as_deref(), Some("rhizome-gap"));
    let info: serde_json::Value = serde_json::from_str(&first.data).expect("json");
    assert_eq!(info["reason"], "lost");
    // Appends resumed by themselves: history after the outage replays whole.
    let (_, mut whole, gap) = open(&nodes[1], path, &key, Some(&late)).await;
    assert!(gap.is_none());
    assert_exactly(&whole.rest(WAIT).await, 111, 120);
    env.assert_logs_clean();
}

/// `n` Redis-backed nodes with `sse` as route `e`'s `[routes.sse]`.
async fn replay_nodes(test: &str, n: usize, sse: &'static str) -> fixture::Cluster {
    let tuning = Tuning {
        sse,
        ..Tuning::default()
    };
    fixture::cluster(test, &[], n, tuning).await
}

/// Three Redis-backed nodes with replay on.
async fn replay_cluster(test: &str) -> fixture::Cluster {
    replay_nodes(test, 3, REPLAY).await
}

/// S3: the node producing the stream is SIGKILLed after 40 events; the client
/// reconnects elsewhere and another node takes the stream over.
#[tokio::test]
async fn a_killed_producer_is_taken_over_and_nothing_is_lost_or_repeated() {
    let fixture::Cluster {
        env,
        redis: _redis,
        mock: _m,
        mut nodes,
        ..
    } = replay_cluster("replay_s3").await;
    let key = client_key();
    let path = "/e/sse?to=200&interval_ms=50&honour_last_event_id=1";
    let (_, mut first, _) = open(&nodes[0], path, &key, None).await;
    let seen = take(&mut first, 40).await;
    let last = seen[39].id.clone().expect("id");
    nodes[0].proc.signal("KILL");
    drop(first);
    let (status, mut again, _) = open(&nodes[1], path, &key, Some(&last)).await;
    assert_eq!(status, 200);
    let rest = again.rest(WAIT).await;
    assert_exactly(&rest, 41, 200);
    assert_eq!(
        nodes[1]
            .metric(r#"rhizome_sse_takeovers_total{route="e"}"#)
            .await,
        Some(1.0)
    );
    let _ = nodes.remove(0);
    env.assert_logs_clean();
}

/// S3 for an upstream that sends no ids: every buffered event, then a gap.
#[tokio::test]
async fn a_killed_producer_of_an_upstream_without_ids_gives_its_buffer_then_a_gap() {
    let fixture::Cluster {
        env,
        redis,
        mock: _m,
        nodes,
        ..
    } = replay_cluster("replay_s3_no_ids").await;
    let key = client_key();
    let path = "/e/sse?to=200&interval_ms=50&no_ids=1";
    let (_, mut first, _) = open(&nodes[0], path, &key, None).await;
    let seen = take(&mut first, 25).await;
    let resume_from = seen[9].id.clone().expect("id");
    nodes[0].proc.signal("KILL");
    drop(first);
    // What the dead producer stored: the last event seen live may not be.
    let stream = resume_from.split('.').nth(1).expect("stream part");
    let meta = format!("rz:sse:{{{stream}}}:meta");
    let stored: u64 = redis
        .cli(&["HGET", &meta, "last_seq"])
        .trim()
        .parse()
        .expect("last_seq");
    assert!(stored >= 15, "the producer stored as it went: {stored}");
    let (_, mut again, _) = open(&nodes[1], path, &key, Some(&resume_from)).await;
    let rest = again.rest(WAIT).await;
    let (events, gap) = rest.split_at(rest.len() - 1);
    assert_exactly(events, 11, stored);
    assert_eq!(gap[0].event.as_deref(), Some("rhizome-gap"));
    let info: serde_json::Value = serde_json::from_str(&gap[0].data).expect("json");
    assert_eq!(info["reason"], "producer_lost");
    env.assert_logs_clean();
}

/// A producer paused past its lease (SIGSTOP), then resumed, cannot append
/// after another node took the stream over.
#[tokio::test]
async fn a_paused_producer_cannot_append_after_the_takeover() {
    let fixture::Cluster {
        env,
        redis,
        mock: _m,
        nodes,
        ..
    } = replay_cluster("replay_paused").await;
    let key = client_key();
    let path = "/e/sse?to=120&interval_ms=30&honour_last_event_id=1";
    let (_, mut first, _) = open(&nodes[0], path, &key, None).await;
    let seen = take(&mut first, 20).await;
    let last = seen[19].id.clone().expect("id");
    nodes[0].proc.signal("STOP");
    let (_, mut again, _) = open(&nodes[1], path, &key, Some(&last)).await;
    let rest = again.rest(Duration::from_secs(15)).await;
    assert_exactly(&rest, 21, 120);
    // Its client still connected, the old producer resumes where it stopped.
    nodes[0].proc.signal("CONT");
    // Whatever the resumed producer still had, the log has each event once, in order.
    let keys = redis.cli(&["KEYS", "rz:sse:*:log"]);
    let log = keys.lines().next().expect("log").trim().to_string();
    // Resumed, it reads what upstream sent meanwhile, finds its lease taken
    // or its appends fenced, and ends the stream (its access-log line).
    rhizome_tests::harness::wait_for("the old producer's stream to end", WAIT, || async {
        let log = nodes[0].proc.log_text();
        log.lines()
            .any(|l| l.contains("\"message\":\"request\"") && l.contains("/e/sse"))
            .then_some(())
    })
    .await;
    drop(first);
    let entries = redis.cli(&["XRANGE", &log, "-", "+"]);
    let ids: Vec<u64> = entries
        .lines()
        .filter_map(|l| l.trim().strip_suffix("-0"))
        .filter_map(|s| s.parse().ok())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "seqs consecutive: {ids:?}"
    );
    let uids: Vec<&str> = entries
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "u")
        .map(|w| w[1])
        .collect();
    let mut sorted = uids.clone();
    sorted.sort_by_key(|u| u.parse::<u64>().unwrap_or(0));
    sorted.dedup();
    assert_eq!(
        uids.len(),
        sorted.len(),
        "no upstream event twice: {uids:?}"
    );
    env.assert_logs_clean();
}

#[tokio::test]
async fn admin_lists_live_streams_across_nodes_without_event_data() {
    let fixture::Cluster {
        env,
        redis: _redis,
        mock: _m,
        nodes,
        ..
    } = replay_cluster("replay_admin").await;
    let key = client_key();
    let (_, mut live, _) = open(&nodes[0], "/e/sse?count=100&interval_ms=50", &key, None).await;
    take(&mut live, 5).await;
    let admin = format!("Bearer {}", rhizome_tests::harness::secrets::ADMIN_TOKEN);
    let c = Client::new();
    let url = nodes[1].admin_url("/admin/v1/streams");
    let (stream, text) =
        rhizome_tests::harness::wait_for("the stream listed on n2", WAIT, || async {
            let r = c.get(&url, &[("authorization", admin.as_str())]).await;
            let v = r.json();
            let s = v["streams"].as_array()?.first()?.clone();
            (s["last_seq"].as_u64()? >= 5).then(|| (s, r.text()))
        })
        .await;
    assert_eq!(stream["route"], "e");
    assert_eq!(stream["producer"], "n1");
    assert!(stream["buffered_events"].as_u64() >= Some(5));
    assert!(
        !text.contains("\"n\":") && !text.contains("data"),
        "no event data: {text}"
    );
    let r = c.get(&url, &[]).await;
    assert_eq!(r.status, 401, "behind the admin token");
    env.assert_logs_clean();
}

/// Waits until `streams` streams are listed with at least `seq` events stored.
async fn wait_stored(node: &Node, streams: usize, seq: u64) {
    let admin = format!("Bearer {}", rhizome_tests::harness::secrets::ADMIN_TOKEN);
    let url = node.admin_url("/admin/v1/streams?limit=1000");
    let c = Client::new();
    rhizome_tests::harness::wait_for("every stream's first events stored", WAIT, || async {
        let v = c
            .get(&url, &[("authorization", admin.as_str())])
            .await
            .json();
        let stored = v["streams"]
            .as_array()?
            .iter()
            .filter(|s| s["last_seq"].as_u64() >= Some(seq))
            .count();
        (stored >= streams).then_some(())
    })
    .await;
}

/// 200 streams on one node; the node is killed; all 200 clients reconnect at
/// once to the two survivors with jittered retry: every stream completes
/// with nothing lost or duplicated.
#[tokio::test]
async fn a_reconnect_storm_after_a_node_kill_loses_and_repeats_nothing() {
    const STREAMS: usize = 200;
    let fixture::Cluster {
        env,
        redis: _redis,
        mock: _m,
        mut nodes,
        ..
    } = fixture::cluster(
        "replay_storm",
        &[],
        3,
        Tuning {
            sse: REPLAY,
            // 200 streams opening at once on a loaded 2-core machine: with
            // the default 250 ms a slow answer opens the Redis breaker and
            // streams start without replay (G6) — not what this test is about.
            op_timeout: "1s",
            ..Tuning::default()
        },
    )
    .await;
    let key = client_key();
    // 15 s per stream. The streams open and read their first events all at
    // once: one after the other, on a loaded machine, the first ones could
    // finish before the kill and be resumed without a takeover.
    let path = "/e/sse?to=100&interval_ms=150&honour_last_event_id=1";
    let opened = futures_util::future::join_all((0..STREAMS).map(|_| async {
        let (status, mut reader, _) = open(&nodes[0], path, &key, None).await;
        assert_eq!(status, 200);
        let first = take(&mut reader, 5).await;
        (reader, first)
    }))
    .await;
    let (readers, firsts): (Vec<Reader>, Vec<Vec<Event>>) = opened.into_iter().unzip();
    // A producer sends an event before its (batched) append lands; the kill
    // comes once what the clients saw is stored, as it is on a machine that
    // keeps up. (Killed in that window, an unstored head of a stream cannot
    // be reopened upstream: the resume gets a `producer_lost` gap.)
    wait_stored(&nodes[1], STREAMS, 5).await;
    nodes[0].proc.signal("KILL");
    drop(readers);
    let survivors: Vec<String> = nodes[1..].iter().map(|n| n.url(path)).collect();
    let mut tasks = Vec::new();
    for (i, seen) in firsts.into_iter().enumerate() {
        let url = survivors[i % survivors.len()].clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let jitter = Duration::from_millis(rand::random::<u64>() % 500);
            tokio::time::sleep(jitter).await;
            let last = seen[4].id.clone().expect("id");
            let auth = format!("Bearer {key}");
            let h = [
                ("authorization", auth.as_str()),
                ("last-event-id", last.as_str()),
            ];
            let resp = Client::new().open(Method::GET, &url, &h, "").await;
            assert_eq!(resp.status(), 200);
            let rest = Reader::new(resp.into_body())
                .rest(Duration::from_secs(30))
                .await;
            let mut all = seen;
            all.extend(rest);
            all.iter().map(n).collect::<Vec<u64>>()
        }));
    }
    for t in tasks {
        let got = t.await.expect("stream task");
        assert_eq!(
            got,
            (1..=100).collect::<Vec<u64>>(),
            "a stream lost or repeated events"
        );
    }
    let mut takeovers = 0.0;
    for n in &nodes[1..] {
        takeovers += n
            .metric(r#"rhizome_sse_takeovers_total{route="e"}"#)
            .await
            .unwrap_or(0.0);
    }
    assert_eq!(
        takeovers, STREAMS as f64,
        "each stream taken over exactly once"
    );
    let _ = nodes.remove(0);
    env.assert_logs_clean();
}

/// Two MCP routes with replay: a roomy one and one keeping 3 events.
const MCP_ROUTES: &str = r#"
[[routes]]
name = "mr"
path_prefix = "/mr/"
strip_prefix = true
upstream = "mock"
credentials = ["static"]
session = "mcp"
[routes.sse]
replay = true
on_client_disconnect = "detach"
detach_grace = "20s"

[[routes]]
name = "mg"
path_prefix = "/mg/"
strip_prefix = true
upstream = "mock"
credentials = ["static"]
session = "mcp"
[routes.sse]
replay = true
buffer_events = 3
"#;

/// Opens an MCP session on `prefix` (initialize) and returns its proxy id.
async fn mcp_session(node: &Node, prefix: &str) -> String {
    let key = fixture::bearer();
    let h = [
        ("authorization", key.as_str()),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize"});
    let r = Client::new()
        .post(&node.url(&format!("{prefix}mcp")), &h, body.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("mcp-session-id").expect("session id").to_string()
}

/// The server-initiated event stream of MCP session `session`.
async fn mcp_stream(node: &Node, prefix: &str, session: &str, last: Option<&str>) -> (u16, Reader) {
    let key = fixture::bearer();
    let mut h = vec![
        ("authorization", key.as_str()),
        ("accept", "text/event-stream"),
        ("mcp-session-id", session),
    ];
    if let Some(id) = last {
        h.push(("last-event-id", id));
    }
    let url = node.url(&format!("{prefix}mcp?count=20"));
    let resp = Client::new().open(Method::GET, &url, &h, "").await;
    (resp.status().as_u16(), Reader::new(resp.into_body()))
}

fn tick(ev: &Event) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&ev.data).expect("json-rpc");
    v["params"]["n"].as_u64().expect("tick n")
}

#[tokio::test]
async fn mcp_streams_resume_within_their_session_only_and_gaps_are_json_rpc_errors() {
    let tuning = Tuning {
        extra: MCP_ROUTES.to_string(),
        ..Tuning::default()
    };
    let fixture::World {
        env,
        mock: _m,
        node,
    } = fixture::world("replay_mcp", &[], &tuning).await;
    let session = mcp_session(&node, "/mr/").await;
    let (status, mut first) = mcp_stream(&node, "/mr/", &session, None).await;
    assert_eq!(status, 200);
    let seen = take(&mut first, 5).await;
    assert_eq!(
        seen.iter().map(tick).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let last = seen[4].id.clone().expect("id");
    drop(first);
    // Another session of the same client presenting the id: 404.
    let other = mcp_session(&node, "/mr/").await;
    let (status, _) = mcp_stream(&node, "/mr/", &other, Some(&last)).await;
    assert_eq!(status, 404);
    let (status, mut again) = mcp_stream(&node, "/mr/", &session, Some(&last)).await;
    assert_eq!(status, 200);
    let rest = again.rest(WAIT).await;
    assert_eq!(
        rest.iter().map(tick).collect::<Vec<_>>(),
        (6..=20).collect::<Vec<_>>()
    );

    // History gone on an MCP stream: a JSON-RPC error, not a partial replay.
    let session = mcp_session(&node, "/mg/").await;
    let (_, mut short) = mcp_stream(&node, "/mg/", &session, None).await;
    let all = short.rest(WAIT).await;
    assert_eq!(all.len(), 20);
    let early = all[1].id.clone().expect("id");
    let (_, mut again) = mcp_stream(&node, "/mg/", &session, Some(&early)).await;
    let got = again.rest(WAIT).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let err: serde_json::Value = serde_json::from_str(&got[0].data).expect("json-rpc");
    assert_eq!(err["jsonrpc"], "2.0");
    assert_eq!(err["error"]["code"], -32001);
    assert_eq!(err["error"]["data"]["reason"], "expired");
    env.assert_logs_clean();
}
