//! The handler's named options. Each enum has ONE name table, [`Names`]: it is
//! what the config is parsed with, what an error lists as the choices, and what
//! bsc writes back (the first name of a value is the one written).

use std::fmt;

pub use crate::files::pcap::Precision;

/// Every name a value may be written as; a value's first name is its own.
pub type Names<T> = [(&'static str, T)];

/// The value `name` stands for in `table`.
pub fn parse<T: Copy>(table: &Names<T>, name: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The name bsc writes for `value`: its first in `table`. Every table names
/// every value of its enum (`every_value_has_a_name` checks), so the empty
/// fallback is never reached.
pub fn name<T: Copy + PartialEq>(table: &Names<T>, value: T) -> &'static str {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map_or("", |(n, _)| n)
}

/// The names, as an error lists them: `udp, tcp, ethernet`.
pub fn list<T>(table: &Names<T>) -> String {
    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// What kind of socket a handler captures from (`conn_type`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConnType {
    Udp,
    Tcp,
    Ethernet,
}

impl ConnType {
    pub const NAMES: &'static Names<ConnType> = &[
        ("udp", ConnType::Udp),
        ("tcp", ConnType::Tcp),
        ("ethernet", ConnType::Ethernet),
    ];

    pub fn parse(s: &str) -> Option<ConnType> {
        parse(Self::NAMES, s)
    }

    pub fn as_str(self) -> &'static str {
        name(Self::NAMES, self)
    }
}

impl fmt::Display for ConnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which Ethernet frames a handler keeps (`direction`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Frames received and sent on the interface (AIT's behaviour).
    Both,
    /// Only frames the interface received.
    In,
}

impl Direction {
    pub const NAMES: &'static Names<Direction> =
        &[("both", Direction::Both), ("in", Direction::In)];

    pub fn as_str(self) -> &'static str {
        name(Self::NAMES, self)
    }
}

/// Which time stamps a record (`timestamps`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Timestamps {
    /// The kernel's receive time (`SO_TIMESTAMPNS`); the time of reading when the
    /// kernel gives none.
    Kernel,
    /// The time bsc read the unit.
    Read,
}

impl Timestamps {
    pub const NAMES: &'static Names<Timestamps> =
        &[("kernel", Timestamps::Kernel), ("read", Timestamps::Read)];

    pub fn as_str(self) -> &'static str {
        name(Self::NAMES, self)
    }
}

/// The resolution of a handler's record timestamps (`timestamp_precision`).
impl Precision {
    pub const NAMES: &'static Names<Precision> =
        &[("us", Precision::Micro), ("ns", Precision::Nano)];

    pub fn as_str(self) -> &'static str {
        name(Self::NAMES, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_has_a_name_and_reads_back() {
        // The matches are exhaustive: a new variant fails to compile here until
        // it is listed, and then fails the test until its table names it.
        for c in [ConnType::Udp, ConnType::Tcp, ConnType::Ethernet] {
            match c {
                ConnType::Udp | ConnType::Tcp | ConnType::Ethernet => {}
            }
            assert_eq!(ConnType::parse(c.as_str()), Some(c));
        }
        for d in [Direction::Both, Direction::In] {
            match d {
                Direction::Both | Direction::In => {}
            }
            assert_eq!(parse(Direction::NAMES, d.as_str()), Some(d));
        }
        for t in [Timestamps::Kernel, Timestamps::Read] {
            match t {
                Timestamps::Kernel | Timestamps::Read => {}
            }
            assert_eq!(parse(Timestamps::NAMES, t.as_str()), Some(t));
        }
        for p in Precision::ALL {
            match p {
                Precision::Micro | Precision::Nano => {}
            }
            assert_eq!(parse(Precision::NAMES, p.as_str()), Some(p));
        }
        assert_eq!(list(ConnType::NAMES), "udp, tcp, ethernet");
        assert_eq!(ConnType::parse("UDP"), None);
    }
}
