//! Where the vault's device secret and the card's master key live: the OS keyring, never a
//! file.

use std::collections::HashMap;
use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::VaultError;

/// A place that keeps named 32-byte secrets: `vault-<id hex>` (a vault's device secret, see
/// [`vault_entry`]) and `card-<uid hex>` (a card's master key, see [`card_entry`]).
pub trait SecretStore: Send + Sync {
    /// The secret named `name`, or `None` if there is none.
    fn get(&self, name: &str) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError>;
    /// Stores (or replaces) the secret named `name`.
    fn put(&self, name: &str, secret: &[u8; 32]) -> Result<(), VaultError>;
    /// Removes the secret named `name` (nothing if there is none).
    fn delete(&self, name: &str) -> Result<(), VaultError>;
}

/// The keyring entry's service name.
pub const KEYRING_SERVICE: &str = "tessera";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The name of a vault's device-secret entry: `vault-<id hex>`.
pub fn vault_entry(vault_id: &[u8; 16]) -> String {
    format!("vault-{}", hex(vault_id))
}

/// The name of a card's master-key entry: `card-<uid hex>`.
pub fn card_entry(uid: &[u8; 7]) -> String {
    format!("card-{}", hex(uid))
}

/// The operating system's keyring: Secret Service over D-Bus on Linux, the Keychain on macOS,
/// the Credential Manager on Windows. Calls block; call them off the async runtime's threads.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsKeyring;

fn keyring_error(e: keyring::Error) -> VaultError {
    VaultError::Keyring(match e {
        keyring::Error::PlatformFailure(_) | keyring::Error::NoStorageAccess(_) => {
            "the OS keyring is not available (on Linux: is a Secret Service such as \
             gnome-keyring running and unlocked on the session bus?)"
                .into()
        }
        other => format!("OS keyring error: {other}"),
    })
}

impl OsKeyring {
    fn entry(name: &str) -> Result<keyring::Entry, VaultError> {
        keyring::Entry::new(KEYRING_SERVICE, name).map_err(keyring_error)
    }
}

impl SecretStore for OsKeyring {
    fn get(&self, name: &str) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError> {
        match Self::entry(name)?.get_secret() {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                if bytes.len() != 32 {
                    return Err(VaultError::Keyring(
                        "a Tessera keyring entry does not hold a 32-byte secret".into(),
                    ));
                }
                let mut out = Zeroizing::new([0u8; 32]);
                out.copy_from_slice(&bytes);
                Ok(Some(out))
            }
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(keyring_error(e)),
        }
    }

    fn put(&self, name: &str, secret: &[u8; 32]) -> Result<(), VaultError> {
        Self::entry(name)?.set_secret(secret).map_err(keyring_error)
    }

    fn delete(&self, name: &str) -> Result<(), VaultError> {
        match Self::entry(name)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(keyring_error(e)),
        }
    }
}

/// Secrets kept in this process's memory only (lost when it exits): for tests of the
/// layers above the keyring and for benchmarks, never for a user's vault.
#[derive(Default)]
pub struct MemorySecrets(Mutex<HashMap<String, Zeroizing<[u8; 32]>>>);

impl SecretStore for MemorySecrets {
    fn get(&self, name: &str) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError> {
        let map = self
            .0
            .lock()
            .map_err(|_| VaultError::Keyring("secret store poisoned".into()))?;
        Ok(map.get(name).cloned())
    }

    fn put(&self, name: &str, secret: &[u8; 32]) -> Result<(), VaultError> {
        let mut map = self
            .0
            .lock()
            .map_err(|_| VaultError::Keyring("secret store poisoned".into()))?;
        map.insert(name.to_owned(), Zeroizing::new(*secret));
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), VaultError> {
        let mut map = self
            .0
            .lock()
            .map_err(|_| VaultError::Keyring("secret store poisoned".into()))?;
        map.remove(name);
        Ok(())
    }
}
