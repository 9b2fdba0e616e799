//! Child processes of the benchmark drivers: servers (which print `READY <url> …` and live until
//! their stdin closes) and measured runs (which print one JSON line).
//!
//! Every server and every measured run is a process of its own, so that each measured process's
//! peak RSS (VmHWM) and CPU time are its own: a file server holding hundreds of MB, or a DynamoDB
//! stand-in parsing every request, costs the measured process nothing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::BenchError;

/// A running server child; dropping it closes its stdin (it exits) and reaps it.
pub struct ServerChild {
    what: String,
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
    /// The first word after `READY`: the server's URL.
    pub url: String,
    /// The words after the URL on the `READY` line.
    pub extra: Vec<String>,
}

impl ServerChild {
    /// Starts `exe args…` and waits for its `READY <url> …` line.
    pub fn start(exe: &Path, args: &[&str], what: &str) -> Result<Self, BenchError> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(BenchError::io(format!("cannot start {what}")))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BenchError::Failed(format!("{what} has no stdout")));
        };
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        if let Err(e) = stdout.read_line(&mut line) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BenchError::Io {
                what: format!("reading the READY line of {what}"),
                source: e,
            });
        }
        let mut words = line.split_whitespace().map(str::to_owned);
        let (Some(ready), Some(url)) = (words.next(), words.next()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BenchError::Failed(format!("{what} said `{}`", line.trim())));
        };
        if ready != "READY" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BenchError::Failed(format!("{what} said `{}`", line.trim())));
        }
        Ok(Self {
            what: what.to_owned(),
            child,
            stdout: Some(stdout),
            url,
            extra: words.collect(),
        })
    }

    /// Closes the child's stdin, reads what it prints on the way out (its last JSON line) and
    /// reaps it.
    pub fn finish(mut self) -> Result<Value, BenchError> {
        drop(self.child.stdin.take());
        let mut last = String::new();
        if let Some(stdout) = self.stdout.take() {
            for line in stdout.lines() {
                let line = line.map_err(BenchError::io(format!("reading {}", self.what)))?;
                if line.trim_start().starts_with('{') {
                    last = line;
                }
            }
        }
        let status = self
            .child
            .wait()
            .map_err(BenchError::io(format!("waiting for {}", self.what)))?;
        if !status.success() {
            return Err(BenchError::Failed(format!(
                "{} failed ({status})",
                self.what
            )));
        }
        serde_json::from_str(&last).map_err(|e| {
            BenchError::Failed(format!("{} printed no JSON at the end ({e})", self.what))
        })
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(100));
            if !matches!(self.child.try_wait(), Ok(Some(_))) {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// Runs one measured child to its end and parses the last JSON line it printed.
pub fn measured(mut cmd: Command, what: &str) -> Result<Value, BenchError> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(BenchError::io(format!("cannot start {what}")))?;
    if !out.status.success() {
        return Err(BenchError::Failed(format!(
            "{what} failed ({})",
            out.status
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(last)
        .map_err(|e| BenchError::Failed(format!("{what} printed no JSON result ({e})")))
}

/// Resolves when this process's stdin reaches its end: how a server child learns that the driver
/// no longer needs it.
pub async fn wait_for_stdin_close() -> Result<(), BenchError> {
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    })
    .await
    .map_err(|e| BenchError::Failed(format!("stdin watcher: {e}")))
}
