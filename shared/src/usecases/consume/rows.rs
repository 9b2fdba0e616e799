//! Row mapping: a parsed results line as a stored row, and the job's counters.

use crate::domain::event::JobKind;
use crate::domain::gemini::{BatchOperation, RpcStatus};
use crate::domain::jobs::{JobCounts, JobErrorInfo, JobRecord, ResultRow, RowStatus};
use crate::domain::results::{Outcome, ResultRecord};

pub(super) fn rpc_error(status: &RpcStatus, source: &str) -> JobErrorInfo {
    JobErrorInfo {
        code: status.code.map(|c| c.to_string()),
        message: status.message.clone(),
        source: source.to_owned(),
    }
    .bounded()
}

pub(super) fn apply_stats(job: &mut JobRecord, op: &BatchOperation) {
    job.counts.request_count = op.stats.request_count.or(job.counts.request_count);
    job.counts.successful_request_count = op
        .stats
        .successful_request_count
        .or(job.counts.successful_request_count);
    job.counts.failed_request_count = op
        .stats
        .failed_request_count
        .or(job.counts.failed_request_count);
    if job.kind == JobKind::Other {
        job.kind = JobKind::Batch;
    }
}

pub(super) fn count_rows(counts: &mut JobCounts, rows: &[ResultRow]) {
    for row in rows {
        counts.rows_ingested += 1;
        match row.status {
            RowStatus::Ok => {}
            RowStatus::Error => counts.error_rows += 1,
            RowStatus::Malformed => counts.malformed_rows += 1,
        }
    }
}

/// A stored row for a parsed record (moved in: a response may be megabytes, never copied here).
pub fn to_row(job: &JobRecord, record: ResultRecord, now_ms: i64) -> ResultRow {
    let mut row = ResultRow {
        job_id: job.job_id.clone(),
        key: record.key,
        line: record.line,
        status: RowStatus::Ok,
        text: None,
        finish_reason: None,
        prompt_tokens: None,
        candidates_tokens: None,
        total_tokens: None,
        thoughts_tokens: None,
        model_version: None,
        response_json: None,
        error_code: None,
        error_message: None,
        keyless: record.keyless,
        ingested_at_ms: now_ms,
    };
    match record.outcome {
        Outcome::Success(s) => {
            row.text = Some(s.text);
            row.finish_reason = s.finish_reason;
            row.prompt_tokens = s.usage.prompt_tokens;
            row.candidates_tokens = s.usage.candidates_tokens;
            row.total_tokens = s.usage.total_tokens;
            row.thoughts_tokens = s.usage.thoughts_tokens;
            row.model_version = s.model_version;
            row.response_json = Some(s.response);
        }
        Outcome::Error { code, message, .. } => {
            row.status = RowStatus::Error;
            row.error_code = code;
            row.error_message = Some(message);
        }
        Outcome::Malformed { reason } => {
            row.status = RowStatus::Malformed;
            row.error_message = Some(format!("line {}: {reason}", record.line));
        }
    }
    row
}

/// Keeps only the last row of each row id (a later line of a key wins), in order: one write
/// never names a key twice (DynamoDB refuses the whole call). Returns how many rows it dropped.
pub(super) fn merge_duplicate_keys(rows: &mut Vec<ResultRow>) -> u64 {
    let mut last = std::collections::HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        last.insert(row.row_id(), i);
    }
    let dropped = u64::try_from(rows.len() - last.len()).unwrap_or(u64::MAX);
    if dropped == 0 {
        return 0;
    }
    let mut i = 0;
    rows.retain(|row| {
        let keep = last.get(&row.row_id()) == Some(&i);
        i += 1;
        keep
    });
    dropped
}
