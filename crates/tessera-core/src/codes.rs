//! Stable, machine-readable names for errors: the CLI prints them as `kind`, the desktop app
//! sends them to its page as `code`. Adding a name is fine; renaming one breaks scripts and the
//! interface's messages.

use tessera_net::NetError;
use tessera_nfc::reader::ReaderError as R;
use tessera_nfc::tag::TagError as T;
use tessera_store::VaultError as V;

use crate::CoreError;
use crate::card::CardError;

impl CoreError {
    /// The error's stable name (`wrong_password`, `wrong_card`, `no_reader`, …).
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::Locked => "locked",
            CoreError::Vault(v) => vault_code(v),
            CoreError::Card(c) => card_code(c),
            CoreError::Net(tessera_net::ClientError::Net(n)) => net_code(n),
            CoreError::Net(_) => "relay",
            CoreError::TransportUnavailable(_) => "transport_unavailable",
            CoreError::UnknownContact => "unknown_contact",
            CoreError::OwnAccount => "own_account",
            CoreError::PreviewNeedsTor => "preview_needs_tor",
            CoreError::UpdatesNeedTor => "updates_need_tor",
            CoreError::UpdatesOff => "updates_off",
            CoreError::File(_) => "file",
            CoreError::Attachment(_) => "attachment_damaged",
            CoreError::NotDownloaded => "not_downloaded",
            CoreError::Preview(_) => "no_preview",
            CoreError::BadInvite => "bad_invite",
            CoreError::NameTaken => "name_taken",
            CoreError::Rejected => "rejected",
            CoreError::ContactDeleted => "contact_deleted",
            CoreError::NotDeleted(_) => "not_deleted",
            CoreError::TooLong => "too_long",
            CoreError::UnknownMessage => "unknown_message",
            CoreError::NotEditable => "not_editable",
            CoreError::BadReaction => "bad_reaction",
            CoreError::BadTimer => "bad_timer",
            CoreError::Blocked => "blocked",
            CoreError::IdentityChanged(_) => "identity_changed",
            CoreError::Call(c) => call_code(c),
            CoreError::Backup(b) => backup_code(b),
            _ => "engine",
        }
    }
}

/// The stable name of a backup error.
pub fn backup_code(e: &tessera_store::backup::BackupError) -> &'static str {
    use tessera_store::backup::BackupError as B;
    match e {
        B::NotABackup => "not_a_backup",
        B::NewerVersion => "backup_newer_version",
        B::BadRecoveryKey => "bad_recovery_key",
        B::WrongKey => "wrong_recovery_key",
        B::Damaged | B::BadParameters => "backup_damaged",
        B::TooLarge => "backup_too_large",
        _ => "backup",
    }
}

/// The stable name of a call error.
pub fn call_code(e: &crate::phone::CallError) -> &'static str {
    use crate::phone::CallError as C;
    match e {
        C::InProgress => "call_in_progress",
        C::NoCall => "no_call",
        C::NoTurn => "no_turn",
        C::OutsideTor => "calls_outside_tor",
        _ => "call_media",
    }
}

/// The stable name of a vault error.
pub fn vault_code(e: &V) -> &'static str {
    match e {
        V::WrongFactor => "wrong_password",
        V::DeviceSecretMissing => "device_secret_missing",
        V::Keyring(_) => "keyring_unavailable",
        V::Corrupt | V::KeyFileDamaged => "vault_damaged",
        V::NoVault => "no_vault",
        V::AlreadyExists => "vault_exists",
        V::WrongCard => "wrong_card",
        V::CardReplayed => "card_replayed",
        V::CardRequired => "card_required",
        V::CardAlreadyEnrolled => "card_already_enrolled",
        V::NoCardEnrolled => "no_card_enrolled",
        V::SameCard => "same_card",
        V::DuressSameAsPassword => "duress_same_as_password",
        V::DuressRecordTooLarge { .. } => "duress_settings_too_long",
        _ => "vault",
    }
}

/// The stable name of a transport error.
pub fn net_code(e: &NetError) -> &'static str {
    match e {
        NetError::TorBootstrap(_) => "tor_unavailable",
        NetError::TorConnect(_) => "tor_connect",
        NetError::TorConfig(_) => "tor_config",
        NetError::PinMismatch { .. } => "pin_mismatch",
        _ => "relay",
    }
}

/// The stable name of a card error.
pub fn card_code(e: &CardError) -> &'static str {
    match e {
        CardError::Tag(T::Reader(R::NoService)) => "card_service_unavailable",
        CardError::Tag(T::Reader(R::NoReader)) => "no_reader",
        CardError::Tag(T::Reader(R::NoCard)) => "no_card",
        CardError::Tag(T::Reader(R::CardRemoved)) => "card_removed",
        CardError::Tag(T::Reader(R::Busy)) => "card_busy",
        CardError::Tag(T::NotFactoryFresh) => "not_factory_fresh",
        CardError::Tag(T::WrongCurrentKey) => "wrong_current_key",
        CardError::Tag(T::WrongCard) => "wrong_card",
        CardError::Tag(T::NotNtag424) => "not_ntag424",
        CardError::Tag(T::Card(tessera_nfc::NfcError::Card(_))) => "card_refused",
        CardError::NotProvisioned => "card_not_provisioned",
        CardError::KeysMissing => "card_keys_missing",
        CardError::Vault(_) => "keyring_unavailable",
        _ => "card",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_name_the_failures_the_interface_tells_apart() {
        assert_eq!(CoreError::Vault(V::WrongFactor).code(), "wrong_password");
        assert_eq!(CoreError::Vault(V::WrongCard).code(), "wrong_card");
        assert_eq!(
            CoreError::Card(CardError::Tag(T::WrongCard)).code(),
            "wrong_card"
        );
        assert_eq!(
            CoreError::Card(CardError::Tag(T::Reader(R::NoReader))).code(),
            "no_reader"
        );
        assert_eq!(
            CoreError::Card(CardError::Tag(T::Reader(R::NoCard))).code(),
            "no_card"
        );
        assert_eq!(CoreError::Locked.code(), "locked");
        assert_eq!(
            CoreError::Net(tessera_net::ClientError::Net(NetError::TorBootstrap(
                "x".into()
            )))
            .code(),
            "tor_unavailable"
        );
    }
}
