//! What bsc keeps on disk besides captures, and what it may delete.
//!
//! - The **journal** (`<root>/.bsc/files.log`) lists every capture file bsc
//!   created, per handler (`+key<TAB>path` lines, `-path` when deleted), so that
//!   retention and the disk budget delete only files bsc made: a file an operator
//!   dropped into the folder, or one bsc only appended to, is never touched. It is
//!   compacted at start-up (files gone from disk are dropped).
//! - **Retention** ([`excess`]) is pure arithmetic over a handler's closed files,
//!   oldest first: `max_files`, `max_bytes`, `max_age`.
//! - The **outbox** collects files as handlers close them, for `on_close` hooks.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::clock::UnixMicros;
use crate::warn;

/// A closed capture file that a handler created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnFile {
    pub path: PathBuf,
    pub bytes: u64,
    pub closed_at: SystemTime,
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

/// A file a handler closed, as `on_close` hooks see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosedFile {
    pub handler: String,
    /// The handler's `on_close` command (empty: none).
    pub on_close: Vec<String>,
    pub path: PathBuf,
    pub records: u64,
    pub bytes: u64,
    pub first_ts: Option<UnixMicros>,
    pub last_ts: Option<UnixMicros>,
}

/// The journal file and the outbox, shared by the manager and its handlers (one
/// thread: `RefCell` is enough).
#[derive(Debug)]
pub struct Storage {
    journal: RefCell<Option<File>>,
    journal_path: PathBuf,
    closed: RefCell<Vec<ClosedFile>>,
}

impl Storage {
    /// Opens (and compacts) the journal under `root`. Returns the storage and the
    /// files each handler key created in earlier runs that still exist.
    pub fn open(root: &Path) -> (Storage, HashMap<String, Vec<PathBuf>>) {
        let journal_path = root.join(".bsc").join("files.log");
        let mut live: Vec<(String, PathBuf)> = Vec::new();
        let existing = std::fs::read_to_string(&journal_path);
        if let Ok(text) = &existing {
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix('+') {
                    if let Some((key, path)) = rest.split_once('\t') {
                        live.push((key.to_string(), PathBuf::from(path)));
                    }
                } else if let Some(path) = line.strip_prefix('-') {
                    live.retain(|(_, p)| p != Path::new(path));
                }
            }
        }
        live.retain(|(_, p)| p.is_file());
        live.dedup_by(|a, b| a.1 == b.1);
        let storage = Storage {
            journal: RefCell::new(None),
            journal_path,
            closed: RefCell::new(Vec::new()),
        };
        // Compact an existing journal; create nothing until a file is created.
        if existing.is_ok() {
            storage.rewrite(&live);
        }
        let mut by_key: HashMap<String, Vec<PathBuf>> = HashMap::new();
        for (key, path) in live {
            by_key.entry(key).or_default().push(path);
        }
        (storage, by_key)
    }

    fn rewrite(&self, live: &[(String, PathBuf)]) {
        let result = (|| -> io::Result<File> {
            std::fs::create_dir_all(self.journal_path.parent().unwrap_or(Path::new(".")))?;
            let tmp = self.journal_path.with_extension("tmp");
            let mut f = File::create(&tmp)?;
            for (key, path) in live {
                writeln!(f, "+{key}\t{}", path.display())?;
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &self.journal_path)?;
            OpenOptions::new().append(true).open(&self.journal_path)
        })();
        match result {
            Ok(f) => *self.journal.borrow_mut() = Some(f),
            Err(e) => warn!(
                "cannot write {}: {e}; files created now will not be deleted by retention",
                self.journal_path.display()
            ),
        }
    }

    fn append(&self, line: String) {
        if self.journal.borrow().is_none() {
            let dir = self.journal_path.parent().unwrap_or(Path::new("."));
            let opened = std::fs::create_dir_all(dir).and_then(|()| {
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&self.journal_path)
            });
            match opened {
                Ok(f) => *self.journal.borrow_mut() = Some(f),
                Err(e) => {
                    warn!(
                        "cannot open {}: {e}; files created now will not be deleted by retention",
                        self.journal_path.display()
                    );
                    return;
                }
            }
        }
        if let Some(f) = self.journal.borrow_mut().as_mut() {
            if let Err(e) = f.write_all(line.as_bytes()) {
                warn!("cannot append to {}: {e}", self.journal_path.display());
            }
        }
    }

    /// Notes that bsc created `path` for the handler `key`.
    pub fn created(&self, key: &str, path: &Path) {
        self.append(format!("+{key}\t{}\n", path.display()));
    }

    /// Notes that bsc deleted `path`.
    pub fn deleted(&self, path: &Path) {
        self.append(format!("-{}\n", path.display()));
    }

    /// Puts a closed file in the outbox.
    pub fn closed(&self, file: ClosedFile) {
        self.closed.borrow_mut().push(file);
    }

    /// Takes every file closed since the last call.
    pub fn take_closed(&self) -> Vec<ClosedFile> {
        std::mem::take(&mut *self.closed.borrow_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(ages_s: &[u64], bytes: u64) -> Vec<OwnFile> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        ages_s
            .iter()
            .map(|a| OwnFile {
                path: PathBuf::from(format!("f{a}")),
                bytes,
                closed_at: now - Duration::from_secs(*a),
            })
            .collect()
    }

    #[test]
    fn retention_arithmetic() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let f = files(&[50, 40, 30, 20, 10], 100);
        let r = |files: Option<u64>, bytes: Option<u64>, age: Option<u64>| Retention {
            max_files: files,
            max_bytes: bytes,
            max_age: age.map(Duration::from_secs),
        };
        assert_eq!(excess(&f, None, &r(None, None, None), now), 0);
        // Three files at most, the open one included: two closed ones may stay.
        assert_eq!(excess(&f, Some(10), &r(Some(3), None, None), now), 3);
        assert_eq!(excess(&f, None, &r(Some(3), None, None), now), 2);
        assert_eq!(excess(&f, None, &r(Some(10), None, None), now), 0);
        // 500 closed bytes + 80 open, at most 350: drop the oldest three.
        assert_eq!(excess(&f, Some(80), &r(None, Some(350), None), now), 3);
        assert_eq!(
            excess(&f, Some(80), &r(None, Some(10), None), now),
            5,
            "never the open file"
        );
        assert_eq!(excess(&f, None, &r(None, None, Some(25)), now), 3);
        // The strictest limit wins.
        assert_eq!(excess(&f, None, &r(Some(4), Some(1000), Some(45)), now), 1);
    }

    #[test]
    fn journal_keeps_what_exists_and_forgets_deleted_files() {
        let root = std::env::temp_dir().join(format!("bsc-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let (a, b, c) = (
            root.join("a.pcap"),
            root.join("b.pcap"),
            root.join("c.pcap"),
        );
        for p in [&a, &b, &c] {
            std::fs::write(p, b"x").unwrap();
        }
        let (s, before) = Storage::open(&root);
        assert!(before.is_empty());
        s.created("h@['', 1]", &a);
        s.created("h@['', 1]", &b);
        s.created("g", &c);
        s.deleted(&b);
        drop(s);
        std::fs::remove_file(&c).unwrap();
        let (_, after) = Storage::open(&root);
        assert_eq!(after.get("h@['', 1]"), Some(&vec![a.clone()]));
        assert!(
            !after.contains_key("g"),
            "gone from disk, gone from the journal"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
