//! Classic libpcap files: the global header, record encoding, and opening a file
//! for appending safely.
//!
//! Invariants:
//! - bsc writes version 2.4, microsecond timestamps, snaplen 65535, in the host's
//!   byte order (what libpcap itself writes), so a record is never truncated;
//! - an existing file is only appended to if its global header is exactly the one
//!   bsc would write for that link type, and after any torn last record (a crash
//!   in the middle of a write) has been cut off, so the file stays readable;
//! - a file whose header differs is never written into.
//!
//! Encoding is pure ([`global_header`], [`encode_record`]); [`open_or_append`] is the
//! only function here that touches the file system.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use pcap_file::pcap::PcapHeader;
use pcap_file::{DataLink, Endianness, TsResolution};

use crate::clock::UnixMicros;

/// Largest record payload bsc writes, and the snaplen of every file.
pub const SNAPLEN: u32 = 65535;
/// Size of the global header.
pub const GLOBAL_HEADER_LEN: usize = 24;
/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 16;

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
    fn datalink(self) -> DataLink {
        match self {
            LinkType::User0 => DataLink::USER0,
            LinkType::Ethernet => DataLink::ETHERNET,
            LinkType::Ipv4 => DataLink::IPV4,
            LinkType::Ipv6 => DataLink::IPV6,
        }
    }
}

/// The 24-byte global header bsc writes for `link`.
pub fn global_header(link: LinkType) -> [u8; GLOBAL_HEADER_LEN] {
    let header = PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen: SNAPLEN,
        datalink: link.datalink(),
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::native(),
    };
    let mut out = [0u8; GLOBAL_HEADER_LEN];
    // Writing 24 bytes into a 24-byte slice cannot fail.
    let _ = header.write_to(&mut &mut out[..]);
    out
}

/// Appends one record (header + the first [`SNAPLEN`] bytes of `payload`) to `out`.
/// `orig_len` is the length the unit really had (larger than the payload only when
/// the source truncated it). Returns the number of bytes appended.
pub fn encode_record(out: &mut Vec<u8>, ts: UnixMicros, payload: &[u8], orig_len: usize) -> usize {
    let incl = payload.len().min(SNAPLEN as usize);
    out.reserve(RECORD_HEADER_LEN + incl);
    record_header(out, ts, incl, orig_len);
    out.extend_from_slice(&payload[..incl]);
    RECORD_HEADER_LEN + incl
}

/// Appends a record header for `incl` captured bytes (at most [`SNAPLEN`]) of a
/// unit `orig_len` long; the caller appends the `incl` bytes.
pub fn record_header(out: &mut Vec<u8>, ts: UnixMicros, incl: usize, orig_len: usize) {
    // PCAP seconds are unsigned 32-bit: instants before 1970 are written as 0.
    let secs = ts.secs().clamp(0, u32::MAX as i64) as u32;
    out.extend_from_slice(&secs.to_ne_bytes());
    out.extend_from_slice(&ts.subsec_micros().to_ne_bytes());
    out.extend_from_slice(&(incl as u32).to_ne_bytes());
    out.extend_from_slice(&(orig_len.max(incl).min(u32::MAX as usize) as u32).to_ne_bytes());
}

/// A PCAP file opened for appending records.
#[derive(Debug)]
pub struct OpenedFile {
    pub file: File,
    pub path: PathBuf,
    /// Bytes in the file now (header and whole records only).
    pub len: u64,
    /// What was done to make the file ready.
    pub how: Opened,
    /// Whether this call created the file (as opposed to appending to one).
    pub created: bool,
}

/// How [`open_or_append`] made a file ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// A new file, header written.
    Created,
    /// An existing file with a matching header; `torn_bytes` of a partial last
    /// record were cut off first (0 when the file was whole).
    Appended { torn_bytes: u64 },
    /// The first name was taken by a file with another header; this is the next
    /// free (or matching) `-N` name.
    Renamed { original: PathBuf, reason: String },
}

/// Why a file could not be opened.
#[derive(Debug)]
pub struct OpenError {
    pub path: PathBuf,
    pub error: io::Error,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot open {}: {}", self.path.display(), self.error)
    }
}

/// Opens `path` for appending `link` records: creates it (and its folders) with a
/// header, or appends to it if its header matches (after cutting off a torn last
/// record), or, if its header does not match, tries `stem-1.ext`, `stem-2.ext`, ...
pub fn open_or_append(path: &Path, link: LinkType) -> Result<OpenedFile, OpenError> {
    let err = |path: &Path, error| OpenError {
        path: path.to_path_buf(),
        error,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    }
    let mut first_mismatch: Option<String> = None;
    for n in 0u32..1000 {
        let candidate = if n == 0 {
            path.to_path_buf()
        } else {
            numbered(path, n)
        };
        match try_open(&candidate, link).map_err(|e| err(&candidate, e))? {
            Attempt::Ready(mut opened) => {
                if let Some(reason) = first_mismatch {
                    opened.how = Opened::Renamed {
                        original: path.to_path_buf(),
                        reason,
                    };
                }
                return Ok(opened);
            }
            Attempt::Mismatch(reason) => {
                first_mismatch.get_or_insert(reason);
            }
        }
    }
    Err(err(
        path,
        io::Error::other("1000 files with this name and a foreign header; giving up"),
    ))
}

enum Attempt {
    Ready(OpenedFile),
    Mismatch(String),
}

fn try_open(path: &Path, link: LinkType) -> io::Result<Attempt> {
    let want = global_header(link);
    match OpenOptions::new().append(true).create_new(true).open(path) {
        Ok(mut file) => {
            if let Err(e) = file.write_all(&want) {
                // A full disk: leave no empty or half-headed file behind.
                drop(file);
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
            return Ok(Attempt::Ready(OpenedFile {
                file,
                path: path.to_path_buf(),
                len: GLOBAL_HEADER_LEN as u64,
                how: Opened::Created,
                created: true,
            }));
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let mut file = OpenOptions::new().read(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    let mut have = [0u8; GLOBAL_HEADER_LEN];
    let got = read_up_to(&mut file, &mut have)?;
    if got < GLOBAL_HEADER_LEN && have[..got] == want[..got] {
        // Empty (AIT leaves such files) or a header cut short: nothing to lose.
        file.set_len(0)?;
        file.write_all(&want)?;
        return Ok(Attempt::Ready(OpenedFile {
            file,
            path: path.to_path_buf(),
            len: GLOBAL_HEADER_LEN as u64,
            how: Opened::Appended {
                torn_bytes: got as u64,
            },
            created: false,
        }));
    }
    if have != want {
        return Ok(Attempt::Mismatch(describe_mismatch(&have[..got], link)));
    }
    let whole = whole_records_end(&mut file, size)?;
    if whole < size {
        file.set_len(whole)?;
    }
    Ok(Attempt::Ready(OpenedFile {
        file,
        path: path.to_path_buf(),
        len: whole,
        how: Opened::Appended {
            torn_bytes: size - whole,
        },
        created: false,
    }))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Walks the record headers of a file whose global header matched, and returns the
/// offset just past the last whole record. Reads headers only; payloads are skipped.
fn whole_records_end(file: &mut File, size: u64) -> io::Result<u64> {
    file.seek(SeekFrom::Start(GLOBAL_HEADER_LEN as u64))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut pos = GLOBAL_HEADER_LEN as u64;
    let mut header = [0u8; RECORD_HEADER_LEN];
    loop {
        if size - pos < RECORD_HEADER_LEN as u64 {
            return Ok(pos);
        }
        reader.read_exact(&mut header)?;
        let incl = u32::from_ne_bytes([header[8], header[9], header[10], header[11]]) as u64;
        if incl > SNAPLEN as u64 || size - pos - (RECORD_HEADER_LEN as u64) < incl {
            // Torn (or garbage from a crash): everything from here is cut off.
            return Ok(pos);
        }
        reader.seek_relative(incl as i64)?;
        pos += RECORD_HEADER_LEN as u64 + incl;
    }
}

fn describe_mismatch(have: &[u8], link: LinkType) -> String {
    match PcapHeader::from_slice(have) {
        Ok((_, h)) => format!(
            "it is a pcap v{}.{} file with link type {:?}, snaplen {}, {:?} timestamps, {:?}-endian; bsc writes v2.4, {:?}, snaplen {SNAPLEN}, microseconds, {:?}-endian",
            h.version_major, h.version_minor, h.datalink, h.snaplen, h.ts_resolution, h.endianness, link.datalink(), Endianness::native()
        ),
        Err(_) => "it is not a pcap file".to_string(),
    }
}

/// `dir/stem-N.ext` for `dir/stem.ext` (or `dir/name-N` without extension).
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::PcapReader;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bsc-pcap-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Reads a file back with pcap-file's reader (not bsc's writer).
    fn read_back(path: &Path) -> (PcapHeader, Vec<(u64, Vec<u8>)>) {
        let mut r = PcapReader::new(File::open(path).unwrap()).unwrap();
        let header = r.header();
        let mut out = Vec::new();
        while let Some(p) = r.next_packet() {
            let p = p.unwrap();
            out.push((p.timestamp.as_micros() as u64, p.data.into_owned()));
        }
        (header, out)
    }

    #[test]
    fn header_bytes_match_ait_on_little_endian() {
        let h = global_header(LinkType::User0);
        if cfg!(target_endian = "little") {
            // From AIT's file (reference/57): d4c3b2a1 0200 0400 ... ffff0000 93000000
            assert_eq!(
                h,
                [
                    0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0,
                    0x93, 0, 0, 0
                ]
            );
        }
        assert_eq!(
            u32::from_ne_bytes(
                global_header(LinkType::Ethernet)[20..24]
                    .try_into()
                    .unwrap()
            ),
            1
        );
    }

    #[test]
    fn record_encoding() {
        let mut out = Vec::new();
        let n = encode_record(&mut out, UnixMicros(1_795_845_904_000_123), b"hello", 5);
        assert_eq!(n, 21);
        assert_eq!(
            u32::from_ne_bytes(out[0..4].try_into().unwrap()),
            1_795_845_904
        );
        assert_eq!(u32::from_ne_bytes(out[4..8].try_into().unwrap()), 123);
        assert_eq!(u32::from_ne_bytes(out[8..12].try_into().unwrap()), 5);
        assert_eq!(u32::from_ne_bytes(out[12..16].try_into().unwrap()), 5);
        assert_eq!(&out[16..], b"hello");
        // Oversized: cut to the snaplen, orig_len keeps the truth.
        let big = vec![7u8; 70_000];
        out.clear();
        encode_record(&mut out, UnixMicros(0), &big, big.len());
        assert_eq!(out.len(), 16 + 65535);
        assert_eq!(u32::from_ne_bytes(out[12..16].try_into().unwrap()), 70_000);
    }

    #[test]
    fn create_then_append_then_repair_torn_record() {
        let dir = temp_dir("append");
        let path = dir.join("sub/a.pcap");
        let mut f = open_or_append(&path, LinkType::User0).unwrap();
        assert_eq!(f.how, Opened::Created);
        let mut buf = Vec::new();
        encode_record(&mut buf, UnixMicros(1_000_000), b"one", 3);
        f.file.write_all(&buf).unwrap();
        drop(f);

        let mut f = open_or_append(&path, LinkType::User0).unwrap();
        assert_eq!(f.how, Opened::Appended { torn_bytes: 0 });
        assert_eq!(f.len, 24 + 19);
        buf.clear();
        encode_record(&mut buf, UnixMicros(2_000_000), b"two", 3);
        // Simulate a crash in the middle of this record.
        f.file.write_all(&buf[..10]).unwrap();
        drop(f);

        let mut f = open_or_append(&path, LinkType::User0).unwrap();
        assert_eq!(f.how, Opened::Appended { torn_bytes: 10 });
        f.file.write_all(&buf).unwrap();
        drop(f);
        let (h, records) = read_back(&path);
        assert_eq!(h.datalink, DataLink::USER0);
        assert_eq!(
            records,
            vec![(1_000_000, b"one".to_vec()), (2_000_000, b"two".to_vec())]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn foreign_header_is_never_touched() {
        let dir = temp_dir("foreign");
        let path = dir.join("x.pcap");
        std::fs::write(&path, global_header(LinkType::Ethernet)).unwrap();
        let notes = dir.join("x-1.pcap");
        std::fs::write(&notes, b"operator's notes, not a pcap at all").unwrap();
        let f = open_or_append(&path, LinkType::User0).unwrap();
        assert_eq!(f.path, dir.join("x-2.pcap"));
        match &f.how {
            Opened::Renamed { original, reason } => {
                assert_eq!(original, &path);
                assert!(reason.contains("ETHERNET"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            global_header(LinkType::Ethernet)
        );
        assert_eq!(
            std::fs::read(&notes).unwrap(),
            b"operator's notes, not a pcap at all"
        );
        // After a restart the same fallback name is found and appended to.
        drop(f);
        let again = open_or_append(&path, LinkType::User0).unwrap();
        assert_eq!(again.path, dir.join("x-2.pcap"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn empty_file_gets_a_header_and_garbage_after_header_is_cut() {
        let dir = temp_dir("empty");
        let path = dir.join("e.pcap");
        std::fs::write(&path, b"").unwrap();
        let f = open_or_append(&path, LinkType::User0).unwrap();
        assert_eq!(f.len, 24);
        drop(f);
        // A record header claiming more than the snaplen is garbage: cut.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[
            0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 9, 9,
        ]);
        std::fs::write(&path, &bytes).unwrap();
        let f = open_or_append(&path, LinkType::User0).unwrap();
        assert_eq!(f.how, Opened::Appended { torn_bytes: 18 });
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn numbered_names() {
        assert_eq!(
            numbered(Path::new("/a/b.pcap"), 1),
            PathBuf::from("/a/b-1.pcap")
        );
        assert_eq!(numbered(Path::new("/a/b"), 2), PathBuf::from("/a/b-2"));
        assert_eq!(
            numbered(Path::new("/a/b.tar.pcap"), 3),
            PathBuf::from("/a/b.tar-3.pcap")
        );
    }
}
