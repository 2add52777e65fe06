//! What the server serves: the one interface between the HTTP server and the
//! API it carries (the event loop implements it over the manager).

use super::body::Cursor;
use super::request::Request;
use super::response::Response;

/// What answers the server's requests (the API, over the manager).
pub trait Service {
    /// Answers one request: a whole body, or a head whose body follows in
    /// pieces ([`Response::pieces`]).
    fn respond(&mut self, req: &Request) -> Response;

    /// Appends the next piece of the body `cursor` walks (about [`PIECE`](super::body::PIECE)
    /// bytes) to `out`, from the source as it is now. Returns whether more
    /// follows; `false` once the body is complete, the last piece appended.
    fn produce(&mut self, cursor: &mut Cursor, out: &mut Vec<u8>) -> bool;
}
