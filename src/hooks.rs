//! Commands run for closed files: `on_close` hooks ([`Hooks`], to its end once per file)
//! and `ship` commands ([`Shipper`], store and forward: until one succeeds). Each
//! is an argv (no shell) with, as last argument, the path [`Storage::hand_over`]
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
//! one at a time, from the journal's ship queue ([`Storage::next_unshipped`]).
//! Exit 0 is shipped: journaled and forced to the disk ([`Storage::shipped`])
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
//! waiting hook off the queue then).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::UnixMicros;
use crate::config::ShipSpec;
use crate::storage::{ClosedFile, NotHanded, Storage, Unshipped};
use crate::sys;
use crate::{error, info, warn};

/// Most hooks waiting to start; past that the oldest waiting one is dropped
/// (logged, journaled as done), so a hook that never finishes cannot grow
/// memory forever, nor the files retention spares for their hooks: a handler
/// keeps at most its `max_files` plus the files whose hooks run
/// (`on_close_max_running`) or wait (this many, across handlers).
pub const MAX_QUEUED: usize = 10_000;

struct Job {
    argv: Vec<String>,
    file: ClosedFile,
}

/// A hook running: its child, what it is (for the log), the file's path.
struct Running {
    child: Child,
    what: String,
    path: PathBuf,
}

/// The running and waiting hooks.
pub struct Hooks {
    max_running: usize,
    /// [`MAX_QUEUED`] (smaller in tests).
    max_queued: usize,
    running: Vec<Running>,
    /// bsc is stopping: nothing more starts (waiting hooks run after the next start).
    stopping: bool,
    queue: VecDeque<Job>,
    /// The handlers of the files whose hook was not run (dropped from a full
    /// queue, the file gone or refused, the command not started), one entry
    /// per file, until [`Hooks::take_not_run`].
    not_run: Vec<String>,
    /// Where a hook's end is journaled: a hook that did not end (never started,
    /// or cut short by a stop or a crash) runs after the next start; one that
    /// ended is not run again.
    storage: Rc<Storage>,
}

impl Hooks {
    pub fn new(max_running: usize, storage: Rc<Storage>) -> Hooks {
        Hooks {
            max_running: max_running.max(1),
            max_queued: MAX_QUEUED,
            running: Vec::new(),
            stopping: false,
            queue: VecDeque::new(),
            not_run: Vec::new(),
            storage,
        }
    }

    /// Queues `argv` for a closed file and starts what may start.
    pub fn submit(&mut self, argv: &[String], file: ClosedFile) {
        if argv.is_empty() {
            return;
        }
        if self.queue.len() >= self.max_queued {
            if let Some(old) = self.queue.pop_front() {
                error!(
                    "on_close: {} waiting; dropped the one for {}: it is not run, and retention may delete the file",
                    crate::log::count(self.max_queued as u64, "hook"),
                    old.file.path.display()
                );
                // Journaled as done: retention no longer spares the file.
                self.storage.hook_done(&old.file.path);
                self.not_run.push(old.file.handler);
            }
        }
        self.queue.push_back(Job {
            argv: argv.to_vec(),
            file,
        });
        self.poll();
    }

    /// Reaps finished hooks (logging their exit status; whatever a hook left
    /// running in its process group is killed) and starts waiting ones.
    pub fn poll(&mut self) {
        let storage = &self.storage;
        self.running.retain_mut(|r| {
            let status = match ended(&mut r.child) {
                Ok(Some(status)) => status,
                Ok(None) => return true,
                Err(e) => {
                    warn!("on_close: {}: cannot wait for it: {e}", r.what);
                    storage.hook_done(&r.path);
                    return false;
                }
            };
            if status.success() {
                info!("on_close: {}: done", r.what);
            } else {
                warn!("on_close: {}: {status}", r.what);
            }
            storage.hook_done(&r.path);
            false
        });
        while self.running.len() < self.max_running && !self.stopping {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            let path = job.file.path.clone();
            let what = format!("{} {}", job.argv.join(" "), path.display());
            if !self.storage.hook_pending(&path) {
                // Retention spares a file whose hook waits: only the disk
                // budget, with nothing else left, deletes one (and says so).
                warn!("on_close: {what}: not run: bsc deleted the file before its hook could run");
                continue;
            }
            let handed = match self.storage.hand_over(&path) {
                Ok(handed) => handed,
                Err(why) => {
                    // Never run on what is there now; not tried again.
                    self.storage.hook_done(&path);
                    self.not_run.push(job.file.handler);
                    match why {
                        NotHanded::Gone => warn!("on_close: {what}: not run: the file is gone"),
                        NotHanded::Replaced(why) => {
                            error!("on_close: {what}: refused: {why}; not run")
                        }
                    }
                    continue;
                }
            };
            let spawned = command(&job.argv, &job.file, &handed)
                .and_then(|mut cmd| sys::spawn_supervised(&mut cmd));
            match spawned {
                Ok(child) => self.running.push(Running { child, what, path }),
                Err(e) => {
                    // Not retried: a command that cannot start will not start later.
                    self.storage.hook_done(&path);
                    self.not_run.push(job.file.handler);
                    warn!("on_close: cannot run {what}: {e}");
                }
            }
        }
    }

    /// At shutdown: nothing more starts (waiting hooks run after the next
    /// start), the hooks running get up to `grace` to finish, and those still
    /// running then are stopped with everything they started (their process
    /// groups killed): they run again after the next start too.
    pub fn stop(&mut self, grace: Duration) {
        self.stopping = true;
        let deadline = Instant::now() + grace;
        self.poll();
        while !self.running.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            self.poll();
        }
        for r in self.running.drain(..) {
            // Not waited for: what has not ended yet is reaped by init.
            let _ = sys::kill_process_group(r.child.id());
            // Its end is not journaled: it runs again after the next start.
            warn!(
                "on_close: {}: stopped with bsc; it runs again after the next start",
                r.what
            );
        }
    }

    /// The disk budget deletes `path` although its hook waits or runs: a
    /// waiting hook is taken off the queue (never run). Returns whether the
    /// hook runs now (it may then not find the file).
    pub fn file_deleted(&mut self, path: &Path) -> bool {
        self.queue.retain(|j| j.file.path != path);
        self.running.iter().any(|r| r.path == path)
    }

    /// The handlers of the files whose hook was not run since the last call
    /// (one entry per file; the disk budget's deletions are counted where
    /// they happen).
    pub fn take_not_run(&mut self) -> Vec<String> {
        std::mem::take(&mut self.not_run)
    }

    /// Hooks running or waiting.
    pub fn pending(&self) -> usize {
        self.running.len() + self.queue.len()
    }
}

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
/// folder, see [`Storage::hand_over`]) appended, `BSC_FILE` its own path, and
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

/// What `/stats` shows of one handler key's shipping.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
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
        declared: impl Fn(&[String]) -> bool,
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
                    self.storage.shipped(&a.path);
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
        self.start(now, wall, &current, &declared);
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
                let handed = match self.storage.hand_over(&file.path) {
                    Ok(handed) => handed,
                    Err(NotHanded::Gone) => {
                        error!(
                            "ship: handler {}: {} was waiting to ship and is gone (deleted behind bsc's back); dropped, it will not be shipped",
                            name_of_key(&key),
                            file.path.display()
                        );
                        self.storage.gone(&file.path);
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
                        self.storage.gone(&file.path);
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
                self.storage.sync_journal();
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
    pub fn stop(&mut self) {
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
                    self.storage.shipped(&a.path);
                }
                _ if exited => {}
                _ => running += 1,
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
    use crate::storage::{LastFile, Retention, Span};

    #[test]
    fn hooks_past_the_queue_bound_are_dropped_and_retention_no_longer_spares_their_files() {
        let root = std::env::temp_dir().join(format!("bsc-hooks-bound-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let storage = Rc::new(Storage::open(&root));
        let paths: Vec<PathBuf> = (1..=5).map(|i| root.join(format!("f{i}.pcap"))).collect();
        for (i, p) in paths.iter().enumerate() {
            std::fs::write(p, b"0123456789").unwrap();
            // Closed files are read-only (or they are not handed over).
            let read_only = std::os::unix::fs::PermissionsExt::from_mode(0o444);
            std::fs::set_permissions(p, read_only).unwrap();
            let last = LastFile {
                path: p.clone(),
                trusted: root.clone(),
                unnumbered: p.clone(),
                n: 0,
                seq: i as u64 + 1,
                created: true,
                closed: false,
            };
            storage.opened("k", last, (0, i as u64 + 1), None);
            storage.finished(p, Span::default(), None, true, None);
        }
        // One hook runs (and does not end), two may wait: the 4th and 5th
        // files push out the 2nd and 3rd.
        let mut hooks = Hooks::new(1, storage.clone());
        hooks.max_queued = 2;
        // The file's path comes last ($0 here): `sleep 30 PATH` would fail at once.
        let argv = ["sh".to_string(), "-c".to_string(), "sleep 30".to_string()];
        for p in &paths {
            let file = ClosedFile {
                handler: "h".into(),
                on_close: argv.to_vec(),
                path: p.clone(),
                records: 0,
                bytes: 10,
                first_ts: None,
                last_ts: None,
            };
            hooks.submit(&argv, file);
        }
        assert_eq!(hooks.pending(), 3, "one running, two waiting");
        let pending: Vec<bool> = paths.iter().map(|p| storage.hook_pending(p)).collect();
        assert_eq!(pending, [true, false, false, true, true]);
        // Retention (one file): the dropped ones go, the held ones are skipped.
        let r = Retention {
            max_files: Some(1),
            ..Retention::default()
        };
        let gone: Vec<PathBuf> = storage
            .take_excess("k", None, &r)
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(gone, [paths[1].clone(), paths[2].clone()]);
        hooks.stop(Duration::ZERO);
        std::fs::remove_dir_all(&root).unwrap();
    }

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

    #[test]
    fn a_key_names_its_handler() {
        assert_eq!(name_of_key("h1@('127.0.0.1', 8500)"), "h1");
        assert_eq!(name_of_key("plain"), "plain");
    }
}
