//! Commands run for closed files: `on_close` hooks ([`Hooks`], once per file)
//! and `ship` commands ([`Shipper`], store and forward: until one succeeds). Each
//! is an argv (no shell) with the file's path as last argument and `BSC_HANDLER`,
//! `BSC_FILE`, `BSC_RECORDS`, `BSC_BYTES`, `BSC_FIRST_TS`, `BSC_LAST_TS` in its
//! environment.
//!
//! Neither blocks the loop: at most `max_running` run at once, the rest wait;
//! finished children are reaped when SIGCHLD arrives (and once a second), and
//! their exit status is logged.
//!
//! Shipping, per handler key (name and address): the oldest waiting file first,
//! one at a time, from the journal's ship queue ([`Storage::next_unshipped`]).
//! Exit 0 is shipped: journaled and forced to the disk ([`Storage::shipped`])
//! as soon as the child is reaped, before any other ship command starts. Any
//! other exit, a signal, a timeout (the process group is killed) or a command
//! that cannot start is a failure: that key waits [`backoff`] (5 s doubling, at
//! most `ship_retry_max_s`) and retries the same file. The command is the
//! running handler's `ship` if it has one, else the one recorded when the file
//! was closed (a handler removed or renamed keeps its files shipping). A file
//! that is gone when its turn comes is dropped: logged once, counted.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::UnixMicros;
use crate::config::ShipSpec;
use crate::storage::{ClosedFile, Storage, Unshipped};
use crate::sys;
use crate::{error, info, warn};

/// Most hooks waiting to start; past that the oldest waiting one is dropped
/// (and logged), so a hook that never finishes cannot grow memory forever.
const MAX_QUEUED: usize = 10_000;

struct Job {
    argv: Vec<String>,
    file: ClosedFile,
}

/// The running and waiting hooks.
pub struct Hooks {
    max_running: usize,
    running: Vec<(Child, String)>,
    queue: VecDeque<Job>,
    /// Where a hook's start is journaled: a hook that never started (bsc stopped
    /// or crashed first) runs after the next start, one that did is not run again.
    storage: Rc<Storage>,
}

impl Hooks {
    pub fn new(max_running: usize, storage: Rc<Storage>) -> Hooks {
        Hooks {
            max_running: max_running.max(1),
            running: Vec::new(),
            queue: VecDeque::new(),
            storage,
        }
    }

    /// Queues `argv` for a closed file and starts what may start.
    pub fn submit(&mut self, argv: &[String], file: ClosedFile) {
        if argv.is_empty() {
            return;
        }
        if self.queue.len() >= MAX_QUEUED {
            if let Some(old) = self.queue.pop_front() {
                warn!(
                    "on_close: {} waiting; dropped the one for {}",
                    crate::log::count(MAX_QUEUED as u64, "hook"),
                    old.file.path.display()
                );
            }
        }
        self.queue.push_back(Job {
            argv: argv.to_vec(),
            file,
        });
        self.poll();
    }

    /// Reaps finished hooks (logging their exit status) and starts waiting ones.
    pub fn poll(&mut self) {
        self.running
            .retain_mut(|(child, what)| match child.try_wait() {
                Ok(Some(status)) if status.success() => {
                    info!("on_close: {what}: done");
                    false
                }
                Ok(Some(status)) => {
                    warn!("on_close: {what}: {status}");
                    false
                }
                Ok(None) => true,
                Err(e) => {
                    warn!("on_close: {what}: cannot wait for it: {e}");
                    false
                }
            });
        while self.running.len() < self.max_running {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            let what = format!("{} {}", job.argv.join(" "), job.file.path.display());
            let spawned = command(&job.argv, &job.file)
                .and_then(|mut cmd| sys::spawn_with_default_signals(&mut cmd));
            match spawned {
                Ok(child) => {
                    self.storage.hook_started(&job.file.path);
                    self.running.push((child, what));
                }
                Err(e) => {
                    // Not retried: a command that cannot start will not start later.
                    self.storage.hook_started(&job.file.path);
                    warn!("on_close: cannot run {what}: {e}");
                }
            }
        }
    }

    /// Hooks running or waiting.
    pub fn pending(&self) -> usize {
        self.running.len() + self.queue.len()
    }
}

/// The command `argv` for `file`: its path appended, its `BSC_*` environment.
/// The config refuses an empty command and the journal's reader drops one, but
/// an empty `argv` is an error here too, never a panic.
fn command(argv: &[String], file: &ClosedFile) -> std::io::Result<Command> {
    let ts = |t: Option<UnixMicros>| t.map(UnixMicros::to_rfc3339).unwrap_or_default();
    let Some((program, args)) = argv.split_first() else {
        return Err(std::io::Error::other("the command is empty"));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg(&file.path)
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
    pub last_error: Option<String>,
    /// When the next attempt may start, while a failure holds it back (RFC 3339).
    pub next_attempt_at: Option<String>,
    /// Whether a ship command runs for this key now.
    pub running: bool,
}

/// A ship command running.
struct Attempt {
    child: Child,
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
    last_error: Option<String>,
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
    storage: Rc<Storage>,
}

impl Shipper {
    pub fn new(max_running: usize, storage: Rc<Storage>) -> Shipper {
        Shipper {
            max_running: max_running.max(1),
            lanes: HashMap::new(),
            dying: Vec::new(),
            // Files left waiting by an earlier run ship from the first turn.
            kicked: true,
            storage,
        }
    }

    /// Asks for a look at the next turn (a file was queued, SIGCHLD came).
    pub fn kick(&mut self) {
        self.kicked = true;
    }

    /// Whether [`Shipper::poll`] has something to do at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.kicked || self.next_deadline().is_some_and(|at| at <= now)
    }

    /// The next instant something must happen without a kick: a timeout, or the
    /// end of a back-off of a key with files waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lanes
            .iter()
            .filter_map(|(key, lane)| match &lane.running {
                Some(a) => Some(a.deadline),
                None => lane
                    .retry_at
                    .filter(|_| self.storage.has_unshipped(key))
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
    ) -> Vec<ShippedFile> {
        self.kicked = false;
        self.dying.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        let mut shipped = Vec::new();
        for (key, lane) in self.lanes.iter_mut() {
            let Some(a) = lane.running.as_mut() else {
                continue;
            };
            let failure = match a.child.try_wait() {
                Ok(Some(status)) if status.success() => None,
                Ok(Some(status)) => Some(status.to_string()),
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
                    self.storage.shipped(&a.path);
                    lane.shipped += 1;
                    lane.streak = 0;
                    lane.retry_at = None;
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
                    if a.deadline <= now {
                        self.dying.push(a.child);
                    }
                    lane.fail(key, &a.path, &a.spec, why, now, wall);
                }
            }
        }
        self.start(now, wall, &current);
        shipped
    }

    /// Starts what may start (see [`Shipper::poll`]): keys whose oldest waiting
    /// file is oldest go first.
    fn start(
        &mut self,
        now: Instant,
        wall: UnixMicros,
        current: &impl Fn(&str) -> Option<ShipSpec>,
    ) {
        let mut running = self.running();
        if running >= self.max_running {
            return;
        }
        let mut ready: Vec<(std::time::SystemTime, String)> = self
            .storage
            .unshipped_keys()
            .into_iter()
            .filter(|key| {
                self.lanes.get(key).is_none_or(|l| {
                    l.running.is_none() && l.retry_at.is_none_or(|(at, _)| at <= now)
                })
            })
            .filter_map(|key| Some((self.storage.next_unshipped(&key)?.closed_at, key)))
            .collect();
        ready.sort();
        for (_, key) in ready {
            if running >= self.max_running {
                break;
            }
            let lane = self.lanes.entry(key.clone()).or_default();
            while let Some(file) = self.storage.next_unshipped(&key) {
                if is_gone(&file.path) {
                    error!(
                        "ship: handler {}: {} was waiting to ship and is gone (deleted behind bsc's back); dropped, it will not be shipped",
                        name_of_key(&key),
                        file.path.display()
                    );
                    self.storage.gone(&file.path);
                    lane.dropped += 1;
                    continue;
                }
                let spec = current(&key).unwrap_or_else(|| file.ship.clone());
                // Everything journaled so far (this file's close among it) is on
                // the disk before the command can act on the file.
                self.storage.sync_journal();
                let closed = closed_file(&key, &file);
                let spawned = command(&spec.argv, &closed)
                    .and_then(|mut cmd| sys::spawn_supervised(&mut cmd));
                match spawned {
                    Ok(child) => {
                        lane.running = Some(Attempt {
                            child,
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
    pub fn status(&self, key: &str, now: UnixMicros) -> ShipStatus {
        let backlog = self.storage.backlog(key);
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
            status.last_error = lane.last_error.clone();
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
    pub fn stop(&mut self) {
        let mut running = 0;
        for lane in self.lanes.values_mut() {
            let Some(mut a) = lane.running.take() else {
                continue;
            };
            match a.child.try_wait() {
                Ok(Some(s)) if s.success() => {
                    self.storage.shipped(&a.path);
                }
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => {
                    running += 1;
                    let _ = sys::kill_process_group(a.child.id());
                }
            }
        }
        let waiting: u64 = self
            .storage
            .unshipped_keys()
            .iter()
            .map(|k| self.storage.backlog(k).files)
            .sum();
        if waiting > 0 {
            warn!(
                "ship: {} still {} to ship ({running} being shipped now, stopped with bsc); {} after the next start",
                crate::log::count(waiting, "file"),
                if waiting == 1 { "waits" } else { "wait" },
                if waiting == 1 { "it ships" } else { "they ship" }
            );
        }
        self.storage.sync_journal();
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
    }
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

/// Whether nothing is at `path` any more.
fn is_gone(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
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
