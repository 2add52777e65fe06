//! Stream framing, sans I/O: the bytes of a TCP stream (or of one UDP datagram) in,
//! telemetry units out, so that one PCAP record is one unit and not one `read`.
//!
//! [`Framing`] is the `framing` config value (read from JSON by
//! [`crate::config`]'s field reader, in `config/framing.rs`: this layer knows no
//! config); [`Framer`] (`framer.rs`) is the state of one connection: it is given
//! whatever the socket read ([`Framer::push`]) and calls back once per complete
//! [`Unit`]; KISS decoding is in `kiss.rs`. Also here: the CCSDS header fields the
//! other unit modules read ([`SpacePacketHeader`], [`TmFrameHeader`]: `ccsds.rs`)
//! and the TM frame's FECF ([`crc16_ccitt`], [`fecf_ok`]: `crc.rs`).
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

mod ccsds;
mod crc;
mod framer;
mod kiss;
#[cfg(any(test, feature = "testgen"))]
pub mod testgen;
#[cfg(test)]
mod tests;
mod unit;

pub use ccsds::{SpacePacketHeader, TmFrameHeader, IDLE_APID, OID_FIRST_HEADER_POINTER};
pub use crc::{crc16_ccitt, fecf_ok};
pub use framer::Framer;
pub use unit::{FramingStats, Unit};

/// Largest `length` of a fixed-length unit (and of a TM frame).
pub const MAX_FIXED_LEN: usize = 65535;
/// Largest `max_length` of a length-field or KISS unit (bounds the framer's buffer).
/// Records are still cut at [`crate::files::pcap::SNAPLEN`] when written.
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
    #[inline]
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
