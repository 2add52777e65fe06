//! One handler: a named output stream of a capturer, with its own file pattern,
//! rotation rule, statistics, open PCAP file and pending records. Only the
//! manager (its parent module) changes a handler: every mutating method is
//! `pub(super)`, and the spec is read-only outside.
//!
//! The write path: [`Handler::record`] adds a record to `pending` (no syscall):
//! its header is encoded into the handler's buffer, its payload is referred to
//! in the receive slot it arrived in, in the batch's [`Gather`] (see
//! [`crate::manager::pending`]: the borrow of the batch proves the slots are
//! not read into again before the write); the manager has
//! [`Handler::flush_from`] write them with one gathering `writev` per batch
//! (sooner once the buffer holds [`FLUSH_AT`] bytes of copies), so the kernel
//! has every record the process has read before bsc sleeps, and a `kill -9`
//! loses nothing already read. A handler with
//! framing, checks or transforms first passes each read through its
//! [`UnitPath`] (see [`crate::telemetry`]): one record per unit it keeps, each
//! stamped with the time of the read that completed it.
//!
//! Files are opened when a unit arrives (never empty files for idle links; the
//! file a crash left open is opened again at start, [`Handler::resume`]) and
//! closed when their rotation period ends (by the next unit or by the event loop's
//! timer, whichever comes first), when the next record would take them past
//! `rotate_max_bytes`, when they hold `rotate_max_packets` records, or on request.
//!
//! Naming (one place: [`Handler::open`]): `{seq}` continues after the last number
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
use std::rc::Rc;

use super::pending::{Gather, Pending};
use crate::capture::capturer::Unit;
use crate::clock::{UnixMicros, UnixNanos};
use crate::config::{ConnType, Direction, HandlerSpec, Origin, Timestamps};
use crate::ipudp;
use crate::log::{self, Level};
use crate::paths::CapturePath;
use crate::pcap::{self, Attempt, LinkType, Opened, PcapFile, Precision, Vanished};
use crate::storage::{ClosedFile, LastFile, OwnFile, Retention, Span, Storage};
use crate::sys::{self, Peer, PACKET_OUTGOING};
use crate::telemetry::UnitPath;
use crate::{error, info, warn};

/// Bytes in a handler's own buffer (headers, units it had to copy) past which
/// it writes at once rather than at the end of the batch (bounds the buffer
/// during a burst of framed TCP units).
pub const FLUSH_AT: usize = 1 << 20;
/// Capacity a pending buffer keeps when idle; more is given back by
/// [`Handler::maintain`] once a second passes without needing it.
const IDLE_CAPACITY: usize = 64 * 1024;
/// Most names tried for one new file before giving up (each taken name costs
/// one `open`).
const MAX_NAME_TRIES: u32 = 1000;

/// How long a handler waits after failing to open a file before trying again
/// (units arriving meanwhile are counted as lost).
const OPEN_RETRY_US: i64 = 1_000_000;

/// Counters of one handler since it started.
#[derive(Clone, Debug)]
pub struct HandlerStats {
    /// Reads handed to the handler: datagrams, TCP reads, frames (AIT's `reads`).
    pub reads: u64,
    /// Bytes of those reads (AIT's `data_read_length`).
    pub bytes_read: u64,
    /// Records: the reads themselves, or with framing, checks or transforms
    /// the units cut from them that are to be written (filtered units and
    /// dropped bad frames are not records); `records_lost` of them did not
    /// reach the disk.
    pub packets: u64,
    /// Payload bytes of those records (their original length).
    pub bytes: u64,
    pub files_opened: u64,
    /// Failed opens or writes.
    pub write_errors: u64,
    /// Units received but not on disk because of write errors.
    pub records_lost: u64,
    /// Units longer than the snaplen, written cut (orig_len keeps the length).
    pub truncated: u64,
    /// When the last unit arrived (a filtered one too: the source is alive).
    pub last_packet_at: Option<UnixMicros>,
    pub started_at: UnixMicros,
    /// Files closed because their calendar period ended.
    pub rotations_calendar: u64,
    /// Files closed because the next record would pass `rotate_max_bytes`.
    pub rotations_size: u64,
    /// Files closed because they held `rotate_max_packets` records.
    pub rotations_count: u64,
    /// Files closed by `POST /<name>/rotate`.
    pub rotations_forced: u64,
    /// Files deleted by retention or the disk budget.
    pub files_deleted: u64,
    /// Open files deleted or moved behind bsc's back.
    pub files_vanished: u64,
    /// Closed files the disk budget deleted before their `on_close` hook ended.
    pub hooks_not_run: u64,
    /// Units and bytes per second over the last [`SERIES_S`] seconds, one slot
    /// per second indexed by second modulo [`SERIES_S`]: allocated once here,
    /// filled by [`HandlerStats::count`] (no allocation per unit), read by
    /// [`HandlerStats::recent_rate`] and [`HandlerStats::series`].
    seconds: Box<[SecondSlot]>,
    /// The second the last unit was counted in, as microseconds [start, end),
    /// and its slot: units of the same second skip the divisions.
    current: (i64, i64, usize),
}

/// Seconds over which `rate_bytes_per_s` is averaged.
pub const RATE_WINDOW_S: i64 = 10;

/// Seconds of per-second history a handler keeps (`GET /series`).
pub const SERIES_S: i64 = 600;

/// What one second saw: 16 bytes, so a handler's history is 600 × 16 bytes
/// (9.4 KiB). The counts saturate at 4 Gi units or 4 GiB per second, beyond any
/// link bsc captures.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct SecondSlot {
    /// The Unix second the counts are of (`i64::MIN`: never used).
    sec: i64,
    packets: u32,
    bytes: u32,
}

impl SecondSlot {
    const EMPTY: SecondSlot = SecondSlot {
        sec: i64::MIN,
        packets: 0,
        bytes: 0,
    };
}

impl HandlerStats {
    fn new(now: UnixMicros) -> HandlerStats {
        HandlerStats {
            reads: 0,
            bytes_read: 0,
            packets: 0,
            bytes: 0,
            files_opened: 0,
            write_errors: 0,
            records_lost: 0,
            truncated: 0,
            last_packet_at: None,
            started_at: now,
            rotations_calendar: 0,
            rotations_size: 0,
            rotations_count: 0,
            rotations_forced: 0,
            files_deleted: 0,
            files_vanished: 0,
            hooks_not_run: 0,
            seconds: vec![SecondSlot::EMPTY; SERIES_S as usize].into_boxed_slice(),
            current: (0, 0, 0),
        }
    }

    fn count(&mut self, ts: UnixMicros, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
        self.last_packet_at = Some(ts);
        let (start, end, mut i) = self.current;
        if !(start..end).contains(&ts.0) {
            let sec = ts.secs();
            i = sec.rem_euclid(SERIES_S) as usize;
            self.current = (sec * 1_000_000, (sec + 1) * 1_000_000, i);
            if self.seconds[i].sec != sec {
                self.seconds[i] = SecondSlot {
                    sec,
                    ..SecondSlot::EMPTY
                };
            }
        }
        let slot = &mut self.seconds[i];
        slot.packets = slot.packets.saturating_add(1);
        slot.bytes = slot
            .bytes
            .saturating_add(u32::try_from(bytes).unwrap_or(u32::MAX));
    }

    /// The slot of second `sec` if it holds that second's counts.
    fn second(&self, sec: i64) -> Option<&SecondSlot> {
        let slot = &self.seconds[sec.rem_euclid(SERIES_S) as usize];
        (slot.sec == sec).then_some(slot)
    }

    /// (units, bytes) of each of the [`SERIES_S`] seconds up to and including
    /// `now`'s, oldest first; (0, 0) for a second without units.
    pub fn series(&self, now: UnixMicros) -> impl Iterator<Item = (u32, u32)> + '_ {
        let end = now.secs();
        (end - SERIES_S + 1..=end).map(|sec| {
            self.second(sec)
                .map_or((0, 0), |slot| (slot.packets, slot.bytes))
        })
    }

    /// Bytes per second received over the last [`RATE_WINDOW_S`] seconds up to
    /// `now` (over the handler's age if it is younger). Never divides by zero.
    pub fn recent_rate(&self, now: UnixMicros) -> f64 {
        let sec = now.secs();
        let total: u64 = (sec - RATE_WINDOW_S + 1..=sec)
            .filter_map(|s| self.second(s))
            .map(|slot| u64::from(slot.bytes))
            .sum();
        let age = (sec - self.started_at.secs() + 1).clamp(1, RATE_WINDOW_S);
        total as f64 / age as f64
    }

    /// Bytes read per second since the handler started (AIT's `approx_data_rate`).
    pub fn lifetime_rate(&self, now: UnixMicros) -> f64 {
        let secs = (now.0 - self.started_at.0) as f64 / 1e6;
        if secs <= 0.0 {
            0.0
        } else {
            self.bytes_read as f64 / secs
        }
    }
}

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
    /// Records in the file at the last check that it still exists.
    records_checked: u64,
}

/// What [`Handler::record`] did that the manager must know.
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
    root: PathBuf,
    link: LinkType,
    /// The capturer's local address (destination of `record_source` headers).
    local: Option<SocketAddr>,
    file: Option<CurrentFile>,
    /// Whether this handler has opened a file yet (only its first may append).
    opened_any: bool,
    /// Records taken, not yet written (see [`Pending`]).
    pending: Pending,
    /// Most pending own bytes since the last [`Handler::maintain`].
    pending_peak: usize,
    /// After a failed open or write, no new attempt before this instant.
    retry_open_at: Option<UnixMicros>,
    stats: HandlerStats,
    /// The journal, open files and the closed-file outbox (shared).
    storage: Rc<Storage>,
    /// Why writing fails, while it does (cleared by the next successful write).
    degraded: Option<String>,
    /// Set by the disk budget: units are counted as lost instead of written.
    suspended: bool,
    /// Framing, checks and transforms (`None`: each read is written as it comes).
    units: Option<Box<UnitPath>>,
    /// Brought back at start-up from the handlers saved over the API
    /// ([`crate::persist`]), not from the config file or a request of this run.
    restored: bool,
}

impl Handler {
    /// A handler writing under `root`; it opens no file until its first unit.
    /// `local` is the address its capturer's socket is bound to, if any.
    /// `storage` is shared with the manager. A file the journal says this
    /// handler's key left open (a crash) is repaired and closed now, unless the
    /// pattern still gives its name at `now` ([`Handler::resume`] then opens it
    /// again); one that does not exist is forgotten.
    pub(super) fn new(
        spec: HandlerSpec,
        root: &Path,
        now: UnixMicros,
        local: Option<SocketAddr>,
        storage: Rc<Storage>,
    ) -> Handler {
        let link = match (spec.conn_type, spec.record_source, local) {
            (ConnType::Ethernet, _, _) => LinkType::Ethernet,
            (ConnType::Udp, true, Some(SocketAddr::V6(_))) => LinkType::Ipv6,
            (ConnType::Udp, true, _) => LinkType::Ipv4,
            // record_source is refused for tcp by the config loader.
            (ConnType::Udp, false, _) | (ConnType::Tcp, _, _) => LinkType::User0,
        };
        let mut h = Handler {
            root: root.to_path_buf(),
            link,
            local,
            file: None,
            opened_any: false,
            pending: Pending::default(),
            pending_peak: 0,
            retry_open_at: None,
            stats: HandlerStats::new(now),
            storage,
            degraded: None,
            suspended: false,
            units: UnitPath::needed(&spec).then(|| Box::new(UnitPath::new(&spec))),
            restored: false,
            spec,
        };
        // The folder may hold files beyond the journal's last (opened while a
        // full disk kept the journal behind, then a crash): the journal's
        // left-open file is then closed, not resumed, and naming goes on after
        // the newest file found, so names keep sorting in time order.
        let found = h.scan_folder(now);
        let beyond = found.as_ref().is_some_and(|(f, _)| {
            h.storage
                .last(&h.journal_key())
                .is_some_and(|l| f.seq > l.seq || (f.unnumbered == l.unnumbered && f.n > l.n))
        });
        h.settle_left_open(now, !beyond);
        if let Some((found, folder)) = found {
            h.seed_naming(found, &folder, beyond);
        }
        h
    }

    /// One look at the folder its pattern gives now, so `{seq}` and `-N` go on
    /// after the highest files there even where the journal knows less (a new
    /// handler, one that moved to another address and back, a journal lost).
    fn scan_folder(&self, now: UnixMicros) -> Option<(LastFile, PathBuf)> {
        const MARK: &str = "\u{1}";
        let t = now.to_datetime();
        let template = self.spec.file_name_template(t, MARK)?;
        let place = self.spec.file_path(&self.root, t, 1).ok()?;
        let (pre, post, has_seq) = match template.split_once(MARK) {
            Some((pre, post)) => (pre.to_string(), post.to_string(), true),
            None => (template.clone(), String::new(), false),
        };
        let folder = place
            .full()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let (seq, n, name) = std::fs::read_dir(&folder)
            .ok()?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (seq, n) = crate::paths::parse_numbered(&name, &pre, &post, has_seq)?;
                Some((seq, n, name))
            })
            .max_by_key(|(seq, n, _)| (*seq, *n))?;
        if !has_seq && n == 0 {
            // Only the pattern's own name: the first unit may append to it, as
            // AIT does, if it is not final and has bsc's header.
            return None;
        }
        let unnumbered = self.spec.file_path(&self.root, t, seq.max(1)).ok()?;
        let found = LastFile {
            path: folder.join(&name),
            trusted: place.base().to_path_buf(),
            unnumbered: unnumbered.full(),
            n,
            seq,
            created: false,
            closed: true,
        };
        Some((found, folder))
    }

    /// Has `{seq}` and `-N` go on after `found`, the newest file of the
    /// handler's pattern in `folder` ([`Handler::scan_folder`]), where the
    /// journal knows less: a new key, files copied in, or (`beyond`: files
    /// newer than the journal's last) entries a crash lost while a full disk
    /// kept the journal behind.
    fn seed_naming(&self, found: LastFile, folder: &Path, beyond: bool) {
        let name = found
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        use std::os::unix::fs::PermissionsExt;
        let writable = |m: std::fs::Metadata| m.permissions().mode() & 0o200 != 0;
        if beyond && std::fs::metadata(&found.path).is_ok_and(writable) {
            warn!(
                "handler {}: {} is newer than anything the journal recorded and is not final: bsc never journaled it (it was being written when bsc stopped while the journal was behind after a failed append, or another program put it there); it is left as it is (neither closed nor shipped)",
                self.spec.name,
                found.path.display()
            );
        }
        info!(
            "handler {}: naming goes on after {} (found in {})",
            self.spec.name,
            name,
            folder.display()
        );
        self.storage.seed(&self.journal_key(), found);
    }

    /// The handler's definition.
    pub fn spec(&self) -> &HandlerSpec {
        &self.spec
    }

    /// Where the handler came from, as `GET /stats` says it: `config` (the
    /// config file), `api` (a request of this run) or `restored` (saved over
    /// the API before the last start, see [`crate::persist`]).
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
        self.degraded.as_deref()
    }

    /// Whether the disk budget has stopped this handler writing.
    pub fn suspended(&self) -> bool {
        self.suspended
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
        self.suspended = suspended;
    }

    /// Takes one received unit; its payloads go into `gather` (this handler's,
    /// for the batch `unit` lies in). Returns what the manager must arrange (a
    /// flush, a rotation timer). Outgoing Ethernet frames are skipped with
    /// `direction: in`.
    pub(super) fn record<'b>(&mut self, unit: &Unit<'b>, gather: &mut Gather<'b>) -> Recorded {
        if self.spec.direction == Direction::In
            && unit.peer
                == (Peer::Packet {
                    pkttype: PACKET_OUTGOING,
                })
        {
            return Recorded::default();
        }
        self.stats.reads += 1;
        self.stats.bytes_read += unit.orig_len as u64;
        // `at` goes into the record (a nanosecond file keeps all of it);
        // everything else works on its microsecond.
        let at = match (self.spec.timestamps, unit.kernel_at) {
            (Timestamps::Kernel, Some(k)) => k,
            _ => unit.read_at,
        };
        let ts = at.micros();
        let source = match (self.link, unit.peer) {
            (LinkType::Ipv4 | LinkType::Ipv6, Peer::Inet(src)) => Some(src),
            _ => None,
        };
        if let Some(mut units) = self.units.take() {
            let outcome = self.record_units(&mut units, unit, at, source, gather);
            self.units = Some(units);
            return outcome;
        }
        if self.suspended {
            self.stats.count(ts, unit.orig_len);
            self.stats.records_lost += 1;
            return Recorded::default();
        }
        self.stats.count(ts, unit.orig_len);
        self.write_record(at, unit.data, unit.orig_len, source, unit.data, gather)
    }

    /// Records the units `units` cuts `unit` into, each stamped `at` (the read
    /// that completed it); see [`crate::telemetry`].
    fn record_units<'b>(
        &mut self,
        units: &mut UnitPath,
        unit: &Unit<'b>,
        at: UnixNanos,
        source: Option<SocketAddr>,
        gather: &mut Gather<'b>,
    ) -> Recorded {
        let ts = at.micros();
        let mut outcome = Recorded::default();
        // Without framing the unit is the read: keep what the source cut off.
        let cut = match self.spec.framing {
            crate::framing::Framing::None => unit.orig_len.saturating_sub(unit.data.len()),
            _ => 0,
        };
        units.feed(unit.data, unit.stream, &mut |whole, write| {
            // Filtered units and dropped bad frames are not records: they are
            // counted by the unit path (`filtered`, `crc_errors`), not here.
            let Some(data) = write else {
                self.stats.last_packet_at = Some(ts);
                return;
            };
            self.stats.count(ts, whole.len() + cut);
            if self.suspended {
                self.stats.records_lost += 1;
                return;
            }
            let r = self.write_record(at, data, data.len() + cut, source, unit.data, gather);
            outcome.needs_flush |= r.needs_flush;
            outcome.rotate_at = r.rotate_at.or(outcome.rotate_at);
        });
        outcome
    }

    /// A TCP connection of this handler's capturer ended: a partial unit is dropped.
    pub(super) fn connection_ended(&mut self) {
        if let Some(u) = self.units.as_mut() {
            u.connection_ended();
        }
    }

    /// Framing, checks and transforms, when the handler has any.
    pub fn units(&self) -> Option<&UnitPath> {
        self.units.as_deref()
    }

    /// Takes `data` (really `orig_len` long) as one record stamped `at` (at the
    /// handler's `timestamp_precision`), behind synthesized IP/UDP headers from
    /// `source` when the handler records sources, rotating or opening a file
    /// first if due; counts nothing but failures. `data` is referred to in
    /// `gather`, not copied, if it lies in `within` (the unit as it arrived).
    fn write_record<'b>(
        &mut self,
        at: UnixNanos,
        data: &[u8],
        orig_len: usize,
        source: Option<SocketAddr>,
        within: &'b [u8],
        gather: &mut Gather<'b>,
    ) -> Recorded {
        let ts = at.micros();
        let precision = self.spec.timestamp_precision;
        let mut outcome = Recorded::default();
        let headers = match self.link {
            LinkType::Ipv4 => ipudp::V4_HEADERS,
            LinkType::Ipv6 => ipudp::V6_HEADERS,
            LinkType::User0 | LinkType::Ethernet => 0,
        };
        let captured = (headers + data.len()).min(pcap::SNAPLEN as usize);
        let record_len = (pcap::RECORD_HEADER_LEN + captured) as u64;
        if let Some(reason) = self
            .file
            .as_ref()
            .and_then(|f| self.rotation_due(f, ts, record_len))
        {
            // The records so far belong to this file, and may refer to the slots.
            self.flush_from(gather);
            self.rotate(reason);
        }
        if self.file.is_none() {
            if self.retry_open_at.is_some_and(|t| ts < t) {
                self.stats.records_lost += 1;
                return outcome;
            }
            match self.open(ts) {
                Ok(rotate_at) => outcome.rotate_at = rotate_at,
                Err(_) => {
                    self.stats.records_lost += 1;
                    return outcome;
                }
            }
            // A resumed file may be full already (a crash between its last
            // record and its close, or a lower limit since): it is closed, and
            // the record goes to the next (new, so never full) file.
            if let Some(reason) = self
                .file
                .as_ref()
                .and_then(|f| self.rotation_due(f, ts, record_len))
            {
                self.rotate(reason);
                match self.open(ts) {
                    Ok(rotate_at) => outcome.rotate_at = rotate_at,
                    Err(_) => {
                        self.stats.records_lost += 1;
                        return outcome;
                    }
                }
            }
        }
        if headers + data.len() > pcap::SNAPLEN as usize || orig_len > data.len() {
            self.stats.truncated += 1;
        }
        outcome.needs_flush = self.pending.is_empty();
        if let Some(f) = self.file.as_mut() {
            f.first_ts.get_or_insert(ts);
            f.last_ts = Some(ts);
        }
        pcap::record_header(
            self.pending.own(),
            precision,
            at,
            captured,
            headers + orig_len.max(data.len()),
        );
        if headers > 0 {
            let unspecified = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0);
            let src = source.unwrap_or(unspecified);
            let dst = self.local.unwrap_or(unspecified);
            ipudp::write_headers(self.pending.own(), src, dst, data);
        }
        self.pending
            .payload(&data[..captured - headers], within, gather);
        self.pending.end_record();
        // A file full by count is closed now, not when the next unit comes, so
        // that it is final (and handed on) at once.
        let full = self.file.as_ref().is_some_and(|f| {
            self.spec.rotate_max_packets.is_some_and(|max| {
                f.file.earlier().records + f.file.records() + self.pending.records() >= max
            })
        });
        if full {
            self.flush_from(gather);
            self.rotate(Rotation::Count);
        }
        outcome
    }

    /// Bytes waiting to be written in the handler's own buffer (headers, and
    /// units that had to be copied): what a burst makes it hold.
    pub(super) fn pending_own_bytes(&self) -> usize {
        self.pending.own_len()
    }

    /// Whether `f` must be closed before a record of `next_len` bytes stamped `now`
    /// is written, and why.
    fn rotation_due(&self, f: &CurrentFile, now: UnixMicros, next_len: u64) -> Option<Rotation> {
        if self.period_ended(f, now) {
            return Some(Rotation::Calendar);
        }
        let records = f.file.earlier().records + f.file.records() + self.pending.records();
        if self
            .spec
            .rotate_max_packets
            .is_some_and(|max| records >= max)
        {
            return Some(Rotation::Count);
        }
        let bytes = f.file.bytes() + self.pending.len() as u64;
        // A record larger than the limit is still written, alone in its file.
        if self
            .spec
            .rotate_max_bytes
            .is_some_and(|max| records > 0 && bytes + next_len > max)
        {
            return Some(Rotation::Size);
        }
        None
    }

    /// Closes the current file for the next one, counting why.
    fn rotate(&mut self, reason: Rotation) {
        self.close();
        let counter = match reason {
            Rotation::Calendar => &mut self.stats.rotations_calendar,
            Rotation::Size => &mut self.stats.rotations_size,
            Rotation::Count => &mut self.stats.rotations_count,
            Rotation::Forced => &mut self.stats.rotations_forced,
        };
        *counter += 1;
    }

    /// Whether `f`'s rotation period is over at `now`: the precomputed deadline, or,
    /// if the clock was stepped back before the file's opening, AIT's rule itself.
    fn period_ended(&self, f: &CurrentFile, now: UnixMicros) -> bool {
        match (f.rotate_at, self.spec.rotation) {
            (Some(end), Some(rule)) => {
                now >= end
                    || (now < f.opened_at
                        && rule.is_due(f.opened_at.to_datetime(), now.to_datetime()))
            }
            _ => false,
        }
    }

    /// Where the next file opened at `t` starts its search: the checked place its
    /// pattern gives (with the `{seq}` number) and the first `-N` to try.
    fn next_place(&self, t: time::OffsetDateTime) -> Result<(CapturePath, u64, u32), String> {
        let last = self.storage.last(&self.journal_key());
        let seq = last.as_ref().map_or(1, |l| l.seq + 1);
        let place = self.spec.file_path(&self.root, t, seq)?;
        let n = match last {
            Some(l) if l.unnumbered == place.full() => l.n + 1,
            _ => 0,
        };
        Ok((place, seq, n))
    }

    /// A file this handler's key left open when bsc last stopped (a crash) is
    /// either resumed by the first unit (when `may_resume` and the pattern gives
    /// its name at `now`) or repaired, made final and handed to `on_close` (and
    /// `ship`) now. One that does not exist (a crash after its intent was
    /// journaled, before it was created) is forgotten, its name still counted;
    /// one already final (a crash after it was made final, before its close was
    /// journaled) is closed as it is. Returns the file to resume.
    fn settle_left_open(&mut self, now: UnixMicros, may_resume: bool) -> Option<LastFile> {
        if self.opened_any {
            return None;
        }
        let last = self
            .storage
            .last(&self.journal_key())
            .filter(|l| !l.closed && !self.storage.is_open(&l.path))?;
        let found = crate::storage::dir_of(&last.trusted, &last.path)
            .and_then(|(dir, name)| sys::identity_at(&dir, &name));
        if found.is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            info!(
                "handler {}: {} was being opened when bsc last stopped and does not exist; forgotten (its name is not used again)",
                self.spec.name,
                last.path.display()
            );
            self.storage.gone(&last.path);
            return None;
        }
        use std::os::unix::fs::PermissionsExt;
        let is_final = std::fs::symlink_metadata(&last.path)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o200 == 0);
        let same_name = self
            .spec
            .file_path(&self.root, now.to_datetime(), last.seq)
            .is_ok_and(|p| p.full() == last.unnumbered);
        // A file left at the other precision or link type (the config changed
        // while bsc was stopped) is never appended to: it is closed like any
        // other.
        let own_header = || {
            crate::storage::dir_of(&last.trusted, &last.path).is_ok_and(|(dir, name)| {
                pcap::starts_with_header(&dir, &name, self.link, self.spec.timestamp_precision)
            })
        };
        if may_resume && same_name && !is_final && own_header() {
            return Some(last);
        }
        match self.finish_left_open(&last, is_final) {
            Some((span, bytes, id)) => self.hand_over(last.path.clone(), span, bytes, id),
            // Not bsc's any more (another header, not a plain file): nothing
            // to close.
            None => self
                .storage
                .finished(&last.path, Span::default(), None, false, None),
        }
        None
    }

    /// Makes `last`, a file a crash left open, final: repaired (a torn last
    /// record cut) and made read-only, or, `is_final` already (bsc made it so
    /// and stopped before journaling the close), only read. Returns what it
    /// holds, its size and identity; `None` if it is not a bsc file any more.
    fn finish_left_open(
        &self,
        last: &LastFile,
        is_final: bool,
    ) -> Option<(Span, u64, pcap::FileId)> {
        let busy = |id| self.storage.is_busy(id);
        // At the precision it was written at: the handler's, or the other if
        // the config changed while bsc was stopped.
        let mut precisions = Precision::ALL;
        precisions.sort_by_key(|&p| p != self.spec.timestamp_precision);
        let (dir, name) = crate::storage::dir_of(&last.trusted, &last.path).ok()?;
        let span = |scan: pcap::Scan| Span {
            records: Some(scan.records),
            first_ts: scan.first_ts,
            last_ts: scan.last_ts,
        };
        for precision in precisions {
            if is_final {
                let Ok(Some((scan, id, bytes))) =
                    pcap::scan_final(&dir, &name, self.link, precision)
                else {
                    continue;
                };
                info!(
                    "handler {}: closed {}, made final when bsc last stopped",
                    self.spec.name,
                    last.path.display()
                );
                return Some((span(scan), bytes, id));
            }
            let path = last.path.clone();
            let Ok(Attempt::Ready(f, how)) =
                PcapFile::open(&dir, &name, path, self.link, precision, true, &busy)
            else {
                continue;
            };
            let (bytes, scan, id) = (f.bytes(), f.earlier(), f.identity());
            if let Opened::Appended { torn_bytes } = how {
                if torn_bytes > 0 {
                    warn!(
                        "handler {}: {} was left open by a crash; cut a torn last record ({})",
                        self.spec.name,
                        last.path.display(),
                        log::size(torn_bytes)
                    );
                }
            }
            if let Err(e) = f.finish() {
                warn!(
                    "handler {}: cannot make {} final: {e}",
                    self.spec.name,
                    last.path.display()
                );
            }
            info!(
                "handler {}: closed {}, left open when bsc last stopped",
                self.spec.name,
                last.path.display()
            );
            return Some((span(scan), bytes, id));
        }
        None
    }

    /// At start: the file this handler's key left open (a crash) that its
    /// pattern still names at `now` (any other was closed by [`Handler::new`])
    /// is opened again now rather than by the first unit, so it is the open
    /// file like any other (listed, counted by retention, closed at its
    /// rotation deadline even if no unit comes). Returns that deadline.
    pub(super) fn resume(&mut self, now: UnixMicros) -> Option<UnixMicros> {
        let left_open = self
            .storage
            .last(&self.journal_key())
            .is_some_and(|l| !l.closed && !self.storage.is_open(&l.path));
        if !left_open || self.opened_any {
            return None;
        }
        self.open(now).ok().flatten()
    }

    /// Opens the next file for a unit at `ts` (see the module doc on naming).
    /// Returns its rotation deadline, or why it could not be opened (already
    /// logged and counted).
    fn open(&mut self, ts: UnixMicros) -> Result<Option<UnixMicros>, String> {
        let t = ts.to_datetime();
        let resume = self.settle_left_open(ts, true);
        let found = match &resume {
            Some(l) => self
                .spec
                .file_path(&self.root, t, l.seq)
                .map(|p| (p, l.seq, l.n)),
            None => self.next_place(t),
        }
        .and_then(|(place, seq, n)| self.open_from(&place, seq, n));
        let (file, how, unnumbered) = match found {
            Ok(f) => f,
            Err(why) => {
                self.open_failed(ts, &why);
                return Err(why);
            }
        };
        match how {
            Opened::Created => info!(
                "handler {}: opened {}",
                self.spec.name,
                file.path().display()
            ),
            Opened::Appended { torn_bytes: 0 } => info!(
                "handler {}: appending to {}",
                self.spec.name,
                file.path().display()
            ),
            Opened::Appended { torn_bytes } => warn!(
                "handler {}: appending to {} after cutting a torn last record ({})",
                self.spec.name,
                file.path().display(),
                log::size(torn_bytes)
            ),
        }
        let rotate_at = self
            .spec
            .rotation
            .map(|r| UnixMicros::from_datetime(r.next_rotation(t)));
        let earlier = file.earlier();
        self.file = Some(CurrentFile {
            file,
            unnumbered,
            opened_at: ts,
            rotate_at,
            first_ts: earlier.first_ts,
            last_ts: earlier.last_ts,
            records_checked: 0,
        });
        self.opened_any = true;
        self.retry_open_at = None;
        self.stats.files_opened += 1;
        self.enforce_retention();
        Ok(rotate_at)
    }

    /// Opens the first usable name of `place` from suffix `n` on, and journals it.
    fn open_from(
        &self,
        place: &CapturePath,
        seq: u64,
        n: u32,
    ) -> Result<(PcapFile, Opened, PathBuf), String> {
        let unnumbered = place.full();
        let dir = sys::open_dir_beneath(place.base(), &place.dirs(), true)
            .map_err(|e| format!("cannot open the folder of {}: {e}", unnumbered.display()))?;
        if self.storage.is_state_dir(&dir) {
            return Err(format!(
                "{} is bsc's state folder (under another name); it is never a capture folder",
                unnumbered.parent().unwrap_or(Path::new("")).display()
            ));
        }
        let busy = |id| self.storage.is_busy(id);
        let key = self.journal_key();
        // The file this key created and a crash left open: resumed, it is
        // still bsc's (retention, the disk budget, the file list).
        let left_open = self
            .storage
            .last(&key)
            .filter(|l| l.created && !l.closed)
            .map(|l| l.path);
        let mut first_refusal: Option<(PathBuf, String)> = None;
        for n in n..n.saturating_add(MAX_NAME_TRIES) {
            let candidate = place.numbered(n);
            let path = candidate.full();
            let last = LastFile {
                path: path.clone(),
                trusted: place.base().to_path_buf(),
                unnumbered: unnumbered.clone(),
                n,
                seq,
                created: true,
                closed: false,
            };
            let attempt = if self.storage.is_open(&path) {
                Attempt::Taken("another handler is writing it".into())
            } else if !self.opened_any && self.storage.was_closed(&path) {
                Attempt::Taken("bsc closed it before: it is final".into())
            } else {
                let name = candidate.file_name();
                // A name that does not exist is journaled before it is created
                // (write-ahead, see `Storage::opening`).
                let free = matches!(sys::identity_at(&dir, name),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound);
                if free {
                    let ship = self.spec.ship.as_ref();
                    self.storage.opening(&key, last.clone(), ship);
                    crash_point("intent");
                }
                let attempt = PcapFile::open(
                    &dir,
                    name,
                    path.clone(),
                    self.link,
                    self.spec.timestamp_precision,
                    !self.opened_any,
                    &busy,
                );
                if free && matches!(attempt, Ok(Attempt::Ready(..))) {
                    crash_point("created");
                }
                attempt.map_err(|e| format!("cannot open {}: {e}", path.display()))?
            };
            match attempt {
                Attempt::Ready(file, how) => {
                    if let Some((first, why)) = first_refusal {
                        warn!(
                            "handler {}: not writing into {} ({why}); using {} instead",
                            self.spec.name,
                            first.display(),
                            path.display()
                        );
                    }
                    if file.created() {
                        // The new folder entry must survive a power cut too.
                        let _ = std::fs::File::from(dir).sync_all();
                    }
                    let last = LastFile {
                        created: file.created() || left_open.as_ref() == Some(&path),
                        ..last
                    };
                    let ship = self.spec.ship.as_ref();
                    self.storage.opened(&key, last, file.identity(), ship);
                    return Ok((file, how, unnumbered));
                }
                Attempt::Taken(why) => {
                    first_refusal.get_or_insert((path, why));
                }
            }
        }
        Err(format!(
            "{} and its next {MAX_NAME_TRIES} numbered names are all taken",
            unnumbered.display()
        ))
    }

    /// `POST /<name>/rotate`: closes the current file and opens the next one now.
    /// Returns the new file's rotation deadline, or why it could not be opened.
    pub(super) fn rotate_now(&mut self, now: UnixMicros) -> Result<Option<UnixMicros>, String> {
        self.rotate(Rotation::Forced);
        // A forced rotation always gives a new file, never the one a crash left.
        self.settle_left_open(now, false);
        self.opened_any = true;
        self.retry_open_at = None;
        self.open(now)
    }

    fn open_failed(&mut self, ts: UnixMicros, why: &str) {
        self.stats.write_errors += 1;
        self.degraded = Some(why.to_string());
        self.retry_open_at = Some(ts.plus_micros(OPEN_RETRY_US));
        let key = format!("open {}", self.spec.name);
        log::limited(
            &key,
            Level::Error,
            format_args!(
                "handler {}: {why}; units are counted as lost until a retry in 1 s succeeds",
                self.spec.name
            ),
        );
    }

    /// Writes every pending record to the current file (see [`Handler::flush_from`]);
    /// outside a drain, when no record refers to the receive slots.
    pub(super) fn flush(&mut self) -> u64 {
        self.flush_from(&mut Gather::copying())
    }

    /// Writes every pending record to the current file with one gathering
    /// `writev`, payloads from the receive slots `gather` refers to (see
    /// [`Pending`]), and
    /// forces the file to the disk when `fsync_interval_s` has passed since it
    /// last was.
    ///
    /// On a write error (a full disk, an I/O error) the file is cut back to its
    /// last whole record, the pending records are counted as lost, the handler is
    /// `degraded`, and the file is closed: the first unit a second or more later
    /// opens the next one. Returns the number of bytes written.
    pub(super) fn flush_from(&mut self, gather: &mut Gather<'_>) -> u64 {
        self.pending_peak = self.pending_peak.max(self.pending.own_len());
        if self.pending.is_empty() {
            return 0;
        }
        let Some(f) = self.file.as_mut() else {
            // Records are only encoded while a file is open.
            self.pending.clear(gather);
            return 0;
        };
        let records = self.pending.records();
        let mut written = 0;
        match self.pending.write_to(&mut f.file, gather) {
            Ok(bytes) => {
                written = bytes;
                if let Some(why) = self.degraded.take() {
                    info!(
                        "handler {}: writing again ({} after: {why})",
                        self.spec.name,
                        f.file.path().display()
                    );
                }
                if self
                    .spec
                    .fsync_interval
                    .is_some_and(|every| f.file.sync_due(every))
                {
                    sync(&mut f.file, &self.spec.name);
                }
            }
            Err(e) => {
                self.stats.write_errors += 1;
                self.stats.records_lost += records;
                let why = format!("write to {} failed: {e}", f.file.path().display());
                let key = format!("write {}", self.spec.name);
                log::limited(
                    &key,
                    Level::Error,
                    format_args!(
                        "handler {}: {why}; {} lost; retrying in 1 s",
                        self.spec.name,
                        log::count(records, "record"),
                    ),
                );
                self.retry_open_at = f.last_ts.map(|t| t.plus_micros(OPEN_RETRY_US));
                self.degraded = Some(why);
                self.close();
            }
        }
        written
    }

    /// Flushes, forces to the disk and closes the current file for good, if any:
    /// it becomes read-only, is journaled as closed, goes to the outbox (for
    /// `on_close`) and, if bsc created it, to retention.
    pub(super) fn close(&mut self) {
        self.flush();
        let Some(f) = self.file.take() else {
            return;
        };
        let (path, id) = (f.file.path().to_path_buf(), f.file.identity());
        let (records, bytes) = (f.file.earlier().records + f.file.records(), f.file.bytes());
        if let Err(e) = f.file.finish() {
            let key = format!("sync {}", self.spec.name);
            log::limited(
                &key,
                Level::Error,
                format_args!(
                    "handler {}: closing {} failed: {e}",
                    self.spec.name,
                    path.display()
                ),
            );
        }
        crash_point("final");
        info!(
            "handler {}: closed {} ({}, {})",
            self.spec.name,
            path.display(),
            log::count(records, "record"),
            log::size(bytes)
        );
        let span = Span {
            records: Some(records),
            first_ts: f.first_ts,
            last_ts: f.last_ts,
        };
        self.hand_over(path, span, bytes, id);
        self.enforce_retention();
    }

    /// A file closed for good: journaled (with its hook still to run, and its
    /// `ship` settings, if it has them: it then waits to ship) and put in the
    /// outbox for `on_close`.
    fn hand_over(&self, path: PathBuf, span: Span, bytes: u64, id: pcap::FileId) {
        let hook = !self.spec.on_close.is_empty();
        self.storage
            .finished(&path, span, Some(id), hook, self.spec.ship.as_ref());
        self.storage.closed(ClosedFile {
            handler: self.spec.name.clone(),
            on_close: self.spec.on_close.clone(),
            path,
            records: span.records.unwrap_or(0),
            bytes,
            first_ts: span.first_ts,
            last_ts: span.last_ts,
        });
    }

    /// Once a second: notices a file deleted or moved behind bsc's back, forces
    /// data written more than `fsync_interval_s` ago to the disk (even on an idle
    /// link), applies `max_age`, and gives back buffer memory a burst left.
    pub(super) fn maintain(&mut self) {
        self.check_file_still_there();
        if let (Some(every), Some(f)) = (self.spec.fsync_interval, self.file.as_mut()) {
            if f.file.sync_due(every) {
                sync(&mut f.file, &self.spec.name);
            }
        }
        // Every second, not only at a close: a file retention had to spare
        // (its hook ran, it shipped) goes once it may, and `max_age` ages.
        self.enforce_retention();
        let keep = self.pending_peak.max(IDLE_CAPACITY);
        if self.pending.capacity() > keep {
            self.pending.shrink_to(keep);
        }
        self.pending_peak = 0;
    }

    /// If the open file was deleted (or its name or folder removed or moved), it
    /// is counted and logged, and the next unit opens a new file (folders are
    /// made again). Records written to a deleted file since the last check are
    /// counted as lost.
    fn check_file_still_there(&mut self) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        let Some(what) = f.file.vanished() else {
            f.records_checked = f.file.records();
            return;
        };
        self.flush();
        let Some(f) = self.file.take() else {
            return;
        };
        let path = f.file.path().to_path_buf();
        self.stats.files_vanished += 1;
        match what {
            Vanished::Deleted => {
                let lost = f.file.records() - f.records_checked;
                self.stats.records_lost += lost;
                error!(
                    "handler {}: {} was deleted while open; {} written to it since the last check are lost; the next unit opens a new file",
                    self.spec.name,
                    path.display(),
                    log::count(lost, "record")
                );
            }
            Vanished::Moved => {
                let _ = f.file.finish();
                error!(
                    "handler {}: {} was moved or its folder removed while open; its records stay in the moved file; the next unit opens a new file",
                    self.spec.name,
                    path.display()
                );
            }
        }
        self.degraded = Some(format!("{} vanished while open", path.display()));
        self.storage.gone(&path);
    }

    fn retention(&self) -> Retention {
        Retention {
            max_files: self.spec.max_files,
            max_bytes: self.spec.max_bytes,
            max_age: self.spec.max_age,
        }
    }

    /// Deletes this handler's oldest closed files beyond its retention limits.
    fn enforce_retention(&mut self) {
        let r = self.retention();
        if r == Retention::default() {
            return;
        }
        let open = self
            .file
            .as_ref()
            .map(|f| f.file.bytes() + self.pending.len() as u64);
        for old in self.storage.take_excess(&self.journal_key(), open, &r) {
            self.delete(&old, "retention");
        }
    }

    /// Applies retention now (a file it had to spare while it waited to ship
    /// has shipped).
    pub(super) fn shipped_one(&mut self) {
        self.enforce_retention();
    }

    /// Counts a closed file whose `on_close` hook was not run or not to its end
    /// (the disk budget deleted it first; dropped from a full queue; the file
    /// gone or refused; the command not started).
    pub(super) fn hook_not_run(&mut self) {
        self.stats.hooks_not_run += 1;
    }

    /// Deletes one of this handler's closed files (retention or the disk budget).
    pub(super) fn delete(&mut self, file: &OwnFile, why: &str) {
        match self.storage.remove(file) {
            Ok(()) => {
                info!(
                    "handler {}: deleted {} ({}, {why})",
                    self.spec.name,
                    file.path.display(),
                    log::size(file.bytes)
                );
                self.stats.files_deleted += 1;
            }
            Err(e) => warn!(
                "handler {}: cannot delete {}: {e}",
                self.spec.name,
                file.path.display()
            ),
        }
    }

    /// Closes the current file if its rotation period has ended by `now`. Returns
    /// whether it did.
    pub(super) fn close_if_due(&mut self, now: UnixMicros) -> bool {
        let due = self
            .file
            .as_ref()
            .is_some_and(|f| self.period_ended(f, now));
        if due {
            self.rotate(Rotation::Calendar);
        }
        due
    }

    /// The file being written, or the one the next unit would be written to
    /// (empty if the pattern cannot give one now).
    pub fn log_file_path(&self, now: UnixMicros) -> PathBuf {
        match &self.file {
            Some(f) => f.file.path().to_path_buf(),
            None => self.next_path(now).unwrap_or_default(),
        }
    }

    /// The name the next file opened at `now` would get: the first of its
    /// candidates that is free (no more than a few looks).
    pub fn next_path(&self, now: UnixMicros) -> Result<PathBuf, String> {
        if let Some(l) = self
            .storage
            .last(&self.journal_key())
            .filter(|l| !self.opened_any && !l.closed && !self.storage.is_open(&l.path))
        {
            if self
                .spec
                .file_path(&self.root, now.to_datetime(), l.seq)
                .is_ok_and(|p| p.full() == l.unnumbered)
            {
                return Ok(l.path);
            }
        }
        let (place, _, n) = self.next_place(now.to_datetime())?;
        let free = (n..n + 8)
            .map(|n| place.numbered(n).full())
            .find(|p| !self.storage.is_open(p) && std::fs::symlink_metadata(p).is_err());
        Ok(free.unwrap_or_else(|| place.numbered(n).full()))
    }

    /// The name the pattern gives for this handler's current or next file, before
    /// any `-N`: two handlers must never share one.
    pub fn pattern_path(&self, now: UnixMicros) -> Option<PathBuf> {
        match &self.file {
            Some(f) => Some(f.unnumbered.clone()),
            None => self
                .next_place(now.to_datetime())
                .ok()
                .map(|(p, _, _)| p.full()),
        }
    }

    /// The root folder files are written under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file being written now, if one is open.
    pub fn current_file(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.file.path())
    }

    /// The file being written, described as a closed one would be (records not
    /// yet flushed included).
    pub fn open_file(&self) -> Option<OwnFile> {
        let f = self.file.as_ref()?;
        Some(OwnFile {
            path: f.file.path().to_path_buf(),
            trusted: PathBuf::new(),
            bytes: f.file.bytes() + self.pending.len() as u64,
            closed_at: std::time::SystemTime::now(),
            id: Some(f.file.identity()),
            span: Span {
                records: Some(f.file.earlier().records + f.file.records() + self.pending.records()),
                first_ts: f.first_ts,
                last_ts: f.last_ts,
            },
        })
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
fn sync(f: &mut PcapFile, handler: &str) {
    if let Err(e) = f.sync() {
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

impl Drop for Handler {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HandlerSpec, Origin};
    use pcap_file::pcap::PcapReader;
    use serde_json::json;
    use std::fs::File;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bsc-handler-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn handler(root: &Path, extra: serde_json::Value) -> Handler {
        let mut v = json!({"name": "t", "conn_type": "udp", "address": ["", 9]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        let spec = HandlerSpec::from_json(v.as_object().unwrap(), Origin::ConfigFile).unwrap();
        Handler::new(
            spec,
            root,
            UnixMicros(T0),
            None,
            Rc::new(Storage::open(root)),
        )
    }

    fn payloads(path: &Path) -> Vec<Vec<u8>> {
        let mut r = PcapReader::new(File::open(path).unwrap()).unwrap();
        let mut out = Vec::new();
        while let Some(p) = r.next_packet() {
            out.push(p.unwrap().data.into_owned());
        }
        out
    }

    const T0: i64 = 1_795_860_000_000_000; // 2026-11-28T10:00:00Z

    impl Handler {
        /// A unit read at `ts` with no kernel time and no peer.
        fn record_plain(&mut self, ts: UnixMicros, data: &[u8], orig_len: usize) -> Recorded {
            let unit = Unit {
                data,
                orig_len,
                read_at: ts.into(),
                kernel_at: None,
                peer: Peer::Unknown,
                stream: false,
            };
            self.record(&unit, &mut Gather::copying())
        }
    }

    #[test]
    fn per_second_series_and_recent_rate_from_one_ring() {
        let mut st = HandlerStats::new(UnixMicros(T0));
        let at = |s: i64| UnixMicros(T0 + s * 1_000_000 + 500_000);
        for s in 0..SERIES_S + 5 {
            // Second s sees s % 3 units of 100 bytes.
            for _ in 0..s % 3 {
                st.count(at(s), 100);
            }
        }
        let now = at(SERIES_S + 4);
        let series: Vec<(u32, u32)> = st.series(now).collect();
        assert_eq!(series.len(), SERIES_S as usize);
        // Oldest first: the first slot is second 5, the last is second 604.
        for (i, &(p, b)) in series.iter().enumerate() {
            let s = i as i64 + 5;
            assert_eq!((p, b), ((s % 3) as u32, (s % 3) as u32 * 100), "second {s}");
        }
        // Seconds 595..=604 hold 10 units of 100 bytes: 100 bytes/s.
        assert_eq!(st.recent_rate(now), 100.0);
        // Ten minutes later nothing is left; an old slot is never read as new.
        let later = at(2 * SERIES_S + 4);
        assert!(st.series(later).all(|x| x == (0, 0)));
        assert_eq!(st.recent_rate(later), 0.0);
        // Counts saturate instead of wrapping.
        st.count(later, u32::MAX as usize + 1);
        st.count(later, 10);
        assert_eq!(st.series(later).last(), Some((2, u32::MAX)));
        assert_eq!(std::mem::size_of::<SecondSlot>(), 16);
    }

    #[test]
    fn hourly_rotation_by_record_time_and_by_timer() {
        let root = temp_dir("hourly");
        let mut h = handler(
            &root,
            json!({"rotate_log_index": "hour", "file_name_pattern": "%H-%M-%S.pcap"}),
        );
        assert_eq!(h.log_file_path(UnixMicros(T0)), root.join("10-00-00.pcap"));
        let r = h.record_plain(UnixMicros(T0 + 1_000), b"a", 1);
        assert_eq!(
            r,
            Recorded {
                needs_flush: true,
                rotate_at: Some(UnixMicros(T0 + 3_600_000_000))
            }
        );
        assert!(!h.record_plain(UnixMicros(T0 + 2_000), b"b", 1).needs_flush);
        h.flush();
        // 10:59:59.9 still goes to the first file; 11:00:00 opens the next.
        h.record_plain(UnixMicros(T0 + 3_599_900_000), b"c", 1);
        let r = h.record_plain(UnixMicros(T0 + 3_600_000_000), b"d", 1);
        assert_eq!(r.rotate_at, Some(UnixMicros(T0 + 7_200_000_000)));
        h.flush();
        assert_eq!(payloads(&root.join("10-00-00.pcap")), [b"a", b"b", b"c"]);
        assert_eq!(payloads(&root.join("11-00-00.pcap")), [b"d"]);
        // The timer closes an idle file once its period is over, not before.
        assert!(!h.close_if_due(UnixMicros(T0 + 7_199_000_000)));
        assert!(h.close_if_due(UnixMicros(T0 + 7_200_000_000)));
        assert!(h.file.is_none());
        assert_eq!(
            h.log_file_path(UnixMicros(T0 + 7_300_000_000)),
            root.join("12-01-40.pcap")
        );
        assert_eq!(
            (h.stats.packets, h.stats.files_opened, h.stats.records_lost),
            (4, 2, 0)
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_clock_stepped_back_across_a_day_rotates_as_ait_does() {
        let root = temp_dir("stepback");
        let mut h = handler(
            &root,
            json!({"rotate_log_index": "hour", "file_name_pattern": "%d-%H.pcap"}),
        );
        h.record_plain(UnixMicros(T0), b"a", 1);
        h.record_plain(UnixMicros(T0 - 60_000_000), b"b", 1); // one minute back, same day: same file
        h.record_plain(UnixMicros(T0 - 86_400_000_000), b"c", 1); // a day back: new file
        h.flush();
        drop(h);
        assert_eq!(payloads(&root.join("28-10.pcap")), [b"a", b"b"]);
        assert_eq!(payloads(&root.join("27-10.pcap")), [b"c"]);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn rotate_log_false_keeps_one_file() {
        let root = temp_dir("norotate");
        let mut h = handler(
            &root,
            json!({"rotate_log": false, "file_name_pattern": "one.pcap"}),
        );
        assert_eq!(h.record_plain(UnixMicros(T0), b"a", 1).rotate_at, None);
        h.record_plain(UnixMicros(T0 + 400 * 86_400_000_000), b"b", 1);
        drop(h); // closing flushes
        assert_eq!(payloads(&root.join("one.pcap")), [b"a", b"b"]);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn an_unopenable_file_counts_losses_and_retries_after_a_second() {
        let root = temp_dir("blocked");
        std::fs::create_dir_all(&root).unwrap();
        // A plain file where the handler's folder should be.
        std::fs::write(root.join("sub"), b"x").unwrap();
        let mut h = handler(&root, json!({"path": "sub", "file_name_pattern": "f.pcap"}));
        h.record_plain(UnixMicros(T0), b"a", 1);
        h.record_plain(UnixMicros(T0 + 500_000), b"b", 1);
        assert_eq!((h.stats.write_errors, h.stats.records_lost), (1, 2));
        std::fs::remove_file(root.join("sub")).unwrap();
        h.record_plain(UnixMicros(T0 + 900_000), b"c", 1); // still inside the back-off
        h.record_plain(UnixMicros(T0 + 1_000_000), b"d", 1);
        h.flush();
        assert_eq!((h.stats.write_errors, h.stats.records_lost), (1, 3));
        assert_eq!(payloads(&root.join("sub/f.pcap")), [b"d"]);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn count_and_size_limits_rotate_into_new_names() {
        let root = temp_dir("limits");
        let mut h = handler(
            &root,
            json!({"rotate_max_packets": 3, "file_name_pattern": "x.pcap"}),
        );
        for i in 0..7u8 {
            h.record_plain(UnixMicros(T0 + i as i64), &[i; 10], 10);
        }
        h.flush();
        assert_eq!(payloads(&root.join("x.pcap")).len(), 3);
        assert_eq!(payloads(&root.join("x-1.pcap")).len(), 3);
        assert_eq!(payloads(&root.join("x-2.pcap")), [[6u8; 10]]);
        assert_eq!(h.stats.rotations_count, 2);

        // 24-byte header + two 26-byte records = 76: two records per file.
        let root2 = temp_dir("size");
        let mut h = handler(
            &root2,
            json!({"rotate_max_bytes": 76, "file_name_pattern": "{name}-{seq}.pcap"}),
        );
        for i in 0..5u8 {
            h.record_plain(UnixMicros(T0), &[i; 10], 10);
        }
        h.flush();
        let sizes: Vec<u64> = (1..=3)
            .map(|n| {
                std::fs::metadata(root2.join(format!("t-{n:04}.pcap")))
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(sizes, [76, 76, 50]);
        assert_eq!(h.stats.rotations_size, 2);

        // A limit below one record: each record alone, none lost.
        let mut h = handler(
            &root2,
            json!({"name": "tiny", "rotate_max_bytes": 10, "file_name_pattern": "{name}-{seq}.pcap"}),
        );
        for i in 0..3u8 {
            h.record_plain(UnixMicros(T0), &[i; 40], 40);
        }
        h.flush();
        for n in 1..=3 {
            assert_eq!(payloads(&root2.join(format!("tiny-{n:04}.pcap"))).len(), 1);
        }
        drop(h);
        std::fs::remove_dir_all(root).unwrap();
        std::fs::remove_dir_all(root2).unwrap();
    }

    #[test]
    fn forced_rotations_and_restarts_never_reopen_a_closed_file() {
        let root = temp_dir("forced");
        let mut h = handler(&root, json!({"file_name_pattern": "%H%M%S.pcap"}));
        h.record_plain(UnixMicros(T0), b"a", 1);
        h.rotate_now(UnixMicros(T0 + 100)).unwrap();
        h.record_plain(UnixMicros(T0 + 200), b"b", 1);
        h.rotate_now(UnixMicros(T0 + 300)).unwrap();
        h.record_plain(UnixMicros(T0 + 400), b"c", 1);
        assert_eq!(h.stats.rotations_forced, 2);
        drop(h);
        assert_eq!(payloads(&root.join("100000.pcap")), [b"a"]);
        assert_eq!(payloads(&root.join("100000-1.pcap")), [b"b"]);
        assert_eq!(payloads(&root.join("100000-2.pcap")), [b"c"]);
        // A new run in the same second: the closed files are final, numbering
        // goes on after the last.
        let mut h = handler(&root, json!({"file_name_pattern": "%H%M%S.pcap"}));
        assert_eq!(
            h.log_file_path(UnixMicros(T0 + 500)),
            root.join("100000-3.pcap")
        );
        h.record_plain(UnixMicros(T0 + 500), b"d", 1);
        drop(h);
        assert_eq!(payloads(&root.join("100000.pcap")), [b"a"]);
        assert_eq!(payloads(&root.join("100000-3.pcap")), [b"d"]);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_file_left_open_by_a_crash_is_resumed_or_closed() {
        let root = temp_dir("crash");
        let mut h = handler(&root, json!({"file_name_pattern": "%H.pcap"}));
        h.record_plain(UnixMicros(T0), b"a", 1);
        h.flush();
        // A crash: the handler vanishes without closing its file.
        std::mem::forget(h);
        let mut bytes = std::fs::read(root.join("10.pcap")).unwrap();
        bytes.extend_from_slice(&[1, 2, 3]); // a torn record
        std::fs::write(root.join("10.pcap"), &bytes).unwrap();
        // Same hour: the next run repairs and appends to it.
        let mut h = handler(&root, json!({"file_name_pattern": "%H.pcap"}));
        h.record_plain(UnixMicros(T0 + 1_000), b"b", 1);
        h.flush();
        std::mem::forget(h);
        assert_eq!(payloads(&root.join("10.pcap")), [b"a", b"b"]);
        // Next hour: the leftover is repaired, closed and final; the unit goes to
        // the hour's file.
        let mut h = handler(&root, json!({"file_name_pattern": "%H.pcap"}));
        h.record_plain(UnixMicros(T0 + 3_600_000_000), b"c", 1);
        let closed = h.storage.take_closed();
        assert_eq!(closed.len(), 1, "handed to on_close once");
        assert_eq!(closed[0].path, root.join("10.pcap"));
        drop(h);
        assert_eq!(payloads(&root.join("10.pcap")), [b"a", b"b"]);
        assert_eq!(payloads(&root.join("11.pcap")), [b"c"]);
        let mode = std::fs::metadata(root.join("10.pcap"))
            .unwrap()
            .permissions();
        assert!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o200 == 0);
        std::fs::remove_dir_all(root).unwrap();
    }
}
