//! Two people chat end to end: two `tessera-cli` accounts (real SQLCipher vaults, real OS
//! keyring through Secret Service) and the real relay on loopback.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use tessera_e2e::cli::Cli;
use tessera_e2e::relay::Relay;

/// Alice and Bob with accounts on `relay`, contacts of each other ("bob" and "alice").
fn pair(root: &Path, relay: &str) -> (Cli, Cli) {
    let alice = Cli::new(&root.join("alice"));
    let bob = Cli::new(&root.join("bob"));
    alice.init(relay, "Alice");
    bob.init(relay, "Bob");
    let (ai, bi) = (alice.invite(), bob.invite());
    let added = alice.ok(&["contact", "add", &bi, "--name", "bob"]);
    assert_eq!(added["contact"]["state"], "requested");
    // Bob sees the request, then adds Alice's code: that accepts it.
    let events = bob.sync();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "contact_request" && e["name"] == "Alice"),
        "{events:?}"
    );
    let accepted = bob.ok(&["contact", "add", &ai, "--name", "alice"]);
    assert_eq!(accepted["contact"]["state"], "accepted");
    let events = alice.sync();
    assert!(
        events.iter().any(|e| e["event"] == "contact_accepted"),
        "{events:?}"
    );
    let list = alice.ok(&["contact", "list"]);
    assert_eq!(list["contacts"][0]["state"], "accepted");
    (alice, bob)
}

#[test]
fn chat_alice_and_bob_add_each_other_chat_both_ways_and_see_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let (alice, bob) = pair(dir.path(), &relay.address.to_string());

    let sent = alice.ok(&["send", "bob", "hello Bob, it's Alice"]);
    assert_eq!(sent["status"], "sent");
    let id = sent["message_id"].as_str().unwrap().to_string();
    let got = Cli::messages(&bob.sync());
    assert_eq!(got, vec![("alice".into(), "hello Bob, it's Alice".into())]);
    bob.ok(&["send", "alice", "hi Alice"]);
    let events = alice.sync();
    assert_eq!(
        Cli::messages(&events),
        vec![("bob".into(), "hi Alice".into())]
    );
    // Bob's device confirmed delivery of Alice's message.
    assert!(
        events.iter().any(|e| e["event"] == "status"
            && e["message_id"] == id.as_str()
            && e["status"] == "delivered"),
        "{events:?}"
    );
    // Bob reads the conversation: Alice gets the read receipt.
    let history = bob.ok(&["history", "alice"]);
    let bodies: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["hello Bob, it's Alice", "hi Alice"]);
    alice.sync();
    let mine = alice.ok(&["history", "bob"]);
    let first = &mine["messages"][0];
    assert_eq!(first["message_id"], id.as_str());
    assert_eq!(first["status"], "read");

    // Search, safety numbers (the same on both sides) and verification.
    let hits = alice.ok(&["search", "ALICE"]);
    assert_eq!(hits["messages"].as_array().unwrap().len(), 2);
    let a = alice.ok(&["safety-number", "bob"]);
    let b = bob.ok(&["safety-number", "alice"]);
    assert_eq!(a["safety_number"], b["safety_number"]);
    assert_eq!(a["verified"], false);
    alice.ok(&["verify", "bob"]);
    assert_eq!(alice.ok(&["safety-number", "bob"])["verified"], true);
}

#[test]
fn chat_bob_offline_gets_100_messages_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let (alice, bob) = pair(dir.path(), &relay.address.to_string());
    for n in 0..100 {
        alice.ok(&["send", "bob", &format!("message {n:03}")]);
    }
    let got = Cli::messages(&bob.sync());
    let expected: Vec<(String, String)> = (0..100)
        .map(|n| ("alice".to_string(), format!("message {n:03}")))
        .collect();
    assert_eq!(got, expected);
    // Nothing comes twice.
    assert!(Cli::messages(&bob.sync()).is_empty());
    let history = bob.ok(&["history", "alice", "--limit", "500"]);
    assert_eq!(history["messages"].as_array().unwrap().len(), 100);
}

#[test]
fn chat_kill_9_with_50_messages_in_the_outbox_then_all_arrive_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = tessera_e2e::free_port();
    let data = dir.path().join("relay");
    let relay = Relay::start_on(&data, port, &[]);
    let (alice, bob) = pair(dir.path(), &relay.address.to_string());

    // The relay goes away: each send succeeds at once and reports its message queued.
    drop(relay);
    for n in 0..50 {
        let o = alice.ok(&["send", "bob", &format!("queued {n:02}")]);
        assert_eq!(o["status"], "pending", "{o}");
    }
    let history = alice.ok(&["history", "bob", "--limit", "500"]);
    let pending = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["status"] == "pending")
        .count();
    assert_eq!(pending, 50);
    // Alice's client starts flushing as the relay returns and is killed -9 mid-way.
    let _relay = Relay::start_on(&data, port, &[]);
    let mut listen = alice
        .command(&["listen"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    listen.kill().unwrap();
    listen.wait().unwrap();
    // Restarted, it sends what is left.
    alice.sync();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < 50 && Instant::now() < deadline {
        got.extend(Cli::messages(&bob.sync()));
    }
    let bodies: Vec<String> = got.into_iter().map(|(_, b)| b).collect();
    let distinct: HashSet<&String> = bodies.iter().collect();
    assert_eq!(distinct.len(), 50, "{bodies:?}");
    assert_eq!(bodies.len(), 50, "a message was shown twice: {bodies:?}");
    let expected: Vec<String> = (0..50).map(|n| format!("queued {n:02}")).collect();
    assert_eq!(bodies, expected, "in order");
}

fn vault_id_hex(dir: &Path) -> String {
    let key = std::fs::read(dir.join("vault.key")).unwrap();
    key[5..21].iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn chat_vault_holds_no_plaintext_and_refuses_bad_factors_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let (alice, bob) = pair(dir.path(), &relay.address.to_string());
    let secret = "rendezvous at the old mill 4e1c";
    alice.ok(&["send", "bob", secret]);
    bob.sync();
    for who in [&alice, &bob] {
        for entry in std::fs::read_dir(&who.dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for needle in [secret.as_bytes(), b"Alice", b"SQLite format 3"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "plaintext {:?} in {}",
                    String::from_utf8_lossy(needle),
                    who.dir.display()
                );
            }
        }
    }

    // Wrong password: typed error, nothing opened.
    let mut wrong = Cli::new(&alice.dir);
    wrong.password = "not the password".into();
    let o = wrong.run(&["contact", "list"]);
    assert!(!o.ok);
    assert_eq!(o.json["kind"], "wrong_password", "{}", o.stdout);

    // A tampered database: typed error, no panic.
    let db = alice.dir.join("vault.sqlite3");
    let original = std::fs::read(&db).unwrap();
    let mut bad = original.clone();
    bad[200] ^= 0x10;
    std::fs::write(&db, &bad).unwrap();
    let o = alice.run(&["contact", "list"]);
    assert!(!o.ok);
    assert_eq!(o.json["kind"], "vault_damaged", "{}", o.stdout);
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    // Truncated.
    std::fs::write(&db, &original[..original.len() / 3]).unwrap();
    let o = alice.run(&["history", "bob"]);
    assert!(!o.ok);
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    std::fs::write(&db, &original).unwrap();
    assert!(alice.run(&["contact", "list"]).ok);

    // The device secret removed from the OS keyring: a clear error, not "wrong password".
    let user = format!("vault-{}", vault_id_hex(&bob.dir));
    let cleared = std::process::Command::new("secret-tool")
        .args(["clear", "service", "tessera", "username", &user])
        .status()
        .unwrap();
    assert!(cleared.success());
    let o = bob.run(&["contact", "list"]);
    assert!(!o.ok);
    assert_eq!(o.json["kind"], "device_secret_missing", "{}", o.stdout);
}

#[test]
fn chat_a_relay_with_another_key_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let other = Relay::start(&dir.path().join("other"));
    // Right host and port, the pin of another relay's key.
    let wrong = format!(
        "tessera://{}/{}",
        relay.address.authority(),
        other.address.pin
    );
    let carol = Cli::new(&dir.path().join("carol"));
    let o = carol.run(&[
        "init",
        "--relay",
        &wrong,
        "--name",
        "Carol",
        "--kdf-memory-mib",
        "19",
        "--no-card",
        "--transport",
        "direct",
    ]);
    assert!(!o.ok);
    assert_eq!(o.json["kind"], "pin_mismatch", "{}", o.stdout);
    assert!(
        o.json["error"].as_str().unwrap().contains("pin"),
        "{}",
        o.stdout
    );
}

/// A relay that lies: TLS with its own (pinned) key, then answers every `FetchBundle` with
/// another account's keys, validly signed by that other account.
async fn lying_relay(substitute: &tessera_e2e::device::TestDevice) -> tessera_proto::RelayAddress {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tessera_proto::{Body, Frame};
    use tokio_tungstenite::tungstenite::Message;

    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pin =
        tessera_proto::SpkiPin::of_spki_der(&rcgen::PublicKeyData::subject_public_key_info(&key));
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (signed, _) = substitute.prekeys(0, &mut tessera_e2e::device::rng(77));
    let bundle = Body::Bundle {
        account_public: substitute.account.to_bytes(),
        device_certificate: substitute.certificate.to_bytes(),
        signed: signed.to_bytes(),
        one_time: None,
    };
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tls).await.unwrap();
        let challenge = Frame::reply(
            0,
            Body::Challenge {
                nonce: [1; 32],
                expires_at: u64::MAX,
            },
        );
        ws.send(Message::Binary(challenge.encode().unwrap().into()))
            .await
            .unwrap();
        while let Some(Ok(Message::Binary(b))) = ws.next().await {
            let Ok(f) = Frame::decode(&b) else { break };
            let reply = match f.body {
                Body::FetchBundle { .. } => Frame::reply(f.request_id, bundle.clone()),
                _ => Frame::reply(f.request_id, Body::Ok),
            };
            ws.send(Message::Binary(reply.encode().unwrap().into()))
                .await
                .unwrap();
        }
    });
    format!("tessera://127.0.0.1:{port}/{pin}").parse().unwrap()
}

#[tokio::test]
async fn chat_an_invite_whose_fingerprint_does_not_match_the_relays_bundle_is_refused() {
    use tessera_e2e::device::TestDevice;
    let bob = TestDevice::new(31);
    let mallory = TestDevice::new(32);
    let addr = lying_relay(&mallory).await;
    let (client, _pushes) =
        tessera_net::RelayClient::connect(&addr, &tessera_net::Transport::Direct)
            .await
            .unwrap();
    // Alice holds Bob's invite (Bob's account id); the relay hands out Mallory's keys.
    let err = client
        .fetch_bundle(&bob.account.account_id(), 1, tessera_e2e::device::now_ms())
        .await
        .unwrap_err();
    assert!(
        matches!(err, tessera_net::ClientError::WrongAccount),
        "substituted keys were accepted: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_engine_lock_drops_access_and_unlock_restores_the_same_account() {
    use std::sync::Arc;
    use tessera_core::{CoreError, CreateOptions, Engine, KdfParams, OsKeyring};
    use zeroize::Zeroizing;

    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let data = dir.path().join("erin");
    let engine = Engine::create(
        CreateOptions {
            dir: data.clone(),
            password: Zeroizing::new(b"erin's password".to_vec()),
            relay: relay.address.clone(),
            name: "Erin".into(),
            transport: tessera_core::TransportConfig::Direct,
            kdf: KdfParams::MINIMUM,
            card: None,
        },
        Arc::new(OsKeyring),
    )
    .await
    .unwrap();
    let id = engine.account_id().unwrap();
    assert!(engine.is_unlocked());
    engine.lock();
    assert!(!engine.is_unlocked());
    assert!(matches!(engine.contacts(), Err(CoreError::Locked)));
    assert!(matches!(engine.invite(), Err(CoreError::Locked)));

    let wrong = Engine::unlock(
        &data,
        Zeroizing::new(b"guess".to_vec()),
        Arc::new(OsKeyring),
        None,
    )
    .await;
    assert!(matches!(
        wrong,
        Err(CoreError::Vault(tessera_store::VaultError::WrongFactor))
    ));
    let again = Engine::unlock(
        &data,
        Zeroizing::new(b"erin's password".to_vec()),
        Arc::new(OsKeyring),
        None,
    )
    .await
    .unwrap();
    assert_eq!(again.account_id().unwrap(), id);
    // Logged in with the device key kept in the vault.
    again.connect().await.unwrap();
}

#[test]
fn chat_history_pages_back_and_prekeys_are_topped_up_when_the_relay_asks() {
    let dir = tempfile::tempdir().unwrap();
    // Low-water mark above a full batch: the relay asks for more prekeys at every login.
    let relay = Relay::start_configured(
        &dir.path().join("relay"),
        "[limits]\nprekey_low_water = 101\n",
    );
    let (alice, bob) = pair(dir.path(), &relay.address.to_string());
    let events = bob.sync();
    assert!(
        events.iter().any(|e| e["event"] == "prekeys_refilled"),
        "{events:?}"
    );
    // A new contact can still start a session with Bob from the refilled batch.
    let carol = Cli::new(&dir.path().join("carol"));
    carol.init(&relay.address.to_string(), "Carol");
    carol.ok(&["contact", "add", &bob.invite(), "--name", "bob"]);
    let events = bob.sync();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "contact_request" && e["name"] == "Carol"),
        "{events:?}"
    );

    for n in 0..12 {
        alice.ok(&["send", "bob", &format!("page test {n:02}")]);
    }
    bob.sync();
    let page = |before: Option<i64>| {
        let mut args = vec!["history", "alice", "--limit", "5"];
        let b;
        if let Some(r) = before {
            b = r.to_string();
            args.extend(["--before", b.as_str()]);
        }
        let v = bob.ok(&args);
        v["messages"].as_array().unwrap().clone()
    };
    let newest = page(None);
    let older = page(newest[0]["row"].as_i64());
    let oldest = page(older[0]["row"].as_i64());
    let bodies: Vec<&str> = oldest
        .iter()
        .chain(older.iter())
        .chain(newest.iter())
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..12).map(|n| format!("page test {n:02}")).collect();
    assert_eq!(oldest.len(), 2);
    assert_eq!(bodies, expected);
}

#[test]
fn chat_listen_reconnects_after_the_relay_restarts() {
    use std::io::{BufRead as _, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let port = tessera_e2e::free_port();
    let data = dir.path().join("relay");
    let relay = Relay::start_on(&data, port, &[]);
    let (alice, bob) = pair(dir.path(), &relay.address.to_string());
    let mut listen = bob
        .command(&["listen"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = listen.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let wait_for = |what: &str, body: Option<&str>| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(v) = rx.recv_timeout(Duration::from_millis(200))
                && v["event"] == what
                && body.is_none_or(|b| v["body"] == b)
            {
                return;
            }
        }
        panic!("no {what} event within 30 s");
    };
    wait_for("connected", None);
    alice.ok(&["send", "bob", "before the restart"]);
    wait_for("message", Some("before the restart"));
    // The relay goes down and comes back at the same address; listen reconnects by itself.
    drop(relay);
    wait_for("disconnected", None);
    let _relay = Relay::start_on(&data, port, &[]);
    wait_for("connected", None);
    alice.ok(&["send", "bob", "after the restart"]);
    wait_for("message", Some("after the restart"));
    let _ = listen.kill();
    let _ = listen.wait();
}

#[test]
fn card_verify_sun_reports_uid_counter_validity_and_file_data() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::new(dir.path());
    // AN12196's SUN example with encrypted file data (all-zero keys).
    let zero = "00000000000000000000000000000000";
    let v = cli.ok(&[
        "card",
        "verify-sun",
        "--meta-key",
        zero,
        "--file-key",
        zero,
        "--picc",
        "FD91EC264309878BE6345CBE53BADF40",
        "--cmac",
        "ECC1E7F6C6C73BF6",
        "--enc",
        "CEE9A53E3E463EF1F459635736738962",
        "--mac-input",
        "CEE9A53E3E463EF1F459635736738962&cmac=",
    ]);
    assert_eq!(v["uid"], "04958caa5c5e80");
    assert_eq!(v["counter"], 8);
    assert_eq!(v["valid"], true);
    assert_eq!(v["file_data"], "78787878787878787878787878787878");
    // Empty MAC input (the default) and a tampered MAC.
    let ok = cli.ok(&[
        "card",
        "verify-sun",
        "--meta-key",
        zero,
        "--file-key",
        zero,
        "--picc",
        "EF963FF7828658A599F3041510671E88",
        "--cmac",
        "94EED9EE65337086",
    ]);
    assert_eq!(
        (ok["counter"].as_u64(), ok["valid"].as_bool()),
        (Some(61), Some(true))
    );
    let bad = cli.run(&[
        "card",
        "verify-sun",
        "--meta-key",
        zero,
        "--file-key",
        zero,
        "--picc",
        "EF963FF7828658A599F3041510671E88",
        "--cmac",
        "94EED9EE65337087",
    ]);
    assert!(!bad.ok);
    assert!(bad.stdout.contains("\"valid\":false"), "{}", bad.stdout);
    let garbage = cli.run(&[
        "card",
        "verify-sun",
        "--meta-key",
        "zz",
        "--file-key",
        zero,
        "--picc",
        "00",
        "--cmac",
        "00",
    ]);
    assert!(!garbage.ok);
    assert!(!garbage.stderr.contains("panicked"));
}

/// The message whose id is `id` in `history --json` output.
fn in_history(history: &serde_json::Value, id: &str) -> serde_json::Value {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == id)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// docs/message-actions.md through the CLI and the real relay: a reply, an edit, a reaction
/// changed and removed, and a delete for everyone reach the other side; the deleted text is
/// gone from history and search on both sides; someone else's message cannot be edited.
#[test]
fn chat_reply_edit_react_and_delete_for_everyone_reach_the_other_side() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let (alice, bob) = pair(dir.path(), &relay.address.to_string());

    let question = alice.ok(&["send", "bob", "lunch at noon?"]);
    let q = question["message_id"].as_str().unwrap().to_string();
    bob.sync();
    // Bob replies to it; Alice sees the reply naming the question.
    let answer = bob.ok(&["send", "alice", "yes, at the usual place", "--reply-to", &q]);
    let a = answer["message_id"].as_str().unwrap().to_string();
    alice.sync();
    let history = alice.ok(&["history", "bob"]);
    assert_eq!(
        in_history(&history, &a)["reply_to"],
        q.as_str(),
        "{history}"
    );
    // A reply to a message that is not in the conversation is refused.
    let o = bob.run(&["send", "alice", "x", "--reply-to", &"ab".repeat(16)]);
    assert_eq!(o.json["kind"], "unknown_message", "{}", o.stdout);

    // Alice edits her question; Bob sees the new text, marked edited, and only it is found.
    let edited = alice.ok(&["edit", &q, "lunch at one?"]);
    assert_eq!(edited["body"], "lunch at one?");
    let events = bob.sync();
    assert!(
        events.iter().any(|e| e["event"] == "message_changed"
            && e["message_id"] == q.as_str()
            && e["body"] == "lunch at one?"),
        "{events:?}"
    );
    let history = bob.ok(&["history", "alice"]);
    let m = in_history(&history, &q);
    assert_eq!(m["body"], "lunch at one?", "{history}");
    assert!(m["edited"].is_number(), "{history}");
    assert!(
        bob.ok(&["search", "noon"])["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Bob cannot edit Alice's message.
    let o = bob.run(&["edit", &q, "hijacked"]);
    assert_eq!(o.json["kind"], "not_editable", "{}", o.stdout);

    // Bob reacts, changes his reaction, Alice sees the last one; then he removes it.
    bob.ok(&["react", &q, "👍"]);
    bob.ok(&["react", &q, "🎉"]);
    alice.sync();
    let history = alice.ok(&["history", "bob"]);
    let reactions = &in_history(&history, &q)["reactions"];
    assert_eq!(reactions.as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(reactions[0]["emoji"], "🎉", "{history}");
    bob.ok(&["react", &q, "--remove"]);
    alice.sync();
    let history = alice.ok(&["history", "bob"]);
    assert_eq!(in_history(&history, &q)["reactions"], serde_json::json!([]));
    let o = bob.run(&["react", &q, "not one"]);
    assert_eq!(o.json["kind"], "bad_reaction", "{}", o.stdout);

    // Alice deletes a message for everyone: both sides keep only "message deleted", and
    // neither finds its words any more.
    let secret = alice.ok(&["send", "bob", "the door code is 80417"]);
    let s = secret["message_id"].as_str().unwrap().to_string();
    bob.sync();
    assert_eq!(
        bob.ok(&["search", "80417"])["messages"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    alice.ok(&["delete", &s, "--everyone"]);
    let events = bob.sync();
    assert!(
        events.iter().any(|e| e["event"] == "message_changed"
            && e["message_id"] == s.as_str()
            && e["kind"] == "deleted"),
        "{events:?}"
    );
    for (who, name) in [(&alice, "bob"), (&bob, "alice")] {
        let history = who.ok(&["history", name]);
        let m = in_history(&history, &s);
        assert_eq!(
            (m["kind"].as_str(), m["body"].as_str()),
            (Some("deleted"), Some(""))
        );
        assert!(!history.to_string().contains("80417"));
        assert!(
            who.ok(&["search", "80417"])["messages"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }
    // Delete for me: gone here only.
    alice.ok(&["delete", &a]);
    assert!(in_history(&alice.ok(&["history", "bob"]), &a).is_null());
    assert!(!in_history(&bob.ok(&["history", "alice"]), &a).is_null());
}

/// docs/disappearing.md through the CLI and the real relay: Alice sets a 30 s timer (both
/// sides see the notice), her next message is read by Bob at t; by t + 31 s it is gone from
/// both vaults' history and search. Every CLI run is a new process, so the removal does not
/// depend on an app left running (killed and restarted in between).
#[test]
fn chat_a_30_second_timer_removes_a_read_message_from_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let (alice, bob) = pair(dir.path(), &relay.address.to_string());

    let set = alice.ok(&["timer", "bob", "30s"]);
    assert_eq!(set["seconds"], 30, "{set}");
    let o = alice.run(&["timer", "bob", "7s"]);
    assert!(!o.ok, "{}", o.stdout);
    let events = bob.sync();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "message" && e["kind"] == "timer" && e["body"] == "30"),
        "{events:?}"
    );
    assert_eq!(bob.ok(&["timer", "alice"])["seconds"], 30);

    let sent = alice.ok(&["send", "bob", "this vanishes: 31337"]);
    let id = sent["message_id"].as_str().unwrap().to_string();
    bob.sync();
    // Unread, Bob's copy waits; reading it starts its 30 s.
    let read_at = Instant::now();
    let history = bob.ok(&["history", "alice"]);
    let m = in_history(&history, &id);
    assert_eq!(m["body"], "this vanishes: 31337", "{history}");
    assert_eq!(m["expires_in"], 30, "{history}");
    // Shown unread (its countdown not started); the same command marked it read.
    assert!(m["expire_at"].is_null(), "{history}");
    let history = bob.ok(&["history", "alice"]);
    assert!(
        in_history(&history, &id)["expire_at"].is_number(),
        "{history}"
    );
    assert_eq!(
        bob.ok(&["search", "31337"])["messages"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // The notices stay; a message sent with the timer off again would stay too.
    std::thread::sleep(Duration::from_secs(31).saturating_sub(read_at.elapsed()));
    for (who, name) in [(&alice, "bob"), (&bob, "alice")] {
        let history = who.ok(&["history", name]);
        assert!(in_history(&history, &id).is_null(), "{history}");
        assert!(!history.to_string().contains("31337"), "{history}");
        assert!(
            who.ok(&["search", "31337"])["messages"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert!(
            history["messages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["kind"] == "timer"),
            "{history}"
        );
    }
    alice.ok(&["timer", "bob", "off"]);
    let kept = alice.ok(&["send", "bob", "this one stays"]);
    let history = alice.ok(&["history", "bob"]);
    assert!(in_history(&history, kept["message_id"].as_str().unwrap())["expires_in"].is_null());
}

/// docs/conversations.md through the CLI and the real relay: a blocked contact's next message
/// does not appear and its copy never reaches "delivered"; unblocking restores delivery of new
/// messages; with read receipts off at one side, neither side shows "read".
#[test]
fn chat_blocking_drops_messages_without_receipts_and_read_receipts_off_hides_read() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let (alice, bob) = pair(dir.path(), &relay.address.to_string());

    alice.ok(&["contact", "block", "bob"]);
    let list = alice.ok(&["contact", "list"]);
    assert_eq!(list["contacts"][0]["blocked"], true, "{list}");
    let o = alice.run(&["send", "bob", "x"]);
    assert_eq!(o.json["kind"], "blocked", "{}", o.stdout);
    let dropped = bob.ok(&["send", "alice", "you will not see this"]);
    let d = dropped["message_id"].as_str().unwrap().to_string();
    let events = alice.sync();
    assert!(Cli::messages(&events).is_empty(), "{events:?}");
    bob.sync();
    let history = bob.ok(&["history", "alice"]);
    assert_eq!(in_history(&history, &d)["status"], "sent", "{history}");

    alice.ok(&["contact", "unblock", "bob"]);
    let kept = bob.ok(&["send", "alice", "and this you see"]);
    let k = kept["message_id"].as_str().unwrap().to_string();
    assert_eq!(
        Cli::messages(&alice.sync()),
        vec![("bob".into(), "and this you see".into())]
    );
    bob.sync();
    let history = bob.ok(&["history", "alice"]);
    assert_eq!(in_history(&history, &k)["status"], "delivered", "{history}");
    assert_eq!(in_history(&history, &d)["status"], "sent", "{history}");
    assert!(in_history(&alice.ok(&["history", "bob"]), &d).is_null());

    // Read receipts off at Alice: Bob's message read by her stays "delivered" for him, and
    // hers read by Bob stays "delivered" for her.
    assert_eq!(alice.ok(&["read-receipts", "off"])["read_receipts"], "off");
    let hers = alice.ok(&["send", "bob", "read me"]);
    let h = hers["message_id"].as_str().unwrap().to_string();
    let his = bob.ok(&["send", "alice", "read me too"]);
    let b = his["message_id"].as_str().unwrap().to_string();
    alice.sync();
    alice.ok(&["history", "bob"]);
    bob.sync();
    bob.ok(&["history", "alice"]);
    alice.sync();
    bob.sync();
    assert_eq!(
        in_history(&alice.ok(&["history", "bob"]), &h)["status"],
        "delivered"
    );
    assert_eq!(
        in_history(&bob.ok(&["history", "alice"]), &b)["status"],
        "delivered"
    );
    // On again: Bob's next read shows.
    alice.ok(&["read-receipts", "on"]);
    let again = alice.ok(&["send", "bob", "now read me"]);
    let a = again["message_id"].as_str().unwrap().to_string();
    bob.sync();
    bob.ok(&["history", "alice"]);
    alice.sync();
    assert_eq!(
        in_history(&alice.ok(&["history", "bob"]), &a)["status"],
        "read"
    );

    // A conversation's own settings, then deleting it here, then removing the contact.
    assert_eq!(alice.ok(&["conversation", "pin", "bob"])["pinned"], true);
    let muted = alice.ok(&["conversation", "mute", "bob", "--for", "8h"]);
    assert_eq!(muted["muted"], true, "{muted}");
    assert!(
        !alice
            .run(&["conversation", "mute", "bob", "--for", "30s"])
            .ok
    );
    assert_eq!(
        alice.ok(&["conversation", "unread", "bob"])["marked_unread"],
        true
    );
    alice.ok(&["history", "bob"]);
    let shown = alice.ok(&["conversation", "show", "bob"]);
    assert_eq!(
        (&shown["pinned"], &shown["muted"], &shown["marked_unread"]),
        (
            &serde_json::json!(true),
            &serde_json::json!(true),
            &serde_json::json!(false)
        ),
        "{shown}"
    );
    alice.ok(&["conversation", "delete", "bob"]);
    assert_eq!(
        alice.ok(&["history", "bob"])["messages"],
        serde_json::json!([])
    );
    assert!(
        alice.ok(&["search", "read"])["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    alice.ok(&["contact", "remove", "bob"]);
    assert_eq!(
        alice.ok(&["contact", "list"])["contacts"],
        serde_json::json!([])
    );
}

/// docs/conversations.md, "Note to self", through the CLI: `self` names it; a note is kept
/// (status sent, nothing waits for a relay), found by history and search, takes edits, a
/// timer and settings, and is its own conversation.
#[test]
fn chat_the_note_to_self_keeps_notes_here() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let alice = Cli::new(&dir.path().join("alice"));
    alice.init(&relay.address.to_string(), "Alice");

    let note = alice.ok(&["send", "self", "passport renewal: form B12"]);
    assert_eq!(note["status"], "sent", "{note}");
    let id = note["message_id"].as_str().unwrap().to_string();
    alice.ok(&["edit", &id, "passport renewal: form B14"]);
    let timer = alice.ok(&["timer", "self", "1w"]);
    assert_eq!(timer["timer"], "1w", "{timer}");
    let later = alice.ok(&["send", "self", "call the embassy"]);
    let pinned = alice.ok(&["conversation", "pin", "self"]);
    assert_eq!(pinned["pinned"], true, "{pinned}");

    let history = alice.ok(&["history", "self"]);
    let m = in_history(&history, &id);
    assert_eq!(m["body"], "passport renewal: form B14", "{history}");
    assert!(m["edited"].is_number(), "{history}");
    let l = in_history(&history, later["message_id"].as_str().unwrap());
    assert_eq!(l["expires_in"], 604_800, "{history}");
    let found = alice.ok(&["search", "embassy"]);
    assert_eq!(
        found["messages"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    // Nothing was queued for anyone.
    let events = alice.sync();
    assert!(
        events.iter().all(|e| e["event"] == "connected"),
        "{events:?}"
    );
    // A contact named by its own name is not the note to self.
    let o = alice.run(&["contact", "block", "self"]);
    assert_eq!(o.json["kind"], "unknown_contact", "{}", o.stdout);

    alice.ok(&["conversation", "delete", "self"]);
    assert_eq!(
        alice.ok(&["history", "self"])["messages"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
}

/// docs/link-previews.md on the direct transport: previews are off by default; turned on, a
/// text with a link is still sent, without a preview, and the site is never contacted — there
/// is no way around Tor.
#[test]
fn chat_link_previews_are_off_by_default_and_never_fetched_without_tor() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let (alice, bob) = pair(dir.path(), &relay.address.to_string());
    let site = tessera_e2e::site::Site::start(
        dir.path(),
        "<head><meta property='og:title' content='The ridge trail'></head>",
    );
    let link = site.link("/trail");

    assert_eq!(alice.ok(&["link-previews"])["link_previews"], "off");
    let sent = alice.ok(&["send", "bob", &format!("off: {link}")]);
    assert!(sent["preview"].is_null(), "{sent}");
    assert!(sent["preview_error"].is_null(), "{sent}");

    assert_eq!(alice.ok(&["link-previews", "on"])["link_previews"], "on");
    let sent = alice.ok(&["send", "bob", &format!("on: {link}")]);
    assert_eq!(sent["preview_error"]["kind"], "preview_needs_tor", "{sent}");
    assert!(sent["preview"].is_null(), "{sent}");
    assert_eq!(sent["status"], "sent", "the text went anyway: {sent}");
    let got = Cli::messages(&bob.sync());
    assert_eq!(got.len(), 2, "{got:?}");
    let history = bob.ok(&["history", "alice"]);
    assert!(
        history["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["preview"].is_null()),
        "{history}"
    );
    assert_eq!(site.requests(), 0, "nothing was fetched outside Tor");
}

/// docs/attachments.md through the CLI and the real relay: Alice sends a 3 MiB file; Bob's
/// `sync` downloads and checks it; `attachment save` writes the same bytes; neither data
/// directory nor the relay's holds the file's plaintext; after Bob's fetch the relay holds no
/// blob; deleting the message here deletes the blob file.
#[test]
fn chat_a_file_arrives_intact_and_stays_encrypted_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let (alice, bob) = pair(dir.path(), &relay.address.to_string());
    let marker = b"PTARMIGAN-FILE-MARKER";
    let mut file: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect();
    for at in (0..file.len() - marker.len()).step_by(100_000) {
        file[at..at + marker.len()].copy_from_slice(marker);
    }
    let path = dir.path().join("trail map.pdf");
    std::fs::write(&path, &file).unwrap();

    let sent = alice.ok(&["send", "bob", "the map", "--file", path.to_str().unwrap()]);
    assert_eq!(sent["status"], "sent", "{sent}");
    assert_eq!(sent["attachment"]["state"], "uploaded", "{sent}");
    let id = sent["message_id"].as_str().unwrap().to_string();
    let events = bob.sync();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "message" && e["kind"] == "attachment"),
        "{events:?}"
    );
    let history = bob.ok(&["history", "alice"]);
    let m = in_history(&history, &id);
    assert_eq!(m["body"], "the map", "{history}");
    assert_eq!(m["attachment"]["name"], "trail map.pdf", "{history}");
    assert_eq!(m["attachment"]["mime"], "application/pdf", "{history}");
    assert_eq!(m["attachment"]["state"], "downloaded", "{history}");
    let saved = dir.path().join("saved.pdf");
    bob.ok(&["attachment", "save", &id, saved.to_str().unwrap()]);
    assert!(std::fs::read(&saved).unwrap() == file, "the same bytes");

    // No plaintext at rest: both data directories and the relay's.
    for root in [&alice.dir, &bob.dir, &dir.path().join("relay")] {
        for f in files(root) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker),
                "plaintext in {}",
                f.display()
            );
        }
    }
    // Bob was its only fetch: the relay deleted the blob.
    let relay_blobs = files(&dir.path().join("relay").join("blobs"));
    assert!(relay_blobs.is_empty(), "{relay_blobs:?}");
    // Deleted here, the blob file goes too.
    let blobs = |who: &tessera_e2e::cli::Cli| files(&who.dir.join("attachments")).len();
    assert_eq!(blobs(&bob), 1);
    bob.ok(&["delete", &id]);
    assert_eq!(blobs(&bob), 0);
    // A message id without a file.
    let o = bob.run(&[
        "attachment",
        "save",
        &"ab".repeat(16),
        saved.to_str().unwrap(),
    ]);
    assert_eq!(o.json["kind"], "unknown_message", "{}", o.stdout);
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
