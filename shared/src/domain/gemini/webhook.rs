//! A registered webhook as far as the always-compiled code needs it: its state, parsed once for
//! the CLI's WebhookService client and the reconciler's early warning (docs/gemini.md §7).
//! The WebhookService speaks snake_case; camelCase aliases are read too.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DecodeError;

/// Lifecycle state of a webhook. Read case-insensitively (with or without a `STATE_` prefix);
/// unknown values are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum WebhookState {
    Enabled,
    Disabled,
    /// Gemini stopped delivering after repeated failures; re-enable once the endpoint works.
    DisabledDueToFailedDeliveries,
    Other(String),
}

impl WebhookState {
    /// The lowercase wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::DisabledDueToFailedDeliveries => "disabled_due_to_failed_deliveries",
            Self::Other(s) => s,
        }
    }
}

impl From<String> for WebhookState {
    fn from(s: String) -> Self {
        let lower = s.trim().to_ascii_lowercase();
        match lower.strip_prefix("state_").unwrap_or(&lower) {
            "enabled" => Self::Enabled,
            "disabled" => Self::Disabled,
            "disabled_due_to_failed_deliveries" => Self::DisabledDueToFailedDeliveries,
            _ => Self::Other(s),
        }
    }
}

impl From<WebhookState> for String {
    fn from(s: WebhookState) -> Self {
        s.as_str().to_owned()
    }
}

impl std::fmt::Display for WebhookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The webhook's id: `id` if set, else taken from a `webhooks/{id}` name (the April 2026 SDK's
/// meaning of `name`).
pub fn webhook_id(id: &str, name: Option<&str>) -> String {
    if id.is_empty()
        && let Some(from_name) = name.and_then(|n| n.strip_prefix("webhooks/"))
    {
        return from_name.to_owned();
    }
    id.to_owned()
}

/// What the reconciler reads of a webhook: who it is and whether Gemini still delivers to it.
/// Secrets are never part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSummary {
    pub id: String,
    /// Display name, if the user gave one.
    pub name: Option<String>,
    pub uri: String,
    /// `None` when the server sent none.
    pub state: Option<WebhookState>,
}

impl WebhookSummary {
    /// Reads one entry of `GET /v1/webhooks`. Only a non-object is refused: a field we cannot
    /// read degrades to empty or `None`, so one odd webhook cannot hide the others' states.
    pub fn from_value(v: &Value) -> Result<Self, DecodeError> {
        let Some(o) = v.as_object() else {
            return Err(DecodeError("a webhook is not a JSON object".into()));
        };
        let text = |key: &str| {
            o.get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let name = text("name").map(str::to_owned);
        Ok(Self {
            id: webhook_id(text("id").unwrap_or(""), name.as_deref()),
            name,
            uri: text("uri").unwrap_or("").to_owned(),
            state: text("state").map(|s| WebhookState::from(s.to_owned())),
        })
    }

    /// Gemini stopped delivering to it after repeated failures.
    pub fn is_disabled_by_gemini(&self) -> bool {
        self.state == Some(WebhookState::DisabledDueToFailedDeliveries)
    }

    /// The URI without user info, query or fragment: safe to log even when someone put a token
    /// in it.
    pub fn loggable_uri(&self) -> String {
        loggable_uri(&self.uri)
    }
}

/// `scheme://host/path` of `uri`: user info, query and fragment removed.
pub fn loggable_uri(uri: &str) -> String {
    let s = uri.trim();
    let s = s.find(['?', '#']).map_or(s, |end| &s[..end]);
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn states_parse_in_any_spelling_and_keep_unknown_values() {
        for (raw, want) in [
            ("enabled", WebhookState::Enabled),
            ("ENABLED", WebhookState::Enabled),
            ("STATE_DISABLED", WebhookState::Disabled),
            (
                "disabled_due_to_failed_deliveries",
                WebhookState::DisabledDueToFailedDeliveries,
            ),
            (
                " DISABLED_DUE_TO_FAILED_DELIVERIES ",
                WebhookState::DisabledDueToFailedDeliveries,
            ),
            ("paused", WebhookState::Other("paused".into())),
        ] {
            assert_eq!(WebhookState::from(raw.to_owned()), want, "{raw}");
        }
        assert_eq!(
            WebhookState::DisabledDueToFailedDeliveries.as_str(),
            "disabled_due_to_failed_deliveries"
        );
        let s: WebhookState = serde_json::from_value(json!("STATE_ENABLED")).unwrap();
        assert_eq!(serde_json::to_value(s).unwrap(), json!("enabled"));
    }

    #[test]
    fn summary_reads_what_it_needs_and_tolerates_the_rest() {
        let w = WebhookSummary::from_value(&json!({
            "id": "abc", "name": "nightly", "uri": "https://x.example/hook",
            "state": "disabled_due_to_failed_deliveries",
            "signing_secrets": [{"truncated_secret": "whsec_...abcd"}],
        }))
        .unwrap();
        assert_eq!(w.id, "abc");
        assert_eq!(w.name.as_deref(), Some("nightly"));
        assert!(w.is_disabled_by_gemini());

        // The id from an April-2026 style name; no state; odd field types degrade.
        let w = WebhookSummary::from_value(&json!({"name": "webhooks/k0h9", "uri": 7})).unwrap();
        assert_eq!(
            (w.id.as_str(), w.uri.as_str(), &w.state),
            ("k0h9", "", &None)
        );
        assert!(!w.is_disabled_by_gemini());
        for state in ["enabled", "disabled", "weird"] {
            let w = WebhookSummary::from_value(&json!({"id": "a", "state": state})).unwrap();
            assert!(!w.is_disabled_by_gemini(), "{state}");
        }
        assert!(WebhookSummary::from_value(&json!("abc")).is_err());
    }

    #[test]
    fn loggable_uri_drops_credentials_query_and_fragment() {
        for (raw, want) in [
            (
                "https://abc.lambda-url.us-east-1.on.aws/",
                "https://abc.lambda-url.us-east-1.on.aws/",
            ),
            (
                "https://user:pw@host.example/hook?token=s3cret#frag",
                "https://host.example/hook",
            ),
            ("https://host.example?k=v", "https://host.example"),
            ("not a url?x", "not a url"),
        ] {
            assert_eq!(loggable_uri(raw), want, "{raw}");
        }
    }
}
