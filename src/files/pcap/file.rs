//! [`PcapFile`], the owner of a capture file being written: opened (created
//! with its header, or appended to after its header is checked and a torn last
//! record cut), written with gathering writes, forced to the disk, made final.

use super::scan::{describe_mismatch, read_up_to, scan_records};
use super::*;

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
    pub(super) file: File,
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

    /// A second, read-only descriptor on the same file (opened again through
    /// `/proc/self/fd`, as the one it writes with may be write-only), to
    /// read what is written so far (an extract): the whole records end at
    /// [`PcapFile::bytes`].
    pub fn reader(&self) -> io::Result<File> {
        use std::os::fd::AsRawFd;
        File::open(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
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
