//! Signed updates through Tor (`docs/updates.md`): the app, installed from a `.deb` into an
//! empty root with dpkg, on a Tor account of the private Tor network on loopback, finds an update
//! on an HTTPS server on loopback through a Tor exit, shows it, and installs it with the real
//! dpkg; the same update with one byte changed is refused, so is an older version, and with the
//! Tor network down the check fails instead of reaching the server directly.
//!
//! The one stand-in is `pkexec` (the system's password prompt, which a test cannot answer): a
//! script on `PATH` that runs the real `dpkg` into the test's root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera_e2e::cli::Cli;
use tessera_e2e::site::{Routes, Site};
use tessera_e2e::webdriver::{Session, TauriDriver, Xvfb};

use crate::tor::{OnionRelay, init_tor, one_network_at_a_time, onion_relay};

const LONG: Duration = Duration::from_secs(120);

/// A minisign key pair made for this test (`minisign -G`, no password).
struct Key {
    public: PathBuf,
    secret: PathBuf,
}

impl Key {
    fn generate(dir: &Path) -> Key {
        let key = Key {
            public: dir.join("update.pub"),
            secret: dir.join("update.key"),
        };
        run(Command::new("minisign")
            .args(["-G", "-W", "-p"])
            .arg(&key.public)
            .arg("-s")
            .arg(&key.secret));
        key
    }

    /// The public key as Tauri's updater takes it: the base64 of the `.pub` file.
    fn tauri_public(&self) -> String {
        base64(&std::fs::read(&self.public).unwrap())
    }

    /// A signature of `file` for `version`, as Tauri's signer writes it: the trusted comment
    /// carries the version (the app requires it), the whole `.minisig` file base64-encoded.
    fn sign(&self, file: &Path, version: &str) -> String {
        let sig = file.with_extension("minisig");
        let name = file.file_name().unwrap().to_string_lossy();
        run(Command::new("minisign")
            .args(["-S", "-s"])
            .arg(&self.secret)
            .arg("-m")
            .arg(file)
            .arg("-x")
            .arg(&sig)
            .arg("-t")
            .arg(format!(
                "timestamp:1796685040\tfile:{name}\tversion:{version}"
            )));
        base64(&std::fs::read(&sig).unwrap())
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `.deb` of the app as the bundler lays it out (`/usr/bin/tessera-desktop`, marked as a
/// `.deb` install the way `cargo tauri bundle` marks it, so the updater installs with dpkg).
fn app_deb(dir: &Path, version: &str) -> PathBuf {
    let pkg = dir.join(format!("pkg-{version}"));
    let bin = pkg.join("usr/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    let mut exe = std::fs::read(tessera_e2e::bin_path("tessera-desktop")).unwrap();
    // The bundler's mark: the bundle-type variable's text, "…_UNK", becomes "…_DEB" (a binary
    // that `scripts/package` already bundled carries it: the "…_DEB" literal then shows twice).
    let find = |exe: &[u8], what: &[u8]| exe.windows(what.len()).filter(|w| *w == what).count();
    let unknown = b"__TAURI_BUNDLE_TYPE_VAR_UNK";
    if let Some(at) = exe.windows(unknown.len()).position(|w| w == unknown) {
        exe[at..at + unknown.len()].copy_from_slice(b"__TAURI_BUNDLE_TYPE_VAR_DEB");
    } else {
        assert_eq!(
            find(&exe, b"__TAURI_BUNDLE_TYPE_VAR_DEB"),
            2,
            "the app binary carries neither the unbundled mark nor the .deb mark"
        );
    }
    std::fs::write(bin.join("tessera-desktop"), &exe).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            bin.join("tessera-desktop"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    std::fs::write(
        pkg.join("DEBIAN/control"),
        format!(
            "Package: tessera\nVersion: {version}\nArchitecture: amd64\n\
             Maintainer: The Tessera developers <security@tessera.invalid>\n\
             Description: Tessera (update test)\n"
        ),
    )
    .unwrap();
    let deb = dir.join(format!("Tessera_{version}_amd64.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-z1", "--build"])
        .arg(&pkg)
        .arg(&deb));
    deb
}

/// dpkg into the test's root (its libraries are this machine's).
fn dpkg_root(root: &Path, args: &[&str]) -> String {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--log=/dev/null",
            "--force-depends",
            "--force-script-chrootless",
        ])
        .args(args))
}

fn installed_version(root: &Path) -> String {
    dpkg_root(root, &["-s", "tessera"])
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap_or_default()
        .to_string()
}

/// The update manifest (Tauri's static JSON) offering `version` at `url`.
fn manifest(version: &str, url: &str, signature: &str) -> Vec<u8> {
    serde_json::json!({
        "version": version,
        "notes": format!("Tessera {version}: fixes for the update test."),
        "pub_date": "2026-12-07T12:00:00Z",
        "platforms": { "linux-x86_64-deb": { "url": url, "signature": signature } }
    })
    .to_string()
    .into_bytes()
}

fn tools() {
    for tool in [
        "minisign",
        "dpkg-deb",
        "Xvfb",
        "tauri-driver",
        "WebKitWebDriver",
    ] {
        assert!(
            tessera_e2e::on_path(tool),
            "{tool} is not installed; run ./scripts/setup"
        );
    }
}

#[test]
fn update_through_tor_installs_a_signed_update_and_refuses_a_changed_one_and_an_older_one() {
    tools();
    let _turn = one_network_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Ports apart from the Tor chat test's (which uses BASE..BASE+400 of 20000 + k·500).
    let base = 21000 + (std::process::id() % 40) as u16 * 500;
    let setup = match onion_relay(&d.join("net1"), base) {
        Ok(s) => s,
        Err(first) => {
            eprintln!("the first private Tor network was not usable, trying another: {first}");
            onion_relay(&d.join("net2"), base + 10000).unwrap_or_else(|second| {
                panic!("no usable private Tor network\nfirst: {first}\nsecond: {second}")
            })
        }
    };
    let OnionRelay {
        mut net,
        relay: _relay,
        address,
        arti,
        ..
    } = setup;

    // A Tor account (made with the CLI; the app opens its vault).
    let alice = Cli::new(&d.join("alice"));
    let made = init_tor(&alice, &address, "Alice", &arti);
    assert!(made.ok, "{}\n{}", made.stdout, made.stderr);

    // The app 0.1.0 installed into an empty root; 0.1.1 signed with the update key.
    let key = Key::generate(d);
    let current = app_deb(d, "0.1.0");
    let newer = app_deb(d, "0.1.1");
    let older = app_deb(d, "0.0.9");
    let root = d.join("root");
    for sub in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    std::fs::write(root.join("var/lib/dpkg/available"), "").unwrap();
    dpkg_root(&root, &["-i", current.to_str().unwrap()]);
    assert_eq!(installed_version(&root), "0.1.0");

    // The update server: HTTPS on loopback, reached through a Tor exit.
    let routes: Routes = Arc::new(Mutex::new(Default::default()));
    let site = Site::files(d, routes.clone());
    let newer_bytes = std::fs::read(&newer).unwrap();
    let newer_sig = key.sign(&newer, "0.1.1");
    let serve = |manifest_bytes: Vec<u8>, deb: Vec<u8>| {
        let mut r = routes.lock().unwrap();
        r.insert(
            "/update.json".into(),
            ("application/json".into(), manifest_bytes),
        );
        r.insert(
            "/Tessera.deb".into(),
            ("application/vnd.debian.binary-package".into(), deb),
        );
    };
    serve(
        manifest("0.1.1", &site.link("/Tessera.deb"), &newer_sig),
        newer_bytes.clone(),
    );

    // pkexec: the real dpkg into the test's root.
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        bin.join("pkexec"),
        "#!/bin/sh\n# Stands in for the password prompt: the real dpkg, into the test's root.\n\
         [ \"$1\" = dpkg ] || exit 127\nshift\n\
         exec dpkg --root=\"$TESSERA_TEST_DPKG_ROOT\" --log=/dev/null --force-depends \
         --force-script-chrootless \"$@\"\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(bin.join("pkexec"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }

    // The installed app, with the update source given at run time.
    let env = vec![
        ("TESSERA_UPDATE_PUBKEY".to_string(), key.tauri_public()),
        (
            "TESSERA_UPDATE_ENDPOINT".to_string(),
            site.link("/update.json"),
        ),
        (
            "SSL_CERT_FILE".to_string(),
            site.ca_file.to_string_lossy().into_owned(),
        ),
        (
            "TESSERA_TEST_DPKG_ROOT".to_string(),
            root.to_string_lossy().into_owned(),
        ),
        (
            "PATH".to_string(),
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        ),
        (
            "TESSERA_TOR_BOOTSTRAP_TIMEOUT".to_string(),
            "60".to_string(),
        ),
    ];
    let xvfb = Xvfb::start();
    let log = tessera_e2e::artifacts_dir().join("update-tauri-driver.log");
    let driver = TauriDriver::start_with_env(xvfb.display, &log, &env);
    let s = Session::start(
        &driver,
        &root.join("usr/bin/tessera-desktop"),
        &[
            "--data-dir".to_string(),
            alice.dir.to_string_lossy().into_owned(),
        ],
    );
    s.wait_visible("#lock-screen", LONG);
    s.type_into("#password", &alice.password);
    s.click("#unlock");
    s.wait_visible("#main", LONG);
    s.click("#nav-settings");
    s.wait_visible("#update-check", LONG);
    assert_eq!(
        s.js("return document.querySelector('#set-update-checks').checked;"),
        true,
        "update checks are on by default"
    );

    // Check: offered with its notes; nothing downloaded yet.
    let before = site.requests();
    let t = Instant::now();
    s.click("#update-check");
    let status = s.wait_text("#update-status", LONG, |t| {
        t.contains("available") || t.is_empty()
    });
    let error = error_of(&s);
    assert!(
        status.contains("Tessera 0.1.1 is available (this is 0.1.0)"),
        "status {status:?}, error {error:?}; the backend says: {}",
        raw_check(&s)
    );
    eprintln!(
        "update check through Tor: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(
        s.text("#update-notes")
            .contains("fixes for the update test")
    );
    assert!(site.requests() > before, "the manifest was fetched");
    assert_eq!(
        site.requests_for("/Tessera.deb"),
        0,
        "nothing is downloaded before Install"
    );

    // Install: downloaded through Tor, verified, installed with dpkg.
    let t = Instant::now();
    s.click("#update-install");
    let status = s.wait_text("#update-status", LONG, |t| {
        t.starts_with("Installed") || t.is_empty()
    });
    assert_eq!(
        status,
        "Installed: restart Tessera to use 0.1.1.",
        "error {:?}",
        error_of(&s)
    );
    eprintln!(
        "update download ({} KiB) and install through Tor: {:.1} s",
        newer_bytes.len() / 1024,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(installed_version(&root), "0.1.1");

    // The same update with one byte changed: refused, nothing installed.
    dpkg_root(&root, &["-i", current.to_str().unwrap()]);
    assert_eq!(installed_version(&root), "0.1.0");
    let mut changed = newer_bytes.clone();
    let mid = changed.len() / 2;
    changed[mid] ^= 0x01;
    serve(
        manifest("0.1.1", &site.link("/Tessera.deb"), &newer_sig),
        changed,
    );
    assert_eq!(
        offered_then_refused(&s),
        "update_bad_signature",
        "{:?}",
        error_of(&s)
    );
    assert!(s.text("#update-error").contains("signature is not valid"));
    assert_eq!(
        installed_version(&root),
        "0.1.0",
        "the changed update was not installed"
    );

    // An older version, validly signed: refused with its own message.
    let older_sig = key.sign(&older, "0.0.9");
    serve(
        manifest("0.0.9", &site.link("/Tessera.deb"), &older_sig),
        std::fs::read(&older).unwrap(),
    );
    s.click("#update-check");
    s.wait_visible("#update-error", LONG);
    assert_eq!(error_code(&s), "update_not_newer", "{:?}", error_of(&s));
    // A newer version number paired with the older, validly signed bundle: refused too (the
    // signature names the version it was made for).
    serve(
        manifest("0.1.1", &site.link("/Tessera.deb"), &older_sig),
        std::fs::read(&older).unwrap(),
    );
    assert_eq!(
        offered_then_refused(&s),
        "update_bad_signature",
        "{:?}",
        error_of(&s)
    );
    assert_eq!(installed_version(&root), "0.1.0");

    // Tor down: the check fails; the server, reachable directly on loopback, hears nothing.
    serve(
        manifest("0.1.1", &site.link("/Tessera.deb"), &newer_sig),
        newer_bytes,
    );
    net.down();
    let before = site.requests();
    s.click("#update-check");
    s.wait_visible("#update-error", Duration::from_secs(300));
    let code = error_code(&s);
    assert!(
        ["update_unreachable", "transport_unavailable"].contains(&code.as_str()),
        "{code}: {:?}",
        error_of(&s)
    );
    assert_eq!(site.requests(), before, "nothing went around Tor");
    s.end();
}

/// Check (an update is offered), then Install, which fails: the error's code.
fn offered_then_refused(s: &Session) -> String {
    s.click("#update-check");
    let status = s.wait_text("#update-status", LONG, |t| {
        t.contains("available") || t.is_empty()
    });
    assert!(status.contains("available"), "no offer: {:?}", error_of(s));
    s.click("#update-install");
    s.wait_visible("#update-error", LONG);
    error_code(s)
}

fn error_of(s: &Session) -> String {
    s.js("const e = document.querySelector('#update-error'); return e.hidden ? '' : e.textContent;")
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn error_code(s: &Session) -> String {
    s.js("return document.querySelector('#update-error').dataset.code;")
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `check_update` called directly, for a failure message with the backend's own words.
fn raw_check(s: &Session) -> String {
    s.execute_async(
        "const done = arguments[arguments.length - 1]; \
         window.__TAURI__.core.invoke('check_update').then( \
           (r) => done(JSON.stringify(r)), (e) => done(JSON.stringify(e)));",
    )
    .as_str()
    .unwrap_or_default()
    .to_string()
}
