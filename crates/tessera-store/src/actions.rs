//! Message actions in the vault (`docs/message-actions.md`): edits with their local history,
//! delete for everyone (a tombstone without text), delete here, reactions.

use rusqlite::{OptionalExtension as _, params};

use crate::{Vault, VaultError};

/// A reaction to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReaction {
    /// Who reacted (an account id; ours for our own reaction).
    pub reactor: [u8; 32],
    /// The emoji.
    pub emoji: String,
    /// When (the reactor's time, bounded when received), ms.
    pub at: i64,
}

impl Vault {
    /// Shows `body` as message `message_id`'s text from now on, edited at `at` (sender time,
    /// ms); the text it replaces goes to the message's edit history. The full-text index
    /// follows. Whether the message exists.
    pub fn edit_message(
        &self,
        message_id: &[u8; 16],
        body: &str,
        at: i64,
    ) -> Result<bool, VaultError> {
        self.transaction(|v: &Vault| -> Result<bool, VaultError> {
            let Some(m) = v.message(message_id)? else {
                return Ok(false);
            };
            let (old, since) = (m.body, m.edited.unwrap_or(m.sent));
            v.conn
                .prepare_cached(
                    "INSERT INTO message_edits (message_id, body, at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![&message_id[..], old, since])?;
            v.conn
                .prepare_cached("UPDATE messages SET body = ?2, edited = ?3 WHERE message_id = ?1")?
                .execute(params![&message_id[..], body, at])?;
            // The preview goes with its link (docs/link-previews.md).
            if m.preview.is_some_and(|p| !p.fits(body)) {
                v.conn
                    .prepare_cached("UPDATE messages SET preview = NULL WHERE message_id = ?1")?
                    .execute([&message_id[..]])?;
            }
            Ok(true)
        })
    }

    /// The texts message `message_id` showed before its edits, oldest first, each with the
    /// time it was written.
    pub fn edit_history(&self, message_id: &[u8; 16]) -> Result<Vec<(String, i64)>, VaultError> {
        let mut s = self.conn.prepare_cached(
            "SELECT body, at FROM message_edits WHERE message_id = ?1 ORDER BY at, rowid",
        )?;
        let rows = s.query_map([&message_id[..]], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes message `message_id` for everyone: its text, its edit history, its reactions and
    /// its search index entry are gone (the index is merged so no segment keeps the words);
    /// a tombstone of kind `deleted` stays in the conversation. Whether the message exists.
    pub fn erase_message(&self, message_id: &[u8; 16]) -> Result<bool, VaultError> {
        let erased = self.transaction(|v: &Vault| -> Result<bool, VaultError> {
            let n = v
                .conn
                .prepare_cached(
                    "UPDATE messages SET body = '', kind = 'deleted', edited = NULL,
                        preview = NULL
                     WHERE message_id = ?1",
                )?
                .execute([&message_id[..]])?;
            v.forget_edits_and_reactions(message_id)?;
            Ok(n == 1)
        })?;
        if erased {
            self.purge_search_index()?;
        }
        Ok(erased)
    }

    /// Removes message `message_id` here only (delete for me): the message, its edit history,
    /// its reactions and its index entry. Whether it existed.
    pub fn delete_message_here(&self, message_id: &[u8; 16]) -> Result<bool, VaultError> {
        let deleted = self.transaction(|v: &Vault| -> Result<bool, VaultError> {
            let n = v
                .conn
                .prepare_cached("DELETE FROM messages WHERE message_id = ?1")?
                .execute([&message_id[..]])?;
            v.forget_edits_and_reactions(message_id)?;
            Ok(n == 1)
        })?;
        if deleted {
            self.purge_search_index()?;
        }
        Ok(deleted)
    }

    /// Removes a message's edit history and reactions.
    pub(crate) fn forget_edits_and_reactions(
        &self,
        message_id: &[u8; 16],
    ) -> Result<(), VaultError> {
        for sql in [
            "DELETE FROM message_edits WHERE message_id = ?1",
            "DELETE FROM reactions WHERE message_id = ?1",
            "DELETE FROM attachments WHERE message_id = ?1",
        ] {
            self.conn.prepare_cached(sql)?.execute([&message_id[..]])?;
        }
        Ok(())
    }

    /// FTS5 keeps a deleted row's words in older index segments (marked deleted) until they
    /// are merged: merging them all drops the words for good (with `secure_delete`, the freed
    /// pages are overwritten).
    pub(crate) fn purge_search_index(&self) -> Result<(), VaultError> {
        self.conn
            .prepare_cached("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')")?
            .execute([])?;
        Ok(())
    }

    /// `reactor`'s reaction to message `message_id` and when it was made (an empty emoji: the
    /// reaction was removed then).
    pub fn reaction(
        &self,
        message_id: &[u8; 16],
        reactor: &[u8; 32],
    ) -> Result<Option<(String, i64)>, VaultError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT emoji, at FROM reactions WHERE message_id = ?1 AND reactor = ?2",
            )?
            .query_row(params![&message_id[..], &reactor[..]], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    /// Sets `reactor`'s reaction to message `message_id` (empty: removed), made at `at`.
    pub fn set_reaction(
        &self,
        message_id: &[u8; 16],
        reactor: &[u8; 32],
        emoji: &str,
        at: i64,
    ) -> Result<(), VaultError> {
        self.conn
            .prepare_cached(
                "INSERT INTO reactions (message_id, reactor, emoji, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (message_id, reactor) DO UPDATE SET emoji = ?3, at = ?4",
            )?
            .execute(params![&message_id[..], &reactor[..], emoji, at])?;
        Ok(())
    }

    /// The reactions to message `message_id` (removed ones left out), oldest first.
    pub fn reactions(&self, message_id: &[u8; 16]) -> Result<Vec<StoredReaction>, VaultError> {
        let mut s = self.conn.prepare_cached(
            "SELECT reactor, emoji, at FROM reactions WHERE message_id = ?1 AND emoji != ''
             ORDER BY at",
        )?;
        let rows = s.query_map([&message_id[..]], |r| {
            let reactor: Vec<u8> = r.get(0)?;
            Ok((reactor, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (reactor, emoji, at) = row?;
            let Ok(reactor) = <[u8; 32]>::try_from(reactor.as_slice()) else {
                return Err(VaultError::Corrupt);
            };
            out.push(StoredReaction { reactor, emoji, at });
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    fn vault_with_message(body: &str) -> (tempfile::TempDir, crate::Vault) {
        let (d, v) = crate::test_vault();
        crate::test_contact(&v, 3);
        v.insert_message(&crate::test_message([3; 32], [1; 16], body, false, 10))
            .unwrap();
        (d, v)
    }

    #[test]
    fn an_edit_keeps_history_and_search_follows_the_shown_text() {
        let (_d, v) = vault_with_message("meet at noon");
        assert_eq!(v.search("noon", 10).unwrap().len(), 1);
        assert!(v.edit_message(&[1; 16], "meet at dusk", 20).unwrap());
        let m = v.message(&[1; 16]).unwrap().unwrap();
        assert_eq!((m.body.as_str(), m.edited), ("meet at dusk", Some(20)));
        assert_eq!(
            v.edit_history(&[1; 16]).unwrap(),
            [("meet at noon".into(), 10)]
        );
        assert!(v.search("noon", 10).unwrap().is_empty());
        assert_eq!(v.search("dusk", 10).unwrap().len(), 1);
        assert!(!v.edit_message(&[9; 16], "x", 1).unwrap());
    }

    #[test]
    fn erased_text_is_gone_from_history_search_and_reactions() {
        let (_d, v) = vault_with_message("the vault code is 4711");
        v.edit_message(&[1; 16], "the vault code is 4712", 20)
            .unwrap();
        v.set_reaction(&[1; 16], &[3; 32], "👍", 30).unwrap();
        assert_eq!(v.search("4712", 10).unwrap().len(), 1);
        assert!(v.erase_message(&[1; 16]).unwrap());
        let m = v.message(&[1; 16]).unwrap().unwrap();
        assert_eq!((m.kind.as_str(), m.body.as_str()), ("deleted", ""));
        assert!(v.edit_history(&[1; 16]).unwrap().is_empty());
        assert!(v.reactions(&[1; 16]).unwrap().is_empty());
        for word in ["4711", "4712", "vault"] {
            assert!(v.search(word, 10).unwrap().is_empty(), "{word}");
        }
        // Delete for me: the tombstone goes too.
        assert!(v.delete_message_here(&[1; 16]).unwrap());
        assert!(v.message(&[1; 16]).unwrap().is_none());
        assert!(!v.delete_message_here(&[1; 16]).unwrap());
    }

    #[test]
    fn one_reaction_per_person_and_removed_ones_are_not_listed() {
        let (_d, v) = vault_with_message("hi");
        v.set_reaction(&[1; 16], &[3; 32], "👍", 30).unwrap();
        v.set_reaction(&[1; 16], &[4; 32], "🎉", 31).unwrap();
        v.set_reaction(&[1; 16], &[3; 32], "😂", 32).unwrap();
        let shown: Vec<(u8, String)> = v
            .reactions(&[1; 16])
            .unwrap()
            .into_iter()
            .map(|r| (r.reactor[0], r.emoji))
            .collect();
        assert_eq!(shown, [(4, "🎉".to_string()), (3, "😂".to_string())]);
        v.set_reaction(&[1; 16], &[4; 32], "", 33).unwrap();
        assert_eq!(v.reactions(&[1; 16]).unwrap().len(), 1);
        assert_eq!(
            v.reaction(&[1; 16], &[4; 32]).unwrap(),
            Some((String::new(), 33))
        );
    }
}
