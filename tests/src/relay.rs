//! Running the real relay binary.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tessera_proto::RelayAddress;

use crate::process::Guard;

/// A relay process on loopback with its own data directory.
pub struct Relay {
    /// The address it printed.
    pub address: RelayAddress,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Where it serves `/metrics`, if it was asked to.
    pub metrics: Option<String>,
    /// Its TURN service's URL, if it was asked to run one (`--turn-listen`).
    pub turn: Option<String>,
    /// The process; dropping it stops the relay.
    pub process: Guard,
}

impl Relay {
    /// Starts `tessera-relay --listen 127.0.0.1:0 --data-dir DATA_DIR` and waits for its address.
    /// Standard error goes to `DATA_DIR/../relay-stderr.log` for diagnosis.
    pub fn start(data_dir: &Path) -> Relay {
        Self::start_with(data_dir, &[])
    }

    /// As [`Relay::start`], with extra arguments.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Relay {
        Self::start_on(data_dir, 0, extra)
    }

    /// As [`Relay::start_with`], on a given loopback port (for restarts at the same address).
    pub fn start_on(data_dir: &Path, port: u16, extra: &[&str]) -> Relay {
        Self::start_env(data_dir, port, extra, &[])
    }

    /// As [`Relay::start_on`], with extra environment variables (e.g. a shifted clock from
    /// [`crate::faketime::FakeTime::env`]).
    pub fn start_env(
        data_dir: &Path,
        port: u16,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Relay {
        let listen = format!("127.0.0.1:{port}");
        let log_path = data_dir.with_extension("stderr.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(crate::bin_path("tessera-relay"))
            .args(["--listen", &listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let process = Guard::new("tessera-relay", child);

        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("metrics address: ") {
                    let _ = tx.send(format!("metrics {addr}"));
                }
                if let Some(addr) = line.strip_prefix("turn address: ") {
                    let _ = tx.send(format!("turn {addr}"));
                }
                if let Some(addr) = line.strip_prefix("relay address: ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let mut metrics = None;
        let mut turn = None;
        let text = loop {
            let Ok(text) = rx.recv_timeout(Duration::from_secs(30)) else {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("the relay printed no address within 30 s; its log:\n{log}");
            };
            if let Some(m) = text.strip_prefix("metrics ") {
                metrics = Some(m.to_string());
            } else if let Some(t) = text.strip_prefix("turn ") {
                turn = Some(t.to_string());
            } else {
                break text;
            }
        };
        let address = text
            .parse()
            .unwrap_or_else(|e| panic!("unparseable address {text:?}: {e}"));
        Relay {
            address,
            data_dir: data_dir.to_path_buf(),
            metrics,
            turn,
            process,
        }
    }
}

impl Relay {
    /// Starts a relay whose config file holds `toml` (written next to the data directory),
    /// with `/metrics` on a free loopback port.
    pub fn start_configured(data_dir: &Path, toml: &str) -> Relay {
        let config = data_dir.with_extension("toml");
        std::fs::write(&config, toml).unwrap();
        let config = config.to_str().unwrap().to_string();
        Self::start_with(
            data_dir,
            &["--config", &config, "--metrics-listen", "127.0.0.1:0"],
        )
    }

    /// The `/metrics` text.
    pub fn metrics_text(&self) -> String {
        let url = self
            .metrics
            .as_ref()
            .expect("started with --metrics-listen");
        ureq::get(url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    }

    /// One sample from `/metrics` (a line `NAME VALUE`).
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }
}

/// Runs the relay binary to completion with `args` (for bad-input checks), with a time limit.
pub fn run_relay(args: &[&str]) -> Output {
    let mut child = Command::new(crate::bin_path("tessera-relay"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut s);
        s
    });
    let mut guard = Guard::new("tessera-relay", child);
    let Some(status) = guard.wait_timeout(Duration::from_secs(30)) else {
        panic!("tessera-relay {args:?} did not exit within 30 s");
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}
