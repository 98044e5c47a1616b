//! The client engine (`docs/engine.md`): one account's vault, keys and relay connection.
//!
//! All state lives in the vault; the engine holds the open vault and the device's keys while
//! unlocked, and nothing when locked. Vault work happens in short critical sections that never
//! await; relay work happens outside them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::run_to_end::RunToEnd as _;
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
use tessera_messaging::inbound::Standing;
use tessera_messaging::{CallId, Content, MessageId};

mod account;
mod actions;
mod attachments;
mod backup;
mod card_watch;
mod connection;
mod contacts;
mod delivery;
mod duress;
mod expiry;
mod inbound;
mod leaving;
mod manage;
mod messages;
mod notes;
mod previews;
#[cfg(test)]
mod testing;
mod updates;

pub use actions::DeleteFor;
pub use attachments::{AUTO_DOWNLOAD_DEFAULT_MIB, AUTO_DOWNLOAD_SETTING, AttachmentInfo};
pub use backup::{BackupMade, RestoreOptions};
use inbound::standing;
pub use leaving::Left;
use messages::{address, at, base64_encode, new_outgoing, queue};
use notes::{conversation_of, queue_in};
pub use previews::{Draft, LINK_PREVIEWS_SETTING};
pub use updates::UPDATE_CHECKS_SETTING;

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
    "panic_shortcut",
    manage::READ_RECEIPTS_SETTING,
    manage::TYPING_SETTING,
    previews::LINK_PREVIEWS_SETTING,
    attachments::AUTO_DOWNLOAD_SETTING,
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
    /// When the session with each contact was last reset after a message that did not
    /// decrypt (engine time; at most one reset per contact per [`inbound::RESET_EVERY_MS`]).
    resets: Mutex<std::collections::HashMap<[u8; 32], u64>>,
    /// Whether the engine holds a live relay connection: a state, not an event, so a listener
    /// that lags behind the event stream still sees a disconnection (the `run` loop).
    link: tokio::sync::watch::Sender<bool>,
    /// The sender time of the last message sent (each next one is later).
    last_sent: std::sync::atomic::AtomicU64,
    /// Engine time of the last key maintenance (0: never).
    maintained: std::sync::atomic::AtomicU64,
    secrets: Arc<dyn SecretStore>,
    /// What the card check of the unlock found (`None`: no card, or made without an unlock).
    card_check: Mutex<Option<crate::card::CardCheck>>,
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
    /// A card swap (replacement) under way: until when the reader may stay empty without
    /// locking, and the factors its first step checked. Dropped (zeroized) when the engine locks.
    card_swap: Mutex<Option<card_watch::CardSwap>>,
    /// One connection attempt at a time: two would both log in and the second would replace
    /// the first at the relay, failing whatever was in flight on it.
    connecting: tokio::sync::Mutex<()>,
    /// Wakes the expiry watcher (`expiry.rs`).
    expiry: Arc<tokio::sync::Notify>,
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

/// The transport recorded in the vault's settings. The Arti configuration is kept in the vault
/// as text (`tor_config_toml`); a vault from before kept only the path of a file beside it
/// (`tor_config`): that file is read once, its text moved into the vault, and the path dropped.
fn transport_config(v: &Vault) -> Result<TransportConfig, CoreError> {
    Ok(match setting(v, "transport")?.as_str() {
        "direct" => TransportConfig::Direct,
        "tor" => {
            if let Some(path) = v.setting("tor_config")? {
                let text =
                    tessera_net::read_config_file(Path::new(&path)).map_err(ClientError::Net)?;
                v.transaction(|v| {
                    v.set_setting("tor_config_toml", &text)?;
                    v.delete_setting("tor_config")
                })?;
            }
            TransportConfig::Tor {
                config: v.setting("tor_config_toml")?,
            }
        }
        other => return Err(CoreError::TransportUnavailable(other.to_string())),
    })
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
                resets: Mutex::new(std::collections::HashMap::new()),
                maintained: std::sync::atomic::AtomicU64::new(0),
                last_sent: std::sync::atomic::AtomicU64::new(0),
                link: tokio::sync::watch::Sender::new(false),
                secrets,
                card_check: Mutex::new(None),
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
                expiry: Arc::new(tokio::sync::Notify::new()),
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
            Ok(match setting(&u.vault, "transport")?.as_str() {
                "direct" => "direct",
                _ => "tor",
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

    /// Locks: closes the vault and the connection and drops every key from memory.
    pub fn lock(&self) {
        self.lock_because(LockReason::Requested);
    }

    /// Locks like [`Engine::lock`], naming why (an idle timer, the window losing focus).
    pub fn lock_because(&self, reason: LockReason) {
        // Locked first, then the connection closed: the connection's end is then seen as part
        // of the lock, not reported as a network disconnection ahead of `Locked`.
        let was_unlocked = match self.inner.state.lock() {
            Ok(mut s) => s.take().is_some(),
            Err(_) => false,
        };
        if let Ok(mut c) = self.inner.client.lock() {
            c.take();
        }
        // A card replacement's password and old card read do not outlive the unlock.
        self.end_card_swap();
        self.inner.link.send_replace(false);
        if let Ok(mut d) = self.inner.delivery.lock() {
            *d = tessera_messaging::Delivery::new(*d.config());
        }
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

    /// The conversation list: each contact with its newest message and unread count, and the
    /// note to self once opened, the most recent first. Someone who asked to be a contact and
    /// was not answered yet is not here but in [`Engine::requests`].
    pub fn conversations(&self) -> Result<Vec<tessera_store::Conversation>, CoreError> {
        let (all, notes) = self.with(|u| {
            Ok((
                u.vault.conversations()?,
                u.vault.note_to_self(Self::me_as_contact(u))?,
            ))
        })?;
        let mut list: Vec<_> = all
            .into_iter()
            .filter(|c| !standing(c.contact.state).in_request_box())
            .chain(notes)
            .collect();
        tessera_store::sort_conversations(&mut list);
        Ok(list)
    }

    /// The request box (`docs/messaging.md`, "Inbound policy"): who asked to be a contact and
    /// was not answered yet, with how many messages they sent, a short preview of the first
    /// (never the whole text before acceptance), and the contact name their name imitates, if
    /// it looks like one (Unicode confusables).
    pub fn requests(&self) -> Result<Vec<crate::Request>, CoreError> {
        self.with(|u| {
            let contacts = u.vault.contacts()?;
            let mut out = Vec::new();
            for c in contacts
                .iter()
                .filter(|c| standing(c.state).in_request_box())
            {
                let messages = u
                    .vault
                    .history(&c.account_id, None, crate::REQUEST_MESSAGES)?;
                let others = contacts
                    .iter()
                    .filter(|o| o.account_id != c.account_id)
                    .map(|o| o.name.as_str());
                out.push(crate::Request {
                    contact: c.clone(),
                    messages: messages.len() as u32,
                    preview: messages
                        .iter()
                        .find(|m| m.kind == "text")
                        .map(|m| crate::preview(&m.body)),
                    imitates: tessera_messaging::inbound::imitates(&c.name, others)
                        .map(str::to_string),
                });
            }
            Ok(out)
        })
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Review finding: the Arti configuration (which would name bridges and pluggable-transport
    /// programs) lived in a file beside the vault, read at every unlock. Its text is kept in the
    /// vault now; a vault that only had the file's path takes the text in once and drops the
    /// path, and the file is not needed again.
    #[test]
    fn arti_configuration_lives_in_the_vault() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::create(
            &dir.path().join("v"),
            b"pw",
            KdfParams::MINIMUM,
            &tessera_store::MemorySecrets::default(),
            None,
            &mut rng(),
        )
        .unwrap();
        let text = "[address_filter]\nallow_local_addrs = true\n";
        let file = dir.path().join("arti.toml");
        std::fs::write(&file, text).unwrap();
        v.set_setting("transport", "tor").unwrap();
        v.set_setting("tor_config", &file.to_string_lossy())
            .unwrap();

        let expected = TransportConfig::Tor {
            config: Some(text.into()),
        };
        assert_eq!(transport_config(&v).unwrap(), expected);
        assert_eq!(
            v.setting("tor_config").unwrap(),
            None,
            "the path is dropped"
        );
        std::fs::remove_file(&file).unwrap();
        assert_eq!(transport_config(&v).unwrap(), expected, "no file needed");

        // A configuration that does not parse is refused when it is taken in.
        std::fs::write(&file, "[address_filter\n").unwrap();
        v.set_setting("tor_config", &file.to_string_lossy())
            .unwrap();
        assert!(transport_config(&v).is_err());
    }
}
