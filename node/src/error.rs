//! Rhizome's own errors and their one mapping to the JSON error response
//! `{"error": {"code", "message", "request_id"}}`. The message is
//! written for the client and never contains secrets; the source, kept for the
//! log, says what actually failed. Upstream errors pass through untouched and
//! never become a `ProxyError`.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use rhizome_proto::ErrorCode;

use crate::{BoxBody, BoxError};

/// An error produced by Rhizome itself while handling a request.
#[derive(Debug)]
pub struct ProxyError {
    /// Stable code, which also fixes the status unless `status` overrides it.
    pub code: ErrorCode,
    /// A status the contract names for this use of the code (the forward
    /// proxy's 403 `no_route`).
    pub status: Option<StatusCode>,
    /// Headers the answer carries besides `Content-Type` (`Allow`); a few
    /// at most, so a list keeps the error small.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Client-facing explanation.
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<Duration>,
    /// What failed underneath, for the log only.
    pub source: Option<BoxError>,
}

impl ProxyError {
    /// An error with `code` and a client-facing `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProxyError {
            code,
            status: None,
            headers: Vec::new(),
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// Attaches the underlying cause (logged, never sent).
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Asks the client to come back after `after`.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Answers with `status` instead of the code's own.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Adds a header to the answer.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| {
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        })
    }

    /// The JSON response sent to the client.
    pub fn to_response(&self, request_id: &str) -> Response<BoxBody> {
        let body = serde_json::json!({
            "error": {
                "code": self.code.as_str(),
                "message": self.message,
                "request_id": request_id,
            }
        });
        let mut resp = Response::new(full(Bytes::from(body.to_string())));
        *resp.status_mut() = self.status();
        for (name, value) in &self.headers {
            resp.headers_mut().append(name, value.clone());
        }
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)?;
        if let Some(source) = &self.source {
            write!(f, " ({source})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProxyError {}

/// Shared state failed: 503 `state_store_unavailable`, come back in a second
/// (G6). The one mapping of a state-store failure to a client answer.
impl From<crate::state::redis::StateError> for ProxyError {
    fn from(e: crate::state::redis::StateError) -> Self {
        ProxyError::new(
            ErrorCode::StateStoreUnavailable,
            "shared state is unavailable; try again shortly",
        )
        .with_retry_after(Duration::from_secs(1))
        .with_source(e)
    }
}

/// A complete body from bytes.
pub fn full(bytes: Bytes) -> BoxBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed()
}

/// An error and its sources on one line (transport errors nest deeply).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn json_shape_and_retry_after() {
        let err = ProxyError::new(
            ErrorCode::NoHealthyCredential,
            "all credentials cooling down",
        )
        .with_retry_after(Duration::from_millis(1500))
        .with_source("token endpoint 500");
        let resp = err.to_response("req-1");
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()[RETRY_AFTER], "2");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["error"]["code"], "no_healthy_credential");
        assert_eq!(v["error"]["request_id"], "req-1");
        assert!(
            !String::from_utf8_lossy(&body).contains("500"),
            "source must not leak"
        );
    }
}
