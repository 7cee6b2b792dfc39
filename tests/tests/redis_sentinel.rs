//! Redis behind Sentinel: nodes given a `redis+sentinel://` URL find the
//! master through the sentinels. When the master is SIGKILLed and Sentinel
//! promotes the replica, the nodes follow it by themselves and serve
//! sessions, tokens and replayed streams again shortly after the promotion,
//! with what was written before the failover; meanwhile a request that needs
//! Redis is answered 503 `state_store_unavailable` (G6), never anything
//! worse.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use rhizome_tests::harness::fixture::{self, SentinelCluster, Tuning};
use rhizome_tests::harness::http::Client;
use rhizome_tests::harness::secrets::CLIENT_KEY;
use rhizome_tests::harness::sentinel::FAILOVER_TIMEOUT_MS;
use rhizome_tests::harness::sse::{self, numbers, Reader};
use rhizome_tests::harness::{mcp, wait_for, Node};

const WAIT: Duration = Duration::from_secs(10);
const REPLAY: &str = "replay = true\non_client_disconnect = \"detach\"\ndetach_grace = \"20s\"";
const STREAM: &str = "/e/sse?count=30&interval_ms=20";
/// The goal is the failover timeout + 2 s; the assertion is generous (a
/// loaded machine), the measured figure is printed.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);

/// Opens the test stream on `node`, resuming after `last` when given.
async fn open(node: &Node, last: Option<&str>) -> (u16, Reader) {
    let (status, reader, _) = sse::open(node, STREAM, CLIENT_KEY, last).await;
    (status, reader)
}

/// A resume after `last` on `node` replays 11..=30 exactly.
async fn resumes_whole(node: &Node, last: &str) -> bool {
    let (status, mut reader) = open(node, Some(last)).await;
    status == 200 && numbers(&reader.rest(WAIT).await) == (11..=30).collect::<Vec<_>>()
}

#[tokio::test]
async fn nodes_follow_a_promoted_replica_and_serve_sessions_tokens_and_replay_again() {
    let tuning = Tuning {
        sse: REPLAY,
        ..Tuning::default()
    };
    let SentinelCluster {
        env,
        set,
        mock,
        nodes,
    } = fixture::sentinel_cluster("redis_sentinel", 2, tuning).await;
    let [n1, n2] = <[Node; 2]>::try_from(nodes).expect("two nodes");
    let c = Client::new();
    let key = fixture::bearer();
    let h = [("authorization", key.as_str())];

    // Before: on n1 a token, a session and a stream, all through the master.
    assert_eq!(c.get(&n1.url("/a/before"), &h).await.status, 200);
    let session = mcp::call(&n1, None, "initialize")
        .await
        .header("mcp-session-id")
        .expect("session")
        .to_string();
    let (status, mut first) = open(&n1, None).await;
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    while seen.len() < 10 {
        seen.push(first.next(WAIT).await.expect("an event"));
    }
    let last = seen[9].id.clone().expect("a rhizome id");
    drop(first);
    assert!(resumes_whole(&n1, &last).await, "S2 through the master");
    let master_port = set.master_port().expect("a master");
    set.wait_replicated(set.server(master_port));

    // SIGKILL the master; Sentinel promotes the replica.
    let replica_port = set
        .servers
        .iter()
        .map(|s| s.port)
        .find(|p| *p != master_port)
        .expect("a replica");
    let idx = set
        .servers
        .iter()
        .position(|s| s.port == master_port)
        .expect("the master");
    let killed = Instant::now();
    set.servers[idx].proc.signal("KILL");
    let failing = mcp::only_fail_fast_until(&n2, || set.master_port() == Some(replica_port)).await;
    let promoted = Instant::now();
    println!(
        "sentinel promoted the replica {:?} after SIGKILL; {failing} requests answered 503 state_store_unavailable meanwhile",
        promoted - killed
    );

    // After: n2, which never saw any of them, serves the session, the token
    // (read from Redis: no second token call) and the replay; n1 writes a
    // new session to the promoted master.
    let served = RefCell::new([None::<Duration>; 4]);
    wait_for(
        "the session, the token and the replay served after the promotion",
        RECOVERY_DEADLINE,
        || {
            let (served, c, h, n1, n2, session, last) =
                (&served, &c, &h, &n1, &n2, &session, &last);
            async move {
                let todo = *served.borrow();
                if todo[0].is_none()
                    && mcp::call(n2, Some(session), "tools/list").await.status == 200
                {
                    served.borrow_mut()[0] = Some(promoted.elapsed());
                }
                if todo[1].is_none() && c.get(&n2.url("/a/after"), h).await.status == 200 {
                    served.borrow_mut()[1] = Some(promoted.elapsed());
                }
                if todo[2].is_none() && resumes_whole(n2, last).await {
                    served.borrow_mut()[2] = Some(promoted.elapsed());
                }
                if todo[3].is_none() && mcp::call(n1, None, "initialize").await.status == 200 {
                    served.borrow_mut()[3] = Some(promoted.elapsed());
                }
                served.borrow().iter().all(Option::is_some).then_some(())
            }
        },
    )
    .await;
    let served = served.into_inner();
    let slowest = served.iter().flatten().max().copied().unwrap_or_default();
    println!(
        "after the promotion: session {:?}, token {:?}, replay {:?} on n2, new session {:?} on n1 (goal: failover timeout {FAILOVER_TIMEOUT_MS} ms + 2 s)",
        served[0], served[1], served[2], served[3]
    );
    println!("failover: served again {slowest:?} after the promotion");
    assert_eq!(
        mock.stats().await["token_calls"]["svc-a"],
        1,
        "the token written before the failover is read, not fetched again"
    );
    // A token never fetched before is fetched under the lock on the new master.
    assert_eq!(c.get(&n2.url("/b/after"), &h).await.status, 200);
    assert_eq!(n2.metric("rhizome_redis_up").await, Some(1.0));
    env.assert_logs_clean();
}
