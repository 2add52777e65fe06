//! The README's and the docs' commands work as written, in order, as a reader
//! would run them: every command of their ```sh blocks that runs bsc or talks
//! to it (`export PATH=...`, `cat > FILE <<'EOF'`, `bsc ...`, `curl ...`, and
//! the `python3 -c ...` that sends the first capture its datagram) runs
//! exactly as written, in the order written, in an empty folder per file. A
//! `bsc` that starts the service (no command, or only `--config FILE`) runs in
//! the background until the next one starts (the README says to stop it
//! first), as a newcomer's first terminal would; every other command must exit
//! 0 (a `curl` answered 4xx or 5xx fails). Commands that build, install or
//! need a system (`cargo`, `make`, `systemctl`, ...) are left to the other
//! tests. The README is a newcomer's page (at most 400 lines) that links every
//! file of `docs/`; every relative link and anchor in them resolves, and the
//! reference names every metric bsc serves.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::*;
use serde_json::json;

/// The README's and the docs' services listen on 127.0.0.1:8080: one file's
/// commands at a time.
static PORT_8080: Mutex<()> = Mutex::new(());

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `docs/*.md`, by name.
fn docs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    out.sort();
    assert!(out.len() >= 5, "{out:?}");
    out
}

/// The commands of a Markdown file's ```sh blocks, in order: continuation
/// lines joined, a here-document kept whole with its lines; comment-only and
/// blank lines dropped.
fn commands_of(text: &str) -> Vec<String> {
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

/// What running a file's commands did.
struct Ran {
    /// Commands run (bsc, curl, here-documents).
    commands: usize,
    /// Whether one of them started the service.
    service: bool,
    /// The folder they ran in (removed when this is dropped).
    work: PathBuf,
    _dir: TempDir,
}

/// Runs the commands of `file` (a path relative to the repository) in order,
/// in an empty folder, as a reader would. `bsc_on_path`: whether `bsc` is on
/// the reader's PATH from the start (an operator's, after `make install`) or
/// only after the file's `export PATH=...` (a newcomer's, in the clone).
fn run_in_order(file: &str, bsc_on_path: bool) -> Ran {
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let commands = commands_of(&text);
    let _port = PORT_8080.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        std::net::TcpListener::bind("127.0.0.1:8080").is_ok(),
        "{file}'s commands talk to 127.0.0.1:8080, which another program holds"
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
    let with_bsc = format!("{}:{}:{system_path}", shim.display(), bsc_dir().display());
    // Until the README's `export PATH=...`, a newcomer's shell has no `bsc`.
    let mut path = if bsc_on_path {
        with_bsc.clone()
    } else {
        format!("{}:{system_path}", shim.display())
    };
    let work = dir.path().join("clone");
    std::fs::create_dir_all(&work).unwrap();
    let mut service: Option<Bsc> = None;
    let mut ran = Ran {
        commands: 0,
        service: false,
        work: work.clone(),
        _dir: dir,
    };
    for cmd in &commands {
        if cmd.starts_with("export PATH=") {
            assert_eq!(
                cmd, "export PATH=\"$PWD/target/release:$PATH\"",
                "{file} puts cargo's release binary on the PATH"
            );
            path = with_bsc.clone();
            continue;
        }
        let runs = ["curl ", "bsc ", "cat > ", "python3 -c "]
            .iter()
            .any(|p| cmd.starts_with(p))
            || cmd.split_whitespace().next() == Some("bsc");
        if !runs {
            continue;
        }
        ran.commands += 1;
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
            ran.service = true;
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
            "{file} command failed ({}): {cmd}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if let Some(service) = service {
        assert!(
            service.stop().success(),
            "{file}'s bsc stopped with an error"
        );
    }
    ran
}

#[test]
fn every_bsc_and_curl_command_in_the_readme_works_in_order_as_written() {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let commands = commands_of(&text);
    let count = |prefix: &str| commands.iter().filter(|c| c.starts_with(prefix)).count();
    assert!(count("curl ") >= 15, "{commands:?}");
    assert!(count("bsc ") + count("bsc\n") >= 12, "{commands:?}");
    assert!(count("bsc check ") >= 1, "{commands:?}");
    let ran = run_in_order("README.md", false);
    assert!(
        ran.commands >= 25,
        "{} commands ran: {commands:?}",
        ran.commands
    );
    assert!(ran.service, "the README starts bsc");
    // The first capture: the datagram sent to the config file's handler is a
    // record of its file.
    let files = pcap_files(&ran.work.join("captures"));
    assert!(
        files
            .iter()
            .any(|f| read_pcap(f).2.iter().any(|r| r.data == b"hello")),
        "the first capture's datagram in one of {files:?}"
    );
}

/// Each file of `docs/` on its own, as an operator with bsc installed would
/// run its commands.
#[test]
fn every_bsc_and_curl_command_in_the_docs_works_in_order_as_written() {
    let mut ran = 0;
    for doc in docs() {
        let name = format!("docs/{}", doc.file_name().unwrap().to_str().unwrap());
        ran += run_in_order(&name, true).commands;
    }
    assert!(ran >= 6, "{ran} commands ran in docs/");
}

#[test]
fn the_readme_is_a_newcomers_page_that_links_every_doc() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 400,
        "README.md has {lines} lines: it is the newcomer's page, the rest goes to docs/"
    );
    let links: BTreeSet<String> = links_of(&readme)
        .into_iter()
        .map(|l| l.split('#').next().unwrap().to_string())
        .collect();
    for doc in docs() {
        let name = format!("docs/{}", doc.file_name().unwrap().to_str().unwrap());
        assert!(links.contains(&name), "README.md links {name}");
    }
}

/// `text` without its fenced code blocks and inline code spans (where `](`
/// is not a link).
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    let mut plain = String::new();
    for (i, part) in out.split('`').enumerate() {
        if i % 2 == 0 {
            plain.push_str(part);
        }
    }
    plain
}

/// The targets of the Markdown links (and images) of `text`.
fn links_of(text: &str) -> Vec<String> {
    let prose = prose(text);
    prose
        .match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &prose[i + 2..];
            rest.find(')').map(|end| rest[..end].to_string())
        })
        .collect()
}

/// The anchors GitHub gives the headings of `text`: lower case, punctuation
/// but `-` and `_` dropped, spaces as `-`; a repeated one gets `-1`, `-2`, ...
fn anchors_of(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut unique = slug.clone();
        let mut n = 0;
        while out.contains(&unique) {
            n += 1;
            unique = format!("{slug}-{n}");
        }
        out.insert(unique);
    }
    out
}

#[test]
fn every_relative_link_and_anchor_in_the_readme_and_the_docs_resolves() {
    let mut files = vec![repo().join("README.md")];
    files.extend(docs());
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        for link in links_of(&text) {
            if link.starts_with("https://") || link.starts_with("http://") {
                continue;
            }
            assert!(
                !link.contains(char::is_whitespace) && !link.starts_with('/'),
                "{name}: a relative link without spaces: {link:?}"
            );
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            assert!(target.exists(), "{name}: {link} leads to nothing");
            if !anchor.is_empty() {
                assert!(
                    path.is_empty() || path.ends_with(".md"),
                    "{name}: {link}: an anchor into a Markdown file"
                );
                let anchors = anchors_of(&std::fs::read_to_string(&target).unwrap());
                assert!(
                    anchors.contains(anchor),
                    "{name}: {link}: no heading gives #{anchor} (there are {anchors:?})"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "{checked} links checked");
}

/// The reference's Metrics section names every metric family `/metrics`
/// serves, and serves every name it lists: a config with a UDP handler that
/// ships, a TCP handler and a disk budget makes bsc write every family.
#[test]
fn the_reference_names_every_metric_bsc_serves() {
    let reference = std::fs::read_to_string(repo().join("docs/reference.md")).unwrap();
    let start = reference
        .find("\n## Metrics\n")
        .expect("docs/reference.md has a section \"Metrics\"");
    let section = &reference[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |e| e + 1)];
    let listed: BTreeSet<String> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| w.starts_with("bsc_") || w.starts_with("process_"))
        .map(|w| w.split('{').next().unwrap().to_string())
        .collect();

    let dir = TempDir::new("readme-metrics");
    let cfg = json!({
        "capture_manager": {"root_log_directory": dir.path().join("cap"), "min_free_bytes": 1},
        "handlers": [
            {"name": "tlm", "conn_type": "udp", "address": ["127.0.0.1", free_udp_port()],
             "sequence_check": "ccsds_tm_frame", "ship": ["/bin/true"]},
            {"name": "peer", "conn_type": "tcp", "address": ["127.0.0.1", free_tcp_port()]}
        ]
    });
    let bsc = Bsc::with_config(dir.path(), &cfg);
    let answer = bsc.request("GET", "/metrics", None, b"");
    assert_eq!(answer.status, 200);
    let text = String::from_utf8(answer.body).unwrap();
    let served: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(served.len() >= 40, "{text}");
    let undocumented: Vec<&String> = served.difference(&listed).collect();
    assert!(
        undocumented.is_empty(),
        "docs/reference.md, Metrics, lacks {undocumented:?}"
    );
    let gone: Vec<&String> = listed.difference(&served).collect();
    assert!(
        gone.is_empty(),
        "docs/reference.md, Metrics, lists {gone:?}, which bsc does not serve"
    );
    assert!(bsc.stop().success());
}
