//! The delivery driver (`docs/messaging.md`, "Delivery"): runs tessera-messaging's outbound
//! state machine against the vault's outbox and the relay connection.
//!
//! Sending never waits for this: `send_text` commits to the outbox and [`Engine::kick`]s. A
//! flush seals entries just before their first transmission (to the envelope key the recipient
//! has then), keeps up to a window of them in flight on the connection, and applies each answer
//! as it comes: one recipient device that fails never holds back another. No lock is held
//! across an await: the machine and the vault are each locked for one short step at a time.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tessera_crypto::AccountId;
use tessera_messaging::delivery::{Effect, FailReason, Item, Outcome};
use tessera_messaging::{DeviceId, MessageId, OutboxId, Recipient};
use tessera_net::{ClientError, RelayClient};
use tessera_proto::ErrorCode;
use tessera_store::MessageStatus;

use super::*;
use crate::{CoreError, Event};

/// Reconnections one flush makes after the connection dropped under it, before it gives up
/// (what it did not send stays in the outbox for the next flush).
const RECONNECTS: u32 = 3;

/// What a relay answer means for the envelope.
pub(crate) fn outcome_of(result: &Result<u64, ClientError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Accepted,
        Err(ClientError::Relay {
            code,
            retry_after_ms,
            ..
        }) => match code {
            ErrorCode::NotFound => Outcome::Permanent(FailReason::NoSuchDevice),
            ErrorCode::MailboxFull => Outcome::Permanent(FailReason::MailboxFull),
            ErrorCode::Malformed
            | ErrorCode::TooLarge
            | ErrorCode::UnknownKind
            | ErrorCode::UnsupportedVersion => Outcome::Permanent(FailReason::Refused),
            ErrorCode::RateLimited => Outcome::RetryAfter(u64::from(*retry_after_ms).max(100)),
            // The connection is going away or needs a new login: not the envelope's fault.
            ErrorCode::Replaced
            | ErrorCode::Unauthenticated
            | ErrorCode::AuthFailed
            | ErrorCode::ShuttingDown
            | ErrorCode::Timeout => Outcome::Disconnected,
            _ => Outcome::Transient,
        },
        Err(ClientError::Closed | ClientError::Net(_)) => Outcome::Disconnected,
        Err(_) => Outcome::Transient,
    }
}

/// Seals a queued Signal message for `device` of `contact` with this device's current epoch, on
/// the link to that device's current envelope key (made now if there is none): a full envelope
/// until the device acknowledged the link, a short one after (`docs/envelope.md`). Carries the
/// acknowledgement of the device's newest link to us. The caller runs it in a transaction.
pub(super) fn seal_queued(
    v: &Vault,
    me: &Me,
    contact: &[u8; 32],
    device: u32,
    payload: &[u8],
    now: u64,
) -> Result<Vec<u8>, CoreError> {
    let cert = v
        .contact_devices(contact)?
        .into_iter()
        .find(|(d, _)| *d == device)
        .ok_or(CoreError::UnknownContact)?
        .1;
    let cert = DeviceCertificate::from_bytes(&cert)?;
    let recipient = &cert.fields.envelope_key;
    let mut r = rng();
    let stored = v
        .outbound_link(contact, device)?
        .and_then(|b| OutboundLink::from_bytes(&b).ok())
        .filter(|l| l.serves(recipient, &me.epoch));
    let link = match stored {
        Some(l) => l,
        None => {
            let l = OutboundLink::new(recipient, &me.epoch, &mut r)?;
            v.put_outbound_link(contact, device, &l.to_bytes())?;
            l
        }
    };
    let sealed = seal_linked(
        &LinkedSealRequest {
            recipient,
            sender: &me.epoch,
            link: &link,
            ack: v.newest_inbound_link(contact, device)?,
            sent_at: now,
            content: payload,
        },
        &mut r,
    )?;
    Ok(sealed.bytes)
}

/// Seals an outbox entry's Signal message and stores the envelope in its place (before its
/// first transmission: a retry sends the same bytes).
fn seal_entry(
    v: &tessera_store::Vault,
    me: &crate::keys::Me,
    entry: &tessera_store::OutboxItem,
    now: u64,
) -> Result<Vec<u8>, CoreError> {
    let bytes = seal_queued(
        v,
        me,
        &entry.account_id,
        entry.device_id,
        &entry.envelope,
        now,
    )?;
    v.outbox_sealed(entry.id, &bytes)?;
    Ok(bytes)
}

impl Engine {
    /// The outbox changed: a running flush picks the new entries up, otherwise one starts in
    /// the background. Returns at once.
    pub(crate) fn kick(&self) {
        if self.inner.held.load(Ordering::SeqCst) {
            return;
        }
        self.inner.dirty.store(true, Ordering::SeqCst);
        self.inner.wake.notify_waiters();
        let idle = self.inner.flushing.try_lock().is_ok();
        if idle && let Ok(rt) = tokio::runtime::Handle::try_current() {
            let engine = self.clone();
            rt.spawn(async move {
                if let Err(e) = engine.flush_outbox().await {
                    tracing::debug!(error = %e, "flush ended; the outbox keeps the rest");
                }
            });
        }
    }

    /// Delivers the outbox until nothing more can go now: every entry is sent, failed for
    /// good, or waiting for its backoff (see [`Engine::next_delivery`]). Returns how many
    /// envelopes the relay accepted. Fails only when the relay cannot be reached or the vault
    /// fails; what was not sent stays in the outbox.
    pub async fn flush_outbox(&self) -> Result<usize, CoreError> {
        let mut total = 0;
        loop {
            {
                let _one_at_a_time = self.inner.flushing.lock().await;
                self.inner.dirty.store(false, Ordering::SeqCst);
                total += self.deliver().await?;
            }
            // Entries added while the flush was ending (checked after the lock is released,
            // so a `kick` that found it held is never lost).
            if !self.inner.dirty.load(Ordering::SeqCst) {
                return Ok(total);
            }
        }
    }

    /// Holds background delivery (`true`): sends still commit to the outbox, but nothing goes
    /// out until [`Engine::flush_outbox`] is called or the hold is released. For benchmarks
    /// that measure the send path without the network, and for tests.
    #[doc(hidden)]
    pub fn hold_delivery(&self, hold: bool) {
        self.inner.held.store(hold, Ordering::SeqCst);
        if !hold {
            self.kick();
        }
    }

    /// Seals every outbox entry not sealed yet, now, without sending anything (what a flush
    /// does before the first transmission of each). For benchmarks of the send path.
    #[doc(hidden)]
    pub fn seal_outbox(&self) -> Result<usize, CoreError> {
        self.maybe_maintain()?;
        let now = self.now_ms();
        self.with(|u| {
            u.vault.transaction(|v| {
                let mut n = 0;
                for head in v.outbox_heads(0)?.into_iter().filter(|h| !h.sealed) {
                    if let Some(entry) = v.outbox_item(head.id)? {
                        seal_entry(v, &u.me, &entry, now)?;
                        n += 1;
                    }
                }
                Ok(n)
            })
        })
    }

    /// Sets how many envelopes may be in flight at once (default 64, `docs/messaging.md`);
    /// takes effect when no flush is running. 1 is a sequential outbox, for comparison.
    #[doc(hidden)]
    pub fn set_delivery_window(&self, window: usize) -> Result<(), CoreError> {
        self.machine(|d| {
            if d.is_idle() {
                let config = tessera_messaging::delivery::Config {
                    window: window.max(1),
                    ..*d.config()
                };
                *d = tessera_messaging::Delivery::new(config);
            }
        })
    }

    /// When the next entry waiting for a retry becomes due (engine clock, ms), if one is.
    pub fn next_delivery(&self) -> Option<u64> {
        let now = self.now_ms();
        self.inner
            .delivery
            .lock()
            .ok()
            .and_then(|d| d.next_wakeup(now))
    }

    /// Entries the outbox holds (sealed or not), for the CLI and tests.
    pub fn outbox_len(&self) -> Result<usize, CoreError> {
        self.with(|u| Ok(u.vault.outbox_heads(0)?.len()))
    }

    fn machine<T>(
        &self,
        f: impl FnOnce(&mut tessera_messaging::Delivery) -> T,
    ) -> Result<T, CoreError> {
        let mut d = self.inner.delivery.lock().map_err(|_| CoreError::Busy)?;
        Ok(f(&mut d))
    }

    async fn deliver(&self) -> Result<usize, CoreError> {
        let mut client = self.connect().await?;
        let mut refreshed = HashSet::new();
        self.load_outbox(&mut refreshed).await?;
        let mut sends = FuturesUnordered::new();
        let mut accepted = 0;
        let mut reconnects = 0;
        let mut lost = false;
        let result: Result<(), CoreError> = loop {
            if lost && sends.is_empty() {
                // Every answer from the old connection is in: start again on a new one.
                reconnects += 1;
                if reconnects > RECONNECTS {
                    break Err(CoreError::Net(ClientError::Closed));
                }
                self.forget_client(&client);
                client = match self.connect().await {
                    Ok(c) => c,
                    Err(e) => break Err(e),
                };
                lost = false;
            }
            if !lost {
                let now = self.now_ms();
                let mut batch = Vec::new();
                while let Some(item) = self.machine(|d| d.next(now))? {
                    batch.push(item);
                }
                if !batch.is_empty() {
                    match self.seal_batch(&batch, now) {
                        Ok(ready) => {
                            for (item, bytes) in ready {
                                sends.push(transmit(client.clone(), item, bytes));
                            }
                        }
                        Err(e) => break Err(e),
                    }
                }
            }
            if sends.is_empty() {
                match self.load_outbox(&mut refreshed).await {
                    Ok(0) => break Ok(()),
                    Ok(_) => continue,
                    Err(e) => break Err(e),
                }
            }
            tokio::select! {
                Some((item, result)) = sends.next() => {
                    let outcome = outcome_of(&result);
                    if let Err(e) = &result {
                        tracing::debug!(error = %e, ?outcome, "relay did not take an envelope");
                    }
                    if outcome == Outcome::Disconnected && !lost {
                        lost = true;
                        // Once per lost connection: the window in use halves.
                        self.machine(|d| d.connection_lost())?;
                    }
                    let now = self.now_ms();
                    let effect = self.machine(|d| d.outcome(item.id, outcome, now, &mut rng()))?;
                    if let Some(effect) = effect {
                        if matches!(effect, Effect::Sent { .. }) {
                            accepted += 1;
                        }
                        if let Err(e) = self.apply(effect) {
                            break Err(e);
                        }
                    }
                }
                () = self.inner.wake.notified() => {
                    if let Err(e) = self.load_outbox(&mut refreshed).await {
                        break Err(e);
                    }
                }
            }
        };
        if result.is_err() {
            // Whatever was in flight is sent again by the next flush (the same sealed bytes:
            // the recipient drops a second copy by its envelope id).
            drop(sends);
            self.machine(|d| d.disconnected())?;
        }
        result.map(|()| accepted)
    }

    fn forget_client(&self, client: &Arc<RelayClient>) {
        if let Ok(mut held) = self.inner.client.lock()
            && held.as_ref().is_some_and(|h| Arc::ptr_eq(h, client))
        {
            held.take();
        }
    }

    /// Offers every outbox entry to the machine (it ignores those it knows). Before the first
    /// seal to a contact in this flush, the contact's certificates are refreshed if stale, so
    /// entries go to the envelope key the recipient has now, however long they waited
    /// (docs/keys.md, "Rotation"). Returns how many entries were new.
    async fn load_outbox(&self, refreshed: &mut HashSet<[u8; 32]>) -> Result<usize, CoreError> {
        let heads = self.with(|u| Ok(u.vault.outbox_heads(0)?))?;
        let new: Vec<_> = self.machine(|d| {
            heads
                .into_iter()
                .filter(|h| !d.contains(OutboxId(h.id)))
                .collect()
        })?;
        let mut stale = false;
        for h in new.iter().filter(|h| !h.sealed) {
            if refreshed.insert(h.account_id) {
                self.refresh_contact(&h.account_id).await;
                stale = true;
            }
        }
        if stale {
            self.maybe_maintain()?;
        }
        self.machine(|d| {
            for h in &new {
                d.queue(Item {
                    id: OutboxId(h.id),
                    to: Recipient {
                        account: AccountId(h.account_id),
                        device: DeviceId(h.device_id),
                    },
                    message: h.message_id.map(MessageId),
                });
            }
        })?;
        Ok(new.len())
    }

    /// The bytes of each entry, sealing those not sealed yet (one vault transaction for the
    /// batch). Entries whose contact or device is gone are finished here as failed.
    fn seal_batch(&self, batch: &[Item], now: u64) -> Result<Vec<(Item, Vec<u8>)>, CoreError> {
        // The epoch certificate must cover the send time written into each envelope: a flush
        // that outlives an epoch (or was started by a receipt, not a send) rotates first, and
        // the send time is read under the lock that rotations take, so it is never older than
        // the epoch it is sealed under (not_before is its start less the allowed skew).
        self.maybe_maintain()?;
        let (ready, gone) = self.with(|u| {
            let now = self.now_ms().max(now);
            u.vault.transaction(|v| {
                let mut ready = Vec::with_capacity(batch.len());
                let mut gone = Vec::new();
                for item in batch {
                    let Some(entry) = v.outbox_item(item.id.0)? else {
                        gone.push(*item);
                        continue;
                    };
                    if entry.sealed {
                        ready.push((*item, entry.envelope));
                        continue;
                    }
                    match seal_entry(v, &u.me, &entry, now) {
                        Ok(bytes) => ready.push((*item, bytes)),
                        Err(CoreError::UnknownContact) => gone.push(*item),
                        Err(e) => return Err(e),
                    }
                }
                Ok((ready, gone))
            })
        })?;
        for item in gone {
            let outcome = Outcome::Permanent(FailReason::NoSuchContact);
            let effect = self.machine(|d| d.outcome(item.id, outcome, now, &mut rng()))?;
            if let Some(effect) = effect {
                self.apply(effect)?;
            }
        }
        Ok(ready)
    }

    /// Applies a finished entry to the vault and tells listeners.
    fn apply(&self, effect: Effect) -> Result<(), CoreError> {
        let changed = self.with(|u| {
            u.vault.transaction(|v| -> Result<_, CoreError> {
                match effect {
                    Effect::Sent { id, message } => {
                        v.outbox_remove(id.0)?;
                        Ok(match message {
                            Some(m) if v.advance_status(&m.0, MessageStatus::Sent)? => {
                                v.message(&m.0)?.map(|view| (m, MessageStatus::Sent, view))
                            }
                            _ => None,
                        })
                    }
                    Effect::Failed {
                        id,
                        message,
                        reason,
                    } => {
                        tracing::info!(%reason, "an envelope will not be delivered");
                        v.outbox_remove(id.0)?;
                        Ok(match message {
                            Some(m) if v.fail_message(&m.0, reason.as_str())? => v
                                .message(&m.0)?
                                .map(|view| (m, MessageStatus::Failed, view)),
                            _ => None,
                        })
                    }
                }
            })
        })?;
        if let Some((m, status, view)) = changed {
            self.emit(Event::Status {
                message_id: m.0,
                status,
                message: Box::new(view),
            });
        }
        Ok(())
    }
}

async fn transmit(
    client: Arc<RelayClient>,
    item: Item,
    bytes: Vec<u8>,
) -> (Item, Result<u64, ClientError>) {
    let result = client.send(&item.to.account, item.to.device.0, bytes).await;
    (item, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(code: ErrorCode, retry_after_ms: u32) -> Result<u64, ClientError> {
        Err(ClientError::Relay {
            code,
            retry_after_ms,
            detail: String::new(),
        })
    }

    #[test]
    fn relay_answers_map_to_what_the_delivery_machine_does() {
        assert_eq!(outcome_of(&Ok(7)), Outcome::Accepted);
        assert_eq!(
            outcome_of(&relay(ErrorCode::NotFound, 0)),
            Outcome::Permanent(FailReason::NoSuchDevice)
        );
        assert_eq!(
            outcome_of(&relay(ErrorCode::MailboxFull, 0)),
            Outcome::Permanent(FailReason::MailboxFull)
        );
        for refused in [ErrorCode::Malformed, ErrorCode::TooLarge] {
            assert_eq!(
                outcome_of(&relay(refused, 0)),
                Outcome::Permanent(FailReason::Refused)
            );
        }
        assert_eq!(
            outcome_of(&relay(ErrorCode::RateLimited, 2500)),
            Outcome::RetryAfter(2500)
        );
        assert_eq!(
            outcome_of(&relay(ErrorCode::RateLimited, 0)),
            Outcome::RetryAfter(100),
            "never a busy loop"
        );
        for gone in [ErrorCode::Replaced, ErrorCode::ShuttingDown] {
            assert_eq!(outcome_of(&relay(gone, 0)), Outcome::Disconnected);
        }
        assert_eq!(outcome_of(&Err(ClientError::Closed)), Outcome::Disconnected);
        assert_eq!(
            outcome_of(&relay(ErrorCode::Internal, 0)),
            Outcome::Transient
        );
        assert_eq!(
            outcome_of(&Err(ClientError::Protocol("odd"))),
            Outcome::Transient
        );
    }
}
