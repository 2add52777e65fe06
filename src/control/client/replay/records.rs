//! The records to replay, in time order, from local pcap files or from a
//! running bsc's `GET /<name>/data`: both read by one pcap stream reader
//! ([`crate::files::pcap::reader`] over a `stream::PcapSource`), so the
//! `--name` form is the same code over an HTTP body. Several files are merged by time (the earliest record next; a tie
//! goes to the file given first), so the order they are given in does not
//! matter and files of two handlers interleave as they were received.

use std::fs::File;

use super::args::Inputs;
use crate::clock::UnixNanos;
use crate::control::client::stream::PcapSource;
use crate::control::client::{get_body, percent_encode, ClientError, Target};
use crate::files::pcap::reader::PcapReader;

/// One record: its time, its file's link type, the length the packet had
/// and the bytes captured.
pub struct Record {
    pub at: UnixNanos,
    pub link: u32,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// Why the records could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// A file or an answer is not what was expected (exit 1).
    Input(String),
    /// bsc could not be asked, or refused (its exit statuses).
    Client(ClientError),
}

/// One pcap stream and the record it holds next.
struct Stream {
    /// The file's path, or `bsc NAME` for an answer.
    label: String,
    link: u32,
    reader: PcapReader<PcapSource>,
    head: Option<Record>,
    /// Why the record after `head` cannot be read: said once `head` went.
    failed: Option<String>,
}

impl Stream {
    fn open(label: String, source: PcapSource) -> Result<Stream, String> {
        let reader = PcapReader::new(source).map_err(|e| format!("{label}: {e}"))?;
        let mut stream = Stream {
            label,
            link: reader.header().link,
            reader,
            head: None,
            failed: None,
        };
        stream.advance();
        match stream.failed.take() {
            Some(e) => Err(e),
            None => Ok(stream),
        }
    }

    /// Reads the next record into `head` (`None` at the end, or in `failed`
    /// why not).
    fn advance(&mut self) {
        self.head = match self.reader.next_record() {
            Ok(None) => None,
            Ok(Some(r)) => Some(Record {
                at: r.at,
                link: self.link,
                orig_len: r.orig_len,
                data: r.data.to_vec(),
            }),
            Err(e) => {
                self.failed = Some(format!("{}: {e}", self.label));
                None
            }
        };
    }
}

/// The records of every input, merged by time.
pub struct Records {
    streams: Vec<Stream>,
}

impl Records {
    /// Opens every input (every file is checked to be a pcap before
    /// anything is sent).
    pub fn open(inputs: &Inputs, server: Option<&Target>) -> Result<Records, ReadError> {
        let streams = match inputs {
            Inputs::Files(paths) => {
                let mut streams = Vec::with_capacity(paths.len());
                for path in paths {
                    let file = File::open(path)
                        .map_err(|e| ReadError::Input(format!("{path}: cannot open: {e}")))?;
                    if file.metadata().is_ok_and(|m| m.is_dir()) {
                        return Err(ReadError::Input(format!(
                            "{path}: a folder, not a pcap file"
                        )));
                    }
                    streams.push(
                        Stream::open(path.clone(), PcapSource::File(file))
                            .map_err(ReadError::Input)?,
                    );
                }
                streams
            }
            Inputs::Server { name, from, to } => {
                let Some(target) = server else {
                    return Err(ReadError::Input("no bsc to ask".into()));
                };
                let mut path = format!("/{}/data", percent_encode(name));
                let query: Vec<String> = [("from", from), ("to", to)]
                    .iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", percent_encode(v))))
                    .collect();
                if !query.is_empty() {
                    path = format!("{path}?{}", query.join("&"));
                }
                let body = get_body(target, path).map_err(ReadError::Client)?;
                vec![
                    Stream::open(format!("bsc {name}"), PcapSource::Answer(body))
                        .map_err(ReadError::Input)?,
                ]
            }
        };
        Ok(Records { streams })
    }

    /// The next record in time order, `None` after the last.
    /// A record that cannot be read ends the records, once those before it went.
    pub fn next(&mut self) -> Result<Option<Record>, String> {
        if let Some(e) = self.streams.iter_mut().find_map(|s| s.failed.take()) {
            return Err(e);
        }
        let mut earliest: Option<usize> = None;
        for (i, s) in self.streams.iter().enumerate() {
            if let Some(r) = &s.head {
                if earliest
                    .is_none_or(|e| self.streams[e].head.as_ref().is_none_or(|h| r.at < h.at))
                {
                    earliest = Some(i);
                }
            }
        }
        let Some(i) = earliest else {
            return Ok(None);
        };
        let stream = &mut self.streams[i];
        let record = stream.head.take();
        stream.advance();
        Ok(record)
    }
}
