//! Arbitrary bytes as device and epoch certificates, prekey signatures and public keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_crypto::{
    AccountPublic, DeviceCertificate, EnvelopePublicKey, EpochCertificate, HybridSignature,
    PrekeySignature,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = EpochCertificate::from_bytes(data) {
        let _ = c.verify(0);
    }
    if let Ok(c) = DeviceCertificate::from_bytes(data) {
        assert_eq!(c.to_bytes(), data, "device certificate encoding is canonical");
    }
    let _ = AccountPublic::from_bytes(data);
    let _ = EnvelopePublicKey::from_bytes(data);
    let _ = HybridSignature::from_bytes(data);
    let _ = PrekeySignature::from_bytes(data);
});
