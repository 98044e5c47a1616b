//! The first-run screen's "Restore from a backup" (`docs/backup.md`): the backup file the page
//! read, its recovery key, a new password and the card on the reader make a vault here; the
//! engine then registers new keys with the relay and tells every contact (`finish_restore`, run
//! when the app connects).

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tessera_core::clock::SystemClock;
use tessera_core::{
    BackupHeader, CoreError, Engine, KdfParams, OsKeyring, RecoveryKey, RestoreOptions,
};
use zeroize::Zeroizing;

use crate::commands::{AppState, MIN_SCORE, new_card_read, strength_of};
use crate::error::{UiError, UiResult};

/// What the restore form sends.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreForm {
    /// The backup file's bytes, standard base64.
    backup: String,
    /// The recovery key shown when the backup was made.
    recovery_key: String,
    /// The new password.
    password: String,
    /// Bind the vault to the card on the reader.
    use_card: bool,
}

/// What the restore did, for the page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoredView {
    /// Contacts restored.
    contacts: usize,
}

#[tauri::command]
pub async fn restore_account(app: AppState<'_>, form: RestoreForm) -> UiResult<RestoredView> {
    let RestoreForm {
        backup,
        recovery_key,
        password,
        use_card,
    } = form;
    let password = Zeroizing::new(password.into_bytes());
    let recovery_key = Zeroizing::new(recovery_key);
    let backup = base64::engine::general_purpose::STANDARD
        .decode(backup.trim())
        .map_err(|_| CoreError::Backup(tessera_core::BackupError::NotABackup))?;
    // The file first, then the key, then the password: each refusal says what to fix.
    BackupHeader::read(&backup).map_err(CoreError::from)?;
    let recovery_key = RecoveryKey::parse(&recovery_key).map_err(CoreError::from)?;
    if strength_of(std::str::from_utf8(&password).unwrap_or_default(), "").score < MIN_SCORE {
        return Err(UiError::new(
            "weak_password",
            "the password is too easy to guess",
        ));
    }
    let (card, reader) = new_card_read(&app, use_card).await?;
    let engine = Engine::restore(
        RestoreOptions {
            dir: app.config.data_dir.clone(),
            password,
            kdf: KdfParams::DEFAULT,
            card,
            backup,
            recovery_key,
        },
        Arc::new(OsKeyring),
        Arc::new(SystemClock),
    )
    .await?;
    let contacts = engine.contacts()?.len();
    app.start(engine, reader);
    Ok(RestoredView { contacts })
}
