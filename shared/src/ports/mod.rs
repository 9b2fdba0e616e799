//! Ports: one narrow trait for every kind of I/O the use cases do. Adapters (named
//! `<Tech><Port>`) implement them, so the Lambda functions (DynamoDB, SQS, HTTP) and the local
//! `gemini-hooks dev` process (SQLite) run exactly the same rules.

pub mod clock;
pub mod gemini;
pub mod ids;
pub mod job_events;
pub mod keys;
pub mod metrics;
pub mod payloads;
pub mod secrets;

use async_trait::async_trait;

use crate::domain::dedupe::{ClaimOutcome, ClaimRequest};
use crate::domain::envelope::OutgoingMessage;
use crate::domain::jobs::{JobRecord, ResultRow};

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

/// The dedupe lease of the receiver ([`crate::domain::dedupe`]).
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

/// Failures of a queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error("message of {bytes} bytes is larger than the queue accepts")]
    TooLarge { bytes: usize },
}

/// Rejects a message larger than `limit` bytes, so every queue fails the same clear way.
pub fn check_size(message: &OutgoingMessage, limit: usize) -> Result<usize, QueueError> {
    let size = message.size();
    if size > limit {
        Err(QueueError::TooLarge { bytes: size })
    } else {
        Ok(size)
    }
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
    async fn load_job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError>;

    /// Writes the whole record if none is stored, or the stored state may become the new one
    /// ([`crate::domain::jobs::JobState::may_become`]), atomically. Returns `false` (and writes
    /// nothing) when the stored job is already further along.
    async fn save_job(&self, record: &JobRecord) -> Result<bool, StoreError>;

    /// Upserts rows keyed `(job_id, key)`; a replay overwrites identical rows.
    async fn put_rows(&self, rows: &[ResultRow]) -> Result<(), StoreError>;

    /// Every row of a job, ordered by key (tests, `gemini-hooks results`). Adapters may page.
    async fn list_rows(&self, job_id: &str) -> Result<Vec<ResultRow>, StoreError>;

    /// How many rows `job_id` has stored (its `rows_ingested` once complete).
    async fn count_rows(&self, job_id: &str) -> Result<u64, StoreError>;

    /// Every job record, newest `updated_at_ms` first (local tooling; not used on hot paths).
    async fn list_jobs(&self) -> Result<Vec<JobRecord>, StoreError>;

    /// The table name readers outside this system use (the downstream event says where to
    /// read); `None` where there is no such name (the local default store).
    fn table_name(&self) -> Option<&str> {
        None
    }
}
