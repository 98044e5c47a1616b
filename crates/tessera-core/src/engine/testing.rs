//! What the engine's unit tests share: a relay of their own (the relay crate's server, in the
//! test process on loopback, with its SQLite store in a temporary directory) and accounts on
//! it. The end-to-end tests in `tests/` run the relay as a process; these test the driver.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_proto::RelayAddress;
use tessera_store::{KdfParams, MemorySecrets};
use zeroize::Zeroizing;

use super::{CreateOptions, Engine};
use crate::{ContactState, TransportConfig};

/// A relay serving until dropped.
pub(crate) struct TestRelay {
    pub(crate) address: RelayAddress,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl TestRelay {
    /// Its data directory.
    pub(crate) fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a relay on a free loopback port.
pub(crate) async fn relay() -> TestRelay {
    let dir = tempfile::tempdir().unwrap();
    let flags = tessera_relay::Flags {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let config =
        tessera_relay::Config::resolve(flags, tessera_relay::FileConfig::default()).unwrap();
    let bound = tessera_relay::bind(&config).await.unwrap();
    let address = bound.address().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve(async move {
        let _ = stopped.await;
    }));
    TestRelay {
        address,
        stop: Some(stop),
        _dir: dir,
    }
}

pub(crate) fn password(name: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(format!("{name}'s password").into_bytes())
}

/// A new account called `name` in `dir/name`, connected to `relay`.
pub(crate) async fn account(
    dir: &std::path::Path,
    relay: &TestRelay,
    name: &str,
) -> (Engine, Arc<MemorySecrets>) {
    account_with_clock(dir, relay, name, Arc::new(crate::clock::SystemClock)).await
}

/// [`account`] with the engine's clock.
pub(crate) async fn account_with_clock(
    dir: &std::path::Path,
    relay: &TestRelay,
    name: &str,
    clock: Arc<dyn crate::clock::Clock>,
) -> (Engine, Arc<MemorySecrets>) {
    let secrets = Arc::new(MemorySecrets::default());
    let engine = Engine::create_with_clock(
        CreateOptions {
            dir: dir.join(name),
            password: password(name),
            relay: relay.address.clone(),
            name: name.into(),
            transport: TransportConfig::Direct,
            kdf: KdfParams::MINIMUM,
            card: None,
        },
        secrets.clone(),
        clock,
    )
    .await
    .unwrap();
    engine.connect().await.unwrap();
    (engine, secrets)
}

/// Waits (up to a minute) until `done`.
pub(crate) async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Makes `a` and `b` accepted contacts of each other (`a` asks, `b` answers by adding `a`).
pub(crate) async fn befriend(a: &Engine, b: &Engine) -> ([u8; 32], [u8; 32]) {
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
