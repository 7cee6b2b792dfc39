//! Upstreams: named groups of interchangeable targets behind one pooled client.
//! Targets are chosen round-robin among the healthy ones; passive outlier
//! ejection takes a target out after `eject_after` consecutive connect errors or
//! 5xx answers, for `eject_time` doubling on each repeated ejection (up to 8×).
//! A flapping target (back from ejection, a few good answers, failing again)
//! keeps its backoff: it is forgiven only once it has gone without a failure
//! for as long as its last ejection lasted. When every target is ejected the
//! one whose ejection ends first is used (panic routing), so a fully failing
//! upstream still gets probed.

pub mod client;
pub mod headers;

use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Uri;
use rhizome_proto::config::{ConfigError, UpstreamConfig};
// Tokio's clock (the system clock outside tests) so tests can pause time.
use tokio::time::Instant;

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

/// Ejections beyond this one do not lengthen the next: backoff caps at 8×.
const MAX_BACKOFF_DOUBLINGS: u32 = 3;

#[derive(Debug, Default)]
struct TargetHealth {
    consecutive_failures: u32,
    /// Ejections not yet forgiven; the next one lasts `eject_time × 2^this` (capped).
    ejections: u32,
    ejected_until: Option<Instant>,
    /// How long the last ejection lasted: the failure-free spell that forgives.
    last_ejection: Duration,
    /// Since when the target has had no failure (and was not ejected).
    clean_since: Option<Instant>,
}

impl TargetHealth {
    fn healthy(&mut self, now: Instant) {
        self.consecutive_failures = 0;
        if self.ejected_until.is_some_and(|until| until > now) {
            // A panic-routed attempt succeeded: the target is back from now.
            self.clean_since = Some(now);
        }
        self.ejected_until = None;
        let since = *self.clean_since.get_or_insert(now);
        if now.duration_since(since) >= self.last_ejection {
            self.ejections = 0;
        }
    }

    /// Counts a failure; returns the ejection time when it ejects the target.
    fn failed(&mut self, now: Instant, eject_after: u32, eject_time: Duration) -> Option<Duration> {
        self.clean_since = None;
        self.consecutive_failures += 1;
        if self.consecutive_failures < eject_after {
            return None;
        }
        let out_for = eject_time * (1u32 << self.ejections.min(MAX_BACKOFF_DOUBLINGS));
        let until = now + out_for;
        self.ejected_until = Some(until);
        self.ejections = self.ejections.saturating_add(1);
        self.consecutive_failures = 0;
        self.last_ejection = out_for;
        // The forgiving spell starts when the target is back.
        self.clean_since = Some(until);
        Some(out_for)
    }
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
            let health = self.targets[i].health.lock();
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
        let mut h = self.targets[idx].health.lock();
        let now = Instant::now();
        match outcome {
            Outcome::Healthy => h.healthy(now),
            Outcome::Failed => {
                if let Some(out_for) = h.failed(now, self.eject_after, self.eject_time) {
                    tracing::warn!(upstream = %self.name, target = %self.targets[idx].authority, for_secs = out_for.as_secs(), "target ejected");
                }
            }
        }
    }
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

    /// Ejects target 0 (`eject_after` = 2) and returns how long it is out.
    fn eject(u: &Upstream) -> Duration {
        u.report(0, Outcome::Failed);
        u.report(0, Outcome::Failed);
        let until = u.targets[0]
            .health
            .lock()
            .ejected_until
            .expect("target 0 ejected");
        until - Instant::now()
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_backoff_grows_across_flaps_and_resets_after_a_healthy_spell() {
        let u = upstream(&["http://a:1", "http://b:1"]);
        let s = Duration::from_secs;
        assert_eq!(eject(&u), s(10));
        tokio::time::advance(s(10)).await;
        // Back, a couple of good answers, failing again: twice as long.
        u.report(0, Outcome::Healthy);
        u.report(0, Outcome::Healthy);
        assert_eq!(eject(&u), s(20));
        tokio::time::advance(s(20)).await;
        // Failing again right away: doubles again, then caps at 8×.
        assert_eq!(eject(&u), s(40));
        tokio::time::advance(s(40)).await;
        assert_eq!(eject(&u), s(80));
        tokio::time::advance(s(80)).await;
        u.report(0, Outcome::Healthy);
        assert_eq!(eject(&u), s(80), "capped at 8× eject_time");
        // Healthy for less than its last ejection: not forgiven yet.
        tokio::time::advance(s(80)).await;
        u.report(0, Outcome::Healthy);
        tokio::time::advance(s(79)).await;
        u.report(0, Outcome::Healthy);
        assert_eq!(eject(&u), s(80));
        // Healthy for as long as its last ejection (counted from its return):
        // the backoff starts over.
        tokio::time::advance(s(80 + 80)).await;
        u.report(0, Outcome::Healthy);
        assert_eq!(eject(&u), s(10));
        // A single failure interrupts the healthy spell.
        tokio::time::advance(s(10)).await;
        tokio::time::advance(s(9)).await;
        u.report(0, Outcome::Failed);
        u.report(0, Outcome::Healthy);
        tokio::time::advance(s(9)).await;
        u.report(0, Outcome::Healthy);
        assert_eq!(eject(&u), s(20));
    }
}
