//! The framer: the state of one connection (or of one datagram's units), given
//! whatever the socket read and calling back once per complete [`Unit`].

use super::kiss::KissDecoder;
use super::unit::{discard, FramingStats, Unit};
use super::{Endian, Framing, LengthField, SyncMarker, ASM};

impl Framing {
    /// Longest unit this framing hands out (with a kept sync marker); `None` for
    /// [`Framing::None`], whose units are whatever was read.
    pub fn max_unit_len(&self) -> Option<usize> {
        match Plan::new(self) {
            Plan::Whole => None,
            Plan::Delimited(d) => Some(d.max_total()),
            Plan::Kiss { max_length } => Some(max_length),
        }
    }
}

/// The framing of a connection: the partial unit between reads and the counters.
#[derive(Debug)]
pub struct Framer {
    plan: Plan,
    /// The partial unit (sync/length kinds): never more than the sync + max_length.
    pub(super) buf: Vec<u8>,
    /// Set from the first discarded byte until the next unit (one error per run).
    lost: bool,
    pub(super) kiss: KissDecoder,
    /// KISS over datagrams decodes here, so it never disturbs a stream's frame.
    kiss_datagram: KissDecoder,
    stats: FramingStats,
}

/// The framing rule, normalized: what the framer actually does.
#[derive(Clone, Debug)]
enum Plan {
    Whole,
    Delimited(Delimited),
    Kiss { max_length: usize },
}

#[derive(Clone, Debug)]
struct Delimited {
    sync: Option<SyncMarker>,
    keep_sync: bool,
    body: Body,
    /// Space packets: the first 3 bits must be 000.
    version_check: bool,
}

#[derive(Clone, Debug)]
enum Body {
    Fixed(usize),
    Length(LengthField),
}

/// One decision about the bytes at the current position.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Cannot decide with fewer than this many bytes (always more than given).
    Need(usize),
    /// These bytes start no unit.
    Discard(usize),
    /// A unit occupies `..end`; it is handed out from `start` (after a dropped sync).
    Unit { start: usize, end: usize },
}

impl Plan {
    fn new(framing: &Framing) -> Plan {
        let delimited = |sync, keep_sync, body, version_check| {
            Plan::Delimited(Delimited {
                sync,
                keep_sync,
                body,
                version_check,
            })
        };
        match framing {
            Framing::None => Plan::Whole,
            Framing::SpacePacket { max_length } => delimited(
                None,
                false,
                Body::Length(LengthField {
                    offset: 4,
                    size: 2,
                    endian: Endian::Big,
                    adjustment: 7,
                    max_length: *max_length,
                    sync: None,
                    keep_sync: false,
                }),
                true,
            ),
            Framing::TmFrame { length, keep_sync } => delimited(
                SyncMarker::new(&ASM),
                *keep_sync,
                Body::Fixed(*length),
                false,
            ),
            Framing::Fixed {
                length,
                sync,
                keep_sync,
            } => delimited(*sync, *keep_sync, Body::Fixed(*length), false),
            Framing::Length(f) => delimited(f.sync, f.keep_sync, Body::Length(f.clone()), false),
            Framing::Kiss { max_length } => Plan::Kiss {
                max_length: *max_length,
            },
        }
    }
}

/// First position where `sync` starts in `data`, or a prefix of it ends `data`;
/// `data.len()` if neither.
fn find_sync(data: &[u8], sync: &[u8]) -> usize {
    let mut from = 0;
    while let Some(i) = data[from..].iter().position(|&b| b == sync[0]) {
        let at = from + i;
        let n = (data.len() - at).min(sync.len());
        if data[at..at + n] == sync[..n] {
            return at;
        }
        from = at + 1;
    }
    data.len()
}

impl Delimited {
    fn sync_len(&self) -> usize {
        self.sync.map_or(0, |s| s.as_bytes().len())
    }

    fn max_total(&self) -> usize {
        let body = match &self.body {
            Body::Fixed(n) => *n,
            Body::Length(f) => f.max_length,
        };
        body + if self.keep_sync { self.sync_len() } else { 0 }
    }

    /// Decides about the bytes at the start of `data`. The same decision for any
    /// longer `data` unless it is `Need` (this is what makes splits not matter).
    #[inline(always)]
    fn step(&self, data: &[u8]) -> Step {
        let h = self.sync_len();
        if let Some(sync) = &self.sync {
            let at = find_sync(data, sync.as_bytes());
            if at > 0 {
                return Step::Discard(at);
            }
            if data.len() < h {
                return Step::Need(h);
            }
        }
        let body = &data[h..];
        let len = match &self.body {
            Body::Fixed(n) => *n,
            Body::Length(f) => {
                if self.version_check && body.first().is_some_and(|b| b >> 5 != 0) {
                    return Step::Discard(1);
                }
                let end = f.offset + f.size;
                if body.len() < end {
                    return Step::Need(h + end);
                }
                match f.unit_len(&body[f.offset..end]) {
                    Some(n) => n,
                    None => return Step::Discard(1),
                }
            }
        };
        if body.len() < len {
            return Step::Need(h + len);
        }
        Step::Unit {
            start: if self.keep_sync { 0 } else { h },
            end: h + len,
        }
    }
}

impl Framer {
    /// A framer for one connection (or one UDP capturer) with this framing.
    pub fn new(framing: &Framing) -> Framer {
        let plan = Plan::new(framing);
        let max = match &plan {
            Plan::Kiss { max_length } => *max_length,
            _ => 0,
        };
        Framer {
            plan,
            buf: Vec::new(),
            lost: false,
            kiss: KissDecoder::new(max),
            kiss_datagram: KissDecoder::new(max),
            stats: FramingStats::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> FramingStats {
        self.stats
    }

    /// Bytes of a partial unit held until the next push.
    pub fn buffered(&self) -> usize {
        match self.plan {
            Plan::Kiss { .. } => self.kiss.wire,
            _ => self.buf.len(),
        }
    }

    /// Frames the next bytes of a stream: calls `out` once per unit completed, in
    /// order. A unit inside `input` is a slice of it; one that began in an earlier
    /// push comes from the framer's buffer; the tail that starts a unit is kept.
    pub fn push(&mut self, input: &[u8], out: &mut impl FnMut(Unit<'_>)) {
        match &self.plan {
            Plan::Whole => {
                if !input.is_empty() {
                    self.stats.units += 1;
                    out(Unit {
                        data: input,
                        kiss_port: None,
                    });
                }
            }
            Plan::Kiss { .. } => self.kiss.feed(input, &mut self.stats, out),
            Plan::Delimited(d) => {
                let rest = Self::finish_partial(
                    d,
                    &mut self.buf,
                    &mut self.lost,
                    &mut self.stats,
                    input,
                    out,
                );
                let tail = Self::frame_slice(d, rest, &mut self.lost, &mut self.stats, out);
                if !tail.is_empty() {
                    // The buffer is empty here; it only ever grows to what a unit
                    // needs (never past the sync + max_length).
                    self.buf.reserve_exact(tail.len());
                    self.buf.extend_from_slice(tail);
                }
            }
        }
    }

    /// Completes the buffered partial unit from the front of `input`, taking only
    /// the bytes it needs; returns the rest of `input`.
    fn finish_partial<'i>(
        d: &Delimited,
        buf: &mut Vec<u8>,
        lost: &mut bool,
        stats: &mut FramingStats,
        mut input: &'i [u8],
        out: &mut impl FnMut(Unit<'_>),
    ) -> &'i [u8] {
        while !buf.is_empty() {
            match d.step(buf) {
                Step::Need(n) => {
                    buf.reserve_exact(n - buf.len()); // one growth per unit at most
                    let take = (n - buf.len()).min(input.len());
                    buf.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if buf.len() < n {
                        return input; // all of input taken; still partial
                    }
                }
                Step::Discard(k) => {
                    discard(stats, lost, k);
                    buf.drain(..k);
                }
                Step::Unit { start, end } => {
                    stats.units += 1;
                    *lost = false;
                    out(Unit {
                        data: &buf[start..end],
                        kiss_port: None,
                    });
                    buf.drain(..end);
                }
            }
        }
        input
    }

    /// Frames `data` from its start; returns the tail that is not yet a unit.
    fn frame_slice<'i>(
        d: &Delimited,
        data: &'i [u8],
        lost: &mut bool,
        stats: &mut FramingStats,
        out: &mut impl FnMut(Unit<'_>),
    ) -> &'i [u8] {
        let mut pos = 0;
        loop {
            match d.step(&data[pos..]) {
                Step::Need(_) => return &data[pos..],
                Step::Discard(k) => {
                    discard(stats, lost, k);
                    pos += k;
                }
                Step::Unit { start, end } => {
                    stats.units += 1;
                    *lost = false;
                    out(Unit {
                        data: &data[pos + start..pos + end],
                        kiss_port: None,
                    });
                    pos += end;
                }
            }
        }
    }

    /// The connection ended (or a new one begins): drops the partial unit, counting
    /// its bytes as discarded, so the next push starts a fresh stream.
    pub fn reset(&mut self) {
        self.stats.bytes_discarded += self.buf.len() as u64;
        self.buf.clear();
        self.lost = false;
        self.kiss.reset(&mut self.stats);
    }

    /// Frames one UDP datagram on its own: a unit never spans two datagrams, so an
    /// incomplete last unit is discarded (one framing error). The stream state
    /// ([`Framer::push`]'s partial unit) is not touched; only the counters are.
    /// Without framing the datagram is the unit, even if empty.
    pub fn units_in_datagram(&mut self, datagram: &[u8], out: &mut impl FnMut(Unit<'_>)) {
        match &self.plan {
            Plan::Whole => {
                self.stats.units += 1;
                out(Unit {
                    data: datagram,
                    kiss_port: None,
                });
            }
            Plan::Kiss { .. } => {
                self.kiss_datagram.feed(datagram, &mut self.stats, out);
                self.kiss_datagram.end_of_datagram(&mut self.stats);
            }
            Plan::Delimited(d) => {
                let mut lost = false;
                let tail = Self::frame_slice(d, datagram, &mut lost, &mut self.stats, out);
                if !tail.is_empty() {
                    discard(&mut self.stats, &mut lost, tail.len());
                }
            }
        }
    }
}
