//! One target's queue of units, sans I/O: the bytes as they go on the wire
//! (a unit, behind its length for `tcp+len://`) in one buffer, and where
//! each unit ends. Bounded: a unit that would take it past its limit is
//! refused (the caller counts it dropped), never waited for.
//!
//! A stream sender takes [`UnitQueue::unsent`] and reports what the socket
//! took with [`UnitQueue::advance`]; the unit it was in the middle of when the
//! connection died is given up whole ([`UnitQueue::abandon_partial`]), so the
//! next connection starts at a unit's first byte. A datagram sender takes
//! whole units ([`UnitQueue::front_units`], [`UnitQueue::pop`]).

use std::collections::VecDeque;

/// Bytes a drained queue keeps allocated; more is given back.
const KEEP: usize = 256 << 10;

/// A bounded queue of whole units.
#[derive(Debug)]
pub struct UnitQueue {
    /// The wire bytes; those before `head` are sent.
    buf: Vec<u8>,
    head: usize,
    /// Each queued unit's wire length, oldest first.
    lens: VecDeque<usize>,
    /// Bytes of the oldest unit already sent (a stream's partial write).
    front_sent: usize,
    /// Most wire bytes queued at once.
    limit: usize,
}

impl UnitQueue {
    /// An empty queue holding at most `limit` bytes.
    pub fn new(limit: usize) -> UnitQueue {
        UnitQueue {
            buf: Vec::new(),
            head: 0,
            lens: VecDeque::new(),
            front_sent: 0,
            limit,
        }
    }

    /// Queues `unit`, behind its 4-byte big-endian length when `prefixed`.
    /// Returns `false`, queuing nothing, when it does not fit.
    pub fn push(&mut self, unit: &[u8], prefixed: bool) -> bool {
        let len = unit.len() + if prefixed { 4 } else { 0 };
        if self.queued_bytes() + len > self.limit || (prefixed && unit.len() > u32::MAX as usize) {
            return false;
        }
        if self.head > 0 && self.head >= self.buf.len() / 2 {
            // Sent bytes are at least half the buffer: move the rest down.
            self.buf.drain(..self.head);
            self.head = 0;
        }
        if prefixed {
            self.buf
                .extend_from_slice(&(unit.len() as u32).to_be_bytes());
        }
        self.buf.extend_from_slice(unit);
        self.lens.push_back(len);
        true
    }

    /// Units waiting (one partly sent included).
    pub fn units(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Wire bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Bytes allocated (what the queue costs in memory).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Every byte not yet sent, from where the stream stopped.
    pub fn unsent(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    /// `n` bytes of [`UnitQueue::unsent`] went on the wire. Returns the units
    /// and their bytes (without prefix) completed by it.
    pub fn advance(&mut self, n: usize, prefixed: bool) -> (u64, u64) {
        let n = n.min(self.queued_bytes());
        self.head += n;
        self.front_sent += n;
        let (mut units, mut bytes) = (0, 0);
        while let Some(&len) = self.lens.front() {
            if self.front_sent < len {
                break;
            }
            self.front_sent -= len;
            self.lens.pop_front();
            units += 1;
            bytes += (len - if prefixed { 4 } else { 0 }) as u64;
        }
        self.settle();
        (units, bytes)
    }

    /// The connection died: the unit partly sent, if any, is given up (the
    /// rest of it would be half a unit on the next connection). Returns
    /// whether one was.
    pub fn abandon_partial(&mut self) -> bool {
        if self.front_sent == 0 {
            return false;
        }
        let len = self.lens.pop_front().unwrap_or(0);
        self.head += len - self.front_sent;
        self.front_sent = 0;
        self.settle();
        true
    }

    /// The oldest units whole, as many as `out` holds, for a datagram sender
    /// (which never sends part of one). Returns how many it put there.
    pub fn front_units<'a>(&'a self, out: &mut [&'a [u8]]) -> usize {
        debug_assert_eq!(self.front_sent, 0);
        let mut at = self.head;
        let mut n = 0;
        for (slot, &len) in out.iter_mut().zip(self.lens.iter()) {
            *slot = &self.buf[at..at + len];
            at += len;
            n += 1;
        }
        n
    }

    /// The oldest `n` units were sent whole (datagrams). Returns their bytes.
    pub fn pop(&mut self, n: usize) -> u64 {
        let mut bytes = 0;
        for _ in 0..n {
            let Some(len) = self.lens.pop_front() else {
                break;
            };
            self.head += len;
            bytes += len as u64;
        }
        self.settle();
        bytes
    }

    /// Empty again: the buffer starts over, and memory past [`KEEP`] goes back.
    fn settle(&mut self) {
        if self.lens.is_empty() {
            self.buf.clear();
            self.head = 0;
            self.front_sent = 0;
            self.buf.shrink_to(KEEP);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_units_whole() {
        let mut q = UnitQueue::new(10);
        assert!(q.push(b"abcd", false));
        assert!(q.push(b"efgh", false));
        assert!(!q.push(b"ijk", false), "11 > 10: refused");
        assert!(q.push(b"ij", false));
        assert_eq!((q.units(), q.queued_bytes()), (3, 10));
        assert_eq!(q.unsent(), b"abcdefghij");
    }

    #[test]
    fn lengths_go_before_units_when_prefixed() {
        let mut q = UnitQueue::new(100);
        assert!(q.push(b"xyz", true));
        assert_eq!(q.unsent(), b"\0\0\0\x03xyz");
        assert_eq!(q.advance(7, true), (1, 3));
        assert!(q.is_empty());
    }

    #[test]
    fn a_stream_resumes_at_the_next_whole_unit_after_a_partial_write() {
        let mut q = UnitQueue::new(100);
        for u in [&b"aaaa"[..], b"bbbb", b"cccc"] {
            assert!(q.push(u, false));
        }
        assert_eq!(q.advance(6, false), (1, 4), "aaaa whole, bb of bbbb");
        assert_eq!(q.unsent(), b"bbcccc");
        assert!(q.abandon_partial());
        assert!(!q.abandon_partial(), "nothing partial any more");
        assert_eq!(q.unsent(), b"cccc", "the rest of bbbb is not sent");
        assert_eq!(q.units(), 1);
        assert_eq!(q.advance(4, false), (1, 4));
        assert!(q.is_empty() && q.unsent().is_empty());
    }

    #[test]
    fn datagram_senders_take_whole_units_in_order() {
        let mut q = UnitQueue::new(100);
        for u in [&b"a"[..], b"bb", b"ccc"] {
            assert!(q.push(u, false));
        }
        let mut two: [&[u8]; 2] = [&[]; 2];
        assert_eq!(q.front_units(&mut two), 2);
        assert_eq!(two, [&b"a"[..], b"bb"]);
        assert_eq!(q.pop(2), 3);
        let mut many: [&[u8]; 64] = [&[]; 64];
        assert_eq!(q.front_units(&mut many), 1);
        assert_eq!(many[0], b"ccc");
    }

    #[test]
    fn memory_stays_bounded_under_steady_partial_draining() {
        let mut q = UnitQueue::new(4096);
        let unit = [7u8; 100];
        for _ in 0..10_000 {
            while q.push(&unit, true) {}
            q.advance(1000, true);
        }
        assert!(q.queued_bytes() <= 4096);
        assert!(q.capacity() <= 4 * 4096, "capacity {}", q.capacity());
        // Every byte left is still a whole number of units from a boundary.
        let n = q.queued_bytes();
        let partial = q.abandon_partial();
        assert_eq!(q.queued_bytes() % 104, 0, "{n} {partial}");
    }
}
