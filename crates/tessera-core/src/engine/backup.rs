//! Encrypted backups, scheduled backups and restoring one on a new machine (`docs/backup.md`).

use super::*;
use tessera_store::backup::{self, BackupError, BackupKey, RecoveryKey, Snapshot};

/// The backup key, kept in the vault (local) so later and scheduled backups need no prompt.
const BACKUP_KEY: &str = "backup.key";
/// Engine time of the last scheduled backup (local).
const BACKUP_LAST: &str = "backup.last_ms";
/// Set by a restore until the keys were replaced and the relay told (local).
const RESTORED: &str = "restore.pending";
/// Set once the keys were replaced until every contact got a session reset (local).
const RESETS: &str = "restore.resets";
/// The folder scheduled backups go to (setting; absent: no scheduled backups).
pub const BACKUP_FOLDER_SETTING: &str = "backup_folder";
/// Days between scheduled backups (setting; default [`DEFAULT_BACKUP_EVERY_DAYS`]).
pub const BACKUP_EVERY_SETTING: &str = "backup_every_days";
/// Days between scheduled backups when not set.
pub const DEFAULT_BACKUP_EVERY_DAYS: u32 = 7;
/// Scheduled backups kept in the folder (older ones made by Tessera are removed).
pub const SCHEDULED_KEPT: usize = 3;
/// Name prefix and suffix of scheduled backups.
const SCHEDULED_PREFIX: &str = "tessera-backup-";
/// File name prefix of backups made on request into a folder ([`Engine::backup_into`]); never
/// pruned.
const MANUAL_PREFIX: &str = "tessera-manual-";
/// The file name extension of backups.
pub const BACKUP_EXTENSION: &str = "tsbk";

/// A backup that was written.
#[derive(Debug)]
pub struct BackupMade {
    /// Where.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// When (engine time, ms).
    pub created_ms: u64,
    /// The recovery key, when this backup made a new one: show it once, then it is gone (the
    /// vault keeps only the key derived from it).
    pub recovery_key: Option<RecoveryKey>,
}

/// What a restore needs: the new machine's factors, the backup and its recovery key.
pub struct RestoreOptions {
    /// The data directory (must not hold a vault).
    pub dir: PathBuf,
    /// The new password.
    pub password: Zeroizing<Vec<u8>>,
    /// Argon2id parameters for the new password.
    pub kdf: KdfParams,
    /// The new card's read (`None`: no card factor).
    pub card: Option<CardFactor>,
    /// The backup file's bytes.
    pub backup: Vec<u8>,
    /// Its recovery key.
    pub recovery_key: RecoveryKey,
}

fn backup_error(e: BackupError) -> CoreError {
    CoreError::Backup(e)
}

impl Engine {
    /// The stored backup key, or (first backup, or `new_key`) a new recovery key and the key
    /// derived from it, stored in the vault. Argon2id runs off the async threads.
    async fn backup_key(
        &self,
        new_key: bool,
    ) -> Result<(BackupKey, Option<RecoveryKey>), CoreError> {
        if !new_key {
            let held = self.with(|u| Ok(u.vault.local(BACKUP_KEY)?))?;
            if let Some(bytes) = held {
                return Ok((BackupKey::from_bytes(&bytes).map_err(backup_error)?, None));
            }
        }
        let (key, recovery) = tokio::task::spawn_blocking(|| {
            let recovery = RecoveryKey::generate(&mut rng());
            BackupKey::new(&recovery, &mut rng()).map(|k| (k, recovery))
        })
        .await
        .map_err(|_| CoreError::Busy)?
        .map_err(backup_error)?;
        self.with(|u| Ok(u.vault.set_local(BACKUP_KEY, &key.to_bytes())?))?;
        Ok((key, Some(recovery)))
    }

    /// Whether a recovery key was made (backups can be written without asking for one).
    pub fn has_recovery_key(&self) -> Result<bool, CoreError> {
        self.with(|u| Ok(u.vault.local(BACKUP_KEY)?.is_some()))
    }

    /// Writes an encrypted backup of the whole vault (identity, contacts, sessions, settings,
    /// history) to `path`, atomically and readable by the owner only (`docs/backup.md`). The
    /// first backup (or one with `new_key`) makes the recovery key and returns it; later ones
    /// use the same key. The snapshot and the file writing run off the async threads.
    pub async fn create_backup(&self, path: &Path, new_key: bool) -> Result<BackupMade, CoreError> {
        let (key, recovery_key) = self.backup_key(new_key).await?;
        let created_ms = self.now_ms();
        let engine = self.clone();
        let target = path.to_path_buf();
        let bytes = tokio::task::spawn_blocking(move || -> Result<u64, CoreError> {
            let snapshot = engine.with(|u| Ok(u.vault.snapshot(&mut rng())?))?;
            let file = backup::seal(&key, created_ms, &snapshot.to_payload(), &mut rng())
                .map_err(backup_error)?;
            backup::write_private(&target, &file).map_err(|e| VaultError::Io(e.kind()))?;
            Ok(file.len() as u64)
        })
        .await
        .map_err(|_| CoreError::Busy)??;
        tracing::info!(bytes, "backup written");
        Ok(BackupMade {
            path: path.to_path_buf(),
            bytes,
            created_ms,
            recovery_key,
        })
    }

    /// A backup made now into `folder` (created if needed), named after the time
    /// (`tessera-manual-YYYYMMDD-HHMMSS.tsbk`); scheduled backups' pruning leaves it alone.
    pub async fn backup_into(&self, folder: &Path) -> Result<BackupMade, CoreError> {
        std::fs::create_dir_all(folder).map_err(|e| VaultError::Io(e.kind()))?;
        let name = format!(
            "{MANUAL_PREFIX}{}.{BACKUP_EXTENSION}",
            file_time(self.now_ms())
        );
        self.create_backup(&folder.join(name), false).await
    }

    /// Sets scheduled backups: every `every_days` days into `folder` (`None`: off). Returns a
    /// new recovery key when none was made yet (show it once).
    pub async fn set_backup_schedule(
        &self,
        folder: Option<&Path>,
        every_days: u32,
    ) -> Result<Option<RecoveryKey>, CoreError> {
        let Some(folder) = folder else {
            self.with(|u| {
                u.vault.delete_setting(BACKUP_FOLDER_SETTING)?;
                Ok(u.vault.delete_setting(BACKUP_EVERY_SETTING)?)
            })?;
            return Ok(None);
        };
        if every_days == 0 || every_days > 365 {
            return Err(CoreError::UnknownSetting);
        }
        let text = folder
            .to_str()
            .ok_or(CoreError::UnknownSetting)?
            .to_string();
        let (_, recovery) = self.backup_key(false).await?;
        self.with(|u| {
            u.vault.transaction(|v| {
                v.set_setting(BACKUP_FOLDER_SETTING, &text)?;
                v.set_setting(BACKUP_EVERY_SETTING, &every_days.to_string())
            })?;
            Ok(())
        })?;
        Ok(recovery)
    }

    /// The scheduled-backup folder and interval in days, if scheduled backups are on.
    pub fn backup_schedule(&self) -> Result<Option<(PathBuf, u32)>, CoreError> {
        self.with(|u| {
            let Some(folder) = u.vault.setting(BACKUP_FOLDER_SETTING)? else {
                return Ok(None);
            };
            let every = u
                .vault
                .setting(BACKUP_EVERY_SETTING)?
                .and_then(|d| d.parse().ok())
                .unwrap_or(DEFAULT_BACKUP_EVERY_DAYS);
            Ok(Some((PathBuf::from(folder), every)))
        })
    }

    /// Writes a scheduled backup if one is due (scheduled backups on, a recovery key made, and
    /// the interval passed since the last), then removes all but the newest three
    /// (`SCHEDULED_KEPT`) scheduled backups in the folder. Returns the backup written.
    pub async fn backup_if_due(&self) -> Result<Option<BackupMade>, CoreError> {
        let Some((folder, every_days)) = self.backup_schedule()? else {
            return Ok(None);
        };
        let now = self.now_ms();
        let (last, has_key) = self.with(|u| {
            let last = u
                .vault
                .local(BACKUP_LAST)?
                .and_then(|b| b.as_slice().try_into().ok().map(u64::from_be_bytes));
            Ok((last, u.vault.local(BACKUP_KEY)?.is_some()))
        })?;
        let every_ms = u64::from(every_days) * keys::DAY_MS;
        if !has_key || last.is_some_and(|l| now >= l && now - l < every_ms) {
            return Ok(None);
        }
        std::fs::create_dir_all(&folder).map_err(|e| VaultError::Io(e.kind()))?;
        let name = format!("{SCHEDULED_PREFIX}{}.{BACKUP_EXTENSION}", file_time(now));
        let made = self.create_backup(&folder.join(name), false).await?;
        self.with(|u| Ok(u.vault.set_local(BACKUP_LAST, &now.to_be_bytes())?))?;
        prune_scheduled(&folder);
        Ok(Some(made))
    }

    /// Restores an account from a backup onto this machine (`docs/backup.md`): decrypts it with
    /// the recovery key, writes the vault under the new password, keyring secret and card, and
    /// unlocks it. At the first connection (now, or at a later unlock if the relay cannot be
    /// reached) every key contacts address is replaced and each contact gets a session reset
    /// carrying the new certificate ("Starting over").
    pub async fn restore(
        opts: RestoreOptions,
        secrets: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CoreError> {
        let RestoreOptions {
            dir,
            password,
            kdf,
            card,
            backup,
            recovery_key,
        } = opts;
        let s2 = secrets.clone();
        let d = dir.clone();
        let vault = tokio::task::spawn_blocking(move || -> Result<Vault, CoreError> {
            let (key, payload) =
                backup::open_with_recovery_key(&recovery_key, &backup).map_err(backup_error)?;
            let snapshot = Snapshot::from_payload(&payload).map_err(backup_error)?;
            drop(payload);
            let vault = Vault::restore(
                &d,
                &snapshot,
                &password,
                kdf,
                s2.as_ref(),
                card.as_ref(),
                &mut rng(),
            )?;
            vault.transaction(|v| {
                v.set_local(BACKUP_KEY, &key.to_bytes())?;
                v.set_local(RESTORED, &[1])
            })?;
            Ok(vault)
        })
        .await
        .map_err(|_| CoreError::Busy)??;
        let transport = transport_config(&vault)?.open(&dir)?;
        let mut me = load_me(&vault, transport)?;
        keys::maintain(&vault, &mut me, clock.now_ms(), &mut rng())?;
        let engine = Self::new(&dir, secrets, Unlocked { vault, me }, clock);
        engine.forward_tor_progress();
        engine.watch_expiry();
        Ok(engine)
    }

    /// Whether this vault was restored and has not yet replaced its keys at the relay.
    pub fn restore_pending(&self) -> Result<bool, CoreError> {
        self.with(|u| Ok(u.vault.local(RESTORED)?.is_some() || u.vault.local(RESETS)?.is_some()))
    }

    /// The relay-side half of a restore, run by `connect` while [`RESTORED`] is set: logs in
    /// with the restored keys, asks the relay which certificate serial it holds for this device,
    /// and replaces every key others address (`keys::start_over`). The next connection then
    /// registers the new certificate and publishes the new prekeys as after any rotation.
    pub(super) async fn start_over(&self) -> Result<(), CoreError> {
        let pending = self.with(|u| Ok(u.vault.local(RESTORED)?.is_some()))?;
        if !pending {
            return Ok(());
        }
        let (relay, transport, account, auth, public) = self.with(|u| {
            Ok((
                u.me.relay.clone(),
                u.me.transport.clone(),
                u.me.account_id,
                u.me.auth.clone(),
                u.me.public.clone(),
            ))
        })?;
        let (client, _pushes) = RelayClient::connect(&relay, &transport).await?;
        client.login(&account, DEVICE_ID, &auth, &mut rng()).await?;
        let relay_serial = match client
            .fetch_certificate(&account, DEVICE_ID, &public, self.now_ms())
            .await
        {
            Ok(cert) => cert.fields.serial,
            Err(ClientError::Relay {
                code: ErrorCode::NotFound,
                ..
            }) => 0,
            Err(e) => return Err(e.into()),
        };
        drop(client);
        let now = self.now_ms();
        self.with(|u| {
            keys::start_over(&u.vault, &mut u.me, relay_serial, now, &mut rng())?;
            u.vault.transaction(|v| {
                v.delete_local(RESTORED)?;
                v.set_local(RESETS, &[1])
            })?;
            Ok(())
        })?;
        tracing::info!(relay_serial, "restored vault: keys replaced");
        Ok(())
    }

    /// The last step of a restore, after the first connection replaced the keys: a session
    /// reset to every contact we talk to, each carrying the new certificate (then delivered
    /// with the outbox). Nothing to do otherwise. `run` and `sync` call it after connecting.
    pub async fn finish_restore(&self) -> Result<(), CoreError> {
        let pending = self.with(|u| Ok(u.vault.local(RESETS)?.is_some()))?;
        if !pending {
            return Ok(());
        }
        let contacts = self.with(|u| Ok(u.vault.contacts()?))?;
        for c in contacts {
            if matches!(c.state, ContactState::Accepted | ContactState::Requested) {
                self.reset_session(&c.account_id).await?;
            }
        }
        self.with(|u| Ok(u.vault.delete_local(RESETS)?))?;
        tracing::info!("restored vault: sessions with contacts reset");
        Ok(())
    }
}

/// `YYYYMMDD-HHMMSS` (UTC) of a time in ms since the Unix epoch, for file names that sort by
/// time.
fn file_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Removes all but the newest [`SCHEDULED_KEPT`] scheduled backups in `folder` (only files
/// named as Tessera names them; names sort by time).
fn prune_scheduled(folder: &Path) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    let mut ours: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(SCHEDULED_PREFIX) && n.ends_with(&format!(".{BACKUP_EXTENSION}"))
            })
        })
        .collect();
    ours.sort();
    let excess = ours.len().saturating_sub(SCHEDULED_KEPT);
    for old in ours.into_iter().take(excess) {
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!(error = %e, "an old scheduled backup could not be removed");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{account, befriend, password, relay, wait_for};
    use super::*;
    use crate::clock::SystemClock;
    use tessera_store::MemorySecrets;

    fn has(engine: &Engine, contact: &[u8; 32], body: &str) -> bool {
        engine
            .history(contact, None, 50)
            .unwrap()
            .iter()
            .any(|m| m.body == body)
    }

    fn serial_held(engine: &Engine, contact: &[u8; 32]) -> u32 {
        engine
            .with(|u| Ok(u.vault.contact_devices(contact)?))
            .unwrap()
            .into_iter()
            .map(|(_, b)| DeviceCertificate::from_bytes(&b).unwrap().fields.serial)
            .max()
            .unwrap()
    }

    /// The account is backed up, both sides go on talking (the backup's sessions and links are
    /// then stale), the laptop is wiped, and the backup is restored into a new directory with a
    /// new keyring and password: history and contacts are back, the restored device replaces
    /// its keys at the relay, the contact learns the new certificate from the session reset,
    /// and messages flow both ways again. A wrong recovery key restores nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restored_account_keeps_its_history_and_both_sides_go_on_talking() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let (alice, _) = account(dir.path(), &relay, "alice").await;
        let (bob, _) = account(dir.path(), &relay, "bob").await;
        let (alice_id, bob_id) = befriend(&alice, &bob).await;
        // Carol asks; Alice has not answered when the backup is made.
        let (carol, _) = account(dir.path(), &relay, "carol").await;
        let carol_id = carol.account_id().unwrap().0;
        carol
            .add_contact(&alice.invite().unwrap(), Some("alice"))
            .await
            .unwrap();
        wait_for("carol's request", || {
            alice
                .contacts()
                .unwrap()
                .iter()
                .any(|c| c.account_id == carol_id && c.state == ContactState::Incoming)
        })
        .await;
        alice.send_text(&bob_id, "before the backup").await.unwrap();
        wait_for("the first text", || {
            has(&bob, &alice_id, "before the backup")
        })
        .await;

        let file = dir.path().join("alice.tsbk");
        let made = alice.create_backup(&file, false).await.unwrap();
        let recovery = made
            .recovery_key
            .expect("the first backup makes the recovery key");
        assert!(alice.has_recovery_key().unwrap());
        assert_eq!(made.bytes, std::fs::metadata(&file).unwrap().len());
        let again = alice
            .create_backup(&dir.path().join("again.tsbk"), false)
            .await
            .unwrap();
        assert!(
            again.recovery_key.is_none(),
            "later backups use the same key"
        );

        bob.send_text(&alice_id, "after the backup").await.unwrap();
        wait_for("bob's text", || has(&alice, &bob_id, "after the backup")).await;
        alice.send_text(&bob_id, "also after").await.unwrap();
        wait_for("alice's text", || has(&bob, &alice_id, "also after")).await;
        let serial_before = serial_held(&bob, &alice_id);

        let report = tokio::task::spawn_blocking({
            let alice = alice.clone();
            move || alice.wipe()
        })
        .await
        .unwrap();
        assert!(report.had_vault);
        let bytes = std::fs::read(&file).unwrap();
        let options = |recovery_key| RestoreOptions {
            dir: dir.path().join("alice on a new laptop"),
            password: password("new alice"),
            kdf: KdfParams::MINIMUM,
            card: None,
            backup: bytes.clone(),
            recovery_key,
        };
        let wrong = RecoveryKey::generate(&mut rng());
        let refused = Engine::restore(
            options(wrong),
            Arc::new(MemorySecrets::default()),
            Arc::new(SystemClock),
        )
        .await;
        assert!(matches!(
            refused,
            Err(CoreError::Backup(BackupError::WrongKey))
        ));
        assert!(!Vault::exists(&dir.path().join("alice on a new laptop")));

        let typed = RecoveryKey::parse(&recovery.grouped().to_lowercase()).unwrap();
        let restored = Engine::restore(
            options(typed),
            Arc::new(MemorySecrets::default()),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        assert_eq!(restored.account_id().unwrap().0, alice_id);
        assert!(has(&restored, &bob_id, "before the backup"));
        assert!(
            !has(&restored, &bob_id, "after the backup"),
            "made after the backup"
        );
        assert!(restored.restore_pending().unwrap());
        restored.connect().await.unwrap();
        restored.finish_restore().await.unwrap();
        assert!(!restored.restore_pending().unwrap());
        wait_for("bob to learn the new certificate", || {
            serial_held(&bob, &alice_id) > serial_before
        })
        .await;
        assert_eq!(
            serial_held(&bob, &alice_id),
            restored.device_certificate().unwrap().0
        );

        // Carol was not told by a reset (her request was unanswered); the acceptance carries
        // the new certificate.
        assert!(serial_held(&carol, &alice_id) < serial_held(&bob, &alice_id));
        restored.answer_request(&carol_id, true).await.unwrap();
        wait_for("carol to see the acceptance", || {
            carol
                .contacts()
                .unwrap()
                .iter()
                .any(|c| c.account_id == alice_id && c.state == ContactState::Accepted)
        })
        .await;
        assert_eq!(serial_held(&carol, &alice_id), serial_held(&bob, &alice_id));

        bob.send_text(&alice_id, "welcome back").await.unwrap();
        wait_for("bob's text to the restored account", || {
            has(&restored, &bob_id, "welcome back")
        })
        .await;
        restored
            .send_text(&bob_id, "good to be back")
            .await
            .unwrap();
        wait_for("the restored account's text", || {
            has(&bob, &alice_id, "good to be back")
        })
        .await;
    }

    #[test]
    fn file_times_are_utc_and_sort_by_time() {
        assert_eq!(file_time(0), "19700101-000000");
        assert_eq!(file_time(951_782_400_000), "20000229-000000");
        assert_eq!(file_time(1_796_256_000_000 + 3_723_000), "20261203-010203");
        assert!(file_time(1_000_000_000_000) < file_time(1_000_000_001_000));
    }

    #[test]
    fn pruning_keeps_the_newest_scheduled_backups_and_nothing_else_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        for t in [
            "20260101-000000",
            "20260102-000000",
            "20260103-000000",
            "20260104-000000",
        ] {
            std::fs::write(dir.path().join(format!("{SCHEDULED_PREFIX}{t}.tsbk")), b"x").unwrap();
        }
        std::fs::write(dir.path().join("mine.tsbk"), b"x").unwrap();
        std::fs::write(dir.path().join("tessera-backup-notes.txt"), b"x").unwrap();
        prune_scheduled(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "mine.tsbk",
                "tessera-backup-20260102-000000.tsbk",
                "tessera-backup-20260103-000000.tsbk",
                "tessera-backup-20260104-000000.tsbk",
                "tessera-backup-notes.txt",
            ]
        );
    }
}
