//! Sending datagrams in batches: one `sendmmsg` for many units, the mirror of
//! the receive batch's `recvmmsg` ([`crate::sys::Batch`]).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// Datagrams one [`send_batch`] sends at most.
pub const SEND_BATCH: usize = 64;

/// One `sendmmsg(MSG_DONTWAIT)` on a connected datagram socket: each of the
/// first [`SEND_BATCH`] of `datagrams` as one datagram, in order. Returns how
/// many the kernel took (`WouldBlock` when it took none).
pub fn send_batch(fd: RawFd, datagrams: &[&[u8]]) -> io::Result<usize> {
    let n = datagrams.len().min(SEND_BATCH);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero bytes
    // are valid (null pointers, zero lengths).
    let mut iovs: [libc::iovec; SEND_BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    for (i, d) in datagrams[..n].iter().enumerate() {
        iovs[i] = libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        };
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: each mmsghdr points at one iovec of `iovs`, which points at a
    // slice borrowed for the call (the kernel only reads it); no name, no
    // control data. `n` <= the arrays' length.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT as _,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_arrives_as_one_datagram_per_slice_in_order() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let units: Vec<Vec<u8>> = (0..70u8).map(|i| vec![i; 1 + i as usize]).collect();
        let slices: Vec<&[u8]> = units.iter().map(Vec::as_slice).collect();
        assert_eq!(send_batch(tx.as_raw_fd(), &slices).unwrap(), SEND_BATCH);
        assert_eq!(
            send_batch(tx.as_raw_fd(), &slices[SEND_BATCH..]).unwrap(),
            6
        );
        assert_eq!(send_batch(tx.as_raw_fd(), &[]).unwrap(), 0);
        let mut buf = [0u8; 128];
        for u in &units {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &u[..]);
        }
    }
}
