//! `bsc extract`: the records of a time window as one pcap, from a running
//! bsc (`GET /<name>/data`, streamed to the output as it arrives) or from
//! capture files on this machine (archives, copies off the box), read with
//! [`crate::files::pcap::reader`], without a server.
//!
//! Which arguments are files: one containing `/` or naming an existing path
//! is a FILE, any other a handler NAME ([`Source::of`]); `--name` always
//! names a handler (a file named like one in the current folder). Files are
//! read in the order of their first record (bsc's files of one handler never
//! overlap), so the output is in time order.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;

use super::action::percent_encode;
use super::http::{describe_io, ClientError};
use super::stream::{get_body, PcapSource};
use super::target::Target;
use crate::clock::UnixNanos;
use crate::files::ipudp;
use crate::files::pcap::{self, reader::PcapReader, LinkType};
use crate::files::window::Window;
use crate::units::transform::Transform;

mod command;
pub use command::{run, ExtractArgs};

/// What an extract reads.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    /// A running bsc's handler.
    Name(String),
    /// Capture files on this machine.
    Files(Vec<PathBuf>),
}

impl Source {
    /// Tells names from files: an argument with a `/` or naming an existing
    /// path is a file; `--name` is a name. Names and files together, or two
    /// names, are refused.
    pub fn of(
        args: &[String],
        name: Option<&str>,
        exists: impl Fn(&str) -> bool,
    ) -> Result<Source, String> {
        let (files, names): (Vec<&String>, Vec<&String>) =
            args.iter().partition(|a| a.contains('/') || exists(a));
        match (name, names.as_slice(), files.as_slice()) {
            (Some(n), [], []) => Ok(Source::Name(n.to_string())),
            (None, [n], []) => Ok(Source::Name(n.to_string())),
            (None, [], [_, ..]) => Ok(Source::Files(files.iter().map(PathBuf::from).collect())),
            (None, [], []) => Err("give a handler NAME or capture FILEs".into()),
            (None, [_, _, ..], []) => Err(format!(
                "{} are not files here and one handler NAME is read at a time; \
                 give files with a / (./{})",
                quoted(&names),
                names[0]
            )),
            (Some(_), _, _) | (None, [_, ..], [_, ..]) => Err(format!(
                "give either a handler NAME or FILEs, not both; {} no file here (a file \
                 needs a / or must exist), {} one",
                quoted(&names),
                quoted(&files),
            )),
        }
    }
}

/// `"a", "b"`: arguments quoted for a message.
fn quoted(args: &[&String]) -> String {
    args.iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the pcap goes: a new file, a device or FIFO that exists (`/dev/null`),
/// or stdout when it is not a terminal (its descriptor as a [`File`]: one
/// writer type, whichever it is); with the path of the file it made (to remove
/// if the extract fails). A regular file that exists is never written over: it
/// may be the very file read, or one of bsc's captures.
pub fn output(
    path: Option<&PathBuf>,
) -> Result<(io::BufWriter<File>, Option<PathBuf>), ClientError> {
    let (file, made) = match path {
        Some(p) => {
            let refused =
                |e: &dyn std::fmt::Display| ClientError::Usage(format!("-o {}: {e}", p.display()));
            let (file, made) = match std::fs::metadata(p) {
                Ok(m) if m.is_file() => {
                    return Err(refused(&"exists already; bsc extract never writes over a file (it may be an input or a capture file): remove it or name another"));
                }
                Ok(_) => (File::options().write(true).open(p), None),
                Err(_) => (
                    File::options().write(true).create_new(true).open(p),
                    Some(p.clone()),
                ),
            };
            (file.map_err(|e| refused(&e))?, made)
        }
        None if io::stdout().is_terminal() => return Err(ClientError::Usage(
            "stdout is a terminal and a pcap is binary: give -o FILE, or pipe it (| tshark -r -)"
                .into(),
        )),
        None => (
            io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map(File::from)
                .map_err(|e| ClientError::Usage(format!("stdout: {e}")))?,
            None,
        ),
    };
    Ok((io::BufWriter::with_capacity(256 * 1024, file), made))
}

/// A progress line on stderr when it is a terminal, every MiB.
struct Progress {
    shown: u64,
    on: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            shown: 0,
            on: io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, bytes: u64, what: &str) {
        if self.on && bytes >= self.shown + (1 << 20) {
            self.shown = bytes;
            eprint!(
                "\r\x1b[Kbsc extract: {} {what}",
                super::table::human_bytes(bytes)
            );
        }
    }

    fn end(&self) {
        if self.on && self.shown > 0 {
            eprintln!();
        }
    }
}

/// Asks `target` for handler `name`'s records in the window (the query
/// string `query`, already encoded) and copies the pcap to `out` as it
/// arrives ([`get_body`], as `bsc replay --name` reads it). Returns the bytes
/// written.
pub fn remote(
    target: &Target,
    name: &str,
    query: &str,
    out: &mut dyn Write,
) -> Result<u64, ClientError> {
    let server = target.to_string();
    let mut body = get_body(target, format!("/{}/data?{query}", percent_encode(name)))?;
    // An answer cut short (bsc stopped, the connection broke) is an error, not
    // a shorter pcap: bsc's answer ends with its last chunk.
    let cut = |e: io::Error| ClientError::Unreachable {
        server: server.clone(),
        reason: describe_io(&e),
    };
    let io_err = |e: io::Error| ClientError::Usage(format!("cannot write the pcap: {e}"));
    let mut magic = [0u8; 4];
    body.read_exact(&mut magic).map_err(cut)?;
    if !matches!(
        u32::from_le_bytes(magic),
        0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1
    ) {
        return Err(ClientError::NotBsc {
            server,
            reason: "its answer is not a pcap".into(),
        });
    }
    out.write_all(&magic).map_err(io_err)?;
    let mut total = magic.len() as u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut progress = Progress::new();
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(cut(e)),
        };
        out.write_all(&buf[..n]).map_err(io_err)?;
        total += n as u64;
        progress.update(total, "received");
    }
    progress.end();
    out.flush().map_err(io_err)?;
    Ok(total)
}

/// Writes the records of `files` in the window that pass `filters` to `out`
/// as one pcap (the first file's link type and precision). Returns the
/// records written.
pub fn local(
    files: &[PathBuf],
    window: Window,
    filters: &[Transform],
    out: &mut dyn Write,
) -> Result<u64, ClientError> {
    let usage = |p: &PathBuf, e: &dyn std::fmt::Display| {
        ClientError::Usage(format!("{}: {e}", p.display()))
    };
    let open = |p: &PathBuf| {
        let file = File::open(p).map_err(|e| usage(p, &e))?;
        PcapReader::new(PcapSource::File(file)).map_err(|e| usage(p, &e))
    };
    // Each file's first record, to read them in time order: each goes in
    // after those whose first is not later (a stable sort, without one).
    let mut ordered: Vec<(Option<UnixNanos>, _, _)> = Vec::new();
    for p in files {
        let mut r = open(p)?;
        let first = r.next_record().map_err(|e| usage(p, &e))?.map(|rec| rec.at);
        let at = ordered.partition_point(|(f, _, _)| *f <= first);
        ordered.insert(at, (first, r.header(), p));
    }
    let Some((_, header, _)) = ordered.first() else {
        return Err(ClientError::Usage("give at least one FILE".into()));
    };
    let header = *header;
    let unit_at = match LinkType::from_number(header.link) {
        Some(LinkType::User0) => 0,
        Some(LinkType::Ipv4) => ipudp::V4_HEADERS,
        Some(LinkType::Ipv6) => ipudp::V6_HEADERS,
        _ if filters.is_empty() => 0,
        _ => {
            return Err(ClientError::Usage(format!(
                "--apid/--vcid need records that are units (bsc's user0, ipv4 or ipv6 files); these are {}",
                pcap::link_name(header.link)
            )))
        }
    };
    let io_err =
        |e: &dyn std::fmt::Display| ClientError::Usage(format!("cannot write the pcap: {e}"));
    // Written in this machine's byte order, records encoded as bsc's own.
    out.write_all(&header.to_native_bytes())
        .map_err(|e| io_err(&e))?;
    let mut record = Vec::with_capacity(64 * 1024);
    let mut kept = 0;
    let mut read = 0u64;
    let mut progress = Progress::new();
    for (_, h, p) in &ordered {
        if h.link != header.link {
            return Err(usage(
                p,
                &format!(
                    "its link type is {}, the first file's {}",
                    pcap::link_name(h.link),
                    pcap::link_name(header.link)
                ),
            ));
        }
        let mut r = open(p)?;
        while let Some(rec) = r.next_record().map_err(|e| usage(p, &e))? {
            read += 16 + rec.data.len() as u64;
            progress.update(read, "read");
            let unit = rec.data.get(unit_at..).unwrap_or(&[]);
            if window.contains(rec.at) && filters.iter().all(|t| t.apply(unit).is_some()) {
                record.clear();
                pcap::encode_record(
                    &mut record,
                    header.precision,
                    rec.at,
                    rec.data,
                    rec.orig_len as usize,
                );
                out.write_all(&record).map_err(|e| io_err(&e))?;
                kept += 1;
            }
        }
    }
    progress.end();
    out.flush().map_err(|e| io_err(&e))?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(args: &[&str], name: Option<&str>) -> Result<Source, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Source::of(&args, name, |a| a == "here.pcap" || a == "tlm")
    }

    #[test]
    fn names_are_told_from_files() {
        assert_eq!(of(&["pass"], None), Ok(Source::Name("pass".into())));
        assert_eq!(
            of(&["./pass"], None),
            Ok(Source::Files(vec!["./pass".into()]))
        );
        assert_eq!(
            of(&["here.pcap", "a/b.pcap"], None),
            Ok(Source::Files(vec!["here.pcap".into(), "a/b.pcap".into()]))
        );
        // A file named like a handler is the file; --name asks the server.
        assert_eq!(of(&["tlm"], None), Ok(Source::Files(vec!["tlm".into()])));
        assert_eq!(of(&[], Some("tlm")), Ok(Source::Name("tlm".into())));
        for bad in [&["pass", "here.pcap"][..], &["pass", "other"], &[]] {
            assert!(of(bad, None).is_err(), "{bad:?}");
        }
        assert!(of(&["here.pcap"], Some("tlm")).is_err());
        assert!(of(&["pass", "other"], None).unwrap_err().contains("./pass"));
    }
}
