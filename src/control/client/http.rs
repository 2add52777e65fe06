//! The blocking HTTP client: one [`TcpStream`] with timeouts, one request,
//! `Connection: close` ([`exchange`], the only I/O), the answer framed by
//! [`super::stream`] (`Content-Length`, chunked, or to the end) and checked by
//! [`check_answer`] (2xx JSON, or the error bsc gave), then read into its
//! [`answers`](crate::control::api::answers) type ([`read`]).

use std::fmt;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use super::safe::{one_line, terminal_safe};
use super::{Call, Target};
use crate::control::api::answers::{from_object, ErrorAnswer, ReadFields, Stats};

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long bsc may take to answer (a stop flushes and closes files first).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (a `/stats` of thousands of handlers fits).
pub const MAX_ANSWER: usize = 64 << 20;

/// Why the client could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// bsc answered with an error (exit 1).
    Refused { status: u16, message: String },
    /// The command line or its environment is wrong (exit 2).
    Usage(String),
    /// No connection, no answer in time (exit 3).
    Unreachable { server: String, reason: String },
    /// Something answered, but not as bsc does (exit 3).
    NotBsc { server: String, reason: String },
}

impl ClientError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused { .. } => 1,
            ClientError::Usage(_) => 2,
            ClientError::Unreachable { .. } | ClientError::NotBsc { .. } => 3,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ClientError::Refused { status, message } => {
                write!(f, "refused ({status}): {message}")?;
                if *status == 401 {
                    write!(f, " (give the token with --token or BSC_TOKEN)")?;
                }
                Ok(())
            }
            ClientError::Usage(m) => write!(f, "{m}"),
            ClientError::Unreachable { server, reason } => write!(
                f,
                "cannot reach bsc at {server}: {reason} (is it running? set --server or BSC_SERVER)"
            ),
            ClientError::NotBsc { server, reason } => write!(
                f,
                "what answers at {server} is not bsc ({reason}); set --server or BSC_SERVER"
            ),
        }
    }
}

/// An answer: its status and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// An answer checked: 2xx with a JSON body, or the error bsc gave.
pub fn check_answer(answer: &Answer, server: &str) -> Result<Value, ClientError> {
    if !(200..600).contains(&answer.status) {
        return Err(ClientError::NotBsc {
            server: server.to_string(),
            reason: format!("it answered with status {}", answer.status),
        });
    }
    // Every string printed from here on is the answer's, escaped once.
    let json: Option<Value> = serde_json::from_slice(&answer.body).ok().map(terminal_safe);
    if (200..300).contains(&answer.status) {
        return json.ok_or_else(|| ClientError::NotBsc {
            server: server.to_string(),
            reason: format!("answer {} is not JSON", answer.status),
        });
    }
    let error = json.and_then(|j| serde_json::from_value::<ErrorAnswer>(j).ok());
    let message = match error {
        // One line, whatever the server sent: escaped by `terminal_safe`.
        Some(e) => e.error.into_owned(),
        None => {
            let text = String::from_utf8_lossy(&answer.body);
            let text = text.trim();
            if text.is_empty() {
                crate::control::http::response::reason(answer.status).to_string()
            } else {
                one_line(text, 200)
            }
        }
    };
    Err(ClientError::Refused {
        status: answer.status,
        message,
    })
}

/// A checked answer (a JSON object) read into its type: what bsc sends, or
/// exit 3 (an answer of another shape is not bsc's). Fields an older bsc did
/// not send read as empty ([`ReadFields`]).
pub fn read<T: ReadFields>(answer: Value, server: &str) -> Result<T, ClientError> {
    match answer {
        Value::Object(map) => from_object(map).map_err(|e| not_shaped(server, e.to_string())),
        _ => Err(not_shaped(server, "not an object".into())),
    }
}

/// A checked answer that is a list of objects, each read as [`read`] does.
pub fn read_list<T: ReadFields>(answer: Value, server: &str) -> Result<Vec<T>, ClientError> {
    match answer {
        Value::Array(items) => items.into_iter().map(|v| read(v, server)).collect(),
        _ => Err(not_shaped(server, "not a list".into())),
    }
}

/// `GET /stats` read: per address key, its entries.
pub fn read_stats(answer: Value, server: &str) -> Result<Stats<'static>, ClientError> {
    match answer {
        Value::Object(groups) => groups
            .into_iter()
            .map(|(key, entries)| Ok((key, read_list(entries, server)?)))
            .collect(),
        _ => Err(not_shaped(server, "not an object".into())),
    }
}

fn not_shaped(server: &str, why: String) -> ClientError {
    ClientError::NotBsc {
        server: server.to_string(),
        reason: format!("its answer is not shaped as bsc's: {why}"),
    }
}

/// An I/O error as an operator reads it ("connection refused").
pub(super) fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "no answer in time".into(),
        io::ErrorKind::ConnectionReset => "the connection was reset".into(),
        _ => {
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text);
            // The system's texts start with an ASCII letter ("No route to host").
            let mut chars = text.chars();
            match chars.next() {
                Some(c) => c.to_ascii_lowercase().to_string() + chars.as_str(),
                None => text.to_string(),
            }
        }
    }
}

/// A connection to `target` (its first address that answers), with the
/// answer timeouts set, and the request sent.
pub fn connect_and_send(target: &Target, call: &Call) -> Result<TcpStream, ClientError> {
    let server = target.to_string();
    let unreachable = |reason: String| ClientError::Unreachable {
        server: server.clone(),
        reason,
    };
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| {
            unreachable(format!(
                "cannot resolve {:?}: {}",
                target.host,
                describe_io(&e)
            ))
        })?
        .collect();
    let mut last = unreachable(format!("{:?} has no address", target.host));
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = unreachable(describe_io(&e)),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let io = |e: io::Error| unreachable(describe_io(&e));
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    stream.write_all(&call.encode(target)).map_err(io)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_carry_bsc_text_and_exit_codes() {
        let refused = check_answer(
            &Answer {
                status: 409,
                body: br#"{"error":"handler \"x\" already writes a.pcap"}"#.to_vec(),
            },
            "h:1",
        )
        .unwrap_err();
        assert_eq!(
            refused.to_string(),
            r#"refused (409): handler "x" already writes a.pcap"#
        );
        assert_eq!(refused.exit_code(), 1);
        let auth = check_answer(
            &Answer {
                status: 401,
                body: br#"{"error":"no"}"#.to_vec(),
            },
            "h:1",
        )
        .unwrap_err();
        assert!(auth
            .to_string()
            .ends_with("(give the token with --token or BSC_TOKEN)"));
        let html = check_answer(
            &Answer {
                status: 500,
                body: b"<html>\n oops</html>".to_vec(),
            },
            "h:1",
        )
        .unwrap_err();
        assert_eq!(html.to_string(), r"refused (500): <html>\n oops</html>");
        let not_json = check_answer(
            &Answer {
                status: 200,
                body: b"hello".to_vec(),
            },
            "h:1",
        )
        .unwrap_err();
        assert_eq!(not_json.exit_code(), 3);
        assert_eq!(
            check_answer(
                &Answer {
                    status: 201,
                    body: b"[1]".to_vec()
                },
                "h:1"
            ),
            Ok(json!([1]))
        );
        let down = ClientError::Unreachable {
            server: "127.0.0.1:8080".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(
            down.to_string(),
            "cannot reach bsc at 127.0.0.1:8080: connection refused (is it running? set --server or BSC_SERVER)"
        );
        assert_eq!(down.exit_code(), 3);
        assert_eq!(ClientError::Usage("x".into()).exit_code(), 2);
        assert_eq!(
            describe_io(&io::Error::from_raw_os_error(libc::EHOSTUNREACH)),
            "no route to host"
        );
    }

    #[test]
    fn answers_are_read_from_objects_only() {
        use crate::control::api::answers::{Rotated, StatsEntry};
        let rotated: Vec<Rotated> = read_list(
            json!([{"name": "tlm", "address": ["", 8500], "previous_file": null,
                    "log_file_path": "/d/1.pcap"}]),
            "h:1",
        )
        .unwrap();
        assert_eq!(
            (rotated[0].name.as_ref(), rotated[0].address.1),
            ("tlm", 8500)
        );
        let stats = read_stats(
            json!({"['', 8500]": [{"name": "tlm", "packets": 2}]}),
            "h:1",
        )
        .unwrap();
        assert_eq!(stats["['', 8500]"][0].packets, 2);
        // A struct as an array (serde would take it), a list that is not: not bsc.
        for bad in [json!(["tlm", ["", 8500]]), json!({"name": 5})] {
            let e = read::<StatsEntry>(bad, "h:1").unwrap_err();
            assert_eq!(e.exit_code(), 3, "{e}");
        }
        assert!(read_list::<Rotated>(json!({}), "h:1").is_err());
    }
}
