//! Panic wipe: the vault's key material destroyed first, then its files (`docs/panic.md`).
//!
//! Order matters. The database is encrypted with a key that exists in one place only, the key
//! file, wrapped under a key that needs the OS keyring's device secret. Destroying the device
//! secret and the key file makes every page of the database unreadable at once; deleting the
//! database, which can take a while and which an SSD or a journaling file system may keep
//! copies of anyway, comes after and is a matter of tidiness, not of secrecy.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::RngCore as _;

use crate::VaultError;
use crate::keyfile::KeyFile;
use crate::secrets::{SecretStore, card_entry, vault_entry};
use crate::vault::{DATABASE_FILE, KEY_FILE, NEXT_KEY_FILE};

/// Everything Tessera writes into an account's data directory, besides the key file: the
/// database and SQLite's side files, the key file's atomic-replace file, and Tor's state and
/// cache. Nothing else is removed, so a data directory pointed at a folder that holds other
/// things loses only Tessera's.
const ACCOUNT_FILES: &[&str] = &[
    DATABASE_FILE,
    "vault.sqlite3-wal",
    "vault.sqlite3-shm",
    "vault.sqlite3-journal",
    crate::backup::SNAPSHOT_FILE,
    "tor",
    crate::attachments::ATTACHMENTS_DIR,
];

/// What a wipe did.
#[derive(Debug, Default)]
pub struct WipeReport {
    /// Time from the start until the device secret was deleted from the keyring and the key file
    /// overwritten, synced and removed: from then on the database cannot be decrypted.
    pub keys_destroyed_in: Duration,
    /// Whether there was a vault (a key file) to destroy.
    pub had_vault: bool,
    /// Files and directories removed (the key file included).
    pub removed: usize,
    /// What could not be done; the wipe went on past each of these.
    pub problems: Vec<WipeProblem>,
}

/// A step of a wipe that failed (the rest still ran).
#[derive(Debug, thiserror::Error)]
pub enum WipeProblem {
    /// A keyring entry could not be deleted (the keyring is locked or unreachable).
    #[error("keyring entry {entry}: {error}")]
    Keyring {
        /// The entry's name (`vault-…` or `card-…`; names, never secrets).
        entry: String,
        /// Why.
        error: VaultError,
    },
    /// A file could not be overwritten or removed.
    #[error("{}: {kind}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        kind: std::io::ErrorKind,
    },
}

/// Destroys the account in `dir`: the device secret in `secrets` and the key file first (the
/// part after which nothing can be decrypted, timed in [`WipeReport::keys_destroyed_in`]), then
/// the card's keys in the keyring, then the database and every other file Tessera keeps there,
/// and the directory itself if that leaves it empty.
///
/// It never stops early: a step that fails is recorded in [`WipeReport::problems`] and the
/// next one runs. The vault must not be open in this process (lock the engine first).
pub fn wipe(dir: &Path, secrets: &dyn SecretStore) -> WipeReport {
    wipe_account(dir, secrets, None)
}

/// The duress unlock's wipe (`docs/duress.md`): the device secret is replaced by `next` (the
/// old one is gone; the entry keeps its name for the vault made next, so the keyring's entry
/// names do not change either), then the key file and the files go as in a wipe. The card's
/// keys stay: the new vault is bound to the same card.
pub(crate) fn wipe_for_duress(
    dir: &Path,
    secrets: &dyn SecretStore,
    next: &[u8; 32],
) -> WipeReport {
    wipe_account(dir, secrets, Some(next))
}

/// A wipe; with `replacement`, the duress variant of [`wipe_for_duress`].
fn wipe_account(
    dir: &Path,
    secrets: &dyn SecretStore,
    replacement: Option<&[u8; 32]>,
) -> WipeReport {
    let started = Instant::now();
    let mut report = WipeReport::default();
    let key_path = dir.join(KEY_FILE);
    // What the key file names, read before it is destroyed. A damaged key file still goes.
    let named = KeyFile::load(&key_path).ok();
    report.had_vault = named.is_some() || key_path.exists();
    if let Some(file) = &named {
        let entry = vault_entry(&file.vault_id);
        let destroyed = match replacement {
            None => secrets.delete(&entry),
            // Replacing the secret destroys it as deleting would; if that fails, delete it.
            Some(next) => secrets
                .put(&entry, next)
                .or_else(|_| secrets.delete(&entry)),
        };
        if let Err(error) = destroyed {
            report.problems.push(WipeProblem::Keyring { entry, error });
        }
    }
    // The key file, its atomic-replace file, and a card secret rotation's key file.
    let next_path = dir.join(NEXT_KEY_FILE);
    for path in [
        key_path.clone(),
        key_path.with_extension("key.tmp"),
        next_path.with_extension("next.tmp"),
        next_path,
    ] {
        shred(&path, &mut report);
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    report.keys_destroyed_in = started.elapsed();

    // The card's keys: without the vault they only serve someone holding the card.
    if let Some(card) = named
        .as_ref()
        .and_then(|f| f.card.as_ref())
        .filter(|_| replacement.is_none())
    {
        let entry = card_entry(&card.uid);
        if let Err(error) = secrets.delete(&entry) {
            report.problems.push(WipeProblem::Keyring { entry, error });
        }
    }
    for name in ACCOUNT_FILES {
        remove(&dir.join(name), &mut report);
    }
    // Only if nothing else is in it: the person may keep other things there.
    if std::fs::remove_dir(dir).is_ok() {
        report.removed += 1;
    }
    report
}

/// Overwrites a file with random bytes of its length, syncs it, then removes it. On a magnetic
/// disk without journaling of data this replaces the bytes; on SSDs and copy-on-write or
/// journaling file systems the old blocks may survive (docs/panic.md), which is why the key file
/// is also useless without the keyring's device secret.
fn shred(path: &Path, report: &mut WipeReport) {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => return problem(report, path, e.kind()),
    };
    let overwritten = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| {
            let mut noise = vec![0u8; usize::try_from(len).unwrap_or(0).min(1 << 20)];
            rand::rng().fill_bytes(&mut noise);
            f.write_all(&noise)?;
            f.sync_all()
        });
    if let Err(e) = overwritten {
        problem(report, path, e.kind());
    }
    match std::fs::remove_file(path) {
        Ok(()) => report.removed += 1,
        Err(e) => problem(report, path, e.kind()),
    }
}

/// Removes a file or a directory tree, if it exists.
fn remove(path: &Path, report: &mut WipeReport) {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => report.removed += 1,
        Err(e) => problem(report, path, e.kind()),
    }
}

fn problem(report: &mut WipeReport, path: &Path, kind: std::io::ErrorKind) {
    report.problems.push(WipeProblem::File {
        path: path.to_owned(),
        kind,
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{CardFactor, KdfParams, MemorySecrets, Vault};
    use rand::SeedableRng as _;

    fn vault_with_card(dir: &Path, secrets: &MemorySecrets) -> CardFactor {
        let card = CardFactor::with_secret([4, 9, 9, 9, 9, 9, 9], 1, [5; 32]);
        secrets.put(&card_entry(&card.uid), &[6; 32]).unwrap();
        let v = Vault::create(
            dir,
            b"pw",
            KdfParams::MINIMUM,
            secrets,
            Some(&card),
            &mut rand_chacha::ChaCha20Rng::seed_from_u64(3),
        )
        .unwrap();
        v.set_setting("x", "y").unwrap();
        drop(v);
        std::fs::create_dir_all(dir.join("tor/state")).unwrap();
        std::fs::write(dir.join("tor/state/x"), b"state").unwrap();
        card
    }

    #[test]
    fn wipe_destroys_the_keys_and_every_file_of_the_account() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("account");
        let secrets = MemorySecrets::default();
        let card = vault_with_card(&dir, &secrets);
        let id = KeyFile::load(&dir.join(KEY_FILE)).unwrap().vault_id;
        assert!(secrets.get(&vault_entry(&id)).unwrap().is_some());

        let report = wipe(&dir, &secrets);
        assert!(report.had_vault);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(!dir.exists(), "the data directory is gone");
        assert!(secrets.get(&vault_entry(&id)).unwrap().is_none());
        assert!(secrets.get(&card_entry(&card.uid)).unwrap().is_none());
        assert!(matches!(
            Vault::open(
                &dir,
                b"pw",
                &secrets,
                Some(&card),
                &mut rand_chacha::ChaCha20Rng::seed_from_u64(4)
            ),
            Err(VaultError::NoVault)
        ));
        // Wiping again finds nothing and says so.
        let again = wipe(&dir, &secrets);
        assert!(!again.had_vault && again.removed == 0 && again.problems.is_empty());
    }

    #[test]
    fn wipe_leaves_what_is_not_tessera_and_goes_on_past_a_locked_keyring() {
        struct Stuck;
        impl SecretStore for Stuck {
            fn get(&self, _: &str) -> Result<Option<zeroize::Zeroizing<[u8; 32]>>, VaultError> {
                Err(VaultError::Keyring("locked".into()))
            }
            fn put(&self, _: &str, _: &[u8; 32]) -> Result<(), VaultError> {
                Err(VaultError::Keyring("locked".into()))
            }
            fn delete(&self, _: &str) -> Result<(), VaultError> {
                Err(VaultError::Keyring("locked".into()))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let secrets = MemorySecrets::default();
        vault_with_card(dir.path(), &secrets);
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let report = wipe(dir.path(), &Stuck);
        // Both keyring entries failed; every file was still removed.
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        assert!(!dir.path().join(KEY_FILE).exists());
        assert!(!dir.path().join(DATABASE_FILE).exists());
        assert!(!dir.path().join("tor").exists());
        assert_eq!(
            std::fs::read(dir.path().join("notes.txt")).unwrap(),
            b"mine"
        );
        // The key file is gone, so the database could not be opened even with the keyring.
        assert!(matches!(
            Vault::open(
                dir.path(),
                b"pw",
                &secrets,
                None,
                &mut rand_chacha::ChaCha20Rng::seed_from_u64(5)
            ),
            Err(VaultError::NoVault)
        ));
    }
}
