use super::*;
use std::time::Duration;

use super::journal::COMPACT_MIN_LINES;

/// The wall clock now, as the loop would pass it.
fn now() -> UnixMicros {
    crate::clock::Clock::System.now()
}

fn files(ages_s: &[u64], bytes: u64) -> Vec<OwnFile> {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    ages_s
        .iter()
        .map(|a| OwnFile {
            path: PathBuf::from(format!("f{a}")),
            trusted: PathBuf::from("/"),
            span: Span::default(),
            id: None,
            bytes,
            closed_at: now - Duration::from_secs(*a),
        })
        .collect()
}

#[test]
fn disk_budget_arithmetic() {
    let b = |bytes, pct| DiskBudget {
        min_free_bytes: bytes,
        min_free_percent: pct,
    };
    assert_eq!(b(None, None).threshold(1000), None);
    assert_eq!(b(Some(300), None).threshold(1000), Some(300));
    assert_eq!(b(None, Some(10.0)).threshold(1000), Some(100));
    assert_eq!(
        b(Some(50), Some(10.0)).threshold(1000),
        Some(100),
        "the larger"
    );
}

#[test]
fn retention_arithmetic() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let f = files(&[50, 40, 30, 20, 10], 100);
    let r = |files: Option<u64>, bytes: Option<u64>, age: Option<u64>| Retention {
        max_files: files,
        max_bytes: bytes,
        max_age: age.map(Duration::from_secs),
    };
    assert_eq!(excess(&f, None, &r(None, None, None), now), 0);
    // Three files at most, the open one included: two closed ones may stay.
    assert_eq!(excess(&f, Some(10), &r(Some(3), None, None), now), 3);
    assert_eq!(excess(&f, None, &r(Some(3), None, None), now), 2);
    assert_eq!(excess(&f, None, &r(Some(10), None, None), now), 0);
    // 500 closed bytes + 80 open, at most 350: drop the oldest three.
    assert_eq!(excess(&f, Some(80), &r(None, Some(350), None), now), 3);
    assert_eq!(
        excess(&f, Some(80), &r(None, Some(10), None), now),
        5,
        "never the open file"
    );
    assert_eq!(excess(&f, None, &r(None, None, Some(25)), now), 3);
    // The strictest limit wins.
    assert_eq!(excess(&f, None, &r(Some(4), Some(1000), Some(45)), now), 1);
}

fn opened(s: &mut Storage, key: &str, path: &Path, root: &Path, n: u32, seq: u64) {
    s.opened(
        key,
        LastFile {
            path: path.to_path_buf(),
            trusted: root.to_path_buf(),
            unnumbered: path.to_path_buf(),
            n,
            seq,
            created: true,
            closed: false,
        },
        (0, seq),
        None,
    );
}

#[test]
fn a_long_file_list_is_walked_after_the_last_file_listed() {
    let root = std::env::temp_dir().join(format!("bsc-storage-walk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let mut s = Storage::open(&root);
    let paths: Vec<PathBuf> = (0..5).map(|i| root.join(format!("f{i}.pcap"))).collect();
    for (i, p) in paths.iter().enumerate() {
        std::fs::write(p, b"x").unwrap();
        opened(&mut s, "h", p, &root, 0, i as u64);
        s.finished(p, Span::default(), None, false, None, now());
    }
    let names =
        |files: Vec<OwnFile>| -> Vec<PathBuf> { files.into_iter().map(|f| f.path).collect() };
    assert_eq!(names(s.naming().files_after("h", None, 2)), paths[..2]);
    let second = s.naming().files("h")[1].clone();
    let after = Some((second.path.as_path(), second.closed_at));
    assert_eq!(names(s.naming().files_after("h", after, 2)), paths[2..4]);
    assert!(s.naming().files_after("nobody", None, 2).is_empty());
    // The file listed last deleted meanwhile: on with the ones closed after it.
    let first = s.naming().files("h")[0].clone();
    s.remove(&first).unwrap();
    s.remove(&second).unwrap();
    let after = Some((second.path.as_path(), second.closed_at));
    let rest = names(s.naming().files_after("h", after, 10));
    assert!(
        rest.ends_with(&paths[3..]) && !rest.contains(&paths[1]),
        "{rest:?}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn journal_keeps_what_exists_and_survives_hostile_names() {
    let root = std::env::temp_dir().join(format!("bsc-storage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    // A name with a newline and a tab: one JSON line each, nothing injected.
    let (a, b, c) = (
        root.join("a\n+h\t.etc.passwd.pcap"),
        root.join("b.pcap"),
        root.join("c.pcap"),
    );
    for p in [&a, &b, &c] {
        std::fs::write(p, b"x").unwrap();
    }
    let mut s = Storage::open(&root);
    assert!(s.last("h").is_none());
    opened(&mut s, "h", &a, &root, 0, 1);
    assert!(s.is_open(&a));
    s.finished(&a, Span::default(), None, false, None, now());
    assert!(!s.is_open(&a));
    opened(&mut s, "h", &b, &root, 0, 2);
    s.finished(&b, Span::default(), None, false, None, now());
    opened(&mut s, "g", &c, &root, 3, 9);
    drop(s);
    let text = std::fs::read_to_string(root.join(".bsc/files.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 5, "{text}");
    std::fs::remove_file(&b).unwrap();
    let mut s = Storage::open(&root);
    let last = s.last("h").unwrap();
    assert_eq!(
        (last.path.clone(), last.seq, last.closed),
        (b.clone(), 2, true)
    );
    let g = s.last("g").unwrap();
    assert_eq!(
        (g.n, g.seq, g.closed),
        (3, 9, false),
        "open when bsc stopped"
    );
    // Only `a` is left to delete for h (b is gone); the budget takes it.
    let (key, f) = s.take_oldest(true).unwrap();
    assert_eq!((key.as_str(), &f.path), ("h", &a));
    s.remove(&f).unwrap();
    assert!(!a.exists() && c.exists());
    assert!(s.take_oldest(true).is_none(), "g's file was never closed");
    // A forged entry outside its trusted folder is refused.
    let forged = OwnFile {
        path: PathBuf::from("/etc/passwd"),
        trusted: root.clone(),
        bytes: 1,
        closed_at: system_time(now()),
        span: Span::default(),
        id: None,
    };
    assert!(s.remove(&forged).is_err());
    let link = OwnFile {
        path: root.join("sub/x.pcap"),
        trusted: root.clone(),
        bytes: 1,
        closed_at: system_time(now()),
        span: Span::default(),
        id: None,
    };
    let outside = root.with_extension("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("x.pcap"), b"keep").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
    assert!(s.remove(&link).is_err(), "no deletion through a link");
    assert!(outside.join("x.pcap").exists());
    std::fs::remove_dir_all(&outside).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
}

fn ship(cmd: &str) -> ShipSpec {
    ShipSpec {
        argv: vec![cmd.to_string()],
        timeout_s: 300.0,
        retry_max_s: 600.0,
        delete_after: false,
    }
}

#[test]
fn files_waiting_for_their_hook_are_skipped_by_retention_and_the_budgets_normal_pass() {
    let root = std::env::temp_dir().join(format!("bsc-hookq-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let paths: Vec<PathBuf> = (0..4).map(|i| root.join(format!("{i}.pcap"))).collect();
    let mut s = Storage::open(&root);
    for (i, p) in paths.iter().enumerate() {
        std::fs::write(p, vec![b'x'; 10]).unwrap();
        opened(&mut s, "k", p, &root, 0, i as u64 + 1);
        // The first two wait for their hook.
        s.finished(p, Span::default(), None, i < 2, None, now());
    }
    let r = Retention {
        max_files: Some(1),
        ..Retention::default()
    };
    let gone = s.take_excess("k", None, &r, now());
    assert_eq!(
        gone.iter().map(|f| &f.path).collect::<Vec<_>>(),
        [&paths[2]],
        "held files are skipped and still counted"
    );
    assert_eq!(
        s.take_oldest(false).unwrap().1.path,
        paths[3],
        "the budget takes the newer file first"
    );
    assert!(s.take_oldest(false).is_none(), "and spares them too");
    assert!(
        s.queues().hook_pending(&paths[0]),
        "a running hook holds its file"
    );
    s.hook_done(&paths[0]);
    assert_eq!(s.take_oldest(false).unwrap().1.path, paths[0]);
    assert_eq!(
        s.take_oldest(true).unwrap().1.path,
        paths[1],
        "when nothing else is left"
    );
    drop(s);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_ship_queue_survives_restarts_and_compaction_and_retention_spares_it() {
    let root = std::env::temp_dir().join(format!("bsc-shipq-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    // A name no line format survives: newline, quote, tab, backslash.
    let names = ["a\n{\"x\":1}\t.pcap", "b.pcap", "c.pcap", "d.pcap"];
    let paths: Vec<PathBuf> = names.iter().map(|n| root.join(n)).collect();
    let mut s = Storage::open(&root);
    for (i, p) in paths.iter().enumerate() {
        std::fs::write(p, vec![b'x'; 10]).unwrap();
        opened(&mut s, "k", p, &root, 0, i as u64 + 1);
        s.finished(
            p,
            Span::default(),
            None,
            false,
            Some(&ship("/bin/up")),
            now(),
        );
    }
    assert_eq!(
        s.queues().next_unshipped("k").unwrap().path,
        paths[0],
        "oldest first"
    );
    assert_eq!(s.queues().backlog("k").files, 4);
    assert_eq!(s.queues().backlog("k").bytes, 40);
    // Retention: at most one file; none may go while all wait to ship.
    let r = Retention {
        max_files: Some(1),
        ..Retention::default()
    };
    assert!(s.take_excess("k", None, &r, now()).is_empty());
    assert!(s.take_oldest(false).is_none(), "the budget spares them too");
    assert!(s.shipped(&paths[0]));
    assert!(!s.shipped(&paths[0]), "once");
    assert!(s.shipped(&paths[1]));
    drop(s);
    let mut s = Storage::open(&root); // compacts
    assert_eq!(s.queues().backlog("k").files, 2);
    assert_eq!(s.queues().next_unshipped("k").unwrap().path, paths[2]);
    assert_eq!(
        s.queues().next_unshipped("k").unwrap().ship,
        ship("/bin/up")
    );
    assert!(!s.queues().is_unshipped(&paths[0]) && s.queues().is_unshipped(&paths[3]));
    // Shipped files may go (oldest first), and deletion stops at the
    // first waiting one.
    let gone = s.take_excess("k", None, &r, now());
    assert_eq!(
        gone.iter().map(|f| &f.path).collect::<Vec<_>>(),
        [&paths[0], &paths[1]]
    );
    // Only the disk budget takes a waiting file, when asked to.
    let (_, f) = s.take_oldest(true).unwrap();
    assert_eq!(f.path, paths[2]);
    s.remove(&f).unwrap();
    assert_eq!(s.queues().next_unshipped("k").unwrap().path, paths[3]);
    // Forced lines in the journal for a file bsc never closed do nothing.
    drop(s);
    let journal = root.join(".bsc/files.jsonl");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str("{\"shipped\":{\"path\":\"/nowhere\"}}\n{\"closed\":{\"path\": tor");
    std::fs::write(&journal, text).unwrap();
    let s = Storage::open(&root);
    assert_eq!(s.queues().backlog("k").files, 1);
    assert_eq!(s.queues().unshipped_keys(), ["k"]);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_file_left_open_keeps_its_ship_settings_across_restarts_and_compaction() {
    let root = std::env::temp_dir().join(format!("bsc-leftship-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join(STATE_DIR)).unwrap();
    let (a, b) = (root.join("a.pcap"), root.join("b.pcap"));
    let mut s = Storage::open(&root);
    s.opened("k", last_file(&a, &root, 1), (0, 1), Some(&ship("/bin/up")));
    drop(s); // "a crash": never closed
    for _ in 0..2 {
        let s = Storage::open(&root); // compacts each time
        let left = s.left_open();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].2, Some(ship("/bin/up")));
    }
    // A journal of an earlier version (no `ship` in `opened`) still reads.
    let line = format!(
        "{{\"opened\":{{\"key\":\"g\",\"path\":{b:?},\"trusted\":{root:?},\"unnumbered\":{b:?},\"n\":0,\"seq\":4,\"created\":true}}}}\n"
    );
    let journal = root.join(".bsc/files.jsonl");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str(&line);
    std::fs::write(&journal, text).unwrap();
    let s = Storage::open(&root);
    assert_eq!(s.last("g").unwrap().seq, 4);
    assert!(s
        .left_open()
        .iter()
        .any(|(k, _, ship)| k == "g" && ship.is_none()));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_hook_not_journaled_as_ended_waits_again_after_a_restart_and_old_journals_read() {
    let root = std::env::temp_dir().join(format!("bsc-hookend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let paths: Vec<PathBuf> = (0..3).map(|i| root.join(format!("{i}.pcap"))).collect();
    let mut s = Storage::open(&root);
    for (i, p) in paths.iter().enumerate() {
        std::fs::write(p, b"x").unwrap();
        opened(&mut s, "k", p, &root, 0, i as u64 + 1);
        s.finished(p, Span::default(), None, true, None, now());
    }
    s.hook_done(&paths[0]);
    drop(s); // "a crash" while the hooks of 1 and 2 ran
             // Journals of earlier versions: `hook_started` reads as ended.
    let journal = root.join(".bsc/files.jsonl");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str(&format!(
        "{{\"hook_started\":{{\"path\":{:?}}}}}\n",
        paths[2]
    ));
    std::fs::write(&journal, text).unwrap();
    for _ in 0..2 {
        let mut s = Storage::open(&root); // compacts each time
        let waiting: Vec<bool> = paths.iter().map(|p| s.queues().hook_pending(p)).collect();
        assert_eq!(waiting, [false, true, false]);
        assert_eq!(s.take_unhooked("k", "h").len(), 1);
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn an_intent_is_journaled_before_the_file_and_confirmed_without_a_second_line() {
    let root = std::env::temp_dir().join(format!("bsc-intent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let (a, b, c) = (
        root.join("a.pcap"),
        root.join("b.pcap"),
        root.join("c.pcap"),
    );
    let mut s = Storage::open(&root);
    let lines = || {
        std::fs::read_to_string(root.join(".bsc/files.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    // Journaled, memory unchanged until the file exists.
    s.opening("k", last_file(&a, &root, 1), Some(&ship("/bin/up")));
    assert!(s.last("k").is_none());
    assert_eq!(lines(), 1);
    std::fs::write(&a, b"x").unwrap();
    s.opened("k", last_file(&a, &root, 1), (0, 1), Some(&ship("/bin/up")));
    assert_eq!(lines(), 1, "confirmed without a second line");
    assert_eq!(s.last("k").unwrap().path, a);
    s.finished(&a, Span::default(), None, false, None, now());
    // Not created (a full disk), retried: one line; naming stays after `a`.
    s.opening("k", last_file(&b, &root, 2), None);
    s.opening("k", last_file(&b, &root, 2), None);
    assert_eq!(lines(), 3);
    assert_eq!(s.last("k").unwrap().path, a);
    // "A crash" right after an intent: the next start finds it left open.
    s.opening("k", last_file(&c, &root, 3), None);
    drop(s);
    assert_eq!(lines(), 4);
    let mut s = Storage::open(&root);
    let last = s.last("k").unwrap();
    assert_eq!(
        (&last.path, last.seq, last.created, last.closed),
        (&c, 3, true, false)
    );
    assert_eq!(s.naming().files("k").len(), 1);
    // An intent whose append has the journal compacted is still in it.
    for i in 4..1100u64 {
        let p = root.join(format!("f{i}.pcap"));
        s.opening("k", last_file(&p, &root, i), None);
        let text = std::fs::read_to_string(root.join(".bsc/files.jsonl")).unwrap();
        let name = format!("f{i}.pcap");
        assert!(text.lines().last().unwrap().contains(&name), "{i}");
        std::fs::write(&p, b"x").unwrap();
        s.opened("k", last_file(&p, &root, i), (0, i), None);
        s.finished(&p, Span::default(), None, false, None, now());
        std::fs::remove_file(&p).unwrap();
    }
    assert!(lines() < 1100, "compacted");
    std::fs::remove_dir_all(&root).unwrap();
}

fn last_file(path: &Path, root: &Path, seq: u64) -> LastFile {
    LastFile {
        path: path.to_path_buf(),
        trusted: root.to_path_buf(),
        unnumbered: path.to_path_buf(),
        n: 0,
        seq,
        created: true,
        closed: false,
    }
}

#[test]
fn the_journal_is_compacted_while_running() {
    let root = std::env::temp_dir().join(format!("bsc-compact-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let mut s = Storage::open(&root);
    let r = Retention {
        max_files: Some(2),
        ..Retention::default()
    };
    for i in 0..3000u64 {
        let p = root.join(format!("f{i}.pcap"));
        std::fs::write(&p, b"x").unwrap();
        opened(&mut s, "k", &p, &root, 0, i + 1);
        s.finished(&p, Span::default(), None, false, None, now());
        for f in s.take_excess("k", None, &r, now()) {
            s.remove(&f).unwrap();
        }
    }
    let lines = std::fs::read_to_string(root.join(".bsc/files.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(lines < 2 * COMPACT_MIN_LINES as usize + 10, "{lines} lines");
    drop(s);
    let s = Storage::open(&root);
    assert_eq!(s.last("k").unwrap().seq, 3000);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_state_folder_is_known_after_it_was_deleted_and_made_again() {
    let root = std::env::temp_dir().join(format!("bsc-statedir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join(STATE_DIR)).unwrap();
    let storage = Storage::open(&root);
    let open = |dirs: &[&str]| sys::open_dir_beneath(&root, dirs, false).unwrap();
    assert!(storage.is_state_dir(&open(&[STATE_DIR])));
    assert!(!storage.is_state_dir(&open(&[])));
    // Deleted and made again: a new inode, still the state folder, and the
    // old one's identity (which a new capture folder may be given) is not.
    std::fs::remove_dir_all(root.join(STATE_DIR)).unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    assert!(!storage.is_state_dir(&open(&["sub"])));
    std::fs::create_dir(root.join(STATE_DIR)).unwrap();
    assert!(storage.is_state_dir(&open(&[STATE_DIR])));
    assert!(!storage.is_state_dir(&open(&["sub"])));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_clocks_word_is_journaled_per_file_and_old_lines_read_as_unknown() {
    use crate::clock::ClockWord;
    let root = std::env::temp_dir().join(format!("bsc-clockword-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join(".bsc")).unwrap();
    let line = |i: u32, closed: &str| {
        let p = root.join(format!("{i}.pcap"));
        std::fs::write(&p, b"x").unwrap();
        format!(
            "{{\"opened\":{{\"key\":\"k\",\"path\":{p:?},\"trusted\":{root:?},\"unnumbered\":{p:?},\"n\":0,\"seq\":{i},\"created\":true}}}}\n\
             {{\"closed\":{{\"path\":{p:?}{closed}}}}}\n"
        )
    };
    // An earlier version's line (no clock), then this version's.
    let text = line(1, ",\"records\":3,\"first_ts\":5,\"last_ts\":9")
        + &line(
            2,
            ",\"records\":1,\"clock\":{\"synchronized\":false,\"max_error_us\":16000000}",
        );
    std::fs::write(root.join(".bsc/files.jsonl"), text).unwrap();
    for _ in 0..2 {
        let s = Storage::open(&root); // compacts each time
        let files = s.naming().files("k");
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].span.records, Some(3), "the rest of the line reads");
        assert_eq!(files[0].span.clock, ClockWord::UNKNOWN);
        assert_eq!(
            files[1].span.clock,
            ClockWord {
                synchronized: Some(false),
                max_error_us: Some(16_000_000)
            }
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}
