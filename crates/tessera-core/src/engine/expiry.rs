//! Disappearing messages (`docs/disappearing.md`): the conversation timer, and the removal of
//! what has expired — at unlock, before history and search are read, and while unlocked at
//! the next expiry.

use std::sync::Weak;

use tessera_messaging::content::timer::{TIMERS, Timer};
use tessera_messaging::receive::TIMER_NOTICE;

use super::*;

/// The longest the expiry watcher sleeps without looking (a clock stepped forward, an expiry
/// set by another path).
const WATCH_AT_MOST: Duration = Duration::from_secs(60);

impl Engine {
    /// The timer of the conversation with `contact`: seconds a message lives (0: off).
    pub fn timer(&self, contact: &[u8; 32]) -> Result<u32, CoreError> {
        self.with(|u| {
            let conversation = conversation_of(&u.me.account_id, contact);
            Ok(u.vault.conversation_timer(&conversation)?.0)
        })
    }

    /// Sets the timer of the conversation with `contact` (one of
    /// [`tessera_messaging::content::timer::TIMERS`]; 0: off) and tells the contact; both sides
    /// show the change as a notice. Texts sent from now on carry it.
    pub async fn set_timer(&self, contact: &[u8; 32], seconds: u32) -> Result<(), CoreError> {
        if !TIMERS.contains(&seconds) {
            return Err(CoreError::BadTimer);
        }
        self.maybe_maintain()?;
        let sent = self.next_sent_time();
        let notice: [u8; 16] = rand::random();
        self.with(|u| {
            let me = &u.me.account_id;
            u.vault.transaction(|v| -> Result<(), CoreError> {
                let at = i64::try_from(sent).unwrap_or(i64::MAX);
                if *contact == me.0 {
                    v.open_note_to_self(contact, at)?;
                } else {
                    let c = v.contact(contact)?.ok_or(CoreError::UnknownContact)?;
                    match c.state {
                        ContactState::Accepted => {}
                        ContactState::Deleted => return Err(CoreError::ContactDeleted),
                        _ => return Err(CoreError::Rejected),
                    }
                }
                let conversation = conversation_of(me, contact);
                v.set_conversation_timer(&conversation, seconds, at)?;
                v.insert_message(&Message::notice(
                    conversation,
                    *contact,
                    notice,
                    TIMER_NOTICE,
                    seconds.to_string(),
                    true,
                    at,
                ))?;
                let content = Content::Timer(Timer { sent, seconds });
                queue_in(v, me, contact, &content, None, sent)
            })
        })?;
        if let Ok(Some(message)) = self.message(&notice) {
            self.emit(Event::Message {
                contact: *contact,
                message_id: notice,
                body: message.body.clone(),
                message: Box::new(message),
            });
        }
        self.kick();
        Ok(())
    }

    /// Removes what has expired by the engine's clock and tells listeners
    /// ([`Event::MessagesExpired`], one per conversation); returns how many went.
    pub fn expire_now(&self) -> Result<usize, CoreError> {
        let now = i64::try_from(self.now_ms()).unwrap_or(i64::MAX);
        let gone = self.with(|u| Ok(u.vault.expire(now)?))?;
        let mut by_contact: std::collections::BTreeMap<[u8; 32], Vec<[u8; 16]>> =
            std::collections::BTreeMap::new();
        for (id, contact) in &gone {
            by_contact.entry(*contact).or_default().push(*id);
        }
        for (contact, ids) in by_contact {
            self.emit(Event::MessagesExpired { contact, ids });
        }
        if !gone.is_empty() {
            self.sweep_attachment_files();
        }
        Ok(gone.len())
    }

    /// A countdown started or may have (a message sent or read): the watcher looks again.
    pub(super) fn expiry_changed(&self) {
        self.inner.expiry.notify_one();
    }

    /// Starts the watcher that removes messages when they expire while the engine is
    /// unlocked; it ends when the engine locks or is dropped (it holds the engine only while
    /// it looks, never while it sleeps).
    pub(super) fn watch_expiry(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let woken = self.inner.expiry.clone();
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let engine = Engine { inner };
                if !engine.is_unlocked() {
                    return;
                }
                if let Err(e) = engine.expire_now() {
                    tracing::warn!(error = %e, "removing expired messages failed");
                }
                let now = i64::try_from(engine.now_ms()).unwrap_or(i64::MAX);
                let wait = match engine.with(|u| Ok(u.vault.next_expiry()?)) {
                    Ok(Some(at)) => {
                        Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
                            .min(WATCH_AT_MOST)
                    }
                    _ => WATCH_AT_MOST,
                };
                drop(engine);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = woken.notified() => {}
                }
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{account_with_clock, befriend, relay, wait_for};
    use super::*;
    use crate::clock::ManualClock;

    /// While both engines run, the watcher removes the sender's copy once its time has come
    /// after sending, and the reader's once its time has come after reading (not before), and
    /// reports each removal.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watcher_removes_messages_when_their_time_comes_while_unlocked() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let start = crate::clock::SystemClock.now_ms();
        let (clock_a, clock_b) = (ManualClock::new(start), ManualClock::new(start));
        let (alice, _) =
            account_with_clock(dir.path(), &relay, "alice", Arc::new(clock_a.clone())).await;
        let (bob, _) =
            account_with_clock(dir.path(), &relay, "bob", Arc::new(clock_b.clone())).await;
        let (alice_id, bob_id) = befriend(&alice, &bob).await;
        assert!(matches!(
            alice.set_timer(&bob_id, 7).await,
            Err(CoreError::BadTimer)
        ));
        alice.set_timer(&bob_id, 30).await.unwrap();
        wait_for("bob's timer", || bob.timer(&alice_id).unwrap() == 30).await;

        let mut alice_events = alice.subscribe();
        let id = alice.send_text(&bob_id, "gone soon").await.unwrap();
        wait_for("the text", || bob.message(&id).unwrap().is_some()).await;
        clock_a.advance(Duration::from_secs(31));
        alice.expiry_changed();
        wait_for("alice's copy to go", || {
            alice.message(&id).unwrap().is_none()
        })
        .await;
        let reported = loop {
            match tokio::time::timeout(Duration::from_secs(10), alice_events.recv()).await {
                Ok(Ok(Event::MessagesExpired { contact, ids })) => break (contact, ids),
                Ok(Ok(_)) => {}
                other => panic!("no MessagesExpired event: {other:?}"),
            }
        };
        assert_eq!(reported, (bob_id, vec![id]));

        // Bob has not read it: it stays however long he waits.
        clock_b.advance(Duration::from_secs(3_600));
        bob.expiry_changed();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(bob.message(&id).unwrap().is_some());
        // Read now, it goes 30 s later.
        bob.mark_read(&alice_id).await.unwrap();
        clock_b.advance(Duration::from_secs(29));
        bob.expiry_changed();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(bob.message(&id).unwrap().is_some());
        clock_b.advance(Duration::from_secs(2));
        bob.expiry_changed();
        wait_for("bob's copy to go", || bob.message(&id).unwrap().is_none()).await;
        assert!(bob.search("gone", 10).unwrap().is_empty());
    }

    /// A file under a 30 s timer: its blob files go with the message on both sides.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_file_takes_its_blob_files_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let start = crate::clock::SystemClock.now_ms();
        let (clock_a, clock_b) = (ManualClock::new(start), ManualClock::new(start));
        let (alice, _) =
            account_with_clock(dir.path(), &relay, "alice", Arc::new(clock_a.clone())).await;
        let (bob, _) =
            account_with_clock(dir.path(), &relay, "bob", Arc::new(clock_b.clone())).await;
        let (alice_id, bob_id) = befriend(&alice, &bob).await;
        alice.set_timer(&bob_id, 30).await.unwrap();
        wait_for("bob's timer", || bob.timer(&alice_id).unwrap() == 30).await;
        let path = dir.path().join("photo.jpg");
        std::fs::write(&path, vec![7u8; 100_000]).unwrap();
        let id = alice.send_file(&bob_id, &path, "").await.unwrap();
        alice.upload_attachments().await.unwrap();
        wait_for("the file", || bob.message(&id).unwrap().is_some()).await;
        bob.download_attachment(&id).await.unwrap();
        let files = |e: &Engine| {
            std::fs::read_dir(e.inner.dir.join(tessera_store::ATTACHMENTS_DIR))
                .map(|d| d.count())
                .unwrap_or(0)
        };
        assert_eq!((files(&alice), files(&bob)), (1, 1));
        bob.mark_read(&alice_id).await.unwrap();
        clock_a.advance(Duration::from_secs(31));
        clock_b.advance(Duration::from_secs(31));
        alice.expiry_changed();
        bob.expiry_changed();
        wait_for("both copies to go", || {
            alice.message(&id).unwrap().is_none() && bob.message(&id).unwrap().is_none()
        })
        .await;
        wait_for("both blob files to go", || files(&alice) + files(&bob) == 0).await;
    }
}
