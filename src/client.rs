//! The `bsc` client: `bsc add`, `stop`, `rotate`, `stop-capturer`, `status` and
//! `files` talk to a running bsc's management API, so an operator needs neither
//! curl nor jq.
//!
//! Sans I/O, like the server: [`Action::call`] builds the request ([`Call`],
//! encoded by [`Call::encode`]), [`parse_answer`] reads the answer's bytes, and the
//! `format_*` functions and [`status_table`] turn the answer's JSON into text for
//! an operator. Only [`exchange`] (one blocking [`TcpStream`] with timeouts, one
//! request, `Connection: close`) and [`run`] touch the network.
//!
//! Exit statuses ([`ClientError::exit_code`]): 0 done, 1 refused by bsc (its
//! `error` text), 2 usage, 3 bsc not reachable.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use crate::clock::UnixMicros;
use crate::config::{ServerConfig, DEFAULT_SERVER_HOST, DEFAULT_SERVER_PORT};

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long bsc may take to answer (a stop flushes and closes files first).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (a `/stats` of thousands of handlers fits).
const MAX_ANSWER: usize = 64 << 20;

/// Which bsc to talk to, and the token to show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub token: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `HOST:PORT` (`[::1]:8080` for IPv6; an `http://` prefix and a trailing
/// `/` are allowed, so a URL copied from a curl line works).
pub fn parse_server(text: &str) -> Result<(String, u16), String> {
    let s = text.trim();
    let s = s.strip_prefix("http://").unwrap_or(s);
    let s = s.strip_suffix('/').unwrap_or(s);
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("server {text:?}: give HOST:PORT, e.g. 127.0.0.1:8080"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(format!(
            "server {text:?}: the host is missing; give HOST:PORT, e.g. 127.0.0.1:8080"
        ));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("server {text:?}: the port must be 1..65535"))?;
    Ok((host.to_string(), port))
}

/// Where the client finds bsc: `--server`, else `$BSC_SERVER`, else the config's
/// `manager_server` (a wildcard listen address is reached on loopback), else
/// 127.0.0.1:8080; the token from `--token`, else `$BSC_TOKEN`, else the config's.
pub fn resolve_target(
    server_flag: Option<&str>,
    server_env: Option<&str>,
    token_flag: Option<&str>,
    token_env: Option<&str>,
    config: Option<&ServerConfig>,
) -> Result<Target, String> {
    let (host, port) = if let Some(s) = nonempty(server_flag) {
        parse_server(s).map_err(|e| format!("--server: {e}"))?
    } else if let Some(s) = nonempty(server_env) {
        parse_server(s).map_err(|e| format!("BSC_SERVER: {e}"))?
    } else if let Some(c) = config {
        let host = match c.host.as_str() {
            "0.0.0.0" => "127.0.0.1",
            "::" => "::1",
            h => h,
        };
        (host.to_string(), c.port)
    } else {
        (DEFAULT_SERVER_HOST.to_string(), DEFAULT_SERVER_PORT)
    };
    let token = nonempty(token_flag)
        .or(nonempty(token_env))
        .map(str::to_string)
        .or_else(|| config.and_then(|c| c.token.clone()));
    Ok(Target { host, port, token })
}

/// The text, trimmed, unless it is blank (an empty variable counts as unset).
fn nonempty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// `KEY=VALUE` (for `--set` and rotate's metadata); the value may be empty or hold `=`.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// `true`/`false` as the API takes them (`True`, `1`, `0` too).
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "true" | "True" | "1" => Ok(true),
        "false" | "False" | "0" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

/// One request to the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    /// Already percent-encoded.
    pub path: String,
    /// Form fields, sent as an `application/x-www-form-urlencoded` body.
    pub form: Vec<(String, String)>,
}

impl Call {
    fn new(method: &'static str, path: String) -> Call {
        Call {
            method,
            path,
            form: Vec::new(),
        }
    }

    /// The form body, percent-encoded.
    pub fn body(&self) -> String {
        self.form
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The request as HTTP/1.1 bytes for `target`.
    pub fn encode(&self, target: &Target) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: bsc/{}\r\nAccept: application/json\r\nConnection: close\r\n",
            self.method,
            self.path,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(token) = &target.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = self.body();
        if !self.form.is_empty() {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        if !self.form.is_empty() || self.method != "GET" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// Percent-encodes everything but the unreserved characters (RFC 3986), so a
/// value is data in a path segment and in a form body alike.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else if b == b'.' && s != "." && s != ".." {
            out.push('.');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `bsc add`: the arguments of AIT's `ait-bsc-create-handler`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddRequest {
    pub name: String,
    pub loc: String,
    pub port: String,
    pub conn_type: String,
    pub rotate_log: bool,
    pub rotate_log_index: String,
    pub rotate_log_delta: u32,
    pub file_name_pattern: String,
    pub path: Option<String>,
    /// Any other handler key or metadata, in order.
    pub set: Vec<(String, String)>,
}

/// What the operator asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Add(AddRequest),
    Stop {
        name: String,
    },
    Rotate {
        name: String,
        metadata: Vec<(String, String)>,
    },
    StopCapturer {
        loc: String,
        port: String,
        conn_type: Option<String>,
    },
    Status {
        json: bool,
    },
    Files {
        name: String,
        json: bool,
    },
}

impl Action {
    /// The request this action starts with (`status` asks `/capturers` too).
    pub fn call(&self) -> Call {
        let named = |name: &str, what: &str| format!("/{}/{what}", percent_encode(name));
        match self {
            Action::Add(a) => {
                let mut c = Call::new("POST", named(&a.name, "start"));
                c.form = vec![
                    ("loc".into(), a.loc.clone()),
                    ("port".into(), a.port.clone()),
                    ("conn_type".into(), a.conn_type.clone()),
                    ("rotate_log".into(), a.rotate_log.to_string()),
                    ("rotate_log_index".into(), a.rotate_log_index.clone()),
                    ("rotate_log_delta".into(), a.rotate_log_delta.to_string()),
                    ("file_name_pattern".into(), a.file_name_pattern.clone()),
                ];
                if let Some(p) = &a.path {
                    c.form.push(("path".into(), p.clone()));
                }
                c.form.extend(a.set.iter().cloned());
                c
            }
            Action::Stop { name } => Call::new("DELETE", named(name, "stop")),
            Action::Rotate { name, metadata } => {
                let mut c = Call::new("POST", named(name, "rotate"));
                c.form = metadata.clone();
                c
            }
            Action::StopCapturer {
                loc,
                port,
                conn_type,
            } => {
                let mut c = Call::new("DELETE", "/capturers".into());
                c.form = vec![("loc".into(), loc.clone()), ("port".into(), port.clone())];
                if let Some(t) = conn_type {
                    c.form.push(("conn_type".into(), t.clone()));
                }
                c
            }
            Action::Status { .. } => Call::new("GET", "/stats".into()),
            Action::Files { name, .. } => Call::new("GET", named(name, "files")),
        }
    }
}

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

/// What the bytes read so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole answer yet.
    Partial,
    Whole(Answer),
}

/// Frames an answer (by `Content-Length`, or chunked (bsc's large answers);
/// without either, the body runs to the end of the connection, so `at_eof`
/// says whether more may come).
pub fn parse_answer(bytes: &[u8], at_eof: bool) -> Result<Parsed, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if at_eof => {
            return Err(if bytes.is_empty() {
                "the connection closed without an answer".into()
            } else {
                "the answer ended in its head".into()
            })
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let length = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or("a bad Content-Length")
        })
        .transpose()?;
    let body = &bytes[head_len..];
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    if chunked {
        return match dechunk(body)? {
            Some(body) => Ok(Parsed::Whole(Answer { status, body })),
            None if at_eof => Err("the answer ended before its body did".into()),
            None => Ok(Parsed::Partial),
        };
    }
    match length {
        Some(n) if body.len() >= n => Ok(Parsed::Whole(Answer {
            status,
            body: body[..n].to_vec(),
        })),
        Some(_) if at_eof => Err("the answer ended before its body did".into()),
        None if at_eof => Ok(Parsed::Whole(Answer {
            status,
            body: body.to_vec(),
        })),
        _ => Ok(Parsed::Partial),
    }
}

/// A chunked body decoded: `None` until its last chunk has arrived. Chunks
/// are stepped over by their sizes, so asking again as bytes arrive costs a
/// few steps per chunk, and only the whole body is copied.
fn dechunk(bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut spans = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = bytes[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&bytes[at..at + eol]);
        // A chunk extension (`;name=value`) may follow the size.
        let size = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size, 16).map_err(|_| format!("a bad chunk size {size:?}"))?;
        at += eol + 2;
        if size == 0 {
            // No trailers from bsc: the empty line ends the body.
            if bytes.len() < at + 2 {
                return Ok(None);
            }
            let mut body = Vec::with_capacity(spans.iter().map(|(_, n)| n).sum());
            for (from, n) in spans {
                body.extend_from_slice(&bytes[from..from + n]);
            }
            return Ok(Some(body));
        }
        if bytes.len() < at + size + 2 {
            return Ok(None);
        }
        if &bytes[at + size..at + size + 2] != b"\r\n" {
            return Err("a chunk does not end where its size says".into());
        }
        spans.push((at, size));
        at += size + 2;
    }
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
    let message = match json.as_ref().and_then(|j| j.get("error")) {
        // One line, whatever the server sent: escaped by `terminal_safe`.
        Some(Value::String(s)) => s.clone(),
        _ => {
            let text = String::from_utf8_lossy(&answer.body);
            let text = text.trim();
            if text.is_empty() {
                crate::http::response::reason(answer.status).to_string()
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

/// `text` on one line (controls escaped), at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat = crate::log::escape_controls(text);
    if flat.chars().count() > max {
        flat.chars().take(max).collect::<String>() + "..."
    } else {
        flat.into_owned()
    }
}

/// The answer with every control character (ESC, BEL, CR, C1, ...) in its strings
/// and keys escaped as [`crate::log::escape_controls`] does: whatever a server
/// sends, the client never writes a terminal control sequence. Every text path
/// (tables, one-line summaries, refusals) prints from a value made safe here.
pub fn terminal_safe(mut value: Value) -> Value {
    make_safe(&mut value);
    value
}

fn make_safe(value: &mut Value) {
    let escaped = |s: &str| match crate::log::escape_controls(s) {
        std::borrow::Cow::Owned(e) => Some(e),
        std::borrow::Cow::Borrowed(_) => None,
    };
    match value {
        Value::String(s) => {
            if let Some(e) = escaped(s) {
                *s = e;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(make_safe),
        Value::Object(map) => {
            if map.keys().any(|k| escaped(k).is_some()) {
                for (k, v) in std::mem::take(map) {
                    map.insert(escaped(&k).unwrap_or(k), v);
                }
            }
            map.values_mut().for_each(make_safe);
        }
        _ => {}
    }
}

/// A JSON answer's text as sent (`--json`: the key order kept), made safe for a
/// terminal and still the same JSON: a control character can only be whitespace
/// outside strings (a CR becomes a space) or, for DEL, C1 and the other
/// [`crate::log::is_hazard`] characters, inside a string (written as a `\uXXXX`
/// escape, which JSON reads back as the same character).
pub fn terminal_safe_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => out.push(' '),
            c if crate::log::is_hazard(c) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// An I/O error as an operator reads it ("connection refused").
fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "no answer in time".into(),
        io::ErrorKind::ConnectionReset => "the connection was reset".into(),
        _ => {
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text);
            let mut chars = text.chars();
            match chars.next() {
                Some(c) => c.to_lowercase().collect::<String>() + chars.as_str(),
                None => text.to_string(),
            }
        }
    }
}

/// Sends one request and returns the checked answer's JSON.
pub fn send(target: &Target, call: &Call) -> Result<Value, ClientError> {
    check_answer(&exchange(target, call)?, &target.to_string())
}

/// Sends one request and reads its answer (the thin I/O part).
pub fn exchange(target: &Target, call: &Call) -> Result<Answer, ClientError> {
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
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    // One deadline for the whole answer, however slowly it drips.
    let deadline = crate::clock::monotonic() + ANSWER_TIMEOUT;
    let answer = loop {
        let left = deadline.saturating_duration_since(crate::clock::monotonic());
        if left.is_zero() {
            return Err(io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no whole answer within {} s", ANSWER_TIMEOUT.as_secs()),
            )));
        }
        stream.set_read_timeout(Some(left)).map_err(io)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        buf.extend_from_slice(&chunk[..n]);
        let not_bsc = |reason: String| ClientError::NotBsc {
            server: server.clone(),
            reason,
        };
        if buf.len() > MAX_ANSWER {
            return Err(not_bsc("the answer is larger than 64 MiB".into()));
        }
        match parse_answer(&buf, n == 0).map_err(not_bsc)? {
            Parsed::Whole(a) => break a,
            Parsed::Partial => {}
        }
    };
    Ok(answer)
}

/// Does `action` against `target` and returns what to print on stdout.
pub fn run(action: &Action, target: &Target, now: UnixMicros) -> Result<String, ClientError> {
    let reply = exchange(target, &action.call())?;
    let answer = check_answer(&reply, &target.to_string())?;
    Ok(match action {
        Action::Add(_) => format_added(&answer),
        Action::Stop { .. } => format_stopped(&answer),
        Action::Rotate { .. } => format_rotated(&answer),
        Action::StopCapturer { .. } => format_capturer_stopped(&answer),
        // As bsc sent it: serde_json's map would sort the address keys.
        Action::Status { json: true } | Action::Files { json: true, .. } => {
            format!(
                "{}\n",
                terminal_safe_json(&String::from_utf8_lossy(&reply.body))
            )
        }
        Action::Status { json: false } => {
            let capturers = send(target, &Call::new("GET", "/capturers".into()))?;
            status_table(&answer, &capturers, now)
        }
        Action::Files { json: false, .. } => file_list(&answer),
    })
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn number(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// `udp *:8500`, `tcp 10.0.0.5:9000`, `ethernet eth0 type 0x88b5` from a
/// conn_type and an `[host, port]` JSON pair.
pub fn address_text(conn_type: &str, address: &Value) -> String {
    let host = address.get(0).and_then(Value::as_str).unwrap_or("");
    let port = address.get(1).and_then(Value::as_u64).unwrap_or(0);
    let place = match conn_type {
        "ethernet" if port == 0 => format!("{host} all types"),
        "ethernet" => format!("{host} type {port:#06x}"),
        _ if host.is_empty() => format!("*:{port}"),
        _ if host.contains(':') => format!("[{host}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    if conn_type.is_empty() {
        place
    } else {
        format!("{conn_type} {place}")
    }
}

/// `bsc add`'s output, from the 201 config entry: what is known when a handler
/// starts, the folder and the file name pattern. No file exists yet (the first
/// opens with the first unit, named at that instant), so none is named.
pub fn format_added(entry: &Value) -> String {
    let handler = &entry["handler"];
    let name = text(handler, "name");
    let pattern = text(handler, "file_name_pattern");
    // log_dir is the folder of the name rendered now; a pattern with folders
    // of its own rendered some of them: the folder is above those.
    let mut folder = std::path::Path::new(text(handler, "log_dir"));
    for _ in 0..pattern.matches('/').count() {
        folder = folder.parent().unwrap_or(folder);
    }
    format!(
        "added {} ({}): files go to {}/ as {pattern}; the first opens with the first unit\n",
        if name.is_empty() { "?" } else { name },
        address_text(text(entry, "conn_type"), &entry["address"]),
        folder.display()
    )
}

/// `bsc stop`'s output, from the list of entries stopped.
pub fn format_stopped(entries: &Value) -> String {
    let mut out = String::new();
    for e in entries.as_array().into_iter().flatten() {
        let name = e.pointer("/handler/name").and_then(Value::as_str);
        out.push_str(&format!(
            "stopped {} ({})\n",
            name.unwrap_or("?"),
            address_text(text(e, "conn_type"), &e["address"])
        ));
    }
    out
}

/// `bsc rotate`'s output: per handler, the file closed and the next one.
pub fn format_rotated(rotated: &Value) -> String {
    let mut out = String::new();
    for r in rotated.as_array().into_iter().flatten() {
        let previous = match r.get("previous_file").and_then(Value::as_str) {
            Some(p) => format!("closed {p}"),
            None => "no file was open".into(),
        };
        out.push_str(&format!(
            "{} ({}): {previous}; next file {}\n",
            text(r, "name"),
            address_text("", &r["address"]),
            text(r, "log_file_path")
        ));
    }
    out
}

/// `bsc stop-capturer`'s output.
pub fn format_capturer_stopped(answer: &Value) -> String {
    let names: Vec<&str> = answer["stopped"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.pointer("/handler/name").and_then(Value::as_str))
        .collect();
    format!(
        "closed {}; stopped {}\n",
        address_text(text(answer, "conn_type"), &answer["address"]),
        if names.is_empty() {
            "no handlers".to_string()
        } else {
            names.join(", ")
        }
    )
}

/// A byte count for people, in bsc's one size unit ([`crate::log::size`]:
/// `512 B`, `1.50 KiB`, `23.4 MiB`).
pub fn human_bytes(n: u64) -> String {
    crate::log::size(n)
}

/// A rate for people: `0 B/s`, `850 B/s`, `1.46 KiB/s`, `35.3 MiB/s`.
pub fn human_rate(bytes_per_s: f64) -> String {
    let n = if bytes_per_s.is_finite() && bytes_per_s > 0.0 {
        bytes_per_s.round() as u64
    } else {
        0
    };
    human_bytes(n) + "/s"
}

/// `3s ago`, `4m ago`, `2h ago`, `5d ago`, or `never`.
pub fn age(then: Option<UnixMicros>, now: UnixMicros) -> String {
    let Some(then) = then else {
        return "never".into();
    };
    let s = (now.0 - then.0).max(0) / 1_000_000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// bsc's RFC 3339 UTC text (`2026-11-28T10:00:00.000123Z`) back to an instant.
pub fn parse_rfc3339(s: &str) -> Option<UnixMicros> {
    let s = s.strip_suffix('Z')?;
    let (date, clock) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i32>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<u8>().ok());
    let (h, m, sec) = (t.next()??, t.next()??, t.next()??);
    let date = time::Date::from_calendar_date(
        year,
        time::Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let at = date.with_hms(h, m, sec).ok()?.assume_utc();
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        format!("{frac:0<6}")[..6].parse().ok()?
    };
    Some(UnixMicros::from_datetime(at).plus_micros(micros))
}

/// A column's alignment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// Rows under a header, columns padded to their widest cell (the last one not).
fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([columns[i].0.len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..columns.len()).map(width).collect();
    let header: Vec<String> = columns.iter().map(|(h, _)| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i] - cell.chars().count();
            let last = i + 1 == row.len();
            match columns[i].1 {
                Align::Right => {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    if !last {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `bsc status`: one row per handler from `GET /stats`, in the order of the
/// sockets in `GET /capturers` (which also gives each row its conn_type and, for
/// TCP, the connection's state), then a line per handler that needs attention.
pub fn status_table(stats: &Value, capturers: &Value, now: UnixMicros) -> String {
    let empty = Vec::new();
    let caps = capturers.as_array().unwrap_or(&empty);
    let groups = stats.as_object();
    // Address keys in the order the sockets were opened, then any /stats has
    // that /capturers did not (a change between the two requests).
    let mut keys: Vec<&str> = caps.iter().map(|c| text(c, "key")).collect();
    for k in groups.into_iter().flat_map(|g| g.keys()) {
        if !keys.contains(&k.as_str()) {
            keys.push(k);
        }
    }
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut any_restored = false;
    for key in keys {
        let cap = caps.iter().find(|c| text(c, "key") == key);
        let Some(entries) = groups.and_then(|g| g.get(key)).and_then(Value::as_array) else {
            continue;
        };
        let conn_type = cap.map_or("", |c| text(c, "conn_type"));
        let address = match cap {
            Some(c) => address_text(conn_type, &c["address"]),
            None => key.to_string(),
        };
        for e in entries {
            let name = text(e, "name");
            let mut state = text(e, "state").to_string();
            if let Some(reason) = e.get("degraded_reason").and_then(Value::as_str) {
                notes.push(format!("{name}: degraded: {reason}"));
            }
            let socket = cap.map_or("", |c| text(c, "state"));
            if conn_type == "tcp" || e.get("connected").is_some() {
                let connection = match socket {
                    "" if e["connected"] == Value::Bool(true) => "connected",
                    "" => "not connected",
                    s => s,
                };
                state = format!("{state}, {connection}");
                if connection != "connected" {
                    let why = cap
                        .and_then(|c| c.get("error"))
                        .or_else(|| e.get("last_error"))
                        .and_then(Value::as_str);
                    let next = cap
                        .and_then(|c| c.get("next_attempt_at"))
                        .and_then(Value::as_str);
                    let mut note = format!("{name}: {connection}");
                    if let Some(why) = why {
                        note.push_str(&format!(": {why}"));
                    }
                    if let Some(next) = next {
                        note.push_str(&format!(" (next attempt at {next})"));
                    }
                    notes.push(note);
                }
            } else if socket == "error" {
                state = format!("{state}, socket error");
                if let Some(why) = cap.and_then(|c| c.get("error")).and_then(Value::as_str) {
                    notes.push(format!("{name}: socket error: {why}"));
                }
            }
            if let Some(note) = ship_note(name, &e["ship"]) {
                notes.push(note);
            }
            let file = e.get("current_file").and_then(Value::as_str);
            // Not in the config file: saved over the API before the last start.
            let restored = text(e, "origin") == "restored";
            any_restored |= restored;
            rows.push(vec![
                if restored {
                    format!("{name} (restored)")
                } else {
                    name.to_string()
                },
                address.clone(),
                state,
                number(e, "packets").to_string(),
                human_rate(
                    e.get("rate_bytes_per_s")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0),
                ),
                age(
                    e.get("last_packet_at")
                        .and_then(Value::as_str)
                        .and_then(parse_rfc3339),
                    now,
                ),
                number(e, "records_lost").to_string(),
                number(e, "kernel_drops").to_string(),
                // Telemetry units the sequence counters say never arrived.
                e.pointer("/sequence/missing")
                    .and_then(Value::as_u64)
                    .map_or_else(|| "-".into(), |n| n.to_string()),
                if file.is_some() {
                    human_bytes(number(e, "current_file_bytes"))
                } else {
                    "-".into()
                },
                file.unwrap_or("(none open)").to_string(),
            ]);
        }
    }
    if rows.is_empty() {
        return "no handlers (add one with: bsc add NAME LOC PORT udp)\n".into();
    }
    use Align::{Left, Right};
    let mut out = table(
        &[
            ("HANDLER", Left),
            ("ADDRESS", Left),
            ("STATE", Left),
            ("PACKETS", Right),
            ("RATE", Right),
            ("LAST PACKET", Right),
            ("LOST", Right),
            ("DROPS", Right),
            ("MISSING", Right),
            ("SIZE", Right),
            ("FILE", Left),
        ],
        &rows,
    );
    if any_restored {
        notes.push(
            "(restored): added over the API before bsc last started, restored from ROOT/.bsc/handlers.json, not in the config file; `bsc stop NAME` removes it for good".into(),
        );
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

/// The line `bsc status` adds for a handler whose files wait to ship (store and
/// forward), or that lost some before they shipped.
fn ship_note(name: &str, ship: &Value) -> Option<String> {
    let pending = number(ship, "pending_files");
    let dropped = number(ship, "dropped");
    if pending == 0 && dropped == 0 {
        return None;
    }
    let mut note = format!(
        "{name}: {} ({}) {} to ship",
        crate::log::count(pending, "file"),
        human_bytes(number(ship, "pending_bytes")),
        if pending == 1 { "waits" } else { "wait" }
    );
    if let Some(age) = ship.get("oldest_pending_age_s").and_then(Value::as_u64) {
        note.push_str(&format!(", the oldest closed {}", seconds_text(age)));
    }
    if let Some(e) = ship.get("last_error").and_then(Value::as_str) {
        if ship
            .get("next_attempt_at")
            .and_then(Value::as_str)
            .is_some()
        {
            note.push_str(&format!("; failing: {e}"));
        }
    }
    if let Some(next) = ship.get("next_attempt_at").and_then(Value::as_str) {
        note.push_str(&format!(" (next attempt at {next})"));
    }
    if dropped > 0 {
        note.push_str(&format!(
            "; {dropped} dropped before they shipped (disk budget or deleted)"
        ));
    }
    Some(note)
}

/// A number of seconds as a person reads it (`42s ago`, `5m ago`, `3h ago`).
fn seconds_text(s: u64) -> String {
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// A record time as a person reads it: to the second, `-` when unknown.
fn short_time(v: &Value) -> String {
    match v.as_str().and_then(parse_rfc3339) {
        Some(t) => {
            let d = t.to_datetime();
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            )
        }
        None => "-".into(),
    }
}

/// `bsc files`: per handler of that name, its files, oldest first, the open one last.
pub fn file_list(answer: &Value) -> String {
    let mut out = String::new();
    for (i, h) in answer.as_array().into_iter().flatten().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "{} ({})\n",
            text(h, "name"),
            address_text("", &h["address"])
        ));
        let files = h["files"].as_array().map_or(&[][..], Vec::as_slice);
        if files.is_empty() {
            out.push_str("  no files yet\n");
            continue;
        }
        let rows: Vec<Vec<String>> = files
            .iter()
            .map(|f| {
                vec![
                    text(f, "state").to_string(),
                    human_bytes(number(f, "bytes")),
                    f.get("records")
                        .and_then(Value::as_u64)
                        .map_or("?".into(), |n| n.to_string()),
                    short_time(&f["first_record_at"]),
                    short_time(&f["last_record_at"]),
                    text(f, "path").to_string(),
                ]
            })
            .collect();
        use Align::{Left, Right};
        let t = table(
            &[
                ("STATE", Left),
                ("SIZE", Right),
                ("RECORDS", Right),
                ("FIRST RECORD (UTC)", Left),
                ("LAST RECORD (UTC)", Left),
                ("PATH", Left),
            ],
            &rows,
        );
        for line in t.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(token: Option<&str>) -> Target {
        Target {
            host: "127.0.0.1".into(),
            port: 8080,
            token: token.map(str::to_string),
        }
    }

    #[test]
    fn server_text_forms() {
        assert_eq!(parse_server("10.0.0.2:9000"), Ok(("10.0.0.2".into(), 9000)));
        assert_eq!(parse_server("[::1]:8080"), Ok(("::1".into(), 8080)));
        assert_eq!(
            parse_server("http://localhost:8080/"),
            Ok(("localhost".into(), 8080))
        );
        assert!(parse_server("localhost").is_err());
        assert!(parse_server(":8080").is_err());
        assert!(parse_server("h:0").is_err());
        assert!(parse_server("h:99999").is_err());
    }

    #[test]
    fn target_resolution_order() {
        let config = ServerConfig {
            host: "0.0.0.0".into(),
            port: 9100,
            token: Some("from-config".into()),
            allow_unauthenticated: false,
            allowed_hosts: Vec::new(),
        };
        let t = |s, se, tk, te, c| resolve_target(s, se, tk, te, c).unwrap();
        assert_eq!(
            t(
                Some("a:1"),
                Some("b:2"),
                Some("x"),
                Some("y"),
                Some(&config)
            ),
            Target {
                host: "a".into(),
                port: 1,
                token: Some("x".into())
            }
        );
        assert_eq!(
            t(None, Some("b:2"), None, Some("y"), Some(&config)),
            Target {
                host: "b".into(),
                port: 2,
                token: Some("y".into())
            }
        );
        assert_eq!(
            t(None, Some(""), None, None, Some(&config)),
            Target {
                host: "127.0.0.1".into(),
                port: 9100,
                token: Some("from-config".into())
            }
        );
        assert_eq!(
            t(None, None, None, None, None),
            Target {
                host: "127.0.0.1".into(),
                port: 8080,
                token: None
            }
        );
        let e = resolve_target(None, Some("nonsense"), None, None, None).unwrap_err();
        assert!(e.starts_with("BSC_SERVER: "), "{e}");
        assert_eq!(target(None).to_string(), "127.0.0.1:8080");
        let v6 = Target {
            host: "::1".into(),
            port: 1,
            token: None,
        };
        assert_eq!(v6.to_string(), "[::1]:1");
    }

    fn add_request() -> AddRequest {
        AddRequest {
            name: "tlm".into(),
            loc: "".into(),
            port: "8500".into(),
            conn_type: "udp".into(),
            rotate_log: true,
            rotate_log_index: "day".into(),
            rotate_log_delta: 1,
            file_name_pattern: "%Y-%m-%d-%H-%M-%S-{name}.pcap".into(),
            path: Some("vc 1".into()),
            set: vec![("mission".into(), "a&b=c".into())],
        }
    }

    #[test]
    fn add_is_a_form_post_with_ait_defaults_and_encoded_values() {
        let call = Action::Add(add_request()).call();
        assert_eq!(call.method, "POST");
        assert_eq!(call.path, "/tlm/start");
        assert_eq!(
            call.body(),
            "loc=&port=8500&conn_type=udp&rotate_log=true&rotate_log_index=day&rotate_log_delta=1\
             &file_name_pattern=%25Y-%25m-%25d-%25H-%25M-%25S-%7Bname%7D.pcap&path=vc%201&mission=a%26b%3Dc"
        );
        // The server's own decoder reads back exactly what was meant.
        let fields = crate::http::form::urlencoded(&call.body()).unwrap();
        assert_eq!(fields["file_name_pattern"], "%Y-%m-%d-%H-%M-%S-{name}.pcap");
        assert_eq!(fields["mission"], "a&b=c");
        assert_eq!(fields["path"], "vc 1");
        assert_eq!(fields["loc"], "");
    }

    #[test]
    fn encoded_request_has_auth_type_and_length() {
        let call = Action::Rotate {
            name: "pass".into(),
            metadata: vec![("pass".into(), "1234".into())],
        }
        .call();
        let text = String::from_utf8(call.encode(&target(Some("s3cret")))).unwrap();
        assert!(
            text.starts_with("POST /pass/rotate HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nAuthorization: Bearer s3cret\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nContent-Type: application/x-www-form-urlencoded\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(
            text.ends_with("\r\nContent-Length: 9\r\n\r\npass=1234"),
            "{text}"
        );
        // The server's parser frames it as one whole request.
        match crate::http::request::parse(text.as_bytes()) {
            crate::http::request::Parsed::Complete(req, n) => {
                assert_eq!(n, text.len());
                assert_eq!(req.segments(), ["pass", "rotate"]);
                assert_eq!(req.header("authorization"), Some("Bearer s3cret"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bodiless_calls() {
        let get =
            String::from_utf8(Action::Status { json: false }.call().encode(&target(None))).unwrap();
        assert!(get.starts_with("GET /stats HTTP/1.1\r\n"));
        assert!(
            !get.contains("Content-Length") && !get.contains("Authorization"),
            "{get}"
        );
        let stop = Action::Stop {
            name: "a b/..".into(),
        }
        .call();
        assert_eq!(
            (stop.method, stop.path.as_str()),
            ("DELETE", "/a%20b%2F../stop")
        );
        assert!(String::from_utf8(stop.encode(&target(None)))
            .unwrap()
            .contains("Content-Length: 0\r\n"));
        assert_eq!(
            Action::Stop { name: "..".into() }.call().path,
            "/%2E%2E/stop"
        );
        let files = Action::Files {
            name: "tlm".into(),
            json: false,
        }
        .call();
        assert_eq!((files.method, files.path.as_str()), ("GET", "/tlm/files"));
    }

    #[test]
    fn stop_capturer_fields() {
        let c = Action::StopCapturer {
            loc: "".into(),
            port: "8500".into(),
            conn_type: Some("udp".into()),
        }
        .call();
        assert_eq!((c.method, c.path.as_str()), ("DELETE", "/capturers"));
        assert_eq!(c.body(), "loc=&port=8500&conn_type=udp");
        let c = Action::StopCapturer {
            loc: "::1".into(),
            port: "1".into(),
            conn_type: None,
        }
        .call();
        assert_eq!(c.body(), "loc=%3A%3A1&port=1");
    }

    #[test]
    fn key_values_and_booleans() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("pass="), Ok(("pass".into(), "".into())));
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("novalue").is_err());
        assert_eq!(parse_bool("False"), Ok(false));
        assert_eq!(parse_bool("1"), Ok(true));
        assert!(parse_bool("yes please").is_err());
    }

    #[test]
    fn chunked_answers_are_read_whole_once_their_last_chunk_arrives() {
        let whole = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\na;x=1\r\n\":[1,2,3]}\r\n0\r\n\r\n";
        assert_eq!(
            parse_answer(whole, false),
            Ok(Parsed::Whole(Answer {
                status: 200,
                body: b"{\"a\":[1,2,3]}".to_vec()
            }))
        );
        for cut in [40, whole.len() - 3, whole.len() - 1] {
            assert_eq!(
                parse_answer(&whole[..cut], false),
                Ok(Parsed::Partial),
                "{cut}"
            );
            assert!(parse_answer(&whole[..cut], true).is_err(), "{cut}");
        }
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(parse_answer(bad, false).is_err());
        let long = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n";
        assert!(parse_answer(long, false).is_err());
    }

    #[test]
    fn answers_are_framed_by_content_length() {
        let whole =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]";
        assert_eq!(
            parse_answer(whole, false),
            Ok(Parsed::Whole(Answer {
                status: 200,
                body: b"[]".to_vec()
            }))
        );
        assert_eq!(
            parse_answer(&whole[..whole.len() - 1], false),
            Ok(Parsed::Partial)
        );
        assert!(parse_answer(&whole[..whole.len() - 1], true).is_err());
        assert_eq!(parse_answer(b"HTTP/1.1 2", false), Ok(Parsed::Partial));
        assert!(parse_answer(b"", true)
            .unwrap_err()
            .contains("without an answer"));
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
        // Without a length the body runs to the end.
        assert_eq!(
            parse_answer(b"HTTP/1.0 200 OK\r\n\r\n{}", true),
            Ok(Parsed::Whole(Answer {
                status: 200,
                body: b"{}".to_vec()
            }))
        );
    }

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
    fn answers_are_made_safe_for_a_terminal() {
        let hostile = "h\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{9b}31m\u{7f}";
        let escaped = r"h\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{9b}31m\u{7f}";
        let safe = terminal_safe(json!({hostile: [hostile, 1, {"k": hostile}], "n": null}));
        assert_eq!(
            safe,
            json!({escaped: [escaped, 1, {"k": escaped}], "n": null})
        );
        // --json: the same JSON, nothing a terminal acts on.
        let body = format!(
            "{{\"a\":\r\n\t{}}}",
            serde_json::to_string(hostile).unwrap()
        );
        let out = terminal_safe_json(&body);
        assert!(
            out.chars()
                .all(|c| !c.is_control() || c == '\n' || c == '\t'),
            "{out:?}"
        );
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, json!({"a": hostile}));
        // A refusal's text too.
        let refused = check_answer(
            &Answer {
                status: 400,
                body: serde_json::to_vec(&json!({"error": hostile})).unwrap(),
            },
            "h:1",
        )
        .unwrap_err();
        assert_eq!(refused.to_string(), format!("refused (400): {escaped}"));
        let ok = check_answer(
            &Answer {
                status: 200,
                body: serde_json::to_vec(&json!([hostile])).unwrap(),
            },
            "h:1",
        );
        assert_eq!(ok, Ok(json!([escaped])));
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(29_628), "28.9 KiB");
        assert_eq!(human_bytes(23_400_000), "22.3 MiB");
        assert_eq!(human_bytes(1_200_000_000), "1.12 GiB");
        assert_eq!(human_rate(0.0), "0 B/s");
        assert_eq!(human_rate(f64::NAN), "0 B/s");
        assert_eq!(human_rate(850.4), "850 B/s");
        assert_eq!(human_rate(37_000_000.0), "35.3 MiB/s");
    }

    #[test]
    fn ages_and_times() {
        let now = UnixMicros(1_795_860_000_000_000); // 2026-11-28T10:00:00Z
        let ago = |s: i64| age(Some(now.plus_micros(-s * 1_000_000)), now);
        assert_eq!(age(None, now), "never");
        assert_eq!(ago(3), "3s ago");
        assert_eq!(ago(-5), "0s ago");
        assert_eq!(ago(125), "2m ago");
        assert_eq!(ago(7300), "2h ago");
        assert_eq!(ago(3 * 86_400 + 5), "3d ago");
        assert_eq!(
            parse_rfc3339("2026-11-28T10:00:00.000123Z"),
            Some(now.plus_micros(123))
        );
        assert_eq!(parse_rfc3339("2026-11-28T10:00:00Z"), Some(now));
        assert_eq!(
            parse_rfc3339("2026-11-28T10:00:00.5Z"),
            Some(now.plus_micros(500_000))
        );
        for bad in [
            "",
            "2026-11-28",
            "2026-13-01T00:00:00Z",
            "2026-11-28T10:00:00.x1Z",
            "2026-11-28T10:00:00+01:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        // Round trip with bsc's own writer.
        assert_eq!(
            parse_rfc3339(&now.plus_micros(42).to_rfc3339()),
            Some(now.plus_micros(42))
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(address_text("udp", &json!(["", 8500])), "udp *:8500");
        assert_eq!(
            address_text("tcp", &json!(["10.0.0.5", 9000])),
            "tcp 10.0.0.5:9000"
        );
        assert_eq!(address_text("udp", &json!(["::", 8500])), "udp [::]:8500");
        assert_eq!(
            address_text("ethernet", &json!(["eth0", 0x88b5])),
            "ethernet eth0 type 0x88b5"
        );
        assert_eq!(
            address_text("ethernet", &json!(["eth0", 0])),
            "ethernet eth0 all types"
        );
        assert_eq!(address_text("", &json!(["127.0.0.1", 1])), "127.0.0.1:1");
    }

    fn stats_fixture() -> (Value, Value) {
        let stats = json!({
            "['', 8500]": [
                {"name": "tlm", "packets": 1234, "rate_bytes_per_s": 1500.0,
                 "last_packet_at": "2026-11-28T09:59:57.000000Z",
                 "current_file": "/data/2026-11-28-tlm.pcap", "current_file_bytes": 2_500_000,
                 "records_lost": 0, "kernel_drops": 7, "state": "ok",
                 "sequence": {"gaps": 3, "missing": 12}},
                {"name": "tlm-copy", "packets": 0, "rate_bytes_per_s": 0.0, "last_packet_at": null,
                 "current_file": null, "current_file_bytes": 0,
                 "records_lost": 3, "kernel_drops": 7, "state": "degraded",
                 "degraded_reason": "cannot write: no space left on device"}
            ],
            "['10.0.0.5', 9000]": [
                {"name": "ground", "packets": 10, "rate_bytes_per_s": 0.0,
                 "last_packet_at": "2026-11-28T08:00:00.000000Z",
                 "current_file": "/data/ground.pcap", "current_file_bytes": 512,
                 "records_lost": 0, "kernel_drops": 0, "state": "ok",
                 "connected": false, "reconnects": 4, "last_error": "connection refused",
                 "last_connected_at": null}
            ]
        });
        // Opened in this order: tcp first.
        let capturers = json!([
            {"address": ["10.0.0.5", 9000], "key": "['10.0.0.5', 9000]", "conn_type": "tcp",
             "state": "backoff", "next_attempt_at": "2026-11-28T10:00:02.000000Z",
             "error": "connection refused", "handlers": ["ground"]},
            {"address": ["", 8500], "key": "['', 8500]", "conn_type": "udp",
             "local_address": "0.0.0.0:8500", "state": "listening", "handlers": ["tlm", "tlm-copy"]}
        ]);
        (stats, capturers)
    }

    #[test]
    fn status_table_reads_at_a_glance() {
        let (stats, capturers) = stats_fixture();
        let now = UnixMicros(1_795_860_000_000_000);
        let out = status_table(&stats, &capturers, now);
        let want = "\
HANDLER   ADDRESS            STATE        PACKETS        RATE  LAST PACKET  LOST  DROPS  MISSING      SIZE  FILE
ground    tcp 10.0.0.5:9000  ok, backoff       10       0 B/s       2h ago     0      0        -     512 B  /data/ground.pcap
tlm       udp *:8500         ok              1234  1.46 KiB/s       3s ago     0      7       12  2.38 MiB  /data/2026-11-28-tlm.pcap
tlm-copy  udp *:8500         degraded           0       0 B/s        never     3      7        -         -  (none open)

ground: backoff: connection refused (next attempt at 2026-11-28T10:00:02.000000Z)
tlm-copy: degraded: cannot write: no space left on device
";
        assert_eq!(out, want, "\n{out}");
    }

    #[test]
    fn status_shows_a_ship_backlog() {
        let (mut stats, capturers) = stats_fixture();
        stats["['', 8500]"][0]["ship"] = json!({"pending_files": 12, "pending_bytes": 3_400_000,
            "oldest_pending_age_s": 330, "shipped": 4, "failures": 9, "dropped": 0,
            "last_error": "exit status: 1", "next_attempt_at": "2026-11-28T10:00:40.000000Z",
            "running": false});
        stats["['', 8500]"][1]["ship"] = json!({"pending_files": 0, "pending_bytes": 0,
            "oldest_pending_age_s": null, "shipped": 4, "failures": 0, "dropped": 0,
            "last_error": null, "next_attempt_at": null, "running": false});
        let out = status_table(&stats, &capturers, UnixMicros(1_795_860_000_000_000));
        assert!(
            out.contains("tlm: 12 files (3.24 MiB) wait to ship, the oldest closed 5m ago; failing: exit status: 1 (next attempt at 2026-11-28T10:00:40.000000Z)\n"),
            "{out}"
        );
        assert!(
            !out.contains("tlm-copy: 0 files"),
            "nothing waits: no line\n{out}"
        );
        stats["['', 8500]"][1]["ship"]["dropped"] = json!(2);
        let out = status_table(&stats, &capturers, UnixMicros(1_795_860_000_000_000));
        assert!(
            out.contains("tlm-copy: 0 files (0 B) wait to ship; 2 dropped"),
            "{out}"
        );
    }

    #[test]
    fn status_without_capturers_still_shows_tcp_state() {
        let (stats, _) = stats_fixture();
        let out = status_table(&stats, &json!([]), UnixMicros(1_795_860_000_000_000));
        assert!(out.contains("ok, not connected"), "{out}");
        assert!(
            out.contains("ground: not connected: connection refused"),
            "{out}"
        );
        assert!(out.contains("['', 8500]"), "{out}");
    }

    #[test]
    fn empty_bsc_says_so() {
        assert_eq!(
            status_table(&json!({}), &json!([]), UnixMicros(0)),
            "no handlers (add one with: bsc add NAME LOC PORT udp)\n"
        );
    }

    #[test]
    fn file_list_per_handler() {
        let answer = json!([
            {"name": "tlm", "address": ["", 8500], "files": [
                {"path": "/data/a.pcap", "bytes": 1_000_024, "records": 1000,
                 "first_record_at": "2026-11-28T09:00:00.000001Z", "last_record_at": "2026-11-28T09:59:59.999999Z",
                 "state": "closed"},
                {"path": "/data/old.pcap", "bytes": 24, "records": null,
                 "first_record_at": null, "last_record_at": null, "state": "closed"},
                {"path": "/data/b.pcap", "bytes": 5000, "records": 12,
                 "first_record_at": "2026-11-28T10:00:00.000000Z", "last_record_at": "2026-11-28T10:00:03.000000Z",
                 "state": "open"}
            ]},
            {"name": "tlm", "address": ["127.0.0.1", 8600], "files": []}
        ]);
        let want = "\
tlm (*:8500)
  STATE        SIZE  RECORDS  FIRST RECORD (UTC)   LAST RECORD (UTC)    PATH
  closed  976.6 KiB     1000  2026-11-28 09:00:00  2026-11-28 09:59:59  /data/a.pcap
  closed       24 B        ?  -                    -                    /data/old.pcap
  open     4.88 KiB       12  2026-11-28 10:00:00  2026-11-28 10:00:03  /data/b.pcap

tlm (127.0.0.1:8600)
  no files yet
";
        let out = file_list(&answer);
        assert_eq!(out, want, "\n{out}");
    }

    #[test]
    fn one_line_summaries() {
        let entry = json!({"handler": {"name": "tlm", "log_dir": "/data",
                           "file_name_pattern": "%Y-%m-%d-{name}.pcap"},
                           "log_file_path": "/data/2026-12-07-tlm.pcap",
                           "conn_type": "udp", "address": ["127.0.0.1", 8500]});
        assert_eq!(
            format_added(&entry),
            "added tlm (udp 127.0.0.1:8500): files go to /data/ as %Y-%m-%d-{name}.pcap; the first opens with the first unit\n"
        );
        let nested = json!({"handler": {"name": "vc", "log_dir": "/data/vc1/2026/341",
                            "file_name_pattern": "%Y/%j/{name}.pcap"},
                            "conn_type": "tcp", "address": ["10.0.0.5", 9000]});
        assert_eq!(
            format_added(&nested),
            "added vc (tcp 10.0.0.5:9000): files go to /data/vc1/ as %Y/%j/{name}.pcap; the first opens with the first unit\n"
        );
        assert_eq!(
            format_stopped(&json!([entry])),
            "stopped tlm (udp 127.0.0.1:8500)\n"
        );
        assert_eq!(
            format_rotated(&json!([{"name": "tlm", "address": ["", 8500],
                "previous_file": "/d/1.pcap", "log_file_path": "/d/2.pcap"},
                {"name": "tlm", "address": ["", 8501], "previous_file": null, "log_file_path": "/d/3.pcap"}])),
            "tlm (*:8500): closed /d/1.pcap; next file /d/2.pcap\ntlm (*:8501): no file was open; next file /d/3.pcap\n"
        );
        assert_eq!(
            format_capturer_stopped(&json!({"address": ["", 8500], "key": "['', 8500]",
                "conn_type": "udp", "stopped": [entry]})),
            "closed udp *:8500; stopped tlm\n"
        );
        assert_eq!(
            format_capturer_stopped(
                &json!({"address": ["", 1], "conn_type": "udp", "stopped": []})
            ),
            "closed udp *:1; stopped no handlers\n"
        );
    }
}
