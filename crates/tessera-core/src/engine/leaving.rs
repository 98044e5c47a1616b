//! Leaving for good (`docs/leaving.md`): contacts told, the account deleted at the relay, then
//! everything here wiped.

use tessera_messaging::content::contact::Deleted;

use super::*;

/// How long [`Engine::delete_account`] waits for the contacts' notices to reach the relay.
const TELL_CONTACTS_FOR: Duration = Duration::from_secs(60);

/// What leaving did.
#[derive(Debug)]
pub struct Left {
    /// Contacts whose "account deleted" notice the relay accepted.
    pub told: usize,
    /// Contacts it could not be handed over for in time (their mailbox full, their device
    /// gone): they find out when their messages fail.
    pub not_told: usize,
    /// The local wipe (as a panic wipe reports it).
    pub wipe: tessera_store::WipeReport,
}

impl Engine {
    /// Deletes the account for good (`docs/leaving.md`), in this order, stopping with
    /// [`CoreError::NotDeleted`] (nothing deleted) if the relay cannot be reached:
    ///
    /// 1. every contact with a session gets an `account_deleted` message (through the Signal
    ///    session, so it is known to come from this account) and the outbox is handed to the
    ///    relay, waiting up to a minute;
    /// 2. the relay deletes the account's devices, certificates, prekeys and mailboxes, on a
    ///    request signed by the account identity, and never registers the account again;
    /// 3. this device is wiped as by [`Engine::wipe`] (keys first, then files).
    ///
    /// The caller confirms with the password and the card first (the CLI and the desktop app
    /// do); the engine only needs to be unlocked.
    pub async fn delete_account(&self) -> Result<Left, CoreError> {
        let now = self.now_ms();
        let told: Vec<[u8; 32]> = self.with(|u| {
            u.vault
                .transaction(|v| -> Result<Vec<[u8; 32]>, CoreError> {
                    let mut told = Vec::new();
                    for c in v.contacts()? {
                        if matches!(c.state, ContactState::Accepted | ContactState::Requested) {
                            let to = AccountId(c.account_id);
                            queue(v, &to, &Content::AccountDeleted(Deleted {}), None, now)?;
                            told.push(c.account_id);
                        }
                    }
                    Ok(told)
                })
        })?;
        let unreachable =
            |e: CoreError| CoreError::NotDeleted(format!("the relay could not be reached ({e})"));
        let deadline = tokio::time::Instant::now() + TELL_CONTACTS_FOR;
        loop {
            self.connect().await.map_err(unreachable)?;
            self.flush_outbox().await.map_err(unreachable)?;
            if self.outbox_len()? == 0 || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let not_told = self.with(|u| {
            let waiting = u.vault.outbox()?;
            Ok(told
                .iter()
                .filter(|c| waiting.iter().any(|w| w.account_id == **c))
                .count())
        })?;

        let client = self.connect().await.map_err(unreachable)?;
        let proof =
            self.with(|u| Ok(client.account_deletion_proof(&u.me.identity, &mut rng())?))?;
        client
            .delete_account(proof)
            .await
            .map_err(|e| match e.code() {
                // Refused (a proof that does not verify): nothing was deleted.
                Some(_) => CoreError::NotDeleted(format!("the relay refused ({e})")),
                None => unreachable(CoreError::Net(e)),
            })?;
        tracing::info!(
            told = told.len() - not_told,
            not_told,
            "account deleted at the relay"
        );

        let engine = self.clone();
        let wipe = tokio::task::spawn_blocking(move || engine.wipe())
            .await
            .map_err(|_| CoreError::Busy)?;
        Ok(Left {
            told: told.len() - not_told,
            not_told,
            wipe,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    /// Alice leaves: Bob is told (a notice in the conversation, the contact marked deleted,
    /// nothing more can be sent), the relay forgets Alice and refuses her account for good,
    /// and nothing of Alice is left on her machine.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leaving_tells_contacts_deletes_at_the_relay_and_wipes_here() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let (alice, alice_secrets) = account(dir.path(), &relay, "alice").await;
        let (bob, _) = account(dir.path(), &relay, "bob").await;
        let (alice_id, _) = befriend(&alice, &bob).await;
        let vault_id =
            tessera_store::KeyFile::load(&dir.path().join("alice").join(tessera_store::KEY_FILE))
                .unwrap()
                .vault_id;
        let mut events = bob.subscribe();
        let runner = bob.clone();
        tokio::spawn(async move { runner.run().await });

        let left = alice.delete_account().await.unwrap();
        assert_eq!((left.told, left.not_told), (1, 0));
        assert!(left.wipe.had_vault && left.wipe.problems.is_empty());
        assert!(!dir.path().join("alice").exists());
        assert!(!alice.is_unlocked());
        assert!(
            alice_secrets
                .get(&tessera_store::vault_entry(&vault_id))
                .unwrap()
                .is_none(),
            "no keyring entry is left"
        );

        let deleted = loop {
            match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
                Ok(Ok(Event::ContactDeleted { contact })) => break contact,
                Ok(Ok(_)) => {}
                other => panic!("no ContactDeleted event: {other:?}"),
            }
        };
        assert_eq!(deleted, alice_id);
        let c = bob.contacts().unwrap();
        assert_eq!(c[0].state, ContactState::Deleted);
        let history = bob.history(&alice_id, None, 10).unwrap();
        assert!(history.iter().any(|m| m.kind == inbound::ACCOUNT_DELETED));
        assert!(matches!(
            bob.send_text(&alice_id, "still there?").await,
            Err(CoreError::ContactDeleted)
        ));
        // The relay has forgotten Alice: her bundle is gone.
        let client = bob.connect().await.unwrap();
        let e = client
            .fetch_bundle(
                &tessera_crypto::AccountId(alice_id),
                DEVICE_ID,
                bob.now_ms(),
            )
            .await
            .err();
        assert_eq!(
            e.and_then(|e| e.code()),
            Some(tessera_proto::ErrorCode::NotFound)
        );
    }
}
