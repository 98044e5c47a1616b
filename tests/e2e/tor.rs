//! Tor end to end on a private Tor network on loopback (`scripts/tornet`): the relay as an
//! onion service behind C tor, clients with embedded Arti, and fail-closed behaviour.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tessera_e2e::cli::{Cli, Outcome};
use tessera_e2e::relay::Relay;

fn tornet_script() -> PathBuf {
    tessera_e2e::manifest_dir()
        .join("..")
        .join("scripts")
        .join("tornet")
}

/// A private Tor network, torn down when dropped.
pub(crate) struct TorNet {
    dir: PathBuf,
    base: u16,
    up: bool,
}

impl TorNet {
    fn up(dir: &Path, base: u16) -> Self {
        assert!(
            tessera_e2e::on_path("tor") || Path::new("/usr/sbin/tor").exists(),
            "tor (package tor) is needed for the Tor tests; ./scripts/setup installs it"
        );
        let t = Instant::now();
        let out = std::process::Command::new("bash")
            .arg(tornet_script())
            .args(["up"])
            .arg(dir)
            .env("TORNET_BASE_PORT", base.to_string())
            .env(
                "PATH",
                format!("/usr/sbin:{}", std::env::var("PATH").unwrap_or_default()),
            )
            .output()
            .unwrap();
        let mut net = Self {
            dir: dir.to_path_buf(),
            base,
            up: true,
        };
        if !out.status.success() {
            eprintln!(
                "scripts/tornet up failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            net.down();
            return net;
        }
        eprintln!(
            "private Tor network up in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        net
    }

    fn relay_port(&self) -> u16 {
        self.base + 400
    }

    fn onion(&self) -> String {
        std::fs::read_to_string(self.dir.join("relay-onion"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn arti_toml(&self) -> String {
        self.dir.join("arti.toml").to_str().unwrap().to_string()
    }

    /// Keeps the onion service's logs in `e2e-artifacts/` and returns its descriptor lines, for
    /// a failure message.
    fn keep_logs(&self) -> String {
        let artifacts = tessera_e2e::artifacts_dir();
        let mut lines = String::new();
        for node in std::fs::read_dir(self.dir.join("nodes"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = node.file_name().to_string_lossy().to_string();
            for log in ["notice.log", "info.log"] {
                let from = node.path().join(log);
                if from.exists() {
                    let _ = std::fs::copy(&from, artifacts.join(format!("tornet-{name}-{log}")));
                }
            }
            if name.ends_with('h') {
                let info =
                    std::fs::read_to_string(node.path().join("info.log")).unwrap_or_default();
                for l in info.lines().filter(|l| {
                    l.contains("descriptor")
                        || l.contains("can't upload")
                        || l.contains("time period")
                }) {
                    lines.push_str(l);
                    lines.push('\n');
                }
            }
        }
        let tail: Vec<&str> = lines.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    pub(crate) fn down(&mut self) {
        if self.up {
            let _ = std::process::Command::new("bash")
                .arg(tornet_script())
                .args(["down"])
                .arg(&self.dir)
                .output();
            self.up = false;
        }
    }
}

impl Drop for TorNet {
    fn drop(&mut self) {
        self.down();
    }
}

/// `init` over Tor, tried up to three times when Tor or the relay did not answer in time (an
/// onion circuit on a loaded two-core machine sometimes takes longer than the connect timeout;
/// a failed `init` writes nothing, so trying again is what a user would do). Any other failure
/// is returned at once.
pub(crate) fn init_tor(cli: &Cli, relay: &str, name: &str, arti: &str) -> Outcome {
    let mut last = init_tor_once(cli, relay, name, arti);
    for _ in 0..2 {
        if !transient(&last) {
            break;
        }
        eprintln!(
            "init over Tor failed ({}); trying again",
            last.json["error"]
        );
        last = init_tor_once(cli, relay, name, arti);
    }
    last
}

/// Whether `o` failed the way a loaded private Tor network fails now and then (a stream or a
/// descriptor fetch timing out), not the way the product refuses.
fn transient(o: &Outcome) -> bool {
    !o.ok
        && ["relay", "tor_connect", "tor_unavailable"]
            .contains(&o.json["kind"].as_str().unwrap_or_default())
        && o.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("in time") || e.contains("through Tor"))
}

/// Runs `args` over Tor, once more after a transient failure (see [`transient`]); its JSON.
fn tor_ok(cli: &Cli, args: &[&str]) -> serde_json::Value {
    let mut o = cli.run(args);
    if transient(&o) {
        eprintln!(
            "{args:?} over Tor failed ({}); trying again",
            o.json["error"]
        );
        o = cli.run(args);
    }
    assert!(o.ok, "{args:?}: {}\n{}", o.stdout, o.stderr);
    o.json
}

/// `sync` over Tor (see [`tor_ok`]): the events it printed.
fn tor_sync(cli: &Cli) -> Vec<serde_json::Value> {
    tor_ok(cli, &["sync"])["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn init_tor_once(cli: &Cli, relay: &str, name: &str, arti: &str) -> Outcome {
    cli.run(&Cli::init_args(
        relay,
        name,
        &["--no-card", "--transport", "tor", "--tor-config", arti],
    ))
}

/// Counts TCP connections accepted on a port where nothing should connect.
fn watch_port(port: u16) -> Arc<AtomicUsize> {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if conn.is_ok() {
                c.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    count
}

/// Tests that bring up a private Tor network take turns: two networks of 8 tor daemons each on a
/// 2-core machine, beside the other tests, slow each other into timeouts.
pub(crate) fn one_network_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static NETWORK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    NETWORK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A private Tor network with the relay behind its onion service, reached through Arti.
pub(crate) struct OnionRelay {
    pub(crate) net: TorNet,
    pub(crate) relay: Relay,
    pub(crate) address: String,
    pub(crate) arti: String,
    pub(crate) onion: String,
}

/// Brings up the network and the relay, then waits until a fresh Arti reaches the relay
/// (`relay check --tor`). `Err` carries the diagnostics when that does not happen in 180 s.
pub(crate) fn onion_relay(dir: &Path, base: u16) -> Result<OnionRelay, String> {
    let net = TorNet::up(&dir.join("tornet"), base);
    if !net.up {
        return Err("scripts/tornet up failed (its output is above)".into());
    }
    let onion = net.onion();
    let arti = net.arti_toml();
    let relay = Relay::start_on(
        &dir.join("relay"),
        net.relay_port(),
        &["--public-host", &onion, "--public-port", "443"],
    );
    // The relay's printed address carries the onion name and the pin.
    assert_eq!(relay.address.host.to_string(), onion);
    assert_eq!(relay.address.port, 443);
    let address = relay.address.to_string();
    // Poll with `relay check --tor` (a fresh Arti each time) until the relay answers.
    let t = Instant::now();
    let probe = Cli::new(&dir.join("probe"));
    loop {
        let o = probe.run(&["relay", "check", &address, "--tor", "--tor-config", &arti]);
        if o.ok {
            eprintln!(
                "relay reachable as an onion service {:.1} s after the network was up",
                t.elapsed().as_secs_f64()
            );
            return Ok(OnionRelay {
                net,
                relay,
                address,
                arti,
                onion,
            });
        }
        if t.elapsed() >= Duration::from_secs(180) {
            return Err(format!(
                "the relay's onion service is not reachable after 180 s: {}\n\
                 onion service log (all tor logs are in e2e-artifacts/tornet-*):\n{}",
                o.stdout,
                net.keep_logs()
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn tor_two_clients_chat_through_the_onion_relay_and_fail_closed() {
    let _turn = one_network_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    // Ports BASE..BASE+201 for the network, BASE+400 for the relay; spread by process id so
    // parallel runs on one machine do not collide.
    let base = 20000 + (std::process::id() % 40) as u16 * 500;
    let setup = match onion_relay(&dir.path().join("net1"), base) {
        Ok(s) => s,
        Err(first) => {
            // The test network, not the product: one more network on other ports. The first
            // failure is printed (and its logs kept) so that a repeated cause can be found.
            eprintln!("the first private Tor network was not usable, trying another: {first}");
            onion_relay(&dir.path().join("net2"), base + 10000).unwrap_or_else(|second| {
                panic!(
                    "the relay was not reachable on two private Tor networks\n\
                     first: {first}\nsecond: {second}"
                )
            })
        }
    };
    let OnionRelay {
        mut net,
        relay,
        address,
        arti,
        onion,
    } = setup;

    // Two accounts over Tor (each CLI process bootstraps its own Arti; the first is cold).
    let mut alice = Cli::new(&dir.path().join("alice"));
    let mut bob = Cli::new(&dir.path().join("bob"));
    // What Arti did on the way to the onion service, in the failure message if a step fails.
    for cli in [&mut alice, &mut bob] {
        cli.env.push((
            "TESSERA_LOG".into(),
            "warn,tessera_net=info,tor_hsclient=debug".into(),
        ));
    }
    let t = Instant::now();
    let a = init_tor(&alice, &address, "Alice", &arti);
    assert!(a.ok, "{}\n{}", a.stdout, a.stderr);
    eprintln!(
        "init over Tor with a cold Arti cache: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let b = init_tor(&bob, &address, "Bob", &arti);
    assert!(b.ok, "{}\n{}", b.stdout, b.stderr);
    // Arti's state and cache live in the account's directory, private.
    for d in ["tor", "tor/state", "tor/cache"] {
        let meta = std::fs::metadata(alice.dir.join(d)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{d}");
        }
        assert!(meta.is_dir());
    }

    let (ai, bi) = (alice.invite(), bob.invite());
    let t = Instant::now();
    let added = tor_ok(&alice, &["contact", "add", &bi, "--name", "bob"]);
    eprintln!(
        "contact add over Tor with a warm Arti cache: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(added["contact"]["state"], "requested");
    let events = tor_sync(&bob);
    assert!(
        events.iter().any(|e| e["event"] == "contact_request"),
        "{events:?}"
    );
    tor_ok(&bob, &["contact", "add", &ai, "--name", "alice"]);
    tor_sync(&alice);
    alice.ok(&["send", "bob", "hello over Tor"]);
    assert_eq!(
        Cli::messages(&tor_sync(&bob)),
        vec![("alice".into(), "hello over Tor".into())]
    );
    bob.ok(&["send", "alice", "and back"]);
    assert_eq!(
        Cli::messages(&tor_sync(&alice)),
        vec![("bob".into(), "and back".into())]
    );

    // A link preview (docs/link-previews.md): Alice's CLI fetches the page through a Tor exit
    // (the site is on 127.0.0.1, trusted through SSL_CERT_FILE); Bob shows it and fetches
    // nothing.
    let site = tessera_e2e::site::Site::start(
        dir.path(),
        "<html><head><title>ignored</title>\
         <meta property=\"og:title\" content=\"The ridge trail\">\
         <meta property=\"og:description\" content=\"Nine kilometres above the tree line\">\
         <meta property=\"og:site_name\" content=\"Hikes\"></head></html>",
    );
    alice.env.push((
        "SSL_CERT_FILE".into(),
        site.ca_file.to_string_lossy().into_owned(),
    ));
    alice.ok(&["link-previews", "on"]);
    let link = site.link("/ridge");
    let t = Instant::now();
    let sent = alice.ok(&["send", "bob", &format!("this weekend? {link}")]);
    eprintln!(
        "send with a link preview over Tor: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(sent["preview"]["title"], "The ridge trail", "{sent}");
    assert_eq!(site.requests(), 1);
    tor_sync(&bob);
    let history = bob.ok(&["history", "alice"]);
    let shown = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == sent["message_id"])
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (
            shown["preview"]["url"].as_str(),
            shown["preview"]["description"].as_str(),
            shown["preview"]["site"].as_str()
        ),
        (
            Some(link.as_str()),
            Some("Nine kilometres above the tree line"),
            Some("Hikes")
        ),
        "{history}"
    );
    assert_eq!(site.requests(), 1, "the receiver fetched nothing");

    // A relay on a clear host:port is reached through a Tor exit (the test network's exits may
    // exit to 127.0.0.1), with the same pin check.
    let via_exit = format!(
        "tessera://127.0.0.1:{}/{}",
        net.relay_port(),
        relay.address.pin
    );
    let o = alice.run(&["relay", "check", &via_exit, "--tor", "--tor-config", &arti]);
    assert!(o.ok, "{}", o.stdout);

    // A wrong pin over Tor is refused exactly as in direct mode.
    let other = Relay::start(&dir.path().join("other"));
    let wrong = format!("tessera://{onion}:443/{}", other.address.pin);
    let carol = Cli::new(&dir.path().join("carol"));
    let o = init_tor(&carol, &wrong, "Carol", &arti);
    assert!(!o.ok);
    assert_eq!(o.json["kind"], "pin_mismatch", "{}", o.stdout);
    assert!(!carol.dir.join("vault.key").exists());

    // Tor down: typed errors, and not one TCP connection to the relay's clear address.
    net.down();
    drop(relay);
    let port = net.relay_port();
    let connections = watch_port(port);
    let clear = format!("tessera://127.0.0.1:{port}/{}", other.address.pin);
    let dave = Cli::new(&dir.path().join("dave"));
    let mut cmd = dave.command(&Cli::init_args(
        &clear,
        "Dave",
        &["--no-card", "--transport", "tor", "--tor-config", &arti],
    ));
    cmd.env("TESSERA_TOR_BOOTSTRAP_TIMEOUT", "20");
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert!(!out.status.success());
    assert!(
        ["tor_unavailable", "tor_connect"].contains(&v["kind"].as_str().unwrap()),
        "{text}"
    );
    assert!(!dave.dir.join("vault.key").exists());
    // Alice, warm cache, relay address on the onion: also a Tor error.
    let mut cmd = alice.command(&["sync"]);
    cmd.env("TESSERA_TOR_BOOTSTRAP_TIMEOUT", "20");
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("tor_unavailable") || text.contains("tor_connect"),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a client configured for Tor connected to the clear address"
    );
    // The watch does see a direct connection (so the zero above means something).
    let control = dave.run(&["relay", "check", &clear]);
    assert!(!control.ok);
    std::thread::sleep(Duration::from_millis(300));
    assert!(connections.load(Ordering::SeqCst) >= 1);
}
