//! What this build does not honour yet, in one table. A key the node would
//! accept and then ignore is a lie to the operator: it believes in a
//! rate limit or a Redis over TLS it does not have. The keys of the contract
//! that are not built (`[log]`, `state.tls`, client rate limits…) are not in
//! the model, so the unknown-key rule refuses them; the loader turns that
//! error into a "not supported" message through [`unmodelled_key`], so the
//! operator learns the key is known but not built. The issue that
//! implements a feature deletes its rows. `state.redis_url` schemes the
//! build cannot connect with are refused here too.

use super::validate::ConfigError;
use super::Config;

/// URL schemes `state.redis_url` may use. fred is built without its TLS,
/// sentinel, cluster and unix-socket features: any other scheme would either
/// fail late or — for `rediss://` — connect in plaintext and send the
/// password in clear, so it is refused before anything connects.
pub const REDIS_SCHEMES: &[&str] = &["redis"];

/// One key the build cannot honour yet.
struct NotYet {
    /// Path of the key; `[]` stands for any index (`clients[].rate`).
    path: &'static str,
    /// The missing feature, shown in parentheses.
    feature: &'static str,
}

/// The table. Delete a row when its feature lands.
const NOT_YET: &[NotYet] = &[
    NotYet {
        path: "state.tls",
        feature: "Redis over TLS",
    },
    NotYet {
        path: "limits.on_store_error",
        feature: "rate limits",
    },
    NotYet {
        path: "clients[].rate",
        feature: "rate limits",
    },
    NotYet {
        path: "clients[].burst",
        feature: "rate limits",
    },
    NotYet {
        path: "clients[].max_streams",
        feature: "per-client stream limits",
    },
    NotYet {
        path: "log",
        feature: "the [log] section: log files and rotation; logs go to stdout, \
                  formatted as --log-format says",
    },
];

fn refusal(path: String, feature: &str) -> ConfigError {
    ConfigError::new(path, format!("not supported by this build yet ({feature})"))
}

/// Refuses a `state.redis_url` whose scheme this build cannot connect with.
/// (Every key of the table is unmodelled: serde refuses it as unknown and
/// [`unmodelled_key`] names the feature.)
pub(super) fn check(config: &Config, errors: &mut Vec<ConfigError>) {
    check_redis_url(&config.state.redis_url, errors);
}

/// The scheme of `state.redis_url` must be one this build connects with. The
/// URL itself is never echoed: it may carry the Redis password.
fn check_redis_url(url: &str, errors: &mut Vec<ConfigError>) {
    const PATH: &str = "state.redis_url";
    let Some((scheme, rest)) = url.split_once("://") else {
        errors.push(ConfigError::new(PATH, "must be a redis:// URL"));
        return;
    };
    let scheme = scheme.to_ascii_lowercase();
    if !REDIS_SCHEMES.contains(&scheme.as_str()) {
        let shown: String = scheme
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "+-.".contains(*c))
            .take(32)
            .collect();
        errors.push(ConfigError::new(
            PATH,
            format!(
                "scheme \"{shown}\" is not supported by this build (only redis://; \
                 TLS, sentinel, cluster and unix-socket connections are not built in)"
            ),
        ));
    } else if rest.contains('?') {
        // fred would silently ignore the parameters (e.g. a sentinel service name).
        errors.push(ConfigError::new(
            PATH,
            "query parameters are not supported by this build",
        ));
    }
}

/// The refusal for `path`, an unknown key that the contract names but this
/// build does not model yet; `None` for a plain unknown key (a typo).
pub fn unmodelled_key(path: &str) -> Option<ConfigError> {
    let pattern = without_indices(path);
    NOT_YET
        .iter()
        .find(|row| row.path == pattern)
        .map(|row| refusal(path.to_string(), row.feature))
}

/// `clients[3].rate` → `clients[].rate`.
fn without_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_redis_urls_are_accepted() {
        for ok in ["redis://127.0.0.1:6379", "REDIS://u:p@h:1/2"] {
            let mut e = Vec::new();
            check_redis_url(ok, &mut e);
            assert!(e.is_empty(), "{ok}: {e:?}");
        }
        for bad in [
            "rediss://u:s3cret@h:6380",
            "redis+sentinel://h:26379",
            "redis-sentinel://h:26379?sentinelServiceName=m",
            "redis-cluster://h:7000",
            "redis+unix:///tmp/redis.sock",
            "unix:///tmp/redis.sock",
            "valkeys://h",
            "http://h",
        ] {
            let mut e = Vec::new();
            check_redis_url(bad, &mut e);
            let msg = e.first().map(ToString::to_string).unwrap_or_default();
            assert!(
                msg.starts_with("state.redis_url: scheme \"")
                    && msg.contains("is not supported by this build"),
                "{bad}: {msg}"
            );
            assert!(!msg.contains("s3cret"), "the URL is never echoed: {msg}");
        }
        let mut e = Vec::new();
        check_redis_url("redis://h?sentinelServiceName=m", &mut e);
        assert_eq!(e.len(), 1);
        check_redis_url("127.0.0.1:6379", &mut e);
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn unmodelled_keys_of_the_contract_get_the_feature_named() {
        let e = unmodelled_key("clients[2].rate").expect("known");
        assert_eq!(
            e.to_string(),
            "clients[2].rate: not supported by this build yet (rate limits)"
        );
        assert!(unmodelled_key("state.tls").is_some());
        assert!(unmodelled_key("log").is_some());
        assert!(unmodelled_key("limits.max_bodyy").is_none());
        assert!(unmodelled_key("routes[0].sse.replay").is_none(), "modelled");
    }
}
