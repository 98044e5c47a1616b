//! Relay addresses: `tessera://HOST:PORT/PIN` (specified in `docs/relay-address.md`).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use crate::AddressError;

const SCHEME: &str = "tessera://";

/// SHA-256 of a certificate's DER-encoded SubjectPublicKeyInfo.
///
/// Pinning the key rather than the certificate lets a relay renew its certificate without
/// changing the address users hold, as long as it keeps its key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpkiPin([u8; 32]);

impl SpkiPin {
    /// The pin of a DER-encoded SubjectPublicKeyInfo.
    pub fn of_spki_der(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }

    /// A pin from its raw 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, for operators who compare pins with `openssl` output.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for SpkiPin {
    // A pin is public (it is printed in the address), so Debug shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpkiPin({self})")
    }
}

impl FromStr for SpkiPin {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 43 {
            return Err(AddressError::Pin);
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| AddressError::Pin)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| AddressError::Pin)?;
        let pin = Self(bytes);
        // Reject non-canonical encodings (stray low bits in the last character), so that one pin
        // has exactly one spelling and two spellings never compare unequal.
        if pin.to_string() != s {
            return Err(AddressError::Pin);
        }
        Ok(pin)
    }
}

/// The host part of a relay address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RelayHost {
    /// A DNS name, including `.onion` names; stored in lowercase.
    Name(String),
    /// An IPv4 literal.
    Ipv4(Ipv4Addr),
    /// An IPv6 literal (written in brackets in the address).
    Ipv6(Ipv6Addr),
}

impl RelayHost {
    /// Whether this is a Tor onion service name.
    pub fn is_onion(&self) -> bool {
        matches!(self, Self::Name(n) if n.ends_with(".onion"))
    }

    fn parse(s: &str) -> Result<Self, AddressError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(AddressError::Host)?;
            return inner
                .parse()
                .map(Self::Ipv6)
                .map_err(|_| AddressError::Host);
        }
        if let Ok(v4) = s.parse::<Ipv4Addr>() {
            return Ok(Self::Ipv4(v4));
        }
        let name = s.to_ascii_lowercase();
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        // A name made only of digits and dots that failed to parse as IPv4 is a typo, not a name.
        let all_numeric = name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if name.is_empty() || name.len() > 253 || all_numeric || !name.split('.').all(valid_label) {
            return Err(AddressError::Host);
        }
        Ok(Self::Name(name))
    }
}

impl fmt::Display for RelayHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Ipv4(a) => write!(f, "{a}"),
            Self::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Where a relay is and which key it must present: `tessera://HOST:PORT/PIN`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RelayAddress {
    /// Host name, onion name or IP literal.
    pub host: RelayHost,
    /// TCP port of the relay's TLS listener (or of its onion service).
    pub port: u16,
    /// The pin the relay's TLS key must match.
    pub pin: SpkiPin,
}

impl RelayAddress {
    /// `host:port` as used for a TCP connection or a Tor stream request.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Display for RelayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}:{}/{}", self.host, self.port, self.pin)
    }
}

impl FromStr for RelayAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.trim().strip_prefix(SCHEME).ok_or(AddressError::Scheme)?;
        let (authority, pin) = rest.split_once('/').ok_or(AddressError::Pin)?;
        if pin.contains(['/', '?', '#']) {
            return Err(AddressError::Trailing);
        }
        let (host, port) = authority.rsplit_once(':').ok_or(AddressError::Port)?;
        // An unbracketed IPv6 literal would be split at its last colon; refuse it as a host.
        if host.contains(':') && !host.starts_with('[') {
            return Err(AddressError::Host);
        }
        let port: u16 = port.parse().map_err(|_| AddressError::Port)?;
        if port == 0 || authority.ends_with(":0") {
            return Err(AddressError::Port);
        }
        Ok(Self {
            host: RelayHost::parse(host)?,
            port,
            pin: pin.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin() -> SpkiPin {
        SpkiPin::of_spki_der(b"example key")
    }

    #[test]
    fn round_trips_every_host_kind() {
        for host in [
            RelayHost::Name("relay.example.org".into()),
            RelayHost::Name(
                "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion".into(),
            ),
            RelayHost::Ipv4(Ipv4Addr::LOCALHOST),
            RelayHost::Ipv6(Ipv6Addr::LOCALHOST),
        ] {
            let addr = RelayAddress {
                host,
                port: 4443,
                pin: pin(),
            };
            let text = addr.to_string();
            assert_eq!(text.parse::<RelayAddress>(), Ok(addr), "{text}");
        }
    }

    #[test]
    fn formats_exactly() {
        let addr = RelayAddress {
            host: RelayHost::Ipv6(Ipv6Addr::LOCALHOST),
            port: 443,
            pin: SpkiPin::from_bytes([0xff; 32]),
        };
        assert_eq!(
            addr.to_string(),
            "tessera://[::1]:443/__________________________________________8"
        );
        assert_eq!(addr.authority(), "[::1]:443");
    }

    #[test]
    fn pin_is_sha256_of_spki() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            SpkiPin::of_spki_der(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn names_are_lowercased_and_onions_recognised() {
        let a: RelayAddress = format!("tessera://Relay.EXAMPLE.org:1/{}", pin())
            .parse()
            .unwrap();
        assert_eq!(a.host, RelayHost::Name("relay.example.org".into()));
        assert!(!a.host.is_onion());
        let o: RelayAddress = format!("tessera://abc.onion:1/{}", pin()).parse().unwrap();
        assert!(o.host.is_onion());
    }

    #[test]
    fn fail_cases_have_the_right_error() {
        let p = pin().to_string();
        let cases = [
            (format!("https://h:1/{p}"), AddressError::Scheme),
            (format!("h:1/{p}"), AddressError::Scheme),
            (format!("tessera://:1/{p}"), AddressError::Host),
            (format!("tessera://bad_host:1/{p}"), AddressError::Host),
            (format!("tessera://-a.b:1/{p}"), AddressError::Host),
            (format!("tessera://999.1.1.1:1/{p}"), AddressError::Host),
            (format!("tessera://::1:1/{p}"), AddressError::Host),
            (format!("tessera://[::1:1/{p}"), AddressError::Host),
            (format!("tessera://h/{p}"), AddressError::Port),
            (format!("tessera://h:0/{p}"), AddressError::Port),
            (format!("tessera://h:65536/{p}"), AddressError::Port),
            (format!("tessera://h:x/{p}"), AddressError::Port),
            ("tessera://h:1".to_string(), AddressError::Pin),
            ("tessera://h:1/".to_string(), AddressError::Pin),
            (format!("tessera://h:1/{}", &p[1..]), AddressError::Pin),
            (format!("tessera://h:1/{p}A"), AddressError::Pin),
            (
                format!("tessera://h:1/{}", p.replace(|_| true, "+")),
                AddressError::Pin,
            ),
            (format!("tessera://h:1/{p}/x"), AddressError::Trailing),
            (format!("tessera://h:1/{p}?a"), AddressError::Trailing),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<RelayAddress>(), Err(want.clone()), "{text}");
        }
    }

    #[test]
    fn non_canonical_pin_spelling_is_refused() {
        // 32 zero bytes encode as 42 'A's and a final 'A'; a final 'B' decodes to the same bytes
        // with a stray low bit, which must not be accepted as a second spelling.
        let canonical = "A".repeat(43);
        assert!(canonical.parse::<SpkiPin>().is_ok());
        let sloppy = format!("{}B", "A".repeat(42));
        assert_eq!(sloppy.parse::<SpkiPin>(), Err(AddressError::Pin));
    }

    #[test]
    fn errors_do_not_echo_input() {
        let secret_looking = "tessera://h:1/NOT-A-PIN-but-something-private";
        let err = secret_looking
            .parse::<RelayAddress>()
            .unwrap_err()
            .to_string();
        assert!(!err.contains("private"), "{err}");
    }
}
