//! Opening connections to the relay.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tessera_proto::{RelayAddress, RelayHost, paths};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;

use crate::tor::Tor;
use crate::{NetError, PinnedVerifier, client_config};

/// How long connecting plus the TLS handshake may take before [`NetError::Timeout`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The same over Tor, once Tor is bootstrapped. A stream to an onion service needs three
/// circuits (descriptor fetch, introduction, rendezvous), each of which Arti retries on its own
/// with timeouts it estimates from measured build times; on a slow or loaded path the whole
/// takes well over a minute, and giving up earlier turns a connection that was about to open
/// into an error. Tor Browser waits about as long for an onion service.
const TOR_CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

/// How to reach the relay. Always chosen explicitly by configuration; one never stands in for
/// the other.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Transport {
    /// Plain TCP from this machine to the relay: reveals the user's IP address to the relay and
    /// the relay's address to the local network. For development and tests.
    Direct,
    /// Through the embedded Tor client (the default for accounts).
    Tor(Arc<Tor>),
}

impl Transport {
    /// `direct` or `tor`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Tor(_) => "tor",
        }
    }
}

/// A byte stream under the TLS layer: TCP, or a Tor stream.
pub trait Carrier: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Carrier for T {}

/// A TLS stream to the relay whose key matched the pin.
pub type RelayStream = TlsStream<Box<dyn Carrier>>;

/// A WebSocket to the relay over a pinned TLS stream.
pub type RelayWebSocket = WebSocketStream<RelayStream>;

/// Connects to `addr` over `transport` and completes a TLS 1.3 handshake in which the relay's
/// key must hash to `addr.pin`.
pub async fn connect_tls(
    addr: &RelayAddress,
    transport: &Transport,
) -> Result<RelayStream, NetError> {
    // Over Tor, waiting for bootstrap has its own timeout; the stream and handshake get theirs.
    let limit = match transport {
        Transport::Direct => CONNECT_TIMEOUT,
        Transport::Tor(_) => TOR_CONNECT_TIMEOUT,
    };
    if let Transport::Tor(tor) = transport {
        tor.ready().await?;
    }
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(limit, connect_tls_inner(addr, transport))
        .await
        .map_err(|_| NetError::Timeout)
        .and_then(|r| r);
    tracing::info!(
        transport = transport.name(),
        ok = result.is_ok(),
        seconds = started.elapsed().as_secs_f64(),
        "stream and TLS handshake to the relay"
    );
    result
}

async fn connect_tls_inner(
    addr: &RelayAddress,
    transport: &Transport,
) -> Result<RelayStream, NetError> {
    let carrier: Box<dyn Carrier> = match transport {
        Transport::Direct => {
            let tcp = TcpStream::connect(addr.authority())
                .await
                .map_err(NetError::Connect)?;
            // Ignore a failure to set TCP_NODELAY: it only affects latency.
            let _ = tcp.set_nodelay(true);
            Box::new(tcp)
        }
        Transport::Tor(tor) => Box::new(tor.connect(&addr.host.to_string(), addr.port).await?),
    };

    let verifier = Arc::new(PinnedVerifier::new(addr.pin));
    let config =
        client_config(verifier.clone()).map_err(|e| NetError::Tls(std::io::Error::other(e)))?;
    // SNI is disabled in the config; the name is only used by rustls internally.
    let name = match &addr.host {
        RelayHost::Ipv4(ip) => ServerName::IpAddress((*ip).into()),
        RelayHost::Ipv6(ip) => ServerName::IpAddress((*ip).into()),
        RelayHost::Name(n) => {
            ServerName::try_from(n.clone()).map_err(|e| NetError::Tls(std::io::Error::other(e)))?
        }
    };
    match TlsConnector::from(Arc::new(config))
        .connect(name, carrier)
        .await
    {
        Ok(stream) => Ok(stream),
        Err(e) => match verifier.mismatch() {
            Some(presented) => Err(NetError::PinMismatch { presented }),
            None => Err(NetError::Tls(e)),
        },
    }
}

/// Connects as [`connect_tls`] does, then upgrades to a WebSocket on the relay's v1 endpoint.
pub async fn connect_websocket(
    addr: &RelayAddress,
    transport: &Transport,
) -> Result<RelayWebSocket, NetError> {
    let tls = connect_tls(addr, transport).await?;
    let url = format!("wss://{}{}", addr.authority(), paths::WEBSOCKET_V1);
    let handshake = tokio_tungstenite::client_async(url, tls);
    // One round trip on the open stream: the usual limit, also over Tor.
    let (ws, _response) = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| NetError::Timeout)?
        .map_err(|e| NetError::WebSocket(Box::new(e)))?;
    Ok(ws)
}
