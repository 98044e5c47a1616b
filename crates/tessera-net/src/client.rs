//! A relay protocol v1 client (`docs/relay-protocol.md`) over a pinned WebSocket.
//!
//! [`RelayClient::connect`] opens the connection and reads the relay's challenge; two tasks then
//! own the socket: a writer that batches outgoing frames, and a reader that routes each reply to
//! the request with its id and everything the relay pushes (envelopes, prekey warnings, a
//! closing error) to [`Pushes`]. Requests may be issued concurrently and are pipelined.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt as _, StreamExt as _};
use rand::{CryptoRng, Rng};
use tessera_crypto::{
    AccountId, AccountPublic, DeviceCertificate, HybridSigningKey, OneTimePrekeyProof,
    SignedPrekeys, sign_relay_login,
};
use tessera_proto::{BlobId, Body, ErrorCode, Frame, RelayAddress, WirePrekey};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::{NetError, Transport, connect_websocket};

/// Frames the relay pushed that the application has not read yet, beyond which the reader
/// stops reading (and the relay's write timeout eventually applies).
const PUSH_QUEUE: usize = 4096;

/// Why a relay request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The relay answered with an error frame.
    #[error("relay refused the request: {code:?} ({detail})")]
    Relay {
        /// The code.
        code: ErrorCode,
        /// When to retry, if the relay said.
        retry_after_ms: u32,
        /// The relay's sentence (for logs).
        detail: String,
    },
    /// The connection closed before the reply arrived.
    #[error("the connection to the relay closed")]
    Closed,
    /// The relay returned identity keys that do not hash to the account id asked for: the
    /// relay (or someone in its place) tried to substitute keys.
    #[error("the relay returned keys of another account")]
    WrongAccount,
    /// The relay sent something this client cannot use.
    #[error("unexpected reply from the relay: {0}")]
    Protocol(&'static str),
    /// Something the relay returned failed verification (bad prekey signature, wrong device).
    #[error("the relay returned data that does not verify: {0}")]
    Verify(#[from] tessera_crypto::CryptoError),
}

impl ClientError {
    /// The relay's error code, if this is a relay error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Relay { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Credentials for the relay's TURN service.
pub struct TurnCredentials {
    /// `turn:` URLs.
    pub urls: Vec<String>,
    /// Time-limited username.
    pub username: String,
    /// Its credential.
    pub credential: zeroize::Zeroizing<String>,
    /// How long they stay valid.
    pub ttl: std::time::Duration,
}

impl std::fmt::Debug for TurnCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnCredentials")
            .field("urls", &self.urls)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Something the relay pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pushed {
    /// An envelope for this device; acknowledge it with [`RelayClient::ack`] once it is safe.
    Deliver {
        /// Id to acknowledge.
        delivery_id: u64,
        /// The sealed envelope.
        envelope: Vec<u8>,
    },
    /// One-time prekeys are running low.
    PrekeysLow {
        /// How many are left.
        remaining: u32,
    },
    /// The relay closed the connection with this error (e.g. `ShuttingDown`, `Replaced`).
    Closing {
        /// The code.
        code: ErrorCode,
        /// The relay's sentence.
        detail: String,
    },
}

/// The stream of [`Pushed`] frames; ends when the connection closes.
pub type Pushes = mpsc::Receiver<Pushed>;

/// A prekey bundle as the relay handed it out, verified against the account's keys.
#[derive(Debug, Clone)]
pub struct FetchedBundle {
    /// The account's public keys (they hash to the account id that was asked for).
    pub account: AccountPublic,
    /// The device's certificate (verified against the account).
    pub certificate: DeviceCertificate,
    /// The signed prekeys (verified).
    pub signed: SignedPrekeys,
    /// A one-time prekey with its Merkle proof (verified), if any were left.
    pub one_time: Option<OneTimePrekeyProof>,
}

/// Requests waiting for replies; `None` once the connection is gone.
type Waiters = Arc<Mutex<Option<HashMap<u32, oneshot::Sender<Body>>>>>;

/// A connection to the relay.
pub struct RelayClient {
    out: mpsc::UnboundedSender<Message>,
    waiters: Waiters,
    next_id: AtomicU32,
    nonce: [u8; 32],
    pin: [u8; 32],
}

impl RelayClient {
    /// Connects, reads the challenge and starts the connection's tasks.
    pub async fn connect(
        addr: &RelayAddress,
        transport: &Transport,
    ) -> Result<(Self, Pushes), ClientError> {
        let ws = connect_websocket(addr, transport).await?;
        let (mut sink, mut stream) = ws.split();
        let nonce = loop {
            match stream.next().await {
                Some(Ok(Message::Binary(bytes))) => match Frame::decode(&bytes) {
                    Ok(Frame {
                        body: Body::Challenge { nonce, .. },
                        ..
                    }) => break nonce,
                    Ok(Frame {
                        body:
                            Body::Error {
                                code,
                                retry_after_ms,
                                detail,
                            },
                        ..
                    }) => {
                        return Err(ClientError::Relay {
                            code,
                            retry_after_ms,
                            detail,
                        });
                    }
                    _ => return Err(ClientError::Protocol("first frame is not a challenge")),
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return Err(ClientError::Closed),
            }
        };
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let waiters: Waiters = Arc::new(Mutex::new(Some(HashMap::new())));
        let (push_tx, pushes) = mpsc::channel(PUSH_QUEUE);

        tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                if sink.feed(msg).await.is_err() {
                    return;
                }
                // Batch whatever else is queued into the same flush.
                while let Ok(msg) = out_rx.try_recv() {
                    if sink.feed(msg).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let reader_waiters = waiters.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Binary(bytes) = msg else {
                    continue;
                };
                let Ok(frame) = Frame::decode(&bytes) else {
                    break;
                };
                let waiter = if frame.request_id == 0 {
                    None
                } else {
                    reader_waiters
                        .lock()
                        .ok()
                        .and_then(|mut w| w.as_mut().and_then(|w| w.remove(&frame.request_id)))
                };
                if let Some(w) = waiter {
                    let _ = w.send(frame.body);
                    continue;
                }
                let pushed = match frame.body {
                    Body::Deliver {
                        delivery_id,
                        envelope,
                    } => Pushed::Deliver {
                        delivery_id,
                        envelope,
                    },
                    Body::PrekeysLow { remaining } => Pushed::PrekeysLow { remaining },
                    Body::Error {
                        code,
                        retry_after_ms,
                        detail,
                    } => {
                        // The relay is closing the connection: every request still waiting
                        // fails with its reason rather than a bare "closed".
                        let waiting = reader_waiters.lock().ok().and_then(|mut w| w.take());
                        for (_, w) in waiting.into_iter().flatten() {
                            let _ = w.send(Body::Error {
                                code,
                                retry_after_ms,
                                detail: detail.clone(),
                            });
                        }
                        Pushed::Closing { code, detail }
                    }
                    _ => continue,
                };
                if push_tx.send(pushed).await.is_err() {
                    break;
                }
            }
            // Wake every request still waiting: the connection is gone.
            if let Ok(mut w) = reader_waiters.lock() {
                w.take();
            }
        });
        Ok((
            Self {
                out,
                waiters,
                next_id: AtomicU32::new(1),
                nonce,
                pin: *addr.pin.as_bytes(),
            },
            pushes,
        ))
    }

    /// Sends a request and waits for its reply; an `Error` reply becomes [`ClientError::Relay`].
    pub async fn request(&self, body: Body) -> Result<Body, ClientError> {
        let id = match self.next_id.fetch_add(1, Ordering::Relaxed) {
            0 => self.next_id.fetch_add(1, Ordering::Relaxed),
            id => id,
        };
        let bytes = Frame::reply(id, body)
            .encode()
            .map_err(|_| ClientError::Protocol("request does not encode (too large?)"))?;
        let (tx, rx) = oneshot::channel();
        match self.waiters.lock().as_deref_mut() {
            Ok(Some(w)) => {
                w.insert(id, tx);
            }
            _ => return Err(ClientError::Closed),
        }
        if self.out.send(Message::Binary(bytes.into())).is_err() {
            return Err(ClientError::Closed);
        }
        match rx.await.map_err(|_| ClientError::Closed)? {
            Body::Error {
                code,
                retry_after_ms,
                detail,
            } => Err(ClientError::Relay {
                code,
                retry_after_ms,
                detail,
            }),
            body => Ok(body),
        }
    }

    /// Sends raw bytes as one WebSocket message (for tests of the relay's input handling).
    pub fn send_raw(&self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.out
            .send(Message::Binary(bytes.into()))
            .map_err(|_| ClientError::Closed)
    }

    fn proof<R: Rng + CryptoRng>(
        &self,
        auth_key: &HybridSigningKey,
        account_id: &AccountId,
        device_id: u32,
        rng: &mut R,
    ) -> Result<Vec<u8>, ClientError> {
        Ok(sign_relay_login(
            auth_key,
            &self.nonce,
            &self.pin,
            account_id,
            device_id,
            rng,
        )?)
    }

    /// Registers the device described by `certificate` (and its account, if new) and logs in.
    pub async fn register<R: Rng + CryptoRng>(
        &self,
        account: &AccountPublic,
        certificate: &DeviceCertificate,
        auth_key: &HybridSigningKey,
        rng: &mut R,
    ) -> Result<(), ClientError> {
        let proof = self.proof(
            auth_key,
            &certificate.account_id,
            certificate.fields.device_id,
            rng,
        )?;
        expect_ok(
            self.request(Body::Register {
                account_public: account.to_bytes(),
                device_certificate: certificate.to_bytes(),
                proof,
            })
            .await?,
        )
    }

    /// Logs in as a registered device.
    pub async fn login<R: Rng + CryptoRng>(
        &self,
        account_id: &AccountId,
        device_id: u32,
        auth_key: &HybridSigningKey,
        rng: &mut R,
    ) -> Result<(), ClientError> {
        let proof = self.proof(auth_key, account_id, device_id, rng)?;
        expect_ok(
            self.request(Body::Login {
                account_id: account_id.0,
                device_id,
                proof,
            })
            .await?,
        )
    }

    /// The proof [`RelayClient::delete_account`] needs: the account identity's signature over
    /// this connection's challenge and the relay's pin (good for this connection only).
    pub fn account_deletion_proof<R: Rng + CryptoRng>(
        &self,
        identity: &tessera_crypto::AccountIdentity,
        rng: &mut R,
    ) -> Result<Vec<u8>, ClientError> {
        Ok(tessera_crypto::sign_account_deletion(
            identity,
            &self.nonce,
            &self.pin,
            rng,
        )?)
    }

    /// Deletes the logged-in account at the relay for good (`docs/leaving.md`): its devices,
    /// certificates, prekeys and mailboxes. `Ok` comes after the relay's commit.
    pub async fn delete_account(&self, proof: Vec<u8>) -> Result<(), ClientError> {
        expect_ok(self.request(Body::DeleteAccount { proof }).await?)
    }

    /// Publishes signed prekeys and the one-time prekeys of their batch (replacing earlier ones).
    pub async fn publish_prekeys(
        &self,
        signed: &SignedPrekeys,
        one_time: Vec<WirePrekey>,
    ) -> Result<(), ClientError> {
        expect_ok(
            self.request(Body::PublishPrekeys {
                signed: signed.to_bytes(),
                one_time,
            })
            .await?,
        )
    }

    /// Short-lived credentials for the relay's TURN service (calls); `None` when the relay
    /// runs none.
    pub async fn turn_credentials(&self) -> Result<Option<TurnCredentials>, ClientError> {
        let Body::Turn {
            urls,
            username,
            credential,
            ttl_secs,
        } = self.request(Body::TurnCredentials).await?
        else {
            return Err(ClientError::Protocol(
                "TurnCredentials answered without credentials",
            ));
        };
        if urls.is_empty() {
            return Ok(None);
        }
        if urls
            .iter()
            .any(|u| !(u.starts_with("turn:") || u.starts_with("turns:")))
        {
            return Err(ClientError::Protocol("a TURN URL that is not turn:"));
        }
        Ok(Some(TurnCredentials {
            urls,
            username,
            credential: zeroize::Zeroizing::new(credential),
            ttl: std::time::Duration::from_secs(u64::from(ttl_secs)),
        }))
    }

    /// Fetches a device's bundle and verifies everything in it: the account keys must hash to
    /// `account_id` (so a relay cannot substitute them), the certificate, the prekey signatures
    /// and the one-time prekey's Merkle path must verify under them.
    pub async fn fetch_bundle(
        &self,
        account_id: &AccountId,
        device_id: u32,
        now_ms: u64,
    ) -> Result<FetchedBundle, ClientError> {
        let account_id = *account_id;
        let Body::Bundle {
            account_public,
            device_certificate,
            signed,
            one_time,
        } = self
            .request(Body::FetchBundle {
                account_id: account_id.0,
                device_id,
            })
            .await?
        else {
            return Err(ClientError::Protocol(
                "FetchBundle answered without a bundle",
            ));
        };
        let account = &AccountPublic::from_bytes(&account_public)?;
        if account.account_id() != account_id {
            return Err(ClientError::WrongAccount);
        }
        let certificate = DeviceCertificate::from_bytes(&device_certificate)?;
        certificate.verify(account, now_ms)?;
        let signed = SignedPrekeys::from_bytes(&signed)?;
        if certificate.fields.device_id != device_id
            || signed.statement.device_id != device_id
            || signed.statement.account_id != account_id
        {
            return Err(ClientError::Protocol("bundle is for another device"));
        }
        let one_time = match one_time {
            Some(p) => Some(OneTimePrekeyProof::from_wire(
                p.id, &p.public, p.index, &p.path,
            )?),
            None => None,
        };
        signed.verify(account, one_time.as_ref())?;
        Ok(FetchedBundle {
            account: account.clone(),
            certificate,
            signed,
            one_time,
        })
    }

    /// Fetches the certificate the relay holds for a device and checks it against the account's
    /// keys the caller already trusts: signed by `account`, for that device, and not starting
    /// in the future (beyond the allowed clock skew) at `now_ms`. It may have expired: it is
    /// the newest the device registered, and a device offline since still holds its key.
    /// A relay can withhold a renewal this way, but not forge one.
    pub async fn fetch_certificate(
        &self,
        account_id: &AccountId,
        device_id: u32,
        account: &AccountPublic,
        now_ms: u64,
    ) -> Result<DeviceCertificate, ClientError> {
        if account.account_id() != *account_id {
            return Err(ClientError::WrongAccount);
        }
        let Body::Certificate { device_certificate } = self
            .request(Body::FetchCertificate {
                account_id: account_id.0,
                device_id,
            })
            .await?
        else {
            return Err(ClientError::Protocol(
                "FetchCertificate answered without a certificate",
            ));
        };
        let certificate = DeviceCertificate::from_bytes(&device_certificate)?;
        certificate.verify_signature(account)?;
        if certificate.fields.not_before > now_ms.saturating_add(tessera_crypto::MAX_CLOCK_SKEW_MS)
        {
            return Err(ClientError::Verify(tessera_crypto::CryptoError::Expired {
                what: "device certificate (not yet valid)",
            }));
        }
        if certificate.fields.device_id != device_id {
            return Err(ClientError::Protocol("certificate is for another device"));
        }
        Ok(certificate)
    }

    /// Sends an envelope to a device; returns the relay's id once it is durably stored.
    pub async fn send(
        &self,
        account_id: &AccountId,
        device_id: u32,
        envelope: Vec<u8>,
    ) -> Result<u64, ClientError> {
        match self
            .request(Body::Send {
                account_id: account_id.0,
                device_id,
                envelope,
            })
            .await?
        {
            Body::Accepted { relay_id } => Ok(relay_id),
            _ => Err(ClientError::Protocol("Send answered without Accepted")),
        }
    }

    /// Acknowledges a delivered envelope so the relay deletes it.
    pub async fn ack(&self, delivery_id: u64) -> Result<(), ClientError> {
        expect_ok(self.request(Body::Ack { delivery_id }).await?)
    }

    /// Starts (or resumes) uploading attachment blob `blob` of `size` bytes that `fetches`
    /// devices will download (`docs/attachments.md`); how many bytes the relay already holds.
    pub async fn blob_open(
        &self,
        blob: BlobId,
        size: u64,
        fetches: u16,
    ) -> Result<u64, ClientError> {
        blob_state(
            blob,
            self.request(Body::BlobOpen {
                blob,
                size,
                fetches,
            })
            .await?,
        )
    }

    /// Uploads the blob's bytes at `offset`; how many bytes the relay holds after it (not
    /// `offset + data.len()` when `offset` was not where its copy ended: go on from there).
    pub async fn blob_write(
        &self,
        blob: BlobId,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<u64, ClientError> {
        blob_state(
            blob,
            self.request(Body::BlobWrite { blob, offset, data }).await?,
        )
    }

    /// Up to `len` bytes of a complete blob from `offset` (fewer only at its end).
    pub async fn blob_read(
        &self,
        blob: BlobId,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, ClientError> {
        match self.request(Body::BlobRead { blob, offset, len }).await? {
            Body::BlobData {
                blob: b,
                offset: o,
                data,
            } if b == blob && o == offset && data.len() <= len as usize => Ok(data),
            _ => Err(ClientError::Protocol("BlobRead answered without its data")),
        }
    }

    /// Tells the relay this device has the whole blob (after the last device, it is deleted).
    pub async fn blob_fetched(&self, blob: BlobId) -> Result<(), ClientError> {
        expect_ok(self.request(Body::BlobFetched { blob }).await?)
    }
}

fn blob_state(blob: BlobId, body: Body) -> Result<u64, ClientError> {
    match body {
        Body::BlobState {
            blob: b,
            size,
            stored,
        } if b == blob && stored <= size => Ok(stored),
        _ => Err(ClientError::Protocol("expected the blob's state")),
    }
}

fn expect_ok(body: Body) -> Result<(), ClientError> {
    match body {
        Body::Ok => Ok(()),
        _ => Err(ClientError::Protocol("expected Ok")),
    }
}
