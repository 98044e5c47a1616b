//! The relay binary on loopback: TLS with the printed pin, health, WebSocket, shutdown, bad input.

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt as _, StreamExt as _};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tessera_e2e::relay::{Relay, run_relay};
use tessera_net::{NetError, Transport};
use tessera_proto::{RelayAddress, SpkiPin};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn http_get(addr: &RelayAddress, path: &str) -> String {
    let mut tls = tessera_net::connect_tls(addr, &Transport::Direct)
        .await
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        addr.authority()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await.unwrap();
    reply
}

#[tokio::test]
async fn relay_answers_healthz_over_pinned_tls() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let reply = http_get(&relay.address, "/healthz").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nok"), "{reply}");
    let missing = http_get(&relay.address, "/no-such-path").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}

/// Accepts any certificate and remembers it: used only to see what the relay really serves.
#[derive(Debug, Default)]
struct Recorder(Mutex<Option<Vec<u8>>>);

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn relay_printed_pin_is_the_spki_hash_of_the_served_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));

    let recorder = Arc::new(Recorder::default());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(recorder.clone())
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(relay.address.authority())
        .await
        .unwrap();
    let name = ServerName::try_from("relay.test").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();

    let served = recorder
        .0
        .lock()
        .unwrap()
        .clone()
        .expect("no certificate recorded");
    let (_, cert) = x509_parser::parse_x509_certificate(&served).unwrap();
    let served_pin = SpkiPin::of_spki_der(cert.public_key().raw);
    assert_eq!(served_pin, relay.address.pin);
}

#[tokio::test]
async fn relay_with_a_wrong_pin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let mut wrong = relay.address.clone();
    let mut bytes = *wrong.pin.as_bytes();
    bytes[0] ^= 1;
    wrong.pin = SpkiPin::from_bytes(bytes);

    match tessera_net::connect_tls(&wrong, &Transport::Direct).await {
        Err(NetError::PinMismatch { presented }) => assert_eq!(presented, relay.address.pin),
        other => panic!("expected a pin mismatch, got {:?}", other.map(|_| ())),
    }
    let ws = tessera_net::connect_websocket(&wrong, &Transport::Direct).await;
    assert!(matches!(ws, Err(NetError::PinMismatch { .. })));
    // The relay keeps serving clients that hold the right pin.
    tessera_net::connect_tls(&relay.address, &Transport::Direct)
        .await
        .unwrap();

    // The CLI reports the mismatch and fails.
    let out = std::process::Command::new(tessera_e2e::bin_path("tessera-cli"))
        .args(["relay", "check", &wrong.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match the pin"));
    let ok = std::process::Command::new(tessera_e2e::bin_path("tessera-cli"))
        .args(["--json", "relay", "check", &relay.address.to_string()])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(json["ok"], true);
}

#[tokio::test]
async fn relay_accepts_websocket_upgrades_and_closes_on_an_undecodable_frame() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let mut ws = tessera_net::connect_websocket(&relay.address, &Transport::Direct)
        .await
        .unwrap();
    // The relay speaks first: the login challenge.
    match ws.next().await {
        Some(Ok(Message::Binary(b))) => assert!(matches!(
            tessera_proto::Frame::decode(&b).unwrap().body,
            tessera_proto::Body::Challenge { .. }
        )),
        other => panic!("expected the challenge, got {other:?}"),
    }
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    match ws.next().await {
        Some(Ok(Message::Binary(b))) => assert!(matches!(
            tessera_proto::Frame::decode(&b).unwrap().body,
            tessera_proto::Body::Error {
                code: tessera_proto::ErrorCode::Malformed,
                ..
            }
        )),
        other => panic!("expected an error frame, got {other:?}"),
    }
    match ws.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Policy),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn relay_stops_cleanly_on_sigterm_and_sigint_and_keeps_its_pin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let mut first = Relay::start(&data);
    // An open WebSocket must not keep the relay from stopping: it is told the relay is going away.
    let mut ws = tessera_net::connect_websocket(&first.address, &Transport::Direct)
        .await
        .unwrap();
    let status = first.process.stop_with("TERM");
    assert!(status.success(), "SIGTERM exit: {status}");
    // First the challenge, then an error frame saying why, then the close.
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => match tessera_proto::Frame::decode(&b).unwrap().body {
                tessera_proto::Body::Challenge { .. } => {}
                tessera_proto::Body::Error { code, .. } => {
                    assert_eq!(code, tessera_proto::ErrorCode::ShuttingDown)
                }
                other => panic!("unexpected frame {other:?}"),
            },
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(frame.code, CloseCode::Away);
                break;
            }
            other => panic!("expected a going-away close, got {other:?}"),
        }
    }

    let mut second = Relay::start(&data);
    assert_eq!(
        second.address.pin, first.address.pin,
        "the pin changed across a restart"
    );
    let status = second.process.stop_with("INT");
    assert!(status.success(), "SIGINT exit: {status}");
}

fn assert_clean_failure(out: &std::process::Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    assert!(!stderr.contains("panicked"), "panic trace: {stderr}");
    assert!(out.stdout.is_empty(), "printed an address despite failing");
}

#[test]
fn relay_bad_input_unknown_flag() {
    let out = run_relay(&["--no-such-flag"]);
    assert_clean_failure(&out, 2, "unexpected argument '--no-such-flag'");
}

#[test]
fn relay_bad_input_unreadable_or_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let out = run_relay(&["--config", missing.to_str().unwrap()]);
    assert_clean_failure(&out, 1, "cannot read config file");

    // A directory cannot be read as a file, even by root.
    let out = run_relay(&["--config", dir.path().to_str().unwrap()]);
    assert_clean_failure(&out, 1, "cannot read config file");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"not an address\"\n").unwrap();
    let out = run_relay(&["--config", bad.to_str().unwrap()]);
    assert_clean_failure(&out, 1, "invalid config file");

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "data-dir = \"/tmp/x\"\n").unwrap();
    let out = run_relay(&["--config", typo.to_str().unwrap()]);
    assert_clean_failure(&out, 1, "unknown field");
}

#[test]
fn relay_bad_input_port_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = dir.path().join("relay");
    let out = run_relay(&["--listen", &addr, "--data-dir", data.to_str().unwrap()]);
    assert_clean_failure(&out, 1, &format!("cannot listen on {addr}"));
}

#[test]
fn relay_config_file_is_used_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    let data = dir.path().join("from-file");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:0\"\ndata_dir = {:?}\npublic_host = \"relay.example.org\"\npublic_port = 443\n", data),
    )
    .unwrap();
    // The file alone is enough to start; the printed address uses its public host and port.
    let relay = Relay::start_with(
        &dir.path().join("from-flag"),
        &["--config", config.to_str().unwrap()],
    );
    assert_eq!(relay.address.authority(), "relay.example.org:443");
    // --data-dir given as a flag wins over data_dir in the file.
    assert!(dir.path().join("from-flag").join("relay-key.pem").is_file());
    assert!(!data.exists());
}

#[test]
fn relay_help_documents_flags_and_config_file() {
    let out = run_relay(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--listen",
        "--data-dir",
        "--config",
        "--public-host",
        "CONFIG FILE",
        "data_dir",
        "public_port",
        "--metrics-listen",
        "--log-format",
        "[mailbox]",
        "ttl_days",
        "[limits]",
        "requests_per_second",
        "connections_per_ip",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

/// Regression: the relay used to print its address before registering its signal handlers, so a
/// signal sent right after the address (by a supervisor or a script) killed it uncleanly.
#[test]
fn relay_regression_signal_right_after_the_address_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    for (i, signal) in ["INT", "TERM", "INT", "TERM", "INT", "TERM"]
        .iter()
        .enumerate()
    {
        let mut relay = Relay::start(&dir.path().join(format!("relay{i}")));
        let status = relay.process.stop_with(signal);
        assert!(status.success(), "SIG{signal} right after start: {status}");
    }
}
