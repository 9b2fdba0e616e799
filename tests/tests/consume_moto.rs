//! The consume use case against moto (DynamoDB results table, SQS continuations) and the fake
//! Gemini API: streamed ingest, replays, interruptions, continuations, every event type.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::domain::jobs::{JobRecord, JobState, ResultRow, RowStatus};
use gemini_hooks::ports::clock::Clock;
use gemini_hooks::ports::{ResultsStore, StoreError};
use gemini_hooks::usecases::consume::{
    ConsumeError, ConsumeSettings, Consumer, Handled, InboundMessage, RetrySchedule, failures,
};
use gemini_hooks::usecases::routes::Routes;
use gemini_hooks_tests::consume::{ConsumeHarness as Harness, webhook_body};
use gemini_hooks_tests::fake_gemini::{
    Fault, OutputSpec, error_line, inline_error, inline_success, operation_json, sample_key,
    sample_results, sample_text, success_line, with_stats,
};
use gemini_hooks_tests::moto;
use serde_json::{Value, json};

/// The queue message the receiver would have produced for `event`.
fn envelope(webhook_id: &str, event: Value) -> String {
    webhook_body(webhook_id, &event)
}

fn succeeded(id: &str) -> Value {
    json!({"type": "batch.succeeded", "version": "v1", "timestamp": "2026-11-18T00:00:00Z",
           "data": {"id": id, "output_file_uri": format!("files/{id}")}})
}

async fn must(consumer: &Consumer, body: &str, deadline: Option<i64>) -> Handled {
    consumer
        .handle_message(body, deadline)
        .await
        .unwrap_or_else(|e| panic!("handle_message: {e}"))
}

/// 10 000 lines: every 97th an error line, every 250th malformed (five kinds of garbage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_line_file_is_ingested_exactly() {
    let h = Harness::new("consume").await;
    let file = sample_results(10_000, 97, 250);
    h.gemini.put_file("files/big", Bytes::from(file));
    h.gemini.put_operation(with_stats(
        operation_json(
            "batches/big",
            "BATCH_STATE_SUCCEEDED",
            OutputSpec::File("files/big".into()),
        ),
        10_000,
        9_900,
        100,
    ));
    let handled = must(&h.consumer(), &envelope("msg-big", succeeded("big")), None).await;
    assert_eq!(
        handled,
        Handled::Ingested {
            job_id: "batches/big".into(),
            rows: 10_000
        }
    );

    let rows = h.rows("batches/big").await;
    assert_eq!(rows.len(), 10_000, "exactly one row per line");
    let malformed = rows
        .iter()
        .filter(|r| r.status == RowStatus::Malformed)
        .count();
    let errors = rows.iter().filter(|r| r.status == RowStatus::Error).count();
    let expected_malformed = (1..=10_000u64).filter(|i| i % 250 == 0).count();
    let expected_errors = (1..=10_000u64)
        .filter(|i| i % 97 == 0 && i % 250 != 0)
        .count();
    assert_eq!((malformed, errors), (expected_malformed, expected_errors));
    // Spot-check content: text, usage and the full response of a success row.
    let r7 = rows
        .iter()
        .find(|r| r.key == sample_key(7))
        .unwrap_or_else(|| panic!("row 7 missing"));
    assert_eq!(r7.text.as_deref(), Some(sample_text(7).as_str()));
    assert_eq!(r7.finish_reason.as_deref(), Some("STOP"));
    assert_eq!(r7.prompt_tokens, Some(42));
    assert_eq!(r7.line, 7);
    let response: Value =
        serde_json::from_str(r7.response_json.as_deref().unwrap_or("null")).unwrap_or_default();
    assert_eq!(response["modelVersion"], "gemini-2.5-flash");
    let e97 = rows
        .iter()
        .find(|r| r.key == sample_key(97))
        .unwrap_or_else(|| panic!("row 97 missing"));
    assert_eq!(e97.status, RowStatus::Error);
    assert!(e97.error_code.is_some() && e97.error_message.is_some());
    // A malformed line keeps its line number in the message.
    assert!(rows.iter().any(|r| {
        r.status == RowStatus::Malformed
            && r.error_message
                .as_deref()
                .is_some_and(|m| m.starts_with("line 1000:"))
    }));

    let job = h.job("batches/big").await;
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.counts.rows_ingested, 10_000);
    assert_eq!(job.counts.malformed_rows as usize, expected_malformed);
    assert_eq!(job.counts.error_rows as usize, expected_errors);
    assert_eq!(job.counts.request_count, Some(10_000));
    assert_eq!(job.last_webhook_id.as_deref(), Some("msg-big"));
    assert!(job.completed_at_ms.is_some());
}

#[tokio::test]
async fn inline_batch_is_ingested_like_a_file() {
    let h = Harness::new("consume").await;
    h.gemini.put_operation(operation_json(
        "batches/inl",
        "JOB_STATE_SUCCEEDED",
        OutputSpec::Inline(vec![
            inline_success("a", "alpha"),
            inline_error("b", 400, "bad"),
            inline_success("c", "gamma"),
        ]),
    ));
    let event =
        json!({"type": "batch.succeeded", "data": {"id": "inl", "user_metadata": {"run": 7}}});
    let handled = must(&h.consumer(), &envelope("msg-inl", event), None).await;
    assert_eq!(
        handled,
        Handled::Ingested {
            job_id: "batches/inl".into(),
            rows: 3
        }
    );
    let rows = h.rows("batches/inl").await;
    let keys: Vec<_> = rows
        .iter()
        .map(|r| (r.key.as_str(), r.status, r.text.clone()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("a", RowStatus::Ok, Some("alpha".to_owned())),
            ("b", RowStatus::Error, None),
            ("c", RowStatus::Ok, Some("gamma".to_owned()))
        ]
    );
    // user_metadata is kept once, on the job (rows do not copy it).
    let job = h.job("batches/inl").await;
    assert_eq!((job.state, job.counts.error_rows), (JobState::Succeeded, 1));
    assert_eq!(job.user_metadata, Some(json!({"run": 7})));
}

#[tokio::test]
async fn failed_expired_and_cancelled_batches_are_recorded() {
    let h = Harness::new("consume").await;
    let c = h.consumer();
    h.gemini.put_operation(operation_json(
        "batches/f1",
        "BATCH_STATE_FAILED",
        OutputSpec::Error(3, "input file invalid".into()),
    ));
    let failed = json!({"type": "batch.failed", "data": {"id": "f1", "error_code": "INVALID_ARGUMENT", "error_message": "bad input"}});
    assert_eq!(
        must(&c, &envelope("msg-f1", failed), None).await,
        Handled::Recorded {
            job_id: "batches/f1".into(),
            state: JobState::Failed
        }
    );
    let job = h.job("batches/f1").await;
    let err = job.error.unwrap_or_else(|| panic!("error recorded"));
    // The operation's error wins over the event's summary; both were read.
    assert_eq!(
        (
            err.code.as_deref(),
            err.message.as_str(),
            err.source.as_str()
        ),
        (Some("3"), "input file invalid", "operation")
    );

    // The API does not know this batch (another project's, or made up): nothing is recorded.
    let failed2 = json!({"type": "batch.failed", "data": {"id": "f2", "error_code": 13, "error_message": "internal"}});
    let handled = must(&c, &envelope("msg-f2", failed2), None).await;
    assert!(matches!(handled, Handled::Skipped { .. }), "{handled:?}");
    assert!(
        h.store
            .load_job("batches/f2")
            .await
            .unwrap_or_default()
            .is_none()
    );

    for (t, wire, state) in [
        ("batch.expired", "BATCH_STATE_EXPIRED", JobState::Expired),
        (
            "batch.cancelled",
            "JOB_STATE_CANCELLED",
            JobState::Cancelled,
        ),
    ] {
        let id = t.replace('.', "-");
        h.gemini.put_operation(operation_json(
            &format!("batches/{id}"),
            wire,
            OutputSpec::None,
        ));
        must(
            &c,
            &envelope(&format!("msg-{id}"), json!({"type": t, "data": {"id": id}})),
            None,
        )
        .await;
        assert_eq!(h.job(&format!("batches/{id}")).await.state, state);
    }
    // A late success for an expired job does not resurrect it.
    let late = must(&c, &envelope("msg-late", succeeded("batch-expired")), None).await;
    assert!(matches!(late, Handled::Skipped { .. }), "{late:?}");
    assert_eq!(
        h.job("batches/batch-expired").await.state,
        JobState::Expired
    );
}

#[tokio::test]
async fn the_same_message_twice_leaves_an_identical_table() {
    let h = Harness::new("consume").await;
    h.gemini
        .put_file("files/twice", Bytes::from(sample_results(300, 7, 50)));
    h.gemini.put_operation(operation_json(
        "batches/twice",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File("files/twice".into()),
    ));
    let body = envelope("msg-twice", succeeded("twice"));
    let c = h.consumer();
    must(&c, &body, None).await;
    let first = h.rows("batches/twice").await;
    let job_first = h.job("batches/twice").await;
    // Redelivery after success is a no-op; a forced re-ingest (record reset) rewrites the same rows.
    assert!(matches!(
        must(&c, &body, None).await,
        Handled::Skipped { .. }
    ));
    let mut reset = job_first.clone();
    reset.state = JobState::Ingesting;
    reset.checkpoint = None;
    // Bypass forward-only to simulate a replay that raced the first ingest.
    h.ddb
        .delete_item()
        .table_name(h.store.table())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("JOB#batches/twice".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("JOB".into()),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    must(&c, &body, None).await;
    let second = h.rows("batches/twice").await;
    assert_eq!(first, second, "replay converges to the identical rows");
    let job_second = h.job("batches/twice").await;
    assert_eq!(job_first.counts, job_second.counts);
    assert_eq!(job_second.state, JobState::Succeeded);
}

#[tokio::test]
async fn interrupted_download_resumes_with_range_and_yields_exact_rows() {
    let h = Harness::new("consume").await;
    let file = sample_results(2_000, 0, 0);
    h.gemini.put_file("files/cut", Bytes::from(file.clone()));
    h.gemini.put_operation(operation_json(
        "batches/cut",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File("files/cut".into()),
    ));
    // The connection drops after ~60% of the file; checkpoints every 200 lines.
    h.gemini
        .inject(":download", vec![Fault::CutAfter(file.len() * 6 / 10)]);
    let c = h.consumer_with(
        ConsumeSettings {
            checkpoint_every_lines: 200,
            ..ConsumeSettings::default()
        },
        Routes::single(h.store.clone()),
    );
    let body = envelope("msg-cut", succeeded("cut"));
    let err = c
        .handle_message(&body, None)
        .await
        .err()
        .unwrap_or_else(|| panic!("the cut must surface"));
    assert!(err.is_retryable(), "{err}");
    let partial = h.job("batches/cut").await;
    assert_eq!(partial.state, JobState::Ingesting);
    let checkpoint = partial
        .checkpoint
        .clone()
        .unwrap_or_else(|| panic!("checkpoint saved"));
    assert!(
        checkpoint.byte_offset > 0 && checkpoint.lines > 0,
        "{checkpoint:?}"
    );

    // SQS redelivers the same message: the ingest resumes from the checkpoint with Range.
    h.gemini.clear_requests();
    must(&c, &body, None).await;
    let ranged = h.gemini.requests_to(":download");
    assert_eq!(ranged.len(), 1);
    assert_eq!(
        ranged[0].range.as_deref(),
        Some(format!("bytes={}-", checkpoint.byte_offset).as_str())
    );
    let rows = h.rows("batches/cut").await;
    assert_eq!(rows.len(), 2_000, "every line once, none twice");
    let mut keys: Vec<_> = rows.iter().map(|r| r.key.clone()).collect();
    keys.dedup();
    assert_eq!(keys.len(), 2_000);
    let job = h.job("batches/cut").await;
    assert_eq!(
        (job.state, job.counts.rows_ingested),
        (JobState::Succeeded, 2_000)
    );
}

#[tokio::test]
async fn short_deadline_hands_over_to_continuations_until_done() {
    let h = Harness::new("consume").await;
    let n = 1_500;
    h.gemini
        .put_file("files/long", Bytes::from(sample_results(n, 11, 101)));
    h.gemini.put_operation(operation_json(
        "batches/long",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File("files/long".into()),
    ));
    let margin = 10_000;
    let c = h.consumer_with(
        ConsumeSettings {
            deadline_margin_ms: margin,
            ..ConsumeSettings::default()
        },
        Routes::single(h.store.clone()),
    );
    // Artificially short deadline: already inside the margin, so each invocation hands over
    // after its first chunk.
    let deadline = Some(h.clock.now_ms() + margin - 1);
    let first = must(&c, &envelope("msg-long", json!({"type": "batch.succeeded", "data": {"id": "long", "user_metadata": {"job_group": "g"}}})), deadline).await;
    assert!(matches!(first, Handled::Continued { .. }), "{first:?}");
    let mut hops = 1;
    loop {
        let queued = h.queued().await;
        assert_eq!(queued.len(), 1, "exactly one continuation in flight");
        let msg: Value = serde_json::from_str(&queued[0]).unwrap_or_default();
        assert_eq!(msg["kind"], "continuation");
        assert_eq!(msg["job_group"], "g");
        // Every few hops, run without a deadline to finish.
        let dl = if hops < 3 { deadline } else { None };
        match must(&c, &queued[0], dl).await {
            Handled::Continued { .. } => hops += 1,
            Handled::Ingested { rows, .. } => {
                assert_eq!(rows, n);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(hops >= 3);
    let rows = h.rows("batches/long").await;
    assert_eq!(rows.len() as u64, n);
    assert!(rows.iter().all(|r| r.line >= 1 && r.line <= n));
    let job = h.job("batches/long").await;
    assert_eq!(job.counts.rows_ingested, n);
    assert_eq!(
        job.counts.malformed_rows,
        (1..=n).filter(|i| i % 101 == 0).count() as u64
    );
    assert!(h.queued().await.is_empty());
}

#[tokio::test]
async fn one_bad_message_among_good_ones_is_the_only_failure() {
    let h = Harness::new("consume").await;
    for id in ["g1", "g2"] {
        h.gemini.put_operation(operation_json(
            id,
            "BATCH_STATE_SUCCEEDED",
            OutputSpec::Inline(vec![inline_success("k", id)]),
        ));
    }
    let c = Arc::new(h.consumer());
    let failed = failures(
        &c.handle_batch(
            vec![
                InboundMessage {
                    receive_count: 1,
                    id: "m-1".into(),
                    body: envelope("w1", succeeded("g1")),
                },
                InboundMessage {
                    receive_count: 1,
                    id: "m-bad".into(),
                    body: "{not an envelope".into(),
                },
                InboundMessage {
                    receive_count: 1,
                    id: "m-2".into(),
                    body: envelope("w2", succeeded("batches/g2")),
                },
            ],
            None,
            RetrySchedule::LAMBDA,
        )
        .await,
    );
    assert_eq!(failed, vec!["m-bad".to_owned()]);
    assert_eq!(h.rows("batches/g1").await.len(), 1);
    assert_eq!(h.rows("batches/g2").await.len(), 1);
}

#[tokio::test]
async fn ids_with_and_without_the_batches_prefix_are_the_same_job() {
    let h = Harness::new("consume").await;
    h.gemini.put_operation(operation_json(
        "batches/same",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::Inline(vec![inline_success("k", "v")]),
    ));
    let c = h.consumer();
    must(&c, &envelope("w1", succeeded("same")), None).await;
    assert!(matches!(
        must(&c, &envelope("w2", succeeded("batches/same")), None).await,
        Handled::Skipped { .. }
    ));
    assert_eq!(
        h.job("batches/same").await.last_webhook_id.as_deref(),
        Some("w1")
    );
    let gets = h.gemini.requests_to("/v1beta/batches/same");
    assert!(
        gets.iter().all(|r| r.path == "/v1beta/batches/same"),
        "{gets:?}"
    );
}

#[tokio::test]
async fn results_not_visible_yet_and_api_errors_are_retried_later() {
    let h = Harness::new("consume").await;
    let c = h.consumer();
    let body = envelope("msg-race", succeeded("race"));
    // batches.get reports success before the results exist (ellmer #926).
    h.gemini.put_operation(operation_json(
        "batches/race",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::None,
    ));
    let err = c
        .handle_message(&body, None)
        .await
        .err()
        .unwrap_or_else(|| panic!("must not succeed"));
    assert!(matches!(err, ConsumeError::NotReady(_)), "{err}");
    // Now the operation names the file but the file is not downloadable yet (404).
    h.gemini.put_operation(operation_json(
        "batches/race",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::MetadataFile("files/race".into()),
    ));
    let err = c
        .handle_message(&body, None)
        .await
        .err()
        .unwrap_or_else(|| panic!("must not succeed"));
    assert!(err.is_retryable(), "{err}");
    // The file appears; 429 then 500 on batches.get are absorbed by the client's retries.
    h.gemini.put_file(
        "files/race",
        Bytes::from(format!(
            "{}\n{}\n",
            success_line("a", "x"),
            error_line("b", 500, "boom")
        )),
    );
    h.gemini.inject(
        "/v1beta/batches/race",
        vec![Fault::StatusWithRetryAfter(429, 0), Fault::Status(500)],
    );
    assert_eq!(
        must(&c, &body, None).await,
        Handled::Ingested {
            job_id: "batches/race".into(),
            rows: 2
        }
    );
    // Persistent 500s → a retryable failure, not a lost message.
    let body2 = envelope("msg-500", succeeded("five"));
    h.gemini
        .inject("/v1beta/batches/five", vec![Fault::Status(500); 5]);
    let err = c
        .handle_message(&body2, None)
        .await
        .err()
        .unwrap_or_else(|| panic!("must fail"));
    assert!(err.is_retryable(), "{err}");
    // A batch that is still running according to the API is retried too.
    h.gemini.put_operation(operation_json(
        "batches/run",
        "BATCH_STATE_RUNNING",
        OutputSpec::None,
    ));
    let err = c
        .handle_message(&envelope("msg-run", succeeded("run")), None)
        .await
        .err()
        .unwrap_or_else(|| panic!("must fail"));
    assert!(matches!(err, ConsumeError::NotReady(_)), "{err}");
}

#[tokio::test]
async fn routes_send_a_job_group_to_its_own_table_and_other_events_are_recorded() {
    let h = Harness::new("consume").await;
    let exp_table = moto::unique_name("results-exp");
    moto::create_results_table(&h.ddb, &exp_table).await;
    let exp_store: Arc<dyn ResultsStore> =
        Arc::new(DynamoDbResultsStore::new(h.ddb.clone(), exp_table.clone()));
    let routes = Routes::new(h.store.clone(), [("experiments".to_owned(), exp_store)]);
    let c = h.consumer_with(ConsumeSettings::default(), routes);
    h.gemini.put_operation(operation_json(
        "exp1",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::Inline(vec![inline_success("k", "v")]),
    ));
    let event = json!({"type": "batch.succeeded", "data": {"id": "exp1", "user_metadata": {"job_group": "experiments"}}});
    must(&c, &envelope("w-exp", event), None).await;
    let exp_store = DynamoDbResultsStore::new(h.ddb.clone(), exp_table);
    assert_eq!(
        exp_store
            .list_rows("batches/exp1")
            .await
            .map(|r| r.len())
            .unwrap_or(0),
        1
    );
    assert!(
        h.rows("batches/exp1").await.is_empty(),
        "experiments never mix with production"
    );

    // video.generated and interaction.* are confirmed through their own resources; unknown
    // types are acknowledged.
    h.gemini.put_resource(
        "models/veo/operations/v1",
        json!({"name": "models/veo/operations/v1", "done": true, "response": {
            "generateVideoResponse": {"generatedSamples": [{"video": {"uri": "files/v1"}}]}}}),
    );
    let video = json!({"type": "video.generated", "data": {"id": "models/veo/operations/v1", "output_file_uri": "files/v1", "file_name": "files/v1"}});
    must(&c, &envelope("w-v", video), None).await;
    let job = h.job("videos/models/veo/operations/v1").await;
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(
        job.output.as_ref().map(|o| o["videos"].clone()),
        Some(json!(["files/v1"]))
    );
    h.gemini.put_resource(
        "interactions/i1",
        json!({"id": "i1", "status": "requires_action", "outputs": [{"type": "function_call"}]}),
    );
    must(
        &c,
        &envelope(
            "w-i1",
            json!({"type": "interaction.requires_action", "data": {"id": "i1"}}),
        ),
        None,
    )
    .await;
    assert_eq!(
        h.job("interactions/i1").await.state,
        JobState::RequiresAction
    );
    h.gemini.put_resource(
        "interactions/i1",
        json!({"id": "i1", "status": "failed", "error": {"code": 9, "message": "no"}}),
    );
    must(&c, &envelope("w-i2", json!({"type": "interaction.failed", "data": {"id": "i1", "error_code": 9, "error_message": "no"}})), None).await;
    let job = h.job("interactions/i1").await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error.map(|e| e.message), Some("no".to_owned()));
    let unknown = must(
        &c,
        &envelope("w-u", json!({"type": "webhook.ping", "data": {}})),
        None,
    )
    .await;
    assert!(matches!(unknown, Handled::Skipped { .. }));
}

/// A store that panics: the only way to make the handler panic on purpose.
struct PanickingStore;

#[async_trait]
impl ResultsStore for PanickingStore {
    async fn load_job(&self, _: &str) -> Result<Option<JobRecord>, StoreError> {
        panic!("injected panic");
    }
    async fn save_job(&self, _: &JobRecord) -> Result<bool, StoreError> {
        Ok(true)
    }
    async fn put_rows(&self, _: &[ResultRow]) -> Result<(), StoreError> {
        Ok(())
    }
    async fn delete_rows_before(&self, _: &str, _: i64) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn count_rows_before(&self, _: &str, _: i64) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn list_rows(&self, _: &str) -> Result<Vec<ResultRow>, StoreError> {
        Ok(Vec::new())
    }
    async fn count_rows(&self, _: &str) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn list_jobs(&self, _limit: Option<usize>) -> Result<Vec<JobRecord>, StoreError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_panic_fails_only_its_own_message() {
    let h = Harness::new("consume").await;
    let boom: Arc<dyn ResultsStore> = Arc::new(PanickingStore);
    let routes = Routes::new(h.store.clone(), [("boom".to_owned(), boom)]);
    h.gemini.put_operation(operation_json(
        "ok1",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::Inline(vec![inline_success("k", "v")]),
    ));
    let c = Arc::new(h.consumer_with(ConsumeSettings::default(), routes));
    let boom = json!({"type": "batch.succeeded", "data": {"id": "x", "user_metadata": {"job_group": "boom"}}});
    let failed = failures(
        &c.handle_batch(
            vec![
                InboundMessage {
                    receive_count: 1,
                    id: "m-boom".into(),
                    body: envelope("wb", boom),
                },
                InboundMessage {
                    receive_count: 1,
                    id: "m-ok".into(),
                    body: envelope("wo", succeeded("ok1")),
                },
            ],
            None,
            RetrySchedule::LAMBDA,
        )
        .await,
    );
    assert_eq!(failed, vec!["m-boom".to_owned()]);
    assert_eq!(h.rows("batches/ok1").await.len(), 1);
}

/// The real store, with its first `put_rows` held until the test lets it go on: another
/// message can be handled in between.
struct Gated {
    inner: Arc<DynamoDbResultsStore>,
    armed: std::sync::atomic::AtomicBool,
    reached: tokio::sync::Notify,
    go: tokio::sync::Notify,
}

#[async_trait]
impl ResultsStore for Gated {
    async fn load_job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.inner.load_job(id).await
    }
    async fn save_job(&self, record: &JobRecord) -> Result<bool, StoreError> {
        self.inner.save_job(record).await
    }
    async fn put_rows(&self, rows: &[ResultRow]) -> Result<(), StoreError> {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.reached.notify_one();
            self.go.notified().await;
        }
        self.inner.put_rows(rows).await
    }
    async fn delete_rows_before(&self, job_id: &str, before_ms: i64) -> Result<u64, StoreError> {
        self.inner.delete_rows_before(job_id, before_ms).await
    }
    async fn count_rows_before(&self, job_id: &str, before_ms: i64) -> Result<u64, StoreError> {
        self.inner.count_rows_before(job_id, before_ms).await
    }
    async fn list_rows(&self, id: &str) -> Result<Vec<ResultRow>, StoreError> {
        self.inner.list_rows(id).await
    }
    async fn count_rows(&self, id: &str) -> Result<u64, StoreError> {
        self.inner.count_rows(id).await
    }
    async fn list_jobs(&self, limit: Option<usize>) -> Result<Vec<JobRecord>, StoreError> {
        self.inner.list_jobs(limit).await
    }
}

/// `requires_action` read the interaction, then `completed` was handled whole while the first
/// message still wrote its rows: the first loses the record to the further state, and the rows
/// end as the completed interaction has them (not the older outputs written last).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requires_action_and_completed_leave_only_completed_rows() {
    let h = Harness::new("consume").await;
    let call =
        json!({"type": "function_call", "id": "c1", "name": "lookup", "arguments": {"q": "x"}});
    h.gemini.put_resource(
        "interactions/race",
        json!({"id": "race", "status": "requires_action",
               "outputs": [{"type": "text", "text": "thinking"}, call]}),
    );
    let gated = Arc::new(Gated {
        inner: h.store.clone(),
        armed: true.into(),
        reached: tokio::sync::Notify::new(),
        go: tokio::sync::Notify::new(),
    });
    let slow = Arc::new(h.consumer_with(ConsumeSettings::default(), Routes::single(gated.clone())));
    let first = {
        let slow = Arc::clone(&slow);
        let body = envelope(
            "w-ra",
            json!({"type": "interaction.requires_action", "data": {"id": "race"}}),
        );
        tokio::spawn(async move { slow.handle_message(&body, None).await })
    };
    gated.reached.notified().await;

    // Meanwhile the interaction completes and its event is handled to the end.
    let done = json!({"id": "race", "status": "completed", "outputs": [
        {"type": "text", "text": "final answer"}, call, {"type": "text", "text": "after the call"}]});
    h.gemini.put_resource("interactions/race", done.clone());
    let completed = must(
        &h.consumer(),
        &envelope(
            "w-c",
            json!({"type": "interaction.completed", "data": {"id": "race"}}),
        ),
        None,
    )
    .await;
    assert!(
        matches!(completed, Handled::Recorded { .. }),
        "{completed:?}"
    );

    gated.go.notify_one();
    let late = first
        .await
        .unwrap_or_else(|e| panic!("join: {e}"))
        .unwrap_or_else(|e| panic!("requires_action: {e}"));
    assert!(matches!(late, Handled::Skipped { .. }), "{late:?}");

    let job = h.job("interactions/race").await;
    assert_eq!(job.state, JobState::Succeeded);
    let rows = h.rows("interactions/race").await;
    let stored: Vec<Value> = rows
        .iter()
        .map(|r| {
            serde_json::from_str(r.response_json.as_deref().unwrap_or("null"))
                .unwrap_or(Value::Null)
        })
        .collect();
    assert_eq!(Value::Array(stored), done["outputs"], "{rows:?}");
}
