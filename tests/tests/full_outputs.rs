//! Full outputs of interactions and videos through the real binaries (issue 13, item 4): the
//! `consumer` binary under the fake Lambda Runtime API on moto (DynamoDB, S3, SQS) with the fake
//! Gemini API, `gemini-hooks export` reading the rows back, and `gemini-hooks dev` copying a
//! video into its data directory.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::domain::envelope::{EventSummary, QueueEnvelope, SignatureMode, WebhookEnvelope};
use gemini_hooks::domain::event::Event;
use gemini_hooks::domain::jobs::{JobRecord, JobState};
use gemini_hooks::domain::verify::sha256_hex;
use gemini_hooks::ports::ResultsStore;
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::delivery::TEST_SECRET;
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, Fault, interaction_json, video_bytes, video_operation_json,
};
use gemini_hooks_tests::local::{DevServer, TempDir, run_cli, wait_until};
use gemini_hooks_tests::moto;
use gemini_hooks_tests::runtime_api::{
    FunctionProcess, RuntimeApi, failed_ids, spawn_function, sqs_record,
};
use serde_json::{Value, json};

const INVOKE: Duration = Duration::from_secs(90);
const MIB: usize = 1024 * 1024;
/// What the CLI needs to reach moto (it runs with an otherwise empty environment).
const AWS_VARS: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_EC2_METADATA_DISABLED",
];

struct Stack {
    s3: aws_sdk_s3::Client,
    bucket: String,
    results: String,
    store: DynamoDbResultsStore,
    gemini: FakeGemini,
    consumer: RuntimeApi,
    consumer_fn: FunctionProcess,
}

impl Stack {
    async fn new() -> Self {
        let ddb = moto::dynamodb().await;
        let sqs = moto::sqs().await;
        let s3 = moto::s3().await;
        let results = moto::unique_name("outputs-results");
        let bucket = moto::unique_name("outputs-videos");
        moto::create_results_table(&ddb, &results).await;
        moto::create_bucket(&s3, &bucket).await;
        let queue = moto::create_queue(&sqs, &moto::unique_name("outputs-events"), 5, 30).await;
        let gemini = FakeGemini::start().await;
        let consumer = RuntimeApi::start().await;
        let consumer_fn = spawn_function(
            &bin_path("consumer"),
            &consumer,
            &[
                ("RESULTS_TABLE", results.clone()),
                ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
                ("GEMINI_API_BASE_URL", gemini.base_url()),
                ("QUEUE_URL", queue.url.clone()),
                ("OUTPUT_BUCKET", bucket.clone()),
            ],
        )
        .await;
        Self {
            s3,
            bucket,
            store: DynamoDbResultsStore::new(ddb, results.clone()),
            results,
            gemini,
            consumer,
            consumer_fn,
        }
    }

    /// Invokes the consumer with `(message id, body)` as one SQS batch; the failed ids.
    async fn consume(&self, messages: &[(&str, String)]) -> Vec<String> {
        let records: Vec<Value> = messages
            .iter()
            .map(|(id, body)| sqs_record(id, body, "arn:aws:sqs:us-east-1:123456789012:events"))
            .collect();
        let response = self
            .consumer
            .invoke(json!({ "Records": records }), INVOKE)
            .await
            .unwrap_or_else(|e| panic!("consumer: {e}\n{}", self.consumer_fn.logs()));
        failed_ids(&response)
    }

    async fn job(&self, id: &str) -> JobRecord {
        match self.store.load_job(id).await {
            Ok(Some(job)) => job,
            other => panic!("job {id}: {other:?}\n{}", self.consumer_fn.logs()),
        }
    }

    async fn object(&self, key: &str) -> Vec<u8> {
        let out = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetObject {key}: {e:?}"));
        out.body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("reading {key}: {e}"))
            .into_bytes()
            .to_vec()
    }

    /// Multipart uploads started and neither completed nor aborted.
    async fn open_uploads(&self) -> usize {
        let out = self
            .s3
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("ListMultipartUploads: {e:?}"));
        out.uploads().len()
    }
}

/// The queue message the receiver would have produced for `event`.
fn envelope(webhook_id: &str, event: &Value) -> String {
    let parsed = Event::from_value(event, None).unwrap_or_else(|e| panic!("event: {e}"));
    QueueEnvelope::Webhook(WebhookEnvelope {
        webhook_id: webhook_id.to_owned(),
        received_at_ms: 1_795_000_000_000,
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

fn video_event(operation: &str) -> Value {
    json!({"type": "video.generated", "version": "v1", "timestamp": "2026-12-01T12:00:00Z",
           "data": {"id": operation}})
}

fn interaction_event(kind: &str, id: &str) -> Value {
    json!({"type": kind, "version": "v1", "timestamp": "2026-12-01T12:00:00Z", "data": {"id": id}})
}

/// A 12 MiB video on the fake (three parts of 5, 5 and 2 MiB) behind a done operation.
fn put_video(gemini: &FakeGemini, op: &str, file: &str, bytes: usize) -> Bytes {
    let video = video_bytes(bytes);
    gemini.put_file(file, video.clone());
    gemini.put_resource(op, video_operation_json(op, &[file]));
    video
}

fn stored_entry(job: &JobRecord) -> Value {
    let output = job.output.clone().unwrap_or_default();
    let stored = output["stored"].as_array().cloned().unwrap_or_default();
    assert_eq!(stored.len(), 1, "one stored video: {output}");
    stored[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_video_is_copied_into_s3_once_even_when_its_download_breaks() {
    let s = Stack::new().await;
    let op = "models/veo-3.0-generate-001/operations/vid-e2e-1";
    let video = put_video(&s.gemini, op, "files/vid-e2e-1", 12 * MIB);
    // The download breaks 3 MiB in: the copy resumes from there (Range), within the message.
    s.gemini
        .inject("files/vid-e2e-1:download", vec![Fault::CutAfter(3 * MIB)]);

    let body = envelope("msg-vid-1", &video_event(op));
    let failed = s.consume(&[("m1", body.clone())]).await;
    assert!(failed.is_empty(), "{failed:?}\n{}", s.consumer_fn.logs());

    let job_id = format!("videos/{op}");
    let job = s.job(&job_id).await;
    assert_eq!(job.state, JobState::Succeeded);
    let entry = stored_entry(&job);
    let key = format!("{job_id}/1.mp4");
    assert_eq!(entry["store"], "s3", "{entry}");
    assert_eq!(entry["bucket"], s.bucket.as_str());
    assert_eq!(entry["key"], key.as_str());
    assert_eq!(entry["bytes"], 12 * MIB);
    assert_eq!(entry["content_type"], "video/mp4");
    assert_eq!(entry["sha256"], sha256_hex(&video).as_str());
    assert!(
        entry["etag"].as_str().is_some_and(|e| e.contains("-3")),
        "a three-part multipart upload: {entry}"
    );
    // Gemini's links are still there too.
    assert_eq!(
        job.output.as_ref().map(|o| o["operation"].clone()),
        Some(json!(op))
    );

    let object = s.object(&key).await;
    assert_eq!(object.len(), video.len());
    assert!(
        object == video.as_ref(),
        "the object's bytes are the video's"
    );
    assert_eq!(moto::bucket_keys(&s.s3, &s.bucket).await, vec![key.clone()]);
    assert_eq!(s.open_uploads().await, 0);
    let downloads = s.gemini.requests_to("files/vid-e2e-1:download");
    assert_eq!(downloads.len(), 2, "one cut, one resume: {downloads:?}");
    assert_eq!(downloads[1].range.as_deref(), Some("bytes=3145728-"));

    // A replay (SQS delivers at least once, Gemini retries) finds the job finished: no API call,
    // no second copy.
    s.gemini.clear_requests();
    let failed = s.consume(&[("m1-again", body)]).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert!(s.gemini.requests().is_empty(), "{:?}", s.gemini.requests());
    assert_eq!(moto::bucket_keys(&s.s3, &s.bucket).await, vec![key]);
    assert_eq!(s.job(&job_id).await, job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_keeps_breaking_fails_its_message_leaves_nothing_and_the_retry_completes() {
    let s = Stack::new().await;
    let op = "models/veo-3.0-generate-001/operations/vid-e2e-2";
    let video = put_video(&s.gemini, op, "files/vid-e2e-2", 12 * MIB);
    // Four cuts of 2 MiB: more than the message resumes, after a first part (5 MiB) was sent.
    s.gemini.inject(
        "files/vid-e2e-2:download",
        vec![Fault::CutAfter(2 * MIB); 4],
    );
    let body = envelope("msg-vid-2", &video_event(op));
    let failed = s.consume(&[("m2", body.clone())]).await;
    assert_eq!(failed, vec!["m2".to_owned()], "{}", s.consumer_fn.logs());

    let job_id = format!("videos/{op}");
    assert!(
        s.store
            .load_job(&job_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none_or(|j| j.state != JobState::Succeeded),
        "a failed copy is never recorded as done"
    );
    assert!(
        moto::bucket_keys(&s.s3, &s.bucket).await.is_empty(),
        "no half object"
    );
    assert_eq!(
        s.open_uploads().await,
        0,
        "the multipart upload was aborted"
    );

    // The redelivered message copies it whole.
    let failed = s.consume(&[("m2", body)]).await;
    assert!(failed.is_empty(), "{failed:?}\n{}", s.consumer_fn.logs());
    let job = s.job(&job_id).await;
    assert_eq!(job.state, JobState::Succeeded);
    let key = format!("{job_id}/1.mp4");
    assert_eq!(stored_entry(&job)["key"], key.as_str());
    assert!(s.object(&key).await == video.as_ref());
    assert_eq!(moto::bucket_keys(&s.s3, &s.bucket).await, vec![key]);
    assert_eq!(s.open_uploads().await, 0);
}

async fn export(table: &str, job: &str) -> Vec<Value> {
    let env: Vec<(&str, String)> = AWS_VARS
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v)))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run_cli(&["export", "--aws", "--table", table, "--job", job], &env)
        .await
        .expect_code(0);
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interaction_that_requires_action_then_completes_is_stored_as_rows_and_exported() {
    let s = Stack::new().await;
    let id = "intx-e2e-1";
    let name = format!("interactions/{id}");
    let call = json!({"type": "function_call", "id": "call-7", "name": "get_weather",
                      "arguments": {"city": "Paris", "unit": "celsius"}});
    // Larger than a DynamoDB item: stored gzip (or in parts) and read back whole.
    let long_text: String = (0..120_000)
        .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap_or(0)))
        .collect();
    s.gemini.put_resource(
        &name,
        interaction_json(
            id,
            "requires_action",
            json!([{"type": "thought", "signature": "sig"},
                   {"type": "text", "text": "I will look up the weather."}, call]),
        ),
    );
    let failed = s
        .consume(&[(
            "i1",
            envelope(
                "msg-i-1",
                &interaction_event("interaction.requires_action", id),
            ),
        )])
        .await;
    assert!(failed.is_empty(), "{failed:?}\n{}", s.consumer_fn.logs());
    let job = s.job(&name).await;
    assert_eq!(job.state, JobState::RequiresAction);
    let output = job.output.clone().unwrap_or_default();
    assert_eq!(output["outputs"], 3, "{output}");
    assert_eq!(output["pending_calls"][0]["name"], "get_weather");
    assert_eq!(output["pending_calls"][0]["id"], "call-7");
    assert_eq!(output["pending_calls"][0]["arguments"]["city"], "Paris");
    assert_eq!(output["pending_calls"][0]["row"], "output-0003");
    let rows = export(&s.results, &name).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[1]["key"], "output-0002");
    assert_eq!(rows[1]["text"], "I will look up the weather.");
    let stored_call: Value =
        serde_json::from_str(rows[2]["response_json"].as_str().unwrap_or("null"))
            .unwrap_or_default();
    assert_eq!(stored_call, call);

    // The user answered; the interaction completed with more outputs, one of them large.
    s.gemini.put_resource(
        &name,
        interaction_json(
            id,
            "completed",
            json!([{"type": "thought", "signature": "sig"},
                   {"type": "text", "text": "I will look up the weather."}, call,
                   {"type": "text", "text": long_text}]),
        ),
    );
    let failed = s
        .consume(&[(
            "i2",
            envelope("msg-i-2", &interaction_event("interaction.completed", id)),
        )])
        .await;
    assert!(failed.is_empty(), "{failed:?}\n{}", s.consumer_fn.logs());
    let job = s.job(&name).await;
    assert_eq!(job.state, JobState::Succeeded);
    let output = job.output.clone().unwrap_or_default();
    assert_eq!(output["status"], "completed");
    assert_eq!(output["outputs"], 4);
    assert!(output.get("pending_calls").is_none(), "{output}");
    assert_eq!(output["usage"]["total_tokens"], 55);
    assert!(output.to_string().len() < 4096, "a bounded summary");
    assert_eq!(job.counts.rows_ingested, 4);
    let rows = export(&s.results, &name).await;
    assert_eq!(
        rows.iter()
            .map(|r| r["key"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["output-0001", "output-0002", "output-0003", "output-0004"]
    );
    assert_eq!(rows[3]["text"].as_str(), Some(long_text.as_str()));

    // A late requires_action replay changes nothing now.
    let failed = s
        .consume(&[(
            "i3",
            envelope(
                "msg-i-1",
                &interaction_event("interaction.requires_action", id),
            ),
        )])
        .await;
    assert!(failed.is_empty());
    assert_eq!(s.job(&name).await, job);
}

fn dir_arg(dir: &Path) -> String {
    dir.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_copies_a_generated_video_into_its_data_directory() {
    let fake = FakeGemini::start().await;
    let op = "models/veo-3.0-generate-001/operations/vid-dev-1";
    let video = put_video(&fake, op, "files/vid-dev-1", 7 * MIB);
    let dir = TempDir::new("outputs-dev");
    let env = [
        ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
        ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
        ("GEMINI_API_BASE_URL", fake.base_url()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dev = DevServer::start(dir.path(), "dev.log", &[], &env).await;

    let body = dir.join("video.json");
    std::fs::write(&body, video_event(op).to_string())
        .unwrap_or_else(|e| panic!("{}: {e}", body.display()));
    let body_arg = dir_arg(&body);
    let sent = run_cli(
        &[
            "send",
            "--url",
            &dev.url,
            "--body",
            &body_arg,
            "--id",
            "msg_dev_vid",
        ],
        &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)],
    )
    .await;
    assert!(sent.stdout.contains("-> 200"), "{}", sent.stdout);

    let d = dir_arg(dir.path());
    let job_id = format!("videos/{op}");
    let shown: Value = wait_until("the video job to succeed", Duration::from_secs(40), || {
        let d = d.clone();
        let job_id = job_id.clone();
        async move {
            let out = run_cli(
                &["results", "--data-dir", &d, "--job", &job_id, "--json"],
                &[],
            )
            .await;
            let v: Value = serde_json::from_str(&out.stdout).ok()?;
            (v["job"]["state"] == "SUCCEEDED").then_some(v)
        }
    })
    .await;
    let path = dir.path().join(format!("{job_id}/1.mp4"));
    let entry = &shown["job"]["output"]["stored"][0];
    assert_eq!(entry["store"], "file", "{shown}\n{}", dev.log());
    assert_eq!(entry["path"], dir_arg(&path).as_str());
    assert_eq!(entry["bytes"], 7 * MIB);
    assert_eq!(entry["sha256"], sha256_hex(&video).as_str());
    let copied = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(copied == video.as_ref(), "the copy's bytes are the video's");
    let leftovers: Vec<String> = std::fs::read_dir(path.parent().unwrap_or(dir.path()))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(leftovers, ["1.mp4"], "no temporary files");
    dev.kill().await;
}
