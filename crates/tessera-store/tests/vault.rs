//! The vault on disk: key hierarchy, the OS keyring, no plaintext, damage, libsignal sessions
//! through the vault's stores, messages and search.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;

use futures_util::FutureExt as _;
use rand::SeedableRng as _;
use rand_chacha::ChaCha20Rng;
use tessera_crypto::AccountIdentity;
use tessera_crypto::signal::{
    DeviceId, GenericSignedPreKey as _, KeyPair, KyberPreKeyRecord, KyberPreKeyStore as _,
    PreKeyBundle, PreKeyRecord, PreKeyStore as _, ProtocolAddress, SignedPreKeyRecord,
    SignedPreKeyStore as _, Timestamp, kem, message_decrypt, message_encrypt,
    process_prekey_bundle,
};
use tessera_store::{
    Contact, ContactState, KdfParams, MemorySecrets, Message, MessageStatus, OsKeyring,
    SecretStore, Vault, VaultError,
};

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn create(dir: &Path, secrets: &dyn SecretStore, seed: u64) -> Vault {
    Vault::create(
        dir,
        b"correct horse",
        KdfParams::MINIMUM,
        secrets,
        None,
        &mut rng(seed),
    )
    .unwrap()
}

fn contact(id: u8, name: &str) -> Contact {
    Contact {
        account_id: [id; 32],
        name: name.into(),
        account_public: vec![id; 8],
        relay: "tessera://127.0.0.1:1/x".into(),
        state: ContactState::Accepted,
        created: 1,
    }
}

fn message(contact: u8, n: u32, body: &str, outgoing: bool) -> Message {
    let mut message_id = [0u8; 16];
    message_id[..4].copy_from_slice(&n.to_be_bytes());
    message_id[4] = contact;
    Message {
        id: 0,
        conversation: tessera_store::direct_conversation(&[contact; 32]),
        contact: [contact; 32],
        message_id,
        outgoing,
        body: body.into(),
        sent: i64::from(n),
        received: None,
        status: if outgoing {
            MessageStatus::Pending
        } else {
            MessageStatus::Received
        },
        read: false,
        kind: "text".into(),
        failure: None,
        time_flag: None,
        reply_to: None,
        edited: None,
        expires_in: None,
        expire_at: None,
        preview: None,
    }
}

#[test]
fn password_device_secret_and_password_change() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = MemorySecrets::default();
    let v = create(dir.path(), &secrets, 1);
    v.set_setting("theme", "dark").unwrap();
    let id = v.vault_id();
    drop(v);

    let v = Vault::open(
        dir.path(),
        b"correct horse",
        &secrets,
        None,
        &mut rand::rng(),
    )
    .unwrap();
    assert_eq!(v.setting("theme").unwrap().as_deref(), Some("dark"));
    drop(v);
    assert!(matches!(
        Vault::open(
            dir.path(),
            b"correct horsf",
            &secrets,
            None,
            &mut rand::rng()
        ),
        Err(VaultError::WrongFactor)
    ));
    assert!(matches!(
        Vault::create(
            dir.path(),
            b"x",
            KdfParams::MINIMUM,
            &secrets,
            None,
            &mut rng(2)
        ),
        Err(VaultError::AlreadyExists)
    ));

    // Changing the password rewraps the key; the database file is not rewritten.
    let db = std::fs::read(dir.path().join("vault.sqlite3")).unwrap();
    Vault::change_password(
        dir.path(),
        b"correct horse",
        b"battery staple",
        Some(KdfParams::MINIMUM),
        &secrets,
        None,
        &mut rng(3),
    )
    .unwrap();
    assert_eq!(std::fs::read(dir.path().join("vault.sqlite3")).unwrap(), db);
    assert!(matches!(
        Vault::open(
            dir.path(),
            b"correct horse",
            &secrets,
            None,
            &mut rand::rng()
        ),
        Err(VaultError::WrongFactor)
    ));
    let v = Vault::open(
        dir.path(),
        b"battery staple",
        &secrets,
        None,
        &mut rand::rng(),
    )
    .unwrap();
    assert_eq!(v.setting("theme").unwrap().as_deref(), Some("dark"));
    drop(v);

    // Without the device secret the password alone is useless, and the error says why.
    secrets.delete(&tessera_store::vault_entry(&id)).unwrap();
    assert!(matches!(
        Vault::open(
            dir.path(),
            b"battery staple",
            &secrets,
            None,
            &mut rand::rng()
        ),
        Err(VaultError::DeviceSecretMissing)
    ));
    // A different device secret is a wrong factor.
    secrets
        .put(&tessera_store::vault_entry(&id), &[9; 32])
        .unwrap();
    assert!(matches!(
        Vault::open(
            dir.path(),
            b"battery staple",
            &secrets,
            None,
            &mut rand::rng()
        ),
        Err(VaultError::WrongFactor)
    ));
    assert!(matches!(
        Vault::open(
            &dir.path().join("nothing"),
            b"x",
            &secrets,
            None,
            &mut rand::rng()
        ),
        Err(VaultError::NoVault)
    ));
}

#[test]
fn the_vault_files_hold_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = MemorySecrets::default();
    let v = create(dir.path(), &secrets, 4);
    let secret_text = "the eagle lands at dawn 7f3a9c";
    v.put_contact(&contact(1, "Zebediah Quux")).unwrap();
    for n in 0..200 {
        v.insert_message(&message(1, n, &format!("{secret_text} #{n}"), n % 2 == 0))
            .unwrap();
    }
    v.set_setting("note", secret_text).unwrap();
    // Look at the files while the vault is open (WAL in use) and after it is closed.
    let scan = |when: &str| {
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            for needle in [
                secret_text.as_bytes(),
                b"Zebediah",
                b"CREATE TABLE",
                b"SQLite format",
            ] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} contains {:?} ({when})",
                    path.display(),
                    String::from_utf8_lossy(needle)
                );
            }
        }
    };
    scan("open");
    drop(v);
    scan("closed");
}

#[test]
fn a_tampered_or_truncated_database_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = MemorySecrets::default();
    let v = create(dir.path(), &secrets, 5);
    v.put_contact(&contact(1, "a")).unwrap();
    for n in 0..300 {
        v.insert_message(&message(1, n, &"x".repeat(200), false))
            .unwrap();
    }
    drop(v);
    let db = dir.path().join("vault.sqlite3");
    let original = std::fs::read(&db).unwrap();
    assert!(original.len() > 16 * 4096, "{}", original.len());

    // One flipped byte in the first page (holds the schema).
    let mut bad = original.clone();
    bad[100] ^= 0x40;
    std::fs::write(&db, &bad).unwrap();
    assert!(matches!(
        Vault::open(
            dir.path(),
            b"correct horse",
            &secrets,
            None,
            &mut rand::rng()
        ),
        Err(VaultError::Corrupt)
    ));
    // A flipped byte in a data page: opening works, reading that page fails with an error.
    let mut bad = original.clone();
    let at = original.len() - 3 * 4096 + 500;
    bad[at] ^= 0x01;
    std::fs::write(&db, &bad).unwrap();
    match Vault::open(
        dir.path(),
        b"correct horse",
        &secrets,
        None,
        &mut rand::rng(),
    ) {
        Err(e) => assert!(matches!(e, VaultError::Corrupt), "{e:?}"),
        Ok(v) => {
            // Whichever table or index the page belongs to, reading it fails.
            assert!(
                matches!(v.check_integrity(), Err(VaultError::Corrupt)),
                "a tampered page was read"
            );
        }
    }
    // Truncated.
    std::fs::write(&db, &original[..original.len() / 2]).unwrap();
    match Vault::open(
        dir.path(),
        b"correct horse",
        &secrets,
        None,
        &mut rand::rng(),
    ) {
        Err(e) => assert!(matches!(e, VaultError::Corrupt), "{e:?}"),
        Ok(v) => assert!(matches!(v.check_integrity(), Err(VaultError::Corrupt))),
    }
    // The original file opens again.
    std::fs::write(&db, &original).unwrap();
    let v = Vault::open(
        dir.path(),
        b"correct horse",
        &secrets,
        None,
        &mut rand::rng(),
    )
    .unwrap();
    assert_eq!(v.history(&[1; 32], None, 1000).unwrap().len(), 300);
    v.check_integrity().unwrap();
    // A damaged key file.
    drop(v);
    std::fs::write(dir.path().join("vault.key"), b"nonsense").unwrap();
    assert!(matches!(
        Vault::open(
            dir.path(),
            b"correct horse",
            &secrets,
            None,
            &mut rand::rng()
        ),
        Err(VaultError::KeyFileDamaged)
    ));
}

#[test]
fn the_os_keyring_holds_the_device_secret() {
    // The real backend: Secret Service on the session bus (scripts/with-keyring provides one).
    let dir = tempfile::tempdir().unwrap();
    let keyring = OsKeyring;
    let v = match Vault::create(
        dir.path(),
        b"pw",
        KdfParams::MINIMUM,
        &keyring,
        None,
        &mut rng(6),
    ) {
        Ok(v) => v,
        Err(e) => panic!("{e} (run the tests through ./scripts/test or scripts/with-keyring)"),
    };
    let id = tessera_store::vault_entry(&v.vault_id());
    drop(v);
    assert!(keyring.get(&id).unwrap().is_some());
    Vault::open(dir.path(), b"pw", &keyring, None, &mut rand::rng()).unwrap();
    keyring.delete(&id).unwrap();
    assert!(keyring.get(&id).unwrap().is_none());
    assert!(matches!(
        Vault::open(dir.path(), b"pw", &keyring, None, &mut rand::rng()),
        Err(VaultError::DeviceSecretMissing)
    ));
}

#[test]
fn messages_dedupe_page_search_and_receipts_only_move_forward() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = MemorySecrets::default();
    let v = create(dir.path(), &secrets, 7);
    v.put_contact(&contact(1, "alice")).unwrap();
    v.put_contact(&contact(2, "bob")).unwrap();
    assert!(
        v.put_contact(&Contact {
            account_id: [3; 32],
            ..contact(3, "alice")
        })
        .is_err(),
        "contact names are unique"
    );
    for n in 0..120 {
        let body = if n == 7 {
            "meet me at the Café Olé tomorrow".to_string()
        } else {
            format!("message number {n}")
        };
        assert!(
            v.insert_message(&message(1, n, &body, n % 3 == 0))
                .unwrap()
                .is_some()
        );
    }
    assert!(
        v.insert_message(&message(1, 5, "dup", false))
            .unwrap()
            .is_none(),
        "duplicate id"
    );
    v.insert_message(&message(2, 1000, "bob's number 1", false))
        .unwrap();

    let last = v.history(&[1; 32], None, 50).unwrap();
    assert_eq!(last.len(), 50);
    assert_eq!(last.last().unwrap().sent, 119);
    let older = v.history(&[1; 32], Some(last[0].id), 50).unwrap();
    assert_eq!(older.last().unwrap().sent, 69);
    let oldest = v.history(&[1; 32], Some(older[0].id), 50).unwrap();
    assert_eq!(oldest.len(), 20);
    assert_eq!(oldest[0].sent, 0);

    let hits = v.search("cafe OLE", 10).unwrap();
    assert_eq!(hits.len(), 1, "diacritics and case are folded");
    assert_eq!(hits[0].sent, 7);
    assert_eq!(v.search("numb", 500).unwrap().len(), 120, "prefix match");
    assert!(v.search("\"unbalanced OR (", 10).unwrap().is_empty());

    let out = message(1, 0, "", true).message_id;
    assert!(v.advance_status(&out, MessageStatus::Sent).unwrap());
    assert!(v.advance_status(&out, MessageStatus::Read).unwrap());
    assert!(
        !v.advance_status(&out, MessageStatus::Delivered).unwrap(),
        "never backwards"
    );
    assert_eq!(
        v.message(&out).unwrap().unwrap().status,
        MessageStatus::Read
    );

    assert_eq!(v.unread(&[1; 32]).unwrap(), 80);
    // The conversation list: newest conversation first, one without messages last.
    v.put_contact(&contact(4, "carol")).unwrap();
    let list = v.conversations().unwrap();
    let names: Vec<&str> = list.iter().map(|c| c.contact.name.as_str()).collect();
    assert_eq!(names, ["bob", "alice", "carol"]);
    assert_eq!(list[0].last.as_ref().unwrap().body, "bob's number 1");
    assert_eq!((list[0].unread, list[1].unread, list[2].unread), (1, 80, 0));
    assert_eq!(list[1].last.as_ref().unwrap().sent, 119);
    assert!(list[2].last.is_none());
    assert_eq!(v.mark_read(&[1; 32], 0).unwrap().len(), 80);
    assert_eq!(v.unread(&[1; 32]).unwrap(), 0);
    assert_eq!(v.conversations().unwrap()[1].unread, 0);

    assert!(v.mark_seen(b"envelope-1", 1).unwrap());
    assert!(!v.mark_seen(b"envelope-1", 2).unwrap());
    let a = v.outbox_push(&[2; 32], 1, b"sealed-1", Some(&out)).unwrap();
    let b = v.outbox_push(&[2; 32], 1, b"sealed-2", None).unwrap();
    let queued = v.outbox().unwrap();
    assert_eq!(queued.iter().map(|o| o.id).collect::<Vec<_>>(), vec![a, b]);
    assert!(queued.iter().all(|o| !o.sealed));
    v.outbox_sealed(b, b"envelope-2").unwrap();
    let queued = v.outbox().unwrap();
    assert_eq!(
        (queued[1].sealed, &queued[1].envelope[..]),
        (true, &b"envelope-2"[..])
    );
    assert_eq!(
        (queued[0].sealed, &queued[0].envelope[..]),
        (false, &b"sealed-1"[..])
    );
    v.outbox_remove(a).unwrap();
    assert_eq!(v.outbox().unwrap().len(), 1);
}

/// A libsignal device whose stores are a vault.
fn signal_device(dir: &Path, secrets: &dyn SecretStore, seed: u64) -> (Vault, AccountIdentity) {
    let v = create(dir, secrets, seed);
    let identity = AccountIdentity::generate(&mut rng(seed + 100));
    v.set_local_identity(&identity, 1000 + seed as u32).unwrap();
    (v, identity)
}

fn publish(v: &Vault, identity: &AccountIdentity, r: &mut ChaCha20Rng) -> PreKeyBundle {
    let signal = identity.signal_identity().unwrap();
    let spk = KeyPair::generate(r);
    let kyber = kem::KeyPair::generate(kem::KeyType::Kyber1024, r);
    let spk_sig = signal
        .private_key()
        .calculate_signature(&spk.public_key.serialize(), r)
        .unwrap();
    let kyber_sig = signal
        .private_key()
        .calculate_signature(&kyber.public_key.serialize(), r)
        .unwrap();
    let otpk = KeyPair::generate(r);
    let mut s = v.signal();
    s.save_pre_key(7.into(), &PreKeyRecord::new(7.into(), &otpk))
        .now_or_never()
        .unwrap()
        .unwrap();
    s.save_signed_pre_key(
        1.into(),
        &SignedPreKeyRecord::new(1.into(), Timestamp::from_epoch_millis(1), &spk, &spk_sig),
    )
    .now_or_never()
    .unwrap()
    .unwrap();
    s.save_kyber_pre_key(
        1.into(),
        &KyberPreKeyRecord::new(
            1.into(),
            Timestamp::from_epoch_millis(1),
            &kyber,
            &kyber_sig,
        ),
    )
    .now_or_never()
    .unwrap()
    .unwrap();
    PreKeyBundle::new(
        2000,
        DeviceId::new(1).unwrap(),
        Some((7.into(), otpk.public_key)),
        1.into(),
        spk.public_key,
        spk_sig.to_vec(),
        1.into(),
        kyber.public_key,
        kyber_sig.to_vec(),
        *signal.identity_key(),
    )
    .unwrap()
}

#[test]
fn libsignal_sessions_live_in_the_vault_and_survive_reopening() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let secrets = MemorySecrets::default();
    let (alice, _) = signal_device(da.path(), &secrets, 10);
    let (bob, bob_id) = signal_device(db.path(), &secrets, 11);
    let mut r = rng(12);
    let bob_addr = ProtocolAddress::new("bob".into(), DeviceId::new(1).unwrap());
    let alice_addr = ProtocolAddress::new("alice".into(), DeviceId::new(1).unwrap());
    let now = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);

    let bundle = publish(&bob, &bob_id, &mut r);
    let (mut s, mut i) = (alice.signal(), alice.signal());
    process_prekey_bundle(&bob_addr, &mut s, &mut i, &bundle, now, &mut r)
        .now_or_never()
        .unwrap()
        .unwrap();
    let first = message_encrypt(b"hello Bob", &bob_addr, &mut s, &mut i, now, &mut r)
        .now_or_never()
        .unwrap()
        .unwrap();

    // Bob's vault is closed and reopened between the two steps: nothing lives in memory.
    drop(bob);
    let bob = Vault::open(
        db.path(),
        b"correct horse",
        &secrets,
        None,
        &mut rand::rng(),
    )
    .unwrap();
    let (mut bs, mut bi, mut bp, bsp, mut bk) = (
        bob.signal(),
        bob.signal(),
        bob.signal(),
        bob.signal(),
        bob.signal(),
    );
    let plain = message_decrypt(
        &first,
        &alice_addr,
        &mut bs,
        &mut bi,
        &mut bp,
        &bsp,
        &mut bk,
        &mut r,
    )
    .now_or_never()
    .unwrap()
    .unwrap();
    assert_eq!(plain, b"hello Bob");
    // The one-time prekey was consumed.
    assert!(
        bob.signal()
            .get_pre_key(7.into())
            .now_or_never()
            .unwrap()
            .is_err()
    );
    // The same session start replayed is refused (Kyber last-resort reuse check).
    assert!(
        message_decrypt(
            &first,
            &alice_addr,
            &mut bs,
            &mut bi,
            &mut bp,
            &bsp,
            &mut bk,
            &mut r
        )
        .now_or_never()
        .unwrap()
        .is_err()
    );

    let reply = message_encrypt(b"hi Alice", &alice_addr, &mut bs, &mut bi, now, &mut r)
        .now_or_never()
        .unwrap()
        .unwrap();
    drop(alice);
    let alice = Vault::open(
        da.path(),
        b"correct horse",
        &secrets,
        None,
        &mut rand::rng(),
    )
    .unwrap();
    let (mut s, mut i, mut p, sp, mut k) = (
        alice.signal(),
        alice.signal(),
        alice.signal(),
        alice.signal(),
        alice.signal(),
    );
    let plain = message_decrypt(
        &reply, &bob_addr, &mut s, &mut i, &mut p, &sp, &mut k, &mut r,
    )
    .now_or_never()
    .unwrap()
    .unwrap();
    assert_eq!(plain, b"hi Alice");

    // Bob's identity is recorded; a different key for "bob" is not trusted until accepted.
    let rec = alice.identity_record("bob").unwrap().unwrap();
    assert!(!rec.verified && !rec.changed);
    assert!(alice.set_verified("bob", true).unwrap());
    let other = AccountIdentity::generate(&mut r).signal_identity().unwrap();
    let rogue = PreKeyBundle::new(
        2000,
        DeviceId::new(1).unwrap(),
        None,
        1.into(),
        bundle.signed_pre_key_public().unwrap(),
        bundle.signed_pre_key_signature().unwrap().to_vec(),
        1.into(),
        bundle.kyber_pre_key_public().unwrap().clone(),
        bundle.kyber_pre_key_signature().unwrap().to_vec(),
        *other.identity_key(),
    )
    .unwrap();
    assert!(
        process_prekey_bundle(&bob_addr, &mut s, &mut i, &rogue, now, &mut r)
            .now_or_never()
            .unwrap()
            .is_err(),
        "a new identity was accepted silently"
    );
    let rec = alice.identity_record("bob").unwrap().unwrap();
    assert!(rec.changed, "the change is flagged for the user");
    alice.accept_identity("bob", other.identity_key()).unwrap();
    let rec = alice.identity_record("bob").unwrap().unwrap();
    assert!(
        !rec.verified && !rec.changed,
        "accepting a new key clears verified"
    );
}

fn card(uid: u8, counter: u32, secret: u8) -> tessera_store::CardFactor {
    tessera_store::CardFactor::with_secret([uid; 7], counter, [secret; 32])
}

#[test]
fn the_card_factor_is_enrolled_required_and_its_counter_must_rise() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = MemorySecrets::default();
    Vault::create(
        dir.path(),
        b"pw",
        KdfParams::MINIMUM,
        &secrets,
        None,
        &mut rng(8),
    )
    .unwrap()
    .set_setting("kept", "yes")
    .unwrap();
    assert_eq!(Vault::card_binding(dir.path()).unwrap(), None);
    // Enrolling needs the right password; afterwards the vault needs the card.
    assert!(matches!(
        Vault::enroll_card(dir.path(), b"pW", &secrets, &card(4, 3, 1), &mut rng(9)),
        Err(VaultError::WrongFactor)
    ));
    Vault::enroll_card(dir.path(), b"pw", &secrets, &card(4, 3, 1), &mut rng(9)).unwrap();
    assert!(matches!(
        Vault::enroll_card(dir.path(), b"pw", &secrets, &card(4, 4, 1), &mut rng(9)),
        Err(VaultError::CardAlreadyEnrolled)
    ));
    assert_eq!(
        Vault::card_binding(dir.path())
            .unwrap()
            .map(|b| (b.uid, b.counter)),
        Some(([4; 7], 3))
    );
    let open = |c: Option<&tessera_store::CardFactor>, pw: &[u8]| {
        Vault::open(dir.path(), pw, &secrets, c, &mut rand::rng())
    };
    assert!(matches!(open(None, b"pw"), Err(VaultError::CardRequired)));
    assert!(matches!(
        open(Some(&card(5, 9, 1)), b"pw"),
        Err(VaultError::WrongCard)
    ));
    assert!(matches!(
        open(Some(&card(4, 3, 1)), b"pw"),
        Err(VaultError::CardReplayed)
    ));
    assert!(matches!(
        open(Some(&card(4, 9, 2)), b"pw"),
        Err(VaultError::WrongFactor)
    ));
    assert!(matches!(
        open(Some(&card(4, 9, 1)), b"pW"),
        Err(VaultError::WrongFactor)
    ));
    // Failed attempts recorded nothing: counter 4 still opens, then 4 is a replay.
    let v = open(Some(&card(4, 4, 1)), b"pw").unwrap();
    assert_eq!(v.setting("kept").unwrap().as_deref(), Some("yes"));
    drop(v);
    assert_eq!(
        Vault::card_binding(dir.path()).unwrap().map(|b| b.counter),
        Some(4)
    );
    assert!(matches!(
        open(Some(&card(4, 4, 1)), b"pw"),
        Err(VaultError::CardReplayed)
    ));
    // Changing the password keeps the card factor and needs a fresh read too.
    assert!(matches!(
        Vault::change_password(
            dir.path(),
            b"pw",
            b"new",
            Some(KdfParams::MINIMUM),
            &secrets,
            None,
            &mut rng(10)
        ),
        Err(VaultError::CardRequired)
    ));
    Vault::change_password(
        dir.path(),
        b"pw",
        b"new",
        None,
        &secrets,
        Some(&card(4, 5, 1)),
        &mut rng(10),
    )
    .unwrap();
    assert!(matches!(
        open(Some(&card(4, 6, 1)), b"pw"),
        Err(VaultError::WrongFactor)
    ));
    open(Some(&card(4, 6, 1)), b"new").unwrap();
    assert!(matches!(open(None, b"new"), Err(VaultError::CardRequired)));

    // Replacing the card: the checks run first (nothing changes on a refusal), then only the
    // new card opens the vault, with the same password and data.
    let key = std::fs::read(dir.path().join(tessera_store::KEY_FILE)).unwrap();
    let replace = |pw: &[u8], old: tessera_store::CardFactor, new: tessera_store::CardFactor| {
        Vault::replace_card(dir.path(), pw, &secrets, &old, &new, &mut rng(11))
    };
    assert!(matches!(
        replace(b"wrong", card(4, 7, 1), card(6, 1, 3)),
        Err(VaultError::WrongFactor)
    ));
    assert!(matches!(
        replace(b"new", card(5, 7, 1), card(6, 1, 3)),
        Err(VaultError::WrongCard)
    ));
    assert!(matches!(
        replace(b"new", card(4, 6, 1), card(6, 1, 3)),
        Err(VaultError::CardReplayed)
    ));
    assert!(matches!(
        replace(b"new", card(4, 7, 1), card(4, 8, 2)),
        Err(VaultError::SameCard)
    ));
    assert!(Vault::check_factors(dir.path(), b"new", &secrets, Some(&card(4, 7, 1))).is_ok());
    assert!(matches!(
        Vault::check_factors(dir.path(), b"nope", &secrets, Some(&card(4, 7, 1))),
        Err(VaultError::WrongFactor)
    ));
    assert_eq!(
        std::fs::read(dir.path().join(tessera_store::KEY_FILE)).unwrap(),
        key,
        "refusals and checks left the key file as it was"
    );
    replace(b"new", card(4, 7, 1), card(6, 1, 3)).unwrap();
    assert!(matches!(
        open(Some(&card(4, 8, 1)), b"new"),
        Err(VaultError::WrongCard)
    ));
    let v = open(Some(&card(6, 2, 3)), b"new").unwrap();
    assert_eq!(v.setting("kept").unwrap().as_deref(), Some("yes"));
}

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

/// A card vault holding a contact and a message, with the duress password `run` set or not.
fn duress_vault(dir: &Path, secrets: &MemorySecrets, duress: bool) {
    let v = Vault::create(
        dir,
        b"pw",
        KdfParams::MINIMUM,
        secrets,
        Some(&card(4, 1, 9)),
        &mut rng(20),
    )
    .unwrap();
    v.put_contact(&contact(2, "bob")).unwrap();
    v.insert_message(&message(2, 1, "the meeting is at six", false))
        .unwrap();
    drop(v);
    if duress {
        Vault::set_duress(
            dir,
            b"pw",
            secrets,
            Some(&card(4, 2, 9)),
            Some((b"run", b"decoy settings")),
            &mut rng(21),
        )
        .unwrap();
    } else {
        // The same operation without a duress password (what clearing does).
        Vault::set_duress(
            dir,
            b"pw",
            secrets,
            Some(&card(4, 2, 9)),
            None,
            &mut rng(21),
        )
        .unwrap();
    }
}

#[test]
fn a_duress_password_wipes_the_account_and_opens_an_empty_one() {
    let parent = tempfile::tempdir().unwrap();
    let (with, without) = (parent.path().join("with"), parent.path().join("without"));
    let secrets = MemorySecrets::default();
    let card_keys = tessera_store::card_entry(&[4; 7]);
    secrets.put(&card_keys, &[6; 32]).unwrap();
    duress_vault(&with, &secrets, true);
    duress_vault(&without, &secrets, false);
    // The card's key (left in the keyring by provisioning) moved into the key files.
    assert!(secrets.get(&card_keys).unwrap().is_none());
    // Nothing on disk tells the two apart: the same names and sizes.
    assert_eq!(listing(&with), listing(&without));

    // The account's own password still opens the account, which knows the duress password is
    // set; the duress password is refused where it would only change keys.
    let v = Vault::unlock(&with, b"pw", &secrets, Some(&card(4, 3, 9)), &mut rng(22)).unwrap();
    let tessera_store::Unlock::Opened(v) = v else {
        panic!("the account's password took the duress path");
    };
    assert!(v.duress_configured());
    assert_eq!(v.contacts().unwrap().len(), 1);
    drop(v);
    assert!(matches!(
        Vault::check_factors(&with, b"run", &secrets, Some(&card(4, 4, 9))),
        Err(VaultError::WrongFactor)
    ));
    assert!(matches!(
        Vault::change_password(
            &with,
            b"run",
            b"x",
            None,
            &secrets,
            Some(&card(4, 4, 9)),
            &mut rng(23)
        ),
        Err(VaultError::WrongFactor)
    ));
    assert!(matches!(
        Vault::change_password(
            &with,
            b"pw",
            b"run",
            None,
            &secrets,
            Some(&card(4, 4, 9)),
            &mut rng(23)
        ),
        Err(VaultError::DuressSameAsPassword)
    ));
    // A changed password keeps the duress password.
    Vault::change_password(
        &with,
        b"pw",
        b"pw2",
        None,
        &secrets,
        Some(&card(4, 4, 9)),
        &mut rng(24),
    )
    .unwrap();

    let old_id = tessera_store::KeyFile::load(&with.join("vault.key"))
        .unwrap()
        .vault_id;
    let old_entry = tessera_store::vault_entry(&old_id);
    let old_secret = secrets.get(&old_entry).unwrap().unwrap();
    let unlocked =
        Vault::unlock(&with, b"run", &secrets, Some(&card(4, 5, 9)), &mut rng(25)).unwrap();
    let tessera_store::Unlock::Duress { vault, record } = unlocked else {
        panic!("the duress password opened the account");
    };
    assert_eq!(&record[..], b"decoy settings");
    // The record is in the new vault before its key file exists, for the engine to start the
    // new account from.
    assert_eq!(
        vault
            .local(tessera_store::PENDING_ACCOUNT)
            .unwrap()
            .as_deref()
            .map(|v| &v[..]),
        Some(&b"decoy settings"[..])
    );
    // An empty vault, bound to the same card, opened by the duress password.
    assert!(vault.contacts().unwrap().is_empty());
    assert!(!vault.duress_configured());
    // The same vault id, so the same keyring entry name; its secret is a new one.
    assert_eq!(vault.vault_id(), old_id);
    drop(vault);
    // The account is gone: its device secret was replaced; the card's key is in the new
    // vault's key file, opened by the duress password (the new vault's password).
    let now_secret = secrets.get(&old_entry).unwrap().unwrap();
    assert_ne!(*now_secret, *old_secret);
    assert!(secrets.get(&card_keys).unwrap().is_none());
    let opening = Vault::begin_unlock(&with, b"run", &secrets).unwrap();
    assert_eq!(
        opening.card_key(),
        Some(&tessera_store::CardFactor::TEST_KEY)
    );
    drop(opening);
    assert!(matches!(
        Vault::unlock(&with, b"pw2", &secrets, Some(&card(4, 6, 9)), &mut rng(26)),
        Err(VaultError::WrongFactor)
    ));
    // The card counter of the duress unlock is recorded in the new vault too.
    assert!(matches!(
        Vault::unlock(&with, b"run", &secrets, Some(&card(4, 5, 9)), &mut rng(26)),
        Err(VaultError::CardReplayed)
    ));
    match Vault::unlock(&with, b"run", &secrets, Some(&card(4, 7, 9)), &mut rng(27)).unwrap() {
        tessera_store::Unlock::Opened(v) => {
            assert!(v.contacts().unwrap().is_empty());
            assert!(!v.duress_configured());
        }
        tessera_store::Unlock::Duress { .. } => panic!("the decoy wiped itself"),
    }
    // And the decoy looks like any vault on disk.
    let names: Vec<String> = listing(&with).into_iter().map(|(n, _)| n).collect();
    let expected: Vec<String> = listing(&without).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, expected);
    assert_eq!(
        std::fs::metadata(with.join("vault.key")).unwrap().len(),
        std::fs::metadata(without.join("vault.key")).unwrap().len()
    );
}
