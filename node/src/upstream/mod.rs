//! Upstreams: named groups of interchangeable targets behind one pooled client.
//! Targets are chosen round-robin among the healthy ones; passive outlier
//! ejection takes a target out after `eject_after` consecutive connect errors or
//! 5xx answers, for `eject_time` doubling on each repeated ejection (up to 8×).
//! When every target is ejected the one whose ejection ends first is used
//! (panic routing), so a fully failing upstream still gets probed.

pub mod client;
pub mod headers;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use http::Uri;
use rhizome_proto::config::{ConfigError, UpstreamConfig};

pub use client::HttpClient;

/// A named group of targets and the client that reaches them.
#[derive(Debug)]
pub struct Upstream {
    /// Name from the config.
    pub name: String,
    targets: Vec<Target>,
    client: HttpClient,
    rr: AtomicUsize,
    eject_after: u32,
    eject_time: Duration,
}

#[derive(Debug)]
struct Target {
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    health: Mutex<TargetHealth>,
}

#[derive(Debug, Default)]
struct TargetHealth {
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

/// What an attempt against a target showed about its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered below 500.
    Healthy,
    /// Connect error, or a 5xx answer.
    Failed,
}

impl Upstream {
    /// Builds the upstream `index` of the config.
    pub fn from_config(index: usize, cfg: &UpstreamConfig) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut targets = Vec::new();
        for (j, t) in cfg.targets.iter().enumerate() {
            match parse_target(t) {
                Ok(target) => targets.push(target),
                Err(msg) => errors.push(ConfigError::new(
                    format!("upstreams[{index}].targets[{j}]"),
                    msg,
                )),
            }
        }
        let client = client::build(&client::ClientSettings {
            protocol: cfg.protocol,
            connect_timeout: cfg.connect_timeout,
            ca_file: cfg.ca_file.as_deref(),
            pool_idle_timeout: cfg.pool_idle_timeout,
            pool_max_idle_per_host: cfg.pool_max_idle_per_target,
        })
        .map_err(|e| {
            errors.push(ConfigError::new(
                format!("upstreams[{index}].ca_file"),
                e.to_string(),
            ));
        });
        match client {
            Ok(client) if errors.is_empty() => Ok(Upstream {
                name: cfg.name.clone(),
                targets,
                client,
                rr: AtomicUsize::new(0),
                eject_after: cfg.eject_after,
                eject_time: cfg.eject_time,
            }),
            _ => Err(errors),
        }
    }

    /// The pooled client of this upstream.
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// True when there are no targets (never, once validated).
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Picks a target index round-robin among healthy targets, avoiding `exclude`.
    pub fn pick(&self, exclude: Option<usize>) -> usize {
        let n = self.targets.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut soonest: Option<(Instant, usize)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if Some(i) == exclude && n > 1 {
                continue;
            }
            let health = lock(&self.targets[i].health);
            match health.ejected_until {
                Some(until) if until > now => {
                    if soonest.is_none_or(|(s, _)| until < s) {
                        soonest = Some((until, i));
                    }
                }
                _ => return i,
            }
        }
        soonest.map_or(start % n, |(_, i)| i)
    }

    /// The absolute URI of `path_and_query` on target `idx`.
    pub fn uri(&self, idx: usize, path_and_query: &str) -> Result<Uri, http::Error> {
        let t = &self.targets[idx];
        Uri::builder()
            .scheme(t.scheme.clone())
            .authority(t.authority.clone())
            .path_and_query(format!("{}{}", t.base_path, path_and_query))
            .build()
    }

    /// The base URL of target `idx` (what sessions are pinned to).
    pub fn target_url(&self, idx: usize) -> String {
        let t = &self.targets[idx];
        format!("{}://{}{}", t.scheme, t.authority, t.base_path)
    }

    /// The index of the target whose base URL is `url`.
    pub fn index_of(&self, url: &str) -> Option<usize> {
        (0..self.targets.len()).find(|&i| self.target_url(i) == url)
    }

    /// Records the outcome of one attempt against target `idx`.
    pub fn report(&self, idx: usize, outcome: Outcome) {
        let mut h = lock(&self.targets[idx].health);
        match outcome {
            Outcome::Healthy => *h = TargetHealth::default(),
            Outcome::Failed => {
                h.consecutive_failures += 1;
                if h.consecutive_failures >= self.eject_after {
                    let factor = 1u32 << h.ejections.min(3);
                    h.ejected_until = Some(Instant::now() + self.eject_time * factor);
                    h.ejections += 1;
                    h.consecutive_failures = 0;
                    tracing::warn!(upstream = %self.name, target = %self.targets[idx].authority, for_secs = (self.eject_time * factor).as_secs(), "target ejected");
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn parse_target(text: &str) -> Result<Target, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("\"{text}\" is not a URL: {e}"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("\"{text}\" has no scheme"))?;
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("\"{text}\" has no host"))?;
    if uri.query().is_some() {
        return Err(format!("\"{text}\" must not have a query"));
    }
    Ok(Target {
        scheme,
        authority,
        base_path: uri.path().trim_end_matches('/').to_string(),
        health: Mutex::new(TargetHealth::default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(targets: &[&str]) -> Upstream {
        let cfg: UpstreamConfig = toml::from_str(&format!(
            "name = 'u'\ntargets = {targets:?}\neject_after = 2\neject_time = '10s'"
        ))
        .expect("cfg");
        Upstream::from_config(0, &cfg).expect("upstream")
    }

    #[test]
    fn uri_joins_base_path() {
        let u = upstream(&["http://127.0.0.1:9/base/"]);
        assert_eq!(
            u.uri(0, "/x?y=1").expect("uri").to_string(),
            "http://127.0.0.1:9/base/x?y=1"
        );
    }

    #[test]
    fn failing_target_is_ejected_then_panic_routed() {
        let u = upstream(&["http://a:1", "http://b:1"]);
        u.report(0, Outcome::Failed);
        u.report(0, Outcome::Failed);
        for _ in 0..10 {
            assert_eq!(u.pick(None), 1, "ejected target 0 must not be picked");
        }
        u.report(1, Outcome::Failed);
        u.report(1, Outcome::Failed);
        // Both ejected: the one whose ejection ends first (target 0).
        assert_eq!(u.pick(None), 0);
    }
}
