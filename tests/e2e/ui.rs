//! The desktop app in a real window: Xvfb + tauri-driver + WebKitWebDriver.

use std::time::Duration;

use tessera_e2e::relay::Relay;
use tessera_e2e::webdriver::{Session, TauriDriver, Xvfb};

#[test]
fn ui_lock_screen_shows_heading_version_and_relay() {
    for tool in ["Xvfb", "tauri-driver", "WebKitWebDriver", "import"] {
        assert!(
            tessera_e2e::on_path(tool),
            "{tool} is not installed; run ./scripts/setup"
        );
    }
    let app = tessera_e2e::bin_path("tessera-desktop");
    let artifacts = tessera_e2e::artifacts_dir();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));

    let xvfb = Xvfb::start();
    let driver = TauriDriver::start(xvfb.display, &artifacts.join("ui-tauri-driver.log"));
    let session = Session::start(
        &driver,
        &app,
        &["--relay".into(), relay.address.to_string()],
    );

    let heading = session.text("h1#lock-title");
    assert_eq!(heading, "Tessera is locked");

    // The version comes from the app_info command, i.e. through the real IPC and the ACL.
    let version = session.wait_text("#app-version", Duration::from_secs(30), |t| !t.is_empty());
    assert!(
        version.starts_with(&format!("Tessera {}", env!("CARGO_PKG_VERSION"))),
        "version line: {version:?}"
    );
    let relay_line = session.text("#relay");
    assert_eq!(relay_line, format!("Relay: {}", relay.address.authority()));
    let error = session.execute_async(
        "const done = arguments[arguments.length - 1];
         done(document.getElementById('backend-error').hidden);",
    );
    assert_eq!(
        error,
        serde_json::Value::Bool(true),
        "the lock screen shows a backend error"
    );

    // The capability grants the app's own commands only: a core plugin command is refused.
    let denied = session.execute_async(
        "const done = arguments[arguments.length - 1];
         window.__TAURI__.core.invoke('plugin:app|version')
           .then(v => done('allowed: ' + v), e => done('denied: ' + String(e)));",
    );
    let denied = denied.as_str().unwrap_or_default().to_string();
    assert!(
        denied.starts_with("denied"),
        "core command was not refused: {denied}"
    );

    // Let the last paint land before capturing the screen.
    std::thread::sleep(Duration::from_secs(1));
    let shot = artifacts.join("ui-lock-screen.png");
    let _ = std::fs::remove_file(&shot);
    xvfb.screenshot(&shot);
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 1000,
        "screenshot {} is missing or empty",
        shot.display()
    );
    session.end();
}
