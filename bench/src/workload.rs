//! What the ingest benchmarks feed the consumer: the results file (the generator the tests use)
//! and the queue message the receiver would have produced.

use std::io::Write;

use async_trait::async_trait;
use bytes::Bytes;
use gemini_hooks::domain::envelope::OutgoingMessage;
use gemini_hooks::domain::envelope::{EventSummary, QueueEnvelope, SignatureMode, WebhookEnvelope};
use gemini_hooks::domain::event::Event;
use gemini_hooks::ports::{EventQueue, QueueError};
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, OutputSpec, operation_json, sample_line, with_stats,
};
use serde_json::json;

use crate::BenchError;

/// Every 97th line is an error line (~1 %), every 1000th malformed (five kinds of garbage):
/// the mix a real batch with a few failed requests produces.
pub const ERROR_EVERY: u64 = 97;
pub const MALFORMED_EVERY: u64 = 1000;

/// The batch of the `lines`-line benchmark file.
pub fn job_name(lines: u64) -> String {
    format!("batches/bench-{lines}")
}

/// Line `i` (1-based) of the benchmark file: ~620 bytes, errors and garbage mixed in.
pub fn bench_line(i: u64) -> String {
    sample_line(i, ERROR_EVERY, MALFORMED_EVERY)
}

/// The whole benchmark file of `lines` lines, each ending in `\n`.
pub fn bench_file(lines: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(usize::try_from(lines).unwrap_or(0).saturating_mul(640));
    for i in 1..=lines {
        body.extend_from_slice(bench_line(i).as_bytes());
        body.push(b'\n');
    }
    body
}

/// What the file of `lines` lines must turn into: (ok, error, malformed) rows.
pub fn expected_counts(lines: u64) -> (u64, u64, u64) {
    let malformed = lines / MALFORMED_EVERY;
    let errors = (1..=lines)
        .filter(|i| i % ERROR_EVERY == 0 && i % MALFORMED_EVERY != 0)
        .count() as u64;
    (lines - malformed - errors, errors, malformed)
}

/// The queue message the receiver produces for a `batch.succeeded` delivery of `job`, whose
/// results file is `files/<id>`.
pub fn envelope(job: &str) -> Result<String, BenchError> {
    let raw = json!({
        "type": "batch.succeeded", "version": "v1", "timestamp": "2026-05-04T10:30:01Z",
        "data": {"id": job, "output_file_uri": job.replace("batches/", "files/")},
    });
    let event = Event::from_value(&raw, None)
        .map_err(|e| BenchError::Failed(format!("benchmark event: {e}")))?;
    let env = QueueEnvelope::Webhook(WebhookEnvelope {
        webhook_id: format!("msg_bench_{job}"),
        received_at_ms: 0,
        signature_mode: SignatureMode::Static,
        bound: true,
        event: EventSummary::from(&event),
        raw_event: raw,
        user_metadata: None,
    });
    env.to_message()
        .map(|m| m.body)
        .map_err(|e| BenchError::Failed(format!("benchmark envelope: {e}")))
}

/// No continuation is ever needed: the benchmarks run without a deadline.
pub struct NoQueue;

#[async_trait]
impl EventQueue for NoQueue {
    async fn enqueue(&self, _message: &OutgoingMessage) -> Result<String, QueueError> {
        Err(QueueError::Unavailable(
            "the benchmark has no queue (it runs without a deadline)".into(),
        ))
    }
}

/// A succeeded batch and its results file, as the fake Gemini API serves it.
pub struct ServedBatch {
    /// `batches/<id>`.
    pub job: String,
    /// `files/<id>`.
    pub file: String,
    pub body: Bytes,
    /// `batchStats`: requests, successful, failed.
    pub stats: (u64, u64, u64),
}

impl ServedBatch {
    /// The `lines`-line benchmark file of [`job_name`]`(lines)`.
    pub fn bench(lines: u64) -> Self {
        let job = job_name(lines);
        let (ok, errors, _) = expected_counts(lines);
        Self {
            file: job.replace("batches/", "files/"),
            job,
            body: Bytes::from(bench_file(lines)),
            stats: (lines, ok, errors),
        }
    }
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The server role: serves `batches` (`batches.get` and the `alt=media` download) through the
/// fake Gemini API, prints `READY <base_url> <bytes of all files> <extra…>` and serves until its
/// stdin closes. The files are built before this is called, so nothing the measured process does
/// waits for the generator.
#[allow(clippy::print_stdout)]
pub fn serve_batches(batches: Vec<ServedBatch>, extra: &[String]) -> Result<(), BenchError> {
    let bytes: usize = batches.iter().map(|b| b.body.len()).sum();
    let rt = crate::runtime()?;
    rt.block_on(async {
        let gemini = FakeGemini::start().await;
        for b in batches {
            let (requests, ok, failed) = b.stats;
            gemini.put_file(&b.file, b.body);
            gemini.put_operation(with_stats(
                operation_json(&b.job, "BATCH_STATE_SUCCEEDED", OutputSpec::File(b.file)),
                i64_of(requests),
                i64_of(ok),
                i64_of(failed),
            ));
        }
        println!("READY {} {bytes} {}", gemini.base_url(), extra.join(" "));
        std::io::stdout()
            .flush()
            .map_err(BenchError::io("stdout"))?;
        crate::child::wait_for_stdin_close().await
    })
}
