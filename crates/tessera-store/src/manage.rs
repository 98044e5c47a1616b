//! Managing contacts and conversations (`docs/conversations.md`): blocking, removing a
//! contact, and a conversation's own settings — archived, pinned, muted, marked unread, a
//! draft — and deleting its messages here.

use rusqlite::{OptionalExtension as _, params};

use crate::{Vault, VaultError};

/// A conversation's own settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationSettings {
    /// Kept out of the main list.
    pub archived: bool,
    /// Kept at the top of the list.
    pub pinned: bool,
    /// No notifications until then, ms (`i64::MAX`: always; 0: not muted).
    pub muted_until: i64,
    /// Shown as unread although everything in it was read.
    pub marked_unread: bool,
    /// The text being written, kept between sessions.
    pub draft: Option<String>,
}

impl ConversationSettings {
    /// Whether notifications are off at `now` (ms).
    pub fn muted_at(&self, now: i64) -> bool {
        self.muted_until > now
    }
}

/// Everything of one contact's conversation that goes when messages are deleted: their edit
/// histories, reactions, the messages (the search index follows), and what waits in the outbox
/// for them.
const DELETE_CONVERSATION: [&str; 3] = [
    "DELETE FROM message_edits WHERE message_id IN
        (SELECT message_id FROM messages WHERE contact = ?1)",
    "DELETE FROM reactions WHERE message_id IN
        (SELECT message_id FROM messages WHERE contact = ?1)",
    "DELETE FROM messages WHERE contact = ?1",
];

impl Vault {
    /// Blocks (`true`) or unblocks `account` (`docs/conversations.md`): a blocked account's
    /// messages, requests and calls are dropped without receipts.
    pub fn set_blocked(
        &self,
        account: &[u8; 32],
        blocked: bool,
        now: i64,
    ) -> Result<(), VaultError> {
        if blocked {
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO blocked (account_id, since) VALUES (?1, ?2)",
                )?
                .execute(params![&account[..], now])?;
        } else {
            self.conn
                .prepare_cached("DELETE FROM blocked WHERE account_id = ?1")?
                .execute([&account[..]])?;
        }
        Ok(())
    }

    /// Whether `account` is blocked.
    pub fn is_blocked(&self, account: &[u8; 32]) -> Result<bool, VaultError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM blocked WHERE account_id = ?1")?
            .query_row([&account[..]], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Removes a contact and everything of theirs here: the conversation with its messages
    /// (and their search words), the devices and the outbox entries (the caller forgets the
    /// Signal sessions, [`Vault::delete_sessions`]). Their identity key stays known, so if they
    /// write again they arrive as a stranger. Whether they were a contact.
    pub fn remove_contact(&self, account: &[u8; 32]) -> Result<bool, VaultError> {
        let removed = self.transaction(|v: &Vault| -> Result<bool, VaultError> {
            for sql in DELETE_CONVERSATION {
                v.conn.prepare_cached(sql)?.execute([&account[..]])?;
            }
            v.conn
                .prepare_cached("DELETE FROM outbox WHERE account_id = ?1")?
                .execute([&account[..]])?;
            let n = v
                .conn
                .prepare_cached("DELETE FROM contacts WHERE account_id = ?1")?
                .execute([&account[..]])?;
            Ok(n == 1)
        })?;
        self.purge_search_index()?;
        Ok(removed)
    }

    /// Deletes every message of the conversation with `account` here (the contact stays).
    pub fn delete_conversation(&self, account: &[u8; 32]) -> Result<(), VaultError> {
        self.transaction(|v: &Vault| -> Result<(), VaultError> {
            for sql in DELETE_CONVERSATION {
                v.conn.prepare_cached(sql)?.execute([&account[..]])?;
            }
            Ok(())
        })?;
        self.purge_search_index()
    }

    /// The settings of conversation `conversation` (defaults if it has none).
    pub fn conversation_settings(
        &self,
        conversation: &[u8; 16],
    ) -> Result<ConversationSettings, VaultError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT archived, pinned, muted_until, marked_unread, draft FROM conversations
                 WHERE id = ?1",
            )?
            .query_row([&conversation[..]], |r| {
                Ok(ConversationSettings {
                    archived: r.get(0)?,
                    pinned: r.get(1)?,
                    muted_until: r.get(2)?,
                    marked_unread: r.get(3)?,
                    draft: r.get(4)?,
                })
            })
            .optional()?
            .unwrap_or_default())
    }

    /// Replaces the settings of conversation `conversation`.
    pub fn set_conversation_settings(
        &self,
        conversation: &[u8; 16],
        s: &ConversationSettings,
    ) -> Result<(), VaultError> {
        self.conn
            .prepare_cached(
                "UPDATE conversations SET archived = ?2, pinned = ?3, muted_until = ?4,
                    marked_unread = ?5, draft = ?6 WHERE id = ?1",
            )?
            .execute(params![
                &conversation[..],
                s.archived,
                s.pinned,
                s.muted_until,
                s.marked_unread,
                s.draft
            ])?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    fn contact(v: &crate::Vault, n: u8) {
        crate::test_contact(v, n);
        let body = format!("hello from contact{n}");
        v.insert_message(&crate::test_message(
            [n; 32],
            [n; 16],
            &body,
            false,
            i64::from(n),
        ))
        .unwrap();
    }

    #[test]
    fn blocking_settings_pinning_and_removal() {
        let (_d, v) = crate::test_vault();
        contact(&v, 1);
        contact(&v, 2);
        assert!(!v.is_blocked(&[1; 32]).unwrap());
        v.set_blocked(&[1; 32], true, 5).unwrap();
        v.set_blocked(&[1; 32], true, 6).unwrap();
        assert!(v.is_blocked(&[1; 32]).unwrap());
        v.set_blocked(&[1; 32], false, 7).unwrap();
        assert!(!v.is_blocked(&[1; 32]).unwrap());

        // The newest conversation first, unless another is pinned.
        let order = |v: &crate::Vault| -> Vec<u8> {
            v.conversations()
                .unwrap()
                .iter()
                .map(|c| c.contact.account_id[0])
                .collect()
        };
        assert_eq!(order(&v), [2, 1]);
        let first = crate::direct_conversation(&[1; 32]);
        let mut s = v.conversation_settings(&first).unwrap();
        assert_eq!(s, super::ConversationSettings::default());
        s.pinned = true;
        s.muted_until = i64::MAX;
        s.draft = Some("half a thought".into());
        v.set_conversation_settings(&first, &s).unwrap();
        assert_eq!(v.conversation_settings(&first).unwrap(), s);
        assert!(s.muted_at(1_000));
        assert_eq!(order(&v), [1, 2]);

        // Deleting the conversation keeps the contact; removing the contact takes the rest.
        assert_eq!(v.search("contact1", 10).unwrap().len(), 1);
        v.delete_conversation(&[1; 32]).unwrap();
        assert!(v.history(&[1; 32], None, 10).unwrap().is_empty());
        assert!(v.search("contact1", 10).unwrap().is_empty());
        assert!(v.contact(&[1; 32]).unwrap().is_some());
        assert!(v.remove_contact(&[2; 32]).unwrap());
        assert!(v.contact(&[2; 32]).unwrap().is_none());
        assert!(v.search("contact2", 10).unwrap().is_empty());
        assert_eq!(order(&v), [1]);
        assert!(!v.remove_contact(&[2; 32]).unwrap());
    }
}
