//! Message actions for the page (`docs/message-actions.md`): reply, edit, delete, react, and a
//! message's full view (with its reactions).

use tessera_core::{DeleteFor, Draft, Engine, LinkPreview, MAX_TEXT};

use crate::commands::{AppState, account};
use crate::error::{UiError, UiResult};
use crate::view::{MessageView, ReactionView};

fn message_id(text: &str) -> UiResult<[u8; 16]> {
    tessera_core::parse_id(text).ok_or_else(|| UiError::new("bad_id", "not a message id"))
}

/// The page's view of a message with its reactions (ours marked).
pub(crate) fn full_view(engine: &Engine, m: &tessera_core::Message) -> UiResult<MessageView> {
    let me = engine.account_id()?.0;
    let mut view = MessageView::from(m);
    view.reactions = engine
        .reactions(&m.message_id)?
        .into_iter()
        .map(|r| ReactionView {
            mine: r.reactor == me,
            emoji: r.emoji,
        })
        .collect();
    view.attachment = engine.attachment(&m.message_id)?.map(Into::into);
    Ok(view)
}

/// A message as the page shows it now (after a change event), or `None` if it is gone.
#[tauri::command]
pub async fn message_view(app: AppState<'_>, id: String) -> UiResult<Option<MessageView>> {
    let engine = app.engine()?;
    match engine.message(&message_id(&id)?)? {
        Some(m) => Ok(Some(full_view(&engine, &m)?)),
        None => Ok(None),
    }
}

/// Sends a text (docs/messaging.md): a reply when `reply_to` names a message of the same
/// conversation, with the link preview the person kept (docs/link-previews.md). Returns once
/// the message is in the outbox; delivery progress comes as status events.
#[tauri::command]
pub async fn send_message(
    app: AppState<'_>,
    contact: String,
    body: String,
    reply_to: Option<String>,
    preview: Option<LinkPreview>,
) -> UiResult<String> {
    let c = account(&contact)?;
    if body.trim().is_empty() {
        return Err(UiError::new("empty", "nothing to send"));
    }
    if body.len() > MAX_TEXT {
        return Err(tessera_core::CoreError::TooLong.into());
    }
    let draft = Draft {
        body,
        reply_to: reply_to.as_deref().map(message_id).transpose()?,
        preview,
    };
    let id = app.engine()?.send_draft(&c, draft).await?;
    Ok(tessera_core::id_hex(&id))
}

/// The preview of `text`'s first https link, fetched now through Tor (`None`: link previews
/// are off, or there is no such link); the page shows it in the composer before sending.
#[tauri::command]
pub async fn link_preview(app: AppState<'_>, text: String) -> UiResult<Option<LinkPreview>> {
    Ok(app.engine()?.link_preview(&text).await?)
}

/// Edits a message we sent (within 24 hours).
#[tauri::command]
pub async fn edit_message(app: AppState<'_>, id: String, body: String) -> UiResult<()> {
    if body.trim().is_empty() {
        return Err(UiError::new(
            "empty",
            "an edit cannot be empty; delete the message instead",
        ));
    }
    Ok(app.engine()?.edit_message(&message_id(&id)?, &body).await?)
}

/// Deletes a message here, or for everyone (ours, within 24 hours).
#[tauri::command]
pub async fn delete_message(app: AppState<'_>, id: String, everyone: bool) -> UiResult<()> {
    let scope = if everyone {
        DeleteFor::Everyone
    } else {
        DeleteFor::Me
    };
    Ok(app
        .engine()?
        .delete_message(&message_id(&id)?, scope)
        .await?)
}

/// Sets our reaction to a message (`None` or empty: removes it).
#[tauri::command]
pub async fn react(app: AppState<'_>, id: String, emoji: Option<String>) -> UiResult<()> {
    let emoji = emoji.filter(|e| !e.is_empty());
    Ok(app
        .engine()?
        .react(&message_id(&id)?, emoji.as_deref())
        .await?)
}

/// A change to a conversation's own settings (`docs/conversations.md`); what is left out
/// stays as it is.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationChange {
    archived: Option<bool>,
    pinned: Option<bool>,
    /// ms; 0 unmutes, `null` leaves it.
    muted_until: Option<i64>,
    /// Seconds from now, or -1 for always (the page's mute choices).
    mute_for: Option<i64>,
    marked_unread: Option<bool>,
    /// `""` clears the draft.
    draft: Option<String>,
}

/// Changes the settings of the conversation with `contact`.
#[tauri::command]
pub async fn update_conversation(
    app: AppState<'_>,
    contact: String,
    change: ConversationChange,
) -> UiResult<()> {
    let c = account(&contact)?;
    let engine = app.engine()?;
    let now = i64::try_from(engine.now_ms()).unwrap_or(i64::MAX);
    engine.update_conversation(&c, |s| {
        if let Some(v) = change.archived {
            s.archived = v;
        }
        if let Some(v) = change.pinned {
            s.pinned = v;
        }
        if let Some(v) = change.muted_until {
            s.muted_until = v;
        }
        if let Some(secs) = change.mute_for {
            s.muted_until = if secs < 0 {
                i64::MAX
            } else {
                now.saturating_add(secs.saturating_mul(1_000))
            };
        }
        if let Some(v) = change.marked_unread {
            s.marked_unread = v;
        }
        if let Some(d) = change.draft {
            s.draft = (!d.is_empty()).then_some(d);
        }
    })?;
    Ok(())
}

/// Deletes every message of the conversation with `contact` here.
#[tauri::command]
pub async fn delete_conversation(app: AppState<'_>, contact: String) -> UiResult<()> {
    Ok(app.engine()?.delete_conversation(&account(&contact)?)?)
}

/// Opens the note to self (docs/conversations.md): returns the id that names it (our own
/// account id) wherever a contact is taken.
#[tauri::command]
pub async fn open_note_to_self(app: AppState<'_>) -> UiResult<String> {
    let me = app.engine()?.open_note_to_self()?;
    Ok(tessera_crypto::AccountId(me.account_id).to_string())
}

/// Blocks or unblocks `contact`.
#[tauri::command]
pub async fn set_blocked(app: AppState<'_>, contact: String, blocked: bool) -> UiResult<()> {
    let c = account(&contact)?;
    let engine = app.engine()?;
    if blocked {
        Ok(engine.block(&c)?)
    } else {
        Ok(engine.unblock(&c)?)
    }
}

/// Removes `contact` and the conversation here.
#[tauri::command]
pub async fn remove_contact(app: AppState<'_>, contact: String) -> UiResult<()> {
    Ok(app.engine()?.remove_contact(&account(&contact)?)?)
}

/// Tells `contact` we started or stopped typing (nothing is sent when typing indicators are
/// off).
#[tauri::command]
pub async fn send_typing(app: AppState<'_>, contact: String, on: bool) -> UiResult<()> {
    Ok(app.engine()?.send_typing(&account(&contact)?, on).await?)
}
