//! `tessera-loadgen`: whole-process benchmarks of the relay. See the crate README.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tessera_crypto::{
    AccountId, AccountIdentity, AccountPublic, DeviceCertificate, DeviceCertificateFields,
    EnvelopeKeyPair, HybridSigningKey,
};
use tessera_net::{ClientError, Pushed, Pushes, RelayClient, Transport};
use tessera_proto::RelayAddress;

/// Tessera relay load generator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Drive this relay instead of starting one (memory figures need a started relay)
    #[arg(long, value_name = "ADDR", global = true)]
    relay: Option<RelayAddress>,
    /// Durability of the started relay: full (fsync per commit) or normal
    #[arg(long, default_value = "full", global = true)]
    durability: String,
    /// Directory for the started relay's data [default: a temporary directory]
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Durable accepts per second with many connected senders
    Accept {
        /// Connected sending clients
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Offline devices the envelopes go to
        #[arg(long, default_value_t = 100)]
        recipients: usize,
        /// Measured seconds (after 2 s of warm-up)
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Envelope size in bytes
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Sends in flight per client
        #[arg(long, default_value_t = 16)]
        window: usize,
    },
    /// Send-to-receive latency at a fixed offered rate
    Latency {
        /// Connected clients (each sends to the next one and receives from the previous)
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Envelopes per second, all clients together
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        /// Measured seconds (after 2 s of warm-up)
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Envelope size in bytes
        #[arg(long, default_value_t = 1024)]
        size: usize,
    },
    /// Message round trip between two client engines: Alice sends, Bob's engine stores it and
    /// answers with a delivery receipt, Alice's engine records it
    Roundtrip {
        /// Messages to time (one at a time)
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// Both engines go through Tor with this Arti configuration (a private network's
        /// `arti.toml` from scripts/tornet) instead of directly
        #[arg(long, value_name = "FILE")]
        tor_config: Option<PathBuf>,
    },
    /// Tap-to-unlock split, through pcscd and a virtual card in vpcd slot SLOT: card read
    /// (authenticate, SUN, secret in Full mode), Argon2id alone, and the vault open (which
    /// includes Argon2id). Needs pcscd running with the vpcd driver; no relay is started.
    Unlock {
        /// Unlocks to time
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// The vpcd slot for the virtual card (0 or 1)
        #[arg(long, default_value_t = 1)]
        slot: u16,
    },
    /// Arti bootstrap time with an empty cache, then again with the cache it left (no relay)
    TorBootstrap {
        /// The Arti configuration (a private network's `arti.toml` from scripts/tornet)
        #[arg(long, value_name = "FILE")]
        tor_config: PathBuf,
        /// Warm bootstraps to time
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Relay memory per idle logged-in connection
    Idle {
        /// Connections to open
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
    },
}

const WARMUP: Duration = Duration::from_secs(2);
/// Connections set up at the same time.
const SETUP_PARALLEL: usize = 64;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Many sockets: raise the soft file limit to the hard one.
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Cmd::Unlock { rounds, slot } = cli.command {
        return tokio::task::spawn_blocking(move || unlock(rounds, slot))
            .await
            .context("unlock benchmark")?;
    }
    if let Cmd::TorBootstrap { tor_config, rounds } = &cli.command {
        return tor_bootstrap(tor_config, *rounds).await;
    }
    let _tmp;
    let mut spawned = None;
    let address = match &cli.relay {
        Some(a) => a.clone(),
        None => {
            let dir = match &cli.data_dir {
                Some(d) => d.clone(),
                None => {
                    let t = tempfile::tempdir().context("temporary directory")?;
                    let p = t.path().to_path_buf();
                    _tmp = t;
                    p
                }
            };
            let relay = SpawnedRelay::start(&dir, &cli.durability)?;
            let a = relay.address.clone();
            spawned = Some(relay);
            a
        }
    };
    println!("relay: {address}");
    println!(
        "machine: {} cores, durability {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cli.durability
    );
    let result = match cli.command {
        Cmd::Accept {
            clients,
            recipients,
            seconds,
            size,
            window,
        } => accept(&address, clients, recipients, seconds, size, window).await,
        Cmd::Latency {
            clients,
            rate,
            seconds,
            size,
        } => latency(&address, clients, rate, seconds, size).await,
        Cmd::Idle { connections } => idle(&address, connections, spawned.as_ref()).await,
        Cmd::Roundtrip {
            messages,
            tor_config,
        } => roundtrip(&address, messages, tor_config).await,
        Cmd::Unlock { .. } | Cmd::TorBootstrap { .. } => Ok(()),
    };
    if let Some(relay) = &spawned
        && let Some(rss) = relay.rss_kib()
    {
        println!("relay resident memory at the end: {} MiB", rss / 1024);
    }
    drop(spawned);
    result
}

/// The relay binary next to this one, on loopback, with limits opened for load.
struct SpawnedRelay {
    child: Child,
    address: RelayAddress,
}

impl SpawnedRelay {
    fn start(dir: &std::path::Path, durability: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let exe = std::env::current_exe()?;
        let bin = exe
            .parent()
            .context("binary directory")?
            .join(format!("tessera-relay{}", std::env::consts::EXE_SUFFIX));
        let config = dir.join("loadgen-relay.toml");
        std::fs::write(
            &config,
            format!(
                "durability = \"{durability}\"\n[mailbox]\nmax_messages = 1000000\nmax_bytes = 4294967296\n\
                 [limits]\nconnections_per_ip = 0\nrequests_per_second = 10000000\nrequest_burst = 10000000\n"
            ),
        )?;
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0", "--log", "warn", "--data-dir"])
            .arg(dir.join("relay"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("relay stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            let Some(Ok(line)) = lines.next() else {
                bail!("the relay exited before printing its address");
            };
            if let Some(a) = line.strip_prefix("relay address: ") {
                break a.parse()?;
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Self { child, address })
    }

    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for SpawnedRelay {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// One account whose devices the load generator logs in as.
struct Fleet {
    identity: AccountIdentity,
    public: AccountPublic,
}

struct Device {
    auth: HybridSigningKey,
    certificate: DeviceCertificate,
}

impl Fleet {
    fn new() -> Self {
        let identity = AccountIdentity::generate(&mut rand::rng());
        let public = identity.public();
        Self { identity, public }
    }

    fn id(&self) -> AccountId {
        self.public.account_id()
    }

    /// Creates devices `first..first + n` (certificates signed on all cores).
    fn devices(&self, first: u32, n: usize) -> Vec<Device> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let now = now_ms();
        let per = n.div_ceil(threads.max(1));
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        let mut rng = rand::rng();
                        let lo = t * per;
                        let hi = ((t + 1) * per).min(n);
                        (lo..hi)
                            .filter_map(|i| {
                                let auth = HybridSigningKey::generate(&mut rng);
                                let envelope = EnvelopeKeyPair::generate(&mut rng);
                                let certificate = DeviceCertificate::issue(
                                    &self.identity,
                                    DeviceCertificateFields {
                                        device_id: first + i as u32,
                                        serial: 1,
                                        auth_key: auth.public().clone(),
                                        envelope_key: envelope.public().clone(),
                                        not_before: now - 86_400_000,
                                        not_after: now + 86_400_000,
                                    },
                                    &mut rng,
                                )
                                .ok()?;
                                Some(Device { auth, certificate })
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    }

    /// Registers every device on its own connection, `SETUP_PARALLEL` at a time.
    async fn connect_all(
        self: &Arc<Self>,
        addr: &RelayAddress,
        devices: Vec<Device>,
    ) -> anyhow::Result<Vec<(RelayClient, Pushes)>> {
        let mut out = Vec::with_capacity(devices.len());
        let mut pending = FuturesUnordered::new();
        let mut devices = devices.into_iter();
        loop {
            while pending.len() < SETUP_PARALLEL {
                let Some(d) = devices.next() else { break };
                let fleet = self.clone();
                let addr = addr.clone();
                pending.push(tokio::spawn(async move {
                    let (client, pushes) = RelayClient::connect(&addr, &Transport::Direct).await?;
                    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
                    client
                        .register(&fleet.public, &d.certificate, &d.auth, &mut rng)
                        .await?;
                    Ok::<_, ClientError>((client, pushes))
                }));
            }
            match pending.next().await {
                Some(r) => out.push(r.context("setup task")?.context("connect and register")?),
                None => break,
            }
        }
        Ok(out)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn setup(
    addr: &RelayAddress,
    fleet: &Arc<Fleet>,
    first: u32,
    n: usize,
) -> anyhow::Result<Vec<(RelayClient, Pushes)>> {
    let t = Instant::now();
    let devices = fleet.devices(first, n);
    let keys = t.elapsed();
    let clients = fleet.connect_all(addr, devices).await?;
    println!(
        "set up {n} devices: keys {:.1} s, connect + register {:.1} s",
        keys.as_secs_f64(),
        (t.elapsed() - keys).as_secs_f64()
    );
    Ok(clients)
}

async fn accept(
    addr: &RelayAddress,
    clients: usize,
    recipients: usize,
    seconds: u64,
    size: usize,
    window: usize,
) -> anyhow::Result<()> {
    let fleet = Arc::new(Fleet::new());
    let offline = setup(addr, &fleet, 1, recipients.max(1)).await?;
    drop(offline);
    let senders = setup(addr, &fleet, 100_000, clients).await?;
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let account = fleet.id();
    let mut tasks = Vec::new();
    for (i, (client, pushes)) in senders.into_iter().enumerate() {
        let (accepted, errors, stop) = (accepted.clone(), errors.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let _pushes = pushes;
            let mut in_flight = FuturesUnordered::new();
            let mut n = 0u64;
            let to = 1 + (i % recipients.max(1)) as u32;
            loop {
                while in_flight.len() < window && !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let mut body = vec![0u8; size];
                    body[..8].copy_from_slice(&n.to_be_bytes());
                    in_flight.push(client.send(&account, to, body));
                }
                match in_flight.next().await {
                    Some(Ok(_)) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(_)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    None => break,
                }
            }
        }));
    }
    tokio::time::sleep(WARMUP).await;
    let (a0, t0) = (accepted.load(Ordering::Relaxed), Instant::now());
    let mut per_second = Vec::new();
    let mut last = a0;
    for _ in 0..seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = accepted.load(Ordering::Relaxed);
        per_second.push(now - last);
        last = now;
    }
    let (a1, elapsed) = (accepted.load(Ordering::Relaxed), t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let rate = (a1 - a0) as f64 / elapsed.as_secs_f64();
    per_second.sort_unstable();
    println!(
        "accept: {clients} clients, window {window}, {size}-byte envelopes, {seconds} s measured"
    );
    println!(
        "accept: {:.0} durable accepts/s (per-second min {} / median {} / max {}); errors {}",
        rate,
        per_second.first().copied().unwrap_or(0),
        per_second.get(per_second.len() / 2).copied().unwrap_or(0),
        per_second.last().copied().unwrap_or(0),
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn latency(
    addr: &RelayAddress,
    clients: usize,
    rate: u64,
    seconds: u64,
    size: usize,
) -> anyhow::Result<()> {
    let clients = clients.max(2);
    let fleet = Arc::new(Fleet::new());
    let conns = setup(addr, &fleet, 1, clients).await?;
    let base = Instant::now();
    let measure_from = WARMUP.as_micros() as u64;
    let measure_to = measure_from + seconds * 1_000_000;
    let samples = Arc::new(Mutex::new(Vec::<u64>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::with_capacity(clients);
    let mut receivers = Vec::new();
    for (client, mut pushes) in conns {
        let client = Arc::new(client);
        senders.push(client.clone());
        let samples = samples.clone();
        receivers.push(tokio::spawn(async move {
            while let Some(p) = pushes.recv().await {
                let Pushed::Deliver {
                    delivery_id,
                    envelope,
                } = p
                else {
                    continue;
                };
                let now = base.elapsed().as_micros() as u64;
                if let Some(sent) = envelope.get(..8).and_then(|b| b.try_into().ok()) {
                    let sent = u64::from_be_bytes(sent);
                    if (measure_from..measure_to).contains(&sent)
                        && let Ok(mut s) = samples.lock()
                    {
                        s.push(now.saturating_sub(sent));
                    }
                }
                let c = client.clone();
                tokio::spawn(async move { c.ack(delivery_id).await });
            }
        }));
    }
    let account = fleet.id();
    let total = rate * (WARMUP.as_secs() + seconds);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    let mut next = 0usize;
    while sent < total {
        tick.tick().await;
        let due = (base.elapsed().as_micros() as u64 * rate / 1_000_000).min(total);
        while sent < due {
            let from = senders[next].clone();
            let to = 1 + ((next + 1) % clients) as u32;
            next = (next + 1) % clients;
            let mut body = vec![0u8; size];
            body[..8].copy_from_slice(&(base.elapsed().as_micros() as u64).to_be_bytes());
            let errors = errors.clone();
            tokio::spawn(async move {
                if from.send(&account, to, body).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            });
            sent += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(senders);
    for r in &receivers {
        r.abort();
    }
    let mut s = samples.lock().map(|s| s.clone()).unwrap_or_default();
    s.sort_unstable();
    let offered = rate;
    println!(
        "latency: {clients} clients in a ring, {offered} envelopes/s offered, {size} bytes, {seconds} s measured"
    );
    println!(
        "latency: {} samples; p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; send errors {}",
        s.len(),
        percentile(&s, 0.50),
        percentile(&s, 0.90),
        percentile(&s, 0.99),
        percentile(&s, 1.0),
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn idle(
    addr: &RelayAddress,
    connections: usize,
    relay: Option<&SpawnedRelay>,
) -> anyhow::Result<()> {
    let fleet = Arc::new(Fleet::new());
    // A few connections first, so the baseline includes the relay's fixed costs.
    let warm = setup(addr, &fleet, 1, 16).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = relay.and_then(SpawnedRelay::rss_kib);
    let conns = setup(addr, &fleet, 1000, connections).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = relay.and_then(SpawnedRelay::rss_kib);
    println!("idle: {connections} logged-in connections open and idle");
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "idle: relay resident memory {} MiB -> {} MiB: {:.1} KiB per idle connection",
            b / 1024,
            a / 1024,
            a.saturating_sub(b) as f64 / connections as f64
        ),
        _ => println!("idle: relay memory unknown (started elsewhere)"),
    }
    drop(conns);
    drop(warm);
    Ok(())
}

async fn roundtrip(
    addr: &RelayAddress,
    messages: usize,
    tor_config: Option<PathBuf>,
) -> anyhow::Result<()> {
    use tessera_core::{CreateOptions, Engine, Event, KdfParams, MessageStatus};
    let dir = tempfile::tempdir()?;
    let secrets: Arc<dyn tessera_store::SecretStore> =
        Arc::new(tessera_store::MemorySecrets::default());
    let tor_text = tor_config
        .as_deref()
        .map(tessera_net::read_config_file)
        .transpose()?;
    let make = |name: &str| CreateOptions {
        dir: dir.path().join(name),
        password: zeroize::Zeroizing::new(b"benchmark".to_vec()),
        relay: addr.clone(),
        name: name.to_string(),
        transport: match &tor_text {
            Some(text) => tessera_core::TransportConfig::Tor {
                config: Some(text.clone()),
            },
            None => tessera_core::TransportConfig::Direct,
        },
        kdf: KdfParams::MINIMUM,
        card: None,
    };
    let t = Instant::now();
    let alice = Engine::create(make("alice"), secrets.clone()).await?;
    println!(
        "roundtrip: transport {}, account created (cold start{}) in {:.2} s",
        alice.transport_name()?,
        if tor_config.is_some() {
            ", Arti bootstrap with an empty cache"
        } else {
            ""
        },
        t.elapsed().as_secs_f64()
    );
    let bob = Engine::create(make("bob"), secrets.clone()).await?;
    let mut bob_events = bob.subscribe();
    let contact = alice.add_contact(&bob.invite()?, Some("bob")).await?;
    // Bob accepts (his engine is connected and processes the request as it arrives).
    loop {
        if let Ok(Event::ContactRequest { .. }) = bob_events.recv().await {
            break;
        }
    }
    bob.add_contact(&alice.invite()?, Some("alice")).await?;
    let mut alice_events = alice.subscribe();
    let mut times = Vec::with_capacity(messages);
    for n in 0..messages {
        let t = Instant::now();
        let id = alice
            .send_text(&contact.account_id, &format!("round trip {n}"))
            .await?;
        loop {
            match alice_events.recv().await {
                Ok(Event::Status {
                    message_id,
                    status: MessageStatus::Delivered,
                    ..
                }) if message_id == id => break,
                Ok(_) => {}
                Err(e) => bail!("event stream ended: {e}"),
            }
        }
        times.push(t.elapsed().as_micros() as u64);
    }
    times.sort_unstable();
    println!(
        "roundtrip: {messages} messages one at a time (send, relay accept, Bob decrypts and stores, \
         delivery receipt back, Alice stores it): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 0.99)
    );
    Ok(())
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(f64::NAN)
}

/// The tap-to-unlock benchmark (see `Cmd::Unlock`).
fn unlock(rounds: usize, slot: u16) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tessera_core::card::{self, Reprovision};
    use tessera_nfc::reader::Readers;
    use tessera_store::{KdfParams, MemorySecrets, Vault};

    let dir = tempfile::tempdir().context("temporary directory")?;
    let readers = Readers::open().context("pcscd")?;
    let suffix = format!("00 {slot:02}");
    let reader = readers
        .list()
        .context("readers")?
        .into_iter()
        .find(|r| r.starts_with("Virtual PCD") && r.ends_with(&suffix))
        .context("no vpcd reader in that slot")?;
    anyhow::ensure!(
        readers.wait_for(&reader, false, Duration::from_secs(5))?,
        "{reader} already has a card"
    );
    let removed = Arc::new(AtomicBool::new(false));
    let sim = {
        let (state, removed) = (dir.path().join("card.json"), removed.clone());
        let addr = format!("127.0.0.1:{}", tessera_nfc::vpcd::DEFAULT_PORT + slot);
        std::thread::spawn(move || {
            // A card for this run only: its state key stays in memory.
            let keys = tessera_nfc::vpcd::MemoryStateKeys::default();
            tessera_nfc::vpcd::serve(&addr, &state, &keys, &|| removed.load(Ordering::SeqCst))
        })
    };
    anyhow::ensure!(
        readers.wait_for(&reader, true, Duration::from_secs(10))?,
        "the virtual card did not appear"
    );
    let secrets = MemorySecrets::default();
    let t = Instant::now();
    card::provision(&secrets, Some(&reader), Reprovision::No)?;
    println!(
        "provision (factory card, through vpcd): {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let vault_dir = dir.path().join("vault");
    let first = card::tap(&secrets, Some(&reader))?;
    let password = b"benchmark password";
    drop(Vault::create(
        &vault_dir,
        password,
        KdfParams::DEFAULT,
        &secrets,
        Some(&first.factor),
        &mut rand::rng(),
    )?);
    let (mut reads, mut argon, mut opens) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let tap = card::tap(&secrets, Some(&reader))?;
        reads.push(t.elapsed());
        let t = Instant::now();
        drop(Vault::open(
            &vault_dir,
            password,
            &secrets,
            Some(&tap.factor),
            &mut rand::rng(),
        )?);
        opens.push(t.elapsed());
        let t = Instant::now();
        tessera_store::KdfParams::DEFAULT.check()?;
        argon2_alone(password)?;
        argon.push(t.elapsed());
    }
    removed.store(true, Ordering::SeqCst);
    let _ = sim.join();
    let (r, a, o) = (median_ms(reads), median_ms(argon), median_ms(opens));
    println!("unlock, {rounds} rounds, medians:");
    println!(
        "  card read (PC/SC connect, GET UID, SUN read + verify, EV2 auth, secret in Full mode): {r:.1} ms"
    );
    println!("  Argon2id alone (256 MiB, t=3, p=1): {a:.1} ms");
    println!("  vault open (Argon2id + unwrap + counter record + SQLCipher open): {o:.1} ms");
    println!("  of which not Argon2id: {:.1} ms", o - a);
    println!("  tap to unlocked: {:.1} ms", r + o);
    Ok(())
}

fn argon2_alone(password: &[u8]) -> anyhow::Result<()> {
    use argon2::{Algorithm, Argon2, Params, Version};
    let p = tessera_store::KdfParams::DEFAULT;
    let params = Params::new(p.memory_kib, p.passes, p.lanes, Some(32))
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, &[7; 16], &mut out)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(())
}

/// Arti bootstrap, cold then warm (see `Cmd::TorBootstrap`).
async fn tor_bootstrap(config: &std::path::Path, rounds: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut opts = tessera_net::TorOptions::under(dir.path());
    opts.config = Some(tessera_net::read_config_file(config)?);
    let t = Instant::now();
    let tor = tessera_net::Tor::start(&opts)?;
    tor.ready().await?;
    println!(
        "tor bootstrap, empty cache: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    drop(tor);
    let mut warm = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let tor = tessera_net::Tor::start(&opts)?;
        tor.ready().await?;
        warm.push(t.elapsed());
        drop(tor);
    }
    println!(
        "tor bootstrap, warm cache ({rounds} runs): median {:.2} s",
        median_ms(warm) / 1000.0
    );
    Ok(())
}
