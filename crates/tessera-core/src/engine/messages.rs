//! Sending: a message, a call signal or receipts go into the outbox in one vault transaction
//! with their Signal encryption; delivery (`delivery.rs`) takes them from there. Reading history.

use super::*;

pub(super) fn address(account: &AccountId, device_id: u32) -> Result<ProtocolAddress, CoreError> {
    let device = u8::try_from(device_id)
        .ok()
        .and_then(|d| DeviceId::new(d).ok())
        .ok_or(CoreError::BadContent)?;
    Ok(ProtocolAddress::new(account.to_string(), device))
}

/// Encrypts `content` for every known device of `contact` and puts the Signal messages in the
/// outbox (in the caller's transaction). They are sealed into envelopes when first sent
/// ([`Engine::flush_outbox`]), to the envelope key the device has then.
pub(super) fn queue(
    v: &Vault,
    contact: &AccountId,
    content: &Content,
    message: Option<&[u8; 16]>,
    now: u64,
) -> Result<(), CoreError> {
    if v.is_blocked(&contact.0)? {
        return Err(CoreError::Blocked);
    }
    let devices = v.contact_devices(&contact.0)?;
    if devices.is_empty() {
        return Err(CoreError::UnknownContact);
    }
    let plain = content.to_bytes()?;
    let mut r = rng();
    for (device_id, _) in devices {
        let addr = address(contact, device_id)?;
        let (mut s, mut i) = (v.signal(), v.signal());
        let ct = message_encrypt(&plain, &addr, &mut s, &mut i, at(now), &mut r).run_to_end()?;
        let mut payload = vec![ct.message_type() as u8];
        payload.extend_from_slice(ct.serialize());
        v.outbox_push(&contact.0, device_id, &payload, message)?;
    }
    Ok(())
}

/// A new message of ours of `kind` in the conversation with `contact` (ours: the note to
/// self, opened if new), not yet stored: the contact must be one we may write to, and the
/// conversation's timer counts from `sent` (`docs/disappearing.md`). A note is kept, not
/// sent: it is `sent` already; anything else starts `pending`.
#[allow(clippy::too_many_arguments)]
pub(super) fn new_outgoing(
    v: &Vault,
    me: &AccountId,
    contact: &[u8; 32],
    id: [u8; 16],
    kind: &str,
    body: &str,
    sent: u64,
    now: i64,
) -> Result<Message, CoreError> {
    let note = *contact == me.0;
    if note {
        v.open_note_to_self(contact, now)?;
    } else {
        let c = v.contact(contact)?.ok_or(CoreError::UnknownContact)?;
        match c.state {
            ContactState::Rejected => return Err(CoreError::Rejected),
            ContactState::Deleted => return Err(CoreError::ContactDeleted),
            _ => {}
        }
        if v.is_blocked(contact)? {
            return Err(CoreError::Blocked);
        }
    }
    let conversation = conversation_of(me, contact);
    let timer = v.conversation_timer(&conversation)?.0;
    let expires = (timer > 0).then_some(i64::from(timer));
    let sent = i64::try_from(sent).unwrap_or(i64::MAX);
    Ok(Message {
        id: 0,
        conversation,
        contact: *contact,
        message_id: id,
        outgoing: true,
        body: body.to_string(),
        sent,
        received: None,
        status: if note {
            MessageStatus::Sent
        } else {
            MessageStatus::Pending
        },
        read: true,
        kind: kind.into(),
        failure: None,
        time_flag: None,
        reply_to: None,
        edited: None,
        expires_in: expires,
        expire_at: expires.map(|s| sent.saturating_add(s * 1_000)),
        preview: None,
    })
}

/// `now` (ms) as the time libsignal takes.
pub(super) fn at(now: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(now)
}

pub(super) fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

impl Engine {
    /// Sends a text message: returns its id as soon as it is committed to the outbox (status
    /// `pending`); delivery runs in the background and reports progress as
    /// [`Event::Status`] (sent, delivered, read, or failed with a reason). Whether or not the
    /// relay is reachable makes no difference here.
    pub async fn send_text(&self, contact: &[u8; 32], body: &str) -> Result<[u8; 16], CoreError> {
        self.send_draft(contact, Draft::text(body)).await
    }

    /// Sends what the person wrote (a text, perhaps a reply, perhaps with a link preview) as
    /// [`Engine::send_text`] does. A reply must quote a message of the same conversation.
    pub async fn send_draft(
        &self,
        contact: &[u8; 32],
        draft: Draft,
    ) -> Result<[u8; 16], CoreError> {
        let Draft {
            body,
            reply_to,
            preview,
        } = draft;
        let body = body.as_str();
        if body.len() > crate::MAX_TEXT {
            return Err(CoreError::TooLong);
        }
        if let Some(quoted) = &reply_to {
            let quoted = self.with(|u| Ok(u.vault.message(quoted)?))?;
            if quoted.is_none_or(|m| m.contact != *contact) {
                return Err(CoreError::UnknownMessage);
            }
        }
        // Only about this text's first link (`docs/link-previews.md`).
        let preview = preview.filter(|p| p.fits(body));
        let id: [u8; 16] = rand::random();
        self.maybe_maintain()?;
        let sent = self.next_sent_time();
        let now = i64::try_from(self.now_ms()).unwrap_or(i64::MAX);
        self.with(|u| {
            let me = &u.me.account_id;
            u.vault.transaction(|v| -> Result<(), CoreError> {
                let mut m = new_outgoing(v, me, contact, id, "text", body, sent, now)?;
                m.reply_to = reply_to;
                m.preview = preview.clone();
                v.insert_message(&m)?;
                let expires = m.expires_in.and_then(|s| u32::try_from(s).ok());
                let content = Content::Text(Text {
                    id: MessageId(id),
                    sent,
                    body: body.to_string(),
                    reply_to: reply_to.map(MessageId),
                    expires,
                    preview: preview.clone(),
                });
                queue_in(v, me, contact, &content, Some(&id), sent)
            })
        })?;
        self.expiry_changed();
        self.kick();
        Ok(id)
    }

    /// Sends a call signal to an accepted contact (`docs/calls.md`). It travels like a
    /// message (Signal session, envelope), but nothing is stored in the conversation. Unlike a
    /// text it waits for the outbox to be handed to the relay: a call is only worth placing
    /// now, so a relay that cannot be reached is the caller's error at once.
    pub async fn send_call_signal(
        &self,
        contact: &[u8; 32],
        call: crate::calls::CallId,
        signal: &crate::calls::Signal,
    ) -> Result<(), CoreError> {
        self.maybe_maintain()?;
        let now = self.now_ms();
        let content = Content::Call(Call {
            call: CallId(call.0),
            sent: now,
            signal: crate::calls::to_wire(signal),
        });
        // The same limits a receiver applies (SDP size, secret form).
        Content::from_bytes(&content.to_bytes()?)?;
        self.with(|u| {
            u.vault.transaction(|v| -> Result<(), CoreError> {
                let c = v.contact(contact)?.ok_or(CoreError::UnknownContact)?;
                if c.state != ContactState::Accepted {
                    return Err(CoreError::UnknownContact);
                }
                queue(v, &AccountId(*contact), &content, None, now)
            })
        })?;
        self.flush_outbox().await?;
        Ok(())
    }

    /// Messages with a contact (our own account: the note to self), `limit` at a time, older
    /// than row `before`.
    pub fn history(
        &self,
        contact: &[u8; 32],
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>, CoreError> {
        self.expire_now()?;
        self.with(|u| {
            let conversation = conversation_of(&u.me.account_id, contact);
            Ok(u.vault.conversation_history(&conversation, before, limit)?)
        })
    }

    /// Full-text search over all messages.
    pub fn search(&self, text: &str, limit: u32) -> Result<Vec<Message>, CoreError> {
        self.expire_now()?;
        self.with(|u| Ok(u.vault.search(text, limit)?))
    }

    /// The time to write into a message sent now: the engine clock, but always after the
    /// previous message's (two sends in the same millisecond, or a clock stepped back, still
    /// sort in send order on the recipient's side, which orders by sender time).
    pub(super) fn next_sent_time(&self) -> u64 {
        use std::sync::atomic::Ordering;
        let now = self.now_ms();
        let mut last = self.inner.last_sent.load(Ordering::SeqCst);
        loop {
            let next = now.max(last.saturating_add(1));
            match self.inner.last_sent.compare_exchange(
                last,
                next,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Envelopes that could not be opened or decrypted, newest first (their reasons, sizes and
    /// times; the sender when it was authenticated).
    pub fn quarantined(&self, limit: u32) -> Result<Vec<tessera_store::Quarantined>, CoreError> {
        self.with(|u| Ok(u.vault.quarantined(limit)?))
    }

    /// A message by id.
    pub fn message(&self, id: &[u8; 16]) -> Result<Option<Message>, CoreError> {
        self.with(|u| Ok(u.vault.message(id)?))
    }

    /// Marks a conversation read (and no longer marked unread) and sends read receipts for
    /// what was unread, unless read receipts are off (`docs/conversations.md`) or the contact
    /// is blocked.
    pub async fn mark_read(&self, contact: &[u8; 32]) -> Result<usize, CoreError> {
        self.refresh_contact(contact).await;
        self.maybe_maintain()?;
        let now = self.now_ms();
        let n = self.with(|u| {
            let conversation = conversation_of(&u.me.account_id, contact);
            u.vault.transaction(|v| -> Result<usize, CoreError> {
                let ids = v.mark_read(contact, i64::try_from(now).unwrap_or(i64::MAX))?;
                let mut settings = v.conversation_settings(&conversation)?;
                if settings.marked_unread {
                    settings.marked_unread = false;
                    v.set_conversation_settings(&conversation, &settings)?;
                }
                let standing = v
                    .contact(contact)?
                    .map_or(Standing::Stranger, |c| standing(c.state));
                if !standing.gets_receipts()
                    || !super::manage::read_receipts_on(v)?
                    || v.is_blocked(contact)?
                {
                    return Ok(ids.len());
                }
                for chunk in ids.chunks(MAX_RECEIPT_IDS) {
                    let receipt = Content::Receipt(Receipt {
                        kind: ReceiptKind::Read,
                        ids: chunk.iter().copied().map(MessageId).collect(),
                    });
                    queue(v, &AccountId(*contact), &receipt, None, now)?;
                }
                Ok(ids.len())
            })
        })?;
        if n > 0 {
            // Some may have started counting down (docs/disappearing.md).
            self.expiry_changed();
            self.kick();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{account, befriend, relay, wait_for};
    use crate::CoreError;
    use tessera_store::MessageStatus;

    /// `send_text` refuses what it cannot send with a typed error and stores nothing; what it
    /// accepts is committed as pending, reaches the contact, and ends delivered on the sender's
    /// side, in send order on the recipient's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn send_text_commits_then_delivers_and_refuses_what_it_cannot_send() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let (alice, _) = account(dir.path(), &relay, "alice").await;
        let (bob, _) = account(dir.path(), &relay, "bob").await;
        let stranger = [0x55; 32];
        assert!(matches!(
            alice.send_text(&stranger, "hello").await,
            Err(CoreError::UnknownContact)
        ));
        let (_, bob_id) = befriend(&alice, &bob).await;
        let too_long = "x".repeat(crate::MAX_TEXT + 1);
        assert!(matches!(
            alice.send_text(&bob_id, &too_long).await,
            Err(CoreError::TooLong)
        ));
        assert!(alice.history(&bob_id, None, 10).unwrap().is_empty());

        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(
                alice
                    .send_text(&bob_id, &format!("note {n}"))
                    .await
                    .unwrap(),
            );
        }
        let first = alice.message(&ids[0]).unwrap().unwrap();
        assert!(first.outgoing);
        assert_eq!(first.body, "note 0");
        let alice_id = alice.account_id().unwrap().0;
        wait_for("the five notes", || {
            bob.history(&alice_id, None, 10).unwrap().len() == 5
        })
        .await;
        let mut got: Vec<String> = bob
            .history(&alice_id, None, 10)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        got.sort_by_key(|b| b.clone());
        assert_eq!(got, (0..5).map(|n| format!("note {n}")).collect::<Vec<_>>());
        let order: Vec<i64> = bob
            .history(&alice_id, None, 10)
            .unwrap()
            .iter()
            .map(|m| m.sent)
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] != w[1]),
            "distinct sender times"
        );
        wait_for("delivery receipts", || {
            ids.iter().all(|id| {
                alice
                    .message(id)
                    .unwrap()
                    .is_some_and(|m| m.status >= MessageStatus::Delivered)
            })
        })
        .await;
        assert_eq!(bob.search("note", 10).unwrap().len(), 5);
    }
}
