#![doc = include_str!("../README.md")]
#![allow(clippy::unwrap_used)] // test support: a failed set-up step should stop the test loudly

pub mod calls;
pub mod card;
pub mod cli;
pub mod cut;
pub mod delay;
pub mod device;
pub mod faketime;
pub mod pair;
pub mod process;
pub mod relay;
pub mod site;
/// The envelope specification's own sealer (`docs/envelope.md`, written again from the
/// document), shared with tessera-crypto's vector tests: it can forge what no honest sender
/// makes.
#[path = "../../crates/tessera-crypto/tests/common/spec.rs"]
pub mod spec;
pub mod webdriver;

use std::path::PathBuf;

/// The e2e crate's directory (`tests/`): from Cargo at run time (a test binary reused from a
/// build in another checkout must not read that checkout's files), else as compiled.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The directory holding the workspace's built binaries: `TESSERA_BIN_DIR`, or the profile
/// directory this test binary was built into (`target/debug` for `target/debug/deps/e2e-*`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TESSERA_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    deps.parent().unwrap().to_path_buf()
}

/// Path of a workspace binary, failing with instructions if it has not been built.
pub fn bin_path(name: &str) -> PathBuf {
    let path = bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} not found; build the workspace first: cargo build --workspace --all-targets \
         (./scripts/test does this)",
        path.display()
    );
    path
}

/// `<target dir>/e2e-artifacts`, created if needed: screenshots and logs worth keeping.
pub fn artifacts_dir() -> PathBuf {
    let dir = bin_dir().parent().unwrap().join("e2e-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether an executable is on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for test helpers that cannot
/// take port 0 themselves).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Prints the in-process engine's logs (to the test's captured output) when `RUST_LOG` is set,
/// e.g. `RUST_LOG=tessera_core=debug`; does nothing otherwise. Safe to call from every test.
pub fn logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
