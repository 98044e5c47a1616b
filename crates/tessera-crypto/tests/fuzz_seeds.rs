//! Writes the seed corpora of the fuzz targets in `fuzz/corpus/` from real objects, so the
//! fuzzers start from valid structures (they are several KiB at exact lengths, which random
//! inputs never reach). Run once with `TESSERA_WRITE_VECTORS=1 ... --ignored`; the normal run
//! checks that every seed still parses, so the corpus does not rot.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::PathBuf;

use common::{NOW, Person, rng};
use tessera_crypto::signal::KeyPair;
use tessera_crypto::{DeviceCertificate, EpochCertificate, OneTimePrekeyBatch, SealRequest, seal};

fn corpus(target: &str) -> PathBuf {
    manifest_dir().join("../../fuzz/corpus").join(target)
}

fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut r = rng(90);
    let alice = Person::new(&mut r, 1);
    let bob = Person::new(&mut r, 2);
    let mut out = Vec::new();
    for (name, cert, content) in [
        ("with-cert", true, &b"hi"[..]),
        ("plain", false, &[7u8; 300][..]),
    ] {
        let request = SealRequest {
            recipient: bob.envelope.public(),
            sender: &alice.epoch,
            include_certificate: cert,
            sent_at: NOW,
            content,
        };
        out.push(("envelope_open", name, seal(&request, &mut r).unwrap().bytes));
    }
    // Version 2: a full envelope on a new link, a short one on an acknowledged link, and the
    // links as the vault stores them.
    let mut link =
        tessera_crypto::OutboundLink::new(bob.envelope.public(), &alice.epoch, &mut r).unwrap();
    for (name, acked) in [("v2-full", false), ("v2-short", true)] {
        link.acked = acked;
        let request = tessera_crypto::LinkedSealRequest {
            recipient: bob.envelope.public(),
            sender: &alice.epoch,
            link: &link,
            ack: Some([3; 16]),
            sent_at: NOW,
            content: b"hi",
        };
        let bytes = tessera_crypto::seal_linked(&request, &mut r).unwrap().bytes;
        if !acked {
            let inbound = bob
                .ring()
                .receive(&bytes, NOW, &std::collections::HashMap::new())
                .unwrap()
                .new_link
                .unwrap();
            out.push(("certificates", "inbound-link", inbound.to_bytes().to_vec()));
        }
        out.push(("envelope_open", name, bytes));
    }
    out.push(("certificates", "outbound-link", link.to_bytes().to_vec()));
    out.push(("certificates", "device", alice.certificate.to_bytes()));
    out.push((
        "certificates",
        "epoch",
        alice.epoch.certificate().to_bytes(),
    ));
    let keys = (0..13)
        .map(|i| (i, KeyPair::generate(&mut r).public_key))
        .collect();
    let batch = OneTimePrekeyBatch::new(keys).unwrap();
    let proof = batch.proof(5).unwrap();
    let mut p = Vec::new();
    p.extend_from_slice(&proof.index.to_be_bytes());
    p.extend_from_slice(&13u32.to_be_bytes());
    proof.path.iter().for_each(|h| p.extend_from_slice(h));
    out.push(("prekey_proof", "index5", p));
    let envelope = out[0].2.clone();
    let send = tessera_proto::Frame {
        request_id: 7,
        body: tessera_proto::Body::Send {
            account_id: bob.identity.public().account_id().0,
            device_id: 2,
            envelope,
        },
    };
    out.push(("relay_frame", "send", send.encode().unwrap()));
    let bundle = tessera_proto::Frame {
        request_id: 8,
        body: tessera_proto::Body::Bundle {
            account_public: bob.identity.public().to_bytes(),
            device_certificate: bob.certificate.to_bytes(),
            signed: vec![1; 100],
            one_time: Some(tessera_proto::WireOneTimePrekey {
                id: 1,
                public: vec![5; 33],
                index: 5,
                path: vec![9; 128],
            }),
        },
    };
    out.push(("relay_frame", "bundle", bundle.encode().unwrap()));
    out.push((
        "text_codecs",
        "account-id",
        alice
            .identity
            .public()
            .account_id()
            .to_string()
            .into_bytes(),
    ));
    out.push((
        "text_codecs",
        "relay",
        format!("tessera://relay.example.org:4443/{}", "A".repeat(43)).into_bytes(),
    ));
    out.push((
        "text_codecs",
        "relay-v6",
        format!("tessera://[::1]:1/{}", "_".repeat(42) + "8").into_bytes(),
    ));
    out
}

#[test]
#[ignore = "writes fuzz/corpus; run once with TESSERA_WRITE_VECTORS=1"]
fn write_fuzz_seeds() {
    if std::env::var_os("TESSERA_WRITE_VECTORS").is_none() {
        return;
    }
    for (target, name, bytes) in seeds() {
        std::fs::create_dir_all(corpus(target)).unwrap();
        std::fs::write(corpus(target).join(name), bytes).unwrap();
    }
}

/// Seeds of `attachment_open`: two length bytes (little-endian), a piece-size byte, then the
/// blob of a file of that length under the key `[7; 32]`.
fn attachment_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use tessera_crypto::attachment::{FileKey, Sealer};
    let mut out = Vec::new();
    for (name, len) in [("ten-bytes", 10u16), ("five-kib", 5_000)] {
        let file: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut s = Sealer::new(&FileKey::from_bytes([7; 32]), u64::from(len)).unwrap();
        let mut seed = len.to_le_bytes().to_vec();
        seed.push(3);
        seed.extend(s.push(&file).unwrap());
        seed.extend(s.finish().unwrap().0);
        out.push((name, seed));
    }
    out
}

#[test]
#[ignore = "writes fuzz/corpus/attachment_open; run once with TESSERA_WRITE_VECTORS=1"]
fn write_attachment_seeds() {
    if std::env::var_os("TESSERA_WRITE_VECTORS").is_none() {
        return;
    }
    std::fs::create_dir_all(corpus("attachment_open")).unwrap();
    for (name, bytes) in attachment_seeds() {
        std::fs::write(corpus("attachment_open").join(name), bytes).unwrap();
    }
}

#[test]
fn committed_seeds_are_still_valid_structures() {
    let read = |t: &str, n: &str| {
        std::fs::read(corpus(t).join(n)).unwrap_or_else(|e| panic!("{t}/{n}: {e}"))
    };
    DeviceCertificate::from_bytes(&read("certificates", "device")).unwrap();
    EpochCertificate::from_bytes(&read("certificates", "epoch"))
        .unwrap()
        .verify(NOW)
        .unwrap();
    for n in ["with-cert", "plain"] {
        assert_eq!(
            read("envelope_open", n)[0],
            tessera_crypto::ENVELOPE_VERSION
        );
    }
    for n in ["send", "bundle"] {
        tessera_proto::Frame::decode(&read("relay_frame", n)).unwrap();
    }
    let id = String::from_utf8(read("text_codecs", "account-id")).unwrap();
    id.parse::<tessera_crypto::AccountId>().unwrap();
    for (name, seed) in attachment_seeds() {
        assert_eq!(read("attachment_open", name), seed, "{name}");
    }
}

/// This crate's directory: from Cargo at run time (a test binary reused from a build in another
/// checkout must not read that checkout's files), else as compiled.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
