//! `GET /<name>/files`, produced in pieces ([`crate::control::http::body`]): per
//! handler with that name (by id), the files bsc made for it that still exist,
//! oldest first, the open one last, read from the journal a batch at a time
//! as the socket drains. A file closed between pieces is listed once: the
//! walk goes on after the last file it wrote (by path, or by closing time if
//! retention deleted that one meanwhile); a handler stopped meanwhile ends
//! its list where the walk was. Each handler's object is an
//! [`HandlerFiles`](super::answers::HandlerFiles), written field by field.

use std::path::PathBuf;
use std::time::SystemTime;

use super::answers::FileEntry;
use super::walk::write;
use super::Context;
use crate::clock::UnixMicros;
use crate::control::http::body::PIECE;
use crate::manager::HandlerId;
use crate::storage::OwnFile;

/// Files read from the journal per batch.
const BATCH: usize = 128;

/// A file as the answer lists it.
fn file_entry(f: &OwnFile, state: &'static str) -> FileEntry<'static> {
    FileEntry {
        path: f.path.display().to_string(),
        bytes: f.bytes,
        records: f.span.records,
        first_record_at: f.span.first_ts.map(UnixMicros::to_rfc3339),
        last_record_at: f.span.last_ts.map(UnixMicros::to_rfc3339),
        state: state.into(),
        clock: f.span.clock.state().into(),
        clock_max_error_us: f.span.clock.max_error_us,
    }
}

/// Where a walk over a name's files is.
#[derive(Debug)]
pub struct Walk {
    name: String,
    /// The handler being written, or the next id to look at.
    handler: HandlerId,
    /// Its object is open (`{"address":...,"files":[` written).
    in_handler: bool,
    /// The last file written in it: path and closing time.
    after: Option<(PathBuf, SystemTime)>,
    files: usize,
    handlers: usize,
    started: bool,
}

impl Walk {
    /// A walk over the files of the handlers named `name`.
    pub fn new(name: &str) -> Walk {
        Walk {
            name: name.to_string(),
            handler: 0,
            in_handler: false,
            after: None,
            files: 0,
            handlers: 0,
            started: false,
        }
    }

    /// Ends the open handler's object (its name last: the keys are in
    /// alphabetical order, as everywhere in bsc's JSON).
    fn close_handler(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"],\"name\":");
        write(out, &self.name);
        out.push(b'}');
        self.in_handler = false;
        self.after = None;
    }

    /// Appends a file entry.
    fn file(&mut self, out: &mut Vec<u8>, f: &OwnFile, state: &'static str) {
        if self.files > 0 {
            out.push(b',');
        }
        write(out, &file_entry(f, state));
        self.files += 1;
        self.after = Some((f.path.clone(), f.closed_at));
    }
}

/// Appends the next piece of the list (about [`PIECE`] bytes) to `out`.
/// Returns whether more follows.
pub fn produce(walk: &mut Walk, cx: &Context, out: &mut Vec<u8>) -> bool {
    let manager = &*cx.manager;
    if !walk.started {
        out.push(b'[');
        walk.started = true;
    }
    let mut ids = manager.handlers_named(&walk.name);
    ids.sort_unstable();
    ids.retain(|&id| id >= walk.handler);
    for hid in ids {
        if walk.in_handler && hid != walk.handler {
            // The handler being written stopped meanwhile.
            walk.close_handler(out);
        }
        let h = manager.handler(hid);
        if !walk.in_handler {
            if walk.handlers > 0 {
                out.push(b',');
            }
            let address = &h.spec().address;
            out.extend_from_slice(b"{\"address\":");
            write(out, &(&address.host, address.port));
            out.extend_from_slice(b",\"files\":[");
            walk.handler = hid;
            walk.in_handler = true;
            walk.handlers += 1;
            walk.files = 0;
        }
        loop {
            let after = walk.after.as_ref().map(|(p, t)| (p.as_path(), *t));
            let batch = manager.files_of_after(hid, after, BATCH);
            for f in &batch {
                walk.file(out, f, "closed");
            }
            if out.len() >= PIECE {
                return true;
            }
            if batch.len() < BATCH {
                break;
            }
        }
        if let Some(open) = h.open_file(cx.now) {
            walk.file(out, &open, "open");
        }
        walk.close_handler(out);
        walk.handler = hid + 1;
    }
    if walk.in_handler {
        walk.close_handler(out);
    }
    out.push(b']');
    false
}
