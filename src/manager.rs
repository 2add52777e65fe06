//! The manager: every capturer (one socket per address) and every handler.
//!
//! Invariants:
//! - one capturer per address; handlers on the same address share it, and a
//!   capturer left without handlers is closed at once (its port is free again);
//! - a name appears at most once per address; no two handlers' patterns give the
//!   same file, checked whenever a handler is added or its metadata changes (and
//!   [`crate::storage::Storage`] refuses a second writer for any open file);
//! - only the manager changes a handler (its mutators are visible here only);
//!   it lends a handler the storage for each operation ([`handler::Cx`]) and
//!   hands the files it closed (its events) to store and forward;
//! - each part has one owner: the handlers, their pending writes and rotation
//!   timers `handlers::Handlers`; the journal and its queues
//!   [`crate::storage::Storage`]; the disk budget `budget::Budget`; hooks
//!   and ship commands `forward::Forward`;
//! - the records a drain takes from a batch are written before the batch is
//!   read into again: each handler of the capturer writes them with one
//!   gathering `writev` from its [`pending::Gather`], which borrows the batch,
//!   so the compiler proves that no pending record refers to a receive slot
//!   once the batch ends (handlers of other capturers cost nothing);
//! - the capturers, their tokens and timers are [`capturers::Capturers`]'s.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mio::Registry;
use serde_json::{Map, Value};

pub use crate::capture::capturer::{Capturer, CapturerState, Drained, Received, TcpStatus, Unit};
use crate::clock::{UnixMicros, UnixNanos};
use crate::config::StorageConfig;
use crate::config::{Address, Config, HandlerSpec, Origin, Timestamps};
use crate::files::pcap::{self, Attempt, LinkType, PcapFile, Precision};
use crate::ops::hooks::ShipStatus;
use crate::storage::persist::StateFile;
use crate::storage::{DiskBudget, Span, Storage};
use crate::sys;
use crate::{error, info, warn};
use budget::Budget;
use capturers::Capturers;
use forward::Forward;
use handler::{journal_key, Cx, Handler};
use handlers::Handlers;

mod budget;
pub mod capturers;
mod forward;
pub mod handler;
mod handlers;
mod left_open;
pub mod pending;
mod reload;
pub mod unit_path;

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

/// All capturers and handlers, and what they share: the storage they are
/// lent, the disk budget, store and forward.
pub struct Manager {
    root: PathBuf,
    /// Every socket, its token and timers, and the receive batch.
    capturers: Capturers,
    handlers: Handlers,
    /// The journal, the naming state, the open files, the hook and ship
    /// queues: lent to a handler (`&mut`, in a [`Cx`]) for each operation.
    storage: Storage,
    budget: Budget,
    forward: Forward,
    /// How long a TCP peer may be unreachable before health says degraded.
    peer_unreachable: std::time::Duration,
    /// Where handlers added over the API are saved (`None`: `persist: false`).
    state: Option<StateFile>,
}

impl Manager {
    /// An empty manager writing under `root`, with the disk budget, persistence
    /// and hook settings of `storage`.
    pub fn new(root: &Path, storage: &StorageConfig) -> Manager {
        Manager {
            root: root.to_path_buf(),
            capturers: Capturers::new(),
            handlers: Handlers::default(),
            storage: Storage::open(root),
            budget: Budget::new(DiskBudget {
                min_free_bytes: storage.min_free_bytes,
                min_free_percent: storage.min_free_percent,
            }),
            forward: Forward::new(storage),
            peer_unreachable: storage.peer_unreachable,
            state: storage.persist.then(|| StateFile::new(root)),
        }
    }

    /// The handlers added over the API in an earlier run (see [`crate::storage::persist`]).
    pub fn saved_api_handlers(
        &self,
        now: UnixMicros,
    ) -> Vec<serde_json::Map<String, serde_json::Value>> {
        self.state.as_ref().map_or_else(Vec::new, |s| s.load(now))
    }

    /// Saves the handlers added over the API (after every change to them).
    pub fn save_api_handlers(&mut self) {
        let Some(state) = &self.state else { return };
        let specs: Vec<_> = self
            .handlers
            .iter()
            .filter(|(_, h)| h.spec().origin == Origin::Api)
            .map(|(_, h)| h.spec().to_json())
            .collect();
        if let Err(e) = state.save(&mut self.storage, &specs) {
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
        let local = self.capturer(cid).local_addr();
        let hid = self.start_handler(spec, local, now);
        self.capturers.attach(cid, hid);
        self.update_read_time_wanted(cid);
        Ok(hid)
    }

    /// Starts a handler checked by [`Manager::add_handler`] (`local`: its
    /// capturer's address): a file its key left open is settled or resumed,
    /// files whose hook did not run before the last stop are queued again.
    fn start_handler(
        &mut self,
        spec: HandlerSpec,
        local: Option<std::net::SocketAddr>,
        now: UnixMicros,
    ) -> HandlerId {
        let mut cx = Cx {
            files: &mut self.storage,
            now,
            closed: self.forward.outbox(),
        };
        let mut handler = Handler::new(spec, &self.root, local, &mut cx);
        handler.set_suspended(self.budget.disk_full());
        let resumed_until = handler.resume(&mut cx);
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
                self.forward.outbox().push(file);
            }
        } else {
            // The handler has no hook any more: nothing is left to run for them.
            for file in waiting {
                self.storage.hook_done(&file.path);
            }
        }
        let spec = handler.spec();
        let next = handler.log_file_path(&self.storage, now);
        info!(
            "handler {}: capturing {} {} into {} as {}",
            spec.name,
            spec.conn_type,
            spec.address,
            next.parent().unwrap_or(Path::new("")).display(),
            spec.file_name_pattern.source()
        );
        self.handlers.insert(handler, resumed_until)
    }

    /// Whether `spec` can name its next file at `now` (every rendered name
    /// checked, see [`crate::files::paths`]) and that name is no other handler's
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
        crate::files::paths::check_not_state_folder(&path, &self.root)
            .map_err(AddError::Invalid)?;
        let other = self.handlers().find(|&(id, h)| {
            Some(id) != except
                && (h.pattern_path(&self.storage, now).as_ref() == Some(&path)
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
    pub fn remove_handler(&mut self, hid: HandlerId, registry: &Registry, now: UnixMicros) -> bool {
        self.detach_handler(hid, registry, true, now)
    }

    /// Stops a handler; its capturer, if left without handlers, is closed only
    /// when `close_empty` (a reload that replaces the handler keeps the socket, so
    /// nothing queued in it is lost while the new handler starts).
    fn detach_handler(
        &mut self,
        hid: HandlerId,
        registry: &Registry,
        close_empty: bool,
        now: UnixMicros,
    ) -> bool {
        let Some(mut handler) = self.handlers.take(hid) else {
            return false;
        };
        if let Some(cid) = self.capturer_at(&handler.spec().address) {
            if self.capturers.detach(cid, hid) {
                if close_empty {
                    self.capturers.close(cid, registry);
                }
            } else {
                self.update_read_time_wanted(cid);
            }
        }
        info!("handler {}: stopped", handler.spec().name);
        // Its file is flushed and closed now (and goes to `on_close`).
        handler.close(&mut Cx {
            files: &mut self.storage,
            now,
            closed: self.forward.outbox(),
        });
        true
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
            storage,
            budget,
            forward,
            ..
        } = self;
        let drained = capturers.read(cid, registry, now, &clock, |units, gathers| {
            let ids = units.handlers();
            let mut cx = Cx {
                files: storage,
                now: clock().micros(),
                closed: forward.outbox(),
            };
            for unit in units.by_ref() {
                cx.now = unit.read_at.micros();
                for (&hid, gather) in ids.iter().zip(gathers.iter_mut()) {
                    budget.wrote_early(handlers.deliver(hid, &unit, gather, &mut cx));
                }
            }
            // The gathers borrow the batch: written before it is read into again.
            for (&hid, gather) in ids.iter().zip(gathers.iter_mut()) {
                budget.wrote_early(handlers.flush(hid, gather, &mut cx));
            }
        });
        if let Drained::Ended(_) = drained {
            for &hid in capturers.get(cid).handlers() {
                if let Some(h) = handlers.get_mut(hid) {
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

    /// Counts what the last drains wrote against the disk budget's headroom
    /// (the budget is looked at again at once when they could have used it
    /// up). Nothing is pending by then: a drain writes each batch before it
    /// ends.
    pub fn flush_dirty(&mut self) {
        if self.budget.wrote(0) {
            self.enforce_budget();
        }
    }

    /// The earliest rotation deadline, if any file is open with one.
    pub fn next_deadline(&self) -> Option<UnixMicros> {
        self.handlers.next_deadline()
    }

    /// Closes every file whose rotation period has ended by `now`.
    pub fn expire(&mut self, now: UnixMicros) {
        self.handlers.expire(&mut Cx {
            files: &mut self.storage,
            now,
            closed: self.forward.outbox(),
        });
    }

    /// Flushes and closes every file (on shutdown): each goes to `on_close` and
    /// waits to ship (after the next start). Sockets close when dropped.
    /// `clock` reads the monotonic time (the loop's), for the hooks' grace.
    pub fn close_all(&mut self, now: UnixMicros, clock: &dyn Fn() -> Instant) {
        self.handlers.close_all(&mut Cx {
            files: &mut self.storage,
            now,
            closed: self.forward.outbox(),
        });
        self.dispatch_closed();
        // No command bsc started outlives it.
        self.forward.stop(&mut self.storage, clock);
    }

    /// Hands the files closed since the last call to their `on_close` hooks and
    /// the shipper (`Forward::dispatch_closed`).
    pub fn dispatch_closed(&mut self) {
        self.forward
            .dispatch_closed(&mut self.storage, &mut self.handlers);
    }

    /// SIGCHLD: reaps finished hooks and starts waiting ones (ship commands
    /// are reaped by the next [`Manager::ship`]).
    pub fn reap_hooks(&mut self, now: UnixMicros) {
        self.forward
            .reap_hooks(&mut self.storage, &mut self.handlers, now);
    }

    /// Store and forward, every turn (see `Forward::ship`).
    pub fn ship(&mut self, now: Instant, wall: UnixMicros) {
        self.forward
            .ship(&mut self.storage, &mut self.handlers, now, wall);
    }

    /// When the loop must wake next for the manager, at `now`: the earliest
    /// rotation, capturer or ship deadline (the one question the loop asks).
    pub fn next_wake(&self, now: crate::clock::Now) -> Option<Instant> {
        let rotation = self.next_deadline().map(|at| now.instant_at(at));
        [
            rotation,
            self.next_capturer_deadline(),
            self.next_ship_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When [`Manager::ship`] must run next without a kick (a ship timeout or
    /// the end of a back-off).
    pub fn next_ship_deadline(&self) -> Option<Instant> {
        self.forward.next_deadline(&self.storage)
    }

    /// Every handler key that ships, with what it has waiting and how shipping
    /// goes (see `Forward::statuses`).
    pub fn ship_statuses(&self, now: UnixMicros) -> Vec<(String, ShipStatus)> {
        self.forward.statuses(&self.storage, &self.handlers, now)
    }

    /// How old the oldest file waiting to ship may get before health says degraded.
    pub fn ship_max_pending_age(&self) -> std::time::Duration {
        self.forward.max_pending_age()
    }

    /// Once a second: fsync and `max_age` per handler, the disk budget, hooks.
    pub fn tick(&mut self, now: UnixMicros) {
        // A journal an append failed on is written anew as soon as it can be.
        self.storage.catch_up();
        // One bsc per root: the lock file is still the one bsc holds.
        self.storage.keep_lock();
        self.handlers.maintain(&mut Cx {
            files: &mut self.storage,
            now,
            closed: self.forward.outbox(),
        });
        self.capturers.give_back_memory();
        self.enforce_budget();
        self.dispatch_closed();
        self.reap_hooks(now);
    }

    /// The disk budget's look (see [`Budget::enforce`]).
    fn enforce_budget(&mut self) {
        self.budget.enforce(
            &self.root,
            &mut self.storage,
            &mut self.handlers,
            &mut self.forward,
        );
    }

    /// How long a TCP peer may be unreachable before health says degraded.
    pub fn peer_unreachable(&self) -> std::time::Duration {
        self.peer_unreachable
    }

    /// The disk budget's view of the root's file system now: (free bytes, total
    /// bytes, bytes to keep free if a budget is set).
    pub fn disk(&self) -> Option<(u64, u64, Option<u64>)> {
        self.budget.disk(&self.root)
    }

    /// Whether the disk budget has stopped writing.
    pub fn disk_full(&self) -> bool {
        self.budget.disk_full()
    }

    fn update_read_time_wanted(&mut self, cid: CapturerId) {
        let handlers = &self.handlers;
        self.capturers.update_read_time_wanted(cid, |h| {
            handlers
                .get(h)
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
        now: UnixMicros,
    ) -> Option<usize> {
        let cid = self.capturer_at(address)?;
        let ids = self.capturer(cid).handlers().to_vec();
        Some(
            ids.into_iter()
                .filter(|&hid| self.remove_handler(hid, registry, now))
                .count(),
        )
    }

    /// The closed files bsc made for handler `hid` (its key: name and address)
    /// that still exist, oldest first.
    pub fn files_of(&self, hid: HandlerId) -> Vec<crate::storage::OwnFile> {
        self.storage
            .naming()
            .files(&self.handler(hid).journal_key())
    }

    /// At most `most` of those files, after one listed before
    /// ([`crate::storage::Naming::files_after`]).
    pub fn files_of_after(
        &self,
        hid: HandlerId,
        after: Option<(&std::path::Path, std::time::SystemTime)>,
        most: usize,
    ) -> Vec<crate::storage::OwnFile> {
        self.storage
            .naming()
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
        self.handlers
            .get_mut(hid)
            .expect("handler id refers to a live handler")
    }

    /// Every live handler with its id, in id order.
    pub fn handlers(&self) -> impl Iterator<Item = (HandlerId, &Handler)> {
        self.handlers.iter()
    }

    /// The journal, naming state, open files and queues, read only (the
    /// names of handlers' next files come from it).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Every live capturer, in creation order.
    pub fn capturers(&self) -> Vec<(CapturerId, &Capturer)> {
        self.capturers.list()
    }

    /// A live handler (ids handed out by the manager stay valid until removal).
    pub fn handler(&self, hid: HandlerId) -> &Handler {
        self.handlers
            .get(hid)
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
mod tests;
