//! What the manager's changes answer: why a handler could not be added, why a
//! rotate changed nothing, and what a rotation did (the API turns them into
//! status codes and answers).

use std::fmt;
use std::path::PathBuf;

use super::HandlerId;

/// Why a handler could not be added.
#[derive(Debug, PartialEq, Eq)]
pub enum AddError {
    /// Same name on the address, another conn_type on it, or the same file as
    /// another handler (HTTP 409).
    Conflict(String),
    /// The socket could not be opened (HTTP 409: usually "address in use").
    Socket(String),
    /// The address names something that does not exist, such as an interface
    /// (HTTP 400).
    Invalid(String),
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddError::Conflict(m) | AddError::Socket(m) | AddError::Invalid(m) => f.write_str(m),
        }
    }
}

/// Why `POST /<name>/rotate` changed nothing (or, `Failed`, could not open a
/// next file after closing the current one).
#[derive(Debug, PartialEq, Eq)]
pub enum RotateError {
    /// No handler has that name (HTTP 404).
    NotFound,
    /// A field is not metadata, a value is bad, or a name would be (HTTP 400).
    Invalid(String),
    /// The new name is another handler's file (HTTP 409).
    Conflict(String),
    /// The next file could not be opened (HTTP 503; the handler retries at the
    /// next unit).
    Failed(String),
}

/// One handler a rotation closed and reopened.
#[derive(Debug)]
pub struct Rotated {
    pub id: HandlerId,
    pub previous: Option<PathBuf>,
    pub path: PathBuf,
}
