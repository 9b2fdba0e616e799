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

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use serde_json::{Map, Number, Value};

use super::dynamodb_dedupe::sdk_message;
use crate::domain::jobs::{JobRecord, ResultRow};
use crate::domain::verify::sha256_hex;
use crate::ports::clock::SharedClock;
use crate::ports::{ResultsStore, RowPage, StoreError};

const JOB_SK: &str = "JOB";
pub(super) const PART_PREFIX: &str = "PART#";
/// Parts written before row ids had their own namespace: `RESULT#<key>#PART#nnnn`.
pub(super) const LEGACY_PART_MARK: &str = "#PART#";
/// The results table's TTL attribute (epoch seconds; `TimeToLiveSpecification` in template.yaml).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// Rows per query page when `list_rows` reads a whole job.
const LIST_PAGE_ROWS: usize = 1_000;
/// Job record fields that hold free-form JSON: stored as JSON text.
const JSON_TEXT_FIELDS: [&str; 3] = ["user_metadata", "output", "error"];
/// Keep items well under DynamoDB's 400 KB (attribute names and overhead count too).
const ITEM_BUDGET: usize = 350 * 1024;
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

pub(super) fn pk(job_id: &str) -> String {
    format!("JOB#{job_id}")
}

/// JSON → DynamoDB attribute (numbers stay numbers, objects become maps).
pub fn to_attr(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_attr).collect()),
        Value::Object(o) => {
            AttributeValue::M(o.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect())
        }
    }
}

/// DynamoDB attribute → JSON.
pub fn from_attr(a: &AttributeValue) -> Value {
    match a {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => n
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| n.parse::<u64>().map(Value::from))
            .ok()
            .or_else(|| {
                n.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            })
            .unwrap_or(Value::Null),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::L(l) => Value::Array(l.iter().map(from_attr).collect()),
        AttributeValue::M(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), from_attr(v))).collect())
        }
        _ => Value::Null,
    }
}

fn item_of(value: &Value) -> HashMap<String, AttributeValue> {
    match value {
        Value::Object(o) => o
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), to_attr(v)))
            .collect(),
        _ => HashMap::new(),
    }
}

pub(super) fn value_of(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .filter(|(k, _)| !matches!(k.as_str(), "pk" | "sk" | "state_rank"))
            .map(|(k, v)| (k.clone(), from_attr(v)))
            .collect::<Map<_, _>>(),
    )
}

/// A job record item as the record; JSON-text fields parsed back (records written before they
/// were text hold maps, which read the same).
fn job_of(item: &HashMap<String, AttributeValue>) -> Result<JobRecord, StoreError> {
    let mut value = value_of(item);
    if let Value::Object(map) = &mut value {
        for field in JSON_TEXT_FIELDS {
            if let Some(Value::String(text)) = map.get(field) {
                let parsed: Value = serde_json::from_str(text)
                    .map_err(|e| StoreError::Corrupt(format!("job record `{field}`: {e}")))?;
                map.insert(field.to_owned(), parsed);
            }
        }
    }
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("job record: {e}")))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)
        .and_then(|()| enc.finish())
        .map_err(|e| StoreError::Corrupt(format!("gzip: {e}")))
}

pub(super) fn gunzip(bytes: &[u8]) -> Result<String, StoreError> {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .map_err(|e| StoreError::Corrupt(format!("gunzip: {e}")))?;
    Ok(out)
}

/// Items for one row: the row itself, plus part items when the response is too large.
fn row_items(row: &ResultRow) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
    let value = serde_json::to_value(row).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut item = item_of(&value);
    let row_pk = pk(&row.job_id);
    let row_sk = row.row_id();
    item.insert("pk".into(), AttributeValue::S(row_pk.clone()));
    item.insert("sk".into(), AttributeValue::S(row_sk.clone()));
    let size: usize = item.iter().map(|(k, v)| k.len() + attr_size(v)).sum();
    let mut items = Vec::new();
    if size > ITEM_BUDGET {
        if let Some(response) = &row.response_json {
            item.remove("response_json");
            // The text is a copy of what is in the response; drop it rather than risk the limit.
            if item.remove("text").is_some() {
                item.insert("text_in_response".into(), AttributeValue::Bool(true));
            }
            let packed = gzip(response.as_bytes())?;
            if packed.len() <= ITEM_BUDGET / 2 {
                item.insert("response_encoding".into(), AttributeValue::S("gzip".into()));
                item.insert("response_gzip".into(), AttributeValue::B(Blob::new(packed)));
            } else {
                let chunks: Vec<&[u8]> = packed.chunks(ITEM_BUDGET / 2).collect();
                item.insert(
                    "response_encoding".into(),
                    AttributeValue::S("gzip-parts".into()),
                );
                item.insert(
                    "response_parts".into(),
                    AttributeValue::N(chunks.len().to_string()),
                );
                let owner = &sha256_hex(row_sk.as_bytes())[..32];
                for (i, chunk) in chunks.iter().enumerate() {
                    let mut part = HashMap::new();
                    part.insert("pk".into(), AttributeValue::S(row_pk.clone()));
                    part.insert(
                        "sk".into(),
                        AttributeValue::S(format!("{PART_PREFIX}{owner}#{:04}", i + 1)),
                    );
                    part.insert("part_of".into(), AttributeValue::S(row_sk.clone()));
                    part.insert("chunk".into(), AttributeValue::B(Blob::new(chunk.to_vec())));
                    items.push(part);
                }
            }
        }
    } else if row.response_json.is_some() {
        item.insert("response_encoding".into(), AttributeValue::S("json".into()));
    }
    items.insert(0, item);
    Ok(items)
}

fn attr_size(a: &AttributeValue) -> usize {
    match a {
        AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::L(l) => l.iter().map(attr_size).sum::<usize>() + 3,
        AttributeValue::M(m) => m.iter().map(|(k, v)| k.len() + attr_size(v)).sum::<usize>() + 3,
        _ => 1,
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

    async fn list_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
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
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        jobs.sort_by_key(|j| std::cmp::Reverse(j.updated_at_ms));
        Ok(jobs)
    }
}

impl DynamoDbResultsStore {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::jobs::RowStatus;

    fn row(response: String) -> ResultRow {
        ResultRow {
            job_id: "batches/x".into(),
            key: "k1".into(),
            line: 1,
            status: RowStatus::Ok,
            text: Some("t".into()),
            finish_reason: Some("STOP".into()),
            prompt_tokens: Some(1),
            candidates_tokens: None,
            total_tokens: None,
            thoughts_tokens: None,
            model_version: None,
            response_json: Some(response),
            error_code: None,
            error_message: None,
            keyless: false,
            ingested_at_ms: 1,
        }
    }

    #[test]
    fn when_row_is_small_should_store_plain_json() {
        let items = row_items(&row("{\"a\":1}".into())).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["response_encoding"].as_s().unwrap(), "json");
        assert_eq!(items[0]["sk"].as_s().unwrap(), "RESULT#k1");
    }

    #[test]
    fn when_row_is_large_but_compressible_should_gzip() {
        let big = format!("{{\"text\":\"{}\"}}", "a".repeat(600_000));
        let items = row_items(&row(big.clone())).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["response_encoding"].as_s().unwrap(), "gzip");
        let AttributeValue::B(b) = &items[0]["response_gzip"] else {
            panic!()
        };
        assert_eq!(gunzip(b.as_ref()).unwrap(), big);
    }

    #[test]
    fn when_row_is_large_and_incompressible_should_split_into_parts() {
        // xorshift noise over a 64-letter alphabet: gzip cannot shrink it below half.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let noise: String = (0..400_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(alphabet[(x % 64) as usize])
            })
            .collect();
        let items = row_items(&row(format!("{{\"t\":\"{noise}\"}}"))).unwrap();
        assert!(items.len() >= 2, "{}", items.len());
        assert_eq!(items[0]["response_encoding"].as_s().unwrap(), "gzip-parts");
        let owner = &sha256_hex(b"RESULT#k1")[..32];
        for (i, part) in items.iter().skip(1).enumerate() {
            assert_eq!(
                part["sk"].as_s().unwrap(),
                &format!("PART#{owner}#{:04}", i + 1)
            );
            assert_eq!(part["part_of"].as_s().unwrap(), "RESULT#k1");
            let size: usize = part.iter().map(|(k, v)| k.len() + attr_size(v)).sum();
            assert!(size < 400 * 1024);
        }
    }

    #[test]
    fn json_attribute_round_trip() {
        let v = serde_json::json!({"a": 1, "b": [true, "x", {"c": -2}], "d": 1.5});
        assert_eq!(from_attr(&to_attr(&v)), v);
    }
}
