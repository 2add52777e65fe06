//! The answers the `bsc` client reads, read from their JSON one field at a
//! time: each type says, by key, the fields the client shows
//! ([`ReadFields::read_field`]) and skips the others.
//!
//! A field is read as `#[derive(Deserialize)]` would read it: by its type's
//! `Deserialize` (so a wrong value is serde's own error), in the object's key
//! order (the first wrong field is the error), a field missing reads as empty
//! (an older bsc did not send it). One difference: an object inside an answer
//! written as an array is refused, as a whole answer was already (bsc never
//! writes one). Why not derived: a derived reader per answer was about 20 KB
//! of the stripped aarch64 binary, which must stay under 1,000,000 bytes
//! (docs/arm.md, Sizes). The tests below write each answer as the server does
//! and read it back, so a key renamed on one side only fails them.

use serde::de::{DeserializeOwned, Error as _, Unexpected};
use serde_json::{Error, Map, Value};

use super::{
    CapturerEntry, CapturerStopped, EntrySummary, FileEntry, ForwardStatus, HandlerFiles,
    HandlerSummary, Rotated, StatsEntry,
};
use crate::ops::hooks::ShipStatus;
use crate::units::sequence::{SequenceReport, SequenceTotals};

/// An answer (or a part of one) the client reads from a JSON object.
pub trait ReadFields: Default {
    /// What serde calls it in an error ("struct FileEntry").
    const NAME: &'static str;

    /// Reads the field `key` into `self` if the client shows it.
    fn read_field(&mut self, key: &str, value: Value) -> Result<(), Error>;
}

/// A JSON object read into `T`, field by field in the object's order.
pub fn from_object<T: ReadFields>(object: Map<String, Value>) -> Result<T, Error> {
    let mut read = T::default();
    for (key, value) in object {
        read.read_field(&key, value)?;
    }
    Ok(read)
}

/// A plain field (a number, a text, an address): as its `Deserialize` reads it.
fn plain<T: DeserializeOwned>(value: Value) -> Result<T, Error> {
    T::deserialize(value)
}

/// An object inside an answer.
fn object<T: ReadFields>(value: Value) -> Result<T, Error> {
    match value {
        Value::Object(map) => from_object(map),
        other => Err(Error::invalid_type(unexpected(&other), &T::NAME)),
    }
}

/// A list of objects inside an answer.
fn list<T: ReadFields>(value: Value) -> Result<Vec<T>, Error> {
    match value {
        Value::Array(items) => items.into_iter().map(object).collect(),
        other => Err(Error::invalid_type(unexpected(&other), &"a sequence")),
    }
}

/// `null` as `None`, anything else read by `read`.
fn optional<T>(value: Value, read: fn(Value) -> Result<T, Error>) -> Result<Option<T>, Error> {
    match value {
        Value::Null => Ok(None),
        other => read(other).map(Some),
    }
}

/// What `value` is, in serde's words (its `Value::unexpected` is private).
fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Unexpected::Unsigned(u),
            (None, Some(i)) => Unexpected::Signed(i),
            _ => Unexpected::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

impl ReadFields for StatsEntry<'static> {
    const NAME: &'static str = "struct StatsEntry";

    fn read_field(&mut self, key: &str, value: Value) -> Result<(), Error> {
        match key {
            "name" => self.name = plain(value)?,
            "packets" => self.packets = plain(value)?,
            "rate_bytes_per_s" => self.rate_bytes_per_s = plain(value)?,
            "current_file" => self.current_file = plain(value)?,
            "current_file_bytes" => self.current_file_bytes = plain(value)?,
            "last_packet_at" => self.last_packet_at = plain(value)?,
            "records_lost" => self.records_lost = plain(value)?,
            "state" => self.state = plain(value)?,
            "origin" => self.origin = plain(value)?,
            "degraded_reason" => self.degraded_reason = plain(value)?,
            "kernel_drops" => self.kernel_drops = plain(value)?,
            "connected" => self.connected = plain(value)?,
            "last_error" => self.last_error = plain(value)?,
            // The totals only: the streams are for the status page and `/metrics`.
            "sequence" => {
                self.sequence =
                    optional(value, object::<SequenceTotals>)?.map(|totals| SequenceReport {
                        totals,
                        streams: Vec::new(),
                        master_channels: Vec::new(),
                    })
            }
            "ship" => self.ship = optional(value, object)?,
            "forward" => self.forward = optional(value, list)?,
            _ => {}
        }
        Ok(())
    }
}

impl ReadFields for SequenceTotals {
    const NAME: &'static str = "struct SequenceTotals";

    fn read_field(&mut self, key: &str, value: Value) -> Result<(), Error> {
        match key {
            "units" => self.units = plain(value)?,
            "gaps" => self.gaps = plain(value)?,
            "missing" => self.missing = plain(value)?,
            "duplicates" => self.duplicates = plain(value)?,
            "resets" => self.resets = plain(value)?,
            "short" => self.short = plain(value)?,
            "idle" => self.idle = plain(value)?,
            "other" => self.other = plain(value)?,
            _ => {}
        }
        Ok(())
    }
}

impl ReadFields for ShipStatus {
    const NAME: &'static str = "struct ShipStatus";

    fn read_field(&mut self, key: &str, value: Value) -> Result<(), Error> {
        match key {
            "pending_files" => self.pending_files = plain(value)?,
            "pending_bytes" => self.pending_bytes = plain(value)?,
            "oldest_pending_age_s" => self.oldest_pending_age_s = plain(value)?,
            "shipped" => self.shipped = plain(value)?,
            "failures" => self.failures = plain(value)?,
            "dropped" => self.dropped = plain(value)?,
            "refused" => self.refused = plain(value)?,
            "last_error" => self.last_error = plain(value)?,
            "last_error_at" => self.last_error_at = plain(value)?,
            "next_attempt_at" => self.next_attempt_at = plain(value)?,
            "running" => self.running = plain(value)?,
            _ => {}
        }
        Ok(())
    }
}

impl ReadFields for ForwardStatus {
    const NAME: &'static str = "struct ForwardStatus";

    fn read_field(&mut self, key: &str, value: Value) -> Result<(), Error> {
        match key {
            "target" => self.target = plain(value)?,
            "state" => self.state = plain(value)?,
            "units_dropped" => self.units_dropped = plain(value)?,
            "last_error" => self.last_error = plain(value)?,
            _ => {}
        }
        Ok(())
    }
}

impl ReadFields for CapturerEntry<'static> {
    const NAME: &'static str = "struct CapturerEntry";

    fn read_field(&mut self, key: &str, value: Value) -> Result<(), Error> {
        match key {
            "address" => self.address = plain(value)?,
            "key" => self.key = plain(value)?,
            "conn_type" => self.conn_type = plain(value)?,
            "state" => self.state = plain(value)?,
            "next_attempt_at" => self.next_attempt_at = plain(value)?,
            "error" => self.error = plain(value)?,
            _ => {}
        }
        Ok(())
    }
}

impl ReadFields for HandlerFiles<'static> {
    const NAME: &'static str = "struct HandlerFiles";

    fn read_field(&mut self, key: &str, value: Value) -> Result<(), Error> {
        match key {
            "address" => self.address = plain(value)?,
            "files" => self.files = list(value)?,
            "name" => self.name = plain(value)?,
            _ => {}
        }
        Ok(())
    }
}

impl ReadFields for FileEntry<'static> {
    const NAME: &'static str = "struct FileEntry";

    fn read_field(&mut self, key: &str, value: Value) -> Result<(), Error> {
        match key {
            "path" => self.path = plain(value)?,
            "bytes" => self.bytes = plain(value)?,
            "records" => self.records = plain(value)?,
            "first_record_at" => self.first_record_at = plain(value)?,
            "last_record_at" => self.last_record_at = plain(value)?,
            "state" => self.state = plain(value)?,
            "clock" => self.clock = plain(value)?,
            "clock_max_error_us" => self.clock_max_error_us = plain(value)?,
            _ => {}
        }
        Ok(())
    }
}

impl ReadFields for Rotated<'static> {
    const NAME: &'static str = "struct Rotated";

    fn read_field(&mut self, key: &str, value: Value) -> Result<(), Error> {
        match key {
            "address" => self.address = plain(value)?,
            "log_file_path" => self.log_file_path = plain(value)?,
            "name" => self.name = plain(value)?,
            "previous_file" => self.previous_file = plain(value)?,
            _ => {}
        }
        Ok(())
    }
}

impl<E: ReadFields> ReadFields for CapturerStopped<'static, E> {
    const NAME: &'static str = "struct CapturerStopped";

    fn read_field(&mut self, key: &str, value: Value) -> Result<(), Error> {
        match key {
            "address" => self.address = plain(value)?,
            "conn_type" => self.conn_type = plain(value)?,
            "key" => self.key = plain(value)?,
            "stopped" => self.stopped = list(value)?,
            _ => {}
        }
        Ok(())
    }
}

impl ReadFields for EntrySummary {
    const NAME: &'static str = "struct EntrySummary";

    fn read_field(&mut self, key: &str, value: Value) -> Result<(), Error> {
        match key {
            "handler" => self.handler = object(value)?,
            "conn_type" => self.conn_type = plain(value)?,
            "address" => self.address = plain(value)?,
            _ => {}
        }
        Ok(())
    }
}

impl ReadFields for HandlerSummary {
    const NAME: &'static str = "struct HandlerSummary";

    fn read_field(&mut self, key: &str, value: Value) -> Result<(), Error> {
        match key {
            "name" => self.name = plain(value)?,
            "log_dir" => self.log_dir = plain(value)?,
            "file_name_pattern" => self.file_name_pattern = plain(value)?,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde_json::json;

    /// `answer` written as the server writes it, read back as the client reads
    /// it, and written again: the same JSON if every field set was read.
    fn reads_back<T: Serialize + ReadFields>(answer: &T) {
        let written = serde_json::to_value(answer).unwrap();
        let Value::Object(map) = written.clone() else {
            panic!("not an object: {written}");
        };
        let back: T = from_object(map).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), written);
    }

    /// Every field the client shows is set (to something other than empty):
    /// a key renamed on one side only is not read back.
    #[test]
    fn every_field_the_client_shows_reads_back() {
        let ship = ShipStatus {
            pending_files: 1,
            pending_bytes: 2,
            oldest_pending_age_s: Some(3),
            shipped: 4,
            failures: 5,
            dropped: 6,
            refused: 7,
            last_error: Some("exit status: 1".into()),
            last_error_at: Some("2026-11-28T10:00:00.000000Z".into()),
            next_attempt_at: Some("2026-11-28T10:00:40.000000Z".into()),
            running: true,
        };
        let totals = SequenceTotals {
            units: 1,
            gaps: 2,
            missing: 3,
            duplicates: 4,
            resets: 5,
            short: 6,
            idle: 7,
            other: 8,
        };
        let forward = ForwardStatus {
            target: "udp://127.0.0.1:9000".into(),
            state: "error".into(),
            units_dropped: 9,
            last_error: Some("refused".into()),
            ..ForwardStatus::default()
        };
        reads_back(&StatsEntry {
            name: "tlm".into(),
            packets: 1,
            rate_bytes_per_s: 2.5,
            current_file: Some("/d/a.pcap".into()),
            current_file_bytes: 3,
            last_packet_at: Some("2026-11-28T09:59:57.000000Z".into()),
            records_lost: 4,
            state: "degraded".into(),
            origin: "restored".into(),
            degraded_reason: Some("cannot write".into()),
            kernel_drops: 5,
            connected: Some(true),
            last_error: Some(Some("connection refused".into())),
            sequence: Some(SequenceReport {
                totals,
                streams: Vec::new(),
                master_channels: Vec::new(),
            }),
            ship: Some(ship),
            forward: Some(vec![forward]),
            ..StatsEntry::default()
        });
        reads_back(&CapturerEntry {
            address: ("10.0.0.5".into(), 9000),
            key: "['10.0.0.5', 9000]".into(),
            conn_type: "tcp".into(),
            state: "backoff".into(),
            next_attempt_at: Some("2026-11-28T10:00:02.000000Z".into()),
            error: Some("connection refused".into()),
            ..CapturerEntry::default()
        });
        reads_back(&HandlerFiles {
            address: ("".into(), 8500),
            files: vec![FileEntry {
                path: "/d/a.pcap".into(),
                bytes: 1,
                records: Some(2),
                first_record_at: Some("2026-11-28T09:00:00.000001Z".into()),
                last_record_at: Some("2026-11-28T09:59:59.999999Z".into()),
                state: "closed".into(),
                clock: "synchronized".into(),
                clock_max_error_us: Some(3),
            }],
            name: "tlm".into(),
        });
        reads_back(&Rotated {
            address: ("".into(), 8500),
            log_file_path: "/d/2.pcap".into(),
            name: "tlm".into(),
            previous_file: Some("/d/1.pcap".into()),
        });
        reads_back(&CapturerStopped {
            address: ("".into(), 8500),
            conn_type: "udp".into(),
            key: "['', 8500]".into(),
            stopped: vec![EntrySummary {
                handler: HandlerSummary {
                    name: "tlm".into(),
                    log_dir: "/d".into(),
                    file_name_pattern: "{name}.pcap".into(),
                },
                conn_type: "udp".into(),
                address: ("".into(), 8500),
            }],
        });
    }

    /// A field of the wrong shape is serde's error, the first in key order.
    #[test]
    fn a_wrong_field_is_serdes_error() {
        let error = |answer: Value| {
            let Value::Object(map) = answer else {
                panic!("not an object")
            };
            from_object::<StatsEntry>(map).unwrap_err().to_string()
        };
        assert_eq!(
            error(json!({"packets": -1, "name": 5})),
            "invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            error(json!({"packets": -1})),
            "invalid value: integer `-1`, expected u64"
        );
        assert_eq!(
            error(json!({"ship": "x"})),
            r#"invalid type: string "x", expected struct ShipStatus"#
        );
        assert_eq!(
            error(json!({"forward": {}})),
            "invalid type: map, expected a sequence"
        );
        assert_eq!(
            error(json!({"forward": [1.5]})),
            "invalid type: floating point `1.5`, expected struct ForwardStatus"
        );
        let read = |answer: Value| {
            let Value::Object(map) = answer else {
                panic!("not an object")
            };
            from_object::<StatsEntry>(map).unwrap()
        };
        let empty = read(json!({"ship": null, "forward": null, "sequence": null, "other": [1]}));
        assert!(empty.ship.is_none() && empty.forward.is_none() && empty.sequence.is_none());
    }
}
