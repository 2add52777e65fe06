//! Keys given twice in one map: refused, never silently resolved. serde_json's
//! `Value` and serde_norway keep the last of two equal keys, so `max_files` given
//! twice would quietly drop a setting; a config file or an API body with a
//! duplicate key is refused with the key's place and both lines instead.
//!
//! How: the text, already known to parse, is walked once more by a serde
//! visitor ([`Node`]) that keeps the keys of each map. A duplicate is reported as
//! an error raised while its *key* is read, so the parser attaches the key's own
//! position (serde_json: where the reader is, just after the key; serde_norway:
//! the key scalar's mark). A second walk stops at the first occurrence of that
//! key in the same map (the maps are numbered in document order, the same in
//! both walks) to learn its line. Nothing is paid beyond the one extra walk
//! unless a duplicate exists.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// A key given twice in one map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duplicate {
    /// Where the key is: `handlers[0].max_files`, `capture_manager.root_log_directory`.
    pub path: String,
    /// Lines (from 1) of the first and of the second occurrence.
    pub first_line: usize,
    pub second_line: usize,
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

/// The first duplicate key of a JSON text, `None` if there is none. Meant for a
/// text known to parse (a syntax error is the parser's to report, with its line).
pub fn in_json(text: &str) -> Option<Duplicate> {
    find(|scan| {
        let mut de = serde_json::Deserializer::from_str(text);
        Node { scan, path: "" }
            .deserialize(&mut de)
            .map_err(|e| Some(e.line()))
    })
}

/// The first duplicate key of a YAML document that parses (as [`in_json`]).
pub fn in_yaml(text: &str) -> Option<Duplicate> {
    find(|scan| {
        Node { scan, path: "" }
            .deserialize(serde_norway::Deserializer::from_str(text))
            .map_err(|e| e.location().map(|l| l.line()))
    })
}

/// Runs `walk` to find a duplicate and its line, then again for the first line.
fn find(walk: impl Fn(&Scan) -> Result<(), Option<usize>>) -> Option<Duplicate> {
    let scan = Scan::default();
    let second_line = walk(&scan).err()??;
    let (map, key, path) = scan.found.borrow_mut().take()?;
    let first = Scan {
        target: Some((map, key)),
        ..Scan::default()
    };
    let first_line = walk(&first).err()??;
    Some(Duplicate {
        path,
        first_line,
        second_line,
    })
}

/// The state of one walk.
#[derive(Default)]
struct Scan {
    /// Maps seen so far, in document order.
    maps: RefCell<usize>,
    /// Second walk: stop at this key of this map.
    target: Option<(usize, String)>,
    /// First walk: the map, key and path of the first duplicate.
    found: RefCell<Option<(usize, String, String)>>,
}

/// A value anywhere in the document, at `path`.
struct Node<'s> {
    scan: &'s Scan,
    path: &'s str,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let path = format!("{}[{i}]", self.path);
            let node = Node {
                scan: self.scan,
                path: &path,
            };
            if seq.next_element_seed(node)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let index = {
            let mut maps = self.scan.maps.borrow_mut();
            *maps += 1;
            *maps - 1
        };
        let mut seen = HashSet::new();
        loop {
            let key = Key {
                scan: self.scan,
                map: index,
                seen: &mut seen,
                parent: self.path,
            };
            let Some(path) = map.next_key_seed(key)? else {
                return Ok(());
            };
            map.next_value_seed(Node {
                scan: self.scan,
                path: &path,
            })?;
        }
    }
}

/// A key of map number `map`: its path, or the error that marks its place.
struct Key<'s> {
    scan: &'s Scan,
    map: usize,
    seen: &'s mut HashSet<String>,
    parent: &'s str,
}

impl Key<'_> {
    fn take<E: de::Error>(self, key: String) -> Result<String, E> {
        let path = if self.parent.is_empty() {
            key.clone()
        } else {
            format!("{}.{key}", self.parent)
        };
        if let Some((map, k)) = &self.scan.target {
            if *map == self.map && *k == key {
                return Err(E::custom("first occurrence"));
            }
        } else if !self.seen.insert(key.clone()) {
            *self.scan.found.borrow_mut() = Some((self.map, key, path.clone()));
            return Err(E::custom("duplicate key"));
        }
        Ok(path)
    }
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, k: &str) -> Result<String, E> {
        self.take(k.to_string())
    }
    // YAML keys may be other scalars (`8500: x`, `true: y`); as text they compare
    // as the JSON value's keys do.
    fn visit_bool<E: de::Error>(self, k: bool) -> Result<String, E> {
        self.take(k.to_string())
    }
    fn visit_i64<E: de::Error>(self, k: i64) -> Result<String, E> {
        self.take(k.to_string())
    }
    fn visit_u64<E: de::Error>(self, k: u64) -> Result<String, E> {
        self.take(k.to_string())
    }
    fn visit_f64<E: de::Error>(self, k: f64) -> Result<String, E> {
        self.take(k.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.take("null".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(path: &str, first_line: usize, second_line: usize) -> Option<Duplicate> {
        Some(Duplicate {
            path: path.into(),
            first_line,
            second_line,
        })
    }

    #[test]
    fn json_duplicates_at_any_level_with_both_lines() {
        assert_eq!(in_json(r#"{"a": 1, "b": {"c": [1, {"d": 2}]}}"#), None);
        assert_eq!(in_json("{\"a\": 1,\n\"b\": 2,\n\"a\": 3}"), dup("a", 1, 3));
        assert_eq!(
            in_json("{\"handlers\": [{\"x\": 1},\n {\"max_files\": 2,\n  \"max_files\": 3}]}"),
            dup("handlers[1].max_files", 2, 3)
        );
        // Escapes decode before comparing.
        assert_eq!(in_json("{\"ab\": 1, \"a\\u0062\": 2}"), dup("ab", 1, 1));
        // The same key in two maps is fine.
        assert_eq!(in_json(r#"[{"a": 1}, {"a": 1}]"#), None);
        assert_eq!(
            dup("a", 1, 2).unwrap().to_string(),
            "key a is given twice (lines 1 and 2); keep one"
        );
    }

    #[test]
    fn yaml_duplicates_at_any_level_with_both_lines() {
        let ok = "capture_manager:\n  root_log_directory: /x\nhandlers:\n  - name: a\n    max_files: 2\n  - name: b\n    max_files: 3\n";
        assert_eq!(in_yaml(ok), None);
        let twice = "handlers:\n  - name: a\n    max_files: 2\n    port: 1\n    max_files: 3\n";
        assert_eq!(in_yaml(twice), dup("handlers[0].max_files", 3, 5));
        assert_eq!(in_yaml("a: 1\nb: 2\na: 3\n"), dup("a", 1, 3));
        assert_eq!(in_yaml("a: {x: 1,\n  x: 2}\n"), dup("a.x", 1, 2));
        assert_eq!(in_yaml("8500: a\n'8500': b\n"), dup("8500", 1, 2));
        // An alias replays its map: the same numbering in both walks.
        assert_eq!(
            in_yaml("base: &b {k: 1}\nother: *b\nlast: {k: 1,\n  k: 2}\n"),
            dup("last.k", 3, 4)
        );
    }
}
