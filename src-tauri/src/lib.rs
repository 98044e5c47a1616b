#![doc = include_str!("../README.md")]

mod actions;
mod app;
mod camera;
mod commands;
mod devices;
mod error;
mod restore;
mod shortcut;
mod updates;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;
use tessera_proto::RelayAddress;

pub use app::{App, AppConfig};
pub use camera::CameraChoice;
pub use error::UiError;
pub use updates::UpdateSource;

/// Command line of the desktop app.
#[derive(Debug, Parser)]
#[command(name = "tessera-desktop", version, about = "Tessera desktop messenger")]
struct Args {
    /// Relay suggested on first run, tessera://HOST:PORT/PIN
    #[arg(long, env = "TESSERA_RELAY", value_name = "ADDR")]
    relay: Option<RelayAddress>,
    /// The account's data directory [default: ~/.local/share/tessera]
    #[arg(long, env = "TESSERA_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Card reader to use (PC/SC name) [default: the first reader with a card]
    #[arg(long, env = "TESSERA_READER", value_name = "NAME")]
    reader: Option<String>,
    /// What video calls film: the system's camera, or a moving test pattern (for
    /// demonstrations and tests on machines without a camera)
    #[arg(long, env = "TESSERA_CAMERA", value_enum, default_value_t = CameraChoice::Device)]
    camera: CameraChoice,
    /// Set by WebKitWebDriver when it starts the app for UI tests; ignored.
    #[arg(long, hide = true)]
    automation: bool,
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

/// Registers state and commands on a Tauri builder (any runtime, so tests can use a mock one).
pub fn builder<R: tauri::Runtime>(
    builder: tauri::Builder<R>,
    config: AppConfig,
) -> tauri::Builder<R> {
    let app = App::new(config);
    let on_focus = app.clone();
    builder
        .plugin(tauri_plugin_global_shortcut::Builder::new().build())
        // Updates: the plugin's own commands are not granted to the page (capabilities/main.json);
        // the app's `check_update`/`install_update` drive it through Tor (docs/updates.md).
        .plugin(tauri_plugin_updater::Builder::new().build())
        .manage(updates::Updates::default())
        .manage(app)
        .on_window_event(move |_window, event| match event {
            tauri::WindowEvent::Focused(false) => on_focus.focus_lost(),
            tauri::WindowEvent::Focused(true) => on_focus.focus_gained(),
            _ => {}
        })
        .invoke_handler(tauri::generate_handler![
            actions::message_view,
            actions::link_preview,
            actions::edit_message,
            actions::delete_message,
            actions::react,
            actions::update_conversation,
            actions::delete_conversation,
            actions::open_note_to_self,
            actions::set_blocked,
            actions::remove_contact,
            actions::send_typing,
            commands::timer,
            commands::set_timer,
            commands::app_info,
            commands::app_state,
            commands::activity,
            commands::subscribe,
            commands::card_status,
            commands::password_strength,
            commands::provision_card,
            commands::create_account,
            commands::unlock,
            commands::lock,
            commands::panic_wipe,
            commands::delete_account,
            restore::restore_account,
            commands::me,
            commands::conversations,
            commands::history,
            actions::send_message,
            commands::mark_read,
            commands::search,
            commands::contacts,
            commands::requests,
            commands::add_contact,
            commands::answer_request,
            commands::safety_number,
            commands::verify_contact,
            commands::settings,
            commands::set_setting,
            updates::check_update,
            updates::install_update,
            commands::change_password,
            commands::backup_now,
            commands::backup_schedule,
            commands::duress_set,
            commands::duress_clear,
            commands::card_swap_start,
            commands::card_swap_finish,
            commands::card_swap_cancel,
            commands::call_start,
            commands::call_accept,
            commands::call_reject,
            commands::call_hang_up,
            commands::call_mute,
            commands::call_camera,
            commands::call_status,
            commands::call_video,
        ])
}

/// The command names, as `build.rs` declares them for the ACL (one list for both; a test checks
/// that the capability grants each).
pub const COMMANDS: &[&str] = include!("command_names.rs");

fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".local/share/tessera")
}

/// Parses the command line and runs the app until its window is closed.
pub fn run() -> ExitCode {
    let args = Args::parse();
    let config = AppConfig {
        relay: args.relay,
        data_dir: args.data_dir.unwrap_or_else(default_data_dir),
        reader: args.reader,
        camera: args.camera,
    };
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
        let info = AppInfo::collect(&AppConfig {
            relay: Some(relay),
            ..AppConfig::default()
        });
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

    #[test]
    fn the_capability_grants_exactly_the_app_commands() {
        let grants: serde_json::Value =
            serde_json::from_str(include_str!("../capabilities/main.json")).unwrap();
        let mut granted: Vec<String> = grants["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        let mut expected: Vec<String> = COMMANDS
            .iter()
            .map(|c| format!("allow-{}", c.replace('_', "-")))
            .collect();
        granted.sort();
        expected.sort();
        assert_eq!(granted, expected);
    }

    /// Review finding: commands added to the handler but not to `COMMANDS` were refused by the
    /// ACL at run time. Every `#[tauri::command]` in the sources must be listed.
    #[test]
    fn every_command_in_the_sources_is_declared() {
        let sources = [
            include_str!("actions.rs"),
            include_str!("commands.rs"),
            include_str!("restore.rs"),
        ];
        let mut found = Vec::new();
        for text in sources {
            let mut lines = text.lines();
            while let Some(line) = lines.next() {
                if line.trim() != "#[tauri::command]" {
                    continue;
                }
                let next = lines.next().unwrap_or_default();
                let name = next
                    .split("fn ")
                    .nth(1)
                    .and_then(|rest| rest.split(['(', '<']).next())
                    .unwrap_or_default()
                    .to_string();
                found.push(name);
            }
        }
        found.sort();
        let mut declared: Vec<String> = COMMANDS.iter().map(|c| c.to_string()).collect();
        declared.sort();
        for name in &found {
            assert!(declared.contains(name), "{name} is not in command_names.rs");
        }
        assert!(found.len() >= 40, "{found:?}");
    }
}
