//! The desktop app in a real window: Xvfb + tauri-driver + WebKitWebDriver, a real relay, real
//! pcscd with Tessera's virtual cards. Each app instance gets its own X display (so its
//! screenshots show only it), data directory and vpcd slot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tessera_e2e::card::{Sim, pcscd, slots};
use tessera_e2e::relay::Relay;
use tessera_e2e::webdriver::{Session, TauriDriver, Xvfb};

const LONG: Duration = Duration::from_secs(60);

fn tools() {
    for tool in ["Xvfb", "tauri-driver", "WebKitWebDriver", "import"] {
        assert!(
            tessera_e2e::on_path(tool),
            "{tool} is not installed; run ./scripts/setup"
        );
    }
}

/// One app instance in its own X server.
struct App {
    name: &'static str,
    session: Session,
    _driver: TauriDriver,
    xvfb: Xvfb,
}

impl App {
    fn start(name: &'static str, args: &[String]) -> App {
        let xvfb = Xvfb::start();
        let log = tessera_e2e::artifacts_dir().join(format!("ui-{name}-tauri-driver.log"));
        let driver = TauriDriver::start(xvfb.display, &log);
        let session = Session::start(&driver, &tessera_e2e::bin_path("tessera-desktop"), args);
        App {
            name,
            session,
            _driver: driver,
            xvfb,
        }
    }

    /// Saves `e2e-artifacts/ui-<screen>.png` (after the last paint) and checks it is an image.
    fn screenshot(&self, screen: &str) {
        std::thread::sleep(Duration::from_millis(700));
        let shot = tessera_e2e::artifacts_dir().join(format!("ui-{screen}.png"));
        let _ = std::fs::remove_file(&shot);
        self.xvfb.screenshot(&shot);
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 5000,
            "screenshot {} is missing or empty",
            shot.display()
        );
    }

    /// On the lock screen with another account's card: the status says so, and unlocking with
    /// the right password is refused with the same message.
    fn refused_as_wrong_card(&self, password: &str) {
        self.wait_text("#card-status", "not the card for this vault");
        self.session.type_into("#password", password);
        self.session.click("#unlock");
        self.wait_text("#unlock-error", "not the card for this vault");
    }

    /// The lock screen is still what the window shows.
    fn assert_locked(&self) {
        let hidden = self
            .session
            .js("return document.querySelector('#lock-screen').hidden;");
        assert_eq!(hidden, false, "{} is not on the lock screen", self.name);
    }

    fn value(&self, css: &str) -> String {
        self.session
            .js(&format!("return document.querySelector({css:?}).value;"))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until `css`'s text contains `text`.
    fn wait_text(&self, css: &str, text: &str) -> String {
        let t = text.to_string();
        self.session.wait_text(css, LONG, move |s| s.contains(&t))
    }
}

fn args(dir: &Path, reader: &str, relay: &Relay) -> Vec<String> {
    vec![
        "--data-dir".into(),
        dir.to_str().unwrap().into(),
        "--reader".into(),
        reader.into(),
        "--relay".into(),
        relay.address.to_string(),
    ]
}

/// First run through the window: relay (prefilled), direct transport, password with its
/// strength shown, the card provisioned step by step, the device name.
fn first_run(app: &App, relay: &Relay, password: &str, shot: bool) {
    let s = &app.session;
    s.wait_visible("#first-run", LONG);
    assert_eq!(app.value("#fr-relay"), relay.address.to_string());
    // A relay on loopback cannot be reached through Tor: direct is preselected.
    assert_eq!(app.value("#fr-transport"), "direct");
    s.type_into("#fr-password", "password");
    app.wait_text("#fr-strength", "weak");
    s.type_into("#fr-password", password);
    app.wait_text("#fr-strength", "strong");
    s.type_into("#fr-password2", password);
    app.wait_text("#fr-card-status", "factory");
    s.click("#fr-provision");
    // Done, or refused: either way say what the window shows.
    let outcome = s.wait_js(
        "the card provisioned or a provisioning error",
        "const d = document.querySelector('#fr-provision-done'); \
         const e = document.querySelector('#fr-error'); \
         return d ? d.textContent : (e && !e.hidden && e.textContent) ? 'error: ' + e.textContent : '';",
        LONG,
    );
    let outcome = outcome.as_str().unwrap_or_default().to_string();
    assert!(
        outcome.contains("is ready"),
        "{}: provisioning the card did not finish: {outcome}; steps shown: {}",
        app.name,
        s.js("return Array.from(document.querySelectorAll('#fr-provision-log li')).map(l => l.textContent).join(' | ');")
    );
    let steps = s.js("return document.querySelectorAll('#fr-provision-log li[data-step]').length;");
    assert_eq!(steps, 4, "each provisioning step is shown");
    s.type_into("#fr-name", app.name);
    if shot {
        app.screenshot("first-run");
    }
    s.click("#fr-create");
    s.wait_visible("#main", LONG);
    app.wait_text("#me-name", app.name);
}

fn send(app: &App, text: &str) {
    app.session.type_into("#compose", text);
    app.session.click("#send");
    let t = text.to_string();
    app.session.wait_js(
        "the sent message in the log",
        &format!(
            "return [...document.querySelectorAll('#chat-log .msg.out .body')].some(e => e.textContent === {t:?});"
        ),
        LONG,
    );
}

fn open_chat(app: &App, with: &str) {
    app.session.click("#nav-chats");
    let sel = format!("#conv-list button[data-name={with:?}]");
    app.session.wait_visible(&sel, LONG);
    app.session.click(&sel);
    app.wait_text("#chat-title", with);
}

fn wait_incoming(app: &App, text: &str) {
    app.session.wait_js(
        &format!("{text:?} to arrive"),
        &format!(
            "return [...document.querySelectorAll('#chat-log .msg.in .body')].some(e => e.textContent === {text:?});"
        ),
        LONG,
    );
}

/// Invites: Bob pastes Alice's code; Alice accepts the request; both see the other accepted.
fn befriend(alice: &App, bob: &App, shot: bool) {
    alice.session.click("#nav-contacts");
    alice.session.wait_js(
        "the invite QR code",
        "return document.querySelector('#invite-qr').src.startsWith('data:image/svg+xml');",
        LONG,
    );
    let invite = alice.value("#my-invite");
    assert!(invite.len() > 20, "invite: {invite:?}");
    if shot {
        alice.screenshot("contacts");
    }
    bob.session.click("#nav-contacts");
    bob.session.type_into("#add-code", &invite);
    bob.session.type_into("#add-name", "alice");
    bob.session.click("#add-contact");
    bob.wait_text("#add-done", "Request sent to alice");
    alice.session.wait_visible("#requests button.accept", LONG);
    alice.session.click("#requests button.accept");
    alice.session.wait_js(
        "bob accepted in the contact list",
        "return !!document.querySelector('#contact-list li[data-state=\"accepted\"]');",
        LONG,
    );
    bob.session.wait_js(
        "alice accepted on bob's side",
        "return !!document.querySelector('#contact-list li[data-state=\"accepted\"]');",
        LONG,
    );
}

/// Marks the message in `app`'s open conversation whose text is `text` (`.msg.in` or
/// `.msg.out` as `side` says) with the id `target`, and focuses it (its actions show).
fn target(app: &App, side: &str, text: &str) {
    app.session.wait_js(
        &format!("the message {text:?}"),
        &format!(
            "const n = [...document.querySelectorAll('#chat-log .msg.{side}')]
               .find(n => n.querySelector('.body').textContent === {text:?});
             if (!n) return false;
             document.querySelector('#target')?.removeAttribute('id');
             n.id = 'target'; n.focus(); return true;"
        ),
        LONG,
    );
}

/// docs/message-actions.md through the window: Bob replies to Alice's message, Alice reacts
/// to the reply, Bob edits it and then deletes it for everyone; each change shows on the
/// other side.
fn message_actions_through_the_window(alice: &App, bob: &App) {
    // Typing shows on the other side (docs/conversations.md §Typing).
    bob.session.type_into("#compose", "thinking");
    alice.session.wait_js(
        "bob typing",
        "return !document.querySelector('#typing').hidden;",
        LONG,
    );
    bob.session
        .js("document.querySelector('#compose').value = ''; return true;");
    target(bob, "in", "hello bob, read you");
    bob.session.click("#target .act-reply");
    bob.wait_text("#compose-state-text", "Replying to: hello bob, read you");
    send(bob, "a reply, through the window");
    alice.session.wait_js(
        "the reply, naming what it quotes",
        "return [...document.querySelectorAll('#chat-log .msg.in')].some(n =>
           n.querySelector('.body').textContent === 'a reply, through the window'
           && n.querySelector('.reply-ref'));",
        LONG,
    );
    target(alice, "in", "a reply, through the window");
    alice.session.click("#target .act-react");
    alice.session.click("#target .menu.picker button");
    bob.session.wait_js(
        "alice's reaction on bob's side",
        "return [...document.querySelectorAll('#chat-log .msg.out')].some(n =>
           n.querySelector('.body').textContent === 'a reply, through the window'
           && n.querySelector('.reaction'));",
        LONG,
    );
    alice.screenshot("actions-reply-reaction");
    target(bob, "out", "a reply, through the window");
    bob.session.click("#target .act-edit");
    bob.wait_text("#compose-state-text", "Editing your message");
    bob.session.type_into("#compose", "an edited reply");
    bob.session.click("#send");
    alice.session.wait_js(
        "the edited text, marked edited",
        "return [...document.querySelectorAll('#chat-log .msg.in')].some(n =>
           n.querySelector('.body').textContent === 'an edited reply' && n.querySelector('.edited'));",
        LONG,
    );
    target(bob, "out", "an edited reply");
    bob.session.click("#target .act-delete");
    bob.session.click("#target .del-everyone");
    alice.session.wait_js(
        "the tombstone",
        "return !!document.querySelector('#chat-log .msg.in .body.deleted')
           && ![...document.querySelectorAll('#chat-log .msg .body')].some(b =>
                b.textContent.includes('edited reply'));",
        LONG,
    );
    alice.screenshot("actions-deleted");
}

/// The note to self (docs/conversations.md): a conversation of its own in the list, with
/// nobody to call or block.
fn note_to_self_through_the_window(alice: &App) {
    alice.session.click("#open-notes");
    alice.wait_text("#chat-title", "Note to self");
    send(alice, "remember the ptarmigan photos");
    alice.session.wait_js(
        "the note to self in the conversation list",
        "const b = document.querySelector('#conv-list button.conv.notes');
         return !!b && b.querySelector('.name').textContent === 'Note to self'
           && b.querySelector('.last').textContent.includes('ptarmigan photos')
           && document.querySelector('#call-audio').hidden
           && document.querySelector('#conv-block').hidden;",
        LONG,
    );
    alice.screenshot("note-to-self");
}

/// Privacy settings through the window (docs/conversations.md, docs/link-previews.md): read
/// receipts, typing indicators and link previews change and stay changed; with link previews on
/// and a direct connection, a link in the composer gets no preview, and the composer says why.
fn privacy_settings_through_the_window(alice: &App, bob_name: &str) {
    alice.session.click("#nav-settings");
    alice.session.wait_visible("#set-link-previews", LONG);
    let checked = |css: &str| {
        alice
            .session
            .js(&format!("return document.querySelector({css:?}).checked;"))
    };
    assert_eq!(checked("#set-link-previews"), false, "off by default");
    for css in ["#set-read-receipts", "#set-typing", "#set-link-previews"] {
        alice.session.click(css);
    }
    // Each change reached the vault: the screen read again shows it, and no error.
    alice.session.click("#nav-chats");
    alice.session.click("#nav-settings");
    alice.session.wait_js(
        "the changed settings, read again",
        "return document.querySelector('#set-link-previews').checked
           && !document.querySelector('#set-read-receipts').checked
           && !document.querySelector('#set-typing').checked
           && document.querySelector('#settings-error').hidden;",
        LONG,
    );
    alice.session.click("#set-read-receipts");
    alice.session.click("#set-typing");
    open_chat(alice, bob_name);
    alice
        .session
        .type_into("#compose", "the trail: https://127.0.0.1:9/ridge");
    alice.session.wait_js(
        "the composer saying why there is no preview",
        "const p = document.querySelector('#compose-preview');
         return !p.hidden && p.textContent.includes('through Tor only');",
        LONG,
    );
    alice.screenshot("link-preview-needs-tor");
    alice
        .session
        .js("const c = document.querySelector('#compose'); c.value = '';
         c.dispatchEvent(new Event('input')); return true;");
    alice.session.wait_js(
        "the preview note gone with the link",
        "return document.querySelector('#compose-preview').hidden;",
        LONG,
    );
    alice.session.click("#nav-settings");
    alice.session.click("#set-link-previews");
    alice.session.wait_js(
        "read receipts and typing back on",
        "return document.querySelector('#set-read-receipts').checked
           && document.querySelector('#set-typing').checked;",
        LONG,
    );
}

#[test]
fn ui_two_apps_first_run_chat_search_lock_on_removal_and_refusals() {
    tools();
    let _slots = slots();
    let _pcscd = pcscd();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let (card_a, card_b): (PathBuf, PathBuf) = (
        dir.path().join("card-a.json"),
        dir.path().join("card-b.json"),
    );
    let sim_a = Sim::insert(&card_a, 0);
    let sim_b = Sim::insert(&card_b, 1);
    let password = "ochre lantern quietly folds 91 maps";

    let alice = App::start(
        "alice",
        &args(&dir.path().join("alice"), &sim_a.reader, &relay),
    );
    let bob = App::start("bob", &args(&dir.path().join("bob"), &sim_b.reader, &relay));
    first_run(&alice, &relay, password, true);
    first_run(&bob, &relay, password, false);
    alice.wait_text("#net-status", "Connected to the relay");
    alice.screenshot("conversations-empty");

    befriend(&alice, &bob, true);

    // Chat both ways; the unread count, then the read mark.
    let alice_sees = bob
        .session
        .js("return document.querySelector('#contact-list li .name').textContent;");
    assert_eq!(alice_sees, "alice");
    open_chat(&bob, "alice");
    send(&bob, "the first message, about ptarmigans");
    send(&bob, "hello alice");
    alice.session.click("#nav-chats");
    alice.session.wait_js(
        "an unread count of 2",
        "return [...document.querySelectorAll('#conv-list .unread')].some(e => e.textContent === '2');",
        LONG,
    );
    let bob_name = alice
        .session
        .js("return document.querySelector('#conv-list button').dataset.name;");
    let bob_name = bob_name.as_str().unwrap().to_string();
    open_chat(&alice, &bob_name);
    wait_incoming(&alice, "hello alice");
    bob.session.wait_js(
        "read marks on bob's messages",
        "return document.querySelectorAll('#chat-log .msg.out .mark-read').length === 2;",
        LONG,
    );
    send(&alice, "hello bob, read you");
    wait_incoming(&bob, "hello bob, read you");
    let days = alice
        .session
        .js("return document.querySelectorAll('#chat-log .day').length;");
    assert_eq!(days, 1, "one day separator for today's messages");
    alice.screenshot("chat");
    bob.screenshot("chat-bob");
    message_actions_through_the_window(&alice, &bob);
    note_to_self_through_the_window(&alice);
    privacy_settings_through_the_window(&alice, &bob_name);
    open_chat(&alice, &bob_name);

    // Search finds the older message.
    alice.session.type_into("#search", "ptarmigans");
    alice.session.wait_js(
        "a search hit",
        "return [...document.querySelectorAll('#search-results .hit .last')].some(e => e.textContent.includes('ptarmigans'));",
        LONG,
    );
    alice.screenshot("search");
    alice.session.js(
        "const s = document.querySelector('#search'); s.value = ''; s.dispatchEvent(new Event('input'));",
    );

    // Safety number: 60 digits and a QR code; mark verified.
    alice.session.click("#nav-contacts");
    alice
        .session
        .wait_visible("#contact-list button.safety-open", LONG);
    alice.session.click("#contact-list button.safety-open");
    alice.session.wait_visible("#safety", LONG);
    let digits = alice
        .session
        .js("return document.querySelector('#safety-digits').textContent.replace(/ /g, '');");
    let digits = digits.as_str().unwrap().to_string();
    assert_eq!(digits.len(), 60, "{digits}");
    assert!(digits.bytes().all(|b| b.is_ascii_digit()));
    let bob_digits = {
        bob.session.click("#nav-contacts");
        bob.session
            .wait_visible("#contact-list button.safety-open", LONG);
        bob.session.click("#contact-list button.safety-open");
        bob.session.wait_visible("#safety", LONG);
        bob.session
            .js("return document.querySelector('#safety-digits').textContent.replace(/ /g, '');")
    };
    assert_eq!(
        bob_digits,
        digits.as_str(),
        "both sides show the same number"
    );
    alice.screenshot("safety-number");
    alice.session.click("#mark-verified");
    alice.wait_text("#safety-state", "Verified");

    // Settings show the relay and pin; lock on card removal is on by default.
    alice.session.click("#nav-settings");
    alice.wait_text("#set-relay", &relay.address.authority());
    assert_eq!(
        alice.session.text("#set-pin"),
        relay.address.pin.to_string()
    );
    let on = alice
        .session
        .js("return document.querySelector('#set-lock-removal').checked;");
    assert_eq!(on, true);
    alice.screenshot("settings");
    // Dark theme, and 200 % zoom: the layout reflows (no sideways scrolling).
    let set = |css: &str, value: &str| {
        alice.session.js(&format!(
            "const s = document.querySelector({css:?}); s.value = {value:?}; \
             s.dispatchEvent(new Event('change'));"
        ));
    };
    set("#set-theme", "dark");
    alice.session.wait_js(
        "a dark background",
        "return document.documentElement.dataset.theme === 'dark' && \
         getComputedStyle(document.body).backgroundColor === 'rgb(17, 26, 36)';",
        LONG,
    );
    let width = alice
        .session
        .js("return window.innerWidth;")
        .as_f64()
        .unwrap();
    set("#set-zoom", "2");
    alice.session.wait_js(
        "the page at 200 %",
        &format!("return window.innerWidth <= {} / 1.9;", width),
        LONG,
    );
    alice.screenshot("settings-dark-200");
    alice.session.click("#nav-chats");
    open_chat(&alice, &bob_name);
    let overflow = alice
        .session
        .js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;");
    assert!(
        overflow.as_f64().unwrap() <= 1.0,
        "sideways overflow at 200 %: {overflow}"
    );
    alice.screenshot("chat-dark-200");
    alice.session.click("#nav-settings");
    set("#set-zoom", "1");
    set("#set-theme", "system");
    alice.session.wait_js(
        "the page at 100 %",
        &format!("return window.innerWidth >= {width} - 1;"),
        LONG,
    );
    alice.session.click("#nav-chats");
    open_chat(&alice, &bob_name);

    // Taking the card away locks the window and clears the page.
    sim_a.remove();
    alice
        .session
        .wait_visible("#lock-screen", Duration::from_secs(10));
    alice.wait_text("#lock-reason", "card left the reader");
    let leftovers = alice
        .session
        .js("return document.querySelectorAll('#chat-log .msg, #conv-list li, #contact-list li').length + document.querySelector('#my-invite').value.length;");
    assert_eq!(leftovers, 0, "the locked page still holds vault content");
    alice.wait_text("#card-status", "Tap your card");
    let version = alice.session.text("#app-version");
    assert!(
        version.starts_with(&format!("Tessera {}", env!("CARGO_PKG_VERSION"))),
        "version line: {version:?}"
    );
    alice.screenshot("lock-screen");

    // Bob's card on Alice's reader: wrong card. (Bob's window locks when his card leaves.)
    sim_b.remove();
    bob.session
        .wait_visible("#lock-screen", Duration::from_secs(10));
    let wrong = Sim::insert(&card_b, 0);
    alice.refused_as_wrong_card(password);
    alice.assert_locked();
    wrong.remove();

    // Alice's card again, a wrong password: refused, still locked.
    let sim_a = Sim::insert(&card_a, 0);
    alice.wait_text("#card-status", "Card ready");
    alice.session.type_into("#password", "not the password");
    alice.session.click("#unlock");
    alice.wait_text("#unlock-error", "Wrong password");
    alice.screenshot("lock-wrong-password");
    alice.assert_locked();

    // Card and the right password: back in the same conversation.
    alice.session.type_into("#password", password);
    alice.session.click("#unlock");
    alice.session.wait_visible("#main", LONG);
    alice.wait_text("#chat-title", &bob_name);
    wait_incoming(&alice, "hello alice");

    // Replace the card from Settings: a fresh read of the current card and the password, then
    // the current card leaves (no lock during the swap) and a new factory card is set up.
    alice.session.click("#nav-settings");
    alice.wait_text("#card-state", "This vault's card");
    alice.session.type_into("#swap-pw", "not the password");
    alice.session.click("#swap-start");
    alice.wait_text("#swap-error", "Wrong password");
    alice.session.type_into("#swap-pw", password);
    alice.session.click("#swap-start");
    alice.session.wait_visible("#swap-finish", LONG);
    sim_a.remove();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        alice
            .session
            .js("return document.querySelector('#main').hidden;"),
        false,
        "the swap locked the window"
    );
    let card_c = dir.path().join("card-c.json");
    let sim_c = Sim::insert(&card_c, 0);
    alice.session.click("#swap-finish");
    alice.wait_text("#swap-done", "now opens with card");
    alice.screenshot("settings-card-replaced");
    // Now the new card is the one: removing it locks, the old card is refused, the new opens.
    sim_c.remove();
    alice
        .session
        .wait_visible("#lock-screen", Duration::from_secs(10));
    let old = Sim::insert(&card_a, 0);
    alice.refused_as_wrong_card(password);
    old.remove();
    let _sim_c = Sim::insert(&card_c, 0);
    alice.wait_text("#card-status", "Card ready");
    alice.session.type_into("#password", password);
    alice.session.click("#unlock");
    alice.session.wait_visible("#main", LONG);
    wait_incoming(&alice, "hello alice");

    // Settings: a backup made now shows the recovery key once (docs/backup.md); a duress
    // password set from the window (it taps the card) leaves the key file's size as it was
    // (docs/duress.md).
    alice.session.click("#nav-settings");
    alice.wait_text("#duress-state", "No duress password");
    let backups = dir.path().join("alice-backups");
    alice
        .session
        .type_into("#backup-folder", backups.to_str().unwrap());
    alice.session.click("#backup-now");
    alice.session.wait_visible("#backup-key-panel", LONG);
    let key = alice.session.text("#backup-key");
    assert_eq!(key.len(), 35, "six groups of five: {key:?}");
    alice.wait_text("#backup-done", "Backup written");
    let written: Vec<_> = std::fs::read_dir(&backups).unwrap().collect();
    assert_eq!(written.len(), 1, "one backup file in {}", backups.display());
    alice.session.click("#backup-key-done");
    assert_eq!(alice.session.text("#backup-key"), "");
    let key_file = dir.path().join("alice/vault.key");
    let size = std::fs::metadata(&key_file).unwrap().len();
    alice.session.type_into("#duress-pw", password);
    alice.session.type_into("#duress-new", password);
    alice.session.click("#duress-set");
    alice.wait_text("#duress-error", "must differ");
    alice.session.type_into("#duress-pw", password);
    alice
        .session
        .type_into("#duress-new", "a different duress phrase");
    alice.session.click("#duress-set");
    alice.wait_text("#duress-state", "A duress password is set");
    alice.screenshot("settings-backup-duress");
    assert_eq!(std::fs::metadata(&key_file).unwrap().len(), size);

    // Panic wipe (docs/panic.md). Bob's window is locked: from the lock screen, no password
    // and no card. Alice's is unlocked: from Settings. Both return to first run with no file
    // of the account left.
    let wiped = |app: &App, home: &Path| {
        app.session.wait_visible("#wipe-dialog", LONG);
        assert_eq!(
            app.session.js("return document.activeElement.id;"),
            "wipe-cancel",
            "Enter alone must not wipe"
        );
        app.screenshot("wipe-confirm");
        app.session.click("#wipe-confirm");
        app.session.wait_visible("#first-run", LONG);
        assert!(!home.exists(), "{}: files of the account remain", app.name);
    };
    bob.session.click("#lock-wipe");
    wiped(&bob, &dir.path().join("bob"));
    alice.session.click("#nav-settings");
    alice.session.click("#set-wipe");
    wiped(&alice, &dir.path().join("alice"));

    alice.session.end();
    bob.session.end();
}

#[test]
fn ui_first_run_screen_and_the_capability_refuses_other_commands() {
    tools();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let app = App::start(
        "fresh",
        &[
            "--data-dir".into(),
            dir.path().join("fresh").to_str().unwrap().into(),
            "--relay".into(),
            relay.address.to_string(),
        ],
    );
    app.session.wait_visible("#first-run", LONG);
    assert_eq!(app.session.text("h1#fr-title"), "Set up Tessera");
    // The recovery policy is on the first-run screen, before the account exists.
    let recovery = app.session.text("#fr-recovery");
    assert!(
        recovery.contains("the account is gone") && recovery.contains("recovery key"),
        "{recovery}"
    );
    assert_eq!(app.value("#fr-relay"), relay.address.to_string());
    // A weak password is refused by the backend too, not only by the meter.
    let refused = app.session.execute_async(
        "const done = arguments[arguments.length - 1];
         window.__TAURI__.core.invoke('create_account', {form: {relay: document.querySelector('#fr-relay').value,
           password: 'password1', name: 'x', transport: 'direct', useCard: false}})
           .then(() => done('created'), e => done(e.code));",
    );
    assert_eq!(refused, "weak_password");
    assert!(!dir.path().join("fresh/vault.key").exists());
    // The capability grants the app's own commands only: a core plugin command is refused.
    let denied = app.session.execute_async(
        "const done = arguments[arguments.length - 1];
         window.__TAURI__.core.invoke('plugin:app|version')
           .then(v => done('allowed: ' + v), e => done('denied: ' + String(e)));",
    );
    let denied = denied.as_str().unwrap_or_default().to_string();
    assert!(
        denied.starts_with("denied"),
        "core command was not refused: {denied}"
    );
    // Commands that need the vault answer `locked` before unlock.
    let locked = app.session.execute_async(
        "const done = arguments[arguments.length - 1];
         window.__TAURI__.core.invoke('conversations').then(() => done('ok'), e => done(e.code));",
    );
    assert_eq!(locked, "locked");
    app.screenshot("first-run-empty");
    app.session.end();
}

/// JavaScript: how many pictures the canvas `css` has drawn.
fn pictures(css: &str) -> String {
    format!("Number(document.querySelector({css:?}).dataset.pictures || 0)")
}

/// A video call between two windows, relay-only through the relay's TURN service. Both apps
/// film the moving test pattern (Xvfb has no camera) and have no sound devices: the call goes
/// on with silence and says so.
#[test]
fn ui_video_call_rings_is_answered_shows_both_pictures_and_hangs_up_on_both() {
    tools();
    let _slots = slots();
    let _pcscd = pcscd();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(&dir.path().join("relay"), &["--turn-listen", "127.0.0.1:0"]);
    let sim_a = Sim::insert(&dir.path().join("card-a.json"), 0);
    let sim_b = Sim::insert(&dir.path().join("card-b.json"), 1);
    let password = "ochre lantern quietly folds 91 maps";
    let with_pattern = |name: &str, reader: &str| {
        let mut a = args(&dir.path().join(name), reader, &relay);
        a.extend(["--camera".into(), "test-pattern".into()]);
        a
    };
    let alice = App::start("alice", &with_pattern("alice", &sim_a.reader));
    let bob = App::start("bob", &with_pattern("bob", &sim_b.reader));
    first_run(&alice, &relay, password, false);
    first_run(&bob, &relay, password, false);
    befriend(&alice, &bob, false);

    // Bob places a video call from the chat with Alice; Alice's window rings.
    open_chat(&bob, "alice");
    bob.session.wait_visible("#call-buttons", LONG);
    bob.session.click("#call-video");
    bob.session.wait_visible("#call-screen", LONG);
    alice.session.wait_js(
        "the incoming-call screen",
        "const s = document.querySelector('#call-screen'); return !s.hidden && s.dataset.state === 'incoming';",
        LONG,
    );
    alice.session.wait_visible("#call-accept", LONG);
    let caller = alice.session.text("#call-name");
    assert!(!caller.is_empty(), "the incoming screen names the caller");
    alice.screenshot("call-incoming");
    alice.session.click("#call-accept");

    for app in [&alice, &bob] {
        app.session.wait_js(
            "the call to be active",
            "return document.querySelector('#call-screen').dataset.state === 'active';",
            LONG,
        );
        // What the call screen promises: end-to-end encrypted, relay only, safety number.
        assert_eq!(app.session.text("#call-e2ee"), "End-to-end encrypted");
        let policy = app
            .session
            .js("return document.querySelector('#call-policy').dataset.policy;");
        assert_eq!(policy, "relay_only", "{}: policy badge", app.name);
        let safety = app
            .session
            .js("return document.querySelector('#call-safety').dataset.safety;");
        assert_eq!(safety, "unverified", "{}: safety badge", app.name);
        // The contact's pictures arrive and are drawn; the preview shows the own camera.
        app.session.wait_js(
            "the contact's video on the canvas",
            &format!("return {} >= 10;", pictures("#call-remote")),
            LONG,
        );
        app.session.wait_js(
            "the local preview",
            &format!("return {} >= 3;", pictures("#call-preview")),
            LONG,
        );
        // The drawn picture is the pattern: a bright bar on grey, not a blank canvas.
        let spread = app.session.js(
            "const c = document.querySelector('#call-remote');
             const d = c.getContext('2d').getImageData(0, c.height >> 1, c.width, 1).data;
             let lo = 255, hi = 0;
             for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i + 1]); hi = Math.max(hi, d[i + 1]); }
             return hi - lo;",
        );
        assert!(
            spread.as_f64().unwrap_or(0.0) > 60.0,
            "{}: the remote picture has no bar (spread {spread})",
            app.name
        );
        app.wait_text("#call-quality", "Connection:");
        app.session.wait_js(
            "the call duration",
            "return /^\\d+:\\d\\d$/.test(document.querySelector('#call-duration').textContent);",
            LONG,
        );
        // No sound devices under Xvfb: said on the screen, the call goes on.
        app.wait_text("#call-devices", "No microphone");
    }
    bob.screenshot("call-active");

    // Mute, then the camera off: the preview goes and the screen says so.
    bob.session.click("#call-mute");
    bob.session.wait_js(
        "the mute button pressed",
        "return document.querySelector('#call-mute').getAttribute('aria-pressed') === 'true';",
        LONG,
    );
    bob.session.click("#call-camera");
    bob.session.wait_js(
        "the preview gone",
        "return document.querySelector('#call-preview').hidden;",
        LONG,
    );
    bob.wait_text("#call-preview-note", "Camera off");
    bob.wait_text("#call-camera", "Camera on");

    // Alice hangs up: the call ends on both screens, and they close.
    alice.session.click("#call-hangup");
    for app in [&alice, &bob] {
        app.session.wait_js(
            "the call to end",
            "const s = document.querySelector('#call-screen'); return s.hidden || s.dataset.state === 'ended';",
            LONG,
        );
        app.session.wait_js(
            "the call screen closed",
            "return document.querySelector('#call-screen').hidden;",
            LONG,
        );
    }
    drop((sim_a, sim_b));
    alice.session.end();
    bob.session.end();
}

/// The panic shortcut (docs/panic.md): one without a modifier is refused; a good one, set in
/// Settings, pressed while the window is locked (real X key events through the X server, as a
/// person's keyboard would send them) wipes the account, and the window returns to first run.
#[test]
fn ui_panic_shortcut_wipes_from_the_lock_screen() {
    tools();
    let _slots = slots();
    let _pcscd = pcscd();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let sim = Sim::insert(&dir.path().join("card-carol.json"), 0);
    let home = dir.path().join("carol");
    let carol = App::start("carol", &args(&home, &sim.reader, &relay));
    first_run(&carol, &relay, "amber kettle wanders past 47 dunes", false);

    carol.session.click("#nav-settings");
    carol.session.type_into("#set-panic-shortcut", "W");
    carol.session.click("#settings-title");
    carol.wait_text("#settings-error", "not a usable shortcut");
    carol
        .session
        .type_into("#set-panic-shortcut", "Ctrl+Alt+Shift+W");
    carol.session.click("#settings-title");
    let saved = carol.session.wait_js(
        "the shortcut saved",
        // Each poll asks the backend again and returns what the last answer said.
        "window.__TAURI__.core.invoke('settings') \
           .then(v => { window.__tesseraShortcut = v.panicShortcut; }); \
         return window.__tesseraShortcut || '';",
        LONG,
    );
    assert_eq!(saved, "Ctrl+Alt+Shift+W");
    assert!(home.join("vault.key").exists());

    // Locked, then the keys pressed: the account is wiped.
    carol.session.click("#lock-now");
    carol.session.wait_visible("#lock-screen", LONG);
    let pressed = std::process::Command::new("xdotool")
        .args(["key", "--clearmodifiers", "ctrl+alt+shift+w"])
        .env("DISPLAY", format!(":{}", carol.xvfb.display))
        .status()
        .expect("xdotool (package xdotool) is needed; ./scripts/setup installs it");
    assert!(pressed.success());
    carol.session.wait_visible("#first-run", LONG);
    assert!(
        !home.join("vault.key").exists() && !home.join("vault.sqlite3").exists(),
        "files of the account remain"
    );
    carol.session.end();
}

/// Restore on the first-run screen (docs/backup.md) and leaving from Settings
/// (docs/leaving.md), through the window: a backup made with the CLI, the account wiped, then
/// restored in the app onto a new card with a new password (history and contact back, the
/// contact reaches the new keys); then Settings → Leave Tessera deletes it at the relay and
/// here, and the contact is told.
#[test]
fn ui_restore_from_a_backup_then_leave_for_good() {
    use tessera_e2e::cli::Cli;
    tools();
    let _slots = slots();
    let _pcscd = pcscd();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let relay_addr = relay.address.to_string();

    // Alice (CLI, no card) and Bob talk; Alice makes a backup; her laptop is wiped.
    let alice = Cli::new(&dir.path().join("alice-cli"));
    let bob = Cli::new(&dir.path().join("bob"));
    alice.init(&relay_addr, "Alice");
    bob.init(&relay_addr, "Bob");
    bob.ok(&["contact", "add", &alice.invite(), "--name", "Alice"]);
    alice.ok(&["contact", "add", &bob.invite(), "--name", "Bob"]);
    bob.sync();
    bob.ok(&["send", "Alice", "from bob before the backup"]);
    alice.sync();
    let file = dir.path().join("alice.tsbk");
    let made = alice.ok(&["backup", "create", file.to_str().unwrap()]);
    let recovery = made["recovery_key"].as_str().unwrap().to_string();
    assert!(alice.run(&["panic", "--yes"]).ok);

    // The app on a new computer: restore, with a new card and a new password.
    let sim = Sim::insert(&dir.path().join("card-new.json"), 0);
    let home = dir.path().join("alice-app");
    let app = App::start("alice", &args(&home, &sim.reader, &relay));
    let s = &app.session;
    s.wait_visible("#first-run", LONG);
    s.click("#fr-mode-restore");
    s.wait_visible("#fr-restore", LONG);
    assert_eq!(
        s.js("return document.querySelector('#fr-relay-set').hidden;"),
        true
    );
    // The file as a person picks it (WebDriver cannot drive the file chooser): a File in the
    // input's list, as the chooser leaves it.
    let bytes = serde_json::to_string(&std::fs::read(&file).unwrap()).unwrap();
    s.js(&format!(
        "const bytes = Uint8Array.from({bytes}); \
         const dt = new DataTransfer(); \
         dt.items.add(new File([bytes], 'alice.tsbk')); \
         document.querySelector('#fr-backup').files = dt.files; return true;"
    ));
    // A wrong key is refused with its reason, and nothing is made.
    let password = "copper lantern drifts over 93 hills";
    s.type_into("#fr-password", password);
    s.type_into("#fr-password2", password);
    s.click("#fr-no-card");
    s.type_into("#fr-recovery-key", "not a key");
    s.click("#fr-create");
    app.wait_text("#fr-error", "not a recovery key");
    assert!(!home.join("vault.key").exists());
    // The new card, the right key (typed in lower case).
    s.click("#fr-no-card");
    app.wait_text("#fr-card-status", "factory");
    s.click("#fr-provision");
    s.wait_visible("#fr-provision-done", LONG);
    s.type_into("#fr-recovery-key", &recovery.to_lowercase());
    s.click("#fr-create");
    s.wait_visible("#main", LONG);
    app.wait_text("#me-name", "Alice");
    open_chat(&app, "Bob");
    wait_incoming(&app, "from bob before the backup");
    app.screenshot("restored");

    // Bob is told of the new keys and reaches them.
    let events = bob.sync();
    assert!(
        events.iter().any(|e| e["event"] == "session_reset"),
        "{events:?}"
    );
    bob.ok(&["send", "Alice", "welcome back"]);
    wait_incoming(&app, "welcome back");

    // Leaving: the box unticked is refused; a wrong password is refused; then it goes.
    s.click("#nav-settings");
    s.type_into("#leave-pw", password);
    s.click("#leave-go");
    app.wait_text("#leave-error", "cannot be undone");
    s.click("#leave-sure");
    s.type_into("#leave-pw", "not the password");
    s.click("#leave-go");
    app.wait_text("#leave-error", "password");
    assert!(home.join("vault.key").exists());
    s.type_into("#leave-pw", password);
    s.click("#leave-go");
    let outcome = s.wait_js(
        "first run, or an error from leaving",
        "const e = document.querySelector('#leave-error'); \
         if (!document.querySelector('#first-run').hidden) return 'first run'; \
         return (e && !e.hidden) ? 'error: ' + e.textContent : '';",
        LONG,
    );
    assert_eq!(outcome, "first run", "the page after leaving");
    assert!(!home.join("vault.key").exists(), "the vault is gone");
    let events = bob.sync();
    assert!(
        events.iter().any(|e| e["event"] == "contact_deleted"),
        "{events:?}"
    );
    app.session.end();
    sim.remove();
}
