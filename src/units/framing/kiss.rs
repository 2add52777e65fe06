//! KISS (TNC) framing: FEND-delimited frames, escapes undone, data frames only.

use super::unit::{discard, FramingStats, Unit};
use super::{FEND, FESC, TFEND, TFESC};

/// Where a KISS decoder is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum KissState {
    /// Before the first FEND: bytes here start no frame.
    Hunting,
    /// Inside a frame.
    Frame,
    /// Inside a frame, after FESC.
    Escape,
}

/// KISS decoding: the frame so far, unescaped, command byte first.
#[derive(Debug)]
pub(super) struct KissDecoder {
    state: KissState,
    /// The decoded frame (command byte + data), at most `max_length + 1` bytes.
    pub(super) buf: Vec<u8>,
    /// Bytes of the current frame on the wire, FENDs not counted.
    pub(super) wire: usize,
    /// Hunting has already counted its error (set when a frame is abandoned).
    lost: bool,
    max_length: usize,
}

impl KissDecoder {
    pub(super) fn new(max_length: usize) -> KissDecoder {
        KissDecoder {
            state: KissState::Hunting,
            buf: Vec::new(),
            wire: 0,
            lost: false,
            max_length,
        }
    }

    /// Adds decoded bytes to the frame; `false` (nothing added) if the frame
    /// would grow past `max_length`.
    fn push_data(&mut self, bytes: &[u8]) -> bool {
        if self.buf.len() + bytes.len() > self.max_length + 1 {
            return false;
        }
        // Amortized growth, but never past the bound (max_length + command byte).
        let need = self.buf.len() + bytes.len();
        if need > self.buf.capacity() {
            let want = need.max(2 * self.buf.capacity()).min(self.max_length + 1);
            self.buf.reserve_exact(want - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
        true
    }

    /// The current frame cannot be a unit (too long, a bad escape): one framing
    /// error now, its bytes so far and `more` discarded, and the bytes up to the
    /// next FEND discarded as they come (hunting, its error already counted). So
    /// an endless frame shows while it grows, and is never held.
    fn abandon(&mut self, stats: &mut FramingStats, more: usize) {
        stats.framing_errors += 1;
        stats.bytes_discarded += (self.wire + more) as u64;
        self.buf.clear();
        self.wire = 0;
        self.lost = true;
        self.state = KissState::Hunting;
    }

    pub(super) fn feed(
        &mut self,
        input: &[u8],
        stats: &mut FramingStats,
        out: &mut impl FnMut(Unit<'_>),
    ) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                KissState::Hunting => match input[i..].iter().position(|&b| b == FEND) {
                    Some(p) => {
                        if p > 0 {
                            discard(stats, &mut self.lost, p);
                        }
                        self.lost = false;
                        self.state = KissState::Frame;
                        i += p + 1;
                    }
                    None => {
                        discard(stats, &mut self.lost, input.len() - i);
                        return;
                    }
                },
                KissState::Frame => {
                    let run = input[i..]
                        .iter()
                        .position(|&b| b == FEND || b == FESC)
                        .unwrap_or(input.len() - i);
                    if !self.push_data(&input[i..i + run]) {
                        self.abandon(stats, run);
                        i += run;
                        continue;
                    }
                    self.wire += run;
                    i += run;
                    match input.get(i) {
                        Some(&FEND) => {
                            self.end_frame(stats, out);
                            i += 1;
                        }
                        Some(_) => {
                            // FESC
                            self.wire += 1;
                            self.state = KissState::Escape;
                            i += 1;
                        }
                        None => {}
                    }
                }
                KissState::Escape => {
                    let b = input[i];
                    i += 1;
                    self.state = KissState::Frame;
                    let pushed = match b {
                        TFEND => self.push_data(&[FEND]),
                        TFESC => self.push_data(&[FESC]),
                        FEND => {
                            // The frame ends on a dangling escape; the FEND
                            // opens the next one.
                            self.abandon(stats, 0);
                            self.lost = false;
                            self.state = KissState::Frame;
                            continue;
                        }
                        _ => false, // a bad escape
                    };
                    if !pushed {
                        self.abandon(stats, 1);
                        continue;
                    }
                    self.wire += 1;
                }
            }
        }
    }

    /// A FEND closed the frame: hand it out if it is a good data frame.
    fn end_frame(&mut self, stats: &mut FramingStats, out: &mut impl FnMut(Unit<'_>)) {
        self.state = KissState::Frame;
        if self.wire == 0 {
            return; // FEND FEND: an empty frame, ignored
        }
        if self.buf[0] & 0x0F != 0 || self.buf.len() == 1 {
            // A command frame (TX delay, ...) or an empty data frame: not a unit.
            stats.bytes_discarded += self.wire as u64;
        } else {
            stats.units += 1;
            out(Unit {
                data: &self.buf[1..],
                kiss_port: Some(self.buf[0] >> 4),
            });
        }
        self.buf.clear();
        self.wire = 0;
    }

    /// The stream ended: the open frame is dropped; the next byte hunts a FEND.
    pub(super) fn reset(&mut self, stats: &mut FramingStats) {
        stats.bytes_discarded += self.wire as u64;
        self.buf.clear();
        self.wire = 0;
        self.lost = false;
        self.state = KissState::Hunting;
    }

    /// A datagram ended: an unterminated frame is a framing error.
    pub(super) fn end_of_datagram(&mut self, stats: &mut FramingStats) {
        if self.wire > 0 {
            stats.framing_errors += 1;
        }
        self.reset(stats);
    }
}
