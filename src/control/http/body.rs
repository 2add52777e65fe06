//! Answers produced in pieces as the socket drains, sans I/O.
//!
//! A large answer (`GET /metrics` of thousands of handlers, `GET /stats`, a
//! handler's file list) is not encoded whole: its `Response` carries a
//! [`Cursor`], the state of a walk over its source (which handler comes next,
//! which file), and the server asks the `Service` for the next piece, about
//! [`PIECE`] bytes, only when the connection's unwritten output is below its
//! low-water mark, reading the source as it is at that moment. So a connection
//! holds one piece of such an answer, never the answer, and the server bounds
//! pieces in flight rather than answers. Any source fits (a cursor is any
//! `'static` state): memory, or a file read from an offset.
//!
//! The source may change between pieces (handlers come and go): a producer
//! keeps its own output valid by walking its source by id and skipping ids
//! gone, so the document stays valid JSON or Prometheus text.
//!
//! On the wire a body in pieces is `Transfer-Encoding: chunked` for HTTP/1.1
//! ([`chunk`], [`LAST_CHUNK`]), or runs to the connection's end for HTTP/1.0.

use std::any::Any;

/// About how many bytes a producer appends per piece (it may pass it by one
/// entry: a handler's lines, one JSON object).
pub const PIECE: usize = 64 * 1024;

/// The state of a body produced in pieces: a cursor over its source, known to
/// the `Service` that made it; the server only carries it between pieces.
pub struct Cursor(Box<dyn Any>);

impl Cursor {
    /// Wraps the state of a walk.
    pub fn new<T: Any>(state: T) -> Cursor {
        Cursor(Box::new(state))
    }

    /// The state, if it is a `T`.
    pub fn get_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.0.downcast_mut()
    }
}

/// How a body in pieces is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// HTTP/1.1: each piece a chunk, then [`LAST_CHUNK`].
    Chunked,
    /// HTTP/1.0: the body runs to the end of the connection.
    ToClose,
}

/// The end of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends `piece` to `out` as one chunk (nothing for an empty piece, which
/// would read as the last chunk).
pub fn chunk(piece: &[u8], out: &mut Vec<u8>) {
    if piece.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
    out.extend_from_slice(piece);
    out.extend_from_slice(b"\r\n");
}

/// Frames `piece` for the wire as `framing` says.
pub fn frame(piece: Vec<u8>, framing: Framing) -> Vec<u8> {
    match framing {
        Framing::ToClose => piece,
        Framing::Chunked => {
            let mut out = Vec::with_capacity(piece.len() + 16);
            chunk(&piece, &mut out);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_is_one_chunk_with_its_length_in_hex() {
        assert_eq!(
            frame(b"hello, world".to_vec(), Framing::Chunked),
            b"c\r\nhello, world\r\n"
        );
        assert_eq!(frame(vec![b'x'; 300], Framing::Chunked)[..5], *b"12c\r\n");
        assert_eq!(
            frame(Vec::new(), Framing::Chunked),
            b"",
            "an empty piece is not the last chunk"
        );
        assert_eq!(frame(b"raw".to_vec(), Framing::ToClose), b"raw");
    }

    #[test]
    fn a_cursor_gives_back_its_state_by_type() {
        let mut c = Cursor::new(7usize);
        *c.get_mut::<usize>().unwrap() += 1;
        assert_eq!(c.get_mut::<usize>(), Some(&mut 8));
        assert!(c.get_mut::<u32>().is_none());
    }
}
