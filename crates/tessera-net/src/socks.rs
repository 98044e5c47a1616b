//! A SOCKS5 proxy on loopback whose streams go through the embedded Tor client, for code that
//! can only be given a proxy (Tauri's updater speaks HTTP through reqwest). `docs/updates.md`.
//!
//! - Listens on `127.0.0.1`, on a port the system picks.
//! - Serves only SOCKS5 `CONNECT` with this bridge's username and password, 128 random bits
//!   each, so another program on the machine cannot use it to reach Tor (or learn anything).
//!   SOCKS4 and unauthenticated requests are refused.
//! - Names are passed to Tor unresolved (use the `socks5h://` URL): the exit resolves them,
//!   nothing is looked up here.
//! - Every connection gets a circuit of its own (`Tor::connect_isolated`).
//! - Nothing ever goes out directly: if Tor cannot connect, the client gets a SOCKS failure.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use rand::RngCore as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tor_socksproto::{
    Buffer, Handshake as _, NextStep, SocksAuth, SocksCmd, SocksProxyHandshake, SocksStatus,
    SocksVersion,
};
use zeroize::Zeroizing;

use crate::{NetError, Tor};

/// A running bridge; stops when dropped.
pub struct SocksBridge {
    addr: SocketAddr,
    username: String,
    password: Zeroizing<String>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for SocksBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credentials stay out of logs.
        f.debug_struct("SocksBridge")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SocksBridge {
    /// A bridge to `tor`: every connection becomes an isolated Tor stream.
    pub async fn start(tor: Arc<Tor>) -> Result<Self, NetError> {
        Self::start_with(move |host: String, port: u16| {
            let tor = tor.clone();
            async move { tor.connect_isolated(&host, port).await }
        })
        .await
    }

    /// A bridge whose connections `dial` opens (the Tor one above; tests dial loopback).
    pub(crate) async fn start_with<D, F, S>(dial: D) -> Result<Self, NetError>
    where
        D: Fn(String, u16) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<S, NetError>> + Send + 'static,
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(NetError::Connect)?;
        let addr = listener.local_addr().map_err(NetError::Connect)?;
        let username = random_token();
        let password = Zeroizing::new(random_token());
        let expected = Arc::new(SocksAuth::Username(
            username.clone().into_bytes(),
            password.as_bytes().to_vec(),
        ));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let dial = dial.clone();
                let expected = expected.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(tcp, &expected, dial).await {
                        tracing::debug!(error = %e, "socks bridge connection ended");
                    }
                });
            }
        });
        Ok(Self {
            addr,
            username,
            password,
            task,
        })
    }

    /// Where the bridge listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `socks5h://USER:PASSWORD@127.0.0.1:PORT`, for a client's proxy setting. Holds the
    /// bridge's password: never log it.
    pub fn proxy_url(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "socks5h://{}:{}@{}",
            self.username,
            self.password.as_str(),
            self.addr
        ))
    }
}

impl Drop for SocksBridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// 16 random bytes as 32 hex digits (SOCKS5 credentials are at most 255 bytes of anything;
/// hex keeps them safe inside a URL).
fn random_token() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Why one bridged connection ended early.
#[derive(Debug, thiserror::Error)]
enum BridgeError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("SOCKS handshake: {0}")]
    Socks(String),
    #[error("refused: {0}")]
    Refused(&'static str),
    #[error("dial failed: {0}")]
    Dial(NetError),
}

async fn serve<D, F, S>(
    mut tcp: TcpStream,
    expected: &SocksAuth,
    dial: D,
) -> Result<(), BridgeError>
where
    D: Fn(String, u16) -> F,
    F: Future<Output = Result<S, NetError>>,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hs = SocksProxyHandshake::new();
    let mut buf = Buffer::new_precise();
    let request = loop {
        let step = match hs.step(&mut buf) {
            Ok(step) => step,
            Err(e) => {
                // A request the parser does not take (BIND, UDP): say so, as SOCKS5 does.
                if matches!(e, tor_socksproto::Error::NotImplemented(_)) {
                    tcp.write_all(&[
                        5,
                        SocksStatus::COMMAND_NOT_SUPPORTED.into(),
                        0,
                        1,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                    ])
                    .await?;
                }
                return Err(BridgeError::Socks(e.to_string()));
            }
        };
        match step {
            NextStep::Send(data) => tcp.write_all(&data).await?,
            NextStep::Recv(mut recv) => {
                let n = tcp.read(recv.buf()).await?;
                if n == 0 {
                    return Err(BridgeError::Refused("closed during the handshake"));
                }
                recv.note_received(n)
                    .map_err(|e| BridgeError::Socks(e.to_string()))?;
            }
            NextStep::Finished(done) => {
                break done
                    .into_output()
                    .map_err(|e| BridgeError::Socks(e.to_string()))?;
            }
        }
    };
    let reply = |status| {
        request
            .reply(status, None)
            .map_err(|e| BridgeError::Socks(e.to_string()))
    };
    if request.version() != SocksVersion::V5 || !same_auth(request.auth(), expected) {
        tcp.write_all(&reply(SocksStatus::NOT_ALLOWED)?).await?;
        return Err(BridgeError::Refused("wrong or missing credentials"));
    }
    if request.command() != SocksCmd::CONNECT {
        tcp.write_all(&reply(SocksStatus::COMMAND_NOT_SUPPORTED)?)
            .await?;
        return Err(BridgeError::Refused("only CONNECT is served"));
    }
    let mut upstream = match dial(request.addr().to_string(), request.port()).await {
        Ok(s) => s,
        Err(e) => {
            tcp.write_all(&reply(SocksStatus::HOST_UNREACHABLE)?)
                .await?;
            return Err(BridgeError::Dial(e));
        }
    };
    tcp.write_all(&reply(SocksStatus::SUCCEEDED)?).await?;
    tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await?;
    Ok(())
}

/// Credentials compared without an early exit on the first differing byte.
fn same_auth(got: &SocksAuth, expected: &SocksAuth) -> bool {
    match (got, expected) {
        (SocksAuth::Username(u, p), SocksAuth::Username(eu, ep)) => ct_eq(u, eu) & ct_eq(p, ep),
        _ => false,
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bridge whose "Tor" is a plain TCP connection to loopback, and an echo server.
    async fn bridge_to_echo() -> (SocksBridge, u16) {
        let echo = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let bridge = SocksBridge::start_with(|host: String, port: u16| async move {
            // Names arrive unresolved; this test maps the one it uses to loopback.
            let target = if host == "echo.example" {
                "127.0.0.1".to_string()
            } else {
                host
            };
            TcpStream::connect((target.as_str(), port))
                .await
                .map_err(NetError::Connect)
        })
        .await
        .unwrap();
        (bridge, port)
    }

    /// A minimal SOCKS5 client: greeting with the given methods, optional user/password,
    /// CONNECT to a name. Returns the reply code of the request (or of the auth step).
    async fn socks5_connect(
        bridge: &SocksBridge,
        creds: Option<(&str, &str)>,
        host: &str,
        port: u16,
        command: u8,
    ) -> (TcpStream, u8) {
        let mut s = TcpStream::connect(bridge.addr()).await.unwrap();
        let method = if creds.is_some() { 2 } else { 0 };
        s.write_all(&[5, 1, method]).await.unwrap();
        let mut two = [0u8; 2];
        s.read_exact(&mut two).await.unwrap();
        assert_eq!(two, [5, method]);
        if let Some((u, p)) = creds {
            let mut m = vec![1, u.len() as u8];
            m.extend_from_slice(u.as_bytes());
            m.push(p.len() as u8);
            m.extend_from_slice(p.as_bytes());
            s.write_all(&m).await.unwrap();
            s.read_exact(&mut two).await.unwrap();
            assert_eq!(two[0], 1);
        }
        let mut req = vec![5, command, 0, 3, host.len() as u8];
        req.extend_from_slice(host.as_bytes());
        req.extend_from_slice(&port.to_be_bytes());
        s.write_all(&req).await.unwrap();
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!(head[0], 5, "a SOCKS5 reply");
        // Skip the bound address and port.
        let rest = match head[3] {
            1 => 4 + 2,
            4 => 16 + 2,
            other => panic!("unexpected address type {other} in {head:?}"),
        };
        let mut skip = vec![0u8; rest];
        s.read_exact(&mut skip).await.unwrap();
        (s, head[1])
    }

    fn creds_of(bridge: &SocksBridge) -> (String, String) {
        let url = bridge.proxy_url();
        let rest = url.strip_prefix("socks5h://").unwrap();
        let (userinfo, _) = rest.split_once('@').unwrap();
        let (u, p) = userinfo.split_once(':').unwrap();
        (u.to_string(), p.to_string())
    }

    #[tokio::test]
    async fn carries_a_stream_for_the_right_credentials_and_passes_names_unresolved() {
        let (bridge, port) = bridge_to_echo().await;
        let (u, p) = creds_of(&bridge);
        assert_eq!(u.len(), 32);
        assert_ne!(u, p);
        let (mut s, code) = socks5_connect(&bridge, Some((&u, &p)), "echo.example", port, 1).await;
        assert_eq!(code, 0, "SUCCEEDED");
        s.write_all(b"through the bridge").await.unwrap();
        let mut back = [0u8; 18];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"through the bridge");
    }

    #[tokio::test]
    async fn refuses_wrong_or_missing_credentials_and_other_commands() {
        let (bridge, port) = bridge_to_echo().await;
        let (u, p) = creds_of(&bridge);
        let (_, code) = socks5_connect(&bridge, Some((&u, "0000")), "echo.example", port, 1).await;
        assert_eq!(code, 2, "NOT_ALLOWED for a wrong password");
        let (_, code) = socks5_connect(&bridge, None, "echo.example", port, 1).await;
        assert_eq!(code, 2, "NOT_ALLOWED without credentials");
        let (_, code) = socks5_connect(&bridge, Some((&u, &p)), "echo.example", port, 2).await;
        assert_eq!(code, 7, "COMMAND_NOT_SUPPORTED for BIND");
    }

    #[tokio::test]
    async fn a_failed_dial_is_a_socks_failure_not_a_direct_connection() {
        let (bridge, _) = bridge_to_echo().await;
        let (u, p) = creds_of(&bridge);
        // Port 1 on loopback: nothing listens, the dial fails, the client hears so.
        let (_, code) = socks5_connect(&bridge, Some((&u, &p)), "127.0.0.1", 1, 1).await;
        assert_eq!(code, 4, "HOST_UNREACHABLE");
    }

    #[test]
    fn the_debug_form_hides_the_credentials() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (bridge, _) = bridge_to_echo().await;
            let (u, p) = creds_of(&bridge);
            let shown = format!("{bridge:?}");
            assert!(!shown.contains(&u) && !shown.contains(&p), "{shown}");
        });
    }
}
