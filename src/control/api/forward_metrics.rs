//! The `/metrics` families of live forwarding: per forward target of each
//! handler, labelled as its handler plus `target` (its URL). Written by
//! `metrics.rs`'s walk, handler by handler, like every per-handler family.

use std::fmt::Write;

use crate::manager::handler::Handler;
use crate::relay::Target;

/// A forward family: name, type, help, the value of one target.
type ForwardMetric = (&'static str, &'static str, &'static str, fn(&Target) -> u64);

/// The forward families, in the order they are written.
pub(super) const FORWARD: [ForwardMetric; 3] = [
    (
        "bsc_forward_units_total",
        "counter",
        "Units sent to a forward target.",
        |t| t.counters().units_sent,
    ),
    (
        "bsc_forward_dropped_total",
        "counter",
        "Units a forward target did not get: its queue was full, or a dying connection cut them.",
        |t| t.counters().units_dropped,
    ),
    (
        "bsc_forward_connected",
        "gauge",
        "Whether a forward target can be sent to now (a TCP connection up; a UDP socket open).",
        |t| u64::from(t.is_connected()),
    ),
];

/// The `# HELP` and `# TYPE` lines of forward family `i`.
pub(super) fn head(i: usize, out: &mut String) {
    let (name, kind, help, _) = FORWARD[i];
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The series of forward family `i` for handler `h` (`labels`: its labels,
/// escaped), one per target.
pub(super) fn lines(i: usize, h: &Handler, labels: &str, out: &mut String) {
    let (name, _, _, value) = FORWARD[i];
    for t in h.relay().map_or(&[][..], |r| r.targets()) {
        // A URL holds no quote, backslash or line end (the config refuses them).
        let _ = writeln!(
            out,
            "{name}{{{labels},target=\"{}\"}} {}",
            t.spec().url(),
            value(t)
        );
    }
}
