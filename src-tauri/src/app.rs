//! The app's state between commands: the engine while unlocked, the page's event channels, the
//! idle clock and the focus policy.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tauri::ipc::{Channel, InvokeResponseBody};
use tessera_core::phone::{CallEvent, Phone, PhoneOptions};
use tessera_core::{Engine, Event, LockReason};
use tessera_proto::RelayAddress;

use crate::camera::CameraChoice;
use crate::devices::{Devices, Ringtone};
use crate::view::UiEvent;

/// Start-up settings shared with the commands.
#[derive(Debug, Clone, Default)]
pub struct AppConfig {
    /// The relay named on the command line, if any (suggested on first run).
    pub relay: Option<RelayAddress>,
    /// The account's data directory.
    pub data_dir: PathBuf,
    /// The card reader to use (`None`: the first reader with a card).
    pub reader: Option<String>,
    /// What video calls film.
    pub camera: CameraChoice,
}

/// Everything the commands share.
pub struct App {
    /// Start-up settings.
    pub config: AppConfig,
    engine: Mutex<Option<Engine>>,
    channels: Mutex<Vec<Channel<UiEvent>>>,
    activity: Mutex<Instant>,
    focused: std::sync::atomic::AtomicBool,
    phone: Mutex<Option<(Phone, Arc<Devices>)>>,
    video: Mutex<Option<Channel<InvokeResponseBody>>>,
    ringtone: Mutex<Option<Ringtone>>,
    panic_shortcut: Mutex<Option<tauri_plugin_global_shortcut::Shortcut>>,
}

impl App {
    /// A locked app.
    pub fn new(config: AppConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            engine: Mutex::new(None),
            channels: Mutex::new(Vec::new()),
            activity: Mutex::new(Instant::now()),
            focused: std::sync::atomic::AtomicBool::new(true),
            phone: Mutex::new(None),
            video: Mutex::new(None),
            ringtone: Mutex::new(None),
            panic_shortcut: Mutex::new(None),
        })
    }

    /// The phone of the unlocked account, with its devices.
    pub fn phone(&self) -> Result<(Phone, Arc<Devices>), tessera_core::CoreError> {
        self.engine()?;
        self.phone
            .lock()
            .ok()
            .and_then(|p| p.clone())
            .ok_or(tessera_core::CoreError::Locked)
    }

    /// Where the peer's pictures go (the page's call screen).
    pub fn set_video_channel(&self, channel: Channel<InvokeResponseBody>) {
        if let Ok(mut v) = self.video.lock() {
            *v = Some(channel);
        }
    }

    /// Sends one picture to the page: `kind u8` (0 the contact, 1 the local preview), then
    /// the picture as `devices::rgba` lays it out; a lone kind byte clears that picture.
    pub fn send_video(&self, kind: u8, rgba: &[u8]) {
        let mut message = Vec::with_capacity(1 + rgba.len());
        message.push(kind);
        message.extend_from_slice(rgba);
        if let Ok(mut v) = self.video.lock()
            && let Some(c) = v.as_ref()
            && c.send(InvokeResponseBody::Raw(message)).is_err()
        {
            v.take();
        }
    }

    fn ring(&self, on: bool) {
        if let Ok(mut r) = self.ringtone.lock() {
            *r = if on { Ringtone::start() } else { None };
        }
    }

    /// The unlocked engine.
    pub fn engine(&self) -> Result<Engine, tessera_core::CoreError> {
        self.engine
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .filter(Engine::is_unlocked)
            .ok_or(tessera_core::CoreError::Locked)
    }

    /// Whether an engine is unlocked.
    pub fn is_unlocked(&self) -> bool {
        self.engine().is_ok()
    }

    /// Adds a page event channel (the page subscribes once per load).
    pub fn subscribe(&self, channel: Channel<UiEvent>) {
        if let Ok(mut c) = self.channels.lock() {
            c.push(channel);
        }
    }

    /// Sets the registered panic shortcut (`shortcut.rs`); returns the one before.
    pub fn replace_panic_shortcut(
        &self,
        next: Option<tauri_plugin_global_shortcut::Shortcut>,
    ) -> Option<tauri_plugin_global_shortcut::Shortcut> {
        self.panic_shortcut
            .lock()
            .map(|mut s| std::mem::replace(&mut *s, next))
            .unwrap_or(None)
    }

    /// Panic wipe (`docs/panic.md`), blocking: an unlocked engine locks and wipes; without one
    /// the account's files and keys in the data directory go.
    pub fn wipe(&self) -> tessera_core::WipeReport {
        match self.engine() {
            Ok(e) => e.wipe(),
            Err(_) => tessera_core::wipe(&self.config.data_dir, &tessera_core::OsKeyring),
        }
    }

    /// The panic shortcut's wipe: then the page is told, and shows first run.
    pub fn wipe_now(&self) {
        let report = self.wipe();
        for p in &report.problems {
            tracing::warn!(problem = %p, "panic wipe: a step failed; the others ran");
        }
        self.emit(&UiEvent::Locked {
            reason: "wiped".into(),
        });
    }

    /// Sends an event to every page channel; drops channels whose page went away.
    pub fn emit(&self, event: &UiEvent) {
        if let Ok(mut channels) = self.channels.lock() {
            channels.retain(|c| c.send(event.clone()).is_ok());
        }
    }

    /// Records that the user did something (for the idle lock).
    pub fn touch(&self) {
        if let Ok(mut t) = self.activity.lock() {
            *t = Instant::now();
        }
    }

    fn idle_for(&self) -> Duration {
        self.activity
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    /// Takes an unlocked engine into use: keeps it connected, forwards its events to the page,
    /// watches the card it was unlocked with, and forgets it when it locks.
    pub fn start(self: &Arc<Self>, engine: Engine, reader: Option<String>) {
        self.touch();
        let mut events = engine.subscribe();
        if let Ok(mut e) = self.engine.lock()
            && let Some(old) = e.replace(engine.clone())
        {
            old.lock();
        }
        let app = self.clone();
        let mine = engine.clone();
        tauri::async_runtime::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => {
                        let locked = matches!(e, Event::Locked { .. });
                        if let Event::Message { contact, body, .. } = &e {
                            app.notify(&mine, contact, body);
                        }
                        let shows_text = match &e {
                            Event::Message { contact, .. }
                            | Event::MessageChanged { contact, .. } => {
                                mine.may_show_content(contact)
                            }
                            _ => false,
                        };
                        if let Some(ui) = UiEvent::from_engine(&e, shows_text) {
                            app.emit(&ui);
                        }
                        if locked {
                            app.forget(&mine);
                            break;
                        }
                    }
                    // Events were missed: the page reads everything again rather than showing
                    // a state that silently skipped some.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::info!(missed = n, "event listener fell behind; resync");
                        app.emit(&UiEvent::Resync);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let runner = engine.clone();
        tauri::async_runtime::spawn(async move { runner.run().await });
        self.start_phone(&engine);
        if let Some(reader) = reader {
            engine.watch_card(reader);
        }
        let app = self.clone();
        tauri::async_runtime::spawn(async move { app.idle_watch(engine).await });
    }

    /// The phone for `engine`: its events go to the page, an incoming call rings.
    fn start_phone(self: &Arc<Self>, engine: &Engine) {
        let devices = Devices::new(self, self.config.camera);
        let phone = Phone::new(engine.clone(), devices.clone(), PhoneOptions::default());
        let mut events = phone.subscribe();
        if let Ok(mut p) = self.phone.lock() {
            *p = Some((phone, devices));
        }
        let app = self.clone();
        tauri::async_runtime::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => {
                        app.ring(matches!(e, CallEvent::Incoming { .. }));
                        app.emit(&UiEvent::from_call(&e));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
            app.ring(false);
        });
    }

    /// Drops the engine if it is still `engine` (a newer unlock is kept).
    fn forget(&self, engine: &Engine) {
        if let Ok(mut e) = self.engine.lock()
            && e.as_ref()
                .is_some_and(|cur| cur.dir() == engine.dir() && !cur.is_unlocked())
        {
            e.take();
            if let Ok(mut p) = self.phone.lock() {
                p.take();
            }
            self.ring(false);
        }
    }

    /// Locks the engine (if unlocked) for `reason`; the forwarder tells the page.
    pub fn lock(&self, reason: LockReason) {
        if let Ok(e) = self.engine() {
            e.lock_because(reason);
        }
    }

    /// The window gained focus.
    pub fn focus_gained(&self) {
        self.focused
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Posts an OS notification for a message that arrived while the window was in the
    /// background: "New message" only, unless the user turned on `notification_content`.
    fn notify(&self, engine: &Engine, contact: &[u8; 32], body: &str) {
        // A muted conversation posts nothing (docs/conversations.md).
        if self.focused.load(std::sync::atomic::Ordering::Relaxed)
            || engine.muted(contact).unwrap_or(false)
        {
            return;
        }
        // A request's text is never shown before it is accepted, whatever the setting.
        let show = engine
            .app_setting("notification_content")
            .ok()
            .flatten()
            .as_deref()
            == Some("on")
            && engine.may_show_content(contact);
        let name = engine
            .contacts()
            .ok()
            .and_then(|cs| cs.into_iter().find(|c| &c.account_id == contact))
            .map(|c| c.name);
        let (summary, text) = notification_text(show, name.as_deref(), body);
        // The notification service may be slow or absent: never on the event path.
        std::thread::spawn(move || {
            if let Err(e) = notify_rust::Notification::new()
                .appname("Tessera")
                .summary(&summary)
                .body(&text)
                .show()
            {
                tracing::debug!(error = %e, "no notification posted");
            }
        });
    }

    /// The window lost focus: locks if the user asked for that.
    pub fn focus_lost(&self) {
        self.focused
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if let Ok(e) = self.engine()
            && e.app_setting("lock_on_focus_loss")
                .ok()
                .flatten()
                .as_deref()
                == Some("on")
        {
            e.lock_because(LockReason::FocusLost);
        }
    }

    /// Locks after the idle time the user chose (`idle_lock_minutes`, 0 or unset: never).
    async fn idle_watch(&self, engine: Engine) {
        while engine.is_unlocked() {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let minutes: u64 = engine
                .app_setting("idle_lock_minutes")
                .ok()
                .flatten()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if minutes > 0 && self.idle_for() >= Duration::from_secs(minutes * 60) {
                engine.lock_because(LockReason::Idle);
            }
        }
    }
}

/// What a message notification says: the sender and the text only when the user asked for
/// them, otherwise nothing but that a message came.
pub fn notification_text(show_content: bool, sender: Option<&str>, body: &str) -> (String, String) {
    if show_content {
        let text: String = body.chars().take(200).collect();
        (sender.unwrap_or("Tessera").to_string(), text)
    } else {
        ("Tessera".to_string(), "New message".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::notification_text;

    #[test]
    fn notifications_hide_sender_and_text_unless_the_user_opted_in() {
        let (s, b) = notification_text(false, Some("alice"), "meet at noon");
        assert_eq!((s.as_str(), b.as_str()), ("Tessera", "New message"));
        let (s, b) = notification_text(true, Some("alice"), "meet at noon");
        assert_eq!((s.as_str(), b.as_str()), ("alice", "meet at noon"));
        let long = "x".repeat(1000);
        assert_eq!(notification_text(true, None, &long).1.len(), 200);
    }
}
