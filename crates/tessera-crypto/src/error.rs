//! Errors of this crate.

/// Why a cryptographic operation failed. Variants carry no key material and no plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The version byte is not one this build understands.
    #[error("unknown format version {0}")]
    UnknownVersion(u8),
    /// The input is too short, too long, or its length is not a valid encoded size.
    #[error("invalid length for {what}")]
    BadLength {
        /// Which structure.
        what: &'static str,
    },
    /// The structure decoded but a field is invalid (bad flags, bad key encoding, non-zero padding).
    #[error("malformed {what}")]
    Malformed {
        /// Which structure or field.
        what: &'static str,
    },
    /// No envelope key with this key id, or the key is past its grace period.
    #[error("no usable envelope key for this envelope")]
    UnknownKey,
    /// A short envelope names a link this device does not hold.
    #[error("the envelope's link is unknown to this device")]
    UnknownLink,
    /// Authenticated decryption failed: tampered, truncated, or encrypted to another key.
    #[error("envelope does not decrypt (tampered or not for this key)")]
    Decrypt,
    /// A signature did not verify, or a certificate does not belong to the claimed account.
    #[error("signature or certificate check failed for {what}")]
    BadSignature {
        /// Which signed object.
        what: &'static str,
    },
    /// A certificate is outside its validity window at the given time.
    #[error("{what} is not valid at this time")]
    Expired {
        /// Which certificate.
        what: &'static str,
    },
    /// An envelope with this id was already accepted.
    #[error("envelope was already received (replay or duplicate)")]
    Replayed,
    /// The content is larger than the format allows.
    #[error("content too large ({len} bytes, at most {max})")]
    TooLarge {
        /// Offered size.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// A peer's public key is unusable (e.g. a small-order X25519 point).
    #[error("unusable public key in {what}")]
    BadPublicKey {
        /// Which key.
        what: &'static str,
    },
    /// Signing failed inside the ML-DSA implementation (does not happen with valid keys).
    #[error("signing failed")]
    Signing,
}

/// What a caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is broken or hostile: drop it (and count it), do not retry.
    Reject,
    /// A duplicate: acknowledge it to the relay and show nothing.
    Duplicate,
    /// Our own key material is missing or outdated (e.g. a key past its grace period).
    StaleKey,
    /// A bug or a local limit; report it.
    Local,
}

impl CryptoError {
    /// A stable classification for callers.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Replayed => ErrorKind::Duplicate,
            Self::UnknownKey | Self::UnknownLink => ErrorKind::StaleKey,
            Self::TooLarge { .. } | Self::Signing => ErrorKind::Local,
            _ => ErrorKind::Reject,
        }
    }
}
