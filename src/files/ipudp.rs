//! `record_source`: an IPv4 or IPv6 header and a UDP header, synthesized in front
//! of a datagram's payload, so a record carries who sent it (link types 228 and
//! 229, which Wireshark and tcpdump decode as raw IP). Pure functions over bytes.

use std::net::{IpAddr, SocketAddr};

/// Length of the IPv4 + UDP headers.
pub const V4_HEADERS: usize = 20 + 8;
/// Length of the IPv6 + UDP headers.
pub const V6_HEADERS: usize = 40 + 8;

/// Appends the IP and UDP headers for a datagram of `payload` from `src` to `dst`
/// (both of one family; an IPv4 `dst` with an IPv6 `src` is written as IPv4-mapped).
pub fn write_headers(out: &mut Vec<u8>, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            v4(out, s.octets(), d.octets(), src.port(), dst.port(), payload)
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                IpAddr::V6(a) => a.octets(),
            };
            v6_headers(out, v6(s), v6(d), src.port(), dst.port(), payload)
        }
    }
}

/// One's-complement sum of 16-bit words (an odd last byte padded with zero).
fn sum16(mut acc: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u32) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn v4(out: &mut Vec<u8>, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) {
    let udp_len = (8 + payload.len()).min(u16::MAX as usize) as u16;
    let total = (20 + 8 + payload.len()).min(u16::MAX as usize) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45; // version 4, 5 words
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let checksum = fold(sum16(0, &ip));
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    out.extend_from_slice(&ip);
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&udp_len.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // UDP checksum: optional over IPv4
}

fn v6_headers(
    out: &mut Vec<u8>,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    payload: &[u8],
) {
    let udp_len = (8 + payload.len()).min(u16::MAX as usize) as u16;
    let mut ip = [0u8; 40];
    ip[0] = 0x60; // version 6
    ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
    ip[6] = 17; // next header: UDP
    ip[7] = 64; // hop limit
    ip[8..24].copy_from_slice(&src);
    ip[24..40].copy_from_slice(&dst);
    // The UDP checksum is mandatory over IPv6: pseudo-header, UDP header, payload.
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let mut acc = sum16(0, &src);
    acc = sum16(acc, &dst);
    acc += udp_len as u32 + 17;
    acc = sum16(acc, &udp);
    acc = sum16(acc, payload);
    let checksum = match fold(acc) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
    out.extend_from_slice(&ip);
    out.extend_from_slice(&udp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_fields_and_checksum() {
        let mut out = Vec::new();
        write_headers(
            &mut out,
            "192.0.2.1:5000".parse().unwrap(),
            "192.0.2.2:8500".parse().unwrap(),
            b"hello",
        );
        assert_eq!(out.len(), V4_HEADERS);
        assert_eq!(&out[..4], &[0x45, 0, 0, 33]);
        assert_eq!(out[9], 17);
        assert_eq!(&out[12..20], &[192, 0, 2, 1, 192, 0, 2, 2]);
        assert_eq!(fold(sum16(0, &out[..20])), 0, "a valid header sums to zero");
        assert_eq!(&out[20..26], &[0x13, 0x88, 0x21, 0x34, 0, 13]);
    }

    #[test]
    fn ipv6_udp_checksum_verifies() {
        let (src, dst): (SocketAddr, SocketAddr) = (
            "[2001:db8::1]:5000".parse().unwrap(),
            "[2001:db8::2]:8500".parse().unwrap(),
        );
        let payload = b"odd!!";
        let mut out = Vec::new();
        write_headers(&mut out, src, dst, payload);
        assert_eq!(out.len(), V6_HEADERS);
        assert_eq!(out[0] >> 4, 6);
        // Receiver's check: pseudo-header + UDP header (with checksum) + payload = 0.
        let mut acc = sum16(0, &out[8..40]);
        acc += (8 + payload.len()) as u32 + 17;
        acc = sum16(acc, &out[40..48]);
        acc = sum16(acc, payload);
        assert_eq!(fold(acc), 0);
        // Mixed families are written as IPv6 with an IPv4-mapped address.
        out.clear();
        write_headers(
            &mut out,
            "127.0.0.1:1".parse().unwrap(),
            "[::1]:2".parse().unwrap(),
            b"",
        );
        assert_eq!(
            &out[8..24],
            &"::ffff:127.0.0.1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
    }
}
