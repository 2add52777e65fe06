//! Reading what a capture file holds without writing it: its precision, its
//! records (count and time span), whether it starts with a given header.

use super::*;

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
pub(super) fn scan_records(file: &mut File, size: u64, precision: Precision) -> io::Result<Scan> {
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

pub(super) fn describe_mismatch(have: &[u8], link: LinkType, precision: Precision) -> String {
    let resolution = |p| match p {
        Precision::Micro => "MicroSecond",
        Precision::Nano => "NanoSecond",
    };
    let endian = |big| if big { "Big" } else { "Little" };
    match reader::Header::parse(have) {
        Ok(h) => format!(
            "it is a pcap v{}.{} file with link type {}, snaplen {}, {} timestamps, {}-endian; bsc writes v2.4, {}, snaplen {SNAPLEN}, {} timestamps, {}-endian",
            h.version_major, h.version_minor, link_name(h.link), h.snaplen, resolution(h.precision), endian(h.big_endian), link_name(link.number()), resolution(precision), endian(cfg!(target_endian = "big"))
        ),
        Err(_) => "it is not a pcap file".to_string(),
    }
}

pub(super) fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
