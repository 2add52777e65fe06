//! The manager's side of live forwarding ([`crate::relay`]): a handler's
//! targets opened when it starts and closed when it stops, the units of a
//! batch sent once the batch is written (while capture is behind, its socket
//! over half full, once the socket is dry), target readiness routed by token,
//! and the targets' timers (TCP connects and back-offs), which this file
//! owns.
//!
//! Invariants:
//! - a handler's targets live in its [`Relay`] (the handler offers each unit
//!   it records); target `i` of handler `hid` has the token
//!   [`tokens::relay_target`]`(hid, i)` while the handler runs;
//! - no target leads back into bsc (its API, a capture socket): checked for
//!   each handler added, against those running ([`Manager::refuse_loops`]);
//! - every target waiting for a connect or a back-off has an entry in
//!   [`RelayTimers`] (entries may be stale, e.g. for a handler since removed:
//!   a target checks its own deadline when one fires).

use std::collections::BTreeSet;
use std::time::Instant;

use mio::Registry;

use super::handlers::Handlers;
use super::{AddError, HandlerId, Manager};
use crate::clock::UnixMicros;
use crate::config::{loops, HandlerSpec};
use crate::relay::Relay;
use crate::tokens;

/// The forward targets' timers: (when, handler, target).
#[derive(Debug, Default)]
pub struct RelayTimers(BTreeSet<(Instant, HandlerId, usize)>);

impl RelayTimers {
    /// Sends what each of `ids`' targets take now (after a batch is written).
    pub fn send(
        &mut self,
        handlers: &mut Handlers,
        ids: &[HandlerId],
        registry: &Registry,
        now: Instant,
    ) {
        for &hid in ids {
            if let Some(relay) = handlers.get_mut(hid).and_then(|h| h.relay_mut()) {
                relay.send(registry, now, |i, at| {
                    self.0.insert((at, hid, i));
                });
            }
        }
    }

    /// The earliest target deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.0.first().map(|(at, _, _)| *at)
    }
}

impl Manager {
    /// Refuses `spec` (about to be added) if a forward target would lead back
    /// into bsc: its API (400), or the capture socket of a running handler;
    /// or if a running handler forwards to its capture socket (409; see
    /// [`crate::config::loops`]).
    pub(super) fn refuse_loops(&self, spec: &HandlerSpec) -> Result<(), AddError> {
        if let Some(api) = &self.api {
            loops::refuse_api(spec, api).map_err(AddError::Invalid)?;
        }
        self.handlers()
            .try_for_each(|(_, h)| {
                loops::refuse_into(spec, h.spec()).and_then(|()| loops::refuse_into(h.spec(), spec))
            })
            .map_err(AddError::Conflict)
    }

    /// Opens the forward targets of handler `hid` (just added), if it has any.
    pub(super) fn open_relay(
        &mut self,
        hid: HandlerId,
        registry: &Registry,
        now: Instant,
    ) -> Result<(), AddError> {
        let Some(h) = self.handlers.get_mut(hid) else {
            return Ok(());
        };
        let spec = h.spec();
        if spec.forward.is_empty() {
            return Ok(());
        }
        if hid >= tokens::MAX_RELAYING_HANDLERS {
            return Err(AddError::Socket(format!(
                "cannot forward: {} handlers run, and bsc can watch the targets of the first {} only",
                hid + 1,
                tokens::MAX_RELAYING_HANDLERS
            )));
        }
        let timers = &mut self.relay_timers.0;
        let relay = Relay::open(
            &spec.forward,
            spec.forward_queue_bytes,
            |i| tokens::relay_target(hid, i),
            registry,
            now,
            |i, at| {
                timers.insert((at, hid, i));
            },
        );
        h.set_relay(relay);
        Ok(())
    }

    /// Closes the forward targets of a handler being removed.
    pub(super) fn close_relay(handler: &mut super::Handler, registry: &Registry) {
        if let Some(mut relay) = handler.take_relay() {
            relay.close(registry);
        }
    }

    /// Target `i` of handler `hid` is ready (its token fired) at `now`.
    pub fn relay_ready(
        &mut self,
        hid: HandlerId,
        i: usize,
        registry: &Registry,
        now: Instant,
        wall: UnixMicros,
    ) {
        let Some(relay) = self.handlers.get_mut(hid).and_then(|h| h.relay_mut()) else {
            return;
        };
        if let Some(at) = relay.on_ready(i, registry, now, wall) {
            self.relay_timers.0.insert((at, hid, i));
        }
    }

    /// Runs the forward targets' timers due at `now`.
    pub fn expire_relays(&mut self, registry: &Registry, now: Instant) {
        while let Some(&(at, hid, i)) = self.relay_timers.0.first() {
            if at > now {
                break;
            }
            self.relay_timers.0.pop_first();
            let Some(relay) = self.handlers.get_mut(hid).and_then(|h| h.relay_mut()) else {
                continue;
            };
            if let Some(next) = relay.on_timer(i, registry, now) {
                self.relay_timers.0.insert((next, hid, i));
            }
        }
    }
}
