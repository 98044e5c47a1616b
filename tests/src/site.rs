//! A web site on loopback over TLS, for link previews (`docs/link-previews.md`) and updates
//! (`docs/updates.md`): its own certificate authority (written where `SSL_CERT_FILE` can name
//! it), one page or a set of files by path, and a count of the requests it answered.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What a site answers for a path: `(content type, body)`, or `None` for 404.
pub type Routes = Arc<Mutex<HashMap<String, (String, Vec<u8>)>>>;

/// A running site; it stops with the test process.
pub struct Site {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// A PEM file with the authority that signed its certificate.
    pub ca_file: PathBuf,
    requests: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Site {
    /// Serves `html` on 127.0.0.1 (any path) with a certificate for 127.0.0.1 that only the
    /// authority in [`Site::ca_file`] (written into `dir`) signed.
    pub fn start(dir: &Path, html: &str) -> Self {
        let page = (
            "text/html; charset=utf-8".to_string(),
            html.as_bytes().to_vec(),
        );
        Self::serve(dir, Arc::new(move |_: &str| Some(page.clone())))
    }

    /// Serves the files in `routes` by path (the test may change them while it runs).
    pub fn files(dir: &Path, routes: Routes) -> Self {
        Self::serve(
            dir,
            Arc::new(move |path: &str| routes.lock().unwrap().get(path).cloned()),
        )
    }

    #[allow(clippy::type_complexity)]
    fn serve(
        dir: &Path,
        answer: Arc<dyn Fn(&str) -> Option<(String, Vec<u8>)> + Send + Sync>,
    ) -> Self {
        let ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut ca = ca;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Tessera test authority");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let ca_file = dir.join("site-ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();

        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![leaf_cert.der().clone()], key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = paths.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let (config, count, answer, seen) =
                    (config.clone(), count.clone(), answer.clone(), seen.clone());
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    // "GET /path HTTP/1.1": the path, without a query.
                    let line = String::from_utf8_lossy(&head);
                    let path = line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .split('?')
                        .next()
                        .unwrap_or("/")
                        .to_string();
                    seen.lock().unwrap().push(path.clone());
                    let (status, ctype, body) = match answer(&path) {
                        Some((ctype, body)) => ("200 OK", ctype, body),
                        None => ("404 Not Found", "text/plain".into(), b"not found".to_vec()),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = tls.write_all(head.as_bytes());
                    let _ = tls.write_all(&body);
                    let _ = tls.flush();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        Self {
            port,
            ca_file,
            requests,
            paths,
        }
    }

    /// How many requests it answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// How many requests for `path` it answered so far.
    pub fn requests_for(&self, path: &str) -> usize {
        self.paths
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }

    /// The link to `path` on it.
    pub fn link(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}
