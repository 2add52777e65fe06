//! The records a handler has taken but not yet written: their headers in a
//! buffer of its own, their payloads where they arrived (the receive slots of
//! [`crate::sys::Batch`]), written together with one gathering `writev`
//! ([`crate::pcap::PcapFile::append_parts`]). Plain capture copies a datagram
//! once, kernel to slot; the write takes it from there. Bytes that lie nowhere
//! stable (a unit reassembled across TCP reads, synthesized IP/UDP headers) are
//! copied into the buffer.
//!
//! A payload part refers to the slots by offset, so the slots must not be
//! reused until the records are written: the capturer announces every reuse
//! ([`crate::capture::capturer::Delivery::Reuse`]) and the manager writes every
//! handler with pending records first. Outside a drain nothing refers to the
//! slots; a write then passes no slot memory, and a part that would need it is
//! refused, never written as garbage.

use std::io;
use std::ops::Range;

use crate::pcap::PcapFile;

/// Pending records of one handler.
#[derive(Debug, Default)]
pub struct Pending {
    /// Record headers and copied bytes, in write order with the slot parts.
    own: Vec<u8>,
    /// The parts in order; an `Own` part is a range of `own`.
    parts: Vec<Part>,
    /// Start of the bytes of `own` not yet in a part.
    own_mark: usize,
    /// Bytes in slot parts.
    slot_bytes: usize,
    records: u64,
}

#[derive(Clone, Debug)]
enum Part {
    Own(Range<usize>),
    /// Offset and length in the slot memory.
    Slot(usize, usize),
}

impl Pending {
    /// The buffer the next bytes of the current record are appended to (its
    /// header, synthesized headers).
    pub fn own(&mut self) -> &mut Vec<u8> {
        &mut self.own
    }

    /// Appends `payload` to the current record: referred to where it lies if it
    /// lies in `slots`, copied otherwise.
    pub fn payload(&mut self, payload: &[u8], slots: &[u8]) {
        let base = slots.as_ptr() as usize;
        let at = payload.as_ptr() as usize;
        let inside = at >= base && at + payload.len() <= base + slots.len();
        if payload.is_empty() || !inside {
            self.own.extend_from_slice(payload);
            return;
        }
        self.close_own_run();
        let off = at - base;
        match self.parts.last_mut() {
            Some(Part::Slot(o, l)) if *o + *l == off => *l += payload.len(),
            _ => self.parts.push(Part::Slot(off, payload.len())),
        }
        self.slot_bytes += payload.len();
    }

    /// The current record is complete.
    pub fn end_record(&mut self) {
        self.records += 1;
    }

    /// Makes the bytes of `own` not yet in a part the next part.
    fn close_own_run(&mut self) {
        let end = self.own.len();
        if end == self.own_mark {
            return;
        }
        match self.parts.last_mut() {
            Some(Part::Own(r)) if r.end == self.own_mark => r.end = end,
            _ => self.parts.push(Part::Own(self.own_mark..end)),
        }
        self.own_mark = end;
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.own.is_empty()
    }

    /// Bytes pending in all.
    pub fn len(&self) -> usize {
        self.own.len() + self.slot_bytes
    }

    /// Bytes pending in the handler's own buffer (headers and copies).
    pub fn own_len(&self) -> usize {
        self.own.len()
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Capacity of the own buffer, for giving memory back after a burst.
    pub fn capacity(&self) -> usize {
        self.own.capacity()
    }

    pub fn shrink_to(&mut self, keep: usize) {
        self.own.shrink_to(keep);
        self.parts.shrink_to(keep / 64);
    }

    /// Writes every pending record to `file`, payloads from `slots` (empty
    /// outside a drain), and forgets them, written or not. Returns the bytes
    /// written; on an error nothing of these records stays in the file.
    pub fn write_to(&mut self, file: &mut PcapFile, slots: &[u8]) -> io::Result<u64> {
        self.close_own_run();
        let fits = self.parts.iter().all(|p| match p {
            Part::Own(_) => true,
            Part::Slot(off, len) => off + len <= slots.len(),
        });
        let outcome = if !fits {
            Err(io::Error::other(
                "internal error: records refer to receive slots no longer held; they are dropped, the file is intact",
            ))
        } else {
            let (own, slots) = (&self.own, slots);
            let parts = self.parts.iter().map(|p| match p {
                Part::Own(r) => &own[r.clone()],
                Part::Slot(off, len) => &slots[*off..off + len],
            });
            let bytes = self.len() as u64;
            file.append_parts(parts, self.records).map(|()| bytes)
        };
        self.clear();
        outcome
    }

    /// Forgets every pending record.
    pub fn clear(&mut self) {
        self.own.clear();
        self.parts.clear();
        self.own_mark = 0;
        self.slot_bytes = 0;
        self.records = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes `p` would write, gathered as the file gets them.
    fn gathered(p: &mut Pending, slots: &[u8]) -> Vec<u8> {
        p.close_own_run();
        p.parts
            .iter()
            .flat_map(|part| match part {
                Part::Own(r) => p.own[r.clone()].to_vec(),
                Part::Slot(off, len) => slots[*off..off + len].to_vec(),
            })
            .collect()
    }

    #[test]
    fn payloads_in_the_slots_are_referred_to_others_copied() {
        let slots: Vec<u8> = (0..=255).collect();
        let elsewhere = vec![7u8; 5];
        let mut p = Pending::default();
        p.own().extend_from_slice(b"H1");
        p.payload(&slots[10..20], &slots);
        p.end_record();
        p.own().extend_from_slice(b"H2");
        p.payload(&elsewhere, &slots);
        p.end_record();
        p.own().extend_from_slice(b"H3");
        p.payload(&slots[0..0], &slots);
        p.end_record();
        p.own().extend_from_slice(b"H4");
        p.payload(&slots[250..256], &slots);
        p.end_record();
        assert_eq!(p.records(), 4);
        assert_eq!(p.own_len(), 2 + 2 + 5 + 2 + 2);
        assert_eq!(p.len(), p.own_len() + 10 + 6);
        let mut want = b"H1".to_vec();
        want.extend_from_slice(&slots[10..20]);
        want.extend_from_slice(b"H2");
        want.extend_from_slice(&elsewhere);
        want.extend_from_slice(b"H3H4");
        want.extend_from_slice(&slots[250..256]);
        assert_eq!(gathered(&mut p, &slots), want);
        // H2, the copy, H3 and H4 form one part between the two slot parts.
        assert_eq!(p.parts.len(), 4);
    }

    #[test]
    fn adjacent_slot_payloads_are_one_part() {
        let slots = vec![1u8; 100];
        let mut p = Pending::default();
        p.payload(&slots[0..10], &slots);
        p.payload(&slots[10..30], &slots);
        assert_eq!(p.parts.len(), 1);
        assert_eq!(gathered(&mut p, &slots).len(), 30);
    }
}
