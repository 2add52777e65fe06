//! `POST /debug/clock`: moves the driven clock of a test build (see
//! [`crate::clock`]). Compiled only with debug assertions and routed only when
//! bsc was started with `BSC_DEBUG_CLOCK=1`; otherwise the route does not exist
//! (404, as any unknown route).
//!
//! Fields (query or body, as every route): `advance=SECONDS[.fraction]` moves
//! the wall clock and the monotonic clock that far forward (timers, back-offs
//! and grace periods come due); `set=RFC3339` (UTC, `...Z`) moves the wall
//! clock to that time, and the monotonic clock as far forward (not at all for
//! a time in the past). The answer is the new time:
//! `{"now": "2026-11-28T10:00:00.000000Z", "unix_micros": 1795860000000000}`.
//! Timers that came due run in the turn of the loop that answered.

use std::time::Duration;

use serde_json::{json, Value};

use crate::clock::{self, UnixNanos};
use crate::control::http::request::Request;
use crate::control::http::response::Response;

/// Answers `POST /debug/clock`.
pub(super) fn clock(req: &Request) -> Response {
    let fields = match super::routes::fields(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let text = |key: &str| match fields.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let moved = match (text("advance"), text("set")) {
        (Some(secs), None) => {
            let Some(by) = parse_seconds(&secs) else {
                let why = "is not a number of seconds (SECONDS[.fraction], 0 or more)";
                return Response::error(400, format!("advance: {secs:?} {why}"));
            };
            clock::move_to(|offset, _| offset.advance(by))
        }
        (None, Some(at)) => {
            let Some(to) = crate::control::client::parse_rfc3339(&at) else {
                let why = "is not an RFC 3339 UTC time (2026-11-28T10:00:00Z)";
                return Response::error(400, format!("set: {at:?} {why}"));
            };
            clock::move_to(|offset, now| offset.set(now.into(), UnixNanos::from(to)))
        }
        _ => return Response::error(400, "give one of advance=SECONDS or set=RFC3339"),
    };
    match moved {
        Some(now) => Response::json(200, &json!({"now": now.to_rfc3339(), "unix_micros": now.0})),
        None => Response::error(404, "the clock is not driven (BSC_DEBUG_CLOCK=1)"),
    }
}

/// `SECONDS[.fraction]` (at most nanoseconds) as a duration.
fn parse_seconds(text: &str) -> Option<Duration> {
    let (whole, fraction) = match text.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 {
        return None;
    }
    let nanos = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    Some(Duration::new(whole.parse().ok()?, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_with_a_fraction() {
        assert_eq!(parse_seconds("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_seconds("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_seconds("0.000000001"), Some(Duration::from_nanos(1)));
        for bad in ["", "-1", "1e3", ".5", "1.", "1.0000000001", "one", "1.2.3"] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
    }
}
