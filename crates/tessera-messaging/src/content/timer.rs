//! Disappearing messages (`docs/disappearing.md`): the conversation's timer, set by either
//! side; the change is itself shown in the conversation.

use serde::{Deserialize, Serialize};

use super::Kind;

/// The timers a person can choose, in seconds (0: off): 30 s, 5 min, 1 h, 8 h, 1 day, 1 week,
/// 4 weeks.
pub const TIMERS: [u32; 8] = [0, 30, 300, 3_600, 28_800, 86_400, 604_800, 2_419_200];

/// The conversation's new timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// Sender's clock when set, ms (a later change wins when they cross).
    pub sent: u64,
    /// Seconds a message lives (for its sender from sending, for its recipient from reading);
    /// 0: messages stay.
    pub seconds: u32,
}

impl Kind for Timer {
    const TAG: &'static str = "timer";
    fn within_limits(&self) -> bool {
        TIMERS.contains(&self.seconds)
    }
}

/// A timer for people: `off`, `30s`, `5m`, `1h`, `8h`, `1d`, `1w`, `4w`.
pub fn timer_name(seconds: u32) -> String {
    match seconds {
        0 => "off".into(),
        s if s % 604_800 == 0 => format!("{}w", s / 604_800),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Parses [`timer_name`]'s names (and plain seconds); `None` unless one of [`TIMERS`].
pub fn parse_timer(text: &str) -> Option<u32> {
    let text = text.trim();
    if text == "off" {
        return Some(0);
    }
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?.min(text.len()));
    let n: u32 = number.parse().ok()?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3_600)?,
        "d" => n.checked_mul(86_400)?,
        "w" => n.checked_mul(604_800)?,
        _ => return None,
    };
    TIMERS.contains(&seconds).then_some(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Content;

    #[test]
    fn only_the_offered_timers_exist_and_their_names_round_trip() {
        for s in TIMERS {
            assert_eq!(parse_timer(&timer_name(s)), Some(s), "{s}");
            let c = Content::Timer(Timer {
                sent: 1,
                seconds: s,
            });
            assert_eq!(
                Content::from_bytes(&c.to_bytes().expect("encode")).ok(),
                Some(c)
            );
        }
        assert_eq!(parse_timer("5m"), Some(300));
        for bad in ["7s", "2h", "", "m", "30", "1y", "99999999999w"] {
            assert_eq!(parse_timer(bad), None, "{bad}");
        }
        let odd = Content::Timer(Timer {
            sent: 1,
            seconds: 7,
        });
        assert!(Content::from_bytes(&odd.to_bytes().expect("encode")).is_err());
    }
}
