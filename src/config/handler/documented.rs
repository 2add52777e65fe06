//! The key tables of the documents agree with [`KEYS`]: the reference's (a
//! Markdown table `| key | default | meaning |`) and the man page's (`.TP`,
//! `.B key`, then `Required.` or `Default: ... .`) name every key and no other,
//! each with the table's default (alone, or before a remark in parentheses)
//! and, for a key of some kinds of source only, those kinds first;
//! each default is the value applied; and the reference's `GET /` row names
//! every key.

use std::path::Path;

use serde_json::{json, Value};

use super::keys::{Shown, KEYS};
use super::{HandlerSpec, Origin};

/// The document with the reference's key table (under a `key | default |
/// meaning` header), from the crate's root.
const REFERENCE: &str = "docs/reference.md";
/// The man page, from the crate's root.
const MAN_PAGE: &str = "systemd/bsc.8";

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// A key as a document states it: its name, its default, the start of what
/// it says of it.
struct Row {
    key: String,
    default: String,
    meaning: String,
}

/// Each row of the reference's key table.
fn reference_rows() -> Vec<Row> {
    let text = read(REFERENCE);
    let rows: Vec<Row> = text
        .lines()
        .skip_while(|l| !l.starts_with("| key | default | meaning |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some(Row {
                key: key.to_string(),
                default: cells.get(2)?.replace('`', ""),
                meaning: cells.get(3)?.replace('`', ""),
            })
        })
        .collect();
    assert!(
        !rows.is_empty(),
        "{REFERENCE} has no `| key | default | meaning |` table"
    );
    rows
}

/// Each entry of the man page's `handlers` section.
fn man_page_rows() -> Vec<Row> {
    let text = read(MAN_PAGE).replace("\\-", "-").replace("\\(dq", "\"");
    let section: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != ".SS handlers")
        .take_while(|l| !l.starts_with(".SH"))
        .collect();
    let rows: Vec<Row> = section
        .windows(4)
        .filter(|w| w[0] == ".TP")
        .filter_map(|w| {
            let key = w[1].strip_prefix(".B ")?;
            let default = match w[2] {
                "Required." => "required",
                other => other.strip_prefix("Default: ")?.strip_suffix('.')?,
            };
            Some(Row {
                key: key.to_string(),
                default: default.to_string(),
                meaning: w[3].to_string(),
            })
        })
        .collect();
    assert!(!rows.is_empty(), "{MAN_PAGE} has no handler keys");
    rows
}

fn agrees(document: &str, rows: &[Row]) {
    for key in KEYS {
        let row = rows.iter().find(|r| r.key == key.name);
        let row = row.unwrap_or_else(|| panic!("{document} lacks the key {}", key.name));
        // The default, alone or followed by a remark in parentheses.
        let remark = row.default.strip_prefix(key.default);
        assert!(
            remark.is_some_and(|r| r.is_empty() || r.starts_with(" (")),
            "{document}: {}'s default is {:?}; the key table says {:?}",
            key.name,
            row.default,
            key.default
        );
        // A key for some kinds of source says which first ("udp, ethernet: ...").
        let (kinds, _) = row.meaning.split_once(':').unwrap_or_default();
        for source in key.sources {
            assert!(
                kinds.contains(source.as_str()),
                "{document}: {} applies to {source}; its text begins {:?}",
                key.name,
                row.meaning
            );
        }
    }
    for row in rows {
        assert!(
            KEYS.iter().any(|key| key.name == row.key),
            "{document} has {}, which is not a handler key",
            row.key
        );
    }
}

#[test]
fn the_reference_and_the_man_page_list_every_key_with_its_default() {
    agrees(REFERENCE, &reference_rows());
    agrees(MAN_PAGE, &man_page_rows());
}

#[test]
fn the_reference_says_get_shows_every_key() {
    let text = read(REFERENCE);
    let row = text
        .lines()
        .find(|l| l.starts_with("| `GET /` |"))
        .unwrap_or_else(|| panic!("{REFERENCE} has no `GET /` row"));
    for key in KEYS {
        let named = [format!("`{}`", key.name), format!("\"{}\"", key.name)];
        assert!(
            named.iter().any(|n| row.contains(n.as_str())),
            "{REFERENCE}'s `GET /` row does not name {}",
            key.name
        );
    }
}

#[test]
fn each_default_is_the_value_applied() {
    let handlers = [
        json!({"name": "u", "conn_type": "udp", "address": ["", 1]}),
        json!({"name": "t", "conn_type": "tcp", "address": ["h", 1]}),
        json!({"name": "e", "conn_type": "ethernet", "address": ["lo", 0]}),
        json!({"name": "s", "conn_type": "udp", "address": ["", 1], "ship": ["true"]}),
    ];
    let specs: Vec<HandlerSpec> = handlers
        .iter()
        .map(|h| HandlerSpec::from_json(h.as_object().unwrap(), Origin::ConfigFile).unwrap())
        .collect();
    for key in KEYS {
        if key.default == "required" {
            continue;
        }
        // Shown by a handler that sets nothing, else (a key that goes with
        // `ship`, with a default of its own) by one that sets only `ship`.
        let shown_by = |specs: &[HandlerSpec]| {
            specs
                .iter()
                .flat_map(|s| s.shown())
                .find(|(k, shown)| *k == key.name && *shown != Shown::Hidden)
                .map(|(_, shown)| shown)
        };
        let shown = match key.default {
            "none" => shown_by(&specs[..3]),
            _ => shown_by(&specs[..3]).or_else(|| shown_by(&specs[3..])),
        };
        let documented: Value = serde_json::from_str(key.default).unwrap_or(json!(key.default));
        match shown {
            // Not set: nothing applies ("none"), or the value that means none.
            None => assert_eq!(key.default, "none", "{}", key.name),
            Some(Shown::Unset(v)) if key.default == "none" => {
                let none = [Value::Null, json!("none"), json!([])];
                assert!(none.contains(&v), "{}: {v}", key.name)
            }
            Some(Shown::Set(v) | Shown::Unset(v)) => match (&v, &documented) {
                (Value::Number(a), Value::Number(b)) => {
                    assert_eq!(a.as_f64(), b.as_f64(), "{}", key.name)
                }
                _ => assert_eq!(v, documented, "{}", key.name),
            },
            Some(Shown::Hidden) => unreachable!("filtered above"),
        }
    }
}
