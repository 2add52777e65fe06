//! One forward target: its queue, its socket and its counters. A UDP target
//! is a connected, non-blocking datagram socket, sent with one `sendmmsg`
//! per batch ([`crate::sys::send_batch`]), runs of units of one length as one
//! message the kernel cuts (within the path's MTU, found when the target
//! opens and again when the kernel refuses a run); a TCP target is a
//! [`crate::capture::tcp::TcpClient`] (the TCP sources' connect, timeout and
//! back-off), written without blocking. Nothing here waits: what a socket
//! does not take stays queued, and what the queue cannot hold is dropped and
//! counted.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use super::queue::UnitQueue;
use crate::capture::tcp::{ReadOutcome, State, TcpClient};
use crate::clock::UnixMicros;
use crate::config::relay_target::{Carrier, RelayTarget};
use crate::config::resolve::resolve;
use crate::config::Address;
use crate::log::{self, Level};
use crate::sys;

/// How long a connection attempt to a TCP target may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The longest wait between attempts to reach a TCP target.
pub const RECONNECT_MAX: std::time::Duration = std::time::Duration::from_secs(10);
/// Bytes a TCP target's readiness reads (and discards) at most: a target
/// has nothing to say to bsc.
const READ_AT_MOST: usize = 64 << 10;

/// What a target has done since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub units_sent: u64,
    /// Unit bytes, without length prefixes.
    pub bytes_sent: u64,
    /// Units its queue could not hold, could not be sent, or (TCP) were cut
    /// by a dying connection.
    pub units_dropped: u64,
}

/// The socket of a target.
enum Link {
    /// A connected datagram socket (`None`: it could not be opened).
    Udp(Option<UdpSocket>),
    Tcp(TcpClient),
}

/// One forward target.
pub struct Target {
    spec: RelayTarget,
    token: Token,
    queue: UnitQueue,
    link: Link,
    counters: Counters,
    /// The last failure (`None` once a send succeeds again; for a UDP
    /// target, once a call sends without an error, so that a consumer that
    /// refuses every batch shows as failing).
    last_error: Option<String>,
    /// Whether the last unit offered was dropped (its queue full).
    dropping: bool,
    /// Whether the socket would block: nothing is tried until it is ready
    /// again (no system call per batch for a target that does not read).
    blocked: bool,
    /// The longest unit a UDP target sends as a segment of an offloaded
    /// run ([`sys::segment_max`]); 0: each unit its own message.
    segment_max: usize,
    /// Whether sending the front of the queue (UDP) failed once already.
    retried: bool,
}

impl Target {
    /// Opens the target under `token`: a UDP socket now, a TCP connection
    /// when the timer it returns fires (at `now`).
    pub fn open(
        spec: &RelayTarget,
        queue_bytes: usize,
        token: Token,
        registry: &Registry,
        seed: u64,
        now: Instant,
    ) -> (Target, Option<Instant>) {
        let mut t = Target {
            spec: spec.clone(),
            token,
            queue: UnitQueue::new(queue_bytes),
            link: Link::Udp(None),
            counters: Counters::default(),
            last_error: None,
            dropping: false,
            blocked: false,
            segment_max: 0,
            retried: false,
        };
        let address = Address {
            host: spec.host.clone(),
            port: spec.port,
        };
        match spec.carrier {
            Carrier::Udp => match udp_socket(&address, token, registry) {
                Ok(s) => {
                    t.segment_max = sys::segment_max(s.as_raw_fd()).unwrap_or(0);
                    t.link = Link::Udp(Some(s));
                }
                Err(e) => t.failed(format!("cannot send to {}: {e}", spec.url())),
            },
            Carrier::Tcp | Carrier::TcpLen => {
                let client =
                    TcpClient::new(&address, CONNECT_TIMEOUT, RECONNECT_MAX, seed, now).as_target();
                t.link = Link::Tcp(client);
                return (t, Some(now));
            }
        }
        (t, None)
    }

    /// What the target is (its URL and filter).
    pub fn spec(&self) -> &RelayTarget {
        &self.spec
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// `ready` (UDP), `connected`, `connecting` or `backoff` (TCP), or `error`
    /// (a UDP socket that could not be opened or whose last send failed).
    pub fn state(&self) -> &'static str {
        match &self.link {
            Link::Udp(Some(_)) if self.last_error.is_none() => "ready",
            Link::Udp(_) => "error",
            Link::Tcp(c) => match c.state {
                State::Connected { .. } => "connected",
                State::Connecting { .. } => "connecting",
                State::Backoff { .. } => "backoff",
            },
        }
    }

    /// Whether units can go out now (a UDP socket, a TCP connection up).
    pub fn is_connected(&self) -> bool {
        match &self.link {
            Link::Udp(s) => s.is_some(),
            Link::Tcp(c) => c.is_connected(),
        }
    }

    /// How long a TCP target has been unreachable at `now` (`None`: it is
    /// connected, or it is a UDP target).
    pub fn down_for(&self, now: Instant) -> Option<std::time::Duration> {
        match &self.link {
            Link::Tcp(c) => c.down_since.map(|t| now.saturating_duration_since(t)),
            Link::Udp(_) => None,
        }
    }

    /// Units and bytes waiting in the queue.
    pub fn queued(&self) -> (usize, usize) {
        (self.queue.units(), self.queue.queued_bytes())
    }

    /// Queues `unit` if the filter keeps it; a full queue drops it (counted).
    pub fn offer(&mut self, unit: &[u8]) {
        if let Some(f) = &self.spec.filter {
            if f.apply(unit).is_none() {
                return;
            }
        }
        if self.queue.push(unit, self.spec.carrier == Carrier::TcpLen) {
            self.dropping = false;
            return;
        }
        self.counters.units_dropped += 1;
        // Logged when a run of drops starts (and then at most once per
        // window), not per unit: a full queue costs capture a comparison.
        if !std::mem::replace(&mut self.dropping, true) {
            log::limited(
                &format!("forward {}", self.spec.url()),
                Level::Warn,
                format_args!(
                    "forward {}: queue full ({}), dropping units ({} so far)",
                    self.spec.url(),
                    log::size(self.queue.queued_bytes() as u64),
                    self.counters.units_dropped
                ),
            );
        }
    }

    /// Sends what the socket takes now. Returns the instant a TCP target
    /// tries again, if its connection died.
    pub fn send(&mut self, registry: &Registry, now: Instant) -> Option<Instant> {
        if self.queue.is_empty() || self.blocked {
            return None;
        }
        match &mut self.link {
            Link::Udp(Some(socket)) => {
                let fd = socket.as_raw_fd();
                self.send_datagrams(fd);
                None
            }
            Link::Udp(None) => {
                let n = self.queue.units();
                self.queue.pop(n);
                self.counters.units_dropped += n as u64;
                None
            }
            Link::Tcp(_) => self.write_stream(registry, now),
        }
    }

    /// Sends whole units, one `sendmmsg` per [`sys::SEND_BATCH`], until the
    /// queue is empty or the socket's buffer is full.
    fn send_datagrams(&mut self, fd: std::os::fd::RawFd) {
        let mut erred = false;
        // Each turn sends or drops at least one unit, or tries the front
        // again (at most once in a row, but for refusals), or stops.
        for _ in 0..=2 * self.queue.units() + 1 {
            let mut units: [&[u8]; sys::SEND_BATCH] = [&[]; sys::SEND_BATCH];
            let n = self.queue.front_units(&mut units);
            if n == 0 {
                return;
            }
            match sys::send_batch(fd, &units[..n], self.segment_max) {
                Ok(n) => {
                    let bytes = self.queue.pop(n);
                    self.counters.units_sent += n as u64;
                    self.counters.bytes_sent += bytes;
                    self.retried = false;
                    if !erred {
                        self.last_error = None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    erred = true;
                    let run = sys::run_length(&units[..n], self.segment_max) > 1;
                    self.send_failed(fd, &e, run);
                }
            }
        }
    }

    /// Sending the front of the queue failed with `e` (`run`: a run of units
    /// sent as one message). The kernel reports the ICMP error an earlier
    /// datagram drew (refused, unreachable, the path's MTU learned) with the
    /// next send, which sends nothing: the front is tried again once (a
    /// refusal, every time). A run the path cannot take as one message is
    /// cut to the path's MTU if it shrank, else tried once more, then sent
    /// one unit per call. A unit that fails twice in a row cannot go (too
    /// large, no route): dropped, counted.
    fn send_failed(&mut self, fd: std::os::fd::RawFd, e: &io::Error, run: bool) {
        let url = self.spec.url();
        if e.kind() == io::ErrorKind::ConnectionRefused {
            return self.failed(format!("{url}: {e} (is the consumer running?)"));
        }
        let again = std::mem::replace(&mut self.retried, true);
        let offload = run
            && matches!(
                e.raw_os_error(),
                Some(libc::EMSGSIZE | libc::EINVAL | libc::EIO)
            );
        if offload {
            let was = self.segment_max;
            let shrunk = sys::segment_max(fd).filter(|&m| m < was);
            let now = match (shrunk, again) {
                (Some(m), _) => format!("runs of units up to {m} bytes from now on"),
                (None, false) => return self.failed(format!("{url}: {e}")),
                (None, true) => "one datagram per call from now on".to_string(),
            };
            self.segment_max = shrunk.unwrap_or(0);
            self.retried = false;
            return log::limited(
                &format!("forward {url} offload"),
                Level::Info,
                format_args!("forward {url}: a run of units sent as one: {e}; sending {now}"),
            );
        }
        if again {
            self.queue.pop(1);
            self.counters.units_dropped += 1;
            self.retried = false;
        }
        self.failed(format!("{url}: {e}"));
    }

    /// Writes queued bytes to the connection until it would block; a unit
    /// the connection died in the middle of is given up (dropped), so the
    /// next connection starts with a whole one.
    fn write_stream(&mut self, registry: &Registry, now: Instant) -> Option<Instant> {
        let Link::Tcp(client) = &mut self.link else {
            return None;
        };
        let prefixed = self.spec.carrier == Carrier::TcpLen;
        loop {
            let State::Connected { stream, peer } = &mut client.state else {
                return None;
            };
            if self.queue.is_empty() {
                return None;
            }
            match stream.write(self.queue.unsent()) {
                Ok(0) => {}
                Ok(n) => {
                    let (units, bytes) = self.queue.advance(n, prefixed);
                    self.counters.units_sent += units;
                    self.counters.bytes_sent += bytes;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let reason = format!("writing to {peer}: {e}");
                    let at = client.fail(registry, reason.clone(), now);
                    self.lost_connection(reason);
                    return Some(at);
                }
            }
            let reason = "the connection takes no more bytes".to_string();
            let at = client.fail(registry, reason.clone(), now);
            self.lost_connection(reason);
            return Some(at);
        }
    }

    /// The socket is ready at `now` (`wall` on the calendar): a TCP connect
    /// completes, bytes the target sent are read and dropped, an end is
    /// noticed; then queued units go out. Returns the instant to try again
    /// at, if the connection failed.
    pub fn on_ready(
        &mut self,
        registry: &Registry,
        now: Instant,
        wall: UnixMicros,
    ) -> Option<Instant> {
        self.blocked = false;
        let Link::Tcp(client) = &mut self.link else {
            return self.send(registry, now);
        };
        if let State::Connecting { .. } = client.state {
            if let Some(at) = client.on_ready(registry, now, wall) {
                self.last_error = client.last_error.clone();
                return Some(at);
            }
            if client.is_connected() {
                self.last_error = None;
            }
        }
        let mut scratch = [0u8; 4096];
        let mut read = 0;
        while read < READ_AT_MOST {
            match client.read(registry, &mut scratch, now) {
                ReadOutcome::Data(n) => read += n,
                ReadOutcome::WouldBlock => break,
                ReadOutcome::Ended(at) => {
                    let reason = client.last_error.clone().unwrap_or_default();
                    self.lost_connection(reason);
                    return Some(at);
                }
            }
        }
        self.send(registry, now)
    }

    /// The target's timer fired at `now`: a TCP target starts an attempt or
    /// gives up on one. Returns the next instant to be woken at.
    pub fn on_timer(&mut self, registry: &Registry, now: Instant) -> Option<Instant> {
        let Link::Tcp(client) = &mut self.link else {
            return None;
        };
        let next = client.on_timer(registry, self.token, now);
        if let Some(e) = &client.last_error {
            self.last_error = Some(e.clone());
        }
        next
    }

    /// Deregisters the socket (it closes when the target is dropped).
    pub fn close(&mut self, registry: &Registry) {
        match &mut self.link {
            Link::Udp(Some(s)) => {
                let _ = registry.deregister(s);
            }
            Link::Udp(None) => {}
            Link::Tcp(c) => c.close(registry),
        }
    }

    /// The connection died: the unit it cut is dropped (counted).
    fn lost_connection(&mut self, reason: String) {
        self.blocked = false;
        if self.queue.abandon_partial() {
            self.counters.units_dropped += 1;
        }
        self.last_error = Some(reason);
    }

    /// A send failed: remembered and logged (at most once per window).
    fn failed(&mut self, reason: String) {
        log::limited(
            &format!("forward {}", self.spec.url()),
            Level::Warn,
            format_args!("forward {reason}"),
        );
        self.last_error = Some(reason);
    }
}

/// A non-blocking UDP socket connected to `address`, registered for
/// writability under `token` (a full socket buffer is waited out).
fn udp_socket(address: &Address, token: Token, registry: &Registry) -> io::Result<UdpSocket> {
    let ip = resolve(&address.host)?;
    let peer = SocketAddr::new(ip, address.port);
    let any: SocketAddr = match ip {
        std::net::IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        std::net::IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let mut socket = UdpSocket::bind(any)?;
    socket.connect(peer)?;
    registry.register(&mut socket, token, Interest::WRITABLE)?;
    Ok(socket)
}
