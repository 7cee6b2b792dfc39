//! A small HTTP client for tests (hyper-util over plain TCP, HTTP/1.1 or h2c
//! prior knowledge). Whole responses are read with a deadline; streaming
//! responses are returned as they are for SSE tests.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Legacy;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Deadline for a whole request/response in tests.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A test HTTP client.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Legacy<HttpConnector, Full<Bytes>>,
}

/// A complete response.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Resp {
    /// Body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// An HTTP/1.1 client.
    pub fn new() -> Self {
        Client {
            inner: Legacy::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    /// An h2c (prior knowledge) client.
    pub fn h2c() -> Self {
        Client {
            inner: Legacy::builder(TokioExecutor::new())
                .http2_only(true)
                .build(HttpConnector::new()),
        }
    }

    /// Sends a request and returns the response head with a streaming body.
    pub async fn open(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response<Incoming> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).expect("request");
        tokio::time::timeout(DEADLINE, self.inner.request(req))
            .await
            .unwrap_or_else(|_| panic!("no response from {url} within {DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("request to {url} failed: {e:?}"))
    }

    /// Sends a request and reads the whole response.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let resp = self.open(method, url, headers, body).await;
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(DEADLINE, body.collect())
            .await
            .unwrap_or_else(|_| panic!("body from {url} not complete within {DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("reading body from {url}: {e}"))
            .to_bytes();
        Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    /// `GET` that gives up quietly: `None` when the server does not answer
    /// completely within `deadline` (a killed or frozen process).
    pub async fn try_get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        deadline: Duration,
    ) -> Option<Resp> {
        self.try_send(Method::GET, url, headers, Bytes::new(), deadline)
            .await
    }

    /// A request that gives up quietly: `None` on any failure or when the
    /// whole response is not in within `deadline`.
    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        deadline: Duration,
    ) -> Option<Resp> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).ok()?;
        let exchange = async {
            let resp = self.inner.request(req).await.ok()?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.ok()?.to_bytes();
            Some(Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(deadline, exchange)
            .await
            .ok()
            .flatten()
    }

    /// `GET`.
    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(Method::GET, url, headers, Bytes::new()).await
    }

    /// `POST`.
    pub async fn post(&self, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Resp {
        self.send(Method::POST, url, headers, body).await
    }
}

/// Reads the next data frame of a streaming body within `deadline`.
pub async fn next_chunk(body: &mut Incoming, deadline: Duration) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("no data within {deadline:?}"))?;
        match frame.expect("body frame").into_data() {
            Ok(data) if !data.is_empty() => return Some(data),
            _ => continue,
        }
    }
}

/// Sends raw bytes on a fresh TCP connection and returns what comes back
/// until the server closes or `deadline` passes (for malformed requests).
pub async fn raw(addr: std::net::SocketAddr, bytes: &[u8], deadline: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Steady load: one worker per URL sends `GET`s with `authorization` until
/// `run` has passed, pausing `pause` after each, and asserts every answer is
/// 200. Returns how many were sent in all.
pub async fn steady_gets(
    urls: Vec<String>,
    authorization: &str,
    run: Duration,
    pause: Duration,
) -> u64 {
    let start = std::time::Instant::now();
    let workers: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let authorization = authorization.to_owned();
            tokio::spawn(async move {
                let c = Client::new();
                let mut sent = 0u64;
                while start.elapsed() < run {
                    let r = c
                        .get(&url, &[("authorization", authorization.as_str())])
                        .await;
                    assert_eq!(
                        r.status,
                        200,
                        "request {sent} to {url} at {:?}: {}",
                        start.elapsed(),
                        r.text()
                    );
                    sent += 1;
                    tokio::time::sleep(pause).await;
                }
                sent
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await.expect("load worker");
    }
    total
}
