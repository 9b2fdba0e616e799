//! The subcommands and flags of `gemini-hooks webhooks`.

use clap::{Args, Subcommand};

pub const LONG_ABOUT: &str = "\
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
