//! The consume use case: route → fetch → ingest → record (DESIGN §6).
//!
//! Every effect is idempotent: rows are keyed `(job, key)`, job state only moves forward, and
//! progress through a results file is checkpointed on the job record together with the counters
//! that describe exactly the lines before the checkpoint. A replayed or concurrent message
//! therefore converges to the same rows and the same record.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::domain::envelope::{Continuation, QueueEnvelope, WebhookEnvelope};
use crate::domain::event::{Event, EventType, JobKind, is_usable_job_id, normalize_job_id};
use crate::domain::gemini::{
    BatchOperation, BatchOutput, BatchState, InteractionStatus, RpcStatus, normalize_batch_id,
    normalize_file_name,
};
use crate::domain::jobs::{Checkpoint, JobErrorInfo, JobRecord, JobState, ResultRow, RowStatus};
use crate::domain::results::{LineSplitter, Outcome, ResultRecord, from_inline, record_from_line};
use crate::ports::clock::SharedClock;
use crate::ports::gemini::{GeminiApi, GeminiError};
use crate::ports::metrics::{Metrics, metric};
use crate::ports::{EventQueue, QueueError, ResultsStore, StoreError};
use crate::usecases::routes::Routes;

/// Tuning of the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumeSettings {
    /// Hand the rest of a file to a continuation message when less than this remains before the
    /// invocation deadline.
    pub deadline_margin_ms: i64,
    /// Lines longer than this become malformed rows instead of being held in memory.
    pub max_line_bytes: usize,
    /// Rows per store write (DynamoDB `BatchWriteItem` takes 25).
    pub rows_per_write: usize,
    /// Save a checkpoint at least this often, so a crash costs little re-work.
    pub checkpoint_every_lines: u64,
    /// Messages of one batch handled at once.
    pub max_concurrency: usize,
}

impl Default for ConsumeSettings {
    fn default() -> Self {
        Self {
            deadline_margin_ms: 20_000,
            max_line_bytes: 32 * 1024 * 1024,
            rows_per_write: 25,
            checkpoint_every_lines: 5_000,
            max_concurrency: 4,
        }
    }
}

/// Why a message was not handled. Every variant leaves the message for redelivery; the
/// non-retryable ones reach the dead-letter queue after `maxReceiveCount` receives, where an
/// operator can look at them.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// The message cannot be understood; retrying will not help.
    #[error("poison message: {0}")]
    Poison(String),
    /// The batch or its results are not visible yet (the API lags the webhook).
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("Gemini API: {0}")]
    Gemini(#[from] GeminiError),
    #[error("results store: {0}")]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
}

impl ConsumeError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Poison(_) => false,
            Self::NotReady(_) | Self::Store(_) | Self::Queue(_) => true,
            Self::Gemini(e) => e.is_transient(),
        }
    }

    /// Stable short code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Poison(_) => "poison",
            Self::NotReady(_) => "not_ready",
            Self::Gemini(e) if e.is_transient() => "gemini_transient",
            Self::Gemini(_) => "gemini_fatal",
            Self::Store(_) => "store_unavailable",
            Self::Queue(_) => "queue_unavailable",
        }
    }
}

/// What handling a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Results ingested completely.
    Ingested { job_id: String, rows: u64 },
    /// Part of a file ingested; a continuation message carries the rest.
    Continued { job_id: String, byte_offset: u64 },
    /// The job record was updated (failed, expired, cancelled, interaction, video…).
    Recorded { job_id: String, state: JobState },
    /// Nothing to do: already finished, or an event type we only log.
    Skipped { reason: String },
}

impl Handled {
    /// Stable short code for logs (`outcome`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Ingested { .. } => "ingested",
            Self::Continued { .. } => "continued",
            Self::Recorded { .. } => "recorded",
            Self::Skipped { .. } => "skipped",
        }
    }
}

/// Seconds before a failed message is tried again, by how often it was received: 30 s doubling
/// to 15 min. With `maxReceiveCount` 5 a message has ~7.5 min of retries before the DLQ (and the
/// reconciler still recovers the batch later).
pub fn retry_delay_secs(receive_count: u32) -> i32 {
    let exp = receive_count.saturating_sub(1).min(5);
    (30_i32 << exp).min(900)
}

/// One message of an SQS (or local) batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub id: String,
    pub body: String,
}

/// The consume use case with its ports.
pub struct Consumer {
    gemini: Arc<dyn GeminiApi>,
    routes: Routes,
    queue: Arc<dyn EventQueue>,
    clock: SharedClock,
    settings: ConsumeSettings,
    metrics: Metrics,
    /// When our API key was last seen to work, and whether it did ([`Self::key_works`]).
    key_probe: tokio::sync::Mutex<Option<(i64, bool)>>,
}

/// How long a key probe's answer is trusted.
const KEY_PROBE_TTL_MS: i64 = 60_000;

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Running totals of one ingest pass; saved with the checkpoint they describe.
struct Progress {
    offset: u64,
    lines: u64,
}

impl Consumer {
    /// `queue` receives continuation messages (the same queue the receiver feeds).
    pub fn new(
        gemini: Arc<dyn GeminiApi>,
        routes: Routes,
        queue: Arc<dyn EventQueue>,
        clock: SharedClock,
        settings: ConsumeSettings,
    ) -> Self {
        Self {
            gemini,
            routes,
            queue,
            clock,
            settings,
            metrics: Metrics::disabled(),
            key_probe: tokio::sync::Mutex::new(None),
        }
    }

    /// Emits job and ingest metrics (EMF) through `metrics`; off by default (local mode).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Handles a batch of messages concurrently (bounded) and returns the ids of those that
    /// must be redelivered. A panic while handling one message fails only that message.
    pub async fn handle_batch(
        self: &Arc<Self>,
        messages: Vec<InboundMessage>,
        deadline_ms: Option<i64>,
    ) -> Vec<String> {
        let results = futures::stream::iter(messages)
            .map(|message| {
                let this = Arc::clone(self);
                async move {
                    let id = message.id.clone();
                    let metrics = self.metrics.clone();
                    let task = tokio::spawn(async move { this.handle_message(&message.body, deadline_ms).await });
                    match task.await {
                        Ok(Ok(_)) => None,
                        Ok(Err(e)) => {
                            metrics.set().reason(e.code()).count(metric::MESSAGES_FAILED, 1).flush();
                            if e.is_retryable() {
                                tracing::warn!(message_id = %id, outcome = e.code(), error = %e, "message will be retried");
                            } else {
                                tracing::error!(message_id = %id, outcome = e.code(), error = %e, "message cannot be handled; it will reach the DLQ");
                            }
                            Some(id)
                        }
                        Err(join) => {
                            metrics.set().reason("panic").count(metric::MESSAGES_FAILED, 1).flush();
                            tracing::error!(message_id = %id, outcome = "panic", error = %join, "handler panicked");
                            Some(id)
                        }
                    }
                }
            })
            .buffer_unordered(self.settings.max_concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        results.into_iter().flatten().collect()
    }

    /// Handles one queue message body. `Ok` means the message may be deleted.
    pub async fn handle_message(
        &self,
        body: &str,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let envelope = QueueEnvelope::from_body(body)
            .map_err(|e| ConsumeError::Poison(format!("not an envelope: {e}")))?;
        let handled = match envelope {
            QueueEnvelope::Webhook(w) => {
                let span = tracing::info_span!(
                    "message",
                    webhook_id = %w.webhook_id,
                    event_type = %w.event.event_type.as_str(),
                    job_id = w.event.job_id.as_deref().unwrap_or("")
                );
                tracing::Instrument::instrument(self.handle_webhook(w, deadline_ms), span).await?
            }
            QueueEnvelope::Continuation(c) => {
                let span = tracing::info_span!("message", job_id = %c.job_id, part = c.part);
                tracing::Instrument::instrument(self.handle_continuation(c, deadline_ms), span)
                    .await?
            }
        };
        match &handled {
            Handled::Ingested { rows, .. } => {
                tracing::info!(outcome = handled.code(), rows, "message handled");
            }
            Handled::Continued { byte_offset, .. } => {
                tracing::info!(outcome = handled.code(), byte_offset, "message handled");
            }
            Handled::Recorded { state, .. } => {
                tracing::info!(
                    outcome = handled.code(),
                    state = state.as_str(),
                    "message handled"
                );
            }
            Handled::Skipped { reason } => {
                tracing::info!(outcome = handled.code(), reason = %reason, "message handled");
            }
        }
        Ok(handled)
    }

    async fn handle_webhook(
        &self,
        w: WebhookEnvelope,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let event = w.event();
        let event_type = event.event_type.clone();
        let kind = event_type.kind();
        if matches!(event_type, EventType::Unknown(_)) || kind == JobKind::Other {
            tracing::info!(event_type = %event_type.as_str(), "event type not handled; acknowledged");
            return Ok(Handled::Skipped {
                reason: format!("unhandled event type {}", event_type.as_str()),
            });
        }
        let group = w.job_group().map(str::to_owned);
        let claim = EventClaim {
            envelope: &w,
            event: &event,
            group,
        };
        // A job name nobody could ask the API about (none, a path, a few KB of text) comes only
        // from a forged or broken event: acknowledged and counted, never stored or retried.
        let Some(job_id) = event.job_id.clone().filter(|id| is_usable_job_id(kind, id)) else {
            return Ok(self.unconfirmed(&claim, "the event names no usable job id"));
        };
        let store = Arc::clone(self.routes.for_group(claim.group.as_deref()));
        let now = self.clock.now_ms();
        let job = store
            .load_job(&job_id)
            .await?
            .unwrap_or_else(|| JobRecord::new(job_id.clone(), kind, now));
        if job.state.is_terminal() {
            // Replays and late events of a finished job cost nothing, not even an API call.
            return Ok(Handled::Skipped {
                reason: format!("job already {}", job.state.as_str()),
            });
        }
        match kind {
            JobKind::Batch => self.on_batch(store, job, claim, deadline_ms).await,
            JobKind::Interaction => self.on_interaction(store, job, claim).await,
            JobKind::Video => self.on_video(store, job, claim).await,
            JobKind::Other => Ok(Handled::Skipped {
                reason: "unhandled kind".into(),
            }),
        }
    }

    /// `batch.*`: `batches.get` decides. SUCCEEDED ingests, FAILED/EXPIRED/CANCELLED are recorded
    /// with the API's error, anything else is retried later, whatever the event said.
    async fn on_batch(
        &self,
        store: Arc<dyn ResultsStore>,
        mut job: JobRecord,
        claim: EventClaim<'_>,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let op = match self.gemini.get_batch(&job.job_id).await {
            Ok(op) => op,
            Err(e) => return self.refused(&claim, e, "batch").await,
        };
        if normalize_batch_id(&op.name) != job.job_id {
            return Ok(self.unconfirmed(&claim, "the Gemini API answered about another batch"));
        }
        let api_state = match op.state {
            BatchState::Succeeded => JobState::Succeeded,
            BatchState::Failed => JobState::Failed,
            BatchState::Cancelled => JobState::Cancelled,
            BatchState::Expired => JobState::Expired,
            ref other => {
                return Err(ConsumeError::NotReady(format!(
                    "the event says {} but the batch reports {}",
                    claim.event.event_type.as_str(),
                    other.as_str()
                )));
            }
        };
        self.settle(&mut job, &claim, api_state, op.state.as_str());
        apply_stats(&mut job, &op);
        if api_state == JobState::Succeeded {
            return self
                .ingest_batch(
                    store,
                    job,
                    op,
                    claim.envelope.webhook_id.clone(),
                    deadline_ms,
                )
                .await;
        }
        job.error = op.error.as_ref().map(|e| rpc_error(e, "operation"));
        self.record(store.as_ref(), job, api_state).await
    }

    /// `interaction.*`: `GET /v1beta/interactions/{id}` decides.
    async fn on_interaction(
        &self,
        store: Arc<dyn ResultsStore>,
        mut job: JobRecord,
        claim: EventClaim<'_>,
    ) -> Result<Handled, ConsumeError> {
        let interaction = match self.gemini.get_interaction(&job.job_id).await {
            Ok(i) => i,
            Err(e) => return self.refused(&claim, e, "interaction").await,
        };
        if !interaction.id.is_empty()
            && normalize_job_id(JobKind::Interaction, &interaction.id) != job.job_id
        {
            return Ok(
                self.unconfirmed(&claim, "the Gemini API answered about another interaction")
            );
        }
        let api_state = match interaction.status {
            InteractionStatus::Completed => JobState::Succeeded,
            InteractionStatus::RequiresAction => JobState::RequiresAction,
            InteractionStatus::Failed => JobState::Failed,
            InteractionStatus::Cancelled => JobState::Cancelled,
            ref other => {
                return Err(ConsumeError::NotReady(format!(
                    "the event says {} but the interaction is {}",
                    claim.event.event_type.as_str(),
                    other.as_str()
                )));
            }
        };
        self.settle(&mut job, &claim, api_state, interaction.status.as_str());
        job.error = interaction
            .error
            .as_ref()
            .map(|e| rpc_error(e, "interaction"));
        job.output = Some(bounded_output(json!({
            "status": interaction.status.as_str(),
            "outputs": interaction.outputs,
            "usage": interaction.usage,
        })));
        self.record(store.as_ref(), job, api_state).await
    }

    /// `video.generated`: the operation (or else the file) the event names decides.
    async fn on_video(
        &self,
        store: Arc<dyn ResultsStore>,
        mut job: JobRecord,
        claim: EventClaim<'_>,
    ) -> Result<Handled, ConsumeError> {
        let data = &claim.event.data;
        let text = |name: &str| data.get(name).and_then(Value::as_str).map(str::trim);
        let operation = text("id").filter(|id| id.contains("operations/"));
        let file = text("file_name")
            .or_else(|| text("output_file_uri"))
            .and_then(normalize_file_name);
        let (api_state, output, error) = if let Some(name) = operation {
            let op = match self.gemini.get_video_operation(name).await {
                Ok(op) => op,
                Err(e) => return self.refused(&claim, e, "operation").await,
            };
            if !op.done {
                return Err(ConsumeError::NotReady(
                    "the event says video.generated but the operation is not done".into(),
                ));
            }
            let state = if op.error.is_some() {
                JobState::Failed
            } else {
                JobState::Succeeded
            };
            let error = op.error.as_ref().map(|e| rpc_error(e, "operation"));
            (
                state,
                json!({"operation": op.name, "videos": op.video_uris, "file_name": file}),
                error,
            )
        } else if let Some(name) = file {
            let info = match self.gemini.get_file(&name).await {
                Ok(info) => info,
                Err(e) => return self.refused(&claim, e, "file").await,
            };
            // Any file of the project would "confirm" a made-up video; only a video confirms one.
            if !info
                .mime_type
                .as_deref()
                .is_some_and(|m| m.starts_with("video/"))
            {
                return Ok(self.unconfirmed(&claim, "the file it names is not a video"));
            }
            let state = match info.state.as_deref() {
                None | Some("ACTIVE" | "STATE_UNSPECIFIED") => JobState::Succeeded,
                Some("FAILED") => JobState::Failed,
                Some(other) => {
                    return Err(ConsumeError::NotReady(format!(
                        "the event says video.generated but the file is {other}"
                    )));
                }
            };
            (
                state,
                json!({"file_name": info.name, "uri": info.uri, "expiration_time": info.expiration_time}),
                None,
            )
        } else {
            return Ok(self.unconfirmed(&claim, "the event names no operation or file to check"));
        };
        self.settle(&mut job, &claim, api_state, api_state.as_str());
        job.error = error;
        job.output = Some(output);
        self.record(store.as_ref(), job, api_state).await
    }

    /// Compares what the event claims with what the API says. When they agree the event is noted
    /// on the job; when they do not it is logged and counted (`EventsContradicted`) and nothing
    /// of it is recorded — the job follows the API either way.
    fn settle(&self, job: &mut JobRecord, claim: &EventClaim<'_>, api_state: JobState, api: &str) {
        let claimed = claimed_state(&claim.event.event_type);
        if claimed == Some(api_state) {
            let w = claim.envelope;
            job.last_event = Some(claim.event.event_type.as_str().to_owned());
            job.last_webhook_id = Some(w.webhook_id.clone());
            if w.user_metadata.is_some() {
                job.user_metadata = w.user_metadata.clone();
            }
            if claim.group.is_some() {
                job.job_group = claim.group.clone();
            }
            job.event_received_at_ms = Some(w.received_at_ms);
        } else {
            self.contradicted(claim, &format!("the Gemini API reports {api}"));
        }
        job.updated_at_ms = self.clock.now_ms();
    }

    /// What a failed API call means for the event: the API does not have the resource (404), will
    /// not let us read it (403, while our key demonstrably works) or the name cannot be asked
    /// about: the event is unconfirmed — counted, acknowledged, nothing recorded. Anything else
    /// (unreachable, 5xx, a key that no longer works) is retried.
    async fn refused(
        &self,
        claim: &EventClaim<'_>,
        error: GeminiError,
        what: &str,
    ) -> Result<Handled, ConsumeError> {
        let why = match &error {
            GeminiError::NotFound { .. } => format!("the Gemini API has no such {what}"),
            GeminiError::Invalid(_) => format!("the {what} it names cannot be asked about"),
            GeminiError::Fatal { status: 403, .. } if self.key_works().await => {
                format!("the Gemini API does not let this project read that {what}")
            }
            _ => return Err(error.into()),
        };
        Ok(self.unconfirmed(claim, &why))
    }

    /// Whether our API key works at all (one cheap list call, remembered for a minute): a 403
    /// with a working key means "not yours"; with a broken key every event must wait.
    async fn key_works(&self) -> bool {
        let now = self.clock.now_ms();
        let mut probe = self.key_probe.lock().await;
        if let Some((at, works)) = *probe
            && now.saturating_sub(at) < KEY_PROBE_TTL_MS
        {
            return works;
        }
        let works = self.gemini.list_batches(1, None).await.is_ok();
        *probe = Some((now, works));
        works
    }

    /// An event about a job the API does not know (another project's, or made up): counted,
    /// acknowledged, nothing recorded. A forged event costs one API call.
    fn unconfirmed(&self, claim: &EventClaim<'_>, why: &str) -> Handled {
        self.contradicted(claim, why);
        Handled::Skipped {
            reason: format!("not confirmed: {why}"),
        }
    }

    fn contradicted(&self, claim: &EventClaim<'_>, why: &str) {
        let w = claim.envelope;
        tracing::warn!(
            event_type = claim.event.event_type.as_str(),
            signature_mode = ?w.signature_mode,
            bound = w.bound,
            reason = why,
            "the Gemini API contradicts this event; acting on the API's answer only"
        );
        self.metrics
            .set()
            .count(metric::EVENTS_CONTRADICTED, 1)
            .property("event_type", claim.event.event_type.as_str())
            .property("job_id", claim.event.job_id.as_deref().unwrap_or(""))
            .flush();
    }

    /// Moves a job to `state` (forward only) and stores it.
    async fn record(
        &self,
        store: &dyn ResultsStore,
        mut job: JobRecord,
        state: JobState,
    ) -> Result<Handled, ConsumeError> {
        let job_id = job.job_id.clone();
        if !job.state.may_become(state) {
            tracing::info!(
                current = job.state.as_str(),
                event_state = state.as_str(),
                "job is already further along; event recorded as seen only"
            );
            return Ok(Handled::Skipped {
                reason: format!("job already {}", job.state.as_str()),
            });
        }
        job.state = state;
        if state.is_terminal() && job.completed_at_ms.is_none() {
            job.completed_at_ms = Some(job.updated_at_ms);
        }
        if !store.save_job(&job).await? {
            return Ok(Handled::Skipped {
                reason: "a newer state was stored concurrently".into(),
            });
        }
        let counter = match state {
            JobState::Succeeded => Some(metric::JOBS_SUCCEEDED),
            JobState::Failed => Some(metric::JOBS_FAILED),
            JobState::Expired => Some(metric::JOBS_EXPIRED),
            JobState::Cancelled => Some(metric::JOBS_CANCELLED),
            _ => None,
        };
        if let Some(counter) = counter {
            self.metrics
                .set()
                .count(counter, 1)
                .property("job_id", job_id.as_str())
                .flush();
        }
        match state {
            JobState::Failed | JobState::Expired | JobState::Cancelled => {
                tracing::warn!(state = state.as_str(), error = ?job.error, "job did not succeed");
            }
            _ => tracing::info!(state = state.as_str(), "job recorded"),
        }
        Ok(Handled::Recorded { job_id, state })
    }

    /// Ingests the results of `op`, a batch the API reports SUCCEEDED.
    async fn ingest_batch(
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

    async fn handle_continuation(
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
        let now = self.clock.now_ms();
        job.state = JobState::Succeeded;
        job.updated_at_ms = now;
        job.completed_at_ms = Some(now);
        store.save_job(&job).await?;
        tracing::info!(
            rows = job.counts.rows_ingested,
            error_rows = job.counts.error_rows,
            malformed_rows = job.counts.malformed_rows,
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

/// A queued event being checked against the API.
struct EventClaim<'a> {
    envelope: &'a WebhookEnvelope,
    event: &'a Event,
    /// Routing group from the envelope's (signed-first) `user_metadata`.
    group: Option<String>,
}

/// The job state an event type claims.
fn claimed_state(event_type: &EventType) -> Option<JobState> {
    Some(match event_type {
        EventType::BatchSucceeded | EventType::InteractionCompleted | EventType::VideoGenerated => {
            JobState::Succeeded
        }
        EventType::BatchFailed | EventType::InteractionFailed => JobState::Failed,
        EventType::BatchExpired => JobState::Expired,
        EventType::BatchCancelled | EventType::InteractionCancelled => JobState::Cancelled,
        EventType::InteractionRequiresAction => JobState::RequiresAction,
        EventType::Unknown(_) => return None,
    })
}

/// Largest output JSON kept on a job record; DynamoDB items stop at 400 KB.
const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// `output` itself when it is small enough for a job record, else a note saying it was left out.
fn bounded_output(output: Value) -> Value {
    let size = serde_json::to_vec(&output).map_or(usize::MAX, |v| v.len());
    if size <= MAX_OUTPUT_BYTES {
        output
    } else {
        json!({
            "status": output.get("status"),
            "omitted": format!("{size} bytes of outputs exceed the {MAX_OUTPUT_BYTES}-byte record limit"),
        })
    }
}

fn rpc_error(status: &RpcStatus, source: &str) -> JobErrorInfo {
    JobErrorInfo {
        code: status.code.map(|c| c.to_string()),
        message: status.message.clone(),
        source: source.to_owned(),
    }
}

fn apply_stats(job: &mut JobRecord, op: &BatchOperation) {
    job.counts.request_count = op.stats.request_count.or(job.counts.request_count);
    job.counts.successful_request_count = op
        .stats
        .successful_request_count
        .or(job.counts.successful_request_count);
    job.counts.failed_request_count = op
        .stats
        .failed_request_count
        .or(job.counts.failed_request_count);
    if job.kind == JobKind::Other {
        job.kind = JobKind::Batch;
    }
}

fn count_rows(job: &mut JobRecord, rows: &[ResultRow]) {
    for row in rows {
        job.counts.rows_ingested += 1;
        match row.status {
            RowStatus::Ok => {}
            RowStatus::Error => job.counts.error_rows += 1,
            RowStatus::Malformed => job.counts.malformed_rows += 1,
        }
    }
}

/// A stored row for a parsed record.
pub fn to_row(job: &JobRecord, record: &ResultRecord, now_ms: i64) -> ResultRow {
    let mut row = ResultRow {
        job_id: job.job_id.clone(),
        key: record.key.clone(),
        line: record.line,
        status: RowStatus::Ok,
        text: None,
        finish_reason: None,
        prompt_tokens: None,
        candidates_tokens: None,
        total_tokens: None,
        thoughts_tokens: None,
        model_version: None,
        response_json: None,
        error_code: None,
        error_message: None,
        user_metadata: job.user_metadata.clone(),
        ingested_at_ms: now_ms,
    };
    match &record.outcome {
        Outcome::Success(s) => {
            row.text = Some(s.text.clone());
            row.finish_reason = s.finish_reason.clone();
            row.prompt_tokens = s.usage.prompt_tokens;
            row.candidates_tokens = s.usage.candidates_tokens;
            row.total_tokens = s.usage.total_tokens;
            row.thoughts_tokens = s.usage.thoughts_tokens;
            row.model_version = s.model_version.clone();
            row.response_json = Some(s.response.to_string());
        }
        Outcome::Error { code, message, .. } => {
            row.status = RowStatus::Error;
            row.error_code = *code;
            row.error_message = Some(message.clone());
        }
        Outcome::Malformed { reason } => {
            row.status = RowStatus::Malformed;
            row.error_message = Some(format!("line {}: {reason}", record.line));
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::retry_delay_secs;

    #[test]
    fn retry_delay_doubles_from_30_seconds_and_caps_at_15_minutes() {
        let delays: Vec<i32> = (0..=8).map(retry_delay_secs).collect();
        assert_eq!(delays, vec![30, 30, 60, 120, 240, 480, 900, 900, 900]);
    }
}
