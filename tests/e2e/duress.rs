//! The duress password through the CLI on a card-protected account (docs/duress.md): set, the
//! same files on disk either way, typed at unlock it wipes the account and opens an empty one
//! that is a working account of its own.

use std::path::Path;
use std::time::Instant;

use tessera_e2e::card::{pcscd, slots};
use tessera_e2e::cli::Cli;
use tessera_e2e::pair::CardPair;
use tessera_store::SecretStore as _;

const DURESS: &str = "they are watching";

/// Names and sizes of the files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    out.sort();
    out
}

fn vault_id(dir: &Path) -> [u8; 16] {
    tessera_store::KeyFile::load(&dir.join("vault.key"))
        .unwrap()
        .vault_id
}

/// Runs `args` and returns its outcome and how long the process took.
fn timed(cli: &Cli, args: &[&str]) -> (tessera_e2e::cli::Outcome, u128) {
    let started = Instant::now();
    let o = cli.run(args);
    (o, started.elapsed().as_millis())
}

#[test]
fn a_duress_password_wipes_the_account_and_opens_an_empty_one() {
    let _slots = slots();
    let _pcscd = pcscd();
    let dir = tempfile::tempdir().unwrap();
    let CardPair {
        relay,
        card: _card,
        reader,
        alice,
        bob,
        invite,
    } = CardPair::start(dir.path());
    let relay_addr = relay.address.to_string();
    bob.ok(&["send", "Alice", "the documents are under the floor"]);
    alice.ok(&["sync", "--reader", &reader]);

    // Not set; then set. The files on disk are the same names and sizes either way.
    let status = alice.ok(&["duress", "status", "--reader", &reader]);
    assert_eq!(status["duress_password"], false, "{status}");
    let before = listing(&alice.dir);
    let mut setter = Cli::new(&alice.dir);
    setter.env = vec![("TESSERA_DURESS_PASSWORD".into(), alice.password.clone())];
    let o = setter.run(&["duress", "set", "--reader", &reader]);
    assert_eq!(o.json["kind"], "duress_same_as_password", "{}", o.stdout);
    setter.env = vec![("TESSERA_DURESS_PASSWORD".into(), DURESS.into())];
    setter.ok(&["duress", "set", "--reader", &reader]);
    let after = listing(&alice.dir);
    assert_eq!(before, after, "setting a duress password changed the files");
    let status = alice.ok(&["duress", "status", "--reader", &reader]);
    assert_eq!(status["duress_password"], true, "{status}");
    // Clearing and setting again leaves the same files too.
    alice.ok(&["duress", "clear", "--reader", &reader]);
    assert_eq!(listing(&alice.dir), before);
    setter.ok(&["duress", "set", "--reader", &reader]);
    assert_eq!(listing(&alice.dir), before);

    // A normal unlock, timed (the same command as the duress unlock below).
    let (o, normal_ms) = timed(&alice, &["contact", "list", "--reader", &reader]);
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(
        o.json["contacts"].as_array().map(Vec::len),
        Some(1),
        "{}",
        o.stdout
    );
    // A copy of the account as it is on disk now, as someone who imaged the laptop has it.
    let image = dir.path().join("image");
    std::fs::create_dir_all(&image).unwrap();
    for name in ["vault.key", "vault.sqlite3"] {
        std::fs::copy(alice.dir.join(name), image.join(name)).unwrap();
    }
    let old_id = vault_id(&alice.dir);
    let old_entry = tessera_store::vault_entry(&old_id);
    let old_secret = tessera_store::OsKeyring.get(&old_entry).unwrap().unwrap();

    // Forced to unlock: the duress password, with the card. It looks like any unlock.
    let mut forced = Cli::new(&alice.dir);
    forced.password = DURESS.into();
    let (o, duress_ms) = timed(&forced, &["contact", "list", "--reader", &reader]);
    assert!(o.ok, "{}\n{}", o.stdout, o.stderr);
    assert_eq!(
        o.json["contacts"].as_array().map(Vec::len),
        Some(0),
        "{}",
        o.stdout
    );
    assert!(
        !o.stderr.to_lowercase().contains("duress") && !o.stdout.contains("duress"),
        "the duress unlock tells on itself: {}{}",
        o.stdout,
        o.stderr
    );
    println!(
        "duress e2e: unlock and list contacts, normal {normal_ms} ms, with the duress password \
         {duress_ms} ms (debug build, Argon2id at 19 MiB)"
    );
    let o = forced.run(&["history", "Bob", "--reader", &reader]);
    assert!(!o.ok, "the empty account knows Bob: {}", o.stdout);

    // The account is gone: its device secret was replaced (under the same entry name, so the
    // keyring's names tell nothing either), the real password no longer opens anything, and
    // the disk image cannot be opened either.
    assert_eq!(vault_id(&alice.dir), old_id);
    let new_secret = tessera_store::OsKeyring.get(&old_entry).unwrap().unwrap();
    assert_ne!(*new_secret, *old_secret);
    let o = alice.run(&["contact", "list", "--reader", &reader]);
    assert_eq!(o.json["kind"], "wrong_password", "{}", o.stdout);
    let imaged = Cli::new(&image);
    let o = imaged.run(&["contact", "list", "--reader", &reader]);
    assert!(!o.ok);
    assert_eq!(o.json["kind"], "wrong_password", "{}", o.stdout);
    // Nothing on disk says what happened: the same names, the key file the same size.
    let names = |l: Vec<(String, u64)>| l.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(listing(&alice.dir)), names(before.clone()));
    assert_eq!(
        std::fs::metadata(alice.dir.join("vault.key"))
            .unwrap()
            .len(),
        before.iter().find(|(n, _)| n == "vault.key").unwrap().1
    );
    let status = forced.ok(&["duress", "status", "--reader", &reader]);
    assert_eq!(status["duress_password"], false, "{status}");

    // The empty account is a real one: a new identity that registers at its first connection
    // and that others can talk to.
    let decoy_invite = forced.ok(&["invite", "--reader", &reader])["invite"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(decoy_invite, invite);
    forced.ok(&["sync", "--reader", &reader]);
    let carol = Cli::new(&dir.path().join("carol"));
    carol.init(&relay_addr, "Carol");
    carol.ok(&["contact", "add", &decoy_invite]);
    forced.ok(&["sync", "--reader", &reader]);
    let requests = forced.ok(&["contact", "requests", "--reader", &reader]);
    assert!(requests.to_string().contains("Carol"), "{requests}");
    forced.ok(&["contact", "accept", "Carol", "--reader", &reader]);
    carol.sync();
    forced.ok(&[
        "send",
        "Carol",
        "hello from the new account",
        "--reader",
        &reader,
    ]);
    assert_eq!(
        Cli::messages(&carol.sync()),
        vec![("Alice".into(), "hello from the new account".into())]
    );
}
