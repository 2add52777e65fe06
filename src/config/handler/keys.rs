//! The handler keys, each declared once in [`KEYS`] (in the spirit of ripgrep's
//! flag table): its name, what it takes, its default, a doc line, the kinds of
//! source it applies to, how it is read into a [`HandlerSpec`] and how it is shown.
//! Derived from it: the key list ([`HANDLER_KEYS`], which typo detection and
//! metadata use), reading ([`HandlerSpec::from_json`]: the config file, AIT's
//! YAML and the API form alike), the state file ([`HandlerSpec::to_json`]) and
//! the `handler` dict of `GET /` and of a start's answer ([`HandlerSpec::shown`]).
//! The README's and the man page's key tables are checked against it (tests).
//!
//! Adding a key: one entry here (in the place its `GET /` dict shows it), the
//! [`HandlerSpec`] field it reads into, and the behaviour that uses it.
//!
//! Keys are read in the table's order, so a key may look at the keys before it
//! (`address` at `conn_type`, `fecf` at `framing` and `sequence_check`).

use serde_json::{json, Value};

use super::values::{
    command, file_pattern, multicast_interface, path_pattern, sequence_check, transforms,
    validate_name,
};
use super::{
    HandlerSpec, Origin, Reading, ShipSpec, DEFAULT_FILE_NAME_PATTERN, DEFAULT_FORWARD_QUEUE_BYTES,
    DEFAULT_RCVBUF_BYTES,
};
use crate::config::address::Address;
use crate::config::choices::{ConnType, Direction, Precision, Timestamps};
use crate::config::fields::FieldError;
use crate::config::relay_target::{relay_targets, Carrier, RelayTarget};
use crate::files::rotation::{RotationRule, RotationUnit};
use crate::units::framing::Framing;
use crate::units::sequence::SequenceCheck;

/// One handler key.
pub struct Key {
    pub name: &'static str,
    /// What the value is.
    pub takes: &'static str,
    /// The default as the docs state it: a value, `required` or `none`.
    pub default: &'static str,
    /// What the key is for, in one line.
    pub doc: &'static str,
    /// The kinds of source it applies to (empty: every kind); given for
    /// another, it is refused, and it is not shown.
    pub sources: &'static [ConnType],
    /// Reads the key (absent: its default) into the handler being read.
    pub read: fn(&mut Reading) -> Result<(), FieldError>,
    /// The key's value in a handler.
    pub show: fn(&HandlerSpec) -> Shown,
}

/// A key's value in a handler, as the API and the state file show it.
#[derive(Debug, PartialEq)]
pub enum Shown {
    /// Given, or applied by default: in `GET /` and in the state file.
    Set(Value),
    /// Not set (a limit without a value, no framing, no command): `GET /`
    /// shows it so (`null`, `"none"`, `[]`, `false`); the state file leaves it
    /// out, and reading it back gives the same.
    Unset(Value),
    /// Not shown (`path` not given, `ship` keys without `ship`).
    Hidden,
}

fn set(v: impl serde::Serialize) -> Shown {
    Shown::Set(json!(v))
}

/// `Set` when `Some`, else `Unset` as `null`.
fn limit(v: Option<impl serde::Serialize>) -> Shown {
    v.map_or(Shown::Unset(Value::Null), set)
}

const UDP: &[ConnType] = &[ConnType::Udp];
const TCP: &[ConnType] = &[ConnType::Tcp];
const ETHERNET: &[ConnType] = &[ConnType::Ethernet];
const ANY: &[ConnType] = &[];

/// Every handler key, in the order `GET /` shows them (and they are read).
pub const KEYS: &[Key] = &[
    Key {
        name: "name",
        takes: "name",
        default: "required",
        doc: "letters, digits, '-', '_', '.'; at most 64; unique per address",
        sources: ANY,
        read: |r| {
            let name = r
                .fields
                .string(r.key)?
                .ok_or_else(|| r.error("is required"))?;
            validate_name(name).map_err(|m| r.error(m))?;
            r.spec.name = name.to_string();
            Ok(())
        },
        show: |s| set(&s.name),
    },
    Key {
        name: "conn_type",
        takes: "choice",
        default: "required",
        doc: "udp, tcp or ethernet",
        sources: ANY,
        read: |r| {
            r.fields
                .require(r.key, "is required (udp, tcp or ethernet)")?;
            // Given (required just above), so the default is never used.
            r.spec.conn_type = r.fields.choice(r.key, ConnType::NAMES, ConnType::Udp)?;
            Ok(())
        },
        show: |s| set(s.conn_type.as_str()),
    },
    Key {
        name: "address",
        takes: "[host, port] or [interface, protocol]",
        default: "required",
        doc: "udp: where to listen; tcp: the peer; ethernet: the interface and EtherType",
        sources: ANY,
        read: |r| {
            let conn_type = r.spec.conn_type;
            r.spec.address = r
                .fields
                .read(r.key, |v| Address::from_json(v, conn_type))?
                .ok_or_else(|| {
                    r.error(
                        "is required: [host, port] (udp/tcp) or [interface, protocol] (ethernet)",
                    )
                })?;
            Ok(())
        },
        show: |s| set((&s.address.host, s.address.port)),
    },
    Key {
        name: "rotate_log",
        takes: "boolean",
        default: "true",
        doc: "rotate on the calendar",
        sources: ANY,
        read: |r| {
            let unit = r.spec.rotate_log_index;
            let delta = r.spec.rotate_log_delta;
            r.spec.rotation = r
                .fields
                .boolean(r.key, true)?
                .then_some(RotationRule { unit, delta });
            Ok(())
        },
        show: |s| set(s.rotation.is_some()),
    },
    Key {
        name: "rotate_log_index",
        takes: "calendar unit",
        default: "day",
        doc: "year, month, day, hour, minute or second",
        sources: ANY,
        read: |r| {
            let unit = r.fields.parsed(r.key)?.unwrap_or(RotationUnit::Day);
            r.spec.rotate_log_index = unit;
            if let Some(rule) = &mut r.spec.rotation {
                rule.unit = unit;
            }
            Ok(())
        },
        show: |s| set(s.rotate_log_index.to_string()),
    },
    Key {
        name: "rotate_log_delta",
        takes: "whole number",
        default: "1",
        doc: "rotate every this many units of rotate_log_index",
        sources: ANY,
        read: |r| {
            let delta = r.fields.whole(r.key, 1..=1_000_000)?.unwrap_or(1) as u32;
            r.spec.rotate_log_delta = delta;
            if let Some(rule) = &mut r.spec.rotation {
                rule.delta = delta;
            }
            Ok(())
        },
        show: |s| set(s.rotate_log_delta),
    },
    Key {
        name: "file_name_pattern",
        takes: "pattern",
        default: DEFAULT_FILE_NAME_PATTERN,
        doc: "the file's name: strftime codes and {key} fields",
        sources: ANY,
        read: |r| {
            let p = r.fields.string(r.key)?.unwrap_or(DEFAULT_FILE_NAME_PATTERN);
            r.spec.file_name_pattern = file_pattern(p, r.origin).map_err(|m| r.error(m))?;
            Ok(())
        },
        show: |s| set(s.file_name_pattern.source()),
    },
    Key {
        name: "path",
        takes: "pattern",
        default: "none",
        doc: "the folder under the root (absolute allowed in the config file)",
        sources: ANY,
        read: |r| {
            r.spec.path = match r.fields.string(r.key)? {
                None | Some("") => None,
                Some(p) => Some(path_pattern(p, r.origin).map_err(|m| r.error(m))?),
            };
            Ok(())
        },
        show: |s| s.path.as_ref().map_or(Shown::Hidden, |p| set(p.source())),
    },
    Key {
        name: "pre_write_transforms",
        takes: "list of transforms",
        default: "[]",
        doc: "built-in transforms of each unit, in order",
        sources: ANY,
        read: |r| {
            r.spec.pre_write_transforms = r.fields.read(r.key, transforms)?.unwrap_or_default();
            Ok(())
        },
        show: |s| {
            let forms: Vec<String> = s
                .pre_write_transforms
                .iter()
                .map(|t| t.to_string())
                .collect();
            set(forms)
        },
    },
    Key {
        name: "framing",
        takes: "kind or object",
        default: "none",
        doc: "tcp, udp: cut the stream (or each datagram) into telemetry units",
        // "none" is accepted for ethernet too: checked below.
        sources: ANY,
        read: |r| {
            let framing = match r.fields.get(r.key) {
                None => Framing::None,
                Some(v) => Framing::from_json(v)?,
            };
            if framing != Framing::None && r.spec.conn_type == ConnType::Ethernet {
                return Err(r.error("only applies to tcp and udp handlers, not ethernet"));
            }
            r.spec.framing = framing;
            Ok(())
        },
        show: |s| match s.framing {
            Framing::None => Shown::Unset(json!("none")),
            _ => Shown::Set(s.framing.to_json()),
        },
    },
    Key {
        name: "sequence_check",
        takes: "kind or object",
        default: "none",
        doc: "count gaps in each unit's CCSDS sequence counter",
        sources: ANY,
        read: |r| {
            r.spec.sequence_check = match r.fields.get(r.key) {
                None => None,
                Some(v) => sequence_check(r.key, v)?,
            };
            Ok(())
        },
        show: |s| limit(s.sequence_check.map(|c| c.to_json())),
    },
    Key {
        name: "fecf",
        takes: "boolean",
        default: "false",
        doc: "TM frames: check each frame's FECF (CRC-16), counting crc_errors",
        sources: ANY,
        read: |r| {
            let fecf = r.fields.boolean(r.key, false)?;
            let tm_frames = matches!(r.spec.framing, Framing::TmFrame { .. })
                || matches!(r.spec.sequence_check, Some(SequenceCheck::TmFrame { .. }));
            if fecf && !tm_frames {
                return Err(r.error("only applies to TM frames: set framing {\"kind\": \"ccsds_tm_frame\", ...} (or sequence_check \"ccsds_tm_frame\" when each datagram is one frame)"));
            }
            r.spec.fecf = fecf;
            Ok(())
        },
        show: |s| match s.fecf {
            true => set(true),
            false => Shown::Unset(json!(false)),
        },
    },
    Key {
        name: "drop_bad_frames",
        takes: "boolean",
        default: "false",
        doc: "with fecf: do not write frames whose FECF fails",
        sources: ANY,
        read: |r| {
            let drop = r.fields.boolean(r.key, false)?;
            if drop && !r.spec.fecf {
                return Err(
                    r.error("only applies with fecf: true (it drops frames whose FECF fails)")
                );
            }
            r.spec.drop_bad_frames = drop;
            Ok(())
        },
        show: |s| match s.fecf {
            true => set(s.drop_bad_frames),
            false => Shown::Unset(json!(s.drop_bad_frames)),
        },
    },
    Key {
        name: "rcvbuf_bytes",
        takes: "whole number",
        default: "25165824",
        doc: "the socket receive buffer to ask for",
        sources: ANY,
        read: |r| {
            r.spec.rcvbuf_bytes = r
                .fields
                .whole(r.key, 4096..=1 << 30)?
                .map_or(DEFAULT_RCVBUF_BYTES, |n| n as usize);
            Ok(())
        },
        show: |s| set(s.rcvbuf_bytes),
    },
    Key {
        name: "rotate_max_bytes",
        takes: "size",
        default: "none",
        doc: "close a file before it passes this size",
        sources: ANY,
        read: |r| {
            r.spec.rotate_max_bytes = r.fields.size(r.key)?;
            Ok(())
        },
        show: |s| limit(s.rotate_max_bytes),
    },
    Key {
        name: "rotate_max_packets",
        takes: "whole number",
        default: "none",
        doc: "close a file once it holds this many records",
        sources: ANY,
        read: |r| {
            r.spec.rotate_max_packets = r.fields.whole(r.key, 1..)?;
            Ok(())
        },
        show: |s| limit(s.rotate_max_packets),
    },
    Key {
        name: "fsync_interval_s",
        takes: "seconds",
        default: "10",
        doc: "force written records to the disk this often (0: only when a file closes)",
        sources: ANY,
        read: |r| {
            // 0: only when a file closes.
            let every = r.fields.seconds(r.key, 10.0, 0.0..=86_400.0)?;
            r.spec.fsync_interval = Some(every).filter(|d| !d.is_zero());
            Ok(())
        },
        show: |s| set(s.fsync_interval.map_or(0.0, |d| d.as_secs_f64())),
    },
    Key {
        name: "max_files",
        takes: "whole number",
        default: "none",
        doc: "retention: keep at most this many of the handler's files",
        sources: ANY,
        read: |r| {
            r.spec.max_files = r.fields.whole(r.key, 1..)?;
            Ok(())
        },
        show: |s| limit(s.max_files),
    },
    Key {
        name: "max_bytes",
        takes: "size",
        default: "none",
        doc: "retention: keep at most this many bytes of the handler's files",
        sources: ANY,
        read: |r| {
            r.spec.max_bytes = r.fields.size(r.key)?;
            Ok(())
        },
        show: |s| limit(s.max_bytes),
    },
    Key {
        name: "max_age",
        takes: "age",
        default: "none",
        doc: "retention: delete the handler's closed files older than this",
        sources: ANY,
        read: |r| {
            r.spec.max_age = r.fields.age(r.key)?;
            Ok(())
        },
        show: |s| limit(s.max_age.map(|d| d.as_secs_f64())),
    },
    Key {
        name: "on_close",
        takes: "command",
        default: "none",
        doc: "a command (list, no shell) run for each closed file; config file only",
        sources: ANY,
        read: |r| {
            let on_close = r.fields.read(r.key, command)?.unwrap_or_default();
            if r.origin == Origin::Api && !on_close.is_empty() {
                return Err(r.error(
                    "commands can only be configured in the config file, not over the API",
                ));
            }
            r.spec.on_close = on_close;
            Ok(())
        },
        show: |s| match s.on_close.is_empty() {
            true => Shown::Unset(json!([])),
            false => set(&s.on_close),
        },
    },
    Key {
        name: "timestamp_precision",
        takes: "choice",
        default: "us",
        doc: "us: microsecond pcap files; ns: nanosecond pcap files",
        sources: ANY,
        read: |r| {
            r.spec.timestamp_precision =
                r.fields.choice(r.key, Precision::NAMES, Precision::Micro)?;
            Ok(())
        },
        show: |s| set(s.timestamp_precision.as_str()),
    },
    Key {
        name: "record_source",
        takes: "boolean",
        default: "false",
        doc: "udp: write each datagram behind an IP/UDP header carrying the sender",
        sources: UDP,
        read: |r| {
            r.spec.record_source = r.fields.boolean(r.key, false)?;
            Ok(())
        },
        show: |s| set(s.record_source),
    },
    Key {
        name: "connect_timeout_s",
        takes: "seconds",
        default: "5",
        doc: "tcp: how long a connection attempt may take",
        sources: TCP,
        read: |r| {
            r.spec.connect_timeout = r.fields.seconds(r.key, 5.0, 0.1..=86_400.0)?;
            Ok(())
        },
        show: |s| set(s.connect_timeout.as_secs_f64()),
    },
    Key {
        name: "reconnect_max_s",
        takes: "seconds",
        default: "30",
        doc: "tcp: the longest wait between reconnection attempts",
        sources: TCP,
        read: |r| {
            r.spec.reconnect_max = r.fields.seconds(r.key, 30.0, 0.5..=86_400.0)?;
            Ok(())
        },
        show: |s| set(s.reconnect_max.as_secs_f64()),
    },
    Key {
        name: "direction",
        takes: "choice",
        default: "both",
        doc: "ethernet: both, or in (drop the frames this host sent)",
        sources: ETHERNET,
        read: |r| {
            r.spec.direction = r.fields.choice(r.key, Direction::NAMES, Direction::Both)?;
            Ok(())
        },
        show: |s| set(s.direction.as_str()),
    },
    Key {
        name: "timestamps",
        takes: "choice",
        default: "kernel",
        doc: "udp, ethernet: the kernel's receive time, or the time bsc read it",
        sources: &[ConnType::Udp, ConnType::Ethernet],
        read: |r| {
            r.spec.timestamps = r
                .fields
                .choice(r.key, Timestamps::NAMES, Timestamps::Kernel)?;
            Ok(())
        },
        show: |s| set(s.timestamps.as_str()),
    },
    Key {
        name: "interface",
        takes: "interface name or IPv4 address",
        default: "none",
        doc: "udp multicast: the interface to join the group on (none: the system's choice)",
        sources: UDP,
        read: |r| {
            r.spec.interface = match r.fields.string(r.key)? {
                None | Some("") => None,
                Some(i) => Some(multicast_interface(i, &r.spec.address).map_err(|m| r.error(m))?),
            };
            Ok(())
        },
        show: |s| limit(s.interface.as_deref()),
    },
    Key {
        name: "forward",
        takes: "list of targets",
        default: "[]",
        doc: "relay each unit recorded, live: udp://, tcp:// or tcp+len://HOST:PORT, optionally {\"to\": URL, \"filter\": \"apid:...\"}",
        sources: ANY,
        read: |r| {
            let targets = r.fields.read(r.key, relay_targets)?.unwrap_or_default();
            if !targets.is_empty() && r.spec.conn_type == ConnType::Ethernet {
                return Err(r.error("an ethernet handler cannot forward: its raw capture sees the datagrams bsc sends (on lo, or out of the interface it captures) and would forward them again, a loop; forward from a udp or tcp handler"));
            }
            if let Some(t) = targets.iter().find(|t| own_socket(t, &r.spec)) {
                return Err(r.error(format!(
                    "{} is this handler's own capture socket: forwarding there would loop",
                    t.url()
                )));
            }
            r.spec.forward = targets;
            Ok(())
        },
        show: |s| match s.forward.is_empty() {
            true => Shown::Unset(json!([])),
            false => set(s.forward.iter().map(RelayTarget::to_json).collect::<Vec<_>>()),
        },
    },
    Key {
        name: "forward_queue_bytes",
        takes: "size",
        default: "4194304",
        doc: "with forward: each target's queue in bytes; units past it are dropped and counted",
        sources: ANY,
        read: |r| {
            let bytes = r.fields.size(r.key)?;
            if bytes.is_some() && r.spec.forward.is_empty() {
                return Err(r.error("only applies with forward (a list of targets)"));
            }
            r.spec.forward_queue_bytes = match bytes {
                None => DEFAULT_FORWARD_QUEUE_BYTES,
                Some(b) if (64 << 10..=1 << 30).contains(&b) => b as usize,
                Some(b) => {
                    return Err(r.error(format!("{b} bytes: must be 64 KiB to 1 GiB")));
                }
            };
            Ok(())
        },
        show: |s| match s.forward.is_empty() {
            true => Shown::Unset(json!(s.forward_queue_bytes)),
            false => set(s.forward_queue_bytes),
        },
    },
    Key {
        name: "ship",
        takes: "command",
        default: "none",
        doc: "store and forward: a command run for each closed file until it exits 0",
        sources: ANY,
        read: |r| {
            r.config_file_only()?;
            r.spec.ship = match r.origin {
                Origin::Api => None,
                Origin::ConfigFile => r.fields.read(r.key, command)?.map(|argv| ShipSpec {
                    argv,
                    timeout_s: ShipSpec::DEFAULT_TIMEOUT_S,
                    retry_max_s: ShipSpec::DEFAULT_RETRY_MAX_S,
                    delete_after: false,
                }),
            };
            Ok(())
        },
        show: |s| {
            s.ship
                .as_ref()
                .map_or(Shown::Hidden, |ship| set(&ship.argv))
        },
    },
    Key {
        name: "ship_timeout_s",
        takes: "seconds",
        default: "300",
        doc: "with ship: an attempt running longer is killed and counts as failed",
        sources: ANY,
        read: |r| {
            r.config_file_only()?;
            let limit = r
                .fields
                .seconds(r.key, ShipSpec::DEFAULT_TIMEOUT_S, 1.0..=86_400.0)?;
            if let Some(ship) = r.with_ship()? {
                ship.timeout_s = limit.as_secs_f64();
            }
            Ok(())
        },
        show: |s| {
            s.ship
                .as_ref()
                .map_or(Shown::Hidden, |ship| set(ship.timeout_s))
        },
    },
    Key {
        name: "ship_retry_max_s",
        takes: "seconds",
        default: "600",
        doc: "with ship: the longest wait between attempts",
        sources: ANY,
        read: |r| {
            r.config_file_only()?;
            let wait = r
                .fields
                .seconds(r.key, ShipSpec::DEFAULT_RETRY_MAX_S, 1.0..=86_400.0)?;
            if let Some(ship) = r.with_ship()? {
                ship.retry_max_s = wait.as_secs_f64();
            }
            Ok(())
        },
        show: |s| {
            s.ship
                .as_ref()
                .map_or(Shown::Hidden, |ship| set(ship.retry_max_s))
        },
    },
    Key {
        name: "delete_after_ship",
        takes: "boolean",
        default: "false",
        doc: "with ship: delete each file once it has shipped",
        sources: ANY,
        read: |r| {
            r.config_file_only()?;
            let delete = r.fields.boolean(r.key, false)?;
            if let Some(ship) = r.with_ship()? {
                ship.delete_after = delete;
            }
            Ok(())
        },
        show: |s| {
            s.ship
                .as_ref()
                .map_or(Shown::Hidden, |ship| set(ship.delete_after))
        },
    },
];

/// Whether `t` is the UDP socket `spec` captures on (see
/// [`crate::config::loops`]): relaying there would feed the handler itself.
fn own_socket(t: &RelayTarget, spec: &HandlerSpec) -> bool {
    t.carrier == Carrier::Udp
        && spec.conn_type == ConnType::Udp
        && crate::config::loops::reaches(t, &spec.address)
}

/// Every handler key's name, in [`KEYS`]' order: every other key is metadata.
pub const HANDLER_KEYS: [&str; KEYS.len()] = {
    let mut names = [""; KEYS.len()];
    let mut i = 0;
    while i < KEYS.len() {
        names[i] = KEYS[i].name;
        i += 1;
    }
    names
};

/// Whether `key` is one of the handler's own keys (not metadata).
pub fn is_handler_key(key: &str) -> bool {
    HANDLER_KEYS.contains(&key)
}
