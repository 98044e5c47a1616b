//! Account lifecycle: creating the account, unlocking, the card factor, the password, and key
//! maintenance on the engine's clock (`docs/engine.md`, "Account"; `docs/keys.md`).

use super::*;

/// What an unlock gets of the card: a read made already (tests, tools), or the reader to read
/// it on once the password opened the card's key.
enum CardIn {
    Read(Option<CardFactor>),
    Reader(Option<String>),
}

impl Engine {
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

    pub(super) async fn set_up(
        opts: CreateOptions,
        secrets: Arc<dyn SecretStore>,
        vault: Vault,
        transport: Transport,
        client: RelayClient,
        pushes: Pushes,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CoreError> {
        let now = clock.now_ms();
        let (transport_name, tor_config) = match &opts.transport {
            TransportConfig::Direct => ("direct", None),
            TransportConfig::Tor { config } => ("tor", config.clone()),
        };
        let settings = duress::AccountSettings {
            name: opts.name.clone(),
            relay: opts.relay.to_string(),
            transport: transport_name.into(),
            tor_config,
        };
        duress::init_account(&vault, &settings, now)?;
        let me = load_me(&vault, transport)?;
        let (public, certificate, auth) =
            (me.public.clone(), me.certificate.clone(), me.auth.clone());
        // Registered below; if that fails the vault is removed again.
        keys::set_registered_serial(&vault, certificate.fields.serial)?;
        let engine = Self::new(&opts.dir, secrets, Unlocked { vault, me }, clock);
        engine.forward_tor_progress();
        engine.watch_expiry();
        let (signed, wire) = engine.with(|u| {
            u.vault
                .transaction(|v| keys::new_batch(v, &u.me.identity, 1, now, &mut rng()))
        })?;
        client
            .register(&public, &certificate, &auth, &mut rng())
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

    /// Unlocks with the card on `reader` (or the first reader with a card) as [`Engine::unlock`]
    /// does, reading the card with the key the key file gives to the password
    /// ([`crate::card::open_and_tap`], `docs/card-key.md`), then moves the vault to a new card
    /// secret on that reader ([`crate::card::rotate_secret`]): a copy of the card made before
    /// stops opening the vault. A rotation that fails (card taken away) leaves the vault
    /// unlocked and the old secret working; [`Engine::card_check`] says what happened, and how
    /// often the card was read elsewhere since the last unlock. Returns the reader the card was
    /// read on too (`None` without the card factor).
    pub async fn unlock_card(
        dir: &Path,
        password: Zeroizing<Vec<u8>>,
        secrets: Arc<dyn SecretStore>,
        reader: Option<String>,
    ) -> Result<(Self, Option<String>), CoreError> {
        Self::unlock_inner(
            dir,
            password,
            secrets,
            CardIn::Reader(reader),
            Arc::new(SystemClock),
        )
        .await
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
        Ok(
            Self::unlock_inner(dir, password, secrets, CardIn::Read(card), clock)
                .await?
                .0,
        )
    }

    /// What the card check of this engine's unlock found (`None` without the card).
    pub fn card_check(&self) -> Option<crate::card::CardCheck> {
        self.inner.card_check.lock().ok().and_then(|c| c.clone())
    }

    async fn unlock_inner(
        dir: &Path,
        password: Zeroizing<Vec<u8>>,
        secrets: Arc<dyn SecretStore>,
        card: CardIn,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Option<String>), CoreError> {
        let d = dir.to_path_buf();
        let s2 = secrets.clone();
        let now = clock.now_ms();
        // A duress password wipes the account inside `Vault::unlock`, which then returns a new,
        // empty vault: its account is made here, and the unlock goes on as any other (nothing
        // tells the caller, the logs or the interface which password it was; its card secret
        // is rotated the same way).
        let (vault, check, reader) = tokio::task::spawn_blocking(move || {
            let (unlock, reader) = match card {
                CardIn::Read(card) => (
                    Vault::unlock(&d, &password, s2.as_ref(), card.as_ref(), &mut rng())?,
                    None,
                ),
                CardIn::Reader(reader) => {
                    let (opening, tap) =
                        crate::card::open_and_tap(&d, &password, s2.as_ref(), reader.as_deref())?;
                    let factor = tap.as_ref().map(|t| &t.factor);
                    let unlock = opening.finish(&password, s2.as_ref(), factor, &mut rng())?;
                    (unlock, tap.map(|t| t.reader))
                }
            };
            let mut vault = unlock.into_vault();
            let check = vault.take_card_rotation().map(|rotation| {
                let reads_elsewhere = rotation.reads_elsewhere();
                let started = std::time::Instant::now();
                let outcome = match &reader {
                    Some(reader) => crate::card::rotate_secret(s2.as_ref(), reader, rotation)
                        .map_err(|e| e.to_string()),
                    None => Err("no reader given for the card secret rotation".to_string()),
                };
                tracing::info!(
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    ok = outcome.is_ok(),
                    "card secret rotation"
                );
                if let Err(e) = &outcome {
                    tracing::warn!(error = %e, "the card secret was not rotated");
                }
                if reads_elsewhere > 0 {
                    tracing::warn!(
                        reads_elsewhere,
                        "the card was read elsewhere since the last unlock"
                    );
                }
                crate::card::CardCheck {
                    rotated: outcome.is_ok(),
                    rotation_error: outcome.err(),
                    reads_elsewhere,
                }
            });
            duress::finish_pending(&vault, now)?;
            Ok::<_, CoreError>((vault, check, reader))
        })
        .await
        .map_err(|_| CoreError::Busy)??;
        let transport = transport_config(&vault)?.open(dir)?;
        let mut me = load_me(&vault, transport)?;
        keys::maintain(&vault, &mut me, clock.now_ms(), &mut rng())?;
        let engine = Self::new(dir, secrets, Unlocked { vault, me }, clock);
        if let Ok(mut c) = engine.inner.card_check.lock() {
            *c = check;
        }
        // What expired while locked goes before anything is shown (docs/disappearing.md).
        engine.expire_now()?;
        engine.forward_tor_progress();
        engine.watch_expiry();
        Ok((engine, reader))
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

    /// Panic wipe (`docs/panic.md`): locks first (the vault closes and every key in memory is
    /// dropped; listeners get [`Event::Locked`] with [`LockReason::Wiped`]), then destroys the
    /// device secret and the key file, then the card's keys and every file of the account
    /// ([`tessera_store::wipe`]). Needs neither the password nor the card. The relay keeps the
    /// account's mailbox until it expires; nothing in it can be read without the wiped keys.
    /// Blocking (file system, the OS keyring): call it off the async threads.
    pub fn wipe(&self) -> tessera_store::WipeReport {
        self.lock_because(LockReason::Wiped);
        tessera_store::wipe(&self.inner.dir, self.inner.secrets.as_ref())
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
    /// with the card factor needs a fresh card read. `kdf` `None` keeps the Argon2id cost (and
    /// a duress password; another cost drops it, [`Vault::change_password`]).
    pub async fn change_password(
        &self,
        old: Zeroizing<Vec<u8>>,
        new: Zeroizing<Vec<u8>>,
        kdf: Option<KdfParams>,
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
    pub(super) fn maybe_maintain(&self) -> Result<(), CoreError> {
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

    pub(super) async fn refill_prekeys(&self) -> Result<(), CoreError> {
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::{account, password, relay};
    use super::*;
    use crate::CoreError;
    use tessera_store::{KdfParams, VaultError};
    use zeroize::Zeroizing;

    /// A vault opens with its own password only (a typed error otherwise, nothing changed);
    /// after a password change only the new one opens it, and it is the same account.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unlock_takes_the_right_password_only_and_a_changed_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let (alice, secrets) = account(dir.path(), &relay, "alice").await;
        let id = alice.account_id().unwrap();
        alice.lock();
        assert!(!alice.is_unlocked());
        let home = dir.path().join("alice");
        let wrong = Engine::unlock(
            &home,
            Zeroizing::new(b"not it".to_vec()),
            secrets.clone(),
            None,
        )
        .await;
        assert!(matches!(
            wrong,
            Err(CoreError::Vault(VaultError::WrongFactor))
        ));
        let again = Engine::unlock(&home, password("alice"), secrets.clone(), None)
            .await
            .unwrap();
        assert_eq!(again.account_id().unwrap(), id);
        let new = Zeroizing::new(b"a better password".to_vec());
        again
            .change_password(
                password("alice"),
                new.clone(),
                Some(KdfParams::MINIMUM),
                None,
            )
            .await
            .unwrap();
        again.lock();
        assert!(matches!(
            Engine::unlock(&home, password("alice"), secrets.clone(), None).await,
            Err(CoreError::Vault(VaultError::WrongFactor))
        ));
        let unlocked = Engine::unlock(&home, new, secrets, None).await.unwrap();
        assert_eq!(unlocked.account_id().unwrap(), id);
    }

    /// Panic wipe from an unlocked engine: listeners see it lock as wiped, the data directory
    /// and the keyring entry are gone, and unlocking finds no vault.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wipe_locks_then_leaves_nothing_to_unlock() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let (alice, secrets) = account(dir.path(), &relay, "alice").await;
        let home = dir.path().join("alice");
        let entry = tessera_store::vault_entry(
            &tessera_store::KeyFile::load(&home.join(tessera_store::KEY_FILE))
                .unwrap()
                .vault_id,
        );
        assert!(secrets.get(&entry).unwrap().is_some());
        let mut events = alice.subscribe();
        let report = alice.wipe();
        assert!(report.had_vault && report.problems.is_empty(), "{report:?}");
        assert!(!alice.is_unlocked());
        assert!(!home.exists());
        assert!(secrets.get(&entry).unwrap().is_none());
        let locked = loop {
            if let Event::Locked { reason } = events.recv().await.unwrap() {
                break reason;
            }
        };
        assert_eq!(locked, LockReason::Wiped);
        assert!(matches!(
            Engine::unlock(&home, password("alice"), secrets, None).await,
            Err(CoreError::Vault(VaultError::NoVault))
        ));
    }
}
