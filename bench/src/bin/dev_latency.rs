//! Local end-to-end latency (issue 6 item 8): delivery accepted → ingestion started, through the
//! real release `gemini-hooks dev` process (receiver + consumer on SQLite) and an in-process
//! fake Gemini API (`gemini_hooks_tests::fake_gemini::FakeGemini`).
//!
//! `dev_latency [--deliveries 50] [--lines 10]`
//!
//! Each delivery is a `batch.succeeded` for a job of its own (the fake serves its operation and a
//! results file of `--lines` lines), signed with the Standard Webhooks test secret and POSTed
//! with reqwest. The clock starts when the POST's 200 arrives and stops when the job record in
//! the dev SQLite file, read with `SqliteStore::load_job` every millisecond, is first seen in
//! `INGESTING` or already `SUCCEEDED` (a small file can be ingested between two polls), so the
//! figure includes up to ~1 ms of polling slack plus a SQLite read. The next delivery is sent only
//! once the previous job reached `SUCCEEDED`, so each one meets an idle pipeline.
//! The dev process's own stamps (`created_at_ms - event_received_at_ms`, ms resolution) are
//! reported alongside as a cross-check that needs no polling.

#![allow(clippy::print_stdout)] // a benchmark's job is to print its table

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gemini_hooks::adapters::sqlite::{DB_FILE_NAME, SqliteStore};
use gemini_hooks::domain::jobs::{JobRecord, JobState};
use gemini_hooks::ports::ResultsStore;
use gemini_hooks_bench::{Args, BenchError, quantile, render_table};
use gemini_hooks_tests::delivery::{
    TEST_SECRET, batch_succeeded_body, signed_headers, test_secret,
};
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, OutputSpec, operation_json, sample_results, with_stats,
};
use gemini_hooks_tests::local::{DevServer, TempDir};

const LIMIT: Duration = Duration::from_secs(30);

fn main() {
    if let Err(e) = run() {
        eprintln!("dev_latency: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), BenchError> {
    let args = Args::from_env()?;
    let deliveries = usize::try_from(args.number("deliveries", 50)?)
        .unwrap_or(50)
        .max(1);
    let lines = args.number("lines", 10)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("starting the tokio runtime"))?;
    rt.block_on(measure(deliveries, lines))
}

async fn measure(deliveries: usize, lines: u64) -> Result<(), BenchError> {
    let fake = FakeGemini::start().await;
    let dir = TempDir::new("bench-dev-latency");
    let env = [
        ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
        ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
        ("GEMINI_API_BASE_URL", fake.base_url()),
    ];
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dev = DevServer::start(dir.path(), "dev.log", &[], &env_refs).await;
    let store = SqliteStore::open(dir.path().join(DB_FILE_NAME))
        .map_err(|e| BenchError::Failed(format!("opening the dev store: {e}")))?;
    let http = reqwest::Client::new();
    let secret = test_secret();
    let lines_i64 = i64::try_from(lines).unwrap_or(i64::MAX);

    let mut polled_ms = Vec::with_capacity(deliveries);
    let mut stamped_ms = Vec::with_capacity(deliveries);
    for i in 0..deliveries {
        let job = format!("batches/devlat{i}");
        let file = format!("files/devlat{i}-results");
        fake.put_operation(with_stats(
            operation_json(
                &job,
                "BATCH_STATE_SUCCEEDED",
                OutputSpec::File(file.clone()),
            ),
            lines_i64,
            lines_i64,
            0,
        ));
        fake.put_file(&file, Bytes::from(sample_results(lines, 10, 13)));

        let body = batch_succeeded_body(&job);
        let headers = signed_headers(&secret, &format!("msg_devlat_{i}"), now_s(), &body);
        let mut req = http.post(&dev.url).body(body);
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| BenchError::Failed(format!("POST to dev: {e}")))?;
        let accepted = Instant::now();
        if resp.status() != reqwest::StatusCode::OK {
            return Err(BenchError::Failed(format!(
                "delivery {i} answered {}",
                resp.status()
            )));
        }
        let started = wait_for(&store, &job, |s| {
            matches!(s, JobState::Ingesting | JobState::Succeeded)
        })
        .await
        .map_err(|e| with_log(e, dir.path()))?;
        polled_ms.push(accepted.elapsed().as_secs_f64() * 1e3);
        let done = wait_for(&store, &job, |s| matches!(s, JobState::Succeeded))
            .await
            .map_err(|e| with_log(e, dir.path()))?;
        if let Some(received) = done.event_received_at_ms.or(started.event_received_at_ms) {
            stamped_ms.push((done.created_at_ms - received) as f64);
        }
    }
    dev.kill().await;

    let row = |name: &str, s: &[f64]| {
        vec![
            name.to_owned(),
            s.len().to_string(),
            format!("{:.1}", quantile(s, 0.5)),
            format!("{:.1}", quantile(s, 0.99)),
            format!("{:.1}", quantile(s, 1.0)),
        ]
    };
    println!(
        "{}",
        render_table(
            &["measured", "n", "p50 ms", "p99 ms", "max ms"],
            1,
            &[
                row(
                    "POST 200 → job seen INGESTING/SUCCEEDED (1 ms polls)",
                    &polled_ms
                ),
                row("dev stamps: job created − delivery received", &stamped_ms),
            ],
        )
    );
    Ok(())
}

fn with_log(e: BenchError, dir: &Path) -> BenchError {
    let log = std::fs::read_to_string(dir.join("dev.log")).unwrap_or_default();
    BenchError::Failed(format!("{e}\n--- dev log\n{log}"))
}

/// Polls the job record every millisecond until `done(state)` holds.
async fn wait_for(
    store: &SqliteStore,
    job: &str,
    done: impl Fn(JobState) -> bool,
) -> Result<JobRecord, BenchError> {
    let end = Instant::now() + LIMIT;
    loop {
        let rec = store
            .load_job(job)
            .await
            .map_err(|e| BenchError::Failed(format!("reading {job}: {e}")))?;
        if let Some(r) = rec
            && done(r.state)
        {
            return Ok(r);
        }
        if Instant::now() >= end {
            return Err(BenchError::Failed(format!(
                "{job} did not reach the expected state within {LIMIT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
