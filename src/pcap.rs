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

    fn datalink(self) -> DataLink {
        match self {
            LinkType::User0 => DataLink::USER0,
            LinkType::Ethernet => DataLink::ETHERNET,
            LinkType::Ipv4 => DataLink::IPV4,
            LinkType::Ipv6 => DataLink::IPV6,
        }
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

/// The precision of the bsc file `name` in `dir` (any link type), by its magic;
/// `None` when it cannot be read or is not a pcap file bsc writes.
pub fn precision_of(dir: &OwnedFd, name: &str) -> Option<Precision> {
    let mut file = sys::open_file_at(dir, name, OpenMode::Existing).ok()?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).ok()?;
    Precision::ALL
        .into_iter()
        .find(|&p| global_header(LinkType::User0, p)[..4] == magic)
}

/// What the final (read-only) bsc file `name` in `dir` holds, read without
/// writing: its records, identity and size. `None` when it is writable (not
/// final) or its header is not the one bsc writes for `link` at `precision`.
pub fn scan_final(
    dir: &OwnedFd,
    name: &str,
    link: LinkType,
    precision: Precision,
) -> io::Result<Option<(Scan, FileId, u64)>> {
    let mut file = sys::open_file_at(dir, name, OpenMode::Read)?;
    let meta = file.metadata()?;
    let mut have = [0u8; GLOBAL_HEADER_LEN];
    let got = read_up_to(&mut file, &mut have)?;
    let writable = meta.permissions().mode() & 0o200 != 0;
    if !meta.is_file()
        || writable
        || got < GLOBAL_HEADER_LEN
        || have != global_header(link, precision)
    {
        return Ok(None);
    }
    let scan = scan_records(&mut file, meta.len(), precision)?;
    Ok(Some((scan, (meta.dev(), meta.ino()), meta.len())))
}

/// Whether the bsc file `name` in `dir` starts as bsc writes files for `link`
/// at `precision` (a header cut short by a crash included): whether
/// [`PcapFile::open`] may append to it, as far as its header says.
pub fn starts_with_header(dir: &OwnedFd, name: &str, link: LinkType, precision: Precision) -> bool {
    let Ok(mut file) = sys::open_file_at(dir, name, OpenMode::Read) else {
        return false;
    };
    let mut have = [0u8; GLOBAL_HEADER_LEN];
    read_up_to(&mut file, &mut have)
        .is_ok_and(|got| have[..got] == global_header(link, precision)[..got])
}

/// How [`PcapFile::open`] made a file ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// A new file, header written.
    Created,
    /// An existing file with a matching header; `torn_bytes` of a partial last
    /// record were cut off first (0 when the file was whole).
    Appended { torn_bytes: u64 },
}

/// What [`PcapFile::open`] found at a name.
#[derive(Debug)]
pub enum Attempt {
    Ready(PcapFile, Opened),
    /// The name cannot be used, and why: it exists and appending is not allowed,
    /// it is a closed (final, read-only) file, or its header is not bsc's.
    Taken(String),
}

/// What happened to an open file behind bsc's back.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Vanished {
    /// Deleted (no name links to it any more): what is written to it is lost.
    Deleted,
    /// Its name now leads elsewhere or nowhere (moved, or its folder removed),
    /// but the data is still in some file.
    Moved,
}

/// A capture file being written: the only owner of its descriptor and of the
/// bookkeeping that keeps it valid.
///
/// Invariants: `len` is the length of the header and the whole records on disk;
/// a failed append is cut back to it, so the file never ends in a torn record
/// that bsc wrote while running; [`PcapFile::finish`] makes the file read-only,
/// which is how bsc (and anyone downstream) knows it is final: bsc never opens a
/// file without an owner write bit for appending.
#[derive(Debug)]
pub struct PcapFile {
    file: File,
    path: PathBuf,
    len: u64,
    records: u64,
    created: bool,
    unsynced: bool,
    /// When data was last forced to the disk (`None`: not looked at since
    /// it was opened; the first look starts the interval).
    synced_at: Option<UnixMicros>,
    /// Device and inode, to notice the name leading elsewhere.
    identity: FileId,
    /// The records it already had when opened for appending.
    earlier: Scan,
}

/// A file's identity: device and inode (two names can lead to one file).
pub type FileId = (u64, u64);

/// Mode of a file being written (owner read/write, group read).
pub const MODE_OPEN: u32 = 0o640;
/// Mode of a closed, final file (read-only).
pub const MODE_CLOSED: u32 = 0o440;

impl PcapFile {
    /// Opens `name` in the folder `dir` (`path` is its full path, for messages)
    /// for appending `link` records at `precision`: creates it with a header, or,
    /// when `may_append`, appends to an existing writable file whose header
    /// matches (link type and precision too)
    /// (after cutting off a torn last record) unless it is `busy` (another
    /// handler has it open, under whatever name) or has other hard links (one of
    /// them could be outside the root). Nothing is changed in a file refused.
    pub fn open(
        dir: &OwnedFd,
        name: &str,
        path: PathBuf,
        link: LinkType,
        precision: Precision,
        may_append: bool,
        busy: &dyn Fn(FileId) -> bool,
    ) -> io::Result<Attempt> {
        let want = global_header(link, precision);
        match sys::open_file_at(dir, name, OpenMode::CreateNew) {
            Ok(mut file) => {
                if let Err(e) = file.write_all(&want) {
                    // A full disk: leave no empty or half-headed file behind.
                    drop(file);
                    let _ = sys::unlink_at(dir, name);
                    return Err(e);
                }
                let f = PcapFile::new(file, path, GLOBAL_HEADER_LEN as u64, true)?;
                return Ok(Attempt::Ready(f, Opened::Created));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if !may_append {
            return Ok(Attempt::Taken("the name exists".into()));
        }
        let mut file = match sys::open_file_at(dir, name, OpenMode::Existing) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Attempt::Taken("it vanished while being opened".into()))
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Ok(Attempt::Taken(
                    "it is a symbolic link, and bsc writes no file through a link".into(),
                ))
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(Attempt::Taken("it is not a plain file".into()));
        }
        if meta.permissions().mode() & 0o200 == 0 {
            return Ok(Attempt::Taken(
                "it is a closed, final (read-only) file".into(),
            ));
        }
        if busy((meta.dev(), meta.ino())) {
            return Ok(Attempt::Taken("another handler is writing it".into()));
        }
        if meta.nlink() > 1 {
            return Ok(Attempt::Taken(
                "it has other hard links, and bsc writes no file another name leads to".into(),
            ));
        }
        let size = meta.len();
        let mut have = [0u8; GLOBAL_HEADER_LEN];
        let got = read_up_to(&mut file, &mut have)?;
        if got < GLOBAL_HEADER_LEN && have[..got] == want[..got] {
            // Empty (AIT leaves such files) or a header cut short: nothing to lose.
            file.set_len(0)?;
            file.write_all(&want)?;
            let f = PcapFile::new(file, path, GLOBAL_HEADER_LEN as u64, false)?;
            return Ok(Attempt::Ready(
                f,
                Opened::Appended {
                    torn_bytes: got as u64,
                },
            ));
        }
        if have != want {
            return Ok(Attempt::Taken(describe_mismatch(
                &have[..got],
                link,
                precision,
            )));
        }
        let scan = scan_records(&mut file, size, precision)?;
        if scan.end < size {
            file.set_len(scan.end)?;
        }
        let mut f = PcapFile::new(file, path, scan.end, false)?;
        f.earlier = scan;
        Ok(Attempt::Ready(
            f,
            Opened::Appended {
                torn_bytes: size - scan.end,
            },
        ))
    }

    fn new(file: File, path: PathBuf, len: u64, created: bool) -> io::Result<PcapFile> {
        let meta = file.metadata()?;
        Ok(PcapFile {
            file,
            path,
            len,
            records: 0,
            created,
            unsynced: false,
            synced_at: None,
            identity: (meta.dev(), meta.ino()),
            earlier: Scan::default(),
        })
    }

    /// Appends `bytes` holding `records` whole records (one `write`, looping only
    /// on short writes). On failure the file is cut back to its last whole record;
    /// the error says whether that worked.
    pub fn append(&mut self, bytes: &[u8], records: u64) -> io::Result<()> {
        self.append_parts(std::iter::once(bytes), records)
    }

    /// Appends the concatenation of `parts`, holding `records` whole records, with
    /// one gathering `writev` per [`MAX_IOV`] parts (looping only on short
    /// writes): record headers and payloads go from wherever they lie, the
    /// payloads from the receive slots they arrived in. On failure the file is cut
    /// back to its last whole record, as [`PcapFile::append`].
    pub fn append_parts<'a>(
        &mut self,
        parts: impl IntoIterator<Item = &'a [u8]>,
        records: u64,
    ) -> io::Result<()> {
        let mut parts = parts.into_iter().filter(|p| !p.is_empty()).peekable();
        let mut written = 0u64;
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut outcome = Ok(());
        while parts.peek().is_some() {
            let mut n = 0;
            for p in parts.by_ref().take(MAX_IOV) {
                iov[n] = IoSlice::new(p);
                n += 1;
            }
            match write_all_vectored(&mut self.file, &mut iov[..n]) {
                Ok(bytes) => written += bytes,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        match outcome {
            Ok(()) => {
                self.len += written;
                self.records += records;
                self.unsynced |= written > 0;
                Ok(())
            }
            Err(e) => Err(match self.file.set_len(self.len) {
                Ok(()) => e,
                Err(cut) => io::Error::new(
                    e.kind(),
                    format!("{e}; could not cut the partial write off ({cut}): it will be repaired if the file is reopened"),
                ),
            }),
        }
    }

    /// Forces written data to the disk (`fdatasync`) if any is not yet;
    /// `now` is the wall clock's.
    pub fn sync(&mut self, now: UnixMicros) -> io::Result<()> {
        self.synced_at = Some(now);
        self.force()
    }

    /// Forces written data to the disk if any is not yet.
    fn force(&mut self) -> io::Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        self.unsynced = false;
        self.file.sync_data()
    }

    /// Whether data has waited at least `every` to be forced to the disk at
    /// `now` (the wall clock's; one stepped back before the last sync makes it
    /// due at once).
    pub fn sync_due(&mut self, every: Duration, now: UnixMicros) -> bool {
        let since = *self.synced_at.get_or_insert(now);
        self.unsynced && (now.0 - since.0 >= every.as_micros() as i64 || now < since)
    }

    /// Closes the file for good: forces it to the disk and makes it read-only
    /// ([`MODE_CLOSED`]), the mark of a final file.
    pub fn finish(mut self) -> io::Result<()> {
        let synced = self.force();
        self.file
            .set_permissions(std::fs::Permissions::from_mode(MODE_CLOSED))?;
        synced
    }

    /// Whether the file was deleted, or its name now leads elsewhere.
    pub fn vanished(&self) -> Option<Vanished> {
        match self.file.metadata() {
            Ok(m) if m.nlink() == 0 => return Some(Vanished::Deleted),
            Ok(_) => {}
            Err(_) => return Some(Vanished::Deleted),
        }
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.identity => None,
            _ => Some(Vanished::Moved),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Device and inode.
    pub fn identity(&self) -> FileId {
        self.identity
    }

    /// Bytes on disk: header and whole records.
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Records written since it was opened.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The records the file already had when it was opened (none if created).
    pub fn earlier(&self) -> Scan {
        self.earlier
    }

    /// Whether bsc created this file (rather than appending to an existing one).
    pub fn created(&self) -> bool {
        self.created
    }
}

/// Writes every byte of `iov` (one `writev`, more only after a short write);
/// returns how many that was.
fn write_all_vectored(file: &mut File, mut iov: &mut [IoSlice<'_>]) -> io::Result<u64> {
    let mut total = 0u64;
    while !iov.is_empty() {
        match file.write_vectored(iov) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => {
                total += n as u64;
                IoSlice::advance_slices(&mut iov, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
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

/// What the record headers of a file say.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// The offset just past the last whole record.
    pub end: u64,
    pub records: u64,
    pub first_ts: Option<UnixMicros>,
    pub last_ts: Option<UnixMicros>,
}

/// Walks the record headers of a file whose global header matched. Reads headers
/// only; payloads are skipped. The timestamps are kept at microseconds.
fn scan_records(file: &mut File, size: u64, precision: Precision) -> io::Result<Scan> {
    file.seek(SeekFrom::Start(GLOBAL_HEADER_LEN as u64))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut scan = Scan {
        end: GLOBAL_HEADER_LEN as u64,
        ..Scan::default()
    };
    let mut header = [0u8; RECORD_HEADER_LEN];
    loop {
        if size - scan.end < RECORD_HEADER_LEN as u64 {
            return Ok(scan);
        }
        reader.read_exact(&mut header)?;
        let word =
            |i: usize| u32::from_ne_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let incl = word(8) as u64;
        if incl > SNAPLEN as u64 || size - scan.end - (RECORD_HEADER_LEN as u64) < incl {
            // Torn (or garbage from a crash): everything from here is cut off.
            return Ok(scan);
        }
        reader.seek_relative(incl as i64)?;
        scan.end += RECORD_HEADER_LEN as u64 + incl;
        scan.records += 1;
        let frac = match precision {
            Precision::Micro => word(4) as i64,
            Precision::Nano => word(4) as i64 / 1000,
        };
        let ts = UnixMicros(word(0) as i64 * 1_000_000 + frac);
        scan.first_ts.get_or_insert(ts);
        scan.last_ts = Some(ts);
    }
}

fn describe_mismatch(have: &[u8], link: LinkType, precision: Precision) -> String {
    match PcapHeader::from_slice(have) {
        Ok((_, h)) => format!(
            "it is a pcap v{}.{} file with link type {:?}, snaplen {}, {:?} timestamps, {:?}-endian; bsc writes v2.4, {:?}, snaplen {SNAPLEN}, {:?} timestamps, {:?}-endian",
            h.version_major, h.version_minor, h.datalink, h.snaplen, h.ts_resolution, h.endianness, link.datalink(), precision.resolution(), Endianness::native()
        ),
        Err(_) => "it is not a pcap file".to_string(),
    }
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
        let h = global_header(LinkType::User0, Precision::Micro);
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
                global_header(LinkType::Ethernet, Precision::Micro)[20..24]
                    .try_into()
                    .unwrap()
            ),
            1
        );
    }

    #[test]
    fn record_encoding() {
        let mut out = Vec::new();
        let n = encode_record(
            &mut out,
            Precision::Micro,
            UnixMicros(1_795_845_904_000_123).into(),
            b"hello",
            5,
        );
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
        encode_record(
            &mut out,
            Precision::Micro,
            UnixMicros(0).into(),
            &big,
            big.len(),
        );
        assert_eq!(out.len(), 16 + 65535);
        assert_eq!(u32::from_ne_bytes(out[12..16].try_into().unwrap()), 70_000);
    }

    #[test]
    fn nanosecond_header_and_records() {
        let h = global_header(LinkType::User0, Precision::Nano);
        assert_eq!(u32::from_ne_bytes(h[0..4].try_into().unwrap()), 0xa1b2_3c4d);
        if cfg!(target_endian = "little") {
            assert_eq!(h[0..4], [0x4d, 0x3c, 0xb2, 0xa1]);
        }
        // Only the magic differs from the microsecond header.
        assert_eq!(
            h[4..],
            global_header(LinkType::User0, Precision::Micro)[4..]
        );
        let (_, parsed) = PcapHeader::from_slice(&h).unwrap();
        assert_eq!(parsed.ts_resolution, TsResolution::NanoSecond);
        assert_eq!(parsed.datalink, DataLink::USER0);

        let ts = UnixNanos(1_795_845_904_000_123_456);
        let mut out = Vec::new();
        assert_eq!(encode_record(&mut out, Precision::Nano, ts, b"hi", 2), 18);
        let word = |o: &[u8], i: usize| u32::from_ne_bytes(o[i..i + 4].try_into().unwrap());
        assert_eq!(word(&out, 0), 1_795_845_904);
        assert_eq!(word(&out, 4), 123_456);
        assert_eq!(word(&out, 8), 2);
        assert_eq!(word(&out, 12), 2);
        assert_eq!(&out[16..], b"hi");
        // The same instant in a microsecond file: truncated to the microsecond.
        out.clear();
        encode_record(&mut out, Precision::Micro, ts, b"hi", 2);
        assert_eq!(word(&out, 0), 1_795_845_904);
        assert_eq!(word(&out, 4), 123);
    }

    #[test]
    fn precisions_never_mix_in_one_file() {
        let dir = temp_dir("precision");
        let d = sys::open_dir_beneath(&dir, &[], false).unwrap();
        let open_at = |name: &str, p: Precision| {
            PcapFile::open(&d, name, dir.join(name), LinkType::User0, p, true, &|_| {
                false
            })
            .unwrap()
        };
        for (name, made, other) in [
            ("n.pcap", Precision::Nano, Precision::Micro),
            ("u.pcap", Precision::Micro, Precision::Nano),
        ] {
            let (mut f, how) = ready(open_at(name, made));
            assert_eq!(how, Opened::Created);
            let mut buf = Vec::new();
            encode_record(&mut buf, made, UnixNanos(1_000_000_789), b"one", 3);
            f.append(&buf, 1).unwrap();
            drop(f);
            let before = std::fs::read(dir.join(name)).unwrap();
            match open_at(name, other) {
                Attempt::Taken(why) => assert!(why.contains("timestamps"), "{why}"),
                Attempt::Ready(..) => panic!("{name}: {made:?} file opened for {other:?}"),
            }
            assert_eq!(std::fs::read(dir.join(name)).unwrap(), before);
            // The same precision appends, and the scan reads its timestamps.
            let (f, how) = ready(open_at(name, made));
            assert_eq!(how, Opened::Appended { torn_bytes: 0 });
            assert_eq!(f.earlier().first_ts, Some(UnixMicros(1_000_000)));
        }
        assert_eq!(precision_of(&d, "n.pcap"), Some(Precision::Nano));
        assert_eq!(precision_of(&d, "u.pcap"), Some(Precision::Micro));
        assert_eq!(precision_of(&d, "none.pcap"), None);
        // pcap-file reads the nanosecond file at nanoseconds.
        let mut r = PcapReader::new(File::open(dir.join("n.pcap")).unwrap()).unwrap();
        assert_eq!(r.header().ts_resolution, TsResolution::NanoSecond);
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(p.timestamp.as_nanos(), 1_000_000_789);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Opens `path` as a handler would (its folder created).
    fn open(path: &Path, may_append: bool) -> Attempt {
        let dir = sys::open_dir_beneath(path.parent().unwrap(), &[], true).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        PcapFile::open(
            &dir,
            name,
            path.to_path_buf(),
            LinkType::User0,
            Precision::Micro,
            may_append,
            &|_| false,
        )
        .unwrap()
    }

    fn ready(a: Attempt) -> (PcapFile, Opened) {
        match a {
            Attempt::Ready(f, how) => (f, how),
            Attempt::Taken(why) => panic!("taken: {why}"),
        }
    }

    #[test]
    fn create_then_append_then_repair_torn_record() {
        let dir = temp_dir("append");
        let path = dir.join("sub/a.pcap");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let (mut f, how) = ready(open(&path, true));
        assert_eq!(how, Opened::Created);
        let mut buf = Vec::new();
        encode_record(
            &mut buf,
            Precision::Micro,
            UnixMicros(1_000_000).into(),
            b"one",
            3,
        );
        f.append(&buf, 1).unwrap();
        drop(f);

        assert!(
            matches!(open(&path, false), Attempt::Taken(_)),
            "no append unless asked"
        );
        let (mut f, how) = ready(open(&path, true));
        assert_eq!(how, Opened::Appended { torn_bytes: 0 });
        assert_eq!(f.bytes(), 24 + 19);
        buf.clear();
        encode_record(
            &mut buf,
            Precision::Micro,
            UnixMicros(2_000_000).into(),
            b"two",
            3,
        );
        // Simulate a crash in the middle of this record.
        f.file.write_all(&buf[..10]).unwrap();
        drop(f);

        let (mut f, how) = ready(open(&path, true));
        assert_eq!(how, Opened::Appended { torn_bytes: 10 });
        f.append(&buf, 1).unwrap();
        f.finish().unwrap();
        let (h, records) = read_back(&path);
        assert_eq!(h.datalink, DataLink::USER0);
        assert_eq!(
            records,
            vec![(1_000_000, b"one".to_vec()), (2_000_000, b"two".to_vec())]
        );
        // Finished: read-only, and never appended to again.
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, MODE_CLOSED);
        match open(&path, true) {
            Attempt::Taken(why) => assert!(why.contains("closed"), "{why}"),
            Attempt::Ready(..) => panic!("a finished file was opened again"),
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn foreign_headers_and_links_are_never_touched() {
        let dir = temp_dir("foreign");
        let path = dir.join("x.pcap");
        std::fs::write(&path, global_header(LinkType::Ethernet, Precision::Micro)).unwrap();
        match open(&path, true) {
            Attempt::Taken(reason) => assert!(reason.contains("ETHERNET"), "{reason}"),
            Attempt::Ready(..) => panic!("foreign header accepted"),
        }
        let notes = dir.join("n.pcap");
        std::fs::write(&notes, b"operator's notes, not a pcap at all").unwrap();
        assert!(matches!(open(&notes, true), Attempt::Taken(_)));
        assert_eq!(
            std::fs::read(&notes).unwrap(),
            b"operator's notes, not a pcap at all"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            global_header(LinkType::Ethernet, Precision::Micro)
        );
        // A symlink is never written through, even to a valid pcap file.
        let target = dir.join("t.pcap");
        std::fs::write(&target, global_header(LinkType::User0, Precision::Micro)).unwrap();
        std::os::unix::fs::symlink(&target, dir.join("l.pcap")).unwrap();
        let d = sys::open_dir_beneath(&dir, &[], false).unwrap();
        match PcapFile::open(
            &d,
            "l.pcap",
            dir.join("l.pcap"),
            LinkType::User0,
            Precision::Micro,
            true,
            &|_| false,
        )
        .unwrap()
        {
            Attempt::Taken(why) => assert!(why.contains("symbolic link"), "{why}"),
            Attempt::Ready(..) => panic!("written through a link"),
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn empty_file_gets_a_header_and_garbage_after_header_is_cut() {
        let dir = temp_dir("empty");
        let path = dir.join("e.pcap");
        std::fs::write(&path, b"").unwrap();
        let (f, _) = ready(open(&path, true));
        assert_eq!(f.bytes(), 24);
        drop(f);
        // A record header claiming more than the snaplen is garbage: cut.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[
            0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 9, 9,
        ]);
        std::fs::write(&path, &bytes).unwrap();
        let (_, how) = ready(open(&path, true));
        assert_eq!(how, Opened::Appended { torn_bytes: 18 });
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn deletion_and_moves_are_noticed() {
        let dir = temp_dir("vanish");
        let path = dir.join("v.pcap");
        let (f, _) = ready(open(&path, true));
        assert_eq!(f.vanished(), None);
        std::fs::rename(&path, dir.join("w.pcap")).unwrap();
        assert_eq!(f.vanished(), Some(Vanished::Moved));
        std::fs::remove_file(dir.join("w.pcap")).unwrap();
        assert_eq!(f.vanished(), Some(Vanished::Deleted));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
