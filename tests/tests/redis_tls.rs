//! Redis over TLS (`rediss://` with `[state.tls]`) against a real
//! `redis-server` that speaks TLS only, with certificates the test makes:
//! shared tokens, MCP sessions and SSE replay work through it across nodes,
//! and a certificate either side refuses stops the node at start with an
//! error naming the setting, instead of a node retrying forever.

use std::path::Path;
use std::time::Duration;

use http::Method;
use rhizome_tests::harness::cli::start_up_refuses;
use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::Client;
use rhizome_tests::harness::redis::RedisServer;
use rhizome_tests::harness::secrets::OAUTH_SECRET_A;
use rhizome_tests::harness::sse::Reader;
use rhizome_tests::harness::tls::TlsFiles;
use rhizome_tests::harness::{mcp, Env, Node};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);
const REPLAY: &str = "replay = true\non_client_disconnect = \"detach\"\ndetach_grace = \"20s\"";

/// `[state]` (with `[state.tls]`) and `[coordinator]` for `redis-lock` over TLS.
fn tls_state(redis: &RedisServer, ca: &Path, client: Option<&TlsFiles>) -> String {
    let identity = client.map_or(String::new(), |c| {
        format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\n",
            c.client_cert.display(),
            c.client_key.display()
        )
    });
    format!(
        "[state]\nbackend = \"redis\"\nredis_url = \"{}\"\nop_timeout = \"1s\"\n\
         [state.tls]\nca_file = \"{}\"\n{identity}\n\
         [coordinator]\nmode = \"redis-lock\"\n",
        redis.url(),
        ca.display()
    )
}

async fn open_sse(node: &Node, last_id: Option<&str>) -> Reader {
    let key = fixture::bearer();
    let mut h = vec![
        ("authorization", key.as_str()),
        ("accept", "text/event-stream"),
    ];
    if let Some(id) = last_id {
        h.push(("last-event-id", id));
    }
    let path = "/e/sse?to=30&interval_ms=20&honour_last_event_id=1";
    let resp = Client::new()
        .open(Method::GET, &node.url(path), &h, "")
        .await;
    assert_eq!(resp.status(), 200);
    Reader::new(resp.into_body())
}

fn event_n(data: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(data).expect("json")["n"]
        .as_u64()
        .expect("n")
}

#[tokio::test]
async fn tokens_sessions_and_replay_go_through_redis_over_tls_with_a_client_certificate() {
    let env = Env::new("redis_tls_shared_state");
    let pki = env.tls_files("pki");
    let redis = env.redis_tls(&pki, true).await;
    let mock = fixture::mock(&env, &[]).await;
    let tuning = Tuning {
        sse: REPLAY,
        extra: tls_state(&redis, &pki.ca, Some(&pki)),
        ..Tuning::default()
    };
    let n1 = fixture::node(&env, "n1", &mock, &tuning).await;
    let n2 = fixture::node(&env, "n2", &mock, &tuning).await;
    let c = Client::new();
    let auth = fixture::bearer();
    let h = [("authorization", auth.as_str())];

    // One token for both nodes: the record is shared through Redis.
    for node in [&n1, &n2, &n1, &n2] {
        assert_eq!(c.get(&node.url("/a/x"), &h).await.status, 200);
    }
    assert_eq!(mock.stats().await["token_calls"]["svc-a"], 1);

    // An MCP session opened on n1 answers on n2.
    let init = mcp::call(&n1, None, "initialize").await;
    assert_eq!(init.status, 200, "{}", init.text());
    let session = init
        .header("mcp-session-id")
        .expect("session id")
        .to_string();
    let r = mcp::post(
        &n2,
        &auth,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // A stream read on n1 resumes on n2 from the buffer in Redis.
    let mut first = open_sse(&n1, None).await;
    let mut seen = Vec::new();
    let mut last = String::new();
    while seen.len() < 10 {
        let ev = first.next(WAIT).await.expect("an event");
        last = ev.id.clone().expect("id");
        seen.push(event_n(&ev.data));
    }
    drop(first);
    let mut again = open_sse(&n2, Some(&last)).await;
    seen.extend(again.rest(WAIT).await.iter().map(|ev| event_n(&ev.data)));
    assert_eq!(
        seen,
        (1..=30).collect::<Vec<u64>>(),
        "every event once, in order"
    );

    // It all lives in the TLS-only server.
    let keys = redis.cli(&["--scan", "--pattern", "rz:*"]);
    for family in ["rz:tok:", "rz:sess:", "rz:sse:"] {
        assert!(keys.contains(family), "no {family} key over TLS:\n{keys}");
    }
    assert_eq!(n1.metric("rhizome_redis_up").await, Some(1.0));
    env.assert_logs_clean();
}

#[tokio::test]
async fn a_wrong_ca_or_a_missing_client_certificate_stops_the_node_at_start() {
    let env = Env::new("redis_tls_refused");
    let pki = env.tls_files("pki");
    let other = env.tls_files("stranger");
    let redis = env.redis_tls(&pki, true).await;
    let mock = fixture::mock(&env, &[]).await;
    let tuning = |extra: String| Tuning {
        extra,
        ..Tuning::default()
    };

    // The server's certificate is signed by a CA the node does not trust.
    let cfg = env.write(
        "wrong-ca.toml",
        fixture::config(
            &env,
            &mock,
            &tuning(tls_state(&redis, &other.ca, Some(&pki))),
        ),
    );
    let printed = start_up_refuses(&cfg, &[(fixture::SECRET_A_ENV, OAUTH_SECRET_A)]).await;
    assert!(
        printed.contains("state.tls.ca_file: the Redis server's certificate is not trusted"),
        "{printed}"
    );

    // The server requires a client certificate and the node has none.
    let cfg = env.write(
        "no-client-cert.toml",
        fixture::config(&env, &mock, &tuning(tls_state(&redis, &pki.ca, None))),
    );
    let printed = start_up_refuses(&cfg, &[(fixture::SECRET_A_ENV, OAUTH_SECRET_A)]).await;
    assert!(
        printed.contains("state.tls: the Redis server refused the TLS connection"),
        "{printed}"
    );

    // A client certificate from another CA is refused the same way.
    let cfg = env.write(
        "other-client-cert.toml",
        fixture::config(
            &env,
            &mock,
            &tuning(tls_state(&redis, &pki.ca, Some(&other))),
        ),
    );
    let printed = start_up_refuses(&cfg, &[(fixture::SECRET_A_ENV, OAUTH_SECRET_A)]).await;
    assert!(
        printed.contains("state.tls: the Redis server refused the TLS connection"),
        "{printed}"
    );
    env.assert_logs_clean();
}
