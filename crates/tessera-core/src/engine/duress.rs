//! The duress password (`docs/duress.md`): set and cleared here; typed at unlock it has the
//! vault wipe the account and make an empty one ([`Vault::unlock`]), which this module then
//! fills with a new identity from the decoy record.

use super::*;

/// The settings a new account starts with. As JSON, the decoy record a duress unlock starts
/// the new account from, sealed in the key file's duress slot (at most
/// [`tessera_store::DURESS_RECORD_MAX`] bytes), taken from the account's settings when the
/// duress password is set.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct AccountSettings {
    /// The display name of the new account.
    pub name: String,
    /// The relay address (with its pinned key).
    pub relay: String,
    /// `direct` or `tor`.
    pub transport: String,
    /// The Arti configuration, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tor_config: Option<String>,
}

/// Generates the keys of a new account and stores them with its settings, in one transaction:
/// identity, relay authentication key, envelope key, device certificate (serial 1), epoch key
/// and registration id. Prekeys are made when the account registers (`Engine::connect`, or
/// `Engine::set_up` at creation).
pub(super) fn init_account(
    v: &Vault,
    settings: &AccountSettings,
    now: u64,
) -> Result<(), CoreError> {
    let AccountKeys {
        identity,
        auth,
        envelope,
        certificate,
        epoch,
        registration_id,
    } = AccountKeys::generate(now)?;
    v.transaction(|v| -> Result<(), CoreError> {
        v.set_local_identity(&identity, registration_id)?;
        let (ac, am) = auth.to_parts();
        v.set_local("auth.curve", &ac[..])?;
        v.set_local("auth.mldsa", &am[..])?;
        keys::store_device_keys(v, &envelope, &certificate, &epoch)?;
        // Not registered yet: the next connection registers (`Engine::set_up` records the
        // registration it makes at once).
        keys::set_registered_serial(v, 0)?;
        v.set_setting("relay", &settings.relay)?;
        v.set_setting("name", &settings.name)?;
        v.set_setting("transport", &settings.transport)?;
        if let Some(text) = &settings.tor_config {
            v.set_setting("tor_config_toml", text)?;
        }
        v.delete_local(tessera_store::PENDING_ACCOUNT)?;
        Ok(())
    })
}

/// The longest decoy name kept, in characters (the first-run screen allows as many).
const DECOY_NAME_MAX: usize = 64;

/// A duress password and the decoy record sealed with it.
type DuressSetting = (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>);

/// The keys of a new account.
struct AccountKeys {
    identity: AccountIdentity,
    auth: HybridSigningKey,
    envelope: EnvelopeKeyPair,
    certificate: DeviceCertificate,
    epoch: tessera_crypto::EpochSigningKey,
    registration_id: u32,
}

impl AccountKeys {
    fn generate(now: u64) -> Result<Self, CoreError> {
        let mut r = rng();
        let identity = AccountIdentity::generate(&mut r);
        let auth = HybridSigningKey::generate(&mut r);
        let envelope = EnvelopeKeyPair::generate(&mut r);
        let certificate = keys::issue_certificate(&identity, &auth, &envelope, 1, now, &mut r)?;
        let epoch = keys::new_epoch(&identity, now, &mut r)?;
        let registration_id = 1 + rand::Rng::random_range(&mut r, 0..16000u32);
        Ok(Self {
            identity,
            auth,
            envelope,
            certificate,
            epoch,
            registration_id,
        })
    }
}

/// After an unlock: a vault made by a duress unlock (or one whose making was interrupted
/// before its account was) gets its account now, from the decoy record it holds. Any other
/// unlock makes the same keys and drops them (cover work, `docs/duress.md`: the two unlocks
/// take about the same time).
pub(super) fn finish_pending(v: &Vault, now: u64) -> Result<(), CoreError> {
    let Some(record) = v.local(tessera_store::PENDING_ACCOUNT)? else {
        drop(AccountKeys::generate(now));
        return Ok(());
    };
    let settings: AccountSettings =
        serde_json::from_slice(&record).map_err(|_| CoreError::Vault(VaultError::Corrupt))?;
    init_account(v, &settings, now)
}

impl Engine {
    /// Sets the duress password (`docs/duress.md`): typed at unlock with the card, it wipes
    /// this account and opens a new, empty one named `decoy_name` (trimmed, at most 64
    /// characters; this account's name if `None` or blank) on the same relay. Needs the account's password and a fresh card read; the
    /// duress password must differ from the password.
    pub async fn set_duress(
        &self,
        password: Zeroizing<Vec<u8>>,
        card: Option<CardFactor>,
        duress: Zeroizing<Vec<u8>>,
        decoy_name: Option<String>,
    ) -> Result<(), CoreError> {
        let record = self.with(|u| {
            let name = match decoy_name.as_deref().map(str::trim) {
                Some(n) if !n.is_empty() => n.chars().take(DECOY_NAME_MAX).collect(),
                _ => setting(&u.vault, "name")?,
            };
            let record = AccountSettings {
                name,
                relay: setting(&u.vault, "relay")?,
                transport: setting(&u.vault, "transport")?,
                tor_config: u.vault.setting("tor_config_toml")?,
            };
            serde_json::to_vec(&record).map_err(|_| CoreError::Vault(VaultError::Corrupt))
        })?;
        let record = Zeroizing::new(record);
        self.rewrite_duress(password, card, Some((duress, record)))
            .await
    }

    /// Clears the duress password: from then on it is a wrong password like any other.
    pub async fn clear_duress(
        &self,
        password: Zeroizing<Vec<u8>>,
        card: Option<CardFactor>,
    ) -> Result<(), CoreError> {
        self.rewrite_duress(password, card, None).await
    }

    async fn rewrite_duress(
        &self,
        password: Zeroizing<Vec<u8>>,
        card: Option<CardFactor>,
        duress: Option<DuressSetting>,
    ) -> Result<(), CoreError> {
        let dir = self.inner.dir.clone();
        let secrets = self.inner.secrets.clone();
        let set = duress.is_some();
        tokio::task::spawn_blocking(move || {
            Vault::set_duress(
                &dir,
                &password,
                secrets.as_ref(),
                card.as_ref(),
                duress.as_ref().map(|(p, r)| (&p[..], &r[..])),
                &mut rng(),
            )
        })
        .await
        .map_err(|_| CoreError::Busy)??;
        self.with(|u| {
            u.vault.note_duress(set);
            Ok(())
        })
    }

    /// Whether a duress password is set.
    pub fn duress_configured(&self) -> Result<bool, CoreError> {
        self.with(|u| Ok(u.vault.duress_configured()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{account, befriend, password, relay};
    use super::*;

    fn pw(text: &str) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(text.as_bytes().to_vec())
    }

    /// Through the engine: the duress password opens a new identity named after the decoy
    /// record (a blank decoy name means the account's own, a long one is cut to 64
    /// characters), which registers and publishes its prekeys at its first connection, so a
    /// new contact can reach it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_duress_unlock_opens_a_new_account_that_others_can_reach() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let (alice, secrets) = account(dir.path(), &relay, "alice").await;
        let id = alice.account_id().unwrap();
        assert!(!alice.duress_configured().unwrap());
        assert!(matches!(
            alice
                .set_duress(password("alice"), None, password("alice"), None)
                .await,
            Err(CoreError::Vault(VaultError::DuressSameAsPassword))
        ));
        alice
            .set_duress(password("alice"), None, pw("run"), Some("   ".into()))
            .await
            .unwrap();
        assert!(alice.duress_configured().unwrap());
        alice.lock();
        let home = dir.path().join("alice");
        let decoy = Engine::unlock(&home, pw("run"), secrets.clone(), None)
            .await
            .unwrap();
        assert_ne!(decoy.account_id().unwrap(), id);
        assert!(decoy.contacts().unwrap().is_empty());
        assert!(!decoy.duress_configured().unwrap());
        assert_eq!(decoy.invite().unwrap().name, "alice");
        decoy.connect().await.unwrap();
        let (bob, _) = account(dir.path(), &relay, "bob").await;
        befriend(&bob, &decoy).await;
        // The decoy's own duress password, with a long name: cut to 64 characters.
        decoy
            .set_duress(pw("run"), None, pw("again"), Some("é".repeat(100)))
            .await
            .unwrap();
        decoy.lock();
        let second = Engine::unlock(&home, pw("again"), secrets, None)
            .await
            .unwrap();
        assert_eq!(second.invite().unwrap().name, "é".repeat(64));
    }
}
