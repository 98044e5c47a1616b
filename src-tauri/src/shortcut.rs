//! The panic shortcut (`docs/panic.md`): a global keyboard shortcut chosen in Settings that wipes
//! the account at once, whether the window is focused, unlocked or on the lock screen.
//!
//! The shortcut is an app setting, kept in the vault (encrypted like the rest): it is registered
//! when the vault is unlocked and stays registered while the app runs, so it also works from
//! the lock screen. It ends with the wipe it triggers (a new account starts without one) and
//! with the app; after a restart it comes back at the first unlock.

use std::sync::Arc;

use tauri::{AppHandle, Runtime};
use tauri_plugin_global_shortcut::{GlobalShortcutExt as _, Shortcut, ShortcutState};

use crate::app::App;
use crate::error::{UiError, UiResult};

/// The app setting holding the shortcut (`Ctrl+Alt+Shift+W`; empty or absent: none).
pub const SETTING: &str = "panic_shortcut";

/// Parses a shortcut; `None` for an empty one. One without a modifier is refused (a single key
/// pressed by accident would wipe the account).
pub fn parse(text: &str) -> UiResult<Option<Shortcut>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let shortcut: Shortcut = text.parse().map_err(|_| {
        UiError::new(
            "bad_shortcut",
            "not a keyboard shortcut (for example Ctrl+Alt+Shift+W)",
        )
    })?;
    if shortcut.mods.is_empty() {
        return Err(UiError::new(
            "bad_shortcut",
            "a panic shortcut needs at least one of Ctrl, Alt, Shift, Super",
        ));
    }
    Ok(Some(shortcut))
}

/// Makes `text` the panic shortcut (none if empty), replacing the one registered before.
pub fn apply<R: Runtime>(handle: &AppHandle<R>, app: &Arc<App>, text: &str) -> UiResult<()> {
    let next = parse(text)?;
    let shortcuts = handle.global_shortcut();
    if let Some(old) = app.replace_panic_shortcut(None) {
        let _ = shortcuts.unregister(old);
    }
    let Some(shortcut) = next else {
        return Ok(());
    };
    let on_press = app.clone();
    shortcuts
        .on_shortcut(shortcut, move |handle, pressed, event| {
            if event.state != ShortcutState::Pressed {
                return;
            }
            // Off the event loop (the plugin calls this while it holds its shortcut table): the
            // wipe first, then the shortcut goes with the account it belonged to.
            let (app, handle, pressed) = (on_press.clone(), handle.clone(), *pressed);
            std::thread::spawn(move || {
                app.wipe_now();
                app.replace_panic_shortcut(None);
                let _ = handle.global_shortcut().unregister(pressed);
            });
        })
        .map_err(|e| {
            UiError::new(
                "shortcut_unavailable",
                format!("this shortcut cannot be used (another program may hold it): {e}"),
            )
        })?;
    app.replace_panic_shortcut(Some(shortcut));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review finding guard: a shortcut without a modifier would wipe on a stray key press.
    #[test]
    fn a_panic_shortcut_needs_a_modifier_and_parses_the_usual_forms() {
        assert!(parse("").unwrap().is_none());
        assert!(parse("  ").unwrap().is_none());
        for ok in [
            "Ctrl+Alt+Shift+W",
            "ctrl+alt+shift+w",
            "Super+F12",
            "Alt+Shift+KeyQ",
        ] {
            assert!(parse(ok).unwrap().is_some(), "{ok}");
        }
        for bad in ["W", "F12", "Ctrl+", "Ctrl+Nonsense", "+++"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
