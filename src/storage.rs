//! What bsc keeps on disk besides captures, and what it may delete.
//!
//! - The **journal** (`<root>/.bsc/files.jsonl`) records, one JSON object a line,
//!   every capture file bsc opened (with its handler key, `{seq}` number and `-N`
//!   suffix), closed and deleted. A file bsc creates is journaled first, the
//!   line forced to the disk before the file exists ([`Storage::opening`]). No value can break a line (JSON escapes
//!   everything), and a torn last line (a crash) is skipped. It is compacted at
//!   start-up and whenever it has grown to twice what is live, so it stays
//!   proportional to the files that exist. An append that fails (a full disk)
//!   is cut back to the previous length and the journal is then *behind*:
//!   nothing more is appended, and it is written anew from memory (as compaction
//!   does: a temporary file, forced, renamed) at the next append or within a
//!   second, once that succeeds. Until then a crash forgets this run's latest
//!   entries (a file may then ship again: still at least once).
//! - From it, per handler key (name and address, so it survives reloads and
//!   restarts): the last file opened, so naming continues after it and a file
//!   closed is never opened again; the closed files bsc created that still exist,
//!   oldest first, for retention and the disk budget.
//! - The set of files open now: a name one handler has open is never opened by
//!   another (one writer per file).
//! - The **disk budget** ([`DiskBudget`]) says how much of the root's file system
//!   to keep free; the manager deletes the oldest closed files ([`Storage::take_oldest`])
//!   until it is.
//! - **Retention** ([`excess`]) is pure arithmetic over a handler's closed files,
//!   oldest first: `max_files`, `max_bytes`, `max_age`.
//! - **Deletion** only ever removes a file the journal says bsc created, below the
//!   trusted folder it was created in, without following links ([`Storage::remove`]).
//! - The **outbox** collects files as handlers close them, for `on_close` hooks.
//! - The **ship queue** (store and forward) holds, per key and oldest first, the
//!   closed files still waiting to ship, each with the `ship` settings of its
//!   handler when it was closed (`Closed` with `ship`); a `Shipped` line, forced
//!   to the disk before the next ship command starts, takes a file off it for
//!   good. Retention never deletes a file on it ([`Storage::take_excess`] stops at
//!   the first), nor one whose `on_close` hook waits or runs (skipped: it still
//!   counts); only the disk budget may, when nothing else is left
//!   ([`Storage::take_oldest`]).
//!
//! - The **state folder** `<root>/.bsc` is bsc's alone: made 0700 (its files
//!   0600), refused at start-up and by `bsc check` when another user owns it
//!   or others may write it, or a state file is not a regular file
//!   ([`check_state_modes`]), and when the root or a folder above it is not
//!   bsc's or root's or others may write it ([`check_root_trust`]); one bsc
//!   per root holds its `lock` ([`lock_root`]; a lock file deleted or replaced
//!   is made again and locked within a second, [`Storage::keep_lock`]). While
//!   running, bsc works in it only through the handle it opened
//!   (`Storage::own_dir`): a `<root>/.bsc` renamed or replaced is never used;
//!   one deleted is made again and locked before anything is written in it,
//!   only in a root that still passes [`check_root_trust`] (`make_own`).
//! - **Handing a file over**: a closed file with a hook or `ship` is held by a
//!   hard link in [`OUTGOING`] from its close until it has shipped and its hook
//!   ended; [`Storage::hand_over`] gives a command that link, only while the
//!   file's own path is still the regular, read-only file bsc closed (the same
//!   inode and size made writable again by its owner only is made read-only
//!   again first; one made writable by group or others is refused: anyone
//!   could have written it). Where no link can be handed (none possible, no
//!   identity journaled, no state folder of bsc's own), the file's own path
//!   is, only from a folder no other user can rename things in
//!   (`path_trusted`); otherwise it is refused.
//!
//! Memory: about 200 bytes per existing file bsc created, plus one entry per key.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::clock::UnixMicros;
use crate::config::ShipSpec;
use crate::paths::STATE_DIR;
use crate::pcap::FileId;
use crate::{error, info, sys, warn};

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

/// The records a file holds and the time they cover (unknown for files closed
/// by bsc 0.1).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_ts: Option<UnixMicros>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ts: Option<UnixMicros>,
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

/// A closed file waiting to ship (store and forward).
#[derive(Clone, Debug, PartialEq)]
pub struct Unshipped {
    /// Its handler's journal key (name and address).
    pub key: String,
    pub path: PathBuf,
    /// The trusted folder it is below.
    pub trusted: PathBuf,
    pub span: Span,
    pub bytes: u64,
    /// When it was closed (after a restart: its modification time).
    pub closed_at: SystemTime,
    /// Its handler's `ship` settings when it was closed.
    pub ship: ShipSpec,
    /// Its device and inode when it was closed (unknown in journals of bsc 0.1).
    pub id: Option<FileId>,
}

/// What waits to ship for one key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Backlog {
    pub files: u64,
    pub bytes: u64,
    /// When the oldest waiting file was closed.
    pub oldest: Option<SystemTime>,
}

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    Opened {
        key: String,
        path: PathBuf,
        /// The trusted folder `path` is below.
        trusted: PathBuf,
        /// The name before numbering (`path` is its `-n` variant; `n = 0`: itself).
        unnumbered: PathBuf,
        n: u32,
        seq: u64,
        created: bool,
        /// Its handler's `ship` settings when it opened the file: a file a crash
        /// left open ships with them after the restart even if its handler is
        /// gone by then (absent in journals of earlier versions: not shipped).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ship: Option<ShipSpec>,
    },
    Closed {
        path: PathBuf,
        #[serde(flatten)]
        span: Span,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<FileId>,
        /// Whether its handler has an `on_close` hook still to run for it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        hook: bool,
        /// Its handler's `ship` settings: it waits to ship until `Shipped`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ship: Option<ShipSpec>,
    },
    /// `path` was shipped (its ship command exited 0): it never ships again.
    Shipped {
        path: PathBuf,
    },
    /// The `on_close` hook for `path` ended (or is never to run: refused, its
    /// handler has none any more). Journals of earlier versions wrote
    /// `hook_started` when it started: read as ended (they never ran it again).
    #[serde(alias = "hook_started")]
    HookEnded {
        path: PathBuf,
    },
    Deleted {
        path: PathBuf,
    },
}

/// The last file opened for a handler key: where its naming goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastFile {
    pub path: PathBuf,
    pub trusted: PathBuf,
    pub unnumbered: PathBuf,
    pub n: u32,
    pub seq: u64,
    pub created: bool,
    /// Whether bsc recorded closing it (false: it was open when bsc last stopped,
    /// or is open now).
    pub closed: bool,
}

/// What the journal knows of one handler key.
#[derive(Debug, Default)]
struct KeyFiles {
    last: Option<LastFile>,
    /// The `ship` settings journaled with `last` when it was opened.
    last_ship: Option<ShipSpec>,
    /// Closed files this key created that still exist, oldest first.
    closed: VecDeque<OwnFile>,
}

/// The journal, what it knows per key, the open files and the outbox, shared by
/// the manager and its handlers (one thread: `RefCell` is enough).
#[derive(Debug)]
pub struct Storage {
    root: PathBuf,
    journal_path: PathBuf,
    journal: RefCell<Option<File>>,
    keys: RefCell<HashMap<String, KeyFiles>>,
    /// Every file a handler has open now, with its identity.
    open: RefCell<HashMap<PathBuf, FileId>>,
    /// The state folder (never a capture folder, under any name).
    state_dir: PathBuf,
    /// Closed files whose `on_close` hook has not ended yet (waits or runs),
    /// with their key: they survive a restart, a stop or a crash (and are
    /// handed to the hook again then).
    unhooked: RefCell<HashMap<PathBuf, Unhooked>>,
    closed: RefCell<Vec<ClosedFile>>,
    /// Closed files waiting to ship, per key, oldest first (see the module doc).
    ship_queue: RefCell<HashMap<String, VecDeque<Unshipped>>>,
    /// The paths on `ship_queue`.
    unshipped: RefCell<HashSet<PathBuf>>,
    /// Whether lines were appended since the journal was last forced to the disk.
    unsynced: Cell<bool>,
    /// Whether the journal on disk lacks entries memory has (an append failed:
    /// a full disk, an I/O error). Nothing is appended then; the journal is
    /// written anew from memory as soon as that can succeed ([`Storage::catch_up`]).
    behind: Cell<bool>,
    /// Lines appended since the journal was last rewritten, and lines it had then.
    appended: Cell<u64>,
    compacted_lines: Cell<u64>,
    /// The line of the last intent ([`Storage::opening`]) while the journal on
    /// disk has it (cleared when the journal is written anew from memory).
    intent: RefCell<Option<String>>,
    /// bsc's state folder, held open (`Storage::own_dir`).
    own: RefCell<Option<OwnDir>>,
    /// Whether `<root>/.bsc` is not the folder held (logged once).
    lost: Cell<bool>,
    /// Whether taking the lock again failed (logged once until it succeeds).
    relock_failed: Cell<bool>,
}

/// bsc's state folder as it holds it: an open handle and its identity, and the
/// lock taken in it if bsc made it again while it ran (the lock of the folder
/// found at start-up is held by the event loop).
#[derive(Debug)]
struct OwnDir {
    fd: OwnedFd,
    id: (u64, u64),
    _lock: Option<File>,
    /// The identity of the lock file bsc holds the `flock` on (`None`: none
    /// found at start-up), checked once a second ([`Storage::keep_lock`]).
    lock_id: Option<(u64, u64)>,
}

/// The journal's name in the state folder.
const JOURNAL: &str = "files.jsonl";

/// A closed file waiting for its `on_close` hook.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Unhooked {
    key: String,
    /// The trusted folder the file is below.
    trusted: PathBuf,
    span: Span,
    bytes: u64,
    /// Closed in an earlier run (read from the journal at start-up); files
    /// closed in this run are already on their way to the hook.
    earlier: bool,
    /// Its device and inode when it was closed.
    id: Option<FileId>,
}

/// The folder of the state folder where closed files waiting for their hook or
/// to ship are held by a hard link, `<dev>-<inode>/<name>` each (see
/// [`Storage::hand_over`]).
pub const OUTGOING: &str = "outgoing";

/// Why a closed file is not handed to its hook or ship command.
#[derive(Debug, PartialEq, Eq)]
pub enum NotHanded {
    /// Nothing is at its path any more.
    Gone,
    /// Something else is (why): a link, another file, a file written to since.
    Replaced(&'static str),
}

/// The highest `{seq}` and `-N` taken from the journal (see [`checked`]).
const MAX_SEQ: u64 = 1 << 52;
const MAX_N: u32 = 1 << 30;

/// Lines a journal may gain before compaction is considered at all.
const COMPACT_MIN_LINES: u64 = 1024;

impl Storage {
    /// Opens (and compacts) the journal under `root`.
    pub fn open(root: &Path) -> Storage {
        let dir = root.join(STATE_DIR);
        let storage = Storage {
            root: root.to_path_buf(),
            journal_path: dir.join("files.jsonl"),
            journal: RefCell::new(None),
            keys: RefCell::new(HashMap::new()),
            open: RefCell::new(HashMap::new()),
            state_dir: dir.clone(),
            unhooked: RefCell::new(HashMap::new()),
            closed: RefCell::new(Vec::new()),
            ship_queue: RefCell::new(HashMap::new()),
            unshipped: RefCell::new(HashSet::new()),
            unsynced: Cell::new(false),
            behind: Cell::new(false),
            appended: Cell::new(0),
            compacted_lines: Cell::new(0),
            intent: RefCell::new(None),
            own: RefCell::new(
                sys::open_dir_beneath(root, &[STATE_DIR], false)
                    .and_then(|fd| {
                        let id = sys::stat_fd(&fd)?.id;
                        // Locked by the event loop just before (`lock_root`).
                        let lock_id = sys::stat_at(&fd, LOCK_FILE).ok().map(|st| st.id);
                        Ok(OwnDir {
                            fd,
                            id,
                            _lock: None,
                            lock_id,
                        })
                    })
                    .ok(),
            ),
            lost: Cell::new(false),
            relock_failed: Cell::new(false),
        };
        let mut found = false;
        match read_state_file(&storage.journal_path) {
            Ok(bytes) => {
                found = true;
                // Line by line, bytes first: one damaged line (torn, not UTF-8,
                // not JSON) is skipped, never the whole journal.
                for line in bytes
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.trim_ascii().is_empty())
                {
                    match serde_json::from_slice::<Entry>(line) {
                        Ok(e) => storage.apply(checked(e), None),
                        // A torn last line (a crash while appending) or damage.
                        Err(e) => warn!(
                            "{}: skipping an unreadable line ({e})",
                            storage.journal_path.display()
                        ),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!("cannot read {}: {e}", storage.journal_path.display()),
        }
        found |= storage.read_legacy(&dir.join("files.log"));
        if found {
            storage.compact();
        }
        storage
    }

    /// The journal of bsc 0.1 (`+key<TAB>path`, `-path`): files it lists inside
    /// the root are taken over as closed files; the old file is then removed.
    fn read_legacy(&self, path: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        for line in text.lines() {
            if let Some((key, p)) = line.strip_prefix('+').and_then(|r| r.split_once('\t')) {
                let p = PathBuf::from(p);
                if inside(&p, &self.root) {
                    self.apply(
                        Entry::Opened {
                            key: key.to_string(),
                            path: p.clone(),
                            trusted: self.root.clone(),
                            unnumbered: p.clone(),
                            n: 0,
                            seq: 0,
                            created: true,
                            ship: None,
                        },
                        None,
                    );
                    self.apply(
                        Entry::Closed {
                            path: p,
                            span: Span::default(),
                            id: None,
                            hook: false,
                            ship: None,
                        },
                        None,
                    );
                }
            } else if let Some(p) = line.strip_prefix('-') {
                self.apply(Entry::Deleted { path: p.into() }, None);
            }
        }
        let _ = std::fs::remove_file(path);
        true
    }

    /// Applies one journal entry to what is known per key. `closed_at` is when a
    /// file was closed (`None`: take its modification time).
    fn apply(&self, e: Entry, closed_at: Option<SystemTime>) {
        let mut keys = self.keys.borrow_mut();
        match e {
            Entry::Opened {
                key,
                path,
                trusted,
                unnumbered,
                n,
                seq,
                created,
                ship,
            } => {
                let k = keys.entry(key).or_default();
                k.last_ship = ship;
                let seq = seq.max(k.last.as_ref().map_or(0, |l| l.seq));
                k.last = Some(LastFile {
                    path,
                    trusted,
                    unnumbered,
                    n,
                    seq,
                    created,
                    closed: false,
                });
            }
            Entry::Closed {
                path,
                span,
                id,
                hook,
                ship,
            } => {
                for (key, k) in keys.iter_mut() {
                    let Some(last) = k.last.as_mut().filter(|l| l.path == path) else {
                        continue;
                    };
                    last.closed = true;
                    let (bytes, mtime) = std::fs::metadata(&path)
                        .map_or((0, SystemTime::UNIX_EPOCH), |m| {
                            (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH))
                        });
                    if hook {
                        let waiting = Unhooked {
                            key: key.clone(),
                            trusted: last.trusted.clone(),
                            span,
                            bytes,
                            earlier: closed_at.is_none(),
                            id,
                        };
                        self.unhooked.borrow_mut().insert(path.clone(), waiting);
                    }
                    if let Some(ship) = ship {
                        self.unqueue(&path);
                        self.unshipped.borrow_mut().insert(path.clone());
                        let file = Unshipped {
                            key: key.clone(),
                            path: path.clone(),
                            trusted: last.trusted.clone(),
                            span,
                            bytes,
                            closed_at: closed_at.unwrap_or(mtime),
                            ship,
                            id,
                        };
                        let mut queue = self.ship_queue.borrow_mut();
                        queue.entry(key.clone()).or_default().push_back(file);
                    }
                    if last.created {
                        k.closed.retain(|f| f.path != path);
                        k.closed.push_back(OwnFile {
                            path: path.clone(),
                            trusted: last.trusted.clone(),
                            bytes,
                            closed_at: closed_at.unwrap_or(mtime),
                            span,
                            id,
                        });
                    }
                    break;
                }
            }
            Entry::HookEnded { path } => {
                self.unhooked.borrow_mut().remove(&path);
            }
            Entry::Shipped { path } => {
                self.unqueue(&path);
            }
            Entry::Deleted { path } => {
                self.unhooked.borrow_mut().remove(&path);
                self.unqueue(&path);
                for k in keys.values_mut() {
                    k.closed.retain(|f| f.path != path);
                    if let Some(last) = k.last.as_mut().filter(|l| l.path == path) {
                        last.closed = true;
                    }
                }
            }
        }
    }

    /// Takes `path` off the ship queue, if it is there.
    fn unqueue(&self, path: &Path) {
        if !self.unshipped.borrow_mut().remove(path) {
            return;
        }
        for q in self.ship_queue.borrow_mut().values_mut() {
            q.retain(|f| f.path != path);
        }
        self.ship_queue.borrow_mut().retain(|_, q| !q.is_empty());
    }

    /// Rewrites the journal from what is live (see [`Storage::live_lines`]).
    /// Returns whether it succeeded.
    fn compact(&self) -> bool {
        let lines = self.live_lines();
        let result = self.rewrite(&lines);
        if let Err(e) = &result {
            warn!(
                "cannot rewrite {}: {e}; naming and retention of new files is not remembered across restarts",
                self.journal_path.display()
            );
        }
        result.is_ok()
    }

    /// What is live, as journal lines: per key, its closed files that still
    /// exist, then its last file (kept even when gone: naming goes on from it).
    fn live_lines(&self) -> Vec<Entry> {
        let mut lines = Vec::new();
        {
            let mut keys = self.keys.borrow_mut();
            let unhooked = self.unhooked.borrow();
            let queue = self.ship_queue.borrow();
            let ship_of = |key: &str, path: &Path| {
                queue
                    .get(key)
                    .and_then(|q| q.iter().find(|f| f.path == path))
                    .map(|f| f.ship.clone())
            };
            for (key, k) in keys.iter_mut() {
                k.closed.retain(|f| f.path.is_file());
                for f in &k.closed {
                    if k.last.as_ref().is_some_and(|l| l.path == f.path) {
                        continue;
                    }
                    lines.push(Entry::Opened {
                        key: key.clone(),
                        path: f.path.clone(),
                        trusted: f.trusted.clone(),
                        unnumbered: f.path.clone(),
                        n: 0,
                        seq: 0,
                        created: true,
                        ship: None,
                    });
                    lines.push(Entry::Closed {
                        path: f.path.clone(),
                        span: f.span,
                        id: f.id,
                        hook: hook_waits(&unhooked, &f.path),
                        ship: ship_of(key, &f.path),
                    });
                }
                // Files waiting for their hook or to ship that bsc did not
                // create (appended), or that are gone (a ship attempt drops them).
                let elsewhere = |p: &Path| {
                    !k.closed.iter().any(|f| f.path == p)
                        && k.last.as_ref().is_none_or(|l| l.path != p)
                };
                let mut others: Vec<(PathBuf, PathBuf, Span)> = unhooked
                    .iter()
                    .filter(|(p, u)| u.key == *key && elsewhere(p))
                    .map(|(p, u)| (p.clone(), u.trusted.clone(), u.span))
                    .collect();
                for f in queue.get(key).into_iter().flatten() {
                    if elsewhere(&f.path) && !others.iter().any(|(p, _, _)| *p == f.path) {
                        others.push((f.path.clone(), f.trusted.clone(), f.span));
                    }
                }
                for (path, trusted, span) in others {
                    lines.push(Entry::Opened {
                        key: key.clone(),
                        path: path.clone(),
                        trusted,
                        unnumbered: path.clone(),
                        n: 0,
                        seq: 0,
                        created: false,
                        ship: None,
                    });
                    lines.push(Entry::Closed {
                        hook: hook_waits(&unhooked, &path),
                        ship: ship_of(key, &path),
                        path,
                        span,
                        id: None,
                    });
                }
                if let Some(l) = &k.last {
                    lines.push(Entry::Opened {
                        key: key.clone(),
                        path: l.path.clone(),
                        trusted: l.trusted.clone(),
                        unnumbered: l.unnumbered.clone(),
                        n: l.n,
                        seq: l.seq,
                        created: l.created,
                        ship: k.last_ship.clone().filter(|_| !l.closed),
                    });
                    if l.closed {
                        let own = k.closed.iter().find(|f| f.path == l.path);
                        lines.push(Entry::Closed {
                            path: l.path.clone(),
                            span: own.map_or_else(Span::default, |f| f.span),
                            id: own.and_then(|f| f.id),
                            hook: hook_waits(&unhooked, &l.path),
                            ship: ship_of(key, &l.path),
                        });
                    }
                }
            }
        }
        lines
    }

    /// Writes `lines` as the whole journal: a temporary file, forced to the
    /// disk, renamed into place (the folder forced too), then appended to. On
    /// success the journal on disk has every entry memory has.
    fn rewrite(&self, lines: &[Entry]) -> io::Result<()> {
        let dir = self.own_dir()?.0;
        let result = (|| -> io::Result<File> {
            let mut text = String::new();
            for e in lines {
                text.push_str(&line_of(e));
            }
            replace_at(&dir, JOURNAL, text.as_bytes())?;
            open_journal(&dir)
        })();
        match result {
            Ok(f) => {
                *self.journal.borrow_mut() = Some(f);
                self.unsynced.set(false);
                self.behind.set(false);
                self.appended.set(0);
                self.compacted_lines.set(lines.len() as u64);
                *self.intent.borrow_mut() = None;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the journal on disk has every entry memory has. If it is behind
    /// (an append failed), tries to write it anew from memory first (on every
    /// append and once a second): logged once when it falls behind
    /// ([`Storage::append`]) and once when it has caught up.
    pub fn catch_up(&self) -> bool {
        if !self.behind.get() {
            return true;
        }
        self.compact_quietly();
        if self.behind.get() {
            return false;
        }
        info!(
            "{}: written anew; the journal has every entry again",
            self.journal_path.display()
        );
        true
    }

    /// Checks, once a second, that `<root>/.bsc/lock` (looked at through the
    /// state folder's handle, never through a link) is still the file bsc
    /// holds its `flock` on. Deleted or replaced (a "stale lock" cleanup),
    /// a second bsc could take the root and write into this one's files: bsc
    /// makes the lock file again and takes the lock (its pid written), as for
    /// a state folder made again, and logs it. Should another bsc have taken
    /// it meanwhile, this one lets go of the state folder: it captures on into
    /// files only it has, writes no journal there, and tries again every
    /// second (see `own_dir`); a restart is the way out.
    pub fn keep_lock(&self) {
        let mut own = self.own.borrow_mut();
        let Some(o) = own.as_mut() else { return };
        let now = std::fs::symlink_metadata(&self.state_dir)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if now != Some(o.id) {
            // Not the folder held: `own_dir` deals with it.
            return;
        }
        let found = sys::stat_at(&o.fd, LOCK_FILE).ok().map(|st| st.id);
        if found.is_some() && found == o.lock_id {
            return;
        }
        let path = self.state_dir.join(LOCK_FILE);
        match lock_in(&o.fd, &path) {
            Ok(lock) => {
                self.relock_failed.set(false);
                o.lock_id = sys::stat_fd(&lock).ok().map(|st| st.id);
                o._lock = Some(lock);
                error!(
                    "{} was deleted or replaced while bsc ran: made again and locked (pid {}); one bsc per root",
                    path.display(),
                    std::process::id()
                );
            }
            Err(Locked::By(pid)) => {
                error!(
                    "{} was deleted while bsc ran and another bsc (pid {pid}) took the root meanwhile: this one captures on into files of its own but writes no journal there; stop one of them",
                    path.display()
                );
                *own = None;
                self.lost.set(true);
                *self.journal.borrow_mut() = None;
                self.behind.set(true);
            }
            Err(Locked::Failed(e)) if !self.relock_failed.replace(true) => {
                error!("{e}; tried again every second")
            }
            Err(Locked::Failed(_)) => {}
        }
    }

    /// [`Storage::compact`] without its log line on failure (retried once a
    /// second while the journal is behind).
    fn compact_quietly(&self) {
        let lines = self.live_lines();
        let _ = self.rewrite(&lines);
    }

    /// Appends `e` (already applied to memory) to the journal. An append that
    /// fails (a full disk: a short write) is cut back to the journal's previous
    /// length, so no torn line is left for the next line to be glued to, and the
    /// journal is then behind memory: nothing more is appended, and it is written
    /// anew from memory, with every entry, as soon as that succeeds
    /// ([`Storage::catch_up`]: at the next append, or within a second).
    fn append(&self, e: &Entry) {
        if self.behind.get() {
            self.catch_up();
            return;
        }
        // The state folder made again (deleted, the whole root say, behind
        // bsc's back), or the journal alone deleted: write it anew from what
        // is known, then go on.
        let dir = match self.own_dir() {
            Ok((dir, made)) => (!made).then_some(dir),
            Err(err) => {
                self.fall_behind(&format!("no state folder to write it in: {err}"));
                return;
            }
        };
        let deleted = self
            .journal
            .borrow()
            .as_ref()
            .is_some_and(|f| f.metadata().map_or(true, |m| m.nlink() == 0));
        let Some(dir) = dir.filter(|_| !deleted) else {
            warn!(
                "{} was deleted while bsc ran; writing it anew",
                self.journal_path.display()
            );
            // The rewrite has `e` already.
            if !self.compact() {
                self.fall_behind("cannot write it anew");
            }
            return;
        };
        // A journal opened here may end in a torn line (a crash while
        // appending): it is ended first, so this line is not glued to it (the
        // reader skips the torn one alone). Lines this run appends are whole:
        // a failed append is cut back.
        let mut torn = false;
        if self.journal.borrow().is_none() {
            match open_journal(&dir) {
                Ok(f) => {
                    torn = ends_in_torn_line(&f);
                    *self.journal.borrow_mut() = Some(f);
                }
                Err(err) => {
                    self.fall_behind(&format!("cannot open it: {err}"));
                    return;
                }
            }
        }
        let mut failed = None;
        if let Some(f) = self.journal.borrow_mut().as_mut() {
            let mut line = line_of(e);
            if torn {
                line.insert(0, '\n');
            }
            let len = f.metadata().map(|m| m.len());
            if let Err(err) = f.write_all(line.as_bytes()) {
                // Cut back what was written of it (failing that, the rewrite
                // replaces the whole file anyway).
                let cut = len.and_then(|len| f.set_len(len));
                failed = Some(match cut {
                    Ok(()) => format!("{err}"),
                    Err(c) => format!("{err} (and cannot cut it back: {c})"),
                });
            }
            self.unsynced.set(true);
        }
        if let Some(why) = failed {
            self.fall_behind(&why);
            return;
        }
        self.appended.set(self.appended.get() + 1);
        let live = self.compacted_lines.get();
        if self.appended.get() > COMPACT_MIN_LINES.max(live) {
            self.compact();
        }
    }

    /// Notes (and logs, once) that the journal on disk lacks entries memory has.
    fn fall_behind(&self, why: &str) {
        self.behind.set(true);
        warn!(
            "cannot append to {}: {why}; it lacks this run's latest entries until it can be written anew from memory (tried every second): a crash before then forgets them (files may ship again, and retention may not know them)",
            self.journal_path.display()
        );
    }

    /// The last file opened for `key`, if the journal knows one.
    pub fn last(&self, key: &str) -> Option<LastFile> {
        self.keys.borrow().get(key).and_then(|k| k.last.clone())
    }

    /// Forgets every journal entry that is not below the root or one of `bases`
    /// (the folders the config file names), or is in the state folder: the
    /// journal is bsc's own, but an entry naming another place is never acted on
    /// (deleted, repaired, appended to, hooked). Returns how many were dropped.
    pub fn keep_trusted(&self, bases: &[PathBuf]) -> usize {
        let state = self.root.join(STATE_DIR);
        let ok = |trusted: &Path, path: &Path| {
            (trusted == self.root || bases.iter().any(|b| b == trusted))
                && inside(path, trusted)
                && !path.starts_with(&state)
        };
        let mut dropped = 0;
        for k in self.keys.borrow_mut().values_mut() {
            let before = k.closed.len();
            k.closed.retain(|f| ok(&f.trusted, &f.path));
            dropped += before - k.closed.len();
            if k.last.as_ref().is_some_and(|l| !ok(&l.trusted, &l.path)) {
                k.last = None;
                dropped += 1;
            }
        }
        let mut waiting = self.unhooked.borrow_mut();
        let before = waiting.len();
        waiting.retain(|p, u| ok(&u.trusted, p));
        dropped += before - waiting.len();
        drop(waiting);
        let outside: Vec<PathBuf> = self
            .ship_queue
            .borrow()
            .values()
            .flatten()
            .filter(|f| !ok(&f.trusted, &f.path))
            .map(|f| f.path.clone())
            .collect();
        dropped += outside.len();
        for p in outside {
            self.unqueue(&p);
        }
        if dropped > 0 {
            warn!(
                "{}: ignored {} that {} files outside the root and the folders the config names",
                self.journal_path.display(),
                if dropped == 1 {
                    "1 entry".to_string()
                } else {
                    format!("{dropped} entries")
                },
                if dropped == 1 { "names" } else { "name" }
            );
            self.compact();
        }
        self.sweep_pins();
        dropped
    }

    /// Every key's last file that bsc left open when it last stopped (a crash),
    /// and no handler has open now.
    /// With each, the `ship` settings its handler had when it opened it.
    pub fn left_open(&self) -> Vec<(String, LastFile, Option<ShipSpec>)> {
        let open = self.open.borrow();
        self.keys
            .borrow()
            .iter()
            .filter_map(|(key, k)| {
                let l = k.last.as_ref()?;
                (!l.closed && !open.contains_key(&l.path))
                    .then(|| (key.clone(), l.clone(), k.last_ship.clone()))
            })
            .collect()
    }

    /// The highest file of a key's pattern found in its folder: naming starts
    /// after it where it is beyond what the journal knows (a file the journal
    /// says is still open, to be resumed, is never passed over).
    pub fn seed(&self, key: &str, found: LastFile) {
        let mut keys = self.keys.borrow_mut();
        let k = keys.entry(key.to_string()).or_default();
        let beyond = match &k.last {
            None => true,
            Some(l) if !l.closed => false,
            Some(l) => {
                found.seq > l.seq
                    || (found.seq == l.seq && found.unnumbered == l.unnumbered && found.n > l.n)
            }
        };
        if beyond {
            k.last = Some(found);
            k.last_ship = None;
        }
    }

    /// Whether bsc closed `path` for good (it is final even if its mode was
    /// changed since).
    pub fn was_closed(&self, path: &Path) -> bool {
        self.keys.borrow().values().any(|k| {
            k.last.as_ref().is_some_and(|l| l.closed && l.path == path)
                || k.closed.iter().any(|f| f.path == path)
        })
    }

    /// Whether some handler has `path` open now.
    pub fn is_open(&self, path: &Path) -> bool {
        self.open.borrow().contains_key(path)
    }

    /// Whether some handler has the file `id` open now, under any name.
    pub fn is_busy(&self, id: FileId) -> bool {
        self.open.borrow().values().any(|&o| o == id)
    }

    /// Whether the folder `dir` is bsc's state folder (under any name). The
    /// state folder is looked at anew each time: it may have been deleted and
    /// made again, and its old inode number given to a capture folder.
    /// The folder bsc holds as its state folder counts too while it exists
    /// (renamed away, say).
    pub fn is_state_dir(&self, dir: &OwnedFd) -> bool {
        let named = std::fs::metadata(&self.state_dir)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let held = self.own.borrow().as_ref().and_then(|o| {
            let f = File::from(o.fd.try_clone().ok()?);
            let m = f.metadata().ok().filter(|m| m.nlink() > 0)?;
            Some((m.dev(), m.ino()))
        });
        let Ok(id) = sys::stat_fd(dir).map(|st| st.id) else {
            return false;
        };
        Some(id) == named || Some(id) == held
    }

    /// bsc's state folder (a new handle to it), and whether it was made anew.
    /// It is the folder held open since start-up while `<root>/.bsc` is still
    /// that folder. When it is not (renamed, replaced or deleted behind bsc's
    /// back: logged once as an error): where nothing is at `<root>/.bsc`, bsc
    /// makes its own again (0700; the root 0750 if it is gone too) and takes
    /// the lock in it before anything is written there (another bsc holding
    /// it: an error, and nothing is written there until it can); where a
    /// folder bsc did not make is, it is never used, and bsc goes on with the
    /// one it holds (renamed: still usable by its handle; deleted: nothing can
    /// be written, the journal is behind until `<root>/.bsc` can be made again).
    fn own_dir(&self) -> io::Result<(OwnedFd, bool)> {
        let now = std::fs::symlink_metadata(&self.state_dir)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let held = self.own.borrow().as_ref().map(|o| o.id);
        if now.is_some() && now == held {
            self.lost.set(false);
            let own = self.own.borrow();
            let fd = own.as_ref().map(|o| o.fd.try_clone());
            return Ok((
                fd.unwrap_or_else(|| Err(io::Error::other("no state folder")))?,
                false,
            ));
        }
        if now.is_some() && held.is_some() {
            if !self.lost.replace(true) {
                error!(
                    "{} is no longer bsc's state folder (renamed or replaced while bsc ran): bsc never uses a state folder it did not make; it goes on with its own, and hands no file to a hook or ship command by a path through the one there now; restart bsc to have it check and take the folder there",
                    self.state_dir.display()
                );
            }
            let own = self.own.borrow();
            let fd = own.as_ref().map(|o| o.fd.try_clone());
            return Ok((
                fd.unwrap_or_else(|| Err(io::Error::other("no state folder")))?,
                false,
            ));
        }
        let made = make_own(&self.root);
        match &made {
            Ok(_) if held.is_some() => {
                error!(
                    "{} was deleted while bsc ran: made again (0700) and locked; the journal is written anew from memory",
                    self.state_dir.display()
                );
            }
            Err(e) if !self.lost.replace(true) => error!(
                "{} was deleted or replaced while bsc ran and cannot be made again: {e}; capture goes on, the journal is behind until it can",
                self.state_dir.display()
            ),
            _ => {}
        }
        let own = made?;
        self.lost.set(false);
        let fd = own.fd.try_clone()?;
        *self.own.borrow_mut() = Some(own);
        *self.journal.borrow_mut() = None;
        Ok((fd, held.is_some()))
    }

    /// Replaces the state file `name` (`handlers.json`) with `bytes`,
    /// atomically, in bsc's own state folder (see `own_dir`).
    pub fn replace_state_file(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        replace_at(&self.own_dir()?.0, name, bytes)
    }

    /// Write-ahead: journals that the handler `key` is about to create
    /// `last.path` (a name that does not exist) as opened and created, forced
    /// to the disk before the file exists, so no crash can leave a file bsc
    /// created that its journal does not know. Memory is not changed:
    /// [`Storage::opened`] notes the file once it exists (without another
    /// line); if it could not be created, nothing is to be taken back (a
    /// journaled file that does not exist is forgotten at the next start, its
    /// name still counted). A retry of the same name appends no second line.
    pub fn opening(&self, key: &str, last: LastFile, ship: Option<&ShipSpec>) {
        let e = opened_entry(key, last, ship);
        let line = line_of(&e);
        if self.intent.borrow().as_ref() == Some(&line) {
            return;
        }
        // Twice at most: an append that had the journal written anew from
        // memory (compaction, catching up), which lacks the intent, clears
        // `intent`, and the line goes after the rewrite.
        for _ in 0..2 {
            *self.intent.borrow_mut() = Some(line.clone());
            self.append(&e);
            if self.behind.get() {
                // Not journaled (README, Durability and the disk).
                *self.intent.borrow_mut() = None;
                return;
            }
            if self.intent.borrow().is_some() {
                break;
            }
        }
        self.sync_journal();
    }

    /// Notes that the handler `key` opened `last.path`, the file `id` (and holds
    /// it open); `ship`: the handler's `ship` settings, should a crash leave the
    /// file open and the handler be gone at the next start. No line is appended
    /// when the journal says so already (its intent, or the file left open by a
    /// crash and resumed now).
    pub fn opened(&self, key: &str, last: LastFile, id: FileId, ship: Option<&ShipSpec>) {
        self.open.borrow_mut().insert(last.path.clone(), id);
        let resumed = self.keys.borrow().get(key).is_some_and(|k| {
            k.last.as_ref() == Some(&last) && k.last_ship.as_ref() == ship && !last.closed
        });
        if resumed {
            return;
        }
        let e = opened_entry(key, last, ship);
        let line = line_of(&e);
        let journaled = self.intent.borrow_mut().take_if(|i| *i == line).is_some();
        self.apply(e.clone(), None);
        if !journaled {
            self.append(&e);
        }
    }

    /// Notes that `path` (the file `id`) was closed for good, holding `span`
    /// (and is no longer open); `hook`: its `on_close` hook is still to run;
    /// `ship`: it waits to ship with these settings.
    pub fn finished(
        &self,
        path: &Path,
        span: Span,
        id: Option<FileId>,
        hook: bool,
        ship: Option<&ShipSpec>,
    ) {
        self.open.borrow_mut().remove(path);
        let e = Entry::Closed {
            path: path.to_path_buf(),
            span,
            id,
            hook,
            ship: ship.cloned(),
        };
        self.apply(e.clone(), Some(SystemTime::now()));
        self.append(&e);
        if hook || ship.is_some() {
            // Linked at once, while it is certainly the file just closed.
            let _ = self.hand_over(path);
        }
    }

    /// A closed file waiting for its hook (or running it) or to ship: its
    /// trusted folder, its identity when it was closed, and its size.
    fn waiting(&self, path: &Path) -> Option<(PathBuf, Option<FileId>, u64)> {
        if let Some(f) = self
            .ship_queue
            .borrow()
            .values()
            .flatten()
            .find(|f| f.path == path)
        {
            return Some((f.trusted.clone(), f.id, f.bytes));
        }
        let unhooked = self.unhooked.borrow();
        let u = unhooked.get(path)?;
        Some((u.trusted.clone(), u.id, u.bytes))
    }

    /// What to hand the `on_close` hook or `ship` command of the closed file
    /// `path`: only while `path` is still the regular, read-only file bsc closed
    /// (not a link; the same device, inode and size; if only made writable
    /// again by its owner, it is made read-only again first; writable by group
    /// or others, it is refused), the path of a hard link
    /// to it in the state folder, [`OUTGOING`]`/<dev>-<inode>/<its name>`
    /// (made when it was closed: what the command reads is that file whatever
    /// happens to `path` since); where no hard link can be made (a capture
    /// folder on another file system than the root) or no identity was
    /// journaled (bsc 0.1), `path` itself, just checked.
    pub fn hand_over(&self, path: &Path) -> Result<PathBuf, NotHanded> {
        use NotHanded::{Gone, Replaced};
        let (trusted, journaled, bytes) = self
            .waiting(path)
            .ok_or(Replaced("bsc has no record of closing it"))?;
        let gone_or = |e: io::Error, why| {
            if e.kind() == io::ErrorKind::NotFound {
                Gone
            } else {
                Replaced(why)
            }
        };
        let (dir, name) =
            dir_of(&trusted, path).map_err(|e| gone_or(e, "its folder is not reachable"))?;
        let mut now =
            sys::stat_at(&dir, &name).map_err(|e| gone_or(e, "it cannot be looked at"))?;
        if now.is_file()
            && now.mode & 0o222 == 0o200
            && journaled == Some(now.id)
            && now.size == bytes
        {
            // The file bsc closed, made writable again by its owner only (a
            // routine `chmod u+w`): only bsc's own user or root could have
            // written it, and they can do anything anyway. Read-only again,
            // through the file itself, then looked at anew. Anything else
            // about it changed is refused below; writable by group or others
            // too, it is refused: no check after the fact excludes a write
            // through a descriptor opened while it was writable.
            match make_read_only(&dir, &name, now.id, bytes) {
                Ok(()) => {
                    warn!(
                        "{}: it was made writable again (same file, same size); bsc made it read-only again",
                        path.display()
                    );
                    now = sys::stat_at(&dir, &name)
                        .map_err(|e| gone_or(e, "it cannot be looked at"))?;
                }
                Err(e) => warn!(
                    "{}: it was made writable again and cannot be made read-only: {e}",
                    path.display()
                ),
            }
        }
        let why = if now.is_link() {
            "it is a symbolic link now"
        } else if !now.is_file() {
            "it is not a regular file now"
        } else if journaled.is_some_and(|id| id != now.id) {
            "it is another file now (not the inode bsc closed)"
        } else if now.size != bytes {
            "its size changed since bsc closed it"
        } else if now.mode & 0o022 != 0 {
            "it was made writable by group or others: anyone could have written it"
        } else if now.mode & 0o222 != 0 {
            "it was made writable again"
        } else {
            // The capture's own path is handed only from a folder no other
            // user can rename things in (see `path_trusted`).
            let own_path = || {
                if path_trusted(&trusted, &dir) {
                    Ok(path.to_path_buf())
                } else {
                    Err(Replaced("its folder may be written by others"))
                }
            };
            let Some(id) = journaled else {
                return own_path();
            };
            // Linked (again: it may be there already) and checked once more:
            // what is linked is the file `id`, or it was replaced in between.
            let sub = pin_dir_name(id);
            // In bsc's own state folder, by its handle, in folders bsc made
            // 0700 and checked: what no one else can write.
            let linked = self.own_dir().and_then(|(state, _)| {
                if self.lost.get() {
                    return Err(io::Error::other("bsc's state folder was replaced"));
                }
                let out = private_subdir(&state, OUTGOING)?;
                let out = private_subdir(&out, &sub)?;
                {
                    match sys::link_at(&dir, &name, &out, &name) {
                        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                        _ => {}
                    }
                    Ok(sys::stat_at(&out, &name)?.id == id)
                }
            });
            return match linked {
                Ok(true) => Ok(self.state_dir.join(OUTGOING).join(sub).join(name)),
                Ok(false) => {
                    self.unpin(&sub, &name);
                    Err(Replaced("it was replaced while bsc linked it"))
                }
                // No hard link across file systems (or to a file bsc did not
                // create, with protected_hardlinks), or no state folder of
                // bsc's own: the path just checked.
                Err(_) => {
                    self.unpin(&sub, &name);
                    own_path()
                }
            };
        };
        Err(Replaced(why))
    }

    /// Removes the hard link of the file `id` (at `path`) once nothing needs it
    /// (no hook waits or runs for it, it does not wait to ship).
    fn unpin_if_unused(&self, path: &Path, id: Option<FileId>) {
        let Some(id) = id else { return };
        if self.is_unshipped(path) || self.unhooked.borrow().contains_key(path) {
            return;
        }
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            self.unpin(&pin_dir_name(id), name);
        }
    }

    /// Removes the link `name` and its folder `sub` from [`OUTGOING`], in
    /// bsc's own state folder (by its handle).
    fn unpin(&self, sub: &str, name: &str) {
        let Ok((state, _)) = self.own_dir() else {
            return;
        };
        let Ok(out) = sys::open_subdir(&state, OUTGOING, None) else {
            return;
        };
        if let Ok(d) = sys::open_subdir(&out, sub, None) {
            let _ = sys::unlink_at(&d, name);
        }
        if sys::remove_dir_at(&out, sub).is_err() {
            let _ = sys::unlink_at(&out, sub);
        }
    }

    /// At start-up: removes every link in [`OUTGOING`] (an earlier run's, of
    /// files shipped or deleted since, or still waiting): the files still
    /// waiting are linked anew at their turn, after the same check against
    /// what the journal recorded at their close ([`Storage::hand_over`]).
    fn sweep_pins(&self) {
        if let Ok(entries) = std::fs::read_dir(self.state_dir.join(OUTGOING)) {
            for e in entries.flatten() {
                unpin_dir(&e.path());
            }
        }
    }

    /// Notes that `path` is gone (deleted by bsc or behind its back).
    pub fn gone(&self, path: &Path) {
        let id = self.waiting(path).and_then(|(_, id, _)| id);
        self.open.borrow_mut().remove(path);
        let e = Entry::Deleted {
            path: path.to_path_buf(),
        };
        self.apply(e.clone(), None);
        self.append(&e);
        self.unpin_if_unused(path, id);
    }

    /// The closed files the handler `key` created that still exist, oldest first.
    pub fn files(&self, key: &str) -> Vec<OwnFile> {
        self.keys
            .borrow()
            .get(key)
            .map_or_else(Vec::new, |k| k.closed.iter().cloned().collect())
    }

    /// At most `most` of those files, the first after `after` (the path and
    /// closing time of one listed before): a long list walked in pieces. If
    /// that file is gone meanwhile, the walk goes on with the first closed
    /// after it.
    pub fn files_after(
        &self,
        key: &str,
        after: Option<(&Path, SystemTime)>,
        most: usize,
    ) -> Vec<OwnFile> {
        let keys = self.keys.borrow();
        let Some(k) = keys.get(key) else {
            return Vec::new();
        };
        let start = match after {
            None => 0,
            Some((path, closed_at)) => match k.closed.iter().position(|f| f.path == path) {
                Some(i) => i + 1,
                None => k
                    .closed
                    .iter()
                    .position(|f| f.closed_at > closed_at)
                    .unwrap_or(k.closed.len()),
            },
        };
        k.closed.iter().skip(start).take(most).cloned().collect()
    }

    /// Whether the `on_close` hook of `path` waits or runs (retention spares it).
    pub fn hook_pending(&self, path: &Path) -> bool {
        self.unhooked.borrow().contains_key(path)
    }

    /// Notes that the `on_close` hook for `path` ended (or is never to run),
    /// journaled: it is not run again. Its hard link goes unless the file still
    /// waits to ship. A hook cut short (bsc stopped or crashed while it ran)
    /// has no such line, so it runs again after the next start.
    pub fn hook_done(&self, path: &Path) {
        let Some(u) = self.unhooked.borrow_mut().remove(path) else {
            return;
        };
        self.append(&Entry::HookEnded {
            path: path.to_path_buf(),
        });
        self.unpin_if_unused(path, u.id);
    }

    /// The closed files of `key` whose `on_close` hook did not end before bsc
    /// last stopped (never started, or cut short), as the hook sees them. They
    /// stay listed (now as queued in this run) until [`Storage::hook_done`]
    /// journals their hook's end.
    pub fn take_unhooked(&self, key: &str, handler: &str) -> Vec<ClosedFile> {
        let mut waiting = self.unhooked.borrow_mut();
        let mut files: Vec<ClosedFile> = waiting
            .iter_mut()
            .filter(|(_, u)| u.key == key && u.earlier)
            .map(|(p, u)| {
                u.earlier = false;
                ClosedFile {
                    handler: handler.to_string(),
                    on_close: Vec::new(),
                    records: u.span.records.unwrap_or(0),
                    bytes: u.bytes,
                    first_ts: u.span.first_ts,
                    last_ts: u.span.last_ts,
                    path: p.clone(),
                }
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files
    }

    /// Puts a closed file in the outbox.
    pub fn closed(&self, file: ClosedFile) {
        self.closed.borrow_mut().push(file);
    }

    /// Takes every file closed since the last call.
    pub fn take_closed(&self) -> Vec<ClosedFile> {
        std::mem::take(&mut *self.closed.borrow_mut())
    }

    /// The closed files `key` created that must go for `r`, given its open file
    /// (`open_bytes`), oldest first; they are taken off the list. Never a file
    /// waiting to ship (deletion stops at the oldest one: files ship oldest
    /// first, so those waiting are the newest), nor one whose `on_close` hook
    /// waits or runs (skipped; it still counts, and goes at a later pass once
    /// its hook has ended).
    pub fn take_excess(&self, key: &str, open_bytes: Option<u64>, r: &Retention) -> Vec<OwnFile> {
        let mut keys = self.keys.borrow_mut();
        let Some(k) = keys.get_mut(key) else {
            return Vec::new();
        };
        let n = excess(k.closed.make_contiguous(), open_bytes, r, SystemTime::now());
        let unshipped = self.unshipped.borrow();
        let unhooked = self.unhooked.borrow();
        let n = k
            .closed
            .iter()
            .take(n)
            .take_while(|f| !unshipped.contains(&f.path))
            .count();
        // Files whose hook waits or runs are skipped, not stopped at: a hook
        // that never ends holds its own file, not the ones after it.
        let held = |f: &OwnFile| unhooked.contains_key(&f.path);
        if k.closed.iter().take(n).all(held) {
            // Nothing to take (every second, for every handler): no rebuild.
            return Vec::new();
        }
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(k.closed.len());
        for (i, f) in std::mem::take(&mut k.closed).into_iter().enumerate() {
            if i < n && !held(&f) {
                taken.push(f);
            } else {
                kept.push_back(f);
            }
        }
        k.closed = kept;
        taken
    }

    /// The oldest closed file bsc created, of any key, taken off its list, with
    /// its key (for the disk budget). Files waiting to ship or for their
    /// `on_close` hook (or running it) are taken only with `even_held`, and
    /// only when no other file is left.
    pub fn take_oldest(&self, even_held: bool) -> Option<(String, OwnFile)> {
        let mut keys = self.keys.borrow_mut();
        let unshipped = self.unshipped.borrow();
        let unhooked = self.unhooked.borrow();
        let held = |p: &PathBuf| unshipped.contains(p) || unhooked.contains_key(p);
        let oldest = |waiting: bool| {
            keys.iter()
                .filter_map(|(key, k)| {
                    let i = k.closed.iter().position(|f| held(&f.path) == waiting)?;
                    Some((key.clone(), i, k.closed[i].closed_at))
                })
                .min_by_key(|(_, _, at)| *at)
        };
        let (key, i, _) = match oldest(false) {
            Some(found) => found,
            None if even_held => oldest(true)?,
            None => return None,
        };
        let f = keys.get_mut(&key)?.closed.remove(i)?;
        Some((key, f))
    }

    /// Keys with files waiting to ship.
    pub fn unshipped_keys(&self) -> Vec<String> {
        self.ship_queue.borrow().keys().cloned().collect()
    }

    /// The oldest file of `key` waiting to ship.
    pub fn next_unshipped(&self, key: &str) -> Option<Unshipped> {
        self.ship_queue
            .borrow()
            .get(key)
            .and_then(|q| q.front().cloned())
    }

    /// Whether files of `key` wait to ship.
    pub fn has_unshipped(&self, key: &str) -> bool {
        self.ship_queue.borrow().contains_key(key)
    }

    /// Whether `path` waits to ship.
    pub fn is_unshipped(&self, path: &Path) -> bool {
        self.unshipped.borrow().contains(path)
    }

    /// What waits to ship for `key`.
    pub fn backlog(&self, key: &str) -> Backlog {
        let queue = self.ship_queue.borrow();
        let Some(q) = queue.get(key) else {
            return Backlog::default();
        };
        Backlog {
            files: q.len() as u64,
            bytes: q.iter().map(|f| f.bytes).sum(),
            oldest: q.iter().map(|f| f.closed_at).min(),
        }
    }

    /// Notes that `path` was shipped: journaled and forced to the disk before
    /// this returns, so it never ships again. Returns whether it was waiting.
    pub fn shipped(&self, path: &Path) -> bool {
        if !self.is_unshipped(path) {
            return false;
        }
        let id = self.waiting(path).and_then(|(_, id, _)| id);
        let e = Entry::Shipped {
            path: path.to_path_buf(),
        };
        self.apply(e.clone(), None);
        self.append(&e);
        self.sync_journal();
        self.unpin_if_unused(path, id);
        true
    }

    /// Forces what was appended to the journal to the disk (before a ship
    /// command starts, and after one succeeded).
    pub fn sync_journal(&self) {
        // Behind: a rewrite (forced to the disk) is all that can help.
        if !self.catch_up() || !self.unsynced.get() {
            return;
        }
        if let Some(f) = self.journal.borrow().as_ref() {
            if let Err(e) = f.sync_data() {
                warn!(
                    "cannot force {} to the disk: {e}",
                    self.journal_path.display()
                );
                return;
            }
        }
        self.unsynced.set(false);
    }

    /// Takes `path`, a closed file `key` created, off its list (to delete it).
    pub fn take_file(&self, key: &str, path: &Path) -> Option<OwnFile> {
        let mut keys = self.keys.borrow_mut();
        let k = keys.get_mut(key)?;
        let i = k.closed.iter().position(|f| f.path == path)?;
        k.closed.remove(i)
    }

    /// Deletes a file bsc created: only below the trusted folder it was created in
    /// (the root, or a folder the config file names), never through a link, and
    /// never in bsc's state folder. Journals the deletion (also when it was gone).
    pub fn remove(&self, f: &OwnFile) -> io::Result<()> {
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

/// Whether bsc can write under `root`: with `create`, by making the root and its
/// state folder and a probe file in it (start-up); without, by asking the kernel
/// about the nearest folder that exists (`bsc check`, which changes nothing).
pub fn check_root_writable(root: &Path, create: bool) -> Result<(), String> {
    let fail = |what: &Path, e: io::Error| {
        format!(
            "root_log_directory {}: cannot write {}: {e} (bsc runs as uid {}; fix the owner or mode, or choose another root)",
            root.display(),
            what.display(),
            sys::effective_uid()
        )
    };
    let state = root.join(STATE_DIR);
    // Not a folder (through a link as well): no owner or mode would fix that.
    if std::fs::metadata(root).is_ok_and(|m| !m.is_dir()) {
        return Err(format!(
            "root_log_directory {} is not a folder: remove what is there or choose another root",
            root.display()
        ));
    }
    check_root_trust(root)?;
    check_state_modes(&state)?;
    if !create {
        let mut dir = root;
        while !dir.exists() {
            dir = dir.parent().unwrap_or(Path::new("/"));
        }
        return sys::can_write_dir(dir).map_err(|e| fail(dir, e));
    }
    if std::fs::symlink_metadata(&state).is_ok_and(|m| !m.is_dir()) {
        return Err(format!(
            "{} is a symlink or not a folder; bsc keeps its state only in a plain folder there",
            state.display()
        ));
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(root)
            .map_err(|e| fail(root, e))?;
    }
    check_root_trust(root)?;
    make_state_dir(&state).map_err(|e| fail(&state, e))?;
    let probe = state.join(format!(".write-test-{}", std::process::id()));
    create_state_file(&probe).map_err(|e| fail(&probe, e))?;
    std::fs::remove_file(&probe).map_err(|e| fail(&probe, e))?;
    sys::can_write_dir(root).map_err(|e| fail(root, e))
}

/// Refuses a root that another user could rename things in, as OpenSSH's
/// StrictModes does: the root (or, not made yet, the nearest folder above it
/// that exists) and every folder above it must be owned by root or bsc's
/// effective user and not writable by group or others; a folder above the
/// root with the sticky bit (`/tmp`, 1777) is fine, since there others cannot
/// rename or delete what they do not own. Whoever could rename `<root>/.bsc`
/// could put their own state folder in its place. One line names the folder
/// and the fix.
pub fn check_root_trust(root: &Path) -> Result<(), String> {
    let mut dir = root;
    while std::fs::symlink_metadata(dir).is_err() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p,
            _ => return Ok(()),
        }
    }
    let real = std::fs::canonicalize(dir).map_err(|e| {
        format!(
            "root_log_directory {}: cannot resolve {}: {e}",
            root.display(),
            dir.display()
        )
    })?;
    let euid = sys::effective_uid();
    // The root itself may not be sticky; a folder above it may.
    let mut first = dir == root;
    for d in real.ancestors() {
        let m = std::fs::metadata(d).map_err(|e| {
            format!(
                "root_log_directory {}: cannot look at {}: {e}",
                root.display(),
                d.display()
            )
        })?;
        let sticky = !first && m.mode() & 0o1000 != 0;
        let fix = if m.uid() != euid && m.uid() != 0 {
            Some((
                format!("is owned by uid {}", m.uid()),
                format!("chown {euid} {}", d.display()),
            ))
        } else if m.mode() & 0o022 != 0 && !sticky {
            Some((
                format!(
                    "may be written by group or others (mode {:o})",
                    m.mode() & 0o7777
                ),
                format!("chmod go-w {}", d.display()),
            ))
        } else {
            None
        };
        if let Some((why, fix)) = fix {
            return Err(format!(
                "root_log_directory {}: the folder {} {why}: whoever can write it can replace bsc's state folder and have bsc hand them files; `{fix}`, or choose another root",
                root.display(),
                d.display()
            ));
        }
        first = false;
    }
    Ok(())
}

/// The files of the state folder that [`check_state_modes`] looks at.
const STATE_FILES: [&str; 3] = ["files.jsonl", "handlers.json", LOCK_FILE];

/// The file in the state folder that one bsc per root holds locked.
pub const LOCK_FILE: &str = "lock";

/// Refuses a state folder (and its journal, state and lock files) that someone
/// but bsc's effective user or root owns, or that group or others may write, as
/// OpenSSH's StrictModes does: whoever could write there could make bsc run a
/// command or delete a file. One line says what to fix. Nothing there yet: fine.
pub fn check_state_modes(state: &Path) -> Result<(), String> {
    let euid = sys::effective_uid();
    let check = |path: &Path, m: &std::fs::Metadata| -> Result<(), String> {
        let what = if m.is_dir() { "folder" } else { "file" };
        let (why, fix) = if m.uid() != euid && m.uid() != 0 {
            (
                "is owned by another user than bsc's or root",
                format!("chown {euid}"),
            )
        } else if m.mode() & 0o022 != 0 {
            (
                "may be written by group or others",
                "chmod go-w".to_string(),
            )
        } else {
            return Ok(());
        };
        Err(format!(
            "bsc's state {what} {} {why}: whoever can write it can make bsc run commands; `{fix} {}`, or remove it",
            path.display(),
            path.display()
        ))
    };
    let Ok(m) = std::fs::symlink_metadata(state) else {
        return Ok(());
    };
    if !m.is_dir() {
        // Refused (or replaced) by the caller that would use it.
        return Ok(());
    }
    check(state, &m)?;
    for name in STATE_FILES {
        let path = state.join(name);
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !m.is_file() {
            let kind = match m.file_type() {
                t if t.is_symlink() => "a symbolic link",
                t if t.is_dir() => "a folder",
                _ => "a FIFO, socket or device",
            };
            return Err(format!(
                "bsc's state file {} is {kind}, not a regular file: remove it (`rm -r {}`); bsc makes it again",
                path.display(),
                path.display()
            ));
        }
        check(&path, &m)?;
    }
    Ok(())
}

/// Creates the state folder, mode 0700 (and the root above it, should it have
/// been deleted). One that exists is left as it is ([`check_state_modes`]
/// vetted it).
pub fn make_state_dir(state: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(root) = state.parent() {
        std::fs::create_dir_all(root)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(state) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Takes the root: one bsc per root. Locks `<root>/.bsc/lock` (`flock`, held
/// until bsc exits; the kernel releases it when bsc dies, `kill -9` included, so
/// it is never stale) and writes bsc's pid in it. Another bsc holding it: an
/// error naming its pid. The file must stay open as long as bsc runs.
pub fn lock_root(root: &Path) -> Result<File, String> {
    let state = root.join(STATE_DIR);
    let dir = sys::open_dir_beneath(root, &[STATE_DIR], false)
        .map_err(|e| format!("cannot open {}: {e}", state.display()))?;
    lock_in(&dir, &state.join(LOCK_FILE)).map_err(|e| match e {
        Locked::By(pid) => format!(
            "another bsc (pid {pid}) is running on root {}: one bsc per root; stop it first, or give this one another root_log_directory",
            root.display()
        ),
        Locked::Failed(e) => e,
    })
}

/// Makes (or opens) `<root>/.bsc` (0700; the root 0750 if it is gone), checks
/// it is bsc's (owner, mode) and takes the lock in it, pid written. The root
/// is checked first as at start-up ([`check_root_trust`]), and its handle once
/// more: a root another user made again after it was deleted (under a sticky
/// `/tmp`, say) is refused, and nothing is made in it.
fn make_own(root: &Path) -> io::Result<OwnDir> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(root)?;
    check_root_trust(root).map_err(io::Error::other)?;
    let base: OwnedFd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(root)?
        .into();
    if !folder_trusted(&base) {
        return Err(io::Error::other(format!(
            "root_log_directory {} changed while bsc checked it: it may be written by others",
            root.display()
        )));
    }
    let fd = sys::open_subdir(&base, STATE_DIR, Some(0o700))?;
    let st = sys::stat_fd(&fd)?;
    let euid = sys::effective_uid();
    if (st.uid != euid && st.uid != 0) || st.mode & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} is not bsc's (owned by uid {}, mode {:o})",
            root.join(STATE_DIR).display(),
            st.uid,
            st.mode & 0o7777
        )));
    }
    let lock = lock_in(&fd, &root.join(STATE_DIR).join(LOCK_FILE)).map_err(|e| {
        io::Error::other(match e {
            Locked::By(pid) => format!("another bsc (pid {pid}) holds its lock"),
            Locked::Failed(e) => e,
        })
    })?;
    let lock_id = Some(sys::stat_fd(&lock)?.id);
    Ok(OwnDir {
        fd,
        id: st.id,
        _lock: Some(lock),
        lock_id,
    })
}

/// Whether a capture's own path may be handed to a command (the fallback of
/// [`Storage::hand_over`]): its folder `dir` (the handle just used) and the
/// trusted folder it is below, with every folder above that, are such that no
/// other user can rename things in them ([`folder_trusted`],
/// [`check_root_trust`]). Otherwise whoever owns or may write one could put a
/// link to any file bsc can read in the path's place after it was checked.
fn path_trusted(trusted: &Path, dir: &OwnedFd) -> bool {
    folder_trusted(dir) && check_root_trust(trusted).is_ok()
}

/// Whether the open folder `dir` is owned by root or bsc's effective user and
/// not writable by group or others: what no other user can rename things in.
fn folder_trusted(dir: &OwnedFd) -> bool {
    let euid = sys::effective_uid();
    sys::stat_fd(dir).is_ok_and(|st| (st.uid == euid || st.uid == 0) && st.mode & 0o022 == 0)
}

/// Why [`lock_in`] failed.
enum Locked {
    /// Another bsc holds the lock (its pid as written in the file).
    By(String),
    Failed(String),
}

/// Takes the lock file of the state folder `dir` (`path` for messages): `flock`,
/// bsc's pid written in it.
fn lock_in(dir: &OwnedFd, path: &Path) -> Result<File, Locked> {
    let cannot = |e: io::Error| Locked::Failed(format!("cannot lock {}: {e}", path.display()));
    let f = sys::open_at(dir, LOCK_FILE, libc::O_RDWR | libc::O_CREAT, 0o600).map_err(cannot)?;
    if !sys::stat_fd(&f).map_err(cannot)?.is_file() {
        return Err(Locked::Failed(format!(
            "{} is not a regular file; remove it",
            path.display()
        )));
    }
    if !sys::try_lock_exclusive(&f).map_err(cannot)? {
        let mut buf = [0u8; 24];
        let n = std::os::unix::fs::FileExt::read_at(&f, &mut buf, 0).unwrap_or(0);
        let pid = std::str::from_utf8(&buf[..n]).unwrap_or("?").trim();
        return Err(Locked::By(pid.to_string()));
    }
    // Padded: a shorter pid overwrites a longer one whole.
    let pid = format!("{:<23}\n", std::process::id());
    std::os::unix::fs::FileExt::write_all_at(&f, pid.as_bytes(), 0).map_err(cannot)?;
    Ok(f)
}

/// Writes `bytes` as the file `name` in the folder `dir`: a temporary file
/// (made anew, 0600, never through a link), forced to the disk, renamed into
/// place, the folder forced too.
fn replace_at(dir: &OwnedFd, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = format!("{name}.tmp");
    match sys::unlink_at(dir, &tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let written = (|| {
        let mut f = sys::open_at(
            dir,
            &tmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )?;
        f.write_all(bytes)?;
        f.sync_all()?;
        sys::rename_at(dir, &tmp, name)?;
        File::from(dir.try_clone()?).sync_all()
    })();
    if written.is_err() {
        // A partial temporary file must not hold on to the space.
        let _ = sys::unlink_at(dir, &tmp);
    }
    written
}

/// Opens (or creates, 0600) the journal in the state folder `dir` for reading
/// and appending: a regular file only.
fn open_journal(dir: &OwnedFd) -> io::Result<File> {
    let f = sys::open_at(
        dir,
        JOURNAL,
        libc::O_RDWR | libc::O_APPEND | libc::O_CREAT,
        0o600,
    )?;
    if !sys::stat_fd(&f)?.is_file() {
        return Err(io::Error::other("it is not a regular file"));
    }
    Ok(f)
}

/// Creates a state file (a temporary one, to be renamed into place) anew: whatever
/// is at `path` is removed first (a symlink itself, not its target), and the new
/// file is created exclusively without following links, so no link planted in
/// the state folder can make bsc write elsewhere.
pub fn create_state_file(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Reads a state file, never through a symlink.
pub fn read_state_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("it is not a regular file"));
    }
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut f, &mut bytes)?;
    Ok(bytes)
}

/// The folder of `path` (opened below `trusted` without following links) and the
/// file's name in it. `path` must be below `trusted` with only plain components.
pub fn dir_of(trusted: &Path, path: &Path) -> io::Result<(OwnedFd, String)> {
    let refuse = |why: &str| io::Error::other(format!("{}: {why}", path.display()));
    if !trusted.is_absolute() {
        return Err(refuse("its trusted folder is not absolute"));
    }
    let rel = path
        .strip_prefix(trusted)
        .map_err(|_| refuse("it is not below the folder it was created in"))?;
    let mut parts: Vec<&str> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(|| refuse("not UTF-8"))?),
            _ => return Err(refuse("its path is not plain")),
        }
    }
    let name = parts.pop().ok_or_else(|| refuse("it has no file name"))?;
    Ok((
        sys::open_dir_beneath(trusted, &parts, false)?,
        name.to_string(),
    ))
}

/// Why journaled `ship` settings cannot be used (`None`: they can). The journal
/// is bsc's own, but damage or a hand edit must never crash it: the config
/// refuses all of these, so only a corrupted journal has them.
pub fn unusable_ship(s: &ShipSpec) -> Option<&'static str> {
    if s.argv.first().is_none_or(|p| p.is_empty()) {
        return Some("an empty command");
    }
    if s.argv.iter().any(|a| a.contains('\0')) {
        return Some("a NUL byte in the command");
    }
    let ok = |t: f64| t.is_finite() && t > 0.0;
    if !ok(s.timeout_s) || !ok(s.retry_max_s) {
        return Some("a timeout or retry wait that is not a positive number");
    }
    None
}

/// A journal entry as read at start-up, with unusable `ship` settings taken
/// out: the file is kept (retention, the disk budget) but does not wait to ship.
/// Logged once per file, at start-up.
fn checked(mut e: Entry) -> Entry {
    // Naming counts on from these (`seq + 1`, `n + 1`): a forged maximum must
    // not overflow. Real ones stay far below (a file a millisecond for 10^8 years).
    if let Entry::Opened {
        path, seq, n, ship, ..
    } = &mut e
    {
        if let Some(why) = ship.as_ref().and_then(unusable_ship) {
            warn!(
                "{}: its journaled ship settings have {why}; the file will not be shipped",
                path.display()
            );
            *ship = None;
        }
        if *seq > MAX_SEQ || *n > MAX_N {
            warn!(
                "{}: its journaled sequence number or -N suffix is out of range; capped",
                path.display()
            );
            *seq = (*seq).min(MAX_SEQ);
            *n = (*n).min(MAX_N);
        }
    }
    if let Entry::Closed { path, ship, .. } = &mut e {
        if let Some(why) = ship.as_ref().and_then(unusable_ship) {
            warn!(
                "{}: its journaled ship settings have {why}; the file is kept but will not be shipped",
                path.display()
            );
            *ship = None;
        }
    }
    e
}

/// Takes the write permissions off the file `name` in `dir`, through an fd
/// opened on it without following a link, only if that fd is the regular file
/// `id` of `bytes` bytes (what was there when it was looked at may have been
/// replaced since).
fn make_read_only(dir: &OwnedFd, name: &str, id: FileId, bytes: u64) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let f = sys::open_file_at(dir, name, sys::OpenMode::Read)?;
    let m = f.metadata()?;
    if !m.is_file() || (m.dev(), m.ino()) != id || m.len() != bytes {
        return Err(io::Error::other("it was replaced meanwhile"));
    }
    f.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7555))
}

/// Whether the hook of `path` has not ended yet (waits or runs: one cut short
/// runs again after the next start).
fn hook_waits(unhooked: &HashMap<PathBuf, Unhooked>, path: &Path) -> bool {
    unhooked.contains_key(path)
}

/// Removes a folder of [`OUTGOING`] and the link in it (a link or file in its
/// place: that itself, never what it points to).
fn unpin_dir(dir: &Path) {
    let is_dir = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
    if let Ok(entries) = std::fs::read_dir(dir).map(|e| e.filter(|_| is_dir)) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if std::fs::remove_dir(dir).is_err() {
        let _ = std::fs::remove_file(dir);
    }
}

/// Opens the folder `name` in `dir`, made 0700 if missing, and checks it is
/// bsc's: owned by its effective user, written by no one else.
fn private_subdir(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    let fd = sys::open_subdir(dir, name, Some(0o700))?;
    let st = sys::stat_fd(&fd)?;
    if st.uid != sys::effective_uid() || st.mode & 0o022 != 0 {
        return Err(io::Error::other(format!("{name} is not bsc's")));
    }
    Ok(fd)
}

/// The folder in [`OUTGOING`] of the link of the file `id`.
fn pin_dir_name(id: FileId) -> String {
    format!("{}-{}", id.0, id.1)
}

/// Whether `f` is not empty and does not end with a newline.
fn ends_in_torn_line(f: &File) -> bool {
    let Ok(len @ 1..) = f.metadata().map(|m| m.len()) else {
        return false;
    };
    let mut last = [0u8; 1];
    std::os::unix::fs::FileExt::read_at(f, &mut last, len - 1)
        .is_ok_and(|n| n == 1 && last[0] != b'\n')
}

/// The journal line for `last`, opened by the handler `key` with `ship`.
fn opened_entry(key: &str, last: LastFile, ship: Option<&ShipSpec>) -> Entry {
    Entry::Opened {
        key: key.to_string(),
        path: last.path,
        trusted: last.trusted,
        unnumbered: last.unnumbered,
        n: last.n,
        seq: last.seq,
        created: last.created,
        ship: ship.cloned(),
    }
}

/// One journal line, newline included.
fn line_of(e: &Entry) -> String {
    // Serializing a plain enum of strings and numbers cannot fail.
    let mut s = serde_json::to_string(e).unwrap_or_default();
    s.push('\n');
    s
}

/// Whether `path` is below `dir` with only plain components.
fn inside(path: &Path, dir: &Path) -> bool {
    path.strip_prefix(dir).is_ok_and(|rel| {
        rel.components().all(|c| matches!(c, Component::Normal(_)))
            && rel.components().next().is_some()
    })
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
                trusted: PathBuf::from("/"),
                span: Span::default(),
                id: None,
                bytes,
                closed_at: now - Duration::from_secs(*a),
            })
            .collect()
    }

    #[test]
    fn disk_budget_arithmetic() {
        let b = |bytes, pct| DiskBudget {
            min_free_bytes: bytes,
            min_free_percent: pct,
        };
        assert_eq!(b(None, None).threshold(1000), None);
        assert_eq!(b(Some(300), None).threshold(1000), Some(300));
        assert_eq!(b(None, Some(10.0)).threshold(1000), Some(100));
        assert_eq!(
            b(Some(50), Some(10.0)).threshold(1000),
            Some(100),
            "the larger"
        );
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

    fn opened(s: &Storage, key: &str, path: &Path, root: &Path, n: u32, seq: u64) {
        s.opened(
            key,
            LastFile {
                path: path.to_path_buf(),
                trusted: root.to_path_buf(),
                unnumbered: path.to_path_buf(),
                n,
                seq,
                created: true,
                closed: false,
            },
            (0, seq),
            None,
        );
    }

    #[test]
    fn a_long_file_list_is_walked_after_the_last_file_listed() {
        let root = std::env::temp_dir().join(format!("bsc-storage-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let s = Storage::open(&root);
        let paths: Vec<PathBuf> = (0..5).map(|i| root.join(format!("f{i}.pcap"))).collect();
        for (i, p) in paths.iter().enumerate() {
            std::fs::write(p, b"x").unwrap();
            opened(&s, "h", p, &root, 0, i as u64);
            s.finished(p, Span::default(), None, false, None);
        }
        let names =
            |files: Vec<OwnFile>| -> Vec<PathBuf> { files.into_iter().map(|f| f.path).collect() };
        assert_eq!(names(s.files_after("h", None, 2)), paths[..2]);
        let second = s.files("h")[1].clone();
        let after = Some((second.path.as_path(), second.closed_at));
        assert_eq!(names(s.files_after("h", after, 2)), paths[2..4]);
        assert!(s.files_after("nobody", None, 2).is_empty());
        // The file listed last deleted meanwhile: on with the ones closed after it.
        let first = s.files("h")[0].clone();
        s.remove(&first).unwrap();
        s.remove(&second).unwrap();
        let after = Some((second.path.as_path(), second.closed_at));
        let rest = names(s.files_after("h", after, 10));
        assert!(
            rest.ends_with(&paths[3..]) && !rest.contains(&paths[1]),
            "{rest:?}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn journal_keeps_what_exists_and_survives_hostile_names() {
        let root = std::env::temp_dir().join(format!("bsc-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // A name with a newline and a tab: one JSON line each, nothing injected.
        let (a, b, c) = (
            root.join("a\n+h\t.etc.passwd.pcap"),
            root.join("b.pcap"),
            root.join("c.pcap"),
        );
        for p in [&a, &b, &c] {
            std::fs::write(p, b"x").unwrap();
        }
        let s = Storage::open(&root);
        assert!(s.last("h").is_none());
        opened(&s, "h", &a, &root, 0, 1);
        assert!(s.is_open(&a));
        s.finished(&a, Span::default(), None, false, None);
        assert!(!s.is_open(&a));
        opened(&s, "h", &b, &root, 0, 2);
        s.finished(&b, Span::default(), None, false, None);
        opened(&s, "g", &c, &root, 3, 9);
        drop(s);
        let text = std::fs::read_to_string(root.join(".bsc/files.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 5, "{text}");
        std::fs::remove_file(&b).unwrap();
        let s = Storage::open(&root);
        let last = s.last("h").unwrap();
        assert_eq!(
            (last.path.clone(), last.seq, last.closed),
            (b.clone(), 2, true)
        );
        let g = s.last("g").unwrap();
        assert_eq!(
            (g.n, g.seq, g.closed),
            (3, 9, false),
            "open when bsc stopped"
        );
        // Only `a` is left to delete for h (b is gone); the budget takes it.
        let (key, f) = s.take_oldest(true).unwrap();
        assert_eq!((key.as_str(), &f.path), ("h", &a));
        s.remove(&f).unwrap();
        assert!(!a.exists() && c.exists());
        assert!(s.take_oldest(true).is_none(), "g's file was never closed");
        // A forged entry outside its trusted folder is refused.
        let forged = OwnFile {
            path: PathBuf::from("/etc/passwd"),
            trusted: root.clone(),
            bytes: 1,
            closed_at: SystemTime::now(),
            span: Span::default(),
            id: None,
        };
        assert!(s.remove(&forged).is_err());
        let link = OwnFile {
            path: root.join("sub/x.pcap"),
            trusted: root.clone(),
            bytes: 1,
            closed_at: SystemTime::now(),
            span: Span::default(),
            id: None,
        };
        let outside = root.with_extension("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("x.pcap"), b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
        assert!(s.remove(&link).is_err(), "no deletion through a link");
        assert!(outside.join("x.pcap").exists());
        std::fs::remove_dir_all(&outside).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn ship(cmd: &str) -> ShipSpec {
        ShipSpec {
            argv: vec![cmd.to_string()],
            timeout_s: 300.0,
            retry_max_s: 600.0,
            delete_after: false,
        }
    }

    #[test]
    fn files_waiting_for_their_hook_are_skipped_by_retention_and_the_budgets_normal_pass() {
        let root = std::env::temp_dir().join(format!("bsc-hookq-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let paths: Vec<PathBuf> = (0..4).map(|i| root.join(format!("{i}.pcap"))).collect();
        let s = Storage::open(&root);
        for (i, p) in paths.iter().enumerate() {
            std::fs::write(p, vec![b'x'; 10]).unwrap();
            opened(&s, "k", p, &root, 0, i as u64 + 1);
            // The first two wait for their hook.
            s.finished(p, Span::default(), None, i < 2, None);
        }
        let r = Retention {
            max_files: Some(1),
            ..Retention::default()
        };
        let gone = s.take_excess("k", None, &r);
        assert_eq!(
            gone.iter().map(|f| &f.path).collect::<Vec<_>>(),
            [&paths[2]],
            "held files are skipped and still counted"
        );
        assert_eq!(
            s.take_oldest(false).unwrap().1.path,
            paths[3],
            "the budget takes the newer file first"
        );
        assert!(s.take_oldest(false).is_none(), "and spares them too");
        assert!(s.hook_pending(&paths[0]), "a running hook holds its file");
        s.hook_done(&paths[0]);
        assert_eq!(s.take_oldest(false).unwrap().1.path, paths[0]);
        assert_eq!(
            s.take_oldest(true).unwrap().1.path,
            paths[1],
            "when nothing else is left"
        );
        drop(s);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_ship_queue_survives_restarts_and_compaction_and_retention_spares_it() {
        let root = std::env::temp_dir().join(format!("bsc-shipq-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // A name no line format survives: newline, quote, tab, backslash.
        let names = ["a\n{\"x\":1}\t.pcap", "b.pcap", "c.pcap", "d.pcap"];
        let paths: Vec<PathBuf> = names.iter().map(|n| root.join(n)).collect();
        let s = Storage::open(&root);
        for (i, p) in paths.iter().enumerate() {
            std::fs::write(p, vec![b'x'; 10]).unwrap();
            opened(&s, "k", p, &root, 0, i as u64 + 1);
            s.finished(p, Span::default(), None, false, Some(&ship("/bin/up")));
        }
        assert_eq!(
            s.next_unshipped("k").unwrap().path,
            paths[0],
            "oldest first"
        );
        assert_eq!(s.backlog("k").files, 4);
        assert_eq!(s.backlog("k").bytes, 40);
        // Retention: at most one file; none may go while all wait to ship.
        let r = Retention {
            max_files: Some(1),
            ..Retention::default()
        };
        assert!(s.take_excess("k", None, &r).is_empty());
        assert!(s.take_oldest(false).is_none(), "the budget spares them too");
        assert!(s.shipped(&paths[0]));
        assert!(!s.shipped(&paths[0]), "once");
        assert!(s.shipped(&paths[1]));
        drop(s);
        let s = Storage::open(&root); // compacts
        assert_eq!(s.backlog("k").files, 2);
        assert_eq!(s.next_unshipped("k").unwrap().path, paths[2]);
        assert_eq!(s.next_unshipped("k").unwrap().ship, ship("/bin/up"));
        assert!(!s.is_unshipped(&paths[0]) && s.is_unshipped(&paths[3]));
        // Shipped files may go (oldest first), and deletion stops at the
        // first waiting one.
        let gone = s.take_excess("k", None, &r);
        assert_eq!(
            gone.iter().map(|f| &f.path).collect::<Vec<_>>(),
            [&paths[0], &paths[1]]
        );
        // Only the disk budget takes a waiting file, when asked to.
        let (_, f) = s.take_oldest(true).unwrap();
        assert_eq!(f.path, paths[2]);
        s.remove(&f).unwrap();
        assert_eq!(s.next_unshipped("k").unwrap().path, paths[3]);
        // Forced lines in the journal for a file bsc never closed do nothing.
        drop(s);
        let journal = root.join(".bsc/files.jsonl");
        let mut text = std::fs::read_to_string(&journal).unwrap();
        text.push_str("{\"shipped\":{\"path\":\"/nowhere\"}}\n{\"closed\":{\"path\": tor");
        std::fs::write(&journal, text).unwrap();
        let s = Storage::open(&root);
        assert_eq!(s.backlog("k").files, 1);
        assert_eq!(s.unshipped_keys(), ["k"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_file_left_open_keeps_its_ship_settings_across_restarts_and_compaction() {
        let root = std::env::temp_dir().join(format!("bsc-leftship-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join(STATE_DIR)).unwrap();
        let (a, b) = (root.join("a.pcap"), root.join("b.pcap"));
        let s = Storage::open(&root);
        s.opened("k", last_file(&a, &root, 1), (0, 1), Some(&ship("/bin/up")));
        drop(s); // "a crash": never closed
        for _ in 0..2 {
            let s = Storage::open(&root); // compacts each time
            let left = s.left_open();
            assert_eq!(left.len(), 1);
            assert_eq!(left[0].2, Some(ship("/bin/up")));
        }
        // A journal of an earlier version (no `ship` in `opened`) still reads.
        let line = format!(
            "{{\"opened\":{{\"key\":\"g\",\"path\":{b:?},\"trusted\":{root:?},\"unnumbered\":{b:?},\"n\":0,\"seq\":4,\"created\":true}}}}\n"
        );
        let journal = root.join(".bsc/files.jsonl");
        let mut text = std::fs::read_to_string(&journal).unwrap();
        text.push_str(&line);
        std::fs::write(&journal, text).unwrap();
        let s = Storage::open(&root);
        assert_eq!(s.last("g").unwrap().seq, 4);
        assert!(s
            .left_open()
            .iter()
            .any(|(k, _, ship)| k == "g" && ship.is_none()));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_hook_not_journaled_as_ended_waits_again_after_a_restart_and_old_journals_read() {
        let root = std::env::temp_dir().join(format!("bsc-hookend-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let paths: Vec<PathBuf> = (0..3).map(|i| root.join(format!("{i}.pcap"))).collect();
        let s = Storage::open(&root);
        for (i, p) in paths.iter().enumerate() {
            std::fs::write(p, b"x").unwrap();
            opened(&s, "k", p, &root, 0, i as u64 + 1);
            s.finished(p, Span::default(), None, true, None);
        }
        s.hook_done(&paths[0]);
        drop(s); // "a crash" while the hooks of 1 and 2 ran
                 // Journals of earlier versions: `hook_started` reads as ended.
        let journal = root.join(".bsc/files.jsonl");
        let mut text = std::fs::read_to_string(&journal).unwrap();
        text.push_str(&format!(
            "{{\"hook_started\":{{\"path\":{:?}}}}}\n",
            paths[2]
        ));
        std::fs::write(&journal, text).unwrap();
        for _ in 0..2 {
            let s = Storage::open(&root); // compacts each time
            let waiting: Vec<bool> = paths.iter().map(|p| s.hook_pending(p)).collect();
            assert_eq!(waiting, [false, true, false]);
            assert_eq!(s.take_unhooked("k", "h").len(), 1);
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_intent_is_journaled_before_the_file_and_confirmed_without_a_second_line() {
        let root = std::env::temp_dir().join(format!("bsc-intent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let (a, b, c) = (
            root.join("a.pcap"),
            root.join("b.pcap"),
            root.join("c.pcap"),
        );
        let s = Storage::open(&root);
        let lines = || {
            std::fs::read_to_string(root.join(".bsc/files.jsonl"))
                .unwrap()
                .lines()
                .count()
        };
        // Journaled, memory unchanged until the file exists.
        s.opening("k", last_file(&a, &root, 1), Some(&ship("/bin/up")));
        assert!(s.last("k").is_none());
        assert_eq!(lines(), 1);
        std::fs::write(&a, b"x").unwrap();
        s.opened("k", last_file(&a, &root, 1), (0, 1), Some(&ship("/bin/up")));
        assert_eq!(lines(), 1, "confirmed without a second line");
        assert_eq!(s.last("k").unwrap().path, a);
        s.finished(&a, Span::default(), None, false, None);
        // Not created (a full disk), retried: one line; naming stays after `a`.
        s.opening("k", last_file(&b, &root, 2), None);
        s.opening("k", last_file(&b, &root, 2), None);
        assert_eq!(lines(), 3);
        assert_eq!(s.last("k").unwrap().path, a);
        // "A crash" right after an intent: the next start finds it left open.
        s.opening("k", last_file(&c, &root, 3), None);
        drop(s);
        assert_eq!(lines(), 4);
        let s = Storage::open(&root);
        let last = s.last("k").unwrap();
        assert_eq!(
            (&last.path, last.seq, last.created, last.closed),
            (&c, 3, true, false)
        );
        assert_eq!(s.files("k").len(), 1);
        // An intent whose append has the journal compacted is still in it.
        for i in 4..1100u64 {
            let p = root.join(format!("f{i}.pcap"));
            s.opening("k", last_file(&p, &root, i), None);
            let text = std::fs::read_to_string(root.join(".bsc/files.jsonl")).unwrap();
            let name = format!("f{i}.pcap");
            assert!(text.lines().last().unwrap().contains(&name), "{i}");
            std::fs::write(&p, b"x").unwrap();
            s.opened("k", last_file(&p, &root, i), (0, i), None);
            s.finished(&p, Span::default(), None, false, None);
            std::fs::remove_file(&p).unwrap();
        }
        assert!(lines() < 1100, "compacted");
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn last_file(path: &Path, root: &Path, seq: u64) -> LastFile {
        LastFile {
            path: path.to_path_buf(),
            trusted: root.to_path_buf(),
            unnumbered: path.to_path_buf(),
            n: 0,
            seq,
            created: true,
            closed: false,
        }
    }

    #[test]
    fn the_journal_is_compacted_while_running() {
        let root = std::env::temp_dir().join(format!("bsc-compact-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let s = Storage::open(&root);
        let r = Retention {
            max_files: Some(2),
            ..Retention::default()
        };
        for i in 0..3000u64 {
            let p = root.join(format!("f{i}.pcap"));
            std::fs::write(&p, b"x").unwrap();
            opened(&s, "k", &p, &root, 0, i + 1);
            s.finished(&p, Span::default(), None, false, None);
            for f in s.take_excess("k", None, &r) {
                s.remove(&f).unwrap();
            }
        }
        let lines = std::fs::read_to_string(root.join(".bsc/files.jsonl"))
            .unwrap()
            .lines()
            .count();
        assert!(lines < 2 * COMPACT_MIN_LINES as usize + 10, "{lines} lines");
        drop(s);
        let s = Storage::open(&root);
        assert_eq!(s.last("k").unwrap().seq, 3000);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_state_folder_is_known_after_it_was_deleted_and_made_again() {
        let root = std::env::temp_dir().join(format!("bsc-statedir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join(STATE_DIR)).unwrap();
        let storage = Storage::open(&root);
        let open = |dirs: &[&str]| sys::open_dir_beneath(&root, dirs, false).unwrap();
        assert!(storage.is_state_dir(&open(&[STATE_DIR])));
        assert!(!storage.is_state_dir(&open(&[])));
        // Deleted and made again: a new inode, still the state folder, and the
        // old one's identity (which a new capture folder may be given) is not.
        std::fs::remove_dir_all(root.join(STATE_DIR)).unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        assert!(!storage.is_state_dir(&open(&["sub"])));
        std::fs::create_dir(root.join(STATE_DIR)).unwrap();
        assert!(storage.is_state_dir(&open(&[STATE_DIR])));
        assert!(!storage.is_state_dir(&open(&["sub"])));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
