//! The `bsc` client commands, black-box: a real bsc on free loopback ports, and the
//! real binary as its client (`bsc add/status/files/rotate/stop/stop-capturer`),
//! checked by what an operator sees (stdout, the one stderr line, the exit status)
//! and by what bsc did (its API through the harness, its files).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::{json, Value};

/// Runs `bsc ARGS` as a client, with `env` and without the caller's BSC_* variables.
fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bsc"));
    cmd.args(args)
        .env_remove("BSC_SERVER")
        .env_remove("BSC_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    // The client's own timeouts (10 s connect, 30 s answer) bound this.
    cmd.output().expect("run the bsc client")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit status, showing both streams when it is another.
fn expect_code(o: &Output, code: i32, what: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: stdout {:?}, stderr {:?}",
        stdout(o),
        stderr(o)
    );
}

/// Asserts a refusal: exit 1 and exactly one stderr line starting `bsc: refused (STATUS): `.
fn expect_refused(o: &Output, status: u16, what: &str) -> String {
    expect_code(o, 1, what);
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "{what}: one line: {err:?}");
    assert!(
        err.starts_with(&format!("bsc: refused ({status}): ")),
        "{what}: {err:?}"
    );
    err
}

fn start_bsc(dir: &TempDir) -> Bsc {
    Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap")}}),
    )
}

/// The words of the table row whose first column is `name`.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{table}"))
}

#[test]
fn add_capture_status_files_rotate_stop() {
    let dir = TempDir::new("client-flow");
    let bsc = start_bsc(&dir);
    let server = format!("127.0.0.1:{}", bsc.http_port);
    let s = ["--server", server.as_str()];
    let port = free_udp_port();
    let port_text = port.to_string();

    // An empty bsc says so.
    let o = cli(&["status", s[0], s[1]], &[]);
    expect_code(&o, 0, "status of an empty bsc");
    assert!(stdout(&o).starts_with("no handlers"), "{}", stdout(&o));

    // add: AIT's positional arguments; --opt=value and --set for metadata.
    let o = cli(
        &[
            "add",
            "tlm",
            "127.0.0.1",
            &port_text,
            "udp",
            "--rotate-log",
            "false",
            "--file-name-pattern={name}-{pass}.pcap",
            "--set",
            "pass=1",
            s[0],
            s[1],
        ],
        &[],
    );
    expect_code(&o, 0, "add");
    let first = dir.path().join("cap").join("tlm-1.pcap");
    // No file exists yet: the folder and the pattern, not a name.
    assert_eq!(
        stdout(&o),
        format!(
            "added tlm (udp 127.0.0.1:{port}): files go to {}/ as {{name}}-{{pass}}.pcap; the first opens with the first unit\n",
            dir.path().join("cap").display()
        )
    );
    assert!(!first.exists());
    let (code, all) = bsc.get("/");
    assert_eq!(code, 200);
    let entries = all[format!("['127.0.0.1', {port}]")].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["handler"]["name"], "tlm");
    assert_eq!(entries[0]["handler"]["rotate_log"], false);
    assert_eq!(entries[0]["handler"]["pass"], "1");

    // The same handler again: bsc's 409, as one line, exit 1.
    let o = cli(
        &["add", "tlm", "127.0.0.1", &port_text, "udp", s[0], s[1]],
        &[],
    );
    let err = expect_refused(&o, 409, "duplicate add");
    assert!(err.contains("tlm"), "{err}");

    // Capture 20 datagrams sent to 127.0.0.1.
    let tx = sender(port);
    for i in 0..20u64 {
        tx.send(&seq_payload(i)).unwrap();
    }
    wait_until("20 packets in /stats", || {
        bsc.get("/stats").1[format!("['127.0.0.1', {port}]")][0]["packets"] == 20
    });

    let o = cli(&["status", s[0], s[1]], &[]);
    expect_code(&o, 0, "status");
    let table = stdout(&o);
    let header = table.lines().next().unwrap();
    for col in [
        "HANDLER",
        "ADDRESS",
        "STATE",
        "PACKETS",
        "RATE",
        "LAST PACKET",
        "LOST",
        "DROPS",
        "SIZE",
        "FILE",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let words = row(&table, "tlm");
    assert_eq!(
        words[..5],
        ["tlm", "udp", &format!("127.0.0.1:{port}"), "ok", "20"],
        "{table}"
    );
    assert!(table.contains("s ago"), "{table}");
    assert_eq!(words.last(), Some(&first.to_str().unwrap()), "{table}");

    // --json is bsc's /stats as is, for scripts.
    let o = cli(&["status", "--json", s[0], s[1]], &[]);
    expect_code(&o, 0, "status --json");
    let stats: Value = serde_json::from_slice(&o.stdout).expect("status --json is JSON");
    assert_eq!(stats[format!("['127.0.0.1', {port}]")][0]["packets"], 20);

    // files: the open file with its 20 records.
    let o = cli(&["files", "tlm", s[0], s[1]], &[]);
    expect_code(&o, 0, "files");
    let list = stdout(&o);
    assert!(
        list.starts_with(&format!("tlm (127.0.0.1:{port})\n")),
        "{list}"
    );
    let open = row(&list, "open");
    assert_eq!(open[3], "20", "{list}");
    assert_eq!(open.last(), Some(&first.to_str().unwrap()), "{list}");

    // rotate with metadata: the file closes, the next is named from pass=2.
    let o = cli(&["rotate", "tlm", "pass=2", s[0], s[1]], &[]);
    expect_code(&o, 0, "rotate");
    let second = dir.path().join("cap").join("tlm-2.pcap");
    assert_eq!(
        stdout(&o),
        format!(
            "tlm (127.0.0.1:{port}): closed {}; next file {}\n",
            first.display(),
            second.display()
        )
    );
    let (_, _, records) = read_pcap(&first);
    assert_eq!(records.len(), 20);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.data == seq_payload(i as u64)));
    tx.send(&seq_payload(20)).unwrap();
    wait_until("a record in the next file", || count_records(&second) == 1);

    let o = cli(&["files", "tlm", s[0], s[1]], &[]);
    expect_code(&o, 0, "files after rotate");
    let list = stdout(&o);
    let closed = row(&list, "closed");
    assert_eq!(closed[3], "20", "{list}");
    assert_eq!(closed.last(), Some(&first.to_str().unwrap()), "{list}");
    assert_eq!(
        row(&list, "open").last(),
        Some(&second.to_str().unwrap()),
        "{list}"
    );
    let o = cli(&["files", "tlm", "--json", s[0], s[1]], &[]);
    expect_code(&o, 0, "files --json");
    let files: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(files[0]["files"].as_array().unwrap().len(), 2);

    // stop: gone from bsc; stopping again is bsc's 404.
    let o = cli(&["stop", "tlm", s[0], s[1]], &[]);
    expect_code(&o, 0, "stop");
    assert_eq!(stdout(&o), format!("stopped tlm (udp 127.0.0.1:{port})\n"));
    assert_eq!(bsc.get("/tlm/config").1, json!([]));
    assert!(
        udp_port_is_free(port),
        "the socket closed with its last handler"
    );
    let o = cli(&["stop", "tlm", s[0], s[1]], &[]);
    let err = expect_refused(&o, 404, "stop unknown");
    assert!(err.contains("no handler named \"tlm\""), "{err}");
    let o = cli(&["files", "nothere", s[0], s[1]], &[]);
    expect_refused(&o, 404, "files of an unknown name");
}

#[test]
fn stop_capturer_closes_the_socket_and_its_handlers() {
    let dir = TempDir::new("client-capturer");
    let bsc = start_bsc(&dir);
    let server = format!("--server=127.0.0.1:{}", bsc.http_port);
    let port = free_udp_port();
    let port_text = port.to_string();
    for name in ["a", "b"] {
        let o = cli(&[&server, "add", name, "127.0.0.1", &port_text, "udp"], &[]);
        expect_code(&o, 0, "add");
    }
    // Another conn_type than the socket's is refused and changes nothing.
    let o = cli(
        &["stop-capturer", "127.0.0.1", &port_text, "tcp", &server],
        &[],
    );
    let err = expect_refused(&o, 404, "wrong conn_type");
    assert!(err.contains("it is udp"), "{err}");
    assert_eq!(bsc.get("/capturers").1.as_array().unwrap().len(), 1);

    let o = cli(
        &["stop-capturer", "127.0.0.1", &port_text, "udp", &server],
        &[],
    );
    expect_code(&o, 0, "stop-capturer");
    assert_eq!(
        stdout(&o),
        format!("closed udp 127.0.0.1:{port}; stopped a, b\n")
    );
    assert_eq!(bsc.get("/capturers").1, json!([]));
    assert_eq!(bsc.get("/").1, json!({}));
    assert!(udp_port_is_free(port));
    // Without a conn_type, at an address nobody captures: 404.
    let o = cli(&["stop-capturer", "127.0.0.1", &port_text, &server], &[]);
    expect_refused(&o, 404, "stop-capturer again");
}

#[test]
fn usage_errors_exit_2_and_help_describes_the_sources() {
    for (args, needle) in [
        (&["add", "onlyname"][..], "Required positional arguments"),
        (&["add", "a", "", "notaport", "udp"][..], "port"),
        (&["rotate", "tlm", "notkeyvalue"][..], "is not KEY=VALUE"),
        (
            &["add", "a", "", "1", "udp", "--rotate-log", "maybe"][..],
            "is not true or false",
        ),
        (
            &["status", "--server", "nonsense"][..],
            "--server: server \"nonsense\": give HOST:PORT",
        ),
        (&["status", "--server"][..], "--server: needs a value"),
        (&["frobnicate"][..], "frobnicate"),
        (&["check"][..], "bsc check --config FILE"),
    ] {
        let o = cli(args, &[]);
        expect_code(&o, 2, &format!("{args:?}"));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    let o = cli(&["status"], &[("BSC_SERVER", "no-port")]);
    expect_code(&o, 2, "a bad BSC_SERVER");
    assert!(
        stderr(&o).starts_with("bsc: BSC_SERVER: "),
        "{}",
        stderr(&o)
    );

    let o = cli(&["--help"], &[]);
    expect_code(&o, 0, "--help");
    let help = stdout(&o);
    let commands = [
        "check",
        "add",
        "stop",
        "rotate",
        "stop-capturer",
        "status",
        "files",
    ];
    let words = [
        "UDP",
        "TCP",
        "Ethernet",
        "--server",
        "--token",
        "-c, --config",
    ];
    for word in commands.iter().chain(&words) {
        assert!(help.contains(word), "{word} in --help:\n{help}");
    }
    let examples = help.split("Examples:").nth(1).expect("an Examples section");
    for cmd in commands {
        assert!(
            examples.contains(&format!("bsc {cmd} ")),
            "an example of {cmd}:\n{help}"
        );
    }
    let o = cli(&["add", "--help"], &[]);
    expect_code(&o, 0, "add --help");
    assert!(stdout(&o).contains("--rotate-log-index"));
}

#[test]
fn an_unreachable_bsc_exits_3_and_says_where_it_looked() {
    // Bound and released: nobody listens there.
    let port = free_tcp_port();
    let o = cli(&["status", "--server", &format!("127.0.0.1:{port}")], &[]);
    expect_code(&o, 3, "nobody listens");
    assert_eq!(
        stderr(&o),
        format!("bsc: cannot reach bsc at 127.0.0.1:{port}: connection refused (is it running? set --server or BSC_SERVER)\n")
    );
    // BSC_SERVER is used when --server is not given.
    let o = cli(
        &["stop", "tlm"],
        &[("BSC_SERVER", &format!("127.0.0.1:{port}"))],
    );
    expect_code(&o, 3, "nobody listens at BSC_SERVER");
    assert!(
        stderr(&o).contains(&format!("at 127.0.0.1:{port}: connection refused")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn token_from_flag_env_or_config_and_server_from_config() {
    let dir = TempDir::new("client-token");
    let http = free_tcp_port();
    let bsc = Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap"),
                 "manager_server": {"host": "127.0.0.1", "port": http, "token": "s3cret"}}}),
    );
    let server = format!("127.0.0.1:{http}");
    let o = cli(&["status", "--server", &server], &[]);
    let err = expect_refused(&o, 401, "no token");
    assert!(err.contains("--token or BSC_TOKEN"), "{err}");
    let o = cli(&["status", "--server", &server, "--token", "wrong"], &[]);
    expect_refused(&o, 401, "wrong token");

    let o = cli(&["status", "--server", &server, "--token", "s3cret"], &[]);
    expect_code(&o, 0, "--token");
    assert!(stdout(&o).starts_with("no handlers"));
    let o = cli(&["--server", &server, "status"], &[("BSC_TOKEN", "s3cret")]);
    expect_code(&o, 0, "BSC_TOKEN");

    // The config file gives both the server and the token.
    let config = dir.path().join("bsc.json");
    let port = free_udp_port().to_string();
    let o = cli(
        &[
            "add",
            "cfg",
            "127.0.0.1",
            &port,
            "udp",
            "-c",
            config.to_str().unwrap(),
        ],
        &[],
    );
    expect_code(&o, 0, "server and token from --config");
    assert_eq!(bsc.get_with_token("/cfg/config", "s3cret").len(), 1);
    let o = cli(&["-c", config.to_str().unwrap(), "status"], &[]);
    expect_code(&o, 0, "status from --config");
    assert_eq!(row(&stdout(&o), "cfg")[4], "0", "{}", stdout(&o));
    // --token wins over the config's.
    let o = cli(
        &["status", "-c", config.to_str().unwrap(), "--token", "wrong"],
        &[],
    );
    expect_refused(&o, 401, "--token over the config's");
}

/// `GET path` with a Bearer token, as a list.
trait WithToken {
    fn get_with_token(&self, path: &str, token: &str) -> Vec<Value>;
}

impl WithToken for Bsc {
    fn get_with_token(&self, path: &str, token: &str) -> Vec<Value> {
        use std::io::{BufReader, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http_port)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let r = read_response(&mut BufReader::new(s)).expect("an answer");
        assert_eq!(r.status, 200);
        r.json().as_array().unwrap().clone()
    }
}

fn write_plain_config(dir: &Path, http: u16) -> String {
    let path = write_config(
        dir,
        &json!({"capture_manager": {"root_log_directory": dir.join("cap"),
                 "manager_server": {"host": "127.0.0.1", "port": http}},
                "handlers": [{"name": "tlm", "conn_type": "udp", "address": ["127.0.0.1", free_udp_port()],
                              "rotate_log": false, "file_name_pattern": "tlm.pcap"}]}),
    );
    path.to_str().unwrap().to_string()
}

#[test]
fn options_in_any_position() {
    let dir = TempDir::new("client-options");
    let http = free_tcp_port();
    let cfg = write_plain_config(dir.path(), http);
    let want = format!("{cfg}: ok, 1 handler, root ");
    let mut outputs = Vec::new();
    for args in [
        vec!["--config", &cfg, "check"],
        vec!["check", "-c", &cfg],
        vec!["check", "--config", &cfg],
        vec!["-c", &cfg, "check"],
        vec!["check", &format!("--config={cfg}")],
        vec!["--log-level=WARN", "check", "-c", &cfg],
        vec!["check", "-c", &cfg, "--log-level", "Debug"],
    ] {
        let o = cli(&args, &[]);
        expect_code(&o, 0, &format!("{args:?}"));
        assert!(stdout(&o).starts_with(&want), "{args:?}: {}", stdout(&o));
        outputs.push(stdout(&o));
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]), "{outputs:?}");
    let o = cli(&["check", "-c", &cfg, "--log-level=loud"], &[]);
    expect_code(&o, 2, "a bad level");

    // The capturer itself with --log-level=WARN (and --config=): no info lines.
    let bsc = Bsc::spawn(
        &["--log-level=WARN", &format!("--config={cfg}")],
        dir.path(),
        &[],
    );
    wait_until("the API to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", http)).is_ok()
    });
    let port = free_udp_port().to_string();
    let o = cli(
        &[
            "add",
            "more",
            "127.0.0.1",
            &port,
            "udp",
            "--server",
            &format!("127.0.0.1:{http}"),
        ],
        &[],
    );
    expect_code(&o, 0, "add to a bsc at WARN");
    let o = cli(&["status", "--server", &format!("127.0.0.1:{http}")], &[]);
    expect_code(&o, 0, "status");
    assert!(row(&stdout(&o), "more").len() > 4);
    assert!(row(&stdout(&o), "tlm").len() > 4);
    let (status, log) = bsc.stop_with_log();
    assert!(status.success());
    assert!(
        log.iter().all(|l| !l.contains(" info: ")),
        "no info lines at WARN: {log:?}"
    );
}

/// What a hostile server puts in every string: an OSC title, BEL, a screen
/// clear, a carriage return, a C1 CSI and DEL.
const HOSTILE: &str =
    "h\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{9b}31m\u{7f}\u{202e}gnp.exe\u{2028}\u{200b}";

/// A fake bsc that answers every route with [`HOSTILE`] in every string field
/// (keys too), raw CRs between JSON tokens; bounded to `answers` connections.
fn hostile_server(answers: usize) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let (listener, port) = tcp_peer();
    let h = HOSTILE;
    let entry = json!({"handler": {"name": h, "log_dir": h, "file_name_pattern": h,
                       "validated_log_dir_root": h, "path": h},
                       "log_file_path": h, "conn_type": h, "address": [h, 8500]});
    let file = json!({"path": h, "bytes": 5, "records": 1, "state": h,
                      "first_record_at": h, "last_record_at": h});
    let stats_key = format!("['{h}', 8500]");
    let stats = json!({stats_key.clone(): [{"name": h, "packets": 1, "state": h,
        "degraded_reason": h, "current_file": h, "current_file_bytes": 1,
        "last_packet_at": h, "connected": false, "last_error": h,
        "ship": {"pending_files": 1, "pending_bytes": 1, "oldest_pending_age_s": 1,
                 "last_error": h, "next_attempt_at": h, "dropped": 1}}]});
    let capturers = json!([{"address": [h, 8500], "key": stats_key, "conn_type": "tcp",
        "state": h, "error": h, "next_attempt_at": h, "handlers": [h]}]);
    let thread = std::thread::spawn(move || {
        for stream in listener.incoming().take(answers) {
            let Ok(stream) = stream else { continue };
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let request = head.lines().next().unwrap_or("").to_string();
            let (status, answer) = if request.starts_with("POST /bad/") {
                (409, json!({"error": h}))
            } else if request.starts_with("POST ") && request.contains("/start ") {
                (201, entry.clone())
            } else if request.starts_with("DELETE /capturers") {
                (
                    200,
                    json!({"address": [h, 8500], "conn_type": h, "stopped": [entry]}),
                )
            } else if request.starts_with("DELETE ") {
                (200, json!([entry]))
            } else if request.contains("/rotate ") {
                (
                    200,
                    json!([{"name": h, "address": [h, 8500],
                               "previous_file": h, "log_file_path": h}]),
                )
            } else if request.starts_with("GET /stats ") {
                (200, stats.clone())
            } else if request.starts_with("GET /capturers ") {
                (200, capturers.clone())
            } else {
                (
                    200,
                    json!([{"name": h, "address": [h, 8500], "files": [file]}]),
                )
            };
            // Raw CRs where JSON allows whitespace.
            let text = serde_json::to_string(&answer)
                .unwrap()
                .replacen(':', ":\r", 1);
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (port, thread)
}

/// Nothing but printable text and newlines: no C0 (ESC, BEL, CR), DEL or C1.
fn assert_terminal_safe(bytes: &[u8], what: &str) {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| {
            (c.is_control() || matches!(c, '\u{202e}' | '\u{2028}' | '\u{200b}'))
                && c != '\n'
                && c != '\t'
        })
        .collect();
    assert!(bad.is_empty(), "{what}: controls {bad:?} in {text:?}");
}

#[test]
fn a_hostile_server_never_reaches_the_terminal() {
    let commands: &[&[&str]] = &[
        &["add", "tlm", "127.0.0.1", "8500", "udp"],
        &["add", "bad", "127.0.0.1", "8500", "udp"],
        &["stop", "tlm"],
        &["rotate", "tlm", "pass=1"],
        &["stop-capturer", "127.0.0.1", "8500", "udp"],
        &["status"],
        &["status", "--json"],
        &["files", "tlm"],
        &["files", "tlm", "--json"],
    ];
    // `status` asks twice (/stats, /capturers).
    let (port, server) = hostile_server(commands.len() + 1);
    let server_arg = format!("--server=127.0.0.1:{port}");
    let escaped = r"h\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{9b}31m\u{7f}\u{202e}gnp.exe\u{2028}\u{200b}";
    for args in commands {
        let o = cli(&[args, &[server_arg.as_str()][..]].concat(), &[]);
        let what = format!("bsc {}", args.join(" "));
        assert_terminal_safe(&o.stdout, &what);
        assert_terminal_safe(&o.stderr, &what);
        if args.get(1) == Some(&"bad") {
            assert_eq!(
                stderr(&o),
                format!("bsc: refused (409): {escaped}\n"),
                "{what}"
            );
            continue;
        }
        expect_code(&o, 0, &what);
        if args.contains(&"--json") {
            // Still JSON, and the same strings once read.
            let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
            let hostile = serde_json::to_string(HOSTILE).unwrap();
            assert!(v.to_string().contains(&hostile), "{what}: {v}");
        } else {
            assert!(stdout(&o).contains(escaped), "{what}: {}", stdout(&o));
        }
    }
    server.join().unwrap();
}

#[test]
fn sizes_read_in_one_unit_kib_as_the_page_and_the_log() {
    let dir = TempDir::new("client-sizes");
    let bsc = start_bsc(&dir);
    let server = format!("--server=127.0.0.1:{}", bsc.http_port);
    let port = free_udp_port();
    let o = cli(
        &[
            &server,
            "add",
            "big",
            "127.0.0.1",
            &port.to_string(),
            "udp",
            "--rotate-log",
            "false",
            "--file-name-pattern",
            "{name}.pcap",
        ],
        &[],
    );
    expect_code(&o, 0, "add");
    let tx = sender(port);
    tx.send(&[7u8; 1500]).unwrap();
    tx.send(&[8u8; 1500]).unwrap();
    let file = dir.path().join("cap").join("big.pcap");
    wait_until("two records", || count_records(&file) == 2);
    // 24 + 2 × (16 + 1500) = 3056 bytes: 2.98 KiB everywhere.
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 3056);
    let o = cli(&["status", &server], &[]);
    expect_code(&o, 0, "status");
    let table = stdout(&o);
    let words = row(&table, "big");
    assert_eq!(
        words[words.len() - 3..],
        ["2.98", "KiB", file.to_str().unwrap()],
        "{table}"
    );
    let o = cli(&["files", "big", &server], &[]);
    let list = stdout(&o);
    assert_eq!(row(&list, "open")[1..3], ["2.98", "KiB"], "{list}");
    let o = cli(&["stop", "big", &server], &[]);
    expect_code(&o, 0, "stop");
    bsc.wait_log(&format!(
        "handler big: closed {} (2 records, 2.98 KiB)",
        file.display()
    ));
}
