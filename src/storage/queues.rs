//! Closed files waiting for their `on_close` hook (or running it) and
//! waiting to ship, as the journal says: one owner, [`Queues`], in
//! [`super::Storage`]. A file leaves the hook queue when its hook's end is
//! journaled (`hook_ended`), the ship queue when its `shipped` line is.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{ClosedFile, Span};
use crate::config::ShipSpec;
use crate::files::pcap::FileId;

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

/// A closed file waiting for its `on_close` hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Unhooked {
    pub(super) key: String,
    /// The trusted folder the file is below.
    pub(super) trusted: PathBuf,
    pub(super) span: Span,
    pub(super) bytes: u64,
    /// Closed in an earlier run (read from the journal at start-up); files
    /// closed in this run are already on their way to the hook.
    pub(super) earlier: bool,
    /// Its device and inode when it was closed.
    pub(super) id: Option<FileId>,
}

/// The hook queue and the ship queue.
#[derive(Debug, Default)]
pub struct Queues {
    /// Closed files whose `on_close` hook has not ended yet (waits or runs),
    /// with their key: they survive a restart, a stop or a crash (and are
    /// handed to the hook again then).
    pub(super) unhooked: HashMap<PathBuf, Unhooked>,
    /// Closed files waiting to ship, per key, oldest first.
    pub(super) ship_queue: HashMap<String, VecDeque<Unshipped>>,
    /// The paths on `ship_queue`.
    pub(super) unshipped: HashSet<PathBuf>,
}

impl Queues {
    /// Puts `file` at the end of its key's ship queue (once).
    pub(super) fn wait_to_ship(&mut self, file: Unshipped) {
        self.unqueue(&file.path);
        self.unshipped.insert(file.path.clone());
        self.ship_queue
            .entry(file.key.clone())
            .or_default()
            .push_back(file);
    }

    /// Takes `path` off the ship queue, if it is there.
    pub(super) fn unqueue(&mut self, path: &Path) {
        if !self.unshipped.remove(path) {
            return;
        }
        for q in self.ship_queue.values_mut() {
            q.retain(|f| f.path != path);
        }
        self.ship_queue.retain(|_, q| !q.is_empty());
    }

    /// A closed file waiting for its hook (or running it) or to ship: its
    /// trusted folder, its identity when it was closed, and its size.
    pub(super) fn waiting(&self, path: &Path) -> Option<(PathBuf, Option<FileId>, u64)> {
        if let Some(f) = self.ship_queue.values().flatten().find(|f| f.path == path) {
            return Some((f.trusted.clone(), f.id, f.bytes));
        }
        let u = self.unhooked.get(path)?;
        Some((u.trusted.clone(), u.id, u.bytes))
    }

    /// Whether the `on_close` hook of `path` waits or runs (retention spares it).
    pub fn hook_pending(&self, path: &Path) -> bool {
        self.unhooked.contains_key(path)
    }

    /// Whether `path` waits for its hook or to ship (retention and the disk
    /// budget's normal pass spare it).
    pub(super) fn holds(&self, path: &Path) -> bool {
        self.unshipped.contains(path) || self.unhooked.contains_key(path)
    }

    /// The closed files of `key` whose `on_close` hook did not end before bsc
    /// last stopped (never started, or cut short), as the hook sees them. They
    /// stay listed (now as queued in this run) until
    /// [`super::Storage::hook_done`] journals their hook's end.
    pub(super) fn take_unhooked(&mut self, key: &str, handler: &str) -> Vec<ClosedFile> {
        let mut files: Vec<ClosedFile> = self
            .unhooked
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

    /// Keys with files waiting to ship.
    pub fn unshipped_keys(&self) -> Vec<String> {
        self.ship_queue.keys().cloned().collect()
    }

    /// The oldest file of `key` waiting to ship.
    pub fn next_unshipped(&self, key: &str) -> Option<Unshipped> {
        self.ship_queue.get(key).and_then(|q| q.front().cloned())
    }

    /// Whether files of `key` wait to ship.
    pub fn has_unshipped(&self, key: &str) -> bool {
        self.ship_queue.contains_key(key)
    }

    /// Whether `path` waits to ship.
    pub fn is_unshipped(&self, path: &Path) -> bool {
        self.unshipped.contains(path)
    }

    /// The `ship` settings `path` of `key` waits to ship with, if it does.
    pub(super) fn ship_of(&self, key: &str, path: &Path) -> Option<ShipSpec> {
        self.ship_queue
            .get(key)
            .and_then(|q| q.iter().find(|f| f.path == path))
            .map(|f| f.ship.clone())
    }

    /// What waits to ship for `key`.
    pub fn backlog(&self, key: &str) -> Backlog {
        let Some(q) = self.ship_queue.get(key) else {
            return Backlog::default();
        };
        Backlog {
            files: q.len() as u64,
            bytes: q.iter().map(|f| f.bytes).sum(),
            oldest: q.iter().map(|f| f.closed_at).min(),
        }
    }
}
