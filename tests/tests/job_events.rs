//! Downstream events (README, "Downstream events") through the real `consumer` binary on moto:
//! DynamoDB results and dedupe tables, an SQS events queue, and an EventBridge bus with a rule
//! sending every `Gemini Job Finished` event to an observing queue. One event per terminal
//! state; none on a replay, a Gemini retry or an SQS redelivery; a bus that is missing leaves
//! the message to retry, and the event goes out once the bus exists. The consume use case on the
//! same adapters covers continuations and a claim held by another attempt.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_dedupe::DynamoDbDedupeStore;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::adapters::aws::eventbridge::EventBridgePublisher;
use gemini_hooks::adapters::aws::sqs::SqsEventQueue;
use gemini_hooks::adapters::gemini::{GeminiClient, GeminiSettings, RetryPolicy};
use gemini_hooks::domain::dedupe::{ClaimOutcome, ClaimRequest};
use gemini_hooks::domain::envelope::{EventSummary, QueueEnvelope, SignatureMode, WebhookEnvelope};
use gemini_hooks::domain::event::Event;
use gemini_hooks::domain::jobs::JobState;
use gemini_hooks::ports::clock::{Clock, ManualClock};
use gemini_hooks::ports::{DedupeStore, ResultsStore};
use gemini_hooks::usecases::consume::{
    Announcer, ConsumeError, ConsumeSettings, Consumer, Handled,
};
use gemini_hooks::usecases::routes::Routes;
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, OutputSpec, operation_json, sample_results, with_stats,
};
use gemini_hooks_tests::moto::{self, TestQueue};
use gemini_hooks_tests::runtime_api::{FunctionProcess, RuntimeApi, spawn_function};
use serde_json::{Value, json};

const INVOKE: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// The queue message the receiver would have produced for `event`.
fn envelope(webhook_id: &str, event: &Value, received_at_ms: i64) -> String {
    let parsed = Event::from_value(event, None).unwrap_or_else(|e| panic!("event: {e}"));
    QueueEnvelope::Webhook(WebhookEnvelope {
        webhook_id: webhook_id.to_owned(),
        received_at_ms,
        signature_mode: SignatureMode::Static,
        bound: true,
        event: EventSummary::from(&parsed),
        raw_event: event.clone(),
        user_metadata: parsed.user_metadata.clone(),
    })
    .to_message()
    .unwrap_or_else(|e| panic!("envelope: {e}"))
    .body
}

fn batch_event(kind: &str, batch: &str) -> Value {
    json!({"type": kind, "version": "v1", "timestamp": "2026-12-01T12:00:00Z",
           "data": {"id": batch, "user_metadata": {"job_group": "nightly", "run": 7}}})
}

/// A succeeded batch with a results file of `lines` lines (every 4th an error line).
fn put_succeeded(gemini: &FakeGemini, batch: &str, lines: u64) {
    let file = format!("files/{batch}-results");
    gemini.put_file(&file, Bytes::from(sample_results(lines, 4, 0)));
    let n = i64::try_from(lines).unwrap_or(0);
    gemini.put_operation(with_stats(
        operation_json(
            &format!("batches/{batch}"),
            "BATCH_STATE_SUCCEEDED",
            OutputSpec::File(file),
        ),
        n,
        n - n / 4,
        n / 4,
    ));
}

fn put_failed(gemini: &FakeGemini, batch: &str) {
    gemini.put_operation(operation_json(
        &format!("batches/{batch}"),
        "BATCH_STATE_FAILED",
        OutputSpec::Error(3, "the input file contains invalid requests".into()),
    ));
}

struct Stack {
    ddb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    eb: aws_sdk_eventbridge::Client,
    results: String,
    dedupe: String,
    bus: String,
    queue: TestQueue,
    gemini: FakeGemini,
    consumer: RuntimeApi,
    consumer_fn: FunctionProcess,
}

impl Stack {
    /// The consumer binary configured for bus `bus` (created or not).
    async fn new(create_bus: bool) -> Self {
        let ddb = moto::dynamodb().await;
        let sqs = moto::sqs().await;
        let eb = moto::eventbridge().await;
        let results = moto::unique_name("ev-results");
        let dedupe = moto::unique_name("ev-dedupe");
        let bus = moto::unique_name("ev-jobs");
        moto::create_results_table(&ddb, &results).await;
        moto::create_dedupe_table(&ddb, &dedupe).await;
        if create_bus {
            moto::create_event_bus(&eb, &bus).await;
        }
        let queue = moto::create_queue(&sqs, &moto::unique_name("ev-events"), 5, 30).await;
        let gemini = FakeGemini::start().await;
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
                ("EVENT_BUS_NAME", bus.clone()),
                ("DEDUPE_TABLE", dedupe.clone()),
            ],
        )
        .await;
        Self {
            ddb,
            sqs,
            eb,
            results,
            dedupe,
            bus,
            queue,
            gemini,
            consumer,
            consumer_fn,
        }
    }

    /// Puts `bodies` on the events queue and receives them as SQS hands them to the consumer.
    async fn queued(&self, bodies: &[String]) -> Vec<aws_sdk_sqs::types::Message> {
        for body in bodies {
            self.sqs
                .send_message()
                .queue_url(&self.queue.url)
                .message_body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("SendMessage: {e:?}"));
        }
        let messages = moto::drain(&self.sqs, &self.queue.url).await;
        assert_eq!(messages.len(), bodies.len());
        messages
    }

    /// Invokes the consumer with `messages` as one SQS batch (received `receive_count` times);
    /// returns the failed message ids.
    async fn consume(
        &self,
        messages: &[aws_sdk_sqs::types::Message],
        receive_count: u32,
    ) -> Vec<String> {
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": {"ApproximateReceiveCount": receive_count.to_string(),
                                   "SentTimestamp": "1795000000000", "SenderId": "AIDAEXAMPLE",
                                   "ApproximateFirstReceiveTimestamp": "1795000000001"},
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue.arn,
                    "awsRegion": "us-east-1"
                })
            })
            .collect();
        let response = self
            .consumer
            .invoke(json!({ "Records": records }), INVOKE)
            .await
            .unwrap_or_else(|e| panic!("consumer: {e}\n{}", self.consumer_fn.logs()));
        let mut failed: Vec<String> = response["batchItemFailures"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["itemIdentifier"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        failed.sort();
        failed
    }

    fn store(&self) -> DynamoDbResultsStore {
        DynamoDbResultsStore::new(self.ddb.clone(), self.results.clone())
    }

    /// The published events (their `detail`s), by `event_id`.
    async fn published(&self, observer: &str) -> Vec<Value> {
        let mut details: Vec<Value> = moto::take_events(&self.sqs, observer)
            .await
            .into_iter()
            .map(|e| {
                assert_eq!(
                    (e["source"].as_str(), e["detail-type"].as_str()),
                    (Some("gemini-hooks"), Some("Gemini Job Finished")),
                    "{e}"
                );
                e["detail"].clone()
            })
            .collect();
        details.sort_by(|a, b| a["event_id"].as_str().cmp(&b["event_id"].as_str()));
        details
    }

    async fn claim_status(&self, event_id: &str) -> Option<String> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.dedupe)
            .key(
                "webhook_id",
                AttributeValue::S(format!("job-event {event_id}")),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetItem: {e:?}"));
        out.item()
            .and_then(|i| i.get("status"))
            .and_then(|v| v.as_s().ok())
            .cloned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_per_terminal_state_and_none_on_replays_retries_or_redeliveries() {
    let s = Stack::new(true).await;
    let observer = moto::observe_job_events(&s.eb, &s.sqs, &s.bus).await;
    put_succeeded(&s.gemini, "ev-ok", 8);
    put_failed(&s.gemini, "ev-failed");
    let received = now_ms() - 1_000;
    let bodies = vec![
        envelope("msg_ok", &batch_event("batch.succeeded", "ev-ok"), received),
        envelope(
            "msg_failed",
            &batch_event("batch.failed", "ev-failed"),
            received,
        ),
    ];
    let messages = s.queued(&bodies).await;
    assert!(
        s.consume(&messages, 1).await.is_empty(),
        "{}",
        s.consumer_fn.logs()
    );

    let events = s.published(&observer).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let (failed, ok) = (&events[0], &events[1]);
    assert_eq!(ok["event_id"], "batches/ev-ok#SUCCEEDED");
    assert_eq!(
        (&ok["job_id"], &ok["kind"], &ok["state"]),
        (
            &json!("batches/ev-ok"),
            &json!("batch"),
            &json!("SUCCEEDED")
        )
    );
    assert_eq!(
        ok["counts"],
        json!({"request_count": 8, "successful_request_count": 6, "failed_request_count": 2,
               "rows_ingested": 8, "error_rows": 2, "malformed_rows": 0, "duplicate_keys": 0})
    );
    assert_eq!(ok["error"], Value::Null);
    assert_eq!(
        ok["user_metadata"],
        json!({"job_group": "nightly", "run": 7})
    );
    assert_eq!(ok["job_group"], "nightly");
    assert_eq!(
        ok["output"],
        json!({"responses_file": "files/ev-ok-results"})
    );
    assert_eq!(
        ok["results"],
        json!({"table": s.results, "pk": "JOB#batches/ev-ok"})
    );
    assert_eq!(failed["event_id"], "batches/ev-failed#FAILED");
    assert_eq!(failed["state"], "FAILED");
    assert_eq!(
        failed["error"],
        json!({"code": "3", "message": "the input file contains invalid requests", "source": "operation"})
    );
    assert_eq!(failed["counts"]["rows_ingested"], 0);

    // Published, claimed and noted on the record.
    for (job, state, event_id) in [
        (
            "batches/ev-ok",
            JobState::Succeeded,
            "batches/ev-ok#SUCCEEDED",
        ),
        (
            "batches/ev-failed",
            JobState::Failed,
            "batches/ev-failed#FAILED",
        ),
    ] {
        let record = s
            .store()
            .load_job(job)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no record of {job}"));
        assert_eq!((record.state, record.notified_state), (state, Some(state)));
        assert_eq!(s.claim_status(event_id).await.as_deref(), Some("ENQUEUED"));
    }

    // SQS hands the same messages out again, Gemini retries with another webhook-id, the
    // reconciler recovers the batch: nothing is published twice.
    assert!(s.consume(&messages, 2).await.is_empty());
    let retries = s
        .queued(&[
            envelope(
                "msg_ok_retry",
                &batch_event("batch.succeeded", "ev-ok"),
                received,
            ),
            envelope(
                "reconcile:batches/ev-failed:FAILED",
                &batch_event("batch.failed", "ev-failed"),
                received,
            ),
        ])
        .await;
    assert!(s.consume(&retries, 1).await.is_empty());
    assert_eq!(s.published(&observer).await, Vec::<Value>::new());
    assert_eq!(
        s.gemini.requests_to(":download").len(),
        1,
        "the results were downloaded once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bus_leaves_the_message_to_retry_and_the_event_goes_out_once_it_exists() {
    let s = Stack::new(false).await;
    put_succeeded(&s.gemini, "ev-nobus", 5);
    let messages = s
        .queued(&[envelope(
            "msg_nobus",
            &batch_event("batch.succeeded", "ev-nobus"),
            now_ms(),
        )])
        .await;
    let id = messages[0].message_id().unwrap_or_default().to_owned();
    assert_eq!(s.consume(&messages, 1).await, vec![id.clone()]);
    // The state is durable and the claim released; only the event is missing.
    let record = s
        .store()
        .load_job("batches/ev-nobus")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no record"));
    assert_eq!(
        (
            record.state,
            record.notified_state,
            record.counts.rows_ingested
        ),
        (JobState::Succeeded, None, 5)
    );
    assert_eq!(s.claim_status("batches/ev-nobus#SUCCEEDED").await, None);
    assert!(
        s.consumer_fn.logs().contains("publish_unavailable"),
        "{}",
        s.consumer_fn.logs()
    );

    // The operator creates the bus; the redelivered message publishes without re-ingesting.
    moto::create_event_bus(&s.eb, &s.bus).await;
    let observer = moto::observe_job_events(&s.eb, &s.sqs, &s.bus).await;
    assert!(s.consume(&messages, 2).await.is_empty());
    let events = s.published(&observer).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["event_id"], "batches/ev-nobus#SUCCEEDED");
    assert_eq!(events[0]["counts"]["rows_ingested"], 5);
    assert_eq!(s.gemini.requests_to(":download").len(), 1);

    assert!(s.consume(&messages, 3).await.is_empty());
    assert_eq!(s.published(&observer).await.len(), 0);
}

// ---------------------------------------------------------------------------------------------
// The use case on the same adapters: continuations, and a claim held by another attempt.
// ---------------------------------------------------------------------------------------------

const T0_MS: i64 = 1_795_000_000_000;

struct Direct {
    s: Stack,
    clock: ManualClock,
    observer: String,
    store: Arc<DynamoDbResultsStore>,
}

impl Direct {
    async fn new() -> Self {
        let s = Stack::new(true).await;
        let observer = moto::observe_job_events(&s.eb, &s.sqs, &s.bus).await;
        let store = Arc::new(s.store());
        Self {
            s,
            clock: ManualClock::at_ms(T0_MS),
            observer,
            store,
        }
    }

    fn consumer(&self, settings: ConsumeSettings) -> Consumer {
        let mut gs = GeminiSettings::new(FakeGemini::API_KEY);
        gs.base_url = self.s.gemini.base_url();
        gs.retry = RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        };
        Consumer::new(
            Arc::new(GeminiClient::new(gs, reqwest::Client::new())),
            Routes::single(self.store.clone()),
            Arc::new(SqsEventQueue::new(
                self.s.sqs.clone(),
                self.s.queue.url.clone(),
            )),
            Arc::new(self.clock.clone()),
            settings,
        )
        .with_announcer(Announcer::new(
            Arc::new(self.claims()),
            Arc::new(EventBridgePublisher::new(
                self.s.eb.clone(),
                self.s.bus.clone(),
            )),
        ))
    }

    fn claims(&self) -> DynamoDbDedupeStore {
        DynamoDbDedupeStore::new(self.s.ddb.clone(), self.s.dedupe.clone())
    }

    async fn next_queued(&self) -> Option<String> {
        let messages = moto::drain(&self.s.sqs, &self.s.queue.url).await;
        assert!(messages.len() <= 1, "one continuation at a time");
        let m = messages.into_iter().next()?;
        if let Some(handle) = m.receipt_handle() {
            let _ = self
                .s
                .sqs
                .delete_message()
                .queue_url(&self.s.queue.url)
                .receipt_handle(handle)
                .send()
                .await;
        }
        m.body().map(str::to_owned)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_ingest_handed_over_through_continuations_publishes_once_at_the_end() {
    let d = Direct::new().await;
    put_succeeded(&d.s.gemini, "ev-long", 600);
    let margin = 10_000;
    let c = d.consumer(ConsumeSettings {
        deadline_margin_ms: margin,
        checkpoint_every_lines: 100,
        ..ConsumeSettings::default()
    });
    // Already inside the margin: every part hands over after its first checkpoint.
    let deadline = Some(d.clock.now_ms() + margin - 1);
    let body = envelope(
        "msg_long",
        &batch_event("batch.succeeded", "ev-long"),
        T0_MS,
    );
    let first = c
        .handle_message(&body, deadline)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(first, Handled::Continued { .. }), "{first:?}");
    let mut parts = 1;
    let last = loop {
        let next = d
            .next_queued()
            .await
            .unwrap_or_else(|| panic!("no continuation after part {parts}"));
        // No event while the job is still ingesting.
        assert_eq!(d.s.published(&d.observer).await.len(), 0, "part {parts}");
        let dl = if parts < 3 { deadline } else { None };
        match c
            .handle_message(&next, dl)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        {
            Handled::Continued { .. } => parts += 1,
            Handled::Ingested { rows, .. } => {
                assert_eq!(rows, 600);
                break next;
            }
            other => panic!("{other:?}"),
        }
    };
    assert!(parts >= 3, "{parts}");
    let events = d.s.published(&d.observer).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["event_id"], "batches/ev-long#SUCCEEDED");
    assert_eq!(events[0]["counts"]["rows_ingested"], 600);

    // The last continuation delivered again, and the first webhook again: nothing more.
    for again in [&last, &body] {
        let handled = c
            .handle_message(again, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(handled, Handled::Skipped { .. }), "{handled:?}");
    }
    assert_eq!(d.s.published(&d.observer).await.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_held_by_another_attempt_waits_and_is_taken_over_after_its_lease() {
    let d = Direct::new().await;
    put_failed(&d.s.gemini, "ev-held");
    // Another consumer claimed the event and is (as far as anyone knows) publishing it.
    let key = "job-event batches/ev-held#FAILED";
    let hash = gemini_hooks::domain::verify::sha256_hex(b"batches/ev-held#FAILED");
    let held = d
        .claims()
        .claim(&ClaimRequest {
            webhook_id: key.into(),
            owner: "another-consumer".into(),
            body_sha256: hash,
            now_ms: T0_MS,
            lease_until_ms: T0_MS + 120_000,
            expires_at: T0_MS / 1000 + 3600,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(held, ClaimOutcome::Claimed);

    let c = d.consumer(ConsumeSettings::default());
    let body = envelope("msg_held", &batch_event("batch.failed", "ev-held"), T0_MS);
    match c.handle_message(&body, None).await {
        Err(e @ ConsumeError::NotReady(_)) => assert!(e.is_retryable()),
        other => panic!("expected a retry while the claim is held: {other:?}"),
    }
    assert_eq!(d.s.published(&d.observer).await.len(), 0);
    let record = d
        .store
        .load_job("batches/ev-held")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no record"));
    assert_eq!(
        (record.state, record.notified_state),
        (JobState::Failed, None)
    );

    // The holder died: after its lease the redelivery publishes.
    d.clock.advance_ms(120_001);
    let handled = c
        .handle_message(&body, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(handled, Handled::Skipped { .. }), "{handled:?}");
    let events = d.s.published(&d.observer).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["event_id"], "batches/ev-held#FAILED");
    assert_eq!(
        d.s.claim_status("batches/ev-held#FAILED").await.as_deref(),
        Some("ENQUEUED")
    );

    // A concurrent save of the same state may drop the record's note; the claim still holds.
    let mut record = d
        .store
        .load_job("batches/ev-held")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no record"));
    assert_eq!(record.notified_state, Some(JobState::Failed));
    record.notified_state = None;
    assert!(
        d.store
            .save_job(&record)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    let handled = c
        .handle_message(&body, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(handled, Handled::Skipped { .. }), "{handled:?}");
    assert_eq!(d.s.published(&d.observer).await.len(), 0);
    let record = d
        .store
        .load_job("batches/ev-held")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no record"));
    assert_eq!(record.notified_state, Some(JobState::Failed), "noted again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactions_and_videos_publish_when_they_finish_and_not_before() {
    let d = Direct::new().await;
    let c = d.consumer(ConsumeSettings::default());
    let handle = |id: &'static str, event: Value| {
        let body = envelope(id, &event, T0_MS);
        let c = &c;
        async move {
            c.handle_message(&body, None)
                .await
                .unwrap_or_else(|e| panic!("{id}: {e}"))
        }
    };
    d.s.gemini.put_resource(
        "interactions/ev-i1",
        json!({"id": "ev-i1", "status": "requires_action", "outputs": [{"type": "function_call"}]}),
    );
    handle(
        "w-i1",
        json!({"type": "interaction.requires_action", "data": {"id": "ev-i1"}}),
    )
    .await;
    assert_eq!(
        d.s.published(&d.observer).await.len(),
        0,
        "not finished yet"
    );
    d.s.gemini.put_resource(
        "interactions/ev-i1",
        json!({"id": "ev-i1", "status": "completed", "outputs": [{"type": "text", "text": "done"}]}),
    );
    handle(
        "w-i2",
        json!({"type": "interaction.completed", "data": {"id": "ev-i1"}}),
    )
    .await;
    d.s.gemini.put_resource(
        "models/veo/operations/ev-v1",
        json!({"name": "models/veo/operations/ev-v1", "done": true, "response": {
            "generateVideoResponse": {"generatedSamples": [{"video": {"uri": "files/ev-v1"}}]}}}),
    );
    handle(
        "w-v1",
        json!({"type": "video.generated", "data": {"id": "models/veo/operations/ev-v1", "file_name": "files/ev-v1"}}),
    )
    .await;
    let events = d.s.published(&d.observer).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(
        (
            &events[0]["event_id"],
            &events[0]["kind"],
            &events[0]["state"]
        ),
        (
            &json!("interactions/ev-i1#SUCCEEDED"),
            &json!("interaction"),
            &json!("SUCCEEDED")
        )
    );
    // The event carries the record's bounded summary; the outputs are the job's rows.
    assert_eq!(
        (
            &events[0]["output"]["status"],
            &events[0]["output"]["outputs"]
        ),
        (&json!("completed"), &json!(1))
    );
    assert_eq!(
        (&events[1]["event_id"], &events[1]["kind"]),
        (
            &json!("videos/models/veo/operations/ev-v1#SUCCEEDED"),
            &json!("video")
        )
    );
    assert_eq!(events[1]["output"]["videos"], json!(["files/ev-v1"]));
}
