//! Classic libpcap files: the global header, record encoding, and opening a file
//! for appending safely.
//!
//! Invariants:
//! - bsc writes version 2.4, microsecond timestamps (nanosecond ones when a
//!   handler asks, [`Precision::Nano`]), snaplen 65535, in the host's byte order
//!   (what libpcap itself writes), so a record is never truncated;
//! - an existing file is only appended to if its global header is exactly the one
//!   bsc would write for that link type and precision (so a microsecond file never
//!   gets nanosecond records, nor the other way round), and after any torn last record (a crash
//!   in the middle of a write) has been cut off, so the file stays readable;
//! - a file whose header differs is never written into.
//!
//! - a closed file is final: [`PcapFile::finish`] makes it read-only, and a
//!   read-only file is never opened for appending.
//!
//! Encoding is pure ([`global_header`], [`encode_record`]); [`PcapFile`] is the
//! only thing here that touches the file system.

use std::fs::File;
use std::io::{self, BufReader, IoSlice, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcap::PcapHeader;
use pcap_file::{DataLink, Endianness, TsResolution};

use crate::clock::{UnixMicros, UnixNanos};
use crate::sys::{self, OpenMode};

/// Largest record payload bsc writes, and the snaplen of every file.
pub const SNAPLEN: u32 = 65535;
/// Size of the global header.
pub const GLOBAL_HEADER_LEN: usize = 24;
/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 16;
/// Most parts one `writev` takes (Linux's `UIO_MAXIOV`).
pub const MAX_IOV: usize = 1024;

/// The link types bsc writes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// 147, DLT_USER0: raw payloads (UDP datagrams, TCP reads), as AIT writes.
    User0,
    /// 1: whole Ethernet frames.
    Ethernet,
    /// 228: raw IPv4 packets (UDP with `record_source`).
    Ipv4,
    /// 229: raw IPv6 packets (UDP with `record_source`).
    Ipv6,
}

impl LinkType {
    /// Every link type bsc writes.
    pub const ALL: [LinkType; 4] = [
        LinkType::User0,
        LinkType::Ethernet,
        LinkType::Ipv4,
        LinkType::Ipv6,
    ];

    /// Its number in a file's header (`LINKTYPE_*`).
    pub fn number(self) -> u32 {
        match self {
            LinkType::User0 => 147,
            LinkType::Ethernet => 1,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
        }
    }

    /// The link type bsc writes that has this number, if any.
    pub fn from_number(link: u32) -> Option<LinkType> {
        LinkType::ALL.into_iter().find(|l| l.number() == link)
    }

    fn datalink(self) -> DataLink {
        match self {
            LinkType::User0 => DataLink::USER0,
            LinkType::Ethernet => DataLink::ETHERNET,
            LinkType::Ipv4 => DataLink::IPV4,
            LinkType::Ipv6 => DataLink::IPV6,
        }
    }
}

/// A link type number as messages name it: bsc's own by name (`USER0`,
/// `ETHERNET`, `IPV4`, `IPV6`), any other by its number.
pub fn link_name(link: u32) -> String {
    match LinkType::from_number(link) {
        Some(LinkType::User0) => "USER0".into(),
        Some(LinkType::Ethernet) => "ETHERNET".into(),
        Some(LinkType::Ipv4) => "IPV4".into(),
        Some(LinkType::Ipv6) => "IPV6".into(),
        None => link.to_string(),
    }
}

/// The resolution of a file's record timestamps (its magic number says which).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Microseconds (magic a1b2c3d4): the default, what AIT's readers expect.
    Micro,
    /// Nanoseconds (magic a1b23c4d).
    Nano,
}

impl Precision {
    /// Both precisions.
    pub const ALL: [Precision; 2] = [Precision::Micro, Precision::Nano];

    fn resolution(self) -> TsResolution {
        match self {
            Precision::Micro => TsResolution::MicroSecond,
            Precision::Nano => TsResolution::NanoSecond,
        }
    }
}

/// The 24-byte global header bsc writes for `link` at `precision`.
pub fn global_header(link: LinkType, precision: Precision) -> [u8; GLOBAL_HEADER_LEN] {
    let header = PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen: SNAPLEN,
        datalink: link.datalink(),
        ts_resolution: precision.resolution(),
        endianness: Endianness::native(),
    };
    let mut out = [0u8; GLOBAL_HEADER_LEN];
    // Writing 24 bytes into a 24-byte slice cannot fail.
    let _ = header.write_to(&mut &mut out[..]);
    out
}

/// Appends one record (header + the first [`SNAPLEN`] bytes of `payload`) to `out`.
/// `orig_len` is the length the unit really had (larger than the payload only when
/// the source truncated it); `ts` is written at `precision`. Returns the number of
/// bytes appended.
pub fn encode_record(
    out: &mut Vec<u8>,
    precision: Precision,
    ts: UnixNanos,
    payload: &[u8],
    orig_len: usize,
) -> usize {
    let incl = payload.len().min(SNAPLEN as usize);
    out.reserve(RECORD_HEADER_LEN + incl);
    record_header(out, precision, ts, incl, orig_len);
    out.extend_from_slice(&payload[..incl]);
    RECORD_HEADER_LEN + incl
}

/// Appends a record header for `incl` captured bytes (at most [`SNAPLEN`]) of a
/// unit `orig_len` long, stamped `ts` at `precision` (a microsecond file gets
/// the microsecond, truncated); the caller appends the `incl` bytes.
#[inline]
pub fn record_header(
    out: &mut Vec<u8>,
    precision: Precision,
    ts: UnixNanos,
    incl: usize,
    orig_len: usize,
) {
    // PCAP seconds are unsigned 32-bit: instants before 1970 are written as 0.
    let secs = ts.secs().clamp(0, u32::MAX as i64) as u32;
    let frac = match precision {
        Precision::Micro => ts.subsec_nanos() / 1000,
        Precision::Nano => ts.subsec_nanos(),
    };
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0..4].copy_from_slice(&secs.to_ne_bytes());
    h[4..8].copy_from_slice(&frac.to_ne_bytes());
    h[8..12].copy_from_slice(&(incl as u32).to_ne_bytes());
    h[12..16].copy_from_slice(&(orig_len.max(incl).min(u32::MAX as usize) as u32).to_ne_bytes());
    out.extend_from_slice(&h);
}

/// A file's identity: device and inode (two names can lead to one file).
pub type FileId = (u64, u64);

mod file;
pub mod reader;
mod scan;
#[cfg(test)]
mod tests;

pub use file::{Attempt, Opened, PcapFile, Vanished, MODE_CLOSED, MODE_OPEN};
pub use scan::{precision_of, scan_final, starts_with_header, Scan};
