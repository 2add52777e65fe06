//! The unit layer, pure: a stream or datagram cut into telemetry units
//! ([`framing`]: space packets, TM frames, fixed, length field, KISS; CCSDS
//! headers, CRC/FECF), sequence-gap accounting ([`sequence`]), and
//! `pre_write_transforms` ([`transform`]). It reads no config and touches no
//! socket or file; a handler's [`crate::manager::unit_path`] puts them together.

pub mod framing;
pub mod sequence;
pub mod transform;
