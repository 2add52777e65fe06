//! Log lines on stderr, one per event.
//!
//! Under journald (stderr is `JOURNAL_STREAM`) each line starts with its syslog
//! priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug) and journald adds
//! the time; otherwise each line starts with a UTC timestamp and the level.
//! Lines below the level set with `--log-level` are dropped.
//!
//! A condition that repeats (a full disk, a dead peer, a broken socket) is logged
//! through [`limited`]: at most once per [`REPEAT_WINDOW`] per key, and the next
//! line (or [`report_suppressed`], called by the event loop) says how many were
//! left out. The window is measured on the loop's clock, which the loop hands
//! in once per turn ([`set_now`]); before it first does, nothing is left out.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::clock::Clock;

/// How serious a log line is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 3,
    Warn = 4,
    Info = 6,
    Debug = 7,
}

impl Level {
    /// Parses `--log-level`.
    pub fn parse(s: &str) -> Result<Level, String> {
        match s {
            "error" => Ok(Level::Error),
            "warn" | "warning" => Ok(Level::Warn),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            other => Err(format!(
                "unknown log level {other:?}; use error, warn, info or debug"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

static JOURNAL: OnceLock<bool> = OnceLock::new();
/// `info` by default; unit tests of the library only show warnings and errors.
static MAX_LEVEL: AtomicU8 =
    AtomicU8::new(if cfg!(test) { Level::Warn } else { Level::Info } as u8);

/// Only lines at `level` or more serious are written from now on.
pub fn set_max_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether a line at `level` would be written.
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Writes one line; a failed write to stderr is ignored (there is nowhere else
/// to report it, and capture must go on).
pub fn write(level: Level, msg: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let journal = *JOURNAL.get_or_init(crate::sys::stderr_is_journal);
    let raw = msg.to_string();
    let text = escape_controls(&raw);
    let line = if journal {
        format!("<{}>{text}\n", level as u8)
    } else {
        format!(
            "{} {}: {text}\n",
            Clock::System.now().to_rfc3339(),
            level.name()
        )
    };
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Whether `c` must not reach a terminal or a log line as it is: a control
/// character (C0, DEL, C1), or one that reorders, hides or breaks the text a
/// person reads (bidirectional overrides and isolates, zero-width characters,
/// the Unicode line and paragraph separators, the byte order mark).
pub fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}')
}

/// `text` with every [`is_hazard`] character written as an escape (`\n`,
/// `\u{1b}`, `\u{202e}`), so a value that reaches a message (a name, a path, a
/// peer's error) can never start a line of its own, forge a priority prefix or
/// show other text than it holds.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_hazard) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_hazard(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `n thing` or `n things`, for messages ("1 handler", "3 handlers"): every count
/// a person reads agrees with its noun.
pub fn count(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// A size as a person reads it, in the one unit bsc uses everywhere (the log,
/// the client, the status page, the docs): powers of 1024, as `ls -lh`, `du -h`
/// and `df -h` count, so a size compares with what those tools show. `512 B`,
/// `1.50 KiB`, `28.9 KiB`, `2.38 MiB`: two decimals below 10, one above (the page's
/// `bytes()` in `src/control/ui.html` writes the same text).
pub fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{n} B");
    }
    // Halves round up, as JavaScript's toFixed does.
    let (decimals, scale) = if value < 10.0 { (2, 100.0) } else { (1, 10.0) };
    let value = (value * scale).round() / scale;
    format!("{value:.decimals$} {}", UNITS[unit])
}

/// How often one repeating condition is logged.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10);

struct Repeats {
    since: Instant,
    suppressed: u64,
    level: Level,
    last: String,
}

thread_local! {
    // bsc logs from its one thread; the map holds one entry per condition key.
    static REPEATS: RefCell<HashMap<String, Repeats>> = RefCell::new(HashMap::new());
    // The loop's monotonic time this turn.
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The loop's monotonic time, handed in once per turn: what [`limited`]
/// measures its windows on.
pub fn set_now(now: Instant) {
    NOW.with(|n| n.set(Some(now)));
}

/// Logs `msg` unless the condition `key` was logged less than [`REPEAT_WINDOW`]
/// ago, in which case it is counted and reported later.
pub fn limited(key: &str, level: Level, msg: std::fmt::Arguments<'_>) {
    let Some(now) = NOW.with(Cell::get) else {
        // Before the loop's first turn: no window to count in.
        write(level, msg);
        return;
    };
    REPEATS.with(|r| {
        let mut map = r.borrow_mut();
        match map.get_mut(key) {
            Some(rep) if now.duration_since(rep.since) < REPEAT_WINDOW => {
                rep.suppressed += 1;
                rep.last = msg.to_string();
            }
            Some(rep) => {
                let n = std::mem::take(&mut rep.suppressed);
                rep.since = now;
                if n > 0 {
                    write(
                        level,
                        format_args!(
                            "{msg} (and {n} more like it in the last {} s)",
                            REPEAT_WINDOW.as_secs()
                        ),
                    );
                } else {
                    write(level, msg);
                }
            }
            None => {
                map.insert(
                    key.to_string(),
                    Repeats {
                        since: now,
                        suppressed: 0,
                        level,
                        last: String::new(),
                    },
                );
                write(level, msg);
            }
        }
    });
}

/// Reports conditions that stopped repeating while suppressed, and forgets
/// conditions quiet for a whole window, at `now`. Called about once a second.
pub fn report_suppressed(now: Instant) {
    set_now(now);
    REPEATS.with(|r| {
        r.borrow_mut().retain(|_, rep| {
            if now.duration_since(rep.since) < REPEAT_WINDOW {
                return true;
            }
            if rep.suppressed > 0 {
                write(
                    rep.level,
                    format_args!(
                        "{} (repeated {} in the last {} s)",
                        rep.last,
                        count(rep.suppressed, "time"),
                        REPEAT_WINDOW.as_secs()
                    ),
                );
                rep.suppressed = 0;
                rep.since = now;
                return true;
            }
            false
        })
    });
}

/// Logs an error line.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) };
}

/// Logs a warning line.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($arg)*)) };
}

/// Logs an info line.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) };
}

/// Logs a debug line.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(Level::parse("warn"), Ok(Level::Warn));
        assert!(Level::parse("loud").unwrap_err().contains("debug"));
        assert!(Level::Error < Level::Debug);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(
            escape_controls("x\n<0>kernel: panic\t\u{1b}[2J\u{7f}"),
            "x\\n<0>kernel: panic\\t\\u{1b}[2J\\u{7f}"
        );
        assert!(!escape_controls("a\r\nb").contains('\n'));
        // Text that would show other than it is: reordered, hidden, broken.
        assert_eq!(
            escape_controls("evil\u{202e}fdp.exe\u{2028}\u{200b}\u{feff}\u{2066}"),
            "evil\\u{202e}fdp.exe\\u{2028}\\u{200b}\\u{feff}\\u{2066}"
        );
        // Ordinary letters of other scripts stay as they are.
        assert_eq!(
            escape_controls("Größe μs 日本 עברית"),
            "Größe μs 日本 עברית"
        );
    }

    #[test]
    fn counts_and_sizes_read_as_words() {
        assert_eq!(count(1, "record"), "1 record");
        assert_eq!(count(0, "record"), "0 records");
        assert_eq!(count(2, "handler"), "2 handlers");
        for (n, text) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.00 KiB"),
            (1152, "1.13 KiB"), // 1.125: halves round up, as the page's toFixed
            (29_628, "28.9 KiB"),
            (2_500_000, "2.38 MiB"),
            (1_048_575, "1024.0 KiB"),
            (5 << 30, "5.00 GiB"),
            (u64::MAX, "16777216.0 TiB"),
        ] {
            assert_eq!(size(n), text, "{n}");
        }
    }

    #[test]
    fn repeats_are_counted_not_written() {
        set_now(crate::clock::Clock::System.read().mono);
        for i in 0..5 {
            limited("test-key", Level::Debug, format_args!("failure {i}"));
        }
        REPEATS.with(|r| {
            let map = r.borrow();
            let rep = map.get("test-key").unwrap();
            assert_eq!((rep.suppressed, rep.last.as_str()), (4, "failure 4"));
        });
    }
}
