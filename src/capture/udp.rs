//! UDP sockets: bound to a local address (or joined to a multicast group),
//! non-blocking, with a large receive buffer and kernel receive timestamps.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use crate::config::resolve::resolve;
use crate::config::Address;
use crate::sys;
use crate::warn;

/// A bound UDP socket and the receive buffer the kernel granted.
pub struct BoundUdp {
    pub socket: mio::net::UdpSocket,
    pub local: SocketAddr,
    pub rcvbuf_granted: usize,
}

/// Binds `address` and asks for a `rcvbuf_bytes` receive buffer. Host `""` is
/// every IPv4 interface. If the host is a multicast group, the socket binds the
/// group address and port and joins the group on `interface` (a name or an IPv4
/// address; the system's choice when `None`).
pub fn bind(
    address: &Address,
    rcvbuf_bytes: usize,
    interface: Option<&str>,
) -> Result<BoundUdp, String> {
    let describe = |e: io::Error| {
        let hint = match e.kind() {
            io::ErrorKind::AddrInUse => " (is another bsc or program capturing it?)",
            io::ErrorKind::AddrNotAvailable => " (no interface has this address)",
            io::ErrorKind::PermissionDenied => " (ports below 1024 need CAP_NET_BIND_SERVICE)",
            _ => "",
        };
        format!("cannot bind udp {address}: {e}{hint}")
    };
    let ip = if address.host.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        resolve(&address.host).map_err(describe)?
    };
    let socket = if ip.is_multicast() {
        // Bound to the group itself: the kernel then delivers only datagrams sent
        // to the group (not unicast ones to the port), and several groups can
        // share a port, one socket each.
        let s = UdpSocket::bind(SocketAddr::new(ip, address.port)).map_err(describe)?;
        if ip.is_ipv4() {
            // Not every group some other socket on the machine joined, only ours.
            if let Err(e) = sys::set_multicast_all(s.as_raw_fd(), false) {
                warn!("udp {address}: cannot turn off IP_MULTICAST_ALL ({e})");
            }
        }
        join(&s, ip, interface).map_err(|e| {
            format!(
                "cannot join multicast group {ip} on port {}: {e}",
                address.port
            )
        })?;
        s
    } else {
        UdpSocket::bind(SocketAddr::new(ip, address.port)).map_err(describe)?
    };
    socket.set_nonblocking(true).map_err(describe)?;
    let rcvbuf_granted =
        sys::set_receive_buffer(socket.as_raw_fd(), rcvbuf_bytes).map_err(describe)?;
    if let Err(e) = sys::enable_receive_timestamps(socket.as_raw_fd()) {
        warn!(
            "udp {address}: no kernel receive timestamps ({e}); records carry the time of reading"
        );
    }
    let local = socket.local_addr().map_err(describe)?;
    Ok(BoundUdp {
        socket: mio::net::UdpSocket::from_std(socket),
        local,
        rcvbuf_granted,
    })
}

fn join(s: &UdpSocket, group: IpAddr, interface: Option<&str>) -> io::Result<()> {
    match (group, interface) {
        (IpAddr::V4(g), None) => s.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED),
        (IpAddr::V4(g), Some(i)) => match i.parse::<Ipv4Addr>() {
            Ok(local) => s.join_multicast_v4(&g, &local),
            Err(_) => sys::join_multicast_v4_index(s.as_raw_fd(), g, sys::interface_index(i)?),
        },
        (IpAddr::V6(g), None) => s.join_multicast_v6(&g, 0),
        (IpAddr::V6(g), Some(i)) => s.join_multicast_v6(&g, sys::interface_index(i)?),
    }
}
