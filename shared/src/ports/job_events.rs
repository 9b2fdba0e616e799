//! Where downstream events go (`domain::job_events`): an EventBridge bus on AWS, the local
//! outbox of `gemini-hooks dev --notify-url`.

use async_trait::async_trait;

use crate::domain::job_events::JobFinished;

/// Why an event was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The bus could not be reached or refused for now (missing bus, throttling, network,
    /// permissions): a later attempt may succeed.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// The bus refused this event itself (malformed, too large): retrying cannot help.
    #[error("event refused: {0}")]
    Refused(String),
}

/// Publishes downstream events.
#[async_trait]
pub trait JobEventPublisher: Send + Sync {
    /// One attempt to publish `event`; returns the id the bus gave it. Callers make it happen
    /// once per event id (`usecases::consume`), so this never retries on its own after the bus
    /// may have accepted the event.
    async fn publish(&self, event: &JobFinished) -> Result<String, PublishError>;
}
