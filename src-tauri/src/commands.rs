//! The Tauri commands: thin bodies over `tessera-core`. Each is listed in `build.rs` and granted
//! in `capabilities/main.json`; nothing else is callable from the page.

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tauri::State;
use tauri::ipc::Channel;
use tessera_core::TransportConfig;
use tessera_core::card::{self, Reprovision};
use tessera_core::{CoreError, CreateOptions, Engine, Invite, KdfParams, LockReason, OsKeyring};
use tessera_crypto::AccountId;
use tessera_proto::RelayAddress;
use tessera_store::Vault;
use zeroize::Zeroizing;

use crate::AppInfo;
use crate::app::App;
use crate::error::{UiError, UiResult};
use crate::view::{ContactView, ConversationView, MessageView, RequestView, UiEvent};

pub(crate) type AppState<'a> = State<'a, Arc<App>>;

/// Runs blocking work (PC/SC, the keyring, Argon2id) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UiError> + Send + 'static,
) -> UiResult<T> {
    tauri::async_runtime::spawn_blocking(f)
        .await
        .map_err(|_| UiError::new("internal", "a background task failed"))?
}

/// Runs a card operation, trying again for up to five seconds while another connection (the
/// lock screen's status poll, another program) holds the card exclusively. A poll holds it
/// for a few milliseconds; the margin is for a heavily loaded machine.
pub(crate) fn card_retry<T>(mut f: impl FnMut() -> Result<T, CoreError>) -> Result<T, CoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match f() {
            Err(e) if e.code() == "card_busy" && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Reads the card for the vault in the data dir, if the vault has the card factor, with the
/// key the key file gives to `password` (`docs/card-key.md`).
async fn tap_for_vault(app: &App, password: &Zeroizing<Vec<u8>>) -> UiResult<Option<card::Tap>> {
    let dir = app.config.data_dir.clone();
    let reader = app.config.reader.clone();
    let pw = password.clone();
    blocking(move || {
        Ok(card_retry(|| {
            card::tap_for_vault(&dir, &pw, &OsKeyring, reader.as_deref())
        })?)
    })
    .await
}

/// Reports the steps of a card operation on the page's channel.
fn progress(channel: Channel<UiEvent>, of: u8) -> impl Fn(u8, &str) + Send + 'static {
    move |step, what| {
        let _ = channel.send(UiEvent::Provision {
            step,
            of,
            what: what.into(),
        });
    }
}

fn password(p: String) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(p.into_bytes())
}

pub(crate) fn account(id: &str) -> UiResult<[u8; 32]> {
    id.parse::<AccountId>()
        .map(|a| a.0)
        .map_err(|_| CoreError::UnknownContact.into())
}

#[tauri::command]
pub fn app_info(app: AppState<'_>) -> AppInfo {
    AppInfo::collect(&app.config)
}

/// Where the app is: `first_run` (no vault), `locked` or `unlocked`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    phase: &'static str,
    /// Whether the vault needs the card (locked phase).
    card_factor: bool,
    /// The relay from the command line (first run suggestion), `tessera://…`.
    suggested_relay: Option<String>,
}

#[tauri::command]
pub fn app_state(app: AppState<'_>) -> UiResult<AppStatus> {
    let dir = &app.config.data_dir;
    let phase = if app.is_unlocked() {
        "unlocked"
    } else if Vault::exists(dir) {
        "locked"
    } else {
        "first_run"
    };
    let card_factor =
        Vault::exists(dir) && Vault::card_binding(dir).map_err(CoreError::from)?.is_some();
    Ok(AppStatus {
        phase,
        card_factor,
        suggested_relay: app.config.relay.as_ref().map(ToString::to_string),
    })
}

/// The page says the user did something (keys, pointer); resets the idle lock.
#[tauri::command]
pub fn activity(app: AppState<'_>) {
    app.touch();
}

#[tauri::command]
pub fn subscribe(app: AppState<'_>, on_event: Channel<UiEvent>) {
    app.subscribe(on_event);
}

/// The readers this app uses: the one named by `--reader`, or all.
fn readers(
    dir: Option<&std::path::Path>,
    reader: Option<&str>,
    probe: bool,
) -> UiResult<Vec<card::ReaderStatus>> {
    Ok(card::status(&OsKeyring, dir, probe, reader)?)
}

/// The card on this app's reader, probed (factory or not), or why there is none. While the
/// card does not answer (another connection, such as the window's status poll, holds it for a
/// moment) it is asked again for up to five seconds: a busy card is not a set-up card.
fn card_on_reader(reader: Option<&str>) -> UiResult<card::ReaderStatus> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let found = readers(None, reader, true)?;
        if found.is_empty() {
            return Err(UiError::new("no_reader", "no card reader"));
        }
        let card = found
            .into_iter()
            .find(|r| r.card)
            .ok_or_else(|| UiError::new("no_card", "no card on the reader"))?;
        let answered = !matches!(card.provisioning, None | Some("unknown"));
        if answered || std::time::Instant::now() >= deadline {
            return Ok(card);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Readers and cards. The lock screen polls this without `probe` (no authentication, no
/// signature read); the first-run screen asks with `probe` once per new card.
#[tauri::command]
pub async fn card_status(
    app: AppState<'_>,
    probe: Option<bool>,
) -> UiResult<Vec<card::ReaderStatus>> {
    let dir = app.config.data_dir.clone();
    let reader = app.config.reader.clone();
    blocking(move || readers(Some(&dir), reader.as_deref(), probe.unwrap_or(false))).await
}

/// Strength feedback for a new password.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Strength {
    /// 0 (guessable in seconds) to 4 (very strong).
    pub(crate) score: u8,
    /// A warning about the password, if any.
    warning: Option<String>,
    /// Suggestions.
    suggestions: Vec<String>,
    /// Rough guesses needed, as a power of ten.
    guesses_log10: f64,
}

/// The weakest password the app accepts for a new vault (zxcvbn score).
pub const MIN_SCORE: u8 = 3;

pub(crate) fn strength_of(password: &str, name: &str) -> Strength {
    let est = zxcvbn::zxcvbn(password, &[name, "tessera"]);
    let feedback = est.feedback();
    Strength {
        score: u8::from(est.score()),
        warning: feedback.and_then(|f| f.warning()).map(|w| w.to_string()),
        suggestions: feedback
            .map(|f| f.suggestions().iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        guesses_log10: est.guesses_log10(),
    }
}

#[tauri::command]
pub fn password_strength(password: String, name: Option<String>) -> Strength {
    let password = Zeroizing::new(password);
    strength_of(&password, name.as_deref().unwrap_or_default())
}

/// Provisions the card on the reader for Tessera, reporting each step on `on_progress`.
#[tauri::command]
pub async fn provision_card(
    app: AppState<'_>,
    reprovision: bool,
    on_progress: Channel<UiEvent>,
) -> UiResult<String> {
    let reader = app.config.reader.clone();
    let step = progress(on_progress, 4);
    blocking(move || {
        step(1, "Looking for your card");
        let st = card_on_reader(reader.as_deref())?;
        step(2, "Checking that the card is new");
        if st.provisioning != Some("factory") && !reprovision {
            return Err(UiError::new(
                "not_factory_fresh",
                "this card is already set up; choose re-provision to set it up again",
            ));
        }
        step(3, "Writing a new secret and keys to the card");
        let done = card_retry(|| {
            Ok(card::provision(
                &OsKeyring,
                Some(&st.reader),
                how(reprovision),
            )?)
        })?;
        step(4, "Reading the card back");
        let check = card_retry(|| Ok(card::tap(&OsKeyring, Some(&done.reader))?))?;
        Ok(hex::encode(check.factor.uid))
    })
    .await
}

fn how(reprovision: bool) -> Reprovision {
    if reprovision {
        Reprovision::FromKeyring
    } else {
        Reprovision::No
    }
}

/// A read of the card just set up on the reader, for a vault made now (a new account or a
/// restore), and the reader it is on; `(None, None)` without the card.
pub(crate) async fn new_card_read(
    app: &AppState<'_>,
    use_card: bool,
) -> UiResult<(Option<tessera_store::CardFactor>, Option<String>)> {
    if !use_card {
        return Ok((None, None));
    }
    let reader = app.config.reader.clone();
    let tap = blocking(move || {
        Ok(card_retry(|| {
            Ok(card::tap(&OsKeyring, reader.as_deref())?)
        })?)
    })
    .await?;
    Ok((Some(tap.factor), Some(tap.reader)))
}

/// What the first-run form sends.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    relay: String,
    password: String,
    name: String,
    /// `tor` or `direct`.
    transport: String,
    /// Bind the vault to the card on the reader.
    use_card: bool,
}

#[tauri::command]
pub async fn create_account(app: AppState<'_>, form: NewAccount) -> UiResult<()> {
    let NewAccount {
        relay,
        password: pw,
        name,
        transport,
        use_card,
    } = form;
    let pw = password(pw);
    let relay: RelayAddress = relay
        .trim()
        .parse()
        .map_err(|e| UiError::new("bad_relay", format!("{e}")))?;
    let name = name.trim().to_string();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(UiError::new(
            "bad_name",
            "a device name has 1 to 64 characters",
        ));
    }
    if strength_of(std::str::from_utf8(&pw).unwrap_or_default(), &name).score < MIN_SCORE {
        return Err(UiError::new(
            "weak_password",
            "the password is too easy to guess",
        ));
    }
    let transport = match transport.as_str() {
        "direct" => TransportConfig::Direct,
        "tor" => TransportConfig::Tor { config: None },
        _ => return Err(UiError::new("bad_transport", "transport is tor or direct")),
    };
    let (card, reader) = new_card_read(&app, use_card).await?;
    let engine = Engine::create(
        CreateOptions {
            dir: app.config.data_dir.clone(),
            password: pw,
            relay,
            name,
            transport,
            kdf: KdfParams::DEFAULT,
            card,
        },
        Arc::new(OsKeyring),
    )
    .await?;
    app.start(engine, reader);
    Ok(())
}

/// What the card check of an unlock found, for the page (`None` without the card).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardCheckView {
    /// Whether the card's secret was replaced (a copy made before no longer opens the vault).
    rotated: bool,
    /// Why it was not (no secrets in it).
    rotation_error: Option<String>,
    /// SUN reads of the card since the last unlock that were not this app's.
    reads_elsewhere: u32,
}

#[tauri::command]
pub async fn unlock<R: tauri::Runtime>(
    app: AppState<'_>,
    handle: tauri::AppHandle<R>,
    password: String,
) -> UiResult<Option<CardCheckView>> {
    let pw = self::password(password);
    let (engine, reader) = Engine::unlock_card(
        &app.config.data_dir,
        pw,
        Arc::new(OsKeyring),
        app.config.reader.clone(),
    )
    .await?;
    let check = engine.card_check();
    let shortcut = engine.app_setting(crate::shortcut::SETTING).ok().flatten();
    app.start(engine, reader);
    if let Some(text) = shortcut
        && let Err(e) = crate::shortcut::apply(&handle, app.inner(), &text)
    {
        tracing::warn!(code = e.code, "the panic shortcut could not be registered");
    }
    Ok(check.map(|c| CardCheckView {
        rotated: c.rotated,
        rotation_error: c.rotation_error,
        reads_elsewhere: c.reads_elsewhere,
    }))
}

#[tauri::command]
pub fn lock(app: AppState<'_>) {
    app.lock(LockReason::Requested);
}

/// What a panic wipe did, for the page (no paths, no secrets).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WipeView {
    /// Milliseconds until the keyring entry and the key file were destroyed.
    keys_destroyed_ms: f64,
    /// Files and folders removed.
    removed: usize,
    /// Steps that failed (the others ran): the keyring unreachable, a file that stayed.
    problems: usize,
}

/// Panic wipe (`docs/panic.md`), from the unlocked app or the lock screen: no password, no card.
/// An unlocked engine locks first (every key in memory dropped), then the keys on disk go, then
/// the files; the page returns to first run.
#[tauri::command]
pub async fn panic_wipe<R: tauri::Runtime>(
    app: AppState<'_>,
    handle: tauri::AppHandle<R>,
) -> UiResult<WipeView> {
    let state = app.inner().clone();
    let report = blocking(move || Ok(state.wipe())).await?;
    // The shortcut belonged to the account that is gone.
    let _ = crate::shortcut::apply(&handle, app.inner(), "");
    for p in &report.problems {
        tracing::warn!(problem = %p, "panic wipe: a step failed; the others ran");
    }
    Ok(WipeView {
        keys_destroyed_ms: report.keys_destroyed_in.as_secs_f64() * 1000.0,
        removed: report.removed,
        problems: report.problems.len(),
    })
}

/// What leaving did, for the page (counts only).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeftView {
    /// Contacts told.
    told: usize,
    /// Contacts that could not be told in time.
    not_told: usize,
}

/// Leaving (`docs/leaving.md`): the password and a fresh read of the card confirm it, then
/// contacts are told, the relay deletes the account, and everything here is wiped; the page
/// goes back to first run (the engine reports the wipe as a lock).
#[tauri::command]
pub async fn delete_account<R: tauri::Runtime>(
    app: AppState<'_>,
    handle: tauri::AppHandle<R>,
    password: String,
) -> UiResult<LeftView> {
    let pw = self::password(password);
    let engine = app.engine()?;
    let dir = app.config.data_dir.clone();
    let reader = app.config.reader.clone();
    blocking(move || {
        let tap = card_retry(|| card::tap_for_vault(&dir, &pw, &OsKeyring, reader.as_deref()))?;
        Vault::check_factors(&dir, &pw, &OsKeyring, tap.as_ref().map(|t| &t.factor))
            .map_err(CoreError::from)?;
        Ok(())
    })
    .await?;
    let left = engine.delete_account().await?;
    let _ = crate::shortcut::apply(&handle, app.inner(), "");
    for p in &left.wipe.problems {
        tracing::warn!(problem = %p, "leaving: a step of the wipe failed; the others ran");
    }
    // The page goes back to first run, as after a panic wipe.
    app.emit(&UiEvent::Locked {
        reason: "wiped".into(),
    });
    Ok(LeftView {
        told: left.told,
        not_told: left.not_told,
    })
}

/// Who this account is and what the status bar shows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    account_id: String,
    name: String,
    relay: String,
    relay_host: String,
    pin: String,
    transport: &'static str,
    /// Logged in to the relay now.
    connected: bool,
    invite: String,
    /// The invite as a QR code (SVG data URL).
    invite_qr: String,
}

fn qr_data_url(text: &str) -> UiResult<String> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| UiError::new("internal", format!("QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build();
    Ok(format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    ))
}

#[tauri::command]
pub fn me(app: AppState<'_>) -> UiResult<Me> {
    let e = app.engine()?;
    let invite = e.invite()?;
    let relay = e.relay()?;
    let text = invite.to_text();
    Ok(Me {
        account_id: invite.account_id.to_string(),
        name: invite.name.clone(),
        relay: relay.to_string(),
        relay_host: relay.authority(),
        pin: relay.pin.to_string(),
        transport: e.transport_name()?,
        connected: e.is_connected(),
        invite_qr: qr_data_url(&text)?,
        invite: text,
    })
}

#[tauri::command]
pub fn conversations(app: AppState<'_>) -> UiResult<Vec<ConversationView>> {
    let engine = app.engine()?;
    let list = engine.conversations()?;
    list.iter()
        .map(|c| {
            let mut v = ConversationView::from(c);
            v.contact.blocked = engine.is_blocked(&c.contact.account_id)?;
            Ok(v)
        })
        .collect()
}

#[tauri::command]
pub fn history(
    app: AppState<'_>,
    contact: String,
    before: Option<i64>,
    limit: Option<u32>,
) -> UiResult<Vec<MessageView>> {
    let c = account(&contact)?;
    let engine = app.engine()?;
    let list = engine.history(&c, before, limit.unwrap_or(50).min(500))?;
    list.iter()
        .map(|m| crate::actions::full_view(&engine, m))
        .collect()
}

/// The conversation's disappearing-message timer, seconds (0: off; docs/disappearing.md).
#[tauri::command]
pub async fn timer(app: AppState<'_>, contact: String) -> UiResult<u32> {
    Ok(app.engine()?.timer(&account(&contact)?)?)
}

/// Sets the conversation's disappearing-message timer; both sides see the change.
#[tauri::command]
pub async fn set_timer(app: AppState<'_>, contact: String, seconds: u32) -> UiResult<()> {
    Ok(app
        .engine()?
        .set_timer(&account(&contact)?, seconds)
        .await?)
}

#[tauri::command]
pub async fn mark_read(app: AppState<'_>, contact: String) -> UiResult<usize> {
    let c = account(&contact)?;
    let engine = app.engine()?;
    match engine.mark_read(&c).await {
        Ok(n) => Ok(n),
        // Marked here; the receipts wait in the outbox.
        Err(CoreError::Net(e)) => {
            tracing::info!(error = %e, "relay not reachable: read receipts wait in the outbox");
            Ok(0)
        }
        Err(e) => Err(e.into()),
    }
}

#[tauri::command]
pub fn search(app: AppState<'_>, text: String) -> UiResult<Vec<MessageView>> {
    let hits = app.engine()?.search(&text, 100)?;
    Ok(hits.iter().map(Into::into).collect())
}

#[tauri::command]
pub fn contacts(app: AppState<'_>) -> UiResult<Vec<ContactView>> {
    let engine = app.engine()?;
    let list = engine.contacts()?;
    list.iter()
        .map(|c| {
            let mut v = ContactView::from(c);
            v.blocked = engine.is_blocked(&c.account_id)?;
            Ok(v)
        })
        .collect()
}

/// The request box: who asked to be a contact, with a short preview only.
#[tauri::command]
pub fn requests(app: AppState<'_>) -> UiResult<Vec<RequestView>> {
    let list = app.engine()?.requests()?;
    Ok(list.iter().map(Into::into).collect())
}

#[tauri::command]
pub async fn add_contact(
    app: AppState<'_>,
    code: String,
    name: Option<String>,
) -> UiResult<ContactView> {
    let invite = Invite::parse(code.trim())?;
    let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    let c = app.engine()?.add_contact(&invite, name.as_deref()).await?;
    Ok((&c).into())
}

#[tauri::command]
pub async fn answer_request(
    app: AppState<'_>,
    contact: String,
    accept: bool,
) -> UiResult<ContactView> {
    let c = account(&contact)?;
    let c = app.engine()?.answer_request(&c, accept).await?;
    Ok((&c).into())
}

/// The safety number shared with a contact.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Safety {
    /// 60 digits in groups of five.
    digits: String,
    /// QR code of the digits (SVG data URL).
    qr: String,
    verified: bool,
    /// The contact's identity changed since it was first seen.
    changed: bool,
}

#[tauri::command]
pub fn safety_number(app: AppState<'_>, contact: String) -> UiResult<Safety> {
    let c = account(&contact)?;
    let (digits, verified, changed) = app.engine()?.safety_number(&c)?;
    Ok(Safety {
        qr: qr_data_url(&digits)?,
        digits,
        verified,
        changed,
    })
}

#[tauri::command]
pub fn verify_contact(app: AppState<'_>, contact: String) -> UiResult<()> {
    let c = account(&contact)?;
    Ok(app.engine()?.verify(&c)?)
}

/// The settings screen's values.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    lock_on_card_removal: bool,
    idle_lock_minutes: u32,
    lock_on_focus_loss: bool,
    notification_content: bool,
    /// Read receipts sent and shown (docs/conversations.md).
    read_receipts: bool,
    /// Typing indicators sent and shown.
    typing_indicators: bool,
    /// Link previews made (through Tor) for what we send (docs/link-previews.md).
    link_previews: bool,
    /// Update checks allowed (through Tor only; docs/updates.md).
    update_checks: bool,
    theme: String,
    /// Transport for the next unlock (`tor` or `direct`).
    transport: &'static str,
    /// Page zoom (1 = 100 %).
    zoom: String,
    /// Calls: `relay_only` or `direct`.
    call_ice_policy: &'static str,
    /// Calls may leave Tor (their UDP goes straight to the relay's TURN service).
    calls_outside_tor: bool,
    /// Whether a duress password is set.
    duress_password: bool,
    /// The panic shortcut (empty: none).
    panic_shortcut: String,
    /// The scheduled-backup folder (`None`: scheduled backups off).
    backup_folder: Option<String>,
    /// Days between scheduled backups.
    backup_every_days: u32,
    /// Whether a recovery key was made (the first backup makes it and shows it once).
    has_recovery_key: bool,
}

#[tauri::command]
pub fn settings(app: AppState<'_>) -> UiResult<Settings> {
    let e = app.engine()?;
    let get = |n: &str| e.app_setting(n).map(Option::unwrap_or_default);
    let schedule = e.backup_schedule()?;
    Ok(Settings {
        lock_on_card_removal: e.lock_on_card_removal()?,
        idle_lock_minutes: get("idle_lock_minutes")?.parse().unwrap_or(0),
        lock_on_focus_loss: get("lock_on_focus_loss")? == "on",
        notification_content: get("notification_content")? == "on",
        read_receipts: get("read_receipts")? != "off",
        typing_indicators: get("typing_indicators")? != "off",
        link_previews: e.link_previews()?,
        update_checks: e.update_checks()?,
        theme: match get("theme")?.as_str() {
            "" => "system".into(),
            t => t.into(),
        },
        transport: e.configured_transport()?,
        zoom: match get("zoom")?.as_str() {
            "" => "1".into(),
            z => z.into(),
        },
        call_ice_policy: app.phone()?.0.policy()?.as_str(),
        calls_outside_tor: get(tessera_core::phone::OUTSIDE_TOR_SETTING)? == "on",
        duress_password: e.duress_configured()?,
        panic_shortcut: get(crate::shortcut::SETTING)?,
        backup_folder: schedule
            .as_ref()
            .map(|(f, _)| f.to_string_lossy().into_owned()),
        backup_every_days: schedule.map_or(7, |(_, d)| d),
        has_recovery_key: e.has_recovery_key()?,
    })
}

#[tauri::command]
pub fn set_setting<R: tauri::Runtime>(
    app: AppState<'_>,
    webview: tauri::Webview<R>,
    name: String,
    value: String,
) -> UiResult<()> {
    let e = app.engine()?;
    let bool_value = || match value.as_str() {
        "on" | "off" => Ok(()),
        _ => Err(UiError::new("bad_setting", "expected on or off")),
    };
    match name.as_str() {
        "lock_on_card_removal" => {
            bool_value()?;
            e.set_lock_on_card_removal(value == "on")?;
        }
        "call_ice_policy" => {
            if tessera_calls::session::IcePolicy::parse(&value).is_none() {
                return Err(UiError::new(
                    "bad_setting",
                    "call_ice_policy is relay_only or direct",
                ));
            }
            e.set_app_setting(&name, &value)?;
        }
        "lock_on_focus_loss"
        | "notification_content"
        | "calls_outside_tor"
        | "read_receipts"
        | "typing_indicators"
        | "link_previews" => {
            bool_value()?;
            e.set_app_setting(&name, &value)?;
        }
        "idle_lock_minutes" => {
            let m: u32 = value
                .parse()
                .ok()
                .filter(|m| *m <= 24 * 60)
                .ok_or_else(|| UiError::new("bad_setting", "minutes from 0 (never) to 1440"))?;
            e.set_app_setting(&name, &m.to_string())?;
        }
        "zoom" => {
            let z: f64 = value
                .parse()
                .ok()
                .filter(|z| (0.5..=3.0).contains(z))
                .ok_or_else(|| UiError::new("bad_setting", "zoom from 0.5 to 3"))?;
            webview
                .set_zoom(z)
                .map_err(|e| UiError::new("internal", format!("zoom: {e}")))?;
            e.set_app_setting(&name, &value)?;
        }
        "update_checks" => {
            bool_value()?;
            e.set_update_checks(value == "on")?;
        }
        "transport" => match value.as_str() {
            "tor" => e.set_transport(true)?,
            "direct" => e.set_transport(false)?,
            _ => return Err(UiError::new("bad_setting", "transport is tor or direct")),
        },
        crate::shortcut::SETTING => {
            crate::shortcut::apply(tauri::Manager::app_handle(&webview), app.inner(), &value)?;
            e.set_app_setting(&name, value.trim())?;
        }
        "theme" => {
            if !["system", "light", "dark"].contains(&value.as_str()) {
                return Err(UiError::new(
                    "bad_setting",
                    "theme is system, light or dark",
                ));
            }
            e.set_app_setting(&name, &value)?;
        }
        _ => return Err(CoreError::UnknownSetting.into()),
    }
    Ok(())
}

#[tauri::command]
pub async fn change_password(app: AppState<'_>, old: String, new: String) -> UiResult<()> {
    let (old, new) = (password(old), password(new));
    let engine = app.engine()?;
    if strength_of(std::str::from_utf8(&new).unwrap_or_default(), "").score < MIN_SCORE {
        return Err(UiError::new(
            "weak_password",
            "the password is too easy to guess",
        ));
    }
    let tap = tap_for_vault(&app, &old).await?;
    engine
        .change_password(old, new, None, tap.map(|t| t.factor))
        .await?;
    Ok(())
}

/// A backup that was written, for the page: the recovery key only when this backup made it
/// (the page shows it once).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupView {
    path: String,
    bytes: u64,
    recovery_key: Option<String>,
}

/// Makes a backup now into `folder` (`docs/backup.md`).
#[tauri::command]
pub async fn backup_now(app: AppState<'_>, folder: String) -> UiResult<BackupView> {
    let engine = app.engine()?;
    let folder = folder_path(&folder)?;
    let made = engine.backup_into(&folder).await?;
    Ok(BackupView {
        path: made.path.to_string_lossy().into_owned(),
        bytes: made.bytes,
        recovery_key: made.recovery_key.map(|k| k.grouped().to_string()),
    })
}

/// Scheduled backups into `folder` every `every_days` days, or off (`folder` empty). Returns a
/// recovery key when this made it (shown once).
#[tauri::command]
pub async fn backup_schedule(
    app: AppState<'_>,
    folder: String,
    every_days: u32,
) -> UiResult<Option<String>> {
    let engine = app.engine()?;
    let folder = if folder.trim().is_empty() {
        None
    } else {
        Some(folder_path(&folder)?)
    };
    let key = engine
        .set_backup_schedule(folder.as_deref(), every_days)
        .await?;
    Ok(key.map(|k| k.grouped().to_string()))
}

/// A backup folder typed on the page: an absolute path.
fn folder_path(text: &str) -> UiResult<std::path::PathBuf> {
    let path = std::path::PathBuf::from(text.trim());
    if !path.is_absolute() {
        return Err(UiError::new(
            "backup_folder",
            "the backup folder must be a full path",
        ));
    }
    Ok(path)
}

/// Sets the duress password (`docs/duress.md`); needs the password and a card tap.
#[tauri::command]
pub async fn duress_set(app: AppState<'_>, password: String, duress: String) -> UiResult<()> {
    let engine = app.engine()?;
    if duress.is_empty() {
        return Err(UiError::new("duress_empty", "the duress password is empty"));
    }
    let password = self::password(password);
    let tap = tap_for_vault(&app, &password).await?;
    engine
        .set_duress(
            password,
            tap.map(|t| t.factor),
            self::password(duress),
            None,
        )
        .await?;
    Ok(())
}

/// Clears the duress password; needs the password and a card tap.
#[tauri::command]
pub async fn duress_clear(app: AppState<'_>, password: String) -> UiResult<()> {
    let engine = app.engine()?;
    let password = self::password(password);
    let tap = tap_for_vault(&app, &password).await?;
    engine.clear_duress(password, tap.map(|t| t.factor)).await?;
    Ok(())
}

/// How long a card replacement may leave the reader empty before the app locks.
const SWAP_TIME: std::time::Duration = std::time::Duration::from_secs(180);

/// Card replacement, step 1: a fresh read of the enrolled card and the password, both checked
/// (nothing changes yet). From now until step 2 or [`card_swap_cancel`] (at most three
/// minutes), taking the card away does not lock.
#[tauri::command]
pub async fn card_swap_start(app: AppState<'_>, password: String) -> UiResult<()> {
    let pw = self::password(password);
    let engine = app.engine()?;
    let dir = app.config.data_dir.clone();
    let reader = app.config.reader.clone();
    let check_pw = pw.clone();
    let old = blocking(move || {
        let tap =
            card_retry(|| card::tap_for_vault(&dir, &check_pw, &OsKeyring, reader.as_deref()))?
                .ok_or(CoreError::Vault(tessera_store::VaultError::NoCardEnrolled))?;
        Vault::check_factors(&dir, &check_pw, &OsKeyring, Some(&tap.factor))
            .map_err(CoreError::from)?;
        Ok(tap.factor)
    })
    .await?;
    // The engine keeps the checked factors until step 2, cancel, expiry or lock.
    engine.begin_card_swap(SWAP_TIME, pw, old);
    Ok(())
}

/// Card replacement, step 2: the card now on the reader is set up (a factory card is
/// provisioned; a card this keyring already holds keys for is used as it is), read, and the
/// vault rewrapped to it. Returns the new card's UID.
#[tauri::command]
pub async fn card_swap_finish(
    app: AppState<'_>,
    on_progress: Channel<UiEvent>,
) -> UiResult<String> {
    let engine = app.engine()?;
    // Left in the engine until the replacement is done: after a failure the user can put the
    // right card on and try again.
    let (password, old) = engine
        .card_swap_factors()
        .ok_or_else(|| UiError::new("no_swap", "start the card replacement first"))?;
    let reader = app.config.reader.clone();
    let step = progress(on_progress, 3);
    let old_uid = old.uid;
    let result = blocking(move || {
        step(1, "Looking for the new card");
        let st = card_on_reader(reader.as_deref())?;
        if st.uid.as_deref() == Some(hex::encode(old_uid).as_str()) {
            return Err(CoreError::Vault(tessera_store::VaultError::SameCard).into());
        }
        match st.provisioning {
            Some("factory") => {
                step(2, "Writing a new secret and keys to the new card");
                card_retry(|| Ok(card::provision(&OsKeyring, Some(&st.reader), how(false))?))?;
            }
            Some("provisioned") => step(2, "The new card is already set up on this computer"),
            _ => {
                return Err(UiError::new(
                    "not_factory_fresh",
                    "the new card is set up by someone else; use a new card",
                ));
            }
        }
        step(3, "Reading the new card");
        let tap = card_retry(|| Ok(card::tap(&OsKeyring, Some(&st.reader))?))?;
        Ok(tap.factor)
    })
    .await;
    let new = result?;
    let uid = hex::encode(new.uid);
    engine.replace_card(password, old, new).await?;
    engine.end_card_swap();
    Ok(uid)
}

/// Ends a card replacement without changing anything; if the reader is empty, the app locks.
#[tauri::command]
pub fn card_swap_cancel(app: AppState<'_>) {
    if let Ok(e) = app.engine() {
        e.end_card_swap();
    }
}

/// The call screen's view of the call going on.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    call: String,
    contact: String,
    contact_name: String,
    outgoing: bool,
    state: &'static str,
    video: bool,
    /// `relay_only` or `direct`.
    policy: &'static str,
    muted: bool,
    camera: bool,
    duration_secs: Option<u64>,
    /// `good`, `fair` or `poor`.
    quality: &'static str,
    /// Frames the frame layer dropped (tampered, replayed, unknown key).
    dropped: u64,
    /// The safety number was compared and marked verified.
    verified: bool,
    /// The contact's identity changed since it was verified or first seen.
    identity_changed: bool,
    devices: crate::devices::DeviceReport,
}

/// How the call sounds, from what the frame layer and the connection say.
fn quality(connection: &str, stats: &tessera_calls::session::SessionStats) -> &'static str {
    let opened = stats.audio_frames.opened + stats.video_frames.opened;
    let dropped = stats.dropped() + stats.undecodable;
    if connection != "connected" {
        "poor"
    } else if dropped * 100 > (opened + dropped).max(1) * 5 {
        "fair"
    } else {
        "good"
    }
}

#[tauri::command]
pub async fn call_start(app: AppState<'_>, contact: String, video: bool) -> UiResult<String> {
    let c = account(&contact)?;
    let (phone, _) = app.phone()?;
    let id = phone.dial(&c, video).await?;
    Ok(hex::encode(id.0))
}

#[tauri::command]
pub async fn call_accept(app: AppState<'_>) -> UiResult<()> {
    Ok(app.phone()?.0.accept().await?)
}

#[tauri::command]
pub async fn call_reject(app: AppState<'_>) -> UiResult<()> {
    Ok(app.phone()?.0.reject().await?)
}

#[tauri::command]
pub async fn call_hang_up(app: AppState<'_>) -> UiResult<()> {
    Ok(app.phone()?.0.hang_up().await?)
}

#[tauri::command]
pub async fn call_mute(app: AppState<'_>, muted: bool) -> UiResult<()> {
    Ok(app.phone()?.0.set_muted(muted).await?)
}

#[tauri::command]
pub async fn call_camera(app: AppState<'_>, on: bool) -> UiResult<()> {
    let (phone, devices) = app.phone()?;
    phone.set_camera(on).await?;
    devices.set_camera(on);
    Ok(())
}

#[tauri::command]
pub async fn call_status(app: AppState<'_>) -> UiResult<Option<CallView>> {
    let engine = app.engine()?;
    let (phone, devices) = app.phone()?;
    let Some(s) = phone.status().await else {
        return Ok(None);
    };
    let name = engine
        .contacts()?
        .into_iter()
        .find(|c| c.account_id == s.contact)
        .map(|c| c.name)
        .unwrap_or_default();
    let (_, verified, identity_changed) = engine.safety_number(&s.contact)?;
    Ok(Some(CallView {
        call: hex::encode(s.call.0),
        contact: AccountId(s.contact).to_string(),
        contact_name: name,
        outgoing: s.role == tessera_calls::call::Role::Caller,
        state: crate::view::state_name(s.state),
        video: s.video,
        policy: s.policy.as_str(),
        muted: s.muted,
        camera: s.camera,
        duration_secs: s.duration.map(|d| d.as_secs()),
        quality: quality(&s.connection, &s.stats),
        dropped: s.stats.dropped(),
        verified,
        identity_changed,
        devices: devices.report(),
    }))
}

#[tauri::command]
pub fn call_video(app: AppState<'_>, channel: Channel<tauri::ipc::InvokeResponseBody>) {
    app.set_video_channel(channel);
}
