//! Disappearing messages in the vault (`docs/disappearing.md`): a conversation's timer, and
//! the removal of what has expired.

use rusqlite::{OptionalExtension as _, params};

use crate::messages::id16;
use crate::{Vault, VaultError};

/// A message that went: its id and the contact of its conversation.
pub type Expired = ([u8; 16], [u8; 32]);

impl Vault {
    /// The conversation's timer (seconds, 0: off) and when it was set (sender time, ms; 0 if
    /// never).
    pub fn conversation_timer(&self, conversation: &[u8; 16]) -> Result<(u32, i64), VaultError> {
        Ok(self
            .conn
            .prepare_cached("SELECT timer, timer_at FROM conversations WHERE id = ?1")?
            .query_row([&conversation[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((0, 0)))
    }

    /// Sets the conversation's timer, set at `at` (ms).
    pub fn set_conversation_timer(
        &self,
        conversation: &[u8; 16],
        seconds: u32,
        at: i64,
    ) -> Result<(), VaultError> {
        self.conn
            .prepare_cached("UPDATE conversations SET timer = ?2, timer_at = ?3 WHERE id = ?1")?
            .execute(params![&conversation[..], seconds, at])?;
        Ok(())
    }

    /// Removes every message whose time came (`expire_at` ≤ `now`, ms) with its edit history,
    /// reactions and search index words; returns them as (message id, contact).
    pub fn expire(&self, now: i64) -> Result<Vec<Expired>, VaultError> {
        let gone = self.transaction(|v: &Vault| -> Result<Vec<Expired>, VaultError> {
            let due: Vec<Expired> = {
                let mut s = v.conn.prepare_cached(
                    "SELECT message_id, contact FROM messages
                     WHERE expire_at IS NOT NULL AND expire_at <= ?1",
                )?;
                let rows = s.query_map([now], |r| {
                    let contact: Vec<u8> = r.get(1)?;
                    let contact = <[u8; 32]>::try_from(contact.as_slice()).map_err(|_| {
                        rusqlite::Error::InvalidColumnType(
                            1,
                            "contact".into(),
                            rusqlite::types::Type::Blob,
                        )
                    })?;
                    Ok((id16(r.get(0)?)?, contact))
                })?;
                rows.collect::<Result<_, _>>()?
            };
            for (id, _) in &due {
                v.forget_edits_and_reactions(id)?;
                v.conn
                    .prepare_cached("DELETE FROM messages WHERE message_id = ?1")?
                    .execute([&id[..]])?;
            }
            Ok(due)
        })?;
        if !gone.is_empty() {
            self.purge_search_index()?;
        }
        Ok(gone)
    }

    /// When the next message expires (ms), if any is counting down.
    pub fn next_expiry(&self) -> Result<Option<i64>, VaultError> {
        Ok(self
            .conn
            .prepare_cached("SELECT MIN(expire_at) FROM messages WHERE expire_at IS NOT NULL")?
            .query_row([], |r| r.get(0))?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::Message;

    fn message(id: u8, outgoing: bool, body: &str, expires_in: Option<i64>) -> Message {
        let mut m = crate::test_message([3; 32], [id; 16], body, outgoing, 1_000);
        m.expires_in = expires_in;
        // Ours counts from sending; theirs from reading.
        m.expire_at = expires_in.filter(|_| outgoing).map(|s| 1_000 + s * 1_000);
        m
    }

    #[test]
    fn sent_messages_count_from_sending_received_ones_from_reading_then_they_are_gone() {
        let (_d, v) = crate::test_vault();
        crate::test_contact(&v, 3);
        let conversation = crate::direct_conversation(&[3; 32]);
        assert_eq!(v.conversation_timer(&conversation).unwrap(), (0, 0));
        v.set_conversation_timer(&conversation, 30, 900).unwrap();
        assert_eq!(v.conversation_timer(&conversation).unwrap(), (30, 900));
        v.insert_message(&message(1, true, "ours vanishes", Some(30)))
            .unwrap();
        v.insert_message(&message(2, false, "theirs vanishes once read", Some(30)))
            .unwrap();
        v.insert_message(&message(3, false, "this one stays", None))
            .unwrap();
        v.set_reaction(&[1; 16], &[3; 32], "👍", 1_100).unwrap();
        // Ours counts from sending; theirs has not started (unread).
        assert_eq!(v.next_expiry().unwrap(), Some(31_000));
        assert!(v.expire(30_999).unwrap().is_empty());
        assert_eq!(v.expire(31_000).unwrap(), [([1; 16], [3; 32])]);
        assert!(v.message(&[1; 16]).unwrap().is_none());
        assert!(v.reactions(&[1; 16]).unwrap().is_empty());
        assert!(v.search("ours", 10).unwrap().is_empty());
        assert_eq!(v.next_expiry().unwrap(), None);
        // Read at 50 s: theirs goes at 80 s, not before; the other one stays.
        v.mark_read(&[3; 32], 50_000).unwrap();
        assert_eq!(v.next_expiry().unwrap(), Some(80_000));
        assert!(v.expire(79_999).unwrap().is_empty());
        assert_eq!(v.expire(80_000).unwrap().len(), 1);
        assert!(v.search("vanishes", 10).unwrap().is_empty());
        let left: Vec<String> = v
            .history(&[3; 32], None, 10)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(left, ["this one stays"]);
    }
}
