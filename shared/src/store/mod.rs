//! Ports (narrow traits) for state and queues, with adapters named `<Tech><Port>`.
//!
//! The use cases depend only on these traits, so the Lambda functions (DynamoDB + SQS) and the
//! local `gemini-hooks dev` process (SQLite) run exactly the same rules.

pub mod dynamodb;
pub mod dynamodb_results;
pub mod sqlite;
pub mod sqs;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// State of a dedupe record (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DedupeStatus {
    /// Claimed by a request that has not enqueued yet; protected by a lease.
    Pending,
    /// Durably enqueued: every later delivery of this id is a duplicate.
    Enqueued,
}

impl DedupeStatus {
    /// The stored string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Enqueued => "ENQUEUED",
        }
    }

    /// Parses the stored string.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Self::Pending),
            "ENQUEUED" => Some(Self::Enqueued),
            _ => None,
        }
    }
}

/// One remembered webhook id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupeRecord {
    pub webhook_id: String,
    pub status: DedupeStatus,
    /// Random per request; only the owner may complete or release.
    pub owner: String,
    /// Epoch ms after which a PENDING claim may be taken over (its holder is presumed dead).
    pub lease_until_ms: i64,
    /// Epoch seconds after which the record counts as absent (also the TTL attribute).
    pub expires_at: i64,
    /// Hex SHA-256 of the delivery body, to catch a reused id with another body.
    pub body_sha256: String,
}

/// Everything a claim writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub webhook_id: String,
    pub owner: String,
    pub body_sha256: String,
    pub now_ms: i64,
    pub lease_until_ms: i64,
    pub expires_at: i64,
}

impl ClaimRequest {
    /// The PENDING record this claim writes.
    pub fn record(&self) -> DedupeRecord {
        DedupeRecord {
            webhook_id: self.webhook_id.clone(),
            status: DedupeStatus::Pending,
            owner: self.owner.clone(),
            lease_until_ms: self.lease_until_ms,
            expires_at: self.expires_at,
            body_sha256: self.body_sha256.clone(),
        }
    }

    /// Whether an existing record may be overwritten by this claim: it is expired, or it is
    /// PENDING and its lease is dead. Adapters without conditional writes use this rule; DynamoDB
    /// evaluates the same rule as a condition expression.
    pub fn may_take_over(&self, existing: &DedupeRecord) -> bool {
        existing.expires_at < self.now_ms.div_euclid(1000)
            || (existing.status == DedupeStatus::Pending && existing.lease_until_ms < self.now_ms)
    }
}

/// Result of a claim attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The caller now owns the id.
    Claimed,
    /// Someone else holds a live record; it is returned from the same call.
    Existing(DedupeRecord),
}

/// Failures of a state store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or refused the call (missing table, throttling, network).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// An owner-guarded write found another owner (or no record).
    #[error("record is not owned by this request")]
    NotOwner,
    /// A stored record could not be understood.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

/// The dedupe lease of the receiver (DESIGN §5).
#[async_trait]
pub trait DedupeStore: Send + Sync {
    /// Conditional put: succeeds if the id is absent, expired, or PENDING with a dead lease;
    /// otherwise returns the existing record from the same call.
    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimOutcome, StoreError>;

    /// PENDING → ENQUEUED, only if `owner` still holds the record.
    async fn complete(
        &self,
        webhook_id: &str,
        owner: &str,
        message_id: &str,
    ) -> Result<(), StoreError>;

    /// Deletes a PENDING record, only if `owner` still holds it, so a retry can claim again.
    async fn release(&self, webhook_id: &str, owner: &str) -> Result<(), StoreError>;
}

/// One message for the events queue: a JSON body and string attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    pub attributes: Vec<(String, String)>,
}

impl OutgoingMessage {
    /// Size as SQS counts it (body plus attribute names, types and values).
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.len() + "String".len())
                .sum::<usize>()
    }

    /// Rejects a message larger than `limit` bytes, so every queue fails the same clear way.
    pub fn check_size(&self, limit: usize) -> Result<usize, QueueError> {
        let size = self.size();
        if size > limit {
            Err(QueueError::TooLarge { bytes: size })
        } else {
            Ok(size)
        }
    }
}

/// Failures of a queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error("message of {bytes} bytes is larger than the queue accepts")]
    TooLarge { bytes: usize },
}

/// The queue between receiver and consumer.
#[async_trait]
pub trait EventQueue: Send + Sync {
    /// Durably enqueues one message; success is the receiver's commit point. Returns the
    /// queue's message id.
    async fn enqueue(&self, message: &OutgoingMessage) -> Result<String, QueueError>;
}

/// Job records and result rows (one "results table"; `ROUTES` may select another per group).
#[async_trait]
pub trait ResultsStore: Send + Sync {
    /// The record of `job_id`, if any.
    async fn load_job(&self, job_id: &str) -> Result<Option<crate::jobs::JobRecord>, StoreError>;

    /// Writes the whole record if none is stored, or the stored state may become the new one
    /// ([`crate::jobs::JobState::may_become`]), atomically. Returns `false` (and writes
    /// nothing) when the stored job is already further along.
    async fn save_job(&self, record: &crate::jobs::JobRecord) -> Result<bool, StoreError>;

    /// Upserts rows keyed `(job_id, key)`; a replay overwrites identical rows.
    async fn put_rows(&self, rows: &[crate::jobs::ResultRow]) -> Result<(), StoreError>;

    /// Every row of a job, ordered by key (tests, `gemini-hooks results`). Adapters may page.
    async fn list_rows(&self, job_id: &str) -> Result<Vec<crate::jobs::ResultRow>, StoreError>;

    /// Every job record, newest `updated_at_ms` first (local tooling; not used on hot paths).
    async fn list_jobs(&self) -> Result<Vec<crate::jobs::JobRecord>, StoreError>;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claim(now_ms: i64) -> ClaimRequest {
        ClaimRequest {
            webhook_id: "id".into(),
            owner: "me".into(),
            body_sha256: "h".into(),
            now_ms,
            lease_until_ms: now_ms + 30_000,
            expires_at: now_ms / 1000 + 3600,
        }
    }

    fn record(status: DedupeStatus, lease_until_ms: i64, expires_at: i64) -> DedupeRecord {
        DedupeRecord {
            webhook_id: "id".into(),
            status,
            owner: "other".into(),
            lease_until_ms,
            expires_at,
            body_sha256: "h".into(),
        }
    }

    #[test]
    fn when_lease_alive_should_not_take_over() {
        let c = claim(1_700_000_000_000);
        assert!(!c.may_take_over(&record(
            DedupeStatus::Pending,
            1_700_000_000_001,
            1_800_000_000
        )));
    }

    #[test]
    fn when_lease_dead_should_take_over_pending_but_not_enqueued() {
        let c = claim(1_700_000_000_000);
        assert!(c.may_take_over(&record(
            DedupeStatus::Pending,
            1_699_999_999_999,
            1_800_000_000
        )));
        assert!(!c.may_take_over(&record(
            DedupeStatus::Enqueued,
            1_699_999_999_999,
            1_800_000_000
        )));
    }

    #[test]
    fn when_record_expired_should_take_over_any_status() {
        let c = claim(1_700_000_000_000);
        assert!(c.may_take_over(&record(DedupeStatus::Enqueued, 0, 1_699_999_999)));
        assert!(!c.may_take_over(&record(DedupeStatus::Enqueued, 0, 1_700_000_000)));
    }

    #[test]
    fn status_round_trips() {
        for s in [DedupeStatus::Pending, DedupeStatus::Enqueued] {
            assert_eq!(DedupeStatus::parse(s.as_str()).unwrap(), s);
        }
        assert_eq!(DedupeStatus::parse("COMPLETED"), None);
    }
}
