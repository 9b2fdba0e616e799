//! The flags of `gemini-hooks dev`. Those that stand for an environment variable are layered
//! over it in [`super::config`], so the command reads its configuration the way the Lambdas do.

use clap::Args;
use gemini_hooks::adapters::sqlite::DEFAULT_MAX_RECEIVE_COUNT;

use crate::support::args::{DEFAULT_ADDR, DataDirArg};

pub const LONG_ABOUT: &str = "\
Run the pipeline locally, as one process.

An HTTP server answers exactly like the receiver Lambda's function URL (same verification, same
dedupe rules, same status codes), and the consumer runs in-process against a durable SQLite queue
with visibility timeouts, retries and dead letters. Everything lives in one SQLite file in the
data directory, so queued work survives a restart.

Required: WEBHOOK_SIGNING_SECRETS (or --secret), and GEMINI_API_KEY for the consumer (or
--receive-only, or --sample-gemini). Set GEMINI_API_BASE_URL to use another Gemini-compatible
endpoint. One `dev` per data directory: a second one on the same directory refuses to start.";

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Address the receiver listens on, e.g. 127.0.0.1:9000 or localhost:9000 (port 0 picks
    /// a free port).
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_ADDR)]
    pub addr: String,

    #[command(flatten)]
    pub data: DataDirArg,

    /// Static signing secret(s), comma separated; overrides WEBHOOK_SIGNING_SECRETS.
    #[arg(long, value_name = "WHSEC")]
    pub secret: Option<String>,

    /// Receive and queue only; do not run the consumer (no GEMINI_API_KEY needed). Queued
    /// messages stay in the store for the next run.
    #[arg(long, conflicts_with = "sample_gemini")]
    pub receive_only: bool,

    /// Run the consumer against a local SAMPLE Gemini endpoint (the demo's bundled sample
    /// batches and results file) instead of Google: no GEMINI_API_KEY needed. Every
    /// `batches/sample-…` id is a sample batch (`gemini-hooks send` uses such ids).
    #[arg(long)]
    pub sample_gemini: bool,

    /// Serve the JWKS of the local dynamic-signing key at /.well-known/jwks.json and verify
    /// dynamic deliveries against it (instead of WEBHOOK_JWKS_URL).
    #[arg(long)]
    pub local_jwks: bool,

    /// Seconds a received message stays invisible; long ingests hand over to a continuation
    /// message before this ends, like the consumer Lambda does before its timeout.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub visibility_timeout: u64,

    /// Receives after which a message is moved to the dead letters (SQS maxReceiveCount).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_RECEIVE_COUNT)]
    pub max_receive_count: u32,

    /// POST each finished job's event (the EventBridge event's JSON) to URL, signed Standard
    /// Webhooks style with the data directory's notify secret (printed at start-up), retrying
    /// failed POSTs with backoff.
    #[arg(long, value_name = "URL", conflicts_with = "receive_only")]
    pub notify_url: Option<String>,

    /// Messages handled at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub concurrency: usize,

    /// Log JSON lines (as the Lambdas do) instead of human-readable text.
    #[arg(long)]
    pub log_json: bool,
}
