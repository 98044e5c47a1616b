//! Errors of the relay library.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the relay could not start or keep running.
///
/// Each variant names the file or address involved so an operator can act on it; none carries
/// user data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        /// The file named by `--config`.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for this relay.
    #[error("invalid config file {path}: {message}")]
    ConfigParse {
        /// The file named by `--config`.
        path: PathBuf,
        /// The parser's description, with line and column.
        message: String,
    },
    /// A required setting is missing or two settings contradict each other.
    #[error("configuration: {0}")]
    ConfigInvalid(String),
    /// The data directory or a file in it could not be created, read or written.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory or file involved.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The stored key or certificate is damaged or not one the relay can use.
    #[error(
        "relay key {path} is unusable ({reason}); restore it from backup, or move it away to create a new key (this changes the relay address)"
    )]
    KeyUnusable {
        /// The key or certificate file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Generating the key or certificate failed.
    #[error("cannot generate the relay certificate: {0}")]
    CertGen(String),
    /// The TLS configuration was rejected.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The TURN service could not start or answer.
    #[error("TURN service: {0}")]
    Turn(String),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address from `--listen`.
        addr: SocketAddr,
        /// What the OS said (e.g. address already in use).
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened, is damaged, or is from a newer relay.
    #[error("database {path}: {message}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What went wrong (never user data).
        message: String,
    },
}
