//! Envelope v2 links (`docs/envelope.md`, §3): the vault stores them as opaque, secret blobs
//! that `tessera-crypto` encodes; this module only keeps and finds them.

use rusqlite::{OptionalExtension as _, params};
use zeroize::Zeroizing;

use crate::{Vault, VaultError};

impl Vault {
    /// Our link to a contact's device, if one was made.
    pub fn outbound_link(
        &self,
        account_id: &[u8; 32],
        device_id: u32,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT link FROM outbound_links WHERE account_id = ?1 AND device_id = ?2",
            )?
            .query_row(params![&account_id[..], device_id], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()?
            .map(Zeroizing::new))
    }

    /// Stores our link to a contact's device (replacing the previous one).
    pub fn put_outbound_link(
        &self,
        account_id: &[u8; 32],
        device_id: u32,
        link: &[u8],
    ) -> Result<(), VaultError> {
        self.execute(
            "INSERT OR REPLACE INTO outbound_links (account_id, device_id, link)
             VALUES (?1, ?2, ?3)",
            params![&account_id[..], device_id, link],
        )?;
        Ok(())
    }

    /// A sender's link to us, by id.
    pub fn inbound_link(
        &self,
        link_id: &[u8; 16],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        Ok(self
            .conn
            .prepare_cached("SELECT link FROM inbound_links WHERE link_id = ?1")?
            .query_row([&link_id[..]], |r| r.get::<_, Vec<u8>>(0))
            .optional()?
            .map(Zeroizing::new))
    }

    /// Records that a full envelope on a sender's link arrived at `received` (ms): stores the
    /// link the first time, and makes it the sender device's newest.
    pub fn put_inbound_link(
        &self,
        link_id: &[u8; 16],
        account_id: &[u8; 32],
        device_id: u32,
        link: &[u8],
        received: u64,
        delete_after: u64,
    ) -> Result<(), VaultError> {
        self.execute(
            "INSERT INTO inbound_links
                 (link_id, account_id, device_id, link, received, delete_after)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (link_id) DO UPDATE SET received = excluded.received",
            params![
                &link_id[..],
                &account_id[..],
                device_id,
                link,
                received as i64,
                delete_after as i64
            ],
        )?;
        Ok(())
    }

    /// The id of the sender device's link on which a full envelope arrived last: the one to
    /// acknowledge to it.
    pub fn newest_inbound_link(
        &self,
        account_id: &[u8; 32],
        device_id: u32,
    ) -> Result<Option<[u8; 16]>, VaultError> {
        let id: Option<Vec<u8>> = self
            .conn
            .prepare_cached(
                "SELECT link_id FROM inbound_links WHERE account_id = ?1 AND device_id = ?2
                 ORDER BY received DESC LIMIT 1",
            )?
            .query_row(params![&account_id[..], device_id], |r| r.get(0))
            .optional()?;
        id.map(|v| v.try_into().map_err(|_| VaultError::Corrupt))
            .transpose()
    }

    /// Deletes the links no envelope can use any more; returns how many went.
    pub fn forget_inbound_links_before(&self, now_ms: u64) -> Result<usize, VaultError> {
        Ok(self.execute(
            "DELETE FROM inbound_links WHERE delete_after < ?1",
            [now_ms as i64],
        )?)
    }

    /// How many links we hold: (ours to contacts, contacts' to us).
    pub fn link_counts(&self) -> Result<(u32, u32), VaultError> {
        let count = |sql: &str| -> Result<u32, VaultError> {
            Ok(self.query_row(sql, [], |r| r.get::<_, u32>(0))?)
        };
        Ok((
            count("SELECT count(*) FROM outbound_links")?,
            count("SELECT count(*) FROM inbound_links")?,
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::test_vault as vault;

    #[test]
    fn the_newest_inbound_link_is_the_one_a_full_envelope_came_on_last() {
        let (_dir, v) = vault();
        let (alice, bob) = ([1; 32], [2; 32]);
        assert_eq!(v.newest_inbound_link(&alice, 1).unwrap(), None);
        v.put_inbound_link(&[10; 16], &alice, 1, b"link 10", 100, 1000)
            .unwrap();
        v.put_inbound_link(&[11; 16], &alice, 1, b"link 11", 200, 2000)
            .unwrap();
        v.put_inbound_link(&[20; 16], &bob, 1, b"link 20", 300, 3000)
            .unwrap();
        assert_eq!(v.newest_inbound_link(&alice, 1).unwrap(), Some([11; 16]));
        assert_eq!(v.newest_inbound_link(&alice, 2).unwrap(), None);
        // A late full envelope on the older link makes it the newest again; the record stays.
        v.put_inbound_link(&[10; 16], &alice, 1, b"other bytes", 400, 9)
            .unwrap();
        assert_eq!(v.newest_inbound_link(&alice, 1).unwrap(), Some([10; 16]));
        assert_eq!(&v.inbound_link(&[10; 16]).unwrap().unwrap()[..], b"link 10");
        assert_eq!(v.link_counts().unwrap(), (0, 3));
        // Deletion by time.
        assert_eq!(v.forget_inbound_links_before(1500).unwrap(), 1);
        assert!(v.inbound_link(&[10; 16]).unwrap().is_none());
        assert_eq!(v.newest_inbound_link(&alice, 1).unwrap(), Some([11; 16]));
    }

    #[test]
    fn one_outbound_link_per_contact_device() {
        let (_dir, v) = vault();
        assert!(v.outbound_link(&[1; 32], 1).unwrap().is_none());
        v.put_outbound_link(&[1; 32], 1, b"first").unwrap();
        v.put_outbound_link(&[1; 32], 1, b"second").unwrap();
        v.put_outbound_link(&[1; 32], 2, b"other device").unwrap();
        assert_eq!(
            &v.outbound_link(&[1; 32], 1).unwrap().unwrap()[..],
            b"second"
        );
        assert_eq!(v.link_counts().unwrap(), (2, 0));
    }
}
