//! Encrypted backups (`docs/backup.md`): the recovery key, the backup file (Argon2id, then
//! XChaCha20-Poly1305 over 64 KiB chunks), a snapshot of the vault and restoring one.
//!
//! No plaintext touches the disk on either side: the snapshot is a SQLCipher copy of the
//! database under a fresh random key (`sqlcipher_export`), and that key travels only inside
//! the backup's encrypted payload. A restore writes the encrypted copy back and wraps its key
//! to the new machine's factors.

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{CryptoRng, Rng};
use zeroize::Zeroizing;

use crate::KdfParams;

/// The first bytes of every backup file.
pub const BACKUP_MAGIC: &[u8; 4] = b"TSBK";
const VERSION: u8 = 1;
/// Plaintext bytes per chunk (the last chunk may be shorter, or empty).
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const NONCE_PREFIX: usize = 19;
/// Header: magic, version, Argon2id memory/passes/lanes, salt, nonce prefix, creation time.
pub const HEADER_LEN: usize = 4 + 1 + 12 + 16 + NONCE_PREFIX + 8;
const KEY_CONTEXT: &str = "tessera v1 backup key";
/// Characters of a recovery key: Crockford's base32 (no I, L, O, U), 5 bits each.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Length of a recovery key: 30 characters, 150 bits.
pub const RECOVERY_KEY_CHARS: usize = 30;
/// Argon2id cost for a backup key. The recovery key's 150 random bits carry the strength;
/// Argon2id makes each guess cost memory besides (`docs/backup.md`).
pub const BACKUP_KDF: KdfParams = KdfParams {
    memory_kib: 64 * 1024,
    passes: 3,
    lanes: 1,
};
/// The largest payload a backup holds (the whole vault is kept in memory while it is written
/// or read).
pub const MAX_PAYLOAD: usize = 4 << 30;

/// Why a backup could not be made or read. No variant carries a key or user data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackupError {
    /// The file does not start like a Tessera backup.
    #[error("this file is not a Tessera backup")]
    NotABackup,
    /// A later version of Tessera wrote it.
    #[error("this backup is from a newer version of Tessera")]
    NewerVersion,
    /// The recovery key is not 30 characters of its alphabet.
    #[error("a recovery key is 30 letters and digits (spaces and dashes are ignored)")]
    BadRecoveryKey,
    /// The first chunk does not open: the recovery key is not this backup's, or its header
    /// was changed.
    #[error("wrong recovery key for this backup (or its header was changed)")]
    WrongKey,
    /// A later chunk does not open, or chunks are missing, reordered or were appended.
    #[error("the backup is damaged or incomplete")]
    Damaged,
    /// The backup's key derivation parameters are out of range.
    #[error("the backup's key derivation parameters are out of range")]
    BadParameters,
    /// The vault is too large for one backup file.
    #[error("the vault is too large for a backup")]
    TooLarge,
}

/// A recovery key: 30 characters of Crockford's base32 (150 random bits), shown once when it
/// is made. Zeroized on drop.
pub struct RecoveryKey(Zeroizing<String>);

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryKey(..)")
    }
}

impl RecoveryKey {
    /// A fresh random key.
    pub fn generate<R: Rng + CryptoRng>(rng: &mut R) -> Self {
        let mut s = Zeroizing::new(String::with_capacity(RECOVERY_KEY_CHARS));
        for _ in 0..RECOVERY_KEY_CHARS {
            s.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
        }
        Self(s)
    }

    /// Reads a key as a person types it: case does not matter, spaces and dashes are ignored,
    /// and the letters Crockford's base32 reads as digits (O as 0, I and L as 1) are accepted.
    pub fn parse(text: &str) -> Result<Self, BackupError> {
        let mut s = Zeroizing::new(String::with_capacity(RECOVERY_KEY_CHARS));
        for c in text.chars() {
            let c = match c.to_ascii_uppercase() {
                ' ' | '-' | '\t' | '\n' | '\r' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
                _ => return Err(BackupError::BadRecoveryKey),
            };
            if s.len() == RECOVERY_KEY_CHARS {
                return Err(BackupError::BadRecoveryKey);
            }
            s.push(c);
        }
        if s.len() != RECOVERY_KEY_CHARS {
            return Err(BackupError::BadRecoveryKey);
        }
        Ok(Self(s))
    }

    /// The key in six groups of five, as it is shown and written down.
    pub fn grouped(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(RECOVERY_KEY_CHARS + 5));
        for (i, c) in self.0.chars().enumerate() {
            if i > 0 && i % 5 == 0 {
                out.push('-');
            }
            out.push(c);
        }
        out
    }
}

/// The key that encrypts backups, derived from a recovery key with Argon2id. The vault keeps
/// it (local `backup.key`) so that later and scheduled backups use the same recovery key
/// without asking for it.
pub struct BackupKey {
    salt: [u8; 16],
    kdf: KdfParams,
    key: Zeroizing<[u8; 32]>,
}

/// Length of [`BackupKey::to_bytes`].
const BACKUP_KEY_LEN: usize = 16 + 12 + 32;

impl BackupKey {
    /// Derives the key for `recovery` with a fresh salt and [`BACKUP_KDF`].
    pub fn new<R: Rng + CryptoRng>(
        recovery: &RecoveryKey,
        rng: &mut R,
    ) -> Result<Self, BackupError> {
        Self::derive(recovery, rng.random(), BACKUP_KDF)
    }

    /// Derives the key for `recovery` with the given salt and cost (those of a backup's header).
    pub fn derive(
        recovery: &RecoveryKey,
        salt: [u8; 16],
        kdf: KdfParams,
    ) -> Result<Self, BackupError> {
        if kdf.check().is_err() {
            return Err(BackupError::BadParameters);
        }
        let params = Params::new(kdf.memory_kib, kdf.passes, kdf.lanes, Some(32))
            .map_err(|_| BackupError::BadParameters)?;
        let mut stretched = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(recovery.0.as_bytes(), &salt, &mut stretched[..])
            .map_err(|_| BackupError::BadParameters)?;
        let key = Zeroizing::new(blake3::derive_key(KEY_CONTEXT, &stretched[..]));
        Ok(Self { salt, kdf, key })
    }

    /// The form the vault keeps: salt, cost, key.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(BACKUP_KEY_LEN));
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.kdf.memory_kib.to_be_bytes());
        out.extend_from_slice(&self.kdf.passes.to_be_bytes());
        out.extend_from_slice(&self.kdf.lanes.to_be_bytes());
        out.extend_from_slice(&self.key[..]);
        out
    }

    /// Reads what [`BackupKey::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BackupError> {
        if bytes.len() != BACKUP_KEY_LEN {
            return Err(BackupError::BadParameters);
        }
        let (salt, rest) = bytes.split_at(16);
        let (kdf, key) = rest.split_at(12);
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(key);
        Ok(Self {
            salt: salt.try_into().map_err(|_| BackupError::BadParameters)?,
            kdf: read_kdf(kdf)?,
            key: k,
        })
    }
}

fn be32(b: &[u8]) -> Result<u32, BackupError> {
    Ok(u32::from_be_bytes(
        b.try_into().map_err(|_| BackupError::NotABackup)?,
    ))
}

fn read_kdf(b: &[u8]) -> Result<KdfParams, BackupError> {
    Ok(KdfParams {
        memory_kib: be32(&b[0..4])?,
        passes: be32(&b[4..8])?,
        lanes: be32(&b[8..12])?,
    })
}

/// What a backup's header says (readable without the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupHeader {
    /// Argon2id cost of the key.
    pub kdf: KdfParams,
    /// Argon2id salt.
    pub salt: [u8; 16],
    /// When the backup was made (ms since the Unix epoch; as the making device's clock said).
    pub created_ms: u64,
    nonce_prefix: [u8; NONCE_PREFIX],
}

impl BackupHeader {
    /// Reads the header of a backup file's bytes.
    pub fn read(bytes: &[u8]) -> Result<Self, BackupError> {
        if bytes.len() < 5 || &bytes[..4] != BACKUP_MAGIC {
            return Err(BackupError::NotABackup);
        }
        if bytes[4] != VERSION {
            return Err(if bytes[4] > VERSION {
                BackupError::NewerVersion
            } else {
                BackupError::NotABackup
            });
        }
        if bytes.len() < HEADER_LEN {
            return Err(BackupError::Damaged);
        }
        let kdf = read_kdf(&bytes[5..17])?;
        if kdf.check().is_err() {
            return Err(BackupError::BadParameters);
        }
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&bytes[17..33]);
        let mut nonce_prefix = [0u8; NONCE_PREFIX];
        nonce_prefix.copy_from_slice(&bytes[33..33 + NONCE_PREFIX]);
        let mut created = [0u8; 8];
        created.copy_from_slice(&bytes[33 + NONCE_PREFIX..HEADER_LEN]);
        Ok(Self {
            kdf,
            salt,
            created_ms: u64::from_be_bytes(created),
            nonce_prefix,
        })
    }

    fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(BACKUP_MAGIC);
        h[4] = VERSION;
        h[5..9].copy_from_slice(&self.kdf.memory_kib.to_be_bytes());
        h[9..13].copy_from_slice(&self.kdf.passes.to_be_bytes());
        h[13..17].copy_from_slice(&self.kdf.lanes.to_be_bytes());
        h[17..33].copy_from_slice(&self.salt);
        h[33..33 + NONCE_PREFIX].copy_from_slice(&self.nonce_prefix);
        h[33 + NONCE_PREFIX..].copy_from_slice(&self.created_ms.to_be_bytes());
        h
    }
}

fn nonce(prefix: &[u8; NONCE_PREFIX], counter: u32, last: bool) -> XNonce {
    let mut n = [0u8; 24];
    n[..NONCE_PREFIX].copy_from_slice(prefix);
    n[NONCE_PREFIX..23].copy_from_slice(&counter.to_be_bytes());
    n[23] = u8::from(last);
    XNonce::from(n)
}

/// Encrypts `payload` into a backup file's bytes: the header, then each 64 KiB chunk sealed
/// with XChaCha20-Poly1305 under a nonce of the header's random prefix, the chunk's number and
/// a last-chunk flag, and the whole header as associated data (`docs/backup.md`).
pub fn seal<R: Rng + CryptoRng>(
    key: &BackupKey,
    created_ms: u64,
    payload: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, BackupError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(BackupError::TooLarge);
    }
    let prefix = rng.random::<[u8; NONCE_PREFIX]>();
    let header = BackupHeader {
        kdf: key.kdf,
        salt: key.salt,
        created_ms,
        nonce_prefix: prefix,
    }
    .to_bytes();
    let chunks = payload.len().div_ceil(CHUNK).max(1);
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + chunks * TAG);
    out.extend_from_slice(&header);
    let aead = XChaCha20Poly1305::new((&*key.key).into());
    let mut pieces: Vec<&[u8]> = payload.chunks(CHUNK).collect();
    if pieces.is_empty() {
        pieces.push(&[]);
    }
    let n = pieces.len();
    for (i, piece) in pieces.into_iter().enumerate() {
        let counter = u32::try_from(i).map_err(|_| BackupError::TooLarge)?;
        let nonce = nonce(&prefix, counter, i + 1 == n);
        let ct = aead
            .encrypt(
                &nonce,
                Payload {
                    msg: piece,
                    aad: &header,
                },
            )
            .map_err(|_| BackupError::TooLarge)?;
        out.extend_from_slice(&ct);
    }
    Ok(out)
}

/// Decrypts a backup file's bytes with the key derived for its header's salt and cost.
/// Truncation, reordering, splicing and appended bytes all fail.
pub fn open(key: &BackupKey, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    let header = BackupHeader::read(bytes)?;
    if header.salt != key.salt || header.kdf != key.kdf {
        return Err(BackupError::WrongKey);
    }
    let aad = &bytes[..HEADER_LEN];
    let body = &bytes[HEADER_LEN..];
    if body.len() < TAG {
        return Err(BackupError::Damaged);
    }
    let aead = XChaCha20Poly1305::new((&*key.key).into());
    let pieces: Vec<&[u8]> = body.chunks(CHUNK + TAG).collect();
    let n = pieces.len();
    let mut out = Zeroizing::new(Vec::with_capacity(body.len()));
    for (i, piece) in pieces.into_iter().enumerate() {
        let counter = u32::try_from(i).map_err(|_| BackupError::Damaged)?;
        let plain = aead
            .decrypt(
                &nonce(&header.nonce_prefix, counter, i + 1 == n),
                Payload { msg: piece, aad },
            )
            .map_err(|_| {
                // A first chunk that opens with the other last-chunk flag was cut off or had
                // bytes appended after it: the key is right, the file is not whole.
                let other = nonce(&header.nonce_prefix, 0, i + 1 != n);
                if i == 0 && aead.decrypt(&other, Payload { msg: piece, aad }).is_err() {
                    BackupError::WrongKey
                } else {
                    BackupError::Damaged
                }
            })?;
        out.extend_from_slice(&plain);
        drop(Zeroizing::new(plain));
    }
    Ok(out)
}

/// Decrypts a backup file's bytes with a recovery key (Argon2id with the header's salt and
/// cost first: about a quarter of a second). Returns the key too, for the restored vault to
/// keep.
pub fn open_with_recovery_key(
    recovery: &RecoveryKey,
    bytes: &[u8],
) -> Result<(BackupKey, Zeroizing<Vec<u8>>), BackupError> {
    let header = BackupHeader::read(bytes)?;
    let key = BackupKey::derive(recovery, header.salt, header.kdf)?;
    let payload = open(&key, bytes)?;
    Ok((key, payload))
}

/// A copy of the vault's database: SQLCipher pages under `key`, a random key of its own.
pub struct Snapshot {
    /// The copy's database key.
    pub key: Zeroizing<[u8; 32]>,
    /// The schema version of the copy.
    pub schema: u32,
    /// The database file (encrypted by SQLCipher under `key`).
    pub database: Vec<u8>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("schema", &self.schema)
            .field("bytes", &self.database.len())
            .finish_non_exhaustive()
    }
}

const PAYLOAD_MAGIC: &[u8; 4] = b"TSBP";

impl Snapshot {
    /// The backup payload: magic, schema version, the copy's key, the database file.
    pub fn to_payload(&self) -> Zeroizing<Vec<u8>> {
        let mut p = Zeroizing::new(Vec::with_capacity(40 + self.database.len()));
        p.extend_from_slice(PAYLOAD_MAGIC);
        p.extend_from_slice(&self.schema.to_be_bytes());
        p.extend_from_slice(&self.key[..]);
        p.extend_from_slice(&self.database);
        p
    }

    /// Reads a payload [`Snapshot::to_payload`] wrote.
    pub fn from_payload(p: &[u8]) -> Result<Self, BackupError> {
        if p.len() < 40 || &p[..4] != PAYLOAD_MAGIC {
            return Err(BackupError::Damaged);
        }
        let schema = be32(&p[4..8])?;
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&p[8..40]);
        Ok(Self {
            key,
            schema,
            database: p[40..].to_vec(),
        })
    }
}

/// Where [`Vault::snapshot`](crate::Vault::snapshot) writes its copy for the moment it is read back (encrypted; removed
/// at once, and by a wipe if a crash left it).
pub const SNAPSHOT_FILE: &str = "vault.snapshot.tmp";

impl crate::Vault {
    /// A consistent copy of the database under a fresh random key: `sqlcipher_export` into an
    /// attached database keyed with it, read back and removed. The copy is never plaintext on
    /// disk; the key exists only in memory and in the backup's encrypted payload.
    pub fn snapshot<R: Rng + CryptoRng>(&self, rng: &mut R) -> Result<Snapshot, crate::VaultError> {
        let io = |e: std::io::Error| crate::VaultError::Io(e.kind());
        let path = self.dir().join(SNAPSHOT_FILE);
        for f in [path.clone(), path.with_extension("tmp-journal")] {
            if f.exists() {
                std::fs::remove_file(&f).map_err(io)?;
            }
        }
        let key = Zeroizing::new(rng.random::<[u8; 32]>());
        let mut key_text = Zeroizing::new(String::with_capacity(67));
        key_text.push_str("x'");
        for b in key.iter() {
            key_text.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            key_text.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        key_text.push('\'');
        let schema: u32 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let path_text = path
            .to_str()
            .ok_or(crate::VaultError::Io(std::io::ErrorKind::InvalidInput))?;
        let exported = (|| -> Result<(), crate::VaultError> {
            self.conn.execute(
                "ATTACH DATABASE ?1 AS snapshot KEY ?2",
                rusqlite::params![path_text, key_text.as_str()],
            )?;
            let result = (|| -> Result<(), crate::VaultError> {
                self.conn
                    .query_row("SELECT sqlcipher_export('snapshot')", [], |_| Ok(()))?;
                self.conn
                    .execute_batch(&format!("PRAGMA snapshot.user_version = {schema};"))?;
                Ok(())
            })();
            self.conn.execute_batch("DETACH DATABASE snapshot;")?;
            result
        })();
        let database = exported.and_then(|()| std::fs::read(&path).map_err(io));
        let _ = std::fs::remove_file(&path);
        Ok(Snapshot {
            key,
            schema,
            database: database?,
        })
    }
}

/// Writes `bytes` to `path` atomically (a temporary file beside it, fsync, rename, fsync of the
/// directory), readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut name = path
        .file_name()
        .ok_or(std::io::ErrorKind::InvalidInput)?
        .to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn rng() -> rand_chacha::ChaCha20Rng {
        rand_chacha::ChaCha20Rng::seed_from_u64(7)
    }

    fn key() -> BackupKey {
        let recovery = RecoveryKey::generate(&mut rng());
        BackupKey::derive(&recovery, [3; 16], KdfParams::MINIMUM).unwrap()
    }

    #[test]
    fn recovery_keys_are_thirty_characters_read_as_typed() {
        let k = RecoveryKey::generate(&mut rng());
        let shown = k.grouped();
        assert_eq!(shown.len(), 35);
        assert_eq!(shown.matches('-').count(), 5);
        let typed = shown.to_lowercase().replace('-', " ");
        assert_eq!(*RecoveryKey::parse(&typed).unwrap().0, *k.0);
        // Crockford's look-alikes.
        let a = RecoveryKey::parse("OIL00-00000-00000-00000-00000-00000").unwrap();
        assert_eq!(&a.0[..3], "011");
        for bad in [
            "",
            "0000-0000",
            "00000-00000-00000-00000-00000-000000",
            "00000-00000-00000-00000-00000-0000U",
            "00000-00000-00000-00000-00000-0000é",
        ] {
            assert_eq!(
                RecoveryKey::parse(bad).err(),
                Some(BackupError::BadRecoveryKey),
                "{bad}"
            );
        }
        assert!(!format!("{k:?}").contains(&k.0[..5]));
    }

    #[test]
    fn a_backup_opens_with_its_key_for_every_size() {
        let k = key();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal(&k, 42, &payload, &mut rng()).unwrap();
            assert_eq!(
                sealed.len(),
                HEADER_LEN + len + len.div_ceil(CHUNK).max(1) * TAG
            );
            assert_eq!(BackupHeader::read(&sealed).unwrap().created_ms, 42);
            assert_eq!(&open(&k, &sealed).unwrap()[..], &payload[..], "{len}");
        }
    }

    #[test]
    fn fail_truncated_reordered_spliced_or_changed_backups() {
        let k = key();
        let payload: Vec<u8> = (0..3 * CHUNK + 10).map(|i| (i % 253) as u8).collect();
        let sealed = seal(&k, 1, &payload, &mut rng()).unwrap();
        let c = CHUNK + TAG;
        // Whole chunks cut off the end, and a cut inside a chunk.
        let cut = &sealed[..HEADER_LEN + 2 * c];
        assert_eq!(open(&k, cut).err(), Some(BackupError::Damaged));
        let cut = &sealed[..sealed.len() - 1];
        assert_eq!(open(&k, cut).err(), Some(BackupError::Damaged));
        assert_eq!(
            open(&k, &sealed[..HEADER_LEN]).err(),
            Some(BackupError::Damaged)
        );
        // Two chunks swapped.
        let mut swapped = sealed.clone();
        let (a, b) = (HEADER_LEN, HEADER_LEN + c);
        let first = sealed[a..a + c].to_vec();
        swapped[a..a + c].copy_from_slice(&sealed[b..b + c]);
        swapped[b..b + c].copy_from_slice(&first);
        assert!(open(&k, &swapped).is_err());
        // A chunk from another backup under the same key.
        let other = seal(
            &k,
            1,
            &payload,
            &mut rand_chacha::ChaCha20Rng::seed_from_u64(9),
        )
        .unwrap();
        let mut spliced = sealed.clone();
        spliced[b..b + c].copy_from_slice(&other[b..b + c]);
        assert_eq!(open(&k, &spliced).err(), Some(BackupError::Damaged));
        // Bytes appended.
        let mut longer = sealed.clone();
        longer.extend_from_slice(&[0; 40]);
        assert!(open(&k, &longer).is_err());
        // One bit of the creation time in the header (associated data of every chunk).
        let mut header = sealed.clone();
        header[HEADER_LEN - 1] ^= 1;
        assert_eq!(open(&k, &header).err(), Some(BackupError::WrongKey));
        // One bit in the middle.
        let mut flipped = sealed.clone();
        flipped[HEADER_LEN + c + 5] ^= 1;
        assert_eq!(open(&k, &flipped).err(), Some(BackupError::Damaged));
        // Not a backup, a newer one, absurd parameters.
        assert_eq!(open(&k, b"hello").err(), Some(BackupError::NotABackup));
        let mut newer = sealed.clone();
        newer[4] = 2;
        assert_eq!(open(&k, &newer).err(), Some(BackupError::NewerVersion));
        let mut weak = sealed.clone();
        weak[5..9].copy_from_slice(&8u32.to_be_bytes());
        assert_eq!(open(&k, &weak).err(), Some(BackupError::BadParameters));
        assert_eq!(&open(&k, &sealed).unwrap()[..], &payload[..]);
    }

    #[test]
    fn fail_another_recovery_key() {
        let recovery = RecoveryKey::generate(&mut rng());
        let k = BackupKey::derive(&recovery, [5; 16], KdfParams::MINIMUM).unwrap();
        let sealed = seal(&k, 1, b"vault", &mut rng()).unwrap();
        let (_, plain) = open_with_recovery_key(&recovery, &sealed).unwrap();
        assert_eq!(&plain[..], b"vault");
        let other = RecoveryKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(8));
        assert_eq!(
            open_with_recovery_key(&other, &sealed).err(),
            Some(BackupError::WrongKey)
        );
        // Several chunks: still told apart from damage.
        let big = vec![1u8; 2 * CHUNK];
        let sealed = seal(&k, 1, &big, &mut rng()).unwrap();
        assert_eq!(
            open_with_recovery_key(&other, &sealed).err(),
            Some(BackupError::WrongKey)
        );
    }

    /// The whole path a backup takes: snapshot, sealed file, opened with the recovery key,
    /// restored into another directory under new factors. Messages (and their search index),
    /// contacts and settings are back; the snapshot file is gone; the old factors do not open
    /// the restored vault.
    #[test]
    fn a_vault_restored_from_a_backup_has_everything_under_new_factors() {
        use crate::{
            Contact, ContactState, MemorySecrets, Message, MessageStatus, Vault,
            direct_conversation,
        };
        let (dir, v) = crate::test_vault();
        v.put_contact(&Contact {
            account_id: [7; 32],
            name: "Bob".into(),
            account_public: vec![1, 2, 3],
            relay: "tessera://r".into(),
            state: ContactState::Accepted,
            created: 5,
        })
        .unwrap();
        for n in 0..300u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&n.to_be_bytes());
            v.insert_message(&Message {
                id: 0,
                conversation: direct_conversation(&[7; 32]),
                contact: [7; 32],
                message_id: id,
                outgoing: n % 2 == 0,
                body: format!("pear number{n}"),
                sent: i64::from(n),
                received: None,
                status: MessageStatus::Sent,
                read: true,
                kind: "text".into(),
                failure: None,
                time_flag: None,
                reply_to: None,
                edited: None,
                expires_in: None,
                expire_at: None,
                preview: None,
            })
            .unwrap();
        }
        v.set_setting("name", "Alice").unwrap();
        let snapshot = v.snapshot(&mut rng()).unwrap();
        assert!(!dir.path().join(SNAPSHOT_FILE).exists());
        assert_eq!(snapshot.schema, crate::SCHEMA_VERSION);
        let recovery = RecoveryKey::generate(&mut rng());
        let key = BackupKey::derive(&recovery, [1; 16], KdfParams::MINIMUM).unwrap();
        let file = seal(&key, 9, &snapshot.to_payload(), &mut rng()).unwrap();
        // Nothing of the contents is readable in the file.
        assert!(!file.windows(4).any(|w| w == b"pear"));
        assert!(!file.windows(5).any(|w| w == b"Alice"));

        let typed = RecoveryKey::parse(&recovery.grouped()).unwrap();
        let (_, payload) = open_with_recovery_key(&typed, &file).unwrap();
        let back = Snapshot::from_payload(&payload).unwrap();
        let target = tempfile::tempdir().unwrap();
        let there = target.path().join("restored");
        let secrets = MemorySecrets::default();
        let r = Vault::restore(
            &there,
            &back,
            b"new password",
            KdfParams::MINIMUM,
            &secrets,
            None,
            &mut rng(),
        )
        .unwrap();
        assert_ne!(r.vault_id(), v.vault_id());
        assert_eq!(r.contacts().unwrap()[0].name, "Bob");
        assert_eq!(r.setting("name").unwrap().as_deref(), Some("Alice"));
        assert_eq!(r.search("number299", 10).unwrap().len(), 1);
        assert_eq!(r.search("pear", 500).unwrap().len(), 300);
        r.check_integrity().unwrap();
        drop(r);
        // The new password opens it; the old one does not; a second restore there is refused.
        assert!(Vault::open(&there, b"pw", &secrets, None, &mut rng()).is_err());
        assert!(Vault::open(&there, b"new password", &secrets, None, &mut rng()).is_ok());
        assert!(matches!(
            Vault::restore(
                &there,
                &back,
                b"x",
                KdfParams::MINIMUM,
                &secrets,
                None,
                &mut rng()
            ),
            Err(crate::VaultError::AlreadyExists)
        ));
    }

    #[test]
    fn fail_a_snapshot_from_a_newer_schema_or_a_damaged_payload() {
        let (_dir, v) = crate::test_vault();
        let mut snapshot = v.snapshot(&mut rng()).unwrap();
        snapshot.schema = crate::SCHEMA_VERSION + 1;
        let target = tempfile::tempdir().unwrap();
        assert!(matches!(
            crate::Vault::restore(
                target.path(),
                &snapshot,
                b"pw",
                KdfParams::MINIMUM,
                &crate::MemorySecrets::default(),
                None,
                &mut rng()
            ),
            Err(crate::VaultError::NewerVersion)
        ));
        assert_eq!(
            Snapshot::from_payload(b"TSBP").err(),
            Some(BackupError::Damaged)
        );
        // A database whose key is not the snapshot's: nothing is left behind.
        let mut wrong = v.snapshot(&mut rng()).unwrap();
        wrong.key[0] ^= 1;
        let secrets = crate::MemorySecrets::default();
        assert!(
            crate::Vault::restore(
                target.path(),
                &wrong,
                b"pw",
                KdfParams::MINIMUM,
                &secrets,
                None,
                &mut rng()
            )
            .is_err()
        );
        assert!(!crate::Vault::exists(target.path()));
        assert!(!target.path().join(crate::DATABASE_FILE).exists());
    }

    #[test]
    fn the_stored_backup_key_round_trips() {
        let k = key();
        let back = BackupKey::from_bytes(&k.to_bytes()).unwrap();
        assert_eq!(back.salt, k.salt);
        assert_eq!(back.kdf, k.kdf);
        assert_eq!(*back.key, *k.key);
        assert!(BackupKey::from_bytes(&[0; 10]).is_err());
    }
}
