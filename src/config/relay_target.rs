//! The `forward` key's values, sans I/O: where a handler relays each unit it
//! records, live ([`RelayTarget`]: `udp://HOST:PORT`, `tcp://HOST:PORT`,
//! `tcp+len://HOST:PORT`, each with an optional `apid:`/`vcid:` filter).
//! Not to be confused with store and forward (`ship`), which hands closed
//! files to a command.
//!
//! Forms accepted, from the config file and the API alike: a list whose items
//! are URL strings or objects `{"to": URL, "filter": "apid:0x100,0x101"}`; from
//! a form, one string of URLs separated by commas or spaces, JSON text (a list
//! or one object), or the field repeated (each value one of those).

use std::fmt;

use serde_json::{json, Value};

use crate::config::address::validate_host;
use crate::config::duplicates::read_json;
use crate::config::fields::describe;
use crate::config::resolve::destination;
use crate::units::transform::Transform;

/// Most targets one handler relays to.
pub const MAX_TARGETS: usize = 16;

/// How units travel to a target.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Carrier {
    /// One datagram per unit.
    Udp,
    /// bsc connects out; units back to back.
    Tcp,
    /// bsc connects out; each unit behind its length (4 bytes, big-endian).
    TcpLen,
}

impl Carrier {
    /// The URL scheme.
    pub fn scheme(self) -> &'static str {
        match self {
            Carrier::Udp => "udp",
            Carrier::Tcp => "tcp",
            Carrier::TcpLen => "tcp+len",
        }
    }
}

/// One place a handler relays its units to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayTarget {
    pub carrier: Carrier,
    /// An IP literal or a name of `/etc/hosts` (see [`crate::config::resolve`]).
    pub host: String,
    pub port: u16,
    /// Only units this `apid:`/`vcid:` filter keeps are relayed.
    pub filter: Option<Transform>,
}

impl RelayTarget {
    /// Reads one URL: `udp://HOST:PORT`, `tcp://HOST:PORT` or `tcp+len://HOST:PORT`
    /// (an IPv6 host in brackets).
    pub fn parse_url(url: &str) -> Result<RelayTarget, String> {
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "{url:?} is not a target URL; use udp://HOST:PORT, tcp://HOST:PORT or tcp+len://HOST:PORT"
            ));
        };
        let carrier = match scheme {
            "udp" => Carrier::Udp,
            "tcp" => Carrier::Tcp,
            "tcp+len" => Carrier::TcpLen,
            other => {
                return Err(format!(
                    "{url:?}: unknown scheme {other:?}; use udp, tcp or tcp+len"
                ))
            }
        };
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (host, port) = v6
                    .split_once("]:")
                    .ok_or_else(|| format!("{url:?}: an IPv6 host is written [ADDR]:PORT"))?;
                (host, port)
            }
            None => rest
                .rsplit_once(':')
                .ok_or_else(|| format!("{url:?} has no port; write {scheme}://HOST:PORT"))?,
        };
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        if host.contains(':') && !rest.starts_with('[') {
            return Err(format!("{url:?}: an IPv6 host is written [ADDR]:PORT"));
        }
        validate_host(host).map_err(|e| format!("{url:?}: {e}"))?;
        let port = match port.parse::<u16>() {
            Ok(0) => {
                return Err(format!(
                    "{url:?}: port 0 is not a destination; use 1..65535"
                ))
            }
            Ok(p) => p,
            Err(_) => return Err(format!("{url:?}: the port must be a number 1..65535")),
        };
        Ok(RelayTarget {
            carrier,
            host: host.to_string(),
            port,
            filter: None,
        })
    }

    /// Reads one item of the list: a URL string or `{"to": URL, "filter": ...}`.
    pub fn from_json(v: &Value) -> Result<RelayTarget, String> {
        match v {
            Value::String(s) if s.trim_start().starts_with('{') => {
                Self::from_json(&read_json(s).map_err(|e| format!("not valid JSON: {e}"))?)
            }
            Value::String(s) => Self::parse_url(s),
            Value::Object(o) => {
                if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "to" | "filter")) {
                    return Err(format!("a target takes \"to\" and \"filter\", not {k:?}"));
                }
                let Some(Value::String(to)) = o.get("to") else {
                    return Err("a target object needs \"to\": a URL string".into());
                };
                let mut target = Self::parse_url(to)?;
                target.filter = match o.get("filter") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(f)) => Some(filter(f)?),
                    Some(other) => {
                        return Err(format!(
                            "filter must be a string such as \"apid:0x100,0x101\", got {}",
                            describe(other)
                        ))
                    }
                };
                Ok(target)
            }
            other => Err(format!(
                "a target is a URL string or {{\"to\": URL, \"filter\": ...}}, got {}",
                describe(other)
            )),
        }
    }

    /// The target's URL (`tcp+len://10.0.0.5:7000`): its name in `/stats`,
    /// `/metrics` and the log.
    pub fn url(&self) -> String {
        self.to_string()
    }

    /// The value `GET /` shows and [`RelayTarget::from_json`] reads back.
    pub fn to_json(&self) -> Value {
        match &self.filter {
            None => json!(self.url()),
            Some(f) => json!({"to": self.url(), "filter": f.to_string()}),
        }
    }
}

impl fmt::Display for RelayTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.carrier.scheme();
        match self.host.contains(':') {
            true => write!(f, "{scheme}://[{}]:{}", self.host, self.port),
            false => write!(f, "{scheme}://{}:{}", self.host, self.port),
        }
    }
}

/// A target's filter: an `apid:` or `vcid:` transform.
fn filter(text: &str) -> Result<Transform, String> {
    match Transform::parse(text)? {
        t @ (Transform::Apids(_) | Transform::Vcids(_)) => Ok(t),
        _ => Err(format!(
            "filter {text:?}: a target's filter is apid:... or vcid:... (pre_write_transforms cut units for every target)"
        )),
    }
}

/// The `forward` key: every target (see the module doc for the forms), at
/// most [`MAX_TARGETS`], none twice.
pub fn relay_targets(v: &Value) -> Result<Vec<RelayTarget>, String> {
    let mut targets = Vec::new();
    collect(v, &mut targets, true)?;
    if targets.len() > MAX_TARGETS {
        return Err(format!(
            "{} targets; a handler forwards to at most {MAX_TARGETS}",
            targets.len()
        ));
    }
    for (i, t) in targets.iter().enumerate() {
        if let Some(u) = targets[..i].iter().find(|u| same_socket(u, t)) {
            return Err(format!(
                "{} is given twice ({} is the same socket): each unit would go there twice",
                t.url(),
                u.url()
            ));
        }
    }
    Ok(targets)
}

/// Whether `a` and `b` send to the same socket: UDP or TCP alike, the same
/// port, and the same host or hosts that resolve to the same address.
fn same_socket(a: &RelayTarget, b: &RelayTarget) -> bool {
    (a.carrier == Carrier::Udp) == (b.carrier == Carrier::Udp)
        && a.port == b.port
        && (a.host == b.host
            || destination(&a.host).is_some_and(|d| destination(&b.host) == Some(d)))
}

/// Adds the targets `v` gives to `out`; `top`: `v` is the key's value (a list
/// may only nest once, as a form's repeated field of JSON lists).
fn collect(v: &Value, out: &mut Vec<RelayTarget>, top: bool) -> Result<(), String> {
    match v {
        Value::Array(items) if top => items.iter().try_for_each(|i| collect(i, out, false)),
        Value::String(s) if s.trim_start().starts_with('[') => {
            let list = read_json(s).map_err(|e| format!("not valid JSON: {e}"))?;
            match list {
                Value::Array(items) => items
                    .iter()
                    .try_for_each(|i| RelayTarget::from_json(i).map(|t| out.push(t))),
                _ => Err("JSON text must be a list of targets".into()),
            }
        }
        Value::String(s) if !s.trim_start().starts_with('{') => s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|u| !u.is_empty())
            .try_for_each(|u| RelayTarget::parse_url(u).map(|t| out.push(t))),
        Value::Null if top => Ok(()),
        v if !top || v.is_string() => RelayTarget::from_json(v).map(|t| out.push(t)),
        other => Err(format!(
            "must be a list of targets (udp://HOST:PORT, tcp://HOST:PORT, tcp+len://HOST:PORT, or {{\"to\": URL, \"filter\": \"apid:...\"}}), got {}",
            describe(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_each_scheme_are_read_and_written_back() {
        for url in [
            "udp://127.0.0.1:9000",
            "tcp://ground.example:7000",
            "tcp+len://[::1]:65535",
        ] {
            let t = RelayTarget::parse_url(url).unwrap();
            assert_eq!(t.url(), url);
            assert_eq!(RelayTarget::from_json(&t.to_json()).unwrap(), t);
        }
        let t = RelayTarget::parse_url("tcp+len://[::1]:7").unwrap();
        assert_eq!(
            (t.carrier, t.host.as_str(), t.port),
            (Carrier::TcpLen, "::1", 7)
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("http://a:1", "unknown scheme \"http\""),
            ("udp:/a:1", "not a target URL"),
            ("udp://a", "has no port"),
            ("udp://:9", "has no host"),
            ("udp://a:0", "port 0"),
            ("udp://a:70000", "1..65535"),
            ("udp://a:x", "1..65535"),
            ("tcp://a b:9", "has ' '"),
            ("tcp://a;rm:9", "has ';'"),
            ("udp://::1:9", "[ADDR]:PORT"),
            ("udp://[::1]9", "[ADDR]:PORT"),
        ] {
            let e = RelayTarget::parse_url(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn objects_carry_an_apid_or_vcid_filter() {
        let t = RelayTarget::from_json(
            &json!({"to": "udp://127.0.0.1:9", "filter": "apid:0x101, 0x100"}),
        )
        .unwrap();
        assert_eq!(t.filter, Some(Transform::Apids(vec![0x100, 0x101])));
        assert_eq!(
            t.to_json(),
            json!({"to": "udp://127.0.0.1:9", "filter": "apid:0x100,0x101"})
        );
        for (v, says) in [
            (
                json!({"to": "udp://a:9", "filter": "strip:4"}),
                "apid:... or vcid:",
            ),
            (
                json!({"to": "udp://a:9", "filter": "apid:0x800"}),
                "0..2047",
            ),
            (json!({"to": "udp://a:9", "filter": 5}), "must be a string"),
            (
                json!({"to": "udp://a:9", "filtre": "apid:1"}),
                "not \"filtre\"",
            ),
            (json!({"filter": "apid:1"}), "needs \"to\""),
            (json!(7), "URL string"),
        ] {
            let e = RelayTarget::from_json(&v).unwrap_err();
            assert!(e.contains(says), "{v}: {e}");
        }
    }

    #[test]
    fn the_key_takes_lists_strings_json_text_and_repeated_fields() {
        let urls = |v: Value| -> Vec<String> {
            relay_targets(&v)
                .unwrap()
                .iter()
                .map(RelayTarget::url)
                .collect()
        };
        let two = vec!["udp://127.0.0.1:9".to_string(), "tcp://127.0.0.1:8".into()];
        assert_eq!(urls(json!(["udp://127.0.0.1:9", "tcp://127.0.0.1:8"])), two);
        assert_eq!(urls(json!("udp://127.0.0.1:9, tcp://127.0.0.1:8")), two);
        assert_eq!(urls(json!("udp://127.0.0.1:9 tcp://127.0.0.1:8")), two);
        assert_eq!(
            urls(json!(
                r#"["udp://127.0.0.1:9", {"to": "tcp://127.0.0.1:8"}]"#
            )),
            two
        );
        assert_eq!(
            urls(json!([
                "udp://127.0.0.1:9",
                r#"{"to": "tcp://127.0.0.1:8", "filter": "vcid:1"}"#
            ])),
            two
        );
        assert!(urls(json!([])).is_empty());
        assert!(urls(json!("")).is_empty());
        for twice in [
            ["udp://a:1", "udp://a:1"],
            ["udp://127.0.0.1:1", "udp://localhost:1"],
            ["udp://[::ffff:127.0.0.1]:1", "udp://127.0.0.1:1"],
            ["tcp://127.0.0.1:1", "tcp+len://127.0.0.1:1"],
        ] {
            let e = relay_targets(&json!(twice)).unwrap_err();
            assert!(e.contains("twice") && e.contains(twice[0]), "{e}");
        }
        assert_eq!(
            relay_targets(&json!(["udp://127.0.0.1:1", "tcp://127.0.0.1:1"]))
                .unwrap()
                .len(),
            2
        );
        let many: Vec<String> = (1..=17).map(|p| format!("udp://a:{p}")).collect();
        assert!(relay_targets(&json!(many))
            .unwrap_err()
            .contains("at most 16"));
        assert!(relay_targets(&json!(5))
            .unwrap_err()
            .contains("list of targets"));
        assert!(relay_targets(&json!([["udp://a:1"]])).is_err());
        assert!(relay_targets(&json!("[1,")).unwrap_err().contains("JSON"));
    }
}
