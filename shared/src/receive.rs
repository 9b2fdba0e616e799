//! The receive use case: verify → claim → enqueue → complete (DESIGN §4–5).
//!
//! Enqueue success is the commit point. A claim is released whenever the enqueue fails, so the
//! sender's retry can succeed; a lease lets a retry take over a claim whose holder died. The
//! claim/enqueue sequence itself lives in [`crate::enqueue_once`], shared with the reconciler.

use std::sync::Arc;

use http::HeaderMap;

use crate::clock::SharedClock;
use crate::config::ReceiveLimits;
use crate::enqueue_once::{EnqueueOnce, OnceError, OnceOutcome, OnceRequest};
use crate::envelope::{EventSummary, QueueEnvelope, WebhookEnvelope};
use crate::event::{Event, EventError};
use crate::secrets::SigningSecretsRefresh;
use crate::store::{DedupeStore, EventQueue, QueueError, StoreError};
use crate::telemetry::Metrics;
use crate::verify::{VerifyError, WebhookVerifier, sha256_hex};

/// Lease of a claim when the caller has no invocation deadline (local mode).
pub const DEFAULT_LEASE_MS: i64 = 30_000;
/// Added to an invocation deadline: the runtime kills the function slightly after it.
pub const DEADLINE_LEASE_MARGIN_MS: i64 = crate::enqueue_once::DEADLINE_LEASE_MARGIN_MS;

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
    once: EnqueueOnce,
    clock: SharedClock,
    limits: ReceiveLimits,
    lease_ms: i64,
    metrics: Metrics,
    secrets_refresh: Option<Arc<SigningSecretsRefresh>>,
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
            once: EnqueueOnce::new(dedupe, queue, Arc::clone(&clock)),
            clock,
            limits,
            lease_ms: DEFAULT_LEASE_MS,
            metrics: Metrics::disabled(),
            secrets_refresh: None,
        }
    }

    /// Keeps the static secrets in step with Secrets Manager (`WEBHOOK_SIGNING_SECRETS_ARN`):
    /// each delivery first refreshes them when the cached list is older than its TTL.
    pub fn with_secrets_refresh(mut self, refresh: Arc<SigningSecretsRefresh>) -> Self {
        self.secrets_refresh = Some(refresh);
        self
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
        if let Some(refresh) = &self.secrets_refresh {
            refresh.refresh(&self.verifier).await;
        }
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
        let retention_secs =
            i64::try_from(self.limits.retention_hours.saturating_mul(3600)).unwrap_or(i64::MAX);
        let message = QueueEnvelope::Webhook(WebhookEnvelope {
            webhook_id: verified.webhook_id.clone(),
            received_at_ms,
            signature_mode: verified.mode,
            event: EventSummary::from(&event),
            raw_event,
            user_metadata: event.user_metadata.clone(),
        })
        .to_message()
        .map_err(|e| ReceiveError::Envelope(e.to_string()))?;
        let request = OnceRequest {
            id: &verified.webhook_id,
            body_sha256: &body_sha256,
            message: &message,
            deadline_ms: delivery.deadline_ms,
            lease_ms: self.lease_ms,
            retention_secs,
        };
        let webhook_id = verified.webhook_id.clone();
        match self.once.enqueue(&request).await {
            Ok(OnceOutcome::Enqueued { message_id }) => Ok(Receipt::Accepted {
                webhook_id,
                message_id,
            }),
            Ok(OnceOutcome::AlreadyEnqueued) => Ok(Receipt::Duplicate { webhook_id }),
            Ok(OnceOutcome::InFlight { retry_after_secs }) => Err(ReceiveError::InFlight {
                webhook_id,
                retry_after_secs,
            }),
            Ok(OnceOutcome::BodyMismatch) => {
                tracing::error!(
                    webhook_id = %webhook_id,
                    "webhook id reused with a different body: forged, replayed or buggy sender"
                );
                Err(ReceiveError::BodyMismatch { webhook_id })
            }
            Err(OnceError::Store(e)) => Err(ReceiveError::Store(e)),
            Err(OnceError::Queue(e)) => Err(ReceiveError::Queue(e)),
        }
    }
}
