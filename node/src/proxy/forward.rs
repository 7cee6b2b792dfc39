//! Forward-proxy mode (`node.forward_proxy = true`): a client that points
//! `curl -x` or an `HTTP_PROXY` setting at the node sends absolute-form
//! requests (`GET http://api.internal/v1/x HTTP/1.1`). Such a request is
//! served only by a route that names its host, with the same client auth
//! (also as `Proxy-Authorization: Bearer <client key>`), injection, retry
//! and logging as a reverse-proxy request. The node never becomes an open
//! proxy: a host no route names is refused with 403 `no_route`, and
//! `CONNECT` with 405, because a tunnel would carry TLS the node cannot
//! inject a credential into (it does not intercept TLS).

use http::header::{HeaderValue, ALLOW};
use http::{Method, Request, StatusCode, Version};
use rhizome_proto::ErrorCode;

use crate::error::ProxyError;

/// What the forward proxy serves; the `Allow` of a refused `CONNECT`.
const ALLOWED: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// True for an HTTP/1 request whose target is in absolute form (or the
/// authority form of `CONNECT`). HTTP/2 requests always carry an authority
/// and are never forward-proxy requests.
pub fn is_absolute_form<B>(req: &Request<B>) -> bool {
    req.version() <= Version::HTTP_11 && req.uri().authority().is_some()
}

/// The answer to `CONNECT`: 405 with what to do instead.
pub fn connect_refused() -> ProxyError {
    ProxyError::new(
        ErrorCode::MethodNotAllowed,
        "CONNECT is not supported: Rhizome does not intercept TLS, so it could not \
         inject the credential into a tunnel; send http:// URLs through the proxy \
         (curl -x http://node:8080 http://api.internal/path) and let the route's \
         upstream use TLS",
    )
    .with_header(ALLOW, HeaderValue::from_static(ALLOWED))
}

/// The answer to an absolute-form request for a host no route names.
pub fn host_refused(host: &str) -> ProxyError {
    ProxyError::new(
        ErrorCode::NoRoute,
        format!("no route serves host {host}; this proxy forwards only to configured routes"),
    )
    .with_status(StatusCode::FORBIDDEN)
}

/// True for the method the forward proxy refuses.
pub fn is_connect(method: &Method) -> bool {
    method == Method::CONNECT
}
