//! The `capture_manager` section: the management server, the disk budget,
//! persistence and hooks.

/// Default management listener.
pub const DEFAULT_SERVER_HOST: &str = "127.0.0.1";
pub const DEFAULT_SERVER_PORT: u16 = 8080;

/// The `manager_server` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// When set, every request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Serve a non-loopback address without a token (for trusted networks only).
    pub allow_unauthenticated: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: DEFAULT_SERVER_HOST.to_string(),
            port: DEFAULT_SERVER_PORT,
            token: None,
            allow_unauthenticated: false,
        }
    }
}

/// Disk budget, persistence and hooks (`capture_manager` keys).
#[derive(Clone, Debug, PartialEq)]
pub struct StorageConfig {
    /// Keep at least this many bytes free on the root's file system.
    pub min_free_bytes: Option<u64>,
    /// Keep at least this share (0-100) of the root's file system free.
    pub min_free_percent: Option<f64>,
    /// Save handlers added over the API and restore them at start-up.
    pub persist: bool,
    /// Most `on_close` commands running at once (the rest wait their turn).
    pub on_close_max_running: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            min_free_bytes: None,
            min_free_percent: None,
            persist: true,
            on_close_max_running: 2,
        }
    }
}
