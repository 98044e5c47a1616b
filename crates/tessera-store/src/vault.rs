//! Creating, opening and re-keying the vault.

use std::path::{Path, PathBuf};

use rand::{CryptoRng, Rng};
use rusqlite::Connection;
use zeroize::Zeroizing;

use crate::keyfile::{CardBinding, CardFactor, Factors, KdfParams, KeyFile, Unwrapped};
use crate::secrets::{SecretStore, vault_entry};
use crate::{VaultError, schema};

/// The database file in the data directory.
pub const DATABASE_FILE: &str = "vault.sqlite3";
/// The key file in the data directory.
pub const KEY_FILE: &str = "vault.key";

/// An open vault: the decrypted database connection. Dropping it closes the database; the
/// database key lives only inside SQLCipher while it is open.
pub struct Vault {
    pub(crate) conn: Connection,
    vault_id: [u8; 16],
    dir: PathBuf,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
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

/// The device secret of the vault `file` belongs to, from the keyring.
/// The device secret from the keyring and the key file unwrapped with it and the given
/// factors (all of `KeyFile::unwrap_key`'s checks).
fn unwrap_with(
    file: &KeyFile,
    secrets: &dyn SecretStore,
    password: &[u8],
    card: Option<&CardFactor>,
) -> Result<(Zeroizing<[u8; 32]>, Unwrapped), VaultError> {
    let device_secret = device_secret(secrets, file)?;
    let unwrapped = file.unwrap_key(&Factors {
        password,
        device_secret: &device_secret,
        card,
    })?;
    Ok((device_secret, unwrapped))
}

fn device_secret(
    secrets: &dyn SecretStore,
    file: &KeyFile,
) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    secrets
        .get(&vault_entry(&file.vault_id))?
        .ok_or(VaultError::DeviceSecretMissing)
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
        let db_key = Zeroizing::new(rng.random::<[u8; 32]>());
        Self::create_from(dir, password, kdf, secrets, card, rng, db_key, None)
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
        let db_key = Zeroizing::new(*snapshot.key);
        Self::create_from(
            dir,
            password,
            kdf,
            secrets,
            card,
            rng,
            db_key,
            Some(&snapshot.database),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn create_from<R: Rng + CryptoRng>(
        dir: &Path,
        password: &[u8],
        kdf: KdfParams,
        secrets: &dyn SecretStore,
        card: Option<&CardFactor>,
        rng: &mut R,
        db_key: Zeroizing<[u8; 32]>,
        database: Option<&[u8]>,
    ) -> Result<Self, VaultError> {
        kdf.check()?;
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
        let vault_id: [u8; 16] = rng.random();
        let device_secret = Zeroizing::new(rng.random::<[u8; 32]>());
        let file = KeyFile::wrap(
            vault_id,
            kdf,
            &db_key,
            &Factors {
                password,
                device_secret: &device_secret,
                card,
            },
            rng,
        )?;
        secrets.put(&vault_entry(&vault_id), &device_secret)?;
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
        file.store(&key_path)?;
        Ok(Self {
            conn,
            vault_id,
            dir: dir.to_path_buf(),
        })
    }

    /// The card a vault in `dir` is bound to (`None`: no card factor).
    pub fn card_binding(dir: &Path) -> Result<Option<CardBinding>, VaultError> {
        Ok(KeyFile::load(&dir.join(KEY_FILE))?.card)
    }

    /// Reads the key file and the device secret, derives the key and opens the database. With
    /// the card factor, the card read's counter must be above the recorded one, and is recorded
    /// (the key file rewritten) before the database is opened.
    pub fn open<R: Rng + CryptoRng>(
        dir: &Path,
        password: &[u8],
        secrets: &dyn SecretStore,
        card: Option<&CardFactor>,
        rng: &mut R,
    ) -> Result<Self, VaultError> {
        let key_path = dir.join(KEY_FILE);
        let file = KeyFile::load(&key_path)?;
        let (_, unwrapped) = unwrap_with(&file, secrets, password, card)?;
        if let (Some(_), Some(read)) = (&file.card, card) {
            file.with_counter(&unwrapped, read.counter, rng)?
                .store(&key_path)?;
        }
        let db_key = unwrapped.db_key;
        let db_path = dir.join(DATABASE_FILE);
        if !db_path.exists() {
            return Err(VaultError::Corrupt);
        }
        let conn = open_database(&db_path, &db_key)?;
        schema::migrate(&conn)?;
        Ok(Self {
            conn,
            vault_id: file.vault_id,
            dir: dir.to_path_buf(),
        })
    }

    /// Reads every page of the database (SQLite's `quick_check`; SQLCipher authenticates each
    /// page as it is read): [`VaultError::Corrupt`] if any was changed or is missing.
    pub fn check_integrity(&self) -> Result<(), VaultError> {
        match self.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0)) {
            Ok(result) if result == "ok" => Ok(()),
            _ => Err(VaultError::Corrupt),
        }
    }

    /// Rewraps the database key under a new password (the database is not touched).
    pub fn change_password<R: Rng + CryptoRng>(
        dir: &Path,
        old: &[u8],
        new: &[u8],
        kdf: KdfParams,
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
                Ok((old, card, kdf, new, card))
            },
            rng,
        )
    }

    /// Adds the card factor to a vault that has none: unwraps with the password and device
    /// secret, rewraps with the card read as well (new salt and nonce, same database key and
    /// password). From then on the vault opens only with that card.
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
    /// rewraps with the new card's read (new salt and nonce; same database key and password).
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
/// own), then wraps the same database key to the new factors with a fresh salt and nonce and
/// replaces the file atomically. Nothing is written on any error.
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
    KeyFile::wrap(
        file.vault_id,
        kdf,
        &unwrapped.db_key,
        &Factors {
            password: new_password,
            device_secret: &device_secret,
            card: new_card,
        },
        rng,
    )?
    .store(&key_path)
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
