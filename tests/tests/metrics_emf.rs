//! EMF metrics from the receive and consume use cases (against moto and the fake Gemini API) and
//! from the real receiver binary's stdout: every line must be valid Embedded Metric Format, and
//! each outcome must be counted under the right name and reason.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gemini_hooks::adapters::aws::dynamodb_dedupe::DynamoDbDedupeStore;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::adapters::aws::sqs::SqsEventQueue;
use gemini_hooks::adapters::gemini::{GeminiClient, GeminiSettings, RetryPolicy};
use gemini_hooks::adapters::telemetry::{CapturedMetrics, validate_emf};
use gemini_hooks::config::ReceiveLimits;
use gemini_hooks::domain::envelope::{EventSummary, QueueEnvelope, SignatureMode, WebhookEnvelope};
use gemini_hooks::domain::event::Event;
use gemini_hooks::domain::verify::standard::StandardVerifier;
use gemini_hooks::ports::clock::{Clock, ManualClock};
use gemini_hooks::ports::metrics::metric;
use gemini_hooks::usecases::consume::{
    ConsumeSettings, Consumer, InboundMessage, RetrySchedule, failures,
};
use gemini_hooks::usecases::http::handle;
use gemini_hooks::usecases::receive::Receiver;
use gemini_hooks::usecases::routes::Routes;
use gemini_hooks::usecases::verify::WebhookVerifier;
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::delivery::{
    TEST_SECRET, batch_succeeded_body, function_url_event, header_map, signed_headers, test_secret,
};
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, OutputSpec, inline_error, inline_success, operation_json,
};
use gemini_hooks_tests::moto;
use gemini_hooks_tests::runtime_api::{FUNCTION_NAME, RuntimeApi, spawn_function};
use http::Method;
use serde_json::{Value, json};

const T0_MS: i64 = 1_795_000_000_000;

async fn receiver(queue_url: &str, clock: &ManualClock, captured: &CapturedMetrics) -> Receiver {
    let ddb = moto::dynamodb().await;
    let table = moto::unique_name("dedupe");
    moto::create_dedupe_table(&ddb, &table).await;
    Receiver::new(
        Arc::new(WebhookVerifier::new(
            Some(StandardVerifier::new(vec![test_secret()], 300)),
            None,
        )),
        Arc::new(DynamoDbDedupeStore::new(ddb, table)),
        Arc::new(SqsEventQueue::new(moto::sqs().await, queue_url.to_owned())),
        Arc::new(clock.clone()),
        ReceiveLimits::default(),
    )
    .with_metrics(captured.metrics("receiver-fn", Arc::new(clock.clone())))
}

#[tokio::test]
async fn receiver_counts_every_outcome_as_valid_emf() {
    let sqs = moto::sqs().await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("events"), 5, 30).await;
    let clock = ManualClock::at_ms(T0_MS);
    let captured = CapturedMetrics::new();
    let r = receiver(&queue.url, &clock, &captured).await;
    let post = |id: &'static str, body: Vec<u8>, sign_body: Vec<u8>| {
        let headers = signed_headers(&test_secret(), id, clock.now_secs(), &sign_body);
        let r = &r;
        async move {
            handle(r, &Method::POST, &header_map(&headers), &body, None)
                .await
                .status
        }
    };
    let body = batch_succeeded_body("m1");
    assert_eq!(post("msg_m1", body.clone(), body.clone()).await, 200);
    assert_eq!(post("msg_m1", body.clone(), body.clone()).await, 200);
    assert_eq!(post("msg_m2", body.clone(), b"other".to_vec()).await, 401);
    let reply = handle(&r, &Method::GET, &header_map(&[]), b"", None).await;
    assert_eq!(reply.status, 405);

    let docs = captured.documents().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(docs.len(), 4, "one EMF line per request");
    for d in &docs {
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "GeminiHooks"
        );
        assert_eq!(d["Function"], "receiver-fn");
        assert_eq!(d["_aws"]["Timestamp"], T0_MS);
    }
    assert_eq!(captured.sum(metric::DELIVERIES_ACCEPTED, None), 1.0);
    assert_eq!(captured.sum(metric::DELIVERIES_DUPLICATE, None), 1.0);
    assert_eq!(
        captured.sum(metric::DELIVERIES_REJECTED, Some("signature_mismatch")),
        1.0
    );
    assert_eq!(
        captured.sum(metric::DELIVERIES_REJECTED, Some("method_not_allowed")),
        1.0
    );
    assert_eq!(captured.sum(metric::DELIVERIES_REJECTED, None), 2.0);
    assert_eq!(captured.sum(metric::ENQUEUE_FAILURES, None), 0.0);
    // Nothing from the delivery leaks into the metric lines.
    let all = captured.lines().join("\n");
    assert!(!all.contains("m1-results"), "no body content in metrics");
    assert!(!all.contains(TEST_SECRET));
}

#[tokio::test]
async fn receiver_counts_enqueue_failures() {
    let clock = ManualClock::at_ms(T0_MS);
    let captured = CapturedMetrics::new();
    // A queue that does not exist: SendMessage fails, the claim is released, 503.
    let missing = format!(
        "{}/123456789012/{}",
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_default(),
        moto::unique_name("missing")
    );
    let r = receiver(&missing, &clock, &captured).await;
    let body = batch_succeeded_body("m3");
    let headers = signed_headers(&test_secret(), "msg_m3", clock.now_secs(), &body);
    let reply = handle(&r, &Method::POST, &header_map(&headers), &body, None).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    let docs = captured.documents().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["Reason"], "queue_unavailable");
    assert_eq!(docs[0][metric::ENQUEUE_FAILURES], 1);
    assert_eq!(docs[0][metric::DELIVERIES_REJECTED], 1);
}

fn envelope(webhook_id: &str, event: Value) -> String {
    let parsed = Event::from_value(&event, None).unwrap_or_else(|e| panic!("event: {e}"));
    QueueEnvelope::Webhook(WebhookEnvelope {
        webhook_id: webhook_id.to_owned(),
        received_at_ms: T0_MS - 4_000,
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

#[tokio::test]
async fn consumer_counts_rows_jobs_lag_and_failed_messages() {
    let ddb = moto::dynamodb().await;
    let sqs = moto::sqs().await;
    let table = moto::unique_name("results");
    moto::create_results_table(&ddb, &table).await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("events"), 5, 30).await;
    let gemini = FakeGemini::start().await;
    let clock = ManualClock::at_ms(T0_MS);
    let captured = CapturedMetrics::new();
    let mut gs = GeminiSettings::new(FakeGemini::API_KEY);
    gs.base_url = gemini.base_url();
    gs.retry = RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
    };
    let consumer = Arc::new(
        Consumer::new(
            std::sync::Arc::new(GeminiClient::new(gs, reqwest::Client::new())),
            Routes::single(Arc::new(DynamoDbResultsStore::new(ddb, table))),
            Arc::new(SqsEventQueue::new(sqs, queue.url)),
            Arc::new(clock.clone()),
            ConsumeSettings::default(),
        )
        .with_metrics(captured.metrics("consumer-fn", Arc::new(clock.clone()))),
    );
    gemini.put_operation(operation_json(
        "batches/inl",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::Inline(vec![
            inline_success("a", "x"),
            inline_success("b", "y"),
            inline_error("c", 3, "bad"),
        ]),
    ));
    gemini.put_operation(operation_json(
        "batches/bad",
        "BATCH_STATE_FAILED",
        OutputSpec::Error(13, "internal".into()),
    ));
    let messages = vec![
        InboundMessage {
            receive_count: 1,
            id: "1".into(),
            body: envelope(
                "w1",
                json!({"type": "batch.succeeded", "data": {"id": "inl"}}),
            ),
        },
        InboundMessage {
            receive_count: 1,
            id: "2".into(),
            body: envelope(
                "w2",
                json!({"type": "batch.failed", "data": {"id": "bad", "error_message": "x"}}),
            ),
        },
        InboundMessage {
            receive_count: 1,
            id: "3".into(),
            body: "not an envelope".into(),
        },
    ];
    let failed = failures(
        &consumer
            .handle_batch(messages, None, RetrySchedule::LAMBDA)
            .await,
    );
    assert_eq!(failed, vec!["3".to_owned()]);

    let docs = captured.documents().unwrap_or_else(|e| panic!("{e}"));
    assert!(docs.iter().all(|d| d["Function"] == "consumer-fn"));
    assert_eq!(captured.sum(metric::JOBS_SUCCEEDED, None), 1.0);
    assert_eq!(captured.sum(metric::ROWS_INGESTED, None), 3.0);
    assert_eq!(captured.sum(metric::ERROR_ROWS, None), 1.0);
    assert_eq!(captured.sum(metric::MALFORMED_ROWS, None), 0.0);
    assert_eq!(captured.sum(metric::INGEST_LAG, None), 4_000.0);
    assert_eq!(captured.sum(metric::JOBS_FAILED, None), 1.0);
    assert_eq!(captured.sum(metric::MESSAGES_FAILED, Some("poison")), 1.0);
    let lag = docs
        .iter()
        .find(|d| d.get(metric::INGEST_LAG).is_some())
        .unwrap_or_else(|| panic!("no lag line"));
    assert_eq!(lag["job_id"], "batches/inl");
    assert!(
        lag["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .is_some_and(|m| m
                .iter()
                .any(|d| d["Name"] == "IngestLag" && d["Unit"] == "Milliseconds"))
    );

    // A replay changes nothing and counts nothing new.
    let before = captured.lines().len();
    let again = failures(
        &consumer
            .handle_batch(
                vec![InboundMessage {
                    receive_count: 1,
                    id: "4".into(),
                    body: envelope(
                        "w1",
                        json!({"type": "batch.succeeded", "data": {"id": "inl"}}),
                    ),
                }],
                None,
                RetrySchedule::LAMBDA,
            )
            .await,
    );
    assert!(again.is_empty());
    assert_eq!(captured.lines().len(), before);
}

/// The deployed shape: the real binary writes EMF to stdout, named after the Lambda function.
#[tokio::test]
async fn receiver_binary_writes_emf_to_stdout() {
    let ddb = moto::dynamodb().await;
    let sqs = moto::sqs().await;
    let table = moto::unique_name("dedupe");
    moto::create_dedupe_table(&ddb, &table).await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("events"), 5, 30).await;
    let api = RuntimeApi::start().await;
    let env = [
        ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
        ("DEDUPE_TABLE", table),
        ("QUEUE_URL", queue.url.clone()),
    ];
    let function = spawn_function(&bin_path("receiver"), &api, &env).await;
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or_default())
        .unwrap_or_default();
    let body = batch_succeeded_body("emf-bin");
    let headers = signed_headers(&test_secret(), "msg_emf_bin", t, &body);
    let response = api
        .invoke(
            function_url_event("POST", &headers, &body, false),
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|e| panic!("invoke: {e}"));
    assert_eq!(response["statusCode"], 200, "{response}");
    assert!(
        function
            .wait_for_log("DeliveriesAccepted", Duration::from_secs(5))
            .await,
        "{}",
        function.logs()
    );
    let emf: Vec<Value> = function
        .stdout()
        .lines()
        .filter(|l| l.contains("\"_aws\""))
        .map(|l| validate_emf(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(emf.len(), 1, "{}", function.stdout());
    assert_eq!(emf[0]["Function"], FUNCTION_NAME);
    assert_eq!(emf[0][metric::DELIVERIES_ACCEPTED], 1);
    assert!(
        !function.stderr().contains("\"_aws\""),
        "metrics go to stdout"
    );
}
