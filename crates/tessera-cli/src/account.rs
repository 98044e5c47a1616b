//! `tessera-cli account`: leaving for good (`docs/leaving.md`).

use clap::Subcommand;
use serde_json::{Value, json};

use super::{Cli, CliError, data_dir, unlock};

#[derive(Debug, Subcommand)]
pub(crate) enum AccountCommand {
    /// Delete the account for good: contacts are told, the relay deletes its mailboxes,
    /// prekeys and devices (and never registers it again), then everything here is wiped.
    /// Needs the password and a card tap. Irreversible; see docs/leaving.md
    Delete {
        /// Do not ask (needed when there is no terminal to ask on)
        #[arg(long)]
        yes: bool,
    },
}

pub(crate) async fn run(
    cli: &Cli,
    command: &AccountCommand,
    out: impl Fn(Value, String),
) -> Result<(), CliError> {
    match command {
        AccountCommand::Delete { yes } => {
            let dir = data_dir(cli)?;
            if !yes {
                use std::io::IsTerminal as _;
                if !std::io::stdin().is_terminal() {
                    return Err(CliError::Usage(
                        "account delete asks for confirmation on a terminal; pass --yes to \
                         delete without asking"
                            .into(),
                    ));
                }
                eprint!(
                    "This deletes the account in {} at its relay and here, for good. Type DELETE: ",
                    dir.display()
                );
                let mut answer = String::new();
                std::io::stdin()
                    .read_line(&mut answer)
                    .map_err(|e| CliError::Usage(format!("cannot read the answer: {e}")))?;
                if answer.trim() != "DELETE" {
                    return Err(CliError::Usage("not deleted".into()));
                }
            }
            // The password and the card, as for every command.
            let engine = unlock(cli).await?;
            let left = engine.delete_account().await?;
            let ms = left.wipe.keys_destroyed_in.as_secs_f64() * 1000.0;
            let problems: Vec<String> = left.wipe.problems.iter().map(|p| p.to_string()).collect();
            out(
                json!({
                    "deleted": true,
                    "told": left.told,
                    "not_told": left.not_told,
                    "keys_destroyed_ms": ms,
                    "removed": left.wipe.removed,
                    "problems": problems,
                }),
                format!(
                    "account deleted at the relay and here: {} contact(s) told{}; keys destroyed \
                     in {ms:.1} ms{}",
                    left.told,
                    if left.not_told > 0 {
                        format!(", {} could not be told", left.not_told)
                    } else {
                        String::new()
                    },
                    if problems.is_empty() {
                        String::new()
                    } else {
                        format!("; problems: {}", problems.join("; "))
                    }
                ),
            );
        }
    }
    Ok(())
}
