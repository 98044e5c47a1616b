//! Managing contacts and conversations (`docs/conversations.md`): block and unblock, remove a
//! contact, a conversation's settings (archive, pin, mute, mark unread, draft) and deleting
//! its messages here; the read-receipt setting.

use tessera_store::ConversationSettings;

use super::*;

/// The vault setting that turns read receipts off (`off`) both ways.
pub const READ_RECEIPTS_SETTING: &str = "read_receipts";

/// Whether read receipts are on (the default): sent when we read, shown when they read.
pub(super) fn read_receipts_on(v: &Vault) -> Result<bool, CoreError> {
    Ok(v.setting(READ_RECEIPTS_SETTING)?.as_deref() != Some("off"))
}

/// The vault setting that turns typing indicators off (`off`) both ways.
pub const TYPING_SETTING: &str = "typing_indicators";

/// Whether typing indicators are on (the default): sent while we type, shown while they do.
pub(super) fn typing_on(v: &Vault) -> Result<bool, CoreError> {
    Ok(v.setting(TYPING_SETTING)?.as_deref() != Some("off"))
}

impl Engine {
    /// Blocks `account` (a contact or not): from now on what it sends — messages, requests,
    /// reactions, calls — is dropped without a receipt, and nothing is sent to it. Its
    /// messages already here stay.
    pub fn block(&self, account: &[u8; 32]) -> Result<(), CoreError> {
        self.not_me(account)?;
        let now = i64::try_from(self.now_ms()).unwrap_or(i64::MAX);
        self.with(|u| Ok(u.vault.set_blocked(account, true, now)?))
    }

    /// Unblocks `account`: new messages are delivered again (what it sent while blocked is
    /// gone).
    pub fn unblock(&self, account: &[u8; 32]) -> Result<(), CoreError> {
        self.with(|u| Ok(u.vault.set_blocked(account, false, 0)?))
    }

    /// Whether `account` is blocked.
    pub fn is_blocked(&self, account: &[u8; 32]) -> Result<bool, CoreError> {
        self.with(|u| Ok(u.vault.is_blocked(account)?))
    }

    /// Removes a contact here: the conversation and its messages, the devices, what waits in
    /// the outbox for them and the Signal sessions. Nothing is sent; if they write again they
    /// arrive as a stranger, in the request box.
    pub fn remove_contact(&self, contact: &[u8; 32]) -> Result<(), CoreError> {
        self.not_me(contact)?;
        self.with(|u| {
            u.vault.transaction(|v| -> Result<(), CoreError> {
                v.delete_sessions(&AccountId(*contact).to_string())?;
                if !v.remove_contact(contact)? {
                    return Err(CoreError::UnknownContact);
                }
                Ok(())
            })
        })?;
        self.sweep_attachment_files();
        Ok(())
    }

    /// Deletes every message of the conversation with `contact` (our own account: the note to
    /// self) here; the contact stays.
    pub fn delete_conversation(&self, contact: &[u8; 32]) -> Result<(), CoreError> {
        self.with(|u| {
            if *contact != u.me.account_id.0 {
                u.vault.contact(contact)?.ok_or(CoreError::UnknownContact)?;
            }
            Ok(u.vault.delete_conversation(contact)?)
        })?;
        self.sweep_attachment_files();
        Ok(())
    }

    /// The settings of the conversation with `contact`.
    pub fn conversation_settings(
        &self,
        contact: &[u8; 32],
    ) -> Result<ConversationSettings, CoreError> {
        self.with(|u| {
            let conversation = conversation_of(&u.me.account_id, contact);
            Ok(u.vault.conversation_settings(&conversation)?)
        })
    }

    /// Changes the settings of the conversation with `contact` (local only: the contact learns
    /// nothing).
    pub fn update_conversation(
        &self,
        contact: &[u8; 32],
        change: impl FnOnce(&mut ConversationSettings),
    ) -> Result<ConversationSettings, CoreError> {
        let now = i64::try_from(self.now_ms()).unwrap_or(i64::MAX);
        self.with(|u| {
            let conversation = conversation_of(&u.me.account_id, contact);
            u.vault
                .transaction(|v| -> Result<ConversationSettings, CoreError> {
                    if *contact == u.me.account_id.0 {
                        v.open_note_to_self(contact, now)?;
                    } else {
                        v.contact(contact)?.ok_or(CoreError::UnknownContact)?;
                    }
                    let mut s = v.conversation_settings(&conversation)?;
                    change(&mut s);
                    if s.draft.as_ref().is_some_and(|d| d.len() > crate::MAX_TEXT) {
                        return Err(CoreError::TooLong);
                    }
                    v.set_conversation_settings(&conversation, &s)?;
                    Ok(s)
                })
        })
    }

    /// Tells `contact` we started (`on`) or stopped typing (`docs/conversations.md` §Typing).
    /// Nothing is sent when typing indicators are off, or to anyone but an accepted, unblocked
    /// contact; an interface calls it at most every few seconds while the person types.
    pub async fn send_typing(&self, contact: &[u8; 32], on: bool) -> Result<(), CoreError> {
        let now = self.now_ms();
        let queued = self.with(|u| {
            u.vault.transaction(|v| -> Result<bool, CoreError> {
                let accepted = v
                    .contact(contact)?
                    .is_some_and(|c| c.state == ContactState::Accepted);
                if !typing_on(v)? || !accepted || v.is_blocked(contact)? {
                    return Ok(false);
                }
                let content =
                    Content::Typing(tessera_messaging::content::typing::Typing { sent: now, on });
                queue(v, &AccountId(*contact), &content, None, now)?;
                Ok(true)
            })
        })?;
        if queued {
            self.kick();
        }
        Ok(())
    }

    /// Whether notifications for `contact`'s messages are off now (muted).
    pub fn muted(&self, contact: &[u8; 32]) -> Result<bool, CoreError> {
        let now = i64::try_from(self.now_ms()).unwrap_or(i64::MAX);
        Ok(self.conversation_settings(contact)?.muted_at(now))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{account, befriend, relay, wait_for};
    use super::*;

    /// A blocked contact's messages are dropped without receipts (theirs stays "sent"); we
    /// cannot write to them; after unblocking new messages flow and are receipted again. With
    /// read receipts off, neither side sees "read".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_drops_without_receipts_and_read_receipts_off_goes_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let (alice, _) = account(dir.path(), &relay, "alice").await;
        let (bob, _) = account(dir.path(), &relay, "bob").await;
        let (alice_id, bob_id) = befriend(&alice, &bob).await;

        alice.block(&bob_id).unwrap();
        assert!(alice.is_blocked(&bob_id).unwrap());
        assert!(matches!(
            alice.send_text(&bob_id, "x").await,
            Err(CoreError::Blocked)
        ));
        let dropped = bob
            .send_text(&alice_id, "you will not see this")
            .await
            .unwrap();
        wait_for("the relay to take it", || {
            bob.message(&dropped).unwrap().unwrap().status == MessageStatus::Sent
        })
        .await;
        // Alice's engine takes it from the relay and drops it: a later message after the
        // unblock arrives, the dropped one never does and is never receipted.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(alice.message(&dropped).unwrap().is_none());
        alice.unblock(&bob_id).unwrap();
        let kept = bob.send_text(&alice_id, "and this you see").await.unwrap();
        wait_for("the text after the unblock", || {
            alice.message(&kept).unwrap().is_some()
        })
        .await;
        wait_for("its delivery receipt", || {
            bob.message(&kept).unwrap().unwrap().status == MessageStatus::Delivered
        })
        .await;
        assert!(alice.message(&dropped).unwrap().is_none());
        assert_eq!(
            bob.message(&dropped).unwrap().unwrap().status,
            MessageStatus::Sent
        );

        // Read receipts off at Alice: she sends none, and does not see Bob's.
        alice.set_app_setting(READ_RECEIPTS_SETTING, "off").unwrap();
        alice.mark_read(&bob_id).await.unwrap();
        let mine = alice.send_text(&bob_id, "read me").await.unwrap();
        wait_for("alice's text", || bob.message(&mine).unwrap().is_some()).await;
        bob.mark_read(&alice_id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            bob.message(&kept).unwrap().unwrap().status,
            MessageStatus::Delivered
        );
        assert_ne!(
            alice.message(&mine).unwrap().unwrap().status,
            MessageStatus::Read
        );
    }

    /// The next Typing event `events` carries within a few seconds, if any.
    async fn next_typing(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Option<bool> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(Event::Typing { on, .. })) => return Some(on),
                Ok(Ok(_)) => {}
                _ => return None,
            }
        }
    }

    /// Typing indicators reach a contact; off at either side, nothing shows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn typing_indicators_reach_a_contact_unless_either_side_turned_them_off() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let (alice, _) = account(dir.path(), &relay, "alice").await;
        let (bob, _) = account(dir.path(), &relay, "bob").await;
        let (_, bob_id) = befriend(&alice, &bob).await;
        let mut events = bob.subscribe();
        alice.send_typing(&bob_id, true).await.unwrap();
        assert_eq!(next_typing(&mut events).await, Some(true));
        alice.send_typing(&bob_id, false).await.unwrap();
        assert_eq!(next_typing(&mut events).await, Some(false));
        // Off at Bob: he does not see Alice's.
        bob.set_app_setting(TYPING_SETTING, "off").unwrap();
        alice.send_typing(&bob_id, true).await.unwrap();
        assert_eq!(next_typing(&mut events).await, None);
        // Off at Alice: she sends none (Bob on again would otherwise show it).
        bob.set_app_setting(TYPING_SETTING, "on").unwrap();
        alice.set_app_setting(TYPING_SETTING, "off").unwrap();
        alice.send_typing(&bob_id, true).await.unwrap();
        assert_eq!(next_typing(&mut events).await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conversation_settings_and_removing_a_contact() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let (alice, _) = account(dir.path(), &relay, "alice").await;
        let (bob, _) = account(dir.path(), &relay, "bob").await;
        let (_, bob_id) = befriend(&alice, &bob).await;
        let s = alice
            .update_conversation(&bob_id, |s| {
                s.pinned = true;
                s.muted_until = i64::MAX;
                s.draft = Some("later".into());
            })
            .unwrap();
        assert!(s.pinned && alice.muted(&bob_id).unwrap());
        assert_eq!(alice.conversation_settings(&bob_id).unwrap(), s);
        alice.send_text(&bob_id, "to be removed").await.unwrap();
        alice.remove_contact(&bob_id).unwrap();
        assert!(alice.contacts().unwrap().is_empty());
        assert!(alice.search("removed", 10).unwrap().is_empty());
        assert!(matches!(
            alice.remove_contact(&bob_id),
            Err(CoreError::UnknownContact)
        ));
    }
}
