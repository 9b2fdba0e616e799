//! Local-mode test support: throw-away data directories for the SQLite store, and helpers that
//! drive the real `gemini-hooks` binary (one-shot commands and a running `dev` process).

use std::path::{Path, PathBuf};

/// A fresh directory under the system temp dir, removed (with its contents) on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/gemini-hooks-<label>-<uuid>`.
    pub fn new(label: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("gemini-hooks-{label}-{}", uuid::Uuid::new_v4()));
        if let Err(e) = std::fs::create_dir_all(&path) {
            panic!("cannot create temp dir {}: {e}", path.display());
        }
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Driving the real `gemini-hooks` binary.
// ---------------------------------------------------------------------------------------------

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a `dev` process may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `gemini-hooks` binary with an empty environment plus `env`, so a developer's own
/// `WEBHOOK_SIGNING_SECRETS` or `GEMINI_API_KEY` can never leak into a test.
pub fn cli_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(crate::bins::bin_path("gemini-hooks"));
    cmd.args(args).env_clear().kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Panics with both streams unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `gemini-hooks <args>` to completion (60 s at most).
pub async fn run_cli(args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let mut cmd = cli_command(args, env);
    cmd.stdin(Stdio::null());
    let output = match tokio::time::timeout(Duration::from_secs(60), cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => panic!("cannot run gemini-hooks {args:?}: {e}"),
        Err(_) => panic!("gemini-hooks {args:?} did not finish within 60 s"),
    };
    CliOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// AWS variables the CLI needs to reach moto (it runs with an otherwise empty environment).
const AWS_VARS: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_EC2_METADATA_DISABLED",
];

/// [`run_cli`] with this process's AWS variables (pointing at moto), for `--stack`/`--aws`.
pub async fn run_cli_aws(args: &[&str]) -> CliOutput {
    let env: Vec<(&str, String)> = AWS_VARS
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v)))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_cli(args, &env).await
}

/// A running `gemini-hooks dev`; killed when dropped.
pub struct DevServer {
    child: Child,
    /// `http://127.0.0.1:<port>/`
    pub url: String,
    /// The lines it printed on start (store, verifying, consumer…).
    pub banner: String,
    log: PathBuf,
}

impl DevServer {
    /// Starts `gemini-hooks dev --addr 127.0.0.1:0 --data-dir <dir> <args>` and waits for its
    /// address. Its log (stderr) goes to `<dir>/<log_name>`.
    pub async fn start(dir: &Path, log_name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_at("127.0.0.1:0", dir, log_name, args, env).await
    }

    /// Like [`Self::start`], listening on `addr` (`HOST:PORT`).
    pub async fn start_at(
        addr: &str,
        dir: &Path,
        log_name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let data_dir = dir.to_string_lossy().into_owned();
        let mut all = vec!["dev", "--addr", addr, "--data-dir", data_dir.as_str()];
        all.extend_from_slice(args);
        let log = dir.join(log_name);
        if let Err(e) = std::fs::create_dir_all(dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        let log_file = match std::fs::File::create(&log) {
            Ok(f) => f,
            Err(e) => panic!("cannot create {}: {e}", log.display()),
        };
        let mut cmd = cli_command(&all, env);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start gemini-hooks dev: {e}"),
        };
        let Some(stdout) = child.stdout.take() else {
            panic!("dev has no stdout pipe");
        };
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = String::new();
        let deadline = Instant::now() + START_TIMEOUT;
        let url = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, lines.next_line()).await {
                Ok(Ok(Some(l))) => {
                    banner.push_str(&l);
                    banner.push('\n');
                    if let Some(rest) = l.split("listening on ").nth(1) {
                        break rest.trim().to_owned();
                    }
                }
                other => panic!(
                    "gemini-hooks dev did not start ({other:?})\n--- stdout\n{banner}\n--- log\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        };
        // The rest of the banner, then keep draining so the pipe never fills.
        for _ in 0..4 {
            if let Ok(Ok(Some(l))) =
                tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
            {
                banner.push_str(&l);
                banner.push('\n');
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            url,
            banner,
            log,
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it without warning (SIGKILL), like a crash or a power cut.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// Asks it to stop (SIGTERM, by pid) and returns its exit code.
    pub async fn terminate(mut self) -> i32 {
        let Some(pid) = self.child.id() else {
            panic!("dev already exited");
        };
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(status)) => status.code().unwrap_or(-1),
            other => panic!("dev did not stop after SIGTERM: {other:?}\n{}", self.log()),
        }
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
