//! The three body decoders and the query-string decoder on any bytes and any
//! content type: an error or a map, never a panic.
#![no_main]
use bsc::control::http::form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (kind, body) = data.split_first().map_or((0, data), |(k, b)| (*k, b));
    let (ct, body) = match kind % 5 {
        0 => (Some("application/x-www-form-urlencoded".to_string()), body),
        1 => (Some("application/json".to_string()), body),
        2 => {
            // The boundary is the first line of the input.
            let split = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
            let boundary = String::from_utf8_lossy(&body[..split]).into_owned();
            (Some(format!("multipart/form-data; boundary=\"{boundary}\"")), &body[(split + 1).min(body.len())..])
        }
        3 => (None, body),
        _ => (Some(String::from_utf8_lossy(body).into_owned()), b"a=1".as_slice()),
    };
    if let Ok(map) = form::decode(ct.as_deref(), body) {
        assert!(map.keys().all(|k| k.len() <= body.len()));
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = form::urlencoded(text);
    }
});
