//! `ship` commands: store and forward, per handler key, oldest file first,
//! until one exits 0 (see [`super`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Instant;

use serde::Serialize;

use super::{backoff, command, ended, name_of_key};
use crate::clock::UnixMicros;
use crate::config::ShipSpec;
use crate::storage::{ClosedFile, NotHanded, Storage, Unshipped};
use crate::sys;
use crate::{error, info, warn};

/// What `/stats` shows of one handler key's shipping.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ShipStatus {
    pub pending_files: u64,
    pub pending_bytes: u64,
    /// Seconds since the oldest waiting file was closed (`None`: none waits).
    pub oldest_pending_age_s: Option<u64>,
    /// Files shipped since bsc started.
    pub shipped: u64,
    /// Failed attempts since bsc started.
    pub failures: u64,
    /// Files that were waiting to ship and are gone: deleted by the disk budget,
    /// or behind bsc's back.
    pub dropped: u64,
    /// Files not shipped because they were no longer the file bsc closed (a
    /// link, another file, written to since) when their turn came.
    pub refused: u64,
    /// Why the last attempt failed (with the last line its command wrote to
    /// standard error); cleared by a success.
    pub last_error: Option<String>,
    /// When the last attempt failed (RFC 3339); kept after a success.
    pub last_error_at: Option<String>,
    /// When the next attempt may start, while a failure holds it back (RFC 3339).
    pub next_attempt_at: Option<String>,
    /// Whether a ship command runs for this key now.
    pub running: bool,
}

/// A ship command running.
struct Attempt {
    child: Child,
    /// Its standard error (non-blocking), read as it comes: only the end is kept.
    stderr: Option<std::process::ChildStderr>,
    /// The last [`STDERR_TAIL`] bytes it wrote to standard error.
    tail: Vec<u8>,
    path: PathBuf,
    started: Instant,
    deadline: Instant,
    spec: ShipSpec,
}

/// One key's shipping state (the files themselves are in the journal's queue).
#[derive(Default)]
struct Lane {
    running: Option<Attempt>,
    /// Failures since the last success (sets the back-off).
    streak: u32,
    /// No attempt before this (after a failure): monotonic, and wall for display.
    retry_at: Option<(Instant, UnixMicros)>,
    shipped: u64,
    failures: u64,
    dropped: u64,
    refused: u64,
    last_error: Option<String>,
    last_error_at: Option<UnixMicros>,
}

/// A file whose ship command succeeded, with what its settings say to do next.
#[derive(Debug, PartialEq, Eq)]
pub struct ShippedFile {
    pub key: String,
    pub path: PathBuf,
    /// `delete_after_ship`.
    pub delete: bool,
}

/// The ship commands: one lane per handler key, at most `max_running` at once.
pub struct Shipper {
    max_running: usize,
    lanes: HashMap<String, Lane>,
    /// Timed-out commands, killed, not yet reaped.
    dying: Vec<Child>,
    /// Something changed (a file queued, a child ended): look at the next turn.
    kicked: bool,
}

impl Shipper {
    /// No lane yet; at most `max_running` commands at once. The ship queue is
    /// the storage's, lent to each call.
    pub fn new(max_running: usize) -> Shipper {
        Shipper {
            max_running: max_running.max(1),
            lanes: HashMap::new(),
            dying: Vec::new(),
            // Files left waiting by an earlier run ship from the first turn.
            kicked: true,
        }
    }

    /// Asks for a look at the next turn (a file was queued, SIGCHLD came).
    pub fn kick(&mut self) {
        self.kicked = true;
    }

    /// Whether [`Shipper::poll`] has something to do at `now`.
    pub fn due(&self, now: Instant, files: &Storage) -> bool {
        self.kicked || self.next_deadline(files).is_some_and(|at| at <= now)
    }

    /// The next instant something must happen without a kick: a timeout, or the
    /// end of a back-off of a key with files waiting.
    pub fn next_deadline(&self, files: &Storage) -> Option<Instant> {
        self.lanes
            .iter()
            .filter_map(|(key, lane)| match &lane.running {
                Some(a) => Some(a.deadline),
                None => lane
                    .retry_at
                    .filter(|_| files.queues().has_unshipped(key))
                    .map(|(at, _)| at),
            })
            .min()
    }

    /// Ship commands running now.
    pub fn running(&self) -> usize {
        self.lanes.values().filter(|l| l.running.is_some()).count()
    }

    /// Reaps finished commands (journaling each success before anything else
    /// starts), kills those past their timeout, and starts the oldest waiting
    /// file of each key that may start, up to `max_running`. `current` gives a
    /// key's running handler's `ship` settings, if it has them. Returns the
    /// files shipped.
    pub fn poll(
        &mut self,
        now: Instant,
        wall: UnixMicros,
        current: impl Fn(&str) -> Option<ShipSpec>,
        declared: impl Fn(&[String]) -> bool,
        files: &mut Storage,
    ) -> Vec<ShippedFile> {
        self.kicked = false;
        self.dying.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        let mut shipped = Vec::new();
        for (key, lane) in self.lanes.iter_mut() {
            let Some(a) = lane.running.as_mut() else {
                continue;
            };
            a.read_stderr();
            let failure = match ended(&mut a.child) {
                Ok(Some(status)) if status.success() => None,
                Ok(Some(status)) => {
                    // What it wrote last, its group killed: all of it is there.
                    a.read_stderr();
                    Some(status.to_string())
                }
                Ok(None) if now >= a.deadline => {
                    let _ = sys::kill_process_group(a.child.id());
                    Some(format!(
                        "timed out after {} s; killed",
                        a.spec.timeout().as_secs_f64()
                    ))
                }
                Ok(None) => continue,
                Err(e) => Some(format!("cannot wait for it: {e}")),
            };
            let Some(a) = lane.running.take() else {
                continue;
            };
            match failure {
                None => {
                    // Journaled and on the disk before any other command starts.
                    files.shipped(&a.path);
                    lane.shipped += 1;
                    lane.streak = 0;
                    lane.retry_at = None;
                    lane.last_error = None;
                    info!(
                        "ship: handler {}: shipped {} ({:.1} s)",
                        name_of_key(key),
                        a.path.display(),
                        now.duration_since(a.started).as_secs_f64()
                    );
                    shipped.push(ShippedFile {
                        key: key.clone(),
                        path: a.path,
                        delete: a.spec.delete_after,
                    });
                }
                Some(why) => {
                    let why = match last_line(&a.tail) {
                        Some(line) => format!("{why}: {line}"),
                        None => why,
                    };
                    if a.deadline <= now {
                        self.dying.push(a.child);
                    }
                    lane.fail(key, &a.path, &a.spec, why, now, wall);
                }
            }
        }
        self.start(now, wall, &current, &declared, files);
        shipped
    }

    /// Starts what may start (see [`Shipper::poll`]): keys whose oldest waiting
    /// file is oldest go first.
    fn start(
        &mut self,
        now: Instant,
        wall: UnixMicros,
        current: &impl Fn(&str) -> Option<ShipSpec>,
        declared: &impl Fn(&[String]) -> bool,
        files: &mut Storage,
    ) {
        let mut running = self.running();
        if running >= self.max_running {
            return;
        }
        let mut ready: Vec<(std::time::SystemTime, String)> = files
            .queues()
            .unshipped_keys()
            .into_iter()
            .filter(|key| {
                self.lanes.get(key).is_none_or(|l| {
                    l.running.is_none() && l.retry_at.is_none_or(|(at, _)| at <= now)
                })
            })
            .filter_map(|key| Some((files.queues().next_unshipped(&key)?.closed_at, key)))
            .collect();
        ready.sort();
        for (_, key) in ready {
            if running >= self.max_running {
                break;
            }
            let lane = self.lanes.entry(key.clone()).or_default();
            while let Some(file) = files.queues().next_unshipped(&key) {
                let handed = match files.hand_over(&file.path) {
                    Ok(handed) => handed,
                    Err(NotHanded::Gone) => {
                        error!(
                            "ship: handler {}: {} was waiting to ship and is gone (deleted behind bsc's back); dropped, it will not be shipped",
                            name_of_key(&key),
                            file.path.display()
                        );
                        files.gone(&file.path);
                        lane.dropped += 1;
                        lane.last_error = Some(format!(
                            "{} was gone when its turn came (deleted behind bsc's back); dropped",
                            file.path.display()
                        ));
                        lane.last_error_at = Some(wall);
                        continue;
                    }
                    Err(NotHanded::Replaced(why)) => {
                        error!(
                            "ship: handler {}: {}: refused: {why}; it will not be shipped",
                            name_of_key(&key),
                            file.path.display()
                        );
                        // Forgotten: what is there now is not bsc's.
                        files.gone(&file.path);
                        lane.refused += 1;
                        lane.last_error = Some(format!(
                            "{}: refused: {why}; it will not be shipped",
                            file.path.display()
                        ));
                        lane.last_error_at = Some(wall);
                        continue;
                    }
                };
                let spec = match current(&key) {
                    Some(spec) => spec,
                    // Only a command the config declares: the journal names
                    // what to run, but it is not where commands come from.
                    None if declared(&file.ship.argv) => file.ship.clone(),
                    None => {
                        let why = format!(
                            "its journaled ship command ({}) is not one the config declares; it waits until a handler of the config ships with it",
                            file.ship.argv.join(" ")
                        );
                        lane.fail(&key, &file.path, &file.ship, why, now, wall);
                        break;
                    }
                };
                // Everything journaled so far (this file's close among it) is on
                // the disk before the command can act on the file.
                files.sync_journal();
                let closed = closed_file(&key, &file);
                let spawned = command(&spec.argv, &closed, &handed).and_then(|mut cmd| {
                    cmd.stderr(Stdio::piped());
                    sys::spawn_supervised(&mut cmd)
                });
                match spawned {
                    Ok(mut child) => {
                        let stderr = child.stderr.take().filter(|e| {
                            sys::set_nonblocking(std::os::fd::AsRawFd::as_raw_fd(e)).is_ok()
                        });
                        lane.running = Some(Attempt {
                            child,
                            stderr,
                            tail: Vec::new(),
                            path: file.path.clone(),
                            started: now,
                            deadline: now + spec.timeout(),
                            spec,
                        });
                        running += 1;
                    }
                    Err(e) => {
                        let program = spec.argv.first().map_or("", String::as_str);
                        let why = format!("cannot run {program}: {e}");
                        lane.fail(&key, &file.path, &spec, why, now, wall);
                    }
                }
                break;
            }
        }
    }

    /// A file that was waiting for `key` was deleted by the disk budget.
    pub fn dropped(&mut self, key: &str) {
        self.lanes.entry(key.to_string()).or_default().dropped += 1;
    }

    /// Keys this run has shipped for, or tried to.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.lanes.keys().map(String::as_str)
    }

    /// What `/stats` shows for `key` at `now` (wall clock).
    pub fn status(&self, key: &str, now: UnixMicros, files: &Storage) -> ShipStatus {
        let backlog = files.queues().backlog(key);
        let age = backlog.oldest.map(|at| {
            let at = at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            ((now.0 - at).max(0) / 1_000_000) as u64
        });
        let mut status = ShipStatus {
            pending_files: backlog.files,
            pending_bytes: backlog.bytes,
            oldest_pending_age_s: age,
            ..ShipStatus::default()
        };
        if let Some(lane) = self.lanes.get(key) {
            status.shipped = lane.shipped;
            status.failures = lane.failures;
            status.dropped = lane.dropped;
            status.refused = lane.refused;
            status.last_error = lane.last_error.clone();
            status.last_error_at = lane.last_error_at.map(UnixMicros::to_rfc3339);
            status.running = lane.running.is_some();
            status.next_attempt_at = lane
                .retry_at
                .filter(|_| backlog.files > 0 && lane.running.is_none())
                .map(|(_, w)| w.to_rfc3339());
        }
        status
    }

    /// At shutdown: journals the commands that have just succeeded, stops the
    /// others (their process groups are killed: the file ships again after the
    /// next start) and says what is left.
    pub fn stop(&mut self, files: &mut Storage) {
        let mut running = 0;
        for lane in self.lanes.values_mut() {
            let Some(mut a) = lane.running.take() else {
                continue;
            };
            // Whatever it started ends with it (exited or not).
            let exited = sys::has_exited(a.child.id());
            let _ = sys::kill_process_group(a.child.id());
            match a.child.try_wait() {
                Ok(Some(s)) if exited && s.success() => {
                    files.shipped(&a.path);
                }
                _ if exited => {}
                _ => running += 1,
            }
        }
        let queues = files.queues();
        let waiting: u64 = queues
            .unshipped_keys()
            .iter()
            .map(|k| queues.backlog(k).files)
            .sum();
        if waiting > 0 {
            warn!(
                "ship: {} still {} to ship ({running} being shipped now, stopped with bsc); {} after the next start",
                crate::log::count(waiting, "file"),
                if waiting == 1 { "waits" } else { "wait" },
                if waiting == 1 { "it ships" } else { "they ship" }
            );
        }
        files.sync_journal();
    }
}

impl Lane {
    /// Counts and logs a failed attempt and sets the back-off.
    fn fail(
        &mut self,
        key: &str,
        path: &Path,
        spec: &ShipSpec,
        why: String,
        now: Instant,
        wall: UnixMicros,
    ) {
        self.streak += 1;
        self.failures += 1;
        let wait = backoff(self.streak, spec.retry_max());
        self.retry_at = Some((now + wait, wall.plus_micros(wait.as_micros() as i64)));
        let key_log = format!("ship {key}");
        crate::log::limited(
            &key_log,
            crate::log::Level::Warn,
            format_args!(
                "ship: handler {}: {}: {why}; not shipped (failure {} in a row), next attempt in {} s",
                name_of_key(key),
                path.display(),
                self.streak,
                wait.as_secs_f64()
            ),
        );
        self.last_error = Some(why);
        self.last_error_at = Some(wall);
    }
}

/// How much of a ship command's standard error is kept (its end).
const STDERR_TAIL: usize = 4096;

/// The longest last line of standard error that goes into the log and `last_error`.
const MAX_ERROR_LINE: usize = 300;

impl Attempt {
    /// Reads what the command wrote to standard error so far (bounded per
    /// call, so a command that writes without end cannot hold the loop),
    /// keeping the last [`STDERR_TAIL`] bytes.
    fn read_stderr(&mut self) {
        let Some(err) = self.stderr.as_mut() else {
            return;
        };
        let mut buf = [0u8; 4096];
        for _ in 0..64 {
            match std::io::Read::read(err, &mut buf) {
                Ok(0) => {
                    self.stderr = None;
                    break;
                }
                Ok(n) => {
                    self.tail.extend_from_slice(&buf[..n]);
                    let excess = self.tail.len().saturating_sub(STDERR_TAIL);
                    self.tail.drain(..excess);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}

/// The last line of `tail` that is not blank, its control characters escaped,
/// at most [`MAX_ERROR_LINE`] bytes (cut with `...`).
fn last_line(tail: &[u8]) -> Option<String> {
    let line = tail
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .rfind(|l| !l.is_empty())?;
    let cut = line.len() > MAX_ERROR_LINE;
    let text = String::from_utf8_lossy(&line[..line.len().min(MAX_ERROR_LINE)]);
    let mut line = crate::log::escape_controls(&text).into_owned();
    if cut {
        line.push_str("...");
    }
    Some(line)
}

/// A waiting file as its command sees it.
fn closed_file(key: &str, f: &Unshipped) -> ClosedFile {
    ClosedFile {
        handler: name_of_key(key).to_string(),
        on_close: Vec::new(),
        path: f.path.clone(),
        records: f.span.records.unwrap_or(0),
        bytes: f.bytes,
        first_ts: f.span.first_ts,
        last_ts: f.span.last_ts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_of_stderr_is_the_last_one_not_blank_escaped_and_bounded() {
        assert_eq!(last_line(b""), None);
        assert_eq!(last_line(b"\n \r\n"), None);
        assert_eq!(
            last_line(b"curl: (22) 404\nbucket b does not exist at E\r\n\n").as_deref(),
            Some("bucket b does not exist at E")
        );
        assert_eq!(
            last_line(b"a\x1b]0;x\x07b\n").as_deref(),
            Some("a\\u{1b}]0;x\\u{7}b")
        );
        let long = "x".repeat(1000);
        let cut = last_line(long.as_bytes()).unwrap();
        assert_eq!(cut.len(), MAX_ERROR_LINE + 3);
        assert!(cut.ends_with("..."));
        assert_eq!(
            last_line(b"\xff\xfe ok").as_deref(),
            Some("\u{fffd}\u{fffd} ok")
        );
    }
}
