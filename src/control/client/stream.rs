//! An answer read as it arrives: `GET` a path and read the body through
//! [`io::Read`] (`bsc replay --name` hands it to the same pcap reader as a
//! file), framed by `Content-Length`, chunked, or running to the end of the
//! connection. Memory is one read buffer, whatever the body's size. An error
//! answer (not 2xx) is read whole and becomes the [`ClientError`] bsc's text
//! says, as [`check_answer`] gives it. [`exchange`] reads a whole answer the
//! same way within one deadline, and [`send`] checks it: the I/O of every
//! other client command. Below this file, `http.rs` connects, sends and says
//! what went wrong; it takes nothing from here.

use std::io::{self, Read};
use std::net::TcpStream;

use serde_json::Value;

use super::http::{connect_and_send, describe_io, ANSWER_TIMEOUT, MAX_ANSWER};
use super::{check_answer, Answer, Call, ClientError, Target};

/// The largest answer head read.
const MAX_HEAD: usize = 64 * 1024;
/// The largest error answer read.
const MAX_ERROR: usize = 1 << 20;
/// Bytes read from the socket at a time.
const READ_SIZE: usize = 64 * 1024;

/// How the body ends.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    /// This many bytes still to come.
    Length(u64),
    /// Chunked: a size line next.
    ChunkSize,
    /// Chunked: this many bytes of the current chunk still to come.
    ChunkData(u64),
    /// Chunked: the CRLF after a chunk's data.
    ChunkEnd,
    /// To the end of the connection.
    ToEnd,
    Done,
}

/// A body being read: what the socket gave beyond what was handed out.
pub struct Body<R> {
    source: R,
    buf: Vec<u8>,
    at: usize,
    framing: Framing,
}

/// An answer's head framed: its status, its length and how its body ends;
/// `None` until the whole head is there.
fn parse_head(bytes: &[u8]) -> Result<Option<(u16, usize, Framing)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
    };
    let framing = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        Framing::ChunkSize
    } else if let Some(len) = header("content-length") {
        Framing::Length(len.trim().parse().map_err(|_| "a bad Content-Length")?)
    } else {
        Framing::ToEnd
    };
    Ok(Some((resp.code.unwrap_or(0), n, framing)))
}

/// Sends `call` to `target` and reads the answer's head: its status and its
/// body as a reader.
pub fn open(target: &Target, call: &Call) -> Result<(u16, Body<TcpStream>), ClientError> {
    let server = target.to_string();
    let stream = connect_and_send(target, call)?;
    let not_bsc = |reason: String| ClientError::NotBsc {
        server: server.clone(),
        reason,
    };
    let mut body = Body {
        source: stream,
        buf: Vec::new(),
        at: 0,
        framing: Framing::ToEnd,
    };
    loop {
        match parse_head(&body.buf).map_err(not_bsc)? {
            Some((status, head_len, framing)) => {
                body.at = head_len;
                body.framing = framing;
                return Ok((status, body));
            }
            None if body.buf.len() < MAX_HEAD => {
                let unreachable = |e: io::Error| ClientError::Unreachable {
                    server: server.clone(),
                    reason: describe_io(&e),
                };
                if body.fill().map_err(unreachable)? == 0 {
                    return Err(not_bsc(if body.buf.is_empty() {
                        "the connection closed without an answer".into()
                    } else {
                        "the connection closed in the answer's head".into()
                    }));
                }
            }
            None => return Err(not_bsc("the answer's head is too long".into())),
        }
    }
}

/// Sends `GET path` to `target` and returns its body as a reader, once the
/// head said 2xx; any other answer is the error it carries.
pub fn get_body(target: &Target, path: String) -> Result<Body<TcpStream>, ClientError> {
    let (status, mut body) = open(target, &Call::new("GET", path))?;
    if !(200..300).contains(&status) {
        // An error answer: read it whole (bsc closes after it), say what it says.
        let mut whole = Vec::new();
        let _ = (&mut body).take(MAX_ERROR as u64).read_to_end(&mut whole);
        let server = target.to_string();
        check_answer(
            &Answer {
                status,
                body: whole,
            },
            &server,
        )?;
        return Err(ClientError::NotBsc {
            server,
            reason: format!("it answered with status {status}"),
        });
    }
    Ok(body)
}

/// Where a pcap stream's bytes come from: a file here or an answer's body
/// (an enum, not `Box<dyn Read>`, whose vtable would instantiate every
/// `Read` method for both; and one reader type for `bsc replay` and `bsc
/// extract FILE`, so the pcap reader is compiled once).
pub enum PcapSource {
    File(std::fs::File),
    Answer(Body<TcpStream>),
}

impl Read for PcapSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            PcapSource::File(f) => f.read(buf),
            PcapSource::Answer(b) => b.read(buf),
        }
    }
}

impl Body<TcpStream> {
    /// How long the next read of the socket may wait.
    pub fn set_read_timeout(&self, timeout: std::time::Duration) -> io::Result<()> {
        self.source.set_read_timeout(Some(timeout))
    }
}

impl<R: Read> Body<R> {
    /// Reads more from the source behind what is left; the bytes read.
    fn fill(&mut self) -> io::Result<usize> {
        self.buf.drain(..self.at);
        self.at = 0;
        let old = self.buf.len();
        self.buf.resize(old + READ_SIZE, 0);
        let n = loop {
            match self.source.read(&mut self.buf[old..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.buf.truncate(old + *n.as_ref().unwrap_or(&0));
        n
    }

    fn left(&self) -> &[u8] {
        &self.buf[self.at..]
    }

    /// Makes sure some bytes are buffered; `false` at the end of the source.
    fn want(&mut self) -> io::Result<bool> {
        Ok(!self.left().is_empty() || self.fill()? > 0)
    }
}

fn broken(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the answer's body {why}"),
    )
}

impl<R: Read> Read for Body<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.framing {
                Framing::Done => return Ok(0),
                Framing::ToEnd | Framing::Length(_) | Framing::ChunkData(_) => {
                    let wanted = match self.framing {
                        Framing::Length(n) | Framing::ChunkData(n) => n,
                        _ => u64::MAX,
                    };
                    if wanted == 0 {
                        self.framing = match self.framing {
                            Framing::ChunkData(_) => Framing::ChunkEnd,
                            _ => Framing::Done,
                        };
                        continue;
                    }
                    if !self.want()? {
                        return match self.framing {
                            Framing::ToEnd => {
                                self.framing = Framing::Done;
                                Ok(0)
                            }
                            _ => Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the connection closed before the answer's body ended",
                            )),
                        };
                    }
                    let n = self
                        .left()
                        .len()
                        .min(out.len())
                        .min(wanted.min(usize::MAX as u64) as usize);
                    out[..n].copy_from_slice(&self.left()[..n]);
                    self.at += n;
                    match &mut self.framing {
                        Framing::Length(left) | Framing::ChunkData(left) => *left -= n as u64,
                        _ => {}
                    }
                    return Ok(n);
                }
                Framing::ChunkSize | Framing::ChunkEnd => {
                    let line_end = loop {
                        if let Some(i) = self.left().windows(2).position(|w| w == b"\r\n") {
                            break i;
                        }
                        if self.left().len() > 1024 {
                            return Err(broken("has a chunk size line over 1 KiB"));
                        }
                        if self.fill()? == 0 {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the connection closed before the answer's last chunk",
                            ));
                        }
                    };
                    let line = String::from_utf8_lossy(&self.left()[..line_end]).into_owned();
                    self.at += line_end + 2;
                    if self.framing == Framing::ChunkEnd {
                        if !line.is_empty() {
                            return Err(broken("has a chunk longer than its size"));
                        }
                        self.framing = Framing::ChunkSize;
                        continue;
                    }
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size, 16)
                        .map_err(|_| broken(&format!("has a bad chunk size {size:?}")))?;
                    // The last chunk: no trailers from bsc.
                    self.framing = if size == 0 {
                        Framing::Done
                    } else {
                        Framing::ChunkData(size)
                    };
                }
            }
        }
    }
}

/// Sends one request and returns the checked answer's JSON.
pub fn send(target: &Target, call: &Call) -> Result<Value, ClientError> {
    check_answer(&exchange(target, call)?, &target.to_string())
}

/// Sends one request and reads its whole answer (the thin I/O part): the
/// head and body as `open` frames them, within one deadline
/// however slowly it drips.
pub fn exchange(target: &Target, call: &Call) -> Result<Answer, ClientError> {
    let server = target.to_string();
    let deadline = crate::clock::monotonic() + ANSWER_TIMEOUT;
    let (status, mut body) = open(target, call)?;
    let fail = |e: io::Error| match e.kind() {
        // The body's framing broken or cut short: not what bsc sends.
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => ClientError::NotBsc {
            server: server.clone(),
            reason: e.to_string(),
        },
        _ => ClientError::Unreachable {
            server: server.clone(),
            reason: describe_io(&e),
        },
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(crate::clock::monotonic());
        if left.is_zero() {
            return Err(fail(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no whole answer within {} s", ANSWER_TIMEOUT.as_secs()),
            )));
        }
        body.set_read_timeout(left).map_err(fail)?;
        match body.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(e)),
        }
        if buf.len() > MAX_ANSWER {
            return Err(ClientError::NotBsc {
                server,
                reason: "the answer is larger than 64 MiB".into(),
            });
        }
    }
    Ok(Answer { status, body: buf })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, as a socket may.
    struct Dribble<'a>(&'a [u8], usize);

    impl Read for Dribble<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(out.len()).min(self.1);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn body(bytes: &[u8], framing: Framing, step: usize) -> io::Result<Vec<u8>> {
        let mut b = Body {
            source: Dribble(bytes, step),
            buf: Vec::new(),
            at: 0,
            framing,
        };
        let mut out = Vec::new();
        b.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn heads_say_how_their_bodies_end() {
        let head = |b: &[u8]| parse_head(b);
        assert_eq!(
            head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\n"),
            Ok(Some((200, 47, Framing::ChunkSize)))
        );
        assert_eq!(
            head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\n\r\n{"),
            Ok(Some((404, 46, Framing::Length(12))))
        );
        assert_eq!(
            head(b"HTTP/1.0 200 OK\r\n\r\n{}"),
            Ok(Some((200, 19, Framing::ToEnd)))
        );
        assert_eq!(head(b"HTTP/1.1 2"), Ok(None));
        assert_eq!(head(b""), Ok(None));
        assert!(head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
            .unwrap_err()
            .contains("Content-Length"));
    }

    #[test]
    fn bodies_are_framed_however_they_arrive() {
        for step in [1, 3, 64 * 1024] {
            let chunked = b"3\r\nabc\r\na;ext=1\r\n0123456789\r\n0\r\n\r\n";
            assert_eq!(
                body(chunked, Framing::ChunkSize, step).unwrap(),
                b"abc0123456789"
            );
            assert_eq!(
                body(b"abcdefXYZ", Framing::Length(6), step).unwrap(),
                b"abcdef"
            );
            assert_eq!(
                body(b"to the end", Framing::ToEnd, step).unwrap(),
                b"to the end"
            );
            let short = body(b"abc", Framing::Length(6), step).unwrap_err();
            assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
            let cut = body(b"3\r\nabc\r\n", Framing::ChunkSize, step).unwrap_err();
            assert_eq!(cut.kind(), io::ErrorKind::UnexpectedEof);
            assert!(body(b"zz\r\n", Framing::ChunkSize, step).is_err());
            assert!(body(b"2\r\nabc\r\n0\r\n\r\n", Framing::ChunkSize, step).is_err());
        }
    }
}
