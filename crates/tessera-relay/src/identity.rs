//! The relay's TLS identity: a long-lived key in the data directory and a certificate over it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, KeyPair, PublicKeyData as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tessera_proto::SpkiPin;

use crate::RelayError;

const KEY_FILE: &str = "relay-key.pem";
const CERT_FILE: &str = "relay-cert.pem";

/// The relay's key, its certificate and the pin users verify.
pub struct RelayIdentity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    pin: SpkiPin,
}

impl std::fmt::Debug for RelayIdentity {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayIdentity")
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl RelayIdentity {
    /// Loads the key from `data_dir`, creating the directory and a new key on first start, and
    /// issues a fresh self-signed certificate over it (the pin depends only on the key).
    pub fn load_or_create(data_dir: &Path) -> Result<Self, RelayError> {
        create_private_dir(data_dir)?;
        let key_path = data_dir.join(KEY_FILE);
        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem) => KeyPair::from_pem(&pem).map_err(|e| RelayError::KeyUnusable {
                path: key_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = KeyPair::generate().map_err(|e| RelayError::CertGen(e.to_string()))?;
                write_private_file(&key_path, key.serialize_pem().as_bytes())?;
                tracing::info!("created a new relay key");
                key
            }
            Err(source) => {
                return Err(RelayError::DataDir {
                    path: key_path,
                    source,
                });
            }
        };

        let params = CertificateParams::new(vec!["tessera-relay".to_string()])
            .map_err(|e| RelayError::CertGen(e.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| RelayError::CertGen(e.to_string()))?;
        // The certificate is public; it is written for operators who want to inspect it.
        let cert_path = data_dir.join(CERT_FILE);
        std::fs::write(&cert_path, cert.pem()).map_err(|source| RelayError::DataDir {
            path: cert_path,
            source,
        })?;

        Ok(Self {
            pin: SpkiPin::of_spki_der(&key.subject_public_key_info()),
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// The pin clients verify: SHA-256 of the certificate's SubjectPublicKeyInfo.
    pub fn pin(&self) -> SpkiPin {
        self.pin
    }

    /// A rustls server configuration (TLS 1.3 only, HTTP/1.1 via ALPN) for this identity.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, RelayError> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| RelayError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .map_err(|e| RelayError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), RelayError> {
    let err = |source| RelayError::DataDir {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Writes `bytes` to `path` readable by the owner only, atomically (temporary file + rename), so a
/// crash never leaves a half-written key behind.
fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), RelayError> {
    let tmp: PathBuf = path.with_extension("tmp");
    let err = |source| RelayError::DataDir {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_and_the_pin_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("relay");
        let first = RelayIdentity::load_or_create(&data).unwrap();
        let second = RelayIdentity::load_or_create(&data).unwrap();
        assert_eq!(first.pin(), second.pin());
        second.server_config().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&data), 0o700);
            assert_eq!(mode(&data.join(KEY_FILE)), 0o600);
        }
        let other = RelayIdentity::load_or_create(&dir.path().join("other")).unwrap();
        assert_ne!(first.pin(), other.pin());
    }

    #[test]
    fn damaged_key_is_an_error_and_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(KEY_FILE),
            "-----BEGIN PRIVATE KEY-----\ngarbage\n",
        )
        .unwrap();
        let e = RelayIdentity::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(e, RelayError::KeyUnusable { .. }), "{e}");
        let still = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        assert!(still.contains("garbage"));
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let id = RelayIdentity::load_or_create(dir.path()).unwrap();
        let shown = format!("{id:?}");
        assert!(!shown.contains("key:"), "{shown}");
        assert!(shown.contains(&id.pin().to_string()));
    }
}
