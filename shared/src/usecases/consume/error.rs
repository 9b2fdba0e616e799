//! What handling a message can end in: done ([`Handled`]) or not ([`ConsumeError`]).

use crate::domain::jobs::JobState;
use crate::ports::gemini::GeminiError;
use crate::ports::job_events::PublishError;
use crate::ports::objects::ObjectError;
use crate::ports::{QueueError, StoreError};

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
    /// The payload store holding a large message failed.
    #[error("payload store: {0}")]
    Payload(String),
    /// The invocation's time ran out before a call finished: the message is retried, and the
    /// invocation still answers before its deadline.
    #[error("out of time: {0}")]
    OutOfTime(String),
    /// The job's state is recorded but its downstream event could not be published; the
    /// redelivered message publishes it.
    #[error("downstream event: {0}")]
    Publish(#[from] PublishError),
    /// Copying a generated video into the output store failed; nothing is recorded, so the
    /// redelivered message copies it again from the start.
    #[error("output store: {0}")]
    Objects(#[from] ObjectError),
}

impl ConsumeError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Poison(_) => false,
            Self::NotReady(_)
            | Self::Store(_)
            | Self::Queue(_)
            | Self::Payload(_)
            | Self::OutOfTime(_) => true,
            Self::Gemini(e) => e.is_transient(),
            Self::Publish(e) => matches!(e, PublishError::Unavailable(_)),
            Self::Objects(e) => matches!(e, ObjectError::Unavailable(_)),
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
            Self::Payload(_) => "payload_unavailable",
            Self::OutOfTime(_) => "out_of_time",
            Self::Publish(PublishError::Unavailable(_)) => "publish_unavailable",
            Self::Publish(PublishError::Refused(_)) => "publish_refused",
            Self::Objects(ObjectError::Unavailable(_)) => "output_store_unavailable",
            Self::Objects(ObjectError::BadKey(_)) => "output_key_refused",
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
    /// A re-ingest pass finished: `rows_rewritten` rows written again, the state unchanged.
    Reingested { job_id: String, rows_rewritten: u64 },
}

impl Handled {
    /// Stable short code for logs (`outcome`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Ingested { .. } => "ingested",
            Self::Continued { .. } => "continued",
            Self::Recorded { .. } => "recorded",
            Self::Skipped { .. } => "skipped",
            Self::Reingested { .. } => "reingested",
        }
    }
}
