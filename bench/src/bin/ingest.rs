//! Ingest benchmark (issue 3 item 8, issue 6 item 7): rows/s and peak RSS of the real
//! [`Consumer`] ingesting a results file of N lines from a local HTTP server, next to a Python
//! streaming ingest of the very same bytes from the same server.
//!
//! Three roles, one binary, one process each:
//! - `ingest [--lines 10k,100k,1m] …` (the driver) starts, for every size, a **server** child and
//!   then one **measured** child per contender, and prints the table;
//! - `ingest serve --lines N` builds the file in memory and serves it with the fake Gemini API
//!   (batches.get + download) until its stdin closes;
//! - `ingest run --base-url URL --lines N --store counting|sqlite` runs one ingest and prints one
//!   JSON line (seconds, CPU seconds, rows, VmHWM);
//! - `ingest stages [--lines N]` times the CPU stages (split, parse, row) in memory.
//!
//! Why processes: VmHWM is a per-process high-water mark, so only a fresh process per size gives
//! a per-size peak; and the server (which holds the whole file, ~600 MB at 1 M lines) must not
//! count towards the consumer's RSS. The file is built before anything is timed, so the server
//! costs the measured process nothing but socket reads.

#![allow(clippy::print_stdout)] // a benchmark's job is to print its table

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gemini_hooks::adapters::gemini::{GeminiClient, GeminiSettings};
use gemini_hooks::adapters::sqlite::SqliteStore;
use gemini_hooks::domain::jobs::{JobRecord, ResultRow, RowStatus};
use gemini_hooks::ports::clock::SystemClock;
use gemini_hooks::ports::{ResultsStore, StoreError};
use gemini_hooks::usecases::consume::{ConsumeSettings, Consumer, Handled};
use gemini_hooks::usecases::routes::Routes;
use gemini_hooks_bench::workload::{
    ERROR_EVERY, MALFORMED_EVERY, NoQueue, ServedBatch, bench_line, envelope, expected_counts,
    job_name, serve_batches,
};
use gemini_hooks_bench::{
    Args, BenchError, group, parse_number, proc_cpu_seconds, proc_status_kb, render_table, runtime,
};
use gemini_hooks_tests::fake_gemini::FakeGemini;
use serde_json::{Value, json};

/// Rows per store write, and per Python transaction: what `gemini-hooks dev` uses for SQLite
/// (the Lambda's 25 is a DynamoDB `BatchWriteItem` limit, not a choice).
const DEFAULT_ROWS_PER_WRITE: u64 = 500;

const USAGE: &str = "ingest [--lines 10k,100k,1m] [--store counting|sqlite|all] [--rows-per-write 500] \
[--python PATH --script bench/python/ingest.py] [--db-dir DIR] | ingest stages [--lines 100k]";

fn main() {
    let result = Args::from_env().and_then(|args| match args.positional(0) {
        Some("serve") => serve(&args),
        Some("run") => run(&args),
        Some("stages") => stages(&args),
        None => drive(&args),
        Some(other) => Err(BenchError::Usage(format!(
            "unknown role `{other}`; {USAGE}"
        ))),
    });
    if let Err(e) = result {
        eprintln!("ingest: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Server role
// ---------------------------------------------------------------------------------------------

/// Builds the file, serves it, prints `READY <base_url> <bytes>` and waits for stdin to close.
fn serve(args: &Args) -> Result<(), BenchError> {
    let lines = args.number("lines", 10_000)?;
    serve_batches(vec![ServedBatch::bench(lines)], &[])
}

// ---------------------------------------------------------------------------------------------
// Measured role
// ---------------------------------------------------------------------------------------------

/// A results store that keeps only counters: the pipeline's own cost (HTTP, split, parse, row
/// building) without any database.
#[derive(Default)]
struct CountingStore {
    job: Mutex<Option<JobRecord>>,
    rows: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    malformed: AtomicU64,
    writes: AtomicU64,
    response_bytes: AtomicU64,
}

#[async_trait]
impl ResultsStore for CountingStore {
    async fn load_job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let job = self.job.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(job.clone().filter(|j| j.job_id == job_id))
    }

    async fn save_job(&self, record: &JobRecord) -> Result<bool, StoreError> {
        let mut job = self.job.lock().unwrap_or_else(PoisonError::into_inner);
        if job
            .as_ref()
            .is_some_and(|j| !j.state.may_become(record.state))
        {
            return Ok(false);
        }
        *job = Some(record.clone());
        Ok(true)
    }

    async fn put_rows(&self, rows: &[ResultRow]) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        for row in rows {
            self.rows.fetch_add(1, Ordering::Relaxed);
            let counter = match row.status {
                RowStatus::Ok => &self.ok,
                RowStatus::Error => &self.errors,
                RowStatus::Malformed => &self.malformed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let len = row.response_json.as_ref().map_or(0, String::len) as u64;
            self.response_bytes.fetch_add(len, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn delete_rows_before(&self, _: &str, _: i64) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn count_rows_before(&self, _: &str, _: i64) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn list_rows(&self, _job_id: &str) -> Result<Vec<ResultRow>, StoreError> {
        Ok(Vec::new())
    }

    async fn count_rows(&self, _job_id: &str) -> Result<u64, StoreError> {
        // The benchmark's keys are distinct: every row written is a row stored.
        Ok(self.rows.load(Ordering::Relaxed))
    }

    async fn list_jobs(&self, _limit: Option<usize>) -> Result<Vec<JobRecord>, StoreError> {
        let job = self.job.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(job.clone().into_iter().collect())
    }
}

/// The store under test, and the counting store itself when that is the one (to cross-check
/// its counters against the job record).
type StoreUnderTest = (Arc<dyn ResultsStore>, Option<Arc<CountingStore>>);

fn store_for(kind: &str, args: &Args) -> Result<StoreUnderTest, BenchError> {
    match kind {
        "counting" => {
            let s = Arc::new(CountingStore::default());
            Ok((s.clone(), Some(s)))
        }
        "sqlite" => sqlite_store(args).map(|s| (s, None)),
        other => Err(BenchError::Usage(format!("unknown store `{other}`"))),
    }
}

/// The embedded store `gemini-hooks dev` uses (WAL, `synchronous=FULL`, one transaction per
/// `put_rows`), on a fresh file.
fn sqlite_store(args: &Args) -> Result<Arc<dyn ResultsStore>, BenchError> {
    let path = std::path::PathBuf::from(args.need("db")?);
    remove_db(&path);
    let store = SqliteStore::open(&path)
        .map_err(|e| BenchError::Failed(format!("cannot open {}: {e}", path.display())))?;
    Ok(Arc::new(store))
}

/// Runs one ingest and prints one JSON line for the driver.
fn run(args: &Args) -> Result<(), BenchError> {
    let base_url = args.need("base-url")?.to_owned();
    let lines = args.number("lines", 10_000)?;
    let kind = args.get_or("store", "counting").to_owned();
    let rows_per_write = usize::try_from(args.number("rows-per-write", DEFAULT_ROWS_PER_WRITE)?)
        .map_err(|_| BenchError::Usage("--rows-per-write is too large".into()))?;
    let rt = runtime()?;
    let report = rt.block_on(async move {
        let (store, counting) = store_for(&kind, args)?;
        let mut settings = GeminiSettings::new(FakeGemini::API_KEY);
        settings.base_url = base_url;
        let consumer = Consumer::new(
            std::sync::Arc::new(GeminiClient::new(settings, reqwest::Client::new())),
            Routes::single(Arc::clone(&store)),
            Arc::new(NoQueue),
            Arc::new(SystemClock),
            ConsumeSettings {
                rows_per_write,
                ..ConsumeSettings::default()
            },
        );
        let job = job_name(lines);
        let body = envelope(&job)?;
        let rss_before_kb = proc_status_kb("VmRSS").unwrap_or(0);
        let cpu_before = proc_cpu_seconds().unwrap_or(0.0);
        let started = Instant::now();
        let handled = consumer
            .handle_message(&body, None)
            .await
            .map_err(|e| BenchError::Failed(format!("ingest failed: {e}")))?;
        let seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = proc_cpu_seconds().unwrap_or(0.0) - cpu_before;
        let Handled::Ingested { rows, .. } = handled else {
            return Err(BenchError::Failed(format!(
                "unexpected outcome {handled:?}"
            )));
        };
        let record = store
            .load_job(&job)
            .await
            .map_err(|e| BenchError::Failed(format!("job record: {e}")))?
            .ok_or_else(|| BenchError::Failed("no job record after ingest".into()))?;
        let c = &record.counts;
        let counted = (
            c.rows_ingested - c.error_rows - c.malformed_rows,
            c.error_rows,
            c.malformed_rows,
        );
        if let Some(cs) = counting {
            let seen = (
                cs.ok.load(Ordering::Relaxed),
                cs.errors.load(Ordering::Relaxed),
                cs.malformed.load(Ordering::Relaxed),
            );
            if seen != counted {
                return Err(BenchError::Failed(format!(
                    "store saw {seen:?} rows but the job record says {counted:?}"
                )));
            }
        }
        let vmhwm_kb = proc_status_kb("VmHWM").unwrap_or(0);
        if kind == "sqlite" {
            // Count what is really in the file, not what the consumer says it wrote.
            let stored = count_stored_rows(args.need("db")?, &job)?;
            if stored != lines {
                return Err(BenchError::Failed(format!(
                    "the SQLite file holds {stored} rows of {job}, expected {lines}"
                )));
            }
        }
        if counted != expected_counts(lines) || rows != lines {
            return Err(BenchError::Failed(format!(
                "ingested {rows} rows {counted:?}, expected {lines} rows {:?}",
                expected_counts(lines)
            )));
        }
        Ok::<_, BenchError>(json!({
            "impl": format!("rust/{kind}"),
            "lines": lines,
            "rows": rows,
            "ok": counted.0, "errors": counted.1, "malformed": counted.2,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "rss_before_kb": rss_before_kb,
            "vmhwm_kb": vmhwm_kb,
        }))
    })?;
    println!("{report}");
    Ok(())
}

/// `count(*)` of a job's rows, through a connection of our own (after VmHWM was read, so the
/// check costs the measurement nothing).
fn count_stored_rows(db: &str, job: &str) -> Result<u64, BenchError> {
    let failed = |e: rusqlite::Error| BenchError::Failed(format!("counting rows in {db}: {e}"));
    let conn = rusqlite::Connection::open(db).map_err(failed)?;
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM result_rows WHERE job_id = ?1",
            [job],
            |r| r.get(0),
        )
        .map_err(failed)?;
    u64::try_from(n).map_err(|_| BenchError::Failed(format!("negative row count {n}")))
}

// ---------------------------------------------------------------------------------------------
// Stage costs (no HTTP, no store): where a line's CPU time goes
// ---------------------------------------------------------------------------------------------

/// Times the CPU stages of the pipeline on an in-memory file, cumulatively: split only, split +
/// parse, split + parse + row. Printed as CPU µs per line; explains the rows/s of the full run.
fn stages(args: &Args) -> Result<(), BenchError> {
    use gemini_hooks::domain::event::JobKind;
    use gemini_hooks::domain::results::{LineSplitter, record_from_line};
    use gemini_hooks::usecases::consume::to_row;

    let lines = args.number("lines", 100_000)?;
    let mut body = Vec::new();
    for i in 1..=lines {
        body.extend_from_slice(bench_line(i).as_bytes());
        body.push(b'\n');
    }
    let job = JobRecord::new(job_name(lines), JobKind::Batch, 0);
    let max = ConsumeSettings::default().max_line_bytes;
    // CPU time, not wall time: the stages are single-threaded, and CPU time does not depend on
    // what else the machine runs.
    let pass = |stage: u8| {
        let cpu_before = proc_cpu_seconds().unwrap_or(0.0);
        let mut splitter = LineSplitter::new(0, 0, max);
        let mut sink = 0usize;
        for chunk in body.chunks(64 * 1024) {
            splitter.push(chunk);
            while let Some(line) = splitter.next_line() {
                sink += line.bytes.len();
                if stage >= 1 {
                    let record = record_from_line(&line);
                    if stage >= 2 {
                        let row = to_row(&job, record, 0);
                        sink += row.response_json.map_or(0, |r| r.len());
                    } else {
                        sink += record.key.len();
                    }
                }
            }
        }
        while let Some(line) = splitter.finish() {
            sink += line.bytes.len();
        }
        std::hint::black_box(sink);
        (proc_cpu_seconds().unwrap_or(0.0) - cpu_before) * 1e6 / lines as f64
    };
    let mut rows = Vec::new();
    let mut previous = 0.0;
    for (stage, name) in [
        (0, "split into lines (LineSplitter)"),
        (
            1,
            "+ parse (record_from_line: borrowed views, raw response)",
        ),
        (2, "+ build row (to_row: fields moved into the row)"),
    ] {
        let best = (0..3).map(|_| pass(stage)).fold(f64::INFINITY, f64::min);
        rows.push(vec![
            name.to_owned(),
            format!("{best:.2}"),
            format!("{:.2}", best - previous),
        ]);
        previous = best;
    }
    println!("\nCPU per line by stage, in memory ({lines} lines, best of 3)\n");
    print!(
        "{}",
        render_table(
            &["stages", "µs/line (cumulative)", "µs/line (this stage)"],
            1,
            &rows
        )
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Driver role
// ---------------------------------------------------------------------------------------------

/// A running server child; dropping it closes its stdin (it exits) and reaps it.
struct Server {
    child: Child,
    base_url: String,
    bytes: u64,
}

impl Server {
    fn start(lines: u64) -> Result<Self, BenchError> {
        let exe = std::env::current_exe().map_err(BenchError::io("own executable"))?;
        let mut child = Command::new(exe)
            .args(["serve", "--lines", &lines.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(BenchError::io("cannot start the server child"))?;
        let stdout: ChildStdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Failed("server child has no stdout".into()))?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(BenchError::io("reading the server's READY line"))?;
        let mut parts = line.split_whitespace();
        let (Some("READY"), Some(url), Some(bytes)) = (parts.next(), parts.next(), parts.next())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BenchError::Failed(format!(
                "server child said `{}`",
                line.trim()
            )));
        };
        Ok(Self {
            base_url: url.to_owned(),
            bytes: bytes.parse().unwrap_or(0),
            child,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(50));
            if !matches!(self.child.try_wait(), Ok(Some(_))) {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// Runs one measured child and parses its JSON line.
fn measured(mut cmd: Command, what: &str) -> Result<Value, BenchError> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(BenchError::io(format!("cannot start {what}")))?;
    if !out.status.success() {
        return Err(BenchError::Failed(format!(
            "{what} failed ({})",
            out.status
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(last)
        .map_err(|e| BenchError::Failed(format!("{what} printed no JSON result ({e})")))
}

fn drive(args: &Args) -> Result<(), BenchError> {
    let sizes: Vec<u64> = args
        .get_or("lines", "10k,100k,1m")
        .split(',')
        .map(parse_number)
        .collect::<Result<_, _>>()?;
    let stores: Vec<String> = match args.get_or("store", "all") {
        "all" => vec!["counting".into(), "sqlite".into()],
        s => s.split(',').map(str::to_owned).collect(),
    };
    let rows_per_write = args
        .number("rows-per-write", DEFAULT_ROWS_PER_WRITE)?
        .to_string();
    let python = args.get("python");
    let script = args.get_or("script", "bench/python/ingest.py");
    let db_dir = std::path::PathBuf::from(args.get_or("db-dir", "target/bench"));
    std::fs::create_dir_all(&db_dir).map_err(BenchError::io("creating --db-dir"))?;
    let exe = std::env::current_exe().map_err(BenchError::io("own executable"))?;

    let mut rows: Vec<Vec<String>> = Vec::new();
    for &lines in &sizes {
        eprintln!("ingest: building and serving {lines} lines …");
        let server = Server::start(lines)?;
        let mut results: Vec<Value> = Vec::new();
        for store in &stores {
            eprintln!("ingest: rust/{store} {lines} lines …");
            let db = db_dir.join(format!("rust-{lines}.sqlite3"));
            remove_db(&db);
            let mut cmd = Command::new(&exe);
            cmd.args([
                "run",
                "--base-url",
                &server.base_url,
                "--lines",
                &lines.to_string(),
            ])
            .args(["--store", store, "--rows-per-write", &rows_per_write])
            .arg("--db")
            .arg(&db);
            results.push(measured(cmd, &format!("rust/{store}"))?);
            remove_db(&db);
        }
        if let Some(python) = python {
            for store in &stores {
                let py_store = if store == "counting" {
                    "count"
                } else {
                    "sqlite"
                };
                eprintln!("ingest: python/{py_store} {lines} lines …");
                let db = db_dir.join(format!("python-{lines}.sqlite3"));
                remove_db(&db);
                let mut cmd = Command::new(python);
                cmd.arg(script)
                    .args(["--base-url", &server.base_url, "--job", &job_name(lines)])
                    .args(["--api-key", FakeGemini::API_KEY, "--store", py_store])
                    .args(["--batch", &rows_per_write, "--lines", &lines.to_string()])
                    .arg("--db")
                    .arg(&db);
                results.push(measured(cmd, &format!("python/{py_store}"))?);
                remove_db(&db);
            }
        }
        let mb = server.bytes as f64 / 1e6;
        drop(server);
        let speed = |r: &Value| {
            let n = r["rows"].as_f64().unwrap_or(0.0);
            (
                n / r["seconds"].as_f64().unwrap_or(f64::NAN),
                n / r["cpu_seconds"].as_f64().unwrap_or(f64::NAN),
            )
        };
        for r in &results {
            let name = r["impl"].as_str().unwrap_or("?");
            let (wall, cpu) = speed(r);
            // A Rust row is compared with the Python row of the same store kind.
            let python_twin = match name {
                "rust/counting" => Some("python/count"),
                "rust/sqlite" => Some("python/sqlite"),
                _ => None,
            };
            let versus = python_twin
                .and_then(|twin| results.iter().find(|o| o["impl"] == twin))
                .map_or_else(String::new, |o| {
                    let (pw, pc) = speed(o);
                    format!("{:.1}× / {:.1}×", wall / pw, cpu / pc)
                });
            rows.push(vec![
                name.to_owned(),
                group(lines as f64),
                format!("{mb:.0}"),
                format!("{:.2}", r["seconds"].as_f64().unwrap_or(f64::NAN)),
                group(wall),
                format!("{:.2}", r["cpu_seconds"].as_f64().unwrap_or(f64::NAN)),
                group(cpu),
                format!("{:.1}", r["vmhwm_kb"].as_f64().unwrap_or(0.0) / 1024.0),
                versus,
            ]);
        }
    }
    println!(
        "\nIngest: batch.succeeded → get_batch → streamed download → parse → rows \
         (rows per write/transaction {rows_per_write}; every {ERROR_EVERY}th line an error, \
         every {MALFORMED_EVERY}th malformed)\n"
    );
    print!(
        "{}",
        render_table(
            &[
                "implementation/store",
                "lines",
                "file MB",
                "wall s",
                "rows/s",
                "CPU s",
                "rows/CPU-s",
                "peak RSS MiB",
                "vs Python (wall / CPU)",
            ],
            1,
            &rows
        )
    );
    Ok(())
}

fn remove_db(db: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}
