//! The card path for tests: pcscd with the vsmartcard `vpcd` driver, and Tessera's virtual
//! NTAG 424 DNA (`tessera-cli card sim`) in one of its two slots.

use std::time::{Duration, Instant};

use tessera_nfc::reader::Readers;

use crate::process::Guard;

/// pcscd, started for the test if it is not already running.
///
/// Its log goes to `e2e-artifacts/pcscd-<pid>-<n>.log`. A pcscd whose vpcd reader does not come
/// up within 15 s is stopped and started again, three times at most: vpcd listens on 35963 and
/// 35964, inside the ephemeral port range, and an outgoing connection of another test can hold
/// one of them for a while (`scripts/setup` reserves them where it can).
pub fn pcscd() -> Option<Guard> {
    if Readers::open().and_then(|r| r.list()).is_ok() {
        return None;
    }
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut logs = String::new();
    for attempt in 1..=3 {
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = crate::artifacts_dir().join(format!("pcscd-{}-{n}.log", std::process::id()));
        let child = std::process::Command::new("pcscd")
            .args(["--foreground", "--info"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("pcscd log"))
            .spawn()
            .expect(
                "pcscd (package pcscd) is needed for the card tests; ./scripts/setup installs it",
            );
        let mut guard = Guard::new("pcscd", child);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = None;
        while Instant::now() < deadline {
            match Readers::open().and_then(|r| r.list()) {
                Ok(_) => return Some(guard),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        eprintln!(
            "pcscd (attempt {attempt}) did not come up with the vpcd reader ({last:?}); its log:\n{text}"
        );
        logs.push_str(&format!("attempt {attempt} ({last:?}):\n{text}\n"));
        guard.stop_with("TERM");
        std::thread::sleep(Duration::from_secs(2));
    }
    panic!("pcscd did not come up with the vpcd reader in three attempts:\n{logs}");
}

/// The card and UI tests share pcscd's two vpcd slots: one test at a time.
static SLOTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the vpcd slots for the calling test.
pub fn slots() -> std::sync::MutexGuard<'static, ()> {
    SLOTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The PC/SC name of vpcd slot 0.
pub fn vpcd_reader(readers: &Readers) -> String {
    slot_reader(readers, 0)
}

/// The PC/SC name of vpcd slot `slot` ("Virtual PCD 00 00", "Virtual PCD 00 01"). pcscd
/// attaches the slots one after the other when it starts: wait for this one to be listed.
pub fn slot_reader(readers: &Readers, slot: u16) -> String {
    let suffix = format!("00 {slot:02}");
    readers
        .wait_for_reader(
            &|r| r.starts_with("Virtual PCD") && r.ends_with(&suffix),
            Duration::from_secs(20),
        )
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "vpcd slot {slot} is not among pcscd's readers ({:?}); is the vpcd driver \
                 (package vsmartcard-vpcd) configured?",
                readers.list()
            )
        })
}

/// A virtual card run as a user runs it: `tessera-cli card sim` in vpcd slot `slot`.
pub struct Sim {
    guard: Guard,
    /// The PC/SC reader the card is on.
    pub reader: String,
}

/// How long a card may take to appear or disappear. pcscd notices within its polling
/// interval (0.4 s); this only bounds a machine under heavy load.
const CARD_WAIT: Duration = Duration::from_secs(60);

impl Sim {
    /// Puts the card whose state is in `state` into vpcd slot `slot` and waits, on pcscd's
    /// reader events, until PC/SC sees it. If it does not, the panic says what pcscd reported
    /// for the reader and what the card process did.
    pub fn insert(state: &std::path::Path, slot: u16) -> Self {
        Self::insert_with(state, slot, &[])
    }

    /// As [`Sim::insert`], with more arguments for `card sim` (e.g. `--pull-at torn`).
    pub fn insert_with(state: &std::path::Path, slot: u16, extra: &[&str]) -> Self {
        let readers = Readers::open().unwrap();
        let reader = slot_reader(&readers, slot);
        // The slot must be empty first (a previous card fully removed).
        assert!(
            readers.wait_for(&reader, false, CARD_WAIT).unwrap(),
            "{reader} still holds a card after {CARD_WAIT:?}: {}",
            readers.describe(&reader)
        );
        let log = state.with_extension("sim.log");
        let child = std::process::Command::new(crate::bin_path("tessera-cli"))
            .args(["card", "sim", "--state"])
            .arg(state)
            .args([
                "--vpcd",
                &format!("127.0.0.1:{}", tessera_nfc::vpcd::DEFAULT_PORT + slot),
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut guard = Guard::new("card sim", child);
        let started = Instant::now();
        if !readers.wait_for(&reader, true, CARD_WAIT).unwrap() {
            let process = match guard.wait_timeout(Duration::ZERO) {
                Some(status) => format!("exited ({status})"),
                None => "still running".into(),
            };
            panic!(
                "the virtual card did not appear on {reader} within {:?}: pcscd reports {}; the \
                 card process is {process}; its log:\n{}",
                started.elapsed(),
                readers.describe(&reader),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Self { guard, reader }
    }

    /// Takes the card away without waiting for PC/SC to notice.
    pub fn guard_kill(mut self) {
        self.guard.stop_with("KILL");
    }

    /// Takes the card away (the process dies, its socket closes) and waits until PC/SC sees it.
    pub fn remove(mut self) {
        self.guard.stop_with("KILL");
        let readers = Readers::open().unwrap();
        assert!(
            readers.wait_for(&self.reader, false, CARD_WAIT).unwrap(),
            "the card stayed on {} after its process ended: {}",
            self.reader,
            readers.describe(&self.reader)
        );
    }
}

/// The virtual card's state-file keys in the OS keyring, as `tessera-cli card sim` keeps them:
/// for tests that run a card or read its state in process.
pub struct KeyringKeys;

impl tessera_nfc::vpcd::StateKeys for KeyringKeys {
    fn get(&self, name: &str) -> Result<Option<zeroize::Zeroizing<[u8; 32]>>, String> {
        use tessera_store::SecretStore as _;
        tessera_store::OsKeyring
            .get(name)
            .map_err(|e| e.to_string())
    }
    fn put(&self, name: &str, key: &[u8; 32]) -> Result<(), String> {
        use tessera_store::SecretStore as _;
        tessera_store::OsKeyring
            .put(name, key)
            .map_err(|e| e.to_string())
    }
}
