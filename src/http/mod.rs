//! The hand-rolled HTTP/1.1 server of the management API.
//!
//! - [`request`]: request framing (bytes in, requests or a refusal out), pure;
//! - [`origin`]: the `Host` and `Origin` checks against web pages, pure;
//! - [`form`]: body decoders (urlencoded, multipart, JSON) into one field map, pure;
//! - [`response`]: responses to bytes, pure;
//! - [`server`]: the listener and connections on the event loop: non-blocking
//!   reads and writes, keep-alive, pipelining with back-pressure (one answer
//!   beyond a low-water mark per connection, a budget of answer bytes for all
//!   of them, turns taken in order), limits, timeouts, and room made for a
//!   newcomer by closing an unused connection when every slot is taken.

pub mod body;
pub mod form;
pub mod origin;
pub mod request;
pub mod response;
pub mod server;
