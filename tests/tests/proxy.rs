//! The transparent proxy path end to end: client auth, credential injection of
//! every kind as verified by the upstream, the request-intent API, the admin
//! credential view and the OpenAPI document.

use base64::Engine;
use http::Method;
use rhizome_tests::harness::cli::run_node;
use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::Client;
use rhizome_tests::harness::secrets::{ADMIN_TOKEN, OTHER_CLIENT_KEY};
use rhizome_tests::harness::Env;
use serde_json::{json, Value};

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[tokio::test]
async fn client_auth_is_required_and_never_forwarded() {
    let fixture::World { env, mock, node } =
        fixture::world("client_auth", &[], &Tuning::default()).await;
    let c = Client::new();
    let auth = fixture::bearer();

    // No key, wrong key: 401 client_unauthorized with the JSON error shape.
    for headers in [
        vec![],
        vec![("authorization", "Bearer nope")],
        vec![("x-api-key", "nope")],
    ] {
        let r = c.get(&node.url("/a/x"), &headers).await;
        assert_eq!(r.status, 401, "{}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["code"], "client_unauthorized");
        assert!(v["error"]["request_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
        assert_eq!(r.header("x-request-id"), v["error"]["request_id"].as_str());
    }
    assert_eq!(
        mock.stats().await["requests_by_path"]["/x"],
        Value::Null,
        "nothing reached upstream"
    );

    // A public path passes without a key, and without our credential.
    let r = c.get(&node.url("/a/open/health"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["credential"]["kind"], "none");
    assert!(r.json()["headers"].get("authorization").is_none());

    // With a key: the client's Authorization / x-api-key never reach upstream.
    let r = c
        .get(&node.url("/n/open/x"), &[("authorization", auth.as_str())])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let h = &r.json()["headers"];
    assert!(
        h.get("authorization").is_none(),
        "client key forwarded: {h}"
    );
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert!(h.get("x-request-id").is_some());
    let r = c
        .get(&node.url("/n/open/x"), &[("x-api-key", OTHER_CLIENT_KEY)])
        .await;
    assert_eq!(r.status, 200, "key from a {{ file }} reference works");
    assert!(r.json()["headers"].get("x-api-key").is_none());

    // On a credentialed route the upstream sees our credential, not the client's.
    let r = c
        .get(&node.url("/a/x?q=1"), &[("authorization", auth.as_str())])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["credential"]["kind"], "oauth");
    assert_eq!(v["credential"]["client_id"], "svc-a");
    assert_eq!(v["path"], "/x");
    assert_eq!(v["query"], "q=1");

    // Unknown route and dot segments.
    let r = c
        .get(&node.url("/zzz"), &[("authorization", auth.as_str())])
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "no_route");
    let r = c
        .get(
            &node.url("/n/%2e%2e/a/x"),
            &[("authorization", auth.as_str())],
        )
        .await;
    assert_eq!(r.status, 400);
    env.assert_logs_clean();
}

#[tokio::test]
async fn every_credential_kind_is_injected_and_verified_upstream() {
    let fixture::World {
        env,
        mock,
        mut node,
    } = fixture::world("credential_kinds", &[], &Tuning::default()).await;
    let auth = fixture::bearer();
    for client in [Client::new(), Client::h2c()] {
        let get = |route: &'static str| {
            let c = client.clone();
            let url = node.url(&format!("/{route}/echo"));
            let auth = auth.clone();
            async move {
                let r = c.get(&url, &[("authorization", auth.as_str())]).await;
                assert_eq!(r.status, 200, "{route}: {}", r.text());
                r.json()["credential"].clone()
            }
        };
        let a = get("a").await;
        assert_eq!(
            (a["kind"].as_str(), a["client_id"].as_str()),
            (Some("oauth"), Some("svc-a"))
        );
        let b = get("b").await;
        assert_eq!(
            (b["kind"].as_str(), b["client_id"].as_str()),
            (Some("oauth"), Some("svc-b"))
        );
        assert_eq!(get("s").await["kind"], "static");
        let hs = get("jh").await;
        assert_eq!(hs["kind"], "jwt");
        assert_eq!(hs["claims"]["sub"], "svc-hs");
        assert_eq!(hs["claims"]["iss"], "rhizome");
        assert_eq!(hs["claims"]["scope"], "read");
        let rs = get("jr").await;
        assert_eq!(rs["kind"], "jwt");
        assert_eq!(rs["claims"]["sub"], "svc-rs");
        assert_eq!(rs["claims"]["tenant"], "b");
        assert!(rs["claims"]["exp"].as_u64().is_some());
        let cookie = get("c").await;
        assert_eq!(cookie["kind"], "oauth");
    }
    let stats = mock.stats().await;
    // oauth-a and cookie authenticate with Basic, oauth-b in the body.
    assert_eq!(stats["token_auth_methods"]["basic"], 2, "{stats}");
    assert_eq!(stats["token_auth_methods"]["body"], 1, "{stats}");
    assert_eq!(stats["rejected"], 0);

    // Admin view: owner, version, expiry and non-secret claims, never a token.
    let c = Client::new();
    let r = c.get(&node.admin_url("/admin/v1/credentials"), &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "admin_unauthorized");
    let admin = bearer(ADMIN_TOKEN);
    let r = c
        .get(
            &node.admin_url("/admin/v1/credentials"),
            &[("authorization", admin.as_str())],
        )
        .await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(
        !text.contains("mocktok-") && !text.contains("eyJ"),
        "token leaked: {text}"
    );
    let v = r.json();
    let creds = v["credentials"].as_array().expect("list");
    let rs = creds
        .iter()
        .find(|c| c["name"] == "jwt-rs")
        .expect("jwt-rs");
    assert_eq!(rs["owner"], "node");
    assert_eq!(rs["claims"]["sub"], "svc-rs");
    assert!(
        rs["claims"].get("tenant").is_none(),
        "only public claims are shown"
    );
    assert!(rs["expires_in"].as_u64().is_some_and(|s| s > 3000));
    let a = creds
        .iter()
        .find(|c| c["name"] == "oauth-a")
        .expect("oauth-a");
    assert_eq!(a["version"], 1);

    // Admin refresh and token drop.
    let r = c
        .send(
            Method::POST,
            &node.admin_url("/admin/v1/credentials/oauth-a/refresh"),
            &[("authorization", admin.as_str())],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 2);
    let r = c
        .send(
            Method::DELETE,
            &node.admin_url("/admin/v1/credentials/oauth-a/token"),
            &[("authorization", admin.as_str())],
            "",
        )
        .await;
    assert_eq!(r.json()["dropped_version"], 2);
    let r = c
        .send(
            Method::POST,
            &node.admin_url("/admin/v1/credentials/nope/refresh"),
            &[("authorization", admin.as_str())],
            "",
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(node.stop().await.code(), Some(0));
    env.assert_logs_clean();
}

#[tokio::test]
async fn intent_api_round_trips_json_and_binary_bodies() {
    let fixture::World {
        env,
        mock: _mock,
        node,
    } = fixture::world("intent", &[], &Tuning::default()).await;
    let c = Client::new();
    let auth = fixture::bearer();
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let b64 = base64::engine::general_purpose::STANDARD;

    let intent = json!({"route": "a", "method": "POST", "path": "/v3/items", "params": {"q": "x y", "n": [1, 2]},
        "headers": {"x-trace": "t1"}, "json": {"name": "widget", "n": 3}});
    let r = c.post(&node.url("/v1/proxy"), &h, intent.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], 200);
    assert!(v["duration_ms"].as_f64().is_some());
    assert_eq!(v["headers"]["content-type"], "application/json");
    let echo = &v["json"];
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/v3/items");
    assert_eq!(echo["query"], "n=1&n=2&q=x+y");
    assert_eq!(echo["headers"]["x-trace"], "t1");
    assert_eq!(echo["credential"]["client_id"], "svc-a");
    let sent: Value = serde_json::from_slice(
        &b64.decode(echo["body_base64"].as_str().expect("b64"))
            .expect("decode"),
    )
    .expect("json");
    assert_eq!(sent, json!({"name": "widget", "n": 3}));

    // Binary both ways.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let intent =
        json!({"route": "a", "method": "PUT", "path": "/blob", "body_base64": b64.encode(&bytes)});
    let v = c
        .post(&node.url("/v1/proxy"), &h, intent.to_string())
        .await
        .json();
    assert_eq!(
        b64.decode(v["json"]["body_base64"].as_str().expect("b64"))
            .expect("decode"),
        bytes
    );
    let intent = json!({"route": "a", "path": "/bytes", "params": {"n": 1000}});
    let v = c
        .post(&node.url("/v1/proxy"), &h, intent.to_string())
        .await
        .json();
    assert_eq!(v["status"], 200);
    assert_eq!(
        b64.decode(v["body_base64"].as_str().expect("binary body"))
            .expect("decode")
            .len(),
        1000
    );

    // Errors: no key, malformed JSON, unknown field, unknown route, wrong method.
    let r = c
        .post(&node.url("/v1/proxy"), &[], intent.to_string())
        .await;
    assert_eq!(r.json()["error"]["code"], "client_unauthorized");
    for (body, code, status) in [
        ("{not json", "bad_request", 400),
        (r#"{"route":"a","path":"/x","bogus":1}"#, "bad_request", 400),
        (r#"{"route":"zz","path":"/x"}"#, "no_route", 404),
        (r#"{"route":"a","path":"x"}"#, "bad_request", 400),
        (
            r#"{"route":"a","path":"/x","json":{},"body_base64":""}"#,
            "bad_request",
            400,
        ),
    ] {
        let r = c.post(&node.url("/v1/proxy"), &h, body).await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], code);
    }
    // Any other method than POST: 405 with what to use instead.
    let r = c.get(&node.url("/v1/proxy"), &h).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["error"]["code"], "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    // The node keeps serving.
    assert_eq!(c.get(&node.url("/n/open/ok"), &h).await.status, 200);
    env.assert_logs_clean();
}

#[tokio::test]
async fn openapi_document_is_valid_openapi_3() {
    let fixture::World {
        env,
        mock: _mock,
        node,
    } = fixture::world("openapi", &[], &Tuning::default()).await;
    let r = Client::new()
        .get(&node.admin_url("/openapi.json"), &[])
        .await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(doc["paths"]["/v1/proxy"]["post"].is_object());
    assert!(doc["paths"]["/admin/v1/credentials"]["get"].is_object());
    let file = env.path("openapi.json");
    std::fs::write(&file, &r.body).expect("write");
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python3 (scripts/test.sh installs openapi-spec-validator)");
    assert!(
        out.status.success(),
        "openapi-spec-validator rejected the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The CLI prints the same document.
    let cli = run_node(&["openapi"], &[]);
    let printed: Value = serde_json::from_slice(&cli.stdout).expect("cli json");
    assert_eq!(printed, doc);
    env.assert_logs_clean();
}

#[tokio::test]
async fn upstreams_over_tls_h2_and_h2c_are_reached() {
    let env = Env::new("upstream_protocols");
    let cert = env.path("mock-cert.pem");
    let cert_arg = cert.display().to_string();
    let tls = env
        .mock(
            "mock-tls",
            &[
                "--static-key",
                "k-tls-upstream",
                "--tls",
                "--cert-out",
                &cert_arg,
            ],
        )
        .await;
    let plain = env
        .mock("mock-plain", &["--static-key", "k-tls-upstream"])
        .await;
    let cfg = format!(
        r#"
[[clients]]
name = "ci"
key = "{key}"
[[credentials]]
name = "k"
kind = "static"
token = "k-tls-upstream"
inject = {{ header = "api-key", value = "{{token}}" }}
[[upstreams]]
name = "tls"
targets = ["https://localhost:{tls_port}"]
ca_file = "{cert}"
[[upstreams]]
name = "tls-h1"
targets = ["https://localhost:{tls_port}"]
ca_file = "{cert}"
protocol = "http1"
[[upstreams]]
name = "h2c"
targets = ["http://127.0.0.1:{plain_port}"]
protocol = "http2"
[[upstreams]]
name = "untrusted"
targets = ["https://localhost:{tls_port}"]
[[routes]]
name = "tls"
path_prefix = "/tls/"
strip_prefix = true
upstream = "tls"
credentials = ["k"]
[[routes]]
name = "tls-h1"
path_prefix = "/tls1/"
strip_prefix = true
upstream = "tls-h1"
credentials = ["k"]
[[routes]]
name = "h2c"
path_prefix = "/h2c/"
strip_prefix = true
upstream = "h2c"
credentials = ["k"]
[[routes]]
name = "untrusted"
path_prefix = "/untrusted/"
strip_prefix = true
upstream = "untrusted"
credentials = ["k"]
"#,
        key = rhizome_tests::harness::secrets::CLIENT_KEY,
        tls_port = tls.addr.port(),
        plain_port = plain.addr.port(),
        cert = cert.display(),
    );
    let node = env.node("node", &cfg).await;
    let c = Client::new();
    let auth = fixture::bearer();
    let h = [("authorization", auth.as_str())];
    for (route, version) in [
        ("tls", "HTTP/2.0"),
        ("tls1", "HTTP/1.1"),
        ("h2c", "HTTP/2.0"),
    ] {
        let body = vec![b'z'; 100_000];
        let r = c.post(&node.url(&format!("/{route}/x")), &h, body).await;
        assert_eq!(r.status, 200, "{route}: {}", r.text());
        let v = r.json();
        assert_eq!(v["version"], version, "{route}");
        assert_eq!(v["credential"]["kind"], "static");
        assert_eq!(v["body_len"], 100_000);
    }
    // A certificate outside the trusted roots is refused: 502, never a silent downgrade.
    let r = c.get(&node.url("/untrusted/x"), &h).await;
    assert_eq!(r.status, 502, "{}", r.text());
    env.assert_logs_clean();
}
