//! Calls between two accounts through the real relay (`docs/calls.md`): signaling through
//! real Signal sessions driven by the call state machine, then whole calls through the phone
//! with real WebRTC media (Opus, VP8, DTLS-SRTP, the relay's TURN service) and frame
//! encryption, with synthetic sources and analysing sinks in place of devices.

use std::time::Duration;

use tessera_calls::call::{Call, CallId, EndReason, Input, Output, Signal, State};
use tessera_calls::frame::{Dropped, FrameOpener, FrameSealer, FrameSecret};
use tessera_core::{Engine, Event};
use tessera_e2e::calls::{SMALL_VIDEO, Synthetic, ended, incoming, next_event, pair, reaches};
use tokio::sync::broadcast;

/// The next call signal from the peer.
async fn signal(rx: &mut broadcast::Receiver<Event>) -> (CallId, Signal) {
    next_event(rx, |e| match e {
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
    let p = pair().await;
    let (alice, bob, a_id, b_id) = (&p.alice, &p.bob, p.a_id, p.b_id);
    let (mut a_rx, mut b_rx) = (alice.subscribe(), bob.subscribe());

    // Alice dials with video; her frame secret goes inside the offer.
    let mut rng = rand::rng();
    let id = CallId(rand::random());
    let a_secret = FrameSecret::random(&mut rng);
    let t = Duration::ZERO;
    let (mut a_call, out) = Call::dial(id, "v=0 alice-offer".into(), true, *a_secret.as_bytes(), t);
    send(alice, &b_id, id, &out).await;

    // Bob's device rings and says so.
    let (got, offer) = signal(&mut b_rx).await;
    assert_eq!(got, id);
    let Signal::Offer { sdp, video, secret } = offer else {
        panic!("expected an offer, got {offer:?}");
    };
    assert_eq!((sdp.as_str(), video), ("v=0 alice-offer", true));
    let (mut b_call, out) = Call::incoming(id, video, t);
    assert!(out.contains(&Output::Ring));
    send(bob, &a_id, id, &out).await;
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
    send(bob, &a_id, id, &out).await;
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
    send(bob, &a_id, id, &out).await;
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
    send(alice, &b_id, id2, &out).await;
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
    send(alice, &b_id, id2, &out).await;
    let secret_hex: String = secret2
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for entry in std::fs::read_dir(p.dir.path().join("relay"))
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

// ---- Whole calls through the phone: real WebRTC media ------------------------------------

use tessera_calls::media::{AudioTap, BAR_STEP, dominant_frequency};
use tessera_calls::session::{IcePolicy, candidates};
use tessera_core::phone::{Phone, PhoneOptions};

/// Waits until `f` holds, polling every 100 ms, for at most `secs`.
async fn until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The dominant frequency of the last half second a tap heard, once it heard that much.
async fn hears(tap: &AudioTap, want: f64) -> f64 {
    tap.clear();
    until(15, "half a second of audio", || {
        tap.samples().len() >= 24_000
    })
    .await;
    let samples = tap.samples();
    let f = dominant_frequency(&samples[samples.len() - 24_000..]).unwrap_or(0.0);
    assert!((f - want).abs() <= 3.0, "heard {f} Hz, expected {want} Hz");
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_relay_only_audio_440_one_way_880_back_tampered_frame_dropped_hang_up_ends_both() {
    let p = pair().await;
    let (a_media, b_media) = (Synthetic::new(440.0), Synthetic::new(880.0));
    let alice = Phone::new(p.alice.clone(), a_media.clone(), PhoneOptions::default());
    let bob = Phone::new(p.bob.clone(), b_media.clone(), PhoneOptions::default());
    let (mut a_ev, mut b_ev) = (alice.subscribe(), bob.subscribe());
    assert_eq!(alice.policy().unwrap(), IcePolicy::RelayOnly, "the default");

    let id = alice.dial(&p.b_id, false).await.unwrap();
    assert_eq!(incoming(&mut b_ev).await, (id, false));
    reaches(&mut a_ev, 20, State::Ringing).await;
    bob.accept().await.unwrap();
    for ev in [&mut a_ev, &mut b_ev] {
        reaches(ev, 30, State::Active).await;
    }

    // Relay-only: both descriptions carry relay candidates and nothing else.
    let (a_session, b_session) = (alice.session().await.unwrap(), bob.session().await.unwrap());
    for sdp in [
        a_session.local_sdp().await.unwrap(),
        a_session.remote_sdp().await.unwrap(),
        b_session.local_sdp().await.unwrap(),
    ] {
        let all: Vec<&str> = candidates(&sdp).collect();
        assert!(!all.is_empty(), "no candidates in\n{sdp}");
        assert!(
            all.iter().all(|c| c.contains(" typ relay")),
            "a non-relay candidate in a relay-only call: {all:?}"
        );
    }

    // 440 Hz arrives at Bob, 880 Hz at Alice, decoded from Opus.
    let heard_by_bob = hears(&b_media.heard, 440.0).await;
    let heard_by_alice = hears(&a_media.heard, 880.0).await;
    println!("bob heard {heard_by_bob} Hz, alice heard {heard_by_alice} Hz");

    // A frame damaged after sealing is dropped and counted by Bob's frame layer; the audio
    // carries on.
    let before = b_session.stats();
    assert_eq!(before.audio_frames.unauthentic, 0);
    a_session.tamper_next_audio_frame();
    until(10, "the damaged frame to be dropped", || {
        b_session.stats().audio_frames.unauthentic == 1
    })
    .await;
    let after_drop = b_session.stats().audio_received;
    until(10, "audio after the dropped frame", || {
        b_session.stats().audio_received > after_drop + 25
    })
    .await;
    let status = bob.status().await.unwrap();
    assert_eq!(status.state, State::Active);
    assert_eq!(status.policy, IcePolicy::RelayOnly);
    println!("bob's stats: {:?}", status.stats);

    // Bob hangs up: the call ends on both sides.
    bob.hang_up().await.unwrap();
    let b_end = ended(&mut b_ev, 10).await;
    let a_end = ended(&mut a_ev, 20).await;
    assert_eq!((b_end, a_end), (EndReason::HungUp, EndReason::RemoteHungUp));
    assert!(alice.status().await.is_none() && bob.status().await.is_none());
    assert!(a_session.failed(), "Alice's media connection is closed");

    // Nothing of the call is in either conversation.
    assert!(p.alice.history(&p.b_id, None, 10).unwrap().is_empty());
    drop(p.relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_video_direct_test_pattern_arrives_in_order_and_offline_contact_is_unavailable() {
    let p = pair().await;
    let (a_media, b_media) = (Synthetic::new(440.0), Synthetic::new(880.0));
    let options = PhoneOptions {
        loopback: true,
        video_format: Some(SMALL_VIDEO),
    };
    for e in [&p.alice, &p.bob] {
        e.set_app_setting("call_ice_policy", "direct").unwrap();
    }
    let alice = Phone::new(p.alice.clone(), a_media.clone(), options);
    let bob = Phone::new(p.bob.clone(), b_media.clone(), options);
    let (mut a_ev, mut b_ev) = (alice.subscribe(), bob.subscribe());

    let id = alice.dial(&p.b_id, true).await.unwrap();
    assert_eq!(incoming(&mut b_ev).await, (id, true));
    bob.accept().await.unwrap();
    reaches(&mut a_ev, 30, State::Active).await;
    let a_session = alice.session().await.unwrap();
    let offer = a_session.local_sdp().await.unwrap();
    assert!(
        candidates(&offer).any(|c| c.contains(" typ host")),
        "direct mode offers host candidates (what relay-only must not): {offer}"
    );

    // Bob sees Alice's test pattern, decoded from VP8: recognisable, moving, in order.
    until(20, "60 pictures at Bob", || b_media.seen.bars().len() >= 60).await;
    until(20, "60 pictures at Alice", || {
        a_media.seen.bars().len() >= 60
    })
    .await;
    for (who, tap) in [("bob", &b_media.seen), ("alice", &a_media.seen)] {
        let bars = tap.bars();
        let found: Vec<u32> = bars.iter().flatten().copied().collect();
        assert!(
            found.len() * 10 >= bars.len() * 9,
            "{who}: the bar was found in {} of {} pictures",
            found.len(),
            bars.len()
        );
        let forward = found
            .windows(2)
            .filter(|w| w[1] > w[0] && (w[1] - w[0]) % BAR_STEP == 0)
            .count();
        assert!(
            forward * 10 >= (found.len() - 1) * 8,
            "{who}: the bar moved forward in {forward} of {} steps: {found:?}",
            found.len() - 1
        );
        let last = tap.last().unwrap();
        assert_eq!(
            (last.width, last.height),
            (SMALL_VIDEO.width, SMALL_VIDEO.height)
        );
    }
    // Audio flows too, each way its own tone.
    hears(&b_media.heard, 440.0).await;
    let status = alice.status().await.unwrap();
    assert!(
        status.video && status.stats.video_received >= 60,
        "{status:?}"
    );
    println!("alice's stats: {:?}", status.stats);

    // Camera off: Bob stops receiving pictures.
    alice.set_camera(false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = b_media.seen.bars().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        b_media.seen.bars().len() <= seen + 1,
        "pictures kept coming with the camera off"
    );

    // Alice hangs up: both end.
    alice.hang_up().await.unwrap();
    let b_end = ended(&mut b_ev, 20).await;
    assert_eq!(b_end, EndReason::RemoteHungUp);
    let a_end = ended(&mut a_ev, 10).await;
    assert_eq!(a_end, EndReason::HungUp);

    // Bob's device goes offline (locked): Alice's next call ends as unavailable.
    p.bob.lock();
    let started = std::time::Instant::now();
    alice.dial(&p.b_id, false).await.unwrap();
    let reason = ended(&mut a_ev, 40).await;
    assert_eq!(reason, EndReason::Unavailable);
    println!("unavailable after {:?}", started.elapsed());
    drop(p.relay);
}
