//! HTTP request framing: any bytes give a request, a "need more", or a refusal;
//! a request never claims more bytes than it was given.
#![no_main]
use bsc::control::http::request::{parse, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // Pipelined requests: frame until the bytes run out or are refused.
    for _ in 0..64 {
        match parse(rest) {
            Parsed::Complete(req, used) => {
                assert!(used > 0 && used <= rest.len());
                let _ = req.segments();
                let _ = req.header("content-type");
                rest = &rest[used..];
            }
            Parsed::Partial { .. } => break,
            Parsed::Refused(r) => {
                assert!((400..600).contains(&r.status));
                break;
            }
        }
    }
});
