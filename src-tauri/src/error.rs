//! What a failed command sends to the page: `{code, message}`. The code is the engine's stable
//! error name (`wrong_password`, `wrong_card`, `no_reader`, …), so the page words its own
//! message; the message is the engine's text, which never holds a key, a password or a message
//! body.

use serde::Serialize;
use tessera_core::CoreError;

/// A command's failure as the page receives it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UiError {
    /// Stable name of the failure.
    pub code: &'static str,
    /// Human-readable detail (no secrets).
    pub message: String,
}

impl UiError {
    /// A failure of the app itself (not of the engine).
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<CoreError> for UiError {
    fn from(e: CoreError) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<tessera_core::card::CardError> for UiError {
    fn from(e: tessera_core::card::CardError) -> Self {
        CoreError::Card(e).into()
    }
}

/// Result of a command.
pub type UiResult<T> = Result<T, UiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_reach_the_page_with_their_stable_code() {
        let e: UiError = CoreError::Vault(tessera_store::VaultError::WrongFactor).into();
        assert_eq!(e.code, "wrong_password");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["code"], "wrong_password");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}
