//! AIT's `bsc.yaml`, read as AIT users have it: YAML text in, the same
//! [`serde_json::Value`] the JSON path gives out, so [`crate::config::Config::from_value`]
//! validates both alike.
//!
//! The parsing is `serde_norway` (libyaml's scanner and parser, translated to
//! Rust); this module only maps its result and its errors. Plain scalars resolve as
//! PyYAML's do for everything AIT's files use: `True`/`False`/`true`/`false` become
//! booleans, `8500` an integer, `1.5` a float, `~`/`null`/nothing a null; quoted
//! scalars stay strings (`'True'`, `"8500"`). Comments, flow lists (`['', 8500]`),
//! block lists, anchors and aliases are YAML's own. A syntax error carries the
//! 1-based line and column of the problem, as the JSON path reports its errors.
//!
//! Where YAML 1.1 (PyYAML) and 1.2 differ, the 1.2 reading wins: `yes`/`no`/`on`/
//! `off` stay strings, so a boolean key given one of them is refused by
//! [`crate::config`] with the key named rather than read as PyYAML would.

use std::fmt;

use serde_json::Value;

use crate::config::duplicates::Refusal;

/// A YAML document that cannot be read, with where (1-based) when the parser knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    /// Line and column of the problem, both counted from 1.
    pub position: Option<(usize, usize)>,
    /// What is wrong, without the position.
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{line}:{column}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Parses one YAML document into a JSON value. An empty document is `null`; a
/// key given twice in one map is an error at its second line, naming both
/// ([`crate::config::duplicates`]).
pub fn to_json(text: &str) -> Result<Value, YamlError> {
    // The parser's time grows with the square of flow nesting (`[[[[...`): a
    // config is refused before it can stall the loop on a reload.
    if let Some((line, column)) = too_deep(text, MAX_FLOW_DEPTH) {
        return Err(YamlError {
            position: Some((line, column)),
            message: format!("lists or maps nested deeper than {MAX_FLOW_DEPTH} levels"),
        });
    }
    crate::config::duplicates::read_yaml(text).map_err(|refusal| match refusal {
        Refusal::Twice(d) => YamlError {
            position: Some((d.second_line, d.column)),
            message: d.to_string(),
        },
        Refusal::Syntax(e) => {
            let position = e.location().map(|l| (l.line(), l.column()));
            let mut message = e.to_string();
            // The crate appends " at line L column C" for the problem's position; the
            // caller prints it in front. Any further position (the context's) stays.
            if let Some((line, column)) = position {
                let suffix = format!(" at line {line} column {column}");
                if let Some(i) = message.find(&suffix) {
                    message.replace_range(i..i + suffix.len(), "");
                }
            }
            YamlError { position, message }
        }
    })
}

/// Deepest `[`/`{` nesting a config may have (AIT's has 2).
pub const MAX_FLOW_DEPTH: usize = 64;

/// Where `[` or `{` nesting (outside quoted strings and comments) first passes
/// `max`, as line and column (1-based), if it does.
fn too_deep(text: &str, max: usize) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    for (n, line) in text.lines().enumerate() {
        let mut quote: Option<char> = None;
        for (col, c) in line.chars().enumerate() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > max {
                        return Some((n + 1, col + 1));
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deep_flow_nesting_is_refused_quickly() {
        let deep = format!("a: {}", "[".repeat(100_000));
        let e = to_json(&deep).unwrap_err();
        assert_eq!(e.position, Some((1, 4 + MAX_FLOW_DEPTH)));
        assert!(to_json("a: [[1, 2], {b: '[[[[[[['}]  # [[[[[[[[").is_ok());
    }

    /// AIT's `bsc.yaml` as its documentation shows it.
    const AIT_BSC_YAML: &str = "\
capture_manager:
    root_log_directory: /tmp/bsc-test          # change in test
    manager_server:
        host: localhost
        port: 8080

handlers:
    - name: test1
      conn_type: udp
      address: ['', 8500]
      rotate_log: True
      rotate_log_index: day
      rotate_log_delta: 1
      file_name_pattern: '%Y-%m-%d-%H-%M-%S-{name}.pcap'

    - name: test2
      conn_type: udp
      address: ['', 8501]
      path: additional_dir/test/%j
      rotate_log: False
      pre_write_transforms:
          - identity_transform
";

    #[test]
    fn ait_bsc_yaml_becomes_the_json_it_means() {
        assert_eq!(
            to_json(AIT_BSC_YAML).unwrap(),
            json!({
                "capture_manager": {
                    "root_log_directory": "/tmp/bsc-test",
                    "manager_server": {"host": "localhost", "port": 8080}
                },
                "handlers": [
                    {"name": "test1", "conn_type": "udp", "address": ["", 8500],
                     "rotate_log": true, "rotate_log_index": "day", "rotate_log_delta": 1,
                     "file_name_pattern": "%Y-%m-%d-%H-%M-%S-{name}.pcap"},
                    {"name": "test2", "conn_type": "udp", "address": ["", 8501],
                     "path": "additional_dir/test/%j", "rotate_log": false,
                     "pre_write_transforms": ["identity_transform"]}
                ]
            })
        );
    }

    #[test]
    fn ait_bsc_yaml_is_a_valid_config() {
        use crate::config::Config;
        use crate::units::transform::Transform;
        let c = Config::from_value(&to_json(AIT_BSC_YAML).unwrap()).unwrap();
        assert_eq!(c.server.port, 8080);
        let names: Vec<_> = c.handlers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["test1", "test2"]);
        assert!(c.handlers[0].rotation.is_some());
        assert!(c.handlers[1].rotation.is_none());
        // AIT's name for the identity transform.
        assert_eq!(c.handlers[1].pre_write_transforms, [Transform::Identity]);
    }

    #[test]
    fn booleans_in_every_spelling_aits_files_use() {
        let v = to_json("a: True\nb: False\nc: true\nd: false\ne: TRUE\nf: FALSE\n").unwrap();
        assert_eq!(
            v,
            json!({"a": true, "b": false, "c": true, "d": false, "e": true, "f": false})
        );
        // Quoted, they are the strings they spell.
        let v = to_json("a: 'True'\nb: \"false\"\n").unwrap();
        assert_eq!(v, json!({"a": "True", "b": "false"}));
        // YAML 1.1's other spellings are strings here (see the module doc).
        let v = to_json("a: yes\nb: off\n").unwrap();
        assert_eq!(v, json!({"a": "yes", "b": "off"}));
    }

    #[test]
    fn comments_are_ignored() {
        let v = to_json("# a config\nport: 8500 # the port\n# end\n").unwrap();
        assert_eq!(v, json!({"port": 8500}));
    }

    #[test]
    fn flow_and_block_lists() {
        let v = to_json("flow: ['', 8500]\nblock:\n  - identity\n  - 7\nempty: []\n").unwrap();
        assert_eq!(
            v,
            json!({"flow": ["", 8500], "block": ["identity", 7], "empty": []})
        );
        let v = to_json("- name: a\n  port: 1\n- {name: b, port: 2}\n").unwrap();
        assert_eq!(
            v,
            json!([{"name": "a", "port": 1}, {"name": "b", "port": 2}])
        );
    }

    #[test]
    fn quoted_and_unquoted_strings() {
        let v = to_json(concat!(
            "plain: additional_dir/test/%j\n",
            "single: '%Y-{name}.pcap'\n",
            "double: \"tab\\there\"\n",
            "quote: 'it''s'\n",
            "number_text: '8500'\n",
            "host: localhost\n",
            "empty: ''\n",
        ))
        .unwrap();
        assert_eq!(
            v,
            json!({"plain": "additional_dir/test/%j", "single": "%Y-{name}.pcap",
                   "double": "tab\there", "quote": "it's", "number_text": "8500",
                   "host": "localhost", "empty": ""})
        );
    }

    #[test]
    fn numbers_and_nulls() {
        let v = to_json("a: 8500\nb: -1\nc: 2.5\nd: 0x10\ne: ~\nf: null\ng:\n").unwrap();
        assert_eq!(
            v,
            json!({"a": 8500, "b": -1, "c": 2.5, "d": 16, "e": null, "f": null, "g": null})
        );
        assert_eq!(to_json("").unwrap(), Value::Null);
    }

    #[test]
    fn anchors_and_aliases() {
        let v = to_json("port: &p 8500\naddress: ['', *p]\n").unwrap();
        assert_eq!(v, json!({"port": 8500, "address": ["", 8500]}));
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        // Line 3 is indented less than its mapping's keys and more than the top level.
        let e = to_json("handlers:\n    - name: a\n  conn_type: udp\n").unwrap_err();
        assert_eq!(e.position, Some((3, 3)), "{e}");
        assert!(!e.message.contains("at line 3 column 3"), "{e}");
        assert!(e.to_string().starts_with("3:3: "), "{e}");

        // An unclosed flow list.
        let e = to_json("a: 1\nb: ['', 8500\n").unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");

        // A tab where YAML wants spaces.
        let e = to_json("a:\n\t- 1\n").unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(2), "{e}");
    }
}
