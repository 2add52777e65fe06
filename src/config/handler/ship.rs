//! Store and forward's settings of one handler.

use std::time::Duration;

/// How a handler's closed files are shipped (`ship`, `ship_timeout_s`,
/// `ship_retry_max_s`, `delete_after_ship`); recorded in the journal with each
/// file waiting to ship, so a file keeps shipping after its handler is gone.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShipSpec {
    /// The command, program first; the file's path is appended.
    pub argv: Vec<String>,
    /// Longest run of one attempt, in seconds (then it is killed: a failure).
    pub timeout_s: f64,
    /// Longest wait between attempts, in seconds (back-off from 5 s doubles up to it).
    pub retry_max_s: f64,
    /// Delete each file once shipped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_after: bool,
}

impl ShipSpec {
    /// Default `ship_timeout_s`.
    pub const DEFAULT_TIMEOUT_S: f64 = 300.0;
    /// Default `ship_retry_max_s`.
    pub const DEFAULT_RETRY_MAX_S: f64 = 600.0;

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_s.clamp(1.0, 86_400.0))
    }

    pub fn retry_max(&self) -> Duration {
        Duration::from_secs_f64(self.retry_max_s.clamp(1.0, 86_400.0))
    }
}
