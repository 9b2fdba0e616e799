//! DynamoDB adapter of [`ResultsStore`]: single-table design (the data model in the README).
//!
//! `pk = JOB#<job id>`; `sk = JOB` is the job record; a result row is `sk = RESULT#<key>`, or
//! `RESULTH#<sha256 of key>` for a key too long for a sort key, or `LINE#<n>` for a line without a
//! usable key ([`ResultRow::row_id`]: namespaces no request key can cross); the full key is always
//! the `key` attribute. Scalars are plain attributes, readable in the console; free-form JSON
//! (`user_metadata`, `output`, responses) is stored as JSON text, never as nested maps or numbers
//! (DynamoDB refuses maps nested deeper than 32 and numbers beyond 38 digits or 1e125).
//!
//! DynamoDB caps an item at 400 KB: a row whose response would not fit is stored gzip-compressed,
//! and if even that is too large, split over `PART#<hash of the row id>#nnnn` items (each naming
//! its row in `part_of`) — never truncated. The row says which (`response_encoding`: `json`,
//! `gzip` or `gzip-parts`).
//!
//! With a retention ([`DynamoDbResultsStore::with_retention`], `RESULTS_RETENTION_DAYS`) every
//! item written carries `expires_at`, the table's TTL attribute (template.yaml), so DynamoDB
//! deletes rows, parts and job records that long after their last write.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};

use super::dynamodb_dedupe::sdk_message;
use super::dynamodb_items::{JSON_TEXT_FIELDS, item_of, job_of, part_sks_of, pk, row_items};
use crate::domain::jobs::{JobRecord, ResultRow};
use crate::ports::clock::SharedClock;
use crate::ports::{ResultsStore, RowPage, StoreError};

const JOB_SK: &str = "JOB";
/// The results table's global secondary index of job records, newest first: partition key `sk`
/// (only job records have `sk = JOB` and an `updated_at_ms`, so rows and parts are not in it),
/// sort key `updated_at_ms`, every attribute projected. The template creates it; a table
/// without it is listed by a scan.
pub const JOBS_INDEX: &str = "jobs-by-update";
/// Job records per index page at most.
const JOBS_PAGE: usize = 100;
/// Parts written before row ids had their own namespace: `RESULT#<key>#PART#nnnn`.
pub(super) const LEGACY_PART_MARK: &str = "#PART#";
/// The results table's TTL attribute (epoch seconds; `TimeToLiveSpecification` in template.yaml).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// Rows per query page when `list_rows` reads a whole job.
const LIST_PAGE_ROWS: usize = 1_000;
/// Attempts for `UnprocessedItems` before giving up (the message is then retried).
const BATCH_ATTEMPTS: u32 = 8;
const MAX_BATCH: usize = 25;

/// [`ResultsStore`] on one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoDbResultsStore {
    client: Client,
    table: String,
    retention: Option<Retention>,
}

/// How long written items are kept, and the clock that says when they were written.
#[derive(Debug, Clone)]
struct Retention {
    keep: Duration,
    clock: SharedClock,
}

impl DynamoDbResultsStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            retention: None,
        }
    }

    /// Every item written from now on expires `keep` after its write, by `clock`; `None` keeps
    /// items forever (the default).
    pub fn with_retention(mut self, keep: Option<Duration>, clock: SharedClock) -> Self {
        self.retention = keep.map(|keep| Retention { keep, clock });
        self
    }

    /// Sets `expires_at` on an item about to be written, when a retention is set.
    fn stamp_expiry(&self, item: &mut HashMap<String, AttributeValue>) {
        if let Some(r) = &self.retention {
            let keep = i64::try_from(r.keep.as_secs()).unwrap_or(i64::MAX);
            let at = r.clock.now_secs().saturating_add(keep);
            item.insert(TTL_ATTRIBUTE.into(), AttributeValue::N(at.to_string()));
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

#[async_trait]
impl ResultsStore for DynamoDbResultsStore {
    async fn load_job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk(job_id)))
            .key("sk", AttributeValue::S(JOB_SK.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(sdk_message(&e)))?;
        out.item().map(job_of).transpose()
    }

    async fn save_job(&self, record: &JobRecord) -> Result<bool, StoreError> {
        let value = serde_json::to_value(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut item = item_of(&value);
        for field in JSON_TEXT_FIELDS {
            if let Some(v) = value.get(field).filter(|v| !v.is_null()) {
                item.insert(field.to_owned(), AttributeValue::S(v.to_string()));
            }
        }
        item.insert("pk".into(), AttributeValue::S(pk(&record.job_id)));
        item.insert("sk".into(), AttributeValue::S(JOB_SK.into()));
        item.insert(
            "state_rank".into(),
            AttributeValue::N(record.state.rank().to_string()),
        );
        self.stamp_expiry(&mut item);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR state_rank < :rank OR #state = :state",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(
                ":rank",
                AttributeValue::N(record.state.rank().to_string()),
            )
            .expression_attribute_values(":state", AttributeValue::S(record.state.as_str().into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) => {
                let message = sdk_message(&err);
                match err.into_service_error() {
                    PutItemError::ConditionalCheckFailedException(_) => Ok(false),
                    _ => Err(StoreError::Unavailable(message)),
                }
            }
        }
    }

    async fn put_rows(&self, rows: &[ResultRow]) -> Result<(), StoreError> {
        // DynamoDB refuses a BatchWriteItem naming one key twice: the last row of a key wins.
        let mut last: HashMap<String, usize> = HashMap::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            last.insert(row.row_id(), i);
        }
        let mut requests = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            if last.get(&row.row_id()) != Some(&i) {
                continue;
            }
            for mut item in row_items(row)? {
                self.stamp_expiry(&mut item);
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
        }
        for chunk in requests.chunks(MAX_BATCH) {
            self.batch_write(chunk.to_vec()).await?;
        }
        Ok(())
    }

    async fn delete_rows_before(&self, job_id: &str, before_ms: i64) -> Result<u64, StoreError> {
        let old = self.stale_items(job_id, before_ms).await?;
        // Parts first: a cleanup cut short then leaves rows that still name their parts, which
        // the next attempt finds again, and never parts that no row names.
        for batch in old.parts.chunks(MAX_BATCH) {
            self.delete_items(job_id, batch.to_vec()).await?;
        }
        for batch in old.rows.chunks(MAX_BATCH) {
            self.delete_items(job_id, batch.to_vec()).await?;
        }
        Ok(u64::try_from(old.rows.len()).unwrap_or(u64::MAX))
    }

    async fn count_rows_before(&self, job_id: &str, before_ms: i64) -> Result<u64, StoreError> {
        let old = self.stale_items(job_id, before_ms).await?;
        Ok(u64::try_from(old.rows.len()).unwrap_or(u64::MAX))
    }

    async fn list_rows(&self, job_id: &str) -> Result<Vec<ResultRow>, StoreError> {
        let mut rows = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .rows_page(job_id, after.as_deref(), LIST_PAGE_ROWS)
                .await?;
            rows.extend(page.rows);
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        rows.sort_by(|a, b| a.key.cmp(&b.key).then(a.keyless.cmp(&b.keyless)));
        Ok(rows)
    }

    async fn rows_page(
        &self,
        job_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RowPage, StoreError> {
        super::dynamodb_results_read::rows_page(&self.client, &self.table, job_id, after, limit)
            .await
    }

    async fn count_rows(&self, job_id: &str) -> Result<u64, StoreError> {
        let mut count = 0u64;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            // Rows have a `status`; the job record and parts do not.
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .filter_expression("attribute_exists(#status)")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":pk", AttributeValue::S(pk(job_id)))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError::Unavailable(sdk_message(&e)))?;
            count += u64::try_from(out.count()).unwrap_or(0);
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(count),
            }
        }
    }

    async fn list_jobs(&self, limit: Option<usize>) -> Result<Vec<JobRecord>, StoreError> {
        match self.jobs_from_index(limit).await? {
            Some(jobs) => Ok(jobs),
            None => {
                tracing::info!(
                    table = %self.table,
                    index = JOBS_INDEX,
                    "the table has no jobs index: listing its jobs reads the whole table"
                );
                self.scan_jobs(limit).await
            }
        }
    }

    fn table_name(&self) -> Option<&str> {
        Some(&self.table)
    }
}

impl DynamoDbResultsStore {
    /// The newest `limit` job records from [`JOBS_INDEX`], newest first; `None` when the table
    /// has no such index (a routed table created without it).
    async fn jobs_from_index(
        &self,
        limit: Option<usize>,
    ) -> Result<Option<Vec<JobRecord>>, StoreError> {
        let mut jobs = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let want = limit.map(|n| n.saturating_sub(jobs.len()));
            if want == Some(0) {
                break;
            }
            let page = want.map(|n| i32::try_from(n.min(JOBS_PAGE)).unwrap_or(100));
            let result = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(JOBS_INDEX)
                .key_condition_expression("sk = :job")
                .expression_attribute_values(":job", AttributeValue::S(JOB_SK.into()))
                .scan_index_forward(false)
                .set_limit(page)
                .set_exclusive_start_key(start.take())
                .send()
                .await;
            let out = match result {
                Ok(out) => out,
                Err(err) => {
                    let message = sdk_message(&err);
                    let service = err.into_service_error();
                    // DynamoDB says ValidationException ("The table does not have the
                    // specified index"); moto says ResourceNotFoundException ("Invalid index").
                    let missing = matches!(
                        service.meta().code(),
                        Some("ValidationException" | "ResourceNotFoundException")
                    ) && {
                        let m = message.to_ascii_lowercase();
                        m.contains("specified index") || m.contains("invalid index")
                    };
                    if missing && jobs.is_empty() {
                        return Ok(None);
                    }
                    return Err(StoreError::Unavailable(message));
                }
            };
            for item in out.items() {
                jobs.push(job_of(item)?);
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        // The index orders by time only; ties as the SQLite store orders them.
        newest_first(&mut jobs);
        Ok(Some(jobs))
    }

    /// Every job record read from a scan of the whole table, keeping the newest `limit`.
    async fn scan_jobs(&self, limit: Option<usize>) -> Result<Vec<JobRecord>, StoreError> {
        let mut jobs = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :job")
                .expression_attribute_values(":job", AttributeValue::S(JOB_SK.into()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError::Unavailable(sdk_message(&e)))?;
            for item in out.items() {
                jobs.push(job_of(item)?);
            }
            // Only the newest `limit` can be listed: the rest is dropped as the scan goes, so
            // a table of many jobs is read in bounded memory.
            if let Some(limit) = limit
                && jobs.len() > limit.saturating_mul(2).max(64)
            {
                newest_first(&mut jobs);
                jobs.truncate(limit);
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        newest_first(&mut jobs);
        if let Some(limit) = limit {
            jobs.truncate(limit);
        }
        Ok(jobs)
    }
}

/// Newest `updated_at_ms` first, then by job id (as the SQLite store orders them).
fn newest_first(jobs: &mut [JobRecord]) {
    jobs.sort_by(|a, b| {
        b.updated_at_ms
            .cmp(&a.updated_at_ms)
            .then_with(|| a.job_id.cmp(&b.job_id))
    });
}

/// What [`ResultsStore::delete_rows_before`] removes from a job's partition.
struct StaleItems {
    /// Rows written before the time.
    rows: Vec<String>,
    /// Their parts, and parts no remaining row names that were written before the time too (a
    /// row rewritten smaller, or a cleanup cut short by an older version).
    parts: Vec<String>,
}

impl DynamoDbResultsStore {
    /// Reads `job_id`'s partition (keys and the few attributes that tell rows, parts and their
    /// ages apart) for [`StaleItems`].
    async fn stale_items(&self, job_id: &str, before_ms: i64) -> Result<StaleItems, StoreError> {
        let number = |item: &HashMap<String, AttributeValue>, name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
        };
        let mut rows = Vec::new();
        let mut doomed = HashSet::new();
        let mut named = HashSet::new();
        let mut parts: Vec<(String, Option<i64>)> = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk(job_id)))
                .projection_expression(
                    "sk, part_of, ingested_at_ms, #status, response_encoding, response_parts, \
                     key_parts",
                )
                .expression_attribute_names("#status", "status")
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError::Unavailable(sdk_message(&e)))?;
            for item in out.items() {
                let Some(sk) = item.get("sk").and_then(|v| v.as_s().ok()) else {
                    continue;
                };
                let written = number(item, "ingested_at_ms");
                if item.contains_key("status") {
                    let own = part_sks_of(sk, item);
                    if written.is_some_and(|t| t < before_ms) {
                        rows.push(sk.clone());
                        doomed.extend(own);
                    } else {
                        named.extend(own);
                    }
                } else if item.contains_key("part_of") {
                    parts.push((sk.clone(), written));
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        // A part no remaining row names goes if it is old; one just written stays (its row may
        // be in a batch still on its way). Parts from before they carried a time count as old.
        doomed.extend(
            parts
                .into_iter()
                .filter(|(sk, t)| !named.contains(sk) && t.is_none_or(|t| t < before_ms))
                .map(|(sk, _)| sk),
        );
        doomed.retain(|sk| !named.contains(sk));
        let mut parts: Vec<String> = doomed.into_iter().collect();
        parts.sort();
        Ok(StaleItems { rows, parts })
    }

    /// Deletes the items `sks` (at most [`MAX_BATCH`]) of `job_id`.
    async fn delete_items(&self, job_id: &str, sks: Vec<String>) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(sks.len());
        for sk in sks {
            let delete = DeleteRequest::builder()
                .key("pk", AttributeValue::S(pk(job_id)))
                .key("sk", AttributeValue::S(sk))
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        self.batch_write(requests).await
    }

    /// One `BatchWriteItem` of at most 25 requests, retrying `UnprocessedItems` with backoff.
    async fn batch_write(&self, mut requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for attempt in 0..BATCH_ATTEMPTS {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| StoreError::Unavailable(sdk_message(&e)))?;
            let unprocessed = out
                .unprocessed_items()
                .and_then(|m| m.get(&self.table))
                .cloned()
                .unwrap_or_default();
            if unprocessed.is_empty() {
                return Ok(());
            }
            requests = unprocessed;
            let cap_ms = 50u64.saturating_mul(1 << attempt).min(5_000);
            let jitter = rand_ms(cap_ms);
            tokio::time::sleep(Duration::from_millis(jitter)).await;
        }
        Err(StoreError::Unavailable(format!(
            "{} row writes still unprocessed after {BATCH_ATTEMPTS} attempts",
            requests.len()
        )))
    }
}

fn rand_ms(cap: u64) -> u64 {
    // Full jitter without another dependency: the low bits of a fresh UUID are random enough.
    let r = uuid::Uuid::new_v4().as_u128() as u64;
    r % cap.max(1)
}
