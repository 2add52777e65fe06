//! `on_close` hooks: one per closed file, run to its end once (see [`super`]).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use super::{command, ended};
use crate::storage::{ClosedFile, NotHanded, Storage};
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
}

impl Hooks {
    /// No hook yet; at most `max_running` at once. A hook's end is journaled
    /// in the storage each call is lent: a hook that did not end (never
    /// started, or cut short by a stop or a crash) runs after the next start;
    /// one that ended is not run again.
    pub fn new(max_running: usize) -> Hooks {
        Hooks {
            max_running: max_running.max(1),
            max_queued: MAX_QUEUED,
            running: Vec::new(),
            stopping: false,
            queue: VecDeque::new(),
            not_run: Vec::new(),
        }
    }

    /// Queues `argv` for a closed file and starts what may start.
    pub fn submit(&mut self, argv: &[String], file: ClosedFile, files: &mut Storage) {
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
                files.hook_done(&old.file.path);
                self.not_run.push(old.file.handler);
            }
        }
        self.queue.push_back(Job {
            argv: argv.to_vec(),
            file,
        });
        self.poll(files);
    }

    /// Reaps finished hooks (logging their exit status; whatever a hook left
    /// running in its process group is killed) and starts waiting ones.
    pub fn poll(&mut self, files: &mut Storage) {
        self.running.retain_mut(|r| {
            let status = match ended(&mut r.child) {
                Ok(Some(status)) => status,
                Ok(None) => return true,
                Err(e) => {
                    warn!("on_close: {}: cannot wait for it: {e}", r.what);
                    files.hook_done(&r.path);
                    return false;
                }
            };
            if status.success() {
                info!("on_close: {}: done", r.what);
            } else {
                warn!("on_close: {}: {status}", r.what);
            }
            files.hook_done(&r.path);
            false
        });
        while self.running.len() < self.max_running && !self.stopping {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            let path = job.file.path.clone();
            let what = format!("{} {}", job.argv.join(" "), path.display());
            if !files.queues().hook_pending(&path) {
                // Retention spares a file whose hook waits: only the disk
                // budget, with nothing else left, deletes one (and says so).
                warn!("on_close: {what}: not run: bsc deleted the file before its hook could run");
                continue;
            }
            let handed = match files.hand_over(&path) {
                Ok(handed) => handed,
                Err(why) => {
                    // Never run on what is there now; not tried again.
                    files.hook_done(&path);
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
                    files.hook_done(&path);
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
    /// `clock` reads the monotonic time (the loop's).
    pub fn stop(&mut self, grace: Duration, files: &mut Storage, clock: &dyn Fn() -> Instant) {
        self.stopping = true;
        let deadline = clock() + grace;
        self.poll(files);
        while !self.running.is_empty() && clock() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            self.poll(files);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{LastFile, Retention, Span};

    #[test]
    fn hooks_past_the_queue_bound_are_dropped_and_retention_no_longer_spares_their_files() {
        let root = std::env::temp_dir().join(format!("bsc-hooks-bound-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let mut storage = Storage::open(&root);
        let now = crate::clock::Clock::System.now();
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
            storage.finished(p, Span::default(), None, true, None, now);
        }
        // One hook runs (and does not end), two may wait: the 4th and 5th
        // files push out the 2nd and 3rd.
        let mut hooks = Hooks::new(1);
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
            hooks.submit(&argv, file, &mut storage);
        }
        assert_eq!(hooks.pending(), 3, "one running, two waiting");
        let pending: Vec<bool> = paths
            .iter()
            .map(|p| storage.queues().hook_pending(p))
            .collect();
        assert_eq!(pending, [true, false, false, true, true]);
        // Retention (one file): the dropped ones go, the held ones are skipped.
        let r = Retention {
            max_files: Some(1),
            ..Retention::default()
        };
        let gone: Vec<PathBuf> = storage
            .take_excess("k", None, &r, now)
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(gone, [paths[1].clone(), paths[2].clone()]);
        hooks.stop(Duration::ZERO, &mut storage, &Instant::now);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
