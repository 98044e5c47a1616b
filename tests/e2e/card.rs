//! The card path through the real PC/SC stack: pcscd with the vsmartcard `vpcd` driver, and
//! Tessera's virtual NTAG 424 DNA connected to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tessera_e2e::card::{KeyringKeys, Sim, pcscd, slots, vpcd_reader};
use tessera_e2e::cli::Cli;
use tessera_e2e::process::Guard;
use tessera_e2e::relay::Relay;
use tessera_nfc::protocol::apdu;
use tessera_nfc::reader::{ReaderError, Readers};
use tessera_nfc::{Authentication, CommMode, NfcError, Status};
use tessera_store::SecretStore as _;

/// Bytes from hex (test input only).
fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn card_virtual_card_through_pcscd_answers_and_removal_is_seen() {
    let _slots = slots();
    let _pcscd = pcscd();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("card.json");
    let removed = Arc::new(AtomicBool::new(false));
    let sim = {
        let (state, removed) = (state.clone(), removed.clone());
        std::thread::spawn(move || {
            tessera_nfc::vpcd::serve(
                &format!("127.0.0.1:{}", tessera_nfc::vpcd::DEFAULT_PORT),
                &state,
                &KeyringKeys,
                &|| removed.load(Ordering::SeqCst),
            )
        })
    };
    let readers = Readers::open().unwrap();
    let reader = vpcd_reader(&readers);
    assert!(
        readers
            .wait_for(&reader, true, Duration::from_secs(10))
            .unwrap(),
        "card not inserted"
    );

    let card = readers.connect(&reader).unwrap();
    let r = card.transmit(&apdu::select_ndef_application()).unwrap();
    assert_eq!(r, vec![0x90, 0x00]);
    // A factory card: key 0 is all zeros; a wrong key is the card's typed error.
    let (a, c1) = Authentication::first(&[1; 16], 0);
    let (reply, c2) = a.challenge(&card.transmit(&c1).unwrap(), [7; 16]).unwrap();
    assert_eq!(
        reply.finish(&card.transmit(&c2).unwrap()).err(),
        Some(NfcError::Card(Status::AuthenticationError))
    );
    let (a, c1) = Authentication::first(&[0; 16], 0);
    let (reply, c2) = a.challenge(&card.transmit(&c1).unwrap(), [7; 16]).unwrap();
    let mut s = reply.finish(&card.transmit(&c2).unwrap()).unwrap();
    let (c, p) = s.command(0x51, &[], &[], CommMode::Full).unwrap();
    let uid = s.response(p, &card.transmit(&c).unwrap()).unwrap();
    assert_eq!(uid.len(), 7);
    // The state file was written and is private.
    let saved = tessera_nfc::vpcd::load_or_create(&state, &KeyringKeys).unwrap();
    assert_eq!(saved.state.uid.to_vec(), uid);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // Another program (another PC/SC context) cannot take the card while it is held.
    let other = Readers::open().unwrap();
    assert_eq!(other.connect(&reader).err(), Some(ReaderError::Busy));

    // Removing the card (closing the socket) is seen by PC/SC within a second; the connection
    // still open then fails as "removed" mid-transaction.
    let t = Instant::now();
    removed.store(true, Ordering::SeqCst);
    sim.join().unwrap().unwrap();
    assert!(
        readers
            .wait_for(&reader, false, Duration::from_secs(5))
            .unwrap()
    );
    let seen = t.elapsed();
    assert!(
        matches!(
            card.transmit(&apdu::select_ndef_application()),
            Err(ReaderError::CardRemoved | ReaderError::NoCard)
        ),
        "a transmit to a removed card did not fail as such"
    );
    drop(card);
    assert!(
        matches!(
            readers.connect(&reader).err(),
            Some(ReaderError::NoCard | ReaderError::CardRemoved)
        ),
        "connecting to an absent card did not fail as such"
    );
    eprintln!("card removal seen after {seen:?}");
}

fn init_with_card(cli: &Cli, relay: &str, name: &str, reader: &str) -> tessera_e2e::cli::Outcome {
    cli.run(&Cli::init_args(
        relay,
        name,
        &["--reader", reader, "--transport", "direct"],
    ))
}

#[test]
fn card_provision_unlock_and_every_refusal() {
    let _slots = slots();
    let _pcscd = pcscd();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let relay_addr = relay.address.to_string();
    let card_a = dir.path().join("card-a.json");
    let sim_a = Sim::insert(&card_a, 0);
    let alice = Cli::new(&dir.path().join("alice"));
    let key_file = alice.dir.join("vault.key");

    // A factory card: status says so, init refuses it until provisioned.
    let status = alice.ok(&["card", "status"]);
    let slot = status["readers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reader"] == sim_a.reader.as_str())
        .unwrap()
        .clone();
    assert_eq!(slot["provisioning"], "factory", "{status}");
    let o = init_with_card(&alice, &relay_addr, "Alice", &sim_a.reader);
    assert_eq!(o.json["kind"], "card_not_provisioned", "{}", o.stdout);
    assert!(!key_file.exists());

    // Provision; a second provisioning is refused (not factory-fresh).
    let p = alice.ok(&["card", "provision", "--reader", &sim_a.reader]);
    let uid_a = p["uid"].as_str().unwrap().to_string();
    assert_eq!(p["reprovisioned"], false);
    // Refused again and again: a refusal leaves nothing behind that would let a later run
    // through without --reprovision.
    for _ in 0..2 {
        let o = alice.run(&["card", "provision", "--reader", &sim_a.reader]);
        assert_eq!(o.json["kind"], "not_factory_fresh", "{}", o.stdout);
    }
    // The card's keys are no longer the factory's: the simulator's state says so.
    let state = tessera_nfc::vpcd::load_or_create(&card_a, &KeyringKeys)
        .unwrap()
        .state;
    assert!(state.keys.iter().all(|k| k.iter().any(|b| *b != 0)));

    // init with the card; the vault opens with card + password.
    let created = init_with_card(&alice, &relay_addr, "Alice", &sim_a.reader);
    assert!(created.ok, "{}\n{}", created.stdout, created.stderr);
    assert_eq!(created.json["card"], uid_a.as_str());
    let status = alice.ok(&["card", "status"]);
    assert!(
        status.to_string().contains("\"enrolled_here\":true"),
        "{status}"
    );
    assert!(alice.run(&["invite"]).ok);

    // Right card, wrong password: refused before the card is read (the card's key is sealed
    // under the password, docs/card-key.md), and the key file still opens afterwards.
    let wrong_pw = Cli {
        dir: alice.dir.clone(),
        password: "wrong horse".into(),
        env: alice.env.clone(),
    };
    let o = wrong_pw.run(&["invite", "--reader", &sim_a.reader]);
    assert_eq!(o.json["kind"], "wrong_password", "{}", o.stdout);
    // The card's SUN counter did not move: the next unlock sees no read but its own.
    let o = alice.run(&["invite", "--reader", &sim_a.reader]);
    assert!(o.ok, "{}", o.stderr);
    assert!(!o.stderr.contains("time(s) since"), "{}", o.stderr);

    // A second card, provisioned for another account, on the other slot: refused for Alice.
    let card_b = dir.path().join("card-b.json");
    let sim_b = Sim::insert(&card_b, 1);
    let bob = Cli::new(&dir.path().join("bob"));
    bob.ok(&["card", "provision", "--reader", &sim_b.reader]);
    let b = init_with_card(&bob, &relay_addr, "Bob", &sim_b.reader);
    assert!(b.ok, "{}", b.stderr);
    let o = alice.run(&["invite", "--reader", &sim_b.reader]);
    assert_eq!(o.json["kind"], "wrong_card", "{}", o.stdout);
    assert!(bob.run(&["invite", "--reader", &sim_b.reader]).ok);

    // A replayed SUN counter: a copy of card A taken before Alice's last unlock (a clone made
    // earlier) is refused. Its next read is above the recorded counter, but that unlock gave
    // the card a new secret, which the copy does not have: refused again.
    let snapshot = std::fs::read(&card_a).unwrap();
    assert!(alice.run(&["invite", "--reader", &sim_a.reader]).ok);
    sim_a.remove();
    let genuine = std::fs::read(&card_a).unwrap();
    std::fs::write(&card_a, &snapshot).unwrap();
    let sim_a = Sim::insert(&card_a, 0);
    let o = alice.run(&["invite", "--reader", &sim_a.reader]);
    assert_eq!(o.json["kind"], "card_replayed", "{}", o.stdout);
    let o = alice.run(&["invite", "--reader", &sim_a.reader]);
    assert_eq!(o.json["kind"], "wrong_password", "{}", o.stdout);
    // The card itself still opens.
    sim_a.remove();
    std::fs::write(&card_a, &genuine).unwrap();
    let sim_a = Sim::insert(&card_a, 0);
    assert!(alice.run(&["invite", "--reader", &sim_a.reader]).ok);

    // No card, no reader service: clear errors, the key file untouched, the vault locked.
    let before = std::fs::read(&key_file).unwrap();
    sim_a.remove();
    let o = alice.run(&["invite", "--reader", "Virtual PCD 00 00"]);
    assert_eq!(o.json["kind"], "no_card", "{}", o.stdout);
    // Without --reader the first reader with a card is used: only Bob's card is left.
    let o = alice.run(&["invite"]);
    assert_eq!(o.json["kind"], "wrong_card", "{}", o.stdout);
    let mut no_service = alice.command(&["invite"]);
    no_service.env("PCSCLITE_CSOCK_NAME", dir.path().join("no-pcscd.socket"));
    let out = no_service.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert!(!out.status.success());
    assert_eq!(v["kind"], "card_service_unavailable", "{text}");
    assert_eq!(std::fs::read(&key_file).unwrap(), before);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("correct horse"));

    // A vault made without a card gets one with `card enroll` and then needs it.
    sim_b.remove();
    let o = alice.run(&["invite"]);
    assert_eq!(o.json["kind"], "no_card", "{}", o.stdout);
    assert_eq!(std::fs::read(&key_file).unwrap(), before);
    let card_c = dir.path().join("card-c.json");
    let sim_c = Sim::insert(&card_c, 1);
    let carol = Cli::new(&dir.path().join("carol"));
    carol.init(&relay_addr, "Carol");
    let p = carol.ok(&["card", "provision", "--reader", &sim_c.reader]);
    // Provisioning leaves the card's key in the keyring until a vault takes it.
    let uid_c: [u8; 7] = unhex(p["uid"].as_str().unwrap()).try_into().unwrap();
    let keyring = tessera_store::OsKeyring;
    let card_key = keyring
        .get(&tessera_store::card_entry(&uid_c))
        .unwrap()
        .expect("the provisioned card's key is in the keyring");
    let e = carol.ok(&["card", "enroll", "--reader", &sim_c.reader]);
    assert_eq!(e["ok"], true);
    // Enrolled: the key is sealed in the key file and gone from the keyring; the file holds
    // no plaintext copy of it.
    assert!(
        keyring
            .get(&tessera_store::card_entry(&uid_c))
            .unwrap()
            .is_none()
    );
    let carol_key_file = std::fs::read(carol.dir.join("vault.key")).unwrap();
    assert!(!carol_key_file.windows(32).any(|w| w == &card_key[..]));
    assert!(carol.run(&["invite"]).ok);
    let o = carol.run(&["card", "enroll", "--reader", &sim_c.reader]);
    assert_eq!(o.json["kind"], "card_already_enrolled", "{}", o.stdout);
    // The enrolled card's key is sealed in the vault, not in the keyring: re-provisioning it
    // "from the keyring" is refused and the vault still opens.
    let o = carol.run(&[
        "card",
        "provision",
        "--reprovision",
        "--reader",
        &sim_c.reader,
    ]);
    assert_eq!(o.json["kind"], "card_keys_missing", "{}", o.stdout);
    assert!(carol.run(&["invite"]).ok);
    // Re-provisioning with the card's key given works; the card's keys and secret are new,
    // so the vault enrolled with it no longer opens (documented): the card does not answer to
    // the key sealed in the vault.
    let card_key: String = card_key.iter().map(|b| format!("{b:02x}")).collect();
    let r = carol.ok(&[
        "card",
        "provision",
        "--reprovision",
        "--current-key",
        &card_key,
        "--reader",
        &sim_c.reader,
    ]);
    assert_eq!(r["reprovisioned"], true);
    let o = carol.run(&["invite"]);
    assert_eq!(o.json["kind"], "wrong_card", "{}", o.stdout);
    sim_c.remove();
    let o = carol.run(&["invite"]);
    assert_eq!(o.json["kind"], "no_card", "{}", o.stdout);
}

#[test]
fn card_removal_locks_a_listening_engine_within_a_second() {
    use std::io::BufRead as _;
    let _slots = slots();
    let _pcscd = pcscd();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let card = dir.path().join("card.json");
    let sim = Sim::insert(&card, 0);
    let dana = Cli::new(&dir.path().join("dana"));
    dana.ok(&["card", "provision", "--reader", &sim.reader]);
    let o = init_with_card(&dana, &relay.address.to_string(), "Dana", &sim.reader);
    assert!(o.ok, "{}", o.stderr);

    let mut child = dana
        .command(&["listen", "--reader", &sim.reader])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut listen = Guard::new("listen", child);
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, serde_json::Value)>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send((Instant::now(), v));
            }
        }
    });
    let (_, first) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(first["event"], "connected", "{first}");

    let removed_at = Instant::now();
    sim.guard_kill();
    let (at, locked) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no lock event");
    assert_eq!(locked["event"], "locked", "{locked}");
    assert_eq!(locked["reason"], "card_removed", "{locked}");
    let took = at.duration_since(removed_at);
    eprintln!("card removal to locked engine: {took:?}");
    assert!(took < Duration::from_secs(1), "locked after {took:?}");
    // The listening process ends after locking: nothing of the vault stays in memory.
    let status = listen
        .wait_timeout(Duration::from_secs(10))
        .expect("listen kept running");
    assert!(status.success());
}

/// A phone's read of Tessera's card, through pcscd: `tessera-cli card read-ndef` runs the NFC
/// Forum Type 4 Tag NDEF procedure on the virtual card (select application, CC, NDEF file,
/// ReadBinary with offsets), the SUN it returns verifies with `tessera-cli card verify-sun`,
/// and the counter advances exactly once per read.
#[test]
fn card_sun_read_as_a_phone_reads_it_verifies_and_counts_once_per_read() {
    use rand::SeedableRng as _;
    use tessera_nfc::tag::{self, CardMasterKey};
    let _slots = slots();
    let _pcscd = pcscd();
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::insert(&dir.path().join("card.json"), 0);
    let cli = Cli::new(&dir.path().join("phone"));

    // A factory card holds an empty NDEF message.
    let empty = cli.ok(&["--reader", &sim.reader, "card", "read-ndef"]);
    assert_eq!(empty["ndef"], "", "{empty}");
    assert!(empty["sun"].is_null());

    // Provisioned as Tessera does it, with a master key this test holds.
    let master = CardMasterKey::from_bytes(&[0x5A; 32]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let first = {
        let readers = Readers::open().unwrap();
        let mut c = readers.connect(&sim.reader).unwrap();
        tag::provision(&mut c, &[], &master, &[7; 32], &mut rng).unwrap()
    };
    let hex = |k: &[u8]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
    // `card verify-sun` with the meta key of `master` and the file key of `file`.
    let verify = |file: &CardMasterKey, sun: &serde_json::Value| {
        cli.run(&[
            "card",
            "verify-sun",
            "--meta-key",
            &hex(&master.key(tag::KEY_SDM_META)[..]),
            "--file-key",
            &hex(&file.key(tag::KEY_READ)[..]),
            "--picc",
            sun["picc"].as_str().unwrap(),
            "--cmac",
            sun["cmac"].as_str().unwrap(),
        ])
    };
    let mut last = u64::from(first.counter);
    for _ in 0..3 {
        let read = cli.ok(&["--reader", &sim.reader, "card", "read-ndef"]);
        assert_eq!(read["records"][0]["type"], "tessera.app:sun", "{read}");
        let outcome = verify(&master, &read["sun"]);
        assert!(outcome.ok, "{}\n{}", outcome.stdout, outcome.stderr);
        let verified = outcome.json;
        assert_eq!(verified["valid"], true, "{verified}");
        assert_eq!(verified["uid"], hex(&first.uid), "{verified}");
        assert_eq!(
            verified["counter"].as_u64().unwrap(),
            last + 1,
            "one read, one count"
        );
        last += 1;
    }
    // With another card's keys the same SUN does not verify.
    let read = cli.ok(&["--reader", &sim.reader, "card", "read-ndef"]);
    let other = CardMasterKey::from_bytes(&[0x11; 32]);
    let refused = verify(&other, &read["sun"]);
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(
        refused.stdout.contains("\"valid\":false"),
        "{}",
        refused.stdout
    );
    // Tessera's own unlock read of the same card is the next count.
    let readers = Readers::open().unwrap();
    let mut c = readers.connect(&sim.reader).unwrap();
    let unlock = tag::read(&mut c, &master, &mut rng).unwrap();
    assert_eq!(u64::from(unlock.counter), last + 2);
    drop(c);
    sim.remove();
}

/// Panic wipe from the CLI (docs/panic.md) on an account with the card factor: refused without
/// a terminal unless `--yes`; then no file of the account remains, the keyring holds neither the
/// device secret nor the card's keys, and nothing unlocks. Prints the key-destruction time.
#[test]
fn card_panic_wipe_from_the_cli_leaves_nothing() {
    use tessera_store::{KeyFile, OsKeyring, card_entry, vault_entry};
    let _slots = slots();
    let _pcscd = pcscd();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let relay_addr = relay.address.to_string();
    let sim = Sim::insert(&dir.path().join("card.json"), 0);
    let alice = Cli::new(&dir.path().join("alice"));
    let bob = Cli::new(&dir.path().join("bob"));
    alice.ok(&["card", "provision", "--reader", &sim.reader]);
    let created = init_with_card(&alice, &relay_addr, "Alice", &sim.reader);
    assert!(created.ok, "{}\n{}", created.stdout, created.stderr);
    bob.init(&relay_addr, "Bob");
    // Some history, so the database and its WAL hold more than the schema.
    let invite = alice.ok(&["invite", "--reader", &sim.reader])["invite"]
        .as_str()
        .unwrap()
        .to_string();
    bob.ok(&["contact", "add", &invite]);
    bob.ok(&["send", "Alice", "before the wipe"]);
    let events = alice.run(&["sync", "--reader", &sim.reader]);
    assert!(events.ok, "{}", events.stderr);

    let key = KeyFile::load(&alice.dir.join("vault.key")).unwrap();
    let card = key.card.expect("the card factor is on");
    let keyring = OsKeyring;
    assert!(keyring.get(&vault_entry(&key.vault_id)).unwrap().is_some());
    // The card's key is in the key file (docs/card-key.md), not in the keyring.
    assert!(keyring.get(&card_entry(&card.uid)).unwrap().is_none());

    // No terminal and no --yes: nothing happens.
    let o = alice.run(&["panic"]);
    assert!(!o.ok);
    assert!(alice.dir.join("vault.key").exists());

    let o = alice.run(&["panic", "--yes"]);
    assert!(o.ok, "{}\n{}", o.stdout, o.stderr);
    assert_eq!(o.json["wiped"], true, "{}", o.stdout);
    assert_eq!(o.json["problems"].as_array().map(Vec::len), Some(0));
    println!(
        "panic wipe: keys destroyed in {:.2} ms (keyring entry deleted, key file overwritten, \
         synced, removed); {} files and folders removed",
        o.json["keys_destroyed_ms"].as_f64().unwrap(),
        o.json["removed"]
    );
    assert!(!alice.dir.exists(), "no file of the account remains");
    assert!(keyring.get(&vault_entry(&key.vault_id)).unwrap().is_none());
    assert!(keyring.get(&card_entry(&card.uid)).unwrap().is_none());
    let o = alice.run(&["invite", "--reader", &sim.reader]);
    assert!(!o.ok);
    assert_eq!(o.json["kind"], "no_vault", "{}", o.stdout);
    // Bob's side is untouched.
    assert!(bob.run(&["invite"]).ok);
}

/// The secret file's two slots as the virtual card holds them now.
fn card_slots(state: &std::path::Path) -> [[u8; 32]; 2] {
    let card = tessera_nfc::vpcd::load_or_create(state, &KeyringKeys)
        .unwrap()
        .state;
    let file = card.files.iter().find(|f| f.no == 3).unwrap();
    let mut slots = [[0u8; 32]; 2];
    slots[0].copy_from_slice(&file.data[..32]);
    slots[1].copy_from_slice(&file.data[32..64]);
    slots
}

/// `docs/vault.md` §Card secret rotation, through pcscd: every unlock gives the card a new
/// secret; a copy of the card made before an unlock is refused after it, however far its
/// counter is pushed; reads made elsewhere are reported; a card pulled in the middle of the
/// write (torn, or written but not answered) still opens the vault at the next unlock.
#[test]
fn card_secret_rotation_refuses_a_clone_and_survives_a_card_pulled_mid_write() {
    let _slots = slots();
    let _pcscd = pcscd();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let relay_addr = relay.address.to_string();
    let state = dir.path().join("card.json");
    let sim = Sim::insert(&state, 0);
    let alice = Cli::new(&dir.path().join("alice"));
    let key_file = alice.dir.join("vault.key");
    let next_file = alice.dir.join("vault.key.next");
    alice.ok(&["card", "provision", "--reader", &sim.reader]);
    let created = init_with_card(&alice, &relay_addr, "Alice", &sim.reader);
    assert!(created.ok, "{}\n{}", created.stdout, created.stderr);

    // Each unlock writes a new secret into the slot that did not open the vault.
    let first = card_slots(&state);
    let o = alice.run(&["invite", "--reader", &sim.reader]);
    assert!(o.ok, "{}\n{}", o.stdout, o.stderr);
    assert!(!o.stderr.contains("warning"), "{}", o.stderr);
    let second = card_slots(&state);
    assert_eq!(second[0], first[0]);
    assert_ne!(second[1], first[1]);
    assert!(!next_file.exists());
    let o = alice.run(&["invite", "--reader", &sim.reader]);
    assert!(o.ok, "{}", o.stderr);
    let third = card_slots(&state);
    assert_ne!(third[0], second[0]);
    assert_eq!(third[1], second[1]);

    eprintln!("rotation: two unlocks rotated the card");
    // A clone: the card's state copied before the owner's next unlock.
    let clone_state = dir.path().join("clone.json");
    std::fs::copy(&state, &clone_state).unwrap();
    assert!(alice.run(&["invite", "--reader", &sim.reader]).ok);
    sim.remove();
    let clone = Sim::insert(&clone_state, 1);
    // Its counter pushed past the owner's (reads as a phone makes them), it is refused all
    // the same, and nothing of the vault changes.
    for _ in 0..3 {
        alice.ok(&["--reader", &clone.reader, "card", "read-ndef"]);
    }
    let before = std::fs::read(&key_file).unwrap();
    let o = alice.run(&["invite", "--reader", &clone.reader]);
    assert_eq!(o.json["kind"], "wrong_password", "{}", o.stdout);
    assert_eq!(std::fs::read(&key_file).unwrap(), before);
    clone.remove();

    eprintln!("rotation: the clone was refused");
    // The card itself opens; three reads made elsewhere in between are reported.
    let sim = Sim::insert(&state, 0);
    for _ in 0..3 {
        alice.ok(&["--reader", &sim.reader, "card", "read-ndef"]);
    }
    let o = alice.run(&["invite", "--reader", &sim.reader]);
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stderr.contains("read 3 time(s)"), "{}", o.stderr);
    sim.remove();

    // Pulled in the middle of the write: torn, or written but not answered. The unlock that
    // was under way succeeds and says the secret was not replaced; the next unlock opens with
    // the same card, and replaces the secret.
    eprintln!("rotation: reads elsewhere reported");
    for how in ["torn", "written"] {
        eprintln!("rotation: card pulled during the write ({how})");
        let before = card_slots(&state);
        let sim = Sim::insert_with(&state, 0, &["--pull-at", how]);
        let o = alice.run(&["invite", "--reader", &sim.reader]);
        assert!(o.ok, "{how}: {}\n{}", o.stdout, o.stderr);
        assert!(o.stderr.contains("was not replaced"), "{how}: {}", o.stderr);
        sim.remove();
        let after = card_slots(&state);
        let changed = (0..2).filter(|&i| after[i] != before[i]).count();
        assert_eq!(changed, 1, "{how}: one slot written");
        let sim = Sim::insert(&state, 0);
        let o = alice.run(&["invite", "--reader", &sim.reader]);
        assert!(o.ok, "{how}: {}\n{}", o.stdout, o.stderr);
        assert!(
            !o.stderr.contains("was not replaced"),
            "{how}: {}",
            o.stderr
        );
        assert!(!next_file.exists(), "{how}");
        assert_ne!(
            card_slots(&state),
            after,
            "{how}: rotated at the next unlock"
        );
        sim.remove();
    }
}
