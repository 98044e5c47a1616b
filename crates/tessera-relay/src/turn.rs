//! The relay's TURN service for calls (`docs/calls.md` §ICE policy): a UDP TURN server (the
//! `turn` crate) whose credentials are handed only to logged-in devices, over the relay's
//! TLS connection, and expire after [`CREDENTIAL_TTL`]. It relays packets that are already
//! DTLS-SRTP protected and frame-encrypted end to end; it sees addresses, sizes and timing.
//!
//! Peers are restricted ([`peer_allowed`]): a client may relay to public unicast addresses and
//! to this service's own live allocations, never into loopback, private, link-local or other
//! special ranges — the TURN service is not a way into the relay host's network.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use turn::auth::{LongTermAuthHandler, generate_long_term_credentials};
use turn::relay::RelayAddressGenerator;
use turn::relay::relay_static::RelayAddressGeneratorStatic;
use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};
use webrtc_util::Conn;
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
                relay_addr_generator: Box::new(FilteredRelays {
                    inner: RelayAddressGeneratorStatic {
                        relay_address: public_ip,
                        address: bind_ip.to_string(),
                        net: Arc::new(webrtc_util::vnet::net::Net::new(None)),
                    },
                    live: Arc::default(),
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

/// Whether a client may exchange packets with `peer` through an allocation: public unicast
/// addresses, or one of this service's live relayed addresses (`live`).
/// The lock is taken only for a non-public peer: public peers are the common case, and this
/// runs for every packet.
pub fn peer_allowed(peer: SocketAddr, live: &Mutex<HashSet<SocketAddr>>) -> bool {
    is_public(peer) || live_set(live).contains(&peer)
}

/// A public unicast address with a real port.
fn is_public(peer: SocketAddr) -> bool {
    peer.port() != 0
        && match peer.ip() {
            IpAddr::V4(ip) => public_v4(ip),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(v4) => public_v4(v4),
                None => public_v6(ip),
            },
        }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))) // benchmarking
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link local
        || (first & 0xffc0) == 0xfec0 // site local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64, reaches IPv4 inside
}

type Live = Arc<Mutex<HashSet<SocketAddr>>>;

fn live_set(live: &Mutex<HashSet<SocketAddr>>) -> std::sync::MutexGuard<'_, HashSet<SocketAddr>> {
    live.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Hands out relayed sockets that only talk to allowed peers.
struct FilteredRelays {
    inner: RelayAddressGeneratorStatic,
    live: Live,
}

#[async_trait::async_trait]
impl RelayAddressGenerator for FilteredRelays {
    fn validate(&self) -> Result<(), turn::Error> {
        self.inner.validate()
    }

    async fn allocate_conn(
        &self,
        use_ipv4: bool,
        requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), turn::Error> {
        let (conn, relayed) = self.inner.allocate_conn(use_ipv4, requested_port).await?;
        live_set(&self.live).insert(relayed);
        Ok((
            Arc::new(FilteredConn {
                inner: conn,
                relayed,
                live: self.live.clone(),
            }),
            relayed,
        ))
    }
}

/// One allocation's relayed socket: packets to or from a peer [`peer_allowed`] refuses are
/// dropped (each noted in the log at debug level).
struct FilteredConn {
    inner: Arc<dyn Conn + Send + Sync>,
    relayed: SocketAddr,
    live: Live,
}

impl FilteredConn {
    fn allowed(&self, peer: SocketAddr) -> bool {
        let ok = peer_allowed(peer, &self.live);
        if !ok {
            tracing::debug!("TURN packet for a refused peer dropped");
        }
        ok
    }
}

impl Drop for FilteredConn {
    fn drop(&mut self) {
        live_set(&self.live).remove(&self.relayed);
    }
}

#[async_trait::async_trait]
impl Conn for FilteredConn {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        if !self.allowed(addr) {
            return Err(webrtc_util::Error::Other("peer refused".into()));
        }
        self.inner.connect(addr).await
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        loop {
            let (n, from) = self.inner.recv_from(buf).await?;
            if self.allowed(from) {
                return Ok(n);
            }
        }
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = self.inner.recv_from(buf).await?;
            if self.allowed(from) {
                return Ok((n, from));
            }
        }
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        match self.inner.remote_addr() {
            Some(peer) if self.allowed(peer) => self.inner.send(buf).await,
            _ => Ok(buf.len()),
        }
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        if !self.allowed(target) {
            // Silently dropped, like any UDP packet that does not arrive.
            return Ok(buf.len());
        }
        self.inner.send_to(buf, target).await
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr()
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        live_set(&self.live).remove(&self.relayed);
        self.inner.close().await
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use turn::client::{Client, ClientConfig};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_peers_and_own_allocations_are_allowed() {
        let none = Mutex::new(HashSet::new());
        for ok in [
            "93.184.216.34:3478",
            "[2a00:1450:4001::1]:443",
            "[::ffff:8.8.8.8]:53",
        ] {
            assert!(peer_allowed(addr(ok), &none), "{ok}");
        }
        for refused in [
            "127.0.0.1:53",
            "10.1.2.3:5000",
            "172.16.0.1:5000",
            "192.168.1.1:5000",
            "169.254.169.254:80",
            "100.64.0.1:5000",
            "0.0.0.0:5000",
            "224.0.0.1:5000",
            "255.255.255.255:5000",
            "240.0.0.1:5000",
            "192.0.2.1:5000",
            "198.18.0.1:5000",
            "93.184.216.34:0",
            "[::1]:53",
            "[fd00::1]:5000",
            "[fe80::1]:5000",
            "[ff02::1]:5000",
            "[::ffff:127.0.0.1]:53",
            "[::ffff:10.0.0.1]:53",
            "[64:ff9b::a00:1]:53",
            "[2001:db8::1]:5000",
        ] {
            assert!(!peer_allowed(addr(refused), &none), "{refused}");
        }
        let live = Mutex::new(HashSet::from([addr("127.0.0.1:40000")]));
        assert!(peer_allowed(addr("127.0.0.1:40000"), &live));
        assert!(!peer_allowed(addr("127.0.0.1:40001"), &live));
    }

    async fn client(service: &TurnService) -> (Client, impl Conn + use<>) {
        let creds = service.credentials().unwrap();
        let server = service.local_addr().to_string();
        let client = Client::new(ClientConfig {
            stun_serv_addr: server.clone(),
            turn_serv_addr: server,
            username: creds.username,
            password: creds.credential.to_string(),
            realm: REALM.into(),
            software: String::new(),
            rto_in_ms: 0,
            conn: Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()),
            vnet: None,
        })
        .await
        .unwrap();
        client.listen().await.unwrap();
        let relayed = client.allocate().await.unwrap();
        (client, relayed)
    }

    /// Real sockets on loopback: two allocations reach each other; neither reaches a plain
    /// loopback socket (a stand-in for a service on the relay host).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn allocations_reach_each_other_but_not_the_hosts_network() {
        let service = TurnService::start(addr("127.0.0.1:0"), "127.0.0.1".parse().unwrap())
            .await
            .unwrap();
        let (ca, a) = client(&service).await;
        let (cb, b) = client(&service).await;
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        assert_eq!(a_addr.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());

        // B permits A; A's packets arrive at B from A's relayed address.
        let b = Arc::new(b);
        let receiver = {
            let b = b.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let (n, from) = b.recv_from(&mut buf).await.unwrap();
                (buf[..n].to_vec(), from)
            })
        };
        b.send_to(b"permit", a_addr).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                a.send_to(b"hello b", b_addr).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                if receiver.is_finished() {
                    return receiver.await.unwrap();
                }
            }
        })
        .await
        .expect("allocation to allocation");
        assert_eq!(got, (b"hello b".to_vec(), a_addr));

        // A loopback service on the relay host never hears from an allocation.
        let inside = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let inside_addr = inside.local_addr().unwrap();
        for _ in 0..5 {
            a.send_to(b"knock", inside_addr).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut buf = [0u8; 64];
        let heard =
            tokio::time::timeout(Duration::from_millis(700), inside.recv_from(&mut buf)).await;
        assert!(heard.is_err(), "a loopback socket received {heard:?}");

        drop(b);
        cb.close().await.unwrap();
        ca.close().await.unwrap();
        service.close().await;
    }
}
