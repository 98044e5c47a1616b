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
