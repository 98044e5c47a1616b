//! Arbitrary Merkle proofs for one-time prekeys: never panic, and never reach the root of a
//! batch they are not part of.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng as _;
use tessera_crypto::signal::KeyPair;
use tessera_crypto::{OneTimePrekeyBatch, OneTimePrekeyProof};

fn batch() -> &'static OneTimePrekeyBatch {
    static B: OnceLock<OneTimePrekeyBatch> = OnceLock::new();
    B.get_or_init(|| {
        let mut r = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let keys = (0..13).map(|i| (i, KeyPair::generate(&mut r).public_key)).collect();
        OneTimePrekeyBatch::new(keys).expect("batch")
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let b = batch();
    let index = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let size = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    let Some(real) = b.proof((index % 13) as usize) else { return };
    let path: Vec<[u8; 32]> = data[8..].chunks_exact(32).map(|c| c.try_into().expect("32")).collect();
    let forged = OneTimePrekeyProof { prekey_id: real.prekey_id, prekey: real.prekey, index, path };
    if let Ok(root) = forged.root(size) {
        if root == b.root() {
            // Only the genuine position and path reach the root.
            assert_eq!(forged.index, real.index);
            assert_eq!(forged.path, real.path);
        }
    }
});
