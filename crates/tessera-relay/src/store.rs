//! The relay's durable state: accounts, devices, prekeys and mailboxes in one SQLite database
//! (WAL). The schema and its migrations are in `docs/relay-store.md`.
//!
//! One thread owns the write connection. It takes the operations that are waiting (up to
//! [`MAX_BATCH`]), applies each inside its own savepoint of one transaction, commits once (group
//! commit: one fsync for the whole batch) and only then answers them. So an `Accepted` reply
//! always means "on disk", and a crash loses only operations that were never answered.
//! A second thread checkpoints the WAL with its own connection so the writer never stalls on it.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension as _, params};
use tokio::sync::{mpsc, oneshot};

use crate::RelayError;
use crate::metrics::Metrics;

/// Most operations applied in one transaction.
const MAX_BATCH: usize = 1024;
/// How often expired envelopes are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How often the WAL is checkpointed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// The schema version this build writes (one numbered migration per version).
pub const SCHEMA_VERSION: u32 = 2;

/// Numbered migrations: entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE accounts (
        account_id BLOB PRIMARY KEY,
        public     BLOB NOT NULL,
        created_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE devices (
        account_id     BLOB NOT NULL REFERENCES accounts(account_id),
        device_id      INTEGER NOT NULL,
        serial         INTEGER NOT NULL,
        certificate    BLOB NOT NULL,
        signed_prekeys BLOB,
        updated_ms     INTEGER NOT NULL,
        PRIMARY KEY (account_id, device_id)
     ) WITHOUT ROWID;
     CREATE TABLE one_time_prekeys (
        account_id BLOB NOT NULL,
        device_id  INTEGER NOT NULL,
        position   INTEGER NOT NULL,
        prekey_id  INTEGER NOT NULL,
        public     BLOB NOT NULL,
        path       BLOB NOT NULL,
        PRIMARY KEY (account_id, device_id, position)
     ) WITHOUT ROWID;
     CREATE TABLE mailbox (
        delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id  BLOB NOT NULL,
        device_id   INTEGER NOT NULL,
        expires_ms  INTEGER NOT NULL,
        size        INTEGER NOT NULL,
        envelope    BLOB NOT NULL
     );
     CREATE INDEX mailbox_by_device ON mailbox(account_id, device_id, delivery_id);
     CREATE INDEX mailbox_by_expiry ON mailbox(expires_ms);",
    // 2: accounts deleted by their owners (never registered again).
    "CREATE TABLE deleted_accounts (
        account_id BLOB PRIMARY KEY,
        deleted_ms INTEGER NOT NULL
     ) WITHOUT ROWID;",
];

/// A device's address on the relay.
pub type DeviceKey = ([u8; 32], u32);

/// Queued envelopes as `(delivery id, envelope)`, oldest first.
pub type Page = Vec<(u64, Arc<[u8]>)>;

/// How hard a commit tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync at every commit: an accepted envelope survives power loss (default).
    Full,
    /// fsync at checkpoints only: survives a crash of the relay process, not of the machine.
    Normal,
}

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Database file.
    pub path: PathBuf,
    /// Commit durability.
    pub durability: Durability,
    /// Most envelopes waiting for one device.
    pub mailbox_max_messages: u64,
    /// Most bytes waiting for one device.
    pub mailbox_max_bytes: u64,
    /// How long an envelope waits before it is dropped, in ms.
    pub ttl_ms: u64,
    /// Below this many one-time prekeys the owner is told to upload more.
    pub low_water: u32,
}

/// A one-time prekey as stored: with its place and Merkle path in the signed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPrekey {
    /// Position in the batch.
    pub position: u32,
    /// Prekey id.
    pub prekey_id: u32,
    /// Public key (libsignal encoding).
    pub public: Vec<u8>,
    /// Concatenated sibling hashes.
    pub path: Vec<u8>,
}

/// What `FetchBundle` returns.
#[derive(Debug, Clone)]
pub struct BundleRecord {
    /// The account's public keys.
    pub account_public: Vec<u8>,
    /// Device certificate.
    pub certificate: Vec<u8>,
    /// Signed prekeys.
    pub signed: Vec<u8>,
    /// One one-time prekey, now removed from the store.
    pub one_time: Option<StoredPrekey>,
}

/// Outcome of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A new device (and perhaps a new account).
    New,
    /// A known device with a higher certificate serial: certificate replaced.
    Updated,
    /// The same certificate is already registered (a retried registration).
    Same,
    /// The device exists with another certificate of this or a higher serial.
    Conflict,
    /// The account was deleted by its owner.
    Deleted,
}

/// A registered device as login needs it.
#[derive(Debug, Clone)]
pub struct DeviceRecord {
    /// The device certificate.
    pub certificate: Vec<u8>,
    /// The account's public keys.
    pub account_public: Vec<u8>,
    /// The signed prekey statement last published (`None` before the first).
    pub signed_prekeys: Option<Vec<u8>>,
}

/// Outcome of an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Committed with this delivery id.
    Accepted(u64),
    /// No such device.
    NoDevice,
    /// The mailbox is at its cap.
    Full,
}

/// Something a connected device should be told, sent after the commit that caused it.
#[derive(Debug, Clone)]
pub enum Push {
    /// A new envelope.
    Deliver(u64, Arc<[u8]>),
    /// One-time prekeys are running low.
    PrekeysLow(u32),
}

/// Delivers [`Push`]es to connected devices.
pub trait Notifier: Send + Sync + 'static {
    /// Called after a commit, from the store thread; must not block.
    fn notify(&self, device: &DeviceKey, push: Push);
}

/// Why a store operation failed. Details go to the log, never to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (disk full, I/O error, corruption).
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The batch this operation was in did not commit.
    #[error("the transaction did not commit")]
    CommitFailed,
    /// The store thread has stopped.
    #[error("the store is shut down")]
    Closed,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// The result of a queued operation, available after its commit.
pub struct Pending<T>(oneshot::Receiver<Result<T, StoreError>>);

impl<T> Pending<T> {
    /// Waits for the commit.
    pub async fn await_result(self) -> Result<T, StoreError> {
        self.0.await.map_err(|_| StoreError::Closed)?
    }
}

impl<T> std::future::IntoFuture for Pending<T>
where
    T: Send + 'static,
{
    type Output = Result<T, StoreError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.await_result())
    }
}

enum Op {
    Register {
        account_id: [u8; 32],
        account_public: Vec<u8>,
        device_id: u32,
        serial: u32,
        certificate: Vec<u8>,
        reply: Reply<Registered>,
    },
    Certificate {
        device: DeviceKey,
        reply: Reply<Option<DeviceRecord>>,
    },
    Publish {
        device: DeviceKey,
        signed: Vec<u8>,
        prekeys: Option<Vec<StoredPrekey>>,
        reply: Reply<()>,
    },
    Bundle {
        device: DeviceKey,
        reply: Reply<Option<BundleRecord>>,
    },
    PrekeyCount {
        device: DeviceKey,
        reply: Reply<u32>,
    },
    Enqueue {
        device: DeviceKey,
        envelope: Vec<u8>,
        reply: Reply<Enqueued>,
    },
    Fetch {
        device: DeviceKey,
        after: u64,
        limit: u32,
        reply: Reply<Page>,
    },
    Ack {
        device: DeviceKey,
        delivery_id: u64,
        reply: Reply<bool>,
    },
    DeleteAccount {
        account_id: [u8; 32],
        reply: Reply<Deleted>,
    },
}

/// What deleting an account removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Devices (with their certificates and signed prekeys).
    pub devices: u64,
    /// One-time prekeys.
    pub prekeys: u64,
    /// Envelopes waiting in its mailboxes.
    pub envelopes: u64,
}

/// A handle to the store thread; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Op>,
}

/// Joins the store threads once every [`Store`] handle is dropped.
pub struct StoreThreads {
    writer: std::thread::JoinHandle<()>,
    checkpointer: std::thread::JoinHandle<()>,
    stop_checkpointer: std::sync::mpsc::Sender<()>,
}

impl StoreThreads {
    /// Waits until the writer has applied and committed every queued operation and both threads
    /// have ended. Call after dropping every [`Store`].
    pub fn join(self) {
        let _ = self.writer.join();
        let _ = self.stop_checkpointer.send(());
        let _ = self.checkpointer.join();
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn db_error(path: &Path, e: impl std::fmt::Display) -> RelayError {
    RelayError::Database {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Opens (creating or migrating) the database and checks it.
fn open(path: &Path, durability: Durability) -> Result<Connection, RelayError> {
    let conn = Connection::open(path).map_err(|e| db_error(path, e))?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;
         PRAGMA wal_autocheckpoint = 0; PRAGMA busy_timeout = 5000;"
    ))
    .map_err(|e| db_error(path, e))?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| db_error(path, e))?;
    if check != "ok" {
        return Err(db_error(path, format!("integrity check failed: {check}")));
    }
    migrate(&conn).map_err(|e| db_error(path, e))?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), String> {
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if version as usize > MIGRATIONS.len() {
        return Err(format!(
            "schema version {version} is newer than this relay understands ({SCHEMA_VERSION}); \
             run a newer relay"
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = i + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {next}; COMMIT;"
        ))
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            format!("migration to schema version {next} failed: {e}")
        })?;
        tracing::info!(version = next, "database migrated");
    }
    Ok(())
}

impl Store {
    /// Opens the database and starts the store threads.
    pub fn start(
        config: StoreConfig,
        metrics: Arc<Metrics>,
        notifier: Arc<dyn Notifier>,
    ) -> Result<(Store, StoreThreads), RelayError> {
        let conn = open(&config.path, config.durability)?;
        let checkpoint_conn =
            Connection::open(&config.path).map_err(|e| db_error(&config.path, e))?;
        let (depth, bytes): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM mailbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| db_error(&config.path, e))?;
        metrics.queue_depth.store(depth, Ordering::Relaxed);
        metrics.queue_bytes.store(bytes, Ordering::Relaxed);

        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let mut writer = Writer {
            conn,
            config,
            metrics,
            notifier,
            usage: HashMap::new(),
            last_sweep: Instant::now() - SWEEP_EVERY,
        };
        let writer = std::thread::Builder::new()
            .name("relay-store".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| RelayError::Database {
                path: PathBuf::new(),
                message: format!("cannot start the store thread: {e}"),
            })?;
        let (stop_checkpointer, stop_rx) = std::sync::mpsc::channel();
        let checkpointer = std::thread::Builder::new()
            .name("relay-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, stop_rx))
            .map_err(|e| RelayError::Database {
                path: PathBuf::new(),
                message: format!("cannot start the checkpoint thread: {e}"),
            })?;
        Ok((
            Store { tx },
            StoreThreads {
                writer,
                checkpointer,
                stop_checkpointer,
            },
        ))
    }

    /// Queues an operation; the returned receiver resolves after its commit. Operations are
    /// applied in the order they are queued.
    async fn submit<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<Pending<T>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(Pending(rx))
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        self.submit(make).await?.await_result().await
    }

    /// Queues an envelope for the device's mailbox (in order with this caller's other queued
    /// operations); the result resolves after the commit.
    pub async fn submit_enqueue(
        &self,
        device: DeviceKey,
        envelope: Vec<u8>,
    ) -> Result<Pending<Enqueued>, StoreError> {
        self.submit(|reply| Op::Enqueue {
            device,
            envelope,
            reply,
        })
        .await
    }

    /// Queues an acknowledgement; the result resolves after the commit.
    pub async fn submit_ack(
        &self,
        device: DeviceKey,
        delivery_id: u64,
    ) -> Result<Pending<bool>, StoreError> {
        self.submit(|reply| Op::Ack {
            device,
            delivery_id,
            reply,
        })
        .await
    }

    /// Registers a device (and its account if new).
    pub async fn register(
        &self,
        account_id: [u8; 32],
        account_public: Vec<u8>,
        device_id: u32,
        serial: u32,
        certificate: Vec<u8>,
    ) -> Result<Registered, StoreError> {
        self.call(|reply| Op::Register {
            account_id,
            account_public,
            device_id,
            serial,
            certificate,
            reply,
        })
        .await
    }

    /// A device's certificate and account keys, if it is registered.
    pub async fn device(&self, device: DeviceKey) -> Result<Option<DeviceRecord>, StoreError> {
        self.call(|reply| Op::Certificate { device, reply }).await
    }

    /// Replaces the device's signed prekeys and, unless `prekeys` is `None`, its one-time
    /// prekeys.
    pub async fn publish(
        &self,
        device: DeviceKey,
        signed: Vec<u8>,
        prekeys: Option<Vec<StoredPrekey>>,
    ) -> Result<(), StoreError> {
        self.call(|reply| Op::Publish {
            device,
            signed,
            prekeys,
            reply,
        })
        .await
    }

    /// A bundle for the device, taking (and deleting) one one-time prekey if any are left.
    /// `None` if the device is unknown or has published no prekeys.
    pub async fn bundle(&self, device: DeviceKey) -> Result<Option<BundleRecord>, StoreError> {
        self.call(|reply| Op::Bundle { device, reply }).await
    }

    /// How many one-time prekeys the device has left.
    pub async fn prekey_count(&self, device: DeviceKey) -> Result<u32, StoreError> {
        self.call(|reply| Op::PrekeyCount { device, reply }).await
    }

    /// Stores an envelope in the device's mailbox; returns after the commit.
    #[cfg(test)]
    pub async fn enqueue(
        &self,
        device: DeviceKey,
        envelope: Vec<u8>,
    ) -> Result<Enqueued, StoreError> {
        self.call(|reply| Op::Enqueue {
            device,
            envelope,
            reply,
        })
        .await
    }

    /// Up to `limit` unexpired envelopes for the device with ids above `after`, oldest first.
    pub async fn fetch(
        &self,
        device: DeviceKey,
        after: u64,
        limit: u32,
    ) -> Result<Page, StoreError> {
        self.call(|reply| Op::Fetch {
            device,
            after,
            limit,
            reply,
        })
        .await
    }

    /// Deletes an account for good (`docs/leaving.md`): its devices, certificates, prekeys and
    /// mailboxes, in one transaction, and remembers its id so it is never registered again.
    pub async fn delete_account(&self, account_id: [u8; 32]) -> Result<Deleted, StoreError> {
        self.call(|reply| Op::DeleteAccount { account_id, reply })
            .await
    }

    /// Deletes a delivered envelope; `false` if the device had no envelope with that id.
    #[cfg(test)]
    pub async fn ack(&self, device: DeviceKey, delivery_id: u64) -> Result<bool, StoreError> {
        self.call(|reply| Op::Ack {
            device,
            delivery_id,
            reply,
        })
        .await
    }
}

fn checkpoint_loop(conn: Connection, stop: std::sync::mpsc::Receiver<()>) {
    loop {
        match stop.recv_timeout(CHECKPOINT_EVERY) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => {
                // Final checkpoint so the database file is complete on its own.
                let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
                return;
            }
        }
        if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Usage {
    count: u64,
    bytes: u64,
}

struct Writer {
    conn: Connection,
    config: StoreConfig,
    metrics: Arc<Metrics>,
    notifier: Arc<dyn Notifier>,
    /// Mailbox usage of devices seen since start (present only for registered devices).
    usage: HashMap<DeviceKey, Usage>,
    last_sweep: Instant,
}

/// A reply waiting for the commit, with what to announce afterwards.
enum Done {
    Register(Reply<Registered>, Result<Registered, StoreError>),
    Certificate(
        Reply<Option<DeviceRecord>>,
        Result<Option<DeviceRecord>, StoreError>,
    ),
    Unit(Reply<()>, Result<(), StoreError>),
    Bundle(
        Reply<Option<BundleRecord>>,
        Result<Option<BundleRecord>, StoreError>,
        Option<(DeviceKey, u32)>,
    ),
    Count(Reply<u32>, Result<u32, StoreError>),
    Enqueue(
        Reply<Enqueued>,
        Result<Enqueued, StoreError>,
        Option<(DeviceKey, Arc<[u8]>, u64)>,
    ),
    Fetch(Reply<Page>, Result<Page, StoreError>),
    Ack(Reply<bool>, Result<bool, StoreError>, Option<u64>),
    Deleted(Reply<Deleted>, Result<Deleted, StoreError>),
}

impl Done {
    /// Replaces a success with `Internal` after a failed commit.
    fn fail(self) -> Self {
        match self {
            Done::Register(r, _) => Done::Register(r, Err(StoreError::CommitFailed)),
            Done::Certificate(r, _) => Done::Certificate(r, Err(StoreError::CommitFailed)),
            Done::Unit(r, _) => Done::Unit(r, Err(StoreError::CommitFailed)),
            Done::Bundle(r, _, _) => Done::Bundle(r, Err(StoreError::CommitFailed), None),
            Done::Count(r, _) => Done::Count(r, Err(StoreError::CommitFailed)),
            Done::Enqueue(r, _, _) => Done::Enqueue(r, Err(StoreError::CommitFailed), None),
            Done::Fetch(r, _) => Done::Fetch(r, Err(StoreError::CommitFailed)),
            Done::Ack(r, _, _) => Done::Ack(r, Err(StoreError::CommitFailed), None),
            Done::Deleted(r, _) => Done::Deleted(r, Err(StoreError::CommitFailed)),
        }
    }
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<Op>) {
        // A current-thread runtime gives this blocking thread a receive with a timeout.
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => Some(rt),
            Err(e) => {
                tracing::warn!(error = %e, "no timer for the store thread; sweeping on activity only");
                None
            }
        };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            if self.last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep();
            }
            // Wait for work, but wake up for the sweep.
            let first = match rx.try_recv() {
                Ok(op) => op,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match wait_for_op(rt.as_ref(), &mut rx, SWEEP_EVERY) {
                        Waited::Op(op) => op,
                        Waited::Timeout => continue,
                        Waited::Closed => break,
                    }
                }
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.apply(&mut batch);
        }
        tracing::info!("store: every queued operation committed; stopping");
    }

    fn apply(&mut self, batch: &mut Vec<Op>) {
        let started = Instant::now();
        let n = batch.len();
        let mut done = Vec::with_capacity(n);
        let committed = match self.conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                for op in batch.drain(..) {
                    done.push(self.apply_one(op));
                }
                match self.conn.execute_batch("COMMIT") {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %e, "commit failed; the batch is refused");
                        let _ = self.conn.execute_batch("ROLLBACK");
                        false
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot begin a transaction");
                for op in batch.drain(..) {
                    done.push(self.apply_failed(op));
                }
                false
            }
        };
        if !committed {
            // In-memory usage may count rows that were rolled back: reload lazily.
            self.usage.clear();
            self.reload_gauges();
        }
        self.metrics.commits.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .committed_ops
            .fetch_add(n as u64, Ordering::Relaxed);
        self.metrics
            .commit_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        for d in done {
            let d = if committed { d } else { d.fail() };
            self.answer(d);
        }
    }

    fn reload_gauges(&self) {
        if let Ok((depth, bytes)) = self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM mailbox",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        ) {
            self.metrics.queue_depth.store(depth, Ordering::Relaxed);
            self.metrics.queue_bytes.store(bytes, Ordering::Relaxed);
        }
    }

    fn answer(&self, d: Done) {
        match d {
            Done::Register(r, v) => {
                let _ = r.send(v);
            }
            Done::Certificate(r, v) => {
                let _ = r.send(v);
            }
            Done::Unit(r, v) => {
                let _ = r.send(v);
            }
            Done::Bundle(r, v, low) => {
                let _ = r.send(v);
                if let Some((owner, remaining)) = low {
                    self.notifier.notify(&owner, Push::PrekeysLow(remaining));
                }
            }
            Done::Count(r, v) => {
                let _ = r.send(v);
            }
            Done::Enqueue(r, v, push) => {
                if let Some((device, envelope, id)) = push {
                    self.metrics.accepted.fetch_add(1, Ordering::Relaxed);
                    self.metrics.envelope_accepted(envelope.len());
                    self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
                    self.metrics
                        .queue_bytes
                        .fetch_add(envelope.len() as i64, Ordering::Relaxed);
                    self.notifier.notify(&device, Push::Deliver(id, envelope));
                }
                let _ = r.send(v);
            }
            Done::Fetch(r, v) => {
                let _ = r.send(v);
            }
            Done::Deleted(r, v) => {
                if v.as_ref().is_ok_and(|d| d.envelopes > 0) {
                    self.reload_gauges();
                }
                let _ = r.send(v);
            }
            Done::Ack(r, v, freed) => {
                if let Some(size) = freed {
                    self.metrics.acked.fetch_add(1, Ordering::Relaxed);
                    self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                    self.metrics
                        .queue_bytes
                        .fetch_sub(size as i64, Ordering::Relaxed);
                }
                let _ = r.send(v);
            }
        }
    }

    fn apply_failed(&mut self, op: Op) -> Done {
        match op {
            Op::Register { reply, .. } => Done::Register(reply, Err(StoreError::CommitFailed)),
            Op::Certificate { reply, .. } => {
                Done::Certificate(reply, Err(StoreError::CommitFailed))
            }
            Op::Publish { reply, .. } => Done::Unit(reply, Err(StoreError::CommitFailed)),
            Op::Bundle { reply, .. } => Done::Bundle(reply, Err(StoreError::CommitFailed), None),
            Op::PrekeyCount { reply, .. } => Done::Count(reply, Err(StoreError::CommitFailed)),
            Op::Enqueue { reply, .. } => Done::Enqueue(reply, Err(StoreError::CommitFailed), None),
            Op::Fetch { reply, .. } => Done::Fetch(reply, Err(StoreError::CommitFailed)),
            Op::Ack { reply, .. } => Done::Ack(reply, Err(StoreError::CommitFailed), None),
            Op::DeleteAccount { reply, .. } => Done::Deleted(reply, Err(StoreError::CommitFailed)),
        }
    }

    /// Runs `f` inside a savepoint: its writes are undone if it fails.
    fn savepoint<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn.execute_batch("SAVEPOINT op")?;
        match f(self) {
            Ok(v) => {
                self.conn.execute_batch("RELEASE op")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK TO op; RELEASE op");
                Err(e)
            }
        }
    }

    fn apply_one(&mut self, op: Op) -> Done {
        match op {
            Op::Register {
                account_id,
                account_public,
                device_id,
                serial,
                certificate,
                reply,
            } => {
                let r = self.savepoint(|w| {
                    w.register(
                        &account_id,
                        &account_public,
                        device_id,
                        serial,
                        &certificate,
                    )
                });
                Done::Register(reply, r)
            }
            Op::Certificate { device, reply } => {
                let r = self
                    .conn
                    .prepare_cached(
                        "SELECT d.certificate, a.public, d.signed_prekeys FROM devices d
                         JOIN accounts a ON a.account_id = d.account_id
                         WHERE d.account_id = ?1 AND d.device_id = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![&device.0[..], device.1], |r| {
                            Ok(DeviceRecord {
                                certificate: r.get(0)?,
                                account_public: r.get(1)?,
                                signed_prekeys: r.get(2)?,
                            })
                        })
                        .optional()
                    })
                    .map_err(StoreError::from);
                Done::Certificate(reply, r)
            }
            Op::Publish {
                device,
                signed,
                prekeys,
                reply,
            } => {
                let r = self.savepoint(|w| w.publish(&device, &signed, prekeys.as_deref()));
                Done::Unit(reply, r)
            }
            Op::Bundle { device, reply } => {
                let r = self.savepoint(|w| w.bundle(&device));
                let low_water = self.config.low_water;
                match r {
                    Ok(Some((record, remaining))) => {
                        let low = (record.one_time.is_some() && remaining < low_water)
                            .then_some((device, remaining));
                        Done::Bundle(reply, Ok(Some(record)), low)
                    }
                    Ok(None) => Done::Bundle(reply, Ok(None), None),
                    Err(e) => Done::Bundle(reply, Err(e), None),
                }
            }
            Op::PrekeyCount { device, reply } => {
                let r = self.prekey_count(&device);
                Done::Count(reply, r)
            }
            Op::Enqueue {
                device,
                envelope,
                reply,
            } => match self.savepoint(|w| w.enqueue(&device, &envelope)) {
                Ok(Enqueued::Accepted(id)) => Done::Enqueue(
                    reply,
                    Ok(Enqueued::Accepted(id)),
                    Some((device, Arc::from(envelope), id)),
                ),
                other => Done::Enqueue(reply, other, None),
            },
            Op::Fetch {
                device,
                after,
                limit,
                reply,
            } => {
                let r = self.fetch(&device, after, limit);
                Done::Fetch(reply, r)
            }
            Op::Ack {
                device,
                delivery_id,
                reply,
            } => match self.savepoint(|w| w.ack(&device, delivery_id)) {
                Ok(Some(size)) => Done::Ack(reply, Ok(true), Some(size)),
                Ok(None) => Done::Ack(reply, Ok(false), None),
                Err(e) => Done::Ack(reply, Err(e), None),
            },
            Op::DeleteAccount { account_id, reply } => {
                let r = self.savepoint(|w| w.delete_account(&account_id));
                if r.is_ok() {
                    self.usage.retain(|(a, _), _| *a != account_id);
                }
                Done::Deleted(reply, r)
            }
        }
    }

    fn delete_account(&mut self, account_id: &[u8; 32]) -> Result<Deleted, StoreError> {
        let a = &account_id[..];
        let envelopes = self
            .conn
            .execute("DELETE FROM mailbox WHERE account_id = ?1", params![a])?;
        let prekeys = self.conn.execute(
            "DELETE FROM one_time_prekeys WHERE account_id = ?1",
            params![a],
        )?;
        let devices = self
            .conn
            .execute("DELETE FROM devices WHERE account_id = ?1", params![a])?;
        self.conn
            .execute("DELETE FROM accounts WHERE account_id = ?1", params![a])?;
        self.conn.execute(
            "INSERT OR IGNORE INTO deleted_accounts (account_id, deleted_ms) VALUES (?1, ?2)",
            params![a, now_ms() as i64],
        )?;
        Ok(Deleted {
            devices: devices as u64,
            prekeys: prekeys as u64,
            envelopes: envelopes as u64,
        })
    }

    fn register(
        &mut self,
        account_id: &[u8; 32],
        account_public: &[u8],
        device_id: u32,
        serial: u32,
        certificate: &[u8],
    ) -> Result<Registered, StoreError> {
        let now = now_ms() as i64;
        let deleted: Option<i64> = self
            .conn
            .query_row(
                "SELECT deleted_ms FROM deleted_accounts WHERE account_id = ?1",
                params![&account_id[..]],
                |r| r.get(0),
            )
            .optional()?;
        if deleted.is_some() {
            return Ok(Registered::Deleted);
        }
        self.conn.execute(
            "INSERT OR IGNORE INTO accounts (account_id, public, created_ms) VALUES (?1, ?2, ?3)",
            params![&account_id[..], account_public, now],
        )?;
        let known: Option<(u32, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT serial, certificate FROM devices WHERE account_id = ?1 AND device_id = ?2",
                params![&account_id[..], device_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match known {
            None => {
                self.conn.execute(
                    "INSERT INTO devices (account_id, device_id, serial, certificate, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![&account_id[..], device_id, serial, certificate, now],
                )?;
                Ok(Registered::New)
            }
            Some((_, old)) if old == certificate => Ok(Registered::Same),
            Some((old, _)) if serial > old => {
                self.conn.execute(
                    "UPDATE devices SET serial = ?3, certificate = ?4, updated_ms = ?5
                     WHERE account_id = ?1 AND device_id = ?2",
                    params![&account_id[..], device_id, serial, certificate, now],
                )?;
                Ok(Registered::Updated)
            }
            Some(_) => Ok(Registered::Conflict),
        }
    }

    fn publish(
        &mut self,
        device: &DeviceKey,
        signed: &[u8],
        prekeys: Option<&[StoredPrekey]>,
    ) -> Result<(), StoreError> {
        let (a, d) = (&device.0[..], device.1);
        self.conn.execute(
            "UPDATE devices SET signed_prekeys = ?3, updated_ms = ?4
             WHERE account_id = ?1 AND device_id = ?2",
            params![a, d, signed, now_ms() as i64],
        )?;
        // A statement for the batch already held (a signed-prekey rotation) keeps its keys.
        let Some(prekeys) = prekeys else {
            return Ok(());
        };
        self.conn.execute(
            "DELETE FROM one_time_prekeys WHERE account_id = ?1 AND device_id = ?2",
            params![a, d],
        )?;
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO one_time_prekeys (account_id, device_id, position, prekey_id, public, path)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for p in prekeys {
            insert.execute(params![a, d, p.position, p.prekey_id, &p.public, &p.path])?;
        }
        Ok(())
    }

    fn bundle(&mut self, device: &DeviceKey) -> Result<Option<(BundleRecord, u32)>, StoreError> {
        let (a, d) = (&device.0[..], device.1);
        /// certificate, signed prekeys (if published), account keys
        type Row = (Vec<u8>, Option<Vec<u8>>, Vec<u8>);
        let row: Option<Row> = self
            .conn
            .prepare_cached(
                "SELECT d.certificate, d.signed_prekeys, a.public FROM devices d
                 JOIN accounts a ON a.account_id = d.account_id
                 WHERE d.account_id = ?1 AND d.device_id = ?2",
            )?
            .query_row(params![a, d], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((certificate, Some(signed), account_public)) = row else {
            return Ok(None);
        };
        // Take the first remaining prekey and delete it in the same transaction: the store
        // thread is the only writer, so no other fetch can be handed the same one.
        let one_time = self.take_prekey(device)?;
        let remaining = self.prekey_count(device)?;
        Ok(Some((
            BundleRecord {
                account_public,
                certificate,
                signed,
                one_time,
            },
            remaining,
        )))
    }

    /// Takes the first remaining prekey and deletes it in the same transaction: the store thread
    /// is the only writer, so no other fetch can be handed the same one.
    fn take_prekey(&mut self, device: &DeviceKey) -> Result<Option<StoredPrekey>, rusqlite::Error> {
        let (a, d) = (&device.0[..], device.1);
        let first: Option<StoredPrekey> = self
            .conn
            .prepare_cached(
                "SELECT position, prekey_id, public, path FROM one_time_prekeys
                 WHERE account_id = ?1 AND device_id = ?2 ORDER BY position LIMIT 1",
            )?
            .query_row(params![a, d], |r| {
                Ok(StoredPrekey {
                    position: r.get(0)?,
                    prekey_id: r.get(1)?,
                    public: r.get(2)?,
                    path: r.get(3)?,
                })
            })
            .optional()?;
        if let Some(p) = &first {
            self.conn
                .prepare_cached(
                    "DELETE FROM one_time_prekeys
                     WHERE account_id = ?1 AND device_id = ?2 AND position = ?3",
                )?
                .execute(params![a, d, p.position])?;
        }
        Ok(first)
    }

    fn prekey_count(&mut self, device: &DeviceKey) -> Result<u32, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM one_time_prekeys WHERE account_id = ?1 AND device_id = ?2",
            )?
            .query_row(params![&device.0[..], device.1], |r| r.get(0))?)
    }

    /// Mailbox usage of a registered device; `None` if the device is unknown.
    fn usage(&mut self, device: &DeviceKey) -> Result<Option<Usage>, StoreError> {
        if let Some(u) = self.usage.get(device) {
            return Ok(Some(*u));
        }
        let (a, d) = (&device.0[..], device.1);
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM devices WHERE account_id = ?1 AND device_id = ?2")?
            .query_row(params![a, d], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let (count, bytes): (i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM mailbox
                 WHERE account_id = ?1 AND device_id = ?2",
            )?
            .query_row(params![a, d], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let u = Usage {
            count: count as u64,
            bytes: bytes as u64,
        };
        self.usage.insert(*device, u);
        Ok(Some(u))
    }

    fn enqueue(&mut self, device: &DeviceKey, envelope: &[u8]) -> Result<Enqueued, StoreError> {
        let Some(u) = self.usage(device)? else {
            return Ok(Enqueued::NoDevice);
        };
        let size = envelope.len() as u64;
        if u.count + 1 > self.config.mailbox_max_messages
            || u.bytes + size > self.config.mailbox_max_bytes
        {
            return Ok(Enqueued::Full);
        }
        let expires = now_ms().saturating_add(self.config.ttl_ms) as i64;
        self.conn
            .prepare_cached(
                "INSERT INTO mailbox (account_id, device_id, expires_ms, size, envelope)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                &device.0[..],
                device.1,
                expires,
                size as i64,
                envelope
            ])?;
        let id = self.conn.last_insert_rowid() as u64;
        self.usage.insert(
            *device,
            Usage {
                count: u.count + 1,
                bytes: u.bytes + size,
            },
        );
        Ok(Enqueued::Accepted(id))
    }

    fn fetch(&mut self, device: &DeviceKey, after: u64, limit: u32) -> Result<Page, StoreError> {
        let mut s = self.conn.prepare_cached(
            "SELECT delivery_id, envelope FROM mailbox
             WHERE account_id = ?1 AND device_id = ?2 AND delivery_id > ?3 AND expires_ms > ?4
             ORDER BY delivery_id LIMIT ?5",
        )?;
        let rows = s.query_map(
            params![
                &device.0[..],
                device.1,
                after as i64,
                now_ms() as i64,
                limit
            ],
            |r| {
                let id: i64 = r.get(0)?;
                let envelope: Vec<u8> = r.get(1)?;
                Ok((id as u64, Arc::from(envelope)))
            },
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn ack(&mut self, device: &DeviceKey, delivery_id: u64) -> Result<Option<u64>, StoreError> {
        let size: Option<i64> = self
            .conn
            .prepare_cached(
                "DELETE FROM mailbox WHERE delivery_id = ?1 AND account_id = ?2 AND device_id = ?3
                 RETURNING size",
            )?
            .query_row(params![delivery_id as i64, &device.0[..], device.1], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(size) = size else { return Ok(None) };
        if let Some(u) = self.usage.get_mut(device) {
            u.count = u.count.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(size as u64);
        }
        Ok(Some(size as u64))
    }

    fn sweep(&mut self) {
        self.last_sweep = Instant::now();
        match self.conn.execute(
            "DELETE FROM mailbox WHERE expires_ms <= ?1",
            params![now_ms() as i64],
        ) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(expired = n, "expired envelopes removed");
                self.metrics.expired.fetch_add(n as u64, Ordering::Relaxed);
                self.usage.clear();
                self.reload_gauges();
            }
            Err(e) => tracing::warn!(error = %e, "removing expired envelopes failed"),
        }
    }
}

enum Waited {
    Op(Op),
    Timeout,
    Closed,
}

/// Blocks the store thread until an operation arrives, the channel closes or `timeout` passes.
fn wait_for_op(
    rt: Option<&tokio::runtime::Runtime>,
    rx: &mut mpsc::Receiver<Op>,
    timeout: Duration,
) -> Waited {
    let Some(rt) = rt else {
        return match rx.blocking_recv() {
            Some(op) => Waited::Op(op),
            None => Waited::Closed,
        };
    };
    rt.block_on(async {
        match tokio::time::timeout(timeout, rx.recv()).await {
            Ok(Some(op)) => Waited::Op(op),
            Ok(None) => Waited::Closed,
            Err(_) => Waited::Timeout,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<(DeviceKey, String)>>);

    impl Notifier for Recorder {
        fn notify(&self, device: &DeviceKey, push: Push) {
            let text = match push {
                Push::Deliver(id, _) => format!("deliver {id}"),
                Push::PrekeysLow(n) => format!("low {n}"),
            };
            self.0.lock().expect("lock").push((*device, text));
        }
    }

    fn config(dir: &Path) -> StoreConfig {
        StoreConfig {
            path: dir.join("relay.sqlite3"),
            durability: Durability::Full,
            mailbox_max_messages: 3,
            mailbox_max_bytes: 1000,
            ttl_ms: 60_000,
            low_water: 2,
        }
    }

    fn start(c: StoreConfig) -> (Store, StoreThreads, Arc<Metrics>, Arc<Recorder>) {
        let metrics = Arc::new(Metrics::default());
        let rec = Arc::new(Recorder::default());
        let (store, threads) = Store::start(c, metrics.clone(), rec.clone()).expect("start");
        (store, threads, metrics, rec)
    }

    const A: DeviceKey = ([1; 32], 1);
    const B: DeviceKey = ([2; 32], 7);

    async fn register(store: &Store, d: DeviceKey, serial: u32, cert: &[u8]) -> Registered {
        store
            .register(d.0, b"public".to_vec(), d.1, serial, cert.to_vec())
            .await
            .expect("register")
    }

    #[tokio::test]
    async fn registration_outcomes() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, threads, _, _) = start(config(dir.path()));
        assert_eq!(register(&store, A, 1, b"c1").await, Registered::New);
        assert_eq!(register(&store, A, 1, b"c1").await, Registered::Same);
        assert_eq!(register(&store, A, 1, b"other").await, Registered::Conflict);
        assert_eq!(register(&store, A, 2, b"c2").await, Registered::Updated);
        assert_eq!(register(&store, A, 1, b"c1").await, Registered::Conflict);
        let rec = store.device(A).await.expect("device").expect("known");
        assert_eq!(rec.certificate, b"c2");
        assert!(store.device(B).await.expect("device").is_none());
        drop(store);
        threads.join();
    }

    #[tokio::test]
    async fn a_deleted_account_leaves_nothing_and_is_never_registered_again() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, threads, metrics, _) = start(config(dir.path()));
        let a2: DeviceKey = (A.0, 2);
        register(&store, A, 1, b"a1").await;
        register(&store, a2, 1, b"a2").await;
        register(&store, B, 1, b"b").await;
        let prekeys = |n: u32| {
            (0..n)
                .map(|i| StoredPrekey {
                    position: i,
                    prekey_id: i,
                    public: vec![1; 33],
                    path: vec![],
                })
                .collect::<Vec<_>>()
        };
        store
            .publish(A, b"signed".to_vec(), Some(prekeys(3)))
            .await
            .expect("publish");
        store
            .publish(B, b"signed".to_vec(), Some(prekeys(2)))
            .await
            .expect("publish");
        for d in [A, a2, B] {
            assert!(matches!(
                store.enqueue(d, vec![3; 10]).await.expect("enqueue"),
                Enqueued::Accepted(_)
            ));
        }
        assert_eq!(metrics.queue_depth.load(Ordering::Relaxed), 3);

        let gone = store.delete_account(A.0).await.expect("delete");
        assert_eq!(
            gone,
            Deleted {
                devices: 2,
                prekeys: 3,
                envelopes: 2
            }
        );
        assert_eq!(metrics.queue_depth.load(Ordering::Relaxed), 1);
        for d in [A, a2] {
            assert!(store.device(d).await.expect("device").is_none());
            assert!(store.bundle(d).await.expect("bundle").is_none());
            assert!(store.fetch(d, 0, 10).await.expect("fetch").is_empty());
            assert_eq!(
                store.enqueue(d, vec![1]).await.expect("enqueue"),
                Enqueued::NoDevice
            );
        }
        // Another account is untouched.
        assert!(store.device(B).await.expect("device").is_some());
        assert_eq!(store.fetch(B, 0, 10).await.expect("fetch").len(), 1);
        assert_eq!(store.prekey_count(B).await.expect("count"), 2);
        // Never again, not even after a restart; deleting twice is harmless.
        assert_eq!(register(&store, A, 5, b"again").await, Registered::Deleted);
        assert_eq!(
            store.delete_account(A.0).await.expect("again"),
            Deleted::default()
        );
        drop(store);
        threads.join();
        let (store, threads, _, _) = start(config(dir.path()));
        assert_eq!(register(&store, a2, 9, b"again").await, Registered::Deleted);
        drop(store);
        threads.join();
    }

    #[tokio::test]
    async fn mailbox_caps_order_ack_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, threads, metrics, rec) = start(config(dir.path()));
        assert_eq!(
            store.enqueue(B, vec![1]).await.expect("enqueue"),
            Enqueued::NoDevice
        );
        register(&store, B, 1, b"c").await;
        let mut ids = Vec::new();
        for i in 0..3u8 {
            match store.enqueue(B, vec![i; 10]).await.expect("enqueue") {
                Enqueued::Accepted(id) => ids.push(id),
                other => panic!("{other:?}"),
            }
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            store.enqueue(B, vec![9]).await.expect("enqueue"),
            Enqueued::Full
        );
        assert_eq!(metrics.queue_depth.load(Ordering::Relaxed), 3);
        assert_eq!(
            rec.0.lock().expect("lock").len(),
            3,
            "one push per accepted envelope"
        );
        let page = store.fetch(B, 0, 2).await.expect("fetch");
        assert_eq!(page.iter().map(|p| p.0).collect::<Vec<_>>(), ids[..2]);
        assert_eq!(&*page[1].1, &[1u8; 10][..]);
        assert_eq!(store.fetch(B, ids[1], 10).await.expect("fetch").len(), 1);
        // Another device cannot acknowledge B's envelope.
        register(&store, A, 1, b"a").await;
        assert!(!store.ack(A, ids[0]).await.expect("ack"));
        assert!(store.ack(B, ids[0]).await.expect("ack"));
        assert!(!store.ack(B, ids[0]).await.expect("ack twice"));
        assert!(matches!(
            store.enqueue(B, vec![5; 10]).await.expect("enqueue"),
            Enqueued::Accepted(_)
        ));
        // Byte cap: 3 slots are taken again, and a large envelope never fits.
        store.ack(B, ids[1]).await.expect("ack");
        assert_eq!(
            store.enqueue(B, vec![0; 990]).await.expect("enqueue"),
            Enqueued::Full
        );
        drop(store);
        threads.join();

        // Everything accepted and not acknowledged is still there, and ids keep growing.
        let (store, threads, metrics, _) = start(config(dir.path()));
        let left = store.fetch(B, 0, 10).await.expect("fetch");
        assert_eq!(left.len(), 2);
        assert_eq!(left[0].0, ids[2]);
        assert_eq!(metrics.queue_depth.load(Ordering::Relaxed), 2);
        match store.enqueue(B, vec![7]).await.expect("enqueue") {
            Enqueued::Accepted(id) => assert!(id > left[1].0, "ids are never reused"),
            other => panic!("{other:?}"),
        }
        drop(store);
        threads.join();
    }

    #[tokio::test]
    async fn expired_envelopes_are_not_delivered_and_are_swept() {
        let dir = tempfile::tempdir().expect("dir");
        let mut c = config(dir.path());
        c.ttl_ms = 0;
        let (store, threads, metrics, _) = start(c);
        register(&store, B, 1, b"c").await;
        assert!(matches!(
            store.enqueue(B, vec![1]).await.expect("enqueue"),
            Enqueued::Accepted(_)
        ));
        assert!(store.fetch(B, 0, 10).await.expect("fetch").is_empty());
        drop(store);
        threads.join();
        // The sweep at start removes it.
        let (store, threads, metrics2, _) = start(config(dir.path()));
        assert_eq!(metrics.expired.load(Ordering::Relaxed), 0);
        store.fetch(B, 0, 1).await.expect("fetch");
        assert_eq!(metrics2.expired.load(Ordering::Relaxed), 1);
        assert_eq!(metrics2.queue_depth.load(Ordering::Relaxed), 0);
        drop(store);
        threads.join();
    }

    #[tokio::test]
    async fn each_one_time_prekey_is_handed_out_once_under_concurrency() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, threads, _, rec) = start(config(dir.path()));
        register(&store, B, 1, b"cert").await;
        assert!(
            store.bundle(B).await.expect("bundle").is_none(),
            "nothing published yet"
        );
        let prekeys: Vec<_> = (0..10u32)
            .map(|i| StoredPrekey {
                position: i,
                prekey_id: 100 + i,
                public: vec![i as u8; 33],
                path: vec![0; 32],
            })
            .collect();
        store
            .publish(B, b"signed".to_vec(), Some(prekeys))
            .await
            .expect("publish");
        let fetches = (0..16).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.bundle(B).await })
        });
        let mut got = Vec::new();
        let mut without = 0;
        for f in fetches {
            let b = f.await.expect("join").expect("bundle").expect("some");
            assert_eq!(b.certificate, b"cert");
            assert_eq!(b.signed, b"signed");
            match b.one_time {
                Some(p) => got.push(p.prekey_id),
                None => without += 1,
            }
        }
        got.sort_unstable();
        assert_eq!(got, (100..110).collect::<Vec<_>>());
        assert_eq!(without, 6);
        assert_eq!(store.prekey_count(B).await.expect("count"), 0);
        let lows = rec
            .0
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, t)| t.starts_with("low"))
            .count();
        assert_eq!(lows, 2, "told when 1 and 0 are left");
        drop(store);
        threads.join();
    }

    #[test]
    fn a_newer_schema_and_a_damaged_file_are_refused_untouched() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("relay.sqlite3");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch("PRAGMA user_version = 99")
                .expect("pragma");
        }
        let e = open(&path, Durability::Full).expect_err("refused");
        assert!(e.to_string().contains("newer"), "{e}");

        let damaged = dir.path().join("damaged.sqlite3");
        std::fs::write(&damaged, vec![0x5a; 8192]).expect("write");
        let e = open(&damaged, Durability::Full).expect_err("refused");
        assert!(matches!(e, RelayError::Database { .. }), "{e}");
        assert_eq!(
            std::fs::read(&damaged).expect("read"),
            vec![0x5a; 8192],
            "left as it was"
        );
    }
}
