//! The pinned-key certificate verifier.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tessera_proto::SpkiPin;

/// The pin of a DER-encoded X.509 certificate: SHA-256 of its SubjectPublicKeyInfo.
///
/// Returns `None` if the certificate cannot be parsed.
pub fn spki_pin_of_certificate(cert_der: &[u8]) -> Option<SpkiPin> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(SpkiPin::of_spki_der(cert.public_key().raw))
}

/// Accepts exactly the server whose certificate key hashes to the expected pin.
///
/// The handshake signature is still verified (with the pinned key), so presenting a copy of the
/// relay's certificate without its private key fails.
#[derive(Debug)]
pub struct PinnedVerifier {
    expected: SpkiPin,
    provider: Arc<CryptoProvider>,
    /// Pin of the last certificate that did not match, for a precise error after the handshake.
    mismatch: Mutex<Option<SpkiPin>>,
}

impl PinnedVerifier {
    /// A verifier for one expected pin.
    pub fn new(expected: SpkiPin) -> Self {
        Self {
            expected,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            mismatch: Mutex::new(None),
        }
    }

    /// The pin presented by a server that failed the check, if one did.
    pub fn mismatch(&self) -> Option<SpkiPin> {
        self.mismatch.lock().ok().and_then(|m| *m)
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = spki_pin_of_certificate(end_entity).ok_or(
            rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
        )?;
        if presented == self.expected {
            return Ok(ServerCertVerified::assertion());
        }
        if let Ok(mut slot) = self.mismatch.lock() {
            *slot = Some(presented);
        }
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS 1.3-only client configuration that trusts exactly `verifier`'s pin and sends no SNI.
pub fn client_config(verifier: Arc<PinnedVerifier>) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.enable_sni = false;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_certificate_has_no_pin() {
        assert_eq!(spki_pin_of_certificate(b"not a certificate"), None);
        assert_eq!(spki_pin_of_certificate(&[]), None);
    }

    #[test]
    fn unparseable_certificate_is_rejected_not_accepted() {
        let v = PinnedVerifier::new(SpkiPin::from_bytes([1; 32]));
        let name = ServerName::try_from("relay.invalid").unwrap();
        let r = v.verify_server_cert(
            &CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
            &[],
            &name,
            &[],
            UnixTime::now(),
        );
        assert!(r.is_err());
        assert_eq!(v.mismatch(), None);
    }
}
