//! Relay protocol v1 frames (`docs/relay-protocol.md`): a strict codec, no I/O.

use crate::ProtoError;

/// The only frame version this build speaks.
pub const FRAME_VERSION: u8 = 1;
/// Largest frame (one WebSocket binary message).
pub const MAX_FRAME_LEN: usize = 256 * 1024;
/// Largest envelope: a full v2 envelope with the largest content (`docs/envelope.md` §2;
/// `tessera-crypto` checks it is the same number). v1 envelopes (at most 136,817 bytes) fit.
pub const MAX_ENVELOPE_LEN: usize = 149_106;
/// Most one-time prekeys in one upload.
pub const MAX_PREKEYS_PER_UPLOAD: usize = 1024;
/// Most bytes of an attachment blob in one `BlobWrite` or `BlobData` (three sealed 64 KiB
/// chunks, `docs/attachments.md`).
pub const MAX_BLOB_PIECE: usize = 3 * (64 * 1024 + 16);

/// An attachment blob's id on the wire (16 random bytes chosen by the uploader).
pub type BlobId = [u8; 16];

const MAX_ACCOUNT_PUBLIC: usize = 4096;
const MAX_CERTIFICATE: usize = 16 * 1024;
const MAX_PROOF: usize = 8192;
const MAX_SIGNED_PREKEYS: usize = 32 * 1024;
const MAX_PREKEY_PUBLIC: usize = 64;
const MAX_PROOF_PATH: usize = 11 * 32;
const MAX_DETAIL: usize = 256;
/// TURN URLs in one `Turn` reply.
const MAX_TURN_URLS: usize = 4;
/// A TURN URL, username or credential.
const MAX_TURN_TEXT: usize = 256;

/// An account id on the wire (32 bytes; `tessera-crypto` defines what it is).
pub type WireAccountId = [u8; 32];

/// A one-time prekey as uploaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WirePrekey {
    /// Prekey id.
    pub id: u32,
    /// libsignal public key encoding.
    pub public: Vec<u8>,
}

/// A one-time prekey as handed out, with its Merkle proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireOneTimePrekey {
    /// Prekey id.
    pub id: u32,
    /// libsignal public key encoding.
    pub public: Vec<u8>,
    /// Position in its batch.
    pub index: u32,
    /// Concatenated 32-byte sibling hashes.
    pub path: Vec<u8>,
}

/// Error codes carried in [`Body::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Body does not decode.
    Malformed,
    /// Kind not in this version.
    UnknownKind,
    /// Frame or field above its limit.
    TooLarge,
    /// Frame version not 1.
    UnsupportedVersion,
    /// Request needs a login first.
    Unauthenticated,
    /// Proof, certificate or account check failed.
    AuthFailed,
    /// Challenge used already or too old.
    ChallengeExpired,
    /// Device exists with this or a higher serial.
    AlreadyRegistered,
    /// Another connection logged in as this device; this one is closed.
    Replaced,
    /// No such account or device.
    NotFound,
    /// The request does not fit what is stored (a blob of another size, bytes past its end).
    Conflict,
    /// The account was deleted by its owner; it cannot be registered again.
    AccountDeleted,
    /// Prekey store limit reached.
    NoPrekeys,
    /// Recipient mailbox at its cap.
    MailboxFull,
    /// The blob is larger than this relay takes, or the account's blobs would pass its quota.
    QuotaExceeded,
    /// Too many requests.
    RateLimited,
    /// Too many connections from this address.
    TooManyConnections,
    /// The client was idle, or did not read, for too long.
    Timeout,
    /// The relay failed.
    Internal,
    /// The relay is stopping.
    ShuttingDown,
    /// A code this build does not know (from a newer relay).
    Other(u16),
}

impl ErrorCode {
    /// The number on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::Malformed => 1,
            Self::UnknownKind => 2,
            Self::TooLarge => 3,
            Self::UnsupportedVersion => 4,
            Self::Unauthenticated => 10,
            Self::AuthFailed => 11,
            Self::ChallengeExpired => 12,
            Self::AlreadyRegistered => 13,
            Self::Replaced => 14,
            Self::NotFound => 20,
            Self::Conflict => 23,
            Self::AccountDeleted => 22,
            Self::NoPrekeys => 21,
            Self::MailboxFull => 30,
            Self::QuotaExceeded => 31,
            Self::RateLimited => 40,
            Self::TooManyConnections => 41,
            Self::Timeout => 42,
            Self::Internal => 50,
            Self::ShuttingDown => 51,
            Self::Other(n) => n,
        }
    }

    /// The code for a number (unknown numbers are kept as [`ErrorCode::Other`]).
    pub fn from_u16(n: u16) -> Self {
        match n {
            1 => Self::Malformed,
            2 => Self::UnknownKind,
            3 => Self::TooLarge,
            4 => Self::UnsupportedVersion,
            10 => Self::Unauthenticated,
            11 => Self::AuthFailed,
            12 => Self::ChallengeExpired,
            13 => Self::AlreadyRegistered,
            14 => Self::Replaced,
            20 => Self::NotFound,
            23 => Self::Conflict,
            22 => Self::AccountDeleted,
            21 => Self::NoPrekeys,
            30 => Self::MailboxFull,
            31 => Self::QuotaExceeded,
            40 => Self::RateLimited,
            41 => Self::TooManyConnections,
            42 => Self::Timeout,
            50 => Self::Internal,
            51 => Self::ShuttingDown,
            n => Self::Other(n),
        }
    }

    /// Whether the relay closes the connection after sending this error.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            Self::Malformed
                | Self::UnknownKind
                | Self::TooLarge
                | Self::UnsupportedVersion
                | Self::AuthFailed
                | Self::ChallengeExpired
                | Self::Replaced
                | Self::TooManyConnections
                | Self::Timeout
                | Self::ShuttingDown
        )
    }
}

impl From<&ProtoError> for ErrorCode {
    fn from(e: &ProtoError) -> Self {
        match e {
            ProtoError::UnsupportedVersion(_) => Self::UnsupportedVersion,
            ProtoError::UnknownKind(_) => Self::UnknownKind,
            ProtoError::TooLarge { .. } => Self::TooLarge,
            ProtoError::Malformed { .. } => Self::Malformed,
        }
    }
}

/// A frame body, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// 0x01: register a new device.
    Register {
        /// The account's public identity keys.
        account_public: Vec<u8>,
        /// The device certificate.
        device_certificate: Vec<u8>,
        /// Signature over the challenge by the device's auth key.
        proof: Vec<u8>,
    },
    /// 0x02: log in as a registered device.
    Login {
        /// Account.
        account_id: WireAccountId,
        /// Device.
        device_id: u32,
        /// Signature over the challenge by the device's auth key.
        proof: Vec<u8>,
    },
    /// 0x03: delete the logged-in account for good: its devices, certificates, prekeys and
    /// mailboxes (`docs/leaving.md`).
    DeleteAccount {
        /// Signature by the account identity over this connection's challenge, the relay's
        /// pin and the account id (`tessera_crypto::sign_account_deletion`).
        proof: Vec<u8>,
    },
    /// 0x10: publish prekeys.
    PublishPrekeys {
        /// The signed statement and signatures (`tessera-crypto` encoding).
        signed: Vec<u8>,
        /// The one-time prekeys of the signed batch.
        one_time: Vec<WirePrekey>,
    },
    /// 0x11: fetch a device's prekey bundle.
    FetchBundle {
        /// Account.
        account_id: WireAccountId,
        /// Device.
        device_id: u32,
    },
    /// 0x12: fetch a device's current certificate (to follow its renewals; no prekey is used).
    FetchCertificate {
        /// Account.
        account_id: WireAccountId,
        /// Device.
        device_id: u32,
    },
    /// 0x20: send an envelope to a device's mailbox.
    Send {
        /// Recipient account.
        account_id: WireAccountId,
        /// Recipient device.
        device_id: u32,
        /// The sealed envelope.
        envelope: Vec<u8>,
    },
    /// 0x21: acknowledge a delivered envelope (the relay may now delete it).
    Ack {
        /// From [`Body::Deliver`].
        delivery_id: u64,
    },
    /// 0x30: short-lived credentials for the relay's TURN service (calls).
    TurnCredentials,
    /// 0x40: start or resume uploading attachment blob `blob` of `size` bytes, to be fetched
    /// `fetches` times (then deleted; the relay's TTL deletes it in any case). Answered by
    /// [`Body::BlobState`].
    BlobOpen {
        /// The blob's id.
        blob: BlobId,
        /// Its whole size.
        size: u64,
        /// How many recipient devices will fetch it.
        fetches: u16,
    },
    /// 0x41: the blob's bytes at `offset` (which must be where the stored part ends). Answered by
    /// [`Body::BlobState`] (a write at another offset changes nothing and says where to go on).
    BlobWrite {
        /// The blob's id.
        blob: BlobId,
        /// Where these bytes go.
        offset: u64,
        /// At most [`MAX_BLOB_PIECE`] bytes.
        data: Vec<u8>,
    },
    /// 0x42: up to `len` bytes of a complete blob from `offset`. Answered by
    /// [`Body::BlobData`].
    BlobRead {
        /// The blob's id.
        blob: BlobId,
        /// From where.
        offset: u64,
        /// How many (at most [`MAX_BLOB_PIECE`]).
        len: u32,
    },
    /// 0x43: this device has the whole blob; after the last fetch it is deleted.
    BlobFetched {
        /// The blob's id.
        blob: BlobId,
    },
    /// 0x80: the connection's login challenge.
    Challenge {
        /// Random nonce.
        nonce: [u8; 32],
        /// Expiry, ms since the Unix epoch.
        expires_at: u64,
    },
    /// 0x81: success.
    Ok,
    /// 0x82: failure.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// When to retry (0 if not applicable).
        retry_after_ms: u32,
        /// A short sentence for logs, without user data.
        detail: String,
    },
    /// 0x83: a prekey bundle.
    Bundle {
        /// The account's public identity keys (their hash is the account id: the client checks
        /// it against the id it asked for).
        account_public: Vec<u8>,
        /// The device certificate.
        device_certificate: Vec<u8>,
        /// The signed prekey statement and signatures.
        signed: Vec<u8>,
        /// A one-time prekey, if any were left.
        one_time: Option<WireOneTimePrekey>,
    },
    /// 0x84: the envelope is durably stored.
    Accepted {
        /// The relay's id for it.
        relay_id: u64,
    },
    /// 0x85: an envelope for this device.
    Deliver {
        /// Id to acknowledge.
        delivery_id: u64,
        /// The sealed envelope.
        envelope: Vec<u8>,
    },
    /// 0x86: one-time prekeys are running low.
    PrekeysLow {
        /// How many are left.
        remaining: u32,
    },
    /// 0x88: a device certificate (reply to [`Body::FetchCertificate`]).
    Certificate {
        /// The device certificate the relay holds (the highest serial registered).
        device_certificate: Vec<u8>,
    },
    /// 0x87: TURN credentials (reply to [`Body::TurnCredentials`]).
    Turn {
        /// `turn:` URLs of the service (empty: the relay offers none).
        urls: Vec<String>,
        /// Time-limited username.
        username: String,
        /// The credential for `username`.
        credential: String,
        /// Seconds the credentials stay valid.
        ttl_secs: u32,
    },
    /// 0x89: how much of a blob the relay holds.
    BlobState {
        /// The blob's id.
        blob: BlobId,
        /// Its whole size.
        size: u64,
        /// Bytes stored so far (from the start); `size` when complete.
        stored: u64,
    },
    /// 0x8a: bytes of a blob.
    BlobData {
        /// The blob's id.
        blob: BlobId,
        /// Where they start.
        offset: u64,
        /// At most [`MAX_BLOB_PIECE`] bytes (fewer at the end).
        data: Vec<u8>,
    },
}

impl Body {
    /// The kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Self::Register { .. } => 0x01,
            Self::Login { .. } => 0x02,
            Self::DeleteAccount { .. } => 0x03,
            Self::PublishPrekeys { .. } => 0x10,
            Self::FetchBundle { .. } => 0x11,
            Self::FetchCertificate { .. } => 0x12,
            Self::Send { .. } => 0x20,
            Self::Ack { .. } => 0x21,
            Self::TurnCredentials => 0x30,
            Self::BlobOpen { .. } => 0x40,
            Self::BlobWrite { .. } => 0x41,
            Self::BlobRead { .. } => 0x42,
            Self::BlobFetched { .. } => 0x43,
            Self::Challenge { .. } => 0x80,
            Self::Ok => 0x81,
            Self::Error { .. } => 0x82,
            Self::Bundle { .. } => 0x83,
            Self::Accepted { .. } => 0x84,
            Self::Deliver { .. } => 0x85,
            Self::PrekeysLow { .. } => 0x86,
            Self::Turn { .. } => 0x87,
            Self::Certificate { .. } => 0x88,
            Self::BlobState { .. } => 0x89,
            Self::BlobData { .. } => 0x8a,
        }
    }
}

/// One frame: a request id and a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Client-chosen id echoed in replies; 0 for pushes.
    pub request_id: u32,
    /// The body.
    pub body: Body,
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn raw(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    fn blob(&mut self, v: &[u8], max: usize, field: &'static str) -> Result<(), ProtoError> {
        if v.len() > max {
            return Err(ProtoError::TooLarge {
                field,
                len: v.len(),
                max,
            });
        }
        self.u32(v.len() as u32);
        self.raw(v);
        Ok(())
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ProtoError> {
        if self.0.len() < n {
            return Err(ProtoError::Malformed { field });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ProtoError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, ProtoError> {
        Ok(self.take(1, field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, ProtoError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, ProtoError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, ProtoError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    fn blob(&mut self, max: usize, field: &'static str) -> Result<Vec<u8>, ProtoError> {
        let len = self.u32(field)? as usize;
        if len > max {
            return Err(ProtoError::TooLarge { field, len, max });
        }
        Ok(self.take(len, field)?.to_vec())
    }
    fn text(&mut self, max: usize, field: &'static str) -> Result<String, ProtoError> {
        String::from_utf8(self.blob(max, field)?).map_err(|_| ProtoError::Malformed { field })
    }
    fn finish(&self) -> Result<(), ProtoError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::Malformed {
                field: "trailing bytes",
            })
        }
    }
}

impl Frame {
    /// A reply to `request_id`.
    pub fn reply(request_id: u32, body: Body) -> Self {
        Self { request_id, body }
    }

    /// Encodes the frame; fails if a field is above its limit or the frame above
    /// [`MAX_FRAME_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let mut w = Writer(Vec::with_capacity(64));
        w.u8(FRAME_VERSION);
        w.u8(self.body.kind());
        w.u32(self.request_id);
        match &self.body {
            Body::Register {
                account_public,
                device_certificate,
                proof,
            } => {
                w.blob(account_public, MAX_ACCOUNT_PUBLIC, "account_public")?;
                w.blob(device_certificate, MAX_CERTIFICATE, "device_certificate")?;
                w.blob(proof, MAX_PROOF, "proof")?;
            }
            Body::Login {
                account_id,
                device_id,
                proof,
            } => {
                w.raw(account_id);
                w.u32(*device_id);
                w.blob(proof, MAX_PROOF, "proof")?;
            }
            Body::DeleteAccount { proof } => w.blob(proof, MAX_PROOF, "proof")?,
            Body::PublishPrekeys { signed, one_time } => {
                w.blob(signed, MAX_SIGNED_PREKEYS, "signed")?;
                if one_time.len() > MAX_PREKEYS_PER_UPLOAD {
                    return Err(ProtoError::TooLarge {
                        field: "one_time",
                        len: one_time.len(),
                        max: MAX_PREKEYS_PER_UPLOAD,
                    });
                }
                w.u16(one_time.len() as u16);
                for p in one_time {
                    w.u32(p.id);
                    w.blob(&p.public, MAX_PREKEY_PUBLIC, "prekey public")?;
                }
            }
            Body::FetchBundle {
                account_id,
                device_id,
            }
            | Body::FetchCertificate {
                account_id,
                device_id,
            } => {
                w.raw(account_id);
                w.u32(*device_id);
            }
            Body::Send {
                account_id,
                device_id,
                envelope,
            } => {
                w.raw(account_id);
                w.u32(*device_id);
                w.blob(envelope, MAX_ENVELOPE_LEN, "envelope")?;
            }
            Body::Ack { delivery_id } => w.u64(*delivery_id),
            Body::TurnCredentials => {}
            Body::BlobOpen {
                blob,
                size,
                fetches,
            } => {
                w.raw(blob);
                w.u64(*size);
                w.u16(*fetches);
            }
            Body::BlobWrite { blob, offset, data } | Body::BlobData { blob, offset, data } => {
                w.raw(blob);
                w.u64(*offset);
                w.blob(data, MAX_BLOB_PIECE, "blob data")?;
            }
            Body::BlobRead { blob, offset, len } => {
                w.raw(blob);
                w.u64(*offset);
                w.u32(*len);
            }
            Body::BlobFetched { blob } => w.raw(blob),
            Body::BlobState { blob, size, stored } => {
                w.raw(blob);
                w.u64(*size);
                w.u64(*stored);
            }
            Body::Challenge { nonce, expires_at } => {
                w.raw(nonce);
                w.u64(*expires_at);
            }
            Body::Ok => {}
            Body::Error {
                code,
                retry_after_ms,
                detail,
            } => {
                w.u16(code.to_u16());
                w.u32(*retry_after_ms);
                w.blob(detail.as_bytes(), MAX_DETAIL, "detail")?;
            }
            Body::Certificate { device_certificate } => {
                w.blob(device_certificate, MAX_CERTIFICATE, "device_certificate")?;
            }
            Body::Bundle {
                account_public,
                device_certificate,
                signed,
                one_time,
            } => {
                w.blob(account_public, MAX_ACCOUNT_PUBLIC, "account_public")?;
                w.blob(device_certificate, MAX_CERTIFICATE, "device_certificate")?;
                w.blob(signed, MAX_SIGNED_PREKEYS, "signed")?;
                match one_time {
                    None => w.u8(0),
                    Some(p) => {
                        w.u8(1);
                        w.u32(p.id);
                        w.blob(&p.public, MAX_PREKEY_PUBLIC, "prekey public")?;
                        w.u32(p.index);
                        w.blob(&p.path, MAX_PROOF_PATH, "prekey proof")?;
                    }
                }
            }
            Body::Accepted { relay_id } => w.u64(*relay_id),
            Body::Deliver {
                delivery_id,
                envelope,
            } => {
                w.u64(*delivery_id);
                w.blob(envelope, MAX_ENVELOPE_LEN, "envelope")?;
            }
            Body::PrekeysLow { remaining } => w.u32(*remaining),
            Body::Turn {
                urls,
                username,
                credential,
                ttl_secs,
            } => {
                if urls.len() > MAX_TURN_URLS {
                    return Err(ProtoError::TooLarge {
                        field: "turn urls",
                        len: urls.len(),
                        max: MAX_TURN_URLS,
                    });
                }
                w.u8(urls.len() as u8);
                for u in urls {
                    w.blob(u.as_bytes(), MAX_TURN_TEXT, "turn url")?;
                }
                w.blob(username.as_bytes(), MAX_TURN_TEXT, "turn username")?;
                w.blob(credential.as_bytes(), MAX_TURN_TEXT, "turn credential")?;
                w.u32(*ttl_secs);
            }
        }
        if w.0.len() > MAX_FRAME_LEN {
            return Err(ProtoError::TooLarge {
                field: "frame",
                len: w.0.len(),
                max: MAX_FRAME_LEN,
            });
        }
        Ok(w.0)
    }

    /// Decodes one frame strictly: known version and kind, every length within its limit, no
    /// trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        if bytes.len() > MAX_FRAME_LEN {
            return Err(ProtoError::TooLarge {
                field: "frame",
                len: bytes.len(),
                max: MAX_FRAME_LEN,
            });
        }
        let mut r = Reader(bytes);
        let version = r.u8("version")?;
        if version != FRAME_VERSION {
            return Err(ProtoError::UnsupportedVersion(version));
        }
        let kind = r.u8("kind")?;
        let request_id = r.u32("request_id")?;
        let body = match kind {
            0x01 => Body::Register {
                account_public: r.blob(MAX_ACCOUNT_PUBLIC, "account_public")?,
                device_certificate: r.blob(MAX_CERTIFICATE, "device_certificate")?,
                proof: r.blob(MAX_PROOF, "proof")?,
            },
            0x02 => Body::Login {
                account_id: r.array("account_id")?,
                device_id: r.u32("device_id")?,
                proof: r.blob(MAX_PROOF, "proof")?,
            },
            0x03 => Body::DeleteAccount {
                proof: r.blob(MAX_PROOF, "proof")?,
            },
            0x10 => {
                let signed = r.blob(MAX_SIGNED_PREKEYS, "signed")?;
                let count = usize::from(r.u16("one_time count")?);
                if count > MAX_PREKEYS_PER_UPLOAD {
                    return Err(ProtoError::TooLarge {
                        field: "one_time",
                        len: count,
                        max: MAX_PREKEYS_PER_UPLOAD,
                    });
                }
                let mut one_time = Vec::with_capacity(count);
                for _ in 0..count {
                    one_time.push(WirePrekey {
                        id: r.u32("prekey id")?,
                        public: r.blob(MAX_PREKEY_PUBLIC, "prekey public")?,
                    });
                }
                Body::PublishPrekeys { signed, one_time }
            }
            0x11 => Body::FetchBundle {
                account_id: r.array("account_id")?,
                device_id: r.u32("device_id")?,
            },
            0x12 => Body::FetchCertificate {
                account_id: r.array("account_id")?,
                device_id: r.u32("device_id")?,
            },
            0x20 => Body::Send {
                account_id: r.array("account_id")?,
                device_id: r.u32("device_id")?,
                envelope: r.blob(MAX_ENVELOPE_LEN, "envelope")?,
            },
            0x21 => Body::Ack {
                delivery_id: r.u64("delivery_id")?,
            },
            0x30 => Body::TurnCredentials,
            0x40 => Body::BlobOpen {
                blob: r.array("blob")?,
                size: r.u64("size")?,
                fetches: r.u16("fetches")?,
            },
            0x41 => Body::BlobWrite {
                blob: r.array("blob")?,
                offset: r.u64("offset")?,
                data: r.blob(MAX_BLOB_PIECE, "blob data")?,
            },
            0x42 => Body::BlobRead {
                blob: r.array("blob")?,
                offset: r.u64("offset")?,
                len: r.u32("len")?,
            },
            0x43 => Body::BlobFetched {
                blob: r.array("blob")?,
            },
            0x89 => Body::BlobState {
                blob: r.array("blob")?,
                size: r.u64("size")?,
                stored: r.u64("stored")?,
            },
            0x8a => Body::BlobData {
                blob: r.array("blob")?,
                offset: r.u64("offset")?,
                data: r.blob(MAX_BLOB_PIECE, "blob data")?,
            },
            0x80 => Body::Challenge {
                nonce: r.array("nonce")?,
                expires_at: r.u64("expires_at")?,
            },
            0x81 => Body::Ok,
            0x82 => {
                let code = ErrorCode::from_u16(r.u16("code")?);
                let retry_after_ms = r.u32("retry_after_ms")?;
                let detail = String::from_utf8(r.blob(MAX_DETAIL, "detail")?)
                    .map_err(|_| ProtoError::Malformed { field: "detail" })?;
                Body::Error {
                    code,
                    retry_after_ms,
                    detail,
                }
            }
            0x83 => {
                let account_public = r.blob(MAX_ACCOUNT_PUBLIC, "account_public")?;
                let device_certificate = r.blob(MAX_CERTIFICATE, "device_certificate")?;
                let signed = r.blob(MAX_SIGNED_PREKEYS, "signed")?;
                let one_time = match r.u8("has_one_time")? {
                    0 => None,
                    1 => Some(WireOneTimePrekey {
                        id: r.u32("prekey id")?,
                        public: r.blob(MAX_PREKEY_PUBLIC, "prekey public")?,
                        index: r.u32("prekey index")?,
                        path: r.blob(MAX_PROOF_PATH, "prekey proof")?,
                    }),
                    _ => {
                        return Err(ProtoError::Malformed {
                            field: "has_one_time",
                        });
                    }
                };
                Body::Bundle {
                    account_public,
                    device_certificate,
                    signed,
                    one_time,
                }
            }
            0x88 => Body::Certificate {
                device_certificate: r.blob(MAX_CERTIFICATE, "device_certificate")?,
            },
            0x84 => Body::Accepted {
                relay_id: r.u64("relay_id")?,
            },
            0x85 => Body::Deliver {
                delivery_id: r.u64("delivery_id")?,
                envelope: r.blob(MAX_ENVELOPE_LEN, "envelope")?,
            },
            0x86 => Body::PrekeysLow {
                remaining: r.u32("remaining")?,
            },
            0x87 => {
                let count = usize::from(r.u8("turn url count")?);
                if count > MAX_TURN_URLS {
                    return Err(ProtoError::TooLarge {
                        field: "turn urls",
                        len: count,
                        max: MAX_TURN_URLS,
                    });
                }
                let mut urls = Vec::with_capacity(count);
                for _ in 0..count {
                    urls.push(r.text(MAX_TURN_TEXT, "turn url")?);
                }
                Body::Turn {
                    urls,
                    username: r.text(MAX_TURN_TEXT, "turn username")?,
                    credential: r.text(MAX_TURN_TEXT, "turn credential")?,
                    ttl_secs: r.u32("ttl_secs")?,
                }
            }
            other => return Err(ProtoError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(Self { request_id, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Frame> {
        let id = [7u8; 32];
        let blob = [9u8; 16];
        vec![
            Frame {
                request_id: 60,
                body: Body::BlobOpen {
                    blob,
                    size: 3 << 30,
                    fetches: 3,
                },
            },
            Frame {
                request_id: 61,
                body: Body::BlobWrite {
                    blob,
                    offset: 65_552,
                    data: vec![1; MAX_BLOB_PIECE],
                },
            },
            Frame {
                request_id: 62,
                body: Body::BlobRead {
                    blob,
                    offset: 7,
                    len: 1000,
                },
            },
            Frame {
                request_id: 63,
                body: Body::BlobFetched { blob },
            },
            Frame {
                request_id: 64,
                body: Body::BlobState {
                    blob,
                    size: 10,
                    stored: 5,
                },
            },
            Frame {
                request_id: 65,
                body: Body::BlobData {
                    blob,
                    offset: 0,
                    data: vec![2; 10],
                },
            },
            Frame {
                request_id: 1,
                body: Body::Register {
                    account_public: vec![1; 2625],
                    device_certificate: vec![2; 8973],
                    proof: vec![3; 4691],
                },
            },
            Frame {
                request_id: 2,
                body: Body::Login {
                    account_id: id,
                    device_id: 3,
                    proof: vec![4; 4691],
                },
            },
            Frame {
                request_id: 31,
                body: Body::DeleteAccount {
                    proof: vec![4; 4691],
                },
            },
            Frame {
                request_id: 3,
                body: Body::PublishPrekeys {
                    signed: vec![5; 6000],
                    one_time: (0..100)
                        .map(|i| WirePrekey {
                            id: i,
                            public: vec![6; 33],
                        })
                        .collect(),
                },
            },
            Frame {
                request_id: 4,
                body: Body::FetchBundle {
                    account_id: id,
                    device_id: 1,
                },
            },
            Frame {
                request_id: 41,
                body: Body::FetchCertificate {
                    account_id: id,
                    device_id: 2,
                },
            },
            Frame {
                request_id: 42,
                body: Body::Certificate {
                    device_certificate: vec![3; 8973],
                },
            },
            Frame {
                request_id: 5,
                body: Body::Send {
                    account_id: id,
                    device_id: 1,
                    envelope: vec![8; MAX_ENVELOPE_LEN],
                },
            },
            Frame {
                request_id: 6,
                body: Body::Ack {
                    delivery_id: u64::MAX,
                },
            },
            Frame {
                request_id: 0,
                body: Body::Challenge {
                    nonce: [9; 32],
                    expires_at: 1_790_000_000_000,
                },
            },
            Frame {
                request_id: 7,
                body: Body::Ok,
            },
            Frame {
                request_id: 8,
                body: Body::Error {
                    code: ErrorCode::MailboxFull,
                    retry_after_ms: 5000,
                    detail: "mailbox full".into(),
                },
            },
            Frame {
                request_id: 9,
                body: Body::Bundle {
                    account_public: vec![7; 2625],
                    device_certificate: vec![1; 8973],
                    signed: vec![2; 6000],
                    one_time: Some(WireOneTimePrekey {
                        id: 4,
                        public: vec![5; 33],
                        index: 3,
                        path: vec![6; 128],
                    }),
                },
            },
            Frame {
                request_id: 10,
                body: Body::Bundle {
                    account_public: vec![7; 2625],
                    device_certificate: vec![1; 8973],
                    signed: vec![2; 6000],
                    one_time: None,
                },
            },
            Frame {
                request_id: 11,
                body: Body::Accepted { relay_id: 42 },
            },
            Frame {
                request_id: 0,
                body: Body::Deliver {
                    delivery_id: 43,
                    envelope: vec![1; 1905],
                },
            },
            Frame {
                request_id: 0,
                body: Body::PrekeysLow { remaining: 12 },
            },
            Frame {
                request_id: 13,
                body: Body::TurnCredentials,
            },
            Frame {
                request_id: 13,
                body: Body::Turn {
                    urls: vec!["turn:relay.example:3478?transport=udp".into()],
                    username: "1795000000".into(),
                    credential: "q1w2e3".into(),
                    ttl_secs: 600,
                },
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for f in samples() {
            let bytes = f.encode().unwrap();
            assert!(bytes.len() <= MAX_FRAME_LEN);
            assert_eq!(Frame::decode(&bytes).unwrap(), f);
        }
    }

    #[test]
    fn header_layout_is_as_documented() {
        let bytes = Frame {
            request_id: 0x0102_0304,
            body: Body::Ack { delivery_id: 5 },
        }
        .encode()
        .unwrap();
        assert_eq!(bytes, [1, 0x21, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 5]);
    }

    #[test]
    fn fail_cases_have_typed_errors() {
        let ok = Frame {
            request_id: 1,
            body: Body::Ack { delivery_id: 1 },
        }
        .encode()
        .unwrap();
        let mut v2 = ok.clone();
        v2[0] = 2;
        assert_eq!(Frame::decode(&v2), Err(ProtoError::UnsupportedVersion(2)));
        let mut unknown = ok.clone();
        unknown[1] = 0x7f;
        assert_eq!(Frame::decode(&unknown), Err(ProtoError::UnknownKind(0x7f)));
        assert!(matches!(
            Frame::decode(&ok[..ok.len() - 1]),
            Err(ProtoError::Malformed { .. })
        ));
        let mut trailing = ok.clone();
        trailing.push(0);
        assert!(matches!(
            Frame::decode(&trailing),
            Err(ProtoError::Malformed { .. })
        ));
        assert!(matches!(
            Frame::decode(&[]),
            Err(ProtoError::Malformed { .. })
        ));
        assert!(matches!(
            Frame::decode(&vec![1u8; MAX_FRAME_LEN + 1]),
            Err(ProtoError::TooLarge { .. })
        ));
        // A blob length above its limit is refused before anything is allocated.
        let mut huge = vec![1, 0x21 - 1, 0, 0, 0, 1];
        huge.extend_from_slice(&[7; 32]);
        huge.extend_from_slice(&1u32.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Frame::decode(&huge),
            Err(ProtoError::TooLarge {
                field: "envelope",
                ..
            })
        ));
        let bad_flag = {
            let mut b = Frame {
                request_id: 1,
                body: Body::Bundle {
                    account_public: vec![],
                    device_certificate: vec![],
                    signed: vec![],
                    one_time: None,
                },
            }
            .encode()
            .unwrap();
            *b.last_mut().unwrap() = 2;
            b
        };
        assert!(matches!(
            Frame::decode(&bad_flag),
            Err(ProtoError::Malformed {
                field: "has_one_time"
            })
        ));
        let bad_utf8 = {
            let mut b = Frame {
                request_id: 1,
                body: Body::Error {
                    code: ErrorCode::Internal,
                    retry_after_ms: 0,
                    detail: "x".into(),
                },
            }
            .encode()
            .unwrap();
            *b.last_mut().unwrap() = 0xff;
            b
        };
        assert!(matches!(
            Frame::decode(&bad_utf8),
            Err(ProtoError::Malformed { field: "detail" })
        ));
    }

    #[test]
    fn oversized_fields_are_refused_when_encoding() {
        let f = Frame {
            request_id: 1,
            body: Body::Send {
                account_id: [0; 32],
                device_id: 1,
                envelope: vec![0; MAX_ENVELOPE_LEN + 1],
            },
        };
        assert!(matches!(
            f.encode(),
            Err(ProtoError::TooLarge {
                field: "envelope",
                ..
            })
        ));
        let many = Frame {
            request_id: 1,
            body: Body::PublishPrekeys {
                signed: vec![],
                one_time: vec![
                    WirePrekey {
                        id: 0,
                        public: vec![]
                    };
                    MAX_PREKEYS_PER_UPLOAD + 1
                ],
            },
        };
        assert!(matches!(
            many.encode(),
            Err(ProtoError::TooLarge {
                field: "one_time",
                ..
            })
        ));
    }

    #[test]
    fn error_codes_round_trip_and_unknown_codes_survive() {
        for n in 0..=100u16 {
            assert_eq!(ErrorCode::from_u16(n).to_u16(), n);
        }
        assert_eq!(ErrorCode::from_u16(999), ErrorCode::Other(999));
        assert!(ErrorCode::Malformed.closes_connection());
        assert!(!ErrorCode::MailboxFull.closes_connection());
        assert_eq!(
            ErrorCode::from(&ProtoError::UnknownKind(9)),
            ErrorCode::UnknownKind
        );
    }
}
