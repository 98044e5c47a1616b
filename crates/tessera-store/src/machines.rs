//! The vault as the storage of tessera-messaging's state machines (`tessera_messaging::store`):
//! the SQLCipher versions of its small traits.

use tessera_messaging::inbound::{Standing, TimeFlag};
use tessera_messaging::store::{Contacts, Messages, Status, StoredMessage};
use tessera_messaging::{AccountId, ConversationId, MessageId};

use crate::{ContactState, Message, MessageStatus, Vault, VaultError};

/// Where a contact in `state` stands (tessera-messaging's policy for strangers and requests).
pub fn standing(state: ContactState) -> Standing {
    match state {
        ContactState::Requested => Standing::Requested,
        ContactState::Incoming => Standing::Incoming,
        ContactState::Accepted => Standing::Accepted,
        ContactState::Rejected | ContactState::Deleted => Standing::Rejected,
    }
}

fn to_status(s: MessageStatus) -> Status {
    match s {
        MessageStatus::Pending => Status::Pending,
        MessageStatus::Failed => Status::Failed,
        MessageStatus::Sent => Status::Sent,
        MessageStatus::Delivered => Status::Delivered,
        MessageStatus::Read => Status::Read,
        MessageStatus::Received => Status::Received,
    }
}

fn from_status(s: Status) -> MessageStatus {
    match s {
        Status::Pending => MessageStatus::Pending,
        Status::Failed => MessageStatus::Failed,
        Status::Sent => MessageStatus::Sent,
        Status::Delivered => MessageStatus::Delivered,
        Status::Read => MessageStatus::Read,
        Status::Received => MessageStatus::Received,
    }
}

fn to_stored(m: Message) -> StoredMessage {
    StoredMessage {
        id: MessageId(m.message_id),
        conversation: ConversationId(m.conversation),
        peer: AccountId(m.contact),
        outgoing: m.outgoing,
        body: m.body,
        sent: u64::try_from(m.sent).unwrap_or(0),
        received: m.received.and_then(|r| u64::try_from(r).ok()),
        time_flag: match m.time_flag.as_deref() {
            Some("future") => Some(TimeFlag::Future),
            Some("too_old") => Some(TimeFlag::TooOld),
            _ => None,
        },
        kind: m.kind,
        status: to_status(m.status),
        reply_to: m.reply_to.map(MessageId),
        edited: m.edited.and_then(|e| u64::try_from(e).ok()),
        expires_in: m.expires_in.and_then(|s| u32::try_from(s).ok()),
        preview: m.preview,
    }
}

impl Contacts for &Vault {
    type Error = VaultError;
    fn standing(&self, account: &AccountId) -> Result<Standing, VaultError> {
        Ok(self
            .contact(&account.0)?
            .map_or(Standing::Stranger, |c| standing(c.state)))
    }
}

impl Messages for &Vault {
    type Error = VaultError;

    fn insert(&mut self, m: &StoredMessage) -> Result<bool, VaultError> {
        let stored = self.insert_message(&Message {
            id: 0,
            conversation: m.conversation.0,
            contact: m.peer.0,
            message_id: m.id.0,
            outgoing: m.outgoing,
            body: m.body.clone(),
            sent: i64::try_from(m.sent).unwrap_or(i64::MAX),
            received: m.received.and_then(|r| i64::try_from(r).ok()),
            status: from_status(m.status),
            read: m.outgoing,
            kind: m.kind.clone(),
            failure: None,
            time_flag: m.time_flag.map(|f| f.as_str().to_string()),
            reply_to: m.reply_to.map(|r| r.0),
            edited: m.edited.and_then(|e| i64::try_from(e).ok()),
            expires_in: m.expires_in.map(i64::from),
            // Theirs count from reading (`Vault::mark_read`); ours from sending.
            expire_at: match (m.outgoing, m.expires_in) {
                (true, Some(s)) => i64::try_from(m.sent)
                    .ok()
                    .map(|sent| sent.saturating_add(i64::from(s) * 1_000)),
                _ => None,
            },
            preview: m.preview.clone(),
        })?;
        Ok(stored.is_some())
    }

    fn get(&self, id: &MessageId) -> Result<Option<StoredMessage>, VaultError> {
        Ok(self.message(&id.0)?.map(to_stored))
    }

    fn advance(&mut self, id: &MessageId, status: Status) -> Result<bool, VaultError> {
        self.advance_status(&id.0, from_status(status))
    }

    fn newest(&self, conversation: &ConversationId) -> Result<Option<StoredMessage>, VaultError> {
        Ok(self
            .conversation_history(&conversation.0, None, 1)?
            .into_iter()
            .next()
            .map(to_stored))
    }

    fn edit(&mut self, id: &MessageId, body: &str, at: u64) -> Result<(), VaultError> {
        self.edit_message(&id.0, body, i64::try_from(at).unwrap_or(i64::MAX))
            .map(drop)
    }

    fn erase(&mut self, id: &MessageId) -> Result<(), VaultError> {
        self.erase_message(&id.0).map(drop)
    }

    fn reaction(
        &self,
        id: &MessageId,
        who: &AccountId,
    ) -> Result<Option<(String, u64)>, VaultError> {
        Ok(Vault::reaction(self, &id.0, &who.0)?
            .map(|(emoji, at)| (emoji, u64::try_from(at).unwrap_or(0))))
    }

    fn react(
        &mut self,
        id: &MessageId,
        who: &AccountId,
        emoji: &str,
        at: u64,
    ) -> Result<(), VaultError> {
        self.set_reaction(&id.0, &who.0, emoji, i64::try_from(at).unwrap_or(i64::MAX))
    }

    fn timer(&self, conversation: &ConversationId) -> Result<(u32, u64), VaultError> {
        let (seconds, at) = self.conversation_timer(&conversation.0)?;
        Ok((seconds, u64::try_from(at).unwrap_or(0)))
    }

    fn set_timer(
        &mut self,
        conversation: &ConversationId,
        seconds: u32,
        at: u64,
    ) -> Result<(), VaultError> {
        self.set_conversation_timer(
            &conversation.0,
            seconds,
            i64::try_from(at).unwrap_or(i64::MAX),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Contact;
    use tessera_messaging::content::Content;
    use tessera_messaging::content::text::Text;
    use tessera_messaging::receive::{Arrival, Effect, receive};

    /// The machine over the vault behaves as over the in-memory store: stored once, in order.
    #[test]
    fn the_inbound_machine_runs_on_the_vault() {
        let (_d, v) = crate::test_vault();
        v.put_contact(&Contact {
            account_id: [3; 32],
            name: "c".into(),
            account_public: vec![1],
            relay: "r".into(),
            state: ContactState::Accepted,
            created: 0,
        })
        .unwrap();
        let from = AccountId([3; 32]);
        let mut store = &v;
        for (n, sent) in [(1u8, 30u64), (2, 10), (1, 30)] {
            let content = Content::Text(Text {
                id: MessageId([n; 16]),
                sent,
                body: format!("m{n}"),
                reply_to: None,
                expires: None,
                preview: None,
            });
            let effects = receive(
                &mut store,
                Arrival::Content {
                    from,
                    content: &content,
                    envelope: tessera_messaging::EnvelopeId([0; 16]),
                },
                1_000,
            )
            .unwrap();
            assert!(effects.iter().any(|e| matches!(e, Effect::Receipt { .. })));
        }
        let shown: Vec<String> = v
            .history(&[3; 32], None, 10)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(shown, ["m2", "m1"]);
        assert_eq!(
            store
                .newest(&ConversationId(crate::direct_conversation(&[3; 32])))
                .unwrap()
                .map(|m| m.body),
            Some("m1".to_string())
        );
    }
}
