//! Delivery and the engine's send and receive paths, measured on the real engine, its
//! SQLCipher vault and the real relay process on loopback (`docs/messaging.md`):
//!
//! 1. Flushing 500 queued messages to one recipient through a link with 300 ms of round trip
//!    (a delay line in front of the relay, as Tor's), with the default window and with a
//!    window of 1 (what a sequential outbox does).
//! 2. Send path per 1 KiB text: `send_text` (Signal encrypt + vault commit) and sealing
//!    (envelope v2 + vault commit), each timed per message; no network in either.
//! 3. Receive path per 1 KiB text: `receive_envelope` on the envelopes the relay stored
//!    (envelope open + Signal decrypt + vault commit + the delivery receipt queued).
//!
//! Run: `./scripts/with-keyring cargo bench -p tessera-e2e --bench delivery` (release build of
//! the relay first: `cargo build --release -p tessera-relay`). Numbers are printed; nothing is
//! asserted about time. `TESSERA_BENCH=paths` runs parts 2 and 3 only.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_core::clock::SystemClock;
use tessera_core::{
    ContactState, CreateOptions, Engine, KdfParams, MessageStatus, TransportConfig,
};
use tessera_e2e::delay::DelayProxy;
use tessera_e2e::relay::Relay;
use tessera_proto::RelayAddress;
use tessera_store::MemorySecrets;
use zeroize::Zeroizing;

fn password(name: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(format!("{name}'s password").into_bytes())
}

async fn create(
    dir: &std::path::Path,
    relay: &RelayAddress,
    name: &str,
) -> (Engine, Arc<MemorySecrets>) {
    let secrets = Arc::new(MemorySecrets::default());
    let engine = Engine::create_with_clock(
        CreateOptions {
            dir: dir.join(name),
            password: password(name),
            relay: relay.clone(),
            name: name.into(),
            transport: TransportConfig::Direct,
            kdf: KdfParams::MINIMUM,
            card: None,
        },
        secrets.clone(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    engine.connect().await.unwrap();
    (engine, secrets)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn befriend(a: &Engine, b: &Engine) -> ([u8; 32], [u8; 32]) {
    let (a_id, b_id) = (a.account_id().unwrap().0, b.account_id().unwrap().0);
    a.add_contact(&b.invite().unwrap(), Some("b"))
        .await
        .unwrap();
    wait_for("the request", || !b.contacts().unwrap().is_empty()).await;
    b.add_contact(&a.invite().unwrap(), Some("a"))
        .await
        .unwrap();
    wait_for("the acceptance", || {
        a.contacts()
            .unwrap()
            .first()
            .is_some_and(|c| c.state == ContactState::Accepted)
    })
    .await;
    (a_id, b_id)
}

fn text(n: usize) -> String {
    // 1 KiB of text.
    let mut t = format!("message {n:05} ");
    while t.len() < 1024 {
        t.push_str("lorem ipsum ");
    }
    t.truncate(1024);
    t
}

struct Stats {
    median: f64,
    p90: f64,
    mean: f64,
}

fn stats(mut us: Vec<f64>) -> Stats {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() - 1) as f64 * q) as usize];
    Stats {
        median: at(0.5),
        p90: at(0.9),
        mean: us.iter().sum::<f64>() / us.len() as f64,
    }
}

fn print(what: &str, s: &Stats) {
    println!(
        "{what:<46} median {:>7.1} µs   p90 {:>7.1} µs   mean {:>7.1} µs",
        s.median, s.p90, s.mean
    );
}

async fn queue(engine: &Engine, to: &[u8; 32], n: usize, from: usize) -> Vec<[u8; 16]> {
    let mut ids = Vec::with_capacity(n);
    for i in from..from + n {
        ids.push(engine.send_text(to, &text(i)).await.unwrap());
    }
    ids
}

fn all_sent(engine: &Engine, ids: &[[u8; 16]]) -> bool {
    ids.iter().all(|id| {
        engine
            .message(id)
            .unwrap()
            .is_some_and(|m| m.status >= MessageStatus::Sent)
    })
}

async fn flush_over_a_slow_link(dir: &std::path::Path, relay: &Relay) {
    let port = relay.address.port;
    let proxy = DelayProxy::start(([127, 0, 0, 1], port).into(), Duration::from_millis(150)).await;
    let mut slow = relay.address.clone();
    slow.port = proxy.port;
    let (alice, _) = create(dir, &slow, "alice").await;
    let (bob, _) = create(dir, &relay.address, "bob").await;
    let (_, b_id) = befriend(&alice, &bob).await;
    alice.hold_delivery(true);
    println!("\n1. Flush to one recipient through a 300 ms round trip (150 ms each way)");
    for (window, n) in [(64, 500), (1, 25)] {
        alice.set_delivery_window(window).unwrap();
        let ids = queue(&alice, &b_id, n, 0).await;
        let t = Instant::now();
        let sent = alice.flush_outbox().await.unwrap();
        let elapsed = t.elapsed();
        assert!(all_sent(&alice, &ids), "not everything was sent");
        println!(
            "   window {window:>2}: {n} messages ({sent} envelopes) in {:>6.2} s = {:>5.1} ms per message{}",
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1000.0 / n as f64,
            if n < 500 {
                format!(
                    " (500 would take {:.0} s)",
                    elapsed.as_secs_f64() * 500.0 / n as f64
                )
            } else {
                String::new()
            }
        );
    }
    let total = 525;
    wait_for("Bob to have every message", || {
        bob.conversations().unwrap().first().is_some_and(|_| {
            bob.history(&alice.account_id().unwrap().0, None, 1000)
                .unwrap()
                .len()
                >= total
        })
    })
    .await;
    println!("   Bob has all {total}, each once.");
}

async fn send_and_receive_paths(dir: &std::path::Path, relay: &Relay) {
    const N: usize = 1000;
    let (carol, _) = create(dir, &relay.address, "carol").await;
    let (dave, dave_secrets) = create(dir, &relay.address, "dave").await;
    let (c_id, d_id) = befriend(&carol, &dave).await;
    // A few messages each way first: sessions and links in their steady state.
    for i in 0..5 {
        carol.send_text(&d_id, &text(i)).await.unwrap();
        dave.send_text(&c_id, &text(i)).await.unwrap();
    }
    let delivered = |e: &Engine, with: &[u8; 32]| {
        e.history(with, None, 100)
            .unwrap()
            .iter()
            .filter(|m| m.outgoing)
            .all(|m| m.status >= MessageStatus::Delivered)
    };
    wait_for("the warm-up", || {
        carol.history(&d_id, None, 100).unwrap().len() >= 10
            && delivered(&carol, &d_id)
            && delivered(&dave, &c_id)
    })
    .await;
    // Acknowledgements are not awaited: let the last ones reach the relay.
    tokio::time::sleep(Duration::from_millis(500)).await;
    dave.lock();
    carol.hold_delivery(true);
    let (mut send, mut seal, mut both) = (Vec::new(), Vec::new(), Vec::new());
    let (mut send_cpu, mut seal_cpu, mut both_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..N {
        let (t, c0) = (Instant::now(), cpu_us());
        carol.send_text(&d_id, &text(i)).await.unwrap();
        let (a, c1) = (t.elapsed(), cpu_us());
        assert_eq!(carol.seal_outbox().unwrap(), 1);
        let (b, c2) = (t.elapsed(), cpu_us());
        send.push(a.as_secs_f64() * 1e6);
        seal.push((b - a).as_secs_f64() * 1e6);
        both.push(b.as_secs_f64() * 1e6);
        if let (Some(c0), Some(c1), Some(c2)) = (c0, c1, c2) {
            send_cpu.push(c1 - c0);
            seal_cpu.push(c2 - c1);
            both_cpu.push(c2 - c0);
        }
    }
    println!("\n2. Send path, 1 KiB text, {N} messages (no network)");
    print("   send_text (Signal encrypt + vault commit)", &stats(send));
    print("   seal (envelope v2 + vault commit)", &stats(seal));
    print("   whole send path", &stats(both));
    if !both_cpu.is_empty() {
        println!("   CPU time of this thread, mean per message (waits for fsync excluded):");
        println!(
            "   send_text {:.1} µs, seal {:.1} µs, whole send path {:.1} µs",
            mean(&send_cpu),
            mean(&seal_cpu),
            mean(&both_cpu)
        );
    }
    carol.flush_outbox().await.unwrap();

    // What the relay stored for Dave, as it would deliver it.
    let db = rusqlite::Connection::open_with_flags(
        relay.data_dir.join("relay.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let envelopes: Vec<Vec<u8>> = db
        .prepare("SELECT envelope FROM mailbox ORDER BY delivery_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        envelopes.len() >= N,
        "the relay holds Carol's messages for Dave"
    );
    let sizes: usize = envelopes.iter().map(Vec::len).sum();
    let dave = Engine::unlock_with_clock(
        &dir.join("dave"),
        password("dave"),
        dave_secrets,
        None,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    dave.hold_delivery(true);
    let (mut receive, mut receive_cpu) = (Vec::new(), Vec::new());
    for e in &envelopes {
        let (t, c0) = (Instant::now(), cpu_us());
        let keep = dave.receive_envelope(e);
        receive.push(t.elapsed().as_secs_f64() * 1e6);
        if let (Some(c0), Some(c1)) = (c0, cpu_us()) {
            receive_cpu.push(c1 - c0);
        }
        assert!(!keep);
    }
    assert_eq!(dave.history(&c_id, None, 2000).unwrap().len(), N + 10);
    println!(
        "\n3. Receive path, 1 KiB text, {} envelopes of {} B on average",
        envelopes.len(),
        sizes / envelopes.len()
    );
    print(
        "   receive_envelope (open + decrypt + commit)",
        &stats(receive),
    );
    if !receive_cpu.is_empty() {
        println!(
            "   receive_envelope: CPU time of this thread, mean per envelope {:.1} µs",
            mean(&receive_cpu)
        );
    }
}

/// The mean of `us`.
fn mean(us: &[f64]) -> f64 {
    us.iter().sum::<f64>() / us.len().max(1) as f64
}

/// CPU time this thread has used, µs (Linux: `/proc/thread-self/schedstat`, nanoseconds on
/// the CPU); `None` where it cannot be read. Time blocked in fsync is not CPU time. The kernel
/// brings the figure up to date at a context switch or a scheduler tick (4 ms here), so one
/// message's difference is coarse: only the mean over many is reported.
fn cpu_us() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1000.0)
}

fn main() {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "Tessera delivery benchmark: {profile} build, {} CPUs, SQLCipher vaults (Argon2id minimum), relay on loopback",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `TESSERA_BENCH=paths` measures the send and receive paths only (the flush with a window
    // of 1 alone takes over two minutes).
    if std::env::var("TESSERA_BENCH").as_deref() != Ok("paths") {
        let relay = Relay::start(&dir.path().join("relay"));
        rt.block_on(async {
            flush_over_a_slow_link(dir.path(), &relay).await;
        });
    }
    // A relay of its own for the second part: its mailbox then holds exactly Dave's envelopes.
    let relay2 = Relay::start(&dir.path().join("relay2"));
    rt.block_on(async {
        send_and_receive_paths(dir.path(), &relay2).await;
    });
}
