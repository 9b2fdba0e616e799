//! Reading results back (issue 13): `gemini-hooks results --stack/--aws --table` and
//! `gemini-hooks export` against DynamoDB on moto and the local SQLite store, and the results
//! retention (`RESULTS_RETENTION_DAYS`, the `expires_at` TTL).
//!
//! The stack `--stack` reads is a CloudFormation stack created on moto whose template declares
//! only the outputs template.yaml gives (`ResultsTableName`, `ResultsRoutes`), around one
//! placeholder resource; the tables themselves are created directly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::adapters::sqlite::SqliteStore;
use gemini_hooks::domain::envelope::{EventSummary, QueueEnvelope, SignatureMode, WebhookEnvelope};
use gemini_hooks::domain::event::Event;
use gemini_hooks::domain::event::JobKind;
use gemini_hooks::domain::jobs::{JobRecord, JobState, ResultRow, RowStatus};
use gemini_hooks::ports::clock::ManualClock;
use gemini_hooks::ports::{PAGE_BYTES, ResultsStore, page_bytes};
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::delivery::TEST_SECRET;
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, OutputSpec, error_line, operation_json, success_line,
};
use gemini_hooks_tests::local::{DevServer, TempDir, run_cli, run_cli_aws, wait_until};
use gemini_hooks_tests::moto;
use gemini_hooks_tests::runtime_api::{RuntimeApi, spawn_function};
use serde_json::{Value, json};

const DAY: i64 = 86_400;

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Text gzip cannot shrink below half: xorshift noise over 64 letters.
fn noise(len: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(alphabet[(x % 64) as usize])
        })
        .collect()
}

/// A results file whose rows land in every namespace and every encoding: small, gzip (a
/// 600 KB compressible answer), gzip-parts (500 KB of noise), an error, a key-less malformed
/// line (`LINE#`), and a key too long for a sort key (`RESULTH#`).
struct Batch {
    id: String,
    gzip_text: String,
    parts_text: String,
    long_key: String,
}

impl Batch {
    const ROWS: usize = 6;

    fn put_on(fake: &FakeGemini) -> Self {
        let name = format!("rr-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let b = Self {
            id: format!("batches/{name}"),
            gzip_text: "a".repeat(600_000),
            parts_text: noise(500_000),
            long_key: format!("e-long-{}", "k".repeat(1100)),
        };
        let lines = [
            success_line("a-small", "hello world"),
            success_line("b-gzip", &b.gzip_text),
            success_line("c-parts", &b.parts_text),
            error_line("d-error", 400, "Request contains an invalid argument."),
            "this is not JSON at all".to_owned(),
            success_line(&b.long_key, "a long key"),
        ];
        let file = format!("files/{name}-results");
        fake.put_file(&file, Bytes::from(lines.join("\n") + "\n"));
        fake.put_operation(operation_json(
            &b.id,
            "BATCH_STATE_SUCCEEDED",
            OutputSpec::File(file),
        ));
        b
    }

    /// The queue message the receiver would have produced for its `batch.succeeded`.
    fn envelope(&self) -> String {
        let event = json!({"type": "batch.succeeded", "version": "v1",
            "timestamp": "2026-12-01T00:00:00Z", "data": {"id": self.id}});
        let parsed = Event::from_value(&event, None).unwrap_or_else(|e| panic!("event: {e}"));
        QueueEnvelope::Webhook(WebhookEnvelope {
            webhook_id: format!("msg_{}", self.id),
            received_at_ms: now_secs() * 1000,
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

    /// Checks the rows as exported (JSON lines parsed), independently of any store.
    fn check_rows(&self, rows: &[Value]) {
        let keys: Vec<&str> = rows
            .iter()
            .map(|r| r["key"].as_str().unwrap_or("?"))
            .collect();
        // Row-id order: key-less lines, then request keys, then hashed long keys.
        assert_eq!(
            keys,
            [
                "line-5",
                "a-small",
                "b-gzip",
                "c-parts",
                "d-error",
                self.long_key.as_str()
            ],
            "{keys:?}"
        );
        let by_key: HashMap<&str, &Value> = keys.iter().copied().zip(rows).collect();
        assert_eq!(by_key["a-small"]["text"], "hello world");
        // Large rows come back whole: the text (left out of the item) and the response.
        assert_eq!(
            by_key["b-gzip"]["text"].as_str(),
            Some(self.gzip_text.as_str())
        );
        assert_eq!(
            by_key["c-parts"]["text"].as_str(),
            Some(self.parts_text.as_str())
        );
        let response: Value = serde_json::from_str(
            by_key["c-parts"]["response_json"]
                .as_str()
                .unwrap_or("null"),
        )
        .unwrap_or_default();
        assert_eq!(
            response["candidates"][0]["content"]["parts"][0]["text"].as_str(),
            Some(self.parts_text.as_str())
        );
        assert_eq!(by_key["d-error"]["status"], "error");
        assert_eq!(by_key["d-error"]["error_code"], 400);
        assert_eq!(by_key["line-5"]["status"], "malformed");
        assert_eq!(by_key["line-5"]["keyless"], true);
        assert_eq!(by_key[self.long_key.as_str()]["text"], "a long key");
        // The same fields on every row, whichever store: exactly a ResultRow's.
        let fields: Vec<&str> = rows[0]
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            fields,
            [
                "candidates_tokens",
                "error_code",
                "error_message",
                "finish_reason",
                "ingested_at_ms",
                "job_id",
                "key",
                "keyless",
                "line",
                "model_version",
                "prompt_tokens",
                "response_json",
                "status",
                "text",
                "thoughts_tokens",
                "total_tokens"
            ]
        );
        for r in rows {
            assert_eq!(
                r.as_object().map(|o| o.len()),
                Some(fields.len()),
                "{}",
                r["key"]
            );
        }
    }
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:.200}"))
        })
        .collect()
}

/// Rows without `ingested_at_ms`, which differs between two ingests of the same file.
fn comparable(rows: &[Value]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(o) = r.as_object_mut() {
                o.remove("ingested_at_ms");
            }
            r
        })
        .collect()
}

/// Every item of `job_id`'s partition, raw.
async fn partition(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    job_id: &str,
) -> Vec<HashMap<String, AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = ddb
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(format!("JOB#{job_id}")))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap_or_else(|e| panic!("query {table}: {e:?}"));
        items.extend(out.items().iter().cloned());
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return items,
        }
    }
}

fn s_attr<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}

fn expires_at(item: &HashMap<String, AttributeValue>) -> Option<i64> {
    item.get("expires_at")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_job_reads_and_exports_whole_and_exports_like_the_local_one() {
    let ddb = moto::dynamodb().await;
    let sqs = moto::sqs().await;
    let table = moto::unique_name("rr-results");
    let routed = format!("{table}-exp");
    moto::create_results_table(&ddb, &table).await;
    moto::create_results_table(&ddb, &routed).await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("rr-events"), 5, 30).await;
    let fake = FakeGemini::start().await;
    let batch = Batch::put_on(&fake);

    // The real consumer binary ingests the batch, with a 3-day retention.
    let api = RuntimeApi::start().await;
    let consumer = spawn_function(
        &bin_path("consumer"),
        &api,
        &[
            ("RESULTS_TABLE", table.clone()),
            ("RESULTS_RETENTION_DAYS", "3".to_owned()),
            ("ROUTES", String::new()),
            ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
            ("GEMINI_API_BASE_URL", fake.base_url()),
            ("QUEUE_URL", queue.url.clone()),
        ],
    )
    .await;
    let before = now_secs();
    let record = json!({"Records": [{
        "messageId": "m-1", "receiptHandle": "r-1", "body": batch.envelope(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795000000000",
                       "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1795000000001"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": queue.arn, "awsRegion": "us-east-1"}]});
    let answer = api
        .invoke(record, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("consumer: {e}\n{}", consumer.logs()));
    let after = now_secs();
    assert_eq!(
        answer["batchItemFailures"],
        json!([]),
        "{}",
        consumer.logs()
    );

    // What the table holds: both large encodings, and every item expiring in 3 days.
    let items = partition(&ddb, &table, &batch.id).await;
    let encodings: Vec<&str> = items
        .iter()
        .map(|i| s_attr(i, "response_encoding"))
        .filter(|e| !e.is_empty())
        .collect();
    assert!(
        encodings.contains(&"gzip") && encodings.contains(&"gzip-parts"),
        "{encodings:?}"
    );
    let parts = items
        .iter()
        .filter(|i| s_attr(i, "sk").starts_with("PART#"))
        .count();
    assert!(parts >= 2, "{parts} parts");
    assert_eq!(
        items.len(),
        Batch::ROWS + 1 + parts,
        "rows, the job record and the parts"
    );
    for item in &items {
        let at = expires_at(item);
        assert!(
            at.is_some_and(|at| (before + 3 * DAY..=after + 3 * DAY).contains(&at)),
            "{} expires at {at:?}, not 3 days after {before}..{after}",
            s_attr(item, "sk")
        );
    }

    // The stack `--stack` reads: its outputs name the results table and the routed one.
    let stack = moto::unique_name("rr-stack");
    let routes = json!({"exp": routed}).to_string();
    moto::create_output_stack(
        &stack,
        &[
            ("ResultsTableName", &table),
            ("ResultsRoutes", &routes),
            ("ReceiverUrl", "https://x"),
        ],
    )
    .await;
    let mut exp_job = JobRecord::new("batches/rr-routed", JobKind::Batch, 1);
    exp_job.state = JobState::Succeeded;
    exp_job.job_group = Some("exp".into());
    DynamoDbResultsStore::new(ddb.clone(), routed.clone())
        .save_job(&exp_job)
        .await
        .unwrap_or_else(|e| panic!("routed job: {e}"));

    let jobs = run_cli_aws(&["results", "--stack", &stack])
        .await
        .expect_code(0)
        .stdout;
    assert!(
        jobs.lines()
            .any(|l| l.starts_with(&batch.id) && l.contains("SUCCEEDED")),
        "{jobs}"
    );
    assert!(
        jobs.contains(&format!(
            "jobs routed by ROUTES are in their own tables: `results --stack {stack} --table {routed}`"
        )),
        "{jobs}"
    );
    let routed_jobs = run_cli_aws(&["results", "--stack", &stack, "--table", "exp", "--json"])
        .await
        .expect_code(0)
        .stdout;
    let routed_jobs: Value = serde_json::from_str(&routed_jobs).unwrap_or_default();
    assert_eq!(
        routed_jobs[0]["job_id"], "batches/rr-routed",
        "{routed_jobs}"
    );

    let shown = run_cli_aws(&["results", "--stack", &stack, "--job", &batch.id, "--json"])
        .await
        .expect_code(0)
        .stdout;
    let shown: Value = serde_json::from_str(&shown).unwrap_or_else(|e| panic!("{e}: {shown:.300}"));
    assert_eq!(shown["job"]["state"], "SUCCEEDED");
    assert_eq!(shown["job"]["counts"]["rows_ingested"], Batch::ROWS);
    assert_eq!(shown["total_rows"], Batch::ROWS);
    let shown_rows = shown["rows"].as_array().cloned().unwrap_or_default();
    batch.check_rows(&shown_rows);
    let limited = run_cli_aws(&[
        "results", "--stack", &stack, "--job", &batch.id, "--json", "--limit", "2",
    ])
    .await
    .expect_code(0)
    .stdout;
    let limited: Value = serde_json::from_str(&limited).unwrap_or_default();
    assert_eq!(limited["rows"].as_array().map(Vec::len), Some(2));
    assert_eq!(limited["total_rows"], Batch::ROWS);
    let table_view = run_cli_aws(&[
        "results", "--stack", &stack, "--job", &batch.id, "--limit", "3",
    ])
    .await
    .expect_code(0)
    .stdout;
    assert!(
        table_view.contains("… the first 3 rows shown, of 6 the job record counts"),
        "{table_view}"
    );

    // export: to a file through the stack, to stdout through the table; the same lines.
    let dir = TempDir::new("rr-export");
    let file = dir.join("rows.jsonl");
    let file_arg = file.to_string_lossy().into_owned();
    let exported = run_cli_aws(&[
        "export", "--stack", &stack, "--job", &batch.id, "--out", &file_arg,
    ])
    .await
    .expect_code(0);
    assert_eq!(
        exported.stderr.trim(),
        format!(
            "exported 6 rows of {} from DynamoDB table {table} to {file_arg}",
            batch.id
        )
    );
    assert!(exported.stdout.is_empty(), "{}", exported.stdout);
    let from_file = jsonl(&std::fs::read_to_string(&file).unwrap_or_default());
    assert_eq!(
        from_file, shown_rows,
        "export and results --json show the same rows"
    );
    let to_stdout = run_cli_aws(&["export", "--aws", "--table", &table, "--job", &batch.id])
        .await
        .expect_code(0);
    assert_eq!(jsonl(&to_stdout.stdout), from_file);
    assert!(
        !to_stdout.stderr.contains('\r'),
        "no progress bar off a terminal"
    );

    // The same batch through `gemini-hooks dev` (SQLite) exports the same lines.
    let data = TempDir::new("rr-dev");
    let d = data.path().to_string_lossy().into_owned();
    let env = [
        ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
        ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
        ("GEMINI_API_BASE_URL", fake.base_url()),
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
            &batch.id,
        ],
        &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)],
    )
    .await
    .expect_code(0);
    wait_until("the local ingest", Duration::from_secs(40), || {
        let d = d.clone();
        let id = batch.id.clone();
        async move {
            let out = run_cli(&["results", "--data-dir", &d, "--job", &id, "--json"], &[]).await;
            let v: Value = serde_json::from_str(&out.stdout).ok()?;
            (v["job"]["state"] == "SUCCEEDED").then_some(())
        }
    })
    .await;
    let local = run_cli(&["export", "--data-dir", &d, "--job", &batch.id], &[])
        .await
        .expect_code(0);
    let local_rows = jsonl(&local.stdout);
    batch.check_rows(&local_rows);
    assert_eq!(comparable(&local_rows), comparable(&from_file));
    assert!(
        local.stderr.starts_with("exported 6 rows of "),
        "{}",
        local.stderr
    );
    drop(dev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_stacks_outputs_tables_and_jobs_are_named() {
    let ddb = moto::dynamodb().await;
    let table = moto::unique_name("rr-errors");
    moto::create_results_table(&ddb, &table).await;
    let missing = moto::unique_name("rr-nostack");
    let out = run_cli_aws(&["results", "--stack", &missing])
        .await
        .expect_code(1);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "error: no CloudFormation stack `{missing}` in region us-east-1 (check --stack, and \
             AWS_REGION or the profile's region)"
        )
    );

    let other = moto::unique_name("rr-other");
    moto::create_output_stack(&other, &[("BucketName", "b")]).await;
    let out = run_cli_aws(&["export", "--stack", &other, "--job", "x"])
        .await
        .expect_code(1);
    assert!(
        out.stderr.starts_with(&format!(
            "error: stack `{other}` (CREATE_COMPLETE) has no output ResultsTableName"
        )),
        "{}",
        out.stderr
    );

    let gone = moto::unique_name("rr-gone");
    let dangling = moto::unique_name("rr-dangling");
    moto::create_output_stack(&dangling, &[("ResultsTableName", &gone)]).await;
    let out = run_cli_aws(&["results", "--stack", &dangling])
        .await
        .expect_code(1);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "error: no DynamoDB table `{gone}` (named by stack `{dangling}`) in region us-east-1"
        )
    );
    let out = run_cli_aws(&["export", "--aws", "--table", &gone, "--job", "x"])
        .await
        .expect_code(1);
    assert_eq!(
        out.stderr.trim(),
        format!("error: no DynamoDB table `{gone}` in region us-east-1")
    );

    let good = moto::unique_name("rr-good");
    moto::create_output_stack(&good, &[("ResultsTableName", &table)]).await;
    let out = run_cli_aws(&["results", "--stack", &good, "--table", "nope"])
        .await
        .expect_code(2);
    assert_eq!(
        out.stderr.trim(),
        format!("error: stack `{good}` has no results table `nope`; its tables: {table} (default)")
    );
    let out = run_cli_aws(&["export", "--stack", &good, "--job", "batches/none"])
        .await
        .expect_code(1);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "error: no job `batches/none` in DynamoDB table {table} (list them with \
             `gemini-hooks results --stack {good}`)"
        )
    );
    let out = run_cli_aws(&["results", "--stack", &good, "--dead-letters"])
        .await
        .expect_code(2);
    assert!(
        out.stderr.contains("EventsDeadLetterQueueUrl"),
        "{}",
        out.stderr
    );
    run_cli_aws(&["results", "--aws"]).await.expect_code(2);

    // Locally, an unknown --table points at --aws.
    let dir = TempDir::new("rr-local");
    let d = dir.path().to_string_lossy().into_owned();
    let out = run_cli(&["results", "--data-dir", &d, "--table", &table], &[])
        .await
        .expect_code(2);
    assert!(
        out.stderr.contains(&format!("no local table `{table}`"))
            && out.stderr.contains("add --aws"),
        "{}",
        out.stderr
    );
}

fn row(job: &str, key: &str, line: u64, keyless: bool, response: Option<String>) -> ResultRow {
    ResultRow {
        job_id: job.into(),
        key: key.into(),
        line,
        status: if keyless {
            RowStatus::Malformed
        } else {
            RowStatus::Ok
        },
        text: response.as_ref().map(|_| format!("text of {key}")),
        finish_reason: None,
        prompt_tokens: Some(1),
        candidates_tokens: None,
        total_tokens: None,
        thoughts_tokens: None,
        model_version: None,
        response_json: response,
        error_code: None,
        error_message: keyless.then(|| "not JSON".to_owned()),
        keyless,
        ingested_at_ms: 7,
    }
}

/// A row whose response only fits split into parts; its text is the response's, as a
/// consumer's is (the item leaves the text out and reading derives it again).
fn big_row(job: &str, key: &str, line: u64) -> ResultRow {
    answer_row(job, key, line, noise(500_000))
}

/// A successful row answering `text`, with the response it came in.
fn answer_row(job: &str, key: &str, line: u64, text: String) -> ResultRow {
    let response = json!({"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
        "finishReason": "STOP"}]});
    let mut r = row(job, key, line, false, Some(response.to_string()));
    r.text = Some(text);
    r
}

/// Rows in all three namespaces, one of them split into parts.
fn rows_of(job: &str) -> Vec<ResultRow> {
    vec![
        row(job, "line-3", 3, true, None),
        row(job, "line-12", 12, true, None),
        row(job, "k1", 1, false, Some(json!({"a": 1}).to_string())),
        big_row(job, "k2", 2),
        row(job, "k9", 9, false, Some(json!({"b": [1, 2]}).to_string())),
        row(job, &"z".repeat(1100), 4, false, Some("{}".into())),
        row(job, &"y".repeat(1100), 5, false, Some("{}".into())),
    ]
}

async fn pages(store: &dyn ResultsStore, job: &str, limit: usize) -> Vec<ResultRow> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let page = store
            .rows_page(job, after.as_deref(), limit)
            .await
            .unwrap_or_else(|e| panic!("rows_page: {e}"));
        assert!(page.rows.len() <= limit);
        all.extend(page.rows);
        match page.next_after {
            Some(n) => after = Some(n),
            None => return all,
        }
    }
    panic!("rows_page never ended");
}

#[tokio::test]
async fn both_stores_page_the_same_rows_in_the_same_order_and_retention_stamps_every_item() {
    let ddb = moto::dynamodb().await;
    let table = moto::unique_name("rr-pages");
    moto::create_results_table(&ddb, &table).await;
    let dir = TempDir::new("rr-pages");
    let sqlite = SqliteStore::open(dir.join("s.sqlite3")).unwrap_or_else(|e| panic!("{e}"));

    // Without a retention nothing expires.
    let kept = DynamoDbResultsStore::new(ddb.clone(), table.clone());
    let job = JobRecord::new("batches/kept", JobKind::Batch, 1);
    let rows = rows_of("batches/kept");
    for store in [&kept as &dyn ResultsStore, &sqlite] {
        assert!(store.save_job(&job).await.unwrap_or(false));
        store
            .put_rows(&rows)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let items = partition(&ddb, &table, "batches/kept").await;
    assert!(items.iter().any(|i| s_attr(i, "sk").starts_with("PART#")));
    assert!(
        items.iter().all(|i| expires_at(i).is_none()),
        "no TTL without a retention"
    );

    let mut expected = rows.clone();
    expected.sort_by_key(ResultRow::row_id);
    for limit in [1, 2, 3, 7, 100] {
        assert_eq!(
            pages(&kept, "batches/kept", limit).await,
            expected,
            "DynamoDB, pages of {limit}"
        );
        assert_eq!(
            pages(&sqlite, "batches/kept", limit).await,
            expected,
            "SQLite, pages of {limit}"
        );
    }

    // With one, every item written expires exactly that long after the injected clock's now.
    let t0 = 1_800_000_000;
    let clock = ManualClock::at_secs(t0);
    let ttl = DynamoDbResultsStore::new(ddb.clone(), table.clone()).with_retention(
        Some(Duration::from_secs(2 * 86_400)),
        Arc::new(clock.clone()),
    );
    let mut job = JobRecord::new("batches/ttl", JobKind::Batch, 1);
    assert!(ttl.save_job(&job).await.unwrap_or(false));
    ttl.put_rows(&rows_of("batches/ttl"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let items = partition(&ddb, &table, "batches/ttl").await;
    assert_eq!(
        items.len(),
        partition(&ddb, &table, "batches/kept").await.len()
    );
    for item in &items {
        assert_eq!(
            expires_at(item),
            Some(t0 + 2 * DAY),
            "{}",
            s_attr(item, "sk")
        );
    }
    // A later write of the job record moves its expiry; the rows keep theirs.
    clock.advance_ms(3_600_000);
    job.updated_at_ms = 2;
    assert!(ttl.save_job(&job).await.unwrap_or(false));
    for item in partition(&ddb, &table, "batches/ttl").await {
        let want = if s_attr(&item, "sk") == "JOB" {
            t0 + 3_600 + 2 * DAY
        } else {
            t0 + 2 * DAY
        };
        assert_eq!(expires_at(&item), Some(want), "{}", s_attr(&item, "sk"));
    }
    // The TTL is storage only: rows and the job read back as written.
    let mut expected = rows_of("batches/ttl");
    expected.sort_by_key(ResultRow::row_id);
    assert_eq!(pages(&ttl, "batches/ttl", 2).await, expected);
    assert_eq!(ttl.load_job("batches/ttl").await.ok().flatten(), Some(job));

    assert_eq!(PAGE_BYTES, 8 << 20);
    // Pages of large rows end at PAGE_BYTES, before their row limit: rows of over 2 MiB each
    // (1 MiB of text, and the response holding it) fill 8 MiB at the fourth.
    let heavy: Vec<ResultRow> = (1..=9)
        .map(|i| answer_row("batches/heavy", &format!("h{i}"), i, "b".repeat(1 << 20)))
        .collect();
    assert!(heavy.iter().all(|r| page_bytes(r) > 2 << 20));
    for store in [&kept as &dyn ResultsStore, &sqlite] {
        store
            .put_rows(&heavy)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let first = store
            .rows_page("batches/heavy", None, 100)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.rows.len(), 4);
        assert_eq!(first.next_after.as_deref(), Some("RESULT#h4"));
        assert_eq!(pages(store, "batches/heavy", 100).await, heavy);
    }
}
