//! The manager: every capturer (one socket per address) and every handler.
//!
//! Invariants:
//! - one capturer per address; handlers on the same address share it, and a
//!   capturer left without handlers is closed at once (its port is free again);
//! - a name appears at most once per address; no two handlers' patterns give the
//!   same file, checked whenever a handler is added or its metadata changes (and
//!   [`crate::storage::Storage`] refuses a second writer for any open file);
//! - only the manager changes a handler (its mutators are visible here only);
//! - the records a drain takes from a batch are written before the batch is
//!   read into again: each handler of the capturer writes them with one
//!   gathering `writev` from its [`pending::Gather`], which borrows the batch,
//!   so the compiler proves that no pending record refers to a receive slot
//!   once the batch ends (handlers of other capturers cost nothing); outside a
//!   drain, a handler with pending records is in `dirty`;
//! - every open file with a rotation deadline has an entry in `timers` (entries
//!   may be stale: they are checked when they fire); the capturers, their
//!   tokens and timers are [`capturers::Capturers`]'s.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use mio::Registry;
use serde_json::{Map, Value};

pub use crate::capture::capturer::{Capturer, CapturerState, Drained, Received, TcpStatus, Unit};
use crate::clock::{UnixMicros, UnixNanos};
use crate::config::StorageConfig;
use crate::config::{Address, Config, HandlerSpec, Origin, Timestamps};
use crate::hooks::{Hooks, ShipStatus, Shipper};
use crate::pcap::{self, Attempt, LinkType, PcapFile, Precision};
use crate::persist::StateFile;
use crate::storage::{DiskBudget, Span, Storage};
use crate::sys;
use crate::{error, info, warn};
use capturers::Capturers;
use handler::{journal_key, Handler, Recorded, FLUSH_AT};

pub mod capturers;
pub mod handler;
pub mod pending;

/// Index of a handler in the manager.
pub type HandlerId = usize;
/// Index of a capturer in the manager.
pub type CapturerId = usize;

/// Why a handler could not be added.
#[derive(Debug, PartialEq, Eq)]
pub enum AddError {
    /// Same name on the address, another conn_type on it, or the same file as
    /// another handler (HTTP 409).
    Conflict(String),
    /// The socket could not be opened (HTTP 409: usually "address in use").
    Socket(String),
    /// The address names something that does not exist, such as an interface
    /// (HTTP 400).
    Invalid(String),
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddError::Conflict(m) | AddError::Socket(m) | AddError::Invalid(m) => f.write_str(m),
        }
    }
}

/// Why `POST /<name>/rotate` changed nothing (or, `Failed`, could not open a
/// next file after closing the current one).
#[derive(Debug, PartialEq, Eq)]
pub enum RotateError {
    /// No handler has that name (HTTP 404).
    NotFound,
    /// A field is not metadata, a value is bad, or a name would be (HTTP 400).
    Invalid(String),
    /// The new name is another handler's file (HTTP 409).
    Conflict(String),
    /// The next file could not be opened (HTTP 503; the handler retries at the
    /// next unit).
    Failed(String),
}

/// One handler a rotation closed and reopened.
#[derive(Debug)]
pub struct Rotated {
    pub id: HandlerId,
    pub previous: Option<PathBuf>,
    pub path: PathBuf,
}

/// All capturers and handlers.
pub struct Manager {
    root: PathBuf,
    /// Every socket, its token and timers, and the receive batch.
    capturers: Capturers,
    handlers: Vec<Option<Handler>>,
    /// Handlers with pending records (see the module invariants).
    dirty: Vec<HandlerId>,
    timers: BTreeSet<(UnixMicros, HandlerId)>,
    /// The journal, open files and the closed-file outbox.
    storage: Rc<Storage>,
    budget: DiskBudget,
    /// Bytes handlers wrote during reads (past [`FLUSH_AT`]), not yet counted
    /// against the disk budget's headroom.
    written_early: u64,
    /// How long a TCP peer may be unreachable before health says degraded.
    peer_unreachable: std::time::Duration,
    /// Whether the disk budget stopped writing (nothing left to delete).
    disk_full: bool,
    /// Bytes that may still be written before the budget must be looked at
    /// again (`None`: no budget).
    headroom: Option<u64>,
    hooks: Hooks,
    /// Files shipped with `delete_after_ship` while their `on_close` hook
    /// waited or ran (key, path): deleted once it has ended.
    delete_after_hook: Vec<(String, PathBuf)>,
    /// Store and forward: the ship commands.
    shipper: Shipper,
    /// How old the oldest file waiting to ship may get before health says degraded.
    ship_max_pending_age: std::time::Duration,
    /// Where handlers added over the API are saved (`None`: `persist: false`).
    state: Option<StateFile>,
}

/// How long bsc waits at shutdown for `on_close` hooks still running.
const HOOK_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl Manager {
    /// An empty manager writing under `root`, with the disk budget, persistence
    /// and hook settings of `storage`.
    pub fn new(root: &Path, storage: &StorageConfig) -> Manager {
        let journal = Rc::new(Storage::open(root));
        Manager {
            root: root.to_path_buf(),
            capturers: Capturers::new(),
            handlers: Vec::new(),
            dirty: Vec::new(),
            timers: BTreeSet::new(),
            storage: journal.clone(),
            budget: DiskBudget {
                min_free_bytes: storage.min_free_bytes,
                min_free_percent: storage.min_free_percent,
            },
            written_early: 0,
            peer_unreachable: storage.peer_unreachable,
            disk_full: false,
            headroom: None,
            hooks: Hooks::new(storage.on_close_max_running, journal.clone()),
            delete_after_hook: Vec::new(),
            shipper: Shipper::new(storage.ship_max_running, journal),
            ship_max_pending_age: storage.ship_max_pending_age,
            state: storage.persist.then(|| StateFile::new(root)),
        }
    }

    /// The handlers added over the API in an earlier run (see [`crate::persist`]).
    pub fn saved_api_handlers(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        self.state.as_ref().map_or_else(Vec::new, StateFile::load)
    }

    /// Saves the handlers added over the API (after every change to them).
    pub fn save_api_handlers(&self) {
        let Some(state) = &self.state else { return };
        let specs: Vec<_> = self
            .handlers()
            .filter(|(_, h)| h.spec().origin == Origin::Api)
            .map(|(_, h)| h.spec().to_json())
            .collect();
        if let Err(e) = state.save(&self.storage, &specs) {
            let key = "persist";
            crate::log::limited(
                key,
                crate::log::Level::Error,
                format_args!("cannot save the API handlers: {e}; they will not survive a restart"),
            );
        }
    }

    /// Forgets journal entries outside the root and `bases` (see
    /// [`Storage::keep_trusted`]); called at start-up, before any handler.
    pub fn keep_trusted(&mut self, bases: &[PathBuf]) {
        self.storage.keep_trusted(bases);
    }

    /// Once every handler has started: files a crash left open for handlers that
    /// are not running any more are repaired (a torn last record cut) and made
    /// final, so nothing stays half-written and writable. (A running handler
    /// settles its own: resumed by its first unit, or closed and hooked.)
    pub fn settle_left_open(&mut self) {
        for (key, last, ship) in self.storage.left_open() {
            if self.handlers().any(|(_, h)| h.journal_key() == key) {
                continue;
            }
            let busy = |id| self.storage.is_busy(id);
            let located = crate::storage::dir_of(&last.trusted, &last.path)
                .and_then(|(dir, name)| sys::identity_at(&dir, &name).map(|_| (dir, name)));
            if located
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            {
                // Never created (a crash right after its intent), or deleted
                // since: forgotten, its name still counted.
                self.storage.gone(&last.path);
                continue;
            }
            let finished = located.and_then(|(dir, name)| {
                for link in LinkType::ALL {
                    for precision in Precision::ALL {
                        // Final already: made so, then bsc stopped before
                        // journaling the close.
                        if let Some((scan, id, _)) = pcap::scan_final(&dir, &name, link, precision)?
                        {
                            return Ok(Some((scan, id)));
                        }
                        let path = last.path.clone();
                        if let Attempt::Ready(f, _) =
                            PcapFile::open(&dir, &name, path, link, precision, true, &busy)?
                        {
                            let (scan, id) = (f.earlier(), f.identity());
                            f.finish()?;
                            return Ok(Some((scan, id)));
                        }
                    }
                }
                Ok(None)
            });
            let (span, id) = match finished {
                Ok(Some((scan, id))) => {
                    info!(
                        "{}: left open when bsc last stopped, by a handler not running now ({key}); repaired and closed",
                        last.path.display()
                    );
                    let span = Span {
                        records: Some(scan.records),
                        first_ts: scan.first_ts,
                        last_ts: scan.last_ts,
                    };
                    (span, Some(id))
                }
                Ok(None) => (Span::default(), None),
                Err(e) => {
                    warn!(
                        "{}: left open when bsc last stopped; cannot close it: {e}",
                        last.path.display()
                    );
                    (Span::default(), None)
                }
            };
            // It waits to ship with the settings its handler had when it
            // opened it (as a file it had closed would), unless it is gone.
            // (`on_close` is not run: like the files a gone handler closed,
            // whose hooks run only when a handler of that key starts again.)
            let ship = ship.filter(|_| std::fs::symlink_metadata(&last.path).is_ok());
            self.storage
                .finished(&last.path, span, id, false, ship.as_ref());
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Adds a handler: attaches it to the capturer of its address, or opens one
    /// (a TCP one starts connecting at `mono`, the loop's instant).
    pub fn add_handler(
        &mut self,
        spec: HandlerSpec,
        registry: &Registry,
        now: UnixMicros,
        mono: Instant,
    ) -> Result<HandlerId, AddError> {
        let existing = self.capturer_at(&spec.address);
        if let Some(cid) = existing {
            let cap = self.capturer(cid);
            if cap.conn_type != spec.conn_type {
                return Err(AddError::Conflict(format!(
                    "address {} is already captured as {}, not {}",
                    spec.address.python_repr(),
                    cap.conn_type,
                    spec.conn_type
                )));
            }
            if cap
                .handlers()
                .iter()
                .any(|&h| self.handler(h).spec().name == spec.name)
            {
                return Err(AddError::Conflict(format!(
                    "a handler named {:?} already captures {}",
                    spec.name,
                    spec.address.python_repr()
                )));
            }
        }
        self.check_file_free(&spec, None, now)?;

        let cid = match existing {
            Some(cid) => {
                let cap = self.capturer(cid);
                if let Some(first) = cap.handlers().first() {
                    let first = self.handler(*first).spec();
                    if (
                        first.rcvbuf_bytes,
                        first.interface.as_ref(),
                        first.connect_timeout,
                        first.reconnect_max,
                    ) != (
                        spec.rcvbuf_bytes,
                        spec.interface.as_ref(),
                        spec.connect_timeout,
                        spec.reconnect_max,
                    ) {
                        warn!(
                            "handler {}: {} is already open; its socket options (rcvbuf_bytes, interface, connect_timeout_s, reconnect_max_s) stay those of handler {}",
                            spec.name, spec.address, first.name
                        );
                    }
                }
                cid
            }
            None => self.capturers.open(&spec, registry, mono, now)?,
        };
        let hid = self
            .handlers
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.handlers.len());
        let local = self.capturer(cid).local_addr();
        let mut handler = Handler::new(spec, &self.root, now, local, self.storage.clone());
        handler.set_suspended(self.disk_full);
        let resumed_until = handler.resume(now);
        // Files closed before bsc last stopped whose hook never started.
        let waiting = self
            .storage
            .take_unhooked(&handler.journal_key(), &handler.spec().name);
        if !waiting.is_empty() && !handler.spec().on_close.is_empty() {
            info!(
                "handler {}: {} closed files still wait for on_close from before the restart; queued",
                handler.spec().name,
                waiting.len()
            );
            for mut file in waiting {
                file.on_close = handler.spec().on_close.clone();
                self.storage.closed(file);
            }
        } else {
            // The handler has no hook any more: nothing is left to run for them.
            for file in waiting {
                self.storage.hook_done(&file.path);
            }
        }
        let spec = handler.spec();
        let next = handler.log_file_path(now);
        info!(
            "handler {}: capturing {} {} into {} as {}",
            spec.name,
            spec.conn_type,
            spec.address,
            next.parent().unwrap_or(Path::new("")).display(),
            spec.file_name_pattern.source()
        );
        if hid == self.handlers.len() {
            self.handlers.push(Some(handler));
        } else {
            self.handlers[hid] = Some(handler);
        }
        if let Some(at) = resumed_until {
            self.timers.insert((at, hid));
        }
        self.capturers.attach(cid, hid);
        self.update_read_time_wanted(cid);
        Ok(hid)
    }

    /// Whether `spec` can name its next file at `now` (every rendered name
    /// checked, see [`crate::paths`]) and that name is no other handler's
    /// (`except` is the handler being changed).
    fn check_file_free(
        &self,
        spec: &HandlerSpec,
        except: Option<HandlerId>,
        now: UnixMicros,
    ) -> Result<(), AddError> {
        let seq = self
            .storage
            .last(&journal_key(spec))
            .map_or(1, |l| l.seq + 1);
        let path = spec
            .file_path(&self.root, now.to_datetime(), seq)
            .map_err(AddError::Invalid)?
            .full();
        crate::paths::check_not_state_folder(&path, &self.root).map_err(AddError::Invalid)?;
        let other = self.handlers().find(|&(id, h)| {
            Some(id) != except
                && (h.pattern_path(now).as_ref() == Some(&path)
                    || h.current_file() == Some(path.as_path()))
        });
        match other {
            Some((_, h)) => Err(AddError::Conflict(format!(
                "handler {:?} already writes {}",
                h.spec().name,
                path.display()
            ))),
            None => Ok(()),
        }
    }

    /// Stops a handler: flushes and closes its file; closes its capturer if it was
    /// the last handler there.
    pub fn remove_handler(&mut self, hid: HandlerId, registry: &Registry) -> Option<Handler> {
        self.detach_handler(hid, registry, true)
    }

    /// Stops a handler; its capturer, if left without handlers, is closed only
    /// when `close_empty` (a reload that replaces the handler keeps the socket, so
    /// nothing queued in it is lost while the new handler starts).
    fn detach_handler(
        &mut self,
        hid: HandlerId,
        registry: &Registry,
        close_empty: bool,
    ) -> Option<Handler> {
        let handler = self.handlers.get_mut(hid)?.take()?;
        self.dirty.retain(|&h| h != hid);
        let cid = self.capturer_at(&handler.spec().address)?;
        if self.capturers.detach(cid, hid) {
            if close_empty {
                self.capturers.close(cid, registry);
            }
        } else {
            self.update_read_time_wanted(cid);
        }
        info!("handler {}: stopped", handler.spec().name);
        // Dropping the handler closes its file; the caller may still read it first.
        Some(handler)
    }

    /// Reads from a capturer (see [`Capturer::read`]) and gives each unit to
    /// every handler of it; each handler of the capturer writes what it took
    /// from a batch with one gathering `writev` before the batch ends; arms the
    /// rotation and capturer timers that follow. `now` is the loop's instant,
    /// `clock` the time of reading.
    pub fn drain(
        &mut self,
        cid: CapturerId,
        registry: &Registry,
        now: Instant,
        clock: impl Fn() -> UnixNanos,
    ) -> Drained {
        let Manager {
            capturers,
            handlers,
            timers,
            written_early,
            ..
        } = self;
        let drained = capturers.read(cid, registry, now, clock, |units, gathers| {
            let ids = units.handlers();
            for unit in units.by_ref() {
                for (&hid, gather) in ids.iter().zip(gathers.iter_mut()) {
                    // Handler ids in a capturer always refer to live handlers.
                    let Some(Some(h)) = handlers.get_mut(hid) else {
                        continue;
                    };
                    let Recorded { rotate_at, .. } = h.record(&unit, gather);
                    // Units copied in a burst (framed TCP): write now rather
                    // than hold them all.
                    if h.pending_own_bytes() >= FLUSH_AT {
                        *written_early += h.flush_from(gather);
                    }
                    if let Some(at) = rotate_at {
                        timers.insert((at, hid));
                    }
                }
            }
            // The gathers borrow the batch: written before it is read into again.
            for (&hid, gather) in ids.iter().zip(gathers.iter_mut()) {
                if let Some(Some(h)) = handlers.get_mut(hid) {
                    *written_early += h.flush_from(gather);
                }
            }
        });
        if let Drained::Ended(_) = drained {
            for &hid in capturers.get(cid).handlers() {
                if let Some(Some(h)) = handlers.get_mut(hid) {
                    h.connection_ended();
                }
            }
        }
        drained
    }

    /// Units received since start, on every capturer.
    pub fn units_read(&self) -> u64 {
        self.capturers.units_read()
    }

    /// The earliest capturer deadline (a TCP back-off or connect timeout).
    pub fn next_capturer_deadline(&self) -> Option<Instant> {
        self.capturers.next_deadline()
    }

    /// Runs the capturer timers that are due at `now`.
    pub fn expire_capturers(&mut self, registry: &Registry, now: Instant) {
        self.capturers.expire(registry, now);
    }

    /// Writes the pending records of every handler that received any.
    pub fn flush_dirty(&mut self) {
        let mut written = std::mem::take(&mut self.written_early);
        for hid in self.dirty.drain(..) {
            if let Some(Some(h)) = self.handlers.get_mut(hid) {
                written += h.flush();
            }
        }
        // The disk budget follows the writes: once what was written since the last
        // look could have used up the headroom, look again at once.
        if let Some(headroom) = self.headroom.as_mut() {
            *headroom = headroom.saturating_sub(written);
            if *headroom == 0 {
                self.enforce_budget();
            }
        }
    }

    /// The earliest rotation deadline, if any file is open with one.
    pub fn next_deadline(&self) -> Option<UnixMicros> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Closes every file whose rotation period has ended by `now`.
    pub fn expire(&mut self, now: UnixMicros) {
        while let Some(&(at, hid)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(Some(h)) = self.handlers.get_mut(hid) {
                h.close_if_due(now);
            }
        }
    }

    /// Flushes and closes every file (on shutdown): each goes to `on_close` and
    /// waits to ship (after the next start). Sockets close when dropped.
    pub fn close_all(&mut self) {
        for h in self.handlers.iter_mut().flatten() {
            h.close();
        }
        self.dirty.clear();
        self.dispatch_closed();
        // No command bsc started outlives it: hooks get a moment to finish,
        // then are stopped (they run again after the next start).
        self.hooks.stop(HOOK_GRACE);
        self.shipper.stop();
        if self.hooks.pending() > 0 {
            warn!(
                "on_close: {} still running or waiting at shutdown; waiting ones run after the next start",
                crate::log::count(self.hooks.pending() as u64, "hook")
            );
        }
    }

    /// Hands the files closed since the last call to their `on_close` hooks (and
    /// has the shipper look at its queue, which closing journaled them on).
    pub fn dispatch_closed(&mut self) {
        let closed = self.storage.take_closed();
        if !closed.is_empty() {
            self.shipper.kick();
        }
        for file in closed {
            if !file.on_close.is_empty() {
                let argv = file.on_close.clone();
                self.hooks.submit(&argv, file);
            }
        }
        self.count_hooks_not_run();
    }

    /// Counts, in its handler's `hooks_not_run`, each file whose hook was not
    /// run (dropped from a full queue, the file gone or refused, the command
    /// not started).
    fn count_hooks_not_run(&mut self) {
        for name in self.hooks.take_not_run() {
            let owner = self
                .handlers()
                .find(|(_, h)| h.spec().name == name)
                .map(|(id, _)| id);
            if let Some(id) = owner {
                self.handler_mut(id).hook_not_run();
            }
        }
    }

    /// SIGCHLD: reaps finished hooks and starts waiting ones (ship commands
    /// are reaped by the next [`Manager::ship`]).
    pub fn reap_hooks(&mut self) {
        self.hooks.poll();
        self.count_hooks_not_run();
        self.delete_hooked_shipped();
        self.shipper.kick();
    }

    /// Store and forward, every turn (cheap unless something changed or a
    /// deadline came): reaps ship commands, journals successes, starts the next
    /// attempts, and deletes shipped files of handlers with `delete_after_ship`.
    pub fn ship(&mut self, now: Instant, wall: UnixMicros) {
        if !self.shipper.due(now) {
            return;
        }
        let handlers = &self.handlers;
        let current = |key: &str| {
            handlers
                .iter()
                .flatten()
                .find(|h| h.journal_key() == key)
                .and_then(|h| h.spec().ship.clone())
        };
        // The commands the config declares: a file whose handler has no `ship`
        // now ships with the command journaled at its close only if it is one.
        let declared = |argv: &[String]| {
            handlers
                .iter()
                .flatten()
                .filter_map(|h| h.spec().ship.as_ref())
                .any(|s| s.argv == argv)
        };
        for done in self.shipper.poll(now, wall, current, declared) {
            let owner = self
                .handlers()
                .find(|(_, h)| h.journal_key() == done.key)
                .map(|(id, _)| id);
            if !done.delete {
                // Retention may now delete what it had to spare.
                if let Some(id) = owner {
                    self.handler_mut(id).shipped_one();
                }
                continue;
            }
            if self.storage.hook_pending(&done.path) {
                // Its hook still needs it: deleted once the hook has ended.
                self.delete_after_hook.push((done.key, done.path));
                continue;
            }
            self.delete_shipped(&done.key, &done.path);
        }
    }

    /// Deletes a shipped file of a handler with `delete_after_ship`.
    fn delete_shipped(&mut self, key: &str, path: &Path) {
        let Some(file) = self.storage.take_file(key, path) else {
            // Not a file bsc created (it appended to it), or gone: never deleted.
            return;
        };
        let owner = self
            .handlers()
            .find(|(_, h)| h.journal_key() == key)
            .map(|(id, _)| id);
        match owner {
            Some(id) => self
                .handler_mut(id)
                .delete(&file, "shipped, delete_after_ship"),
            None => match self.storage.remove(&file) {
                Ok(()) => info!(
                    "ship: deleted {} (shipped, delete_after_ship)",
                    file.path.display()
                ),
                Err(e) => warn!("ship: cannot delete {}: {e}", file.path.display()),
            },
        }
    }

    /// Deletes the shipped files (`delete_after_ship`) whose hook has ended.
    fn delete_hooked_shipped(&mut self) {
        let storage = &self.storage;
        let (waiting, ready): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delete_after_hook)
            .into_iter()
            .partition(|(_, path)| storage.hook_pending(path));
        self.delete_after_hook = waiting;
        for (key, path) in ready {
            self.delete_shipped(&key, &path);
        }
    }

    /// When [`Manager::ship`] must run next without a kick (a ship timeout or
    /// the end of a back-off).
    pub fn next_ship_deadline(&self) -> Option<Instant> {
        self.shipper.next_deadline()
    }

    /// Every handler key that ships, with what it has waiting and how shipping
    /// goes: running handlers with `ship`, and any key with files waiting or
    /// attempts in this run (a handler gone, or changed to no `ship`).
    pub fn ship_statuses(&self, now: UnixMicros) -> Vec<(String, ShipStatus)> {
        let mut keys: Vec<String> = self
            .handlers()
            .filter(|(_, h)| h.spec().ship.is_some())
            .map(|(_, h)| h.journal_key())
            .collect();
        keys.extend(self.storage.unshipped_keys());
        keys.extend(self.shipper.keys().map(str::to_string));
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|k| {
                let status = self.shipper.status(&k, now);
                (k, status)
            })
            .collect()
    }

    /// How old the oldest file waiting to ship may get before health says degraded.
    pub fn ship_max_pending_age(&self) -> std::time::Duration {
        self.ship_max_pending_age
    }

    /// Once a second: fsync and `max_age` per handler, the disk budget, hooks.
    pub fn tick(&mut self) {
        // A journal an append failed on is written anew as soon as it can be.
        self.storage.catch_up();
        // One bsc per root: the lock file is still the one bsc holds.
        self.storage.keep_lock();
        for h in self.handlers.iter_mut().flatten() {
            h.maintain();
        }
        self.capturers.give_back_memory();
        self.enforce_budget();
        self.dispatch_closed();
        self.hooks.poll();
        self.count_hooks_not_run();
        self.delete_hooked_shipped();
        self.shipper.kick();
    }

    /// Keeps the root's file system above `min_free_bytes`/`min_free_percent` by
    /// deleting the oldest closed files bsc created (across handlers); if nothing
    /// is left to delete, stops writing (units counted as lost) until space returns.
    fn enforce_budget(&mut self) {
        if self.budget == DiskBudget::default() {
            return;
        }
        let Ok((mut free, total)) = sys::disk_space(&self.root) else {
            return;
        };
        let Some(threshold) = self.budget.threshold(total) else {
            return;
        };
        for _ in 0..1000 {
            if free >= threshold {
                break;
            }
            // The oldest closed file bsc created, of a running handler or not;
            // one still waiting to ship only when nothing else is left.
            let Some((key, victim)) = self.storage.take_oldest(true) else {
                break;
            };
            if self.storage.is_unshipped(&victim.path) {
                error!(
                    "disk budget: deleting {} ({}, handler {}) although it was not shipped yet: nothing else is left to free; it will never be shipped (bsc_ship_dropped_total)",
                    victim.path.display(),
                    crate::log::size(victim.bytes),
                    crate::hooks::name_of_key(&key)
                );
                self.shipper.dropped(&key);
            }
            let owner = self
                .handlers()
                .find(|(_, h)| h.journal_key() == key)
                .map(|(id, _)| id);
            if self.storage.hook_pending(&victim.path) {
                let running = self.hooks.file_deleted(&victim.path);
                error!(
                    "disk budget: deleting {} ({}, handler {}) although its on_close hook {}: nothing else is left to free",
                    victim.path.display(),
                    crate::log::size(victim.bytes),
                    crate::hooks::name_of_key(&key),
                    if running {
                        "still runs (it may not find the file)"
                    } else {
                        "has not run yet; the hook is not run for it"
                    }
                );
                if let Some(id) = owner {
                    self.handler_mut(id).hook_not_run();
                }
            }
            match owner {
                Some(id) => self.handler_mut(id).delete(&victim, "disk budget"),
                None => match self.storage.remove(&victim) {
                    Ok(()) => info!(
                        "disk budget: deleted {} (a file of a handler no longer running)",
                        victim.path.display()
                    ),
                    Err(e) => warn!("disk budget: cannot delete {}: {e}", victim.path.display()),
                },
            }
            free = sys::disk_space(&self.root).map_or(free, |(f, _)| f);
        }
        let full = free < threshold;
        // Look again after half the remaining room is written (or at the next tick).
        self.headroom = Some(free.saturating_sub(threshold) / 2);
        if full != self.disk_full {
            if full {
                error!(
                    "disk budget: {} has {} free, below the {} to keep, and no closed bsc file is left to delete: units are counted as lost until space returns",
                    self.root.display(),
                    crate::log::size(free),
                    crate::log::size(threshold)
                );
            } else {
                info!(
                    "disk budget: {} free again; writing resumes",
                    crate::log::size(free)
                );
            }
            self.disk_full = full;
            for h in self.handlers.iter_mut().flatten() {
                h.set_suspended(full);
            }
        }
    }

    /// How long a TCP peer may be unreachable before health says degraded.
    pub fn peer_unreachable(&self) -> std::time::Duration {
        self.peer_unreachable
    }

    /// The disk budget's view of the root's file system now: (free bytes, total
    /// bytes, bytes to keep free if a budget is set).
    pub fn disk(&self) -> Option<(u64, u64, Option<u64>)> {
        let (free, total) = sys::disk_space(&self.root).ok()?;
        Some((free, total, self.budget.threshold(total)))
    }

    /// Whether the disk budget has stopped writing.
    pub fn disk_full(&self) -> bool {
        self.disk_full
    }

    /// Applies a re-read config: handlers that came from the old config file and
    /// are gone or changed are stopped; new or changed ones are started; handlers
    /// that are the same keep running with their file open. Handlers added over the
    /// API are left alone.
    pub fn apply_config(
        &mut self,
        new: &Config,
        registry: &Registry,
        now: UnixMicros,
        mono: Instant,
    ) {
        if new.root != self.root {
            warn!(
                "reload: root_log_directory changed from {} to {}; that needs a restart, keeping {}",
                self.root.display(),
                new.root.display(),
                self.root.display()
            );
        }
        let stale: Vec<HandlerId> = self
            .handlers()
            .filter(|(_, h)| {
                h.spec().origin == Origin::ConfigFile && !new.handlers.contains(h.spec())
            })
            .map(|(id, _)| id)
            .collect();
        let (mut stopped, mut started, mut failed) = (0, 0, 0);
        for hid in stale {
            // Replaced by a handler on the same socket with the same socket
            // options: the socket stays open across the swap.
            let old = self.handler(hid).spec();
            let replaced = new.handlers.iter().any(|s| {
                s.name == old.name
                    && s.address == old.address
                    && s.conn_type == old.conn_type
                    && (
                        s.rcvbuf_bytes,
                        &s.interface,
                        s.connect_timeout,
                        s.reconnect_max,
                    ) == (
                        old.rcvbuf_bytes,
                        &old.interface,
                        old.connect_timeout,
                        old.reconnect_max,
                    )
            });
            self.detach_handler(hid, registry, !replaced);
            stopped += 1;
        }
        for spec in &new.handlers {
            let running = self.handlers().any(|(_, h)| h.spec() == spec);
            if running {
                continue;
            }
            let name = spec.name.clone();
            match self.add_handler(spec.clone(), registry, now, mono) {
                Ok(_) => started += 1,
                Err(e) => {
                    failed += 1;
                    error!("reload: handler {name}: {e}");
                }
            }
        }
        // Sockets kept for a replacement that then failed to start.
        let empty: Vec<CapturerId> = self
            .capturers()
            .iter()
            .filter(|(_, c)| c.handlers().is_empty())
            .map(|(id, _)| *id)
            .collect();
        for cid in empty {
            self.capturers.close(cid, registry);
        }
        info!(
            "reload: {} stopped, {started} started, {failed} failed, {} running",
            crate::log::count(stopped as u64, "handler"),
            self.handlers().count()
        );
    }

    /// `POST /<name>/rotate`: for every handler named `name`, sets the metadata
    /// `fields` (each checked as at start), closes its file and opens the next
    /// now. Every handler is checked before any is changed: the new metadata must
    /// give every rendered name a valid one, and no other handler's file.
    pub fn rotate(
        &mut self,
        name: &str,
        fields: &Map<String, Value>,
        now: UnixMicros,
    ) -> Result<Vec<Rotated>, RotateError> {
        let ids = self.handlers_named(name);
        if ids.is_empty() {
            return Err(RotateError::NotFound);
        }
        let mut specs = Vec::new();
        for &hid in &ids {
            let spec = self
                .handler(hid)
                .spec()
                .with_metadata(fields)
                .map_err(|e| RotateError::Invalid(e.to_string()))?;
            self.check_file_free(&spec, Some(hid), now)
                .map_err(|e| match e {
                    AddError::Invalid(m) => RotateError::Invalid(m),
                    other => RotateError::Conflict(other.to_string()),
                })?;
            specs.push(spec);
        }
        let mut rotated = Vec::new();
        for (hid, spec) in ids.into_iter().zip(specs) {
            let h = self.handler_mut(hid);
            h.set_metadata(spec);
            let previous = h.current_file().map(Path::to_path_buf);
            let rotate_at = h.rotate_now(now).map_err(|e| {
                RotateError::Failed(format!("handler {name}: cannot open the next file: {e}"))
            })?;
            let path = h.log_file_path(now);
            if let Some(at) = rotate_at {
                self.timers.insert((at, hid));
            }
            rotated.push(Rotated {
                id: hid,
                previous,
                path,
            });
        }
        if !fields.is_empty() {
            self.save_api_handlers();
        }
        Ok(rotated)
    }

    fn update_read_time_wanted(&mut self, cid: CapturerId) {
        let handlers = &self.handlers;
        self.capturers.update_read_time_wanted(cid, |h| {
            handlers[h]
                .as_ref()
                .is_some_and(|h| h.spec().timestamps == Timestamps::Read)
        });
    }

    /// `DELETE /capturers`: stops every handler of the capturer at `address` (their
    /// files flushed and closed) and closes its socket. Returns the handlers, or
    /// `None` if no capturer has that address.
    pub fn remove_capturer(
        &mut self,
        address: &Address,
        registry: &Registry,
    ) -> Option<Vec<Handler>> {
        let cid = self.capturer_at(address)?;
        let ids = self.capturer(cid).handlers().to_vec();
        Some(
            ids.into_iter()
                .filter_map(|hid| self.remove_handler(hid, registry))
                .collect(),
        )
    }

    /// The closed files bsc made for handler `hid` (its key: name and address)
    /// that still exist, oldest first.
    pub fn files_of(&self, hid: HandlerId) -> Vec<crate::storage::OwnFile> {
        self.storage.files(&self.handler(hid).journal_key())
    }

    /// At most `most` of those files, after one listed before
    /// ([`crate::storage::Storage::files_after`]).
    pub fn files_of_after(
        &self,
        hid: HandlerId,
        after: Option<(&std::path::Path, std::time::SystemTime)>,
        most: usize,
    ) -> Vec<crate::storage::OwnFile> {
        self.storage
            .files_after(&self.handler(hid).journal_key(), after, most)
    }

    /// Ids of every live handler with this name (one per address at most).
    pub fn handlers_named(&self, name: &str) -> Vec<HandlerId> {
        self.handlers()
            .filter(|(_, h)| h.spec().name == name)
            .map(|(id, _)| id)
            .collect()
    }

    /// Marks a handler as restored at start-up from the handlers saved over the
    /// API (`GET /stats` says `"origin": "restored"`).
    pub fn mark_restored(&mut self, hid: HandlerId) {
        self.handler_mut(hid).mark_restored();
    }

    fn handler_mut(&mut self, hid: HandlerId) -> &mut Handler {
        self.handlers[hid]
            .as_mut()
            .expect("handler id refers to a live handler")
    }

    /// Every live handler with its id, in id order.
    pub fn handlers(&self) -> impl Iterator<Item = (HandlerId, &Handler)> {
        self.handlers
            .iter()
            .enumerate()
            .filter_map(|(id, h)| h.as_ref().map(|h| (id, h)))
    }

    /// Every live capturer, in creation order.
    pub fn capturers(&self) -> Vec<(CapturerId, &Capturer)> {
        self.capturers.list()
    }

    /// A live handler (ids handed out by the manager stay valid until removal).
    pub fn handler(&self, hid: HandlerId) -> &Handler {
        self.handlers[hid]
            .as_ref()
            .expect("handler id refers to a live handler")
    }

    /// A live capturer (ids handed out by the manager stay valid until it closes).
    pub fn capturer(&self, cid: CapturerId) -> &Capturer {
        self.capturers.get(cid)
    }

    /// The capturer of an address, if one is open.
    pub fn capturer_at(&self, address: &Address) -> Option<CapturerId> {
        self.capturers.at(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use serde_json::json;

    fn spec(name: &str, port: u16, extra: serde_json::Value) -> HandlerSpec {
        let mut v = json!({"name": name, "conn_type": "udp", "address": ["127.0.0.1", port]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        HandlerSpec::from_json(v.as_object().unwrap(), Origin::ConfigFile).unwrap()
    }

    fn free_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Drains until `n` more units were handed to handlers (datagrams on loopback
    /// can take a moment to be readable).
    fn drain_until(
        m: &mut Manager,
        registry: &Registry,
        cid: CapturerId,
        clock: &Clock,
        packets: u64,
    ) {
        for _ in 0..1000 {
            m.drain(cid, registry, Instant::now(), || clock.now_nanos());
            if m.handlers().map(|(_, h)| h.stats().packets).max() >= Some(packets) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!("datagrams never arrived");
    }

    #[test]
    fn a_manual_clock_drives_naming_and_rotation() {
        let root = std::env::temp_dir().join(format!("bsc-manager-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let poll = mio::Poll::new().unwrap();
        let clock = Clock::manual(UnixMicros(1_795_860_000_000_000)); // 2026-11-28T10:00:00Z
        let mut m = Manager::new(&root, &StorageConfig::default());
        let port = free_port();
        let hid = m
            .add_handler(
                spec(
                    "h",
                    port,
                    json!({"rotate_log_index": "minute", "file_name_pattern": "%H%M-{name}.pcap", "timestamps": "read"}),
                ),
                poll.registry(),
                clock.now(),
                Instant::now(),
            )
            .unwrap();
        // Same name on the same address, and another conn_type there, are refused.
        assert!(matches!(
            m.add_handler(
                spec("h", port, json!({"path": "x"})),
                poll.registry(),
                clock.now(),
                Instant::now()
            ),
            Err(AddError::Conflict(_))
        ));
        assert!(matches!(
            m.add_handler(
                spec("g", port, json!({"file_name_pattern": "%H%M-h.pcap"})),
                poll.registry(),
                clock.now(),
                Instant::now()
            ),
            Err(AddError::Conflict(_))
        ));
        let cid = m
            .capturer_at(&Address {
                host: "127.0.0.1".into(),
                port,
            })
            .unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"one", ("127.0.0.1", port)).unwrap();
        drain_until(&mut m, poll.registry(), cid, &clock, 1);
        m.flush_dirty();
        assert_eq!(m.next_deadline(), Some(UnixMicros(1_795_860_060_000_000)));
        clock.set(UnixMicros(1_795_860_059_000_000));
        m.expire(clock.now());
        assert_eq!(
            m.handler(hid).log_file_path(clock.now()),
            root.join("1000-h.pcap")
        );
        clock.set(UnixMicros(1_795_860_061_000_000));
        m.expire(clock.now());
        assert_eq!(m.next_deadline(), None);
        assert_eq!(
            m.handler(hid).log_file_path(clock.now()),
            root.join("1001-h.pcap"),
            "closed: shows the next name"
        );
        tx.send_to(b"two", ("127.0.0.1", port)).unwrap();
        drain_until(&mut m, poll.registry(), cid, &clock, 2);
        m.flush_dirty();
        assert!(root.join("1000-h.pcap").exists() && root.join("1001-h.pcap").exists());
        // Removing the last handler closes the socket: the port is free at once.
        m.remove_handler(hid, poll.registry());
        assert!(m.capturers().is_empty());
        assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
