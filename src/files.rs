//! The capture files, pure or nearly: the PCAP format and the owner of a file
//! being written ([`pcap`]), path patterns ([`pattern`]), checked places and
//! `-N` numbering ([`paths`]), AIT's calendar rotation rule ([`rotation`]), and
//! the IP/UDP headers of `record_source` ([`ipudp`]), the time window of an
//! extract ([`window`]) and a file's sparse index by time ([`index`]). What bsc remembers about
//! its files is [`crate::storage`]'s.

pub mod index;
pub mod ipudp;
pub mod paths;
pub mod pattern;
pub mod pcap;
pub mod rotation;
pub mod window;
