//! Commands run for closed files: `on_close` hooks ([`Hooks`], to its end once per file)
//! and `ship` commands ([`Shipper`], store and forward: until one succeeds). Each
//! is an argv (no shell) with, as last argument, the path [`crate::storage::Storage::hand_over`]
//! gives (a hard link to the file in the state folder, handed only while the
//! file is still the one bsc closed), and `BSC_HANDLER`, `BSC_FILE` (the file's
//! own path), `BSC_RECORDS`, `BSC_BYTES`, `BSC_FIRST_TS`, `BSC_LAST_TS` in its
//! environment.
//!
//! Neither blocks the loop: at most `max_running` run at once, the rest wait;
//! finished children are reaped when SIGCHLD arrives (and once a second), and
//! their exit status is logged. Each runs in a process group of its own, killed
//! as soon as the command has ended (before it is reaped, while its pid still
//! holds the group's id), on a timeout, and at shutdown.
//!
//! A ship command's standard error is read (non-blocking) as it comes; the
//! last line of a failed attempt goes into the log line and `last_error`.
//!
//! Shipping, per handler key (name and address): the oldest waiting file first,
//! one at a time, from the journal's ship queue ([`crate::storage::Queues::next_unshipped`]).
//! Exit 0 is shipped: journaled and forced to the disk ([`crate::storage::Storage::shipped`])
//! as soon as the child is reaped, before any other ship command starts. Any
//! other exit, a signal, a timeout (the process group is killed) or a command
//! that cannot start is a failure: that key waits [`backoff`] (5 s doubling, at
//! most `ship_retry_max_s`) and retries the same file. The command is the
//! running handler's `ship` if it has one, else the one recorded when the file
//! was closed if a handler of the config declares it (a handler removed or
//! renamed keeps its files shipping; a command only the journal names never
//! runs). A file that is gone when its turn comes is dropped, one that is no
//! longer the file bsc closed is refused: logged once, counted, and its reason
//! is the lane's `last_error`.
//!
//! Retention spares a file while its hook waits or runs; only the disk budget
//! deletes one, when nothing else is left ([`Hooks::file_deleted`] takes a

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::clock::UnixMicros;
use crate::storage::ClosedFile;
use crate::sys;

mod on_close;
mod ship;

pub use on_close::{Hooks, MAX_QUEUED};
pub use ship::{ShipStatus, ShippedFile, Shipper};

/// Whether `child` ended, and how; once it has, whatever else runs in its
/// process group (a background child it left) is killed first, while the
/// unreaped child still holds the group's id, and then it is reaped.
fn ended(child: &mut Child) -> std::io::Result<Option<std::process::ExitStatus>> {
    if !sys::has_exited(child.id()) {
        return Ok(None);
    }
    let _ = sys::kill_process_group(child.id());
    child.try_wait()
}

/// The command `argv` for `file`: `handed` (the file's hard link in the state
/// folder, see [`crate::storage::Storage::hand_over`]) appended, `BSC_FILE` its own path, and
/// the rest of its `BSC_*` environment. The config refuses an empty command
/// and the journal's reader drops one, but an empty `argv` is an error here
/// too, never a panic.
fn command(argv: &[String], file: &ClosedFile, handed: &Path) -> std::io::Result<Command> {
    let ts = |t: Option<UnixMicros>| t.map(UnixMicros::to_rfc3339).unwrap_or_default();
    let Some((program, args)) = argv.split_first() else {
        return Err(std::io::Error::other("the command is empty"));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg(handed)
        .env("BSC_HANDLER", &file.handler)
        .env("BSC_FILE", &file.path)
        .env("BSC_RECORDS", file.records.to_string())
        .env("BSC_BYTES", file.bytes.to_string())
        .env("BSC_FIRST_TS", ts(file.first_ts))
        .env("BSC_LAST_TS", ts(file.last_ts))
        .stdin(Stdio::null());
    Ok(cmd)
}

/// The first wait after a failed ship attempt.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);

/// How long a key waits after its `failures`-th failure in a row: 5 s, doubling,
/// at most `max`.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    FIRST_RETRY.saturating_mul(1u32 << doublings).min(max)
}

/// The handler name in a journal key (`name@address`; names have no `@`).
pub fn name_of_key(key: &str) -> &str {
    key.split_once('@').map_or(key, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_the_maximum() {
        let max = Duration::from_secs(600);
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n, max).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(backoff(0, max), FIRST_RETRY, "never less than 5 s");
        assert_eq!(backoff(u32::MAX, max), max, "no overflow");
        assert_eq!(backoff(1, Duration::from_secs(1)), Duration::from_secs(1));
    }

    #[test]
    fn a_key_names_its_handler() {
        assert_eq!(name_of_key("h1@('127.0.0.1', 8500)"), "h1");
        assert_eq!(name_of_key("plain"), "plain");
    }
}
