//! The few direct OS calls bsc makes through libc, each wrapped in a safe function
//! with a comment on why the unsafe block is sound. Nothing else in bsc uses
//! `unsafe` (the crate denies it; these files alone allow it). By topic:
//!
//! | file | its calls |
//! |---|---|
//! | `sys.rs` (this one) | the receive batch: [`Batch`], `recvmmsg` with each unit's sender and kernel time |
//! | `sys/send.rs` | the send batch: `sendmmsg` of many datagrams, runs of one length offloaded ([`send_batch`]) |
//! | `sys/sockets.rs` | socket options (receive buffer and how full it is, drop counter, timestamps, multicast), AF_PACKET sockets |
//! | `sys/files.rs` | files and folders without following links (`openat`, `fstatat`, `linkat`, ...), `flock` |
//! | `sys/disk.rs` | free and total bytes of a file system |
//! | `sys/signals.rs` | the signals the loop reads from a `signalfd`; the ones `bsc replay` catches as flags |
//! | `sys/children.rs` | commands bsc starts: signal mask, process groups, death with bsc |
//! | `sys/process.rs` | this process: its user, open-file limit, CPU time, memory |
//! | `sys/clock.rs` | the monotonic clock, clock synchronisation, sleeping until a deadline (`bsc replay`) |
//! | `sys/journald.rs` | whether stderr is the journal |
#![allow(unsafe_code)]

mod children;
mod clock;
mod disk;
mod files;
mod journald;
mod process;
mod send;
mod signals;
mod sockets;

pub use children::{
    has_exited, kill_process_group, set_nonblocking, spawn_supervised, spawn_with_default_signals,
};
pub use clock::{
    kernel_clock_state, monotonic_micros, monotonic_nanos, precise_wakeups, sleep_until_monotonic,
};
pub use disk::disk_space;
pub use files::{
    can_write_dir, identity_at, link_at, open_at, open_dir_beneath, open_file_at, open_subdir,
    remove_dir_at, rename_at, stat_at, stat_fd, try_lock_exclusive, unlink_at, EntryStat, OpenMode,
};
pub use journald::stderr_is_journal;
pub use process::{
    cpu_time, effective_uid, open_fds, open_file_limit, raise_open_file_limit,
    resident_memory_bytes,
};
pub use send::{run_length, segment_max, send_batch, SEND_BATCH};
pub use signals::{
    block_handled_signals, catch_signals, stop_self, take_caught, SignalFd, HANDLED_SIGNALS,
};
pub use sockets::{
    enable_receive_timestamps, interface_index, join_multicast_v4_index, packet_socket,
    receive_queue, set_multicast_all, set_receive_buffer, socket_drops, PACKET_OUTGOING,
};

use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;

/// Who sent a received unit.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// An IP sender (UDP).
    Inet(std::net::SocketAddr),
    /// An AF_PACKET frame: its packet type (`PACKET_HOST`, `PACKET_OUTGOING`, ...).
    Packet {
        pkttype: u8,
    },
    Unknown,
}

/// What the kernel gave for one received unit.
#[derive(Copy, Clone, Debug)]
pub struct Received {
    /// Bytes placed in the buffer.
    pub len: usize,
    /// The unit's real length (larger than `len` when the buffer was too small).
    pub full_len: usize,
    pub peer: Peer,
    /// The kernel's receive time (`SO_TIMESTAMPNS`), when it gave one.
    pub kernel_time: Option<std::time::Duration>,
}

fn peer_of(addr: &libc::sockaddr_storage) -> Peer {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    match addr.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a: libc::sockaddr_in =
                unsafe { std::ptr::read((addr as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Peer::Inet(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a: libc::sockaddr_in6 =
                unsafe { std::ptr::read((addr as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Peer::Inet(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        libc::AF_PACKET => {
            // SAFETY: the family says the storage holds a sockaddr_ll.
            let a: libc::sockaddr_ll =
                unsafe { std::ptr::read((addr as *const libc::sockaddr_storage).cast()) };
            Peer::Packet {
                pkttype: a.sll_pkttype,
            }
        }
        _ => Peer::Unknown,
    }
}

/// Units one [`Batch::recv`] receives at most.
pub const BATCH: usize = 64;
/// Room for one unit: every UDP datagram and Ethernet frame fits whole.
pub const SLOT: usize = 65536;
/// Room for one read of a byte stream whose every handler cuts it into units
/// (framing): four slots. The reads of a stream all go to the start of the
/// batch, so the bytes just read are still in the cache when they are cut and
/// copied (measured: see docs/performance.md, the goals table).
pub const STREAM_REGION: usize = 4 * SLOT;
/// Control-message room per unit: a timestamp.
const CONTROL_WORDS: usize = 16;

/// Preallocated `recvmmsg` buffers: [`BATCH`] slots of [`SLOT`] bytes. They are
/// allocated zeroed, so the kernel maps pages only as units fill them: small
/// datagrams keep the resident set small.
pub struct Batch {
    data: Vec<u8>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    controls: Vec<[u64; CONTROL_WORDS]>,
    msgs: Vec<libc::mmsghdr>,
    received: usize,
}

/// What the kernel told about one unit of a batch, besides its bytes.
#[derive(Copy, Clone, Debug)]
pub struct UnitInfo {
    pub received: Received,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr; the
        // pointers in them are set before every call.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let zero_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Batch {
            data: vec![0; BATCH * SLOT],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            addrs: vec![zero_addr; BATCH],
            controls: vec![[0; CONTROL_WORDS]; BATCH],
            msgs: vec![zero_msg; BATCH],
            received: 0,
        }
    }

    /// One `recvmmsg(MSG_TRUNC)`: up to [`BATCH`] units from a non-blocking socket.
    /// Returns how many arrived (`WouldBlock` when none had).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.data[i * SLOT..].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.controls[i].as_mut_ptr().cast();
            h.msg_controllen = (CONTROL_WORDS * 8) as _;
            h.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: every mmsghdr points at buffers owned by `self` with the lengths
        // given; they stay valid and unaliased for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_TRUNC as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.received = 0;
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Gives the slots' memory back to the kernel (`MADV_DONTNEED`): after a burst
    /// of large units every slot is resident; the next units fault in only what
    /// they fill. The contents read as zeros afterwards, which nothing relies on.
    pub fn release(&mut self) {
        let page = 4096;
        let start = self.data.as_mut_ptr() as usize;
        let aligned = start.div_ceil(page) * page;
        let end = start + self.data.len();
        if end > aligned + page {
            let len = (end - aligned) / page * page;
            // SAFETY: [aligned, aligned+len) lies inside `self.data`, which we own
            // exclusively here; MADV_DONTNEED on private anonymous memory only
            // drops pages (they read back as zeros), it never unmaps them.
            unsafe { libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        }
    }

    /// The start of the batch as one plain buffer of [`STREAM_REGION`] bytes,
    /// for one read of a byte stream, borrowed for as long as the batch is.
    pub fn stream_region(&mut self) -> &mut [u8] {
        &mut self.data[..STREAM_REGION]
    }

    /// Unit `i` of the last batch: its bytes and what the kernel said of it.
    pub fn unit(&self, i: usize) -> (&[u8], UnitInfo) {
        debug_assert!(i < self.received);
        let m = &self.msgs[i];
        let full_len = m.msg_len as usize;
        let len = full_len.min(SLOT);
        let mut kernel_time = None;
        // SAFETY: the kernel filled this message's control buffer within
        // msg_controllen; CMSG_FIRSTHDR/NXTHDR stay inside it; payloads are read
        // unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&m.msg_hdr);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    if ts.tv_sec > 0 {
                        kernel_time = Some(std::time::Duration::new(
                            ts.tv_sec as u64,
                            ts.tv_nsec as u32,
                        ));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&m.msg_hdr, cmsg);
            }
        }
        let received = Received {
            len,
            full_len,
            peer: peer_of(&self.addrs[i]),
            kernel_time,
        };
        (&self.data[i * SLOT..i * SLOT + len], UnitInfo { received })
    }
}
