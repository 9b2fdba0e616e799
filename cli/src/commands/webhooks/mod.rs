//! `gemini-hooks webhooks …`: the WebhookService from the command line. The HTTP and the
//! secret-list rules live in `gemini_hooks::adapters::gemini::webhooks`; this module reads the
//! environment, prints, and stores secrets through [`secrets_manager`].

use std::io::Write;

use gemini_hooks::adapters::gemini::webhooks::SUBSCRIBABLE_EVENTS;
use gemini_hooks::adapters::gemini::{
    DEFAULT_BASE_URL, GeminiSettings, NewWebhook, RevocationBehavior, Webhook, WebhookClient,
    WebhookSecret, WebhookState,
};
use gemini_hooks::config::{Env, env};
use gemini_hooks::ports::gemini::GeminiError;

use crate::support::error::CliError;
use crate::support::output::{line, print_json, table};

mod args;
mod secrets_manager;

pub use args::{
    LONG_ABOUT, PruneSecretsArgs, StoreSecretArgs, WebhookCreateArgs, WebhookGetArgs,
    WebhookListArgs, WebhookRotateArgs, WebhooksCommand,
};
use secrets_manager::{SecretStore, Stored, Target, Update};

/// Runs one `webhooks` subcommand.
pub async fn run(cmd: WebhooksCommand, out: &mut dyn Write) -> Result<(), CliError> {
    if let WebhooksCommand::PruneSecrets(a) = cmd {
        return prune(a, out).await;
    }
    let client = client(&Env::process())?;
    match cmd {
        WebhooksCommand::Create(a) => create(&client, a, out).await,
        WebhooksCommand::List(a) => list(&client, a, out).await,
        WebhooksCommand::Get(a) => get(&client, a, out).await,
        WebhooksCommand::Rotate(a) => rotate(&client, a, out).await,
        WebhooksCommand::Ping(a) => {
            client.ping(&a.id).await.map_err(gemini_error)?;
            line(
                out,
                &format!(
                    "Gemini accepted the ping for webhook {}: it sends a ping event to the \
                     webhook's URI. Look for it in the receiver's logs.",
                    a.id.trim()
                ),
            )
        }
        WebhooksCommand::Enable(a) => {
            let w = client.enable(&a.id).await.map_err(gemini_error)?;
            let state = w.state.as_ref().map_or("unknown", WebhookState::as_str);
            line(
                out,
                &format!("webhook {}: state {state}", shown_id(&w, &a.id)),
            )?;
            line(
                out,
                &format!(
                    "Check the path end to end: gemini-hooks webhooks ping {}",
                    shown_id(&w, &a.id)
                ),
            )
        }
        WebhooksCommand::Delete(a) => {
            client.delete(&a.id).await.map_err(gemini_error)?;
            line(out, &format!("deleted webhook {}", a.id.trim()))
        }
        WebhooksCommand::PruneSecrets(_) => Ok(()),
    }
}

/// The client for `GEMINI_API_BASE_URL` (default: Gemini's) with `GEMINI_API_KEY`.
pub fn client(env: &Env<'_>) -> Result<WebhookClient, CliError> {
    let key = env.required(env::GEMINI_API_KEY).map_err(|e| {
        CliError::Config(
            e,
            Some("create a key at https://aistudio.google.com/apikey and export it".into()),
        )
    })?;
    let mut settings = GeminiSettings::new(key);
    settings.base_url = env.url(env::GEMINI_API_BASE_URL, DEFAULT_BASE_URL)?;
    let http = gemini_hooks::wiring::http_client()
        .map_err(|e| CliError::Http(format!("cannot build the HTTP client: {e}")))?;
    Ok(WebhookClient::new(settings, http))
}

async fn create(
    client: &WebhookClient,
    a: WebhookCreateArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let uri = checked_uri(&a.uri)?;
    let events = checked_events(&a.events)?;
    let store = prepare_store(&a.store, Update::Replace).await?;
    let created = client
        .create(&NewWebhook {
            uri,
            subscribed_events: events,
            name: a.name.clone(),
        })
        .await
        .map_err(gemini_error)?;
    let w = &created.webhook;
    line(out, &format!("Created webhook {}", w.id))?;
    print_details(out, w)?;
    let Some(secret) = created.secret else {
        eprintln!(
            "warning: Gemini returned no signing secret; get one with `gemini-hooks webhooks \
             rotate {} --immediately`",
            w.id
        );
        return Ok(());
    };
    line(out, "")?;
    print_secret(out, &secret)?;
    match store {
        Some((store, target)) => store_secret(out, &store, &target, &secret, Update::Replace).await,
        None => line(
            out,
            "Give it to the receiver as WEBHOOK_SIGNING_SECRETS (or in the Secrets Manager secret \
             named by WEBHOOK_SIGNING_SECRETS_ARN; --store-secret-arn does that).",
        ),
    }
}

async fn list(
    client: &WebhookClient,
    a: WebhookListArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let hooks = client.list_all().await.map_err(gemini_error)?;
    if a.json {
        let v = serde_json::to_value(&hooks)
            .map_err(|e| CliError::Failed(format!("cannot encode webhooks: {e}")))?;
        return print_json(out, &v);
    }
    if hooks.is_empty() {
        return line(
            out,
            "no webhooks (register one with `gemini-hooks webhooks create --uri URL`)",
        );
    }
    let rows: Vec<Vec<String>> = hooks
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.state
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string),
                w.name.clone().unwrap_or_default(),
                w.uri.clone(),
                w.subscribed_events.join(","),
            ]
        })
        .collect();
    table(out, &["ID", "STATE", "NAME", "URI", "EVENTS"], &rows)?;
    for w in &hooks {
        disabled_hint(out, w)?;
    }
    Ok(())
}

async fn get(
    client: &WebhookClient,
    a: WebhookGetArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let w = client.get(&a.id.id).await.map_err(gemini_error)?;
    if a.json {
        let v = serde_json::to_value(&w)
            .map_err(|e| CliError::Failed(format!("cannot encode the webhook: {e}")))?;
        return print_json(out, &v);
    }
    line(out, &format!("webhook  {}", shown_id(&w, &a.id.id)))?;
    print_details(out, &w)?;
    disabled_hint(out, &w)
}

async fn rotate(
    client: &WebhookClient,
    a: WebhookRotateArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (behavior, update) = if a.immediately {
        (RevocationBehavior::Immediately, Update::Replace)
    } else {
        (RevocationBehavior::AfterH24, Update::Append)
    };
    let store = prepare_store(&a.store, update).await?;
    let id = a.id.id.trim();
    let rotation = client
        .rotate_signing_secret(id, behavior)
        .await
        .map_err(|e| match e {
            GeminiError::Unconfirmed { .. } => CliError::Http(format!(
                "{e}\n  hint: if it was applied, its new secret is lost; rotate again (with \
                 --immediately if the old secret must stop working)"
            )),
            e => gemini_error(e),
        })?;
    if rotation.upper_case_enum {
        eprintln!("note: Gemini accepted revocation_behavior only in UPPER case");
    }
    line(out, &format!("Rotated the signing secret of webhook {id}."))?;
    match behavior {
        RevocationBehavior::AfterH24 => line(
            out,
            "The previous secret stays valid for 24 hours; Gemini signs with both until then, so \
             the receiver must accept both (WEBHOOK_SIGNING_SECRETS=old,new).",
        )?,
        RevocationBehavior::Immediately => line(
            out,
            "The previous secrets are revoked now: deliveries fail verification until the \
             receiver has the new secret.",
        )?,
    }
    line(out, "")?;
    print_secret(out, &rotation.secret)?;
    match store {
        Some((store, target)) => {
            store_secret(out, &store, &target, &rotation.secret, update).await?;
            if update == Update::Append {
                line(
                    out,
                    &format!(
                        "After the 24 hours, drop the old secret: gemini-hooks webhooks \
                         prune-secrets --arn {}",
                        target.id()
                    ),
                )?;
            }
            Ok(())
        }
        None => Ok(()),
    }
}

async fn prune(a: PruneSecretsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let id = a
        .arn
        .as_deref()
        .or(a.name.as_deref())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CliError::Usage("give --arn ARN or --name NAME".into()))?;
    let pruned = SecretStore::from_env().await.prune(id).await?;
    if pruned.dropped == 0 {
        line(
            out,
            &format!(
                "{} holds a single secret ({}); nothing to prune",
                pruned.arn, pruned.kept
            ),
        )
    } else {
        line(
            out,
            &format!(
                "{}: kept the newest secret ({}), dropped {} older one(s)",
                pruned.arn, pruned.kept, pruned.dropped
            ),
        )
    }
}

/// Connects to Secrets Manager and checks the target before anything changes at Gemini, so a
/// wrong ARN or missing credentials cannot strand a once-only secret.
async fn prepare_store(
    args: &StoreSecretArgs,
    update: Update,
) -> Result<Option<(SecretStore, Target)>, CliError> {
    let Some(target) = Target::from_store_args(args) else {
        return Ok(None);
    };
    let store = SecretStore::from_env().await;
    store.preflight(&target, update).await?;
    Ok(Some((store, target)))
}

async fn store_secret(
    out: &mut dyn Write,
    store: &SecretStore,
    target: &Target,
    secret: &WebhookSecret,
    update: Update,
) -> Result<(), CliError> {
    // The secret is already on screen: if storing fails, it must not be lost with the error.
    let _ = out.flush();
    let stored: Stored = store.store(target, secret, update).await.map_err(|e| {
        CliError::Failed(format!(
            "{e}\n  the new signing secret printed above was NOT stored; store it by hand"
        ))
    })?;
    let verb = if stored.created {
        "created"
    } else if stored.unchanged {
        "already up to date:"
    } else {
        "updated"
    };
    line(
        out,
        &format!(
            "Secrets Manager: {verb} {} ({} secret(s) in the list). Point the receiver at it \
             with WEBHOOK_SIGNING_SECRETS_ARN.",
            stored.arn, stored.entries
        ),
    )
}

fn print_details(out: &mut dyn Write, w: &Webhook) -> Result<(), CliError> {
    let mut rows: Vec<(&str, String)> = Vec::new();
    if let Some(n) = &w.name {
        rows.push(("name", n.clone()));
    }
    rows.push(("uri", w.uri.clone()));
    rows.push(("events", w.subscribed_events.join(", ")));
    if let Some(s) = &w.state {
        rows.push(("state", s.to_string()));
    }
    if !w.signing_secrets.is_empty() {
        let secrets: Vec<String> = w
            .signing_secrets
            .iter()
            .map(|s| {
                let t = s.truncated_secret.as_deref().unwrap_or("whsec_...");
                match &s.expire_time {
                    Some(e) => format!("{t} (expires {e})"),
                    None => t.to_owned(),
                }
            })
            .collect();
        rows.push(("secrets", secrets.join(", ")));
    }
    if let Some(t) = &w.create_time {
        rows.push(("created", t.clone()));
    }
    if let Some(t) = &w.update_time {
        rows.push(("updated", t.clone()));
    }
    for (k, v) in rows {
        line(out, &format!("  {k:<8} {v}"))?;
    }
    Ok(())
}

/// The once-only secret, alone on its line, between warnings that cannot be missed.
fn print_secret(out: &mut dyn Write, secret: &WebhookSecret) -> Result<(), CliError> {
    line(
        out,
        "Signing secret. It is shown ONLY ONCE: Gemini never shows it again. Store it now:",
    )?;
    line(out, "")?;
    line(out, secret.expose())?;
    line(out, "")
}

fn disabled_hint(out: &mut dyn Write, w: &Webhook) -> Result<(), CliError> {
    if w.state == Some(WebhookState::DisabledDueToFailedDeliveries) {
        line(
            out,
            &format!(
                "note: Gemini disabled webhook {} after failed deliveries. Fix the endpoint, \
                 then: gemini-hooks webhooks enable {}",
                w.id, w.id
            ),
        )?;
    }
    Ok(())
}

fn shown_id<'a>(w: &'a Webhook, typed: &'a str) -> &'a str {
    if w.id.is_empty() { typed.trim() } else { &w.id }
}

/// An absolute http(s) URL; Gemini will want https, but a plain http URL is only warned about.
fn checked_uri(uri: &str) -> Result<String, CliError> {
    let uri = uri.trim();
    match reqwest::Url::parse(uri) {
        Ok(u) if u.scheme() == "https" => Ok(uri.to_owned()),
        Ok(u) if u.scheme() == "http" => {
            eprintln!("warning: {uri} is not https; Gemini may refuse to deliver to it");
            Ok(uri.to_owned())
        }
        Ok(_) => Err(CliError::Usage(format!(
            "--uri must be an https URL, got `{uri}`"
        ))),
        Err(e) => Err(CliError::Usage(format!("--uri is not a URL ({e})"))),
    }
}

/// Trimmed, de-duplicated events; unknown names are sent but warned about.
fn checked_events(events: &[String]) -> Result<Vec<String>, CliError> {
    let mut clean: Vec<String> = Vec::new();
    for e in events.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        if !SUBSCRIBABLE_EVENTS.contains(&e) {
            let hint = match e {
                "batch.completed" => " (did you mean batch.succeeded?)",
                _ => "",
            };
            eprintln!(
                "warning: `{e}` is not one of the subscribable events ({}){hint}; sending it \
                 anyway",
                SUBSCRIBABLE_EVENTS.join(", ")
            );
        }
        if !clean.iter().any(|c| c == e) {
            clean.push(e.to_owned());
        }
    }
    if clean.is_empty() {
        return Err(CliError::Usage("--events is empty".into()));
    }
    Ok(clean)
}

/// A Gemini failure as a CLI error with a next step.
fn gemini_error(e: GeminiError) -> CliError {
    let hint = match &e {
        GeminiError::NotFound { .. } => "list the webhooks with `gemini-hooks webhooks list`",
        GeminiError::Fatal {
            status: 401 | 403, ..
        } => "check GEMINI_API_KEY",
        GeminiError::Fatal { status: 400, .. } if e.to_string().contains("API key") => {
            "check GEMINI_API_KEY"
        }
        GeminiError::Unconfirmed { .. } => {
            "check with `gemini-hooks webhooks list` before trying again"
        }
        GeminiError::Transient { .. } => "Gemini is unavailable or rate-limiting; try again later",
        _ => "",
    };
    if hint.is_empty() {
        CliError::Http(format!("Gemini: {e}"))
    } else {
        CliError::Http(format!("Gemini: {e}\n  hint: {hint}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use gemini_hooks::config::ConfigError;

    #[test]
    fn missing_key_names_the_variable() {
        let env = Env::from_fn(|_| None);
        let err = client(&env).err().unwrap();
        assert!(matches!(
            err,
            CliError::Config(ConfigError::Missing("GEMINI_API_KEY"), _)
        ));
        assert!(err.to_string().contains("GEMINI_API_KEY"), "{err}");
        assert_eq!(err.exit_code(), crate::support::error::EXIT_USAGE);
    }

    #[test]
    fn events_are_cleaned() {
        let got = checked_events(&[
            " batch.succeeded".into(),
            "batch.succeeded".into(),
            "".into(),
            "batch.cancelled".into(),
        ])
        .unwrap();
        assert_eq!(got, ["batch.succeeded", "batch.cancelled"]);
        assert!(checked_events(&["".into()]).is_err());
    }

    #[test]
    fn uris_must_be_http_urls() {
        assert!(checked_uri("https://x.lambda-url.us-east-1.on.aws/").is_ok());
        assert!(checked_uri("http://127.0.0.1:9000/").is_ok());
        assert!(checked_uri("ftp://x/").is_err());
        assert!(checked_uri("not a url").is_err());
    }

    #[test]
    fn secret_is_alone_on_its_line() {
        let s = WebhookSecret::new("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=");
        let mut buf = Vec::new();
        print_secret(&mut buf, &s).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.lines().any(|l| l == s.expose()), "{text}");
        assert!(text.contains("ONLY ONCE"));
    }
}
