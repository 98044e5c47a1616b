//! Signed updates with Tauri's updater plugin, fetched only through the account's Tor client
//! (`docs/updates.md`): check, show what is new, install on request with progress; a bad
//! signature, a version that is not newer, or a build without an update key is refused with
//! its own code.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tauri::ipc::Channel;
use tauri::{AppHandle, Runtime, State};
use tauri_plugin_updater::{Update, UpdaterExt as _};
use url::Url;

use crate::commands::AppState;
use crate::error::{UiError, UiResult};

/// How long a check or a download may take through Tor before it is given up.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Tries of a check or a download that fails to reach the server through Tor.
const ATTEMPTS: u32 = 2;

/// Where updates come from and the key they must be signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSource {
    /// The minisign public key, base64 of the `.pub` file (Tauri's form).
    pub pubkey: String,
    /// The update manifest's URL.
    pub endpoint: Url,
}

impl UpdateSource {
    /// The source given at run time (`TESSERA_UPDATE_PUBKEY` and `TESSERA_UPDATE_ENDPOINT`,
    /// both or neither), else the one built in by the release build; `None` when neither.
    pub fn configured() -> UiResult<Option<Self>> {
        let runtime = (
            std::env::var("TESSERA_UPDATE_PUBKEY").ok(),
            std::env::var("TESSERA_UPDATE_ENDPOINT").ok(),
        );
        let built_in = (
            option_env!("TESSERA_UPDATE_PUBKEY").map(str::to_string),
            option_env!("TESSERA_UPDATE_ENDPOINT").map(str::to_string),
        );
        let (pubkey, endpoint) = match runtime {
            (None, None) => built_in,
            given => given,
        };
        Self::from_parts(pubkey, endpoint)
    }

    fn from_parts(pubkey: Option<String>, endpoint: Option<String>) -> UiResult<Option<Self>> {
        let pubkey = pubkey.filter(|k| !k.trim().is_empty());
        let endpoint = endpoint.filter(|e| !e.trim().is_empty());
        match (pubkey, endpoint) {
            (None, None) => Ok(None),
            (Some(pubkey), Some(endpoint)) => {
                let endpoint = Url::parse(endpoint.trim()).map_err(|e| {
                    UiError::new("update_config", format!("the update address: {e}"))
                })?;
                Ok(Some(Self {
                    pubkey: pubkey.trim().to_string(),
                    endpoint,
                }))
            }
            _ => Err(UiError::new(
                "update_config",
                "an update key and an update address must be given together",
            )),
        }
    }
}

/// The update found by the last check, waiting for the person to install it.
#[derive(Default)]
pub struct Updates {
    pending: tokio::sync::Mutex<Option<Update>>,
}

/// What the page shows about an available update.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateOffer {
    /// The version running now.
    current: String,
    /// The version offered.
    version: String,
    /// When it was published (RFC 3339), if the manifest says.
    date: Option<String>,
    /// Its release notes.
    notes: Option<String>,
}

/// Download progress, sent while installing.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateProgress {
    /// Bytes received so far.
    received: u64,
    /// The bundle's size, when the server says.
    total: Option<u64>,
}

/// Checks for an update through Tor. `None`: this is the newest version.
#[tauri::command]
pub async fn check_update<R: Runtime>(
    app: AppState<'_>,
    handle: AppHandle<R>,
    updates: State<'_, Updates>,
) -> UiResult<Option<UpdateOffer>> {
    let source = UpdateSource::configured()?.ok_or_else(|| {
        UiError::new(
            "updates_not_configured",
            "updates are not configured in this build",
        )
    })?;
    // A Tor circuit fails now and then; a failed fetch is tried once more on a new one.
    let mut attempt = 1;
    let (found, offered) = loop {
        match check_once(&app, &handle, &source).await {
            Err(e) if e.code == "update_unreachable" && attempt < ATTEMPTS => {
                tracing::info!(
                    attempt,
                    "update check failed through Tor; trying a new circuit"
                );
                attempt += 1;
            }
            other => break other?,
        }
    };
    let Some(update) = found else {
        let current = handle.package_info().version.clone();
        return match offered {
            Some(v) if v < current => Err(UiError::new(
                "update_not_newer",
                format!(
                    "the update server offers {v}, which is older than this {current}; refused"
                ),
            )),
            _ => Ok(None),
        };
    };
    let offer = UpdateOffer {
        current: update.current_version.clone(),
        version: update.version.clone(),
        date: update.date.and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        }),
        notes: update.body.clone(),
    };
    *updates.pending.lock().await = Some(update);
    Ok(Some(offer))
}

/// One check through a new bridge: the update on offer, if newer, and the version offered.
async fn check_once<R: Runtime>(
    app: &AppState<'_>,
    handle: &AppHandle<R>,
    source: &UpdateSource,
) -> UiResult<(Option<Update>, Option<semver::Version>)> {
    let bridge = app.engine()?.update_proxy().await?;
    let proxy = ProxyUrl::url(&bridge.proxy_url())?;
    // The plugin's rule is "newer than this one"; the offered version is kept to say why an
    // offer was refused instead of reporting "up to date".
    let offered: Arc<Mutex<Option<semver::Version>>> = Arc::default();
    let seen = offered.clone();
    let updater = handle
        .updater_builder()
        .pubkey(source.pubkey.clone())
        .endpoints(vec![source.endpoint.clone()])
        .map_err(|e| plugin_error(&e, &proxy))?
        .proxy(proxy.0.clone())
        .timeout(TIMEOUT)
        .version_comparator(move |current, release| {
            if let Ok(mut seen) = seen.lock() {
                *seen = Some(release.version.clone());
            }
            release.version > current
        })
        .build()
        .map_err(|e| plugin_error(&e, &proxy))?;
    let found = updater
        .check()
        .await
        .map_err(|e| plugin_error(&e, &proxy))?;
    drop(bridge);
    let offered = offered.lock().ok().and_then(|o| o.clone());
    Ok((found, offered))
}

/// Downloads the update found by the last check through Tor (a new bridge, so a new circuit),
/// verifies its signature and installs it; `on_progress` sees the bytes. Returns the version
/// installed (the app runs it after a restart).
#[tauri::command]
pub async fn install_update(
    app: AppState<'_>,
    updates: State<'_, Updates>,
    on_progress: Channel<UpdateProgress>,
) -> UiResult<String> {
    let mut update = updates
        .pending
        .lock()
        .await
        .take()
        .ok_or_else(|| UiError::new("no_update", "check for updates first"))?;
    // Nothing is installed before the whole bundle is downloaded and verified, so a download
    // that fails through Tor is started once more on a new circuit.
    let mut attempt = 1;
    loop {
        let bridge = app.engine()?.update_proxy().await?;
        let proxy = ProxyUrl::url(&bridge.proxy_url())?;
        update.proxy = Some(proxy.0.clone());
        update.no_proxy = false;
        let mut received = 0u64;
        let result = update
            .download_and_install(
                |chunk, total| {
                    received += chunk as u64;
                    let _ = on_progress.send(UpdateProgress { received, total });
                },
                || {},
            )
            .await;
        drop(bridge);
        match result.map_err(|e| plugin_error(&e, &proxy)) {
            Ok(()) => return Ok(update.version.clone()),
            Err(e) if e.code == "update_unreachable" && attempt < ATTEMPTS => {
                tracing::info!(
                    attempt,
                    "update download failed through Tor; trying a new circuit"
                );
                attempt += 1;
            }
            Err(e) => {
                // Offered again after a failure the person may retry (not after a refusal).
                if e.code == "update_unreachable" || e.code == "update_install_failed" {
                    *updates.pending.lock().await = Some(update);
                }
                return Err(e);
            }
        }
    }
}

/// The bridge's proxy URL. It holds the bridge's password, which stops working when the
/// bridge is dropped after the check or download; it is kept out of every message.
struct ProxyUrl(Url);

impl ProxyUrl {
    fn url(text: &str) -> UiResult<Self> {
        Url::parse(text)
            .map(Self)
            .map_err(|_| UiError::new("internal", "the update proxy's address does not parse"))
    }
}

/// The page's code for a plugin failure; the message never carries the bridge's credentials.
fn plugin_error(e: &tauri_plugin_updater::Error, proxy: &ProxyUrl) -> UiError {
    use tauri_plugin_updater::Error as E;
    let code = match e {
        E::Minisign(_)
        | E::Base64(_)
        | E::SignatureUtf8(_)
        | E::SignedVersionMismatch { .. }
        | E::MissingSignedVersion => "update_bad_signature",
        E::InsecureTransportProtocol => "update_config",
        E::ReleaseNotFound
        | E::TargetNotFound(_)
        | E::TargetsNotFound(_)
        | E::Serialization(_)
        | E::Semver(_) => "update_bad_manifest",
        E::Reqwest(_) | E::Network(_) => "update_unreachable",
        E::InvalidUpdaterFormat => "update_bad_package",
        E::AuthenticationFailed
        | E::DebInstallFailed
        | E::PackageInstallFailed
        | E::TempDirNotFound
        | E::TempDirNotOnSameMountPoint
        | E::PreviousAppNotRestored(_) => "update_install_failed",
        _ => "update_failed",
    };
    let mut message = e.to_string();
    if let Some(password) = proxy.0.password() {
        message = message.replace(password, "…");
    }
    message = message.replace(proxy.0.username(), "…");
    UiError::new(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_needs_both_parts_or_none() {
        assert_eq!(UpdateSource::from_parts(None, None).unwrap(), None);
        assert_eq!(
            UpdateSource::from_parts(Some(" ".into()), Some(String::new())).unwrap(),
            None
        );
        let s = UpdateSource::from_parts(
            Some("a2V5".into()),
            Some("https://updates.example/tessera.json".into()),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint.host_str(), Some("updates.example"));
        for (k, e) in [
            (Some("a2V5".to_string()), None),
            (None, Some("https://updates.example/".to_string())),
        ] {
            assert_eq!(
                UpdateSource::from_parts(k, e).unwrap_err().code,
                "update_config"
            );
        }
        assert_eq!(
            UpdateSource::from_parts(Some("a2V5".into()), Some("not a url".into()))
                .unwrap_err()
                .code,
            "update_config"
        );
    }

    #[test]
    fn a_bad_signature_has_its_own_code_and_no_credentials() {
        let proxy = ProxyUrl::url("socks5h://user0123:secret4567@127.0.0.1:9").unwrap();
        let e = plugin_error(&tauri_plugin_updater::Error::MissingSignedVersion, &proxy);
        assert_eq!(e.code, "update_bad_signature");
        let e = plugin_error(
            &tauri_plugin_updater::Error::Network("via user0123:secret4567".into()),
            &proxy,
        );
        assert_eq!(e.code, "update_unreachable");
        assert!(!e.message.contains("secret4567") && !e.message.contains("user0123"));
    }
}
