//! The receive use case: verify → claim → enqueue → complete (the contract in the README; the lease in `domain/dedupe.rs`).
//!
//! Enqueue success is the commit point. A claim is released whenever the enqueue fails, so the
//! sender's retry can succeed; a lease lets a retry take over a claim whose holder died. The
//! claim/enqueue sequence itself lives in [`crate::usecases::enqueue_once`], shared with the reconciler.

use std::sync::Arc;

use http::HeaderMap;

use crate::domain::dedupe::{ClaimOutcome, ClaimRequest};
use crate::domain::dedupe_keys;
use crate::domain::envelope::{EventSummary, QueueEnvelope, SignatureMode, WebhookEnvelope};
use crate::domain::event::{Event, EventError};
use crate::domain::verify::jwt::VerifiedToken;
use crate::domain::verify::{VerifyError, sha256_hex};
use crate::ports::clock::SharedClock;
use crate::ports::ids::{RandomIds, SharedIds};
use crate::ports::metrics::Metrics;
use crate::ports::{DedupeStore, EventQueue, QueueError, StoreError};
use crate::usecases::enqueue_once::{EnqueueOnce, OnceError, OnceOutcome, OnceRequest};
use crate::usecases::secrets::SigningSecretsRefresh;
use crate::usecases::verify::WebhookVerifier;

/// Lease of a claim when the caller has no invocation deadline (local mode).
pub const DEFAULT_LEASE_MS: i64 = 30_000;
/// Added to an invocation deadline: the runtime kills the function slightly after it.
pub const DEADLINE_LEASE_MARGIN_MS: i64 = crate::usecases::enqueue_once::DEADLINE_LEASE_MARGIN_MS;

/// Default of `WEBHOOK_MAX_BODY_BYTES`.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default of `DEDUPE_RETENTION_HOURS`: Gemini retries for 24 h; a week leaves room for manual
/// redelivery and clock trouble.
pub const DEFAULT_RETENTION_HOURS: u64 = 168;

/// Receive-side limits shared by the receiver Lambda and local mode (read by `config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveLimits {
    pub max_body_bytes: usize,
    pub retention_hours: u64,
}

impl Default for ReceiveLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            retention_hours: DEFAULT_RETENTION_HOURS,
        }
    }
}

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
    /// This id was already enqueued with another body; nothing was done. Answered like a
    /// duplicate (a 4xx would only make Gemini retry it for 24 h), but logged and counted.
    Conflicting { webhook_id: String },
}

/// Why a delivery was not accepted. Mapped to HTTP in exactly one place ([`crate::usecases::http`]).
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
    /// A single-use token came back with another `webhook-id` or another body.
    #[error("this token was already used for another delivery")]
    TokenReplayed,
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
            Self::TokenReplayed => "jwt_replayed",
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
    once: EnqueueOnce,
    ids: SharedIds,
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
            once: EnqueueOnce::new(Arc::clone(&dedupe), queue, Arc::clone(&clock)),
            dedupe,
            ids: Arc::new(RandomIds),
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

    /// Draws claim owners from `ids` (random v4 UUIDs by default).
    pub fn with_ids(mut self, ids: SharedIds) -> Self {
        self.once = self.once.with_ids(Arc::clone(&ids));
        self.ids = ids;
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
        let exclusive = verified.token.as_ref().is_none_or(|t| t.audience_exclusive);
        let parsed = Event::parse_delivery(
            delivery.body,
            verified.claims(),
            verified.body_signed,
            exclusive,
        )?;
        let event = parsed.event;
        span.record("event_type", event.event_type.as_str());
        if let Some(job) = &event.job_id {
            span.record("job_id", job.as_str());
        }

        let body_sha256 = sha256_hex(delivery.body);
        if let Some(token) = &verified.token {
            self.use_token_once(token, &verified.webhook_id, &body_sha256, received_at_ms)
                .await?;
        }
        let mut retention_secs =
            i64::try_from(self.limits.retention_hours.saturating_mul(3600)).unwrap_or(i64::MAX);
        if let Some(token) = &verified.token {
            // The delivery is remembered at least as long as its token could come back: the
            // token's claim alone only says "same id and body", which is a duplicate only while
            // the delivery's own record still exists.
            let token_life = token
                .usable_until
                .saturating_add(TOKEN_CLAIM_MARGIN_SECS)
                .saturating_sub(received_at_ms.div_euclid(1000));
            retention_secs = retention_secs.max(token_life);
        }
        let message = QueueEnvelope::Webhook(WebhookEnvelope {
            webhook_id: verified.webhook_id.clone(),
            received_at_ms,
            signature_mode: verified.mode,
            bound: parsed.bound,
            event: EventSummary::from(&event),
            raw_event: parsed.raw,
            user_metadata: event.user_metadata.clone(),
        })
        .to_message()
        .map_err(|e| ReceiveError::Envelope(e.to_string()))?;
        let dedupe_key =
            dedupe_keys::delivery(verified.mode, &verified.webhook_id, verified.id_derived);
        let request = OnceRequest {
            id: &dedupe_key,
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
                if verified.mode == SignatureMode::Static {
                    // Only the holder of our secret can sign this: a sender bug or a leaked secret.
                    tracing::error!(
                        webhook_id = %webhook_id,
                        "webhook id reused with a different body by a holder of the signing secret; the first delivery stands"
                    );
                } else {
                    // The body of a dynamic delivery is not evidence of anything the sender did.
                    tracing::warn!(
                        webhook_id = %webhook_id,
                        bound = parsed.bound,
                        "dynamic delivery reused a webhook id with a different body; the first delivery stands"
                    );
                }
                Ok(Receipt::Conflicting { webhook_id })
            }
            Err(OnceError::Store(e)) => Err(ReceiveError::Store(e)),
            Err(OnceError::Queue(e)) => Err(ReceiveError::Queue(e)),
        }
    }

    /// Claims a dynamic delivery's token for the (`webhook-id`, body) it first came with, for as
    /// long as the token verifies at all. The same token with the same id and body is Gemini's
    /// retry (the ordinary dedupe decides); with anything else it is a replay: one token
    /// enqueues at most one delivery.
    async fn use_token_once(
        &self,
        token: &VerifiedToken,
        webhook_id: &str,
        body_sha256: &str,
        now_ms: i64,
    ) -> Result<(), ReceiveError> {
        let binding = sha256_hex(format!("{webhook_id}\n{body_sha256}").as_bytes());
        // The claim outlives the token (plus the window a clock may be off), and its lease lasts
        // as long as the claim, so nobody can take it over while the token still verifies.
        let expires_at = token
            .usable_until
            .max(now_ms.div_euclid(1000))
            .saturating_add(TOKEN_CLAIM_MARGIN_SECS);
        let claim = ClaimRequest {
            webhook_id: dedupe_keys::token(&token.token_id),
            owner: self.ids.new_id(),
            body_sha256: binding.clone(),
            now_ms,
            lease_until_ms: expires_at.saturating_mul(1000),
            expires_at,
        };
        match self
            .dedupe
            .claim(&claim)
            .await
            .map_err(ReceiveError::Store)?
        {
            ClaimOutcome::Claimed => Ok(()),
            ClaimOutcome::Existing(first) if first.body_sha256 == binding => Ok(()),
            ClaimOutcome::Existing(_) => {
                tracing::warn!(
                    webhook_id = %webhook_id,
                    "a dynamic-webhook token was replayed with another webhook id or body"
                );
                Err(ReceiveError::TokenReplayed)
            }
        }
    }
}

/// Seconds a token's single-use claim outlives the token itself.
const TOKEN_CLAIM_MARGIN_SECS: i64 = 600;
