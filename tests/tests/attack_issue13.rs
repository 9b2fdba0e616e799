//! Hostile review of issue 13 ("close the loop"), round 2: the re-ingest's removal of rows from
//! before the pass (`delete_rows_before`), the job listing of `results`, and what was held.
//!
//! Each test is one attack. `BROKE:` says what went wrong and where before the fix (`FIXED:` how
//! it holds now); `HELD:` marks an attack
//! the code withstood (kept as a regression check).
//!
//! Needs moto (`AWS_ENDPOINT_URL`), like `consume_moto.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::scan::ScanOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::adapters::aws::sqs::SqsEventQueue;
use gemini_hooks::adapters::gemini::{GeminiClient, GeminiSettings, RetryPolicy};
use gemini_hooks::domain::envelope::{
    EventSummary, QueueEnvelope, ReingestRequest, SignatureMode, WebhookEnvelope,
};
use gemini_hooks::domain::event::Event;
use gemini_hooks::domain::jobs::{JobRecord, JobState, ResultRow};
use gemini_hooks::ports::ResultsStore;
use gemini_hooks::ports::clock::{Clock, ManualClock};
use gemini_hooks::usecases::consume::{ConsumeSettings, Consumer, Handled};
use gemini_hooks::usecases::routes::Routes;
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, OutputSpec, error_line, operation_json, sample_results, success_line,
};
use gemini_hooks_tests::moto;
use serde_json::json;

const T0_MS: i64 = 1_795_000_000_000;
const HOUR_MS: i64 = 3_600_000;

// ---------------------------------------------------------------------------------------------
// Harness: moto through a tapped DynamoDB client (counts scans, fails a chosen write), the fake
// Gemini API, an SQS queue for hand-overs, a manual clock.
// ---------------------------------------------------------------------------------------------

/// Watches the results store's DynamoDB calls.
#[derive(Debug, Default)]
struct Tap {
    /// While set, every `BatchWriteItem` that deletes a `PART#` item fails (a throttled or
    /// dropped request: what `batch_write` gives up on after its attempts).
    fail_part_deletes: AtomicBool,
    /// `BatchWriteItem` calls failed so far.
    failed: AtomicU64,
    /// Scan requests, and the items they evaluated (`ScannedCount`).
    scans: AtomicU64,
    scanned: AtomicU64,
}

#[derive(Debug, Clone)]
struct TapRef(Arc<Tap>);

impl Intercept for TapRef {
    fn name(&self) -> &'static str {
        "attack13-tap"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let target = request.headers().get("x-amz-target").unwrap_or_default();
        if target.ends_with("BatchWriteItem") && self.0.fail_part_deletes.load(Ordering::SeqCst) {
            let body = String::from_utf8_lossy(request.body().bytes().unwrap_or_default());
            if body.contains("DeleteRequest") && body.contains("PART#") {
                self.0.failed.fetch_add(1, Ordering::SeqCst);
                return Err("injected: BatchWriteItem refused (throttled)".into());
            }
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(output) = context.output_or_error()
            && let Some(scan) = output.downcast_ref::<ScanOutput>()
        {
            self.0.scans.fetch_add(1, Ordering::SeqCst);
            self.0.scanned.fetch_add(
                u64::try_from(scan.scanned_count()).unwrap_or_default(),
                Ordering::SeqCst,
            );
        }
        Ok(())
    }
}

struct Harness {
    gemini: FakeGemini,
    sqs: aws_sdk_sqs::Client,
    ddb: aws_sdk_dynamodb::Client,
    queue_url: String,
    table: String,
    store: Arc<DynamoDbResultsStore>,
    tap: Arc<Tap>,
    clock: ManualClock,
}

impl Harness {
    async fn new() -> Self {
        let config = moto::sdk_config().await;
        let tap = Arc::new(Tap::default());
        let tapped = aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(TapRef(Arc::clone(&tap)))
            .build();
        let ddb = aws_sdk_dynamodb::Client::from_conf(tapped);
        let sqs = moto::sqs().await;
        let table = moto::unique_name("atk13-results");
        moto::create_results_table(&ddb, &table).await;
        let queue = moto::create_queue(&sqs, &moto::unique_name("atk13-events"), 5, 30).await;
        Self {
            gemini: FakeGemini::start().await,
            store: Arc::new(DynamoDbResultsStore::new(ddb.clone(), table.clone())),
            ddb,
            sqs,
            queue_url: queue.url,
            table,
            tap,
            clock: ManualClock::at_ms(T0_MS),
        }
    }

    fn consumer(&self, settings: ConsumeSettings) -> Consumer {
        let mut gs = GeminiSettings::new(FakeGemini::API_KEY);
        gs.base_url = self.gemini.base_url();
        gs.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        };
        gs.request_timeout = Duration::from_secs(5);
        Consumer::new(
            Arc::new(GeminiClient::new(gs, reqwest::Client::new())),
            Routes::single(self.store.clone()),
            Arc::new(SqsEventQueue::new(self.sqs.clone(), self.queue_url.clone())),
            Arc::new(self.clock.clone()),
            settings,
        )
    }

    async fn queued(&self) -> Vec<String> {
        moto::take_bodies(&self.sqs, &self.queue_url).await
    }

    async fn rows(&self, job: &str) -> Vec<ResultRow> {
        self.store
            .list_rows(job)
            .await
            .unwrap_or_else(|e| panic!("list_rows: {e}"))
    }

    async fn job(&self, id: &str) -> JobRecord {
        self.store
            .load_job(id)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no job {id}"))
    }

    /// `PART#…` items under `id`'s partition.
    async fn part_items(&self, id: &str) -> usize {
        self.ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :part)")
            .expression_attribute_values(":pk", AttributeValue::S(format!("JOB#{id}")))
            .expression_attribute_values(":part", AttributeValue::S("PART#".into()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("query: {e:?}"))
            .items()
            .len()
    }

    /// A SUCCEEDED batch `batches/<name>` with `lines` in its results file, ingested at T0.
    async fn ingested_batch(&self, name: &str, lines: &[String]) -> String {
        let file = format!("files/{name}-results");
        self.gemini
            .put_file(&file, Bytes::from(lines.join("\n") + "\n"));
        let id = format!("batches/{name}");
        self.gemini.put_operation(operation_json(
            &id,
            "BATCH_STATE_SUCCEEDED",
            OutputSpec::File(file),
        ));
        let outcome = self
            .consumer(ConsumeSettings::default())
            .handle_message(&delivery(&id), None)
            .await;
        assert!(
            matches!(outcome, Ok(Handled::Ingested { .. })),
            "ingest: {outcome:?}"
        );
        assert_eq!(self.job(&id).await.state, JobState::Succeeded);
        id
    }
}

/// The queue message the receiver would have produced for `id`'s `batch.succeeded`.
fn delivery(id: &str) -> String {
    let event = json!({"type": "batch.succeeded", "version": "v1",
        "timestamp": "2026-12-01T00:00:00Z", "data": {"id": id}});
    let parsed = Event::from_value(&event, None).unwrap_or_else(|e| panic!("event: {e}"));
    QueueEnvelope::Webhook(WebhookEnvelope {
        webhook_id: format!("msg_{id}"),
        received_at_ms: T0_MS - 1_000,
        signature_mode: SignatureMode::Static,
        bound: true,
        event: EventSummary::from(&parsed),
        raw_event: event,
        user_metadata: None,
    })
    .to_message()
    .unwrap_or_else(|e| panic!("envelope: {e}"))
    .body
}

/// What `gemini-hooks reingest` queues.
fn reingest_body(id: &str, request_id: &str, at_ms: i64) -> String {
    QueueEnvelope::Reingest(ReingestRequest {
        job_id: id.to_owned(),
        job_group: None,
        request_id: request_id.to_owned(),
        requested_at_ms: at_ms,
        part: 0,
    })
    .to_message()
    .unwrap_or_else(|e| panic!("reingest: {e}"))
    .body
}

/// Text that gzip cannot shrink much: a row of it is stored in parts on DynamoDB.
fn noise(len: usize) -> String {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            char::from(b'!' + u8::try_from(seed % 90).unwrap_or(0))
        })
        .collect()
}

fn small_file() -> Vec<String> {
    vec![
        success_line("a", "the answer"),
        success_line("b", "another answer"),
        error_line("c", 429, "Resource has been exhausted."),
    ]
}

// ---------------------------------------------------------------------------------------------
// 1. Re-ingest: the parts a bad deploy wrote for a row the file does have.
// ---------------------------------------------------------------------------------------------

/// FIXED: stale parts no remaining row names go (`stale_items`), as do a stale row's own.
/// BROKE: a bad deploy wrote row `a` (a key the results file has) with a 900 KB response, so
/// DynamoDB holds it in 5 `PART#…` items. The re-ingest rewrites `a` from the file (a small
/// `json` row), and its cleanup removes only the parts whose *owner row* is stale
/// (`delete_rows_before`, dynamodb_results.rs: `parts.filter(|(_, owner)| stale.contains(owner))`).
/// `a` is fresh, so its 5 parts (~900 KB) stay: no reader ever looks at them again (the row is
/// `json` now), nothing deletes them, and without `RESULTS_RETENTION_DAYS` they never expire.
/// The pass reports `rows_removed: 0` and is "finished", with the bad deploy's bytes still in
/// the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reingest_removes_the_parts_a_bad_deploy_left_on_a_row_the_file_has() {
    let h = Harness::new().await;
    let id = h.ingested_batch("shrunk", &small_file()).await;
    assert_eq!(h.part_items(&id).await, 0);

    // The bad deploy rewrote row `a` with a huge response.
    let rows = h.rows(&id).await;
    let a = rows
        .iter()
        .find(|r| r.key == "a")
        .cloned()
        .unwrap_or_else(|| panic!("no row a"));
    let bloated = ResultRow {
        text: None,
        response_json: Some(json!({"noise": noise(900_000)}).to_string()),
        ..a
    };
    h.store
        .put_rows(&[bloated])
        .await
        .unwrap_or_else(|e| panic!("bad row: {e}"));
    let bad_parts = h.part_items(&id).await;
    assert!(bad_parts > 0, "the bad row is stored in parts");

    // An hour later the operator re-ingests.
    h.clock.advance_ms(HOUR_MS);
    let outcome = h
        .consumer(ConsumeSettings::default())
        .handle_message(&reingest_body(&id, "ri-1", h.clock.now_ms()), None)
        .await;
    assert!(
        matches!(outcome, Ok(Handled::Reingested { .. })),
        "{outcome:?}"
    );
    let job = h.job(&id).await;
    assert!(
        job.reingest
            .as_ref()
            .and_then(|r| r.finished_at_ms)
            .is_some()
    );
    assert_eq!(
        h.rows(&id)
            .await
            .iter()
            .find(|r| r.key == "a")
            .and_then(|r| r.text.clone())
            .as_deref(),
        Some("the answer"),
        "row a restored"
    );
    assert_eq!(
        h.part_items(&id).await,
        0,
        "the {bad_parts} part items of the bad deploy's row `a` are still in the table after the \
         re-ingest finished"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Re-ingest: a cleanup that fails part-way, then is retried.
// ---------------------------------------------------------------------------------------------

const STRAYS: usize = 30;

/// A job with `STRAYS` rows under keys the file does not have (a bad deploy's, at T0), the
/// first of them (in sort-key order) stored in parts; re-ingested an hour later with the
/// `BatchWriteItem` that deletes parts failing once, then the message redelivered.
async fn interrupted_cleanup() -> (Harness, String) {
    let h = Harness::new().await;
    let id = h.ingested_batch("cleanup", &small_file()).await;
    let template = h.rows(&id).await[0].clone();
    let strays: Vec<ResultRow> = (0..STRAYS)
        .map(|i| ResultRow {
            key: format!("zz-stray-{i:02}"),
            text: if i == 0 { None } else { Some("stray".into()) },
            response_json: Some(if i == 0 {
                json!({"noise": noise(900_000)}).to_string()
            } else {
                json!({"stray": i}).to_string()
            }),
            ingested_at_ms: T0_MS,
            ..template.clone()
        })
        .collect();
    for chunk in strays.chunks(10) {
        h.store
            .put_rows(chunk)
            .await
            .unwrap_or_else(|e| panic!("strays: {e}"));
    }
    assert!(h.part_items(&id).await > 0, "the first stray has parts");
    assert_eq!(h.rows(&id).await.len(), 3 + STRAYS);

    h.clock.advance_ms(HOUR_MS);
    let body = reingest_body(&id, "ri-cleanup", h.clock.now_ms());
    let c = h.consumer(ConsumeSettings::default());
    h.tap.fail_part_deletes.store(true, Ordering::SeqCst);
    let first = c.handle_message(&body, None).await;
    h.tap.fail_part_deletes.store(false, Ordering::SeqCst);
    assert!(
        h.tap.failed.load(Ordering::SeqCst) > 0,
        "the fault was injected"
    );
    assert!(first.is_err(), "the first attempt fails: {first:?}");
    // SQS redelivers the message; the request resumes (same request id).
    let second = c.handle_message(&body, None).await;
    assert!(
        matches!(second, Ok(Handled::Reingested { .. })),
        "{second:?}"
    );
    assert_eq!(h.rows(&id).await.len(), 3, "every stray row is gone");
    (h, id)
}

/// FIXED: parts are deleted before their rows.
/// BROKE: the cleanup deletes stale rows 25 at a time *as it pages* and their parts only at
/// the very end (dynamodb_results.rs `delete_rows_before`: `while pending.len() >= MAX_BATCH`
/// inside the loop, `pending.extend(parts…)` after it). When the last `BatchWriteItem` fails
/// (throttling past `BATCH_ATTEMPTS`, a timeout of `within`, the Lambda dying), the rows that
/// own parts may already be gone; the redelivered message's cleanup no longer sees those rows
/// as stale, so it never matches their parts again. Observed: the row is gone, its 5 parts
/// (~900 KB) stay in the table for good (no TTL without a retention).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_reingest_cleanup_leaves_no_orphan_parts() {
    let (h, id) = interrupted_cleanup().await;
    assert_eq!(
        h.part_items(&id).await,
        0,
        "parts of a stray row deleted by the first attempt are orphaned"
    );
}

/// FIXED: the count is saved on the record before the deletes and kept by a retry.
/// BROKE: `rows_removed` is what the *last* attempt's `delete_rows_before` returned
/// (reingest.rs `finish_reingest`: `own.rows_removed = removed`), not what the pass removed: a
/// cleanup retried after it had deleted rows reports only the ones left for the retry.
/// Observed: 30 stray rows removed, `reingest.rows_removed` says 5 (and the
/// `rows_removed` metric property likewise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_removed_counts_every_row_the_pass_removed_when_its_cleanup_was_retried() {
    let (h, id) = interrupted_cleanup().await;
    let pass = h
        .job(&id)
        .await
        .reingest
        .unwrap_or_else(|| panic!("no reingest"));
    assert_eq!(
        pass.rows_removed, STRAYS as u64,
        "rows_removed after a retried cleanup"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Re-ingest across hand-overs, with time passing between the parts.
// ---------------------------------------------------------------------------------------------

/// HELD: a pass handed over across three invocations, with hours between its parts (a message
/// waiting out retries, or redriven from the dead-letter queue), keeps every row its earlier
/// parts rewrote: the cut-off is the pass's *start*, kept on the record, not the last part's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_whose_parts_are_hours_apart_keeps_every_row_of_the_file() {
    let h = Harness::new().await;
    let n = 1_500;
    h.gemini
        .put_file("files/slow-results", Bytes::from(sample_results(n, 0, 0)));
    h.gemini.put_operation(operation_json(
        "batches/slow",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File("files/slow-results".into()),
    ));
    let id = "batches/slow".to_owned();
    let plain = h.consumer(ConsumeSettings::default());
    assert!(matches!(
        plain.handle_message(&delivery(&id), None).await,
        Ok(Handled::Ingested { .. })
    ));
    assert_eq!(h.rows(&id).await.len() as u64, n);

    h.clock.advance_ms(HOUR_MS);
    let margin = 10_000;
    let hurried = h.consumer(ConsumeSettings {
        deadline_margin_ms: margin,
        checkpoint_every_lines: 200,
        ..ConsumeSettings::default()
    });
    let mut body = reingest_body(&id, "ri-slow", h.clock.now_ms());
    let mut parts = 0;
    loop {
        // Inside the margin: each invocation hands over after its first chunk.
        let deadline = Some(h.clock.now_ms() + margin - 1);
        match hurried.handle_message(&body, deadline).await {
            Ok(Handled::Continued { .. }) => {
                parts += 1;
                let queued = h.queued().await;
                assert_eq!(queued.len(), 1, "one hand-over");
                body = queued[0].clone();
                // The next part runs three hours later.
                h.clock.advance_ms(3 * HOUR_MS);
            }
            Ok(Handled::Reingested { .. }) => break,
            other => panic!("part {parts}: {other:?}"),
        }
        assert!(parts < 200, "the pass does not end");
    }
    assert!(parts >= 2, "handed over {parts} times");
    let job = h.job(&id).await;
    let pass = job.reingest.unwrap_or_else(|| panic!("no reingest"));
    assert_eq!(pass.rows_removed, 0, "{pass:?}");
    assert_eq!(h.rows(&id).await.len() as u64, n);
    assert_eq!(job.counts.rows_ingested, n);
}

// ---------------------------------------------------------------------------------------------
// 4. `results` (job listing): what the newest job costs to find.
// ---------------------------------------------------------------------------------------------

/// FIXED: the listing queries the `jobs-by-update` index (no scan at all).
/// BROKE (time and cost): `results --stack/--aws` lists the newest `--limit` jobs with
/// `list_jobs`, a `Scan` of the whole results table filtered to `sk = JOB`
/// (dynamodb_results.rs `list_jobs`). The memory is bounded, but every row and part item of
/// every job is read to find the job records: DynamoDB reads (and bills) 1 MB per scan page
/// *before* the filter, so a table of 10 GB of rows takes ~10 000 sequential Scan calls
/// (minutes, ~1.3 M read units) to print 50 lines, and grows with every batch ingested.
/// Observed here: listing the newest 1 job of 2 evaluates every one of their 400+ row items.
/// Fix: a sparse GSI on the job record (e.g. `gsi_pk = "JOB"`, sort `updated_at_ms`) queried
/// newest first with `Limit`, or a per-day job index item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_the_newest_job_does_not_read_every_row_of_the_table() {
    let h = Harness::new().await;
    for name in ["many-a", "many-b"] {
        let lines: Vec<String> = (0..200)
            .map(|i| success_line(&format!("k{i}"), "an answer"))
            .collect();
        h.ingested_batch(name, &lines).await;
        h.clock.advance_ms(1_000);
    }
    h.tap.scans.store(0, Ordering::SeqCst);
    h.tap.scanned.store(0, Ordering::SeqCst);
    let jobs = h
        .store
        .list_jobs(Some(1))
        .await
        .unwrap_or_else(|e| panic!("list_jobs: {e}"));
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job_id, "batches/many-b", "the newest");
    let scanned = h.tap.scanned.load(Ordering::SeqCst);
    assert!(
        scanned <= 10,
        "listing 1 job read {scanned} items in {} scan calls (every row of every job)",
        h.tap.scans.load(Ordering::SeqCst)
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Re-ingest of inline responses: the pass's start is never saved before its rows.
// ---------------------------------------------------------------------------------------------

/// HELD: a batch answered inline (no results file, so no `started` record is saved before the
/// rows) still removes the stray rows of a bad deploy and keeps every inline row: the start
/// rides on the in-memory `base` into `finish_reingest`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_reingest_removes_strays_and_keeps_every_inline_row() {
    use gemini_hooks_tests::fake_gemini::{inline_error, inline_success};
    let h = Harness::new().await;
    let id = "batches/inline13".to_owned();
    h.gemini.put_operation(operation_json(
        &id,
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::Inline(vec![
            inline_success("a", "first"),
            inline_success("b", "second"),
            inline_error("c", 3, "bad request"),
        ]),
    ));
    assert!(matches!(
        h.consumer(ConsumeSettings::default())
            .handle_message(&delivery(&id), None)
            .await,
        Ok(Handled::Ingested { .. })
    ));
    let good = h.rows(&id).await;
    assert_eq!(good.len(), 3);
    let stray = ResultRow {
        key: "stray".into(),
        ..good[0].clone()
    };
    h.store
        .put_rows(&[stray])
        .await
        .unwrap_or_else(|e| panic!("stray: {e}"));
    h.clock.advance_ms(HOUR_MS);
    let outcome = h
        .consumer(ConsumeSettings::default())
        .handle_message(&reingest_body(&id, "ri-inline", h.clock.now_ms()), None)
        .await;
    assert!(
        matches!(outcome, Ok(Handled::Reingested { .. })),
        "{outcome:?}"
    );
    let job = h.job(&id).await;
    let pass = job.reingest.unwrap_or_else(|| panic!("no reingest"));
    assert_eq!(pass.rows_removed, 1);
    assert_eq!(job.counts.rows_ingested, 3);
    let keys: Vec<String> = h.rows(&id).await.into_iter().map(|r| r.key).collect();
    assert_eq!(keys, ["a", "b", "c"]);
}
