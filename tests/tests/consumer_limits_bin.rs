//! The time and speed limits of issue 11 through the real `consumer` and `receiver` binaries
//! (fake Lambda Runtime API, moto, fake Gemini): writes pipelined as configured, seen by a proxy
//! in front of moto's DynamoDB; a hung Gemini call that fails its message in time for the
//! invocation to answer before its deadline; and a receiver whose DynamoDB never answers
//! replying 503 well inside its 10 s timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes as AxumBytes;
use axum::extract::State;
use axum::response::IntoResponse;
use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::domain::envelope::{EventSummary, QueueEnvelope, SignatureMode, WebhookEnvelope};
use gemini_hooks::domain::event::Event;
use gemini_hooks::ports::ResultsStore;
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::delivery::{TEST_SECRET, function_url_event, signed_headers, test_secret};
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, Fault, OutputSpec, operation_json, sample_results,
};
use gemini_hooks_tests::moto::{self, TestQueue};
use gemini_hooks_tests::runtime_api::{
    FunctionProcess, RuntimeApi, failed_ids, spawn_function, sqs_record,
};
use serde_json::{Value, json};

/// A proxy in front of moto that holds every DynamoDB request 10 ms (DynamoDB's in-region
/// latency) and counts how many `BatchWriteItem` calls are in flight at once.
#[derive(Clone)]
struct Proxy {
    upstream: String,
    client: reqwest::Client,
    active: Arc<AtomicUsize>,
    max_active: Arc<AtomicUsize>,
    batch_writes: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start() -> (Self, String) {
        let upstream = std::env::var("AWS_ENDPOINT_URL")
            .unwrap_or_else(|_| panic!("AWS_ENDPOINT_URL (moto) is not set"));
        let proxy = Self {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            active: Arc::default(),
            max_active: Arc::default(),
            batch_writes: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (proxy, format!("http://{addr}"))
    }
}

async fn forward(
    State(proxy): State<Proxy>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: AxumBytes,
) -> axum::response::Response {
    let batch = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.ends_with(".BatchWriteItem"));
    if batch {
        proxy.batch_writes.fetch_add(1, Ordering::SeqCst);
        let now = proxy.active.fetch_add(1, Ordering::SeqCst) + 1;
        proxy.max_active.fetch_max(now, Ordering::SeqCst);
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut req = proxy
        .client
        .request(method, format!("{}{}", proxy.upstream, uri))
        .body(body.to_vec());
    for (name, value) in &headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            req = req.header(name, value);
        }
    }
    let answer = req.send().await;
    if batch {
        proxy.active.fetch_sub(1, Ordering::SeqCst);
    }
    match answer {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            let body = r.bytes().await.unwrap_or_default();
            let mut response = (status, body).into_response();
            for (name, value) in &headers {
                if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(e) => (http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

struct Consumer {
    results: String,
    queue: TestQueue,
    api: RuntimeApi,
    process: FunctionProcess,
    gemini: FakeGemini,
    ddb: aws_sdk_dynamodb::Client,
}

impl Consumer {
    async fn start(extra: &[(&'static str, String)]) -> Self {
        let ddb = moto::dynamodb().await;
        let sqs = moto::sqs().await;
        let results = moto::unique_name("limits-results");
        moto::create_results_table(&ddb, &results).await;
        let queue = moto::create_queue(&sqs, &moto::unique_name("limits-events"), 5, 30).await;
        let gemini = FakeGemini::start().await;
        let api = RuntimeApi::start().await;
        let mut env = vec![
            ("RESULTS_TABLE", results.clone()),
            ("ROUTES", String::new()),
            ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
            ("GEMINI_API_BASE_URL", gemini.base_url()),
            ("QUEUE_URL", queue.url.clone()),
        ];
        env.extend(extra.iter().cloned());
        let process = spawn_function(&bin_path("consumer"), &api, &env).await;
        Self {
            results,
            queue,
            api,
            process,
            gemini,
            ddb,
        }
    }

    fn batch(&self, id: &str, lines: u64) {
        let file = format!("files/{id}");
        self.gemini
            .put_file(&file, Bytes::from(sample_results(lines, 0, 0)));
        self.gemini.put_operation(operation_json(
            &format!("batches/{id}"),
            "BATCH_STATE_SUCCEEDED",
            OutputSpec::File(file),
        ));
    }

    /// One SQS record per batch id; returns the ids of failed records.
    async fn invoke(&self, ids: &[&str], deadline: Duration) -> Vec<String> {
        let records: Vec<Value> = ids
            .iter()
            .map(|id| {
                let event = json!({"type": "batch.succeeded", "data": {"id": id}});
                let parsed =
                    Event::from_value(&event, None).unwrap_or_else(|e| panic!("event: {e}"));
                let body = QueueEnvelope::Webhook(WebhookEnvelope {
                    webhook_id: format!("msg-{id}"),
                    received_at_ms: 1_795_000_000_000,
                    signature_mode: SignatureMode::Static,
                    bound: true,
                    event: EventSummary::from(&parsed),
                    raw_event: event,
                    user_metadata: None,
                })
                .to_message()
                .unwrap_or_else(|e| panic!("envelope: {e}"))
                .body;
                sqs_record(&format!("m-{id}"), &body, &self.queue.arn)
            })
            .collect();
        let response = self
            .api
            .invoke(json!({ "Records": records }), deadline)
            .await
            .unwrap_or_else(|e| panic!("consumer: {e}\n{}", self.process.logs()));
        failed_ids(&response)
    }

    async fn rows(&self, id: &str) -> u64 {
        DynamoDbResultsStore::new(self.ddb.clone(), self.results.clone())
            .count_rows(&format!("batches/{id}"))
            .await
            .unwrap_or_else(|e| panic!("count_rows: {e}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_consumer_binary_keeps_the_configured_writes_in_flight() {
    let (proxy, url) = Proxy::start().await;
    let c = Consumer::start(&[
        ("AWS_ENDPOINT_URL_DYNAMODB", url),
        ("CONSUMER_WRITES_IN_FLIGHT", "4".to_owned()),
    ])
    .await;
    c.batch("piped", 1_000);
    let failed = c.invoke(&["piped"], Duration::from_secs(120)).await;
    assert!(failed.is_empty(), "{failed:?}\n{}", c.process.logs());
    assert_eq!(c.rows("piped").await, 1_000);
    assert_eq!(
        (
            proxy.max_active.load(Ordering::SeqCst),
            proxy.batch_writes.load(Ordering::SeqCst)
        ),
        (4, 40),
        "BatchWriteItem calls in flight at once, and in all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_batches_get_fails_only_its_message_before_the_deadline() {
    let c = Consumer::start(&[]).await;
    c.batch("hung", 10);
    c.batch("fine", 10);
    c.gemini
        .inject("batches/hung", vec![Fault::Delay(Duration::from_secs(120))]);
    let deadline = Duration::from_secs(12);
    let started = Instant::now();
    let failed = c.invoke(&["hung", "fine"], deadline).await;
    let took = started.elapsed();
    assert_eq!(failed, vec!["m-hung".to_owned()], "{}", c.process.logs());
    assert!(took < deadline, "answered after {took:?} of {deadline:?}");
    assert_eq!(c.rows("fine").await, 10);
    assert!(
        c.process.logs().contains("out_of_time"),
        "{}",
        c.process.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_whose_dynamodb_never_answers_replies_503_in_time() {
    // Accepts connections and never answers a byte.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let hole_url = format!(
        "http://{}",
        hole.local_addr().unwrap_or_else(|e| panic!("addr: {e}"))
    );
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    let sqs = moto::sqs().await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("hole-events"), 5, 30).await;
    let api = RuntimeApi::start().await;
    let process = spawn_function(
        &bin_path("receiver"),
        &api,
        &[
            ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
            ("DEDUPE_TABLE", "hole-dedupe".to_owned()),
            ("QUEUE_URL", queue.url.clone()),
            ("AWS_ENDPOINT_URL_DYNAMODB", hole_url),
        ],
    )
    .await;
    let body = br#"{"type":"batch.succeeded","data":{"id":"hole"}}"#;
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
    .unwrap_or(0);
    let headers = signed_headers(&test_secret(), "msg_hole", now, body);
    let started = Instant::now();
    let reply = api
        .invoke(
            function_url_event("POST", &headers, body, false),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("receiver: {e}\n{}", process.logs()));
    let took = started.elapsed();
    assert_eq!(reply["statusCode"], 503, "{reply}\n{}", process.logs());
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert!(
        moto::drain(&sqs, &queue.url).await.is_empty(),
        "nothing enqueued"
    );
}
