//! Memory at scale (issue 11): peak RSS of the consumer handling 4 concurrent messages — the
//! consumer Lambda's `handle_batch` on 4 SQS-like messages, each a `batch.succeeded` of its own
//! batch whose results file is 25 lines of 8 MB — through the real DynamoDB results adapter on the
//! DynamoDB stand-in (`gemini_hooks_bench::standin`, 10 ms per request). Goal: ≤ 256 MiB.
//!
//! Each line is a realistic success: a `GenerateContentResponse` with one long text part of
//! pseudo-random words (a vocabulary of 4 096 made-up words, sentences and paragraphs), so the
//! adapter's gzip shrinks it about as much as it shrinks prose, not to nothing as it would a
//! repeated letter. The driver prints the compression ratio gzip reaches on it.
//!
//! Roles, one binary, one process each (the file server holds all four files, ~800 MB, so it must
//! not be the measured process; nor may the stand-in):
//! - `memory [--messages 4] [--lines 25] [--line-bytes 8m] [--latency-ms 10] [knobs]` (driver);
//! - `memory serve …`: the fake Gemini API with the operations and files;
//! - `memory stand-in [--latency-ms 10]`: the DynamoDB stand-in;
//! - `memory run --gemini URL --dynamodb URL …`: the measured `handle_batch`, one JSON line.

#![allow(clippy::print_stdout)] // a benchmark's job is to print its table

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use bytes::Bytes;
use gemini_hooks::domain::jobs::JobState;
use gemini_hooks::usecases::consume::{Disposition, InboundMessage, RetrySchedule};
use gemini_hooks_bench::child::{ServerChild, measured};
use gemini_hooks_bench::consumer::{Knobs, dynamodb_consumer};
use gemini_hooks_bench::standin::standin_role;
use gemini_hooks_bench::workload::{ServedBatch, envelope, serve_batches};
use gemini_hooks_bench::{
    Args, BenchError, group, proc_cpu_seconds, proc_status_kb, render_table, runtime,
};
use gemini_hooks_tests::fake_gemini::success_line;
use serde_json::{Value, json};

const USAGE: &str = "memory [--messages 4] [--lines 25] [--line-bytes 8m] [--latency-ms 10] \
[--rows-per-write N] [--max-concurrency N] [--writes-in-flight N]";

/// The goal for the peak RSS of 4 such messages.
const GOAL_MIB: f64 = 256.0;

fn main() {
    let result = Args::from_env().and_then(|args| match args.positional(0) {
        Some("serve") => serve(&args),
        Some("stand-in") => standin_role(&args),
        Some("run") => run(&args),
        None => drive(&args),
        Some(other) => Err(BenchError::Usage(format!(
            "unknown role `{other}`; {USAGE}"
        ))),
    });
    if let Err(e) = result {
        eprintln!("memory: {e}");
        std::process::exit(1);
    }
}

/// What every role agrees on: how many messages, lines per file and bytes per line.
struct Shape {
    messages: u64,
    lines: u64,
    line_bytes: u64,
}

impl Shape {
    fn from_args(args: &Args) -> Result<Self, BenchError> {
        Ok(Self {
            messages: args.number("messages", 4)?,
            lines: args.number("lines", 25)?,
            line_bytes: args.number("line-bytes", 8_000_000)?,
        })
    }

    fn to_args(&self) -> Vec<String> {
        vec![
            "--messages".into(),
            self.messages.to_string(),
            "--lines".into(),
            self.lines.to_string(),
            "--line-bytes".into(),
            self.line_bytes.to_string(),
        ]
    }
}

fn job(message: u64) -> String {
    format!("batches/memory-{message}")
}

// ---------------------------------------------------------------------------------------------
// Server role: the long lines
// ---------------------------------------------------------------------------------------------

/// xorshift64: deterministic, fast, good enough to pick words.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// 4 096 made-up words of one to four syllables.
fn vocabulary() -> Vec<String> {
    const CONSONANTS: &[u8] = b"bcdfghjklmnprstvwz";
    const VOWELS: &[u8] = b"aeiou";
    let mut rng = Rng::new(7);
    (0..4096)
        .map(|_| {
            let syllables = 1 + rng.below(4);
            let mut w = String::new();
            for _ in 0..syllables {
                w.push(char::from(
                    CONSONANTS[rng.below(CONSONANTS.len() as u64) as usize],
                ));
                w.push(char::from(VOWELS[rng.below(VOWELS.len() as u64) as usize]));
            }
            if rng.below(3) == 0 {
                w.push(char::from(
                    CONSONANTS[rng.below(CONSONANTS.len() as u64) as usize],
                ));
            }
            w
        })
        .collect()
}

/// About `bytes` of prose-like text: random words, sentences of 6–24 words, paragraphs of 4–9
/// sentences.
fn long_text(words: &[String], seed: u64, bytes: usize) -> String {
    let mut rng = Rng::new(seed);
    let mut text = String::with_capacity(bytes + 64);
    let mut sentence_left = 0;
    let mut paragraph_left = 4 + rng.below(6);
    while text.len() < bytes {
        if sentence_left == 0 {
            if !text.is_empty() {
                text.push('.');
                paragraph_left = paragraph_left.saturating_sub(1);
                if paragraph_left == 0 {
                    text.push_str("\n\n");
                    paragraph_left = 4 + rng.below(6);
                } else {
                    text.push(' ');
                }
            }
            sentence_left = 6 + rng.below(19);
            let w = &words[rng.below(words.len() as u64) as usize];
            let mut chars = w.chars();
            if let Some(first) = chars.next() {
                text.extend(first.to_uppercase());
                text.push_str(chars.as_str());
            }
        } else {
            text.push(' ');
            text.push_str(&words[rng.below(words.len() as u64) as usize]);
        }
        sentence_left -= 1;
    }
    text.truncate(bytes);
    text
}

/// gzip (the adapter's default level) output size over input size.
fn gzip_ratio(bytes: &[u8]) -> Result<f64, BenchError> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)
        .map_err(BenchError::io("gzip of a sample line"))?;
    let packed = enc
        .finish()
        .map_err(BenchError::io("gzip of a sample line"))?;
    Ok(bytes.len() as f64 / packed.len().max(1) as f64)
}

fn serve(args: &Args) -> Result<(), BenchError> {
    let shape = Shape::from_args(args)?;
    let words = vocabulary();
    // The JSON around the text (key, usage, model version, …) is a few hundred bytes.
    let text_bytes = usize::try_from(shape.line_bytes.saturating_sub(600))
        .map_err(|_| BenchError::Usage("--line-bytes is too large".into()))?;
    let mut batches = Vec::new();
    let mut ratio = 0.0;
    let mut longest = 0usize;
    for m in 1..=shape.messages {
        let mut body = Vec::new();
        for i in 1..=shape.lines {
            let text = long_text(&words, m * 1_000_003 + i, text_bytes);
            let line = success_line(&format!("req-{i}"), &text);
            if m == 1 && i == 1 {
                ratio = gzip_ratio(line.as_bytes())?;
            }
            longest = longest.max(line.len());
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
        }
        let job = job(m);
        batches.push(ServedBatch {
            file: job.replace("batches/", "files/"),
            job,
            body: Bytes::from(body),
            stats: (shape.lines, shape.lines, 0),
        });
    }
    serve_batches(batches, &[format!("{ratio:.2}"), longest.to_string()])
}

// ---------------------------------------------------------------------------------------------
// Measured role
// ---------------------------------------------------------------------------------------------

fn run(args: &Args) -> Result<(), BenchError> {
    let gemini_url = args.need("gemini")?.to_owned();
    let dynamodb_url = args.need("dynamodb")?.to_owned();
    let shape = Shape::from_args(args)?;
    let knobs = Knobs::from_args(args)?;
    let rt = runtime()?;
    let report = rt.block_on(async move {
        let under_test = dynamodb_consumer(&gemini_url, &dynamodb_url, &knobs).await?;
        let messages = (1..=shape.messages)
            .map(|m| {
                Ok(InboundMessage {
                    id: format!("message-{m}"),
                    body: envelope(&job(m))?,
                    receive_count: 1,
                })
            })
            .collect::<Result<Vec<_>, BenchError>>()?;
        let rss_before_kb = proc_status_kb("VmRSS").unwrap_or(0);
        let cpu_before = proc_cpu_seconds().unwrap_or(0.0);
        let started = Instant::now();
        let results = under_test
            .consumer
            .handle_batch(messages, None, RetrySchedule::LAMBDA)
            .await;
        let seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = proc_cpu_seconds().unwrap_or(0.0) - cpu_before;
        let vmhwm_kb = proc_status_kb("VmHWM").unwrap_or(0);
        let failed: Vec<String> = results
            .iter()
            .filter(|(_, d)| *d != Disposition::Done)
            .map(|(id, d)| format!("{id}: {d:?}"))
            .collect();
        if !failed.is_empty() {
            return Err(BenchError::Failed(format!(
                "messages not handled: {}",
                failed.join(", ")
            )));
        }
        for m in 1..=shape.messages {
            let record = under_test
                .store
                .load_job(&job(m))
                .await
                .map_err(|e| BenchError::Failed(format!("job record: {e}")))?
                .ok_or_else(|| BenchError::Failed(format!("no job record for {}", job(m))))?;
            if record.state != JobState::Succeeded || record.counts.rows_ingested != shape.lines {
                return Err(BenchError::Failed(format!(
                    "{} is {} with {} rows, expected SUCCEEDED with {}",
                    job(m),
                    record.state.as_str(),
                    record.counts.rows_ingested,
                    shape.lines
                )));
            }
        }
        Ok::<_, BenchError>(json!({
            "messages": shape.messages,
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

fn drive(args: &Args) -> Result<(), BenchError> {
    let shape = Shape::from_args(args)?;
    let latency_ms = args.number("latency-ms", 10)?.to_string();
    let knobs = Knobs::from_args(args)?;
    gemini_hooks_bench::consumer::consume_settings(&knobs)?;
    let exe = std::env::current_exe().map_err(BenchError::io("own executable"))?;
    eprintln!(
        "memory: building {} files of {} lines of {} bytes …",
        shape.messages, shape.lines, shape.line_bytes
    );
    let mut serve_args = vec!["serve".to_owned()];
    serve_args.extend(shape.to_args());
    let serve_args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let server = ServerChild::start(&exe, &serve_args, "the file server")?;
    let total_bytes: f64 = server
        .extra
        .first()
        .and_then(|b| b.parse().ok())
        .unwrap_or(0.0);
    let ratio: f64 = server
        .extra
        .get(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(f64::NAN);
    let standin = ServerChild::start(
        &exe,
        &["stand-in", "--latency-ms", &latency_ms],
        "the DynamoDB stand-in",
    )?;
    eprintln!("memory: handle_batch of {} messages …", shape.messages);
    let mut cmd = Command::new(&exe);
    cmd.args(["run", "--gemini", &server.url, "--dynamodb", &standin.url])
        .args(shape.to_args())
        .args(knobs.to_args());
    let r = measured(cmd, "the measured consumer")?;
    let s = standin.finish()?;
    drop(server);

    let peak_mib = r["vmhwm_kb"].as_f64().unwrap_or(0.0) / 1024.0;
    let verdict = if peak_mib <= GOAL_MIB {
        "met".to_owned()
    } else {
        format!("missed ({:.1}× the goal)", peak_mib / GOAL_MIB)
    };
    let row = vec![
        format!(
            "{} × {} lines × {:.1} MB",
            shape.messages,
            shape.lines,
            shape.line_bytes as f64 / 1e6
        ),
        format!("{:.0}", total_bytes / 1e6),
        format!("{ratio:.2}×"),
        format!("{:.2}", r["seconds"].as_f64().unwrap_or(f64::NAN)),
        format!("{:.2}", r["cpu_seconds"].as_f64().unwrap_or(f64::NAN)),
        format!("{:.1}", r["rss_before_kb"].as_f64().unwrap_or(0.0) / 1024.0),
        format!("{peak_mib:.1}"),
        format!("≤ {GOAL_MIB:.0}: {verdict}"),
    ];
    println!(
        "\nMemory at scale: Consumer::handle_batch of {} batch.succeeded messages at once, \
         DynamoDbResultsStore on a stand-in answering every request after {latency_ms} ms\n",
        shape.messages
    );
    print!(
        "{}",
        render_table(
            &[
                "messages × lines × line size",
                "results MB (all files)",
                "gzip ratio of a line",
                "wall s",
                "CPU s",
                "RSS before MiB",
                "peak RSS MiB",
                "goal MiB",
            ],
            1,
            &[row]
        )
    );
    let calls = s["batch_write_calls"].as_f64().unwrap_or(0.0);
    println!();
    println!(
        "- stand-in: requests {}; BatchWriteItem calls {}, items {} (rows {}, the rest parts), \
         items/call max {}, largest call {:.1} MB, max calls in flight {}",
        summary(&s["requests"]),
        group(calls),
        s["items_written"],
        s["rows_written"],
        s["max_items_per_call"],
        s["max_request_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        s["max_batch_writes_in_flight"],
    );
    println!(
        "- calls DynamoDB would refuse: duplicate keys {} (first: {}), over 25 items {}, over \
         16 MiB {}; refused by the stand-in {}{}",
        s["duplicate_key_calls"],
        s["first_duplicate"].as_str().unwrap_or("none"),
        s["oversize_calls"],
        s["overweight_calls"],
        s["refused"],
        s["first_refusal"]
            .as_str()
            .map_or_else(String::new, |r| format!(" ({r})")),
    );
    if let Some(settings) = r["settings"].as_str() {
        println!("- {settings}");
    }
    Ok(())
}

fn summary(requests: &Value) -> String {
    requests.as_object().map_or_else(String::new, |m| {
        m.iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}
