//! Errors of this crate.

use tessera_proto::SpkiPin;

/// What went wrong reaching the relay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// No TCP connection could be made (refused, unreachable, DNS failure).
    #[error("cannot connect to the relay: {0}")]
    Connect(#[source] std::io::Error),
    /// The connection or the handshake took too long.
    #[error("the relay did not answer in time")]
    Timeout,
    /// The relay presented a key whose hash is not the pin in its address. This is what an
    /// impostor (or a relay that changed its key) looks like; it is never overridden.
    #[error("the relay's key does not match the pin in its address (it presented {presented})")]
    PinMismatch {
        /// Pin of the key the server actually presented (public information).
        presented: SpkiPin,
    },
    /// The TLS handshake failed for another reason (bad signature, protocol error, reset).
    #[error("TLS handshake with the relay failed: {0}")]
    Tls(#[source] std::io::Error),
    /// The WebSocket upgrade was refused or malformed.
    #[error("the relay refused the WebSocket upgrade: {0}")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The Tor configuration or its directories are unusable.
    #[error("Tor configuration: {0}")]
    TorConfig(String),
    /// Tor could not bootstrap (network down, authorities or bridges unreachable). Nothing was
    /// sent another way.
    #[error("Tor is not connected: {0} (nothing was sent outside Tor)")]
    TorBootstrap(String),
    /// Tor is up but could not open a stream to the relay (onion service unreachable, exit
    /// refused). Nothing was sent another way.
    #[error("cannot reach the relay through Tor: {0} (nothing was sent outside Tor)")]
    TorConnect(String),
}

/// A small, stable classification for callers that decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Try again later (network down, relay restarting).
    Retry,
    /// Do not retry: the relay is not who the address says it is.
    Impostor,
    /// The relay or its configuration is broken; retrying will not help soon.
    Protocol,
}

impl NetError {
    /// How a caller should react.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Connect(_) | Self::Timeout | Self::TorBootstrap(_) | Self::TorConnect(_) => {
                ErrorKind::Retry
            }
            Self::TorConfig(_) => ErrorKind::Protocol,
            Self::PinMismatch { .. } => ErrorKind::Impostor,
            Self::Tls(_) | Self::WebSocket(_) => ErrorKind::Protocol,
        }
    }
}
