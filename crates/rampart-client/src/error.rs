//! Errors of the native client. Messages say what to do next; none carries a
//! secret, a token or message text.

use rampart_proto::ErrorCode;
use std::path::PathBuf;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("no profile in {0}; run `rampart register` first, or pass --profile")]
    NoProfile(PathBuf),
    #[error("wrong passphrase for this profile")]
    WrongPassphrase,
    #[error("profile: {0}")]
    Profile(String),
    #[error("not logged in; run `rampart login`")]
    NotLoggedIn,
    #[error("local store: {0}")]
    Store(#[source] Source),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the server: {0}")]
    Network(#[source] Source),
    #[error("server refused ({code}): {message}")]
    Server {
        code: ErrorCode,
        message: String,
        current_epoch: Option<u64>,
    },
    #[error("the server sent something this client cannot read: {0}")]
    Protocol(String),
    #[error(transparent)]
    Core(#[from] rampart_core::CoreError),
    #[error(transparent)]
    File(#[from] rampart_core::attachment::AttachmentError),
    #[error("{0}")]
    Usage(String),
    #[error(
        "the transfer was cut off after {got} of {expected} bytes; run the same command again to resume"
    )]
    CutOff { got: u64, expected: u64 },
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The organisation's policy forbids sending this (the text says which
    /// rule and why, and never repeats what was found in full).
    #[error("{0}")]
    Blocked(String),
    /// A received file that the organisation's file rules do not allow:
    /// nothing was saved.
    #[error("{message}")]
    Refused { rule: String, message: String },
    /// The organisation's policy asks the user to confirm before sending.
    #[error(
        "this contains {}; your organisation asks you to confirm before sending it: run the command again with --confirm",
        found.join(", ")
    )]
    NeedsConfirmation { found: Vec<String> },
}

impl ClientError {
    pub(crate) fn store<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        ClientError::Store(Box::new(e))
    }

    pub(crate) fn io(what: &'static str, source: std::io::Error) -> Self {
        ClientError::Io { what, source }
    }

    pub(crate) fn network<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        ClientError::Network(Box::new(e))
    }

    /// The server's error code, if the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}
