//! Calls between two accounts for the end-to-end checks and the benchmarks: accounts on a
//! real relay with its TURN service, and synthetic devices (a tone for a microphone, the
//! moving test pattern for a camera, taps for the speaker and the screen).

use std::sync::Arc;
use std::time::Duration;

use tessera_calls::call::{CallId, EndReason, State};
use tessera_calls::codec::VideoFormat;
use tessera_calls::media::{AudioTap, TestPattern, Tone, VideoTap};
use tessera_calls::session::Media;
use tessera_core::phone::{CallEvent, MediaProvider};
use tessera_core::{CreateOptions, Engine, Event, KdfParams, OsKeyring, TransportConfig};
use tokio::sync::broadcast;
use zeroize::Zeroizing;

use crate::relay::Relay;

/// A new account `name` under `dir` on `relay`, reaching it directly.
pub async fn account(dir: &std::path::Path, relay: &Relay, name: &str) -> Engine {
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

/// The next item of `rx` matching `f`, within `secs` (a lagging receiver skips on).
async fn next_matching<E: Clone, T>(
    rx: &mut broadcast::Receiver<E>,
    secs: u64,
    f: impl Fn(&E) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if let Some(t) = f(&e) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("the event stream ended: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no such event within {secs} s"))
}

/// The next engine event matching `f`, within 20 s.
pub async fn next_event<T>(
    rx: &mut broadcast::Receiver<Event>,
    f: impl Fn(&Event) -> Option<T>,
) -> T {
    next_matching(rx, 20, f).await
}

/// A device with a tone for a microphone and taps for a speaker and a screen.
pub struct Synthetic {
    tone: f64,
    /// What the speaker got.
    pub heard: AudioTap,
    /// What the screen got.
    pub seen: VideoTap,
    /// The camera's format.
    pub format: VideoFormat,
}

impl Synthetic {
    /// A device whose microphone plays `tone` Hz.
    pub fn new(tone: f64) -> Arc<Self> {
        Arc::new(Self {
            tone,
            heard: AudioTap::new(48_000),
            seen: VideoTap::new(),
            format: SMALL_VIDEO,
        })
    }
}

/// Video for the checks: small enough for a debug build on two cores.
pub const SMALL_VIDEO: VideoFormat = VideoFormat {
    width: 320,
    height: 180,
    fps: 30,
    kbps: 400,
};

impl MediaProvider for Synthetic {
    fn media(&self, video: bool) -> Media {
        Media {
            audio_in: Box::new(Tone::new(self.tone)),
            audio_out: Box::new(self.heard.clone()),
            video_in: video
                .then(|| Box::new(TestPattern::new(self.format.width, self.format.height)) as _),
            video_out: Some(Box::new(self.seen.clone())),
        }
    }
}

/// Alice and Bob, contacts of each other, on one relay.
pub struct Pair {
    /// Holds every file.
    pub dir: tempfile::TempDir,
    /// The relay.
    pub relay: Relay,
    /// The caller.
    pub alice: Engine,
    /// The callee.
    pub bob: Engine,
    /// Alice's account id.
    pub a_id: [u8; 32],
    /// Bob's account id.
    pub b_id: [u8; 32],
}

/// Two accounts that are each other's contacts, both running, on a relay with TURN.
pub async fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(&dir.path().join("relay"), &["--turn-listen", "127.0.0.1:0"]);
    assert!(
        relay
            .turn
            .as_deref()
            .is_some_and(|t| t.starts_with("turn:127.0.0.1:"))
    );
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
    next_event(&mut b_rx, |e| {
        matches!(e, Event::ContactRequest { .. }).then_some(())
    })
    .await;
    bob.answer_request(&a_id, true).await.unwrap();
    next_event(&mut a_rx, |e| {
        matches!(e, Event::ContactAccepted { .. }).then_some(())
    })
    .await;
    Pair {
        dir,
        relay,
        alice,
        bob,
        a_id,
        b_id,
    }
}

/// The next call event matching `f`, within `secs`.
pub async fn call_event<T>(
    rx: &mut broadcast::Receiver<CallEvent>,
    secs: u64,
    f: impl Fn(&CallEvent) -> Option<T>,
) -> T {
    next_matching(rx, secs, f).await
}

/// Waits (up to `secs`) until the call is in `state`.
pub async fn reaches(rx: &mut broadcast::Receiver<CallEvent>, secs: u64, state: State) {
    call_event(rx, secs, |e| {
        matches!(e, CallEvent::State { state: s, .. } if *s == state).then_some(())
    })
    .await;
}

/// Waits (up to 20 s) for an incoming call: its id and whether it has video.
pub async fn incoming(rx: &mut broadcast::Receiver<CallEvent>) -> (CallId, bool) {
    call_event(rx, 20, |e| match e {
        CallEvent::Incoming { call, video, .. } => Some((*call, *video)),
        _ => None,
    })
    .await
}

/// Waits (up to `secs`) for the call to end: why it ended.
pub async fn ended(rx: &mut broadcast::Receiver<CallEvent>, secs: u64) -> EndReason {
    call_event(rx, secs, |e| match e {
        CallEvent::Ended { reason, .. } => Some(*reason),
        _ => None,
    })
    .await
}
