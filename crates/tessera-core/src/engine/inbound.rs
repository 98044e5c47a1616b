//! Receiving: one envelope opened, verified, decrypted and applied in one vault transaction
//! (`docs/engine.md`, "Messages"; `docs/messaging.md`, "Inbound policy").

use tessera_messaging::EnvelopeId;
use tessera_messaging::receive::{Arrival, Effect, Failure};

use super::*;

/// The vault's inbound links, as the envelope ring looks them up. A vault failure reads as "no
/// such link" to the ring; `failed` keeps it, so the envelope is kept at the relay, not dropped.
pub(super) struct VaultLinks<'a> {
    vault: &'a Vault,
    failed: std::cell::Cell<Option<VaultError>>,
}

impl InboundLinks for VaultLinks<'_> {
    fn inbound_link(&self, id: &LinkId) -> Option<InboundLink> {
        match self.vault.inbound_link(id) {
            Ok(found) => found.and_then(|b| InboundLink::from_bytes(&b).ok()),
            Err(e) => {
                self.failed.set(Some(e));
                None
            }
        }
    }
}

pub(super) use tessera_store::standing;

/// What processing one delivered envelope did.
pub(super) enum Processed {
    /// Handled (or a duplicate): acknowledge it.
    Done(Vec<Event>),
    /// Cannot be read until the user accepts the sender's new identity: keep it at the relay.
    Keep(Event),
}

pub(super) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text)
        .ok()
}

/// Quarantine rows kept (the newest); older ones are forgotten, so a flood of garbage cannot
/// grow the vault without bound.
const QUARANTINE_KEPT: u32 = 1000;

/// The kind of the notice a contact's account deletion leaves in the conversation.
pub const ACCOUNT_DELETED: &str = "account_deleted";

/// A 16-byte id for what an envelope leaves in a conversation (a second copy has the same).
fn envelope_key(bytes: &[u8]) -> EnvelopeId {
    let mut id = [0u8; 16];
    id.copy_from_slice(&blake3::hash(bytes).as_bytes()[..16]);
    EnvelopeId(id)
}

/// Runs tessera-messaging's inbound machine on the vault and carries out its effects inside
/// the caller's transaction: stores, queued receipts, quarantine rows, and the events to emit.
/// Returns the sessions to reset (network work, done after the transaction).
fn drive(
    v: &Vault,
    arrival: Arrival<'_>,
    reason: &str,
    size: usize,
    now: u64,
    events: &mut Vec<Event>,
) -> Result<Vec<AccountId>, CoreError> {
    let mut store = v;
    let effects = tessera_messaging::receive::receive(&mut store, arrival, now)?;
    let mut resets = Vec::new();
    for effect in effects {
        match effect {
            Effect::Stored(id) => {
                if let Some(message) = v.message(&id.0)? {
                    events.push(Event::Message {
                        contact: message.contact,
                        message_id: id.0,
                        body: message.body.clone(),
                        message: Box::new(message),
                    });
                }
            }
            Effect::Receipt { to, kind, ids } => {
                queue(v, &to, &Content::Receipt(Receipt { kind, ids }), None, now)?;
            }
            Effect::Typing { from, on } => {
                if super::manage::typing_on(v)? {
                    events.push(Event::Typing {
                        contact: from.0,
                        on,
                    });
                }
            }
            Effect::Changed(id) => {
                if let Some(message) = v.message(&id.0)? {
                    events.push(Event::MessageChanged {
                        contact: message.contact,
                        message_id: id.0,
                        message: Box::new(message),
                    });
                }
            }
            Effect::Status { id, .. } => {
                if let Some(message) = v.message(&id.0)? {
                    events.push(Event::Status {
                        message_id: id.0,
                        status: message.status,
                        message: Box::new(message),
                    });
                }
            }
            Effect::PeerReset { from } => events.push(Event::SessionReset { contact: from.0 }),
            Effect::Quarantine { from } => {
                v.quarantine(from.as_ref().map(|s| &s.0), reason, size, now as i64)?;
                v.trim_quarantine(QUARANTINE_KEPT)?;
                events.push(Event::Quarantined {
                    sender: from.map(|s| s.0),
                    reason: reason.to_string(),
                });
            }
            Effect::ResetSession { with } => resets.push(with),
        }
    }
    Ok(resets)
}

/// At most one automatic session reset per contact in this time (engine ms): a reset that
/// itself fails cannot start a loop between two devices.
pub(super) const RESET_EVERY_MS: u64 = 3_600_000;

/// What failed, for the inbound machine: before the sender was authenticated it was the
/// envelope; after, a Signal error means the session is broken (it is reset), anything else
/// is content we could not understand.
fn failure_of(e: &CoreError, authenticated: bool) -> Failure {
    match e {
        _ if !authenticated => Failure::Envelope,
        CoreError::Signal(_) => Failure::Session,
        _ => Failure::Content,
    }
}

/// Processes one envelope. `authenticated` is set to the sender as soon as the envelope layer
/// verified who sent it (so a failure after that can be shown in their conversation).
/// Keeps a contact device's certificate that came inside a message (a session reset, an
/// acceptance) if it verifies under the account keys we hold for the sender, is that device's,
/// and is newer (higher serial) than the one we have: from then on we seal to its envelope key
/// (`docs/backup.md`, "Starting over"). An older or equal one is ignored; one that does not
/// verify is refused (`BadContent` or the certificate's error).
fn keep_newer_certificate(
    v: &Vault,
    sender: AccountId,
    sender_public: &AccountPublic,
    device: u32,
    text: &str,
    now: u64,
) -> Result<(), CoreError> {
    let cert_bytes = base64_decode(text).ok_or(CoreError::BadContent)?;
    let cert = DeviceCertificate::from_bytes(&cert_bytes)?;
    cert.verify(sender_public, now)?;
    if cert.account_id != sender || cert.fields.device_id != device {
        return Err(CoreError::BadContent);
    }
    let newer = v
        .contact_devices(&sender.0)?
        .into_iter()
        .find(|(d, _)| *d == device)
        .and_then(|(_, b)| DeviceCertificate::from_bytes(&b).ok())
        .is_none_or(|held| cert.fields.serial > held.fields.serial);
    if newer {
        v.put_contact_device(&sender.0, device, &cert_bytes)?;
    }
    Ok(())
}

pub(super) fn process(
    u: &mut Unlocked,
    bytes: &[u8],
    now: u64,
    authenticated: &mut Option<AccountId>,
) -> Result<Processed, CoreError> {
    let links = VaultLinks {
        vault: &u.vault,
        failed: std::cell::Cell::new(None),
    };
    let received = match u.me.ring.receive(bytes, now, &links) {
        Ok(r) => r,
        Err(e) => return Err(links.failed.take().map_or(e.into(), CoreError::Vault)),
    };
    let verified = received.envelope;
    let sender = verified.sender.account_id;
    let device = verified.sender.device_id;
    *authenticated = Some(sender);
    u.vault
        .transaction(|v| -> Result<Processed, CoreError> {
            // Keyed on the sender too (docs/envelope.md §5).
            if !v.mark_seen(&verified.replay_key().to_bytes(), now as i64)? {
                return Ok(Processed::Done(Vec::new()));
            }
            // Links change only with an envelope that was processed (this transaction).
            if let Some(link) = &received.new_link {
                v.put_inbound_link(
                    &link.id(),
                    &sender.0,
                    device,
                    &link.to_bytes(),
                    now,
                    link.usable_until(),
                )?;
            }
            if let Some(ack) = received.ack
                && let Some(mut link) = v
                    .outbound_link(&sender.0, device)?
                    .and_then(|b| OutboundLink::from_bytes(&b).ok())
                && link.id() == ack
                && !link.acked
            {
                link.acked = true;
                v.put_outbound_link(&sender.0, device, &link.to_bytes())?;
            }
            // The sender's account keys: in a full envelope's certificate, else those stored
            // with the contact (a short envelope comes on a link a full one made).
            let sender_public = match &received.certificate {
                Some(c) => c.account().clone(),
                None => v
                    .contact(&sender.0)?
                    .and_then(|c| AccountPublic::from_bytes(&c.account_public).ok())
                    .ok_or(CoreError::UnknownContact)?,
            };
            let addr = address(&sender, device)?;
            if v.identity_record(addr.name())?.is_none() {
                // First contact: the identity is the one whose keys hash to the sender's account id
                // (checked by the epoch certificate).
                v.accept_identity(addr.name(), &sender_public.signal_identity_key())?;
            }
            let (kind, body) = verified
                .content
                .split_first()
                .ok_or(CoreError::BadContent)?;
            let message = match CiphertextMessageType::try_from(*kind) {
                Ok(CiphertextMessageType::PreKey) => {
                    CiphertextMessage::PreKeySignalMessage(PreKeySignalMessage::try_from(body)?)
                }
                Ok(CiphertextMessageType::Whisper) => {
                    CiphertextMessage::SignalMessage(SignalMessage::try_from(body)?)
                }
                _ => return Err(CoreError::BadContent),
            };
            let (mut s, mut i, mut p, sp, mut k) =
                (v.signal(), v.signal(), v.signal(), v.signal(), v.signal());
            let plain = match message_decrypt(
                &message,
                &addr,
                &mut s,
                &mut i,
                &mut p,
                &sp,
                &mut k,
                &mut rng(),
            )
            .run_to_end()
            {
                Ok(p) => Zeroizing::new(p),
                Err(SignalProtocolError::UntrustedIdentity(_)) => {
                    return Err(CoreError::IdentityChanged(sender.to_string()));
                }
                // The same Signal message in another envelope (a copy resealed by the
                // sender): already shown once; nothing is wrong with the session.
                Err(SignalProtocolError::DuplicatedMessage(..)) => {
                    return Ok(Processed::Done(Vec::new()));
                }
                Err(e) => return Err(e.into()),
            };
            let content = Content::from_bytes(&plain)?;
            // Blocked (docs/conversations.md): dropped without a trace or a receipt. Read
            // receipts off: theirs are not shown either.
            let unwanted_read = matches!(&content, Content::Receipt(r) if r.kind == ReceiptKind::Read)
                && !super::manage::read_receipts_on(v)?;
            if v.is_blocked(&sender.0)? || unwanted_read {
                return Ok(Processed::Done(Vec::new()));
            }
            let mut events = Vec::new();
            let contact = v.contact(&sender.0)?;
            match content {
                Content::ContactRequest(contact::Request {
                    name,
                    relay,
                    certificate,
                }) => {
                    let cert_bytes = base64_decode(&certificate).ok_or(CoreError::BadContent)?;
                    let cert = DeviceCertificate::from_bytes(&cert_bytes)?;
                    cert.verify(&sender_public, now)?;
                    if cert.account_id != sender {
                        return Err(CoreError::BadContent);
                    }
                    match contact {
                        Some(mut c) => {
                            if c.state == ContactState::Requested {
                                // Both asked: that is agreement.
                                c.state = ContactState::Accepted;
                                v.set_contact_state(&sender.0, c.state)?;
                                events.push(Event::ContactAccepted { contact: sender.0 });
                            }
                        }
                        None => {
                            let mut shown = name.clone();
                            if shown.is_empty() || v.contact_by_name(&shown)?.is_some() {
                                shown = sender.to_string();
                            }
                            v.put_contact(&Contact {
                                account_id: sender.0,
                                name: shown,
                                account_public: sender_public.to_bytes(),
                                relay,
                                state: ContactState::Incoming,
                                created: now as i64,
                            })?;
                            events.push(Event::ContactRequest {
                                contact: sender.0,
                                name,
                            });
                        }
                    }
                    v.put_contact_device(&sender.0, cert.fields.device_id, &cert_bytes)?;
                }
                Content::ContactAccept(ref accept) => {
                    if contact.is_some_and(|c| c.state == ContactState::Requested) {
                        if let Some(text) = &accept.certificate {
                            keep_newer_certificate(v, sender, &sender_public, device, text, now)?;
                        }
                        v.set_contact_state(&sender.0, ContactState::Accepted)?;
                        events.push(Event::ContactAccepted { contact: sender.0 });
                    }
                }
                Content::ContactReject(_) => {
                    if contact.is_some() {
                        v.set_contact_state(&sender.0, ContactState::Rejected)?;
                        events.push(Event::ContactRejected { contact: sender.0 });
                    }
                }
                Content::AccountDeleted(_) => {
                    // Their last message: the contact stays (with the history) as deleted, and
                    // the conversation says so (`docs/leaving.md`).
                    if contact.is_some_and(|c| c.state != ContactState::Deleted) {
                        v.set_contact_state(&sender.0, ContactState::Deleted)?;
                        let notice = Message::notice(
                            tessera_store::direct_conversation(&sender.0),
                            sender.0,
                            envelope_key(&verified.replay_key().to_bytes()).0,
                            ACCOUNT_DELETED,
                            String::new(),
                            false,
                            now as i64,
                        );
                        v.insert_message(&notice)?;
                        if let Some(message) = v.message(&notice.message_id)? {
                            events.push(Event::Message {
                                contact: sender.0,
                                message_id: notice.message_id,
                                body: String::new(),
                                message: Box::new(message),
                            });
                        }
                        events.push(Event::ContactDeleted { contact: sender.0 });
                    }
                }
                Content::Call(c) => {
                    // Calls only between accepted contacts. An offer that waited in the
                    // mailbox for more than a minute is not rung (the caller gave up long ago).
                    let accepted = contact.is_some_and(|c| c.state == ContactState::Accepted);
                    if accepted && !c.is_stale_offer(now) {
                        let signal =
                            crate::calls::from_wire(&c.signal).ok_or(CoreError::BadContent)?;
                        events.push(Event::Call {
                            contact: sender.0,
                            call: crate::calls::CallId(c.call.0),
                            signal,
                        });
                    }
                }
                // A reset from a contact may carry a newer certificate of the device (a
                // device restored from a backup has a new envelope key): kept if it verifies.
                Content::SessionReset(tessera_messaging::content::session::Reset {
                    certificate: Some(ref text),
                }) if contact.is_some() => {
                    keep_newer_certificate(v, sender, &sender_public, device, text, now)?;
                    let arrival = Arrival::Content {
                        from: sender,
                        content: &content,
                        envelope: envelope_key(&verified.replay_key().to_bytes()),
                    };
                    drive(v, arrival, "", 0, now, &mut events)?;
                }
                // A file: the machine decides whether the message is kept; what opens the blob
                // is kept with it (docs/attachments.md), to be downloaded.
                Content::Attachment(ref a) => {
                    let arrival = Arrival::Content {
                        from: sender,
                        content: &content,
                        envelope: envelope_key(&verified.replay_key().to_bytes()),
                    };
                    drive(v, arrival, "", 0, now, &mut events)?;
                    let kept = v
                        .message(&a.id.0)?
                        .is_some_and(|m| m.kind == "attachment" && m.contact == sender.0);
                    if kept
                        && v.attachment(&a.id.0)?.is_none()
                        && let (Some(key), Some(digest)) = (a.key_bytes(), a.digest_bytes())
                    {
                        v.put_attachment(&tessera_store::StoredAttachment {
                            message_id: a.id.0,
                            blob: a.blob.0,
                            key: Zeroizing::new(key),
                            digest,
                            size: a.size,
                            name: a.name.clone(),
                            mime: a.mime.clone(),
                            state: tessera_store::AttachmentState::Remote,
                            fetches: 1,
                        })?;
                    }
                }
                // Texts, receipts, message actions, unknown kinds, session resets: tessera-messaging
                // decides.
                content @ (Content::Text(_)
                | Content::Receipt(_)
                | Content::Unsupported { .. }
                | Content::SessionReset(_)
                | Content::Edit(_)
                | Content::Delete(_)
                | Content::Reaction(_)
                | Content::Timer(_)
                | Content::Typing(_)) => {
                    let arrival = Arrival::Content {
                        from: sender,
                        content: &content,
                        envelope: envelope_key(&verified.replay_key().to_bytes()),
                    };
                    drive(v, arrival, "", 0, now, &mut events)?;
                }
            }
            Ok(Processed::Done(events))
        })
        .or_else(|e| match e {
            CoreError::IdentityChanged(who) => {
                Ok(Processed::Keep(Event::IdentityChanged { contact: who }))
            }
            e => Err(e),
        })
}

impl Engine {
    /// Processes one envelope, however it arrived (the relay connection calls this for each
    /// delivery); returns whether to keep it at the relay (not acknowledge it): only when it
    /// cannot be handled yet (locked, vault failure, an identity change to accept first).
    pub fn receive_envelope(&self, bytes: &[u8]) -> bool {
        // Receipts sealed below use the current epoch.
        if let Err(e) = self.maybe_maintain() {
            tracing::warn!(error = %e, "key maintenance failed");
        }
        let now = self.now_ms();
        let mut authenticated = None;
        let result = self.with(|u| process(u, bytes, now, &mut authenticated));
        match result {
            Ok(Processed::Done(events)) => {
                let kick = !events.is_empty();
                // A file deleted for everyone leaves its blob file behind: it goes now.
                let deleted = events.iter().any(
                    |e| matches!(e, Event::MessageChanged { message, .. } if message.kind == "deleted"),
                );
                for e in events {
                    self.emit(e);
                }
                if deleted {
                    self.sweep_attachment_files();
                }
                if kick {
                    self.kick();
                }
                false
            }
            Ok(Processed::Keep(event)) => {
                self.emit(event);
                true
            }
            // A local failure (locked, disk, database): keep the envelope at the relay, it comes
            // back on the next login.
            Err(CoreError::Locked | CoreError::Vault(_) | CoreError::Busy) => true,
            Err(e) => {
                // Unreadable, forged or malformed: quarantined with its reason and acknowledged,
                // so it never pins the mailbox (docs/messaging.md, "Quarantine").
                tracing::warn!(error = %e, "quarantined an envelope");
                let reason = e.to_string();
                let arrival = Arrival::Failed {
                    from: authenticated,
                    failure: failure_of(&e, authenticated.is_some()),
                    envelope: envelope_key(bytes),
                };
                let mut events = Vec::new();
                let kept = self.with(|u| {
                    u.vault
                        .transaction(|v| drive(v, arrival, &reason, bytes.len(), now, &mut events))
                });
                match kept {
                    Ok(resets) => {
                        for e in events {
                            self.emit(e);
                        }
                        for with in resets {
                            self.reset_session_soon(with.0);
                        }
                        false
                    }
                    // Not even the quarantine could be written: keep it at the relay.
                    Err(_) => true,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_states_map_to_the_inbound_policy() {
        // Only contacts (and those we asked) hear back; a pending request gets nothing.
        assert!(standing(ContactState::Accepted).gets_receipts());
        assert!(standing(ContactState::Requested).gets_receipts());
        assert!(!standing(ContactState::Incoming).gets_receipts());
        assert!(standing(ContactState::Incoming).in_request_box());
        assert!(!standing(ContactState::Rejected).keeps_messages());
    }

    #[test]
    fn certificates_in_requests_are_standard_base64_without_padding() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = base64_encode(&bytes);
        assert!(!text.ends_with('='));
        assert_eq!(base64_decode(&text), Some(bytes));
        assert_eq!(base64_decode("not base64!"), None);
    }
}
