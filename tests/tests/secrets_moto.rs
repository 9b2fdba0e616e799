//! Signing secrets and the Gemini API key from AWS Secrets Manager (`*_ARN` variables), against
//! moto: read at start-up, refreshed after the TTL on an injected clock (rotation without a
//! redeploy), start-up failures naming the variable, and refresh failures that keep serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_secretsmanager::Client as SecretsClient;
use gemini_hooks::config::{ConfigError, ConsumerConfig, Env, ReceiverConfig};
use gemini_hooks::domain::verify::VerifyError;
use gemini_hooks::domain::verify::standard::SigningSecret;
use gemini_hooks::ports::clock::{Clock, ManualClock, SystemClock};
use gemini_hooks::usecases::receive::{Delivery, Receipt, ReceiveError, Receiver};
use gemini_hooks::wiring;
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::delivery::{
    TEST_SECRET, batch_succeeded_body, function_url_event, header_map, signed_headers, test_secret,
};
use gemini_hooks_tests::moto;
use gemini_hooks_tests::runtime_api::{RuntimeApi, spawn_function};

/// Past the default 300 s TTL.
const PAST_TTL_MS: i64 = 301_000;

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

async fn secrets() -> SecretsClient {
    SecretsClient::new(&moto::sdk_config().await)
}

/// Creates a secret holding `value`; returns its ARN.
async fn create_secret(c: &SecretsClient, value: &str) -> String {
    let out = c
        .create_secret()
        .name(moto::unique_name("hooks-secret"))
        .secret_string(value)
        .send()
        .await
        .unwrap();
    out.arn().unwrap().to_owned()
}

async fn put_secret(c: &SecretsClient, arn: &str, value: &str) {
    c.put_secret_value()
        .secret_id(arn)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

fn env_of(pairs: &[(&str, String)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// Only the ARN, the table and the queue: no `WEBHOOK_SIGNING_SECRETS`, no JWKS URL.
async fn receiver_with_arn(arn: &str, clock: &ManualClock) -> Result<Receiver, ConfigError> {
    let ddb = moto::dynamodb().await;
    let sqs = moto::sqs().await;
    let table = moto::unique_name("dedupe");
    moto::create_dedupe_table(&ddb, &table).await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("events"), 5, 30).await;
    let map = env_of(&[
        ("WEBHOOK_SIGNING_SECRETS_ARN", arn.to_owned()),
        ("DEDUPE_TABLE", table),
        ("QUEUE_URL", queue.url),
    ]);
    let config = ReceiverConfig::from_env(&Env::from_fn(|k| map.get(k).cloned()))?;
    wiring::aws_receiver(
        &config,
        &moto::sdk_config().await,
        wiring::http_client().unwrap(),
        wiring::Runtime {
            clock: Arc::new(clock.clone()),
            ids: Arc::new(gemini_hooks::ports::ids::RandomIds),
        },
    )
    .await
}

/// A fresh delivery signed with `secret` at the clock's time.
async fn deliver(
    r: &Receiver,
    clock: &ManualClock,
    secret: &SigningSecret,
) -> Result<Receipt, ReceiveError> {
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let body = batch_succeeded_body(&id);
    let headers = header_map(&signed_headers(secret, &id, clock.now_secs(), &body));
    r.receive(Delivery {
        headers: &headers,
        body: &body,
        deadline_ms: None,
    })
    .await
}

fn assert_accepted(r: Result<Receipt, ReceiveError>, what: &str) {
    assert!(matches!(r, Ok(Receipt::Accepted { .. })), "{what}: {r:?}");
}

fn assert_mismatch(r: Result<Receipt, ReceiveError>, what: &str) {
    assert!(
        matches!(
            r,
            Err(ReceiveError::Verify(
                VerifyError::NoMatchingSignature { .. }
            ))
        ),
        "{what}: {r:?}"
    );
}

#[tokio::test]
async fn receiver_follows_a_rotation_in_secrets_manager_after_the_ttl() {
    let sm = secrets().await;
    let old = test_secret();
    let new = SigningSecret::generate();
    let arn = create_secret(&sm, TEST_SECRET).await;
    let clock = ManualClock::at_secs(now_secs());
    let r = receiver_with_arn(&arn, &clock).await.unwrap();

    assert_accepted(deliver(&r, &clock, &old).await, "stored secret");
    assert_mismatch(deliver(&r, &clock, &new).await, "unknown secret");

    // Rotation with overlap: old and new.
    put_secret(&sm, &arn, &format!("{TEST_SECRET},{}", new.to_whsec())).await;
    assert_mismatch(
        deliver(&r, &clock, &new).await,
        "new secret within the TTL (cached list)",
    );
    clock.advance_ms(PAST_TTL_MS);
    assert_accepted(deliver(&r, &clock, &new).await, "new secret after the TTL");
    assert_accepted(deliver(&r, &clock, &old).await, "old secret during overlap");

    // An invalid list is ignored: the previous one stays in force.
    put_secret(&sm, &arn, "whsec_!!!not-base64!!!").await;
    clock.advance_ms(PAST_TTL_MS);
    assert_accepted(deliver(&r, &clock, &new).await, "after an invalid list");

    // The overlap ends: only the new secret.
    put_secret(&sm, &arn, &new.to_whsec()).await;
    clock.advance_ms(PAST_TTL_MS);
    assert_accepted(deliver(&r, &clock, &new).await, "new secret alone");
    assert_mismatch(deliver(&r, &clock, &old).await, "old secret revoked");

    // Secrets Manager fails (the secret is gone): the last good list keeps serving.
    sm.delete_secret()
        .secret_id(&arn)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    clock.advance_ms(PAST_TTL_MS);
    assert_accepted(deliver(&r, &clock, &new).await, "refresh failed");
    clock.advance_ms(PAST_TTL_MS);
    assert_accepted(deliver(&r, &clock, &new).await, "refresh failed again");
}

#[tokio::test]
async fn missing_or_invalid_signing_secret_at_start_up_names_the_variable() {
    let clock = ManualClock::at_secs(now_secs());
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:does-not-exist-AbCdEf";
    let err = receiver_with_arn(missing, &clock).await.unwrap_err();
    assert!(matches!(err, ConfigError::Secret { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("WEBHOOK_SIGNING_SECRETS_ARN: could not read secret"),
        "{text}"
    );

    let sm = secrets().await;
    let arn = create_secret(&sm, "whsec_!!!not-base64!!!").await;
    let text = receiver_with_arn(&arn, &clock)
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("WEBHOOK_SIGNING_SECRETS_ARN"), "{text}");
    assert!(!text.contains("not-base64"), "{text}");
}

#[tokio::test]
async fn gemini_api_key_is_read_from_its_arn() {
    let sm = secrets().await;
    let arn = create_secret(&sm, "  AIza-test-key\n").await;
    let aws = moto::sdk_config().await;
    let consumer = |arn: &str| {
        let map = env_of(&[
            ("RESULTS_TABLE", "results".to_owned()),
            ("QUEUE_URL", "http://127.0.0.1:1/q".to_owned()),
            ("GEMINI_API_KEY_ARN", arn.to_owned()),
        ]);
        ConsumerConfig::from_env(&Env::from_fn(|k| map.get(k).cloned())).unwrap()
    };
    let clock: gemini_hooks::ports::clock::SharedClock = Arc::new(SystemClock);
    let key = wiring::gemini_api_key(&consumer(&arn).gemini, &aws, Arc::clone(&clock))
        .await
        .unwrap();
    assert_eq!(key.expose(), "AIza-test-key");

    let err = wiring::gemini_api_key(
        &consumer("arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf").gemini,
        &aws,
        clock,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("GEMINI_API_KEY_ARN: could not read secret"),
        "{err}"
    );
}

#[tokio::test]
async fn receiver_binary_started_with_only_the_arn_accepts_a_signed_delivery() {
    let sm = secrets().await;
    let arn = create_secret(&sm, TEST_SECRET).await;
    let ddb = moto::dynamodb().await;
    let sqs = moto::sqs().await;
    let table = moto::unique_name("dedupe");
    moto::create_dedupe_table(&ddb, &table).await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("events"), 5, 30).await;
    let api = RuntimeApi::start().await;
    // As SAM passes it with SigningSecretsArn set and SigningSecrets left empty.
    let env = [
        ("WEBHOOK_SIGNING_SECRETS", String::new()),
        ("WEBHOOK_SIGNING_SECRETS_ARN", arn),
        ("DEDUPE_TABLE", table),
        ("QUEUE_URL", queue.url.clone()),
    ];
    let _function = spawn_function(&bin_path("receiver"), &api, &env).await;

    let body = batch_succeeded_body("arn-e2e");
    let headers = signed_headers(&test_secret(), "msg_arn_e2e", now_secs(), &body);
    let response = api
        .invoke(
            function_url_event("POST", &headers, &body, false),
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|e| panic!("invocation failed: {e}; init error: {:?}", api.init_error()));
    assert_eq!(response["statusCode"].as_u64(), Some(200), "{response}");
    let messages = moto::drain(&sqs, &queue.url).await;
    assert_eq!(messages.len(), 1);
}
