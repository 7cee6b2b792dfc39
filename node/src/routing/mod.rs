//! The route table: a request maps to the route with the longest matching
//! `path_prefix` (routes with a `host` win over host-less ones of equal length).
//! A prefix ending in `/` matches any path below it; one without matches itself
//! and paths below `prefix/`, never `prefixfoo`. The route also owns the path
//! rewrite (`strip_prefix`), its `public_paths` and its credential pool.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rhizome_proto::config::{ConfigError, RouteConfig, SessionMode, SseConfig};

use crate::credentials::{Credentials, Pool};
use crate::metrics::RouteMetrics;
use crate::upstream::Upstream;

/// A route, resolved against upstreams and credentials.
#[derive(Debug)]
pub struct Route {
    /// Name from the config.
    pub name: String,
    path_prefix: String,
    host: Option<String>,
    strip_prefix: bool,
    public_paths: Vec<String>,
    /// Where requests go.
    pub upstream: Arc<Upstream>,
    /// Credentials injected round-robin.
    pub pool: Pool,
    /// Bound on waiting for the upstream's response head.
    pub timeout: Duration,
    /// Bodies up to this size are kept for a 401 retry.
    pub retry_body_limit: u64,
    /// Largest accepted request body.
    pub max_body: u64,
    /// SSE handling.
    pub sse: SseConfig,
    /// Session handling.
    pub session: SessionMode,
    /// Idle TTL of MCP sessions.
    pub session_idle_ttl: Duration,
    /// This route's request metrics.
    pub metrics: RouteMetrics,
}

impl Route {
    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        if let Some(want) = &self.host {
            if !host.is_some_and(|h| h.eq_ignore_ascii_case(want)) {
                return false;
            }
        }
        prefix_matches(&self.path_prefix, path)
    }

    /// The path (and query) sent upstream for a request path (and query).
    pub fn upstream_path(&self, path: &str, query: Option<&str>) -> String {
        let mut out = if self.strip_prefix {
            let rest = path
                .strip_prefix(self.path_prefix.trim_end_matches('/'))
                .unwrap_or(path);
            if rest.starts_with('/') {
                rest.to_string()
            } else {
                format!("/{rest}")
            }
        } else {
            path.to_string()
        };
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }

    /// True when `path` skips client authentication.
    pub fn is_public(&self, path: &str) -> bool {
        self.public_paths.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None if p.ends_with('/') => path.starts_with(p.as_str()),
            None => path == p,
        })
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        path.starts_with(prefix)
    } else {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// All routes, ordered for matching.
#[derive(Debug, Default)]
pub struct Router {
    ordered: Vec<Arc<Route>>,
    by_name: HashMap<String, Arc<Route>>,
}

impl Router {
    /// Resolves the configured routes; errors name the field.
    pub fn from_config(
        routes: &[RouteConfig],
        upstreams: &HashMap<String, Arc<Upstream>>,
        credentials: &Credentials,
        max_body: u64,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut router = Router::default();
        for (i, r) in routes.iter().enumerate() {
            let Some(upstream) = upstreams.get(&r.upstream) else {
                errors.push(ConfigError::new(
                    format!("routes[{i}].upstream"),
                    format!("unknown upstream \"{}\"", r.upstream),
                ));
                continue;
            };
            let mut members = Vec::new();
            for (j, c) in r.credentials.iter().enumerate() {
                match credentials.get(c) {
                    Some(cred) => members.push(cred.clone()),
                    None => errors.push(ConfigError::new(
                        format!("routes[{i}].credentials[{j}]"),
                        format!("unknown credential \"{c}\""),
                    )),
                }
            }
            let route = Arc::new(Route {
                name: r.name.clone(),
                path_prefix: r.path_prefix.clone(),
                host: r.host.clone(),
                strip_prefix: r.strip_prefix,
                public_paths: r.public_paths.clone(),
                upstream: upstream.clone(),
                pool: Pool::new(members),
                timeout: r.timeout,
                retry_body_limit: r.retry_body_limit.as_u64(),
                max_body: r.max_body.map_or(max_body, |b| b.as_u64()),
                sse: r.sse.clone(),
                session: r.session,
                session_idle_ttl: r.session_idle_ttl,
                metrics: RouteMetrics::default(),
            });
            router.by_name.insert(route.name.clone(), route.clone());
            router.ordered.push(route);
        }
        router
            .ordered
            .sort_by_key(|r| (std::cmp::Reverse(r.path_prefix.len()), r.host.is_none()));
        if errors.is_empty() {
            Ok(router)
        } else {
            Err(errors)
        }
    }

    /// The route for a request's host (without port) and path.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        self.ordered.iter().find(|r| r.matches(host, path))
    }

    /// The route for a forward-proxy request: only routes that name `host`
    /// (without port) serve it, so a host-less route never becomes a way to
    /// reach an arbitrary host's path.
    pub fn route_for_host(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        self.ordered
            .iter()
            .find(|r| r.host.is_some() && r.matches(Some(host), path))
    }

    /// The route called `name` (intent API).
    pub fn by_name(&self, name: &str) -> Option<&Arc<Route>> {
        self.by_name.get(name)
    }
}

/// True when a path tries to climb out of its prefix (`/a/../b`, `/./`).
pub fn has_dot_segments(path: &str) -> bool {
    path.split('/').any(|seg| {
        seg == "."
            || seg == ".."
            || seg.eq_ignore_ascii_case("%2e")
            || seg.eq_ignore_ascii_case("%2e%2e")
            || seg.eq_ignore_ascii_case(".%2e")
            || seg.eq_ignore_ascii_case("%2e.")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rules() {
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(!prefix_matches("/api/", "/api"));
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn dot_segments_are_detected() {
        assert!(has_dot_segments("/api/../admin"));
        assert!(has_dot_segments("/api/%2E%2E/admin"));
        assert!(!has_dot_segments("/api/..x/a.b"));
    }
}
