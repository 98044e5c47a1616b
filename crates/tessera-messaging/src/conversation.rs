//! Conversations (`docs/messaging.md`, "Conversations"): messages belong to a conversation, not
//! to a contact. A conversation has its own id and a kind.

use crate::ids::{AccountId, ConversationId};

/// What a conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConversationKind {
    /// With one other account.
    Direct(AccountId),
    /// With oneself (notes; synced to one's other devices).
    NoteToSelf,
}

impl ConversationKind {
    /// The stored name of the kind.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Direct(_) => "direct",
            Self::NoteToSelf => "note_to_self",
        }
    }
}

/// A conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conversation {
    /// Its id.
    pub id: ConversationId,
    /// Its kind.
    pub kind: ConversationKind,
}

impl Conversation {
    /// The conversation with `kind`. A direct conversation's id is derived from the other
    /// account (and a note to self's from our own), so every device of an account finds the
    /// same id without asking; group ids (a later kind) are random.
    pub fn of(kind: ConversationKind, me: &AccountId) -> Self {
        let (label, account) = match &kind {
            ConversationKind::Direct(other) => ("direct", other),
            ConversationKind::NoteToSelf => ("note_to_self", me),
        };
        let mut h = blake3::Hasher::new_derive_key("tessera 2026 conversation id");
        h.update(label.as_bytes());
        h.update(&[0]);
        h.update(&account.0);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        Self {
            id: ConversationId(id),
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let me = AccountId([1; 32]);
        let bob = AccountId([2; 32]);
        let direct = Conversation::of(ConversationKind::Direct(bob), &me);
        assert_eq!(
            direct,
            Conversation::of(ConversationKind::Direct(bob), &AccountId([9; 32]))
        );
        let notes = Conversation::of(ConversationKind::NoteToSelf, &me);
        let with_me = Conversation::of(ConversationKind::Direct(me), &me);
        assert_ne!(
            notes.id, with_me.id,
            "a note to self is not a direct conversation"
        );
        assert_ne!(direct.id, notes.id);
        assert_eq!(direct.kind.as_str(), "direct");
    }
}
