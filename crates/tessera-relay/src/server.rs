//! The TLS listener, HTTP routes and WebSocket sessions.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tessera_proto::{RelayAddress, paths};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::{Config, RelayError, RelayIdentity};

/// A client that has not finished its TLS handshake by then is dropped (slow-client defence).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Largest WebSocket message accepted (frames are defined with the relay protocol).
const MAX_WS_MESSAGE: usize = 256 * 1024;

/// A relay whose socket is bound and whose identity is loaded, ready to serve.
pub struct BoundRelay {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    address: RelayAddress,
}

/// Loads (or creates) the relay identity and binds the listening socket.
pub async fn bind(config: &Config) -> Result<BoundRelay, RelayError> {
    let identity = RelayIdentity::load_or_create(&config.data_dir)?;
    let acceptor = TlsAcceptor::from(Arc::new(identity.server_config()?));
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RelayError::Listen {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| RelayError::Listen {
        addr: config.listen,
        source,
    })?;
    let address = RelayAddress {
        host: config.public_host.clone(),
        port: config.public_port.unwrap_or(local.port()),
        pin: identity.pin(),
    };
    Ok(BoundRelay {
        listener,
        acceptor,
        address,
    })
}

#[derive(Clone)]
struct AppState {
    /// Becomes `true` when the relay is shutting down.
    stopping: watch::Receiver<bool>,
    /// Held by every connection and session; shutdown waits until all clones are dropped.
    _alive: mpsc::Sender<()>,
}

impl BoundRelay {
    /// The address users put in their clients.
    pub fn address(&self) -> &RelayAddress {
        &self.address
    }

    /// The socket address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes, then stops accepting, asks open connections to finish
    /// and waits for them (at most ten seconds).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        let router = Router::new()
            .route(paths::HEALTH, get(|| async { "ok" }))
            .route(paths::WEBSOCKET_V1, get(websocket))
            .with_state(AppState {
                stopping: stop_rx.clone(),
                _alive: alive_tx,
            });

        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, _peer)) => {
                        let acceptor = self.acceptor.clone();
                        let router = router.clone();
                        let stopping = stop_rx.clone();
                        tokio::spawn(serve_connection(tcp, acceptor, router, stopping));
                    }
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }

        tracing::info!("shutting down: no new connections");
        drop(self.listener);
        drop(router);
        let _ = stop_tx.send(true);
        match tokio::time::timeout(SHUTDOWN_GRACE, alive_rx.recv()).await {
            Ok(_) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!("connections still open after the grace period; exiting"),
        }
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    router: Router,
    mut stopping: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            return;
        }
    };
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(router));
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = stopped(&mut stopping) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}

/// Completes once the relay is shutting down (or its controller is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    // The guard returned by `wait_for` is dropped here, before the caller awaits anything else.
    let _ = stopping.wait_for(|s| *s).await;
}

async fn websocket(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    ws.max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| session(socket, state))
}

async fn session(mut socket: WebSocket, state: AppState) {
    let mut stopping = state.stopping.clone();
    let close = |code, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    loop {
        tokio::select! {
            () = stopped(&mut stopping) => {
                let _ = socket.send(close(close_code::AWAY, "relay shutting down")).await;
                break;
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Binary(_) | Message::Text(_))) => {
                    let _ = socket
                        .send(close(close_code::UNSUPPORTED, "this relay version does not handle frames yet"))
                        .await;
                    break;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            },
        }
    }
    drop(state);
}
