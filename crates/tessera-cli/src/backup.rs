//! `tessera-cli backup`: encrypted backups, scheduled backups and restoring one
//! (`docs/backup.md`).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use serde_json::{Value, json};
use tessera_core::card;
use tessera_core::clock::SystemClock;
use tessera_core::{CoreError, Engine, KdfParams, OsKeyring, RecoveryKey, RestoreOptions};
use zeroize::Zeroizing;

use super::{Cli, CliError, data_dir, hand_over, hex, password, unlock};

#[derive(Debug, Subcommand)]
pub(crate) enum BackupCommand {
    /// Write an encrypted backup of the account (identity, contacts, settings, history) to FILE.
    /// The first backup makes the recovery key and prints it once: write it down, it is the only
    /// way to open the backup. Later backups use the same key.
    Create {
        /// Where to write the backup (replaced if it exists)
        file: PathBuf,
        /// Make a new recovery key (backups made before keep needing the old one)
        #[arg(long)]
        new_key: bool,
    },
    /// Restore an account from FILE into an empty data directory, with a new password
    /// (TESSERA_PASSWORD or a prompt) and the card on the reader (or --no-card). The recovery key
    /// comes from TESSERA_RECOVERY_KEY or a prompt. Contacts are told of the new keys.
    Restore {
        /// The backup file
        file: PathBuf,
        /// Restore without the card factor (password and keyring only)
        #[arg(long)]
        no_card: bool,
        /// Argon2id memory in MiB for the new password (default 256; at least 19)
        #[arg(long, value_name = "MIB")]
        kdf_memory_mib: Option<u32>,
    },
    /// Scheduled backups: every DAYS days into FOLDER while the account is open (the newest
    /// three are kept), or --off
    Schedule {
        /// The folder (an external drive, a synchronised folder)
        #[arg(long, value_name = "FOLDER", required_unless_present = "off")]
        folder: Option<PathBuf>,
        /// Days between backups
        #[arg(long, value_name = "DAYS", default_value_t = 7)]
        every_days: u32,
        /// Turn scheduled backups off
        #[arg(long, conflicts_with = "folder")]
        off: bool,
    },
}

/// The recovery key, with the warning that goes with it, for the terminal.
fn shown(key: &RecoveryKey) -> String {
    format!(
        "recovery key (shown once; write it down and keep it apart from the laptop and the \
         card):\n\n    {}\n\n{}",
        key.grouped().as_str(),
        qr(key.grouped().as_str())
    )
}

/// The recovery key as a QR code in the terminal (two rows of modules per line).
fn qr(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

fn recovery_key() -> Result<RecoveryKey, CliError> {
    let text = match std::env::var("TESSERA_RECOVERY_KEY") {
        Ok(t) => Zeroizing::new(t),
        Err(_) => Zeroizing::new(
            rpassword::prompt_password("Recovery key: ")
                .map_err(|e| CliError::Usage(format!("cannot read the recovery key: {e}")))?,
        ),
    };
    Ok(RecoveryKey::parse(&text).map_err(CoreError::from)?)
}

pub(crate) async fn run(
    cli: &Cli,
    command: &BackupCommand,
    out: impl Fn(Value, String),
) -> Result<(), CliError> {
    match command {
        BackupCommand::Create { file, new_key } => {
            let engine = unlock(cli).await?;
            let made = engine.create_backup(file, *new_key).await?;
            let key = made.recovery_key.as_ref().map(|k| k.grouped());
            out(
                json!({
                    "ok": true,
                    "file": made.path.display().to_string(),
                    "bytes": made.bytes,
                    "created_ms": made.created_ms,
                    "recovery_key": key.as_deref().map(String::as_str),
                }),
                format!(
                    "backup written: {} ({} bytes){}",
                    made.path.display(),
                    made.bytes,
                    made.recovery_key
                        .as_ref()
                        .map(|k| format!("\n{}", shown(k)))
                        .unwrap_or_else(|| "\nencrypted with your recovery key".into())
                ),
            );
        }
        BackupCommand::Schedule {
            folder,
            every_days,
            off,
        } => {
            let engine = unlock(cli).await?;
            let folder = if *off { None } else { folder.as_deref() };
            let recovery = engine.set_backup_schedule(folder, *every_days).await?;
            let key = recovery.as_ref().map(|k| k.grouped());
            out(
                json!({
                    "ok": true,
                    "folder": folder.map(|f| f.display().to_string()),
                    "every_days": folder.map(|_| *every_days),
                    "recovery_key": key.as_deref().map(String::as_str),
                }),
                match folder {
                    None => "scheduled backups off".into(),
                    Some(f) => format!(
                        "a backup every {every_days} days into {}{}",
                        f.display(),
                        recovery
                            .as_ref()
                            .map(|k| format!("\n{}", shown(k)))
                            .unwrap_or_default()
                    ),
                },
            );
        }
        BackupCommand::Restore {
            file,
            no_card,
            kdf_memory_mib,
        } => {
            let dir = data_dir(cli)?;
            let backup = std::fs::read(file)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
            // The file is checked before anything else is asked for.
            tessera_core::BackupHeader::read(&backup).map_err(CoreError::from)?;
            let recovery_key = recovery_key()?;
            let mut kdf = KdfParams::DEFAULT;
            if let Some(m) = kdf_memory_mib {
                kdf.memory_kib = m.saturating_mul(1024);
            }
            let card = if *no_card {
                None
            } else {
                let reader = cli.reader.clone();
                let t =
                    tokio::task::spawn_blocking(move || card::tap(&OsKeyring, reader.as_deref()))
                        .await
                        .map_err(|e| CliError::Usage(e.to_string()))?
                        .map_err(CoreError::Card)?;
                Some(t.factor)
            };
            let card_uid = card.as_ref().map(|c| hex(&c.uid));
            let engine = Engine::restore(
                RestoreOptions {
                    dir,
                    password: password(true)?,
                    kdf,
                    card,
                    backup,
                    recovery_key,
                },
                Arc::new(OsKeyring),
                Arc::new(SystemClock),
            )
            .await?;
            let id = engine.account_id()?.to_string();
            let contacts = engine.contacts()?.len();
            // The relay-side half: new keys registered, every contact told. Without the relay it
            // happens at the next command that connects.
            let told = match engine.connect().await {
                Ok(_) => engine.finish_restore().await.map(|()| true),
                Err(e) => Err(e),
            };
            let pending = match told {
                Ok(_) => {
                    hand_over(&engine).await;
                    false
                }
                Err(e) => {
                    tracing::info!(error = %e, "relay not reachable; keys are replaced at the next connection");
                    true
                }
            };
            out(
                json!({"ok": true, "account_id": id, "contacts": contacts, "card": card_uid,
                       "relay_pending": pending}),
                format!(
                    "account {id} restored with {contacts} contacts{}",
                    if pending {
                        "; the relay could not be reached: new keys are registered and contacts \
                         told at the next sync"
                    } else {
                        "; new keys registered and contacts told"
                    }
                ),
            );
        }
    }
    Ok(())
}
