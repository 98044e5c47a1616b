//! Contacts: adding from an invite, answering requests, finding, safety numbers
//! (`docs/engine.md`, "Invites and contacts").

use super::*;

impl Engine {
    /// Adds a contact from their invite: fetches and verifies their bundle (the keys must hash
    /// to the invite's account id), starts the session and queues a contact request (returns
    /// once it is committed; it is delivered in the background). If they
    /// already asked us, this accepts their request instead.
    pub async fn add_contact(
        &self,
        invite: &Invite,
        name: Option<&str>,
    ) -> Result<Contact, CoreError> {
        if let Some(mut existing) = self.with(|u| Ok(u.vault.contact(&invite.account_id.0)?))? {
            if let Some(n) = name.filter(|n| !n.is_empty() && *n != existing.name) {
                existing.name = n.to_string();
                self.with(|u| {
                    u.vault.put_contact(&existing).map_err(|e| match e {
                        VaultError::Sqlite(_) => CoreError::NameTaken,
                        e => e.into(),
                    })
                })?;
            }
            if existing.state == ContactState::Incoming {
                return self.answer_request(&existing.account_id, true).await;
            }
            return Ok(existing);
        }
        let client = self.connect().await?;
        let bundle = client
            .fetch_bundle(&invite.account_id, DEVICE_ID, self.now_ms())
            .await?;
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| invite.name.clone());
        let name = if name.is_empty() {
            invite.account_id.to_string()
        } else {
            name
        };
        self.maybe_maintain()?;
        let now = self.now_ms();
        let contact = self.with(|u| {
            let me = &u.me;
            let account = invite.account_id;
            u.vault.transaction(|v| -> Result<Contact, CoreError> {
                let contact = Contact {
                    account_id: account.0,
                    name: name.clone(),
                    account_public: bundle.account.to_bytes(),
                    relay: invite.relay.to_string(),
                    state: ContactState::Requested,
                    created: now as i64,
                };
                v.put_contact(&contact).map_err(|e| match e {
                    VaultError::Sqlite(_) => CoreError::NameTaken,
                    e => e.into(),
                })?;
                v.put_contact_device(&account.0, DEVICE_ID, &bundle.certificate.to_bytes())?;
                v.accept_identity(&account.to_string(), &bundle.account.signal_identity_key())?;
                let lib = bundle
                    .signed
                    .bundle(&bundle.account, bundle.one_time.as_ref())?;
                let addr = address(&account, DEVICE_ID)?;
                let (mut s, mut i) = (v.signal(), v.signal());
                process_prekey_bundle(&addr, &mut s, &mut i, &lib, at(now), &mut rng())
                    .run_to_end()?;
                let request = Content::ContactRequest(contact::Request {
                    name: me.name.clone(),
                    relay: me.relay.to_string(),
                    certificate: base64_encode(&me.certificate.to_bytes()),
                });
                queue(v, &account, &request, None, now)?;
                Ok(contact)
            })
        })?;
        // Committed: the request goes out in the background, as a text does.
        self.kick();
        Ok(contact)
    }

    /// Starts [`Engine::reset_session`] in the background, unless the session with `contact`
    /// was reset within the last hour.
    pub(super) fn reset_session_soon(&self, contact: [u8; 32]) {
        let now = self.now_ms();
        {
            let Ok(mut resets) = self.inner.resets.lock() else {
                return;
            };
            if resets
                .get(&contact)
                .is_some_and(|last| now < last.saturating_add(super::inbound::RESET_EVERY_MS))
            {
                return;
            }
            resets.insert(contact, now);
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let engine = self.clone();
            rt.spawn(async move {
                if let Err(e) = engine.reset_session(&contact).await {
                    tracing::warn!(error = %e, "session reset failed");
                }
            });
        }
    }

    /// Replaces the Signal session with `contact` by one built from their current bundle and
    /// sends a `session_reset` in it (`docs/messaging.md`, "Quarantine"): after a message from
    /// them did not decrypt, both sides continue on the new session. Only with someone we
    /// talk to (accepted, or asked by us), and only with the account keys we already know.
    pub async fn reset_session(&self, contact: &[u8; 32]) -> Result<(), CoreError> {
        let known = self
            .with(|u| Ok(u.vault.contact(contact)?))?
            .ok_or(CoreError::UnknownContact)?;
        if !matches!(
            known.state,
            ContactState::Accepted | ContactState::Requested
        ) {
            return Ok(());
        }
        let account = AccountId(*contact);
        let client = self.connect().await?;
        let bundle = client
            .fetch_bundle(&account, DEVICE_ID, self.now_ms())
            .await?;
        if bundle.account.to_bytes() != known.account_public {
            return Err(CoreError::IdentityChanged(account.to_string()));
        }
        self.maybe_maintain()?;
        let now = self.now_ms();
        self.with(|u| {
            u.vault.transaction(|v| -> Result<(), CoreError> {
                v.put_contact_device(contact, DEVICE_ID, &bundle.certificate.to_bytes())?;
                let lib = bundle
                    .signed
                    .bundle(&bundle.account, bundle.one_time.as_ref())?;
                let addr = address(&account, DEVICE_ID)?;
                let (mut s, mut i) = (v.signal(), v.signal());
                process_prekey_bundle(&addr, &mut s, &mut i, &lib, at(now), &mut rng())
                    .run_to_end()?;
                // Our certificate rides along: after a restore (docs/backup.md) it is new, and
                // the contact must seal to its envelope key from now on.
                let reset = Content::SessionReset(tessera_messaging::content::session::Reset {
                    certificate: Some(base64_encode(&u.me.certificate.to_bytes())),
                });
                queue(v, &account, &reset, None, now)
            })
        })?;
        tracing::info!("reset the Signal session with a contact");
        self.kick();
        Ok(())
    }

    /// Forgets the Signal session with `contact` (as a vault restored from an old backup
    /// would have lost it). For tests of the automatic reset.
    #[doc(hidden)]
    pub fn forget_session(&self, contact: &[u8; 32]) -> Result<bool, CoreError> {
        let addr = address(&AccountId(*contact), DEVICE_ID)?;
        self.with(|u| Ok(u.vault.delete_session(addr.name(), DEVICE_ID)?))
    }

    /// Accepts or rejects a contact's request.
    pub async fn answer_request(
        &self,
        account: &[u8; 32],
        accept: bool,
    ) -> Result<Contact, CoreError> {
        self.refresh_contact(account).await;
        self.maybe_maintain()?;
        let now = self.now_ms();
        let contact = self.with(|u| {
            let me = &u.me;
            u.vault.transaction(|v| -> Result<Contact, CoreError> {
                let mut c = v.contact(account)?.ok_or(CoreError::UnknownContact)?;
                let content = if accept {
                    c.state = ContactState::Accepted;
                    Content::ContactAccept(contact::Accept {
                        name: me.name.clone(),
                        // Newer than the invite's after a rotation or a restore.
                        certificate: Some(base64_encode(&me.certificate.to_bytes())),
                    })
                } else {
                    c.state = ContactState::Rejected;
                    Content::ContactReject(contact::Reject {})
                };
                v.set_contact_state(account, c.state)?;
                queue(v, &AccountId(*account), &content, None, now)?;
                if accept {
                    // What they sent while they were a stranger got no receipt: it does now.
                    let waiting = v.incoming_ids(account)?;
                    for chunk in waiting.chunks(MAX_RECEIPT_IDS) {
                        let receipt = Content::Receipt(Receipt {
                            kind: ReceiptKind::Delivered,
                            ids: chunk.iter().copied().map(MessageId).collect(),
                        });
                        queue(v, &AccountId(*account), &receipt, None, now)?;
                    }
                }
                Ok(c)
            })
        })?;
        self.kick();
        Ok(contact)
    }

    /// Finds a contact by the name given when adding it, or by account id text.
    pub fn find_contact(&self, name_or_id: &str) -> Result<Contact, CoreError> {
        self.with(|u| {
            if let Some(c) = u.vault.contact_by_name(name_or_id)? {
                return Ok(c);
            }
            if let Ok(id) = name_or_id.parse::<AccountId>()
                && let Some(c) = u.vault.contact(&id.0)?
            {
                return Ok(c);
            }
            Err(CoreError::UnknownContact)
        })
    }

    /// All contacts.
    pub fn contacts(&self) -> Result<Vec<Contact>, CoreError> {
        self.with(|u| Ok(u.vault.contacts()?))
    }

    /// Whether a notification for a message from `contact` may show its text (the user's
    /// setting aside): only for someone we talk to, never for a request or a stranger.
    pub fn may_show_content(&self, contact: &[u8; 32]) -> bool {
        self.with(|u| Ok(u.vault.contact(contact)?))
            .ok()
            .flatten()
            .is_some_and(|c| standing(c.state).notifies_with_content())
    }

    /// The safety number shared with a contact (60 digits).
    pub fn safety_number(&self, contact: &[u8; 32]) -> Result<(String, bool, bool), CoreError> {
        self.with(|u| {
            let c = u.vault.contact(contact)?.ok_or(CoreError::UnknownContact)?;
            let theirs = AccountPublic::from_bytes(&c.account_public)?;
            let n = SafetyNumber::new(&u.me.public, &theirs);
            let rec = u.vault.identity_record(&AccountId(*contact).to_string())?;
            let (verified, changed) = rec
                .map(|r| (r.verified, r.changed))
                .unwrap_or((false, false));
            Ok((n.digits(), verified, changed))
        })
    }

    /// Marks a contact verified (after comparing safety numbers).
    pub fn verify(&self, contact: &[u8; 32]) -> Result<(), CoreError> {
        self.with(|u| {
            u.vault
                .set_verified(&AccountId(*contact).to_string(), true)?
                .then_some(())
                .ok_or(CoreError::UnknownContact)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{account, befriend, relay};
    use crate::{ContactState, CoreError};

    /// An invite makes a request on the other side (a stranger there: no content shown), the
    /// answer makes both accepted; both compute the same safety number, verification sticks,
    /// and unknown names are a typed error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_answered_makes_two_contacts_with_one_safety_number() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let (alice, _) = account(dir.path(), &relay, "alice").await;
        let (bob, _) = account(dir.path(), &relay, "bob").await;
        assert!(matches!(
            alice.find_contact("b"),
            Err(CoreError::UnknownContact)
        ));
        let (alice_id, bob_id) = befriend(&alice, &bob).await;
        let b = alice.find_contact("b").unwrap();
        assert_eq!(b.account_id, bob_id);
        assert_eq!(b.state, ContactState::Accepted);
        assert_eq!(
            alice
                .find_contact(&bob_id_text(&bob_id))
                .unwrap()
                .account_id,
            bob_id
        );
        assert_eq!(bob.find_contact("a").unwrap().state, ContactState::Accepted);
        assert!(alice.may_show_content(&bob_id));
        assert!(!alice.may_show_content(&[0x77; 32]));
        let (mine, verified, changed) = alice.safety_number(&bob_id).unwrap();
        let (theirs, _, _) = bob.safety_number(&alice_id).unwrap();
        assert_eq!(mine, theirs);
        assert_eq!(mine.chars().filter(char::is_ascii_digit).count(), 60);
        assert!(!verified && !changed);
        alice.verify(&bob_id).unwrap();
        assert!(alice.safety_number(&bob_id).unwrap().1);
        assert!(matches!(
            alice.safety_number(&[0x77; 32]),
            Err(CoreError::UnknownContact)
        ));
    }

    fn bob_id_text(id: &[u8; 32]) -> String {
        tessera_crypto::AccountId(*id).to_string()
    }
}
