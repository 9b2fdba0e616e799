//! The reconcile use case against moto (results and dedupe tables, events queue) and the fake
//! Gemini API (paged batch list): missed batches are recovered exactly once, everything else is
//! left alone, and the synthetic events are consumed like webhooks. The early warnings too: a
//! webhook Gemini disabled and a late batch raise their metrics (0 when all is well), and a
//! webhook list that cannot be read is counted without failing the run.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gemini_hooks::adapters::aws::dynamodb_dedupe::DynamoDbDedupeStore;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::adapters::aws::sqs::SqsEventQueue;
use gemini_hooks::adapters::gemini::{GeminiClient, GeminiSettings, RetryPolicy};
use gemini_hooks::adapters::telemetry::{CapturedMetrics, validate_emf};
use gemini_hooks::domain::envelope::{QueueEnvelope, SignatureMode};
use gemini_hooks::domain::event::JobKind;
use gemini_hooks::domain::jobs::{JobRecord, JobState};
use gemini_hooks::ports::ResultsStore;
use gemini_hooks::ports::clock::ManualClock;
use gemini_hooks::ports::gemini::GeminiApi;
use gemini_hooks::ports::metrics::metric;
use gemini_hooks::usecases::consume::{ConsumeSettings, Consumer, Handled};
use gemini_hooks::usecases::enqueue_once::EnqueueOnce;
use gemini_hooks::usecases::reconcile::{
    ReconcileError, ReconcileOptions, ReconcileReport, Reconciler, WebhookCheck,
};
use gemini_hooks::usecases::routes::Routes;
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, Fault, OutputSpec, inline_success, operation_json, with_create_time,
};
use gemini_hooks_tests::moto;
use gemini_hooks_tests::runtime_api::{RuntimeApi, spawn_function};
use serde_json::{Value, json};

const NOW_MS: i64 = 1_795_000_000_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_else(|| panic!("timestamp {ms} out of range"))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A batch in `state` that finished (or was last updated) `ago_ms` before `now_ms`.
fn batch(name: &str, state: &str, now_ms: i64, ago_ms: i64) -> Value {
    let output = if state.ends_with("SUCCEEDED") {
        OutputSpec::Inline(vec![inline_success("k1", "hello")])
    } else {
        OutputSpec::None
    };
    let mut op = operation_json(name, state, output);
    let t = rfc3339(now_ms - ago_ms);
    op["metadata"]["updateTime"] = json!(t);
    if op["metadata"].get("endTime").is_some() {
        op["metadata"]["endTime"] = json!(t);
    }
    op
}

struct Harness {
    gemini: FakeGemini,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    results: Arc<DynamoDbResultsStore>,
    routed: Arc<DynamoDbResultsStore>,
    dedupe: Arc<DynamoDbDedupeStore>,
    results_table: String,
    dedupe_table: String,
    clock: ManualClock,
    metrics: CapturedMetrics,
}

impl Harness {
    async fn new() -> Self {
        let ddb = moto::dynamodb().await;
        let sqs = moto::sqs().await;
        let results = moto::unique_name("results");
        let routed = format!("{results}-exp");
        let dedupe = moto::unique_name("dedupe");
        moto::create_results_table(&ddb, &results).await;
        moto::create_results_table(&ddb, &routed).await;
        moto::create_dedupe_table(&ddb, &dedupe).await;
        let queue = moto::create_queue(&sqs, &moto::unique_name("events"), 5, 30).await;
        Self {
            gemini: FakeGemini::start().await,
            sqs,
            queue_url: queue.url,
            results: Arc::new(DynamoDbResultsStore::new(ddb.clone(), results.clone())),
            routed: Arc::new(DynamoDbResultsStore::new(ddb.clone(), routed)),
            dedupe: Arc::new(DynamoDbDedupeStore::new(ddb, dedupe.clone())),
            results_table: results,
            dedupe_table: dedupe,
            clock: ManualClock::at_ms(NOW_MS),
            metrics: CapturedMetrics::new(),
        }
    }

    fn client(&self) -> Arc<dyn GeminiApi> {
        let mut gs = GeminiSettings::new(FakeGemini::API_KEY);
        gs.base_url = self.gemini.base_url();
        gs.retry = RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        };
        Arc::new(GeminiClient::new(gs, reqwest::Client::new()))
    }

    fn routes(&self) -> Routes {
        let routed: Arc<dyn ResultsStore> = self.routed.clone();
        Routes::new(self.results.clone(), [("exp".to_owned(), routed)])
    }

    fn queue(&self) -> Arc<SqsEventQueue> {
        Arc::new(SqsEventQueue::new(self.sqs.clone(), self.queue_url.clone()))
    }

    fn reconciler(&self) -> Reconciler {
        Reconciler::new(
            self.client(),
            self.routes(),
            EnqueueOnce::new(
                self.dedupe.clone(),
                self.queue(),
                Arc::new(self.clock.clone()),
            ),
            Arc::new(self.clock.clone()),
            self.metrics
                .metrics("reconciler-fn", Arc::new(self.clock.clone())),
        )
    }

    fn consumer(&self) -> Consumer {
        Consumer::new(
            self.client(),
            self.routes(),
            self.queue(),
            Arc::new(self.clock.clone()),
            ConsumeSettings::default(),
        )
    }

    async fn run(&self, options: &ReconcileOptions) -> ReconcileReport {
        self.reconciler()
            .run(options)
            .await
            .unwrap_or_else(|e| panic!("reconcile: {e}"))
    }

    /// Receives and deletes every visible message; returns the parsed envelopes.
    async fn take_queued(&self) -> Vec<(QueueEnvelope, String)> {
        let mut out = Vec::new();
        for m in moto::drain(&self.sqs, &self.queue_url).await {
            if let Some(h) = m.receipt_handle() {
                let _ = self
                    .sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(h)
                    .send()
                    .await;
            }
            let body = m.body().unwrap_or_default().to_owned();
            let env =
                QueueEnvelope::from_body(&body).unwrap_or_else(|e| panic!("envelope {body}: {e}"));
            out.push((env, body));
        }
        out
    }

    async fn save(&self, store: &DynamoDbResultsStore, id: &str, state: JobState, updated: i64) {
        let mut job = JobRecord::new(id, JobKind::Batch, updated);
        job.state = state;
        job.updated_at_ms = updated;
        let saved = store
            .save_job(&job)
            .await
            .unwrap_or_else(|e| panic!("save_job: {e}"));
        assert!(saved);
    }
}

fn options(page_size: u32) -> ReconcileOptions {
    ReconcileOptions {
        page_size,
        ..ReconcileOptions::default()
    }
}

fn webhook_ids(queued: &[(QueueEnvelope, String)]) -> Vec<String> {
    let mut ids: Vec<String> = queued
        .iter()
        .map(|(e, _)| match e {
            QueueEnvelope::Webhook(w) => w.webhook_id.clone(),
            QueueEnvelope::Continuation(c) => panic!("unexpected continuation {c:?}"),
            QueueEnvelope::Stored(p) => panic!("unexpected stored payload {p:?}"),
            QueueEnvelope::Reingest(r) => panic!("unexpected reingest {r:?}"),
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn missed_batch_is_recovered_once_and_consumed_like_a_webhook() {
    let h = Harness::new().await;
    h.gemini
        .put_operation(batch("missed", "BATCH_STATE_SUCCEEDED", NOW_MS, 2 * HOUR));

    let first = h.run(&options(10)).await;
    assert_eq!(first.recovered, vec!["batches/missed".to_owned()]);
    assert_eq!((first.scanned, first.failures), (1, 0));
    let queued = h.take_queued().await;
    assert_eq!(webhook_ids(&queued), ["reconcile:batches/missed:SUCCEEDED"]);
    let (QueueEnvelope::Webhook(w), body) = &queued[0] else {
        panic!("webhook envelope expected");
    };
    assert_eq!(w.signature_mode, SignatureMode::Synthetic);
    assert_eq!(w.event.event_type.as_str(), "batch.succeeded");
    assert_eq!(w.event.job_id.as_deref(), Some("batches/missed"));
    assert_eq!(w.received_at_ms, NOW_MS);

    // A second run (the consumer has not run yet) enqueues nothing: the id is claimed.
    h.clock.advance_ms(HOUR);
    let second = h.run(&options(10)).await;
    assert!(second.recovered.is_empty(), "{second:?}");
    assert_eq!(second.already_recovered, 1);
    assert!(h.take_queued().await.is_empty());

    // The consumer ingests the synthetic event like any webhook …
    let handled = h
        .consumer()
        .handle_message(body, None)
        .await
        .unwrap_or_else(|e| panic!("consume: {e}"));
    assert_eq!(
        handled,
        Handled::Ingested {
            job_id: "batches/missed".into(),
            rows: 1
        }
    );
    // … after which the batch counts as handled.
    let third = h.run(&options(10)).await;
    assert_eq!((third.handled, third.already_recovered), (1, 0));
    assert!(third.recovered.is_empty());

    let docs = h.metrics.documents().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(docs.len(), 3, "one EMF line per run");
    assert!(docs.iter().all(|d| d["Function"] == "reconciler-fn"));
    assert_eq!(h.metrics.sum(metric::BATCHES_RECOVERED, None), 1.0);
    assert_eq!(h.metrics.sum(metric::BATCHES_SCANNED, None), 3.0);
    assert_eq!(h.metrics.sum(metric::RECONCILE_FAILURES, None), 0.0);
}

#[tokio::test]
async fn handled_running_recent_old_and_in_progress_batches_are_left_alone() {
    let h = Harness::new().await;
    let g = &h.gemini;
    g.put_operation(batch("done", "BATCH_STATE_SUCCEEDED", NOW_MS, 3 * HOUR));
    g.put_operation(batch("done-routed", "BATCH_STATE_FAILED", NOW_MS, 3 * HOUR));
    g.put_operation(batch("running", "BATCH_STATE_RUNNING", NOW_MS, 3 * HOUR));
    g.put_operation(batch("pending", "JOB_STATE_PENDING", NOW_MS, 3 * HOUR));
    g.put_operation(batch("recent", "BATCH_STATE_SUCCEEDED", NOW_MS, 10 * MIN));
    g.put_operation(batch(
        "ancient",
        "BATCH_STATE_SUCCEEDED",
        NOW_MS,
        100 * HOUR,
    ));
    g.put_operation(batch("busy", "BATCH_STATE_SUCCEEDED", NOW_MS, 3 * HOUR));
    g.put_operation(batch("stuck", "BATCH_STATE_EXPIRED", NOW_MS, 3 * HOUR));
    h.save(
        &h.results,
        "batches/done",
        JobState::Succeeded,
        NOW_MS - 2 * HOUR,
    )
    .await;
    // Finished in a routed table: still handled.
    h.save(
        &h.routed,
        "batches/done-routed",
        JobState::Failed,
        NOW_MS - 2 * HOUR,
    )
    .await;
    // Being ingested right now (updated within the grace period).
    h.save(
        &h.results,
        "batches/busy",
        JobState::Ingesting,
        NOW_MS - MIN,
    )
    .await;
    // A record that stopped moving long ago: recovered.
    h.save(
        &h.routed,
        "batches/stuck",
        JobState::Received,
        NOW_MS - 2 * HOUR,
    )
    .await;

    let r = h.run(&options(3)).await;
    assert_eq!(r.listed, 8);
    assert_eq!(r.not_finished, 2);
    assert_eq!(r.too_recent, 1);
    assert_eq!(r.outside_window, 1);
    assert_eq!(r.handled, 2);
    assert_eq!(r.in_progress, 1);
    assert_eq!(r.recovered, vec!["batches/stuck".to_owned()]);
    assert_eq!(r.failures, 0);

    let queued = h.take_queued().await;
    assert_eq!(webhook_ids(&queued), ["reconcile:batches/stuck:EXPIRED"]);
    let QueueEnvelope::Webhook(w) = &queued[0].0 else {
        panic!("webhook envelope expected");
    };
    assert_eq!(w.event.event_type.as_str(), "batch.expired");

    // Once its grace period has passed, the recent batch is recovered too; nothing else changes
    // (the busy job was updated 26 minutes ago: still within its grace period).
    h.clock.advance_ms(25 * MIN);
    let later = h.run(&options(3)).await;
    assert_eq!(later.recovered, vec!["batches/recent".to_owned()]);
    assert_eq!(
        later.already_recovered, 1,
        "stuck was recovered by the first run"
    );
    assert_eq!(
        webhook_ids(&h.take_queued().await),
        ["reconcile:batches/recent:SUCCEEDED"]
    );
}

#[tokio::test]
async fn every_page_is_examined() {
    let h = Harness::new().await;
    // 7 batches, 2 per page: 4 pages. Missed ones on the first, middle and last page.
    for (i, state) in [
        "BATCH_STATE_SUCCEEDED",
        "BATCH_STATE_RUNNING",
        "BATCH_STATE_RUNNING",
        "BATCH_STATE_FAILED",
        "BATCH_STATE_RUNNING",
        "BATCH_STATE_RUNNING",
        "BATCH_STATE_CANCELLED",
    ]
    .iter()
    .enumerate()
    {
        h.gemini
            .put_operation(batch(&format!("p{i}"), state, NOW_MS, 2 * HOUR));
    }
    let r = h.run(&options(2)).await;
    assert_eq!((r.pages, r.listed, r.truncated), (4, 7, false));
    let mut recovered = r.recovered.clone();
    recovered.sort();
    assert_eq!(recovered, ["batches/p0", "batches/p3", "batches/p6"]);
    let list_calls = h.gemini.requests_to("/v1beta/batches?");
    assert_eq!(list_calls.len(), 4);
    assert!(list_calls.iter().all(|c| c.authorized && c.status == 200));
    assert!(list_calls.iter().all(|c| c.path.contains("pageSize=2")));
    assert_eq!(
        webhook_ids(&h.take_queued().await),
        [
            "reconcile:batches/p0:SUCCEEDED",
            "reconcile:batches/p3:FAILED",
            "reconcile:batches/p6:CANCELLED"
        ]
    );

    // max_pages bounds a run and says so.
    let bounded = h
        .run(&ReconcileOptions {
            max_pages: 2,
            ..options(2)
        })
        .await;
    assert_eq!((bounded.pages, bounded.truncated), (2, true));
}

#[tokio::test]
async fn a_failing_list_call_fails_the_run_and_is_counted() {
    let h = Harness::new().await;
    h.gemini
        .put_operation(batch("a", "BATCH_STATE_SUCCEEDED", NOW_MS, 2 * HOUR));
    h.gemini.inject(
        "/v1beta/batches?",
        vec![Fault::Status(500), Fault::Status(500)],
    );
    match h.reconciler().run(&options(10)).await {
        Err(ReconcileError::List(_)) => {}
        other => panic!("expected a list error, got {other:?}"),
    }
    assert!(h.take_queued().await.is_empty());
    assert_eq!(h.metrics.sum(metric::RECONCILE_FAILURES, None), 1.0);
    // The next run (fault gone) recovers it.
    let r = h.run(&options(10)).await;
    assert_eq!(r.recovered, vec!["batches/a".to_owned()]);
}

#[tokio::test]
async fn a_missing_queue_is_a_failure_and_the_claim_is_released() {
    let h = Harness::new().await;
    h.gemini
        .put_operation(batch("q", "BATCH_STATE_SUCCEEDED", NOW_MS, 2 * HOUR));
    let missing = format!(
        "{}/123456789012/{}",
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_default(),
        moto::unique_name("missing")
    );
    let broken = Reconciler::new(
        h.client(),
        h.routes(),
        EnqueueOnce::new(
            h.dedupe.clone(),
            Arc::new(SqsEventQueue::new(h.sqs.clone(), missing)),
            Arc::new(h.clock.clone()),
        ),
        Arc::new(h.clock.clone()),
        h.metrics
            .metrics("reconciler-fn", Arc::new(h.clock.clone())),
    );
    let r = broken
        .run(&options(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.failures, r.recovered.len()), (1, 0));
    // The claim was released: a healthy run recovers the batch at once.
    let r = h.run(&options(10)).await;
    assert_eq!(r.recovered, vec!["batches/q".to_owned()]);
}

/// The real binary under a Lambda Runtime API, invoked with an EventBridge scheduled event.
#[tokio::test]
async fn reconciler_binary_recovers_on_a_scheduled_event() {
    let h = Harness::new().await;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or_default())
        .unwrap_or_default();
    h.gemini
        .put_operation(batch("bin", "BATCH_STATE_SUCCEEDED", now_ms, 2 * HOUR));
    h.gemini
        .put_operation(batch("bin-old", "BATCH_STATE_SUCCEEDED", now_ms, 30 * HOUR));
    let api = RuntimeApi::start().await;
    let env = [
        ("RESULTS_TABLE", h.results_table.clone()),
        ("ROUTES", String::new()),
        ("DEDUPE_TABLE", h.dedupe_table.clone()),
        ("QUEUE_URL", h.queue_url.clone()),
        ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
        ("GEMINI_API_BASE_URL", h.gemini.base_url()),
    ];
    let function = spawn_function(&bin_path("reconciler"), &api, &env).await;
    let scheduled = json!({
        "version": "0", "id": "5b3f0b1c-0000-0000-0000-000000000000",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-18T10:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/reconcile"],
        "detail": {"look_back_hours": 24}
    });
    let out = api
        .invoke(scheduled, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("invoke: {e}\n{}", function.logs()));
    assert_eq!(out["recovered"], json!(["batches/bin"]), "{out}");
    assert_eq!(out["listed"], 2);
    assert_eq!(
        webhook_ids(&h.take_queued().await),
        ["reconcile:batches/bin:SUCCEEDED"]
    );
    // Input options at the top level (EventBridge `Input`) work too; nothing new to recover.
    let out = api
        .invoke(json!({"look_back_hours": 48}), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("invoke: {e}"));
    assert_eq!(out["recovered"], json!(["batches/bin-old"]), "{out}");
    assert_eq!(out["already_recovered"], 1);

    assert!(
        function
            .wait_for_log("recovered a finished batch", Duration::from_secs(5))
            .await
    );
    let emf: Vec<Value> = function
        .stdout()
        .lines()
        .filter(|l| l.contains("\"_aws\""))
        .map(|l| validate_emf(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(emf.len(), 2, "{}", function.stdout());
    assert!(emf.iter().all(|d| d[metric::BATCHES_RECOVERED] == 1));
    assert!(function.logs().contains("\"level\":\"WARN\""));
    assert!(
        !function.logs().contains(FakeGemini::API_KEY),
        "API key leaked"
    );

    // Invalid options fail the invocation with a message naming the option.
    let err = api
        .invoke(json!({"look_back_hours": 0}), Duration::from_secs(30))
        .await;
    assert!(format!("{err:?}").contains("look_back_hours"), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Early warnings: disabled webhooks, late batches
// ---------------------------------------------------------------------------------------------

const DISABLED: &str = "disabled_due_to_failed_deliveries";

/// A batch in `state` created `ago_ms` before `now_ms` (still pending or running: no end time).
fn created_batch(name: &str, state: &str, now_ms: i64, ago_ms: i64) -> Value {
    with_create_time(
        operation_json(name, state, OutputSpec::None),
        &rfc3339(now_ms - ago_ms),
    )
}

/// The value of metric `name` in an EMF document, if the document has it.
fn value(doc: &Value, name: &str) -> Option<f64> {
    doc.get(name).and_then(Value::as_f64)
}

impl Harness {
    fn warning_reconciler(&self, late_hours: u64) -> Reconciler {
        self.reconciler()
            .with_late_batch_after(Some(Duration::from_secs(late_hours * 3600)))
    }

    /// The EMF document of the last run.
    fn last_document(&self) -> Value {
        let docs = self.metrics.documents().unwrap_or_else(|e| panic!("{e}"));
        docs.last()
            .cloned()
            .unwrap_or_else(|| panic!("no EMF line"))
    }
}

#[tokio::test]
async fn a_disabled_webhook_and_a_late_batch_raise_their_metrics_then_return_to_zero() {
    let h = Harness::new().await;
    let g = &h.gemini;
    g.put_operation(created_batch(
        "nightly",
        "BATCH_STATE_RUNNING",
        NOW_MS,
        7 * HOUR,
    ));
    g.put_operation(created_batch(
        "queued",
        "JOB_STATE_PENDING",
        NOW_MS,
        30 * HOUR,
    ));
    g.put_operation(created_batch(
        "young",
        "BATCH_STATE_RUNNING",
        NOW_MS,
        5 * HOUR,
    ));
    let mut undated = operation_json("undated", "BATCH_STATE_RUNNING", OutputSpec::None);
    if let Some(m) = undated["metadata"].as_object_mut() {
        m.remove("createTime");
    }
    g.put_operation(undated);
    // Old but finished: never late (and recovered, as before).
    g.put_operation(with_create_time(
        batch("done", "BATCH_STATE_SUCCEEDED", NOW_MS, 2 * HOUR),
        &rfc3339(NOW_MS - 40 * HOUR),
    ));
    g.add_webhook(Some("prod"), "https://prod.example/hook", "enabled");
    let broken = g.add_webhook(
        Some("nightly-hook"),
        "https://user:pw@broken.example/hook?token=t0ps3cret",
        DISABLED,
    );
    let _paused = g.add_webhook(None, "https://paused.example/hook", "disabled");
    // One webhook per page: every page is read.
    g.set_webhook_page_size(1);

    let r = h
        .warning_reconciler(6)
        .run(&options(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut late = r.late.clone();
    late.sort();
    assert_eq!(late, ["batches/nightly", "batches/queued"], "{r:?}");
    assert_eq!(
        r.webhooks,
        WebhookCheck::Checked {
            listed: 3,
            disabled: vec![broken.clone()]
        }
    );
    assert_eq!(r.recovered, vec!["batches/done".to_owned()]);
    let list_calls = g.requests_to("/v1/webhooks");
    assert_eq!(list_calls.len(), 3, "{list_calls:?}");
    assert!(list_calls.iter().all(|c| c.authorized && c.method == "GET"));
    assert!(list_calls.iter().any(|c| c.path.contains("page_token=")));
    let doc = h.last_document();
    assert_eq!(doc["Function"], "reconciler-fn");
    assert_eq!(value(&doc, metric::WEBHOOKS_DISABLED), Some(1.0), "{doc}");
    assert_eq!(value(&doc, metric::BATCHES_LATE), Some(2.0), "{doc}");
    assert_eq!(
        value(&doc, metric::WEBHOOK_CHECKS_FAILED),
        Some(0.0),
        "{doc}"
    );
    assert_eq!(doc["webhooks_listed"], 3);

    // Time passes (the injected clock): the young batch is late now too.
    h.clock.advance_ms(2 * HOUR);
    let r = h
        .warning_reconciler(6)
        .run(&options(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.late.len(), 3, "{r:?}");
    assert_eq!(value(&h.last_document(), metric::BATCHES_LATE), Some(3.0));

    // All is well again: both metrics are still emitted, as 0, so the alarms return to OK.
    g.set_webhook_state(&broken, "enabled");
    for name in ["nightly", "queued", "young", "undated"] {
        g.put_operation(batch(name, "BATCH_STATE_SUCCEEDED", NOW_MS, 0));
    }
    let r = h
        .warning_reconciler(6)
        .run(&options(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(r.late.is_empty(), "{r:?}");
    assert_eq!(
        r.webhooks,
        WebhookCheck::Checked {
            listed: 3,
            disabled: vec![]
        }
    );
    let doc = h.last_document();
    assert_eq!(value(&doc, metric::WEBHOOKS_DISABLED), Some(0.0), "{doc}");
    assert_eq!(value(&doc, metric::BATCHES_LATE), Some(0.0), "{doc}");

    // Without a late threshold there is no late check and no `BatchesLate`; webhooks are
    // checked whatever the threshold.
    g.put_operation(created_batch(
        "slow",
        "BATCH_STATE_RUNNING",
        NOW_MS,
        50 * HOUR,
    ));
    let r = h.run(&options(2)).await;
    assert!(r.late.is_empty());
    let doc = h.last_document();
    assert_eq!(value(&doc, metric::BATCHES_LATE), None, "{doc}");
    assert_eq!(value(&doc, metric::WEBHOOKS_DISABLED), Some(0.0), "{doc}");
}

#[tokio::test]
async fn a_webhook_list_that_cannot_be_read_is_counted_and_the_run_goes_on() {
    let h = Harness::new().await;
    h.gemini
        .put_operation(batch("a", "BATCH_STATE_SUCCEEDED", NOW_MS, 2 * HOUR));
    h.gemini.put_operation(created_batch(
        "slow",
        "BATCH_STATE_RUNNING",
        NOW_MS,
        8 * HOUR,
    ));
    h.gemini
        .add_webhook(Some("x"), "https://x.example/hook", DISABLED);

    // 403: the key may not read webhooks. 404: no WebhookService where the API runs.
    for (status, reason) in [(403, "forbidden"), (404, "not_found")] {
        h.gemini.inject("/v1/webhooks", vec![Fault::Status(status)]);
        let r = h
            .warning_reconciler(6)
            .run(&options(10))
            .await
            .unwrap_or_else(|e| panic!("HTTP {status} must not fail the run: {e}"));
        assert_eq!(r.webhooks, WebhookCheck::Failed { reason });
        assert_eq!(r.late, vec!["batches/slow".to_owned()]);
        let doc = h.last_document();
        assert_eq!(
            value(&doc, metric::WEBHOOK_CHECKS_FAILED),
            Some(1.0),
            "{doc}"
        );
        // Unknown is not 0: no `WebhooksDisabled` at all.
        assert_eq!(value(&doc, metric::WEBHOOKS_DISABLED), None, "{doc}");
        assert_eq!(doc["webhook_check_error"], reason);
        assert_eq!(value(&doc, metric::BATCHES_LATE), Some(1.0), "{doc}");
        assert_eq!(value(&doc, metric::RECONCILE_FAILURES), Some(0.0), "{doc}");
    }
    // The batch reconcile went on: the missed batch was recovered by the first run.
    assert_eq!(
        webhook_ids(&h.take_queued().await),
        ["reconcile:batches/a:SUCCEEDED"]
    );

    // The other way round: a failing batch list still lets the webhook check report, and no
    // `BatchesLate` 0 comes from a listing that saw nothing.
    h.gemini.inject(
        "/v1beta/batches?",
        vec![Fault::Status(500), Fault::Status(500)],
    );
    let err = h.warning_reconciler(6).run(&options(10)).await;
    assert!(matches!(err, Err(ReconcileError::List(_))), "{err:?}");
    let doc = h.last_document();
    assert_eq!(value(&doc, metric::WEBHOOKS_DISABLED), Some(1.0), "{doc}");
    assert_eq!(value(&doc, metric::BATCHES_LATE), None, "{doc}");
    assert_eq!(value(&doc, metric::RECONCILE_FAILURES), Some(1.0), "{doc}");
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or_default())
        .unwrap_or_default()
}

impl Harness {
    fn binary_env(&self, late_batch_hours: Option<&str>) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("RESULTS_TABLE", self.results_table.clone()),
            ("ROUTES", String::new()),
            ("DEDUPE_TABLE", self.dedupe_table.clone()),
            ("QUEUE_URL", self.queue_url.clone()),
            ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
            ("GEMINI_API_BASE_URL", self.gemini.base_url()),
        ];
        if let Some(h) = late_batch_hours {
            env.push(("LATE_BATCH_HOURS", h.to_owned()));
        }
        env
    }
}

/// Every EMF document the function printed so far.
fn emf_documents(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|l| l.contains("\"_aws\""))
        .map(|l| validate_emf(l).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// The real binary: a disabled webhook and a late batch raise their metrics in the EMF line it
/// prints, both fall to 0 once fixed, and a webhook list answering 403 or 404 is counted while
/// the invocation still succeeds.
#[tokio::test]
async fn reconciler_binary_raises_disabled_webhook_and_late_batch_metrics() {
    let h = Harness::new().await;
    let now = now_ms();
    let g = &h.gemini;
    g.put_operation(created_batch(
        "late-nightly",
        "BATCH_STATE_RUNNING",
        now,
        7 * HOUR,
    ));
    g.put_operation(created_batch("on-time", "BATCH_STATE_RUNNING", now, HOUR));
    g.add_webhook(Some("prod"), "https://prod.example/hook", "enabled");
    let broken = g.add_webhook(
        Some("nightly-hook"),
        "https://broken.example/hook?token=t0ps3cret",
        DISABLED,
    );
    let secrets: Vec<String> = g
        .webhooks()
        .into_iter()
        .flat_map(|w| w.secrets.into_iter().map(|s| s.secret))
        .collect();

    let api = RuntimeApi::start().await;
    let function = spawn_function(&bin_path("reconciler"), &api, &h.binary_env(Some("6"))).await;
    let invoke = |payload: Value| {
        let api = &api;
        let function = &function;
        async move {
            api.invoke(payload, Duration::from_secs(30))
                .await
                .unwrap_or_else(|e| panic!("invoke: {e}\n{}", function.logs()))
        }
    };

    let out = invoke(json!({"look_back_hours": 24})).await;
    assert_eq!(out["late"], json!(["batches/late-nightly"]), "{out}");
    assert_eq!(
        out["webhooks"],
        json!({"listed": 2, "disabled": [broken], "check_failed": null}),
        "{out}"
    );
    let docs = emf_documents(&function.stdout());
    assert_eq!(docs.len(), 1, "{}", function.stdout());
    assert_eq!(value(&docs[0], metric::WEBHOOKS_DISABLED), Some(1.0));
    assert_eq!(value(&docs[0], metric::BATCHES_LATE), Some(1.0));
    assert_eq!(value(&docs[0], metric::WEBHOOK_CHECKS_FAILED), Some(0.0));
    // Each named in the log: the webhook by id, name and URI (without its query), the batch by
    // id, once per run.
    assert!(
        function
            .wait_for_log("Gemini disabled this webhook", Duration::from_secs(5))
            .await,
        "{}",
        function.logs()
    );
    assert!(
        function
            .wait_for_log("long after its creation (late)", Duration::from_secs(5))
            .await,
        "{}",
        function.logs()
    );
    let logs = function.logs();
    let disabled_line = logs
        .lines()
        .find(|l| l.contains("Gemini disabled this webhook"))
        .unwrap_or_default();
    for needle in [
        broken.as_str(),
        "nightly-hook",
        "https://broken.example/hook",
        "\"level\":\"ERROR\"",
    ] {
        assert!(disabled_line.contains(needle), "{needle}: {disabled_line}");
    }
    let late_lines: Vec<&str> = logs.lines().filter(|l| l.contains("(late)")).collect();
    assert_eq!(late_lines.len(), 1, "{logs}");
    assert!(late_lines[0].contains("batches/late-nightly"), "{logs}");
    assert!(late_lines[0].contains("\"level\":\"WARN\""), "{logs}");

    // Fixed: the webhook enabled, the batch finished. Both metrics are 0, not missing.
    g.set_webhook_state(&broken, "enabled");
    g.put_operation(batch("late-nightly", "BATCH_STATE_SUCCEEDED", now, 0));
    let out = invoke(json!({"look_back_hours": 24})).await;
    assert_eq!(out["late"], json!([]), "{out}");
    assert_eq!(out["webhooks"]["disabled"], json!([]), "{out}");
    let docs = emf_documents(&function.stdout());
    assert_eq!(docs.len(), 2, "{}", function.stdout());
    assert_eq!(value(&docs[1], metric::WEBHOOKS_DISABLED), Some(0.0));
    assert_eq!(value(&docs[1], metric::BATCHES_LATE), Some(0.0));

    // The key may not read webhooks (403), or the API has no WebhookService (404): counted,
    // the run succeeds, and the batch checks still report.
    g.put_operation(created_batch(
        "late-again",
        "JOB_STATE_PENDING",
        now,
        9 * HOUR,
    ));
    for (status, reason) in [(403, "forbidden"), (404, "not_found")] {
        g.inject("/v1/webhooks", vec![Fault::Status(status)]);
        let out = invoke(json!({"look_back_hours": 24})).await;
        assert_eq!(out["webhooks"]["check_failed"], reason, "{out}");
        assert_eq!(out["late"], json!(["batches/late-again"]), "{out}");
        let docs = emf_documents(&function.stdout());
        let doc = docs.last().unwrap_or_else(|| panic!("no EMF line"));
        assert_eq!(
            value(doc, metric::WEBHOOK_CHECKS_FAILED),
            Some(1.0),
            "{doc}"
        );
        assert_eq!(value(doc, metric::WEBHOOKS_DISABLED), None, "{doc}");
        assert_eq!(value(doc, metric::BATCHES_LATE), Some(1.0), "{doc}");
        assert_eq!(doc["webhook_check_error"], reason, "{doc}");
    }
    assert!(
        function
            .wait_for_log(
                "could not read the registered webhooks",
                Duration::from_secs(5)
            )
            .await
    );

    let logs = function.logs();
    assert!(!logs.contains(FakeGemini::API_KEY), "API key leaked");
    assert!(!logs.contains("t0ps3cret"), "URI query leaked");
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "signing secret leaked");
    }
}

/// `LATE_BATCH_HOURS=0` turns the late check off (no `BatchesLate` at all); a bad value stops
/// the binary at start naming the variable.
#[tokio::test]
async fn reconciler_binary_late_batch_hours_zero_and_invalid() {
    let h = Harness::new().await;
    h.gemini.put_operation(created_batch(
        "slow",
        "BATCH_STATE_RUNNING",
        now_ms(),
        30 * HOUR,
    ));
    let api = RuntimeApi::start().await;
    let function = spawn_function(&bin_path("reconciler"), &api, &h.binary_env(Some("0"))).await;
    let out = api
        .invoke(json!({}), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("invoke: {e}\n{}", function.logs()));
    assert_eq!(out["late"], json!([]), "{out}");
    let docs = emf_documents(&function.stdout());
    assert_eq!(docs.len(), 1, "{}", function.stdout());
    assert_eq!(value(&docs[0], metric::BATCHES_LATE), None, "{}", docs[0]);
    assert_eq!(value(&docs[0], metric::WEBHOOKS_DISABLED), Some(0.0));

    for bad in ["six", "169"] {
        let api = RuntimeApi::start().await;
        let mut function =
            spawn_function(&bin_path("reconciler"), &api, &h.binary_env(Some(bad))).await;
        let status = function.wait_exit(Duration::from_secs(10)).await;
        assert!(
            status.is_some_and(|s| !s.success()),
            "{bad}: must exit non-zero: {status:?}"
        );
        assert!(
            function
                .wait_for_log("LATE_BATCH_HOURS", Duration::from_secs(5))
                .await,
            "{bad}: {}",
            function.logs()
        );
    }
}

/// With `ResultsRetentionDays` shorter than the look-back, a batch that finished before the
/// retention is not recovered: its job record may just have expired, and recovering it would
/// write its rows and send its "Gemini Job Finished" event again. One inside the retention
/// still is.
#[tokio::test]
async fn an_expired_job_record_is_not_recovered_or_announced_again() {
    let h = Harness::new().await;
    // Ingested 60 h ago; with a 2-day retention its record is gone.
    h.gemini
        .put_operation(batch("expired", "BATCH_STATE_SUCCEEDED", NOW_MS, 60 * HOUR));
    // Missed 10 h ago: no record either, inside the retention.
    h.gemini
        .put_operation(batch("missed", "BATCH_STATE_SUCCEEDED", NOW_MS, 10 * HOUR));
    let r = h
        .reconciler()
        .with_results_retention(Some(Duration::from_secs(2 * 86_400)))
        .run(&options(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.recovered, ["batches/missed"], "{r:?}");
    assert_eq!(r.outside_window, 1, "{r:?}");
    assert_eq!(
        webhook_ids(&h.take_queued().await),
        ["reconcile:batches/missed:SUCCEEDED"]
    );

    // A retention longer than the look-back changes nothing.
    let h = Harness::new().await;
    h.gemini
        .put_operation(batch("expired", "BATCH_STATE_SUCCEEDED", NOW_MS, 60 * HOUR));
    let r = h
        .reconciler()
        .with_results_retention(Some(Duration::from_secs(30 * 86_400)))
        .run(&options(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.recovered, ["batches/expired"], "{r:?}");
}

/// A listing cut at `max_pages` has not seen every batch: it reports the late batches it saw,
/// and no `BatchesLate` 0 when it saw none (the alarm keeps its state instead of clearing).
#[tokio::test]
async fn a_listing_cut_at_max_pages_reports_no_late_zero() {
    let h = Harness::new().await;
    for name in ["one", "two", "three"] {
        h.gemini
            .put_operation(created_batch(name, "BATCH_STATE_RUNNING", NOW_MS, HOUR));
    }
    let r = h
        .warning_reconciler(6)
        .run(&ReconcileOptions {
            max_pages: 1,
            ..options(1)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(r.truncated && r.late.is_empty(), "{r:?}");
    let doc = h.last_document();
    assert_eq!(value(&doc, metric::BATCHES_LATE), None, "{doc}");
    assert_eq!(value(&doc, metric::BATCHES_SCANNED), Some(0.0), "{doc}");

    // The whole listing: a real 0.
    let r = h
        .warning_reconciler(6)
        .run(&options(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!r.truncated, "{r:?}");
    assert_eq!(value(&h.last_document(), metric::BATCHES_LATE), Some(0.0));
}
