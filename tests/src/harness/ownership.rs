//! The cluster-mode world: a real `redis-server`, the mock, three real
//! coordinators and real nodes in `coordinator.mode = "cluster"`, with a
//! pool of OAuth credentials (`pool-1` … on routes `/p1/` …, clients
//! `svc-p1` …) besides the standard ones. And the checks the ownership
//! tests share: who considers itself the owner of what (asked of every node's
//! admin API), and a sampler that asks every 100 ms and records each moment
//! two nodes both acted as owner of one credential.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::coordinator::Coordinators;
use super::fixture::{self, Tuning};
use super::http::Client;
use super::redis::RedisServer;
use super::secrets::{ADMIN_TOKEN, OAUTH_SECRET_POOL};
use super::{Env, Mock, Node};

/// Size of the credential pool.
pub const POOL: usize = 5;

/// Mock arguments that accept the pool's clients.
pub fn pool_clients() -> Vec<String> {
    (1..=POOL)
        .flat_map(|i| {
            [
                "--client".to_string(),
                format!("svc-p{i}:{OAUTH_SECRET_POOL}"),
            ]
        })
        .collect()
}

/// TOML of the pool credentials and their routes against `mock`.
pub fn pool_config(mock: &Mock, refresh_margin: &str) -> String {
    let base = mock.base();
    (1..=POOL)
        .map(|i| {
            format!(
                "[[credentials]]\nname = \"pool-{i}\"\nkind = \"oauth2_client_credentials\"\n\
                 token_url = \"{base}/oauth/token\"\nclient_id = \"svc-p{i}\"\n\
                 client_secret = \"{OAUTH_SECRET_POOL}\"\nrefresh_margin = \"{refresh_margin}\"\n\n\
                 [[routes]]\nname = \"p{i}\"\npath_prefix = \"/p{i}/\"\nstrip_prefix = true\n\
                 upstream = \"mock\"\ncredentials = [\"pool-{i}\"]\n\n"
            )
        })
        .collect()
}

/// `[state]` and `[coordinator]` of a node in cluster mode. `op_timeout` is
/// 1 s: these tests count every failed request, and on a loaded 2-core
/// machine a 250 ms Redis probe can time out and open the breaker.
pub fn cluster_mode(redis_url: &str, endpoints: &[String]) -> String {
    let list = endpoints
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[state]\nbackend = \"redis\"\nredis_url = \"{redis_url}\"\nop_timeout = \"1s\"\n\n\
         [coordinator]\nmode = \"cluster\"\nendpoints = [{list}]\n\
         heartbeat_interval = \"500ms\"\nnode_ttl = \"3s\"\n"
    )
}

/// Redis, mock, coordinators and nodes of one ownership test.
#[derive(Debug)]
pub struct RaftWorld {
    /// Log and config directory.
    pub env: Env,
    /// The shared Redis.
    pub redis: RedisServer,
    /// The mock upstream and token server.
    pub mock: Mock,
    /// The coordinator replicas.
    pub coords: Coordinators,
    /// The nodes, `n1`, `n2`, … (a stopped one stays in place).
    pub nodes: Vec<Node>,
    /// Their node ids, by index.
    pub names: Vec<String>,
    /// The tuning every node runs with (cluster tables included).
    pub tuning: Tuning,
}

/// Starts Redis, the mock (pool clients plus `mock_args`), three
/// coordinators and `n` ready nodes in cluster mode with `tuning`, and waits
/// until every shared credential has an owner acting on it.
pub async fn raft_world(test: &str, mock_args: &[&str], n: usize, tuning: Tuning) -> RaftWorld {
    let env = Env::new(test);
    let redis = env.redis().await;
    let mut args: Vec<String> = pool_clients();
    args.extend(mock_args.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mock = fixture::mock(&env, &args).await;
    let coords = Coordinators::start(&env, 3).await;
    let tuning = Tuning {
        extra: format!(
            "{}{}{}",
            pool_config(&mock, tuning.refresh_margin),
            cluster_mode(&redis.url(), &coords.endpoints()),
            tuning.extra
        ),
        ..tuning
    };
    let mut world = RaftWorld {
        env,
        redis,
        mock,
        coords,
        nodes: Vec::new(),
        names: Vec::new(),
        tuning,
    };
    for i in 1..=n {
        world.add_node(&format!("n{i}")).await;
    }
    let live = world.live();
    world.wait_owned(&live).await;
    world
}

impl RaftWorld {
    /// Starts one more node called `name` and waits until it is ready.
    pub async fn add_node(&mut self, name: &str) -> usize {
        let node = fixture::node(&self.env, name, &self.mock, &self.tuning).await;
        self.nodes.push(node);
        self.names.push(name.to_string());
        self.nodes.len() - 1
    }

    /// Indexes of the nodes still running.
    pub fn live(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].proc.is_running())
            .collect()
    }

    /// Node id of index `i`.
    pub fn name(&self, i: usize) -> String {
        self.names[i].clone()
    }

    /// Waits until every shared credential has exactly one owner acting on
    /// it among the nodes `among`; returns credential → node index.
    pub async fn wait_owned(&self, among: &[usize]) -> BTreeMap<String, usize> {
        self.wait_owned_such(among, |_| true).await
    }

    /// [`Self::wait_owned`] until the owners also satisfy `settled` (a
    /// complete assignment can still be the one before a change).
    pub async fn wait_owned_such(
        &self,
        among: &[usize],
        settled: impl Fn(&BTreeMap<String, usize>) -> bool,
    ) -> BTreeMap<String, usize> {
        let admin: Vec<(String, String)> = among
            .iter()
            .map(|i| (self.name(*i), self.nodes[*i].admin_url("")))
            .collect();
        super::wait_for(
            "every shared credential owned by one node",
            Duration::from_secs(30),
            || {
                let admin = admin.clone();
                let settled = &settled;
                async move {
                    let owners = self_owners(&admin).await?;
                    let expected = shared_credentials();
                    let complete = expected
                        .iter()
                        .all(|c| owners.get(c).is_some_and(|o| o.len() == 1));
                    if !complete {
                        return None;
                    }
                    let owners: BTreeMap<String, usize> = owners
                        .into_iter()
                        .map(|(c, o)| {
                            let idx = self.names.iter().position(|n| *n == o[0]);
                            (c, idx.unwrap_or(usize::MAX))
                        })
                        .collect();
                    settled(&owners).then_some(owners)
                }
            },
        )
        .await
    }

    /// Admin URLs (base) of the nodes `among`, with their names.
    pub fn admin_bases(&self, among: &[usize]) -> Vec<(String, String)> {
        among
            .iter()
            .map(|i| (self.name(*i), self.nodes[*i].admin_url("")))
            .collect()
    }
}

/// Names of the credentials shared through Redis in the fixture config.
pub fn shared_credentials() -> Vec<String> {
    let mut names: Vec<String> = ["oauth-a", "oauth-b", "cookie"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.extend((1..=POOL).map(|i| format!("pool-{i}")));
    names.sort();
    names
}

/// One node's admin view of its credentials, or `None` when it does not
/// answer within 300 ms (killed or frozen: it acts on nothing then).
pub async fn credentials_view(admin_base: &str) -> Option<Value> {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = Client::new()
        .try_get(
            &format!("{admin_base}/admin/v1/credentials"),
            &[("authorization", auth.as_str())],
            Duration::from_millis(300),
        )
        .await?;
    (r.status == 200).then(|| r.json())
}

/// Credential → the nodes that consider themselves its owner, asking every
/// node of `admin` (name, admin base URL) at once. `None` when no node answered.
pub async fn self_owners(admin: &[(String, String)]) -> Option<BTreeMap<String, Vec<String>>> {
    let views =
        futures_util::future::join_all(admin.iter().map(|(_, base)| credentials_view(base))).await;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut answered = false;
    for ((name, _), view) in admin.iter().zip(views) {
        let Some(view) = view else { continue };
        answered = true;
        for c in view["credentials"].as_array().into_iter().flatten() {
            let cred = c["name"].as_str().unwrap_or_default().to_string();
            if c["owner"].as_str() == Some(name.as_str()) && shared_credentials().contains(&cred) {
                out.entry(cred).or_default().push(name.clone());
            }
        }
    }
    answered.then_some(out)
}

/// Asks every 100 ms which nodes consider themselves owner of what, until
/// stopped; counts samples and keeps every double ownership seen.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    nodes: Arc<parking_lot::Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<(u64, Vec<String>)>,
}

impl Sampler {
    /// Starts sampling the nodes of `admin` (name, admin base URL).
    pub fn start(admin: Vec<(String, String)>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let nodes = Arc::new(parking_lot::Mutex::new(admin));
        let (flag, list) = (stop.clone(), nodes.clone());
        let task = tokio::spawn(async move {
            let (mut samples, mut doubles) = (0u64, Vec::new());
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                let admin = list.lock().clone();
                let Some(owners) = self_owners(&admin).await else {
                    continue;
                };
                samples += 1;
                for (cred, nodes) in owners.into_iter().filter(|(_, n)| n.len() > 1) {
                    doubles.push(format!("sample {samples}: {cred} owned by {nodes:?}"));
                }
            }
            (samples, doubles)
        });
        Sampler { stop, nodes, task }
    }

    /// Samples node `name` (admin base URL `base`) too from now on.
    pub fn add(&self, name: String, base: String) {
        self.nodes.lock().push((name, base));
    }

    /// Stops and returns (samples taken, double ownerships seen).
    pub async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("sampler")
    }
}
