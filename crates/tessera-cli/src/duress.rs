//! `tessera-cli duress`: the duress password (`docs/duress.md`).

use clap::Subcommand;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Cli, CliError, password, tap, unlock};

#[derive(Debug, Subcommand)]
pub(crate) enum DuressCommand {
    /// Set the duress password (TESSERA_DURESS_PASSWORD or a prompt, asked twice). Typed at
    /// unlock with the card instead of the password, it silently wipes this account and opens
    /// a new, empty one. Needs the password and a card tap
    Set {
        /// The name the empty account shows (default: this account's name)
        #[arg(long, value_name = "NAME")]
        decoy_name: Option<String>,
    },
    /// Clear the duress password (needs the password and a card tap)
    Clear,
    /// Whether a duress password is set
    Status,
}

fn duress_password() -> Result<Zeroizing<Vec<u8>>, CliError> {
    if let Some(p) = std::env::var_os("TESSERA_DURESS_PASSWORD") {
        return Ok(Zeroizing::new(p.into_encoded_bytes()));
    }
    let read = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(|e| CliError::Usage(format!("cannot read the duress password: {e}")))
    };
    let p = read("Duress password: ")?;
    if *p != *read("Duress password again: ")? {
        return Err(CliError::Usage("the duress passwords differ".into()));
    }
    Ok(Zeroizing::new(p.as_bytes().to_vec()))
}

pub(crate) async fn run(
    cli: &Cli,
    command: &DuressCommand,
    out: impl Fn(Value, String),
) -> Result<(), CliError> {
    let engine = unlock(cli).await?;
    match command {
        DuressCommand::Status => {
            let set = engine.duress_configured()?;
            out(
                json!({"duress_password": set}),
                format!("duress password: {}", if set { "set" } else { "not set" }),
            );
        }
        DuressCommand::Set { decoy_name } => {
            let duress = duress_password()?;
            if duress.is_empty() {
                return Err(CliError::Usage("the duress password is empty".into()));
            }
            // The unlock recorded this read's counter: rewriting the key file needs a fresh one.
            let pw = password(false)?;
            let card = tap(cli, &pw).await?.map(|t| t.factor);
            engine
                .set_duress(pw, card, duress, decoy_name.clone())
                .await?;
            out(
                json!({"ok": true, "duress_password": true}),
                "duress password set: typed at unlock instead of the password, it wipes this \
                 account and opens an empty one"
                    .into(),
            );
        }
        DuressCommand::Clear => {
            let pw = password(false)?;
            let card = tap(cli, &pw).await?.map(|t| t.factor);
            engine.clear_duress(pw, card).await?;
            out(
                json!({"ok": true, "duress_password": false}),
                "duress password cleared".into(),
            );
        }
    }
    Ok(())
}
