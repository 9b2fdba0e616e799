//! The flags of `gemini-hooks send`.

use std::path::PathBuf;

use clap::Args;

use crate::support::args::{DEFAULT_URL, DataDirArg, LOCAL_AUDIENCE};

pub const LONG_ABOUT: &str = "\
Build a delivery the way Gemini sends it, sign it and POST it.

The body is a built-in sample for the event type (or --body FILE, sent byte for byte). Static
signing (the default) uses the first secret of --secret / WEBHOOK_SIGNING_SECRETS; --dynamic signs
an RS256 JWT with a local RSA key (--key FILE, or one generated in the data directory; its JWKS is
printed by `gemini-hooks jwks` and served by `gemini-hooks dev --local-jwks`). The token carries
`iat`, `exp`, `jti` and `aud` (--audience) but, as Gemini documents it, no digest of the body
unless --bind-body asks for one.

Exit status: 0 when every answer is 2xx, 1 otherwise (including the deliberate failures), 2 on
usage errors.

The failure options build deliveries that a correct receiver must refuse, so you can watch it
happen: --wrong-signature (401), --stale-timestamp 600 (401), --duplicate (the second answer is
`duplicate`).";

#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// Event type: batch.succeeded, batch.failed, batch.cancelled, batch.expired,
    /// interaction.requires_action, interaction.completed, interaction.failed,
    /// interaction.cancelled, video.generated, or any other string (sent with empty data).
    #[arg(default_value = "batch.succeeded", value_name = "EVENT_TYPE")]
    pub event_type: String,

    /// Job id put in `data.id` of the sample body (default: a random sample id).
    #[arg(long, value_name = "ID")]
    pub job: Option<String>,

    /// Send this file as the body, byte for byte, instead of a sample ("-" reads stdin).
    #[arg(long, value_name = "FILE")]
    pub body: Option<PathBuf>,

    /// JSON object put in `data.user_metadata` of the sample body (e.g. '{"job_group":"exp"}').
    #[arg(long, value_name = "JSON")]
    pub user_metadata: Option<String>,

    /// Where to POST: the local `dev` server or a deployed function URL.
    #[arg(long, default_value = DEFAULT_URL)]
    pub url: String,

    /// Static signing secret(s), comma separated; the first one signs. Default: the
    /// WEBHOOK_SIGNING_SECRETS environment variable.
    #[arg(long, value_name = "WHSEC")]
    pub secret: Option<String>,

    /// Sign as a dynamic webhook: an RS256 JWT in `webhook-signature`.
    #[arg(long)]
    pub dynamic: bool,

    /// With --dynamic: also put the body's SHA-256 in the token (`body_sha256`), binding the
    /// body to the signature. Gemini documents no such claim, so by default there is none.
    #[arg(long)]
    pub bind_body: bool,

    /// RSA private key (PEM) for --dynamic; default: the data directory's key, created if missing.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// `kid` of the JWT header (default: the key's RFC 7638 thumbprint).
    #[arg(long)]
    pub kid: Option<String>,

    /// `aud` claim of the JWT (what `dev --local-jwks` accepts by default).
    #[arg(long, default_value = LOCAL_AUDIENCE)]
    pub audience: String,

    /// `iss` claim of the JWT.
    #[arg(long)]
    pub issuer: Option<String>,

    /// The `webhook-id` (default: a fresh `msg_…` id).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,

    /// Send the same delivery twice, as a Gemini retry would (same id and body, new timestamp).
    #[arg(long)]
    pub duplicate: bool,

    /// Date the delivery SECS seconds in the past (correctly signed; outside the window if
    /// SECS is larger than the receiver's tolerance).
    #[arg(long, value_name = "SECS")]
    pub stale_timestamp: Option<u64>,

    /// Sign with a random secret (or key) instead of the configured one.
    #[arg(long)]
    pub wrong_signature: bool,

    /// Print the delivery (headers, blank line, body) instead of sending it.
    #[arg(long)]
    pub dry_run: bool,

    /// Also write the delivery to DIR/headers.txt and DIR/body (for `verify`).
    #[arg(long, value_name = "DIR")]
    pub capture: Option<PathBuf>,

    /// Seconds to wait for the answer.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,

    #[command(flatten)]
    pub data: DataDirArg,
}
