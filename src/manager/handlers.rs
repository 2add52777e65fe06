//! The handlers, as the manager keeps them: every live handler by id and the
//! rotation timers.
//!
//! Invariants:
//! - the records a handler took from a batch that refer to its slots are
//!   written, with one gathering `writev` from its [`Gather`], before the
//!   batch is read into again (the gather borrows the batch); records copied
//!   whole may wait for the next batches of the drain: nothing is pending once
//!   a drain returns;
//! - every open file with a rotation deadline has an entry in `timers`
//!   (entries may be stale: they are checked when they fire).

use std::collections::BTreeSet;

use super::handler::{Cx, Handler, Recorded, FLUSH_AT, FLUSH_AT_DATAGRAMS};
use super::pending::Gather;
use super::HandlerId;
use crate::capture::capturer::Unit;
use crate::clock::UnixMicros;

/// Every live handler and its rotation timer.
#[derive(Debug, Default)]
pub struct Handlers {
    slab: Vec<Option<Handler>>,
    timers: BTreeSet<(UnixMicros, HandlerId)>,
}

impl Handlers {
    /// Adds a handler (its file's rotation deadline, if it resumed one, in
    /// `rotate_at`) and returns its id: the first free one.
    pub fn insert(&mut self, handler: Handler, rotate_at: Option<UnixMicros>) -> HandlerId {
        let hid = self
            .slab
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.slab.len());
        if hid == self.slab.len() {
            self.slab.push(Some(handler));
        } else {
            self.slab[hid] = Some(handler);
        }
        if let Some(at) = rotate_at {
            self.timers.insert((at, hid));
        }
        hid
    }

    /// Takes a handler out (its file still open: the caller closes it).
    pub fn take(&mut self, hid: HandlerId) -> Option<Handler> {
        self.slab.get_mut(hid)?.take()
    }

    /// A live handler.
    pub fn get(&self, hid: HandlerId) -> Option<&Handler> {
        self.slab.get(hid).and_then(Option::as_ref)
    }

    /// A live handler, to change.
    pub fn get_mut(&mut self, hid: HandlerId) -> Option<&mut Handler> {
        self.slab.get_mut(hid).and_then(Option::as_mut)
    }

    /// Every live handler with its id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (HandlerId, &Handler)> {
        self.slab
            .iter()
            .enumerate()
            .filter_map(|(id, h)| h.as_ref().map(|h| (id, h)))
    }

    /// The running handler of a journal key (name and address), if any.
    pub fn of_key(&self, key: &str) -> Option<HandlerId> {
        self.iter()
            .find(|(_, h)| h.journal_key() == key)
            .map(|(id, _)| id)
    }

    /// The running handler named `name` first in id order, if any.
    pub fn first_named(&self, name: &str) -> Option<HandlerId> {
        self.iter()
            .find(|(_, h)| h.spec().name == name)
            .map(|(id, _)| id)
    }

    /// Arms the rotation timer of `hid` at `at`.
    pub fn arm(&mut self, hid: HandlerId, at: UnixMicros) {
        self.timers.insert((at, hid));
    }

    /// Gives one received unit to the handler `hid` (its records' payloads go
    /// into `gather`, this handler's for the batch): arms the timer of a file
    /// it opened, and has it write at once when its own buffer is full (a
    /// burst of framed TCP). Returns the bytes written now.
    pub fn deliver<'b>(
        &mut self,
        hid: HandlerId,
        unit: &Unit<'b>,
        gather: &mut Gather<'b>,
        cx: &mut Cx,
    ) -> u64 {
        // Handler ids in a capturer always refer to live handlers.
        let Some(Some(h)) = self.slab.get_mut(hid) else {
            return 0;
        };
        let Recorded { rotate_at, .. } = h.record(unit, gather, cx);
        // Units copied in a burst (framed TCP, a drain of small datagrams):
        // write now rather than hold them all.
        let limit = match unit.stream {
            true => FLUSH_AT,
            false => FLUSH_AT_DATAGRAMS,
        };
        let written = if h.pending_own_bytes() >= limit {
            h.flush_from(cx, gather)
        } else {
            0
        };
        if let Some(at) = rotate_at {
            self.timers.insert((at, hid));
        }
        written
    }

    /// Has the handler `hid` write the records it took from a batch, from
    /// `gather` (its, for the batch). Returns the bytes written.
    pub fn flush(&mut self, hid: HandlerId, gather: &mut Gather, cx: &mut Cx) -> u64 {
        match self.slab.get_mut(hid) {
            Some(Some(h)) => h.flush_from(cx, gather),
            _ => 0,
        }
    }

    /// The earliest rotation deadline, if any file is open with one.
    pub fn next_deadline(&self) -> Option<UnixMicros> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Closes every file whose rotation period has ended by `cx.now`.
    pub fn expire(&mut self, cx: &mut Cx) {
        while let Some(&(at, hid)) = self.timers.first() {
            if at > cx.now {
                break;
            }
            self.timers.pop_first();
            if let Some(Some(h)) = self.slab.get_mut(hid) {
                h.close_if_due(cx);
            }
        }
    }

    /// Once a second, every handler's upkeep ([`Handler::maintain`]).
    pub fn maintain(&mut self, cx: &mut Cx) {
        for h in self.slab.iter_mut().flatten() {
            h.maintain(cx);
        }
    }

    /// Flushes and closes every handler's file (at shutdown).
    pub fn close_all(&mut self, cx: &mut Cx) {
        for h in self.slab.iter_mut().flatten() {
            h.close(cx);
        }
    }

    /// Has every handler count units as lost (`true`: the disk budget found no
    /// room) or write them again.
    pub fn set_suspended(&mut self, suspended: bool) {
        for h in self.slab.iter_mut().flatten() {
            h.set_suspended(suspended);
        }
    }
}
