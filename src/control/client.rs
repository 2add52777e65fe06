//! The `bsc` client: `bsc add`, `stop`, `rotate`, `stop-capturer`, `status` and
//! `files` (and `replay --name`) talk to a running bsc's management API, so an operator needs neither
//! curl nor jq.
//!
//! Sans I/O, like the server: [`Action::call`] builds the request ([`Call`],
//! encoded by [`Call::encode`]), `stream.rs` frames the answer's bytes,
//! [`check_answer`] and [`read`] turn it into its
//! [`answers`](crate::control::api::answers) type (the server's own, so no field is
//! looked up by name), and the `format_*` functions, [`status_table`] and
//! [`file_list`] turn it into text for an operator. Only [`exchange`] (one
//! blocking [`std::net::TcpStream`] with timeouts, one request,
//! `Connection: close`) and [`run`] touch the network.
//!
//! | file | its job |
//! |---|---|
//! | `client/target.rs` | which bsc, and its token: [`resolve_target`] |
//! | `client/action.rs` | [`Action`] (the command) to [`Call`] (the request) |
//! | `client/http.rs` | the connection and the request (`connect_and_send`), an answer checked, [`ClientError`] |
//! | `client/safe.rs` | no terminal control sequence from an answer reaches stdout |
//! | `client/table.rs` | padded columns, sizes, rates, ages |
//! | `client/output.rs` | what each command prints |
//! | `client/stream.rs` | an answer's head framed and its body read as it arrives ([`get_body`]); [`exchange`] reads it whole, [`send`] checks it |
//! | `client/replay.rs` | `bsc replay`: recorded records sent again at their pace ([`replay`]) |
//! | `client/extract.rs` | `bsc extract`: a window's pcap from a bsc or from files here |
//!
//! Exit statuses ([`ClientError::exit_code`]): 0 done, 1 refused by bsc (its
//! `error` text), 2 usage, 3 bsc not reachable.

use crate::clock::UnixMicros;
use crate::control::api::answers::{CapturerEntry, HandlerFiles, Rotated};

mod action;
pub mod extract;
mod http;
mod output;
mod replay;
mod safe;
mod stream;
mod table;
mod target;

pub use action::{parse_bool, parse_key_value, percent_encode, Action, AddRequest, Call};
pub use extract::ExtractArgs;
pub use http::{
    check_answer, read, read_list, read_stats, Answer, ClientError, ANSWER_TIMEOUT, CONNECT_TIMEOUT,
};
pub use output::{
    address_text, file_list, format_added, format_capturer_stopped, format_rotated, format_stopped,
    status_table,
};
pub use replay::{replay, ReplayArgs};
pub use safe::{terminal_safe, terminal_safe_json};
pub use stream::{exchange, get_body, send, Body};
pub use table::{age, human_bytes, human_rate};
pub use target::{parse_server, resolve_target, Target};

/// Does `action` against `target` and returns what to print on stdout.
pub fn run(action: &Action, target: &Target, now: UnixMicros) -> Result<String, ClientError> {
    let reply = exchange(target, &action.call())?;
    let server = target.to_string();
    let answer = check_answer(&reply, &server)?;
    Ok(match action {
        Action::Add(_) => format_added(&read(answer, &server)?),
        Action::Stop { .. } => format_stopped(&read_list(answer, &server)?),
        Action::Rotate { .. } => format_rotated(&read_list::<Rotated>(answer, &server)?),
        Action::StopCapturer { .. } => format_capturer_stopped(&read(answer, &server)?),
        // As bsc sent it: serde_json's map would sort the address keys.
        Action::Status { json: true } | Action::Files { json: true, .. } => {
            format!(
                "{}\n",
                terminal_safe_json(&String::from_utf8_lossy(&reply.body))
            )
        }
        Action::Status { json: false } => {
            let stats = read_stats(answer, &server)?;
            let capturers = send(target, &Call::new("GET", "/capturers".into()))?;
            let capturers = read_list::<CapturerEntry>(capturers, &server)?;
            status_table(&stats, &capturers, now)
        }
        Action::Files { json: false, .. } => {
            file_list(&read_list::<HandlerFiles>(answer, &server)?)
        }
    })
}
