//! The note to self (`docs/conversations.md`, "Note to self"): a conversation with no other
//! account. The engine's API names it by our own account id wherever it takes a contact, so an
//! interface opens, writes, edits, reacts, sets a timer or a draft there as anywhere else;
//! nothing is sent (with linked devices, this is where they would be told).

use super::*;

/// The conversation the API's `account` names: our own account is the note to self, any other
/// the direct conversation with it.
pub(super) fn conversation_of(me: &AccountId, account: &[u8; 32]) -> [u8; 16] {
    if *account == me.0 {
        tessera_store::note_to_self_conversation(account)
    } else {
        tessera_store::direct_conversation(account)
    }
}

/// Queues `content` for the other side of the conversation with `account` (see [`queue`]);
/// in the note to self there is nobody to tell.
pub(super) fn queue_in(
    v: &Vault,
    me: &AccountId,
    account: &[u8; 32],
    content: &Content,
    message: Option<&[u8; 16]>,
    now: u64,
) -> Result<(), CoreError> {
    if *account == me.0 {
        return Ok(());
    }
    queue(v, &AccountId(*account), content, message, now)
}

impl Engine {
    /// Our own account as the conversation list shows the note to self.
    pub(super) fn me_as_contact(u: &Unlocked) -> Contact {
        Contact {
            account_id: u.me.account_id.0,
            name: u.me.name.clone(),
            account_public: u.me.public.to_bytes(),
            relay: u.me.relay.to_string(),
            state: ContactState::Accepted,
            created: 0,
        }
    }

    /// Opens the note to self (it then stays in the conversation list) and returns our own
    /// account as a contact, whose account id names it.
    pub fn open_note_to_self(&self) -> Result<Contact, CoreError> {
        let now = i64::try_from(self.now_ms()).unwrap_or(i64::MAX);
        self.with(|u| {
            u.vault.open_note_to_self(&u.me.account_id.0, now)?;
            Ok(Self::me_as_contact(u))
        })
    }

    /// Refuses an operation that only makes sense with another account.
    pub(super) fn not_me(&self, account: &[u8; 32]) -> Result<(), CoreError> {
        self.with(|u| {
            if *account == u.me.account_id.0 {
                Err(CoreError::OwnAccount)
            } else {
                Ok(())
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::DeleteFor;
    use super::super::testing::{account, befriend, relay, wait_for};
    use super::*;

    /// The note to self takes texts, replies, edits, reactions, deletions, a timer and a draft
    /// like any conversation, keeps them here only (nothing reaches the outbox or a contact),
    /// and refuses what needs another account.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_note_to_self_keeps_everything_here_and_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let (alice, _) = account(dir.path(), &relay, "alice").await;
        let (bob, _) = account(dir.path(), &relay, "bob").await;
        let (alice_id, bob_id) = befriend(&alice, &bob).await;
        let with_bob = alice.send_text(&bob_id, "hi bob").await.unwrap();
        wait_for("the text to bob", || {
            bob.message(&with_bob).unwrap().is_some()
        })
        .await;
        wait_for("alice's outbox to empty", || {
            alice.outbox_len().unwrap() == 0
        })
        .await;
        assert!(
            alice
                .conversations()
                .unwrap()
                .iter()
                .all(|c| !c.note_to_self)
        );

        assert_eq!(alice.open_note_to_self().unwrap().account_id, alice_id);
        let list = alice.conversations().unwrap();
        let notes = list.iter().find(|c| c.note_to_self).unwrap();
        assert_eq!(
            (notes.contact.account_id, notes.contact.name.as_str()),
            (alice_id, "alice")
        );
        assert_ne!(notes.id, tessera_store::direct_conversation(&alice_id));

        let milk = alice.send_text(&alice_id, "buy oat milk").await.unwrap();
        let m = alice.message(&milk).unwrap().unwrap();
        assert_eq!(
            (m.status, m.outgoing, m.contact),
            (MessageStatus::Sent, true, alice_id)
        );
        assert_eq!(m.conversation, notes.id);
        let reply = alice
            .send_reply(&alice_id, "and bread", &milk)
            .await
            .unwrap();
        alice
            .edit_message(&milk, "buy oat milk, 2 l")
            .await
            .unwrap();
        alice.react(&milk, Some("✅")).await.unwrap();
        assert_eq!(alice.reactions(&milk).unwrap().len(), 1);
        alice
            .delete_message(&reply, DeleteFor::Everyone)
            .await
            .unwrap();
        alice.set_timer(&alice_id, 3_600).await.unwrap();
        assert_eq!(alice.timer(&alice_id).unwrap(), 3_600);
        let timed = alice.send_text(&alice_id, "gone in an hour").await.unwrap();
        assert_eq!(
            alice.message(&timed).unwrap().unwrap().expires_in,
            Some(3_600)
        );
        alice
            .update_conversation(&alice_id, |s| {
                s.draft = Some("half a tho".into());
                s.pinned = true;
            })
            .unwrap();
        assert_eq!(alice.outbox_len().unwrap(), 0, "a note is never sent");

        let history = alice.history(&alice_id, None, 50).unwrap();
        let bodies: Vec<&str> = history.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["buy oat milk, 2 l", "", "3600", "gone in an hour"]);
        assert!(history.iter().all(|m| m.conversation == notes.id));
        assert_eq!(alice.search("oat", 10).unwrap()[0].message_id, milk);
        assert!(alice.history(&bob_id, None, 50).unwrap().len() == 1);
        let list = alice.conversations().unwrap();
        assert!(list[0].note_to_self, "pinned first");
        assert_eq!(list[0].settings.draft.as_deref(), Some("half a tho"));

        // Nothing needing another account.
        assert!(matches!(alice.block(&alice_id), Err(CoreError::OwnAccount)));
        assert!(matches!(
            alice.remove_contact(&alice_id),
            Err(CoreError::OwnAccount)
        ));

        // Bob saw none of it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen: Vec<String> = bob
            .history(&alice_id, None, 50)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(seen, ["hi bob"]);

        // Deleting the note to self's messages leaves the rest.
        alice.delete_conversation(&alice_id).unwrap();
        assert!(alice.history(&alice_id, None, 50).unwrap().is_empty());
        assert!(alice.search("oat", 10).unwrap().is_empty());
        assert_eq!(alice.history(&bob_id, None, 50).unwrap().len(), 1);
    }
}
