//! A handler's counters and its per-second history (`GET /stats`, `GET /series`).

use crate::clock::UnixMicros;

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
    pub(super) fn new(now: UnixMicros) -> HandlerStats {
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

    #[inline]
    pub(super) fn count(&mut self, ts: UnixMicros, bytes: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_860_000_000_000; // 2026-11-28T10:00:00Z

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
}
