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

    /// Environment for a process that should follow this clock.
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
