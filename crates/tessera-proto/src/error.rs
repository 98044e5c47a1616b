//! Errors of this crate.

/// Why a relay address or pin could not be parsed.
///
/// Messages name the part that is wrong but never echo the whole input back, so an address pasted
/// by a user does not end up verbatim in logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The text does not start with `tessera://`.
    #[error("a relay address starts with \"tessera://\"")]
    Scheme,
    /// The host part is empty or not a valid DNS name, IPv4 or bracketed IPv6 literal.
    #[error("the relay address has an invalid host")]
    Host,
    /// The port is missing, not a number, or 0.
    #[error("the relay address needs a port between 1 and 65535")]
    Port,
    /// The pin is missing or is not 43 characters of unpadded base64url (32 bytes).
    #[error("the relay address needs a pin: 43 characters of base64url (SHA-256 of the relay key)")]
    Pin,
    /// Something follows the pin (a query, a fragment, more path segments).
    #[error("unexpected text after the pin in the relay address")]
    Trailing,
}

/// Why a relay frame could not be decoded or encoded (`docs/relay-protocol.md`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The frame's version byte is not one this build speaks.
    #[error("unsupported frame version {0}")]
    UnsupportedVersion(u8),
    /// The frame's kind byte is not defined in this version.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// The frame or one of its fields is above its limit.
    #[error("{field} too large ({len} > {max})")]
    TooLarge {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is truncated, has trailing bytes, or a field has an invalid value.
    #[error("malformed frame ({field})")]
    Malformed {
        /// Which field.
        field: &'static str,
    },
}
