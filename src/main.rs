//! bsc, the binary stream capturer: telemetry streams in, rotating PCAP files out,
//! on one thread and one `mio` event loop.
//!
//! # Map
//!
//! | module | its job |
//! |---|---|
//! | `main` | command line (argh), start-up, exit codes |
//! | [`config`] | AIT's config keys as JSON: schema, defaults, validation |
//! | [`pattern`] | file path patterns: strftime codes and `{key}` fields |
//! | [`rotation`] | AIT's calendar rotation rule (pure) |
//! | [`pcap`] | PCAP header/record encoding; open, append, repair a file |
//! | [`capture`] | sockets: [`capture::udp`], [`capture::tcp`], [`capture::ethernet`] |
//! | [`ipudp`] | synthesized IP/UDP headers for `record_source` (pure) |
//! | [`handler`] | one output stream: file, pending buffer, stats |
//! | [`manager`] | capturers by address, handlers, dirty list, timers |
//! | [`http`] | the hand-rolled HTTP/1.1 server: framing, bodies, connections |
//! | [`api`] | routes → manager calls → AIT-shaped JSON, health, metrics |
//! | [`event_loop`] | the `mio::Poll` loop: signals, sockets, HTTP, timers |
//! | [`notify`] | systemd notifications: readiness, reload, watchdog, status |
//! | [`clock`] | where "now" comes from |
//! | [`sys`] | the few libc calls (signalfd, socket options), each explained |
//! | [`log`] | one line per event on stderr |
//!
//! # Path of a datagram
//!
//! socket readable (edge-triggered) → [`event_loop`] queues the capturer →
//! [`manager::Manager::drain`] reads until `WouldBlock` (bounded per wake-up), stamps
//! each datagram with the clock and gives it to every handler of that address →
//! [`handler::Handler::record`] rotates if the period ended, opens the file if none
//! is open ([`pcap::open_or_append`]), encodes the record into its pending buffer →
//! at the end of the wake-up [`manager::Manager::flush_dirty`] writes each dirty
//! handler's buffer with one `write`.
//!
//! # Path of a request
//!
//! listener readable → [`http::server::Server`] accepts (at most 64) → a connection
//! reads, [`http::request::parse`] frames a request (limits, 4xx refusals) →
//! [`api::respond`] routes it, decodes fields with [`http::form`], validates them
//! with [`config::HandlerSpec::from_json`] and calls the [`manager`] →
//! the [`http::response::Response`] is queued and written without blocking.
//!
//! # Invariants
//!
//! - one thread; nothing blocks the loop except `poll` and file writes;
//! - one writer per file: no two handlers resolve to the same path;
//! - every record read is handed to the kernel before the loop sleeps again;
//! - a file is only ever appended to after its header is checked and a torn last
//!   record is cut off; a foreign file is never written.

mod api;
mod capture;
mod clock;
mod config;
mod event_loop;
mod handler;
mod http;
mod ipudp;
mod log;
mod manager;
mod notify;
mod pattern;
mod pcap;
mod rotation;
mod sys;

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

use crate::clock::Clock;
use crate::config::Config;
use crate::event_loop::EventLoop;

/// Exit status for a bad config or a start-up failure.
const EXIT_CONFIG: u8 = 2;

#[derive(FromArgs)]
/// bsc: capture UDP telemetry streams into rotating PCAP files (AIT bsc compatible).
struct Args {
    /// the JSON config file (AIT's bsc.yaml keys); without it bsc runs on defaults
    #[argh(option)]
    config: Option<PathBuf>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    /// least serious log lines to write: error, warn, info (default) or debug
    #[argh(option, default = "String::from(\"info\")")]
    log_level: String,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Check(CheckArgs),
}

#[derive(FromArgs)]
/// validate a config file and print each handler's current file path
#[argh(subcommand, name = "check")]
struct CheckArgs {
    /// the JSON config file to check
    #[argh(option)]
    config: PathBuf,
}

fn main() -> ExitCode {
    // Before anything else (and before any thread): signals go to the signalfd.
    if let Err(e) = sys::block_handled_signals() {
        error!("cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let args: Args = argh::from_env();
    match log::Level::parse(&args.log_level) {
        Ok(level) => log::set_max_level(level),
        Err(e) => {
            eprintln!("--log-level: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    if args.version {
        println!("bsc {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match args.command {
        Some(Command::Check(c)) => check(&c.config),
        None => run(args.config),
    }
}

fn load(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    match path {
        None => Ok(Config::defaults()),
        Some(p) => Config::load(p).map_err(|e| {
            error!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }),
    }
}

fn check(path: &PathBuf) -> ExitCode {
    let config = match load(Some(path)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let now = Clock::System.now().to_datetime();
    println!(
        "{}: ok, {} handlers, root {}",
        path.display(),
        config.handlers.len(),
        config.root.display()
    );
    for h in &config.handlers {
        // Keys were checked when the config loaded, so rendering succeeds.
        let file = h
            .file_path(&config.root, now, 1)
            .map_or_else(|e| format!("<{e}>"), |p| p.display().to_string());
        println!(
            "{} {} {} {}",
            h.name,
            h.conn_type,
            h.address.python_repr(),
            file
        );
    }
    ExitCode::SUCCESS
}

fn run(config_path: Option<PathBuf>) -> ExitCode {
    let config = match load(config_path.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let source = config_path.as_ref().map_or_else(
        || "built-in defaults".to_string(),
        |p| p.display().to_string(),
    );
    let mut event_loop = match EventLoop::start(config, config_path, Clock::System) {
        Ok(l) => l,
        Err(e) => {
            error!("{source}: cannot start: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match event_loop.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("event loop failed: {e}");
            event_loop.manager.close_all();
            ExitCode::FAILURE
        }
    }
}
