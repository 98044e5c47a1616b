//! The TLS listener, HTTP routes, the metrics listener and shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tessera_proto::{MAX_FRAME_LEN, RelayAddress, paths};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::metrics::Metrics;
use crate::session::{Registry, Shared};
use crate::store::{Store, StoreConfig, StoreThreads};
use crate::turn::TurnService;
use crate::{Config, RelayError, RelayIdentity};

/// A client that has not finished its TLS handshake by then is dropped (slow-client defence).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that has not sent its HTTP upgrade request by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Largest WebSocket message read at all. Frames above `MAX_FRAME_LEN` but within this are read
/// and answered with `TooLarge` (a clean close the client can see); anything larger is cut off
/// by the WebSocket layer before it is buffered.
const WS_MESSAGE_LIMIT: usize = 2 * MAX_FRAME_LEN;
/// WebSocket read buffer per connection: small, so idle connections stay cheap.
const WS_READ_BUFFER: usize = 4 * 1024;
/// Name of the database file in the data directory.
pub const DATABASE_FILE: &str = "relay.sqlite3";

/// A relay whose socket is bound, identity loaded and database open, ready to serve.
pub struct BoundRelay {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    acceptor: TlsAcceptor,
    address: RelayAddress,
    shared: Arc<Shared>,
    threads: StoreThreads,
}

/// Loads (or creates) the relay identity, opens the database and binds the listening sockets.
pub async fn bind(config: &Config) -> Result<BoundRelay, RelayError> {
    let identity = RelayIdentity::load_or_create(&config.data_dir)?;
    let acceptor = TlsAcceptor::from(Arc::new(identity.server_config()?));
    let metrics = Arc::new(Metrics::default());
    let registry = Arc::new(Registry::default());
    let (store, threads) = Store::start(
        StoreConfig {
            path: config.data_dir.join(DATABASE_FILE),
            durability: config.durability,
            mailbox_max_messages: config.mailbox.max_messages,
            mailbox_max_bytes: config.mailbox.max_bytes,
            ttl_ms: config.mailbox.ttl_days.saturating_mul(86_400_000),
            low_water: config.limits.prekey_low_water,
        },
        metrics.clone(),
        registry.clone(),
    )?;
    let listen = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| RelayError::Listen { addr, source })
    };
    let listener = listen(config.listen).await?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(listen(addr).await?),
        None => None,
    };
    let local = listener.local_addr().map_err(|source| RelayError::Listen {
        addr: config.listen,
        source,
    })?;
    let pin = identity.pin();
    let address = RelayAddress {
        host: config.public_host.clone(),
        port: config.public_port.unwrap_or(local.port()),
        pin,
    };
    let turn = match config.turn {
        Some((listen, public_ip)) => Some(Arc::new(TurnService::start(listen, public_ip).await?)),
        None => None,
    };
    let mut shared = Shared::new(
        store,
        metrics,
        registry,
        config.limits,
        *pin.as_bytes(),
        turn,
    );
    let blobs = Arc::new(crate::blobs::Blobs::open(&config.data_dir, config.blobs)?);
    shared.blobs = Some(blobs);
    let shared = Arc::new(shared);
    Ok(BoundRelay {
        listener,
        metrics_listener,
        acceptor,
        address,
        shared,
        threads,
    })
}

#[derive(Clone)]
struct AppState {
    /// Becomes `true` when the relay is shutting down.
    stopping: watch::Receiver<bool>,
    /// Held by every connection and session; shutdown waits until all clones are dropped.
    alive: mpsc::Sender<()>,
    shared: Arc<Shared>,
}

impl BoundRelay {
    /// The address users put in their clients.
    pub fn address(&self) -> &RelayAddress {
        &self.address
    }

    /// The TURN service's URL, if it runs.
    pub fn turn_url(&self) -> Option<&str> {
        self.shared.turn.as_deref().map(TurnService::url)
    }

    /// The socket address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops accepting, lets open connections finish
    /// their in-flight requests (at most ten seconds), commits what the store has queued and
    /// returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let BoundRelay {
            listener,
            metrics_listener,
            acceptor,
            shared,
            threads,
            ..
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        let state = AppState {
            stopping: stop_rx.clone(),
            alive: alive_tx,
            shared: shared.clone(),
        };
        let router = Router::new()
            .route(paths::HEALTH, get(|| async { "ok" }))
            .route(paths::WEBSOCKET_V1, get(websocket))
            .with_state(state.clone());

        let sampler = tokio::spawn({
            let metrics = shared.metrics.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    metrics.sample_rate();
                }
            }
        });
        // Blobs past their TTL, and uploads not resumed in time, go (at start, then hourly).
        let sweeper = shared.blobs.clone().map(|blobs| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(3600));
                loop {
                    tick.tick().await;
                    let b = blobs.clone();
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    match tokio::task::spawn_blocking(move || b.sweep(now)).await {
                        Ok(Ok(0)) => {}
                        Ok(Ok(n)) => tracing::info!(blobs = n, "expired blobs deleted"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "sweeping blobs failed"),
                        Err(e) => tracing::warn!(error = %e, "sweeping blobs failed"),
                    }
                }
            })
        });
        let metrics_server = metrics_listener.map(|l| {
            let metrics = shared.metrics.clone();
            let app = Router::new().route(
                "/metrics",
                get(move || {
                    let metrics = metrics.clone();
                    async move {
                        (
                            [("content-type", "text/plain; version=0.0.4")],
                            metrics.render(),
                        )
                            .into_response()
                    }
                }),
            );
            tokio::spawn(async move {
                if let Err(e) = axum::serve(l, app).await {
                    tracing::warn!(error = %e, "metrics listener stopped");
                }
            })
        });
        drop(shared);

        let shared_for_turn = state.shared.turn.clone();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let acceptor = acceptor.clone();
                        let router = router.clone();
                        let state = state.clone();
                        tokio::spawn(serve_connection(tcp, peer, acceptor, router, state));
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
        if let Some(turn) = &shared_for_turn {
            turn.close().await;
        }
        drop(listener);
        drop(router);
        drop(state);
        let _ = stop_tx.send(true);
        match tokio::time::timeout(SHUTDOWN_GRACE, alive_rx.recv()).await {
            Ok(_) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!("connections still open after the grace period"),
        }
        sampler.abort();
        if let Some(s) = &sweeper {
            s.abort();
        }
        if let Some(m) = metrics_server {
            m.abort();
        }
        // Every Store handle is gone once the sessions are: the writer commits what is queued
        // and stops.
        let join = tokio::task::spawn_blocking(move || threads.join());
        match tokio::time::timeout(SHUTDOWN_GRACE, join).await {
            Ok(_) => tracing::info!("store closed"),
            Err(_) => tracing::warn!("store still busy after the grace period; exiting"),
        }
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    state: AppState,
) {
    let _ = tcp.set_nodelay(true);
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
    let mut stopping = state.stopping.clone();
    let service = router.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(service));
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
    drop(state);
}

async fn websocket(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
) -> Response {
    ws.max_message_size(WS_MESSAGE_LIMIT)
        .max_frame_size(WS_MESSAGE_LIMIT)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            let AppState {
                stopping,
                alive,
                shared,
            } = state;
            crate::session::run(socket, shared, peer.ip(), stopping).await;
            drop(alive);
        })
}

/// Completes once the relay is shutting down (or its controller is gone).
pub(crate) async fn stopped(stopping: &mut watch::Receiver<bool>) {
    // The guard returned by `wait_for` is dropped here, before the caller awaits anything else.
    let _ = stopping.wait_for(|s| *s).await;
}
