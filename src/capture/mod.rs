//! Capture sources: the sockets capturers read from. Each is a `mio` source on the
//! one event loop; none may block it.

pub mod udp;
