//! The admin dashboard: one self-contained page at `GET /admin/` with its
//! script and style sheet, embedded in the binary (no CDN, no build step).
//! The page holds no data and no secret, so it is served without the admin
//! token; it shows a login form, keeps the token the operator enters in the
//! tab's session storage, and reads everything else from the authenticated
//! admin API and `/metrics`. Every answer here carries a strict
//! `Content-Security-Policy` (scripts, styles and fetches from this origin
//! only, no inline code, no framing), `nosniff`, `no-referrer` and
//! `no-store`.

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");

/// The page's `Content-Security-Policy`.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

/// `body` as `content_type` with the dashboard's security headers.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 6] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ];
    (headers, body).into_response()
}

/// The admin dashboard page: a login form, then the node, cluster,
/// credentials, sessions, streams and traffic, refreshed every 2 s.
#[utoipa::path(get, path = "/admin/", tag = "dashboard",
    responses((status = 200, description = "The dashboard page (no data: it shows a login form and reads the admin API with the token entered)", content_type = "text/html")))]
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `/admin` without the slash: to the page.
pub(super) async fn to_index() -> Redirect {
    Redirect::permanent("/admin/")
}

/// The dashboard's script.
#[utoipa::path(get, path = "/admin/dashboard.js", tag = "dashboard",
    responses((status = 200, description = "The dashboard's script", content_type = "text/javascript")))]
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", DASHBOARD_JS)
}

/// The dashboard's style sheet.
#[utoipa::path(get, path = "/admin/dashboard.css", tag = "dashboard",
    responses((status = 200, description = "The dashboard's style sheet", content_type = "text/css")))]
pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", DASHBOARD_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_code_and_loads_only_its_own_assets() {
        assert!(!INDEX_HTML.contains("<script>"), "no inline script");
        assert!(!INDEX_HTML.contains("<style"), "no inline style");
        assert!(!INDEX_HTML.contains(" style="), "no style attributes");
        let handlers = INDEX_HTML.match_indices(" on").any(|(i, _)| {
            let rest = &INDEX_HTML[i + 3..];
            let name = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name > 0 && rest[name..].starts_with('=')
        });
        assert!(!handlers, "no inline event handlers");
        assert!(INDEX_HTML.contains(r#"<script src="/admin/dashboard.js""#));
        assert!(INDEX_HTML.contains(r#"href="/admin/dashboard.css""#));
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        assert!(!DASHBOARD_JS.contains("innerHTML"), "output only as text");
        assert!(
            !DASHBOARD_JS.contains("localStorage"),
            "session storage only"
        );
        assert!(!DASHBOARD_JS.contains("document.cookie"));
    }
}
