//! Delivery that never stalls (`docs/messaging.md`, "Delivery"): `tessera-cli` accounts and the
//! real relay process on loopback.

use std::path::Path;

use serde_json::Value;
use tessera_e2e::cli::Cli;
use tessera_e2e::relay::Relay;

/// `alice` and `other` become contacts (Alice asks, the other accepts by adding her back).
fn befriend(alice: &Cli, other: &Cli, name: &str) {
    let (ai, oi) = (alice.invite(), other.invite());
    alice.ok(&["contact", "add", &oi, "--name", name]);
    other.sync();
    other.ok(&["contact", "add", &ai, "--name", "alice"]);
    let events = alice.sync();
    assert!(
        events.iter().any(|e| e["event"] == "contact_accepted"),
        "{name}: {events:?}"
    );
}

/// The newest message in Alice's conversation with `contact`.
fn last_message(alice: &Cli, contact: &str) -> Value {
    let history = alice.ok(&["history", contact, "--limit", "1"]);
    history["messages"][0].clone()
}

fn account(root: &Path, name: &str, relay: &str) -> Cli {
    let c = Cli::new(&root.join(name));
    c.init(relay, name);
    c
}

#[test]
fn delivery_send_with_the_relay_stopped_exits_0_queued_and_sync_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = tessera_e2e::free_port();
    let data = dir.path().join("relay");
    let relay = Relay::start_on(&data, port, &[]);
    let address = relay.address.to_string();
    let alice = account(dir.path(), "alice", &address);
    let bob = account(dir.path(), "bob", &address);
    befriend(&alice, &bob, "bob");

    drop(relay);
    let sent = alice.ok(&["send", "bob", "while the relay is down"]);
    assert_eq!(sent["ok"], true);
    assert_eq!(sent["status"], "pending", "{sent}");
    let id = sent["message_id"].as_str().unwrap().to_string();
    // Nothing to sync with: that is an error, and the message stays queued.
    assert!(!alice.run(&["sync"]).ok);
    assert_eq!(last_message(&alice, "bob")["status"], "pending");

    let _relay = Relay::start_on(&data, port, &[]);
    let events = alice.sync();
    assert!(
        events.iter().any(|e| e["event"] == "status"
            && e["message_id"] == id.as_str()
            && e["status"] == "sent"),
        "{events:?}"
    );
    assert_eq!(
        Cli::messages(&bob.sync()),
        vec![("alice".to_string(), "while the relay is down".to_string())]
    );
    alice.sync();
    assert_eq!(last_message(&alice, "bob")["status"], "delivered");
}

#[test]
fn delivery_one_gone_device_and_one_full_mailbox_never_hold_back_a_third_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "[mailbox]\nmax_messages = 4\n").unwrap();
    let port = tessera_e2e::free_port();
    let data = dir.path().join("relay");
    let args = ["--config", config.to_str().unwrap()];
    let relay = Relay::start_on(&data, port, &args);
    let address = relay.address.to_string();
    let alice = account(dir.path(), "alice", &address);
    let (bob, carol, dave) = (
        account(dir.path(), "bob", &address),
        account(dir.path(), "carol", &address),
        account(dir.path(), "dave", &address),
    );
    befriend(&alice, &bob, "bob");
    befriend(&alice, &carol, "carol");
    befriend(&alice, &dave, "dave");
    // Carol does not read: her mailbox fills up.
    for n in 0..4 {
        let sent = alice.ok(&["send", "carol", &format!("fill {n}")]);
        assert_eq!(sent["status"], "sent", "{sent}");
    }
    // Dave's device is removed from the relay (as when an account is deleted).
    drop(relay);
    let dave_id: tessera_crypto::AccountId = dave.ok(&["invite"])["account_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let db = rusqlite::Connection::open(data.join("relay.sqlite3")).unwrap();
    let removed = db
        .execute(
            "DELETE FROM devices WHERE account_id = ?1",
            [&dave_id.0[..]],
        )
        .unwrap();
    assert_eq!(removed, 1);
    drop(db);

    // Queued while the relay is down, the two doomed ones first: under a sequential outbox
    // they would stand in front of Bob's.
    for (to, text) in [
        ("dave", "to dave"),
        ("carol", "to carol"),
        ("bob", "to bob"),
    ] {
        let sent = alice.ok(&["send", to, text]);
        assert_eq!(sent["status"], "pending", "{to}: {sent}");
    }
    let _relay = Relay::start_on(&data, port, &args);
    alice.sync();
    let (to_bob, to_carol, to_dave) = (
        last_message(&alice, "bob"),
        last_message(&alice, "carol"),
        last_message(&alice, "dave"),
    );
    assert_eq!(to_bob["status"], "sent", "{to_bob}");
    assert_eq!(to_carol["status"], "failed", "{to_carol}");
    assert_eq!(to_carol["failure"], "mailbox_full", "{to_carol}");
    assert_eq!(to_dave["status"], "failed", "{to_dave}");
    assert_eq!(to_dave["failure"], "no_such_device", "{to_dave}");
    assert_eq!(
        Cli::messages(&bob.sync()),
        vec![("alice".to_string(), "to bob".to_string())]
    );
    // Nothing is left to retry.
    let keys = alice.ok(&["keys"]);
    assert_eq!(keys["outbox"], 0, "{keys}");
}

#[test]
fn delivery_a_stranger_gets_no_receipts_until_accepted_then_they_flow() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let address = relay.address.to_string();
    let alice = account(dir.path(), "alice", &address);
    let bob = account(dir.path(), "bob", &address);
    // Alice holds Bob's invite; Bob has not accepted her.
    alice.ok(&["contact", "add", &bob.invite(), "--name", "bob"]);
    let ids: Vec<String> = (0..3)
        .map(|n| {
            let sent = alice.ok(&["send", "bob", &format!("hello {n}")]);
            assert_eq!(sent["status"], "sent", "{sent}");
            sent["message_id"].as_str().unwrap().to_string()
        })
        .collect();
    let events = bob.sync();
    assert!(
        events.iter().any(|e| e["event"] == "contact_request"),
        "{events:?}"
    );
    assert_eq!(Cli::messages(&events).len(), 3, "{events:?}");
    // Bob read them, too: still nothing goes back to a stranger.
    bob.ok(&["history", "alice", "--limit", "10"]);
    bob.sync();
    let events = alice.sync();
    assert!(
        !events.iter().any(|e| e["event"] == "status"),
        "a stranger learned something: {events:?}"
    );
    let history = alice.ok(&["history", "bob", "--limit", "10"]);
    for m in history["messages"].as_array().unwrap() {
        assert_eq!(m["status"], "sent", "{m}");
    }

    bob.ok(&["contact", "accept", "alice"]);
    let events = alice.sync();
    for id in &ids {
        assert!(
            events.iter().any(|e| e["event"] == "status"
                && e["message_id"] == id.as_str()
                && e["status"] == "delivered"),
            "{id}: {events:?}"
        );
    }
}

#[test]
fn delivery_the_request_box_shows_only_a_preview_and_flags_a_name_that_imitates_a_contact() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let address = relay.address.to_string();
    let alice = account(dir.path(), "alice", &address);
    let bob = account(dir.path(), "bob", &address);
    befriend(&alice, &bob, "bob");
    // Someone calls herself "аlice" with a Cyrillic "а", asks Bob and writes twice.
    let mallory = Cli::new(&dir.path().join("mallory"));
    mallory.init(&address, "\u{430}lice");
    mallory.ok(&["contact", "add", &bob.invite(), "--name", "bob"]);
    let long = format!(
        "Hi Bob, it is me, new number. {}",
        "Please call me back soon. ".repeat(4)
    );
    mallory.ok(&["send", "bob", &long]);
    mallory.ok(&["send", "bob", "second"]);
    bob.sync();

    let requests = bob.ok(&["contact", "requests"]);
    let requests = requests["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(r["contact"]["name"], "\u{430}lice", "{r}");
    assert_eq!(r["imitates"], "alice", "the lookalike is flagged: {r}");
    assert_eq!(r["messages"], 2, "{r}");
    let preview = r["preview"].as_str().unwrap();
    assert!(long.starts_with(preview.trim_end_matches('…')), "{preview}");
    assert!(
        preview.ends_with('…') && preview.chars().count() == 81,
        "{preview}"
    );
    // Alice herself is a contact, not a request, and is not flagged.
    assert!(requests.iter().all(|r| r["contact"]["name"] != "alice"));

    // Accepted, she leaves the request box.
    bob.ok(&["contact", "accept", "\u{430}lice"]);
    let requests = bob.ok(&["contact", "requests"]);
    assert!(requests["requests"].as_array().unwrap().is_empty());
}

#[test]
fn delivery_an_envelope_forged_in_a_contacts_name_is_acknowledged_quarantined_and_the_contact_gets_through()
 {
    use rand::RngCore as _;
    use tessera_crypto::{AccountIdentity, DeviceCertificate, EpochSigningKey};
    use tessera_e2e::spec::{Spec, SpecLink, spec_seal};

    let dir = tempfile::tempdir().unwrap();
    let port = tessera_e2e::free_port();
    let data = dir.path().join("relay");
    let relay = Relay::start_on(&data, port, &[]);
    let address = relay.address.to_string();
    let alice = account(dir.path(), "alice", &address);
    let bob = account(dir.path(), "bob", &address);
    befriend(&alice, &bob, "bob");
    let id_of = |c: &Cli| -> tessera_crypto::AccountId {
        c.ok(&["invite"])["account_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (alice_id, bob_id) = (id_of(&alice), id_of(&bob));
    drop(relay);

    // What is public: Alice's device certificate (her envelope key) and Bob's account keys.
    let db = rusqlite::Connection::open(data.join("relay.sqlite3")).unwrap();
    let certificate: Vec<u8> = db
        .query_row(
            "SELECT certificate FROM devices WHERE account_id = ?1",
            [&alice_id.0[..]],
            |r| r.get(0),
        )
        .unwrap();
    let bob_keys: Vec<u8> = db
        .query_row(
            "SELECT public FROM accounts WHERE account_id = ?1",
            [&bob_id.0[..]],
            |r| r.get(0),
        )
        .unwrap();
    let alice_key = DeviceCertificate::from_bytes(&certificate)
        .unwrap()
        .fields
        .envelope_key;
    // Mallory seals a well-formed envelope to Alice that claims to be Bob: her own epoch key,
    // with Bob's account keys put into her epoch certificate in place of hers (so it names Bob,
    // but Bob's identity never signed it), the claim Bob's account id.
    let mut r = rand::rng();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let day = 86_400_000;
    let mallory = AccountIdentity::generate(&mut r);
    let epoch = EpochSigningKey::generate(&mallory, 1, now - day, now + 7 * day, &mut r).unwrap();
    let mut forged_certificate = epoch.certificate().to_bytes();
    assert_eq!(bob_keys.len(), 2625, "identity key and ML-DSA-87 key");
    forged_certificate[1..2626].copy_from_slice(&bob_keys);
    let (mut lsk, mut m) = ([0u8; 32], [0u8; 32]);
    r.fill_bytes(&mut lsk);
    r.fill_bytes(&mut m);
    let link = SpecLink::new(&alice_key, lsk, m);
    let content = b"\x01not a signal message at all";
    let mut spec = Spec::new(&alice_key, &epoch, &link, true, content, &mut r);
    spec.sent_at = now;
    spec.certificate = Some(forged_certificate);
    spec.claim_account = Some(bob_id.0);
    let forged = spec_seal(&spec);
    // Into Alice's mailbox, as the relay stores any envelope.
    db.execute(
        "INSERT INTO mailbox (account_id, device_id, expires_ms, size, envelope)
         VALUES (?1, 1, ?2, ?3, ?4)",
        rusqlite::params![
            &alice_id.0[..],
            (now + 30 * day) as i64,
            forged.len() as i64,
            &forged
        ],
    )
    .unwrap();
    drop(db);

    let _relay = Relay::start_on(&data, port, &[]);
    let events = alice.sync();
    let quarantined = quarantined(&events);
    assert_eq!(quarantined.len(), 1, "{events:?}");
    // Not attributed to Bob: the envelope layer never authenticated a sender.
    assert!(quarantined[0]["from"].is_null(), "{quarantined:?}");
    let reason = quarantined[0]["reason"].as_str().unwrap();
    assert!(reason.contains("signature"), "{reason}");
    assert!(Cli::messages(&events).is_empty(), "{events:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !mailbox_rows(&data, &alice_id).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the forged envelope still waits at the relay"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let kept = alice.ok(&["quarantine"]);
    assert_eq!(kept["quarantine"].as_array().unwrap().len(), 1, "{kept}");

    // Bob's conversation shows nothing of it, and Bob himself still gets through.
    bob.ok(&["send", "alice", "the real bob"]);
    assert_eq!(
        Cli::messages(&alice.sync()),
        vec![("bob".to_string(), "the real bob".to_string())]
    );
    let history = alice.ok(&["history", "bob", "--limit", "10"]);
    assert!(
        history["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["kind"] == "text"),
        "{history}"
    );
}

/// Alice's mailbox rows at the relay (its database, read while it runs or after it stopped).
fn mailbox_rows(data: &Path, account: &tessera_crypto::AccountId) -> Vec<(i64, i64, Vec<u8>)> {
    let db = rusqlite::Connection::open(data.join("relay.sqlite3")).unwrap();
    let mut s = db
        .prepare(
            "SELECT device_id, expires_ms, envelope FROM mailbox WHERE account_id = ?1
             ORDER BY delivery_id",
        )
        .unwrap();
    s.query_map([&account.0[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn delivery_a_corrupted_and_a_garbage_envelope_are_acknowledged_quarantined_and_mail_still_flows() {
    let dir = tempfile::tempdir().unwrap();
    let port = tessera_e2e::free_port();
    let data = dir.path().join("relay");
    let relay = Relay::start_on(&data, port, &[]);
    let address = relay.address.to_string();
    let alice = account(dir.path(), "alice", &address);
    let bob = account(dir.path(), "bob", &address);
    befriend(&alice, &bob, "bob");
    let alice_id: tessera_crypto::AccountId = alice.ok(&["invite"])["account_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Bob's genuine message waits at the relay; beside it go two bad ones of the same size: the
    // genuine bytes with one bit flipped in the ciphertext, and random bytes behind its
    // version and kind.
    let sent = bob.ok(&["send", "alice", "genuine one"]);
    assert_eq!(sent["status"], "sent", "{sent}");
    drop(relay);
    let rows = mailbox_rows(&data, &alice_id);
    assert_eq!(rows.len(), 1, "one envelope waits for Alice");
    let (device, expires, genuine) = rows[0].clone();
    let mut flipped = genuine.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let mut garbage: Vec<u8> = (0..genuine.len()).map(|_| rand::random::<u8>()).collect();
    garbage[..2].copy_from_slice(&genuine[..2]);
    let db = rusqlite::Connection::open(data.join("relay.sqlite3")).unwrap();
    for bad in [&flipped, &garbage] {
        db.execute(
            "INSERT INTO mailbox (account_id, device_id, expires_ms, size, envelope)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![&alice_id.0[..], device, expires, bad.len() as i64, bad],
        )
        .unwrap();
    }
    drop(db);

    let _relay = Relay::start_on(&data, port, &[]);
    let events = alice.sync();
    let quarantined = quarantined(&events);
    assert_eq!(quarantined.len(), 2, "{events:?}");
    assert!(
        quarantined
            .iter()
            .all(|e| !e["reason"].as_str().unwrap().is_empty() && e["from"].is_null()),
        "{quarantined:?}"
    );
    assert_eq!(
        Cli::messages(&events),
        vec![("bob".to_string(), "genuine one".to_string())]
    );
    // Acknowledged: nothing is left to pin Alice's mailbox.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !mailbox_rows(&data, &alice_id).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the relay still holds envelopes for Alice"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Kept with their reasons, sender unknown (the envelope layer refused them).
    let kept = alice.ok(&["quarantine"]);
    let kept = kept["quarantine"].as_array().unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    for q in kept {
        assert_eq!(q["size"], genuine.len(), "{q}");
        assert!(q["from"].is_null(), "{q}");
        assert!(!q["reason"].as_str().unwrap().is_empty(), "{q}");
    }
    // A sync later, nothing comes back, and Bob's next message arrives.
    bob.ok(&["send", "alice", "genuine two"]);
    let events = alice.sync();
    assert!(
        events.iter().all(|e| e["event"] != "quarantined"),
        "{events:?}"
    );
    assert_eq!(
        Cli::messages(&events),
        vec![("bob".to_string(), "genuine two".to_string())]
    );
}

/// The `quarantined` events among what a `sync` printed.
fn quarantined(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event"] == "quarantined")
        .collect()
}
