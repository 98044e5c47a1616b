//! One client connection speaking relay protocol v1 (`docs/relay-protocol.md`).
//!
//! The session reads frames, answers each request exactly once and in order, and pushes
//! envelopes to a logged-in device: first what is queued (paged from the store), then what
//! arrives live. Requests are pipelined: up to [`MAX_IN_FLIGHT`] may wait on the store at once,
//! and their replies are written in request order.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use rand::RngCore as _;
use tessera_crypto::{
    AccountPublic, DeviceCertificate, OneTimePrekeyBatch, SignedPrekeys, verify_relay_login,
};
use tessera_proto::{Body, ErrorCode, Frame, WireOneTimePrekey, WirePrekey};
use tokio::sync::{broadcast, watch};

use crate::config::Limits;
use crate::metrics::Metrics;
use crate::store::{
    DeviceKey, Enqueued, Notifier, Page, Push, Registered, Store, StoreError, StoredPrekey,
};

/// Requests waiting on the store per connection; the session stops reading beyond this.
const MAX_IN_FLIGHT: usize = 64;
/// Envelopes per page when sending a device its queued mail.
const BACKLOG_PAGE: u32 = 128;
/// How long a login challenge is valid.
const CHALLENGE_TTL: Duration = Duration::from_secs(60);
/// Live pushes buffered per device before the session falls back to reading the store.
const PUSH_BUFFER: usize = 32;
/// `retry_after_ms` for a full mailbox.
const MAILBOX_RETRY_MS: u32 = 60_000;
/// How long a closing connection waits for the client's close frame.
const LINGER: Duration = Duration::from_secs(2);
/// `retry_after_ms` for a store failure.
const INTERNAL_RETRY_MS: u32 = 1_000;

/// State shared by all sessions.
pub struct Shared {
    /// The store.
    pub store: Store,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Connected devices.
    pub registry: Arc<Registry>,
    /// Limits.
    pub limits: Limits,
    /// SHA-256 of the relay's SPKI, as bound into login proofs.
    pub pin: [u8; 32],
    /// The TURN service for calls, if configured.
    pub turn: Option<Arc<crate::turn::TurnService>>,
    /// The attachment blob store (`None`: this relay keeps no blobs).
    pub blobs: Option<Arc<crate::blobs::Blobs>>,
    rates: Mutex<HashMap<[u8; 32], Bucket>>,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

impl Shared {
    /// Shared state for a relay.
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        registry: Arc<Registry>,
        limits: Limits,
        pin: [u8; 32],
        turn: Option<Arc<crate::turn::TurnService>>,
    ) -> Self {
        Self {
            store,
            metrics,
            registry,
            limits,
            pin,
            turn,
            blobs: None,
            rates: Mutex::new(HashMap::new()),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the account's bucket; `Err(retry_after_ms)` when it is empty.
    fn take_token(&self, account: &[u8; 32]) -> Result<(), u32> {
        let rate = f64::from(self.limits.requests_per_second);
        let burst = f64::from(self.limits.request_burst.max(1));
        let now = Instant::now();
        let Ok(mut rates) = self.rates.lock() else {
            return Ok(());
        };
        if rates.len() > 100_000 {
            // Forget accounts whose buckets are full again (idle for burst/rate seconds).
            rates.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = rates.entry(*account).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - b.tokens) / rate) * 1000.0).ceil() as u32)
        }
    }

    /// Counts a connection from `ip`; `None` if that address is at its limit.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let max = self.limits.connections_per_ip;
        let mut per_ip = self.per_ip.lock().ok()?;
        let n = per_ip.entry(ip).or_insert(0);
        if max != 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            shared: self.clone(),
            ip,
        })
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A connection counted against its IP address; uncounted on drop.
struct IpSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut per_ip) = self.shared.per_ip.lock()
            && let Some(n) = per_ip.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Which session, if any, is logged in as each device.
#[derive(Default)]
pub struct Registry {
    devices: Mutex<HashMap<DeviceKey, (u64, broadcast::Sender<Push>)>>,
    next: AtomicU64,
}

impl Registry {
    /// Makes this session the device's: a previous session's receiver closes (it is replaced).
    fn attach(&self, device: DeviceKey) -> (u64, broadcast::Receiver<Push>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = broadcast::channel(PUSH_BUFFER);
        if let Ok(mut devices) = self.devices.lock() {
            devices.insert(device, (id, tx));
        }
        (id, rx)
    }

    /// Removes the session unless another has replaced it.
    fn detach(&self, device: &DeviceKey, id: u64) {
        if let Ok(mut devices) = self.devices.lock()
            && devices
                .get(device)
                .is_some_and(|(current, _)| *current == id)
        {
            devices.remove(device);
        }
    }
}

impl Notifier for Registry {
    fn notify(&self, device: &DeviceKey, push: Push) {
        if let Ok(devices) = self.devices.lock()
            && let Some((_, tx)) = devices.get(device)
        {
            // Fails only if the session is gone; it reads the store when it comes back.
            let _ = tx.send(push);
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn error(request_id: u32, code: ErrorCode, retry_after_ms: u32, detail: &str) -> Frame {
    Frame::reply(
        request_id,
        Body::Error {
            code,
            retry_after_ms,
            detail: detail.into(),
        },
    )
}

/// Runs a blob operation off the async threads and answers it.
async fn blob_reply(
    id: u32,
    blobs: Option<Arc<crate::blobs::Blobs>>,
    op: impl FnOnce(&crate::blobs::Blobs) -> Result<Body, crate::blobs::BlobError> + Send + 'static,
) -> Frame {
    use crate::blobs::BlobError;
    let Some(blobs) = blobs else {
        return error(id, ErrorCode::NotFound, 0, "this relay keeps no blobs");
    };
    match tokio::task::spawn_blocking(move || op(&blobs)).await {
        Ok(Ok(body)) => Frame::reply(id, body),
        Ok(Err(BlobError::NotFound)) => error(id, ErrorCode::NotFound, 0, "no such blob"),
        Ok(Err(BlobError::Quota)) => error(
            id,
            ErrorCode::QuotaExceeded,
            0,
            "over this relay's blob size limit or the account's quota",
        ),
        Ok(Err(BlobError::Mismatch)) => error(
            id,
            ErrorCode::Conflict,
            0,
            "the request does not fit the blob",
        ),
        Ok(Err(e @ BlobError::Io(_))) => {
            tracing::error!(error = %e, "blob operation failed");
            error(
                id,
                ErrorCode::Internal,
                INTERNAL_RETRY_MS,
                "the relay could not complete the request",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "blob operation panicked");
            error(
                id,
                ErrorCode::Internal,
                INTERNAL_RETRY_MS,
                "the relay could not complete the request",
            )
        }
    }
}

fn internal(request_id: u32, e: &StoreError) -> Frame {
    tracing::error!(error = %e, "store operation failed");
    error(
        request_id,
        ErrorCode::Internal,
        INTERNAL_RETRY_MS,
        "the relay could not complete the request",
    )
}

enum Auth {
    /// Waiting for `Register` or `Login`.
    Pending {
        nonce: [u8; 32],
        deadline: tokio::time::Instant,
        used: bool,
    },
    /// Logged in as a device.
    Device {
        device: DeviceKey,
        conn_id: u64,
        pushes: broadcast::Receiver<Push>,
        /// The challenge this connection logged in with (an account deletion proof signs it).
        nonce: [u8; 32],
    },
}

type Reply = Pin<Box<dyn Future<Output = Frame> + Send>>;
type PageFuture = Pin<Box<dyn Future<Output = Result<Page, StoreError>> + Send>>;

/// Why a session ends.
enum End {
    /// Send this error frame, then close.
    Error(Frame),
    /// The peer closed, vanished or stopped reading: just drop the connection.
    Gone,
    /// The relay is stopping.
    Stop,
}

struct Session {
    socket: WebSocket,
    shared: Arc<Shared>,
    auth: Auth,
    in_flight: FuturesOrdered<Reply>,
    /// Highest delivery id pushed on this connection.
    cursor: u64,
    /// Queued mail still to be read from the store.
    backlog_needed: bool,
    backlog: Option<PageFuture>,
    last_heard: Instant,
    /// Requests refused for rate in the current second, and when that second began.
    refused: (u32, Instant),
    write_timeout: Duration,
    dirty: bool,
}

/// Serves one WebSocket until it closes, misbehaves or the relay stops.
pub async fn run(
    socket: WebSocket,
    shared: Arc<Shared>,
    peer: IpAddr,
    mut stopping: watch::Receiver<bool>,
) {
    let slot = shared.admit(peer);
    shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let mut nonce = [0u8; 32];
    rand::rng().fill_bytes(&mut nonce);
    let mut s = Session {
        socket,
        shared: shared.clone(),
        auth: Auth::Pending {
            nonce,
            deadline: tokio::time::Instant::now() + CHALLENGE_TTL,
            used: false,
        },
        in_flight: FuturesOrdered::new(),
        cursor: 0,
        backlog_needed: false,
        backlog: None,
        last_heard: Instant::now(),
        refused: (0, Instant::now()),
        write_timeout: Duration::from_secs(shared.limits.write_timeout_secs.max(1)),
        dirty: false,
    };
    let end = if slot.is_none() {
        End::Error(error(
            0,
            ErrorCode::TooManyConnections,
            10_000,
            "too many connections from this address",
        ))
    } else {
        let challenge = Frame::reply(
            0,
            Body::Challenge {
                nonce,
                expires_at: now_ms() + CHALLENGE_TTL.as_millis() as u64,
            },
        );
        match s.send(&challenge).await {
            Ok(()) => s.serve(&mut stopping).await,
            Err(end) => end,
        }
    };
    s.finish(end).await;
    if let Auth::Device {
        device, conn_id, ..
    } = &s.auth
    {
        shared.registry.detach(device, *conn_id);
        shared.metrics.authenticated.fetch_sub(1, Ordering::Relaxed);
    }
    shared.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    drop(slot);
}

enum AuthEvent {
    Push(Result<Push, broadcast::error::RecvError>),
    Deadline,
}

/// The next push for a logged-in device (none while the backlog is pending), or the login
/// deadline of a connection that has not logged in.
async fn auth_event(auth: &mut Auth, backlog_needed: bool) -> AuthEvent {
    match auth {
        Auth::Device { pushes, .. } if !backlog_needed => AuthEvent::Push(pushes.recv().await),
        Auth::Device { .. } => std::future::pending().await,
        Auth::Pending { deadline, .. } => {
            tokio::time::sleep_until(*deadline).await;
            AuthEvent::Deadline
        }
    }
}

impl Session {
    async fn serve(&mut self, stopping: &mut watch::Receiver<bool>) -> End {
        let idle = Duration::from_secs(self.shared.limits.idle_timeout_secs);
        let mut ping = tokio::time::interval(idle / 3);
        ping.tick().await;
        loop {
            let can_read = self.in_flight.len() < MAX_IN_FLIGHT;
            let result = tokio::select! {
                biased;
                () = crate::server::stopped(stopping) => return End::Stop,
                Some(reply) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.feed(&reply).await
                }
                page = async {
                    match self.backlog.as_mut() {
                        Some(f) => f.await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.backlog = None;
                    self.backlog_page(page).await
                }
                event = auth_event(&mut self.auth, self.backlog_needed) => match event {
                    AuthEvent::Push(push) => self.push(push).await,
                    AuthEvent::Deadline => Err(End::Error(error(
                        0,
                        ErrorCode::ChallengeExpired,
                        0,
                        "no login within the challenge's lifetime",
                    ))),
                },
                msg = self.socket.recv(), if can_read => match msg {
                    Some(Ok(msg)) => {
                        self.last_heard = Instant::now();
                        self.message(msg).await
                    }
                    Some(Err(e)) => Err(ws_error(&e)),
                    None => Err(End::Gone),
                },
                _ = ping.tick() => {
                    if self.last_heard.elapsed() > idle {
                        Err(End::Error(error(0, ErrorCode::Timeout, 0, "connection idle too long")))
                    } else {
                        self.write(Message::Ping(Default::default())).await
                    }
                }
            };
            if let Err(end) = result {
                return end;
            }
            if let Err(end) = self.after_event().await {
                return end;
            }
        }
    }

    /// Writes replies that are already done, starts a backlog page if one is needed, flushes.
    async fn after_event(&mut self) -> Result<(), End> {
        while let Some(Some(reply)) = self.in_flight.next().now_or_never() {
            self.feed(&reply).await?;
        }
        if self.backlog_needed
            && self.backlog.is_none()
            && let Auth::Device { device, .. } = &self.auth
        {
            let store = self.shared.store.clone();
            let (device, after) = (*device, self.cursor);
            self.backlog = Some(Box::pin(async move {
                store.fetch(device, after, BACKLOG_PAGE).await
            }));
        }
        if self.dirty {
            self.dirty = false;
            tokio::time::timeout(self.write_timeout, self.socket.flush())
                .await
                .map_err(|_| End::Gone)?
                .map_err(|_| End::Gone)?;
        }
        Ok(())
    }

    async fn write(&mut self, msg: Message) -> Result<(), End> {
        tokio::time::timeout(self.write_timeout, self.socket.feed(msg))
            .await
            .map_err(|_| End::Gone)?
            .map_err(|_| End::Gone)?;
        self.dirty = true;
        Ok(())
    }

    async fn feed(&mut self, frame: &Frame) -> Result<(), End> {
        if let Body::Error { code, .. } = &frame.body {
            self.shared.metrics.error(*code);
            if code.closes_connection() {
                return Err(End::Error(frame.clone()));
            }
        }
        match frame.encode() {
            Ok(bytes) => self.write(Message::Binary(bytes.into())).await,
            Err(e) => {
                tracing::error!(error = %e, "a reply did not encode");
                Err(End::Gone)
            }
        }
    }

    async fn send(&mut self, frame: &Frame) -> Result<(), End> {
        self.feed(frame).await?;
        self.after_event().await
    }

    /// Sends a closing error (after the replies already owed) and a close frame.
    async fn finish(&mut self, end: End) {
        let frame = match end {
            End::Gone => return,
            End::Error(frame) => frame,
            End::Stop => {
                // Answer what was already asked: those operations are being committed.
                while let Some(reply) = self.in_flight.next().await {
                    if self.feed(&reply).await.is_err() {
                        break;
                    }
                }
                error(
                    0,
                    ErrorCode::ShuttingDown,
                    1_000,
                    "relay shutting down; reconnect later",
                )
            }
        };
        if let Body::Error { code, detail, .. } = &frame.body {
            self.shared.metrics.error(*code);
            tracing::debug!(
                ?code,
                detail,
                request = frame.request_id,
                "closing a connection"
            );
        }
        let close = match &frame.body {
            Body::Error {
                code: ErrorCode::ShuttingDown,
                ..
            } => close_code::AWAY,
            Body::Error {
                code: ErrorCode::TooLarge,
                ..
            } => close_code::SIZE,
            _ => close_code::POLICY,
        };
        if let Ok(bytes) = frame.encode() {
            let _ = self.write(Message::Binary(bytes.into())).await;
        }
        let _ = self
            .write(Message::Close(Some(CloseFrame {
                code: close,
                reason: "".into(),
            })))
            .await;
        let _ = tokio::time::timeout(self.write_timeout, self.socket.flush()).await;
        // Finish the closing handshake: read (and drop) what the client still sends until its
        // close frame. Closing the socket with unread input would reset the connection, and a
        // reset can destroy the error frame before the client reads it.
        let _ = tokio::time::timeout(LINGER, async {
            while let Some(Ok(msg)) = self.socket.recv().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    async fn push(&mut self, push: Result<Push, broadcast::error::RecvError>) -> Result<(), End> {
        match push {
            Ok(Push::Deliver(id, envelope)) => {
                if id > self.cursor {
                    self.cursor = id;
                    self.deliver(id, &envelope).await?;
                }
                Ok(())
            }
            Ok(Push::PrekeysLow(remaining)) => {
                self.feed(&Frame::reply(0, Body::PrekeysLow { remaining }))
                    .await
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Pushes were dropped; everything is in the store, read it from the cursor.
                self.backlog_needed = true;
                Ok(())
            }
            Err(broadcast::error::RecvError::Closed) => Err(End::Error(error(
                0,
                ErrorCode::Replaced,
                0,
                "another connection logged in as this device",
            ))),
        }
    }

    async fn deliver(&mut self, delivery_id: u64, envelope: &[u8]) -> Result<(), End> {
        let frame = Frame::reply(
            0,
            Body::Deliver {
                delivery_id,
                envelope: envelope.to_vec(),
            },
        );
        self.feed(&frame).await?;
        self.shared
            .metrics
            .delivered
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn backlog_page(&mut self, page: Result<Page, StoreError>) -> Result<(), End> {
        let page = page.map_err(|e| End::Error(internal(0, &e)))?;
        let full = page.len() == BACKLOG_PAGE as usize;
        for (id, envelope) in page {
            if id > self.cursor {
                self.cursor = id;
                self.deliver(id, &envelope).await?;
            }
        }
        // A short page means everything committed before it was read has been sent; later
        // commits arrive as pushes.
        self.backlog_needed = full;
        Ok(())
    }

    async fn message(&mut self, msg: Message) -> Result<(), End> {
        let bytes = match msg {
            Message::Binary(b) => b,
            Message::Text(_) => {
                return Err(End::Error(error(
                    0,
                    ErrorCode::Malformed,
                    0,
                    "text messages are not part of the protocol",
                )));
            }
            Message::Close(_) => return Err(End::Gone),
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
        };
        let frame = match Frame::decode(&bytes) {
            Ok(f) => f,
            Err(e) => {
                let request_id = bytes
                    .get(2..6)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes)
                    .unwrap_or(0);
                return Err(End::Error(error(
                    request_id,
                    ErrorCode::from(&e),
                    0,
                    "frame does not decode",
                )));
            }
        };
        let id = frame.request_id;
        match (&mut self.auth, frame.body) {
            (Auth::Pending { .. }, body @ (Body::Register { .. } | Body::Login { .. })) => {
                self.authenticate(id, body).await
            }
            (Auth::Device { .. }, Body::Register { .. } | Body::Login { .. }) => {
                Err(End::Error(error(
                    id,
                    ErrorCode::ChallengeExpired,
                    0,
                    "this connection's challenge is used",
                )))
            }
            (
                Auth::Pending { .. },
                Body::PublishPrekeys { .. }
                | Body::FetchBundle { .. }
                | Body::FetchCertificate { .. }
                | Body::Send { .. }
                | Body::Ack { .. }
                | Body::TurnCredentials
                | Body::BlobOpen { .. }
                | Body::BlobWrite { .. }
                | Body::BlobRead { .. }
                | Body::BlobFetched { .. }
                | Body::DeleteAccount { .. },
            ) => {
                self.feed(&error(id, ErrorCode::Unauthenticated, 0, "log in first"))
                    .await
            }
            (Auth::Device { device, nonce, .. }, Body::DeleteAccount { proof }) => {
                let (device, nonce) = (*device, *nonce);
                let store = self.shared.store.clone();
                // Checked here, so a proof that does not verify closes the connection as any
                // failed authentication does; the deletion itself is answered in order.
                match deletion_allowed(&store, device, &nonce, &self.shared.pin, &proof).await {
                    Ok(()) => {}
                    Err(DeletionRefused::Proof) => {
                        return Err(End::Error(error(
                            id,
                            ErrorCode::AuthFailed,
                            0,
                            "account deletion proof does not verify",
                        )));
                    }
                    Err(DeletionRefused::Reply(mut frame)) => {
                        frame.request_id = id;
                        return self.feed(&frame).await;
                    }
                }
                let reply: Reply = Box::pin(async move { delete_account(store, device, id).await });
                self.in_flight.push_back(reply);
                Ok(())
            }
            (Auth::Device { device, .. }, body) => {
                let device = *device;
                self.request(device, id, body).await
            }
            (Auth::Pending { .. }, _) => Err(End::Error(error(
                id,
                ErrorCode::Malformed,
                0,
                "clients do not send this kind",
            ))),
        }
    }

    /// Applies the account's rate limit; a client that keeps sending far above it is closed.
    fn rate_limited(&mut self, device: &DeviceKey, id: u32) -> Option<Result<Frame, End>> {
        let retry_after_ms = self.shared.take_token(&device.0).err()?;
        if self.refused.1.elapsed() > Duration::from_secs(1) {
            self.refused = (0, Instant::now());
        }
        self.refused.0 += 1;
        let frame = error(
            id,
            ErrorCode::RateLimited,
            retry_after_ms,
            "too many requests for this account",
        );
        if self.refused.0 > self.shared.limits.request_burst.max(16) {
            return Some(Err(End::Error(frame)));
        }
        Some(Ok(frame))
    }

    async fn request(&mut self, device: DeviceKey, id: u32, body: Body) -> Result<(), End> {
        // Acknowledging what this connection delivered is free: a device coming back to a full
        // mailbox must be able to clear it at full speed.
        let free = matches!(body, Body::Ack { delivery_id } if delivery_id <= self.cursor);
        match if free {
            None
        } else {
            self.rate_limited(&device, id)
        } {
            Some(Ok(frame)) => {
                self.in_flight
                    .push_back(Box::pin(std::future::ready(frame)));
                return Ok(());
            }
            Some(Err(end)) => return Err(end),
            None => {}
        }
        let store = self.shared.store.clone();
        let reply: Reply = match body {
            Body::Send {
                account_id,
                device_id,
                envelope,
            } => {
                if envelope.is_empty() {
                    return Err(End::Error(error(
                        id,
                        ErrorCode::Malformed,
                        0,
                        "empty envelope",
                    )));
                }
                // Queued here, in request order, so envelopes from one connection keep their
                // order; the reply waits for the commit.
                let pending = match store
                    .submit_enqueue((account_id, device_id), envelope)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => return self.feed(&internal(id, &e)).await,
                };
                Box::pin(async move {
                    match pending.await {
                        Ok(Enqueued::Accepted(relay_id)) => {
                            Frame::reply(id, Body::Accepted { relay_id })
                        }
                        Ok(Enqueued::NoDevice) => {
                            error(id, ErrorCode::NotFound, 0, "no such device")
                        }
                        Ok(Enqueued::Full) => error(
                            id,
                            ErrorCode::MailboxFull,
                            MAILBOX_RETRY_MS,
                            "the recipient's mailbox is full",
                        ),
                        Err(e) => internal(id, &e),
                    }
                })
            }
            Body::Ack { delivery_id } => {
                let pending = match store.submit_ack(device, delivery_id).await {
                    Ok(p) => p,
                    Err(e) => return self.feed(&internal(id, &e)).await,
                };
                Box::pin(async move {
                    // Acknowledging twice is harmless: delivery is at-least-once.
                    match pending.await {
                        Ok(_) => Frame::reply(id, Body::Ok),
                        Err(e) => internal(id, &e),
                    }
                })
            }
            Body::FetchBundle {
                account_id,
                device_id,
            } => Box::pin(async move {
                match store.bundle((account_id, device_id)).await {
                    Ok(Some(b)) => Frame::reply(
                        id,
                        Body::Bundle {
                            account_public: b.account_public,
                            device_certificate: b.certificate,
                            signed: b.signed,
                            one_time: b.one_time.map(|p| WireOneTimePrekey {
                                id: p.prekey_id,
                                public: p.public,
                                index: p.position,
                                path: p.path,
                            }),
                        },
                    ),
                    Ok(None) => error(
                        id,
                        ErrorCode::NotFound,
                        0,
                        "no such device, or it has published no prekeys",
                    ),
                    Err(e) => internal(id, &e),
                }
            }),
            Body::PublishPrekeys { signed, one_time } => {
                Box::pin(async move { publish(store, device, id, signed, one_time).await })
            }
            Body::FetchCertificate {
                account_id,
                device_id,
            } => Box::pin(async move {
                match store.device((account_id, device_id)).await {
                    Ok(Some(r)) => Frame::reply(
                        id,
                        Body::Certificate {
                            device_certificate: r.certificate,
                        },
                    ),
                    Ok(None) => error(id, ErrorCode::NotFound, 0, "no such device"),
                    Err(e) => internal(id, &e),
                }
            }),
            Body::TurnCredentials => {
                let body = match self.shared.turn.as_deref().map(|t| t.credentials()) {
                    None => Body::Turn {
                        urls: Vec::new(),
                        username: String::new(),
                        credential: String::new(),
                        ttl_secs: 0,
                    },
                    Some(Ok(c)) => Body::Turn {
                        urls: vec![c.url],
                        username: c.username,
                        credential: c.credential.to_string(),
                        ttl_secs: crate::turn::CREDENTIAL_TTL.as_secs() as u32,
                    },
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "TURN credentials");
                        return self
                            .feed(&error(
                                id,
                                ErrorCode::Internal,
                                INTERNAL_RETRY_MS,
                                "TURN credentials unavailable",
                            ))
                            .await;
                    }
                };
                Box::pin(std::future::ready(Frame::reply(id, body)))
            }
            // Changes to a blob are made in request order (an upload's pieces follow each
            // other on one connection): this connection's next request waits for them.
            Body::BlobOpen {
                blob,
                size,
                fetches,
            } => {
                let (owner, now) = (device.0, now_ms());
                let frame = blob_reply(id, self.shared.blobs.clone(), move |b| {
                    let s = b.open_blob(&owner, &blob, size, fetches, now)?;
                    Ok(Body::BlobState {
                        blob,
                        size: s.size,
                        stored: s.stored,
                    })
                })
                .await;
                Box::pin(std::future::ready(frame))
            }
            Body::BlobWrite { blob, offset, data } => {
                let owner = device.0;
                let frame = blob_reply(id, self.shared.blobs.clone(), move |b| {
                    let s = b.write(&owner, &blob, offset, &data)?;
                    Ok(Body::BlobState {
                        blob,
                        size: s.size,
                        stored: s.stored,
                    })
                })
                .await;
                Box::pin(std::future::ready(frame))
            }
            Body::BlobFetched { blob } => {
                let frame = blob_reply(id, self.shared.blobs.clone(), move |b| {
                    b.fetched(&blob)?;
                    Ok(Body::Ok)
                })
                .await;
                Box::pin(std::future::ready(frame))
            }
            Body::BlobRead { blob, offset, len } => {
                let blobs = self.shared.blobs.clone();
                Box::pin(blob_reply(id, blobs, move |b| {
                    let data = b.read(&blob, offset, len)?;
                    Ok(Body::BlobData { blob, offset, data })
                }))
            }
            _ => {
                return Err(End::Error(error(
                    id,
                    ErrorCode::Malformed,
                    0,
                    "clients do not send this kind",
                )));
            }
        };
        self.in_flight.push_back(reply);
        Ok(())
    }

    async fn authenticate(&mut self, id: u32, body: Body) -> Result<(), End> {
        let Auth::Pending {
            nonce,
            deadline,
            used,
        } = &mut self.auth
        else {
            return Ok(());
        };
        let expired = || {
            End::Error(error(
                id,
                ErrorCode::ChallengeExpired,
                0,
                "challenge already used or expired",
            ))
        };
        if *used || tokio::time::Instant::now() >= *deadline {
            return Err(expired());
        }
        *used = true;
        let nonce = *nonce;
        let auth_failed = |detail: &str| End::Error(error(id, ErrorCode::AuthFailed, 0, detail));
        let now = now_ms();
        let device: DeviceKey = match body {
            Body::Register {
                account_public,
                device_certificate,
                proof,
            } => {
                let account = AccountPublic::from_bytes(&account_public)
                    .map_err(|_| auth_failed("account keys do not parse"))?;
                let cert = DeviceCertificate::from_bytes(&device_certificate)
                    .map_err(|_| auth_failed("device certificate does not parse"))?;
                cert.verify(&account, now)
                    .map_err(|_| auth_failed("device certificate does not verify"))?;
                let device = (cert.account_id.0, cert.fields.device_id);
                verify_relay_login(
                    &cert.fields.auth_key,
                    &nonce,
                    &self.shared.pin,
                    &cert.account_id,
                    device.1,
                    &proof,
                )
                .map_err(|_| auth_failed("login proof does not verify"))?;
                match self
                    .shared
                    .store
                    .register(
                        device.0,
                        account_public,
                        device.1,
                        cert.fields.serial,
                        device_certificate,
                    )
                    .await
                {
                    Ok(Registered::New | Registered::Updated | Registered::Same) => device,
                    Ok(Registered::Deleted) => {
                        return self
                            .feed(&error(
                                id,
                                ErrorCode::AccountDeleted,
                                0,
                                "this account was deleted by its owner",
                            ))
                            .await;
                    }
                    Ok(Registered::Conflict) => {
                        return self
                            .feed(&error(
                                id,
                                ErrorCode::AlreadyRegistered,
                                0,
                                "device registered with this or a higher serial",
                            ))
                            .await;
                    }
                    Err(e) => return self.feed(&internal(id, &e)).await,
                }
            }
            Body::Login {
                account_id,
                device_id,
                proof,
            } => {
                let device = (account_id, device_id);
                let record = match self.shared.store.device(device).await {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        return self
                            .feed(&error(id, ErrorCode::NotFound, 0, "no such device"))
                            .await;
                    }
                    Err(e) => return self.feed(&internal(id, &e)).await,
                };
                let cert = DeviceCertificate::from_bytes(&record.certificate)
                    .map_err(|_| auth_failed("stored certificate unusable"))?;
                if now > cert.fields.not_after {
                    return Err(auth_failed(
                        "device certificate expired; register a new one",
                    ));
                }
                verify_relay_login(
                    &cert.fields.auth_key,
                    &nonce,
                    &self.shared.pin,
                    &cert.account_id,
                    device_id,
                    &proof,
                )
                .map_err(|_| auth_failed("login proof does not verify"))?;
                device
            }
            _ => return Ok(()),
        };
        let (conn_id, pushes) = self.shared.registry.attach(device);
        self.auth = Auth::Device {
            device,
            conn_id,
            pushes,
            nonce,
        };
        self.shared
            .metrics
            .authenticated
            .fetch_add(1, Ordering::Relaxed);
        self.backlog_needed = true;
        self.feed(&Frame::reply(id, Body::Ok)).await?;
        match self.shared.store.prekey_count(device).await {
            Ok(remaining) if remaining < self.shared.limits.prekey_low_water => {
                self.feed(&Frame::reply(0, Body::PrekeysLow { remaining }))
                    .await
            }
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot count prekeys");
                Ok(())
            }
        }
    }
}

/// Why a `DeleteAccount` is not carried out.
enum DeletionRefused {
    /// The proof does not verify under the account's identity: the connection is closed.
    Proof,
    /// Another answer (no such device, a store failure).
    Reply(Frame),
}

/// Whether `proof` is the account identity's signature over this connection's challenge and
/// the relay's pin (`docs/leaving.md`).
async fn deletion_allowed(
    store: &Store,
    device: DeviceKey,
    nonce: &[u8; 32],
    pin: &[u8; 32],
    proof: &[u8],
) -> Result<(), DeletionRefused> {
    let record = match store.device(device).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(DeletionRefused::Reply(error(
                0,
                ErrorCode::NotFound,
                0,
                "no such device",
            )));
        }
        Err(e) => return Err(DeletionRefused::Reply(internal(0, &e))),
    };
    let account =
        AccountPublic::from_bytes(&record.account_public).map_err(|_| DeletionRefused::Proof)?;
    if account.account_id().0 != device.0
        || tessera_crypto::verify_account_deletion(&account, nonce, pin, proof).is_err()
    {
        return Err(DeletionRefused::Proof);
    }
    Ok(())
}

/// Deletes the logged-in device's account (its proof checked by [`deletion_allowed`]). The
/// reply comes after the commit.
async fn delete_account(store: Store, device: DeviceKey, id: u32) -> Frame {
    match store.delete_account(device.0).await {
        Ok(d) => {
            tracing::info!(
                devices = d.devices,
                prekeys = d.prekeys,
                envelopes = d.envelopes,
                "an account was deleted by its owner"
            );
            Frame::reply(id, Body::Ok)
        }
        Err(e) => internal(id, &e),
    }
}

/// Checks an upload against the account's keys and stores it.
async fn publish(
    store: Store,
    device: DeviceKey,
    id: u32,
    signed: Vec<u8>,
    one_time: Vec<WirePrekey>,
) -> Frame {
    let rejected = |detail: &str| error(id, ErrorCode::AuthFailed, 0, detail);
    let record = match store.device(device).await {
        Ok(Some(r)) => r,
        Ok(None) => return error(id, ErrorCode::NotFound, 0, "no such device"),
        Err(e) => return internal(id, &e),
    };
    let Ok(account) = AccountPublic::from_bytes(&record.account_public) else {
        return error(
            id,
            ErrorCode::Internal,
            INTERNAL_RETRY_MS,
            "stored account keys unusable",
        );
    };
    let Ok(parsed) = SignedPrekeys::from_bytes(&signed) else {
        return rejected("signed prekeys do not parse");
    };
    let st = &parsed.statement;
    if st.account_id.0 != device.0 || st.device_id != device.1 {
        return rejected("prekeys are for another device");
    }
    if parsed.verify(&account, None).is_err() {
        return rejected("prekey signatures do not verify");
    }
    if one_time.is_empty() && st.batch_size > 0 {
        // A rotation of the signed and Kyber prekeys: only for the batch the relay holds.
        let held = record
            .signed_prekeys
            .as_deref()
            .and_then(|b| SignedPrekeys::from_bytes(b).ok());
        let same = held.is_some_and(|h| {
            h.statement.batch_id == st.batch_id && h.statement.batch_root == st.batch_root
        });
        if !same {
            // Not an attack but a client whose upload of a new batch never finished: it keeps
            // the connection and uploads a whole batch.
            return error(
                id,
                ErrorCode::NotFound,
                0,
                "the statement names a batch this relay does not hold",
            );
        }
        return match store.publish(device, signed, None).await {
            Ok(()) => Frame::reply(id, Body::Ok),
            Err(e) => internal(id, &e),
        };
    }
    if one_time.len() != st.batch_size as usize {
        return rejected("prekey count differs from the signed batch size");
    }
    let mut stored = Vec::with_capacity(one_time.len());
    if !one_time.is_empty() {
        let mut keys = Vec::with_capacity(one_time.len());
        for p in &one_time {
            match tessera_crypto::signal::PublicKey::deserialize(&p.public) {
                Ok(k) => keys.push((p.id, k)),
                Err(_) => return rejected("a one-time prekey does not parse"),
            }
        }
        let Ok(batch) = OneTimePrekeyBatch::new(keys) else {
            return rejected("one-time prekey batch is invalid");
        };
        if batch.root() != st.batch_root {
            return rejected("one-time prekeys differ from the signed batch");
        }
        for (i, p) in one_time.into_iter().enumerate() {
            let Some(proof) = batch.proof(i) else {
                return rejected("one-time prekey batch is invalid");
            };
            stored.push(StoredPrekey {
                position: i as u32,
                prekey_id: p.id,
                public: p.public,
                path: proof.path_bytes(),
            });
        }
    }
    match store.publish(device, signed, Some(stored)).await {
        Ok(()) => Frame::reply(id, Body::Ok),
        Err(e) => internal(id, &e),
    }
}

fn ws_error(e: &axum::Error) -> End {
    use std::error::Error as _;
    use tokio_tungstenite::tungstenite::Error as WsError;
    // The WebSocket layer refuses an oversized message before buffering it.
    match e.source().and_then(|s| s.downcast_ref::<WsError>()) {
        Some(WsError::Capacity(_)) => End::Error(error(
            0,
            ErrorCode::TooLarge,
            0,
            "frame above the size limit",
        )),
        _ => End::Gone,
    }
}
