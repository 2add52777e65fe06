//! The JSON documents of every handler (`GET /`, `GET /stats`, `GET /series`)
//! and socket (`GET /capturers`),
//! produced in pieces ([`crate::http::body`]) as the socket drains: a [`Walk`]
//! goes capturer by capturer (creation order) and, within one, handler by
//! handler, each piece reading the manager as it is then. The document stays
//! valid JSON whatever changes between pieces: a capturer opened after the
//! first piece is left out (its address could repeat a key already written),
//! one closed meanwhile ends its group where the walk was, and a handler
//! removed is skipped; the walk goes on after the last handler it wrote.

use std::collections::HashMap;

use serde::Serialize;

use super::health::clock_ok;
use super::views::{capturer_entry, series_entry, stats_entry};
use super::{config_entry, Context};
use crate::hooks::ShipStatus;
use crate::http::body::PIECE;
use crate::manager::HandlerId;

/// Which document a walk writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// `GET /`: config entries grouped by address key.
    Configs,
    /// `GET /stats`: statistics grouped by address key.
    Stats,
    /// `GET /series`: `{"now", "step_s", "handlers": [...]}`, one flat list.
    Series,
    /// `GET /capturers`: one entry per socket, one flat list.
    Capturers,
}

/// Where a walk is.
#[derive(Debug)]
pub struct Walk {
    view: View,
    /// The last capturer (creation sequence) the document lists, fixed by
    /// the first piece.
    until: Option<u64>,
    /// The capturer being written, or the next one to look at.
    capturer: u64,
    /// Its group is open (`"key":[` written).
    in_group: bool,
    /// Position after the last handler written in the group, and its id.
    position: usize,
    last: Option<HandlerId>,
    /// Groups and entries written (for the commas).
    groups: usize,
    entries: usize,
}

impl Walk {
    /// A walk over `view` from its start.
    pub fn new(view: View) -> Walk {
        Walk {
            view,
            until: None,
            capturer: 0,
            in_group: false,
            position: 0,
            last: None,
            groups: 0,
            entries: 0,
        }
    }

    fn grouped(&self) -> bool {
        matches!(self.view, View::Configs | View::Stats)
    }

    fn close_group(&mut self, out: &mut Vec<u8>) {
        if self.grouped() {
            out.push(b']');
        }
        self.in_group = false;
        self.position = 0;
        self.last = None;
    }
}

/// Appends the next piece of the document (about [`PIECE`] bytes) to `out`.
/// Returns whether more follows.
pub fn produce(walk: &mut Walk, cx: &Context, out: &mut Vec<u8>) -> bool {
    let manager = &*cx.manager;
    let capturers = manager.capturers();
    let first = walk.until.is_none();
    let until = *walk
        .until
        .get_or_insert_with(|| capturers.iter().map(|(_, c)| c.seq).max().unwrap_or(0));
    if first {
        match walk.view {
            View::Series => {
                let head = format!("{{\"now\":{},\"step_s\":1,\"handlers\":[", cx.now.secs());
                out.extend_from_slice(head.as_bytes());
            }
            View::Capturers => out.push(b'['),
            _ => out.push(b'{'),
        }
    }
    // Read once per piece: the clock's state (one adjtimex) and the backlogs.
    let (clock, ships) = match walk.view {
        View::Stats => (
            clock_ok(cx.now),
            manager.ship_statuses(cx.now).into_iter().collect(),
        ),
        _ => (false, HashMap::<String, ShipStatus>::new()),
    };
    let from = walk.capturer;
    let listed = capturers
        .iter()
        .filter(|(_, c)| c.seq >= from && c.seq <= until);
    for &(_, cap) in listed {
        if walk.view == View::Capturers {
            if walk.entries > 0 {
                out.push(b',');
            }
            write(out, &capturer_entry(manager, cap, cx.now));
            walk.entries += 1;
            walk.capturer = cap.seq + 1;
            if out.len() >= PIECE {
                return true;
            }
            continue;
        }
        if walk.in_group && cap.seq != walk.capturer {
            // The capturer being written closed meanwhile.
            walk.close_group(out);
        }
        if !walk.in_group {
            if walk.grouped() {
                if walk.groups > 0 {
                    out.push(b',');
                }
                write(out, &cap.address.python_repr());
                out.extend_from_slice(b":[");
                walk.entries = 0;
            }
            walk.groups += 1;
            walk.capturer = cap.seq;
            walk.in_group = true;
        }
        let handlers = cap.handlers();
        let start = walk
            .last
            .and_then(|last| handlers.iter().position(|&h| h == last))
            .map_or(walk.position.min(handlers.len()), |i| i + 1);
        for (i, &hid) in handlers.iter().enumerate().skip(start) {
            if walk.entries > 0 {
                out.push(b',');
            }
            let h = manager.handler(hid);
            match walk.view {
                View::Configs => write(out, &config_entry(h, cx.now)),
                View::Stats => {
                    let ship = ships.get(&h.journal_key()).cloned();
                    write(out, &stats_entry(cap, h, cx.now, clock, ship));
                }
                // `/capturers` lists sockets, each written above.
                View::Capturers => {}
                View::Series => write(out, &series_entry(h, cx.now)),
            }
            walk.entries += 1;
            walk.position = i + 1;
            walk.last = Some(hid);
            if out.len() >= PIECE {
                return true;
            }
        }
        walk.close_group(out);
        walk.capturer = cap.seq + 1;
    }
    if walk.in_group {
        walk.close_group(out);
    }
    out.extend_from_slice(match walk.view {
        View::Series => b"]}",
        View::Capturers => b"]",
        _ => b"}",
    });
    false
}

/// Appends `value` as JSON. bsc's own entry types always serialize (no maps
/// with non-string keys, no failing `Serialize`); `null` stands in otherwise.
pub(super) fn write(out: &mut Vec<u8>, value: &impl Serialize) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}
