#![doc = include_str!("../README.md")]

use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;
use tessera_proto::RelayAddress;

/// Command line of the desktop app.
#[derive(Debug, Parser)]
#[command(name = "tessera-desktop", version, about = "Tessera desktop messenger")]
struct Args {
    /// Relay to use, tessera://HOST:PORT/PIN
    #[arg(long, env = "TESSERA_RELAY", value_name = "ADDR")]
    relay: Option<RelayAddress>,
    /// Set by WebKitWebDriver when it starts the app for UI tests; ignored.
    #[arg(long, hide = true)]
    automation: bool,
}

/// Start-up settings shared with the commands.
#[derive(Debug, Clone, Default)]
pub struct AppConfig {
    /// The relay named on the command line, if any.
    pub relay: Option<RelayAddress>,
}

/// What `app_info` returns to the interface.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    /// Product name.
    pub name: &'static str,
    /// Version of this build (the workspace version).
    pub version: &'static str,
    /// Short git commit the build was made from; empty if unknown.
    pub commit: &'static str,
    /// Target triple.
    pub target: &'static str,
    /// Cargo profile (`debug` or `release`).
    pub profile: &'static str,
    /// The relay's `host:port`, if one was configured (the pin is not shown here).
    pub relay: Option<String>,
}

impl AppInfo {
    /// Build information for this binary and configuration.
    pub fn collect(config: &AppConfig) -> Self {
        Self {
            name: "Tessera",
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("TESSERA_GIT_COMMIT"),
            target: env!("TESSERA_BUILD_TARGET"),
            profile: env!("TESSERA_BUILD_PROFILE"),
            relay: config.relay.as_ref().map(RelayAddress::authority),
        }
    }
}

#[tauri::command]
fn app_info(config: tauri::State<'_, AppConfig>) -> AppInfo {
    AppInfo::collect(&config)
}

/// Registers state and commands on a Tauri builder (any runtime, so tests can use a mock one).
pub fn builder<R: tauri::Runtime>(
    builder: tauri::Builder<R>,
    config: AppConfig,
) -> tauri::Builder<R> {
    builder
        .manage(config)
        .invoke_handler(tauri::generate_handler![app_info])
}

/// Parses the command line and runs the app until its window is closed.
pub fn run() -> ExitCode {
    let args = Args::parse();
    let config = AppConfig { relay: args.relay };
    match builder(tauri::Builder::default(), config).run(tauri::generate_context!()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera-desktop: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_info_reports_version_and_relay_without_pin() {
        let relay: RelayAddress = format!("tessera://127.0.0.1:4443/{}", "A".repeat(43))
            .parse()
            .unwrap();
        let info = AppInfo::collect(&AppConfig { relay: Some(relay) });
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.relay.as_deref(), Some("127.0.0.1:4443"));
        let json = serde_json::to_string(&info).unwrap();
        assert!(!json.contains(&"A".repeat(43)), "{json}");
        assert!(AppInfo::collect(&AppConfig::default()).relay.is_none());
    }

    #[test]
    fn command_line_accepts_relay_and_driver_flag_and_rejects_bad_relay() {
        let ok = Args::try_parse_from([
            "t",
            "--automation",
            "--relay",
            &format!("tessera://h:1/{}", "A".repeat(43)),
        ]);
        assert!(ok.unwrap().relay.is_some());
        assert!(Args::try_parse_from(["t", "--relay", "http://h"]).is_err());
        assert!(Args::try_parse_from(["t", "--bogus"]).is_err());
    }
}
