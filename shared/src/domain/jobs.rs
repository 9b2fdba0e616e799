//! Job records and result rows: what the consumer writes (the data model in the README).
//!
//! A job's state only moves forward ([`JobState::rank`]): a late or replayed event can never
//! turn a finished job back into a running one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::event::JobKind;

/// Lifecycle of a job as this system knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// An event arrived; nothing fetched yet.
    Received,
    Pending,
    Running,
    /// Interactions: a function call needs the user.
    RequiresAction,
    /// Results are being ingested (possibly across several invocations).
    Ingesting,
    Succeeded,
    Failed,
    Cancelled,
    Expired,
}

impl JobState {
    /// Ordering used for forward-only updates; all terminal states share the top rank, so one
    /// terminal state never replaces another.
    pub fn rank(self) -> u8 {
        match self {
            Self::Received => 0,
            Self::Pending => 10,
            Self::Running => 20,
            Self::RequiresAction => 30,
            Self::Ingesting => 40,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Expired => 100,
        }
    }

    pub fn is_terminal(self) -> bool {
        self.rank() == 100
    }

    /// Whether a record in state `self` may be replaced by one in state `next`.
    pub fn may_become(self, next: JobState) -> bool {
        self == next || self.rank() < next.rank()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "RECEIVED",
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::RequiresAction => "REQUIRES_ACTION",
            Self::Ingesting => "INGESTING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RECEIVED" => Self::Received,
            "PENDING" => Self::Pending,
            "RUNNING" => Self::Running,
            "REQUIRES_ACTION" => Self::RequiresAction,
            "INGESTING" => Self::Ingesting,
            "SUCCEEDED" => Self::Succeeded,
            "FAILED" => Self::Failed,
            "CANCELLED" => Self::Cancelled,
            "EXPIRED" => Self::Expired,
            _ => return None,
        })
    }
}

/// Where an interrupted ingest resumes: a byte offset into the results file (HTTP `Range`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `files/…` name of the results file.
    pub file: String,
    /// Offset just after the last line whose row is stored.
    pub byte_offset: u64,
    /// Number of lines consumed up to `byte_offset`.
    pub lines: u64,
}

/// Counters kept on the job record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    /// From the operation's `batchStats` (Gemini's view).
    pub request_count: Option<i64>,
    pub successful_request_count: Option<i64>,
    pub failed_request_count: Option<i64>,
    /// Rows written by this system (all statuses) — cumulative across continuations.
    pub rows_ingested: u64,
    /// Rows with an `error` line.
    pub error_rows: u64,
    /// Lines that could not be parsed.
    pub malformed_rows: u64,
    /// Lines whose request key an earlier line of the same results already had: the later line
    /// wins, so `rows_ingested` (the rows stored) is the lines read minus these.
    #[serde(default)]
    pub duplicate_keys: u64,
}

/// Error details of a failed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobErrorInfo {
    /// Code as sent (its type is undocumented, so kept as text).
    pub code: Option<String>,
    pub message: String,
    /// Where it came from: `event` or `operation`.
    pub source: String,
}

/// Longest error message kept on a job record (and in its downstream event). The API's message
/// is free text of any length; a DynamoDB item stops at 400 KB and an EventBridge entry at
/// 256 KiB, and a job whose record cannot be written could never be recorded as failed.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 16 * 1024;

impl JobErrorInfo {
    /// The error with its message cut to [`MAX_ERROR_MESSAGE_BYTES`] (at a character boundary),
    /// saying how long it was.
    pub fn bounded(mut self) -> Self {
        if self.message.len() > MAX_ERROR_MESSAGE_BYTES {
            let total = self.message.len();
            let mut end = MAX_ERROR_MESSAGE_BYTES;
            while !self.message.is_char_boundary(end) {
                end -= 1;
            }
            self.message.truncate(end);
            self.message
                .push_str(&format!(" … [cut: the message was {total} bytes]"));
        }
        self
    }
}

/// Largest `user_metadata`, as JSON text, kept on a job record. A delivery may be up to
/// `WEBHOOK_MAX_BODY_BYTES` (1 MiB) but a DynamoDB item stops at 400 KB, and the record must
/// always be writable or the job could never be recorded; larger metadata is left out and its
/// size noted (`user_metadata_omitted_bytes`). The job group is kept either way.
pub const MAX_USER_METADATA_BYTES: usize = 64 * 1024;

/// The record of one job (`pk = JOB#<id>`, `sk = JOB`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub kind: JobKind,
    pub state: JobState,
    /// Canonical type of the last event applied.
    pub last_event: Option<String>,
    pub last_webhook_id: Option<String>,
    pub user_metadata: Option<Value>,
    /// Size (JSON text) of `user_metadata` that was too large to keep on the record
    /// ([`MAX_USER_METADATA_BYTES`]); `user_metadata` is then absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata_omitted_bytes: Option<u64>,
    /// Routing group (`user_metadata.job_group`).
    pub job_group: Option<String>,
    pub counts: JobCounts,
    pub checkpoint: Option<Checkpoint>,
    pub error: Option<JobErrorInfo>,
    /// Output pointers (results file, video file, …) as JSON.
    pub output: Option<Value>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub completed_at_ms: Option<i64>,
    /// When the receiver accepted the delivery that led here (ingest-lag metric).
    pub event_received_at_ms: Option<i64>,
    /// The terminal state whose downstream event was published (`domain::job_events`). A hint
    /// that spares replays a ledger lookup; the ledger in the dedupe table decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_state: Option<JobState>,
    /// The latest re-ingest of this job's results (`gemini-hooks reingest`): its progress while
    /// it runs, its count of rows rewritten once done. The job's state does not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reingest: Option<ReingestRecord>,
}

/// One re-ingest pass over a finished batch's results, as the job record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReingestRecord {
    /// The request (`gemini-hooks reingest` prints it); replays of one request converge on one
    /// pass, a new request starts another.
    pub request_id: String,
    pub requested_at_ms: i64,
    /// When the pass finished; `None` while it runs (or after it stopped, until its retry).
    pub finished_at_ms: Option<i64>,
    /// Where the pass stands in the results file (lines whose rows are stored).
    pub checkpoint: Option<Checkpoint>,
    /// Rows written by the pass (every status), error and malformed ones among them.
    pub rows_rewritten: u64,
    pub error_rows: u64,
    pub malformed_rows: u64,
    /// When the pass began (its first part). Once it finishes, the job's rows written before
    /// then (less a margin for clocks) are removed: the pass rewrote every row the results file
    /// has, so those are not in it. `None` for a pass a version without it began: none removed.
    #[serde(default)]
    pub started_at_ms: Option<i64>,
    /// Rows the finished pass removed (stored under keys the results file does not have).
    #[serde(default)]
    pub rows_removed: u64,
}

impl JobRecord {
    /// Keeps `metadata` on the record unless its JSON text exceeds [`MAX_USER_METADATA_BYTES`],
    /// in which case only its size is kept. Returns whether it was kept.
    pub fn keep_user_metadata(&mut self, metadata: &Value) -> bool {
        let bytes = serde_json::to_vec(metadata).map_or(usize::MAX, |v| v.len());
        if bytes <= MAX_USER_METADATA_BYTES {
            self.user_metadata = Some(metadata.clone());
            self.user_metadata_omitted_bytes = None;
            true
        } else {
            self.user_metadata = None;
            self.user_metadata_omitted_bytes = Some(u64::try_from(bytes).unwrap_or(u64::MAX));
            false
        }
    }

    /// A fresh record for a job first seen at `now_ms`.
    pub fn new(job_id: impl Into<String>, kind: JobKind, now_ms: i64) -> Self {
        Self {
            job_id: job_id.into(),
            kind,
            state: JobState::Received,
            last_event: None,
            last_webhook_id: None,
            user_metadata: None,
            user_metadata_omitted_bytes: None,
            job_group: None,
            counts: JobCounts::default(),
            checkpoint: None,
            error: None,
            output: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            completed_at_ms: None,
            event_received_at_ms: None,
            notified_state: None,
            reingest: None,
        }
    }
}

/// Outcome of one request of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    Ok,
    Error,
    Malformed,
}

impl RowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Malformed => "malformed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(Self::Ok),
            "error" => Some(Self::Error),
            "malformed" => Some(Self::Malformed),
            _ => None,
        }
    }
}

/// One result row (`pk = JOB#<id>`, `sk = RESULT#<key>`). Replays overwrite the same row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    pub job_id: String,
    pub key: String,
    /// 1-based line in the results file (index + 1 for inline results).
    pub line: u64,
    pub status: RowStatus,
    pub text: Option<String>,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub candidates_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub thoughts_tokens: Option<i64>,
    pub model_version: Option<String>,
    /// The response JSON exactly as Gemini returned it (never truncated).
    pub response_json: Option<String>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    /// The line had no usable request key: `key` is then `line-<n>` for display only, and the row
    /// lives apart from request keys (a request really keyed `line-7` is another row).
    #[serde(default)]
    pub keyless: bool,
    pub ingested_at_ms: i64,
}

/// Longest DynamoDB sort key (bytes); longer row ids are hashed.
pub const MAX_SORT_KEY_BYTES: usize = 1024;

/// Prefix of a row stored under its request key.
pub const ROW_KEY_PREFIX: &str = "RESULT#";
/// Prefix of a row whose request key is too long for a sort key: the SHA-256 of the key follows.
pub const ROW_HASH_PREFIX: &str = "RESULTH#";
/// Prefix of a row for a line without a usable key: the zero-padded line number follows.
pub const ROW_LINE_PREFIX: &str = "LINE#";

impl ResultRow {
    /// About how many bytes the row holds in memory (its strings, plus a little for the rest):
    /// what the consumer's byte budget counts.
    pub fn approx_bytes(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        128 + self.job_id.len()
            + self.key.len()
            + text(&self.text)
            + text(&self.response_json)
            + text(&self.error_message)
            + text(&self.finish_reason)
            + text(&self.model_version)
    }

    /// Where the row is stored within its job, in three namespaces no request key can cross:
    /// `RESULT#<key>` (or `RESULTH#<sha256 of key>` when that would not fit a DynamoDB sort key),
    /// and `LINE#<n>` for key-less lines. Every request-keyed id starts with `RESULT`, then `#` or
    /// `H#`, so the namespaces never overlap, whatever the key.
    pub fn row_id(&self) -> String {
        if self.keyless {
            return format!("{ROW_LINE_PREFIX}{:012}", self.line);
        }
        if ROW_KEY_PREFIX.len() + self.key.len() <= MAX_SORT_KEY_BYTES {
            format!("{ROW_KEY_PREFIX}{}", self.key)
        } else {
            format!(
                "{ROW_HASH_PREFIX}{}",
                crate::domain::verify::sha256_hex(self.key.as_bytes())
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_metadata_is_kept_up_to_the_limit_and_only_its_size_beyond() {
        let mut job = JobRecord::new("batches/m", JobKind::Batch, 0);
        let fits = serde_json::json!({"n": "x".repeat(MAX_USER_METADATA_BYTES - 8)});
        assert_eq!(
            serde_json::to_vec(&fits).map(|v| v.len()).ok(),
            Some(MAX_USER_METADATA_BYTES)
        );
        assert!(job.keep_user_metadata(&fits));
        assert_eq!(
            (job.user_metadata.as_ref(), job.user_metadata_omitted_bytes),
            (Some(&fits), None)
        );
        let over = serde_json::json!({"n": "x".repeat(MAX_USER_METADATA_BYTES - 7)});
        assert!(!job.keep_user_metadata(&over));
        assert_eq!(
            (job.user_metadata.as_ref(), job.user_metadata_omitted_bytes),
            (None, Some(MAX_USER_METADATA_BYTES as u64 + 1))
        );
    }

    fn row(key: &str, line: u64, keyless: bool) -> ResultRow {
        ResultRow {
            job_id: "batches/x".into(),
            key: key.into(),
            line,
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
            keyless,
            ingested_at_ms: 0,
        }
    }

    #[test]
    fn row_ids_live_in_namespaces_no_request_key_can_cross() {
        assert_eq!(row("a", 1, false).row_id(), "RESULT#a");
        // A request really keyed like a synthetic key is another row than the key-less line.
        assert_ne!(
            row("line-7", 7, false).row_id(),
            row("line-7", 7, true).row_id()
        );
        assert_eq!(row("line-7", 7, true).row_id(), "LINE#000000000007");
        // Keys that look like the other namespaces stay under RESULT#.
        for key in ["H#abc", "#PART#0001", "LINE#1", "JOB"] {
            assert!(row(key, 1, false).row_id().starts_with("RESULT#"), "{key}");
        }
        // An oversize key is hashed to a fixed-size id that still fits.
        let long = "k".repeat(2000);
        let id = row(&long, 1, false).row_id();
        assert!(
            id.starts_with("RESULTH#") && id.len() <= MAX_SORT_KEY_BYTES,
            "{id}"
        );
        let edge = "k".repeat(MAX_SORT_KEY_BYTES - ROW_KEY_PREFIX.len());
        assert_eq!(row(&edge, 1, false).row_id().len(), MAX_SORT_KEY_BYTES);
        let over = "k".repeat(MAX_SORT_KEY_BYTES - ROW_KEY_PREFIX.len() + 1);
        assert!(row(&over, 1, false).row_id().starts_with("RESULTH#"));
    }

    #[test]
    fn state_only_moves_forward() {
        assert!(JobState::Received.may_become(JobState::Ingesting));
        assert!(JobState::Ingesting.may_become(JobState::Ingesting));
        assert!(JobState::Ingesting.may_become(JobState::Succeeded));
        assert!(!JobState::Succeeded.may_become(JobState::Ingesting));
        assert!(!JobState::Succeeded.may_become(JobState::Failed));
        assert!(!JobState::Expired.may_become(JobState::Succeeded));
        assert!(JobState::Failed.may_become(JobState::Failed));
        assert!(!JobState::Running.may_become(JobState::Pending));
    }

    #[test]
    fn state_strings_round_trip() {
        for s in [
            JobState::Received,
            JobState::Pending,
            JobState::Running,
            JobState::RequiresAction,
            JobState::Ingesting,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
            JobState::Expired,
        ] {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
    }
}

#[cfg(test)]
mod error_bound_tests {
    use super::*;

    #[test]
    fn a_long_error_message_is_cut_at_a_character_boundary_saying_how_long_it_was() {
        let short = JobErrorInfo {
            code: None,
            message: "bad".into(),
            source: "operation".into(),
        };
        assert_eq!(short.clone().bounded(), short);
        let long = JobErrorInfo {
            message: "é".repeat(MAX_ERROR_MESSAGE_BYTES),
            ..short
        }
        .bounded();
        assert!(
            long.message.len() < MAX_ERROR_MESSAGE_BYTES + 64,
            "{}",
            long.message.len()
        );
        assert!(
            long.message.ends_with(&format!(
                "[cut: the message was {} bytes]",
                2 * MAX_ERROR_MESSAGE_BYTES
            )),
            "{}",
            &long.message[long.message.len() - 60..]
        );
    }
}
