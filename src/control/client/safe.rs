//! Whatever a server sends, the client never writes a terminal control
//! sequence: every string of an answer is escaped once, as it is read
//! ([`terminal_safe`]), and `--json` prints the answer's text made safe and
//! still the same JSON ([`terminal_safe_json`]).

use serde_json::Value;

/// `text` on one line (controls escaped), at most `max` characters.
pub(super) fn one_line(text: &str, max: usize) -> String {
    let flat = crate::log::escape_controls(text);
    if flat.chars().count() > max {
        flat.chars().take(max).collect::<String>() + "..."
    } else {
        flat.into_owned()
    }
}

/// The answer with every control character (ESC, BEL, CR, C1, ...) in its strings
/// and keys escaped as [`crate::log::escape_controls`] does: whatever a server
/// sends, the client never writes a terminal control sequence. Every text path
/// (tables, one-line summaries, refusals) prints from a value made safe here.
pub fn terminal_safe(mut value: Value) -> Value {
    make_safe(&mut value);
    value
}

fn make_safe(value: &mut Value) {
    let escaped = |s: &str| match crate::log::escape_controls(s) {
        std::borrow::Cow::Owned(e) => Some(e),
        std::borrow::Cow::Borrowed(_) => None,
    };
    match value {
        Value::String(s) => {
            if let Some(e) = escaped(s) {
                *s = e;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(make_safe),
        Value::Object(map) => {
            if map.keys().any(|k| escaped(k).is_some()) {
                for (k, v) in std::mem::take(map) {
                    map.insert(escaped(&k).unwrap_or(k), v);
                }
            }
            map.values_mut().for_each(make_safe);
        }
        _ => {}
    }
}

/// A JSON answer's text as sent (`--json`: the key order kept), made safe for a
/// terminal and still the same JSON: a control character can only be whitespace
/// outside strings (a CR becomes a space) or, for DEL, C1 and the other
/// [`crate::log::is_hazard`] characters, inside a string (written as a `\uXXXX`
/// escape, which JSON reads back as the same character).
pub fn terminal_safe_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => out.push(' '),
            c if crate::log::is_hazard(c) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::client::{check_answer, Answer};
    use serde_json::json;

    #[test]
    fn answers_are_made_safe_for_a_terminal() {
        let hostile = "h\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{9b}31m\u{7f}";
        let escaped = r"h\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{9b}31m\u{7f}";
        let safe = terminal_safe(json!({hostile: [hostile, 1, {"k": hostile}], "n": null}));
        assert_eq!(
            safe,
            json!({escaped: [escaped, 1, {"k": escaped}], "n": null})
        );
        // --json: the same JSON, nothing a terminal acts on.
        let body = format!(
            "{{\"a\":\r\n\t{}}}",
            serde_json::to_string(hostile).unwrap()
        );
        let out = terminal_safe_json(&body);
        assert!(
            out.chars()
                .all(|c| !c.is_control() || c == '\n' || c == '\t'),
            "{out:?}"
        );
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, json!({"a": hostile}));
        // A refusal's text too.
        let refused = check_answer(
            &Answer {
                status: 400,
                body: serde_json::to_vec(&json!({"error": hostile})).unwrap(),
            },
            "h:1",
        )
        .unwrap_err();
        assert_eq!(refused.to_string(), format!("refused (400): {escaped}"));
        let ok = check_answer(
            &Answer {
                status: 200,
                body: serde_json::to_vec(&json!([hostile])).unwrap(),
            },
            "h:1",
        );
        assert_eq!(ok, Ok(json!([escaped])));
    }
}
