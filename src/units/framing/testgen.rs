//! Builders of real units for the unit tests of this and the other unit modules.

use super::*;

/// An unsegmented telemetry space packet (`data` must not be empty).
pub fn space_packet(apid: u16, count: u16, data: &[u8]) -> Vec<u8> {
    assert!(!data.is_empty() && apid <= 0x7FF && count < 1 << 14);
    let mut p = Vec::with_capacity(6 + data.len());
    p.extend_from_slice(&apid.to_be_bytes());
    p.extend_from_slice(&(0xC000 | count).to_be_bytes());
    p.extend_from_slice(&((data.len() - 1) as u16).to_be_bytes());
    p.extend_from_slice(data);
    p
}

/// A TM transfer frame of `6 + data.len() + 2` bytes with a correct FECF,
/// after the ASM if `asm`.
pub fn tm_frame(scid: u16, vcid: u8, mc: u8, vc: u8, fhp: u16, data: &[u8], asm: bool) -> Vec<u8> {
    let mut f = Vec::new();
    if asm {
        f.extend_from_slice(&ASM);
    }
    let start = f.len();
    f.extend_from_slice(&((scid << 4) | (u16::from(vcid) << 1)).to_be_bytes());
    f.push(mc);
    f.push(vc);
    f.extend_from_slice(&(0x1800 | fhp).to_be_bytes());
    f.extend_from_slice(data);
    let crc = crc16_ccitt(&f[start..]);
    f.extend_from_slice(&crc.to_be_bytes());
    f
}

/// A KISS data frame for `port`, FEND-delimited, escapes applied.
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
