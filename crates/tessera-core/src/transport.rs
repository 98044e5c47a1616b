//! The transport an account uses, as configured (`docs/network.md`).

use std::path::{Path, PathBuf};

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
        /// An Arti configuration file (bridges, a private network).
        config_file: Option<PathBuf>,
    },
}

impl TransportConfig {
    /// Starts the transport for the account in `dir` (Tor begins bootstrapping in the
    /// background).
    pub fn open(&self, dir: &Path) -> Result<Transport, CoreError> {
        Ok(match self {
            Self::Direct => Transport::Direct,
            Self::Tor { config_file } => {
                let mut opts = TorOptions::under(dir);
                opts.config_file = config_file.clone();
                Transport::Tor(Tor::start(&opts).map_err(tessera_net::ClientError::Net)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tor that cannot start (its configuration cannot be read) is an error, never a direct
    /// connection in its place.
    #[tokio::test]
    async fn tor_that_cannot_start_is_an_error_not_a_direct_link() {
        let dir = tempfile::tempdir().unwrap();
        let tor = TransportConfig::Tor {
            config_file: Some(dir.path().join("missing.toml")),
        };
        assert!(tor.open(dir.path()).is_err());
        assert!(matches!(
            TransportConfig::Direct.open(dir.path()),
            Ok(Transport::Direct)
        ));
    }
}
