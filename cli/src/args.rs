//! Command-line interface (clap derive). Only the shape of the commands lives here; each
//! command's logic is in its own module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Default data directory of `dev`, `results`, `send --dynamic` and `jwks`.
pub const DEFAULT_DATA_DIR: &str = ".gemini-hooks";
/// Default address of `dev` and default target of `send`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9000";
pub const DEFAULT_URL: &str = "http://127.0.0.1:9000/";
/// `aud` of the tokens `send --dynamic` signs, and the audience `dev --local-jwks` accepts
/// unless WEBHOOK_JWT_AUDIENCE says otherwise.
pub const LOCAL_AUDIENCE: &str = "gemini-hooks-local";

const ABOUT: &str = "Receive Google Gemini API webhooks — on AWS, or on your laptop.";

const LONG_ABOUT: &str = "\
Receive Google Gemini API webhooks — on AWS, or on your laptop.

The same code that runs in the receiver and consumer Lambdas runs locally here, with an embedded
SQLite store instead of DynamoDB and SQS. No AWS account is needed.

Start here:
  gemini-hooks demo                  the whole story with sample data, in one command
  gemini-hooks dev                   the pipeline on http://127.0.0.1:9000/ (needs a signing secret)
  gemini-hooks dev --sample-gemini   the same, with a SAMPLE Gemini endpoint instead of a key
  gemini-hooks send batch.succeeded  a signed delivery to it; try --duplicate, --wrong-signature
  gemini-hooks verify --headers h.txt --body body.json
                                     why does this captured delivery fail verification?
  gemini-hooks results               what the consumer stored
  gemini-hooks webhooks create --uri URL
                                     register the receiver with Gemini (prints the secret once)

Configuration comes from the same environment variables as the Lambdas (WEBHOOK_SIGNING_SECRETS,
WEBHOOK_TOLERANCE_SECONDS, WEBHOOK_JWKS_URL, GEMINI_API_KEY, GEMINI_API_BASE_URL, ...).";

#[derive(Debug, Parser)]
#[command(name = "gemini-hooks", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline locally: receiver HTTP server + consumer on an embedded SQLite store.
    #[command(long_about = DEV_ABOUT)]
    Dev(DevArgs),
    /// Build, sign and POST a webhook delivery, including deliberate failures.
    #[command(long_about = SEND_ABOUT)]
    Send(SendArgs),
    /// Verify a captured delivery offline and explain the first check that fails.
    #[command(long_about = VERIFY_ABOUT)]
    Verify(VerifyArgs),
    /// List jobs, result rows and dead letters from the local store.
    Results(ResultsArgs),
    /// Move the local dead letters back to the queue (after fixing what made them fail).
    #[command(long_about = REDRIVE_ABOUT)]
    Redrive(RedriveArgs),
    /// Print the JWKS of the local key that `send --dynamic` signs with.
    Jwks(JwksArgs),
    /// Print a new random `whsec_` signing secret (for local use).
    Secret,
    /// The whole story in one command, with sample data: receive, dedupe, reject, ingest.
    #[command(long_about = DEMO_ABOUT)]
    Demo(DemoArgs),
    /// Register and manage Gemini webhooks: create, list, get, rotate, ping, enable, delete.
    #[command(subcommand, long_about = WEBHOOKS_ABOUT)]
    Webhooks(WebhooksCommand),
}

const DEV_ABOUT: &str = "\
Run the pipeline locally, as one process.

An HTTP server answers exactly like the receiver Lambda's function URL (same verification, same
dedupe rules, same status codes), and the consumer runs in-process against a durable SQLite queue
with visibility timeouts, retries and dead letters. Everything lives in one SQLite file in the
data directory, so queued work survives a restart.

Required: WEBHOOK_SIGNING_SECRETS (or --secret), and GEMINI_API_KEY for the consumer (or
--receive-only, or --sample-gemini). Set GEMINI_API_BASE_URL to use another Gemini-compatible
endpoint. One `dev` per data directory: a second one on the same directory refuses to start.";

const REDRIVE_ABOUT: &str = "\
Move the local dead letters back to the queue, as an SQS redrive does for the deployed DLQ.

A message lands in the dead letters after --max-receive-count failed receives; `gemini-hooks
results --dead-letters` shows why its last receive failed. Fix the cause, then redrive: the
messages go to the end of the queue with a fresh receive count, and a running `gemini-hooks dev`
picks them up within a second (otherwise the next start does). Replays are safe: rows are keyed
by (job, key) and job state only moves forward.";

const SEND_ABOUT: &str = "\
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

const VERIFY_ABOUT: &str = "\
Verify a captured delivery offline, and explain the first check that fails in plain words.

Headers come from a file of `Name: value` lines (as captured by a proxy, a request bin or
`send --capture`) and/or flags; the body is read from a file as raw bytes. Secrets come from
--secret or WEBHOOK_SIGNING_SECRETS. For a dynamic (JWT) delivery it prints the token's header
and claims (never its signature), so you can see which `aud` to put in WEBHOOK_JWT_AUDIENCE.

Exit status: 0 verified, 1 not verified, 2 usage error (including unreadable input files).";

const DEMO_ABOUT: &str = "\
Show the whole story with sample data, in one command, with no AWS account and no Gemini key.

Starts the local pipeline with a freshly generated secret and a fresh data directory, serves
bundled SAMPLE batch results from a local Gemini-compatible endpoint, sends signed
`batch.succeeded` and `batch.failed` deliveries, a duplicate, a forged and a stale one, then
prints what happened to each and the rows the consumer ingested. It never touches the data
directory of `gemini-hooks dev`.";

const WEBHOOKS_ABOUT: &str = "\
Register and manage the project's Gemini webhooks (the WebhookService at
{GEMINI_API_BASE_URL}/v1/webhooks), authenticated with GEMINI_API_KEY (never printed).

`create` and `rotate` print the new `whsec_` signing secret: Gemini shows it only once. With
--store-secret-arn ARN (or --store-secret-name NAME, created if missing) it also goes into AWS
Secrets Manager as the comma-separated list the receiver reads (WEBHOOK_SIGNING_SECRETS format):
`create` writes the new secret alone, `rotate` appends it to the list (Gemini signs with the old
and the new secret for 24 hours), and `prune-secrets` keeps only the newest one after that.
`rotate --immediately` revokes the old secrets at once and stores the new one alone.

Runbook for a webhook Gemini disabled after failed deliveries: fix the endpoint, then
`gemini-hooks webhooks enable ID` and `gemini-hooks webhooks ping ID`.";

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Register a webhook and print its signing secret (shown only once).
    Create(WebhookCreateArgs),
    /// List the project's webhooks.
    List(WebhookListArgs),
    /// Show one webhook: state, events, truncated secrets and when they expire.
    Get(WebhookGetArgs),
    /// Rotate the signing secret and print the new one (shown only once).
    Rotate(WebhookRotateArgs),
    /// Ask Gemini to send a ping event to the webhook's URI.
    Ping(WebhookIdArg),
    /// Re-enable a webhook, e.g. one Gemini disabled after failed deliveries.
    Enable(WebhookIdArg),
    /// Delete a webhook (Gemini stops delivering to it).
    Delete(WebhookIdArg),
    /// Keep only the newest secret in a Secrets Manager secret, after a rotation's 24 h overlap.
    PruneSecrets(PruneSecretsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct WebhookIdArg {
    /// Webhook id (as printed by `create` and `list`; `webhooks/ID` works too).
    #[arg(value_name = "ID")]
    pub id: String,
}

/// Where to store a new secret. Both name the same kind of secret; only the name form creates.
#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
pub struct StoreSecretArgs {
    /// Also store the secret in this existing AWS Secrets Manager secret (ARN or name), the one
    /// the receiver reads through WEBHOOK_SIGNING_SECRETS_ARN.
    #[arg(long, value_name = "ARN")]
    pub store_secret_arn: Option<String>,

    /// Like --store-secret-arn, by name, creating the secret if it does not exist.
    #[arg(long, value_name = "NAME")]
    pub store_secret_name: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct WebhookCreateArgs {
    /// The HTTPS endpoint Gemini delivers to (the receiver's function URL).
    #[arg(long, value_name = "URL")]
    pub uri: String,

    /// Events to subscribe to, comma separated (default: every subscribable event:
    /// batch.succeeded, batch.expired, batch.failed, interaction.requires_action,
    /// interaction.completed, interaction.failed, video.generated).
    #[arg(
        long,
        value_name = "EVENTS",
        value_delimiter = ',',
        default_values = gemini_hooks::adapters::gemini::webhooks::SUBSCRIBABLE_EVENTS,
        hide_default_value = true
    )]
    pub events: Vec<String>,

    /// Display name.
    #[arg(long)]
    pub name: Option<String>,

    #[command(flatten)]
    pub store: StoreSecretArgs,
}

#[derive(Debug, Clone, Args)]
pub struct WebhookListArgs {
    /// Machine-readable JSON (an array of webhooks, as the API returns them).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WebhookGetArgs {
    #[command(flatten)]
    pub id: WebhookIdArg,

    /// Machine-readable JSON (the webhook as the API returns it).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WebhookRotateArgs {
    #[command(flatten)]
    pub id: WebhookIdArg,

    /// Revoke the previous secrets now instead of after 24 hours (after a leak). Deliveries
    /// signed only with an old secret fail until the receiver has the new one.
    #[arg(long)]
    pub immediately: bool,

    #[command(flatten)]
    pub store: StoreSecretArgs,
}

#[derive(Debug, Clone, Args)]
#[group(id = "prune_target", required = true, multiple = false, args = ["arn", "name"])]
pub struct PruneSecretsArgs {
    /// The Secrets Manager secret (ARN or name) holding the list.
    #[arg(long, value_name = "ARN")]
    pub arn: Option<String>,

    /// Same, by name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// Directory of the local store (SQLite file) and the local signing key.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Address the receiver listens on, e.g. 127.0.0.1:9000 or localhost:9000 (port 0 picks
    /// a free port).
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_ADDR)]
    pub addr: String,

    #[command(flatten)]
    pub data: DataDirArg,

    /// Static signing secret(s), comma separated; overrides WEBHOOK_SIGNING_SECRETS.
    #[arg(long, value_name = "WHSEC", hide_env_values = true)]
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
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_receive_count: u32,

    /// Messages handled at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub concurrency: usize,

    /// Log JSON lines (as the Lambdas do) instead of human-readable text.
    #[arg(long)]
    pub log_json: bool,
}

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
        env = "WEBHOOK_SIGNING_SECRETS",
        value_name = "WHSEC",
        hide_env_values = true
    )]
    pub secret: Option<String>,

    /// Replay window in seconds.
    #[arg(
        long,
        env = "WEBHOOK_TOLERANCE_SECONDS",
        value_name = "SECS",
        default_value_t = 300
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
    #[arg(long, env = "WEBHOOK_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,

    /// Public or private RSA key (PEM) for dynamic signatures, instead of a JWKS.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Required `aud` of dynamic deliveries.
    #[arg(long, env = "WEBHOOK_JWT_AUDIENCE")]
    pub audience: Option<String>,

    /// Required `iss` of dynamic deliveries.
    #[arg(long, env = "WEBHOOK_JWT_ISSUER")]
    pub issuer: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ResultsArgs {
    /// Show this job and its rows (e.g. batches/abc; the `batches/` prefix is optional).
    #[arg(long, value_name = "ID")]
    pub job: Option<String>,

    /// Machine-readable JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Most rows to show (0 = all). Default: 50 in a table, all with --json.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// List the dead-lettered queue messages instead.
    #[arg(long)]
    pub dead_letters: bool,

    /// Read the results table of a ROUTES group (its own SQLite file in the data directory).
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,

    #[command(flatten)]
    pub data: DataDirArg,
}

#[derive(Debug, Clone, Args)]
pub struct RedriveArgs {
    /// Only this dead letter (its MESSAGE id in `results --dead-letters`); repeatable.
    /// Default: all of them.
    #[arg(long = "id", value_name = "MESSAGE_ID")]
    pub ids: Vec<String>,

    #[command(flatten)]
    pub data: DataDirArg,
}

#[derive(Debug, Clone, Args)]
pub struct JwksArgs {
    /// RSA private key (PEM); default: the data directory's key, created if missing.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    #[command(flatten)]
    pub data: DataDirArg,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Where to keep the demo's store (default: a fresh temporary directory, never the data
    /// directory of `dev`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address of the demo's receiver (default: a free port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
    pub addr: String,

    /// Show the pipeline's logs (normally only warnings and errors).
    #[arg(short, long)]
    pub verbose: bool,

    /// Log JSON lines instead of human-readable text.
    #[arg(long)]
    pub log_json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
