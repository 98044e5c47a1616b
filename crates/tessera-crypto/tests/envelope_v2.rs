//! Envelope v2 (`docs/envelope.md`): links, full and short envelopes, acknowledgements, size
//! classes, and the errors of the short path.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::{HashMap, HashSet};

use common::{DAY, NOW, Person, rng};
use proptest::prelude::*;
use tessera_crypto::{
    CryptoError, EnvelopeKeyRing, FULL_HEADER_LEN, InboundLink, LinkId, LinkedSealRequest,
    MAX_PADDED_LEN_V2, OutboundLink, Received, SHORT_HEADER_LEN, TAG_LEN, padded_len_v2,
    seal_linked,
};

/// A one-word text as the engine sends it: a libsignal whisper message (type byte, version,
/// protobuf with ratchet key and counters, the padded content, MAC) is ~200 bytes.
const ONE_WORD_TEXT: usize = 200;

fn seal_on(
    from: &Person,
    to: &Person,
    link: &OutboundLink,
    ack: Option<LinkId>,
    sent_at: u64,
    content: &[u8],
    seed: u64,
) -> Vec<u8> {
    seal_linked(
        &LinkedSealRequest {
            recipient: to.envelope.public(),
            sender: &from.epoch,
            link,
            ack,
            sent_at,
            content,
        },
        &mut rng(seed),
    )
    .unwrap()
    .bytes
}

fn receive(ring: &EnvelopeKeyRing, links: &HashMap<LinkId, InboundLink>, bytes: &[u8]) -> Received {
    ring.receive(bytes, NOW, links).unwrap()
}

#[test]
fn a_link_starts_full_and_goes_short_once_acknowledged() {
    let mut r = rng(1);
    let alice = Person::new(&mut r, 1);
    let bob = Person::new(&mut r, 2);
    let (alice_ring, bob_ring) = (alice.ring(), bob.ring());
    let (mut alice_links, mut bob_links) = (HashMap::new(), HashMap::new());

    // Alice's first envelopes on a new link are full: KEM ciphertext and certificate.
    let mut a_to_b = OutboundLink::new(bob.envelope.public(), &alice.epoch, &mut r).unwrap();
    let first = seal_on(&alice, &bob, &a_to_b, None, NOW, b"hello", 2);
    let second = seal_on(&alice, &bob, &a_to_b, None, NOW, b"again", 3);
    assert_eq!(first[..2], [2, 1]);
    assert_eq!(first.len(), FULL_HEADER_LEN + 8192 + TAG_LEN);
    // Both carry the same link (its X25519 key and KEM ciphertext), each with its own id.
    assert_eq!(first[34..FULL_HEADER_LEN], second[34..FULL_HEADER_LEN]);
    assert_ne!(first[2..18], second[2..18]);

    let got = receive(&bob_ring, &bob_links, &first);
    assert_eq!(got.envelope.content, b"hello");
    assert_eq!(
        got.envelope.sender.account_id,
        alice.identity.public().account_id()
    );
    assert!(got.certificate.is_some() && got.ack.is_none());
    let link = got.new_link.unwrap();
    assert_eq!(link.id(), a_to_b.id());
    assert_eq!(link.epoch.epoch_id, alice.epoch.epoch_id());
    assert_eq!(
        receive(&bob_ring, &bob_links, &second)
            .new_link
            .unwrap()
            .id(),
        link.id()
    );
    bob_links.insert(link.id(), link);

    // Bob answers on his own link and acknowledges Alice's.
    let b_to_a = OutboundLink::new(alice.envelope.public(), &bob.epoch, &mut r).unwrap();
    let reply = seal_on(&bob, &alice, &b_to_a, Some(a_to_b.id()), NOW, b"hi", 4);
    let got = receive(&alice_ring, &alice_links, &reply);
    assert_eq!(got.ack, Some(a_to_b.id()));
    alice_links.insert(got.new_link.as_ref().unwrap().id(), got.new_link.unwrap());
    a_to_b.acked = true;

    // Now Alice's envelopes are short: no KEM ciphertext, no certificate.
    let short = seal_on(
        &alice,
        &bob,
        &a_to_b,
        Some(b_to_a.id()),
        NOW,
        &[7; ONE_WORD_TEXT],
        5,
    );
    assert_eq!(short[..2], [2, 2]);
    assert_eq!(short[34..50], a_to_b.id());
    assert_eq!(short.len(), SHORT_HEADER_LEN + 512 + TAG_LEN);
    // The budget: a one-word text in steady state fits in 1.8 KiB with its frame.
    assert!(short.len() + 64 <= 1843, "{} bytes", short.len());
    let got = receive(&bob_ring, &bob_links, &short);
    assert_eq!(got.envelope.content, [7; ONE_WORD_TEXT]);
    assert_eq!(got.envelope.sender.device_id, 1);
    assert!(got.new_link.is_none() && got.certificate.is_none());
    assert_eq!(got.ack, Some(b_to_a.id()));
}

#[test]
fn a_short_envelope_on_an_unknown_link_or_for_another_key_is_unknown_link() {
    let mut r = rng(2);
    let alice = Person::new(&mut r, 1);
    let bob = Person::new(&mut r, 2);
    let carol = Person::new(&mut r, 3);
    let mut link = OutboundLink::new(bob.envelope.public(), &alice.epoch, &mut r).unwrap();
    let full = seal_on(&alice, &bob, &link, None, NOW, b"x", 1);
    let learned = bob.ring().receive(&full, NOW, &HashMap::new()).unwrap();
    link.acked = true;
    let short = seal_on(&alice, &bob, &link, None, NOW, b"y", 2);

    // Bob lost the link.
    assert!(matches!(
        bob.ring().receive(&short, NOW, &HashMap::new()),
        Err(CryptoError::UnknownLink)
    ));
    // Carol holds Bob's link record (say, copied) but the envelope names Bob's key id: her
    // ring has no such key.
    let mut links = HashMap::new();
    let inbound = learned.new_link.unwrap();
    links.insert(inbound.id(), inbound);
    assert!(matches!(
        carol.ring().receive(&short, NOW, &links),
        Err(CryptoError::UnknownKey)
    ));
    // With the link, Bob opens it.
    assert_eq!(
        bob.ring()
            .receive(&short, NOW, &links)
            .unwrap()
            .envelope
            .content,
        b"y"
    );
}

#[test]
fn a_short_envelope_cannot_claim_another_sender_or_leave_its_epoch() {
    let mut r = rng(3);
    let alice = Person::new(&mut r, 1);
    let bob = Person::new(&mut r, 2);
    let mallory = Person::new(&mut r, 4);
    let ring = bob.ring();
    let mut links = HashMap::new();

    // Mallory establishes a link of her own with Bob.
    let mut m_link = OutboundLink::new(bob.envelope.public(), &mallory.epoch, &mut r).unwrap();
    let full = seal_on(&mallory, &bob, &m_link, None, NOW, b"hi", 1);
    let learned = ring.receive(&full, NOW, &links).unwrap().new_link.unwrap();
    links.insert(learned.id(), learned);
    m_link.acked = true;
    // Alice's epoch key on Mallory's link: the claim (Alice) is not the link's sender.
    let forged = seal_linked(
        &LinkedSealRequest {
            recipient: bob.envelope.public(),
            sender: &alice.epoch,
            link: &m_link,
            ack: None,
            sent_at: NOW,
            content: b"I am Alice",
        },
        &mut rng(2),
    );
    // The link was made for Mallory's epoch: sealing refuses it outright.
    assert!(matches!(forged, Err(CryptoError::Malformed { .. })));

    // Times: the send time must lie inside the epoch's window, also on the short path.
    let late = seal_on(&mallory, &bob, &m_link, None, NOW + 8 * DAY, b"late", 3);
    assert!(matches!(
        ring.receive(&late, NOW + 8 * DAY, &links),
        Err(CryptoError::Expired { .. })
    ));
    let ahead = seal_on(&mallory, &bob, &m_link, None, NOW + 3 * DAY, b"ahead", 4);
    assert!(matches!(
        ring.receive(&ahead, NOW, &links),
        Err(CryptoError::Expired { .. })
    ));
    // Sealed inside the epoch, opened after it ended: fine.
    let inside = seal_on(&mallory, &bob, &m_link, None, NOW + DAY, b"inside", 5);
    assert!(ring.receive(&inside, NOW + 40 * DAY, &links).is_ok());
}

#[test]
fn a_duplicate_is_refused_by_its_id_after_verification() {
    let mut r = rng(4);
    let alice = Person::new(&mut r, 1);
    let bob = Person::new(&mut r, 2);
    let link = OutboundLink::new(bob.envelope.public(), &alice.epoch, &mut r).unwrap();
    let bytes = seal_on(&alice, &bob, &link, None, NOW, b"once", 1);
    let ring = bob.ring();
    let mut seen = HashSet::new();
    let links = HashMap::new();
    let first = ring.receive(&bytes, NOW, &links).unwrap();
    assert!(first.envelope.accept_once(&mut seen).is_ok());
    let again = ring.receive(&bytes, NOW, &links).unwrap();
    assert!(matches!(
        again.envelope.accept_once(&mut seen),
        Err(CryptoError::Replayed)
    ));
}

#[test]
fn links_survive_the_vault_and_refuse_damage() {
    let mut r = rng(5);
    let alice = Person::new(&mut r, 1);
    let bob = Person::new(&mut r, 2);
    let mut out = OutboundLink::new(bob.envelope.public(), &alice.epoch, &mut r).unwrap();
    out.acked = true;
    let back = OutboundLink::from_bytes(&out.to_bytes()).unwrap();
    assert_eq!((back.id(), back.acked), (out.id(), true));
    assert!(back.serves(bob.envelope.public(), &alice.epoch));
    assert!(!back.serves(alice.envelope.public(), &alice.epoch));

    let full = seal_on(&alice, &bob, &out, None, NOW, b"x", 1);
    // `out` is acked, so that was short; make a full one with a fresh link.
    assert_eq!(full[1], 2);
    let fresh = OutboundLink::new(bob.envelope.public(), &alice.epoch, &mut r).unwrap();
    let full = seal_on(&alice, &bob, &fresh, None, NOW, b"x", 2);
    let inbound = bob
        .ring()
        .receive(&full, NOW, &HashMap::new())
        .unwrap()
        .new_link
        .unwrap();
    let again = InboundLink::from_bytes(&inbound.to_bytes()).unwrap();
    assert_eq!(again.id(), inbound.id());
    assert_eq!(again.epoch, inbound.epoch);
    assert_eq!(inbound.usable_until(), inbound.epoch.not_after + 90 * DAY);

    for bytes in [out.to_bytes(), inbound.to_bytes()] {
        let mut wrong_version = bytes.to_vec();
        wrong_version[0] = 9;
        assert!(OutboundLink::from_bytes(&wrong_version).is_err());
        assert!(InboundLink::from_bytes(&wrong_version).is_err());
        assert!(OutboundLink::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(InboundLink::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
    let mut bad_flag = out.to_bytes().to_vec();
    *bad_flag.last_mut().unwrap() = 2;
    assert!(OutboundLink::from_bytes(&bad_flag).is_err());
}

#[test]
fn size_classes_are_powers_of_two_then_sixteen_kib_steps() {
    assert_eq!(padded_len_v2(0), 256);
    assert_eq!(padded_len_v2(256), 256);
    assert_eq!(padded_len_v2(257), 512);
    assert_eq!(padded_len_v2(5000), 8192);
    assert_eq!(padded_len_v2(16384), 16384);
    assert_eq!(padded_len_v2(16385), 32768);
    assert_eq!(padded_len_v2(40000), 49152);
    // The largest content with a certificate and an ack fits the largest class.
    let largest =
        93 + 2 + tessera_crypto::EPOCH_CERTIFICATE_LEN + 16 + 4 + tessera_crypto::MAX_CONTENT_LEN;
    assert_eq!(padded_len_v2(largest), MAX_PADDED_LEN_V2);
    // Every class is one the opener accepts, and the wire sizes for contents of every length
    // fall into few classes.
    let mut r = rng(6);
    let alice = Person::new(&mut r, 1);
    let bob = Person::new(&mut r, 2);
    let mut link = OutboundLink::new(bob.envelope.public(), &alice.epoch, &mut r).unwrap();
    link.acked = true;
    let mut sizes = HashSet::new();
    for len in (0..3000).step_by(37) {
        let bytes = seal_on(&alice, &bob, &link, None, NOW, &vec![1; len], len as u64);
        sizes.insert(bytes.len());
    }
    assert_eq!(sizes.len(), 5, "{sizes:?}");
}

#[test]
fn lengths_outside_the_classes_and_unknown_kinds_are_refused_before_any_cryptography() {
    let mut r = rng(7);
    let alice = Person::new(&mut r, 1);
    let bob = Person::new(&mut r, 2);
    let mut link = OutboundLink::new(bob.envelope.public(), &alice.epoch, &mut r).unwrap();
    link.acked = true;
    let short = seal_on(&alice, &bob, &link, None, NOW, b"x", 1);
    let ring = bob.ring();
    let links = HashMap::new();
    let err = |b: &[u8]| ring.receive(b, NOW, &links).unwrap_err();
    assert!(matches!(
        err(&short[..short.len() - 1]),
        CryptoError::BadLength { .. }
    ));
    let mut longer = short.clone();
    longer.extend_from_slice(&[0; 64]);
    assert!(matches!(err(&longer), CryptoError::BadLength { .. }));
    assert!(matches!(err(&short[..1]), CryptoError::BadLength { .. }));
    let mut kind = short.clone();
    kind[1] = 3;
    assert!(matches!(err(&kind), CryptoError::Malformed { .. }));
    // A short envelope's length with the full kind byte: too short for a full header.
    let mut as_full = short.clone();
    as_full[1] = 1;
    assert!(matches!(err(&as_full), CryptoError::BadLength { .. }));
    let mut version = short.clone();
    version[0] = 3;
    assert!(matches!(err(&version), CryptoError::UnknownVersion(3)));
    assert!(matches!(err(&[]), CryptoError::BadLength { .. }));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any single bit flipped anywhere in a short or full envelope is refused.
    #[test]
    fn any_single_bit_flip_is_refused(len in 0usize..400, at in any::<prop::sample::Index>(), bit in 0u8..8, acked: bool, seed: u64) {
        let mut r = rng(seed);
        let alice = Person::new(&mut r, 1);
        let bob = Person::new(&mut r, 2);
        let mut link = OutboundLink::new(bob.envelope.public(), &alice.epoch, &mut r).unwrap();
        let ring = bob.ring();
        let mut links = HashMap::new();
        let full = seal_on(&alice, &bob, &link, None, NOW, b"setup", seed);
        let learned = ring.receive(&full, NOW, &links).unwrap().new_link.unwrap();
        links.insert(learned.id(), learned);
        link.acked = acked;
        let mut bytes = seal_on(&alice, &bob, &link, Some([9; 16]), NOW, &vec![3; len], seed ^ 1);
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(ring.receive(&bytes, NOW, &links).is_err());
    }
}

#[test]
fn replay_detection_is_per_sender_so_a_copied_id_cannot_pre_empt_an_envelope() {
    let mut r = rng(8);
    let alice = Person::new(&mut r, 1);
    let mallory = Person::new(&mut r, 1);
    let bob = Person::new(&mut r, 2);
    let a_link = OutboundLink::new(bob.envelope.public(), &alice.epoch, &mut r).unwrap();
    let m_link = OutboundLink::new(bob.envelope.public(), &mallory.epoch, &mut r).unwrap();
    // The same RNG seed: Mallory's envelope carries the id Alice's has (as if copied).
    let from_mallory = seal_on(&mallory, &bob, &m_link, None, NOW, b"first", 42);
    let from_alice = seal_on(&alice, &bob, &a_link, None, NOW, b"real", 42);
    assert_eq!(from_mallory[2..18], from_alice[2..18]);
    let (ring, links) = (bob.ring(), HashMap::new());
    let mut seen = HashSet::new();
    let open = |b: &[u8]| ring.receive(b, NOW, &links).unwrap().envelope;
    assert!(open(&from_mallory).accept_once(&mut seen).is_ok());
    let real = open(&from_alice).accept_once(&mut seen).unwrap();
    assert_eq!(real.content, b"real");
    assert!(matches!(
        open(&from_alice).accept_once(&mut seen),
        Err(CryptoError::Replayed)
    ));
}
