//! The README's commands work as written, in order, as a newcomer on a fresh
//! clone would run them: every command of its ```sh blocks that runs bsc or
//! talks to it (`export PATH=...`, `cat > FILE <<'EOF'`, `bsc ...`, `curl ...`)
//! runs exactly as written, in the order written, in an empty folder. A `bsc`
//! that starts the service (no command, or only `--config FILE`) runs in the
//! background until the next one starts (the README says to stop it first),
//! as a newcomer's first terminal would; every other command must exit 0 (a
//! `curl` answered 4xx or 5xx fails). Commands that build, install or need a
//! system (`cargo`, `make`, `systemctl`, ...) are left to the other tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The commands of the README's ```sh blocks, in order: continuation lines
/// joined, a here-document kept whole with its lines; comment-only and blank
/// lines dropped.
fn readme_commands() -> Vec<String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut current: Option<String> = None;
    let mut heredoc: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some((mut cmd, end)) = heredoc.take() {
            cmd.push('\n');
            cmd.push_str(line);
            if line == end {
                out.push(cmd);
            } else {
                heredoc = Some((cmd, end));
            }
            continue;
        }
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let part = match current.take() {
            Some(mut cmd) => {
                cmd.push_str(line.trim_start());
                cmd
            }
            None if line.trim().is_empty() || line.trim_start().starts_with('#') => continue,
            None => line.to_string(),
        };
        if let Some(head) = part.strip_suffix('\\') {
            current = Some(format!("{head} "));
        } else if let Some((_, end)) = part.split_once("<<'") {
            let end = end.split('\'').next().unwrap().to_string();
            heredoc = Some((part, end));
        } else {
            out.push(part);
        }
    }
    assert!(
        heredoc.is_none() && current.is_none(),
        "a ```sh block ends mid-command"
    );
    out
}

/// Whether a `bsc` command line starts the service (rather than a command such
/// as `check`, `add` or `--version`).
fn starts_the_service(cmd: &str) -> bool {
    let words: Vec<&str> = cmd.split('#').next().unwrap().split_whitespace().collect();
    matches!(words.as_slice(), ["bsc"] | ["bsc", "--config" | "-c", _])
}

/// Where the test's `bsc` binary is (what `target/release` is to a newcomer).
fn bsc_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_bsc"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn every_bsc_and_curl_command_in_the_readme_works_in_order_as_written() {
    let commands = readme_commands();
    let count = |prefix: &str| commands.iter().filter(|c| c.starts_with(prefix)).count();
    assert!(count("curl ") >= 15, "{commands:?}");
    assert!(count("bsc ") + count("bsc\n") >= 12, "{commands:?}");
    assert!(count("bsc check ") >= 1, "{commands:?}");
    assert!(
        std::net::TcpListener::bind("127.0.0.1:8080").is_ok(),
        "the README's commands talk to 127.0.0.1:8080, which another program holds"
    );
    for tool in ["curl", "jq"] {
        assert!(
            Command::new(tool).arg("--version").output().is_ok(),
            "{tool} is needed: apt-get install {tool} (make test installs it)"
        );
    }
    let dir = TempDir::new("readme");
    // A `curl` first on PATH that runs the real one with --fail-with-body, so a
    // 4xx or 5xx answer fails the command; the command text stays as written.
    let shim = dir.path().join("shim");
    std::fs::create_dir_all(&shim).unwrap();
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v curl"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::write(
        shim.join("curl"),
        format!(
            "#!/bin/sh\nexec {} --fail-with-body --silent --show-error \"$@\"\n",
            real.trim()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .args(["+x", shim.join("curl").to_str().unwrap()])
        .status()
        .unwrap();
    let system_path = std::env::var("PATH").unwrap_or_default();
    // Until the README's `export PATH=...`, a newcomer's shell has no `bsc`.
    let mut path = format!("{}:{system_path}", shim.display());
    let work = dir.path().join("clone");
    std::fs::create_dir_all(&work).unwrap();
    let mut service: Option<Bsc> = None;
    let mut ran = 0;
    for cmd in &commands {
        if cmd.starts_with("export PATH=") {
            assert_eq!(
                cmd, "export PATH=\"$PWD/target/release:$PATH\"",
                "the README puts cargo's release binary on the PATH"
            );
            path = format!("{}:{}:{system_path}", shim.display(), bsc_dir().display());
            continue;
        }
        let runs = ["curl ", "bsc ", "cat > "]
            .iter()
            .any(|p| cmd.starts_with(p))
            || cmd.split_whitespace().next() == Some("bsc");
        if !runs {
            continue;
        }
        ran += 1;
        if starts_the_service(cmd) {
            // The README says to stop the one running first (Ctrl-C).
            if let Some(old) = service.take() {
                assert!(old.stop().success(), "bsc stopped with an error");
            }
            let bsc = Bsc::spawn_program(
                &["sh", "-c", &format!("exec {cmd}")],
                &[],
                &work,
                &[("PATH", &path)],
            );
            bsc.wait_log("running:");
            service = Some(bsc);
            continue;
        }
        let out = Command::new("sh")
            .args(["-c", cmd])
            .env("PATH", &path)
            .env_remove("BSC_SERVER")
            .env_remove("BSC_TOKEN")
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README command failed ({}): {cmd}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(ran >= 25, "{ran} commands ran: {commands:?}");
    let service = service.expect("the README starts bsc");
    assert!(service.stop().success());
}
