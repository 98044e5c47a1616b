//! A minimal W3C WebDriver client and the headless desktop environment the app runs in:
//! Xvfb, `tauri-driver` (which starts WebKitWebDriver, which starts the app).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::process::Guard;

/// An X server on a display it chose itself.
pub struct Xvfb {
    /// The display number (`:N`).
    pub display: u32,
    _process: Guard,
}

impl Xvfb {
    /// Starts `Xvfb -displayfd 1` and reads the display number it picked.
    pub fn start() -> Xvfb {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start Xvfb (install it: ./scripts/setup)");
        let stdout = child.stdout.take().unwrap();
        let process = Guard::new("Xvfb", child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("Xvfb did not start");
        let display = line.trim().parse().expect("Xvfb printed no display number");
        Xvfb {
            display,
            _process: process,
        }
    }

    /// Captures the whole screen as PNG with ImageMagick's `import` (WebKitWebDriver's own
    /// screenshot command hangs under Xvfb, see shared/harness/RECIPES.md B.4).
    pub fn screenshot(&self, path: &Path) {
        let status = Command::new("import")
            .args(["-display", &format!(":{}", self.display), "-window", "root"])
            .arg(path)
            .status()
            .expect("cannot run ImageMagick's import (install imagemagick: ./scripts/setup)");
        assert!(status.success(), "screenshot failed: {status}");
    }
}

/// `tauri-driver` on a free port, with the environment WebKitGTK needs under Xvfb.
pub struct TauriDriver {
    /// Base URL of its WebDriver endpoint.
    pub url: String,
    _home: tempfile::TempDir,
    _process: Guard,
}

impl TauriDriver {
    /// Starts `tauri-driver` against display `:display` and waits until it answers `/status`.
    pub fn start(display: u32, log: &Path) -> TauriDriver {
        Self::start_with_env(display, log, &[])
    }

    /// [`TauriDriver::start`] with extra environment, which the app it starts inherits.
    pub fn start_with_env(display: u32, log: &Path, env: &[(String, String)]) -> TauriDriver {
        let port = crate::free_port();
        let native_port = crate::free_port();
        let home = tempfile::tempdir().unwrap();
        let dir = |name: &str| -> PathBuf {
            let d = home.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            d
        };
        let runtime = dir("runtime");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new("tauri-driver")
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native_port.to_string(),
            ])
            .env("DISPLAY", format!(":{display}"))
            .env_remove("WAYLAND_DISPLAY")
            .env("GDK_BACKEND", "x11")
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_CONFIG_HOME", dir("config"))
            .env("XDG_DATA_HOME", dir("data"))
            .env("XDG_CACHE_HOME", dir("cache"))
            .env("WEBKIT_DISABLE_DMABUF_RENDERER", "1")
            .env("WEBKIT_DISABLE_COMPOSITING_MODE", "1")
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start tauri-driver (install it: ./scripts/setup)");
        let driver = TauriDriver {
            url: format!("http://127.0.0.1:{port}"),
            _home: home,
            _process: Guard::new("tauri-driver", child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while agent(Duration::from_secs(2))
            .get(format!("{}/status", driver.url))
            .call()
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "tauri-driver did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        driver
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// One WebDriver session (one app instance).
pub struct Session {
    base: String,
    agent: ureq::Agent,
}

impl Session {
    /// Creates a session that launches `application` with `args`.
    pub fn start(driver: &TauriDriver, application: &Path, args: &[String]) -> Session {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "tauri:options": { "application": application, "args": args }
        }}});
        let agent = agent(Duration::from_secs(120));
        let value = call(
            &agent,
            "POST",
            &format!("{}/session", driver.url),
            Some(caps),
        )
        .unwrap_or_else(|e| panic!("cannot create a WebDriver session: {e}"));
        let id = value["sessionId"]
            .as_str()
            .expect("no sessionId in the new-session reply");
        Session {
            base: format!("{}/session/{id}", driver.url),
            agent,
        }
    }

    /// A command on this session; `Err` carries the WebDriver error.
    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        call(&self.agent, method, &format!("{}{path}", self.base), body)
    }

    /// Finds an element by CSS selector, retrying until `timeout`.
    pub fn find(&self, css: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            );
            // The reply is {"element-6066-11e4-a52e-4f735466cecf": "<id>"}.
            let id = found.ok().and_then(|v| {
                v.as_object()
                    .and_then(|o| o.values().next())
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            if let Some(id) = id {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "no element {css:?} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The rendered text of the element matching `css`.
    pub fn text(&self, css: &str) -> String {
        let id = self.find(css, Duration::from_secs(30));
        let v = self
            .cmd("GET", &format!("/element/{id}/text"), None)
            .unwrap();
        v.as_str().unwrap_or_default().to_string()
    }

    /// Polls the text of `css` until `accept` returns true, returning it (panics at `timeout`).
    pub fn wait_text(&self, css: &str, timeout: Duration, accept: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text(css);
            if accept(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css:?} still reads {text:?} after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs an async script; the script calls `arguments[arguments.length - 1](result)`.
    pub fn execute_async(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .unwrap()
    }

    /// Runs a synchronous script and returns its value.
    pub fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` (an expression's `return`) until it returns something truthy; returns it.
    pub fn wait_js(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.js(script);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what} (last value {v})"
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Waits until the element matching `css` is shown (it and its ancestors not hidden).
    pub fn wait_visible(&self, css: &str, timeout: Duration) {
        let script = format!(
            "const e = document.querySelector({css:?}); \
             return !!e && !e.closest('[hidden]') && e.getClientRects().length > 0;"
        );
        self.wait_js(&format!("{css} to be visible"), &script, timeout);
    }

    /// Clicks the element matching `css` (as a user would: through WebDriver). When the page
    /// re-renders between finding the element and clicking it (a list redrawn by an event),
    /// WebDriver reports a stale element: the element is found again, as a person would click
    /// the redrawn button.
    pub fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let id = self.find(css, Duration::from_secs(30));
            match self.cmd("POST", &format!("/element/{id}/click"), Some(json!({}))) {
                Ok(_) => return,
                Err(e) if e.contains("stale element reference") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot click {css}: {e}"),
            }
        }
    }

    /// Clears the field matching `css` and types `text` into it.
    pub fn type_into(&self, css: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let id = self.find(css, Duration::from_secs(30));
            let _ = self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})));
            match self.cmd(
                "POST",
                &format!("/element/{id}/value"),
                Some(json!({ "text": text })),
            ) {
                Ok(_) => return,
                // Redrawn between finding and typing (see `click`): find it again.
                Err(e) if e.contains("stale element reference") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot type into {css}: {e}"),
            }
        }
    }

    /// Ends the session, which closes the app.
    pub fn end(self) {
        let _ = self.cmd("DELETE", "", None);
    }
}

fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let response = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        (_, Some(body)) => agent.post(url).send_json(body),
        (_, None) => agent.post(url).send_json(json!({})),
    };
    let mut response = response.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status();
    let value: Value = response
        .body_mut()
        .read_json()
        .map_err(|e| format!("{method} {url}: unreadable reply: {e}"))?;
    if status.is_success() {
        Ok(value["value"].clone())
    } else {
        Err(format!("{method} {url}: HTTP {status}: {}", value["value"]))
    }
}
