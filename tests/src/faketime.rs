//! A shifted wall clock for real processes: libfaketime (Debian's `faketime` package, installed
//! by `scripts/setup`) preloaded into a process, reading its offset from a file the test moves
//! forward. Only the wall clock moves; the monotonic clock (tokio's timers) is left alone.

use std::path::{Path, PathBuf};

/// Where Debian puts the library.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// An offset from real time, shared by every process started with [`FakeTime::env`].
pub struct FakeTime {
    file: PathBuf,
}

impl FakeTime {
    /// A clock file in `dir`, starting at real time.
    pub fn new(dir: &Path) -> Self {
        assert!(
            Path::new(LIBFAKETIME).is_file(),
            "{LIBFAKETIME} is missing: run ./scripts/setup (it installs Debian's faketime)"
        );
        let t = Self {
            file: dir.join("faketime"),
        };
        t.set_days(0);
        t
    }

    /// Sets the offset to `days` days after real time (read by the processes at their next
    /// clock call).
    pub fn set_days(&self, days: u64) {
        // Written to a temporary file and renamed: a reader never sees half a line.
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("+{days}d\n")).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }

    /// Environment for a short-lived process (a CLI command): it reads the offset once, at its
    /// first clock call, and keeps it. With the file read again at every call (see
    /// [`FakeTime::env`]), libfaketime parses it into shared buffers without a lock, and two
    /// threads reading the clock at once can see no offset at all — a CLI process whose clock
    /// jumps back to real time.
    pub fn env_fixed(&self) -> Vec<(String, String)> {
        let mut env = self.env();
        env.retain(|(k, _)| k != "FAKETIME_NO_CACHE");
        env.push(("FAKETIME_CACHE_DURATION".into(), "86400".into()));
        env
    }

    /// Environment for a long-running process that should follow this clock as the test moves
    /// it (the relay).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), LIBFAKETIME.into()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.file.to_string_lossy().into_owned(),
            ),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }
}
