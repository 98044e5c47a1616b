//! The relay's TURN service for calls (`docs/calls.md` §ICE policy): a UDP TURN server (the
//! `turn` crate) whose credentials are handed only to logged-in devices, over the relay's
//! TLS connection, and expire after [`CREDENTIAL_TTL`]. It relays packets that are already
//! DTLS-SRTP protected and frame-encrypted end to end; it sees addresses, sizes and timing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use turn::auth::{LongTermAuthHandler, generate_long_term_credentials};
use turn::relay::relay_static::RelayAddressGeneratorStatic;
use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};
use zeroize::Zeroizing;

use crate::RelayError;

/// How long handed-out credentials stay valid (a call must start within it; allocations are
/// refreshed with the same credentials while it lasts).
pub const CREDENTIAL_TTL: Duration = Duration::from_secs(600);

/// The realm in TURN's long-term credential mechanism.
const REALM: &str = "tessera";

/// A running TURN service.
pub struct TurnService {
    server: Server,
    secret: Zeroizing<String>,
    url: String,
    local: SocketAddr,
}

impl std::fmt::Debug for TurnService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnService")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Credentials for one device.
pub struct TurnCredentials {
    /// `turn:` URL.
    pub url: String,
    /// Username (the expiry time).
    pub username: String,
    /// HMAC of the username under the service's secret.
    pub credential: Zeroizing<String>,
}

impl TurnService {
    /// Listens on `listen` (UDP) and relays through ports on `public_ip`, the address clients
    /// reach this host by.
    pub async fn start(listen: SocketAddr, public_ip: IpAddr) -> Result<Self, RelayError> {
        let socket = UdpSocket::bind(listen)
            .await
            .map_err(|source| RelayError::Listen {
                addr: listen,
                source,
            })?;
        let local = socket.local_addr().map_err(|source| RelayError::Listen {
            addr: listen,
            source,
        })?;
        // A fresh secret per start: credentials are short-lived and fetched per call.
        let mut bytes = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut bytes);
        let secret = Zeroizing::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let bind_ip = if listen.ip().is_unspecified() {
            listen.ip()
        } else {
            public_ip
        };
        let server = Server::new(ServerConfig {
            conn_configs: vec![ConnConfig {
                conn: Arc::new(socket),
                relay_addr_generator: Box::new(RelayAddressGeneratorStatic {
                    relay_address: public_ip,
                    address: bind_ip.to_string(),
                    net: Arc::new(webrtc_util::vnet::net::Net::new(None)),
                }),
            }],
            realm: REALM.to_owned(),
            auth_handler: Arc::new(LongTermAuthHandler::new(secret.to_string())),
            channel_bind_timeout: Duration::from_secs(0),
            alloc_close_notify: None,
        })
        .await
        .map_err(|e| RelayError::Turn(e.to_string()))?;
        let url = match public_ip {
            IpAddr::V4(ip) => format!("turn:{ip}:{}?transport=udp", local.port()),
            IpAddr::V6(ip) => format!("turn:[{ip}]:{}?transport=udp", local.port()),
        };
        Ok(Self {
            server,
            secret,
            url,
            local,
        })
    }

    /// The URL clients use.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The UDP address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// New credentials, valid for [`CREDENTIAL_TTL`].
    pub fn credentials(&self) -> Result<TurnCredentials, RelayError> {
        let (username, credential) = generate_long_term_credentials(&self.secret, CREDENTIAL_TTL)
            .map_err(|e| RelayError::Turn(e.to_string()))?;
        Ok(TurnCredentials {
            url: self.url.clone(),
            username,
            credential: Zeroizing::new(credential),
        })
    }

    /// Stops the service.
    pub async fn close(&self) {
        if let Err(e) = self.server.close().await {
            tracing::debug!(error = %e, "closing the TURN service");
        }
    }
}
