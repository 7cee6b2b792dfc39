//! The configuration is honest: `rhizome-node check-config` and start-up
//! refuse what this build cannot honour (Redis schemes it would connect to in
//! plaintext, keys of features it does not have) naming the field, report
//! every type error of a file in one run, and a token endpoint behind a
//! private CA is trusted only through its credential's `ca_file`.

use std::path::Path;
use std::time::Duration;

use rhizome_tests::harness::cli::{refuses, run_node, start_up_refuses};
use rhizome_tests::harness::fixture;
use rhizome_tests::harness::http::Client;
use rhizome_tests::harness::secrets::{CLIENT_KEY, OAUTH_SECRET_A};
use rhizome_tests::harness::Env;

fn assert_all(err: &str, wanted: &[&str]) {
    for want in wanted {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

const UPSTREAM_AND_ROUTE: &str = r#"
[[upstreams]]
name = "u"
targets = ["http://127.0.0.1:1"]
[[routes]]
name = "r"
path_prefix = "/r/"
upstream = "u"
"#;

#[tokio::test]
async fn redis_schemes_this_build_cannot_honour_are_refused_before_connecting() {
    let env = Env::new("config_redis_schemes");
    // A stand-in Redis: if the node connected (in plaintext) it would land
    // in this listener's backlog, password and all.
    let fake_redis = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    fake_redis.set_nonblocking(true).expect("nonblocking");
    let port = fake_redis.local_addr().expect("addr").port();
    for scheme in ["redis+unix", "unix", "bogus"] {
        let cfg = env.write(
            "redis.toml",
            format!(
                "[state]\nbackend = \"redis\"\n\
                 redis_url = \"{scheme}://rz:redis-pw-never-shown@127.0.0.1:{port}/0\"\n\
                 [coordinator]\nmode = \"redis-lock\"\n{UPSTREAM_AND_ROUTE}"
            ),
        );
        let err = refuses("check-config", &cfg, &[]);
        assert!(
            err.contains(&format!(
                "state.redis_url: scheme \"{scheme}\" is not supported by this build"
            )),
            "{scheme}: {err}"
        );
        assert!(!err.contains("redis-pw-never-shown"), "{err}");
    }
    // A Sentinel URL is built in, but only with the master's name and only
    // with parameters the client honours.
    for (query, why) in [
        ("", "exactly one sentinelServiceName"),
        (
            "?sentinelServiceName=m&tls=redis-pw-never-shown",
            "\"tls\" is not supported",
        ),
    ] {
        let cfg = env.write(
            "redis.toml",
            format!(
                "[state]\nbackend = \"redis\"\n\
                 redis_url = \"redis+sentinel://rz:redis-pw-never-shown@127.0.0.1:{port}{query}\"\n\
                 [coordinator]\nmode = \"redis-lock\"\n{UPSTREAM_AND_ROUTE}"
            ),
        );
        let err = refuses("check-config", &cfg, &[]);
        assert!(
            err.contains("state.redis_url: ") && err.contains(why),
            "{query}: {err}"
        );
        assert!(!err.contains("redis-pw-never-shown"), "{err}");
    }
    // Start-up refuses it too, before any connection is attempted: the
    // password is never sent anywhere.
    let log = start_up_refuses(&cfg_with(&env, port), &[]).await;
    assert!(
        log.contains("state.redis_url: scheme \"valkeys\" is not supported by this build"),
        "{log}"
    );
    assert!(!log.contains("redis-pw-never-shown"), "{log}");
    assert!(
        matches!(fake_redis.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the node connected to the Redis it was refused"
    );
}

fn cfg_with(env: &Env, port: u16) -> std::path::PathBuf {
    env.write(
        "redis-refused.toml",
        format!(
            "[state]\nbackend = \"redis\"\n\
             redis_url = \"valkeys://:redis-pw-never-shown@127.0.0.1:{port}\"\n\
             [coordinator]\nmode = \"redis-lock\"\n{UPSTREAM_AND_ROUTE}"
        ),
    )
}

#[tokio::test]
async fn keys_this_build_would_ignore_are_refused_naming_the_field() {
    let env = Env::new("config_not_yet");
    let cfg = env.write(
        "not-yet.toml",
        r#"
[limits]
on_store_error = "closed"

[log]
max_files = 3

[state]
redis_url = "redis://10.0.0.1:6379"
op_timeout = "1s"
tls = { ca_file = "/etc/rhizome/redis-ca.pem" }

[coordinator]
mode = "cluster"
endpoints = ["http://127.0.0.1:7070"]
heartbeat_interval = "1s"
node_ttl = "10s"

[[clients]]
name = "ci"
key = "k"
rate = "100/s"
burst = 200
max_streams = 5

[[credentials]]
name = "legacy"
kind = "static"
token = "t"
refresh_margin = "1m"

[[upstreams]]
name = "u"
targets = ["http://127.0.0.1:1"]
ca_file = "/etc/rhizome/ca.pem"

[[routes]]
name = "r"
path_prefix = "/r/"
upstream = "u"
session_idle_ttl = "5m"
[routes.sse]
replay = true
buffer_events = 10
buffer_ttl = "1m"
on_client_disconnect = "detach"
detach_grace = "5s"
producer_lease = "5s"
"#,
    );
    let err = refuses("check-config", &cfg, &[]);
    assert!(!err.contains("not supported by this build yet"), "{err}");
    assert_all(
        &err,
        &[
            "error: state.redis_url: only applies to state.backend = \"redis\"",
            "error: state.op_timeout: only applies to state.backend = \"redis\"",
            "error: state.tls: only applies to state.backend = \"redis\"",
            "error: limits.on_store_error: only applies to state.backend = \"redis\"",
            "error: coordinator.mode: \"cluster\" needs state.backend = \"redis\"",
            "error: credentials[0].refresh_margin: not a setting of kind \"static\"",
            "error: upstreams[0].ca_file: only applies to https:// targets",
            "error: routes[0].session_idle_ttl: only applies to session = \"mcp\"",
            "error: log.max_files: only applies with log.file",
        ],
    );
    // Start-up refuses the same file.
    let log = start_up_refuses(&cfg, &[]).await;
    assert!(
        log.contains("coordinator.mode: \"cluster\" needs state.backend"),
        "{log}"
    );

    // A key only the modes that store tokens in Redis act on.
    std::fs::write(
        &cfg,
        format!("[state]\nbackend = \"redis\"\nencryption_key = \"k\"\n{UPSTREAM_AND_ROUTE}"),
    )
    .expect("write");
    let err = refuses("check-config", &cfg, &[]);
    assert!(
        err.contains(
            "state.encryption_key: only applies to coordinator.mode = \"redis-lock\" or \"cluster\""
        ),
        "{err}"
    );
}

#[tokio::test]
async fn the_examples_pass_check_config() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(examples).expect("examples dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = run_node(
                &["check-config", &path.display().to_string()],
                &[("DEMO_CLIENT_SECRET", "demo-secret")],
            );
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} examples found");
}

#[tokio::test]
async fn every_type_error_is_reported_in_one_run_with_its_path() {
    let env = Env::new("config_type_errors");
    let cfg = env.write(
        "types.toml",
        r#"
[node]
shutdown_grace = 5

[limits]
max_body = true
max_bodyy = "1MiB"

[[upstreams]]
name = "u"
targets = ["http://127.0.0.1:1"]

[[upstreams]]
name = "broken"
targets = "http://127.0.0.1:2"

[[routes]]
name = "r"
path_prefix = "/r/"
upstream = "u"
timeout = "abc"

[[routes]]
name = 5
path_prefix = "/five/"
upstream = "u"

[[routes]]
name = "s"
path_prefix = "/s/"
upstream = "nope"
retry_body_limit = []

[[routes]]
name = "b"
path_prefix = "/b/"
upstream = "broken"
"#,
    );
    let env_vars = [("RHIZOME__LIMITS__HEADER_READ_TIMEOUT", "soon")];
    let err = refuses("check-config", &cfg, &env_vars);
    assert_all(
        &err,
        &[
            "error: node.shutdown_grace: ",
            "error: limits.max_body: ",
            "error: limits.max_bodyy: unknown field",
            "error: upstreams[1].targets: ",
            "error: routes[0].timeout: ",
            "error: routes[1].name: ",
            // Indices are the ones written, past the route dropped above.
            "error: routes[2].retry_body_limit: ",
            // The environment layer is checked too, and says where it came from.
            "error: limits.header_read_timeout: ",
            "(set by `RHIZOME__` environment variable(s))",
            // Semantic errors come in the same run…
            "error: routes[2].upstream: unknown upstream \"nope\"",
        ],
    );
    // …but not the ones that only follow from a dropped element.
    assert!(!err.contains("unknown upstream \"broken\""), "{err}");
    assert_eq!(err.lines().count(), 9, "{err}");
    // Start-up reports the same errors.
    let stderr = refuses("--config", &cfg, &env_vars);
    assert!(
        stderr.contains("error: routes[2].retry_body_limit: "),
        "{stderr}"
    );
}

/// A config whose credential `trusted` fetches its token from the TLS mock
/// trusting `ca_file`, and `untrusted` from the same endpoint without it.
fn private_ca_config(port: u16, cert: &Path) -> String {
    let cert = cert.display();
    format!(
        r#"
[[clients]]
name = "ci"
key = "{CLIENT_KEY}"
[[credentials]]
name = "trusted"
kind = "oauth2_client_credentials"
token_url = "https://localhost:{port}/oauth/token"
ca_file = "{cert}"
client_id = "svc-a"
client_secret = "{OAUTH_SECRET_A}"
[[credentials]]
name = "untrusted"
kind = "oauth2_client_credentials"
token_url = "https://localhost:{port}/oauth/token"
client_id = "svc-a"
client_secret = "{OAUTH_SECRET_A}"
[[upstreams]]
name = "idp-api"
targets = ["https://localhost:{port}"]
ca_file = "{cert}"
[[routes]]
name = "trusted"
path_prefix = "/t/"
strip_prefix = true
upstream = "idp-api"
credentials = ["trusted"]
[[routes]]
name = "untrusted"
path_prefix = "/u/"
strip_prefix = true
upstream = "idp-api"
credentials = ["untrusted"]
"#
    )
}

#[tokio::test]
async fn token_endpoint_behind_a_private_ca_is_trusted_through_ca_file() {
    let env = Env::new("config_token_ca_file");
    let cert = env.path("idp-ca.pem");
    let cert_arg = cert.display().to_string();
    let client = format!("svc-a:{OAUTH_SECRET_A}");
    let idp = env
        .mock(
            "idp-tls",
            &["--client", &client, "--tls", "--cert-out", &cert_arg],
        )
        .await;
    let node = env
        .node("node", &private_ca_config(idp.addr.port(), &cert))
        .await;
    let c = Client::new();
    let auth = fixture::bearer();
    let h = [("authorization", auth.as_str())];

    let r = c.get(&node.url("/t/x"), &h).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["credential"]["kind"], "oauth");
    assert_eq!(r.json()["credential"]["client_id"], "svc-a");

    // Without ca_file the IdP's certificate is not trusted: the token fetch
    // fails and the request gets the documented 503, never a request without
    // a token.
    let r = c.get(&node.url("/u/x"), &h).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "no_healthy_credential");
    node.proc
        .wait_log("invalid peer certificate", Duration::from_secs(10))
        .await;
    env.assert_logs_clean();
}

#[tokio::test]
async fn unreadable_or_invalid_ca_file_is_a_config_error() {
    let env = Env::new("config_bad_ca_file");
    let not_pem = env.write("not-a-cert.pem", "this is not a certificate\n");
    for (ca_file, why) in [
        (env.path("missing.pem"), "missing"),
        (not_pem, "no certificate"),
    ] {
        let cfg = env.write("bad-ca.toml", private_ca_config(1, &ca_file));
        let err = refuses("check-config", &cfg, &[]);
        assert!(err.contains("credentials[0]: ca_file: "), "{why}: {err}");
        let log = start_up_refuses(&cfg, &[]).await;
        assert!(log.contains("credentials[0]: ca_file: "), "{why}: {log}");
    }
    // ca_file with a plain-HTTP token endpoint would be ignored: refused.
    let cfg = env.write(
        "http-ca.toml",
        private_ca_config(1, &env.path("x.pem"))
            .replace("https://localhost:1/oauth", "http://localhost:1/oauth"),
    );
    let err = refuses("check-config", &cfg, &[]);
    assert!(
        err.contains("credentials[0].ca_file: only applies to an https:// token_url"),
        "{err}"
    );
}
