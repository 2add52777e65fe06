//! bsc's state folder `<root>/.bsc`: the checks that it and the root are
//! bsc's alone (start-up, `bsc check`), the lock (one bsc per root), and
//! [`StateDir`], the handle bsc holds on it while it runs (see [`super`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::journal::replace_at;
use super::Storage;
use crate::files::paths::STATE_DIR;
use crate::{error, sys};

/// bsc's state folder as it holds it: an open handle and its identity, and the
/// lock taken in it if bsc made it again while it ran (the lock of the folder
/// found at start-up is held by the event loop).
#[derive(Debug)]
pub(super) struct OwnDir {
    fd: OwnedFd,
    id: (u64, u64),
    _lock: Option<File>,
    /// The identity of the lock file bsc holds the `flock` on (`None`: none
    /// found at start-up), checked once a second ([`Storage::keep_lock`]).
    lock_id: Option<(u64, u64)>,
}

/// The state folder as bsc holds it while it runs.
#[derive(Debug)]
pub(super) struct StateDir {
    root: PathBuf,
    /// `<root>/.bsc` (never a capture folder, under any name).
    path: PathBuf,
    /// The folder held open (`None`: none could be opened or made).
    own: Option<OwnDir>,
    /// Whether `<root>/.bsc` is not the folder held (logged once).
    lost: bool,
    /// Whether taking the lock again failed (logged once until it succeeds).
    relock_failed: bool,
}

impl StateDir {
    /// The state folder of `root` as it is now (locked by the event loop just
    /// before: [`lock_root`]).
    pub(super) fn held(root: &Path) -> StateDir {
        let own = sys::open_dir_beneath(root, &[STATE_DIR], false)
            .and_then(|fd| {
                let id = sys::stat_fd(&fd)?.id;
                let lock_id = sys::stat_at(&fd, LOCK_FILE).ok().map(|st| st.id);
                Ok(OwnDir {
                    fd,
                    id,
                    _lock: None,
                    lock_id,
                })
            })
            .ok();
        StateDir {
            root: root.to_path_buf(),
            path: root.join(STATE_DIR),
            own,
            lost: false,
            relock_failed: false,
        }
    }

    /// `<root>/.bsc`.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether bsc let go of its state folder (another took its place).
    pub(super) fn lost(&self) -> bool {
        self.lost
    }

    /// See [`Storage::keep_lock`]. Returns whether bsc let go of the state
    /// folder (another bsc took the root).
    fn keep_lock(&mut self) -> bool {
        let Some(o) = self.own.as_mut() else {
            return false;
        };
        let now = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if now != Some(o.id) {
            // Not the folder held: `own_dir` deals with it.
            return false;
        }
        let found = sys::stat_at(&o.fd, LOCK_FILE).ok().map(|st| st.id);
        if found.is_some() && found == o.lock_id {
            return false;
        }
        let path = self.path.join(LOCK_FILE);
        match lock_in(&o.fd, &path) {
            Ok(lock) => {
                self.relock_failed = false;
                o.lock_id = sys::stat_fd(&lock).ok().map(|st| st.id);
                o._lock = Some(lock);
                error!(
                    "{} was deleted or replaced while bsc ran: made again and locked (pid {}); one bsc per root",
                    path.display(),
                    std::process::id()
                );
                false
            }
            Err(Locked::By(pid)) => {
                error!(
                    "{} was deleted while bsc ran and another bsc (pid {pid}) took the root meanwhile: this one captures on into files of its own but writes no journal there; stop one of them",
                    path.display()
                );
                self.own = None;
                self.lost = true;
                true
            }
            Err(Locked::Failed(e)) => {
                if !std::mem::replace(&mut self.relock_failed, true) {
                    error!("{e}; tried again every second")
                }
                false
            }
        }
    }

    /// Whether the folder `dir` is bsc's state folder (under any name). The
    /// state folder is looked at anew each time: it may have been deleted and
    /// made again, and its old inode number given to a capture folder.
    /// The folder bsc holds as its state folder counts too while it exists
    /// (renamed away, say).
    pub(super) fn is_state_dir(&self, dir: &OwnedFd) -> bool {
        let named = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let held = self.own.as_ref().and_then(|o| {
            let f = File::from(o.fd.try_clone().ok()?);
            let m = f.metadata().ok().filter(|m| m.nlink() > 0)?;
            Some((m.dev(), m.ino()))
        });
        let Ok(id) = sys::stat_fd(dir).map(|st| st.id) else {
            return false;
        };
        Some(id) == named || Some(id) == held
    }

    /// See [`Storage::own_dir`]: the folder, and whether it was made anew.
    fn own_dir(&mut self) -> io::Result<(OwnedFd, bool)> {
        let now = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let held = self.own.as_ref().map(|o| o.id);
        let handle = |own: &Option<OwnDir>| {
            own.as_ref()
                .map(|o| o.fd.try_clone())
                .unwrap_or_else(|| Err(io::Error::other("no state folder")))
        };
        if now.is_some() && now == held {
            self.lost = false;
            return Ok((handle(&self.own)?, false));
        }
        if now.is_some() && held.is_some() {
            if !std::mem::replace(&mut self.lost, true) {
                error!(
                    "{} is no longer bsc's state folder (renamed or replaced while bsc ran): bsc never uses a state folder it did not make; it goes on with its own, and hands no file to a hook or ship command by a path through the one there now; restart bsc to have it check and take the folder there",
                    self.path.display()
                );
            }
            return Ok((handle(&self.own)?, false));
        }
        let made = make_own(&self.root);
        match &made {
            Ok(_) if held.is_some() => {
                error!(
                    "{} was deleted while bsc ran: made again (0700) and locked; the journal is written anew from memory",
                    self.path.display()
                );
            }
            Err(e) if !std::mem::replace(&mut self.lost, true) => error!(
                "{} was deleted or replaced while bsc ran and cannot be made again: {e}; capture goes on, the journal is behind until it can",
                self.path.display()
            ),
            _ => {}
        }
        let own = made?;
        self.lost = false;
        let fd = own.fd.try_clone()?;
        self.own = Some(own);
        Ok((fd, held.is_some()))
    }
}

impl Storage {
    /// Checks, once a second, that `<root>/.bsc/lock` (looked at through the
    /// state folder's handle, never through a link) is still the file bsc
    /// holds its `flock` on. Deleted or replaced (a "stale lock" cleanup),
    /// a second bsc could take the root and write into this one's files: bsc
    /// makes the lock file again and takes the lock (its pid written), as for
    /// a state folder made again, and logs it. Should another bsc have taken
    /// it meanwhile, this one lets go of the state folder: it captures on into
    /// files only it has, writes no journal there, and tries again every
    /// second (see `own_dir`); a restart is the way out.
    pub fn keep_lock(&mut self) {
        if self.dir.keep_lock() {
            self.journal.close();
            self.journal.behind = true;
        }
    }

    /// Whether the folder `dir` is bsc's state folder (see `StateDir::is_state_dir`).
    pub fn is_state_dir(&self, dir: &OwnedFd) -> bool {
        self.dir.is_state_dir(dir)
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
    /// A folder made again has no journal: the journal is behind until it is
    /// written anew from memory (at the next append, or within a second).
    pub(super) fn own_dir(&mut self) -> io::Result<(OwnedFd, bool)> {
        let had = self.dir.own.is_some();
        let result = self.dir.own_dir();
        if let Ok((_, made)) = &result {
            if *made || !had {
                self.journal.close();
            }
            if *made {
                self.journal.behind = true;
            }
        }
        result
    }

    /// Replaces the state file `name` (`handlers.json`) with `bytes`,
    /// atomically, in bsc's own state folder (see `own_dir`).
    pub fn replace_state_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        replace_at(&self.own_dir()?.0, name, bytes)
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
pub(super) fn make_own(root: &Path) -> io::Result<OwnDir> {
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

/// Whether the open folder `dir` is owned by root or bsc's effective user and
/// not writable by group or others: what no other user can rename things in.
pub(super) fn folder_trusted(dir: &OwnedFd) -> bool {
    let euid = sys::effective_uid();
    sys::stat_fd(dir).is_ok_and(|st| (st.uid == euid || st.uid == 0) && st.mode & 0o022 == 0)
}

/// Why [`lock_in`] failed.
pub(super) enum Locked {
    /// Another bsc holds the lock (its pid as written in the file).
    By(String),
    Failed(String),
}

/// Takes the lock file of the state folder `dir` (`path` for messages): `flock`,
/// bsc's pid written in it.
pub(super) fn lock_in(dir: &OwnedFd, path: &Path) -> Result<File, Locked> {
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
