//! The consume use case: route → confirm with the Gemini API → ingest → record.
//!
//! Every effect is idempotent: rows are keyed `(job, key)`, job state only moves forward, and
//! progress through a results file is checkpointed on the job record together with the counters
//! that describe exactly the lines before the checkpoint. A replayed or concurrent message
//! therefore converges to the same rows and the same record.

mod announce;
mod driver;
mod error;
mod events;
mod ingest;
mod reingest;
mod rows;
mod settings;
mod videos;
mod writes;

use std::sync::Arc;

pub use announce::Announcer;
pub use driver::{Disposition, InboundMessage, RetrySchedule, failures, job_of};
pub use error::{ConsumeError, Handled};
pub use rows::to_row;
pub use settings::ConsumeSettings;
pub use writes::ByteBudget;

use crate::domain::envelope::{QueueEnvelope, StoredPayload};
use crate::ports::EventQueue;
use crate::ports::clock::SharedClock;
use crate::ports::gemini::GeminiApi;
use crate::ports::metrics::Metrics;
use crate::ports::objects::ObjectStore;
use crate::ports::payloads::PayloadStore;
use crate::usecases::offload::{ResolveError, resolve};
use crate::usecases::routes::Routes;

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
    /// Where messages too large for the queue are (see `usecases::offload`).
    payloads: Option<Arc<dyn PayloadStore>>,
    /// Bytes of rows all messages may hold at once ([`ConsumeSettings::bytes_in_flight`]).
    budget: ByteBudget,
    /// Publishes downstream events of finished jobs; none when not configured.
    announcer: Option<Announcer>,
    /// Where generated videos are copied (`OUTPUT_BUCKET`, or the data directory locally);
    /// without it a video job keeps pointers to Gemini's files only.
    videos: Option<Arc<dyn ObjectStore>>,
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
            payloads: None,
            budget: ByteBudget::new(settings.bytes_in_flight),
            announcer: None,
            videos: None,
        }
    }

    /// The limits of a message handled with `deadline_ms`: ordinary calls stop
    /// `deadline_reserve_ms` before it, the hand-over a little before the deadline itself.
    /// `None` without a deadline (tests, local mode).
    fn time_left(&self, deadline_ms: Option<i64>) -> Option<writes::TimeLeft> {
        let left_ms = deadline_ms?.saturating_sub(self.clock.now_ms());
        let at = |ms: i64| {
            tokio::time::Instant::now()
                + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
        };
        let reserve = self.settings.deadline_reserve_ms.max(0);
        Some(writes::TimeLeft {
            cutoff: at(left_ms.saturating_sub(reserve)),
            last: at(left_ms.saturating_sub(reserve / 5)),
        })
    }

    /// The byte budget shared by this consumer's messages.
    pub fn byte_budget(&self) -> &ByteBudget {
        &self.budget
    }

    /// Emits job and ingest metrics (EMF) through `metrics`; off by default (local mode).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Reads the message a pointer stands for; `None` when the payload is already gone.
    async fn unstore(
        &self,
        pointer: &StoredPayload,
    ) -> Result<Option<QueueEnvelope>, ConsumeError> {
        let Some(payloads) = &self.payloads else {
            return Err(ConsumeError::Poison(
                "a stored payload arrived but no payload store is configured (PAYLOAD_BUCKET)"
                    .into(),
            ));
        };
        match resolve(payloads.as_ref(), pointer).await {
            Ok(inner) => Ok(Some(inner)),
            Err(ResolveError::Gone(key)) => {
                tracing::warn!(key = %key, "the stored payload is gone: handled before, or expired");
                Ok(None)
            }
            Err(ResolveError::Store(e)) => Err(ConsumeError::Payload(e.to_string())),
            Err(e @ ResolveError::Corrupt { .. }) => Err(ConsumeError::Poison(e.to_string())),
        }
    }

    /// Publishes a downstream event whenever a job reaches a terminal state (`announce`).
    pub fn with_announcer(mut self, announcer: Announcer) -> Self {
        self.announcer = Some(announcer);
        self
    }

    /// Copies every generated video into `store` before its job is recorded SUCCEEDED.
    pub fn with_video_store(mut self, store: Arc<dyn ObjectStore>) -> Self {
        self.videos = Some(store);
        self
    }

    /// Reads pointers to large messages from `payloads` (the receiver's payload store).
    pub fn with_payloads(mut self, payloads: Arc<dyn PayloadStore>) -> Self {
        self.payloads = Some(payloads);
        self
    }

    /// Handles one queue message body. `Ok` means the message may be deleted.
    pub async fn handle_message(
        &self,
        body: &str,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let time = self.time_left(deadline_ms);
        // Whatever a call does, the message answers before the invocation's deadline.
        let last = time.map(|t| t.last);
        writes::with_time_left(
            time,
            writes::bounded(last, self.handle_within(body, deadline_ms)),
        )
        .await?
    }

    async fn handle_within(
        &self,
        body: &str,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let envelope = QueueEnvelope::from_body(body)
            .map_err(|e| ConsumeError::Poison(format!("not an envelope: {e}")))?;
        let (envelope, stored) = match envelope {
            QueueEnvelope::Stored(pointer) => match self.unstore(&pointer).await? {
                Some(inner) => (inner, Some(pointer)),
                None => {
                    return Ok(Handled::Skipped {
                        reason: format!("stored payload {} is gone (handled before)", pointer.key),
                    });
                }
            },
            other => (other, None),
        };
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
                let store = Arc::clone(self.routes.for_group(c.job_group.as_deref()));
                let job_id = c.job_id.clone();
                let handled =
                    tracing::Instrument::instrument(self.handle_continuation(c, deadline_ms), span)
                        .await?;
                // The last part finished the job, or a redelivered part found it finished: its
                // event goes out now if it has not yet (a crash after the state was saved).
                if matches!(handled, Handled::Ingested { .. } | Handled::Skipped { .. }) {
                    self.announce_stored(store.as_ref(), &job_id, deadline_ms)
                        .await?;
                }
                handled
            }
            QueueEnvelope::Reingest(r) => {
                let span = tracing::info_span!(
                    "message",
                    job_id = %r.job_id,
                    reingest = %r.request_id,
                    part = r.part
                );
                tracing::Instrument::instrument(self.handle_reingest(r, deadline_ms), span).await?
            }
            QueueEnvelope::Stored(_) => {
                return Err(ConsumeError::Poison(
                    "a stored payload holding a pointer".into(),
                ));
            }
        };
        if let (Some(pointer), Some(payloads)) = (stored, &self.payloads)
            && let Err(e) = payloads.delete(&pointer.key).await
        {
            // Handled: the bucket's expiry removes it later.
            tracing::warn!(key = %pointer.key, error = %e, "could not delete a handled payload");
        }
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
            Handled::Reingested { rows_rewritten, .. } => {
                tracing::info!(outcome = handled.code(), rows_rewritten, "message handled");
            }
        }
        Ok(handled)
    }
}
