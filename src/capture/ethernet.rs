//! Raw Ethernet capture: an AF_PACKET `SOCK_RAW` socket bound to one interface and
//! one EtherType (0 = every protocol), non-blocking, registered with the event loop
//! through `SourceFd`. Frames are read whole (`MSG_TRUNC` reports the real length),
//! with the kernel's receive time and packet type (so outgoing frames can be told
//! from incoming ones).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::config::Address;
use crate::sys;
use crate::warn;

/// An open packet socket.
pub struct PacketSocket {
    fd: OwnedFd,
    pub ifindex: u32,
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Opens a packet socket on interface `address.host` for EtherType `address.port`.
pub fn open(address: &Address, rcvbuf_bytes: usize) -> Result<(PacketSocket, usize), String> {
    let iface = &address.host;
    let ifindex = sys::interface_index(iface)
        .map_err(|e| format!("cannot capture ethernet on {iface}: {e}"))?;
    let fd = sys::packet_socket(ifindex, address.port).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::PermissionDenied {
            " (raw capture needs CAP_NET_RAW: run as root or grant the capability)"
        } else {
            ""
        };
        format!("cannot open a packet socket on {iface}: {e}{hint}")
    })?;
    let granted = sys::set_receive_buffer(fd.as_raw_fd(), rcvbuf_bytes)
        .map_err(|e| format!("{iface}: receive buffer: {e}"))?;
    if let Err(e) = sys::enable_receive_timestamps(fd.as_raw_fd()) {
        warn!("ethernet {iface}: no kernel receive timestamps ({e}); records carry the time of reading");
    }
    Ok((PacketSocket { fd, ifindex }, granted))
}
