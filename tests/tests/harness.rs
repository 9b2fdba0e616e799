//! Proves the test harness itself: the fake Lambda Runtime API drives a real `lambda_runtime`
//! binary, and the moto helpers create working tables and queues.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{AttributeValue, KeyType, TimeToLiveStatus};
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use gemini_hooks_tests::bins::{bin_path, example_path};
use gemini_hooks_tests::moto::{self, TTL_ATTRIBUTE};
use gemini_hooks_tests::runtime_api::{
    FUNCTION_NAME, FunctionProcess, InvokeError, MEMORY_SIZE_MB, RuntimeApi, spawn_function,
};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(10);

async fn echo() -> (RuntimeApi, FunctionProcess) {
    let api = RuntimeApi::start().await;
    let f = spawn_function(&example_path("echo_lambda"), &api, &[]).await;
    (api, f)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_answers_three_invocations_with_lambda_context() {
    let (api, f) = echo().await;
    let mut ids = HashSet::new();
    for i in 0..3 {
        let payload = json!({"n": i, "nested": {"text": format!("hello {i}")}});
        let before = now_ms();
        let out = api
            .invoke(payload.clone(), DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("invoke {i} failed: {e}\nlogs:\n{}", f.logs()));
        assert_eq!(out["echo"], payload);
        assert_eq!(out["function_arn"], api.function_arn());
        assert_eq!(out["function_name"], FUNCTION_NAME);
        assert_eq!(out["memory_mb"], MEMORY_SIZE_MB);
        let deadline = out["deadline_ms"].as_u64().unwrap();
        let expected = before + DEADLINE.as_millis() as u64;
        assert!(
            deadline >= expected && deadline <= now_ms() + DEADLINE.as_millis() as u64,
            "deadline {deadline} not ~{expected}"
        );
        ids.insert(out["request_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 3, "request ids must be unique: {ids:?}");
    assert!(api.first_poll_at().is_some(), "function never polled /next");
    assert!(
        f.wait_for_log("echo invoked", Duration::from_secs(2)).await,
        "logs: {}",
        f.logs()
    );
    // JSON log format (as in the template) on stderr, nothing on stdout.
    let first = f.stderr().lines().next().unwrap_or_default().to_owned();
    serde_json::from_str::<Value>(&first).unwrap_or_else(|e| panic!("not JSON: {first}: {e}"));
    assert!(f.stdout().is_empty(), "stdout: {}", f.stdout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_errors_and_panics_are_reported_and_the_function_keeps_serving() {
    let (api, f) = echo().await;
    let err = api
        .invoke(json!({"fail": true}), DEADLINE)
        .await
        .expect_err("fail: true must be an error");
    let InvokeError::FunctionError(body) = err else {
        panic!("expected FunctionError, got {err:?}");
    };
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("asked to fail"),
        "{body}"
    );
    assert!(body["errorType"].is_string(), "{body}");

    let err = api
        .invoke(json!({"panic": true}), DEADLINE)
        .await
        .expect_err("panic must be an error");
    assert!(matches!(err, InvokeError::FunctionError(_)), "{err:?}");

    let out = api.invoke(json!({"after": "errors"}), DEADLINE).await;
    assert_eq!(
        out.unwrap()["echo"],
        json!({"after": "errors"}),
        "{}",
        f.logs()
    );
    assert!(
        f.wait_for_log("failing on request", Duration::from_secs(2))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_invocation_times_out_and_its_late_answer_is_ignored() {
    let (api, f) = echo().await;
    let started = Instant::now();
    let err = api
        .invoke(
            json!({"sleep_ms": 2500, "tag": "slow"}),
            Duration::from_millis(300),
        )
        .await
        .expect_err("must time out");
    assert_eq!(err, InvokeError::Timeout);
    assert!(started.elapsed() < Duration::from_millis(2000));
    // The late answer for the slow one must not be mistaken for this invocation's answer.
    let out = api.invoke(json!({"tag": "next"}), DEADLINE).await;
    assert_eq!(out.unwrap()["echo"]["tag"], "next", "{}", f.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_error_fails_pending_invocations() {
    // No function at all: the test plays the runtime and reports an init failure.
    let api = RuntimeApi::start().await;
    assert!(api.init_error().is_none());
    let addr = api.address();
    let report = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = reqwest::Client::new()
            .post(format!("http://{addr}/2018-06-01/runtime/init/error"))
            .header("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
            .body(r#"{"errorType":"Config","errorMessage":"missing QUEUE_URL"}"#)
            .send()
            .await
            .unwrap();
        r.status()
    });
    let err = api
        .invoke(json!({}), DEADLINE)
        .await
        .expect_err("init error");
    assert_eq!(report.await.unwrap(), reqwest::StatusCode::ACCEPTED);
    let InvokeError::InitError(body) = err else {
        panic!("expected InitError, got {err:?}");
    };
    assert_eq!(body["errorMessage"], "missing QUEUE_URL");
    assert_eq!(api.init_error().unwrap()["errorType"], "Config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_exits_at_start_is_visible() {
    // A real lambda_runtime binary without its required env exits instead of serving.
    let api = RuntimeApi::start().await;
    let mut f = spawn_function(
        &example_path("echo_lambda"),
        &api,
        &[("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "not-a-number".to_owned())],
    )
    .await;
    let status = f.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "{status:?} {}",
        f.logs()
    );
    assert!(f.try_exit_status().is_some());
    assert!(api.first_poll_at().is_none());
    let err = api.invoke(json!({}), Duration::from_millis(200)).await;
    assert_eq!(err, Err(InvokeError::Timeout));
}

#[test]
#[should_panic(expected = "cargo build --workspace --bins")]
fn missing_binary_panics_with_build_hint() {
    bin_path("no-such-binary-gemini-hooks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_tables_have_the_template_shape_and_work() {
    let ddb = moto::dynamodb().await;
    let dedupe = moto::unique_name("dedupe");
    let results = moto::unique_name("results");
    assert_ne!(dedupe, moto::unique_name("dedupe"));
    moto::create_dedupe_table(&ddb, &dedupe).await;
    moto::create_results_table(&ddb, &results).await;

    for (table, keys) in [
        (&dedupe, vec![("webhook_id", KeyType::Hash)]),
        (
            &results,
            vec![("pk", KeyType::Hash), ("sk", KeyType::Range)],
        ),
    ] {
        let d = ddb.describe_table().table_name(table).send().await.unwrap();
        let t = d.table().unwrap();
        let schema: Vec<(String, KeyType)> = t
            .key_schema()
            .iter()
            .map(|k| (k.attribute_name().to_owned(), k.key_type().clone()))
            .collect();
        let want: Vec<(String, KeyType)> =
            keys.into_iter().map(|(n, k)| (n.to_owned(), k)).collect();
        assert_eq!(schema, want, "{table}");
        let ttl = ddb
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .unwrap();
        let ttl = ttl.time_to_live_description().unwrap();
        assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
        assert_eq!(ttl.attribute_name(), Some(TTL_ATTRIBUTE));
    }

    ddb.put_item()
        .table_name(&dedupe)
        .item("webhook_id", AttributeValue::S("msg_1".into()))
        .item("status", AttributeValue::S("PENDING".into()))
        .condition_expression("attribute_not_exists(webhook_id)")
        .send()
        .await
        .unwrap();
    let again = ddb
        .put_item()
        .table_name(&dedupe)
        .item("webhook_id", AttributeValue::S("msg_1".into()))
        .condition_expression("attribute_not_exists(webhook_id)")
        .send()
        .await;
    assert!(
        again
            .unwrap_err()
            .into_service_error()
            .is_conditional_check_failed_exception()
    );
    let got = ddb
        .get_item()
        .table_name(&dedupe)
        .key("webhook_id", AttributeValue::S("msg_1".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.item().unwrap()["status"],
        AttributeValue::S("PENDING".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_queue_delivers_attributes_and_redrives_to_the_dlq() {
    let sqs = moto::sqs().await;
    let q = moto::create_queue(&sqs, &moto::unique_name("events"), 1, 30).await;
    assert!(q.arn.starts_with("arn:aws:sqs:"), "{}", q.arn);
    assert_ne!(q.url, q.dlq_url);

    sqs.send_message()
        .queue_url(&q.url)
        .message_body(r#"{"webhook_id":"msg_1"}"#)
        .message_attributes(
            "event_type",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("batch.succeeded")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let got = moto::drain(&sqs, &q.url).await;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.body(), Some(r#"{"webhook_id":"msg_1"}"#));
    assert_eq!(
        m.message_attributes().unwrap()["event_type"].string_value(),
        Some("batch.succeeded")
    );
    assert_eq!(
        m.attributes().unwrap()[&MessageSystemAttributeName::ApproximateReceiveCount],
        "1"
    );
    // In flight now; drain deletes nothing and sees nothing more.
    assert!(moto::drain(&sqs, &q.url).await.is_empty());

    // Make it visible again: with maxReceiveCount 1 the next receive moves it to the DLQ.
    sqs.change_message_visibility()
        .queue_url(&q.url)
        .receipt_handle(m.receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    assert!(moto::drain(&sqs, &q.url).await.is_empty());
    let dead = moto::drain(&sqs, &q.dlq_url).await;
    assert_eq!(dead.len(), 1, "message must be redriven to the DLQ");
    assert_eq!(dead[0].body(), m.body());
}
