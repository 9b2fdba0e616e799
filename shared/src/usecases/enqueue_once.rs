//! Enqueue a message at most once per id: claim the id in the dedupe store → enqueue → mark it
//! ENQUEUED, releasing the claim whenever the enqueue fails (`domain/dedupe.rs`).
//!
//! The receiver keys it on `webhook-id`; the reconciler on a deterministic id per recovered
//! batch, so overlapping or repeated runs never enqueue the same recovery twice. Enqueue success
//! is the commit point; a lease lets a later attempt take over a claim whose holder died.

use std::sync::Arc;

use crate::domain::dedupe::{ClaimOutcome, ClaimRequest, DedupeStatus};
use crate::domain::envelope::OutgoingMessage;
use crate::ports::clock::{Clock, SharedClock};
use crate::ports::ids::{RandomIds, SharedIds};
use crate::ports::{DedupeStore, EventQueue, QueueError, StoreError};

/// Added to an invocation deadline: the runtime kills the function slightly after it.
pub const DEADLINE_LEASE_MARGIN_MS: i64 = 2_000;
/// Claim attempts when the stored record changes under us (Powertools retries the same way).
const CLAIM_ATTEMPTS: usize = 3;

/// One message to enqueue once.
#[derive(Debug, Clone, Copy)]
pub struct OnceRequest<'a> {
    /// The idempotency key (dedupe table partition key).
    pub id: &'a str,
    /// Hex SHA-256 of what the id stands for; the same id with another hash is refused.
    pub body_sha256: &'a str,
    pub message: &'a OutgoingMessage,
    /// Epoch ms at which the caller's invocation will be killed, if known; the lease lasts until
    /// then (plus a margin), otherwise `lease_ms` from now.
    pub deadline_ms: Option<i64>,
    pub lease_ms: i64,
    /// How long the id is remembered once enqueued (the record's TTL).
    pub retention_secs: i64,
}

/// What happened, when nothing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnceOutcome {
    /// Claimed and enqueued now.
    Enqueued { message_id: String },
    /// The id was already enqueued; nothing was done.
    AlreadyEnqueued,
    /// Another caller holds a live claim on the id.
    InFlight { retry_after_secs: u64 },
    /// The id is known with a different body hash (forged, replayed or buggy sender).
    BodyMismatch,
}

/// A dependency failed; any claim taken was released (best effort) so a retry can succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnceError {
    #[error("dedupe store failed: {0}")]
    Store(StoreError),
    #[error("queue failed: {0}")]
    Queue(QueueError),
}

/// The claim → enqueue → complete sequence over the two ports.
#[derive(Clone)]
pub struct EnqueueOnce {
    dedupe: Arc<dyn DedupeStore>,
    queue: Arc<dyn EventQueue>,
    clock: SharedClock,
    ids: SharedIds,
}

impl std::fmt::Debug for EnqueueOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnqueueOnce").finish_non_exhaustive()
    }
}

impl EnqueueOnce {
    pub fn new(
        dedupe: Arc<dyn DedupeStore>,
        queue: Arc<dyn EventQueue>,
        clock: SharedClock,
    ) -> Self {
        Self {
            dedupe,
            queue,
            clock,
            ids: Arc::new(RandomIds),
        }
    }

    /// Draws claim owners from `ids` (random v4 UUIDs by default).
    pub fn with_ids(mut self, ids: SharedIds) -> Self {
        self.ids = ids;
        self
    }

    /// Enqueues `request.message` unless `request.id` was already enqueued or is being handled.
    pub async fn enqueue(&self, request: &OnceRequest<'_>) -> Result<OnceOutcome, OnceError> {
        let owner = self.ids.new_id();
        let spec = ClaimSpec {
            id: request.id,
            body_sha256: request.body_sha256,
            deadline_ms: request.deadline_ms,
            lease_ms: request.lease_ms,
            retention_secs: request.retention_secs,
        };
        match claim_once(self.dedupe.as_ref(), self.clock.as_ref(), &owner, &spec)
            .await
            .map_err(OnceError::Store)?
        {
            ClaimDecision::Claimed(claim) => self.enqueue_claimed(&claim, request.message).await,
            ClaimDecision::Done => Ok(OnceOutcome::AlreadyEnqueued),
            ClaimDecision::InFlight { retry_after_secs } => {
                Ok(OnceOutcome::InFlight { retry_after_secs })
            }
            ClaimDecision::BodyMismatch => Ok(OnceOutcome::BodyMismatch),
        }
    }

    async fn enqueue_claimed(
        &self,
        claim: &ClaimRequest,
        message: &OutgoingMessage,
    ) -> Result<OnceOutcome, OnceError> {
        match self.queue.enqueue(message).await {
            Ok(message_id) => {
                // Committed. A failed completion only leaves the record PENDING until its lease
                // ends; a later attempt may then enqueue again, which the consumer absorbs.
                if let Err(e) = self
                    .dedupe
                    .complete(&claim.webhook_id, &claim.owner, &message_id)
                    .await
                {
                    tracing::warn!(error = %e, "enqueued, but marking the dedupe record ENQUEUED failed");
                }
                Ok(OnceOutcome::Enqueued { message_id })
            }
            Err(e) => {
                if let Err(e) = self.dedupe.release(&claim.webhook_id, &claim.owner).await {
                    tracing::warn!(error = %e, "releasing the claim failed; a retry can take over after the lease");
                }
                Err(OnceError::Queue(e))
            }
        }
    }
}

/// What to claim: [`OnceRequest`] without the message, for any effect done once per id (the
/// consumer's downstream events claim the same way, `usecases::consume`).
#[derive(Debug, Clone, Copy)]
pub struct ClaimSpec<'a> {
    pub id: &'a str,
    pub body_sha256: &'a str,
    pub deadline_ms: Option<i64>,
    pub lease_ms: i64,
    pub retention_secs: i64,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    /// The caller owns the id now: do the effect, then complete (or release) this claim.
    Claimed(ClaimRequest),
    /// The effect was already done (the record is complete).
    Done,
    /// Another caller holds a live claim.
    InFlight { retry_after_secs: u64 },
    /// The id is known with another body hash.
    BodyMismatch,
}

/// Claims `spec.id` for `owner`: the lease lasts until the caller's deadline (plus a margin) or
/// `lease_ms`, and a record whose holder died (lease over) is taken over.
pub async fn claim_once(
    dedupe: &dyn DedupeStore,
    clock: &dyn Clock,
    owner: &str,
    spec: &ClaimSpec<'_>,
) -> Result<ClaimDecision, StoreError> {
    for _ in 0..CLAIM_ATTEMPTS {
        let now_ms = clock.now_ms();
        let lease_until_ms = match spec.deadline_ms {
            Some(deadline) => deadline
                .max(now_ms)
                .saturating_add(DEADLINE_LEASE_MARGIN_MS),
            None => now_ms.saturating_add(spec.lease_ms.max(1)),
        };
        let claim = ClaimRequest {
            webhook_id: spec.id.to_owned(),
            owner: owner.to_owned(),
            body_sha256: spec.body_sha256.to_owned(),
            now_ms,
            lease_until_ms,
            expires_at: now_ms.div_euclid(1000).saturating_add(spec.retention_secs),
        };
        match dedupe.claim(&claim).await? {
            ClaimOutcome::Claimed => return Ok(ClaimDecision::Claimed(claim)),
            ClaimOutcome::Existing(record) => {
                if record.body_sha256 != spec.body_sha256 {
                    return Ok(ClaimDecision::BodyMismatch);
                }
                match record.status {
                    DedupeStatus::Enqueued => return Ok(ClaimDecision::Done),
                    DedupeStatus::Pending if record.lease_until_ms >= now_ms => {
                        let wait_ms = record.lease_until_ms.saturating_sub(now_ms);
                        let retry_after_secs = u64::try_from(wait_ms.saturating_add(999) / 1000)
                            .unwrap_or(1)
                            .max(1);
                        return Ok(ClaimDecision::InFlight { retry_after_secs });
                    }
                    // The record changed between the condition and our read; try again.
                    DedupeStatus::Pending => {}
                }
            }
        }
    }
    Err(StoreError::Unavailable(
        "the dedupe record kept changing; giving up for this attempt".into(),
    ))
}
