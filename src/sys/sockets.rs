//! Sockets and socket options mio and std do not offer: receive buffer size,
//! the kernel's drop counter and receive timestamps, multicast membership by
//! interface index, and AF_PACKET raw sockets.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub(super) fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a valid c_int whose size is passed; an invalid
    // fd or option only makes the call fail.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(super) fn getsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len point to writable memory of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

/// Asks for a receive buffer of `bytes`: `SO_RCVBUFFORCE` first (passes
/// `net.core.rmem_max`, needs CAP_NET_ADMIN), else `SO_RCVBUF` (capped by the
/// kernel). Returns the size the kernel granted (it reports twice the request,
/// the bookkeeping overhead included).
pub fn set_receive_buffer(fd: RawFd, bytes: usize) -> io::Result<usize> {
    let bytes = bytes.min(i32::MAX as usize / 2) as libc::c_int;
    if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes).is_err() {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes)?;
    }
    Ok(getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)? as usize)
}

/// The kernel's count of units the socket dropped (for lack of buffer space,
/// mostly): `SO_MEMINFO`'s `SK_MEMINFO_DROPS`, the counter `SO_RXQ_OVFL`
/// would attach to every unit, asked for when it is wanted instead (an
/// attached counter cost 2-4% of the CPU per 64-byte datagram; it also showed
/// drops only once the next unit came).
pub fn socket_drops(fd: RawFd) -> io::Result<u32> {
    Ok(meminfo(fd)?[libc::SK_MEMINFO_DROPS as usize])
}

/// How full the socket's receive queue is: the bytes it holds (as the kernel
/// charges them, headers and all) and the most it may hold (`SO_MEMINFO`'s
/// `SK_MEMINFO_RMEM_ALLOC` and `SK_MEMINFO_RCVBUF`).
pub fn receive_queue(fd: RawFd) -> io::Result<(u32, u32)> {
    let info = meminfo(fd)?;
    Ok((
        info[libc::SK_MEMINFO_RMEM_ALLOC as usize],
        info[libc::SK_MEMINFO_RCVBUF as usize],
    ))
}

/// The socket's `SO_MEMINFO` words, up to `SK_MEMINFO_DROPS` at least.
fn meminfo(fd: RawFd) -> io::Result<[u32; 16]> {
    // Room for more words than kernels have now; the kernel fills what it has.
    let mut info = [0u32; 16];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info` and says how
    // many in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    match rc {
        0 if (len as usize) > libc::SK_MEMINFO_DROPS as usize * 4 => Ok(info),
        0 => Err(io::Error::other("SO_MEMINFO has no drop counter here")),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Asks the kernel to attach its receive time (`SO_TIMESTAMPNS`) to every unit.
pub fn enable_receive_timestamps(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// `IP_MULTICAST_ALL`: whether an IPv4 socket receives every group any socket on
/// the machine joined (Linux's default) or only its own.
pub fn set_multicast_all(fd: RawFd, on: bool) -> io::Result<()> {
    let v: libc::c_int = on as libc::c_int;
    // SAFETY: `v` is a live c_int and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_ALL,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The index of a network interface, by name.
pub fn interface_index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL byte")
    })?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface named {name:?}"),
        )),
        i => Ok(i),
    }
}

/// Joins an IPv4 multicast group on the interface with this index.
pub fn join_multicast_v4_index(
    fd: RawFd,
    group: std::net::Ipv4Addr,
    ifindex: u32,
) -> io::Result<()> {
    let mreq = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr {
            s_addr: u32::from(group).to_be(),
        },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as libc::c_int,
    };
    // SAFETY: mreq is a valid ip_mreqn whose size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_ADD_MEMBERSHIP,
            (&mreq as *const libc::ip_mreqn).cast(),
            size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Linux's `PACKET_OUTGOING`: a frame this host sent.
pub const PACKET_OUTGOING: u8 = 4;

/// An AF_PACKET raw socket, non-blocking, bound to `ifindex` and an EtherType
/// (`0` = every protocol, `ETH_P_ALL`).
pub fn packet_socket(ifindex: u32, ethertype: u16) -> io::Result<OwnedFd> {
    let proto = if ethertype == 0 {
        libc::ETH_P_ALL as u16
    } else {
        ethertype
    };
    // SAFETY: plain socket(2) call with valid constants.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            proto.to_be() as libc::c_int,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket returned a new fd that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid sockaddr_ll; the fields set make it a bind address.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto.to_be();
    sll.sll_ifindex = ifindex as libc::c_int;
    // SAFETY: sll is a valid sockaddr_ll whose size is passed.
    let rc = unsafe {
        libc::bind(
            owned.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_buffer_is_granted_and_reported() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let got = set_receive_buffer(s.as_raw_fd(), 1 << 20).unwrap();
        // Either forced (2x) or capped by rmem_max; never below the default minimum.
        assert!(got >= 4096, "{got}");
    }

    #[test]
    fn the_drop_counter_counts_what_a_full_buffer_refused() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(socket_drops(rx.as_raw_fd()).unwrap(), 0);
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // The smallest buffer the kernel grants holds a few datagrams of 1 KiB;
        // 2,000 unread ones overflow it.
        setsockopt_int(rx.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 1).unwrap();
        for _ in 0..2000 {
            tx.send_to(&[0u8; 1024], rx.local_addr().unwrap()).unwrap();
        }
        let drops = socket_drops(rx.as_raw_fd()).unwrap();
        assert!(drops > 1000, "{drops}");
    }

    #[test]
    fn the_receive_queue_says_what_it_holds_of_what_it_may() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        set_receive_buffer(rx.as_raw_fd(), 1 << 20).unwrap();
        let (held, most) = receive_queue(rx.as_raw_fd()).unwrap();
        assert_eq!(held, 0);
        assert!(most >= 1 << 20, "{most}: the kernel doubles what is asked");
        for _ in 0..10 {
            tx.send_to(&[0u8; 1024], rx.local_addr().unwrap()).unwrap();
        }
        let (held, _) = receive_queue(rx.as_raw_fd()).unwrap();
        assert!(
            (10 * 1024..most).contains(&held),
            "{held}: 10 datagrams and their overhead"
        );
        let mut buf = [0u8; 2048];
        for _ in 0..10 {
            rx.recv(&mut buf).unwrap();
        }
        assert_eq!(receive_queue(rx.as_raw_fd()).unwrap().0, 0);
    }
}
