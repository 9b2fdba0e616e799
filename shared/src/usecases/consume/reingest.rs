//! Re-ingest (`gemini-hooks reingest`): a finished batch's results downloaded again and every
//! row rewritten in place — after a bad deploy wrote wrong rows, or a table was restored.
//!
//! Rows are keyed by their row id, so a rewrite replaces what is there and any number of
//! replays converge on the same rows. The job keeps its state (SUCCEEDED) and its downstream
//! event is not sent again; the pass's progress and its count of rows rewritten live on the
//! record under `reingest`, so a pass that runs out of time hands over exactly as an ingest does
//! (a `Reingest` message with the next part; the record's checkpoint says where it starts) and a
//! redelivered request resumes instead of starting over.

use std::sync::Arc;

use serde_json::json;

use super::Consumer;
use super::error::{ConsumeError, Handled};
use super::ingest::Pass;
use super::rows::{apply_stats, to_row};
use super::writes::{time_left, within};
use crate::domain::envelope::ReingestRequest;
use crate::domain::event::JobKind;
use crate::domain::gemini::{BatchOutput, BatchState, normalize_batch_id};
use crate::domain::jobs::{Checkpoint, JobRecord, JobState, ReingestRecord};
use crate::domain::results::from_inline;
use crate::ports::ResultsStore;
use crate::ports::gemini::GeminiError;
use crate::ports::metrics::metric;

/// Rows written this long before a pass began are the ones it removes: the instances that run
/// its parts may disagree a little on the time.
pub const REINGEST_CLOCK_MARGIN_MS: i64 = 5 * 60 * 1000;

/// `base` with the progress of the pass in `work` (its counters and checkpoint) under
/// `reingest`; finished at `finished_at_ms` when given. The pass's start comes from `base`,
/// which carries this request's pass from its start on.
pub(super) fn with_progress(
    base: &JobRecord,
    request: &ReingestRequest,
    work: &JobRecord,
    finished_at_ms: Option<i64>,
) -> JobRecord {
    let mut record = base.clone();
    record.updated_at_ms = work.updated_at_ms.max(base.updated_at_ms);
    let own = base
        .reingest
        .as_ref()
        .filter(|r| r.request_id == request.request_id);
    record.reingest = Some(ReingestRecord {
        request_id: request.request_id.clone(),
        requested_at_ms: request.requested_at_ms,
        finished_at_ms,
        checkpoint: work.checkpoint.clone(),
        rows_rewritten: work.counts.rows_ingested,
        error_rows: work.counts.error_rows,
        malformed_rows: work.counts.malformed_rows,
        started_at_ms: own.and_then(|r| r.started_at_ms),
        rows_removed: own.map_or(0, |r| r.rows_removed),
    });
    record
}

impl Consumer {
    /// Handles a `Reingest` message: checks the job may be re-ingested, asks the API for its
    /// results and rewrites them (resuming the same request's pass where it stopped).
    pub(super) async fn handle_reingest(
        &self,
        request: ReingestRequest,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let store = Arc::clone(self.routes.for_group(request.job_group.as_deref()));
        let job_id = &request.job_id;
        let Some(job) = within(store.load_job(job_id)).await?? else {
            return Err(ConsumeError::Poison(format!(
                "reingest of {job_id}: no such job in this results table (only a job ingested \
                 here can be re-ingested; check --job-group)"
            )));
        };
        if job.kind != JobKind::Batch {
            return Err(ConsumeError::Poison(format!(
                "reingest of {job_id}: only batches have results to re-ingest"
            )));
        }
        match job.state {
            JobState::Succeeded => {}
            state if state.is_terminal() => {
                return Err(ConsumeError::Poison(format!(
                    "reingest of {job_id}: the job is {}, it has no results",
                    state.as_str()
                )));
            }
            // Its first ingest is still running (or waiting): retried until it is done.
            state => {
                return Err(ConsumeError::NotReady(format!(
                    "reingest of {job_id}: the job is {}; its ingest has not finished",
                    state.as_str()
                )));
            }
        }
        let same = job
            .reingest
            .as_ref()
            .filter(|r| r.request_id == request.request_id);
        if let Some(done) = same.filter(|r| r.finished_at_ms.is_some()) {
            return Ok(Handled::Skipped {
                reason: format!(
                    "reingest {} already done ({} rows rewritten)",
                    request.request_id, done.rows_rewritten
                ),
            });
        }
        // A hand-over of a pass another request took over stops: two passes restarting each
        // other at byte 0 would loop forever (each message "succeeding"). The newer request
        // finishes the job's rows.
        if request.part > 0
            && let Some(other) = job
                .reingest
                .as_ref()
                .filter(|r| r.request_id != request.request_id)
        {
            return Ok(Handled::Skipped {
                reason: format!(
                    "reingest {} superseded by reingest {}",
                    request.request_id, other.request_id
                ),
            });
        }
        let resume = same.and_then(|r| {
            r.checkpoint
                .clone()
                .map(|c| (c, r.rows_rewritten, r.error_rows, r.malformed_rows))
        });
        // A redelivered or handed-over request keeps its pass's start; a new one starts now.
        let started_at_ms = match same {
            Some(r) => r.started_at_ms,
            None => Some(self.clock.now_ms()),
        };
        let rows_removed = same.map_or(0, |r| r.rows_removed);

        let op = match within(self.gemini.get_batch(job_id)).await? {
            Ok(op) => op,
            Err(e @ (GeminiError::NotFound { .. } | GeminiError::Invalid(_))) => {
                return Err(ConsumeError::Poison(format!(
                    "reingest of {job_id}: the Gemini API cannot give its results: {e}"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if normalize_batch_id(&op.name) != *job_id || !matches!(op.state, BatchState::Succeeded) {
            return Err(ConsumeError::Poison(format!(
                "reingest of {job_id}: the Gemini API reports {} for {}",
                op.state.as_str(),
                op.name
            )));
        }

        let mut work = job.clone();
        apply_stats(&mut work, &op);
        work.counts.rows_ingested = 0;
        work.counts.error_rows = 0;
        work.counts.malformed_rows = 0;
        work.checkpoint = None;
        work.updated_at_ms = self.clock.now_ms();
        let mut base = job;
        apply_stats(&mut base, &op);
        // From here on `base` carries this request's pass (and its start) for `with_progress`.
        base.reingest = Some(ReingestRecord {
            request_id: request.request_id.clone(),
            requested_at_ms: request.requested_at_ms,
            finished_at_ms: None,
            checkpoint: None,
            rows_rewritten: 0,
            error_rows: 0,
            malformed_rows: 0,
            started_at_ms,
            rows_removed,
        });
        match op.output {
            None => Err(ConsumeError::Poison(format!(
                "reingest of {job_id}: the batch has no results (neither a file nor inline \
                 responses)"
            ))),
            Some(BatchOutput::Inline(responses)) => {
                base.output = Some(json!({"inlined_responses": responses.len()}));
                let cutoff = time_left().map(|t| t.cutoff);
                let now = self.clock.now_ms();
                let mut writer = self.row_writer(&store);
                for (i, response) in responses.iter().enumerate() {
                    let row = to_row(&work, from_inline(i, response), now);
                    writer.push(row, &mut work, cutoff).await?;
                }
                writer.drain(&mut work, cutoff).await?;
                self.finish_reingest(store.as_ref(), base, &request, work)
                    .await
            }
            Some(BatchOutput::File(file)) => {
                base.output = Some(json!({"responses_file": file}));
                let start = match resume.filter(|(c, ..)| c.file == file) {
                    Some((checkpoint, rows, errors, malformed)) => {
                        work.counts.rows_ingested = rows;
                        work.counts.error_rows = errors;
                        work.counts.malformed_rows = malformed;
                        checkpoint
                    }
                    None => Checkpoint {
                        file,
                        byte_offset: 0,
                        lines: 0,
                    },
                };
                work.checkpoint = Some(start.clone());
                work.updated_at_ms = self.clock.now_ms();
                // The pass is on the record before its first row: `results` shows it running.
                let started = with_progress(&base, &request, &work, None);
                within(store.save_job(&started)).await??;
                let pass = Pass::Reingest {
                    base: Box::new(base),
                    request,
                };
                self.stream_file(store, work, start, pass, deadline_ms)
                    .await
            }
        }
    }

    /// Ends a pass: the stored count of rows and the pass's counters on the record, the pass
    /// marked finished. The state and the downstream event stay as they were.
    pub(super) async fn finish_reingest(
        &self,
        store: &dyn ResultsStore,
        mut base: JobRecord,
        request: &ReingestRequest,
        work: JobRecord,
    ) -> Result<Handled, ConsumeError> {
        // Every line of the file has its row rewritten by now: a row older than the pass is
        // under a key the file does not have (a bad deploy's), and goes.
        let started = base
            .reingest
            .as_ref()
            .filter(|r| r.request_id == request.request_id)
            .and_then(|r| r.started_at_ms);
        // An attempt that was cut short (and is delivered again) saved what it set out to
        // remove: the rows still there are among them.
        let planned = base.reingest.as_ref().map_or(0, |r| r.rows_removed);
        let removed = match started {
            Some(t) => {
                let before = t.saturating_sub(REINGEST_CLOCK_MARGIN_MS);
                let stale = within(store.count_rows_before(&base.job_id, before)).await??;
                let removed = planned.max(stale);
                if stale > 0 {
                    if let Some(own) = base.reingest.as_mut() {
                        own.rows_removed = removed;
                    }
                    let noted = with_progress(&base, request, &work, None);
                    within(store.save_job(&noted)).await??;
                }
                // Also when no row is stale: parts an older write left behind go too.
                within(store.delete_rows_before(&base.job_id, before)).await??;
                removed
            }
            None => 0,
        };
        if let Some(own) = base.reingest.as_mut() {
            own.rows_removed = removed;
        }
        let stored = within(store.count_rows(&base.job_id)).await??;
        let now = self.clock.now_ms();
        base.counts.rows_ingested = stored;
        base.counts.error_rows = work.counts.error_rows;
        base.counts.malformed_rows = work.counts.malformed_rows;
        base.counts.duplicate_keys = work.counts.rows_ingested.saturating_sub(stored);
        base.updated_at_ms = now;
        let record = with_progress(&base, request, &work, Some(now));
        if !within(store.save_job(&record)).await?? {
            // Only a state change could refuse it, and a SUCCEEDED job has none left.
            return Err(ConsumeError::NotReady(format!(
                "reingest of {}: the job record changed under the pass",
                base.job_id
            )));
        }
        let rows_rewritten = work.counts.rows_ingested;
        tracing::info!(
            rows_rewritten,
            rows_removed = removed,
            rows = stored,
            error_rows = work.counts.error_rows,
            malformed_rows = work.counts.malformed_rows,
            "results re-ingested"
        );
        self.metrics
            .set()
            .count(metric::ROWS_REWRITTEN, rows_rewritten)
            .property("rows_removed", removed)
            .property("job_id", base.job_id.as_str())
            .property("reingest", request.request_id.as_str())
            .flush();
        Ok(Handled::Reingested {
            job_id: base.job_id,
            rows_rewritten,
        })
    }
}
