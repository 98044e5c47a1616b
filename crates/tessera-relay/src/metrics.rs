//! Counters and gauges, rendered in the Prometheus text format (version 0.0.4).
//!
//! Only aggregates: no account, device or address ever appears here.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use tessera_proto::ErrorCode;

/// Error codes counted by name (`Other` codes are counted as "other").
const ERROR_NAMES: &[(ErrorCode, &str)] = &[
    (ErrorCode::Malformed, "malformed"),
    (ErrorCode::UnknownKind, "unknown_kind"),
    (ErrorCode::TooLarge, "too_large"),
    (ErrorCode::UnsupportedVersion, "unsupported_version"),
    (ErrorCode::Unauthenticated, "unauthenticated"),
    (ErrorCode::AuthFailed, "auth_failed"),
    (ErrorCode::ChallengeExpired, "challenge_expired"),
    (ErrorCode::AlreadyRegistered, "already_registered"),
    (ErrorCode::Replaced, "replaced"),
    (ErrorCode::NotFound, "not_found"),
    (ErrorCode::NoPrekeys, "no_prekeys"),
    (ErrorCode::MailboxFull, "mailbox_full"),
    (ErrorCode::RateLimited, "rate_limited"),
    (ErrorCode::TooManyConnections, "too_many_connections"),
    (ErrorCode::Timeout, "timeout"),
    (ErrorCode::Internal, "internal"),
    (ErrorCode::ShuttingDown, "shutting_down"),
];

/// Upper bounds (bytes, inclusive) of the accepted-envelope size histogram. 1843 is the
/// 1.8 KiB a steady-state text should fit in (`docs/envelope.md` §7); the rest follow the
/// envelope's size classes up to the largest envelope.
pub const ENVELOPE_SIZE_BUCKETS: [u64; 11] = [
    1024, 1843, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288,
];

/// The relay's metrics.
#[derive(Default)]
pub struct Metrics {
    /// Accepted envelopes by size: one count per bucket of [`ENVELOPE_SIZE_BUCKETS`] (not
    /// cumulative), then those above the last.
    envelope_sizes: [AtomicU64; ENVELOPE_SIZE_BUCKETS.len() + 1],
    /// Sum of the sizes of accepted envelopes.
    envelope_bytes: AtomicU64,
    /// Open WebSocket sessions.
    pub connections: AtomicI64,
    /// Sessions logged in as a device.
    pub authenticated: AtomicI64,
    /// Envelopes waiting in mailboxes.
    pub queue_depth: AtomicI64,
    /// Bytes waiting in mailboxes.
    pub queue_bytes: AtomicI64,
    /// Envelopes durably accepted.
    pub accepted: AtomicU64,
    /// `Deliver` frames written.
    pub delivered: AtomicU64,
    /// Envelopes deleted on acknowledgement.
    pub acked: AtomicU64,
    /// Envelopes dropped at the end of their time to live.
    pub expired: AtomicU64,
    /// Transactions committed by the store.
    pub commits: AtomicU64,
    /// Operations in those transactions.
    pub committed_ops: AtomicU64,
    /// Time spent applying and committing them.
    pub commit_micros: AtomicU64,
    /// Error frames sent, by code (index into `ERROR_NAMES`, last slot "other").
    errors: [AtomicU64; 18],
    /// Accepted count and time of the last rate sample.
    rate: Mutex<Option<(Instant, u64, f64)>>,
}

impl Metrics {
    /// Counts an accepted envelope of `len` bytes in the size histogram.
    pub fn envelope_accepted(&self, len: usize) {
        let len = len as u64;
        let i = ENVELOPE_SIZE_BUCKETS
            .iter()
            .position(|b| len <= *b)
            .unwrap_or(ENVELOPE_SIZE_BUCKETS.len());
        if let Some(slot) = self.envelope_sizes.get(i) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        self.envelope_bytes.fetch_add(len, Ordering::Relaxed);
    }

    /// Counts an error frame.
    pub fn error(&self, code: ErrorCode) {
        let i = ERROR_NAMES
            .iter()
            .position(|(c, _)| *c == code)
            .unwrap_or(ERROR_NAMES.len());
        if let Some(slot) = self.errors.get(i) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Updates the accepted-per-second gauge; called once a second.
    pub fn sample_rate(&self) {
        let now = Instant::now();
        let accepted = self.accepted.load(Ordering::Relaxed);
        if let Ok(mut rate) = self.rate.lock() {
            let per_second = match *rate {
                Some((then, before, _)) => {
                    let secs = now.duration_since(then).as_secs_f64();
                    if secs > 0.0 {
                        accepted.saturating_sub(before) as f64 / secs
                    } else {
                        0.0
                    }
                }
                None => 0.0,
            };
            *rate = Some((now, accepted, per_second));
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let g = |v: &AtomicI64| v.load(Ordering::Relaxed);
        let c = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "tessera_relay_connections",
            "gauge",
            "Open WebSocket connections.",
            g(&self.connections).to_string(),
        );
        metric(
            "tessera_relay_authenticated_connections",
            "gauge",
            "Connections logged in as a device.",
            g(&self.authenticated).to_string(),
        );
        metric(
            "tessera_relay_queue_depth",
            "gauge",
            "Envelopes waiting in mailboxes.",
            g(&self.queue_depth).to_string(),
        );
        metric(
            "tessera_relay_queue_bytes",
            "gauge",
            "Bytes of envelopes waiting in mailboxes.",
            g(&self.queue_bytes).to_string(),
        );
        metric(
            "tessera_relay_envelopes_accepted_total",
            "counter",
            "Envelopes durably accepted.",
            c(&self.accepted).to_string(),
        );
        let per_second = self
            .rate
            .lock()
            .ok()
            .and_then(|r| r.map(|(_, _, p)| p))
            .unwrap_or(0.0);
        metric(
            "tessera_relay_envelopes_accepted_per_second",
            "gauge",
            "Envelopes accepted per second over the last second.",
            format!("{per_second:.1}"),
        );
        metric(
            "tessera_relay_envelopes_delivered_total",
            "counter",
            "Deliver frames written to devices.",
            c(&self.delivered).to_string(),
        );
        metric(
            "tessera_relay_envelopes_acked_total",
            "counter",
            "Envelopes deleted after acknowledgement.",
            c(&self.acked).to_string(),
        );
        metric(
            "tessera_relay_envelopes_expired_total",
            "counter",
            "Envelopes dropped at the end of their time to live.",
            c(&self.expired).to_string(),
        );
        metric(
            "tessera_relay_store_commits_total",
            "counter",
            "Store transactions committed.",
            c(&self.commits).to_string(),
        );
        metric(
            "tessera_relay_store_operations_total",
            "counter",
            "Store operations applied (operations per commit = this / commits).",
            c(&self.committed_ops).to_string(),
        );
        metric(
            "tessera_relay_store_commit_seconds_total",
            "counter",
            "Time spent applying and committing store batches.",
            format!("{:.6}", c(&self.commit_micros) as f64 / 1e6),
        );
        let _ = writeln!(
            out,
            "# HELP tessera_relay_envelope_bytes Sizes of accepted envelopes.\n\
             # TYPE tessera_relay_envelope_bytes histogram"
        );
        let mut cumulative = 0;
        for (i, slot) in self.envelope_sizes.iter().enumerate() {
            cumulative += c(slot);
            let le = ENVELOPE_SIZE_BUCKETS
                .get(i)
                .map_or("+Inf".to_string(), u64::to_string);
            let _ = writeln!(
                out,
                "tessera_relay_envelope_bytes_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "tessera_relay_envelope_bytes_sum {}\ntessera_relay_envelope_bytes_count {cumulative}",
            c(&self.envelope_bytes)
        );
        let _ = writeln!(
            out,
            "# HELP tessera_relay_errors_total Error frames sent, by code.\n\
             # TYPE tessera_relay_errors_total counter"
        );
        for (i, slot) in self.errors.iter().enumerate() {
            let name = ERROR_NAMES.get(i).map(|(_, n)| *n).unwrap_or("other");
            let _ = writeln!(
                out,
                "tessera_relay_errors_total{{code=\"{name}\"}} {}",
                c(slot)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_code_has_its_own_slot_and_the_text_parses() {
        assert_eq!(ERROR_NAMES.len() + 1, 18);
        let m = Metrics::default();
        m.error(ErrorCode::MailboxFull);
        m.error(ErrorCode::MailboxFull);
        m.error(ErrorCode::Other(999));
        m.accepted.fetch_add(5, Ordering::Relaxed);
        m.envelope_accepted(1700);
        m.envelope_accepted(1843);
        m.envelope_accepted(9329);
        m.envelope_accepted(600_000);
        let text = m.render();
        assert!(text.contains("tessera_relay_envelope_bytes_bucket{le=\"1024\"} 0\n"));
        assert!(text.contains("tessera_relay_envelope_bytes_bucket{le=\"1843\"} 2\n"));
        assert!(text.contains("tessera_relay_envelope_bytes_bucket{le=\"16384\"} 3\n"));
        assert!(text.contains("tessera_relay_envelope_bytes_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("tessera_relay_envelope_bytes_count 4\n"));
        assert!(text.contains("tessera_relay_envelope_bytes_sum 612872\n"));
        assert!(text.contains("tessera_relay_errors_total{code=\"mailbox_full\"} 2\n"));
        assert!(text.contains("tessera_relay_errors_total{code=\"other\"} 1\n"));
        assert!(text.contains("tessera_relay_envelopes_accepted_total 5\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            assert!(name.starts_with("tessera_relay_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
