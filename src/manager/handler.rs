//! One handler: a named output stream of a capturer, with its own file pattern,
//! rotation rule, statistics, open PCAP file and pending records. Only the
//! manager (its parent module) changes a handler: every mutating method is
//! visible to the manager only, and the spec is read-only outside. Opening and
//! naming are in `open.rs`, the write path in `write.rs`, closing in
//! `close.rs`, the counters in `stats.rs`.
//!
//! The write path (`write.rs`): `Handler::record` adds a record to `pending` (no syscall):
//! its header is encoded into the handler's buffer, its payload copied beside
//! it when short, otherwise referred to in the receive slot it arrived in, in
//! the batch's [`Gather`] (see
//! [`crate::manager::pending`]: the borrow of the batch proves the slots are
//! not read into again before the write); the manager has
//! `Handler::flush_from` write them with one gathering `writev` at the end of
//! a batch whose slots they refer to, else at the end of the drain (sooner
//! once the buffer holds [`FLUSH_AT`] bytes of copies), so the kernel has
//! every record the process has read before bsc sleeps, and a `kill -9` loses
//! nothing already read. A handler with
//! framing, checks or transforms first passes each read through its
//! [`UnitPath`] (see [`crate::manager::unit_path`]): one record per unit it keeps, each
//! stamped with the time of the read that completed it.
//!
//! Files are opened when a unit arrives (never empty files for idle links; the
//! file a crash left open is opened again at start, `Handler::resume`) and
//! closed when their rotation period ends (by the next unit or by the event loop's
//! timer, whichever comes first), when the next record would take them past
//! `rotate_max_bytes`, when they hold `rotate_max_packets` records, or on request.
//!
//! Naming (one place: `Handler::open`): `{seq}` continues after the last number
//! the journal recorded for this handler's key (name and address), and a `-N`
//! suffix continues after the last one used for the same name; neither is ever
//! reused, so a handler's files sort in time order. A closed file is final: it is
//! read-only and never opened again. The first file of a handler may append to an
//! existing file only if it is not final (one a crash left open, or a foreign file
//! with bsc's header, as AIT does); a file another handler has open is skipped.
//! A name that does not exist is journaled before it is created (write-ahead,
//! [`Storage::opening`]); a file this key created keeps that mark when it is
//! resumed after a crash (retention, the disk budget, the file list).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::pending::{Gather, Pending};
use crate::capture::capturer::Unit;
use crate::clock::{ClockWord, UnixMicros, UnixNanos};
use crate::config::{ConnType, Direction, HandlerSpec, Origin, Timestamps};
use crate::files::index::SparseIndex;
use crate::files::ipudp;
use crate::files::paths::CapturePath;
use crate::files::pcap::{self, Attempt, LinkType, Opened, PcapFile, Precision, Vanished};
use crate::log::{self, Level};
use crate::manager::unit_path::UnitPath;
use crate::relay::Relay;
use crate::storage::{ClosedFile, LastFile, OwnFile, Retention, Span, Storage};
use crate::sys::{self, Peer, PACKET_OUTGOING};
use crate::{error, info, warn};
pub use stats::{HandlerStats, RATE_WINDOW_S, SERIES_S};

/// Bytes in a handler's own buffer (headers, units it had to copy) past which
/// it writes at once rather than at the end of the drain, for the units of a
/// byte stream: bounds the buffer during a burst of framed TCP units, and
/// keeps what it writes in the cache (256 KiB measured better than 1 MiB:
/// docs/performance.md, the goals table).
pub const FLUSH_AT: usize = 256 << 10;
/// The same for datagrams and frames: a handler's resident memory stays what
/// it was when it wrote every batch (256 KiB took the benchmark's peak RSS at
/// one handler from 3.5 to 3.7 MB and at ten to 6.3 MB; 16 KiB and 64 KiB cost
/// the same CPU per 64-byte datagram, and 16 KiB kept one handler under
/// 3.5 MB), while a drain of small ones is written in fewer, larger pieces.
pub const FLUSH_AT_DATAGRAMS: usize = 16 << 10;
/// Capacity a pending buffer keeps when idle; more is given back by
/// [`Handler::maintain`] once a second passes without needing it.
const IDLE_CAPACITY: usize = 64 * 1024;
/// Most names tried for one new file before giving up (each taken name costs
/// one `open`).
const MAX_NAME_TRIES: u32 = 1000;

/// How long a handler waits after failing to open a file before trying again
/// (units arriving meanwhile are counted as lost).
const OPEN_RETRY_US: i64 = 1_000_000;

/// Why a file was closed for the next one.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Rotation {
    Calendar,
    Size,
    Count,
    Forced,
}

/// The file a handler is writing now.
#[derive(Debug)]
struct CurrentFile {
    file: PcapFile,
    /// The name its pattern gave, before any `-N`.
    unnumbered: PathBuf,
    opened_at: UnixMicros,
    /// When its rotation period ends (`None` when `rotate_log` is false).
    rotate_at: Option<UnixMicros>,
    first_ts: Option<UnixMicros>,
    last_ts: Option<UnixMicros>,
    /// The least and the most record time bsc wrote into it (see
    /// [`Span::earliest`]); not kept when it held records before.
    bounds: Option<(UnixMicros, UnixMicros)>,
    bounds_known: bool,
    /// Records in the file at the last check that it still exists.
    records_checked: u64,
    /// The clock's word while it was open (unknown when it held records
    /// before: resumed or appended to).
    clock: ClockWord,
    /// Its sparse index by time, noted as records are written (`None` for a
    /// file resumed after a crash: its earlier records are not in it).
    index: Option<SparseIndex>,
}

/// What a handler is lent by the manager for one operation, and where the
/// files it closes go: the storage (journal, naming state, open files), the
/// wall clock's now, and the closed files for their `on_close` hooks and the
/// ship queue (the manager hands them on after the call), and the clock's
/// latest word.
#[derive(Debug)]
pub struct Cx<'a> {
    pub files: &'a mut Storage,
    pub now: UnixMicros,
    pub closed: &'a mut Vec<ClosedFile>,
    /// The kernel's latest word on the clock (read once a second by the
    /// loop): a file opened now starts with it, the once-a-second upkeep
    /// folds it into the open file's.
    pub clock: ClockWord,
}

/// What `Handler::record` did that the manager must know.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// This record is the first pending one: the handler needs a flush this wake-up.
    pub needs_flush: bool,
    /// A new file was opened whose period ends at this instant: arm a timer.
    pub rotate_at: Option<UnixMicros>,
}

/// One named output stream.
#[derive(Debug)]
pub struct Handler {
    spec: HandlerSpec,
    /// Where and how its records are written.
    output: Output,
    file: Option<CurrentFile>,
    /// Whether this handler has opened a file yet (only its first may append).
    opened_any: bool,
    /// Records taken, not yet written (see [`Pending`]).
    pending: Pending,
    /// Whether it can write now, and why not.
    health: Health,
    stats: HandlerStats,
    /// Framing, checks and transforms (`None`: each read is written as it comes).
    units: Option<Box<UnitPath>>,
    /// Where each unit recorded is also sent (`forward`; `None`: nowhere).
    relay: Option<Box<Relay>>,
    /// Brought back at start-up from the handlers saved over the API
    /// ([`crate::storage::persist`]), not from the config file or a request of this run.
    restored: bool,
}

/// Where and how a handler's records are written: fixed when it starts.
#[derive(Debug)]
struct Output {
    root: PathBuf,
    link: LinkType,
    /// The capturer's local address (destination of `record_source` headers).
    local: Option<SocketAddr>,
}

/// Whether a handler can write now, and why not.
#[derive(Debug, Default)]
struct Health {
    /// After a failed open or write, no new attempt before this instant.
    retry_open_at: Option<UnixMicros>,
    /// Why writing fails, while it does (cleared by the next successful write).
    degraded: Option<String>,
    /// Set by the disk budget: units are counted as lost instead of written.
    suspended: bool,
    /// Most pending own bytes since the last [`Handler::maintain`].
    pending_peak: usize,
}

impl Handler {
    /// A handler writing under `root`; it opens no file until its first unit.
    /// `local` is the address its capturer's socket is bound to, if any.
    /// `cx` lends the storage and gives `now`. A file the journal says this
    /// handler's key left open (a crash) is repaired and closed now, unless the
    /// pattern still gives its name at `now` (`Handler::resume` then opens it
    /// again); one that does not exist is forgotten.
    pub(super) fn new(
        spec: HandlerSpec,
        root: &Path,
        local: Option<SocketAddr>,
        cx: &mut Cx,
    ) -> Handler {
        let now = cx.now;
        let link = match (spec.conn_type, spec.record_source, local) {
            (ConnType::Ethernet, _, _) => LinkType::Ethernet,
            (ConnType::Udp, true, Some(SocketAddr::V6(_))) => LinkType::Ipv6,
            (ConnType::Udp, true, _) => LinkType::Ipv4,
            // record_source is refused for tcp by the config loader.
            (ConnType::Udp, false, _) | (ConnType::Tcp, _, _) => LinkType::User0,
        };
        let mut h = Handler {
            output: Output {
                root: root.to_path_buf(),
                link,
                local,
            },
            file: None,
            opened_any: false,
            pending: Pending::default(),
            health: Health::default(),
            stats: HandlerStats::new(now),
            units: UnitPath::needed(&spec).then(|| Box::new(UnitPath::new(&spec))),
            relay: None,
            restored: false,
            spec,
        };
        // The folder may hold files beyond the journal's last (opened while a
        // full disk kept the journal behind, then a crash): the journal's
        // left-open file is then closed, not resumed, and naming goes on after
        // the newest file found, so names keep sorting in time order.
        let found = h.scan_folder(now);
        let beyond = found.as_ref().is_some_and(|(f, _)| {
            cx.files
                .last(&h.journal_key())
                .is_some_and(|l| f.seq > l.seq || (f.unnumbered == l.unnumbered && f.n > l.n))
        });
        h.settle_left_open(cx, now, !beyond);
        if let Some((found, folder)) = found {
            h.seed_naming(cx.files, found, &folder, beyond);
        }
        h
    }

    /// The handler's definition.
    pub fn spec(&self) -> &HandlerSpec {
        &self.spec
    }

    /// Where the handler came from, as `GET /stats` says it: `config` (the
    /// config file), `api` (a request of this run) or `restored` (saved over
    /// the API before the last start, see [`crate::storage::persist`]).
    pub fn origin(&self) -> &'static str {
        match (self.spec.origin, self.restored) {
            (Origin::ConfigFile, _) => "config",
            (Origin::Api, false) => "api",
            (Origin::Api, true) => "restored",
        }
    }

    /// Marks the handler as restored from the saved API handlers.
    pub(super) fn mark_restored(&mut self) {
        self.restored = true;
    }

    /// Its counters.
    pub fn stats(&self) -> &HandlerStats {
        &self.stats
    }

    /// Why writing fails, while it does.
    pub fn degraded(&self) -> Option<&str> {
        self.health.degraded.as_deref()
    }

    /// Whether the disk budget has stopped this handler writing.
    pub fn suspended(&self) -> bool {
        self.health.suspended
    }

    /// The handler's key in the journal: its name and address.
    pub fn journal_key(&self) -> String {
        journal_key(&self.spec)
    }

    /// Replaces the spec with one that differs only in metadata (the manager
    /// checked it); the next file is named with it.
    pub(super) fn set_metadata(&mut self, spec: HandlerSpec) {
        debug_assert_eq!(spec.name, self.spec.name);
        self.spec = spec;
    }

    /// Set by the disk budget.
    pub(super) fn set_suspended(&mut self, suspended: bool) {
        self.health.suspended = suspended;
    }

    /// A TCP connection of this handler's capturer ended: a partial unit is dropped.
    pub(super) fn connection_ended(&mut self) {
        if let Some(u) = self.units.as_mut() {
            u.connection_ended();
        }
    }

    /// Its forward targets, when it has any.
    pub fn relay(&self) -> Option<&Relay> {
        self.relay.as_deref()
    }

    pub(super) fn relay_mut(&mut self) -> Option<&mut Relay> {
        self.relay.as_deref_mut()
    }

    /// Gives the handler its forward targets (the manager opened them).
    pub(super) fn set_relay(&mut self, relay: Relay) {
        self.relay = Some(Box::new(relay));
    }

    /// Takes its forward targets away (it is stopping).
    pub(super) fn take_relay(&mut self) -> Option<Box<Relay>> {
        self.relay.take()
    }

    /// Framing, checks and transforms, when the handler has any.
    pub fn units(&self) -> Option<&UnitPath> {
        self.units.as_deref()
    }

    /// The root folder files are written under.
    pub fn root(&self) -> &Path {
        &self.output.root
    }

    /// The file being written now, if one is open.
    pub fn current_file(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.file.path())
    }

    /// The file being written, described as a closed one would be (records not
    /// yet flushed included).
    pub fn open_file(&self, now: UnixMicros) -> Option<OwnFile> {
        let f = self.file.as_ref()?;
        Some(OwnFile {
            path: f.file.path().to_path_buf(),
            trusted: PathBuf::new(),
            bytes: f.file.bytes() + self.pending.len() as u64,
            closed_at: crate::storage::system_time(now),
            id: Some(f.file.identity()),
            span: Span {
                records: Some(f.file.earlier().records + f.file.records() + self.pending.records()),
                first_ts: f.first_ts,
                last_ts: f.last_ts,
                earliest: f.earliest(),
                latest: f.latest(),
                clock: f.clock,
            },
        })
    }

    /// The file being written, to read back what is on disk now: a second
    /// descriptor on it and the end of its last whole record (records not yet
    /// flushed excluded, so a reader never sees one torn).
    pub fn written_file(&self) -> Option<(std::fs::File, u64)> {
        let f = self.file.as_ref()?;
        Some((f.file.reader().ok()?, f.file.bytes()))
    }

    /// The sparse index of the file being written, if it has one.
    pub fn open_index(&self) -> Option<&SparseIndex> {
        self.file.as_ref()?.index.as_ref()
    }

    /// The link type of its files.
    pub fn link(&self) -> LinkType {
        self.output.link
    }

    /// Bytes in the current file, records not yet flushed included.
    pub fn current_file_bytes(&self) -> u64 {
        self.file
            .as_ref()
            .map_or(0, |f| f.file.bytes() + self.pending.len() as u64)
    }
}

/// Test builds only (debug assertions): `BSC_DEBUG_CRASH=<point>` stops bsc
/// at once (abort: no destructor runs, nothing more is written, as after
/// `kill -9`) at that point of a file's life: `intent` (journaled, not created
/// yet), `created` (created with its header, nothing else done) or `final`
/// (closed and made read-only, the close not journaled yet), so a black-box
/// test hits these crash windows exactly. Not in release builds.
#[cfg(debug_assertions)]
fn crash_point(point: &str) {
    if std::env::var_os("BSC_DEBUG_CRASH").is_some_and(|p| p == point) {
        std::process::abort();
    }
}

#[cfg(not(debug_assertions))]
fn crash_point(_: &str) {}

/// The journal key of a handler: its name and address.
pub fn journal_key(spec: &HandlerSpec) -> String {
    format!("{}@{}", spec.name, spec.address.python_repr())
}

/// Forces a file's data to the disk, logging a failure.
fn sync(f: &mut PcapFile, handler: &str, now: UnixMicros) {
    if let Err(e) = f.sync(now) {
        let key = format!("sync {handler}");
        log::limited(
            &key,
            Level::Error,
            format_args!(
                "handler {handler}: fsync of {} failed: {e}",
                f.path().display()
            ),
        );
    }
}

mod close;
mod open;
mod stats;
#[cfg(test)]
mod tests;
mod write;

impl CurrentFile {
    /// Notes a record stamped `ts` in the least and most record times.
    fn note_bounds(&mut self, ts: UnixMicros) {
        if self.bounds_known {
            self.bounds = Some(
                self.bounds
                    .map_or((ts, ts), |(lo, hi)| (lo.min(ts), hi.max(ts))),
            );
        }
    }

    fn earliest(&self) -> Option<UnixMicros> {
        self.bounds.filter(|_| self.bounds_known).map(|b| b.0)
    }

    fn latest(&self) -> Option<UnixMicros> {
        self.bounds.filter(|_| self.bounds_known).map(|b| b.1)
    }
}
