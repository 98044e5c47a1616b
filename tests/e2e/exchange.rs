//! Delivery under failure (`docs/messaging.md`, "Delivery"): two engines in this process, each
//! running its connection loop as the desktop app does, exchange 1,000 messages each way through
//! a network that loses every 50th frame a client sends (a proxy that cuts the connection there:
//! TLS cannot go on past a lost record), while the real relay process is killed with SIGKILL and
//! restarted twice. Every message is shown once, in send order per sender, and every one ends
//! delivered.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_core::{CreateOptions, Engine, Event, KdfParams, MessageStatus, TransportConfig};
use tessera_e2e::cut::CuttingProxy;
use tessera_e2e::relay::Relay;
use tessera_proto::RelayAddress;
use tessera_store::MemorySecrets;
use tokio::sync::broadcast;
use zeroize::Zeroizing;

const EACH_WAY: usize = 1000;
const LOSE_EVERY: u64 = 50;

async fn create(root: &std::path::Path, relay: &RelayAddress, name: &str) -> Engine {
    Engine::create(
        CreateOptions {
            dir: root.join(name),
            password: Zeroizing::new(format!("{name}'s password").into_bytes()),
            relay: relay.clone(),
            name: name.into(),
            transport: TransportConfig::Direct,
            kdf: KdfParams::MINIMUM,
            card: None,
        },
        Arc::new(MemorySecrets::default()),
    )
    .await
    .unwrap()
}

async fn wait_for(
    events: &mut broadcast::Receiver<Event>,
    what: &str,
    pick: impl Fn(&Event) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(e)) if pick(&e) => return,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// What one side shows of the conversation with `other`: the bodies it received, in the order
/// shown, and how many of its own messages are delivered.
fn progress(engine: &Engine, other: &[u8; 32]) -> (Vec<String>, usize) {
    let all = engine.history(other, None, 10 * EACH_WAY as u32).unwrap();
    let received = all
        .iter()
        .filter(|m| !m.outgoing)
        .map(|m| m.body.clone())
        .collect();
    let delivered = all
        .iter()
        .filter(|m| m.outgoing && m.status >= MessageStatus::Delivered)
        .count();
    (received, delivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_1000_each_way_through_a_lossy_network_and_two_relay_kills_once_in_order_delivered()
 {
    tessera_e2e::logs();
    let dir = tempfile::tempdir().unwrap();
    let port = tessera_e2e::free_port();
    let data = dir.path().join("relay");
    let mut relay = Relay::start_on(&data, port, &[]);
    let proxy = CuttingProxy::start(([127, 0, 0, 1], port).into(), LOSE_EVERY).await;
    let mut through_proxy = relay.address.clone();
    through_proxy.port = proxy.port;

    let alice = create(dir.path(), &through_proxy, "alice").await;
    let bob = create(dir.path(), &through_proxy, "bob").await;
    let (a, b) = (alice.account_id().unwrap().0, bob.account_id().unwrap().0);
    let (mut a_events, mut b_events) = (alice.subscribe(), bob.subscribe());
    for engine in [&alice, &bob] {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run().await });
    }
    alice
        .add_contact(&bob.invite().unwrap(), Some("bob"))
        .await
        .unwrap();
    wait_for(&mut b_events, "Bob sees the request", |e| {
        matches!(e, Event::ContactRequest { .. })
    })
    .await;
    bob.add_contact(&alice.invite().unwrap(), Some("alice"))
        .await
        .unwrap();
    wait_for(&mut a_events, "Alice sees the acceptance", |e| {
        matches!(e, Event::ContactAccepted { .. })
    })
    .await;

    let started = Instant::now();
    let senders: Vec<_> = [(alice.clone(), b, "alice"), (bob.clone(), a, "bob")]
        .into_iter()
        .map(|(engine, to, who)| {
            tokio::spawn(async move {
                for n in 0..EACH_WAY {
                    engine
                        .send_text(&to, &format!("{who} {n:04}"))
                        .await
                        .unwrap();
                    if n % 50 == 49 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();

    // The relay is killed (-9) once Bob has a third of Alice's messages, and again at two
    // thirds; each time it comes back on the same port a moment later.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut kills = 0;
    loop {
        let (to_bob, _) = progress(&bob, &a);
        if kills < 2 && to_bob.len() >= (kills + 1) * EACH_WAY / 3 {
            relay.process.stop_with("KILL");
            tokio::time::sleep(Duration::from_millis(300)).await;
            relay = Relay::start_on(&data, port, &[]);
            kills += 1;
        }
        let ((got_a, done_a), (got_b, done_b)) = (progress(&alice, &b), progress(&bob, &a));
        if kills == 2
            && [got_a.len(), got_b.len(), done_a, done_b]
                .iter()
                .all(|n| *n >= EACH_WAY)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {kills} kills and {} cuts: Alice has {} of Bob's, {done_a} of hers \
             delivered; Bob has {} of Alice's, {done_b} of his delivered",
            proxy.cuts(),
            got_a.len(),
            got_b.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for s in senders {
        s.await.unwrap();
    }
    eprintln!(
        "{EACH_WAY} each way, every {LOSE_EVERY}th frame lost ({} connections cut), relay \
         killed twice: all shown and delivered in {:.1} s",
        proxy.cuts(),
        started.elapsed().as_secs_f64()
    );
    assert!(proxy.cuts() >= 10, "the network lost too little to test");

    for (engine, other, who) in [(&alice, &b, "bob"), (&bob, &a, "alice")] {
        let (got, delivered) = progress(engine, other);
        let distinct: HashSet<&String> = got.iter().collect();
        assert_eq!(distinct.len(), EACH_WAY, "every message of {who}'s arrived");
        assert_eq!(got.len(), EACH_WAY, "a message of {who}'s was shown twice");
        let expected: Vec<String> = (0..EACH_WAY).map(|n| format!("{who} {n:04}")).collect();
        assert_eq!(got, expected, "{who}'s messages in send order");
        assert_eq!(delivered, EACH_WAY);
        assert_eq!(engine.outbox_len().unwrap(), 0, "nothing left to send");
        assert!(engine.quarantined(10).unwrap().is_empty());
    }
}
