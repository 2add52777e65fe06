//! What framing hands out and counts: a [`Unit`], the [`FramingStats`].

use serde::Serialize;

/// One unit the framer hands out.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Unit<'a> {
    /// The unit's bytes (its sync marker only with `keep_sync`; KISS: the data after
    /// the command byte, escapes undone).
    pub data: &'a [u8],
    /// KISS only: the port, the command byte's high nibble.
    pub kiss_port: Option<u8>,
}

/// What a framer has counted since it was made.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FramingStats {
    /// Complete units handed out.
    pub units: u64,
    /// Losses of synchronization: a run of bytes that start no unit, a length out of
    /// bounds, a missing sync marker, a KISS frame that does not decode, a datagram's
    /// incomplete last unit (each run counted once however long).
    pub framing_errors: u64,
    /// Bytes in no unit: garbage, bad or incomplete units, partial units dropped by
    /// [`Framer::reset`](super::Framer::reset), KISS frames that are not data frames. (Sync markers not
    /// kept, KISS delimiters, command bytes and escapes of good units are framing,
    /// not discarded.)
    pub bytes_discarded: u64,
}

/// Counts `n` discarded bytes, and one framing error at the start of a run.
pub(super) fn discard(stats: &mut FramingStats, lost: &mut bool, n: usize) {
    stats.bytes_discarded += n as u64;
    if !*lost {
        *lost = true;
        stats.framing_errors += 1;
    }
}
