//! The two store-and-forward recipes (docs/ship-recipes.md), end to end with real tools: bsc
//! runs `systemd/examples/bsc-ship-s3` as a handler's ship command against a
//! local S3-compatible server (moto's `moto_server`, on 127.0.0.1, with its
//! signature checks on), and `systemd/examples/bsc-ship-rsync` into a folder
//! standing in for the central host. Every closed file must arrive byte for byte
//! under its station, handler and file name; no half-copied file may ever carry
//! a final name. `tests/deps.sh` installs rsync and moto (into target/moto-venv).

mod common;

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The handler key whose command ships each closed file (retried until it exits
/// 0). `on_close` runs the same command with the same argv and environment once:
/// every test here but the retry passes with it too.
const SHIP_KEY: &str = "ship";

/// A name with a space and characters that need percent-encoding in a URL (and
/// that curl would glob): `{seq}` keeps each file's name distinct.
const ODD_PATTERN: &str = "{name} pass #{seq} 50%% [a+b]'s.pcap";

/// Records per file (`rotate_max_packets`) and files per test.
const PER_FILE: u64 = 4;
const FILES: u64 = 3;

/// How long a shipped file may take to arrive (the backoff of a retried upload
/// included) before a test fails.
const ARRIVAL: Duration = Duration::from_secs(180);

fn script(name: &str) -> PathBuf {
    repo().join("systemd/examples").join(name)
}

/// Fails with a clear message when a tool the recipes need is missing.
fn require(tool: &str, package: &str) {
    assert!(
        Command::new(tool).arg("--version").output().is_ok(),
        "{tool} is needed: {package} (`bash tests/deps.sh` installs it; so does `make test`)"
    );
}

fn handler(name: &str, port: u16, ship: Vec<String>) -> Value {
    json!({"name": name, "conn_type": "udp", "address": ["127.0.0.1", port],
           "rotate_log": false, "rotate_max_packets": PER_FILE,
           "file_name_pattern": ODD_PATTERN, SHIP_KEY: ship})
}

/// Sends `n` datagrams numbered from `first` (so `n / PER_FILE` files close).
fn send_burst(port: u16, first: u64, n: u64) {
    let tx = sender(port);
    for seq in first..first + n {
        tx.send(&seq_payload(seq)).unwrap();
    }
}

/// Polls `cond` until it holds or [`ARRIVAL`] runs out; panics with `what` and
/// bsc's log lines about its ship commands then.
fn wait_shipped(bsc: &Bsc, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > ARRIVAL {
            let log = bsc.log_matching(SHIP_KEY);
            panic!("timed out after {ARRIVAL:?} waiting for: {what}; bsc's log: {log:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The file name of a path, as a string.
fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_string()
}

/// Percent-encodes every byte but RFC 3986's unreserved characters.
fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Every `<tag>value</tag>` in `xml`, unescaped.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(v, _)| xml_unescape(v)))
        .collect()
}

/// Runs a command and returns its output; panics if it cannot start.
fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An S3 access key: (id, secret).
type Key = (String, String);

/// moto's S3-compatible server on 127.0.0.1, with signature checks on (after the
/// requests that create the user, its key and the bucket); stopped when dropped.
struct Moto {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    key: Key,
}

const BUCKET: &str = "captures";
const REGION: &str = "eu-central-1";

impl Moto {
    /// The server: the version tests/deps.sh pins, in target/moto-venv (not
    /// whatever `moto_server` is on PATH: moto 5.2.1 there answered the signed
    /// uploads with HTTP errors where the pinned one accepts them).
    fn program() -> PathBuf {
        let venv = repo().join("target/moto-venv/bin/moto_server");
        assert!(
            venv.exists(),
            "moto_server is needed (PyPI's moto[server]): `bash tests/deps.sh` installs it into {}",
            venv.display()
        );
        venv
    }

    fn start(dir: &Path) -> Moto {
        let mut moto = Moto {
            child: None,
            port: free_tcp_port(),
            log: dir.join("moto.log"),
            key: (String::new(), String::new()),
        };
        moto.up();
        moto
    }

    /// Starts the server on its port and makes a user, its access key (with every
    /// S3 right) and the bucket: the four requests moto lets through unsigned.
    fn up(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(Moto::program())
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start moto_server");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("moto_server exited ({status}): {}", self.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "moto_server did not listen on 127.0.0.1:{} within 120 s: {}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let endpoint = self.url("");
        let iam = |form: &[(&str, &str)]| {
            let mut cmd = Command::new("curl");
            cmd.args([
                "--fail-with-body",
                "-sS",
                "--aws-sigv4",
                "aws:amz:us-east-1:iam",
            ])
            .args(["--user", "bootstrap:bootstrap"]);
            for (k, v) in form.iter().chain(&[("Version", "2010-05-08")]) {
                cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
            }
            let out = run(cmd.arg(&endpoint));
            assert!(out.status.success(), "IAM {form:?}: {}", text(&out));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        iam(&[("Action", "CreateUser"), ("UserName", "bsc")]);
        let created = iam(&[("Action", "CreateAccessKey"), ("UserName", "bsc")]);
        self.key = (
            xml_values(&created, "AccessKeyId").remove(0),
            xml_values(&created, "SecretAccessKey").remove(0),
        );
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", "bsc"),
            ("PolicyName", "ship"),
            ("PolicyDocument", policy),
        ]);
        self.create_bucket(BUCKET);
        // From now on a request signed with anything but the key is refused.
        let out = self.s3_as(&("bootstrap".into(), "bootstrap".into()), &[], BUCKET);
        assert!(
            !out.status.success(),
            "moto checks signatures: {}",
            text(&out)
        );
    }

    /// Stops the server (its objects and keys are gone with it).
    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A request signed with the user's key, as curl makes it.
    /// Makes the bucket `name` in [`REGION`].
    fn create_bucket(&self, name: &str) {
        let region = format!("<CreateBucketConfiguration><LocationConstraint>{REGION}</LocationConstraint></CreateBucketConfiguration>");
        let out = self.s3(
            &[
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/xml",
                "--data-binary",
                &region,
            ],
            name,
        );
        assert!(out.status.success(), "create bucket: {}", text(&out));
    }

    fn s3(&self, args: &[&str], path: &str) -> Output {
        self.s3_as(&self.key, args, path)
    }

    fn s3_as(&self, key: &Key, args: &[&str], path: &str) -> Output {
        run(Command::new("curl")
            .args(["--fail", "-sS", "--globoff", "--aws-sigv4"])
            .arg(format!("aws:amz:{REGION}:s3"))
            .arg("--user")
            .arg(format!("{}:{}", key.0, key.1))
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
            .args(args)
            .arg(self.url(path)))
    }

    /// The bucket's keys.
    fn keys(&self) -> BTreeSet<String> {
        let out = self.s3(&[], &format!("{BUCKET}?list-type=2"));
        assert!(out.status.success(), "list: {}", text(&out));
        let xml = String::from_utf8_lossy(&out.stdout);
        assert!(!xml.contains("<IsTruncated>true"), "{xml}");
        xml_values(&xml, "Key").into_iter().collect()
    }

    /// One object's bytes (a signed GET of its percent-encoded key).
    fn object(&self, key: &str) -> Vec<u8> {
        let path = key.split('/').map(enc).collect::<Vec<_>>().join("/");
        let out = self.s3(&[], &format!("{BUCKET}/{path}"));
        assert!(out.status.success(), "GET {key}: {}", text(&out));
        out.stdout
    }

    /// The script's environment file: this server, this bucket, this key.
    fn env_file(&self, station: Option<&str>) -> String {
        let mut s = format!(
            "S3_ENDPOINT={}\nS3_BUCKET={BUCKET}\nS3_REGION={REGION}\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\n",
            self.url(""),
            self.key.0,
            self.key.1
        );
        if let Some(station) = station {
            s.push_str(&format!("STATION='{station}'\n"));
        }
        s
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.down();
    }
}

/// The station in the tests' environment files: a space, a non-ASCII letter.
const STATION: &str = "Weilheim 30 m ä";

/// Runs a ship script by hand as bsc would: `args` then the file, BSC_HANDLER set.
fn ship_by_hand(script: &Path, args: &[&str], file: &Path, handler: &str) -> Output {
    run(Command::new(script)
        .args(args)
        .arg(file)
        .env("BSC_HANDLER", handler))
}

/// The first `n` files bsc closed, in order, from its log (a file is closed by
/// count when the record after its last arrives).
fn closed_files(bsc: &Bsc, n: usize) -> Vec<PathBuf> {
    let closed = || -> Vec<PathBuf> {
        bsc.log_matching(": closed /")
            .iter()
            .map(|l| {
                let path = &l[l.find(": closed /").unwrap() + ": closed ".len()..];
                PathBuf::from(&path[..path.rfind(" (").unwrap()])
            })
            .collect()
    };
    wait_until(&format!("bsc to close {n} files"), || closed().len() >= n);
    let files = closed()[..n].to_vec();
    for f in &files {
        assert!(f.is_file(), "{}", f.display());
    }
    files
}

#[test]
fn s3_recipe_uploads_every_closed_file_byte_identical_under_station_handler_and_name() {
    require("curl", "apt-get install curl");
    let dir = TempDir::new("ship-s3");
    let moto = Moto::start(dir.path());
    let env = dir.path().join("ship s3.env");
    std::fs::write(&env, moto.env_file(Some(STATION))).unwrap();
    let root = dir.path().join("cap");
    let port = free_udp_port();
    let name = "tlm-a_b.1";
    let ship = vec![
        script("bsc-ship-s3").to_str().unwrap().to_string(),
        env.to_str().unwrap().to_string(),
    ];
    let bsc = Bsc::capturing(dir.path(), &root, vec![handler(name, port, ship)]);
    send_burst(port, 0, PER_FILE * FILES + 1);
    let files = closed_files(&bsc, FILES as usize);
    let key_of = |f: &Path| format!("{STATION}/{name}/{}", name_of(f));
    let want: BTreeSet<String> = files.iter().map(|f| key_of(f)).collect();
    assert!(
        want.iter()
            .any(|k| k.contains(" pass #0001 50% [a+b]'s.pcap")),
        "{want:?}"
    );
    wait_shipped(&bsc, "every closed file in the bucket", || {
        moto.keys() == want
    });
    for f in &files {
        let local = std::fs::read(f).unwrap();
        assert!(local.len() > 24, "{} holds records", f.display());
        assert!(moto.object(&key_of(f)) == local, "{} differs", key_of(f));
    }
    // Shipping again overwrites the same key (idempotent); without STATION the
    // station is the host's name.
    let out = ship_by_hand(
        &script("bsc-ship-s3"),
        &[env.to_str().unwrap()],
        &files[0],
        name,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(moto.keys(), want);
    let plain = dir.path().join("plain.env");
    std::fs::write(&plain, moto.env_file(None)).unwrap();
    let out = ship_by_hand(
        &script("bsc-ship-s3"),
        &[plain.to_str().unwrap()],
        &files[0],
        name,
    );
    assert!(out.status.success(), "{}", text(&out));
    let host = String::from_utf8(run(Command::new("uname").arg("-n")).stdout).unwrap();
    let default_key = format!("{}/{name}/{}", host.trim(), name_of(&files[0]));
    assert!(moto.keys().contains(&default_key), "{:?}", moto.keys());
    assert!(moto.object(&default_key) == std::fs::read(&files[0]).unwrap());
    // A wrong secret fails (non-zero), and its message names no secret.
    let wrong = dir.path().join("wrong.env");
    std::fs::write(
        &wrong,
        format!("{}AWS_SECRET_ACCESS_KEY=wrong\n", moto.env_file(None)),
    )
    .unwrap();
    let out = ship_by_hand(
        &script("bsc-ship-s3"),
        &[wrong.to_str().unwrap()],
        &files[0],
        name,
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(&moto.key.1), "{}", text(&out));
    let (status, log) = bsc.stop_with_log();
    assert!(status.success(), "{log:?}");
}

#[test]
fn s3_recipe_retries_until_a_stopped_server_is_back() {
    require("curl", "apt-get install curl");
    let dir = TempDir::new("ship-s3-retry");
    let mut moto = Moto::start(dir.path());
    let env = dir.path().join("s3.env");
    std::fs::write(&env, moto.env_file(Some(STATION))).unwrap();
    let attempts = dir.path().join("attempts");
    let root = dir.path().join("cap");
    let port = free_udp_port();
    let name = "tlm";
    // The script, each attempt's exit status and file (BSC_FILE: the command
    // itself is handed a hard link in bsc's state folder) written down.
    let ship = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        format!(
            "\"$0\" \"$@\"; s=$?; printf '%s %s\\n' $s \"$BSC_FILE\" >> '{}'; exit $s",
            attempts.display()
        ),
        script("bsc-ship-s3").to_str().unwrap().to_string(),
        env.to_str().unwrap().to_string(),
    ];
    let bsc = Bsc::capturing_driven(dir.path(), &root, vec![handler(name, port, ship)]);
    // The exit status of each attempt to ship `f`, in order.
    let attempts_of = |f: &Path| -> Vec<String> {
        std::fs::read_to_string(&attempts)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, p)| Path::new(p) == f)
            .map(|(s, _)| s.to_string())
            .collect()
    };
    send_burst(port, 0, PER_FILE + 1);
    let first = closed_files(&bsc, 1);
    let key_of = |f: &Path| format!("{STATION}/{name}/{}", name_of(f));
    wait_shipped(&bsc, "the first file shipped", || {
        attempts_of(&first[0]).contains(&"0".to_string())
    });
    assert!(moto.keys().contains(&key_of(&first[0])));
    moto.down();
    send_burst(port, PER_FILE + 1, PER_FILE * 2);
    let files = closed_files(&bsc, 3);
    let later: Vec<PathBuf> = files[1..].to_vec();
    // One file at a time, oldest first: the second file fails (and waits
    // with its back-off), the third waits behind it.
    wait_shipped(
        &bsc,
        "an attempt to ship the second file while the server is down",
        || !attempts_of(&later[0]).is_empty(),
    );
    assert!(attempts_of(&later[1]).is_empty(), "oldest first");
    // The server is back (empty: moto keeps nothing), with a new key in the file.
    moto.up();
    let new = dir.path().join("s3.env.new");
    std::fs::write(&new, moto.env_file(Some(STATION))).unwrap();
    std::fs::rename(&new, &env).unwrap();
    let want: BTreeSet<String> = later.iter().map(|f| key_of(f)).collect();
    // The retry comes after its back-off (5 s at first) on bsc's clock.
    wait_shipped(
        &bsc,
        "the files closed while the server was down, retried, in the bucket",
        || {
            later
                .iter()
                .all(|f| attempts_of(f).contains(&"0".to_string()))
                || {
                    advance_clock(bsc.http_port, 1.0);
                    false
                }
        },
    );
    assert_eq!(moto.keys(), want);
    let tries = attempts_of(&later[0]);
    assert!(
        tries.len() >= 2 && tries[0] != "0",
        "{} was retried: {tries:?}",
        later[0].display()
    );
    for f in &later {
        let tries = attempts_of(f);
        assert_eq!(tries.last().unwrap(), "0", "{}: {tries:?}", f.display());
        assert!(
            moto.object(&key_of(f)) == std::fs::read(f).unwrap(),
            "{}",
            key_of(f)
        );
    }
    let (status, log) = bsc.stop_with_log();
    assert!(status.success(), "{log:?}");
}

#[test]
fn s3_recipe_names_a_missing_bucket_and_ships_once_it_exists() {
    require("curl", "apt-get install curl");
    let dir = TempDir::new("ship-s3-bucket");
    let moto = Moto::start(dir.path());
    let env = dir.path().join("s3.env");
    let missing = "not-made-yet";
    std::fs::write(
        &env,
        moto.env_file(Some(STATION)).replace(
            &format!("S3_BUCKET={BUCKET}"),
            &format!("S3_BUCKET={missing}"),
        ),
    )
    .unwrap();
    let root = dir.path().join("cap");
    let port = free_udp_port();
    let ship = vec![
        script("bsc-ship-s3").to_str().unwrap().to_string(),
        env.to_str().unwrap().to_string(),
    ];
    let mut h = handler("tlm", port, ship);
    h["ship_retry_max_s"] = json!(1);
    let bsc = Bsc::capturing_driven(dir.path(), &root, vec![h]);
    send_burst(port, 0, PER_FILE + 1);
    let files = closed_files(&bsc, 1);
    let says = format!(
        "bsc-ship-s3: bucket {missing} does not exist at {}",
        moto.url("")
    );
    let ship_of = || bsc.get("/stats").1[format!("['127.0.0.1', {port}]")][0]["ship"].clone();
    wait_shipped(&bsc, "a failed attempt", || {
        ship_of()["failures"].as_u64() >= Some(1)
    });
    let ship = ship_of();
    assert_eq!(
        ship["last_error"],
        format!("exit status: 1: {says}").as_str(),
        "{ship}"
    );
    let line = bsc.wait_log(&says);
    assert!(line.contains(&name_of(&files[0])), "{line}");
    // Made: the file ships, and the error is cleared (when it was, kept).
    moto.create_bucket(missing);
    // The retry comes after its back-off (at most 1 s) on bsc's clock.
    wait_shipped(&bsc, "the file shipped", || {
        ship_of()["shipped"] == 1 || {
            advance_clock(bsc.http_port, 0.5);
            false
        }
    });
    let ship = ship_of();
    assert_eq!(ship["last_error"], Value::Null, "{ship}");
    assert!(ship["last_error_at"].is_string(), "{ship}");
    let (status, log) = bsc.stop_with_log();
    assert!(status.success(), "{log:?}");
}

/// Every file below `dir` (hidden ones included), relative to it.
fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_str().unwrap().to_string();
            if p.is_dir() {
                out.insert(format!("{rel}/"));
                walk(base, &p, out);
            } else {
                out.insert(rel);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn rsync_recipe_copies_every_closed_file_byte_identical_and_nothing_else() {
    require("rsync", "apt-get install rsync");
    let dir = TempDir::new("ship-rsync");
    let dest = dir.path().join("central host/station 1");
    std::fs::create_dir_all(&dest).unwrap();
    let root = dir.path().join("cap");
    let port = free_udp_port();
    let name = "tlm-a_b.1";
    let ship = vec![
        script("bsc-ship-rsync").to_str().unwrap().to_string(),
        dest.to_str().unwrap().to_string(),
    ];
    let bsc = Bsc::capturing(dir.path(), &root, vec![handler(name, port, ship)]);
    send_burst(port, 0, PER_FILE * FILES + 1);
    let files = closed_files(&bsc, FILES as usize);
    let mut want: BTreeSet<String> = files
        .iter()
        .map(|f| format!("{name}/{}", name_of(f)))
        .collect();
    want.insert(format!("{name}/"));
    wait_shipped(&bsc, "every closed file at the destination", || {
        files
            .iter()
            .all(|f| std::fs::read(dest.join(name).join(name_of(f))).ok() == std::fs::read(f).ok())
    });
    // Nothing but the files: no temporary dot names, no .rsync-partial.
    assert_eq!(tree(&dest), want);
    // Copying again sends nothing and changes nothing (the same inode stays).
    let there = dest.join(name).join(name_of(&files[0]));
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&there);
    let out = ship_by_hand(
        &script("bsc-ship-rsync"),
        &[dest.to_str().unwrap()],
        &files[0],
        name,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(inode(&there), before);
    assert_eq!(tree(&dest), want);
    let (status, log) = bsc.stop_with_log();
    assert!(status.success(), "{log:?}");
}

#[test]
fn rsync_recipe_never_shows_a_half_copied_file_under_its_final_name() {
    require("rsync", "apt-get install rsync");
    let dir = TempDir::new("ship-rsync-cut");
    let dest = dir.path().join("central");
    std::fs::create_dir_all(&dest).unwrap();
    // A big "closed file" and an rsync slowed to 2 MB/s, first on PATH.
    let file = dir.path().join("big pass #1 [a+b].pcap");
    let data: Vec<u8> = (0..16_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let real =
        String::from_utf8(run(Command::new("sh").args(["-c", "command -v rsync"])).stdout).unwrap();
    std::fs::write(
        bin.join("rsync"),
        format!("#!/bin/sh\nexec {} --bwlimit=2000 \"$@\"\n", real.trim()),
    )
    .unwrap();
    run(Command::new("chmod").arg("+x").arg(bin.join("rsync")));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let final_name = dest.join("tlm").join(name_of(&file));
    let mut copy = Command::new(script("bsc-ship-rsync"))
        .arg(&dest)
        .arg(&file)
        .env("BSC_HANDLER", "tlm")
        .env("PATH", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Stopped mid-copy (SIGTERM, as when bsc's service stops).
    let partial_bytes = |t: &BTreeSet<String>| {
        t.iter()
            .any(|p| p.starts_with("tlm/.") && !p.ends_with('/'))
    };
    wait_until("a copy in progress at the destination", || {
        partial_bytes(&tree(&dest))
    });
    assert!(!final_name.exists(), "{:?}", tree(&dest));
    let ok = run(Command::new("kill").args(["-TERM", &copy.id().to_string()]));
    assert!(ok.status.success());
    let status = copy.wait().unwrap();
    assert!(!status.success(), "the copy was cut: {status}");
    let kept = dest.join("tlm/.rsync-partial").join(name_of(&file));
    // rsync's receiver (a child of the process killed) moves its temporary
    // file into the partial folder as it exits: wait for it.
    wait_until("the partial copy waiting in .rsync-partial", || {
        kept.exists()
            && !tree(&dest)
                .iter()
                .any(|p| p.starts_with("tlm/.") && !p["tlm/".len()..].contains('/'))
    });
    assert!(!final_name.exists(), "{:?}", tree(&dest));
    assert!(std::fs::metadata(&kept).unwrap().len() < data.len() as u64);
    // The retry completes it, and the partial copy is gone.
    let out = ship_by_hand(
        &script("bsc-ship-rsync"),
        &[dest.to_str().unwrap()],
        &file,
        "tlm",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::read(&final_name).unwrap() == data);
    let want: BTreeSet<String> = ["tlm/".to_string(), format!("tlm/{}", name_of(&file))].into();
    assert_eq!(tree(&dest), want);
}

/// The page of the recipes.
fn recipes_page() -> String {
    std::fs::read_to_string(repo().join("docs/ship-recipes.md")).unwrap()
}

/// The fenced blocks of `text` whose fence line is exactly "```" + `lang`.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match current.take() {
            Some(block) if line == "```" => out.push(block),
            Some(mut block) => {
                block.push_str(line);
                block.push('\n');
                current = Some(block);
            }
            None if line == fence => current = Some(String::new()),
            None => {}
        }
    }
    out
}

#[test]
fn the_recipes_link_the_scripts_and_show_a_config_bsc_accepts() {
    let section = recipes_page();
    assert!(
        blocks(&section, "shell").is_empty(),
        "the scripts are linked, not copied"
    );
    for name in ["bsc-ship-s3", "bsc-ship-rsync"] {
        let file = std::fs::read_to_string(script(name)).unwrap();
        assert!(
            section.contains(&format!("](../systemd/examples/{name})")),
            "docs/ship-recipes.md links systemd/examples/{name}"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(script(name)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o755, "{name} is executable");
        assert!(
            file.starts_with("#!/bin/sh\n") && file.contains("\nset -eu\n"),
            "{name}"
        );
    }
    // Its environment file names what the script reads.
    let s3 = std::fs::read_to_string(script("bsc-ship-s3")).unwrap();
    let envs: Vec<String> = blocks(&section, "ini")
        .into_iter()
        .filter(|b| !b.starts_with('['))
        .collect();
    assert_eq!(envs.len(), 1, "one environment file");
    for line in envs[0]
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (k, _) = line.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
        assert!(s3.contains(&format!("${{{k}")), "the script reads {k}");
    }
    // Each config there is one bsc accepts, shipping with the installed scripts.
    let configs = blocks(&section, "json");
    assert_eq!(configs.len(), 2, "a config for each recipe");
    let dir = TempDir::new("ship-docs");
    for (i, snippet) in configs.iter().enumerate() {
        let mut cfg: Value =
            serde_json::from_str(snippet).unwrap_or_else(|e| panic!("{e}: {snippet}"));
        let handler = cfg["handlers"][0].as_object_mut().unwrap();
        let ship = handler
            .remove("ship")
            .expect("the handler has a \"ship\" command");
        let program = ship[0].as_str().unwrap();
        assert!(program.starts_with("/usr/local/bin/bsc-ship-"), "{ship}");
        handler.insert(SHIP_KEY.to_string(), ship);
        cfg["capture_manager"]["root_log_directory"] = json!(dir.path().join(format!("cap{i}")));
        let path = write_config(dir.path(), &cfg);
        let out = run(Command::new(env!("CARGO_BIN_EXE_bsc"))
            .arg("--config")
            .arg(&path)
            .arg("check")
            .current_dir(dir.path()));
        assert!(
            out.status.success(),
            "bsc check of docs/ship-recipes.md's config {i}: {}",
            text(&out)
        );
    }
}
