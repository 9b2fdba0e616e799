//! Hostile review of issue 9 ("Unforgeable deliveries"): every test here is an attack that the
//! threat model (docs/RELIABILITY.md, "Threat model") says is stopped. Each test asserts the
//! behaviour the issue promises, so **each failing test is a confirmed break**. Run with a moto
//! server (`AWS_ENDPOINT_URL`) and the binaries built (`cargo build --workspace --bins`).
//!
//! Receiver attacks run in process (the real `Receiver` + `http::handle` on moto, injected
//! clock); consumer attacks run through the real `receiver` and `consumer` binaries like
//! `forged_deliveries.rs`.

mod reliability_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::adapters::aws::sqs::SqsEventQueue;
use gemini_hooks::adapters::gemini::{GeminiClient, GeminiSettings};
use gemini_hooks::config::ReceiveLimits;
use gemini_hooks::domain::jobs::{JobRecord, ResultRow};
use gemini_hooks::domain::verify::standard::StandardVerifier;
use gemini_hooks::ports::clock::{Clock, ManualClock};
use gemini_hooks::ports::{ResultsStore, StoreError};
use gemini_hooks::usecases::consume::{ConsumeSettings, Consumer};
use gemini_hooks::usecases::http::{HttpReply, handle};
use gemini_hooks::usecases::receive::Receiver;
use gemini_hooks::usecases::routes::Routes;
use gemini_hooks::usecases::verify::WebhookVerifier;
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::delivery::{
    TEST_SECRET, function_url_event, header_map, signed_headers, test_secret,
};
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, Fault, OutputSpec, operation_json, sample_results,
};
use gemini_hooks_tests::jwt::{JwksServer, KEY_1_PEM, TestSigner};
use gemini_hooks_tests::moto;
use gemini_hooks_tests::runtime_api::{FunctionProcess, RuntimeApi, spawn_function};
use http::Method;
use reliability_common::{AwsStack, failed_ids, now_secs, sqs_event, url_reply};
use serde_json::{Value, json};

const AUD: &str = "https://hooks.example/gemini";
const INVOKE: Duration = Duration::from_secs(60);
const T0: i64 = 1_795_000_000;

// ---- in-process receiver ---------------------------------------------------------------------

struct Rx {
    aws: AwsStack,
    clock: ManualClock,
    receiver: Receiver,
    signer: TestSigner,
    _jwks: JwksServer,
}

impl Rx {
    async fn new(limits: ReceiveLimits) -> Self {
        let aws = AwsStack::new("atk9", 30).await;
        let clock = ManualClock::at_secs(T0);
        let signer = TestSigner::new("kid-atk", KEY_1_PEM);
        let jwks = JwksServer::start(&[&signer]).await;
        let verifier = WebhookVerifier::new(
            Some(StandardVerifier::new(vec![test_secret()], 300)),
            Some(gemini_hooks_tests::jwt::http_dynamic(jwks.url(), &[AUD])),
        );
        let receiver = aws
            .receiver(Arc::new(verifier), Arc::new(clock.clone()), limits)
            .await;
        Self {
            aws,
            clock,
            receiver,
            signer,
            _jwks: jwks,
        }
    }

    fn claims(&self, extra: Value) -> Value {
        let now = self.clock.now_ms() / 1000;
        let mut c = json!({"aud": AUD, "iat": now, "exp": now + 300});
        if let (Value::Object(c), Value::Object(e)) = (&mut c, extra) {
            for (k, v) in e {
                if v.is_null() {
                    c.remove(&k);
                } else {
                    c.insert(k, v);
                }
            }
        }
        c
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

    async fn post_token(&self, id: Option<&str>, token: &str, body: &[u8]) -> (u16, Value) {
        let mut headers = vec![("webhook-signature".to_owned(), token.to_owned())];
        if let Some(id) = id {
            headers.push(("webhook-id".to_owned(), id.to_owned()));
        }
        let reply = self.post(&headers, body).await;
        (reply.status, body_json(&reply))
    }
}

fn body_json(reply: &HttpReply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or(Value::Null)
}

fn answer(status: u16, reply: &Value) -> (u16, String) {
    (
        status,
        reply["status"]
            .as_str()
            .or(reply["error"].as_str())
            .unwrap_or_default()
            .to_owned(),
    )
}

fn event(kind: &str, id: &str, extra: Value) -> Vec<u8> {
    let mut data = json!({"id": id});
    if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
        d.extend(e);
    }
    json!({"type": kind, "version": "v1", "timestamp": "2026-12-01T12:00:00Z", "data": data})
        .to_string()
        .into_bytes()
}

/// BREAK 1. Claims that carry the event, an empty (or constant) body, no `webhook-id` header and
/// no `jti`: the delivery id falls back to `sha256:<body>`, so every such delivery shares one
/// dedupe key. The second, *different*, event is answered `duplicate` and silently dropped.
#[tokio::test]
async fn claims_carried_events_without_webhook_id_or_jti_are_not_collapsed_into_one() {
    let rx = Rx::new(ReceiveLimits::default()).await;
    let mut answers = Vec::new();
    for batch in ["first", "second", "third"] {
        let token = rx.signer.sign(&rx.claims(json!({
            "type": "batch.succeeded",
            "data": {"id": batch},
        })));
        let (status, reply) = rx.post_token(None, &token, b"").await;
        answers.push(answer(status, &reply));
    }
    let messages = rx.aws.messages().await;
    assert_eq!(
        (answers.clone(), messages.len()),
        (vec![(200, "accepted".to_owned()); 3], 3),
        "three different signed events, each must be enqueued; got {answers:?}"
    );
}

/// BREAK 2a. A dynamic delivery's header id can pre-claim the key a *header-less* delivery
/// derives from its token's `jti`: `webhook-id: jti:T` and `jti: "T"` both become
/// `dynamic jti:T`. The later, genuine delivery is answered `duplicate` and lost.
#[tokio::test]
async fn a_header_id_cannot_take_the_key_of_a_headerless_deliverys_jti() {
    let rx = Rx::new(ReceiveLimits::default()).await;
    let decoy = event("batch.succeeded", "decoy", json!({}));
    let squatter = rx.signer.sign(&rx.claims(json!({"jti": "squatter"})));
    let (status, reply) = rx
        .post_token(Some("jti:victim-token"), &squatter, &decoy)
        .await;
    assert_eq!(answer(status, &reply), (200, "accepted".to_owned()));

    let genuine = event("batch.succeeded", "victim", json!({}));
    let token = rx.signer.sign(&rx.claims(json!({"jti": "victim-token"})));
    let (status, reply) = rx.post_token(None, &token, &genuine).await;
    assert_eq!(
        answer(status, &reply),
        (200, "accepted".to_owned()),
        "the genuine header-less delivery was swallowed by the squatter's id: {reply}"
    );
}

/// BREAK 2b. Same with `webhook-id: sha256:<hex of a future body>`: the header-less delivery of
/// that body (no jti) is answered `duplicate` although nothing of it was ever enqueued.
#[tokio::test]
async fn a_header_id_cannot_take_the_key_of_a_headerless_deliverys_body_hash() {
    let rx = Rx::new(ReceiveLimits::default()).await;
    let genuine = event("interaction.completed", "victim-interaction", json!({}));
    let predicted = format!(
        "sha256:{}",
        gemini_hooks::domain::verify::sha256_hex(&genuine)
    );
    let decoy = event("batch.succeeded", "decoy", json!({}));
    let squatter = rx.signer.sign(&rx.claims(json!({"jti": "squatter-2"})));
    let (status, _) = rx.post_token(Some(&predicted), &squatter, &decoy).await;
    assert_eq!(status, 200);

    let token = rx.signer.sign(&rx.claims(json!({"n": 1})));
    let (status, reply) = rx.post_token(None, &token, &genuine).await;
    let bodies: Vec<String> = rx
        .aws
        .messages()
        .await
        .iter()
        .filter_map(|m| m.body().map(str::to_owned))
        .collect();
    assert!(
        bodies.iter().any(|b| b.contains("victim-interaction")),
        "the genuine event never reached the queue (answer {status} {reply})"
    );
}

/// BREAK 3. "One token enqueues at most one delivery" holds only while the delivery record
/// lives: with `DEDUPE_RETENTION_HOURS` (accepted down to 1) shorter than the token's life
/// (`WEBHOOK_JWT_MAX_AGE_SECONDS`, 24 h), the very same token, id and body is enqueued again.
#[tokio::test]
async fn one_token_enqueues_once_even_when_the_retention_is_shorter_than_the_token() {
    let rx = Rx::new(ReceiveLimits {
        retention_hours: 1,
        ..ReceiveLimits::default()
    })
    .await;
    let now = T0;
    let token = rx.signer.sign(&rx.claims(json!({
        "jti": "long-lived",
        "iat": now,
        "exp": now + 20 * 3600,
    })));
    let body = event("batch.succeeded", "replayed", json!({}));
    let (status, _) = rx.post_token(Some("msg_replay"), &token, &body).await;
    assert_eq!(status, 200);
    rx.clock.advance_ms(2 * 3_600_000);
    let (status, reply) = rx.post_token(Some("msg_replay"), &token, &body).await;
    let messages = rx.aws.messages().await.len();
    assert_eq!(
        messages, 1,
        "the replay 2 h later was answered {status} {reply} and enqueued a second message"
    );
}

/// BREAK 4 (information). 401/400 messages to unauthenticated callers describe the receiver's
/// configuration: which verification modes are on, the replay window, the JWT max age, whether
/// an issuer is pinned. Item 7 only removed the secret count.
#[tokio::test]
async fn unauthenticated_answers_do_not_describe_the_configuration() {
    let rx = Rx::new(ReceiveLimits::default()).await;
    let mut leaks = Vec::new();
    // The replay window, from an unauthenticated (wrongly signed) stale timestamp.
    let body = event("batch.succeeded", "x", json!({}));
    // No valid signature at all: only the timestamp is stale.
    let headers = vec![
        ("webhook-id".to_owned(), "msg_old".to_owned()),
        ("webhook-timestamp".to_owned(), (T0 - 10_000).to_string()),
        (
            "webhook-signature".to_owned(),
            "v1,bm90LWEtc2lnbmF0dXJl".to_owned(),
        ),
    ];
    let reply = rx.post(&headers, &body).await;
    if reply.body.contains("300") {
        leaks.push(format!("tolerance: {}", reply.body));
    }
    // The maximum token age, from a (validly signed, but any Gemini customer has those) old token.
    let old = rx
        .signer
        .sign(&rx.claims(json!({"iat": T0 - 3 * 86_400, "exp": T0 + 86_400})));
    let (_, reply) = rx.post_token(Some("msg_old_jwt"), &old, &body).await;
    if reply.to_string().contains("86700") {
        leaks.push(format!("max age: {reply}"));
    }
    assert!(leaks.is_empty(), "configuration leaked: {leaks:#?}");
}

// ---- the consumer's stores against DynamoDB's real limits --------------------------------------

/// A results store that refuses what real DynamoDB refuses but moto lets through: a partition
/// key over 2 048 bytes on *any* request (moto checks it only on writes).
struct RealDynamoKeyLimits {
    inner: DynamoDbResultsStore,
    refused: Mutex<Vec<usize>>,
}

impl RealDynamoKeyLimits {
    fn check(&self, job_id: &str) -> Result<(), StoreError> {
        let pk = format!("JOB#{job_id}").len();
        if pk > 2048 {
            self.refused
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(pk);
            return Err(StoreError::Unavailable(
                "ValidationException: Size of hashkey has exceeded the maximum size limit of 2048 bytes"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ResultsStore for RealDynamoKeyLimits {
    async fn load_job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.check(job_id)?;
        self.inner.load_job(job_id).await
    }
    async fn save_job(&self, record: &JobRecord) -> Result<bool, StoreError> {
        self.check(&record.job_id)?;
        self.inner.save_job(record).await
    }
    async fn put_rows(&self, rows: &[ResultRow]) -> Result<(), StoreError> {
        for r in rows {
            self.check(&r.job_id)?;
        }
        self.inner.put_rows(rows).await
    }
    async fn delete_rows_before(&self, job_id: &str, before_ms: i64) -> Result<u64, StoreError> {
        self.inner.delete_rows_before(job_id, before_ms).await
    }
    async fn count_rows_before(&self, job_id: &str, before_ms: i64) -> Result<u64, StoreError> {
        self.inner.count_rows_before(job_id, before_ms).await
    }
    async fn list_rows(&self, job_id: &str) -> Result<Vec<ResultRow>, StoreError> {
        self.inner.list_rows(job_id).await
    }
    async fn count_rows(&self, job_id: &str) -> Result<u64, StoreError> {
        self.inner.count_rows(job_id).await
    }
    async fn list_jobs(&self, limit: Option<usize>) -> Result<Vec<JobRecord>, StoreError> {
        self.inner.list_jobs(limit).await
    }
}

/// BREAK 5. A (forged) event whose `data.id` is a few KB long: the consumer sends it to DynamoDB
/// as a partition key before asking the API. Real DynamoDB refuses keys over 2 048 bytes with a
/// ValidationException, which the consumer treats as "store unavailable, retry": the message
/// is retried until the DLQ (alarm) without ever costing the API call that would drop it.
#[tokio::test]
async fn an_event_with_a_huge_id_is_dropped_not_retried_into_the_dlq() {
    let ddb = moto::dynamodb().await;
    let sqs = moto::sqs().await;
    let table = moto::unique_name("atk9-results");
    moto::create_results_table(&ddb, &table).await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("atk9-q"), 5, 30).await;
    let gemini = FakeGemini::start().await;
    let mut settings = GeminiSettings::new(FakeGemini::API_KEY);
    settings.base_url = gemini.base_url();
    let store = Arc::new(RealDynamoKeyLimits {
        inner: DynamoDbResultsStore::new(ddb.clone(), table),
        refused: Mutex::new(Vec::new()),
    });
    let consumer = Consumer::new(
        Arc::new(GeminiClient::new(settings, reqwest::Client::new())),
        Routes::single(store.clone()),
        Arc::new(SqsEventQueue::new(sqs, queue.url)),
        Arc::new(ManualClock::at_secs(T0)),
        ConsumeSettings::default(),
    );
    // What the receiver would enqueue for a signed body with a 3 000-character batch id
    // (the receiver accepts any length of `data.id`; the body limit is 1 MiB).
    let long = "a".repeat(3000);
    let body = event("batch.failed", &long, json!({}));
    let (ev, raw) =
        gemini_hooks::domain::event::Event::parse(&body, None).unwrap_or_else(|e| panic!("{e}"));
    let envelope = gemini_hooks::domain::envelope::QueueEnvelope::Webhook(
        gemini_hooks::domain::envelope::WebhookEnvelope {
            webhook_id: "msg_long".into(),
            received_at_ms: T0 * 1000,
            signature_mode: gemini_hooks::domain::envelope::SignatureMode::Static,
            bound: true,
            event: gemini_hooks::domain::envelope::EventSummary::from(&ev),
            raw_event: raw,
            user_metadata: None,
        },
    )
    .to_message()
    .unwrap_or_else(|e| panic!("{e}"));
    let result = consumer.handle_message(&envelope.body, None).await;
    let refused = store
        .refused
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert!(
        result.is_ok() && refused.is_empty(),
        "the consumer sent a {refused:?}-byte partition key to DynamoDB and the message fails \
         ({:?}; retryable: {:?}) with {} API calls",
        result.as_ref().err().map(ToString::to_string),
        result
            .as_ref()
            .err()
            .map(gemini_hooks::usecases::consume::ConsumeError::is_retryable),
        gemini.requests().len(),
    );
}

// ---- through the real binaries -----------------------------------------------------------------

struct Stack {
    aws: AwsStack,
    gemini: FakeGemini,
    signer: TestSigner,
    _jwks: JwksServer,
    results: String,
    signed_table: String,
    forged_table: String,
    receiver: RuntimeApi,
    _receiver: FunctionProcess,
    consumer: RuntimeApi,
    consumer_fn: FunctionProcess,
}

impl Stack {
    async fn new() -> Self {
        let aws = AwsStack::new("atk9", 30).await;
        let results = moto::unique_name("atk9-results");
        let signed_table = format!("{results}-signed");
        let forged_table = format!("{results}-forged");
        for t in [&results, &signed_table, &forged_table] {
            moto::create_results_table(&aws.ddb, t).await;
        }
        let gemini = FakeGemini::start().await;
        let signer = TestSigner::new("kid-atk", KEY_1_PEM);
        let jwks = JwksServer::start(&[&signer]).await;
        let receiver = RuntimeApi::start().await;
        let receiver_fn = spawn_function(
            &bin_path("receiver"),
            &receiver,
            &[
                ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
                ("WEBHOOK_JWKS_URL", jwks.url().to_owned()),
                ("WEBHOOK_JWT_AUDIENCE", AUD.to_owned()),
                ("DEDUPE_TABLE", aws.table.clone()),
                ("QUEUE_URL", aws.queue.url.clone()),
            ],
        )
        .await;
        let consumer = RuntimeApi::start().await;
        let routes = json!({"signed": signed_table, "forged": forged_table}).to_string();
        let consumer_fn = spawn_function(
            &bin_path("consumer"),
            &consumer,
            &[
                ("RESULTS_TABLE", results.clone()),
                ("ROUTES", routes),
                ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
                ("GEMINI_API_BASE_URL", gemini.base_url()),
                ("QUEUE_URL", aws.queue.url.clone()),
            ],
        )
        .await;
        Self {
            aws,
            gemini,
            signer,
            _jwks: jwks,
            results,
            signed_table,
            forged_table,
            receiver,
            _receiver: receiver_fn,
            consumer,
            consumer_fn,
        }
    }

    async fn deliver(&self, headers: &[(String, String)], body: &[u8]) -> (u16, Value) {
        let response = self
            .receiver
            .invoke(function_url_event("POST", headers, body, false), INVOKE)
            .await
            .unwrap_or_else(|e| panic!("receiver: {e}"));
        let (status, body, _) = url_reply(&response);
        (status, body)
    }

    async fn deliver_static(&self, id: &str, body: &[u8]) -> (u16, Value) {
        let headers = signed_headers(&test_secret(), id, now_secs(), body);
        self.deliver(&headers, body).await
    }

    async fn deliver_token(&self, id: Option<&str>, token: &str, body: &[u8]) -> (u16, Value) {
        let mut headers = vec![("webhook-signature".to_owned(), token.to_owned())];
        if let Some(id) = id {
            headers.push(("webhook-id".to_owned(), id.to_owned()));
        }
        self.deliver(&headers, body).await
    }

    fn claims(&self, extra: Value) -> Value {
        let now = now_secs();
        let mut claims = json!({"aud": AUD, "iat": now, "exp": now + 300});
        if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
            c.extend(e);
        }
        claims
    }

    /// One poll: every visible message to the consumer; failed ones made visible again at once.
    async fn consume(&self) -> Vec<String> {
        let messages = self.aws.messages().await;
        if messages.is_empty() {
            return Vec::new();
        }
        let response = self
            .consumer
            .invoke(sqs_event(&messages, &self.aws.queue.arn), INVOKE)
            .await
            .unwrap_or_else(|e| panic!("consumer: {e}\n{}", self.consumer_fn.logs()));
        let failed = failed_ids(&response);
        let (retry, done): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .partition(|m| failed.iter().any(|f| Some(f.as_str()) == m.message_id()));
        self.aws.delete(&done).await;
        for m in &retry {
            if let Some(handle) = m.receipt_handle() {
                self.aws
                    .sqs
                    .change_message_visibility()
                    .queue_url(&self.aws.queue.url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("change_message_visibility: {e:?}"));
            }
        }
        failed
    }

    /// Polls like Lambda would until the message is gone or has been received `max_receives`
    /// times (the template's `maxReceiveCount` is 5, then SQS moves it to the DLQ). Returns how
    /// many polls failed it.
    async fn consume_until_dlq(&self, max_receives: usize) -> usize {
        let mut failures = 0;
        for _ in 0..max_receives {
            if self.consume().await.is_empty() {
                break;
            }
            failures += 1;
        }
        failures
    }

    fn store(&self, table: &str) -> DynamoDbResultsStore {
        DynamoDbResultsStore::new(self.aws.ddb.clone(), table)
    }

    async fn job(&self, table: &str, id: &str) -> Option<JobRecord> {
        self.store(table)
            .load_job(id)
            .await
            .unwrap_or_else(|e| panic!("load_job {id}: {e}"))
    }

    async fn rows(&self, table: &str, id: &str) -> usize {
        self.store(table)
            .list_rows(id)
            .await
            .unwrap_or_else(|e| panic!("list_rows {id}: {e}"))
            .len()
    }
}

fn succeeded_with_file(gemini: &FakeGemini, batch: &str, lines: u64) {
    let file = format!("files/{batch}-results");
    gemini.put_file(&file, Bytes::from(sample_results(lines, 10, 0)));
    gemini.put_operation(operation_json(
        &format!("batches/{batch}"),
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File(file),
    ));
}

/// BREAK 6. The job id the consumer records and the batch it asks the API about differ:
/// `normalize_job_id` keeps `batches/victim/phantom` and `batches/x-batches/victim` whole, but
/// `get_batch` (→ `normalize_batch_id`) cuts the first at `/` and the second after its last
/// `batches/`, so the API's answer about `batches/victim` is recorded — and its whole results
/// file downloaded and ingested — under a job the API has never heard of. Every suffix is a new
/// webhook id and a new job: one forged message costs a full download and ingest, not one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_event_is_recorded_only_under_the_name_the_api_confirmed() {
    let s = Stack::new().await;
    succeeded_with_file(&s.gemini, "victim", 40);
    let phantoms = ["batches/victim/phantom", "batches/x-batches/victim"];
    for (i, id) in phantoms.iter().enumerate() {
        let body = event("batch.succeeded", id, json!({}));
        assert_eq!(
            s.deliver_static(&format!("msg_phantom_{i}"), &body).await.0,
            200
        );
    }
    assert!(s.consume().await.is_empty(), "{}", s.consumer_fn.logs());
    let mut recorded = Vec::new();
    for id in phantoms {
        if let Some(job) = s.job(&s.results, id).await {
            recorded.push(format!(
                "{id}: {} with {} rows",
                job.state.as_str(),
                s.rows(&s.results, id).await
            ));
        }
    }
    assert!(
        recorded.is_empty(),
        "jobs the API does not have were recorded from batches/victim's answer: {recorded:?}; \
         downloads of the victim's file: {}",
        s.gemini.requests_to("victim-results").len()
    );
}

/// BREAK 7. Same for interactions: `get_interaction` strips *every* leading `interactions/`
/// (`trim_start_matches`), so `interactions/interactions/i-victim` is recorded from the answer
/// about `interactions/i-victim`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interaction_event_is_recorded_only_under_the_name_the_api_confirmed() {
    let s = Stack::new().await;
    s.gemini.put_resource(
        "interactions/i-victim",
        json!({"id": "i-victim", "status": "completed", "outputs": [{"type": "text", "text": "hi"}]}),
    );
    let id = "interactions/interactions/i-victim";
    let body = event("interaction.completed", id, json!({}));
    assert_eq!(
        s.deliver_static("msg_phantom_interaction", &body).await.0,
        200
    );
    assert!(s.consume().await.is_empty(), "{}", s.consumer_fn.logs());
    let job = s.job(&s.results, id).await;
    assert!(
        job.is_none(),
        "{id} recorded as {:?} from the answer about interactions/i-victim",
        job.map(|j| j.state)
    );
}

/// BREAK 8. Events whose id the client refuses to put in a URL (an interaction naming a batch,
/// a batch id with a space, a video operation with `..`) fail as `gemini_fatal` *without being
/// acknowledged*: they are redelivered until SQS moves them to the DLQ (and the DLQ alarm
/// fires), never "dropped after one call" as the threat model says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_naming_unusable_ids_are_dropped_not_dead_lettered() {
    let s = Stack::new().await;
    let cases = [
        (
            "msg_cross_kind",
            event("interaction.completed", "batches/victim", json!({})),
        ),
        ("msg_space", event("batch.failed", "batches/a b", json!({}))),
        (
            "msg_traversal",
            event(
                "video.generated",
                "models/veo/operations/../../batches/victim",
                json!({}),
            ),
        ),
    ];
    for (id, body) in &cases {
        assert_eq!(s.deliver_static(id, body).await.0, 200, "{id}");
    }
    let failed_polls = s.consume_until_dlq(5).await;
    assert_eq!(
        (failed_polls, s.aws.queue_depth().await),
        (0, 0),
        "the forged events were failed on every one of {failed_polls} polls (they reach the DLQ); \
         API calls made: {}\n{}",
        s.gemini.requests().len(),
        s.consumer_fn.logs()
    );
}

/// BREAK 9. An event for another project's batch when the API answers 403 (Google APIs often
/// answer PERMISSION_DENIED rather than NOT_FOUND for a resource of another project): `Fatal`,
/// not `NotFound`, so the message fails on every receive — one API call per receive, then the
/// DLQ — instead of "a 404 and dropped after one call".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_a_batch_we_may_not_read_costs_one_call_and_is_dropped() {
    let s = Stack::new().await;
    s.gemini
        .inject("/v1beta/batches/foreign", vec![Fault::Status(403); 10]);
    let body = event("batch.succeeded", "foreign", json!({}));
    assert_eq!(s.deliver_static("msg_foreign", &body).await.0, 200);
    let failed_polls = s.consume_until_dlq(5).await;
    let calls = s.gemini.requests_to("/v1beta/batches/foreign").len();
    assert_eq!(
        (failed_polls, calls),
        (0, 1),
        "failed on {failed_polls} polls with {calls} API calls (→ DLQ)"
    );
}

/// BREAK 11 (residual risk wider than documented). `aud` as a list is accepted when *any* entry
/// is ours. A token Gemini mints for a job with several `webhook_config.uris` (if its `aud`
/// lists them) reaches every listed endpoint; the owner of another listed endpoint replays it
/// to us first, with an unbound body naming *our* batch, and its claims' `user_metadata`
/// routes our batch's rows into another of our tables. The genuine delivery of that token is
/// then `401 jwt_replayed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_several_audiences_cannot_route_our_batch() {
    let s = Stack::new().await;
    succeeded_with_file(&s.gemini, "ours", 9);
    let token = s.signer.sign(&s.claims(json!({
        "aud": ["https://attacker.example/hook", AUD],
        "jti": "multi-aud",
        "user_metadata": {"job_group": "forged"},
    })));
    let forged = event("batch.succeeded", "ours", json!({}));
    let (status, reply) = s
        .deliver_token(Some("msg_replayed_first"), &token, &forged)
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(s.consume().await.is_empty(), "{}", s.consumer_fn.logs());
    let routed = s.rows(&s.forged_table, "batches/ours").await;
    assert_eq!(
        routed, 0,
        "our batch's {routed} rows were routed to the `forged` table by a token that also names \
         another audience"
    );
    let _ = &s.signed_table;
}

/// WEAKNESS 13. `video.generated` is "confirmed" by *any* ACTIVE file of the project: the job
/// named by `data.id` is recorded SUCCEEDED with that file as its output, though the API never
/// reported a video job of that name (the file may be a batch's results or an uploaded input).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_event_is_not_confirmed_by_an_unrelated_file() {
    let s = Stack::new().await;
    s.gemini.put_resource(
        "files/someones-input",
        json!({"name": "files/someones-input", "state": "ACTIVE"}),
    );
    let body = event(
        "video.generated",
        "made-up-video",
        json!({"file_name": "files/someones-input"}),
    );
    assert_eq!(s.deliver_static("msg_made_up_video", &body).await.0, 200);
    assert!(s.consume().await.is_empty(), "{}", s.consumer_fn.logs());
    let job = s.job(&s.results, "videos/made-up-video").await;
    assert!(
        job.is_none(),
        "videos/made-up-video recorded as {:?} because an unrelated file exists",
        job.map(|j| (j.state, j.output))
    );
}

// ---- what held (these pass) ------------------------------------------------------------------

/// HELD. Ids that would reach another namespace are refused before any claim; ids differing
/// only in case are different deliveries (DynamoDB keys are case-sensitive); one token raced
/// under 12 ids at once enqueues exactly one message.
#[tokio::test]
async fn held_namespaces_case_and_concurrent_token_claims() {
    let rx = Rx::new(ReceiveLimits::default()).await;
    let body = event("batch.succeeded", "held", json!({}));
    for id in [
        "dynamic msg_1",
        "token jti:x",
        "recovery batches/a SUCCEEDED",
        "a\tb",
        "a,b",
        &"x".repeat(257),
    ] {
        let headers = signed_headers(&test_secret(), id, T0, &body);
        let reply = rx.post(&headers, &body).await;
        assert_eq!(reply.status, 400, "{id:?}: {}", reply.body);
    }
    // Non-ASCII (U+00A0, U+2028) cannot even be a header string.
    for raw in [&b"msg\xc2\xa0x"[..], &b"msg\xe2\x80\xa8x"[..]] {
        let mut map = header_map(&signed_headers(&test_secret(), "placeholder", T0, &body));
        map.insert(
            "webhook-id",
            http::HeaderValue::from_bytes(raw).unwrap_or_else(|e| panic!("{e}")),
        );
        let reply = handle(&rx.receiver, &Method::POST, &map, &body, None).await;
        assert_eq!(reply.status, 400, "{}", reply.body);
    }
    for id in ["Msg_case", "msg_case"] {
        let headers = signed_headers(&test_secret(), id, T0, &body);
        assert_eq!(rx.post(&headers, &body).await.status, 200, "{id}");
    }
    assert_eq!(rx.aws.messages().await.len(), 2);

    let token = rx.signer.sign(&rx.claims(json!({"jti": "raced"})));
    let rx = Arc::new(rx);
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (rx, token, body) = (Arc::clone(&rx), token.clone(), body.clone());
            tokio::spawn(async move {
                rx.post_token(Some(&format!("race_{i}")), &token, &body)
                    .await
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        let (status, reply) = t.await.unwrap_or_else(|e| panic!("{e}"));
        match answer(status, &reply) {
            (200, s) if s == "accepted" => accepted += 1,
            (401, s) if s == "jwt_replayed" => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted, 1);
    assert_eq!(rx.aws.messages().await.len(), 1);
}

/// BREAK 10. `user_metadata` is written to DynamoDB as native maps and numbers. A value DynamoDB
/// cannot store (a number above 9.99e125 — refused by moto and AWS; real AWS also refuses maps
/// nested deeper than 32, which moto accepts and the receiver allows up to 64) makes every save
/// of the job and of its rows fail as "store unavailable": the batch's results are never
/// ingested, the message goes to the DLQ. The metadata comes from whoever created the job
/// (static) or from the token's claims (dynamic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_dynamodb_cannot_store_does_not_cost_a_batch_its_results() {
    let s = Stack::new().await;
    succeeded_with_file(&s.gemini, "meta", 12);
    let body = br#"{"type":"batch.succeeded","version":"v1","data":{"id":"meta","user_metadata":{"job_group":"signed","budget":1e200}}}"#;
    assert_eq!(s.deliver_static("msg_meta", body).await.0, 200);
    let failed_polls = s.consume_until_dlq(5).await;
    let rows = s.rows(&s.signed_table, "batches/meta").await;
    assert_eq!(
        (failed_polls, rows),
        (0, 12),
        "the message failed on {failed_polls} polls and {rows} rows were ingested\n{}",
        s.consumer_fn.logs()
    );
}

/// BREAK 12. The receiver accepts bodies up to `WEBHOOK_MAX_BODY_BYTES` (1 MiB) but puts the
/// event on SQS twice over (`raw_event` *and* `user_metadata`), and SQS stops at 256 KiB. A
/// genuine static delivery whose job carries ~130 KB of `user_metadata` is answered
/// `413 enqueue_too_large` on every retry: never enqueued, and (DESIGN §4, issue 9 item 6) a
/// 4xx makes Gemini retry for 24 h and risks the project's static webhook being disabled.
#[tokio::test]
async fn a_signed_delivery_under_the_body_limit_is_enqueued() {
    let rx = Rx::new(ReceiveLimits::default()).await;
    let note = "x".repeat(135 * 1024);
    let body = event(
        "batch.succeeded",
        "big-meta",
        json!({"user_metadata": {"job_group": "signed", "note": note}}),
    );
    assert!(body.len() < ReceiveLimits::default().max_body_bytes);
    let headers = signed_headers(&test_secret(), "msg_big_meta", T0, &body);
    let reply = rx.post(&headers, &body).await;
    assert_eq!(
        reply.status,
        200,
        "a {}-byte signed body (limit {}) was answered {}",
        body.len(),
        ReceiveLimits::default().max_body_bytes,
        reply.body
    );
}

/// BREAK 10, continued. Once the metadata above dead-lettered the message, the reconciler found
/// no job record and recovered the batch *without* its `user_metadata`: the rows landed in the
/// default table instead of the job group's. With metadata stored as JSON text the message no
/// longer fails, its rows land in the job group's table, and the reconciler counts the batch as
/// handled instead of recovering it a second time elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_metadata_dynamodb_refuses_as_a_map_lands_in_its_own_table() {
    let s = Stack::new().await;
    let finished =
        chrono::DateTime::from_timestamp_millis(reliability_common::now_ms() - 2 * 3_600_000)
            .unwrap_or_else(|| panic!("time"))
            .to_rfc3339();
    let file = "files/meta2-results".to_owned();
    s.gemini
        .put_file(&file, Bytes::from(sample_results(6, 10, 0)));
    let mut op = operation_json(
        "batches/meta2",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File(file),
    );
    op["metadata"]["updateTime"] = json!(finished);
    op["metadata"]["endTime"] = json!(finished);
    s.gemini.put_operation(op);
    let body = br#"{"type":"batch.succeeded","version":"v1","data":{"id":"meta2","user_metadata":{"job_group":"signed","budget":1e200}}}"#;
    assert_eq!(s.deliver_static("msg_meta2", body).await.0, 200);
    assert_eq!(
        s.consume_until_dlq(5).await,
        0,
        "the delivery failed\n{}",
        s.consumer_fn.logs()
    );

    let api = RuntimeApi::start().await;
    let routes = json!({"signed": s.signed_table, "forged": s.forged_table}).to_string();
    let reconciler = spawn_function(
        &bin_path("reconciler"),
        &api,
        &[
            ("RESULTS_TABLE", s.results.clone()),
            ("ROUTES", routes),
            ("DEDUPE_TABLE", s.aws.table.clone()),
            ("QUEUE_URL", s.aws.queue.url.clone()),
            ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
            ("GEMINI_API_BASE_URL", s.gemini.base_url()),
        ],
    )
    .await;
    let out = api
        .invoke(json!({"look_back_hours": 24}), INVOKE)
        .await
        .unwrap_or_else(|e| panic!("reconciler: {e}\n{}", reconciler.logs()));
    assert_eq!(
        (&out["recovered"], &out["handled"]),
        (&json!([]), &json!(1)),
        "{out}"
    );
    assert!(s.consume().await.is_empty(), "{}", s.consumer_fn.logs());
    let (signed, default) = (
        s.rows(&s.signed_table, "batches/meta2").await,
        s.rows(&s.results, "batches/meta2").await,
    );
    assert_eq!(
        (signed, default),
        (6, 0),
        "recovered rows: {signed} in the job group's table, {default} in the default table"
    );
}
