//! Child processes that are stopped when the test ends, however it ends.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Guard {
    name: String,
    child: Option<Child>,
}

impl Guard {
    /// Takes ownership of a spawned child.
    pub fn new(name: &str, child: Child) -> Self {
        Self {
            name: name.to_string(),
            child: Some(child),
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`) with the system `kill` command.
    pub fn signal(&self, signal: &str) {
        let _ = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Waits for the child to exit, at most `timeout`; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` and waits for the exit status (panics if the child ignores it for 20 s).
    pub fn stop_with(&mut self, signal: &str) -> ExitStatus {
        self.signal(signal);
        match self.wait_timeout(Duration::from_secs(20)) {
            Some(status) => status,
            None => panic!("{} did not stop within 20 s of SIG{signal}", self.name),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("TERM");
            if self.wait_timeout(Duration::from_secs(5)).is_none()
                && let Some(child) = self.child.as_mut()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
