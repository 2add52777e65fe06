//! systemd's service notification protocol, without a crate: datagrams such as
//! `READY=1` sent to the socket named by `NOTIFY_SOCKET` (a path, or an abstract
//! name written with a leading `@`).
//!
//! bsc sends `READY=1` once the config is loaded and every socket is bound,
//! `RELOADING=1` (with `MONOTONIC_USEC`) and `READY=1` around a SIGHUP reload,
//! `STOPPING=1` on shutdown, `STATUS=` lines with the handler count and packet
//! rate, and `WATCHDOG=1` from the event loop itself every half `WATCHDOG_USEC`,
//! so a loop that hangs stops the pings and systemd restarts the service. Without
//! `NOTIFY_SOCKET` every call is a no-op. Sending never blocks.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use crate::sys;
use crate::warn;

/// The connection to systemd (or nothing, when not run by it).
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// How often to send `WATCHDOG=1` (half of `WATCHDOG_USEC`).
    watchdog_every: Option<Duration>,
    next_ping: Instant,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the
    /// environment; the first watchdog ping is due at `now`.
    pub fn from_env(now: Instant) -> Notifier {
        let target = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty())
            .and_then(|path| {
                let addr = match path.strip_prefix('@') {
                    Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
                    None => SocketAddr::from_pathname(&path),
                };
                match (UnixDatagram::unbound(), addr) {
                    (Ok(socket), Ok(addr)) => {
                        let _ = socket.set_nonblocking(true);
                        Some((socket, addr))
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        warn!("NOTIFY_SOCKET={path}: {e}; not notifying systemd");
                        None
                    }
                }
            });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|us| *us > 0 && for_us && target.is_some())
            .map(|us| Duration::from_micros(us / 2));
        Notifier {
            target,
            watchdog_every,
            next_ping: now,
        }
    }

    /// Sends one message (newline-separated assignments); failures are ignored
    /// after a warning, since capture must go on regardless.
    pub fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.target {
            if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
                warn!("cannot notify systemd ({message:?}): {e}");
            }
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// `RELOADING=1`, stamped with the monotonic clock as systemd asks.
    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            sys::monotonic_micros()
        ));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: flushing and closing files");
    }

    /// When the next watchdog ping is due, if systemd asked for them.
    pub fn next_ping(&self) -> Option<Instant> {
        self.watchdog_every.map(|_| self.next_ping)
    }

    /// Sends `WATCHDOG=1` (and a status line) if it is due at `now`.
    pub fn ping_if_due(&mut self, now: Instant, status: impl FnOnce() -> String) {
        let Some(every) = self.watchdog_every else {
            return;
        };
        if now >= self.next_ping {
            self.send(&format!("WATCHDOG=1\nSTATUS={}", status()));
            self.next_ping = now + every;
        }
    }
}
