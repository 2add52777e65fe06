//! Capture addresses as AIT writes them (`[host, port]`, read by
//! [`Address::from_json`]), and Python's `repr` of their keys.

use std::fmt;

use serde_json::Value;

use super::choices::ConnType;
use super::fields::{describe, whole_number};

/// A capture address as AIT writes it: `[host, port]` for udp/tcp, `[interface,
/// protocol]` for ethernet. Capturers are keyed by it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl Address {
    /// `address`: `[host, port]` (udp, tcp) or `[interface, protocol]` (ethernet).
    pub fn from_json(v: &Value, conn_type: ConnType) -> Result<Address, String> {
        let Value::Array(a) = v else {
            return Err(format!("must be a list [host, port], got {}", describe(v)));
        };
        let [host, port] = a.as_slice() else {
            return Err(format!("must be a list [host, port], got {}", describe(v)));
        };
        let Value::String(host) = host else {
            return Err(format!(
                "first element must be a string (host or interface), got {}",
                describe(host)
            ));
        };
        validate_host(host)?;
        let port = whole_number(port)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| {
                format!(
                    "second element must be a port/protocol number 0..65535, got {}",
                    describe(port)
                )
            })?;
        if port == 0 && conn_type != ConnType::Ethernet {
            return Err(format!(
                "port 0 is not allowed for {conn_type}; use 1..65535"
            ));
        }
        if host.is_empty() && conn_type != ConnType::Udp {
            return Err(format!(
                "{conn_type} needs a host (tcp: the peer; ethernet: the interface)"
            ));
        }
        Ok(Address {
            host: host.clone(),
            port,
        })
    }

    /// The key AIT uses in `GET /` and `GET /stats`: Python's `repr` of the list,
    /// e.g. `['', 8500]`.
    pub fn python_repr(&self) -> String {
        format!("[{}, {}]", python_str_repr(&self.host), self.port)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.is_empty() {
            "*"
        } else {
            &self.host
        };
        if host.contains(':') {
            write!(f, "[{host}]:{}", self.port)
        } else {
            write!(f, "{host}:{}", self.port)
        }
    }
}

/// Python's `repr()` of a str: single quotes unless the text has a single quote and
/// no double quote; backslashes and control characters escaped.
pub fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Checks a host part: an IP literal, a hostname, an interface name, or "".
pub(crate) fn validate_host(host: &str) -> Result<(), String> {
    if host.len() > 255 {
        return Err("host is longer than 255 characters".into());
    }
    match host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '_' | '%')))
    {
        Some(c) => Err(format!("host {host:?} has {c:?}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_repr_of_addresses() {
        let a = |h: &str, p| Address {
            host: h.into(),
            port: p,
        };
        assert_eq!(a("", 8500).python_repr(), "['', 8500]");
        assert_eq!(a("127.0.0.1", 8125).python_repr(), "['127.0.0.1', 8125]");
        assert_eq!(a("eth0", 0).python_repr(), "['eth0', 0]");
        assert_eq!(python_str_repr("it's"), "\"it's\"");
        assert_eq!(python_str_repr("a'\"b"), "'a\\'\"b'");
        assert_eq!(python_str_repr("a\\b\n"), "'a\\\\b\\n'");
    }
}
