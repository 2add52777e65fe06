//! What of a record `bsc replay` sends (pure): the payload a receiver of the
//! original stream got, with the headers the capture added taken off.
//!
//! | link type | written by | what is sent |
//! |---|---|---|
//! | 147-162 (`USER0`-`USER15`) | bsc for UDP and TCP, AIT's `ait-bsc` and `ait.core.pcap` | the record whole |
//! | 228, 229, 101 (raw IPv4, IPv6, either) | bsc with `record_source` (synthesized IP/UDP headers) | the UDP payload |
//! | 1 (Ethernet) | bsc's raw Ethernet capture, tcpdump | a UDP payload for IPv4/IPv6 UDP frames; for any other EtherType (CCSDS or a mission's own) what follows the Ethernet header and its VLAN tags |
//!
//! Everything else is skipped and counted ([`Skip`]): IP packets that are not
//! UDP (a TCP segment's bytes are not a stream), fragments, ARP, records cut
//! short by the capture's snaplen, other link types.

/// Why a record was not sent.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The file's link type has no payload to take.
    LinkType,
    /// An IP packet that is not one whole UDP datagram, ARP, or a header that does not parse.
    NotUdp,
    /// The capture kept less than the packet had (snaplen).
    Truncated,
    /// Larger than one UDP datagram can carry.
    TooLarge,
}

impl Skip {
    /// Every reason, in the order the summary lists them.
    pub const ALL: [Skip; 4] = [
        Skip::TooLarge,
        Skip::NotUdp,
        Skip::LinkType,
        Skip::Truncated,
    ];

    /// How the summary names it.
    pub fn describe(self) -> &'static str {
        match self {
            Skip::LinkType => "of a link type with no payload to take",
            Skip::NotUdp => "not UDP (IP packets of other protocols, fragments, ARP)",
            Skip::Truncated => "cut short by the capture's snaplen",
            Skip::TooLarge => "too large for a datagram",
        }
    }
}

const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;

/// The payload of a record of link type `link` holding `data` (of the
/// `orig_len` bytes the packet had).
pub fn payload_of(link: u32, data: &[u8], orig_len: u32) -> Result<&[u8], Skip> {
    if (orig_len as usize) > data.len() {
        return Err(Skip::Truncated);
    }
    match link {
        147..=162 => Ok(data),
        LINKTYPE_IPV4 | LINKTYPE_IPV6 | LINKTYPE_RAW => udp_payload(data),
        LINKTYPE_ETHERNET => ethernet_payload(data),
        _ => Err(Skip::LinkType),
    }
}

/// What follows an Ethernet header and its 802.1Q/802.1ad tags; the UDP
/// payload for IP.
fn ethernet_payload(frame: &[u8]) -> Result<&[u8], Skip> {
    let mut at = 12;
    loop {
        let ether_type = frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(Skip::NotUdp)?;
        at += 2;
        match ether_type {
            0x8100 | 0x88a8 | 0x9100 => at += 2,
            0x0800 | 0x86dd => return udp_payload(&frame[at..]),
            0x0806 | 0x8035 => return Err(Skip::NotUdp),
            _ => return Ok(&frame[at..]),
        }
    }
}

/// The payload of a raw IPv4 or IPv6 packet carrying one whole UDP datagram
/// (the IP lengths cut off any Ethernet padding).
fn udp_payload(packet: &[u8]) -> Result<&[u8], Skip> {
    let udp = match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ihl = (packet[0] & 0x0f) as usize * 4;
            let total = packet
                .get(2..4)
                .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
                .ok_or(Skip::NotUdp)?;
            let fragmented = packet
                .get(6..8)
                .is_some_and(|b| u16::from_be_bytes([b[0], b[1]]) & 0x3fff != 0);
            if ihl < 20 || total < ihl || total > packet.len() || packet[9] != 17 || fragmented {
                return Err(Skip::NotUdp);
            }
            &packet[ihl..total]
        }
        Some(6) => {
            let len = packet
                .get(4..6)
                .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
                .ok_or(Skip::NotUdp)?;
            if packet.len() < 40 + len || packet[6] != 17 {
                return Err(Skip::NotUdp);
            }
            &packet[40..40 + len]
        }
        _ => return Err(Skip::NotUdp),
    };
    let len = udp
        .get(4..6)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or(Skip::NotUdp)?;
    if len < 8 || len > udp.len() {
        return Err(Skip::NotUdp);
    }
    Ok(&udp[8..len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::ipudp::write_headers;
    use std::net::SocketAddr;

    fn ip_udp(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
        let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let mut out = Vec::new();
        write_headers(&mut out, src, dst, payload);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn raw_payloads_go_whole() {
        assert_eq!(payload_of(147, b"abc", 3), Ok(&b"abc"[..]));
        assert_eq!(payload_of(162, b"", 0), Ok(&b""[..]));
        assert_eq!(payload_of(147, b"abc", 4), Err(Skip::Truncated));
        assert_eq!(payload_of(113, b"abc", 3), Err(Skip::LinkType));
    }

    #[test]
    fn bscs_synthesized_headers_come_off() {
        let v4 = ip_udp("10.0.0.1:5000", "10.0.0.2:8500", b"hello");
        assert_eq!(payload_of(228, &v4, v4.len() as u32), Ok(&b"hello"[..]));
        assert_eq!(payload_of(101, &v4, v4.len() as u32), Ok(&b"hello"[..]));
        let v6 = ip_udp("[::1]:5000", "[::1]:8500", b"world!");
        assert_eq!(payload_of(229, &v6, v6.len() as u32), Ok(&b"world!"[..]));
        let empty = ip_udp("10.0.0.1:5000", "10.0.0.2:8500", b"");
        assert_eq!(payload_of(228, &empty, empty.len() as u32), Ok(&b""[..]));
        // Cut anywhere inside the headers: not a datagram.
        for cut in 0..28 {
            assert_eq!(
                payload_of(228, &v4[..cut], cut as u32),
                Err(Skip::NotUdp),
                "{cut}"
            );
        }
        let mut tcp = v4.clone();
        tcp[9] = 6;
        assert_eq!(payload_of(228, &tcp, tcp.len() as u32), Err(Skip::NotUdp));
        let mut fragment = v4.clone();
        fragment[6] = 0x20; // more fragments
        assert_eq!(
            payload_of(228, &fragment, fragment.len() as u32),
            Err(Skip::NotUdp)
        );
    }

    #[test]
    fn ethernet_frames() {
        let mac = [0u8; 12];
        let frame = |tags: &[u8], ether_type: u16, body: &[u8]| {
            let mut f = mac.to_vec();
            f.extend_from_slice(tags);
            f.extend_from_slice(&ether_type.to_be_bytes());
            f.extend_from_slice(body);
            f
        };
        let mut v4 = ip_udp("10.0.0.1:5000", "10.0.0.2:8500", b"tm");
        v4.extend_from_slice(&[0; 20]); // padding to the minimum frame
        let f = frame(&[], 0x0800, &v4);
        assert_eq!(payload_of(1, &f, f.len() as u32), Ok(&b"tm"[..]));
        let f = frame(&[0x81, 0x00, 0x00, 0x05], 0x0800, &v4);
        assert_eq!(payload_of(1, &f, f.len() as u32), Ok(&b"tm"[..]));
        let v6 = ip_udp("[::1]:5000", "[::1]:8500", b"six");
        let f = frame(&[], 0x86dd, &v6);
        assert_eq!(payload_of(1, &f, f.len() as u32), Ok(&b"six"[..]));
        let f = frame(&[], 0x88b5, b"ccsds frame");
        assert_eq!(payload_of(1, &f, f.len() as u32), Ok(&b"ccsds frame"[..]));
        let f = frame(&[], 0x0806, &[0; 28]);
        assert_eq!(payload_of(1, &f, f.len() as u32), Err(Skip::NotUdp));
        assert_eq!(payload_of(1, &mac, 12), Err(Skip::NotUdp));
    }
}
