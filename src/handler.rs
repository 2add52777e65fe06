//! One handler: a named output stream of a capturer, with its own file pattern,
//! rotation rule, statistics, open PCAP file and pending-record buffer.
//!
//! The write path: [`Handler::record`] appends an encoded record to `pending` (no
//! syscall); the event loop calls [`Handler::flush`] once per wake-up, which writes
//! the whole buffer with one `write`, before the loop polls again. So the kernel
//! has every record the process has read before bsc sleeps, and a `kill -9` loses
//! nothing already read.
//!
//! Files are opened when a unit arrives (never empty files for idle links) and
//! closed when their rotation period ends (by the next unit or by the event loop's
//! timer, whichever comes first), when the next record would take them past
//! `rotate_max_bytes`, when they hold `rotate_max_packets` records, or on request.
//!
//! Naming: a handler's first file may be an existing file, which is appended to
//! (a restart lands on the file it was writing, as AIT does). Every later file is
//! a new one: if the pattern gives a name that exists, `-1`, `-2`, ... is inserted
//! before the extension.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Instant, SystemTime};

use crate::clock::UnixMicros;
use crate::config::{ConnType, Direction, HandlerSpec, Timestamps, Transform};
use crate::ipudp;
use crate::log::{self, Level};
use crate::pcap::{self, LinkType, Opened};
use crate::storage::{excess, ClosedFile, OwnFile, Retention, Storage};
use crate::sys::{Peer, PACKET_OUTGOING};
use crate::{info, warn};

/// How long a handler waits after failing to open a file before trying again
/// (units arriving meanwhile are counted as lost).
const OPEN_RETRY_US: i64 = 1_000_000;

/// Counters of one handler since it started.
#[derive(Clone, Debug)]
pub struct HandlerStats {
    /// Units received (AIT's `reads`).
    pub packets: u64,
    /// Payload bytes received (AIT's `data_read_length`).
    pub bytes: u64,
    pub files_opened: u64,
    /// Failed opens or writes.
    pub write_errors: u64,
    /// Units received but not on disk because of write errors.
    pub records_lost: u64,
    /// Units longer than the snaplen, written cut (orig_len keeps the length).
    pub truncated: u64,
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
    /// Bytes received per second over the last [`RATE_WINDOW_S`] seconds, as
    /// (second, bytes) slots indexed by second modulo the window.
    window: [(i64, u64); RATE_WINDOW_S as usize],
}

/// Seconds over which `rate_bytes_per_s` is averaged.
pub const RATE_WINDOW_S: i64 = 10;

impl HandlerStats {
    fn new(now: UnixMicros) -> HandlerStats {
        HandlerStats {
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
            window: [(i64::MIN, 0); RATE_WINDOW_S as usize],
        }
    }

    fn count(&mut self, ts: UnixMicros, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
        self.last_packet_at = Some(ts);
        let sec = ts.secs();
        let slot = &mut self.window[sec.rem_euclid(RATE_WINDOW_S) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 += bytes as u64;
    }

    /// Bytes per second received over the last [`RATE_WINDOW_S`] seconds up to
    /// `now` (over the handler's age if it is younger). Never divides by zero.
    pub fn recent_rate(&self, now: UnixMicros) -> f64 {
        let sec = now.secs();
        let total: u64 = self
            .window
            .iter()
            .filter(|(s, _)| *s > sec - RATE_WINDOW_S && *s <= sec)
            .map(|(_, b)| b)
            .sum();
        let age = (sec - self.started_at.secs() + 1).clamp(1, RATE_WINDOW_S);
        total as f64 / age as f64
    }

    /// Bytes per second since the handler started (AIT's `approx_data_rate`).
    pub fn lifetime_rate(&self, now: UnixMicros) -> f64 {
        let secs = (now.0 - self.started_at.0) as f64 / 1e6;
        if secs <= 0.0 {
            0.0
        } else {
            self.bytes as f64 / secs
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
    file: File,
    path: PathBuf,
    opened_at: UnixMicros,
    /// When its rotation period ends (`None` when `rotate_log` is false).
    rotate_at: Option<UnixMicros>,
    /// Bytes on disk: header and whole records only. A failed write is cut back to it.
    len: u64,
    records: u64,
    /// Whether bsc created (and journaled) this file: retention may delete it.
    created: bool,
    first_ts: Option<UnixMicros>,
    last_ts: Option<UnixMicros>,
    /// When data written to the file was last forced to the disk.
    synced_at: Instant,
    unsynced: bool,
}

/// One received unit, as a capturer hands it to each of its handlers.
#[derive(Copy, Clone, Debug)]
pub struct Unit<'a> {
    /// The bytes captured.
    pub data: &'a [u8],
    /// The unit's real length (more than `data` when the source had to cut it).
    pub orig_len: usize,
    /// When bsc read it.
    pub read_at: UnixMicros,
    /// When the kernel received it, if the source reports that.
    pub kernel_at: Option<UnixMicros>,
    pub peer: Peer,
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
    pub spec: HandlerSpec,
    root: PathBuf,
    link: LinkType,
    /// The capturer's local address (destination of `record_source` headers).
    local: Option<SocketAddr>,
    file: Option<CurrentFile>,
    pending: Vec<u8>,
    pending_records: u64,
    /// After a failed open or write, no new attempt before this instant.
    retry_open_at: Option<UnixMicros>,
    pub stats: HandlerStats,
    /// The journal and the closed-file outbox.
    storage: Rc<Storage>,
    /// Closed files this handler created, oldest first (for retention).
    own_files: VecDeque<OwnFile>,
    /// Whether created files are journaled and remembered: only when retention
    /// or the disk budget may delete them (otherwise the list would only grow).
    tracked: bool,
    /// Why writing fails, while it does (cleared by the next successful write).
    pub degraded: Option<String>,
    /// Set by the disk budget: units are counted as lost instead of written.
    pub suspended: bool,
}

impl Handler {
    /// A handler writing under `root`; it opens no file until its first unit.
    /// `local` is the address its capturer's socket is bound to, if any.
    /// `storage` is shared with the manager; `earlier` lists the files this handler
    /// created in earlier runs (from the journal), for retention. With `budget`
    /// (a disk budget is set) or retention limits, created files are tracked.
    pub fn new(
        spec: HandlerSpec,
        root: &Path,
        now: UnixMicros,
        local: Option<SocketAddr>,
        storage: Rc<Storage>,
        earlier: Vec<PathBuf>,
        budget: bool,
    ) -> Handler {
        let tracked = budget
            || spec.max_files.is_some()
            || spec.max_bytes.is_some()
            || spec.max_age.is_some();
        let mut own_files: Vec<OwnFile> = earlier
            .into_iter()
            .filter_map(|path| {
                let m = std::fs::metadata(&path).ok()?;
                Some(OwnFile {
                    bytes: m.len(),
                    closed_at: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    path,
                })
            })
            .collect();
        own_files.sort_by_key(|f| f.closed_at);
        let link = match (spec.conn_type, spec.record_source, local) {
            (ConnType::Ethernet, _, _) => LinkType::Ethernet,
            (ConnType::Udp, true, Some(SocketAddr::V6(_))) => LinkType::Ipv6,
            (ConnType::Udp, true, _) => LinkType::Ipv4,
            // record_source is refused for tcp by the config loader.
            (ConnType::Udp, false, _) | (ConnType::Tcp, _, _) => LinkType::User0,
        };
        Handler {
            spec,
            root: root.to_path_buf(),
            link,
            local,
            file: None,
            pending: Vec::new(),
            pending_records: 0,
            retry_open_at: None,
            stats: HandlerStats::new(now),
            storage,
            own_files: own_files.into(),
            tracked,
            degraded: None,
            suspended: false,
        }
    }

    /// The handler's key in the journal: its name and address.
    pub fn journal_key(&self) -> String {
        format!("{}@{}", self.spec.name, self.spec.address.python_repr())
    }

    /// Takes one received unit. Returns what the manager must arrange (a flush,
    /// a rotation timer). Outgoing Ethernet frames are skipped with `direction: in`.
    pub fn record(&mut self, unit: &Unit) -> Recorded {
        if self.spec.direction == Direction::In
            && unit.peer
                == (Peer::Packet {
                    pkttype: PACKET_OUTGOING,
                })
        {
            return Recorded::default();
        }
        let ts = match (self.spec.timestamps, unit.kernel_at) {
            (Timestamps::Kernel, Some(k)) => k,
            _ => unit.read_at,
        };
        let source = match (self.link, unit.peer) {
            (LinkType::Ipv4 | LinkType::Ipv6, Peer::Inet(src)) => Some(src),
            _ => None,
        };
        if self.suspended {
            self.stats.count(ts, unit.orig_len);
            self.stats.records_lost += 1;
            return Recorded::default();
        }
        self.record_at(ts, unit.data, unit.orig_len, source)
    }

    /// Records `payload` (really `orig_len` long) stamped `ts`, behind synthesized
    /// IP/UDP headers from `source` when the handler records sources.
    fn record_at(
        &mut self,
        ts: UnixMicros,
        payload: &[u8],
        orig_len: usize,
        source: Option<SocketAddr>,
    ) -> Recorded {
        self.stats.count(ts, orig_len);
        let mut outcome = Recorded::default();
        let mut data = payload;
        for t in &self.spec.pre_write_transforms {
            data = match t {
                Transform::Identity => data,
            };
        }
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
        }
        if headers + data.len() > pcap::SNAPLEN as usize || orig_len > data.len() {
            self.stats.truncated += 1;
        }
        outcome.needs_flush = self.pending.is_empty();
        if let Some(f) = self.file.as_mut() {
            f.first_ts.get_or_insert(ts);
            f.last_ts = Some(ts);
        }
        if headers == 0 {
            pcap::encode_record(&mut self.pending, ts, data, orig_len.max(data.len()));
        } else {
            let unspecified = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0);
            let src = source.unwrap_or(unspecified);
            let dst = self.local.unwrap_or(unspecified);
            pcap::record_header(
                &mut self.pending,
                ts,
                captured,
                headers + orig_len.max(data.len()),
            );
            ipudp::write_headers(&mut self.pending, src, dst, data);
            self.pending.extend_from_slice(&data[..captured - headers]);
        }
        self.pending_records += 1;
        outcome
    }

    /// Whether `f` must be closed before a record of `next_len` bytes stamped `now`
    /// is written, and why.
    fn rotation_due(&self, f: &CurrentFile, now: UnixMicros, next_len: u64) -> Option<Rotation> {
        if self.period_ended(f, now) {
            return Some(Rotation::Calendar);
        }
        let records = f.records + self.pending_records;
        if self
            .spec
            .rotate_max_packets
            .is_some_and(|max| records >= max)
        {
            return Some(Rotation::Count);
        }
        let bytes = f.len + self.pending.len() as u64;
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

    /// The path the next file opened at `t` gets (see the module doc on naming).
    fn next_path(&self, t: time::OffsetDateTime) -> Result<PathBuf, String> {
        let seq = self.stats.files_opened + 1;
        let base = self
            .spec
            .file_path(&self.root, t, seq)
            .map_err(|e| format!("cannot name its file: {e}"))?;
        if self.stats.files_opened == 0 || !base.exists() {
            return Ok(base);
        }
        (1..=100_000)
            .map(|n| pcap::numbered(&base, n))
            .find(|p| !p.exists())
            .ok_or_else(|| format!("{} and 100000 numbered variants exist", base.display()))
    }

    /// Opens the file for a unit at `ts`. Returns its rotation deadline, or why it
    /// could not be opened (already logged and counted).
    fn open(&mut self, ts: UnixMicros) -> Result<Option<UnixMicros>, String> {
        let t = ts.to_datetime();
        let opened = self
            .next_path(t)
            .and_then(|path| pcap::open_or_append(&path, self.link).map_err(|e| e.to_string()));
        let opened = match opened {
            Ok(o) => o,
            Err(why) => {
                self.open_failed(ts, &why);
                return Err(why);
            }
        };
        match &opened.how {
            Opened::Created => info!(
                "handler {}: opened {}",
                self.spec.name,
                opened.path.display()
            ),
            Opened::Appended { torn_bytes: 0 } => info!(
                "handler {}: appending to {}",
                self.spec.name,
                opened.path.display()
            ),
            Opened::Appended { torn_bytes } => warn!(
                "handler {}: appending to {} after cutting a torn last record ({torn_bytes} bytes)",
                self.spec.name,
                opened.path.display()
            ),
            Opened::Renamed { original, reason } => warn!(
                "handler {}: not writing into {} ({reason}); using {} instead",
                self.spec.name,
                original.display(),
                opened.path.display()
            ),
        }
        let rotate_at = self
            .spec
            .rotation
            .map(|r| UnixMicros::from_datetime(r.next_rotation(t)));
        if opened.created && self.tracked {
            self.storage.created(&self.journal_key(), &opened.path);
            // The new directory entry must survive a power cut too.
            if let Some(dir) = opened.path.parent().and_then(|d| File::open(d).ok()) {
                let _ = dir.sync_all();
            }
        }
        self.file = Some(CurrentFile {
            file: opened.file,
            path: opened.path,
            opened_at: ts,
            rotate_at,
            len: opened.len,
            records: 0,
            created: opened.created && self.tracked,
            first_ts: None,
            last_ts: None,
            synced_at: Instant::now(),
            unsynced: false,
        });
        self.retry_open_at = None;
        self.stats.files_opened += 1;
        self.enforce_retention();
        Ok(rotate_at)
    }

    /// `POST /<name>/rotate`: closes the current file and opens the next one now.
    /// Returns the new file's rotation deadline, or why it could not be opened.
    pub fn rotate_now(&mut self, now: UnixMicros) -> Result<Option<UnixMicros>, String> {
        self.rotate(Rotation::Forced);
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

    /// Writes every pending record to the current file with one `write` (looping
    /// only on short writes), and forces the file to the disk when
    /// `fsync_interval_s` has passed since it last was.
    ///
    /// On a write error (a full disk, an I/O error, a removed folder) the file is
    /// cut back to its last whole record, the pending records are counted as lost,
    /// the handler is `degraded`, and the file is closed: the first unit a second
    /// or more later reopens (and repairs) it or a new one.
    /// Returns the number of bytes written.
    pub fn flush(&mut self) -> u64 {
        if self.pending.is_empty() {
            return 0;
        }
        let Some(f) = self.file.as_mut() else {
            // Records are only encoded while a file is open.
            self.pending.clear();
            self.pending_records = 0;
            return 0;
        };
        let mut written = 0;
        match write_all(&mut f.file, &self.pending) {
            Ok(()) => {
                written = self.pending.len() as u64;
                f.len += self.pending.len() as u64;
                f.records += self.pending_records;
                f.unsynced = true;
                if let Some(why) = self.degraded.take() {
                    info!(
                        "handler {}: writing again ({} after: {why})",
                        self.spec.name,
                        f.path.display()
                    );
                }
                if self
                    .spec
                    .fsync_interval
                    .is_some_and(|every| f.synced_at.elapsed() >= every)
                {
                    sync(f, &self.spec.name);
                }
            }
            Err(e) => {
                self.stats.write_errors += 1;
                self.stats.records_lost += self.pending_records;
                let cut = f.file.set_len(f.len);
                let why = format!("write to {} failed: {e}", f.path.display());
                let key = format!("write {}", self.spec.name);
                log::limited(
                    &key,
                    Level::Error,
                    format_args!(
                        "handler {}: {why}; {} records lost{}; retrying in 1 s",
                        self.spec.name,
                        self.pending_records,
                        match cut {
                            Ok(()) => String::new(),
                            Err(e) => format!("; could not cut the partial write off ({e}): it will be repaired when reopened"),
                        }
                    ),
                );
                self.retry_open_at = f.last_ts.map(|t| t.plus_micros(OPEN_RETRY_US));
                self.degraded = Some(why);
                self.file = None;
            }
        }
        self.pending.clear();
        self.pending_records = 0;
        written
    }

    /// Flushes, forces to the disk and closes the current file, if any; hands it
    /// to the outbox (for `on_close`) and, if bsc created it, to retention.
    pub fn close(&mut self) {
        self.flush();
        let Some(mut f) = self.file.take() else {
            return;
        };
        if f.unsynced {
            sync(&mut f, &self.spec.name);
        }
        info!(
            "handler {}: closed {} ({} records, {} bytes)",
            self.spec.name,
            f.path.display(),
            f.records,
            f.len
        );
        self.storage.closed(ClosedFile {
            handler: self.spec.name.clone(),
            on_close: self.spec.on_close.clone(),
            path: f.path.clone(),
            records: f.records,
            bytes: f.len,
            first_ts: f.first_ts,
            last_ts: f.last_ts,
        });
        if f.created {
            self.own_files.push_back(OwnFile {
                path: f.path,
                bytes: f.len,
                closed_at: SystemTime::now(),
            });
            self.enforce_retention();
        }
    }

    /// Once a second: forces data written more than `fsync_interval_s` ago to the
    /// disk (even on an idle link), and applies `max_age`.
    pub fn maintain(&mut self) {
        if let (Some(every), Some(f)) = (self.spec.fsync_interval, self.file.as_mut()) {
            if f.unsynced && f.synced_at.elapsed() >= every {
                sync(f, &self.spec.name);
            }
        }
        if self.spec.max_age.is_some() {
            self.enforce_retention();
        }
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
            .map(|f| f.len + self.pending.len() as u64);
        let n = excess(
            self.own_files.make_contiguous(),
            open,
            &r,
            SystemTime::now(),
        );
        for _ in 0..n {
            if let Some(old) = self.own_files.pop_front() {
                self.delete(&old, "retention");
            }
        }
    }

    /// Deletes one of this handler's closed files (retention or the disk budget).
    pub fn delete(&mut self, file: &OwnFile, why: &str) {
        match std::fs::remove_file(&file.path) {
            Ok(()) => {
                info!(
                    "handler {}: deleted {} ({} bytes, {why})",
                    self.spec.name,
                    file.path.display(),
                    file.bytes
                );
                self.stats.files_deleted += 1;
                self.storage.deleted(&file.path);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.storage.deleted(&file.path),
            Err(e) => warn!(
                "handler {}: cannot delete {}: {e}",
                self.spec.name,
                file.path.display()
            ),
        }
    }

    /// The oldest closed file this handler created, if any.
    pub fn oldest_own_file(&self) -> Option<&OwnFile> {
        self.own_files.front()
    }

    /// Deletes the oldest closed file this handler created (the disk budget).
    pub fn delete_oldest(&mut self, why: &str) -> bool {
        match self.own_files.pop_front() {
            Some(old) => {
                self.delete(&old, why);
                true
            }
            None => false,
        }
    }

    /// Closes the current file if its rotation period has ended by `now`. Returns
    /// whether it did.
    pub fn close_if_due(&mut self, now: UnixMicros) -> bool {
        let due = self
            .file
            .as_ref()
            .is_some_and(|f| self.period_ended(f, now));
        if due {
            self.rotate(Rotation::Calendar);
        }
        due
    }

    /// The file being written, or the one the next unit would be written to.
    pub fn log_file_path(&self, now: UnixMicros) -> PathBuf {
        match &self.file {
            Some(f) => f.path.clone(),
            None => self.next_path(now.to_datetime()).unwrap_or_default(),
        }
    }

    /// The root folder files are written under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file being written now, if one is open.
    pub fn current_file(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }

    /// Bytes in the current file, records not yet flushed included.
    pub fn current_file_bytes(&self) -> u64 {
        self.file
            .as_ref()
            .map_or(0, |f| f.len + self.pending.len() as u64)
    }
}

/// Forces a file's data to the disk (`fdatasync`), logging a failure.
fn sync(f: &mut CurrentFile, handler: &str) {
    if let Err(e) = f.file.sync_data() {
        let key = format!("sync {handler}");
        log::limited(
            &key,
            Level::Error,
            format_args!(
                "handler {handler}: fsync of {} failed: {e}",
                f.path.display()
            ),
        );
    }
    f.synced_at = Instant::now();
    f.unsynced = false;
}

fn write_all(file: &mut File, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write(buf) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
        let (storage, _) = Storage::open(root);
        Handler::new(
            spec,
            root,
            UnixMicros(0),
            None,
            Rc::new(storage),
            Vec::new(),
            false,
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
            self.record(&Unit {
                data,
                orig_len,
                read_at: ts,
                kernel_at: None,
                peer: Peer::Unknown,
            })
        }
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
    fn forced_rotations_in_one_second_give_new_files_and_a_restart_appends() {
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
        // A new run in the same second: its first file appends, as AIT does.
        let mut h = handler(&root, json!({"file_name_pattern": "%H%M%S.pcap"}));
        h.record_plain(UnixMicros(T0 + 500), b"d", 1);
        drop(h);
        assert_eq!(payloads(&root.join("100000.pcap")), [b"a", b"d"]);
        std::fs::remove_dir_all(root).unwrap();
    }
}
