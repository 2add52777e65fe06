//! The target end: a UDP socket connected to the target (one datagram per
//! record) or one TCP connection out (the records back to back), blocking,
//! so `max` goes as fast as the target takes the records.
//!
//! A receiver that goes away: over TCP (reset, closed) the replay ends with
//! an error naming the record, since what follows would be lost unseen; over
//! UDP the kernel reports an earlier datagram refused (ICMP port
//! unreachable) on the next send, which then did not go: it is counted
//! (`refused`) and sent once more, so a replay started before its receiver,
//! or outliving a restart of it, goes on.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};

use super::args::Target;
use crate::files::ipudp::{V4_HEADERS, V6_HEADERS};

/// The largest UDP payload over IPv4 (65,535 less the IP and UDP headers).
const MAX_UDP_V4: usize = 65_535 - V4_HEADERS;
/// The largest UDP payload over IPv6 without jumbograms.
const MAX_UDP_V6: usize = 65_535 - (V6_HEADERS - 40);

/// An open target.
pub enum Sender {
    Udp { socket: UdpSocket, max: usize },
    Tcp { stream: TcpStream, to: SocketAddr },
}

/// What became of one record.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Sent; `refused` earlier datagrams the kernel reported refused on the way.
    Sent { refused: u64 },
    /// Larger than one datagram (UDP).
    TooLarge,
}

/// Why sending stopped.
#[derive(Debug)]
pub enum SendError {
    /// A signal interrupted a blocked send; `partly`: some of the record went.
    Interrupted { partly: bool },
    /// The target failed (the text says how).
    Failed(String),
}

impl Sender {
    /// Opens the target; `paced`: records go one by one (`TCP_NODELAY`).
    pub fn open(target: &Target, paced: bool) -> Result<Sender, String> {
        match *target {
            Target::Udp(to) => {
                let (local, max) = match to {
                    SocketAddr::V4(_) => ("0.0.0.0:0", MAX_UDP_V4),
                    SocketAddr::V6(_) => ("[::]:0", MAX_UDP_V6),
                };
                let socket = UdpSocket::bind(local)
                    .and_then(|s| s.connect(to).map(|()| s))
                    .map_err(|e| format!("cannot send to {target}: {e}"))?;
                Ok(Sender::Udp { socket, max })
            }
            Target::Tcp(to) => {
                let stream = TcpStream::connect(to).map_err(|e| {
                    format!(
                        "cannot connect to {target}: {} (is the receiver listening?)",
                        describe(&e)
                    )
                })?;
                let _ = stream.set_nodelay(paced);
                Ok(Sender::Tcp { stream, to })
            }
        }
    }

    /// Sends one record's payload. A signal that interrupts a blocked send
    /// asks `stop` whether to give up (else the send goes on where it was).
    pub fn send(
        &mut self,
        payload: &[u8],
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Sent, SendError> {
        match self {
            Sender::Udp { socket, max } => {
                if payload.len() > *max {
                    return Ok(Sent::TooLarge);
                }
                let mut refused = 0;
                loop {
                    match socket.send(payload) {
                        Ok(_) => return Ok(Sent::Sent { refused }),
                        // Reported for an earlier datagram; this one did not go.
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && refused == 0 => {
                            refused += 1
                        }
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                            return Ok(Sent::Sent { refused })
                        }
                        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                            return Ok(Sent::TooLarge)
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                            if stop() {
                                return Err(SendError::Interrupted { partly: false });
                            }
                        }
                        Err(e) => {
                            return Err(SendError::Failed(format!(
                                "cannot send a datagram: {}",
                                describe(&e)
                            )))
                        }
                    }
                }
            }
            Sender::Tcp { stream, to } => {
                let mut at = 0;
                while at < payload.len() {
                    match stream.write(&payload[at..]) {
                        Ok(0) => {
                            return Err(SendError::Failed(format!(
                                "tcp://{to} takes no more bytes"
                            )))
                        }
                        Ok(n) => at += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                            if stop() {
                                return Err(SendError::Interrupted { partly: at > 0 });
                            }
                        }
                        Err(e) => {
                            return Err(SendError::Failed(format!(
                                "the receiver at tcp://{to} went away: {}",
                                describe(&e)
                            )))
                        }
                    }
                }
                Ok(Sent::Sent { refused: 0 })
            }
        }
    }
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::BrokenPipe => "the connection is closed (broken pipe)".into(),
        _ => e.to_string(),
    }
}
