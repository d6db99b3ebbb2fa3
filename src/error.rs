//! The crate's one error type.
//!
//! Variants are chosen by what the caller does with them: a `Config` error stops the
//! start with a message that already names the file, key and line; `Corrupt` stops the
//! start naming the journal file and offset; `Io` carries the path it happened on so an
//! operator can act on it; `Protocol` is a peer that broke the rules and is disconnected.
//! Nothing here may hold a socket or file handle.

use std::path::PathBuf;

/// Everything that can go wrong in mirrormq, by what the caller must do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file is unusable; the text names the file, the key and the line.
    #[error("{0}")]
    Config(String),
    /// An I/O operation on a named path failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A network operation failed.
    #[error("{context}: {source}")]
    Net {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The store on disk is damaged where it cannot be a torn tail.
    #[error("journal corrupt: {} at offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// Bytes could not be encoded or decoded (a record, a wire message).
    #[error("codec: {0}")]
    Codec(String),
    /// A peer broke the protocol; it is told why and disconnected.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A tool (send, receive, demo, status, ...) cannot do what it was asked; the text
    /// says why.
    #[error("{0}")]
    Tool(String),
    /// The broker is shutting down and cannot take the request.
    #[error("broker is shutting down")]
    ShuttingDown,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a network I/O error with what was being done.
    pub fn net(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Net {
            context: context.into(),
            source,
        }
    }
}
