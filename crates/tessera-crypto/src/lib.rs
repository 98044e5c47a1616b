#![doc = include_str!("../README.md")]

pub mod attachment;
mod device;
mod envelope;
mod epoch;
mod error;
mod hybrid;
mod identity;
mod link;
mod prekeys;
mod relay_auth;
mod wire;

#[cfg(fuzzing)]
pub use envelope::fuzzing;

pub use device::{
    DEVICE_CERTIFICATE_LEN, DeviceCertificate, DeviceCertificateFields, EnvelopeKeyId,
    EnvelopeKeyPair, EnvelopePublicKey, MAX_DEVICE_CERT_WINDOW_MS, MLKEM1024_CT_LEN,
    MLKEM1024_EK_LEN,
};
pub use envelope::{
    ENVELOPE_VERSION, EnvelopeId, EnvelopeKeyRing, HEADER_LEN, MAX_CLOCK_SKEW_MS, MAX_CONTENT_LEN,
    MAX_ENVELOPE_AGE_MS, MAX_ENVELOPE_LEN, MIN_ENVELOPE_LEN, OpenedEnvelope, ReplayKey,
    SealRequest, SealedEnvelope, SeenIds, SenderClaim, TAG_LEN, VerifiedEnvelope, padded_len, seal,
};
pub use epoch::{
    EPOCH_CERTIFICATE_LEN, EpochCertificate, EpochId, EpochSigningKey, MAX_EPOCH_CERT_WINDOW_MS,
    VerifiedEpoch,
};
pub use error::{CryptoError, ErrorKind};
pub use hybrid::{
    HYBRID_PUBLIC_KEY_LEN, HYBRID_SIGNATURE_LEN, HybridPublicKey, HybridSignature,
    HybridSigningKey, MLDSA87_SIG_LEN, MLDSA87_VK_LEN,
};
pub use identity::{AccountId, AccountIdentity, AccountPublic, SafetyNumber};
pub use link::{
    ENVELOPE_V2, FULL_HEADER_LEN, InboundLink, InboundLinks, LinkId, LinkedSealRequest,
    MAX_ENVELOPE_LEN_V2, MAX_PADDED_LEN_V2, MIN_ENVELOPE_LEN_V2, MIN_PADDED_LEN_V2, OutboundLink,
    PADDING_STEP_V2, Received, SHORT_HEADER_LEN, padded_len_v2, seal_linked,
};
pub use prekeys::{
    MAX_BATCH, OneTimePrekeyBatch, OneTimePrekeyProof, PrekeySignature, PrekeyStatement,
    SIGNAL_SIGNATURE_LEN, SignedPrekeys, verified_bundle,
};
pub use relay_auth::{
    ACCOUNT_DELETION_LABEL, RELAY_LOGIN_LABEL, sign_account_deletion, sign_relay_login,
    verify_account_deletion, verify_relay_login,
};

/// The libsignal protocol crate this crate is built on (pinned exactly in the workspace).
pub use libsignal_protocol as signal;
