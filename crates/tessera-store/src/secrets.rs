//! Where the vault's device secret lives: the OS keyring, never a file.

use std::collections::HashMap;
use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::VaultError;

/// A place that keeps one 32-byte secret per vault.
pub trait SecretStore: Send + Sync {
    /// The secret for `vault_id`, or `None` if there is none.
    fn get(&self, vault_id: &[u8; 16]) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError>;
    /// Stores (or replaces) the secret for `vault_id`.
    fn put(&self, vault_id: &[u8; 16], secret: &[u8; 32]) -> Result<(), VaultError>;
    /// Removes the secret for `vault_id` (nothing if there is none).
    fn delete(&self, vault_id: &[u8; 16]) -> Result<(), VaultError>;
}

/// The keyring entry's service name.
pub const KEYRING_SERVICE: &str = "tessera";

/// The user name of a vault's keyring entry: `vault-<id hex>`.
pub fn keyring_user(vault_id: &[u8; 16]) -> String {
    let hex: String = vault_id.iter().map(|b| format!("{b:02x}")).collect();
    format!("vault-{hex}")
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
    fn entry(vault_id: &[u8; 16]) -> Result<keyring::Entry, VaultError> {
        keyring::Entry::new(KEYRING_SERVICE, &keyring_user(vault_id)).map_err(keyring_error)
    }
}

impl SecretStore for OsKeyring {
    fn get(&self, vault_id: &[u8; 16]) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError> {
        match Self::entry(vault_id)?.get_secret() {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                if bytes.len() != 32 {
                    return Err(VaultError::Keyring(
                        "the keyring entry for this vault is not a Tessera device secret".into(),
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

    fn put(&self, vault_id: &[u8; 16], secret: &[u8; 32]) -> Result<(), VaultError> {
        Self::entry(vault_id)?
            .set_secret(secret)
            .map_err(keyring_error)
    }

    fn delete(&self, vault_id: &[u8; 16]) -> Result<(), VaultError> {
        match Self::entry(vault_id)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(keyring_error(e)),
        }
    }
}

/// Device secrets kept in this process's memory only (lost when it exits): for tests of the
/// layers above the keyring and for benchmarks, never for a user's vault.
#[derive(Default)]
pub struct MemorySecrets(Mutex<HashMap<[u8; 16], Zeroizing<[u8; 32]>>>);

impl SecretStore for MemorySecrets {
    fn get(&self, vault_id: &[u8; 16]) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError> {
        let map = self
            .0
            .lock()
            .map_err(|_| VaultError::Keyring("secret store poisoned".into()))?;
        Ok(map.get(vault_id).cloned())
    }

    fn put(&self, vault_id: &[u8; 16], secret: &[u8; 32]) -> Result<(), VaultError> {
        let mut map = self
            .0
            .lock()
            .map_err(|_| VaultError::Keyring("secret store poisoned".into()))?;
        map.insert(*vault_id, Zeroizing::new(*secret));
        Ok(())
    }

    fn delete(&self, vault_id: &[u8; 16]) -> Result<(), VaultError> {
        let mut map = self
            .0
            .lock()
            .map_err(|_| VaultError::Keyring("secret store poisoned".into()))?;
        map.remove(vault_id);
        Ok(())
    }
}
