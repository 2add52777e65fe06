//! Operations around the capture: the commands run for closed files
//! ([`hooks`]: `on_close` and `ship`, store and forward) and systemd's
//! notifications ([`notify`]: readiness, reload, watchdog, status).

pub mod hooks;
pub mod notify;
