//! Text messages.

use serde::{Deserialize, Serialize};

use super::Kind;
use crate::ids::MessageId;

/// Longest text message, in bytes.
pub const MAX_TEXT: usize = 64 * 1024;

/// A text message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    /// Message id, shared by both sides.
    pub id: MessageId,
    /// Sender's clock, ms since the epoch (bounded on arrival: `inbound::bound_sent`).
    pub sent: u64,
    /// The text.
    pub body: String,
    /// The message this one replies to (`docs/message-actions.md`); left out when none, as
    /// every earlier version wrote a text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
    /// Seconds this message lives once read (the conversation's timer when it was sent,
    /// `docs/disappearing.md`); left out when it stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u32>,
    /// A preview of the first link in the text, made by the sender (`docs/link-previews.md`);
    /// left out when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<LinkPreview>,
}

impl Kind for Text {
    const TAG: &'static str = "text";
    fn within_limits(&self) -> bool {
        self.body.len() <= MAX_TEXT && self.preview.as_ref().is_none_or(LinkPreview::within_limits)
    }
}

/// Longest link a preview is made for, in bytes.
pub const MAX_PREVIEW_URL: usize = 2048;
/// Longest preview title, in bytes.
pub const MAX_PREVIEW_TITLE: usize = 512;
/// Longest preview description, in bytes.
pub const MAX_PREVIEW_DESCRIPTION: usize = 1024;
/// Longest site name, in bytes.
pub const MAX_PREVIEW_SITE: usize = 128;

/// What a link leads to, as the sender's device found it through Tor (`docs/link-previews.md`).
/// The receiver shows it as it came and never fetches anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPreview {
    /// The link, exactly as it appears in the text.
    pub url: String,
    /// The page's title.
    pub title: String,
    /// Its description, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The site's name, if the page names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
}

impl LinkPreview {
    /// A preview of `url` with these texts, each made one line without control characters and
    /// cut to its limit (on a character boundary); `None` when `url` is too long or there is no
    /// title.
    pub fn new(
        url: &str,
        title: &str,
        description: Option<&str>,
        site: Option<&str>,
    ) -> Option<Self> {
        let title = clean(title, MAX_PREVIEW_TITLE);
        if url.len() > MAX_PREVIEW_URL || title.is_empty() {
            return None;
        }
        let optional = |t: Option<&str>, max| t.map(|t| clean(t, max)).filter(|t| !t.is_empty());
        Some(Self {
            url: url.to_string(),
            title,
            description: optional(description, MAX_PREVIEW_DESCRIPTION),
            site: optional(site, MAX_PREVIEW_SITE),
        })
    }

    fn within_limits(&self) -> bool {
        self.url.len() <= MAX_PREVIEW_URL
            && self.title.len() <= MAX_PREVIEW_TITLE
            && self
                .description
                .as_ref()
                .is_none_or(|d| d.len() <= MAX_PREVIEW_DESCRIPTION)
            && self
                .site
                .as_ref()
                .is_none_or(|s| s.len() <= MAX_PREVIEW_SITE)
    }

    /// Whether it may be shown with `body`: its link is the text's first link, and no field
    /// carries a control character. A preview that does not fit is dropped; the text stays.
    pub fn fits(&self, body: &str) -> bool {
        let plain = |t: &str| !t.chars().any(char::is_control);
        first_link(body) == Some(self.url.as_str())
            && !self.title.is_empty()
            && plain(&self.title)
            && self.description.as_deref().is_none_or(plain)
            && self.site.as_deref().is_none_or(plain)
    }
}

/// `text` on one line (runs of white space and control characters become one space, trimmed),
/// at most `max` bytes.
fn clean(text: &str, max: usize) -> String {
    let mut out = String::new();
    for word in text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        let extra = usize::from(!out.is_empty()) + word.len();
        if out.len() + extra > max {
            if out.is_empty() {
                // One word longer than everything allowed: cut it on a character boundary.
                let mut end = max;
                while !word.is_char_boundary(end) {
                    end -= 1;
                }
                out.push_str(&word[..end]);
            }
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The first `https://` link in `text`: it starts a word and runs to the next white space,
/// without trailing punctuation (`.,;:!?'"` and closing brackets with no opening one in the
/// link). Only `https` links are previewed (`docs/link-previews.md`).
pub fn first_link(text: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(i) = text[from..].find("https://") {
        let start = from + i;
        let starts_word = text[..start]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || "([<\"'".contains(c));
        let end = text[start..]
            .find(char::is_whitespace)
            .map_or(text.len(), |n| start + n);
        let mut link = &text[start..end];
        while let Some(last) = link.chars().next_back() {
            let unbalanced = |open: char, close: char| {
                last == close && link.matches(open).count() < link.matches(close).count()
            };
            if ".,;:!?'\"".contains(last)
                || unbalanced('(', ')')
                || unbalanced('[', ']')
                || last == '>'
            {
                link = &link[..link.len() - last.len_utf8()];
            } else {
                break;
            }
        }
        if starts_word && link.len() > "https://".len() {
            return Some(link);
        }
        from = end.max(start + 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Content;

    #[test]
    fn a_text_longer_than_the_limit_is_refused() {
        let long = Content::Text(Text {
            id: MessageId([1; 16]),
            sent: 1,
            body: "x".repeat(MAX_TEXT + 1),
            reply_to: None,
            expires: None,
            preview: None,
        });
        assert!(Content::from_bytes(&long.to_bytes().expect("encode")).is_err());
    }

    #[test]
    fn the_first_https_link_of_a_text() {
        let cases = [
            (
                "see https://example.org/a?b=c.",
                Some("https://example.org/a?b=c"),
            ),
            (
                "(https://en.wikipedia.org/wiki/Ptarmigan_(bird)) ok",
                Some("https://en.wikipedia.org/wiki/Ptarmigan_(bird)"),
            ),
            ("<https://example.org/x>", Some("https://example.org/x")),
            (
                "\"https://example.org/q\", said she",
                Some("https://example.org/q"),
            ),
            (
                "http://example.org and https://b.example",
                Some("https://b.example"),
            ),
            ("xhttps://example.org", None),
            ("https:// nothing", None),
            ("no link at all", None),
            (
                "two: https://one.example/ https://two.example/",
                Some("https://one.example/"),
            ),
            (
                "ünïcode https://example.org/ß!",
                Some("https://example.org/ß"),
            ),
        ];
        for (text, link) in cases {
            assert_eq!(first_link(text), link, "{text}");
        }
    }

    #[test]
    fn a_preview_is_cleaned_cut_and_shown_only_with_its_link() {
        let p = LinkPreview::new(
            "https://example.org/",
            "  A\ttitle\non   two lines ",
            Some(&"word ".repeat(400)),
            Some("\u{7}"),
        )
        .expect("a preview");
        assert_eq!(p.title, "A title on two lines");
        let d = p.description.as_deref().expect("a description");
        assert!(d.len() <= MAX_PREVIEW_DESCRIPTION && d.ends_with("word"));
        assert_eq!(p.site, None, "nothing left of the site name");
        let long = "ж".repeat(MAX_PREVIEW_TITLE);
        let cut = LinkPreview::new("https://example.org/", &long, None, None).expect("cut");
        assert!(cut.title.len() <= MAX_PREVIEW_TITLE && cut.title.chars().all(|c| c == 'ж'));
        assert!(LinkPreview::new("https://example.org/", " \n ", None, None).is_none());

        assert!(p.fits("look: https://example.org/"));
        assert!(!p.fits("look: https://example.org/other"), "another link");
        assert!(!p.fits("no link"));
        let mut forged = p.clone();
        forged.title = "bell\u{7}".into();
        assert!(!forged.fits("https://example.org/"));

        // Over its limits, the whole text does not parse (a malformed content).
        let mut big = p.clone();
        big.title = "x".repeat(MAX_PREVIEW_TITLE + 1);
        let t = Content::Text(Text {
            id: MessageId([1; 16]),
            sent: 1,
            body: "https://example.org/".into(),
            reply_to: None,
            expires: None,
            preview: Some(big),
        });
        assert!(Content::from_bytes(&t.to_bytes().expect("encode")).is_err());
    }
}
