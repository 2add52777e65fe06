//! Test generators: real CCSDS space packets, TM frames (ASM, correct FECF) and
//! KISS frames, for tests/properties.rs and tests/telemetry.rs.
use bsc::framing::{crc16_ccitt, ASM, FEND, FESC, TFEND, TFESC};

pub fn space_packet(apid: u16, count: u16, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&(apid & 0x7FF).to_be_bytes());
    p.extend_from_slice(&(0xC000 | (count & 0x3FFF)).to_be_bytes());
    p.extend_from_slice(&((data.len() - 1) as u16).to_be_bytes());
    p.extend_from_slice(data);
    p
}

/// A frame of 6 + data + 2 bytes after the ASM.
pub fn tm_frame(scid: u16, vcid: u8, mc: u8, vc: u8, data: &[u8]) -> Vec<u8> {
    let mut f = ASM.to_vec();
    f.extend_from_slice(&((scid << 4) | (u16::from(vcid) << 1)).to_be_bytes());
    f.extend_from_slice(&[mc, vc, 0x18, 0x00]);
    f.extend_from_slice(data);
    let crc = crc16_ccitt(&f[4..]);
    f.extend_from_slice(&crc.to_be_bytes());
    f
}

pub fn kiss_frame(port: u8, data: &[u8]) -> Vec<u8> {
    let mut f = vec![FEND, port << 4];
    for &b in data {
        match b {
            FEND => f.extend_from_slice(&[FESC, TFEND]),
            FESC => f.extend_from_slice(&[FESC, TFESC]),
            b => f.push(b),
        }
    }
    f.push(FEND);
    f
}
