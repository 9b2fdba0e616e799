//! Ingest: a finished batch's results, streamed line by line from its file (or read from the
//! inline responses), written as rows with checkpoints, and handed to a continuation message
//! before the invocation deadline.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;

use super::Consumer;
use super::error::{ConsumeError, Handled};
use super::rows::{count_rows, merge_duplicate_keys, to_row};
use crate::domain::envelope::{Continuation, QueueEnvelope};
use crate::domain::gemini::{BatchOperation, BatchOutput};
use crate::domain::jobs::{Checkpoint, JobRecord, JobState, ResultRow};
use crate::domain::results::{LineSplitter, ResultRecord, from_inline, record_from_line};
use crate::ports::ResultsStore;
use crate::ports::metrics::metric;

/// Running totals of one ingest pass; saved with the checkpoint they describe.
struct Progress {
    offset: u64,
    lines: u64,
}

impl Consumer {
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
                let records: Vec<ResultRecord> = responses
                    .iter()
                    .enumerate()
                    .map(|(i, r)| from_inline(i, r))
                    .collect();
                job.counts.rows_ingested = 0;
                job.counts.error_rows = 0;
                job.counts.malformed_rows = 0;
                let now = self.clock.now_ms();
                for chunk in records.chunks(self.settings.rows_per_write.max(1)) {
                    let rows: Vec<ResultRow> = chunk.iter().map(|r| to_row(&job, r, now)).collect();
                    let mut rows = rows;
                    merge_duplicate_keys(&mut rows);
                    count_rows(&mut job, &rows);
                    store.put_rows(&rows).await?;
                }
                let rows = job.counts.rows_ingested;
                let job_id = job.job_id.clone();
                self.finish(store.as_ref(), job).await?;
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
                if !store.save_job(&job).await? {
                    return Ok(Handled::Skipped {
                        reason: "job finished concurrently".into(),
                    });
                }
                self.stream_file(store, job, start, Some(webhook_id), 0, deadline_ms)
                    .await
            }
        }
    }

    pub(super) async fn handle_continuation(
        &self,
        c: Continuation,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let store = Arc::clone(self.routes.for_group(c.job_group.as_deref()));
        let Some(job) = store.load_job(&c.job_id).await? else {
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
        self.stream_file(store, job, start, c.webhook_id, c.part, deadline_ms)
            .await
    }

    /// Streams `start.file` from `start.byte_offset`, writing rows and checkpoints, until the end
    /// of the file or until the deadline is near (then hands over to a continuation message).
    async fn stream_file(
        &self,
        store: Arc<dyn ResultsStore>,
        mut job: JobRecord,
        start: Checkpoint,
        webhook_id: Option<String>,
        part: u32,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let file = start.file.clone();
        let mut stream = self.gemini.download(&file, start.byte_offset).await?;
        let mut splitter =
            LineSplitter::new(start.byte_offset, start.lines, self.settings.max_line_bytes);
        let batch = self.settings.rows_per_write.max(1);
        let mut pending: Vec<ResultRow> = Vec::with_capacity(batch);
        let mut saved = Progress {
            offset: start.byte_offset,
            lines: start.lines,
        };
        let mut finished = false;
        while !finished {
            match stream.next().await {
                Some(Ok(chunk)) => splitter.push(&chunk),
                Some(Err(e)) => {
                    // Keep what we have; the redelivered message resumes from the checkpoint.
                    self.flush(store.as_ref(), &mut job, &mut pending).await?;
                    self.save_checkpoint(store.as_ref(), &mut job, &file, &splitter, &mut saved)
                        .await?;
                    return Err(e.into());
                }
                None => finished = true,
            }
            let now = self.clock.now_ms();
            let mut next = splitter.next_line();
            if finished && next.is_none() {
                next = splitter.finish();
            }
            while let Some(line) = next {
                pending.push(to_row(&job, &record_from_line(&line), now));
                if pending.len() >= batch {
                    self.flush(store.as_ref(), &mut job, &mut pending).await?;
                }
                next = splitter.next_line();
                if finished && next.is_none() {
                    next = splitter.finish();
                }
            }
            if finished {
                break;
            }
            if splitter.line_count().saturating_sub(saved.lines)
                >= self.settings.checkpoint_every_lines
            {
                self.flush(store.as_ref(), &mut job, &mut pending).await?;
                self.save_checkpoint(store.as_ref(), &mut job, &file, &splitter, &mut saved)
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
                self.flush(store.as_ref(), &mut job, &mut pending).await?;
                self.save_checkpoint(store.as_ref(), &mut job, &file, &splitter, &mut saved)
                    .await?;
                let continuation = QueueEnvelope::Continuation(Continuation {
                    job_id: job.job_id.clone(),
                    file: file.clone(),
                    byte_offset: saved.offset,
                    lines: saved.lines,
                    webhook_id,
                    job_group: job.job_group.clone(),
                    part: part + 1,
                });
                let message = continuation.to_message().map_err(|e| {
                    ConsumeError::Poison(format!("cannot serialise continuation: {e}"))
                })?;
                self.queue.enqueue(&message).await?;
                tracing::info!(
                    byte_offset = saved.offset,
                    lines = saved.lines,
                    part = part + 1,
                    "deadline near: handed the rest to a continuation"
                );
                return Ok(Handled::Continued {
                    job_id: job.job_id.clone(),
                    byte_offset: saved.offset,
                });
            }
        }
        self.flush(store.as_ref(), &mut job, &mut pending).await?;
        job.checkpoint = Some(Checkpoint {
            file,
            byte_offset: splitter.offset(),
            lines: splitter.line_count(),
        });
        let rows = job.counts.rows_ingested;
        let job_id = job.job_id.clone();
        self.finish(store.as_ref(), job).await?;
        Ok(Handled::Ingested { job_id, rows })
    }

    async fn flush(
        &self,
        store: &dyn ResultsStore,
        job: &mut JobRecord,
        pending: &mut Vec<ResultRow>,
    ) -> Result<(), ConsumeError> {
        if pending.is_empty() {
            return Ok(());
        }
        merge_duplicate_keys(pending);
        store.put_rows(pending).await?;
        count_rows(job, pending);
        pending.clear();
        Ok(())
    }

    async fn save_checkpoint(
        &self,
        store: &dyn ResultsStore,
        job: &mut JobRecord,
        file: &str,
        splitter: &LineSplitter,
        saved: &mut Progress,
    ) -> Result<(), ConsumeError> {
        job.checkpoint = Some(Checkpoint {
            file: file.to_owned(),
            byte_offset: splitter.offset(),
            lines: splitter.line_count(),
        });
        job.updated_at_ms = self.clock.now_ms();
        store.save_job(job).await?;
        saved.offset = splitter.offset();
        saved.lines = splitter.line_count();
        Ok(())
    }

    async fn finish(
        &self,
        store: &dyn ResultsStore,
        mut job: JobRecord,
    ) -> Result<(), ConsumeError> {
        // The rows actually stored: a key repeated across writes left one row, not two.
        let written = job.counts.rows_ingested;
        let stored = store.count_rows(&job.job_id).await?;
        job.counts.duplicate_keys = written.saturating_sub(stored);
        job.counts.rows_ingested = stored;
        let now = self.clock.now_ms();
        job.state = JobState::Succeeded;
        job.updated_at_ms = now;
        job.completed_at_ms = Some(now);
        store.save_job(&job).await?;
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
        Ok(())
    }
}
