//! One connection of the management server: its buffers, and how it is
//! driven (read, answered, written) without blocking; the server
//! ([`super::server`]) owns the slots, the queue of turns and the limits
//! across connections. Invariants of one connection: its next answer, or the
//! next piece of an answer in pieces ([`super::body`]), is queued only while
//! less than [`OUTPUT_LOW_WATER`] of its output is unwritten; requests are read
//! only then; answers are written in order; each piece is freed once written.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use mio::net::TcpStream;

use super::body::{self, Cursor, Framing};
use super::limits::{ANSWER_BUDGET, OUTPUT_LOW_WATER, READ_AHEAD, TURN};
use super::request::{self, Parsed, MAX_BODY, MAX_HEAD};
use super::response::Response;
use super::service::Service;

/// Most request bytes buffered on one connection (a whole request always fits).
const MAX_PENDING_INPUT: usize = MAX_HEAD + MAX_BODY + 4096;

/// An open connection.
pub(super) struct Connection {
    pub(super) stream: TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) input: Vec<u8>,
    /// Encoded answers, in pieces (a head, a body moved in without a copy); the
    /// first `sent` bytes of the front piece are already written.
    pub(super) output: VecDeque<Vec<u8>>,
    pub(super) sent: usize,
    /// Bytes of the pieces in `output`, written or not: what the connection
    /// holds in memory for its answers.
    pub(super) held: usize,
    /// The answer being produced in pieces (see [`super::body`]): no other
    /// request is answered before it is whole.
    pub(super) body: Option<(Cursor, Framing)>,
    /// A piece or a request waits for a turn (see [`super::server::Server::resume`]).
    pub(super) waiting: bool,
    /// When the first byte of the request now being received arrived.
    pub(super) request_started: Option<Instant>,
    /// Last time bytes moved in either direction.
    pub(super) last_progress: Instant,
    pub(super) continue_sent: bool,
    /// Close once the output is written.
    pub(super) closing: bool,
    pub(super) peer_done: bool,
    /// Its last answer was a 401: it has no right to a slot while others wait.
    pub(super) refused_auth: bool,
}

impl Connection {
    /// A connection accepted at `now`.
    pub(super) fn new(stream: TcpStream, peer: SocketAddr, now: Instant) -> Connection {
        Connection {
            stream,
            peer,
            input: Vec::new(),
            output: VecDeque::new(),
            sent: 0,
            held: 0,
            body: None,
            waiting: false,
            request_started: None,
            last_progress: now,
            continue_sent: false,
            closing: false,
            peer_done: false,
            refused_auth: false,
        }
    }

    /// Answer bytes not written yet.
    pub(super) fn unsent(&self) -> usize {
        self.held - self.sent
    }

    /// Appends a piece to the output.
    pub(super) fn queue(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.held += bytes.len();
            self.output.push_back(bytes);
        }
    }

    /// Appends an answer: its head, then its body as it is (not copied), or
    /// keeps its cursor to produce the body in pieces.
    pub(super) fn queue_response(&mut self, response: Response, http11: bool) {
        let framing = response.framing(http11);
        let mut head = Vec::with_capacity(256);
        response.encode_head(&mut head, framing);
        self.queue(head);
        self.queue(response.body);
        if let (Some(cursor), Some(framing)) = (response.pieces, framing) {
            self.body = Some((cursor, framing));
        }
    }

    /// Appends the next piece of the answer in pieces; the end of the body
    /// after its last. Returns the bytes queued.
    pub(super) fn queue_piece(&mut self, service: &mut dyn Service) -> usize {
        let Some((cursor, framing)) = self.body.as_mut() else {
            return 0;
        };
        let framing = *framing;
        let mut piece = Vec::with_capacity(body::PIECE + body::PIECE / 8);
        let more = service.produce(cursor, &mut piece);
        let len = piece.len();
        self.queue(body::frame(piece, framing));
        if !more {
            self.body = None;
            match framing {
                Framing::Chunked => self.queue(body::LAST_CHUNK.to_vec()),
                Framing::ToClose => self.closing = true,
            }
        }
        len
    }

    /// Marks `n` more bytes written, dropping the pieces written whole.
    pub(super) fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.output.front() else {
                return;
            };
            let rest = front.len() - self.sent;
            if n < rest {
                self.sent += n;
                return;
            }
            n -= rest;
            self.held -= front.len();
            self.sent = 0;
            self.output.pop_front();
        }
    }

    /// Whether to read more: the connection can be served now (see
    /// [`OUTPUT_LOW_WATER`]) and the input holds less than [`READ_AHEAD`], or
    /// less than the whole request at its front.
    pub(super) fn wants_input(&self) -> bool {
        if self.peer_done || self.closing || self.unsent() >= OUTPUT_LOW_WATER {
            return false;
        }
        self.input.len() < READ_AHEAD
            || (self.input.len() < MAX_PENDING_INPUT
                && matches!(request::parse(&self.input), Parsed::Partial { .. }))
    }

    /// Since when the connection holds its slot without use, and how.
    pub(super) fn unused(&self) -> (Instant, &'static str) {
        unused_since(self.unsent(), self.request_started, self.last_progress)
    }

    /// Before the caller closes it: a 408 if a request is half received and
    /// nothing else is being written (best effort, without blocking).
    pub(super) fn give_up(&mut self, why: String, now: Instant) {
        if self.request_started.is_some() && self.unsent() == 0 && self.body.is_none() {
            let mut r = Response::error(408, why);
            r.close = true;
            self.queue_response(r, true);
            let _ = write_out(self, now);
        }
    }
}

/// Since when a connection holds its slot without use, from its state: its client
/// not reading (answers unwritten) since the last bytes moved; a request not
/// whole since its first byte; otherwise idle since the last bytes moved (the
/// last answer written, or the connection opened). With why, for the log.
pub(super) fn unused_since(
    unsent: usize,
    request_started: Option<Instant>,
    last_progress: Instant,
) -> (Instant, &'static str) {
    if unsent > 0 {
        return (last_progress, "not reading its answers");
    }
    match request_started {
        Some(first_byte) => (first_byte, "request not whole"),
        None => (last_progress, "idle"),
    }
}

/// Whether a connection may be served now, from what the others hold.
#[derive(Clone, Copy)]
pub(super) struct Budget {
    /// Answer bytes the other connections hold.
    pub(super) others: usize,
    /// No connection waits ahead of this one.
    pub(super) first: bool,
}

impl Budget {
    /// Whether a connection holding `own` bytes of answers may produce the
    /// next piece of an answer in pieces: nobody waits ahead and all hold less
    /// than [`ANSWER_BUDGET`].
    fn open(self, own: usize) -> bool {
        self.first && self.others + own < ANSWER_BUDGET
    }
}

/// What became of a connection driven.
pub(super) enum Driven {
    Closed,
    /// Still open; the answer bytes it queued.
    Open {
        answered: usize,
    },
}

/// Reads, answers and writes as far as possible without blocking, at `now`; a
/// piece the `budget` does not allow yet, or a request or piece past [`TURN`],
/// sets `c.waiting`.
pub(super) fn drive(
    c: &mut Connection,
    budget: Budget,
    service: &mut dyn Service,
    now: Instant,
) -> Driven {
    let mut answered = 0;
    loop {
        let mut progressed = false;
        // Read what the kernel has, while the connection can be served.
        while c.wants_input() {
            let mut chunk = [0u8; 16 * 1024];
            let room = (MAX_PENDING_INPUT - c.input.len()).min(chunk.len());
            match c.stream.read(&mut chunk[..room]) {
                Ok(0) => c.peer_done = true,
                Ok(n) => {
                    c.input.extend_from_slice(&chunk[..n]);
                    c.last_progress = now;
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Driven::Closed,
            }
        }
        // Answer while earlier answers are (almost) written: a pipelined burst
        // queues one answer, or one piece of an answer in pieces, at a time;
        // up to TURN bytes per turn; a piece only while all connections
        // together hold less than the budget (a whole answer is small: it
        // never waits for the budget, so /health is answered under pressure).
        c.waiting = false;
        while c.unsent() < OUTPUT_LOW_WATER {
            if c.body.is_some() {
                if answered >= TURN || !budget.open(c.held) {
                    c.waiting = true;
                    break;
                }
                // A piece counts as a whole one even when it came out
                // short (an extract that read files and kept little): the
                // turn ends after reading, not after answering, enough.
                answered += c.queue_piece(service).max(body::PIECE);
                progressed = true;
                continue;
            }
            if c.closing || c.input.is_empty() {
                break;
            }
            match request::parse(&c.input) {
                Parsed::Complete(..) if answered >= TURN => {
                    // Parsed again once it is this connection's turn.
                    c.waiting = true;
                    break;
                }
                Parsed::Partial { expects_continue } => {
                    if expects_continue && !c.continue_sent {
                        c.queue(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec());
                        c.continue_sent = true;
                    }
                    if c.request_started.is_none() {
                        c.request_started = Some(now);
                    }
                    break;
                }
                Parsed::Complete(req, used) => {
                    c.input.drain(..used);
                    c.request_started = None;
                    c.continue_sent = false;
                    let mut response = service.respond(&req);
                    c.refused_auth = response.status == 401;
                    response.close |= !req.keep_alive;
                    c.closing = response.close;
                    answered += response.body.len();
                    c.queue_response(response, req.http11);
                    progressed = true;
                }
                Parsed::Refused(refusal) => {
                    let mut response = Response::error(refusal.status, refusal.message);
                    response.close = true;
                    c.closing = true;
                    c.queue_response(response, true);
                    progressed = true;
                }
            }
        }
        match write_out(c, now) {
            Ok(wrote) => progressed |= wrote,
            Err(_) => return Driven::Closed,
        }
        if c.input.is_empty() && c.input.capacity() > 2 * READ_AHEAD {
            // A large body was here once; an idle connection keeps no big buffer.
            c.input = Vec::new();
        }
        if c.unsent() == 0
            && c.body.is_none()
            && (c.closing || (c.peer_done && !has_whole_request(c)))
        {
            let _ = c.stream.shutdown(Shutdown::Write);
            return Driven::Closed;
        }
        // Output left means the socket is full: its writable event comes back
        // here, and the loop turns to other connections meanwhile (looping on
        // while the client takes a few bytes at a time would hold the loop).
        if !progressed || c.unsent() > 0 {
            return Driven::Open { answered };
        }
    }
}

fn has_whole_request(c: &Connection) -> bool {
    !c.input.is_empty() && !matches!(request::parse(&c.input), Parsed::Partial { .. })
}

/// Most output pieces handed to one `writev`.
const MAX_PIECES: usize = 16;

/// Writes queued output until done or `WouldBlock`, several pieces per
/// `writev`, at `now`. Returns whether bytes moved. Memory follows what is left to write:
/// each piece is freed once written whole (an idle connection keeps none).
pub(super) fn write_out(c: &mut Connection, now: Instant) -> io::Result<bool> {
    let mut written = 0;
    while c.unsent() > 0 {
        let mut pieces = [IoSlice::new(&[]); MAX_PIECES];
        for (i, piece) in c.output.iter().take(MAX_PIECES).enumerate() {
            pieces[i] = IoSlice::new(if i == 0 { &piece[c.sent..] } else { piece });
        }
        let count = c.output.len().min(MAX_PIECES);
        match c.stream.write_vectored(&pieces[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.consume(n);
                written += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if c.output.is_empty() && c.output.capacity() > MAX_PIECES {
        c.output = VecDeque::new();
    }
    if written > 0 {
        c.last_progress = now;
    }
    Ok(written > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_budget_serves_the_first_in_line_below_it() {
        let open = |others, first, own| Budget { others, first }.open(own);
        assert!(open(0, true, 0), "one connection alone is always served");
        assert!(open(ANSWER_BUDGET - 2, true, 1));
        assert!(!open(ANSWER_BUDGET - 1, true, 1), "at the budget: waits");
        assert!(!open(ANSWER_BUDGET, true, 0));
        assert!(!open(0, false, 0), "behind another: waits its turn");
    }

    #[test]
    fn unused_since_the_first_byte_of_a_request_not_whole() {
        let t0 = crate::clock::Clock::System.read().mono;
        let first_byte = t0 + Duration::from_secs(1);
        let last_byte = t0 + Duration::from_secs(5);
        // A slow request keeps its slot from its first byte, however it trickles.
        assert_eq!(
            unused_since(0, Some(first_byte), last_byte),
            (first_byte, "request not whole")
        );
        assert_eq!(unused_since(0, None, last_byte), (last_byte, "idle"));
        // Answers unwritten: the client has not read since the last bytes moved.
        assert_eq!(
            unused_since(10, Some(first_byte), last_byte),
            (last_byte, "not reading its answers")
        );
    }
}
