//! The downstream event: what a job announces to its owner's systems once it reached a terminal
//! state (README, "Downstream events"). One per job and terminal state, with an identity
//! ([`JobFinished::event_id`]) that is the same however often it is published, so a receiver can
//! dedupe on it: EventBridge has no idempotency key, and publishing is at least once.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::domain::event::JobKind;
use crate::domain::jobs::{JobCounts, JobErrorInfo, JobRecord, JobState};
use crate::domain::verify::sha256_hex;

/// `source` of every event (contract: users' rules match on it).
pub const SOURCE: &str = "gemini-hooks";
/// `detail-type` of a finished job (contract: users' rules match on it).
pub const DETAIL_TYPE: &str = "Gemini Job Finished";
/// Largest `detail` JSON. EventBridge takes 256 KiB per entry, source and detail-type included;
/// a job record holds up to 64 KiB each of `user_metadata` and `output`, 16 KiB of error message
/// and 256 bytes of `job_group`, so the detail fits once `fit` leaves the large parts out.
pub const MAX_DETAIL_BYTES: usize = 200 * 1024;

/// Where the job's record and rows can be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultsLocation {
    /// The results table (DynamoDB); locally the `ROUTES` table name, or `None` for the default
    /// store of the data directory.
    pub table: Option<String>,
    /// Partition key of the job record (`sk = JOB`) and its rows.
    pub pk: String,
}

/// The `detail` of a `Gemini Job Finished` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFinished {
    /// `<job id>#<state>`: stable across re-publishing; dedupe on it.
    pub event_id: String,
    pub job_id: String,
    pub kind: JobKind,
    pub state: JobState,
    pub counts: JobCounts,
    pub error: Option<JobErrorInfo>,
    pub user_metadata: Option<Value>,
    /// Size of `user_metadata` (JSON text) when it was too large to carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata_omitted_bytes: Option<u64>,
    pub job_group: Option<String>,
    /// Output pointers of the job record (results file, video, interaction outputs).
    pub output: Option<Value>,
    /// Size of `output` (JSON text) when it was too large to carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_omitted_bytes: Option<u64>,
    pub completed_at_ms: Option<i64>,
    pub results: ResultsLocation,
}

/// The identity of the event of `job_id` reaching `state`.
pub fn event_id(job_id: &str, state: JobState) -> String {
    format!("{job_id}#{}", state.as_str())
}

/// Partition key of a job in a results table (the data model in the README).
pub fn job_pk(job_id: &str) -> String {
    format!("JOB#{job_id}")
}

fn json_len(value: &Value) -> u64 {
    serde_json::to_vec(value).map_or(u64::MAX, |v| u64::try_from(v.len()).unwrap_or(u64::MAX))
}

impl JobFinished {
    /// The event of `job`, if it is in a terminal state; `table` is where it is stored.
    pub fn of(job: &JobRecord, table: Option<&str>) -> Option<Self> {
        if !job.state.is_terminal() {
            return None;
        }
        let mut event = Self {
            event_id: event_id(&job.job_id, job.state),
            job_id: job.job_id.clone(),
            kind: job.kind,
            state: job.state,
            counts: job.counts.clone(),
            // Bounded on the record already; again here for records written before that.
            error: job.error.clone().map(JobErrorInfo::bounded),
            user_metadata: job.user_metadata.clone(),
            user_metadata_omitted_bytes: job.user_metadata_omitted_bytes,
            // Only a group that routes is one (records written before groups were bounded).
            job_group: job
                .job_group
                .clone()
                .filter(|g| crate::domain::event::usable_job_group(g)),
            output: job.output.clone(),
            output_omitted_bytes: None,
            completed_at_ms: job.completed_at_ms,
            results: ResultsLocation {
                table: table.map(str::to_owned),
                pk: job_pk(&job.job_id),
            },
        };
        event.fit(MAX_DETAIL_BYTES);
        Some(event)
    }

    /// Leaves out `output`, then `user_metadata`, until the detail fits `max` bytes; what is
    /// left out is noted by size, as on the job record. The rest is small and bounded.
    fn fit(&mut self, max: usize) {
        let max = u64::try_from(max).unwrap_or(u64::MAX);
        if self.detail_len() <= max {
            return;
        }
        if let Some(output) = self.output.take() {
            self.output_omitted_bytes = Some(json_len(&output));
        }
        if self.detail_len() > max
            && let Some(metadata) = self.user_metadata.take()
        {
            self.user_metadata_omitted_bytes = Some(json_len(&metadata));
        }
    }

    fn detail_len(&self) -> u64 {
        serde_json::to_vec(self).map_or(u64::MAX, |v| u64::try_from(v.len()).unwrap_or(u64::MAX))
    }

    /// The detail as JSON text (what PutEvents carries).
    pub fn detail_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// A short id derived from [`Self::event_id`], safe as a Standard Webhooks `webhook-id`
    /// (no `.` or `/`): the same for every retry of a local notification.
    pub fn delivery_id(&self) -> String {
        format!("evt_{}", &sha256_hex(self.event_id.as_bytes())[..32])
    }

    /// The whole event as EventBridge hands it to a rule's target, for local notifications
    /// (`dev --notify-url`): `source`, `detail-type` and `detail` are those of the deployed
    /// event; `id` is [`Self::delivery_id`] and `time` when it was first queued.
    pub fn envelope(&self, time: &str) -> Result<Value, serde_json::Error> {
        Ok(json!({
            "version": "0",
            "id": self.delivery_id(),
            "source": SOURCE,
            "detail-type": DETAIL_TYPE,
            "time": time,
            "detail": serde_json::to_value(self)?,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::jobs::JobErrorInfo;

    fn failed() -> JobRecord {
        let mut job = JobRecord::new("batches/b1", JobKind::Batch, 1_000);
        job.state = JobState::Failed;
        job.job_group = Some("nightly".into());
        job.user_metadata = Some(json!({"job_group": "nightly", "run": 7}));
        job.error = Some(JobErrorInfo {
            code: Some("3".into()),
            message: "invalid requests".into(),
            source: "operation".into(),
        });
        job.completed_at_ms = Some(2_000);
        job
    }

    #[test]
    fn only_terminal_jobs_have_an_event_and_its_identity_is_the_job_and_state() {
        let mut job = failed();
        let event = JobFinished::of(&job, Some("results")).unwrap();
        assert_eq!(event.event_id, "batches/b1#FAILED");
        assert_eq!(
            event.results,
            ResultsLocation {
                table: Some("results".into()),
                pk: "JOB#batches/b1".into()
            }
        );
        let detail: Value = serde_json::from_str(&event.detail_json().unwrap()).unwrap();
        assert_eq!(detail["state"], "FAILED");
        assert_eq!(detail["kind"], "batch");
        assert_eq!(detail["job_group"], "nightly");
        assert_eq!(detail["user_metadata"]["run"], 7);
        assert_eq!(detail["error"]["message"], "invalid requests");
        assert_eq!(detail["counts"]["rows_ingested"], 0);
        assert!(detail.get("output_omitted_bytes").is_none());
        job.state = JobState::Ingesting;
        assert_eq!(JobFinished::of(&job, None), None);
    }

    #[test]
    fn the_delivery_id_is_stable_and_header_safe() {
        let a = JobFinished::of(&failed(), None).unwrap();
        let b = JobFinished::of(&failed(), Some("other")).unwrap();
        assert_eq!(a.delivery_id(), b.delivery_id());
        assert_eq!(a.delivery_id().len(), 4 + 32);
        assert!(
            a.delivery_id()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_')
        );
        let envelope = a.envelope("2026-12-01T00:00:00Z").unwrap();
        assert_eq!(envelope["source"], SOURCE);
        assert_eq!(envelope["detail-type"], DETAIL_TYPE);
        assert_eq!(envelope["id"], a.delivery_id());
        assert_eq!(envelope["detail"]["event_id"], "batches/b1#FAILED");
    }

    #[test]
    fn an_oversize_detail_leaves_out_output_then_metadata_by_size() {
        let mut job = failed();
        let output = json!({"o": "x".repeat(60_000)});
        let metadata = json!({"m": "y".repeat(60_000)});
        job.output = Some(output.clone());
        job.user_metadata = Some(metadata.clone());
        let mut event = JobFinished::of(&job, None).unwrap();
        assert_eq!(event.output.as_ref(), Some(&output), "fits as it is");
        event.fit(100_000);
        assert_eq!(
            (event.output.is_none(), event.output_omitted_bytes),
            (true, Some(json_len(&output)))
        );
        assert_eq!(event.user_metadata.as_ref(), Some(&metadata));
        event.fit(10_000);
        assert_eq!(
            (
                event.user_metadata.is_none(),
                event.user_metadata_omitted_bytes
            ),
            (true, Some(json_len(&metadata)))
        );
        assert!(event.detail_len() <= 10_000);
    }
}
