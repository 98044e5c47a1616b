//! Attachments (`docs/attachments.md`, "On this device"): a file is sealed into its blob here,
//! uploaded to the relay (resuming where the relay's copy ends), and only then announced to the
//! contact inside the session; a received one is downloaded (resuming), checked whole against
//! its digest and every chunk's tag, and kept as the blob it travelled as — encrypted, its key
//! in the vault — until someone saves or opens it.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use tessera_crypto::attachment::{FileKey, Opener, Sealer, blob_len};
use tessera_messaging::BlobId;
use tessera_messaging::content::attachment::{Attachment, MAX_CAPTION, MAX_SIZE, to_hex32};
use tessera_proto::MAX_BLOB_PIECE;
use tessera_store::{ATTACHMENTS_DIR, AttachmentState, StoredAttachment};

use super::*;

/// The vault setting: attachments up to this many MiB are downloaded as they arrive.
pub const AUTO_DOWNLOAD_SETTING: &str = "auto_download_mib";
/// Its default.
pub const AUTO_DOWNLOAD_DEFAULT_MIB: u64 = 64;
/// Bytes read from a file at a time while sealing or opening.
const STEP: usize = 1 << 20;

/// What an interface shows of an attachment (never its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// The file's name as sent.
    pub name: String,
    /// Its length.
    pub size: u64,
    /// Its media type.
    pub mime: String,
    /// Where it is.
    pub state: AttachmentState,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A media type from the file name's extension (what the receiver is told; nothing is read).
fn mime_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("ogg" | "opus") => "audio/ogg",
        Some("mp4") => "video/mp4",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    }
}

impl Engine {
    fn attachments_dir(&self) -> PathBuf {
        self.inner.dir.join(ATTACHMENTS_DIR)
    }

    fn blob_path(&self, blob: &[u8; 16]) -> PathBuf {
        self.attachments_dir().join(hex(blob))
    }

    /// Sends the file at `path` with `caption`: it is sealed into its blob now (the file is
    /// read once, never held whole), the message is committed as `pending`, and
    /// [`Engine::upload_attachments`] puts the blob on the relay and then tells the contact. In
    /// the note to self it is only kept here.
    pub async fn send_file(
        &self,
        contact: &[u8; 32],
        path: &Path,
        caption: &str,
    ) -> Result<[u8; 16], CoreError> {
        if caption.len() > MAX_CAPTION {
            return Err(CoreError::TooLong);
        }
        let size = std::fs::metadata(path).map_err(CoreError::File)?.len();
        if size > MAX_SIZE {
            return Err(CoreError::TooLong);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "file".into());
        let name: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
        let mime = mime_of(&name).to_string();
        let key = FileKey::generate(&mut rng());
        let blob = BlobId::random(&mut rng());
        let id: [u8; 16] = rand::random();
        std::fs::create_dir_all(self.attachments_dir()).map_err(CoreError::File)?;
        let target = self.blob_path(&blob.0);
        let (source, sealing_key) = (path.to_path_buf(), FileKey::from_bytes(*key.as_bytes()));
        let digest =
            tokio::task::spawn_blocking(move || seal_file(&source, size, &sealing_key, &target))
                .await
                .map_err(|_| CoreError::Busy)??;
        self.maybe_maintain()?;
        let sent = self.next_sent_time();
        let now = i64::try_from(self.now_ms()).unwrap_or(i64::MAX);
        let stored = self.with(|u| {
            let me = &u.me.account_id;
            u.vault.transaction(|v| -> Result<(), CoreError> {
                let m = new_outgoing(v, me, contact, id, "attachment", caption, sent, now)?;
                let note = m.status == MessageStatus::Sent;
                v.insert_message(&m)?;
                let fetches = if note {
                    0
                } else {
                    v.contact_devices(contact)?.len()
                };
                v.put_attachment(&StoredAttachment {
                    message_id: id,
                    blob: blob.0,
                    key: Zeroizing::new(*key.as_bytes()),
                    digest,
                    size,
                    name: name.clone(),
                    mime: mime.clone(),
                    state: if note {
                        AttachmentState::Downloaded
                    } else {
                        AttachmentState::Uploading
                    },
                    fetches: u16::try_from(fetches.max(1)).unwrap_or(u16::MAX),
                })?;
                Ok(())
            })
        });
        if let Err(e) = stored {
            let _ = std::fs::remove_file(self.blob_path(&blob.0));
            return Err(e);
        }
        self.expiry_changed();
        Ok(id)
    }

    /// Puts every blob still waiting on the relay (resuming where its copy ends), then queues
    /// each one's message for the contact; how many went.
    pub async fn upload_attachments(&self) -> Result<usize, CoreError> {
        let waiting = self.with(|u| Ok(u.vault.attachments_in(AttachmentState::Uploading)?))?;
        if waiting.is_empty() {
            return Ok(0);
        }
        let client = self.connect().await?;
        let mut done = 0;
        for a in waiting {
            let total = blob_len(a.size);
            let mut file = std::fs::File::open(self.blob_path(&a.blob)).map_err(CoreError::File)?;
            let mut at = client.blob_open(a.blob, total, a.fetches).await?;
            while at < total {
                let n = (total - at).min(MAX_BLOB_PIECE as u64) as usize;
                let mut piece = vec![0u8; n];
                file.seek(SeekFrom::Start(at)).map_err(CoreError::File)?;
                file.read_exact(&mut piece).map_err(CoreError::File)?;
                at = client.blob_write(a.blob, at, piece).await?;
            }
            self.announce(&a)?;
            done += 1;
        }
        self.kick();
        Ok(done)
    }

    /// The blob is on the relay: the message that names it goes into the outbox.
    fn announce(&self, a: &StoredAttachment) -> Result<(), CoreError> {
        self.with(|u| {
            let me = &u.me.account_id;
            u.vault.transaction(|v| -> Result<(), CoreError> {
                let Some(m) = v.message(&a.message_id)? else {
                    // Deleted meanwhile: nothing to announce.
                    return Ok(());
                };
                let content = Content::Attachment(Attachment {
                    id: MessageId(a.message_id),
                    sent: u64::try_from(m.sent).unwrap_or(0),
                    blob: BlobId(a.blob),
                    key: to_hex32(&a.key),
                    digest: to_hex32(&a.digest),
                    size: a.size,
                    name: a.name.clone(),
                    mime: a.mime.clone(),
                    caption: m.body.clone(),
                    expires: m.expires_in.and_then(|s| u32::try_from(s).ok()),
                });
                let sent = u64::try_from(m.sent).unwrap_or(0);
                queue_in(v, me, &m.contact, &content, Some(&a.message_id), sent)?;
                v.set_attachment_state(&a.message_id, AttachmentState::Uploaded)?;
                Ok(())
            })
        })
    }

    /// Downloads the attachment of message `message_id` (resuming a partial download), checks
    /// every chunk and the digest, keeps the blob here and tells the relay this device has it.
    /// A blob that fails its checks is deleted here and the attachment marked failed.
    pub async fn download_attachment(&self, message_id: &[u8; 16]) -> Result<(), CoreError> {
        let a = self
            .with(|u| Ok(u.vault.attachment(message_id)?))?
            .ok_or(CoreError::UnknownMessage)?;
        if a.state != AttachmentState::Remote {
            return Ok(());
        }
        let client = self.connect().await?;
        std::fs::create_dir_all(self.attachments_dir()).map_err(CoreError::File)?;
        let final_path = self.blob_path(&a.blob);
        let part = final_path.with_extension("part");
        let total = blob_len(a.size);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(CoreError::File)?;
        let mut have = file.metadata().map_err(CoreError::File)?.len().min(total);
        while have < total {
            let want = (total - have).min(MAX_BLOB_PIECE as u64) as u32;
            let piece = client.blob_read(a.blob, have, want).await?;
            if piece.is_empty() {
                return Err(CoreError::Net(ClientError::Protocol("an empty blob piece")));
            }
            file.write_all(&piece).map_err(CoreError::File)?;
            have += piece.len() as u64;
        }
        file.sync_all().map_err(CoreError::File)?;
        drop(file);
        let (check_path, key, size, digest) =
            (part.clone(), FileKey::from_bytes(*a.key), a.size, a.digest);
        let checked = tokio::task::spawn_blocking(move || {
            open_blob(&check_path, &key, size, digest, &mut std::io::sink())
        })
        .await
        .map_err(|_| CoreError::Busy)?;
        if let Err(e) = checked {
            let _ = std::fs::remove_file(&part);
            self.with(|u| {
                Ok(u.vault
                    .set_attachment_state(message_id, AttachmentState::Failed)?)
            })?;
            return Err(e);
        }
        std::fs::rename(&part, &final_path).map_err(CoreError::File)?;
        self.with(|u| {
            Ok(u.vault
                .set_attachment_state(message_id, AttachmentState::Downloaded)?)
        })?;
        if let Err(e) = client.blob_fetched(a.blob).await {
            tracing::info!(error = %e, "the relay was not told the blob was fetched");
        }
        if let Ok(Some(m)) = self.message(message_id) {
            self.emit(Event::MessageChanged {
                contact: m.contact,
                message_id: *message_id,
                message: Box::new(m),
            });
        }
        Ok(())
    }

    /// Downloads what arrived and is no larger than the automatic limit (the setting
    /// [`AUTO_DOWNLOAD_SETTING`], MiB); how many. A failure leaves the rest for later.
    pub async fn download_attachments(&self) -> Result<usize, CoreError> {
        let (waiting, limit) = self.with(|u| {
            let limit = u
                .vault
                .setting(AUTO_DOWNLOAD_SETTING)?
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(AUTO_DOWNLOAD_DEFAULT_MIB);
            Ok((
                u.vault.attachments_in(AttachmentState::Remote)?,
                limit << 20,
            ))
        })?;
        let mut done = 0;
        for a in waiting.iter().filter(|a| a.size <= limit) {
            match self.download_attachment(&a.message_id).await {
                Ok(()) => done += 1,
                Err(e) => tracing::warn!(error = %e, "an attachment did not download"),
            }
        }
        Ok(done)
    }

    /// What message `message_id`'s attachment is (`None`: it has none).
    pub fn attachment(&self, message_id: &[u8; 16]) -> Result<Option<AttachmentInfo>, CoreError> {
        self.with(|u| {
            Ok(u.vault.attachment(message_id)?.map(|a| AttachmentInfo {
                name: a.name,
                size: a.size,
                mime: a.mime,
                state: a.state,
            }))
        })
    }

    /// Writes the attachment of message `message_id`, decrypted, to `dest` (replacing it; the
    /// person chose where); its length. The blob here is checked again as it is opened.
    pub fn save_attachment(&self, message_id: &[u8; 16], dest: &Path) -> Result<u64, CoreError> {
        let a = self
            .with(|u| Ok(u.vault.attachment(message_id)?))?
            .ok_or(CoreError::UnknownMessage)?;
        if matches!(a.state, AttachmentState::Remote | AttachmentState::Failed) {
            return Err(CoreError::NotDownloaded);
        }
        let tmp = dest.with_extension("tessera-part");
        let mut out = std::fs::File::create(&tmp).map_err(CoreError::File)?;
        let opened = open_blob(
            &self.blob_path(&a.blob),
            &FileKey::from_bytes(*a.key),
            a.size,
            a.digest,
            &mut out,
        );
        if let Err(e) = opened.and_then(|()| out.sync_all().map_err(CoreError::File)) {
            drop(out);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, dest).map_err(CoreError::File)?;
        Ok(a.size)
    }

    /// Deletes blob files no attachment in the vault names any more (their messages were
    /// deleted, expired or removed with their conversation).
    pub(super) fn sweep_attachment_files(&self) {
        let Ok(known) = self.with(|u| Ok(u.vault.attachment_blobs()?)) else {
            return;
        };
        let known: std::collections::HashSet<String> = known.iter().map(|b| hex(b)).collect();
        for entry in std::fs::read_dir(self.attachments_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name.split('.').next().unwrap_or_default();
            if !known.contains(stem) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Seals the file at `source` (`size` bytes) into `target`; the blob's digest.
fn seal_file(
    source: &Path,
    size: u64,
    key: &FileKey,
    target: &Path,
) -> Result<[u8; 32], CoreError> {
    let tmp = target.with_extension("sealing");
    let result = (|| {
        let mut input = std::fs::File::open(source).map_err(CoreError::File)?;
        let mut out = std::fs::File::create(&tmp).map_err(CoreError::File)?;
        let mut sealer = Sealer::new(key, size)?;
        let mut buf = Zeroizing::new(vec![0u8; STEP]);
        loop {
            let n = input.read(&mut buf).map_err(CoreError::File)?;
            if n == 0 {
                break;
            }
            out.write_all(&sealer.push(&buf[..n])?)
                .map_err(CoreError::File)?;
        }
        let (rest, digest) = sealer.finish()?;
        out.write_all(&rest).map_err(CoreError::File)?;
        out.sync_all().map_err(CoreError::File)?;
        std::fs::rename(&tmp, target).map_err(CoreError::File)?;
        Ok(digest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Opens the blob at `path` into `out`, checking every chunk and the digest.
fn open_blob(
    path: &Path,
    key: &FileKey,
    size: u64,
    digest: [u8; 32],
    out: &mut dyn std::io::Write,
) -> Result<(), CoreError> {
    let mut input = std::fs::File::open(path).map_err(CoreError::File)?;
    let mut opener = Opener::new(key, size, digest)?;
    let mut buf = vec![0u8; STEP];
    loop {
        let n = input.read(&mut buf).map_err(CoreError::File)?;
        if n == 0 {
            break;
        }
        let plain = Zeroizing::new(opener.push(&buf[..n])?);
        out.write_all(&plain).map_err(CoreError::File)?;
    }
    opener.finish()?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{account, befriend, relay, wait_for};
    use super::*;

    /// A file goes up and comes down; one changed on the relay is refused and not kept; the
    /// automatic limit holds others back; the note to self keeps files here; deleting a
    /// message deletes its blob file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_travel_sealed_and_a_changed_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let (alice, _) = account(dir.path(), &relay, "alice").await;
        let (bob, _) = account(dir.path(), &relay, "bob").await;
        let (alice_id, bob_id) = befriend(&alice, &bob).await;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 249) as u8).collect();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, &data).unwrap();

        // The first one is changed at the relay before Bob fetches it.
        let first = alice.send_file(&bob_id, &path, "first").await.unwrap();
        assert_eq!(
            alice.attachment(&first).unwrap().unwrap().state,
            AttachmentState::Uploading
        );
        assert_eq!(alice.upload_attachments().await.unwrap(), 1);
        wait_for("the first file's message", || {
            bob.message(&first).unwrap().is_some()
        })
        .await;
        let info = bob.attachment(&first).unwrap().unwrap();
        assert_eq!(
            (
                info.name.as_str(),
                info.size,
                info.mime.as_str(),
                info.state
            ),
            ("notes.txt", 200_000, "text/plain", AttachmentState::Remote)
        );
        let blobs = relay.dir().join("blobs");
        let on_relay = std::fs::read_dir(&blobs)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&on_relay).unwrap();
        bytes[70_000] ^= 1;
        std::fs::write(&on_relay, bytes).unwrap();
        assert!(matches!(
            bob.download_attachment(&first).await,
            Err(CoreError::Attachment(_))
        ));
        assert_eq!(
            bob.attachment(&first).unwrap().unwrap().state,
            AttachmentState::Failed
        );
        assert_eq!(std::fs::read_dir(bob.attachments_dir()).unwrap().count(), 0);
        assert!(matches!(
            bob.save_attachment(&first, &dir.path().join("x")),
            Err(CoreError::NotDownloaded)
        ));

        // The second arrives whole; the automatic limit holds it back until asked.
        bob.set_app_setting(AUTO_DOWNLOAD_SETTING, "0").unwrap();
        let second = alice.send_file(&bob_id, &path, "").await.unwrap();
        alice.upload_attachments().await.unwrap();
        wait_for("the second file's message", || {
            bob.message(&second).unwrap().is_some()
        })
        .await;
        assert_eq!(bob.download_attachments().await.unwrap(), 0);
        bob.download_attachment(&second).await.unwrap();
        let saved = dir.path().join("saved.txt");
        assert_eq!(bob.save_attachment(&second, &saved).unwrap(), 200_000);
        assert!(std::fs::read(&saved).unwrap() == data);
        bob.delete_message(&second, DeleteFor::Me).await.unwrap();
        assert_eq!(std::fs::read_dir(bob.attachments_dir()).unwrap().count(), 0);

        // Deleted for everyone by its sender: gone on both sides, blob files included.
        let third = alice.send_file(&bob_id, &path, "oops").await.unwrap();
        alice.upload_attachments().await.unwrap();
        wait_for("the third file's message", || {
            bob.message(&third).unwrap().is_some()
        })
        .await;
        bob.download_attachment(&third).await.unwrap();
        assert_eq!(std::fs::read_dir(bob.attachments_dir()).unwrap().count(), 1);
        alice
            .delete_message(&third, DeleteFor::Everyone)
            .await
            .unwrap();
        wait_for("the deletion at bob's", || {
            bob.message(&third).unwrap().unwrap().kind == "deleted"
        })
        .await;
        assert_eq!(bob.attachment(&third).unwrap(), None);
        assert_eq!(std::fs::read_dir(bob.attachments_dir()).unwrap().count(), 0);
        assert_eq!(alice.attachment(&third).unwrap(), None);

        // The note to self keeps it here, opened at once, nothing queued.
        alice.flush_outbox().await.unwrap();
        let note = alice.send_file(&alice_id, &path, "mine").await.unwrap();
        assert_eq!(
            alice.attachment(&note).unwrap().unwrap().state,
            AttachmentState::Downloaded
        );
        assert_eq!(alice.upload_attachments().await.unwrap(), 0);
        alice
            .save_attachment(&note, &dir.path().join("mine.txt"))
            .unwrap();
        assert!(std::fs::read(dir.path().join("mine.txt")).unwrap() == data);
        assert!(matches!(
            alice
                .send_file(&bob_id, &dir.path().join("missing"), "")
                .await,
            Err(CoreError::File(_))
        ));
    }
}
