//! A capturer: one socket (address + conn_type) and the read path from it.
//!
//! [`Capturer::read`] drains the socket until `WouldBlock` or [`READ_BUDGET`]
//! units, handing a callback one batch at a time as [`Received`]: an iterator
//! of [`Unit`]s (stamped with the time they were read, and the kernel's receive
//! time where the source has one); it knows nothing of handlers or files. UDP
//! and Ethernet read batches of up to [`sys::BATCH`] units per `recvmmsg`; TCP
//! reads once per batch, into the start of the batch ([`sys::Batch::stream_region`]):
//! one record's worth ([`TCP_READ_LEN`]) when a handler without `framing` records
//! the read as one unit, [`sys::STREAM_REGION`] when every handler cuts it into
//! units (see [`crate::units::framing`]); it says when a connection ended
//! ([`Drained::Ended`]), so that handlers drop a partial unit.
//!
//! **The slot rule, by type**: a [`Unit`]'s bytes lie in the batch's slots and
//! borrow the batch (`Received<'b, _>` yields `Unit<'b>`), so handlers may refer
//! to them where they lie until they write them ([`crate::manager::pending`]).
//! The callback is called once per batch with a lifetime of its own, so nothing
//! that borrows a unit can outlive the call: the compiler proves that no
//! reference to a slot is left when the slots are read into again.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::ethernet::{self, PacketSocket};
use super::tcp::{ReadOutcome, State as TcpState, TcpClient};
use super::udp;
use crate::clock::{UnixMicros, UnixNanos};
use crate::config::{Address, ConnType, HandlerSpec};
use crate::sys::{self, Peer};
use crate::{info, warn};

/// Most units one capturer reads per wake-up before the loop serves others.
pub const READ_BUDGET: usize = 1024;
/// Largest TCP read while a handler records each read as it is (no framing):
/// one record, never more than the snaplen.
pub const TCP_READ_LEN: usize = 65535;
/// Bytes a TCP capturer reads per wake-up at most (as many as
/// [`READ_BUDGET`] reads of a record each) before the loop serves others.
const STREAM_BUDGET: usize = READ_BUDGET * sys::SLOT;

/// One received unit, as a capturer hands it to each of its handlers.
#[derive(Copy, Clone, Debug)]
pub struct Unit<'a> {
    /// The bytes captured, where they arrived (a receive slot of the batch).
    pub data: &'a [u8],
    /// The unit's real length (more than `data` when the source had to cut it).
    pub orig_len: usize,
    /// When bsc read it (nanoseconds, for nanosecond files; everything else
    /// uses its microsecond).
    pub read_at: UnixNanos,
    /// When the kernel received it (`SO_TIMESTAMPNS`, nanoseconds), if the
    /// source reports that.
    pub kernel_at: Option<UnixNanos>,
    pub peer: Peer,
    /// Whether the bytes are part of a byte stream (tcp), to be framed across
    /// reads, rather than a datagram or frame whole in itself.
    pub stream: bool,
}

/// One batch as [`Capturer::read`] hands it to its callback: the units read
/// into the batch, each borrowing it for `'b`, for the handlers with the ids
/// [`Received::handlers`] gives. The callback must take every unit (TCP reads
/// happen as they are taken).
pub struct Received<'b, C> {
    from: From<'b>,
    handlers: &'b [usize],
    /// The time of reading, read per unit only when a record needs it.
    clock: &'b C,
    /// Units taken, and the longest, so far.
    taken: usize,
    longest: usize,
    /// What ended a TCP batch before it was full (`WouldBlock`, the end of
    /// the connection).
    end: Option<Drained>,
}

/// Where the units of a [`Received`] come from.
enum From<'b> {
    /// The `n` units one `recvmmsg` put in the batch.
    Datagrams {
        batch: &'b sys::Batch,
        next: usize,
        n: usize,
        read_time_wanted: bool,
    },
    /// One TCP read of at most `len` bytes into `region` (the start of the
    /// batch) when the unit is taken, unless it is `WouldBlock` or the end of
    /// the connection.
    Stream {
        client: &'b mut TcpClient,
        registry: &'b Registry,
        now: Instant,
        region: Option<&'b mut [u8]>,
        len: usize,
    },
}

impl<'b, C: Fn() -> UnixNanos> Received<'b, C> {
    /// The ids of the handlers every unit is for.
    pub fn handlers(&self) -> &'b [usize] {
        self.handlers
    }

    /// Units taken so far.
    pub fn taken(&self) -> usize {
        self.taken
    }

    /// The longest unit taken so far, in bytes.
    pub fn longest(&self) -> usize {
        self.longest
    }
}

impl<'b, C: Fn() -> UnixNanos> Iterator for Received<'b, C> {
    type Item = Unit<'b>;

    fn next(&mut self) -> Option<Unit<'b>> {
        let unit = match &mut self.from {
            From::Datagrams {
                batch,
                next,
                n,
                read_time_wanted,
            } => {
                if *next == *n {
                    return None;
                }
                let (data, info) = batch.unit(*next);
                *next += 1;
                let kernel_at = info.received.kernel_time.map(UnixNanos::from_kernel);
                // The clock is read per unit, and only when a record needs it.
                let read_at = match kernel_at {
                    Some(k) if !*read_time_wanted => k,
                    _ => (self.clock)(),
                };
                Unit {
                    data,
                    orig_len: info.received.full_len,
                    read_at,
                    kernel_at,
                    peer: info.received.peer,
                    stream: false,
                }
            }
            From::Stream {
                client,
                registry,
                now,
                region,
                len,
            } => {
                if self.end.is_some() {
                    return None;
                }
                let region = region.take()?;
                match client.read(registry, &mut region[..*len], *now) {
                    ReadOutcome::Data(n) => {
                        let region: &'b [u8] = region;
                        Unit {
                            data: &region[..n],
                            orig_len: n,
                            read_at: (self.clock)(),
                            kernel_at: None,
                            peer: Peer::Unknown,
                            stream: true,
                        }
                    }
                    ReadOutcome::WouldBlock => {
                        self.end = Some(Drained::Empty);
                        return None;
                    }
                    ReadOutcome::Ended(at) => {
                        self.end = Some(Drained::Ended(at));
                        return None;
                    }
                }
            }
        };
        self.taken += 1;
        self.longest = self.longest.max(unit.data.len());
        Some(unit)
    }
}

/// The socket a capturer reads.
enum Source {
    Udp(mio::net::UdpSocket),
    Tcp(TcpClient),
    Ethernet(PacketSocket),
}

/// One socket (address + conn_type) and the ids of the handlers it feeds.
pub struct Capturer {
    pub address: Address,
    pub conn_type: ConnType,
    source: Source,
    handlers: Vec<usize>,
    /// What the socket is bound to: `127.0.0.1:8500`, `eth1 (ifindex 3)`, or the
    /// TCP peer.
    pub local: String,
    local_addr: Option<SocketAddr>,
    pub rcvbuf_granted: usize,
    /// Creation order, for listings in AIT's order.
    pub seq: u64,
    /// The last receive error, until a unit is received again (udp, ethernet).
    error: Option<String>,
    /// The kernel's drop count when last asked ([`Capturer::kernel_drops`]).
    drops_seen: std::cell::Cell<u32>,
    /// Whether a handler records the time of reading (so the clock is read per
    /// unit even when the kernel stamps it).
    read_time_wanted: bool,
    /// Whether every handler cuts a stream into units (framing), so that one
    /// TCP read may be longer than a record.
    all_frame: bool,
}

/// Why a socket could not be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The socket could not be made (usually "address in use").
    Socket(String),
    /// The address names something that does not exist, such as an interface.
    Invalid(String),
}

/// What draining a capturer left behind.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Read until `WouldBlock`: nothing more until the next readiness event.
    Empty,
    /// The budget ran out first: read again on the next turn of the loop.
    More,
    /// A TCP capturer needs its timer at this instant (a back-off or connect
    /// deadline); nothing more to read until then.
    Timer(Instant),
    /// A TCP connection ended (its handlers drop any partial unit); the next
    /// attempt is due at this instant.
    Ended(Instant),
}

/// Where a capturer is, as `GET /capturers` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapturerState {
    /// A UDP or Ethernet socket receiving.
    Listening,
    /// A TCP connection attempt under way.
    Connecting,
    Connected,
    /// Waiting until `next_attempt_at` to connect again, after `reason`.
    Backoff {
        next_attempt_at: UnixMicros,
        reason: Option<String>,
    },
    /// Receiving failed, for this reason.
    Error(String),
}

impl Capturer {
    /// The socket's state at `now` (`wall` on the calendar).
    pub fn state(&self, now: Instant, wall: UnixMicros) -> CapturerState {
        match &self.source {
            Source::Tcp(c) => match &c.state {
                TcpState::Connecting { .. } => CapturerState::Connecting,
                TcpState::Connected { .. } => CapturerState::Connected,
                TcpState::Backoff { until } => {
                    let wait = until.saturating_duration_since(now);
                    CapturerState::Backoff {
                        next_attempt_at: wall.plus_micros(wait.as_micros() as i64),
                        reason: c.last_error.clone(),
                    }
                }
            },
            _ => match &self.error {
                Some(e) => CapturerState::Error(e.clone()),
                None => CapturerState::Listening,
            },
        }
    }

    /// The local socket address: the bound one (udp) or the connection's (tcp).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.source {
            Source::Tcp(c) => c.local_addr(),
            _ => self.local_addr,
        }
    }

    /// The interface index of an Ethernet capturer.
    pub fn ifindex(&self) -> Option<u32> {
        match &self.source {
            Source::Ethernet(p) => Some(p.ifindex),
            _ => None,
        }
    }

    /// How long a TCP capturer has been without a connection at `now` (`None`:
    /// connected, or not TCP).
    pub fn down_for(&self, now: Instant) -> Option<std::time::Duration> {
        match &self.source {
            Source::Tcp(c) => c.down_since.map(|t| now.saturating_duration_since(t)),
            _ => None,
        }
    }

    /// The connection state of a TCP capturer.
    pub fn tcp_status(&self) -> Option<TcpStatus> {
        match &self.source {
            Source::Tcp(c) => Some(TcpStatus {
                connected: c.is_connected(),
                reconnects: c.reconnects,
                last_error: c.last_error.clone(),
                last_connected_at: c.last_connected_at.map(UnixMicros::to_rfc3339),
            }),
            _ => None,
        }
    }
}

/// A TCP capturer's connection, as `/stats` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TcpStatus {
    pub connected: bool,
    pub reconnects: u64,
    pub last_error: Option<String>,
    pub last_connected_at: Option<String>,
}

impl Capturer {
    /// Opens the socket `spec` names and registers it under `token`; a TCP
    /// capturer starts connecting at `now` (`wall` on the calendar; a peer that
    /// is down is not an error) and may return the instant its timer is due.
    /// `seq` orders listings.
    pub fn open(
        spec: &HandlerSpec,
        token: Token,
        seq: u64,
        registry: &Registry,
        now: Instant,
        wall: UnixMicros,
    ) -> Result<(Capturer, Option<Instant>), OpenError> {
        let watch = |e: io::Error| OpenError::Socket(format!("cannot watch {}: {e}", spec.address));
        let mut timer = None;
        let (source, local, local_addr, rcvbuf_granted) = match spec.conn_type {
            ConnType::Udp => {
                let mut b = udp::bind(&spec.address, spec.rcvbuf_bytes, spec.interface.as_deref())
                    .map_err(OpenError::Socket)?;
                registry
                    .register(&mut b.socket, token, Interest::READABLE)
                    .map_err(watch)?;
                (
                    Source::Udp(b.socket),
                    b.local.to_string(),
                    Some(b.local),
                    b.rcvbuf_granted,
                )
            }
            ConnType::Ethernet => {
                sys::interface_index(&spec.address.host)
                    .map_err(|e| OpenError::Invalid(format!("cannot capture ethernet: {e}")))?;
                let (p, granted) =
                    ethernet::open(&spec.address, spec.rcvbuf_bytes).map_err(OpenError::Socket)?;
                registry
                    .register(&mut SourceFd(&p.as_raw_fd()), token, Interest::READABLE)
                    .map_err(watch)?;
                let local = format!("{} (ifindex {})", spec.address.host, p.ifindex);
                (Source::Ethernet(p), local, None, granted)
            }
            ConnType::Tcp => {
                let seed = wall.0 as u64 ^ ((std::process::id() as u64) << 32) ^ token.0 as u64;
                let mut client = TcpClient::new(
                    &spec.address,
                    spec.connect_timeout,
                    spec.reconnect_max,
                    seed,
                    now,
                );
                timer = client.on_timer(registry, token, now);
                (
                    Source::Tcp(client),
                    format!("peer {}", spec.address),
                    None,
                    0,
                )
            }
        };
        if spec.conn_type != ConnType::Tcp && rcvbuf_granted < spec.rcvbuf_bytes {
            warn!(
                "{} {}: asked for a {} receive buffer ({} bytes), the kernel granted {} ({}) (raise net.core.rmem_max or run with CAP_NET_ADMIN)",
                spec.conn_type,
                spec.address,
                crate::log::size(spec.rcvbuf_bytes as u64),
                spec.rcvbuf_bytes,
                crate::log::size(rcvbuf_granted as u64),
                rcvbuf_granted
            );
        }
        match spec.conn_type {
            ConnType::Tcp => info!("capturer tcp {}: connecting", spec.address),
            // The bound address only where it says more than the configured one.
            _ if local == spec.address.to_string() => info!(
                "capturer {} {}: receive buffer {}",
                spec.conn_type,
                spec.address,
                crate::log::size(rcvbuf_granted as u64)
            ),
            _ => info!(
                "capturer {} {}: bound to {local}, receive buffer {}",
                spec.conn_type,
                spec.address,
                crate::log::size(rcvbuf_granted as u64)
            ),
        }
        let cap = Capturer {
            address: spec.address.clone(),
            conn_type: spec.conn_type,
            source,
            handlers: Vec::new(),
            local,
            local_addr,
            rcvbuf_granted,
            seq,
            error: None,
            drops_seen: std::cell::Cell::new(0),
            read_time_wanted: false,
            all_frame: false,
        };
        Ok((cap, timer))
    }

    /// Deregisters and closes the socket (the port is free when this returns).
    pub fn close(mut self, registry: &Registry) {
        let result = match &mut self.source {
            Source::Udp(s) => registry.deregister(s),
            Source::Ethernet(p) => registry.deregister(&mut SourceFd(&p.as_raw_fd())),
            Source::Tcp(c) => {
                c.close(registry);
                Ok(())
            }
        };
        if let Err(e) = result {
            warn!("capturer {}: deregistering failed: {e}", self.address);
        }
        info!("capturer {} {}: closed", self.conn_type, self.address);
    }

    /// The ids of the handlers this capturer feeds, in the order they came.
    pub fn handlers(&self) -> &[usize] {
        &self.handlers
    }

    /// Feeds handler `id` too (the manager's bookkeeping).
    pub(crate) fn attach(&mut self, id: usize) {
        self.handlers.push(id);
    }

    /// Stops feeding handler `id`.
    pub(crate) fn detach(&mut self, id: usize) {
        self.handlers.retain(|&h| h != id);
    }

    /// The kernel's count of units it dropped on this socket (udp and
    /// ethernet; 0 for tcp), asked now ([`sys::socket_drops`]); the last
    /// count seen if the kernel does not answer, so that it never goes back.
    pub fn kernel_drops(&self) -> u32 {
        let Some(fd) = self.datagram_fd() else {
            return 0;
        };
        if let Ok(n) = sys::socket_drops(fd) {
            self.drops_seen.set(self.drops_seen.get().max(n));
        }
        self.drops_seen.get()
    }

    /// Whether the socket holds more than half what its buffer may (filling
    /// toward loss). A TCP stream, which loses nothing by waiting, counts as
    /// filling, and so does a socket the kernel does not answer for.
    pub fn is_filling(&self) -> bool {
        let held = self.datagram_fd().map(sys::receive_queue);
        !matches!(held, Some(Ok((held, most))) if held <= most / 2)
    }

    /// The socket of a udp or ethernet capturer (`None` for tcp).
    fn datagram_fd(&self) -> Option<std::os::fd::RawFd> {
        match &self.source {
            Source::Udp(s) => Some(s.as_raw_fd()),
            Source::Ethernet(p) => Some(p.as_raw_fd()),
            Source::Tcp(_) => None,
        }
    }

    /// What the handlers need of a read: whether some handler wants the time
    /// of reading (not only the kernel's), and whether every one cuts a
    /// stream into units (framing).
    pub(crate) fn set_needs(&mut self, read_time_wanted: bool, all_frame: bool) {
        self.read_time_wanted = read_time_wanted;
        self.all_frame = all_frame;
    }

    /// A TCP capturer's timer came (a back-off or connect deadline): acts on it,
    /// and says when the next is due.
    pub fn on_timer(&mut self, registry: &Registry, token: Token, now: Instant) -> Option<Instant> {
        match &mut self.source {
            Source::Tcp(client) => client.on_timer(registry, token, now),
            _ => None,
        }
    }

    /// Reads until `WouldBlock` or [`READ_BUDGET`] units (TCP: as many bytes as
    /// that many records of [`sys::SLOT`]), handing `deliver` each batch as a
    /// [`Received`] (TCP: one read into the start of the batch). `now` is the
    /// loop's instant (TCP back-offs); `clock` is read for the time a unit was
    /// read, only when a record needs it.
    pub fn read<C: Fn() -> UnixNanos>(
        &mut self,
        registry: &Registry,
        batch: &mut sys::Batch,
        now: Instant,
        clock: C,
        mut deliver: impl FnMut(&mut Received<'_, C>),
    ) -> Drained {
        let fd = match &mut self.source {
            Source::Udp(s) => s.as_raw_fd(),
            Source::Ethernet(p) => p.as_raw_fd(),
            Source::Tcp(client) => {
                if let Some(at) = client.on_ready(registry, now, clock().micros()) {
                    return Drained::Timer(at);
                }
                let len = match self.all_frame {
                    true => sys::STREAM_REGION,
                    false => TCP_READ_LEN,
                };
                for _ in 0..STREAM_BUDGET / len {
                    let mut units = Received {
                        from: From::Stream {
                            client,
                            registry,
                            now,
                            region: Some(batch.stream_region()),
                            len,
                        },
                        handlers: &self.handlers,
                        clock: &clock,
                        taken: 0,
                        longest: 0,
                        end: None,
                    };
                    deliver(&mut units);
                    if let Some(end) = units.end {
                        return end;
                    }
                }
                return Drained::More;
            }
        };
        for _ in 0..READ_BUDGET / sys::BATCH {
            let n = match batch.recv(fd) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drained::Empty,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors, an interface gone down: report once, keep the
                    // socket, come back at the next readiness event.
                    let why = format!("receive failed: {e}");
                    if self.error.as_ref() != Some(&why) {
                        warn!("capturer {}: {why}", self.address);
                        self.error = Some(why);
                    }
                    return Drained::Empty;
                }
            };
            self.error = None;
            let mut units = Received {
                from: From::Datagrams {
                    batch,
                    next: 0,
                    n,
                    read_time_wanted: self.read_time_wanted,
                },
                handlers: &self.handlers,
                clock: &clock,
                taken: 0,
                longest: 0,
                end: None,
            };
            deliver(&mut units);
            debug_assert_eq!(units.taken, n, "every unit of a batch is taken");
            if n < sys::BATCH {
                // The queue ran dry: the next datagram raises a new edge.
                return Drained::Empty;
            }
        }
        Drained::More
    }
}
