//! `state.redis_url` and `[state.tls]`: which Redis deployments this build
//! connects to, checked before anything connects: a server over plain TCP
//! (`redis://`) or TLS (`rediss://`). Sentinel, Redis Cluster and unix
//! sockets are refused by name. The URL is never echoed in an error: it may
//! carry the password.

use std::path::PathBuf;

use serde::Deserialize;

use super::validate::ConfigError;

/// URL schemes `state.redis_url` may use.
pub const REDIS_SCHEMES: &[&str] = &["redis", "rediss"];

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

/// Whether `url` asks for TLS (`rediss://`, `rediss-sentinel://`).
pub fn url_uses_tls(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("rediss-sentinel")
    })
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
            "must be a redis://, rediss://, redis-sentinel:// or rediss-sentinel:// URL",
        ));
        return;
    };
    let scheme = scheme.to_ascii_lowercase();
    if !REDIS_SCHEMES.contains(&scheme.as_str()) {
        errors.push(ConfigError::new(PATH, refused_scheme(&scheme)));
        return;
    }
    if rest.contains('?') {
        // fred would silently ignore the parameters (e.g. a sentinel service name).
        errors.push(ConfigError::new(
            PATH,
            "query parameters are not supported by this build",
        ));
    }
}

fn refused_scheme(scheme: &str) -> String {
    let shown: String = scheme
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+-.".contains(*c))
        .take(32)
        .collect();
    let why = if scheme.contains("cluster") {
        "Redis Cluster is not built in"
    } else if scheme.contains("sentinel") {
        "Sentinel is not built in"
    } else if scheme.contains("unix") {
        "unix sockets are not built in"
    } else {
        "use redis:// or rediss://"
    };
    format!("scheme \"{shown}\" is not supported by this build ({why})")
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
            "redis+sentinel://u:s3cret@h:26379",
            "redis-sentinel://u:s3cret@h:26379?sentinelServiceName=m",
            "redis-cluster://u:s3cret@h:7000",
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
        assert!(errors("redis-cluster://h:7000", None)[0].contains("Redis Cluster"));
        assert_eq!(errors("127.0.0.1:6379", None).len(), 1);
    }

    #[test]
    fn query_parameters_are_refused() {
        assert_eq!(errors("redis://h?sentinelServiceName=m", None).len(), 1);
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
