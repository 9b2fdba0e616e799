//! The consumer at scale, against moto (DynamoDB results, SQS continuations) and the fake
//! Gemini API: pipelined writes and what a checkpoint may cover, flushes by bytes, the byte
//! budget shared by concurrent messages, calls bounded by the invocation deadline, and rows
//! whose parts DynamoDB could not hold as they are.
//!
//! The store is the real DynamoDB adapter, wrapped to observe (and, where a test says so, slow
//! down or fail) its writes: the wrapper only watches calls, every row goes to moto.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::domain::envelope::{QueueEnvelope, ReingestRequest};
use gemini_hooks::domain::event::JobKind;
use gemini_hooks::domain::jobs::{JobRecord, JobState, ResultRow};
use gemini_hooks::ports::clock::Clock;
use gemini_hooks::ports::{ResultsStore, StoreError};
use gemini_hooks::usecases::consume::{
    ConsumeError, ConsumeSettings, Consumer, Handled, InboundMessage, RetrySchedule, failures,
};
use gemini_hooks_tests::consume::{ConsumeHarness, T0_MS, webhook_body};
use gemini_hooks_tests::fake_gemini::{Fault, error_line, sample_results, success_line};
use serde_json::{Value, json};

/// What the wrapper saw of the writes.
#[derive(Default)]
struct Seen {
    /// Bytes (`ResultRow::approx_bytes`) of each `put_rows` call, in call order.
    call_bytes: Vec<usize>,
    /// Lines of the rows of each completed call.
    completed_lines: Vec<u64>,
}

/// The real DynamoDB store, watched: concurrency and bytes of `put_rows`, optional per-call
/// delays and one failing call.
struct Watched {
    inner: DynamoDbResultsStore,
    calls: AtomicUsize,
    active: AtomicUsize,
    max_active: AtomicUsize,
    active_bytes: AtomicUsize,
    max_active_bytes: AtomicUsize,
    /// Delay of call number n (0-based).
    delay: fn(usize) -> Duration,
    /// This call (0-based) fails after its delay, writing nothing.
    fail_call: Option<usize>,
    seen: Mutex<Seen>,
}

impl Watched {
    fn new(inner: DynamoDbResultsStore, delay: fn(usize) -> Duration) -> Self {
        Self {
            inner,
            calls: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            active_bytes: AtomicUsize::new(0),
            max_active_bytes: AtomicUsize::new(0),
            delay,
            fail_call: None,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[async_trait]
impl ResultsStore for Watched {
    async fn load_job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.inner.load_job(job_id).await
    }

    async fn save_job(&self, record: &JobRecord) -> Result<bool, StoreError> {
        self.inner.save_job(record).await
    }

    async fn put_rows(&self, rows: &[ResultRow]) -> Result<(), StoreError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let bytes: usize = rows.iter().map(ResultRow::approx_bytes).sum();
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .call_bytes
            .push(bytes);
        let active = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(active, Ordering::SeqCst);
        let held = self.active_bytes.fetch_add(bytes, Ordering::SeqCst) + bytes;
        self.max_active_bytes.fetch_max(held, Ordering::SeqCst);
        tokio::time::sleep((self.delay)(n)).await;
        let result = if self.fail_call == Some(n) {
            Err(StoreError::Unavailable("injected write failure".into()))
        } else {
            self.inner.put_rows(rows).await
        };
        if result.is_ok() {
            self.seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .completed_lines
                .extend(rows.iter().map(|r| r.line));
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.active_bytes.fetch_sub(bytes, Ordering::SeqCst);
        result
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

/// The shared harness, with this file's ids: `h.job("x")` is `batches/x`.
struct Harness(ConsumeHarness);

impl std::ops::Deref for Harness {
    type Target = ConsumeHarness;
    fn deref(&self) -> &ConsumeHarness {
        &self.0
    }
}

impl Harness {
    async fn new() -> Self {
        Self(ConsumeHarness::new("scale").await)
    }

    fn watched(&self, delay: fn(usize) -> Duration) -> Watched {
        Watched::new((*self.store).clone(), delay)
    }

    fn consumer(&self, store: Arc<dyn ResultsStore>, settings: ConsumeSettings) -> Consumer {
        self.consumer_for(store, settings)
    }

    async fn job(&self, id: &str) -> JobRecord {
        self.0.job(&format!("batches/{id}")).await
    }

    async fn rows(&self, id: &str) -> Vec<ResultRow> {
        self.0.rows(&format!("batches/{id}")).await
    }
}

/// The queue message the receiver would have produced for a `batch.succeeded` of `id`.
fn delivery(id: &str) -> String {
    let event = json!({"type": "batch.succeeded", "version": "v1",
        "timestamp": "2026-11-18T00:00:00Z", "data": {"id": id}});
    webhook_body(&format!("msg-{id}"), &event)
}

fn settings() -> ConsumeSettings {
    ConsumeSettings {
        rows_per_write: 25,
        ..ConsumeSettings::default()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn handle(c: &Consumer, body: &str, deadline: Option<i64>) -> Result<Handled, ConsumeError> {
    c.handle_message(body, deadline).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_are_pipelined_up_to_the_configured_number_in_flight() {
    let h = Harness::new().await;
    for (in_flight, id) in [(4, "pipe4"), (1, "pipe1")] {
        h.batch_with_file(id, sample_results(1_000, 0, 0));
        let store = Arc::new(h.watched(|_| ms(15)));
        let c = h.consumer(
            store.clone(),
            ConsumeSettings {
                writes_in_flight: in_flight,
                ..settings()
            },
        );
        let outcome = handle(&c, &delivery(id), None).await;
        assert!(
            matches!(outcome, Ok(Handled::Ingested { rows: 1_000, .. })),
            "{outcome:?}"
        );
        assert_eq!(
            (
                store.max_active.load(Ordering::SeqCst),
                store.calls.load(Ordering::SeqCst)
            ),
            (in_flight, 40),
            "writes at once with {in_flight} allowed in flight, and calls of 25 rows"
        );
        assert_eq!(h.rows(id).await.len(), 1_000);
    }
}

/// A write fails while later ones are in flight: the checkpoint saved on the way out covers
/// only lines whose writes completed, and the redelivered message converges on every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkpoint_never_covers_a_write_that_did_not_complete() {
    let h = Harness::new().await;
    let n = 2_000;
    h.batch_with_file("ckpt", sample_results(n, 0, 0));
    // Call 30 fails slowly, so the calls after it finish first.
    let mut store = h.watched(|n| if n == 30 { ms(150) } else { ms(5) });
    store.fail_call = Some(30);
    let store = Arc::new(store);
    let c = h.consumer(
        store.clone(),
        ConsumeSettings {
            checkpoint_every_lines: 250,
            ..settings()
        },
    );
    let outcome = handle(&c, &delivery("ckpt"), None).await;
    assert!(
        matches!(outcome, Err(ConsumeError::Store(_))),
        "{outcome:?}"
    );
    let job = h.job("ckpt").await;
    let covered = job.checkpoint.as_ref().map_or(0, |k| k.lines);
    let completed: HashSet<u64> = store.seen(|s| s.completed_lines.iter().copied().collect());
    assert!(covered > 0 && covered < n, "checkpoint at line {covered}");
    let uncovered: Vec<u64> = (1..=covered).filter(|l| !completed.contains(l)).collect();
    assert!(
        uncovered.is_empty(),
        "checkpointed lines never written: {uncovered:?}"
    );
    assert_eq!(
        job.counts.rows_ingested, covered,
        "the counters describe the checkpoint"
    );

    let retry = h.consumer(Arc::new(h.watched(|_| ms(0))), settings());
    let outcome = handle(&retry, &delivery("ckpt"), None).await;
    assert!(
        matches!(outcome, Ok(Handled::Ingested { rows, .. }) if rows == n),
        "{outcome:?}"
    );
    assert_eq!(h.rows("ckpt").await.len() as u64, n);
}

/// Two lines of one key in different writes: the later line wins even when the earlier write
/// is the slower one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_later_line_of_a_key_wins_even_when_writes_overlap() {
    let h = Harness::new().await;
    let mut body = String::new();
    for i in 1..=60 {
        let key = if i == 1 || i == 40 {
            "dup".to_owned()
        } else {
            format!("k{i}")
        };
        body.push_str(&success_line(&key, &format!("line {i}")));
        body.push('\n');
    }
    h.batch_with_file("dup", body);
    // The first write (lines 1-25) is slow; the second (26-50, with line 40) would overtake it.
    let store = Arc::new(h.watched(|n| if n == 0 { ms(300) } else { ms(1) }));
    let c = h.consumer(store.clone(), settings());
    let outcome = handle(&c, &delivery("dup"), None).await;
    assert!(
        matches!(outcome, Ok(Handled::Ingested { rows: 59, .. })),
        "{outcome:?}"
    );
    let rows = h.rows("dup").await;
    let dup = rows.iter().find(|r| r.key == "dup");
    assert_eq!(
        dup.map(|r| (r.line, r.text.clone())),
        Some((40, Some("line 40".to_owned())))
    );
    assert_eq!(h.job("dup").await.counts.duplicate_keys, 1);
}

/// Lines of ~300 KB: a write goes out once its rows reach `flush_bytes`, long before 25 rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_are_flushed_by_bytes_as_well_as_rows() {
    let h = Harness::new().await;
    let text = "word ".repeat(60_000);
    let mut body = String::new();
    for i in 1..=12 {
        body.push_str(&success_line(&format!("big{i}"), &text));
        body.push('\n');
    }
    h.batch_with_file("bytes", body);
    let flush = 1024 * 1024;
    let store = Arc::new(h.watched(|_| ms(0)));
    let c = h.consumer(
        store.clone(),
        ConsumeSettings {
            flush_bytes: flush,
            ..settings()
        },
    );
    let outcome = handle(&c, &delivery("bytes"), None).await;
    assert!(
        matches!(outcome, Ok(Handled::Ingested { rows: 12, .. })),
        "{outcome:?}"
    );
    let calls = store.seen(|s| s.call_bytes.clone());
    let row = 2 * text.len() + 1_000;
    assert!(
        calls.len() >= 3 && calls.iter().all(|&b| b < flush + row),
        "bytes per write: {calls:?}"
    );
    let rows = h.rows("bytes").await;
    assert!(
        rows.iter()
            .all(|r| r.text.as_deref() == Some(text.as_str()))
    );
}

/// Four messages of large lines at once: the rows held across all of them (being written)
/// never exceed the consumer's byte budget, and everything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_byte_budget_bounds_what_concurrent_messages_hold() {
    let h = Harness::new().await;
    let text = "budget ".repeat(40_000); // ~280 KB of text, ~560 KB a row
    let ids = ["b1", "b2", "b3", "b4"];
    for id in ids {
        let mut body = String::new();
        for i in 1..=6 {
            body.push_str(&success_line(&format!("{id}-{i}"), &text));
            body.push('\n');
        }
        h.batch_with_file(id, body);
    }
    let budget = 2 * 1024 * 1024;
    let store = Arc::new(h.watched(|_| ms(20)));
    let c = Arc::new(h.consumer(
        store.clone(),
        ConsumeSettings {
            bytes_in_flight: budget,
            flush_bytes: 1024 * 1024,
            max_concurrency: 4,
            ..settings()
        },
    ));
    let messages = ids
        .iter()
        .map(|id| InboundMessage {
            id: (*id).to_owned(),
            body: delivery(id),
            receive_count: 1,
        })
        .collect();
    let results = c.handle_batch(messages, None, RetrySchedule::LAMBDA).await;
    assert!(failures(&results).is_empty(), "{results:?}");
    let held = store.max_active_bytes.load(Ordering::SeqCst);
    assert!(
        held <= budget,
        "{held} bytes of rows in writes at once, budget {budget}"
    );
    assert!(
        held > budget / 4,
        "the budget was hardly used ({held} bytes): the test proves nothing"
    );
    assert_eq!(
        c.byte_budget().available(),
        budget,
        "every reservation was returned"
    );
    for id in ids {
        assert_eq!(h.rows(id).await.len(), 6, "{id}");
    }
}

/// `batches.get` hangs: the message fails alone, in time for the invocation to answer before
/// its deadline (the client alone would wait 15 s × 3 attempts).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_api_call_fails_the_message_before_the_deadline() {
    let h = Harness::new().await;
    h.batch_with_file("hung", sample_results(10, 0, 0));
    h.gemini
        .inject("batches/hung", vec![Fault::Delay(Duration::from_secs(60))]);
    let c = h.consumer(
        Arc::new(h.watched(|_| ms(0))),
        ConsumeSettings {
            deadline_margin_ms: 1_000,
            deadline_reserve_ms: 1_000,
            ..settings()
        },
    );
    let started = Instant::now();
    let outcome = handle(&c, &delivery("hung"), Some(h.clock.now_ms() + 3_000)).await;
    let took = started.elapsed();
    assert!(
        matches!(outcome, Err(ConsumeError::OutOfTime(_))),
        "{outcome:?}"
    );
    assert!(
        outcome
            .as_ref()
            .err()
            .is_some_and(ConsumeError::is_retryable)
    );
    assert!(
        took < Duration::from_millis(2_900),
        "answered after {took:?} of a 3 s deadline"
    );
}

/// The results file stalls mid-way: what was read is stored, checkpointed and handed to a
/// continuation before the deadline; the continuation finishes the job exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_download_hands_over_what_it_ingested() {
    let h = Harness::new().await;
    let n = 400;
    let body = sample_results(n, 0, 0);
    let half = body.len() / 2;
    h.batch_with_file("stall", body);
    h.gemini.inject(
        "files/stall",
        vec![Fault::Stall(half, Duration::from_secs(30))],
    );
    let c = h.consumer(
        Arc::new(h.watched(|_| ms(0))),
        ConsumeSettings {
            deadline_margin_ms: 1_000,
            deadline_reserve_ms: 1_500,
            ..settings()
        },
    );
    let started = Instant::now();
    let outcome = handle(&c, &delivery("stall"), Some(h.clock.now_ms() + 4_000)).await;
    assert!(started.elapsed() < Duration::from_millis(3_900));
    let Ok(Handled::Continued { byte_offset, .. }) = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        byte_offset > 0 && byte_offset <= half as u64,
        "handed over at {byte_offset}"
    );
    let queued = h.queued().await;
    assert_eq!(queued.len(), 1, "one continuation");
    let done = handle(&c, &queued[0], None).await;
    assert!(
        matches!(done, Ok(Handled::Ingested { rows, .. }) if rows == n),
        "{done:?}"
    );
    let job = h.job("stall").await;
    assert_eq!(
        (job.state, job.counts.rows_ingested),
        (JobState::Succeeded, n)
    );
    assert_eq!(h.rows("stall").await.len() as u64, n);
}

/// A download that yields nothing before the cutoff fails (and is retried) instead of
/// handing over an empty continuation, which would loop forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_download_stalled_from_the_start_fails_instead_of_looping() {
    let h = Harness::new().await;
    h.batch_with_file("dead", sample_results(50, 0, 0));
    h.gemini
        .inject("files/dead", vec![Fault::Stall(0, Duration::from_secs(30))]);
    let c = h.consumer(
        Arc::new(h.watched(|_| ms(0))),
        ConsumeSettings {
            deadline_margin_ms: 1_000,
            deadline_reserve_ms: 1_500,
            ..settings()
        },
    );
    let outcome = handle(&c, &delivery("dead"), Some(h.clock.now_ms() + 3_000)).await;
    assert!(
        matches!(outcome, Err(ConsumeError::OutOfTime(_))),
        "{outcome:?}"
    );
    assert!(
        h.queued().await.is_empty(),
        "no continuation for no progress"
    );
}

/// A row DynamoDB could not hold as it is (400 KB items): a 500 KB error message keeps its
/// first 64 KiB and its length; a 100 KB request key is kept in full on a hashed sort key,
/// with its response compressed beside it. The job is not poisoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_larger_than_an_item_are_stored_not_refused() {
    let h = Harness::new().await;
    let message = "e".repeat(500_000);
    let long_key = "k".repeat(100_000);
    let body = format!(
        "{}\n{}\n{}\n",
        error_line("err", 13, &message),
        success_line(&long_key, &"t ".repeat(100_000)),
        success_line("small", "ok")
    );
    h.batch_with_file("huge", body);
    let c = h.consumer(Arc::new(h.watched(|_| ms(0))), settings());
    let outcome = handle(&c, &delivery("huge"), None).await;
    assert!(
        matches!(outcome, Ok(Handled::Ingested { rows: 3, .. })),
        "{outcome:?}"
    );
    let rows = h.rows("huge").await;
    let err = rows.iter().find(|r| r.key == "err");
    assert_eq!(
        err.and_then(|r| r.error_message.as_ref()).map(String::len),
        Some(64 * 1024)
    );
    let long = rows.iter().find(|r| r.key == long_key);
    assert_eq!(
        long.map(|r| r.text.as_ref().map(String::len)),
        Some(Some(200_000)),
        "the long-keyed row, whole"
    );
    let response: Option<Value> = long
        .and_then(|r| r.response_json.as_deref())
        .and_then(|r| serde_json::from_str(r).ok());
    assert!(response.is_some(), "its response reassembled");
}

/// `gemini-hooks reingest` as the consumer sees it: the message the CLI queues.
fn reingest_request(id: &str, request_id: &str) -> String {
    QueueEnvelope::Reingest(ReingestRequest {
        job_id: format!("batches/{id}"),
        job_group: None,
        request_id: request_id.to_owned(),
        requested_at_ms: T0_MS,
        part: 0,
    })
    .to_message()
    .unwrap_or_else(|e| panic!("envelope: {e}"))
    .body
}

/// A re-ingest rewrites every row of a SUCCEEDED job (a bad deploy's rows are replaced), hands
/// over like an ingest when its download stalls, counts the rows it rewrote, and converges:
/// replays of the request and of its hand-over change nothing. The state stays SUCCEEDED.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reingest_rewrites_every_row_hands_over_and_converges() {
    let h = Harness::new().await;
    let n = 300;
    let body = sample_results(n, 7, 0);
    let half = body.len() / 2;
    h.batch_with_file("again", body);
    let c = h.consumer(
        Arc::new(h.watched(|_| ms(0))),
        ConsumeSettings {
            deadline_margin_ms: 1_000,
            deadline_reserve_ms: 1_500,
            ..settings()
        },
    );
    let first = handle(&c, &delivery("again"), None).await;
    assert!(
        matches!(first, Ok(Handled::Ingested { rows, .. }) if rows == n),
        "{first:?}"
    );
    let good = h.rows("again").await;
    let ingested = h.job("again").await;

    // A bad deploy: every tenth row's text replaced.
    let bad: Vec<ResultRow> = good
        .iter()
        .step_by(10)
        .map(|r| ResultRow {
            text: Some("WRONG".into()),
            ..r.clone()
        })
        .collect();
    h.store
        .put_rows(&bad)
        .await
        .unwrap_or_else(|e| panic!("bad rows: {e}"));
    assert_ne!(h.rows("again").await, good);

    // The re-ingest's download stalls half-way: it hands over to the next part.
    h.gemini.inject(
        "files/again",
        vec![Fault::Stall(half, Duration::from_secs(30))],
    );
    let request = reingest_request("again", "r-1");
    let outcome = handle(&c, &request, Some(h.clock.now_ms() + 4_000)).await;
    let Ok(Handled::Continued { byte_offset, .. }) = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        byte_offset > 0 && byte_offset <= half as u64,
        "{byte_offset}"
    );
    let running = h.job("again").await;
    assert_eq!(
        running.state,
        JobState::Succeeded,
        "the state never moves back"
    );
    let progress = running
        .reingest
        .clone()
        .unwrap_or_else(|| panic!("no progress"));
    assert_eq!(progress.request_id, "r-1");
    assert!(progress.finished_at_ms.is_none());
    assert!(
        progress.rows_rewritten > 0 && progress.rows_rewritten < n,
        "{progress:?}"
    );
    let queued = h.queued().await;
    assert_eq!(queued.len(), 1, "one hand-over");
    let Ok(QueueEnvelope::Reingest(next)) = QueueEnvelope::from_body(&queued[0]) else {
        panic!("not a reingest hand-over: {}", queued[0]);
    };
    assert_eq!((next.request_id.as_str(), next.part), ("r-1", 1));

    let done = handle(&c, &queued[0], None).await;
    assert!(
        matches!(done, Ok(Handled::Reingested { rows_rewritten, .. }) if rows_rewritten == n),
        "{done:?}"
    );
    let without_time = |rows: Vec<ResultRow>| -> Vec<ResultRow> {
        rows.into_iter()
            .map(|r| ResultRow {
                ingested_at_ms: 0,
                ..r
            })
            .collect()
    };
    assert_eq!(
        without_time(h.rows("again").await),
        without_time(good.clone()),
        "every row as the first ingest wrote it"
    );
    let job = h.job("again").await;
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.counts, ingested.counts, "the same counts as the ingest");
    assert_eq!(job.completed_at_ms, ingested.completed_at_ms);
    let progress = job.reingest.clone().unwrap_or_else(|| panic!("no record"));
    assert_eq!(progress.rows_rewritten, n);
    assert_eq!(progress.error_rows, ingested.counts.error_rows);
    assert!(progress.finished_at_ms.is_some());

    // Replays of the request and of its hand-over converge: nothing rewritten, nothing queued.
    for replay in [&request, &queued[0]] {
        let again = handle(&c, replay, None).await;
        assert!(matches!(again, Ok(Handled::Skipped { .. })), "{again:?}");
    }
    assert_eq!(h.job("again").await.reingest, Some(progress));
    assert!(h.queued().await.is_empty());

    // A new request is a new pass.
    let second = handle(&c, &reingest_request("again", "r-2"), None).await;
    assert!(
        matches!(second, Ok(Handled::Reingested { rows_rewritten, .. }) if rows_rewritten == n),
        "{second:?}"
    );
}

/// What cannot be re-ingested is refused as poison (a dead letter naming why), and a job still
/// ingesting is retried, never rewritten under its own ingest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reingest_of_a_job_without_results_is_refused() {
    let h = Harness::new().await;
    let c = h.consumer(h.store.clone(), settings());
    let unknown = handle(&c, &reingest_request("never-seen", "r"), None).await;
    assert!(
        matches!(&unknown, Err(e) if !e.is_retryable() && e.to_string().contains("no such job")),
        "{unknown:?}"
    );
    for (state, retryable) in [(JobState::Failed, false), (JobState::Ingesting, true)] {
        let id = format!("j-{}", state.as_str().to_lowercase());
        let mut job = JobRecord::new(format!("batches/{id}"), JobKind::Batch, T0_MS);
        job.state = state;
        h.store
            .save_job(&job)
            .await
            .unwrap_or_else(|e| panic!("save: {e}"));
        let outcome = handle(&c, &reingest_request(&id, "r"), None).await;
        assert!(
            matches!(&outcome, Err(e) if e.is_retryable() == retryable),
            "{state:?}: {outcome:?}"
        );
        assert_eq!(h.job(&id).await.state, state);
    }
}

/// Two re-ingest requests of one batch overlap, each pass stalling part-way: the older
/// request's hand-over stops (the newer one owns the job's rows) instead of restarting at byte
/// 0 and taking the job back, which made the two passes restart each other forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_reingest_requests_of_a_multi_part_batch_both_finish() {
    let h = Harness::new().await;
    let n = 240;
    let body = sample_results(n, 0, 0);
    let third = body.len() / 3 + 1;
    h.batch_with_file("twice", body);
    let c = h.consumer(
        Arc::new(h.watched(|_| ms(0))),
        ConsumeSettings {
            deadline_margin_ms: 1_000,
            deadline_reserve_ms: 1_500,
            ..settings()
        },
    );
    let first = handle(&c, &delivery("twice"), None).await;
    assert!(matches!(first, Ok(Handled::Ingested { .. })), "{first:?}");
    let good = h.rows("twice").await;

    // From here on every download stalls after a third of the file.
    h.gemini.inject(
        "files/twice",
        (0..40)
            .map(|_| Fault::Stall(third, Duration::from_secs(30)))
            .collect(),
    );
    // Each pass runs until its stall meets the cutoff. A pass that runs out of time (a loaded
    // machine) fails and is delivered again, as SQS would.
    let deliver = |body: String| {
        let c = &c;
        let clock = h.clock.clone();
        async move {
            for _ in 0..5 {
                match handle(c, &body, Some(clock.now_ms() + 6_000)).await {
                    Err(e) if e.is_retryable() => {}
                    other => return other,
                }
            }
            panic!("still failing after 5 deliveries")
        }
    };
    for request in ["r-1", "r-2"] {
        let outcome = deliver(reingest_request("twice", request)).await;
        assert!(
            matches!(outcome, Ok(Handled::Continued { .. })),
            "{request}: {outcome:?}"
        );
    }
    let mut handled = 2;
    let mut superseded = 0;
    loop {
        let queued = h.queued().await;
        if queued.is_empty() || handled > 20 {
            break;
        }
        for message in queued {
            handled += 1;
            match deliver(message).await {
                Ok(Handled::Skipped { reason }) if reason.contains("superseded") => {
                    superseded += 1;
                }
                Ok(_) => {}
                Err(e) => panic!("message {handled}: {e}"),
            }
        }
    }
    let job = h.job("twice").await;
    let pass = job.reingest.clone().unwrap_or_else(|| panic!("no pass"));
    assert!(
        pass.finished_at_ms.is_some(),
        "unfinished after {handled} messages: {pass:?}"
    );
    assert_eq!((pass.request_id.as_str(), pass.rows_rewritten), ("r-2", n));
    assert!(superseded >= 1, "r-1's hand-over stopped");
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(h.rows("twice").await.len(), good.len());
}
