//! The kernel's word on the system clock, and bsc's word on the files it
//! wrote: whether the clock was synchronised (NTP or similar: `adjtimex`,
//! `STA_UNSYNC` clear) and how far off the kernel says it may be (`maxerror`,
//! in microseconds).
//!
//! The event loop reads `adjtimex` in one place, at start and then once a
//! second (`event_loop.rs`, `read_kernel_clock`), and hands the reading (a
//! [`ClockWord`]) to the manager; everything else (`/health`, `/stats`,
//! `/metrics`, the handlers) uses that reading. A handler folds each reading
//! into the word of the file it has open ([`ClockWord::and`]), from the
//! reading at its opening to the one at its closing, and the journal keeps the
//! word of each closed file.
//!
//! Three states, and bsc says "unknown" whenever it did not watch the whole
//! time: a file a crash left open, one resumed or appended to after a
//! restart, a file closed by an earlier version (no word in its journal
//! line), a moment `adjtimex` failed. An unsynchronised reading is final: no
//! later reading makes the file synchronised again.
//!
//! [`ClockOnFiles`] is the word on a set of files (an extract's answer), with
//! a short text for an HTTP header ([`CLOCK_HEADER`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The HTTP header that carries [`ClockOnFiles`] in answers made of several
/// files' records.
pub const CLOCK_HEADER: &str = "X-Bsc-Clock";

/// Whether the system clock was synchronised and the largest error the kernel
/// allowed for it: at one reading, or over a file's life. `None` fields are
/// unknown; the default is all unknown.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockWord {
    /// `Some(true)`: synchronised at every reading; `Some(false)`: not
    /// synchronised at one of them at least; `None`: not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronized: Option<bool>,
    /// The largest `maxerror` read, in microseconds (`None`: none read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_us: Option<u64>,
}

impl ClockWord {
    /// Nothing known.
    pub const UNKNOWN: ClockWord = ClockWord {
        synchronized: None,
        max_error_us: None,
    };

    /// One reading of `adjtimex`: whether the clock is synchronised and its
    /// `maxerror`, or `None` when the call failed.
    pub fn from_kernel(state: Option<(bool, u64)>) -> ClockWord {
        match state {
            Some((synchronized, max_error_us)) => ClockWord {
                synchronized: Some(synchronized),
                max_error_us: Some(max_error_us),
            },
            None => ClockWord::UNKNOWN,
        }
    }

    /// The word over both times: unsynchronised if either was, synchronised
    /// only if both were, else unknown; the larger max error known.
    pub fn and(self, other: ClockWord) -> ClockWord {
        let synchronized = match (self.synchronized, other.synchronized) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        };
        ClockWord {
            synchronized,
            max_error_us: self.max_error_us.max(other.max_error_us),
        }
    }

    /// Whether nothing is known (not journaled then).
    pub fn is_unknown(&self) -> bool {
        *self == ClockWord::UNKNOWN
    }

    /// `synchronized`, `unsynchronized` or `unknown`.
    pub fn state(self) -> &'static str {
        state_word(self.synchronized)
    }

    /// The max error in seconds (for `/metrics`).
    pub fn max_error_seconds(self) -> Option<f64> {
        self.max_error_us.map(|us| us as f64 / 1e6)
    }
}

fn state_word(synchronized: Option<bool>) -> &'static str {
    match synchronized {
        Some(true) => "synchronized",
        Some(false) => "unsynchronized",
        None => "unknown",
    }
}

/// The clock's word on a set of files: how many, how many were written while
/// it was not synchronised (part of the time at least), how many bsc cannot
/// tell, and the largest max error among them.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ClockOnFiles {
    pub files: u64,
    pub unsynchronized: u64,
    pub unknown: u64,
    pub max_error_us: Option<u64>,
}

impl ClockOnFiles {
    /// The word on the files whose words these are.
    pub fn of(words: impl IntoIterator<Item = ClockWord>) -> ClockOnFiles {
        let mut on = ClockOnFiles::default();
        for w in words {
            on.files += 1;
            match w.synchronized {
                Some(true) => {}
                Some(false) => on.unsynchronized += 1,
                None => on.unknown += 1,
            }
            on.max_error_us = on.max_error_us.max(w.max_error_us);
        }
        on
    }

    /// Whether every file was written while the clock was synchronised (false
    /// for no files: there is nothing to vouch for).
    pub fn all_synchronized(&self) -> bool {
        self.files > 0 && self.unsynchronized == 0 && self.unknown == 0
    }

    /// `synchronized` (all were), `unsynchronized` (one at least was not),
    /// else `unknown` (no files, or bsc cannot tell for one at least).
    pub fn state(&self) -> &'static str {
        if self.unsynchronized > 0 {
            "unsynchronized"
        } else if self.all_synchronized() {
            "synchronized"
        } else {
            "unknown"
        }
    }
}

/// The header value: the state, then `files=`, the counts that are not zero
/// and the max error when known, e.g. `unsynchronized; files=5;
/// unsynchronized=2; unknown=1; max_error_us=16000000` (ASCII, no commas).
impl fmt::Display for ClockOnFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; files={}", self.state(), self.files)?;
        if self.unsynchronized > 0 {
            write!(f, "; unsynchronized={}", self.unsynchronized)?;
        }
        if self.unknown > 0 {
            write!(f, "; unknown={}", self.unknown)?;
        }
        if let Some(us) = self.max_error_us {
            write!(f, "; max_error_us={us}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYNC: ClockWord = ClockWord {
        synchronized: Some(true),
        max_error_us: Some(500),
    };
    const UNSYNC: ClockWord = ClockWord {
        synchronized: Some(false),
        max_error_us: Some(16_000_000),
    };

    #[test]
    fn a_reading_is_known_unless_adjtimex_failed() {
        assert_eq!(ClockWord::from_kernel(Some((true, 500))), SYNC);
        assert_eq!(ClockWord::from_kernel(None), ClockWord::UNKNOWN);
        assert_eq!(ClockWord::from_kernel(None).state(), "unknown");
        assert_eq!(SYNC.state(), "synchronized");
        assert_eq!(UNSYNC.state(), "unsynchronized");
    }

    #[test]
    fn one_unsynchronised_reading_is_final() {
        let w = SYNC.and(UNSYNC).and(SYNC);
        assert_eq!(w.synchronized, Some(false));
        assert_eq!(w.max_error_us, Some(16_000_000));
        assert_eq!(
            ClockWord::UNKNOWN.and(UNSYNC).and(SYNC).state(),
            "unsynchronized"
        );
    }

    #[test]
    fn synchronised_only_when_every_reading_was() {
        assert_eq!(SYNC.and(SYNC), SYNC);
        let later = ClockWord {
            synchronized: Some(true),
            max_error_us: Some(90),
        };
        assert_eq!(SYNC.and(later).max_error_us, Some(500), "the largest");
        // A time bsc did not watch (a crash, a resume) keeps it unknown.
        let resumed = ClockWord::UNKNOWN.and(SYNC).and(SYNC);
        assert_eq!(resumed.state(), "unknown");
        assert_eq!(resumed.max_error_us, Some(500), "what was seen is kept");
        assert_eq!(SYNC.and(ClockWord::UNKNOWN).state(), "unknown");
    }

    #[test]
    fn the_journal_omits_what_is_unknown_and_reads_old_lines() {
        assert_eq!(serde_json::to_string(&ClockWord::UNKNOWN).unwrap(), "{}");
        assert_eq!(
            serde_json::to_string(&UNSYNC).unwrap(),
            r#"{"synchronized":false,"max_error_us":16000000}"#
        );
        let old: ClockWord = serde_json::from_str("{}").unwrap();
        assert!(old.is_unknown());
        let half: ClockWord = serde_json::from_str(r#"{"max_error_us":7}"#).unwrap();
        assert_eq!(half.state(), "unknown");
        assert_eq!(half.max_error_seconds(), Some(0.000007));
    }

    #[test]
    fn the_word_on_a_set_of_files() {
        let all = ClockOnFiles::of([SYNC, SYNC]);
        assert!(all.all_synchronized());
        assert_eq!(all.to_string(), "synchronized; files=2; max_error_us=500");

        let mixed = ClockOnFiles::of([SYNC, UNSYNC, ClockWord::UNKNOWN, SYNC.and(UNSYNC)]);
        assert!(!mixed.all_synchronized());
        assert_eq!(
            (mixed.files, mixed.unsynchronized, mixed.unknown),
            (4, 2, 1)
        );
        assert_eq!(
            mixed.to_string(),
            "unsynchronized; files=4; unsynchronized=2; unknown=1; max_error_us=16000000"
        );

        let unknown = ClockOnFiles::of([SYNC, ClockWord::UNKNOWN]);
        assert_eq!(unknown.state(), "unknown");
        assert_eq!(
            unknown.to_string(),
            "unknown; files=2; unknown=1; max_error_us=500"
        );

        let old = ClockOnFiles::of([ClockWord::UNKNOWN]);
        assert_eq!(old.to_string(), "unknown; files=1; unknown=1");
    }

    #[test]
    fn no_files_vouch_for_nothing() {
        let none = ClockOnFiles::of([]);
        assert!(!none.all_synchronized());
        assert_eq!(none.to_string(), "unknown; files=0");
    }

    #[test]
    fn the_header_value_is_plain_ascii() {
        let v = ClockOnFiles::of([UNSYNC, ClockWord::UNKNOWN]).to_string();
        assert!(
            v.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b','),
            "{v}"
        );
    }
}
