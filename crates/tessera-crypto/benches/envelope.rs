//! Send path, receive path, session start, and the per-message ML-DSA alternative.
//! Run: `cargo bench -p tessera-crypto` (numbers and conditions are in the crate README).
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::signal::{Device, at, start};
use common::{NOW, rng};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use rand_chacha::ChaCha20Rng;
use std::collections::HashMap;
use tessera_crypto::signal::{
    CiphertextMessage, InMemSignalProtocolStore, ProtocolAddress, SignalMessage,
    process_prekey_bundle,
};

use tessera_crypto::{
    EnvelopeKeyRing, EnvelopePublicKey, InboundLink, LinkId, LinkedSealRequest, OutboundLink,
    SealRequest, VerifiedEpoch, padded_len, seal, seal_linked,
};

const SIZES: [(usize, &str); 3] = [(64, "64B"), (1024, "1KiB"), (65536, "64KiB")];

/// Alice's side: her device and what she knows about Bob.
struct Sender {
    alice: Device,
    bob_address: ProtocolAddress,
    bob_key: EnvelopePublicKey,
}

/// Bob's side: his device, his envelope keys and Alice's cached epoch key.
struct Receiver {
    bob: Device,
    ring: EnvelopeKeyRing,
    alice_address: ProtocolAddress,
    alice_epoch: VerifiedEpoch,
}

fn established(seed: u64) -> (Sender, Receiver) {
    let mut r = rng(seed);
    let mut alice = Device::new(&mut r, "alice");
    let mut bob = Device::new(&mut r, "bob");
    start(&mut alice, &mut bob, &mut r);
    let first = alice.encrypt(&bob.address, b"hi", &mut r);
    bob.decrypt(&alice.address, &first, &mut r).unwrap();
    let reply = bob.encrypt(&alice.address, b"hi", &mut r);
    alice.decrypt(&bob.address, &reply, &mut r).unwrap();
    let receiver = Receiver {
        ring: bob.person.ring(),
        alice_address: alice.address.clone(),
        alice_epoch: alice.person.epoch.certificate().verify(NOW).unwrap(),
        bob,
    };
    let sender = Sender {
        bob_address: receiver.bob.address.clone(),
        bob_key: receiver.bob.person.envelope.public().clone(),
        alice,
    };
    (sender, receiver)
}

/// Returns (Signal ciphertext length, envelope bytes).
fn send(s: &mut Sender, payload: &[u8], r: &mut ChaCha20Rng) -> (usize, Vec<u8>) {
    let msg = s
        .alice
        .encrypt(&s.bob_address, payload, r)
        .serialize()
        .to_vec();
    let request = SealRequest {
        recipient: &s.bob_key,
        sender: &s.alice.person.epoch,
        include_certificate: false,
        sent_at: NOW,
        content: &msg,
    };
    (msg.len(), seal(&request, r).unwrap().bytes)
}

fn receive(rx: &mut Receiver, bytes: &[u8], r: &mut ChaCha20Rng) -> Vec<u8> {
    let opened = rx.ring.open(bytes, NOW).unwrap();
    let env = rx.ring.verify_sender(opened, &rx.alice_epoch, NOW).unwrap();
    let msg =
        CiphertextMessage::SignalMessage(SignalMessage::try_from(env.content.as_slice()).unwrap());
    rx.bob.decrypt(&rx.alice_address, &msg, r).unwrap()
}

fn overhead() {
    let (mut s, mut rx) = established(40);
    let mut r = rng(41);
    for len in [0usize, 16, 64, 140, 500, 1024] {
        let (signal_len, bytes) = send(&mut s, &vec![b'x'; len], &mut r);
        assert_eq!(receive(&mut rx, &bytes, &mut r).len(), len);
        let extra = bytes.len() - signal_len;
        eprintln!(
            "overhead: text {len:>4} B -> Signal {signal_len:>4} B -> envelope {:>4} B: +{extra} B ({:.2} KiB; padded plaintext {} B)",
            bytes.len(),
            extra as f64 / 1024.0,
            padded_len(61 + 64 + 4 + signal_len),
        );
    }
}

fn paths(c: &mut Criterion) {
    overhead();

    let (mut s, _unused_receiver) = established(50);
    let mut r = rng(51);
    let mut g = c.benchmark_group("send: signal encrypt + seal");
    for (size, name) in SIZES {
        let payload = vec![0x42u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| black_box(send(&mut s, &payload, &mut r)))
        });
    }
    g.finish();

    // Alice's messages above were never delivered; start a fresh pair so Bob decrypts in order.
    let (mut s, mut rx2) = established(60);
    let mut setup_rng = rng(61);
    let mut g = c.benchmark_group("receive: open + verify sender + signal decrypt");
    for (size, name) in SIZES {
        let payload = vec![0x42u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_batched(
                || send(&mut s, &payload, &mut setup_rng).1,
                |bytes| black_box(receive(&mut rx2, &bytes, &mut r)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// Envelope v2 in steady state: a link acknowledged, short envelopes both ways.
struct Linked {
    link: OutboundLink,
    links: HashMap<LinkId, InboundLink>,
}

fn linked(s: &Sender, rx: &Receiver, r: &mut ChaCha20Rng) -> Linked {
    let mut link = OutboundLink::new(&s.bob_key, &s.alice.person.epoch, r).unwrap();
    let first = seal_linked(
        &LinkedSealRequest {
            recipient: &s.bob_key,
            sender: &s.alice.person.epoch,
            link: &link,
            ack: None,
            sent_at: NOW,
            content: b"first",
        },
        r,
    )
    .unwrap();
    let inbound = rx
        .ring
        .receive(&first.bytes, NOW, &HashMap::new())
        .unwrap()
        .new_link
        .unwrap();
    link.acked = true;
    Linked {
        link,
        links: HashMap::from([(inbound.id(), inbound)]),
    }
}

fn send_v2(s: &mut Sender, l: &Linked, payload: &[u8], r: &mut ChaCha20Rng) -> Vec<u8> {
    let msg = s.alice.encrypt(&s.bob_address, payload, r);
    let mut content = vec![msg.message_type() as u8];
    content.extend_from_slice(msg.serialize());
    let request = LinkedSealRequest {
        recipient: &s.bob_key,
        sender: &s.alice.person.epoch,
        link: &l.link,
        ack: Some([1; 16]),
        sent_at: NOW,
        content: &content,
    };
    seal_linked(&request, r).unwrap().bytes
}

fn receive_v2(rx: &mut Receiver, l: &Linked, bytes: &[u8], r: &mut ChaCha20Rng) -> Vec<u8> {
    let got = rx.ring.receive(bytes, NOW, &l.links).unwrap();
    let msg = CiphertextMessage::SignalMessage(
        SignalMessage::try_from(&got.envelope.content[1..]).unwrap(),
    );
    rx.bob.decrypt(&rx.alice_address, &msg, r).unwrap()
}

fn paths_v2(c: &mut Criterion) {
    let (mut s, mut rx) = established(140);
    let mut r = rng(141);
    let l = linked(&s, &rx, &mut r);
    for (what, len) in [("one-word text", 5usize), ("1 KiB text", 1024)] {
        let bytes = send_v2(&mut s, &l, &vec![b'x'; len], &mut r);
        assert_eq!(receive_v2(&mut rx, &l, &bytes, &mut r).len(), len);
        eprintln!(
            "v2 short envelope, {what} ({len} B of Signal plaintext): {} B",
            bytes.len()
        );
    }

    let (mut s, rx) = established(150);
    let mut r = rng(151);
    let l = linked(&s, &rx, &mut r);
    let mut g = c.benchmark_group("v2 send (short): signal encrypt + seal_linked");
    for (size, name) in SIZES {
        let payload = vec![0x42u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| black_box(send_v2(&mut s, &l, &payload, &mut r)))
        });
    }
    g.finish();

    let (mut s, mut rx) = established(160);
    let mut r = rng(161);
    let mut setup_rng = rng(162);
    let l = linked(&s, &rx, &mut r);
    let mut g = c.benchmark_group("v2 receive (short): receive + signal decrypt");
    for (size, name) in SIZES {
        let payload = vec![0x42u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_batched(
                || send_v2(&mut s, &l, &payload, &mut setup_rng),
                |bytes| black_box(receive_v2(&mut rx, &l, &bytes, &mut r)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    // A full envelope (first on a link): the certificate's hybrid signatures are verified.
    let (s, rx) = established(170);
    let mut r = rng(171);
    let link = OutboundLink::new(&s.bob_key, &s.alice.person.epoch, &mut r).unwrap();
    let full = seal_linked(
        &LinkedSealRequest {
            recipient: &s.bob_key,
            sender: &s.alice.person.epoch,
            link: &link,
            ack: None,
            sent_at: NOW,
            content: &[0x42; 1024],
        },
        &mut r,
    )
    .unwrap()
    .bytes;
    c.bench_function("v2 receive (full, 1KiB): KEM + certificate + MAC", |b| {
        b.iter(|| black_box(rx.ring.receive(&full, NOW, &HashMap::new()).unwrap()))
    });
}

fn session_start(c: &mut Criterion) {
    let mut r = rng(70);
    let mut bob = Device::new(&mut r, "bob");
    let alice = Device::new(&mut r, "alice");
    let identity = alice.person.identity.signal_identity().unwrap();
    let bob_account = bob.person.identity.public();
    let bob_address = bob.address.clone();
    c.bench_function(
        "session start: verify bundle (ML-DSA-87) + PQXDH + first message",
        |b| {
            b.iter_batched(
                || {
                    (
                        bob.publish(&mut r, 2),
                        InMemSignalProtocolStore::new(identity, 1000).unwrap(),
                    )
                },
                |(published, mut store)| {
                    let bundle = published.verify(&bob_account);
                    process_prekey_bundle(
                        &bob_address,
                        &mut store.session_store,
                        &mut store.identity_store,
                        &bundle,
                        at(NOW),
                        &mut rng(71),
                    )
                    .now_or_never()
                    .unwrap()
                    .unwrap();
                    let msg = tessera_crypto::signal::message_encrypt(
                        b"hello",
                        &bob_address,
                        &mut store.session_store,
                        &mut store.identity_store,
                        at(NOW),
                        &mut rng(72),
                    )
                    .now_or_never()
                    .unwrap()
                    .unwrap();
                    black_box(msg)
                },
                BatchSize::SmallInput,
            )
        },
    );
}

fn signatures(c: &mut Criterion) {
    let mut r = rng(80);
    let p = common::Person::new(&mut r, 1);
    let public = p.identity.public();
    let digest = [7u8; 32];
    c.bench_function(
        "per-message alternative: hybrid sign (XEdDSA + ML-DSA-87)",
        |b| {
            b.iter(|| {
                black_box(
                    p.identity
                        .sign("tessera v1 bench", &digest, &mut r)
                        .unwrap(),
                )
            })
        },
    );
    let sig = p
        .identity
        .sign("tessera v1 bench", &digest, &mut r)
        .unwrap();
    c.bench_function("per-message alternative: hybrid verify", |b| {
        b.iter(|| {
            black_box(
                public
                    .verify("tessera v1 bench", &digest, &sig, "bench")
                    .is_ok(),
            )
        })
    });
    let mut bob = Device::new(&mut r, "bob");
    let published = bob.publish(&mut r, 1);
    let bob_account = bob.person.identity.public();
    c.bench_function("prekey bundle verify (ML-DSA-87 + Merkle proof)", |b| {
        b.iter(|| black_box(published.verify(&bob_account)))
    });
}

/// Where the per-message time goes (1 KiB payload).
fn components(c: &mut Criterion) {
    let mut g = c.benchmark_group("component (1KiB)");
    let payload = vec![0x42u8; 1024];
    let (mut s, rx) = established(90);
    let mut r = rng(91);
    g.bench_function("signal encrypt", |b| {
        b.iter(|| black_box(s.alice.encrypt(&s.bob_address, &payload, &mut r)))
    });
    let content = s
        .alice
        .encrypt(&s.bob_address, &payload, &mut r)
        .serialize()
        .to_vec();
    g.bench_function("seal", |b| {
        b.iter(|| {
            let request = SealRequest {
                recipient: &s.bob_key,
                sender: &s.alice.person.epoch,
                include_certificate: false,
                sent_at: NOW,
                content: &content,
            };
            black_box(seal(&request, &mut r).unwrap())
        })
    });
    let bytes = send(&mut s, &payload, &mut r).1;
    g.bench_function("open (KEM + AEAD + parse)", |b| {
        b.iter(|| black_box(rx.ring.open(&bytes, NOW).unwrap()))
    });
    g.bench_function("verify sender (cached pair key + BLAKE3 MAC)", |b| {
        b.iter_batched(
            || rx.ring.open(&bytes, NOW).unwrap(),
            |opened| black_box(rx.ring.verify_sender(opened, &rx.alice_epoch, NOW).unwrap()),
            BatchSize::SmallInput,
        )
    });
    let (mut s2, mut rx2) = established(92);
    let mut setup_rng = rng(93);
    g.bench_function("signal decrypt", |b| {
        b.iter_batched(
            || {
                let m = s2.alice.encrypt(&s2.bob_address, &payload, &mut setup_rng);
                CiphertextMessage::SignalMessage(SignalMessage::try_from(m.serialize()).unwrap())
            },
            |m| black_box(rx2.bob.decrypt(&rx2.alice_address, &m, &mut r).unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn primitives(c: &mut Criterion) {
    use libcrux_ml_kem::mlkem1024;
    let mut g = c.benchmark_group("primitive");
    let mut r = rng(95);
    let secret = x25519_dalek::StaticSecret::from([9u8; 32]);
    let peer = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([5u8; 32]));
    g.bench_function("X25519 public key from secret", |b| {
        b.iter(|| black_box(x25519_dalek::PublicKey::from(&secret)))
    });
    g.bench_function("X25519 DH", |b| {
        b.iter(|| black_box(secret.diffie_hellman(&peer)))
    });
    let pair = mlkem1024::generate_key_pair([3u8; 64]);
    g.bench_function("ML-KEM-1024 encapsulate", |b| {
        b.iter(|| black_box(mlkem1024::encapsulate(pair.public_key(), [4u8; 32])))
    });
    let (ct, _) = mlkem1024::encapsulate(pair.public_key(), [4u8; 32]);
    g.bench_function("ML-KEM-1024 decapsulate", |b| {
        b.iter(|| black_box(mlkem1024::decapsulate(pair.private_key(), &ct)))
    });
    g.bench_function("ML-KEM-1024 validate public key", |b| {
        b.iter(|| black_box(mlkem1024::validate_public_key(pair.public_key())))
    });
    let kp = tessera_crypto::signal::KeyPair::generate(&mut r);
    g.bench_function("XEdDSA sign", |b| {
        b.iter(|| {
            black_box(
                kp.private_key
                    .calculate_signature(&[1u8; 32], &mut r)
                    .unwrap(),
            )
        })
    });
    let sig = kp
        .private_key
        .calculate_signature(&[1u8; 32], &mut r)
        .unwrap();
    g.bench_function("XEdDSA verify", |b| {
        b.iter(|| black_box(kp.public_key.verify_signature(&[1u8; 32], &sig)))
    });
    g.finish();
}

criterion_group!(
    benches,
    paths,
    paths_v2,
    components,
    primitives,
    session_start,
    signatures
);
criterion_main!(benches);
