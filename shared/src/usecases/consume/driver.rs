//! The batch driver: one message in, one [`Disposition`] out — what the queue should do with it.
//! The consumer Lambda (SQS partial batch responses) and `gemini-hooks dev` (the SQLite queue)
//! both drive the use case through here, so a failure is classified, logged and counted the same
//! way everywhere; only the [`RetrySchedule`] differs per runtime.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::Consumer;
use crate::domain::envelope::QueueEnvelope;
use crate::ports::metrics::metric;

/// One message of an SQS (or local) batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub id: String,
    pub body: String,
    /// How often the queue has handed this message out, this time included (SQS
    /// `ApproximateReceiveCount`).
    pub receive_count: u32,
}

/// What the queue should do with a handled message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Handled: delete it.
    Done,
    /// A transient failure: make it visible again after this delay.
    Retry { after: Duration },
    /// It can never succeed (or the handler panicked): make it visible again at once, so it
    /// reaches the dead-letter queue after its last receive instead of being backed off like a
    /// transient failure.
    Poison,
}

impl Disposition {
    /// Whether the message stays on the queue (a batch item failure).
    pub fn is_failure(self) -> bool {
        !matches!(self, Self::Done)
    }

    /// How long the queue waits before handing it out again.
    pub fn redelivery_delay(self) -> Duration {
        match self {
            Self::Retry { after } => after,
            Self::Done | Self::Poison => Duration::ZERO,
        }
    }
}

/// Backoff for transient failures: `first`, doubling per receive, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    pub first: Duration,
    pub max: Duration,
}

impl RetrySchedule {
    /// The consumer Lambda: 30 s doubling to 15 min. With `maxReceiveCount` 5 a message has
    /// ~7.5 min of retries before the DLQ (and the reconciler still recovers the batch later).
    pub const LAMBDA: Self = Self {
        first: Duration::from_secs(30),
        max: Duration::from_secs(900),
    };

    /// `gemini-hooks dev`: 2 s doubling to a minute, so a laptop run does not stall.
    pub const LOCAL: Self = Self {
        first: Duration::from_secs(2),
        max: Duration::from_secs(60),
    };

    /// The delay before receive number `receive_count + 1`.
    pub fn delay(&self, receive_count: u32) -> Duration {
        let doublings = receive_count.saturating_sub(1).min(16);
        self.first
            .checked_mul(1 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// The job a message is about, when it names one (a stored payload does not until resolved).
pub fn job_of(body: &str) -> Option<String> {
    match QueueEnvelope::from_body(body).ok()? {
        QueueEnvelope::Webhook(w) => w.event.job_id,
        QueueEnvelope::Continuation(c) => Some(c.job_id),
        QueueEnvelope::Reingest(r) => Some(r.job_id),
        QueueEnvelope::Stored(_) => None,
    }
}

/// The ids of the messages that stay on the queue (SQS batch item failures).
pub fn failures(results: &[(String, Disposition)]) -> Vec<String> {
    results
        .iter()
        .filter(|(_, d)| d.is_failure())
        .map(|(id, _)| id.clone())
        .collect()
}

impl Consumer {
    /// Handles one message and says what the queue should do with it. Logs exactly one line
    /// for a failure (the Gemini client's own retries log at debug level) and counts it.
    pub async fn process(
        &self,
        message: &InboundMessage,
        deadline_ms: Option<i64>,
        schedule: RetrySchedule,
    ) -> Disposition {
        self.process_reporting(message, deadline_ms, schedule)
            .await
            .0
    }

    /// [`Self::process`], also returning why a failed message failed (`"<code>: <error>"`), for
    /// queues that keep the last error with the message (the local dead letters).
    pub async fn process_reporting(
        &self,
        message: &InboundMessage,
        deadline_ms: Option<i64>,
        schedule: RetrySchedule,
    ) -> (Disposition, Option<String>) {
        let Err(e) = self.handle_message(&message.body, deadline_ms).await else {
            return (Disposition::Done, None);
        };
        self.metrics
            .set()
            .reason(e.code())
            .count(metric::MESSAGES_FAILED, 1)
            .flush();
        // Only on the failure path: which job, for the one log line an operator reads.
        let job_id = job_of(&message.body).unwrap_or_default();
        let disposition = if e.is_retryable() {
            let after = schedule.delay(message.receive_count);
            tracing::warn!(
                message_id = %message.id,
                job_id = %job_id,
                receive_count = message.receive_count,
                outcome = e.code(),
                error = %e,
                retry_in_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
                "message failed; it will be retried"
            );
            Disposition::Retry { after }
        } else {
            tracing::error!(
                message_id = %message.id,
                job_id = %job_id,
                receive_count = message.receive_count,
                outcome = e.code(),
                error = %e,
                "message cannot be handled; it goes to the dead letters after its last receive"
            );
            Disposition::Poison
        };
        (disposition, Some(format!("{}: {e}", e.code())))
    }

    /// What a panic while handling `message_id` means: logged, counted, poison.
    pub fn panicked(&self, message_id: &str, panic: &tokio::task::JoinError) -> Disposition {
        self.metrics
            .set()
            .reason("panic")
            .count(metric::MESSAGES_FAILED, 1)
            .flush();
        tracing::error!(message_id = %message_id, outcome = "panic", error = %panic, "handler panicked");
        Disposition::Poison
    }

    /// Handles a batch concurrently (bounded) and returns each message's disposition. A panic
    /// while handling one message fails only that message.
    pub async fn handle_batch(
        self: &Arc<Self>,
        messages: Vec<InboundMessage>,
        deadline_ms: Option<i64>,
        schedule: RetrySchedule,
    ) -> Vec<(String, Disposition)> {
        futures::stream::iter(messages)
            .map(|message| {
                let this = Arc::clone(self);
                async move {
                    let id = message.id.clone();
                    let task = tokio::spawn({
                        let this = Arc::clone(&this);
                        async move { this.process(&message, deadline_ms, schedule).await }
                    });
                    let disposition = match task.await {
                        Ok(d) => d,
                        Err(join) => this.panicked(&id, &join),
                    };
                    (id, disposition)
                }
            })
            .buffer_unordered(self.settings.max_concurrency.max(1))
            .collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_retry_delay_doubles_from_30_seconds_and_caps_at_15_minutes() {
        let delays: Vec<u64> = (0..=8)
            .map(|n| RetrySchedule::LAMBDA.delay(n).as_secs())
            .collect();
        assert_eq!(delays, vec![30, 30, 60, 120, 240, 480, 900, 900, 900]);
    }

    #[test]
    fn local_retry_delay_doubles_from_2_seconds_and_caps_at_a_minute() {
        let delays: Vec<u64> = (1..=8)
            .map(|n| RetrySchedule::LOCAL.delay(n).as_secs())
            .collect();
        assert_eq!(delays, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(RetrySchedule::LOCAL.delay(u32::MAX).as_secs(), 60);
    }

    #[test]
    fn poison_is_redelivered_at_once_and_transient_failures_after_their_delay() {
        let after = Duration::from_secs(30);
        assert_eq!(Disposition::Poison.redelivery_delay(), Duration::ZERO);
        assert_eq!(Disposition::Retry { after }.redelivery_delay(), after);
        assert!(Disposition::Poison.is_failure() && !Disposition::Done.is_failure());
    }
}
