//! Leaving for good through the CLI (`docs/leaving.md`), on a card-protected account against
//! the real relay process: refused without confirmation or with a wrong password; then the
//! contact is told, the relay keeps nothing of the account and refuses it for good, and
//! nothing of it is left on the machine.

use std::str::FromStr as _;

use tessera_e2e::card::{pcscd, slots};
use tessera_e2e::cli::Cli;
use tessera_e2e::pair::CardPair;
use tessera_e2e::relay::Relay;
use tessera_store::SecretStore as _;

/// Rows the relay's database holds for `account` in each table that names accounts.
fn relay_rows(relay: &Relay, account: &[u8; 32]) -> Vec<(&'static str, i64)> {
    let db = rusqlite::Connection::open(relay.data_dir.join("relay.sqlite3")).unwrap();
    [
        "accounts",
        "devices",
        "one_time_prekeys",
        "mailbox",
        "deleted_accounts",
    ]
    .into_iter()
    .map(|table| {
        let n: i64 = db
            .query_row(
                &format!("SELECT COUNT(*) FROM {table} WHERE account_id = ?1"),
                [&account[..]],
                |r| r.get(0),
            )
            .unwrap();
        (table, n)
    })
    .collect()
}

#[test]
fn leaving_tells_contacts_empties_the_relay_and_leaves_nothing_here() {
    let _slots = slots();
    let _pcscd = pcscd();
    let dir = tempfile::tempdir().unwrap();
    let CardPair {
        relay,
        card,
        reader,
        alice,
        bob,
        invite,
    } = CardPair::start(dir.path());
    let relay_addr = relay.address.to_string();
    alice.ok(&["send", "Bob", "I am leaving", "--reader", &reader]);
    // Something waits in Bob's mailbox for Alice, so the relay has a mailbox row to delete.
    bob.ok(&["send", "Alice", "wait, why?"]);
    let alice_text = bob.ok(&["contact", "list"])["contacts"][0]["account_id"]
        .as_str()
        .unwrap()
        .to_string();
    let alice_id = tessera_crypto::AccountId::from_str(&alice_text).unwrap().0;
    let before = relay_rows(&relay, &alice_id);
    assert!(
        before
            .iter()
            .filter(|(t, _)| *t != "deleted_accounts")
            .all(|(_, n)| *n > 0),
        "{before:?}"
    );
    let key = tessera_store::KeyFile::load(&alice.dir.join("vault.key")).unwrap();

    // Not without confirmation (no terminal here), not with a wrong password.
    let o = alice.run(&["account", "delete", "--reader", &reader]);
    assert!(!o.ok && o.json["kind"] == "usage", "{}", o.stdout);
    let wrong = Cli {
        dir: alice.dir.clone(),
        password: "not her password".into(),
        env: alice.env.clone(),
    };
    let o = wrong.run(&["account", "delete", "--yes", "--reader", &reader]);
    assert_eq!(o.json["kind"], "wrong_password", "{}", o.stdout);
    assert_eq!(relay_rows(&relay, &alice_id), before);

    let o = alice.run(&["account", "delete", "--yes", "--reader", &reader]);
    assert!(o.ok, "{}\n{}", o.stdout, o.stderr);
    assert_eq!(o.json["deleted"], true, "{}", o.stdout);
    assert_eq!(o.json["told"], 1, "{}", o.stdout);
    assert_eq!(o.json["problems"].as_array().map(Vec::len), Some(0));

    // Nothing here: no files, no keyring entries.
    assert!(!alice.dir.exists(), "no file of the account remains");
    let keyring = tessera_store::OsKeyring;
    assert!(
        keyring
            .get(&tessera_store::vault_entry(&key.vault_id))
            .unwrap()
            .is_none()
    );
    let card_uid = key.card.unwrap().uid;
    assert!(
        keyring
            .get(&tessera_store::card_entry(&card_uid))
            .unwrap()
            .is_none()
    );
    // Nothing at the relay but the mark that the account is gone.
    let after = relay_rows(&relay, &alice_id);
    assert!(
        after
            .iter()
            .all(|(t, n)| *n == i64::from(*t == "deleted_accounts")),
        "{after:?}"
    );

    // Bob is told: the contact is marked deleted, the conversation says so, nothing more
    // can be sent.
    let events = bob.sync();
    assert!(
        events.iter().any(|e| e["event"] == "contact_deleted"),
        "{events:?}"
    );
    let contacts = bob.ok(&["contact", "list"]);
    assert_eq!(contacts["contacts"][0]["state"], "deleted", "{contacts}");
    let history = bob.ok(&["history", "Alice"]);
    let kinds: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"account_deleted"), "{history}");
    let o = bob.run(&["send", "Alice", "hello?"]);
    assert_eq!(o.json["kind"], "contact_deleted", "{}", o.stdout);

    // Someone holding Alice's old invite cannot reach her any more.
    let carol = Cli::new(&dir.path().join("carol"));
    carol.init(&relay_addr, "Carol");
    let o = carol.run(&["contact", "add", &invite]);
    assert!(!o.ok, "{}", o.stdout);
    card.remove();
}
