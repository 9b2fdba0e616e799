//! `gemini-hooks reingest batches/ID`: ask the consumer to download a finished batch's results
//! again and rewrite every row, through the queue it reads (the local SQLite queue that `dev`
//! drains, or the deployed stack's SQS queue). The work itself is the consumer's
//! (`usecases::consume`, re-ingest), so it is bounded, checkpointed and retried like an ingest.

use std::io::Write;

use clap::Args;
use gemini_hooks::adapters::aws::sqs::SqsEventQueue;
use gemini_hooks::config::{Env, route_tables};
use gemini_hooks::domain::envelope::{QueueEnvelope, ReingestRequest};
use gemini_hooks::domain::gemini::normalize_batch_id;
use gemini_hooks::domain::jobs::JobState;
use gemini_hooks::ports::EventQueue;

use crate::commands::results::require_job;
use crate::support::args::DataDirArg;
use crate::support::error::CliError;
use crate::support::layout::{open_existing, store_path};
use crate::support::output::line;
use crate::support::source::SourceArgs;
use crate::support::stack;
use crate::support::util::now_ms;

pub const LONG_ABOUT: &str = "\
Download a finished batch's results again and rewrite every one of its rows — after a bad deploy
stored wrong rows, or a table was restored from an old backup.

The request goes through the queue the consumer reads, so the consumer does the work with its
usual limits, checkpoints and retries: locally the data directory's queue (a running `gemini-hooks
dev` picks it up within a second, otherwise its next start does); deployed, the stack's events
queue (--stack NAME, or --queue-url URL). Rows are keyed by (job, request key), so rewriting
replaces them and replays converge; once every line is rewritten, the job's rows from before the
pass (under keys the results file does not have) are removed. The job stays SUCCEEDED and no
second downstream event is sent; the job record's `reingest` shows the pass: `rows_rewritten`,
`rows_removed`, and `finished_at_ms` once done (`gemini-hooks results --job ID`).

Examples:
  gemini-hooks reingest batches/abc
  gemini-hooks reingest batches/abc --stack gemini-hooks
  gemini-hooks reingest batches/abc --job-group experiments --stack gemini-hooks";

#[derive(Debug, Clone, Args)]
pub struct ReingestArgs {
    /// The batch whose results to rewrite (batches/ID; the prefix is optional).
    #[arg(value_name = "BATCH")]
    pub job: String,

    /// The job's routing group (`user_metadata.job_group`), so its rows land in its table.
    /// Locally the table is the one `ROUTES` names for the group: run with the `ROUTES` that
    /// `dev` runs with.
    #[arg(long, value_name = "GROUP")]
    pub job_group: Option<String>,

    /// The deployed stack NAME: its events queue and results tables come from its outputs.
    #[arg(long, value_name = "NAME", conflicts_with = "queue_url")]
    pub stack: Option<String>,

    /// The deployed events queue, when there is no stack to read it from. The job is not
    /// checked first: the consumer's verdict is in its logs and on the job record.
    #[arg(long, value_name = "URL")]
    pub queue_url: Option<String>,

    #[command(flatten)]
    pub data: DataDirArg,
}

/// Runs `gemini-hooks reingest`.
pub async fn run(args: ReingestArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if args.job.trim().is_empty() {
        return Err(CliError::Usage("reingest needs a batch: batches/ID".into()));
    }
    let job_id = normalize_batch_id(&args.job);
    let job_group = args.job_group.clone().filter(|g| !g.trim().is_empty());
    let deployed = args.stack.is_some() || args.queue_url.is_some();

    // Refuse here what the consumer would refuse, so a mistake is an error now and not a dead
    // letter later.
    if args.queue_url.is_none() {
        // A stack's outputs map a group to its table; locally `dev` routes a group through
        // ROUTES, so the check reads the table ROUTES names (the group itself names no file).
        let table = match (&args.stack, &job_group) {
            (Some(_), group) => group.clone(),
            (None, Some(group)) => local_table(group)?,
            (None, None) => None,
        };
        let source = SourceArgs {
            stack: args.stack.clone(),
            table: table.clone(),
            aws: false,
            data: args.data.clone(),
        }
        .open()
        .await?;
        let job = require_job(&source, &job_id)
            .await
            .map_err(|e| match (e, &args.stack) {
                (CliError::Failed(m), None) if job_group.is_some() && table.is_none() => {
                    CliError::Failed(format!(
                        "{m}; locally a --job-group is found through ROUTES, as `dev` routes it, \
                     and ROUTES here names no table for it: run with the ROUTES dev runs with"
                    ))
                }
                (e, _) => e,
            })?;
        match job.state {
            JobState::Succeeded => {}
            state if state.is_terminal() => {
                return Err(CliError::Failed(format!(
                    "{job_id} is {}: a batch that did not succeed has no results to re-ingest",
                    state.as_str()
                )));
            }
            state => {
                return Err(CliError::Failed(format!(
                    "{job_id} is {}: its ingest has not finished; re-ingest it once it is \
                     SUCCEEDED",
                    state.as_str()
                )));
            }
        }
    }

    let request = ReingestRequest {
        job_id: job_id.clone(),
        job_group,
        request_id: uuid::Uuid::new_v4().to_string(),
        requested_at_ms: now_ms(),
        part: 0,
    };
    let message = QueueEnvelope::Reingest(request.clone())
        .to_message()
        .map_err(|e| CliError::Failed(format!("cannot encode the request: {e}")))?;

    let queued_on = if deployed {
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let queue_url =
            match (&args.queue_url, &args.stack) {
                (Some(url), _) => url.clone(),
                (None, Some(name)) => stack::describe(&aws, name).await?.queue_url.ok_or_else(
                    || {
                        CliError::Failed(format!(
                            "stack `{name}` has no output {}: pass the queue with --queue-url URL",
                            stack::QUEUE_OUTPUT
                        ))
                    },
                )?,
                (None, None) => unreachable_deployed()?,
            };
        let queue = SqsEventQueue::new(aws_sdk_sqs::Client::new(&aws), queue_url.clone());
        queue
            .enqueue(&message)
            .await
            .map_err(|e| CliError::Failed(format!("cannot send to {queue_url}: {e}")))?;
        queue_url
    } else {
        let store = open_existing(store_path(&args.data.data_dir))?;
        store.enqueue(&message).await.map_err(|e| {
            CliError::Failed(format!("cannot queue in {}: {e}", store.path().display()))
        })?;
        store.path().display().to_string()
    };

    line(
        out,
        &format!(
            "Queued the re-ingest of {job_id} (request {}) on {queued_on}.",
            request.request_id
        ),
    )?;
    let follow = match (&args.stack, deployed) {
        (Some(name), _) => format!(" --stack {name}"),
        (None, true) => " --aws --table TABLE".to_owned(),
        (None, false) => String::new(),
    };
    let waiting = if deployed {
        "The consumer picks it up from the queue."
    } else {
        "A running `gemini-hooks dev` on this data directory handles it within a second; \
         otherwise its next start does."
    };
    line(
        out,
        &format!(
            "{waiting} `gemini-hooks results{follow} --job {job_id}` shows its progress \
             (`reingest`: rows_rewritten, rows_removed, finished_at_ms)."
        ),
    )
}

/// The local table `dev` stores `group`'s jobs in: the one `ROUTES` names for it (read from this
/// process's environment, as `dev` reads it), else the default store (`None`), as the consumer
/// routes a group that has no route.
fn local_table(group: &str) -> Result<Option<String>, CliError> {
    let routes = route_tables(&Env::process())?;
    Ok(routes.get(group).cloned())
}

/// `deployed` is true only with --stack or --queue-url.
fn unreachable_deployed() -> Result<String, CliError> {
    Err(CliError::Usage(
        "a deployed re-ingest needs --stack NAME or --queue-url URL".into(),
    ))
}
