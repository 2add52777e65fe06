use super::*;
use pcap_file::pcap::PcapReader;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bsc-pcap-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Reads a file back with pcap-file's reader (not bsc's writer).
fn read_back(path: &Path) -> (PcapHeader, Vec<(u64, Vec<u8>)>) {
    let mut r = PcapReader::new(File::open(path).unwrap()).unwrap();
    let header = r.header();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        out.push((p.timestamp.as_micros() as u64, p.data.into_owned()));
    }
    (header, out)
}

#[test]
fn header_bytes_match_ait_on_little_endian() {
    let h = global_header(LinkType::User0, Precision::Micro);
    if cfg!(target_endian = "little") {
        // From AIT's file (reference/57): d4c3b2a1 0200 0400 ... ffff0000 93000000
        assert_eq!(
            h,
            [
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0x93,
                0, 0, 0
            ]
        );
    }
    assert_eq!(
        u32::from_ne_bytes(
            global_header(LinkType::Ethernet, Precision::Micro)[20..24]
                .try_into()
                .unwrap()
        ),
        1
    );
}

#[test]
fn record_encoding() {
    let mut out = Vec::new();
    let n = encode_record(
        &mut out,
        Precision::Micro,
        UnixMicros(1_795_845_904_000_123).into(),
        b"hello",
        5,
    );
    assert_eq!(n, 21);
    assert_eq!(
        u32::from_ne_bytes(out[0..4].try_into().unwrap()),
        1_795_845_904
    );
    assert_eq!(u32::from_ne_bytes(out[4..8].try_into().unwrap()), 123);
    assert_eq!(u32::from_ne_bytes(out[8..12].try_into().unwrap()), 5);
    assert_eq!(u32::from_ne_bytes(out[12..16].try_into().unwrap()), 5);
    assert_eq!(&out[16..], b"hello");
    // Oversized: cut to the snaplen, orig_len keeps the truth.
    let big = vec![7u8; 70_000];
    out.clear();
    encode_record(
        &mut out,
        Precision::Micro,
        UnixMicros(0).into(),
        &big,
        big.len(),
    );
    assert_eq!(out.len(), 16 + 65535);
    assert_eq!(u32::from_ne_bytes(out[12..16].try_into().unwrap()), 70_000);
}

#[test]
fn nanosecond_header_and_records() {
    let h = global_header(LinkType::User0, Precision::Nano);
    assert_eq!(u32::from_ne_bytes(h[0..4].try_into().unwrap()), 0xa1b2_3c4d);
    if cfg!(target_endian = "little") {
        assert_eq!(h[0..4], [0x4d, 0x3c, 0xb2, 0xa1]);
    }
    // Only the magic differs from the microsecond header.
    assert_eq!(
        h[4..],
        global_header(LinkType::User0, Precision::Micro)[4..]
    );
    let (_, parsed) = PcapHeader::from_slice(&h).unwrap();
    assert_eq!(parsed.ts_resolution, TsResolution::NanoSecond);
    assert_eq!(parsed.datalink, DataLink::USER0);

    let ts = UnixNanos(1_795_845_904_000_123_456);
    let mut out = Vec::new();
    assert_eq!(encode_record(&mut out, Precision::Nano, ts, b"hi", 2), 18);
    let word = |o: &[u8], i: usize| u32::from_ne_bytes(o[i..i + 4].try_into().unwrap());
    assert_eq!(word(&out, 0), 1_795_845_904);
    assert_eq!(word(&out, 4), 123_456);
    assert_eq!(word(&out, 8), 2);
    assert_eq!(word(&out, 12), 2);
    assert_eq!(&out[16..], b"hi");
    // The same instant in a microsecond file: truncated to the microsecond.
    out.clear();
    encode_record(&mut out, Precision::Micro, ts, b"hi", 2);
    assert_eq!(word(&out, 0), 1_795_845_904);
    assert_eq!(word(&out, 4), 123);
}

#[test]
fn precisions_never_mix_in_one_file() {
    let dir = temp_dir("precision");
    let d = sys::open_dir_beneath(&dir, &[], false).unwrap();
    let open_at = |name: &str, p: Precision| {
        PcapFile::open(&d, name, dir.join(name), LinkType::User0, p, true, &|_| {
            false
        })
        .unwrap()
    };
    for (name, made, other) in [
        ("n.pcap", Precision::Nano, Precision::Micro),
        ("u.pcap", Precision::Micro, Precision::Nano),
    ] {
        let (mut f, how) = ready(open_at(name, made));
        assert_eq!(how, Opened::Created);
        let mut buf = Vec::new();
        encode_record(&mut buf, made, UnixNanos(1_000_000_789), b"one", 3);
        f.append(&buf, 1).unwrap();
        drop(f);
        let before = std::fs::read(dir.join(name)).unwrap();
        match open_at(name, other) {
            Attempt::Taken(why) => assert!(why.contains("timestamps"), "{why}"),
            Attempt::Ready(..) => panic!("{name}: {made:?} file opened for {other:?}"),
        }
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), before);
        // The same precision appends, and the scan reads its timestamps.
        let (f, how) = ready(open_at(name, made));
        assert_eq!(how, Opened::Appended { torn_bytes: 0 });
        assert_eq!(f.earlier().first_ts, Some(UnixMicros(1_000_000)));
    }
    assert_eq!(precision_of(&d, "n.pcap"), Some(Precision::Nano));
    assert_eq!(precision_of(&d, "u.pcap"), Some(Precision::Micro));
    assert_eq!(precision_of(&d, "none.pcap"), None);
    // pcap-file reads the nanosecond file at nanoseconds.
    let mut r = PcapReader::new(File::open(dir.join("n.pcap")).unwrap()).unwrap();
    assert_eq!(r.header().ts_resolution, TsResolution::NanoSecond);
    let p = r.next_packet().unwrap().unwrap();
    assert_eq!(p.timestamp.as_nanos(), 1_000_000_789);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Opens `path` as a handler would (its folder created).
fn open(path: &Path, may_append: bool) -> Attempt {
    let dir = sys::open_dir_beneath(path.parent().unwrap(), &[], true).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    PcapFile::open(
        &dir,
        name,
        path.to_path_buf(),
        LinkType::User0,
        Precision::Micro,
        may_append,
        &|_| false,
    )
    .unwrap()
}

fn ready(a: Attempt) -> (PcapFile, Opened) {
    match a {
        Attempt::Ready(f, how) => (f, how),
        Attempt::Taken(why) => panic!("taken: {why}"),
    }
}

#[test]
fn create_then_append_then_repair_torn_record() {
    let dir = temp_dir("append");
    let path = dir.join("sub/a.pcap");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (mut f, how) = ready(open(&path, true));
    assert_eq!(how, Opened::Created);
    let mut buf = Vec::new();
    encode_record(
        &mut buf,
        Precision::Micro,
        UnixMicros(1_000_000).into(),
        b"one",
        3,
    );
    f.append(&buf, 1).unwrap();
    drop(f);

    assert!(
        matches!(open(&path, false), Attempt::Taken(_)),
        "no append unless asked"
    );
    let (mut f, how) = ready(open(&path, true));
    assert_eq!(how, Opened::Appended { torn_bytes: 0 });
    assert_eq!(f.bytes(), 24 + 19);
    buf.clear();
    encode_record(
        &mut buf,
        Precision::Micro,
        UnixMicros(2_000_000).into(),
        b"two",
        3,
    );
    // Simulate a crash in the middle of this record.
    f.file.write_all(&buf[..10]).unwrap();
    drop(f);

    let (mut f, how) = ready(open(&path, true));
    assert_eq!(how, Opened::Appended { torn_bytes: 10 });
    f.append(&buf, 1).unwrap();
    f.finish().unwrap();
    let (h, records) = read_back(&path);
    assert_eq!(h.datalink, DataLink::USER0);
    assert_eq!(
        records,
        vec![(1_000_000, b"one".to_vec()), (2_000_000, b"two".to_vec())]
    );
    // Finished: read-only, and never appended to again.
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, MODE_CLOSED);
    match open(&path, true) {
        Attempt::Taken(why) => assert!(why.contains("closed"), "{why}"),
        Attempt::Ready(..) => panic!("a finished file was opened again"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn foreign_headers_and_links_are_never_touched() {
    let dir = temp_dir("foreign");
    let path = dir.join("x.pcap");
    std::fs::write(&path, global_header(LinkType::Ethernet, Precision::Micro)).unwrap();
    match open(&path, true) {
        Attempt::Taken(reason) => assert!(reason.contains("ETHERNET"), "{reason}"),
        Attempt::Ready(..) => panic!("foreign header accepted"),
    }
    let notes = dir.join("n.pcap");
    std::fs::write(&notes, b"operator's notes, not a pcap at all").unwrap();
    assert!(matches!(open(&notes, true), Attempt::Taken(_)));
    assert_eq!(
        std::fs::read(&notes).unwrap(),
        b"operator's notes, not a pcap at all"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        global_header(LinkType::Ethernet, Precision::Micro)
    );
    // A symlink is never written through, even to a valid pcap file.
    let target = dir.join("t.pcap");
    std::fs::write(&target, global_header(LinkType::User0, Precision::Micro)).unwrap();
    std::os::unix::fs::symlink(&target, dir.join("l.pcap")).unwrap();
    let d = sys::open_dir_beneath(&dir, &[], false).unwrap();
    match PcapFile::open(
        &d,
        "l.pcap",
        dir.join("l.pcap"),
        LinkType::User0,
        Precision::Micro,
        true,
        &|_| false,
    )
    .unwrap()
    {
        Attempt::Taken(why) => assert!(why.contains("symbolic link"), "{why}"),
        Attempt::Ready(..) => panic!("written through a link"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn empty_file_gets_a_header_and_garbage_after_header_is_cut() {
    let dir = temp_dir("empty");
    let path = dir.join("e.pcap");
    std::fs::write(&path, b"").unwrap();
    let (f, _) = ready(open(&path, true));
    assert_eq!(f.bytes(), 24);
    drop(f);
    // A record header claiming more than the snaplen is garbage: cut.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[
        0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 9, 9,
    ]);
    std::fs::write(&path, &bytes).unwrap();
    let (_, how) = ready(open(&path, true));
    assert_eq!(how, Opened::Appended { torn_bytes: 18 });
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn deletion_and_moves_are_noticed() {
    let dir = temp_dir("vanish");
    let path = dir.join("v.pcap");
    let (f, _) = ready(open(&path, true));
    assert_eq!(f.vanished(), None);
    std::fs::rename(&path, dir.join("w.pcap")).unwrap();
    assert_eq!(f.vanished(), Some(Vanished::Moved));
    std::fs::remove_file(dir.join("w.pcap")).unwrap();
    assert_eq!(f.vanished(), Some(Vanished::Deleted));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn link_numbers_and_names_are_the_formats() {
    for l in LinkType::ALL {
        assert_eq!(l.number(), u32::from(l.datalink()));
        assert_eq!(LinkType::from_number(l.number()), Some(l));
        // The names pcap-file's Debug gave them.
        assert_eq!(link_name(l.number()), format!("{:?}", l.datalink()));
    }
    assert_eq!(LinkType::from_number(101), None);
    assert_eq!(link_name(101), "101");
}
