//! Who may ask: a request a web page sent is refused first
//! ([`crate::control::http::origin`]: a foreign `Host` 421, a foreign `Origin` 403),
//! then the token is checked (401), compared in constant time.

use super::Context;
use crate::control::http::origin;
use crate::control::http::request::Request;
use crate::control::http::response::Response;
use crate::log::{self, Level};

/// The refusal of a request that may not be answered, or `None`. `page`: the
/// request is `GET /ui`, checked for its `Host` only (no data, no token).
pub(super) fn refusal(req: &Request, cx: &Context, page: bool) -> Option<Response> {
    if let Some(refusal) = origin::check(req, cx.allowed_hosts, page) {
        log::limited(
            "http-foreign",
            Level::Warn,
            format_args!(
                "management API: refused {} {} ({}): {}",
                req.method, req.path, refusal.status, refusal.message
            ),
        );
        return Some(Response::error(refusal.status, refusal.message));
    }
    if page {
        return None;
    }
    match cx.token {
        Some(token) if !authorized(req, token) => Some(
            Response::error(401, "missing or wrong Authorization: Bearer token")
                .with_header("WWW-Authenticate", "Bearer"),
        ),
        _ => None,
    }
}

fn authorized(req: &Request, token: &str) -> bool {
    let Some(value) = req.header("authorization") else {
        return false;
    };
    let Some((scheme, given)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// Compares without an early exit, so the time taken does not tell how much of a
/// guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
