//! Receiver cold start and per-invocation time (issue 6 item 6), the real release `receiver`
//! binary against a Python receiver Lambda (`bench/python/receiver_lambda.py` under
//! `awslambdaric`), both under the same local Lambda Runtime API stand-in
//! (`gemini_hooks_tests::runtime_api`), both backed by the same moto server.
//!
//! `coldstart [--runs 10] [--invocations 200] [--python PATH --script-dir bench/python]`
//!
//! Needs `AWS_ENDPOINT_URL` pointing at a moto server (scripts/bench.sh starts one). Per
//! contender and run: a fresh Runtime API, spawn the function, and time
//!
//! * **cold start**: spawn → first `GET /runtime/invocation/next` (the function finished its
//!   init: config, SDK clients; Lambda bills this as Init Duration),
//! * **first invoke**: the first delivery's round trip (lazy work such as the first TCP
//!   connection to DynamoDB/SQS lands here),
//!
//! then, on the last run's warm process, `--invocations` fresh signed deliveries one after
//! another, each timed from queueing the invocation to the function posting its response. All
//! AWS calls go to moto (Python, local), which dominates the per-invocation figures; the
//! difference between the two contenders is the meaningful part.

#![allow(clippy::print_stdout)] // a benchmark's job is to print its table

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gemini_hooks_bench::{Args, BenchError, quantile, render_table};
use gemini_hooks_tests::delivery::{
    TEST_SECRET, batch_succeeded_body, function_url_event, signed_headers, test_secret,
};
use gemini_hooks_tests::moto;
use gemini_hooks_tests::runtime_api::{FunctionProcess, RuntimeApi, spawn_function};
use serde_json::Value;

/// How long a function may take to reach `/next` or to answer one invocation.
const LIMIT: Duration = Duration::from_secs(30);

fn main() {
    if let Err(e) = run() {
        eprintln!("coldstart: {e}");
        std::process::exit(1);
    }
}

/// One contender: how to start it.
struct Contender {
    name: String,
    /// Executable handed to `spawn_function` (for Python, a generated bootstrap script).
    bin: PathBuf,
    extra_env: Vec<(&'static str, String)>,
}

#[derive(Default)]
struct Measured {
    cold_ms: Vec<f64>,
    first_invoke_ms: Vec<f64>,
    warm_ms: Vec<f64>,
}

fn run() -> Result<(), BenchError> {
    let args = Args::from_env()?;
    let runs = usize::try_from(args.number("runs", 10)?)
        .unwrap_or(10)
        .max(1);
    let invocations = usize::try_from(args.number("invocations", 200)?)
        .unwrap_or(200)
        .max(1);
    if std::env::var_os("AWS_ENDPOINT_URL").is_none_or(|v| v.is_empty()) {
        return Err(BenchError::Usage(
            "AWS_ENDPOINT_URL must point at a moto server (scripts/bench.sh --only coldstart starts one)"
                .into(),
        ));
    }
    let receiver = match args.get("receiver") {
        Some(p) => PathBuf::from(p),
        None => sibling("receiver")?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("starting the tokio runtime"))?;
    rt.block_on(async {
        let mut contenders = vec![Contender {
            name: "rust receiver (release)".into(),
            bin: receiver,
            extra_env: Vec::new(),
        }];
        if let Some(python) = args.get("python") {
            let script_dir = std::fs::canonicalize(args.get_or("script-dir", "bench/python"))
                .map_err(BenchError::io("resolving --script-dir"))?;
            let work = PathBuf::from(args.get_or("dir", "target/bench/coldstart"));
            contenders.push(Contender {
                name: "python awslambdaric + boto3".into(),
                bin: python_bootstrap(&work, Path::new(python))?,
                extra_env: vec![
                    ("LAMBDA_TASK_ROOT", script_dir.display().to_string()),
                    ("PYTHONPATH", script_dir.display().to_string()),
                ],
            });
        }
        let mut rows = Vec::new();
        for c in &contenders {
            eprintln!(
                "{}: {runs} cold starts, then {invocations} warm invocations",
                c.name
            );
            let m = measure(c, runs, invocations).await?;
            rows.push(row(&c.name, &m));
        }
        println!(
            "{}",
            render_table(
                &[
                    "contender",
                    "cold start p50 ms",
                    "cold start p90 ms",
                    "first invoke p50 ms",
                    "warm invoke p50 ms",
                    "warm invoke p99 ms",
                ],
                1,
                &rows,
            )
        );
        println!(
            "cold start = spawn → first /next poll ({runs} runs each); first invoke = the first \
             delivery's round trip after that; warm = {invocations} fresh signed deliveries \
             (verify, conditional PutItem, SendMessage, UpdateItem against moto) through the \
             Runtime API stand-in."
        );
        Ok(())
    })
}

fn row(name: &str, m: &Measured) -> Vec<String> {
    vec![
        name.to_owned(),
        format!("{:.1}", quantile(&m.cold_ms, 0.5)),
        format!("{:.1}", quantile(&m.cold_ms, 0.9)),
        format!("{:.1}", quantile(&m.first_invoke_ms, 0.5)),
        format!("{:.2}", quantile(&m.warm_ms, 0.5)),
        format!("{:.2}", quantile(&m.warm_ms, 0.99)),
    ]
}

/// A binary next to this one (`target/release/receiver` beside `target/release/coldstart`).
fn sibling(name: &str) -> Result<PathBuf, BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::io("locating this executable"))?;
    let path = exe.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(BenchError::Failed(format!(
            "{} not found; build it with `cargo build --release -p receiver`",
            path.display()
        )))
    }
}

/// Lambda's Python runtime starts `awslambdaric` from a small bootstrap; this is the same, as an
/// executable script, because `spawn_function` runs a program without arguments.
fn python_bootstrap(dir: &Path, python: &Path) -> Result<PathBuf, BenchError> {
    std::fs::create_dir_all(dir).map_err(BenchError::io(format!("creating {}", dir.display())))?;
    let python = std::path::absolute(python).map_err(BenchError::io("resolving --python"))?;
    let path = dir.join("python-bootstrap");
    let script = format!(
        "#!{}\nimport sys\nfrom awslambdaric.__main__ import main\nmain([sys.argv[0], \"receiver_lambda.handler\"])\n",
        python.display()
    );
    std::fs::write(&path, script).map_err(BenchError::io("writing the Python bootstrap"))?;
    make_executable(&path)?;
    Ok(path)
}

fn make_executable(path: &Path) -> Result<(), BenchError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(BenchError::io("chmod the Python bootstrap"))
}

async fn measure(c: &Contender, runs: usize, invocations: usize) -> Result<Measured, BenchError> {
    let ddb = moto::dynamodb().await;
    let sqs = moto::sqs().await;
    let table = moto::unique_name("coldstart");
    moto::create_dedupe_table(&ddb, &table).await;
    let queue = moto::create_queue(&sqs, &moto::unique_name("coldstart"), 5, 30).await;
    let mut env: Vec<(&str, String)> = vec![
        ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
        ("WEBHOOK_TOLERANCE_SECONDS", "300".to_owned()),
        ("WEBHOOK_JWKS_URL", String::new()),
        ("WEBHOOK_JWT_AUDIENCE", String::new()),
        ("WEBHOOK_JWT_ISSUER", String::new()),
        ("WEBHOOK_MAX_BODY_BYTES", "262144".to_owned()),
        ("DEDUPE_TABLE", table),
        ("DEDUPE_RETENTION_HOURS", "168".to_owned()),
        ("QUEUE_URL", queue.url),
    ];
    env.extend(c.extra_env.iter().cloned());

    let mut m = Measured::default();
    let mut seq = 0usize;
    for run in 0..runs {
        let api = RuntimeApi::start().await;
        let t0 = Instant::now();
        let mut f = spawn_function(&c.bin, &api, &env).await;
        let polled = wait_first_poll(&api, &mut f).await?;
        m.cold_ms.push(ms(polled.duration_since(t0)));
        let t = Instant::now();
        deliver(&api, &f, &mut seq).await?;
        m.first_invoke_ms.push(ms(t.elapsed()));
        if run + 1 == runs {
            for _ in 0..invocations {
                let t = Instant::now();
                deliver(&api, &f, &mut seq).await?;
                m.warm_ms.push(ms(t.elapsed()));
            }
        }
        f.kill().await;
    }
    Ok(m)
}

async fn wait_first_poll(api: &RuntimeApi, f: &mut FunctionProcess) -> Result<Instant, BenchError> {
    let end = Instant::now() + LIMIT;
    loop {
        if let Some(t) = api.first_poll_at() {
            return Ok(t);
        }
        if let Some(status) = f.try_exit_status() {
            return Err(BenchError::Failed(format!(
                "function exited ({status}) before polling /next; its output:\n{}",
                f.logs()
            )));
        }
        if Instant::now() >= end {
            return Err(BenchError::Failed(format!(
                "function did not poll /next within {LIMIT:?}; its output:\n{}",
                f.logs()
            )));
        }
        // Polling granularity bounds the error; `first_poll_at` itself is stamped by the server.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One fresh signed delivery; fails unless the function accepted it.
async fn deliver(api: &RuntimeApi, f: &FunctionProcess, seq: &mut usize) -> Result<(), BenchError> {
    *seq += 1;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("msg_coldstart_{nanos}_{seq}");
    let now = i64::try_from(nanos / 1_000_000_000).unwrap_or(i64::MAX);
    let body = batch_succeeded_body(&format!("batches/coldstart{seq}"));
    let headers = signed_headers(&test_secret(), &id, now, &body);
    let event = function_url_event("POST", &headers, &body, false);
    let reply = api
        .invoke(event, LIMIT)
        .await
        .map_err(|e| BenchError::Failed(format!("invocation failed: {e}; logs:\n{}", f.logs())))?;
    let status = reply["statusCode"].as_u64();
    let body: Value = reply["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    if status != Some(200) || body["status"] != "accepted" {
        return Err(BenchError::Failed(format!(
            "delivery not accepted: {status:?} {body}"
        )));
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
