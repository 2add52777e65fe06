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
//! - each part has one owner: the handlers and their rotation timers
//!   `handlers::Handlers`; the journal and its queues
//!   [`crate::storage::Storage`]; the disk budget `budget::Budget`; hooks
//!   and ship commands `forward::Forward`; the forward targets' timers
//!   `relays::RelayTimers` (each handler owns its targets, [`crate::relay::Relay`]);
//! - the records a drain takes from a batch that refer to its slots are
//!   written before the batch is read into again: each such handler of the
//!   capturer writes them with one gathering `writev` from its
//!   [`pending::Gather`], which borrows the batch, so the compiler proves that
//!   no pending record refers to a receive slot once the batch ends (handlers
//!   of other capturers cost nothing); nothing is pending once a drain returns;
//! - the capturers, their tokens and timers are [`capturers::Capturers`]'s.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mio::Registry;
use serde_json::{Map, Value};

pub use crate::capture::capturer::{Capturer, CapturerState, Drained, Received, TcpStatus, Unit};
use crate::clock::{ClockWord, UnixMicros, UnixNanos};
use crate::config::StorageConfig;
use crate::config::{Address, Config, HandlerSpec, Origin};
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
use pending::Gather;
use relays::RelayTimers;
pub use results::{AddError, RotateError, Rotated};

mod budget;
pub mod capturers;
mod forward;
pub mod handler;
mod handlers;
mod left_open;
mod lifecycle;
pub mod pending;
mod relays;
mod reload;
mod results;
pub mod unit_path;

/// Index of a handler in the manager.
pub type HandlerId = usize;
/// Index of a capturer in the manager.
pub type CapturerId = usize;

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
    /// The forward targets' connect and back-off timers (`relays.rs`).
    relay_timers: RelayTimers,
    /// How long a TCP peer may be unreachable before health says degraded.
    peer_unreachable: std::time::Duration,
    /// Where handlers added over the API are saved (`None`: `persist: false`).
    state: Option<StateFile>,
    /// The kernel's latest word on the clock, as the loop read it
    /// ([`Manager::observe_clock`]): lent to handlers, read by the API.
    clock: ClockWord,
    /// Where the management API listens (no forward target may lead there).
    api: Option<Address>,
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
            relay_timers: RelayTimers::default(),
            peer_unreachable: storage.peer_unreachable,
            state: storage.persist.then(|| StateFile::new(root)),
            clock: ClockWord::UNKNOWN,
            api: None,
        }
    }

    /// Where the management API listens (from the config, before any handler is
    /// added): a handler whose forward target leads there is refused.
    pub fn serve_api_on(&mut self, api: Address) {
        self.api = Some(api);
    }

    /// The kernel's word on the clock the loop read (at start, then once a
    /// second): files opened from now on start with it, and the next
    /// [`Manager::tick`] folds it into every open file's word.
    pub fn observe_clock(&mut self, word: ClockWord) {
        self.clock = word;
    }

    /// The kernel's latest word on the clock (`/health`, `/metrics`, `/stats`).
    pub fn clock(&self) -> ClockWord {
        self.clock
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

    /// Reads from a capturer (see [`Capturer::read`]) and gives each unit to
    /// every handler of it; a handler whose records refer to the batch's
    /// slots writes them with one gathering `writev` before the batch ends,
    /// and every handler of the capturer writes what it took before the drain
    /// ends (copies wait across batches, up to [`handler::FLUSH_AT`] bytes);
    /// the handlers' forward targets are sent what they were offered after
    /// each batch, or, while the capturer is behind (its socket more than half
    /// full, [`Capturers::note_drain`]), once it is dry; arms the rotation and
    /// capturer timers that follow. `now` is the loop's instant, `clock` the
    /// time of reading.
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
            clock: clock_word,
            relay_timers,
            ..
        } = self;
        // The wall clock's now for what handlers close during this drain (its
        // journaled closing time): read once, not per unit.
        let wall = clock().micros();
        // While the capturer is behind (its socket filling toward loss), the
        // recording comes first: the handlers' forward targets are sent to
        // only once it is dry, and units wait in their queues (dropped and
        // counted when a queue is full). Otherwise each batch's units go as
        // it is written.
        let behind = capturers.is_behind(cid);
        let drained = capturers.read(cid, registry, now, &clock, |units, gathers| {
            let ids = units.handlers();
            let mut cx = Cx {
                files: storage,
                now: wall,
                closed: forward.outbox(),
                clock: *clock_word,
            };
            for unit in units.by_ref() {
                for (&hid, gather) in ids.iter().zip(gathers.iter_mut()) {
                    budget.wrote_early(handlers.deliver(hid, &unit, gather, &mut cx));
                }
            }
            // The gathers borrow the batch: what refers to it is written
            // before it is read into again. Records copied whole wait for the
            // next batches, so that writes are large (the end of the drain).
            for (&hid, gather) in ids.iter().zip(gathers.iter_mut()) {
                if !gather.is_empty() {
                    budget.wrote_early(handlers.flush(hid, gather, &mut cx));
                }
            }
            if !behind {
                relay_timers.send(handlers, ids, registry, now);
            }
        });
        // Everything read is in the kernel before the loop sleeps.
        let mut cx = Cx {
            files: storage,
            now: wall,
            closed: forward.outbox(),
            clock: *clock_word,
        };
        for &hid in capturers.handlers_of(cid) {
            budget.wrote_early(handlers.flush(hid, &mut Gather::copying(), &mut cx));
        }
        capturers.note_drain(cid, &drained);
        if !capturers.is_behind(cid) {
            relay_timers.send(handlers, capturers.handlers_of(cid), registry, now);
        }
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
    /// up). Nothing is pending by then: a drain writes everything before it
    /// returns.
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
            clock: self.clock,
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
            clock: self.clock,
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
            self.relay_timers.next_deadline(),
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
            clock: self.clock,
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

    /// Keeps the sparse index an extract rebuilt for the closed file `path`
    /// (one closed before bsc started), if bsc still knows the file.
    pub fn keep_index(&mut self, path: &std::path::Path, index: crate::files::index::SparseIndex) {
        self.storage.keep_index(path, index);
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
