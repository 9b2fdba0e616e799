//! The WebhookService client against the fake Gemini server: wire format, paging, the
//! enum-spelling fallback, and no blind retries of calls that must not run twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gemini_hooks::adapters::gemini::webhooks::SUBSCRIBABLE_EVENTS;
use gemini_hooks::adapters::gemini::{
    GeminiSettings, NewWebhook, RetryPolicy, RevocationBehavior, WebhookClient, WebhookState,
};
use gemini_hooks::domain::verify::standard::SigningSecret;
use gemini_hooks::ports::gemini::GeminiError;
use gemini_hooks_tests::fake_gemini::{EnumCase, FakeGemini, Fault};
use serde_json::{Value, json};

fn client(fake: &FakeGemini) -> WebhookClient {
    let settings = GeminiSettings {
        base_url: fake.base_url(),
        api_key: FakeGemini::API_KEY.into(),
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
        },
        request_timeout: Duration::from_millis(500),
    };
    WebhookClient::new(settings, reqwest::Client::new())
}

fn new_hook(uri: &str) -> NewWebhook {
    NewWebhook {
        uri: uri.to_owned(),
        subscribed_events: vec!["batch.succeeded".into(), "batch.failed".into()],
        name: Some("prod".into()),
    }
}

fn body(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn create_sends_snake_case_and_returns_the_once_only_secret() {
    let fake = FakeGemini::start().await;
    let c = client(&fake);
    let created = c
        .create(&new_hook("https://example.com/hook"))
        .await
        .unwrap();
    let secret = created.secret.clone().expect("a secret");
    let held = fake.webhook(&created.webhook.id).unwrap();
    assert_eq!(secret.expose(), held.secrets[0].secret);
    SigningSecret::parse(secret.expose()).unwrap();
    assert!(!format!("{created:?}").contains(secret.expose()));
    assert_eq!(created.webhook.state, Some(WebhookState::Enabled));
    assert_eq!(
        created.webhook.subscribed_events,
        ["batch.succeeded", "batch.failed"]
    );
    assert!(!created.webhook.extra.contains_key("new_signing_secret"));

    let sent = body(&fake.request_bodies_to("/v1/webhooks")[0]);
    assert_eq!(
        sent,
        json!({"uri": "https://example.com/hook", "subscribed_events": ["batch.succeeded", "batch.failed"], "name": "prod"})
    );
    assert!(fake.requests().iter().all(|r| r.authorized));
}

#[tokio::test]
async fn list_all_follows_page_tokens() {
    let fake = FakeGemini::start().await;
    fake.set_webhook_page_size(2);
    let c = client(&fake);
    for i in 0..5 {
        c.create(&new_hook(&format!("https://example.com/{i}")))
            .await
            .unwrap();
    }
    let all = c.list_all().await.unwrap();
    assert_eq!(all.len(), 5);
    let mut uris: Vec<_> = all.iter().map(|w| w.uri.clone()).collect();
    uris.sort();
    assert_eq!(uris[0], "https://example.com/0");
    let lists = fake.requests_to("/v1/webhooks?");
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert!(lists[1].path.contains("page_token=after-2"), "{lists:?}");
    // Every subscribable event is accepted by the fake (the CLI's default list).
    let mut all_events = new_hook("https://example.com/all");
    all_events.subscribed_events = SUBSCRIBABLE_EVENTS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    c.create(&all_events).await.unwrap();
}

#[tokio::test]
async fn rotation_keeps_or_revokes_the_old_secret() {
    let fake = FakeGemini::start().await;
    let c = client(&fake);
    let id = c.create(&new_hook("https://e/x")).await.unwrap().webhook.id;

    let r = c
        .rotate_signing_secret(&id, RevocationBehavior::AfterH24)
        .await
        .unwrap();
    assert!(!r.upper_case_enum);
    let held = fake.webhook(&id).unwrap();
    assert_eq!(held.secrets.len(), 2);
    assert!(held.secrets[0].expire_time.is_some());
    assert_eq!(held.secrets[1].secret, r.secret.expose());
    let sent = fake.request_bodies_to(":rotateSigningSecret");
    assert_eq!(
        body(&sent[0]),
        json!({"revocation_behavior": "revoke_previous_secrets_after_h24"})
    );
    let got = c.get(&format!("webhooks/{id}")).await.unwrap();
    assert_eq!(got.signing_secrets.len(), 2);
    assert!(got.signing_secrets[0].expire_time.is_some());

    let r2 = c
        .rotate_signing_secret(&id, RevocationBehavior::Immediately)
        .await
        .unwrap();
    let held = fake.webhook(&id).unwrap();
    assert_eq!(held.secrets.len(), 1);
    assert_eq!(held.secrets[0].secret, r2.secret.expose());
}

#[tokio::test]
async fn upper_case_enum_is_tried_only_after_a_400_naming_the_field() {
    let fake = FakeGemini::start().await;
    let c = client(&fake);
    let id = c.create(&new_hook("https://e/x")).await.unwrap().webhook.id;
    fake.set_webhook_enum_case(EnumCase::Upper);

    let r = c
        .rotate_signing_secret(&id, RevocationBehavior::AfterH24)
        .await
        .unwrap();
    assert!(r.upper_case_enum);
    let sent = fake.request_bodies_to(":rotateSigningSecret");
    assert_eq!(sent.len(), 2);
    assert_eq!(
        body(&sent[1]),
        json!({"revocation_behavior": "REVOKE_PREVIOUS_SECRETS_AFTER_H24"})
    );
    assert_eq!(fake.webhook(&id).unwrap().secrets.len(), 2, "rotated once");

    // The same rule for `state` on enable.
    fake.set_webhook_state(&id, "disabled_due_to_failed_deliveries");
    let w = c.enable(&id).await.unwrap();
    assert_eq!(w.state, Some(WebhookState::Enabled));
    assert_eq!(fake.request_bodies_to("update_mask=state").len(), 2);

    // A 400 about something else is not retried.
    fake.clear_requests();
    fake.inject(":rotateSigningSecret", vec![Fault::Status(400)]);
    let err = c
        .rotate_signing_secret(&id, RevocationBehavior::AfterH24)
        .await
        .unwrap_err();
    assert!(
        matches!(err, GeminiError::Fatal { status: 400, .. }),
        "{err:?}"
    );
    assert_eq!(fake.requests_to(":rotateSigningSecret").len(), 1);
}

#[tokio::test]
async fn lowercase_only_server_needs_one_call() {
    let fake = FakeGemini::start().await;
    fake.set_webhook_enum_case(EnumCase::Lower);
    let c = client(&fake);
    let id = c.create(&new_hook("https://e/x")).await.unwrap().webhook.id;
    let r = c
        .rotate_signing_secret(&id, RevocationBehavior::Immediately)
        .await
        .unwrap();
    assert!(!r.upper_case_enum);
    assert_eq!(fake.requests_to(":rotateSigningSecret").len(), 1);
}

#[tokio::test]
async fn create_and_rotate_are_not_retried_after_an_unclear_outcome() {
    let fake = FakeGemini::start().await;
    let c = client(&fake);
    fake.inject("/v1/webhooks", vec![Fault::Status(503)]);
    let err = c.create(&new_hook("https://e/x")).await.unwrap_err();
    assert!(matches!(err, GeminiError::Unconfirmed { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(fake.requests_to("/v1/webhooks").len(), 1);

    // 429 means "not done": retried, and registered exactly once.
    fake.clear_requests();
    fake.inject("/v1/webhooks", vec![Fault::Status(429)]);
    let id = c.create(&new_hook("https://e/y")).await.unwrap().webhook.id;
    assert_eq!(fake.requests_to("/v1/webhooks").len(), 2);
    assert_eq!(fake.webhooks().len(), 1);

    // A timeout on rotate is unclear too.
    fake.clear_requests();
    fake.inject(
        ":rotateSigningSecret",
        vec![Fault::Delay(Duration::from_secs(2))],
    );
    let err = c
        .rotate_signing_secret(&id, RevocationBehavior::AfterH24)
        .await
        .unwrap_err();
    assert!(matches!(err, GeminiError::Unconfirmed { .. }), "{err:?}");
    assert_eq!(fake.requests_to(":rotateSigningSecret").len(), 1);

    // Reads are retried as usual.
    fake.clear_requests();
    fake.inject(&format!("/v1/webhooks/{id}"), vec![Fault::Status(503)]);
    c.get(&id).await.unwrap();
    assert_eq!(fake.requests_to(&format!("/v1/webhooks/{id}")).len(), 2);
}

#[tokio::test]
async fn ping_delete_and_not_found() {
    let fake = FakeGemini::start().await;
    let c = client(&fake);
    let id = c.create(&new_hook("https://e/x")).await.unwrap().webhook.id;
    c.ping(&id).await.unwrap();
    assert_eq!(fake.webhook(&id).unwrap().pings, 1);
    c.delete(&id).await.unwrap();
    assert!(fake.webhook(&id).is_none());
    let err = c.get(&id).await.unwrap_err();
    assert!(matches!(err, GeminiError::NotFound { .. }), "{err:?}");
    assert!(matches!(
        c.ping("../batches/x").await.unwrap_err(),
        GeminiError::Invalid(_)
    ));
}
