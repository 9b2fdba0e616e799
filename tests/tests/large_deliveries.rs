//! Deliveries larger than an SQS message (256 KiB) through the real `receiver` and `consumer`
//! binaries: the body waits in S3 (moto), the queue carries a pointer, the consumer resolves it,
//! ingests, and deletes it. Nothing under `WEBHOOK_MAX_BODY_BYTES` is refused for size.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::adapters::aws::sqs::MAX_MESSAGE_BYTES;
use gemini_hooks::config::ReceiveLimits;
use gemini_hooks::domain::jobs::JobState;
use gemini_hooks::ports::ResultsStore;
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::delivery::{TEST_SECRET, function_url_event, signed_headers, test_secret};
use gemini_hooks_tests::fake_gemini::{FakeGemini, OutputSpec, operation_json, sample_results};
use gemini_hooks_tests::moto::{self, TestQueue};
use gemini_hooks_tests::runtime_api::{
    FunctionProcess, RuntimeApi, failed_ids, spawn_function, sqs_record,
};
use serde_json::{Value, json};

const INVOKE: Duration = Duration::from_secs(60);

struct Stack {
    ddb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    bucket: String,
    results: String,
    queue: TestQueue,
    gemini: FakeGemini,
    receiver: RuntimeApi,
    receiver_fn: FunctionProcess,
    consumer: RuntimeApi,
    consumer_fn: FunctionProcess,
}

impl Stack {
    /// The stack with its payload bucket created (or not, to see the receiver fail closed).
    async fn new(create_bucket: bool) -> Self {
        let ddb = moto::dynamodb().await;
        let sqs = moto::sqs().await;
        let s3 = moto::s3().await;
        let dedupe = moto::unique_name("large-dedupe");
        let results = moto::unique_name("large-results");
        let bucket = moto::unique_name("large-payloads");
        moto::create_dedupe_table(&ddb, &dedupe).await;
        moto::create_results_table(&ddb, &results).await;
        if create_bucket {
            moto::create_bucket(&s3, &bucket).await;
        }
        let queue = moto::create_queue(&sqs, &moto::unique_name("large-events"), 5, 30).await;
        let gemini = FakeGemini::start().await;
        let receiver = RuntimeApi::start().await;
        let receiver_fn = spawn_function(
            &bin_path("receiver"),
            &receiver,
            &[
                ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
                ("DEDUPE_TABLE", dedupe),
                ("QUEUE_URL", queue.url.clone()),
                ("PAYLOAD_BUCKET", bucket.clone()),
            ],
        )
        .await;
        let consumer = RuntimeApi::start().await;
        let consumer_fn = spawn_function(
            &bin_path("consumer"),
            &consumer,
            &[
                ("RESULTS_TABLE", results.clone()),
                ("ROUTES", String::new()),
                ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
                ("GEMINI_API_BASE_URL", gemini.base_url()),
                ("QUEUE_URL", queue.url.clone()),
                ("PAYLOAD_BUCKET", bucket.clone()),
            ],
        )
        .await;
        Self {
            ddb,
            sqs,
            s3,
            bucket,
            results,
            queue,
            gemini,
            receiver,
            receiver_fn,
            consumer,
            consumer_fn,
        }
    }

    async fn deliver(&self, id: &str, body: &[u8]) -> (u16, Value) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let headers = signed_headers(&test_secret(), id, now, body);
        let reply = self
            .receiver
            .invoke(function_url_event("POST", &headers, body, false), INVOKE)
            .await
            .unwrap_or_else(|e| panic!("receiver: {e}\n{}", self.receiver_fn.logs()));
        let answer: Value =
            serde_json::from_str(reply["body"].as_str().unwrap_or("null")).unwrap_or_default();
        (
            u16::try_from(reply["statusCode"].as_u64().unwrap_or(0)).unwrap_or(0),
            answer,
        )
    }

    /// Invokes the consumer with `messages` as one SQS batch; returns the failed message ids.
    async fn consume(&self, messages: &[aws_sdk_sqs::types::Message]) -> Vec<String> {
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                sqs_record(
                    m.message_id().unwrap_or_default(),
                    m.body().unwrap_or_default(),
                    &self.queue.arn,
                )
            })
            .collect();
        let response = self
            .consumer
            .invoke(json!({ "Records": records }), INVOKE)
            .await
            .unwrap_or_else(|e| panic!("consumer: {e}\n{}", self.consumer_fn.logs()));
        failed_ids(&response)
    }

    fn store(&self) -> DynamoDbResultsStore {
        DynamoDbResultsStore::new(self.ddb.clone(), self.results.clone())
    }
}

/// A `batch.succeeded` whose job carries `note_bytes` of `user_metadata`: the way a genuine
/// delivery grows (the metadata is the job creator's, up to what the body limit allows).
fn large_body(batch: &str, note_bytes: usize) -> Vec<u8> {
    json!({
        "type": "batch.succeeded",
        "version": "v1",
        "timestamp": "2026-12-01T12:00:00Z",
        "data": {
            "id": batch,
            "output_file_uri": format!("files/{batch}-results"),
            "user_metadata": {"note": "x".repeat(note_bytes)}
        }
    })
    .to_string()
    .into_bytes()
}

fn succeeded_with_file(gemini: &FakeGemini, batch: &str, lines: u64) {
    let file = format!("files/{batch}-results");
    gemini.put_file(&file, Bytes::from(sample_results(lines, 20, 0)));
    gemini.put_operation(operation_json(
        &format!("batches/{batch}"),
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File(file),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_larger_than_an_sqs_message_is_stored_ingested_and_cleaned_up() {
    let s = Stack::new(true).await;
    succeeded_with_file(&s.gemini, "large", 40);
    let body = large_body("large", 900 * 1024);
    assert!(body.len() > MAX_MESSAGE_BYTES && body.len() < ReceiveLimits::default().max_body_bytes);

    let (status, answer) = s.deliver("msg_large", &body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "a {}-byte signed body: {answer}\n{}",
        body.len(),
        s.receiver_fn.logs()
    );
    // A retry of the same delivery is a duplicate and stores nothing more.
    assert_eq!(s.deliver("msg_large", &body).await.0, 200);

    let messages = moto::drain(&s.sqs, &s.queue.url).await;
    assert_eq!(messages.len(), 1, "one message for one event");
    let pointer: Value = serde_json::from_str(messages[0].body().unwrap_or_default())
        .unwrap_or_else(|e| panic!("pointer: {e}"));
    assert_eq!(pointer["kind"], "stored", "{pointer}");
    assert!(
        messages[0].body().unwrap_or_default().len() < 2048,
        "the queue carries a pointer, not the body"
    );
    let stored = moto::bucket_keys(&s.s3, &s.bucket).await;
    assert_eq!(stored.len(), 1, "{stored:?}");

    assert!(
        s.consume(&messages).await.is_empty(),
        "{}",
        s.consumer_fn.logs()
    );
    let store = s.store();
    let job = store
        .load_job("batches/large")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no job record"));
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.counts.rows_ingested, 40);
    // The metadata arrived whole, but a job record must fit a DynamoDB item (400 KB): past
    // MAX_USER_METADATA_BYTES only its size is kept.
    assert_eq!(
        (job.user_metadata.is_none(), job.user_metadata_omitted_bytes),
        (
            true,
            Some(u64::try_from(900 * 1024 + r#"{"note":""}"#.len()).unwrap_or(0))
        ),
        "{job:?}"
    );
    assert!(
        moto::bucket_keys(&s.s3, &s.bucket).await.is_empty(),
        "a handled payload is deleted"
    );

    // SQS delivers at least once: the same pointer again finds its payload gone and is done.
    assert!(
        s.consume(&messages).await.is_empty(),
        "{}",
        s.consumer_fn.logs()
    );
    assert_eq!(
        store
            .count_rows("batches/large")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        40
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_altered_in_the_bucket_is_refused_not_ingested() {
    let s = Stack::new(true).await;
    succeeded_with_file(&s.gemini, "altered", 5);
    let body = large_body("altered", 400 * 1024);
    assert_eq!(s.deliver("msg_altered", &body).await.0, 200);
    let messages = moto::drain(&s.sqs, &s.queue.url).await;
    let keys = moto::bucket_keys(&s.s3, &s.bucket).await;
    assert_eq!((messages.len(), keys.len()), (1, 1));
    // Someone with write access to the bucket swaps the body for a forged event.
    let forged = json!({"kind": "webhook", "webhook_id": "forged", "raw_event": {}}).to_string();
    s.s3.put_object()
        .bucket(&s.bucket)
        .key(&keys[0])
        .body(ByteStream::from(forged.into_bytes()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));

    let failed = s.consume(&messages).await;
    assert_eq!(failed.len(), 1, "the message stays failed (to the DLQ)");
    assert!(
        s.store()
            .load_job("batches/altered")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none(),
        "nothing was recorded from the altered payload"
    );
    assert!(
        s.consumer_fn.logs().contains("SHA-256"),
        "{}",
        s.consumer_fn.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_delivery_is_not_acknowledged_while_the_bucket_is_unavailable() {
    let s = Stack::new(false).await;
    succeeded_with_file(&s.gemini, "nobucket", 3);
    let body = large_body("nobucket", 300 * 1024);
    let (status, answer) = s.deliver("msg_nobucket", &body).await;
    assert_eq!(status, 503, "{answer}");
    assert!(moto::drain(&s.sqs, &s.queue.url).await.is_empty());

    // The bucket is back: Gemini's retry of the same delivery goes through (the failed attempt
    // released its dedupe claim).
    moto::create_bucket(&s.s3, &s.bucket).await;
    let (status, answer) = s.deliver("msg_nobucket", &body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );
    let messages = moto::drain(&s.sqs, &s.queue.url).await;
    assert_eq!(messages.len(), 1);
    assert!(
        s.consume(&messages).await.is_empty(),
        "{}",
        s.consumer_fn.logs()
    );
    assert_eq!(
        s.store()
            .count_rows("batches/nobucket")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        3
    );
}
