//! The real `receiver` binary, run by a (fake) Lambda Runtime API with the template's
//! environment, answers every row of the HTTP contract for function URL events (text and
//! base64 bodies), against moto.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::delivery::{
    TEST_SECRET, batch_succeeded_body, function_url_event, signed_headers, test_secret,
};
use gemini_hooks_tests::jwt::{JwksServer, KEY_1_PEM, TestSigner};
use gemini_hooks_tests::moto;
use gemini_hooks_tests::runtime_api::{FunctionProcess, RuntimeApi, spawn_function};
use serde_json::{Value, json};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// The audience this receiver's dynamic mode accepts.
const AUD: &str = "https://hooks.example/e2e";

struct Stack {
    api: RuntimeApi,
    _function: FunctionProcess,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    signer: TestSigner,
}

/// Template-shaped environment: every variable the template sets for the receiver, with the
/// template's defaults and empty strings for unset optional parameters (as SAM passes them).
async fn start(max_body: &str) -> Stack {
    let ddb = moto::dynamodb().await;
    let sqs = moto::sqs().await;
    let table = moto::unique_name("dedupe");
    moto::create_dedupe_table(&ddb, &table).await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("events"), 5, 30).await;
    let signer = TestSigner::new("kid-e2e", KEY_1_PEM);
    let jwks = JwksServer::start(&[&signer]).await;
    let api = RuntimeApi::start().await;
    let env = [
        ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
        ("WEBHOOK_TOLERANCE_SECONDS", "300".to_owned()),
        ("WEBHOOK_JWKS_URL", jwks.url().to_owned()),
        ("WEBHOOK_JWT_AUDIENCE", AUD.to_owned()),
        ("WEBHOOK_JWT_MAX_AGE_SECONDS", "86700".to_owned()),
        ("WEBHOOK_JWT_ISSUER", String::new()),
        ("WEBHOOK_MAX_BODY_BYTES", max_body.to_owned()),
        ("DEDUPE_TABLE", table),
        ("DEDUPE_RETENTION_HOURS", "168".to_owned()),
        ("QUEUE_URL", queue.url.clone()),
    ];
    let function = spawn_function(&bin_path("receiver"), &api, &env).await;
    // Keep the JWKS server alive for the test's duration.
    std::mem::forget(jwks);
    Stack {
        api,
        _function: function,
        sqs,
        queue_url: queue.url,
        signer,
    }
}

impl Stack {
    async fn call(&self, event: Value) -> (u16, Value, Value) {
        let response = self
            .api
            .invoke(event, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("invocation failed: {e}"));
        let status = response["statusCode"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(0);
        let body: Value = response["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (status, body, response["headers"].clone())
    }
}

#[tokio::test]
async fn receiver_binary_answers_every_row_of_the_http_contract() {
    let s = start("4096").await;
    let t = now();
    let secret = test_secret();

    // 200 accepted — text body (application/json is not base64-encoded by function URLs).
    let body = batch_succeeded_body("e2e-text");
    let headers = signed_headers(&secret, "msg_e2e_text", t, &body);
    let (status, reply, _) = s
        .call(function_url_event("POST", &headers, &body, false))
        .await;
    assert_eq!(
        (status, reply["status"].as_str()),
        (200, Some("accepted")),
        "{reply}"
    );

    // 200 accepted — base64 body (no content type → function URLs base64-encode it).
    let body = batch_succeeded_body("e2e-b64");
    let mut headers = signed_headers(&secret, "msg_e2e_b64", t, &body);
    headers.retain(|(k, _)| k != "content-type");
    let (status, reply, _) = s
        .call(function_url_event("POST", &headers, &body, true))
        .await;
    assert_eq!(
        (status, reply["status"].as_str()),
        (200, Some("accepted")),
        "{reply}"
    );

    // 200 duplicate — a genuine retry: same id, new timestamp and signature.
    let headers = signed_headers(&secret, "msg_e2e_b64", t + 30, &body);
    let (status, reply, _) = s
        .call(function_url_event("POST", &headers, &body, true))
        .await;
    assert_eq!(
        (status, reply["status"].as_str()),
        (200, Some("duplicate")),
        "{reply}"
    );

    // 200 duplicate — same id, another body: the first delivery stands (a 4xx would only make
    // Gemini retry for a day), nothing is enqueued.
    let other = batch_succeeded_body("e2e-other");
    let headers = signed_headers(&secret, "msg_e2e_b64", t, &other);
    let (status, reply, _) = s
        .call(function_url_event("POST", &headers, &other, false))
        .await;
    assert_eq!(
        (status, reply["status"].as_str()),
        (200, Some("duplicate")),
        "{reply}"
    );

    // 400 — missing header; body not an event.
    let mut headers = signed_headers(&secret, "msg_e2e_400", t, &body);
    headers.retain(|(k, _)| k != "webhook-timestamp");
    let (status, reply, _) = s
        .call(function_url_event("POST", &headers, &body, false))
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("missing_header")),
        "{reply}"
    );
    let junk = b"[1,2,3]".to_vec();
    let headers = signed_headers(&secret, "msg_e2e_junk", t, &junk);
    let (status, reply, _) = s
        .call(function_url_event("POST", &headers, &junk, false))
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid_event")),
        "{reply}"
    );

    // 401 — forged signature, stale timestamp, bad JWT.
    let headers = signed_headers(&secret, "msg_e2e_forged", t, b"something else");
    let (status, _, _) = s
        .call(function_url_event("POST", &headers, &body, false))
        .await;
    assert_eq!(status, 401);
    let headers = signed_headers(&secret, "msg_e2e_stale", t - 3600, &body);
    let (status, reply, _) = s
        .call(function_url_event("POST", &headers, &body, false))
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (401, Some("timestamp_too_old")),
        "{reply}"
    );
    let expired = s
        .signer
        .sign(&json!({"iat": t - 4000, "exp": t - 3600, "aud": AUD}));
    let headers = vec![
        ("webhook-id".to_owned(), "msg_e2e_jwt_old".to_owned()),
        ("webhook-signature".to_owned(), expired),
    ];
    let (status, reply, _) = s
        .call(function_url_event("POST", &headers, &body, false))
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (401, Some("jwt_expired")),
        "{reply}"
    );

    // 200 — a valid dynamic (JWT) delivery through the binary, keys from the local JWKS.
    let token = s
        .signer
        .sign(&json!({"iat": t, "exp": t + 300, "jti": "e2e", "aud": AUD}));
    let headers = vec![("webhook-signature".to_owned(), token)];
    let (status, reply, _) = s
        .call(function_url_event("POST", &headers, &body, false))
        .await;
    assert_eq!(
        (status, reply["status"].as_str()),
        (200, Some("accepted")),
        "{reply}"
    );

    // 413 — over WEBHOOK_MAX_BODY_BYTES (4096 here).
    let big = format!(
        r#"{{"type":"batch.succeeded","data":{{"id":"x","pad":"{}"}}}}"#,
        "p".repeat(5000)
    )
    .into_bytes();
    let headers = signed_headers(&secret, "msg_e2e_big", t, &big);
    let (status, _, _) = s
        .call(function_url_event("POST", &headers, &big, false))
        .await;
    assert_eq!(status, 413);

    // 405 — not POST, with Allow.
    let (status, _, headers) = s.call(function_url_event("GET", &[], b"", false)).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "POST");

    // 503 — the queue is gone; the claim is released so the retry succeeds later.
    s.sqs
        .delete_queue()
        .queue_url(&s.queue_url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("delete_queue: {e:?}"));
    let body = batch_succeeded_body("e2e-503");
    let headers = signed_headers(&secret, "msg_e2e_503", t, &body);
    let (status, reply, headers_out) = s
        .call(function_url_event("POST", &headers, &body, false))
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (503, Some("queue_unavailable")),
        "{reply}"
    );
    assert!(headers_out["retry-after"].is_string());
}

#[tokio::test]
async fn receiver_binary_logs_json_without_secrets_or_bodies() {
    let s = start("1048576").await;
    let t = now();
    let body =
        br#"{"type":"batch.succeeded","data":{"id":"secret-free","note":"BODY-MARKER-123"}}"#
            .to_vec();
    let headers = signed_headers(&test_secret(), "msg_e2e_logs", t, &body);
    let signature = headers
        .iter()
        .find(|(k, _)| k == "webhook-signature")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let (status, _, _) = s
        .call(function_url_event("POST", &headers, &body, false))
        .await;
    assert_eq!(status, 200);
    let forged = signed_headers(&test_secret(), "msg_e2e_logs2", t, b"x");
    let (status, _, _) = s
        .call(function_url_event("POST", &forged, &body, false))
        .await;
    assert_eq!(status, 401);
    assert!(
        s._function
            .wait_for_log("signature_mismatch", Duration::from_secs(5))
            .await
    );
    let logs = s._function.logs();
    assert!(
        logs.contains("msg_e2e_logs"),
        "webhook id is logged: {logs}"
    );
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    for secret in [
        TEST_SECRET,
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        signature.as_str(),
        "BODY-MARKER-123",
    ] {
        assert!(!logs.contains(secret), "log leaked `{secret}`");
    }
}

#[tokio::test]
async fn receiver_binary_fails_at_init_naming_the_missing_variable() {
    let api = RuntimeApi::start().await;
    let mut function = spawn_function(
        &bin_path("receiver"),
        &api,
        &[
            ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
            ("QUEUE_URL", "http://127.0.0.1:1/q".to_owned()),
        ],
    )
    .await;
    let status = function.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "must exit non-zero: {status:?}"
    );
    // The log readers may still be draining the pipe after the exit.
    assert!(
        function
            .wait_for_log("DEDUPE_TABLE", Duration::from_secs(5))
            .await,
        "{}",
        function.logs()
    );
}
