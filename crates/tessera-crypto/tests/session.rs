//! libsignal sessions driven through their store traits (in-memory stores here; the vault
//! implements the same traits), started from ML-DSA-verified bundles, and carried in envelopes.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::HashSet;

use common::signal::{Device, at, reparse, start};
use common::{NOW, rng};
use futures_util::FutureExt as _;
use tessera_crypto::signal::{
    CiphertextMessage, IdentityKeyStore as _, PreKeyBundle, PreKeySignalMessage, PreKeyStore as _,
    SignalMessage, SignalProtocolError, process_prekey_bundle,
};
use tessera_crypto::{SealRequest, VerifiedEpoch, seal};

#[test]
fn pqxdh_session_from_a_verified_bundle_both_ways() {
    let mut r = rng(20);
    let mut alice = Device::new(&mut r, "alice");
    let mut bob = Device::new(&mut r, "bob");
    start(&mut alice, &mut bob, &mut r);

    let first = alice.encrypt(&bob.address, b"hello Bob", &mut r);
    assert!(
        matches!(first, CiphertextMessage::PreKeySignalMessage(_)),
        "first message carries PQXDH"
    );
    if let CiphertextMessage::PreKeySignalMessage(m) = &first {
        assert!(
            m.kyber_pre_key_id().is_some(),
            "the Kyber prekey was used (PQXDH)"
        );
    }
    assert_eq!(
        bob.decrypt(&alice.address, &reparse(&first), &mut r)
            .unwrap(),
        b"hello Bob"
    );
    // The one-time prekey is consumed on Bob's side.
    assert!(
        bob.store
            .get_pre_key(4.into())
            .now_or_never()
            .unwrap()
            .is_err()
    );

    let reply = bob.encrypt(&alice.address, b"hi Alice", &mut r);
    assert!(matches!(reply, CiphertextMessage::SignalMessage(_)));
    assert_eq!(
        alice
            .decrypt(&bob.address, &reparse(&reply), &mut r)
            .unwrap(),
        b"hi Alice"
    );
    let again = alice.encrypt(&bob.address, b"again", &mut r);
    assert!(
        matches!(again, CiphertextMessage::SignalMessage(_)),
        "session established after the reply"
    );
    assert_eq!(
        bob.decrypt(&alice.address, &reparse(&again), &mut r)
            .unwrap(),
        b"again"
    );
    // Replaying an old message fails (its message key is gone).
    assert!(
        bob.decrypt(&alice.address, &reparse(&again), &mut r)
            .is_err()
    );
}

#[test]
fn out_of_order_and_lost_messages() {
    let mut r = rng(21);
    let mut alice = Device::new(&mut r, "alice");
    let mut bob = Device::new(&mut r, "bob");
    start(&mut alice, &mut bob, &mut r);
    let hello = alice.encrypt(&bob.address, b"hello", &mut r);
    bob.decrypt(&alice.address, &hello, &mut r).unwrap();
    let ack = bob.encrypt(&alice.address, b"ack", &mut r);
    alice.decrypt(&bob.address, &ack, &mut r).unwrap();

    let msgs: Vec<_> = (0..10)
        .map(|i| alice.encrypt(&bob.address, format!("m{i}").as_bytes(), &mut r))
        .collect();
    // Delivered out of order, and messages 3 and 7 are lost for good.
    for i in [9usize, 0, 5, 2, 1, 8, 4, 6] {
        assert_eq!(
            bob.decrypt(&alice.address, &reparse(&msgs[i]), &mut r)
                .unwrap(),
            format!("m{i}").as_bytes()
        );
    }
    // The conversation continues in both directions after the losses.
    let later = bob.encrypt(&alice.address, b"still here", &mut r);
    assert_eq!(
        alice.decrypt(&bob.address, &later, &mut r).unwrap(),
        b"still here"
    );
    let late3 = bob
        .decrypt(&alice.address, &reparse(&msgs[3]), &mut r)
        .unwrap();
    assert_eq!(
        late3, b"m3",
        "a late message within the skip window still decrypts"
    );
}

#[test]
fn thousand_message_conversation_in_envelopes() {
    let mut r = rng(22);
    let mut alice = Device::new(&mut r, "alice");
    let mut bob = Device::new(&mut r, "bob");
    start(&mut alice, &mut bob, &mut r);
    let (alice_ring, bob_ring) = (alice.person.ring(), bob.person.ring());
    let mut epochs: Vec<VerifiedEpoch> = Vec::new();
    let mut seen = HashSet::new();

    for i in 0..1000u32 {
        let (from, to, ring) = if i % 3 == 2 {
            (&mut bob, &mut alice, &alice_ring)
        } else {
            (&mut alice, &mut bob, &bob_ring)
        };
        let text = format!("message {i}");
        let signal = from.encrypt(&to.address, text.as_bytes(), &mut r);
        let first_in_epoch = !epochs
            .iter()
            .any(|e| e.account_id == from.person.identity.public().account_id());
        let sealed = seal(
            &SealRequest {
                recipient: to.person.envelope.public(),
                sender: &from.person.epoch,
                include_certificate: first_in_epoch,
                sent_at: NOW + u64::from(i),
                content: signal.serialize(),
            },
            &mut r,
        )
        .unwrap();
        let opened = ring.open(&sealed.bytes, NOW).unwrap();
        let verified = match epochs.iter().find(|e| e.epoch_id == opened.sender.epoch_id) {
            Some(epoch) => ring.verify_sender(opened, epoch, NOW).unwrap(),
            None => {
                let (v, epoch) = ring.verify_with_certificate(opened, NOW).unwrap();
                epochs.push(epoch);
                v
            }
        };
        let verified = verified.accept_once(&mut seen).unwrap();
        // Bytes off the wire: a PreKeySignalMessage until the first reply, then SignalMessages.
        let msg = match PreKeySignalMessage::try_from(verified.content.as_slice()) {
            Ok(m) => CiphertextMessage::PreKeySignalMessage(m),
            Err(_) => CiphertextMessage::SignalMessage(
                SignalMessage::try_from(verified.content.as_slice()).unwrap(),
            ),
        };
        let plain = to.decrypt(&from.address, &msg, &mut r).unwrap();
        assert_eq!(plain, text.as_bytes(), "message {i}");
    }
    assert_eq!(seen.len(), 1000);
    assert_eq!(
        epochs.len(),
        2,
        "one certificate per direction, then cached epoch keys"
    );
}

#[test]
fn identity_change_is_refused_until_accepted() {
    let mut r = rng(23);
    let mut alice = Device::new(&mut r, "alice");
    let mut bob = Device::new(&mut r, "bob");
    start(&mut alice, &mut bob, &mut r);
    let m = alice.encrypt(&bob.address, b"before", &mut r);
    bob.decrypt(&alice.address, &m, &mut r).unwrap();

    // Bob reinstalls: new identity, same address.
    let mut new_bob = Device::new(&mut r, "bob");
    let bundle = new_bob.publish_and_fetch(&mut r, 0);
    let result = process_prekey_bundle(
        &new_bob.address,
        &mut alice.store.session_store,
        &mut alice.store.identity_store,
        &bundle,
        at(NOW),
        &mut r,
    )
    .now_or_never()
    .unwrap();
    assert!(
        matches!(result, Err(SignalProtocolError::UntrustedIdentity(_))),
        "{result:?}"
    );
    // The old session still encrypts to the old identity; nothing was silently replaced.
    let stored = alice
        .store
        .get_identity(&bob.address)
        .now_or_never()
        .unwrap()
        .unwrap();
    assert_eq!(
        stored,
        Some(bob.person.identity.public().signal_identity_key())
    );

    // Alice compares safety numbers and accepts the new key explicitly.
    alice
        .store
        .save_identity(
            &new_bob.address,
            &new_bob.person.identity.public().signal_identity_key(),
        )
        .now_or_never()
        .unwrap()
        .unwrap();
    process_prekey_bundle(
        &new_bob.address,
        &mut alice.store.session_store,
        &mut alice.store.identity_store,
        &bundle,
        at(NOW),
        &mut r,
    )
    .now_or_never()
    .unwrap()
    .unwrap();
    let m = alice.encrypt(&new_bob.address, b"after", &mut r);
    assert_eq!(
        new_bob.decrypt(&alice.address, &m, &mut r).unwrap(),
        b"after"
    );
}

#[test]
fn a_bundle_with_a_bad_classical_signature_is_refused_by_libsignal() {
    let mut r = rng(24);
    let mut alice = Device::new(&mut r, "alice");
    let mut bob = Device::new(&mut r, "bob");
    let good = bob.publish_and_fetch(&mut r, 1);
    let mut sig = good.signed_pre_key_signature().unwrap().to_vec();
    sig[5] ^= 1;
    let bad = PreKeyBundle::new(
        good.registration_id().unwrap(),
        good.device_id().unwrap(),
        good.pre_key_id()
            .unwrap()
            .zip(good.pre_key_public().unwrap()),
        good.signed_pre_key_id().unwrap(),
        good.signed_pre_key_public().unwrap(),
        sig,
        good.kyber_pre_key_id().unwrap(),
        good.kyber_pre_key_public().unwrap().clone(),
        good.kyber_pre_key_signature().unwrap().to_vec(),
        *good.identity_key().unwrap(),
    )
    .unwrap();
    let result = process_prekey_bundle(
        &bob.address,
        &mut alice.store.session_store,
        &mut alice.store.identity_store,
        &bad,
        at(NOW),
        &mut r,
    )
    .now_or_never()
    .unwrap();
    assert!(
        matches!(result, Err(SignalProtocolError::SignatureValidationFailed)),
        "{result:?}"
    );
}

#[test]
fn signed_prekeys_travel_as_bytes_and_every_signature_is_checked() {
    use tessera_crypto::{CryptoError, OneTimePrekeyProof, SignedPrekeys};
    let mut r = rng(31);
    let mut bob = Device::new(&mut r, "bob");
    let p = bob.publish(&mut r, 5);
    let account = bob.person.identity.public();
    let signed = SignedPrekeys {
        statement: p.statement.clone(),
        signature: p.signature.clone(),
        signed_prekey_signature: p.spk_sig.clone().try_into().unwrap(),
        kyber_prekey_signature: p.kyber_sig.clone().try_into().unwrap(),
    };
    let bytes = signed.to_bytes();
    let back = SignedPrekeys::from_bytes(&bytes).unwrap();
    assert_eq!(back, signed);
    // The proof travels as concatenated hashes, as in the relay's Bundle frame.
    let wire = OneTimePrekeyProof::from_wire(
        p.proof.prekey_id,
        &p.proof.prekey.serialize(),
        p.proof.index,
        &p.proof.path_bytes(),
    )
    .unwrap();
    assert_eq!(wire, p.proof);
    back.bundle(&account, Some(&wire)).unwrap();
    back.bundle(&account, None).unwrap();

    // Each signature matters: flip one byte in each signed region.
    let spk_sig_at = bytes.len() - 128;
    for at in [1, 60, bytes.len() - 4700, spk_sig_at + 3, bytes.len() - 3] {
        let mut bad = bytes.clone();
        bad[at] ^= 1;
        match SignedPrekeys::from_bytes(&bad) {
            Ok(s) => assert!(
                s.verify(&account, None).is_err(),
                "flip at {at} went unnoticed"
            ),
            Err(e) => assert!(matches!(e, CryptoError::BadPublicKey { .. }), "{e:?}"),
        }
    }
    // Another account's keys do not verify it.
    let other = Device::new(&mut r, "carol").person.identity.public();
    assert!(back.verify(&other, None).is_err());
    // Truncated, extended and wrong-version inputs are refused.
    assert!(SignedPrekeys::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(SignedPrekeys::from_bytes(&longer).is_err());
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert_eq!(
        SignedPrekeys::from_bytes(&v2),
        Err(CryptoError::UnknownVersion(2))
    );
}
