//! Contacts, messages (with full-text search), the outbox, seen envelopes and settings.

use rusqlite::{OptionalExtension as _, Row, params};

use tessera_messaging::content::text::LinkPreview;

use crate::{Vault, VaultError};

/// Where a contact relationship stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactState {
    /// We sent a contact request; no answer yet.
    Requested,
    /// They sent us a contact request; we have not answered.
    Incoming,
    /// Both sides agreed.
    Accepted,
    /// One side rejected.
    Rejected,
    /// They deleted their account (`docs/leaving.md`): nothing can be sent to them any more.
    Deleted,
}

impl ContactState {
    /// The stored name (also what interfaces show and send).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Incoming => "incoming",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "requested" => Self::Requested,
            "incoming" => Self::Incoming,
            "accepted" => Self::Accepted,
            "deleted" => Self::Deleted,
            _ => Self::Rejected,
        }
    }
}

/// A contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Account id.
    pub account_id: [u8; 32],
    /// The name the user gave.
    pub name: String,
    /// The account's public identity keys.
    pub account_public: Vec<u8>,
    /// The contact's relay address.
    pub relay: String,
    /// The relationship.
    pub state: ContactState,
    /// When added, ms since the epoch.
    pub created: i64,
}

/// Where a message is on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageStatus {
    /// In the outbox.
    Pending,
    /// The relay will never take it (see [`Vault::message_failure`]). Ordered before `Sent`:
    /// another device of the recipient may still take it.
    Failed,
    /// Accepted by the relay.
    Sent,
    /// The recipient's device has it.
    Delivered,
    /// The recipient opened it.
    Read,
    /// Received from the contact.
    Received,
}

impl MessageStatus {
    /// The stored name (also what interfaces show and send).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Received => "received",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "pending" => Self::Pending,
            "failed" => Self::Failed,
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            _ => Self::Received,
        }
    }
}

/// A message in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Local row id (orders messages with the same sender time).
    pub id: i64,
    /// The conversation it belongs to.
    pub conversation: [u8; 16],
    /// The other account of the direct conversation (the sender, for an incoming message).
    pub contact: [u8; 32],
    /// The message's own id (random, shared by both sides; receipts name it).
    pub message_id: [u8; 16],
    /// Sent by us.
    pub outgoing: bool,
    /// The text.
    pub body: String,
    /// Sender's time, ms since the epoch, bounded by the receive time (the conversation is
    /// ordered by it, then by row id).
    pub sent: i64,
    /// When it arrived (incoming), ms since the epoch.
    pub received: Option<i64>,
    /// Delivery state.
    pub status: MessageStatus,
    /// Incoming and seen by the user.
    pub read: bool,
    /// The content kind: `text`, or `unsupported:<tag>` for a kind from a newer version
    /// (shown as "unsupported message").
    pub kind: String,
    /// Why an outgoing message failed (status `failed`): a `FailReason` name.
    pub failure: Option<String>,
    /// Set when the sender's time was replaced by the receive time: `future` or `too_old`.
    pub time_flag: Option<String>,
    /// The message this one replies to (`docs/message-actions.md`).
    pub reply_to: Option<[u8; 16]>,
    /// The sender time of the edit whose text is shown (`None`: never edited).
    pub edited: Option<i64>,
    /// Seconds the message lives (`docs/disappearing.md`); `None`: it stays.
    pub expires_in: Option<i64>,
    /// When it is removed, ms: set when sent (ours) or read (theirs).
    pub expire_at: Option<i64>,
    /// The sender's preview of the text's first link (`docs/link-previews.md`).
    pub preview: Option<LinkPreview>,
}

impl Message {
    /// A notice of kind `kind` in `conversation` with `contact` (a timer change, an account
    /// deleted, …), at `at` ms: shown, never sent as a text, never expiring.
    pub fn notice(
        conversation: [u8; 16],
        contact: [u8; 32],
        message_id: [u8; 16],
        kind: &str,
        body: String,
        outgoing: bool,
        at: i64,
    ) -> Self {
        Self {
            id: 0,
            conversation,
            contact,
            message_id,
            outgoing,
            body,
            sent: at,
            received: (!outgoing).then_some(at),
            status: if outgoing {
                MessageStatus::Sent
            } else {
                MessageStatus::Received
            },
            read: outgoing,
            kind: kind.into(),
            failure: None,
            time_flag: None,
            reply_to: None,
            edited: None,
            expires_in: None,
            expire_at: None,
            preview: None,
        }
    }
}

/// The id of the direct conversation with `account` (as tessera-messaging derives it).
pub fn direct_conversation(account: &[u8; 32]) -> [u8; 16] {
    use tessera_messaging::{AccountId, Conversation, ConversationKind};
    let other = AccountId(*account);
    Conversation::of(ConversationKind::Direct(other), &other)
        .id
        .0
}

/// The id of the note-to-self conversation of account `me` (as tessera-messaging derives it).
pub fn note_to_self_conversation(me: &[u8; 32]) -> [u8; 16] {
    use tessera_messaging::{AccountId, Conversation, ConversationKind};
    Conversation::of(ConversationKind::NoteToSelf, &AccountId(*me))
        .id
        .0
}

/// An envelope that could not be opened or decrypted, kept with its reason (its bytes are not
/// kept: they are unreadable by definition, and the sender may have been forged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Local row id.
    pub id: i64,
    /// The conversation, when the sender was authenticated (a Signal-level failure).
    pub conversation: Option<[u8; 16]>,
    /// The authenticated sender, if any.
    pub sender: Option<[u8; 32]>,
    /// Why (an error's text, no secret in it).
    pub reason: String,
    /// The envelope's size in bytes.
    pub size: i64,
    /// When it arrived, ms since the epoch.
    pub received: i64,
}

/// One line of the conversation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The conversation's id.
    pub id: [u8; 16],
    /// Whether it is the note to self (then `contact` is our own account as a contact would
    /// be shown: our name, public key and relay).
    pub note_to_self: bool,
    /// Who.
    pub contact: Contact,
    /// The newest message, if any.
    pub last: Option<Message>,
    /// Incoming messages not yet read.
    pub unread: u32,
    /// Its own settings (archived, pinned, muted, marked unread, draft).
    pub settings: crate::ConversationSettings,
}

/// Orders a conversation list: pinned ones first, then the one with the newest message, those
/// without messages last.
pub fn sort_conversations(list: &mut [Conversation]) {
    list.sort_by_key(|c| {
        std::cmp::Reverse((c.settings.pinned, c.last.as_ref().map(|m| (m.sent, m.id))))
    });
}

/// An outbox entry without its bytes (what the delivery machine tracks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxHead {
    /// Row id (outbox order).
    pub id: i64,
    /// Recipient account.
    pub account_id: [u8; 32],
    /// Recipient device.
    pub device_id: u32,
    /// Whether the entry is sealed already.
    pub sealed: bool,
    /// The message it carries, if it is a user message.
    pub message_id: Option<[u8; 16]>,
}

/// An envelope waiting to be handed to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Row id (outbox order).
    pub id: i64,
    /// Recipient account.
    pub account_id: [u8; 32],
    /// Recipient device.
    pub device_id: u32,
    /// The sealed envelope when `sealed`; otherwise the Signal message (type byte and
    /// ciphertext) still to be sealed.
    pub envelope: Vec<u8>,
    /// Whether `envelope` is sealed.
    pub sealed: bool,
    /// The message it carries, if it is a user message.
    pub message_id: Option<[u8; 16]>,
}

fn id32(v: Vec<u8>) -> Result<[u8; 32], rusqlite::Error> {
    v.try_into().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, "id".into(), rusqlite::types::Type::Blob)
    })
}

pub(crate) fn id16(v: Vec<u8>) -> Result<[u8; 16], rusqlite::Error> {
    v.try_into().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, "id".into(), rusqlite::types::Type::Blob)
    })
}

fn contact_row(r: &Row<'_>) -> Result<Contact, rusqlite::Error> {
    Ok(Contact {
        account_id: id32(r.get(0)?)?,
        name: r.get(1)?,
        account_public: r.get(2)?,
        relay: r.get(3)?,
        state: ContactState::parse(&r.get::<_, String>(4)?),
        created: r.get(5)?,
    })
}

const MESSAGE_COLUMNS: &str = "m.id, m.contact, m.message_id, m.outgoing, m.body, m.sent, m.received, m.status, m.read, m.kind, m.failure, m.conversation, m.time_flag, m.reply_to, m.edited, m.expires_in, m.expire_at, m.preview";

fn message_row(r: &Row<'_>) -> Result<Message, rusqlite::Error> {
    let contact = id32(r.get(1)?)?;
    let conversation = match r.get::<_, Option<Vec<u8>>>(11)? {
        Some(c) => id16(c)?,
        None => direct_conversation(&contact),
    };
    Ok(Message {
        id: r.get(0)?,
        conversation,
        contact,
        message_id: id16(r.get(2)?)?,
        outgoing: r.get(3)?,
        body: r.get(4)?,
        sent: r.get(5)?,
        received: r.get(6)?,
        status: MessageStatus::parse(&r.get::<_, String>(7)?),
        read: r.get(8)?,
        kind: r.get(9)?,
        failure: r.get(10)?,
        time_flag: r.get(12)?,
        reply_to: r.get::<_, Option<Vec<u8>>>(13)?.map(id16).transpose()?,
        edited: r.get(14)?,
        expires_in: r.get(15)?,
        expire_at: r.get(16)?,
        // A preview that no longer parses (none was ever stored so) is not shown.
        preview: r
            .get::<_, Option<String>>(17)?
            .and_then(|p| serde_json::from_str(&p).ok()),
    })
}

fn outbox_row(r: &Row<'_>) -> Result<OutboxItem, rusqlite::Error> {
    Ok(OutboxItem {
        id: r.get(0)?,
        account_id: id32(r.get(1)?)?,
        device_id: r.get(2)?,
        envelope: r.get(3)?,
        message_id: r.get::<_, Option<Vec<u8>>>(4)?.map(id16).transpose()?,
        sealed: r.get(5)?,
    })
}

/// Turns user text into an FTS5 query that matches every word (as a prefix), with no operator
/// syntax: each word is quoted.
/// How many messages may wait outside the full-text index: one index segment is written per
/// batch instead of one per message commit (a search indexes what waits first).
pub const FTS_BATCH: i64 = 256;

fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

impl Vault {
    /// Adds or updates a contact (by account id).
    pub fn put_contact(&self, c: &Contact) -> Result<(), VaultError> {
        self.execute(
            "INSERT INTO contacts (account_id, name, account_public, relay, state, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(account_id) DO UPDATE SET name = excluded.name,
                account_public = excluded.account_public, relay = excluded.relay,
                state = excluded.state",
            params![
                &c.account_id[..],
                c.name,
                c.account_public,
                c.relay,
                c.state.as_str(),
                c.created
            ],
        )?;
        self.execute(
            "INSERT OR IGNORE INTO conversations (id, kind, contact, created)
             VALUES (?1, 'direct', ?2, ?3)",
            params![
                &direct_conversation(&c.account_id)[..],
                &c.account_id[..],
                c.created
            ],
        )?;
        Ok(())
    }

    /// A contact by account id.
    pub fn contact(&self, account_id: &[u8; 32]) -> Result<Option<Contact>, VaultError> {
        Ok(self
            .query_row(
                "SELECT account_id, name, account_public, relay, state, created FROM contacts
                 WHERE account_id = ?1",
                [&account_id[..]],
                contact_row,
            )
            .optional()?)
    }

    /// A contact by the name the user gave it.
    pub fn contact_by_name(&self, name: &str) -> Result<Option<Contact>, VaultError> {
        Ok(self
            .query_row(
                "SELECT account_id, name, account_public, relay, state, created FROM contacts
                 WHERE name = ?1",
                [name],
                contact_row,
            )
            .optional()?)
    }

    /// The conversation list: every contact with its newest message and how many incoming
    /// messages are unread; the most recent conversation first, contacts without messages last
    /// (by name).
    pub fn conversations(&self) -> Result<Vec<Conversation>, VaultError> {
        let mut last = self.conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation = ?1
             ORDER BY m.sent DESC, m.id DESC LIMIT 1"
        ))?;
        let mut out = Vec::new();
        for contact in self.contacts()? {
            let id = direct_conversation(&contact.account_id);
            let last = last.query_row([&id[..]], message_row).optional()?;
            let unread = self.unread(&contact.account_id)?;
            let settings = self.conversation_settings(&id)?;
            out.push(Conversation {
                id,
                note_to_self: false,
                contact,
                last,
                unread,
                settings,
            });
        }
        sort_conversations(&mut out);
        Ok(out)
    }

    /// Opens the note-to-self conversation of `me` (nothing if it exists): a conversation
    /// with no other account, whose messages are ours only.
    pub fn open_note_to_self(&self, me: &[u8; 32], now: i64) -> Result<[u8; 16], VaultError> {
        let id = note_to_self_conversation(me);
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO conversations (id, kind, contact, created)
                 VALUES (?1, 'note_to_self', NULL, ?2)",
            )?
            .execute(params![&id[..], now])?;
        Ok(id)
    }

    /// The note-to-self conversation as a line of the conversation list, if it was opened;
    /// `me` is our own account as a contact would be shown.
    pub fn note_to_self(&self, me: Contact) -> Result<Option<Conversation>, VaultError> {
        let id = note_to_self_conversation(&me.account_id);
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM conversations WHERE id = ?1")?
            .query_row([&id[..]], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let last = self
            .conn
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation = ?1
                 ORDER BY m.sent DESC, m.id DESC LIMIT 1"
            ))?
            .query_row([&id[..]], message_row)
            .optional()?;
        Ok(Some(Conversation {
            id,
            note_to_self: true,
            contact: me,
            last,
            unread: 0,
            settings: self.conversation_settings(&id)?,
        }))
    }

    /// All contacts by name.
    pub fn contacts(&self) -> Result<Vec<Contact>, VaultError> {
        let mut s = self.conn.prepare(
            "SELECT account_id, name, account_public, relay, state, created FROM contacts
             ORDER BY name",
        )?;
        let rows = s.query_map([], contact_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Changes a contact's state; `false` if there is no such contact.
    pub fn set_contact_state(
        &self,
        account_id: &[u8; 32],
        state: ContactState,
    ) -> Result<bool, VaultError> {
        Ok(self.execute(
            "UPDATE contacts SET state = ?2 WHERE account_id = ?1",
            params![&account_id[..], state.as_str()],
        )? == 1)
    }

    /// Records a contact device's certificate (its envelope key); replaces an older one.
    pub fn put_contact_device(
        &self,
        account_id: &[u8; 32],
        device_id: u32,
        certificate: &[u8],
    ) -> Result<(), VaultError> {
        self.execute(
            "INSERT OR REPLACE INTO contact_devices (account_id, device_id, certificate)
             VALUES (?1, ?2, ?3)",
            params![&account_id[..], device_id, certificate],
        )?;
        Ok(())
    }

    /// A contact's devices and their certificates.
    pub fn contact_devices(
        &self,
        account_id: &[u8; 32],
    ) -> Result<Vec<(u32, Vec<u8>)>, VaultError> {
        let mut s = self.conn.prepare_cached(
            "SELECT device_id, certificate FROM contact_devices WHERE account_id = ?1
             ORDER BY device_id",
        )?;
        let rows = s.query_map([&account_id[..]], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores a message; `None` if a message with the same id is already stored (a duplicate).
    /// Every [`FTS_BATCH`] messages, the ones not yet in the full-text index are added to it.
    pub fn insert_message(&self, m: &Message) -> Result<Option<i64>, VaultError> {
        let mut s = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO messages (contact, message_id, outgoing, body, sent, received,
                status, read, kind, conversation, time_flag, reply_to, edited, expires_in,
                expire_at, preview)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?;
        // A struct of strings: its JSON cannot fail.
        let preview = m
            .preview
            .as_ref()
            .and_then(|p| serde_json::to_string(p).ok());
        let n = s.execute(params![
            &m.contact[..],
            &m.message_id[..],
            m.outgoing,
            m.body,
            m.sent,
            m.received,
            m.status.as_str(),
            m.read,
            m.kind,
            &m.conversation[..],
            m.time_flag,
            m.reply_to.as_ref().map(|r| &r[..]),
            m.edited,
            m.expires_in,
            m.expire_at,
            preview
        ])?;
        if n != 1 {
            return Ok(None);
        }
        let row = self.conn.last_insert_rowid();
        let indexed: i64 = self
            .conn
            .prepare_cached("SELECT indexed FROM fts_state")?
            .query_row([], |r| r.get(0))?;
        if row - indexed >= FTS_BATCH {
            self.index_pending()?;
        }
        Ok(Some(row))
    }

    /// Adds the messages not yet in the full-text index to it (schema version 7).
    fn index_pending(&self) -> Result<(), VaultError> {
        self.transaction(|v: &Vault| -> Result<(), VaultError> {
            v.conn
                .prepare_cached(
                    "INSERT INTO messages_fts(rowid, body) SELECT id, body FROM messages
                     WHERE id > (SELECT indexed FROM fts_state) ORDER BY id",
                )?
                .execute([])?;
            v.conn
                .prepare_cached(
                    "UPDATE fts_state SET indexed = MAX(indexed,
                        (SELECT COALESCE(MAX(id), 0) FROM messages))",
                )?
                .execute([])?;
            Ok(())
        })
    }

    /// A message by its id.
    pub fn message(&self, message_id: &[u8; 16]) -> Result<Option<Message>, VaultError> {
        Ok(self
            .query_row(
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.message_id = ?1"),
                [&message_id[..]],
                message_row,
            )
            .optional()?)
    }

    /// Moves an outgoing message's status forward (never back: a late "sent" does not undo
    /// "read"); returns whether it changed.
    pub fn advance_status(
        &self,
        message_id: &[u8; 16],
        status: MessageStatus,
    ) -> Result<bool, VaultError> {
        let Some(m) = self.message(message_id)? else {
            return Ok(false);
        };
        if !m.outgoing || status <= m.status || status == MessageStatus::Received {
            return Ok(false);
        }
        self.execute(
            "UPDATE messages SET status = ?2 WHERE message_id = ?1",
            params![&message_id[..], status.as_str()],
        )?;
        Ok(true)
    }

    /// Up to `limit` messages of the direct conversation with a contact that come before the
    /// message with row id `before` (`None`: the newest), oldest first. A conversation is
    /// ordered by sender time (bounded when received), then row id.
    pub fn history(
        &self,
        contact: &[u8; 32],
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>, VaultError> {
        self.conversation_history(&direct_conversation(contact), before, limit)
    }

    /// As [`Vault::history`], by conversation id.
    pub fn conversation_history(
        &self,
        conversation: &[u8; 16],
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>, VaultError> {
        let cursor = match before {
            Some(id) => self
                .query_row("SELECT sent, id FROM messages WHERE id = ?1", [id], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()?
                // A cursor that no longer exists (deleted): start below its row id.
                .unwrap_or((i64::MAX, id)),
            None => (i64::MAX, i64::MAX),
        };
        let mut s = self.conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation = ?1
                AND (m.sent < ?2 OR (m.sent = ?2 AND m.id < ?3))
             ORDER BY m.sent DESC, m.id DESC LIMIT ?4"
        ))?;
        let rows = s.query_map(
            params![&conversation[..], cursor.0, cursor.1, limit],
            message_row,
        )?;
        let mut out: Vec<Message> = rows.collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// Keeps an envelope that could not be opened or decrypted, with its reason.
    pub fn quarantine(
        &self,
        sender: Option<&[u8; 32]>,
        reason: &str,
        size: usize,
        now_ms: i64,
    ) -> Result<i64, VaultError> {
        let conversation = sender.map(direct_conversation);
        self.execute(
            "INSERT INTO quarantine (conversation, sender, reason, size, received)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                conversation.as_ref().map(|c| &c[..]),
                sender.map(|s| &s[..]),
                reason,
                size as i64,
                now_ms
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Forgets all but the newest `keep` quarantine rows.
    pub fn trim_quarantine(&self, keep: u32) -> Result<(), VaultError> {
        self.execute(
            "DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?1",
            [keep],
        )?;
        Ok(())
    }

    /// The quarantine, newest first.
    pub fn quarantined(&self, limit: u32) -> Result<Vec<Quarantined>, VaultError> {
        let mut s = self.conn.prepare_cached(
            "SELECT id, conversation, sender, reason, size, received FROM quarantine
             ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = s.query_map([limit], |r| {
            Ok(Quarantined {
                id: r.get(0)?,
                conversation: r.get::<_, Option<Vec<u8>>>(1)?.map(id16).transpose()?,
                sender: r.get::<_, Option<Vec<u8>>>(2)?.map(id32).transpose()?,
                reason: r.get(3)?,
                size: r.get(4)?,
                received: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Messages matching every word of `text` (prefix match), newest first.
    pub fn search(&self, text: &str, limit: u32) -> Result<Vec<Message>, VaultError> {
        let Some(query) = fts_query(text) else {
            return Ok(Vec::new());
        };
        self.index_pending()?;
        // The index is walked newest first and stops after `limit` hits (FTS5 orders by rowid
        // without sorting), so a common word costs no more than a rare one.
        let mut s = self.conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id IN (
                SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1
                ORDER BY rowid DESC LIMIT ?2)
             ORDER BY m.id DESC"
        ))?;
        let rows = s.query_map(params![query, limit], message_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks a contact's unread incoming messages read at `now` (ms), starting the countdown
    /// of those that disappear (`docs/disappearing.md`); returns their ids (for read
    /// receipts).
    pub fn mark_read(&self, contact: &[u8; 32], now: i64) -> Result<Vec<[u8; 16]>, VaultError> {
        self.transaction(|v: &Vault| -> Result<Vec<[u8; 16]>, VaultError> {
            let c = &v.conn;
            let ids: Vec<[u8; 16]> = {
                let mut s = c.prepare(
                    "SELECT message_id FROM messages WHERE contact = ?1 AND outgoing = 0
                     AND read = 0 ORDER BY id",
                )?;
                let rows = s.query_map([&contact[..]], |r| id16(r.get(0)?))?;
                rows.collect::<Result<_, _>>()?
            };
            c.execute(
                "UPDATE messages SET expire_at = ?2 + expires_in * 1000
                 WHERE contact = ?1 AND outgoing = 0 AND read = 0 AND expires_in IS NOT NULL",
                params![&contact[..], now],
            )?;
            c.execute(
                "UPDATE messages SET read = 1 WHERE contact = ?1 AND outgoing = 0 AND read = 0",
                [&contact[..]],
            )?;
            Ok(ids)
        })
    }

    /// Unread incoming messages from a contact.
    pub fn unread(&self, contact: &[u8; 32]) -> Result<u32, VaultError> {
        Ok(self.query_row(
            "SELECT COUNT(*) FROM messages WHERE contact = ?1 AND outgoing = 0 AND read = 0",
            [&contact[..]],
            |r| r.get(0),
        )?)
    }

    /// Queues a Signal message for a device, to be sealed when it is first sent; returns its
    /// outbox id.
    pub fn outbox_push(
        &self,
        account_id: &[u8; 32],
        device_id: u32,
        signal_message: &[u8],
        message_id: Option<&[u8; 16]>,
    ) -> Result<i64, VaultError> {
        self.execute(
            "INSERT INTO outbox (account_id, device_id, envelope, message_id, created, sealed)
             VALUES (?1, ?2, ?3, ?4, strftime('%s','now') * 1000, 0)",
            params![
                &account_id[..],
                device_id,
                signal_message,
                message_id.map(|m| m.to_vec())
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Replaces an entry's Signal message with the envelope that seals it (before the first
    /// send attempt: a retry then sends the same envelope, which the recipient recognises as a
    /// duplicate by its id).
    pub fn outbox_sealed(&self, id: i64, envelope: &[u8]) -> Result<(), VaultError> {
        self.execute(
            "UPDATE outbox SET envelope = ?2, sealed = 1 WHERE id = ?1",
            params![id, envelope],
        )?;
        Ok(())
    }

    /// Everything in the outbox, oldest first.
    pub fn outbox(&self) -> Result<Vec<OutboxItem>, VaultError> {
        let mut s = self.conn.prepare_cached(
            "SELECT id, account_id, device_id, envelope, message_id, sealed FROM outbox
             ORDER BY id",
        )?;
        let rows = s.query_map([], outbox_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One outbox entry.
    pub fn outbox_item(&self, id: i64) -> Result<Option<OutboxItem>, VaultError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, account_id, device_id, envelope, message_id, sealed FROM outbox
                 WHERE id = ?1",
            )?
            .query_row([id], outbox_row)
            .optional()?)
    }

    /// The outbox without the bytes, oldest first, from entry `after` on (exclusive).
    pub fn outbox_heads(&self, after: i64) -> Result<Vec<OutboxHead>, VaultError> {
        let mut s = self.conn.prepare_cached(
            "SELECT id, account_id, device_id, message_id, sealed FROM outbox
             WHERE id > ?1 ORDER BY id",
        )?;
        let rows = s.query_map([after], |r| {
            Ok(OutboxHead {
                id: r.get(0)?,
                account_id: id32(r.get(1)?)?,
                device_id: r.get(2)?,
                message_id: r.get::<_, Option<Vec<u8>>>(3)?.map(id16).transpose()?,
                sealed: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The ids of every message received from a contact, oldest first.
    pub fn incoming_ids(&self, contact: &[u8; 32]) -> Result<Vec<[u8; 16]>, VaultError> {
        let mut s = self.conn.prepare_cached(
            "SELECT message_id FROM messages WHERE contact = ?1 AND outgoing = 0 ORDER BY id",
        )?;
        let rows = s.query_map([&contact[..]], |r| id16(r.get(0)?))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks an outgoing message failed with `reason`, unless some device took it already;
    /// returns whether it changed.
    pub fn fail_message(&self, message_id: &[u8; 16], reason: &str) -> Result<bool, VaultError> {
        let n = self.execute(
            "UPDATE messages SET status = 'failed', failure = ?2
             WHERE message_id = ?1 AND outgoing = 1 AND status = 'pending'",
            params![&message_id[..], reason],
        )?;
        Ok(n == 1)
    }

    /// Why an outgoing message failed (see [`Vault::fail_message`]).
    pub fn message_failure(&self, message_id: &[u8; 16]) -> Result<Option<String>, VaultError> {
        Ok(self
            .query_row(
                "SELECT failure FROM messages WHERE message_id = ?1 AND status = 'failed'",
                [&message_id[..]],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Removes an outbox entry (the relay accepted it).
    pub fn outbox_remove(&self, id: i64) -> Result<(), VaultError> {
        self.execute("DELETE FROM outbox WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Records an envelope id; `false` if it was seen before (a duplicate delivery).
    pub fn mark_seen(&self, envelope_id: &[u8], now_ms: i64) -> Result<bool, VaultError> {
        Ok(self.execute(
            "INSERT OR IGNORE INTO seen_envelopes (envelope_id, seen) VALUES (?1, ?2)",
            params![envelope_id, now_ms],
        )? == 1)
    }

    /// Whether an envelope id was seen.
    pub fn seen(&self, envelope_id: &[u8]) -> Result<bool, VaultError> {
        Ok(self
            .query_row(
                "SELECT 1 FROM seen_envelopes WHERE envelope_id = ?1",
                [envelope_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// A setting.
    pub fn setting(&self, name: &str) -> Result<Option<String>, VaultError> {
        Ok(self
            .query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Sets a setting.
    pub fn set_setting(&self, name: &str, value: &str) -> Result<(), VaultError> {
        self.execute(
            "INSERT OR REPLACE INTO settings (name, value) VALUES (?1, ?2)",
            params![name, value],
        )?;
        Ok(())
    }

    /// Removes a setting (nothing if it is not set).
    pub fn delete_setting(&self, name: &str) -> Result<(), VaultError> {
        self.execute("DELETE FROM settings WHERE name = ?1", [name])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(v: &Vault, id: u8) -> [u8; 16] {
        let message_id = [id; 16];
        v.insert_message(&Message {
            id: 0,
            conversation: direct_conversation(&[7; 32]),
            contact: [7; 32],
            message_id,
            outgoing: true,
            body: "hi".into(),
            sent: 1,
            received: None,
            status: MessageStatus::Pending,
            read: true,
            kind: "text".into(),
            failure: None,
            time_flag: None,
            reply_to: None,
            edited: None,
            expires_in: None,
            expire_at: None,
            preview: None,
        })
        .unwrap();
        message_id
    }

    #[test]
    fn a_failed_message_keeps_its_reason_and_a_later_send_wins() {
        let (_d, v) = crate::test_vault();
        v.put_contact(&Contact {
            account_id: [7; 32],
            name: "c".into(),
            account_public: vec![1],
            relay: "r".into(),
            state: ContactState::Accepted,
            created: 0,
        })
        .unwrap();
        let a = outgoing(&v, 1);
        assert!(v.fail_message(&a, "mailbox_full").unwrap());
        assert!(!v.fail_message(&a, "refused").unwrap(), "already failed");
        assert_eq!(
            v.message(&a).unwrap().unwrap().status,
            MessageStatus::Failed
        );
        assert_eq!(
            v.message_failure(&a).unwrap().as_deref(),
            Some("mailbox_full")
        );
        // Another device of the recipient took it after all.
        assert!(v.advance_status(&a, MessageStatus::Sent).unwrap());
        assert_eq!(v.message_failure(&a).unwrap(), None);
        let b = outgoing(&v, 2);
        assert!(v.advance_status(&b, MessageStatus::Sent).unwrap());
        assert!(
            !v.fail_message(&b, "refused").unwrap(),
            "sent is never undone"
        );
    }

    #[test]
    fn outbox_heads_list_entries_without_their_bytes() {
        let (_d, v) = crate::test_vault();
        let first = v.outbox_push(&[1; 32], 1, b"one", None).unwrap();
        let second = v.outbox_push(&[2; 32], 3, b"two", Some(&[9; 16])).unwrap();
        let heads = v.outbox_heads(0).unwrap();
        assert_eq!(
            heads.iter().map(|h| h.id).collect::<Vec<_>>(),
            [first, second]
        );
        assert_eq!(heads[1].message_id, Some([9; 16]));
        assert_eq!(v.outbox_heads(first).unwrap().len(), 1);
        assert_eq!(v.outbox_item(second).unwrap().unwrap().envelope, b"two");
        v.outbox_remove(second).unwrap();
        assert_eq!(v.outbox_item(second).unwrap(), None);
    }

    /// Schema 7: messages reach the full-text index in batches, a search first indexes what
    /// waits, and the index always agrees with the table it indexes once caught up.
    #[test]
    fn the_full_text_index_is_filled_in_batches_and_a_search_sees_every_message() {
        let (_d, v) = crate::test_vault();
        contact7(&v);
        let add = |n: u32| {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&n.to_be_bytes());
            v.insert_message(&Message {
                id: 0,
                conversation: direct_conversation(&[7; 32]),
                contact: [7; 32],
                message_id: id,
                outgoing: false,
                body: format!("apple number{n}"),
                sent: i64::from(n),
                received: Some(i64::from(n)),
                status: MessageStatus::Received,
                read: false,
                kind: "text".into(),
                failure: None,
                time_flag: None,
                reply_to: None,
                edited: None,
                expires_in: None,
                expire_at: None,
                preview: None,
            })
            .unwrap()
            .unwrap()
        };
        // What the index itself holds (a MATCH reads the index, not the table).
        let in_index = || -> i64 {
            v.conn
                .query_row(
                    "SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH 'apple'",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let agrees = || {
            v.conn
                .execute(
                    "INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)",
                    [],
                )
                .unwrap();
        };
        for n in 0..10 {
            add(n);
        }
        assert_eq!(in_index(), 0, "nothing indexed per message");
        assert_eq!(v.search("apple", 1000).unwrap().len(), 10);
        assert_eq!(in_index(), 10, "the search indexed what waited");
        agrees();
        for n in 10..(10 + FTS_BATCH as u32) {
            add(n);
        }
        assert_eq!(
            in_index(),
            10 + FTS_BATCH,
            "a full batch is indexed on its own"
        );
        agrees();
        let hits = v.search("number12", 100).unwrap();
        assert_eq!(
            hits.len(),
            11,
            "number12 and number120 to number129 (prefix match)"
        );
        assert!(hits.iter().any(|m| m.body == "apple number12"));

        // Deleting indexed rows removes them from the index; a row id used again after the
        // highest rows were deleted is at or below the mark and is indexed at once.
        let top: i64 = v
            .conn
            .query_row("SELECT MAX(id) FROM messages", [], |r| r.get(0))
            .unwrap();
        v.conn
            .execute("DELETE FROM messages WHERE id > ?1", [top - 5])
            .unwrap();
        agrees();
        let again = add(9999);
        assert!(again <= top, "row id {again} reused");
        assert_eq!(in_index(), 10 + FTS_BATCH - 5 + 1);
        agrees();
        assert_eq!(v.search("number9999", 10).unwrap().len(), 1);
        // A row above the mark that is deleted before it was indexed leaves no trace.
        for n in 10_000..10_004 {
            add(n);
        }
        assert_eq!(in_index(), 10 + FTS_BATCH - 5 + 1 + 4);
        let waiting = add(10_004);
        assert!(waiting > top);
        assert_eq!(
            in_index(),
            10 + FTS_BATCH - 5 + 1 + 4,
            "above the mark: waits"
        );
        v.conn
            .execute("DELETE FROM messages WHERE id = ?1", [waiting])
            .unwrap();
        assert!(v.search("number10004", 10).unwrap().is_empty());
        agrees();
    }

    #[test]
    fn search_text_never_becomes_fts_syntax() {
        assert_eq!(fts_query("  "), None);
        assert_eq!(
            fts_query("hello world").as_deref(),
            Some("\"hello\"* \"world\"*")
        );
        assert_eq!(
            fts_query("a\"b OR NEAR(").as_deref(),
            Some("\"a\"\"b\"* \"OR\"* \"NEAR(\"*")
        );
    }

    fn contact7(v: &Vault) {
        v.put_contact(&Contact {
            account_id: [7; 32],
            name: "c".into(),
            account_public: vec![1],
            relay: "r".into(),
            state: ContactState::Accepted,
            created: 0,
        })
        .unwrap();
    }

    fn incoming(v: &Vault, id: u8, sent: i64, flag: Option<&str>) {
        v.insert_message(&Message {
            id: 0,
            conversation: direct_conversation(&[7; 32]),
            contact: [7; 32],
            message_id: [id; 16],
            outgoing: false,
            body: format!("m{id}"),
            sent,
            received: Some(1_000),
            status: MessageStatus::Received,
            read: false,
            kind: "text".into(),
            failure: None,
            time_flag: flag.map(str::to_string),
            reply_to: None,
            edited: None,
            expires_in: None,
            expire_at: None,
            preview: None,
        })
        .unwrap();
    }

    #[test]
    fn a_conversation_is_ordered_by_sender_time_then_arrival_and_pages_back_by_that_order() {
        let (_d, v) = crate::test_vault();
        contact7(&v);
        // Arrival order 1, 2, 3, 4; sender times 30, 10, 20, 20.
        incoming(&v, 1, 30, None);
        incoming(&v, 2, 10, None);
        incoming(&v, 3, 20, None);
        incoming(&v, 4, 20, Some("future"));
        let bodies = |ms: Vec<Message>| ms.into_iter().map(|m| m.body).collect::<Vec<_>>();
        let all = v.history(&[7; 32], None, 10).unwrap();
        assert!(
            all.iter()
                .all(|m| m.conversation == direct_conversation(&[7; 32]))
        );
        assert_eq!(all[2].time_flag.as_deref(), Some("future"));
        assert_eq!(bodies(all.clone()), ["m2", "m3", "m4", "m1"]);
        // The newest two, then the two before the oldest of those.
        let page = v.history(&[7; 32], None, 2).unwrap();
        assert_eq!(bodies(page.clone()), ["m4", "m1"]);
        let before = v.history(&[7; 32], Some(page[0].id), 2).unwrap();
        assert_eq!(bodies(before), ["m2", "m3"]);
        // The conversation list names the conversation and its newest message by that order.
        let list = v.conversations().unwrap();
        assert_eq!(list[0].id, direct_conversation(&[7; 32]));
        assert_eq!(list[0].last.as_ref().unwrap().body, "m1");
        assert_eq!(list[0].unread, 4);
    }

    #[test]
    fn the_quarantine_keeps_reasons_and_only_the_newest_rows() {
        let (_d, v) = crate::test_vault();
        v.quarantine(None, "decryption failed", 578, 5).unwrap();
        v.quarantine(Some(&[7; 32]), "bad content", 1024, 6)
            .unwrap();
        let q = v.quarantined(10).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].reason, "bad content");
        assert_eq!(q[0].sender, Some([7; 32]));
        assert_eq!(q[0].conversation, Some(direct_conversation(&[7; 32])));
        assert_eq!(
            (q[1].sender, q[1].conversation, q[1].size),
            (None, None, 578)
        );
        for n in 0..10 {
            v.quarantine(None, &format!("r{n}"), 1, 7).unwrap();
        }
        v.trim_quarantine(3).unwrap();
        let reasons: Vec<_> = v
            .quarantined(10)
            .unwrap()
            .into_iter()
            .map(|q| q.reason)
            .collect();
        assert_eq!(reasons, ["r9", "r8", "r7"]);
    }
}
