//! A handler's config entry (`GET /`, `GET /<name>/config`, a start's and a
//! stop's answer) in AIT's shape: `{"handler": {...}, "log_file_path",
//! "conn_type", "address"}`. The `handler` dict has AIT's keys (`name`,
//! `log_dir`, `_validated_log_dir_root`, ...) and, beside them, every other
//! key in effect with its applied value, as the key table shows it
//! ([`crate::config::KEYS`]: an unset limit is `null`), then the metadata.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::clock::UnixMicros;
use crate::config::Shown;
use crate::manager::handler::Handler;
use crate::storage::Storage;

/// Keys the entry carries beside the `handler` dict, not in it (AIT's shape).
const BESIDE_THE_DICT: [&str; 2] = ["conn_type", "address"];

/// One entry of `GET /` and `GET /<name>/config`.
pub struct ConfigEntry<'a> {
    handler: &'a Handler,
    /// Where the name of the handler's next file comes from (the journal).
    files: &'a Storage,
    now: UnixMicros,
}

/// The config entry of `h` at `now` (its file path rendered then, from what
/// `files` knows).
pub fn config_entry<'a>(h: &'a Handler, files: &'a Storage, now: UnixMicros) -> ConfigEntry<'a> {
    ConfigEntry {
        handler: h,
        files,
        now,
    }
}

/// AIT's handler dict, written from the key table.
struct HandlerDict<'a> {
    handler: &'a Handler,
    log_dir: String,
}

impl Serialize for HandlerDict<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let spec = self.handler.spec();
        let mut map = s.serialize_map(None)?;
        for (key, shown) in spec.shown() {
            let value = match shown {
                Shown::Set(v) | Shown::Unset(v) => v,
                Shown::Hidden => continue,
            };
            if BESIDE_THE_DICT.contains(&key) {
                continue;
            }
            map.serialize_entry(key, &value)?;
            if key == "name" {
                map.serialize_entry("log_dir", &self.log_dir)?;
                let root = self.handler.root().display().to_string();
                map.serialize_entry("_validated_log_dir_root", &root)?;
            }
        }
        for (k, v) in &spec.metadata {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for ConfigEntry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let spec = self.handler.spec();
        let file = self.handler.log_file_path(self.files, self.now);
        let log_dir = file
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let mut map = s.serialize_map(Some(4))?;
        let dict = HandlerDict {
            handler: self.handler,
            log_dir,
        };
        map.serialize_entry("handler", &dict)?;
        map.serialize_entry("log_file_path", &file.display().to_string())?;
        map.serialize_entry("conn_type", spec.conn_type.as_str())?;
        map.serialize_entry("address", &(&spec.address.host, spec.address.port))?;
        map.end()
    }
}
