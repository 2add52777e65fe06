//! JSON and YAML text read into a [`serde_json::Value`] with every map's keys
//! checked: a key given twice is refused with its place and both lines, never
//! resolved in silence (serde_json's and serde_norway's own readers keep the last
//! of two equal keys, so `max_files` given twice would quietly drop a setting).
//!
//! How: one serde visitor (`Node`) builds the value, as serde_json's `Value`
//! does, and keeps the keys of each map. A duplicate is reported as an error
//! raised while its *key* is read, so the parser attaches the key's own position
//! (serde_json: where the reader is, just after the key; serde_norway: the key
//! scalar's mark). Only then is the text read once more, stopping at the first
//! occurrence of that key in the same map (maps are numbered in document order,
//! the same in both readings), to learn its line. The config file, the YAML
//! reader and JSON bodies over the API all read through here.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A key given twice in one map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duplicate {
    /// Where the key is: `handlers[0].max_files`, `capture_manager.root_log_directory`.
    pub path: String,
    /// Lines (from 1) of the first and of the second occurrence.
    pub first_line: usize,
    pub second_line: usize,
    /// The parser's column at the second occurrence.
    pub column: usize,
}

impl fmt::Display for Duplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {} is given twice (lines {} and {}); keep one",
            self.path, self.first_line, self.second_line
        )
    }
}

/// Why a text is not a value: the parser's syntax error, or a key given twice.
#[derive(Debug)]
pub enum Refusal<E> {
    Syntax(E),
    Twice(Duplicate),
}

impl<E: fmt::Display> fmt::Display for Refusal<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Syntax(e) => e.fmt(f),
            Refusal::Twice(d) => d.fmt(f),
        }
    }
}

/// Reads JSON text, refusing a key given twice.
pub fn read_json(text: &str) -> Result<Value, Refusal<serde_json::Error>> {
    read(
        |scan| {
            let mut de = serde_json::Deserializer::from_str(text);
            let value = Node { scan, path: "" }.deserialize(&mut de)?;
            de.end()?;
            Ok(value)
        },
        |e: &serde_json::Error| (e.line(), e.column()),
    )
}

/// Reads one YAML document, refusing a key given twice (an empty one is `null`).
pub fn read_yaml(text: &str) -> Result<Value, Refusal<serde_norway::Error>> {
    read(
        |scan| Node { scan, path: "" }.deserialize(serde_norway::Deserializer::from_str(text)),
        |e: &serde_norway::Error| e.location().map_or((0, 0), |l| (l.line(), l.column())),
    )
}

/// Reads with `walk`; on a duplicate, reads again to find its first line.
fn read<E>(
    walk: impl Fn(&Scan) -> Result<Value, E>,
    position: impl Fn(&E) -> (usize, usize),
) -> Result<Value, Refusal<E>> {
    let scan = Scan::default();
    let e = match walk(&scan) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let Some((map, key, path)) = scan.found.take() else {
        return Err(Refusal::Syntax(e));
    };
    let (second_line, column) = position(&e);
    let first = Scan {
        target: Some((map, key)),
        ..Scan::default()
    };
    let first_line = walk(&first).err().map_or(0, |e| position(&e).0);
    Err(Refusal::Twice(Duplicate {
        path,
        first_line,
        second_line,
        column,
    }))
}

/// The state of one reading.
#[derive(Default)]
struct Scan {
    /// Maps begun so far, in document order.
    maps: Cell<usize>,
    /// Second reading: stop at this key of this map.
    target: Option<(usize, String)>,
    /// First reading: the map, key and path of the first duplicate.
    found: RefCell<Option<(usize, String, String)>>,
}

/// A value at `path` (`handlers[0].max_files`).
struct Node<'s> {
    scan: &'s Scan,
    path: &'s str,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    // As serde_json's `Value`: a float JSON cannot hold (YAML's .nan, .inf) is null.
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, items.len());
            let node = Node {
                scan: self.scan,
                path: &path,
            };
            match seq.next_element_seed(node)? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let index = self.scan.maps.get();
        self.scan.maps.set(index + 1);
        let mut out = Map::new();
        loop {
            let key = Key {
                scan: self.scan,
                map: index,
                seen: &out,
            };
            let k = match map.next_key_seed(key) {
                Ok(Some(k)) => k,
                Ok(None) => return Ok(Value::Object(out)),
                Err(e) => {
                    // A duplicate found here: its path is this map's and its key.
                    if let Some((_, key, path)) = self.scan.found.borrow_mut().as_mut() {
                        if path.is_empty() {
                            *path = join(self.path, key);
                        }
                    }
                    return Err(e);
                }
            };
            let path = join(self.path, &k);
            let value = map.next_value_seed(Node {
                scan: self.scan,
                path: &path,
            })?;
            out.insert(k, value);
        }
    }
}

/// `parent.key`, or `key` at the top.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A key of map number `map`, read as text (as serde_json's `Value` reads keys)
/// and checked against the keys the map has so far.
struct Key<'s> {
    scan: &'s Scan,
    map: usize,
    seen: &'s Map<String, Value>,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        if let Some((map, k)) = &self.scan.target {
            if *map == self.map && k == key {
                return Err(E::custom("the first occurrence"));
            }
        } else if self.seen.contains_key(key) {
            // The map that asked fills in the path (it knows its own).
            *self.scan.found.borrow_mut() = Some((self.map, key.to_string(), String::new()));
            return Err(E::custom("a key given twice"));
        }
        Ok(key.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn twice<E: fmt::Debug>(r: Result<Value, Refusal<E>>) -> (String, usize, usize) {
        match r {
            Err(Refusal::Twice(d)) => (d.path, d.first_line, d.second_line),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_is_read_as_serde_json_reads_it() {
        let text =
            r#"{"a": 1, "b": {"c": [1, -2, 2.5, null, true, "x"]}, "big": 18446744073709551615}"#;
        assert_eq!(
            read_json(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        assert!(matches!(read_json("{\"a\": 1,}"), Err(Refusal::Syntax(_))));
        assert!(matches!(read_json("{} x"), Err(Refusal::Syntax(_))));
    }

    #[test]
    fn json_duplicates_at_any_level_with_both_lines() {
        assert_eq!(
            twice(read_json("{\"a\": 1,\n\"b\": 2,\n\"a\": 3}")),
            ("a".into(), 1, 3)
        );
        assert_eq!(
            twice(read_json(
                "{\"handlers\": [{\"x\": 1},\n {\"max_files\": 2,\n  \"max_files\": 3}]}"
            )),
            ("handlers[1].max_files".into(), 2, 3)
        );
        // Escapes decode before comparing.
        assert_eq!(
            twice(read_json("{\"ab\": 1, \"a\\u0062\": 2}")),
            ("ab".into(), 1, 1)
        );
        // The same key in two maps is fine.
        assert!(read_json(r#"[{"a": 1}, {"a": 1}]"#).is_ok());
        let d = Duplicate {
            path: "a".into(),
            first_line: 1,
            second_line: 2,
            column: 3,
        };
        assert_eq!(
            d.to_string(),
            "key a is given twice (lines 1 and 2); keep one"
        );
    }

    #[test]
    fn yaml_duplicates_at_any_level_with_both_lines() {
        let ok = "capture_manager:\n  root_log_directory: /x\nhandlers:\n  - name: a\n    max_files: 2\n  - name: b\n    max_files: 3\n";
        assert_eq!(
            read_yaml(ok).unwrap(),
            json!({"capture_manager": {"root_log_directory": "/x"},
                   "handlers": [{"name": "a", "max_files": 2}, {"name": "b", "max_files": 3}]})
        );
        let t = "handlers:\n  - name: a\n    max_files: 2\n    port: 1\n    max_files: 3\n";
        assert_eq!(twice(read_yaml(t)), ("handlers[0].max_files".into(), 3, 5));
        assert_eq!(twice(read_yaml("a: 1\nb: 2\na: 3\n")), ("a".into(), 1, 3));
        assert_eq!(
            twice(read_yaml("a: {x: 1,\n  x: 2}\n")),
            ("a.x".into(), 1, 2)
        );
        assert_eq!(
            twice(read_yaml("8500: a\n'8500': b\n")),
            ("8500".into(), 1, 2)
        );
        // An alias replays its map: the same numbering in both readings.
        assert_eq!(
            twice(read_yaml(
                "base: &b {k: 1}\nother: *b\nlast: {k: 1,\n  k: 2}\n"
            )),
            ("last.k".into(), 3, 4)
        );
        assert_eq!(read_yaml("").unwrap(), Value::Null);
        assert_eq!(read_yaml("a: .nan\n").unwrap(), json!({"a": null}));
    }
}
