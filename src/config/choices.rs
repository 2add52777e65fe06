//! The handler's named options: what each word in a config means.

use std::fmt;

/// What kind of socket a handler captures from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConnType {
    Udp,
    Tcp,
    Ethernet,
}

impl ConnType {
    pub fn parse(s: &str) -> Option<ConnType> {
        match s {
            "udp" => Some(ConnType::Udp),
            "tcp" => Some(ConnType::Tcp),
            "ethernet" => Some(ConnType::Ethernet),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConnType::Udp => "udp",
            ConnType::Tcp => "tcp",
            ConnType::Ethernet => "ethernet",
        }
    }
}

impl fmt::Display for ConnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A built-in transform applied to each unit before it is written.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Transform {
    /// Writes the unit unchanged.
    Identity,
}

impl Transform {
    pub const NAMES: &'static str = "identity (or AIT's name, identity_transform)";

    pub fn parse(s: &str) -> Option<Transform> {
        match s {
            "identity" | "identity_transform" => Some(Transform::Identity),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transform::Identity => "identity",
        }
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

/// Which time stamps a record (`timestamps`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Timestamps {
    /// The kernel's receive time (`SO_TIMESTAMPNS`); the time of reading when the
    /// kernel gives none.
    Kernel,
    /// The time bsc read the unit.
    Read,
}
