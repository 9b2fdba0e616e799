//! Adversarial results through the real `consumer` binary with its DynamoDB on dynalite
//! (`tests/src/dynalite.rs`), which refuses what AWS refuses and moto lets through (two writes of
//! one key in one `BatchWriteItem`, numbers out of range), while SQS stays on moto. Each test is
//! one review finding: the results must be stored whole, counted exactly, and the message must
//! never fail (a failed message is retried and then dead-lettered: a poisoned job).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::domain::envelope::{EventSummary, QueueEnvelope, SignatureMode, WebhookEnvelope};
use gemini_hooks::domain::event::Event;
use gemini_hooks::domain::jobs::{JobRecord, JobState, ResultRow, RowStatus};
use gemini_hooks::ports::ResultsStore;
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::dynalite;
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, OutputSpec, inline_success, operation_json, success_line,
};
use gemini_hooks_tests::moto::{self, TestQueue};
use gemini_hooks_tests::runtime_api::{
    FunctionProcess, RuntimeApi, failed_ids, spawn_function, sqs_event,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const INVOKE: Duration = Duration::from_secs(60);
/// DynamoDB's sort-key limit (docs/RELIABILITY.md); a row id is `RESULT#` + the key.
const SORT_KEY_MAX_BYTES: usize = 1024;
const RESULT_PREFIX: &str = "RESULT#";

/// The consumer binary under a fake Lambda Runtime API: results table on dynalite, queue on moto.
struct Stack {
    ddb: aws_sdk_dynamodb::Client,
    results: String,
    queue: TestQueue,
    gemini: FakeGemini,
    api: RuntimeApi,
    consumer: FunctionProcess,
}

impl Stack {
    async fn new() -> Self {
        let ddb = dynalite::dynamodb();
        let results = moto::unique_name("dyn-results");
        dynalite::create_results_table(&ddb, &results).await;
        let sqs = moto::sqs().await;
        let queue = moto::create_queue(&sqs, &moto::unique_name("dyn-events"), 5, 30).await;
        let gemini = FakeGemini::start().await;
        let api = RuntimeApi::start().await;
        let consumer = spawn_function(
            &bin_path("consumer"),
            &api,
            &[
                ("RESULTS_TABLE", results.clone()),
                ("ROUTES", String::new()),
                ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
                ("GEMINI_API_BASE_URL", gemini.base_url()),
                ("QUEUE_URL", queue.url.clone()),
                // The SDK's per-service override: DynamoDB on dynalite, everything else on moto.
                ("AWS_ENDPOINT_URL_DYNAMODB", dynalite::endpoint()),
            ],
        )
        .await;
        Self {
            ddb,
            results,
            queue,
            gemini,
            api,
            consumer,
        }
    }

    /// A results file and the SUCCEEDED operation naming it.
    fn batch_with_file(&self, batch: &str, lines: &[String]) {
        let file = format!("files/{batch}-results");
        let mut body = lines.join("\n");
        body.push('\n');
        self.gemini.put_file(&file, Bytes::from(body));
        self.gemini.put_operation(operation_json(
            &format!("batches/{batch}"),
            "BATCH_STATE_SUCCEEDED",
            OutputSpec::File(file),
        ));
    }

    /// Invokes the consumer with one SQS batch of `bodies`; returns the failed message ids.
    async fn consume(&self, bodies: &[String]) -> Vec<String> {
        let response = self
            .api
            .invoke(sqs_event(bodies, &self.queue.arn), INVOKE)
            .await
            .unwrap_or_else(|e| panic!("consumer: {e}\n{}", self.consumer.logs()));
        failed_ids(&response)
    }

    /// Consumes `bodies` and requires every message to succeed.
    async fn consume_all(&self, bodies: &[String]) {
        let failed = self.consume(bodies).await;
        assert!(
            failed.is_empty(),
            "failed messages {failed:?}\n{}",
            self.consumer.logs()
        );
    }

    fn store(&self) -> DynamoDbResultsStore {
        DynamoDbResultsStore::new(self.ddb.clone(), self.results.clone())
    }

    async fn job(&self, job_id: &str) -> JobRecord {
        match self.store().load_job(job_id).await {
            Ok(Some(job)) => job,
            other => panic!("job {job_id}: {other:?}\n{}", self.consumer.logs()),
        }
    }

    async fn rows(&self, job_id: &str) -> Vec<ResultRow> {
        self.store()
            .list_rows(job_id)
            .await
            .unwrap_or_else(|e| panic!("list_rows {job_id}: {e}"))
    }

    async fn count(&self, job_id: &str) -> u64 {
        self.store()
            .count_rows(job_id)
            .await
            .unwrap_or_else(|e| panic!("count_rows {job_id}: {e}"))
    }

    /// Every item of the job's partition, by sort key, as stored.
    async fn items(&self, job_id: &str) -> BTreeMap<String, HashMap<String, AttributeValue>> {
        let mut items = BTreeMap::new();
        let mut start = None;
        loop {
            let out = self
                .ddb
                .query()
                .table_name(&self.results)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(format!("JOB#{job_id}")))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .unwrap_or_else(|e| panic!("Query on dynalite: {e:?}"));
            for item in out.items() {
                let sk = text(item, "sk").unwrap_or_else(|| panic!("item without sk"));
                items.insert(sk, item.clone());
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return items,
            }
        }
    }
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The queue message the receiver makes for `event`.
fn envelope(webhook_id: &str, event: Value) -> String {
    let parsed = Event::from_value(&event, None).unwrap_or_else(|e| panic!("event: {e}"));
    let received_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    QueueEnvelope::Webhook(WebhookEnvelope {
        webhook_id: webhook_id.to_owned(),
        received_at_ms,
        signature_mode: SignatureMode::Static,
        bound: true,
        event: EventSummary::from(&parsed),
        raw_event: event,
        user_metadata: parsed.user_metadata.clone(),
    })
    .to_message()
    .unwrap_or_else(|e| panic!("envelope: {e}"))
    .body
}

fn succeeded(batch: &str, user_metadata: Option<Value>) -> Value {
    let mut data = json!({"id": batch, "output_file_uri": format!("files/{batch}-results")});
    if let Some(m) = user_metadata {
        data["user_metadata"] = m;
    }
    json!({"type": "batch.succeeded", "version": "v1", "timestamp": "2026-12-01T12:00:00Z",
           "data": data})
}

/// `depth` JSON objects, one inside the other, around `leaf`.
fn nested_json(depth: usize, leaf: Value) -> Value {
    let mut v = leaf;
    for i in 0..depth {
        v = json!({ format!("level{}", depth - i): v });
    }
    v
}

/// `n` characters that gzip cannot shrink to half (xorshift over 64 letters): a response this
/// large is stored as gzip parts.
fn noise(n: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(alphabet[usize::try_from(x % 64).unwrap_or(0)])
        })
        .collect()
}

fn parse(json_text: Option<&str>) -> Value {
    serde_json::from_str(json_text.unwrap_or("null")).unwrap_or_else(|e| panic!("JSON: {e}"))
}

/// A key over 1 017 bytes cannot be a sort key after `RESULT#`: it is stored under its hash,
/// with the full key kept, and the job is not poisoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_key_too_long_for_a_sort_key_is_stored_under_its_hash() {
    let s = Stack::new().await;
    let fits = "k".repeat(SORT_KEY_MAX_BYTES - RESULT_PREFIX.len());
    let one_over = "k".repeat(SORT_KEY_MAX_BYTES - RESULT_PREFIX.len() + 1);
    // 509 characters but 1 018 bytes: the limit counts bytes.
    let wide = "é".repeat(509);
    let huge = "x".repeat(5_000);
    let keys = [
        fits.clone(),
        one_over.clone(),
        wide.clone(),
        huge.clone(),
        "short".into(),
    ];
    let lines: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| success_line(k, &format!("answer {}", i + 1)))
        .collect();
    s.batch_with_file("longkeys", &lines);
    s.consume_all(&[envelope("w-longkeys", succeeded("longkeys", None))])
        .await;

    let job = s.job("batches/longkeys").await;
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(
        (job.counts.rows_ingested, job.counts.duplicate_keys),
        (5, 0)
    );
    assert_eq!(s.count("batches/longkeys").await, 5);

    let items = s.items("batches/longkeys").await;
    let expected_sk = |key: &str| {
        if RESULT_PREFIX.len() + key.len() <= SORT_KEY_MAX_BYTES {
            format!("{RESULT_PREFIX}{key}")
        } else {
            format!("RESULTH#{}", sha256_hex(key.as_bytes()))
        }
    };
    assert_eq!(expected_sk(&fits).len(), SORT_KEY_MAX_BYTES);
    for (i, key) in keys.iter().enumerate() {
        let sk = expected_sk(key);
        let item = items
            .get(&sk)
            .unwrap_or_else(|| panic!("no item {sk:.40}…; have {:?}", items.keys()));
        assert_eq!(text(item, "key").as_deref(), Some(key.as_str()), "{sk:.40}");
        assert_eq!(
            text(item, "text"),
            Some(format!("answer {}", i + 1)),
            "{sk:.40}"
        );
    }
    assert_eq!(
        items.keys().filter(|sk| sk.starts_with("RESULTH#")).count(),
        3,
        "one over, wide and huge are hashed"
    );
    let mut by_key: Vec<(String, Option<String>)> = s
        .rows("batches/longkeys")
        .await
        .into_iter()
        .map(|r| (r.key, r.text))
        .collect();
    by_key.sort();
    let mut expected: Vec<(String, Option<String>)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), Some(format!("answer {}", i + 1))))
        .collect();
    expected.sort();
    assert_eq!(by_key, expected);
}

/// A key-less line is stored by its line number, apart from a request genuinely keyed
/// `line-<n>`; keys shaped like part items (old `#PART#` or new `PART#<hash>#nnnn`) stay rows
/// beside a large row's parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_lines_and_part_shaped_keys_collide_with_nothing() {
    let s = Stack::new().await;
    let big_text = noise(400_000);
    let owner = &sha256_hex(b"RESULT#big")[..32];
    let part_shaped = format!("PART#{owner}#0001");
    let lines = vec![
        // Line 1 is genuinely keyed like line 2's display key.
        success_line("line-2", "genuine"),
        r#"{"response": {"candidates": []}}"#.to_owned(),
        success_line("big", &big_text),
        success_line("big#PART#0001", "legacy-shaped"),
        success_line(&part_shaped, "part-shaped"),
        success_line("#PART#", "bare mark"),
    ];
    let big_response = parse(Some(&lines[2]))["response"].clone();
    s.batch_with_file("namespaces", &lines);
    s.consume_all(&[envelope("w-ns", succeeded("namespaces", None))])
        .await;

    let job = s.job("batches/namespaces").await;
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(
        (
            job.counts.rows_ingested,
            job.counts.malformed_rows,
            job.counts.duplicate_keys
        ),
        (6, 1, 0)
    );
    assert_eq!(s.count("batches/namespaces").await, 6);

    let items = s.items("batches/namespaces").await;
    let genuine = &items["RESULT#line-2"];
    assert_eq!(text(genuine, "text").as_deref(), Some("genuine"));
    let keyless = items
        .get("LINE#000000000002")
        .unwrap_or_else(|| panic!("no key-less row; have {:?}", items.keys()));
    assert_eq!(
        (
            text(keyless, "key").as_deref(),
            text(keyless, "status").as_deref()
        ),
        (Some("line-2"), Some("malformed"))
    );
    // The large row is split into parts that name it; the part-shaped keys are rows of their own.
    let big = &items["RESULT#big"];
    assert_eq!(
        text(big, "response_encoding").as_deref(),
        Some("gzip-parts")
    );
    let parts: Vec<&String> = items.keys().filter(|sk| sk.starts_with("PART#")).collect();
    assert_eq!(
        big.get("response_parts").and_then(|n| n.as_n().ok()),
        Some(&parts.len().to_string())
    );
    assert!(parts.len() >= 2, "{parts:?}");
    for sk in &parts {
        assert!(sk.starts_with(&format!("PART#{owner}#")), "{sk}");
        assert_eq!(text(&items[*sk], "part_of").as_deref(), Some("RESULT#big"));
    }
    for (sk, expected) in [
        ("RESULT#big#PART#0001", "legacy-shaped"),
        (&format!("RESULT#{part_shaped}"), "part-shaped"),
        ("RESULT##PART#", "bare mark"),
    ] {
        let item = items
            .get(sk)
            .unwrap_or_else(|| panic!("no {sk}; have {:?}", items.keys()));
        assert_eq!(text(item, "text").as_deref(), Some(expected), "{sk}");
    }
    assert_eq!(items.len(), 1 + 6 + parts.len(), "job, rows, parts");

    let rows = s.rows("batches/namespaces").await;
    let summary: Vec<(&str, bool, RowStatus)> = rows
        .iter()
        .map(|r| (r.key.as_str(), r.keyless, r.status))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("#PART#", false, RowStatus::Ok),
            (part_shaped.as_str(), false, RowStatus::Ok),
            ("big", false, RowStatus::Ok),
            ("big#PART#0001", false, RowStatus::Ok),
            ("line-2", false, RowStatus::Ok),
            ("line-2", true, RowStatus::Malformed),
        ]
    );
    let big_row = &rows[2];
    assert_eq!(parse(big_row.response_json.as_deref()), big_response);
    assert_eq!(big_row.text.as_deref(), Some(big_text.as_str()));
    assert_eq!(rows[4].text.as_deref(), Some("genuine"));
}

/// Two jobs whose results repeat keys, consumed in one invocation: `batches/dups`, a file of 30
/// lines where line 5 repeats line 2's key (the same 25-row write) and line 28 repeats line 3's
/// (the next write), and `batches/dupsinline`, three inline results of which the third repeats
/// the first. Returns the two job records.
async fn consume_repeated_keys(s: &Stack) -> (JobRecord, JobRecord) {
    let key_of = |i: usize| match i {
        5 => "req-2".to_owned(),
        28 => "req-3".to_owned(),
        _ => format!("req-{i}"),
    };
    let lines: Vec<String> = (1..=30)
        .map(|i| success_line(&key_of(i), &format!("text of line {i}")))
        .collect();
    s.batch_with_file("dups", &lines);
    s.gemini.put_operation(operation_json(
        "batches/dupsinline",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::Inline(vec![
            inline_success("a", "first a"),
            inline_success("b", "only b"),
            inline_success("a", "second a"),
        ]),
    ));
    s.consume_all(&[
        envelope("w-dups", succeeded("dups", None)),
        envelope(
            "w-dupsinline",
            json!({"type": "batch.succeeded", "data": {"id": "dupsinline"}}),
        ),
    ])
    .await;
    let job = s.job("batches/dups").await;
    let inline = s.job("batches/dupsinline").await;
    assert_eq!(
        (job.state, inline.state),
        (JobState::Succeeded, JobState::Succeeded)
    );
    (job, inline)
}

/// Lines of one key in one 25-row write are merged (the later wins): the write never names the
/// key twice, which dynalite, like AWS, refuses outright (the message would fail and be retried
/// until dead-lettered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_repeating_a_key_are_merged_the_later_winning_and_never_written_twice_in_one_call() {
    let s = Stack::new().await;
    let (job, inline) = consume_repeated_keys(&s).await;
    assert_eq!(s.count("batches/dups").await, 28);
    assert_eq!(job.counts.rows_ingested, 28, "{:?}", job.counts);
    let rows = s.rows("batches/dups").await;
    let find = |key: &str| {
        rows.iter()
            .find(|r| r.key == key)
            .map(|r| (r.line, r.text.clone().unwrap_or_default()))
    };
    assert_eq!(find("req-2"), Some((5, "text of line 5".to_owned())));
    assert_eq!(find("req-3"), Some((28, "text of line 28".to_owned())));
    assert_eq!(find("req-4"), Some((4, "text of line 4".to_owned())));

    assert_eq!(s.count("batches/dupsinline").await, 2);
    assert_eq!(inline.counts.rows_ingested, 2, "{:?}", inline.counts);
    let texts: Vec<(String, Option<String>)> = s
        .rows("batches/dupsinline")
        .await
        .into_iter()
        .map(|r| (r.key, r.text))
        .collect();
    assert_eq!(
        texts,
        vec![
            ("a".to_owned(), Some("second a".to_owned())),
            ("b".to_owned(), Some("only b".to_owned())),
        ]
    );
}

/// `duplicate_keys` is the lines that repeated an earlier key (`JobCounts`), within one write
/// (req-2, inline `a`) as across writes (req-3): lines read = rows stored + duplicate_keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_counts_repeats_within_one_write_as_well_as_across_writes() {
    let s = Stack::new().await;
    let (job, inline) = consume_repeated_keys(&s).await;
    assert_eq!(
        [
            (job.counts.rows_ingested, job.counts.duplicate_keys),
            (inline.counts.rows_ingested, inline.counts.duplicate_keys),
        ],
        [(28, 2), (2, 1)],
        "[file job, inline job]: {:?} {:?}",
        job.counts,
        inline.counts
    );
}

/// `user_metadata` nested 40 levels (DynamoDB stops at 32) and numbers like 1e200 (beyond
/// DynamoDB's 1e126) in the metadata, an interaction's output and a response are stored as JSON
/// text, read back equal, and poison nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_metadata_and_huge_numbers_are_stored_as_json_text() {
    let s = Stack::new().await;
    let metadata = nested_json(
        40,
        json!({"huge": 1e200, "tiny": -1e-200, "digits": 1.234_567_890_123_456_7e100}),
    );
    let response = json!({
        "candidates": [{"content": {"parts": [{"text": "deep answer"}], "role": "model"},
                        "finishReason": "STOP", "avgLogprobs": -1e200}],
        "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 5},
        "custom": nested_json(40, json!([1e200, 5e-324])),
    });
    let lines = vec![json!({"key": "deep", "response": response}).to_string()];
    s.batch_with_file("deep", &lines);
    let outputs = json!([{"type": "text", "text": "done", "extra": nested_json(40, json!(1e200))}]);
    let usage = json!({"total_tokens": 7, "cost": 1e200});
    s.gemini.put_resource(
        "interactions/ideep",
        json!({"id": "ideep", "status": "completed", "outputs": outputs, "usage": usage}),
    );
    s.consume_all(&[
        envelope("w-deep", succeeded("deep", Some(metadata.clone()))),
        envelope(
            "w-ideep",
            json!({"type": "interaction.completed", "data": {"id": "ideep",
                   "user_metadata": metadata}}),
        ),
    ])
    .await;

    let job = s.job("batches/deep").await;
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.counts.rows_ingested, 1);
    assert_eq!(job.user_metadata.as_ref(), Some(&metadata));
    let items = s.items("batches/deep").await;
    assert_eq!(
        text(&items["JOB"], "user_metadata"),
        Some(metadata.to_string()),
        "user_metadata is one string attribute"
    );
    let rows = s.rows("batches/deep").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].text.as_deref(), Some("deep answer"));
    assert_eq!(parse(rows[0].response_json.as_deref()), response);

    let interaction = s.job("interactions/ideep").await;
    assert_eq!(interaction.state, JobState::Succeeded);
    assert_eq!(interaction.user_metadata.as_ref(), Some(&metadata));
    let output = interaction
        .output
        .unwrap_or_else(|| panic!("interaction without output"));
    // The record keeps a summary (the count, the usage); the outputs themselves are rows.
    assert_eq!(
        (&output["outputs"], &output["usage"]),
        (&json!(1), &usage),
        "{output}"
    );
    let rows = s.rows("interactions/ideep").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(parse(rows[0].response_json.as_deref()), outputs[0]);
    let items = s.items("interactions/ideep").await;
    let stored = text(&items["JOB"], "output");
    assert!(stored.is_some(), "output is one string attribute");
    assert_eq!(parse(stored.as_deref()), output);
}
