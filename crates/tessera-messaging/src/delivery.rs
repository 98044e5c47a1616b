//! The outbound state machine (`docs/messaging.md`, "Delivery").
//!
//! The outbox holds one entry per recipient device. This machine decides which entries go out
//! when; the driver (`tessera-core`) seals and transmits them and reports each outcome. It never
//! waits for anything: it is told what happened and answers with what to do.
//!
//! - **Pipelined**: up to [`Config::window`] envelopes are in flight on the connection at once,
//!   so a round trip of a second (Tor) costs a second per *window*, not per message. The window
//!   in use adapts: each lost connection halves it (down to 1), each accepted envelope widens it
//!   by one (up to the configured one), so a link that keeps dying mid-window still moves a
//!   smaller window all the way through instead of resending a whole one forever.
//! - **Independent per recipient device**: each device has its own queue, served round-robin;
//!   a device whose envelopes fail (gone, full mailbox, refused) never holds back another's.
//! - **Ordered per device**: a device's entries go out in outbox order; a retry goes back to the
//!   front of its queue. Envelopes already in flight behind a failed one may land first — the
//!   receiver orders by the (bounded) sender time, and Signal sessions accept out-of-order
//!   messages.
//! - **Retries** back off exponentially with "equal jitter" (half fixed, half random) per device;
//!   a rate-limit answer pauses every queue for the time the relay asked. Losing the connection
//!   is not the envelope's fault: what was in flight waits for the next connection, no attempt
//!   counted.
//! - **Permanent failures** end the entry with a reason the sender sees.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use rand::Rng;

use crate::ids::{MessageId, OutboxId, Recipient};

/// Tuning. The defaults are what the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Envelopes in flight at once, over all devices. 64: over Tor (0.3–1 s round trips) that
    /// is 64–213 envelopes a second, below the relay's default sustained 300 requests a second
    /// per account, so a backlog flushes at the window's pace without being rate limited; at
    /// most 64 × 149 KiB (the largest envelope) = 9.3 MiB waits in buffers.
    pub window: usize,
    /// Backoff after the first failed attempt, ms (doubled per further attempt).
    pub first_retry_ms: u64,
    /// Longest backoff, ms.
    pub max_retry_ms: u64,
    /// Attempts (answered with a transient failure) before an entry fails for good.
    pub max_attempts: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window: 64,
            first_retry_ms: 1_000,
            max_retry_ms: 5 * 60_000,
            max_attempts: 12,
        }
    }
}

/// One outbox entry as this machine tracks it (its bytes stay in the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// The outbox entry.
    pub id: OutboxId,
    /// Where it goes.
    pub to: Recipient,
    /// The message it carries, if it is one the sender sees (receipts are not).
    pub message: Option<MessageId>,
}

/// Why an entry will never be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailReason {
    /// The relay has no such device (it was removed or the account deleted).
    NoSuchDevice,
    /// The recipient's mailbox is at its cap.
    MailboxFull,
    /// The relay refused the envelope itself (malformed or too large).
    Refused,
    /// Transient failures, [`Config::max_attempts`] times in a row.
    TooManyAttempts,
    /// The contact or its device is no longer known here.
    NoSuchContact,
}

impl FailReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSuchDevice => "no_such_device",
            Self::MailboxFull => "mailbox_full",
            Self::Refused => "refused",
            Self::TooManyAttempts => "too_many_attempts",
            Self::NoSuchContact => "no_such_contact",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::NoSuchDevice,
            Self::MailboxFull,
            Self::Refused,
            Self::TooManyAttempts,
            Self::NoSuchContact,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoSuchDevice => "the recipient's device no longer exists",
            Self::MailboxFull => "the recipient's mailbox is full",
            Self::Refused => "the relay refused the message",
            Self::TooManyAttempts => "the relay kept failing; gave up",
            Self::NoSuchContact => "the contact is no longer known",
        })
    }
}

/// What became of one transmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The relay stored it.
    Accepted,
    /// The connection ended before the answer: sent again on the next one, no attempt counted.
    Disconnected,
    /// The relay asked every request to wait this long (rate limit), ms.
    RetryAfter(u64),
    /// A failure that may pass (relay error, shutting down, timeout): back off and retry.
    Transient,
    /// A failure that will not pass for this entry.
    Permanent(FailReason),
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Remove the entry from the outbox; its message (if any) is sent.
    Sent {
        /// The entry.
        id: OutboxId,
        /// Its message.
        message: Option<MessageId>,
    },
    /// Remove the entry from the outbox; its message (if any) failed for this reason.
    Failed {
        /// The entry.
        id: OutboxId,
        /// Its message.
        message: Option<MessageId>,
        /// Why.
        reason: FailReason,
    },
}

#[derive(Debug, Default)]
struct Queue {
    /// Not sent yet (or to be sent again), in outbox order, with their failed attempts.
    waiting: BTreeMap<OutboxId, (Item, u32)>,
    /// Transmitted, answer pending.
    sending: BTreeMap<OutboxId, (Item, u32)>,
    /// No transmission before this time (backoff), ms.
    not_before: u64,
}

/// The delivery state machine for one device's outbox.
#[derive(Debug)]
pub struct Delivery {
    config: Config,
    queues: BTreeMap<Recipient, Queue>,
    /// Which queue each known entry is in.
    index: HashMap<OutboxId, Recipient>,
    in_flight: usize,
    /// The window in use (1..=`config.window`): halved when the connection is lost, one wider
    /// for each accepted envelope.
    window: usize,
    /// The queue served last (round-robin).
    cursor: Option<Recipient>,
    /// Rate limited: nothing goes out before this time, ms.
    paused_until: u64,
}

impl Delivery {
    /// An empty machine.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            queues: BTreeMap::new(),
            index: HashMap::new(),
            in_flight: 0,
            window: config.window.max(1),
            cursor: None,
            paused_until: 0,
        }
    }

    /// The tuning in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Adds an outbox entry. An entry already known (waiting or in flight) is ignored, so the
    /// driver may offer the whole outbox again after new entries were added.
    pub fn queue(&mut self, item: Item) {
        if self.index.contains_key(&item.id) {
            return;
        }
        self.index.insert(item.id, item.to);
        self.queues
            .entry(item.to)
            .or_default()
            .waiting
            .insert(item.id, (item, 0));
    }

    /// Whether the machine knows this entry.
    pub fn contains(&self, id: OutboxId) -> bool {
        self.index.contains_key(&id)
    }

    /// Entries transmitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Entries waiting to be transmitted (ready or backing off).
    pub fn waiting(&self) -> usize {
        self.index.len() - self.in_flight
    }

    /// The window in use now (see [`Self::connection_lost`]).
    pub fn window(&self) -> usize {
        self.window
    }

    /// The connection broke with envelopes in flight: the window in use is halved (at least 1).
    /// The driver calls this once per lost connection (the envelopes themselves come back as
    /// [`Outcome::Disconnected`], or all at once with [`Self::disconnected`]).
    pub fn connection_lost(&mut self) {
        self.window = (self.window / 2).max(1);
    }

    /// Nothing waiting, nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.index.is_empty()
    }

    /// The next entry to transmit at `now`, if the window has room and a queue is ready. The
    /// driver transmits it and reports its [`Outcome`].
    pub fn next(&mut self, now: u64) -> Option<Item> {
        if self.in_flight >= self.window || now < self.paused_until {
            return None;
        }
        let ready = |q: &Queue| !q.waiting.is_empty() && q.not_before <= now;
        // Round-robin: the first ready queue after the one served last, wrapping around.
        let after = self.cursor.and_then(|c| {
            self.queues
                .range((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
                .find(|(_, q)| ready(q))
                .map(|(r, _)| *r)
        });
        let to = after.or_else(|| self.queues.iter().find(|(_, q)| ready(q)).map(|(r, _)| *r))?;
        let queue = self.queues.get_mut(&to)?;
        let (id, entry) = queue.waiting.pop_first()?;
        queue.sending.insert(id, entry);
        self.in_flight += 1;
        self.cursor = Some(to);
        Some(entry.0)
    }

    /// When the next entry becomes ready, if one is waiting for a time (backoff or rate limit)
    /// rather than for room in the window.
    pub fn next_wakeup(&self, now: u64) -> Option<u64> {
        let at = self
            .queues
            .values()
            .filter(|q| !q.waiting.is_empty())
            .map(|q| q.not_before.max(self.paused_until))
            .min()?;
        (at > now).then_some(at)
    }

    /// The connection is gone: everything in flight waits again (in order), no attempt counted.
    pub fn disconnected(&mut self) {
        for q in self.queues.values_mut() {
            let sending = std::mem::take(&mut q.sending);
            q.waiting.extend(sending);
        }
        self.in_flight = 0;
    }

    /// Reports what became of a transmitted entry. Returns the effect to apply, if the entry is
    /// finished. An unknown entry (reported twice, or after [`Self::disconnected`]) is ignored.
    pub fn outcome<R: Rng + ?Sized>(
        &mut self,
        id: OutboxId,
        outcome: Outcome,
        now: u64,
        rng: &mut R,
    ) -> Option<Effect> {
        let to = *self.index.get(&id)?;
        let queue = self.queues.get_mut(&to)?;
        let (item, attempts) = queue.sending.remove(&id)?;
        self.in_flight -= 1;
        let effect = match outcome {
            Outcome::Accepted => {
                self.window = (self.window + 1).min(self.config.window.max(1));
                Some(Effect::Sent {
                    id,
                    message: item.message,
                })
            }
            Outcome::Permanent(reason) => Some(Effect::Failed {
                id,
                message: item.message,
                reason,
            }),
            Outcome::Disconnected => {
                queue.waiting.insert(id, (item, attempts));
                None
            }
            Outcome::RetryAfter(ms) => {
                queue.waiting.insert(id, (item, attempts));
                // A little jitter so that many clients told the same thing do not return at once.
                let jitter = rng.random_range(0..=ms / 10);
                self.paused_until = self.paused_until.max(now.saturating_add(ms + jitter));
                None
            }
            Outcome::Transient => {
                let attempts = attempts + 1;
                if attempts >= self.config.max_attempts {
                    Some(Effect::Failed {
                        id,
                        message: item.message,
                        reason: FailReason::TooManyAttempts,
                    })
                } else {
                    queue.waiting.insert(id, (item, attempts));
                    let wait = backoff(&self.config, attempts, rng);
                    queue.not_before = queue.not_before.max(now.saturating_add(wait));
                    None
                }
            }
        };
        if effect.is_some() {
            self.index.remove(&id);
            if queue.waiting.is_empty() && queue.sending.is_empty() {
                self.queues.remove(&to);
            } else if matches!(outcome, Outcome::Accepted) && queue.not_before > now {
                // The device answers again: what waits behind the failure may go.
                queue.not_before = now;
            }
        }
        effect
    }
}

/// The wait before attempt `attempts + 1`: exponential from [`Config::first_retry_ms`], capped
/// at [`Config::max_retry_ms`], half of it fixed and half random ("equal jitter").
pub fn backoff<R: Rng + ?Sized>(config: &Config, attempts: u32, rng: &mut R) -> u64 {
    let exp = config
        .first_retry_ms
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(32))
        .min(config.max_retry_ms);
    exp / 2 + rng.random_range(0..=exp / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AccountId, DeviceId};
    use rand::SeedableRng as _;
    use rand_chacha::ChaCha8Rng;

    fn to(n: u8) -> Recipient {
        Recipient {
            account: AccountId([n; 32]),
            device: DeviceId(1),
        }
    }

    fn item(id: i64, r: Recipient) -> Item {
        Item {
            id: OutboxId(id),
            to: r,
            message: Some(MessageId([id as u8; 16])),
        }
    }

    fn machine(window: usize) -> (Delivery, ChaCha8Rng) {
        let config = Config {
            window,
            ..Config::default()
        };
        (Delivery::new(config), ChaCha8Rng::seed_from_u64(7))
    }

    #[test]
    fn a_lost_connection_halves_the_window_and_accepted_envelopes_widen_it_again() {
        let (mut d, mut rng) = machine(8);
        for id in 0..40 {
            d.queue(item(id, to(1)));
        }
        let burst = |d: &mut Delivery| std::iter::from_fn(|| d.next(0)).collect::<Vec<_>>();
        assert_eq!(burst(&mut d).len(), 8);
        // The connection dies with all 8 in flight: they come back, the window halves.
        d.connection_lost();
        for id in 0..8 {
            assert_eq!(
                d.outcome(OutboxId(id), Outcome::Disconnected, 0, &mut rng),
                None
            );
        }
        assert_eq!(d.window(), 4);
        let again = burst(&mut d);
        assert_eq!(
            again.len(),
            4,
            "the same entries, first, in a smaller window"
        );
        assert_eq!(again[0].id, OutboxId(0));
        // Twice more: down to 1, never 0.
        d.connection_lost();
        d.connection_lost();
        d.connection_lost();
        assert_eq!(d.window(), 1);
        d.disconnected();
        let mut sent = burst(&mut d);
        assert_eq!(sent.len(), 1);
        // Each accepted envelope makes room for two: back to the configured window.
        let mut accepted = 0;
        while d.window() < 8 {
            assert!(!sent.is_empty() && accepted < 8, "{accepted} acceptances");
            for i in sent {
                d.outcome(i.id, Outcome::Accepted, 0, &mut rng);
                accepted += 1;
            }
            sent = burst(&mut d);
        }
        assert!(accepted <= 7, "{accepted} acceptances to widen 1 to 8");
        for i in sent {
            d.outcome(i.id, Outcome::Accepted, 0, &mut rng);
        }
        assert_eq!(burst(&mut d).len(), 8);
        d.outcome(OutboxId(39), Outcome::Accepted, 0, &mut rng);
        assert_eq!(d.window(), 8, "never wider than configured");
    }

    #[test]
    fn the_window_bounds_what_is_in_flight() {
        let (mut d, mut rng) = machine(3);
        for i in 1..=5 {
            d.queue(item(i, to(1)));
        }
        let sent: Vec<_> = std::iter::from_fn(|| d.next(0)).map(|i| i.id.0).collect();
        assert_eq!(sent, [1, 2, 3], "in outbox order, three at a time");
        assert_eq!((d.in_flight(), d.waiting()), (3, 2));
        assert_eq!(
            d.outcome(OutboxId(2), Outcome::Accepted, 0, &mut rng),
            Some(Effect::Sent {
                id: OutboxId(2),
                message: Some(MessageId([2; 16]))
            })
        );
        assert_eq!(d.next(0).map(|i| i.id.0), Some(4));
        assert_eq!(d.next(0), None);
    }

    #[test]
    fn queueing_an_entry_twice_sends_it_once() {
        let (mut d, _) = machine(8);
        d.queue(item(1, to(1)));
        assert!(d.next(0).is_some());
        d.queue(item(1, to(1)));
        assert_eq!(d.next(0), None);
        assert_eq!(d.waiting(), 0);
    }

    #[test]
    fn devices_are_served_round_robin() {
        let (mut d, _) = machine(4);
        for i in 1..=4 {
            d.queue(item(i, to(1)));
        }
        for i in 5..=6 {
            d.queue(item(i, to(2)));
        }
        let order: Vec<_> = std::iter::from_fn(|| d.next(0)).map(|i| i.id.0).collect();
        assert_eq!(order, [1, 5, 2, 6]);
    }

    #[test]
    fn a_failing_device_never_blocks_another() {
        let (mut d, mut rng) = machine(2);
        for i in 1..=3 {
            d.queue(item(i, to(1)));
        }
        for i in 11..=13 {
            d.queue(item(i, to(2)));
        }
        let mut delivered = Vec::new();
        let mut failed = Vec::new();
        let mut now = 0;
        while !d.is_idle() && now < 10_000_000 {
            while let Some(it) = d.next(now) {
                let outcome = if it.to == to(1) {
                    Outcome::Transient
                } else {
                    Outcome::Accepted
                };
                match d.outcome(it.id, outcome, now, &mut rng) {
                    Some(Effect::Sent { id, .. }) => delivered.push((id.0, now)),
                    Some(Effect::Failed { id, reason, .. }) => failed.push((id.0, reason)),
                    None => {}
                }
            }
            now = d.next_wakeup(now).unwrap_or(now + 1);
        }
        // Device 2 finished at time 0, whatever device 1 was doing.
        assert_eq!(delivered, [(11, 0), (12, 0), (13, 0)]);
        assert_eq!(
            failed,
            [1, 2, 3].map(|i| (i, FailReason::TooManyAttempts)).to_vec()
        );
    }

    #[test]
    fn permanent_failures_end_only_their_entry() {
        let (mut d, mut rng) = machine(8);
        d.queue(item(1, to(1)));
        d.queue(item(2, to(2)));
        d.queue(item(3, to(3)));
        let a = d.next(0).expect("1");
        let b = d.next(0).expect("2");
        let c = d.next(0).expect("3");
        let full = d.outcome(
            a.id,
            Outcome::Permanent(FailReason::MailboxFull),
            0,
            &mut rng,
        );
        let gone = d.outcome(
            b.id,
            Outcome::Permanent(FailReason::NoSuchDevice),
            0,
            &mut rng,
        );
        let ok = d.outcome(c.id, Outcome::Accepted, 0, &mut rng);
        assert!(matches!(
            full,
            Some(Effect::Failed {
                reason: FailReason::MailboxFull,
                ..
            })
        ));
        assert!(matches!(
            gone,
            Some(Effect::Failed {
                reason: FailReason::NoSuchDevice,
                ..
            })
        ));
        assert!(matches!(ok, Some(Effect::Sent { .. })));
        assert!(d.is_idle());
    }

    #[test]
    fn a_disconnect_sends_everything_again_in_order_without_counting() {
        let (mut d, mut rng) = machine(8);
        for i in 1..=3 {
            d.queue(item(i, to(1)));
        }
        assert_eq!(std::iter::from_fn(|| d.next(0)).count(), 3);
        assert_eq!(
            d.outcome(OutboxId(1), Outcome::Accepted, 0, &mut rng)
                .map(|_| ()),
            Some(())
        );
        d.disconnected();
        assert_eq!(d.in_flight(), 0);
        // A late answer from the old connection changes nothing.
        assert_eq!(d.outcome(OutboxId(2), Outcome::Accepted, 0, &mut rng), None);
        let again: Vec<_> = std::iter::from_fn(|| d.next(0)).map(|i| i.id.0).collect();
        assert_eq!(again, [2, 3], "right away: a lost connection is no backoff");
        for _ in 0..100 {
            d.outcome(OutboxId(2), Outcome::Disconnected, 0, &mut rng);
            assert_eq!(d.next(0).map(|i| i.id.0), Some(2));
        }
    }

    #[test]
    fn retries_back_off_with_jitter_up_to_the_cap() {
        let config = Config::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for attempts in 1..=20u32 {
            let full = (config.first_retry_ms << (attempts - 1).min(20)).min(config.max_retry_ms);
            let waits: Vec<u64> = (0..200)
                .map(|_| backoff(&config, attempts, &mut rng))
                .collect();
            assert!(
                waits.iter().all(|w| *w >= full / 2 && *w <= full),
                "{attempts}"
            );
            let distinct: std::collections::HashSet<_> = waits.iter().collect();
            assert!(distinct.len() > 50, "jittered: {attempts}");
        }
        // The schedule a failing entry follows in the machine.
        let (mut d, mut rng) = machine(1);
        d.queue(item(1, to(1)));
        let mut now = 0;
        let mut waits = Vec::new();
        loop {
            let it = d.next(now).expect("ready");
            if let Some(e) = d.outcome(it.id, Outcome::Transient, now, &mut rng) {
                assert!(matches!(
                    e,
                    Effect::Failed {
                        reason: FailReason::TooManyAttempts,
                        ..
                    }
                ));
                break;
            }
            assert_eq!(d.next(now), None, "not before its backoff");
            let at = d.next_wakeup(now).expect("a wakeup");
            waits.push(at - now);
            now = at;
        }
        assert_eq!(waits.len() as u32, config.max_attempts - 1);
        for (i, w) in waits.iter().enumerate() {
            let full = (config.first_retry_ms << i).min(config.max_retry_ms);
            assert!(*w >= full / 2 && *w <= full, "attempt {}: {w}", i + 1);
        }
    }

    #[test]
    fn a_rate_limit_pauses_every_queue() {
        let (mut d, mut rng) = machine(8);
        d.queue(item(1, to(1)));
        d.queue(item(2, to(2)));
        let a = d.next(0).expect("1");
        assert_eq!(d.outcome(a.id, Outcome::RetryAfter(500), 0, &mut rng), None);
        assert_eq!(d.next(0), None, "device 2 waits too");
        let at = d.next_wakeup(0).expect("wakeup");
        assert!((500..=550).contains(&at), "{at}");
        assert!(d.next(at).is_some());
        assert!(d.next(at).is_some());
    }

    #[test]
    fn success_after_a_failure_lets_the_rest_go_at_once() {
        let (mut d, mut rng) = machine(8);
        for i in 1..=3 {
            d.queue(item(i, to(1)));
        }
        let (a, b) = (d.next(0).expect("1"), d.next(0).expect("2"));
        d.outcome(a.id, Outcome::Transient, 0, &mut rng);
        assert_eq!(d.next(0), None, "backing off");
        // The envelope behind it was accepted: the device is reachable again.
        d.outcome(b.id, Outcome::Accepted, 0, &mut rng);
        assert_eq!(d.next(0).map(|i| i.id.0), Some(1));
        assert_eq!(d.next(0).map(|i| i.id.0), Some(3));
    }

    #[test]
    fn reasons_round_trip_their_stored_names() {
        for r in [
            FailReason::NoSuchDevice,
            FailReason::MailboxFull,
            FailReason::Refused,
            FailReason::TooManyAttempts,
            FailReason::NoSuchContact,
        ] {
            assert_eq!(FailReason::parse(r.as_str()), Some(r));
            assert!(!r.to_string().is_empty());
        }
        assert_eq!(FailReason::parse("nope"), None);
    }
}
