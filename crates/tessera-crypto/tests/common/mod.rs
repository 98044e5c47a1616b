//! Deterministic fixtures shared by the integration tests, vectors and benchmarks.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

pub mod signal;
pub mod spec;

use rand::SeedableRng as _;
use rand_chacha::ChaCha20Rng;
use tessera_crypto::{
    AccountIdentity, DeviceCertificate, DeviceCertificateFields, EnvelopeKeyPair, EnvelopeKeyRing,
    EpochSigningKey, HybridSigningKey,
};

/// 2026-09-21T..., a fixed "now" for every test.
pub const NOW: u64 = 1_790_000_000_000;
pub const DAY: u64 = 86_400_000;
pub const GRACE: u64 = 14 * DAY;

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// One person with one device: identity, envelope key, certificate and epoch key.
pub struct Person {
    pub identity: AccountIdentity,
    pub auth: HybridSigningKey,
    pub envelope: EnvelopeKeyPair,
    pub certificate: DeviceCertificate,
    pub epoch: EpochSigningKey,
    pub device_id: u32,
}

impl Person {
    pub fn new(rng: &mut ChaCha20Rng, device_id: u32) -> Self {
        let identity = AccountIdentity::generate(rng);
        let auth = HybridSigningKey::generate(rng);
        let envelope = EnvelopeKeyPair::generate(rng);
        let certificate = DeviceCertificate::issue(
            &identity,
            DeviceCertificateFields {
                device_id,
                serial: 1,
                auth_key: auth.public().clone(),
                envelope_key: envelope.public().clone(),
                not_before: NOW - DAY,
                not_after: NOW + 30 * DAY,
            },
            rng,
        )
        .unwrap();
        let epoch =
            EpochSigningKey::generate(&identity, device_id, NOW - DAY, NOW + 7 * DAY, rng).unwrap();
        Self {
            identity,
            auth,
            envelope,
            certificate,
            epoch,
            device_id,
        }
    }

    /// A key ring holding a copy of this person's envelope key.
    pub fn ring(&self) -> EnvelopeKeyRing {
        let (x, m) = self.envelope.to_seeds();
        let mut ring = EnvelopeKeyRing::new();
        ring.insert(
            EnvelopeKeyPair::from_seeds(x, m),
            self.certificate.fields.not_after + GRACE,
        );
        ring
    }
}

/// The error's variant name, for comparing with vector files.
pub fn error_name(e: &tessera_crypto::CryptoError) -> String {
    let debug = format!("{e:?}");
    debug
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}
