//! The card secret rotation at every unlock (`docs/vault.md` §Card secret rotation): the key
//! file side, with card reads made up in the test (the card side is `tessera-nfc`'s
//! `write_secret`; end to end through pcscd in `tests/e2e/card.rs`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;

use rand::SeedableRng as _;
use rand_chacha::ChaCha20Rng;
use tessera_store::{
    CardFactor, KEY_FILE, KdfParams, MemorySecrets, NEXT_KEY_FILE, Unlock, Vault, VaultError,
};
use zeroize::Zeroizing;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

const UID: [u8; 7] = [4, 7, 7, 7, 7, 7, 7];

/// A read of the card: its counter and the two slots of its secret file.
fn read(counter: u32, slot0: u8, slot1: u8) -> CardFactor {
    CardFactor {
        uid: UID,
        counter,
        slots: Zeroizing::new([[slot0; 32], [slot1; 32]]),
        key: Zeroizing::new(CardFactor::TEST_KEY),
    }
}

/// A vault made with the card reading (slot 0 = 1, slot 1 = 9) at counter 1.
fn vault_with_card(dir: &Path, secrets: &MemorySecrets) {
    Vault::create(
        dir,
        b"pw",
        KdfParams::MINIMUM,
        secrets,
        Some(&read(1, 1, 9)),
        &mut rng(1),
    )
    .unwrap()
    .set_setting("kept", "yes")
    .unwrap();
}

fn open(
    dir: &Path,
    secrets: &MemorySecrets,
    pw: &[u8],
    card: &CardFactor,
) -> Result<Vault, VaultError> {
    Vault::open(dir, pw, secrets, Some(card), &mut rng(2))
}

/// Unlocks with `card` and rotates to `new` (all steps, as the card would take them).
fn unlock_and_rotate(dir: &Path, secrets: &MemorySecrets, card: &CardFactor, new: u8) -> usize {
    let mut v = open(dir, secrets, b"pw", card).unwrap();
    let rotation = v.take_card_rotation().unwrap();
    let slot = rotation.target_slot();
    rotation.prepare(&[new; 32], &mut rng(3)).unwrap();
    assert!(dir.join(NEXT_KEY_FILE).exists());
    rotation.commit().unwrap();
    assert!(!dir.join(NEXT_KEY_FILE).exists());
    slot
}

#[test]
fn each_unlock_moves_the_vault_to_a_new_secret_and_a_copy_of_the_card_stops_opening() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = MemorySecrets::default();
    vault_with_card(dir.path(), &secrets);

    // The first unlock opens with slot 0 and moves the vault to a new secret in slot 1.
    assert_eq!(
        unlock_and_rotate(dir.path(), &secrets, &read(2, 1, 9), 2),
        1
    );
    // A copy of the card made before (slot 1 still 9) no longer opens, even with its counter
    // pushed past the recorded one; the card itself (slot 1 now 2) does.
    assert!(matches!(
        open(dir.path(), &secrets, b"pw", &read(10, 1, 9)),
        Err(VaultError::WrongFactor)
    ));
    let mut v = open(dir.path(), &secrets, b"pw", &read(3, 1, 2)).unwrap();
    assert_eq!(v.setting("kept").unwrap().as_deref(), Some("yes"));
    let rotation = v.take_card_rotation().unwrap();
    assert_eq!(
        rotation.target_slot(),
        0,
        "the next secret goes to the other slot"
    );
    assert_eq!(rotation.reads_elsewhere(), 0);
    assert!(v.take_card_rotation().is_none(), "taken once");
    drop((rotation, v));

    // The next rotation writes slot 0; the secret from two unlocks ago is gone for good.
    assert_eq!(
        unlock_and_rotate(dir.path(), &secrets, &read(4, 1, 2), 3),
        0
    );
    assert!(matches!(
        open(dir.path(), &secrets, b"pw", &read(11, 1, 2)),
        Err(VaultError::WrongFactor)
    ));
    // Reads the vault did not see (a phone, a reader elsewhere, someone copying the card)
    // show as the counter's jump.
    let mut v = open(dir.path(), &secrets, b"pw", &read(9, 3, 2)).unwrap();
    assert_eq!(v.take_card_rotation().unwrap().reads_elsewhere(), 4);
}

#[test]
fn a_rotation_cut_short_at_any_step_still_unlocks_with_the_card() {
    // Each case: the vault prepared the move to secret 2 (slot 1); `card` is what the card
    // holds afterwards.
    let cases = [
        ("card pulled before the write", (1, 9)),
        ("write torn (slot 1 damaged)", (1, 0x5A)),
        ("written, not committed", (1, 2)),
        ("written, and slot 0 lost as well", (0x77, 2)),
    ];
    for (what, (slot0, slot1)) in cases {
        let dir = tempfile::tempdir().unwrap();
        let secrets = MemorySecrets::default();
        vault_with_card(dir.path(), &secrets);
        let mut v = open(dir.path(), &secrets, b"pw", &read(2, 1, 9)).unwrap();
        let rotation = v.take_card_rotation().unwrap();
        rotation.prepare(&[2; 32], &mut rng(4)).unwrap();
        drop((rotation, v));
        let prepared = std::fs::read(dir.path().join(NEXT_KEY_FILE)).unwrap();

        let mut v = open(dir.path(), &secrets, b"pw", &read(3, slot0, slot1))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(v.setting("kept").unwrap().as_deref(), Some("yes"), "{what}");
        assert!(
            !dir.path().join(NEXT_KEY_FILE).exists(),
            "{what}: left over"
        );
        if slot0 == 0x77 {
            // Opened with the prepared file, which is now the key file (counter recorded since).
            assert_eq!(v.take_card_rotation().unwrap().target_slot(), 0, "{what}");
            assert_ne!(std::fs::read(dir.path().join(KEY_FILE)).unwrap(), prepared);
        } else {
            assert_eq!(v.take_card_rotation().unwrap().target_slot(), 1, "{what}");
        }
        drop(v);
        // And the rotation after that completes as usual.
        let (s0, s1) = if slot0 == 0x77 {
            (slot0, 2)
        } else {
            (slot0, slot1)
        };
        unlock_and_rotate(dir.path(), &secrets, &read(4, s0, s1), 5);
    }
}

#[test]
fn the_duress_password_and_a_password_change_follow_the_rotated_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = MemorySecrets::default();
    vault_with_card(dir.path(), &secrets);
    Vault::set_duress(
        dir.path(),
        b"pw",
        &secrets,
        Some(&read(2, 1, 9)),
        Some((b"run", b"decoy")),
        &mut rng(5),
    )
    .unwrap();
    assert_eq!(
        unlock_and_rotate(dir.path(), &secrets, &read(3, 1, 9), 2),
        1
    );

    // A new password is wrapped to the slot the vault is on now (slot 1): a copy of the card
    // from before the rotation (slot 1 = 9) does not open with it.
    Vault::change_password(
        dir.path(),
        b"pw",
        b"pw2",
        None,
        &secrets,
        Some(&read(4, 1, 2)),
        &mut rng(6),
    )
    .unwrap();
    assert!(matches!(
        open(dir.path(), &secrets, b"pw2", &read(20, 1, 9)),
        Err(VaultError::WrongFactor)
    ));
    drop(open(dir.path(), &secrets, b"pw2", &read(5, 1, 2)).unwrap());

    // The duress password opens with the new secret only, and still wipes.
    assert!(matches!(
        Vault::unlock(
            dir.path(),
            b"run",
            &secrets,
            Some(&read(21, 1, 9)),
            &mut rng(7)
        ),
        Err(VaultError::WrongFactor)
    ));
    match Vault::unlock(
        dir.path(),
        b"run",
        &secrets,
        Some(&read(22, 1, 2)),
        &mut rng(8),
    ) {
        Ok(Unlock::Duress { mut vault, record }) => {
            assert_eq!(&record[..], b"decoy");
            // The new, empty vault's card secret is rotated like any other.
            let rotation = vault.take_card_rotation().unwrap();
            assert_eq!(rotation.target_slot(), 1);
            rotation.prepare(&[6; 32], &mut rng(9)).unwrap();
            rotation.commit().unwrap();
        }
        other => panic!("expected the duress vault, got {other:?}"),
    }
    assert!(matches!(
        open(dir.path(), &secrets, b"pw2", &read(23, 1, 6)),
        Err(VaultError::WrongFactor)
    ));
    assert!(
        open(dir.path(), &secrets, b"run", &read(24, 1, 6)).is_ok(),
        "the new vault opens with the duress password and the rotated secret"
    );
}
