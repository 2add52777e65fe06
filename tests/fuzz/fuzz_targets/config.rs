//! The config loader: any JSON document is a valid config or one error line.
#![no_main]
use bsc::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        match Config::from_value(&value) {
            Ok(config) => {
                let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
                for h in &config.handlers {
                    // A valid handler can always name its file.
                    h.file_path(&config.root, now, 1).expect("a valid handler names its file");
                }
            }
            Err(e) => assert!(!e.is_empty() && !e.contains('\n')),
        }
    }
});
