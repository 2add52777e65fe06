//! The `bsc extract` command: its arguments and what it runs ([`run`]): the
//! window and filters checked, then files read here ([`super::local`]) or the
//! server asked ([`super::remote`]).

use std::path::PathBuf;

use argh::FromArgs;

use super::{local, output, remote, Source};
use crate::control::client::action::percent_encode;
use crate::control::client::http::ClientError;
use crate::control::client::target::Target;
use crate::files::window::{parse_time, Window};
use crate::units::transform::Transform;

/// `bsc`'s exit status for a usage error.
const EXIT_USAGE: u8 = 2;

#[derive(FromArgs)]
/// one pcap of the records from --from to --to, from a running bsc's handler or from capture files
#[argh(
    subcommand,
    name = "extract",
    example = "{command_name} tlm --from 2026-12-07T14:00:00Z --to 2026-12-07T14:01:00Z -o pass.pcap",
    example = "{command_name} archive/*.pcap --from 1796652000 --apid 0x100 | tshark -r -",
    note = "An argument with a / or naming an existing file is a FILE, read here without a server;
any other is a handler NAME (--name NAME always is one). Times are RFC 3339 or Unix seconds;
either end may be left out (from the first record, to the last)."
)]
pub struct ExtractArgs {
    /// a handler NAME, or capture FILEs
    #[argh(positional)]
    sources: Vec<String>,
    /// the handler, even if a file of that name is here
    #[argh(option)]
    name: Option<String>,
    /// the first instant kept (RFC 3339 or Unix seconds)
    #[argh(option)]
    from: Option<String>,
    /// the instant the window ends before
    #[argh(option)]
    to: Option<String>,
    /// keep only space packets of these APIDs (0x100,0x101)
    #[argh(option)]
    apid: Option<String>,
    /// keep only TM frames of these virtual channels (0,3)
    #[argh(option)]
    vcid: Option<String>,
    /// the handler's port, when handlers of that name run on several
    #[argh(option)]
    port: Option<u16>,
    /// write the pcap to FILE (default stdout, when it is not a terminal)
    #[argh(option, short = 'o')]
    output: Option<PathBuf>,
}

/// `bsc extract`: checks the window and filters, then reads files here or
/// asks the server ([`super::remote`]).
pub fn run(a: &ExtractArgs, server: impl FnOnce() -> Result<Target, String>) -> u8 {
    let usage = |e: String| {
        eprintln!("bsc extract: {e}");
        EXIT_USAGE
    };
    let source = match Source::of(&a.sources, a.name.as_deref(), |p| {
        std::path::Path::new(p).exists()
    }) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let time = |key: &str, t: &Option<String>| {
        t.as_deref()
            .map(parse_time)
            .transpose()
            .map_err(|e| format!("--{key}: {e}"))
    };
    let window = match (time("from", &a.from), time("to", &a.to)) {
        (Ok(f), Ok(t)) => match Window::new(f, t) {
            Ok(w) => w,
            Err(e) => return usage(format!("--from, --to: {e}")),
        },
        (Err(e), _) | (_, Err(e)) => return usage(e),
    };
    let mut filters = Vec::new();
    for (key, list) in [("apid", &a.apid), ("vcid", &a.vcid)] {
        if let Some(list) = list {
            match Transform::parse(&format!("{key}:{list}")) {
                Ok(t) => filters.push(t),
                Err(e) => return usage(format!("--{key}: {e}")),
            }
        }
    }
    if matches!(source, Source::Files(_)) && a.port.is_some() {
        return usage("--port: only with a handler NAME".into());
    }
    let target = match &source {
        Source::Files(_) => None,
        Source::Name(_) => match server() {
            Ok(t) => Some(t),
            Err(e) => return usage(e),
        },
    };
    // Opened once everything else was checked, so a refusal leaves no file.
    let (mut out, made) = match output(a.output.as_ref()) {
        Ok(o) => o,
        Err(e) => return usage(e.to_string()),
    };
    // A NAME that reads like a file name (`pass.pcap`): say it is no file
    // here either when bsc cannot be reached.
    let file_like = match &source {
        Source::Name(name) if name.contains('.') && a.name.is_none() => Some(name.clone()),
        _ => None,
    };
    let done = match (source, target) {
        (Source::Files(files), _) => local(&files, window, &filters, &mut out),
        (Source::Name(name), target) => {
            let target = target.expect("asked above");
            let mut query = Vec::new();
            let texts = [
                ("from", &a.from),
                ("to", &a.to),
                ("apid", &a.apid),
                ("vcid", &a.vcid),
            ];
            for (key, value) in texts {
                if let Some(v) = value {
                    query.push(format!("{key}={}", percent_encode(v)));
                }
            }
            if let Some(p) = a.port {
                query.push(format!("port={p}"));
            }
            remote(&target, &name, &query.join("&"), &mut out)
        }
    };
    match done {
        Ok(_) => 0,
        Err(e) => {
            match (&e, file_like) {
                (ClientError::Unreachable { .. }, Some(name)) => eprintln!(
                    "bsc extract: {e}\nbsc extract: and no file is named {name:?} here (a FILE is read without a server)"
                ),
                _ => eprintln!("bsc extract: {e}"),
            }
            if let Some(p) = made {
                // No partial or empty pcap left behind (only a file it made).
                let _ = std::fs::remove_file(p);
            }
            e.exit_code()
        }
    }
}
