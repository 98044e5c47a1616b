//! Keys that live forever (`docs/keys.md`, "Rotation"): two accounts through 400 days of
//! rotations against the real relay, whose wall clock is shifted with libfaketime; the engines
//! run on the injected clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_core::clock::{Clock as _, ManualClock, SystemClock};
use tessera_core::keys::{DEVICE_CERT_LIFETIME_MS, PREKEY_GRACE_MS, SIGNED_PREKEY_ROTATION_MS};
use tessera_core::{CreateOptions, Engine, Event, KdfParams, TransportConfig};
use tessera_e2e::faketime::FakeTime;
use tessera_e2e::relay::Relay;
use tessera_store::MemorySecrets;
use tokio::sync::broadcast;
use zeroize::Zeroizing;

const DAY: u64 = 86_400_000;
/// Per contact device: 98 days of 7-day epochs (14), one more for each envelope-key rotation
/// inside them (4), and one in transition.
const MAX_INBOUND_LINKS: u32 = 19;

/// Waits until `events` has shown every body in `want` as a message from `from`; returns the
/// bodies in arrival order (each at most once is checked by the caller).
async fn receive(
    events: &mut broadcast::Receiver<Event>,
    from: [u8; 32],
    want: &[String],
    what: &str,
) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !want.iter().all(|w| got.contains(w)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(Event::Message { contact, body, .. })) if contact == from => got.push(body),
            Ok(Ok(Event::Quarantined { reason, .. })) => {
                panic!("{what}: an envelope was dropped: {reason}")
            }
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => panic!("{what}: lagged by {n}"),
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => panic!("{what}: still missing {:?}; got {got:?}", {
                want.iter().filter(|w| !got.contains(w)).collect::<Vec<_>>()
            }),
        }
    }
    got
}

async fn create(
    dir: &std::path::Path,
    relay: &Relay,
    name: &str,
    secrets: &Arc<MemorySecrets>,
    clock: &ManualClock,
) -> Engine {
    Engine::create_with_clock(
        CreateOptions {
            dir: dir.to_path_buf(),
            password: Zeroizing::new(format!("{name}'s password").into_bytes()),
            relay: relay.address.clone(),
            name: name.into(),
            transport: TransportConfig::Direct,
            kdf: KdfParams::MINIMUM,
            card: None,
        },
        secrets.clone(),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap()
}

/// Unlocks an account [`create`] made, after it was locked.
async fn reopen(
    dir: &std::path::Path,
    name: &str,
    secrets: &Arc<MemorySecrets>,
    clock: &ManualClock,
) -> Engine {
    Engine::unlock_with_clock(
        dir,
        Zeroizing::new(format!("{name}'s password").into_bytes()),
        secrets.clone(),
        None,
        Arc::new(clock.clone()),
    )
    .await
    .unwrap()
}

/// The bound `docs/keys.md` gives for each kind of private key a device holds.
fn assert_bounded(engine: &Engine, who: &str, day: u64) {
    let k = engine.key_inventory().unwrap();
    // Current signed/Kyber prekey plus those retired within the grace period.
    let max_signed = 1 + (PREKEY_GRACE_MS / SIGNED_PREKEY_ROTATION_MS) as u32 + 1;
    assert!(k.signed_prekeys <= max_signed, "{who} day {day}: {k:?}");
    assert!(k.kyber_prekeys <= max_signed, "{who} day {day}: {k:?}");
    // The current batch and at most two retired ones (a refill retires one; the relay asks
    // for at most one refill per login here).
    assert!(k.one_time_prekeys <= 300, "{who} day {day}: {k:?}");
    // One link of ours per contact device; theirs to us: one per (their epoch, our envelope
    // key), kept until 90 days after the epoch ended (docs/envelope.md).
    assert!(k.outbound_links <= 1, "{who} day {day}: {k:?}");
    assert!(
        k.inbound_links <= MAX_INBOUND_LINKS,
        "{who} day {day}: {k:?}"
    );
    assert!(k.retired_envelope_keys <= 4, "{who} day {day}: {k:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_two_accounts_exchange_a_message_each_way_every_day_for_400_days() {
    tessera_e2e::logs();
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new(dir.path());
    // Mailboxes keep envelopes 90 days: Bob is away for 60.
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "[mailbox]\nttl_days = 90\n").unwrap();
    let relay = Relay::start_env(
        &dir.path().join("relay"),
        0,
        &[
            "--config",
            config.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &time.env(),
    );
    let start = SystemClock.now_ms();
    let clock = ManualClock::new(start);
    let (sa, sb) = (
        Arc::new(MemorySecrets::default()),
        Arc::new(MemorySecrets::default()),
    );
    let alice = create(&dir.path().join("alice"), &relay, "Alice", &sa, &clock).await;
    let mut bob = create(&dir.path().join("bob"), &relay, "Bob", &sb, &clock).await;
    let (a_id, b_id) = (alice.account_id().unwrap().0, bob.account_id().unwrap().0);
    let mut a_events = alice.subscribe();
    let mut b_events = bob.subscribe();
    alice
        .add_contact(&bob.invite().unwrap(), Some("bob"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bob.contacts().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "Bob never saw Alice's request");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bob.add_contact(&alice.invite().unwrap(), Some("alice"))
        .await
        .unwrap();
    // Day 1 starts once Alice has Bob's acceptance. A text queued before it would be
    // Signal-encrypted as a PreKey message (queue time) yet sealed after the acceptance
    // acknowledged the link (flush time): a short envelope of class 2048, the one case between
    // the two sizes this test counts (docs/envelope.md §4).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, a_events.recv()).await {
            Ok(Ok(Event::ContactAccepted { contact })) if contact == b_id => break,
            Ok(Ok(_)) => {}
            other => panic!("Alice never saw Bob's acceptance: {other:?}"),
        }
    }

    let first_serial = alice.device_certificate().unwrap().0;
    let (away, back) = (200, 260);
    let mut waiting_for_bob = Vec::new();
    for day in 1..=400u64 {
        // Both clocks: the relay's (libfaketime) and the engines' (injected).
        time.set_days(day);
        clock.set(SystemClock.now_ms() + day * DAY);
        if day == away {
            bob.lock();
        }
        if day == back {
            bob = reopen(&dir.path().join("bob"), "Bob", &sb, &clock).await;
            b_events = bob.subscribe();
            bob.connect().await.unwrap();
        }
        let text = format!("a{day}");
        alice.send_text(&b_id, &text).await.unwrap();
        if (away..back).contains(&day) {
            // Bob is away: it waits at the relay (or, once Bob's certificate expired there,
            // sealed to the last key Alice knows).
            waiting_for_bob.push(text);
            continue;
        }
        waiting_for_bob.push(text);
        let got = receive(
            &mut b_events,
            a_id,
            &waiting_for_bob,
            &format!("Bob, day {day}"),
        )
        .await;
        assert_eq!(
            got.len(),
            waiting_for_bob.len(),
            "Bob saw a message twice: {got:?}"
        );
        waiting_for_bob.clear();
        let text = format!("b{day}");
        bob.send_text(&a_id, &text).await.unwrap();
        let got = receive(
            &mut a_events,
            b_id,
            std::slice::from_ref(&text),
            &format!("Alice, day {day}"),
        )
        .await;
        assert_eq!(got, vec![text]);
        assert_bounded(&alice, "Alice", day);
        assert_bounded(&bob, "Bob", day);
    }
    // 400 days: certificates were renewed (a 45-day certificate cannot have lasted), and each
    // one in force now is valid today.
    let (serial, not_before, not_after) = alice.device_certificate().unwrap();
    let now = clock.now_ms();
    assert!(
        serial >= first_serial + 12,
        "Alice's certificate serial is {serial}"
    );
    assert!(not_before <= now && now < not_after);
    assert!(not_after - not_before <= DEVICE_CERT_LIFETIME_MS + DAY);
    let (serial, _, not_after) = bob.device_certificate().unwrap();
    assert!(serial > 1 && now < not_after, "Bob's certificate: {serial}");

    // The wire cost, as the relay saw it: envelopes carry the KEM ciphertext and the epoch
    // certificate only until the recipient acknowledged the link (a new one each epoch and each
    // envelope-key rotation); the rest are short.
    // One scrape: every envelope is short (<= 1024 bytes) or full (> 8192), none between.
    let text = relay.metrics_text();
    let sample = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    let bucket = |le: &str| {
        sample(&format!(
            "tessera_relay_envelope_bytes_bucket{{le=\"{le}\"}}"
        ))
    };
    let (short, all) = (bucket("1024"), sample("tessera_relay_envelope_bytes_count"));
    eprintln!(
        "400 days, 2 accounts, a text each way a day: {all} envelopes, {short} short (<= 1024 \
         bytes), mean {:.0} bytes",
        sample("tessera_relay_envelope_bytes_sum") / all
    );
    assert!(all >= 1400.0, "{all} envelopes");
    assert_eq!(
        bucket("8192"),
        short,
        "envelopes between the two kinds' sizes"
    );
    // Full envelopes: about two per link (the first text and, before the acknowledgement
    // arrives, a receipt), a new link each week per direction and at each key rotation.
    assert!(
        short / all >= 0.75,
        "only {short} of {all} envelopes were short"
    );
}

#[test]
fn keys_real_processes_under_a_shifted_clock_keep_talking_at_20_50_100_and_400_days() {
    use tessera_e2e::cli::Cli;

    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new(dir.path());
    let relay = Relay::start_env(&dir.path().join("relay"), 0, &[], &time.env());
    let relay_addr = relay.address.to_string();
    let mut alice = Cli::new(&dir.path().join("alice"));
    let mut bob = Cli::new(&dir.path().join("bob"));
    alice.env = time.env_fixed();
    bob.env = time.env_fixed();
    // Their key maintenance, in alice.stderr.log and bob.stderr.log beside the accounts.
    alice
        .env
        .push(("TESSERA_LOG".into(), "tessera_core=info".into()));
    bob.env
        .push(("TESSERA_LOG".into(), "tessera_core=info".into()));
    alice.init(&relay_addr, "Alice");
    bob.init(&relay_addr, "Bob");
    alice.ok(&["contact", "add", &bob.invite(), "--name", "bob"]);
    bob.sync();
    bob.ok(&["contact", "add", &alice.invite(), "--name", "alice"]);
    alice.sync();
    let serial = |cli: &Cli| cli.ok(&["keys"])["certificate"]["serial"].as_u64().unwrap();
    assert_eq!(serial(&alice), 1);
    for days in [0u64, 20, 50, 100, 400] {
        time.set_days(days);
        let text = format!("from Alice at +{days} days");
        let sent = alice.ok(&["send", "bob", &text]);
        assert_eq!(sent["status"], "sent", "+{days}: {sent}");
        let events = bob.sync();
        assert_eq!(
            Cli::messages(&events),
            vec![("alice".to_string(), text)],
            "+{days} days: {events:?}"
        );
        let text = format!("from Bob at +{days} days");
        bob.ok(&["send", "alice", &text]);
        let events = alice.sync();
        assert_eq!(
            Cli::messages(&events),
            vec![("bob".to_string(), text)],
            "+{days} days: {events:?}"
        );
        // The certificate in force now was renewed when it had to be.
        let keys = alice.ok(&["keys"]);
        let left = keys["certificate"]["days_left"].as_u64().unwrap();
        assert!((15..=45).contains(&left), "+{days} days: {keys}");
    }
    // +0 and +20 used the first certificate; +50, +100 and +400 each needed a new one.
    assert_eq!(serial(&alice), 4);
    assert_eq!(serial(&bob), 4);
}

/// Waits until `engine` has `message` marked delivered (its receipt arrived).
async fn delivered(engine: &Engine, message: [u8; 16], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = engine.message(&message).unwrap().map(|m| m.status);
        if status.is_some_and(|s| s >= tessera_core::MessageStatus::Delivered) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no delivery receipt ({status:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the relay has accepted `n` envelopes; returns the bytes they add up to.
async fn accepted(relay: &Relay, n: f64, what: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if relay.metric("tessera_relay_envelope_bytes_count") >= n {
            return relay.metric("tessera_relay_envelope_bytes_sum");
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the relay never accepted envelope {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Bytes on the wire, measured at the relay: a contact request, a one-word text and its
/// delivery receipt once the links are acknowledged (`docs/envelope.md`), each with the `Send`
/// frame around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_wire_bytes_of_a_contact_request_a_text_and_a_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(
        &dir.path().join("relay"),
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let clock = ManualClock::new(SystemClock.now_ms());
    let (sa, sb) = (
        Arc::new(MemorySecrets::default()),
        Arc::new(MemorySecrets::default()),
    );
    let alice = create(&dir.path().join("alice"), &relay, "Alice", &sa, &clock).await;
    let bob = create(&dir.path().join("bob"), &relay, "Bob", &sb, &clock).await;
    let (a_id, b_id) = (alice.account_id().unwrap().0, bob.account_id().unwrap().0);
    let mut a_events = alice.subscribe();
    let mut b_events = bob.subscribe();
    let frame = |envelope: f64| {
        tessera_proto::Frame {
            request_id: 1,
            body: tessera_proto::Body::Send {
                account_id: [0; 32],
                device_id: 1,
                envelope: vec![0; envelope as usize],
            },
        }
        .encode()
        .unwrap()
        .len()
    };

    alice
        .add_contact(&bob.invite().unwrap(), Some("bob"))
        .await
        .unwrap();
    let request = accepted(&relay, 1.0, "contact request").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while bob.contacts().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "Bob never saw Alice's request");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Bob accepts (his first envelope to Alice: full, acknowledging her link); one text each
    // way then acknowledges every link.
    bob.add_contact(&alice.invite().unwrap(), Some("alice"))
        .await
        .unwrap();
    let warm = alice.send_text(&b_id, "warm").await.unwrap();
    receive(&mut b_events, a_id, &["warm".to_string()], "Bob, warm-up").await;
    let up = bob.send_text(&a_id, "up").await.unwrap();
    receive(&mut a_events, b_id, &["up".to_string()], "Alice, warm-up").await;
    // Both delivery receipts of the warm-up have arrived: nothing else is on its way.
    delivered(&alice, warm, "Alice's warm-up").await;
    delivered(&bob, up, "Bob's warm-up").await;
    let settled = relay.metric("tessera_relay_envelope_bytes_count");
    let before = accepted(&relay, settled, "warm-up").await;

    // Bob is locked while the text goes out, so his receipt cannot be counted with it.
    bob.lock();
    alice.send_text(&b_id, "hi").await.unwrap();
    let after_text = accepted(&relay, settled + 1.0, "text").await;
    let bob = reopen(&dir.path().join("bob"), "Bob", &sb, &clock).await;
    let mut b_events = bob.subscribe();
    bob.connect().await.unwrap();
    receive(&mut b_events, a_id, &["hi".to_string()], "Bob").await;
    let after_receipt = accepted(&relay, settled + 2.0, "receipt").await;
    let (text, receipt) = (after_text - before, after_receipt - after_text);
    eprintln!(
        "wire bytes (envelope / Send frame): contact request {request} / {}, one-word text \
         {text} / {}, delivery receipt {receipt} / {}",
        frame(request),
        frame(text),
        frame(receipt)
    );
    // The budget: 1.8 KiB with the frame for a text and a receipt in steady state.
    assert!(frame(text) <= 1843, "a text costs {text} bytes");
    assert!(frame(receipt) <= 1843, "a receipt costs {receipt} bytes");
    // The contact request is a full envelope: the KEM ciphertext and the epoch certificate.
    assert!(request > 9000.0, "a contact request of {request} bytes");
}
