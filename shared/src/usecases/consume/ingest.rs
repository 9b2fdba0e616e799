//! Ingest: a finished batch's results, streamed line by line from its file (or read from the
//! inline responses), written as rows through a [`RowWriter`] (pipelined, bounded by bytes) with
//! checkpoints, and handed to a continuation message before the invocation deadline.

use std::borrow::Cow;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;

use super::Consumer;
use super::error::{ConsumeError, Handled};
use super::rows::to_row;
use super::writes::{RowWriter, WriteLimits, bounded, time_left, within};
use crate::domain::envelope::{Continuation, QueueEnvelope, ReingestRequest};
use crate::domain::gemini::{BatchOperation, BatchOutput};
use crate::domain::jobs::{Checkpoint, JobRecord, JobState};
use crate::domain::results::{LineSplitter, from_inline, record_from_line};
use crate::ports::ResultsStore;
use crate::ports::metrics::metric;

/// Whose progress a pass over a results file carries.
pub(super) enum Pass {
    /// The job's ingest and its continuations: the job record holds the progress.
    Ingest {
        /// The delivery that started it (logs).
        webhook_id: Option<String>,
        /// 0, then 1, 2, … for each continuation.
        part: u32,
    },
    /// A re-ingest (`super::reingest`): the record streamed is a working copy whose counters and
    /// checkpoint are the pass's; the stored record (`base`) keeps its state and carries them
    /// under `reingest`.
    Reingest {
        base: Box<JobRecord>,
        request: ReingestRequest,
    },
}

impl Pass {
    /// The record to store for the progress in `job`.
    fn record<'a>(&'a self, job: &'a JobRecord) -> Cow<'a, JobRecord> {
        match self {
            Self::Ingest { .. } => Cow::Borrowed(job),
            Self::Reingest { base, request } => {
                Cow::Owned(super::reingest::with_progress(base, request, job, None))
            }
        }
    }

    /// The message that carries on from `saved` in the next invocation.
    fn hand_over(&self, job: &JobRecord, file: &str, saved: &Progress) -> QueueEnvelope {
        match self {
            Self::Ingest { webhook_id, part } => QueueEnvelope::Continuation(Continuation {
                job_id: job.job_id.clone(),
                file: file.to_owned(),
                byte_offset: saved.offset,
                lines: saved.lines,
                webhook_id: webhook_id.clone(),
                job_group: job.job_group.clone(),
                part: part + 1,
            }),
            // The record's checkpoint says where the next part starts.
            Self::Reingest { request, .. } => QueueEnvelope::Reingest(ReingestRequest {
                part: request.part + 1,
                ..request.clone()
            }),
        }
    }

    fn part(&self) -> u32 {
        match self {
            Self::Ingest { part, .. } => *part,
            Self::Reingest { request, .. } => request.part,
        }
    }
}

/// Where the last saved checkpoint stands.
pub(super) struct Progress {
    offset: u64,
    lines: u64,
}

/// Why a file pass stopped before its end.
enum Stop {
    /// Less than the margin is left: hand the rest to a continuation.
    Deadline,
    /// The download broke: keep what is stored, retry the message.
    Broken(ConsumeError),
}

impl Consumer {
    pub(super) fn row_writer(&self, store: &Arc<dyn ResultsStore>) -> RowWriter {
        RowWriter::new(
            Arc::clone(store),
            self.budget.clone(),
            WriteLimits {
                rows: self.settings.rows_per_write,
                bytes: self.settings.flush_bytes,
                in_flight: self.settings.writes_in_flight,
            },
        )
    }

    /// Ingests the results of `op`, a batch the API reports SUCCEEDED.
    pub(super) async fn ingest_batch(
        &self,
        store: Arc<dyn ResultsStore>,
        mut job: JobRecord,
        op: BatchOperation,
        webhook_id: String,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        match op.output {
            None => Err(ConsumeError::NotReady(
                "the batch succeeded but its results are not visible yet".into(),
            )),
            Some(BatchOutput::Inline(responses)) => {
                job.output = Some(json!({"inlined_responses": responses.len()}));
                job.counts.rows_ingested = 0;
                job.counts.error_rows = 0;
                job.counts.malformed_rows = 0;
                let cutoff = time_left().map(|t| t.cutoff);
                let now = self.clock.now_ms();
                let mut writer = self.row_writer(&store);
                for (i, response) in responses.iter().enumerate() {
                    let row = to_row(&job, from_inline(i, response), now);
                    writer.push(row, &mut job, cutoff).await?;
                }
                writer.drain(&mut job, cutoff).await?;
                let job_id = job.job_id.clone();
                let rows = self.finish(store.as_ref(), job).await?;
                Ok(Handled::Ingested { job_id, rows })
            }
            Some(BatchOutput::File(file)) => {
                job.output = Some(json!({"responses_file": file}));
                // Resume where an earlier attempt stopped, if it was the same file.
                let resume = job.checkpoint.clone().filter(|c| c.file == file);
                if resume.is_none() {
                    job.counts.rows_ingested = 0;
                    job.counts.error_rows = 0;
                    job.counts.malformed_rows = 0;
                }
                let start = resume.unwrap_or(Checkpoint {
                    file: file.clone(),
                    byte_offset: 0,
                    lines: 0,
                });
                job.state = JobState::Ingesting;
                job.checkpoint = Some(start.clone());
                if !within(store.save_job(&job)).await?? {
                    return Ok(Handled::Skipped {
                        reason: "job finished concurrently".into(),
                    });
                }
                let pass = Pass::Ingest {
                    webhook_id: Some(webhook_id),
                    part: 0,
                };
                self.stream_file(store, job, start, pass, deadline_ms).await
            }
        }
    }

    pub(super) async fn handle_continuation(
        &self,
        c: Continuation,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let store = Arc::clone(self.routes.for_group(c.job_group.as_deref()));
        let Some(job) = within(store.load_job(&c.job_id)).await?? else {
            return Err(ConsumeError::Poison(format!(
                "continuation for unknown job {}",
                c.job_id
            )));
        };
        if job.state.is_terminal() {
            return Ok(Handled::Skipped {
                reason: format!("job already {}", job.state.as_str()),
            });
        }
        // The record's checkpoint is authoritative: it is saved together with the counters.
        let start = job
            .checkpoint
            .clone()
            .filter(|k| k.file == c.file)
            .unwrap_or(Checkpoint {
                file: c.file.clone(),
                byte_offset: c.byte_offset,
                lines: c.lines,
            });
        let pass = Pass::Ingest {
            webhook_id: c.webhook_id,
            part: c.part,
        };
        self.stream_file(store, job, start, pass, deadline_ms).await
    }

    /// Streams `start.file` from `start.byte_offset`, writing rows and checkpoints, until the end
    /// of the file or until the deadline is near (then hands over to a continuation message).
    /// A checkpoint only ever covers lines whose writes have completed.
    pub(super) async fn stream_file(
        &self,
        store: Arc<dyn ResultsStore>,
        mut job: JobRecord,
        start: Checkpoint,
        pass: Pass,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let file = start.file.clone();
        let time = time_left();
        let cutoff = time.map(|t| t.cutoff);
        let mut stream = within(self.gemini.download(&file, start.byte_offset)).await??;
        let mut splitter =
            LineSplitter::new(start.byte_offset, start.lines, self.settings.max_line_bytes);
        let mut writer = self.row_writer(&store);
        let mut saved = Progress {
            offset: start.byte_offset,
            lines: start.lines,
        };
        let mut finished = false;
        let stop = loop {
            match bounded(cutoff, stream.next()).await {
                Ok(Some(Ok(chunk))) => splitter.push(&chunk),
                Ok(Some(Err(e))) => break Some(Stop::Broken(e.into())),
                Ok(None) => finished = true,
                // The file stalls past the cutoff: hand over what this pass ingested; a pass
                // that ingested nothing fails instead, so a dead download cannot loop forever.
                Err(e) if splitter.line_count() == start.lines => return Err(e),
                Err(_) => break Some(Stop::Deadline),
            }
            let now = self.clock.now_ms();
            let mut next = splitter.next_line();
            if finished && next.is_none() {
                next = splitter.finish();
            }
            while let Some(line) = next {
                let row = to_row(&job, record_from_line(&line), now);
                drop(line);
                writer.push(row, &mut job, cutoff).await?;
                next = splitter.next_line();
                if finished && next.is_none() {
                    next = splitter.finish();
                }
            }
            if finished {
                break None;
            }
            if splitter.line_count().saturating_sub(saved.lines)
                >= self.settings.checkpoint_every_lines
            {
                writer.drain(&mut job, cutoff).await?;
                self.save_checkpoint(
                    store.as_ref(),
                    &mut job,
                    &pass,
                    &file,
                    &splitter,
                    &mut saved,
                    cutoff,
                )
                .await?;
                tracing::info!(
                    lines = saved.lines,
                    bytes = saved.offset,
                    rows = job.counts.rows_ingested,
                    "ingest progress"
                );
            }
            if let Some(deadline) = deadline_ms
                && deadline.saturating_sub(self.clock.now_ms()) < self.settings.deadline_margin_ms
            {
                // A pass that did not complete one line would hand over to a pass that starts
                // at the same byte and does the same, forever, each message "succeeding": it
                // fails instead, so its retries end in the dead-letter queue, visibly.
                if splitter.line_count() == start.lines {
                    return Err(ConsumeError::OutOfTime(format!(
                        "no complete line within one invocation from byte {} (a line longer \
                         than a pass can download)",
                        start.byte_offset
                    )));
                }
                break Some(Stop::Deadline);
            }
        };
        // The hand-over may use the reserve kept before the deadline.
        let last = time.map(|t| t.last);
        if let Some(stop) = stop {
            // Keep what we have: a redelivery or the continuation resumes from the checkpoint.
            writer.drain(&mut job, last).await?;
            self.save_checkpoint(
                store.as_ref(),
                &mut job,
                &pass,
                &file,
                &splitter,
                &mut saved,
                last,
            )
            .await?;
            if let Stop::Broken(e) = stop {
                return Err(e);
            }
            let continuation = pass.hand_over(&job, &file, &saved);
            let message = continuation
                .to_message()
                .map_err(|e| ConsumeError::Poison(format!("cannot serialise continuation: {e}")))?;
            bounded(last, self.queue.enqueue(&message)).await??;
            tracing::info!(
                byte_offset = saved.offset,
                lines = saved.lines,
                part = pass.part() + 1,
                "deadline near: handed the rest to a continuation"
            );
            return Ok(Handled::Continued {
                job_id: job.job_id.clone(),
                byte_offset: saved.offset,
            });
        }
        writer.drain(&mut job, cutoff).await?;
        job.checkpoint = Some(Checkpoint {
            file,
            byte_offset: splitter.offset(),
            lines: splitter.line_count(),
        });
        match pass {
            Pass::Ingest { .. } => {
                let job_id = job.job_id.clone();
                let rows = self.finish(store.as_ref(), job).await?;
                Ok(Handled::Ingested { job_id, rows })
            }
            Pass::Reingest { base, request } => {
                self.finish_reingest(store.as_ref(), *base, &request, job)
                    .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn save_checkpoint(
        &self,
        store: &dyn ResultsStore,
        job: &mut JobRecord,
        pass: &Pass,
        file: &str,
        splitter: &LineSplitter,
        saved: &mut Progress,
        until: Option<tokio::time::Instant>,
    ) -> Result<(), ConsumeError> {
        job.checkpoint = Some(Checkpoint {
            file: file.to_owned(),
            byte_offset: splitter.offset(),
            lines: splitter.line_count(),
        });
        job.updated_at_ms = self.clock.now_ms();
        bounded(until, store.save_job(&pass.record(job))).await??;
        saved.offset = splitter.offset();
        saved.lines = splitter.line_count();
        Ok(())
    }

    /// Marks the job SUCCEEDED with the rows actually stored; returns that count.
    async fn finish(
        &self,
        store: &dyn ResultsStore,
        mut job: JobRecord,
    ) -> Result<u64, ConsumeError> {
        // The rows actually stored: a key repeated across writes left one row, not two.
        let written = job.counts.rows_ingested;
        let stored = within(store.count_rows(&job.job_id)).await??;
        job.counts.duplicate_keys = written.saturating_sub(stored);
        job.counts.rows_ingested = stored;
        let now = self.clock.now_ms();
        job.state = JobState::Succeeded;
        job.updated_at_ms = now;
        job.completed_at_ms = Some(now);
        within(store.save_job(&job)).await??;
        tracing::info!(
            rows = job.counts.rows_ingested,
            error_rows = job.counts.error_rows,
            malformed_rows = job.counts.malformed_rows,
            duplicate_keys = job.counts.duplicate_keys,
            lag_ms = job.event_received_at_ms.map(|r| now - r),
            "results ingested"
        );
        let mut set = self
            .metrics
            .set()
            .count(metric::JOBS_SUCCEEDED, 1)
            .count(metric::ROWS_INGESTED, job.counts.rows_ingested)
            .count(metric::ERROR_ROWS, job.counts.error_rows)
            .count(metric::MALFORMED_ROWS, job.counts.malformed_rows)
            .property("job_id", job.job_id.as_str());
        if let Some(received) = job.event_received_at_ms {
            set = set.milliseconds(metric::INGEST_LAG, now - received);
        }
        set.flush();
        Ok(job.counts.rows_ingested)
    }
}
