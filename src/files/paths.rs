//! Where capture files may go: a rendered path is checked before anything is
//! created, and then reached without following links.
//!
//! A [`CapturePath`] is a trusted base folder (the root directory, or for a config
//! file's absolute `path` the literal folder it names before its first `%` or `{`)
//! plus plain components below it. Invariants, checked by [`CapturePath::new`],
//! the only way to make one:
//! - every component below the base is a plain name: not empty, not `.` or `..`,
//!   no `/`, no control character, at most [`NAME_MAX`] bytes, so no value of a
//!   pattern or its metadata can climb out of the base;
//! - the whole path is at most [`PATH_MAX`] bytes;
//! - nothing is placed in bsc's own state folder (`<root>/.bsc`).
//!
//! [`crate::sys::open_dir_beneath`] then walks the components with `O_NOFOLLOW`,
//! so a symlink planted below the base cannot redirect a write either.
//! [`numbered`] is the one function that makes the `-N` variants of a name.

use std::path::{Component, Path, PathBuf};

/// Longest file or folder name (Linux `NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Longest whole path (Linux `PATH_MAX` less the terminating NUL).
pub const PATH_MAX: usize = 4095;
/// Room a file name keeps for a `-N` suffix (`-` and up to 10 digits), so that
/// every numbered variant of an accepted name can be written too.
pub const SUFFIX_ROOM: usize = 11;
/// bsc's state folder under the root: journal, API handlers. Never a capture target.
pub const STATE_DIR: &str = ".bsc";

/// A checked place for a capture file (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CapturePath {
    base: PathBuf,
    dirs: Vec<String>,
    file: String,
}

/// Checks one file or folder name that a pattern rendered.
pub fn check_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err(
            "it has an empty folder name (two '/' in a row, or a {key} whose value is empty)"
                .into(),
        );
    }
    if c == "." || c == ".." {
        return Err(format!(
            "it has a component {c:?}; '.' and '..' are not file or folder names"
        ));
    }
    if c.len() > NAME_MAX {
        return Err(format!(
            "a file or folder name in it is {} bytes long; at most {NAME_MAX}",
            c.len()
        ));
    }
    if let Some(ch) = c.chars().find(|ch| ch.is_control()) {
        return Err(format!(
            "it contains the control character {:?}",
            ch.escape_default().to_string()
        ));
    }
    Ok(())
}

impl CapturePath {
    /// `base` / `rel`, where `rel` (rendered, `/`-separated, relative) ends with the
    /// file name. `root` is bsc's root directory (for the state-folder rule).
    pub fn new(base: PathBuf, rel: &str, root: &Path) -> Result<CapturePath, String> {
        // The base is trusted, but must be a plain absolute path too: a `..` in it
        // could alias the state folder or another handler's folder.
        let plain = base.is_absolute()
            && base
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !plain {
            return Err(format!(
                "its folder {} is not a plain absolute path (no '.' or '..')",
                base.display()
            ));
        }
        let mut parts: Vec<String> = Vec::new();
        for c in rel.split('/') {
            check_component(c)?;
            parts.push(c.to_string());
        }
        // `split` always yields at least one item, so there is a file name.
        let file = parts.pop().unwrap_or_default();
        if file.len() > NAME_MAX - SUFFIX_ROOM {
            return Err(format!(
                "its file name is {} bytes long; at most {} ({NAME_MAX} less room for a -N suffix)",
                file.len(),
                NAME_MAX - SUFFIX_ROOM
            ));
        }
        let p = CapturePath {
            base,
            dirs: parts,
            file,
        };
        let full = p.full();
        let len = full.as_os_str().len();
        if len > PATH_MAX {
            return Err(format!(
                "it is {len} bytes long; a path is at most {PATH_MAX}"
            ));
        }
        if full.starts_with(root.join(STATE_DIR)) {
            return Err(format!(
                "{} is inside bsc's state folder {}",
                full.display(),
                root.join(STATE_DIR).display()
            ));
        }
        Ok(p)
    }

    /// The trusted folder the path starts from.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The folders below the base, outermost first.
    pub fn dirs(&self) -> Vec<&str> {
        self.dirs.iter().map(String::as_str).collect()
    }

    /// The file name.
    pub fn file_name(&self) -> &str {
        &self.file
    }

    /// The whole path.
    pub fn full(&self) -> PathBuf {
        let mut p = self.base.clone();
        p.extend(&self.dirs);
        p.push(&self.file);
        p
    }

    /// The same place with the `n`th numbered file name (`n = 0`: unchanged).
    pub fn numbered(&self, n: u32) -> CapturePath {
        CapturePath {
            base: self.base.clone(),
            dirs: self.dirs.clone(),
            file: numbered(&self.file, n),
        }
    }
}

/// Refuses a file whose folder, where it exists already, leads into bsc's state
/// folder under its real name (through a link): such a config or request is
/// refused up front, not at the first unit (the open refuses it too).
pub fn check_not_state_folder(file: &Path, root: &Path) -> Result<(), String> {
    let mut existing = file.parent();
    while let Some(dir) = existing.filter(|d| !d.exists()) {
        existing = dir.parent();
    }
    let (Some(dir), Ok(state)) = (existing, std::fs::canonicalize(root.join(STATE_DIR))) else {
        return Ok(());
    };
    match std::fs::canonicalize(dir) {
        Ok(real) if real.starts_with(&state) => Err(format!(
            "{} leads into bsc's state folder {}; it is never a capture folder",
            dir.display(),
            state.display()
        )),
        _ => Ok(()),
    }
}

/// `stem-N.ext` for `stem.ext`, `name-N` without an extension; `n = 0` leaves
/// the name as it is. The one place that numbers file names.
pub fn numbered(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    match name.rfind('.').filter(|&i| i > 0) {
        Some(i) => format!("{}-{n}{}", &name[..i], &name[i..]),
        None => format!("{name}-{n}"),
    }
}

/// Reads a folder entry `name` as a file of the template `pre{seq}post` (the
/// file name a pattern gives, split around its `{seq}`; `has_seq` false: the
/// whole name is `pre`): its `{seq}` number (0 without one) and `-N` suffix, or
/// `None` if it is not such a file. The inverse of [`numbered`].
pub fn parse_numbered(name: &str, pre: &str, post: &str, has_seq: bool) -> Option<(u64, u32)> {
    let (seq, base) = if has_seq {
        let rest = name.strip_prefix(pre)?;
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return None;
        }
        (
            rest[..digits].parse().ok()?,
            format!("{pre}{}{post}", &rest[..digits]),
        )
    } else {
        (0, pre.to_string())
    };
    if name == base {
        return Some((seq, 0));
    }
    // `numbered` put `-N` before the last '.' of the name (or at its end).
    let (stem, ext) = match base.rfind('.').filter(|&i| i > 0) {
        Some(i) => base.split_at(i),
        None => (base.as_str(), ""),
    };
    let n = name
        .strip_prefix(stem)?
        .strip_suffix(ext)?
        .strip_prefix('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((seq, n.parse().ok()?))
}

/// The literal leading folders of an absolute path pattern: everything up to the
/// last `/` before the first `%`, `{` or `}` (the whole pattern if it has none).
pub fn literal_base(pattern: &str) -> &str {
    let special = pattern.find(['%', '{', '}']).unwrap_or(pattern.len());
    if special == pattern.len() {
        return pattern.trim_end_matches('/');
    }
    match pattern[..special].rfind('/') {
        Some(0) | None => "/",
        Some(i) => &pattern[..i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_plain_names() {
        let root = Path::new("/r");
        let ok = CapturePath::new(root.into(), "a/b/c.pcap", root).unwrap();
        assert_eq!(ok.full(), PathBuf::from("/r/a/b/c.pcap"));
        assert_eq!(ok.dirs(), ["a", "b"]);
        assert_eq!(ok.file_name(), "c.pcap");
        for bad in [
            "",
            ".",
            "..",
            "a/../b.pcap",
            "a//b.pcap",
            "/abs.pcap",
            "a/.",
            "x\n.pcap",
            "x\u{7f}.pcap",
            ".bsc/handlers.json.tmp",
            "./a.pcap",
        ] {
            assert!(CapturePath::new(root.into(), bad, root).is_err(), "{bad:?}");
        }
        let long = "x".repeat(256);
        assert!(CapturePath::new(root.into(), &long, root).is_err());
        assert!(CapturePath::new(root.into(), &format!("{}/f", "x".repeat(255)), root).is_ok());
        assert!(CapturePath::new(root.into(), &"x".repeat(244), root).is_ok());
        let e = CapturePath::new(root.into(), &"x".repeat(245), root).unwrap_err();
        assert!(e.contains("-N suffix"), "{e}");
        let deep = vec!["d".repeat(200); 21].join("/");
        let e = CapturePath::new(root.into(), &deep, root).unwrap_err();
        assert!(e.contains("at most 4095"), "{e}");
        // ".bsc" below a folder is an ordinary name.
        assert!(CapturePath::new(root.into(), "a/.bsc", root).is_ok());
        // The base itself must be plain.
        let dotted = PathBuf::from("/r/x/../.bsc");
        assert!(CapturePath::new(dotted, "h.pcap", root).is_err());
        assert!(CapturePath::new("rel".into(), "h.pcap", root).is_err());
    }

    #[test]
    fn numbering() {
        assert_eq!(numbered("b.pcap", 0), "b.pcap");
        assert_eq!(numbered("b.pcap", 1), "b-1.pcap");
        assert_eq!(numbered("b", 2), "b-2");
        assert_eq!(numbered("b.tar.pcap", 3), "b.tar-3.pcap");
        assert_eq!(numbered(".pcap", 4), ".pcap-4");
        let p = CapturePath::new("/r".into(), "d/x.pcap", Path::new("/r")).unwrap();
        assert_eq!(p.numbered(7).full(), PathBuf::from("/r/d/x-7.pcap"));
    }

    #[test]
    fn numbered_names_are_read_back() {
        assert_eq!(
            parse_numbered("n-0004.pcap", "n-", ".pcap", true),
            Some((4, 0))
        );
        assert_eq!(
            parse_numbered("n-0004-2.pcap", "n-", ".pcap", true),
            Some((4, 2))
        );
        assert_eq!(parse_numbered("n-x.pcap", "n-", ".pcap", true), None);
        assert_eq!(
            parse_numbered("fixed.pcap", "fixed.pcap", "", false),
            Some((0, 0))
        );
        assert_eq!(
            parse_numbered("fixed-17.pcap", "fixed.pcap", "", false),
            Some((0, 17))
        );
        assert_eq!(
            parse_numbered("fixed-17.pcapx", "fixed.pcap", "", false),
            None
        );
        assert_eq!(parse_numbered("other.pcap", "fixed.pcap", "", false), None);
        for (name, n) in [("a.b.pcap", 3), ("plain", 2), ("x-0009.pcap", 12)] {
            assert_eq!(
                parse_numbered(&numbered(name, n), name, "", false),
                Some((0, n))
            );
        }
    }

    #[test]
    fn literal_bases() {
        assert_eq!(literal_base("/data/{m}/%Y"), "/data");
        assert_eq!(literal_base("/data/vc0/"), "/data/vc0");
        assert_eq!(literal_base("/{m}"), "/");
        assert_eq!(literal_base("/data/x%Y"), "/data");
    }
}
