//! The records a handler has taken but not yet written: their headers in a
//! buffer of its own ([`Pending`]), their payloads where they arrived (the
//! receive slots of [`crate::sys::Batch`]), written together with one
//! gathering `writev` ([`crate::files::pcap::PcapFile::append_parts`]). Plain capture
//! copies a datagram of [`COPY_BELOW`] bytes or more once, kernel to slot; the
//! write takes it from there. Shorter payloads, and bytes that lie nowhere
//! stable (a unit reassembled across TCP reads, synthesized IP/UDP headers),
//! are copied into the buffer beside their header.
//!
//! **The slot rule, by type.** The write order (header, payload, header, ...)
//! of the records taken from one batch is a [`Gather<'b>`]: parts of the
//! handler's buffer by range, payloads as slices borrowed from the batch for
//! `'b`. A handler keeps its buffer across batches, but a gather lives only
//! while the batch is borrowed ([`crate::capture::capturer::Received`]): the
//! compiler proves that no part refers to a slot once the capturer reads
//! into the slots again (as `bytes::Buf::chunks_vectored` ties its
//! `IoSlice`s to the buffer). The manager writes every handler whose gather
//! refers to the batch before the batch ends (the others at the end of the
//! drain, their records all in their buffer); gathers are kept empty in a
//! [`GatherPool`] between batches, so no batch allocates.
//!
//! What stays checked at run time is only that a handler writes with the
//! gather its records went into ([`Pending::write_to`] compares the number of
//! parts): a drain that dropped a gather unwritten loses those records
//! (counted), it never writes a header without its payload. Outside a batch
//! ([`Gather::copying`]) payloads are copied, never referred to.

use std::io;
use std::ops::Range;

use crate::files::pcap::PcapFile;

/// Payloads shorter than this are copied beside their record header rather
/// than referred to in their slot: for small records the kernel's work per
/// piece of a `writev` costs more than the copy. Measured with `make bench`'s
/// goals section (5 alternating runs, twice each way, bsc pinned to its own
/// core, tmpfs): CPU per datagram at the generator's maximum 64 B 1.15 ->
/// 1.01-1.10 us, 1 KiB 1.79-1.87 -> 1.66-1.77 us, and about a third less
/// loss there; no difference for framed TCP (256-byte units), nor at 1 KiB in
/// the noisier unpinned `udp` section. From 8,000 B up, referring is what
/// brings bsc to the writing reference (docs/performance.md).
pub const COPY_BELOW: usize = 2048;

/// One part of a gathering write.
#[derive(Clone, Debug)]
enum Part<'b> {
    /// A range of the handler's own buffer.
    Own(Range<usize>),
    /// A payload where it arrived, in the batch's slots.
    Slot(&'b [u8]),
}

/// The write order of one handler's records taken from one batch: payloads
/// borrowed from the batch, headers and copies by range of the handler's
/// buffer.
#[derive(Debug)]
pub struct Gather<'b> {
    parts: Vec<Part<'b>>,
    /// Whether payloads may be referred to where they lie (`false`: copied).
    refers: bool,
}

impl Gather<'_> {
    /// A gather outside any batch: every payload is copied into the handler's
    /// buffer (no memory to borrow).
    pub fn copying() -> Gather<'static> {
        Gather {
            parts: Vec::new(),
            refers: false,
        }
    }

    /// Whether no part waits in it.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The same list, emptied, with its memory, free of the batch.
    fn emptied(self) -> Gather<'static> {
        let mut parts = self.parts;
        parts.clear();
        // Nothing is left to map, so the lifetime can change; the allocation
        // is reused in place (the same layout).
        let parts = parts
            .into_iter()
            .map(|p| match p {
                Part::Own(r) => Part::Own(r),
                Part::Slot(_) => Part::Own(0..0),
            })
            .collect();
        Gather {
            parts,
            refers: true,
        }
    }
}

/// Gathers kept empty between batches (their memory), one per handler of the
/// capturer being read.
#[derive(Debug, Default)]
pub struct GatherPool(Vec<Gather<'static>>);

impl GatherPool {
    /// At least `n` empty gathers for the batch now borrowed for `'b` (the
    /// first `n` are the handlers'); give them back with [`GatherPool::recycle`].
    pub fn take<'b>(&mut self, n: usize) -> Vec<Gather<'b>> {
        // A gather free of any batch is one for this batch too (covariance).
        let mut lists: Vec<Gather<'b>> = std::mem::take(&mut self.0);
        if lists.len() < n {
            lists.resize_with(n, || Gather {
                parts: Vec::new(),
                refers: true,
            });
        }
        lists
    }

    /// Keeps the memory of `lists` for the next batch; whatever they still
    /// held is dropped (the manager wrote it before).
    pub fn recycle(&mut self, lists: Vec<Gather<'_>>) {
        self.0 = lists.into_iter().map(Gather::emptied).collect();
    }

    /// Gives back the memory of gathers past `keep` parts each (after a burst
    /// of small framed units).
    pub fn shrink_to(&mut self, keep: usize) {
        for g in &mut self.0 {
            g.parts.shrink_to(keep);
        }
    }
}

/// Pending records of one handler: what stays with it between batches.
#[derive(Debug, Default)]
pub struct Pending {
    /// Record headers and copied bytes, in write order with the slot parts.
    own: Vec<u8>,
    /// Start of the bytes of `own` not yet in a part.
    own_mark: usize,
    /// Parts put in the gather since the last write (see the module doc).
    parts: usize,
    /// Bytes in slot parts.
    slot_bytes: usize,
    records: u64,
}

impl Pending {
    /// The buffer the next bytes of the current record are appended to (its
    /// header, synthesized headers).
    pub fn own(&mut self) -> &mut Vec<u8> {
        &mut self.own
    }

    /// Appends `payload` to the current record: referred to where it lies if it
    /// lies in `within` (the unit as it arrived, borrowed from the batch), is
    /// [`COPY_BELOW`] bytes or more and `gather` refers; copied otherwise.
    #[inline]
    pub fn payload<'b>(&mut self, payload: &[u8], within: &'b [u8], gather: &mut Gather<'b>) {
        let base = within.as_ptr() as usize;
        let at = payload.as_ptr() as usize;
        let inside = at >= base && at + payload.len() <= base + within.len();
        if payload.len() < COPY_BELOW || !inside || !gather.refers {
            self.own.extend_from_slice(payload);
            return;
        }
        self.close_own_run(gather);
        let off = at - base;
        let end = off + payload.len();
        self.slot_bytes += payload.len();
        // Right after the previous payload, in the same unit: one part.
        if let Some(Part::Slot(prev)) = gather.parts.last_mut() {
            let start = prev.as_ptr() as usize;
            if start >= base && start + prev.len() == at {
                *prev = &within[start - base..end];
                return;
            }
        }
        gather.parts.push(Part::Slot(&within[off..end]));
        self.parts += 1;
    }

    /// The current record is complete.
    #[inline]
    pub fn end_record(&mut self) {
        self.records += 1;
    }

    /// Makes the bytes of `own` not yet in a part the next part.
    #[inline]
    fn close_own_run(&mut self, gather: &mut Gather<'_>) {
        let end = self.own.len();
        if end == self.own_mark {
            return;
        }
        match gather.parts.last_mut() {
            Some(Part::Own(r)) if r.end == self.own_mark => r.end = end,
            _ => {
                gather.parts.push(Part::Own(self.own_mark..end));
                self.parts += 1;
            }
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
    }

    /// Writes every pending record to `file`, payloads from `gather` (the one
    /// the records went into; [`Gather::copying`] outside a batch), and forgets
    /// them, written or not. Returns the bytes written; on an error nothing of
    /// these records stays in the file.
    pub fn write_to(&mut self, file: &mut PcapFile, gather: &mut Gather<'_>) -> io::Result<u64> {
        let outcome = if gather.parts.len() != self.parts {
            Err(io::Error::other(
                "internal error: records refer to receive slots no longer held; they are dropped, the file is intact",
            ))
        } else {
            let bytes = self.len() as u64;
            if self.parts == 0 {
                // Nothing refers elsewhere: the buffer is the records.
                file.append_parts(std::iter::once(&self.own[..]), self.records)
            } else {
                self.close_own_run(gather);
                let own = &self.own;
                let parts = gather.parts.iter().map(|p| match p {
                    Part::Own(r) => &own[r.clone()],
                    Part::Slot(s) => *s,
                });
                file.append_parts(parts, self.records)
            }
            .map(|()| bytes)
        };
        self.clear(gather);
        outcome
    }

    /// Forgets every pending record (and the parts of `gather`).
    pub fn clear(&mut self, gather: &mut Gather<'_>) {
        self.own.clear();
        gather.parts.clear();
        self.own_mark = 0;
        self.parts = 0;
        self.slot_bytes = 0;
        self.records = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes `p` would write with `g`, gathered as the file gets them.
    fn gathered(p: &mut Pending, g: &mut Gather<'_>) -> Vec<u8> {
        assert_eq!(g.parts.len(), p.parts);
        if p.parts == 0 {
            return p.own.clone();
        }
        p.close_own_run(g);
        g.parts
            .iter()
            .flat_map(|part| match part {
                Part::Own(r) => p.own[r.clone()].to_vec(),
                Part::Slot(s) => s.to_vec(),
            })
            .collect()
    }

    fn referring<'b>() -> Gather<'b> {
        GatherPool::default().take(1).pop().unwrap()
    }

    /// Slots holding `n` bytes that differ from their neighbours.
    fn slots(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn payloads_in_the_slots_are_referred_to_others_copied() {
        const N: usize = COPY_BELOW;
        let slots = slots(4 * N);
        let elsewhere = vec![7u8; N];
        let mut p = Pending::default();
        let mut g = referring();
        p.own().extend_from_slice(b"H1");
        p.payload(&slots[10..10 + N], &slots, &mut g);
        p.end_record();
        p.own().extend_from_slice(b"H2");
        p.payload(&elsewhere, &slots, &mut g);
        p.end_record();
        p.own().extend_from_slice(b"H3");
        p.payload(&slots[0..0], &slots, &mut g);
        p.end_record();
        p.own().extend_from_slice(b"H4");
        p.payload(&slots[3 * N..4 * N], &slots, &mut g);
        p.end_record();
        assert_eq!(p.records(), 4);
        assert_eq!(p.own_len(), 2 + 2 + N + 2 + 2);
        assert_eq!(p.len(), p.own_len() + N + N);
        let mut want = b"H1".to_vec();
        want.extend_from_slice(&slots[10..10 + N]);
        want.extend_from_slice(b"H2");
        want.extend_from_slice(&elsewhere);
        want.extend_from_slice(b"H3H4");
        want.extend_from_slice(&slots[3 * N..4 * N]);
        assert_eq!(gathered(&mut p, &mut g), want);
        // H2, the copy, H3 and H4 form one part between the two slot parts.
        assert_eq!(g.parts.len(), 4);
    }

    #[test]
    fn short_payloads_in_the_slots_are_copied_beside_their_headers() {
        let slots = slots(4 * COPY_BELOW);
        let mut p = Pending::default();
        let mut g = referring();
        let mut want = Vec::new();
        for (i, len) in [1, 64, 1024, COPY_BELOW - 1].into_iter().enumerate() {
            p.own().extend_from_slice(b"H");
            p.payload(&slots[i * COPY_BELOW..i * COPY_BELOW + len], &slots, &mut g);
            p.end_record();
            want.push(b'H');
            want.extend_from_slice(&slots[i * COPY_BELOW..i * COPY_BELOW + len]);
        }
        assert_eq!(p.own_len(), want.len(), "every byte in the buffer");
        assert_eq!(gathered(&mut p, &mut g), want);
        assert!(
            g.parts.iter().all(|part| matches!(part, Part::Own(_))),
            "nothing referred to in the slots: one piece for the write"
        );
    }

    #[test]
    fn adjacent_slot_payloads_are_one_part() {
        let slots = vec![1u8; 3 * COPY_BELOW];
        let mut p = Pending::default();
        let mut g = referring();
        p.payload(&slots[0..COPY_BELOW], &slots, &mut g);
        p.payload(&slots[COPY_BELOW..3 * COPY_BELOW], &slots, &mut g);
        assert_eq!(g.parts.len(), 1);
        assert_eq!(gathered(&mut p, &mut g).len(), 3 * COPY_BELOW);
    }

    #[test]
    fn outside_a_batch_payloads_are_copied() {
        let slots = vec![3u8; 10];
        let mut p = Pending::default();
        let mut g = Gather::copying();
        p.own().extend_from_slice(b"H");
        p.payload(&slots[2..6], &slots, &mut g);
        p.end_record();
        assert!(g.is_empty());
        assert_eq!(p.own_len(), 5);
        assert_eq!(gathered(&mut p, &mut g), b"H\x03\x03\x03\x03");
    }

    #[test]
    fn a_pool_gives_back_the_memory_it_was_given() {
        let mut pool = GatherPool::default();
        let slots = vec![0u8; 16 * COPY_BELOW];
        let (outer, inner) = {
            let mut lists = pool.take(3);
            let mut p = Pending::default();
            for i in 0..8 {
                p.own().push(b'h');
                let at = 2 * i * COPY_BELOW;
                p.payload(&slots[at..at + COPY_BELOW], &slots, &mut lists[1]);
            }
            let ids = (lists.as_ptr() as usize, lists[1].parts.as_ptr() as usize);
            pool.recycle(lists);
            ids
        };
        let lists = pool.take(2);
        assert_eq!(lists.len(), 3, "every gather is kept");
        assert!(lists.iter().all(Gather::is_empty));
        assert_eq!(lists.as_ptr() as usize, outer, "no new list of gathers");
        assert_eq!(lists[1].parts.as_ptr() as usize, inner, "no new parts list");
        assert!(lists[1].parts.capacity() >= 16);
    }
}
