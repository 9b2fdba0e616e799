//! The receive use case end to end against moto (real DynamoDB and SQS wire protocol), with an
//! injected clock and real signatures. Covers issue #2 item 9 and every row of the HTTP contract (README, "How it behaves").

use std::sync::Arc;

use gemini_hooks::adapters::aws::dynamodb_dedupe::DynamoDbDedupeStore;
use gemini_hooks::adapters::aws::sqs::SqsEventQueue;
use gemini_hooks::config::ReceiveLimits;
use gemini_hooks::domain::verify::standard::{SigningSecret, StandardVerifier, sign};
use gemini_hooks::ports::clock::{Clock, ManualClock};
use gemini_hooks::usecases::http::{HttpReply, handle};
use gemini_hooks::usecases::receive::Receiver;
use gemini_hooks::usecases::verify::WebhookVerifier;
use gemini_hooks_tests::delivery::{batch_succeeded_body, header_map, signed_headers, test_secret};
use gemini_hooks_tests::jwt::{JwksServer, KEY_1_PEM, KEY_2_PEM, TestSigner, http_dynamic};
use gemini_hooks_tests::moto;
use http::Method;
use serde_json::{Value, json};

const T0: i64 = 1_795_000_000; // 2026-11-18, an absolute fixture (no wall clock)

struct Harness {
    ddb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    table: String,
    queue_url: String,
    queue_name: String,
    clock: ManualClock,
    receiver: Receiver,
    jwks: JwksServer,
    signer: TestSigner,
}

impl Harness {
    async fn new() -> Self {
        Self::with_limits(ReceiveLimits::default()).await
    }

    async fn with_limits(limits: ReceiveLimits) -> Self {
        let ddb = moto::dynamodb().await;
        let sqs = moto::sqs().await;
        let table = moto::unique_name("dedupe");
        moto::create_dedupe_table(&ddb, &table).await;
        let queue_name = moto::unique_name("events");
        let queue = moto::create_queue(&sqs, &queue_name, 5, 30).await;
        let clock = ManualClock::at_secs(T0);
        let signer = TestSigner::new("kid-1", KEY_1_PEM);
        let jwks = JwksServer::start(&[&signer]).await;
        let verifier = WebhookVerifier::new(
            Some(StandardVerifier::new(vec![test_secret()], 300)),
            Some(http_dynamic(jwks.url(), &["https://hooks.example.com"])),
        );
        let receiver = Receiver::new(
            Arc::new(verifier),
            Arc::new(DynamoDbDedupeStore::new(ddb.clone(), table.clone())),
            Arc::new(SqsEventQueue::new(sqs.clone(), queue.url.clone())),
            Arc::new(clock.clone()),
            limits,
        );
        Self {
            ddb,
            sqs,
            table,
            queue_url: queue.url,
            queue_name,
            clock,
            receiver,
            jwks,
            signer,
        }
    }

    async fn post(&self, headers: &[(String, String)], body: &[u8]) -> HttpReply {
        handle(
            &self.receiver,
            &Method::POST,
            &header_map(headers),
            body,
            None,
        )
        .await
    }

    async fn post_signed(&self, id: &str, body: &[u8]) -> HttpReply {
        let headers = signed_headers(&test_secret(), id, self.clock.now_secs(), body);
        self.post(&headers, body).await
    }

    async fn messages(&self) -> Vec<aws_sdk_sqs::types::Message> {
        moto::drain(&self.sqs, &self.queue_url).await
    }

    async fn dedupe_item(
        &self,
        id: &str,
    ) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.ddb
            .get_item()
            .table_name(&self.table)
            .key(
                "webhook_id",
                aws_sdk_dynamodb::types::AttributeValue::S(id.into()),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get_item: {e:?}"))
            .item
    }
}

fn body_json(reply: &HttpReply) -> Value {
    serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("reply body is not JSON ({e}): {}", reply.body))
}

fn header<'a>(reply: &'a HttpReply, name: &str) -> Option<&'a str> {
    reply
        .headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn first_delivery_is_enqueued_exactly_once_with_envelope_and_attributes() {
    let h = Harness::new().await;
    let body = json!({
        "type": "batch.succeeded", "version": "v1", "timestamp": "2026-11-18T00:00:00Z",
        "data": {"id": "abc123", "output_file_uri": "files/batch-abc123", "user_metadata": {"job_group": "nightly"}}
    })
    .to_string();
    let reply = h.post_signed("msg_first", body.as_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        body_json(&reply),
        json!({"status": "accepted", "webhook_id": "msg_first"})
    );

    let messages = h.messages().await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    let envelope: Value = serde_json::from_str(m.body().unwrap_or_default()).unwrap_or_default();
    assert_eq!(envelope["kind"], "webhook");
    assert_eq!(envelope["webhook_id"], "msg_first");
    assert_eq!(envelope["received_at_ms"], T0 * 1000);
    assert_eq!(envelope["signature_mode"], "static");
    assert_eq!(envelope["event"]["type"], "batch.succeeded");
    assert_eq!(envelope["event"]["job_id"], "batches/abc123");
    assert_eq!(
        envelope["raw_event"],
        serde_json::from_str::<Value>(&body).unwrap_or_default()
    );
    // The event is carried once: metadata inside it is marked, not copied.
    assert_eq!(
        (
            envelope.get("user_metadata"),
            &envelope["metadata_in_event"]
        ),
        (None, &json!(true))
    );
    assert_eq!(
        decoded_metadata(m.body().unwrap_or_default()),
        Some(json!({"job_group": "nightly"}))
    );
    let attrs = m.message_attributes().cloned().unwrap_or_default();
    assert_eq!(
        attrs.get("event_type").and_then(|a| a.string_value()),
        Some("batch.succeeded")
    );
    assert_eq!(
        attrs.get("job_group").and_then(|a| a.string_value()),
        Some("nightly")
    );

    let item = h.dedupe_item("msg_first").await.unwrap_or_default();
    assert_eq!(
        item.get("status")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("ENQUEUED")
    );
    let expires: i64 = item
        .get("expires_at")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    assert_eq!(expires, T0 + 168 * 3600, "retention defaults to 7 days");
}

#[tokio::test]
async fn genuine_retry_with_new_timestamp_and_signature_is_a_duplicate() {
    let h = Harness::new().await;
    let body = batch_succeeded_body("retry1");
    assert_eq!(h.post_signed("msg_retry", &body).await.status, 200);
    h.clock.advance_ms(95_000); // Gemini retries later: new timestamp, new signature
    let reply = h.post_signed("msg_retry", &body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(body_json(&reply)["status"], "duplicate");
    assert_eq!(h.messages().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_deliveries_enqueue_exactly_one_message() {
    let h = Arc::new(Harness::new().await);
    let body = batch_succeeded_body("storm");
    let headers = signed_headers(&test_secret(), "msg_storm", T0, &body);
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let h = Arc::clone(&h);
        let headers = headers.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move { h.post(&headers, &body).await }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let reply = t.await.unwrap_or_else(|e| panic!("task: {e}"));
        statuses.push((
            reply.status,
            body_json(&reply)["status"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        ));
    }
    let accepted = statuses
        .iter()
        .filter(|(s, st)| *s == 200 && st == "accepted")
        .count();
    assert_eq!(accepted, 1, "{statuses:?}");
    // The others either saw the completed record (duplicate) or the live lease (409).
    assert!(
        statuses
            .iter()
            .all(|(s, st)| (*s == 200 && (st == "accepted" || st == "duplicate")) || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(h.messages().await.len(), 1);
}

#[tokio::test]
async fn queue_failure_answers_503_releases_the_claim_and_a_later_retry_is_accepted() {
    let h = Harness::new().await;
    h.sqs
        .delete_queue()
        .queue_url(&h.queue_url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("delete_queue: {e:?}"));
    let body = batch_succeeded_body("qdown");
    let reply = h.post_signed("msg_qdown", &body).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(body_json(&reply)["error"], "queue_unavailable");
    assert!(header(&reply, "retry-after").is_some());
    assert!(
        h.dedupe_item("msg_qdown").await.is_none(),
        "claim must be released"
    );

    // The queue comes back (same name → same URL); Gemini's retry succeeds.
    let q = moto::create_queue(&h.sqs, &h.queue_name, 5, 30).await;
    assert_eq!(q.url, h.queue_url);
    h.clock.advance_ms(5_000);
    let reply = h.post_signed("msg_qdown", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(body_json(&reply)["status"], "accepted");
    assert_eq!(h.messages().await.len(), 1);
}

#[tokio::test]
async fn missing_table_answers_503_and_nothing_is_enqueued() {
    let h = Harness::new().await;
    h.ddb
        .delete_table()
        .table_name(&h.table)
        .send()
        .await
        .unwrap_or_else(|e| panic!("delete_table: {e:?}"));
    let reply = h
        .post_signed("msg_notable", &batch_succeeded_body("x"))
        .await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(body_json(&reply)["error"], "store_unavailable");
    assert!(!reply.body.contains(&h.table), "no internals in the answer");
    assert!(h.messages().await.is_empty());
}

#[tokio::test]
async fn expired_record_is_treated_as_absent() {
    let h = Harness::with_limits(ReceiveLimits {
        max_body_bytes: 1024 * 1024,
        retention_hours: 1,
    })
    .await;
    let body = batch_succeeded_body("exp");
    assert_eq!(h.post_signed("msg_exp", &body).await.status, 200);
    h.clock.advance_ms(3_600_000); // exactly at expiry: still remembered
    assert_eq!(
        body_json(&h.post_signed("msg_exp", &body).await)["status"],
        "duplicate"
    );
    h.clock.advance_ms(1_000); // past expiry, TTL has not deleted it yet (moto never does)
    assert!(h.dedupe_item("msg_exp").await.is_some());
    let reply = h.post_signed("msg_exp", &body).await;
    assert_eq!(body_json(&reply)["status"], "accepted", "{}", reply.body);
    assert_eq!(h.messages().await.len(), 2);
}

#[tokio::test]
async fn reused_id_with_another_body_is_answered_as_a_duplicate_and_enqueues_nothing() {
    let h = Harness::new().await;
    assert_eq!(
        h.post_signed("msg_reuse", &batch_succeeded_body("one"))
            .await
            .status,
        200
    );
    let reply = h
        .post_signed("msg_reuse", &batch_succeeded_body("two"))
        .await;
    // A 4xx would only make Gemini retry it for 24 h (and risk a disabled webhook).
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        body_json(&reply),
        json!({"status": "duplicate", "webhook_id": "msg_reuse"})
    );
    assert_eq!(h.messages().await.len(), 1);
}

#[tokio::test]
async fn live_lease_answers_409_with_retry_after_and_dead_lease_is_taken_over() {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    let h = Harness::new().await;
    let body = batch_succeeded_body("lease");
    // Another request claimed this id and is (presumably) still working: lease 20 s from now.
    h.ddb
        .put_item()
        .table_name(&h.table)
        .item("webhook_id", S("msg_lease".into()))
        .item("status", S("PENDING".into()))
        .item("owner", S("someone-else".into()))
        .item("lease_until_ms", N((T0 * 1000 + 20_000).to_string()))
        .item("expires_at", N((T0 + 3600).to_string()))
        .item(
            "body_sha256",
            S(gemini_hooks::domain::verify::sha256_hex(&body)),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("put_item: {e:?}"));
    let reply = h.post_signed("msg_lease", &body).await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(header(&reply, "retry-after"), Some("20"));
    assert!(h.messages().await.is_empty());

    // The holder died; once its lease has passed, the retry takes over and enqueues.
    h.clock.advance_ms(20_001);
    let reply = h.post_signed("msg_lease", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(body_json(&reply)["status"], "accepted");
    assert_eq!(h.messages().await.len(), 1);
}

/// Every bad-input row of the HTTP contract, and that none of them changes any state.
#[tokio::test]
async fn bad_input_rows_of_the_contract() {
    let h = Harness::new().await;
    let body = batch_succeeded_body("bad");
    let good = signed_headers(&test_secret(), "msg_bad", T0, &body);
    let without = |name: &str| -> Vec<(String, String)> {
        good.iter().filter(|(k, _)| k != name).cloned().collect()
    };
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        good.iter()
            .map(|(k, v)| {
                if k == name {
                    (k.clone(), value.to_owned())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect()
    };
    let other_secret = SigningSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
        .unwrap_or_else(|e| panic!("{e}"));
    let not_json = b"definitely not json".to_vec();
    let not_event = br#"{"kind":"batch.succeeded"}"#.to_vec();
    type Case<'a> = (&'a str, Vec<(String, String)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "missing webhook-id",
            without("webhook-id"),
            body.clone(),
            400,
            "missing_header",
        ),
        (
            "missing webhook-timestamp",
            without("webhook-timestamp"),
            body.clone(),
            400,
            "missing_header",
        ),
        (
            "missing webhook-signature",
            without("webhook-signature"),
            body.clone(),
            400,
            "missing_header",
        ),
        (
            "timestamp not a number",
            with("webhook-timestamp", "hello"),
            body.clone(),
            400,
            "malformed_header",
        ),
        (
            "comma-joined duplicate id",
            with("webhook-id", "msg_bad,msg_bad"),
            body.clone(),
            400,
            "malformed_header",
        ),
        (
            "signed by another secret",
            signed_headers(&other_secret, "msg_bad", T0, &body),
            body.clone(),
            401,
            "signature_mismatch",
        ),
        (
            "body changed after signing",
            good.clone(),
            batch_succeeded_body("evil"),
            401,
            "signature_mismatch",
        ),
        (
            "stale timestamp",
            signed_headers(&test_secret(), "msg_bad", T0 - 301, &body),
            body.clone(),
            401,
            "timestamp_too_old",
        ),
        (
            "future timestamp",
            signed_headers(&test_secret(), "msg_bad", T0 + 301, &body),
            body.clone(),
            401,
            "timestamp_too_new",
        ),
        (
            "only unknown signature versions",
            with("webhook-signature", "v2,abc v1a,def"),
            body.clone(),
            401,
            "no_supported_signature",
        ),
        (
            "signed body is not JSON",
            signed_headers(&test_secret(), "msg_bad", T0, &not_json),
            not_json.clone(),
            400,
            "invalid_event",
        ),
        (
            "signed JSON is not an event",
            signed_headers(&test_secret(), "msg_bad", T0, &not_event),
            not_event.clone(),
            400,
            "invalid_event",
        ),
    ];
    for (name, headers, body, status, code) in cases {
        let reply = h.post(&headers, &body).await;
        assert_eq!(reply.status, status, "{name}: {}", reply.body);
        assert_eq!(body_json(&reply)["error"], code, "{name}");
        for (k, v) in &headers {
            if k == "webhook-signature" && v.len() > 12 {
                assert!(!reply.body.contains(v.as_str()), "{name}: signature echoed");
            }
        }
    }

    // 413: body over the limit, even when correctly signed.
    let small = Harness::with_limits(ReceiveLimits {
        max_body_bytes: 64,
        retention_hours: 168,
    })
    .await;
    let big = batch_succeeded_body("this-body-is-longer-than-sixty-four-bytes");
    let reply = small
        .post(&signed_headers(&test_secret(), "msg_big", T0, &big), &big)
        .await;
    assert_eq!(reply.status, 413, "{}", reply.body);

    // 405: anything but POST.
    let reply = handle(&h.receiver, &Method::GET, &header_map(&good), &body, None).await;
    assert_eq!(reply.status, 405);
    assert_eq!(header(&reply, "allow"), Some("POST"));

    // No state was changed by any of it.
    assert!(h.messages().await.is_empty());
    assert!(h.dedupe_item("msg_bad").await.is_none());
    assert!(small.messages().await.is_empty());
}

#[tokio::test]
async fn unknown_event_type_is_accepted_and_batch_completed_is_an_alias() {
    let h = Harness::new().await;
    let ping = br#"{"type":"webhook.ping","data":{}}"#;
    let reply = h.post_signed("msg_ping", ping).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let alias = br#"{"type":"batch.completed","data":{"id":"batches/xyz"}}"#;
    assert_eq!(h.post_signed("msg_alias", alias).await.status, 200);
    let mut types: Vec<String> = h
        .messages()
        .await
        .iter()
        .filter_map(|m| {
            m.message_attributes()?
                .get("event_type")?
                .string_value()
                .map(str::to_owned)
        })
        .collect();
    types.sort();
    assert_eq!(
        types,
        vec!["batch.succeeded".to_owned(), "webhook.ping".to_owned()]
    );
}

#[tokio::test]
async fn rotation_with_two_secrets_accepts_either() {
    let h = Harness::new().await;
    let old = test_secret();
    let new = SigningSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
        .unwrap_or_else(|e| panic!("{e}"));
    let verifier = WebhookVerifier::new(
        Some(StandardVerifier::new(vec![old, new.clone()], 300)),
        None,
    );
    let receiver = Receiver::new(
        Arc::new(verifier),
        Arc::new(DynamoDbDedupeStore::new(h.ddb.clone(), h.table.clone())),
        Arc::new(SqsEventQueue::new(h.sqs.clone(), h.queue_url.clone())),
        Arc::new(h.clock.clone()),
        ReceiveLimits::default(),
    );
    let body = batch_succeeded_body("rot");
    // During the 24 h overlap Gemini sends one entry per secret; also accept the new one alone.
    let both = format!(
        "{} {}",
        sign(&test_secret(), "msg_rot", T0, &body),
        sign(&new, "msg_rot", T0, &body)
    );
    let mut headers = signed_headers(&new, "msg_rot", T0, &body);
    assert_eq!(
        handle(&receiver, &Method::POST, &header_map(&headers), &body, None)
            .await
            .status,
        200
    );
    headers[2].1 = both;
    let second = handle(&receiver, &Method::POST, &header_map(&headers), &body, None).await;
    assert_eq!(body_json(&second)["status"], "duplicate");
}

// ---- dynamic (JWT) deliveries -------------------------------------------------------------

fn jwt_claims(extra: Value) -> Value {
    let mut claims = json!({
        "iss": "https://generativelanguage.googleapis.com",
        "aud": "https://hooks.example.com",
        "iat": T0,
        "exp": T0 + 300,
        "jti": "jti-1",
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
        c.extend(e);
    }
    claims
}

#[tokio::test]
async fn dynamic_delivery_with_headers_is_accepted_and_deduped() {
    let h = Harness::new().await;
    let body =
        json!({"type":"batch.succeeded","data":{"id":"dyn1","user_metadata":{"job_group":"exp"}}})
            .to_string();
    let token = h.signer.sign(&jwt_claims(json!({})));
    let headers = vec![
        ("webhook-id".to_owned(), "msg_dyn".to_owned()),
        ("webhook-timestamp".to_owned(), T0.to_string()),
        ("webhook-signature".to_owned(), token.clone()),
    ];
    let reply = h.post(&headers, body.as_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(body_json(&reply)["webhook_id"], "msg_dyn");
    let reply = h.post(&headers, body.as_bytes()).await;
    assert_eq!(body_json(&reply)["status"], "duplicate");
    let messages = h.messages().await;
    assert_eq!(messages.len(), 1);
    let env: Value =
        serde_json::from_str(messages[0].body().unwrap_or_default()).unwrap_or_default();
    assert_eq!(env["signature_mode"], "dynamic");
    assert_eq!(env["event"]["job_id"], "batches/dyn1");
    assert_eq!(h.jwks.hits(), 1, "JWKS fetched once and cached");
}

#[tokio::test]
async fn dynamic_delivery_without_id_headers_uses_jti_and_claims() {
    let h = Harness::new().await;
    let body = br#"{"type":"batch.failed","data":{"id":"dyn2","error_code":13,"error_message":"internal"}}"#;
    let token = h.signer.sign(&jwt_claims(
        json!({"jti": "abc-jti", "user_metadata": {"job_group": "jwt-group"}}),
    ));
    let headers = vec![("webhook-signature".to_owned(), token)];
    let reply = h.post(&headers, body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(body_json(&reply)["webhook_id"], "jti:abc-jti");
    let messages = h.messages().await;
    let env: Value =
        serde_json::from_str(messages[0].body().unwrap_or_default()).unwrap_or_default();
    assert_eq!(env["user_metadata"]["job_group"], "jwt-group");
    // The claims hold no event and no body digest: the body is only a hint.
    assert_eq!(env["bound"], false);
}

#[tokio::test]
async fn one_token_enqueues_at_most_one_delivery() {
    let h = Harness::new().await;
    let token = h.signer.sign(&jwt_claims(json!({"jti": "single-use"})));
    let delivery = |id: &str| {
        vec![
            ("webhook-id".to_owned(), id.to_owned()),
            ("webhook-signature".to_owned(), token.clone()),
        ]
    };
    let first = batch_succeeded_body("tok-a");
    let other = batch_succeeded_body("tok-b");
    let reply = h.post(&delivery("msg_tok_1"), &first).await;
    assert_eq!(body_json(&reply)["status"], "accepted", "{}", reply.body);
    // The same token, id and body is Gemini's retry: the ordinary duplicate.
    let reply = h.post(&delivery("msg_tok_1"), &first).await;
    assert_eq!(body_json(&reply)["status"], "duplicate", "{}", reply.body);
    for (id, body) in [
        ("msg_tok_2", &first),
        ("msg_tok_3", &first),
        ("msg_tok_1", &other),
        ("msg_tok_2", &other),
    ] {
        let reply = h.post(&delivery(id), body).await;
        assert_eq!(reply.status, 401, "{id}: {}", reply.body);
        assert_eq!(body_json(&reply)["error"], "jwt_replayed", "{id}");
    }
    assert_eq!(h.messages().await.len(), 1, "one token, one message");
    let claim = h.dedupe_item("token jti:single-use").await;
    assert!(claim.is_some(), "the token is claimed under its own key");
}

#[tokio::test]
async fn signed_claims_win_over_the_body_and_dynamic_ids_live_apart() {
    let h = Harness::new().await;
    // The claims carry the event: they are the event, whatever the body says.
    let token = h.signer.sign(&jwt_claims(json!({
        "jti": "claims-event",
        "type": "batch.succeeded",
        "data": {"id": "from-claims", "user_metadata": {"job_group": "signed"}},
    })));
    let body = json!({"type": "batch.failed",
                      "data": {"id": "from-body", "user_metadata": {"job_group": "forged"}}})
    .to_string();
    let headers = vec![
        ("webhook-id".to_owned(), "msg_static_space".to_owned()),
        ("webhook-signature".to_owned(), token),
    ];
    let reply = h.post(&headers, body.as_bytes()).await;
    assert_eq!(body_json(&reply)["status"], "accepted", "{}", reply.body);
    // A static delivery with the same webhook-id is not a duplicate of the dynamic one.
    let reply = h
        .post_signed("msg_static_space", &batch_succeeded_body("s1"))
        .await;
    assert_eq!(body_json(&reply)["status"], "accepted", "{}", reply.body);
    let messages = h.messages().await;
    assert_eq!(messages.len(), 2);
    let dynamic: Value = messages
        .iter()
        .map(|m| serde_json::from_str::<Value>(m.body().unwrap_or_default()).unwrap_or_default())
        .find(|e| e["signature_mode"] == "dynamic")
        .unwrap_or_else(|| panic!("no dynamic envelope"));
    assert_eq!(dynamic["bound"], true);
    assert_eq!(dynamic["event"]["type"], "batch.succeeded");
    assert_eq!(dynamic["event"]["job_id"], "batches/from-claims");
    assert_eq!(
        decoded_metadata(&dynamic.to_string()),
        Some(json!({"job_group": "signed"}))
    );
    assert!(h.dedupe_item("dynamic msg_static_space").await.is_some());
    assert!(h.dedupe_item("msg_static_space").await.is_some());

    // Unbound body, metadata only in the body: the body's metadata is not trusted.
    let token = h.signer.sign(&jwt_claims(json!({"jti": "unbound"})));
    let headers = vec![
        ("webhook-id".to_owned(), "msg_unbound".to_owned()),
        ("webhook-signature".to_owned(), token),
    ];
    let reply = h.post(&headers, body.as_bytes()).await;
    assert_eq!(body_json(&reply)["status"], "accepted", "{}", reply.body);
    let env: Value =
        serde_json::from_str(h.messages().await[0].body().unwrap_or_default()).unwrap_or_default();
    assert_eq!(env["bound"], false);
    assert_eq!(env["event"]["job_id"], "batches/from-body");
    assert_eq!(env["user_metadata"], Value::Null, "{env}");
    assert_eq!(decoded_metadata(&env.to_string()), None, "{env}");
}

/// The `user_metadata` the consumer reads from a queued body.
fn decoded_metadata(body: &str) -> Option<Value> {
    match gemini_hooks::domain::envelope::QueueEnvelope::from_body(body) {
        Ok(gemini_hooks::domain::envelope::QueueEnvelope::Webhook(w)) => w.user_metadata,
        other => panic!("not a webhook envelope: {other:?}"),
    }
}

#[tokio::test]
async fn dynamic_delivery_rejections() {
    let h = Harness::new().await;
    let body = batch_succeeded_body("dynbad");
    let foreign = TestSigner::new("kid-1", KEY_2_PEM);
    let cases = vec![
        (
            "expired",
            h.signer
                .sign(&jwt_claims(json!({"iat": T0 - 900, "exp": T0 - 600}))),
            "jwt_expired",
        ),
        (
            "wrong audience",
            h.signer
                .sign(&jwt_claims(json!({"aud": "https://evil.example"}))),
            "jwt_claim_mismatch",
        ),
        (
            "three days old, thirty-day exp",
            h.signer.sign(&jwt_claims(
                json!({"iat": T0 - 3 * 86_400, "exp": T0 + 30 * 86_400}),
            )),
            "jwt_too_old",
        ),
        (
            "issued in the future beyond the window",
            h.signer
                .sign(&jwt_claims(json!({"iat": T0 + 301, "exp": T0 + 900}))),
            "jwt_not_yet_valid",
        ),
        (
            "no iat",
            h.signer.sign(&jwt_claims(json!({"iat": null}))),
            "invalid_jwt",
        ),
        (
            "foreign key, same kid",
            foreign.sign(&jwt_claims(json!({}))),
            "invalid_jwt",
        ),
        (
            "unknown kid",
            TestSigner::new("kid-unknown", KEY_2_PEM).sign(&jwt_claims(json!({}))),
            "jwt_unknown_kid",
        ),
        (
            "alg none",
            none_token(&jwt_claims(json!({}))),
            "jwt_algorithm",
        ),
    ];
    for (name, token, code) in cases {
        let headers = vec![
            (
                "webhook-id".to_owned(),
                format!("msg_{}", name.replace(' ', "_")),
            ),
            ("webhook-signature".to_owned(), token),
        ];
        let reply = h.post(&headers, &body).await;
        assert_eq!(reply.status, 401, "{name}: {}", reply.body);
        assert_eq!(body_json(&reply)["error"], code, "{name}");
    }
    assert!(h.messages().await.is_empty());
}

fn none_token(claims: &Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        b64.encode(br#"{"alg":"none","typ":"JWT","kid":"kid-1"}"#),
        b64.encode(claims.to_string()),
        b64.encode(b"sig")
    )
}

#[tokio::test]
async fn jwks_unreachable_answers_503_so_gemini_retries() {
    let h = Harness::new().await;
    let verifier = WebhookVerifier::new(
        None,
        Some(http_dynamic(
            "http://127.0.0.1:9/jwks.json",
            &["https://hooks.example.com"],
        )),
    );
    let receiver = Receiver::new(
        Arc::new(verifier),
        Arc::new(DynamoDbDedupeStore::new(h.ddb.clone(), h.table.clone())),
        Arc::new(SqsEventQueue::new(h.sqs.clone(), h.queue_url.clone())),
        Arc::new(h.clock.clone()),
        ReceiveLimits::default(),
    );
    let token = h.signer.sign(&jwt_claims(json!({})));
    let headers = vec![("webhook-signature".to_owned(), token)];
    let reply = handle(&receiver, &Method::POST, &header_map(&headers), b"{}", None).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    // A static delivery to a dynamic-only receiver is unauthenticated, not a server error.
    let body = batch_succeeded_body("s");
    let reply = handle(
        &receiver,
        &Method::POST,
        &header_map(&signed_headers(&test_secret(), "m", T0, &body)),
        &body,
        None,
    )
    .await;
    assert_eq!(reply.status, 401);
}
