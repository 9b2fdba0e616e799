//! `gemini-hooks redrive`: the local dead letters back to the queue, as an SQS redrive does for
//! the deployed dead-letter queue.

use std::io::Write;

use clap::Args;

use crate::support::args::DataDirArg;
use crate::support::error::CliError;
use crate::support::layout::{open_existing, store_path};
use crate::support::output::line;
use crate::support::util::now_ms;

pub const LONG_ABOUT: &str = "\
Move the local dead letters back to the queue, as an SQS redrive does for the deployed DLQ.

A message lands in the dead letters after --max-receive-count failed receives; `gemini-hooks
results --dead-letters` shows why its last receive failed. Fix the cause, then redrive: the
messages go to the end of the queue with a fresh receive count, and a running `gemini-hooks dev`
picks them up within a second (otherwise the next start does). Replays are safe: rows are keyed
by (job, key) and job state only moves forward.";

#[derive(Debug, Clone, Args)]
pub struct RedriveArgs {
    /// Only this dead letter (its MESSAGE id in `results --dead-letters`); repeatable.
    /// Default: all of them.
    #[arg(long = "id", value_name = "MESSAGE_ID")]
    pub ids: Vec<String>,

    #[command(flatten)]
    pub data: DataDirArg,
}

/// Runs `gemini-hooks redrive`.
pub async fn run(args: RedriveArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let store = open_existing(store_path(&args.data.data_dir))?;
    let ids = (!args.ids.is_empty()).then(|| args.ids.clone());
    let done = store.redrive(ids, now_ms()).await?;
    if !done.unknown.is_empty() {
        return Err(CliError::Usage(format!(
            "not a dead letter in {}: {} (see `gemini-hooks results --dead-letters`); nothing \
             was moved",
            store.path().display(),
            done.unknown.join(", ")
        )));
    }
    if done.moved.is_empty() {
        return line(out, "No dead letters to redrive.");
    }
    line(
        out,
        &format!(
            "Moved {} dead letter(s) back to the queue: {}",
            done.moved.len(),
            done.moved.join(", ")
        ),
    )?;
    line(
        out,
        "A running `gemini-hooks dev` on this data directory handles them within a second; \
         otherwise its next start does.",
    )
}
