//! The shapes the page receives (camelCase JSON). Account ids travel as their text form; the
//! page sends them back to name a contact.

use serde::Serialize;
use tessera_core::{Contact, Conversation, Event, Message};
use tessera_crypto::AccountId;

/// A contact.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactView {
    /// Account id (text form).
    pub id: String,
    /// The name the user gave.
    pub name: String,
    /// `requested`, `incoming`, `accepted` or `rejected`.
    pub state: &'static str,
    /// Blocked (filled where the engine is at hand: the contact list).
    pub blocked: bool,
}

impl From<&Contact> for ContactView {
    fn from(c: &Contact) -> Self {
        Self {
            id: AccountId(c.account_id).to_string(),
            name: c.name.clone(),
            state: c.state.as_str(),
            blocked: false,
        }
    }
}

/// One entry of the request box: never more than a short preview of what they wrote.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestView {
    /// Who asked.
    pub contact: ContactView,
    /// How many messages they sent meanwhile.
    pub messages: u32,
    /// The start of their first text (one line, at most 80 characters).
    pub preview: Option<String>,
    /// The name of a contact theirs imitates (Unicode lookalikes), if any.
    pub imitates: Option<String>,
}

impl From<&tessera_core::Request> for RequestView {
    fn from(r: &tessera_core::Request) -> Self {
        Self {
            contact: (&r.contact).into(),
            messages: r.messages,
            preview: r.preview.clone(),
            imitates: r.imitates.clone(),
        }
    }
}

/// A message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    /// Local row id: orders a conversation; pages history (`before`).
    pub row: i64,
    /// The message's id (hex).
    pub id: String,
    /// The contact (account id text).
    pub contact: String,
    /// Sent by this account.
    pub outgoing: bool,
    /// The text.
    pub body: String,
    /// Sender's clock, ms since the epoch.
    pub sent: i64,
    /// Arrival (incoming), ms since the epoch.
    pub received: Option<i64>,
    /// `pending`, `sent`, `delivered`, `read` (outgoing) or `received`.
    pub status: &'static str,
    /// Incoming and seen.
    pub read: bool,
    /// Why an outgoing message failed (status `failed`), in words.
    pub failure: Option<String>,
    /// `text`, `deleted` (deleted for everyone, docs/message-actions.md), `timer` (the
    /// disappearing-message timer changed to `body` seconds, docs/disappearing.md),
    /// `unsupported` for a
    /// kind from a newer version, or `undecryptable` for the notice an envelope that could not
    /// be decrypted left (docs/messaging.md, "Quarantine").
    pub kind: &'static str,
    /// The text was edited (the shown text is the newest).
    pub edited: bool,
    /// The message this one replies to (hex id).
    pub reply_to: Option<String>,
    /// Seconds it lives (disappearing messages), if it does.
    pub expires_in: Option<i64>,
    /// Its reactions (filled where the engine is at hand: history, `message_view`).
    pub reactions: Vec<ReactionView>,
    /// Set when the sender's clock was not believed and the arrival time is shown instead:
    /// `future` or `too_old`.
    pub time_flag: Option<String>,
    /// The sender's preview of the text's first link (docs/link-previews.md).
    pub preview: Option<tessera_core::LinkPreview>,
    /// The file, for kind `attachment` (filled where the engine is at hand, as reactions).
    pub attachment: Option<AttachmentView>,
}

/// A file as the page shows it (docs/attachments.md; never its key).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentView {
    /// Its name as sent.
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its media type.
    pub mime: String,
    /// `uploading`, `uploaded`, `remote`, `downloaded` or `failed`.
    pub state: &'static str,
}

impl From<tessera_core::AttachmentInfo> for AttachmentView {
    fn from(a: tessera_core::AttachmentInfo) -> Self {
        Self {
            name: a.name,
            size: a.size,
            mime: a.mime,
            state: a.state.as_str(),
        }
    }
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        Self {
            row: m.id,
            id: tessera_core::id_hex(&m.message_id),
            contact: AccountId(m.contact).to_string(),
            outgoing: m.outgoing,
            body: m.body.clone(),
            sent: m.sent,
            received: m.received,
            status: m.status.as_str(),
            read: m.read,
            failure: m
                .failure
                .as_deref()
                .and_then(tessera_core::FailReason::parse)
                .map(|r| r.to_string()),
            kind: if m.kind.starts_with("unsupported") {
                "unsupported"
            } else if m.kind == "undecryptable" {
                "undecryptable"
            } else if m.kind == "deleted" {
                "deleted"
            } else if m.kind == "timer" {
                "timer"
            } else if m.kind == "attachment" {
                "attachment"
            } else {
                "text"
            },
            edited: m.edited.is_some(),
            reply_to: m.reply_to.as_ref().map(tessera_core::id_hex),
            expires_in: m.expires_in,
            reactions: Vec::new(),
            time_flag: m.time_flag.clone(),
            preview: m.preview.clone(),
            attachment: None,
        }
    }
}

/// A reaction to a message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReactionView {
    /// Ours.
    pub mine: bool,
    /// The emoji.
    pub emoji: String,
}

/// One line of the conversation list.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationView {
    /// Whether it is the note to self (`contact` is then our own account).
    pub note_to_self: bool,
    /// Who.
    pub contact: ContactView,
    /// Newest message.
    pub last: Option<MessageView>,
    /// Unread incoming messages.
    pub unread: u32,
    /// Kept out of the main list.
    pub archived: bool,
    /// Listed first.
    pub pinned: bool,
    /// No notifications until then, ms (0: not muted).
    pub muted_until: i64,
    /// Shown as unread although read.
    pub marked_unread: bool,
    /// The text being written when the conversation was left.
    pub draft: Option<String>,
}

impl From<&Conversation> for ConversationView {
    fn from(c: &Conversation) -> Self {
        Self {
            note_to_self: c.note_to_self,
            contact: (&c.contact).into(),
            last: c.last.as_ref().map(Into::into),
            unread: c.unread,
            archived: c.settings.archived,
            pinned: c.settings.pinned,
            muted_until: c.settings.muted_until,
            marked_unread: c.settings.marked_unread,
            draft: c.settings.draft.clone(),
        }
    }
}

/// An engine event as the page receives it. A message event carries the message's view, so the
/// page shows it without reading the conversation again — except a message from someone in the
/// request box, whose text the page never gets before they are accepted (it shows the request's
/// preview instead). Notifications are separate (`app.rs`) and follow the user's setting.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum UiEvent {
    /// Connected to the relay.
    Connected,
    /// The relay connection ended.
    Disconnected,
    /// The engine locked; the page must drop what it shows.
    Locked {
        /// `requested`, `card_removed`, `idle`, `focus_lost`.
        reason: String,
    },
    /// A new message arrived.
    Message {
        /// From (account id text).
        contact: String,
        /// The message, unless it is from a request (see above).
        message: Option<MessageView>,
    },
    /// An outgoing message moved on.
    Status {
        /// Message id (hex).
        id: String,
        /// New status.
        status: &'static str,
        /// The message as it is now (with the failure reason, if it failed).
        message: MessageView,
    },
    /// A shown message changed (edited, deleted for everyone, a reaction): show it again.
    Changed {
        /// The contact of its conversation (account id text).
        contact: String,
        /// The message as it is now.
        message: MessageView,
    },
    /// A contact started or stopped typing.
    Typing {
        /// Who (account id text).
        contact: String,
        /// Started or stopped.
        on: bool,
    },
    /// Disappearing messages were removed: take them off the page.
    Expired {
        /// The contact of their conversation (account id text).
        contact: String,
        /// Their ids (hex).
        ids: Vec<String>,
    },
    /// Contacts changed (a request, an acceptance, a rejection).
    Contacts,
    /// Events were missed (the page fell behind): everything shown must be read again.
    Resync,
    /// A contact's identity changed.
    IdentityChanged {
        /// Account id text.
        contact: String,
    },
    /// A call: incoming, a new state, or its end.
    Call {
        /// Call id (hex).
        call: String,
        /// `incoming`, `state`, `ended`.
        what: &'static str,
        /// The caller (incoming only).
        contact: Option<String>,
        /// With video (incoming only).
        video: bool,
        /// `incoming`, `dialing`, `ringing`, `connecting`, `active`, `ended`.
        state: &'static str,
        /// Why it ended.
        reason: Option<&'static str>,
    },
    /// Tor bootstrap progress.
    Tor {
        /// 0–100.
        percent: u8,
        /// What Arti is doing.
        phase: String,
        /// Ready for traffic.
        ready: bool,
        /// Why it is stuck.
        blocked: Option<String>,
    },
    /// Card provisioning progress (first run, settings).
    Provision {
        /// Step number, from 1.
        step: u8,
        /// Number of steps.
        of: u8,
        /// What is happening.
        what: String,
    },
}

impl UiEvent {
    /// The page's view of a call event.
    pub fn from_call(e: &tessera_core::phone::CallEvent) -> Self {
        use tessera_core::phone::CallEvent as C;
        match e {
            C::Incoming {
                call,
                contact,
                video,
            } => Self::Call {
                call: hex::encode(call.0),
                what: "incoming",
                contact: Some(AccountId(*contact).to_string()),
                video: *video,
                state: "incoming",
                reason: None,
            },
            C::State { call, state } => Self::Call {
                call: hex::encode(call.0),
                what: "state",
                contact: None,
                video: false,
                state: state_name(*state),
                reason: None,
            },
            C::Ended { call, reason } => Self::Call {
                call: hex::encode(call.0),
                what: "ended",
                contact: None,
                video: false,
                state: "ended",
                reason: Some(end_name(*reason)),
            },
        }
    }

    /// The page's view of an engine event (`None`: nothing the page shows). `shows_text`: the
    /// sender of a message event is someone whose messages the page may show (not a request).
    pub fn from_engine(e: &Event, shows_text: bool) -> Option<Self> {
        Some(match e {
            Event::Connected => Self::Connected,
            Event::Disconnected => Self::Disconnected,
            Event::Locked { reason } => Self::Locked {
                reason: reason.as_str().into(),
            },
            Event::Message {
                contact, message, ..
            } => Self::Message {
                contact: AccountId(*contact).to_string(),
                message: shows_text.then(|| message.as_ref().into()),
            },
            Event::Status {
                message_id,
                status,
                message,
            } => Self::Status {
                id: tessera_core::id_hex(message_id),
                status: status.as_str(),
                message: message.as_ref().into(),
            },
            Event::MessageChanged {
                contact, message, ..
            } if shows_text => Self::Changed {
                contact: AccountId(*contact).to_string(),
                message: message.as_ref().into(),
            },
            Event::Typing { contact, on } => Self::Typing {
                contact: AccountId(*contact).to_string(),
                on: *on,
            },
            Event::MessagesExpired { contact, ids } => Self::Expired {
                contact: AccountId(*contact).to_string(),
                ids: ids.iter().map(tessera_core::id_hex).collect(),
            },
            Event::ContactRequest { .. }
            | Event::ContactAccepted { .. }
            | Event::ContactRejected { .. }
            | Event::ContactDeleted { .. } => Self::Contacts,
            Event::IdentityChanged { contact } => Self::IdentityChanged {
                contact: contact.clone(),
            },
            Event::TorProgress {
                percent,
                phase,
                ready,
                blocked,
            } => Self::Tor {
                percent: *percent,
                phase: phase.clone(),
                ready: *ready,
                blocked: blocked.clone(),
            },
            _ => return None,
        })
    }
}

/// A call state's name for the page.
pub fn state_name(s: tessera_calls::call::State) -> &'static str {
    use tessera_calls::call::State as S;
    match s {
        S::Dialing => "dialing",
        S::Ringing => "ringing",
        S::Incoming => "incoming",
        S::Connecting => "connecting",
        S::Active => "active",
        S::Ended(_) => "ended",
    }
}

/// Why a call ended, for the page.
pub fn end_name(r: tessera_calls::call::EndReason) -> &'static str {
    use tessera_calls::call::EndReason as R;
    match r {
        R::HungUp => "hung_up",
        R::RemoteHungUp => "remote_hung_up",
        R::Cancelled => "cancelled",
        R::Rejected => "rejected",
        R::Busy => "busy",
        R::Unavailable => "unavailable",
        R::NoAnswer => "no_answer",
        R::Failed => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(body: &str) -> Message {
        Message {
            id: 9,
            conversation: tessera_core::direct_conversation(&[7; 32]),
            contact: [7; 32],
            message_id: [1; 16],
            outgoing: false,
            body: body.into(),
            sent: 5,
            received: Some(6),
            status: tessera_core::MessageStatus::Received,
            read: false,
            kind: "text".into(),
            failure: None,
            time_flag: None,
            reply_to: None,
            edited: None,
            expires_in: None,
            expire_at: None,
            preview: None,
        }
    }

    #[test]
    fn a_message_event_carries_its_view_but_never_a_requests_text() {
        let m = incoming("secret words");
        let e = Event::Message {
            contact: [7; 32],
            message_id: [1; 16],
            body: m.body.clone(),
            message: Box::new(m.clone()),
        };
        let request = serde_json::to_string(&UiEvent::from_engine(&e, false).unwrap()).unwrap();
        assert!(!request.contains("secret words"), "{request}");
        assert!(request.contains("\"type\":\"message\""), "{request}");
        assert_eq!(
            UiEvent::from_engine(&e, true),
            Some(UiEvent::Message {
                contact: AccountId([7; 32]).to_string(),
                message: Some((&m).into()),
            })
        );
    }

    #[test]
    fn a_changed_message_reaches_the_page_as_it_is_now_but_never_a_requests() {
        let mut m = incoming("");
        m.kind = "deleted".into();
        m.edited = None;
        m.reply_to = Some([2; 16]);
        let e = Event::MessageChanged {
            contact: [7; 32],
            message_id: [1; 16],
            message: Box::new(m.clone()),
        };
        assert_eq!(UiEvent::from_engine(&e, false), None);
        let Some(UiEvent::Changed { message, .. }) = UiEvent::from_engine(&e, true) else {
            panic!("no changed event");
        };
        assert_eq!(message.kind, "deleted");
        assert_eq!(message.reply_to, Some(tessera_core::id_hex(&[2; 16])));
        assert!(!message.edited);
    }

    #[test]
    fn lock_reasons_reach_the_page_by_name() {
        let e = Event::Locked {
            reason: tessera_core::LockReason::CardRemoved,
        };
        assert_eq!(
            UiEvent::from_engine(&e, false),
            Some(UiEvent::Locked {
                reason: "card_removed".into()
            })
        );
    }
}
