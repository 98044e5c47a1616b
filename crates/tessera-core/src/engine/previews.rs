//! Link previews (`docs/link-previews.md`): made by the sender through Tor before sending,
//! when the person turned them on; never fetched for what arrives.

use tessera_messaging::content::text::{LinkPreview, first_link};
use tessera_net::preview::{PreviewError, fetch_page};

use super::*;

/// The vault setting that turns link previews on (`on`); off unless set.
pub const LINK_PREVIEWS_SETTING: &str = "link_previews";

/// What the person wrote, ready to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Draft {
    /// The text.
    pub body: String,
    /// The message of the same conversation it replies to.
    pub reply_to: Option<[u8; 16]>,
    /// The preview of the text's first link they kept ([`Engine::link_preview`]); one that is
    /// not about the text's first link is not sent.
    pub preview: Option<LinkPreview>,
}

impl Draft {
    /// A plain text.
    pub fn text(body: &str) -> Self {
        Self {
            body: body.to_string(),
            ..Self::default()
        }
    }
}

impl Engine {
    /// Whether link previews are on (off unless the person turned them on).
    pub fn link_previews(&self) -> Result<bool, CoreError> {
        self.with(|u| Ok(u.vault.setting(LINK_PREVIEWS_SETTING)?.as_deref() == Some("on")))
    }

    /// Turns link previews on or off.
    pub fn set_link_previews(&self, on: bool) -> Result<(), CoreError> {
        self.with(|u| {
            Ok(u.vault
                .set_setting(LINK_PREVIEWS_SETTING, if on { "on" } else { "off" })?)
        })
    }

    /// The preview of `text`'s first `https` link, fetched now through Tor on a circuit of its
    /// own; `None` when previews are off or there is no such link (nothing is fetched then).
    /// An account on the direct transport gets [`CoreError::PreviewNeedsTor`]: there is no
    /// other way to fetch it.
    pub async fn link_preview(&self, text: &str) -> Result<Option<LinkPreview>, CoreError> {
        let Some(link) = first_link(text) else {
            return Ok(None);
        };
        if !self.link_previews()? {
            return Ok(None);
        }
        let transport = self.with(|u| Ok(u.me.transport.clone()))?;
        let Transport::Tor(tor) = transport else {
            return Err(CoreError::PreviewNeedsTor);
        };
        let page = fetch_page(&tor, link).await?;
        LinkPreview::new(
            link,
            &page.title,
            page.description.as_deref(),
            page.site.as_deref(),
        )
        .map(Some)
        .ok_or(CoreError::Preview(PreviewError::NothingToShow))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{account, befriend, relay, wait_for};
    use super::*;

    /// Off by default nothing is made; on the direct transport it is refused; a preview sent
    /// with its text arrives with it (one for another link is not sent), and an edit that
    /// removes the link removes the preview on both sides.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_preview_travels_with_its_text_and_is_never_made_without_tor() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let (alice, _) = account(dir.path(), &relay, "alice").await;
        let (bob, _) = account(dir.path(), &relay, "bob").await;
        let (alice_id, bob_id) = befriend(&alice, &bob).await;
        let text = "the hike: https://127.0.0.1:9/trail";

        assert!(!alice.link_previews().unwrap(), "off by default");
        assert_eq!(alice.link_preview(text).await.unwrap(), None);
        alice.set_link_previews(true).unwrap();
        assert!(matches!(
            alice.link_preview(text).await,
            Err(CoreError::PreviewNeedsTor)
        ));
        assert_eq!(alice.link_preview("no link here").await.unwrap(), None);

        // As if fetched through Tor.
        let preview = LinkPreview::new(
            "https://127.0.0.1:9/trail",
            "The ridge trail",
            Some("Nine kilometres above the tree line"),
            Some("Hikes"),
        );
        let sent = alice
            .send_draft(
                &bob_id,
                Draft {
                    body: text.into(),
                    reply_to: None,
                    preview: preview.clone(),
                },
            )
            .await
            .unwrap();
        let other = alice
            .send_draft(
                &bob_id,
                Draft {
                    body: "another: https://127.0.0.1:9/other".into(),
                    reply_to: None,
                    preview: preview.clone(),
                },
            )
            .await
            .unwrap();
        assert_eq!(alice.message(&sent).unwrap().unwrap().preview, preview);
        assert_eq!(alice.message(&other).unwrap().unwrap().preview, None);
        wait_for("both texts at bob's", || {
            bob.message(&other).unwrap().is_some()
        })
        .await;
        assert_eq!(bob.message(&sent).unwrap().unwrap().preview, preview);
        assert_eq!(bob.message(&other).unwrap().unwrap().preview, None);

        alice.edit_message(&sent, "the hike is off").await.unwrap();
        assert_eq!(alice.message(&sent).unwrap().unwrap().preview, None);
        wait_for("the edit at bob's", || {
            bob.message(&sent).unwrap().unwrap().body == "the hike is off"
        })
        .await;
        assert_eq!(bob.message(&sent).unwrap().unwrap().preview, None);
        let _ = alice_id;
    }
}
