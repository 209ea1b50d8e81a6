//! The crate's one error type, so callers of the server and the binary see what to change.

use std::net::SocketAddr;

/// Errors starting or configuring rampart-shadow. Refused events are not errors: they are counted and answered
/// with 400 (see [`crate::InvalidReason`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of range; the message names the flag.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The listen address could not be bound (in use, or not an address of this host).
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A short, stable label for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Bind { .. } => "bind",
        }
    }
}
