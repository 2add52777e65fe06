//! Where a handler's files go: its patterns rendered into checked places.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::HandlerSpec;
use crate::files::paths::{literal_base, CapturePath};
use crate::files::pattern::{Pattern, PatternError};

impl HandlerSpec {
    /// The checked place of file number `seq` of this handler for a unit received
    /// at `t`: root (or, from the config file, an absolute `path`'s literal
    /// folders), then `path`, then `file_name_pattern`, every code and `{key}`
    /// rendered. Fails, saying why, where a rendered name is empty, `.`, `..`, too
    /// long or has a control character, or the path would be in bsc's state folder
    /// (see [`crate::files::paths`]).
    pub fn file_path(
        &self,
        root: &Path,
        t: OffsetDateTime,
        seq: u64,
    ) -> Result<CapturePath, String> {
        let mut base = root.to_path_buf();
        let mut rel = String::new();
        if let Some(p) = &self.path {
            let dir = self.render(p, t, seq).map_err(|e| format!("path: {e}"))?;
            // Whether a path is absolute is the pattern's property, never the
            // rendered value's: `{a}/x` with an empty `a` is refused below, not
            // taken as `/x`. Only the config file may give an absolute pattern.
            let source = p.source();
            let (below, pattern_below) = match source.starts_with('/') {
                true => {
                    let literal = literal_base(source);
                    base = PathBuf::from(literal);
                    let rest = dir.strip_prefix(literal).unwrap_or(&dir);
                    let pattern_rest = &source[literal.len()..];
                    (
                        rest.strip_prefix('/').unwrap_or(rest),
                        pattern_rest.strip_prefix('/').unwrap_or(pattern_rest),
                    )
                }
                false => (dir.as_str(), source),
            };
            // One trailing '/' in the pattern (`path: vc0/`) is the folder itself.
            let (below, pattern_below) = match pattern_below.strip_suffix('/') {
                Some(p) => (below.strip_suffix('/').unwrap_or(below), p),
                None => (below, pattern_below),
            };
            // Folders the pattern has are always checked, even if they rendered empty.
            if !pattern_below.is_empty() {
                rel.push_str(below);
                rel.push('/');
            }
        }
        let file = self
            .render(&self.file_name_pattern, t, seq)
            .map_err(|e| format!("file_name_pattern: {e}"))?;
        match self.file_name_pattern.source().starts_with('/') {
            // An absolute file pattern (config file only) replaces the folder, as
            // Python's os.path.join does.
            true => {
                let source = self.file_name_pattern.source();
                let mut literal = literal_base(source);
                if literal == source {
                    // No code at all: the last component is the file itself.
                    literal = literal.rsplit_once('/').map_or("/", |(d, _)| d);
                }
                let literal = if literal.is_empty() { "/" } else { literal };
                base = PathBuf::from(literal);
                let below = file.strip_prefix(literal).unwrap_or(&file);
                rel = below.strip_prefix('/').unwrap_or(below).to_string();
            }
            false => rel.push_str(&file),
        }
        CapturePath::new(base, &rel, root).map_err(|e| {
            format!(
                "the file path {:?} cannot be used: {e}",
                Path::new(&rel).display()
            )
        })
    }

    /// The file name the pattern gives at `t` with `{seq}` left as `marker` (to
    /// recognise the handler's files in a folder), or `None` if `path` uses
    /// `{seq}` too (its files are then spread over folders) or it does not render.
    pub fn file_name_template(&self, t: OffsetDateTime, marker: &str) -> Option<String> {
        if self
            .path
            .as_ref()
            .is_some_and(|p| p.keys().any(|(k, _)| k == "seq"))
        {
            return None;
        }
        let name = self
            .file_name_pattern
            .render(t, |key, _| match key {
                "seq" => Some(marker.to_string()),
                _ => self.key_value(key),
            })
            .ok()?;
        Some(name.rsplit('/').next().unwrap_or(&name).to_string())
    }

    fn render(&self, p: &Pattern, t: OffsetDateTime, seq: u64) -> Result<String, PatternError> {
        p.render(t, |key, width| match key {
            "seq" => Some(format!("{seq:0w$}", w = width.unwrap_or(4))),
            _ => self.key_value(key),
        })
    }
}
