//! Forward-proxy mode end to end, driven by the real `curl -x` a user points
//! at the node: an `http://` URL of a routed host gets the injected
//! credential upstream (as the mock verifies), the client key may come as
//! `Proxy-Authorization` and never goes upstream, an unrouted host is 403
//! `no_route` (never an open proxy), `CONNECT` is 405 with `Allow`, and with
//! `forward_proxy = false` absolute-form requests are routed as before.

use std::process::Stdio;

use rhizome_tests::harness::fixture::{self, Tuning, SECRET_A_ENV};
use rhizome_tests::harness::secrets::{CLIENT_KEY, OAUTH_SECRET_A};
use rhizome_tests::harness::{Env, Node};
use serde_json::Value;

/// Two host routes besides the standard ones: `api.internal` (OAuth) and
/// `static.internal` under `/v2/` only (static key).
const HOST_ROUTES: &str = r#"
[[routes]]
name = "api-host"
path_prefix = "/"
host = "api.internal"
upstream = "mock"
credentials = ["oauth-a"]

[[routes]]
name = "static-host"
path_prefix = "/v2/"
host = "static.internal"
upstream = "mock"
credentials = ["static"]
"#;

/// What curl printed: status code, then the body.
struct Curl {
    status: u16,
    body: String,
}

impl Curl {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `curl -x <node> <url>` with `args`; the code is the last line
/// (`-w '\n%{http_code}'`), or for `-p` tunnels the CONNECT answer's code.
async fn curl(node: &Node, url: &str, args: &[&str]) -> Curl {
    let proxy = format!("http://{}", node.proxy);
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "-x", &proxy])
        .args(args)
        .args(["-w", "\n%{http_code} %{http_connect}", url])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run curl (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, codes) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (code, connect) = codes.split_once(' ').unwrap_or((codes, "000"));
    let status = match code.trim().parse::<u16>() {
        Ok(0) | Err(_) => connect.trim().parse().unwrap_or(0),
        Ok(s) => s,
    };
    Curl {
        status,
        body: body.to_string(),
    }
}

async fn node(env: &Env, mock: &rhizome_tests::harness::Mock, forward: bool) -> Node {
    let tuning = Tuning {
        extra: HOST_ROUTES.to_string(),
        ..Tuning::default()
    };
    let cfg = fixture::config(env, mock, &tuning);
    let flag = if forward { "true" } else { "false" };
    let node = env
        .node_with_env(
            if forward { "forward" } else { "reverse" },
            &cfg,
            &[
                (SECRET_A_ENV, OAUTH_SECRET_A),
                ("RHIZOME__NODE__FORWARD_PROXY", flag),
            ],
        )
        .await;
    node.wait_ready().await;
    node
}

#[tokio::test]
async fn curl_x_to_a_routed_host_gets_the_credential_and_nothing_else_passes() {
    let env = Env::new("forward_proxy");
    let mock = fixture::mock(&env, &[]).await;
    let node = node(&env, &mock, true).await;
    let proxy_auth = format!("Proxy-Authorization: Bearer {CLIENT_KEY}");
    let bearer = format!("Authorization: Bearer {CLIENT_KEY}");

    // The key as Proxy-Authorization (curl --proxy-header): routed by host,
    // the token injected, neither client header forwarded.
    let r = curl(
        &node,
        "http://api.internal/v1/items?q=1",
        &["--proxy-header", &proxy_auth],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["credential"]["kind"], "oauth", "{v}");
    assert_eq!(v["credential"]["client_id"], "svc-a");
    assert_eq!(v["path"], "/v1/items");
    assert_eq!(v["query"], "q=1");
    let h = &v["headers"];
    assert!(h.get("proxy-authorization").is_none(), "forwarded: {h}");
    assert_eq!(h["x-forwarded-host"], "api.internal");

    // The node's own intent path on a forwarded host is that host's path.
    let r = curl(
        &node,
        "http://api.internal/v1/proxy",
        &["--proxy-header", &proxy_auth],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["path"], "/v1/proxy", "reached the upstream");

    // The usual client headers work too; a route's path prefix still applies.
    let r = curl(&node, "http://static.internal/v2/x", &["-H", &bearer]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["credential"]["kind"], "static");
    let r = curl(&node, "http://static.internal/v1/x", &["-H", &bearer]).await;
    assert_eq!(r.status, 403, "outside the host's prefixes: {}", r.body);

    // No key, a wrong one: 401 as on the reverse path.
    let r = curl(&node, "http://api.internal/v1/items", &[]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = curl(
        &node,
        "http://api.internal/v1/items",
        &["--proxy-header", "Proxy-Authorization: Bearer nope"],
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "client_unauthorized");

    // A host no route names is refused, even where a host-less route's
    // prefix (/a/) matches the path: the node is never an open proxy.
    let r = curl(&node, "http://evil.example/a/x", &["-H", &bearer]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let e = r.json();
    assert_eq!(e["error"]["code"], "no_route");
    assert!(e["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("evil.example")));

    // CONNECT (what curl sends for https:// URLs, or -p): 405, not a tunnel.
    let r = curl(&node, "http://api.internal/", &["-p", "-H", &bearer]).await;
    assert_eq!(r.status, 405, "{}", r.body);
    let raw = rhizome_tests::harness::http::raw(
        node.proxy,
        b"CONNECT api.internal:443 HTTP/1.1\r\nHost: api.internal:443\r\nConnection: close\r\n\r\n",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("\r\nallow: "), "{raw}");
    assert!(
        raw.contains("method_not_allowed") && raw.contains("http://"),
        "{raw}"
    );

    // Reverse-proxy requests on the same listener are unchanged.
    let r = rhizome_tests::harness::http::Client::new()
        .get(&node.url("/a/x"), &[("authorization", &fixture::bearer())])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Only the routed requests reached the upstream.
    let stats = mock.stats().await;
    assert_eq!(stats["requests_by_path"]["/v1/items"], 1, "{stats}");
    assert_eq!(stats["requests_by_path"]["/v1/proxy"], 1, "{stats}");
    assert_eq!(stats["requests_by_path"]["/v2/x"], 1, "{stats}");
    assert_eq!(stats["requests_by_path"]["/x"], 1, "{stats}");
    let log = node.proc.log_text();
    assert!(
        log.contains(r#""route":"api-host""#),
        "forwarded requests are logged like the others"
    );
    env.assert_logs_clean();
}

#[tokio::test]
async fn with_forward_proxy_off_absolute_form_is_routed_as_before() {
    let env = Env::new("forward_proxy_off");
    let mock = fixture::mock(&env, &[]).await;
    let node = node(&env, &mock, false).await;
    let bearer = format!("Authorization: Bearer {CLIENT_KEY}");

    // By path, as a reverse proxy: a host-less route serves any host...
    let r = curl(&node, "http://evil.example/a/x", &["-H", &bearer]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["credential"]["kind"], "oauth");
    // ...and Proxy-Authorization is no client key.
    let r = curl(
        &node,
        "http://api.internal/v1/items",
        &[
            "--proxy-header",
            &format!("Proxy-Authorization: Bearer {CLIENT_KEY}"),
        ],
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    // An unrouted path is the usual 404.
    let r = curl(&node, "http://evil.example/zzz", &["-H", &bearer]).await;
    assert_eq!(r.status, 404, "{}", r.body);
    env.assert_logs_clean();
}
