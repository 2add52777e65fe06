//! A sparse index of a capture file, pure: per block of about [`EVERY`]
//! bytes, where it starts and the earliest and latest record time in it. An
//! extract reads only from the first block that may hold a record of its
//! window to the end of the last one, so finding a window's start in a long
//! file reads at most one block before it, whatever the file's length.
//!
//! It is noted as records are written (one comparison or two per record, a
//! new block every [`EVERY`] bytes) and, for files closed before bsc started,
//! as an extract reads a whole file. Memory: 24 bytes per block, about
//! 24 bytes per MiB of capture (2.4 KiB for a 100 MB file). Records need not
//! come in time order (a clock stepped back): a block says the least and the
//! most time in it, so a block is skipped only when none of its records can
//! be in the window.

use crate::clock::UnixNanos;
use crate::files::window::Window;

/// Bytes of file per block (a block ends at the first record past this).
pub const EVERY: u64 = 1 << 20;

/// Where a block of records starts, and the least and most time in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    offset: u64,
    min: UnixNanos,
    max: UnixNanos,
}

/// The blocks of one file, in file order, from its first record on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SparseIndex {
    blocks: Vec<Block>,
}

impl SparseIndex {
    /// Notes a record that starts at `offset`, stamped `at`; records are
    /// noted in file order, each once.
    pub fn note(&mut self, offset: u64, at: UnixNanos) {
        match self.blocks.last_mut() {
            Some(b) if offset < b.offset + EVERY => {
                b.min = b.min.min(at);
                b.max = b.max.max(at);
            }
            _ => self.blocks.push(Block {
                offset,
                min: at,
                max: at,
            }),
        }
    }

    /// The bytes `start..stop` of the file, which ends at `end`, outside
    /// which no record is in `window` (an empty range when none is).
    pub fn range(&self, window: &Window, end: u64) -> (u64, u64) {
        let hit = |b: &Block| window.overlaps(Some(b.min), Some(b.max));
        let (Some(first), Some(last)) = (
            self.blocks.iter().position(hit),
            self.blocks.iter().rposition(hit),
        ) else {
            return (end, end);
        };
        let stop = self.blocks.get(last + 1).map_or(end, |b| b.offset.min(end));
        (self.blocks[first].offset.min(end), stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> UnixNanos {
        UnixNanos(s * 1_000_000_000)
    }

    /// A file of `n` records of `len` bytes, record `i` stamped `times(i)`:
    /// its index and each record's offset.
    fn file(n: u64, len: u64, times: impl Fn(u64) -> i64) -> (SparseIndex, Vec<(u64, i64)>) {
        let mut ix = SparseIndex::default();
        let records: Vec<(u64, i64)> = (0..n).map(|i| (24 + i * len, times(i))).collect();
        for &(offset, t) in &records {
            ix.note(offset, at(t));
        }
        (ix, records)
    }

    #[test]
    fn a_window_inside_a_long_file_reads_about_one_block_more() {
        let (ix, _) = file(10_000, 1000, |i| i as i64);
        let end = 24 + 10_000 * 1000;
        let w = Window::new(Some(at(5000)), Some(at(5060))).unwrap();
        let (start, stop) = ix.range(&w, end);
        assert!(start <= 24 + 5000 * 1000 && 24 + 5000 * 1000 - start < EVERY + 1000);
        assert!(stop >= 24 + 5060 * 1000 && stop - (24 + 5060 * 1000) < EVERY + 1000);
        assert_eq!(
            ix.range(&Window::new(Some(at(20_000)), None).unwrap(), end),
            (end, end)
        );
        assert_eq!(ix.range(&Window::default(), end), (24, end));
        assert_eq!(
            SparseIndex::default().range(&Window::default(), 24),
            (24, 24)
        );
        // A range never passes what is written (an open file's pending records).
        assert_eq!(ix.range(&Window::default(), 1000).1, 1000);
    }

    proptest::proptest! {
        /// Every record in the window lies in the range, in any time order.
        #[test]
        fn no_record_of_the_window_is_outside_the_range(
            n in 0u64..3000,
            len in 16u64..3000,
            jumps in proptest::collection::vec(-50i64..100, 1..64),
            from in -10i64..200_000,
            width in 0i64..50_000,
        ) {
            let (ix, records) = file(n, len, |i| (i as i64) + jumps[i as usize % jumps.len()] * (i as i64 % 7));
            let end = 24 + n * len;
            let w = Window::new(Some(at(from)), Some(at(from + width))).unwrap();
            let (start, stop) = ix.range(&w, end);
            proptest::prop_assert!(start <= stop && stop <= end);
            for (offset, t) in records {
                if w.contains(at(t)) {
                    proptest::prop_assert!(start <= offset && offset < stop, "record at {} ({}) outside {}..{}", offset, t, start, stop);
                }
            }
        }
    }
}
