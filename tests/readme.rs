//! The README's commands work as written: every `curl` command in its shell
//! blocks, in the order written, exactly as written, against a bsc running on its
//! built-in defaults (so on 127.0.0.1:8080, as the README says), each answering
//! 2xx.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The `curl` commands of the README's ```sh blocks, continuation lines joined.
fn readme_curl_commands() -> Vec<String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut current: Option<String> = None;
    for line in text.lines() {
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
            None if line.starts_with("curl ") => line.to_string(),
            None => continue,
        };
        match part.strip_suffix('\\') {
            Some(head) => current = Some(format!("{head} ")),
            None => out.push(part),
        }
    }
    out
}

#[test]
fn every_curl_command_in_the_readme_works_in_order_as_written() {
    let commands = readme_curl_commands();
    assert!(commands.len() >= 15, "{commands:?}");
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
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let bsc = Bsc::start(&[], dir.path());
    for cmd in &commands {
        let out = Command::new("sh")
            .args(["-c", cmd])
            .env("PATH", &path)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README command failed: {cmd}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(bsc.stop().success());
}
