//! CCSDS unit headers: the space packet primary header (CCSDS 133.0-B) and the
//! TM transfer frame primary header (CCSDS 132.0-B), read from byte slices.

/// The APID of idle space packets (never sequence-counted).
pub const IDLE_APID: u16 = 0x7FF;
/// The first header pointer of an idle (OID) TM frame (CCSDS 132.0-B).
pub const OID_FIRST_HEADER_POINTER: u16 = 0x7FE;

/// The fields of a CCSDS space packet primary header (CCSDS 133.0-B).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SpacePacketHeader {
    /// Packet version number (3 bits; 0 for CCSDS packets).
    pub version: u8,
    /// Telecommand (1) or telemetry (0).
    pub packet_type: u8,
    pub secondary_header: bool,
    /// Application process identifier (11 bits).
    pub apid: u16,
    /// Sequence flags (2 bits; 0b11 for an unsegmented packet).
    pub sequence_flags: u8,
    /// Packet sequence count (14 bits).
    pub sequence_count: u16,
    /// Packet data length field: the data field's length - 1.
    pub data_length: u16,
}

impl SpacePacketHeader {
    pub const LEN: usize = 6;
    /// Range of the sequence count.
    pub const COUNT_RANGE: u32 = 1 << 14;

    /// The header at the start of `unit`; `None` if it is shorter than 6 bytes.
    #[inline]
    pub fn parse(unit: &[u8]) -> Option<SpacePacketHeader> {
        let b: &[u8; 6] = unit.get(..6)?.try_into().ok()?;
        Some(SpacePacketHeader {
            version: b[0] >> 5,
            packet_type: (b[0] >> 4) & 1,
            secondary_header: b[0] & 0x08 != 0,
            apid: u16::from_be_bytes([b[0] & 0x07, b[1]]),
            sequence_flags: b[2] >> 6,
            sequence_count: u16::from_be_bytes([b[2] & 0x3F, b[3]]),
            data_length: u16::from_be_bytes([b[4], b[5]]),
        })
    }

    /// The packet's whole length, header included.
    pub fn total_len(&self) -> usize {
        self.data_length as usize + 7
    }

    pub fn is_idle(&self) -> bool {
        self.apid == IDLE_APID
    }
}

/// The fields of a CCSDS TM transfer frame primary header (CCSDS 132.0-B).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TmFrameHeader {
    /// Transfer frame version number (2 bits; 0 for TM).
    pub version: u8,
    /// Spacecraft identifier (10 bits).
    pub scid: u16,
    /// Virtual channel identifier (3 bits).
    pub vcid: u8,
    pub ocf: bool,
    /// Master channel frame count.
    pub mc_count: u8,
    /// Virtual channel frame count.
    pub vc_count: u8,
    /// The data field status's first header pointer (11 bits).
    pub first_header_pointer: u16,
}

impl TmFrameHeader {
    pub const LEN: usize = 6;
    /// Range of the frame counts.
    pub const COUNT_RANGE: u32 = 256;

    /// The header at the start of `frame` (after any ASM); `None` if shorter than 6.
    pub fn parse(frame: &[u8]) -> Option<TmFrameHeader> {
        let b: &[u8; 6] = frame.get(..6)?.try_into().ok()?;
        Some(TmFrameHeader {
            version: b[0] >> 6,
            scid: (u16::from(b[0] & 0x3F) << 4) | u16::from(b[1] >> 4),
            vcid: (b[1] >> 1) & 0x07,
            ocf: b[1] & 1 != 0,
            mc_count: b[2],
            vc_count: b[3],
            first_header_pointer: u16::from_be_bytes([b[4] & 0x07, b[5]]),
        })
    }

    /// An only-idle-data (OID) frame: its first header pointer is 0x7FE.
    pub fn is_idle(&self) -> bool {
        self.first_header_pointer == OID_FIRST_HEADER_POINTER
    }
}
