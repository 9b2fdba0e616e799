//! Job records and result rows on the `jobs` and `result_rows` tables: state only moves forward,
//! rows are upserted by `(job_id, row_id)` ([`ResultRow::row_id`]: request keys and key-less
//! lines in separate namespaces, as in DynamoDB).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::{SqliteStore, corrupt, db_err, to_i64};
use crate::domain::jobs::{JobRecord, JobState, ResultRow, RowStatus};
use crate::ports::{PAGE_BYTES, ResultsStore, RowPage, StoreError, page_bytes};

const UPSERT_ROW: &str = "
INSERT INTO result_rows (job_id, row_id, key, keyless, line, status, text, finish_reason,
    prompt_tokens, candidates_tokens, total_tokens, thoughts_tokens, model_version, response_json,
    error_code, error_message, ingested_at_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
ON CONFLICT (job_id, row_id) DO UPDATE SET
    key = excluded.key, keyless = excluded.keyless,
    line = excluded.line, status = excluded.status, text = excluded.text,
    finish_reason = excluded.finish_reason, prompt_tokens = excluded.prompt_tokens,
    candidates_tokens = excluded.candidates_tokens, total_tokens = excluded.total_tokens,
    thoughts_tokens = excluded.thoughts_tokens, model_version = excluded.model_version,
    response_json = excluded.response_json, error_code = excluded.error_code,
    error_message = excluded.error_message, ingested_at_ms = excluded.ingested_at_ms
";

const ROW_COLUMNS: &str = "job_id, key, line, status, text, finish_reason, prompt_tokens, \
    candidates_tokens, total_tokens, thoughts_tokens, model_version, response_json, error_code, \
    error_message, keyless, ingested_at_ms";

fn job_from_json(text: &str) -> Result<JobRecord, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("stored job record: {e}")))
}

type RawRow = (
    (String, String, i64, String, Option<String>, Option<String>),
    (Option<i64>, Option<i64>, Option<i64>, Option<i64>),
    (Option<String>, Option<String>, Option<i64>, Option<String>),
    (bool, i64),
);

fn raw_row(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ),
        (r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?),
        (r.get(10)?, r.get(11)?, r.get(12)?, r.get(13)?),
        (r.get(14)?, r.get(15)?),
    ))
}

fn row_from_raw(raw: RawRow) -> Result<ResultRow, StoreError> {
    let (
        (job_id, key, line, status, text, finish_reason),
        (prompt_tokens, candidates_tokens, total_tokens, thoughts_tokens),
        (model_version, response_json, error_code, error_message),
        (keyless, ingested_at_ms),
    ) = raw;
    Ok(ResultRow {
        line: u64::try_from(line).map_err(|_| corrupt(format!("row line {line}")))?,
        status: RowStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("unknown row status `{status}`")))?,
        keyless,
        job_id,
        key,
        text,
        finish_reason,
        prompt_tokens,
        candidates_tokens,
        total_tokens,
        thoughts_tokens,
        model_version,
        response_json,
        error_code,
        error_message,
        ingested_at_ms,
    })
}

fn kind_str(record: &JobRecord) -> Result<String, StoreError> {
    match serde_json::to_value(record.kind) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(other) => Ok(other.to_string()),
        Err(e) => Err(corrupt(format!("job kind: {e}"))),
    }
}

#[async_trait]
impl ResultsStore for SqliteStore {
    async fn load_job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let job_id = job_id.to_owned();
        self.run(move |conn| {
            let text: Option<String> = conn
                .query_row(
                    "SELECT record FROM jobs WHERE job_id = ?1",
                    params![job_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            text.as_deref().map(job_from_json).transpose()
        })
        .await
    }

    async fn save_job(&self, record: &JobRecord) -> Result<bool, StoreError> {
        let json =
            serde_json::to_string(record).map_err(|e| corrupt(format!("job record: {e}")))?;
        let kind = kind_str(record)?;
        let record = record.clone();
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let stored: Option<String> = tx
                .query_row(
                    "SELECT state FROM jobs WHERE job_id = ?1",
                    params![record.job_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            if let Some(stored) = stored {
                let state = JobState::parse(&stored)
                    .ok_or_else(|| corrupt(format!("unknown job state `{stored}`")))?;
                if !state.may_become(record.state) {
                    return Ok(false);
                }
            }
            tx.execute(
                "INSERT OR REPLACE INTO jobs (job_id, kind, state, job_group, created_at_ms,
                     updated_at_ms, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    record.job_id,
                    kind,
                    record.state.as_str(),
                    record.job_group,
                    record.created_at_ms,
                    record.updated_at_ms,
                    json
                ],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn put_rows(&self, rows: &[ResultRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows = rows.to_vec();
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            {
                let mut stmt = tx.prepare_cached(UPSERT_ROW).map_err(db_err)?;
                for row in &rows {
                    stmt.execute(params![
                        row.job_id,
                        row.row_id(),
                        row.key,
                        row.keyless,
                        to_i64(row.line, "row line")?,
                        row.status.as_str(),
                        row.text,
                        row.finish_reason,
                        row.prompt_tokens,
                        row.candidates_tokens,
                        row.total_tokens,
                        row.thoughts_tokens,
                        row.model_version,
                        row.response_json,
                        row.error_code,
                        row.error_message,
                        row.ingested_at_ms,
                    ])
                    .map_err(db_err)?;
                }
            }
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn delete_rows_before(&self, job_id: &str, before_ms: i64) -> Result<u64, StoreError> {
        let job_id = job_id.to_owned();
        self.run(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM result_rows WHERE job_id = ?1 AND ingested_at_ms < ?2",
                    params![job_id, before_ms],
                )
                .map_err(db_err)?;
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn count_rows_before(&self, job_id: &str, before_ms: i64) -> Result<u64, StoreError> {
        let job_id = job_id.to_owned();
        self.run(move |conn| {
            let n: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM result_rows WHERE job_id = ?1 AND ingested_at_ms < ?2",
                    params![job_id, before_ms],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn list_rows(&self, job_id: &str) -> Result<Vec<ResultRow>, StoreError> {
        let job_id = job_id.to_owned();
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {ROW_COLUMNS} FROM result_rows WHERE job_id = ?1 ORDER BY key, row_id"
                ))
                .map_err(db_err)?;
            let raw = stmt
                .query_map(params![job_id], raw_row)
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            raw.into_iter().map(row_from_raw).collect()
        })
        .await
    }

    async fn rows_page(
        &self,
        job_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RowPage, StoreError> {
        let job_id = job_id.to_owned();
        // Every row id is longer than the empty string, and TEXT compares as bytes (BINARY),
        // as DynamoDB compares sort keys: both stores page in the same order.
        let after = after.unwrap_or_default().to_owned();
        let limit = limit.max(1);
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {ROW_COLUMNS}, row_id FROM result_rows WHERE job_id = ?1 AND row_id > ?2 \
                     ORDER BY row_id LIMIT ?3"
                ))
                .map_err(db_err)?;
            let found = stmt
                .query_map(params![job_id, after, fetch], |r| {
                    Ok((raw_row(r)?, r.get::<_, String>(16)?))
                })
                .map_err(db_err)?;
            let mut rows = Vec::new();
            let mut bytes = 0usize;
            let mut last_id = None;
            // Rows are decoded one at a time, so a page of large rows stops at PAGE_BYTES.
            for next in found {
                let (raw, id) = next.map_err(db_err)?;
                if rows.len() == limit || bytes >= PAGE_BYTES {
                    return Ok(RowPage {
                        rows,
                        next_after: last_id,
                    });
                }
                let row = row_from_raw(raw)?;
                bytes += page_bytes(&row);
                rows.push(row);
                last_id = Some(id);
            }
            Ok(RowPage {
                rows,
                next_after: None,
            })
        })
        .await
    }

    async fn list_jobs(&self, limit: Option<usize>) -> Result<Vec<JobRecord>, StoreError> {
        // SQLite reads a negative LIMIT as no limit.
        let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        self.run(move |conn| {
            let mut stmt = conn
                .prepare("SELECT record FROM jobs ORDER BY updated_at_ms DESC, job_id LIMIT ?1")
                .map_err(db_err)?;
            let texts = stmt
                .query_map(params![limit], |r| r.get::<_, String>(0))
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            texts.iter().map(|t| job_from_json(t)).collect()
        })
        .await
    }

    async fn count_rows(&self, job_id: &str) -> Result<u64, StoreError> {
        let job_id = job_id.to_owned();
        self.run(move |conn| {
            let n: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM result_rows WHERE job_id = ?1",
                    params![job_id],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    fn table_name(&self) -> Option<&str> {
        self.table.as_deref()
    }
}
