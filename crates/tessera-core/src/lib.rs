#![doc = include_str!("../README.md")]

pub mod calls;
pub mod card;
pub mod clock;
mod codes;
mod engine;
mod invite;
pub mod keys;
pub mod phone;
mod run_to_end;
mod transport;

pub use codes::{backup_code, card_code, net_code, vault_code};
pub use engine::{
    APP_SETTINGS, AUTO_DOWNLOAD_DEFAULT_MIB, AUTO_DOWNLOAD_SETTING, AttachmentInfo, BackupMade,
    CreateOptions, DeleteFor, Draft, Engine, LINK_PREVIEWS_SETTING, Left, RestoreOptions,
    UPDATE_CHECKS_SETTING,
};
pub use invite::Invite;
pub use tessera_messaging::content::receipt::ReceiptKind;
pub use tessera_messaging::content::text::LinkPreview;
pub use tessera_messaging::content::text::MAX_TEXT;
pub use tessera_messaging::content::timer::{TIMERS, parse_timer, timer_name};
pub use tessera_messaging::{Content, FailReason};
pub use tessera_store::CardFactor;
pub use tessera_store::backup::{BackupError, BackupHeader, RecoveryKey};
pub use tessera_store::{
    Contact, ContactState, Conversation, ConversationSettings, KdfParams, Message, MessageStatus,
    OsKeyring, Quarantined, SecretStore, WipeProblem, WipeReport, direct_conversation, wipe,
};
pub use transport::TransportConfig;

/// How many of a requester's messages [`Engine::requests`] counts (at most).
pub const REQUEST_MESSAGES: u32 = 100;
/// Longest preview of a request's first message, in characters.
pub const PREVIEW_CHARS: usize = 80;

/// One entry of the request box ([`Engine::requests`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Who asked (state `incoming`).
    pub contact: Contact,
    /// Messages they sent meanwhile (up to [`REQUEST_MESSAGES`]).
    pub messages: u32,
    /// The start of their first text, at most [`PREVIEW_CHARS`] characters (one line).
    pub preview: Option<String>,
    /// A contact name theirs imitates (looks the same, is not the same text), if any.
    pub imitates: Option<String>,
}

/// The first [`PREVIEW_CHARS`] characters of `text` on one line, "…" if cut.
pub fn preview(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim();
    match line.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

/// Something the engine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Connected and logged in to the relay.
    Connected,
    /// The relay connection ended.
    Disconnected,
    /// The engine locked (keys dropped).
    Locked {
        /// Why.
        reason: LockReason,
    },
    /// A new text message.
    Message {
        /// From.
        contact: [u8; 32],
        /// Its id.
        message_id: [u8; 16],
        /// The text.
        body: String,
        /// Everything an interface shows of it, as stored (conversation, sender, time, kind,
        /// status, flags): no need to read the conversation again.
        message: Box<Message>,
    },
    /// A stored message changed (`docs/message-actions.md`): edited, deleted for everyone, or
    /// a reaction set or removed, by either side. Show it again as it is now.
    MessageChanged {
        /// The contact of its conversation.
        contact: [u8; 32],
        /// Which message.
        message_id: [u8; 16],
        /// The message as it is now.
        message: Box<Message>,
    },
    /// A contact started or stopped typing (`docs/conversations.md` §Typing). Show it for a
    /// few seconds at most: a "stopped" may never come.
    Typing {
        /// Who.
        contact: [u8; 32],
        /// Started or stopped.
        on: bool,
    },
    /// Disappearing messages whose time came were removed (`docs/disappearing.md`).
    MessagesExpired {
        /// The contact of their conversation.
        contact: [u8; 32],
        /// Which.
        ids: Vec<[u8; 16]>,
    },
    /// An outgoing message moved on (sent, delivered, read, failed).
    Status {
        /// Which.
        message_id: [u8; 16],
        /// Now.
        status: MessageStatus,
        /// The message as it is now (with the failure reason, if it failed).
        message: Box<Message>,
    },
    /// Someone asked to become a contact.
    ContactRequest {
        /// Who.
        contact: [u8; 32],
        /// The name they gave.
        name: String,
    },
    /// A contact accepted our request.
    ContactAccepted {
        /// Who.
        contact: [u8; 32],
    },
    /// A contact rejected our request.
    ContactRejected {
        /// Who.
        contact: [u8; 32],
    },
    /// A contact deleted their account (`docs/leaving.md`).
    ContactDeleted {
        /// Who.
        contact: [u8; 32],
    },
    /// A contact's identity key changed; their messages wait until the user accepts it.
    IdentityChanged {
        /// Who (account id text).
        contact: String,
    },
    /// One-time prekeys were refilled.
    PrekeysRefilled,
    /// Tor bootstrap progress (transport `tor`).
    TorProgress {
        /// 0–100.
        percent: u8,
        /// What Arti is doing.
        phase: String,
        /// Ready for traffic.
        ready: bool,
        /// Why it is stuck, if Arti knows.
        blocked: Option<String>,
    },
    /// A call signal from a contact (`docs/calls.md`); the call layer acts on it.
    Call {
        /// From.
        contact: [u8; 32],
        /// The call.
        call: calls::CallId,
        /// What.
        signal: calls::Signal,
    },
    /// A contact started a new Signal session with us because something we sent could not be
    /// decrypted (`docs/messaging.md`, "Quarantine"); our next messages use it.
    SessionReset {
        /// Who.
        contact: [u8; 32],
    },
    /// An envelope could not be opened or decrypted: it was acknowledged and quarantined
    /// (see [`Engine::quarantined`]); a sender that the envelope layer authenticated also
    /// finds an "undecryptable" notice in their conversation.
    Quarantined {
        /// The authenticated sender, if the envelope got that far.
        sender: Option<[u8; 32]>,
        /// Why.
        reason: String,
    },
}

/// Why the engine locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LockReason {
    /// The user (or the program) asked.
    Requested,
    /// The card left the reader and the lock-on-removal setting is on.
    CardRemoved,
    /// Nobody used the app for the idle time the user set.
    Idle,
    /// The app's window lost focus (the screen locked, or the user switched away) and the
    /// user asked to lock then.
    FocusLost,
    /// The account was wiped ([`Engine::wipe`]): there is nothing left to unlock.
    Wiped,
}

impl LockReason {
    /// The reason's name (`requested`, `card_removed`, `idle`, `focus_lost`, `wiped`), as
    /// serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::CardRemoved => "card_removed",
            Self::Idle => "idle",
            Self::FocusLost => "focus_lost",
            Self::Wiped => "wiped",
        }
    }
}

/// 16 bytes (a message id) as 32 lowercase hex digits.
pub fn id_hex(id: &[u8; 16]) -> String {
    tessera_messaging::MessageId(*id).to_hex()
}

/// Parses [`id_hex`].
pub fn parse_id(text: &str) -> Option<[u8; 16]> {
    tessera_messaging::MessageId::from_hex(text).map(|m| m.0)
}

/// Why an engine operation failed. Nothing here carries a key or message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The engine is locked.
    #[error("locked")]
    Locked,
    /// The vault refused (wrong password, missing keyring secret, damage…).
    #[error(transparent)]
    Vault(#[from] tessera_store::VaultError),
    /// The relay could not be reached or refused.
    #[error(transparent)]
    Net(#[from] tessera_net::ClientError),
    /// A cryptographic check failed.
    #[error(transparent)]
    Crypto(#[from] tessera_crypto::CryptoError),
    /// libsignal refused.
    #[error("session error: {0}")]
    Signal(#[from] tessera_crypto::signal::SignalProtocolError),
    /// The configured transport is not available in this build; nothing was sent another way.
    #[error("transport {0:?} is not available in this build (nothing was sent another way)")]
    TransportUnavailable(String),
    /// The invite code does not parse.
    #[error("this is not a valid Tessera invite code")]
    BadInvite,
    /// A message between devices did not parse.
    #[error("malformed message content")]
    BadContent,
    /// No such contact.
    #[error("no such contact")]
    UnknownContact,
    /// The account is our own: the note to self has no contact to block, remove or call.
    #[error("this is your own account (the note to self)")]
    OwnAccount,
    /// Link previews are fetched through Tor only, and this account connects directly
    /// (`docs/link-previews.md`): nothing was fetched.
    #[error("link previews are fetched through Tor only; this account connects directly")]
    PreviewNeedsTor,
    /// Updates are fetched through Tor only, and this account connects directly
    /// (`docs/updates.md`): nothing was fetched.
    #[error("updates are fetched through Tor only; this account connects directly")]
    UpdatesNeedTor,
    /// The person turned update checks off.
    #[error("update checks are turned off")]
    UpdatesOff,
    /// A file could not be read or written (sending, downloading or saving an attachment).
    #[error("the file could not be read or written: {0}")]
    File(#[source] std::io::Error),
    /// An attachment's blob failed its checks (changed, truncated, or not the one named).
    #[error(transparent)]
    Attachment(#[from] tessera_crypto::attachment::AttachmentError),
    /// The attachment is not downloaded yet.
    #[error("the attachment is not downloaded yet")]
    NotDownloaded,
    /// No preview could be made for the link (the text can still be sent without one).
    #[error("no link preview: {0}")]
    Preview(#[from] tessera_net::preview::PreviewError),
    /// Another contact already has this name.
    #[error("another contact already has this name")]
    NameTaken,
    /// The contact rejected us.
    #[error("this contact rejected the request")]
    Rejected,
    /// The contact deleted their account: nothing reaches them any more.
    #[error("this contact deleted their account")]
    ContactDeleted,
    /// Leaving was refused before anything was deleted (`docs/leaving.md`): the reason says why.
    #[error("the account was not deleted: {0}")]
    NotDeleted(String),
    /// The text is too long.
    #[error("message too long")]
    TooLong,
    /// No such message here.
    #[error("no such message")]
    UnknownMessage,
    /// The message cannot be changed that way: not ours, not a text, deleted, or sent more
    /// than 24 hours ago (`docs/message-actions.md`).
    #[error("this message can no longer be edited or deleted for everyone")]
    NotEditable,
    /// Not a reaction (at most 32 bytes, no spaces or control characters).
    #[error("not a valid reaction")]
    BadReaction,
    /// This account is blocked: unblock it to write to it (`docs/conversations.md`).
    #[error("this contact is blocked")]
    Blocked,
    /// Not one of the disappearing-message timers offered (`docs/disappearing.md`).
    #[error("not a disappearing-message timer: off, 30s, 5m, 1h, 8h, 1d, 1w or 4w")]
    BadTimer,
    /// The contact's identity changed and has not been accepted.
    #[error("the identity of {0} changed; compare safety numbers before accepting it")]
    IdentityChanged(String),
    /// The card (reader, protocol, keys).
    #[error(transparent)]
    Card(#[from] card::CardError),
    /// A call could not be placed, answered or carried.
    #[error(transparent)]
    Call(#[from] phone::CallError),
    /// Not a setting an interface may read or write.
    #[error("unknown setting")]
    UnknownSetting,
    /// A backup could not be made or read.
    #[error(transparent)]
    Backup(#[from] tessera_store::backup::BackupError),
    /// An internal operation could not complete.
    #[error("internal error")]
    Busy,
}

impl From<tessera_messaging::MessagingError> for CoreError {
    fn from(_: tessera_messaging::MessagingError) -> Self {
        Self::BadContent
    }
}

#[cfg(test)]
mod tests {
    use super::{LockReason, PREVIEW_CHARS, preview};

    #[test]
    fn a_preview_is_one_line_of_at_most_80_characters() {
        assert_eq!(preview("  hi\nthere\t "), "hi there");
        let long: String = "ж".repeat(100);
        let p = preview(&long);
        assert_eq!(p.chars().count(), PREVIEW_CHARS + 1);
        assert!(p.ends_with('…'));
        assert_eq!(preview(&"a".repeat(80)), "a".repeat(80));
    }

    #[test]
    fn lock_reason_names_match_their_serialisation() {
        for r in [
            LockReason::Requested,
            LockReason::CardRemoved,
            LockReason::Idle,
            LockReason::FocusLost,
        ] {
            assert_eq!(serde_json::to_value(r).ok(), Some(r.as_str().into()));
        }
    }
}
