//! What the state machines need to remember, as small traits (`docs/messaging.md`, "Storage").
//! The SQLCipher versions are in `tessera-store` (the vault implements them); [`MemoryStore`]
//! here is for tests of the machines and of the layers above.

use std::collections::HashMap;
use std::convert::Infallible;

use crate::ids::{AccountId, ConversationId, MessageId};
use crate::inbound::{Standing, TimeFlag};

/// Where a message is: outgoing ones move forward through these, incoming ones are `Received`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// In the outbox.
    Pending,
    /// The relay will never take it. Before `Sent`: another device of the recipient may still.
    Failed,
    /// The relay stored it.
    Sent,
    /// A device of the recipient has it.
    Delivered,
    /// The recipient opened it.
    Read,
    /// Received from someone.
    Received,
}

/// One message as a conversation keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its id (shared by both sides; receipts name it).
    pub id: MessageId,
    /// The conversation it belongs to.
    pub conversation: ConversationId,
    /// The other account of the (direct) conversation: the sender of an incoming message.
    pub peer: AccountId,
    /// Sent by us.
    pub outgoing: bool,
    /// The text (empty for notices and unsupported kinds).
    pub body: String,
    /// The sender's time, bounded when received (the conversation's order), ms.
    pub sent: u64,
    /// When it arrived (incoming), ms.
    pub received: Option<u64>,
    /// Set when the sender's time was replaced by the receive time.
    pub time_flag: Option<TimeFlag>,
    /// `text`, `deleted` (deleted for everyone), `unsupported:<tag>` or `undecryptable`.
    pub kind: String,
    /// Where it is.
    pub status: Status,
    /// The message this one replies to.
    pub reply_to: Option<MessageId>,
    /// The sender time of the edit whose text is shown (`None`: never edited).
    pub edited: Option<u64>,
    /// Seconds the message lives (for ours from sending, for theirs from reading;
    /// `docs/disappearing.md`); `None`: it stays.
    pub expires_in: Option<u32>,
    /// The sender's preview of the text's first link (`docs/link-previews.md`).
    pub preview: Option<crate::content::text::LinkPreview>,
}

/// Who someone is to us.
pub trait Contacts {
    /// A storage failure.
    type Error;
    /// Where `account` stands ([`Standing::Stranger`] if it is not a contact at all).
    fn standing(&self, account: &AccountId) -> Result<Standing, Self::Error>;
}

/// The messages of every conversation.
pub trait Messages {
    /// A storage failure.
    type Error;
    /// Stores a message; `false` if one with its id is already stored (a duplicate).
    fn insert(&mut self, message: &StoredMessage) -> Result<bool, Self::Error>;
    /// A message by id.
    fn get(&self, id: &MessageId) -> Result<Option<StoredMessage>, Self::Error>;
    /// Moves an outgoing message's status forward (never back); whether it changed.
    fn advance(&mut self, id: &MessageId, status: Status) -> Result<bool, Self::Error>;
    /// The newest message of a conversation (by sender time, then arrival).
    fn newest(&self, conversation: &ConversationId) -> Result<Option<StoredMessage>, Self::Error>;
    /// Shows `body` as the message's text from now on, edited at `at` (sender time); the text
    /// it replaces goes to the message's edit history.
    fn edit(&mut self, id: &MessageId, body: &str, at: u64) -> Result<(), Self::Error>;
    /// Deletes the message for everyone: its text and edit history are gone, its kind becomes
    /// `deleted`.
    fn erase(&mut self, id: &MessageId) -> Result<(), Self::Error>;
    /// `who`'s reaction to `id` and its time (an empty reaction: removed at that time).
    fn reaction(
        &self,
        id: &MessageId,
        who: &AccountId,
    ) -> Result<Option<(String, u64)>, Self::Error>;
    /// Sets `who`'s reaction to `id` (empty: removed), made at `at`.
    fn react(
        &mut self,
        id: &MessageId,
        who: &AccountId,
        emoji: &str,
        at: u64,
    ) -> Result<(), Self::Error>;
    /// The conversation's disappearing-message timer (seconds, 0: off) and when it was set
    /// (sender time; 0 if never).
    fn timer(&self, conversation: &ConversationId) -> Result<(u32, u64), Self::Error>;
    /// Sets the conversation's timer, set at `at`.
    fn set_timer(
        &mut self,
        conversation: &ConversationId,
        seconds: u32,
        at: u64,
    ) -> Result<(), Self::Error>;
}

/// Contacts and messages in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    standing: HashMap<AccountId, Standing>,
    /// In arrival order.
    messages: Vec<StoredMessage>,
    /// Replaced texts, per message, oldest first.
    edits: HashMap<MessageId, Vec<String>>,
    reactions: HashMap<(MessageId, AccountId), (String, u64)>,
    timers: HashMap<ConversationId, (u32, u64)>,
}

impl MemoryStore {
    /// Sets where `account` stands.
    pub fn set_standing(&mut self, account: AccountId, standing: Standing) {
        self.standing.insert(account, standing);
    }

    /// A conversation's messages in its order (sender time, then arrival).
    pub fn conversation(&self, conversation: &ConversationId) -> Vec<&StoredMessage> {
        let mut out: Vec<(usize, &StoredMessage)> = self
            .messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.conversation == *conversation)
            .collect();
        out.sort_by_key(|(arrival, m)| (m.sent, *arrival));
        out.into_iter().map(|(_, m)| m).collect()
    }

    /// The texts a message showed before its edits, oldest first.
    pub fn edit_history(&self, id: &MessageId) -> &[String] {
        self.edits.get(id).map_or(&[], Vec::as_slice)
    }
}

impl Contacts for MemoryStore {
    type Error = Infallible;
    fn standing(&self, account: &AccountId) -> Result<Standing, Infallible> {
        Ok(self
            .standing
            .get(account)
            .copied()
            .unwrap_or(Standing::Stranger))
    }
}

impl Messages for MemoryStore {
    type Error = Infallible;

    fn insert(&mut self, message: &StoredMessage) -> Result<bool, Infallible> {
        if self.messages.iter().any(|m| m.id == message.id) {
            return Ok(false);
        }
        self.messages.push(message.clone());
        Ok(true)
    }

    fn get(&self, id: &MessageId) -> Result<Option<StoredMessage>, Infallible> {
        Ok(self.messages.iter().find(|m| m.id == *id).cloned())
    }

    fn advance(&mut self, id: &MessageId, status: Status) -> Result<bool, Infallible> {
        match self.messages.iter_mut().find(|m| m.id == *id) {
            Some(m) if m.outgoing && status > m.status && status != Status::Received => {
                m.status = status;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn newest(&self, conversation: &ConversationId) -> Result<Option<StoredMessage>, Infallible> {
        Ok(self.conversation(conversation).last().map(|m| (*m).clone()))
    }

    fn edit(&mut self, id: &MessageId, body: &str, at: u64) -> Result<(), Infallible> {
        if let Some(m) = self.messages.iter_mut().find(|m| m.id == *id) {
            let old = std::mem::replace(&mut m.body, body.to_string());
            m.edited = Some(at);
            self.edits.entry(*id).or_default().push(old);
        }
        Ok(())
    }

    fn erase(&mut self, id: &MessageId) -> Result<(), Infallible> {
        if let Some(m) = self.messages.iter_mut().find(|m| m.id == *id) {
            m.body.clear();
            m.kind = "deleted".into();
            self.edits.remove(id);
        }
        Ok(())
    }

    fn reaction(
        &self,
        id: &MessageId,
        who: &AccountId,
    ) -> Result<Option<(String, u64)>, Infallible> {
        Ok(self.reactions.get(&(*id, *who)).cloned())
    }

    fn react(
        &mut self,
        id: &MessageId,
        who: &AccountId,
        emoji: &str,
        at: u64,
    ) -> Result<(), Infallible> {
        self.reactions.insert((*id, *who), (emoji.to_string(), at));
        Ok(())
    }

    fn timer(&self, conversation: &ConversationId) -> Result<(u32, u64), Infallible> {
        Ok(self.timers.get(conversation).copied().unwrap_or((0, 0)))
    }

    fn set_timer(
        &mut self,
        conversation: &ConversationId,
        seconds: u32,
        at: u64,
    ) -> Result<(), Infallible> {
        self.timers.insert(*conversation, (seconds, at));
        Ok(())
    }
}
