//! The configuration: AIT's `bsc.yaml` keys, as JSON, validated completely at load.
//!
//! [`Config::load`] reads a file and returns either a fully valid [`Config`] or one
//! [`ConfigError`] line naming the file and the JSON line/column or the handler and
//! key. [`HandlerSpec::from_json`] validates one handler's keys; the config file and
//! the REST API both go through it, so a handler is valid the same way wherever it
//! comes from ([`Origin`] says what each may set).
//!
//! | file | its job |
//! |---|---|
//! | `mod.rs` | the whole document: [`Config::load`], sections, conflicts between handlers |
//! | [`handler`] | one handler: [`HandlerSpec`]; its keys, each declared once in [`KEYS`] (`handler/keys.rs`), which reading, `to_json`, `GET /` and typo checks derive from; metadata, rendered paths |
//! | [`capture_manager`] | the `capture_manager` and `manager_server` sections |
//! | [`fields`] | JSON values as the config means them (numbers, booleans, sizes, ages) |
//! | [`framing`] | the `framing` key: its value read into a [`crate::units::framing::Framing`] and written back |
//! | [`choices`] | the named options (`conn_type`, `direction`, ...) |
//! | [`duplicates`] | keys given twice in one map, with both lines (refused) |
//! | [`typos`] | which unknown key is a misspelt known one (edit distance) |
//! | [`address`] | capture addresses: read from `[host, port]`, their Python `repr` |
//! | [`relay_target`] | the `forward` key's targets (`udp://`, `tcp://`, `tcp+len://`, filters) |
//! | [`loops`] | forward targets that lead back into bsc (its API, a capture socket): refused |
//!
//! Everything a caller needs is re-exported here (`config::HandlerSpec`).

pub mod address;
pub mod capture_manager;
pub mod choices;
pub mod duplicates;
pub mod fields;
pub mod framing;
pub mod handler;
pub mod loops;
pub mod relay_target;
pub mod resolve;
pub mod typos;
pub mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use time::OffsetDateTime;

pub use address::{python_str_repr, Address};
pub use capture_manager::{ServerConfig, StorageConfig, DEFAULT_SERVER_HOST, DEFAULT_SERVER_PORT};
pub use choices::{ConnType, Direction, Timestamps};
pub use fields::{boolean, parse_age, parse_size, FieldError};
pub use handler::{
    is_handler_key, metadata_entry, metadata_text, validate_name, HandlerSpec, Origin,
    DEFAULT_FILE_NAME_PATTERN, DEFAULT_RCVBUF_BYTES, MAX_METADATA_KEYS, MAX_METADATA_VALUE,
    MAX_NAME_LEN,
};
pub use handler::{Key, ShipSpec, Shown, API_KEYS, HANDLER_KEYS, KEYS};

use capture_manager::CaptureManager;
use fields::{describe, Fields};

/// A whole, valid configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Absolute root directory for captures.
    pub root: PathBuf,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub handlers: Vec<HandlerSpec>,
}

/// A configuration that cannot be used: one line for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The root directory when the config names none: `$STATE_DIRECTORY` (systemd's
/// `StateDirectory=`, first entry) or `./captures`.
pub fn default_root() -> PathBuf {
    match std::env::var("STATE_DIRECTORY") {
        Ok(v) if !v.is_empty() => PathBuf::from(v.split(':').next().unwrap_or(&v)),
        _ => PathBuf::from("captures"),
    }
}

/// `p` made absolute, and without links if it exists (so that a path naming the
/// state folder through a link to the root is seen for what it is).
fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

impl Config {
    /// The built-in defaults: no handlers, root from [`default_root`].
    pub fn defaults() -> Config {
        Config {
            root: absolute(&default_root()),
            server: ServerConfig::default(),
            storage: StorageConfig::default(),
            handlers: Vec::new(),
        }
    }

    /// Reads and validates a config file: YAML (AIT's `bsc.yaml` as is, see
    /// [`crate::config::yaml`]) when it is named `.yaml`/`.yml` or does not start like a
    /// JSON object or list, else JSON. (A JSON scalar reads the same as YAML.)
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{shown}: cannot read: {e}")))?;
        // A byte-order mark (some Windows editors write one) is not content.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) || !text.trim_start().starts_with(['{', '[']);
        let value: Value = if is_yaml {
            crate::config::yaml::to_json(text).map_err(|e| match e.position {
                Some((line, column)) => ConfigError(format!(
                    "{shown}:{line}:{column}: invalid YAML: {}",
                    e.message
                )),
                None => ConfigError(format!("{shown}: invalid YAML: {}", e.message)),
            })?
        } else {
            duplicates::read_json(text).map_err(|refusal| {
                let (line, column, what) = match refusal {
                    duplicates::Refusal::Twice(d) => (d.second_line, d.column, d.to_string()),
                    duplicates::Refusal::Syntax(e) => (
                        e.line(),
                        e.column(),
                        strip_position(&e.to_string()).to_string(),
                    ),
                };
                ConfigError(format!("{shown}:{line}:{column}: invalid JSON: {what}"))
            })?
        };
        Config::from_value(&value).map_err(|e| ConfigError(format!("{shown}: {e}")))
    }

    /// Validates a parsed config document.
    pub fn from_value(value: &Value) -> Result<Config, String> {
        let top = value
            .as_object()
            .ok_or("the top level must be an object with capture_manager and handlers")?;
        Fields::section(top, "top level")
            .only(&["capture_manager", "handlers"])
            .map_err(|e| e.to_string())?;
        let mut config = Config::defaults();

        if let Some(cm) = top.get("capture_manager") {
            let cm = CaptureManager::from_json(cm).map_err(|e| e.to_string())?;
            if let Some(root) = cm.root {
                config.root = absolute(&root);
            }
            config.server = cm.server;
            config.storage = cm.storage;
        }

        match top.get("handlers") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (i, h) in list.iter().enumerate() {
                    let label = match h.get("name").and_then(Value::as_str) {
                        Some(n) => format!("handler #{} ({n:?})", i + 1),
                        None => format!("handler #{}", i + 1),
                    };
                    let obj = h
                        .as_object()
                        .ok_or_else(|| format!("{label}: must be an object"))?;
                    let spec = HandlerSpec::from_json(obj, Origin::ConfigFile)
                        .map_err(|e| format!("{label}: key {:?}: {}", e.key, e.message))?;
                    config.handlers.push(spec);
                }
            }
            Some(other) => return Err(format!("handlers must be a list, got {}", describe(other))),
        }
        config.check_conflicts()?;
        Ok(config)
    }

    /// The folders this config trusts bsc to write below: the root, and the
    /// literal folders of the config handlers' absolute paths.
    pub fn trusted_bases(&self) -> Vec<PathBuf> {
        let now = OffsetDateTime::now_utc();
        let mut bases = vec![self.root.clone()];
        for h in &self.handlers {
            if let Ok(p) = h.file_path(&self.root, now, 1) {
                if !bases.iter().any(|b| b == p.base()) {
                    bases.push(p.base().to_path_buf());
                }
            }
        }
        bases
    }

    /// No two handlers share a name on one address; an address has one conn_type;
    /// no two handlers write the same file; no forward target leads back into
    /// bsc ([`loops`]).
    fn check_conflicts(&self) -> Result<(), String> {
        let now = OffsetDateTime::now_utc();
        let api = Address {
            host: self.server.host.clone(),
            port: self.server.port,
        };
        for (i, a) in self.handlers.iter().enumerate() {
            // No target leads back into bsc (the API, any handler's socket).
            loops::refuse_api(a, &api)
                .and_then(|()| {
                    self.handlers
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .try_for_each(|(_, b)| loops::refuse_into(a, b))
                })
                .map_err(|e| format!("handler #{} ({:?}): key \"forward\": {e}", i + 1, a.name))?;
            // Every rendered name must be usable now, not at the first unit.
            let place = a
                .file_path(&self.root, now, 1)
                .map_err(|e| format!("handler #{} ({:?}): {e}", i + 1, a.name))?;
            crate::files::paths::check_not_state_folder(&place.full(), &self.root)
                .map_err(|e| format!("handler #{} ({:?}): {e}", i + 1, a.name))?;
            for b in &self.handlers[..i] {
                if a.address == b.address && a.name == b.name {
                    return Err(format!(
                        "handler {:?} appears twice on address {}",
                        a.name,
                        a.address.python_repr()
                    ));
                }
                if a.address == b.address && a.conn_type != b.conn_type {
                    return Err(format!(
                        "address {} is used as {} by handler {:?} and as {} by handler {:?}",
                        a.address.python_repr(),
                        b.conn_type,
                        b.name,
                        a.conn_type,
                        a.name
                    ));
                }
                let (pa, pb) = (
                    a.file_path(&self.root, now, 1),
                    b.file_path(&self.root, now, 1),
                );
                if let (Ok(pa), Ok(pb)) = (pa, pb) {
                    if pa == pb {
                        return Err(format!(
                            "handlers {:?} and {:?} would both write {}",
                            b.name,
                            a.name,
                            pa.full().display()
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// serde_json appends " at line L column C"; the caller already prints them.
fn strip_position(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_config_errors() {
        let ok = json!({"capture_manager": {"root_log_directory": "/data", "manager_server": {"host": "127.0.0.1", "port": 9000}},
            "handlers": [{"name": "a", "conn_type": "udp", "address": ["", 8500]}]});
        let c = Config::from_value(&ok).unwrap();
        assert_eq!(c.root, PathBuf::from("/data"));
        assert_eq!(c.server.port, 9000);
        let bad = [
            (
                json!({"handlers": [{"name": "a", "conn_type": "udp", "address": ["", 1]}, {"name": "a", "conn_type": "udp", "address": ["", 1]}]}),
                "twice",
            ),
            (
                json!({"handlers": [{"name": "a", "conn_type": "udp", "address": ["h", 1]}, {"name": "b", "conn_type": "tcp", "address": ["h", 1]}]}),
                "used as udp",
            ),
            (
                json!({"handlers": [{"name": "a", "conn_type": "udp", "address": ["", 1], "file_name_pattern": "x.pcap"},
                                  {"name": "b", "conn_type": "udp", "address": ["", 2], "file_name_pattern": "x.pcap"}]}),
                "both write",
            ),
            (
                json!({"handlers": [{"name": "a", "conn_type": "udp", "address": ["", 1], "rotate_log_delta": -1}]}),
                "handler #1 (\"a\"): key \"rotate_log_delta\"",
            ),
            (
                json!({"capture_manager": {"root": "/x"}}),
                "unknown key \"root\"",
            ),
            (
                json!({"handlers": [{"name": "a", "conn_type": "udp", "address": ["", 1], "max_file": 4}]}),
                "handler #1 (\"a\"): key \"max_file\": is not a handler key; did you mean \"max_files\"?",
            ),
            (
                json!({"capture_manager": {"persit": false}}),
                "capture_manager: unknown key \"persit\"; did you mean \"persist\"?",
            ),
            (
                json!({"capture_manager": {"manager_server": {"prot": 80}}}),
                "capture_manager.manager_server: unknown key \"prot\"; did you mean \"port\"?",
            ),
            (
                json!({"handler": []}),
                "top level: unknown key \"handler\"; did you mean \"handlers\"?",
            ),
            (
                json!({"capture_manager": {"manager_server": {"port": 0}}}),
                "1..65535",
            ),
            (
                json!({"handlers": [{"name": "lpa", "conn_type": "udp", "address": ["127.0.0.1", 1], "forward": ["udp://localhost:2"]},
                                  {"name": "lpb", "conn_type": "udp", "address": ["", 2]}]}),
                "handler #1 (\"lpa\"): key \"forward\": udp://localhost:2, a target of handler \"lpa\", is the capture socket of handler \"lpb\"",
            ),
            (
                json!({"handlers": [{"name": "lpb", "conn_type": "udp", "address": ["127.0.0.1", 2]},
                                  {"name": "lpa", "conn_type": "tcp", "address": ["127.0.0.1", 1], "forward": ["udp://127.0.0.1:2"]}]}),
                "handler #2 (\"lpa\"): key \"forward\"",
            ),
            (
                json!({"capture_manager": {"manager_server": {"host": "0.0.0.0", "port": 9000, "token": "t"}},
                       "handlers": [{"name": "a", "conn_type": "udp", "address": ["", 1], "forward": ["tcp+len://127.0.0.2:9000"]}]}),
                "tcp+len://127.0.0.2:9000 is bsc's own management API (0.0.0.0:9000)",
            ),
            (
                json!({"handlers": [{"name": "a", "conn_type": "udp", "address": ["", 1], "forward": ["udp://localhost:8080"]}]}),
                "own management API",
            ),
            (json!({"handlers": {}}), "must be a list"),
            (json!([1]), "top level"),
        ];
        for (v, needle) in bad {
            let e = Config::from_value(&v).unwrap_err();
            assert!(e.contains(needle), "{v}: {e}");
        }
        // A TCP source connects out: a target on its port is no loop.
        let tcp = json!({"handlers": [{"name": "a", "conn_type": "tcp", "address": ["127.0.0.1", 2]},
                                      {"name": "b", "conn_type": "udp", "address": ["", 1], "forward": ["udp://127.0.0.1:2"]}]});
        assert!(Config::from_value(&tcp).is_ok());
    }
}
