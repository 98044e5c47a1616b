//! The phone (`docs/calls.md`): one call at a time, driven by the call state machine, with
//! its signals carried by the engine (Signal session, never readable by the relay) and its
//! media by a [`MediaSession`]. The app and the tests use the same phone; only the media
//! differ (devices in the app, synthetic sources and analysing sinks in the tests).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng as _;
use tessera_calls::call::{Call, EndReason, Input, Output, Role, State};
use tessera_calls::session::{
    IcePolicy, IceServer, Media, MediaSession, SessionConfig, SessionError, SessionStats,
};
use tokio::sync::{Mutex, broadcast};

use crate::Event;
use crate::calls::{CallId, Signal};
use crate::{CoreError, Engine};

/// App setting: `relay_only` (default) or `direct`.
pub const ICE_POLICY_SETTING: &str = "call_ice_policy";
/// App setting: `on` lets calls leave Tor (TURN is UDP, which Tor does not carry).
pub const OUTSIDE_TOR_SETTING: &str = "calls_outside_tor";

/// Why a call could not be placed or answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// Another call is going on.
    #[error("another call is in progress")]
    InProgress,
    /// There is no call to act on (or not in a state that allows it).
    #[error("no call to do that with")]
    NoCall,
    /// Relay-only calls need the relay's TURN service, and this relay runs none.
    #[error("this relay offers no TURN service, so relay-only calls are not possible")]
    NoTurn,
    /// The account reaches its relay through Tor and calls have not been allowed outside it.
    #[error("calls use UDP, which Tor does not carry; allow calls outside Tor in Settings first")]
    OutsideTor,
    /// The media path failed.
    #[error(transparent)]
    Media(#[from] SessionError),
}

/// Gives each call its microphone, speaker, camera and video view.
pub trait MediaProvider: Send + Sync {
    /// The media for a new call (`video`: the call has video).
    fn media(&self, video: bool) -> Media;
}

/// What the phone tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A contact is calling: ring and show the incoming-call screen.
    Incoming {
        /// The call.
        call: CallId,
        /// Who.
        contact: [u8; 32],
        /// With video.
        video: bool,
    },
    /// The call changed state.
    State {
        /// The call.
        call: CallId,
        /// Its state now.
        state: State,
    },
    /// The call is over (the media are gone).
    Ended {
        /// The call.
        call: CallId,
        /// Why.
        reason: EndReason,
    },
}

/// The call screen's view of the call.
#[derive(Debug, Clone)]
pub struct CallStatus {
    /// The call.
    pub call: CallId,
    /// The other side.
    pub contact: [u8; 32],
    /// Who dialled.
    pub role: Role,
    /// Where it is.
    pub state: State,
    /// With video.
    pub video: bool,
    /// Relay-only or direct.
    pub policy: IcePolicy,
    /// Microphone muted.
    pub muted: bool,
    /// Camera on.
    pub camera: bool,
    /// Time since media started flowing.
    pub duration: Option<Duration>,
    /// Frame and byte counts.
    pub stats: SessionStats,
    /// The peer connection's state.
    pub connection: String,
}

/// Test and development options.
#[derive(Debug, Clone, Copy, Default)]
pub struct PhoneOptions {
    /// Offer loopback host candidates (two devices on one machine).
    pub loopback: bool,
    /// The video format to send on video calls (default: 640×360 at 30 fps).
    pub video_format: Option<tessera_calls::codec::VideoFormat>,
}

struct Current {
    contact: [u8; 32],
    call: Call,
    session: Option<Arc<MediaSession>>,
    /// The caller's offer, until the user answers.
    offer: Option<(String, [u8; 32])>,
    policy: IcePolicy,
    muted: bool,
    camera: bool,
    active_since: Option<Instant>,
    /// The state last told to the owner.
    shown: State,
}

struct Inner {
    engine: Engine,
    media: Arc<dyn MediaProvider>,
    options: PhoneOptions,
    clock: Instant,
    current: Mutex<Option<Current>>,
    events: broadcast::Sender<CallEvent>,
}

/// One device's phone.
#[derive(Clone)]
pub struct Phone {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phone").finish_non_exhaustive()
    }
}

impl Phone {
    /// A phone on `engine`; it listens for call signals and drives timeouts until the engine
    /// locks (a lock ends any call).
    pub fn new(engine: Engine, media: Arc<dyn MediaProvider>, options: PhoneOptions) -> Self {
        let (events, _) = broadcast::channel(64);
        let phone = Self {
            inner: Arc::new(Inner {
                engine,
                media,
                options,
                clock: Instant::now(),
                current: Mutex::new(None),
                events,
            }),
        };
        let weak = Arc::downgrade(&phone.inner);
        let mut engine_events = phone.inner.engine.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                let event = tokio::select! {
                    e = engine_events.recv() => Some(e),
                    _ = tick.tick() => None,
                };
                let Some(inner) = weak.upgrade() else { return };
                let phone = Phone { inner };
                match event {
                    Some(Ok(Event::Call {
                        contact,
                        call,
                        signal,
                    })) => phone.remote(contact, call, signal).await,
                    Some(Ok(Event::Locked { .. })) => {
                        phone.end_now(EndReason::HungUp).await;
                        return;
                    }
                    Some(Err(broadcast::error::RecvError::Closed)) => return,
                    Some(_) => {}
                    None => phone.tick().await,
                }
            }
        });
        phone
    }

    /// What happens to calls from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CallEvent> {
        self.inner.events.subscribe()
    }

    fn now(&self) -> Duration {
        self.inner.clock.elapsed()
    }

    fn emit(&self, e: CallEvent) {
        let _ = self.inner.events.send(e);
    }

    /// The call going on, if any.
    pub async fn status(&self) -> Option<CallStatus> {
        let current = self.inner.current.lock().await;
        let c = current.as_ref()?;
        Some(CallStatus {
            call: c.call.id(),
            contact: c.contact,
            role: c.call.role(),
            state: c.call.state(),
            video: c.call.video(),
            policy: c.policy,
            muted: c.muted,
            camera: c.camera,
            duration: c.active_since.map(|t| t.elapsed()),
            stats: c.session.as_ref().map(|s| s.stats()).unwrap_or_default(),
            connection: c
                .session
                .as_ref()
                .map(|s| s.connection_state())
                .unwrap_or_else(|| "new".into()),
        })
    }

    /// The ICE policy from the settings.
    pub fn policy(&self) -> Result<IcePolicy, CoreError> {
        Ok(self
            .inner
            .engine
            .app_setting(ICE_POLICY_SETTING)?
            .as_deref()
            .and_then(IcePolicy::parse)
            .unwrap_or(IcePolicy::RelayOnly))
    }

    async fn session_config(&self, video: bool) -> Result<SessionConfig, CoreError> {
        let engine = &self.inner.engine;
        if engine.configured_transport()? == "tor"
            && engine.app_setting(OUTSIDE_TOR_SETTING)?.as_deref() != Some("on")
        {
            return Err(CallError::OutsideTor.into());
        }
        let policy = self.policy()?;
        let client = engine.connect().await?;
        let ice_servers = match client.turn_credentials().await? {
            Some(t) => vec![IceServer {
                urls: t.urls.clone(),
                username: t.username.clone(),
                credential: t.credential.to_string(),
            }],
            None if policy == IcePolicy::RelayOnly => return Err(CallError::NoTurn.into()),
            None => Vec::new(),
        };
        let mut config = SessionConfig::new(policy, ice_servers, video);
        config.loopback = self.inner.options.loopback;
        if video && let Some(f) = self.inner.options.video_format {
            config.video = Some(f);
        }
        Ok(config)
    }

    /// Calls an accepted contact.
    pub async fn dial(&self, contact: &[u8; 32], video: bool) -> Result<CallId, CoreError> {
        let mut current = self.inner.current.lock().await;
        if current.as_ref().is_some_and(|c| !is_ended(c.call.state())) {
            return Err(CallError::InProgress.into());
        }
        // Only accepted contacts can be called; the engine checks again when sending.
        let known = self.inner.engine.contacts()?;
        if !known
            .iter()
            .any(|c| c.account_id == *contact && c.state == tessera_store::ContactState::Accepted)
        {
            return Err(CoreError::UnknownContact);
        }
        let config = self.session_config(video).await?;
        let policy = config.policy;
        let session = Arc::new(
            MediaSession::new(config, self.inner.media.media(video))
                .await
                .map_err(CallError::from)?,
        );
        let sdp = session.offer().await.map_err(CallError::from)?;
        let id = CallId(rand::rng().random());
        let (call, out) = Call::dial(id, sdp, video, session.local_secret(), self.now());
        *current = Some(Current {
            contact: *contact,
            call,
            session: Some(session.clone()),
            offer: None,
            policy,
            muted: false,
            camera: video,
            active_since: None,
            shown: State::Dialing,
        });
        self.emit(CallEvent::State {
            call: id,
            state: State::Dialing,
        });
        self.watch_media(id, session);
        self.apply(&mut current, out).await;
        Ok(id)
    }

    /// Answers the ringing call.
    pub async fn accept(&self) -> Result<(), CoreError> {
        let mut current = self.inner.current.lock().await;
        let Some(c) = current.as_mut() else {
            return Err(CallError::NoCall.into());
        };
        if c.call.state() != State::Incoming {
            return Err(CallError::NoCall.into());
        }
        let Some((offer, secret)) = c.offer.take() else {
            return Err(CallError::NoCall.into());
        };
        let video = c.call.video();
        let id = c.call.id();
        let setup = async {
            let config = self.session_config(video).await?;
            let policy = config.policy;
            let session = Arc::new(
                MediaSession::new(config, self.inner.media.media(video))
                    .await
                    .map_err(CallError::from)?,
            );
            let answer = session
                .answer(&offer, secret)
                .await
                .map_err(CallError::from)?;
            Ok::<_, CoreError>((session, answer, policy))
        };
        let (session, answer, policy) = match setup.await {
            Ok(x) => x,
            Err(e) => {
                // Tell the caller instead of leaving it ringing.
                let out = c.call.handle(Input::Reject, self.now());
                self.apply(&mut current, out).await;
                return Err(e);
            }
        };
        c.session = Some(session.clone());
        c.policy = policy;
        let out = c.call.handle(
            Input::Accept {
                sdp: answer,
                secret: session.local_secret(),
            },
            self.now(),
        );
        self.watch_media(id, session);
        self.apply(&mut current, out).await;
        Ok(())
    }

    /// Declines the ringing call.
    pub async fn reject(&self) -> Result<(), CoreError> {
        self.input(Input::Reject).await
    }

    /// Hangs up (or cancels an unanswered call).
    pub async fn hang_up(&self) -> Result<(), CoreError> {
        self.input(Input::HangUp).await
    }

    /// Mutes or unmutes the microphone.
    pub async fn set_muted(&self, muted: bool) -> Result<(), CoreError> {
        self.with_call(|c| {
            c.muted = muted;
            if let Some(s) = &c.session {
                s.set_muted(muted);
            }
        })
        .await
    }

    /// Turns the camera on or off.
    pub async fn set_camera(&self, on: bool) -> Result<(), CoreError> {
        self.with_call(|c| {
            c.camera = on;
            if let Some(s) = &c.session {
                s.set_camera(on);
            }
        })
        .await
    }

    /// Applies `f` to the call going on (`NoCall` if there is none).
    async fn with_call(&self, f: impl FnOnce(&mut Current)) -> Result<(), CoreError> {
        let mut current = self.inner.current.lock().await;
        f(current.as_mut().ok_or(CallError::NoCall)?);
        Ok(())
    }

    /// The media session of the call going on (for the call screen's numbers and the tests).
    pub async fn session(&self) -> Option<Arc<MediaSession>> {
        self.inner
            .current
            .lock()
            .await
            .as_ref()
            .and_then(|c| c.session.clone())
    }

    async fn input(&self, input: Input) -> Result<(), CoreError> {
        let mut current = self.inner.current.lock().await;
        let Some(c) = current.as_mut() else {
            return Err(CallError::NoCall.into());
        };
        if is_ended(c.call.state()) {
            return Err(CallError::NoCall.into());
        }
        let out = c.call.handle(input, self.now());
        self.apply(&mut current, out).await;
        Ok(())
    }

    /// Ends the call without asking the state machine (the engine locked).
    async fn end_now(&self, reason: EndReason) {
        let mut current = self.inner.current.lock().await;
        if let Some(c) = current.as_mut()
            && !is_ended(c.call.state())
        {
            let out = c.call.handle(Input::HangUp, self.now());
            // The hang-up may not get out (the engine is locked): the peer's connection
            // times out instead.
            let out: Vec<Output> = out
                .into_iter()
                .filter(|o| !matches!(o, Output::Send(_)))
                .collect();
            self.apply(&mut current, out).await;
        }
        if let Some(c) = current.take() {
            if let Some(s) = c.session {
                s.close().await;
            }
            self.emit(CallEvent::Ended {
                call: c.call.id(),
                reason,
            });
        }
    }

    fn watch_media(&self, id: CallId, session: Arc<MediaSession>) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let flowing = session.media_flowing().await;
            drop(session);
            let Some(inner) = weak.upgrade() else { return };
            let phone = Phone { inner };
            let mut current = phone.inner.current.lock().await;
            let Some(c) = current.as_mut() else { return };
            if c.call.id() != id || is_ended(c.call.state()) {
                return;
            }
            let out = if flowing {
                c.call.handle(Input::MediaFlowing, phone.now())
            } else {
                // The connection failed before any media: hang up; the caller's side reports
                // it as failed through the connect timeout if the hang-up is lost.
                tracing::info!("call media failed before flowing");
                c.call.handle(Input::HangUp, phone.now())
            };
            phone.apply(&mut current, out).await;
        });
    }

    async fn remote(&self, contact: [u8; 32], id: CallId, signal: Signal) {
        let mut current = self.inner.current.lock().await;
        let busy = current
            .as_ref()
            .is_some_and(|c| !is_ended(c.call.state()) && c.call.id() != id);
        if let Signal::Offer { sdp, video, secret } = &signal {
            if busy {
                if let Err(e) = self
                    .inner
                    .engine
                    .send_call_signal(&contact, id, &Call::busy_reply())
                    .await
                {
                    tracing::info!(error = %e, "could not say busy");
                }
                return;
            }
            if current.as_ref().is_some_and(|c| c.call.id() == id) {
                return; // a duplicate offer
            }
            let (call, out) = Call::incoming(id, *video, self.now());
            *current = Some(Current {
                contact,
                call,
                session: None,
                offer: Some((sdp.clone(), *secret)),
                policy: self.policy().unwrap_or(IcePolicy::RelayOnly),
                muted: false,
                camera: *video,
                active_since: None,
                shown: State::Incoming,
            });
            self.emit(CallEvent::Incoming {
                call: id,
                contact,
                video: *video,
            });
            self.apply(&mut current, out).await;
            return;
        }
        let Some(c) = current.as_mut() else { return };
        if c.contact != contact {
            return; // a signal from someone not in this call
        }
        let out = c.call.handle_remote(id, signal, self.now());
        self.apply(&mut current, out).await;
    }

    async fn tick(&self) {
        let mut current = self.inner.current.lock().await;
        let Some(c) = current.as_mut() else { return };
        if is_ended(c.call.state()) {
            return;
        }
        let lost =
            c.call.state() == State::Active && c.session.as_ref().is_some_and(|s| s.failed());
        let out = if lost {
            tracing::info!("call media lost");
            c.call.handle(Input::HangUp, self.now())
        } else {
            c.call.handle(Input::Tick, self.now())
        };
        self.apply(&mut current, out).await;
    }

    /// Carries out what the state machine asked for.
    async fn apply(&self, current: &mut Option<Current>, outputs: Vec<Output>) {
        for o in outputs {
            let Some(c) = current.as_mut() else { return };
            let id = c.call.id();
            match o {
                Output::Send(signal) => {
                    if let Err(e) = self
                        .inner
                        .engine
                        .send_call_signal(&c.contact, id, &signal)
                        .await
                    {
                        tracing::info!(error = %e, "call signal not sent");
                    }
                }
                Output::Ring => {}
                Output::StopRinging => {}
                Output::Connect { sdp, secret } => {
                    let ok = match &c.session {
                        Some(s) => s.accept_answer(&sdp, secret).await,
                        None => Err(SessionError::WebRtc("no media session".into())),
                    };
                    if let Err(e) = ok {
                        tracing::info!(error = %e, "the answer could not be applied");
                        let out = c.call.handle(Input::HangUp, self.now());
                        Box::pin(self.apply(current, out)).await;
                        return;
                    }
                }
                Output::AddCandidate(candidate) => {
                    if let Some(s) = &c.session
                        && let Err(e) = s.add_candidate(&candidate).await
                    {
                        tracing::info!(error = %e, "remote candidate refused");
                    }
                }
                Output::Active => c.active_since = Some(Instant::now()),
                Output::Ended(reason) => {
                    if let Some(s) = c.session.take() {
                        s.close().await;
                    }
                    *current = None;
                    self.emit(CallEvent::Ended { call: id, reason });
                    return;
                }
            }
        }
        // Every change of state reaches the screen once.
        if let Some(c) = current.as_mut()
            && c.call.state() != c.shown
        {
            c.shown = c.call.state();
            self.emit(CallEvent::State {
                call: c.call.id(),
                state: c.shown,
            });
        }
    }
}

fn is_ended(s: State) -> bool {
    matches!(s, State::Ended(_))
}
