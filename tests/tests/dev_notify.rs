//! `gemini-hooks dev --notify-url`: the real binary POSTs each finished job's event to a local
//! HTTP server of this test, signed Standard Webhooks style with the secret it printed; a failed
//! POST is retried with the same `webhook-id` and body; a repeated delivery notifies nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes as BodyBytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use gemini_hooks::domain::verify::standard::{SigningSecret, StandardVerifier};
use gemini_hooks_tests::delivery::TEST_SECRET;
use gemini_hooks_tests::fake_gemini::{FakeGemini, OutputSpec, operation_json, sample_results};
use gemini_hooks_tests::local::{DevServer, TempDir, run_cli, wait_until};
use serde_json::Value;

/// One POST the worker received.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Worker {
    received: Arc<Mutex<Vec<Received>>>,
}

impl Worker {
    fn all(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The user's local worker: records every POST; the very first one fails (503).
async fn receive(State(w): State<Worker>, headers: HeaderMap, body: BodyBytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut all = w
        .received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    all.push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: body.to_vec(),
    });
    if all.len() == 1 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn start_worker() -> (String, Worker) {
    let worker = Worker::default();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(worker.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), worker)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

async fn send(url: &str, args: &[&str]) {
    let mut all = vec!["send", "--url", url];
    all.extend_from_slice(args);
    let out = run_cli(&all, &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)]).await;
    assert!(out.stdout.contains("-> 200"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_notifies_each_finished_job_once_signed_with_the_printed_secret() {
    let fake = FakeGemini::start().await;
    fake.put_file("files/notify-ok", Bytes::from(sample_results(6, 0, 0)));
    fake.put_operation(operation_json(
        "batches/notify-ok",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::File("files/notify-ok".into()),
    ));
    fake.put_operation(operation_json(
        "batches/notify-failed",
        "BATCH_STATE_FAILED",
        OutputSpec::Error(3, "the input file contains invalid requests".into()),
    ));
    let (hook, worker) = start_worker().await;
    let dir = TempDir::new("dev-notify");
    let env = [
        ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
        ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
        ("GEMINI_API_BASE_URL", fake.base_url()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dev = DevServer::start(dir.path(), "dev.log", &["--notify-url", &hook], &env).await;

    // The banner prints the secret, and it is the one kept in the data directory.
    let printed = dev
        .banner
        .lines()
        .find(|l| l.trim_start().starts_with("notify"))
        .and_then(|l| l.split("signed with ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no notify line with a secret:\n{}", dev.banner))
        .to_owned();
    let kept = std::fs::read_to_string(dir.join("notify-secret"))
        .unwrap_or_else(|e| panic!("notify-secret: {e}"));
    assert_eq!(kept.trim(), printed);
    let secret = SigningSecret::parse(&printed).unwrap_or_else(|e| panic!("{e}"));
    let verifier = StandardVerifier::new(vec![secret], 300);

    send(
        &dev.url,
        &[
            "batch.succeeded",
            "--job",
            "batches/notify-ok",
            "--id",
            "msg_n1",
        ],
    )
    .await;
    send(
        &dev.url,
        &[
            "batch.failed",
            "--job",
            "batches/notify-failed",
            "--id",
            "msg_n2",
        ],
    )
    .await;
    // Two events; the first POST failed and was retried (after 2 s).
    let received = wait_until("three POSTs", Duration::from_secs(30), || {
        let all = worker.all();
        async move { (all.len() >= 3).then_some(all) }
    })
    .await;
    assert_eq!(received.len(), 3, "{received:#?}\n{}", dev.log());
    assert_eq!(
        (received[2].id.as_str(), received[2].body.as_slice()),
        (received[0].id.as_str(), received[0].body.as_slice()),
        "the retry is the same delivery"
    );
    let mut event_ids = Vec::new();
    for r in &received {
        if let Err(e) = verifier.verify(&r.id, &r.timestamp, &r.signature, &r.body, now_secs()) {
            panic!("{} does not verify with the printed secret: {e}", r.id);
        }
        let event: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (&event["source"], &event["detail-type"], &event["id"]),
            (
                &Value::from("gemini-hooks"),
                &Value::from("Gemini Job Finished"),
                &Value::from(r.id.clone())
            )
        );
        let detail = &event["detail"];
        assert_eq!(detail["results"]["table"], Value::Null, "the default store");
        assert_eq!(
            detail["results"]["pk"],
            format!("JOB#{}", detail["job_id"].as_str().unwrap_or_default())
        );
        match detail["state"].as_str() {
            Some("SUCCEEDED") => assert_eq!(detail["counts"]["rows_ingested"], 6),
            Some("FAILED") => assert_eq!(
                detail["error"]["message"],
                "the input file contains invalid requests"
            ),
            other => panic!("unexpected state {other:?}"),
        }
        event_ids.push(detail["event_id"].as_str().unwrap_or_default().to_owned());
    }
    event_ids.sort();
    event_ids.dedup();
    assert_eq!(
        event_ids,
        vec![
            "batches/notify-failed#FAILED",
            "batches/notify-ok#SUCCEEDED"
        ]
    );

    // Another delivery about a finished job is handled, and notifies nothing.
    send(
        &dev.url,
        &[
            "batch.succeeded",
            "--job",
            "batches/notify-ok",
            "--id",
            "msg_n3",
        ],
    )
    .await;
    wait_until("the repeat to be handled", Duration::from_secs(10), || {
        let log = dev.log();
        async move { log.contains("job already SUCCEEDED").then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(worker.all().len(), 3, "{}", dev.log());
}
