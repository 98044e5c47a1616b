//! Nobody loses history (`docs/engine.md`, "Vault schema"): a vault made by an earlier version
//! of Tessera, kept as a fixture in `tests/data/`, opens with today's code, which migrates it in
//! place and finds every contact, message and status.
//!
//! The fixture is made by [`migration_make_fixture`] (ignored; run it by name with the code of
//! the version to keep, then commit `tests/data/vault-vN/`): Alice, with Bob an accepted
//! contact (messages each way: read, delivered, received read and unread), Carol a stranger
//! whose request and text wait, and one message queued while the relay was down.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera_core::clock::{Clock as _, ManualClock, SystemClock};
use tessera_core::{
    ContactState, CreateOptions, Engine, Event, KdfParams, MessageStatus, SecretStore,
    TransportConfig,
};
use tessera_e2e::relay::Relay;
use tessera_store::VaultError;
use tokio::sync::broadcast;
use zeroize::Zeroizing;

/// The schema version of the newest fixture.
const FIXTURE: &str = "vault-v5";

/// Secrets in a text file (`name hex` per line): the keyring stand-in a fixture carries.
struct FileSecrets {
    path: PathBuf,
    map: Mutex<HashMap<String, [u8; 32]>>,
}

impl FileSecrets {
    fn open(path: &Path) -> FileSecrets {
        let mut map = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                let (name, hex) = line.split_once(' ').unwrap();
                let bytes: Vec<u8> = (0..64)
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                map.insert(name.to_string(), bytes.try_into().unwrap());
            }
        }
        FileSecrets {
            path: path.to_path_buf(),
            map: Mutex::new(map),
        }
    }

    fn save(&self, map: &HashMap<String, [u8; 32]>) {
        let mut lines: Vec<String> = map
            .iter()
            .map(|(name, s)| {
                let hex: String = s.iter().map(|b| format!("{b:02x}")).collect();
                format!("{name} {hex}\n")
            })
            .collect();
        lines.sort();
        std::fs::write(&self.path, lines.concat()).unwrap();
    }
}

impl SecretStore for FileSecrets {
    fn get(&self, name: &str) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError> {
        Ok(self
            .map
            .lock()
            .unwrap()
            .get(name)
            .map(|s| Zeroizing::new(*s)))
    }

    fn put(&self, name: &str, secret: &[u8; 32]) -> Result<(), VaultError> {
        let mut map = self.map.lock().unwrap();
        map.insert(name.to_string(), *secret);
        self.save(&map);
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), VaultError> {
        let mut map = self.map.lock().unwrap();
        map.remove(name);
        self.save(&map);
        Ok(())
    }
}

fn password(name: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(format!("{name}'s fixture password").into_bytes())
}

async fn create(root: &Path, relay: &Relay, name: &str, clock: &ManualClock) -> Engine {
    let secrets = Arc::new(FileSecrets::open(&root.join(format!("{name}.keyring"))));
    Engine::create_with_clock(
        CreateOptions {
            dir: root.join(name),
            password: password(name),
            relay: relay.address.clone(),
            name: name.into(),
            transport: TransportConfig::Direct,
            kdf: KdfParams::MINIMUM,
            card: None,
        },
        secrets,
        Arc::new(clock.clone()),
    )
    .await
    .unwrap()
}

/// Waits for an event `pick` accepts.
async fn wait_for(
    events: &mut broadcast::Receiver<Event>,
    what: &str,
    pick: impl Fn(&Event) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(e)) if pick(&e) => return,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// Waits until Alice's message `id` has reached `status`.
async fn wait_status(engine: &Engine, id: &[u8; 16], status: MessageStatus) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.message(id).unwrap().map(|m| m.status) != Some(status) {
        assert!(
            Instant::now() < deadline,
            "message never reached {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes `tests/data/<FIXTURE>/` with the code of this checkout. Run by name:
/// `cargo test -p tessera-e2e --test e2e migration_make_fixture -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "makes the fixture; run by name with the version to keep"]
async fn migration_make_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fixture");
    std::fs::create_dir_all(&root).unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let clock = ManualClock::new(SystemClock.now_ms());
    let alice = create(&root, &relay, "alice", &clock).await;
    let bob = create(&root, &relay, "bob", &clock).await;
    let carol = create(&root, &relay, "carol", &clock).await;
    let (a, b) = (alice.account_id().unwrap().0, bob.account_id().unwrap().0);
    let (mut a_events, mut b_events) = (alice.subscribe(), bob.subscribe());

    alice
        .add_contact(&bob.invite().unwrap(), None)
        .await
        .unwrap();
    wait_for(&mut b_events, "Bob sees the request", |e| {
        matches!(e, Event::ContactRequest { .. })
    })
    .await;
    bob.add_contact(&alice.invite().unwrap(), None)
        .await
        .unwrap();
    wait_for(&mut a_events, "Alice sees the acceptance", |e| {
        matches!(e, Event::ContactAccepted { .. })
    })
    .await;

    // Alice → Bob: one read, one delivered.
    let read = alice.send_text(&b, "Bob, this one you read").await.unwrap();
    wait_status(&alice, &read, MessageStatus::Delivered).await;
    bob.mark_read(&a).await.unwrap();
    wait_status(&alice, &read, MessageStatus::Read).await;
    let delivered = alice
        .send_text(&b, "and this one waits unread")
        .await
        .unwrap();
    wait_status(&alice, &delivered, MessageStatus::Delivered).await;
    // Bob → Alice: one she read, then one she has not.
    bob.send_text(&a, "Alice, seen").await.unwrap();
    wait_for(&mut a_events, "Alice gets Bob's first", |e| {
        matches!(e, Event::Message { .. })
    })
    .await;
    alice.mark_read(&b).await.unwrap();
    bob.send_text(&a, "Alice, not seen yet").await.unwrap();
    wait_for(&mut a_events, "Alice gets Bob's second", |e| {
        matches!(e, Event::Message { .. })
    })
    .await;

    // Carol, a stranger, asks and writes.
    carol
        .add_contact(&alice.invite().unwrap(), None)
        .await
        .unwrap();
    carol
        .send_text(&a, "Carol here, from the workshop")
        .await
        .unwrap();
    wait_for(
        &mut a_events,
        "Alice gets Carol's text",
        |e| matches!(e, Event::Message { body, .. } if body.starts_with("Carol")),
    )
    .await;

    // The relay goes away; Alice's next message waits in her outbox.
    drop(relay);
    alice
        .send_text(&b, "queued while the relay was down")
        .await
        .unwrap();
    std::fs::write(root.join("clock-ms"), clock.now_ms().to_string()).unwrap();
    alice.lock();
    drop(alice);
    for gone in ["bob", "carol", "bob.keyring", "carol.keyring"] {
        let p = root.join(gone);
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }
    let out = tessera_e2e::manifest_dir().join("data").join(FIXTURE);
    let _ = std::fs::remove_dir_all(&out);
    copy_dir(&root, &out);
    eprintln!("fixture written to {}", out.display());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_a_vault_from_the_previous_schema_opens_with_all_history() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fixture");
    copy_dir(
        &tessera_e2e::manifest_dir().join("data").join(FIXTURE),
        &root,
    );
    let at: u64 = std::fs::read_to_string(root.join("clock-ms"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let clock = ManualClock::new(at + 60_000);
    let secrets = Arc::new(FileSecrets::open(&root.join("alice.keyring")));
    let alice_dir = root.join("alice");
    let open = |pw| {
        Engine::unlock_with_clock(
            &alice_dir,
            pw,
            secrets.clone(),
            None,
            Arc::new(clock.clone()),
        )
    };
    // The wrong password is still refused after the upgrade path is in place.
    assert!(open(password("mallory")).await.is_err());
    let alice = open(password("alice")).await.unwrap();

    let contacts = alice.contacts().unwrap();
    let state = |name: &str| {
        contacts
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} in {contacts:?}"))
            .state
    };
    assert_eq!(contacts.len(), 2, "{contacts:?}");
    assert_eq!(state("bob"), ContactState::Accepted);
    assert_eq!(state("carol"), ContactState::Incoming);
    let id = |name: &str| contacts.iter().find(|c| c.name == name).unwrap().account_id;

    let bob: Vec<_> = alice
        .history(&id("bob"), None, 50)
        .unwrap()
        .into_iter()
        .map(|m| (m.outgoing, m.body, m.status, m.read, m.kind))
        .collect();
    let text = |s: &str| s.to_string();
    assert_eq!(
        bob,
        vec![
            (
                true,
                text("Bob, this one you read"),
                MessageStatus::Read,
                true,
                text("text")
            ),
            (
                true,
                text("and this one waits unread"),
                MessageStatus::Delivered,
                true,
                text("text")
            ),
            (
                false,
                text("Alice, seen"),
                MessageStatus::Received,
                true,
                text("text")
            ),
            (
                false,
                text("Alice, not seen yet"),
                MessageStatus::Received,
                false,
                text("text")
            ),
            (
                true,
                text("queued while the relay was down"),
                MessageStatus::Pending,
                true,
                text("text")
            ),
        ]
    );
    let carol: Vec<_> = alice
        .history(&id("carol"), None, 50)
        .unwrap()
        .into_iter()
        .map(|m| (m.outgoing, m.body, m.read))
        .collect();
    assert_eq!(
        carol,
        vec![(false, text("Carol here, from the workshop"), false)]
    );
    // The queued message is still queued, and search still finds old text.
    assert_eq!(alice.outbox_len().unwrap(), 1);
    assert_eq!(alice.search("workshop", 10).unwrap().len(), 1);
    // Bob's conversation; Carol, who asked and was not answered, is in the request box.
    let conversations = alice.conversations().unwrap();
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0].contact.name, "bob");
    let requests = alice.requests().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].contact.name, "carol");
    assert_eq!(
        requests[0].preview.as_deref(),
        Some("Carol here, from the workshop")
    );
}
