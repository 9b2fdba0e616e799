//! The whole AWS pipeline with the real binaries: a signed `batch.succeeded` delivery accepted by
//! the `receiver` binary ends, through SQS (moto) and the real `consumer` binary, as exactly one
//! row per request key in the results table.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::domain::jobs::{JobState, RowStatus};
use gemini_hooks::ports::ResultsStore;
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::delivery::{
    TEST_SECRET, batch_succeeded_body, function_url_event, signed_headers, test_secret,
};
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, OutputSpec, operation_json, sample_key, sample_results,
};
use gemini_hooks_tests::moto;
use gemini_hooks_tests::runtime_api::{RuntimeApi, spawn_function};
use serde_json::{Value, json};

fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795000000000",
                               "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1795000000001"},
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_succeeded_delivery_ends_as_one_row_per_key() {
    let ddb = moto::dynamodb().await;
    let sqs = moto::sqs().await;
    let dedupe = moto::unique_name("dedupe");
    let results = moto::unique_name("results");
    moto::create_dedupe_table(&ddb, &dedupe).await;
    moto::create_results_table(&ddb, &results).await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("events"), 5, 30).await;

    let gemini = FakeGemini::start().await;
    let lines = 750;
    gemini.put_file(
        "files/e2e-results",
        Bytes::from(sample_results(lines, 50, 125)),
    );
    gemini.put_operation(operation_json(
        "batches/e2e",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File("files/e2e-results".into()),
    ));

    let receiver_api = RuntimeApi::start().await;
    let _receiver = spawn_function(
        &bin_path("receiver"),
        &receiver_api,
        &[
            ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
            ("DEDUPE_TABLE", dedupe.clone()),
            ("QUEUE_URL", queue.url.clone()),
        ],
    )
    .await;
    let consumer_api = RuntimeApi::start().await;
    let _consumer = spawn_function(
        &bin_path("consumer"),
        &consumer_api,
        &[
            ("RESULTS_TABLE", results.clone()),
            ("ROUTES", String::new()),
            ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
            ("GEMINI_API_BASE_URL", gemini.base_url()),
            ("QUEUE_URL", queue.url.clone()),
        ],
    )
    .await;

    // Gemini delivers, then retries the same event (new timestamp and signature).
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let body = batch_succeeded_body("e2e");
    for (ts, expected) in [(now, "accepted"), (now + 20, "duplicate")] {
        let headers = signed_headers(&test_secret(), "msg_pipeline", ts, &body);
        let reply = receiver_api
            .invoke(
                function_url_event("POST", &headers, &body, false),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|e| panic!("receiver: {e}"));
        let answer: Value =
            serde_json::from_str(reply["body"].as_str().unwrap_or("null")).unwrap_or_default();
        assert_eq!(
            (reply["statusCode"].as_u64(), answer["status"].as_str()),
            (Some(200), Some(expected)),
            "{reply}"
        );
    }

    // Lambda's SQS poller: receive the batch and invoke the consumer with it, plus one poison
    // message to prove partial batch responses.
    sqs.send_message()
        .queue_url(&queue.url)
        .message_body("{\"kind\":\"nonsense\"}")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let messages = moto::drain(&sqs, &queue.url).await;
    assert_eq!(
        messages.len(),
        2,
        "exactly one message for one event, plus the poison"
    );
    let poison_id = messages
        .iter()
        .find(|m| m.body() == Some("{\"kind\":\"nonsense\"}"))
        .and_then(|m| m.message_id())
        .unwrap_or_default()
        .to_owned();
    let response = consumer_api
        .invoke(sqs_event(&messages, &queue.arn), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": poison_id}]})
    );

    let store = DynamoDbResultsStore::new(ddb, results);
    let rows = store
        .list_rows("batches/e2e")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len() as u64, lines, "one row per request key");
    let mut keys: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len() as u64, lines);
    assert!(
        rows.iter()
            .any(|r| r.key == sample_key(1) && r.status == RowStatus::Ok)
    );
    let job = store
        .load_job("batches/e2e")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("job"));
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.counts.rows_ingested, lines);
    assert_eq!(job.last_webhook_id.as_deref(), Some("msg_pipeline"));
}
