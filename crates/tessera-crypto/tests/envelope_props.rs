//! Property tests of envelope v1: round trip for arbitrary content; any single bit flip rejected.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::OnceLock;

use common::{NOW, Person, rng};
use proptest::prelude::*;
use tessera_crypto::{CryptoError, EnvelopeKeyRing, SealRequest, padded_len, seal};

struct World {
    alice: Person,
    bob: Person,
    ring: EnvelopeKeyRing,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let mut r = rng(30);
        let alice = Person::new(&mut r, 1);
        let bob = Person::new(&mut r, 2);
        let ring = bob.ring();
        World { alice, bob, ring }
    })
}

fn sealed(content: &[u8], cert: bool, seed: u64) -> Vec<u8> {
    let w = world();
    let request = SealRequest {
        recipient: w.bob.envelope.public(),
        sender: &w.alice.epoch,
        include_certificate: cert,
        sent_at: NOW,
        content,
    };
    seal(&request, &mut rng(seed)).unwrap().bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(content in proptest::collection::vec(any::<u8>(), 0..5000), cert: bool, seed: u64) {
        let w = world();
        let bytes = sealed(&content, cert, seed);
        let opened = w.ring.open(&bytes, NOW).unwrap();
        let verified = if cert {
            w.ring.verify_with_certificate(opened, NOW).unwrap().0
        } else {
            let epoch = w.alice.epoch.certificate().verify(NOW).unwrap();
            w.ring.verify_sender(opened, &epoch, NOW).unwrap()
        };
        prop_assert_eq!(verified.content, content);
        prop_assert_eq!(verified.sender.account_id, w.alice.identity.public().account_id());
    }

    #[test]
    fn any_single_bit_flip_is_rejected(len in 0usize..300, bit in any::<prop::sample::Index>(), seed: u64) {
        let w = world();
        let content = vec![0x5a; len];
        let mut bytes = sealed(&content, false, seed);
        let i = bit.index(bytes.len() * 8);
        bytes[i / 8] ^= 1 << (i % 8);
        let result = w.ring.open(&bytes, NOW);
        prop_assert!(result.is_err(), "bit {} flipped and the envelope still opened", i);
        let e = result.err().unwrap();
        prop_assert!(matches!(e, CryptoError::Decrypt | CryptoError::UnknownKey | CryptoError::UnknownVersion(_)), "{:?}", e);
    }

    #[test]
    fn arbitrary_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..4000)) {
        prop_assert!(world().ring.open(&bytes, NOW).is_err());
    }
}

#[test]
fn padding_buckets_hide_exact_length() {
    assert_eq!(padded_len(0), 64);
    assert_eq!(padded_len(64), 64);
    assert_eq!(padded_len(65), 128);
    assert_eq!(padded_len(1024), 1024);
    assert_eq!(padded_len(1025), 1280);
    assert_eq!(padded_len(16384), 16384);
    assert_eq!(padded_len(16385), 20480);
    // Text messages of different lengths share a size class.
    assert_eq!(
        sealed(&[1; 10], false, 1).len(),
        sealed(&[1; 30], false, 2).len()
    );
}

#[test]
fn oversized_content_is_refused_before_sealing() {
    let big = vec![0u8; tessera_crypto::MAX_CONTENT_LEN + 1];
    let w = world();
    let request = SealRequest {
        recipient: w.bob.envelope.public(),
        sender: &w.alice.epoch,
        include_certificate: false,
        sent_at: NOW,
        content: &big,
    };
    assert!(matches!(
        seal(&request, &mut rng(1)),
        Err(CryptoError::TooLarge { .. })
    ));
    let max = vec![0u8; tessera_crypto::MAX_CONTENT_LEN];
    let request = SealRequest {
        content: &max,
        ..request
    };
    let bytes = seal(&request, &mut rng(1)).unwrap().bytes;
    assert!(bytes.len() <= tessera_crypto::MAX_ENVELOPE_LEN);
    assert!(w.ring.open(&bytes, NOW).is_ok());
}

fn sealed_at(sent_at: u64, seed: u64) -> Vec<u8> {
    let w = world();
    let request = SealRequest {
        recipient: w.bob.envelope.public(),
        sender: &w.alice.epoch,
        include_certificate: true,
        sent_at,
        content: b"hi",
    };
    seal(&request, &mut rng(seed)).unwrap().bytes
}

#[test]
fn expired_keys_and_epochs_are_refused() {
    let w = world();
    let bytes = sealed(b"hi", true, 3);
    let late = w.bob.certificate.fields.not_after + common::GRACE + 1;
    assert!(matches!(
        w.ring.open(&bytes, late),
        Err(CryptoError::UnknownKey)
    ));
    // Sealed inside the epoch (days 0–7), opened 20 days later: the send time counts, so it
    // still opens (the recipient was offline; docs/envelope.md §5).
    let opened = w.ring.open(&bytes, NOW).unwrap();
    assert!(
        w.ring
            .verify_with_certificate(opened, NOW + 20 * common::DAY)
            .is_ok()
    );
    // Sealed after the epoch ended (the sender did not rotate): refused at any time.
    let after = sealed_at(NOW + 8 * common::DAY, 4);
    let opened = w.ring.open(&after, NOW).unwrap();
    assert!(matches!(
        w.ring
            .verify_with_certificate(opened, NOW + 8 * common::DAY),
        Err(CryptoError::Expired { .. })
    ));
    // A send time further ahead of the recipient's clock than the allowed skew.
    let ahead = sealed_at(NOW + 2 * common::DAY, 5);
    let opened = w.ring.open(&ahead, NOW).unwrap();
    assert!(matches!(
        w.ring.verify_with_certificate(opened, NOW),
        Err(CryptoError::Expired { .. })
    ));
    let opened = w.ring.open(&ahead, NOW).unwrap();
    assert!(
        w.ring
            .verify_with_certificate(opened, NOW + common::DAY + 1)
            .is_ok()
    );
    // Older than the longest mailbox retention.
    let opened = w.ring.open(&bytes, NOW).unwrap();
    assert!(matches!(
        w.ring
            .verify_with_certificate(opened, NOW + tessera_crypto::MAX_ENVELOPE_AGE_MS + 1),
        Err(CryptoError::Expired { .. })
    ));
    // Pruning drops the key for good.
    let mut ring = w.bob.ring();
    assert_eq!(ring.prune(late), 1);
    assert!(matches!(
        ring.open(&bytes, NOW),
        Err(CryptoError::UnknownKey)
    ));
}

#[test]
fn a_signature_from_another_epoch_or_sender_is_refused() {
    let w = world();
    let mut r = rng(5);
    let mallory = Person::new(&mut r, 1);
    // Mallory seals to Bob but claims nothing false: her own epoch verifies as Mallory...
    let request = SealRequest {
        recipient: w.bob.envelope.public(),
        sender: &mallory.epoch,
        include_certificate: true,
        sent_at: NOW,
        content: b"x",
    };
    let bytes = seal(&request, &mut r).unwrap().bytes;
    let opened = w.ring.open(&bytes, NOW).unwrap();
    let (env, _) = w.ring.verify_with_certificate(opened, NOW).unwrap();
    assert_eq!(
        env.sender.account_id,
        mallory.identity.public().account_id()
    );
    // ...and Alice's cached epoch key does not verify her envelope.
    let alice_epoch = w.alice.epoch.certificate().verify(NOW).unwrap();
    let opened = w.ring.open(&bytes, NOW).unwrap();
    assert!(matches!(
        w.ring.verify_sender(opened, &alice_epoch, NOW),
        Err(CryptoError::BadSignature { .. })
    ));
}

#[test]
fn envelope_key_rotation_keeps_the_old_key_for_its_grace_period() {
    use tessera_crypto::{DeviceCertificate, DeviceCertificateFields, EnvelopeKeyPair};
    let mut r = rng(31);
    let alice = Person::new(&mut r, 1);
    let bob = Person::new(&mut r, 1);
    let seal_to = |key: &tessera_crypto::EnvelopePublicKey, r: &mut rand_chacha::ChaCha20Rng| {
        let request = SealRequest {
            recipient: key,
            sender: &alice.epoch,
            include_certificate: true,
            sent_at: NOW,
            content: b"x",
        };
        seal(&request, r).unwrap().bytes
    };
    // An envelope sealed to Bob's first key is still in flight when he rotates.
    let in_flight = seal_to(bob.envelope.public(), &mut r);
    let rotated = EnvelopeKeyPair::generate(&mut r);
    let new_cert = DeviceCertificate::issue(
        &bob.identity,
        DeviceCertificateFields {
            device_id: 1,
            serial: bob.certificate.fields.serial + 1,
            auth_key: bob.auth.public().clone(),
            envelope_key: rotated.public().clone(),
            not_before: NOW,
            not_after: NOW + 45 * common::DAY,
        },
        &mut r,
    )
    .unwrap();
    new_cert.verify(&bob.identity.public(), NOW).unwrap();
    assert!(new_cert.fields.serial > bob.certificate.fields.serial);

    let mut ring = bob.ring(); // old key, usable until its certificate's end + grace
    let old_until = bob.certificate.fields.not_after + common::GRACE;
    ring.insert(rotated, new_cert.fields.not_after + common::GRACE);
    let after_rotation = seal_to(&new_cert.fields.envelope_key, &mut r);

    assert!(
        ring.open(&in_flight, NOW).is_ok(),
        "old key works during the grace period"
    );
    assert!(ring.open(&after_rotation, NOW).is_ok(), "new key works");
    assert_eq!(ring.prune(old_until + 1), 1, "only the old key is dropped");
    assert!(matches!(
        ring.open(&in_flight, old_until + 1),
        Err(CryptoError::UnknownKey)
    ));
    assert!(ring.open(&after_rotation, old_until + 1).is_ok());
}

#[test]
fn the_relay_protocol_limit_matches_the_envelope_format() {
    // tessera-proto sits below this crate and cannot import the constant; keep them equal here.
    assert_eq!(
        tessera_proto::MAX_ENVELOPE_LEN,
        tessera_crypto::MAX_ENVELOPE_LEN_V2
    );
    const { assert!(tessera_crypto::MAX_ENVELOPE_LEN < tessera_crypto::MAX_ENVELOPE_LEN_V2) };
}
