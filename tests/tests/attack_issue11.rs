//! Hostile review of issue 11 ("the consumer at production scale"): forged, oversized, replayed
//! and starved inputs held against the real AWS limits, not moto's kinder ones.
//!
//! Each test is one attack of the session. `BROKE:` says what it broke before the fix (and
//! where); `HOLDS:` marks an attack that was already handled.
//!
//! Needs moto (`AWS_ENDPOINT_URL`), like `consume_moto.rs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::adapters::aws::s3_payloads::S3PayloadStore;
use gemini_hooks::adapters::aws::sqs::{MAX_MESSAGE_BYTES, SqsEventQueue};
use gemini_hooks::config::{ConfigError, ConsumerConfig, Env};
use gemini_hooks::domain::envelope::StoredPayload;
use gemini_hooks::domain::event::JobKind;
use gemini_hooks::domain::job_events::{DETAIL_TYPE, JobFinished, SOURCE};
use gemini_hooks::domain::jobs::{JobErrorInfo, JobRecord, JobState};
use gemini_hooks::ports::clock::Clock;
use gemini_hooks::ports::{EventQueue, ResultsStore};
use gemini_hooks::usecases::consume::{ConsumeSettings, Consumer, Handled};
use gemini_hooks::usecases::offload::OffloadingQueue;
use gemini_hooks::usecases::routes::Routes;
use gemini_hooks_tests::consume::{ConsumeHarness, T0_MS, webhook_body, webhook_message};
use gemini_hooks_tests::fake_gemini::{FakeGemini, OutputSpec, operation_json, sample_results};
use gemini_hooks_tests::moto;
use serde_json::{Value, json};

/// EventBridge's PutEvents entry limit (256 KiB, detail, source and detail-type counted).
const EVENTBRIDGE_ENTRY_BYTES: usize = 256 * 1024;

/// The shared harness; `consumer(settings)` writes to its table.
struct Harness(ConsumeHarness);

impl std::ops::Deref for Harness {
    type Target = ConsumeHarness;
    fn deref(&self) -> &ConsumeHarness {
        &self.0
    }
}

impl Harness {
    async fn new() -> Self {
        Self(ConsumeHarness::new("atk11").await)
    }

    fn consumer(&self, settings: ConsumeSettings) -> Consumer {
        self.consumer_with(settings, Routes::single(self.store.clone()))
    }
}

fn envelope(webhook_id: &str, event: &Value) -> String {
    webhook_body(webhook_id, event)
}

fn terminal_job(id: &str) -> JobRecord {
    let mut job = JobRecord::new(format!("batches/{id}"), JobKind::Batch, T0_MS);
    job.state = JobState::Succeeded;
    job.completed_at_ms = Some(T0_MS);
    job
}

/// Bytes PutEvents counts for one entry of `event`.
fn entry_bytes(event: &JobFinished) -> usize {
    let detail = event
        .detail_json()
        .unwrap_or_else(|e| panic!("detail: {e}"));
    detail.len() + SOURCE.len() + DETAIL_TYPE.len()
}

// ---------------------------------------------------------------------------------------------
// 1. job_group: copied, unbounded, into SQS attributes, continuations and downstream events.
// ---------------------------------------------------------------------------------------------

/// BROKE: a verified delivery under `WEBHOOK_MAX_BODY_BYTES` (1 MiB) whose
/// `user_metadata.job_group` is 300 KiB is refused for size even with the payload bucket: the
/// offloaded body goes to S3, but `StoredPayload::pointer_message` (domain/envelope.rs, "the
/// original attributes (routing and metrics still see them)") copies the `job_group` attribute
/// onto the pointer, which is then over SQS's 256 KiB (attributes count) →
/// `QueueError::TooLarge` → the receiver answers 413 on every retry (usecases/http.rs:87).
/// Issue 11: "No verified delivery under WEBHOOK_MAX_BODY_BYTES is ever refused for size."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_with_a_300_kib_job_group_is_accepted_through_the_payload_bucket() {
    let sqs = moto::sqs().await;
    let s3 = moto::s3().await;
    let bucket = moto::unique_name("atk11-payloads");
    moto::create_bucket(&s3, &bucket).await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("atk11-offload"), 5, 30).await;
    let offloading = OffloadingQueue::new(
        Arc::new(SqsEventQueue::new(sqs.clone(), queue.url.clone())),
        Arc::new(S3PayloadStore::new(s3.clone(), bucket.clone())),
        MAX_MESSAGE_BYTES,
    );
    let group = "g".repeat(300 * 1024);
    let event = json!({"type": "batch.succeeded", "version": "v1",
        "data": {"id": "biggroup", "user_metadata": {"job_group": group}}});
    let body_len = event.to_string().len();
    assert!(
        body_len < 1024 * 1024,
        "the delivery is under the 1 MiB body limit"
    );
    let message = webhook_message("msg-biggroup", &event);
    let outcome = offloading.enqueue(&message).await;
    assert!(
        outcome.is_ok(),
        "a {body_len}-byte verified delivery was refused: {outcome:?}"
    );
}

/// BROKE: a job whose `job_group` is 140 KiB (the delivery itself is accepted: its body goes
/// to S3 and the pointer carries 140 KiB of attribute) cannot hand over: the continuation
/// carries `job_group` twice (in the body and as the `job_group` attribute,
/// domain/envelope.rs `to_message`), ~280 KiB, and the consumer's continuation queue is a plain
/// `SqsEventQueue` (wiring.rs `aws_consumer`, no `OffloadingQueue`) → `TooLarge` → the message
/// fails; each redelivery ingests one more pass, so a file needing more passes than the
/// queue's maxReceiveCount ends in the DLQ with the job stuck INGESTING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_a_140_kib_job_group_hands_over_to_a_continuation() {
    let h = Harness::new().await;
    h.gemini
        .put_file("files/grp", Bytes::from(sample_results(1_500, 0, 0)));
    h.gemini.put_operation(operation_json(
        "batches/grp",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File("files/grp".into()),
    ));
    let margin = 10_000;
    let c = h.consumer(ConsumeSettings {
        deadline_margin_ms: margin,
        ..ConsumeSettings::default()
    });
    let group = "g".repeat(140 * 1024);
    let event = json!({"type": "batch.succeeded", "data": {"id": "grp", "user_metadata": {"job_group": group}}});
    // Inside the margin: the invocation hands over after its first chunk.
    let deadline = Some(h.clock.now_ms() + margin - 1);
    let outcome = c
        .handle_message(&envelope("msg-grp", &event), deadline)
        .await;
    assert!(
        matches!(outcome, Ok(Handled::Continued { .. })),
        "the hand-over failed: {outcome:?}"
    );
    assert_eq!(h.queued().await.len(), 1, "one continuation queued");
}

/// BROKE: the downstream event of a job whose `job_group` is ~255.7 KiB (the largest whose
/// pointer message fits SQS) is over EventBridge's
/// 256 KiB entry limit, although the delivery is accepted (its pointer message fits SQS, shown
/// here) and its job record fits DynamoDB. `JobFinished::fit` (domain/job_events.rs) drops
/// `output` and `user_metadata` only, calling the rest "small and bounded"; `job_group` is
/// neither → PutEvents refuses the entry on every retry; the event is never published.
#[test]
fn a_downstream_event_of_a_job_with_a_255_kib_job_group_fits_eventbridge() {
    let pointer_for = |group: &str| {
        let event = json!({"type": "batch.succeeded", "version": "v1",
            "data": {"id": "evgroup", "user_metadata": {"job_group": group}}});
        let message = webhook_message("msg-evgroup", &event);
        StoredPayload::for_message(&message)
            .pointer_message(&message)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    // A group that long does not route, so no message carries it as an attribute.
    let group = "g".repeat(255 * 1024);
    let pointer = pointer_for(&group);
    assert!(
        pointer.size() < 4 * 1024,
        "the pointer carries {} bytes",
        pointer.size()
    );
    let mut job = terminal_job("evgroup");
    job.job_group = Some(group.clone());
    job.keep_user_metadata(&json!({"job_group": group}));
    let finished = JobFinished::of(&job, Some("results")).unwrap_or_else(|| panic!("terminal"));
    let bytes = entry_bytes(&finished);
    assert!(
        bytes <= EVENTBRIDGE_ENTRY_BYTES,
        "the PutEvents entry is {bytes} bytes, over EventBridge's {EVENTBRIDGE_ENTRY_BYTES}"
    );
    assert_eq!(
        finished.job_group, None,
        "a record's unroutable group is not announced"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Job records: fields the 400 KB item budget forgot.
// ---------------------------------------------------------------------------------------------

/// BROKE: a batch whose operation failed with a 450 000-byte error message can never be
/// recorded: `rpc_error` (usecases/consume/rows.rs:8) copies the message whole into
/// `JobRecord::error`, and `save_job` (adapters/aws/dynamodb_results.rs) writes it as one
/// attribute; the item is over DynamoDB's 400 KB (moto refuses it too) → `StoreError` →
/// retried until the DLQ; the job never reaches FAILED. `user_metadata` and `output` are
/// bounded at 64 KiB, the error is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_with_a_450_kb_error_message_is_recorded() {
    let h = Harness::new().await;
    h.gemini.put_operation(operation_json(
        "batches/bigerr",
        "BATCH_STATE_FAILED",
        OutputSpec::Error(13, "e".repeat(450_000)),
    ));
    let c = h.consumer(ConsumeSettings::default());
    let event = json!({"type": "batch.failed", "data": {"id": "bigerr"}});
    let outcome = c
        .handle_message(&envelope("msg-bigerr", &event), None)
        .await;
    assert!(
        matches!(
            outcome,
            Ok(Handled::Recorded {
                state: JobState::Failed,
                ..
            })
        ),
        "the failed batch was not recorded: {outcome:?}"
    );
}

/// BROKE: a signed `video.generated` whose `file_name` is `files/` + 450 000 letters (a valid
/// file id for `normalize_file_name`, domain/gemini/mod.rs:64) is never recorded: `on_video`
/// (usecases/consume/events.rs ~line 200) puts `{"operation", "videos", "file_name"}` in
/// `job.output` without `bounded_output` (which the interaction path uses), so the job record
/// is over 400 KB → `StoreError` on every retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_event_with_a_450_kb_file_name_is_recorded() {
    let h = Harness::new().await;
    h.gemini.put_resource(
        "models/veo/operations/big",
        json!({"name": "models/veo/operations/big", "done": true, "response": {
            "generateVideoResponse": {"generatedSamples": [{"video": {"uri": "files/v1"}}]}}}),
    );
    let c = h.consumer(ConsumeSettings::default());
    let file_name = format!("files/{}", "a".repeat(450_000));
    let event = json!({"type": "video.generated",
        "data": {"id": "models/veo/operations/big", "file_name": file_name}});
    let outcome = c
        .handle_message(&envelope("msg-bigvid", &event), None)
        .await;
    assert!(
        matches!(
            outcome,
            Ok(Handled::Recorded {
                state: JobState::Succeeded,
                ..
            })
        ),
        "the video was not recorded: {outcome:?}"
    );
}

/// BROKE: a failed job with a 300 KB error message (which does fit a job record) announces an
/// event over EventBridge's 256 KiB: `JobFinished::fit` never shortens `error`
/// (domain/job_events.rs) — its own comment says "this only bites on an unusually long error
/// message", and then nothing is done about it.
#[test]
fn a_downstream_event_with_a_300_kb_error_message_fits_eventbridge() {
    let mut job = terminal_job("errev");
    job.state = JobState::Failed;
    job.error = Some(JobErrorInfo {
        code: Some("13".into()),
        message: "e".repeat(300_000),
        source: "operation".into(),
    });
    let finished = JobFinished::of(&job, Some("results")).unwrap_or_else(|| panic!("terminal"));
    let bytes = entry_bytes(&finished);
    assert!(
        bytes <= EVENTBRIDGE_ENTRY_BYTES,
        "the PutEvents entry is {bytes} bytes, over EventBridge's {EVENTBRIDGE_ENTRY_BYTES}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Time: a hand-over that makes no progress.
// ---------------------------------------------------------------------------------------------

/// BROKE: a line longer than one pass can download (a slow or trickling download of a large
/// line) hands over with no progress, forever. `stream_file` (usecases/consume/ingest.rs) only
/// refuses an empty pass when a *read* times out (`Err(e) if splitter.line_count() ==
/// start.lines`); the deadline-margin branch (`break Some(Stop::Deadline)`) hands over whatever
/// the pass did, even nothing: every continuation restarts at byte 0, downloads the same
/// partial line and queues the same continuation — an infinite loop of Lambda invocations that
/// never reaches the DLQ (each message succeeds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_longer_than_a_pass_fails_instead_of_looping_through_empty_continuations() {
    let h = Harness::new().await;
    let line = format!(
        "{{\"key\":\"big\",\"response\":{{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"{}\"}}]}}}}]}}}}\n",
        "x".repeat(4 * 1024 * 1024)
    );
    h.gemini.put_file("files/slow", Bytes::from(line));
    h.gemini.put_operation(operation_json(
        "batches/slow",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File("files/slow".into()),
    ));
    let margin = 10_000;
    let c = h.consumer(ConsumeSettings {
        deadline_margin_ms: margin,
        ..ConsumeSettings::default()
    });
    // Each pass has less than the margin left: it can read one chunk, not the whole line.
    let deadline = Some(h.clock.now_ms() + margin - 1);
    let event = json!({"type": "batch.succeeded", "data": {"id": "slow"}});
    let body = envelope("msg-slow", &event);
    // The pass completes no line before the margin: it fails (retried, then dead-lettered),
    // and hands nothing over that would start at the same byte again.
    let outcome = c.handle_message(&body, deadline).await;
    assert!(
        matches!(&outcome, Err(e) if e.is_retryable() && e.to_string().contains("no complete line")),
        "{outcome:?}"
    );
    assert!(h.queued().await.is_empty(), "no empty hand-over");
    // With time enough, the same message ingests the line.
    let done = c.handle_message(&body, None).await;
    assert!(
        matches!(done, Ok(Handled::Ingested { rows: 1, .. })),
        "{done:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Keys cut at 128 KiB.
// ---------------------------------------------------------------------------------------------

/// BROKE: two distinct request keys that differ only after their first 128 KiB are stored as
/// two rows (their sort keys hash the full key) but read back with the *same* key: the `key`
/// attribute keeps only 128 KiB (`MAX_KEY_ATTRIBUTE`, adapters/aws/dynamodb_items.rs) and
/// `ResultRow` has no `key_truncated_bytes`, so the reader gets two rows it cannot tell apart
/// and neither carries its request's key. Issue 11: "the full key is kept as an attribute and
/// shown everywhere a key is shown".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_differing_past_128_kib_read_back_whole_and_distinct() {
    let h = Harness::new().await;
    let common = "k".repeat(128 * 1024);
    let keys = [format!("{common}-alpha"), format!("{common}-beta")];
    let mut file = String::new();
    for (i, key) in keys.iter().enumerate() {
        file.push_str(
            &json!({"key": key, "response": {"candidates": [{"content": {"parts": [{"text": format!("answer {i}")}]}}]}})
                .to_string(),
        );
        file.push('\n');
    }
    h.gemini.put_file("files/cut", Bytes::from(file));
    h.gemini.put_operation(operation_json(
        "batches/cut",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File("files/cut".into()),
    ));
    let c = h.consumer(ConsumeSettings::default());
    let event = json!({"type": "batch.succeeded", "data": {"id": "cut"}});
    let outcome = c.handle_message(&envelope("msg-cut", &event), None).await;
    assert!(
        matches!(outcome, Ok(Handled::Ingested { rows: 2, .. })),
        "{outcome:?}"
    );
    let rows = h.rows("batches/cut").await;
    assert_eq!(rows.len(), 2, "two rows stored");
    let read: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    assert!(
        keys.iter().all(|k| read.contains(&k.as_str())),
        "the keys read back are not the request keys (lengths {:?}, equal: {})",
        read.iter().map(|k| k.len()).collect::<Vec<_>>(),
        read.first() == read.get(1)
    );
}

// ---------------------------------------------------------------------------------------------
// 5. What is already handled.
// ---------------------------------------------------------------------------------------------

/// HOLDS: `CONSUMER_WRITES_IN_FLIGHT` outside 1–16 or not a number is refused at start-up;
/// surrounding whitespace is trimmed.
#[test]
fn writes_in_flight_is_validated() {
    let config = |value: &str| -> Result<ConsumerConfig, ConfigError> {
        let value = value.to_owned();
        ConsumerConfig::from_env(&Env::from_fn(move |k| match k {
            "RESULTS_TABLE" => Some("results".into()),
            "QUEUE_URL" => Some("http://127.0.0.1:5000/123/q".into()),
            "GEMINI_API_KEY" => Some("k".into()),
            "CONSUMER_WRITES_IN_FLIGHT" => Some(value.clone()),
            _ => None,
        }))
    };
    for bad in ["0", "17", "-1", "four", "4.5", "99999999999999999999999"] {
        assert!(config(bad).is_err(), "{bad:?} accepted");
    }
    for (good, n) in [("1", 1), ("4 ", 4), (" 16", 16), ("", 4)] {
        assert_eq!(
            config(good).map(|c| c.writes_in_flight).ok(),
            Some(n),
            "{good:?}"
        );
    }
}

/// HOLDS: a continuation replayed after its job finished is skipped; the counts stay those of
/// the stored rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_replayed_after_the_job_finished_counts_nothing_twice() {
    let h = Harness::new().await;
    let n = 1_200;
    h.gemini
        .put_file("files/replay", Bytes::from(sample_results(n, 0, 0)));
    h.gemini.put_operation(operation_json(
        "batches/replay",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File("files/replay".into()),
    ));
    let margin = 10_000;
    let c = h.consumer(ConsumeSettings {
        deadline_margin_ms: margin,
        ..ConsumeSettings::default()
    });
    let deadline = Some(h.clock.now_ms() + margin - 1);
    let event = json!({"type": "batch.succeeded", "data": {"id": "replay"}});
    let first = c
        .handle_message(&envelope("msg-replay", &event), deadline)
        .await;
    assert!(matches!(first, Ok(Handled::Continued { .. })), "{first:?}");
    let continuation = h.queued().await.remove(0);
    let done = c.handle_message(&continuation, None).await;
    assert!(
        matches!(done, Ok(Handled::Ingested { rows, .. }) if rows == n),
        "{done:?}"
    );
    // SQS delivers the continuation again, and the webhook once more.
    for body in [continuation.clone(), envelope("msg-replay", &event)] {
        let again = c.handle_message(&body, None).await;
        assert!(matches!(again, Ok(Handled::Skipped { .. })), "{again:?}");
    }
    let job = h
        .store
        .load_job("batches/replay")
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("job"));
    assert_eq!(
        (
            job.state,
            job.counts.rows_ingested,
            job.counts.duplicate_keys
        ),
        (JobState::Succeeded, n, 0)
    );
    assert_eq!(h.rows("batches/replay").await.len() as u64, n);
}

// ---------------------------------------------------------------------------------------------
// 6. Memory: inline results are neither streamed nor bounded (real consumer binary).
// ---------------------------------------------------------------------------------------------

/// `VmHWM` (peak RSS) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// BROKE: a 4 MB `batches.get` answer with inline results (40 responses of 100 KB of small
/// JSON objects — structured output) takes the real consumer binary past the template's 512 MB
/// `MemorySize`: `GeminiClient::get_json` (adapters/gemini/client.rs, `resp.bytes()` then
/// `serde_json::from_slice::<Value>`) reads and parses the whole operation with no bound, and
/// `InlineResponse::from_value` (domain/gemini/batch.rs, `.cloned()`) copies every response
/// tree once more. In Lambda the whole invocation (every message of the batch) is killed, on
/// every retry. Issue 11 item 4: "Inline results streamed or bounded."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_mb_inline_batch_stays_far_below_the_consumers_512_mb() {
    use gemini_hooks_tests::bins::bin_path;
    use gemini_hooks_tests::runtime_api::{RuntimeApi, spawn_function};

    let ddb = moto::dynamodb().await;
    let sqs = moto::sqs().await;
    let results = moto::unique_name("atk11-mem");
    moto::create_results_table(&ddb, &results).await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("atk11-mem"), 5, 30).await;
    let gemini = FakeGemini::start().await;
    let api = RuntimeApi::start().await;
    let process = spawn_function(
        &bin_path("consumer"),
        &api,
        &[
            ("RESULTS_TABLE", results.clone()),
            ("ROUTES", String::new()),
            ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
            ("GEMINI_API_BASE_URL", gemini.base_url()),
            ("QUEUE_URL", queue.url.clone()),
        ],
    )
    .await;
    let small: Vec<Value> = (0..12_500).map(|i| json!({"a": i % 10})).collect();
    let items: Vec<Value> = (0..40)
        .map(|i| {
            json!({"metadata": {"key": format!("k{i}")}, "response": {
                "candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
                "structured": small}})
        })
        .collect();
    let op = operation_json(
        "batches/mem",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::Inline(items),
    );
    let op_bytes = op.to_string().len();
    gemini.put_operation(op);
    let event = json!({"type": "batch.succeeded", "data": {"id": "mem"}});
    let record = gemini_hooks_tests::runtime_api::sqs_record(
        "m-mem",
        &envelope("msg-mem", &event),
        &queue.arn,
    );
    let pid = process.id().unwrap_or_else(|| panic!("no consumer pid"));
    let before = peak_rss_kib(pid).unwrap_or(0);
    let response = api
        .invoke(json!({"Records": [record]}), Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("consumer: {e}\n{}", process.logs()));
    let peak = peak_rss_kib(pid).unwrap_or(0);
    eprintln!(
        "operation {op_bytes} bytes; consumer peak RSS {} MiB (at start {} MiB); {response}",
        peak / 1024,
        before / 1024
    );
    assert_eq!(
        DynamoDbResultsStore::new(ddb, results)
            .count_rows("batches/mem")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        40,
        "{}",
        process.logs()
    );
    // The answer's bytes, its rows and the writes in flight: a small multiple of 4 MB, in a
    // debug build (it was 700 MiB with a tree per response).
    assert!(
        peak <= 160 * 1024,
        "a {op_bytes}-byte inline batch took the consumer to {} MiB peak RSS",
        peak / 1024
    );
}

/// HOLDS: an envelope whose body alone is just under SQS's 256 KiB but which is over once its
/// attributes (a 250-byte `job_group`, the longest kind that routes) are counted is offloaded
/// to the bucket, not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_under_256_kib_but_over_with_its_attributes_is_offloaded() {
    let sqs = moto::sqs().await;
    let s3 = moto::s3().await;
    let bucket = moto::unique_name("atk11-edge");
    moto::create_bucket(&s3, &bucket).await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("atk11-edge"), 5, 30).await;
    let offloading = OffloadingQueue::new(
        Arc::new(SqsEventQueue::new(sqs.clone(), queue.url.clone())),
        Arc::new(S3PayloadStore::new(s3.clone(), bucket.clone())),
        MAX_MESSAGE_BYTES,
    );
    let group = "g".repeat(250);
    let make = |note: usize| {
        webhook_message(
            "msg-edge",
            &json!({"type": "batch.succeeded", "data": {"id": "edge",
                "user_metadata": {"job_group": group, "note": "n".repeat(note)}}}),
        )
    };
    let probe = make(0);
    let note = MAX_MESSAGE_BYTES - 100 - probe.body.len();
    let message = make(note);
    assert!(
        message.body.len() <= MAX_MESSAGE_BYTES && message.size() > MAX_MESSAGE_BYTES,
        "body {} size {}",
        message.body.len(),
        message.size()
    );
    let outcome = offloading.enqueue(&message).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    let queued = moto::drain(&sqs, &queue.url).await;
    assert_eq!(queued.len(), 1);
    let body: Value =
        serde_json::from_str(queued[0].body().unwrap_or_default()).unwrap_or_default();
    assert_eq!(body["kind"], "stored", "offloaded, not sent whole");
    assert_eq!(moto::bucket_keys(&s3, &bucket).await.len(), 1);
}
