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

use crate::clock::{self, UnixMicros, UnixNanos};
use crate::control::http::request::Request;
use crate::control::http::response::Response;

/// Answers `POST /debug/clock`.
pub(super) fn clock(req: &Request) -> Response {
    let fields = match super::asked::fields(req) {
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
            if by > MAX_STEP {
                let why = format!("is more than {} s (100 years)", MAX_STEP.as_secs());
                return Response::error(400, format!("advance: {secs:?} {why}"));
            }
            move_within_range(|offset, _| offset.advance(by))
        }
        (None, Some(at)) => {
            let Some(to) = crate::files::window::parse_rfc3339(&at) else {
                let why = "is not an RFC 3339 UTC time (2026-11-28T10:00:00Z)";
                return Response::error(400, format!("set: {at:?} {why}"));
            };
            if !(EARLIEST..=LATEST).contains(&to) {
                let why = "is outside 1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z";
                return Response::error(400, format!("set: {at:?} {why}"));
            }
            move_within_range(|offset, now| offset.set(now.into(), UnixNanos::from(to)))
        }
        _ => return Response::error(400, "give one of advance=SECONDS or set=RFC3339"),
    };
    match moved {
        Some(Ok(now)) => {
            Response::json(200, &json!({"now": now.to_rfc3339(), "unix_micros": now.0}))
        }
        Some(Err(why)) => Response::error(400, why),
        None => Response::error(404, "the clock is not driven (BSC_DEBUG_CLOCK=1)"),
    }
}

/// The longest single step of `advance`.
const MAX_STEP: Duration = Duration::from_secs(100 * 31_557_600);
/// The range a driven clock may read (what file names and PCAP timestamps
/// hold without wrapping or clamping).
const EARLIEST: UnixMicros = UnixMicros(0);
const LATEST: UnixMicros = UnixMicros(7_258_118_400_000_000); // 2200-01-01T00:00:00Z

/// Moves the driven clock with `change`, unless the clock would then read a
/// time outside [`EARLIEST`]..=[`LATEST`] (it is left as it is, and why is
/// returned). `None`: the clock is not driven.
fn move_within_range(
    change: impl FnOnce(clock::Offset, UnixMicros) -> clock::Offset,
) -> Option<Result<UnixMicros, String>> {
    let mut refused = None;
    let moved = clock::move_to(|offset, now| {
        let next = change(offset, now);
        let reads = UnixMicros(
            now.0
                .saturating_add((next.wall_nanos - offset.wall_nanos) / 1000),
        );
        if (EARLIEST..=LATEST).contains(&reads) {
            next
        } else {
            refused = Some(format!(
                "the clock would read {}, outside 1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z; left at {}",
                reads.to_rfc3339(),
                now.to_rfc3339()
            ));
            offset
        }
    })?;
    Some(match refused {
        Some(why) => Err(why),
        None => Ok(moved),
    })
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
