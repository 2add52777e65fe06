//! The management listener and its connections, as sources of the one event loop.
//!
//! A connection reads what the kernel has, frames requests with
//! [`super::request::parse`], hands each to the `respond` callback (the API) and
//! queues the answer; answers are written without blocking, partial writes kept
//! for the next writable event. Invariants:
//! - at most [`MAX_CONNECTIONS`] are open. When all are taken, a newcomer closes
//!   the connection that has held its slot without use the longest, if that is at
//!   least [`GRACE`]: no whole request [`GRACE`] after its first byte (or after the
//!   connection opened), idle since its last answer, or its client not reading
//!   its answers; a connection whose last answer was a 401 (with a token set, a
//!   client without it) is closed first, at once. Only if none qualifies, the
//!   newcomer gets a 503 and is closed. So sockets that connect and send nothing
//!   hold the server for [`GRACE`] at most, and unauthorized ones not at all;
//! - a connection is served its next request only while less than
//!   [`OUTPUT_LOW_WATER`] of its answers is unwritten, and reads requests only
//!   then: its unwritten output is at most [`OUTPUT_LOW_WATER`] plus one answer
//!   (the one that crossed it), however many requests it pipelines, and a client
//!   that never reads cannot grow bsc's memory or block the loop;
//! - **all connections together** hold at most [`ANSWER_BUDGET`] of encoded
//!   answers plus one answer (the one that crossed it): a connection whose next
//!   request would be answered while they hold [`ANSWER_BUDGET`] or more waits,
//!   its request unparsed, in a queue of waiting connections ([`Server::resume`]);
//!   as answers are written or connections close, the queue is served in order,
//!   without waiting for a new readiness event (mio is edge-triggered). One
//!   connection alone is always served (its own output is below the budget), and
//!   a waiting connection is neither timed out nor evicted: it waits for the
//!   server, not for its client; while any waits, a connection that holds
//!   answers and has read none of them for [`STALL`] is closed. So 64 clients
//!   pipelining `GET /metrics` of 1,000 handlers (2.2 MB each) and reading
//!   slowly hold a few MiB, not 64 answers;
//! - a connection answers at most [`TURN`] bytes per turn of the loop; with
//!   more pipelined it waits behind the others (the same queue), so a client
//!   that reads fast cannot hold the loop while others, or capture, wait;
//! - a connection buffers at most [`READ_AHEAD`] of pipelined requests beyond the
//!   one it needs whole (a request itself may be up to `MAX_HEAD + MAX_BODY`);
//! - a request that is not whole [`TIMEOUT`] after its first byte gets a 408 and the
//!   connection closes; a connection idle, or whose client does not read, for
//!   [`TIMEOUT`] is closed;
//! - refusals and evictions are logged through [`crate::log::limited`]: a flood of
//!   connections writes a line per [`crate::log::REPEAT_WINDOW`], not one each.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::body::{self, Cursor, Framing, Service};
use super::request::{self, Parsed, MAX_BODY, MAX_HEAD};
use super::response::Response;
use crate::capture::resolve::resolve;
use crate::log::{self, Level};

/// Most connections open at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a request may take to arrive, and how long a connection may idle.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection keeps its slot without use once every slot is taken and
/// another connection arrives (see the module invariants).
pub const GRACE: Duration = Duration::from_secs(2);
/// A connection is served (and read) only while less than this much of its
/// answers is unwritten.
pub const OUTPUT_LOW_WATER: usize = 64 * 1024;
/// Encoded answer bytes all connections together may hold before a connection
/// waits to be served (see the module invariants).
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
/// Most request bytes buffered on one connection (a whole request always fits).
const MAX_PENDING_INPUT: usize = MAX_HEAD + MAX_BODY + 4096;

/// Token of the listener.
pub const LISTENER: Token = Token(1);
/// Tokens of connections are `CONNECTION_TOKEN_BASE + slot`.
const CONNECTION_TOKEN_BASE: usize = 1 << 28;
/// How long a refused connection is kept (its input drained) so the client reads
/// the 503 instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
/// Most refused connections lingering at once; past that the oldest is closed.
const MAX_LINGERING: usize = 64;

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    input: Vec<u8>,
    /// Encoded answers, in pieces (a head, a body moved in without a copy); the
    /// first `sent` bytes of the front piece are already written.
    output: VecDeque<Vec<u8>>,
    sent: usize,
    /// Bytes of the pieces in `output`, written or not: what the connection
    /// holds in memory for its answers.
    held: usize,
    /// The answer being produced in pieces (see [`super::body`]): no other
    /// request is answered before it is whole.
    body: Option<(Cursor, Framing)>,
    /// A piece or a request waits for a turn (see [`Server::resume`]).
    waiting: bool,
    /// When the first byte of the request now being received arrived.
    request_started: Option<Instant>,
    /// Last time bytes moved in either direction.
    last_progress: Instant,
    continue_sent: bool,
    /// Close once the output is written.
    closing: bool,
    peer_done: bool,
    /// Its last answer was a 401: it has no right to a slot while others wait.
    refused_auth: bool,
}

impl Connection {
    /// Answer bytes not written yet.
    fn unsent(&self) -> usize {
        self.held - self.sent
    }

    /// Appends a piece to the output.
    fn queue(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.held += bytes.len();
            self.output.push_back(bytes);
        }
    }

    /// Appends an answer: its head, then its body as it is (not copied), or
    /// keeps its cursor to produce the body in pieces.
    fn queue_response(&mut self, response: Response, http11: bool) {
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
    fn queue_piece(&mut self, service: &mut dyn Service) -> usize {
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
    fn consume(&mut self, mut n: usize) {
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
    fn wants_input(&self) -> bool {
        if self.peer_done || self.closing || self.unsent() >= OUTPUT_LOW_WATER {
            return false;
        }
        self.input.len() < READ_AHEAD
            || (self.input.len() < MAX_PENDING_INPUT
                && matches!(request::parse(&self.input), Parsed::Partial { .. }))
    }

    /// Since when the connection holds its slot without use, and how.
    fn unused(&self) -> (Instant, &'static str) {
        unused_since(self.unsent(), self.request_started, self.last_progress)
    }

    /// Before the caller closes it: a 408 if a request is half received and
    /// nothing else is being written (best effort, without blocking).
    fn give_up(&mut self, why: String) {
        if self.request_started.is_some() && self.unsent() == 0 && self.body.is_none() {
            let mut r = Response::error(408, why);
            r.close = true;
            self.queue_response(r, true);
            let _ = write_out(self);
        }
    }
}

/// Since when a connection holds its slot without use, from its state: its client
/// not reading (answers unwritten) since the last bytes moved; a request not
/// whole since its first byte; otherwise idle since the last bytes moved (the
/// last answer written, or the connection opened). With why, for the log.
fn unused_since(
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

/// Which connection a newcomer replaces when every slot is taken: of `unused`
/// (slot, since when unused), the one unused the longest, if that is at least
/// [`GRACE`] before `now`.
fn pick_eviction(unused: impl Iterator<Item = (usize, Instant)>, now: Instant) -> Option<usize> {
    unused
        .filter(|&(_, since)| now.saturating_duration_since(since) >= GRACE)
        .min_by_key(|&(slot, since)| (since, slot))
        .map(|(slot, _)| slot)
}

/// The listener and every open connection.
pub struct Server {
    listener: TcpListener,
    connections: Vec<Option<Connection>>,
    open: usize,
    /// Connections refused with a 503, kept until their client closes or [`LINGER`].
    lingering: Vec<(TcpStream, Instant)>,
    /// Slots of connections waiting for [`ANSWER_BUDGET`], first come first.
    waiting: VecDeque<usize>,
    pub local: SocketAddr,
}

impl Server {
    /// Binds `host:port` and registers the listener.
    pub fn bind(host: &str, port: u16, registry: &Registry) -> Result<Server, String> {
        let ip = resolve(host).map_err(|e| format!("management address {host}:{port}: {e}"))?;
        let addr = SocketAddr::new(ip, port);
        let mut listener = TcpListener::bind(addr).map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::AddrInUse {
                " (is another bsc running? set capture_manager.manager_server.port)"
            } else {
                ""
            };
            format!("cannot bind the management API on {addr}: {e}{hint}")
        })?;
        registry
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| format!("cannot watch {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        Ok(Server {
            listener,
            connections: Vec::new(),
            open: 0,
            lingering: Vec::new(),
            waiting: VecDeque::new(),
            local,
        })
    }

    /// Whether a token belongs to the server.
    pub fn owns(token: Token) -> bool {
        token == LISTENER || token.0 >= CONNECTION_TOKEN_BASE
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.open
    }

    /// Handles a readiness event of the listener or a connection.
    pub fn on_event(&mut self, token: Token, registry: &Registry, service: &mut dyn Service) {
        if token == LISTENER {
            self.accept(registry, service);
            return;
        }
        let slot = token.0 - CONNECTION_TOKEN_BASE;
        if matches!(self.connections.get(slot), Some(Some(_))) {
            let first = self.waiting.front().is_none_or(|&s| s == slot);
            self.serve(slot, first, registry, service);
        }
    }

    /// Encoded answer bytes all connections hold.
    fn held(&self) -> usize {
        self.connections.iter().flatten().map(|c| c.held).sum()
    }

    /// Drives the connection in `slot`, which may answer requests if `first`
    /// (at the front of the queue of those waiting for a turn, or none waits)
    /// and the budget allows; then closes it, queues it at the back, or takes it
    /// out of the queue. Returns the answer bytes it queued.
    fn serve(
        &mut self,
        slot: usize,
        first: bool,
        registry: &Registry,
        service: &mut dyn Service,
    ) -> usize {
        let others = self.held() - self.connections[slot].as_ref().map_or(0, |c| c.held);
        let Some(c) = self.connections[slot].as_mut() else {
            return 0;
        };
        let budget = Budget { others, first };
        let Driven::Open { answered } = drive(c, budget, service) else {
            self.close(slot, registry);
            return 0;
        };
        let waits = c.waiting;
        let queued = self.waiting.iter().position(|&s| s == slot);
        match (waits, queued) {
            (true, None) => self.waiting.push_back(slot),
            // It had its turn and wants another: behind the others.
            (true, Some(i)) if answered > 0 => {
                self.waiting.remove(i);
                self.waiting.push_back(slot);
            }
            (false, Some(i)) => {
                self.waiting.remove(i);
            }
            _ => {}
        }
        answered
    }

    /// Whether connections wait for a turn they can take now (a request after
    /// [`TURN`], or a piece the budget allows): the loop must call
    /// [`Server::resume`] without sleeping.
    pub fn has_turns(&self) -> bool {
        let requests = || {
            self.waiting.iter().any(|&s| {
                self.connections[s]
                    .as_ref()
                    .is_some_and(|c| c.body.is_none())
            })
        };
        !self.waiting.is_empty() && (self.held() < ANSWER_BUDGET || requests())
    }

    /// Gives connections waiting for a turn (a piece for [`ANSWER_BUDGET`],
    /// or anything after [`TURN`]) their turn, first come first, until about
    /// [`TURN`] bytes are answered; one that waits again goes to the back. The loop calls it once per turn while
    /// [`Server::has_turns`], since a waiting connection gets no readiness event
    /// for the bytes others free; capture goes on between turns.
    pub fn resume(&mut self, registry: &Registry, service: &mut dyn Service) {
        let mut answered = 0;
        for _ in 0..self.waiting.len() {
            let Some(&slot) = self.waiting.front() else {
                return;
            };
            if answered >= TURN {
                return;
            }
            answered += self.serve(slot, true, registry, service);
            if self.waiting.front() == Some(&slot) {
                // Still first: it waits again without having answered (a piece
                // over the budget, or a request not whole after all).
                self.waiting.pop_front();
                self.waiting.push_back(slot);
            }
        }
    }

    fn accept(&mut self, registry: &Registry, service: &mut dyn Service) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: the pending connection stays queued; the
                    // loop comes back at the next event.
                    log::limited(
                        "http-accept",
                        Level::Warn,
                        format_args!("management API: accept failed: {e}"),
                    );
                    return;
                }
            };
            if self.open >= MAX_CONNECTIONS && !self.make_room(peer, registry) {
                refuse_busy(&mut stream);
                log::limited(
                    "http-refused",
                    Level::Warn,
                    format_args!(
                        "management API: refused {peer}: {MAX_CONNECTIONS} connections open, none unused for {} s",
                        GRACE.as_secs()
                    ),
                );
                if self.lingering.len() >= MAX_LINGERING {
                    self.lingering.remove(0);
                }
                self.lingering.push((stream, Instant::now()));
                continue;
            }
            let slot = self
                .connections
                .iter()
                .position(Option::is_none)
                .unwrap_or(self.connections.len());
            let token = Token(CONNECTION_TOKEN_BASE + slot);
            if let Err(e) =
                registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            {
                log::limited(
                    "http-watch",
                    Level::Warn,
                    format_args!("management API: cannot watch {peer}: {e}"),
                );
                continue;
            }
            let conn = Connection {
                stream,
                peer,
                input: Vec::new(),
                output: VecDeque::new(),
                sent: 0,
                held: 0,
                body: None,
                waiting: false,
                request_started: None,
                last_progress: Instant::now(),
                continue_sent: false,
                closing: false,
                peer_done: false,
                refused_auth: false,
            };
            if slot == self.connections.len() {
                self.connections.push(Some(conn));
            } else {
                self.connections[slot] = Some(conn);
            }
            self.open += 1;
            // Bytes may already be waiting; the edge for them may have passed.
            self.on_event(token, registry, service);
        }
    }

    /// Every slot is taken and `newcomer` arrived: closes the connection unused
    /// the longest, if for [`GRACE`] at least. Returns whether a slot is free now.
    fn make_room(&mut self, newcomer: SocketAddr, registry: &Registry) -> bool {
        let now = Instant::now();
        // First a connection whose last answer was a 401 (it may not use the API),
        // at once; else one unused for GRACE.
        let refused = self
            .connections
            .iter()
            .enumerate()
            .filter_map(|(slot, c)| {
                let c = c.as_ref()?;
                c.refused_auth.then_some((slot, c.last_progress))
            })
            .min_by_key(|&(slot, since)| (since, slot))
            .map(|(slot, _)| slot);
        // A connection waiting for the answer budget waits for the server.
        let unused = self.connections.iter().enumerate().filter_map(|(slot, c)| {
            c.as_ref()
                .filter(|c| !c.waiting)
                .map(|c| (slot, c.unused().0))
        });
        let Some(slot) = refused.or_else(|| pick_eviction(unused, now)) else {
            return false;
        };
        // `pick_eviction` only returns slots of open connections.
        let Some(c) = self.connections[slot].as_mut() else {
            return false;
        };
        let (since, how) = c.unused();
        let secs = now.saturating_duration_since(since).as_secs();
        c.give_up(format!(
            "request not received within {} s while the server is full",
            GRACE.as_secs()
        ));
        log::limited(
            "http-evicted",
            Level::Warn,
            format_args!(
                "management API: {MAX_CONNECTIONS} connections open: closed {} ({how} for {secs} s) to make room for {newcomer}",
                c.peer
            ),
        );
        self.close(slot, registry);
        true
    }

    fn close(&mut self, slot: usize, registry: &Registry) {
        if let Some(mut c) = self.connections[slot].take() {
            let _ = registry.deregister(&mut c.stream);
            self.open -= 1;
            self.waiting.retain(|&s| s != slot);
        }
    }

    /// Closes connections that timed out (see the module invariants); a request
    /// half received gets a 408 first. Call about once a second.
    pub fn sweep(&mut self, now: Instant, registry: &Registry) {
        self.lingering.retain_mut(|(stream, since)| {
            now.duration_since(*since) < LINGER && !drained_to_eof(stream)
        });
        for slot in 0..self.connections.len() {
            let Some(c) = self.connections[slot].as_mut() else {
                continue;
            };
            if c.waiting {
                // Waiting for the server, not for its client.
                continue;
            }
            let expired = match c.request_started {
                Some(t) => now.duration_since(t) >= TIMEOUT,
                None => now.duration_since(c.last_progress) >= TIMEOUT,
            };
            // Holding answers it does not read while others wait for the budget.
            let stalling = !self.waiting.is_empty()
                && c.unsent() > 0
                && now.duration_since(c.last_progress) >= STALL;
            if stalling && !expired {
                log::limited(
                    "http-stalled",
                    Level::Warn,
                    format_args!(
                        "management API: closed {}: read none of its answers for {} s while {} waited",
                        c.peer,
                        STALL.as_secs(),
                        log::count(self.waiting.len() as u64, "connection")
                    ),
                );
            }
            if !expired && !stalling {
                continue;
            }
            c.give_up(format!(
                "request not received within {} s",
                TIMEOUT.as_secs()
            ));
            self.close(slot, registry);
        }
    }
}

/// Best effort: a 503 to a connection over the limit, and no more writing. The
/// caller keeps it open a moment (see [`LINGER`]) so it is not reset before the
/// client has read the answer.
fn refuse_busy(stream: &mut TcpStream) {
    drained_to_eof(stream);
    let mut out = Vec::new();
    let mut r = Response::error(
        503,
        format!("too many connections (at most {MAX_CONNECTIONS}); try again"),
    );
    r.close = true;
    r.encode(&mut out);
    let _ = stream.write(&out);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Reads and drops what a refused client sent. Returns whether it has closed.
fn drained_to_eof(stream: &mut TcpStream) -> bool {
    let mut scratch = [0u8; 4096];
    loop {
        match stream.read(&mut scratch) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return e.kind() != io::ErrorKind::WouldBlock,
        }
    }
}

/// Whether a connection may be served now, from what the others hold.
#[derive(Clone, Copy)]
struct Budget {
    /// Answer bytes the other connections hold.
    others: usize,
    /// No connection waits ahead of this one.
    first: bool,
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
enum Driven {
    Closed,
    /// Still open; the answer bytes it queued.
    Open {
        answered: usize,
    },
}

/// Reads, answers and writes as far as possible without blocking; a piece
/// the `budget` does not allow yet, or a request or piece past [`TURN`], sets
/// `c.waiting`.
fn drive(c: &mut Connection, budget: Budget, service: &mut dyn Service) -> Driven {
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
                    c.last_progress = Instant::now();
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
                answered += c.queue_piece(service);
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
                        c.request_started = Some(Instant::now());
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
        match write_out(c) {
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
/// `writev`. Returns whether bytes moved. Memory follows what is left to write:
/// each piece is freed once written whole (an idle connection keeps none).
fn write_out(c: &mut Connection) -> io::Result<bool> {
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
        c.last_progress = Instant::now();
    }
    Ok(written > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newcomer_replaces_the_connection_unused_the_longest_past_the_grace() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let now = at(10_000);
        // Slot 1 unused since 3 s, slot 2 since 1 s, slot 0 since 9 s ago.
        let unused = [(0, at(1_000)), (1, at(7_000)), (2, at(9_000))];
        assert_eq!(pick_eviction(unused.into_iter(), now), Some(0));
        assert_eq!(
            pick_eviction(unused[1..].iter().copied(), now),
            Some(1),
            "3 s is past the grace"
        );
        assert_eq!(
            pick_eviction(unused[2..].iter().copied(), now),
            None,
            "1 s is within the grace: the newcomer is refused instead"
        );
        assert_eq!(pick_eviction([(5, at(8_000))].into_iter(), now), Some(5));
        assert_eq!(
            pick_eviction([(4, at(1_000)), (3, at(1_000))].into_iter(), now),
            Some(3),
            "ties go to the lowest slot"
        );
        assert_eq!(pick_eviction(std::iter::empty(), now), None);
    }

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
        let t0 = Instant::now();
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
