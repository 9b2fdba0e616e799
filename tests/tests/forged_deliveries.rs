//! Unforgeable deliveries, through the real `receiver`, `consumer` and `reconciler` binaries on
//! moto with a fake Gemini API: every attack of the security review as a test.
//!
//! The threat model (docs/RELIABILITY.md, "Threat model"): every Gemini customer's dynamic
//! tokens are signed by the same JWKS, so a valid token proves only that *some* Gemini job
//! produced it. Dynamic mode is therefore opt-in by audience, tokens are fresh and single-use,
//! signed data wins over the body, and the consumer lets the Gemini API decide every job's state.

mod reliability_common;

use std::time::Duration;

use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::adapters::telemetry::validate_emf;
use gemini_hooks::domain::jobs::{JobState, RowStatus};
use gemini_hooks::ports::ResultsStore;
use gemini_hooks::ports::metrics::metric;
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::delivery::{
    TEST_SECRET, batch_succeeded_body, function_url_event, signed_headers, test_secret,
};
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, Fault, OutputSpec, operation_json, sample_results,
};
use gemini_hooks_tests::jwt::{JwksServer, KEY_1_PEM, KEY_2_PEM, TestSigner};
use gemini_hooks_tests::moto;
use gemini_hooks_tests::runtime_api::{FunctionProcess, RuntimeApi, spawn_function};
use reliability_common::{AwsStack, failed_ids, now_ms, now_secs, sqs_event, url_reply};
use serde_json::{Value, json};

/// The audience our receiver accepts.
const AUD: &str = "https://hooks.example/gemini";
const INVOKE: Duration = Duration::from_secs(60);

struct Stack {
    aws: AwsStack,
    gemini: FakeGemini,
    jwks: JwksServer,
    signer: TestSigner,
    results: String,
    signed_table: String,
    forged_table: String,
    receiver: RuntimeApi,
    _receiver: FunctionProcess,
    consumer: RuntimeApi,
    consumer_fn: FunctionProcess,
}

impl Stack {
    /// The receiver with the static test secret and, when `audience` is set, dynamic mode; the
    /// consumer with ROUTES `signed` and `forged` to their own tables.
    async fn new(audience: Option<&str>) -> Self {
        let aws = AwsStack::new("forge", 30).await;
        let results = moto::unique_name("forge-results");
        let signed_table = format!("{results}-signed");
        let forged_table = format!("{results}-forged");
        for t in [&results, &signed_table, &forged_table] {
            moto::create_results_table(&aws.ddb, t).await;
        }
        let gemini = FakeGemini::start().await;
        let signer = TestSigner::new("kid-forge", KEY_1_PEM);
        let jwks = JwksServer::start(&[&signer]).await;

        let receiver = RuntimeApi::start().await;
        let mut env = vec![
            ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
            ("WEBHOOK_JWKS_URL", jwks.url().to_owned()),
            ("WEBHOOK_JWT_AUDIENCE", audience.unwrap_or("").to_owned()),
            ("DEDUPE_TABLE", aws.table.clone()),
            ("QUEUE_URL", aws.queue.url.clone()),
        ];
        env.retain(|(_, v)| !v.is_empty());
        let receiver_fn = spawn_function(&bin_path("receiver"), &receiver, &env).await;

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
            jwks,
            signer,
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

    /// Lambda's poller: every visible message in one batch to the consumer; the ones it did not
    /// report as failed are deleted, the failed ones made visible again at once (the test does
    /// not wait out the consumer's backoff). Returns the failed message ids.
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

    fn store(&self, table: &str) -> DynamoDbResultsStore {
        DynamoDbResultsStore::new(self.aws.ddb.clone(), table)
    }

    async fn job(&self, table: &str, id: &str) -> Option<gemini_hooks::domain::jobs::JobRecord> {
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

    /// Claims for a token our receiver accepts, plus `extra`.
    fn claims(&self, extra: Value) -> Value {
        let now = now_secs();
        let mut claims = json!({"aud": AUD, "iat": now, "exp": now + 300});
        if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
            for (k, v) in e {
                if v.is_null() {
                    c.remove(&k);
                } else {
                    c.insert(k, v);
                }
            }
        }
        claims
    }

    /// EMF documents the consumer printed that carry `name`.
    fn consumer_metric(&self, name: &str) -> Vec<Value> {
        self.consumer_fn
            .stdout()
            .lines()
            .filter(|l| l.contains("\"_aws\""))
            .filter_map(|l| validate_emf(l).ok())
            .filter(|d| d.get(name).is_some())
            .collect()
    }
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

fn succeeded_with_file(gemini: &FakeGemini, batch: &str, lines: u64) {
    let file = format!("files/{batch}-results");
    gemini.put_file(&file, Bytes::from(sample_results(lines, 10, 0)));
    gemini.put_operation(operation_json(
        &format!("batches/{batch}"),
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File(file),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_audience_no_token_is_accepted_whoever_signed_it() {
    let s = Stack::new(None).await;
    // A foreign token with a forged body, and even a token from the configured JWKS.
    let foreign = TestSigner::new("kid-attacker", KEY_2_PEM).sign(&s.claims(json!({})));
    let ours = s.signer.sign(&s.claims(json!({})));
    let forged = event("batch.failed", "victim", json!({"error_message": "forged"}));
    for token in [foreign, ours] {
        let (status, reply) = s.deliver_token(Some("msg_noaud"), &token, &forged).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (401, Some("dynamic_not_configured")),
            "{reply}"
        );
    }
    assert_eq!(s.aws.queue_depth().await, 0);
    assert_eq!(
        s.jwks.hits(),
        0,
        "dynamic mode off: the JWKS is never fetched"
    );
    // Static deliveries still work.
    let (status, _) = s
        .deliver_static("msg_static_ok", &batch_succeeded_body("ok"))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_must_name_us_be_fresh_and_be_used_once() {
    let s = Stack::new(Some(AUD)).await;
    let body = event("batch.succeeded", "tok", json!({}));
    let now = now_secs();
    let cases = [
        (
            "another audience",
            s.claims(json!({"aud": "https://attacker.example/hook"})),
            "jwt_claim_mismatch",
        ),
        (
            "three days old with a thirty-day exp",
            s.claims(json!({"iat": now - 3 * 86_400, "exp": now + 30 * 86_400})),
            "jwt_too_old",
        ),
        ("no iat", s.claims(json!({"iat": null})), "invalid_jwt"),
    ];
    for (name, claims, code) in cases {
        let token = s.signer.sign(&claims);
        let (status, reply) = s.deliver_token(Some("msg_bad"), &token, &body).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (401, Some(code)),
            "{name}: {reply}"
        );
    }
    assert_eq!(s.aws.queue_depth().await, 0);

    // One token under three ids and two bodies: exactly one message.
    let token = s.signer.sign(&s.claims(json!({"jti": "one-token"})));
    let other = event("batch.succeeded", "tok-other", json!({}));
    let mut answers = Vec::new();
    for (id, b) in [
        ("msg_t1", &body),
        ("msg_t1", &body),
        ("msg_t2", &body),
        ("msg_t3", &other),
        ("msg_t1", &other),
    ] {
        let (status, reply) = s.deliver_token(Some(id), &token, b).await;
        answers.push((
            status,
            reply["status"]
                .as_str()
                .or(reply["error"].as_str())
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    assert_eq!(
        answers,
        [
            (200, "accepted".to_owned()),
            (200, "duplicate".to_owned()),
            (401, "jwt_replayed".to_owned()),
            (401, "jwt_replayed".to_owned()),
            (401, "jwt_replayed".to_owned()),
        ]
    );
    assert_eq!(
        s.aws.queue_depth().await,
        1,
        "one token enqueues one delivery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_metadata_routes_the_job_and_the_body_cannot() {
    let s = Stack::new(Some(AUD)).await;
    succeeded_with_file(&s.gemini, "routed-a", 12);
    succeeded_with_file(&s.gemini, "routed-b", 7);
    let forged_meta = json!({"user_metadata": {"job_group": "forged"}});

    // (a) The claims carry the event: they are the event, the body is ignored.
    let token = s.signer.sign(&s.claims(json!({
        "jti": "claims-are-the-event",
        "type": "batch.succeeded",
        "data": {"id": "routed-a", "user_metadata": {"job_group": "signed"}},
    })));
    let body = event("batch.failed", "routed-b", forged_meta.clone());
    let (status, reply) = s.deliver_token(Some("msg_route_a"), &token, &body).await;
    assert_eq!(status, 200, "{reply}");

    // (b) No event in the claims: the body is unbound, but the claims' metadata still wins.
    let token = s.signer.sign(&s.claims(json!({
        "jti": "claims-metadata-only",
        "user_metadata": {"job_group": "signed"},
    })));
    let body = event("batch.succeeded", "routed-b", forged_meta);
    let (status, reply) = s.deliver_token(Some("msg_route_b"), &token, &body).await;
    assert_eq!(status, 200, "{reply}");

    assert!(s.consume().await.is_empty(), "{}", s.consumer_fn.logs());
    for (batch, lines) in [("batches/routed-a", 12), ("batches/routed-b", 7)] {
        assert_eq!(s.rows(&s.signed_table, batch).await, lines, "{batch}");
        assert_eq!(s.rows(&s.forged_table, batch).await, 0, "{batch}");
        assert_eq!(s.rows(&s.results, batch).await, 0, "{batch}");
        let job = s
            .job(&s.signed_table, batch)
            .await
            .unwrap_or_else(|| panic!("{batch} recorded"));
        assert_eq!(job.state, JobState::Succeeded);
        assert_eq!(job.job_group.as_deref(), Some("signed"));
    }
    assert!(s.job(&s.forged_table, "batches/routed-b").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_event_the_api_contradicts_does_not_cost_the_batch_its_results() {
    let s = Stack::new(Some(AUD)).await;
    succeeded_with_file(&s.gemini, "victim", 40);

    // A forged (or stale) batch.failed: the API says SUCCEEDED, so all rows are ingested.
    let forged = event(
        "batch.failed",
        "victim",
        json!({"error_code": 13, "error_message": "forged"}),
    );
    assert_eq!(s.deliver_static("msg_forged_fail", &forged).await.0, 200);
    assert!(s.consume().await.is_empty(), "{}", s.consumer_fn.logs());
    let job = s
        .job(&s.results, "batches/victim")
        .await
        .unwrap_or_else(|| panic!("job recorded"));
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.counts.rows_ingested, 40);
    assert!(job.error.is_none(), "the event's error is not recorded");
    assert_ne!(job.last_webhook_id.as_deref(), Some("msg_forged_fail"));
    assert_eq!(s.rows(&s.results, "batches/victim").await, 40);
    assert_eq!(s.consumer_metric(metric::EVENTS_CONTRADICTED).len(), 1);

    // The genuine batch.succeeded afterwards changes nothing.
    let genuine = batch_succeeded_body("victim");
    assert_eq!(s.deliver_static("msg_genuine", &genuine).await.0, 200);
    assert!(s.consume().await.is_empty());
    assert_eq!(s.rows(&s.results, "batches/victim").await, 40);

    // A failure event for a batch this project does not have: one API call, nothing recorded.
    let unknown = event("batch.failed", "not-ours", json!({}));
    assert_eq!(s.deliver_static("msg_not_ours", &unknown).await.0, 200);
    assert!(s.consume().await.is_empty());
    assert!(s.job(&s.results, "batches/not-ours").await.is_none());
    assert_eq!(s.gemini.requests_to("/v1beta/batches/not-ours").len(), 1);
    assert_eq!(s.consumer_metric(metric::EVENTS_CONTRADICTED).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_event_naming_a_batch_never_touches_the_batch() {
    let s = Stack::new(Some(AUD)).await;
    s.gemini.put_operation(operation_json(
        "batches/shared-id",
        "BATCH_STATE_RUNNING",
        OutputSpec::None,
    ));
    s.gemini.put_resource(
        "files/shared-id-results",
        json!({"name": "files/shared-id-results", "state": "ACTIVE", "mimeType": "application/json"}),
    );
    s.gemini.put_resource(
        "files/clip-1",
        json!({"name": "files/clip-1", "state": "ACTIVE", "mimeType": "video/mp4"}),
    );
    for (id, video, extra) in [
        // A video job is `videos/<what the event named>`: never the batch of that name.
        ("msg_video_1", "batches/shared-id", json!({})),
        (
            "msg_video_2",
            "batches/shared-id",
            json!({"file_name": "files/shared-id-results"}),
        ),
        // An existing file that is not a video confirms nothing.
        (
            "msg_video_3",
            "made-up",
            json!({"file_name": "files/shared-id-results"}),
        ),
        // A real video file does.
        (
            "msg_video_4",
            "clip-1",
            json!({"file_name": "files/clip-1"}),
        ),
    ] {
        let body = event("video.generated", video, extra);
        assert_eq!(s.deliver_static(id, &body).await.0, 200);
    }
    assert!(s.consume().await.is_empty(), "{}", s.consumer_fn.logs());
    assert!(
        s.job(&s.results, "batches/shared-id").await.is_none(),
        "the batch is untouched"
    );
    for unconfirmed in ["videos/batches/shared-id", "videos/made-up"] {
        assert!(
            s.job(&s.results, unconfirmed).await.is_none(),
            "{unconfirmed}"
        );
    }
    let video = s
        .job(&s.results, "videos/clip-1")
        .await
        .unwrap_or_else(|| panic!("the real video is recorded"));
    assert_eq!(video.state, JobState::Succeeded);
    assert_eq!(s.consumer_metric(metric::EVENTS_CONTRADICTED).len(), 3);

    // When the batch really succeeds, its results arrive as usual.
    succeeded_with_file(&s.gemini, "shared-id", 5);
    let genuine = batch_succeeded_body("shared-id");
    assert_eq!(s.deliver_static("msg_batch", &genuine).await.0, 200);
    assert!(s.consume().await.is_empty());
    assert_eq!(s.rows(&s.results, "batches/shared-id").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_being_down_during_a_failure_event_means_retry_not_record() {
    let s = Stack::new(Some(AUD)).await;
    s.gemini.put_operation(operation_json(
        "batches/flaky",
        "BATCH_STATE_FAILED",
        OutputSpec::Error(3, "the input file is invalid".into()),
    ));
    s.gemini
        .inject("/v1beta/batches/flaky", vec![Fault::Status(503); 5]);
    let body = event(
        "batch.failed",
        "flaky",
        json!({"error_code": 99, "error_message": "from the event"}),
    );
    assert_eq!(s.deliver_static("msg_flaky", &body).await.0, 200);
    let failed = s.consume().await;
    assert_eq!(failed.len(), 1, "{}", s.consumer_fn.logs());
    assert!(
        s.job(&s.results, "batches/flaky").await.is_none(),
        "never recorded from the event alone"
    );

    // Redelivered once the API answers: the API's error is what is recorded.
    s.gemini
        .inject("/v1beta/batches/flaky", Vec::<Fault>::new());
    assert!(s.consume().await.is_empty(), "{}", s.consumer_fn.logs());
    let job = s
        .job(&s.results, "batches/flaky")
        .await
        .unwrap_or_else(|| panic!("recorded after the retry"));
    assert_eq!(job.state, JobState::Failed);
    let error = job.error.unwrap_or_else(|| panic!("error recorded"));
    assert_eq!(
        (error.message.as_str(), error.source.as_str()),
        ("the input file is invalid", "operation")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_with_a_reconcile_id_cannot_stop_a_recovery() {
    let s = Stack::new(Some(AUD)).await;
    let finished = chrono::DateTime::from_timestamp_millis(now_ms() - 2 * 3_600_000)
        .unwrap_or_else(|| panic!("time"))
        .to_rfc3339();
    let mut op = operation_json(
        "batches/missed",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::Inline(vec![gemini_hooks_tests::fake_gemini::inline_success(
            "k1", "hello",
        )]),
    );
    op["metadata"]["updateTime"] = json!(finished);
    op["metadata"]["endTime"] = json!(finished);
    s.gemini.put_operation(op);

    // The attacker (here: anyone who can get a delivery accepted) takes the reconciler's id.
    let decoy = batch_succeeded_body("decoy");
    let (status, reply) = s
        .deliver_static("reconcile:batches/missed:SUCCEEDED", &decoy)
        .await;
    assert_eq!((status, reply["status"].as_str()), (200, Some("accepted")));
    let dynamic = s.signer.sign(&s.claims(json!({"jti": "dyn-reconcile"})));
    let (status, _) = s
        .deliver_token(Some("reconcile:batches/missed:SUCCEEDED"), &dynamic, &decoy)
        .await;
    assert_eq!(status, 200);

    let api = RuntimeApi::start().await;
    let reconciler = spawn_function(
        &bin_path("reconciler"),
        &api,
        &[
            ("RESULTS_TABLE", s.results.clone()),
            ("ROUTES", String::new()),
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
    assert_eq!(out["recovered"], json!(["batches/missed"]), "{out}");
    s.consume().await;
    let job = s
        .job(&s.results, "batches/missed")
        .await
        .unwrap_or_else(|| panic!("recovered and ingested"));
    assert_eq!(job.state, JobState::Succeeded);
    let rows = s
        .store(&s.results)
        .list_rows("batches/missed")
        .await
        .unwrap_or_default();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, RowStatus::Ok);
}
