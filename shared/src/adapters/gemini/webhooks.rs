//! Gemini WebhookService client (docs/gemini.md §7): register, list, read, enable, delete and
//! ping project-level webhooks, and rotate their signing secret.
//!
//! Wire format is snake_case under `/v1/webhooks`, authenticated with `x-goog-api-key`, and
//! shares the Batch client's retry policy and error classes. Two documented contradictions are
//! settled here:
//! - Rotation uses the SDK path `POST /v1/webhooks/{id}:rotateSigningSecret`, not the docs'
//!   `/rotate_secret` (the SDKs are generated from the API spec).
//! - Enum values are sent lowercase like the SDKs (`revoke_previous_secrets_after_h24`,
//!   `enabled`). If the server answers 400 naming that field, the call is repeated once with the
//!   UPPER spelling the docs samples use. A 400 means the request was refused, so repeating even
//!   a rotation cannot rotate twice.

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{WEBHOOKS_PATH, check_resource_id};
use super::http::Replay;
pub use super::webhook_model::*;
use super::{GeminiClient, GeminiSettings};
use crate::ports::gemini::GeminiError;

/// Page size asked for when listing every webhook.
const LIST_PAGE_SIZE: u32 = 50;
/// Pages [`WebhookClient::list_all`] follows at most, so a server that keeps returning a
/// token cannot loop forever.
const MAX_LIST_PAGES: usize = 100;

/// WebhookService client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    gemini: GeminiClient,
}

impl WebhookClient {
    pub fn new(settings: GeminiSettings, http: reqwest::Client) -> Self {
        Self::from_client(GeminiClient::new(settings, http))
    }

    /// Shares an existing client's settings and connection pool.
    pub fn from_client(gemini: GeminiClient) -> Self {
        Self { gemini }
    }

    /// `POST /v1/webhooks`. Not retried after an unclear outcome (that could register twice);
    /// such a failure is [`GeminiError::Unconfirmed`].
    pub async fn create(&self, new: &NewWebhook) -> Result<CreatedWebhook, GeminiError> {
        if new.uri.trim().is_empty() {
            return Err(GeminiError::Invalid("the webhook URI is empty".into()));
        }
        if new.subscribed_events.is_empty() {
            return Err(GeminiError::Invalid("no events to subscribe to".into()));
        }
        let mut body = json!({
            "uri": new.uri.trim(),
            "subscribed_events": new.subscribed_events,
        });
        if let Some(name) = new.name.as_deref().filter(|n| !n.trim().is_empty()) {
            body["name"] = json!(name.trim());
        }
        let url = self.gemini.url(WEBHOOKS_PATH)?;
        let mut v = self
            .gemini
            .call_json(
                Method::POST,
                "create webhook",
                url,
                Some(&body),
                Replay::Unsafe,
            )
            .await?;
        let secret = match v.as_object_mut().and_then(|o| {
            o.remove("new_signing_secret")
                .or_else(|| o.remove("newSigningSecret"))
        }) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(WebhookSecret::new(s)),
            Some(_) => {
                return Err(GeminiError::Decode(
                    "`new_signing_secret` is not a non-empty string".into(),
                ));
            }
        };
        Ok(CreatedWebhook {
            webhook: Webhook::from_value(v)?,
            secret,
        })
    }

    /// `GET /v1/webhooks?page_size=&page_token=`.
    pub async fn list_page(
        &self,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<WebhookPage, GeminiError> {
        let (items, next_page_token) = self.gemini.webhooks_page(page_size, page_token).await?;
        Ok(WebhookPage {
            webhooks: items
                .into_iter()
                .map(Webhook::from_value)
                .collect::<Result<_, _>>()?,
            next_page_token,
        })
    }

    /// Every webhook of the project, following page tokens.
    pub async fn list_all(&self) -> Result<Vec<Webhook>, GeminiError> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = self.list_page(LIST_PAGE_SIZE, token.as_deref()).await?;
            all.extend(page.webhooks);
            match page.next_page_token {
                Some(t) if Some(&t) != token.as_ref() => token = Some(t),
                Some(_) => {
                    return Err(GeminiError::Decode(
                        "the server repeated the same page token".into(),
                    ));
                }
                None => return Ok(all),
            }
        }
        Err(GeminiError::Decode(format!(
            "more than {MAX_LIST_PAGES} pages of webhooks"
        )))
    }

    /// `GET /v1/webhooks/{id}`.
    pub async fn get(&self, id: &str) -> Result<Webhook, GeminiError> {
        let (id, url) = self.resource_url(id, "")?;
        let v = self
            .gemini
            .call_json(Method::GET, &what(&id), url, None, Replay::Safe)
            .await?;
        Webhook::from_value(v)
    }

    /// `PATCH /v1/webhooks/{id}?update_mask=state` with `{"state": …}`.
    pub async fn set_state(&self, id: &str, state: &WebhookState) -> Result<Webhook, GeminiError> {
        let (id, mut url) = self.resource_url(id, "")?;
        url.query_pairs_mut().append_pair("update_mask", "state");
        let v = self
            .with_upper_enum_fallback(
                Method::PATCH,
                &what(&id),
                url,
                ("state", state.as_str()),
                Replay::Safe,
            )
            .await?
            .0;
        Webhook::from_value(v)
    }

    /// Re-enables a webhook, e.g. one Gemini set to `disabled_due_to_failed_deliveries`.
    pub async fn enable(&self, id: &str) -> Result<Webhook, GeminiError> {
        self.set_state(id, &WebhookState::Enabled).await
    }

    /// `DELETE /v1/webhooks/{id}`.
    pub async fn delete(&self, id: &str) -> Result<(), GeminiError> {
        let (id, url) = self.resource_url(id, "")?;
        self.gemini
            .call_json(Method::DELETE, &what(&id), url, None, Replay::Safe)
            .await
            .map(drop)
    }

    /// `POST /v1/webhooks/{id}:ping`: Gemini sends a ping event to the webhook's URI.
    pub async fn ping(&self, id: &str) -> Result<(), GeminiError> {
        let (id, url) = self.resource_url(id, ":ping")?;
        self.gemini
            .call_json(
                Method::POST,
                &what(&id),
                url,
                Some(&json!({})),
                Replay::Safe,
            )
            .await
            .map(drop)
    }

    /// `POST /v1/webhooks/{id}:rotateSigningSecret`. Not retried after an unclear outcome.
    pub async fn rotate_signing_secret(
        &self,
        id: &str,
        behavior: RevocationBehavior,
    ) -> Result<Rotation, GeminiError> {
        let (id, url) = self.resource_url(id, ":rotateSigningSecret")?;
        let (v, upper_case_enum) = self
            .with_upper_enum_fallback(
                Method::POST,
                &what(&id),
                url,
                ("revocation_behavior", behavior.as_str()),
                Replay::Unsafe,
            )
            .await?;
        match v.get("secret").and_then(Value::as_str) {
            Some(s) if !s.trim().is_empty() => Ok(Rotation {
                secret: WebhookSecret::new(s),
                upper_case_enum,
            }),
            _ => Err(GeminiError::Decode(
                "the rotation answer has no `secret`".into(),
            )),
        }
    }

    /// Sends `{field: value}` (a one-field body holding an enum) lowercase, and once more in
    /// UPPER case if the server refuses it with a 400 that names the field. Returns the answer
    /// and whether the UPPER spelling was needed.
    async fn with_upper_enum_fallback(
        &self,
        method: Method,
        what: &str,
        url: reqwest::Url,
        (field, value): (&str, &str),
        replay: Replay,
    ) -> Result<(Value, bool), GeminiError> {
        let lower = json!({ field: value.to_ascii_lowercase() });
        // Sent at most twice, and the second only after a 400 (refused, so nothing happened).
        let first = self
            .gemini
            .call_json(method.clone(), what, url.clone(), Some(&lower), replay)
            .await;
        match first {
            Err(GeminiError::Fatal {
                status: 400,
                ref message,
            }) if names_field(server_part(message, what), field) => {
                tracing::warn!(
                    resource = what,
                    field,
                    "Gemini refused the lowercase enum value; retrying with the UPPER spelling"
                );
                let upper = json!({ field: value.to_ascii_uppercase() });
                self.gemini
                    .call_json(method, what, url, Some(&upper), replay)
                    .await
                    .map(|v| (v, true))
            }
            other => other.map(|v| (v, false)),
        }
    }

    /// The id as typed (`abc`, `webhooks/abc`, or a URL ending in it) → `abc`, and its URL with
    /// `suffix` (`:ping`, …) appended.
    fn resource_url(&self, id: &str, suffix: &str) -> Result<(String, reqwest::Url), GeminiError> {
        let id = normalize_webhook_id(id);
        check_resource_id(&id, "webhooks/")?;
        let url = self.gemini.url(&format!("{WEBHOOKS_PATH}/{id}{suffix}"))?;
        Ok((id, url))
    }
}

fn what(id: &str) -> String {
    format!("webhook {id}")
}

/// `abc`, `webhooks/abc` or `https://…/v1/webhooks/abc[:op|?q]` → `abc`.
pub fn normalize_webhook_id(id: &str) -> String {
    let s = id.trim();
    let tail = s.rsplit_once("webhooks/").map_or(s, |(_, t)| t);
    let end = tail.find(['/', '?', '#', ':']).unwrap_or(tail.len());
    tail[..end].to_owned()
}

/// The server's words in a [`GeminiError::Fatal`] message (`"{what}: {message}"`), so an id
/// that happens to contain a field name is not mistaken for the server naming it.
fn server_part<'a>(message: &'a str, what: &str) -> &'a str {
    message
        .strip_prefix(what)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(message)
}

/// Whether a 400 message is about `field` (snake_case or camelCase, any case).
fn names_field(message: &str, field: &str) -> bool {
    let m = message.to_ascii_lowercase();
    let snake = field.to_ascii_lowercase();
    let flat = snake.replace('_', "");
    m.contains(&snake) || m.contains(&flat)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::domain::verify::standard::{SecretListError, SigningSecret, parse_secret_list};

    fn secret() -> WebhookSecret {
        WebhookSecret::new(SigningSecret::generate().to_whsec())
    }

    #[test]
    fn secret_debug_is_redacted_and_truncation_keeps_four_chars() {
        let s = WebhookSecret::new("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=");
        assert_eq!(format!("{s:?}"), "WebhookSecret(<redacted>)");
        assert_eq!(s.truncated(), "whsec_...ZXQ=");
        assert_eq!(truncate_secret("ab"), "whsec_...ab");
    }

    #[test]
    fn ids_are_normalized_and_checked() {
        assert_eq!(normalize_webhook_id(" abc "), "abc");
        assert_eq!(normalize_webhook_id("webhooks/abc"), "abc");
        assert_eq!(
            normalize_webhook_id("https://generativelanguage.googleapis.com/v1/webhooks/abc:ping"),
            "abc"
        );
        let c = WebhookClient::new(GeminiSettings::new("k"), reqwest::Client::new());
        assert!(c.resource_url("../batches", "").is_err());
        assert!(c.resource_url("", "").is_err());
        assert!(c.resource_url("a b", "").is_err());
        let (_, url) = c.resource_url("webhooks/k0h9", ":ping").unwrap();
        assert_eq!(
            url.as_str(),
            "https://generativelanguage.googleapis.com/v1/webhooks/k0h9:ping"
        );
    }

    #[test]
    fn webhook_parses_snake_and_camel_case_and_keeps_unknown_fields() {
        let w = Webhook::from_value(json!({
            "id": "k0h9",
            "name": "prod",
            "uri": "https://example.com/hook",
            "subscribed_events": ["batch.succeeded"],
            "state": "DISABLED_DUE_TO_FAILED_DELIVERIES",
            "signing_secrets": [{"truncated_secret": "whsec_...3frh", "expire_time": "2026-05-05T00:00:00Z"}],
            "create_time": null,
            "future_field": 7,
        }))
        .unwrap();
        assert_eq!(w.state, Some(WebhookState::DisabledDueToFailedDeliveries));
        assert_eq!(w.signing_secrets.len(), 1);
        assert_eq!(
            w.signing_secrets[0].expire_time.as_deref(),
            Some("2026-05-05T00:00:00Z")
        );
        assert_eq!(w.create_time, None);
        assert_eq!(w.extra.get("future_field"), Some(&json!(7)));
        let out = serde_json::to_value(&w).unwrap();
        assert_eq!(out["state"], "disabled_due_to_failed_deliveries");
        assert_eq!(out["future_field"], 7);

        let camel = Webhook::from_value(json!({
            "name": "webhooks/abc",
            "uri": "u",
            "subscribedEvents": ["batch.failed"],
            "state": "weird",
        }))
        .unwrap();
        assert_eq!(camel.id, "abc");
        assert_eq!(camel.subscribed_events, ["batch.failed"]);
        assert_eq!(camel.state, Some(WebhookState::Other("weird".into())));
        assert!(Webhook::from_value(json!({"uri": 5})).is_err());
    }

    #[test]
    fn field_names_are_found_in_error_messages() {
        assert!(names_field(
            "webhook x: INVALID_ARGUMENT: Invalid value at 'revocation_behavior' (TYPE_ENUM)",
            "revocation_behavior"
        ));
        assert!(names_field(
            "Invalid value at 'revocationBehavior'",
            "revocation_behavior"
        ));
        assert!(!names_field("API key not valid", "revocation_behavior"));
        assert!(names_field("Invalid value at 'webhook.state'", "state"));
        let msg = "webhook mystate: INVALID_ARGUMENT: bad uri";
        assert!(!names_field(server_part(msg, "webhook mystate"), "state"));
    }

    #[test]
    fn append_keeps_old_secrets_first_and_never_duplicates() {
        let (a, b) = (secret(), secret());
        let one = append_secret("", &a).unwrap();
        assert_eq!(one, a.expose());
        let two = append_secret(&format!("{one}\n"), &b).unwrap();
        assert_eq!(two, format!("{},{}", a.expose(), b.expose()));
        assert_eq!(parse_secret_list(&two).unwrap().len(), 2);
        // Storing the same secret again (a re-run) does not grow the list.
        assert_eq!(append_secret(&two, &b).unwrap(), two);
        // Re-appending an older one moves it to the end.
        assert_eq!(
            append_secret(&two, &a).unwrap(),
            format!("{},{}", b.expose(), a.expose())
        );
    }

    #[test]
    fn append_refuses_what_the_receiver_could_not_load() {
        let good = secret();
        assert!(matches!(
            append_secret("not a secret", &good),
            Err(SecretListError::Invalid { index: 1, .. })
        ));
        assert!(matches!(
            append_secret(good.expose(), &WebhookSecret::new("whsec_short")),
            Err(SecretListError::Invalid { index: 2, .. })
        ));
    }

    #[test]
    fn keep_newest_drops_all_but_the_last() {
        let (a, b, c) = (secret(), secret(), secret());
        let list = format!("{}, {} ,{}", a.expose(), b.expose(), c.expose());
        let (kept, dropped) = keep_newest_secret(&list).unwrap();
        assert_eq!(kept, c.expose());
        assert_eq!(dropped, 2);
        assert_eq!(keep_newest_secret(a.expose()).unwrap().1, 0);
        assert!(keep_newest_secret(" , ").is_err());
        assert!(keep_newest_secret("garbage").is_err());
    }

    #[test]
    fn states_read_any_case() {
        assert_eq!(
            WebhookState::from("ENABLED".to_owned()),
            WebhookState::Enabled
        );
        assert_eq!(
            WebhookState::from("STATE_DISABLED".to_owned()),
            WebhookState::Disabled
        );
        assert_eq!(WebhookState::Enabled.to_string(), "enabled");
    }
}
