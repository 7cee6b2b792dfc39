//! Fencing and the token scripts, driven through the node's own
//! `SharedTokens` against a real `redis-server`: a stale writer is fenced out,
//! a lost fence counter cannot rewind the epoch, invalidation is
//! compare-and-set, only the holder releases a lock. And a lock attempt whose
//! caller gave up never takes the lock later: not when Redis was frozen, not
//! when the network delivered the command late, not when the attempt was
//! dropped while Redis was unreachable and fred reconnected afterwards.

mod common;

use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::ClientLike;
use rhizome_node::state::redis::{Redis, StateError};
use rhizome_node::state::tokens::{Lease, SharedTokens};
use rhizome_proto::records::{fence_key, lock_key, token_key};
use rhizome_tests::harness::redis::RedisServer;
use rhizome_tests::harness::{wait_for, Env};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const CRED: &str = "c";
const OP_TIMEOUT: Duration = Duration::from_millis(250);
const LONG_LEASE: Duration = Duration::from_secs(30);

/// A node's Redis client on `port`, connected.
async fn client(port: u16) -> Arc<Redis> {
    common::node_redis(port, OP_TIMEOUT).await
}

/// Token records as node `name` sees them, its scripts loaded.
async fn node(redis: Arc<Redis>, name: &str, lease: Duration) -> SharedTokens {
    let tokens = SharedTokens::new(redis, name, None, lease).expect("shared tokens");
    tokens.preload().await.expect("scripts loaded");
    tokens
}

async fn write(tokens: &SharedTokens, lease: &Lease, token: &str) -> Option<u64> {
    let token = SecretString::from(token.to_string());
    tokens
        .write(CRED, lease, &token, 1, None, None)
        .await
        .expect("write answered")
}

/// The stored token and its version.
async fn stored(tokens: &SharedTokens) -> Option<(String, u64)> {
    let rec = tokens.read(CRED).await.expect("read answered")?;
    Some((rec.value.expose_secret().to_string(), rec.version))
}

/// Takes the lock on `CRED` under `assignment`; it must be free.
async fn lock(tokens: &SharedTokens, assignment: u64) -> Lease {
    tokens
        .try_lock(CRED, assignment)
        .await
        .expect("answered")
        .expect("the lock is free")
}

async fn wait_lock_expired(redis: &RedisServer) {
    let key = lock_key(CRED);
    wait_for(
        "the short lock to expire",
        Duration::from_secs(5),
        || async { (redis.cli(&["EXISTS", &key]).trim() == "0").then_some(()) },
    )
    .await;
}

/// Node `a` held the lock on a short lease that expired; node `b` has taken
/// it since.
struct Retaken {
    env: Env,
    redis: RedisServer,
    a: SharedTokens,
    b: SharedTokens,
    /// `a`'s expired lease.
    stale: Lease,
    /// `b`'s lease.
    fresh: Lease,
}

/// Sets up [`Retaken`] in a fresh world for `test`.
async fn retaken(test: &str) -> Retaken {
    let env = Env::new(test);
    let redis = env.redis().await;
    let a = node(client(redis.port).await, "a", Duration::from_millis(300)).await;
    let b = node(client(redis.port).await, "b", LONG_LEASE).await;
    let stale = lock(&a, 0).await;
    wait_lock_expired(&redis).await;
    let fresh = lock(&b, 0).await;
    Retaken {
        env,
        redis,
        a,
        b,
        stale,
        fresh,
    }
}

#[tokio::test]
async fn a_stale_writer_is_fenced_out_after_its_lock_expired_and_was_retaken() {
    let Retaken {
        env,
        redis: _redis,
        a,
        b,
        stale,
        fresh,
    } = retaken("fencing_stale_writer").await;
    assert!(
        fresh.epoch > stale.epoch,
        "{} > {}",
        fresh.epoch,
        stale.epoch
    );
    let version = write(&b, &fresh, "tok-b").await.expect("b writes");

    assert_eq!(write(&a, &stale, "tok-a").await, None, "a is fenced out");
    assert_eq!(stored(&b).await, Some(("tok-b".to_string(), version)));
    env.assert_logs_clean();
}

#[tokio::test]
async fn unlock_by_a_former_holder_leaves_the_new_holders_lock() {
    let Retaken {
        env: _env,
        redis,
        a,
        b: _b,
        stale: former,
        fresh: _held,
    } = retaken("fencing_unlock").await;
    a.unlock(CRED, &former).await;

    assert!(
        a.try_lock(CRED, 0).await.expect("answered").is_none(),
        "b still holds the lock"
    );
    assert!(
        redis.cli(&["GET", &lock_key(CRED)]).starts_with("b:"),
        "the lock names its holder b"
    );
}

#[tokio::test]
async fn a_lost_fence_counter_cannot_rewind_the_epoch() {
    let env = Env::new("fencing_lost_counter");
    let redis = env.redis().await;
    let a = node(client(redis.port).await, "a", LONG_LEASE).await;
    let b = node(client(redis.port).await, "b", LONG_LEASE).await;
    let mut last = None;
    for i in 0..3 {
        let lease = lock(&a, 0).await;
        write(&a, &lease, &format!("tok-a{i}"))
            .await
            .expect("a writes");
        a.unlock(CRED, &lease).await;
        last = Some(lease.epoch);
    }
    let last = last.expect("three writes");

    // The counter is lost (evicted, a partial restore) while the record survives.
    assert_eq!(redis.cli(&["DEL", &fence_key(CRED)]).trim(), "1");
    let next = lock(&b, 0).await;
    assert!(
        next.epoch > last,
        "epoch {} after the record's {last}",
        next.epoch
    );
    let version = write(&b, &next, "tok-b")
        .await
        .expect("b is not fenced out");
    assert_eq!(stored(&b).await, Some(("tok-b".to_string(), version)));
    assert_eq!(
        redis.cli(&["GET", &fence_key(CRED)]).trim(),
        next.epoch.lock.to_string(),
        "the counter is back at the epoch handed out"
    );
}

#[tokio::test]
async fn a_newer_assignment_fences_out_degraded_writes_and_refuses_their_leases() {
    let env = Env::new("fencing_assignments");
    let redis = env.redis().await;
    let degraded = node(client(redis.port).await, "a", Duration::from_millis(300)).await;
    let owner = node(client(redis.port).await, "b", LONG_LEASE).await;

    // A degraded-mode holder under assignment 7 runs its counter up.
    let mut old = None;
    for i in 0..3 {
        let lease = lock(&degraded, 7).await;
        write(&degraded, &lease, &format!("tok-old{i}"))
            .await
            .expect("writes");
        degraded.unlock(CRED, &lease).await;
        old = Some(lease);
    }
    let old = old.expect("leases");
    // The coordinator assigns the credential anew (raft index 8).
    let lease = lock(&owner, 8).await;
    assert!(lease.epoch > old.epoch, "{} > {}", lease.epoch, old.epoch);
    let version = write(&owner, &lease, "tok-new").await.expect("writes");
    owner.unlock(CRED, &lease).await;
    assert_eq!(write(&degraded, &old, "tok-late").await, None, "fenced out");
    assert!(
        degraded
            .try_lock(CRED, 7)
            .await
            .expect("answered")
            .is_none(),
        "a lease under the older assignment is refused"
    );
    assert_eq!(stored(&owner).await, Some(("tok-new".to_string(), version)));
    // Degraded writes under the new assignment are ordered by the counter again.
    let next = lock(&degraded, 8).await;
    assert!(next.epoch > lease.epoch);
    env.assert_logs_clean();
}

#[tokio::test]
async fn invalidation_is_compare_and_set_on_the_version() {
    let env = Env::new("fencing_invalidate");
    let redis = env.redis().await;
    let a = node(client(redis.port).await, "a", LONG_LEASE).await;

    let lease = lock(&a, 0).await;
    let v1 = write(&a, &lease, "tok-1").await.expect("writes");
    a.unlock(CRED, &lease).await;
    assert!(a.invalidate(CRED, v1).await.expect("answered"));
    assert_eq!(stored(&a).await, None, "an invalidated token is not served");
    assert!(
        !a.invalidate(CRED, v1).await.expect("answered"),
        "a second invalidation of the same version is a no-op"
    );

    let lease = lock(&a, 0).await;
    let v2 = write(&a, &lease, "tok-2").await.expect("writes");
    a.unlock(CRED, &lease).await;
    assert!(
        !a.invalidate(CRED, v1).await.expect("answered"),
        "an older version does not invalidate the newer token"
    );
    assert_eq!(stored(&a).await, Some(("tok-2".to_string(), v2)));
    assert_eq!(redis.cli(&["HGET", &token_key(CRED), "valid"]).trim(), "1");
}

/// The abandoned attempt left no lock behind: the lock key is absent, and
/// another node takes the lock at once rather than after a lease.
async fn assert_nothing_was_locked(redis: &RedisServer) {
    assert_eq!(redis.cli(&["EXISTS", &lock_key(CRED)]).trim(), "0");
    let b = node(client(redis.port).await, "b", LONG_LEASE).await;
    assert!(
        first_lock_answer(&b).await,
        "another node refreshes at once, not after the {LONG_LEASE:?} lease"
    );
}

/// Locks `CRED` from `tokens`, retrying while its client still reports Redis
/// down; the first answer counts.
async fn first_lock_answer(tokens: &SharedTokens) -> bool {
    wait_for("a lock answer", Duration::from_secs(5), || async {
        match tokens.try_lock(CRED, 0).await {
            Ok(lease) => Some(lease.is_some()),
            Err(StateError::Unavailable(_)) => None,
            Err(e) => panic!("{e}"),
        }
    })
    .await
}

#[tokio::test]
async fn a_lock_attempt_abandoned_while_redis_was_frozen_never_takes_the_lock() {
    let env = Env::new("fencing_frozen");
    let redis = env.redis().await;
    let a = node(client(redis.port).await, "a", LONG_LEASE).await;

    redis.pause();
    let gave_up = a.try_lock(CRED, 0).await;
    redis.resume();
    assert!(
        matches!(gave_up, Err(StateError::Unavailable(_))),
        "{gave_up:?}"
    );

    // redis-cli's command comes on a new connection, so Redis serves it after
    // everything it had received before the resume.
    assert_nothing_was_locked(&redis).await;
}

/// A TCP link to Redis standing for the network between a node and Redis.
/// While held it delivers a chunk containing `marker` only when released (a
/// network that stalls one command past its timeout); while cut it closes
/// every connection and refuses new ones (a partition; Redis keeps running).
struct Link {
    port: u16,
    hold: watch::Sender<bool>,
    cut: watch::Sender<bool>,
}

impl Link {
    async fn to(redis_port: u16, marker: &'static [u8]) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (hold, held) = watch::channel(false);
        let (cut, is_cut) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *is_cut.borrow() {
                    continue;
                }
                if let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)).await {
                    let (held, is_cut) = (held.clone(), is_cut.clone());
                    tokio::spawn(relay(client, server, marker, held, is_cut));
                }
            }
        });
        Link { port, hold, cut }
    }

    fn hold(&self, on: bool) {
        self.hold.send_replace(on);
    }

    fn cut(&self, on: bool) {
        self.cut.send_replace(on);
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    marker: &'static [u8],
    mut held: watch::Receiver<bool>,
    mut is_cut: watch::Receiver<bool>,
) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let down = tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from_client.read(&mut buf).await {
            if buf[..n].windows(marker.len()).any(|w| w == marker) {
                // Delivered even if the client hung up meanwhile, as a network would.
                let _ = held.wait_for(|on| !on).await;
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = is_cut.wait_for(|on| *on) => down.abort(),
    }
}

fn evalsha_calls(redis: &RedisServer) -> u64 {
    redis.commands().get("evalsha").copied().unwrap_or(0)
}

#[tokio::test]
async fn a_lock_command_delivered_after_its_caller_gave_up_does_nothing() {
    let env = Env::new("fencing_late_delivery");
    let redis = env.redis().await;
    let link = Link::to(redis.port, b"EVALSHA").await;
    let a = node(client(link.port).await, "a", LONG_LEASE).await;

    let before = evalsha_calls(&redis);
    link.hold(true);
    let gave_up = a.try_lock(CRED, 0).await;
    assert!(
        matches!(gave_up, Err(StateError::Unavailable(_))),
        "{gave_up:?}"
    );
    link.hold(false);
    wait_for(
        "the stalled lock command to reach Redis and run",
        Duration::from_secs(5),
        || async { (evalsha_calls(&redis) > before).then_some(()) },
    )
    .await;

    assert_nothing_was_locked(&redis).await;
}

#[tokio::test]
async fn a_lock_attempt_dropped_while_redis_was_unreachable_does_not_lock_after_reconnecting() {
    let env = Env::new("fencing_dropped");
    let redis = env.redis().await;
    let link = Link::to(redis.port, b"EVALSHA").await;
    let node_redis = client(link.port).await;
    let a = node(node_redis.clone(), "a", LONG_LEASE).await;

    link.cut(true);
    wait_for(
        "fred to notice and start reconnecting",
        Duration::from_secs(5),
        || async {
            (0..4)
                .all(|_| !node_redis.client().is_connected())
                .then_some(())
        },
    )
    .await;
    // The caller gives up (its task is cancelled) before any timeout fires.
    // Attempts the node's breaker turns away without trying are repeated.
    wait_for(
        "a lock attempt that reached the client",
        Duration::from_secs(5),
        || async {
            match tokio::time::timeout(Duration::from_millis(50), a.try_lock(CRED, 0)).await {
                Ok(Err(StateError::Unavailable(e))) if e.contains("failing fast") => None,
                Ok(Ok(Some(_))) => panic!("locked while Redis was unreachable"),
                _ => Some(()),
            }
        },
    )
    .await;

    link.cut(false);
    tokio::time::timeout(Duration::from_secs(10), node_redis.wait_connected())
        .await
        .expect("reconnected");
    // Commands on one connection are handled in order: once a later command
    // has been answered through every pooled connection, anything fred still
    // held for the dropped caller has run.
    for _ in 0..12 {
        wait_for(
            "a ping after the partition",
            Duration::from_secs(5),
            || async { node_redis.client().ping::<()>(None).await.ok() },
        )
        .await;
    }
    assert_nothing_was_locked(&redis).await;
}
