//! UDP sockets: bound to a local address (or joined to a multicast group),
//! non-blocking, with a large receive buffer.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;

use crate::config::Address;
use crate::sys;

/// A bound UDP socket and the receive buffer the kernel granted.
pub struct BoundUdp {
    pub socket: mio::net::UdpSocket,
    pub local: SocketAddr,
    pub rcvbuf_granted: usize,
}

/// Turns an address's host into the IP to bind: `""` is every IPv4 interface;
/// IP literals are used as they are; other names are resolved (at most once, when
/// the capturer is created).
fn resolve(address: &Address) -> io::Result<IpAddr> {
    if address.host.is_empty() {
        return Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    if let Ok(ip) = address.host.parse::<IpAddr>() {
        return Ok(ip);
    }
    (address.host.as_str(), address.port)
        .to_socket_addrs()?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{:?} resolves to no address", address.host),
            )
        })
}

/// Binds `address` (joining the group if its host is a multicast address) and asks
/// for a `rcvbuf_bytes` receive buffer.
pub fn bind(address: &Address, rcvbuf_bytes: usize) -> Result<BoundUdp, String> {
    let describe = |e: io::Error| {
        let hint = match e.kind() {
            io::ErrorKind::AddrInUse => " (is another bsc or program capturing it?)",
            io::ErrorKind::AddrNotAvailable => " (no interface has this address)",
            io::ErrorKind::PermissionDenied => " (ports below 1024 need CAP_NET_BIND_SERVICE)",
            _ => "",
        };
        format!("cannot bind udp {address}: {e}{hint}")
    };
    let ip = resolve(address).map_err(describe)?;
    let socket = if ip.is_multicast() {
        let any: IpAddr = if ip.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let s = UdpSocket::bind(SocketAddr::new(any, address.port)).map_err(describe)?;
        match ip {
            IpAddr::V4(g) => s.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(g) => s.join_multicast_v6(&g, 0),
        }
        .map_err(|e| {
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
    let local = socket.local_addr().map_err(describe)?;
    Ok(BoundUdp {
        socket: mio::net::UdpSocket::from_std(socket),
        local,
        rcvbuf_granted,
    })
}
