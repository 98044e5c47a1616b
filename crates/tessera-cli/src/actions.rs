//! `tessera-cli edit|delete|react` and what `history` shows of them
//! (`docs/message-actions.md`).

use clap::Args;
use serde_json::{Value, json};
use tessera_core::{CoreError, DeleteFor, Engine, Message};
use tessera_core::{parse_timer, timer_name};

use super::{Cli, CliError, account_text, hand_over, hex, unhex, unlock};

/// A message id as the CLI prints it: 32 hex digits.
pub(crate) fn message_id(text: &str) -> Result<[u8; 16], CliError> {
    unhex(text)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| CliError::Usage("a message id is 32 hex digits".into()))
}

/// `edit ID TEXT`.
#[derive(Debug, Args)]
pub(crate) struct EditArgs {
    /// The message id (`history --json` shows it)
    id: String,
    /// The new text
    text: String,
}

/// `delete ID [--everyone]`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The message id
    id: String,
    /// Delete it for everyone (your own message, within 24 hours), not only here
    #[arg(long)]
    everyone: bool,
}

/// `timer CONTACT [DURATION]`.
#[derive(Debug, Args)]
pub(crate) struct TimerArgs {
    /// Contact name or account id; `self`: the note to self
    contact: String,
    /// off, 30s, 5m, 1h, 8h, 1d, 1w or 4w (without it: show the timer)
    duration: Option<String>,
}

/// `react ID EMOJI` or `react ID --remove`.
#[derive(Debug, Args)]
pub(crate) struct ReactArgs {
    /// The message id
    id: String,
    /// The reaction (one emoji)
    #[arg(required_unless_present = "remove")]
    emoji: Option<String>,
    /// Remove your reaction
    #[arg(long, conflicts_with = "emoji")]
    remove: bool,
}

/// The message as `--json` shows it after an action.
fn changed(engine: &Engine, id: &[u8; 16]) -> Result<Value, CliError> {
    let m = engine.message(id)?;
    Ok(json!({"ok": true, "message_id": hex(id),
              "kind": m.as_ref().map(|m| m.kind.clone()),
              "body": m.as_ref().map(|m| m.body.clone()),
              "edited": m.and_then(|m| m.edited)}))
}

pub(crate) async fn edit(
    cli: &Cli,
    args: &EditArgs,
    out: impl Fn(Value, String),
) -> Result<(), CliError> {
    let id = message_id(&args.id)?;
    let engine = unlock(cli).await?;
    engine.edit_message(&id, &args.text).await?;
    hand_over(&engine).await;
    out(changed(&engine, &id)?, format!("edited {}", hex(&id)));
    Ok(())
}

pub(crate) async fn delete(
    cli: &Cli,
    args: &DeleteArgs,
    out: impl Fn(Value, String),
) -> Result<(), CliError> {
    let id = message_id(&args.id)?;
    let engine = unlock(cli).await?;
    let scope = if args.everyone {
        DeleteFor::Everyone
    } else {
        DeleteFor::Me
    };
    engine.delete_message(&id, scope).await?;
    hand_over(&engine).await;
    let text = if args.everyone {
        format!("deleted {} for everyone", hex(&id))
    } else {
        format!("deleted {} here", hex(&id))
    };
    out(changed(&engine, &id)?, text);
    Ok(())
}

pub(crate) async fn react(
    cli: &Cli,
    args: &ReactArgs,
    out: impl Fn(Value, String),
) -> Result<(), CliError> {
    let id = message_id(&args.id)?;
    let engine = unlock(cli).await?;
    let emoji = if args.remove {
        None
    } else {
        args.emoji.as_deref()
    };
    engine.react(&id, emoji).await?;
    hand_over(&engine).await;
    let text = match emoji {
        Some(e) => format!("reacted {e} to {}", hex(&id)),
        None => format!("removed the reaction to {}", hex(&id)),
    };
    out(changed(&engine, &id)?, text);
    Ok(())
}

pub(crate) async fn timer(
    cli: &Cli,
    args: &TimerArgs,
    out: impl Fn(Value, String),
) -> Result<(), CliError> {
    let seconds = args
        .duration
        .as_deref()
        .map(|d| {
            parse_timer(d).ok_or_else(|| {
                CliError::Usage("the timer is off, 30s, 5m, 1h, 8h, 1d, 1w or 4w".into())
            })
        })
        .transpose()?;
    let engine = unlock(cli).await?;
    let c = super::conversation_with(&engine, &args.contact)?;
    if let Some(s) = seconds {
        engine.set_timer(&c.account_id, s).await?;
        hand_over(&engine).await;
    }
    let now = engine.timer(&c.account_id)?;
    out(
        json!({"ok": true, "contact": c.name, "seconds": now, "timer": timer_name(now)}),
        format!("disappearing messages with {}: {}", c.name, timer_name(now)),
    );
    Ok(())
}

/// What `history` adds to a message: its reactions (ours as `me`).
pub(crate) fn reactions_json(engine: &Engine, m: &Message) -> Result<Value, CliError> {
    let me = engine.account_id()?.0;
    let list: Vec<Value> = engine
        .reactions(&m.message_id)?
        .into_iter()
        .map(|r| {
            let who = if r.reactor == me {
                "me".to_string()
            } else {
                account_text(&r.reactor)
            };
            json!({"reactor": who, "emoji": r.emoji})
        })
        .collect();
    Ok(Value::Array(list))
}

/// One line of `history` text: the text, or what became of it, with reply, edit and
/// reactions marked.
pub(crate) fn history_line(m: &Message, who: &str, reactions: &Value) -> String {
    let mut line = match m.kind.as_str() {
        "deleted" => format!("{who}: (message deleted)"),
        "timer" => format!(
            "{who} set disappearing messages to {}",
            timer_name(m.body.parse().unwrap_or(0))
        ),
        _ => format!("{who}: {}", m.body),
    };
    if let Some(r) = &m.reply_to {
        line = format!("{who} (reply to {}): {}", &hex(r)[..8], m.body);
    }
    if m.edited.is_some() {
        line += " (edited)";
    }
    if let Some(s) = m.expires_in {
        line += &format!(
            " (disappears: {})",
            timer_name(u32::try_from(s).unwrap_or(0))
        );
    }
    if let Some(list) = reactions.as_array()
        && !list.is_empty()
    {
        let shown: Vec<&str> = list.iter().filter_map(|r| r["emoji"].as_str()).collect();
        line += &format!(" [{}]", shown.join(" "));
    }
    line
}

/// `attachment download ID` and `attachment save ID PATH` (docs/attachments.md).
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AttachmentCommand {
    /// Download a received file now (those up to the automatic limit come with `sync`)
    Download {
        /// The message id
        id: String,
    },
    /// Write a file, decrypted, to PATH (downloading it first if needed)
    Save {
        /// The message id
        id: String,
        /// Where to write it (replaced if it exists)
        path: std::path::PathBuf,
    },
}

pub(crate) async fn attachment(
    cli: &Cli,
    command: &AttachmentCommand,
    out: impl Fn(Value, String),
) -> Result<(), CliError> {
    let engine = unlock(cli).await?;
    match command {
        AttachmentCommand::Download { id } => {
            let id = message_id(id)?;
            engine.download_attachment(&id).await?;
            let info = engine.attachment(&id)?.ok_or(CoreError::UnknownMessage)?;
            out(
                json!({"ok": true, "state": info.state.as_str(), "size": info.size}),
                format!(
                    "{} ({} bytes): {}",
                    info.name,
                    info.size,
                    info.state.as_str()
                ),
            );
        }
        AttachmentCommand::Save { id, path } => {
            let id = message_id(id)?;
            engine.download_attachment(&id).await?;
            let size = engine.save_attachment(&id, path)?;
            out(
                json!({"ok": true, "path": path, "size": size}),
                format!("saved {size} bytes to {}", path.display()),
            );
        }
    }
    Ok(())
}
