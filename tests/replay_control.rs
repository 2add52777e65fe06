//! `bsc replay` under control: `--loop`, Ctrl-C's summary, pause and resume
//! without a burst, the progress line on a terminal, receivers that go away,
//! and hostile arguments. tests/replay.rs has what is sent and its pace.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::replay::*;
use common::{wait_until, TempDir};

#[test]
fn loop_starts_again_one_mean_spacing_after_the_last_record() {
    let dir = TempDir::new("replay-loop");
    let file = dir.0.join("five.pcap");
    write_pcap(&file, 147, false, &evenly(5, 100_000_000));
    let rx = UdpReceiver::start();
    let child = spawn_replay(&[path_str(&file), "--loop", "--to", &rx.url()]);
    wait_until("12 datagrams", || rx.count() >= 12);
    kill(&child, "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("stopped by Ctrl-C"), "{stdout}");
    assert!(stdout.contains("3 passes"), "{stdout}");
    let payloads = rx.payloads();
    let want: Vec<Vec<u8>> = (0..payloads.len() as u64)
        .map(|i| numbered(i % 5))
        .collect();
    assert_eq!(payloads, want);
    assert_eq!(number_after(&stdout, "sent"), payloads.len() as u64);
    // Last of pass one to first of pass two: the mean spacing, 100 ms (the
    // bounds leave room for a receiver thread that wakes late on a loaded
    // machine; a burst would be about 0).
    let times = rx.times();
    let gap = times[5].duration_since(times[4]);
    assert!(
        gap >= Duration::from_millis(70) && gap < Duration::from_millis(400),
        "{gap:?}"
    );
    let pass = times[10].duration_since(times[5]);
    assert!(pass >= Duration::from_millis(440), "{pass:?}");
}

#[test]
fn ctrl_c_stops_with_a_summary_of_what_went() {
    let dir = TempDir::new("replay-int");
    let file = dir.0.join("long.pcap");
    write_pcap(&file, 147, false, &evenly(1000, 10_000_000));
    let rx = UdpReceiver::start();
    let child = spawn_replay(&[path_str(&file), "--to", &rx.url()]);
    wait_until("20 datagrams", || rx.count() >= 20);
    kill(&child, "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stdout = text(&out.stdout);
    let sent = number_after(&stdout, "sent");
    assert!((20..1000).contains(&sent), "{stdout}");
    assert!(stdout.contains("lag behind schedule p50"), "{stdout}");
    assert!(
        stdout.contains("stopped by Ctrl-C (SIGINT) before the end"),
        "{stdout}"
    );
    wait_until("every datagram sent to arrive", || {
        rx.count() as u64 >= sent
    });
    assert_eq!(rx.count() as u64, sent);
    // SIGTERM too.
    let child = spawn_replay(&[path_str(&file), "--to", &rx.url()]);
    wait_until("more datagrams", || rx.count() as u64 >= sent + 5);
    kill(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(text(&out.stdout).contains("stopped by SIGTERM"));
}

fn state_of(child: &Child) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .and_then(|s| s.trim().chars().next())
        .unwrap_or('?')
}

/// The records still to come after `resumed` (all but `before` of 300, 10 ms
/// apart) kept their pace: they took their schedule's time, where a burst of
/// the pause's second (100 records at once) would take a second less; and no
/// 50 ms held anything like that burst. Arrival times are the receiver
/// thread's, which a loaded machine may wake late (bunching arrivals, making
/// the last later, never earlier), hence the margins.
fn assert_paced_after(rx: &UdpReceiver, resumed: Instant, before: usize) {
    let after: Vec<Instant> = rx.times().into_iter().filter(|t| *t >= resumed).collect();
    let remaining = 300 - before;
    assert!(
        after.len() + 2 >= remaining,
        "{} of {remaining}",
        after.len()
    );
    let took = after[after.len() - 1].duration_since(resumed);
    let schedule = Duration::from_millis(10 * (remaining as u64 - 1));
    assert!(
        took + Duration::from_millis(300) >= schedule,
        "the {remaining} records after resuming took {took:?} of a {schedule:?} schedule"
    );
    let most = after
        .iter()
        .map(|t| {
            after
                .iter()
                .filter(|u| **u >= *t && u.duration_since(*t) < Duration::from_millis(50))
                .count()
        })
        .max()
        .unwrap();
    assert!(most <= 60, "{most} records within 50 ms after resuming");
}

#[test]
fn a_pause_resumes_without_a_burst() {
    let dir = TempDir::new("replay-pause");
    let file = dir.0.join("paced.pcap");
    // 3 s of record at 100 Hz.
    write_pcap(&file, 147, false, &evenly(300, 10_000_000));
    let rx = UdpReceiver::start();
    let child = spawn_replay(&[path_str(&file), "--to", &rx.url()]);
    wait_until("50 datagrams", || rx.count() >= 50);
    kill(&child, "TSTP");
    wait_until("the replay to stop", || state_of(&child) == 'T');
    // The pause itself: a second in which nothing arrives (once the
    // receiver has read what was sent before the stop).
    std::thread::sleep(Duration::from_millis(300));
    let stopped_with = rx.count();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(rx.count(), stopped_with);
    let resumed = Instant::now();
    kill(&child, "CONT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("replay: paused 1."), "{stdout}");
    wait_until("300 datagrams", || rx.count() >= 300);
    assert_paced_after(&rx, resumed, stopped_with);
    // SIGSTOP from elsewhere, then SIGCONT: no burst either.
    let rx = UdpReceiver::start();
    let child = spawn_replay(&[path_str(&file), "--to", &rx.url()]);
    wait_until("50 datagrams", || rx.count() >= 50);
    kill(&child, "STOP");
    wait_until("the replay to stop", || state_of(&child) == 'T');
    std::thread::sleep(Duration::from_millis(300));
    let stopped_with = rx.count();
    std::thread::sleep(Duration::from_millis(700));
    let resumed = Instant::now();
    kill(&child, "CONT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    wait_until("300 datagrams", || rx.count() >= 300);
    assert_paced_after(&rx, resumed, stopped_with);
}

#[test]
fn receivers_that_go_away() {
    let dir = TempDir::new("replay-gone");
    let file = dir.0.join("tlm.pcap");
    write_pcap(&file, 147, false, &evenly(50, 1000));
    // UDP with nothing listening: refusals counted, the replay goes on.
    let port = common::free_udp_port();
    let out = replay(&[
        path_str(&file),
        "--to",
        &format!("udp://127.0.0.1:{port}"),
        "--speed",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(number_after(&stdout, "refused") >= 1, "{stdout}");
    // TCP: refused at connect.
    let port = common::free_tcp_port();
    let out = replay(&[path_str(&file), "--to", &format!("tcp://127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("connection refused (is the receiver listening?)"),
        "{}",
        text(&out.stderr)
    );
    // TCP: the receiver takes a little, then resets the connection.
    let long = dir.0.join("long.pcap");
    write_pcap(&long, 147, false, &evenly(2000, 5_000_000));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut some = [0u8; 240];
        c.read_exact(&mut some).unwrap();
        // Linger 0: close sends a reset.
        reset_on_close(&c);
        drop(c);
    });
    let out = replay(&[path_str(&long), "--to", &format!("tcp://127.0.0.1:{port}")]);
    peer.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("went away"), "{stderr}");
    assert!(text(&out.stdout).contains("failed before the end"));
    assert!(number_after(&text(&out.stdout), "sent") >= 10);
}

/// SO_LINGER of zero, so closing `c` sends a reset (std's `set_linger` is
/// unstable).
fn reset_on_close(c: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a linger struct of the size given.
    let rc = unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

#[test]
fn hostile_arguments_get_clear_errors() {
    let dir = TempDir::new("replay-hostile");
    let good = dir.0.join("good.pcap");
    write_pcap(&good, 147, false, &evenly(3, 1000));
    let g = path_str(&good);
    let cases: &[(&[&str], i32, &str)] = &[
        (&[g], 2, "give the target"),
        (&[g, "--to", "127.0.0.1:9000"], 2, "neither a target"),
        (&[g, "--to", "udp://127.0.0.1:0"], 2, "1..65535"),
        (&[g, "--to", "udp://127.0.0.1:99999"], 2, "1..65535"),
        (&[g, "--to", "ftp://127.0.0.1:21"], 2, "not udp or tcp"),
        (&[g, "--to", "udp://"], 2, "port is missing"),
        (
            &[g, "--to", "udp://a:1", "--to", "tcp://b:2"],
            2,
            "two targets",
        ),
        (
            &[g, "--to", "udp://127.0.0.1:9", "--to", "1", "--to", "2"],
            2,
            "two window ends",
        ),
        (
            &[g, "--to", "udp://127.0.0.1:9", "--speed", "0"],
            2,
            "--speed \"0\"",
        ),
        (
            &[g, "--to", "udp://127.0.0.1:9", "--speed", "-1"],
            2,
            "--speed \"-1\"",
        ),
        (
            &[g, "--to", "udp://127.0.0.1:9", "--speed", "NaN"],
            2,
            "--speed \"NaN\"",
        ),
        (
            &[g, "--to", "udp://127.0.0.1:9", "--speed", "inf"],
            2,
            "--speed \"inf\"",
        ),
        (
            &[g, "--to", "udp://127.0.0.1:9", "--from", "noon"],
            2,
            "--from: \"noon\" is not a time",
        ),
        (&["--to", "udp://127.0.0.1:9"], 2, "give the pcap files"),
        (
            &[g, "--name", "tlm", "--to", "udp://127.0.0.1:9"],
            2,
            "not both",
        ),
        (
            &["/no/such.pcap", "--to", "udp://127.0.0.1:9"],
            1,
            "/no/such.pcap: cannot open",
        ),
    ];
    for (args, code, needle) in cases {
        let out = replay(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty() || *code != 2, "{args:?}");
    }
    // A file that is not pcap, an empty one, a folder: refused before anything is sent.
    let text_file = dir.0.join("notes.txt");
    std::fs::write(&text_file, "hello, this is not a capture at all").unwrap();
    let empty = dir.0.join("empty.pcap");
    std::fs::write(&empty, "").unwrap();
    let rx = UdpReceiver::start();
    for (bad, needle) in [
        (path_str(&text_file), "not a classic pcap file"),
        (path_str(&empty), "shorter than a pcap header"),
        (path_str(dir.path()), "a folder"),
    ] {
        let out = replay(&[g, bad, "--to", &rx.url()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
    }
    // A truncated file: what came before the cut goes, then a clear error.
    let whole = dir.0.join("whole.pcap");
    write_pcap(&whole, 147, false, &evenly(10, 1000));
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.0.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let out = replay(&[path_str(&cut), "--to", &rx.url(), "--speed", "max"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cut.pcap: record 10 is cut short"),
        "{}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("sent 9 records"), "{stdout}");
    assert!(stdout.contains("failed before the end"), "{stdout}");
    wait_until("the 9 records before the cut", || rx.count() >= 9);
}

#[test]
fn a_terminal_gets_a_progress_line() {
    let dir = TempDir::new("replay-tty");
    let file = dir.0.join("tlm.pcap");
    write_pcap(&file, 147, false, &evenly(40, 20_000_000));
    let rx = UdpReceiver::start();
    // `script` runs the replay on a pseudo-terminal.
    let line = format!(
        "{} replay {} --to {}",
        env!("CARGO_BIN_EXE_bsc"),
        path_str(&file),
        rx.url()
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen = text(&out.stdout);
    assert!(seen.contains("\rbsc replay: sent "), "{seen:?}");
    assert!(seen.contains("record time 2026-12-07T10:00:00"), "{seen:?}");
    assert!(seen.contains("replay: sent 40 records"), "{seen:?}");
    // Without a terminal, no progress line.
    let out = replay(&[path_str(&file), "--to", &rx.url(), "--speed", "10"]);
    assert!(
        !text(&out.stderr).contains("bsc replay: sent"),
        "{}",
        text(&out.stderr)
    );
}
