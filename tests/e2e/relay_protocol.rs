//! Relay protocol v1 against the real relay binary: registration and login, prekeys, durable
//! mailboxes, limits, metrics, kill -9 and bad input.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt as _, StreamExt as _};
use tessera_e2e::device::{TestAccount, TestDevice, now_ms, rng};
use tessera_e2e::relay::Relay;
use tessera_net::{ClientError, Pushed, Pushes, RelayClient, Transport};
use tessera_proto::{Body, ErrorCode, Frame, MAX_FRAME_LEN, RelayAddress};
use tokio_tungstenite::tungstenite::Message;

/// An envelope as these tests send it: sender tag, sequence number, then filler up to `len`.
fn envelope(from: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut e = vec![from];
    e.extend_from_slice(&seq.to_be_bytes());
    e.resize(len.max(5), 0xab);
    e
}

fn parse(envelope: &[u8]) -> (u8, u32) {
    (
        envelope[0],
        u32::from_be_bytes(envelope[1..5].try_into().unwrap()),
    )
}

/// Sends envelopes `seqs` with up to `window` requests in flight; retries what the relay
/// rate-limits; returns the sequence numbers the relay accepted (stops at the first other
/// failure, e.g. the connection dropping).
async fn send_all(
    client: &RelayClient,
    to: &TestDevice,
    from: u8,
    seqs: impl IntoIterator<Item = u32>,
    window: usize,
    accepted_count: Option<&std::sync::atomic::AtomicUsize>,
) -> Vec<u32> {
    let account = to.account.account_id();
    let mut seqs = seqs.into_iter();
    let mut in_flight = FuturesUnordered::new();
    let mut accepted = Vec::new();
    let send = |seq: u32| async move {
        loop {
            match client
                .send(&account, to.device_id, envelope(from, seq, 1024))
                .await
            {
                Err(ClientError::Relay {
                    code: ErrorCode::RateLimited,
                    retry_after_ms,
                    ..
                }) => {
                    tokio::time::sleep(Duration::from_millis(retry_after_ms.into())).await;
                }
                other => return (seq, other),
            }
        }
    };
    let mut failed = false;
    loop {
        while !failed && in_flight.len() < window {
            match seqs.next() {
                Some(seq) => in_flight.push(send(seq)),
                None => break,
            }
        }
        let Some((seq, result)) = in_flight.next().await else {
            break;
        };
        match result {
            Ok(_) => {
                accepted.push(seq);
                if let Some(c) = accepted_count {
                    c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            Err(e) => {
                if !failed {
                    eprintln!("send_all: stopping after {} accepted: {e}", accepted.len());
                }
                failed = true;
            }
        }
    }
    accepted
}

/// The next push that is not a prekey warning (devices in these tests publish none).
async fn next_push(pushes: &mut Pushes, limit: Duration) -> Option<Pushed> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, pushes.recv()).await {
            Ok(Some(Pushed::PrekeysLow { .. })) => continue,
            Ok(p) => return p,
            Err(_) => return None,
        }
    }
}

/// Reads deliveries until `want` distinct envelopes have arrived, acknowledging each one;
/// returns every delivery in arrival order (duplicates included).
async fn receive(
    client: &RelayClient,
    pushes: &mut Pushes,
    want: usize,
    limit: Duration,
) -> Vec<(u8, u32)> {
    let mut all = Vec::new();
    let mut distinct = HashSet::new();
    let deadline = Instant::now() + limit;
    let mut acks = FuturesUnordered::new();
    while distinct.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let push = tokio::select! {
            p = tokio::time::timeout(left, pushes.recv()) => p,
            Some(r) = acks.next(), if !acks.is_empty() => {
                let r: Result<(), ClientError> = r;
                r.unwrap();
                continue;
            }
        };
        match push {
            Ok(Some(Pushed::Deliver {
                delivery_id,
                envelope,
            })) => {
                let id = parse(&envelope);
                all.push(id);
                distinct.insert(id);
                acks.push(client.ack(delivery_id));
            }
            Ok(Some(Pushed::PrekeysLow { .. })) => {}
            Ok(Some(other)) => panic!("unexpected push {other:?}"),
            Ok(None) => panic!("connection closed after {} envelopes", distinct.len()),
            Err(_) => panic!(
                "only {} of {want} envelopes arrived within {limit:?}",
                distinct.len()
            ),
        }
    }
    while let Some(r) = acks.next().await {
        r.unwrap();
    }
    all
}

fn in_order(deliveries: &[(u8, u32)], from: u8) -> bool {
    let seqs: Vec<u32> = deliveries
        .iter()
        .filter(|(f, _)| *f == from)
        .map(|(_, s)| *s)
        .collect();
    seqs.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_two_devices_exchange_1000_envelopes_each_way_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_configured(&dir.path().join("relay"), "");
    let alice = TestDevice::new(1);
    let bob = TestDevice::new(2);
    let (a, mut a_pushes) = alice.register(&relay.address).await;
    let (b, mut b_pushes) = bob.register(&relay.address).await;

    let (sent_ab, sent_ba, got_b, got_a) = tokio::join!(
        send_all(&a, &bob, b'a', 0..1000, 32, None),
        send_all(&b, &alice, b'b', 0..1000, 32, None),
        receive(&b, &mut b_pushes, 1000, Duration::from_secs(120)),
        receive(&a, &mut a_pushes, 1000, Duration::from_secs(120)),
    );
    assert_eq!(sent_ab.len(), 1000);
    assert_eq!(sent_ba.len(), 1000);
    let expect_b: Vec<_> = (0..1000).map(|s| (b'a', s)).collect();
    let expect_a: Vec<_> = (0..1000).map(|s| (b'b', s)).collect();
    assert_eq!(
        got_b, expect_b,
        "Bob got each of Alice's envelopes once, in order"
    );
    assert_eq!(
        got_a, expect_a,
        "Alice got each of Bob's envelopes once, in order"
    );

    // Everything was acknowledged, so nothing is left queued or delivered again.
    assert_eq!(
        relay.metric("tessera_relay_envelopes_accepted_total"),
        2000.0
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.metric("tessera_relay_queue_depth") != 0.0 {
        assert!(Instant::now() < deadline, "acks did not drain the queue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((a, b));
    let (_b2, mut again) = bob.login(&relay.address).await;
    assert_eq!(
        next_push(&mut again, Duration::from_millis(500)).await,
        None,
        "an acknowledged envelope was delivered again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_kill_9_during_a_burst_of_5000_loses_nothing_and_shows_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    // Rate limits raised: this test is about durability, not about limits.
    let config = "[limits]\nrequests_per_second = 100000\nrequest_burst = 100000\n";
    let mut relay = Relay::start_configured(&data, config);
    let alice = TestDevice::new(3);
    let bob = TestDevice::new(4);
    drop(alice.register(&relay.address).await);
    drop(bob.register(&relay.address).await);

    // Bob is offline. Alice bursts 5000 envelopes, 128 in flight; the relay is killed (-9)
    // once 1500 have been accepted.
    let (a, _a_pushes) = alice.login(&relay.address).await;
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let killer = {
        let count = count.clone();
        let pid = relay.process.pid();
        tokio::spawn(async move {
            while count.load(std::sync::atomic::Ordering::SeqCst) < 1500 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        })
    };
    let first = send_all(&a, &bob, b'a', 0..5000, 128, Some(&count)).await;
    killer.await.unwrap();
    let status = relay.process.wait_timeout(Duration::from_secs(10)).unwrap();
    assert!(!status.success(), "the relay was killed, not stopped");
    assert!(first.len() >= 1500 && first.len() < 5000, "{}", first.len());
    drop(a);

    // Restart on the same data: Alice re-sends everything the relay did not confirm.
    relay = Relay::start_configured(&data, config);
    let (a, _a_pushes) = alice.login(&relay.address).await;
    let confirmed: HashSet<u32> = first.iter().copied().collect();
    let rest: Vec<u32> = (0..5000).filter(|s| !confirmed.contains(s)).collect();
    let second = send_all(&a, &bob, b'a', rest.clone(), 128, None).await;
    assert_eq!(
        second.len(),
        rest.len(),
        "every re-sent envelope is accepted"
    );

    let (b, mut b_pushes) = bob.login(&relay.address).await;
    let got = receive(&b, &mut b_pushes, 5000, Duration::from_secs(180)).await;
    let distinct: HashSet<(u8, u32)> = got.iter().copied().collect();
    assert_eq!(distinct.len(), 5000, "every envelope arrived");
    for s in &first {
        assert!(distinct.contains(&(b'a', *s)), "accepted envelope {s} lost");
    }
    // Duplicates are only envelopes that were in flight, unconfirmed, when the relay died
    // (committed but not yet answered), and client-side de-duplication hides them.
    let duplicates = got.len() - distinct.len();
    assert!(duplicates <= 128, "{duplicates} duplicates");
    // Confirmed envelopes from before the crash arrive in the order they were sent.
    let before: Vec<(u8, u32)> = got
        .iter()
        .copied()
        .filter(|(_, s)| confirmed.contains(s))
        .collect();
    assert!(in_order(&before, b'a'));
    eprintln!(
        "kill -9 after {} confirmed; re-sent {}; {} duplicate deliveries",
        first.len(),
        rest.len(),
        duplicates
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_50_concurrent_bundle_fetches_never_return_a_one_time_prekey_twice() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_configured(&dir.path().join("relay"), "");
    let bob = TestDevice::new(5);
    let (b, mut b_pushes) = bob.register(&relay.address).await;
    let mut r = rng(55);
    let (signed, one_time) = bob.prekeys(40, &mut r);
    b.publish_prekeys(&signed, one_time).await.unwrap();

    // 50 devices of one account, each on its own connection, fetch at the same moment.
    let fetchers = TestAccount::new(&mut r);
    let mut clients = Vec::new();
    for d in 1..=50 {
        let device = fetchers.device(d, &mut r);
        clients.push(device.register(&relay.address).await);
    }
    let start = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(client, _pushes)| {
            let start = start.clone();
            let account = bob.account.account_id();
            tokio::spawn(async move {
                start.wait().await;
                // fetch_bundle verifies the certificate, ML-DSA statement and Merkle path.
                let bundle = client.fetch_bundle(&account, 1, now_ms()).await.unwrap();
                drop(_pushes);
                bundle.one_time.map(|p| p.prekey_id)
            })
        })
        .collect();
    let mut handed = Vec::new();
    let mut without = 0;
    for t in tasks {
        match t.await.unwrap() {
            Some(id) => handed.push(id),
            None => without += 1,
        }
    }
    let distinct: HashSet<u32> = handed.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        handed.len(),
        "a one-time prekey was handed out twice"
    );
    assert_eq!(handed.len(), 40, "every one-time prekey was used");
    assert_eq!(without, 10, "the rest got bundles without one");

    // Bob was told his prekeys ran low (below 20) while he was online.
    let low = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Pushed::PrekeysLow { remaining }) = b_pushes.recv().await {
                return remaining;
            }
        }
    })
    .await
    .expect("PrekeysLow pushed");
    assert!(low < 20);

    // A refill replaces the batch; a forged batch (keys not matching the signed root) is
    // refused with AuthFailed and changes nothing.
    let (signed2, mut forged) = bob.prekeys(5, &mut r);
    forged[0].public = one_time_public(&mut r);
    let err = b.publish_prekeys(&signed2, forged).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AuthFailed));
}

fn one_time_public(r: &mut rand_chacha::ChaCha20Rng) -> Vec<u8> {
    tessera_crypto::signal::KeyPair::generate(r)
        .public_key
        .serialize()
        .to_vec()
}

/// A raw WebSocket that has read its challenge.
async fn raw(addr: &RelayAddress) -> tessera_net::RelayWebSocket {
    let mut ws = tessera_net::connect_websocket(addr, &Transport::Direct)
        .await
        .unwrap();
    match ws.next().await {
        Some(Ok(Message::Binary(b))) => assert!(matches!(
            Frame::decode(&b).unwrap().body,
            Body::Challenge { .. }
        )),
        other => panic!("expected the challenge, got {other:?}"),
    }
    ws
}

/// Sends `bytes` and returns the error code the relay answers with, checking that it then
/// closes the connection.
async fn error_then_close(ws: &mut tessera_net::RelayWebSocket, bytes: Vec<u8>) -> ErrorCode {
    ws.send(Message::Binary(bytes.into())).await.unwrap();
    let code = match ws.next().await {
        Some(Ok(Message::Binary(b))) => match Frame::decode(&b).unwrap().body {
            Body::Error { code, .. } => code,
            other => panic!("expected an error frame, got {other:?}"),
        },
        other => panic!("expected an error frame, got {other:?}"),
    };
    match ws.next().await {
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => code,
        Some(Ok(other)) => panic!("expected the connection to close, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_bad_input_gets_its_error_and_the_relay_keeps_serving_others() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_configured(&dir.path().join("relay"), "");
    let carol = TestDevice::new(6);
    let (c, mut c_pushes) = carol.register(&relay.address).await;
    let mut seq = 0;
    let mut still_served = async || {
        seq += 1;
        c.send(&carol.account.account_id(), 1, envelope(b'c', seq, 64))
            .await
            .unwrap();
        match next_push(&mut c_pushes, Duration::from_secs(5)).await {
            Some(Pushed::Deliver {
                delivery_id,
                envelope,
            }) => {
                assert_eq!(parse(&envelope), (b'c', seq));
                c.ack(delivery_id).await.unwrap();
            }
            other => panic!("the healthy client was not served: {other:?}"),
        }
    };

    // Garbage bytes.
    let mut ws = raw(&relay.address).await;
    assert_eq!(
        error_then_close(&mut ws, b"\x07garbage".to_vec()).await,
        ErrorCode::UnsupportedVersion
    );
    still_served().await;
    let mut ws = raw(&relay.address).await;
    assert_eq!(
        error_then_close(&mut ws, vec![1, 0x20, 0, 0, 0, 9, 1, 2]).await,
        ErrorCode::Malformed
    );
    still_served().await;
    // A frame above the limit is refused before it is buffered.
    let mut ws = raw(&relay.address).await;
    assert_eq!(
        error_then_close(&mut ws, vec![1; MAX_FRAME_LEN + 1]).await,
        ErrorCode::TooLarge
    );
    // Far above the limit: the WebSocket layer cuts the connection without buffering it.
    let mut ws = raw(&relay.address).await;
    let _ = ws
        .send(Message::Binary(vec![1; 4 * MAX_FRAME_LEN].into()))
        .await;
    if let Some(Ok(Message::Binary(b))) = ws.next().await {
        match Frame::decode(&b).unwrap().body {
            Body::Error { code, .. } => assert_eq!(code, ErrorCode::TooLarge),
            other => panic!("a 1 MiB frame was processed: {other:?}"),
        }
    }
    still_served().await;
    // An unknown frame type.
    let mut ws = raw(&relay.address).await;
    assert_eq!(
        error_then_close(&mut ws, vec![1, 0x7f, 0, 0, 0, 1]).await,
        ErrorCode::UnknownKind
    );
    still_served().await;

    // A send before login: refused, the connection stays usable for logging in.
    let (anon, _p) = RelayClient::connect(&relay.address, &Transport::Direct)
        .await
        .unwrap();
    let err = anon
        .send(&carol.account.account_id(), 1, envelope(b'x', 0, 64))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated));
    let dave = TestDevice::new(7);
    anon.register(
        &dave.account,
        &dave.certificate,
        &dave.auth,
        &mut rand::rng(),
    )
    .await
    .unwrap();
    still_served().await;

    // A replayed login: a proof captured from one connection is refused on another (its
    // challenge differs), and a second login on the same connection is refused too.
    let (twice, _p) = RelayClient::connect(&relay.address, &Transport::Direct)
        .await
        .unwrap();
    twice
        .login(&dave.account.account_id(), 1, &dave.auth, &mut rand::rng())
        .await
        .unwrap();
    let err = twice
        .login(&dave.account.account_id(), 1, &dave.auth, &mut rand::rng())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ChallengeExpired));
    let nonce_of_other_connection = [0u8; 32];
    let replayed = tessera_crypto::sign_relay_login(
        &carol.auth,
        &nonce_of_other_connection,
        relay.address.pin.as_bytes(),
        &carol.account.account_id(),
        1,
        &mut rand::rng(),
    )
    .unwrap();
    let mut ws = raw(&relay.address).await;
    let login = Frame::reply(
        9,
        Body::Login {
            account_id: carol.account.account_id().0,
            device_id: 1,
            proof: replayed,
        },
    )
    .encode()
    .unwrap();
    assert_eq!(
        error_then_close(&mut ws, login).await,
        ErrorCode::AuthFailed
    );
    // A login for a device that does not exist.
    let (nobody, _p) = RelayClient::connect(&relay.address, &Transport::Direct)
        .await
        .unwrap();
    let ghost = TestDevice::new(8);
    let err = nobody
        .login(
            &ghost.account.account_id(),
            1,
            &ghost.auth,
            &mut rand::rng(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    // A send to a device that does not exist.
    let err = c
        .send(&ghost.account.account_id(), 1, envelope(b'c', 0, 64))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    still_served().await;

    // Every refusal was counted by kind.
    let text = relay.metrics_text();
    for code in [
        "unsupported_version",
        "malformed",
        "too_large",
        "unknown_kind",
        "auth_failed",
    ] {
        let line = format!("tessera_relay_errors_total{{code=\"{code}\"}} ");
        let n: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&line)?.parse().ok())
            .unwrap();
        assert!(n >= 1.0, "{code} not counted:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_a_second_login_replaces_the_first_connection() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_configured(&dir.path().join("relay"), "");
    let erin = TestDevice::new(9);
    let (_first, mut first_pushes) = erin.register(&relay.address).await;
    let (second, mut second_pushes) = erin.login(&relay.address).await;
    match next_push(&mut first_pushes, Duration::from_secs(5)).await {
        Some(Pushed::Closing { code, .. }) => assert_eq!(code, ErrorCode::Replaced),
        other => panic!("expected Replaced, got {other:?}"),
    }
    // Mail now goes to the second connection.
    second
        .send(&erin.account.account_id(), 1, envelope(b'e', 1, 32))
        .await
        .unwrap();
    match next_push(&mut second_pushes, Duration::from_secs(5)).await {
        Some(Pushed::Deliver { envelope, .. }) => assert_eq!(parse(&envelope), (b'e', 1)),
        other => panic!("expected a delivery, got {other:?}"),
    }
}

/// `DeleteAccount` (docs/leaving.md): refused before login, refused (and the connection
/// closed) with a proof from another connection or another account, carried out with the
/// account identity's proof for this connection; the account never comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_account_deletion_needs_the_identity_s_proof_for_this_connection() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_configured(&dir.path().join("relay"), "");
    let fay = TestDevice::new(11);
    let gil = TestDevice::new(12);
    let (_g, _gp) = gil.register(&relay.address).await;

    // Before login: Unauthenticated.
    let (anon, _ap) = RelayClient::connect(&relay.address, &Transport::Direct)
        .await
        .unwrap();
    let proof = anon
        .account_deletion_proof(&fay.identity, &mut rand::rng())
        .unwrap();
    assert_eq!(
        anon.delete_account(proof)
            .await
            .err()
            .and_then(|e| e.code()),
        Some(ErrorCode::Unauthenticated)
    );

    // A proof made for another connection is refused and the connection closed. (The
    // pushes are kept: a client whose pushes are dropped closes its connection.)
    let (fay1, _p1) = fay.register(&relay.address).await;
    let stale = fay1
        .account_deletion_proof(&fay.identity, &mut rand::rng())
        .unwrap();
    let (fay2, _p2) = fay.login(&relay.address).await;
    let r = fay2.delete_account(stale).await;
    assert_eq!(
        r.as_ref().err().and_then(|e| e.code()),
        Some(ErrorCode::AuthFailed),
        "{r:?}"
    );
    // Another account's identity (Gil's) cannot delete Fay.
    let (fay3, _p3) = fay.login(&relay.address).await;
    let foreign = fay3
        .account_deletion_proof(&gil.identity, &mut rand::rng())
        .unwrap();
    assert_eq!(
        fay3.delete_account(foreign)
            .await
            .err()
            .and_then(|e| e.code()),
        Some(ErrorCode::AuthFailed)
    );

    // Fay's own proof for this connection: deleted.
    let (fay4, _p4) = fay.login(&relay.address).await;
    let proof = fay4
        .account_deletion_proof(&fay.identity, &mut rand::rng())
        .unwrap();
    fay4.delete_account(proof).await.unwrap();
    // Gone: no login, no bundle, no certificate, no registration ever again.
    let (c, _cp) = RelayClient::connect(&relay.address, &Transport::Direct)
        .await
        .unwrap();
    let e = c
        .login(&fay.account.account_id(), 1, &fay.auth, &mut rand::rng())
        .await
        .err();
    assert_eq!(e.and_then(|e| e.code()), Some(ErrorCode::NotFound));
    let (c, _cp) = RelayClient::connect(&relay.address, &Transport::Direct)
        .await
        .unwrap();
    let e = c
        .register(&fay.account, &fay.certificate, &fay.auth, &mut rand::rng())
        .await
        .err();
    assert_eq!(e.and_then(|e| e.code()), Some(ErrorCode::AccountDeleted));
    // Gil is untouched.
    let (g, _gp2) = gil.login(&relay.address).await;
    assert!(
        g.fetch_certificate(&gil.account.account_id(), 1, &gil.account, now_ms())
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_limits_mailbox_cap_connections_per_ip_and_rate() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_configured(
        &dir.path().join("relay"),
        "[mailbox]\nmax_messages = 5\n[limits]\nconnections_per_ip = 4\nrequests_per_second = 20\nrequest_burst = 30\n",
    );
    let frank = TestDevice::new(10);
    let grace = TestDevice::new(11);
    let (f, _fp) = frank.register(&relay.address).await;
    drop(grace.register(&relay.address).await);

    // Mailbox cap: the sixth envelope for offline Grace is refused with a retry hint.
    for s in 0..5 {
        f.send(&grace.account.account_id(), 1, envelope(b'f', s, 64))
            .await
            .unwrap();
    }
    match f
        .send(&grace.account.account_id(), 1, envelope(b'f', 5, 64))
        .await
    {
        Err(ClientError::Relay {
            code: ErrorCode::MailboxFull,
            retry_after_ms,
            ..
        }) => assert!(retry_after_ms > 0),
        other => panic!("expected MailboxFull, got {other:?}"),
    }
    // Grace reads and acknowledges: room again.
    let (g, mut gp) = grace.login(&relay.address).await;
    let got = receive(&g, &mut gp, 5, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 5);
    f.send(&grace.account.account_id(), 1, envelope(b'f', 5, 64))
        .await
        .unwrap();

    // Rate: a burst far above 30 requests gets RateLimited with a retry hint, on this
    // account only.
    let grace_id = grace.account.account_id();
    let results = futures_util::future::join_all(
        (0..45).map(|s| f.send(&grace_id, 1, envelope(b'f', 100 + s, 16))),
    )
    .await;
    let limited = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == Some(ErrorCode::RateLimited)))
        .count();
    assert!(limited > 0, "no request was rate limited");
    // Frank waits as told, and is served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.send(&frank.account.account_id(), 1, envelope(b'f', 200, 16))
        .await
        .unwrap();
    g.send(&frank.account.account_id(), 1, envelope(b'g', 0, 16))
        .await
        .unwrap();

    // Connections per IP: four are open (f, g and two more); the fifth is refused.
    assert_eq!(relay.metric("tessera_relay_connections"), 2.0);
    let _third = RelayClient::connect(&relay.address, &Transport::Direct)
        .await
        .unwrap();
    let _fourth = RelayClient::connect(&relay.address, &Transport::Direct)
        .await
        .unwrap();
    match RelayClient::connect(&relay.address, &Transport::Direct).await {
        Err(ClientError::Relay { code, .. }) => assert_eq!(code, ErrorCode::TooManyConnections),
        Ok(_) => panic!("a fifth connection from one address was accepted"),
        Err(other) => panic!("expected TooManyConnections, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_graceful_shutdown_answers_in_flight_sends_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let mut relay = Relay::start_configured(&data, "");
    let henry = TestDevice::new(12);
    let ivy = TestDevice::new(13);
    drop(ivy.register(&relay.address).await);
    let (h, mut hp) = henry.register(&relay.address).await;
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stopper = {
        let count = count.clone();
        let pid = relay.process.pid();
        tokio::spawn(async move {
            while count.load(std::sync::atomic::Ordering::SeqCst) < 300 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        })
    };
    let accepted = send_all(&h, &ivy, b'h', 0..3000, 64, Some(&count)).await;
    stopper.await.unwrap();
    let status = relay.process.wait_timeout(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    // The client was told why.
    let mut told = false;
    while let Ok(Some(p)) = tokio::time::timeout(Duration::from_secs(1), hp.recv()).await {
        if let Pushed::Closing { code, .. } = p {
            assert_eq!(code, ErrorCode::ShuttingDown);
            told = true;
        }
    }
    assert!(told, "no ShuttingDown before the close");

    relay = Relay::start_configured(&data, "");
    let (i, mut ip) = ivy.login(&relay.address).await;
    let got = receive(&i, &mut ip, accepted.len(), Duration::from_secs(60)).await;
    let got: HashSet<u32> = got.into_iter().map(|(_, s)| s).collect();
    for s in &accepted {
        assert!(
            got.contains(s),
            "accepted envelope {s} lost in a graceful shutdown"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_metrics_report_connections_queue_and_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_configured(&dir.path().join("relay"), "");
    let jack = TestDevice::new(14);
    let kim = TestDevice::new(15);
    drop(kim.register(&relay.address).await);
    let (j, _jp) = jack.register(&relay.address).await;
    for s in 0..7 {
        j.send(&kim.account.account_id(), 1, envelope(b'j', s, 100))
            .await
            .unwrap();
    }
    let text = relay.metrics_text();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    assert_eq!(value("tessera_relay_envelopes_accepted_total"), 7.0);
    assert_eq!(value("tessera_relay_queue_depth"), 7.0);
    assert_eq!(value("tessera_relay_queue_bytes"), 700.0);
    assert_eq!(value("tessera_relay_connections"), 1.0);
    assert_eq!(value("tessera_relay_authenticated_connections"), 1.0);
    let by_code: BTreeMap<&str, f64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("tessera_relay_errors_total{code=\"")?;
            let (code, v) = rest.split_once("\"} ")?;
            Some((code, v.parse().ok()?))
        })
        .collect();
    assert!(by_code.len() >= 17, "{by_code:?}");
    // Nothing identifying is exposed.
    assert!(!text.contains(&jack.account.account_id().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_json_logs_carry_no_user_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let relay = Relay::start_with(
        &data,
        &["--log-format", "json", "--log", "tessera_relay=debug"],
    );
    let lee = TestDevice::new(16);
    let (l, _lp) = lee.register(&relay.address).await;
    l.send(&lee.account.account_id(), 1, envelope(b'l', 1, 64))
        .await
        .unwrap();
    let mut bad = raw(&relay.address).await;
    error_then_close(&mut bad, b"\x07".to_vec()).await;
    drop((l, relay));
    let log = std::fs::read_to_string(data.with_extension("stderr.log")).unwrap();
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("fields").is_some(),
            "{line}"
        );
        lines += 1;
    }
    assert!(lines >= 3, "{log}");
    let id = lee.account.account_id();
    for needle in [id.to_string(), hex(&id.0), "127.0.0.1:".to_string()] {
        let allowed_listen = log
            .lines()
            .filter(|l| l.contains(&needle))
            .all(|l| l.contains("relay listening"));
        assert!(allowed_listen, "log contains {needle:?}:\n{log}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_a_silent_client_is_closed_with_timeout_and_others_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_configured(
        &dir.path().join("relay"),
        "[limits]\nidle_timeout_secs = 1\n",
    );
    let mia = TestDevice::new(17);
    let (m, mut mp) = mia.register(&relay.address).await;
    // A client that reads its challenge and then neither sends nor reads anything.
    let mut silent = raw(&relay.address).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut next = silent.next().await;
    // The relay pinged it first (those pings went unanswered).
    while let Some(Ok(Message::Ping(_))) = next {
        next = silent.next().await;
    }
    match next {
        Some(Ok(Message::Binary(b))) => match Frame::decode(&b).unwrap().body {
            Body::Error { code, .. } => assert_eq!(code, ErrorCode::Timeout),
            other => panic!("expected Timeout, got {other:?}"),
        },
        other => panic!("expected an error frame, got {other:?}"),
    }
    // The logged-in client answered the relay's pings (its reader runs) and is still served.
    m.send(&mia.account.account_id(), 1, envelope(b'm', 1, 32))
        .await
        .unwrap();
    match next_push(&mut mp, Duration::from_secs(5)).await {
        Some(Pushed::Deliver { envelope, .. }) => assert_eq!(parse(&envelope), (b'm', 1)),
        other => panic!("expected a delivery, got {other:?}"),
    }
}

/// A device certificate built byte by byte from `docs/keys.md` (version 1; the identity signs
/// everything before the signature with label "tessera v1 device certificate"), so the relay
/// can be shown certificates the client library refuses to issue.
fn raw_certificate(
    account: &tessera_e2e::device::TestAccount,
    device: &tessera_e2e::device::TestDevice,
    serial: u32,
    window: (u64, u64),
    r: &mut rand_chacha::ChaCha20Rng,
) -> Vec<u8> {
    let f = &device.certificate.fields;
    let mut out = vec![1u8];
    out.extend_from_slice(&account.public.account_id().0);
    out.extend_from_slice(&f.device_id.to_be_bytes());
    out.extend_from_slice(&serial.to_be_bytes());
    out.extend_from_slice(&f.auth_key.to_bytes());
    out.extend_from_slice(&f.envelope_key.to_bytes());
    out.extend_from_slice(&window.0.to_be_bytes());
    out.extend_from_slice(&window.1.to_be_bytes());
    let sig = account
        .identity
        .sign("tessera v1 device certificate", &out, r)
        .unwrap();
    out.extend_from_slice(&sig.to_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_accepts_renewals_signed_by_the_account_and_refuses_the_rest() {
    use tessera_crypto::{DeviceCertificate, sign_relay_login};

    const DAY: u64 = 86_400_000;
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let mut r = rng(77);
    let account = TestAccount::new(&mut r);
    let device = account.device(1, &mut r);
    let (client, _pushes) = device.register(&relay.address).await;
    let (signed, wire) = device.prekeys(10, &mut r);
    client.publish_prekeys(&signed, wire).await.unwrap();
    let id = account.public.account_id();

    // Registers `cert` on a fresh connection; the relay's answer.
    let register = |cert: Vec<u8>| {
        let addr = relay.address.clone();
        let public = account.public.to_bytes();
        let auth = device.auth.clone();
        async move {
            let mut ws = tessera_net::connect_websocket(&addr, &Transport::Direct)
                .await
                .unwrap();
            let next = async |ws: &mut tessera_net::RelayWebSocket| match ws.next().await {
                Some(Ok(Message::Binary(b))) => Frame::decode(&b).unwrap().body,
                other => panic!("expected a frame, got {other:?}"),
            };
            let nonce = match next(&mut ws).await {
                Body::Challenge { nonce, .. } => nonce,
                other => panic!("expected a challenge, got {other:?}"),
            };
            let proof =
                sign_relay_login(&auth, &nonce, addr.pin.as_bytes(), &id, 1, &mut rng(9)).unwrap();
            let frame = Frame {
                request_id: 1,
                body: Body::Register {
                    account_public: public,
                    device_certificate: cert,
                    proof,
                },
            };
            ws.send(Message::Binary(frame.encode().unwrap().into()))
                .await
                .unwrap();
            next(&mut ws).await
        }
    };
    let refused = |b: &Body| {
        matches!(
            b,
            Body::Error {
                code: ErrorCode::AuthFailed,
                ..
            }
        )
    };
    let now = now_ms();

    // A renewal (serial 2, 45 days) signed by the account identity replaces the certificate.
    let renewed = raw_certificate(&account, &device, 2, (now - DAY, now + 45 * DAY), &mut r);
    assert_eq!(register(renewed.clone()).await, Body::Ok);
    // That registration replaced the device's session; log in again.
    let (client, _pushes) = device.login(&relay.address).await;
    let fetched = client
        .fetch_certificate(&id, 1, &account.public, now)
        .await
        .unwrap();
    assert_eq!(fetched.fields.serial, 2);
    assert_eq!(fetched, DeviceCertificate::from_bytes(&renewed).unwrap());

    // Too long a window (61 days), although correctly signed.
    let long = raw_certificate(&account, &device, 3, (now - DAY, now + 60 * DAY), &mut r);
    assert!(refused(&register(long).await));
    // Already expired.
    let expired = raw_certificate(
        &account,
        &device,
        4,
        (now - 50 * DAY, now - 5 * DAY),
        &mut r,
    );
    assert!(refused(&register(expired).await));
    // Signed by another account's identity, offered under this account's keys.
    let mallory = TestAccount::new(&mut r);
    let forged = raw_certificate(&mallory, &device, 5, (now - DAY, now + 45 * DAY), &mut r);
    assert!(refused(&register(forged).await));
    // None of them replaced the renewal.
    let (client, _pushes) = device.login(&relay.address).await;
    let fetched = client
        .fetch_certificate(&id, 1, &account.public, now)
        .await
        .unwrap();
    assert_eq!(fetched.fields.serial, 2);
    // An unknown device has no certificate.
    assert!(matches!(
        client.fetch_certificate(&id, 9, &account.public, now).await,
        Err(tessera_net::ClientError::Relay {
            code: ErrorCode::NotFound,
            ..
        })
    ));

    // A signed-prekey rotation: a new statement for the same batch, without the one-time
    // prekeys, keeps the ones the relay holds; a statement for a batch it does not hold is
    // refused.
    let mut rotated = signed.clone();
    rotated.statement.signed_prekey_id = 2;
    rotated.signature = rotated.statement.sign(&account.identity, &mut r).unwrap();
    client.publish_prekeys(&rotated, Vec::new()).await.unwrap();
    let bundle = client.fetch_bundle(&id, 1, now).await.unwrap();
    assert_eq!(bundle.signed.statement.signed_prekey_id, 2);
    assert!(
        bundle.one_time.is_some(),
        "the held one-time prekeys were dropped"
    );
    let mut other_batch = rotated.clone();
    other_batch.statement.batch_id = 9;
    other_batch.signature = other_batch
        .statement
        .sign(&account.identity, &mut r)
        .unwrap();
    assert!(matches!(
        client.publish_prekeys(&other_batch, Vec::new()).await,
        Err(tessera_net::ClientError::Relay {
            code: ErrorCode::NotFound,
            ..
        })
    ));
    // That refusal keeps the connection: the client uploads a whole batch next.
    let (signed, wire) = device.prekeys(10, &mut r);
    client.publish_prekeys(&signed, wire).await.unwrap();
}
