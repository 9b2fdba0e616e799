//! `gemini-hooks results`: jobs, result rows and dead letters, from the local store or a
//! deployed results table (`--stack`, `--aws --table`). Rows are read a page at a time.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use clap::Args;
use gemini_hooks::adapters::sqlite::{DeadLetter, SqliteStore};
use gemini_hooks::domain::envelope::QueueEnvelope;
use gemini_hooks::domain::jobs::{JobRecord, ResultRow, RowStatus};
use gemini_hooks::ports::{ResultsStore, StoreError};
use gemini_hooks::usecases::read_rows::{EachRowError, PAGE_ROWS, each_row};
use serde_json::{Value, json};

use crate::support::error::CliError;
use crate::support::layout::routed_tables;
use crate::support::output::{line, print_json, table, write_out};
use crate::support::source::{Source, SourceArgs};
use crate::support::util::{now_ms, one_line, rfc3339_ms};

#[derive(Debug, Clone, Args)]
pub struct ResultsArgs {
    /// Show this job and its rows (e.g. batches/abc; the `batches/` prefix is optional).
    #[arg(long, value_name = "ID")]
    pub job: Option<String>,

    /// Machine-readable JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Most rows to show (0 = all). Default: 50 in a table, all with --json. Without --job:
    /// most jobs to list, newest first (0 = all), default 50.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// List the dead-lettered queue messages instead (local store only).
    #[arg(long)]
    pub dead_letters: bool,

    #[command(flatten)]
    pub source: SourceArgs,
}

pub const LONG_ABOUT: &str = "\
List jobs, result rows and dead letters.

Reads the local data directory of `gemini-hooks dev` by default. --stack NAME reads a deployed
stack instead: the results table named by its CloudFormation output ResultsTableName (and, with
--table, one of the tables its ResultsRoutes output routes job groups to); --aws --table NAME
reads a DynamoDB table directly. AWS credentials and region come from the usual places
(environment, profile, role). Large rows stored gzip-compressed or in parts are reassembled.

Examples:
  gemini-hooks results --stack gemini-hooks                    jobs of the deployed stack
  gemini-hooks results --stack gemini-hooks --job batches/abc  a job and its first rows
  gemini-hooks results --aws --table my-results --job abc --json";

/// Rows shown in a table when `--limit` is not given.
const DEFAULT_TABLE_ROWS: usize = 50;
/// Width of the text column.
const TEXT_WIDTH: usize = 60;

/// Finds a job by the id as typed: exact, or with the `batches/` / `interactions/` prefix.
pub async fn find_job(store: &dyn ResultsStore, id: &str) -> Result<Option<JobRecord>, StoreError> {
    let id = id.trim();
    for candidate in [
        id.to_owned(),
        format!("batches/{id}"),
        format!("interactions/{id}"),
    ] {
        if let Some(job) = store.load_job(&candidate).await? {
            return Ok(Some(job));
        }
    }
    Ok(None)
}

/// The job `id` in `source`, or an error saying where it was looked for.
pub async fn require_job(source: &Source, id: &str) -> Result<JobRecord, CliError> {
    match find_job(source.store(), id).await {
        Ok(Some(job)) => Ok(job),
        Ok(None) => Err(CliError::Failed(format!(
            "no job `{id}` in {} (list them with `gemini-hooks results{}`)",
            source.describe(),
            source_flags(source)
        ))),
        Err(e) => Err(source.error(e)),
    }
}

/// The flags that select `source` again, for hints.
fn source_flags(source: &Source) -> String {
    match source {
        Source::Local { .. } => String::new(),
        Source::Aws {
            stack: Some(s),
            store,
        } if s.results == store.table() => format!(" --stack {}", s.stack),
        Source::Aws {
            stack: Some(s),
            store,
        } => format!(" --stack {} --table {}", s.stack, store.table()),
        Source::Aws { store, .. } => format!(" --aws --table {}", store.table()),
    }
}

/// Runs `gemini-hooks results`.
pub async fn run(args: ResultsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if args.dead_letters && args.source.is_aws() {
        return Err(CliError::Usage(
            "--dead-letters reads the local queue; a deployed stack's dead letters are in its \
             SQS dead-letter queue (output EventsDeadLetterQueueUrl; README, Redrive the \
             dead-letter queue)"
                .into(),
        ));
    }
    let source = args.source.open().await?;
    let limit = match args.limit {
        Some(0) => usize::MAX,
        Some(n) => n,
        None if args.json => usize::MAX,
        None => DEFAULT_TABLE_ROWS,
    };
    if args.dead_letters {
        let Source::Local { store, .. } = &source else {
            return Ok(());
        };
        let dead = store.dead_letters().await?;
        return if args.json {
            print_json(
                out,
                &Value::Array(dead.iter().map(dead_letter_json).collect()),
            )
        } else {
            print_dead_letters(out, &dead)
        };
    }
    match &args.job {
        None => {
            // Jobs are listed newest first, 50 unless --limit says otherwise (0: all), also
            // with --json: a deployed table may hold years of them.
            let shown = match args.limit {
                Some(0) => None,
                Some(n) => Some(n),
                None => Some(DEFAULT_TABLE_ROWS),
            };
            let mut jobs = source
                .store()
                .list_jobs(shown.map(|n| n.saturating_add(1)))
                .await
                .map_err(|e| source.error(e))?;
            let more = shown.is_some_and(|n| jobs.len() > n);
            if let Some(n) = shown {
                jobs.truncate(n);
            }
            if more {
                eprintln!(
                    "showing the {} most recently updated jobs; --limit N for more (0: all)",
                    jobs.len()
                );
            }
            if args.json {
                let v = serde_json::to_value(&jobs)
                    .map_err(|e| CliError::Failed(format!("cannot encode jobs: {e}")))?;
                print_json(out, &v)
            } else {
                print_jobs(out, &jobs)?;
                match &source {
                    // The queue and the routed tables live in the main store's directory; a
                    // routed table's own file has no queue.
                    Source::Local {
                        store,
                        routed: false,
                    } => {
                        print_elsewhere(out, store, &args.source.data.data_dir, jobs.is_empty())
                            .await?
                    }
                    Source::Aws {
                        stack: Some(s),
                        store,
                    } if s.results == store.table() && !s.routed().is_empty() => {
                        line(out, "")?;
                        let hints: Vec<String> = s
                            .routed()
                            .iter()
                            .map(|t| format!("`results --stack {} --table {t}`", s.stack))
                            .collect();
                        line(
                            out,
                            &format!(
                                "  jobs routed by ROUTES are in their own tables: {}",
                                hints.join(", ")
                            ),
                        )?;
                    }
                    _ => {}
                }
                Ok(())
            }
        }
        Some(id) => {
            let job = require_job(&source, id).await?;
            if args.json {
                print_job_json(out, &source, &job, limit).await
            } else {
                print_jobs(out, std::slice::from_ref(&job))?;
                line(out, "")?;
                let mut rows = Vec::new();
                // One more than shown, to know whether there are more.
                each_row(
                    source.store(),
                    &job.job_id,
                    PAGE_ROWS.min(limit.saturating_add(1)),
                    |row| {
                        rows.push(row);
                        Ok::<_, CliError>(if rows.len() > limit {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        })
                    },
                )
                .await
                .map_err(|e| read_error(&source, e))?;
                let more = rows.len() > limit;
                rows.truncate(limit);
                print_rows(out, &rows, more.then_some(job.counts.rows_ingested))
            }
        }
    }
}

/// A failed read of rows, saying which store.
pub fn read_error(source: &Source, e: EachRowError<CliError>) -> CliError {
    match e {
        EachRowError::Store(e) => source.error(e),
        EachRowError::Sink(e) => e,
    }
}

/// `{"job": …, "rows": […], "total_rows": n}`, as `serde_json::to_string_pretty` would print
/// it, written a row at a time.
async fn print_job_json(
    out: &mut dyn Write,
    source: &Source,
    job: &JobRecord,
    limit: usize,
) -> Result<(), CliError> {
    let job_text = pretty(job)?;
    write_out(
        out,
        format!("{{\n  \"job\": {},\n  \"rows\": [", indent(&job_text, "  ")).as_bytes(),
    )?;
    let mut shown = 0usize;
    let read = each_row(
        source.store(),
        &job.job_id,
        PAGE_ROWS.min(limit.saturating_add(1)),
        |row| {
            if shown == limit {
                return Ok(ControlFlow::Break(()));
            }
            let text = pretty(&row)?;
            let sep = if shown == 0 { "\n    " } else { ",\n    " };
            write_out(out, format!("{sep}{}", indent(&text, "    ")).as_bytes())?;
            shown += 1;
            Ok(ControlFlow::Continue(()))
        },
    )
    .await
    .map_err(|e| read_error(source, e))?;
    // The reading went past the last row shown only when the limit cut it short: count then.
    let shown_n = u64::try_from(shown).unwrap_or(u64::MAX);
    let total = if read > shown_n {
        source
            .store()
            .count_rows(&job.job_id)
            .await
            .map_err(|e| source.error(e))?
    } else {
        shown_n
    };
    let close = if shown == 0 { "]" } else { "\n  ]" };
    write_out(
        out,
        format!("{close},\n  \"total_rows\": {total}\n}}\n").as_bytes(),
    )
}

/// Every line of `text` after the first, indented by `by`.
fn indent(text: &str, by: &str) -> String {
    text.replace('\n', &format!("\n{by}"))
}

/// Pretty JSON, as `print_json` writes it (through a `Value`, so with its keys sorted).
fn pretty<T: serde::Serialize>(v: &T) -> Result<String, CliError> {
    serde_json::to_value(v)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .map_err(|e| CliError::Failed(format!("cannot encode JSON: {e}")))
}

/// A one-line summary of what happened to a job.
pub fn job_note(job: &JobRecord) -> String {
    if let Some(e) = &job.error {
        let code = e
            .code
            .as_deref()
            .map(|c| format!("error {c}: "))
            .unwrap_or_default();
        return one_line(&format!("{code}{}", e.message), TEXT_WIDTH);
    }
    let mut parts = Vec::new();
    if let Some(n) = job.counts.request_count {
        parts.push(format!("{n} requests"));
    }
    if let Some(g) = &job.job_group {
        parts.push(format!("group {g}"));
    }
    if let Some(c) = &job.checkpoint
        && !job.state.is_terminal()
    {
        parts.push(format!("at line {} (byte {})", c.lines, c.byte_offset));
    }
    parts.join(", ")
}

/// Where the work not shown yet is: queued or retrying messages, dead letters, routed tables.
async fn print_elsewhere(
    out: &mut dyn Write,
    store: &SqliteStore,
    data_dir: &Path,
    no_jobs: bool,
) -> Result<(), CliError> {
    let stats = store.queue_stats(now_ms()).await?;
    let mut notes = Vec::new();
    if stats.visible + stats.invisible > 0 {
        notes.push(format!(
            "{} message(s) queued ({} waiting, {} being handled or waiting to be retried): \
             `gemini-hooks dev` handles them while it runs (not with --receive-only)",
            stats.visible + stats.invisible,
            stats.visible,
            stats.invisible
        ));
    }
    if stats.dead_letters > 0 {
        notes.push(format!(
            "{} dead letter(s): `gemini-hooks results --dead-letters` shows why they failed, \
             `gemini-hooks redrive` retries them",
            stats.dead_letters
        ));
    }
    let routed = routed_tables(data_dir);
    if !routed.is_empty() {
        notes.push(format!(
            "jobs routed by ROUTES are in their own tables: {}",
            routed
                .iter()
                .map(|t| format!("`results --table {t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if no_jobs && notes.is_empty() {
        notes.push(
            "nothing queued either: send a delivery to `gemini-hooks dev` (`gemini-hooks send`)"
                .into(),
        );
    }
    if !notes.is_empty() && !no_jobs {
        line(out, "")?;
    }
    for n in notes {
        line(out, &format!("  {n}"))?;
    }
    Ok(())
}

fn print_jobs(out: &mut dyn Write, jobs: &[JobRecord]) -> Result<(), CliError> {
    if jobs.is_empty() {
        return line(out, "No jobs in this table yet.");
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.job_id.clone(),
                kind_name(j),
                j.state.as_str().to_owned(),
                j.counts.rows_ingested.to_string(),
                (j.counts.error_rows + j.counts.malformed_rows).to_string(),
                rfc3339_ms(j.updated_at_ms),
                job_note(j),
            ]
        })
        .collect();
    table(
        out,
        &["JOB", "KIND", "STATE", "ROWS", "ERRORS", "UPDATED", "NOTE"],
        &rows,
    )
}

fn kind_name(job: &JobRecord) -> String {
    match serde_json::to_value(job.kind) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// The text shown for a row: the answer, or the error.
pub fn row_text(row: &ResultRow) -> String {
    let text = match row.status {
        RowStatus::Ok => row.text.clone().unwrap_or_default(),
        RowStatus::Error | RowStatus::Malformed => {
            let code = row
                .error_code
                .map(|c| format!("[{c}] "))
                .unwrap_or_default();
            format!("{code}{}", row.error_message.clone().unwrap_or_default())
        }
    };
    one_line(&text, TEXT_WIDTH)
}

/// The rows; `more`: there are more rows than shown, and the job record counts this many.
fn print_rows(out: &mut dyn Write, rows: &[ResultRow], more: Option<u64>) -> Result<(), CliError> {
    if rows.is_empty() && more.is_none() {
        return line(out, "No result rows for this job.");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.key.clone(),
                r.line.to_string(),
                r.status.as_str().to_owned(),
                r.total_tokens.map(|t| t.to_string()).unwrap_or_default(),
                row_text(r),
            ]
        })
        .collect();
    table(
        out,
        &["KEY", "LINE", "STATUS", "TOKENS", "TEXT / ERROR"],
        &cells,
    )?;
    if let Some(recorded) = more {
        line(
            out,
            &format!(
                "… the first {} rows shown, of {recorded} the job record counts (--limit 0 \
                 shows all, --json for everything, `gemini-hooks export` as JSON lines)",
                rows.len()
            ),
        )?;
    }
    Ok(())
}

/// Event type and job of a dead-lettered envelope, if it is one.
fn describe_envelope(body: &str) -> (String, String) {
    match QueueEnvelope::from_body(body) {
        Ok(QueueEnvelope::Webhook(w)) => (
            w.event.received_type.clone(),
            w.event.job_id.unwrap_or_default(),
        ),
        Ok(QueueEnvelope::Continuation(c)) => ("continuation".into(), c.job_id),
        Ok(QueueEnvelope::Reingest(r)) => (format!("reingest {}", r.request_id), r.job_id),
        Ok(QueueEnvelope::Stored(s)) => {
            (format!("stored payload ({} bytes)", s.bytes), String::new())
        }
        Err(_) => ("(not an envelope)".into(), String::new()),
    }
}

fn print_dead_letters(out: &mut dyn Write, dead: &[DeadLetter]) -> Result<(), CliError> {
    if dead.is_empty() {
        return line(out, "No dead letters.");
    }
    let rows: Vec<Vec<String>> = dead
        .iter()
        .map(|d| {
            let (event, job) = describe_envelope(&d.body);
            vec![
                d.id.clone(),
                d.receive_count.to_string(),
                rfc3339_ms(d.dead_lettered_at_ms),
                event,
                job,
                one_line(d.last_error.as_deref().unwrap_or("-"), TEXT_WIDTH),
            ]
        })
        .collect();
    table(
        out,
        &[
            "MESSAGE",
            "RECEIVES",
            "DEAD SINCE",
            "EVENT",
            "JOB",
            "LAST ERROR",
        ],
        &rows,
    )?;
    line(
        out,
        "Fix the cause, then `gemini-hooks redrive` (or --id MESSAGE) moves them back to the queue.",
    )
}

fn dead_letter_json(d: &DeadLetter) -> Value {
    json!({
        "id": d.id,
        "receive_count": d.receive_count,
        "enqueued_at_ms": d.enqueued_at_ms,
        "dead_lettered_at_ms": d.dead_lettered_at_ms,
        "last_error": d.last_error,
        "attributes": d.attributes.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "body": serde_json::from_str::<Value>(&d.body).unwrap_or_else(|_| Value::String(d.body.clone())),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gemini_hooks::domain::event::JobKind;

    fn row(key: &str, line: u64) -> ResultRow {
        ResultRow {
            job_id: "batches/p".into(),
            key: key.into(),
            line,
            status: RowStatus::Ok,
            text: Some(format!("line one of {key}\nline two")),
            finish_reason: Some("STOP".into()),
            prompt_tokens: Some(3),
            candidates_tokens: None,
            total_tokens: None,
            thoughts_tokens: None,
            model_version: None,
            response_json: Some("{\"a\":\n1}".into()),
            error_code: None,
            error_message: None,
            keyless: false,
            ingested_at_ms: 9,
        }
    }

    /// The streamed `--json` output is exactly what pretty-printing the whole value gives.
    #[tokio::test]
    async fn job_json_streams_what_print_json_would_print() {
        let dir = std::env::temp_dir().join(format!("gh-results-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(dir.join("s.sqlite3")).unwrap();
        let mut job = JobRecord::new("batches/p", JobKind::Batch, 1);
        job.user_metadata = Some(json!({"z": 1, "a": [1, {"b": null}]}));
        assert!(store.save_job(&job).await.unwrap());
        let source = Source::Local {
            store: store.clone(),
            routed: false,
        };
        let expected = |rows: &[ResultRow], total: usize| {
            let v = json!({"job": job, "rows": rows, "total_rows": total});
            format!("{}\n", serde_json::to_string_pretty(&v).unwrap())
        };
        let mut out = Vec::new();
        print_job_json(&mut out, &source, &job, usize::MAX)
            .await
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expected(&[], 0));

        let rows = vec![row("k1", 1), row("k2", 2), row("k3", 3)];
        store.put_rows(&rows).await.unwrap();
        for (limit, shown) in [(usize::MAX, 3), (3, 3), (2, 2), (0, 0)] {
            let mut out = Vec::new();
            print_job_json(&mut out, &source, &job, limit)
                .await
                .unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                expected(&rows[..shown], 3),
                "limit {limit}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
