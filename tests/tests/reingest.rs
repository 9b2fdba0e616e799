//! Re-ingest (issue 13): `gemini-hooks reingest` after a simulated bad deploy restores the
//! exact rows — deployed (the CLI sends the request to the stack's queue, the real consumer
//! binary handles it against moto) and locally (through `gemini-hooks dev`'s queue) — keeps the
//! job SUCCEEDED, counts the rows rewritten, and converges when replayed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::adapters::sqlite::SqliteStore;
use gemini_hooks::domain::envelope::{EventSummary, QueueEnvelope, SignatureMode, WebhookEnvelope};
use gemini_hooks::domain::event::Event;
use gemini_hooks::domain::jobs::{JobState, ResultRow};
use gemini_hooks::ports::ResultsStore;
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::delivery::TEST_SECRET;
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, OutputSpec, error_line, operation_json, success_line,
};
use gemini_hooks_tests::local::{DevServer, TempDir, run_cli, run_cli_aws, wait_until};
use gemini_hooks_tests::moto;
use gemini_hooks_tests::runtime_api::{RuntimeApi, failed_ids, spawn_function, sqs_event};
use serde_json::{Value, json};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// A batch with an ordinary answer, a 600 KB answer (stored gzip-compressed), an error, a
/// malformed line and a key too long for a sort key.
fn put_batch(fake: &FakeGemini, prefix: &str) -> String {
    let name = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let lines = [
        success_line("a", "the answer"),
        success_line("b", &"long answer ".repeat(50_000)),
        error_line("c", 429, "Resource has been exhausted."),
        "{not json".to_owned(),
        success_line(&format!("d-{}", "k".repeat(1_100)), "a long key"),
    ];
    let file = format!("files/{name}-results");
    fake.put_file(&file, Bytes::from(lines.join("\n") + "\n"));
    let id = format!("batches/{name}");
    fake.put_operation(operation_json(
        &id,
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File(file),
    ));
    id
}
const ROWS: u64 = 5;

/// The queue message the receiver would have produced for `id`'s `batch.succeeded`.
fn delivery(id: &str) -> String {
    let event = json!({"type": "batch.succeeded", "version": "v1",
        "timestamp": "2026-12-01T00:00:00Z", "data": {"id": id}});
    let parsed = Event::from_value(&event, None).unwrap_or_else(|e| panic!("event: {e}"));
    QueueEnvelope::Webhook(WebhookEnvelope {
        webhook_id: format!("msg_{id}"),
        received_at_ms: now_ms(),
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

/// Rows as `export` prints them, without `ingested_at_ms` (a rewrite's own time).
fn comparable(export: &str) -> Vec<Value> {
    export
        .lines()
        .map(|l| {
            let mut v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:.200}"));
            if let Some(o) = v.as_object_mut() {
                o.remove("ingested_at_ms");
            }
            v
        })
        .collect()
}

/// What a bad deploy left: one row's text wrong, another's status wrong, a third row gone.
fn corrupted(rows: &[ResultRow]) -> (Vec<ResultRow>, String) {
    let wrong_text = ResultRow {
        text: Some("garbage from a bad deploy".into()),
        ..rows[1].clone()
    };
    let wrong_status = ResultRow {
        error_code: None,
        error_message: None,
        status: gemini_hooks::domain::jobs::RowStatus::Ok,
        text: Some("not an error".into()),
        ..rows[3].clone()
    };
    (vec![wrong_text, wrong_status], rows[2].row_id())
}

/// Text that gzip cannot shrink much (a row of it is stored in parts on DynamoDB).
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

/// Part items (`PART#…`) stored under `id`'s partition.
async fn part_items(ddb: &aws_sdk_dynamodb::Client, table: &str, id: &str) -> usize {
    ddb.query()
        .table_name(table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :part)")
        .expression_attribute_values(":pk", AttributeValue::S(format!("JOB#{id}")))
        .expression_attribute_values(":part", AttributeValue::S("PART#".into()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("query: {e:?}"))
        .items()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_reingest_through_the_queue_restores_the_exact_rows() {
    let ddb = moto::dynamodb().await;
    let sqs = moto::sqs().await;
    let table = moto::unique_name("ri-results");
    moto::create_results_table(&ddb, &table).await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("ri-events"), 5, 30).await;
    let stack = moto::unique_name("ri-stack");
    moto::create_output_stack(
        &stack,
        &[("ResultsTableName", &table), ("EventsQueueUrl", &queue.url)],
    )
    .await;
    let fake = FakeGemini::start().await;
    let id = put_batch(&fake, "ri");

    let api = RuntimeApi::start().await;
    let consumer = spawn_function(
        &bin_path("consumer"),
        &api,
        &[
            ("RESULTS_TABLE", table.clone()),
            ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
            ("GEMINI_API_BASE_URL", fake.base_url()),
            ("QUEUE_URL", queue.url.clone()),
        ],
    )
    .await;
    let consume = |bodies: Vec<String>| {
        let api = &api;
        let consumer = &consumer;
        let arn = queue.arn.clone();
        async move {
            let answer = api
                .invoke(sqs_event(&bodies, &arn), Duration::from_secs(60))
                .await
                .unwrap_or_else(|e| panic!("consumer: {e}\n{}", consumer.logs()));
            failed_ids(&answer)
        }
    };
    assert!(
        consume(vec![delivery(&id)]).await.is_empty(),
        "{}",
        consumer.logs()
    );
    let good = run_cli_aws(&["export", "--stack", &stack, "--job", &id])
        .await
        .expect_code(0)
        .stdout;
    assert_eq!(comparable(&good).len() as u64, ROWS);

    // The bad deploy, straight into the table.
    let store = DynamoDbResultsStore::new(ddb.clone(), table.clone());
    let rows = store
        .list_rows(&id)
        .await
        .unwrap_or_else(|e| panic!("rows: {e}"));
    let (wrong, lost) = corrupted(&rows);
    store
        .put_rows(&wrong)
        .await
        .unwrap_or_else(|e| panic!("bad rows: {e}"));
    // It also wrote rows under keys the results file does not have, an hour ago, one of them
    // large enough for parts.
    let an_hour_ago = now_ms() - 3_600_000;
    let strays = [
        ResultRow {
            key: "not-in-the-file".into(),
            ingested_at_ms: an_hour_ago,
            ..rows[0].clone()
        },
        ResultRow {
            key: "not-in-the-file-either".into(),
            text: None,
            response_json: Some(json!({"noise": noise(900_000)}).to_string()),
            ingested_at_ms: an_hour_ago,
            ..rows[0].clone()
        },
    ];
    store
        .put_rows(&strays)
        .await
        .unwrap_or_else(|e| panic!("stray rows: {e}"));
    assert!(
        part_items(&ddb, &table, &id).await > 0,
        "the stray has parts"
    );
    ddb.delete_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(format!("JOB#{id}")))
        .key("sk", AttributeValue::S(lost))
        .send()
        .await
        .unwrap_or_else(|e| panic!("delete: {e:?}"));
    let bad = run_cli_aws(&["export", "--stack", &stack, "--job", &id])
        .await
        .expect_code(0)
        .stdout;
    assert_ne!(comparable(&bad), comparable(&good));

    // `reingest --stack` sends the request to the stack's queue…
    let sent = run_cli_aws(&["reingest", &id, "--stack", &stack])
        .await
        .expect_code(0);
    assert!(
        sent.stdout
            .contains(&format!("Queued the re-ingest of {id}")),
        "{}",
        sent.stdout
    );
    let queued = moto::drain(&sqs, &queue.url).await;
    assert_eq!(queued.len(), 1);
    let body = queued[0].body().unwrap_or_default().to_owned();
    assert!(
        matches!(
            QueueEnvelope::from_body(&body),
            Ok(QueueEnvelope::Reingest(_))
        ),
        "{body}"
    );

    // …which the consumer handles: every row back as it was, the state unchanged.
    assert!(
        consume(vec![body.clone()]).await.is_empty(),
        "{}",
        consumer.logs()
    );
    let restored = run_cli_aws(&["export", "--stack", &stack, "--job", &id])
        .await
        .expect_code(0)
        .stdout;
    assert_eq!(comparable(&restored), comparable(&good));
    let job = store
        .load_job(&id)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no job {id}"));
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.counts.rows_ingested, ROWS);
    let pass = job
        .reingest
        .clone()
        .unwrap_or_else(|| panic!("no reingest"));
    assert_eq!(pass.rows_rewritten, ROWS);
    assert_eq!(pass.rows_removed, 2, "the stray rows");
    assert_eq!(part_items(&ddb, &table, &id).await, 0, "their parts too");
    assert!(pass.finished_at_ms.is_some());
    let shown = run_cli_aws(&["results", "--stack", &stack, "--job", &id, "--json"])
        .await
        .expect_code(0)
        .stdout;
    let shown: Value = serde_json::from_str(&shown).unwrap_or_default();
    assert_eq!(shown["job"]["reingest"]["rows_rewritten"], ROWS, "{shown}");

    // Replayed (SQS delivers at least once): converges, rewrites nothing.
    assert!(consume(vec![body]).await.is_empty());
    let after = store.load_job(&id).await.ok().flatten();
    assert_eq!(after.and_then(|j| j.reingest), Some(pass));
    assert!(moto::drain(&sqs, &queue.url).await.is_empty());

    // A request the consumer would refuse is refused by the CLI, naming why.
    let unknown = run_cli_aws(&["reingest", "batches/nope", "--stack", &stack]).await;
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("no job `batches/nope`"),
        "{}",
        unknown.stderr
    );
    assert!(
        moto::drain(&sqs, &queue.url).await.is_empty(),
        "nothing sent"
    );
}

async fn export_local(data_dir: &str, id: &str) -> String {
    run_cli(&["export", "--data-dir", data_dir, "--job", id], &[])
        .await
        .expect_code(0)
        .stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_reingest_through_dev_restores_the_exact_rows() {
    let fake = FakeGemini::start().await;
    let id = put_batch(&fake, "ril");
    let data = TempDir::new("ri-dev");
    let d = data.path().to_string_lossy().into_owned();
    let env = [
        ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
        ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
        ("GEMINI_API_BASE_URL", fake.base_url()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dev = DevServer::start(data.path(), "dev.log", &[], &env).await;
    run_cli(
        &["send", "--url", &dev.url, "batch.succeeded", "--job", &id],
        &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)],
    )
    .await
    .expect_code(0);
    let job_json = |d: String, id: String| async move {
        let out = run_cli(&["results", "--data-dir", &d, "--job", &id, "--json"], &[]).await;
        serde_json::from_str::<Value>(&out.stdout).ok()
    };
    wait_until("the local ingest", Duration::from_secs(40), || {
        let f = job_json(d.clone(), id.clone());
        async move {
            f.await
                .filter(|v| v["job"]["state"] == "SUCCEEDED")
                .map(|_| ())
        }
    })
    .await;
    let good = export_local(&d, &id).await;

    // The bad deploy: wrong rows written into the local store.
    let store = SqliteStore::open(data.join(gemini_hooks::adapters::sqlite::DB_FILE_NAME))
        .unwrap_or_else(|e| panic!("store: {e}"));
    let rows = store
        .list_rows(&id)
        .await
        .unwrap_or_else(|e| panic!("rows: {e}"));
    let (wrong, _) = corrupted(&rows);
    store
        .put_rows(&wrong)
        .await
        .unwrap_or_else(|e| panic!("bad rows: {e}"));
    assert_ne!(comparable(&export_local(&d, &id).await), comparable(&good));

    let sent = run_cli(&["reingest", &id, "--data-dir", &d], &[])
        .await
        .expect_code(0);
    assert!(sent.stdout.contains("gemini-hooks dev"), "{}", sent.stdout);
    let shown = wait_until("the local re-ingest", Duration::from_secs(40), || {
        let f = job_json(d.clone(), id.clone());
        async move {
            f.await
                .filter(|v| v["job"]["reingest"]["finished_at_ms"].is_i64())
        }
    })
    .await;
    assert_eq!(shown["job"]["state"], "SUCCEEDED");
    assert_eq!(shown["job"]["reingest"]["rows_rewritten"], ROWS);
    assert_eq!(comparable(&export_local(&d, &id).await), comparable(&good));
    drop(dev);

    // A job that never finished cannot be re-ingested: the CLI says so, nothing is queued.
    let refused = run_cli(&["reingest", "batches/unknown", "--data-dir", &d], &[]).await;
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("no job `batches/unknown`"),
        "{}",
        refused.stderr
    );
}

/// A routed job (`job_group` → a ROUTES table) re-ingested locally with `--job-group`: the CLI
/// checks the job in the table ROUTES names (not a file named after the group) and dev's
/// consumer rewrites that table's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_reingest_of_a_routed_job_rewrites_its_table() {
    let fake = FakeGemini::start().await;
    let id = put_batch(&fake, "rir");
    let data = TempDir::new("ri-routed");
    let d = data.path().to_string_lossy().into_owned();
    let routes = r#"{"experiments": "exp-results"}"#;
    let env = [
        ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
        ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
        ("GEMINI_API_BASE_URL", fake.base_url()),
        ("ROUTES", routes.to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dev = DevServer::start(data.path(), "dev.log", &[], &env).await;
    run_cli(
        &[
            "send",
            "--url",
            &dev.url,
            "batch.succeeded",
            "--job",
            &id,
            "--user-metadata",
            r#"{"job_group": "experiments"}"#,
        ],
        &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)],
    )
    .await
    .expect_code(0);
    let job_json = |d: String, id: String| async move {
        let out = run_cli(
            &[
                "results",
                "--data-dir",
                &d,
                "--table",
                "exp-results",
                "--job",
                &id,
                "--json",
            ],
            &[],
        )
        .await;
        serde_json::from_str::<Value>(&out.stdout).ok()
    };
    wait_until("the routed ingest", Duration::from_secs(40), || {
        let f = job_json(d.clone(), id.clone());
        async move {
            f.await
                .filter(|v| v["job"]["state"] == "SUCCEEDED")
                .map(|_| ())
        }
    })
    .await;
    let store = SqliteStore::open(data.join("results-exp-results.sqlite3"))
        .unwrap_or_else(|e| panic!("routed store: {e}"));
    let rows = store
        .list_rows(&id)
        .await
        .unwrap_or_else(|e| panic!("rows: {e}"));
    assert_eq!(rows.len() as u64, ROWS);
    let (wrong, _) = corrupted(&rows);
    store
        .put_rows(&wrong)
        .await
        .unwrap_or_else(|e| panic!("bad rows: {e}"));

    // Without ROUTES the CLI looks in the default store, where the job is not.
    let lost = run_cli(
        &[
            "reingest",
            &id,
            "--job-group",
            "experiments",
            "--data-dir",
            &d,
        ],
        &[],
    )
    .await;
    assert_ne!(lost.code, 0, "{}", lost.stdout);
    assert!(lost.stderr.contains("ROUTES"), "{}", lost.stderr);

    run_cli(
        &[
            "reingest",
            &id,
            "--job-group",
            "experiments",
            "--data-dir",
            &d,
        ],
        &[("ROUTES", routes)],
    )
    .await
    .expect_code(0);
    let shown = wait_until("the routed re-ingest", Duration::from_secs(40), || {
        let f = job_json(d.clone(), id.clone());
        async move {
            f.await
                .filter(|v| v["job"]["reingest"]["finished_at_ms"].is_i64())
        }
    })
    .await;
    assert_eq!(shown["job"]["reingest"]["rows_rewritten"], ROWS);
    let restored = store
        .list_rows(&id)
        .await
        .unwrap_or_else(|e| panic!("rows: {e}"));
    let strip = |rows: Vec<ResultRow>| -> Vec<ResultRow> {
        rows.into_iter()
            .map(|r| ResultRow {
                ingested_at_ms: 0,
                ..r
            })
            .collect()
    };
    assert_eq!(strip(restored), strip(rows));
    drop(dev);
}
