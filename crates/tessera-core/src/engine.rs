//! The client engine (`docs/engine.md`): one account's vault, keys and relay connection.
//!
//! All state lives in the vault; the engine holds the open vault and the device's keys while
//! unlocked, and nothing when locked. Vault work happens in short critical sections that never
//! await; relay work happens outside them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt as _;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tessera_crypto::signal::{
    CiphertextMessage, CiphertextMessageType, DeviceId, PreKeySignalMessage, ProtocolAddress,
    SignalMessage, SignalProtocolError, message_decrypt, message_encrypt, process_prekey_bundle,
};
use tessera_crypto::{
    AccountId, AccountIdentity, AccountPublic, DeviceCertificate, EnvelopeKeyPair,
    HybridSigningKey, InboundLink, InboundLinks, LinkId, LinkedSealRequest, OutboundLink,
    SafetyNumber, seal_linked,
};
use tessera_net::{ClientError, Pushed, Pushes, RelayClient, Transport};
use tessera_proto::{ErrorCode, RelayAddress};
use tessera_store::{
    CardFactor, Contact, ContactState, KdfParams, Message, MessageStatus, SecretStore, Vault,
    VaultError,
};
use tokio::sync::broadcast;
use zeroize::Zeroizing;

use crate::clock::{Clock, SystemClock};
use crate::keys::{self, DEVICE_ID, Me, load_me};
use crate::{CoreError, Event, Invite, LockReason, TransportConfig};
use tessera_messaging::content::call::Call;
use tessera_messaging::content::contact;
use tessera_messaging::content::receipt::{MAX_RECEIPT_IDS, Receipt, ReceiptKind};
use tessera_messaging::content::text::Text;
use tessera_messaging::inbound::{Standing, bound_sent};
use tessera_messaging::{CallId, Content, MessageId};

mod delivery;

fn rng() -> StdRng {
    StdRng::from_os_rng()
}

/// Settings an interface may keep in the vault with [`Engine::set_app_setting`] (encrypted
/// like everything else in it). The engine's own settings are not in this list.
pub const APP_SETTINGS: &[&str] = &[
    crate::phone::ICE_POLICY_SETTING,
    crate::phone::OUTSIDE_TOR_SETTING,
    "idle_lock_minutes",
    "lock_on_focus_loss",
    "notification_content",
    "theme",
    "zoom",
];

/// What is needed to create an account.
#[derive(Clone)]
pub struct CreateOptions {
    /// Data directory (the vault goes here).
    pub dir: PathBuf,
    /// The password.
    pub password: Zeroizing<Vec<u8>>,
    /// The relay to register with.
    pub relay: RelayAddress,
    /// The display name contacts see in requests.
    pub name: String,
    /// How to reach the relay.
    pub transport: TransportConfig,
    /// Argon2id parameters.
    pub kdf: KdfParams,
    /// The card read that becomes the vault's third factor (`None`: no card factor).
    pub card: Option<CardFactor>,
}

struct Unlocked {
    vault: Vault,
    me: Me,
}

struct Inner {
    dir: PathBuf,
    /// Every time the engine uses comes from here (`clock.rs`).
    clock: Arc<dyn Clock>,
    /// When each contact device's certificate was last fetched (at most once an hour).
    refreshed: Mutex<std::collections::HashMap<([u8; 32], u32), u64>>,
    /// Engine time of the last key maintenance (0: never).
    maintained: std::sync::atomic::AtomicU64,
    secrets: Arc<dyn SecretStore>,
    state: Mutex<Option<Unlocked>>,
    client: Mutex<Option<Arc<RelayClient>>>,
    events: broadcast::Sender<Event>,
    /// One flush at a time (`delivery.rs`); it pipelines the outbox through `delivery`.
    flushing: tokio::sync::Mutex<()>,
    /// The outbound state machine (tessera-messaging): which entries go out when.
    delivery: Mutex<tessera_messaging::Delivery>,
    /// Set when entries were added to the outbox; a flush looks again before it ends.
    dirty: std::sync::atomic::AtomicBool,
    /// Wakes a running flush that waits for answers, to pick up new entries.
    wake: tokio::sync::Notify,
    /// Background delivery held ([`Engine::hold_delivery`]).
    held: std::sync::atomic::AtomicBool,
    /// Until when a card swap (replacement) may leave the reader empty without locking.
    card_swap: Mutex<Option<std::time::Instant>>,
    /// One connection attempt at a time: two would both log in and the second would replace
    /// the first at the relay, failing whatever was in flight on it.
    connecting: tokio::sync::Mutex<()>,
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

fn setting(v: &Vault, name: &str) -> Result<String, CoreError> {
    v.setting(name)?
        .ok_or(CoreError::Vault(VaultError::NotInitialised))
}

/// The transport recorded in the vault's settings.
fn transport_config(v: &Vault) -> Result<TransportConfig, CoreError> {
    Ok(match setting(v, "transport")?.as_str() {
        "direct" => TransportConfig::Direct,
        "tor" => TransportConfig::Tor {
            config_file: v.setting("tor_config")?.map(PathBuf::from),
        },
        other => return Err(CoreError::TransportUnavailable(other.to_string())),
    })
}

fn address(account: &AccountId, device_id: u32) -> Result<ProtocolAddress, CoreError> {
    let device = u8::try_from(device_id)
        .ok()
        .and_then(|d| DeviceId::new(d).ok())
        .ok_or(CoreError::BadContent)?;
    Ok(ProtocolAddress::new(account.to_string(), device))
}

/// Encrypts `content` for every known device of `contact` and puts the Signal messages in the
/// outbox (in the caller's transaction). They are sealed into envelopes when first sent
/// ([`Engine::flush_outbox`]), to the envelope key the device has then.
fn queue(
    v: &Vault,
    contact: &AccountId,
    content: &Content,
    message: Option<&[u8; 16]>,
    now: u64,
) -> Result<(), CoreError> {
    let devices = v.contact_devices(&contact.0)?;
    if devices.is_empty() {
        return Err(CoreError::UnknownContact);
    }
    let plain = content.to_bytes()?;
    let mut r = rng();
    for (device_id, _) in devices {
        let addr = address(contact, device_id)?;
        let (mut s, mut i) = (v.signal(), v.signal());
        let ct = message_encrypt(&plain, &addr, &mut s, &mut i, at(now), &mut r)
            .now_or_never()
            .ok_or(CoreError::Busy)??;
        let mut payload = vec![ct.message_type() as u8];
        payload.extend_from_slice(ct.serialize());
        v.outbox_push(&contact.0, device_id, &payload, message)?;
    }
    Ok(())
}

/// Seals a queued Signal message for `device` of `contact` with this device's current epoch, on
/// the link to that device's current envelope key (made now if there is none): a full envelope
/// until the device acknowledged the link, a short one after (`docs/envelope.md`). Carries the
/// acknowledgement of the device's newest link to us. The caller runs it in a transaction.
fn seal_queued(
    v: &Vault,
    me: &Me,
    contact: &[u8; 32],
    device: u32,
    payload: &[u8],
    now: u64,
) -> Result<Vec<u8>, CoreError> {
    let cert = v
        .contact_devices(contact)?
        .into_iter()
        .find(|(d, _)| *d == device)
        .ok_or(CoreError::UnknownContact)?
        .1;
    let cert = DeviceCertificate::from_bytes(&cert)?;
    let recipient = &cert.fields.envelope_key;
    let mut r = rng();
    let stored = v
        .outbound_link(contact, device)?
        .and_then(|b| OutboundLink::from_bytes(&b).ok())
        .filter(|l| l.serves(recipient, &me.epoch));
    let link = match stored {
        Some(l) => l,
        None => {
            let l = OutboundLink::new(recipient, &me.epoch, &mut r)?;
            v.put_outbound_link(contact, device, &l.to_bytes())?;
            l
        }
    };
    let sealed = seal_linked(
        &LinkedSealRequest {
            recipient,
            sender: &me.epoch,
            link: &link,
            ack: v.newest_inbound_link(contact, device)?,
            sent_at: now,
            content: payload,
        },
        &mut r,
    )?;
    Ok(sealed.bytes)
}

/// The vault's inbound links, as the envelope ring looks them up. A vault failure reads as "no
/// such link" to the ring; `failed` keeps it, so the envelope is kept at the relay, not dropped.
struct VaultLinks<'a> {
    vault: &'a Vault,
    failed: std::cell::Cell<Option<VaultError>>,
}

impl InboundLinks for VaultLinks<'_> {
    fn inbound_link(&self, id: &LinkId) -> Option<InboundLink> {
        match self.vault.inbound_link(id) {
            Ok(found) => found.and_then(|b| InboundLink::from_bytes(&b).ok()),
            Err(e) => {
                self.failed.set(Some(e));
                None
            }
        }
    }
}

/// Where a contact in `state` stands (tessera-messaging's policy for strangers and requests).
fn standing(state: ContactState) -> Standing {
    match state {
        ContactState::Requested => Standing::Requested,
        ContactState::Incoming => Standing::Incoming,
        ContactState::Accepted => Standing::Accepted,
        ContactState::Rejected => Standing::Rejected,
    }
}

/// `now` (ms) as the time libsignal takes.
fn at(now: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(now)
}

/// What processing one delivered envelope did.
enum Processed {
    /// Handled (or a duplicate): acknowledge it.
    Done(Vec<Event>),
    /// Cannot be read until the user accepts the sender's new identity: keep it at the relay.
    Keep(Event),
}

impl Engine {
    fn new(
        dir: &Path,
        secrets: Arc<dyn SecretStore>,
        unlocked: Unlocked,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                clock,
                refreshed: Mutex::new(std::collections::HashMap::new()),
                maintained: std::sync::atomic::AtomicU64::new(0),
                secrets,
                state: Mutex::new(Some(unlocked)),
                client: Mutex::new(None),
                events,
                flushing: tokio::sync::Mutex::new(()),
                delivery: Mutex::new(tessera_messaging::Delivery::new(Default::default())),
                dirty: std::sync::atomic::AtomicBool::new(false),
                wake: tokio::sync::Notify::new(),
                held: std::sync::atomic::AtomicBool::new(false),
                card_swap: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Sends Tor bootstrap progress as [`Event::TorProgress`] while the engine is unlocked.
    fn forward_tor_progress(&self) {
        let Ok(Some(mut progress)) = self.with(|u| {
            Ok(match &u.me.transport {
                Transport::Tor(tor) => Some(tor.progress()),
                _ => None,
            })
        }) else {
            return;
        };
        let engine = self.clone();
        tokio::spawn(async move {
            loop {
                let p = progress.borrow_and_update().clone();
                engine.emit(Event::TorProgress {
                    percent: p.percent,
                    phase: p.phase,
                    ready: p.ready,
                    blocked: p.blocked,
                });
                if p.ready || progress.changed().await.is_err() || !engine.is_unlocked() {
                    break;
                }
            }
        });
    }

    /// Tor bootstrap progress, when the transport is Tor.
    pub fn tor_progress(&self) -> Option<tokio::sync::watch::Receiver<tessera_net::TorProgress>> {
        self.with(|u| {
            Ok(match &u.me.transport {
                Transport::Tor(tor) => Some(tor.progress()),
                _ => None,
            })
        })
        .ok()
        .flatten()
    }

    /// Chooses the transport for the next unlock (`tor` or `direct`); the running connection
    /// keeps the transport it was opened with. A Tor configuration file stays recorded.
    pub fn set_transport(&self, tor: bool) -> Result<(), CoreError> {
        self.with(|u| {
            u.vault
                .set_setting("transport", if tor { "tor" } else { "direct" })?;
            Ok(())
        })
    }

    /// The transport recorded for the next unlock: `direct` or `tor`.
    pub fn configured_transport(&self) -> Result<&'static str, CoreError> {
        self.with(|u| {
            Ok(match transport_config(&u.vault)? {
                TransportConfig::Direct => "direct",
                TransportConfig::Tor { .. } => "tor",
            })
        })
    }

    /// The transport in use: `direct` or `tor`.
    pub fn transport_name(&self) -> Result<&'static str, CoreError> {
        self.with(|u| Ok(u.me.transport.name()))
    }

    /// Events (new messages, status changes, contact requests, identity changes).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The engine's clock, ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    fn emit(&self, e: Event) {
        let _ = self.inner.events.send(e);
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Unlocked) -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        let mut state = self.inner.state.lock().map_err(|_| CoreError::Locked)?;
        let u = state.as_mut().ok_or(CoreError::Locked)?;
        f(u)
    }

    /// Creates the vault and the account, registers with the relay and publishes prekeys.
    /// The relay is contacted first (its pinned key checked) so a wrong address leaves nothing
    /// behind; if registration fails after the vault was made, the vault is removed again.
    pub async fn create(
        opts: CreateOptions,
        secrets: Arc<dyn SecretStore>,
    ) -> Result<Self, CoreError> {
        Self::create_with_clock(opts, secrets, Arc::new(SystemClock)).await
    }

    /// As [`Engine::create`], with the clock the engine uses from then on.
    pub async fn create_with_clock(
        opts: CreateOptions,
        secrets: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CoreError> {
        // The transport is started first and the relay contacted through it: with Tor, nothing
        // is ever sent outside Tor, and a relay that cannot be reached leaves nothing behind.
        let transport = opts.transport.open(&opts.dir)?;
        let (client, pushes) = RelayClient::connect(&opts.relay, &transport).await?;
        let dir = opts.dir.clone();
        let s2 = secrets.clone();
        let password = opts.password.clone();
        let kdf = opts.kdf;
        let card = opts.card.clone();
        let vault = tokio::task::spawn_blocking(move || {
            Vault::create(&dir, &password, kdf, s2.as_ref(), card.as_ref(), &mut rng())
        })
        .await
        .map_err(|_| CoreError::Busy)??;
        let vault_id = vault.vault_id();
        match Self::set_up(
            opts.clone(),
            secrets.clone(),
            vault,
            transport,
            client,
            pushes,
            clock,
        )
        .await
        {
            Ok(engine) => Ok(engine),
            Err(e) => {
                for f in [
                    "vault.key",
                    "vault.sqlite3",
                    "vault.sqlite3-wal",
                    "vault.sqlite3-shm",
                ] {
                    let _ = std::fs::remove_file(opts.dir.join(f));
                }
                let _ = secrets.delete(&tessera_store::vault_entry(&vault_id));
                Err(e)
            }
        }
    }

    async fn set_up(
        opts: CreateOptions,
        secrets: Arc<dyn SecretStore>,
        vault: Vault,
        transport: Transport,
        client: RelayClient,
        pushes: Pushes,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CoreError> {
        let mut r = rng();
        let identity = AccountIdentity::generate(&mut r);
        let auth = HybridSigningKey::generate(&mut r);
        let envelope = EnvelopeKeyPair::generate(&mut r);
        let now = clock.now_ms();
        let certificate = keys::issue_certificate(&identity, &auth, &envelope, 1, now, &mut r)?;
        let epoch = keys::new_epoch(&identity, now, &mut r)?;
        let registration_id = 1 + rand::Rng::random_range(&mut r, 0..16000u32);
        vault.transaction(|v| -> Result<(), CoreError> {
            v.set_local_identity(&identity, registration_id)?;
            let (ac, am) = auth.to_parts();
            v.set_local("auth.curve", &ac[..])?;
            v.set_local("auth.mldsa", &am[..])?;
            keys::store_device_keys(v, &envelope, &certificate, &epoch)?;
            // Registered below; if that fails the vault is removed again.
            keys::set_registered_serial(v, certificate.fields.serial)?;
            v.set_setting("relay", &opts.relay.to_string())?;
            v.set_setting("name", &opts.name)?;
            match &opts.transport {
                TransportConfig::Direct => v.set_setting("transport", "direct")?,
                TransportConfig::Tor { config_file } => {
                    v.set_setting("transport", "tor")?;
                    if let Some(f) = config_file {
                        v.set_setting("tor_config", &f.to_string_lossy())?;
                    }
                }
            }
            Ok(())
        })?;
        let me = load_me(&vault, transport)?;
        let engine = Self::new(&opts.dir, secrets, Unlocked { vault, me }, clock);
        engine.forward_tor_progress();
        let (signed, wire) = engine.with(|u| {
            u.vault
                .transaction(|v| keys::new_batch(v, &u.me.identity, 1, now, &mut rng()))
        })?;
        client
            .register(&identity.public(), &certificate, &auth, &mut rng())
            .await?;
        client.publish_prekeys(&signed, wire).await?;
        engine.attach(client, pushes);
        Ok(engine)
    }

    /// Opens the vault with the password, the device secret from `secrets` and, for a vault
    /// with the card factor, a fresh card read (its counter must be above the last one).
    pub async fn unlock(
        dir: &Path,
        password: Zeroizing<Vec<u8>>,
        secrets: Arc<dyn SecretStore>,
        card: Option<CardFactor>,
    ) -> Result<Self, CoreError> {
        Self::unlock_with_clock(dir, password, secrets, card, Arc::new(SystemClock)).await
    }

    /// As [`Engine::unlock`], with the clock the engine uses from then on. Keys due for
    /// rotation are rotated here, before anything is sent (`docs/keys.md`).
    pub async fn unlock_with_clock(
        dir: &Path,
        password: Zeroizing<Vec<u8>>,
        secrets: Arc<dyn SecretStore>,
        card: Option<CardFactor>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CoreError> {
        let d = dir.to_path_buf();
        let s2 = secrets.clone();
        let vault = tokio::task::spawn_blocking(move || {
            Vault::open(&d, &password, s2.as_ref(), card.as_ref(), &mut rng())
        })
        .await
        .map_err(|_| CoreError::Busy)??;
        let transport = transport_config(&vault)?.open(dir)?;
        let mut me = load_me(&vault, transport)?;
        keys::maintain(&vault, &mut me, clock.now_ms(), &mut rng())?;
        let engine = Self::new(dir, secrets, Unlocked { vault, me }, clock);
        engine.forward_tor_progress();
        Ok(engine)
    }

    /// Adds the card factor to the (locked) vault in `dir`; see [`Vault::enroll_card`].
    pub async fn enroll_card(
        dir: &Path,
        password: Zeroizing<Vec<u8>>,
        secrets: Arc<dyn SecretStore>,
        card: CardFactor,
    ) -> Result<(), CoreError> {
        let d = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            Vault::enroll_card(&d, &password, secrets.as_ref(), &card, &mut rng())
        })
        .await
        .map_err(|_| CoreError::Busy)??;
        Ok(())
    }

    /// Locks: closes the vault and the connection and drops every key from memory.
    pub fn lock(&self) {
        self.lock_because(LockReason::Requested);
    }

    /// Locks like [`Engine::lock`], naming why (an idle timer, the window losing focus).
    pub fn lock_because(&self, reason: LockReason) {
        if let Ok(mut c) = self.inner.client.lock() {
            c.take();
        }
        if let Ok(mut d) = self.inner.delivery.lock() {
            *d = tessera_messaging::Delivery::new(*d.config());
        }
        let was_unlocked = match self.inner.state.lock() {
            Ok(mut s) => s.take().is_some(),
            Err(_) => false,
        };
        if was_unlocked {
            self.emit(Event::Locked { reason });
        }
    }

    /// A setting an interface keeps in the vault (see [`APP_SETTINGS`]); `None` if never set.
    pub fn app_setting(&self, name: &str) -> Result<Option<String>, CoreError> {
        if !APP_SETTINGS.contains(&name) {
            return Err(CoreError::UnknownSetting);
        }
        self.with(|u| Ok(u.vault.setting(name)?))
    }

    /// Stores an interface setting (see [`APP_SETTINGS`]; values are the interface's business,
    /// at most 256 bytes).
    pub fn set_app_setting(&self, name: &str, value: &str) -> Result<(), CoreError> {
        if !APP_SETTINGS.contains(&name) || value.len() > 256 {
            return Err(CoreError::UnknownSetting);
        }
        self.with(|u| Ok(u.vault.set_setting(name, value)?))
    }

    /// The relay this account uses.
    pub fn relay(&self) -> Result<RelayAddress, CoreError> {
        self.with(|u| Ok(u.me.relay.clone()))
    }

    /// The conversation list: each contact with its newest message and unread count, the most
    /// recent first.
    pub fn conversations(&self) -> Result<Vec<tessera_store::Conversation>, CoreError> {
        self.with(|u| Ok(u.vault.conversations()?))
    }

    /// Whether the engine locks when the card leaves the reader (the `lock_on_card_removal`
    /// setting; on unless turned off).
    pub fn lock_on_card_removal(&self) -> Result<bool, CoreError> {
        self.with(|u| Ok(u.vault.setting("lock_on_card_removal")?.as_deref() != Some("off")))
    }

    /// Turns locking on card removal on or off.
    pub fn set_lock_on_card_removal(&self, on: bool) -> Result<(), CoreError> {
        self.with(|u| {
            u.vault
                .set_setting("lock_on_card_removal", if on { "on" } else { "off" })?;
            Ok(())
        })
    }

    /// Watches `reader` (where the unlocking card was read) from a thread of its own: when the
    /// card leaves it and [`Engine::lock_on_card_removal`] is on, the engine locks — the vault
    /// connection closes and every key in memory is dropped (zeroized) — and
    /// [`Event::Locked`] with [`LockReason::CardRemoved`] is sent. The thread ends when the
    /// engine locks for any reason. If the card service fails, the engine locks too (fail
    /// closed: a watch that cannot watch must not leave the vault open).
    ///
    /// During a card swap ([`Engine::begin_card_swap`]) a removal does not lock: the watch waits
    /// for a card to come back. If the swap ends (or expires) with the reader empty, it locks.
    pub fn watch_card(&self, reader: String) -> std::thread::JoinHandle<()> {
        let engine = self.clone();
        std::thread::spawn(move || {
            loop {
                let stop = || !engine.is_unlocked();
                let removed = crate::card::wait_for_removal(&reader, &stop);
                if !engine.is_unlocked() {
                    return;
                }
                match removed {
                    Ok(true) if engine.card_swapping() => {
                        let back = || !engine.is_unlocked() || !engine.card_swapping();
                        match crate::card::wait_for_insert(&reader, &back) {
                            Ok(true) => continue,
                            Ok(false) if !engine.is_unlocked() => return,
                            _ => {
                                tracing::info!("card swap ended with no card: locking");
                                engine.lock_because(LockReason::CardRemoved);
                                return;
                            }
                        }
                    }
                    Ok(true) => {
                        if engine.lock_on_card_removal().unwrap_or(true) {
                            tracing::info!("card removed: locking");
                            engine.lock_because(LockReason::CardRemoved);
                        }
                        return;
                    }
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "card watch failed: locking");
                        engine.lock_because(LockReason::CardRemoved);
                        return;
                    }
                }
            }
        })
    }

    /// Lets the card leave the reader for at most `for_at_most` without locking (a card
    /// replacement). [`Engine::end_card_swap`] ends it early.
    pub fn begin_card_swap(&self, for_at_most: Duration) {
        if let Ok(mut s) = self.inner.card_swap.lock() {
            *s = Some(std::time::Instant::now() + for_at_most);
        }
    }

    /// Ends a card swap: from now on a removal locks again.
    pub fn end_card_swap(&self) {
        if let Ok(mut s) = self.inner.card_swap.lock() {
            *s = None;
        }
    }

    fn card_swapping(&self) -> bool {
        self.inner
            .card_swap
            .lock()
            .map(|s| s.is_some_and(|until| std::time::Instant::now() < until))
            .unwrap_or(false)
    }

    /// Moves the vault's card factor to another card; see [`Vault::replace_card`]. The engine
    /// stays unlocked (the database key does not change).
    pub async fn replace_card(
        &self,
        password: Zeroizing<Vec<u8>>,
        old: CardFactor,
        new: CardFactor,
    ) -> Result<(), CoreError> {
        let dir = self.inner.dir.clone();
        let secrets = self.inner.secrets.clone();
        tokio::task::spawn_blocking(move || {
            Vault::replace_card(&dir, &password, secrets.as_ref(), &old, &new, &mut rng())
        })
        .await
        .map_err(|_| CoreError::Busy)??;
        Ok(())
    }

    /// Changes the vault password (rewraps the vault key; the database is not touched). A vault
    /// with the card factor needs a fresh card read.
    pub async fn change_password(
        &self,
        old: Zeroizing<Vec<u8>>,
        new: Zeroizing<Vec<u8>>,
        kdf: KdfParams,
        card: Option<CardFactor>,
    ) -> Result<(), CoreError> {
        let dir = self.inner.dir.clone();
        let secrets = self.inner.secrets.clone();
        tokio::task::spawn_blocking(move || {
            Vault::change_password(
                &dir,
                &old,
                &new,
                kdf,
                secrets.as_ref(),
                card.as_ref(),
                &mut rng(),
            )
        })
        .await
        .map_err(|_| CoreError::Busy)??;
        Ok(())
    }

    /// Whether a relay connection is up (logged in).
    pub fn is_connected(&self) -> bool {
        self.inner
            .client
            .lock()
            .map(|c| c.is_some())
            .unwrap_or(false)
    }

    /// Whether the engine is unlocked.
    pub fn is_unlocked(&self) -> bool {
        self.inner
            .state
            .lock()
            .map(|s| s.is_some())
            .unwrap_or(false)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// This account's id.
    pub fn account_id(&self) -> Result<AccountId, CoreError> {
        self.with(|u| Ok(u.me.account_id))
    }

    /// This account's invite.
    pub fn invite(&self) -> Result<Invite, CoreError> {
        self.with(|u| {
            Ok(Invite {
                account_id: u.me.account_id,
                relay: u.me.relay.clone(),
                name: u.me.name.clone(),
            })
        })
    }

    /// Connects to the relay and logs in (if not connected); deliveries are processed in the
    /// background from then on.
    pub async fn connect(&self) -> Result<Arc<RelayClient>, CoreError> {
        let _one_at_a_time = self.inner.connecting.lock().await;
        // Rotations due now happen before the relay sees this device (a device offline for a
        // year renews everything here, before it sends anything).
        self.maybe_maintain()?;
        let now = self.now_ms();
        let current = self
            .with(|u| Ok(keys::registered_serial(&u.vault)? == u.me.certificate.fields.serial))?;
        if let Ok(mut held) = self.inner.client.lock()
            && let Some(c) = held.clone()
        {
            if current {
                return Ok(c);
            }
            // A renewed certificate: the next connection registers it (and replaces this one
            // at the relay).
            held.take();
        }
        let (relay, transport, account, auth, public, certificate, registered) =
            self.with(|u| {
                Ok((
                    u.me.relay.clone(),
                    u.me.transport.clone(),
                    u.me.account_id,
                    u.me.auth.clone(),
                    u.me.public.clone(),
                    u.me.certificate.clone(),
                    keys::registered_serial(&u.vault)?,
                ))
            })?;
        let (client, pushes) = RelayClient::connect(&relay, &transport).await?;
        if registered == certificate.fields.serial {
            client.login(&account, DEVICE_ID, &auth, &mut rng()).await?;
        } else {
            // A renewed certificate: registering it is the login (the relay keeps the highest
            // serial, signed by the account identity).
            client
                .register(&public, &certificate, &auth, &mut rng())
                .await?;
            let serial = certificate.fields.serial;
            self.with(|u| keys::set_registered_serial(&u.vault, serial))?;
            tracing::info!(serial, "registered a renewed device certificate");
        }
        let unpublished = self.with(|u| keys::unpublished_statement(&u.vault))?;
        if let Some(signed) = unpublished {
            match client.publish_prekeys(&signed, Vec::new()).await {
                Ok(()) => {}
                // The relay no longer holds the batch this statement names (an upload that
                // never finished): publish a whole new batch instead.
                Err(ClientError::Relay {
                    code: ErrorCode::NotFound,
                    ..
                }) => {
                    let (signed, wire) = self.with(|u| {
                        let batch = keys::next_batch_id(&u.vault)?;
                        u.vault.transaction(|v| {
                            keys::new_batch(v, &u.me.identity, batch, now, &mut rng())
                        })
                    })?;
                    client.publish_prekeys(&signed, wire).await?;
                }
                Err(e) => return Err(e.into()),
            }
            self.with(|u| keys::mark_published(&u.vault))?;
        }
        Ok(self.attach(client, pushes))
    }

    /// Runs key maintenance now (rotations due at the engine clock's time, deletion of keys
    /// whose grace ended) without connecting; the relay learns of renewals on the next connect.
    pub fn maintain_keys(&self) -> Result<(), CoreError> {
        let now = self.now_ms();
        self.with(|u| keys::maintain(&u.vault, &mut u.me, now, &mut rng()).map(|_| ()))?;
        self.inner
            .maintained
            .store(now, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// [`Engine::maintain_keys`] at most once a minute of engine time: called before anything
    /// is sealed or the relay is contacted, so nothing goes out under an expired key.
    fn maybe_maintain(&self) -> Result<(), CoreError> {
        let last = self
            .inner
            .maintained
            .load(std::sync::atomic::Ordering::Relaxed);
        let now = self.now_ms();
        if last != 0 && now >= last && now - last < 60_000 {
            return Ok(());
        }
        self.maintain_keys()
    }

    /// How many private keys of each kind the vault holds (for diagnostics and tests).
    pub fn key_inventory(&self) -> Result<tessera_store::KeyInventory, CoreError> {
        self.with(|u| Ok(u.vault.key_inventory()?))
    }

    /// This device's current certificate: serial and validity window (ms).
    pub fn device_certificate(&self) -> Result<(u32, u64, u64), CoreError> {
        self.with(|u| {
            let f = &u.me.certificate.fields;
            Ok((f.serial, f.not_before, f.not_after))
        })
    }

    /// Fetches again the certificates of `contact`'s devices that their owner has renewed by
    /// now (the cached one is in its last 15 days), at most once an hour per device. Best
    /// effort, over the current connection only: without one the cached certificate is used
    /// (its envelope key stays usable for 90 days after it ends).
    async fn refresh_contact(&self, contact: &[u8; 32]) {
        let now = self.now_ms();
        let Ok((stale, account)) = self.with(|u| {
            let Some(c) = u.vault.contact(contact)? else {
                return Ok((Vec::new(), None));
            };
            let mut stale = Vec::new();
            for (device, cert) in u.vault.contact_devices(contact)? {
                let Ok(cert) = DeviceCertificate::from_bytes(&cert) else {
                    continue;
                };
                if keys::contact_certificate_stale(cert.fields.not_after, now) {
                    stale.push((device, cert.fields.serial));
                }
            }
            Ok((stale, AccountPublic::from_bytes(&c.account_public).ok()))
        }) else {
            return;
        };
        let Some(account) = account else { return };
        // Only over a connection that is already up: this runs before sealing, and a send must
        // not wait for a connection attempt (the flush after it connects).
        let Some(client) = self.inner.client.lock().ok().and_then(|c| c.clone()) else {
            return;
        };
        for (device, serial) in stale {
            let due = self.inner.refreshed.lock().is_ok_and(|mut m| {
                let last = m.entry((*contact, device)).or_insert(0);
                if now.saturating_sub(*last) < 3_600_000 && *last != 0 {
                    false
                } else {
                    *last = now;
                    true
                }
            });
            if !due {
                continue;
            }
            match client
                .fetch_certificate(&AccountId(*contact), device, &account, now)
                .await
            {
                Ok(cert) if cert.fields.serial > serial => {
                    let bytes = cert.to_bytes();
                    let _ =
                        self.with(|u| Ok(u.vault.put_contact_device(contact, device, &bytes)?));
                    tracing::info!(
                        device,
                        serial = cert.fields.serial,
                        "contact certificate refreshed"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::info!(error = %e, "contact certificate not refreshed"),
            }
        }
    }

    fn attach(&self, client: RelayClient, mut pushes: Pushes) -> Arc<RelayClient> {
        let client = Arc::new(client);
        if let Ok(mut c) = self.inner.client.lock() {
            *c = Some(client.clone());
        }
        self.emit(Event::Connected);
        let engine = self.clone();
        let weak = Arc::downgrade(&client);
        tokio::spawn(async move {
            while let Some(push) = pushes.recv().await {
                match push {
                    Pushed::Deliver {
                        delivery_id,
                        envelope,
                    } => {
                        let keep = engine.receive_envelope(&envelope);
                        // The acknowledgement's answer is not awaited: the next envelope is
                        // processed while it travels (one round trip per envelope would stall
                        // a backlog over Tor). An ack that is lost leaves the envelope at the
                        // relay; it comes again and is dropped as a duplicate.
                        if !keep && let Some(c) = weak.upgrade() {
                            tokio::spawn(async move {
                                let _ = c.ack(delivery_id).await;
                            });
                        }
                    }
                    Pushed::PrekeysLow { .. } => {
                        if let Err(e) = engine.refill_prekeys().await {
                            tracing::warn!(error = %e, "prekey refill failed");
                        }
                    }
                    Pushed::Closing { code, .. } => {
                        tracing::info!(?code, "relay closed the connection");
                    }
                    _ => {}
                }
            }
            // A connection replaced by a newer one (a renewed certificate registered) ends
            // quietly; only the loss of the current connection is a disconnection.
            let current = match engine.inner.client.lock() {
                Ok(mut c) if c.as_ref().is_some_and(|c| Arc::as_ptr(c) == weak.as_ptr()) => {
                    c.take();
                    true
                }
                Ok(c) => c.is_none(),
                Err(_) => true,
            };
            if current {
                engine.emit(Event::Disconnected);
            }
        });
        client
    }

    /// Stays connected: reconnects with exponential backoff (1 s doubling to 60 s, with
    /// jitter) until the engine is locked. Returns only when locked.
    pub async fn run(&self) {
        let mut backoff = Duration::from_secs(1);
        while self.is_unlocked() {
            match self.connect().await {
                Ok(client) => {
                    backoff = Duration::from_secs(1);
                    let _ = self.flush_outbox().await;
                    // Receipts queued by incoming messages are flushed by `receive`.
                    let mut events = self.subscribe();
                    let mut hourly = tokio::time::Instant::now() + Duration::from_secs(3600);
                    loop {
                        // Entries backing off after a failure go out when their time comes.
                        let retry = self
                            .next_delivery()
                            .map_or(Duration::from_secs(3600), |at| {
                                Duration::from_millis(at.saturating_sub(self.now_ms()))
                            });
                        let event = tokio::select! {
                            e = events.recv() => e,
                            () = tokio::time::sleep(retry) => {
                                let _ = self.flush_outbox().await;
                                continue;
                            }
                            // Hourly: rotations fall due while connected too; `connect`
                            // maintains and registers a renewed certificate.
                            () = tokio::time::sleep_until(hourly) => {
                                hourly += Duration::from_secs(3600);
                                if self.connect().await.is_err() {
                                    break;
                                }
                                continue;
                            }
                        };
                        match event {
                            Ok(Event::Disconnected | Event::Locked { .. })
                            | Err(broadcast::error::RecvError::Closed) => break,
                            _ => {}
                        }
                    }
                    drop(client);
                }
                Err(e) => {
                    tracing::info!(error = %e, "cannot reach the relay; retrying");
                    let jitter = Duration::from_millis(rand::random_range(0..500));
                    tokio::time::sleep(backoff + jitter).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    /// Connects, processes everything the relay has queued until nothing arrives for `idle`,
    /// sends the outbox, and returns.
    pub async fn sync(&self, idle: Duration) -> Result<(), CoreError> {
        let mut events = self.subscribe();
        self.connect().await?;
        self.flush_outbox().await?;
        loop {
            match tokio::time::timeout(idle, events.recv()).await {
                Ok(Ok(Event::Disconnected)) => return Err(CoreError::Net(ClientError::Closed)),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        self.flush_outbox().await?;
        Ok(())
    }

    async fn refill_prekeys(&self) -> Result<(), CoreError> {
        let now = self.now_ms();
        let (signed, wire) = self.with(|u| {
            let batch = keys::next_batch_id(&u.vault)?;
            u.vault
                .transaction(|v| keys::new_batch(v, &u.me.identity, batch, now, &mut rng()))
        })?;
        let client = self.connect().await?;
        client.publish_prekeys(&signed, wire).await?;
        self.with(|u| keys::mark_published(&u.vault))?;
        self.emit(Event::PrekeysRefilled);
        Ok(())
    }

    /// Adds a contact from their invite: fetches and verifies their bundle (the keys must hash
    /// to the invite's account id), starts the session and sends a contact request. If they
    /// already asked us, this accepts their request instead.
    pub async fn add_contact(
        &self,
        invite: &Invite,
        name: Option<&str>,
    ) -> Result<Contact, CoreError> {
        if let Some(mut existing) = self.with(|u| Ok(u.vault.contact(&invite.account_id.0)?))? {
            if let Some(n) = name.filter(|n| !n.is_empty() && *n != existing.name) {
                existing.name = n.to_string();
                self.with(|u| {
                    u.vault.put_contact(&existing).map_err(|e| match e {
                        VaultError::Sqlite(_) => CoreError::NameTaken,
                        e => e.into(),
                    })
                })?;
            }
            if existing.state == ContactState::Incoming {
                return self.answer_request(&existing.account_id, true).await;
            }
            return Ok(existing);
        }
        let client = self.connect().await?;
        let bundle = client
            .fetch_bundle(&invite.account_id, DEVICE_ID, self.now_ms())
            .await?;
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| invite.name.clone());
        let name = if name.is_empty() {
            invite.account_id.to_string()
        } else {
            name
        };
        self.maybe_maintain()?;
        let now = self.now_ms();
        let contact = self.with(|u| {
            let me = &u.me;
            let account = invite.account_id;
            u.vault.transaction(|v| -> Result<Contact, CoreError> {
                let contact = Contact {
                    account_id: account.0,
                    name: name.clone(),
                    account_public: bundle.account.to_bytes(),
                    relay: invite.relay.to_string(),
                    state: ContactState::Requested,
                    created: now as i64,
                };
                v.put_contact(&contact).map_err(|e| match e {
                    VaultError::Sqlite(_) => CoreError::NameTaken,
                    e => e.into(),
                })?;
                v.put_contact_device(&account.0, DEVICE_ID, &bundle.certificate.to_bytes())?;
                v.accept_identity(&account.to_string(), &bundle.account.signal_identity_key())?;
                let lib = bundle
                    .signed
                    .bundle(&bundle.account, bundle.one_time.as_ref())?;
                let addr = address(&account, DEVICE_ID)?;
                let (mut s, mut i) = (v.signal(), v.signal());
                process_prekey_bundle(&addr, &mut s, &mut i, &lib, at(now), &mut rng())
                    .now_or_never()
                    .ok_or(CoreError::Busy)??;
                let request = Content::ContactRequest(contact::Request {
                    name: me.name.clone(),
                    relay: me.relay.to_string(),
                    certificate: base64_encode(&me.certificate.to_bytes()),
                });
                queue(v, &account, &request, None, now)?;
                Ok(contact)
            })
        })?;
        self.flush_outbox().await?;
        Ok(contact)
    }

    /// Accepts or rejects a contact's request.
    pub async fn answer_request(
        &self,
        account: &[u8; 32],
        accept: bool,
    ) -> Result<Contact, CoreError> {
        self.refresh_contact(account).await;
        self.maybe_maintain()?;
        let now = self.now_ms();
        let contact = self.with(|u| {
            let me = &u.me;
            u.vault.transaction(|v| -> Result<Contact, CoreError> {
                let mut c = v.contact(account)?.ok_or(CoreError::UnknownContact)?;
                let content = if accept {
                    c.state = ContactState::Accepted;
                    Content::ContactAccept(contact::Accept {
                        name: me.name.clone(),
                    })
                } else {
                    c.state = ContactState::Rejected;
                    Content::ContactReject(contact::Reject {})
                };
                v.set_contact_state(account, c.state)?;
                queue(v, &AccountId(*account), &content, None, now)?;
                if accept {
                    // What they sent while they were a stranger got no receipt: it does now.
                    let waiting = v.incoming_ids(account)?;
                    for chunk in waiting.chunks(MAX_RECEIPT_IDS) {
                        let receipt = Content::Receipt(Receipt {
                            kind: ReceiptKind::Delivered,
                            ids: chunk.iter().copied().map(MessageId).collect(),
                        });
                        queue(v, &AccountId(*account), &receipt, None, now)?;
                    }
                }
                Ok(c)
            })
        })?;
        self.kick();
        Ok(contact)
    }

    /// Finds a contact by the name given when adding it, or by account id text.
    pub fn find_contact(&self, name_or_id: &str) -> Result<Contact, CoreError> {
        self.with(|u| {
            if let Some(c) = u.vault.contact_by_name(name_or_id)? {
                return Ok(c);
            }
            if let Ok(id) = name_or_id.parse::<AccountId>()
                && let Some(c) = u.vault.contact(&id.0)?
            {
                return Ok(c);
            }
            Err(CoreError::UnknownContact)
        })
    }

    /// All contacts.
    pub fn contacts(&self) -> Result<Vec<Contact>, CoreError> {
        self.with(|u| Ok(u.vault.contacts()?))
    }

    /// Sends a text message: returns its id as soon as it is committed to the outbox (status
    /// `pending`); delivery runs in the background and reports progress as
    /// [`Event::Status`] (sent, delivered, read, or failed with a reason). Whether or not the
    /// relay is reachable makes no difference here.
    pub async fn send_text(&self, contact: &[u8; 32], body: &str) -> Result<[u8; 16], CoreError> {
        if body.len() > crate::MAX_TEXT {
            return Err(CoreError::TooLong);
        }
        let id: [u8; 16] = rand::random();
        self.maybe_maintain()?;
        let sent = self.now_ms();
        self.with(|u| {
            u.vault.transaction(|v| -> Result<(), CoreError> {
                let c = v.contact(contact)?.ok_or(CoreError::UnknownContact)?;
                if c.state == ContactState::Rejected {
                    return Err(CoreError::Rejected);
                }
                v.insert_message(&Message {
                    id: 0,
                    contact: *contact,
                    message_id: id,
                    outgoing: true,
                    body: body.to_string(),
                    sent: sent as i64,
                    received: None,
                    status: MessageStatus::Pending,
                    read: true,
                    kind: "text".into(),
                    failure: None,
                })?;
                let content = Content::Text(Text {
                    id: MessageId(id),
                    sent,
                    body: body.to_string(),
                });
                queue(v, &AccountId(*contact), &content, Some(&id), sent)
            })
        })?;
        self.kick();
        Ok(id)
    }

    /// Sends a call signal to an accepted contact (`docs/calls.md`). It travels like a
    /// message (Signal session, envelope), but nothing is stored in the conversation.
    pub async fn send_call_signal(
        &self,
        contact: &[u8; 32],
        call: crate::calls::CallId,
        signal: &crate::calls::Signal,
    ) -> Result<(), CoreError> {
        self.maybe_maintain()?;
        let now = self.now_ms();
        let content = Content::Call(Call {
            call: CallId(call.0),
            sent: now,
            signal: crate::calls::to_wire(signal),
        });
        // The same limits a receiver applies (SDP size, secret form).
        Content::from_bytes(&content.to_bytes()?)?;
        self.with(|u| {
            u.vault.transaction(|v| -> Result<(), CoreError> {
                let c = v.contact(contact)?.ok_or(CoreError::UnknownContact)?;
                if c.state != ContactState::Accepted {
                    return Err(CoreError::UnknownContact);
                }
                queue(v, &AccountId(*contact), &content, None, now)
            })
        })?;
        self.flush_outbox().await?;
        Ok(())
    }

    /// Messages with a contact, `limit` at a time, older than row `before`.
    pub fn history(
        &self,
        contact: &[u8; 32],
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>, CoreError> {
        self.with(|u| Ok(u.vault.history(contact, before, limit)?))
    }

    /// Full-text search over all messages.
    pub fn search(&self, text: &str, limit: u32) -> Result<Vec<Message>, CoreError> {
        self.with(|u| Ok(u.vault.search(text, limit)?))
    }

    /// A message by id.
    pub fn message(&self, id: &[u8; 16]) -> Result<Option<Message>, CoreError> {
        self.with(|u| Ok(u.vault.message(id)?))
    }

    /// Marks a conversation read and sends read receipts for what was unread.
    pub async fn mark_read(&self, contact: &[u8; 32]) -> Result<usize, CoreError> {
        self.refresh_contact(contact).await;
        self.maybe_maintain()?;
        let now = self.now_ms();
        let n = self.with(|u| {
            u.vault.transaction(|v| -> Result<usize, CoreError> {
                let ids = v.mark_read(contact)?;
                let standing = v
                    .contact(contact)?
                    .map_or(Standing::Stranger, |c| standing(c.state));
                if !standing.gets_receipts() {
                    return Ok(ids.len());
                }
                for chunk in ids.chunks(MAX_RECEIPT_IDS) {
                    let receipt = Content::Receipt(Receipt {
                        kind: ReceiptKind::Read,
                        ids: chunk.iter().copied().map(MessageId).collect(),
                    });
                    queue(v, &AccountId(*contact), &receipt, None, now)?;
                }
                Ok(ids.len())
            })
        })?;
        if n > 0 {
            self.kick();
        }
        Ok(n)
    }

    /// The safety number shared with a contact (60 digits).
    pub fn safety_number(&self, contact: &[u8; 32]) -> Result<(String, bool, bool), CoreError> {
        self.with(|u| {
            let c = u.vault.contact(contact)?.ok_or(CoreError::UnknownContact)?;
            let theirs = AccountPublic::from_bytes(&c.account_public)?;
            let n = SafetyNumber::new(&u.me.public, &theirs);
            let rec = u.vault.identity_record(&AccountId(*contact).to_string())?;
            let (verified, changed) = rec
                .map(|r| (r.verified, r.changed))
                .unwrap_or((false, false));
            Ok((n.digits(), verified, changed))
        })
    }

    /// Marks a contact verified (after comparing safety numbers).
    pub fn verify(&self, contact: &[u8; 32]) -> Result<(), CoreError> {
        self.with(|u| {
            u.vault
                .set_verified(&AccountId(*contact).to_string(), true)?
                .then_some(())
                .ok_or(CoreError::UnknownContact)
        })
    }

    /// Processes one envelope, however it arrived (the relay connection calls this for each
    /// delivery); returns whether to keep it at the relay (not acknowledge it): only when it
    /// cannot be handled yet (locked, vault failure, an identity change to accept first).
    pub fn receive_envelope(&self, bytes: &[u8]) -> bool {
        // Receipts sealed below use the current epoch.
        if let Err(e) = self.maybe_maintain() {
            tracing::warn!(error = %e, "key maintenance failed");
        }
        let now = self.now_ms();
        let result = self.with(|u| process(u, bytes, now));
        match result {
            Ok(Processed::Done(events)) => {
                let kick = !events.is_empty();
                for e in events {
                    self.emit(e);
                }
                if kick {
                    self.kick();
                }
                false
            }
            Ok(Processed::Keep(event)) => {
                self.emit(event);
                true
            }
            // A local failure (locked, disk, database): keep the envelope at the relay, it comes
            // back on the next login.
            Err(CoreError::Locked | CoreError::Vault(_) | CoreError::Busy) => true,
            Err(e) => {
                // Unreadable, forged or malformed: acknowledged and dropped, never retried.
                tracing::warn!(error = %e, "dropped an envelope");
                self.emit(Event::Dropped {
                    reason: e.to_string(),
                });
                false
            }
        }
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text)
        .ok()
}

fn process(u: &mut Unlocked, bytes: &[u8], now: u64) -> Result<Processed, CoreError> {
    let links = VaultLinks {
        vault: &u.vault,
        failed: std::cell::Cell::new(None),
    };
    let received = match u.me.ring.receive(bytes, now, &links) {
        Ok(r) => r,
        Err(e) => return Err(links.failed.take().map_or(e.into(), CoreError::Vault)),
    };
    let verified = received.envelope;
    let sender = verified.sender.account_id;
    let device = verified.sender.device_id;
    u.vault
        .transaction(|v| -> Result<Processed, CoreError> {
            // Keyed on the sender too (docs/envelope.md §5).
            if !v.mark_seen(&verified.replay_key().to_bytes(), now as i64)? {
                return Ok(Processed::Done(Vec::new()));
            }
            // Links change only with an envelope that was processed (this transaction).
            if let Some(link) = &received.new_link {
                v.put_inbound_link(
                    &link.id(),
                    &sender.0,
                    device,
                    &link.to_bytes(),
                    now,
                    link.usable_until(),
                )?;
            }
            if let Some(ack) = received.ack
                && let Some(mut link) = v
                    .outbound_link(&sender.0, device)?
                    .and_then(|b| OutboundLink::from_bytes(&b).ok())
                && link.id() == ack
                && !link.acked
            {
                link.acked = true;
                v.put_outbound_link(&sender.0, device, &link.to_bytes())?;
            }
            // The sender's account keys: in a full envelope's certificate, else those stored
            // with the contact (a short envelope comes on a link a full one made).
            let sender_public = match &received.certificate {
                Some(c) => c.account().clone(),
                None => v
                    .contact(&sender.0)?
                    .and_then(|c| AccountPublic::from_bytes(&c.account_public).ok())
                    .ok_or(CoreError::UnknownContact)?,
            };
            let addr = address(&sender, device)?;
            if v.identity_record(addr.name())?.is_none() {
                // First contact: the identity is the one whose keys hash to the sender's account id
                // (checked by the epoch certificate).
                v.accept_identity(addr.name(), &sender_public.signal_identity_key())?;
            }
            let (kind, body) = verified
                .content
                .split_first()
                .ok_or(CoreError::BadContent)?;
            let message = match CiphertextMessageType::try_from(*kind) {
                Ok(CiphertextMessageType::PreKey) => {
                    CiphertextMessage::PreKeySignalMessage(PreKeySignalMessage::try_from(body)?)
                }
                Ok(CiphertextMessageType::Whisper) => {
                    CiphertextMessage::SignalMessage(SignalMessage::try_from(body)?)
                }
                _ => return Err(CoreError::BadContent),
            };
            let (mut s, mut i, mut p, sp, mut k) =
                (v.signal(), v.signal(), v.signal(), v.signal(), v.signal());
            let plain = match message_decrypt(
                &message,
                &addr,
                &mut s,
                &mut i,
                &mut p,
                &sp,
                &mut k,
                &mut rng(),
            )
            .now_or_never()
            .ok_or(CoreError::Busy)?
            {
                Ok(p) => Zeroizing::new(p),
                Err(SignalProtocolError::UntrustedIdentity(_)) => {
                    return Err(CoreError::IdentityChanged(sender.to_string()));
                }
                Err(e) => return Err(e.into()),
            };
            let content = Content::from_bytes(&plain)?;
            let mut events = Vec::new();
            let contact = v.contact(&sender.0)?;
            match content {
                Content::ContactRequest(contact::Request {
                    name,
                    relay,
                    certificate,
                }) => {
                    let cert_bytes = base64_decode(&certificate).ok_or(CoreError::BadContent)?;
                    let cert = DeviceCertificate::from_bytes(&cert_bytes)?;
                    cert.verify(&sender_public, now)?;
                    if cert.account_id != sender {
                        return Err(CoreError::BadContent);
                    }
                    match contact {
                        Some(mut c) => {
                            if c.state == ContactState::Requested {
                                // Both asked: that is agreement.
                                c.state = ContactState::Accepted;
                                v.set_contact_state(&sender.0, c.state)?;
                                events.push(Event::ContactAccepted { contact: sender.0 });
                            }
                        }
                        None => {
                            let mut shown = name.clone();
                            if shown.is_empty() || v.contact_by_name(&shown)?.is_some() {
                                shown = sender.to_string();
                            }
                            v.put_contact(&Contact {
                                account_id: sender.0,
                                name: shown,
                                account_public: sender_public.to_bytes(),
                                relay,
                                state: ContactState::Incoming,
                                created: now as i64,
                            })?;
                            events.push(Event::ContactRequest {
                                contact: sender.0,
                                name,
                            });
                        }
                    }
                    v.put_contact_device(&sender.0, cert.fields.device_id, &cert_bytes)?;
                }
                Content::ContactAccept(_) => {
                    if contact.is_some_and(|c| c.state == ContactState::Requested) {
                        v.set_contact_state(&sender.0, ContactState::Accepted)?;
                        events.push(Event::ContactAccepted { contact: sender.0 });
                    }
                }
                Content::ContactReject(_) => {
                    if contact.is_some() {
                        v.set_contact_state(&sender.0, ContactState::Rejected)?;
                        events.push(Event::ContactRejected { contact: sender.0 });
                    }
                }
                Content::Text(Text { id, sent, body }) => {
                    let Some(c) = contact else {
                        return Err(CoreError::UnknownContact);
                    };
                    let standing = standing(c.state);
                    if !standing.keeps_messages() {
                        return Ok(Processed::Done(events));
                    }
                    let message_id = id.0;
                    // A sender's clock from the future never sorts above newer messages.
                    let sent = bound_sent(sent, now).at;
                    let stored = v.insert_message(&Message {
                        id: 0,
                        contact: sender.0,
                        message_id,
                        outgoing: false,
                        body: body.clone(),
                        sent: sent as i64,
                        received: Some(now as i64),
                        status: MessageStatus::Received,
                        read: false,
                        kind: "text".into(),
                        failure: None,
                    })?;
                    if stored.is_some() {
                        events.push(Event::Message {
                            contact: sender.0,
                            message_id,
                            body,
                        });
                    }
                    // A stranger learns nothing until accepted (then the receipts follow).
                    if standing.gets_receipts() {
                        let receipt = Content::Receipt(Receipt {
                            kind: ReceiptKind::Delivered,
                            ids: vec![id],
                        });
                        queue(v, &sender, &receipt, None, now)?;
                    }
                }
                Content::Call(c) => {
                    // Calls only between accepted contacts. An offer that waited in the
                    // mailbox for more than a minute is not rung (the caller gave up long ago).
                    let accepted = contact.is_some_and(|c| c.state == ContactState::Accepted);
                    if accepted && !c.is_stale_offer(now) {
                        let signal =
                            crate::calls::from_wire(&c.signal).ok_or(CoreError::BadContent)?;
                        events.push(Event::Call {
                            contact: sender.0,
                            call: crate::calls::CallId(c.call.0),
                            signal,
                        });
                    }
                }
                Content::Unsupported { kind } => {
                    // From a newer version: shown as "unsupported message", never dropped
                    // silently. A stranger's is not kept (as their texts are not).
                    let keeps = contact.is_some_and(|c| standing(c.state).keeps_messages());
                    if keeps {
                        let message_id = *blake3::hash(&verified.replay_key().to_bytes())
                            .as_bytes()
                            .first_chunk::<16>()
                            .ok_or(CoreError::Busy)?;
                        let stored = v.insert_message(&Message {
                            id: 0,
                            contact: sender.0,
                            message_id,
                            outgoing: false,
                            body: String::new(),
                            sent: now as i64,
                            received: Some(now as i64),
                            status: MessageStatus::Received,
                            read: false,
                            kind: format!("unsupported:{kind}"),
                            failure: None,
                        })?;
                        if stored.is_some() {
                            events.push(Event::Message {
                                contact: sender.0,
                                message_id,
                                body: String::new(),
                            });
                        }
                    }
                }
                Content::Receipt(Receipt { kind, ids }) => {
                    let status = match kind {
                        ReceiptKind::Delivered => MessageStatus::Delivered,
                        ReceiptKind::Read => MessageStatus::Read,
                    };
                    for id in ids.iter().map(|i| i.0) {
                        let ours = v
                            .message(&id)?
                            .is_some_and(|m| m.outgoing && m.contact == sender.0);
                        if ours && v.advance_status(&id, status)? {
                            events.push(Event::Status {
                                message_id: id,
                                status,
                            });
                        }
                    }
                }
            }
            Ok(Processed::Done(events))
        })
        .or_else(|e| match e {
            CoreError::IdentityChanged(who) => {
                Ok(Processed::Keep(Event::IdentityChanged { contact: who }))
            }
            e => Err(e),
        })
}
