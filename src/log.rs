//! Log lines on stderr, one per event.
//!
//! Under journald (stderr is `JOURNAL_STREAM`) each line starts with its syslog
//! priority (`<3>` error, `<4>` warning, `<6>` info) and journald adds the time;
//! otherwise each line starts with a UTC timestamp and the level.

use std::io::Write;
use std::sync::OnceLock;

use crate::clock::Clock;

/// How serious a log line is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
}

impl Level {
    fn syslog_priority(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
        }
    }
}

static JOURNAL: OnceLock<bool> = OnceLock::new();

/// Writes one line; a failed write to stderr is ignored (there is nowhere else
/// to report it, and capture must go on).
pub fn write(level: Level, msg: std::fmt::Arguments<'_>) {
    let journal = *JOURNAL.get_or_init(crate::sys::stderr_is_journal);
    let line = if journal {
        format!("<{}>{msg}\n", level.syslog_priority())
    } else {
        format!(
            "{} {}: {msg}\n",
            Clock::System.now().to_rfc3339(),
            level.name()
        )
    };
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
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
