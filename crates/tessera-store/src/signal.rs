//! libsignal's store traits on the vault.
//!
//! Each operation is one SQL statement on the vault's connection, so the futures libsignal gets
//! are always ready: callers may drive them with `now_or_never()`. Identity keys are trusted on
//! first use; a different key for a known account is refused until the user accepts it
//! ([`Vault::accept_identity`]), never silently.

use async_trait::async_trait;
use rusqlite::{OptionalExtension as _, params};
use tessera_crypto::AccountIdentity;
use tessera_crypto::signal::{
    Direction, GenericSignedPreKey as _, IdentityChange, IdentityKey, IdentityKeyPair,
    IdentityKeyStore, KyberPreKeyId, KyberPreKeyRecord, KyberPreKeyStore, PreKeyId, PreKeyRecord,
    PreKeyStore, ProtocolAddress, PublicKey, SenderKeyRecord, SenderKeyStore, SessionRecord,
    SessionStore, SignalProtocolError, SignedPreKeyId, SignedPreKeyRecord, SignedPreKeyStore,
};
use zeroize::Zeroizing;

use crate::{Vault, VaultError};

type Result<T> = std::result::Result<T, SignalProtocolError>;

/// A vault failure as libsignal carries it.
#[derive(Debug)]
struct VaultFailure(String);

impl std::fmt::Display for VaultFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for VaultFailure {}

fn db(method: &'static str) -> impl FnOnce(rusqlite::Error) -> SignalProtocolError {
    move |e| {
        SignalProtocolError::ApplicationCallbackError(method, Box::new(VaultFailure(e.to_string())))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// libsignal's stores over one open vault. Several may exist at once (libsignal takes the
/// session and identity stores as separate `&mut` arguments); they share the connection.
#[derive(Clone, Copy, Debug)]
pub struct SignalStore<'a> {
    vault: &'a Vault,
}

/// What the vault knows about a contact's identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    /// The trusted key.
    pub identity: Vec<u8>,
    /// The user compared safety numbers and marked it verified.
    pub verified: bool,
    /// A different key was offered and refused; the user has to look at it.
    pub changed: bool,
}

impl Vault {
    /// The libsignal stores.
    pub fn signal(&self) -> SignalStore<'_> {
        SignalStore { vault: self }
    }

    /// Forgets the Signal session with one device of an account (`account` as libsignal names
    /// it); returns whether there was one.
    pub fn delete_session(
        &self,
        account: &str,
        device: u32,
    ) -> std::result::Result<bool, VaultError> {
        Ok(self.execute(
            "DELETE FROM sessions WHERE account = ?1 AND device = ?2",
            params![account, device],
        )? == 1)
    }

    /// Forgets the Signal sessions with every device of an account (`account` as libsignal
    /// names it); returns how many there were.
    pub fn delete_sessions(&self, account: &str) -> std::result::Result<usize, VaultError> {
        Ok(self.execute("DELETE FROM sessions WHERE account = ?1", params![account])?)
    }

    /// Stores this device's own identity secrets and registration id (once, at account set-up).
    pub fn set_local_identity(
        &self,
        identity: &AccountIdentity,
        registration_id: u32,
    ) -> std::result::Result<(), VaultError> {
        let (curve, mldsa) = identity.to_parts();
        self.transaction(|v: &Vault| -> std::result::Result<(), VaultError> {
            let mut put = v
                .conn
                .prepare("INSERT OR REPLACE INTO local (name, value) VALUES (?1, ?2)")?;
            put.execute(params!["identity.curve", &curve[..]])?;
            put.execute(params!["identity.mldsa", &mldsa[..]])?;
            put.execute(params![
                "registration_id",
                &registration_id.to_be_bytes()[..]
            ])?;
            Ok(())
        })
    }

    /// A local value (`None` if unset). Secrets come back in zeroizing storage.
    pub fn local(&self, name: &str) -> std::result::Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        Ok(self
            .query_row("SELECT value FROM local WHERE name = ?1", [name], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()?
            .map(Zeroizing::new))
    }

    /// Sets a local value.
    pub fn set_local(&self, name: &str, value: &[u8]) -> std::result::Result<(), VaultError> {
        self.execute(
            "INSERT OR REPLACE INTO local (name, value) VALUES (?1, ?2)",
            params![name, value],
        )?;
        Ok(())
    }

    /// The account identity stored by [`Vault::set_local_identity`].
    pub fn local_identity(&self) -> std::result::Result<AccountIdentity, VaultError> {
        let part = |name| -> std::result::Result<Zeroizing<[u8; 32]>, VaultError> {
            let v = self.local(name)?.ok_or(VaultError::NotInitialised)?;
            let mut out = Zeroizing::new([0u8; 32]);
            if v.len() != 32 {
                return Err(VaultError::Corrupt);
            }
            out.copy_from_slice(&v);
            Ok(out)
        };
        AccountIdentity::from_parts(part("identity.curve")?, part("identity.mldsa")?)
            .map_err(|_| VaultError::Corrupt)
    }

    /// The stored identity record for an account (by its text id).
    pub fn identity_record(
        &self,
        account: &str,
    ) -> std::result::Result<Option<IdentityRecord>, VaultError> {
        Ok(self
            .query_row(
                "SELECT identity, verified, changed FROM identities WHERE account = ?1",
                [account],
                |r| {
                    Ok(IdentityRecord {
                        identity: r.get(0)?,
                        verified: r.get(1)?,
                        changed: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// Trusts `identity` for `account` (the user accepted a changed key, or added the contact
    /// from a code that carried it). Clears `verified` if the key differs from the stored one.
    pub fn accept_identity(
        &self,
        account: &str,
        identity: &IdentityKey,
    ) -> std::result::Result<(), VaultError> {
        let bytes = identity.serialize();
        self.execute(
            "INSERT INTO identities (account, identity, verified, changed, first_seen)
             VALUES (?1, ?2, 0, 0, ?3)
             ON CONFLICT(account) DO UPDATE SET
                verified = CASE WHEN identity = excluded.identity THEN verified ELSE 0 END,
                identity = excluded.identity, changed = 0",
            params![account, &bytes[..], now_ms()],
        )?;
        Ok(())
    }

    /// Marks the account's current identity verified (or not).
    pub fn set_verified(
        &self,
        account: &str,
        verified: bool,
    ) -> std::result::Result<bool, VaultError> {
        Ok(self.execute(
            "UPDATE identities SET verified = ?2 WHERE account = ?1",
            params![account, verified],
        )? == 1)
    }
}

impl SignalStore<'_> {
    /// One BLOB column of at most one row.
    fn blob(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        method: &'static str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let row: Option<Vec<u8>> = self
            .vault
            .conn
            .query_row(sql, params, |r| r.get(0))
            .optional()
            .map_err(db(method))?;
        Ok(row.map(Zeroizing::new))
    }

    /// The identity key stored for an account.
    fn known_identity(
        &self,
        account: &str,
        method: &'static str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        self.blob(
            "SELECT identity FROM identities WHERE account = ?1",
            [account],
            method,
        )
    }
}

fn device(address: &ProtocolAddress) -> u32 {
    u32::from(address.device_id())
}

#[async_trait(?Send)]
impl IdentityKeyStore for SignalStore<'_> {
    async fn get_identity_key_pair(&self) -> Result<IdentityKeyPair> {
        self.vault
            .local_identity()
            .map_err(|_| SignalProtocolError::InvalidState("identity", "no local identity".into()))?
            .signal_identity()
            .map_err(|_| SignalProtocolError::InvalidState("identity", "unusable".into()))
    }

    async fn get_local_registration_id(&self) -> Result<u32> {
        let v = self
            .vault
            .local("registration_id")
            .map_err(|_| SignalProtocolError::InvalidState("registration id", "unreadable".into()))?
            .ok_or_else(|| SignalProtocolError::InvalidState("registration id", "unset".into()))?;
        let bytes: [u8; 4] = v
            .as_slice()
            .try_into()
            .map_err(|_| SignalProtocolError::InvalidState("registration id", "bad".into()))?;
        Ok(u32::from_be_bytes(bytes))
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> Result<IdentityChange> {
        let bytes = identity.serialize();
        let known = self.known_identity(address.name(), "save_identity")?;
        match known {
            None => {
                self.vault
                    .execute(
                        "INSERT INTO identities (account, identity, verified, changed, first_seen)
                         VALUES (?1, ?2, 0, 0, ?3)",
                        params![address.name(), &bytes[..], now_ms()],
                    )
                    .map_err(db("save_identity"))?;
                Ok(IdentityChange::NewOrUnchanged)
            }
            Some(k) if *k == *bytes => Ok(IdentityChange::NewOrUnchanged),
            Some(_) => {
                self.vault
                    .execute(
                        "UPDATE identities SET identity = ?2, verified = 0, changed = 1
                         WHERE account = ?1",
                        params![address.name(), &bytes[..]],
                    )
                    .map_err(db("save_identity"))?;
                Ok(IdentityChange::ReplacedExisting)
            }
        }
    }

    async fn is_trusted_identity(
        &self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
        _direction: Direction,
    ) -> Result<bool> {
        let known = self.known_identity(address.name(), "is_trusted_identity")?;
        match known {
            None => Ok(true),
            Some(k) => {
                let same = *k == *identity.serialize();
                if !same {
                    // Remember that a different key was offered, for the warning.
                    let _ = self.vault.execute(
                        "UPDATE identities SET changed = 1 WHERE account = ?1",
                        [address.name()],
                    );
                }
                Ok(same)
            }
        }
    }

    async fn get_identity(&self, address: &ProtocolAddress) -> Result<Option<IdentityKey>> {
        let known = self.known_identity(address.name(), "get_identity")?;
        known.map(|k| IdentityKey::decode(&k)).transpose()
    }
}

#[async_trait(?Send)]
impl SessionStore for SignalStore<'_> {
    async fn load_session(&self, address: &ProtocolAddress) -> Result<Option<SessionRecord>> {
        let row = self.blob(
            "SELECT record FROM sessions WHERE account = ?1 AND device = ?2",
            params![address.name(), device(address)],
            "load_session",
        )?;
        row.map(|r| SessionRecord::deserialize(&r)).transpose()
    }

    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: &SessionRecord,
    ) -> Result<()> {
        let bytes = Zeroizing::new(record.serialize()?);
        self.vault
            .execute(
                "INSERT OR REPLACE INTO sessions (account, device, record) VALUES (?1, ?2, ?3)",
                params![address.name(), device(address), &bytes[..]],
            )
            .map_err(db("store_session"))?;
        Ok(())
    }
}

#[async_trait(?Send)]
impl PreKeyStore for SignalStore<'_> {
    async fn get_pre_key(&self, prekey_id: PreKeyId) -> Result<PreKeyRecord> {
        let row = self.blob(
            "SELECT record FROM prekeys WHERE id = ?1",
            [u32::from(prekey_id)],
            "get_pre_key",
        )?;
        let row = row.ok_or(SignalProtocolError::InvalidPreKeyId)?;
        PreKeyRecord::deserialize(&row)
    }

    async fn save_pre_key(&mut self, prekey_id: PreKeyId, record: &PreKeyRecord) -> Result<()> {
        let bytes = Zeroizing::new(record.serialize()?);
        self.vault
            .execute(
                "INSERT OR REPLACE INTO prekeys (id, record) VALUES (?1, ?2)",
                params![u32::from(prekey_id), &bytes[..]],
            )
            .map_err(db("save_pre_key"))?;
        Ok(())
    }

    async fn remove_pre_key(&mut self, prekey_id: PreKeyId) -> Result<()> {
        self.vault
            .execute("DELETE FROM prekeys WHERE id = ?1", [u32::from(prekey_id)])
            .map_err(db("remove_pre_key"))?;
        Ok(())
    }
}

#[async_trait(?Send)]
impl SignedPreKeyStore for SignalStore<'_> {
    async fn get_signed_pre_key(&self, id: SignedPreKeyId) -> Result<SignedPreKeyRecord> {
        let row = self.blob(
            "SELECT record FROM signed_prekeys WHERE id = ?1",
            [u32::from(id)],
            "get_signed_pre_key",
        )?;
        let row = row.ok_or(SignalProtocolError::InvalidSignedPreKeyId)?;
        SignedPreKeyRecord::deserialize(&row)
    }

    async fn save_signed_pre_key(
        &mut self,
        id: SignedPreKeyId,
        record: &SignedPreKeyRecord,
    ) -> Result<()> {
        let bytes = Zeroizing::new(record.serialize()?);
        self.vault
            .execute(
                "INSERT OR REPLACE INTO signed_prekeys (id, record, created) VALUES (?1, ?2, ?3)",
                params![u32::from(id), &bytes[..], now_ms()],
            )
            .map_err(db("save_signed_pre_key"))?;
        Ok(())
    }
}

#[async_trait(?Send)]
impl KyberPreKeyStore for SignalStore<'_> {
    async fn get_kyber_pre_key(&self, id: KyberPreKeyId) -> Result<KyberPreKeyRecord> {
        let row = self.blob(
            "SELECT record FROM kyber_prekeys WHERE id = ?1",
            [u32::from(id)],
            "get_kyber_pre_key",
        )?;
        let row = row.ok_or(SignalProtocolError::InvalidKyberPreKeyId)?;
        KyberPreKeyRecord::deserialize(&row)
    }

    async fn save_kyber_pre_key(
        &mut self,
        id: KyberPreKeyId,
        record: &KyberPreKeyRecord,
    ) -> Result<()> {
        let bytes = Zeroizing::new(record.serialize()?);
        self.vault
            .execute(
                "INSERT OR REPLACE INTO kyber_prekeys (id, record, created) VALUES (?1, ?2, ?3)",
                params![u32::from(id), &bytes[..], now_ms()],
            )
            .map_err(db("save_kyber_pre_key"))?;
        Ok(())
    }

    /// Tessera's Kyber prekeys are last-resort keys: kept, but a repeated (Kyber prekey, signed
    /// prekey, base key) combination is a replayed session start and is refused.
    async fn mark_kyber_pre_key_used(
        &mut self,
        id: KyberPreKeyId,
        ec_prekey_id: SignedPreKeyId,
        base_key: &PublicKey,
    ) -> Result<()> {
        let inserted = self
            .vault
            .conn
            .execute(
                "INSERT OR IGNORE INTO kyber_prekey_uses (kyber_id, signed_id, base_key)
                 VALUES (?1, ?2, ?3)",
                params![
                    u32::from(id),
                    u32::from(ec_prekey_id),
                    &base_key.serialize()[..]
                ],
            )
            .map_err(db("mark_kyber_pre_key_used"))?;
        if inserted == 0 {
            return Err(SignalProtocolError::InvalidMessage(
                tessera_crypto::signal::CiphertextMessageType::PreKey,
                "reused base key",
            ));
        }
        Ok(())
    }
}

#[async_trait(?Send)]
impl SenderKeyStore for SignalStore<'_> {
    async fn store_sender_key(
        &mut self,
        sender: &ProtocolAddress,
        distribution_id: uuid::Uuid,
        record: &SenderKeyRecord,
    ) -> Result<()> {
        let bytes = Zeroizing::new(record.serialize()?);
        self.vault
            .execute(
                "INSERT OR REPLACE INTO sender_keys (account, device, distribution, record)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    sender.name(),
                    device(sender),
                    &distribution_id.as_bytes()[..],
                    &bytes[..]
                ],
            )
            .map_err(db("store_sender_key"))?;
        Ok(())
    }

    async fn load_sender_key(
        &mut self,
        sender: &ProtocolAddress,
        distribution_id: uuid::Uuid,
    ) -> Result<Option<SenderKeyRecord>> {
        let row: Option<Vec<u8>> = self
            .vault
            .conn
            .query_row(
                "SELECT record FROM sender_keys WHERE account = ?1 AND device = ?2
                 AND distribution = ?3",
                params![
                    sender.name(),
                    device(sender),
                    &distribution_id.as_bytes()[..]
                ],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("load_sender_key"))?;
        row.map(|r| SenderKeyRecord::deserialize(&r)).transpose()
    }
}
