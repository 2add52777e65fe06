//! bsc, the binary stream capturer: telemetry streams in, rotating PCAP files out,
//! on one thread and one `mio` event loop.
//!
//! # Map
//!
//! | module | its job |
//! |---|---|
//! | `main.rs` | command line (argh), start-up, exit codes (the binary) |
//! | [`config`] | AIT's config keys as JSON: the whole document, load, conflicts between handlers |
//! | [`config::handler`] | one handler: [`config::HandlerSpec`]; its keys declared once in [`config::KEYS`] (name, default, doc, read, shown), metadata, rendered paths |
//! | [`config::framing`] | the `framing` key read into a [`framing::Framing`] (the unit layer imports no config) |
//! | [`config::capture_manager`] | the `capture_manager` and `manager_server` sections |
//! | [`config::fields`] | JSON values as the config means them: numbers, booleans, sizes, ages |
//! | [`config::duplicates`] | JSON and YAML text to a value, refusing a key given twice (its place and both lines) |
//! | [`yaml`] | AIT's `bsc.yaml` as is: YAML text to the JSON value [`config`] validates |
//! | [`pattern`] | file path patterns: strftime codes and `{key}` fields |
//! | [`paths`] | checked places for capture files (confinement), `-N` numbering |
//! | [`rotation`] | AIT's calendar rotation rule (pure) |
//! | [`pcap`] | PCAP encoding; [`pcap::PcapFile`], the owner of a file being written |
//! | [`capture`] | sockets and their read path: [`capture::capturer`], [`capture::udp`], [`capture::tcp`], [`capture::ethernet`] |
//! | [`ipudp`] | synthesized IP/UDP headers for `record_source` (pure) |
//! | [`framing`] | a stream (or datagram) cut into telemetry units (`framer.rs`): space packets, TM frames, fixed, length field, KISS (`kiss.rs`); CCSDS headers (`ccsds.rs`), CRC/FECF (`crc.rs`) (pure) |
//! | [`sequence`] | sequence-gap accounting per APID or virtual channel: gaps, missing, duplicates, resets (pure) |
//! | [`transform`] | `pre_write_transforms`: a unit to a sub-slice or filtered (strip, tail, apid, vcid) (pure) |
//! | [`telemetry`] | a handler's unit path: framing → FECF → sequence check → transforms, and their counters (pure) |
//! | [`manager`] | capturers by address, handlers, dirty list, timers; the only way to change a handler |
//! | [`manager::capturers`] | the open sockets, their tokens, TCP reconnect timers and the receive batch |
//! | [`manager::handler`] | one output stream: naming, file, pending records, stats |
//! | [`manager::pending`] | a handler's records not yet written: headers in its buffer, payloads in the receive slots (a gather borrowing the batch), one `writev` |
//! | [`http`] | the hand-rolled HTTP/1.1 server: [`http::request`] framing, [`http::form`] bodies, `http::connection` one connection and the answer budget, [`http::body`] answers produced in pieces, [`http::origin`] the `Host`/`Origin` checks against web pages |
//! | [`api`] | routes (`api/routes.rs`) → auth (`api/auth.rs`) → manager calls (`api/control.rs`) → AIT-shaped JSON: every answer a type in [`api::answers`], shared with the client; health, the status page; the answers that grow with handlers or files walked in pieces (`api/walk.rs`: `/`, `/stats`, `/series`, `/capturers`; `api/metrics.rs`; `api/files.rs`); `api/entry.rs` a handler's config entry, from the key table |
//! | [`client`] | `bsc add/stop/rotate/status/files`: requests built, answers read into the server's [`api::answers`] types and formatted (pure), one blocking call (`client/`: target, action, http, safe, rfc3339, table, output) |
//! | [`event_loop`] | the `mio::Poll` loop: signals, sockets, HTTP, timers |
//! | [`tokens`] | the `mio` token space: signalfd, HTTP listener, connections, capturers |
//! | [`notify`] | systemd notifications: readiness, reload, watchdog, status |
//! | [`clock`] | where "now" comes from |
//! | [`hooks`] | commands for closed files, run without blocking, each in its own process group (killed when it ends), reaped on SIGCHLD: `on_close` (once) and `ship` (store and forward: per handler, oldest first, retried with back-off until exit 0) |
//! | [`persist`] | the state file of handlers added over the API |
//! | [`storage`] | the state folder (its modes, the lock: one bsc per root), the journal (JSON lines), naming state per key, open files, retention, disk budget, confined deletion, outbox, ship queue (waiting and shipped files), the hard links handed to hooks and ship commands |
//! | [`sys`] | the few libc calls, each explained, by topic: the receive batch (`sys.rs`), `sys/` sockets, files (no links followed), disk, signals, children, process, clock, journald; the only code that may use `unsafe` |
//! | [`log`] | one line per event on stderr |
//!
//! # Path of a datagram
//!
//! socket readable (edge-triggered) → [`event_loop`] queues the capturer →
//! [`manager::Manager::drain`] has [`capture::capturer::Capturer::read`] read
//! batches of up to 64 datagrams with one `recvmmsg` each ([`sys::Batch`], with
//! the kernel's receive timestamp and drop counter per datagram) until the queue
//! is dry (bounded per wake-up), and gives each datagram of a batch
//! ([`capture::capturer::Received`]) to every handler of that address →
//! [`manager::handler::Handler::record`] (a handler with `framing`, a sequence
//! check, FECF or transforms first has its [`telemetry::UnitPath`] cut the read or
//! datagram into units, check and transform them: one record per unit written)
//! rotates if the period ended or a
//! size/count limit is reached, opens the next file if none is open (named from
//! the journal, placed by [`paths::CapturePath`], opened by [`pcap::PcapFile`]),
//! encodes the record header into its pending buffer and leaves the payload in
//! its receive slot, referred to by the batch's [`manager::pending::Gather`]
//! (which borrows the batch) → at the end of each batch, before the slots are
//! read into again (the borrow makes the compiler check it), the manager has
//! each handler of the capturer write its records with one gathering
//! `writev` → once a second [`manager::Manager::tick`] forces data to the disk,
//! applies retention and the disk budget; closed files go to [`hooks`]
//! (`on_close`) and, journaled as waiting to ship, to
//! [`manager::Manager::ship`] ([`hooks::Shipper`]).
//!
//! # Path of a request
//!
//! listener readable → [`http::server::Server`] accepts (at most 64) → a connection
//! reads, [`http::request::parse`] frames a request (limits, 4xx refusals) →
//! [`api::respond`] refuses what a web page sent ([`http::origin`]: a foreign
//! `Host` 421, a foreign `Origin` 403), checks the token, routes it, decodes fields with [`http::form`], validates them
//! with [`config::HandlerSpec::from_api_fields`] (the config file's
//! [`config::HandlerSpec::from_json`] behind it, read by [`config::fields::Fields`];
//! for a rotate, [`config::HandlerSpec::with_metadata`]) and calls the [`manager`] →
//! the [`http::response::Response`] is queued and written without blocking (an
//! answer that grows with the handlers or files as a head and a cursor: [`api::produce`] writes
//! its next piece each time the connection's output drains); a connection
//! with more pipelined, or due a piece over the answer budget, waits for its
//! turn ([`http::server::Server::resume`]).
//!
//! # Invariants
//!
//! - one thread; nothing blocks the loop except `poll` and file writes/fsyncs;
//! - **HTTP memory is bounded for all connections together, whatever the
//!   handler or file count**: an answer that grows with them (`GET /`,
//!   `/stats`, `/series`, `/capturers`, `/metrics`, `/<name>/files`) is never
//!   built whole but produced in pieces of
//!   about [`http::body::PIECE`] as the socket drains ([`http::body`]), so a
//!   connection holds at most [`http::server::OUTPUT_LOW_WATER`] plus one
//!   piece or one small whole answer; pieces wait while all connections hold
//!   [`http::server::ANSWER_BUDGET`] (4 MiB), served first come first as
//!   answers drain (one connection alone always progresses and none starves),
//!   small answers (`/health`) never wait; each connection answers at most
//!   [`http::server::TURN`] per turn of the loop: about 10 MiB at most for
//!   64 connections;
//! - **confinement**: every file and folder bsc creates, writes or deletes is below
//!   its trusted base (the root for API handlers; the root or a folder the config
//!   file names for config handlers), checked on the *rendered* path whenever a
//!   path can change (start, rotate with metadata, reload, restore, every new
//!   file: [`paths::CapturePath::new`]), and reached without following links
//!   ([`sys::open_dir_beneath`]); bsc's state folder `<root>/.bsc` is never a
//!   capture target;
//! - **no control characters** in names, patterns or metadata from the API or a
//!   config file; the journal and state files are JSON; log lines escape them;
//! - **one writer per file**: only the manager changes a handler; a name whose
//!   pattern path another handler has is refused (409), and a file another
//!   handler has open is never opened ([`storage::Storage::is_open`]);
//! - **a closed file is final**: closing makes it read-only and journals it; bsc
//!   never opens a read-only file or one it closed for appending, so `on_close`
//!   runs to its end once per file (a hook cut short by a stop or a crash has
//!   no `hook_ended` line and runs again after the next start); after a crash
//!   only the file left open may be resumed;
//! - **write-ahead**: a new file is journaled (`opened`, forced to the disk)
//!   before it is created ([`storage::Storage::opening`]), so a crash or a power
//!   cut never leaves a file bsc created outside the journal (unless the journal
//!   was behind); at the next start a journaled file that does not exist is
//!   forgotten (its name not reused), one already final is closed as it is, and
//!   the one left open is resumed at once as its handler's open file (or, if its
//!   pattern names another file now, closed): a resumed file is bsc's like any
//!   other (retention, the disk budget, `GET /<name>/files`);
//! - **names never repeat**: `{seq}` and `-N` go on after the last the journal
//!   recorded for the handler's key, across reloads, restarts and retention;
//! - every record read is handed to the kernel before the loop sleeps again, and
//!   before the receive slot it lies in is read into again;
//! - **bad input never stops capture**: framing state is per handler and per TCP
//!   connection (dropped, counted, when the connection ends: [`capture::capturer::Drained::Ended`]);
//!   garbage and bad units are skipped and counted; a handler without framing,
//!   checks or transforms writes each read as it comes;
//! - a file is only ever appended to after its header is checked and a torn last
//!   record is cut off; a foreign file is never written;
//! - bsc only deletes files its journal says it created ([`storage`]);
//! - **the state folder is bsc's alone**: one bsc per root (an `flock`, taken
//!   again before anything is written in a state folder bsc makes again while
//!   it runs, and within a second of its lock file being deleted); a root or a folder above it that another user owns or others may
//!   write (sticky folders above the root excepted), a state folder or file
//!   another user owns or others may write, or a state file that is not a
//!   regular file stops start-up; while running, bsc writes only through the
//!   handle of the state folder it checked ([`storage::Storage`]'s `own_dir`)
//!   and never uses a `<root>/.bsc` it did not make, nor makes one again in a
//!   root that fails the start-up check (another user made it again); a
//!   capture's own path is handed over (no link possible) only from folders no
//!   other user can rename things in; a journaled `ship` command
//!   runs only if the config declares it;
//! - **a hook or ship command only ever gets the file bsc closed**: a hard link
//!   made at the close, in the state folder (through its handle, in folders
//!   bsc made 0700 and checked), handed only while the file's path is still
//!   that regular, read-only file ([`storage::Storage::hand_over`]; the same
//!   inode and size only made writable again by its owner is made read-only
//!   again, through a descriptor on it, and handed over; made writable by
//!   group or others, it is refused);
//!   whatever a command starts in its process group ends with it;
//! - **a file waiting to ship, or whose `on_close` hook waits or runs, is
//!   never deleted by retention** (nor by `delete_after_ship` before its hook
//!   ended); only the disk budget may, when no other file is left, and it logs
//!   and counts it (`dropped`, `hooks_not_run`; a hook dropped or refused is
//!   counted there too). A handler keeps at most
//!   `max_files` plus the files its hooks hold (hooks waiting are bounded by
//!   [`hooks::MAX_QUEUED`] across handlers);
//! - **a file recorded as shipped is never shipped again**: its `shipped` line
//!   is forced to the disk before the next ship command starts; every closed
//!   file of a handler with `ship` ships at least once (the journal survives
//!   restarts and `kill -9`). While a full disk keeps the journal behind
//!   memory (a failed append is cut back, the journal is written anew once it
//!   can be), a crash forgets what it lacks: a file shipped then may ship
//!   again, one opened and closed then is kept but not shipped (README,
//!   Durability and the disk).

#![deny(unsafe_code)] // libc calls live in `sys`, which alone allows it

pub mod api;
pub mod capture;
pub mod client;
pub mod clock;
pub mod config;
pub mod event_loop;
pub mod framing;
pub mod hooks;
pub mod http;
pub mod ipudp;
pub mod log;
pub mod manager;
pub mod notify;
pub mod paths;
pub mod pattern;
pub mod pcap;
pub mod persist;
pub mod rotation;
pub mod sequence;
pub mod storage;
pub mod sys;
pub mod telemetry;
pub mod tokens;
pub mod transform;
pub mod yaml;
