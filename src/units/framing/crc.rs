//! The TM frame error control field (FECF): CRC-16-CCITT as CCSDS uses it.

/// CRC-16-CCITT as CCSDS uses it for the FECF: polynomial 0x1021, initial value
/// 0xFFFF, no reflection, no final XOR (`"123456789"` gives 0x29B1).
pub fn crc16_ccitt(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// True if the last 2 bytes of a TM frame (without its ASM) are the CRC of the
/// rest: the frame error control field checks.
pub fn fecf_ok(frame: &[u8]) -> bool {
    match frame.len().checked_sub(2) {
        Some(n) if n > 0 => {
            crc16_ccitt(&frame[..n]) == u16::from_be_bytes([frame[n], frame[n + 1]])
        }
        _ => false,
    }
}
