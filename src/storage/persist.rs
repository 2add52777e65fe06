//! Handlers added over the API survive a restart: after every change they are
//! written to `<root>/.bsc/handlers.json` (atomically: a temporary file, fsync,
//! rename, fsync of the folder; through the handle of bsc's own state folder)
//! and restored at start-up after the config file's handlers. `capture_manager.persist: false` turns this off. A state file that
//! cannot be read is moved aside with a warning; bsc starts anyway.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::clock::UnixMicros;
use crate::storage::Storage;
use crate::warn;

/// The state file.
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file under `root`.
    pub fn new(root: &Path) -> StateFile {
        StateFile {
            path: root.join(".bsc").join("handlers.json"),
        }
    }

    /// The saved handlers (none if there is no file). A corrupt file is renamed
    /// to `handlers.json.corrupt-<unix time>` and reported.
    pub fn load(&self, now: UnixMicros) -> Vec<Map<String, Value>> {
        let text = match crate::storage::read_state_file(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                warn!(
                    "cannot read {}: {e}; API handlers are not restored",
                    self.path.display()
                );
                return Vec::new();
            }
        };
        match serde_json::from_slice::<Value>(&text) {
            Ok(Value::Array(items)) if items.iter().all(Value::is_object) => items
                .into_iter()
                .filter_map(|v| {
                    if let Value::Object(m) = v {
                        Some(m)
                    } else {
                        None
                    }
                })
                .collect(),
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    Ok(_) => "not a list of handlers".to_string(),
                };
                let secs = now.secs();
                let aside = self.path.with_extension(format!("json.corrupt-{secs}"));
                let moved = std::fs::rename(&self.path, &aside);
                warn!(
                    "{} is unreadable ({why}); {}; starting without the handlers it held",
                    self.path.display(),
                    match moved {
                        Ok(()) => format!("moved it to {}", aside.display()),
                        Err(e) => format!("could not move it aside: {e}"),
                    }
                );
                Vec::new()
            }
        }
    }

    /// Replaces the saved handlers, atomically, in bsc's own state folder
    /// ([`Storage::replace_state_file`]).
    pub fn save(&self, storage: &mut Storage, handlers: &[Map<String, Value>]) -> io::Result<()> {
        let body = serde_json::to_vec_pretty(handlers).map_err(io::Error::other)?;
        storage.replace_state_file("handlers.json", &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn save_load_and_corrupt_files() {
        let root = std::env::temp_dir().join(format!("bsc-persist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let state = StateFile::new(&root);
        let mut storage = Storage::open(&root);
        assert!(state.load(crate::clock::Clock::System.now()).is_empty());
        let h = json!({"name": "a", "conn_type": "udp", "address": ["", 9]})
            .as_object()
            .unwrap()
            .clone();
        state.save(&mut storage, std::slice::from_ref(&h)).unwrap();
        assert_eq!(state.load(crate::clock::Clock::System.now()), vec![h]);
        std::fs::write(root.join(".bsc/handlers.json"), b"{ torn").unwrap();
        assert!(state.load(crate::clock::Clock::System.now()).is_empty());
        assert!(!root.join(".bsc/handlers.json").exists(), "moved aside");
        let aside = std::fs::read_dir(root.join(".bsc"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
        assert!(aside);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
