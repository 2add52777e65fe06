//! The journal (`<root>/.bsc/files.jsonl`): one JSON object a line, every
//! capture file bsc opened, closed, shipped and deleted, and every hook that
//! ended (see [`super`]). [`Journal`] owns the file and how far it is behind
//! memory; the [`super::Storage`] methods here write it: append, write anew
//! from memory (compaction, catching up), write ahead of a new file.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::naming::LastFile;
use super::{Span, Storage};
use crate::config::ShipSpec;
use crate::files::pcap::FileId;
use crate::{info, sys, warn};

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Entry {
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

/// The journal's name in the state folder.
pub(super) const JOURNAL: &str = "files.jsonl";

/// The highest `{seq}` and `-N` taken from the journal (see [`checked`]).
const MAX_SEQ: u64 = 1 << 52;
const MAX_N: u32 = 1 << 30;

/// Lines a journal may gain before compaction is considered at all.
pub(super) const COMPACT_MIN_LINES: u64 = 1024;

/// The journal file and its state.
#[derive(Debug)]
pub(super) struct Journal {
    pub(super) path: PathBuf,
    file: Option<File>,
    /// Whether lines were appended since the journal was last forced to the disk.
    unsynced: bool,
    /// Whether the journal on disk lacks entries memory has (an append failed:
    /// a full disk, an I/O error; or its state folder was made again). Nothing
    /// is appended then; the journal is written anew from memory as soon as
    /// that can succeed ([`Storage::catch_up`]).
    pub(super) behind: bool,
    /// Lines appended since the journal was last rewritten, and lines it had then.
    appended: u64,
    compacted_lines: u64,
    /// The line of the last intent ([`Storage::opening`]) while the journal on
    /// disk has it (cleared when the journal is written anew from memory).
    pub(super) intent: Option<String>,
}

impl Journal {
    /// The journal at `path`, not opened yet.
    pub(super) fn new(path: PathBuf) -> Journal {
        Journal {
            path,
            file: None,
            unsynced: false,
            behind: false,
            appended: 0,
            compacted_lines: 0,
            intent: None,
        }
    }

    /// Lets go of the file (its state folder is not bsc's any more, or was made
    /// again): the next write opens or writes it anew.
    pub(super) fn close(&mut self) {
        self.file = None;
    }
}

impl Storage {
    /// Rewrites the journal from what is live (see [`Storage::live_lines`]).
    /// Returns whether it succeeded.
    pub(super) fn compact(&mut self) -> bool {
        let lines = self.live_lines();
        let result = self.rewrite(&lines);
        if let Err(e) = &result {
            warn!(
                "cannot rewrite {}: {e}; naming and retention of new files is not remembered across restarts",
                self.journal.path.display()
            );
        }
        result.is_ok()
    }

    /// What is live, as journal lines: per key, its closed files that still
    /// exist, then its last file (kept even when gone: naming goes on from it).
    pub(super) fn live_lines(&mut self) -> Vec<Entry> {
        let mut lines = Vec::new();
        {
            let Storage { naming, queues, .. } = self;
            let ship_of = |key: &str, path: &Path| queues.ship_of(key, path);
            for (key, k) in naming.keys.iter_mut() {
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
                        hook: queues.hook_pending(&f.path),
                        ship: ship_of(key, &f.path),
                    });
                }
                // Files waiting for their hook or to ship that bsc did not
                // create (appended), or that are gone (a ship attempt drops them).
                let elsewhere = |p: &Path| {
                    !k.closed.iter().any(|f| f.path == p)
                        && k.last.as_ref().is_none_or(|l| l.path != p)
                };
                let mut others: Vec<(PathBuf, PathBuf, Span)> = queues
                    .unhooked
                    .iter()
                    .filter(|(p, u)| u.key == *key && elsewhere(p))
                    .map(|(p, u)| (p.clone(), u.trusted.clone(), u.span))
                    .collect();
                for f in queues.ship_queue.get(key).into_iter().flatten() {
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
                        hook: queues.hook_pending(&path),
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
                            hook: queues.hook_pending(&l.path),
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
    fn rewrite(&mut self, lines: &[Entry]) -> io::Result<()> {
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
                self.journal.file = Some(f);
                self.journal.unsynced = false;
                self.journal.behind = false;
                self.journal.appended = 0;
                self.journal.compacted_lines = lines.len() as u64;
                self.journal.intent = None;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the journal on disk has every entry memory has. If it is behind
    /// (an append failed), tries to write it anew from memory first (on every
    /// append and once a second): logged once when it falls behind
    /// (`Storage::append`) and once when it has caught up.
    pub fn catch_up(&mut self) -> bool {
        if !self.journal.behind {
            return true;
        }
        self.compact_quietly();
        if self.journal.behind {
            return false;
        }
        info!(
            "{}: written anew; the journal has every entry again",
            self.journal.path.display()
        );
        true
    }

    /// [`Storage::compact`] without its log line on failure (retried once a
    /// second while the journal is behind).
    fn compact_quietly(&mut self) {
        let lines = self.live_lines();
        let _ = self.rewrite(&lines);
    }

    /// Appends `e` (already applied to memory) to the journal. An append that
    /// fails (a full disk: a short write) is cut back to the journal's previous
    /// length, so no torn line is left for the next line to be glued to, and the
    /// journal is then behind memory: nothing more is appended, and it is written
    /// anew from memory, with every entry, as soon as that succeeds
    /// ([`Storage::catch_up`]: at the next append, or within a second).
    pub(super) fn append(&mut self, e: &Entry) {
        if self.journal.behind {
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
            .file
            .as_ref()
            .is_some_and(|f| f.metadata().map_or(true, |m| m.nlink() == 0));
        let Some(dir) = dir.filter(|_| !deleted) else {
            warn!(
                "{} was deleted while bsc ran; writing it anew",
                self.journal.path.display()
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
        if self.journal.file.is_none() {
            match open_journal(&dir) {
                Ok(f) => {
                    torn = ends_in_torn_line(&f);
                    self.journal.file = Some(f);
                }
                Err(err) => {
                    self.fall_behind(&format!("cannot open it: {err}"));
                    return;
                }
            }
        }
        let mut failed = None;
        if let Some(f) = self.journal.file.as_mut() {
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
            self.journal.unsynced = true;
        }
        if let Some(why) = failed {
            self.fall_behind(&why);
            return;
        }
        self.journal.appended += 1;
        let live = self.journal.compacted_lines;
        if self.journal.appended > COMPACT_MIN_LINES.max(live) {
            self.compact();
        }
    }

    /// Notes (and logs, once) that the journal on disk lacks entries memory has.
    fn fall_behind(&mut self, why: &str) {
        self.journal.behind = true;
        warn!(
            "cannot append to {}: {why}; it lacks this run's latest entries until it can be written anew from memory (tried every second): a crash before then forgets them (files may ship again, and retention may not know them)",
            self.journal.path.display()
        );
    }

    /// Write-ahead: journals that the handler `key` is about to create
    /// `last.path` (a name that does not exist) as opened and created, forced
    /// to the disk before the file exists, so no crash can leave a file bsc
    /// created that its journal does not know. Memory is not changed:
    /// [`Storage::opened`] notes the file once it exists (without another
    /// line); if it could not be created, nothing is to be taken back (a
    /// journaled file that does not exist is forgotten at the next start, its
    /// name still counted). A retry of the same name appends no second line.
    pub fn opening(&mut self, key: &str, last: LastFile, ship: Option<&ShipSpec>) {
        let e = opened_entry(key, last, ship);
        let line = line_of(&e);
        if self.journal.intent.as_ref() == Some(&line) {
            return;
        }
        // Twice at most: an append that had the journal written anew from
        // memory (compaction, catching up), which lacks the intent, clears
        // `intent`, and the line goes after the rewrite.
        for _ in 0..2 {
            self.journal.intent = Some(line.clone());
            self.append(&e);
            if self.journal.behind {
                // Not journaled (README, Durability and the disk).
                self.journal.intent = None;
                return;
            }
            if self.journal.intent.is_some() {
                break;
            }
        }
        self.sync_journal();
    }

    /// Forces what was appended to the journal to the disk (before a ship
    /// command starts, and after one succeeded).
    pub fn sync_journal(&mut self) {
        // Behind: a rewrite (forced to the disk) is all that can help.
        if !self.catch_up() || !self.journal.unsynced {
            return;
        }
        if let Some(f) = self.journal.file.as_ref() {
            if let Err(e) = f.sync_data() {
                warn!(
                    "cannot force {} to the disk: {e}",
                    self.journal.path.display()
                );
                return;
            }
        }
        self.journal.unsynced = false;
    }
}

/// Writes `bytes` as the file `name` in the folder `dir`: a temporary file
/// (made anew, 0600, never through a link), forced to the disk, renamed into
/// place, the folder forced too.
pub(super) fn replace_at(dir: &OwnedFd, name: &str, bytes: &[u8]) -> io::Result<()> {
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
pub(super) fn open_journal(dir: &OwnedFd) -> io::Result<File> {
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
pub(super) fn checked(mut e: Entry) -> Entry {
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

/// Whether `f` is not empty and does not end with a newline.
pub(super) fn ends_in_torn_line(f: &File) -> bool {
    let Ok(len @ 1..) = f.metadata().map(|m| m.len()) else {
        return false;
    };
    let mut last = [0u8; 1];
    std::os::unix::fs::FileExt::read_at(f, &mut last, len - 1)
        .is_ok_and(|n| n == 1 && last[0] != b'\n')
}

/// The journal line for `last`, opened by the handler `key` with `ship`.
pub(super) fn opened_entry(key: &str, last: LastFile, ship: Option<&ShipSpec>) -> Entry {
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
pub(super) fn line_of(e: &Entry) -> String {
    // Serializing a plain enum of strings and numbers cannot fail.
    let mut s = serde_json::to_string(e).unwrap_or_default();
    s.push('\n');
    s
}
