//! `GET /<name>/data?from=T&to=T[&apid=…][&vcid=…][&port=N]`: one classic pcap
//! of the records of a handler with `from <= timestamp < to`, read from its
//! files as the socket drains ([`crate::control::http::body`]).
//!
//! What the answer holds is fixed when the request arrives: the closed files
//! the journal knows for the handler, oldest first, then the open file up to
//! the end of its last whole record written then (a second descriptor on it,
//! so a record being written never comes out torn, nor one written later).
//! Files whose journaled first and last record times are outside the window
//! are never opened. A file is read only between the first and the last
//! block its sparse index ([`crate::files::index`]) says may hold the window;
//! a closed file without an index (closed before bsc started) is read whole,
//! and the index noted as it is read is kept ([`Extract::rebuilt`]), so the
//! next extract from it reads only its blocks. Reads are at most [`READ`]
//! bytes and [`READ_PER_PIECE`] per piece, whatever the window keeps, so the
//! loop stays responsive and a connection holds one piece.
//!
//! Decisions, each tested in `tests/extract.rs`:
//! - a name with several handlers (addresses) needs `port=` to pick one (409
//!   otherwise): one pcap has one link type;
//! - a name no handler has now, whose files the journal still knows (a stopped
//!   handler, maybe run at several addresses over time), is answered from
//!   those files in the order of their first records, with the header of the
//!   oldest (files with another header are left out);
//! - a file deleted by retention or shipped away before the answer reaches it
//!   is left out (a log line says so); one being read when it is deleted is
//!   read to its end (the descriptor holds it);
//! - a file whose header is not the answer's (another link type or precision,
//!   a file replaced under its name) is left out with a log line.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};

use serde_json::Value;

use super::asked::{fields, not_found};
use super::Context;
use crate::clock::{ClockOnFiles, ClockWord, UnixNanos, CLOCK_HEADER};
use crate::control::http::body::{Cursor, PIECE};
use crate::control::http::request::Request;
use crate::control::http::response::Response;
use crate::files::index::SparseIndex;
use crate::files::ipudp;
use crate::files::pcap::{self, LinkType, Precision, GLOBAL_HEADER_LEN};
use crate::files::window::{parse_time, RecordHead, Window};
use crate::manager::Manager;
use crate::storage::Span;
use crate::storage::{dir_of, OwnFile};
use crate::sys::{self, OpenMode};
use crate::units::transform::Transform;
use crate::warn;

/// Bytes read from a file per read.
pub const READ: usize = 64 * 1024;
/// Bytes read from files per piece of the answer at most.
pub const READ_PER_PIECE: usize = 256 * 1024;
/// The answer's media type (a classic pcap file).
pub const CONTENT_TYPE: &str = "application/vnd.tcpdump.pcap";
/// The parameters the route takes.
const PARAMETERS: &str = "from, to, apid, vcid, port";

/// A file the answer will read.
#[derive(Debug)]
enum Source {
    /// A closed file, opened when the answer reaches it, and the bytes of
    /// it its index says may hold the window (`None`: no index, all of it).
    Closed(OwnFile, Option<(u64, u64)>),
    /// The open file: a descriptor on it, the bytes to read (up to the end
    /// of what was written) and the clock's word on it so far.
    Open(File, u64, u64, ClockWord),
}

/// The file being read.
#[derive(Debug)]
struct Reading {
    file: File,
    /// The next offset to read.
    at: u64,
    /// Where to stop (the file's length when it was opened).
    end: u64,
    /// Bytes read, not yet cut into records (less than one record).
    carry: Vec<u8>,
    /// A closed file without an index, read whole: its index, noted as it
    /// is read, to keep once it is read to its end.
    rebuild: Option<(std::path::PathBuf, SparseIndex)>,
}

/// An extract under way: where it is in its files.
#[derive(Debug)]
pub struct Extract {
    window: Window,
    filters: Vec<Transform>,
    /// The global header every file read must have; it starts the answer.
    header: [u8; GLOBAL_HEADER_LEN],
    precision: Precision,
    /// Bytes before the unit in a record (synthesized IP/UDP headers).
    unit_at: usize,
    sources: VecDeque<Source>,
    reading: Option<Reading>,
    /// Indexes of files read whole, for the storage to keep.
    rebuilt: Vec<(std::path::PathBuf, SparseIndex)>,
    started: bool,
}

/// The handler keys whose files are asked for and, when it runs, the handler.
struct Chosen {
    keys: Vec<String>,
    running: Option<crate::manager::HandlerId>,
}

/// Answers `GET /<name>/data`: a head and an [`Extract`], or a JSON 4xx
/// naming the parameter at fault.
pub fn extract(name: &str, req: &Request, cx: &Context) -> Response {
    let asked = match fields(req) {
        Ok(f) => f,
        Err(refusal) => return refusal,
    };
    let one = |key: &str| -> Result<Option<String>, Response> {
        match asked.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Array(_)) => Err(Response::error(
                400,
                format!("{key}: given more than once; give it once"),
            )),
            Some(other) => Err(Response::error(
                400,
                format!("{key}: {other} is not a string"),
            )),
        }
    };
    if let Some(unknown) = asked
        .keys()
        .find(|k| !PARAMETERS.split(", ").any(|p| p == k.as_str()))
    {
        return Response::error(
            400,
            format!("unknown parameter {unknown:?}; valid: {PARAMETERS}"),
        );
    }
    let read = |key: &str, text: Option<String>| -> Result<Option<UnixNanos>, Response> {
        text.map(|t| parse_time(&t).map_err(|e| Response::error(400, format!("{key}: {e}"))))
            .transpose()
    };
    let parsed = (|| {
        let from = read("from", one("from")?)?;
        let to = read("to", one("to")?)?;
        let window =
            Window::new(from, to).map_err(|e| Response::error(400, format!("from, to: {e}")))?;
        let mut filters = Vec::new();
        for key in ["apid", "vcid"] {
            if let Some(list) = one(key)? {
                let t = Transform::parse(&format!("{key}:{list}"))
                    .map_err(|e| Response::error(400, format!("{key}: {e}")))?;
                filters.push(t);
            }
        }
        let port = match one("port")? {
            None => None,
            Some(p) => Some(p.trim().parse::<u16>().map_err(|_| {
                Response::error(400, format!("port: {p:?} is not a port number 0..65535"))
            })?),
        };
        Ok::<_, Response>((window, filters, port))
    })();
    let (window, filters, port) = match parsed {
        Ok(p) => p,
        Err(refusal) => return refusal,
    };
    let manager = &*cx.manager;
    let chosen = match choose(name, port, manager) {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    let mut closed: Vec<OwnFile> = chosen
        .keys
        .iter()
        .flat_map(|k| manager.storage().naming().files(k))
        .collect();
    // Several keys (a stopped handler's runs at other addresses): by time.
    closed.sort_by_key(|f| f.span.first_ts);
    let (header, link, precision) = match chosen.running {
        Some(hid) => {
            let h = manager.handler(hid);
            let (link, precision) = (h.link(), h.spec().timestamp_precision);
            (pcap::global_header(link, precision), link, precision)
        }
        None => match closed.iter().find_map(header_of) {
            Some(found) => found,
            None => {
                return Response::error(
                    409,
                    format!("no file of {name:?} left to read a pcap header from"),
                )
            }
        },
    };
    let unit_at = match link {
        LinkType::User0 => 0,
        LinkType::Ipv4 => ipudp::V4_HEADERS,
        LinkType::Ipv6 => ipudp::V6_HEADERS,
        LinkType::Ethernet if !filters.is_empty() => return Response::error(
            400,
            "apid, vcid: an Ethernet handler's records are frames, not units; filter without them",
        ),
        LinkType::Ethernet => 0,
    };
    // Whether a file's records may be in the window, by its span: its least
    // and most record time when bsc knows them; else its first and last
    // records', which bound the others only while the clock went forward (a
    // file whose last is before its first may hold any time, and is read).
    let micros_span = |span: &Span| {
        let (lo, hi) = match (span.earliest, span.latest) {
            (Some(lo), Some(hi)) => (Some(lo), Some(hi)),
            _ => match (span.first_ts, span.last_ts) {
                (Some(f), Some(l)) if l < f => return true,
                bounds => bounds,
            },
        };
        window.overlaps(
            lo.map(UnixNanos::from),
            hi.map(|l| UnixNanos(UnixNanos::from(l).0 + 999)),
        )
    };
    let storage = manager.storage();
    // A file with an index is judged by it (each block's earliest and latest
    // record, right whatever the clock did); one without, by its span.
    let mut sources: VecDeque<Source> = closed
        .into_iter()
        .filter_map(|f| match storage.index_of(&f.path) {
            Some(ix) => {
                let range = ix.range(&window, f.bytes);
                (range.0 < range.1).then(|| Source::Closed(f, Some(range)))
            }
            None => micros_span(&f.span).then(|| Source::Closed(f, None)),
        })
        .collect();
    if let Some(h) = chosen.running.map(|hid| manager.handler(hid)) {
        let span = h.open_file(cx.now).map(|f| f.span);
        if let (Some(span), Some((file, end))) = (span, h.written_file()) {
            let range = match h.open_index() {
                Some(ix) => Some(ix.range(&window, end)).filter(|r| r.0 < r.1),
                None => micros_span(&span).then_some((GLOBAL_HEADER_LEN as u64, end)),
            };
            if let Some((start, stop)) = range {
                sources.push_back(Source::Open(file, start, stop, span.clock));
            }
        }
    }
    let headers = answer_headers(&sources);
    let ex = Extract {
        window,
        filters,
        header,
        precision,
        unit_at,
        sources,
        reading: None,
        rebuilt: Vec::new(),
        started: false,
    };
    let mut response = Response::in_pieces(CONTENT_TYPE, Cursor::new(ex));
    response.headers.extend(headers);
    response
}

/// The headers of an extract's answer, beside its body: the one place they
/// are set, from the files it will read (the closed ones as the journal
/// knows them, then the open one): how many, and the clock's word on them
/// ([`CLOCK_HEADER`], e.g. `synchronized; files=3; max_error_us=500`).
fn answer_headers(sources: &VecDeque<Source>) -> Vec<(&'static str, String)> {
    let words = sources.iter().map(|s| match s {
        Source::Closed(f, _) => f.span.clock,
        Source::Open(.., word) => *word,
    });
    vec![
        ("X-Bsc-Files", sources.len().to_string()),
        (CLOCK_HEADER, ClockOnFiles::of(words).to_string()),
    ]
}

/// The handler keys an extract reads: the running handler of that name (the
/// one at `port` when several run), else every key of that name (at `port`)
/// whose closed files the journal still knows (a stopped handler, maybe run
/// at several addresses over time).
fn choose(name: &str, port: Option<u16>, manager: &Manager) -> Result<Chosen, Response> {
    let mut ids = manager.handlers_named(name);
    if let Some(p) = port {
        ids.retain(|&hid| manager.handler(hid).spec().address.port == p);
    }
    match ids.as_slice() {
        [hid] => {
            return Ok(Chosen {
                keys: vec![manager.handler(*hid).journal_key()],
                running: Some(*hid),
            });
        }
        [] => {}
        several => {
            let ports: Vec<String> = several
                .iter()
                .map(|&h| manager.handler(h).spec().address.port.to_string())
                .collect();
            return Err(Response::error(
                409,
                format!(
                    "{name:?} has handlers on ports {}; pick one with port=",
                    ports.join(", ")
                ),
            ));
        }
    }
    let mut keys = manager.storage().naming().keys_named(name);
    if let Some(p) = port {
        keys.retain(|k| k.ends_with(&format!(", {p}]")));
    }
    if !keys.is_empty() {
        return Ok(Chosen {
            keys,
            running: None,
        });
    }
    match port {
        Some(p) => Err(Response::error(
            404,
            format!("port: no handler {name:?} on port {p}, running or in the journal"),
        )),
        None => Err(not_found(name, manager)),
    }
}

/// The header, link type and precision of a closed file bsc wrote, if it
/// can be read and is one of bsc's.
fn header_of(f: &OwnFile) -> Option<([u8; GLOBAL_HEADER_LEN], LinkType, Precision)> {
    let file = open_closed(f).ok()?;
    let mut have = [0u8; GLOBAL_HEADER_LEN];
    file.read_exact_at(&mut have, 0).ok()?;
    LinkType::ALL.into_iter().find_map(|l| {
        Precision::ALL
            .into_iter()
            .find(|&p| pcap::global_header(l, p) == have)
            .map(|p| (have, l, p))
    })
}

/// Opens a closed file below its trusted folder without following links, if
/// it is still the file bsc closed.
fn open_closed(f: &OwnFile) -> std::io::Result<File> {
    let (dir, name) = dir_of(&f.trusted, &f.path)?;
    let file = sys::open_file_at(&dir, &name, OpenMode::Read)?;
    let meta = file.metadata()?;
    if f.id.is_some_and(|id| id != (meta.dev(), meta.ino())) || !meta.is_file() {
        return Err(std::io::Error::other("another file is under its name now"));
    }
    Ok(file)
}

impl Extract {
    /// Starts reading the next file, if one is left; a file that cannot be
    /// read or has another header is left out with a log line.
    fn open_next(&mut self) -> bool {
        while let Some(source) = self.sources.pop_front() {
            let (file, start, stop, path) = match source {
                Source::Open(file, start, stop, _) => (file, start, stop, None),
                Source::Closed(f, range) => {
                    match open_closed(&f).and_then(|file| Ok((file.metadata()?.len(), file))) {
                        Ok((len, file)) => {
                            let (start, stop) = range.unwrap_or((GLOBAL_HEADER_LEN as u64, len));
                            (file, start, stop.min(len), Some((f.path, range.is_none())))
                        }
                        Err(e) => {
                            warn!(
                                "extract: {} left out: {e} (deleted by retention or shipped away?)",
                                f.path.display()
                            );
                            continue;
                        }
                    }
                }
            };
            let mut have = [0u8; GLOBAL_HEADER_LEN];
            if file.read_exact_at(&mut have, 0).is_err() || have != self.header {
                let what = path.map_or("the open file".into(), |(p, _)| p.display().to_string());
                warn!("extract: {what} left out: its pcap header is not the answer's");
                continue;
            }
            let rebuild = path.and_then(|(p, whole)| whole.then(|| (p, SparseIndex::default())));
            self.reading = Some(Reading {
                file,
                at: start.max(GLOBAL_HEADER_LEN as u64),
                end: stop,
                carry: Vec::new(),
                rebuild,
            });
            return true;
        }
        false
    }

    /// The indexes of the files read whole since the last call.
    pub fn rebuilt(&mut self) -> Vec<(std::path::PathBuf, SparseIndex)> {
        std::mem::take(&mut self.rebuilt)
    }

    /// Whether a record's bytes go into the answer.
    fn keeps(&self, head: &RecordHead, record: &[u8]) -> bool {
        if !self.window.contains(head.at) {
            return false;
        }
        let unit = record
            .get(pcap::RECORD_HEADER_LEN + self.unit_at..)
            .unwrap_or(&[]);
        self.filters.iter().all(|t| t.apply(unit).is_some())
    }
}

/// Appends the next piece of the pcap (about [`PIECE`] bytes, after reading
/// at most [`READ_PER_PIECE`] bytes of files) to `out`. Returns whether more
/// follows.
pub fn produce(ex: &mut Extract, out: &mut Vec<u8>) -> bool {
    if !ex.started {
        out.extend_from_slice(&ex.header);
        ex.started = true;
    }
    let mut budget = READ_PER_PIECE;
    let mut buf = vec![0u8; READ];
    loop {
        if out.len() >= PIECE || budget == 0 {
            return true;
        }
        if ex.reading.is_none() && !ex.open_next() {
            return false;
        }
        let Some(r) = ex.reading.as_mut() else {
            return false;
        };
        let want = (r.end - r.at).min(READ as u64).min(budget as u64) as usize;
        let n = if want == 0 {
            0
        } else {
            r.file.read_at(&mut buf[..want], r.at).unwrap_or(0)
        };
        if n == 0 {
            // Its end (a torn tail of a file cut short is left out); a file
            // read whole gives its index to the storage.
            if let Some(rebuild) = ex.reading.take().and_then(|r| r.rebuild) {
                ex.rebuilt.push(rebuild);
            }
            continue;
        }
        // The file offset of the first byte not yet cut into records.
        let base = r.at - r.carry.len() as u64;
        r.at += n as u64;
        budget -= n;
        let mut carry = std::mem::take(&mut r.carry);
        let mut rebuild = r.rebuild.take();
        carry.extend_from_slice(&buf[..n]);
        let mut pos = 0;
        loop {
            match RecordHead::read(&carry[pos..], ex.precision) {
                Ok(Some(head)) if pos + head.record_len() <= carry.len() => {
                    let record = &carry[pos..pos + head.record_len()];
                    if ex.keeps(&head, record) {
                        out.extend_from_slice(record);
                    }
                    if let Some((_, index)) = rebuild.as_mut() {
                        index.note(base + pos as u64, head.at);
                    }
                    pos += head.record_len();
                }
                Ok(_) => break,
                Err(e) => {
                    warn!("extract: the rest of a file left out: {e}");
                    ex.reading = None;
                    rebuild = None;
                    break;
                }
            }
        }
        carry.drain(..pos);
        if let Some(r) = ex.reading.as_mut() {
            r.carry = carry;
            r.rebuild = rebuild;
        }
    }
}
