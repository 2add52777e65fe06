//! The one event loop: a `mio::Poll` over the signalfd and every capture socket,
//! with rotation timers as the poll timeout.
//!
//! One turn of the loop:
//! 1. poll, with a timeout that is zero if a capturer still has unread data, else
//!    the time to the next rotation deadline, at most one second;
//! 2. for each event: signals are read from the signalfd; a readable capturer is
//!    queued;
//! 3. every queued capturer is drained up to its budget (so no source starves the
//!    others; one whose budget ran out stays queued for the next turn);
//! 4. every handler that received something writes its pending records (one
//!    `write` each): nothing read is left only in memory while bsc sleeps;
//! 5. files whose rotation period has ended are closed.
//!
//! Nothing here blocks except `poll` itself and file writes.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::clock::Clock;
use crate::config::Config;
use crate::manager::{Drained, Manager};
use crate::sys::SignalFd;
use crate::{error, info};

/// Token of the signalfd.
const SIGNALS: Token = Token(0);
/// Longest sleep: the loop wakes at least this often to check timers.
const MAX_SLEEP: Duration = Duration::from_secs(1);

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
        let poll = Poll::new().map_err(|e| format!("cannot create the event loop: {e}"))?;
        let signals = SignalFd::new().map_err(|e| format!("cannot create a signalfd: {e}"))?;
        poll.registry()
            .register(
                &mut SourceFd(&std::os::fd::AsRawFd::as_raw_fd(&signals)),
                SIGNALS,
                Interest::READABLE,
            )
            .map_err(|e| format!("cannot watch signals: {e}"))?;
        let mut manager = Manager::new(&config.root);
        let now = clock.now();
        for spec in &config.handlers {
            let name = spec.name.clone();
            manager
                .add_handler(spec.clone(), poll.registry(), now)
                .map_err(|e| format!("handler {name:?}: {e}"))?;
        }
        info!(
            "bsc {} running: {} handlers, root {}",
            env!("CARGO_PKG_VERSION"),
            config.handlers.len(),
            config.root.display()
        );
        Ok(EventLoop {
            poll,
            signals,
            manager,
            clock,
            config_path,
            config,
            ready: VecDeque::new(),
        })
    }

    /// Runs until SIGTERM or SIGINT, then flushes and closes every file.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = if self.ready.is_empty() {
                self.sleep_time()
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                // SIGSTOP/SIGCONT and the like: nothing happened, poll again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut stop = false;
            for event in events.iter() {
                match event.token() {
                    SIGNALS => stop |= self.on_signals(),
                    // The HTTP listener and its connections join here (their own tokens).
                    token => {
                        if let Some(cid) = Manager::capturer_of_token(token) {
                            if !self.ready.contains(&cid) {
                                self.ready.push_back(cid);
                            }
                        }
                    }
                }
            }
            for _ in 0..self.ready.len() {
                let Some(cid) = self.ready.pop_front() else {
                    break;
                };
                if self.manager.drain(cid, || self.clock.now()) == Drained::More {
                    self.ready.push_back(cid);
                }
            }
            self.manager.flush_dirty();
            self.manager.expire(self.clock.now());
            if stop {
                self.manager.close_all();
                info!("stopped: every file flushed and closed");
                return Ok(());
            }
        }
    }

    /// Time until the next rotation deadline, at most [`MAX_SLEEP`].
    fn sleep_time(&self) -> Duration {
        match self.manager.next_deadline() {
            Some(at) => {
                let us = (at.0 - self.clock.now().0).max(0) as u64;
                Duration::from_micros(us).min(MAX_SLEEP)
            }
            None => MAX_SLEEP,
        }
    }

    /// Reads every pending signal. Returns whether bsc must stop.
    fn on_signals(&mut self) -> bool {
        let mut stop = false;
        loop {
            match self.signals.read() {
                Ok(Some(libc::SIGHUP)) => self.reload(),
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
    fn reload(&mut self) {
        let Some(path) = &self.config_path else {
            info!("SIGHUP: running on built-in defaults, no config file to re-read");
            return;
        };
        info!("SIGHUP: re-reading {}", path.display());
        let new = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                error!("reload refused, keeping the running configuration: {e}");
                return;
            }
        };
        if new.server != self.config.server {
            info!("reload: manager_server changes take effect at the next restart");
        }
        self.manager
            .apply_config(&new, self.poll.registry(), self.clock.now());
        self.config = new;
    }
}
