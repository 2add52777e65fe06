//! `GET /ui`: the status page, one self-contained HTML file (inline CSS and
//! JS) that reads the JSON routes with the token the operator types in.

use crate::control::http::response::Response;

/// The page, compiled in.
const STATUS_PAGE: &str = include_str!("../ui.html");

/// The page, never cached (a new bsc may serve a new page), and told by its
/// Content-Security-Policy to load nothing and talk only to bsc.
pub(super) fn status_page() -> Response {
    Response::text(200, "text/html; charset=utf-8", STATUS_PAGE.to_string())
        .with_header("Cache-Control", "no-store")
        .with_header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        )
}
