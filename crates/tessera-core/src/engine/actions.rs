//! Message actions (`docs/message-actions.md`): replies, edits, delete for me and for
//! everyone, reactions. Each change is made in the vault in the same transaction that queues
//! what tells the contact, and reported as [`Event::MessageChanged`].

use tessera_messaging::content::action::{Delete, EDIT_WINDOW_MS, Edit, Reaction, valid_emoji};

use super::*;

/// What [`Engine::delete_message`] deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteFor {
    /// This device only; nothing is sent.
    Me,
    /// Everyone in the conversation (our own text, within 24 h of sending).
    Everyone,
}

impl Engine {
    /// Sends a text replying to `reply_to` (a message of the same conversation), as
    /// [`Engine::send_text`] does.
    pub async fn send_reply(
        &self,
        contact: &[u8; 32],
        body: &str,
        reply_to: &[u8; 16],
    ) -> Result<[u8; 16], CoreError> {
        self.send_draft(
            contact,
            Draft {
                body: body.to_string(),
                reply_to: Some(*reply_to),
                preview: None,
            },
        )
        .await
    }

    /// A message of ours of one of `kinds` that may still be changed at `now` (texts are
    /// edited; texts and files deleted for everyone).
    fn own_recent(
        v: &Vault,
        message_id: &[u8; 16],
        now: u64,
        kinds: &[&str],
    ) -> Result<Message, CoreError> {
        let m = v.message(message_id)?.ok_or(CoreError::UnknownMessage)?;
        let sent = u64::try_from(m.sent).unwrap_or(u64::MAX);
        if !m.outgoing
            || !kinds.contains(&m.kind.as_str())
            || now.saturating_sub(sent) > EDIT_WINDOW_MS
        {
            return Err(CoreError::NotEditable);
        }
        Ok(m)
    }

    fn changed(&self, message_id: &[u8; 16]) {
        if let Ok(Some(message)) = self.with(|u| Ok(u.vault.message(message_id)?)) {
            self.emit(Event::MessageChanged {
                contact: message.contact,
                message_id: *message_id,
                message: Box::new(message),
            });
        }
    }

    /// Replaces the text of our message `message_id` with `body` (within 24 h of sending; the
    /// old text stays in the local edit history) and tells the contact.
    pub async fn edit_message(&self, message_id: &[u8; 16], body: &str) -> Result<(), CoreError> {
        if body.len() > crate::MAX_TEXT {
            return Err(CoreError::TooLong);
        }
        self.maybe_maintain()?;
        let sent = self.next_sent_time();
        self.with(|u| {
            u.vault.transaction(|v| -> Result<(), CoreError> {
                let m = Self::own_recent(v, message_id, sent, &["text"])?;
                v.edit_message(message_id, body, i64::try_from(sent).unwrap_or(i64::MAX))?;
                let content = Content::Edit(Edit {
                    target: MessageId(*message_id),
                    sent,
                    body: body.to_string(),
                });
                queue_in(v, &u.me.account_id, &m.contact, &content, None, sent)
            })
        })?;
        self.changed(message_id);
        self.kick();
        Ok(())
    }

    /// Deletes message `message_id`: here only, or for everyone (our own text, within 24 h:
    /// its text, edit history and search entry are removed on both sides, leaving "message
    /// deleted").
    pub async fn delete_message(
        &self,
        message_id: &[u8; 16],
        scope: DeleteFor,
    ) -> Result<(), CoreError> {
        match scope {
            DeleteFor::Me => {
                let deleted = self.with(|u| Ok(u.vault.delete_message_here(message_id)?))?;
                if !deleted {
                    return Err(CoreError::UnknownMessage);
                }
            }
            DeleteFor::Everyone => {
                self.maybe_maintain()?;
                let sent = self.next_sent_time();
                self.with(|u| {
                    u.vault.transaction(|v| -> Result<(), CoreError> {
                        let m = Self::own_recent(v, message_id, sent, &["text", "attachment"])?;
                        v.erase_message(message_id)?;
                        let content = Content::Delete(Delete {
                            target: MessageId(*message_id),
                            sent,
                        });
                        queue_in(v, &u.me.account_id, &m.contact, &content, None, sent)
                    })
                })?;
                self.changed(message_id);
                self.kick();
            }
        }
        self.sweep_attachment_files();
        Ok(())
    }

    /// Sets our reaction to message `message_id` (`None` removes it) and tells the contact.
    /// One reaction per person per message; a new one replaces ours.
    pub async fn react(&self, message_id: &[u8; 16], emoji: Option<&str>) -> Result<(), CoreError> {
        let emoji = emoji.unwrap_or_default();
        if !valid_emoji(emoji) {
            return Err(CoreError::BadReaction);
        }
        self.maybe_maintain()?;
        let sent = self.next_sent_time();
        self.with(|u| {
            let me = u.me.account_id.0;
            u.vault.transaction(|v| -> Result<(), CoreError> {
                let m = v.message(message_id)?.ok_or(CoreError::UnknownMessage)?;
                if m.kind != "text" {
                    return Err(CoreError::NotEditable);
                }
                if m.contact != me {
                    let c = v.contact(&m.contact)?.ok_or(CoreError::UnknownContact)?;
                    match c.state {
                        ContactState::Accepted => {}
                        ContactState::Deleted => return Err(CoreError::ContactDeleted),
                        _ => return Err(CoreError::Rejected),
                    }
                }
                v.set_reaction(
                    message_id,
                    &me,
                    emoji,
                    i64::try_from(sent).unwrap_or(i64::MAX),
                )?;
                let content = Content::Reaction(Reaction {
                    target: MessageId(*message_id),
                    sent,
                    emoji: emoji.to_string(),
                });
                queue_in(v, &u.me.account_id, &m.contact, &content, None, sent)
            })
        })?;
        self.changed(message_id);
        self.kick();
        Ok(())
    }

    /// The reactions to message `message_id` (ours included, under our account id).
    pub fn reactions(
        &self,
        message_id: &[u8; 16],
    ) -> Result<Vec<tessera_store::StoredReaction>, CoreError> {
        self.with(|u| Ok(u.vault.reactions(message_id)?))
    }

    /// The texts message `message_id` showed before its edits, oldest first (local only).
    pub fn edit_history(&self, message_id: &[u8; 16]) -> Result<Vec<(String, i64)>, CoreError> {
        self.with(|u| Ok(u.vault.edit_history(message_id)?))
    }
}
