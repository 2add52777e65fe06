//! Sending datagrams in batches: one `sendmmsg` for many units, the mirror of
//! the receive batch's `recvmmsg` ([`crate::sys::Batch`]). Where the kernel
//! can (Linux 4.18 and later), a run of units of one length goes as one
//! message that the kernel cuts into datagrams (UDP segmentation offload,
//! `UDP_SEGMENT`): the stack is crossed once per run, not once per unit, and
//! the consumer still gets one datagram per unit.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// Datagrams one [`send_batch`] sends at most.
pub const SEND_BATCH: usize = 64;

/// Segments of one offloaded message at most (the kernel's
/// `UDP_MAX_SEGMENTS` before Linux 6.x raised it to 128).
const GSO_SEGMENTS: usize = 64;
/// Bytes of one offloaded message at most: the largest UDP payload (IPv4).
const GSO_BYTES: usize = 65_507;

/// The largest unit a connected UDP socket may send as a segment of an
/// offloaded message: its path's MTU less the IP and UDP headers. `None`
/// when the kernel cannot cut messages for it (before Linux 4.18, whose
/// `sendmsg` would ignore the segment size and send a run as one datagram).
pub fn segment_max(fd: RawFd) -> Option<usize> {
    use super::sockets::{getsockopt_int, setsockopt_int};
    // Off (0) is a valid setting where the option exists at all.
    setsockopt_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT, 0).ok()?;
    let v6 = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok()? == libc::AF_INET6;
    let (level, name, headers) = match v6 {
        false => (libc::IPPROTO_IP, libc::IP_MTU, 28),
        true => (libc::IPPROTO_IPV6, libc::IPV6_MTU, 48),
    };
    let mtu = getsockopt_int(fd, level, name).ok()?;
    usize::try_from(mtu).ok()?.checked_sub(headers)
}

/// How many of the first `datagrams` go as one message: a run of units of
/// the first one's length (the last may be shorter), within the kernel's
/// limits, or the first alone (`segment_max` 0: no offload).
pub fn run_length(datagrams: &[&[u8]], segment_max: usize) -> usize {
    let Some(first) = datagrams.first() else {
        return 0;
    };
    let len = first.len();
    if len == 0 || len > segment_max {
        return 1;
    }
    let (mut n, mut bytes) = (1, len);
    for d in &datagrams[1..] {
        if n == GSO_SEGMENTS || d.is_empty() || d.len() > len || bytes + d.len() > GSO_BYTES {
            break;
        }
        n += 1;
        bytes += d.len();
        if d.len() < len {
            break;
        }
    }
    n
}

/// One `sendmmsg(MSG_DONTWAIT)` on a connected datagram socket: each of the
/// first [`SEND_BATCH`] of `datagrams` as one datagram, in order; runs of one
/// length as offloaded messages when `segment_max` (from [`segment_max`],
/// 0 for none) allows. Returns how many datagrams the kernel took
/// (`WouldBlock` when it took none).
pub fn send_batch(fd: RawFd, datagrams: &[&[u8]], segment_max: usize) -> io::Result<usize> {
    let datagrams = &datagrams[..datagrams.len().min(SEND_BATCH)];
    if datagrams.is_empty() {
        return Ok(0);
    }
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero bytes
    // are valid (null pointers, zero lengths).
    let mut iovs: [libc::iovec; SEND_BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    // One control buffer per message, aligned for a cmsghdr; room for one
    // u16 (CMSG_SPACE(2) is 16 or 24 bytes).
    let mut controls = [[0u64; 4]; SEND_BATCH];
    let mut runs = [0usize; SEND_BATCH];
    let (mut at, mut m) = (0, 0);
    while at < datagrams.len() {
        let run = run_length(&datagrams[at..], segment_max);
        for (iov, d) in iovs[at..at + run].iter_mut().zip(&datagrams[at..]) {
            *iov = libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            };
        }
        let hdr = &mut msgs[m].msg_hdr;
        hdr.msg_iov = &mut iovs[at];
        hdr.msg_iovlen = run as _;
        if run > 1 {
            // SAFETY: the control buffer is 32 bytes, 8-aligned, at least
            // CMSG_SPACE(2); CMSG_FIRSTHDR of a header whose control points
            // at it is its start, and CMSG_DATA is within it. The kernel
            // only reads it during the call.
            unsafe {
                hdr.msg_control = controls[m].as_mut_ptr().cast();
                hdr.msg_controllen = libc::CMSG_SPACE(2) as _;
                let cmsg = libc::CMSG_FIRSTHDR(hdr);
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
                let size = datagrams[at].len() as u16;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
            }
        }
        runs[m] = run;
        at += run;
        m += 1;
    }
    // SAFETY: each mmsghdr points at its run of `iovs`, which point at
    // slices borrowed for the call (the kernel only reads them), and at most
    // its own control buffer; no name. `m` <= the arrays' length.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            msgs.as_mut_ptr(),
            m as libc::c_uint,
            libc::MSG_DONTWAIT as _,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(runs[..sent as usize].iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    fn lens(lengths: &[usize]) -> Vec<Vec<u8>> {
        lengths.iter().map(|&n| vec![1u8; n]).collect()
    }

    fn runs(lengths: &[usize], segment_max: usize) -> Vec<usize> {
        let units = lens(lengths);
        let slices: Vec<&[u8]> = units.iter().map(Vec::as_slice).collect();
        let mut out = Vec::new();
        let mut at = 0;
        while at < slices.len() {
            let n = run_length(&slices[at..], segment_max);
            out.push(n);
            at += n;
        }
        out
    }

    #[test]
    fn runs_are_units_of_one_length_the_last_may_be_shorter() {
        assert_eq!(runs(&[], 1500), Vec::<usize>::new());
        assert_eq!(runs(&[64; 5], 1500), [5]);
        assert_eq!(runs(&[64, 64, 10, 64], 1500), [3, 1]);
        assert_eq!(
            runs(&[64, 100, 100], 1500),
            [1, 2],
            "a longer one starts a run"
        );
        assert_eq!(runs(&[64; 5], 0), [1; 5], "no offload: one by one");
        assert_eq!(runs(&[2000, 2000], 1472), [1, 1], "over the MTU: alone");
        assert_eq!(runs(&[0, 0, 5, 0], 1500), [1, 1, 1, 1], "empty units alone");
        assert_eq!(
            runs(&[8; 200], 1500),
            [64, 64, 64, 8],
            "the kernel's segment limit"
        );
        assert_eq!(runs(&[1024; 70], 65_000), [63, 7], "the 65,507-byte limit");
        assert_eq!(runs(&[65_507, 1], 65_507), [1, 1]);
    }

    #[test]
    fn an_unconnected_socket_has_no_path_so_no_runs() {
        let unconnected = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(segment_max(unconnected.as_raw_fd()), None);
    }

    fn send_all(tx: &UdpSocket, units: &[Vec<u8>], segment_max: usize) {
        let slices: Vec<&[u8]> = units.iter().map(Vec::as_slice).collect();
        let mut at = 0;
        while at < slices.len() {
            at += send_batch(tx.as_raw_fd(), &slices[at..], segment_max).unwrap();
        }
        assert_eq!(send_batch(tx.as_raw_fd(), &[], segment_max).unwrap(), 0);
    }

    #[test]
    fn a_batch_arrives_as_one_datagram_per_slice_in_order() {
        // Runs of one length, shorter tails, empty units, one length
        // changing every unit: offloaded or not, each unit one datagram.
        let mut lengths: Vec<usize> = vec![64; 150];
        lengths.extend([64, 10, 0, 0, 7, 7, 7, 3, 1024, 1024, 1000, 1024]);
        lengths.extend((0..70).map(|i| 1 + i));
        let units: Vec<Vec<u8>> = lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|b| (i + b) as u8).collect())
            .collect();
        for (any, largest) in [("127.0.0.1:0", 65_535 - 28), ("[::1]:0", 65_536 - 48)] {
            let rx = UdpSocket::bind(any).unwrap();
            let tx = UdpSocket::bind(any).unwrap();
            tx.connect(rx.local_addr().unwrap()).unwrap();
            let max = segment_max(tx.as_raw_fd()).expect("Linux 4.18 or later");
            assert_eq!(max, largest, "{any}: loopback's MTU less the headers");
            let mut buf = [0u8; 2048];
            for max in [max, 0] {
                send_all(&tx, &units, max);
                for u in &units {
                    let n = rx.recv(&mut buf).unwrap();
                    assert_eq!(&buf[..n], &u[..], "{any}");
                }
            }
        }
    }
}
