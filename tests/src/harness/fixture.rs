//! The standard test world: one mock upstream that knows every test
//! credential, and a node config with one route per credential kind. Tests
//! that need something else write their own TOML next to these.

use sha2::{Digest, Sha256};

use super::redis::RedisServer;
use super::redis_cluster::RedisCluster;
use super::secrets::*;
use super::sentinel::SentinelSet;
use super::{Env, Mock, Node};

/// Environment variable through which nodes receive `svc-a`'s secret
/// (exercises `{ env = … }` references).
pub const SECRET_A_ENV: &str = "RZ_TEST_SECRET_A";

/// Path of a file under `tests/fixtures/`.
pub fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Starts the mock that knows every test credential.
pub async fn mock(env: &Env, extra: &[&str]) -> Mock {
    let client_a = format!("svc-a:{OAUTH_SECRET_A}");
    let client_b = format!("svc-b:{OAUTH_SECRET_B}");
    let rs_pub = fixture("jwt-rs256.pub.pem");
    let mut args = vec![
        "--client",
        &client_a,
        "--client",
        &client_b,
        "--jwt-hs256-secret",
        JWT_HS256_SECRET,
        "--jwt-rs256-public-key",
        &rs_pub,
        "--jwt-audience",
        "api",
        "--static-key",
        STATIC_KEY,
    ];
    args.extend_from_slice(extra);
    env.mock("mock", &args).await
}

/// Tunables of the standard config.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// `refresh_margin` of the OAuth credentials.
    pub refresh_margin: &'static str,
    /// `failure_threshold` of every credential.
    pub failure_threshold: u32,
    /// `[routes.sse]` table body applied to the SSE route.
    pub sse: &'static str,
    /// `max_body` of the `/n/` route.
    pub max_body: &'static str,
    /// TOML appended at the end (e.g. `[state]` and `[coordinator]` tables).
    pub extra: String,
    /// `state.op_timeout` of [`cluster`]'s nodes: 1 s by default, because
    /// on a loaded machine a Redis answer can take longer than the 250 ms a
    /// production node uses, and a timed-out write that Redis did apply
    /// (a lock taken) makes a test see G6 where it checks something else.
    /// Tests of the outage behaviour itself set 250 ms.
    pub op_timeout: &'static str,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            refresh_margin: "5m",
            failure_threshold: 3,
            sse: "",
            max_body: "10MiB",
            extra: String::new(),
            op_timeout: "1s",
        }
    }
}

/// The standard node config against `mock`.
pub fn config(env: &Env, mock: &Mock, t: &Tuning) -> String {
    let other_key_file = env.write("other-client.key", format!("{OTHER_CLIENT_KEY}\n"));
    let ck = hex::encode(Sha256::digest(CLIENT_KEY.as_bytes()));
    let base = mock.base();
    let rs = fixture("jwt-rs256.pem");
    let Tuning {
        refresh_margin,
        failure_threshold,
        sse,
        max_body,
        extra,
        // Used by `cluster`, in the `[state]` table it prepends to `extra`.
        op_timeout: _,
    } = t;
    let of = other_key_file.display();
    format!(
        r#"
[node]
admin_token = "{ADMIN_TOKEN}"
shutdown_grace = "5s"

[[clients]]
name = "ci"
key_sha256 = "{ck}"

[[clients]]
name = "other"
key = {{ file = "{of}" }}

[[credentials]]
name = "oauth-a"
kind = "oauth2_client_credentials"
token_url = "{base}/oauth/token"
client_id = "svc-a"
client_secret = {{ env = "{SECRET_A_ENV}" }}
client_auth = "basic"
scope = "api"
refresh_margin = "{refresh_margin}"
failure_threshold = {failure_threshold}

[[credentials]]
name = "oauth-b"
kind = "oauth2_client_credentials"
token_url = "{base}/oauth/token"
client_id = "svc-b"
client_secret = "{OAUTH_SECRET_B}"
client_auth = "body"
refresh_margin = "{refresh_margin}"
failure_threshold = {failure_threshold}

[[credentials]]
name = "static"
kind = "static"
token = "{STATIC_KEY}"
inject = {{ header = "api-key", value = "{{token}}" }}

[[credentials]]
name = "jwt-hs"
kind = "jwt"
signing_key = "{JWT_HS256_SECRET}"
algorithm = "HS256"
claims = {{ iss = "rhizome", sub = "svc-hs", aud = "api", scope = "read" }}
lifetime = "1h"

[[credentials]]
name = "jwt-rs"
kind = "jwt"
signing_key = {{ file = "{rs}" }}
algorithm = "RS256"
claims = {{ iss = "rhizome", sub = "svc-rs", aud = "api", tenant = "b" }}
lifetime = "1h"

[[credentials]]
name = "cookie"
kind = "oauth2_client_credentials"
token_url = "{base}/oauth/token"
client_id = "svc-a"
client_secret = {{ env = "{SECRET_A_ENV}" }}
inject = {{ header = "Cookie", value = "session={{token}}" }}

[[upstreams]]
name = "mock"
targets = ["{base}"]

[[routes]]
name = "a"
path_prefix = "/a/"
strip_prefix = true
upstream = "mock"
credentials = ["oauth-a"]
public_paths = ["/a/open/"]

[[routes]]
name = "b"
path_prefix = "/b/"
strip_prefix = true
upstream = "mock"
credentials = ["oauth-b"]

[[routes]]
name = "s"
path_prefix = "/s/"
strip_prefix = true
upstream = "mock"
credentials = ["static"]

[[routes]]
name = "jh"
path_prefix = "/jh/"
strip_prefix = true
upstream = "mock"
credentials = ["jwt-hs"]

[[routes]]
name = "jr"
path_prefix = "/jr/"
strip_prefix = true
upstream = "mock"
credentials = ["jwt-rs"]

[[routes]]
name = "c"
path_prefix = "/c/"
strip_prefix = true
upstream = "mock"
credentials = ["cookie"]

[[routes]]
name = "pool"
path_prefix = "/p/"
strip_prefix = true
upstream = "mock"
credentials = ["oauth-a", "oauth-b"]

[[routes]]
name = "n"
path_prefix = "/n/"
strip_prefix = true
upstream = "mock"
max_body = "{max_body}"

[[routes]]
name = "m"
path_prefix = "/m/"
strip_prefix = true
upstream = "mock"
credentials = ["static"]
session = "mcp"

[[routes]]
name = "e"
path_prefix = "/e/"
strip_prefix = true
upstream = "mock"
credentials = ["oauth-a"]
[routes.sse]
{sse}

{extra}
"#
    )
}

/// Starts a node on the standard config and waits until it is ready.
pub async fn node(env: &Env, name: &str, mock: &Mock, t: &Tuning) -> Node {
    let node = node_unready(env, name, mock, t).await;
    node.wait_ready().await;
    node
}

/// Starts a node on the standard config without waiting for readiness.
pub async fn node_unready(env: &Env, name: &str, mock: &Mock, t: &Tuning) -> Node {
    let cfg = config(env, mock, t);
    env.node_with_env(name, &cfg, &[(SECRET_A_ENV, OAUTH_SECRET_A)])
        .await
}

/// The standard world of one test: its log directory, the mock, and a node
/// on the standard config.
#[derive(Debug)]
pub struct World {
    /// Log and config directory.
    pub env: Env,
    /// The mock upstream.
    pub mock: Mock,
    /// The node.
    pub node: Node,
}

/// Starts the standard world for `test`.
pub async fn world(test: &str, mock_args: &[&str], tuning: &Tuning) -> World {
    let env = Env::new(test);
    let mock = mock(&env, mock_args).await;
    let node = node(&env, "node", &mock, tuning).await;
    World { env, mock, node }
}

/// Several nodes sharing a private `redis-server` in `redis-lock` mode.
#[derive(Debug)]
pub struct Cluster {
    /// Log and config directory.
    pub env: Env,
    /// The shared Redis.
    pub redis: RedisServer,
    /// The mock upstream.
    pub mock: Mock,
    /// The nodes, named `n1`, `n2`, … and ready.
    pub nodes: Vec<Node>,
    /// The tuning the nodes run with (to start more of them).
    pub tuning: Tuning,
}

/// Starts Redis, the mock (with `mock_args`) and `n` ready nodes on the
/// standard config with `tuning` plus the `redis-lock` tables.
pub async fn cluster(test: &str, mock_args: &[&str], n: usize, tuning: Tuning) -> Cluster {
    let env = Env::new(test);
    let redis = env.redis().await;
    let mock = mock(&env, mock_args).await;
    let (tuning, nodes) = redis_lock_nodes(&env, &mock, &redis.url(), n, tuning).await;
    Cluster {
        env,
        redis,
        mock,
        nodes,
        tuning,
    }
}

/// `n` ready nodes `n1`, `n2`, … on the standard config with `tuning` plus
/// the `redis-lock` tables for `redis_url`; the tuning they run with.
async fn redis_lock_nodes(
    env: &Env,
    mock: &Mock,
    redis_url: &str,
    n: usize,
    tuning: Tuning,
) -> (Tuning, Vec<Node>) {
    let tuning = Tuning {
        extra: redis_lock(redis_url, tuning.op_timeout) + &tuning.extra,
        ..tuning
    };
    let mut nodes = Vec::new();
    for i in 1..=n {
        nodes.push(node(env, &format!("n{i}"), mock, &tuning).await);
    }
    (tuning, nodes)
}

/// Several nodes sharing a Redis behind Sentinel in `redis-lock` mode.
#[derive(Debug)]
pub struct SentinelCluster {
    /// Log and config directory.
    pub env: Env,
    /// The master, its replica and the three sentinels.
    pub set: SentinelSet,
    /// The mock upstream.
    pub mock: Mock,
    /// The nodes, named `n1`, `n2`, … and ready.
    pub nodes: Vec<Node>,
}

/// Starts a Sentinel deployment, the mock and `n` ready nodes on the
/// standard config with `tuning`, given the `redis+sentinel://` URL.
pub async fn sentinel_cluster(test: &str, n: usize, tuning: Tuning) -> SentinelCluster {
    let env = Env::new(test);
    let set = env.sentinel_set().await;
    let mock = mock(&env, &[]).await;
    let (_, nodes) = redis_lock_nodes(&env, &mock, &set.url(), n, tuning).await;
    SentinelCluster {
        env,
        set,
        mock,
        nodes,
    }
}

/// Several nodes sharing a Redis Cluster in `redis-lock` mode.
#[derive(Debug)]
pub struct OnRedisCluster {
    /// Log and config directory.
    pub env: Env,
    /// The three masters.
    pub redis: RedisCluster,
    /// The mock upstream.
    pub mock: Mock,
    /// The nodes, named `n1`, `n2`, … and ready.
    pub nodes: Vec<Node>,
}

/// Starts a three-master Redis Cluster, the mock (with `mock_args`) and `n`
/// ready nodes on the standard config with `tuning`, given the
/// `redis-cluster://` URL.
pub async fn on_redis_cluster(
    test: &str,
    mock_args: &[&str],
    n: usize,
    tuning: Tuning,
) -> OnRedisCluster {
    on_redis_cluster_with(test, false, mock_args, n, tuning).await
}

/// [`on_redis_cluster`], each master with a replica when `replicas`.
pub async fn on_redis_cluster_with(
    test: &str,
    replicas: bool,
    mock_args: &[&str],
    n: usize,
    tuning: Tuning,
) -> OnRedisCluster {
    let env = Env::new(test);
    let redis = env.redis_cluster_with(replicas).await;
    let mock = mock(&env, mock_args).await;
    let (_, nodes) = redis_lock_nodes(&env, &mock, &redis.url(), n, tuning).await;
    OnRedisCluster {
        env,
        redis,
        mock,
        nodes,
    }
}

/// `[state]` and `[coordinator]` for a cluster sharing `redis_url` in `redis-lock` mode.
pub fn redis_lock(redis_url: &str, op_timeout: &str) -> String {
    format!(
        "[state]\nbackend = \"redis\"\nredis_url = \"{redis_url}\"\nop_timeout = \"{op_timeout}\"\n\n[coordinator]\nmode = \"redis-lock\"\n"
    )
}

/// `Authorization` value of the test client `ci`.
pub fn bearer() -> String {
    format!("Bearer {CLIENT_KEY}")
}
