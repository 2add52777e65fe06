//! `on_close` hooks: a command (argv, no shell) run for each closed file, with the
//! file's path as last argument and `BSC_HANDLER`, `BSC_FILE`, `BSC_RECORDS`,
//! `BSC_BYTES`, `BSC_FIRST_TS`, `BSC_LAST_TS` in its environment.
//!
//! Hooks never block the loop: at most `max_running` run at once, the rest wait in
//! a queue; finished children are reaped when SIGCHLD arrives (and once a second),
//! and their exit status is logged.

use std::collections::VecDeque;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;

use crate::clock::UnixMicros;
use crate::storage::{ClosedFile, Storage};
use crate::sys;
use crate::{info, warn};

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
                    "on_close: {} hooks waiting; dropped the one for {}",
                    MAX_QUEUED,
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
            let ts = |t: Option<UnixMicros>| t.map(UnixMicros::to_rfc3339).unwrap_or_default();
            let mut cmd = Command::new(&job.argv[0]);
            cmd.args(&job.argv[1..])
                .arg(&job.file.path)
                .env("BSC_HANDLER", &job.file.handler)
                .env("BSC_FILE", &job.file.path)
                .env("BSC_RECORDS", job.file.records.to_string())
                .env("BSC_BYTES", job.file.bytes.to_string())
                .env("BSC_FIRST_TS", ts(job.file.first_ts))
                .env("BSC_LAST_TS", ts(job.file.last_ts))
                .stdin(Stdio::null());
            match sys::spawn_with_default_signals(&mut cmd) {
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
