//! The consume use case: route → confirm with the Gemini API → ingest → record.
//!
//! Every effect is idempotent: rows are keyed `(job, key)`, job state only moves forward, and
//! progress through a results file is checkpointed on the job record together with the counters
//! that describe exactly the lines before the checkpoint. A replayed or concurrent message
//! therefore converges to the same rows and the same record.

mod driver;
mod error;
mod events;
mod ingest;
mod rows;
mod settings;

use std::sync::Arc;

pub use driver::{Disposition, InboundMessage, RetrySchedule, failures};
pub use error::{ConsumeError, Handled};
pub use rows::to_row;
pub use settings::ConsumeSettings;

use crate::domain::envelope::QueueEnvelope;
use crate::ports::EventQueue;
use crate::ports::clock::SharedClock;
use crate::ports::gemini::GeminiApi;
use crate::ports::metrics::Metrics;
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
        }
    }

    /// Emits job and ingest metrics (EMF) through `metrics`; off by default (local mode).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
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
}
