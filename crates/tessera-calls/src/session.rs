//! The media path of one call (`docs/calls.md` §Media path): a WebRTC peer connection
//! (`webrtc` crate: ICE, DTLS-SRTP, RTP) carrying one Opus track and, for video calls, one VP8
//! track. Every encoded frame is sealed with the sender's frame key before it is packetised
//! and opened after the receiver has reassembled it; a frame that does not open is dropped and
//! counted, never decoded.
//!
//! The session does not signal: it produces the SDP for the offer or answer (with all
//! candidates gathered, so nothing else needs to be sent) and takes the peer's. The caller of
//! the session carries them inside the Signal session.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::media::Sample;
use webrtc::media::io::sample_builder::SampleBuilder;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::policy::ice_transport_policy::RTCIceTransportPolicy;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp::codecs::opus::OpusPacket;
use webrtc::rtp::codecs::vp8::Vp8Packet;
use webrtc::rtp::packetizer::Depacketizer;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_remote::TrackRemote;

use crate::codec::{CodecError, OpusDecoder, OpusEncoder, VideoFormat, Vp8Decoder, Vp8Encoder};
use crate::frame::{FrameError, FrameOpener, FrameSealer, FrameSecret, FrameStats, Track};
use crate::media::{AudioSink, AudioSource, FRAME_SAMPLES, VideoSink, VideoSource};

/// Which ICE candidates a call uses (`docs/calls.md` §ICE policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcePolicy {
    /// Only candidates on the relay's TURN service: neither side learns the other's address.
    RelayOnly,
    /// Host and relay candidates: lower latency, but each side learns the other's addresses.
    Direct,
}

impl IcePolicy {
    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RelayOnly => "relay_only",
            Self::Direct => "direct",
        }
    }

    /// From the setting's value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "relay_only" => Some(Self::RelayOnly),
            "direct" => Some(Self::Direct),
            _ => None,
        }
    }
}

/// A TURN server and its short-lived credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `turn:host:port?transport=udp` URLs.
    pub urls: Vec<String>,
    /// Username (time-limited, from the relay).
    pub username: String,
    /// Credential.
    pub credential: String,
}

impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

/// How to set up a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Candidate policy.
    pub policy: IcePolicy,
    /// The relay's TURN service (required for [`IcePolicy::RelayOnly`]).
    pub ice_servers: Vec<IceServer>,
    /// The video format to send, or `None` for an audio call.
    pub video: Option<VideoFormat>,
    /// Opus bitrate, bit/s.
    pub audio_bitrate: i32,
    /// Offer host candidates on loopback (two devices on one machine, as in the tests).
    pub loopback: bool,
}

impl SessionConfig {
    /// Relay-only audio call (video if `video`) through `ice_servers`.
    pub fn new(policy: IcePolicy, ice_servers: Vec<IceServer>, video: bool) -> Self {
        Self {
            policy,
            ice_servers,
            video: video.then_some(VideoFormat::CALL),
            audio_bitrate: 32_000,
            loopback: false,
        }
    }
}

/// What the call captures and plays.
pub struct Media {
    /// Microphone (or a tone).
    pub audio_in: Box<dyn AudioSource>,
    /// Speaker (or an analyser).
    pub audio_out: Box<dyn AudioSink>,
    /// Camera (or a test pattern); `None` sends no video.
    pub video_in: Option<Box<dyn VideoSource>>,
    /// Where the peer's pictures go; `None` ignores them.
    pub video_out: Option<Box<dyn VideoSink>>,
}

/// Why the media path failed. Carries no SDP and no key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The WebRTC stack refused (bad SDP, ICE or DTLS setup failure).
    #[error("media connection: {0}")]
    WebRtc(String),
    /// Relay-only needs a TURN server and none was given.
    #[error("relay-only calls need the relay's TURN service, and it offers none")]
    NoTurn,
    /// The peer's SDP is unusable (too long, no media we speak, or candidates that break the
    /// policy).
    #[error("the peer's session description is not acceptable: {0}")]
    BadRemote(&'static str),
    /// Gathering candidates took too long (the TURN server did not answer).
    #[error("no network candidates within {0:?} (is the relay's TURN service reachable?)")]
    Gathering(Duration),
    /// A codec could not start.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Frame encryption could not start.
    #[error("frame encryption: {0}")]
    Frame(#[from] FrameError),
}

fn webrtc_err(e: webrtc::Error) -> SessionError {
    SessionError::WebRtc(e.to_string())
}

/// The longest SDP taken from a peer (the signalling layer enforces the same).
pub const MAX_SDP: usize = 16 * 1024;
/// How long candidate gathering may take.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts for the call screen and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Audio frames sent.
    pub audio_sent: u64,
    /// Video frames sent.
    pub video_sent: u64,
    /// Audio frames received, opened and decoded.
    pub audio_received: u64,
    /// Video pictures received, opened and decoded.
    pub video_received: u64,
    /// Encrypted bytes sent (frame payloads, before RTP/SRTP overhead).
    pub bytes_sent: u64,
    /// Encrypted bytes received.
    pub bytes_received: u64,
    /// What the audio frame layer did with the peer's frames.
    pub audio_frames: FrameStats,
    /// What the video frame layer did with the peer's frames.
    pub video_frames: FrameStats,
    /// Frames that opened but did not decode.
    pub undecodable: u64,
}

impl SessionStats {
    /// Frames dropped by the frame layer (all reasons, both tracks).
    pub fn dropped(&self) -> u64 {
        let d = |s: &FrameStats| s.malformed + s.unknown_key + s.replayed + s.unauthentic;
        d(&self.audio_frames) + d(&self.video_frames)
    }
}

#[derive(Default)]
struct Counters {
    audio_sent: AtomicU64,
    video_sent: AtomicU64,
    audio_received: AtomicU64,
    video_received: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    undecodable: AtomicU64,
}

struct Shared {
    started: Instant,
    counters: Counters,
    audio_frames: Mutex<FrameStats>,
    video_frames: Mutex<FrameStats>,
    remote_secret: Mutex<Option<FrameSecret>>,
    audio_out: Mutex<Option<Box<dyn AudioSink>>>,
    video_out: Mutex<Option<Box<dyn VideoSink>>>,
    muted: AtomicBool,
    camera_off: AtomicBool,
    key_frame_wanted: AtomicBool,
    /// Set when the first authentic frame from the peer opened.
    flowing: watch::Sender<bool>,
    /// The peer connection's state.
    state: watch::Sender<RTCPeerConnectionState>,
    /// The next audio frame sent is damaged after sealing (a test of the peer's frame check).
    tamper_next_audio: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The capture side, until the send loops take it.
type Sources = (Box<dyn AudioSource>, Option<Box<dyn VideoSource>>);

/// One call's media path.
pub struct MediaSession {
    pc: Arc<RTCPeerConnection>,
    audio: Arc<TrackLocalStaticSample>,
    video: Option<(Arc<TrackLocalStaticSample>, VideoFormat)>,
    local_secret: FrameSecret,
    shared: Arc<Shared>,
    sources: Mutex<Option<Sources>>,
    config: SessionConfig,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("policy", &self.config.policy)
            .field("video", &self.video.as_ref().map(|v| v.1))
            .finish_non_exhaustive()
    }
}

impl MediaSession {
    /// A session with a fresh frame secret for what this side sends.
    pub async fn new(config: SessionConfig, media: Media) -> Result<Self, SessionError> {
        if config.policy == IcePolicy::RelayOnly && config.ice_servers.is_empty() {
            return Err(SessionError::NoTurn);
        }
        let mut engine = MediaEngine::default();
        engine.register_default_codecs().map_err(webrtc_err)?;
        let registry =
            register_default_interceptors(Registry::new(), &mut engine).map_err(webrtc_err)?;
        let mut settings = SettingEngine::default();
        settings.set_network_types(vec![NetworkType::Udp4, NetworkType::Udp6]);
        // mDNS names would announce this host on the local network; relay-only hides
        // addresses instead.
        settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
        if config.policy == IcePolicy::RelayOnly {
            // Only relay pairs exist: waiting (2 s by default) for a better pair to show up
            // would only delay the call.
            settings.set_relay_acceptance_min_wait(Some(Duration::ZERO));
        }
        if config.loopback {
            settings.set_include_loopback_candidate(true);
            settings.set_ip_filter(Box::new(|ip: IpAddr| ip.is_loopback()));
        }
        let api = APIBuilder::new()
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .build();
        let rtc = RTCConfiguration {
            ice_servers: config
                .ice_servers
                .iter()
                .map(|s| RTCIceServer {
                    urls: s.urls.clone(),
                    username: s.username.clone(),
                    credential: s.credential.clone(),
                })
                .collect(),
            ice_transport_policy: match config.policy {
                IcePolicy::RelayOnly => RTCIceTransportPolicy::Relay,
                IcePolicy::Direct => RTCIceTransportPolicy::All,
            },
            ..Default::default()
        };
        let pc = Arc::new(api.new_peer_connection(rtc).await.map_err(webrtc_err)?);

        let audio = Arc::new(TrackLocalStaticSample::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                ..Default::default()
            },
            "audio".to_owned(),
            "tessera".to_owned(),
        ));
        let video = config.video.map(|format| {
            (
                Arc::new(TrackLocalStaticSample::new(
                    RTCRtpCodecCapability {
                        mime_type: MIME_TYPE_VP8.to_owned(),
                        clock_rate: 90_000,
                        ..Default::default()
                    },
                    "video".to_owned(),
                    "tessera".to_owned(),
                )),
                format,
            )
        });

        let (flowing, _) = watch::channel(false);
        let (state, _) = watch::channel(RTCPeerConnectionState::New);
        let shared = Arc::new(Shared {
            started: Instant::now(),
            counters: Counters::default(),
            audio_frames: Mutex::new(FrameStats::default()),
            video_frames: Mutex::new(FrameStats::default()),
            remote_secret: Mutex::new(None),
            audio_out: Mutex::new(Some(media.audio_out)),
            video_out: Mutex::new(media.video_out),
            muted: AtomicBool::new(false),
            camera_off: AtomicBool::new(false),
            key_frame_wanted: AtomicBool::new(false),
            flowing,
            state,
            tamper_next_audio: AtomicBool::new(false),
        });

        let mut tasks = Vec::new();
        let mut tracks: Vec<Arc<dyn TrackLocal + Send + Sync>> = vec![audio.clone()];
        if let Some((v, _)) = &video {
            tracks.push(v.clone());
        }
        for (i, track) in tracks.into_iter().enumerate() {
            let sender = pc.add_track(track).await.map_err(webrtc_err)?;
            let shared = shared.clone();
            // Drain RTCP (the interceptors need it) and watch for picture-loss requests.
            tasks.push(tokio::spawn(async move {
                while let Ok((packets, _)) = sender.read_rtcp().await {
                    if i == 1
                        && packets
                            .iter()
                            .any(|p| p.as_any().downcast_ref::<PictureLossIndication>().is_some())
                    {
                        shared.key_frame_wanted.store(true, Ordering::Relaxed);
                    }
                }
            }));
        }
        let weak = Arc::downgrade(&pc);
        let on_track_shared = shared.clone();
        pc.on_track(Box::new(move |track, _receiver, _transceiver| {
            let shared = on_track_shared.clone();
            let pc = weak.clone();
            Box::pin(async move {
                tokio::spawn(receive(track, shared, pc));
            })
        }));
        let state_shared = shared.clone();
        pc.on_peer_connection_state_change(Box::new(move |s| {
            state_shared.state.send_replace(s);
            Box::pin(async {})
        }));

        let mut rng = rand::rng();
        Ok(Self {
            pc,
            audio,
            video,
            local_secret: FrameSecret::random(&mut rng),
            shared,
            sources: Mutex::new(Some((media.audio_in, media.video_in))),
            config,
            tasks: Mutex::new(tasks),
        })
    }

    /// The secret this side seals under (goes into the offer or answer).
    pub fn local_secret(&self) -> [u8; 32] {
        *self.local_secret.as_bytes()
    }

    /// The ICE policy in use.
    pub fn policy(&self) -> IcePolicy {
        self.config.policy
    }

    /// This side's SDP, once set.
    pub async fn local_sdp(&self) -> Option<String> {
        self.pc.local_description().await.map(|d| d.sdp)
    }

    /// The peer's SDP, once set.
    pub async fn remote_sdp(&self) -> Option<String> {
        self.pc.remote_description().await.map(|d| d.sdp)
    }

    /// Caller: the offer SDP, with every candidate gathered.
    pub async fn offer(&self) -> Result<String, SessionError> {
        let offer = self.pc.create_offer(None).await.map_err(webrtc_err)?;
        self.set_local_and_gather(offer).await
    }

    /// Callee: applies the caller's offer and secret, and returns the answer SDP.
    pub async fn answer(&self, offer: &str, secret: [u8; 32]) -> Result<String, SessionError> {
        self.set_remote(offer, secret, true).await?;
        let answer = self.pc.create_answer(None).await.map_err(webrtc_err)?;
        self.set_local_and_gather(answer).await
    }

    /// Caller: applies the callee's answer and secret.
    pub async fn accept_answer(&self, answer: &str, secret: [u8; 32]) -> Result<(), SessionError> {
        self.set_remote(answer, secret, false).await
    }

    /// Adds a trickled candidate from the peer (refused in relay-only mode unless it is a
    /// relay candidate).
    pub async fn add_candidate(&self, candidate: &str) -> Result<(), SessionError> {
        if self.config.policy == IcePolicy::RelayOnly && !candidate.contains(" typ relay") {
            return Err(SessionError::BadRemote(
                "a non-relay candidate in a relay-only call",
            ));
        }
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate: candidate.to_owned(),
                ..Default::default()
            })
            .await
            .map_err(webrtc_err)
    }

    async fn set_local_and_gather(
        &self,
        desc: RTCSessionDescription,
    ) -> Result<String, SessionError> {
        let mut gathered = self.pc.gathering_complete_promise().await;
        self.pc
            .set_local_description(desc)
            .await
            .map_err(webrtc_err)?;
        tokio::time::timeout(GATHER_TIMEOUT, gathered.recv())
            .await
            .map_err(|_| SessionError::Gathering(GATHER_TIMEOUT))?;
        let sdp = self
            .pc
            .local_description()
            .await
            .ok_or_else(|| SessionError::WebRtc("no local description".into()))?
            .sdp;
        if !sdp.contains("a=candidate:") {
            return Err(SessionError::Gathering(GATHER_TIMEOUT));
        }
        Ok(sdp)
    }

    async fn set_remote(
        &self,
        sdp: &str,
        secret: [u8; 32],
        is_offer: bool,
    ) -> Result<(), SessionError> {
        if sdp.len() > MAX_SDP {
            return Err(SessionError::BadRemote("too long"));
        }
        if self.config.policy == IcePolicy::RelayOnly
            && candidates(sdp).any(|c| !c.contains(" typ relay"))
        {
            // The peer broke the policy: its host addresses must not even be tried.
            return Err(SessionError::BadRemote(
                "a non-relay candidate in a relay-only call",
            ));
        }
        *lock(&self.shared.remote_secret) = Some(FrameSecret::from_bytes(secret));
        let desc = if is_offer {
            RTCSessionDescription::offer(sdp.to_owned())
        } else {
            RTCSessionDescription::answer(sdp.to_owned())
        }
        .map_err(|_| SessionError::BadRemote("not a session description"))?;
        self.pc
            .set_remote_description(desc)
            .await
            .map_err(webrtc_err)?;
        self.start_sending();
        Ok(())
    }

    /// Starts the send loops once the connection is up (a sample written before is lost).
    fn start_sending(&self) {
        let Some((audio_in, video_in)) = lock(&self.sources).take() else {
            return;
        };
        let mut tasks = lock(&self.tasks);
        let shared = self.shared.clone();
        let track = self.audio.clone();
        let secret = self.local_secret.for_track(Track::Audio);
        let bitrate = self.config.audio_bitrate;
        tasks.push(tokio::spawn(async move {
            if wait_connected(&shared).await
                && let Err(e) = send_audio(track, secret, bitrate, audio_in, &shared).await
            {
                tracing::warn!(error = %e, "call audio stopped");
            }
        }));
        if let (Some((track, format)), Some(video_in)) = (self.video.clone(), video_in) {
            let shared = self.shared.clone();
            let secret = self.local_secret.for_track(Track::Video);
            tasks.push(tokio::spawn(async move {
                if wait_connected(&shared).await
                    && let Err(e) = send_video(track, secret, format, video_in, &shared).await
                {
                    tracing::warn!(error = %e, "call video stopped");
                }
            }));
        }
    }

    /// Resolves when the first authentic frame from the peer has opened (`false` if the
    /// connection failed or closed first).
    pub async fn media_flowing(&self) -> bool {
        let mut flowing = self.shared.flowing.subscribe();
        let mut state = self.shared.state.subscribe();
        loop {
            if *flowing.borrow_and_update() {
                return true;
            }
            if matches!(
                *state.borrow_and_update(),
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
            ) {
                return false;
            }
            tokio::select! {
                r = flowing.changed() => if r.is_err() { return false },
                r = state.changed() => if r.is_err() { return false },
            }
        }
    }

    /// The peer connection's state ("new", "connecting", "connected", "disconnected", "failed",
    /// "closed").
    pub fn connection_state(&self) -> String {
        self.shared.state.borrow().to_string()
    }

    /// Whether the connection failed or was lost for good.
    pub fn failed(&self) -> bool {
        matches!(
            *self.shared.state.borrow(),
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        )
    }

    /// Mutes the microphone (silence is sent, so the peer's timing is unchanged).
    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    /// Turns the camera off (no pictures are sent) or on.
    pub fn set_camera(&self, on: bool) {
        self.shared.camera_off.store(!on, Ordering::Relaxed);
        if on {
            self.shared.key_frame_wanted.store(true, Ordering::Relaxed);
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> SessionStats {
        let c = &self.shared.counters;
        SessionStats {
            audio_sent: c.audio_sent.load(Ordering::Relaxed),
            video_sent: c.video_sent.load(Ordering::Relaxed),
            audio_received: c.audio_received.load(Ordering::Relaxed),
            video_received: c.video_received.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            audio_frames: *lock(&self.shared.audio_frames),
            video_frames: *lock(&self.shared.video_frames),
            undecodable: c.undecodable.load(Ordering::Relaxed),
        }
    }

    /// Damages the next audio frame after sealing it, so the peer's frame layer must drop it.
    /// For the end-to-end check of that drop; nothing in the app calls it.
    #[doc(hidden)]
    pub fn tamper_next_audio_frame(&self) {
        self.shared.tamper_next_audio.store(true, Ordering::Relaxed);
    }

    /// Ends the media: stops every loop and closes the connection.
    pub async fn close(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        if let Err(e) = self.pc.close().await {
            tracing::debug!(error = %e, "closing the peer connection");
        }
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

/// The `a=candidate:` lines of an SDP.
pub fn candidates(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("a=candidate:"))
}

async fn wait_connected(shared: &Shared) -> bool {
    let mut state = shared.state.subscribe();
    loop {
        match *state.borrow_and_update() {
            RTCPeerConnectionState::Connected => return true,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => return false,
            _ => {}
        }
        if state.changed().await.is_err() {
            return false;
        }
    }
}

async fn send_audio(
    track: Arc<TrackLocalStaticSample>,
    secret: FrameSecret,
    bitrate: i32,
    mut source: Box<dyn AudioSource>,
    shared: &Shared,
) -> Result<(), SessionError> {
    let mut sealer = FrameSealer::new(&secret)?;
    drop(secret);
    let mut encoder = OpusEncoder::new(bitrate)?;
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tick.tick().await;
        let n = source.read(&mut pcm);
        if n == 0 {
            return Ok(());
        }
        if shared.muted.load(Ordering::Relaxed) {
            pcm.fill(0);
        }
        let packet = encoder.encode(&pcm[..n])?;
        let mut sealed = sealer.seal(shared.started.elapsed(), packet)?.to_vec();
        if shared.tamper_next_audio.swap(false, Ordering::Relaxed)
            && let Some(last) = sealed.last_mut()
        {
            *last ^= 0x01;
        }
        let sent = &shared.counters.audio_sent;
        if !write_frame(&track, sealed, Duration::from_millis(20), shared, sent).await {
            return Ok(());
        }
    }
}

/// Sends one sealed frame and counts it; `false` when the track is closed (the call is over).
async fn write_frame(
    track: &TrackLocalStaticSample,
    sealed: Vec<u8>,
    duration: Duration,
    shared: &Shared,
    sent: &AtomicU64,
) -> bool {
    let len = sealed.len() as u64;
    let sample = Sample {
        data: Bytes::from(sealed),
        duration,
        ..Default::default()
    };
    if track.write_sample(&sample).await.is_err() {
        return false;
    }
    sent.fetch_add(1, Ordering::Relaxed);
    shared.counters.bytes_sent.fetch_add(len, Ordering::Relaxed);
    true
}

async fn send_video(
    track: Arc<TrackLocalStaticSample>,
    secret: FrameSecret,
    format: VideoFormat,
    mut source: Box<dyn VideoSource>,
    shared: &Shared,
) -> Result<(), SessionError> {
    let mut sealer = FrameSealer::new(&secret)?;
    drop(secret);
    let mut encoder = Vp8Encoder::new(format)?;
    let period = Duration::from_secs(1) / format.fps.max(1);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(picture) = source.next_frame() else {
            return Ok(());
        };
        if shared.camera_off.load(Ordering::Relaxed) {
            continue;
        }
        if shared.key_frame_wanted.swap(false, Ordering::Relaxed) {
            encoder.request_key_frame();
        }
        // A camera that changes size mid-call: a new encoder for the new size.
        if (picture.width, picture.height) != (encoder.format().width, encoder.format().height) {
            encoder = Vp8Encoder::new(VideoFormat {
                width: picture.width,
                height: picture.height,
                ..format
            })?;
        }
        for data in encoder.encode(&picture)? {
            let sealed = sealer.seal(shared.started.elapsed(), &data)?.to_vec();
            let sent = &shared.counters.video_sent;
            if !write_frame(&track, sealed, period, shared, sent).await {
                return Ok(());
            }
        }
    }
}

async fn receive(
    track: Arc<TrackRemote>,
    shared: Arc<Shared>,
    pc: std::sync::Weak<RTCPeerConnection>,
) {
    let is_video = track
        .codec()
        .capability
        .mime_type
        .eq_ignore_ascii_case(MIME_TYPE_VP8);
    let kind = if is_video { Track::Video } else { Track::Audio };
    let Some(secret) = lock(&shared.remote_secret)
        .as_ref()
        .map(|s| s.for_track(kind))
    else {
        tracing::warn!("media arrived before the peer's frame secret; ignored");
        return;
    };
    let mut opener = match FrameOpener::new(&secret) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "frame opener");
            return;
        }
    };
    drop(secret);
    let result = if is_video {
        receive_video(&track, &shared, &mut opener, pc).await
    } else {
        receive_audio(&track, &shared, &mut opener).await
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "call receive stopped");
    }
}

fn record(shared: &Shared, kind: Track, stats: FrameStats) {
    let slot = match kind {
        Track::Audio => &shared.audio_frames,
        Track::Video => &shared.video_frames,
    };
    *lock(slot) = stats;
}

/// Authentic frames of one remote track: RTP reassembled by the sample builder, then opened.
/// Bytes and open results are counted; a frame that does not open is never returned.
struct Frames<D: Depacketizer> {
    builder: SampleBuilder<D>,
    kind: Track,
}

impl<D: Depacketizer> Frames<D> {
    /// The next authentic frame (`None`: the track ended).
    async fn next(
        &mut self,
        track: &TrackRemote,
        shared: &Shared,
        opener: &mut FrameOpener,
    ) -> Option<Vec<u8>> {
        loop {
            while let Some(sample) = self.builder.pop() {
                shared
                    .counters
                    .bytes_received
                    .fetch_add(sample.data.len() as u64, Ordering::Relaxed);
                let opened = opener.open(&sample.data).map(<[u8]>::to_vec);
                record(shared, self.kind, opener.stats());
                if let Ok(frame) = opened {
                    shared.flowing.send_replace(true);
                    return Some(frame);
                }
            }
            let (packet, _) = track.read_rtp().await.ok()?;
            self.builder.push(packet);
        }
    }
}

async fn receive_audio(
    track: &TrackRemote,
    shared: &Shared,
    opener: &mut FrameOpener,
) -> Result<(), SessionError> {
    let mut decoder = OpusDecoder::new()?;
    let mut sink = lock(&shared.audio_out).take();
    let mut frames = Frames {
        builder: SampleBuilder::new(64, OpusPacket, 48_000),
        kind: Track::Audio,
    };
    while let Some(packet) = frames.next(track, shared, opener).await {
        match decoder.decode(&packet) {
            Ok(pcm) => {
                shared
                    .counters
                    .audio_received
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(sink) = sink.as_mut() {
                    sink.write(pcm);
                }
            }
            Err(_) => {
                shared.counters.undecodable.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

async fn receive_video(
    track: &TrackRemote,
    shared: &Shared,
    opener: &mut FrameOpener,
    pc: std::sync::Weak<RTCPeerConnection>,
) -> Result<(), SessionError> {
    let mut decoder = Vp8Decoder::new()?;
    let mut sink = lock(&shared.video_out).take();
    let mut last_pli = Instant::now() - Duration::from_secs(10);
    let mut frames = Frames {
        builder: SampleBuilder::new(256, Vp8Packet::default(), 90_000),
        kind: Track::Video,
    };
    // Dropped frames are counted by the opener; nothing of them reaches the decoder.
    while let Some(data) = frames.next(track, shared, opener).await {
        match decoder.decode(&data) {
            Ok(pictures) => {
                for picture in pictures {
                    shared
                        .counters
                        .video_received
                        .fetch_add(1, Ordering::Relaxed);
                    if let Some(sink) = sink.as_mut() {
                        sink.show(&picture);
                    }
                }
            }
            Err(_) => {
                shared.counters.undecodable.fetch_add(1, Ordering::Relaxed);
                // Ask for a key frame, at most once a second.
                if last_pli.elapsed() > Duration::from_secs(1) {
                    last_pli = Instant::now();
                    if let Some(pc) = pc.upgrade() {
                        let pli = PictureLossIndication {
                            sender_ssrc: 0,
                            media_ssrc: track.ssrc(),
                        };
                        if let Err(e) = pc.write_rtcp(&[Box::new(pli)]).await {
                            tracing::debug!(error = %e, "picture loss request");
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
