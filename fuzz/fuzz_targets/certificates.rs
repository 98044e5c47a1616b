//! Arbitrary bytes as device and epoch certificates, envelope links (as the vault stores them),
//! prekey signatures and public keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_crypto::{
    AccountPublic, DeviceCertificate, EnvelopePublicKey, EpochCertificate, HybridSignature,
    InboundLink, OutboundLink, PrekeySignature,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = EpochCertificate::from_bytes(data) {
        let _ = c.verify(0);
    }
    if let Ok(c) = DeviceCertificate::from_bytes(data) {
        assert_eq!(c.to_bytes(), data, "device certificate encoding is canonical");
    }
    if let Ok(l) = OutboundLink::from_bytes(data) {
        assert_eq!(&l.to_bytes()[..], data, "outbound link encoding is canonical");
    }
    if let Ok(l) = InboundLink::from_bytes(data) {
        assert_eq!(&l.to_bytes()[..], data, "inbound link encoding is canonical");
    }
    let _ = AccountPublic::from_bytes(data);
    let _ = EnvelopePublicKey::from_bytes(data);
    let _ = HybridSignature::from_bytes(data);
    let _ = PrekeySignature::from_bytes(data);
});
