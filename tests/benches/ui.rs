//! Desktop app benchmark (issue: cold start, unlock, a long conversation, memory), through the
//! real window under Xvfb + tauri-driver, against a real relay. Prints numbers; asserts none.
//!
//! Build the release binaries first:
//!   cargo build --release -p tessera-desktop -p tessera-cli -p tessera-relay
//!   ./scripts/with-keyring cargo bench -p tessera-e2e --bench ui
//! `TESSERA_BENCH_MESSAGES` sets the conversation length (default 10000).

#![allow(clippy::unwrap_used)] // a benchmark set-up step that fails should stop it loudly

use std::time::{Duration, Instant};

use tessera_core::{Message, MessageStatus, OsKeyring};
use tessera_e2e::cli::Cli;
use tessera_e2e::relay::Relay;
use tessera_e2e::webdriver::{Session, TauriDriver, Xvfb};
use tessera_store::Vault;

const LONG: Duration = Duration::from_secs(120);

/// Resident memory (KiB) of `pid` and all its descendants, with their names.
fn tree_rss(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .map(|l| l[name.len()..].trim().to_string())
                .unwrap_or_default()
        };
        let rss: u64 = field("VmRSS:")
            .trim_end_matches(" kB")
            .trim()
            .parse()
            .unwrap_or(0);
        out.push((field("Name:"), rss));
        let children =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        todo.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    out
}

/// The pid of the app started with `--data-dir dir`.
fn app_pid(dir: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.contains("tessera-desktop") && cmd.contains(dir)).then_some(pid)
    })
}

fn main() {
    let n: u32 = std::env::var("TESSERA_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let address = relay.address.to_string();
    let alice = Cli::new(&dir.path().join("alice"));
    let bob = Cli::new(&dir.path().join("bob"));
    // Alice with the default Argon2id cost (256 MiB, t=3), as a user's vault has.
    alice.ok(&[
        "init",
        "--relay",
        &address,
        "--name",
        "Alice",
        "--no-card",
        "--transport",
        "direct",
    ]);
    bob.init(&address, "Bob");
    let (ai, bi) = (alice.invite(), bob.invite());
    alice.ok(&["contact", "add", &bi, "--name", "bob"]);
    bob.sync();
    bob.ok(&["contact", "add", &ai, "--name", "alice"]);
    alice.sync();
    let contact = alice.ok(&["contact", "list"])["contacts"][0]["account_id"]
        .as_str()
        .unwrap()
        .to_string();
    let contact: tessera_crypto::AccountId = contact.parse().unwrap();

    // The long conversation, written straight into Alice's vault (what years of chat leave).
    let t = Instant::now();
    {
        let v = Vault::open(
            &alice.dir,
            alice.password.as_bytes(),
            &OsKeyring,
            None,
            &mut rand::rng(),
        )
        .unwrap();
        let start = 1_700_000_000_000i64;
        v.transaction(|v| -> Result<(), tessera_store::VaultError> {
            for i in 0..n {
                let mut message_id = [0u8; 16];
                message_id[..4].copy_from_slice(&i.to_be_bytes());
                message_id[15] = 0xbe;
                let outgoing = i % 2 == 0;
                v.insert_message(&Message {
                    id: 0,
                    conversation: tessera_store::direct_conversation(&contact.0),
                    contact: contact.0,
                    message_id,
                    outgoing,
                    body: format!("message {i}: the quick brown fox jumps over the lazy dog"),
                    // about 40 a day, so the conversation spans many day separators
                    sent: start + i64::from(i) * 36 * 60 * 1000,
                    received: (!outgoing).then_some(start + i64::from(i) * 36 * 60 * 1000),
                    status: if outgoing {
                        MessageStatus::Read
                    } else {
                        MessageStatus::Received
                    },
                    read: true,
                    kind: "text".into(),
                    failure: None,
                    time_flag: None,
                    reply_to: None,
                    edited: None,
                    expires_in: None,
                    expire_at: None,
                    preview: None,
                })?;
            }
            Ok(())
        })
        .unwrap();
    }
    println!(
        "setup: {n} messages written in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let xvfb = Xvfb::start();
    let artifacts = tessera_e2e::artifacts_dir();
    let driver = TauriDriver::start(xvfb.display, &artifacts.join("bench-ui-tauri-driver.log"));
    let data = alice.dir.to_str().unwrap().to_string();

    // Cold start: launch to the lock screen shown (WebKit processes, page load, app_state).
    let t = Instant::now();
    let s = Session::start(
        &driver,
        &tessera_e2e::bin_path("tessera-desktop"),
        &["--data-dir".into(), data.clone()],
    );
    s.wait_visible("#lock-screen", LONG);
    let cold = t.elapsed();

    // Unlock (Argon2id included) to the conversation list shown.
    s.type_into("#password", &alice.password);
    let t = Instant::now();
    s.click("#unlock");
    s.wait_visible("#conv-list button", LONG);
    let unlock = t.elapsed();

    // Open the 10,000-message conversation: the newest page rendered.
    let t = Instant::now();
    s.click("#conv-list button");
    s.wait_js(
        "the newest page",
        "return document.querySelectorAll('#chat-log .msg').length >= 50;",
        LONG,
    );
    let open = t.elapsed();

    // Idle with the conversation open (its newest page shown).
    std::thread::sleep(Duration::from_secs(10));
    let pid = app_pid(&data);
    let idle_open = pid.map(tree_rss).unwrap_or_default();

    // Scroll back through the whole history (infinite scroll, 50 a page), timed in the page.
    let all_ms = s.execute_async(
        "const done = arguments[arguments.length - 1];
         const log = document.querySelector('#chat-log');
         const t0 = performance.now();
         (function step() {
           if (log.dataset.complete === 'yes') { done(performance.now() - t0); return; }
           log.scrollTop = 0; log.dispatchEvent(new Event('scroll'));
           setTimeout(step, 2);
         })();",
    );
    let shown = s.js("return document.querySelectorAll('#chat-log .msg').length;");
    let days = s.js("return document.querySelectorAll('#chat-log .day').length;");
    std::thread::sleep(Duration::from_secs(10));
    let idle_all = pid.map(tree_rss).unwrap_or_default();

    println!("desktop app, {n}-message conversation, Xvfb 1280x800, software rendering:");
    println!(
        "  cold start to lock screen     {:>8.0} ms",
        cold.as_secs_f64() * 1e3
    );
    println!(
        "  unlock to conversation list   {:>8.0} ms",
        unlock.as_secs_f64() * 1e3
    );
    println!(
        "  open conversation (50 newest) {:>8.0} ms",
        open.as_secs_f64() * 1e3
    );
    println!(
        "  scroll back through all {shown} messages ({days} day separators) {:>8.0} ms",
        all_ms.as_f64().unwrap_or(f64::NAN)
    );
    for (label, procs) in [
        ("idle, conversation open (newest 50 shown)", &idle_open),
        ("idle, all messages loaded in the page", &idle_all),
    ] {
        let total: u64 = procs.iter().map(|p| p.1).sum();
        println!("  resident memory {label}: {} MiB", total / 1024);
        for (name, kib) in procs {
            println!("    {name:<20} {:>6} MiB", kib / 1024);
        }
    }
    s.end();
}
