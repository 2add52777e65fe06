//! Stream framing, sans I/O: the bytes of a TCP stream (or of one UDP datagram) in,
//! telemetry units out, so that one PCAP record is one unit and not one `read`.
//!
//! [`Framing`] is the `framing` config value (parsed from JSON, every bad value an
//! error naming its key); [`Framer`] is the state of one connection: it is given
//! whatever the socket read ([`Framer::push`]) and calls back once per complete
//! [`Unit`]. Also here: the CCSDS header fields the other unit modules read
//! ([`SpacePacketHeader`], [`TmFrameHeader`]) and the TM frame's FECF
//! ([`crc16_ccitt`], [`fecf_ok`]).
//!
//! # Invariants
//!
//! - **Split-independence**: the units, counters and discarded bytes are the same
//!   however the stream is cut into pushes (the property tests check every kind).
//! - **No allocation per unit**: a unit that arrives whole inside one push is handed
//!   out as a slice of the caller's input (no copy); only a unit split across pushes
//!   is gathered in the framer's one buffer, whose contents never exceed the sync
//!   marker plus `max_length`. KISS is the exception that copies: it must undo
//!   escapes, so every KISS unit is decoded into the framer's buffer.
//! - **Bad input never stops framing**: a length out of bounds, a sync marker not
//!   where expected or a KISS frame that does not decode is counted as one framing
//!   error (one per loss of synchronization, however many bytes it takes to find
//!   the next unit), its bytes as discarded, and framing goes on at the next place a
//!   unit can start.
//! - **Damage shows while it happens**: a unit is an error the moment it cannot be
//!   one (a length past `max_length` as soon as its field is read; a KISS frame as
//!   soon as it grows past `max_length`), not when the stream ends, and its bytes
//!   are counted as discarded as they arrive, never held.

use std::ops::RangeInclusive;

use serde::Serialize;
use serde_json::{json, Map, Value};

/// The config key these values are read from (it prefixes every error).
pub const KEY: &str = "framing";
/// Largest `length` of a fixed-length unit (and of a TM frame).
pub const MAX_FIXED_LEN: usize = 65535;
/// Largest `max_length` of a length-field or KISS unit (bounds the framer's buffer).
/// Records are still cut at [`crate::pcap::SNAPLEN`] when written.
pub const MAX_UNIT_LEN: usize = 1 << 20;
/// Largest sync marker, in bytes.
pub const MAX_SYNC_LEN: usize = 8;
/// The CCSDS attached sync marker in front of every TM transfer frame.
pub const ASM: [u8; 4] = [0x1A, 0xCF, 0xFC, 0x1D];
/// KISS frame end.
pub const FEND: u8 = 0xC0;
/// KISS frame escape.
pub const FESC: u8 = 0xDB;
/// KISS transposed frame end (`FESC TFEND` stands for a data byte `FEND`).
pub const TFEND: u8 = 0xDC;
/// KISS transposed frame escape (`FESC TFESC` stands for a data byte `FESC`).
pub const TFESC: u8 = 0xDD;
/// Default `max_length` of `length` framing.
pub const DEFAULT_MAX_LENGTH: usize = 65535;
/// Largest CCSDS space packet: a 6-byte header and 65536 bytes of data.
pub const MAX_SPACE_PACKET_LEN: usize = 65542;

/// How a stream is cut into units (the `framing` key).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Framing {
    /// No framing: each read (or datagram) is one unit, as without this key.
    #[default]
    None,
    /// CCSDS space packets: a 6-byte primary header whose bytes 4-5 (big endian) + 7
    /// are the packet's length. Resynchronizes byte by byte on the version bits (000).
    SpacePacket {
        /// Longest packet accepted (7..=65542; default 65542).
        max_length: usize,
    },
    /// CCSDS TM transfer frames of a fixed length, each after the ASM `1ACFFC1D`.
    TmFrame {
        /// Frame length without the ASM.
        length: usize,
        /// Keeps the ASM in front of each unit.
        keep_sync: bool,
    },
    /// Fixed-length units, optionally after a sync marker.
    Fixed {
        /// Unit length without the sync marker.
        length: usize,
        sync: Option<SyncMarker>,
        keep_sync: bool,
    },
    /// Units whose length is a field inside them.
    Length(LengthField),
    /// KISS (TNC) frames: FEND-delimited, escapes undone, data frames only.
    Kiss {
        /// Longest data (after the command byte) accepted (default 65535).
        max_length: usize,
    },
}

/// Byte order of a length field.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Endian {
    Big,
    Little,
}

/// A length field: where it is, how to read it, and which totals are believable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LengthField {
    /// Position of the field from the unit's start (after any sync marker).
    pub offset: usize,
    /// Field size in bytes, 1 to 4.
    pub size: usize,
    pub endian: Endian,
    /// Added to the field's value to give the unit's length (without the sync marker).
    pub adjustment: i64,
    /// Longest unit accepted (without the sync marker).
    pub max_length: usize,
    pub sync: Option<SyncMarker>,
    pub keep_sync: bool,
}

impl LengthField {
    /// The unit length that `field` (exactly `size` bytes) gives, if within bounds.
    pub fn unit_len(&self, field: &[u8]) -> Option<usize> {
        let fold = |v: u64, b: &u8| (v << 8) | u64::from(*b);
        let value = match self.endian {
            Endian::Big => field.iter().fold(0, fold),
            Endian::Little => field.iter().rev().fold(0, fold),
        };
        // value < 2^32 and |adjustment| <= MAX_UNIT_LEN: no overflow.
        let total = value as i64 + self.adjustment;
        if total < 1 || total > self.max_length as i64 || (total as usize) < self.offset + self.size
        {
            return None;
        }
        Some(total as usize)
    }
}

/// A sync marker: 1 to 8 bytes that start every unit.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SyncMarker {
    bytes: [u8; MAX_SYNC_LEN],
    len: u8,
}

impl SyncMarker {
    /// The marker from 1 to 8 bytes; `None` for other lengths.
    pub fn new(bytes: &[u8]) -> Option<SyncMarker> {
        if bytes.is_empty() || bytes.len() > MAX_SYNC_LEN {
            return None;
        }
        let mut m = SyncMarker {
            bytes: [0; MAX_SYNC_LEN],
            len: bytes.len() as u8,
        };
        m.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(m)
    }

    /// Reads hex text (`"1ACFFC1D"`, an optional `0x`, either case).
    pub fn from_hex(text: &str) -> Option<SyncMarker> {
        let t = text.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        if !t.len().is_multiple_of(2) || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = [0u8; MAX_SYNC_LEN];
        let n = t.len() / 2;
        if n == 0 || n > MAX_SYNC_LEN {
            return None;
        }
        for (i, b) in bytes.iter_mut().take(n).enumerate() {
            // Checked above: two ASCII hex digits.
            *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok()?;
        }
        SyncMarker::new(&bytes[..n])
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Upper-case hex, as [`SyncMarker::from_hex`] reads it.
    pub fn to_hex(&self) -> String {
        self.as_bytes().iter().map(|b| format!("{b:02X}")).collect()
    }
}

const KINDS: &str = "none, ccsds_space_packet, ccsds_tm_frame, fixed, length, kiss";

/// Reads the keys of one framing object, each error naming `framing.<key>`.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    kind: &'a str,
}

fn key_err(key: &str, message: impl std::fmt::Display) -> String {
    format!("{KEY}.{key}: {message}")
}

impl Fields<'_> {
    fn only(&self, known: &[&str]) -> Result<(), String> {
        for k in self.obj.keys() {
            if k != "kind" && !known.contains(&k.as_str()) {
                let valid = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                return Err(key_err(
                    k,
                    format!("not a key of kind {}; its keys: {valid}", self.kind),
                ));
            }
        }
        Ok(())
    }

    fn int(
        &self,
        key: &str,
        range: RangeInclusive<i64>,
        default: Option<i64>,
    ) -> Result<i64, String> {
        let v = match self.obj.get(key) {
            None => {
                return default
                    .ok_or_else(|| key_err(key, format!("required for kind {}", self.kind)))
            }
            Some(v) => v,
        };
        let n = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| key_err(key, format!("must be a whole number, got {v}")))?;
        if !range.contains(&n) {
            return Err(key_err(
                key,
                format!("must be {}..{}, got {n}", range.start(), range.end()),
            ));
        }
        Ok(n)
    }

    fn sync(&self) -> Result<Option<SyncMarker>, String> {
        match self.obj.get("sync") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_str()
                .and_then(SyncMarker::from_hex)
                .map(Some)
                .ok_or_else(|| {
                    key_err(
                        "sync",
                        format!("must be 1 to 8 bytes in hex, like \"1ACFFC1D\", got {v}"),
                    )
                }),
        }
    }

    fn keep_sync(&self, has_sync: bool) -> Result<bool, String> {
        let keep = match self.obj.get("keep_sync") {
            None => false,
            Some(v) => crate::config::boolean(v)
                .ok_or_else(|| key_err("keep_sync", format!("must be true or false, got {v}")))?,
        };
        if keep && !has_sync {
            return Err(key_err("keep_sync", "needs a sync marker (set \"sync\")"));
        }
        Ok(keep)
    }
}

impl Framing {
    /// Reads the `framing` value: `"none"`, a kind's name for kinds without
    /// parameters (`"kiss"`, `"ccsds_space_packet"`), an object with `"kind"`, or
    /// that object as JSON text (as an HTTP form sends it).
    pub fn from_json(v: &Value) -> Result<Framing, String> {
        let obj = match v {
            Value::Null => return Ok(Framing::None),
            Value::String(s) if s.trim_start().starts_with('{') => {
                let parsed = crate::config::duplicates::read_json(s)
                    .map_err(|e| format!("{KEY}: not valid JSON: {e}"))?;
                return Framing::from_json(&parsed);
            }
            Value::String(s) => {
                return match s.as_str() {
                    "none" => Ok(Framing::None),
                    "kiss" | "ccsds_space_packet" => {
                        let mut o = Map::new();
                        o.insert("kind".into(), Value::String(s.clone()));
                        Framing::from_json(&Value::Object(o))
                    }
                    other => Err(format!(
                        "{KEY}: unknown framing {other:?}; valid: \"none\", \"kiss\", \
                         \"ccsds_space_packet\" or an object with \"kind\" (one of {KINDS})"
                    )),
                }
            }
            Value::Object(o) => o,
            other => {
                return Err(format!(
                    "{KEY}: must be \"none\" or an object with \"kind\", got {other}"
                ))
            }
        };
        let kind = match obj.get("kind") {
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(key_err(
                    "kind",
                    format!("must be one of {KINDS}, got {other}"),
                ))
            }
            None => return Err(key_err("kind", format!("required, one of {KINDS}"))),
        };
        let f = Fields { obj, kind };
        let fixed_len = 1..=MAX_FIXED_LEN as i64;
        match kind {
            "none" => {
                f.only(&[])?;
                Ok(Framing::None)
            }
            "ccsds_space_packet" => {
                f.only(&["max_length"])?;
                let max = f.int(
                    "max_length",
                    7..=MAX_SPACE_PACKET_LEN as i64,
                    Some(MAX_SPACE_PACKET_LEN as i64),
                )?;
                Ok(Framing::SpacePacket {
                    max_length: max as usize,
                })
            }
            "ccsds_tm_frame" => {
                f.only(&["length", "keep_sync"])?;
                Ok(Framing::TmFrame {
                    length: f.int("length", fixed_len, None)? as usize,
                    keep_sync: f.keep_sync(true)?,
                })
            }
            "fixed" => {
                f.only(&["length", "sync", "keep_sync"])?;
                let sync = f.sync()?;
                Ok(Framing::Fixed {
                    length: f.int("length", fixed_len, None)? as usize,
                    sync,
                    keep_sync: f.keep_sync(sync.is_some())?,
                })
            }
            "length" => {
                f.only(&[
                    "offset",
                    "size",
                    "endian",
                    "adjustment",
                    "max_length",
                    "sync",
                    "keep_sync",
                ])?;
                let offset = f.int("offset", 0..=MAX_UNIT_LEN as i64, Some(0))? as usize;
                let size = f.int("size", 1..=4, None)? as usize;
                let endian = match obj.get("endian") {
                    None => Endian::Big,
                    Some(Value::String(s)) if s == "big" => Endian::Big,
                    Some(Value::String(s)) if s == "little" => Endian::Little,
                    Some(other) => {
                        return Err(key_err(
                            "endian",
                            format!("must be \"big\" or \"little\", got {other}"),
                        ))
                    }
                };
                let bound = MAX_UNIT_LEN as i64;
                let adjustment = f.int("adjustment", -bound..=bound, Some(0))?;
                let max_length =
                    f.int("max_length", 1..=bound, Some(DEFAULT_MAX_LENGTH as i64))? as usize;
                if max_length < offset + size {
                    return Err(key_err(
                        "max_length",
                        format!(
                            "must be at least offset + size ({}) to hold the length field, got {max_length}",
                            offset + size
                        ),
                    ));
                }
                let sync = f.sync()?;
                Ok(Framing::Length(LengthField {
                    offset,
                    size,
                    endian,
                    adjustment,
                    max_length,
                    sync,
                    keep_sync: f.keep_sync(sync.is_some())?,
                }))
            }
            "kiss" => {
                f.only(&["max_length"])?;
                let max = f.int(
                    "max_length",
                    1..=MAX_UNIT_LEN as i64,
                    Some(DEFAULT_MAX_LENGTH as i64),
                )?;
                Ok(Framing::Kiss {
                    max_length: max as usize,
                })
            }
            other => Err(key_err(
                "kind",
                format!("unknown kind {other:?}; valid: {KINDS}"),
            )),
        }
    }

    /// The value [`Framing::from_json`] reads back to `self` (defaults written out).
    pub fn to_json(&self) -> Value {
        match self {
            Framing::None => json!("none"),
            Framing::SpacePacket { max_length } => {
                json!({"kind": "ccsds_space_packet", "max_length": max_length})
            }
            Framing::TmFrame { length, keep_sync } => {
                json!({"kind": "ccsds_tm_frame", "length": length, "keep_sync": keep_sync})
            }
            Framing::Fixed {
                length,
                sync,
                keep_sync,
            } => {
                let mut v = json!({"kind": "fixed", "length": length, "keep_sync": keep_sync});
                if let Some(s) = sync {
                    v["sync"] = json!(s.to_hex());
                }
                v
            }
            Framing::Length(f) => {
                let mut v = json!({
                    "kind": "length",
                    "offset": f.offset,
                    "size": f.size,
                    "endian": match f.endian { Endian::Big => "big", Endian::Little => "little" },
                    "adjustment": f.adjustment,
                    "max_length": f.max_length,
                    "keep_sync": f.keep_sync,
                });
                if let Some(s) = f.sync {
                    v["sync"] = json!(s.to_hex());
                }
                v
            }
            Framing::Kiss { max_length } => json!({"kind": "kiss", "max_length": max_length}),
        }
    }

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
    /// [`Framer::reset`], KISS frames that are not data frames. (Sync markers not
    /// kept, KISS delimiters, command bytes and escapes of good units are framing,
    /// not discarded.)
    pub bytes_discarded: u64,
}

/// The framing of a connection: the partial unit between reads and the counters.
#[derive(Debug)]
pub struct Framer {
    plan: Plan,
    /// The partial unit (sync/length kinds): never more than the sync + max_length.
    buf: Vec<u8>,
    /// Set from the first discarded byte until the next unit (one error per run).
    lost: bool,
    kiss: KissDecoder,
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

fn discard(stats: &mut FramingStats, lost: &mut bool, n: usize) {
    stats.bytes_discarded += n as u64;
    if !*lost {
        *lost = true;
        stats.framing_errors += 1;
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
struct KissDecoder {
    state: KissState,
    /// The decoded frame (command byte + data), at most `max_length + 1` bytes.
    buf: Vec<u8>,
    /// Bytes of the current frame on the wire, FENDs not counted.
    wire: usize,
    /// Hunting has already counted its error (set when a frame is abandoned).
    lost: bool,
    max_length: usize,
}

impl KissDecoder {
    fn new(max_length: usize) -> KissDecoder {
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

    fn feed(&mut self, input: &[u8], stats: &mut FramingStats, out: &mut impl FnMut(Unit<'_>)) {
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
    fn reset(&mut self, stats: &mut FramingStats) {
        stats.bytes_discarded += self.wire as u64;
        self.buf.clear();
        self.wire = 0;
        self.lost = false;
        self.state = KissState::Hunting;
    }

    /// A datagram ended: an unterminated frame is a framing error.
    fn end_of_datagram(&mut self, stats: &mut FramingStats) {
        if self.wire > 0 {
            stats.framing_errors += 1;
        }
        self.reset(stats);
    }
}

// ---------------------------------------------------------------------------
// CCSDS unit headers and the FECF

/// The APID of idle space packets (never sequence-counted).
pub const IDLE_APID: u16 = 0x7FF;
/// The first header pointer of an idle (OID) TM frame (CCSDS 132.0-B).
pub const OID_FIRST_HEADER_POINTER: u16 = 0x7FE;

/// The fields of a CCSDS space packet primary header (CCSDS 133.0-B).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SpacePacketHeader {
    /// Packet version number (3 bits; 0 for CCSDS packets).
    pub version: u8,
    /// Telecommand (1) or telemetry (0).
    pub packet_type: u8,
    pub secondary_header: bool,
    /// Application process identifier (11 bits).
    pub apid: u16,
    /// Sequence flags (2 bits; 0b11 for an unsegmented packet).
    pub sequence_flags: u8,
    /// Packet sequence count (14 bits).
    pub sequence_count: u16,
    /// Packet data length field: the data field's length - 1.
    pub data_length: u16,
}

impl SpacePacketHeader {
    pub const LEN: usize = 6;
    /// Range of the sequence count.
    pub const COUNT_RANGE: u32 = 1 << 14;

    /// The header at the start of `unit`; `None` if it is shorter than 6 bytes.
    pub fn parse(unit: &[u8]) -> Option<SpacePacketHeader> {
        let b: &[u8; 6] = unit.get(..6)?.try_into().ok()?;
        Some(SpacePacketHeader {
            version: b[0] >> 5,
            packet_type: (b[0] >> 4) & 1,
            secondary_header: b[0] & 0x08 != 0,
            apid: u16::from_be_bytes([b[0] & 0x07, b[1]]),
            sequence_flags: b[2] >> 6,
            sequence_count: u16::from_be_bytes([b[2] & 0x3F, b[3]]),
            data_length: u16::from_be_bytes([b[4], b[5]]),
        })
    }

    /// The packet's whole length, header included.
    pub fn total_len(&self) -> usize {
        self.data_length as usize + 7
    }

    pub fn is_idle(&self) -> bool {
        self.apid == IDLE_APID
    }
}

/// The fields of a CCSDS TM transfer frame primary header (CCSDS 132.0-B).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TmFrameHeader {
    /// Transfer frame version number (2 bits; 0 for TM).
    pub version: u8,
    /// Spacecraft identifier (10 bits).
    pub scid: u16,
    /// Virtual channel identifier (3 bits).
    pub vcid: u8,
    pub ocf: bool,
    /// Master channel frame count.
    pub mc_count: u8,
    /// Virtual channel frame count.
    pub vc_count: u8,
    /// The data field status's first header pointer (11 bits).
    pub first_header_pointer: u16,
}

impl TmFrameHeader {
    pub const LEN: usize = 6;
    /// Range of the frame counts.
    pub const COUNT_RANGE: u32 = 256;

    /// The header at the start of `frame` (after any ASM); `None` if shorter than 6.
    pub fn parse(frame: &[u8]) -> Option<TmFrameHeader> {
        let b: &[u8; 6] = frame.get(..6)?.try_into().ok()?;
        Some(TmFrameHeader {
            version: b[0] >> 6,
            scid: (u16::from(b[0] & 0x3F) << 4) | u16::from(b[1] >> 4),
            vcid: (b[1] >> 1) & 0x07,
            ocf: b[1] & 1 != 0,
            mc_count: b[2],
            vc_count: b[3],
            first_header_pointer: u16::from_be_bytes([b[4] & 0x07, b[5]]),
        })
    }

    /// An only-idle-data (OID) frame: its first header pointer is 0x7FE.
    pub fn is_idle(&self) -> bool {
        self.first_header_pointer == OID_FIRST_HEADER_POINTER
    }
}

/// CRC-16-CCITT as CCSDS uses it for the FECF: polynomial 0x1021, initial value
/// 0xFFFF, no reflection, no final XOR (`"123456789"` gives 0x29B1).
pub fn crc16_ccitt(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// True if the last 2 bytes of a TM frame (without its ASM) are the CRC of the
/// rest: the frame error control field checks.
pub fn fecf_ok(frame: &[u8]) -> bool {
    match frame.len().checked_sub(2) {
        Some(n) if n > 0 => {
            crc16_ccitt(&frame[..n]) == u16::from_be_bytes([frame[n], frame[n + 1]])
        }
        _ => false,
    }
}

/// Builders of real units for the unit tests of this and the other unit modules.
#[cfg(any(test, feature = "testgen"))]
pub mod testgen {
    use super::*;

    /// An unsegmented telemetry space packet (`data` must not be empty).
    pub fn space_packet(apid: u16, count: u16, data: &[u8]) -> Vec<u8> {
        assert!(!data.is_empty() && apid <= 0x7FF && count < 1 << 14);
        let mut p = Vec::with_capacity(6 + data.len());
        p.extend_from_slice(&apid.to_be_bytes());
        p.extend_from_slice(&(0xC000 | count).to_be_bytes());
        p.extend_from_slice(&((data.len() - 1) as u16).to_be_bytes());
        p.extend_from_slice(data);
        p
    }

    /// A TM transfer frame of `6 + data.len() + 2` bytes with a correct FECF,
    /// after the ASM if `asm`.
    pub fn tm_frame(
        scid: u16,
        vcid: u8,
        mc: u8,
        vc: u8,
        fhp: u16,
        data: &[u8],
        asm: bool,
    ) -> Vec<u8> {
        let mut f = Vec::new();
        if asm {
            f.extend_from_slice(&ASM);
        }
        let start = f.len();
        f.extend_from_slice(&((scid << 4) | (u16::from(vcid) << 1)).to_be_bytes());
        f.push(mc);
        f.push(vc);
        f.extend_from_slice(&(0x1800 | fhp).to_be_bytes());
        f.extend_from_slice(data);
        let crc = crc16_ccitt(&f[start..]);
        f.extend_from_slice(&crc.to_be_bytes());
        f
    }

    /// A KISS data frame for `port`, FEND-delimited, escapes applied.
    pub fn kiss_frame(port: u8, data: &[u8]) -> Vec<u8> {
        let mut f = vec![FEND, port << 4];
        for &b in data {
            match b {
                FEND => f.extend_from_slice(&[FESC, TFEND]),
                FESC => f.extend_from_slice(&[FESC, TFESC]),
                b => f.push(b),
            }
        }
        f.push(FEND);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::testgen::*;
    use super::*;

    fn framing(v: Value) -> Framing {
        Framing::from_json(&v).unwrap()
    }

    /// Units handed out, with their KISS ports.
    type Units = Vec<(Vec<u8>, Option<u8>)>;

    /// Frames `chunks` one push each: the units and the stats.
    fn run(f: &Framing, chunks: &[&[u8]]) -> (Units, FramingStats) {
        let mut fr = Framer::new(f);
        let mut units = Vec::new();
        for c in chunks {
            fr.push(c, &mut |u| units.push((u.data.to_vec(), u.kiss_port)));
        }
        (units, fr.stats())
    }

    fn data_of(units: &Units) -> Vec<Vec<u8>> {
        units.iter().map(|u| u.0.clone()).collect()
    }

    /// Every way of cutting `stream` once and twice gives what one push gives.
    fn assert_split_independent(f: &Framing, stream: &[u8]) -> (Vec<Vec<u8>>, FramingStats) {
        let (whole, stats) = run(f, &[stream]);
        for i in 0..=stream.len() {
            let (a, s) = run(f, &[&stream[..i], &stream[i..]]);
            assert_eq!(a, whole, "split at {i}");
            assert_eq!(s, stats, "split at {i}");
        }
        let step = (stream.len() / 40).max(1);
        for i in (0..=stream.len()).step_by(step) {
            for j in (i..=stream.len()).step_by(step) {
                let (a, s) = run(f, &[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!((a, s), (whole.clone(), stats), "splits at {i}, {j}");
            }
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(f, &bytes), (whole.clone(), stats), "byte by byte");
        (data_of(&whole), stats)
    }

    fn sp() -> Framing {
        framing(json!({"kind": "ccsds_space_packet"}))
    }

    // --- config -----------------------------------------------------------

    #[test]
    fn parses_every_kind_with_defaults() {
        assert_eq!(Framing::from_json(&json!("none")), Ok(Framing::None));
        assert_eq!(Framing::from_json(&Value::Null), Ok(Framing::None));
        assert_eq!(Framing::default(), Framing::None);
        assert_eq!(sp(), Framing::SpacePacket { max_length: 65542 });
        assert_eq!(framing(json!("ccsds_space_packet")), sp());
        assert_eq!(framing(json!("kiss")), Framing::Kiss { max_length: 65535 });
        assert_eq!(
            framing(json!({"kind": "ccsds_tm_frame", "length": 1115})),
            Framing::TmFrame {
                length: 1115,
                keep_sync: false
            }
        );
        assert_eq!(
            framing(json!({"kind": "fixed", "length": 256, "sync": "FAF320"})),
            Framing::Fixed {
                length: 256,
                sync: SyncMarker::new(&[0xFA, 0xF3, 0x20]),
                keep_sync: false
            }
        );
        assert_eq!(
            framing(json!({"kind": "fixed", "length": "256"})),
            Framing::Fixed {
                length: 256,
                sync: None,
                keep_sync: false
            }
        );
        let l = framing(
            json!({"kind": "length", "offset": 0, "size": 2, "endian": "little",
            "adjustment": -2, "max_length": 1000, "sync": "0xeb90", "keep_sync": true}),
        );
        assert_eq!(
            l,
            Framing::Length(LengthField {
                offset: 0,
                size: 2,
                endian: Endian::Little,
                adjustment: -2,
                max_length: 1000,
                sync: SyncMarker::new(&[0xEB, 0x90]),
                keep_sync: true
            })
        );
        let d = framing(json!({"kind": "length", "size": 1}));
        assert_eq!(
            d,
            Framing::Length(LengthField {
                offset: 0,
                size: 1,
                endian: Endian::Big,
                adjustment: 0,
                max_length: 65535,
                sync: None,
                keep_sync: false
            })
        );
        // As JSON text, as a form field carries it.
        assert_eq!(
            framing(json!("{\"kind\": \"kiss\", \"max_length\": 300}")),
            Framing::Kiss { max_length: 300 }
        );
    }

    #[test]
    fn to_json_round_trips() {
        for v in [
            json!("none"),
            json!({"kind": "ccsds_space_packet", "max_length": 4096}),
            json!({"kind": "ccsds_tm_frame", "length": 1115, "keep_sync": true}),
            json!({"kind": "fixed", "length": 256, "sync": "FAF320"}),
            json!({"kind": "fixed", "length": 10}),
            json!({"kind": "length", "offset": 3, "size": 4, "endian": "little", "adjustment": -9, "sync": "EB90"}),
            json!({"kind": "kiss"}),
        ] {
            let f = framing(v);
            assert_eq!(framing(f.to_json()), f);
        }
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let err = |v: Value| Framing::from_json(&v).unwrap_err();
        assert_eq!(
            err(json!({"kind": "fixed", "length": 0})),
            "framing.length: must be 1..65535, got 0"
        );
        assert_eq!(
            err(json!({"kind": "ccsds_tm_frame", "length": 65536})),
            "framing.length: must be 1..65535, got 65536"
        );
        assert_eq!(
            err(json!({"kind": "ccsds_tm_frame"})),
            "framing.length: required for kind ccsds_tm_frame"
        );
        assert!(err(json!({"kind": "fixed", "length": "ten"}))
            .starts_with("framing.length: must be a whole number"));
        assert!(err(json!({"kind": "fixed", "length": 1.5}))
            .starts_with("framing.length: must be a whole number"));
        assert!(err(json!({"kind": "lenght"}))
            .starts_with("framing.kind: unknown kind \"lenght\"; valid: none, "));
        assert!(err(json!({"length": 3})).starts_with("framing.kind: required"));
        assert!(err(json!({"kind": 3})).starts_with("framing.kind: must be one of"));
        assert!(err(json!("hdlc")).starts_with("framing: unknown framing \"hdlc\""));
        assert!(err(json!(7)).starts_with("framing: must be"));
        assert!(err(json!("{oops")).starts_with("framing: not valid JSON"));
        assert_eq!(
            err(json!({"kind": "fixed", "length": 4, "lenght": 3})),
            "framing.lenght: not a key of kind fixed; its keys: length, sync, keep_sync"
        );
        assert!(err(json!({"kind": "kiss", "sync": "C0"}))
            .starts_with("framing.sync: not a key of kind kiss"));
        assert!(err(json!({"kind": "none", "length": 1}))
            .starts_with("framing.length: not a key of kind none; its keys: none"));
        for bad in ["", "F", "XYZW", "001122334455667788", "0x"] {
            assert!(
                err(json!({"kind": "fixed", "length": 4, "sync": bad}))
                    .starts_with("framing.sync: must be 1 to 8 bytes in hex"),
                "{bad}"
            );
        }
        assert!(err(json!({"kind": "fixed", "length": 4, "sync": 7})).starts_with("framing.sync:"));
        assert_eq!(
            err(json!({"kind": "fixed", "length": 4, "keep_sync": true})),
            "framing.keep_sync: needs a sync marker (set \"sync\")"
        );
        assert!(
            err(json!({"kind": "ccsds_tm_frame", "length": 4, "keep_sync": "maybe"}))
                .starts_with("framing.keep_sync: must be true or false")
        );
        assert_eq!(
            err(json!({"kind": "length", "size": 5})),
            "framing.size: must be 1..4, got 5"
        );
        assert_eq!(
            err(json!({"kind": "length", "size": 0})),
            "framing.size: must be 1..4, got 0"
        );
        assert_eq!(
            err(json!({"kind": "length"})),
            "framing.size: required for kind length"
        );
        assert_eq!(
            err(json!({"kind": "length", "size": 2, "offset": -1})),
            "framing.offset: must be 0..1048576, got -1"
        );
        assert_eq!(
            err(json!({"kind": "length", "size": 2, "endian": "middle"})),
            "framing.endian: must be \"big\" or \"little\", got \"middle\""
        );
        assert_eq!(
            err(json!({"kind": "length", "size": 2, "adjustment": 2000000})),
            "framing.adjustment: must be -1048576..1048576, got 2000000"
        );
        assert_eq!(
            err(json!({"kind": "length", "size": 2, "max_length": 0})),
            "framing.max_length: must be 1..1048576, got 0"
        );
        assert_eq!(
            err(json!({"kind": "length", "size": 2, "offset": 4, "max_length": 5})),
            "framing.max_length: must be at least offset + size (6) to hold the length field, got 5"
        );
        assert_eq!(
            err(json!({"kind": "ccsds_space_packet", "max_length": 6})),
            "framing.max_length: must be 7..65542, got 6"
        );
        assert_eq!(
            err(json!({"kind": "kiss", "max_length": 0})),
            "framing.max_length: must be 1..1048576, got 0"
        );
    }

    #[test]
    fn sync_markers_from_hex() {
        assert_eq!(SyncMarker::from_hex("1acffc1d").unwrap().as_bytes(), &ASM);
        assert_eq!(
            SyncMarker::from_hex("0X1ACFFC1D").unwrap().to_hex(),
            "1ACFFC1D"
        );
        assert_eq!(
            SyncMarker::from_hex("0102030405060708")
                .unwrap()
                .as_bytes()
                .len(),
            8
        );
        assert!(SyncMarker::from_hex("+1").is_none());
        assert!(SyncMarker::new(&[]).is_none());
        assert_eq!(
            Framing::TmFrame {
                length: 10,
                keep_sync: true
            }
            .max_unit_len(),
            Some(14)
        );
        assert_eq!(sp().max_unit_len(), Some(65542));
        assert_eq!(Framing::None.max_unit_len(), None);
    }

    // --- none -------------------------------------------------------------

    #[test]
    fn no_framing_passes_each_read_through() {
        let (units, stats) = run(&Framing::None, &[b"abc", b"", b"de"]);
        assert_eq!(data_of(&units), vec![b"abc".to_vec(), b"de".to_vec()]);
        assert_eq!(stats.units, 2);
        let mut fr = Framer::new(&Framing::None);
        let mut n = 0;
        fr.units_in_datagram(b"", &mut |u| {
            assert!(u.data.is_empty());
            n += 1
        });
        assert_eq!(n, 1, "an empty datagram is still a record without framing");
    }

    // --- space packets ----------------------------------------------------

    #[test]
    fn space_packets_whole_several_and_split_everywhere() {
        let a = space_packet(0x100, 1, b"hello");
        let b = space_packet(0x101, 16383, &[0xC0; 1]);
        let c = space_packet(0x7FF, 0, &[7; 300]);
        let stream = [a.clone(), b.clone(), c.clone()].concat();
        let (units, stats) = assert_split_independent(&sp(), &stream);
        assert_eq!(units, vec![a, b, c]);
        assert_eq!(
            stats,
            FramingStats {
                units: 3,
                framing_errors: 0,
                bytes_discarded: 0
            }
        );
    }

    #[test]
    fn whole_units_are_slices_of_the_input() {
        let a = space_packet(0x100, 1, b"hello");
        let stream = [a.clone(), a.clone()].concat();
        let mut fr = Framer::new(&sp());
        let range = stream.as_ptr_range();
        let mut n = 0;
        fr.push(&stream, &mut |u| {
            assert!(range.contains(&u.data.as_ptr()), "not copied");
            n += 1;
        });
        assert_eq!(n, 2);
        // A split unit comes from the buffer, and the one after it from the input.
        let mut fr = Framer::new(&sp());
        fr.push(&stream[..3], &mut |_| panic!("incomplete"));
        assert_eq!(fr.buffered(), 3);
        let rest = &stream[3..];
        let r = rest.as_ptr_range();
        let mut from_input = Vec::new();
        fr.push(rest, &mut |u| from_input.push(r.contains(&u.data.as_ptr())));
        assert_eq!(from_input, vec![false, true]);
        assert_eq!(fr.buffered(), 0);
        assert!(fr.buf.capacity() <= 65542, "bounded: {}", fr.buf.capacity());
    }

    #[test]
    fn space_packets_resynchronize_after_garbage() {
        let a = space_packet(0x100, 1, b"first");
        let b = space_packet(0x100, 2, b"second");
        // 0xE0.. has version bits 111: not a packet; each garbage byte is dropped.
        let garbage = [0xE0, 0xFF, 0x20, 0x41];
        let stream = [a.clone(), garbage.to_vec(), b.clone()].concat();
        let (units, stats) = assert_split_independent(&sp(), &stream);
        assert_eq!(units, vec![a, b]);
        assert_eq!(stats.framing_errors, 1, "one run of garbage, one error");
        assert_eq!(stats.bytes_discarded, 4);
    }

    #[test]
    fn space_packets_over_max_length_are_skipped() {
        let f = framing(json!({"kind": "ccsds_space_packet", "max_length": 20}));
        let big = space_packet(0x10, 5, &[0x55; 30]);
        let ok = space_packet(0x10, 6, &[0x66; 10]);
        let stream = [big.clone(), ok.clone()].concat();
        let (units, stats) = assert_split_independent(&f, &stream);
        // The big packet's bytes are dropped one by one until the next good header.
        assert_eq!(units, vec![ok]);
        assert_eq!(stats.framing_errors, 1);
        assert_eq!(stats.bytes_discarded, big.len() as u64);
    }

    #[test]
    fn reset_drops_a_partial_unit() {
        let a = space_packet(0x100, 1, b"hello");
        let mut fr = Framer::new(&sp());
        fr.push(&a[..8], &mut |_| panic!("incomplete"));
        fr.reset();
        assert_eq!(fr.buffered(), 0);
        let mut units = Vec::new();
        fr.push(&a, &mut |u| units.push(u.data.to_vec()));
        assert_eq!(units, vec![a]);
        assert_eq!(
            fr.stats(),
            FramingStats {
                units: 1,
                framing_errors: 0,
                bytes_discarded: 8
            }
        );
    }

    // --- TM frames --------------------------------------------------------

    fn tm(len: usize, keep: bool) -> Framing {
        framing(json!({"kind": "ccsds_tm_frame", "length": len, "keep_sync": keep}))
    }

    #[test]
    fn tm_frames_after_the_asm() {
        let f1 = tm_frame(42, 3, 0, 0, 0, &[1; 20], true);
        let f2 = tm_frame(42, 3, 1, 1, 0, &ASM.repeat(5), true); // the ASM inside data
        let stream = [f1.clone(), f2.clone()].concat();
        let (units, stats) = assert_split_independent(&tm(28, false), &stream);
        assert_eq!(units, vec![f1[4..].to_vec(), f2[4..].to_vec()]);
        assert!(units.iter().all(|u| fecf_ok(u)));
        assert_eq!(stats.framing_errors, 0);
        let (units, _) = run(&tm(28, true), &[&stream]);
        assert_eq!(data_of(&units), vec![f1, f2]);
    }

    #[test]
    fn tm_frames_skip_to_the_next_asm() {
        let f1 = tm_frame(1, 0, 0, 0, 0, &[9; 10], true);
        let f2 = tm_frame(1, 0, 1, 1, 0, &[8; 10], true);
        // Garbage with a partial ASM in it, and a frame missing its ASM.
        let mut stream = b"\x00\x1A\xCF\x11junk".to_vec();
        stream.extend_from_slice(&f1);
        stream.extend_from_slice(&f1[4..]); // no ASM: not where expected
        stream.extend_from_slice(&f2);
        let (units, stats) = assert_split_independent(&tm(18, false), &stream);
        assert_eq!(units, vec![f1[4..].to_vec(), f2[4..].to_vec()]);
        assert_eq!(stats.framing_errors, 2);
        assert_eq!(stats.bytes_discarded, 8 + 18);
    }

    #[test]
    fn tm_frames_in_datagrams() {
        let f1 = tm_frame(1, 0, 0, 0, 0, &[9; 10], true);
        let mut fr = Framer::new(&tm(18, false));
        let mut units = Vec::new();
        let two = [f1.clone(), f1.clone()].concat();
        fr.units_in_datagram(&two, &mut |u| units.push(u.data.to_vec()));
        assert_eq!(units.len(), 2);
        // A frame cut short by the datagram's end is not continued by the next.
        fr.units_in_datagram(&f1[..10], &mut |_| panic!("incomplete"));
        fr.units_in_datagram(&f1[10..], &mut |_| panic!("no ASM"));
        assert_eq!(
            fr.stats(),
            FramingStats {
                units: 2,
                framing_errors: 2,
                bytes_discarded: f1.len() as u64
            }
        );
        assert_eq!(fr.buffered(), 0);
    }

    // --- fixed --------------------------------------------------------------

    #[test]
    fn fixed_units_without_sync() {
        let f = framing(json!({"kind": "fixed", "length": 3}));
        let (units, stats) = assert_split_independent(&f, b"abcdefgh");
        assert_eq!(units, vec![b"abc".to_vec(), b"def".to_vec()]);
        assert_eq!(stats.units, 2);
        let mut fr = Framer::new(&f);
        fr.push(b"gh", &mut |_| {});
        fr.reset();
        assert_eq!(fr.stats().bytes_discarded, 2);
    }

    #[test]
    fn fixed_units_with_sync_and_garbage() {
        let f = framing(json!({"kind": "fixed", "length": 4, "sync": "FAF320"}));
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\xFA\xF3\x20abcd");
        stream.extend_from_slice(b"\xFA\xFAxx"); // garbage with sync-like bytes
        stream.extend_from_slice(b"\xFA\xF3\x20\xFA\xF3\x20\xFA"); // the sync inside data
        stream.extend_from_slice(b"\xFA\xF3\x20efgh");
        stream.extend_from_slice(b"\xFA\xF3"); // a partial sync left at the end
        let (units, stats) = assert_split_independent(&f, &stream);
        assert_eq!(
            units,
            vec![
                b"abcd".to_vec(),
                b"\xFA\xF3\x20\xFA".to_vec(),
                b"efgh".to_vec()
            ]
        );
        assert_eq!(stats.framing_errors, 1);
        assert_eq!(stats.bytes_discarded, 4);
        let keep =
            framing(json!({"kind": "fixed", "length": 4, "sync": "FAF320", "keep_sync": true}));
        let (units, _) = run(&keep, &[&stream]);
        assert_eq!(units[0].0, b"\xFA\xF3\x20abcd");
    }

    // --- length field -------------------------------------------------------

    #[test]
    fn length_field_big_and_little_endian() {
        // A 2-byte length at offset 1 counting the bytes after it: total = v + 3.
        let f = framing(json!({"kind": "length", "offset": 1, "size": 2, "adjustment": 3}));
        let u1 = b"T\x00\x02hi".to_vec();
        let u2 = b"T\x00\x00".to_vec(); // total 3 = offset + size: allowed
        let (units, _) = assert_split_independent(&f, &[u1.clone(), u2.clone()].concat());
        assert_eq!(units, vec![u1, u2]);
        let le = framing(json!({"kind": "length", "size": 4, "endian": "little"}));
        let u = [6u8, 0, 0, 0, b'o', b'k'];
        let (units, _) = assert_split_independent(&le, &[u, u].concat());
        assert_eq!(units, vec![u.to_vec(), u.to_vec()]);
        // Negative adjustment: the field counts 10 more than the unit.
        let neg = framing(json!({"kind": "length", "size": 1, "adjustment": -10}));
        let (units, _) = run(&neg, &[&[13, 1, 2]]);
        assert_eq!(data_of(&units), vec![vec![13, 1, 2]]);
    }

    #[test]
    fn length_field_out_of_bounds_resynchronizes() {
        let f = framing(json!({"kind": "length", "size": 1, "max_length": 5}));
        // 0 (< 1 and < offset + size), 9 (> max_length): each byte dropped.
        let stream = [0u8, 9, 9, 3, b'a', b'b', 2, b'c'];
        let (units, stats) = assert_split_independent(&f, &stream);
        assert_eq!(units, vec![vec![3, b'a', b'b'], vec![2, b'c']]);
        assert_eq!(stats.framing_errors, 1);
        assert_eq!(stats.bytes_discarded, 3);
        let neg = framing(json!({"kind": "length", "size": 1, "adjustment": -5}));
        let (units, stats) = run(&neg, &[&[3, 6, 1]]);
        assert_eq!(data_of(&units), vec![vec![6]]);
        assert_eq!(stats.bytes_discarded, 2, "3 - 5 and 1 - 5 are below 1");
    }

    #[test]
    fn length_field_after_sync() {
        // EB90, then a 2-byte length (offset 0) + 2 = the unit without the sync.
        let f = framing(
            json!({"kind": "length", "offset": 0, "size": 2, "endian": "big",
            "adjustment": 2, "max_length": 100, "sync": "EB90"}),
        );
        let u1 = b"\xEB\x90\x00\x03abc".to_vec();
        let bad = b"\xEB\x90\xFF\xFFxyz".to_vec(); // 65537 > max_length
        let u2 = b"\xEB\x90\x00\x00".to_vec();
        let stream = [b"zz".to_vec(), u1.clone(), bad, u2.clone()].concat();
        let (units, stats) = assert_split_independent(&f, &stream);
        assert_eq!(units, vec![u1[2..].to_vec(), u2[2..].to_vec()]);
        assert_eq!(stats.framing_errors, 2);
        assert_eq!(stats.bytes_discarded, 2 + 7);
    }

    #[test]
    fn partial_unit_buffer_is_bounded() {
        let f = framing(json!({"kind": "length", "size": 2, "max_length": 1000, "sync": "EB90"}));
        let mut fr = Framer::new(&f);
        let mut unit = b"\xEB\x90\x03\xE8".to_vec();
        unit.resize(1002, 7);
        for c in unit.chunks(10) {
            fr.push(c, &mut |u| assert_eq!(u.data.len(), 1000));
            assert!(fr.buffered() <= 1002);
        }
        assert_eq!(fr.stats().units, 1);
        assert!(fr.buf.capacity() <= 1002);
    }

    // --- KISS ----------------------------------------------------------------

    fn kiss() -> Framing {
        framing(json!({"kind": "kiss"}))
    }

    #[test]
    fn kiss_frames_unescaped_with_ports() {
        let a = kiss_frame(0, b"plain");
        let b = kiss_frame(3, &[FEND, FESC, TFEND, TFESC, 1]);
        let stream = [a.clone(), vec![FEND, FEND], b.clone()].concat();
        let (units, stats) = assert_split_independent(&kiss(), &stream);
        assert_eq!(
            units,
            vec![b"plain".to_vec(), vec![FEND, FESC, TFEND, TFESC, 1]]
        );
        assert_eq!(
            stats,
            FramingStats {
                units: 2,
                framing_errors: 0,
                bytes_discarded: 0
            }
        );
        let (units, _) = run(&kiss(), &[&stream]);
        assert_eq!(
            units.iter().map(|u| u.1).collect::<Vec<_>>(),
            vec![Some(0), Some(3)]
        );
        // Frames sharing one FEND.
        let shared = [&a[..a.len() - 1], &b[..]].concat();
        assert_eq!(run(&kiss(), &[&shared]).0.len(), 2);
    }

    #[test]
    fn kiss_bad_frames_are_skipped() {
        let good = kiss_frame(0, b"ok");
        let mut stream = b"noise".to_vec(); // before the first FEND
        stream.extend_from_slice(&good);
        stream.extend_from_slice(&[FEND, 0x00, b'a', FESC, b'x', b'b', FEND]); // bad escape
        stream.extend_from_slice(&[FEND, 0x00, b'a', FESC, FEND]); // dangling escape
        stream.extend_from_slice(&[FEND, 0x01, 50, FEND]); // TX delay: not data
        stream.extend_from_slice(&[FEND, 0x00, FEND]); // empty data frame
        stream.extend_from_slice(&good);
        let (units, stats) = assert_split_independent(&kiss(), &stream);
        assert_eq!(units, vec![b"ok".to_vec(), b"ok".to_vec()]);
        assert_eq!(stats.framing_errors, 3);
        assert_eq!(stats.bytes_discarded, 5 + 5 + 3 + 2 + 1);
    }

    #[test]
    fn kiss_frames_over_max_length_are_errors() {
        let f = framing(json!({"kind": "kiss", "max_length": 4}));
        let stream = [kiss_frame(0, b"12345"), kiss_frame(0, b"1234")].concat();
        let (units, stats) = assert_split_independent(&f, &stream);
        assert_eq!(units, vec![b"1234".to_vec()]);
        assert_eq!(stats.framing_errors, 1);
        assert_eq!(stats.bytes_discarded, 6);
        let mut fr = Framer::new(&f);
        for b in &stream {
            fr.push(&[*b], &mut |_| {});
        }
        assert!(
            fr.kiss.buf.capacity() <= 5,
            "bounded: {}",
            fr.kiss.buf.capacity()
        );
    }

    #[test]
    fn kiss_reset_and_datagrams() {
        let a = kiss_frame(0, b"abc");
        let mut fr = Framer::new(&kiss());
        fr.push(&a[..3], &mut |_| panic!("incomplete"));
        assert_eq!(fr.buffered(), 2);
        // A datagram meanwhile leaves the stream's frame alone.
        let mut n = 0;
        fr.units_in_datagram(&a, &mut |u| {
            assert_eq!(u.data, b"abc");
            n += 1
        });
        fr.units_in_datagram(&a[..4], &mut |_| panic!("unterminated"));
        assert_eq!(n, 1);
        assert_eq!(fr.buffered(), 2);
        fr.reset();
        fr.push(&a, &mut |_| n += 1);
        assert_eq!(n, 2);
        assert_eq!(
            fr.stats(),
            FramingStats {
                units: 2,
                framing_errors: 1,
                bytes_discarded: 3 + 2
            }
        );
    }

    // --- damage shows while it happens ------------------------------------

    /// Every kind with a small bound, a good unit of it, and the start of a unit
    /// that can never be one (announced or growing past the bound), which more
    /// bytes `b` then follow; the most a framer may hold for it.
    fn damaged(kind: usize, b: &[u8]) -> (Framing, Vec<u8>, Vec<u8>, usize) {
        let good = b"unit data".as_slice();
        match kind {
            0 => (
                framing(json!({"kind": "ccsds_space_packet", "max_length": 64})),
                space_packet(0x10, 1, good),
                // Announces 65536 + 7 bytes; then bytes that start no packet.
                [
                    &space_packet(0x10, 2, &[0; 64])[..4],
                    &[0xFF, 0xFF],
                    &b.iter().map(|&x| x | 0xE0).collect::<Vec<_>>()[..],
                ]
                .concat(),
                64,
            ),
            1 => (
                framing(json!({"kind": "ccsds_tm_frame", "length": 32})),
                tm_frame(42, 1, 0, 0, 0, &[7; 24], true),
                // No ASM anywhere.
                b.iter().map(|&x| x & 0x0F).collect(),
                32 + 4,
            ),
            2 => (
                framing(json!({"kind": "fixed", "length": 16, "sync": "FAF320"})),
                [&[0xFA, 0xF3, 0x20][..], &[1; 16]].concat(),
                b.iter().map(|&x| x & 0x0F).collect(),
                16 + 3,
            ),
            3 => (
                framing(json!({"kind": "length", "size": 2, "max_length": 64, "sync": "EB90"})),
                [&[0xEB, 0x90, 0, 11][..], good].concat(),
                [
                    &[0xEB, 0x90, 0x40, 0][..],
                    &b.iter().map(|&x| x & 0x7F).collect::<Vec<_>>(),
                ]
                .concat(),
                64 + 2,
            ),
            _ => (
                framing(json!({"kind": "kiss", "max_length": 64})),
                kiss_frame(0, good),
                // A frame that never ends.
                [
                    &[FEND, 0x00][..],
                    &b.iter().map(|&x| x & 0x7F).collect::<Vec<_>>(),
                ]
                .concat(),
                2 * 65,
            ),
        }
    }

    proptest::proptest! {
        /// A unit that cannot be one is a framing error as soon as it shows,
        /// while the stream goes on (no reset, no end), and is never held past
        /// the bound: in every framing mode, however the stream is cut.
        #[test]
        fn a_unit_past_its_bound_is_an_error_at_once(
            kind in 0..5usize,
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 200..3000),
            cuts in proptest::collection::vec(1..400usize, 1..20),
        ) {
            let (f, good, bad, bound) = damaged(kind, &tail);
            let stream = [good.clone(), bad].concat();
            let mut fr = Framer::new(&f);
            let mut units = 0;
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at == stream.len() {
                    break;
                }
                let end = (at + c).min(stream.len());
                fr.push(&stream[at..end], &mut |_| units += 1);
                at = end;
                proptest::prop_assert!(fr.buffered() <= bound, "holds {} > {bound}", fr.buffered());
                if at > good.len() + bound {
                    proptest::prop_assert!(fr.stats().framing_errors >= 1, "no error after {at} bytes");
                }
            }
            proptest::prop_assert_eq!(units, 1, "the good unit, and no other");
            let st = fr.stats();
            proptest::prop_assert!(st.framing_errors >= 1);
            proptest::prop_assert!(
                st.bytes_discarded + fr.buffered() as u64 >= (stream.len() - good.len() - bound) as u64,
                "discarded as it comes: {st:?}"
            );
        }
    }

    // --- headers and CRC ----------------------------------------------------

    #[test]
    fn crc_check_value_and_fecf() {
        assert_eq!(crc16_ccitt(b"123456789"), 0x29B1);
        assert_eq!(crc16_ccitt(b""), 0xFFFF);
        let f = tm_frame(42, 3, 7, 9, 0, b"payload", false);
        assert!(fecf_ok(&f));
        let mut bad = f.clone();
        bad[8] ^= 1;
        assert!(!fecf_ok(&bad));
        assert!(
            !fecf_ok(&[0xFF, 0xFF]),
            "too short to hold data and an FECF"
        );
        assert!(!fecf_ok(&[]));
    }

    #[test]
    fn header_fields() {
        let p = space_packet(0x123, 0x3ABC, b"x");
        let h = SpacePacketHeader::parse(&p).unwrap();
        assert_eq!(
            (h.version, h.apid, h.sequence_count, h.sequence_flags),
            (0, 0x123, 0x3ABC, 3)
        );
        assert_eq!(h.total_len(), p.len());
        assert!(!h.is_idle());
        assert!(SpacePacketHeader::parse(&p[..5]).is_none());
        let f = tm_frame(0x3FF, 7, 200, 100, OID_FIRST_HEADER_POINTER, b"", false);
        let h = TmFrameHeader::parse(&f).unwrap();
        assert_eq!(
            (h.version, h.scid, h.vcid, h.mc_count, h.vc_count),
            (0, 0x3FF, 7, 200, 100)
        );
        assert!(h.is_idle());
        assert!(TmFrameHeader::parse(&f[..5]).is_none());
    }
}
