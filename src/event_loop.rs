//! The one event loop: a `mio::Poll` over the signalfd, every capture socket, the
//! management listener and its connections, with rotation timers as the poll
//! timeout.
//!
//! Time: the loop owns the [`Clock`] and is the only reader of it (besides
//! `clock.rs` itself): it reads [`Now`] after `poll` returns (for the events),
//! again after the reads (for the timers: a drain or an API request, which may
//! have moved a driven clock, took time) and before `poll` (for its timeout),
//! and hands it to whatever decides by time. Each unit's read time comes from
//! the clock as the capturer reads it.
//!
//! One turn of the loop:
//! 1. poll, with a timeout that is zero if a capturer still has unread data, else
//!    the time to the next deadline (one question to the manager,
//!    [`Manager::next_wake`], and the watchdog's), at most one second;
//! 2. for each event: signals are read from the signalfd; a readable capturer is
//!    queued; HTTP connections are served at once (answers never wait on disk);
//! 3. every queued capturer is drained up to its budget (so no source starves the
//!    others; one whose budget ran out stays queued for the next turn);
//! 4. every handler that received something writes its pending records (one
//!    `write` each): nothing read is left only in memory while bsc sleeps;
//! 5. files whose rotation period has ended are closed; TCP capturers whose
//!    back-off or connect deadline came are served; closed files go to their
//!    `on_close` hooks; ship commands that ended are reaped (successes journaled)
//!    and the next ones started;
//! 6. once a second: HTTP connections that timed out are closed, the kernel's
//!    word on the clock is read (`adjtimex`) and folded into every open
//!    file's, files are forced to the disk, retention and the disk budget run,
//!    repeated log lines are reported; the systemd watchdog is pinged at its
//!    own pace;
//! 7. a turn that read less than a full batch pauses 200 us (everything read
//!    is already written) so the next finds a fuller batch.
//!
//! Nothing here blocks except `poll` itself, file writes and fsyncs, and the
//! coalescing pause ([`COALESCE`], 200 us, only after a turn that read less than
//! a batch).

use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};

use crate::clock::{Clock, Now, UnixMicros};
use crate::config::{Config, HandlerSpec, Origin, ServerConfig};
use crate::control::api;
use crate::control::http::body::Cursor;
use crate::control::http::request::Request;
use crate::control::http::response::Response;
use crate::control::http::server::Server;
use crate::control::http::service::Service;
use crate::manager::{Drained, Manager};
use crate::ops::notify::Notifier;
use crate::sys::{self, SignalFd};
use crate::tokens::{self, SIGNALS};
use crate::{debug, error, info, warn};

/// Longest sleep: the loop wakes at least this often to check timers.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// The pause after a turn that read less than a batch (see the loop).
pub const COALESCE: Duration = Duration::from_micros(200);
/// Period of the maintenance tick (fsync intervals, retention, disk budget, hooks).
const TICK: Duration = Duration::from_secs(1);

/// The API as the HTTP server's service, the clock read for each answer and
/// each piece of one.
struct Api<'a> {
    cx: api::Context<'a>,
    clock: &'a Clock,
}

impl Service for Api<'_> {
    fn respond(&mut self, req: &Request) -> Response {
        let now = self.clock.read();
        (self.cx.now, self.cx.mono) = (now.wall, now.mono);
        let response = api::respond(req, &mut self.cx);
        debug!("http {} {} -> {}", req.method, req.path, response.status);
        response
    }

    fn produce(&mut self, cursor: &mut Cursor, out: &mut Vec<u8>) -> bool {
        let now = self.clock.read();
        (self.cx.now, self.cx.mono) = (now.wall, now.mono);
        api::produce(cursor, &mut self.cx, out)
    }
}

/// Everything the loop owns.
pub struct EventLoop {
    poll: Poll,
    signals: SignalFd,
    pub manager: Manager,
    clock: Clock,
    /// The config file to re-read on SIGHUP (`None` when running on defaults).
    config_path: Option<PathBuf>,
    config: Config,
    /// Capturers whose read budget ran out before `WouldBlock`.
    ready: VecDeque<usize>,
    http: Server,
    started_at: UnixMicros,
    notifier: Notifier,
    status: StatusRate,
    /// When the once-a-second maintenance (fsync, retention, disk budget) runs next.
    next_tick: Instant,
    /// `<root>/.bsc/lock`, locked while bsc runs (one bsc per root).
    _root_lock: std::fs::File,
}

/// The `STATUS=` line for systemd: handlers and the packet rate since the last line.
struct StatusRate {
    at: Instant,
    packets: u64,
}

impl StatusRate {
    fn line(&mut self, manager: &Manager, now: Now) -> String {
        let packets: u64 = manager.handlers().map(|(_, h)| h.stats().packets).sum();
        let now = now.mono;
        let secs = now.duration_since(self.at).as_secs_f64();
        let rate = if secs > 0.0 {
            packets.saturating_sub(self.packets) as f64 / secs
        } else {
            0.0
        };
        (self.at, self.packets) = (now, packets);
        format!(
            "capturing: {}, {}, {rate:.0} packets/s",
            crate::log::count(manager.handlers().count() as u64, "handler"),
            crate::log::count(manager.capturers().len() as u64, "capturer")
        )
    }
}

/// Why [`EventLoop::start`] failed: a message for the operator.
pub type StartError = String;

impl EventLoop {
    /// Sets up signals and every handler of `config`. Any handler that cannot start
    /// is an error and nothing is left running.
    pub fn start(
        config: Config,
        config_path: Option<PathBuf>,
        clock: Clock,
    ) -> Result<EventLoop, StartError> {
        #[cfg(debug_assertions)]
        if crate::clock::drive_from_env() {
            warn!("BSC_DEBUG_CLOCK=1: bsc runs on a driven clock (POST /debug/clock moves it); test builds only");
        }
        crate::log::set_now(clock.read().mono);
        let poll = Poll::new().map_err(|e| format!("cannot create the event loop: {e}"))?;
        let signals = SignalFd::new().map_err(|e| format!("cannot create a signalfd: {e}"))?;
        poll.registry()
            .register(
                &mut SourceFd(&std::os::fd::AsRawFd::as_raw_fd(&signals)),
                SIGNALS,
                Interest::READABLE,
            )
            .map_err(|e| format!("cannot watch signals: {e}"))?;
        check_exposure(&config.server)?;
        crate::storage::check_root_writable(&config.root, true)?;
        // One bsc per root, before the journal is read (and compacted).
        let root_lock = crate::storage::lock_root(&config.root)?;
        // Now that it exists: the root without links (see config's `absolute`).
        let mut config = config;
        if let Ok(real) = std::fs::canonicalize(&config.root) {
            config.root = real;
        }
        let mut manager = Manager::new(&config.root, &config.storage);
        manager.observe_clock(read_kernel_clock());
        manager.keep_trusted(&config.trusted_bases());
        manager.serve_api_on(crate::config::Address {
            host: config.server.host.clone(),
            port: config.server.port,
        });
        let Now { wall: now, mono } = clock.read();
        for spec in &config.handlers {
            let name = spec.name.clone();
            manager
                .add_handler(spec.clone(), poll.registry(), now, mono)
                .map_err(|e| format!("handler {name:?}: {e}"))?;
        }
        // Handlers added over the API before a restart come back after the
        // config file's; one that cannot start is reported, not fatal.
        let mut restored_count = 0;
        for fields in manager.saved_api_handlers(now) {
            let name = fields
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string();
            let restored = HandlerSpec::from_json(&fields, Origin::Api)
                .map_err(|e| e.to_string())
                .and_then(|spec| {
                    manager
                        .add_handler(spec, poll.registry(), now, mono)
                        .map_err(|e| e.to_string())
                });
            match restored {
                Ok(hid) => {
                    manager.mark_restored(hid);
                    restored_count += 1;
                    info!("handler {name}: restored (added over the API before the restart)")
                }
                Err(e) => warn!("handler {name}: saved over the API but cannot be restored: {e}"),
            }
        }
        manager.settle_left_open(now);
        // The API listens last: once it answers, every capture socket is bound.
        let http = Server::bind(&config.server.host, config.server.port, poll.registry())?;
        if now.secs() < 1_577_836_800 || manager.clock().synchronized != Some(true) {
            warn!(
                "the system clock is not synchronised (or before 2020): file names and timestamps may be wrong until it is; capture goes on (/health shows clock_synchronized)"
            );
        }
        info!(
            "bsc {} running: {}{}, root {}, management API on http://{}",
            env!("CARGO_PKG_VERSION"),
            crate::log::count(manager.handlers().count() as u64, "handler"),
            if restored_count > 0 {
                format!(" ({restored_count} restored from the state file)")
            } else {
                String::new()
            },
            config.root.display(),
            http.local
        );
        let mono = clock.read().mono;
        Ok(EventLoop {
            poll,
            signals,
            manager,
            clock,
            config_path,
            config,
            ready: VecDeque::new(),
            http,
            started_at: now,
            notifier: Notifier::from_env(mono),
            next_tick: mono + TICK,
            status: StatusRate {
                at: mono,
                packets: 0,
            },
            _root_lock: root_lock,
        })
    }

    /// Runs until SIGTERM or SIGINT, then flushes and closes every file.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        // Every socket is bound and every handler started (see `start`).
        let status = self.status_line(self.clock.read());
        self.notifier.ready(&status);
        loop {
            let timeout = if self.ready.is_empty() && !self.http.has_turns() {
                self.sleep_time(self.clock.read())
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                // SIGSTOP/SIGCONT and the like: nothing happened, poll again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = self.clock.read();
            crate::log::set_now(now.mono);
            let mut stop = false;
            for event in events.iter() {
                match event.token() {
                    SIGNALS => stop |= self.on_signals(now),
                    token if Server::owns(token) => self.on_http(token, now),
                    token => {
                        if let Some(cid) = tokens::capturer_of(token) {
                            if !self.ready.contains(&cid) {
                                self.ready.push_back(cid);
                            }
                        } else if let Some((hid, i)) = tokens::relay_target_of(token) {
                            let registry = self.poll.registry();
                            self.manager
                                .relay_ready(hid, i, registry, now.mono, now.wall);
                        }
                    }
                }
            }
            // HTTP connections waiting for their turn (pipelined answers, the
            // answer budget) get one, then capture goes on.
            if self.http.has_turns() {
                self.with_api(|http, registry, respond| http.resume(registry, respond, now.mono));
            }
            let units_before = self.manager.units_read();
            for _ in 0..self.ready.len() {
                let Some(cid) = self.ready.pop_front() else {
                    break;
                };
                if self.manager.drain(cid, self.poll.registry(), now.mono, || {
                    self.clock.now_nanos()
                }) == Drained::More
                {
                    self.ready.push_back(cid);
                }
            }
            self.manager.flush_dirty();
            // The timers: due ones run in this turn, also when an API request
            // in it moved a driven clock past them.
            let now = self.clock.read();
            crate::log::set_now(now.mono);
            self.manager.expire(now.wall);
            self.manager
                .expire_capturers(self.poll.registry(), now.mono);
            self.manager.expire_relays(self.poll.registry(), now.mono);
            self.manager.dispatch_closed();
            self.manager.ship(now.mono, now.wall);
            if now.mono >= self.next_tick {
                self.http.sweep(now.mono, self.poll.registry());
                self.manager.observe_clock(read_kernel_clock());
                self.manager.tick(now.wall);
                crate::log::report_suppressed(now.mono);
                self.next_tick = now.mono + TICK;
            }
            let status = &mut self.status;
            let manager = &self.manager;
            self.notifier
                .ping_if_due(now.mono, || status.line(manager, now));
            // Coalescing: a turn that found only a few units (the queue was dry
            // before a batch filled) pauses briefly, everything read already
            // written, so the next turn finds a fuller batch: fewer system calls
            // per datagram at high rates, at most COALESCE of extra delay at low
            // ones. Records carry the kernel's arrival time, so nothing shifts.
            let units = self.manager.units_read() - units_before;
            if units > 0 && units < sys::BATCH as u64 && self.ready.is_empty() && !stop {
                std::thread::sleep(COALESCE);
            }
            if stop {
                self.notifier.stopping();
                self.close_all();
                info!("stopped: every file flushed and closed");
                return Ok(());
            }
        }
    }

    /// Flushes and closes every file (see [`Manager::close_all`]): at a stop,
    /// or after the loop failed.
    pub fn close_all(&mut self) {
        let clock = &self.clock;
        self.manager.close_all(clock.now(), &|| clock.read().mono);
    }

    /// Serves an HTTP event: the listener accepts, a connection reads, answers
    /// and writes as far as it can without blocking.
    fn on_http(&mut self, token: mio::Token, now: Now) {
        self.with_api(|http, registry, respond| http.on_event(token, registry, respond, now.mono));
    }

    /// Runs `serve` on the HTTP server with the API answering its requests.
    fn with_api(&mut self, serve: impl FnOnce(&mut Server, &mio::Registry, &mut dyn Service)) {
        // Records read earlier in this turn reach the disk before an answer can
        // report them (statistics and files agree).
        self.manager.flush_dirty();
        let connections = self.http.connections();
        let now = self.clock.read();
        let cx = api::Context {
            manager: &mut self.manager,
            registry: self.poll.registry(),
            now: now.wall,
            mono: now.mono,
            started_at: self.started_at,
            token: self.config.server.token.as_deref(),
            allowed_hosts: &self.config.server.allowed_hosts,
            http_connections: connections,
        };
        let mut service = Api {
            cx,
            clock: &self.clock,
        };
        serve(&mut self.http, self.poll.registry(), &mut service);
    }

    /// Time from `now` to the next deadline of the manager or the watchdog, at
    /// most [`MAX_SLEEP`].
    fn sleep_time(&self, now: Now) -> Duration {
        [self.manager.next_wake(now), self.notifier.next_ping()]
            .into_iter()
            .flatten()
            .min()
            .map_or(MAX_SLEEP, |at| at.saturating_duration_since(now.mono))
            .min(MAX_SLEEP)
    }

    /// Reads every pending signal. Returns whether bsc must stop.
    fn on_signals(&mut self, now: Now) -> bool {
        let mut stop = false;
        loop {
            match self.signals.read() {
                Ok(Some(libc::SIGHUP)) => self.reload(now),
                Ok(Some(libc::SIGCHLD)) => self.manager.reap_hooks(now.wall),
                Ok(Some(sig)) => {
                    info!(
                        "signal {}: stopping",
                        if sig == libc::SIGINT {
                            "SIGINT"
                        } else {
                            "SIGTERM"
                        }
                    );
                    stop = true;
                }
                Ok(None) => return stop,
                Err(e) => {
                    error!("reading signals failed: {e}");
                    return stop;
                }
            }
        }
    }

    /// SIGHUP: re-reads the config file and applies the difference. A config that
    /// does not load changes nothing.
    fn reload(&mut self, now: Now) {
        let Some(path) = &self.config_path else {
            info!("SIGHUP: running on built-in defaults, no config file to re-read");
            return;
        };
        info!("SIGHUP: re-reading {}", path.display());
        self.notifier.reloading();
        let new = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                error!("reload refused, keeping the running configuration: {e}");
                let status = format!("reload refused: {e}");
                self.notifier.ready(&status);
                return;
            }
        };
        if new.server != self.config.server {
            info!("reload: manager_server changes take effect at the next restart");
        }
        if new.storage != self.config.storage {
            info!("reload: min_free_bytes, min_free_percent, persist, on_close_max_running, ship_max_running and ship_max_pending_age_s changes take effect at the next restart");
        }
        self.manager
            .apply_config(&new, self.poll.registry(), now.wall, now.mono);
        self.config = new;
        let status = self.status_line(now);
        self.notifier.ready(&status);
    }

    fn status_line(&mut self, now: Now) -> String {
        self.status.line(&self.manager, now)
    }
}

/// The kernel's word on the clock (`adjtimex`): the one place bsc asks it, at
/// start and then once a second with the tick (about 0.8 us a call here, so
/// never per unit or per turn); the manager hands the reading on.
fn read_kernel_clock() -> crate::clock::ClockWord {
    crate::clock::ClockWord::from_kernel(sys::kernel_clock_state())
}

/// Refuses to serve the management API beyond loopback without a token, unless
/// the operator said the network is trusted.
fn check_exposure(server: &ServerConfig) -> Result<(), StartError> {
    if server.token.is_some() || server.allow_unauthenticated {
        return Ok(());
    }
    let loopback = match server.host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => server.host == "localhost",
    };
    if loopback {
        return Ok(());
    }
    Err(format!(
        "refusing to serve the management API on {}:{} without a token: anyone who can reach it could start captures and write files. \
         Set capture_manager.manager_server.token (clients send Authorization: Bearer <token>), \
         or allow_unauthenticated: true if only trusted hosts can reach it",
        server.host, server.port
    ))
}
