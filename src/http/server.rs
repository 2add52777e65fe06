//! The management listener and its connections, as sources of the one event loop.
//!
//! A connection reads what the kernel has, frames requests with
//! [`super::request::parse`], hands each to the `respond` callback (the API) and
//! queues the answer; answers are written without blocking, partial writes kept
//! for the next writable event. Invariants:
//! - at most [`MAX_CONNECTIONS`] are open; one more gets a 503 and is closed;
//! - a connection never buffers more than [`MAX_PENDING_OUTPUT`] of answers: past
//!   that it stops reading requests until the client reads (so a client that never
//!   reads cannot grow bsc's memory or block the loop);
//! - a request that is not whole [`TIMEOUT`] after its first byte gets a 408 and the
//!   connection closes; a connection idle, or whose client does not read, for
//!   [`TIMEOUT`] is closed.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::request::{self, Parsed, Request, MAX_BODY, MAX_HEAD};
use super::response::Response;
use crate::capture::resolve::resolve;
use crate::warn;

/// Most connections open at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a request may take to arrive, and how long a connection may idle.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Most answer bytes queued on one connection before it stops reading requests.
pub const MAX_PENDING_OUTPUT: usize = 1 << 20;
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
    input: Vec<u8>,
    output: Vec<u8>,
    /// When the first byte of the request now being received arrived.
    request_started: Option<Instant>,
    /// Last time bytes moved in either direction.
    last_progress: Instant,
    continue_sent: bool,
    /// Close once the output is written.
    closing: bool,
    peer_done: bool,
}

/// The listener and every open connection.
pub struct Server {
    listener: TcpListener,
    connections: Vec<Option<Connection>>,
    open: usize,
    /// Connections refused with a 503, kept until their client closes or [`LINGER`].
    lingering: Vec<(TcpStream, Instant)>,
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
    pub fn on_event(
        &mut self,
        token: Token,
        registry: &Registry,
        respond: &mut dyn FnMut(&Request) -> Response,
    ) {
        if token == LISTENER {
            self.accept(registry, respond);
            return;
        }
        let slot = token.0 - CONNECTION_TOKEN_BASE;
        let alive = match self.connections.get_mut(slot) {
            Some(Some(c)) => drive(c, respond),
            _ => return,
        };
        if !alive {
            self.close(slot, registry);
        }
    }

    fn accept(&mut self, registry: &Registry, respond: &mut dyn FnMut(&Request) -> Response) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: the pending connection stays queued; the
                    // loop comes back at the next event.
                    warn!("management API: accept failed: {e}");
                    return;
                }
            };
            if self.open >= MAX_CONNECTIONS {
                refuse_busy(&mut stream);
                warn!("management API: refused {peer}: {MAX_CONNECTIONS} connections already open");
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
                warn!("management API: cannot watch {peer}: {e}");
                continue;
            }
            let conn = Connection {
                stream,
                input: Vec::new(),
                output: Vec::new(),
                request_started: None,
                last_progress: Instant::now(),
                continue_sent: false,
                closing: false,
                peer_done: false,
            };
            if slot == self.connections.len() {
                self.connections.push(Some(conn));
            } else {
                self.connections[slot] = Some(conn);
            }
            self.open += 1;
            // Bytes may already be waiting; the edge for them may have passed.
            self.on_event(token, registry, respond);
        }
    }

    fn close(&mut self, slot: usize, registry: &Registry) {
        if let Some(mut c) = self.connections[slot].take() {
            let _ = registry.deregister(&mut c.stream);
            self.open -= 1;
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
            let expired = match c.request_started {
                Some(t) => now.duration_since(t) >= TIMEOUT,
                None => now.duration_since(c.last_progress) >= TIMEOUT,
            };
            if !expired {
                continue;
            }
            if c.request_started.is_some() && c.output.is_empty() {
                let mut r = Response::error(
                    408,
                    format!("request not received within {} s", TIMEOUT.as_secs()),
                );
                r.close = true;
                r.encode(&mut c.output);
                let _ = write_out(c);
            }
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

/// Reads, answers and writes as far as possible without blocking. Returns whether
/// the connection stays open.
fn drive(c: &mut Connection, respond: &mut dyn FnMut(&Request) -> Response) -> bool {
    loop {
        let mut progressed = false;
        // Read what the kernel has, while there is room.
        while !c.peer_done && !c.closing && c.input.len() < MAX_PENDING_INPUT {
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
                Err(_) => return false,
            }
        }
        // Answer whole requests while the answers fit.
        while !c.closing && c.output.len() < MAX_PENDING_OUTPUT && !c.input.is_empty() {
            match request::parse(&c.input) {
                Parsed::Partial { expects_continue } => {
                    if expects_continue && !c.continue_sent {
                        c.output.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
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
                    let mut response = respond(&req);
                    response.close |= !req.keep_alive;
                    c.closing = response.close;
                    response.encode(&mut c.output);
                    progressed = true;
                }
                Parsed::Refused(refusal) => {
                    let mut response = Response::error(refusal.status, refusal.message);
                    response.close = true;
                    c.closing = true;
                    response.encode(&mut c.output);
                    progressed = true;
                }
            }
        }
        match write_out(c) {
            Ok(wrote) => progressed |= wrote,
            Err(_) => return false,
        }
        if c.output.is_empty() && (c.closing || (c.peer_done && !has_whole_request(c))) {
            let _ = c.stream.shutdown(Shutdown::Write);
            return false;
        }
        if !progressed {
            return true;
        }
    }
}

fn has_whole_request(c: &Connection) -> bool {
    !c.input.is_empty() && !matches!(request::parse(&c.input), Parsed::Partial { .. })
}

/// Writes queued output until done or `WouldBlock`. Returns whether bytes moved.
fn write_out(c: &mut Connection) -> io::Result<bool> {
    let mut written = 0;
    while written < c.output.len() {
        match c.stream.write(&c.output[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if written > 0 {
        c.output.drain(..written);
        c.last_progress = Instant::now();
    }
    Ok(written > 0)
}
