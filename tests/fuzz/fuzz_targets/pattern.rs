//! Path patterns: parse any text; a parsed pattern renders for any instant.
#![no_main]
use bsc::files::pattern::Pattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let secs = i64::from_le_bytes(data[..8].try_into().unwrap()) % 253_402_300_799; // up to 9999-12-31
    let Ok(text) = std::str::from_utf8(&data[8..]) else { return };
    if let Ok(p) = Pattern::parse(text) {
        let t = time::OffsetDateTime::from_unix_timestamp(secs.abs()).unwrap();
        let rendered = p.render(t, |k, w| Some(format!("{k}{}", w.unwrap_or(0)))).expect("every key is known");
        // Literal text survives: a pattern without codes or keys renders as itself
        // once escapes are undone.
        if !text.contains(['%', '{', '}']) {
            assert_eq!(rendered, text);
        }
    }
});
