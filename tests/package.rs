//! The package and what an operator sees of it: the system user (sysusers.d), the
//! unit running as that user, the bsc(8) manual page, the Debian changelog, and
//! the .deb itself, installed, upgraded, removed and purged with dpkg inside a
//! throw-away overlay of this machine's root. (lintian judges the release .deb in
//! .ci/run: this file's .deb carries the unstripped test binary.)

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (tests/deps.sh installs it)"))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn sysusers_makes_the_system_user_and_group_bsc() {
    let dir = TempDir::new("sysusers");
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let conf = root.join("usr/lib/sysusers.d/bsc.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::copy(repo().join("systemd/bsc.sysusers"), &conf).unwrap();
    let out = run(
        "systemd-sysusers",
        &[&format!("--root={}", root.display()), "bsc.conf"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("bsc:"))
        .unwrap_or_else(|| panic!("no user bsc: {passwd}"))
        .split(':')
        .collect();
    let uid: u32 = user[2].parse().unwrap();
    assert!(uid > 0 && uid < 1000, "a system uid: {user:?}");
    assert_eq!(user[4], "bsc binary stream capturer");
    assert_eq!(user[5], "/var/lib/bsc");
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    let group: Vec<&str> = group
        .lines()
        .find(|l| l.starts_with("bsc:"))
        .unwrap_or_else(|| panic!("no group bsc: {group}"))
        .split(':')
        .collect();
    assert_eq!(group[2], user[3], "the user's primary group is bsc");
}

#[test]
fn the_unit_runs_as_bsc_so_group_bsc_reads_the_captures() {
    let unit = std::fs::read_to_string(repo().join("systemd/bsc.service")).unwrap();
    let settings: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#')).collect();
    for want in [
        "User=bsc",
        "Group=bsc",
        "UMask=0027",
        "StateDirectory=bsc",
        "StateDirectoryMode=0750",
        "NoNewPrivileges=yes",
    ] {
        assert!(settings.contains(&want), "{want} in bsc.service");
    }
    assert!(
        !settings.iter().any(|l| l.starts_with("DynamicUser=")),
        "a static user, not a dynamic one"
    );
    // Documentation=man:bsc(8) resolves against this tree's page (the ExecStart
    // binary must exist for verify: point a copy at this build).
    let dir = TempDir::new("unitman");
    std::fs::create_dir_all(dir.path().join("man/man8")).unwrap();
    std::fs::copy(
        repo().join("systemd/bsc.8"),
        dir.path().join("man/man8/bsc.8"),
    )
    .unwrap();
    let copy = dir.path().join("bsc.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/bsc", env!("CARGO_BIN_EXE_bsc")),
    )
    .unwrap();
    let manpath = dir.path().join("man");
    let out = run(
        "systemd-analyze",
        &["verify", "--man=yes", copy.to_str().unwrap()],
        &[("MANPATH", manpath.to_str().unwrap())],
    );
    assert!(
        out.status.success() && text(&out).trim().is_empty(),
        "verify: {}",
        text(&out)
    );
}

/// What `man -l` prints for systemd/bsc.8, and its warnings (as lintian runs it).
fn man_page() -> String {
    let page = repo().join("systemd/bsc.8");
    let page = page.to_str().unwrap();
    let env = [("LC_ALL", "C.UTF-8"), ("MANWIDTH", "200")];
    let check = run(
        "man",
        &["--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", page],
        &env,
    );
    assert!(
        check.status.success() && check.stderr.is_empty(),
        "man --warnings: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let out = run("man", &["-l", page], &env);
    assert!(out.status.success(), "{}", text(&out));
    // Join the words man hyphenated at the end of a line.
    let page = String::from_utf8(out.stdout).unwrap();
    let mut joined = String::with_capacity(page.len());
    let mut rest = page.as_str();
    while let Some(i) = rest.find("\u{2010}\n") {
        joined.push_str(&rest[..i]);
        rest = rest[i + "\u{2010}\n".len()..].trim_start_matches(' ');
    }
    joined.push_str(rest);
    joined
}

#[test]
fn the_manual_page_renders_and_covers_the_command_line_and_the_keys() {
    let page = man_page();
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "COMMANDS",
        "CONFIGURATION",
        "SIGNALS",
        "FILES",
        "EXIT STATUS",
        "SEE ALSO",
    ] {
        assert!(
            page.lines().any(|l| l == section),
            "section {section} in:\n{page}"
        );
    }
    assert!(page.contains("bsc - binary stream capturer"), "{page}");
    let source = std::fs::read_to_string(repo().join("systemd/bsc.8")).unwrap();
    assert!(
        source.contains(&format!("\"bsc {}\"", env!("CARGO_PKG_VERSION"))),
        "the .TH line names bsc {}",
        env!("CARGO_PKG_VERSION")
    );

    // Every option and command of --help, every handler key of the reference's
    // table (docs/reference.md, Handler keys).
    let help = run(env!("CARGO_BIN_EXE_bsc"), &["--help"], &[]);
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let mut options: Vec<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches([',', '.']))
        .collect();
    options.push("-c");
    for option in options {
        assert!(page.contains(option), "{option} in the man page");
    }
    let commands = help
        .split("Commands:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Commands: in {help}"));
    let commands: Vec<&str> = commands
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with(' '))
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(commands.len() >= 7, "{commands:?} from {help}");
    let listed = page
        .split("\nCOMMANDS\n")
        .nth(1)
        .and_then(|rest| rest.split("\nCONFIGURATION\n").next())
        .unwrap();
    for command in commands {
        assert!(
            listed
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} ")) || l.trim() == command),
            "command {command} in COMMANDS:\n{listed}"
        );
    }
    let reference = std::fs::read_to_string(repo().join("docs/reference.md")).unwrap();
    let keys: Vec<&str> = reference
        .lines()
        .skip_while(|l| !l.starts_with("| key | default | meaning |"))
        .skip(2)
        .take_while(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1))
        .collect();
    assert!(keys.len() > 20, "{keys:?}");
    for key in keys.iter().chain(&[
        "root_log_directory",
        "min_free_bytes",
        "min_free_percent",
        "persist",
        "on_close_max_running",
        "peer_unreachable_s",
        "ship_max_running",
        "ship_max_pending_age_s",
        "allow_unauthenticated",
        "token",
    ]) {
        assert!(page.contains(key), "key {key} in the man page");
    }
    for file in [
        "/etc/bsc/bsc.json",
        "/var/lib/bsc",
        "<root>/.bsc/files.jsonl",
        "<root>/.bsc/handlers.json",
    ] {
        assert!(page.contains(file), "{file} in FILES");
    }
}

#[test]
fn the_changelog_names_this_version() {
    let changelog = std::fs::read_to_string(repo().join("systemd/changelog")).unwrap();
    let first = changelog.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("bsc ({}) ", env!("CARGO_PKG_VERSION"))),
        "systemd/changelog starts with this version's entry: {first}"
    );
    let out = run(
        "dpkg-parsechangelog",
        &["-l", repo().join("systemd/changelog").to_str().unwrap()],
        &[],
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        text(&out)
    );
}

/// Builds a .deb of the test binary with systemd/make-deb.sh in a copy of the tree.
fn build_deb(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("systemd")).unwrap();
    for f in ["Makefile", "Cargo.toml", "README.md"] {
        std::fs::copy(repo().join(f), tree.join(f)).unwrap();
    }
    for sub in ["systemd", "systemd/examples", "docs"] {
        std::fs::create_dir_all(tree.join(sub)).unwrap();
        for entry in std::fs::read_dir(repo().join(sub)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), tree.join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
    // The test binary stripped, as the shipped one is (`strip = true`): its
    // debug information is most of its 30 MB, which dpkg-deb would compress
    // and dpkg unpack for nothing.
    let bin = dir.join("bsc");
    std::fs::copy(env!("CARGO_BIN_EXE_bsc"), &bin).unwrap();
    let out = run("strip", &[bin.to_str().unwrap()], &[]);
    assert!(out.status.success(), "strip: {}", text(&out));
    let out = Command::new("sh")
        .args(["systemd/make-deb.sh", "amd64", env!("CARGO_PKG_VERSION")])
        .current_dir(&tree)
        .env("BSC_DEB_BIN", &bin)
        .output()
        .unwrap();
    assert!(out.status.success(), "make-deb.sh: {}", text(&out));
    tree.join(format!(
        "target/deb/bsc_{}_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ))
}

#[test]
fn the_deb_carries_the_user_the_man_page_and_debhelper_style_scripts() {
    let dir = TempDir::new("deb");
    let deb = build_deb(dir.path());
    let deb = deb.to_str().unwrap();
    let contents = text(&run("dpkg-deb", &["--contents", deb], &[]));
    for f in [
        "./usr/bin/bsc",
        "./lib/systemd/system/bsc.service",
        "./usr/lib/sysusers.d/bsc.conf",
        "./usr/share/man/man8/bsc.8.gz",
        "./usr/share/doc/bsc/copyright",
        "./usr/share/doc/bsc/changelog.gz",
        "./usr/share/doc/bsc/examples/bsc-ship-s3",
        "./usr/share/doc/bsc/examples/bsc-ship-rsync",
        "./usr/share/doc/bsc/docs/reference.md",
        "./usr/share/lintian/overrides/bsc",
        "./etc/bsc/bsc.json",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(f)),
            "{f} in:\n{contents}"
        );
    }
    let field = |name: &str| text(&run("dpkg-deb", &["--field", deb, name], &[]));
    assert_eq!(
        field("Maintainer").trim(),
        "bsc maintainers <bsc-maintainers@users.noreply.github.com>"
    );
    let control = dir.path().join("control");
    assert!(run(
        "dpkg-deb",
        &["--control", deb, control.to_str().unwrap()],
        &[]
    )
    .status
    .success());
    let read = |f: &str| std::fs::read_to_string(control.join(f)).unwrap();
    assert_eq!(read("conffiles"), "/etc/bsc/bsc.json\n");
    let postinst = read("postinst");
    for want in [
        "systemd-sysusers bsc.conf",
        "deb-systemd-helper enable bsc.service",
        "deb-systemd-invoke try-restart bsc.service",
    ] {
        assert!(postinst.contains(want), "{want} in postinst");
    }
    assert!(read("prerm").contains("deb-systemd-invoke stop bsc.service"));
    assert!(read("postrm").contains("deb-systemd-helper purge bsc.service"));
    for script in ["postinst", "prerm", "postrm"] {
        let s = read(script);
        assert!(
            !s.lines()
                .any(|l| l.trim_start().starts_with("systemctl") && !l.contains("daemon-reload")),
            "{script} leaves systemctl to deb-systemd-helper/-invoke"
        );
        let out = run("sh", &["-n", control.join(script).to_str().unwrap()], &[]);
        assert!(out.status.success(), "{script}: {}", text(&out));
    }
    // md5sums lists every file of the package, with its sum.
    let md5sums = read("md5sums");
    let files = contents.lines().filter(|l| l.starts_with('-')).count();
    assert_eq!(md5sums.lines().count(), files, "{md5sums}");
}

/// Runs `script` as root in a private mount namespace, chrooted into an overlay of
/// this machine's root: dpkg, users and /etc change in the overlay only.
fn in_overlay(dir: &Path, deb: &Path, script: &str) -> String {
    for d in ["upper", "work", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let d = dir.display();
    let outer = format!(
        "set -e
mount -t overlay overlay -o lowerdir=/,upperdir={d}/upper,workdir={d}/work {d}/root
mount -t proc proc {d}/root/proc
mount --rbind /dev {d}/root/dev
mount -t tmpfs tmpfs {d}/root/tmp
mount -t tmpfs tmpfs {d}/root/run
cp {deb} {d}/root/tmp/bsc.deb
exec chroot {d}/root /bin/sh -c \"$0\"",
        deb = deb.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &outer])
        .arg(script)
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "in the overlay: {all}");
    all
}

#[test]
fn dpkg_installs_upgrades_removes_and_purges_the_package() {
    let dir = TempDir::new("dpkg");
    let deb = build_deb(dir.path());
    let log = in_overlay(
        dir.path(),
        &deb,
        "set -e
! getent passwd bsc >/dev/null || { echo 'a user bsc exists already'; exit 1; }
echo '## install'; dpkg -i /tmp/bsc.deb
echo \"## user $(getent passwd bsc)\"
echo \"## group $(getent group bsc)\"
test -L /etc/systemd/system/multi-user.target.wants/bsc.service && echo '## enabled'
echo '{\"handlers\": []}' > /etc/bsc/bsc.json
mkdir -p /var/lib/bsc && echo x > /var/lib/bsc/kept.pcap
echo '## upgrade'; dpkg -i /tmp/bsc.deb
echo \"## config after upgrade: $(cat /etc/bsc/bsc.json)\"
echo '## remove'; dpkg -r bsc
test ! -e /usr/bin/bsc && test -e /etc/bsc/bsc.json && echo '## removed, config kept'
echo '## purge'; dpkg --purge bsc
test ! -e /etc/bsc/bsc.json && echo '## purged the config'
test -e /var/lib/bsc/kept.pcap && echo '## captures kept'
getent passwd bsc >/dev/null && echo '## user kept'
test ! -e /etc/systemd/system/multi-user.target.wants/bsc.service && echo '## unit state purged'
",
    );
    for want in [
        "## user bsc:x:",
        ":bsc binary stream capturer:/var/lib/bsc:",
        "## group bsc:x:",
        "## enabled",
        "## config after upgrade: {\"handlers\": []}",
        "## removed, config kept",
        "## purged the config",
        "## captures kept",
        "## user kept",
        "## unit state purged",
        "bsc: kept the captures in /var/lib/bsc",
        "bsc: kept the system user and group bsc",
    ] {
        assert!(log.contains(want), "{want} in:\n{log}");
    }
}
