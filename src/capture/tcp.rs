//! The TCP client capturer: connects to its peer without blocking, and when the
//! peer refuses, times out, resets or closes, waits and tries again, forever.
//!
//! States: `Backoff` (waiting until an instant) → `Connecting` (a non-blocking
//! connect, with a deadline) → `Connected` (reading) → back to `Backoff` on any
//! failure. The wait after the n-th consecutive failure is 0.5 s × 2^(n-1), at most
//! `reconnect_max`, times a random factor in [0.75, 1.25) so that many bsc boxes
//! do not reconnect in step. A successful connection resets the count.
//!
//! The manager owns the timers: every method that needs one returns its instant.
//! Time is passed in: every method that decides by time takes the loop's `now`.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::clock::UnixMicros;
use crate::config::resolve::resolve;
use crate::config::Address;
use crate::info;

/// The first wait after a failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Where a TCP capturer is.
pub enum State {
    /// Waiting until this instant before the next attempt.
    Backoff { until: Instant },
    /// A connection attempt that must complete by `deadline`.
    Connecting {
        stream: TcpStream,
        peer: SocketAddr,
        deadline: Instant,
    },
    /// Reading from the peer.
    Connected { stream: TcpStream, peer: SocketAddr },
}

/// What one read gave.
pub enum ReadOutcome {
    /// Bytes at the start of the buffer.
    Data(usize),
    /// Nothing more until the next readiness event.
    WouldBlock,
    /// The connection ended; a reconnect is scheduled at this instant.
    Ended(Instant),
}

/// One TCP client capturer.
pub struct TcpClient {
    address: Address,
    pub state: State,
    connect_timeout: Duration,
    reconnect_max: Duration,
    /// Consecutive failed attempts.
    failures: u32,
    /// Successful connections after the first.
    pub reconnects: u64,
    connections: u64,
    pub last_error: Option<String>,
    pub last_connected_at: Option<UnixMicros>,
    /// Since when no connection is up (`None` while one is).
    pub down_since: Option<Instant>,
    rng: u64,
    /// Whether it is a forward target ([`crate::relay`]) rather than a
    /// source: the log calls it `forward tcp`, not `capturer tcp`.
    target: bool,
}

impl TcpClient {
    /// A client that will connect at once (the caller arms a timer for `now`).
    pub fn new(
        address: &Address,
        connect_timeout: Duration,
        reconnect_max: Duration,
        seed: u64,
        now: Instant,
    ) -> TcpClient {
        TcpClient {
            address: address.clone(),
            state: State::Backoff { until: now },
            connect_timeout,
            reconnect_max,
            failures: 0,
            reconnects: 0,
            connections: 0,
            last_error: None,
            last_connected_at: None,
            down_since: Some(now),
            rng: seed | 1,
            target: false,
        }
    }

    /// The same client as a forward target (the log calls it `forward tcp`).
    pub fn as_target(mut self) -> TcpClient {
        self.target = true;
        self
    }

    /// What the log calls it.
    fn label(&self) -> &'static str {
        match self.target {
            true => "forward tcp",
            false => "capturer tcp",
        }
    }

    /// Whether a connection is up.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected { .. })
    }

    /// The local address of the connection, when one is up.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.state {
            State::Connected { stream, .. } => stream.local_addr().ok(),
            _ => None,
        }
    }

    /// The timer fired: starts an attempt if the back-off is over, or gives up on
    /// an attempt past its deadline. Returns the next instant to be woken at.
    pub fn on_timer(&mut self, registry: &Registry, token: Token, now: Instant) -> Option<Instant> {
        match &self.state {
            State::Backoff { until } if *until <= now => Some(self.connect(registry, token, now)),
            State::Connecting { deadline, .. } if *deadline <= now => Some(self.fail(
                registry,
                format!(
                    "connect timed out after {:.1} s",
                    self.connect_timeout.as_secs_f64()
                ),
                now,
            )),
            _ => None,
        }
    }

    fn connect(&mut self, registry: &Registry, token: Token, now: Instant) -> Instant {
        let ip = match resolve(&self.address.host) {
            Ok(ip) => ip,
            Err(e) => return self.fail(registry, e.to_string(), now),
        };
        let peer = SocketAddr::new(ip, self.address.port);
        let mut stream = match TcpStream::connect(peer) {
            Ok(s) => s,
            Err(e) => return self.fail(registry, format!("connect to {peer}: {e}"), now),
        };
        if let Err(e) =
            registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            return self.fail(registry, format!("cannot watch the connection: {e}"), now);
        }
        let deadline = now + self.connect_timeout;
        self.state = State::Connecting {
            stream,
            peer,
            deadline,
        };
        deadline
    }

    /// The socket is ready at `now` (`wall` on the calendar): completes a
    /// pending connect. Returns a timer instant if the attempt failed (the
    /// back-off to wait).
    pub fn on_ready(
        &mut self,
        registry: &Registry,
        now: Instant,
        wall: UnixMicros,
    ) -> Option<Instant> {
        let State::Connecting { stream, peer, .. } = &self.state else {
            return None;
        };
        let peer = *peer;
        match stream.take_error() {
            Ok(Some(e)) | Err(e) => {
                return Some(self.fail(registry, format!("connect to {peer}: {e}"), now))
            }
            Ok(None) => {}
        }
        match stream.peer_addr() {
            Ok(_) => {}
            // Not connected yet: a spurious wake-up; wait for the next event.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return None,
            Err(e) => return Some(self.fail(registry, format!("connect to {peer}: {e}"), now)),
        }
        let State::Connecting { stream, .. } =
            std::mem::replace(&mut self.state, State::Backoff { until: now })
        else {
            return None;
        };
        self.state = State::Connected { stream, peer };
        if self.connections > 0 {
            self.reconnects += 1;
        }
        self.connections += 1;
        self.failures = 0;
        self.last_error = None;
        self.down_since = None;
        self.last_connected_at = Some(wall);
        // The peer is named once: the address as configured, and the one it
        // resolved to only when that says more (a host name).
        if peer.to_string() == self.address.to_string() {
            info!("{} {}: connected", self.label(), self.address);
        } else {
            info!("{} {}: connected to {peer}", self.label(), self.address);
        }
        None
    }

    /// Reads once into `buf` (at most its length: one record); an end is
    /// dated `now`.
    pub fn read(&mut self, registry: &Registry, buf: &mut [u8], now: Instant) -> ReadOutcome {
        let State::Connected { stream, peer } = &mut self.state else {
            return ReadOutcome::WouldBlock;
        };
        let peer = *peer;
        loop {
            return match stream.read(buf) {
                Ok(0) => ReadOutcome::Ended(self.fail(
                    registry,
                    format!("{peer} closed the connection"),
                    now,
                )),
                Ok(n) => ReadOutcome::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => ReadOutcome::Ended(self.fail(
                    registry,
                    format!("reading from {peer}: {e}"),
                    now,
                )),
            };
        }
    }

    /// Drops the connection (if any) and schedules the next attempt after
    /// `now`, which it returns: the peer failed (`reason`).
    pub fn fail(&mut self, registry: &Registry, reason: String, now: Instant) -> Instant {
        self.close(registry);
        self.failures = self.failures.saturating_add(1);
        let wait = self.backoff();
        self.down_since.get_or_insert(now);
        // A peer that stays down is reported once per REPEAT_WINDOW, not per attempt.
        crate::log::limited(
            &format!("{} {}", self.label(), self.address),
            crate::log::Level::Warn,
            format_args!(
                "{} {}: {reason}; next attempt in {:.1} s",
                self.label(),
                self.address,
                wait.as_secs_f64()
            ),
        );
        self.last_error = Some(reason);
        let until = now + wait;
        // The connection, if any, is closed here (its stream dropped).
        self.state = State::Backoff { until };
        until
    }

    /// The wait after the current number of consecutive failures (module doc).
    fn backoff(&mut self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(16);
        let base = FIRST_BACKOFF
            .saturating_mul(1 << exp)
            .min(self.reconnect_max);
        // xorshift64: plenty for spreading reconnects.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let factor = 0.75 + (self.rng % 1000) as f64 / 2000.0;
        base.mul_f64(factor).min(self.reconnect_max.mul_f64(1.25))
    }

    /// Deregisters the connection, if any: the stream closes when the state
    /// that holds it is replaced (`fail`) or the client is dropped
    /// (the capturer is going away).
    pub fn close(&mut self, registry: &Registry) {
        if let State::Connecting { stream, .. } | State::Connected { stream, .. } = &mut self.state
        {
            let _ = registry.deregister(stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_to_the_cap_with_jitter() {
        let a = Address {
            host: "127.0.0.1".into(),
            port: 9,
        };
        let mut c = TcpClient::new(
            &a,
            Duration::from_secs(5),
            Duration::from_secs(30),
            42,
            Instant::now(),
        );
        let mut waits = Vec::new();
        for n in 1..=10 {
            c.failures = n;
            waits.push(c.backoff().as_secs_f64());
        }
        for (i, w) in waits.iter().enumerate() {
            let base = (0.5 * 2f64.powi(i as i32)).min(30.0);
            assert!(
                *w >= base * 0.75 - 1e-9 && *w < base * 1.25,
                "wait {i}: {w} vs {base}"
            );
        }
        assert!(waits[9] <= 37.5);
    }
}
