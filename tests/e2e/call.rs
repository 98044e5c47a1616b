//! Call signaling through the real relay and real Signal sessions, driven by the call state
//! machine, with the frame secrets it carries used for real frame encryption
//! (`docs/calls.md`). The WebRTC media path is not here yet.

use std::sync::Arc;
use std::time::Duration;

use tessera_calls::call::{Call, CallId, EndReason, Input, Output, Signal, State};
use tessera_calls::frame::{Dropped, FrameOpener, FrameSealer, FrameSecret};
use tessera_core::{CreateOptions, Engine, Event, KdfParams, OsKeyring, TransportConfig};
use tessera_e2e::relay::Relay;
use tokio::sync::broadcast;
use zeroize::Zeroizing;

async fn account(dir: &std::path::Path, relay: &Relay, name: &str) -> Engine {
    Engine::create(
        CreateOptions {
            dir: dir.join(name),
            password: Zeroizing::new(format!("{name}'s password").into_bytes()),
            relay: relay.address.clone(),
            name: name.into(),
            transport: TransportConfig::Direct,
            kdf: KdfParams::MINIMUM,
            card: None,
        },
        Arc::new(OsKeyring),
    )
    .await
    .unwrap()
}

/// The next event matching `f`, within 20 s.
async fn next<T>(rx: &mut broadcast::Receiver<Event>, f: impl Fn(&Event) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if let Some(t) = f(&e) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("no such event within 20 s")
}

/// The next call signal from the peer.
async fn signal(rx: &mut broadcast::Receiver<Event>) -> (CallId, Signal) {
    next(rx, |e| match e {
        Event::Call { call, signal, .. } => Some((*call, signal.clone())),
        _ => None,
    })
    .await
}

/// Sends every `Output::Send` of `out` from `from` to `to`.
async fn send(from: &Engine, to: &[u8; 32], id: CallId, out: &[Output]) {
    for o in out {
        if let Output::Send(s) = o {
            from.send_call_signal(to, id, s).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_signaling_through_the_relay_sets_up_frame_keys_and_ends_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let alice = account(dir.path(), &relay, "alice").await;
    let bob = account(dir.path(), &relay, "bob").await;
    let (a_id, b_id) = (alice.account_id().unwrap().0, bob.account_id().unwrap().0);
    let (mut a_rx, mut b_rx) = (alice.subscribe(), bob.subscribe());
    for e in [alice.clone(), bob.clone()] {
        tokio::spawn(async move { e.run().await });
    }
    alice
        .add_contact(&bob.invite().unwrap(), Some("bob"))
        .await
        .unwrap();
    next(&mut b_rx, |e| {
        matches!(e, Event::ContactRequest { .. }).then_some(())
    })
    .await;
    bob.answer_request(&a_id, true).await.unwrap();
    next(&mut a_rx, |e| {
        matches!(e, Event::ContactAccepted { .. }).then_some(())
    })
    .await;

    // Alice dials with video; her frame secret goes inside the offer.
    let mut rng = rand::rng();
    let id = CallId(rand::random());
    let a_secret = FrameSecret::random(&mut rng);
    let t = Duration::ZERO;
    let (mut a_call, out) = Call::dial(id, "v=0 alice-offer".into(), true, *a_secret.as_bytes(), t);
    send(&alice, &b_id, id, &out).await;

    // Bob's device rings and says so.
    let (got, offer) = signal(&mut b_rx).await;
    assert_eq!(got, id);
    let Signal::Offer { sdp, video, secret } = offer else {
        panic!("expected an offer, got {offer:?}");
    };
    assert_eq!((sdp.as_str(), video), ("v=0 alice-offer", true));
    let (mut b_call, out) = Call::incoming(id, video, t);
    assert!(out.contains(&Output::Ring));
    send(&bob, &a_id, id, &out).await;
    let (_, ringing) = signal(&mut a_rx).await;
    assert!(a_call.handle_remote(id, ringing, t).is_empty());
    assert_eq!(a_call.state(), State::Ringing);

    // Bob accepts with his own secret; Alice learns it from the answer.
    let b_secret = FrameSecret::random(&mut rng);
    let out = b_call.handle(
        Input::Accept {
            sdp: "v=0 bob-answer".into(),
            secret: *b_secret.as_bytes(),
        },
        t,
    );
    send(&bob, &a_id, id, &out).await;
    let (_, answer) = signal(&mut a_rx).await;
    let connect = a_call.handle_remote(id, answer, t);
    let [
        Output::Connect {
            sdp,
            secret: b_seen,
        },
    ] = connect.as_slice()
    else {
        panic!("expected connect, got {connect:?}");
    };
    assert_eq!(sdp, "v=0 bob-answer");

    // The secrets each side received seal and open real frames; a tampered frame is dropped.
    let mut a_tx = FrameSealer::new(&a_secret).unwrap();
    let mut b_rx_frames = FrameOpener::new(&FrameSecret::from_bytes(secret)).unwrap();
    let mut b_tx = FrameSealer::new(&b_secret).unwrap();
    let mut a_rx_frames = FrameOpener::new(&FrameSecret::from_bytes(*b_seen)).unwrap();
    let f = a_tx.seal(t, b"opus frame from alice").unwrap().to_vec();
    assert_eq!(b_rx_frames.open(&f).unwrap(), b"opus frame from alice");
    let mut bad = b_tx.seal(t, b"vp8 frame from bob").unwrap().to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    assert_eq!(a_rx_frames.open(&bad), Err(Dropped::Unauthentic));
    assert_eq!(a_rx_frames.stats().unauthentic, 1);
    let g = b_tx.seal(t, b"vp8 frame from bob").unwrap().to_vec();
    assert_eq!(a_rx_frames.open(&g).unwrap(), b"vp8 frame from bob");
    assert_eq!(a_call.handle(Input::MediaFlowing, t), vec![Output::Active]);
    assert_eq!(b_call.handle(Input::MediaFlowing, t), vec![Output::Active]);

    // Bob hangs up: the call ends on both sides.
    let out = b_call.handle(Input::HangUp, t);
    send(&bob, &a_id, id, &out).await;
    let (_, bye) = signal(&mut a_rx).await;
    assert_eq!(
        a_call.handle_remote(id, bye, t),
        vec![Output::Ended(EndReason::RemoteHungUp)]
    );
    assert_eq!(b_call.state(), State::Ended(EndReason::HungUp));

    // Nothing of the call is kept in either conversation.
    assert!(alice.history(&b_id, None, 10).unwrap().is_empty());
    assert!(bob.history(&a_id, None, 10).unwrap().is_empty());

    // Bob offline: Alice's call ends as unavailable, and the offer waiting at the relay is
    // opaque (no SDP, no secret readable in the relay's files).
    bob.lock();
    let id2 = CallId(rand::random());
    let secret2 = FrameSecret::random(&mut rng);
    let (mut call2, out) = Call::dial(
        id2,
        "v=0 marker-sdp-7f3a".into(),
        false,
        *secret2.as_bytes(),
        t,
    );
    send(&alice, &b_id, id2, &out).await;
    assert!(
        call2
            .handle(Input::Tick, Duration::from_secs(10))
            .is_empty()
    );
    let out = call2.handle(Input::Tick, Duration::from_secs(21));
    assert_eq!(
        out,
        vec![
            Output::Send(Signal::Hangup),
            Output::Ended(EndReason::Unavailable)
        ]
    );
    send(&alice, &b_id, id2, &out).await;
    let secret_hex: String = secret2
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for entry in std::fs::read_dir(dir.path().join("relay"))
        .unwrap()
        .flatten()
    {
        if entry.path().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            for needle in [b"marker-sdp-7f3a".as_slice(), secret_hex.as_bytes()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds call content",
                    entry.path().display()
                );
            }
        }
    }
}
