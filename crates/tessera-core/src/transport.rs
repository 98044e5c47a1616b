//! The transport an account uses, as configured (`docs/network.md`).

use std::path::Path;

use tessera_net::{Tor, TorOptions, Transport};

use crate::CoreError;

/// How an account reaches its relay: stored in the vault's settings and never changed behind
/// the user's back — with `Tor`, a failure is an error, never a direct connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportConfig {
    /// Straight to the relay (development and tests).
    Direct,
    /// Through the embedded Tor client; state and cache under the account's data directory.
    Tor {
        /// An Arti configuration (bridges and the pluggable-transport programs they use, a
        /// private network), as TOML text. It lives in the vault's settings, never beside it:
        /// which bridges and transports someone uses is for the vault's eyes only.
        config: Option<String>,
    },
}

impl TransportConfig {
    /// Starts the transport for the account in `dir` (Tor begins bootstrapping in the
    /// background).
    pub fn open(&self, dir: &Path) -> Result<Transport, CoreError> {
        Ok(match self {
            Self::Direct => Transport::Direct,
            Self::Tor { config } => {
                let mut opts = TorOptions::under(dir);
                opts.config = config.clone();
                Transport::Tor(Tor::start(&opts).map_err(tessera_net::ClientError::Net)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tor that cannot start (its configuration does not parse) is an error, never a direct
    /// connection in its place.
    #[tokio::test]
    async fn tor_that_cannot_start_is_an_error_not_a_direct_link() {
        let dir = tempfile::tempdir().unwrap();
        let tor = TransportConfig::Tor {
            config: Some("[bridges\nenabled = ".into()),
        };
        assert!(tor.open(dir.path()).is_err());
        assert!(matches!(
            TransportConfig::Direct.open(dir.path()),
            Ok(Transport::Direct)
        ));
    }
}
