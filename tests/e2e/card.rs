//! The card path through the real PC/SC stack: pcscd with the vsmartcard `vpcd` driver, and
//! Tessera's virtual NTAG 424 DNA connected to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tessera_e2e::process::Guard;
use tessera_nfc::protocol::apdu;
use tessera_nfc::reader::{ReaderError, Readers};
use tessera_nfc::{Authentication, CommMode, NfcError, Status};

/// pcscd, started for the test if it is not already running.
fn pcscd() -> Option<Guard> {
    if Readers::open().and_then(|r| r.list()).is_ok() {
        return None;
    }
    let child = std::process::Command::new("pcscd")
        .args(["--foreground"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("pcscd (package pcscd) is needed for the card tests; ./scripts/setup installs it");
    let guard = Guard::new("pcscd", child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Readers::open().and_then(|r| r.list()).is_err() {
        assert!(
            Instant::now() < deadline,
            "pcscd did not come up with the vpcd reader"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(guard)
}

fn vpcd_reader(readers: &Readers) -> String {
    readers
        .list()
        .unwrap()
        .into_iter()
        .find(|r| r.starts_with("Virtual PCD") && r.ends_with("00 00"))
        .expect("the vpcd reader (package vsmartcard-vpcd) is not configured in pcscd")
}

#[test]
fn card_virtual_card_through_pcscd_answers_and_removal_is_seen() {
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
    let saved = tessera_nfc::vpcd::load_or_create(&state).unwrap();
    assert_eq!(saved.uid.to_vec(), uid);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // Removing the card (closing the socket) is seen by PC/SC within a second; the open
    // connection then fails as "removed".
    drop(card);
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
            readers.connect(&reader).err(),
            Some(ReaderError::NoCard | ReaderError::CardRemoved)
        ),
        "connecting to an absent card did not fail as such"
    );
    eprintln!("card removal seen after {seen:?}");
}
