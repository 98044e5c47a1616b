//! The way out for application updates: only through this account's Tor client
//! (`docs/updates.md`). The updater itself (Tauri's plugin, in the desktop app) gets a SOCKS5
//! bridge into Tor for one check or one download; there is no direct path.

use tessera_net::{SocksBridge, Transport};

use super::Engine;
use crate::CoreError;

/// Setting name: `"off"` stops update checks; anything else (or unset) allows them.
pub const UPDATE_CHECKS_SETTING: &str = "update_checks";

impl Engine {
    /// Whether the person allows update checks (on unless turned off).
    pub fn update_checks(&self) -> Result<bool, CoreError> {
        self.with(|u| Ok(u.vault.setting(UPDATE_CHECKS_SETTING)?.as_deref() != Some("off")))
    }

    /// Allows or stops update checks.
    pub fn set_update_checks(&self, on: bool) -> Result<(), CoreError> {
        self.with(|u| {
            Ok(u.vault
                .set_setting(UPDATE_CHECKS_SETTING, if on { "on" } else { "off" })?)
        })
    }

    /// A SOCKS5 bridge into this account's Tor client for one update check or download; it
    /// stops when dropped. [`CoreError::UpdatesOff`] when the person turned checks off,
    /// [`CoreError::UpdatesNeedTor`] on the direct transport: updates never go another way.
    pub async fn update_proxy(&self) -> Result<SocksBridge, CoreError> {
        if !self.update_checks()? {
            return Err(CoreError::UpdatesOff);
        }
        let transport = self.with(|u| Ok(u.me.transport.clone()))?;
        let Transport::Tor(tor) = transport else {
            return Err(CoreError::UpdatesNeedTor);
        };
        SocksBridge::start(tor)
            .await
            .map_err(|e| CoreError::Net(tessera_net::ClientError::Net(e)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{account, relay};
    use super::*;

    /// On by default; off stops it before anything starts; a direct account never gets a way
    /// out (the test accounts connect directly).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn updates_need_tor_and_can_be_turned_off() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay().await;
        let (alice, _) = account(dir.path(), &relay, "alice").await;
        assert!(alice.update_checks().unwrap());
        assert!(matches!(
            alice.update_proxy().await,
            Err(CoreError::UpdatesNeedTor)
        ));
        alice.set_update_checks(false).unwrap();
        assert!(!alice.update_checks().unwrap());
        assert!(matches!(
            alice.update_proxy().await,
            Err(CoreError::UpdatesOff)
        ));
        alice.set_update_checks(true).unwrap();
        assert!(alice.update_checks().unwrap());
        assert_eq!(CoreError::UpdatesNeedTor.code(), "updates_need_tor");
        assert_eq!(CoreError::UpdatesOff.code(), "updates_off");
    }
}
