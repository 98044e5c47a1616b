//! End-to-end encryption of media frames on top of DTLS-SRTP: SFrame (RFC 9605) with a key
//! ratchet every 30 s of call time, counter nonces, a replay window, and dropped frames counted
//! by reason. `docs/calls.md` §Frame encryption.
//!
//! Sans-I/O: time is passed in (`now`, the call's elapsed time), randomness too.

use std::time::Duration;

use rand::{CryptoRng, Rng};
use sframe::CipherSuite;
use sframe::error::SframeError;
use sframe::frame::validation::{
    ReplayAttackProtectionError, ReplayAttackProtectionStore, Tolerance,
};
use sframe::frame::{EncryptedFrameView, MediaFrameView, MonotonicCounter};
use sframe::header::KeyId;
use sframe::ratchet::{
    Generation, RatchetBits, RatchetStepDiff, RatchetingDecryptionKey, RatchetingEncryptionKey,
    RatchetingKeyId, RatchetingKeyStore,
};
use zeroize::Zeroizing;

/// AES-256-GCM with SHA-512 key derivation and a 128-bit tag.
pub const SUITE: CipherSuite = CipherSuite::AesGcm256Sha512;
/// How often the sender ratchets its key (the requirement is at least once a minute).
pub const ROTATE_EVERY: Duration = Duration::from_secs(30);
/// Bits of the key id that carry the ratchet step (it wraps after 16 steps).
pub const RATCHET_BITS: u8 = 4;
/// How far behind the newest frame a counter may be and still be accepted.
pub const REPLAY_WINDOW: usize = 128;
/// How many ratchet steps a receiver follows at once (a sender ratchets one step at a time).
const MAX_RATCHET_STEPS: u64 = 2;
/// One key generation per direction and call: the secret is new for every call.
const GENERATION: u64 = 0;

/// What a sender puts in its `Offer`/`Answer`: the base of its frame keys for this call.
pub struct FrameSecret(Zeroizing<[u8; 32]>);

impl FrameSecret {
    /// A new random secret.
    pub fn random<R: Rng + CryptoRng>(rng: &mut R) -> Self {
        let mut s = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(s.as_mut());
        Self(s)
    }

    /// The secret received from the peer.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes to send inside the Signal session.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The secret of one media track of this direction (BLAKE3 key derivation with the track's
    /// name), so audio and video have independent keys, counters and replay windows.
    pub fn for_track(&self, track: Track) -> Self {
        let context = match track {
            Track::Audio => "tessera call frame key v1 audio",
            Track::Video => "tessera call frame key v1 video",
        };
        Self(Zeroizing::new(blake3::derive_key(context, self.0.as_ref())))
    }
}

/// A media track of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// Opus audio.
    Audio,
    /// VP8 video.
    Video,
}

impl std::fmt::Debug for FrameSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameSecret(…)")
    }
}

/// Why frame encryption could not start or continue.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The key could not be derived or ratcheted.
    #[error("frame key derivation failed")]
    Key,
    /// 2^64 frames under one call: the call must be set up again.
    #[error("frame counter exhausted")]
    Exhausted,
    /// The AEAD refused (cannot happen with a valid key; reported, not unwrapped).
    #[error("frame encryption failed")]
    Encrypt,
}

fn key_id() -> RatchetingKeyId {
    RatchetingKeyId::new(Generation::from(GENERATION), RatchetBits::new(RATCHET_BITS))
}

/// Encrypts one direction's frames.
pub struct FrameSealer {
    key: RatchetingEncryptionKey,
    counter: MonotonicCounter,
    next_rotation: Duration,
    buffer: Vec<u8>,
}

impl FrameSealer {
    /// A sealer for frames sent under `secret`, starting at call time zero.
    pub fn new(secret: &FrameSecret) -> Result<Self, FrameError> {
        Ok(Self {
            key: RatchetingEncryptionKey::derive_from(SUITE, key_id(), secret.as_bytes())
                .map_err(|_| FrameError::Key)?,
            counter: MonotonicCounter::new(u64::MAX),
            next_rotation: ROTATE_EVERY,
            buffer: Vec::new(),
        })
    }

    /// Encrypts `frame` (an encoded Opus or VP8 frame) at call time `now`. The key is ratcheted
    /// one step when its 30 s are over; the old key is dropped (zeroized by `sframe`).
    pub fn seal(&mut self, now: Duration, frame: &[u8]) -> Result<&[u8], FrameError> {
        if now >= self.next_rotation {
            self.key = self.key.ratchet().map_err(|_| FrameError::Key)?;
            self.next_rotation = now + ROTATE_EVERY;
        }
        let media = MediaFrameView::try_new(&mut self.counter, frame).map_err(|e| match e {
            SframeError::CounterCreationFailed(_) => FrameError::Exhausted,
            _ => FrameError::Encrypt,
        })?;
        media
            .encrypt_into(self.key.as_ref(), &mut self.buffer)
            .map_err(|_| FrameError::Encrypt)?;
        Ok(&self.buffer)
    }

    /// The key id in use (generation and ratchet step).
    pub fn key_id(&self) -> u64 {
        KeyId::from(self.key.key_id())
    }
}

/// Why a received frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// Not an SFrame frame (header or length wrong).
    #[error("malformed frame")]
    Malformed,
    /// No key for its key id (another call, a ratchet too far ahead, a key already replaced).
    #[error("no key for this frame")]
    UnknownKey,
    /// A duplicate, or older than the replay window.
    #[error("replayed frame")]
    Replayed,
    /// The tag did not verify: the frame or its header was changed.
    #[error("frame failed authentication")]
    Unauthentic,
}

/// Counts of what a receiver did with frames; the call screen's quality line uses them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Decrypted and authentic.
    pub opened: u64,
    /// Dropped: not SFrame.
    pub malformed: u64,
    /// Dropped: no key.
    pub unknown_key: u64,
    /// Dropped: duplicate or too old.
    pub replayed: u64,
    /// Dropped: failed authentication.
    pub unauthentic: u64,
}

/// Decrypts the peer's frames.
pub struct FrameOpener {
    keys: RatchetingKeyStore,
    validation: ReplayAttackProtectionStore,
    buffer: Vec<u8>,
    stats: FrameStats,
}

impl FrameOpener {
    /// An opener for frames the peer seals under `secret`.
    pub fn new(secret: &FrameSecret) -> Result<Self, FrameError> {
        let mut keys = RatchetingKeyStore::new(
            RatchetBits::new(RATCHET_BITS),
            RatchetStepDiff::from(MAX_RATCHET_STEPS),
        );
        keys.insert(
            RatchetingDecryptionKey::derive_from(SUITE, key_id(), secret.as_bytes())
                .map_err(|_| FrameError::Key)?,
        );
        Ok(Self {
            keys,
            validation: ReplayAttackProtectionStore::new(Tolerance::new(REPLAY_WINDOW)),
            buffer: Vec::new(),
            stats: FrameStats::default(),
        })
    }

    /// Decrypts one frame, or says why it was dropped (and counts it).
    pub fn open(&mut self, sealed: &[u8]) -> Result<&[u8], Dropped> {
        let outcome = match EncryptedFrameView::try_new(sealed) {
            Err(_) => Err(Dropped::Malformed),
            Ok(frame) => {
                match frame.validated_decrypt_into(
                    &mut self.keys,
                    &mut self.buffer,
                    &mut self.validation,
                ) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(classify(&e)),
                }
            }
        };
        match outcome {
            Ok(()) => {
                self.stats.opened += 1;
                // The key the store ratcheted away from is gone; so is its replay window.
                if let Some(stale) = self
                    .keys
                    .get(Generation::from(GENERATION))
                    .and_then(|k| k.ratcheted_from())
                {
                    self.validation.remove(KeyId::from(stale));
                }
                Ok(&self.buffer)
            }
            Err(d) => {
                let counter = match d {
                    Dropped::Malformed => &mut self.stats.malformed,
                    Dropped::UnknownKey => &mut self.stats.unknown_key,
                    Dropped::Replayed => &mut self.stats.replayed,
                    Dropped::Unauthentic => &mut self.stats.unauthentic,
                };
                *counter += 1;
                Err(d)
            }
        }
    }

    /// What happened to the frames so far.
    pub fn stats(&self) -> FrameStats {
        self.stats
    }
}

fn classify(e: &SframeError) -> Dropped {
    if let Some(r) = e.source_as::<ReplayAttackProtectionError>() {
        return match r {
            ReplayAttackProtectionError::DuplicatedFrame { .. }
            | ReplayAttackProtectionError::CounterTooOld { .. } => Dropped::Replayed,
            _ => Dropped::Malformed,
        };
    }
    match e {
        SframeError::MissingDecryptionKey { .. } | SframeError::RatchetingFailure => {
            Dropped::UnknownKey
        }
        SframeError::DecryptionFailure => Dropped::Unauthentic,
        _ => Dropped::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn pair(seed: u64) -> (FrameSealer, FrameOpener) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let secret = FrameSecret::random(&mut rng);
        let theirs = FrameSecret::from_bytes(*secret.as_bytes());
        (
            FrameSealer::new(&secret).unwrap(),
            FrameOpener::new(&theirs).unwrap(),
        )
    }

    fn frame(i: u32) -> Vec<u8> {
        format!("encoded frame {i}").into_bytes()
    }

    #[test]
    fn frames_round_trip_with_small_overhead() {
        let (mut tx, mut rx) = pair(1);
        for i in 0..100 {
            let sealed = tx
                .seal(Duration::from_millis(u64::from(i) * 20), &frame(i))
                .unwrap()
                .to_vec();
            assert!(
                sealed.len() <= frame(i).len() + 16 + 10,
                "overhead {}",
                sealed.len() - frame(i).len()
            );
            assert!(
                !sealed.windows(7).any(|w| w == b"encoded"),
                "plaintext in the frame"
            );
            assert_eq!(rx.open(&sealed).unwrap(), frame(i).as_slice());
        }
        assert_eq!(rx.stats().opened, 100);
    }

    #[test]
    fn a_tampered_frame_is_dropped_and_counted_and_the_stream_goes_on() {
        let (mut tx, mut rx) = pair(2);
        let sealed = tx.seal(Duration::ZERO, &frame(0)).unwrap().to_vec();
        // Every single-byte change anywhere (header or body) is refused.
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(rx.open(&bad).is_err(), "byte {i} flipped was accepted");
        }
        let s = rx.stats();
        assert_eq!(s.opened, 0);
        assert!(s.unauthentic > 0, "{s:?}");
        assert_eq!(
            s.unauthentic + s.malformed + s.unknown_key + s.replayed,
            sealed.len() as u64
        );
        // The genuine frame still opens afterwards: forged headers did not poison the window.
        assert_eq!(rx.open(&sealed).unwrap(), frame(0).as_slice());
        assert!(rx.open(&sealed[..5]).is_err());
        assert!(rx.open(&[]).is_err());
    }

    #[test]
    fn replays_are_dropped_and_reordering_within_the_window_is_not() {
        let (mut tx, mut rx) = pair(3);
        let frames: Vec<Vec<u8>> = (0..300)
            .map(|i| {
                tx.seal(Duration::from_millis(i * 10), &frame(i as u32))
                    .unwrap()
                    .to_vec()
            })
            .collect();
        assert!(rx.open(&frames[10]).is_ok());
        assert_eq!(rx.open(&frames[10]), Err(Dropped::Replayed));
        assert!(rx.open(&frames[5]).is_ok(), "late but inside the window");
        assert!(rx.open(&frames[200]).is_ok());
        assert_eq!(
            rx.open(&frames[11]),
            Err(Dropped::Replayed),
            "older than the window"
        );
        assert!(rx.open(&frames[150]).is_ok(), "reordered inside the window");
        assert_eq!(rx.open(&frames[150]), Err(Dropped::Replayed));
        let s = rx.stats();
        assert_eq!((s.opened, s.replayed), (4, 3));
    }

    #[test]
    fn keys_ratchet_every_30_seconds_and_old_keys_are_forgotten() {
        let (mut tx, mut rx) = pair(4);
        let mut ids = Vec::new();
        let mut before_rotation = None;
        // Fifty frames a second for ten minutes: 20 rotations, the 4-bit step wraps.
        for i in 0..(50 * 600) {
            let now = Duration::from_millis(i * 20);
            let sealed = tx.seal(now, &frame(i as u32)).unwrap().to_vec();
            if ids.last() != Some(&tx.key_id()) {
                ids.push(tx.key_id());
                if ids.len() == 3 {
                    // keep a frame of the first key to replay much later
                    assert!(before_rotation.is_some());
                }
            }
            if i == 10 {
                before_rotation = Some(sealed.clone());
            }
            assert_eq!(
                rx.open(&sealed).unwrap(),
                frame(i as u32).as_slice(),
                "frame {i}"
            );
        }
        assert_eq!(ids.len(), 20, "one key per 30 s: {ids:?}");
        // A frame of a key that has been replaced cannot be opened any more.
        let old = before_rotation.unwrap();
        assert!(rx.open(&old).is_err());
        assert_eq!(rx.stats().opened, 50 * 600);
    }

    #[test]
    fn a_receiver_catches_up_after_a_silence_and_another_secret_opens_nothing() {
        let (mut tx, mut rx) = pair(5);
        let a = tx.seal(Duration::ZERO, b"before").unwrap().to_vec();
        assert!(rx.open(&a).is_ok());
        // Muted for two minutes: the sender ratchets once at its next frame.
        let b = tx
            .seal(Duration::from_secs(120), b"after")
            .unwrap()
            .to_vec();
        assert_eq!(rx.open(&b).unwrap(), b"after");
        let (_, mut stranger) = pair(6);
        assert!(stranger.open(&b).is_err());
        let s = stranger.stats();
        assert_eq!(s.opened, 0);
        assert_eq!(s.unauthentic + s.unknown_key, 1);
    }
}
