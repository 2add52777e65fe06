//! Whether stderr is systemd-journald's stream (`JOURNAL_STREAM`), so log lines
//! carry priority prefixes.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

/// Whether stderr is the stream systemd-journald reads (`JOURNAL_STREAM` is
/// `device:inode` of it), so log lines should carry `<N>` priority prefixes.
pub fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `struct stat` into the buffer it is given.
    if unsafe { libc::fstat(2, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so the struct is initialised.
    let st = unsafe { st.assume_init() };
    // dev_t and ino_t are not u64 on every target (32-bit ARM).
    #[allow(clippy::unnecessary_cast)]
    let same = st.st_dev as u64 == dev && st.st_ino as u64 == ino;
    same
}
