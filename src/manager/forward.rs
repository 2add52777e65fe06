//! Store and forward, as the manager keeps it: the files handlers closed
//! (their events) on their way to `on_close` ([`Hooks`]) and the ship
//! commands ([`Shipper`]), and the shipped files of handlers with
//! `delete_after_ship` whose hook has still to end.
//!
//! The hook and ship queues themselves are the journal's
//! ([`crate::storage::Storage`]); this owns the commands and their state.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::handler::Cx;
use super::handlers::Handlers;
use crate::clock::UnixMicros;
use crate::config::StorageConfig;
use crate::ops::hooks::{Hooks, ShipStatus, Shipper};
use crate::storage::{ClosedFile, Storage};
use crate::{info, warn};

/// How long bsc waits at shutdown for `on_close` hooks still running.
const HOOK_GRACE: Duration = Duration::from_secs(5);

/// The hooks, the shipper and the closed files on their way to them.
pub struct Forward {
    hooks: Hooks,
    shipper: Shipper,
    /// Files handlers closed since the last [`Forward::dispatch_closed`].
    outbox: Vec<ClosedFile>,
    /// Files shipped with `delete_after_ship` while their `on_close` hook
    /// waited or ran (key, path): deleted once it has ended.
    delete_after_hook: Vec<(String, PathBuf)>,
    /// How old the oldest file waiting to ship may get before health says degraded.
    max_pending_age: Duration,
}

impl Forward {
    /// No hook or ship command yet, with the limits of `storage`.
    pub fn new(storage: &StorageConfig) -> Forward {
        Forward {
            hooks: Hooks::new(storage.on_close_max_running),
            shipper: Shipper::new(storage.ship_max_running),
            outbox: Vec::new(),
            delete_after_hook: Vec::new(),
            max_pending_age: storage.ship_max_pending_age,
        }
    }

    /// Where handlers put the files they close (see [`Cx`]).
    pub fn outbox(&mut self) -> &mut Vec<ClosedFile> {
        &mut self.outbox
    }

    /// Hands the files closed since the last call to their `on_close` hooks
    /// (and has the shipper look at its queue, which closing journaled them
    /// on).
    pub fn dispatch_closed(&mut self, files: &mut Storage, handlers: &mut Handlers) {
        let closed = std::mem::take(&mut self.outbox);
        if !closed.is_empty() {
            self.shipper.kick();
        }
        for file in closed {
            if !file.on_close.is_empty() {
                let argv = file.on_close.clone();
                self.hooks.submit(&argv, file, files);
            }
        }
        self.count_hooks_not_run(handlers);
    }

    /// Counts, in its handler's `hooks_not_run`, each file whose hook was not
    /// run (dropped from a full queue, the file gone or refused, the command
    /// not started).
    fn count_hooks_not_run(&mut self, handlers: &mut Handlers) {
        for name in self.hooks.take_not_run() {
            if let Some(h) = handlers
                .first_named(&name)
                .and_then(|id| handlers.get_mut(id))
            {
                h.hook_not_run();
            }
        }
    }

    /// Reaps finished hooks, starts waiting ones, deletes the shipped files
    /// whose hook has ended, and has the shipper look at its queue (SIGCHLD,
    /// and once a second).
    pub fn reap_hooks(&mut self, files: &mut Storage, handlers: &mut Handlers, now: UnixMicros) {
        self.hooks.poll(files);
        self.count_hooks_not_run(handlers);
        self.delete_hooked_shipped(files, handlers, now);
        self.shipper.kick();
    }

    /// Store and forward, every turn (cheap unless something changed or a
    /// deadline came): reaps ship commands, journals successes, starts the
    /// next attempts, and deletes shipped files of handlers with
    /// `delete_after_ship`.
    pub fn ship(
        &mut self,
        files: &mut Storage,
        handlers: &mut Handlers,
        now: Instant,
        wall: UnixMicros,
    ) {
        if !self.shipper.due(now, files) {
            return;
        }
        let running = &*handlers;
        let current = |key: &str| {
            running
                .iter()
                .find(|(_, h)| h.journal_key() == key)
                .and_then(|(_, h)| h.spec().ship.clone())
        };
        // The commands the config declares: a file whose handler has no `ship`
        // now ships with the command journaled at its close only if it is one.
        let declared = |argv: &[String]| {
            running
                .iter()
                .filter_map(|(_, h)| h.spec().ship.as_ref())
                .any(|s| s.argv == argv)
        };
        let shipped = self.shipper.poll(now, wall, current, declared, files);
        for done in shipped {
            if !done.delete {
                // Retention may now delete what it had to spare.
                if let Some(h) = handlers
                    .of_key(&done.key)
                    .and_then(|id| handlers.get_mut(id))
                {
                    h.shipped_one(&mut Cx {
                        files,
                        now: wall,
                        closed: &mut self.outbox,
                        // Retention only: no file is opened or closed.
                        clock: crate::clock::ClockWord::UNKNOWN,
                    });
                }
                continue;
            }
            if files.queues().hook_pending(&done.path) {
                // Its hook still needs it: deleted once the hook has ended.
                self.delete_after_hook.push((done.key, done.path));
                continue;
            }
            delete_shipped(files, handlers, &done.key, &done.path);
        }
    }

    /// Deletes the shipped files (`delete_after_ship`) whose hook has ended.
    fn delete_hooked_shipped(
        &mut self,
        files: &mut Storage,
        handlers: &mut Handlers,
        _now: UnixMicros,
    ) {
        let queues = files.queues();
        let (waiting, ready): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delete_after_hook)
            .into_iter()
            .partition(|(_, path)| queues.hook_pending(path));
        self.delete_after_hook = waiting;
        for (key, path) in ready {
            delete_shipped(files, handlers, &key, &path);
        }
    }

    /// When [`Forward::ship`] must run next without a kick (a ship timeout or
    /// the end of a back-off).
    pub fn next_deadline(&self, files: &Storage) -> Option<Instant> {
        self.shipper.next_deadline(files)
    }

    /// Every handler key that ships, with what it has waiting and how
    /// shipping goes: running handlers with `ship`, and any key with files
    /// waiting or attempts in this run (a handler gone, or changed to no
    /// `ship`).
    pub fn statuses(
        &self,
        files: &Storage,
        handlers: &Handlers,
        now: UnixMicros,
    ) -> Vec<(String, ShipStatus)> {
        let mut keys: Vec<String> = handlers
            .iter()
            .filter(|(_, h)| h.spec().ship.is_some())
            .map(|(_, h)| h.journal_key())
            .collect();
        keys.extend(files.queues().unshipped_keys());
        keys.extend(self.shipper.keys().map(str::to_string));
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|k| {
                let status = self.shipper.status(&k, now, files);
                (k, status)
            })
            .collect()
    }

    /// How old the oldest file waiting to ship may get before health says degraded.
    pub fn max_pending_age(&self) -> Duration {
        self.max_pending_age
    }

    /// The disk budget deleted a file of `key` waiting to ship.
    pub fn ship_dropped(&mut self, key: &str) {
        self.shipper.dropped(key);
    }

    /// The disk budget deletes `path` although its hook waits or runs (see
    /// [`Hooks::file_deleted`]). Returns whether the hook runs now.
    pub fn hook_file_deleted(&mut self, path: &Path) -> bool {
        self.hooks.file_deleted(path)
    }

    /// At shutdown (the files closed already handed on): hooks get a moment
    /// to finish, then are stopped (they run again after the next start), and
    /// ship commands are stopped. `clock` reads the loop's monotonic time.
    pub fn stop(&mut self, files: &mut Storage, clock: &dyn Fn() -> Instant) {
        self.hooks.stop(HOOK_GRACE, files, clock);
        self.shipper.stop(files);
        if self.hooks.pending() > 0 {
            warn!(
                "on_close: {} still running or waiting at shutdown; waiting ones run after the next start",
                crate::log::count(self.hooks.pending() as u64, "hook")
            );
        }
    }
}

/// Deletes a shipped file of a handler with `delete_after_ship`.
fn delete_shipped(files: &mut Storage, handlers: &mut Handlers, key: &str, path: &Path) {
    let Some(file) = files.take_file(key, path) else {
        // Not a file bsc created (it appended to it), or gone: never deleted.
        return;
    };
    match handlers.of_key(key).and_then(|id| handlers.get_mut(id)) {
        Some(h) => h.delete(files, &file, "shipped, delete_after_ship"),
        None => match files.remove(&file) {
            Ok(()) => info!(
                "ship: deleted {} (shipped, delete_after_ship)",
                file.path.display()
            ),
            Err(e) => warn!("ship: cannot delete {}: {e}", file.path.display()),
        },
    }
}
