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
        let log_path = data_dir.with_extension("stderr.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(crate::bin_path("tessera-relay"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
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
                if let Some(addr) = line.strip_prefix("relay address: ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let Ok(text) = rx.recv_timeout(Duration::from_secs(30)) else {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("the relay printed no address within 30 s; its log:\n{log}");
        };
        let address = text
            .parse()
            .unwrap_or_else(|e| panic!("unparseable address {text:?}: {e}"));
        Relay {
            address,
            data_dir: data_dir.to_path_buf(),
            process,
        }
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
