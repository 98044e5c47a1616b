//! What key rotation needs from the vault (`docs/keys.md`, "Rotation"): retired keys with the
//! time their grace ends, deletion of the private keys themselves, and counts for tests and
//! diagnostics. The schedule itself lives in `tessera-core`; this module only stores.

use rusqlite::{OptionalExtension as _, params};
use zeroize::Zeroizing;

use crate::{Vault, VaultError};

/// A retired key whose grace period has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredKey {
    /// Which kind of key (the caller's name, e.g. `"signed_prekey"`).
    pub kind: String,
    /// Its id within the kind.
    pub id: u32,
}

/// How many private keys of each kind the vault holds (current and retired together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyInventory {
    /// libsignal signed prekeys.
    pub signed_prekeys: u32,
    /// libsignal Kyber (last-resort) prekeys.
    pub kyber_prekeys: u32,
    /// libsignal one-time prekeys.
    pub one_time_prekeys: u32,
    /// Retired envelope keys still in their grace period (the current one is not counted).
    pub retired_envelope_keys: u32,
    /// Seen envelope ids kept for replay detection.
    pub seen_envelopes: u32,
    /// Our envelope links to contact devices (one per device).
    pub outbound_links: u32,
    /// Contacts' envelope links to us, kept until no envelope on them can open.
    pub inbound_links: u32,
}

/// A local value's name and its (secret) bytes.
pub type NamedSecret = (String, Zeroizing<Vec<u8>>);

impl Vault {
    /// Deletes a local value (no error if it was not there).
    pub fn delete_local(&self, name: &str) -> Result<(), VaultError> {
        self.execute("DELETE FROM local WHERE name = ?1", [name])?;
        Ok(())
    }

    /// Local values whose name starts with `prefix`, in name order.
    pub fn locals_with_prefix(&self, prefix: &str) -> Result<Vec<NamedSecret>, VaultError> {
        let mut s = self.conn.prepare(
            "SELECT name, value FROM local WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name",
        )?;
        let rows = s.query_map([prefix], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Zeroizing::new(r.get::<_, Vec<u8>>(1)?),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that key `(kind, id)` is retired and may be deleted after `delete_after` (ms).
    /// Retiring it again keeps the earlier deadline.
    pub fn retire_key(&self, kind: &str, id: u32, delete_after: u64) -> Result<(), VaultError> {
        self.execute(
            "INSERT OR IGNORE INTO retired_keys (kind, id, delete_after) VALUES (?1, ?2, ?3)",
            params![kind, id, delete_after as i64],
        )?;
        Ok(())
    }

    /// Retired keys whose grace ended before `now_ms`.
    pub fn retired_keys_due(&self, now_ms: u64) -> Result<Vec<RetiredKey>, VaultError> {
        let mut s = self.conn.prepare(
            "SELECT kind, id FROM retired_keys WHERE delete_after < ?1 ORDER BY kind, id",
        )?;
        let rows = s.query_map([now_ms as i64], |r| {
            Ok(RetiredKey {
                kind: r.get(0)?,
                id: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When a retired key's grace ends (`None` if it is not retired).
    pub fn retired_until(&self, kind: &str, id: u32) -> Result<Option<u64>, VaultError> {
        Ok(self
            .query_row(
                "SELECT delete_after FROM retired_keys WHERE kind = ?1 AND id = ?2",
                params![kind, id],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|v| v.max(0) as u64))
    }

    /// Forgets a retired key's record (after the caller deleted the key itself).
    pub fn forget_retired_key(&self, kind: &str, id: u32) -> Result<(), VaultError> {
        self.execute(
            "DELETE FROM retired_keys WHERE kind = ?1 AND id = ?2",
            params![kind, id],
        )?;
        Ok(())
    }

    /// Deletes a libsignal signed prekey.
    pub fn delete_signed_prekey(&self, id: u32) -> Result<(), VaultError> {
        self.execute("DELETE FROM signed_prekeys WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Deletes a libsignal Kyber prekey and the record of its uses.
    pub fn delete_kyber_prekey(&self, id: u32) -> Result<(), VaultError> {
        self.execute("DELETE FROM kyber_prekeys WHERE id = ?1", [id])?;
        self.execute("DELETE FROM kyber_prekey_uses WHERE kyber_id = ?1", [id])?;
        Ok(())
    }

    /// Deletes the libsignal one-time prekeys with ids in `first..=last`; returns how many.
    pub fn delete_one_time_prekeys(&self, first: u32, last: u32) -> Result<usize, VaultError> {
        Ok(self.execute(
            "DELETE FROM prekeys WHERE id BETWEEN ?1 AND ?2",
            params![first, last],
        )?)
    }

    /// Forgets seen envelope ids recorded before `before_ms`; returns how many.
    pub fn forget_seen_before(&self, before_ms: u64) -> Result<usize, VaultError> {
        Ok(self.execute(
            "DELETE FROM seen_envelopes WHERE seen < ?1",
            [before_ms as i64],
        )?)
    }

    /// How many private keys of each kind the vault holds.
    pub fn key_inventory(&self) -> Result<KeyInventory, VaultError> {
        let count = |sql: &str| -> Result<u32, VaultError> {
            Ok(self.query_row(sql, [], |r| r.get::<_, u32>(0))?)
        };
        Ok(KeyInventory {
            signed_prekeys: count("SELECT count(*) FROM signed_prekeys")?,
            kyber_prekeys: count("SELECT count(*) FROM kyber_prekeys")?,
            one_time_prekeys: count("SELECT count(*) FROM prekeys")?,
            retired_envelope_keys: count(
                "SELECT count(*) FROM local WHERE substr(name, 1, 17) = 'envelope.retired.'",
            )?,
            seen_envelopes: count("SELECT count(*) FROM seen_envelopes")?,
            outbound_links: count("SELECT count(*) FROM outbound_links")?,
            inbound_links: count("SELECT count(*) FROM inbound_links")?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use crate::test_vault as vault;

    #[test]
    fn retired_keys_come_due_after_their_grace_and_only_once_forgotten_go_away() {
        let (_d, v) = vault();
        v.retire_key("signed_prekey", 1, 100).unwrap();
        v.retire_key("signed_prekey", 2, 200).unwrap();
        // Retiring again does not push the deadline out.
        v.retire_key("signed_prekey", 1, 999).unwrap();
        assert_eq!(v.retired_until("signed_prekey", 1).unwrap(), Some(100));
        assert!(v.retired_keys_due(100).unwrap().is_empty());
        let due = v.retired_keys_due(150).unwrap();
        assert_eq!(
            due,
            vec![RetiredKey {
                kind: "signed_prekey".into(),
                id: 1
            }]
        );
        v.forget_retired_key("signed_prekey", 1).unwrap();
        assert_eq!(v.retired_keys_due(1000).unwrap().len(), 1);
        assert_eq!(v.retired_until("signed_prekey", 1).unwrap(), None);
    }

    #[test]
    fn locals_by_prefix_and_deletion() {
        let (_d, v) = vault();
        v.set_local("envelope.retired.1", b"a").unwrap();
        v.set_local("envelope.retired.2", b"b").unwrap();
        v.set_local("envelope.x25519", b"c").unwrap();
        let found = v.locals_with_prefix("envelope.retired.").unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].0, "envelope.retired.1");
        assert_eq!(v.key_inventory().unwrap().retired_envelope_keys, 2);
        v.delete_local("envelope.retired.1").unwrap();
        assert_eq!(v.key_inventory().unwrap().retired_envelope_keys, 1);
        assert!(v.local("envelope.retired.1").unwrap().is_none());
    }

    #[test]
    fn seen_ids_are_forgotten_by_age() {
        let (_d, v) = vault();
        assert!(v.mark_seen(b"old", 10).unwrap());
        assert!(v.mark_seen(b"new", 20).unwrap());
        assert_eq!(v.forget_seen_before(15).unwrap(), 1);
        assert!(!v.seen(b"old").unwrap());
        assert!(v.seen(b"new").unwrap());
    }
}
