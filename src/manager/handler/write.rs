//! The write path of a handler: a unit becomes a pending record (headers and
//! references into the receive slots, no syscall), rotation is decided before
//! each record, and the pending records go to the file with one gathering
//! `writev` per batch that they refer to (else per drain, or per
//! [`FLUSH_AT`] bytes).

use super::*;

impl Handler {
    /// Takes one received unit. Returns what the manager must arrange (a flush,
    /// a rotation timer). Outgoing Ethernet frames are skipped with `direction: in`.
    pub(in crate::manager) fn record<'b>(
        &mut self,
        unit: &Unit<'b>,
        gather: &mut Gather<'b>,
        cx: &mut Cx,
    ) -> Recorded {
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
        let source = match (self.output.link, unit.peer) {
            (LinkType::Ipv4 | LinkType::Ipv6, Peer::Inet(src)) => Some(src),
            _ => None,
        };
        if let Some(mut units) = self.units.take() {
            let outcome = self.record_units(cx, &mut units, unit, at, source, gather);
            self.units = Some(units);
            return outcome;
        }
        if self.health.suspended {
            self.stats.count(ts, unit.orig_len);
            self.stats.records_lost += 1;
            return Recorded::default();
        }
        self.stats.count(ts, unit.orig_len);
        self.write_record(cx, at, unit.data, unit.orig_len, source, unit.data, gather)
    }

    /// Records the units `units` cuts `unit` into, each stamped `at` (the read
    /// that completed it); see [`crate::manager::unit_path`].
    fn record_units<'b>(
        &mut self,
        cx: &mut Cx,
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
            crate::units::framing::Framing::None => unit.orig_len.saturating_sub(unit.data.len()),
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
            if self.health.suspended {
                self.stats.records_lost += 1;
                return;
            }
            let r = self.write_record(cx, at, data, data.len() + cut, source, unit.data, gather);
            outcome.needs_flush |= r.needs_flush;
            outcome.rotate_at = r.rotate_at.or(outcome.rotate_at);
        });
        outcome
    }

    /// Takes `data` (really `orig_len` long) as one record stamped `at` (at the
    /// handler's `timestamp_precision`), behind synthesized IP/UDP headers from
    /// `source` when the handler records sources, rotating or opening a file
    /// first if due; counts nothing but failures. `data` is referred to in
    /// `gather`, not copied, if it lies in `within` (the unit as it arrived)
    /// and is not short ([`crate::manager::pending::COPY_BELOW`]).
    #[allow(clippy::too_many_arguments)]
    fn write_record<'b>(
        &mut self,
        cx: &mut Cx,
        at: UnixNanos,
        data: &[u8],
        orig_len: usize,
        source: Option<SocketAddr>,
        within: &'b [u8],
        gather: &mut Gather<'b>,
    ) -> Recorded {
        if let Some(relay) = self.relay.as_mut() {
            relay.offer(data);
        }
        let ts = at.micros();
        let precision = self.spec.timestamp_precision;
        let mut outcome = Recorded::default();
        let headers = match self.output.link {
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
            self.flush_from(cx, gather);
            self.rotate(cx, reason);
        }
        if self.file.is_none() {
            if self.health.retry_open_at.is_some_and(|t| ts < t) {
                self.stats.records_lost += 1;
                return outcome;
            }
            match self.open_for(cx, ts, record_len) {
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
            f.note_bounds(ts);
            if let Some(index) = f.index.as_mut() {
                index.note(f.file.bytes() + self.pending.len() as u64, at);
            }
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
            let dst = self.output.local.unwrap_or(unspecified);
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
            self.flush_from(cx, gather);
            self.rotate(cx, Rotation::Count);
        }
        outcome
    }

    /// Opens the file a record of `record_len` bytes stamped `ts` goes to, and
    /// its rotation deadline. A resumed file may be full already (a crash
    /// between its last record and its close, or a lower limit since): it is
    /// closed, and the record goes to the next (new, so never full) file.
    fn open_for(
        &mut self,
        cx: &mut Cx,
        ts: UnixMicros,
        record_len: u64,
    ) -> Result<Option<UnixMicros>, String> {
        let rotate_at = self.open(cx, ts)?;
        match self
            .file
            .as_ref()
            .and_then(|f| self.rotation_due(f, ts, record_len))
        {
            Some(reason) => {
                self.rotate(cx, reason);
                self.open(cx, ts)
            }
            None => Ok(rotate_at),
        }
    }

    /// Bytes waiting to be written in the handler's own buffer (headers, and
    /// units that had to be copied): what a burst makes it hold.
    pub(in crate::manager) fn pending_own_bytes(&self) -> usize {
        self.pending.own_len()
    }

    /// Whether `f` must be closed before a record of `next_len` bytes stamped `now`
    /// is written, and why.
    #[inline]
    pub(super) fn rotation_due(
        &self,
        f: &CurrentFile,
        now: UnixMicros,
        next_len: u64,
    ) -> Option<Rotation> {
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
    pub(super) fn rotate(&mut self, cx: &mut Cx, reason: Rotation) {
        self.close(cx);
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
    #[inline]
    pub(super) fn period_ended(&self, f: &CurrentFile, now: UnixMicros) -> bool {
        match (f.rotate_at, self.spec.rotation) {
            (Some(end), Some(rule)) => {
                now >= end
                    || (now < f.opened_at
                        && rule.is_due(f.opened_at.to_datetime(), now.to_datetime()))
            }
            _ => false,
        }
    }

    /// Writes every pending record to the current file (see `Handler::flush_from`);
    /// outside a drain, when no record refers to the receive slots.
    pub(in crate::manager) fn flush(&mut self, cx: &mut Cx) -> u64 {
        self.flush_from(cx, &mut Gather::copying())
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
    pub(in crate::manager) fn flush_from(&mut self, cx: &mut Cx, gather: &mut Gather<'_>) -> u64 {
        self.health.pending_peak = self.health.pending_peak.max(self.pending.own_len());
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
                if let Some(why) = self.health.degraded.take() {
                    info!(
                        "handler {}: writing again ({} after: {why})",
                        self.spec.name,
                        f.file.path().display()
                    );
                }
                if self
                    .spec
                    .fsync_interval
                    .is_some_and(|every| f.file.sync_due(every, cx.now))
                {
                    sync(&mut f.file, &self.spec.name, cx.now);
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
                self.health.retry_open_at = f.last_ts.map(|t| t.plus_micros(OPEN_RETRY_US));
                self.health.degraded = Some(why);
                self.close(cx);
            }
        }
        written
    }

    /// Closes the current file if its rotation period has ended by `now`. Returns
    /// whether it did.
    pub(in crate::manager) fn close_if_due(&mut self, cx: &mut Cx) -> bool {
        let now = cx.now;
        let due = self
            .file
            .as_ref()
            .is_some_and(|f| self.period_ended(f, now));
        if due {
            self.rotate(cx, Rotation::Calendar);
        }
        due
    }
}
