//! The `bsc` binary: command line (capture, `check`, and the client commands of
//! [`bsc::control::client`]), start-up and exit codes. Everything else is in
//! the library (`src/lib.rs` has the map).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use argh::{EarlyExit, FromArgs};

use bsc::clock::Clock;
use bsc::config::Config;
use bsc::control::client::{self, Action, AddRequest};
use bsc::event_loop::EventLoop;
use bsc::{error, log, sys};

/// Exit status for a bad config or a start-up failure.
const EXIT_CONFIG: u8 = 2;
/// Exit status for a command line argh or bsc cannot read.
const EXIT_USAGE: u8 = 2;

/// The command line: run bsc (no command), check a config, or talk to a running bsc.
#[derive(FromArgs)]
#[argh(
    description = "capture telemetry streams into PCAP files that rotate on a calendar schedule
(the drop-in successor of AIT's ait-bsc), and manage a running bsc.

  UDP       binds [host, port] ('' = every interface, a multicast group is joined)
            and writes each datagram as one record.
  TCP       connects to the peer [host, port] as a client, writes each read as one
            record, and reconnects whenever the peer refuses or goes away.
  Ethernet  an AF_PACKET raw socket on [interface, EtherType] (0 = every protocol)
            writes every frame whole; needs CAP_NET_RAW.

Handlers come from the config file and from the management API (HTTP, default
127.0.0.1:8080), which the commands below talk to.",
    example = "{command_name} --config /etc/bsc/bsc.json              capture what the config says",
    example = "{command_name} check -c bsc.json                       validate a config, print each handler's file",
    example = "{command_name} add tlm 127.0.0.1 8500 udp --path vc1   start capturing UDP port 8500",
    example = "{command_name} status                                  every handler: state, packets, rate, file",
    example = "{command_name} files tlm                               the files bsc made for tlm",
    example = "{command_name} rotate tlm pass=1234                    close tlm's file now (metadata first)",
    example = "{command_name} stop tlm                                stop the handlers named tlm",
    example = "{command_name} stop-capturer 127.0.0.1 8500 udp        close that socket and stop its handlers",
    example = "{command_name} replay pass.pcap --to udp://127.0.0.1:3076  send a file's records again at their pace",
    note = "Options may come before or after the command, as --opt value or --opt=value.",
    note = "The commands talk to --server HOST:PORT, else $BSC_SERVER, else the manager_server
of --config FILE, else 127.0.0.1:8080; they send --token, else $BSC_TOKEN, else the
config's manager_server.token.",
    error_code(1, "refused by bsc (its error is printed), or capture failed"),
    error_code(2, "bad command line or config"),
    error_code(3, "bsc is not reachable")
)]
struct Args {
    /// the JSON or YAML config file (AIT's bsc.yaml keys); without it bsc runs on defaults
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    /// least serious log lines to write: error, warn, info (default) or debug
    #[argh(option, default = "String::from(\"info\")")]
    log_level: String,
    /// the bsc the commands talk to, HOST:PORT (default $BSC_SERVER, then the config's manager_server, then 127.0.0.1:8080)
    #[argh(option)]
    server: Option<String>,
    /// the API token the commands send (default $BSC_TOKEN, then the config's manager_server.token)
    #[argh(option)]
    token: Option<String>,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Check(CheckArgs),
    Add(AddArgs),
    Stop(StopArgs),
    Rotate(RotateArgs),
    StopCapturer(StopCapturerArgs),
    Status(StatusArgs),
    Files(FilesArgs),
    Replay(client::ReplayArgs),
    Extract(client::ExtractArgs),
}

#[derive(FromArgs)]
/// validate the config file given with --config and print each handler's current file path
#[argh(subcommand, name = "check", example = "{command_name} -c bsc.json")]
struct CheckArgs {}

#[derive(FromArgs)]
/// add a handler to the running bsc (as AIT's ait-bsc-create-handler) and print its file path
#[argh(
    subcommand,
    name = "add",
    example = "{command_name} tlm '' 8500 udp",
    example = "{command_name} vc1 127.0.0.1 8501 udp --rotate-log-index hour --path vc1 --set mission=demo",
    note = "Global options (--server, --token, --config) may come anywhere."
)]
struct AddArgs {
    /// the handler's name (letters, digits, '-', '_', '.')
    #[argh(positional)]
    name: String,
    /// udp: the address to listen on ('' = every interface); tcp: the peer; ethernet: the interface
    #[argh(positional)]
    loc: String,
    /// udp, tcp: the port; ethernet: the EtherType (0 = every protocol)
    #[argh(positional)]
    port: u16,
    /// udp, tcp or ethernet
    #[argh(positional)]
    conn_type: String,
    /// rotate on the calendar: true (default) or false
    #[argh(option, default = "true", from_str_fn(client::parse_bool))]
    rotate_log: bool,
    /// the calendar unit: year, month, day (default), hour, minute or second
    #[argh(option, default = "String::from(\"day\")")]
    rotate_log_index: String,
    /// rotate every N units (default 1)
    #[argh(option, default = "1")]
    rotate_log_delta: u32,
    /// the file name pattern (default %Y-%m-%d-%H-%M-%S-{name}.pcap)
    #[argh(option, default = "String::from(\"%Y-%m-%d-%H-%M-%S-{name}.pcap\")")]
    file_name_pattern: String,
    /// the folder for the files, below the root directory (a pattern too)
    #[argh(option)]
    path: Option<String>,
    /// any other handler key or metadata field, KEY=VALUE (repeatable)
    #[argh(option, from_str_fn(client::parse_key_value))]
    set: Vec<(String, String)>,
}

#[derive(FromArgs)]
/// stop every handler with that name (as AIT's ait-bsc-stop-handler)
#[argh(subcommand, name = "stop", example = "{command_name} tlm")]
struct StopArgs {
    /// the handler's name
    #[argh(positional)]
    name: String,
}

#[derive(FromArgs)]
/// close the handler's file now and open the next, setting metadata first; prints both files
#[argh(subcommand, name = "rotate", example = "{command_name} pass pass=1234")]
struct RotateArgs {
    /// the handler's name
    #[argh(positional)]
    name: String,
    /// metadata fields for the next file's name
    #[argh(positional, from_str_fn(client::parse_key_value))]
    metadata: Vec<(String, String)>,
}

#[derive(FromArgs)]
/// close the socket at an address and stop every handler on it
#[argh(
    subcommand,
    name = "stop-capturer",
    example = "{command_name} '' 8500 udp"
)]
struct StopCapturerArgs {
    /// the address as given to add ('' = every interface)
    #[argh(positional)]
    loc: String,
    /// the port (ethernet: the EtherType)
    #[argh(positional)]
    port: u16,
    /// udp, tcp or ethernet (refused if the socket is another kind)
    #[argh(positional)]
    conn_type: Option<String>,
}

#[derive(FromArgs)]
/// every handler at a glance: address, state, packets, rate, last packet, file, losses
#[argh(subcommand, name = "status", example = "{command_name} --json")]
struct StatusArgs {
    /// print bsc's /stats JSON instead of the table
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs)]
/// the files bsc made for a handler: size, records, first and last record, open or closed
#[argh(subcommand, name = "files", example = "{command_name} tlm")]
struct FilesArgs {
    /// the handler's name
    #[argh(positional)]
    name: String,
    /// print bsc's JSON instead of the table
    #[argh(switch)]
    json: bool,
}

/// Options of [`Args`], which may also come after the command's name: their
/// spellings and whether a value follows.
const GLOBAL_OPTIONS: &[(&str, bool)] = &[
    ("--config", true),
    ("-c", true),
    ("--log-level", true),
    ("--server", true),
    ("--token", true),
    ("--version", false),
];

/// The command line as argh reads it: `--opt=value` split in two, and global
/// options found after the command's name moved before it (argh only reads them
/// there). Nothing after a `--` is touched.
fn normalize_args(args: &[String]) -> Result<Vec<String>, String> {
    let global = |a: &str| GLOBAL_OPTIONS.iter().find(|(n, _)| *n == a).map(|o| o.1);
    let mut split = Vec::with_capacity(args.len());
    let mut rest = args.iter();
    for a in rest.by_ref() {
        if a == "--" {
            split.push(a.clone());
            break;
        }
        match a.split_once('=') {
            Some((name, value)) if name.starts_with("--") && name.len() > 2 => {
                split.push(name.to_string());
                split.push(value.to_string());
            }
            _ => split.push(a.clone()),
        }
    }
    split.extend(rest.cloned());
    // The command's name: the first word that is neither an option nor its value.
    let mut i = 0;
    while i < split.len() && split[i].starts_with('-') && split[i] != "--" {
        i += if global(&split[i]) == Some(true) {
            2
        } else {
            1
        };
    }
    if i >= split.len() || split[i] == "--" {
        return Ok(split);
    }
    let (before, after) = split.split_at(i + 1);
    let (mut moved, mut kept) = (Vec::new(), Vec::new());
    let mut words = after.iter();
    while let Some(a) = words.next() {
        if a == "--" {
            kept.push(a.clone());
            kept.extend(words.by_ref().cloned());
            break;
        }
        match global(a) {
            Some(true) => {
                let value = words.next().ok_or_else(|| format!("{a}: needs a value"))?;
                moved.push(a.clone());
                moved.push(value.clone());
            }
            Some(false) => moved.push(a.clone()),
            None => kept.push(a.clone()),
        }
    }
    let (head, command) = before.split_at(i);
    Ok([head, &moved, command, &kept].concat())
}

/// Parses the command line; `Err` is the exit status after help or a usage error.
fn parse_args() -> Result<Args, ExitCode> {
    let mut strings = Vec::new();
    for a in std::env::args_os() {
        match a.into_string() {
            Ok(s) => strings.push(s),
            Err(a) => {
                eprintln!("bsc: argument {:?} is not UTF-8", a.to_string_lossy());
                return Err(ExitCode::from(EXIT_USAGE));
            }
        }
    }
    let name = strings
        .first()
        .and_then(|p| Path::new(p).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("bsc")
        .to_string();
    let args = match normalize_args(strings.get(1..).unwrap_or(&[])) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bsc: {e}\nRun {name} --help for more information.");
            return Err(ExitCode::from(EXIT_USAGE));
        }
    };
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    Args::from_args(&[&name], &words).map_err(|EarlyExit { output, status }| match status {
        Ok(()) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(()) => {
            eprintln!("{output}\nRun {name} --help for more information.");
            ExitCode::from(EXIT_USAGE)
        }
    })
}

fn main() -> ExitCode {
    let mut args = match parse_args() {
        Ok(a) => a,
        Err(code) => return code,
    };
    match log::Level::parse(&args.log_level.to_ascii_lowercase()) {
        Ok(level) => log::set_max_level(level),
        Err(e) => {
            eprintln!("--log-level: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    if args.version {
        println!("bsc {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let action = match args.command.take() {
        None => return run(args.config),
        Some(Command::Check(_)) => {
            return match &args.config {
                Some(path) => check(path),
                None => {
                    eprintln!("bsc check: give the config file to check: bsc check --config FILE");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Some(Command::Add(a)) => Action::Add(AddRequest {
            name: a.name,
            loc: a.loc,
            port: a.port.to_string(),
            conn_type: a.conn_type,
            rotate_log: a.rotate_log,
            rotate_log_index: a.rotate_log_index,
            rotate_log_delta: a.rotate_log_delta,
            file_name_pattern: a.file_name_pattern,
            path: a.path,
            set: a.set,
        }),
        Some(Command::Stop(a)) => Action::Stop { name: a.name },
        Some(Command::Rotate(a)) => Action::Rotate {
            name: a.name,
            metadata: a.metadata,
        },
        Some(Command::StopCapturer(a)) => Action::StopCapturer {
            loc: a.loc,
            port: a.port.to_string(),
            conn_type: a.conn_type,
        },
        Some(Command::Status(a)) => Action::Status { json: a.json },
        Some(Command::Replay(r)) => {
            return ExitCode::from(client::replay(&r, || target_of(&args)));
        }
        Some(Command::Extract(a)) => {
            return ExitCode::from(client::extract::run(&a, || target_of(&args)));
        }
        Some(Command::Files(a)) => Action::Files {
            name: a.name,
            json: a.json,
        },
    };
    ask(&args, &action)
}

/// The bsc the client commands talk to, and the token to show it.
fn target_of(args: &Args) -> Result<client::Target, String> {
    let server_config = match &args.config {
        None => None,
        Some(path) => Some(Config::load(path).map_err(|e| e.to_string())?.server),
    };
    let env = |key: &str| std::env::var(key).ok();
    client::resolve_target(
        args.server.as_deref(),
        env("BSC_SERVER").as_deref(),
        args.token.as_deref(),
        env("BSC_TOKEN").as_deref(),
        server_config.as_ref(),
    )
}

/// A client command: finds the bsc to ask, asks, prints the answer.
fn ask(args: &Args, action: &Action) -> ExitCode {
    let target = match target_of(args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bsc: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match client::run(action, &target, Clock::System.now()) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bsc: {e}");
            ExitCode::from(e.exit_code())
        }
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
        "{}: ok, {}, root {}",
        path.display(),
        bsc::log::count(config.handlers.len() as u64, "handler"),
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
    // Before anything else that could start a thread: signals go to the signalfd.
    if let Err(e) = sys::block_handled_signals() {
        error!("cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = sys::raise_open_file_limit() {
        bsc::warn!("cannot raise the open-file limit: {e}");
    }
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
            event_loop.close_all();
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(args: &str) -> Result<String, String> {
        let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
        normalize_args(&args).map(|a| a.join(" "))
    }

    #[test]
    fn global_options_move_before_the_command() {
        assert_eq!(normalized("check -c x.json"), Ok("-c x.json check".into()));
        assert_eq!(
            normalized("--config x.json check"),
            Ok("--config x.json check".into())
        );
        assert_eq!(
            normalized("--log-level warn status --server h:1 --json --token t"),
            Ok("--log-level warn --server h:1 --token t status --json".into())
        );
        assert_eq!(
            normalized("add tlm '' 8500 udp --path vc1 --version"),
            Ok("--version add tlm '' 8500 udp --path vc1".into())
        );
        // A global option's value is not taken for the command's name.
        assert_eq!(
            normalized("--server check status"),
            Ok("--server check status".into())
        );
        assert_eq!(
            normalized("status --server"),
            Err("--server: needs a value".into())
        );
        // Nothing after `--` moves.
        assert_eq!(normalized("stop -- -c"), Ok("stop -- -c".into()));
        assert_eq!(normalized(""), Ok("".into()));
        assert_eq!(normalized("--version"), Ok("--version".into()));
    }

    #[test]
    fn equals_form_is_split() {
        assert_eq!(
            normalized("--log-level=WARN"),
            Ok("--log-level WARN".into())
        );
        assert_eq!(
            normalized("status --server=h:1"),
            Ok("--server h:1 status".into())
        );
        assert_eq!(
            normalized("add a b 1 udp --file-name-pattern={x}=y.pcap --set=k=v"),
            Ok("add a b 1 udp --file-name-pattern {x}=y.pcap --set k=v".into())
        );
        // Positional KEY=VALUE and values after `--` stay whole.
        assert_eq!(normalized("rotate p pass=1"), Ok("rotate p pass=1".into()));
        assert_eq!(
            normalized("rotate p -- --a=b"),
            Ok("rotate p -- --a=b".into())
        );
    }

    #[test]
    fn argh_reads_the_normalized_line() {
        let parse = |line: &str| {
            let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            let args = normalize_args(&args).unwrap();
            let words: Vec<&str> = args.iter().map(String::as_str).collect();
            Args::from_args(&["bsc"], &words)
        };
        let a = parse("status --json -c x.json --log-level=DEBUG")
            .ok()
            .unwrap();
        assert_eq!(a.config, Some(PathBuf::from("x.json")));
        assert_eq!(a.log_level, "DEBUG");
        assert!(matches!(
            a.command,
            Some(Command::Status(StatusArgs { json: true }))
        ));
        let a = parse("rotate pass pass=12 x=").ok().unwrap();
        match a.command {
            Some(Command::Rotate(r)) => assert_eq!(
                r.metadata,
                [("pass".into(), "12".into()), ("x".into(), String::new())]
            ),
            _ => panic!("not rotate"),
        }
        let a = parse("add tlm x 8500 udp --set a=1 --set b=2 --rotate-log False")
            .ok()
            .unwrap();
        match a.command {
            Some(Command::Add(add)) => {
                assert!(!add.rotate_log);
                assert_eq!(add.rotate_log_index, "day");
                assert_eq!(add.file_name_pattern, "%Y-%m-%d-%H-%M-%S-{name}.pcap");
                assert_eq!(add.set.len(), 2);
            }
            _ => panic!("not add"),
        }
        assert!(parse("add onlyname").is_err());
        assert!(parse("rotate p notkv").is_err());
        assert!(parse("stop-capturer '' 8500").is_ok());
    }
}
