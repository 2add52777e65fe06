//! The hand-rolled HTTP/1.1 server of the management API.
//!
//! - [`request`]: request framing (bytes in, requests or a refusal out), pure;
//! - [`origin`]: the `Host` and `Origin` checks against web pages, pure;
//! - [`form`]: body decoders (urlencoded, multipart, JSON) into one field map, pure;
//! - [`response`]: responses to bytes, pure;
//! - [`body`]: answers produced in pieces as the socket drains (a cursor over
//!   any source, asked for the next piece), chunked on the wire, pure;
//! - [`service`]: the [`service::Service`] trait the API implements, what the
//!   server asks for answers and their pieces;
//! - [`limits`]: the limits per connection and across connections;
//! - [`server`]: the listener and connections on the event loop: non-blocking
//!   reads and writes, keep-alive, pipelining with back-pressure (one answer
//!   or piece beyond a low-water mark per connection, a budget of pieces for
//!   all of them, turns taken in order), limits, timeouts, and room made for a
//!   newcomer by closing an unused connection when every slot is taken; one
//!   connection's buffers and driving are in `connection`.

pub mod body;
mod connection;
pub mod form;
pub mod limits;
pub mod origin;
pub mod request;
pub mod response;
pub mod server;
pub mod service;
