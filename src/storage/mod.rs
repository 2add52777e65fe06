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

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use crate::clock::UnixMicros;
use crate::config::ShipSpec;
use crate::files::index::SparseIndex;
use crate::files::paths::STATE_DIR;
use crate::files::pcap::FileId;
use crate::{sys, warn};

mod handover;
mod indexes;
mod journal;
mod naming;
pub mod persist;
mod queues;
mod retention;
mod state_dir;
#[cfg(test)]
mod tests;

pub use handover::{NotHanded, OUTGOING};
pub use journal::unusable_ship;
use journal::{checked, Entry, Journal};
pub use naming::{LastFile, Naming};
use queues::Unhooked;
pub use queues::{Backlog, Queues, Unshipped};
pub use retention::{excess, system_time, DiskBudget, OwnFile, Retention, Span};
use state_dir::StateDir;
pub use state_dir::{
    check_root_trust, check_root_writable, check_state_modes, create_state_file, lock_root,
    make_state_dir, read_state_file, LOCK_FILE,
};

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

/// What bsc keeps on disk besides captures, each part with one owner: the
/// state folder (its handle and lock), the journal, the naming state per key,
/// the files open now, and the hook and ship queues. The manager owns it and
/// lends it (`&mut`) to a handler for the length of one call.
#[derive(Debug)]
pub struct Storage {
    root: PathBuf,
    /// bsc's state folder, held open, and its lock.
    dir: StateDir,
    /// The journal file and how far it is behind memory.
    journal: Journal,
    /// Per handler key: its last file and the closed files it created.
    naming: Naming,
    /// Every file a handler has open now, with its identity (one writer per file).
    open: HashMap<PathBuf, FileId>,
    /// Closed files waiting for their `on_close` hook or to ship.
    queues: Queues,
    /// The sparse indexes of closed files, by path (`indexes.rs`).
    indexes: HashMap<PathBuf, SparseIndex>,
}

impl Storage {
    /// Opens (and compacts) the journal under `root`.
    pub fn open(root: &Path) -> Storage {
        let dir = root.join(STATE_DIR);
        let mut storage = Storage {
            root: root.to_path_buf(),
            dir: StateDir::held(root),
            journal: Journal::new(dir.join(journal::JOURNAL)),
            naming: Naming::default(),
            open: HashMap::new(),
            queues: Queues::default(),
            indexes: HashMap::new(),
        };
        let mut found = false;
        match read_state_file(&storage.journal.path) {
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
                            storage.journal.path.display()
                        ),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!("cannot read {}: {e}", storage.journal.path.display()),
        }
        found |= storage.read_legacy(&dir.join("files.log"));
        if found {
            storage.compact();
        }
        storage
    }

    /// The journal of bsc 0.1 (`+key<TAB>path`, `-path`): files it lists inside
    /// the root are taken over as closed files; the old file is then removed.
    fn read_legacy(&mut self, path: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        for line in text.lines() {
            if let Some((key, p)) = line.strip_prefix('+').and_then(|r| r.split_once('\t')) {
                let p = PathBuf::from(p);
                if inside(&p, &self.root) {
                    let trusted = self.root.clone();
                    self.apply(
                        Entry::Opened {
                            key: key.to_string(),
                            path: p.clone(),
                            trusted,
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
    fn apply(&mut self, e: Entry, closed_at: Option<SystemTime>) {
        let Storage { naming, queues, .. } = self;
        let keys = &mut naming.keys;
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
                    let earlier = closed_at.is_none();
                    let closed_at = closed_at.unwrap_or(mtime);
                    if hook {
                        queues.unhooked.insert(
                            path.clone(),
                            Unhooked {
                                key: key.clone(),
                                trusted: last.trusted.clone(),
                                span,
                                bytes,
                                earlier,
                                id,
                            },
                        );
                    }
                    if let Some(ship) = ship {
                        queues.wait_to_ship(Unshipped {
                            key: key.clone(),
                            path: path.clone(),
                            trusted: last.trusted.clone(),
                            span,
                            bytes,
                            closed_at,
                            ship,
                            id,
                        });
                    }
                    if last.created {
                        k.closed.retain(|f| f.path != path);
                        k.closed.push_back(OwnFile {
                            path: path.clone(),
                            trusted: last.trusted.clone(),
                            bytes,
                            closed_at,
                            span,
                            id,
                        });
                    }
                    break;
                }
            }
            Entry::HookEnded { path } => {
                queues.unhooked.remove(&path);
            }
            Entry::Shipped { path } => {
                queues.unqueue(&path);
            }
            Entry::Deleted { path } => {
                queues.unhooked.remove(&path);
                queues.unqueue(&path);
                for k in keys.values_mut() {
                    k.closed.retain(|f| f.path != path);
                    if let Some(last) = k.last.as_mut().filter(|l| l.path == path) {
                        last.closed = true;
                    }
                }
            }
        }
    }

    /// Forgets every journal entry that is not below the root or one of `bases`
    /// (the folders the config file names), or is in the state folder: the
    /// journal is bsc's own, but an entry naming another place is never acted on
    /// (deleted, repaired, appended to, hooked). Returns how many were dropped.
    pub fn keep_trusted(&mut self, bases: &[PathBuf]) -> usize {
        let state = self.root.join(STATE_DIR);
        let root = &self.root;
        let ok = |trusted: &Path, path: &Path| {
            (trusted == root || bases.iter().any(|b| b == trusted))
                && inside(path, trusted)
                && !path.starts_with(&state)
        };
        let mut dropped = 0;
        for k in self.naming.keys.values_mut() {
            let before = k.closed.len();
            k.closed.retain(|f| ok(&f.trusted, &f.path));
            dropped += before - k.closed.len();
            if k.last.as_ref().is_some_and(|l| !ok(&l.trusted, &l.path)) {
                k.last = None;
                dropped += 1;
            }
        }
        let waiting = &mut self.queues.unhooked;
        let before = waiting.len();
        waiting.retain(|p, u| ok(&u.trusted, p));
        dropped += before - waiting.len();
        let outside: Vec<PathBuf> = self
            .queues
            .ship_queue
            .values()
            .flatten()
            .filter(|f| !ok(&f.trusted, &f.path))
            .map(|f| f.path.clone())
            .collect();
        dropped += outside.len();
        for p in outside {
            self.queues.unqueue(&p);
        }
        if dropped > 0 {
            warn!(
                "{}: ignored {} that {} files outside the root and the folders the config names",
                self.journal.path.display(),
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
        self.naming
            .keys
            .iter()
            .filter_map(|(key, k)| {
                let l = k.last.as_ref()?;
                (!l.closed && !self.open.contains_key(&l.path))
                    .then(|| (key.clone(), l.clone(), k.last_ship.clone()))
            })
            .collect()
    }

    /// What the journal knows of handler keys' files (read only).
    pub fn naming(&self) -> &Naming {
        &self.naming
    }

    /// The hook and ship queues (read only).
    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    /// The last file opened for `key`, if the journal knows one.
    pub fn last(&self, key: &str) -> Option<LastFile> {
        self.naming.last(key)
    }

    /// See `Naming::seed`.
    pub fn seed(&mut self, key: &str, found: LastFile) {
        self.naming.seed(key, found)
    }

    /// Whether bsc closed `path` for good (see `Naming::was_closed`).
    pub fn was_closed(&self, path: &Path) -> bool {
        self.naming.was_closed(path)
    }

    /// Whether some handler has `path` open now.
    pub fn is_open(&self, path: &Path) -> bool {
        self.open.contains_key(path)
    }

    /// Whether some handler has the file `id` open now, under any name.
    pub fn is_busy(&self, id: FileId) -> bool {
        self.open.values().any(|&o| o == id)
    }

    /// Notes that the handler `key` opened `last.path`, the file `id` (and holds
    /// it open); `ship`: the handler's `ship` settings, should a crash leave the
    /// file open and the handler be gone at the next start. No line is appended
    /// when the journal says so already (its intent, or the file left open by a
    /// crash and resumed now).
    pub fn opened(&mut self, key: &str, last: LastFile, id: FileId, ship: Option<&ShipSpec>) {
        self.open.insert(last.path.clone(), id);
        let resumed = self.naming.keys.get(key).is_some_and(|k| {
            k.last.as_ref() == Some(&last) && k.last_ship.as_ref() == ship && !last.closed
        });
        if resumed {
            return;
        }
        let e = journal::opened_entry(key, last, ship);
        let line = journal::line_of(&e);
        let journaled = self.journal.intent.take_if(|i| *i == line).is_some();
        self.apply(e.clone(), None);
        if !journaled {
            self.append(&e);
        }
    }

    /// Notes that `path` (the file `id`) was closed for good at `now`, holding
    /// `span` (and is no longer open); `hook`: its `on_close` hook is still to
    /// run; `ship`: it waits to ship with these settings.
    pub fn finished(
        &mut self,
        path: &Path,
        span: Span,
        id: Option<FileId>,
        hook: bool,
        ship: Option<&ShipSpec>,
        now: UnixMicros,
    ) {
        self.open.remove(path);
        let e = Entry::Closed {
            path: path.to_path_buf(),
            span,
            id,
            hook,
            ship: ship.cloned(),
        };
        self.apply(e.clone(), Some(system_time(now)));
        self.append(&e);
        if hook || ship.is_some() {
            // Linked at once, while it is certainly the file just closed.
            let _ = self.hand_over(path);
        }
    }

    /// Notes that `path` is gone (deleted by bsc or behind its back).
    pub fn gone(&mut self, path: &Path) {
        let id = self.queues.waiting(path).and_then(|(_, id, _)| id);
        self.open.remove(path);
        self.indexes.remove(path);
        let e = Entry::Deleted {
            path: path.to_path_buf(),
        };
        self.apply(e.clone(), None);
        self.append(&e);
        self.unpin_if_unused(path, id);
    }

    /// Notes that the `on_close` hook for `path` ended (or is never to run),
    /// journaled: it is not run again. Its hard link goes unless the file still
    /// waits to ship. A hook cut short (bsc stopped or crashed while it ran)
    /// has no such line, so it runs again after the next start.
    pub fn hook_done(&mut self, path: &Path) {
        let Some(u) = self.queues.unhooked.remove(path) else {
            return;
        };
        self.append(&Entry::HookEnded {
            path: path.to_path_buf(),
        });
        self.unpin_if_unused(path, u.id);
    }

    /// The closed files of `key` whose `on_close` hook did not end before bsc
    /// last stopped; see `Queues::take_unhooked`.
    pub fn take_unhooked(&mut self, key: &str, handler: &str) -> Vec<ClosedFile> {
        self.queues.take_unhooked(key, handler)
    }

    /// The closed files `key` created that must go for `r` at `now`; see
    /// `Naming::take_excess`.
    pub fn take_excess(
        &mut self,
        key: &str,
        open_bytes: Option<u64>,
        r: &Retention,
        now: UnixMicros,
    ) -> Vec<OwnFile> {
        self.naming
            .take_excess(key, open_bytes, r, system_time(now), &self.queues)
    }

    /// The oldest closed file bsc created, of any key; see `Naming::take_oldest`.
    pub fn take_oldest(&mut self, even_held: bool) -> Option<(String, OwnFile)> {
        self.naming.take_oldest(even_held, &self.queues)
    }

    /// Takes `path`, a closed file `key` created, off its list (to delete it).
    pub fn take_file(&mut self, key: &str, path: &Path) -> Option<OwnFile> {
        self.naming.take_file(key, path)
    }

    /// Notes that `path` was shipped: journaled and forced to the disk before
    /// this returns, so it never ships again. Returns whether it was waiting.
    pub fn shipped(&mut self, path: &Path) -> bool {
        if !self.queues.is_unshipped(path) {
            return false;
        }
        let id = self.queues.waiting(path).and_then(|(_, id, _)| id);
        let e = Entry::Shipped {
            path: path.to_path_buf(),
        };
        self.apply(e.clone(), None);
        self.append(&e);
        self.sync_journal();
        self.unpin_if_unused(path, id);
        true
    }
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

/// Whether `path` is below `dir` with only plain components.
fn inside(path: &Path, dir: &Path) -> bool {
    path.strip_prefix(dir).is_ok_and(|rel| {
        rel.components().all(|c| matches!(c, Component::Normal(_)))
            && rel.components().next().is_some()
    })
}
