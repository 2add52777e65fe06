//! The `mio` token space, declared once: which token stands for which source
//! of the one event loop.
//!
//! | tokens | source |
//! |---|---|
//! | `0` | the signalfd ([`SIGNALS`]) |
//! | `1` | the management API's listener ([`LISTENER`]) |
//! | `2^16 ..= 2^20 - 1` | forward target `i` of handler `hid` as `2^16 + 16 hid + i` ([`relay_target`]) |
//! | `2^20 ..= 2^28 - 1` | capturer `id` as `2^20 + id` ([`capturer`]) |
//! | `2^28 ..` | HTTP connection `slot` as `2^28 + slot` ([`connection`]) |
//!
//! The ranges do not overlap: a token names one source, and [`source_of`]
//! tells which.

use mio::Token;

/// Token of the signalfd.
pub const SIGNALS: Token = Token(0);
/// Token of the management API's listener.
pub const LISTENER: Token = Token(1);
/// First forward target token (handler 0, target 0).
const TARGET_BASE: usize = 1 << 16;
/// Forward targets per handler the token space has room for.
pub const TARGETS_PER_HANDLER: usize = crate::config::relay_target::MAX_TARGETS;
/// Handlers with forward targets the token space has room for (ids below).
pub const MAX_RELAYING_HANDLERS: usize = (CAPTURER_BASE - TARGET_BASE) / TARGETS_PER_HANDLER;
/// First capturer token (capturer 0); also the end of the target range.
const CAPTURER_BASE: usize = 1 << 20;
/// First HTTP connection token (slot 0); also the end of the capturer range.
const CONNECTION_BASE: usize = 1 << 28;
/// Most capturers the token space has room for.
pub const MAX_CAPTURERS: usize = CONNECTION_BASE - CAPTURER_BASE;

/// What a token stands for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Signals,
    Listener,
    /// A forward target: its handler's id and its place in `forward`.
    RelayTarget(usize, usize),
    /// A capturer, by id.
    Capturer(usize),
    /// An HTTP connection, by slot.
    Connection(usize),
    /// Nothing bsc registers.
    Unused,
}

/// The token of capturer `id` (`id` < [`MAX_CAPTURERS`]).
pub fn capturer(id: usize) -> Token {
    debug_assert!(id < MAX_CAPTURERS);
    Token(CAPTURER_BASE + id)
}

/// The token of forward target `i` of handler `hid` (`hid` <
/// [`MAX_RELAYING_HANDLERS`], `i` < [`TARGETS_PER_HANDLER`]).
pub fn relay_target(hid: usize, i: usize) -> Token {
    debug_assert!(hid < MAX_RELAYING_HANDLERS && i < TARGETS_PER_HANDLER);
    Token(TARGET_BASE + hid * TARGETS_PER_HANDLER + i)
}

/// The token of HTTP connection `slot`.
pub fn connection(slot: usize) -> Token {
    Token(CONNECTION_BASE + slot)
}

/// What `token` stands for.
pub fn source_of(token: Token) -> Source {
    match token.0 {
        0 => Source::Signals,
        1 => Source::Listener,
        t if t >= CONNECTION_BASE => Source::Connection(t - CONNECTION_BASE),
        t if t >= CAPTURER_BASE => Source::Capturer(t - CAPTURER_BASE),
        t if t >= TARGET_BASE => Source::RelayTarget(
            (t - TARGET_BASE) / TARGETS_PER_HANDLER,
            (t - TARGET_BASE) % TARGETS_PER_HANDLER,
        ),
        _ => Source::Unused,
    }
}

/// The capturer `token` stands for, if it stands for one.
pub fn capturer_of(token: Token) -> Option<usize> {
    match source_of(token) {
        Source::Capturer(id) => Some(id),
        _ => None,
    }
}

/// The forward target `token` stands for (handler id, place), if it stands for one.
pub fn relay_target_of(token: Token) -> Option<(usize, usize)> {
    match source_of(token) {
        Source::RelayTarget(hid, i) => Some((hid, i)),
        _ => None,
    }
}

/// The HTTP connection `token` stands for, if it stands for one.
pub fn connection_of(token: Token) -> Option<usize> {
    match source_of(token) {
        Source::Connection(slot) => Some(slot),
        _ => None,
    }
}

/// Whether `token` belongs to the management API (its listener or a connection).
pub fn is_http(token: Token) -> bool {
    matches!(source_of(token), Source::Listener | Source::Connection(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_maps_back_to_what_it_was_made_for() {
        for id in [0, 1, 7, MAX_CAPTURERS - 1] {
            assert_eq!(source_of(capturer(id)), Source::Capturer(id));
            assert_eq!(capturer_of(capturer(id)), Some(id));
            assert_eq!(connection_of(capturer(id)), None);
            assert!(!is_http(capturer(id)));
        }
        for slot in [0, 1, 63, 1 << 20] {
            assert_eq!(source_of(connection(slot)), Source::Connection(slot));
            assert_eq!(connection_of(connection(slot)), Some(slot));
            assert_eq!(capturer_of(connection(slot)), None);
            assert!(is_http(connection(slot)));
        }
        for (hid, i) in [(0, 0), (3, 15), (MAX_RELAYING_HANDLERS - 1, 15)] {
            let t = relay_target(hid, i);
            assert_eq!(relay_target_of(t), Some((hid, i)));
            assert_eq!(capturer_of(t), None);
            assert!(!is_http(t));
        }
        assert_eq!(relay_target_of(capturer(0)), None);
        assert_eq!(source_of(SIGNALS), Source::Signals);
        assert_eq!(source_of(LISTENER), Source::Listener);
        assert!(is_http(LISTENER) && !is_http(SIGNALS));
        assert_eq!(capturer_of(SIGNALS), None);
        assert_eq!(capturer_of(LISTENER), None);
    }

    #[test]
    fn the_ranges_do_not_overlap() {
        assert_eq!(source_of(Token(2)), Source::Unused);
        assert_eq!(source_of(Token(TARGET_BASE - 1)), Source::Unused);
        assert_eq!(
            relay_target(MAX_RELAYING_HANDLERS - 1, TARGETS_PER_HANDLER - 1).0 + 1,
            capturer(0).0,
            "the last target token is right below the first capturer token"
        );
        assert_eq!(
            capturer(MAX_CAPTURERS - 1).0 + 1,
            connection(0).0,
            "the last capturer token is right below the first connection token"
        );
    }
}
