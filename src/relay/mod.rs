//! Live forwarding (the `forward` key): every unit a handler records also goes,
//! as it is recorded, to the targets it names ([`crate::config::relay_target`]).
//! Not store and forward (closed files to a command: `ops::hooks`).
//!
//! | file | its job |
//! |---|---|
//! | `mod.rs` | [`Relay`]: one handler's targets; units offered to each, sent after each batch |
//! | `target.rs` | [`Target`]: one target's socket (UDP: `sendmmsg`, runs of one length offloaded; TCP: [`crate::capture::tcp::TcpClient`]), queue and counters |
//! | `queue.rs` | [`queue::UnitQueue`]: the bounded queue of whole units, sans I/O |
//!
//! Invariants:
//! - **the recording comes first**: offering a unit copies it into each
//!   target's queue or drops it (counted) when that queue is full; nothing
//!   here blocks or waits for a target, and one target's state never touches
//!   another's queue; while capture is behind (a drain used its budget with
//!   the capture socket over half full: bsc's core cannot both receive and
//!   send what comes in), the manager sends nothing until the socket is dry,
//!   so units wait here or are dropped;
//! - a target gets exactly the units the handler records (after framing and
//!   transforms) that its filter keeps, in order, whole: a UDP target one
//!   datagram per unit; a TCP target after a reconnect starts at a unit's
//!   first byte (the unit cut by the dying connection is dropped, counted);
//! - each target has one token ([`crate::tokens::relay_target`]); the manager
//!   owns its timers and routes its readiness; nothing here reads a clock.

pub mod queue;
mod target;

use std::time::Instant;

use mio::{Registry, Token};

use crate::clock::UnixMicros;
use crate::config::relay_target::RelayTarget;
pub use target::{Counters, Target, RECONNECT_MAX};

/// One handler's forward targets.
pub struct Relay {
    targets: Vec<Target>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.targets.iter().map(|t| t.spec().url()))
            .finish()
    }
}

impl Relay {
    /// Opens every target of `specs`, target `i` under `token(i)`; `arm` is
    /// told each target's first timer (a TCP target connects when it fires).
    pub fn open(
        specs: &[RelayTarget],
        queue_bytes: usize,
        token: impl Fn(usize) -> Token,
        registry: &Registry,
        now: Instant,
        mut arm: impl FnMut(usize, Instant),
    ) -> Relay {
        let targets = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let seed = token(i).0 as u64 ^ 0x9e37_79b9_7f4a_7c15;
                let (t, timer) = Target::open(spec, queue_bytes, token(i), registry, seed, now);
                if let Some(at) = timer {
                    arm(i, at);
                }
                t
            })
            .collect();
        Relay { targets }
    }

    /// Offers one recorded unit to every target.
    pub fn offer(&mut self, unit: &[u8]) {
        for t in &mut self.targets {
            t.offer(unit);
        }
    }

    /// Sends what each target's socket takes now (after a batch); `arm` is
    /// told the retry of a TCP target whose connection died.
    pub fn send(&mut self, registry: &Registry, now: Instant, mut arm: impl FnMut(usize, Instant)) {
        for (i, t) in self.targets.iter_mut().enumerate() {
            if let Some(at) = t.send(registry, now) {
                arm(i, at);
            }
        }
    }

    /// Target `i`'s socket is ready (see [`Target::on_ready`]).
    pub fn on_ready(
        &mut self,
        i: usize,
        registry: &Registry,
        now: Instant,
        wall: UnixMicros,
    ) -> Option<Instant> {
        self.targets.get_mut(i)?.on_ready(registry, now, wall)
    }

    /// Target `i`'s timer fired (see [`Target::on_timer`]).
    pub fn on_timer(&mut self, i: usize, registry: &Registry, now: Instant) -> Option<Instant> {
        self.targets.get_mut(i)?.on_timer(registry, now)
    }

    /// Deregisters every target's socket (the handler is going away).
    pub fn close(&mut self, registry: &Registry) {
        for t in &mut self.targets {
            t.close(registry);
        }
    }

    /// Every target, in the order `forward` lists them.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }
}
