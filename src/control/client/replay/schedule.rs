//! When each record is due (pure: instants in, instants out), and how late
//! the sends were.
//!
//! A record stamped `ts` is due at `start + (ts - first) / speed` on the
//! monotonic clock, where `first` is the first record's stamp and `start`
//! the instant it was sent: every deadline comes from the first record, never
//! from the previous send, so lateness does not add up. A pause moves
//! `start` by the time paused ([`Schedule::shift`]), so what follows keeps its
//! spacing instead of bursting. With `--loop`, the next pass's first record is
//! due one mean record spacing of the pass after its last
//! ([`Schedule::next_pass`]).

/// Nanoseconds on the monotonic clock.
pub type Mono = u64;

/// The deadlines of one replay.
#[derive(Debug)]
pub struct Schedule {
    /// `None`: as fast as the target takes it.
    speed: Option<f64>,
    /// The stamp of the pass's first record and the instant it is due.
    anchor: Option<(i128, Mono)>,
    /// When the next pass starts (after `--loop`): its first record's due time.
    resume_at: Option<Mono>,
    /// The latest due time handed out in this pass.
    last_due: Mono,
    /// This pass's records: count, first and last stamps.
    pass: Option<(u64, i128, i128)>,
}

impl Schedule {
    /// `speed`: the factor the recorded spacing is divided by, `None` for max.
    pub fn new(speed: Option<f64>) -> Schedule {
        Schedule {
            speed,
            anchor: None,
            resume_at: None,
            last_due: 0,
            pass: None,
        }
    }

    /// When the record stamped `ts` (ns since the epoch) is due; the first
    /// record of a pass is due `now` (or when the previous pass said). `None`
    /// at max speed.
    pub fn due(&mut self, ts: i128, now: Mono) -> Option<Mono> {
        self.pass = Some(match self.pass {
            None => (1, ts, ts),
            Some((n, lo, hi)) => (n + 1, lo.min(ts), hi.max(ts)),
        });
        let speed = self.speed?;
        let (first, start) = *self
            .anchor
            .get_or_insert_with(|| (ts, self.resume_at.take().unwrap_or(now)));
        let offset = ((ts - first) as f64 / speed) as i128;
        let due = (start as i128)
            .saturating_add(offset)
            .clamp(0, Mono::MAX as i128) as Mono;
        self.last_due = self.last_due.max(due);
        Some(due)
    }

    /// A pause of `by` nanoseconds: every deadline still to come moves by it.
    pub fn shift(&mut self, by: Mono) {
        if let Some((_, start)) = &mut self.anchor {
            *start = start.saturating_add(by);
        }
        if let Some(at) = &mut self.resume_at {
            *at = at.saturating_add(by);
        }
        self.last_due = self.last_due.saturating_add(by);
    }

    /// The pass ended (`--loop`): the next starts one gap after its last
    /// record's due time. The gap is the pass's mean record spacing (its
    /// span over its records less one; 1 s for a single record or records
    /// all stamped alike, which would otherwise loop with no pause at all),
    /// divided by the speed, so a steady stream goes on steadily.
    pub fn next_pass(&mut self) {
        let gap_ns = match self.pass.take() {
            Some((n, lo, hi)) if n > 1 && hi > lo => ((hi - lo) / (n as i128 - 1)) as f64,
            _ => 1e9,
        };
        if let Some(speed) = self.speed {
            if self.anchor.is_some() {
                self.resume_at = Some(self.last_due.saturating_add((gap_ns / speed) as Mono));
            }
        }
        self.anchor = None;
    }
}

/// How late sends were against their deadlines: a histogram (10 us steps
/// below 1 ms, 1 ms steps below 1 s) for quantiles in constant memory.
#[derive(Debug)]
pub struct Lag {
    fine: [u64; 100],
    coarse: [u64; 1000],
    count: u64,
    max: Mono,
}

impl Default for Lag {
    fn default() -> Lag {
        Lag {
            fine: [0; 100],
            coarse: [0; 1000],
            count: 0,
            max: 0,
        }
    }
}

impl Lag {
    /// One send `late` nanoseconds after its deadline.
    pub fn note(&mut self, late: Mono) {
        let us = late / 1000;
        if us < 1000 {
            self.fine[(us / 10) as usize] += 1;
        } else {
            self.coarse[((us / 1000) as usize).min(999)] += 1;
        }
        self.count += 1;
        self.max = self.max.max(late);
    }

    /// Sends noted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest lateness, ns.
    pub fn max(&self) -> Mono {
        self.max
    }

    /// The `q` quantile's upper bound in ns (within 10 us below 1 ms, 1 ms
    /// above; a lateness over 1 s counts as 1 s).
    pub fn quantile(&self, q: f64) -> Mono {
        let rank = ((self.count as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.fine.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return ((i as Mono + 1) * 10_000).min(self.max);
            }
        }
        for (i, n) in self.coarse.iter().enumerate() {
            seen += n;
            if seen >= rank && i < 999 {
                return ((i as Mono + 1) * 1_000_000).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i128 = 1_000_000;

    #[test]
    fn deadlines_come_from_the_first_record() {
        let mut s = Schedule::new(Some(1.0));
        assert_eq!(s.due(5000 * MS, 100), Some(100));
        // However late "now" is, the deadline does not move.
        assert_eq!(s.due(5001 * MS, 99_000_000), Some(100 + 1_000_000));
        assert_eq!(s.due(5003 * MS, 0), Some(100 + 3_000_000));
        // A record stamped before the first is due at once.
        assert_eq!(s.due(4000 * MS, 0), Some(0));
        let mut fast = Schedule::new(Some(4.0));
        fast.due(0, 0);
        assert_eq!(fast.due(1000 * MS, 0), Some(250_000_000));
        let mut slow = Schedule::new(Some(0.5));
        slow.due(0, 10);
        assert_eq!(slow.due(MS, 0), Some(2_000_010));
        let mut max = Schedule::new(None);
        assert_eq!(max.due(0, 5), None);
    }

    #[test]
    fn a_pause_moves_what_is_still_to_come() {
        let mut s = Schedule::new(Some(1.0));
        s.due(0, 1000);
        s.due(10 * MS, 0);
        s.shift(3_000_000_000);
        assert_eq!(s.due(20 * MS, 0), Some(1000 + 20_000_000 + 3_000_000_000));
    }

    #[test]
    fn a_loop_goes_on_at_the_mean_spacing() {
        let mut s = Schedule::new(Some(2.0));
        for i in 0..5 {
            s.due(i * 10 * MS, 0);
        }
        // The last record was due at 20 ms (40 ms of record at speed 2);
        // the gap is 10 ms of record, 5 ms at speed 2.
        s.next_pass();
        assert_eq!(s.due(0, 999_999_999), Some(25_000_000));
        assert_eq!(s.due(10 * MS, 0), Some(30_000_000));
        // One record: one second (of record) apart.
        let mut one = Schedule::new(Some(1.0));
        one.due(7 * MS, 0);
        one.next_pass();
        assert_eq!(one.due(7 * MS, 0), Some(1_000_000_000));
        // A pause before the next pass starts moves it too.
        one.next_pass();
        one.shift(5);
        assert_eq!(one.due(7 * MS, 0), Some(2_000_000_005));
        // Records all stamped alike: a second (of record) between passes,
        // at the speed asked, not a pass after a pass with no pause.
        let mut same = Schedule::new(Some(0.5));
        for _ in 0..3 {
            same.due(7 * MS, 0);
        }
        same.next_pass();
        assert_eq!(same.due(7 * MS, 0), Some(2_000_000_000));
    }

    #[test]
    fn lag_quantiles() {
        let mut lag = Lag::default();
        assert_eq!(lag.quantile(0.99), 0);
        for _ in 0..98 {
            lag.note(5_000);
        }
        lag.note(250_000);
        lag.note(3_500_000);
        assert_eq!(lag.count(), 100);
        assert_eq!(lag.quantile(0.5), 10_000);
        assert_eq!(lag.quantile(0.99), 260_000);
        assert_eq!(lag.quantile(1.0), 3_500_000);
        assert_eq!(lag.max(), 3_500_000);
        lag.note(5_000_000_000);
        assert_eq!(lag.quantile(1.0), 5_000_000_000);
    }
}
