//! `state.redis_url` and `[state.tls]`: which Redis deployments this build
//! connects to, checked before anything connects: a server over plain TCP
//! (`redis://`) or TLS (`rediss://`), a master found through Redis Sentinel
//! (`redis+sentinel://`, `rediss+sentinel://`, or fred's spelling
//! `redis-sentinel://`), or a Redis Cluster (`redis-cluster://`,
//! `rediss-cluster://`). Each form accepts exactly the query parameters the
//! client library honours for it and refuses the rest, so no setting is
//! silently ignored. Unix sockets are refused by name. The URL is never
//! echoed in an error: it may carry the password.

use std::path::PathBuf;

use serde::Deserialize;

use super::validate::ConfigError;

/// URL schemes `state.redis_url` may use.
pub const REDIS_SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "redis+sentinel",
    "rediss+sentinel",
    "redis-sentinel",
    "rediss-sentinel",
    "redis-cluster",
    "rediss-cluster",
];

/// The query parameter naming the Sentinel master (its service name).
pub const SENTINEL_SERVICE_NAME: &str = "sentinelServiceName";
/// The query parameter naming one more sentinel, or one more Cluster seed
/// node (`host:port`), repeatable.
pub const SENTINEL_NODE: &str = "node";

const PATH: &str = "state.redis_url";

/// `[state.tls]`: how a `rediss://` connection is verified and authenticated.
/// Without it a `rediss://` server must present a certificate from a public
/// CA (the webpki roots built in).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTls {
    /// PEM file of the CA certificates that sign the Redis server's (or the
    /// sentinels') certificate; replaces the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for servers that require one
    /// (`tls-auth-clients yes`); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// The deployment a `state.redis_url` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisDeployment {
    /// One server (`redis://`, `rediss://`).
    Server,
    /// A master found and followed through Redis Sentinel.
    Sentinel,
    /// A Redis Cluster, found from one or more of its nodes.
    Cluster,
}

/// The deployment `url`'s scheme names, if this build supports it.
pub fn deployment(url: &str) -> Option<RedisDeployment> {
    let (scheme, _) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "redis" | "rediss" => Some(RedisDeployment::Server),
        "redis-cluster" | "rediss-cluster" => Some(RedisDeployment::Cluster),
        s if REDIS_SCHEMES.contains(&s) => Some(RedisDeployment::Sentinel),
        _ => None,
    }
}

/// Whether `url` asks for TLS (`rediss://`, `rediss+sentinel://`,
/// `rediss-sentinel://`, `rediss-cluster://`).
pub fn url_uses_tls(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        let scheme = scheme.to_ascii_lowercase();
        scheme == "rediss"
            || scheme == "rediss+sentinel"
            || scheme == "rediss-sentinel"
            || scheme == "rediss-cluster"
    })
}

/// `url` as the client library parses it: the `+sentinel` spelling becomes
/// its `-sentinel` one; everything else is unchanged.
pub fn client_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if scheme.to_ascii_lowercase().ends_with("+sentinel") => {
            let base = &scheme[..scheme.len() - "+sentinel".len()];
            format!("{}-sentinel://{rest}", base.to_ascii_lowercase())
        }
        _ => url.to_string(),
    }
}

/// Checks `state.redis_url` and `[state.tls]` together.
pub(super) fn check(url: &str, tls: Option<&RedisTls>, errors: &mut Vec<ConfigError>) {
    check_url(url, errors);
    if let Some(tls) = tls {
        if !url_uses_tls(url) {
            errors.push(ConfigError::new(
                "state.tls",
                "needs a rediss:// state.redis_url (TLS is never applied to a plain redis:// URL)",
            ));
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            let missing = if tls.cert_file.is_some() {
                "state.tls.key_file"
            } else {
                "state.tls.cert_file"
            };
            errors.push(ConfigError::new(
                missing,
                "a client certificate needs both cert_file and key_file",
            ));
        }
    }
}

fn check_url(url: &str, errors: &mut Vec<ConfigError>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        errors.push(ConfigError::new(
            PATH,
            "must be a redis://, rediss://, redis+sentinel:// or rediss+sentinel:// URL",
        ));
        return;
    };
    let Some(kind) = deployment(url) else {
        errors.push(ConfigError::new(
            PATH,
            refused_scheme(&scheme.to_ascii_lowercase()),
        ));
        return;
    };
    if rest.contains('#') {
        errors.push(ConfigError::new(PATH, "a fragment (#…) is not allowed"));
    }
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with('/') || host.starts_with(':') {
        errors.push(ConfigError::new(PATH, "needs a host"));
    }
    match (kind, query) {
        (RedisDeployment::Server, Some(_)) => errors.push(ConfigError::new(
            PATH,
            "a redis:// or rediss:// URL takes no query parameters \
             (a Sentinel master name needs a redis+sentinel:// URL)",
        )),
        (RedisDeployment::Server, None) => {}
        (RedisDeployment::Sentinel, q) => check_sentinel_query(q.unwrap_or_default(), errors),
        (RedisDeployment::Cluster, q) => check_cluster(authority, q.unwrap_or_default(), errors),
    }
}

/// A Cluster URL: no database (a cluster has only database 0), and only
/// `node=host:port` parameters (more seed nodes).
fn check_cluster(authority: &str, query: &str, errors: &mut Vec<ConfigError>) {
    let host_and_path = authority.rsplit('@').next().unwrap_or_default();
    if let Some((_, db)) = host_and_path.split_once('/') {
        if !db.is_empty() && db != "0" {
            errors.push(ConfigError::new(
                PATH,
                "a Redis Cluster has only database 0: drop the /<db> path",
            ));
        }
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != SENTINEL_NODE {
            errors.push(ConfigError::new(
                PATH,
                format!(
                    "query parameter \"{}\" is not supported (a Cluster URL takes node=host:port)",
                    shown(key)
                ),
            ));
        } else if !is_host_port(value) {
            errors.push(ConfigError::new(
                PATH,
                "each node= parameter must be host:port (a cluster node; IPv6 literals are not supported there)",
            ));
        }
    }
}

/// A Sentinel URL's query: `sentinelServiceName` exactly once, any number of
/// `node=host:port` (more sentinels), nothing else.
fn check_sentinel_query(query: &str, errors: &mut Vec<ConfigError>) {
    let mut names = 0;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            SENTINEL_SERVICE_NAME => {
                names += 1;
                if value.is_empty() {
                    errors.push(ConfigError::new(
                        PATH,
                        "sentinelServiceName must name the master",
                    ));
                }
            }
            SENTINEL_NODE if !is_host_port(value) => errors.push(ConfigError::new(
                PATH,
                "each node= parameter must be host:port (a sentinel; IPv6 literals are not supported there)",
            )),
            SENTINEL_NODE => {}
            "sentinelUsername" | "sentinelPassword" => errors.push(ConfigError::new(
                PATH,
                "separate sentinel credentials are not supported by this build \
                 (the URL's own user and password authenticate to the sentinels too)",
            )),
            other => errors.push(ConfigError::new(
                PATH,
                format!(
                    "query parameter \"{}\" is not supported (a Sentinel URL takes \
                     sentinelServiceName and node)",
                    shown(other)
                ),
            )),
        }
    }
    if names != 1 {
        errors.push(ConfigError::new(
            PATH,
            "a Sentinel URL needs exactly one sentinelServiceName=<master name> parameter",
        ));
    }
}

/// `host:port` as the client library reads a `node` parameter.
fn is_host_port(value: &str) -> bool {
    let mut parts = value.split(':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(host), Some(port), None) => !host.is_empty() && port.parse::<u16>().is_ok(),
        _ => false,
    }
}

/// A name from the URL safe to show: printable ASCII word characters only,
/// shortened.
fn shown(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+-._".contains(*c))
        .take(32)
        .collect()
}

fn refused_scheme(scheme: &str) -> String {
    let why = if scheme.contains("unix") {
        "unix sockets are not built in"
    } else {
        "use redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis-cluster:// or rediss-cluster://"
    };
    format!(
        "scheme \"{}\" is not supported by this build ({why})",
        shown(scheme)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(url: &str, tls: Option<&RedisTls>) -> Vec<String> {
        let mut e = Vec::new();
        check(url, tls, &mut e);
        e.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn plain_and_tls_urls_are_accepted() {
        for ok in [
            "redis://127.0.0.1:6379",
            "REDIS://u:p@h:1/2",
            "rediss://u:p@h:6380",
        ] {
            assert!(errors(ok, None).is_empty(), "{ok}: {:?}", errors(ok, None));
        }
    }

    #[test]
    fn other_schemes_are_refused_without_echoing_the_url() {
        for bad in [
            "redis+cluster://u:s3cret@h:7000",
            "redis+unix:///tmp/redis.sock",
            "unix:///tmp/redis.sock",
            "valkeys://h",
            "http://h",
        ] {
            let e = errors(bad, None);
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(
                e[0].starts_with("state.redis_url: scheme \""),
                "{bad}: {e:?}"
            );
            assert!(!e[0].contains("s3cret"), "the URL is never echoed: {e:?}");
        }
        assert!(errors("unix:///tmp/r.sock", None)[0].contains("unix sockets"));
        assert_eq!(errors("127.0.0.1:6379", None).len(), 1);
    }

    #[test]
    fn query_parameters_of_a_plain_url_are_refused() {
        let e = errors("redis://h?sentinelServiceName=m", None);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("redis+sentinel://"), "{e:?}");
    }

    #[test]
    fn sentinel_urls_in_both_spellings_are_accepted() {
        for ok in [
            "redis+sentinel://127.0.0.1:26379?sentinelServiceName=m",
            "redis-sentinel://u:p@s1:26379/2?sentinelServiceName=m&node=s2:26379&node=s3:26380",
            "rediss+sentinel://:p@s1?node=s2:26379&sentinelServiceName=mymaster",
            "REDIS+SENTINEL://s1:26379?sentinelServiceName=m",
        ] {
            assert!(errors(ok, None).is_empty(), "{ok}: {:?}", errors(ok, None));
            assert_eq!(deployment(ok), Some(RedisDeployment::Sentinel));
        }
        assert_eq!(deployment("rediss://h"), Some(RedisDeployment::Server));
        assert!(url_uses_tls("rediss+sentinel://h?sentinelServiceName=m"));
        assert!(!url_uses_tls("redis+sentinel://h?sentinelServiceName=m"));
    }

    #[test]
    fn sentinel_urls_need_one_master_name_and_take_nothing_fred_ignores() {
        for (bad, why) in [
            (
                "redis+sentinel://u:s3cret@s1:26379",
                "exactly one sentinelServiceName",
            ),
            (
                "redis+sentinel://s1?sentinelServiceName=",
                "must name the master",
            ),
            (
                "redis+sentinel://s1?sentinelServiceName=a&sentinelServiceName=b",
                "exactly one",
            ),
            (
                "redis+sentinel://s1?sentinelServiceName=m&node=s2",
                "host:port",
            ),
            (
                "redis+sentinel://s1?sentinelServiceName=m&node=[::1]:1",
                "host:port",
            ),
            (
                "redis+sentinel://s1?sentinelServiceName=m&sentinelPassword=s3cret",
                "separate sentinel credentials",
            ),
            (
                "redis+sentinel://s1?sentinelServiceName=m&db=s3cret",
                "\"db\" is not",
            ),
            ("redis+sentinel://?sentinelServiceName=m", "needs a host"),
        ] {
            let e = errors(bad, None);
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(e[0].contains(why), "{bad}: {e:?}");
            assert!(!e[0].contains("s3cret"), "the URL is never echoed: {e:?}");
        }
    }

    #[test]
    fn cluster_urls_take_seed_nodes_and_no_database() {
        for ok in [
            "redis-cluster://127.0.0.1:7000",
            "rediss-cluster://u:p@h1:7000/0?node=h2:7001&node=h3:7002",
        ] {
            assert!(errors(ok, None).is_empty(), "{ok}: {:?}", errors(ok, None));
            assert_eq!(deployment(ok), Some(RedisDeployment::Cluster));
        }
        assert!(url_uses_tls("rediss-cluster://h:7000"));
        for (bad, why) in [
            ("redis-cluster://u:s3cret@h:7000/2", "only database 0"),
            ("redis-cluster://h:7000?node=h2", "host:port"),
            (
                "redis-cluster://h:7000?sentinelServiceName=m",
                "\"sentinelServiceName\" is not",
            ),
        ] {
            let e = errors(bad, None);
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(e[0].contains(why), "{bad}: {e:?}");
            assert!(!e[0].contains("s3cret"), "{e:?}");
        }
    }

    #[test]
    fn the_plus_spelling_is_handed_to_the_client_in_its_own() {
        assert_eq!(
            client_url("Redis+Sentinel://u:p@h:1?sentinelServiceName=m"),
            "redis-sentinel://u:p@h:1?sentinelServiceName=m"
        );
        assert_eq!(
            client_url("rediss+sentinel://h?sentinelServiceName=m"),
            "rediss-sentinel://h?sentinelServiceName=m"
        );
        for same in ["redis://h:1", "redis-sentinel://h?sentinelServiceName=m"] {
            assert_eq!(client_url(same), same);
        }
    }

    #[test]
    fn tls_needs_a_tls_url_and_a_whole_client_certificate() {
        let ca = RedisTls {
            ca_file: Some("ca.pem".into()),
            ..RedisTls::default()
        };
        assert!(errors("rediss://h:6380", Some(&ca)).is_empty());
        let e = errors("redis://h:6379", Some(&ca));
        assert!(e[0].starts_with("state.tls: needs a rediss://"), "{e:?}");
        let half = RedisTls {
            cert_file: Some("c.pem".into()),
            ..RedisTls::default()
        };
        let e = errors("rediss://h:6380", Some(&half));
        assert!(e[0].starts_with("state.tls.key_file:"), "{e:?}");
    }
}
