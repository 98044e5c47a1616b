//! Attachments here (`docs/attachments.md`, "On this device"): what opens each file's blob —
//! its key, digest, size, name — and where it is on its way. The blob itself is a file in the
//! account's `attachments/` folder, encrypted as it travels; its key lives only in the vault.

use rusqlite::{OptionalExtension as _, Row, params};
use zeroize::Zeroizing;

use crate::{Vault, VaultError};

/// The folder in the account's data directory that holds attachment blobs.
pub const ATTACHMENTS_DIR: &str = "attachments";

/// Where an attachment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentState {
    /// Ours, sealed here, not yet wholly on the relay (the message waits for it).
    Uploading,
    /// Ours, on the relay; the message went into the outbox.
    Uploaded,
    /// Theirs, on the relay; not downloaded.
    Remote,
    /// Theirs, downloaded and checked; opens here.
    Downloaded,
    /// Theirs; the download failed its checks (the reason is in the message's failure).
    Failed,
}

impl AttachmentState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploading => "uploading",
            Self::Uploaded => "uploaded",
            Self::Remote => "remote",
            Self::Downloaded => "downloaded",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "uploading" => Self::Uploading,
            "uploaded" => Self::Uploaded,
            "remote" => Self::Remote,
            "downloaded" => Self::Downloaded,
            _ => Self::Failed,
        }
    }
}

/// One attachment as the vault keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    /// The message that carries it.
    pub message_id: [u8; 16],
    /// The blob's id on the relay.
    pub blob: [u8; 16],
    /// The file key.
    pub key: Zeroizing<[u8; 32]>,
    /// BLAKE3 of the blob.
    pub digest: [u8; 32],
    /// The file's length.
    pub size: u64,
    /// Its name, as sent.
    pub name: String,
    /// Its media type.
    pub mime: String,
    /// Where it is.
    pub state: AttachmentState,
    /// How many devices will fetch it (ours: the recipient's devices).
    pub fetches: u16,
}

fn row(r: &Row<'_>) -> Result<StoredAttachment, rusqlite::Error> {
    let bytes = |i: usize, n: usize| -> Result<Vec<u8>, rusqlite::Error> {
        let v: Vec<u8> = r.get(i)?;
        if v.len() == n {
            Ok(v)
        } else {
            Err(rusqlite::Error::InvalidColumnType(
                i,
                "attachment".into(),
                rusqlite::types::Type::Blob,
            ))
        }
    };
    let mut message_id = [0u8; 16];
    message_id.copy_from_slice(&bytes(0, 16)?);
    let mut blob = [0u8; 16];
    blob.copy_from_slice(&bytes(1, 16)?);
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&Zeroizing::new(bytes(2, 32)?));
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&bytes(3, 32)?);
    Ok(StoredAttachment {
        message_id,
        blob,
        key,
        digest,
        size: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
        name: r.get(5)?,
        mime: r.get(6)?,
        state: AttachmentState::parse(&r.get::<_, String>(7)?),
        fetches: u16::try_from(r.get::<_, i64>(8)?).unwrap_or(1),
    })
}

const COLUMNS: &str = "message_id, blob, file_key, digest, size, name, mime, state, fetches";

impl Vault {
    /// Keeps an attachment (its message is stored first).
    pub fn put_attachment(&self, a: &StoredAttachment) -> Result<(), VaultError> {
        self.conn
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO attachments ({COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                &a.message_id[..],
                &a.blob[..],
                &a.key[..],
                &a.digest[..],
                i64::try_from(a.size).unwrap_or(i64::MAX),
                a.name,
                a.mime,
                a.state.as_str(),
                a.fetches
            ])?;
        Ok(())
    }

    /// The attachment of message `message_id`.
    pub fn attachment(
        &self,
        message_id: &[u8; 16],
    ) -> Result<Option<StoredAttachment>, VaultError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM attachments WHERE message_id = ?1"
            ))?
            .query_row([&message_id[..]], row)
            .optional()?)
    }

    /// Every attachment in `state`.
    pub fn attachments_in(
        &self,
        state: AttachmentState,
    ) -> Result<Vec<StoredAttachment>, VaultError> {
        let mut s = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM attachments WHERE state = ?1"
        ))?;
        let rows = s.query_map([state.as_str()], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves an attachment on.
    pub fn set_attachment_state(
        &self,
        message_id: &[u8; 16],
        state: AttachmentState,
    ) -> Result<(), VaultError> {
        self.conn
            .prepare_cached("UPDATE attachments SET state = ?2 WHERE message_id = ?1")?
            .execute(params![&message_id[..], state.as_str()])?;
        Ok(())
    }

    /// The blobs the vault still has attachments for (files of others can go).
    pub fn attachment_blobs(&self) -> Result<std::collections::HashSet<[u8; 16]>, VaultError> {
        let mut s = self.conn.prepare_cached("SELECT blob FROM attachments")?;
        let rows = s.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        Ok(rows
            .filter_map(Result::ok)
            .filter_map(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_attachment_goes_with_its_message() {
        let (_d, v) = crate::test_vault();
        crate::test_contact(&v, 3);
        let mut m = crate::test_message([3; 32], [9; 16], "", false, 1_000);
        m.kind = "attachment".into();
        v.insert_message(&m).unwrap();
        let a = StoredAttachment {
            message_id: [9; 16],
            blob: [1; 16],
            key: Zeroizing::new([2; 32]),
            digest: [3; 32],
            size: 123,
            name: "map.pdf".into(),
            mime: "application/pdf".into(),
            state: AttachmentState::Remote,
            fetches: 1,
        };
        v.put_attachment(&a).unwrap();
        assert_eq!(v.attachment(&[9; 16]).unwrap(), Some(a.clone()));
        assert_eq!(v.attachments_in(AttachmentState::Remote).unwrap(), vec![a]);
        v.set_attachment_state(&[9; 16], AttachmentState::Downloaded)
            .unwrap();
        assert!(
            v.attachments_in(AttachmentState::Remote)
                .unwrap()
                .is_empty()
        );
        assert!(v.attachment_blobs().unwrap().contains(&[1; 16]));
        // Deleted with its message (here, or for everyone).
        v.delete_message_here(&[9; 16]).unwrap();
        assert_eq!(v.attachment(&[9; 16]).unwrap(), None);
        assert!(v.attachment_blobs().unwrap().is_empty());
    }
}
