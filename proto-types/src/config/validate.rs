//! Whole-config validation: names resolve, kinds carry their settings, values are
//! in range, and settings the node would ignore are refused up front — a key
//! that only applies to another backend, mode or kind, and (through
//! [`super::unsupported`]) a feature this build does not have. Every problem
//! is collected, each with the path of its field.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use super::credential::default_refresh_margin;
use super::route::{default_session_idle_ttl, SseConfig};
use super::{
    redis, Config, CoordinatorMode, CredentialKind, SessionMode, StateBackend, StateConfig,
};

/// One configuration problem: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Path of the field, e.g. `routes[1].credentials[0]`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The shortest timeout that can do anything useful.
const MIN_TIMEOUT: Duration = Duration::from_millis(50);

fn at_least(path: &str, value: Duration, min: Duration, errors: &mut Vec<ConfigError>) {
    if value < min {
        errors.push(ConfigError::new(
            path,
            format!("must be at least {}ms", min.as_millis()),
        ));
    }
}

/// An upstream or token-endpoint URL: http(s), and no `user:password@`
/// (it would be ignored, and would leak into logs and admin output; such a
/// URL is never echoed back).
fn check_url(path: &str, url: &str, errors: &mut Vec<ConfigError>) {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let Some(rest) = rest else {
        let shown = if url.contains('@') { "the URL" } else { url };
        errors.push(ConfigError::new(
            path,
            format!("\"{shown}\" must start with http:// or https://"),
        ));
        return;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        errors.push(ConfigError::new(
            path,
            "must not carry user:password; configure credentials in [[credentials]]",
        ));
    } else if authority.is_empty() {
        errors.push(ConfigError::new(path, "has no host"));
    }
}

/// True for a valid HTTP header name (RFC 9110 token).
fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn unique<'a>(
    names: impl Iterator<Item = &'a str>,
    section: &str,
    errors: &mut Vec<ConfigError>,
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        if name.is_empty() {
            errors.push(ConfigError::new(
                format!("{section}[{i}].name"),
                "must not be empty",
            ));
        } else if !seen.insert(name) {
            errors.push(ConfigError::new(
                format!("{section}[{i}].name"),
                format!("duplicate name \"{name}\""),
            ));
        }
    }
    seen
}

impl Config {
    /// Checks the whole configuration and returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let e = &mut errors;
        if !self.node.intent_path.starts_with('/') {
            e.push(ConfigError::new(
                "node.intent_path",
                "must start with \"/\"",
            ));
        }
        if self.limits.max_header_bytes < 8192 || self.limits.max_header_bytes > 1 << 20 {
            e.push(ConfigError::new(
                "limits.max_header_bytes",
                "must be between 8192 and 1048576",
            ));
        }
        self.log.check(e);
        redis::check(&self.state.redis_url, self.state.tls.as_ref(), e);
        super::coordinator::check(self, e);
        if self.coordinator.mode == CoordinatorMode::RedisLock
            && self.state.backend == StateBackend::Memory
        {
            e.push(ConfigError::new(
                "coordinator.mode",
                "\"redis-lock\" needs state.backend = \"redis\"",
            ));
        }
        self.check_state_applies(e);
        unique(self.clients.iter().map(|c| c.name.as_str()), "clients", e);
        for (i, c) in self.clients.iter().enumerate() {
            let path = format!("clients[{i}]");
            match (&c.key_sha256, &c.key) {
                (Some(_), Some(_)) | (None, None) => e.push(ConfigError::new(
                    path.clone(),
                    "set exactly one of key_sha256 and key",
                )),
                _ => {}
            }
            if c.burst.is_some() && c.rate.is_none() {
                e.push(ConfigError::new(
                    format!("{path}.burst"),
                    "only applies together with rate",
                ));
            }
            if c.burst == Some(0) {
                e.push(ConfigError::new(
                    format!("{path}.burst"),
                    "must be at least 1",
                ));
            }
            if c.max_streams == Some(0) {
                e.push(ConfigError::new(
                    format!("{path}.max_streams"),
                    "must be at least 1 (leave it out for no limit)",
                ));
            }
            if let Some(d) = &c.key_sha256 {
                if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                    e.push(ConfigError::new(
                        format!("{path}.key_sha256"),
                        "must be 64 hex digits (a SHA-256 digest)",
                    ));
                }
            }
        }
        let creds = unique(
            self.credentials.iter().map(|c| c.name.as_str()),
            "credentials",
            e,
        );
        for (i, c) in self.credentials.iter().enumerate() {
            let path = format!("credentials[{i}]");
            if let Err(errs) = c.spec(&path) {
                e.extend(errs);
            }
            if let Some(url) = &c.token_url {
                check_url(&format!("{path}.token_url"), url, e);
                if c.ca_file.is_some() && !url.starts_with("https://") {
                    e.push(ConfigError::new(
                        format!("{path}.ca_file"),
                        "only applies to an https:// token_url",
                    ));
                }
            }
            if c.kind == CredentialKind::Static && c.refresh_margin != default_refresh_margin() {
                e.push(ConfigError::new(
                    format!("{path}.refresh_margin"),
                    "not a setting of kind \"static\" (a static key never expires)",
                ));
            }
            if !is_header_name(&c.inject.header) {
                e.push(ConfigError::new(
                    format!("{path}.inject.header"),
                    format!("\"{}\" is not a valid header name", c.inject.header),
                ));
            }
            if !c.inject.value.contains("{token}") {
                e.push(ConfigError::new(
                    format!("{path}.inject.value"),
                    "must contain \"{token}\"",
                ));
            }
            if c.failure_threshold == 0 {
                e.push(ConfigError::new(
                    format!("{path}.failure_threshold"),
                    "must be at least 1",
                ));
            }
        }
        let ups = unique(
            self.upstreams.iter().map(|u| u.name.as_str()),
            "upstreams",
            e,
        );
        for (i, u) in self.upstreams.iter().enumerate() {
            if u.targets.is_empty() {
                e.push(ConfigError::new(
                    format!("upstreams[{i}].targets"),
                    "needs at least one target",
                ));
            }
            for (j, t) in u.targets.iter().enumerate() {
                check_url(&format!("upstreams[{i}].targets[{j}]"), t, e);
            }
            if u.ca_file.is_some() && !u.targets.iter().any(|t| t.starts_with("https://")) {
                e.push(ConfigError::new(
                    format!("upstreams[{i}].ca_file"),
                    "only applies to https:// targets",
                ));
            }
            if u.eject_after == 0 {
                e.push(ConfigError::new(
                    format!("upstreams[{i}].eject_after"),
                    "must be at least 1",
                ));
            }
        }
        unique(self.routes.iter().map(|r| r.name.as_str()), "routes", e);
        for (i, r) in self.routes.iter().enumerate() {
            let path = format!("routes[{i}]");
            if !r.path_prefix.starts_with('/') {
                e.push(ConfigError::new(
                    format!("{path}.path_prefix"),
                    "must start with \"/\"",
                ));
            }
            if r.path_prefix.starts_with(&self.node.intent_path) {
                e.push(ConfigError::new(
                    format!("{path}.path_prefix"),
                    format!(
                        "is shadowed by node.intent_path \"{}\"",
                        self.node.intent_path
                    ),
                ));
            }
            if !ups.contains(r.upstream.as_str()) {
                e.push(ConfigError::new(
                    format!("{path}.upstream"),
                    format!("unknown upstream \"{}\"", r.upstream),
                ));
            }
            for (j, c) in r.credentials.iter().enumerate() {
                if !creds.contains(c.as_str()) {
                    e.push(ConfigError::new(
                        format!("{path}.credentials[{j}]"),
                        format!("unknown credential \"{c}\""),
                    ));
                }
            }
            for (j, p) in r.public_paths.iter().enumerate() {
                if !p.starts_with('/') {
                    e.push(ConfigError::new(
                        format!("{path}.public_paths[{j}]"),
                        "must start with \"/\"",
                    ));
                }
            }
            if let Some(max) = r.max_body {
                if max > self.limits.max_body {
                    e.push(ConfigError::new(
                        format!("{path}.max_body"),
                        "may only lower limits.max_body",
                    ));
                }
            }
            if r.session == SessionMode::Mcp && r.session_idle_ttl.as_secs() < 4 {
                e.push(ConfigError::new(
                    format!("{path}.session_idle_ttl"),
                    "must be at least 4s",
                ));
            }
            if r.session != SessionMode::Mcp && r.session_idle_ttl != default_session_idle_ttl() {
                e.push(ConfigError::new(
                    format!("{path}.session_idle_ttl"),
                    "only applies to session = \"mcp\"",
                ));
            }
            if r.sse.max_event_bytes.as_u64() < 1024 {
                e.push(ConfigError::new(
                    format!("{path}.sse.max_event_bytes"),
                    "must be at least 1KiB",
                ));
            }
            if r.host.as_deref().is_some_and(|h| h.contains(':')) {
                e.push(ConfigError::new(
                    format!("{path}.host"),
                    "a host name without port (ports are ignored when matching)",
                ));
            }
            at_least(&format!("{path}.timeout"), r.timeout, MIN_TIMEOUT, e);
            at_least(
                &format!("{path}.sse.idle_timeout"),
                r.sse.idle_timeout,
                MIN_TIMEOUT,
                e,
            );
            at_least(
                &format!("{path}.sse.heartbeat_interval"),
                r.sse.heartbeat_interval,
                Duration::from_millis(100),
                e,
            );
            check_replay(&path, &r.sse, e);
        }
        at_least(
            "limits.header_read_timeout",
            self.limits.header_read_timeout,
            MIN_TIMEOUT,
            e,
        );
        if self.limits.max_connections == 0 {
            e.push(ConfigError::new(
                "limits.max_connections",
                "must be at least 1",
            ));
        }
        at_least(
            "state.op_timeout",
            self.state.op_timeout,
            Duration::from_millis(10),
            e,
        );
        for (i, u) in self.upstreams.iter().enumerate() {
            at_least(
                &format!("upstreams[{i}].connect_timeout"),
                u.connect_timeout,
                MIN_TIMEOUT,
                e,
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl Config {
    /// `[state]` keys act only with the backend (and mode) that uses them.
    fn check_state_applies(&self, e: &mut Vec<ConfigError>) {
        const NEEDS_REDIS: &str =
            "only applies to state.backend = \"redis\" (memory state never leaves the process)";
        let defaults = StateConfig::default();
        let memory = self.state.backend == StateBackend::Memory;
        if memory && self.state.redis_url != defaults.redis_url {
            e.push(ConfigError::new("state.redis_url", NEEDS_REDIS));
        }
        if memory && self.state.op_timeout != defaults.op_timeout {
            e.push(ConfigError::new("state.op_timeout", NEEDS_REDIS));
        }
        if memory && self.state.tls.is_some() {
            e.push(ConfigError::new("state.tls", NEEDS_REDIS));
        }
        if memory && self.limits.on_store_error != super::OnStoreError::default() {
            e.push(ConfigError::new("limits.on_store_error", NEEDS_REDIS));
        }
        if self.state.encryption_key.is_some() {
            if memory {
                e.push(ConfigError::new("state.encryption_key", NEEDS_REDIS));
            } else if self.coordinator.mode == CoordinatorMode::Embedded {
                e.push(ConfigError::new(
                    "state.encryption_key",
                    "only applies to coordinator.mode = \"redis-lock\" or \"cluster\" (the modes that store tokens in Redis)",
                ));
            }
        }
    }
}

/// The replay keys of `[routes.sse]`: bounded when replay is on, refused
/// when it is off (they would be accepted and ignored).
fn check_replay(path: &str, sse: &SseConfig, e: &mut Vec<ConfigError>) {
    let d = SseConfig::default();
    if !sse.replay {
        let set = [
            ("buffer_events", sse.buffer_events != d.buffer_events),
            ("buffer_ttl", sse.buffer_ttl != d.buffer_ttl),
            (
                "on_client_disconnect",
                sse.on_client_disconnect != d.on_client_disconnect,
            ),
            ("detach_grace", sse.detach_grace != d.detach_grace),
            ("producer_lease", sse.producer_lease != d.producer_lease),
        ];
        for (key, _) in set.iter().filter(|(_, set)| *set) {
            e.push(ConfigError::new(
                format!("{path}.sse.{key}"),
                "only applies with sse.replay = true (streams that are not recorded are cancelled when the client leaves)",
            ));
        }
        return;
    }
    if !(1..=1_000_000).contains(&sse.buffer_events) {
        e.push(ConfigError::new(
            format!("{path}.sse.buffer_events"),
            "must be between 1 and 1000000",
        ));
    }
    at_least(
        &format!("{path}.sse.buffer_ttl"),
        sse.buffer_ttl,
        Duration::from_secs(1),
        e,
    );
    at_least(
        &format!("{path}.sse.producer_lease"),
        sse.producer_lease,
        Duration::from_millis(300),
        e,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Config {
        toml::from_str(s).expect("parse")
    }

    #[test]
    fn replay_keys_apply_only_with_replay_and_are_bounded() {
        let route = "[[upstreams]]\nname = \"u\"\ntargets = [\"http://127.0.0.1:1\"]\n\
                     [[routes]]\nname = \"r\"\npath_prefix = \"/r/\"\nupstream = \"u\"\n[routes.sse]\n";
        let off = parse(&format!(
            "{route}on_client_disconnect = \"detach\"\nbuffer_events = 5\n"
        ));
        let errs: Vec<String> = off
            .validate()
            .expect_err("refused")
            .iter()
            .map(ToString::to_string)
            .collect();
        for key in ["on_client_disconnect", "buffer_events"] {
            assert!(
                errs.iter().any(|e| e.starts_with(&format!(
                    "routes[0].sse.{key}: only applies with sse.replay"
                ))),
                "{key}: {errs:?}"
            );
        }
        let zero = parse(&format!(
            "{route}replay = true\nproducer_lease = \"0s\"\nbuffer_events = 0\n"
        ));
        let errs: Vec<String> = zero
            .validate()
            .expect_err("refused")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("routes[0].sse.producer_lease")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("routes[0].sse.buffer_events")),
            "{errs:?}"
        );
        let on = parse(&format!(
            "{route}replay = true\non_client_disconnect = \"detach\"\n"
        ));
        assert!(on.validate().is_ok());
    }

    #[test]
    fn design_example_shape_validates() {
        let cfg = parse(
            r#"
            [[clients]]
            name = "ci"
            key_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
            [[credentials]]
            name = "a"
            kind = "oauth2_client_credentials"
            token_url = "http://idp/token"
            client_id = "abc"
            client_secret = { env = "X" }
            [[credentials]]
            name = "b"
            kind = "jwt"
            signing_key = "k"
            claims = { iss = "rhizome", n = 3 }
            lifetime = "1h"
            [[upstreams]]
            name = "api"
            targets = ["http://127.0.0.1:1"]
            [[routes]]
            name = "api"
            path_prefix = "/api/"
            upstream = "api"
            credentials = ["a", "b"]
            "#,
        );
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn reports_every_error_with_its_path() {
        let cfg = parse(
            r#"
            [[credentials]]
            name = "a"
            kind = "oauth2_client_credentials"
            token = "misplaced"
            [[upstreams]]
            name = "api"
            targets = ["ftp://x", "https://user:pa55@api.example/v1"]
            [[routes]]
            name = "r"
            path_prefix = "/r/"
            upstream = "nope"
            credentials = ["a", "x"]
            "#,
        );
        let errs: Vec<String> = cfg
            .validate()
            .expect_err("invalid")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            !errs.iter().any(|e| e.contains("pa55")),
            "URL credentials are never echoed"
        );
        for want in [
            "credentials[0].token: not a setting of kind \"oauth2_client_credentials\"",
            "credentials[0].token_url: required for kind \"oauth2_client_credentials\"",
            "upstreams[0].targets[0]: \"ftp://x\" must start with http:// or https://",
            "routes[0].upstream: unknown upstream \"nope\"",
            "routes[0].credentials[1]: unknown credential \"x\"",
            "upstreams[0].targets[1]: must not carry user:password; configure credentials in [[credentials]]",
        ] {
            assert!(
                errs.iter().any(|e| e == want),
                "missing {want:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<Config>("[node]\nlisten_typo = 1").expect_err("unknown key");
        assert!(err.to_string().contains("listen_typo"), "{err}");
    }
}
