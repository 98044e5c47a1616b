//! A Signal session that breaks heals itself (`docs/messaging.md`, "Quarantine"): two engines in
//! this process and the real relay on loopback. Alice loses her session with Bob (as a vault
//! restored from an old backup would); Bob's next message cannot be decrypted. It is quarantined
//! with Bob named, leaves a notice in their conversation (one for a run of such envelopes), and
//! Alice resets the session on her own; after that, messages flow both ways again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_core::{CreateOptions, Engine, Event, KdfParams, TransportConfig};
use tessera_e2e::relay::Relay;
use tessera_store::MemorySecrets;
use tokio::sync::broadcast;
use zeroize::Zeroizing;

async fn create(root: &std::path::Path, relay: &Relay, name: &str) -> Engine {
    Engine::create(
        CreateOptions {
            dir: root.join(name),
            password: Zeroizing::new(format!("{name}'s password").into_bytes()),
            relay: relay.address.clone(),
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

/// Waits for an event `pick` accepts and returns it; every event seen before it is in `seen`.
async fn wait_for(
    events: &mut broadcast::Receiver<Event>,
    what: &str,
    seen: &mut Vec<Event>,
    pick: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(e)) if pick(&e) => return e,
            Ok(Ok(e)) => seen.push(e),
            other => panic!("{what}: {other:?}; saw {seen:?}"),
        }
    }
}

fn is_text(e: &Event, text: &str) -> bool {
    matches!(e, Event::Message { body, .. } if body == text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_a_lost_session_is_quarantined_then_reset_and_messages_flow_both_ways() {
    tessera_e2e::logs();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let alice = create(dir.path(), &relay, "alice").await;
    let bob = create(dir.path(), &relay, "bob").await;
    let (a, b) = (alice.account_id().unwrap().0, bob.account_id().unwrap().0);
    let (mut a_events, mut b_events) = (alice.subscribe(), bob.subscribe());
    let mut seen = Vec::new();

    alice
        .add_contact(&bob.invite().unwrap(), Some("bob"))
        .await
        .unwrap();
    wait_for(&mut b_events, "Bob sees the request", &mut seen, |e| {
        matches!(e, Event::ContactRequest { .. })
    })
    .await;
    bob.add_contact(&alice.invite().unwrap(), Some("alice"))
        .await
        .unwrap();
    wait_for(&mut a_events, "Alice sees the acceptance", &mut seen, |e| {
        matches!(e, Event::ContactAccepted { .. })
    })
    .await;
    alice.send_text(&b, "before").await.unwrap();
    wait_for(&mut b_events, "Bob gets 'before'", &mut seen, |e| {
        is_text(e, "before")
    })
    .await;

    // Alice's session with Bob is gone; Bob does not know.
    assert!(alice.forget_session(&b).unwrap());
    bob.send_text(&a, "lost").await.unwrap();
    let q = wait_for(&mut a_events, "Alice quarantines 'lost'", &mut seen, |e| {
        matches!(e, Event::Quarantined { .. })
    })
    .await;
    let Event::Quarantined { sender, reason } = q else {
        unreachable!()
    };
    assert_eq!(sender, Some(b), "the envelope layer authenticated Bob");
    assert!(!reason.is_empty());
    // Bob receives the reset Alice sent on her own.
    wait_for(
        &mut b_events,
        "Bob gets Alice's reset",
        &mut seen,
        |e| matches!(e, Event::SessionReset { contact } if *contact == a),
    )
    .await;

    bob.send_text(&a, "after the reset").await.unwrap();
    let arrived = wait_for(&mut a_events, "Alice gets Bob's next", &mut seen, |e| {
        is_text(e, "after the reset")
    })
    .await;
    // The event carries what the conversation shows, as stored.
    let Event::Message { message, .. } = arrived else {
        unreachable!()
    };
    assert_eq!(message.conversation, tessera_core::direct_conversation(&b));
    assert_eq!((message.kind.as_str(), message.outgoing), ("text", false));
    assert_eq!(message.status, tessera_core::MessageStatus::Received);
    let stored = alice.message(&message.message_id).unwrap();
    assert_eq!(stored.as_ref(), Some(message.as_ref()));
    alice.send_text(&b, "and back").await.unwrap();
    wait_for(&mut b_events, "Bob gets Alice's next", &mut seen, |e| {
        is_text(e, "and back")
    })
    .await;

    // Alice's conversation says a message could not be decrypted, where it came; the
    // quarantine names Bob.
    let kinds: Vec<(String, String)> = alice
        .history(&b, None, 10)
        .unwrap()
        .into_iter()
        .map(|m| (m.kind, m.body))
        .collect();
    let text = |k: &str, b: &str| (k.to_string(), b.to_string());
    assert_eq!(
        kinds,
        vec![
            text("text", "before"),
            text("undecryptable", ""),
            text("text", "after the reset"),
            text("text", "and back"),
        ]
    );
    // Whatever Bob had in flight on the old session is quarantined too (his delivery receipt
    // for "before" may have been), each naming Bob; the conversation shows one notice for them.
    let kept = alice.quarantined(10).unwrap();
    assert!((1..=2).contains(&kept.len()), "{kept:?}");
    assert!(kept.iter().all(|q| q.sender == Some(b)), "{kept:?}");
    assert!(bob.quarantined(10).unwrap().is_empty());
}
