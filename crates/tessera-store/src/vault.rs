//! Creating, opening and re-keying the vault.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use rand::{CryptoRng, Rng};
use rusqlite::Connection;
use zeroize::Zeroizing;

use crate::keyfile::{CardBinding, CardFactor, Factors, KdfParams, KeyFile, Unwrap, Unwrapped};
use crate::secrets::{SecretStore, card_entry, vault_entry};
use crate::{VaultError, schema};

/// The database file in the data directory.
pub const DATABASE_FILE: &str = "vault.sqlite3";
/// The key file in the data directory.
pub const KEY_FILE: &str = "vault.key";
/// The key file a card secret rotation writes before the card changes, renamed over
/// [`KEY_FILE`] once the card holds the new secret (`docs/vault.md` §Card secret rotation).
pub const NEXT_KEY_FILE: &str = "vault.key.next";
/// The local entry holding what a vault made by a duress unlock starts its account from (the
/// decoy record), until the engine has made that account (`docs/duress.md`).
pub const PENDING_ACCOUNT: &str = "account.pending";

/// An open vault: the decrypted database connection. Dropping it closes the database; the
/// database key lives only inside SQLCipher while it is open.
pub struct Vault {
    pub(crate) conn: Connection,
    vault_id: [u8; 16],
    dir: PathBuf,
    /// Whether the key file has a duress password set (known after an unlock with the card).
    duress: Cell<bool>,
    /// The card secret rotation this unlock allows, until taken.
    rotation: Option<CardRotation>,
}

/// After an unlock with the card: what is needed to move the vault to a new card secret
/// (`docs/vault.md` §Card secret rotation), and what the card's counter said. Holds key
/// material (zeroized on drop); use it at once and drop it.
///
/// The caller makes a new secret, calls [`CardRotation::prepare`] (the key file for the new
/// secret is written beside the current one), writes the secret into
/// [`CardRotation::target_slot`] of the card, and then calls [`CardRotation::commit`]. Cut
/// short anywhere, the next unlock still opens: the card holds the old secret in the slot it
/// came from, and the new one (if the write finished) in the other, and the vault has a key
/// file for each until the commit.
pub struct CardRotation {
    dir: PathBuf,
    file: KeyFile,
    unwrapped: Unwrapped,
    device_secret: Zeroizing<[u8; 32]>,
    reads_elsewhere: u32,
}

impl std::fmt::Debug for CardRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardRotation")
            .field("card", &self.file.card)
            .field("target_slot", &self.target_slot())
            .field("reads_elsewhere", &self.reads_elsewhere)
            .finish_non_exhaustive()
    }
}

impl CardRotation {
    /// The card's UID.
    pub fn uid(&self) -> Option<[u8; 7]> {
        self.file.card.map(|c| c.uid)
    }

    /// The slot of the card's secret file the new secret goes into: the one that did not open
    /// the vault.
    pub fn target_slot(&self) -> usize {
        match self.unwrapped.card_slot() {
            Some(0) | None => 1,
            Some(_) => 0,
        }
    }

    /// How many times the card's SUN counter moved between the last unlock of this vault and
    /// this one besides this unlock's own read: reads by something else (a phone, another
    /// reader, someone copying the card). Zero when the card was read only here.
    pub fn reads_elsewhere(&self) -> u32 {
        self.reads_elsewhere
    }

    /// Writes the key file for `secret` beside the current one ([`NEXT_KEY_FILE`]), before the
    /// card changes.
    pub fn prepare<R: Rng + CryptoRng>(
        &self,
        secret: &[u8; 32],
        rng: &mut R,
    ) -> Result<(), VaultError> {
        self.file
            .for_card_secret(&self.unwrapped, &self.device_secret, secret, rng)?
            .store(&self.dir.join(NEXT_KEY_FILE))
    }

    /// The card's master key (to write the new secret with).
    pub fn card_key(&self) -> Option<&[u8; 32]> {
        self.unwrapped.card_key()
    }

    /// Once the card holds the new secret: the prepared key file replaces the current one
    /// (rename, then fsync of the directory). From then on only the new secret opens the vault.
    pub fn commit(self) -> Result<(), VaultError> {
        let io = |e: std::io::Error| VaultError::Io(e.kind());
        std::fs::rename(self.dir.join(NEXT_KEY_FILE), self.dir.join(KEY_FILE)).map_err(io)?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            d.sync_all().map_err(io)?;
        }
        Ok(())
    }
}

/// What [`Vault::unlock`] opened.
#[derive(Debug)]
pub enum Unlock {
    /// The account, with its password.
    Opened(Vault),
    /// The duress password was typed: the account was wiped (keys first) and this is a new,
    /// empty vault under the same password and card, holding nothing yet. `record` is the decoy
    /// record stored with the duress password (`docs/duress.md`).
    Duress {
        /// The new, empty vault.
        vault: Vault,
        /// The decoy record.
        record: Zeroizing<Vec<u8>>,
    },
}

impl Unlock {
    /// The vault, whichever it is.
    pub fn into_vault(self) -> Vault {
        match self {
            Self::Opened(v) | Self::Duress { vault: v, .. } => v,
        }
    }
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The first half of an unlock (`docs/card-key.md`): the key file read, the password stretched
/// (Argon2id) and, for a vault with the card factor, the card's master key opened with it — so
/// the card is read only by someone who knows the password. [`Opening::finish`] is the second
/// half, with the card read made with [`Opening::card_key`]. Holds key material (zeroized on
/// drop).
pub struct Opening {
    dir: PathBuf,
    file: KeyFile,
    device_secret: Zeroizing<[u8; 32]>,
    stretched: Zeroizing<[u8; 32]>,
    card_key: Option<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opening")
            .field("card", &self.file.card)
            .finish_non_exhaustive()
    }
}

impl Opening {
    /// The card the vault is bound to (`None`: no card factor).
    pub fn card(&self) -> Option<CardBinding> {
        self.file.card
    }

    /// The card's master key from the key file. `None` without the card factor, or for a key
    /// file from before the key moved into it (version 2), whose card key is still in the OS
    /// keyring (`card-<uid>`, [`card_entry`]); the unlock moves it into the key file and removes
    /// the keyring entry.
    pub fn card_key(&self) -> Option<&[u8; 32]> {
        self.card_key.as_deref()
    }

    /// Finishes the unlock with `card`, the card read made with the card's key (see
    /// [`Vault::unlock`] for everything it checks and does). `password` must be the one the
    /// opening was made with.
    pub fn finish<R: Rng + CryptoRng>(
        self,
        password: &[u8],
        secrets: &dyn SecretStore,
        card: Option<&CardFactor>,
        rng: &mut R,
    ) -> Result<Unlock, VaultError> {
        Vault::finish_unlock(self, password, secrets, card, rng)
    }
}

fn hex(bytes: &[u8]) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    for b in bytes {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// Connection settings. The 32 MiB page cache keeps decrypted pages in memory while the vault is
/// open, so reads do not pay SQLCipher's page decryption again (the plaintext is in this
/// process's memory while unlocked either way; it is freed when the vault closes).
// secure_delete: rows of deleted keys are overwritten in the database pages, not left in
// free pages (docs/keys.md, "Deletion").
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                       PRAGMA foreign_keys = ON; PRAGMA cache_size = -32768; \
                       PRAGMA secure_delete = ON;";

/// Opens the SQLCipher database with a raw key and checks that it reads.
pub(crate) fn open_database(path: &Path, key: &[u8; 32]) -> Result<Connection, VaultError> {
    let conn = Connection::open(path).map_err(|e| VaultError::Database(e.to_string()))?;
    // SQLCipher's own log goes to standard error; failures reach the caller as typed errors.
    let _ = conn.execute_batch("PRAGMA cipher_log_level = NONE;");
    // SQLCipher's memory security: every allocation it hands out is locked against swapping
    // where the OS allows and wiped when freed, so decrypted pages and key material do not
    // linger in freed memory. Set before the key; once on it stays on for the process.
    conn.execute_batch("PRAGMA cipher_memory_security = ON;")
        .map_err(|e| VaultError::Database(e.to_string()))?;
    let key_hex = hex(key);
    let pragma = Zeroizing::new(format!("PRAGMA key = \"x'{}'\";", key_hex.as_str()));
    conn.execute_batch(&pragma)
        .map_err(|e| VaultError::Database(e.to_string()))?;
    // The key was proven by the key file's AEAD, so a failure to read now means the file itself
    // is damaged or was tampered with (SQLCipher checks an HMAC on every page).
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|_| VaultError::Corrupt)?;
    conn.execute_batch(PRAGMAS)
        .map_err(|_| VaultError::Corrupt)?;
    // Every statement the vault runs goes through the statement cache (`Vault::execute`,
    // `Vault::query_row`); this holds all of the fixed ones.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// The device secret from the keyring and the key file unwrapped with it and the given
/// factors (all of `KeyFile::unwrap_key`'s checks).
fn unwrap_any(
    file: &KeyFile,
    secrets: &dyn SecretStore,
    password: &[u8],
    card: Option<&CardFactor>,
) -> Result<(Zeroizing<[u8; 32]>, Unwrap), VaultError> {
    let device_secret = device_secret(secrets, file)?;
    let unwrapped = file.unwrap_key(&Factors {
        password,
        device_secret: &device_secret,
        card,
    })?;
    Ok((device_secret, unwrapped))
}

/// As [`unwrap_any`] where only the account's password will do: everything but unlocking
/// (changing the password or the card, checking factors) treats the duress password as a
/// wrong password and wipes nothing.
fn unwrap_with(
    file: &KeyFile,
    secrets: &dyn SecretStore,
    password: &[u8],
    card: Option<&CardFactor>,
) -> Result<(Zeroizing<[u8; 32]>, Unwrapped), VaultError> {
    match unwrap_any(file, secrets, password, card)? {
        (device_secret, Unwrap::Account(u)) => Ok((device_secret, *u)),
        (_, Unwrap::Duress { .. }) => Err(VaultError::WrongFactor),
    }
}

fn device_secret(
    secrets: &dyn SecretStore,
    file: &KeyFile,
) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    secrets
        .get(&vault_entry(&file.vault_id))?
        .ok_or(VaultError::DeviceSecretMissing)
}

/// Cover work (`docs/duress.md`): a duress unlock makes a new database while the person
/// waits, so every other unlock makes one too — in memory, under a random key, thrown away —
/// and the two take about the same time. Failures do not matter here.
fn cover_for_duress<R: Rng + CryptoRng>(rng: &mut R) {
    let Ok(conn) = Connection::open_in_memory() else {
        return;
    };
    let _ =
        conn.execute_batch("PRAGMA cipher_log_level = NONE; PRAGMA cipher_memory_security = ON;");
    let key = hex(&rng.random::<[u8; 32]>());
    let pragma = Zeroizing::new(format!("PRAGMA key = \"x'{}'\";", key.as_str()));
    let _ = conn.execute_batch(&pragma);
    let _ = schema::migrate(&conn);
}

/// The key file maker for [`Vault::create_from`]: the database key wrapped to `password`
/// (Argon2id at `kdf`, a new salt), the new device secret and `card`.
fn wrap_to<'a, R: Rng + CryptoRng>(
    password: &'a [u8],
    kdf: KdfParams,
    card: Option<&'a CardFactor>,
) -> impl FnOnce([u8; 16], &[u8; 32], &[u8; 32], &mut R) -> Result<KeyFile, VaultError> + 'a {
    move |id, device_secret, key, rng| {
        KeyFile::wrap(
            id,
            kdf,
            key,
            &Factors {
                password,
                device_secret,
                card,
            },
            rng,
        )
    }
}

/// Prepared statements kept per connection (the vault has about a hundred fixed ones).
const STATEMENT_CACHE: usize = 128;

impl Vault {
    /// Runs one statement, prepared once per connection and kept in the statement cache.
    pub(crate) fn execute<P: rusqlite::Params>(&self, sql: &str, p: P) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(p)
    }

    /// One row of a query, through the statement cache like [`Vault::execute`].
    pub(crate) fn query_row<T, P, F>(&self, sql: &str, p: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.conn.prepare_cached(sql)?.query_row(p, f)
    }

    /// Creates a vault in `dir` (created with mode 0700 if needed): a fresh database key, a
    /// device secret put into `secrets`, and the key file written last. Refuses to overwrite an
    /// existing vault.
    pub fn create<R: Rng + CryptoRng>(
        dir: &Path,
        password: &[u8],
        kdf: KdfParams,
        secrets: &dyn SecretStore,
        card: Option<&CardFactor>,
        rng: &mut R,
    ) -> Result<Self, VaultError> {
        kdf.check()?;
        let db_key = Zeroizing::new(rng.random::<[u8; 32]>());
        Self::create_from(
            dir,
            secrets,
            rng,
            db_key,
            None,
            None,
            None,
            wrap_to(password, kdf, card),
        )
    }

    /// Restores a vault from a backup's snapshot into `dir` (which must not hold a vault): the
    /// snapshot's database is written as it is (encrypted under its own key), and that key is
    /// wrapped to this machine's factors: a new password, a new device secret in `secrets`, and
    /// the new card (`docs/backup.md`). Migrations run if the snapshot's schema is older.
    pub fn restore<R: Rng + CryptoRng>(
        dir: &Path,
        snapshot: &crate::backup::Snapshot,
        password: &[u8],
        kdf: KdfParams,
        secrets: &dyn SecretStore,
        card: Option<&CardFactor>,
        rng: &mut R,
    ) -> Result<Self, VaultError> {
        if snapshot.schema > schema::SCHEMA_VERSION {
            return Err(VaultError::NewerVersion);
        }
        kdf.check()?;
        let db_key = Zeroizing::new(*snapshot.key);
        Self::create_from(
            dir,
            secrets,
            rng,
            db_key,
            Some(&snapshot.database),
            None,
            None,
            wrap_to(password, kdf, card),
        )
    }

    /// Makes a vault in `dir`: a new vault id and device secret (put into `secrets`; or
    /// `identity`'s, already in the keyring after a duress unlock's wipe), the
    /// database (`database`'s bytes, or a new one) under `db_key`, and the key file `wrap`
    /// makes, written last. `pending` (a duress unlock's decoy record) is stored as
    /// [`PENDING_ACCOUNT`] before the key file exists, so the vault never exists without it.
    #[allow(clippy::too_many_arguments)]
    fn create_from<R: Rng + CryptoRng>(
        dir: &Path,
        secrets: &dyn SecretStore,
        rng: &mut R,
        db_key: Zeroizing<[u8; 32]>,
        database: Option<&[u8]>,
        pending: Option<&[u8]>,
        identity: Option<([u8; 16], Zeroizing<[u8; 32]>)>,
        wrap: impl FnOnce([u8; 16], &[u8; 32], &[u8; 32], &mut R) -> Result<KeyFile, VaultError>,
    ) -> Result<Self, VaultError> {
        let io = |e: std::io::Error| VaultError::Io(e.kind());
        let key_path = dir.join(KEY_FILE);
        if key_path.exists() {
            return Err(VaultError::AlreadyExists);
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        // A database without a key file is what an interrupted create leaves: unreadable by
        // anyone, safe to replace.
        let db_path = dir.join(DATABASE_FILE);
        for leftover in [
            db_path.clone(),
            db_path.with_extension("sqlite3-wal"),
            db_path.with_extension("sqlite3-shm"),
        ] {
            if leftover.exists() {
                std::fs::remove_file(&leftover).map_err(io)?;
            }
        }
        let (vault_id, device_secret) = match identity {
            Some((id, secret)) => (id, secret),
            None => {
                let id: [u8; 16] = rng.random();
                let secret = Zeroizing::new(rng.random::<[u8; 32]>());
                secrets.put(&vault_entry(&id), &secret)?;
                (id, secret)
            }
        };
        let file = wrap(vault_id, &device_secret, &db_key, rng)?;
        if let Some(bytes) = database {
            crate::backup::write_private(&db_path, bytes).map_err(io)?;
        }
        let conn = match open_database(&db_path, &db_key) {
            Ok(c) => c,
            Err(e) => {
                let _ = secrets.delete(&vault_entry(&vault_id));
                let _ = std::fs::remove_file(&db_path);
                return Err(e);
            }
        };
        schema::migrate(&conn)?;
        let vault = Self {
            conn,
            vault_id,
            dir: dir.to_path_buf(),
            duress: Cell::new(false),
            rotation: None,
        };
        if let Some(record) = pending {
            vault.set_local(PENDING_ACCOUNT, record)?;
        }
        file.store(&key_path)?;
        forget_card_key(secrets, &file)?;
        Ok(vault)
    }

    /// The card a vault in `dir` is bound to (`None`: no card factor).
    pub fn card_binding(dir: &Path) -> Result<Option<CardBinding>, VaultError> {
        Ok(KeyFile::load(&dir.join(KEY_FILE))?.card)
    }

    /// Opens the vault in `dir` like [`Vault::unlock`], returning whichever vault that opened
    /// (after a duress password, the new empty one).
    pub fn open<R: Rng + CryptoRng>(
        dir: &Path,
        password: &[u8],
        secrets: &dyn SecretStore,
        card: Option<&CardFactor>,
        rng: &mut R,
    ) -> Result<Self, VaultError> {
        Self::unlock(dir, password, secrets, card, rng).map(Unlock::into_vault)
    }

    /// Reads the key file and the device secret, derives the key and opens the database. With
    /// the card factor, the card read's counter must be above the recorded one, and is recorded
    /// (the key file rewritten) before the database is opened; either slot of the card's secret
    /// file may hold the secret, and a [`NEXT_KEY_FILE`] left by a rotation cut short after the
    /// card changed is used (and made the key file) when the current one does not open. The
    /// rotation this unlock allows is then [`Vault::take_card_rotation`]. A version 1 key file
    /// is rewritten as version 2.
    ///
    /// The duress password (`docs/duress.md`) destroys the account as a panic wipe does — the
    /// device secret (replaced by the new vault's, under the same entry name) and the key file
    /// first, then the files; the card's keys stay — and makes a new, empty vault in `dir` with
    /// the same vault id, under the same password, card and Argon2id salt (no second key
    /// derivation), returned as [`Unlock::Duress`].
    pub fn unlock<R: Rng + CryptoRng>(
        dir: &Path,
        password: &[u8],
        secrets: &dyn SecretStore,
        card: Option<&CardFactor>,
        rng: &mut R,
    ) -> Result<Unlock, VaultError> {
        // The card read's UID and counter are checked before any key derivation.
        let file = KeyFile::load(&dir.join(KEY_FILE))?;
        file.check_card_read(card)?;
        Self::begin_with(dir, file, password, secrets)?.finish(password, secrets, card, rng)
    }

    /// The first half of [`Vault::unlock`], before the card is read: see [`Opening`]. With the
    /// card factor, a wrong password (or device secret) is [`VaultError::WrongFactor`] here.
    pub fn begin_unlock(
        dir: &Path,
        password: &[u8],
        secrets: &dyn SecretStore,
    ) -> Result<Opening, VaultError> {
        Self::begin_with(dir, KeyFile::load(&dir.join(KEY_FILE))?, password, secrets)
    }

    /// [`Vault::begin_unlock`] with the key file already read.
    fn begin_with(
        dir: &Path,
        file: KeyFile,
        password: &[u8],
        secrets: &dyn SecretStore,
    ) -> Result<Opening, VaultError> {
        let device_secret = device_secret(secrets, &file)?;
        let stretched = file.stretch(password)?;
        let card_key = file.open_card_key(&stretched, &device_secret)?;
        Ok(Opening {
            dir: dir.to_path_buf(),
            file,
            device_secret,
            stretched,
            card_key,
        })
    }

    fn finish_unlock<R: Rng + CryptoRng>(
        opening: Opening,
        password: &[u8],
        secrets: &dyn SecretStore,
        card: Option<&CardFactor>,
        rng: &mut R,
    ) -> Result<Unlock, VaultError> {
        // A vault from before the key moved into the key file (its card read with the
        // keyring's key): the keyring's copy goes once the file holds it (below).
        let migrating = opening.file.card.is_some() && opening.card_key.is_none();
        let Opening {
            dir,
            mut file,
            device_secret,
            stretched,
            card_key: _,
        } = opening;
        let dir = dir.as_path();
        let key_path = dir.join(KEY_FILE);
        let next_path = dir.join(NEXT_KEY_FILE);
        let factors = Factors {
            password,
            device_secret: &device_secret,
            card,
        };
        file.check_card(&factors)?;
        let mut opened = file.unwrap_stretched(&stretched, &factors);
        if matches!(opened, Err(VaultError::WrongFactor))
            && file.card.is_some()
            && let Ok(next) = KeyFile::load(&next_path)
            && next.vault_id == file.vault_id
            && next.kdf == file.kdf
            && next.salt() == file.salt()
            && next.check_card(&factors).is_ok()
            && let Ok(u) = next.unwrap_stretched(&stretched, &factors)
        {
            // A rotation cut short after the card took the new secret: finish it.
            next.store(&key_path)?;
            file = next;
            opened = Ok(u);
        }
        let opened = opened?;
        // What is left of a rotation cut short before the card changed (or before the commit).
        if next_path.exists() {
            std::fs::remove_file(&next_path).map_err(|e| VaultError::Io(e.kind()))?;
        }
        let reads_elsewhere = match (&file.card, card) {
            (Some(bound), Some(read)) => {
                read.counter.saturating_sub(bound.counter).saturating_sub(1)
            }
            _ => 0,
        };
        let unwrapped = match opened {
            Unwrap::Account(u) => u,
            Unwrap::Duress {
                record,
                stretched,
                card_slot: _,
            } => {
                // The new vault keeps the vault id (so the keyring entry's name): its device
                // secret replaces the old one before anything else happens.
                let device_secret = Zeroizing::new(rng.random::<[u8; 32]>());
                let report = crate::wipe::wipe_for_duress(dir, secrets, &device_secret);
                let replaced = !report
                    .problems
                    .iter()
                    .any(|p| matches!(p, crate::wipe::WipeProblem::Keyring { .. }));
                let identity = replaced.then(|| (file.vault_id, device_secret.clone()));
                let db_key = Zeroizing::new(rng.random::<[u8; 32]>());
                let (kdf, salt) = (file.kdf, file.salt());
                let kept_key = db_key.clone();
                let mut vault = Self::create_from(
                    dir,
                    secrets,
                    rng,
                    db_key,
                    None,
                    Some(&record),
                    identity,
                    |id, device_secret, key, rng| {
                        KeyFile::wrap_stretched(
                            id,
                            kdf,
                            salt,
                            &stretched,
                            &Factors {
                                password,
                                device_secret,
                                card,
                            },
                            key,
                            rng,
                        )
                    },
                )?;
                // The new vault's card is rotated as any other's (same work, same card writes).
                if replaced
                    && card.is_some()
                    && let Ok(new_file) = KeyFile::load(&key_path)
                {
                    let unwrapped =
                        Unwrapped::for_new_vault(kept_key, &stretched, &device_secret, card, rng);
                    vault.rotation = Some(CardRotation {
                        dir: dir.to_path_buf(),
                        file: new_file,
                        unwrapped,
                        device_secret,
                        reads_elsewhere,
                    });
                }
                return Ok(Unlock::Duress { vault, record });
            }
        };
        let rewritten = match (&file.card, card) {
            (Some(_), Some(read)) => Some(file.with_counter(&unwrapped, read.counter, rng)?),
            _ => file.upgraded(&unwrapped, rng)?,
        };
        if let Some(next) = rewritten {
            next.store(&key_path)?;
            file = next;
        }
        if migrating {
            forget_card_key(secrets, &file)?;
        }
        let duress = unwrapped.duress_configured();
        let db_path = dir.join(DATABASE_FILE);
        if !db_path.exists() {
            return Err(VaultError::Corrupt);
        }
        let conn = open_database(&db_path, &unwrapped.db_key)?;
        schema::migrate(&conn)?;
        cover_for_duress(rng);
        let rotation = file.card.is_some().then(|| CardRotation {
            dir: dir.to_path_buf(),
            file: file.clone(),
            unwrapped: *unwrapped,
            device_secret,
            reads_elsewhere,
        });
        Ok(Unlock::Opened(Self {
            conn,
            vault_id: file.vault_id,
            dir: dir.to_path_buf(),
            duress: Cell::new(duress),
            rotation,
        }))
    }

    /// The card secret rotation this unlock allows (`None` without the card factor, or once
    /// taken). See [`CardRotation`].
    pub fn take_card_rotation(&mut self) -> Option<CardRotation> {
        self.rotation.take()
    }

    /// Whether a duress password is set (as of this unlock, or as changed since through
    /// [`Vault::set_duress`] with this vault's [`Vault::note_duress`]).
    pub fn duress_configured(&self) -> bool {
        self.duress.get()
    }

    /// Records that the duress password was set or cleared while this vault is open.
    pub fn note_duress(&self, configured: bool) {
        self.duress.set(configured);
    }

    /// Sets (`Some((duress password, decoy record))`) or clears the duress password of the vault
    /// in `dir` (`docs/duress.md`): checks the account's password and a fresh card read, then
    /// rewrites the key file — slot A with the duress password's Argon2id output, slot B with
    /// the decoy record sealed under the duress password's key. The key file's size and layout
    /// are the same either way. Refuses a duress password equal to the account's password.
    pub fn set_duress<R: Rng + CryptoRng>(
        dir: &Path,
        password: &[u8],
        secrets: &dyn SecretStore,
        card: Option<&CardFactor>,
        duress: Option<(&[u8], &[u8])>,
        rng: &mut R,
    ) -> Result<(), VaultError> {
        let key_path = dir.join(KEY_FILE);
        let file = KeyFile::load(&key_path)?;
        let card = if file.card.is_some() { card } else { None };
        let (device_secret, unwrapped) = unwrap_with(&file, secrets, password, card)?;
        file.with_duress(&unwrapped, &device_secret, card, duress, rng)?
            .store(&key_path)
    }

    /// Reads every page of the database (SQLite's `quick_check`; SQLCipher authenticates each
    /// page as it is read): [`VaultError::Corrupt`] if any was changed or is missing.
    pub fn check_integrity(&self) -> Result<(), VaultError> {
        match self.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0)) {
            Ok(result) if result == "ok" => Ok(()),
            _ => Err(VaultError::Corrupt),
        }
    }

    /// Rewraps the database key under a new password (the database is not touched). `kdf`
    /// `None` keeps the Argon2id cost (and the salt, and so a duress password); another cost
    /// means a new salt, which drops the duress password.
    pub fn change_password<R: Rng + CryptoRng>(
        dir: &Path,
        old: &[u8],
        new: &[u8],
        kdf: Option<KdfParams>,
        secrets: &dyn SecretStore,
        card: Option<&CardFactor>,
        rng: &mut R,
    ) -> Result<(), VaultError> {
        rewrap(
            dir,
            secrets,
            |file| {
                // A vault without the card factor keeps none (a card read given anyway is unused).
                let card = if file.card.is_some() { card } else { None };
                Ok((old, card, kdf.unwrap_or(file.kdf), new, card))
            },
            rng,
        )
    }

    /// Adds the card factor to a vault that has none: unwraps with the password and device
    /// secret, rewraps with the card read as well (new nonces; same salt, database key, password
    /// and duress password). From then on the vault opens only with that card.
    pub fn enroll_card<R: Rng + CryptoRng>(
        dir: &Path,
        password: &[u8],
        secrets: &dyn SecretStore,
        card: &CardFactor,
        rng: &mut R,
    ) -> Result<(), VaultError> {
        rewrap(
            dir,
            secrets,
            |file| {
                if file.card.is_some() {
                    return Err(VaultError::CardAlreadyEnrolled);
                }
                Ok((password, None, file.kdf, password, Some(card)))
            },
            rng,
        )
    }

    /// Checks the factors without opening anything or recording the card counter (the same
    /// checks as [`Vault::open`], including the KDF). Used before a card replacement changes
    /// anything.
    pub fn check_factors(
        dir: &Path,
        password: &[u8],
        secrets: &dyn SecretStore,
        card: Option<&CardFactor>,
    ) -> Result<(), VaultError> {
        let file = KeyFile::load(&dir.join(KEY_FILE))?;
        unwrap_with(&file, secrets, password, card).map(drop)
    }

    /// Moves the card factor to another card: unwraps with the password, the device secret and
    /// a fresh read of the enrolled card (UID and a rising counter checked as at unlock), then
    /// rewraps with the new card's read (new nonces; same salt, database key, password and
    /// duress password).
    /// From then on only the new card opens the vault. The new card must be another card.
    pub fn replace_card<R: Rng + CryptoRng>(
        dir: &Path,
        password: &[u8],
        secrets: &dyn SecretStore,
        old: &CardFactor,
        new: &CardFactor,
        rng: &mut R,
    ) -> Result<(), VaultError> {
        rewrap(
            dir,
            secrets,
            |file| {
                if file.card.is_none() {
                    return Err(VaultError::NoCardEnrolled);
                }
                if new.uid == old.uid {
                    return Err(VaultError::SameCard);
                }
                Ok((password, Some(old), file.kdf, password, Some(new)))
            },
            rng,
        )
    }

    /// An **unencrypted** database with the vault's schema, for measuring SQLCipher's overhead
    /// against plain SQLite on the same workload. Only built with the `bench-plain` feature,
    /// which the client never enables.
    #[cfg(feature = "bench-plain")]
    pub fn plain_for_benchmark(path: &Path) -> Result<Self, VaultError> {
        let conn = Connection::open(path).map_err(|e| VaultError::Database(e.to_string()))?;
        conn.execute_batch(PRAGMAS)?;
        schema::migrate(&conn)?;
        Ok(Self {
            conn,
            vault_id: [0; 16],
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            duress: Cell::new(false),
            rotation: None,
        })
    }

    /// Whether `dir` holds a vault (its key file).
    pub fn exists(dir: &Path) -> bool {
        dir.join(KEY_FILE).is_file()
    }

    /// The vault's id (names its keyring entry).
    pub fn vault_id(&self) -> [u8; 16] {
        self.vault_id
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `f` in one transaction: everything it does through this vault (libsignal stores
    /// included) is committed together if it returns `Ok`, and undone otherwise. Nested calls
    /// become savepoints of the outer transaction.
    pub fn transaction<T, E: From<VaultError>>(
        &self,
        f: impl FnOnce(&Vault) -> Result<T, E>,
    ) -> Result<T, E> {
        let sql = |s: &str| {
            self.conn
                .execute_batch(s)
                .map_err(|e| E::from(VaultError::from(e)))
        };
        let outer = self.conn.is_autocommit();
        let (begin, commit, rollback) = if outer {
            ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
        } else {
            (
                "SAVEPOINT nested",
                "RELEASE nested",
                "ROLLBACK TO nested; RELEASE nested",
            )
        };
        sql(begin)?;
        match f(self) {
            Ok(v) => {
                sql(commit)?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch(rollback);
                Err(e)
            }
        }
    }
}

/// What a rewrap unwraps with and wraps to: (old password, old card read, new KDF cost, new
/// password, new card read).
type Rewrap<'a> = (
    &'a [u8],
    Option<&'a CardFactor>,
    KdfParams,
    &'a [u8],
    Option<&'a CardFactor>,
);

/// Unwraps the key file in `dir` with the old factors `plan` chooses (after any refusal of its
/// own), then wraps the same database key to the new factors with fresh nonces
/// ([`KeyFile::rewrapped`]: the salt and a duress password are kept unless the Argon2id cost
/// changes) and replaces the file atomically. Nothing is written on any error.
fn rewrap<'a, R: Rng + CryptoRng>(
    dir: &Path,
    secrets: &dyn SecretStore,
    plan: impl FnOnce(&KeyFile) -> Result<Rewrap<'a>, VaultError>,
    rng: &mut R,
) -> Result<(), VaultError> {
    let key_path = dir.join(KEY_FILE);
    let file = KeyFile::load(&key_path)?;
    let (old_password, old_card, kdf, new_password, new_card) = plan(&file)?;
    let (device_secret, unwrapped) = unwrap_with(&file, secrets, old_password, old_card)?;
    let next = file.rewrapped(&unwrapped, &device_secret, new_password, kdf, new_card, rng)?;
    next.store(&key_path)?;
    forget_card_key(secrets, &next)
}

/// Once a key file holding the card's key is written: the keyring's copy (left by
/// provisioning, or by a vault from before, `docs/card-key.md`) is removed.
fn forget_card_key(secrets: &dyn SecretStore, file: &KeyFile) -> Result<(), VaultError> {
    match &file.card {
        Some(bound) => secrets.delete(&card_entry(&bound.uid)),
        None => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    /// Review finding: SQLCipher's memory security was off, leaving freed pages and keys in the
    /// heap. It must be on for every vault connection.
    #[test]
    fn sqlcipher_memory_security_is_on() {
        let (_dir, v) = crate::test_vault();
        let on: String = v
            .conn
            .query_row("PRAGMA cipher_memory_security", [], |r| r.get(0))
            .unwrap();
        assert_eq!(on, "1");
    }
}
