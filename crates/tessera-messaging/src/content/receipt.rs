//! Delivery and read receipts.

use serde::{Deserialize, Serialize};

use super::Kind;
use crate::ids::MessageId;

/// Most message ids in one receipt.
pub const MAX_RECEIPT_IDS: usize = 512;

/// Delivery or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    /// The recipient's device stored the messages.
    Delivered,
    /// The recipient opened them.
    Read,
}

/// Receipts for earlier messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Delivered or read.
    pub kind: ReceiptKind,
    /// The message ids.
    pub ids: Vec<MessageId>,
}

impl Kind for Receipt {
    const TAG: &'static str = "receipt";
    fn within_limits(&self) -> bool {
        self.ids.len() <= MAX_RECEIPT_IDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Content;

    #[test]
    fn receipts_are_bounded_and_ids_checked() {
        let many = Content::Receipt(Receipt {
            kind: ReceiptKind::Read,
            ids: vec![MessageId([2; 16]); MAX_RECEIPT_IDS + 1],
        });
        assert!(Content::from_bytes(&many.to_bytes().expect("encode")).is_err());
        assert!(Content::from_bytes(br#"{"t":"receipt","kind":"read","ids":["zz"]}"#).is_err());
        assert!(Content::from_bytes(br#"{"t":"receipt","kind":"seen","ids":[]}"#).is_err());
    }
}
