//! DynamoDB ingest benchmark (issue 11): rows/s, CPU and peak RSS of the real [`Consumer`] with
//! the real `DynamoDbResultsStore` writing to a local DynamoDB endpoint that answers every
//! request after a fixed latency (10 ms, DynamoDB's typical in-region latency), next to a Python
//! twin using boto3's `Table.batch_writer()` against the same endpoint, on the same results file
//! from the same server. Goal: ≥ 8× the twin's rows/s.
//!
//! The endpoint is the stand-in of `gemini_hooks_bench::standin` (it counts writes and does not
//! store rows; correctness is the tests' job). Roles, one binary, one process each:
//! - `dynamodb [--lines 10k,100k] [--latency-ms 10] [--python PATH --script …] [knobs]` (the
//!   driver): per size, a file server child; per contender, a fresh stand-in child and one
//!   measured child; prints the table;
//! - `dynamodb serve --lines N`: the fake Gemini API with the N-line file of the ingest benchmark;
//! - `dynamodb stand-in [--latency-ms 10]`: the DynamoDB stand-in;
//! - `dynamodb run --gemini URL --dynamodb URL --lines N [knobs]`: one measured ingest, one JSON
//!   line.
//!
//! Knobs (`--rows-per-write`, `--max-concurrency`, `--writes-in-flight`): see
//! `gemini_hooks_bench::consumer::Knobs`.

#![allow(clippy::print_stdout)] // a benchmark's job is to print its table

use std::process::Command;
use std::time::Instant;

use gemini_hooks::usecases::consume::Handled;
use gemini_hooks_bench::child::{ServerChild, measured};
use gemini_hooks_bench::consumer::{Knobs, TABLE, dynamodb_consumer};
use gemini_hooks_bench::standin::standin_role;
use gemini_hooks_bench::workload::{
    ERROR_EVERY, MALFORMED_EVERY, ServedBatch, envelope, expected_counts, job_name, serve_batches,
};
use gemini_hooks_bench::{
    Args, BenchError, group, parse_number, proc_cpu_seconds, proc_status_kb, render_table, runtime,
};
use gemini_hooks_tests::fake_gemini::FakeGemini;
use serde_json::{Value, json};

const USAGE: &str = "dynamodb [--lines 10k,100k] [--latency-ms 10] \
[--python PATH --script bench/python/ingest_dynamodb.py] [--rows-per-write N] [--max-concurrency N] \
[--writes-in-flight N]";

/// The goal: the Rust consumer's rows/s over the Python twin's.
const GOAL_RATIO: f64 = 8.0;

fn main() {
    let result = Args::from_env().and_then(|args| match args.positional(0) {
        Some("serve") => {
            let lines = args.number("lines", 10_000)?;
            serve_batches(vec![ServedBatch::bench(lines)], &[])
        }
        Some("stand-in") => standin_role(&args),
        Some("run") => run(&args),
        None => drive(&args),
        Some(other) => Err(BenchError::Usage(format!(
            "unknown role `{other}`; {USAGE}"
        ))),
    });
    if let Err(e) = result {
        eprintln!("dynamodb: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Measured role
// ---------------------------------------------------------------------------------------------

/// One ingest of the `lines`-line file through the consumer into the stand-in; prints one JSON
/// line for the driver.
fn run(args: &Args) -> Result<(), BenchError> {
    let gemini_url = args.need("gemini")?.to_owned();
    let dynamodb_url = args.need("dynamodb")?.to_owned();
    let lines = args.number("lines", 10_000)?;
    let knobs = Knobs::from_args(args)?;
    let rt = runtime()?;
    let report = rt.block_on(async move {
        let under_test = dynamodb_consumer(&gemini_url, &dynamodb_url, &knobs).await?;
        let job = job_name(lines);
        let body = envelope(&job)?;
        let rss_before_kb = proc_status_kb("VmRSS").unwrap_or(0);
        let cpu_before = proc_cpu_seconds().unwrap_or(0.0);
        let started = Instant::now();
        let handled = under_test
            .consumer
            .handle_message(&body, None)
            .await
            .map_err(|e| BenchError::Failed(format!("ingest failed: {e}")))?;
        let seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = proc_cpu_seconds().unwrap_or(0.0) - cpu_before;
        let vmhwm_kb = proc_status_kb("VmHWM").unwrap_or(0);
        let Handled::Ingested { rows, .. } = handled else {
            return Err(BenchError::Failed(format!(
                "unexpected outcome {handled:?}"
            )));
        };
        // The job record as the stand-in stored it; its row count is the stand-in's count of
        // distinct rows written (the consumer's closing `Query`).
        let record = under_test
            .store
            .load_job(&job)
            .await
            .map_err(|e| BenchError::Failed(format!("job record: {e}")))?
            .ok_or_else(|| BenchError::Failed("no job record after ingest".into()))?;
        let c = &record.counts;
        let counted = (
            c.rows_ingested
                .saturating_sub(c.error_rows + c.malformed_rows),
            c.error_rows,
            c.malformed_rows,
        );
        if counted != expected_counts(lines) || rows != lines {
            return Err(BenchError::Failed(format!(
                "ingested {rows} rows {counted:?}, expected {lines} rows {:?}",
                expected_counts(lines)
            )));
        }
        Ok::<_, BenchError>(json!({
            "impl": "rust/DynamoDbResultsStore",
            "lines": lines,
            "rows": rows,
            "ok": counted.0, "errors": counted.1, "malformed": counted.2,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "rss_before_kb": rss_before_kb,
            "vmhwm_kb": vmhwm_kb,
            "settings": format!("{:?}", under_test.settings),
        }))
    })?;
    println!("{report}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Driver role
// ---------------------------------------------------------------------------------------------

/// One contender's result with what the stand-in saw during its run.
struct Outcome {
    result: Value,
    standin: Value,
}

fn with_standin(
    exe: &std::path::Path,
    latency_ms: &str,
    what: &str,
    command: impl FnOnce(&str) -> Command,
) -> Result<Outcome, BenchError> {
    let standin = ServerChild::start(
        exe,
        &["stand-in", "--latency-ms", latency_ms],
        "the DynamoDB stand-in",
    )?;
    let result = measured(command(&standin.url), what)?;
    let standin = standin.finish()?;
    Ok(Outcome { result, standin })
}

fn drive(args: &Args) -> Result<(), BenchError> {
    let sizes: Vec<u64> = args
        .get_or("lines", "10k,100k")
        .split(',')
        .map(parse_number)
        .collect::<Result<_, _>>()?;
    let latency_ms = args.number("latency-ms", 10)?.to_string();
    let knobs = Knobs::from_args(args)?;
    // Refuse knobs this build cannot apply before anything starts.
    gemini_hooks_bench::consumer::consume_settings(&knobs)?;
    let python = args.get("python");
    let script = args.get_or("script", "bench/python/ingest_dynamodb.py");
    let exe = std::env::current_exe().map_err(BenchError::io("own executable"))?;

    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut ratios: Vec<(u64, f64, f64)> = Vec::new();
    for &lines in &sizes {
        eprintln!("dynamodb: building and serving {lines} lines …");
        let server = ServerChild::start(
            &exe,
            &["serve", "--lines", &lines.to_string()],
            "the file server",
        )?;
        let mb = server
            .extra
            .first()
            .and_then(|b| b.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1e6;
        let mut outcomes: Vec<Outcome> = Vec::new();
        eprintln!("dynamodb: rust {lines} lines …");
        outcomes.push(with_standin(&exe, &latency_ms, "rust", |ddb| {
            let mut cmd = Command::new(&exe);
            cmd.args(["run", "--gemini", &server.url, "--dynamodb", ddb])
                .args(["--lines", &lines.to_string()])
                .args(knobs.to_args());
            cmd
        })?);
        if let Some(python) = python {
            eprintln!("dynamodb: python {lines} lines …");
            outcomes.push(with_standin(&exe, &latency_ms, "python", |ddb| {
                let mut cmd = Command::new(python);
                cmd.arg(script)
                    .args(["--base-url", &server.url, "--job", &job_name(lines)])
                    .args(["--api-key", FakeGemini::API_KEY, "--endpoint", ddb])
                    .args(["--table", TABLE, "--lines", &lines.to_string()])
                    // Nothing may reach real AWS or the instance metadata service.
                    .env("AWS_EC2_METADATA_DISABLED", "true")
                    .env_remove("AWS_PROFILE");
                cmd
            })?);
        }
        drop(server);
        let speed = |r: &Value| {
            let n = r["rows"].as_f64().unwrap_or(0.0);
            (
                n / r["seconds"].as_f64().unwrap_or(f64::NAN),
                n / r["cpu_seconds"].as_f64().unwrap_or(f64::NAN),
            )
        };
        let twin = outcomes.iter().find(|o| {
            o.result["impl"]
                .as_str()
                .is_some_and(|s| s.starts_with("python"))
        });
        for o in &outcomes {
            let r = &o.result;
            let s = &o.standin;
            let name = r["impl"].as_str().unwrap_or("?");
            let (wall, cpu) = speed(r);
            let versus = match twin {
                Some(t) if !name.starts_with("python") => {
                    let (pw, pc) = speed(&t.result);
                    ratios.push((lines, wall / pw, cpu / pc));
                    format!("{:.1}× / {:.1}×", wall / pw, cpu / pc)
                }
                _ => String::new(),
            };
            let calls = s["batch_write_calls"].as_f64().unwrap_or(0.0);
            let items = s["items_written"].as_f64().unwrap_or(0.0);
            let refusable = ["duplicate_key_calls", "oversize_calls", "overweight_calls"]
                .iter()
                .map(|k| s[k].as_u64().unwrap_or(0))
                .sum::<u64>();
            rows.push(vec![
                name.to_owned(),
                group(lines as f64),
                format!("{mb:.0}"),
                format!("{:.2}", r["seconds"].as_f64().unwrap_or(f64::NAN)),
                group(wall),
                format!("{:.2}", r["cpu_seconds"].as_f64().unwrap_or(f64::NAN)),
                group(cpu),
                format!("{:.1}", r["vmhwm_kb"].as_f64().unwrap_or(0.0) / 1024.0),
                group(calls),
                format!(
                    "{:.1} / {}",
                    if calls > 0.0 { items / calls } else { 0.0 },
                    s["max_items_per_call"]
                ),
                s["max_batch_writes_in_flight"].to_string(),
                refusable.to_string(),
                versus,
            ]);
            notes.push(format!(
                "{name} {lines}: requests {}; rows written {}; duplicate-key calls {} (first: {}); \
                 refused by the stand-in {}{}",
                requests_summary(&s["requests"]),
                s["rows_written"],
                s["duplicate_key_calls"],
                s["first_duplicate"].as_str().unwrap_or("none"),
                s["refused"],
                s["first_refusal"]
                    .as_str()
                    .map_or_else(String::new, |r| format!(" ({r})")),
            ));
            if let Some(settings) = r["settings"].as_str() {
                notes.push(format!("{name} {lines}: {settings}"));
            }
        }
    }
    println!(
        "\nDynamoDB ingest: batch.succeeded → get_batch → streamed download → parse → \
         BatchWriteItem to a stand-in answering every request after {latency_ms} ms \
         (every {ERROR_EVERY}th line an error, every {MALFORMED_EVERY}th malformed)\n"
    );
    print!(
        "{}",
        render_table(
            &[
                "implementation",
                "lines",
                "file MB",
                "wall s",
                "rows/s",
                "CPU s",
                "rows/CPU-s",
                "peak RSS MiB",
                "BatchWriteItem calls",
                "items/call mean / max",
                "max calls in flight",
                "calls DynamoDB would refuse",
                "vs Python (wall / CPU)",
            ],
            1,
            &rows
        )
    );
    println!();
    for note in &notes {
        println!("- {note}");
    }
    for (lines, wall, cpu) in ratios {
        let verdict = if wall >= GOAL_RATIO { "met" } else { "missed" };
        println!(
            "- goal ≥ {GOAL_RATIO}× the twin's rows/s at {} lines: {wall:.1}× ({verdict}; CPU-rate \
             ratio {cpu:.1}×)",
            group(lines as f64)
        );
    }
    Ok(())
}

/// `{"BatchWriteItem": 400, "GetItem": 2}` → `BatchWriteItem 400, GetItem 2`.
fn requests_summary(requests: &Value) -> String {
    requests.as_object().map_or_else(String::new, |m| {
        m.iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}
