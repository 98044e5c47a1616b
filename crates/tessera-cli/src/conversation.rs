//! `tessera-cli conversation …` and `read-receipts` (`docs/conversations.md`).

use clap::Subcommand;
use serde_json::{Value, json};
use tessera_core::{ConversationSettings, Engine, parse_timer};

use super::{Cli, CliError, unlock};

#[derive(Debug, Subcommand)]
pub(crate) enum ConversationCommand {
    /// Move the conversation out of the main list (a new message brings it back)
    Archive {
        /// Contact name or account id; `self`: the note to self
        contact: String,
    },
    /// Bring an archived conversation back to the main list
    Unarchive {
        /// Contact name or account id; `self`: the note to self
        contact: String,
    },
    /// Keep the conversation at the top of the list
    Pin {
        /// Contact name or account id; `self`: the note to self
        contact: String,
    },
    /// Stop keeping it at the top
    Unpin {
        /// Contact name or account id; `self`: the note to self
        contact: String,
    },
    /// No notifications for this conversation, for a while (1h, 8h, 1d, 1w) or always
    Mute {
        /// Contact name or account id; `self`: the note to self
        contact: String,
        /// How long: 1h, 8h, 1d, 1w or always
        #[arg(long = "for", default_value = "always")]
        duration: String,
    },
    /// Notifications again
    Unmute {
        /// Contact name or account id; `self`: the note to self
        contact: String,
    },
    /// Show the conversation as unread again
    Unread {
        /// Contact name or account id; `self`: the note to self
        contact: String,
    },
    /// Delete every message of the conversation here (the contact stays; nothing is sent)
    Delete {
        /// Contact name or account id; `self`: the note to self
        contact: String,
    },
    /// The conversation's settings
    Show {
        /// Contact name or account id; `self`: the note to self
        contact: String,
    },
}

fn settings_json(name: &str, s: &ConversationSettings, muted: bool) -> Value {
    json!({"contact": name, "archived": s.archived, "pinned": s.pinned,
           "muted": muted, "muted_until": s.muted_until, "marked_unread": s.marked_unread,
           "draft": s.draft.is_some()})
}

/// `always`, or one of the timer durations from an hour up, as ms from `now`.
fn mute_until(engine: &Engine, duration: &str) -> Result<i64, CliError> {
    if duration == "always" {
        return Ok(i64::MAX);
    }
    let seconds = parse_timer(duration)
        .filter(|s| *s >= 3_600)
        .ok_or_else(|| CliError::Usage("mute for 1h, 8h, 1d, 1w, 4w or always".into()))?;
    let now = i64::try_from(engine.now_ms()).unwrap_or(i64::MAX);
    Ok(now.saturating_add(i64::from(seconds) * 1_000))
}

pub(crate) async fn run(
    cli: &Cli,
    command: &ConversationCommand,
    out: impl Fn(Value, String),
) -> Result<(), CliError> {
    use ConversationCommand as C;
    let contact = match command {
        C::Archive { contact }
        | C::Unarchive { contact }
        | C::Pin { contact }
        | C::Unpin { contact }
        | C::Mute { contact, .. }
        | C::Unmute { contact }
        | C::Unread { contact }
        | C::Delete { contact }
        | C::Show { contact } => contact,
    };
    let engine = unlock(cli).await?;
    let c = super::conversation_with(&engine, contact)?;
    let id = c.account_id;
    let what = match command {
        C::Archive { .. } => Some((
            "archived",
            engine.update_conversation(&id, |s| s.archived = true)?,
        )),
        C::Unarchive { .. } => Some((
            "unarchived",
            engine.update_conversation(&id, |s| s.archived = false)?,
        )),
        C::Pin { .. } => Some((
            "pinned",
            engine.update_conversation(&id, |s| s.pinned = true)?,
        )),
        C::Unpin { .. } => Some((
            "unpinned",
            engine.update_conversation(&id, |s| s.pinned = false)?,
        )),
        C::Mute { duration, .. } => {
            let until = mute_until(&engine, duration)?;
            Some((
                "muted",
                engine.update_conversation(&id, |s| s.muted_until = until)?,
            ))
        }
        C::Unmute { .. } => Some((
            "unmuted",
            engine.update_conversation(&id, |s| s.muted_until = 0)?,
        )),
        C::Unread { .. } => Some((
            "marked unread",
            engine.update_conversation(&id, |s| s.marked_unread = true)?,
        )),
        C::Delete { .. } => {
            engine.delete_conversation(&id)?;
            None
        }
        C::Show { .. } => Some(("", engine.conversation_settings(&id)?)),
    };
    match what {
        Some((done, s)) => {
            let muted = engine.muted(&id)?;
            let text = if done.is_empty() {
                format!(
                    "{}: archived {}, pinned {}, muted {}, marked unread {}",
                    c.name, s.archived, s.pinned, muted, s.marked_unread
                )
            } else {
                format!("conversation with {} {done}", c.name)
            };
            out(settings_json(&c.name, &s, muted), text);
        }
        None => out(
            json!({"ok": true, "contact": c.name, "deleted": true}),
            format!("messages with {} deleted here", c.name),
        ),
    }
    Ok(())
}
