//! Identities, account ids, safety numbers, hybrid signatures, device and epoch certificates,
//! and ML-DSA-87 prekey statements.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{DAY, NOW, Person, rng};
use tessera_crypto::signal::{KeyPair, kem};
use tessera_crypto::{
    AccountId, AccountIdentity, AccountPublic, CryptoError, DeviceCertificate,
    DeviceCertificateFields, EnvelopeKeyPair, EpochCertificate, EpochSigningKey, HybridSignature,
    OneTimePrekeyBatch, PrekeySignature, PrekeyStatement, SafetyNumber, verified_bundle,
};

#[test]
fn account_id_is_stable_and_its_text_form_round_trips() {
    let mut r = rng(1);
    let a = AccountIdentity::generate(&mut r);
    let id = a.public().account_id();
    let text = id.to_string();
    assert_eq!(text.len(), 52 + 12, "13 groups of 4 with dashes: {text}");
    assert_eq!(text.parse::<AccountId>().unwrap(), id);
    assert_eq!(
        text.to_uppercase()
            .replace('-', " ")
            .parse::<AccountId>()
            .unwrap(),
        id
    );
    // Same keys, same id, after a round trip through the stored secrets.
    let (c, m) = a.to_parts();
    assert_eq!(
        AccountIdentity::from_parts(c, m)
            .unwrap()
            .public()
            .account_id(),
        id
    );
    // Public-key bytes round trip too.
    let public = AccountPublic::from_bytes(&a.public().to_bytes()).unwrap();
    assert_eq!(public.account_id(), id);
    assert_ne!(AccountIdentity::generate(&mut r).public().account_id(), id);
}

#[test]
fn fail_account_id_text() {
    let id = AccountIdentity::generate(&mut rng(2))
        .public()
        .account_id()
        .to_string();
    assert!(
        id[..id.len() - 1].parse::<AccountId>().is_err(),
        "too short"
    );
    assert!(format!("{id}a").parse::<AccountId>().is_err(), "too long");
    assert!(
        id.replacen(|c: char| c.is_ascii_alphabetic(), "1", 1)
            .parse::<AccountId>()
            .is_err(),
        "bad char"
    );
    // The last character carries 4 unused bits that must be zero.
    let mut chars: Vec<char> = id.chars().collect();
    let last = chars.len() - 1;
    chars[last] = if chars[last] == 'b' { 'c' } else { 'b' };
    let sloppy: String = chars.into_iter().collect();
    assert!(
        sloppy.parse::<AccountId>().is_err(),
        "non-canonical tail {sloppy}"
    );
}

#[test]
fn safety_number_is_the_same_on_both_sides_and_changes_with_either_key() {
    let mut r = rng(3);
    let (a, b, c) = (
        AccountIdentity::generate(&mut r).public(),
        AccountIdentity::generate(&mut r).public(),
        AccountIdentity::generate(&mut r).public(),
    );
    let ab = SafetyNumber::new(&a, &b);
    assert_eq!(ab, SafetyNumber::new(&b, &a));
    let digits = ab.digits();
    assert_eq!(digits.len(), 60 + 11);
    assert!(
        digits
            .split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|d| d.is_ascii_digit()))
    );
    assert_ne!(ab.digits(), SafetyNumber::new(&a, &c).digits());
    assert_eq!(ab.qr_payload().len(), 65);
    assert!(ab.matches_qr(&SafetyNumber::new(&b, &a).qr_payload()));
    assert!(!ab.matches_qr(&SafetyNumber::new(&a, &c).qr_payload()));
}

#[test]
fn safety_number_is_frozen_for_fixed_keys() {
    // Regression guard: the derivation is part of what two people compare across app versions.
    let mut r = rng(4);
    let a = AccountIdentity::generate(&mut r).public();
    let b = AccountIdentity::generate(&mut r).public();
    let digits = SafetyNumber::new(&a, &b).digits();
    let again = SafetyNumber::new(&a, &b).digits();
    assert_eq!(digits, again);
    let path = manifest_dir().join("tests/data/safety_number.txt");
    match std::fs::read_to_string(&path) {
        Ok(frozen) => assert_eq!(digits, frozen.trim()),
        Err(_) if std::env::var_os("TESSERA_WRITE_VECTORS").is_some() => {
            std::fs::write(&path, digits + "\n").unwrap()
        }
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

#[test]
fn hybrid_signature_needs_both_halves() {
    let mut r = rng(5);
    let a = AccountIdentity::generate(&mut r);
    let sig = a.sign("test label", b"data", &mut r).unwrap();
    let public = a.public();
    public.verify("test label", b"data", &sig, "test").unwrap();
    assert!(public.verify("test label", b"datA", &sig, "test").is_err());
    assert!(public.verify("other label", b"data", &sig, "test").is_err());

    let other = a.sign("test label", b"other data", &mut r).unwrap();
    // A valid classical half with a wrong ML-DSA half fails, and vice versa.
    let mixed1 = sig.clone().with_mldsa(*other.mldsa());
    let mixed2 = sig.clone().with_classical(*other.classical());
    assert!(
        public
            .verify("test label", b"data", &mixed1, "test")
            .is_err()
    );
    assert!(
        public
            .verify("test label", b"data", &mixed2, "test")
            .is_err()
    );
    // Encoding round trip.
    let parsed = HybridSignature::from_bytes(&sig.to_bytes()).unwrap();
    public
        .verify("test label", b"data", &parsed, "test")
        .unwrap();
    assert!(HybridSignature::from_bytes(&sig.to_bytes()[1..]).is_err());
}

#[test]
fn device_certificate_verifies_and_rejects_tampering() {
    let mut r = rng(6);
    let p = Person::new(&mut r, 3);
    let account = p.identity.public();
    let cert = DeviceCertificate::from_bytes(&p.certificate.to_bytes()).unwrap();
    assert_eq!(cert, p.certificate);
    cert.verify(&account, NOW).unwrap();
    assert_eq!(cert.fields.envelope_key, *p.envelope.public());

    // Any flipped byte is refused (length, version, key encoding or signature).
    let bytes = cert.to_bytes();
    for i in (0..bytes.len()).step_by(97) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        let ok = DeviceCertificate::from_bytes(&bad).and_then(|c| c.verify(&account, NOW));
        assert!(ok.is_err(), "flipping byte {i} was accepted");
    }
    // Wrong account, outside the window.
    let stranger = AccountIdentity::generate(&mut r).public();
    assert!(matches!(
        cert.verify(&stranger, NOW),
        Err(CryptoError::BadSignature { .. })
    ));
    assert!(matches!(
        cert.verify(&account, NOW + 31 * DAY),
        Err(CryptoError::Expired { .. })
    ));
    assert!(matches!(
        cert.verify(&account, NOW - 2 * DAY),
        Err(CryptoError::Expired { .. })
    ));
    // A stranger cannot issue a certificate for this account's id.
    let forged = DeviceCertificate::issue(
        &AccountIdentity::generate(&mut r),
        DeviceCertificateFields {
            device_id: 3,
            serial: 2,
            auth_key: p.auth.public().clone(),
            envelope_key: EnvelopeKeyPair::generate(&mut r).public().clone(),
            not_before: NOW - DAY,
            not_after: NOW + DAY,
        },
        &mut r,
    )
    .unwrap();
    assert!(forged.verify(&account, NOW).is_err());
    assert!(matches!(
        DeviceCertificate::from_bytes(&bytes[..100]),
        Err(CryptoError::BadLength { .. })
    ));
}

#[test]
fn epoch_certificate_verifies_and_rejects_tampering() {
    let mut r = rng(7);
    let p = Person::new(&mut r, 2);
    let cert = EpochCertificate::from_bytes(&p.epoch.certificate().to_bytes()).unwrap();
    let verified = cert.verify(NOW).unwrap();
    assert_eq!(verified.account_id, p.identity.public().account_id());
    assert_eq!(verified.device_id, 2);
    assert!(matches!(
        cert.verify(NOW + 8 * DAY),
        Err(CryptoError::Expired { .. })
    ));
    let bytes = cert.to_bytes();
    for i in (0..bytes.len()).step_by(101) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        assert!(
            EpochCertificate::from_bytes(&bad)
                .and_then(|c| c.verify(NOW))
                .is_err(),
            "byte {i}"
        );
    }
}

#[test]
fn certificates_with_too_long_a_window_are_refused() {
    let mut r = rng(17);
    let p = Person::new(&mut r, 2);
    let account = p.identity.public();
    // An epoch key certified for 61 days: it signs, but nobody accepts it.
    let long =
        EpochSigningKey::generate(&p.identity, 2, NOW - DAY, NOW + 60 * DAY, &mut r).unwrap();
    assert!(matches!(
        long.certificate().verify(NOW),
        Err(CryptoError::Malformed { .. })
    ));
    // A device certificate of 61 days is not even issued.
    let fields = |not_after| DeviceCertificateFields {
        device_id: 2,
        serial: 9,
        auth_key: p.auth.public().clone(),
        envelope_key: p.envelope.public().clone(),
        not_before: NOW - DAY,
        not_after,
    };
    assert!(matches!(
        DeviceCertificate::issue(&p.identity, fields(NOW + 60 * DAY), &mut r),
        Err(CryptoError::Malformed { .. })
    ));
    let ok = DeviceCertificate::issue(&p.identity, fields(NOW + 59 * DAY), &mut r).unwrap();
    assert!(ok.verify(&account, NOW).is_ok());
}

fn statement_for(
    p: &Person,
    batch: &OneTimePrekeyBatch,
    r: &mut rand_chacha::ChaCha20Rng,
) -> (PrekeyStatement, Vec<u8>, Vec<u8>, KeyPair, kem::KeyPair) {
    let signal = p.identity.signal_identity().unwrap();
    let spk = KeyPair::generate(r);
    let kyber = kem::KeyPair::generate(kem::KeyType::Kyber1024, r);
    let spk_sig = signal
        .private_key()
        .calculate_signature(&spk.public_key.serialize(), r)
        .unwrap()
        .to_vec();
    let kyber_sig = signal
        .private_key()
        .calculate_signature(&kyber.public_key.serialize(), r)
        .unwrap()
        .to_vec();
    let statement = PrekeyStatement {
        account_id: p.identity.public().account_id(),
        device_id: p.device_id,
        registration_id: 4242,
        signed_prekey_id: 7,
        signed_prekey: spk.public_key,
        kyber_prekey_id: 8,
        kyber_prekey: kyber.public_key.serialize().to_vec(),
        batch_id: 1,
        batch_size: batch.len() as u32,
        batch_root: batch.root(),
    };
    (statement, spk_sig, kyber_sig, spk, kyber)
}

#[test]
fn merkle_proofs_verify_for_every_index_and_batch_size() {
    let mut r = rng(8);
    for size in 1..=17u32 {
        let keys: Vec<_> = (0..size)
            .map(|i| (100 + i, KeyPair::generate(&mut r).public_key))
            .collect();
        let batch = OneTimePrekeyBatch::new(keys).unwrap();
        for i in 0..size as usize {
            let proof = batch.proof(i).unwrap();
            assert_eq!(
                proof.root(size).unwrap(),
                batch.root(),
                "size {size} index {i}"
            );
            if size > 1 {
                // The same key at a different position, or a different batch size, fails.
                let mut moved = proof.clone();
                moved.index = ((i + 1) % size as usize) as u32;
                assert_ne!(
                    moved.root(size).ok(),
                    Some(batch.root()),
                    "size {size} index {i} moved"
                );
                let mut swapped = proof.clone();
                swapped.prekey = KeyPair::generate(&mut r).public_key;
                assert_ne!(swapped.root(size).ok(), Some(batch.root()));
            }
        }
        assert!(batch.proof(size as usize).is_none());
    }
    assert!(OneTimePrekeyBatch::new(Vec::new()).is_err());
}

#[test]
fn prekey_bundle_is_verified_before_libsignal_sees_it() {
    let mut r = rng(9);
    let bob = Person::new(&mut r, 1);
    let keys: Vec<_> = (0..10)
        .map(|i| (i + 1, KeyPair::generate(&mut r).public_key))
        .collect();
    let batch = OneTimePrekeyBatch::new(keys).unwrap();
    let (statement, spk_sig, kyber_sig, _, _) = statement_for(&bob, &batch, &mut r);
    let sig = statement.sign(&bob.identity, &mut r).unwrap();
    let account = bob.identity.public();
    let proof = batch.proof(4).unwrap();
    let bundle = verified_bundle(
        &account,
        &statement,
        &sig,
        &spk_sig,
        &kyber_sig,
        Some(&proof),
    )
    .unwrap();
    assert_eq!(bundle.pre_key_id().unwrap().map(u32::from), Some(5));
    // Without a one-time prekey (the relay ran out) the rest still verifies.
    verified_bundle(&account, &statement, &sig, &spk_sig, &kyber_sig, None).unwrap();

    // Substitutions a quantum attacker could sign classically are caught by ML-DSA-87.
    let mut swapped_spk = statement.clone();
    swapped_spk.signed_prekey = KeyPair::generate(&mut r).public_key;
    assert!(
        verified_bundle(
            &account,
            &swapped_spk,
            &sig,
            &spk_sig,
            &kyber_sig,
            Some(&proof)
        )
        .is_err()
    );
    let mut swapped_kyber = statement.clone();
    swapped_kyber.kyber_prekey = kem::KeyPair::generate(kem::KeyType::Kyber1024, &mut r)
        .public_key
        .serialize()
        .to_vec();
    assert!(
        verified_bundle(
            &account,
            &swapped_kyber,
            &sig,
            &spk_sig,
            &kyber_sig,
            Some(&proof)
        )
        .is_err()
    );
    let mut foreign = proof.clone();
    foreign.prekey = KeyPair::generate(&mut r).public_key;
    assert!(
        verified_bundle(
            &account,
            &statement,
            &sig,
            &spk_sig,
            &kyber_sig,
            Some(&foreign)
        )
        .is_err()
    );
    // Someone else's ML-DSA signature does not do.
    let mallory = Person::new(&mut r, 1);
    assert!(
        statement.sign(&mallory.identity, &mut r).is_err(),
        "signing another account's statement"
    );
    let sig_bytes = PrekeySignature::from_bytes(&sig.to_bytes()).unwrap();
    assert!(
        verified_bundle(
            &mallory.identity.public(),
            &statement,
            &sig_bytes,
            &spk_sig,
            &kyber_sig,
            None
        )
        .is_err()
    );
}

#[test]
fn debug_output_never_shows_secrets() {
    let mut r = rng(10);
    let p = Person::new(&mut r, 1);
    let (curve, seed) = p.identity.to_parts();
    let (x, m) = p.envelope.to_seeds();
    let shown = format!(
        "{:?} {:?} {:?} {:?} {:?}",
        p.identity, p.auth, p.envelope, p.epoch, p.certificate
    );
    for secret in [
        hex::encode(*curve),
        hex::encode(*seed),
        hex::encode(*x),
        hex::encode(*m),
        hex::encode(*p.epoch.secret()),
    ] {
        assert!(!shown.contains(&secret), "a secret appears in Debug output");
        assert!(!shown.contains(&secret[..16]));
    }
    assert!(shown.contains("redacted"));
}

/// This crate's directory: from Cargo at run time (a test binary reused from a build in another
/// checkout must not read that checkout's files), else as compiled.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
