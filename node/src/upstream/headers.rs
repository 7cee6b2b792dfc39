//! Header hygiene between the two hops: hop-by-hop headers (RFC 9110 §7.6.1,
//! including those named in `Connection`) are removed in both directions, the
//! client's own credentials are never forwarded, and `x-forwarded-*` describe
//! the client to the upstream.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

// Names built once (a `&str` name is parsed again on every use).
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Removes hop-by-hop headers, including those listed in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in &listed {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Prepares a client request's headers for the upstream hop. `authority`
/// is the request's `:authority` (HTTP/2) if any; `Host` is used otherwise.
/// `x-forwarded-host` always describes what this node received: a value the
/// client sent is replaced, never trusted.
pub fn to_upstream(
    headers: &mut HeaderMap,
    authority: Option<&str>,
    client: SocketAddr,
    proto: &'static str,
) {
    strip_hop_by_hop(headers);
    headers.remove(header::AUTHORIZATION);
    headers.remove(X_API_KEY);
    let host = authority
        .and_then(|a| HeaderValue::from_str(a).ok())
        .or_else(|| headers.remove(header::HOST));
    headers.remove(header::HOST);
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
    // HTTP/2 clients may split cookies into several fields; an HTTP/1.1
    // upstream expects one (RFC 9113 §8.2.3).
    if headers.get_all(header::COOKIE).iter().nth(1).is_some() {
        let cookies: Vec<&str> = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if let Ok(joined) = HeaderValue::from_str(&cookies.join("; ")) {
            headers.insert(header::COOKIE, joined);
        }
    }
    let xff = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {}", client.ip())).ok(),
        None => Some(ip_value(client.ip())),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
}

thread_local! {
    /// The last client address as a header value: a keep-alive connection
    /// sends many requests from one address, formatted once.
    static LAST_IP: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
}

/// `ip` as a header value.
fn ip_value(ip: IpAddr) -> HeaderValue {
    LAST_IP.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((cached, v)) if *cached == ip => v.clone(),
            _ => {
                // An address's text is always a valid header value.
                let v = HeaderValue::from_maybe_shared(bytes::Bytes::from(ip.to_string()))
                    .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
                *last = Some((ip, v.clone()));
                v
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_credentials_and_hop_by_hop_and_adds_forwarded() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer client-key"),
        );
        h.insert("x-api-key", HeaderValue::from_static("k"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(header::HOST, HeaderValue::from_static("proxy.local"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        h.insert("x-forwarded-host", HeaderValue::from_static("spoofed"));
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        to_upstream(
            &mut h,
            None,
            "127.0.0.9:5000".parse().expect("addr"),
            "http",
        );
        assert_eq!(h[header::COOKIE], "a=1; b=2");
        assert!(h.get(header::AUTHORIZATION).is_none());
        assert!(h.get("x-api-key").is_none());
        assert!(h.get("x-secret-hop").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(h["x-forwarded-host"], "proxy.local");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-kept"], "yes");
    }
}
