//! The management listener and its connections, as sources of the one event loop.
//!
//! A connection (in `connection`) reads what the kernel has, frames
//! requests with [`super::request::parse`], asks the [`Service`] (the API)
//! for each answer and queues it; an answer that grows with the handlers or
//! files comes as a head and a cursor, its body produced in pieces as the
//! socket drains ([`super::body`]). Answers are written without blocking,
//! partial writes kept for the next writable event. Invariants:
//! - at most [`MAX_CONNECTIONS`] are open. When all are taken, a newcomer closes
//!   the connection that has held its slot without use the longest, if that is at
//!   least [`GRACE`]: no whole request [`GRACE`] after its first byte (or after the
//!   connection opened), idle since its last answer, or its client not reading
//!   its answers; a connection whose last answer was a 401 (with a token set, a
//!   client without it) is closed first, at once. Only if none qualifies, the
//!   newcomer gets a 503 and is closed. So sockets that connect and send nothing
//!   hold the server for [`GRACE`] at most, and unauthorized ones not at all;
//! - a connection is given its next answer, or the next piece of an answer in
//!   pieces (about [`super::body::PIECE`]), only while less than
//!   [`OUTPUT_LOW_WATER`] of its output is unwritten, and reads requests only
//!   then: its unwritten output is at most [`OUTPUT_LOW_WATER`] plus one piece
//!   or one whole answer, however many requests it pipelines and whatever the
//!   size of the answers; a client that never reads cannot grow bsc's memory
//!   or block the loop. Whole answers are the small ones (the API produces
//!   every answer that grows with the handlers or files in pieces);
//! - **all connections together** hold at most [`ANSWER_BUDGET`] of answers
//!   plus one piece per connection: a connection due a piece while they hold
//!   [`ANSWER_BUDGET`] or more waits, in a queue of waiting connections
//!   ([`Server::resume`]); as answers are written or connections close, the
//!   queue is served in order, without waiting for a new readiness event (mio
//!   is edge-triggered). A whole (small) answer never waits for the budget, so
//!   `/health` is answered at once while slow clients read large answers. One
//!   connection alone is always served (its own output is below the budget),
//!   and a waiting connection is neither timed out nor evicted: it waits for
//!   the server, not for its client; while any waits, a connection that holds
//!   answers and has read none of them for [`STALL`] is closed. So what all
//!   connections hold does not depend on the handler count:
//!   `ANSWER_BUDGET + MAX_CONNECTIONS * (OUTPUT_LOW_WATER + PIECE)` at most,
//!   plus the small whole answers;
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
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::connection::{drive, Budget, Connection, Driven};
pub use super::limits::{
    ANSWER_BUDGET, GRACE, MAX_CONNECTIONS, OUTPUT_LOW_WATER, READ_AHEAD, STALL, TIMEOUT, TURN,
};
use super::response::Response;
use super::service::Service;
use crate::config::resolve::resolve;
use crate::log::{self, Level};
use crate::tokens::{self, LISTENER};

/// How long a refused connection is kept (its input drained) so the client reads
/// the 503 instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
/// Most refused connections lingering at once; past that the oldest is closed.
const MAX_LINGERING: usize = 64;

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
        tokens::is_http(token)
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.open
    }

    /// Handles a readiness event of the listener or a connection, at `now`.
    pub fn on_event(
        &mut self,
        token: Token,
        registry: &Registry,
        service: &mut dyn Service,
        now: Instant,
    ) {
        if token == LISTENER {
            self.accept(registry, service, now);
            return;
        }
        let Some(slot) = tokens::connection_of(token) else {
            return;
        };
        if matches!(self.connections.get(slot), Some(Some(_))) {
            let first = self.waiting.front().is_none_or(|&s| s == slot);
            self.serve(slot, first, registry, service, now);
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
        now: Instant,
    ) -> usize {
        let others = self.held() - self.connections[slot].as_ref().map_or(0, |c| c.held);
        let Some(c) = self.connections[slot].as_mut() else {
            return 0;
        };
        let budget = Budget { others, first };
        let Driven::Open { answered } = drive(c, budget, service, now) else {
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
    pub fn resume(&mut self, registry: &Registry, service: &mut dyn Service, now: Instant) {
        let mut answered = 0;
        for _ in 0..self.waiting.len() {
            let Some(&slot) = self.waiting.front() else {
                return;
            };
            if answered >= TURN {
                return;
            }
            answered += self.serve(slot, true, registry, service, now);
            if self.waiting.front() == Some(&slot) {
                // Still first: it waits again without having answered (a piece
                // over the budget, or a request not whole after all).
                self.waiting.pop_front();
                self.waiting.push_back(slot);
            }
        }
    }

    fn accept(&mut self, registry: &Registry, service: &mut dyn Service, now: Instant) {
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
            if self.open >= MAX_CONNECTIONS && !self.make_room(peer, registry, now) {
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
                self.lingering.push((stream, now));
                continue;
            }
            let slot = self
                .connections
                .iter()
                .position(Option::is_none)
                .unwrap_or(self.connections.len());
            let token = tokens::connection(slot);
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
            let conn = Connection::new(stream, peer, now);
            if slot == self.connections.len() {
                self.connections.push(Some(conn));
            } else {
                self.connections[slot] = Some(conn);
            }
            self.open += 1;
            // Bytes may already be waiting; the edge for them may have passed.
            self.on_event(token, registry, service, now);
        }
    }

    /// Every slot is taken and `newcomer` arrived at `now`: closes the connection
    /// unused the longest, if for [`GRACE`] at least. Returns whether a slot is
    /// free now.
    fn make_room(&mut self, newcomer: SocketAddr, registry: &Registry, now: Instant) -> bool {
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
        c.give_up(
            format!(
                "request not received within {} s while the server is full",
                GRACE.as_secs()
            ),
            now,
        );
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
            c.give_up(
                format!("request not received within {} s", TIMEOUT.as_secs()),
                now,
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newcomer_replaces_the_connection_unused_the_longest_past_the_grace() {
        let t0 = crate::clock::Clock::System.read().mono;
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
}
