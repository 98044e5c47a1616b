//! Encrypted backups through the CLI: a backup made on a card-protected account, the laptop
//! wiped, and the account restored onto a new card with a new password (docs/backup.md).

use tessera_e2e::card::{Sim, pcscd, slots};
use tessera_e2e::cli::Cli;
use tessera_e2e::relay::Relay;

#[test]
fn backup_restore_onto_a_new_card_after_a_wipe_keeps_history_and_contacts_talk_on() {
    let _slots = slots();
    let _pcscd = pcscd();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let relay_addr = relay.address.to_string();
    let old_card = Sim::insert(&dir.path().join("card-old.json"), 0);
    let alice = Cli::new(&dir.path().join("alice"));
    let bob = Cli::new(&dir.path().join("bob"));
    alice.ok(&["card", "provision", "--reader", &old_card.reader]);
    alice.ok(&Cli::init_args(
        &relay_addr,
        "Alice",
        &["--reader", &old_card.reader, "--transport", "direct"],
    ));
    bob.init(&relay_addr, "Bob");
    let invite = alice.ok(&["invite", "--reader", &old_card.reader])["invite"]
        .as_str()
        .unwrap()
        .to_string();
    bob.ok(&["contact", "add", &invite]);
    let bob_invite = bob.invite();
    alice.ok(&["contact", "add", &bob_invite, "--reader", &old_card.reader]);
    bob.sync();
    // Carol asks too; Alice has not answered when the backup is made.
    let carol = Cli::new(&dir.path().join("carol"));
    carol.init(&relay_addr, "Carol");
    carol.ok(&["contact", "add", &invite]);
    bob.ok(&["send", "Alice", "from bob before the backup"]);
    alice.ok(&["sync", "--reader", &old_card.reader]);
    alice.ok(&[
        "send",
        "Bob",
        "from alice before the backup",
        "--reader",
        &old_card.reader,
    ]);
    assert_eq!(
        Cli::messages(&bob.sync()),
        vec![("Alice".into(), "from alice before the backup".into())]
    );

    // The first backup makes the recovery key and shows it once; the second does not show it.
    let file = dir.path().join("alice.tsbk");
    let made = alice.ok(&[
        "backup",
        "create",
        file.to_str().unwrap(),
        "--reader",
        &old_card.reader,
    ]);
    let recovery = made["recovery_key"].as_str().unwrap().to_string();
    assert_eq!(recovery.len(), 35, "six groups of five: {recovery}");
    let again = dir.path().join("alice-2.tsbk");
    let second = alice.ok(&[
        "backup",
        "create",
        again.to_str().unwrap(),
        "--reader",
        &old_card.reader,
    ]);
    assert!(second["recovery_key"].is_null(), "{second}");
    // Nothing of the account is readable in the file.
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes.len() as u64, made["bytes"].as_u64().unwrap());
    // Needles of five bytes or more: a three-byte one ("Bob") turns up by chance in about one
    // ciphertext of this size in two hundred (a 100 KiB file has ~100,000 places for it, each
    // matching with probability 2^-24).
    for needle in ["before the backup", "Alice", &relay_addr] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle:?} is readable in the backup"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A message Bob sends after the backup, before the wipe: it was never in the backup, so the
    // restored account will not have it.
    bob.ok(&["send", "Alice", "after the backup"]);
    alice.ok(&["sync", "--reader", &old_card.reader]);

    // The laptop is lost: panic wipe. The old card is gone with it.
    let o = alice.run(&["panic", "--yes"]);
    assert!(o.ok, "{}\n{}", o.stdout, o.stderr);
    assert!(!alice.dir.exists());
    old_card.remove();

    // A new card, a new data directory, a new password.
    let new_card = Sim::insert(&dir.path().join("card-new.json"), 1);
    let mut restored = Cli::new(&dir.path().join("alice-restored"));
    restored.password = "a new password for a new laptop".into();
    restored.ok(&["card", "provision", "--reader", &new_card.reader]);
    let restore_args = [
        "backup",
        "restore",
        file.to_str().unwrap(),
        "--reader",
        &new_card.reader,
        "--kdf-memory-mib",
        "19",
    ];

    // Refusals first, each typed, each leaving no account behind.
    let mut wrong = Cli::new(&restored.dir);
    wrong.password = restored.password.clone();
    let other_key = {
        // A well-formed key that is not this backup's: change one character.
        let mut k: Vec<char> = recovery.chars().collect();
        k[0] = if k[0] == 'A' { 'B' } else { 'A' };
        k.into_iter().collect::<String>()
    };
    wrong.env = vec![("TESSERA_RECOVERY_KEY".into(), other_key)];
    let o = wrong.run(&restore_args);
    assert!(!o.ok);
    assert_eq!(o.json["kind"], "wrong_recovery_key", "{}", o.stdout);
    assert!(!restored.dir.join("vault.key").exists());
    wrong.env = vec![("TESSERA_RECOVERY_KEY".into(), "not a key".into())];
    let o = wrong.run(&restore_args);
    assert_eq!(o.json["kind"], "bad_recovery_key", "{}", o.stdout);
    let not_a_backup = dir.path().join("card-new.json");
    let o = wrong.run(&[
        "backup",
        "restore",
        not_a_backup.to_str().unwrap(),
        "--reader",
        &new_card.reader,
    ]);
    assert_eq!(o.json["kind"], "not_a_backup", "{}", o.stdout);
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 1;
    let damaged_file = dir.path().join("damaged.tsbk");
    std::fs::write(&damaged_file, &damaged).unwrap();
    wrong.env = vec![("TESSERA_RECOVERY_KEY".into(), recovery.to_lowercase())];
    let o = wrong.run(&[
        "backup",
        "restore",
        damaged_file.to_str().unwrap(),
        "--reader",
        &new_card.reader,
    ]);
    assert_eq!(o.json["kind"], "backup_damaged", "{}", o.stdout);
    assert!(!restored.dir.join("vault.key").exists());
    // Not over an existing account.
    let mut over_bob = Cli::new(&bob.dir);
    over_bob.env = vec![("TESSERA_RECOVERY_KEY".into(), recovery.clone())];
    let o = over_bob.run(&restore_args);
    assert_eq!(o.json["kind"], "vault_exists", "{}", o.stdout);
    assert!(bob.run(&["invite"]).ok);

    // The restore itself (the key typed in lower case, as a person might).
    restored.env = vec![("TESSERA_RECOVERY_KEY".into(), recovery.to_lowercase())];
    let r = restored.ok(&restore_args);
    assert_eq!(r["contacts"], 2, "{r}");
    assert_eq!(r["relay_pending"], false, "{r}");
    assert!(r["card"].is_string(), "the new card protects it: {r}");
    restored.env.clear();

    // The history of before the backup is back.
    let history = restored.ok(&["history", "Bob", "--reader", &new_card.reader]);
    let bodies: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert!(bodies.contains(&"from bob before the backup"), "{bodies:?}");
    assert!(
        bodies.contains(&"from alice before the backup"),
        "{bodies:?}"
    );
    assert!(!bodies.contains(&"after the backup"), "{bodies:?}");
    let found = restored.ok(&["search", "backup", "--reader", &new_card.reader]);
    assert_eq!(
        found["messages"].as_array().map(Vec::len),
        Some(2),
        "{found}"
    );

    // The old password does not open it; the new one with the new card does.
    let mut old_password = Cli::new(&restored.dir);
    old_password.password = alice.password.clone();
    let o = old_password.run(&["invite", "--reader", &new_card.reader]);
    assert_eq!(o.json["kind"], "wrong_password", "{}", o.stdout);

    // Bob learns of the reset (with Alice's new certificate) and both go on talking.
    let events = bob.sync();
    assert!(
        events.iter().any(|e| e["event"] == "session_reset"),
        "bob was not told of the new keys: {events:?}"
    );
    bob.ok(&["send", "Alice", "welcome back"]);
    let events = restored.ok(&["sync", "--reader", &new_card.reader]);
    let got = Cli::messages(events["events"].as_array().unwrap());
    assert!(
        got.contains(&("Bob".into(), "welcome back".into())),
        "{got:?}"
    );
    restored.ok(&[
        "send",
        "Bob",
        "restored and talking",
        "--reader",
        &new_card.reader,
    ]);
    assert_eq!(
        Cli::messages(&bob.sync()),
        vec![("Alice".into(), "restored and talking".into())]
    );
    // Bob's view of Alice is still one accepted contact (same account key, new device keys).
    let list = bob.ok(&["contact", "list"]);
    assert_eq!(list["contacts"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["contacts"][0]["state"], "accepted", "{list}");

    // Carol's request, unanswered in the backup, is answered on the restored account: the
    // acceptance carries the new certificate, and Carol's messages reach the new keys.
    let list = restored.ok(&["contact", "list", "--reader", &new_card.reader]);
    assert!(
        list["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "Carol" && c["state"] == "incoming"),
        "{list}"
    );
    let carol_invite = carol.invite();
    restored.ok(&[
        "contact",
        "add",
        &carol_invite,
        "--reader",
        &new_card.reader,
    ]);
    let events = carol.sync();
    assert!(
        events.iter().any(|e| e["event"] == "contact_accepted"),
        "{events:?}"
    );
    carol.ok(&["send", "Alice", "hello from carol"]);
    let events = restored.ok(&["sync", "--reader", &new_card.reader]);
    let got = Cli::messages(events["events"].as_array().unwrap());
    assert_eq!(got, vec![("Carol".into(), "hello from carol".into())]);

    // Scheduled backups: the restored account kept its recovery key (no new one is shown), and
    // the next sync writes a backup into the folder that the same key opens.
    let folder = dir.path().join("backups");
    std::fs::create_dir(&folder).unwrap();
    let scheduled = restored.ok(&[
        "backup",
        "schedule",
        "--folder",
        folder.to_str().unwrap(),
        "--every-days",
        "1",
        "--reader",
        &new_card.reader,
    ]);
    assert!(scheduled["recovery_key"].is_null(), "{scheduled}");
    restored.ok(&["sync", "--reader", &new_card.reader]);
    let written: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let name = written[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(
        name.starts_with("tessera-backup-") && name.ends_with(".tsbk"),
        "{name}"
    );
    let key = tessera_store::backup::RecoveryKey::parse(&recovery).unwrap();
    let (_, payload) =
        tessera_store::backup::open_with_recovery_key(&key, &std::fs::read(&written[0]).unwrap())
            .unwrap();
    let snapshot = tessera_store::backup::Snapshot::from_payload(&payload).unwrap();
    assert!(snapshot.database.len() > 4096);
    // Not due again within the day: the next sync writes nothing.
    restored.ok(&["sync", "--reader", &new_card.reader]);
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1);
}
