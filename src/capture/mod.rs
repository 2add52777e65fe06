//! Capture sources: the sockets capturers read from. Each is a `mio` source on the
//! one event loop; none may block it.
//!
//! - [`capturer`]: one socket and its read path (units to a callback);
//! - [`udp`]: bound (or multicast) UDP sockets;
//! - [`tcp`]: a TCP client that connects to its peer and reconnects forever;
//! - [`ethernet`]: AF_PACKET raw sockets on one interface.

pub mod capturer;
pub mod ethernet;
pub mod tcp;
pub mod udp;
