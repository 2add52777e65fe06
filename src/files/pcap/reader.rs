//! Reading a classic pcap stream, any writer's, over any [`Read`] (a file, an
//! HTTP body): the global header (either byte order, the microsecond or the
//! nanosecond magic, any link type), then one record at a time. `bsc extract
//! FILE` and `bsc replay` read with it.
//!
//! Invariants:
//! - the reader buffers what it reads (64 KiB at a time, the source needs no
//!   `BufReader`) and hands each record out as a slice of that one buffer,
//!   which is reused: memory is the largest record read, at most
//!   [`MAX_RECORD`] bytes, never what a corrupt length field says;
//! - the end of the stream at a record boundary is the end of the records; an
//!   end inside the global header or a record is an error that says so;
//! - a record is checked as pcap-file's reader checked it (its fraction below a
//!   second, its lengths within the snaplen, the captured bytes within the
//!   original length), so the files bsc refused before are refused still.

use std::fmt;
use std::io::{self, Read};

use super::{Precision, GLOBAL_HEADER_LEN, RECORD_HEADER_LEN};
use crate::clock::UnixNanos;

/// The longest record read; a length above it is an error, not an allocation.
pub const MAX_RECORD: u32 = 16 << 20;

/// Bytes asked of the source at a time (and the buffer's first size).
const READ_SIZE: usize = 64 * 1024;

/// A classic pcap global header, as read.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version_major: u16,
    pub version_minor: u16,
    pub ts_correction: i32,
    pub ts_accuracy: u32,
    pub snaplen: u32,
    /// The link type (`LINKTYPE_*`: 1 Ethernet, 147 user0, 228 IPv4, ...).
    pub link: u32,
    pub precision: Precision,
    /// The file's byte order is big-endian (little-endian otherwise).
    pub big_endian: bool,
}

impl Header {
    /// The header at the start of `bytes` (at least [`GLOBAL_HEADER_LEN`]
    /// long); `Err` says why it is not a classic pcap header.
    pub fn parse(bytes: &[u8]) -> Result<Header, &'static str> {
        let b = bytes
            .get(..GLOBAL_HEADER_LEN)
            .ok_or("shorter than a pcap header")?;
        let (precision, big_endian) = match [b[0], b[1], b[2], b[3]] {
            [0xa1, 0xb2, 0xc3, 0xd4] => (Precision::Micro, true),
            [0xa1, 0xb2, 0x3c, 0x4d] => (Precision::Nano, true),
            [0xd4, 0xc3, 0xb2, 0xa1] => (Precision::Micro, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (Precision::Nano, false),
            _ => return Err("no pcap magic number"),
        };
        let half = |i: usize| {
            let h = [b[i], b[i + 1]];
            if big_endian {
                u16::from_be_bytes(h)
            } else {
                u16::from_le_bytes(h)
            }
        };
        let word = |i: usize| word(b, i, big_endian);
        Ok(Header {
            version_major: half(4),
            version_minor: half(6),
            ts_correction: word(8) as i32,
            ts_accuracy: word(12),
            snaplen: word(16),
            link: word(20),
            precision,
            big_endian,
        })
    }

    /// This header as this machine writes it (its own byte order).
    pub fn to_native_bytes(&self) -> [u8; GLOBAL_HEADER_LEN] {
        let magic: u32 = match self.precision {
            Precision::Micro => 0xa1b2_c3d4,
            Precision::Nano => 0xa1b2_3c4d,
        };
        let mut out = [0u8; GLOBAL_HEADER_LEN];
        out[0..4].copy_from_slice(&magic.to_ne_bytes());
        out[4..6].copy_from_slice(&self.version_major.to_ne_bytes());
        out[6..8].copy_from_slice(&self.version_minor.to_ne_bytes());
        out[8..12].copy_from_slice(&self.ts_correction.to_ne_bytes());
        out[12..16].copy_from_slice(&self.ts_accuracy.to_ne_bytes());
        out[16..20].copy_from_slice(&self.snaplen.to_ne_bytes());
        out[20..24].copy_from_slice(&self.link.to_ne_bytes());
        out
    }
}

/// The 32-bit word at `i` of `b`, in the file's byte order.
fn word(b: &[u8], i: usize, big_endian: bool) -> u32 {
    let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
    if big_endian {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    }
}

/// One record: its instant, the length the packet had, the bytes captured
/// (borrowed from the reader until the next call).
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub at: UnixNanos,
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// Why a stream could not be read. Its text names the record (counted from
/// 1) when it is about one; the caller puts the stream's name before it.
#[derive(Debug)]
pub enum ReadError {
    /// The stream ends inside the global header.
    ShortHeader,
    /// The global header is not a classic pcap's (why).
    NotPcap(&'static str),
    /// Record `n` ends before its length says.
    CutShort(u64),
    /// Record `n` says what no pcap record may (why).
    BadRecord(u64, &'static str),
    /// The source failed (in record `n`, or in the global header).
    Io(Option<u64>, io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ReadError::ShortHeader => f.write_str("not a pcap file (shorter than a pcap header)"),
            ReadError::NotPcap(why) => write!(
                f,
                "not a classic pcap file ({why}); a pcapng file converts with editcap -F pcap IN OUT"
            ),
            ReadError::CutShort(n) => {
                write!(f, "record {n} is cut short (the file ends inside it)")
            }
            ReadError::BadRecord(n, why) => write!(f, "record {n}: {why}"),
            ReadError::Io(None, e) => write!(f, "{e}"),
            ReadError::Io(Some(n), e) => write!(f, "record {n}: {e}"),
        }
    }
}

/// Reads a classic pcap stream: [`PcapReader::new`] reads the global header,
/// [`PcapReader::next_record`] each record.
pub struct PcapReader<R> {
    source: R,
    header: Header,
    /// Bytes read and not yet handed out are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Records handed out.
    records: u64,
}

impl<R: Read> PcapReader<R> {
    /// Reads the global header of `source`.
    pub fn new(source: R) -> Result<PcapReader<R>, ReadError> {
        let mut reader = PcapReader {
            source,
            header: Header {
                version_major: 0,
                version_minor: 0,
                ts_correction: 0,
                ts_accuracy: 0,
                snaplen: 0,
                link: 0,
                precision: Precision::Micro,
                big_endian: false,
            },
            buf: vec![0; READ_SIZE],
            start: 0,
            end: 0,
            records: 0,
        };
        let got = reader
            .fill(GLOBAL_HEADER_LEN)
            .map_err(|e| ReadError::Io(None, e))?;
        if got < GLOBAL_HEADER_LEN {
            return Err(ReadError::ShortHeader);
        }
        reader.header =
            Header::parse(&reader.buf[..GLOBAL_HEADER_LEN]).map_err(ReadError::NotPcap)?;
        reader.start = GLOBAL_HEADER_LEN;
        Ok(reader)
    }

    /// The global header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The next record; `None` at the end of the stream.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        let n = self.records + 1;
        let io = |e| ReadError::Io(Some(n), e);
        match self.fill(RECORD_HEADER_LEN).map_err(io)? {
            0 => return Ok(None),
            RECORD_HEADER_LEN => {}
            _ => return Err(ReadError::CutShort(n)),
        }
        let h = &self.buf[self.start..self.start + RECORD_HEADER_LEN];
        let big = self.header.big_endian;
        let (secs, frac, incl, orig_len) = (
            word(h, 0, big),
            word(h, 4, big),
            word(h, 8, big),
            word(h, 12, big),
        );
        if incl > MAX_RECORD {
            return Err(ReadError::BadRecord(
                n,
                "longer than 16 MiB, more than a pcap record holds",
            ));
        }
        let len = RECORD_HEADER_LEN + incl as usize;
        if self.fill(len).map_err(io)? < len {
            return Err(ReadError::CutShort(n));
        }
        let nanos = match self.header.precision {
            Precision::Micro => frac.checked_mul(1000),
            Precision::Nano => Some(frac),
        };
        let snaplen = self.header.snaplen;
        let why = match nanos {
            Some(ns) if ns < 1_000_000_000 => None,
            _ => Some("its time's fraction is a second or more"),
        }
        .or((incl > snaplen).then_some("more bytes than the file's snaplen"))
        .or((orig_len > snaplen).then_some("an original length over the file's snaplen"))
        .or((incl > orig_len).then_some("more bytes than its original length"));
        if let Some(why) = why {
            return Err(ReadError::BadRecord(n, why));
        }
        let data = &self.buf[self.start + RECORD_HEADER_LEN..self.start + len];
        self.start += len;
        self.records = n;
        Ok(Some(Record {
            at: UnixNanos(secs as i64 * 1_000_000_000 + nanos.unwrap_or(0) as i64),
            orig_len,
            data,
        }))
    }

    /// Makes `want` bytes available at `start`, reading as needed; returns
    /// how many are (fewer only at the end of the stream).
    fn fill(&mut self, want: usize) -> io::Result<usize> {
        if self.end - self.start >= want {
            return Ok(want);
        }
        if self.start + want > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if want > self.buf.len() {
                self.buf.resize(want, 0);
            }
        }
        while self.end - self.start < want {
            match self.source.read(&mut self.buf[self.end..]) {
                Ok(0) => break,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((self.end - self.start).min(want))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode_record, global_header, LinkType, SNAPLEN};
    use super::*;
    use proptest::prelude::*;

    /// Hands out its bytes `step` at a time (as a socket may), failing once
    /// with `Interrupted` first.
    struct Dribble<'a> {
        bytes: &'a [u8],
        step: usize,
        interrupted: bool,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if !self.interrupted {
                self.interrupted = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = self.bytes.len().min(out.len()).min(self.step);
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn dribble(bytes: &[u8], step: usize) -> Dribble<'_> {
        Dribble {
            bytes,
            step,
            interrupted: false,
        }
    }

    type Owned = (UnixNanos, u32, Vec<u8>);

    /// Every record of `bytes` read `step` bytes at a time, or the error
    /// that ended them.
    fn read_all(bytes: &[u8], step: usize) -> Result<(Header, Vec<Owned>), ReadError> {
        let mut r = PcapReader::new(dribble(bytes, step))?;
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push((rec.at, rec.orig_len, rec.data.to_vec()));
        }
        Ok((r.header(), out))
    }

    /// A file as bsc writes it: its header and each record encoded.
    fn file(link: LinkType, precision: Precision, records: &[Owned]) -> Vec<u8> {
        let mut out = global_header(link, precision).to_vec();
        for (at, orig_len, data) in records {
            encode_record(&mut out, precision, *at, data, *orig_len as usize);
        }
        out
    }

    /// `bytes` with every header field in the other byte order.
    fn swapped(bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let flip = |out: &mut Vec<u8>, at: usize, len: usize| out[at..at + len].reverse();
        for (at, len) in [(0, 4), (4, 2), (6, 2), (8, 4), (12, 4), (16, 4), (20, 4)] {
            flip(&mut out, at, len);
        }
        let mut at = GLOBAL_HEADER_LEN;
        while at < bytes.len() {
            let incl = u32::from_ne_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
            for i in 0..4 {
                flip(&mut out, at + 4 * i, 4);
            }
            at += RECORD_HEADER_LEN + incl;
        }
        out
    }

    fn micros(at: UnixNanos) -> UnixNanos {
        UnixNanos(at.0 / 1000 * 1000)
    }

    fn records() -> impl Strategy<Value = Vec<Owned>> {
        proptest::collection::vec(
            (
                0i64..=u32::MAX as i64 * 1_000_000_000 + 999_999_999,
                0u32..3,
                proptest::collection::vec(any::<u8>(), 0..300),
            )
                .prop_map(|(at, more, data)| (UnixNanos(at), data.len() as u32 + more, data)),
            0..12,
        )
    }

    proptest! {
        #[test]
        fn what_bsc_writes_reads_back_in_either_byte_order(
            records in records(),
            nano in any::<bool>(),
            step in 1usize..100_000,
        ) {
            let precision = if nano { Precision::Nano } else { Precision::Micro };
            for link in LinkType::ALL {
                let bytes = file(link, precision, &records);
                let expected: Vec<Owned> = records
                    .iter()
                    .map(|(at, o, d)| (if nano { *at } else { micros(*at) }, *o, d.clone()))
                    .collect();
                for (bytes, big) in [
                    (bytes.clone(), cfg!(target_endian = "big")),
                    (swapped(&bytes), cfg!(target_endian = "little")),
                ] {
                    let (header, got) = read_all(&bytes, step).unwrap();
                    prop_assert_eq!(&got, &expected);
                    prop_assert_eq!(header.precision, precision);
                    prop_assert_eq!(header.big_endian, big);
                    prop_assert_eq!(header.link, Header::parse(&global_header(link, precision)).unwrap().link);
                    prop_assert_eq!((header.version_major, header.version_minor, header.snaplen), (2, 4, SNAPLEN));
                    // Written back natively, the header is bsc's own.
                    prop_assert_eq!(header.to_native_bytes(), global_header(link, precision));
                }
            }
        }
    }

    #[test]
    fn link_types_are_the_numbers_of_the_format() {
        let link = |l| {
            Header::parse(&global_header(l, Precision::Micro))
                .unwrap()
                .link
        };
        assert_eq!(link(LinkType::User0), 147);
        assert_eq!(link(LinkType::Ethernet), 1);
        assert_eq!(link(LinkType::Ipv4), 228);
        assert_eq!(link(LinkType::Ipv6), 229);
    }

    #[test]
    fn a_cut_at_every_byte_is_an_end_or_says_where() {
        let records: Vec<Owned> = (0..4)
            .map(|i| {
                (
                    UnixNanos(1_796_652_000_000_000_000 + i),
                    5 + i as u32,
                    vec![i as u8; 5 + i as usize],
                )
            })
            .collect();
        let whole = file(LinkType::User0, Precision::Nano, &records);
        // Where each record ends.
        let mut ends = vec![GLOBAL_HEADER_LEN];
        for (_, _, d) in &records {
            ends.push(ends.last().unwrap() + RECORD_HEADER_LEN + d.len());
        }
        for (step, swap) in [(1, false), (7, true), (READ_SIZE, false)] {
            let whole = if swap { swapped(&whole) } else { whole.clone() };
            for cut in 0..=whole.len() {
                match (
                    read_all(&whole[..cut], step),
                    ends.iter().position(|&e| e == cut),
                ) {
                    (Err(ReadError::ShortHeader), _) => assert!(cut < GLOBAL_HEADER_LEN),
                    (Ok((_, got)), Some(n)) => assert_eq!(got, records[..n], "cut at {cut}"),
                    (Err(ReadError::CutShort(n)), None) => {
                        assert!(
                            cut > ends[n as usize - 1] && cut < ends[n as usize],
                            "cut at {cut}: record {n}"
                        );
                    }
                    (other, _) => panic!("cut at {cut}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn errors_say_what_the_callers_print() {
        let err = |bytes: &[u8]| read_all(bytes, READ_SIZE).unwrap_err().to_string();
        assert_eq!(err(b""), "not a pcap file (shorter than a pcap header)");
        assert!(
            err(b"operator's notes, not a pcap at all").starts_with("not a classic pcap file (")
        );
        assert!(err(b"\x0a\x0d\x0d\x0a pcapng section header.....").contains("editcap"));
        let one = file(
            LinkType::User0,
            Precision::Micro,
            &[(UnixNanos(0), 3, b"abc".to_vec())],
        );
        assert_eq!(
            err(&one[..one.len() - 1]),
            "record 1 is cut short (the file ends inside it)"
        );
        let two = [&one[..], &one[GLOBAL_HEADER_LEN..GLOBAL_HEADER_LEN + 10]].concat();
        assert_eq!(err(&two), "record 2 is cut short (the file ends inside it)");
    }

    #[test]
    fn records_no_pcap_holds_are_refused_without_reading_them() {
        let one = file(
            LinkType::User0,
            Precision::Micro,
            &[(UnixNanos(0), 3, b"abc".to_vec())],
        );
        let with = |at: usize, value: u32| {
            let mut b = one.clone();
            b[at..at + 4].copy_from_slice(&value.to_ne_bytes());
            b
        };
        let head = GLOBAL_HEADER_LEN;
        // A length of 4 GiB: refused at once (no 4 GiB buffer, no reading on).
        let huge = with(head + 8, u32::MAX);
        match read_all(&huge, READ_SIZE) {
            Err(ReadError::BadRecord(1, why)) => assert!(why.contains("16 MiB")),
            other => panic!("{other:?}"),
        }
        // 16 MiB + 1 with the bytes there: still refused.
        let mut big = with(head + 8, MAX_RECORD + 1);
        big.resize(head + RECORD_HEADER_LEN + MAX_RECORD as usize + 1, 0);
        assert!(matches!(
            read_all(&big, READ_SIZE),
            Err(ReadError::BadRecord(1, _))
        ));
        for (at, value) in [
            (head + 4, 1_000_000),    // a microsecond fraction of a second
            (head + 4, u32::MAX),     // one that overflows as nanoseconds
            (16, 2),                  // snaplen 2 < incl 3
            (head + 12, 2),           // orig_len 2 < incl 3
            (head + 12, SNAPLEN + 1), // orig_len over the snaplen
        ] {
            let bad = with(at, value);
            assert!(
                matches!(read_all(&bad, READ_SIZE), Err(ReadError::BadRecord(1, _))),
                "{at} = {value}"
            );
        }
        let mut nano = file(
            LinkType::User0,
            Precision::Nano,
            &[(UnixNanos(0), 3, b"abc".to_vec())],
        );
        nano[head + 4..head + 8].copy_from_slice(&999_999_999u32.to_ne_bytes());
        assert_eq!(read_all(&nano, 1).unwrap().1[0].0, UnixNanos(999_999_999));
        nano[head + 4..head + 8].copy_from_slice(&1_000_000_000u32.to_ne_bytes());
        assert!(read_all(&nano, 1).is_err());
    }

    #[test]
    fn a_record_larger_than_the_buffer_grows_it_and_the_next_fits() {
        let records: Vec<Owned> = [200_000usize, 10, READ_SIZE - RECORD_HEADER_LEN, 1]
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                (
                    UnixNanos(i as i64 * 1000),
                    len as u32,
                    vec![i as u8 + 1; len],
                )
            })
            .collect();
        let mut bytes = global_header(LinkType::User0, Precision::Nano).to_vec();
        // Written by hand: encode_record stops at bsc's own snaplen.
        for (at, _, data) in &records {
            let mut h = Vec::new();
            super::super::record_header(&mut h, Precision::Nano, *at, data.len(), data.len());
            bytes.extend_from_slice(&h);
            bytes.extend_from_slice(data);
        }
        bytes[16..20].copy_from_slice(&MAX_RECORD.to_ne_bytes());
        for step in [1000, READ_SIZE, 1 << 20] {
            assert_eq!(read_all(&bytes, step).unwrap().1, records);
        }
    }

    #[test]
    fn what_pcap_file_writes_in_either_byte_order_reads_back() {
        use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
        use pcap_file::{DataLink, Endianness, TsResolution};
        for endianness in [Endianness::Big, Endianness::Little] {
            for ts_resolution in [TsResolution::MicroSecond, TsResolution::NanoSecond] {
                let header = PcapHeader {
                    datalink: DataLink::RAW,
                    snaplen: 1000,
                    ts_resolution,
                    endianness,
                    ..PcapHeader::default()
                };
                let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
                let at = std::time::Duration::new(1_796_652_000, 123_456_000);
                w.write_packet(&PcapPacket::new(at, 900, b"datagram"))
                    .unwrap();
                let bytes = w.into_writer();
                let (h, got) = read_all(&bytes, 5).unwrap();
                assert_eq!((h.link, h.snaplen), (101, 1000));
                assert_eq!(h.big_endian, endianness == Endianness::Big);
                assert_eq!(
                    got,
                    [(
                        UnixNanos(1_796_652_000_123_456_000),
                        900,
                        b"datagram".to_vec()
                    )]
                );
            }
        }
    }

    #[test]
    fn a_failing_source_is_an_io_error_naming_the_record() {
        struct Fails;
        impl Read for Fails {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        assert_eq!(
            PcapReader::new(Fails).err().unwrap().to_string(),
            "disk on fire"
        );
        let one = file(
            LinkType::User0,
            Precision::Micro,
            &[(UnixNanos(0), 3, b"abc".to_vec())],
        );
        let mut r = PcapReader::new(one.as_slice().chain(Fails)).unwrap();
        assert!(r.next_record().unwrap().is_some());
        assert_eq!(
            r.next_record().unwrap_err().to_string(),
            "record 2: disk on fire"
        );
    }
}
