//! Ports: one narrow trait for every kind of I/O the use cases do. Adapters (named
//! `<Tech><Port>`) implement them, so the Lambda functions (DynamoDB, SQS, HTTP) and the local
//! `gemini-hooks dev` process (SQLite) run exactly the same rules.

pub mod clock;
pub mod gemini;
pub mod ids;
pub mod job_events;
pub mod keys;
pub mod metrics;
pub mod objects;
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

/// A page of rows ends early, before its row limit, once its rows hold this many bytes of text
/// and responses ([`page_bytes`]): a response can be megabytes, and a page stays in memory.
pub const PAGE_BYTES: usize = 8 * 1024 * 1024;

/// What a row weighs in a page ([`PAGE_BYTES`]).
pub fn page_bytes(row: &ResultRow) -> usize {
    [&row.text, &row.response_json, &row.error_message]
        .iter()
        .map(|t| t.as_ref().map_or(0, String::len))
        .sum::<usize>()
        + row.key.len()
}

/// One page of a job's rows, in row-id order ([`ResultRow::row_id`], compared as bytes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowPage {
    pub rows: Vec<ResultRow>,
    /// The row id to pass as `after` for the next page; `None` once there are no more rows.
    pub next_after: Option<String>,
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

    /// Deletes the rows of `job_id` written before `before_ms` (their `ingested_at_ms`), with
    /// any parts they have, and returns how many rows went. A re-ingest ends with it: what it
    /// did not rewrite is not in the results file (a bad deploy's rows under other keys).
    async fn delete_rows_before(&self, job_id: &str, before_ms: i64) -> Result<u64, StoreError>;

    /// How many rows [`Self::delete_rows_before`] would delete now.
    async fn count_rows_before(&self, job_id: &str, before_ms: i64) -> Result<u64, StoreError>;

    /// Every row of a job, ordered by key (tests, `gemini-hooks results`). Adapters may page.
    async fn list_rows(&self, job_id: &str) -> Result<Vec<ResultRow>, StoreError>;

    /// At most `limit` (at least 1) rows of `job_id` whose row id sorts after `after` (from the
    /// first when `None`), reassembled like [`Self::list_rows`], in the same order in every
    /// adapter: `export` and `results` stream a job of any size through it in bounded memory.
    /// Adapters may end a page early (at [`PAGE_BYTES`]); only `next_after: None` means done.
    ///
    /// This default reads the whole job and pages in memory, for test doubles; real adapters
    /// override it.
    async fn rows_page(
        &self,
        job_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RowPage, StoreError> {
        let mut rows: Vec<(String, ResultRow)> = self
            .list_rows(job_id)
            .await?
            .into_iter()
            .map(|r| (r.row_id(), r))
            .filter(|(id, _)| after.is_none_or(|a| id.as_str() > a))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let limit = limit.max(1);
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok(RowPage {
            next_after: more
                .then(|| rows.last().map(|(id, _)| id.clone()))
                .flatten(),
            rows: rows.into_iter().map(|(_, r)| r).collect(),
        })
    }

    /// How many rows `job_id` has stored (its `rows_ingested` once complete).
    async fn count_rows(&self, job_id: &str) -> Result<u64, StoreError>;

    /// The `limit` most recently updated job records (every one with `None`), newest
    /// `updated_at_ms` first. For tooling (`results`), never a hot path: on DynamoDB it reads
    /// the whole table, holding no more than about twice `limit` records at a time.
    async fn list_jobs(&self, limit: Option<usize>) -> Result<Vec<JobRecord>, StoreError>;

    /// The table name readers outside this system use (the downstream event says where to
    /// read); `None` where there is no such name (the local default store).
    fn table_name(&self) -> Option<&str> {
        None
    }
}
