//! The router: any request bytes reach `api::respond` (through the framing) and get
//! a JSON answer (a body in pieces produced whole) with a 2xx/4xx/5xx status; nothing panics. Handlers a request
//! manages to start are stopped again after each input.
#![no_main]
use bsc::control::api::{self, Context};
use bsc::clock::UnixMicros;
use bsc::config::StorageConfig;
use bsc::control::http::request::{parse, Parsed};
use bsc::manager::Manager;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static WORLD: (mio::Poll, std::cell::RefCell<Manager>) = {
            let root = std::env::temp_dir().join(format!("bsc-fuzz-router-{}", std::process::id()));
            (mio::Poll::new().unwrap(), std::cell::RefCell::new(Manager::new(&root, &StorageConfig::default())))
        };
    }
    let Parsed::Complete(req, _) = parse(data) else { return };
    WORLD.with(|(poll, manager)| {
        let mut manager = manager.borrow_mut();
        let mut cx = Context {
            manager: &mut manager,
            registry: poll.registry(),
            now: UnixMicros(1_795_860_000_000_000),
            mono: std::time::Instant::now(),
            started_at: UnixMicros(1_795_850_000_000_000),
            token: None,
            allowed_hosts: &[],
            http_connections: 1,
        };
        let mut response = api::respond(&req, &mut cx);
        assert!((200..600).contains(&response.status));
        // A body in pieces, produced to its end (a bounded number of pieces).
        if let Some(mut cursor) = response.pieces.take() {
            let more = (0..100_000).all(|_| api::produce(&mut cursor, &mut cx, &mut response.body));
            assert!(!more, "a body in pieces ends");
        }
        if response.content_type == "application/json" {
            serde_json::from_slice::<serde_json::Value>(&response.body).expect("JSON body");
        }
        let ids: Vec<_> = manager.handlers().map(|(id, _)| id).collect();
        for id in ids {
            manager.remove_handler(id, poll.registry(), UnixMicros(1_795_860_000_000_000));
        }
    });
});
