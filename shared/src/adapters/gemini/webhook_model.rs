//! The WebhookService's resources as the CLI sees them (webhooks, states, secrets, rotations)
//! and the stored secret list helpers; the HTTP client is `webhooks.rs`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// The state is parsed once, in the domain, for this client and the reconciler's early warning.
pub use crate::domain::gemini::WebhookState;
use crate::domain::gemini::webhook::webhook_id;
use crate::domain::verify::standard::{SecretListError, SigningSecret, parse_secret_list};
use crate::ports::gemini::GeminiError;

/// Events a webhook can subscribe to, as in the SDK enum since 2026-04-29. The enum is open and
/// the docs still list `batch.cancelled`, so other values are sent as given.
pub const SUBSCRIBABLE_EVENTS: &[&str] = &[
    "batch.succeeded",
    "batch.expired",
    "batch.failed",
    "interaction.requires_action",
    "interaction.completed",
    "interaction.failed",
    "video.generated",
];

/// A once-only `whsec_…` signing secret as Gemini returns it. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into().trim().to_owned())
    }

    /// The secret itself: to print once for the operator, or to store.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `whsec_...abcd`, the form Gemini lists as `truncated_secret`, to compare without
    /// revealing the secret.
    pub fn truncated(&self) -> String {
        truncate_secret(&self.0)
    }

    /// Whether the receiver would accept it as a signing secret.
    pub fn check(&self) -> Result<(), crate::domain::verify::standard::SecretError> {
        SigningSecret::parse(&self.0).map(|_| ())
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// `whsec_...` plus the last four characters.
pub fn truncate_secret(secret: &str) -> String {
    let s = secret.trim();
    let chars: Vec<char> = s.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("whsec_...{tail}")
}

/// One entry of `signing_secrets`: only the truncated form is ever listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningSecretInfo {
    #[serde(
        default,
        alias = "truncatedSecret",
        skip_serializing_if = "Option::is_none"
    )]
    pub truncated_secret: Option<String>,
    /// Set on the previous secret after a rotation with the 24-hour overlap.
    #[serde(default, alias = "expireTime", skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A webhook as the WebhookService returns it (never with its secret: see [`CreatedWebhook`]).
/// Unknown fields are kept in `extra`, so JSON output shows everything the server sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    #[serde(default)]
    pub id: String,
    /// Display name. (In the April 2026 SDK it was `webhooks/{id}`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub uri: String,
    #[serde(default, alias = "subscribedEvents")]
    pub subscribed_events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<WebhookState>,
    #[serde(default, alias = "signingSecrets")]
    pub signing_secrets: Vec<SigningSecretInfo>,
    #[serde(default, alias = "createTime", skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
    #[serde(default, alias = "updateTime", skip_serializing_if = "Option::is_none")]
    pub update_time: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Webhook {
    /// Parses a Webhook resource, taking the id from a `webhooks/{id}` name if `id` is absent.
    pub fn from_value(v: Value) -> Result<Self, GeminiError> {
        let mut w: Self = serde_json::from_value(v)
            .map_err(|e| GeminiError::Decode(format!("not a Webhook resource: {e}")))?;
        w.id = webhook_id(&w.id, w.name.as_deref());
        Ok(w)
    }
}

/// The answer to create: the webhook and its signing secret, which Gemini shows only here.
#[derive(Debug, Clone)]
pub struct CreatedWebhook {
    pub webhook: Webhook,
    /// `None` if the server sent none (then the secret must be rotated to obtain one).
    pub secret: Option<WebhookSecret>,
}

/// What to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    pub uri: String,
    pub subscribed_events: Vec<String>,
    pub name: Option<String>,
}

/// One page of `GET /v1/webhooks`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookPage {
    pub webhooks: Vec<Webhook>,
    /// `None` on the last page.
    pub next_page_token: Option<String>,
}

/// What happens to the previous secrets on rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationBehavior {
    /// Gemini keeps signing with the old and the new secret for 24 hours.
    AfterH24,
    /// Old secrets stop working at once (after a leak).
    Immediately,
}

impl RevocationBehavior {
    /// The lowercase wire value the SDKs send.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AfterH24 => "revoke_previous_secrets_after_h24",
            Self::Immediately => "revoke_previous_secrets_immediately",
        }
    }
}

/// The answer to a rotation.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The new secret, shown only this once.
    pub secret: WebhookSecret,
    /// The server refused the lowercase enum and accepted the UPPER spelling.
    pub upper_case_enum: bool,
}

// ---------------------------------------------------------------------------------------------
// The stored secret list (`WEBHOOK_SIGNING_SECRETS` format: comma separated).
// ---------------------------------------------------------------------------------------------

/// The non-empty entries of a secret list, split like [`parse_secret_list`] does.
pub fn secret_list_entries(text: &str) -> Vec<&str> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .collect()
}

/// `existing` (may be empty) with `new` appended as the last entry, comma separated: during a
/// rotation's overlap the receiver must accept both. An entry equal to `new` is not repeated.
/// Every entry, old and new, must be a valid secret, so the result always loads.
pub fn append_secret(existing: &str, new: &WebhookSecret) -> Result<String, SecretListError> {
    let mut entries = if existing.trim().is_empty() {
        Vec::new()
    } else {
        parse_secret_list(existing)?;
        secret_list_entries(existing)
    };
    new.check().map_err(|source| SecretListError::Invalid {
        index: entries.len() + 1,
        source,
    })?;
    entries.retain(|e| *e != new.expose());
    entries.push(new.expose());
    Ok(entries.join(","))
}

/// Only the last (newest) entry of `existing`, and how many were dropped.
pub fn keep_newest_secret(existing: &str) -> Result<(String, usize), SecretListError> {
    parse_secret_list(existing)?;
    let entries = secret_list_entries(existing);
    match entries.split_last() {
        Some((last, older)) => Ok(((*last).to_owned(), older.len())),
        None => Err(SecretListError::Empty),
    }
}
