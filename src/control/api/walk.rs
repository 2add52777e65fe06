//! The JSON documents of every handler (`GET /`, `GET /stats`, `GET /series`)
//! and socket (`GET /capturers`),
//! produced in pieces ([`crate::control::http::body`]) as the socket drains: a [`Walk`]
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
use crate::clock::UnixMicros;
use crate::control::http::body::PIECE;
use crate::manager::{Capturer, HandlerId};
use crate::ops::hooks::ShipStatus;

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

    /// Opens `cap`'s group (`"key":[` in the grouped documents).
    fn open_group(&mut self, cap: &Capturer, out: &mut Vec<u8>) {
        if self.grouped() {
            if self.groups > 0 {
                out.push(b',');
            }
            write(out, &cap.address.python_repr());
            out.extend_from_slice(b":[");
            self.entries = 0;
        }
        self.groups += 1;
        self.capturer = cap.seq;
        self.in_group = true;
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
    let capturers = cx.manager.capturers();
    if walk.until.is_none() {
        walk.until = Some(capturers.iter().map(|(_, c)| c.seq).max().unwrap_or(0));
        out.extend_from_slice(&head(walk.view, cx.now));
    }
    let until = walk.until.unwrap_or(0);
    let piece = Piece::new(walk.view, cx);
    let from = walk.capturer;
    let listed = capturers
        .iter()
        .filter(|(_, c)| c.seq >= from && c.seq <= until);
    for &(_, cap) in listed {
        if walk.view == View::Capturers {
            if walk.entries > 0 {
                out.push(b',');
            }
            write(out, &capturer_entry(cx.manager, cap, cx.now, cx.mono));
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
            walk.open_group(cap, out);
        }
        if handlers(walk, &piece, cap, cx, out) {
            return true;
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

/// The start of a document.
fn head(view: View, now: UnixMicros) -> Vec<u8> {
    match view {
        View::Series => {
            format!("{{\"now\":{},\"step_s\":1,\"handlers\":[", now.secs()).into_bytes()
        }
        View::Capturers => b"[".to_vec(),
        _ => b"{".to_vec(),
    }
}

/// What a `/stats` piece reads once: the clock's state (the loop's latest
/// reading) and the ship backlogs.
struct Piece {
    clock: bool,
    ships: HashMap<String, ShipStatus>,
}

impl Piece {
    fn new(view: View, cx: &Context) -> Piece {
        match view {
            View::Stats => Piece {
                clock: clock_ok(cx),
                ships: cx.manager.ship_statuses(cx.now).into_iter().collect(),
            },
            _ => Piece {
                clock: false,
                ships: HashMap::new(),
            },
        }
    }
}

/// Writes the entries of `cap`'s handlers from where the walk is in its
/// group. Returns whether the piece is full (the walk then says where to go on).
fn handlers(
    walk: &mut Walk,
    piece: &Piece,
    cap: &Capturer,
    cx: &Context,
    out: &mut Vec<u8>,
) -> bool {
    let handlers = cap.handlers();
    let start = walk
        .last
        .and_then(|last| handlers.iter().position(|&h| h == last))
        .map_or(walk.position.min(handlers.len()), |i| i + 1);
    for (i, &hid) in handlers.iter().enumerate().skip(start) {
        if walk.entries > 0 {
            out.push(b',');
        }
        let h = cx.manager.handler(hid);
        match walk.view {
            View::Configs => write(out, &config_entry(h, cx.manager.storage(), cx.now)),
            View::Stats => {
                let ship = piece.ships.get(&h.journal_key()).cloned();
                write(out, &stats_entry(cap, h, cx.now, piece.clock, ship));
            }
            // `/capturers` lists sockets, each written by `produce`.
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
    false
}

/// Appends `value` as JSON. bsc's own entry types always serialize (no maps
/// with non-string keys, no failing `Serialize`); `null` stands in otherwise.
pub(super) fn write(out: &mut Vec<u8>, value: &impl Serialize) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}
