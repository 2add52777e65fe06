//! The management server's limits, per connection and across connections: what
//! the server ([`super::server`], whose module doc gives the invariants they
//! make) and one connection's driving (`connection.rs`) both hold to.

use std::time::Duration;

/// Most connections open at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a request may take to arrive, and how long a connection may idle.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection keeps its slot without use once every slot is taken and
/// another connection arrives (see the invariants in [`super::server`]).
pub const GRACE: Duration = Duration::from_secs(2);
/// A connection is given its next answer or piece (and read) only while less
/// than this much of its output is unwritten.
pub const OUTPUT_LOW_WATER: usize = 64 * 1024;
/// Answer bytes all connections together may hold before a connection due
/// the next piece of an answer waits (see the invariants in [`super::server`]).
pub const ANSWER_BUDGET: usize = 4 * 1024 * 1024;
/// While connections wait for [`ANSWER_BUDGET`], one that holds answers and
/// has read none of them for this long is closed. Longer than the pauses TCP
/// itself makes for a reader with a tiny receive buffer (zero-window probes),
/// shorter than [`TIMEOUT`], so clients that never read hold the others up for
/// a few seconds per batch, not ten.
pub const STALL: Duration = Duration::from_secs(5);
/// Answer bytes a connection queues per turn; with more pipelined it waits
/// for its next turn, behind the others (so one fast client cannot hold the
/// loop while others wait, nor delay capture).
pub const TURN: usize = OUTPUT_LOW_WATER;
/// Pipelined request bytes read ahead of the request being served.
pub const READ_AHEAD: usize = 16 * 1024;
