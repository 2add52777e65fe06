//! bsc, the binary stream capturer: telemetry streams in, rotating PCAP files out,
//! on one thread and one `mio` event loop.
//!
//! # Map
//!
//! The code is in layers, one folder each, and calls go only downward (a
//! layer uses the ones below it, never one above):
//!
//! | layer | what it holds |
//! |---|---|
//! | `main.rs` | the command line (argh), start-up, exit codes (the binary) |
//! | [`event_loop`] | the `mio::Poll` loop: signals, sockets, HTTP, timers; reads the clock and passes it in; [`tokens`] declares its token space |
//! | [`control`] | how an operator manages bsc: [`control::http`] the hand-rolled HTTP/1.1 server ([`control::http::request`] framing, [`control::http::form`] bodies, `connection.rs` one connection and the answer budget, [`control::http::body`] answers in pieces, [`control::http::service`] what the server asks of the API, [`control::http::origin`] the `Host`/`Origin` checks); [`control::api`] the routes (`routes.rs`, `asked.rs` a request's fields and the handler it names, `auth.rs`, `control.rs` the calls that change the manager, `health.rs`, `views.rs`, `walk.rs` and `files.rs` and `metrics.rs` the answers produced in pieces, `extract.rs` a time window's records read from the files as the socket drains, `entry.rs` a handler's config entry from the key table, `page.rs` the status page, `debug.rs` the driven clock of test builds) with every answer a type in [`control::api::answers`], shared with [`control::client`] (`bsc add/stop/rotate/status/files`; `bsc extract`, from a server or from files here; `replay.rs` and `replay/` `bsc replay`, records sent again at their pace, from files or `stream.rs`'s answer body) |
//! | [`manager`] | the middle: the only way to change a handler; owns the capturers ([`manager::capturers`]: sockets, tokens, reconnect timers, the receive batch), the handlers (`handlers.rs`: slab and rotation timers; [`manager::handler`]: one output stream, with `open.rs` naming and opening, `write.rs` the write path and rotation, `close.rs` closing and retention, `stats.rs` counters; [`manager::pending`]: records not yet written; [`manager::unit_path`]: framing → FECF → sequence check → transforms), the storage, the disk budget (`budget.rs`) and store and forward (`forward.rs`); `lifecycle.rs` adding and removing a handler, `reload.rs` a re-read config and a rotate across a name, `left_open.rs` files a crash left for handlers not running, `results.rs` what its changes answer |
//! | [`relay`] | live forwarding (the `forward` key): [`relay::Relay`] a handler's targets, each a bounded queue of whole units ([`relay::queue`]) and a socket (UDP: one `sendmmsg` per batch, runs of units of one length cut by the kernel; TCP: the sources' [`capture::tcp::TcpClient`]); the manager's side in `manager/relays.rs` (targets opened and closed with their handler, their timers, readiness by token) |
//! | [`capture`] | sockets and their read path: [`capture::capturer`], [`capture::udp`], [`capture::tcp`], [`capture::ethernet`] |
//! | [`ops`] | around the capture: [`ops::hooks`] commands for closed files (`on_close` once, `ship` until exit 0; each in its own process group), [`ops::notify`] systemd notifications |
//! | [`storage`] | what bsc keeps on disk besides captures, one owner per part: the journal (`journal.rs`), naming per key (`naming.rs`), the hook and ship queues (`queues.rs`), the state folder and its lock (`state_dir.rs`), the links handed to commands (`handover.rs`), retention, the disk budget and confined deletion (`retention.rs`), the state file of API handlers ([`storage::persist`]), the sparse indexes of closed files (`indexes.rs`) |
//! | [`config`] | AIT's config keys: the whole document, load, conflicts; [`config::handler`] one handler ([`config::HandlerSpec`]), its keys declared once in [`config::KEYS`]; [`config::framing`]; [`config::capture_manager`]; [`config::fields`] the field reader; [`config::duplicates`] a key given twice; [`config::yaml`] AIT's `bsc.yaml`; [`config::resolve`] host names without DNS; [`config::loops`] forward targets that lead back into bsc, refused |
//! | [`files`] | the capture files, pure or nearly: [`files::pcap`] the format and [`files::pcap::PcapFile`], the owner of a file being written, [`files::pcap::reader`] any writer's pcap stream read (the client's); [`files::pattern`], [`files::paths`] (confinement, `-N`), [`files::rotation`] (AIT's rule), [`files::ipudp`] (`record_source` headers), [`files::window`] (an extract's time window, record heads), [`files::index`] (a file's sparse index by time) |
//! | [`units`] | pure: [`units::framing`] a stream or datagram cut into units (`framer.rs`, `kiss.rs`, `ccsds.rs`, `crc.rs`), [`units::sequence`] gap accounting, [`units::transform`] `pre_write_transforms` |
//! | [`sys`], [`clock`], [`log`] | the bottom: the libc calls by topic (the receive batch in `sys.rs`, `sys/` sockets, files, disk, signals, children, process, clock, journald; the only code that may use `unsafe`), where "now" comes from ([`clock::Now`]; the driven clock of test builds; [`clock::kernel`] the kernel's word on the clock, read by the loop once a second, and per file), one line per event on stderr |
//!
//! # Path of a datagram
//!
//! socket readable (edge-triggered) → [`event_loop`] queues the capturer →
//! [`manager::Manager::drain`] has [`capture::capturer::Capturer::read`] read
//! batches of up to 64 datagrams with one `recvmmsg` each ([`sys::Batch`], with
//! the kernel's receive timestamp per datagram) until the queue
//! is dry (bounded per wake-up), and gives each datagram of a batch
//! ([`capture::capturer::Received`]) to every handler of that address, lending
//! it the storage ([`manager::handler::Cx`]) →
//! `Handler::record` (a handler with `framing`, a sequence check, FECF or
//! transforms first has its [`manager::unit_path::UnitPath`] cut the read or
//! datagram into units, check and transform them: one record per unit written)
//! rotates if the period ended or a size/count limit is reached, opens the next
//! file if none is open (named from the journal, placed by
//! [`files::paths::CapturePath`], journaled before it is created, opened by
//! [`files::pcap::PcapFile`]), encodes the record header into its pending buffer
//! and leaves the payload in its receive slot, referred to by the batch's
//! [`manager::pending::Gather`] (which borrows the batch; a payload under
//! [`manager::pending::COPY_BELOW`] bytes is copied beside its header) → at the end of each
//! batch, before the slots are read into again (the borrow makes the compiler
//! check it), each handler whose records refer to them writes its records with
//! one gathering `writev` (records all copied wait, up to
//! [`manager::handler::FLUSH_AT`] bytes, and every handler writes what it
//! holds when the drain ends), then sends what it offered its forward targets
//! (while capture is behind, its socket over half full after a drain used its
//! budget, only once the socket is dry: the recording comes first)
//! ([`relay`]: each unit it recorded was copied into each target's queue, or
//! dropped and counted when that queue was full) → a file it closed goes back to the manager as an event
//! → once a second [`manager::Manager::tick`] forces data to the disk, applies
//! retention and the disk budget; closed files go to [`ops::hooks`]
//! (`on_close`) and, journaled as waiting to ship, to
//! [`manager::Manager::ship`] ([`ops::hooks::Shipper`]).
//!
//! # Path of a request
//!
//! listener readable → [`control::http::server::Server`] accepts (at most 64) →
//! a connection reads, [`control::http::request::parse`] frames a request
//! (limits, 4xx refusals) → [`control::api::respond`] refuses what a web page
//! sent ([`control::http::origin`]: a foreign `Host` 421, a foreign `Origin`
//! 403), checks the token, routes it, decodes fields with
//! [`control::http::form`], validates them with
//! [`config::HandlerSpec::from_api_fields`] (the key table behind it, read by
//! [`config::fields::Fields`]; for a rotate,
//! [`config::HandlerSpec::with_metadata`]) and calls the [`manager`] → the
//! answer, a type of [`control::api::answers`], becomes a
//! [`control::http::response::Response`], queued and written without blocking
//! (an answer that grows with the handlers or files as a head and a cursor:
//! [`control::api::produce`] writes its next piece each time the connection's
//! output drains); a connection with more pipelined, or due a piece over the
//! answer budget, waits for its turn
//! ([`control::http::server::Server::resume`]).
//!
//! # Invariants
//!
//! - one thread; nothing blocks the loop except `poll`, file writes/fsyncs and
//!   the coalescing pause (`event_loop`'s `COALESCE`, 200 µs, only after a turn
//!   that read less than a batch, everything read already written);
//! - **time is passed in**: the event loop reads the clock ([`clock::Now`], wall
//!   and monotonic) and hands it to everything that decides by time; nothing
//!   below the loop reads a clock (`.ci/now-check`, run by `make lint`); kernel
//!   receive times become [`clock::UnixNanos`] in `clock.rs`. Test builds can
//!   drive the clock (`BSC_DEBUG_CLOCK=1`, `POST /debug/clock`,
//!   `control/api/debug.rs`); release builds have neither (`make
//!   debug-hooks-check`);
//! - **one owner per state**: the journal, the naming state, the open files and
//!   the hook and ship queues are [`storage::Storage`]'s, which the manager owns
//!   and lends (`&mut`, in a [`manager::handler::Cx`]) to a handler for one
//!   operation; the files a handler closes come back as events the manager
//!   hands to store and forward; closing is an explicit call, never `Drop`; no
//!   `Rc`, `RefCell` or `Cell` in the middle;
//! - **HTTP memory is bounded for all connections together, whatever the
//!   handler or file count**: an answer that grows with them (`GET /`,
//!   `/stats`, `/series`, `/capturers`, `/metrics`, `/<name>/files`, `/<name>/data`) is never
//!   built whole but produced in pieces of
//!   about [`control::http::body::PIECE`] as the socket drains ([`control::http::body`]), so a
//!   connection holds at most [`control::http::server::OUTPUT_LOW_WATER`] plus one
//!   piece or one small whole answer; pieces wait while all connections hold
//!   [`control::http::server::ANSWER_BUDGET`] (4 MiB), served first come first as
//!   answers drain (one connection alone always progresses and none starves),
//!   small answers (`/health`) never wait; each connection answers at most
//!   [`control::http::server::TURN`] per turn of the loop: about 10 MiB at most for
//!   64 connections;
//! - **confinement**: every file and folder bsc creates, writes or deletes is below
//!   its trusted base (the root for API handlers; the root or a folder the config
//!   file names for config handlers), checked on the *rendered* path whenever a
//!   path can change (start, rotate with metadata, reload, restore, every new
//!   file: [`files::paths::CapturePath::new`]), and reached without following links
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
//!   before the receive slot it lies in is read into again: the records a
//!   handler takes from a batch refer to the slots through a
//!   [`manager::pending::Gather`] that borrows the batch, so the compiler
//!   checks it;
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
//!   [`ops::hooks::MAX_QUEUED`] across handlers);
//! - **a file recorded as shipped is never shipped again**: its `shipped` line
//!   is forced to the disk before the next ship command starts; every closed
//!   file of a handler with `ship` ships at least once (the journal survives
//!   restarts and `kill -9`). While a full disk keeps the journal behind
//!   memory (a failed append is cut back, the journal is written anew once it
//!   can be), a crash forgets what it lacks: a file shipped then may ship
//!   again, one opened and closed then is kept but not shipped (docs/durability.md).

#![deny(unsafe_code)] // libc calls live in `sys`, which alone allows it

pub mod capture;
pub mod clock;
pub mod config;
pub mod control;
pub mod event_loop;
pub mod files;
pub mod log;
pub mod manager;
pub mod ops;
pub mod relay;
pub mod storage;
pub mod sys;
pub mod tokens;
pub mod units;
