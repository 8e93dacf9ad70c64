//! Child processes that are always killed at the end of a test, even a failing one.
//!
//! Include with `#[path = "common/process.rs"] mod process;`.
#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, Stdio};

/// A child process killed (SIGKILL) and reaped when dropped, even when a test fails.
pub struct ChildGuard {
    pub child: Option<Child>,
    pub name: String,
}

impl ChildGuard {
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        Self {
            child: Some(child),
            name: name.into(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Send a signal by name (`KILL`, `STOP`, `CONT`) with the system's `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A stopped process must be continued to die promptly on some systems.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .stderr(Stdio::null())
                .status();
        }
        self.kill();
    }
}
