//! Vault benchmarks (`docs/vault.md` §benchmarks): prints numbers, asserts nothing.
//!
//! `cargo bench -p tessera-store --features bench-plain`
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use tessera_store::{
    Contact, ContactState, KdfParams, MemorySecrets, Message, MessageStatus, Vault, VaultError,
};

const WORDS: &[&str] = &[
    "meet", "tomorrow", "station", "coffee", "river", "letter", "garden", "winter", "signal",
    "window", "orange", "planet", "market", "silver", "harbor", "forest", "ticket", "bridge",
    "summer", "violet", "engine", "lantern", "pocket", "mirror", "castle", "thunder", "candle",
    "anchor", "meadow", "falcon", "copper", "velvet",
];
const MESSAGES: u32 = 100_000;
const CONTACTS: u8 = 20;

fn fill(v: &Vault, r: &mut ChaCha20Rng) -> Duration {
    for c in 0..CONTACTS {
        v.put_contact(&Contact {
            account_id: [c; 32],
            name: format!("contact {c}"),
            account_public: vec![c; 32],
            relay: "tessera://127.0.0.1:1/x".into(),
            state: ContactState::Accepted,
            created: 0,
        })
        .unwrap();
    }
    let t = Instant::now();
    for chunk in 0..MESSAGES / 1000 {
        v.transaction(|v| -> Result<(), VaultError> {
            for i in 0..1000 {
                let n = chunk * 1000 + i;
                let words: Vec<&str> = (0..r.random_range(4..16))
                    .map(|_| WORDS[r.random_range(0..WORDS.len())])
                    .collect();
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&n.to_be_bytes());
                v.insert_message(&Message {
                    id: 0,
                    conversation: tessera_store::direct_conversation(
                        &[(n % u32::from(CONTACTS)) as u8; 32],
                    ),
                    contact: [(n % u32::from(CONTACTS)) as u8; 32],
                    message_id: id,
                    outgoing: n % 2 == 0,
                    body: words.join(" "),
                    sent: i64::from(n),
                    received: None,
                    status: MessageStatus::Received,
                    read: true,
                    kind: "text".into(),
                    failure: None,
                    time_flag: None,
                    reply_to: None,
                    edited: None,
                    expires_in: None,
                    expire_at: None,
                    preview: None,
                })?;
            }
            Ok(())
        })
        .unwrap();
    }
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Results {
    insert: Duration,
    last50: Duration,
    search: Duration,
    search_hits: usize,
}

fn measure(v: &Vault) -> Results {
    let mut r = ChaCha20Rng::seed_from_u64(1);
    let insert = fill(v, &mut r);
    let last50 = median(
        (0..200)
            .map(|i| {
                let t = Instant::now();
                let page = v
                    .history(&[(i % u32::from(CONTACTS)) as u8; 32], None, 50)
                    .unwrap();
                assert_eq!(page.len(), 50);
                t.elapsed()
            })
            .collect(),
    );
    let mut hits = 0;
    let search = median(
        (0..100)
            .map(|i| {
                let q = format!(
                    "{} {}",
                    WORDS[i % WORDS.len()],
                    WORDS[(i * 7 + 3) % WORDS.len()]
                );
                let t = Instant::now();
                hits += v.search(&q, 50).unwrap().len();
                t.elapsed()
            })
            .collect(),
    );
    Results {
        insert,
        last50,
        search,
        search_hits: hits / 100,
    }
}

fn main() {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let dir = tempfile::tempdir().unwrap();
    let secrets = MemorySecrets::default();

    let t = Instant::now();
    let vault = Vault::create(
        &dir.path().join("enc"),
        b"benchmark password",
        KdfParams::DEFAULT,
        &secrets,
        None,
        &mut ChaCha20Rng::seed_from_u64(2),
    )
    .unwrap();
    println!(
        "vault create (Argon2id 256 MiB, t=3): {:.0} ms",
        ms(t.elapsed())
    );
    let enc = measure(&vault);
    drop(vault);
    let t = Instant::now();
    let vault = Vault::open(
        &dir.path().join("enc"),
        b"benchmark password",
        &secrets,
        None,
        &mut rand::rng(),
    )
    .unwrap();
    let unlock = t.elapsed();
    drop(vault);

    let plain = Vault::plain_for_benchmark(&dir.path().join("plain.sqlite3")).unwrap();
    let pl = measure(&plain);

    let pct = |a: Duration, b: Duration| (ms(a) / ms(b) - 1.0) * 100.0;
    println!(
        "unlock (Argon2id 256 MiB, t=3 + key unwrap + open): {:.0} ms",
        ms(unlock)
    );
    println!(
        "insert {MESSAGES} messages (transactions of 1000): SQLCipher {:.0} ms ({:.1} µs/message), plain SQLite {:.0} ms: overhead {:+.1}%",
        ms(enc.insert),
        ms(enc.insert) * 1000.0 / f64::from(MESSAGES),
        ms(pl.insert),
        pct(enc.insert, pl.insert)
    );
    println!(
        "open a conversation's last 50 messages (median of 200): SQLCipher {:.3} ms, plain {:.3} ms: overhead {:+.1}%",
        ms(enc.last50),
        ms(pl.last50),
        pct(enc.last50, pl.last50)
    );
    println!(
        "full-text search over {MESSAGES} messages, two words, 50 newest hits (median of 100; {} hits on average): SQLCipher {:.2} ms, plain {:.2} ms: overhead {:+.1}%",
        enc.search_hits,
        ms(enc.search),
        ms(pl.search),
        pct(enc.search, pl.search)
    );
}
