//! Decisions about what arrives (`docs/messaging.md`, "Inbound"): how far a sender's clock is
//! believed, what a stranger may do, and which names imitate a contact's.

/// How far in the future a sender's time may be (clock skew) before it is not believed.
pub const FUTURE_SKEW_MS: u64 = 5 * 60_000;
/// How old a sender's time may be. A device may keep a message in its outbox while it is
/// offline (a year is tested), so "old" alone is no sign of a lie; older than this is.
pub const MAX_AGE_MS: u64 = 400 * 24 * 3_600_000;

/// Why a sender's time was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFlag {
    /// More than [`FUTURE_SKEW_MS`] ahead of the receiver's clock.
    Future,
    /// More than [`MAX_AGE_MS`] behind it.
    TooOld,
}

impl TimeFlag {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Future => "future",
            Self::TooOld => "too_old",
        }
    }
}

/// A sender's time as the conversation uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded {
    /// The time to show and sort by, ms since the epoch.
    pub at: u64,
    /// Set when the sender's time was replaced by the receive time.
    pub flag: Option<TimeFlag>,
}

/// Bounds a sender's claimed time `sent` by the receive time `received`: a time from the future
/// (beyond the skew) or absurdly old becomes the receive time, flagged, so it can never sort
/// above newer messages.
pub fn bound_sent(sent: u64, received: u64) -> Bounded {
    let flag = if sent > received.saturating_add(FUTURE_SKEW_MS) {
        Some(TimeFlag::Future)
    } else if sent < received.saturating_sub(MAX_AGE_MS) {
        Some(TimeFlag::TooOld)
    } else {
        None
    };
    Bounded {
        at: if flag.is_some() { received } else { sent },
        flag,
    }
}

/// Where a sender stands with us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not a contact at all.
    Stranger,
    /// We asked them; they have not answered.
    Requested,
    /// They asked us; we have not answered (their messages are in the request box).
    Incoming,
    /// Contacts.
    Accepted,
    /// Rejected or blocked: their messages are dropped.
    Rejected,
}

impl Standing {
    /// Whether their messages are kept at all.
    pub fn keeps_messages(self) -> bool {
        !matches!(self, Self::Stranger | Self::Rejected)
    }

    /// Whether they learn that a message arrived or was read. Not before acceptance: a receipt
    /// tells a stranger the account exists and is in use.
    pub fn gets_receipts(self) -> bool {
        matches!(self, Self::Accepted | Self::Requested)
    }

    /// Whether a notification may show content (a request shows a name only).
    pub fn notifies_with_content(self) -> bool {
        matches!(self, Self::Accepted | Self::Requested)
    }

    /// Whether their messages belong in the request box rather than the conversation list.
    pub fn in_request_box(self) -> bool {
        matches!(self, Self::Incoming)
    }
}

/// Characters that look like Latin letters, folded to the letter (a subset of Unicode's
/// confusables, TR39: the Cyrillic and Greek letters that render like Latin in common fonts,
/// and fullwidth forms). Invisible characters are dropped.
fn fold(c: char) -> Option<char> {
    Some(match c {
        '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}' | '\u{00ad}' => return None,
        '\u{ff01}'..='\u{ff5e}' => char::from_u32(u32::from(c) - 0xfee0).unwrap_or(c),
        'а' | 'А' | 'α' | 'Α' => 'a',
        'в' | 'В' | 'β' | 'Β' => 'b',
        'с' | 'С' | 'ϲ' | 'Ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'Е' | 'ё' | 'Ё' | 'ε' | 'Ε' => 'e',
        'һ' | 'Һ' | 'Η' => 'h',
        'і' | 'І' | 'ι' | 'Ι' | 'ӏ' | 'Ӏ' => 'i',
        'ј' | 'Ј' => 'j',
        'к' | 'К' | 'κ' | 'Κ' => 'k',
        'м' | 'М' | 'Μ' => 'm',
        'н' | 'Н' | 'Ν' => 'n',
        'о' | 'О' | 'ο' | 'Ο' | 'σ' | '0' => 'o',
        'р' | 'Р' | 'ρ' | 'Ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' | 'Ѕ' => 's',
        'т' | 'Т' | 'τ' | 'Τ' => 't',
        'υ' | 'ս' => 'u',
        'ν' | 'ѵ' => 'v',
        'ԝ' | 'ѡ' => 'w',
        'х' | 'Х' | 'χ' | 'Χ' => 'x',
        'у' | 'У' | 'γ' | 'Υ' => 'y',
        'Ζ' => 'z',
        '1' | 'l' | '|' => 'l',
        c => c,
    })
}

/// The form two names share when they look alike: lowercase, lookalikes folded, invisible
/// characters and spacing differences removed.
pub fn skeleton(name: &str) -> String {
    name.chars()
        .flat_map(char::to_lowercase)
        .filter_map(fold)
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// The existing name that `name` imitates: one that looks the same but is not the same text.
pub fn imitates<'a>(name: &str, existing: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let s = skeleton(name);
    existing
        .into_iter()
        .find(|e| *e != name && !s.is_empty() && skeleton(e) == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn sender_times_are_believed_within_bounds_only() {
        assert_eq!(
            bound_sent(NOW - 1000, NOW),
            Bounded {
                at: NOW - 1000,
                flag: None
            }
        );
        assert_eq!(bound_sent(NOW + FUTURE_SKEW_MS, NOW).flag, None);
        assert_eq!(
            bound_sent(NOW + FUTURE_SKEW_MS + 1, NOW),
            Bounded {
                at: NOW,
                flag: Some(TimeFlag::Future)
            }
        );
        assert_eq!(bound_sent(u64::MAX, NOW).at, NOW);
        assert_eq!(bound_sent(NOW - MAX_AGE_MS, NOW).flag, None);
        assert_eq!(
            bound_sent(0, NOW),
            Bounded {
                at: NOW,
                flag: Some(TimeFlag::TooOld)
            }
        );
        // Early clocks (tests at time 0) do not underflow.
        assert_eq!(bound_sent(0, 5).flag, None);
    }

    #[test]
    fn a_future_message_never_sorts_above_a_newer_one() {
        let liar = bound_sent(NOW + 86_400_000, NOW);
        let honest = bound_sent(NOW + 1_000, NOW + 2_000);
        assert!(liar.at < honest.at);
    }

    #[test]
    fn strangers_get_nothing_until_accepted() {
        assert!(!Standing::Incoming.gets_receipts());
        assert!(!Standing::Incoming.notifies_with_content());
        assert!(Standing::Incoming.in_request_box());
        assert!(Standing::Incoming.keeps_messages());
        assert!(!Standing::Stranger.keeps_messages());
        assert!(!Standing::Rejected.keeps_messages());
        assert!(Standing::Accepted.gets_receipts());
        assert!(!Standing::Accepted.in_request_box());
    }

    #[test]
    fn lookalike_names_are_caught() {
        // Cyrillic "а" (U+0430) for Latin "a".
        assert_eq!(imitates("\u{430}lice", ["alice", "bob"]), Some("alice"));
        assert_eq!(imitates("ALICE", ["alice"]), Some("alice"));
        assert_eq!(imitates("al\u{200b}ice", ["alice"]), Some("alice"));
        assert_eq!(imitates("ａｌｉｃｅ", ["alice"]), Some("alice"));
        assert_eq!(imitates("b0b", ["bob"]), Some("bob"));
        assert_eq!(
            imitates("alice", ["alice"]),
            None,
            "the same name is not an imitation"
        );
        assert_eq!(imitates("alicia", ["alice"]), None);
        assert_eq!(imitates("\u{200b}", ["\u{200c}"]), None);
    }
}
