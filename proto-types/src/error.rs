//! Error codes of the JSON errors Rhizome itself produces
//! (`{"error": {"code", "message", "request_id"}}`). The codes are public API:
//! clients branch on them, so variants are only ever added.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code and the HTTP status it is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No route matches the request's path (and host).
    NoRoute,
    /// The client key is missing or wrong.
    ClientUnauthorized,
    /// The admin token is missing or wrong.
    AdminUnauthorized,
    /// Every credential of the route's pool is cooling down or failing.
    NoHealthyCredential,
    /// The shared state store (Redis) did not answer within `op_timeout`.
    StateStoreUnavailable,
    /// The request body is larger than the route's `max_body`.
    PayloadTooLarge,
    /// The request is malformed (bad JSON for the intent API, bad header...).
    BadRequest,
    /// The request headers are larger than `max_header_bytes`.
    HeadersTooLarge,
    /// No upstream target could be connected to.
    UpstreamUnavailable,
    /// The upstream did not answer within the route's `timeout`.
    UpstreamTimeout,
    /// The upstream connection failed after the request was sent.
    UpstreamError,
    /// A named admin resource (credential, route) does not exist.
    NotFound,
    /// The MCP session is unknown, expired or not this client's: re-initialize.
    SessionNotFound,
    /// The node is shutting down and takes no new work.
    ShuttingDown,
    /// An unexpected internal failure; details are in the node's log.
    Internal,
    /// The coordinator replica knows no leader to answer a node call (or
    /// was handed a call forwarded to it while not leading): try another.
    NoLeader,
    /// The method is not served here (`CONNECT` to the forward proxy: TLS is
    /// not intercepted); sent with `Allow`.
    MethodNotAllowed,
    /// The client sent more requests than its `rate` (and `burst`) allow;
    /// sent with `Retry-After` and the `RateLimit-Policy`/`RateLimit` headers.
    RateLimited,
    /// The client already holds its `max_streams` concurrent streams.
    TooManyStreams,
}

impl ErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoRoute => "no_route",
            ErrorCode::ClientUnauthorized => "client_unauthorized",
            ErrorCode::AdminUnauthorized => "admin_unauthorized",
            ErrorCode::NoHealthyCredential => "no_healthy_credential",
            ErrorCode::StateStoreUnavailable => "state_store_unavailable",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::NotFound => "not_found",
            ErrorCode::SessionNotFound => "session_not_found",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::NoLeader => "no_leader",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyStreams => "too_many_streams",
        }
    }

    /// The HTTP status the code is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::NoRoute | ErrorCode::NotFound | ErrorCode::SessionNotFound => 404,
            ErrorCode::ClientUnauthorized | ErrorCode::AdminUnauthorized => 401,
            ErrorCode::NoHealthyCredential
            | ErrorCode::StateStoreUnavailable
            | ErrorCode::ShuttingDown
            | ErrorCode::NoLeader => 503,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::BadRequest => 400,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::UpstreamUnavailable | ErrorCode::UpstreamError => 502,
            ErrorCode::UpstreamTimeout => 504,
            ErrorCode::Internal => 500,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RateLimited | ErrorCode::TooManyStreams => 429,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in [
            ErrorCode::NoRoute,
            ErrorCode::NoHealthyCredential,
            ErrorCode::Internal,
            ErrorCode::NoLeader,
            ErrorCode::RateLimited,
            ErrorCode::TooManyStreams,
        ] {
            let json = format!("\"{}\"", code.as_str());
            let parsed: ErrorCode = serde_json_like(&json);
            assert_eq!(parsed, code);
        }
    }

    fn serde_json_like(s: &str) -> ErrorCode {
        #[derive(Deserialize)]
        struct W {
            c: ErrorCode,
        }
        let w: W = toml::from_str(&format!("c = {s}")).expect("parse");
        w.c
    }
}
