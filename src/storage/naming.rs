//! What the journal knows per handler key (name and address, so it survives
//! reloads and restarts): the last file opened, so naming continues after it
//! and a file closed is never opened again; the closed files the key created
//! that still exist, oldest first, for retention and the disk budget. One
//! owner, [`Naming`], in [`super::Storage`].

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::queues::Queues;
use super::{excess, OwnFile, Retention};
use crate::config::ShipSpec;

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
pub(super) struct KeyFiles {
    pub(super) last: Option<LastFile>,
    /// The `ship` settings journaled with `last` when it was opened.
    pub(super) last_ship: Option<ShipSpec>,
    /// Closed files this key created that still exist, oldest first.
    pub(super) closed: VecDeque<OwnFile>,
}

/// Per handler key, what the journal knows of its files.
#[derive(Debug, Default)]
pub struct Naming {
    pub(super) keys: HashMap<String, KeyFiles>,
}

impl Naming {
    /// The last file opened for `key`, if the journal knows one.
    pub fn last(&self, key: &str) -> Option<LastFile> {
        self.keys.get(key).and_then(|k| k.last.clone())
    }

    /// The highest file of a key's pattern found in its folder: naming starts
    /// after it where it is beyond what the journal knows (a file the journal
    /// says is still open, to be resumed, is never passed over).
    pub fn seed(&mut self, key: &str, found: LastFile) {
        let k = self.keys.entry(key.to_string()).or_default();
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
        self.keys.values().any(|k| {
            k.last.as_ref().is_some_and(|l| l.closed && l.path == path)
                || k.closed.iter().any(|f| f.path == path)
        })
    }

    /// The keys of handler `name` (at any address) that have closed files.
    pub fn keys_named(&self, name: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .keys
            .iter()
            .filter(|(k, f)| {
                k.strip_prefix(name).is_some_and(|r| r.starts_with('@')) && !f.closed.is_empty()
            })
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_unstable();
        keys
    }

    /// The closed files the handler `key` created that still exist, oldest first.
    pub fn files(&self, key: &str) -> Vec<OwnFile> {
        self.keys
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
        let Some(k) = self.keys.get(key) else {
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

    /// The closed files `key` created that must go for `r`, given its open file
    /// (`open_bytes`), oldest first; they are taken off the list. Never a file
    /// waiting to ship (deletion stops at the oldest one: files ship oldest
    /// first, so those waiting are the newest), nor one whose `on_close` hook
    /// waits or runs (skipped; it still counts, and goes at a later pass once
    /// its hook has ended).
    pub(super) fn take_excess(
        &mut self,
        key: &str,
        open_bytes: Option<u64>,
        r: &Retention,
        now: SystemTime,
        queues: &Queues,
    ) -> Vec<OwnFile> {
        let Some(k) = self.keys.get_mut(key) else {
            return Vec::new();
        };
        let n = excess(k.closed.make_contiguous(), open_bytes, r, now);
        let n = k
            .closed
            .iter()
            .take(n)
            .take_while(|f| !queues.is_unshipped(&f.path))
            .count();
        // Files whose hook waits or runs are skipped, not stopped at: a hook
        // that never ends holds its own file, not the ones after it.
        let held = |f: &OwnFile| queues.hook_pending(&f.path);
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
    pub(super) fn take_oldest(
        &mut self,
        even_held: bool,
        queues: &Queues,
    ) -> Option<(String, OwnFile)> {
        let keys = &mut self.keys;
        let held = |p: &PathBuf| queues.holds(p);
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

    /// Takes `path`, a closed file `key` created, off its list (to delete it).
    pub(super) fn take_file(&mut self, key: &str, path: &Path) -> Option<OwnFile> {
        let k = self.keys.get_mut(key)?;
        let i = k.closed.iter().position(|f| f.path == path)?;
        k.closed.remove(i)
    }
}
