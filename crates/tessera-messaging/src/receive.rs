//! The inbound state machine (`docs/messaging.md`, "Inbound").
//!
//! The driver opens each envelope and decrypts its Signal message (both need keys from the
//! vault). What comes out — content from a sender the envelope layer authenticated, or a
//! failure — goes to [`receive`], which decides with the policies of [`crate::inbound`] what to
//! store, which receipts to send, which statuses move and what to tell the interface, and
//! returns those as [`Effect`]s for the driver to carry out. Storage goes through the small
//! traits of [`crate::store`]; the machine keeps no state of its own.
//!
//! Contact requests and their answers (they carry certificates to verify) and call signals
//! (they go to the call layer) are the driver's: [`handled_here`] says which kinds are this
//! machine's.

use crate::content::Content;
use crate::content::action::{Delete, EDIT_WINDOW_MS, Edit, Reaction};
use crate::content::receipt::{Receipt, ReceiptKind};
use crate::content::text::Text;
use crate::content::timer::Timer;
use crate::content::typing::{TYPING_FRESH_MS, Typing};

/// The kind of the notice a timer change leaves in its conversation (its body: the seconds).
pub const TIMER_NOTICE: &str = "timer";
use crate::conversation::{Conversation, ConversationKind};
use crate::ids::{AccountId, ConversationId, EnvelopeId, MessageId};
use crate::inbound::{Bounded, Standing, bound_sent};
use crate::store::{Contacts, Messages, Status, StoredMessage};

/// The kind of the notice a message that could not be decrypted leaves in its conversation.
pub const UNDECRYPTABLE: &str = "undecryptable";

/// Why an envelope could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The envelope layer refused it (unknown key, tampered, forged, expired): the sender is
    /// not known.
    Envelope,
    /// The Signal session could not decrypt it (no session, bad MAC, invalid message): the
    /// session is broken and is reset.
    Session,
    /// Decrypted, but the content is malformed.
    Content,
}

/// What one envelope turned out to be.
#[derive(Debug, Clone, Copy)]
pub enum Arrival<'a> {
    /// Content from a sender the envelope layer authenticated.
    Content {
        /// The sender.
        from: AccountId,
        /// What they sent.
        content: &'a Content,
        /// This envelope's id (a second copy has the same, so what it leaves is stored once).
        envelope: EnvelopeId,
    },
    /// The envelope could not be used.
    Failed {
        /// The sender, if the envelope layer authenticated one before the failure.
        from: Option<AccountId>,
        /// What failed.
        failure: Failure,
        /// As above.
        envelope: EnvelopeId,
    },
}

/// What the driver does after an arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A new message was stored: show it.
    Stored(MessageId),
    /// A stored message changed (edited, deleted for everyone, a reaction): show it again.
    Changed(MessageId),
    /// The sender started or stopped typing: show it for a few seconds (nothing is stored).
    Typing {
        /// Who.
        from: AccountId,
        /// Started or stopped.
        on: bool,
    },
    /// Send a receipt.
    Receipt {
        /// To whom.
        to: AccountId,
        /// Delivered or read.
        kind: ReceiptKind,
        /// For which messages.
        ids: Vec<MessageId>,
    },
    /// An outgoing message's status moved forward.
    Status {
        /// Which.
        id: MessageId,
        /// Now.
        status: Status,
    },
    /// The sender started a new session with us (their `session_reset`).
    PeerReset {
        /// Who.
        from: AccountId,
    },
    /// Keep the envelope in the quarantine (acknowledged, never retried).
    Quarantine {
        /// The authenticated sender, if any.
        from: Option<AccountId>,
    },
    /// Reset the Signal session with this contact (fetch their bundle, send `session_reset`).
    ResetSession {
        /// With whom.
        with: AccountId,
    },
}

/// Whether this machine handles `content` (the rest is the driver's, see the module doc).
pub fn handled_here(content: &Content) -> bool {
    matches!(
        content,
        Content::Text(_)
            | Content::Receipt(_)
            | Content::SessionReset(_)
            | Content::Unsupported { .. }
            | Content::Edit(_)
            | Content::Delete(_)
            | Content::Reaction(_)
            | Content::Timer(_)
            | Content::Typing(_)
            | Content::Attachment(_)
    )
}

/// `target`, if `from` may change it at `at` (bounded sender time): a message of one of
/// `kinds` `from` sent us, not deleted, at most [`EDIT_WINDOW_MS`] after it was sent. Texts
/// may be edited; texts and files deleted for everyone.
fn own_message<S: Messages>(
    store: &S,
    target: &MessageId,
    from: &AccountId,
    at: u64,
    kinds: &[&str],
) -> Result<Option<StoredMessage>, S::Error> {
    Ok(store.get(target)?.filter(|m| {
        !m.outgoing
            && m.peer == *from
            && m.conversation == direct(from)
            && kinds.contains(&m.kind.as_str())
            && at.saturating_sub(m.sent) <= EDIT_WINDOW_MS
    }))
}

/// The direct conversation with `account`.
pub fn direct(account: &AccountId) -> ConversationId {
    Conversation::of(ConversationKind::Direct(*account), account).id
}

fn incoming(
    from: &AccountId,
    id: MessageId,
    body: String,
    sent: Bounded,
    now: u64,
    kind: &str,
) -> StoredMessage {
    StoredMessage {
        id,
        conversation: direct(from),
        peer: *from,
        outgoing: false,
        body,
        sent: sent.at,
        received: Some(now),
        time_flag: sent.flag,
        kind: kind.to_string(),
        status: Status::Received,
        reply_to: None,
        edited: None,
        expires_in: None,
        preview: None,
    }
}

/// Decides what one arrival means (see the module doc). `now`: the receiver's clock, ms.
pub fn receive<S, E>(store: &mut S, arrival: Arrival<'_>, now: u64) -> Result<Vec<Effect>, E>
where
    S: Contacts<Error = E> + Messages<Error = E>,
{
    let mut effects = Vec::new();
    match arrival {
        Arrival::Content {
            from,
            content,
            envelope,
        } => {
            let standing = store.standing(&from)?;
            match content {
                Content::Text(Text {
                    id,
                    sent,
                    body,
                    reply_to,
                    expires,
                    preview,
                }) => {
                    if !standing.keeps_messages() {
                        return Ok(effects);
                    }
                    // A sender's clock from the future never sorts above newer messages.
                    let mut m = incoming(
                        &from,
                        *id,
                        body.clone(),
                        bound_sent(*sent, now),
                        now,
                        "text",
                    );
                    m.reply_to = *reply_to;
                    m.expires_in = expires.filter(|s| *s > 0);
                    // Shown as it came, never fetched here; one that is not about this
                    // text's first link is dropped (docs/link-previews.md).
                    m.preview = preview.clone().filter(|p| p.fits(body));
                    if store.insert(&m)? {
                        effects.push(Effect::Stored(*id));
                    }
                    // A copy gets a receipt again (the first one may have been lost); a
                    // stranger learns nothing until accepted.
                    if standing.gets_receipts() {
                        effects.push(Effect::Receipt {
                            to: from,
                            kind: ReceiptKind::Delivered,
                            ids: vec![*id],
                        });
                    }
                }
                // A file: stored as a message of kind `attachment` with its caption; what
                // opens the blob is the driver's to keep (`docs/attachments.md`).
                Content::Attachment(a) => {
                    if !standing.keeps_messages() {
                        return Ok(effects);
                    }
                    let mut m = incoming(
                        &from,
                        a.id,
                        a.caption.clone(),
                        bound_sent(a.sent, now),
                        now,
                        "attachment",
                    );
                    m.expires_in = a.expires.filter(|s| *s > 0);
                    if store.insert(&m)? {
                        effects.push(Effect::Stored(a.id));
                    }
                    if standing.gets_receipts() {
                        effects.push(Effect::Receipt {
                            to: from,
                            kind: ReceiptKind::Delivered,
                            ids: vec![a.id],
                        });
                    }
                }
                Content::Unsupported { kind } => {
                    // From a newer version: shown as "unsupported message", never dropped
                    // silently; a stranger's is not kept, as their texts are not.
                    if standing.keeps_messages() {
                        let at = Bounded {
                            at: now,
                            flag: None,
                        };
                        let kind = format!("unsupported:{kind}");
                        let m =
                            incoming(&from, MessageId(envelope.0), String::new(), at, now, &kind);
                        if store.insert(&m)? {
                            effects.push(Effect::Stored(m.id));
                        }
                    }
                }
                Content::Receipt(Receipt { kind, ids }) => {
                    let status = match kind {
                        ReceiptKind::Delivered => Status::Delivered,
                        ReceiptKind::Read => Status::Read,
                    };
                    for id in ids {
                        // Only for what we sent to this sender.
                        let ours = store.get(id)?.is_some_and(|m| m.outgoing && m.peer == from);
                        if ours && store.advance(id, status)? {
                            effects.push(Effect::Status { id: *id, status });
                        }
                    }
                }
                Content::SessionReset(_) => {
                    if standing != Standing::Stranger {
                        effects.push(Effect::PeerReset { from });
                    }
                }
                // `docs/message-actions.md`: only the sender's own texts, within the window;
                // a stranger's are dropped as their texts are.
                Content::Edit(Edit { target, sent, body }) => {
                    let at = bound_sent(*sent, now).at;
                    if standing.keeps_messages()
                        && let Some(m) = own_message(store, target, &from, at, &["text"])?
                        && m.edited.is_none_or(|e| at > e)
                    {
                        store.edit(target, body, at)?;
                        effects.push(Effect::Changed(*target));
                    }
                }
                Content::Delete(Delete { target, sent }) => {
                    let at = bound_sent(*sent, now).at;
                    let deletable = &["text", "attachment"];
                    if standing.keeps_messages()
                        && own_message(store, target, &from, at, deletable)?.is_some()
                    {
                        store.erase(target)?;
                        effects.push(Effect::Changed(*target));
                    }
                }
                // Only a contact's, and only while fresh (`docs/conversations.md` §Typing).
                Content::Typing(Typing { sent, on }) => {
                    if standing == Standing::Accepted
                        && now.saturating_sub(*sent) <= TYPING_FRESH_MS
                        && sent.saturating_sub(now) <= TYPING_FRESH_MS
                    {
                        effects.push(Effect::Typing { from, on: *on });
                    }
                }
                // `docs/disappearing.md`: the newer change wins; each is shown as a notice.
                Content::Timer(Timer { sent, seconds }) => {
                    let conversation = direct(&from);
                    let at = bound_sent(*sent, now);
                    let (_, since) = store.timer(&conversation)?;
                    if standing.keeps_messages() && at.at > since {
                        store.set_timer(&conversation, *seconds, at.at)?;
                        let notice = incoming(
                            &from,
                            MessageId(envelope.0),
                            seconds.to_string(),
                            at,
                            now,
                            TIMER_NOTICE,
                        );
                        if store.insert(&notice)? {
                            effects.push(Effect::Stored(notice.id));
                        }
                    }
                }
                Content::Reaction(Reaction {
                    target,
                    sent,
                    emoji,
                }) => {
                    let at = bound_sent(*sent, now).at;
                    let reactable = store
                        .get(target)?
                        .is_some_and(|m| m.conversation == direct(&from) && m.kind == "text");
                    let newer = store
                        .reaction(target, &from)?
                        .is_none_or(|(_, before)| at > before);
                    if standing.keeps_messages() && reactable && newer {
                        store.react(target, &from, emoji, at)?;
                        effects.push(Effect::Changed(*target));
                    }
                }
                // The driver's (see `handled_here`).
                Content::ContactRequest(_)
                | Content::ContactAccept(_)
                | Content::ContactReject(_)
                | Content::AccountDeleted(_)
                | Content::Call(_) => {}
            }
        }
        Arrival::Failed {
            from,
            failure,
            envelope,
        } => {
            effects.push(Effect::Quarantine { from });
            let Some(from) = from else {
                return Ok(effects);
            };
            let standing = store.standing(&from)?;
            // One notice for a run of failures (what was in flight on a broken session fails
            // together): none if the conversation's newest message is already one.
            let noticed = store
                .newest(&direct(&from))?
                .is_some_and(|m| m.kind == UNDECRYPTABLE);
            if standing.keeps_messages() && !noticed {
                let at = Bounded {
                    at: now,
                    flag: None,
                };
                let m = incoming(
                    &from,
                    MessageId(envelope.0),
                    String::new(),
                    at,
                    now,
                    UNDECRYPTABLE,
                );
                if store.insert(&m)? {
                    effects.push(Effect::Stored(m.id));
                }
            }
            if failure == Failure::Session && standing.gets_receipts() {
                effects.push(Effect::ResetSession { with: from });
            }
        }
    }
    Ok(effects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::session::Reset;
    use crate::inbound::{FUTURE_SKEW_MS, TimeFlag};
    use crate::store::MemoryStore;

    const NOW: u64 = 1_800_000_000_000;
    const ALICE: AccountId = AccountId([1; 32]);
    const BOB: AccountId = AccountId([2; 32]);

    fn text(id: u8, sent: u64, body: &str) -> Content {
        Content::Text(Text {
            id: MessageId([id; 16]),
            sent,
            body: body.into(),
            reply_to: None,
            expires: None,
            preview: None,
        })
    }

    fn from(store: &mut MemoryStore, who: AccountId, content: &Content) -> Vec<Effect> {
        let envelope = *blake3::hash(&content.to_bytes().unwrap_or_default()).as_bytes();
        let mut id = [0u8; 16];
        id.copy_from_slice(&envelope[..16]);
        let Ok(effects) = receive(
            store,
            Arrival::Content {
                from: who,
                content,
                envelope: EnvelopeId(id),
            },
            NOW,
        );
        effects
    }

    /// A failure arriving `n` ms after `NOW`, with envelope id `[n; 16]`.
    fn failed(
        store: &mut MemoryStore,
        who: Option<AccountId>,
        failure: Failure,
        n: u8,
    ) -> Vec<Effect> {
        let Ok(effects) = receive(
            store,
            Arrival::Failed {
                from: who,
                failure,
                envelope: EnvelopeId([n; 16]),
            },
            NOW + u64::from(n),
        );
        effects
    }

    fn bodies(store: &MemoryStore, who: &AccountId) -> Vec<String> {
        store
            .conversation(&direct(who))
            .iter()
            .map(|m| m.body.clone())
            .collect()
    }

    fn store_with(standing: Standing) -> MemoryStore {
        let mut s = MemoryStore::default();
        s.set_standing(ALICE, standing);
        s
    }

    #[test]
    fn texts_are_shown_by_bounded_sender_time_and_a_future_clock_is_flagged() {
        let mut s = store_with(Standing::Accepted);
        from(&mut s, ALICE, &text(1, NOW - 3_000, "first"));
        from(&mut s, ALICE, &text(3, NOW - 1_000, "third"));
        from(&mut s, ALICE, &text(2, NOW - 2_000, "second, late"));
        // A day ahead: shown at the receive time, after the others, and flagged.
        from(
            &mut s,
            ALICE,
            &text(4, NOW + FUTURE_SKEW_MS + 86_400_000, "from the future"),
        );
        from(&mut s, ALICE, &text(5, NOW - 500, "fifth"));
        assert_eq!(
            bodies(&s, &ALICE),
            ["first", "second, late", "third", "fifth", "from the future"]
        );
        let future = s.conversation(&direct(&ALICE))[4].clone();
        assert_eq!(
            (future.sent, future.time_flag),
            (NOW, Some(TimeFlag::Future))
        );
    }

    #[test]
    fn a_copy_is_stored_once_and_receipted_again() {
        let mut s = store_with(Standing::Accepted);
        let t = text(1, NOW, "hi");
        let first = from(&mut s, ALICE, &t);
        let again = from(&mut s, ALICE, &t);
        let receipt = Effect::Receipt {
            to: ALICE,
            kind: ReceiptKind::Delivered,
            ids: vec![MessageId([1; 16])],
        };
        assert_eq!(
            first,
            vec![Effect::Stored(MessageId([1; 16])), receipt.clone()]
        );
        assert_eq!(again, vec![receipt]);
        assert_eq!(bodies(&s, &ALICE), ["hi"]);
    }

    #[test]
    fn the_request_box_keeps_messages_without_receipts_and_strangers_keep_nothing() {
        let mut s = store_with(Standing::Incoming);
        let effects = from(&mut s, ALICE, &text(1, NOW, "may I?"));
        assert_eq!(effects, vec![Effect::Stored(MessageId([1; 16]))]);
        // Not a contact at all, or rejected: nothing kept, nothing said.
        assert!(from(&mut s, BOB, &text(2, NOW, "hello")).is_empty());
        s.set_standing(BOB, Standing::Rejected);
        assert!(from(&mut s, BOB, &text(3, NOW, "hello again")).is_empty());
        assert!(bodies(&s, &BOB).is_empty());
        // Unknown kinds follow the same rule, and are kept once.
        let newer = Content::Unsupported {
            kind: "poll".into(),
        };
        assert_eq!(from(&mut s, ALICE, &newer).len(), 1);
        assert!(from(&mut s, ALICE, &newer).is_empty());
        assert!(from(&mut s, BOB, &newer).is_empty());
    }

    #[test]
    fn receipts_move_only_our_messages_to_that_sender_and_only_forward() {
        let mut s = store_with(Standing::Accepted);
        s.set_standing(BOB, Standing::Accepted);
        let ours = StoredMessage {
            id: MessageId([9; 16]),
            conversation: direct(&ALICE),
            peer: ALICE,
            outgoing: true,
            body: "to alice".into(),
            sent: NOW,
            received: None,
            time_flag: None,
            kind: "text".into(),
            status: Status::Sent,
            reply_to: None,
            edited: None,
            expires_in: None,
            preview: None,
        };
        assert_eq!(s.insert(&ours), Ok(true));
        let receipt = |kind| {
            Content::Receipt(Receipt {
                kind,
                ids: vec![MessageId([9; 16])],
            })
        };
        // Bob cannot mark what we sent Alice.
        assert!(from(&mut s, BOB, &receipt(ReceiptKind::Read)).is_empty());
        assert_eq!(
            from(&mut s, ALICE, &receipt(ReceiptKind::Read)),
            vec![Effect::Status {
                id: MessageId([9; 16]),
                status: Status::Read
            }]
        );
        // A late "delivered" does not undo "read".
        assert!(from(&mut s, ALICE, &receipt(ReceiptKind::Delivered)).is_empty());
        assert_eq!(
            s.get(&MessageId([9; 16])).map(|m| m.map(|m| m.status)),
            Ok(Some(Status::Read))
        );
    }

    #[test]
    fn failures_are_quarantined_with_one_notice_and_a_broken_session_is_reset() {
        let mut s = store_with(Standing::Accepted);
        // The envelope layer refused it: nobody to tell, nothing to reset.
        assert_eq!(
            failed(&mut s, None, Failure::Envelope, 1),
            vec![Effect::Quarantine { from: None }]
        );
        // A broken session with a contact: a notice, and a reset.
        assert_eq!(
            failed(&mut s, Some(ALICE), Failure::Session, 2),
            vec![
                Effect::Quarantine { from: Some(ALICE) },
                Effect::Stored(MessageId([2; 16])),
                Effect::ResetSession { with: ALICE },
            ]
        );
        // What was in flight fails too: quarantined, no second notice.
        assert_eq!(
            failed(&mut s, Some(ALICE), Failure::Session, 3),
            vec![
                Effect::Quarantine { from: Some(ALICE) },
                Effect::ResetSession { with: ALICE },
            ]
        );
        // After a message, a new failure is noticed again; bad content is not a session fault.
        from(&mut s, ALICE, &text(7, NOW + 3, "back"));
        assert_eq!(
            failed(&mut s, Some(ALICE), Failure::Content, 4),
            vec![
                Effect::Quarantine { from: Some(ALICE) },
                Effect::Stored(MessageId([4; 16])),
            ]
        );
        let kinds: Vec<String> = s
            .conversation(&direct(&ALICE))
            .iter()
            .map(|m| m.kind.clone())
            .collect();
        assert_eq!(kinds, [UNDECRYPTABLE, "text", UNDECRYPTABLE]);
        // A request's broken session is not reset (a reset would tell them we exist).
        s.set_standing(BOB, Standing::Incoming);
        assert_eq!(
            failed(&mut s, Some(BOB), Failure::Session, 5),
            vec![
                Effect::Quarantine { from: Some(BOB) },
                Effect::Stored(MessageId([5; 16])),
            ]
        );
    }

    #[test]
    fn a_session_reset_is_reported_unless_from_a_stranger() {
        let mut s = store_with(Standing::Accepted);
        let reset = Content::SessionReset(Reset::default());
        assert_eq!(
            from(&mut s, ALICE, &reset),
            vec![Effect::PeerReset { from: ALICE }]
        );
        assert!(from(&mut s, BOB, &reset).is_empty());
        assert!(handled_here(&reset));
        assert!(!handled_here(&Content::ContactReject(
            crate::content::contact::Reject {}
        )));
    }

    fn edit(target: u8, sent: u64, body: &str) -> Content {
        Content::Edit(Edit {
            target: MessageId([target; 16]),
            sent,
            body: body.into(),
        })
    }

    fn delete(target: u8, sent: u64) -> Content {
        Content::Delete(Delete {
            target: MessageId([target; 16]),
            sent,
        })
    }

    fn react(target: u8, sent: u64, emoji: &str) -> Content {
        Content::Reaction(Reaction {
            target: MessageId([target; 16]),
            sent,
            emoji: emoji.into(),
        })
    }

    fn changed(target: u8) -> Vec<Effect> {
        vec![Effect::Changed(MessageId([target; 16]))]
    }

    #[test]
    fn a_preview_is_kept_only_for_the_texts_first_link() {
        use crate::content::text::LinkPreview;
        let mut s = store_with(Standing::Accepted);
        let preview = LinkPreview::new("https://example.org/a", "A page", None, Some("Example"));
        for (id, body, kept) in [
            (1u8, "look https://example.org/a", true),
            (2, "look https://example.org/b", false),
            (3, "no link", false),
        ] {
            let t = Content::Text(Text {
                id: MessageId([id; 16]),
                sent: NOW - 1_000,
                body: body.into(),
                reply_to: None,
                expires: None,
                preview: preview.clone(),
            });
            from(&mut s, ALICE, &t);
            let m = s.get(&MessageId([id; 16])).ok().flatten().expect("stored");
            assert_eq!(m.body, body, "the text stays");
            assert_eq!(m.preview.is_some(), kept, "{body}");
        }
    }

    #[test]
    fn a_reply_keeps_what_it_quotes() {
        let mut s = store_with(Standing::Accepted);
        from(&mut s, ALICE, &text(1, NOW - 3_000, "question"));
        let reply = Content::Text(Text {
            id: MessageId([2; 16]),
            sent: NOW - 1_000,
            body: "answer".into(),
            reply_to: Some(MessageId([1; 16])),
            expires: None,
            preview: None,
        });
        from(&mut s, ALICE, &reply);
        let stored = s
            .get(&MessageId([2; 16]))
            .ok()
            .flatten()
            .map(|m| m.reply_to);
        assert_eq!(stored, Some(Some(MessageId([1; 16]))));
    }

    #[test]
    fn only_the_sender_edits_their_text_within_a_day_and_the_newest_edit_wins() {
        let mut s = store_with(Standing::Accepted);
        s.set_standing(BOB, Standing::Accepted);
        let sent = NOW - 3_600_000;
        from(&mut s, ALICE, &text(1, sent, "frist"));
        // Another contact cannot edit Alice's message.
        assert!(from(&mut s, BOB, &edit(1, NOW - 1_000, "hijacked")).is_empty());
        // Alice's edits: a newer one wins, an older one arriving late changes nothing.
        assert_eq!(
            from(&mut s, ALICE, &edit(1, NOW - 1_000, "first")),
            changed(1)
        );
        assert!(from(&mut s, ALICE, &edit(1, NOW - 2_000, "fist")).is_empty());
        assert_eq!(bodies(&s, &ALICE), ["first"]);
        assert_eq!(s.edit_history(&MessageId([1; 16])), ["frist"]);
        let m = s.get(&MessageId([1; 16])).ok().flatten();
        assert_eq!(m.and_then(|m| m.edited), Some(NOW - 1_000));
        // More than a day after it was sent: refused.
        let mut late = store_with(Standing::Accepted);
        from(&mut late, ALICE, &text(1, NOW - EDIT_WINDOW_MS - 10, "old"));
        assert!(from(&mut late, ALICE, &edit(1, NOW, "new")).is_empty());
        assert!(from(&mut late, ALICE, &delete(1, NOW)).is_empty());
        assert_eq!(bodies(&late, &ALICE), ["old"]);
        // A stranger's edit of nothing, an edit of an unknown message: nothing.
        assert!(from(&mut s, AccountId([9; 32]), &edit(1, NOW, "x")).is_empty());
        assert!(from(&mut s, ALICE, &edit(7, NOW, "x")).is_empty());
    }

    #[test]
    fn delete_for_everyone_leaves_a_tombstone_without_text_or_history() {
        let mut s = store_with(Standing::Accepted);
        s.set_standing(BOB, Standing::Accepted);
        from(&mut s, ALICE, &text(1, NOW - 5_000, "secret"));
        from(&mut s, ALICE, &edit(1, NOW - 4_000, "secret, edited"));
        assert!(from(&mut s, BOB, &delete(1, NOW - 1_000)).is_empty());
        assert_eq!(from(&mut s, ALICE, &delete(1, NOW - 1_000)), changed(1));
        let m = s.get(&MessageId([1; 16])).ok().flatten();
        assert_eq!(
            m.map(|m| (m.kind, m.body)),
            Some(("deleted".to_string(), String::new()))
        );
        assert!(s.edit_history(&MessageId([1; 16])).is_empty());
        // A deleted message is not edited back, nor reacted to.
        assert!(from(&mut s, ALICE, &edit(1, NOW - 500, "back")).is_empty());
        assert!(from(&mut s, ALICE, &react(1, NOW - 500, "👍")).is_empty());
    }

    #[test]
    fn one_reaction_per_person_newest_wins_and_empty_removes() {
        let mut s = store_with(Standing::Accepted);
        s.set_standing(BOB, Standing::Accepted);
        from(&mut s, ALICE, &text(1, NOW - 5_000, "hi"));
        let target = MessageId([1; 16]);
        assert_eq!(
            from(&mut s, ALICE, &react(1, NOW - 3_000, "👍")),
            changed(1)
        );
        assert_eq!(
            from(&mut s, ALICE, &react(1, NOW - 2_000, "🎉")),
            changed(1)
        );
        // An older one arriving late changes nothing.
        assert!(from(&mut s, ALICE, &react(1, NOW - 2_500, "😢")).is_empty());
        assert_eq!(
            s.reaction(&target, &ALICE).ok().flatten(),
            Some(("🎉".to_string(), NOW - 2_000))
        );
        // Removed; an older reaction after the removal stays removed.
        assert_eq!(from(&mut s, ALICE, &react(1, NOW - 1_000, "")), changed(1));
        assert!(from(&mut s, ALICE, &react(1, NOW - 1_500, "👍")).is_empty());
        // Bob cannot react to a message of the conversation with Alice; a stranger neither.
        assert!(from(&mut s, BOB, &react(1, NOW, "👍")).is_empty());
        assert!(from(&mut s, AccountId([9; 32]), &react(1, NOW, "👍")).is_empty());
        assert!(handled_here(&react(1, 1, "x")));
    }

    #[test]
    fn a_timer_change_is_shown_the_newer_wins_and_texts_carry_their_lifetime() {
        let mut s = store_with(Standing::Accepted);
        let conversation = direct(&ALICE);
        let timer = |sent, seconds| Content::Timer(Timer { sent, seconds });
        let stored = from(&mut s, ALICE, &timer(NOW - 2_000, 30));
        assert_eq!(stored.len(), 1);
        assert_eq!(s.timer(&conversation).ok(), Some((30, NOW - 2_000)));
        // An older change arriving late is neither applied nor shown.
        assert!(from(&mut s, ALICE, &timer(NOW - 3_000, 300)).is_empty());
        assert_eq!(s.timer(&conversation).ok(), Some((30, NOW - 2_000)));
        let notices: Vec<String> = s
            .conversation(&conversation)
            .iter()
            .filter(|m| m.kind == TIMER_NOTICE)
            .map(|m| m.body.clone())
            .collect();
        assert_eq!(notices, ["30"]);
        // A text says how long it lives; 0 means it stays.
        for (id, expires, kept) in [
            (5u8, Some(30), Some(30)),
            (6, Some(0), None),
            (7, None, None),
        ] {
            let t = Content::Text(Text {
                id: MessageId([id; 16]),
                sent: NOW - 1_000,
                body: "x".into(),
                reply_to: None,
                expires,
                preview: None,
            });
            from(&mut s, ALICE, &t);
            let m = s.get(&MessageId([id; 16])).ok().flatten();
            assert_eq!(m.and_then(|m| m.expires_in), kept);
        }
        // A stranger cannot set a timer.
        let mut strangers = MemoryStore::default();
        assert!(from(&mut strangers, ALICE, &timer(NOW, 30)).is_empty());
        assert_eq!(strangers.timer(&conversation).ok(), Some((0, 0)));
    }

    #[test]
    fn typing_is_shown_from_contacts_while_fresh_and_never_stored() {
        let typing = |sent, on| Content::Typing(Typing { sent, on });
        let mut s = store_with(Standing::Accepted);
        assert_eq!(
            from(&mut s, ALICE, &typing(NOW - 1_000, true)),
            vec![Effect::Typing {
                from: ALICE,
                on: true
            }]
        );
        assert_eq!(
            from(&mut s, ALICE, &typing(NOW, false)),
            vec![Effect::Typing {
                from: ALICE,
                on: false
            }]
        );
        // Stale (it waited in an outbox), from the future, or not from a contact: nothing.
        assert!(from(&mut s, ALICE, &typing(NOW - TYPING_FRESH_MS - 1, true)).is_empty());
        assert!(from(&mut s, ALICE, &typing(NOW + TYPING_FRESH_MS + 1, true)).is_empty());
        assert!(
            from(
                &mut store_with(Standing::Incoming),
                ALICE,
                &typing(NOW, true)
            )
            .is_empty()
        );
        assert!(s.conversation(&direct(&ALICE)).is_empty());
    }
}
