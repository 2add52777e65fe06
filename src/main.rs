//! The `bsc` binary: command line, start-up and exit codes. Everything else is in
//! the library (`src/lib.rs` has the map).

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

use bsc::clock::Clock;
use bsc::config::Config;
use bsc::event_loop::EventLoop;
use bsc::{error, log, sys};

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
    if let Err(e) = sys::raise_open_file_limit() {
        bsc::warn!("cannot raise the open-file limit: {e}");
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
    if let Err(e) = bsc::storage::check_root_writable(&config.root, false) {
        error!("{}: {e}", path.display());
        return ExitCode::from(EXIT_CONFIG);
    }
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
            .map_or_else(|e| format!("<{e}>"), |p| p.full().display().to_string());
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
