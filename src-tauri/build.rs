//! Declares the app's commands for Tauri's ACL and records build information.

fn main() {
    // Build information shown by `app_info`. The commit is optional: a source tarball has none.
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=TESSERA_GIT_COMMIT={commit}");
    println!(
        "cargo:rustc-env=TESSERA_BUILD_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=TESSERA_BUILD_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    println!("cargo:rerun-if-changed=src/command_names.rs");
    for path in ["../.git/HEAD", "../.git/refs/heads"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }

    // Every app command is listed here; capabilities/main.json grants them to the main window.
    const COMMANDS: &[&str] = include!("src/command_names.rs");
    let attributes = tauri_build::Attributes::new()
        .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    if let Err(e) = tauri_build::try_build(attributes) {
        // A build script reports failure by panicking; the message is what the developer sees.
        panic!("tauri-build failed: {e:#}");
    }
}
