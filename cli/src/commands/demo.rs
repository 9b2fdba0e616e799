//! `gemini-hooks demo`: the whole story in one command, with SAMPLE data only.
//!
//! Starts the local pipeline (the same code as `dev`) with a freshly generated secret and a fresh
//! data directory, a sample Gemini endpoint, sends deliveries that show each rule of the
//! receiver, waits for the consumer and prints what was stored.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use gemini_hooks::adapters::sqlite::DEFAULT_MAX_RECEIVE_COUNT;
use gemini_hooks::config::{ReceiveLimits, VerifierConfig, defaults};
use gemini_hooks::domain::jobs::JobRecord;
use gemini_hooks::domain::verify::standard::SigningSecret;
use gemini_hooks::ports::ResultsStore;

use crate::commands::dev::{ConsumerSetup, Pipeline, PipelineConfig, bind};
use crate::commands::results::{job_note, row_text};
use crate::commands::send::{Answer, Delivery, Signer, http_client, new_webhook_id, post};
use crate::support::error::CliError;
use crate::support::layout::store_path;
use crate::support::lock::DataDirLock;
use crate::support::output::line;
use crate::support::sample_gemini::{self, FAILED_BATCH, SUCCEEDED_BATCH};
use crate::support::samples::sample_event;
use crate::support::util::{now_ms, now_secs, rfc3339};

pub const LONG_ABOUT: &str = "\
Show the whole story with sample data, in one command, with no AWS account and no Gemini key.

Starts the local pipeline with a freshly generated secret and a fresh data directory, serves
bundled SAMPLE batch results from a local Gemini-compatible endpoint, sends signed
`batch.succeeded` and `batch.failed` deliveries, a duplicate, a forged and a stale one, then
prints what happened to each and the rows the consumer ingested. It never touches the data
directory of `gemini-hooks dev`.";

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Where to keep the demo's store (default: a fresh temporary directory, never the data
    /// directory of `dev`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address of the demo's receiver (default: a free port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
    pub addr: String,

    /// Show the pipeline's logs (normally only warnings and errors).
    #[arg(short, long)]
    pub verbose: bool,

    /// Log JSON lines instead of human-readable text.
    #[arg(long)]
    pub log_json: bool,
}

/// How long the demo waits for the consumer.
const CONSUMER_TIMEOUT: Duration = Duration::from_secs(60);

struct Step {
    what: String,
    delivery: Delivery,
    /// Explanation of the answer when the status alone does not tell the story.
    note: Option<&'static str>,
}

fn event_body(event_type: &str, job: &str) -> Result<Vec<u8>, CliError> {
    let meta = serde_json::json!({"job_group": "demo", "source": "gemini-hooks demo (sample)"});
    serde_json::to_vec(&sample_event(
        event_type,
        job,
        Some(&meta),
        &rfc3339(now_secs()),
    ))
    .map_err(|e| CliError::Failed(format!("cannot encode a sample event: {e}")))
}

fn explain(answer: &Answer) -> String {
    match (answer.status, answer.outcome().as_str()) {
        (200, "accepted") => "verified, claimed and queued".into(),
        (200, "duplicate") => "recognised by webhook-id: nothing queued twice".into(),
        (401, "signature_mismatch") => "forged: no signature matches the secret".into(),
        (401, "timestamp_too_old") => {
            format!(
                "replay: outside the {} s window",
                defaults::TOLERANCE_SECONDS
            )
        }
        _ => String::new(),
    }
}

/// Runs `gemini-hooks demo`.
pub async fn run(args: DemoArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let data_dir = args.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "gemini-hooks-demo-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ))
    });
    if store_path(&data_dir).exists() {
        return Err(CliError::Usage(format!(
            "{} already holds a store; the demo starts from an empty directory",
            data_dir.display()
        )));
    }
    let (gemini_url, _) = sample_gemini::start().await?;
    let secret = SigningSecret::generate();
    let config = PipelineConfig {
        data_dir: data_dir.clone(),
        verifier: VerifierConfig {
            secrets: Some(vec![secret.clone()]),
            tolerance_secs: defaults::TOLERANCE_SECONDS,
            jwt: None,
        },
        limits: ReceiveLimits::default(),
        consumer: Some(ConsumerSetup::sample(
            gemini_url.clone(),
            Default::default(),
        )),
        local_jwks: None,
        visibility_ms: 60_000,
        max_receive_count: DEFAULT_MAX_RECEIVE_COUNT,
        concurrency: 4,
        notify: None,
    };
    let lock = DataDirLock::acquire(&data_dir)?;
    let pipeline = Pipeline::start(bind(&args.addr).await?, config, lock).await?;
    let url = format!("http://{}/", pipeline.addr);
    let result = story(out, &pipeline, &url, &gemini_url, secret, &data_dir).await;
    pipeline.stop().await;
    result
}

async fn story(
    out: &mut dyn Write,
    pipeline: &Pipeline,
    url: &str,
    gemini_url: &str,
    secret: SigningSecret,
    data_dir: &Path,
) -> Result<(), CliError> {
    line(
        out,
        "gemini-hooks demo: SAMPLE DATA only; nothing is sent to or read from Google.",
    )?;
    line(
        out,
        &format!("  receiver    {url}   (the same code as the receiver Lambda)"),
    )?;
    line(
        out,
        &format!("  store       {}", pipeline.store.path().display()),
    )?;
    line(
        out,
        &format!("  Gemini API  {gemini_url}   (sample endpoint: 2 batches, 1 results file)"),
    )?;
    line(
        out,
        "  secret      a fresh whsec_ secret for this run (not printed)",
    )?;
    line(out, "")?;

    let signer = Signer::Static(secret);
    let now = now_secs();
    let ok_id = new_webhook_id();
    let ok_body = event_body("batch.succeeded", SUCCEEDED_BATCH)?;
    let steps = [
        Step {
            what: format!("batch.succeeded for {SUCCEEDED_BATCH}, signed"),
            delivery: Delivery::build(&signer, &ok_id, now, ok_body.clone(), false)?,
            note: None,
        },
        Step {
            what: "the same delivery again, as a Gemini retry".into(),
            delivery: Delivery::build(&signer, &ok_id, now + 1, ok_body.clone(), false)?,
            note: None,
        },
        Step {
            what: "a forged copy: same body, signed with another secret".into(),
            delivery: Delivery::build(&signer, &new_webhook_id(), now, ok_body.clone(), true)?,
            note: None,
        },
        Step {
            what: "a replay: correctly signed, but 10 minutes old".into(),
            delivery: Delivery::build(&signer, &new_webhook_id(), now - 600, ok_body, false)?,
            note: None,
        },
        Step {
            what: "the first webhook-id again, with another body".into(),
            delivery: Delivery::build(
                &signer,
                &ok_id,
                now,
                event_body("batch.succeeded", FAILED_BATCH)?,
                false,
            )?,
            // 200, not 4xx: a refusal would only make Gemini retry it for a day.
            note: Some("same webhook-id, another body: the first stands; logged and counted"),
        },
        Step {
            what: format!("batch.failed for {FAILED_BATCH}, signed"),
            delivery: Delivery::build(
                &signer,
                &new_webhook_id(),
                now,
                event_body("batch.failed", FAILED_BATCH)?,
                false,
            )?,
            note: None,
        },
    ];
    line(out, "Deliveries:")?;
    let client = http_client(30)?;
    let width = steps
        .iter()
        .map(|s| s.what.chars().count())
        .max()
        .unwrap_or(0);
    let mut accepted = 0;
    for (i, step) in steps.iter().enumerate() {
        let answer = post(&client, url, &step.delivery).await?;
        if answer.status == 200 && answer.outcome() == "accepted" {
            accepted += 1;
        }
        line(
            out,
            &format!(
                "  {}. {:<width$}  -> {} {:<18} {}",
                i + 1,
                step.what,
                answer.status,
                answer.outcome(),
                step.note.map_or_else(|| explain(&answer), str::to_owned)
            ),
        )?;
    }
    line(out, "")?;

    line(
        out,
        &format!(
            "Consumer: {accepted} queued message(s); fetching each batch from the sample Gemini \
             endpoint and ingesting its results…"
        ),
    )?;
    let started = Instant::now();
    let jobs = wait_for_jobs(pipeline, &[SUCCEEDED_BATCH, FAILED_BATCH]).await?;
    let stats = pipeline.store.queue_stats(now_ms()).await?;
    line(
        out,
        &format!(
            "  done in {} ms; queue now holds {} message(s), {} dead letter(s)",
            started.elapsed().as_millis(),
            stats.visible + stats.invisible,
            stats.dead_letters
        ),
    )?;
    line(out, "")?;
    line(out, "Jobs:")?;
    for job in &jobs {
        line(
            out,
            &format!(
                "  {:<32} {:<10} {} rows ({} error, {} malformed)  {}",
                job.job_id,
                job.state.as_str(),
                job.counts.rows_ingested,
                job.counts.error_rows,
                job.counts.malformed_rows,
                job_note(job)
            ),
        )?;
    }
    line(out, "")?;
    line(out, &format!("Rows of {SUCCEEDED_BATCH}:"))?;
    for row in pipeline.store.list_rows(SUCCEEDED_BATCH).await? {
        line(
            out,
            &format!(
                "  {:<16} {:<9} {}",
                row.key,
                row.status.as_str(),
                row_text(&row)
            ),
        )?;
    }
    line(out, "")?;
    line(
        out,
        &format!(
            "The demo's store is kept in {}:\n  gemini-hooks results --data-dir {}\n  gemini-hooks results --data-dir {} --job {SUCCEEDED_BATCH}",
            data_dir.display(),
            data_dir.display(),
            data_dir.display()
        ),
    )?;
    line(
        out,
        "Next: `gemini-hooks dev` runs this pipeline for real deliveries (see README, Run locally).",
    )
}

/// Waits until every job is recorded in a terminal state and the queue is empty.
async fn wait_for_jobs(pipeline: &Pipeline, ids: &[&str]) -> Result<Vec<JobRecord>, CliError> {
    let deadline = Instant::now() + CONSUMER_TIMEOUT;
    loop {
        let stats = pipeline.store.queue_stats(now_ms()).await?;
        let drained = stats.visible + stats.invisible == 0;
        let mut done = Vec::new();
        for id in ids {
            match pipeline.store.load_job(id).await? {
                Some(job) if job.state.is_terminal() => done.push(job),
                _ => break,
            }
        }
        if drained && done.len() == ids.len() {
            return Ok(done);
        }
        if Instant::now() > deadline {
            return Err(CliError::Failed(format!(
                "the consumer did not finish within {} s; run with --verbose to see its logs",
                CONSUMER_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
