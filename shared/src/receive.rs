//! The receive use case: verify → claim → enqueue → complete (DESIGN §4–5).
//!
//! Enqueue success is the commit point. A claim is released whenever the enqueue fails, so the
//! sender's retry can succeed; a lease lets a retry take over a claim whose holder died.

use std::sync::Arc;

use http::HeaderMap;

use crate::clock::SharedClock;
use crate::config::ReceiveLimits;
use crate::envelope::{EventSummary, QueueEnvelope, WebhookEnvelope};
use crate::event::{Event, EventError};
use crate::store::{
    ClaimOutcome, ClaimRequest, DedupeStatus, DedupeStore, EventQueue, QueueError, StoreError,
};
use crate::telemetry::Metrics;
use crate::verify::{VerifyError, WebhookVerifier, sha256_hex};

/// Lease of a claim when the caller has no invocation deadline (local mode).
pub const DEFAULT_LEASE_MS: i64 = 30_000;
/// Added to an invocation deadline: the runtime kills the function slightly after it.
pub const DEADLINE_LEASE_MARGIN_MS: i64 = 2_000;
/// Claim attempts when the stored record changes under us (Powertools retries the same way).
const CLAIM_ATTEMPTS: usize = 3;

/// One HTTP delivery as the transport saw it. `body` is the raw bytes (base64 already decoded).
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// Epoch ms at which the invocation will be killed (Lambda), if known.
    pub deadline_ms: Option<i64>,
}

/// A successful receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// First delivery of this id; it is on the queue now.
    Accepted {
        webhook_id: String,
        message_id: String,
    },
    /// This id was already enqueued; nothing was done.
    Duplicate { webhook_id: String },
}

/// Why a delivery was not accepted. Mapped to HTTP in exactly one place ([`crate::http`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReceiveError {
    #[error("body of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("verified body is not a Gemini event: {0}")]
    NotAnEvent(#[from] EventError),
    #[error("delivery {webhook_id} is being handled by another request")]
    InFlight {
        webhook_id: String,
        retry_after_secs: u64,
    },
    #[error("webhook id {webhook_id} was already used with a different body")]
    BodyMismatch { webhook_id: String },
    #[error("dedupe store failed: {0}")]
    Store(StoreError),
    #[error("queue failed: {0}")]
    Queue(QueueError),
    #[error("could not build the queue message: {0}")]
    Envelope(String),
}

impl ReceiveError {
    /// Stable short code for logs, metrics and the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "payload_too_large",
            Self::Verify(e) => e.code(),
            Self::NotAnEvent(_) => "invalid_event",
            Self::InFlight { .. } => "in_flight",
            Self::BodyMismatch { .. } => "webhook_id_reused",
            Self::Store(_) => "store_unavailable",
            Self::Queue(QueueError::TooLarge { .. }) => "enqueue_too_large",
            Self::Queue(_) => "queue_unavailable",
            Self::Envelope(_) => "internal",
        }
    }
}

/// The receive use case with its ports.
#[derive(Clone)]
pub struct Receiver {
    verifier: Arc<WebhookVerifier>,
    dedupe: Arc<dyn DedupeStore>,
    queue: Arc<dyn EventQueue>,
    clock: SharedClock,
    limits: ReceiveLimits,
    lease_ms: i64,
    metrics: Metrics,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("verifier", &self.verifier)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    pub fn new(
        verifier: Arc<WebhookVerifier>,
        dedupe: Arc<dyn DedupeStore>,
        queue: Arc<dyn EventQueue>,
        clock: SharedClock,
        limits: ReceiveLimits,
    ) -> Self {
        Self {
            verifier,
            dedupe,
            queue,
            clock,
            limits,
            lease_ms: DEFAULT_LEASE_MS,
            metrics: Metrics::disabled(),
        }
    }

    /// Emits delivery metrics (EMF) through `metrics`; off by default (local mode).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Where the HTTP layer reports each delivery's outcome.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Overrides the lease used when a delivery has no deadline.
    pub fn with_lease_ms(mut self, lease_ms: i64) -> Self {
        self.lease_ms = lease_ms.max(1);
        self
    }

    /// The configured limits (the HTTP layer checks the body size before reading it all).
    pub fn limits(&self) -> ReceiveLimits {
        self.limits
    }

    /// Handles one delivery. Records `webhook_id`, `event_type` and `job_id` on the current span.
    pub async fn receive(&self, delivery: Delivery<'_>) -> Result<Receipt, ReceiveError> {
        let size = delivery.body.len();
        if size > self.limits.max_body_bytes {
            return Err(ReceiveError::TooLarge {
                size,
                limit: self.limits.max_body_bytes,
            });
        }
        let received_at_ms = self.clock.now_ms();
        let verified = self
            .verifier
            .verify(
                delivery.headers,
                delivery.body,
                received_at_ms.div_euclid(1000),
            )
            .await?;
        let span = tracing::Span::current();
        span.record("webhook_id", verified.webhook_id.as_str());
        let (event, raw_event) = Event::parse(delivery.body, verified.claims.as_ref())?;
        span.record("event_type", event.event_type.as_str());
        if let Some(job) = &event.job_id {
            span.record("job_id", job.as_str());
        }

        let body_sha256 = sha256_hex(delivery.body);
        let owner = uuid::Uuid::new_v4().to_string();
        let retention_secs =
            i64::try_from(self.limits.retention_hours.saturating_mul(3600)).unwrap_or(i64::MAX);
        for _ in 0..CLAIM_ATTEMPTS {
            let now_ms = self.clock.now_ms();
            let lease_until_ms = match delivery.deadline_ms {
                Some(deadline) => deadline
                    .max(now_ms)
                    .saturating_add(DEADLINE_LEASE_MARGIN_MS),
                None => now_ms.saturating_add(self.lease_ms),
            };
            let request = ClaimRequest {
                webhook_id: verified.webhook_id.clone(),
                owner: owner.clone(),
                body_sha256: body_sha256.clone(),
                now_ms,
                lease_until_ms,
                expires_at: now_ms.div_euclid(1000).saturating_add(retention_secs),
            };
            match self
                .dedupe
                .claim(&request)
                .await
                .map_err(ReceiveError::Store)?
            {
                ClaimOutcome::Claimed => {
                    let envelope = QueueEnvelope::Webhook(WebhookEnvelope {
                        webhook_id: verified.webhook_id.clone(),
                        received_at_ms,
                        signature_mode: verified.mode,
                        event: EventSummary::from(&event),
                        raw_event,
                        user_metadata: event.user_metadata.clone(),
                    });
                    return self.enqueue_claimed(&request, &envelope).await;
                }
                ClaimOutcome::Existing(record) => {
                    if record.body_sha256 != body_sha256 {
                        tracing::error!(
                            webhook_id = %verified.webhook_id,
                            "webhook id reused with a different body: forged, replayed or buggy sender"
                        );
                        return Err(ReceiveError::BodyMismatch {
                            webhook_id: verified.webhook_id,
                        });
                    }
                    match record.status {
                        DedupeStatus::Enqueued => {
                            return Ok(Receipt::Duplicate {
                                webhook_id: verified.webhook_id,
                            });
                        }
                        DedupeStatus::Pending if record.lease_until_ms >= now_ms => {
                            let wait_ms = record.lease_until_ms.saturating_sub(now_ms);
                            let retry_after_secs =
                                u64::try_from(wait_ms.saturating_add(999) / 1000)
                                    .unwrap_or(1)
                                    .max(1);
                            return Err(ReceiveError::InFlight {
                                webhook_id: verified.webhook_id,
                                retry_after_secs,
                            });
                        }
                        // The record changed between the condition and our read; try again.
                        DedupeStatus::Pending => continue,
                    }
                }
            }
        }
        Err(ReceiveError::Store(StoreError::Unavailable(
            "the dedupe record kept changing; giving up for this attempt".into(),
        )))
    }

    async fn enqueue_claimed(
        &self,
        claim: &ClaimRequest,
        envelope: &QueueEnvelope,
    ) -> Result<Receipt, ReceiveError> {
        let message = match envelope.to_message() {
            Ok(m) => m,
            Err(e) => {
                self.release(claim).await;
                return Err(ReceiveError::Envelope(e.to_string()));
            }
        };
        match self.queue.enqueue(&message).await {
            Ok(message_id) => {
                // Committed. A failed completion only leaves the record PENDING until its lease
                // ends; a later retry may then enqueue again, which the consumer absorbs.
                if let Err(e) = self
                    .dedupe
                    .complete(&claim.webhook_id, &claim.owner, &message_id)
                    .await
                {
                    tracing::warn!(error = %e, "enqueued, but marking the dedupe record ENQUEUED failed");
                }
                Ok(Receipt::Accepted {
                    webhook_id: claim.webhook_id.clone(),
                    message_id,
                })
            }
            Err(e) => {
                self.release(claim).await;
                Err(ReceiveError::Queue(e))
            }
        }
    }

    async fn release(&self, claim: &ClaimRequest) {
        if let Err(e) = self.dedupe.release(&claim.webhook_id, &claim.owner).await {
            tracing::warn!(error = %e, "releasing the claim failed; a retry can take over after the lease");
        }
    }
}
