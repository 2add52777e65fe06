//! The capturers sub-owner of the manager: every open socket with its mio
//! token, the TCP reconnect and connect timers, and the receive batch every
//! capturer reads into.
//!
//! Invariants:
//! - a capturer's id is its slot here and its token is [`tokens::capturer`]
//!   of that id, for as long as it is open; a closed slot is reused;
//! - one capturer per address (the manager checks before it opens one);
//! - every TCP capturer waiting for something (a back-off, a connect
//!   deadline) has an entry in `timers` (entries may be stale: they are
//!   checked when they fire), and [`Capturers::next_deadline`] is the earliest;
//! - the handlers' gathers for a batch ([`Gather`]) are handed out with the
//!   batch and borrow it: none is left when the batch is read into again
//!   (the compiler proves it; see [`crate::manager::pending`]);
//! - `behind[cid]` says whether capturer `cid` is behind: a drain used up its
//!   budget while its socket held more than half its buffer, and no drain
//!   has found it dry since (the manager then holds its handlers' forward
//!   sends); false for a closed slot;
//! - nothing here reads a clock: `now` comes from the loop.

use std::collections::BTreeSet;
use std::time::Instant;

use mio::Registry;

use super::pending::{Gather, GatherPool};
use super::{AddError, CapturerId, HandlerId};
use crate::capture::capturer::{Capturer, Drained, OpenError, Received};
use crate::clock::{UnixMicros, UnixNanos};
use crate::config::{Address, HandlerSpec, Timestamps};
use crate::sys;
use crate::tokens;
use crate::units::framing::Framing;

/// Units longer than this leave the batch's slots resident: its memory is
/// given back at the next [`Capturers::give_back_memory`].
const RELEASE_AFTER: usize = 16 * 1024;
/// Parts a gather keeps room for between bursts (plain capture needs about
/// two per unit of a batch).
const GATHER_KEEP: usize = 4 * sys::BATCH;

/// Every open capturer, its timers and the receive batch.
pub struct Capturers {
    /// By id; `None` is a closed slot.
    slab: Vec<Option<Capturer>>,
    /// TCP back-offs and connect deadlines (see the module invariants).
    timers: BTreeSet<(Instant, CapturerId)>,
    /// Received units land here: a batch of UDP or Ethernet units, or TCP reads.
    batch: sys::Batch,
    /// Units read since start, on every capturer (the loop's coalescing reads it).
    units_read: u64,
    /// The longest unit read since the memory was last given back.
    longest_unit: usize,
    /// Creation order of the next capturer (listings keep AIT's order).
    next_seq: u64,
    /// The memory of the handlers' gathers, between batches.
    gathers: GatherPool,
    /// By id: whether the capturer is behind ([`Capturers::note_drain`]);
    /// the manager sends its handlers' forward targets nothing until it is
    /// dry again.
    behind: Vec<bool>,
}

impl Default for Capturers {
    fn default() -> Self {
        Capturers::new()
    }
}

impl Capturers {
    /// No capturer yet.
    pub fn new() -> Capturers {
        Capturers {
            slab: Vec::new(),
            timers: BTreeSet::new(),
            batch: sys::Batch::new(),
            units_read: 0,
            longest_unit: 0,
            next_seq: 0,
            gathers: GatherPool::default(),
            behind: Vec::new(),
        }
    }

    /// Opens the socket `spec` names in a free slot and registers it under
    /// that slot's token; a TCP capturer starts connecting at `now` (`wall` on
    /// the calendar) and its timer is armed.
    pub fn open(
        &mut self,
        spec: &HandlerSpec,
        registry: &Registry,
        now: Instant,
        wall: UnixMicros,
    ) -> Result<CapturerId, AddError> {
        let cid = self
            .slab
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.slab.len());
        if cid >= tokens::MAX_CAPTURERS {
            return Err(AddError::Socket(format!(
                "cannot capture {}: {} capturers are open, the most bsc can watch",
                spec.address,
                tokens::MAX_CAPTURERS
            )));
        }
        let token = tokens::capturer(cid);
        let (cap, timer) = Capturer::open(spec, token, self.next_seq, registry, now, wall)
            .map_err(|e| match e {
                OpenError::Socket(m) => AddError::Socket(m),
                OpenError::Invalid(m) => AddError::Invalid(m),
            })?;
        if let Some(at) = timer {
            self.timers.insert((at, cid));
        }
        self.next_seq += 1;
        if cid == self.slab.len() {
            self.slab.push(Some(cap));
        } else {
            self.slab[cid] = Some(cap);
        }
        Ok(cid)
    }

    /// Deregisters and closes capturer `cid` (its port is free again); its
    /// timers go stale.
    pub fn close(&mut self, cid: CapturerId, registry: &Registry) {
        if let Some(behind) = self.behind.get_mut(cid) {
            *behind = false;
        }
        if let Some(cap) = self.slab.get_mut(cid).and_then(Option::take) {
            cap.close(registry);
        }
    }

    /// Capturer `cid` feeds handler `hid` too.
    pub fn attach(&mut self, cid: CapturerId, hid: HandlerId) {
        self.get_mut(cid).attach(hid);
    }

    /// Capturer `cid` stops feeding handler `hid`; returns whether it feeds none
    /// now.
    pub fn detach(&mut self, cid: CapturerId, hid: HandlerId) -> bool {
        let cap = self.get_mut(cid);
        cap.detach(hid);
        cap.handlers().is_empty()
    }

    /// Tells capturer `cid` what its handlers (their specs from `spec_of`)
    /// need of a read: whether any records the time of reading, so that it
    /// reads the clock per unit only then, and whether every one cuts a stream
    /// into units (framing), so that a TCP read may be longer than a record.
    pub fn update_needs<'s>(
        &mut self,
        cid: CapturerId,
        spec_of: impl Fn(HandlerId) -> Option<&'s HandlerSpec>,
    ) {
        let cap = self.get_mut(cid);
        let hs = cap.handlers();
        let wanted = hs
            .iter()
            .any(|&h| spec_of(h).is_some_and(|s| s.timestamps == Timestamps::Read));
        let all_frame = !hs.is_empty()
            && hs
                .iter()
                .all(|&h| spec_of(h).is_some_and(|s| s.framing != Framing::None));
        cap.set_needs(wanted, all_frame);
    }

    /// Reads from capturer `cid` (see [`Capturer::read`]) into the batch,
    /// handing `deliver` each batch with an empty gather per handler of the
    /// capturer, in the order of [`Received::handlers`] (there may be more
    /// gathers than handlers); arms the capturer's timer if the read asks for
    /// one. `now` is the loop's instant, `clock` the time of reading.
    pub fn read<C: Fn() -> UnixNanos>(
        &mut self,
        cid: CapturerId,
        registry: &Registry,
        now: Instant,
        clock: C,
        mut deliver: impl for<'b> FnMut(&mut Received<'b, C>, &mut [Gather<'b>]),
    ) -> Drained {
        let Capturers {
            slab,
            timers,
            batch,
            units_read,
            longest_unit,
            gathers,
            ..
        } = self;
        let Some(Some(cap)) = slab.get_mut(cid) else {
            return Drained::Empty;
        };
        let drained = cap.read(registry, batch, now, clock, |units| {
            let mut lists = gathers.take(units.handlers().len());
            deliver(units, &mut lists);
            gathers.recycle(lists);
            *units_read += units.taken() as u64;
            *longest_unit = (*longest_unit).max(units.longest());
        });
        if let Drained::Timer(at) | Drained::Ended(at) = drained {
            timers.insert((at, cid));
        }
        drained
    }

    /// Units read since start, on every capturer.
    pub fn units_read(&self) -> u64 {
        self.units_read
    }

    /// The earliest capturer deadline (a TCP back-off or connect timeout).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Runs the capturer timers that are due at `now`.
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        while let Some(&(at, cid)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(Some(cap)) = self.slab.get_mut(cid) {
                if let Some(next) = cap.on_timer(registry, tokens::capturer(cid), now) {
                    self.timers.insert((next, cid));
                }
            }
        }
    }

    /// After large units the batch's slots are resident, after a burst of
    /// small framed units the gathers are large: gives that memory back (once
    /// a second, from the manager's tick).
    pub fn give_back_memory(&mut self) {
        if std::mem::take(&mut self.longest_unit) > RELEASE_AFTER {
            self.batch.release();
        }
        self.gathers.shrink_to(GATHER_KEEP);
    }

    /// Every live capturer, in creation order.
    pub fn list(&self) -> Vec<(CapturerId, &Capturer)> {
        let mut caps: Vec<_> = self
            .slab
            .iter()
            .enumerate()
            .filter_map(|(id, c)| c.as_ref().map(|c| (id, c)))
            .collect();
        caps.sort_by_key(|(_, c)| c.seq);
        caps
    }

    /// A live capturer (ids handed out stay valid until it closes).
    pub fn get(&self, cid: CapturerId) -> &Capturer {
        self.slab[cid]
            .as_ref()
            .expect("capturer id refers to a live capturer")
    }

    fn get_mut(&mut self, cid: CapturerId) -> &mut Capturer {
        self.slab[cid]
            .as_mut()
            .expect("capturer id refers to a live capturer")
    }

    /// Whether capturer `cid` is behind (see [`Capturers::note_drain`]).
    pub fn is_behind(&self, cid: CapturerId) -> bool {
        self.behind.get(cid).copied().unwrap_or(false)
    }

    /// Notes how capturer `cid`'s drain ended. It falls behind when a drain
    /// uses up its budget while its socket is more than half full (capture
    /// is then at risk: forwarding waits), and stays behind until a drain
    /// finds the socket dry. A socket that holds more than a drain takes but
    /// has room to spare is not behind: forwarding goes on, and the buffer
    /// absorbs the time it takes.
    pub fn note_drain(&mut self, cid: CapturerId, drained: &Drained) {
        let behind = match (drained, self.slab.get(cid)) {
            (Drained::More, Some(Some(c))) => self.is_behind(cid) || c.is_filling(),
            _ => false,
        };
        if self.behind.len() <= cid {
            self.behind.resize(cid + 1, false);
        }
        self.behind[cid] = behind;
    }

    /// The handlers capturer `cid` feeds (none once it is closed).
    pub fn handlers_of(&self, cid: CapturerId) -> &[HandlerId] {
        match self.slab.get(cid) {
            Some(Some(cap)) => cap.handlers(),
            _ => &[],
        }
    }

    /// The capturer of an address, if one is open.
    pub fn at(&self, address: &Address) -> Option<CapturerId> {
        self.slab
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.address == *address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;
    use std::time::Duration;

    fn tcp_spec(port: u16) -> HandlerSpec {
        let v = serde_json::json!({
            "name": "t", "conn_type": "tcp", "address": ["127.0.0.1", port],
            "connect_timeout_s": 2, "reconnect_max_s": 30
        });
        HandlerSpec::from_json(v.as_object().unwrap(), Origin::ConfigFile).unwrap()
    }

    #[test]
    fn a_tcp_capturer_s_connect_deadline_then_its_back_off_are_the_next_deadline() {
        // A peer that listens but never accepts: the attempt stays "connecting"
        // until its deadline, whatever the kernel does with the handshake.
        let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = peer.local_addr().unwrap().port();
        let poll = mio::Poll::new().unwrap();
        let mut caps = Capturers::new();
        assert_eq!(caps.next_deadline(), None);
        let t0 = Instant::now();
        let cid = caps
            .open(&tcp_spec(port), poll.registry(), t0, UnixMicros(0))
            .unwrap();
        assert_eq!(tokens::capturer_of(tokens::capturer(cid)), Some(cid));
        let deadline = t0 + Duration::from_secs(2);
        assert_eq!(caps.next_deadline(), Some(deadline));
        // Not due yet: nothing changes.
        caps.expire(poll.registry(), deadline - Duration::from_millis(1));
        assert_eq!(caps.next_deadline(), Some(deadline));
        // Due: the attempt fails, the first back-off is 0.5 s with jitter.
        caps.expire(poll.registry(), deadline);
        let next = caps.next_deadline().unwrap();
        let wait = next - deadline;
        assert!(
            wait >= Duration::from_millis(375) && wait < Duration::from_millis(625),
            "{wait:?}"
        );
        assert_eq!(caps.get(cid).down_for(next), Some(next - t0));
        // The back-off ends: the next attempt has its own deadline.
        caps.expire(poll.registry(), next);
        assert_eq!(caps.next_deadline(), Some(next + Duration::from_secs(2)));
        // Closed: its timer is stale and goes when it comes.
        caps.close(cid, poll.registry());
        assert!(caps.list().is_empty());
        caps.expire(poll.registry(), next + Duration::from_secs(2));
        assert_eq!(caps.next_deadline(), None);
    }

    #[test]
    fn a_closed_slot_is_reused_with_its_token() {
        let poll = mio::Poll::new().unwrap();
        let spec = |port: u16| {
            let v = serde_json::json!({"name": "u", "conn_type": "udp", "address": ["127.0.0.1", port]});
            HandlerSpec::from_json(v.as_object().unwrap(), Origin::ConfigFile).unwrap()
        };
        let free_port = || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let mut caps = Capturers::new();
        let (now, wall) = (Instant::now(), UnixMicros(0));
        let a = caps.open(&spec(free_port()), poll.registry(), now, wall);
        let b = caps.open(&spec(free_port()), poll.registry(), now, wall);
        assert_eq!((a, b), (Ok(0), Ok(1)));
        caps.close(0, poll.registry());
        let c = caps.open(&spec(free_port()), poll.registry(), now, wall);
        assert_eq!(c, Ok(0), "the free slot");
        // Listings keep the order of creation, not of slots.
        let order: Vec<_> = caps.list().iter().map(|(id, _)| *id).collect();
        assert_eq!(order, [1, 0]);
        assert_eq!(caps.next_deadline(), None, "udp capturers have no timers");
    }

    /// Drains capturer `cid` once, taking every unit, and notes how it ended.
    fn drain_once(caps: &mut Capturers, cid: CapturerId, poll: &mio::Poll) -> Drained {
        let drained = caps.read(
            cid,
            poll.registry(),
            Instant::now(),
            || UnixNanos(0),
            |units, _| {
                for _ in units.by_ref() {}
            },
        );
        caps.note_drain(cid, &drained);
        drained
    }

    #[test]
    fn a_capturer_is_behind_only_while_its_socket_is_over_half_full_until_it_runs_dry() {
        let poll = mio::Poll::new().unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // 8 MiB asked (16 MiB granted, as root): 1 KiB datagrams are charged
        // about 2.3 KB each, so 1,500 fit in under half and 6,000 in over it
        // even after a drain (1,024) took its share.
        let v = serde_json::json!({"name": "u", "conn_type": "udp",
                                   "address": ["127.0.0.1", port], "rcvbuf_bytes": 8 << 20});
        let spec = HandlerSpec::from_json(v.as_object().unwrap(), Origin::ConfigFile).unwrap();
        let mut caps = Capturers::new();
        let cid = caps
            .open(&spec, poll.registry(), Instant::now(), UnixMicros(0))
            .unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let send = |n: usize| {
            for _ in 0..n {
                tx.send_to(&[7u8; 1024], ("127.0.0.1", port)).unwrap();
            }
        };
        // More than a drain takes, with room to spare: not behind.
        send(1500);
        assert_eq!(drain_once(&mut caps, cid, &poll), Drained::More);
        assert!(!caps.is_behind(cid));
        assert_eq!(drain_once(&mut caps, cid, &poll), Drained::Empty);
        // Over half full after a drain: behind, and behind while drains take
        // their budget, whatever the fill; no longer once one runs dry.
        send(6000);
        assert_eq!(drain_once(&mut caps, cid, &poll), Drained::More);
        assert!(caps.is_behind(cid));
        for _ in 0..3 {
            assert_eq!(drain_once(&mut caps, cid, &poll), Drained::More);
            assert!(caps.is_behind(cid), "until the socket runs dry");
        }
        while drain_once(&mut caps, cid, &poll) == Drained::More {}
        assert!(!caps.is_behind(cid));
        assert_eq!(caps.get(cid).kernel_drops(), 0, "every datagram fitted");
        // A closed capturer is never behind.
        send(6000);
        drain_once(&mut caps, cid, &poll);
        assert!(caps.is_behind(cid));
        caps.close(cid, poll.registry());
        assert!(!caps.is_behind(cid));
    }
}
