//! Arbitrary bytes as an envelope of either version: never panics, never opens.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng as _;
use tessera_crypto::{EnvelopeKeyPair, EnvelopeKeyRing};

fn ring() -> &'static EnvelopeKeyRing {
    static RING: OnceLock<EnvelopeKeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let mut r = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut ring = EnvelopeKeyRing::new();
        ring.insert(EnvelopeKeyPair::generate(&mut r), u64::MAX);
        ring
    })
}

fuzz_target!(|data: &[u8]| {
    assert!(ring().open(data, 0).is_err());
    assert!(ring().receive(data, 0, &HashMap::new()).is_err());
});
