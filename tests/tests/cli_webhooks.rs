//! `gemini-hooks webhooks …` as a process, against the fake Gemini WebhookService and (for
//! `--store-secret-*` and `prune-secrets`) Secrets Manager on moto.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_secretsmanager::Client as SecretsClient;
use gemini_hooks::domain::verify::standard::parse_secret_list;
use gemini_hooks_tests::fake_gemini::{EnumCase, FakeGemini};
use gemini_hooks_tests::local::{CliOutput, run_cli};
use gemini_hooks_tests::moto;
use serde_json::{Value, json};

/// AWS variables the CLI needs to reach moto (the CLI runs with an otherwise empty env).
const AWS_VARS: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_EC2_METADATA_DISABLED",
];

struct Gemini {
    fake: FakeGemini,
    base: String,
}

impl Gemini {
    async fn start() -> Self {
        let fake = FakeGemini::start().await;
        let base = fake.base_url();
        Self { fake, base }
    }

    /// `gemini-hooks webhooks <args>` with the fake's URL and key (and the AWS variables).
    async fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_with_key(args, Some(FakeGemini::API_KEY)).await
    }

    async fn cli_with_key(&self, args: &[&str], key: Option<&str>) -> CliOutput {
        let mut all = vec!["webhooks"];
        all.extend_from_slice(args);
        let aws: Vec<(String, String)> = AWS_VARS
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
            .collect();
        let mut env: Vec<(&str, &str)> =
            aws.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.push(("GEMINI_API_BASE_URL", &self.base));
        if let Some(k) = key {
            env.push(("GEMINI_API_KEY", k));
        }
        let out = run_cli(&all, &env).await;
        assert!(
            !out.stdout.contains(FakeGemini::API_KEY) && !out.stderr.contains(FakeGemini::API_KEY),
            "API key printed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        out
    }

    /// Registers a webhook through the CLI; returns its id.
    async fn create(&self, extra: &[&str]) -> (String, CliOutput) {
        let mut args = vec!["create", "--uri", "https://hooks.example.com/gemini"];
        args.extend_from_slice(extra);
        let out = self.cli(&args).await.expect_code(0);
        let id = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("Created webhook "))
            .expect("an id line")
            .trim()
            .to_owned();
        (id, out)
    }

    /// The newest secret Gemini holds for `id`.
    fn newest_secret(&self, id: &str) -> String {
        self.fake
            .webhook(id)
            .expect("webhook")
            .secrets
            .last()
            .expect("a secret")
            .secret
            .clone()
    }
}

/// The `whsec_` secret printed alone on its line (not a truncated `whsec_...` form).
fn printed_secret(out: &CliOutput) -> String {
    let found: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("whsec_") && !l.starts_with("whsec_..."))
        .collect();
    assert_eq!(found.len(), 1, "one secret line expected:\n{}", out.stdout);
    found[0].to_owned()
}

fn json_of(out: &CliOutput) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", out.stdout))
}

async fn secrets_client() -> SecretsClient {
    SecretsClient::new(&moto::sdk_config().await)
}

async fn secret_value(c: &SecretsClient, id: &str) -> String {
    c.get_secret_value()
        .secret_id(id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetSecretValue {id}: {e:?}"))
        .secret_string()
        .expect("a string value")
        .to_owned()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_prints_the_secret_once_and_registers_the_webhook() {
    let g = Gemini::start().await;
    let (id, out) = g
        .create(&["--events", "batch.succeeded,batch.failed", "--name", "prod"])
        .await;
    let secret = printed_secret(&out);
    assert_eq!(secret, g.newest_secret(&id));
    parse_secret_list(&secret).unwrap();
    assert!(out.stdout.contains("ONLY ONCE"), "{}", out.stdout);
    assert!(out.stdout.contains("WEBHOOK_SIGNING_SECRETS"));

    let held = g.fake.webhook(&id).unwrap();
    assert_eq!(held.uri, "https://hooks.example.com/gemini");
    assert_eq!(held.subscribed_events, ["batch.succeeded", "batch.failed"]);
    assert_eq!(held.name.as_deref(), Some("prod"));
    let sent: Value = serde_json::from_str(&g.fake.request_bodies_to("/v1/webhooks")[0]).unwrap();
    assert_eq!(
        sent["subscribed_events"],
        json!(["batch.succeeded", "batch.failed"])
    );
    assert!(g.fake.requests().iter().all(|r| r.authorized));
}

#[tokio::test]
async fn create_subscribes_to_every_event_by_default() {
    let g = Gemini::start().await;
    let (id, _) = g.create(&[]).await;
    let events = g.fake.webhook(&id).unwrap().subscribed_events;
    assert_eq!(events.len(), 7, "{events:?}");
    assert!(events.iter().any(|e| e == "video.generated"));
}

#[tokio::test]
async fn list_and_get_as_table_and_json() {
    let g = Gemini::start().await;
    g.fake.set_webhook_page_size(2);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(g.create(&[]).await.0);
    }
    let secret = g.newest_secret(&ids[0]);

    let out = g.cli(&["list", "--json"]).await.expect_code(0);
    let list = json_of(&out);
    let got: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    for id in &ids {
        assert!(got.contains(&id.as_str()), "{id} missing from {got:?}");
    }
    assert_eq!(got.len(), 3, "all pages read");
    assert!(!out.stdout.contains(&secret), "a full secret was listed");
    assert!(!out.stdout.contains("new_signing_secret"));

    let table = g.cli(&["list"]).await.expect_code(0);
    assert!(table.stdout.starts_with("ID"), "{}", table.stdout);
    for id in &ids {
        assert!(table.stdout.contains(id.as_str()));
    }

    let one = json_of(&g.cli(&["get", &ids[1], "--json"]).await.expect_code(0));
    assert_eq!(one["id"], json!(ids[1]));
    assert_eq!(one["state"], "enabled");
    assert_eq!(one["uri"], "https://hooks.example.com/gemini");
    let truncated = one["signing_secrets"][0]["truncated_secret"]
        .as_str()
        .unwrap();
    assert!(
        g.newest_secret(&ids[1])
            .ends_with(truncated.trim_start_matches("whsec_..."))
    );

    let text = g.cli(&["get", &ids[1]]).await.expect_code(0);
    assert!(text.stdout.contains("whsec_..."), "{}", text.stdout);
    assert!(!text.stdout.contains(&g.newest_secret(&ids[1])));
}

#[tokio::test]
async fn rotate_keeps_the_old_secret_for_24_hours_by_default() {
    let g = Gemini::start().await;
    let (id, created) = g.create(&[]).await;
    let first = printed_secret(&created);

    let out = g.cli(&["rotate", &id]).await.expect_code(0);
    let second = printed_secret(&out);
    assert_ne!(first, second);
    assert_eq!(second, g.newest_secret(&id));
    assert!(out.stdout.contains("24 hours"), "{}", out.stdout);
    assert!(out.stdout.contains("ONLY ONCE"));
    let held = g.fake.webhook(&id).unwrap();
    assert_eq!(held.secrets.len(), 2);
    assert_eq!(held.secrets[0].secret, first);
    assert!(held.secrets[0].expire_time.is_some());
    let sent = g.fake.request_bodies_to(":rotateSigningSecret");
    assert_eq!(
        serde_json::from_str::<Value>(&sent[0]).unwrap(),
        json!({"revocation_behavior": "revoke_previous_secrets_after_h24"})
    );

    let shown = g.cli(&["get", &id]).await.expect_code(0);
    assert!(shown.stdout.contains("expires"), "{}", shown.stdout);
}

#[tokio::test]
async fn rotate_immediately_revokes_the_old_secret() {
    let g = Gemini::start().await;
    let (id, _) = g.create(&[]).await;
    let out = g
        .cli(&["rotate", &id, "--immediately"])
        .await
        .expect_code(0);
    let held = g.fake.webhook(&id).unwrap();
    assert_eq!(held.secrets.len(), 1);
    assert_eq!(printed_secret(&out), held.secrets[0].secret);
    assert!(out.stdout.contains("revoked now"), "{}", out.stdout);
    let sent = g.fake.request_bodies_to(":rotateSigningSecret");
    assert!(
        sent[0].contains("\"revoke_previous_secrets_immediately\""),
        "{sent:?}"
    );
}

#[tokio::test]
async fn rotate_falls_back_to_the_upper_case_enum() {
    let g = Gemini::start().await;
    let (id, _) = g.create(&[]).await;
    g.fake.set_webhook_enum_case(EnumCase::Upper);
    let out = g.cli(&["rotate", &id]).await.expect_code(0);
    assert_eq!(printed_secret(&out), g.newest_secret(&id));
    assert!(out.stderr.contains("UPPER"), "{}", out.stderr);
    let sent = g.fake.request_bodies_to(":rotateSigningSecret");
    assert_eq!(sent.len(), 2);
    assert!(sent[1].contains("REVOKE_PREVIOUS_SECRETS_AFTER_H24"));
    assert_eq!(
        g.fake.webhook(&id).unwrap().secrets.len(),
        2,
        "rotated once"
    );
}

#[tokio::test]
async fn ping_asks_gemini_to_send_a_ping() {
    let g = Gemini::start().await;
    let (id, _) = g.create(&[]).await;
    let out = g.cli(&["ping", &id]).await.expect_code(0);
    assert!(out.stdout.contains("ping"), "{}", out.stdout);
    assert_eq!(g.fake.webhook(&id).unwrap().pings, 1);
    let pings = g.fake.requests_to(":ping");
    assert_eq!(pings.len(), 1);
    assert_eq!(pings[0].method, "POST");
}

#[tokio::test]
async fn enable_after_gemini_disabled_the_webhook() {
    let g = Gemini::start().await;
    let (id, _) = g.create(&[]).await;
    g.fake
        .set_webhook_state(&id, "disabled_due_to_failed_deliveries");

    let shown = g.cli(&["get", &id]).await.expect_code(0);
    assert!(
        shown.stdout.contains("disabled_due_to_failed_deliveries"),
        "{}",
        shown.stdout
    );
    assert!(
        shown
            .stdout
            .contains(&format!("gemini-hooks webhooks enable {id}")),
        "{}",
        shown.stdout
    );

    let out = g.cli(&["enable", &id]).await.expect_code(0);
    assert!(out.stdout.contains("state enabled"), "{}", out.stdout);
    assert_eq!(g.fake.webhook(&id).unwrap().state, "enabled");
    let patches: Vec<_> = g
        .fake
        .requests_to(&format!("/v1/webhooks/{id}"))
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1);
    assert!(
        patches[0].path.ends_with("?update_mask=state"),
        "{patches:?}"
    );
    let body = g.fake.request_bodies_to("update_mask=state");
    assert_eq!(
        serde_json::from_str::<Value>(&body[0]).unwrap(),
        json!({"state": "enabled"})
    );
}

#[tokio::test]
async fn delete_then_get_is_a_clear_not_found() {
    let g = Gemini::start().await;
    let (id, _) = g.create(&[]).await;
    g.cli(&["delete", &id]).await.expect_code(0);
    assert!(g.fake.webhook(&id).is_none());
    let out = g.cli(&["get", &id]).await.expect_code(1);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
    assert!(out.stderr.contains("webhooks list"), "{}", out.stderr);
}

#[tokio::test]
async fn errors_name_the_key_variable_and_the_status() {
    let g = Gemini::start().await;
    let out = g.cli_with_key(&["list"], None).await.expect_code(2);
    assert!(out.stderr.contains("GEMINI_API_KEY"), "{}", out.stderr);
    assert!(g.fake.requests().is_empty(), "no call without a key");

    let wrong = "wrong-key-1234567890";
    let out = g.cli_with_key(&["list"], Some(wrong)).await.expect_code(1);
    assert!(out.stderr.contains("400"), "{}", out.stderr);
    assert!(out.stderr.contains("GEMINI_API_KEY"), "{}", out.stderr);
    assert!(!out.stderr.contains(wrong), "key echoed: {}", out.stderr);

    let out = g
        .cli(&["create", "--uri", "ftp://nope"])
        .await
        .expect_code(2);
    assert!(out.stderr.contains("--uri"), "{}", out.stderr);
    assert!(g.fake.webhooks().is_empty());
}

// --- Secrets Manager (moto) ------------------------------------------------------------------

#[tokio::test]
async fn store_append_and_prune_the_secret_list_in_secrets_manager() {
    let g = Gemini::start().await;
    let sm = secrets_client().await;
    let name = moto::unique_name("gemini-hooks-signing");

    // create --store-secret-name creates the secret with the new secret alone.
    let (id, out) = g.create(&["--store-secret-name", &name]).await;
    let first = printed_secret(&out);
    assert!(out.stdout.contains("created"), "{}", out.stdout);
    assert_eq!(secret_value(&sm, &name).await, first);
    let arn = sm
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();

    // rotate --store-secret-arn appends: the receiver accepts old and new during the overlap.
    let out = g
        .cli(&["rotate", &id, "--store-secret-arn", &arn])
        .await
        .expect_code(0);
    let second = printed_secret(&out);
    assert_eq!(second, g.newest_secret(&id));
    let value = secret_value(&sm, &arn).await;
    assert_eq!(value, format!("{first},{second}"));
    assert_eq!(parse_secret_list(&value).unwrap().len(), 2);
    assert!(out.stdout.contains("prune-secrets"), "{}", out.stdout);

    // prune-secrets keeps only the newest.
    let out = g
        .cli(&["prune-secrets", "--arn", &arn])
        .await
        .expect_code(0);
    assert!(out.stdout.contains("dropped 1"), "{}", out.stdout);
    assert!(!out.stdout.contains(&second), "secret printed by prune");
    let value = secret_value(&sm, &arn).await;
    assert_eq!(value, second);
    assert_eq!(parse_secret_list(&value).unwrap().len(), 1);
    let again = g
        .cli(&["prune-secrets", "--name", &name])
        .await
        .expect_code(0);
    assert!(
        again.stdout.contains("nothing to prune"),
        "{}",
        again.stdout
    );

    // rotate --immediately replaces the list.
    g.cli(&["rotate", &id, "--store-secret-arn", &arn])
        .await
        .expect_code(0);
    let out = g
        .cli(&["rotate", &id, "--immediately", "--store-secret-arn", &arn])
        .await
        .expect_code(0);
    let newest = printed_secret(&out);
    let value = secret_value(&sm, &arn).await;
    assert_eq!(value, newest);
    assert_eq!(parse_secret_list(&value).unwrap().len(), 1);
}

#[tokio::test]
async fn create_into_an_existing_secret_replaces_a_placeholder() {
    let g = Gemini::start().await;
    let sm = secrets_client().await;
    let name = moto::unique_name("gemini-hooks-existing");
    let placeholder = gemini_hooks::domain::verify::standard::SigningSecret::generate().to_whsec();
    let arn = sm
        .create_secret()
        .name(&name)
        .secret_string(&placeholder)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let (_, out) = g.create(&["--store-secret-arn", &arn]).await;
    let secret = printed_secret(&out);
    let value = secret_value(&sm, &arn).await;
    assert_eq!(value, secret);
    parse_secret_list(&value).unwrap();
}

#[tokio::test]
async fn secrets_manager_problems_stop_before_gemini_changes_anything() {
    let g = Gemini::start().await;
    let sm = secrets_client().await;
    let (id, _) = g.create(&[]).await;
    let before = g.newest_secret(&id);

    // No such secret: nothing rotated (a rotation now would strand a once-only secret).
    let missing = format!(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}",
        moto::unique_name("missing")
    );
    let out = g
        .cli(&["rotate", &id, "--store-secret-arn", &missing])
        .await
        .expect_code(1);
    assert!(
        out.stderr.contains("no Secrets Manager secret"),
        "{}",
        out.stderr
    );
    assert!(g.fake.requests_to(":rotateSigningSecret").is_empty());
    assert_eq!(g.newest_secret(&id), before);

    // A stored value the receiver could not load is not appended to.
    let name = moto::unique_name("gemini-hooks-garbage");
    sm.create_secret()
        .name(&name)
        .secret_string("not-a-secret")
        .send()
        .await
        .unwrap();
    let out = g
        .cli(&["rotate", &id, "--store-secret-arn", &name])
        .await
        .expect_code(1);
    assert!(
        out.stderr.contains("valid signing secret list"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("not-a-secret"), "stored value echoed");
    assert!(g.fake.requests_to(":rotateSigningSecret").is_empty());
    assert_eq!(secret_value(&sm, &name).await, "not-a-secret");

    // create with a missing ARN registers nothing.
    let before = g.fake.webhooks().len();
    g.cli(&[
        "create",
        "--uri",
        "https://hooks.example.com/x",
        "--store-secret-arn",
        &missing,
    ])
    .await
    .expect_code(1);
    assert_eq!(g.fake.webhooks().len(), before);
}
