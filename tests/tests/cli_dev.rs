//! `gemini-hooks dev` end to end: the real binary as a process, real HTTP, the SQLite file, and
//! the fake Gemini API: accept, duplicate, forged, stale, reused id, ingest, restart with queued
//! and in-flight work, dead-lettered poison message, dynamic signatures, config errors.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use gemini_hooks_tests::delivery::{TEST_SECRET, signed_headers, test_secret};
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, Fault, OutputSpec, operation_json, sample_results, sample_text, with_stats,
};
use gemini_hooks_tests::jwt::{KEY_1_PEM, KEY_2_PEM};
use gemini_hooks_tests::local::{DevServer, TempDir, run_cli, wait_until};
use serde_json::Value;

const INGEST_TIMEOUT: Duration = Duration::from_secs(40);

fn dir_arg(dir: &Path) -> String {
    dir.to_string_lossy().into_owned()
}

/// Puts a succeeded batch with a results file of `lines` sample lines on the fake.
fn put_succeeded_batch(fake: &FakeGemini, id: &str, lines: u64) {
    let file = format!("files/{}-results", id.trim_start_matches("batches/"));
    let lines_i64 = i64::try_from(lines).unwrap_or(i64::MAX);
    fake.put_operation(with_stats(
        operation_json(id, "BATCH_STATE_SUCCEEDED", OutputSpec::File(file.clone())),
        lines_i64,
        lines_i64,
        0,
    ));
    fake.put_file(&file, Bytes::from(sample_results(lines, 10, 13)));
}

/// `send`; its exit status must be 0 exactly when every answer it printed was 2xx.
async fn send(url: &str, args: &[&str]) -> String {
    let mut all = vec!["send", "--url", url];
    all.extend_from_slice(args);
    let out = run_cli(&all, &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)]).await;
    let statuses: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("-> "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    assert!(!statuses.is_empty(), "no answer printed:\n{}", out.stdout);
    let all_2xx = statuses.iter().all(|s| s.starts_with('2'));
    out.expect_code(if all_2xx { 0 } else { 1 }).stdout
}

/// `results --job <id> --json` once the job reached `state`.
async fn wait_for_job(dir: &Path, job: &str, state: &str) -> Value {
    let d = dir_arg(dir);
    wait_until(&format!("{job} to be {state}"), INGEST_TIMEOUT, || {
        let d = d.clone();
        async move {
            let out = run_cli(&["results", "--data-dir", &d, "--job", job, "--json"], &[]).await;
            if out.code != 0 {
                return None;
            }
            let v: Value = serde_json::from_str(&out.stdout).ok()?;
            (v["job"]["state"] == state).then_some(v)
        }
    })
    .await
}

fn env_for(fake: &FakeGemini) -> Vec<(&'static str, String)> {
    vec![
        ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
        ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
        ("GEMINI_API_BASE_URL", fake.base_url()),
    ]
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_receives_dedupes_rejects_and_ingests() {
    let fake = FakeGemini::start().await;
    put_succeeded_batch(&fake, "batches/cli-ok", 40);
    fake.put_operation(operation_json(
        "batches/cli-failed",
        "BATCH_STATE_FAILED",
        OutputSpec::Error(3, "the input file contains invalid requests".into()),
    ));
    let dir = TempDir::new("cli-dev");
    let env = env_for(&fake);
    let dev = DevServer::start(dir.path(), "dev.log", &[], &as_refs(&env)).await;
    assert!(dev.banner.contains("1 static secret(s)"), "{}", dev.banner);

    // First delivery accepted, the retry (same id and body) is a duplicate.
    let out = send(
        &dev.url,
        &[
            "batch.succeeded",
            "--job",
            "batches/cli-ok",
            "--id",
            "msg_cli_1",
            "--duplicate",
        ],
    )
    .await;
    assert!(
        out.contains(r#"-> 200 {"status":"accepted","webhook_id":"msg_cli_1"}"#),
        "{out}"
    );
    assert!(
        out.contains(r#"-> 200 {"status":"duplicate","webhook_id":"msg_cli_1"}"#),
        "{out}"
    );

    // Forged, stale and reused-id deliveries are refused with the contract's statuses.
    let out = send(&dev.url, &["--wrong-signature", "--job", "batches/cli-ok"]).await;
    assert!(
        out.contains(r#"-> 401 {"error":"signature_mismatch""#),
        "{out}"
    );
    let out = send(
        &dev.url,
        &["--stale-timestamp", "900", "--job", "batches/cli-ok"],
    )
    .await;
    assert!(
        out.contains(r#"-> 401 {"error":"timestamp_too_old""#),
        "{out}"
    );
    let out = send(
        &dev.url,
        &[
            "batch.failed",
            "--job",
            "batches/cli-ok",
            "--id",
            "msg_cli_1",
        ],
    )
    .await;
    // Answered as a duplicate (a 4xx would only make Gemini retry for a day); nothing queued.
    assert!(
        out.contains(r#"-> 200 {"status":"duplicate","webhook_id":"msg_cli_1"}"#),
        "{out}"
    );

    // Only POST is a delivery.
    let get = reqwest::get(&dev.url)
        .await
        .unwrap_or_else(|e| panic!("GET: {e}"));
    assert_eq!(get.status(), 405);
    assert_eq!(
        get.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );

    let out = send(&dev.url, &["batch.failed", "--job", "batches/cli-failed"]).await;
    assert!(out.contains(r#"-> 200 {"status":"accepted""#), "{out}");

    // The consumer ingests every line of the results file, once.
    let v = wait_for_job(dir.path(), "batches/cli-ok", "SUCCEEDED").await;
    assert_eq!(v["total_rows"], 40, "{v}");
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 40);
    let first = rows
        .iter()
        .find(|r| r["key"] == "req-1")
        .cloned()
        .unwrap_or_default();
    assert_eq!(first["status"], "ok");
    assert_eq!(first["text"], sample_text(1));
    assert_eq!(v["job"]["counts"]["rows_ingested"], 40);
    assert_eq!(v["job"]["last_webhook_id"], "msg_cli_1");
    assert_eq!(
        fake.requests_to("/v1beta/batches/cli-ok").len(),
        1,
        "the duplicate and the refused deliveries must not reach the consumer"
    );
    assert!(fake.requests().iter().all(|r| r.authorized));

    let v = wait_for_job(dir.path(), "batches/cli-failed", "FAILED").await;
    assert_eq!(v["job"]["error"]["code"], "3", "{v}");

    let table = run_cli(&["results", "--data-dir", &dir_arg(dir.path())], &[])
        .await
        .expect_code(0)
        .stdout;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("batches/cli-ok") && l.contains("SUCCEEDED")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("batches/cli-failed") && l.contains("FAILED")),
        "{table}"
    );

    // The log never carries the secret; SIGTERM stops it cleanly.
    let log = dev.log();
    assert!(log.contains("delivery accepted"), "{log}");
    assert!(
        !log.contains(TEST_SECRET.trim_start_matches("whsec_")),
        "secret in the log"
    );
    assert_eq!(dev.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_and_in_flight_work_survive_a_killed_process() {
    let fake = FakeGemini::start().await;
    put_succeeded_batch(&fake, "batches/cli-r1", 12);
    put_succeeded_batch(&fake, "batches/cli-r2", 12);
    let dir = TempDir::new("cli-restart");
    let d = dir_arg(dir.path());
    let env = env_for(&fake);

    // 1. Received and queued while the consumer is off, then the process dies.
    let dev = DevServer::start(dir.path(), "dev-1.log", &["--receive-only"], &as_refs(&env)).await;
    assert!(dev.banner.contains("--receive-only"), "{}", dev.banner);
    let out = send(&dev.url, &["--job", "batches/cli-r1"]).await;
    assert!(out.contains("-> 200"), "{out}");
    dev.kill().await;
    let jobs = run_cli(&["results", "--data-dir", &d, "--json"], &[])
        .await
        .expect_code(0);
    assert_eq!(jobs.stdout.trim(), "[]", "nothing consumed yet");

    // 2. The next run finds the queued message and ingests it.
    let dev = DevServer::start(dir.path(), "dev-2.log", &[], &as_refs(&env)).await;
    assert!(dev.banner.contains("(1 queued"), "{}", dev.banner);
    let v = wait_for_job(dir.path(), "batches/cli-r1", "SUCCEEDED").await;
    assert_eq!(v["total_rows"], 12);

    // 3. A message in flight when the process is killed is retried at once by the next run,
    //    not after its 300 s visibility timeout.
    fake.inject(
        "/v1beta/batches/cli-r2",
        vec![Fault::Delay(Duration::from_secs(120))],
    );
    let out = send(&dev.url, &["--job", "batches/cli-r2"]).await;
    assert!(out.contains("-> 200"), "{out}");
    wait_until("the consumer to ask for cli-r2", INGEST_TIMEOUT, || async {
        (!fake.requests_to("/v1beta/batches/cli-r2").is_empty()).then_some(())
    })
    .await;
    dev.kill().await;
    let dev = DevServer::start(dir.path(), "dev-3.log", &[], &as_refs(&env)).await;
    assert!(
        dev.banner.contains("1 resumed from the last run"),
        "{}",
        dev.banner
    );
    let v = wait_for_job(dir.path(), "batches/cli-r2", "SUCCEEDED").await;
    assert_eq!(v["total_rows"], 12);
    assert_eq!(
        v["job"]["counts"]["rows_ingested"], 12,
        "a retried ingest must not double count"
    );
    assert_eq!(dev.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_is_dead_lettered_and_the_queue_moves_on() {
    let fake = FakeGemini::start().await;
    put_succeeded_batch(&fake, "batches/cli-after-poison", 5);
    let dir = TempDir::new("cli-poison");
    let d = dir_arg(dir.path());
    let env = env_for(&fake);
    let dev = DevServer::start(
        dir.path(),
        "dev.log",
        &["--max-receive-count", "2"],
        &as_refs(&env),
    )
    .await;

    // A valid, signed event the consumer can never handle: the API refuses our key for it (a
    // retry cannot help; an event naming no job would be acknowledged as unconfirmed instead).
    fake.inject("/v1beta/batches/cli-poison", vec![Fault::Status(401); 10]);
    let out = send(
        &dev.url,
        &["--job", "batches/cli-poison", "--id", "msg_poison"],
    )
    .await;
    assert!(out.contains("-> 200"), "{out}");

    let dead = wait_until(
        "the poison message to be dead-lettered",
        INGEST_TIMEOUT,
        || {
            let d = d.clone();
            async move {
                let out = run_cli(
                    &["results", "--data-dir", &d, "--dead-letters", "--json"],
                    &[],
                )
                .await;
                let v: Value = serde_json::from_str(&out.stdout).ok()?;
                v.as_array().filter(|a| !a.is_empty()).cloned()
            }
        },
    )
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["receive_count"], 2, "{dead:?}");
    assert_eq!(dead[0]["body"]["webhook_id"], "msg_poison");
    assert_eq!(dead[0]["attributes"]["event_type"], "batch.succeeded");
    let table = run_cli(&["results", "--data-dir", &d, "--dead-letters"], &[])
        .await
        .expect_code(0)
        .stdout;
    assert!(
        table.contains("batch.succeeded") && table.contains("2"),
        "{table}"
    );

    // The queue is not blocked: the next delivery is ingested.
    send(&dev.url, &["--job", "batches/cli-after-poison"]).await;
    wait_for_job(dir.path(), "batches/cli-after-poison", "SUCCEEDED").await;
    let log = dev.log();
    assert!(log.contains("cannot be handled"), "{log}");
    assert!(log.contains("dead-lettered"), "{log}");
    dev.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_deliveries_verify_against_the_local_jwks() {
    let dir = TempDir::new("cli-dynamic");
    let d = dir_arg(dir.path());
    // Use a fixture key instead of generating one (faster, and known to the test).
    std::fs::write(dir.join("dynamic-signing-key.pem"), KEY_1_PEM)
        .unwrap_or_else(|e| panic!("{e}"));
    let dev = DevServer::start(
        dir.path(),
        "dev.log",
        &["--receive-only", "--local-jwks"],
        &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)],
    )
    .await;

    // What `jwks` prints is what `dev --local-jwks` serves.
    let printed: Value = serde_json::from_str(
        &run_cli(&["jwks", "--data-dir", &d], &[])
            .await
            .expect_code(0)
            .stdout,
    )
    .unwrap_or_else(|e| panic!("jwks output: {e}"));
    let served: Value = reqwest::get(format!("{}.well-known/jwks.json", dev.url))
        .await
        .unwrap_or_else(|e| panic!("GET jwks: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("jwks JSON: {e}"));
    assert_eq!(printed, served);
    assert_eq!(served["keys"][0]["alg"], "RS256");

    let out = send(&dev.url, &["--dynamic", "--data-dir", &d]).await;
    assert!(
        out.contains("(dynamic signature)") && out.contains(r#"-> 200 {"status":"accepted""#),
        "{out}"
    );
    let out = send(
        &dev.url,
        &["--dynamic", "--data-dir", &d, "--wrong-signature"],
    )
    .await;
    assert!(out.contains(r#"-> 401 {"error":"invalid_jwt""#), "{out}");
    let out = send(
        &dev.url,
        &["--dynamic", "--data-dir", &d, "--stale-timestamp", "1000"],
    )
    .await;
    assert!(out.contains(r#"-> 401 {"error":"jwt_expired""#), "{out}");
    let other = dir.join("other.pem");
    std::fs::write(&other, KEY_2_PEM).unwrap_or_else(|e| panic!("{e}"));
    let out = send(&dev.url, &["--key", &other.to_string_lossy()]).await;
    assert!(
        out.contains(r#"-> 401 {"error":"jwt_unknown_kid""#),
        "{out}"
    );
    dev.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_answers_the_http_contract_for_bad_requests() {
    let dir = TempDir::new("cli-http");
    let dev = DevServer::start(
        dir.path(),
        "dev.log",
        &["--receive-only", "--log-json"],
        &[
            ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET),
            ("WEBHOOK_MAX_BODY_BYTES", "2000"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let big = client
        .post(&dev.url)
        .body(vec![b'x'; 5000])
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST: {e}"));
    assert_eq!(big.status(), 413);
    let bare = client
        .post(format!("{}any/path", dev.url))
        .body(r#"{"type":"batch.succeeded"}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST: {e}"));
    assert_eq!(bare.status(), 400);
    let body: Value = bare.json().await.unwrap_or_default();
    assert_eq!(body["error"], "missing_header");

    // --log-json: every log line is a JSON object, one outcome line per request.
    let log = dev.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["status"] == 413), "{log}");
    assert!(
        lines.iter().any(|l| l["outcome"] == "missing_header"),
        "{log}"
    );
    dev.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_ingest_reports_progress() {
    let fake = FakeGemini::start().await;
    put_succeeded_batch(&fake, "batches/cli-slow", 30);
    // The results file answers only after 7 s: long enough for a progress line.
    fake.inject(
        "cli-slow-results",
        vec![Fault::Delay(Duration::from_secs(7))],
    );
    let dir = TempDir::new("cli-progress");
    let env = env_for(&fake);
    let dev = DevServer::start(dir.path(), "dev.log", &[], &as_refs(&env)).await;
    send(&dev.url, &["--job", "batches/cli-slow"]).await;
    let v = wait_for_job(dir.path(), "batches/cli-slow", "SUCCEEDED").await;
    assert_eq!(v["total_rows"], 30);
    let log = dev.log();
    assert!(
        log.lines()
            .any(|l| l.contains("still ingesting") && l.contains("batches/cli-slow")),
        "{log}"
    );
    dev.kill().await;
}

#[tokio::test]
async fn dev_refuses_to_start_without_required_configuration() {
    let dir = TempDir::new("cli-config");
    let d = dir_arg(dir.path());
    let out = run_cli(&["dev", "--addr", "127.0.0.1:0", "--data-dir", &d], &[])
        .await
        .expect_code(2);
    assert!(
        out.stderr.contains("WEBHOOK_SIGNING_SECRETS"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("gemini-hooks secret"), "{}", out.stderr);

    let out = run_cli(
        &["dev", "--addr", "127.0.0.1:0", "--data-dir", &d],
        &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)],
    )
    .await
    .expect_code(2);
    assert!(out.stderr.contains("GEMINI_API_KEY"), "{}", out.stderr);
    assert!(out.stderr.contains("--receive-only"), "{}", out.stderr);

    let out = run_cli(
        &["dev", "--addr", "127.0.0.1:0", "--data-dir", &d],
        &[("WEBHOOK_SIGNING_SECRETS", "whsec_c2hvcnQ=")],
    )
    .await
    .expect_code(2);
    assert!(
        out.stderr.contains("WEBHOOK_SIGNING_SECRETS"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("c2hvcnQ"),
        "never echo the secret: {}",
        out.stderr
    );
}

/// 100 clients that open a connection and send half a request: `dev` serves at most 64
/// connections at once, cuts each stalled one after its header or body timeout (10 s each), and
/// a genuine delivery queued behind them still gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_cut_and_do_not_starve_real_deliveries() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = TempDir::new("cli-slowloris");
    let dev = DevServer::start(
        dir.path(),
        "dev.log",
        &["--receive-only"],
        &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)],
    )
    .await;
    let addr = dev
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stalled = Vec::new();
    for i in 0..100 {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .unwrap_or_else(|e| panic!("connect {i}: {e}"));
        // Headers without their end, or headers promising a body that never comes.
        let partial: &[u8] = if i % 2 == 0 {
            b"POST / HTTP/1.1\r\nhost: x\r\n"
        } else {
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{"
        };
        s.write_all(partial)
            .await
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
        stalled.push(s);
    }
    let started = std::time::Instant::now();
    let body = br#"{"type":"batch.succeeded","data":{"id":"slow"}}"#;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
    .unwrap_or(0);
    let headers = signed_headers(&test_secret(), "msg_slow", now, body);
    let mut req = reqwest::Client::new().post(&dev.url).body(body.to_vec());
    for (name, value) in &headers {
        req = req.header(name.as_str(), value.as_str());
    }
    let answer = tokio::time::timeout(Duration::from_secs(60), req.send())
        .await
        .unwrap_or_else(|_| panic!("no answer within 60 s\n{}", dev.log()))
        .unwrap_or_else(|e| panic!("POST: {e}"));
    assert_eq!(answer.status(), 200, "{}", dev.log());
    // Every stalled connection is closed by the server (EOF or reset), none held for good.
    let mut closed = 0;
    for mut s in stalled {
        let mut buf = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(45), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        closed += usize::from(read.is_ok());
    }
    assert_eq!(closed, 100, "stalled connections closed by dev");
    assert!(started.elapsed() < Duration::from_secs(120));
    dev.kill().await;
}
