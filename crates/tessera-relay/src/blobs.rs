//! Attachment blobs (`docs/attachments.md`, "Relay blob store"): opaque encrypted files that a
//! client uploads in pieces and its contacts' devices download, kept on disk beside the
//! database (`<data dir>/blobs/`), never whole in memory.
//!
//! A blob's file is only ever appended to, in order, and synced after each piece: whatever
//! its length is after a crash is a prefix of what was sent, so the file's length is how much
//! is stored and an upload resumes from there. The index (`blobs.sqlite`) holds the owner, the
//! size, how many fetches are left and when it was made; it changes only when a blob is opened,
//! completed, fetched or swept.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Deserialize;
use tessera_proto::{BlobId, MAX_BLOB_PIECE};

use crate::error::RelayError;

/// The `[blobs]` table of the relay's configuration.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BlobSettings {
    /// The largest blob, bytes.
    pub max_size: u64,
    /// Most bytes of blobs one account may have stored at once.
    pub quota: u64,
    /// Days a complete blob is kept when not every device fetched it.
    pub ttl_days: u64,
    /// Hours an unfinished upload is kept for a resume.
    pub partial_hours: u64,
}

impl Default for BlobSettings {
    fn default() -> Self {
        Self {
            max_size: 2 << 30,
            quota: 8 << 30,
            ttl_days: 30,
            partial_hours: 48,
        }
    }
}

/// Why a blob request was refused.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No such blob here (or not one this account may write).
    #[error("no such blob")]
    NotFound,
    /// Over the size limit or the account's quota.
    #[error("the blob is over this relay's size limit or the account's quota")]
    Quota,
    /// The request does not fit the blob (another size, past its end, a read too long).
    #[error("the request does not fit the blob")]
    Mismatch,
    /// The disk or the index failed.
    #[error("blob storage: {0}")]
    Io(String),
}

impl From<std::io::Error> for BlobError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e.to_string())
    }
}

impl From<rusqlite::Error> for BlobError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Io(e.to_string())
    }
}

/// How much of a blob is here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobState {
    /// Its whole size.
    pub size: u64,
    /// Bytes stored from the start.
    pub stored: u64,
}

/// The blob store.
pub struct Blobs {
    dir: PathBuf,
    settings: BlobSettings,
    index: Mutex<Connection>,
}

/// SQLite integers are signed; sizes and times here never pass `i64::MAX`.
fn to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn hex(id: &BlobId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl Blobs {
    /// Opens (creating) the store in `<data_dir>/blobs`.
    pub fn open(data_dir: &Path, settings: BlobSettings) -> Result<Self, RelayError> {
        let dir = data_dir.join("blobs");
        let fail = |e: &dyn std::fmt::Display| RelayError::Database {
            path: dir.clone(),
            message: e.to_string(),
        };
        fs::create_dir_all(&dir).map_err(|e| fail(&e))?;
        let conn = Connection::open(data_dir.join("blobs.sqlite")).map_err(|e| fail(&e))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS blobs (
                id       BLOB PRIMARY KEY,
                owner    BLOB NOT NULL,
                size     INTEGER NOT NULL,
                fetches  INTEGER NOT NULL,
                created  INTEGER NOT NULL,
                complete INTEGER NOT NULL DEFAULT 0
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS blobs_by_owner ON blobs(owner);",
        )
        .map_err(|e| fail(&e))?;
        Ok(Self {
            dir,
            settings,
            index: Mutex::new(conn),
        })
    }

    fn index(&self) -> Result<std::sync::MutexGuard<'_, Connection>, BlobError> {
        self.index
            .lock()
            .map_err(|_| BlobError::Io("the blob index lock was poisoned".into()))
    }

    fn partial(&self, id: &BlobId) -> PathBuf {
        self.dir.join(format!("{}.part", hex(id)))
    }

    fn complete(&self, id: &BlobId) -> PathBuf {
        self.dir.join(hex(id))
    }

    /// Starts an upload, or says how far one got. A blob of another account is `NotFound`.
    pub fn open_blob(
        &self,
        owner: &[u8; 32],
        id: &BlobId,
        size: u64,
        fetches: u16,
        now: u64,
    ) -> Result<BlobState, BlobError> {
        let db = self.index()?;
        let row: Option<(Vec<u8>, u64, bool)> = db
            .query_row(
                "SELECT owner, size, complete FROM blobs WHERE id = ?1",
                [&id[..]],
                |r| Ok((r.get(0)?, from_sql(r.get(1)?), r.get(2)?)),
            )
            .optional()?;
        if let Some((who, known, complete)) = row {
            if who != owner {
                return Err(BlobError::NotFound);
            }
            if known != size {
                return Err(BlobError::Mismatch);
            }
            let stored = if complete {
                size
            } else {
                fs::metadata(self.partial(id)).map(|m| m.len()).unwrap_or(0)
            };
            return Ok(BlobState { size, stored });
        }
        if size == 0 || size > self.settings.max_size {
            return Err(BlobError::Quota);
        }
        let used: u64 = db.query_row(
            "SELECT COALESCE(SUM(size), 0) FROM blobs WHERE owner = ?1",
            [&owner[..]],
            |r| r.get(0).map(from_sql),
        )?;
        if used.saturating_add(size) > self.settings.quota {
            return Err(BlobError::Quota);
        }
        File::create(self.partial(id))?.sync_all()?;
        db.execute(
            "INSERT INTO blobs (id, owner, size, fetches, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                &id[..],
                &owner[..],
                to_sql(size),
                fetches.max(1),
                to_sql(now)
            ],
        )?;
        Ok(BlobState { size, stored: 0 })
    }

    /// Appends `data` at `offset` if that is where the stored part ends (anything else changes
    /// nothing: the answer says where to go on). The last piece completes the blob.
    pub fn write(
        &self,
        owner: &[u8; 32],
        id: &BlobId,
        offset: u64,
        data: &[u8],
    ) -> Result<BlobState, BlobError> {
        let db = self.index()?;
        let (who, size, complete): (Vec<u8>, u64, bool) = db
            .query_row(
                "SELECT owner, size, complete FROM blobs WHERE id = ?1",
                [&id[..]],
                |r| Ok((r.get(0)?, from_sql(r.get(1)?), r.get(2)?)),
            )
            .optional()?
            .ok_or(BlobError::NotFound)?;
        if who != owner {
            return Err(BlobError::NotFound);
        }
        if complete {
            return Ok(BlobState { size, stored: size });
        }
        let path = self.partial(id);
        let mut file = OpenOptions::new().append(true).open(&path)?;
        let stored = file.metadata()?.len();
        if offset != stored {
            return Ok(BlobState { size, stored });
        }
        if stored + data.len() as u64 > size {
            return Err(BlobError::Mismatch);
        }
        file.write_all(data)?;
        file.sync_data()?;
        let stored = stored + data.len() as u64;
        if stored == size {
            fs::rename(&path, self.complete(id))?;
            db.execute("UPDATE blobs SET complete = 1 WHERE id = ?1", [&id[..]])?;
        }
        Ok(BlobState { size, stored })
    }

    /// Up to `len` bytes of complete blob `id` from `offset` (fewer at its end).
    pub fn read(&self, id: &BlobId, offset: u64, len: u32) -> Result<Vec<u8>, BlobError> {
        let size: u64 = {
            let db = self.index()?;
            db.query_row(
                "SELECT size FROM blobs WHERE id = ?1 AND complete = 1",
                [&id[..]],
                |r| r.get(0).map(from_sql),
            )
            .optional()?
            .ok_or(BlobError::NotFound)?
        };
        if len as usize > MAX_BLOB_PIECE || offset > size {
            return Err(BlobError::Mismatch);
        }
        let take = u64::from(len).min(size - offset) as usize;
        let mut file = File::open(self.complete(id))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut out = vec![0u8; take];
        file.read_exact(&mut out)?;
        Ok(out)
    }

    /// One device has the whole blob; after the last one it is deleted.
    pub fn fetched(&self, id: &BlobId) -> Result<(), BlobError> {
        let db = self.index()?;
        let left: Option<i64> = db
            .query_row(
                "UPDATE blobs SET fetches = fetches - 1 WHERE id = ?1 AND complete = 1
                 RETURNING fetches",
                [&id[..]],
                |r| r.get(0),
            )
            .optional()?;
        match left {
            None => Err(BlobError::NotFound),
            Some(n) if n <= 0 => {
                db.execute("DELETE FROM blobs WHERE id = ?1", [&id[..]])?;
                let _ = fs::remove_file(self.complete(id));
                Ok(())
            }
            Some(_) => Ok(()),
        }
    }

    /// Deletes complete blobs older than the TTL and unfinished ones older than the resume
    /// window, and files the index does not know (left by a crash between the two); returns
    /// how many blobs went.
    pub fn sweep(&self, now: u64) -> Result<usize, BlobError> {
        let ttl = self.settings.ttl_days.saturating_mul(86_400_000);
        let partial = self.settings.partial_hours.saturating_mul(3_600_000);
        let db = self.index()?;
        let gone: Vec<(Vec<u8>, bool)> = {
            let mut s = db.prepare(
                "DELETE FROM blobs WHERE (complete = 1 AND created < ?1)
                    OR (complete = 0 AND created < ?2)
                 RETURNING id, complete",
            )?;
            let rows = s.query_map(
                params![
                    to_sql(now.saturating_sub(ttl)),
                    to_sql(now.saturating_sub(partial))
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            rows.collect::<Result<_, _>>()?
        };
        for (id, complete) in &gone {
            let Ok(id) = BlobId::try_from(id.as_slice()) else {
                continue;
            };
            let path = if *complete {
                self.complete(&id)
            } else {
                self.partial(&id)
            };
            let _ = fs::remove_file(path);
        }
        // Files without an index row.
        let known: std::collections::HashSet<String> = {
            let mut s = db.prepare("SELECT id FROM blobs")?;
            let rows = s.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            rows.filter_map(Result::ok)
                .filter_map(|id| BlobId::try_from(id.as_slice()).ok())
                .map(|id| hex(&id))
                .collect()
        };
        for entry in fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name.trim_end_matches(".part");
            if !known.contains(stem) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(gone.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ALICE: [u8; 32] = [1; 32];
    const BOB: [u8; 32] = [2; 32];

    fn store(dir: &Path) -> Blobs {
        Blobs::open(
            dir,
            BlobSettings {
                max_size: 1 << 20,
                quota: 3 << 19,
                ttl_days: 1,
                partial_hours: 1,
            },
        )
        .unwrap()
    }

    #[test]
    fn an_upload_resumes_after_a_restart_and_is_read_back_then_goes_after_its_fetches() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let id = [7u8; 16];
        {
            let b = store(dir.path());
            assert_eq!(
                b.open_blob(&ALICE, &id, 300_000, 2, 10).unwrap(),
                BlobState {
                    size: 300_000,
                    stored: 0
                }
            );
            b.write(&ALICE, &id, 0, &data[..100_000]).unwrap();
            // Not readable before it is complete; nobody else may write or reopen it.
            assert!(matches!(b.read(&id, 0, 10), Err(BlobError::NotFound)));
            assert!(matches!(
                b.write(&BOB, &id, 100_000, &data[100_000..110_000]),
                Err(BlobError::NotFound)
            ));
            assert!(matches!(
                b.open_blob(&BOB, &id, 300_000, 1, 10),
                Err(BlobError::NotFound)
            ));
        }
        // The relay restarts: the upload goes on from what is on disk.
        let b = store(dir.path());
        let state = b.open_blob(&ALICE, &id, 300_000, 2, 20).unwrap();
        assert_eq!(state.stored, 100_000);
        // A piece at the wrong offset changes nothing.
        assert_eq!(
            b.write(&ALICE, &id, 50_000, &data[50_000..60_000])
                .unwrap()
                .stored,
            100_000
        );
        assert!(matches!(
            b.write(&ALICE, &id, 100_000, &vec![0; 200_001]),
            Err(BlobError::Mismatch)
        ));
        for start in (100_000..300_000).step_by(MAX_BLOB_PIECE) {
            let end = (start + MAX_BLOB_PIECE).min(300_000);
            b.write(&ALICE, &id, start as u64, &data[start..end])
                .unwrap();
        }
        let mut back = Vec::new();
        while back.len() < data.len() {
            back.extend(
                b.read(&id, back.len() as u64, MAX_BLOB_PIECE as u32)
                    .unwrap(),
            );
        }
        assert_eq!(back, data);
        assert!(matches!(
            b.read(&id, 0, MAX_BLOB_PIECE as u32 + 1),
            Err(BlobError::Mismatch)
        ));
        b.fetched(&id).unwrap();
        assert!(b.read(&id, 0, 10).is_ok(), "one fetch left");
        b.fetched(&id).unwrap();
        assert!(matches!(b.read(&id, 0, 10), Err(BlobError::NotFound)));
        assert!(
            fs::read_dir(dir.path().join("blobs"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn limits_quota_and_sweeping() {
        let dir = tempfile::tempdir().unwrap();
        let b = store(dir.path());
        assert!(matches!(
            b.open_blob(&ALICE, &[1; 16], (1 << 20) + 1, 1, 0),
            Err(BlobError::Quota)
        ));
        assert!(matches!(
            b.open_blob(&ALICE, &[1; 16], 0, 1, 0),
            Err(BlobError::Quota)
        ));
        b.open_blob(&ALICE, &[1; 16], 1 << 20, 1, 0).unwrap();
        // Quota: 1.5 MiB per account.
        assert!(matches!(
            b.open_blob(&ALICE, &[2; 16], 1 << 20, 1, 0),
            Err(BlobError::Quota)
        ));
        b.open_blob(&BOB, &[2; 16], 1 << 20, 1, 0).unwrap();
        assert!(matches!(
            b.open_blob(&ALICE, &[1; 16], 5, 1, 0),
            Err(BlobError::Mismatch)
        ));
        // A complete blob made at 0 and a partial one made later.
        b.open_blob(&ALICE, &[3; 16], 10, 1, 0).unwrap();
        b.write(&ALICE, &[3; 16], 0, &[9; 10]).unwrap();
        b.open_blob(&BOB, &[4; 16], 10, 1, 5_000_000).unwrap();
        fs::write(dir.path().join("blobs").join("stray.part"), b"x").unwrap();
        // After an hour and a bit: unfinished ones from before go, complete ones stay a day.
        assert_eq!(b.sweep(3_700_000).unwrap(), 2);
        assert_eq!(b.read(&[3; 16], 0, 10).unwrap(), vec![9; 10]);
        assert!(!dir.path().join("blobs").join("stray.part").exists());
        assert_eq!(b.sweep(86_400_001 + 5_000_000).unwrap(), 2);
        assert!(
            fs::read_dir(dir.path().join("blobs"))
                .unwrap()
                .next()
                .is_none()
        );
    }
}
