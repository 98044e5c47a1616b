#![doc = include_str!("../README.md")]

mod actions;
mod attachments;
pub mod backup;
mod card_key;
mod expiry;
mod keyfile;
mod keys;
mod links;
mod machines;
mod manage;
mod messages;
mod schema;
mod secrets;
mod signal;
mod vault;
mod wipe;

pub use actions::StoredReaction;
pub use attachments::{ATTACHMENTS_DIR, AttachmentState, StoredAttachment};
pub use expiry::Expired;
pub use keyfile::{
    CARD_SLOTS, CardBinding, CardFactor, DURESS_RECORD_MAX, Factors, KEY_FILE_CARD_LEN,
    KEY_FILE_LEN, KdfParams, KeyFile, Unwrap, Unwrapped,
};
pub use keys::{KeyInventory, NamedSecret, RetiredKey};
pub use machines::standing;
pub use manage::ConversationSettings;
pub use messages::{
    Contact, ContactState, Conversation, FTS_BATCH, Message, MessageStatus, OutboxHead, OutboxItem,
    Quarantined, direct_conversation, note_to_self_conversation, sort_conversations,
};
pub use schema::SCHEMA_VERSION;
pub use secrets::{
    KEYRING_SERVICE, MemorySecrets, OsKeyring, SecretStore, card_entry, vault_entry,
};
pub use signal::{IdentityRecord, SignalStore};
pub use vault::{
    CardRotation, DATABASE_FILE, KEY_FILE, NEXT_KEY_FILE, Opening, PENDING_ACCOUNT, Unlock, Vault,
};
pub use wipe::{WipeProblem, WipeReport, wipe};

/// Why a vault operation failed. No variant carries a secret, a key, or user data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// There is no vault in this directory.
    #[error("no vault here (run init first)")]
    NoVault,
    /// A vault already exists in this directory.
    #[error("a vault already exists here")]
    AlreadyExists,
    /// The key file is damaged.
    #[error("the vault key file is damaged")]
    KeyFileDamaged,
    /// The password, the device secret or the card does not unlock the vault.
    #[error("wrong password or unlock factor")]
    WrongFactor,
    /// The vault needs its card.
    #[error("this vault needs its card")]
    CardRequired,
    /// A card other than the one this vault is bound to.
    #[error("this is not the card enrolled for this vault")]
    WrongCard,
    /// The card's read counter did not increase since the last unlock: a replayed read or a
    /// cloned card.
    #[error(
        "the card's read counter did not increase since the last unlock (replayed or cloned card); \
         the vault stays locked"
    )]
    CardReplayed,
    /// The vault already has the card factor.
    #[error("this vault already has a card enrolled")]
    CardAlreadyEnrolled,
    /// The vault has no card factor to replace.
    #[error("this vault has no card enrolled")]
    NoCardEnrolled,
    /// A replacement card must be another card (re-keying the enrolled card in place would
    /// change its secret before the vault could be rewrapped).
    #[error("the replacement card is the card already enrolled")]
    SameCard,
    /// The duress password would be the account's password (then it could never wipe).
    #[error("the duress password must differ from the account's password")]
    DuressSameAsPassword,
    /// What the duress password opens does not fit the key file's fixed slot.
    #[error("the decoy account's settings are too long for the duress slot ({max} bytes)")]
    DuressRecordTooLarge {
        /// The slot's capacity in bytes.
        max: usize,
    },
    /// The OS keyring has no device secret for this vault.
    #[error(
        "the device secret for this vault is missing from the OS keyring; the vault cannot be \
         opened on this machine or user account"
    )]
    DeviceSecretMissing,
    /// The OS keyring could not be used.
    #[error("{0}")]
    Keyring(String),
    /// The key derivation parameters are below the accepted minimum.
    #[error("key derivation parameters below the minimum (19 MiB, 2 passes)")]
    WeakKdf,
    /// The database file is damaged or was tampered with.
    #[error("the vault database is damaged or was modified outside Tessera")]
    Corrupt,
    /// The vault was written by a newer version.
    #[error("the vault is from a newer version of Tessera")]
    NewerVersion,
    /// The vault has no account yet.
    #[error("the vault has no account yet")]
    NotInitialised,
    /// The database could not be opened.
    #[error("cannot open the vault database: {0}")]
    Database(String),
    /// A database operation failed.
    #[error("vault database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file operation failed.
    #[error("vault file error: {0:?}")]
    Io(std::io::ErrorKind),
}

/// A fresh vault in a temporary directory, for this crate's unit tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_vault() -> (tempfile::TempDir, Vault) {
    use rand::SeedableRng as _;
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::create(
        dir.path(),
        b"pw",
        KdfParams::MINIMUM,
        &MemorySecrets::default(),
        None,
        &mut rand_chacha::ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    (dir, v)
}

/// An accepted contact `[n; 32]` named `c<n>`, for this crate's unit tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_contact(v: &Vault, n: u8) {
    v.put_contact(&Contact {
        account_id: [n; 32],
        name: format!("c{n}"),
        account_public: vec![1],
        relay: "r".into(),
        state: ContactState::Accepted,
        created: 0,
    })
    .unwrap();
}

/// A text `id` in the conversation with `contact`, sent at `sent` (received then, when
/// incoming), for this crate's unit tests.
#[cfg(test)]
pub(crate) fn test_message(
    contact: [u8; 32],
    id: [u8; 16],
    body: &str,
    outgoing: bool,
    sent: i64,
) -> Message {
    Message::notice(
        direct_conversation(&contact),
        contact,
        id,
        "text",
        body.into(),
        outgoing,
        sent,
    )
}
