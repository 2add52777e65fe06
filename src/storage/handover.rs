//! Handing a closed file over to its `on_close` hook or `ship` command: a hard
//! link in the state folder, made at the close, handed only while the file's
//! path is still the regular, read-only file bsc closed (see [`super`]).

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{check_root_trust, dir_of, state_dir::folder_trusted, Storage};
use crate::files::pcap::FileId;
use crate::{sys, warn};

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

impl Storage {
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
    pub fn hand_over(&mut self, path: &Path) -> Result<PathBuf, NotHanded> {
        use NotHanded::{Gone, Replaced};
        let (trusted, journaled, bytes) = self
            .queues
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
                if self.dir.lost() {
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
                Ok(true) => Ok(self.dir.path().join(OUTGOING).join(sub).join(name)),
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
    pub(super) fn unpin_if_unused(&mut self, path: &Path, id: Option<FileId>) {
        let Some(id) = id else { return };
        if self.queues.holds(path) {
            return;
        }
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            self.unpin(&pin_dir_name(id), name);
        }
    }

    /// Removes the link `name` and its folder `sub` from [`OUTGOING`], in
    /// bsc's own state folder (by its handle).
    fn unpin(&mut self, sub: &str, name: &str) {
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
    pub(super) fn sweep_pins(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join(OUTGOING)) {
            for e in entries.flatten() {
                unpin_dir(&e.path());
            }
        }
    }
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
