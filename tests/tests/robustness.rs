//! Bad input gets a clear error and loses nothing: broken configs are refused
//! naming the field, malformed and oversized requests get a 4xx without
//! hurting the node, and SIGTERM drains in-flight work and ends streams cleanly.

use std::time::Duration;

use http::Method;
use rhizome_tests::harness::cli::refuses;
use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::{next_chunk, raw, Client};
use rhizome_tests::harness::secrets::{CLIENT_KEY, STATIC_KEY};
use rhizome_tests::harness::{wait_for, Env};
use serde_json::json;

#[tokio::test]
async fn broken_config_is_refused_naming_every_field() {
    let env = Env::new("broken_config");
    let cfg = env.write(
        "bad.toml",
        r#"
[limits]
max_body = "lots"
"#,
    );
    let err = refuses("check-config", &cfg, &[]);
    assert!(err.contains("limits.max_body"), "{err}");

    std::fs::write(
        &cfg,
        r#"
[[credentials]]
name = "x"
kind = "oauth2_client_credentials"
token_url = "http://127.0.0.1:1/token"
client_id = "c"
client_secret = { env = "RZ_TEST_UNSET_SECRET" }
[[upstreams]]
name = "u"
targets = ["http://127.0.0.1:1"]
[[routes]]
name = "r"
path_prefix = "/r/"
upstream = "u"
credentials = ["x", "missing"]
[[routes]]
name = "r"
path_prefix = "/s/"
upstream = "nope"
"#,
    )
    .expect("write");
    let err = refuses("check-config", &cfg, &[]);
    for want in [
        "routes[0].credentials[1]: unknown credential \"missing\"",
        "routes[1].name: duplicate name \"r\"",
        "routes[1].upstream: unknown upstream \"nope\"",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // Running the node on it fails the same way, before binding anything.
    let err = refuses("--config", &cfg, &[]);
    assert!(err.contains("routes[0].credentials[1]"), "{err}");

    // Semantically valid but the secret reference does not resolve: named too.
    let fixed = std::fs::read_to_string(&cfg)
        .expect("read")
        .replace(", \"missing\"", "")
        .replace(
            "name = \"r\"\npath_prefix = \"/s/\"\nupstream = \"nope\"",
            "name = \"s\"\npath_prefix = \"/s/\"\nupstream = \"u\"",
        );
    std::fs::write(&cfg, fixed).expect("write");
    let err = refuses("check-config", &cfg, &[]);
    assert!(
        err.contains(
            "credentials[0]: client_secret: environment variable RZ_TEST_UNSET_SECRET is not set"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_4xx_and_the_node_keeps_serving() {
    let env = Env::new("bad_requests");
    let mock = fixture::mock(&env, &[]).await;
    let tuning = Tuning {
        max_body: "1KiB",
        ..Tuning::default()
    };
    let node = fixture::node(&env, "node", &mock, &tuning).await;
    let c = Client::new();
    let auth = fixture::bearer();
    let h = [("authorization", auth.as_str())];

    // Oversized request head → 431.
    let big = "x".repeat(100_000);
    let resp = raw(
        node.proxy,
        format!("GET /n/open/x HTTP/1.1\r\nhost: a\r\nx-big: {big}\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp:.200}");
    // Unparseable Content-Length → 400.
    let resp = raw(
        node.proxy,
        b"POST /n/open/x HTTP/1.1\r\nhost: a\r\ncontent-length: abc\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp:.200}");
    // Garbage instead of HTTP → 400 and the connection closes.
    let resp = raw(
        node.proxy,
        b"\x16\x03\x01garbage\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 400"),
        "{resp:.200}"
    );
    // Body over the route's max_body → 413, declared or streamed.
    let r = c.post(&node.url("/n/open/x"), &h, vec![b'a'; 4096]).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "payload_too_large");
    let chunked = format!("POST /n/open/x HTTP/1.1\r\nhost: a\r\nauthorization: {auth}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n800\r\n{}\r\n0\r\n\r\n", "b".repeat(2048));
    let resp = raw(node.proxy, chunked.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp:.300}");
    // A body within the limit passes.
    assert_eq!(
        c.post(&node.url("/n/open/x"), &h, vec![b'a'; 512])
            .await
            .status,
        200
    );
    // Malformed JSON to the intent API → 400 with a reason.
    let r = c.post(&node.url("/v1/proxy"), &h, "{\"route\": ").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("invalid intent JSON")));
    // Dead upstream target → 502 upstream_unavailable, not a hang.
    // (The node still answers everything else.)
    for _ in 0..3 {
        assert_eq!(c.get(&node.url("/n/open/alive"), &h).await.status, 200);
    }
    env.assert_logs_clean();
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_and_slow_upstream_a_504() {
    let env = Env::new("upstream_errors");
    let mock = fixture::mock(&env, &[]).await;
    let cfg = format!(
        r#"
[[clients]]
name = "ci"
key = "{CLIENT_KEY}"
[[credentials]]
name = "static"
kind = "static"
token = "{STATIC_KEY}"
inject = {{ header = "api-key", value = "{{token}}" }}
[[upstreams]]
name = "dead"
targets = ["http://127.0.0.1:1"]
connect_timeout = "1s"
[[upstreams]]
name = "mock"
targets = ["{}"]
[[routes]]
name = "dead"
path_prefix = "/dead/"
upstream = "dead"
[[routes]]
name = "slow"
path_prefix = "/slow/"
strip_prefix = true
upstream = "mock"
timeout = "300ms"
credentials = ["static"]
"#,
        mock.base()
    );
    let node = env.node("node", &cfg).await;
    let c = Client::new();
    let auth = fixture::bearer();
    let h = [("authorization", auth.as_str())];
    let r = c.get(&node.url("/dead/x"), &h).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["code"], "upstream_unavailable");
    let r = c.get(&node.url("/slow/slow?ms=3000"), &h).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "upstream_timeout");
    env.assert_logs_clean();
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_ends_streams_cleanly() {
    let fixture::World {
        env,
        mock,
        mut node,
    } = fixture::world("graceful", &[], &Tuning::default()).await;
    let c = Client::new();
    let auth = fixture::bearer();
    let slow = {
        let (c, url, auth) = (c.clone(), node.url("/a/slow?ms=1500"), auth.clone());
        tokio::spawn(async move { c.get(&url, &[("authorization", auth.as_str())]).await })
    };
    let stream = c
        .open(
            Method::GET,
            &node.url("/e/sse/manual/drain"),
            &[("authorization", auth.as_str())],
            "",
        )
        .await;
    let mut body = stream.into_body();
    wait_for(
        "slow request and stream reach upstream",
        Duration::from_secs(10),
        || async {
            let s = mock.stats().await;
            (s["requests_by_path"]["/slow"] == 1 && s["sse_manual_open"]["drain"] == 1)
                .then_some(())
        },
    )
    .await;
    mock.control("/_mock/sse/drain/emit", json!({})).await;
    next_chunk(&mut body, Duration::from_secs(5))
        .await
        .expect("event before shutdown");

    node.proc.signal("TERM");
    // The stream ends cleanly (end of body, not an error), so clients reconnect elsewhere.
    assert!(next_chunk(&mut body, Duration::from_secs(5))
        .await
        .is_none());
    // The in-flight request still completes.
    let r = slow.await.expect("join");
    assert_eq!(r.status, 200, "{}", r.text());
    let status = node.proc.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "clean exit");
    assert!(
        tokio::net::TcpStream::connect(node.proxy).await.is_err(),
        "listener closed"
    );
    env.assert_logs_clean();
}

#[tokio::test]
async fn silent_connections_are_closed_and_client_methods_do_not_make_metric_series() {
    let tuning = Tuning {
        extra: "[limits]\nheader_read_timeout = \"300ms\"\n".into(),
        ..Tuning::default()
    };
    let fixture::World {
        env,
        mock: _mock,
        node,
    } = fixture::world("silent_conns", &[], &tuning).await;
    // A connection that sends nothing is closed after the head timeout.
    let started = std::time::Instant::now();
    let answer = raw(node.proxy, b"", Duration::from_secs(5)).await;
    assert!(answer.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
    // Invented methods are counted as OTHER, not as a series each.
    for m in ["FOO1", "FOO2", "FOO3"] {
        let resp = raw(
            node.proxy,
            format!("{m} /a/x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 401"), "{resp:.100}");
    }
    let text = node.metrics_text().await;
    assert!(
        !text.contains("FOO1"),
        "client-chosen method became a label"
    );
    assert_eq!(
        rhizome_tests::harness::metrics::value(
            &text,
            r#"rhizome_requests_total{route="a",method="OTHER",status="401"}"#
        ),
        Some(3.0)
    );
    env.assert_logs_clean();
}
