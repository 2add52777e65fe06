//! What bsc may delete, when, and how: retention per handler ([`excess`], pure
//! arithmetic over its closed files, oldest first: `max_files`, `max_bytes`,
//! `max_age`), the disk budget ([`DiskBudget`]), and the deletion itself
//! ([`Storage::remove`]: confined, never through a link, journaled).

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{dir_of, Storage};
use crate::clock::{ClockWord, UnixMicros};
use crate::files::paths::STATE_DIR;
use crate::files::pcap::FileId;
use crate::sys;

/// A closed capture file that a handler created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnFile {
    pub path: PathBuf,
    /// The trusted folder it was created below (deletion walks from there).
    pub trusted: PathBuf,
    pub bytes: u64,
    pub closed_at: SystemTime,
    /// What it holds, as recorded when it was closed.
    pub span: Span,
    /// Its device and inode when it was closed: a file put under the same name
    /// since is not bsc's and is never deleted.
    pub id: Option<FileId>,
}

/// The records a file holds, the time they cover (unknown for files closed
/// by bsc 0.1) and the clock's word on that time (unknown for files closed by
/// versions before it, or left open by a crash).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_ts: Option<UnixMicros>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ts: Option<UnixMicros>,
    /// The least and the most record time: unlike the first and last
    /// records', they bound every record even when the clock stepped back
    /// meanwhile. `None`: not known (bsc did not write all of it: resumed,
    /// left by a crash, closed by an earlier version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest: Option<UnixMicros>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<UnixMicros>,
    /// Whether the clock was synchronised while the file was open, and its
    /// largest max error (see [`crate::clock::kernel`]).
    #[serde(default, skip_serializing_if = "ClockWord::is_unknown")]
    pub clock: ClockWord,
}

/// A handler's retention limits.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_files: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_age: Option<Duration>,
}

/// How many of the oldest closed `files` must be deleted so that, with the open
/// file (`open_bytes`, if one is open), the handler is within `r` at `now`.
pub fn excess(files: &[OwnFile], open_bytes: Option<u64>, r: &Retention, now: SystemTime) -> usize {
    let mut drop = 0;
    if let Some(max) = r.max_files {
        let total = files.len() as u64 + open_bytes.is_some() as u64;
        drop = drop.max(total.saturating_sub(max).min(files.len() as u64) as usize);
    }
    if let Some(max) = r.max_bytes {
        let mut total: u64 = files.iter().map(|f| f.bytes).sum::<u64>() + open_bytes.unwrap_or(0);
        let mut n = 0;
        while total > max && n < files.len() {
            total -= files[n].bytes;
            n += 1;
        }
        drop = drop.max(n);
    }
    if let Some(age) = r.max_age {
        let n = files
            .iter()
            .take_while(|f| now.duration_since(f.closed_at).unwrap_or_default() > age)
            .count();
        drop = drop.max(n);
    }
    drop
}

/// The disk budget (`capture_manager.min_free_bytes`, `min_free_percent`): how
/// much of the root's file system must stay free.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct DiskBudget {
    pub min_free_bytes: Option<u64>,
    pub min_free_percent: Option<f64>,
}

impl DiskBudget {
    /// The bytes to keep free on a file system of `total` bytes (`None`: no
    /// budget): the larger of the two limits.
    pub fn threshold(&self, total: u64) -> Option<u64> {
        let pct = self
            .min_free_percent
            .map(|p| (total as f64 * p / 100.0) as u64);
        match (self.min_free_bytes, pct) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).max(b.unwrap_or(0))),
        }
    }
}

/// `t` as a `SystemTime` (what the journal's closing times are kept as).
pub fn system_time(t: UnixMicros) -> SystemTime {
    let since = Duration::from_micros(t.0.unsigned_abs());
    if t.0 >= 0 {
        SystemTime::UNIX_EPOCH + since
    } else {
        SystemTime::UNIX_EPOCH - since
    }
}

impl Storage {
    /// Deletes a file bsc created: only below the trusted folder it was created in
    /// (the root, or a folder the config file names), never through a link, and
    /// never in bsc's state folder. Journals the deletion (also when it was gone).
    pub fn remove(&mut self, f: &OwnFile) -> io::Result<()> {
        let refuse = |why: &str| {
            Err(io::Error::other(format!(
                "refusing to delete {}: {why}",
                f.path.display()
            )))
        };
        if f.path.starts_with(self.root.join(STATE_DIR)) {
            return refuse("it is in bsc's state folder");
        }
        let (dir, name) = dir_of(&f.trusted, &f.path)?;
        let result = match sys::identity_at(&dir, &name) {
            // Not the file bsc closed: someone put another under its name (a
            // freed inode number can come back at once, so the size, final since
            // the close, is compared too).
            Ok((now, size)) if f.id.is_some_and(|id| id != now) || size != f.bytes => {
                self.gone(&f.path);
                return refuse("it was replaced by another file since bsc closed it; left alone");
            }
            Ok(_) => sys::unlink_at(&dir, &name),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.gone(&f.path);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.gone(&f.path);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
