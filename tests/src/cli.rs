//! Running `tessera-cli` as a user would: one process per command, JSON output.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// One account's CLI: a data directory and a password.
pub struct Cli {
    /// The data directory.
    pub dir: PathBuf,
    /// The password given through `TESSERA_PASSWORD`.
    pub password: String,
    /// Extra environment for every command (e.g. a shifted clock).
    pub env: Vec<(String, String)>,
}

/// What a command printed and how it exited.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status was success.
    pub ok: bool,
    /// The JSON it printed (the last line, for commands that print one object).
    pub json: Value,
    /// Everything it printed on standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Cli {
    /// A CLI for the account in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            password: "correct horse battery".into(),
            env: Vec::new(),
        }
    }

    /// The command, ready to spawn (`--json --data-dir DIR ARGS`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(crate::bin_path("tessera-cli"));
        c.arg("--json")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .env("TESSERA_PASSWORD", &self.password)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c
    }

    /// Runs a command to completion.
    pub fn run(&self, args: &[&str]) -> Outcome {
        let out = self.command(args).output().unwrap();
        if !out.stderr.is_empty() {
            // Kept beside the account for diagnosis (e.g. with TESSERA_LOG in `env`).
            use std::io::Write as _;
            if let Ok(mut log) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.with_extension("stderr.log"))
            {
                let _ = writeln!(log, "$ tessera-cli {}", args.join(" "));
                let _ = log.write_all(&out.stderr);
            }
        }
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let json = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        Outcome {
            ok: out.status.success(),
            json,
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    /// Runs a command that must succeed; returns its JSON.
    pub fn ok(&self, args: &[&str]) -> Value {
        let o = self.run(args);
        assert!(
            o.ok,
            "tessera-cli {args:?} failed:\n{}\n{}",
            o.stdout, o.stderr
        );
        o.json
    }

    /// `init --no-card --transport direct` with the minimum Argon2id cost (tests create many
    /// vaults; the card and Tor have their own tests in `card.rs` and `tor.rs`).
    pub fn init(&self, relay: &str, name: &str) -> Value {
        self.ok(&Self::init_args(
            relay,
            name,
            &["--no-card", "--transport", "direct"],
        ))
    }

    /// The arguments of `init` with the minimum Argon2id cost, then `extra`.
    pub fn init_args<'a>(relay: &'a str, name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "init",
            "--relay",
            relay,
            "--name",
            name,
            "--kdf-memory-mib",
            "19",
        ];
        args.extend_from_slice(extra);
        args
    }

    /// This account's invite text.
    pub fn invite(&self) -> String {
        self.ok(&["invite"])["invite"].as_str().unwrap().to_string()
    }

    /// `sync`, returning the events it printed.
    pub fn sync(&self) -> Vec<Value> {
        self.ok(&["sync"])["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Messages received in `events`, as (contact name, body).
    pub fn messages(events: &[Value]) -> Vec<(String, String)> {
        events
            .iter()
            .filter(|e| e["event"] == "message")
            .map(|e| {
                (
                    e["contact_name"].as_str().unwrap_or_default().to_string(),
                    e["body"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}
