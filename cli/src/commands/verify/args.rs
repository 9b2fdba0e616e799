//! The flags of `gemini-hooks verify`.

use std::path::PathBuf;

use clap::Args;
use gemini_hooks::config::{defaults, env};

pub const LONG_ABOUT: &str = "\
Verify a captured delivery offline, and explain the first check that fails in plain words.

Headers come from a file of `Name: value` lines (as captured by a proxy, a request bin or
`send --capture`) and/or flags; the body is read from a file as raw bytes. Secrets come from
--secret or WEBHOOK_SIGNING_SECRETS. For a dynamic (JWT) delivery it prints the token's header
and claims (never its signature), so you can see which `aud` to put in WEBHOOK_JWT_AUDIENCE.

Exit status: 0 verified, 1 not verified, 2 usage error (including unreadable input files).";

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// File of captured headers, one `Name: value` per line (a request line, `#` comments and
    /// everything after the first blank line are ignored), or a JSON object of headers.
    #[arg(long, value_name = "FILE")]
    pub headers: Option<PathBuf>,

    /// A header, `Name: value`; repeatable; overrides the same header from --headers.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub header: Vec<String>,

    /// The `webhook-id` header value.
    #[arg(long)]
    pub id: Option<String>,

    /// The `webhook-timestamp` header value.
    #[arg(long)]
    pub timestamp: Option<String>,

    /// The `webhook-signature` header value.
    #[arg(long)]
    pub signature: Option<String>,

    /// The raw body, exactly as received ("-" reads stdin).
    #[arg(long, value_name = "FILE")]
    pub body: PathBuf,

    /// Signing secret(s), comma or whitespace separated.
    #[arg(
        long,
        env = env::WEBHOOK_SIGNING_SECRETS,
        value_name = "WHSEC",
        hide_env_values = true
    )]
    pub secret: Option<String>,

    /// Replay window in seconds.
    #[arg(
        long,
        env = env::WEBHOOK_TOLERANCE_SECONDS,
        value_name = "SECS",
        default_value_t = defaults::TOLERANCE_SECONDS
    )]
    pub tolerance: u64,

    /// Check the window as if it were this Unix time (seconds), e.g. when the capture was made.
    #[arg(long, value_name = "EPOCH_SECS")]
    pub now: Option<i64>,

    /// Skip the replay-window check (the timestamp is still part of the signed content).
    #[arg(long)]
    pub ignore_timestamp: bool,

    /// JWKS for dynamic (JWT) signatures: a local file.
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,

    /// JWKS for dynamic (JWT) signatures: a URL (default: Gemini's).
    #[arg(long, env = env::WEBHOOK_JWKS_URL, value_name = "URL")]
    pub jwks_url: Option<String>,

    /// Public or private RSA key (PEM) for dynamic signatures, instead of a JWKS.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Required `aud` of dynamic deliveries.
    #[arg(long, env = env::WEBHOOK_JWT_AUDIENCE)]
    pub audience: Option<String>,

    /// Required `iss` of dynamic deliveries.
    #[arg(long, env = env::WEBHOOK_JWT_ISSUER)]
    pub issuer: Option<String>,
}
