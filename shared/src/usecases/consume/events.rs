//! Events: each kind of job checked against its own Gemini resource, and the job record moved
//! to the state the API reports — never to one the event alone claims.

use std::sync::Arc;

use serde_json::{Value, json};

use super::error::{ConsumeError, Handled};
use super::rows::{apply_stats, rpc_error};
use super::videos::DEFAULT_VIDEO_TYPE;
use super::writes::{time_left, within};
use super::{Consumer, KEY_PROBE_TTL_MS};
use crate::domain::envelope::WebhookEnvelope;
use crate::domain::event::{Event, EventType, JobKind, is_usable_job_id, normalize_job_id};
use crate::domain::gemini::{
    BatchState, InteractionStatus, normalize_batch_id, normalize_file_name,
};
use crate::domain::jobs::{JobRecord, JobState};
use crate::domain::outputs::{
    interaction_rows, interaction_summary, outputs_list, summarized_outputs, superseded_rows,
};
use crate::ports::ResultsStore;
use crate::ports::gemini::GeminiError;
use crate::ports::metrics::metric;

impl Consumer {
    pub(super) async fn handle_webhook(
        &self,
        w: WebhookEnvelope,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let event = w.event();
        let event_type = event.event_type.clone();
        let kind = event_type.kind();
        if matches!(event_type, EventType::Unknown(_)) || kind == JobKind::Other {
            tracing::info!(event_type = %event_type.as_str(), "event type not handled; acknowledged");
            return Ok(Handled::Skipped {
                reason: format!("unhandled event type {}", event_type.as_str()),
            });
        }
        let group = w.job_group().map(str::to_owned);
        let claim = EventClaim {
            envelope: &w,
            event: &event,
            group,
        };
        // A job name nobody could ask the API about (none, a path, a few KB of text) comes only
        // from a forged or broken event: acknowledged and counted, never stored or retried.
        let Some(job_id) = event.job_id.clone().filter(|id| is_usable_job_id(kind, id)) else {
            return Ok(self.unconfirmed(&claim, "the event names no usable job id"));
        };
        let store = Arc::clone(self.routes.for_group(claim.group.as_deref()));
        let now = self.clock.now_ms();
        let job = within(store.load_job(&job_id))
            .await??
            .unwrap_or_else(|| JobRecord::new(job_id.clone(), kind, now));
        if job.state.is_terminal() {
            // Replays and late events of a finished job cost nothing, not even an API call;
            // only an event whose publishing was interrupted (a crash after the state was
            // saved, a bus that refused) is published now.
            self.announce(store.as_ref(), &job, deadline_ms).await?;
            return Ok(Handled::Skipped {
                reason: format!("job already {}", job.state.as_str()),
            });
        }
        match kind {
            JobKind::Batch => self.on_batch(store, job, claim, deadline_ms).await,
            JobKind::Interaction => self.on_interaction(store, job, claim, deadline_ms).await,
            JobKind::Video => self.on_video(store, job, claim, deadline_ms).await,
            JobKind::Other => Ok(Handled::Skipped {
                reason: "unhandled kind".into(),
            }),
        }
    }

    /// `batch.*`: `batches.get` decides. SUCCEEDED ingests, FAILED/EXPIRED/CANCELLED are recorded
    /// with the API's error, anything else is retried later, whatever the event said.
    async fn on_batch(
        &self,
        store: Arc<dyn ResultsStore>,
        mut job: JobRecord,
        claim: EventClaim<'_>,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let op = match within(self.gemini.get_batch(&job.job_id)).await? {
            Ok(op) => op,
            Err(e) => return self.refused(&claim, e, "batch").await,
        };
        if normalize_batch_id(&op.name) != job.job_id {
            return Ok(self.unconfirmed(&claim, "the Gemini API answered about another batch"));
        }
        let api_state = match op.state {
            BatchState::Succeeded => JobState::Succeeded,
            BatchState::Failed => JobState::Failed,
            BatchState::Cancelled => JobState::Cancelled,
            BatchState::Expired => JobState::Expired,
            ref other => {
                return Err(ConsumeError::NotReady(format!(
                    "the event says {} but the batch reports {}",
                    claim.event.event_type.as_str(),
                    other.as_str()
                )));
            }
        };
        self.settle(&mut job, &claim, api_state, op.state.as_str());
        apply_stats(&mut job, &op);
        if api_state == JobState::Succeeded {
            let handled = self
                .ingest_batch(
                    Arc::clone(&store),
                    job,
                    op,
                    claim.envelope.webhook_id.clone(),
                    deadline_ms,
                )
                .await?;
            if let Handled::Ingested { job_id, .. } = &handled {
                self.announce_stored(store.as_ref(), job_id, deadline_ms)
                    .await?;
            }
            return Ok(handled);
        }
        job.error = op.error.as_ref().map(|e| rpc_error(e, "operation"));
        self.record(store.as_ref(), job, api_state, deadline_ms)
            .await
    }

    /// `interaction.*`: `GET /v1beta/interactions/{id}` decides.
    async fn on_interaction(
        &self,
        store: Arc<dyn ResultsStore>,
        mut job: JobRecord,
        claim: EventClaim<'_>,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let interaction = match within(self.gemini.get_interaction(&job.job_id)).await? {
            Ok(i) => i,
            Err(e) => return self.refused(&claim, e, "interaction").await,
        };
        if !interaction.id.is_empty()
            && normalize_job_id(JobKind::Interaction, &interaction.id) != job.job_id
        {
            return Ok(
                self.unconfirmed(&claim, "the Gemini API answered about another interaction")
            );
        }
        let api_state = match interaction.status {
            InteractionStatus::Completed => JobState::Succeeded,
            InteractionStatus::RequiresAction => JobState::RequiresAction,
            InteractionStatus::Failed => JobState::Failed,
            InteractionStatus::Cancelled => JobState::Cancelled,
            ref other => {
                return Err(ConsumeError::NotReady(format!(
                    "the event says {} but the interaction is {}",
                    claim.event.event_type.as_str(),
                    other.as_str()
                )));
            }
        };
        self.settle(&mut job, &claim, api_state, interaction.status.as_str());
        job.error = interaction
            .error
            .as_ref()
            .map(|e| rpc_error(e, "interaction"));
        let outputs = outputs_list(interaction.outputs.as_ref());
        let earlier = summarized_outputs(job.output.as_ref());
        self.write_outputs(&store, &mut job, outputs, earlier)
            .await?;
        job.output = Some(bounded_output(interaction_summary(
            interaction.status.as_str(),
            outputs,
            interaction.usage.as_ref(),
        )));
        let job_id = job.job_id.clone();
        let handled = self
            .record(store.as_ref(), job, api_state, deadline_ms)
            .await?;
        if matches!(handled, Handled::Skipped { .. }) {
            self.rewrite_outputs(&store, &job_id, outputs.len()).await?;
        }
        Ok(handled)
    }

    /// After losing the record to a further state stored concurrently (`completed` while this
    /// message handled `requires_action`): this message's rows were written after that state's
    /// and may be older than it, so they are written again from the interaction as the API has
    /// it now. `written` rows of this message past the new list are marked superseded.
    async fn rewrite_outputs(
        &self,
        store: &Arc<dyn ResultsStore>,
        job_id: &str,
        written: usize,
    ) -> Result<(), ConsumeError> {
        let Some(mut stored) = within(store.load_job(job_id)).await?? else {
            return Ok(());
        };
        let interaction = within(self.gemini.get_interaction(job_id)).await??;
        let status = interaction.status.as_str();
        let recorded = stored
            .output
            .as_ref()
            .and_then(|o| o.get("status"))
            .and_then(Value::as_str);
        if recorded != Some(status) {
            // The API answered with another state than the one recorded: its outputs are not
            // the record's, so they are not written over the record's rows.
            tracing::warn!(
                status,
                recorded = recorded.unwrap_or(""),
                "a further state was stored concurrently, but the API now reports another: rows \
                 left as that state wrote them"
            );
            return Ok(());
        }
        let outputs = outputs_list(interaction.outputs.as_ref());
        let earlier = summarized_outputs(stored.output.as_ref()).max(written);
        self.write_outputs(store, &mut stored, outputs, earlier)
            .await?;
        tracing::info!(
            outputs = outputs.len(),
            "a further state was stored concurrently: its rows written again"
        );
        Ok(())
    }

    /// Stores an interaction's outputs in full as the job's rows (`output-0001`, …), through the
    /// row writer (gzip and parts for large outputs on DynamoDB), before the record that points
    /// at them. Rows of an earlier, longer list of outputs (`requires_action`, then `completed`)
    /// are marked superseded, so the rows always describe the interaction as the API has it now.
    async fn write_outputs(
        &self,
        store: &Arc<dyn ResultsStore>,
        job: &mut JobRecord,
        outputs: &[Value],
        earlier: usize,
    ) -> Result<(), ConsumeError> {
        let now = self.clock.now_ms();
        let mut rows = interaction_rows(&job.job_id, outputs, now);
        rows.extend(superseded_rows(&job.job_id, outputs.len(), earlier, now));
        let cutoff = time_left().map(|t| t.cutoff);
        let mut writer = self.row_writer(store);
        for row in rows {
            writer.push(row, job, cutoff).await?;
        }
        writer.drain(job, cutoff).await?;
        // The writer counted every row it wrote; the job has as many rows as outputs.
        job.counts.rows_ingested = u64::try_from(outputs.len()).unwrap_or(u64::MAX);
        job.counts.error_rows = 0;
        job.counts.malformed_rows = 0;
        Ok(())
    }

    /// `video.generated`: the operation (or else the file) the event names decides.
    async fn on_video(
        &self,
        store: Arc<dyn ResultsStore>,
        mut job: JobRecord,
        claim: EventClaim<'_>,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let data = &claim.event.data;
        let text = |name: &str| data.get(name).and_then(Value::as_str).map(str::trim);
        let operation = text("id").filter(|id| id.contains("operations/"));
        let file = text("file_name")
            .or_else(|| text("output_file_uri"))
            .and_then(normalize_file_name);
        let (api_state, mut output, error, sources, content_type) = if let Some(name) = operation {
            let op = match within(self.gemini.get_video_operation(name)).await? {
                Ok(op) => op,
                Err(e) => return self.refused(&claim, e, "operation").await,
            };
            if !op.done {
                return Err(ConsumeError::NotReady(
                    "the event says video.generated but the operation is not done".into(),
                ));
            }
            let state = if op.error.is_some() {
                JobState::Failed
            } else {
                JobState::Succeeded
            };
            let error = op.error.as_ref().map(|e| rpc_error(e, "operation"));
            (
                state,
                json!({"operation": op.name, "videos": op.video_uris, "file_name": file}),
                error,
                op.video_uris.clone(),
                DEFAULT_VIDEO_TYPE.to_owned(),
            )
        } else if let Some(name) = file {
            let info = match within(self.gemini.get_file(&name)).await? {
                Ok(info) => info,
                Err(e) => return self.refused(&claim, e, "file").await,
            };
            // Any file of the project would "confirm" a made-up video; only a video confirms one.
            if !info
                .mime_type
                .as_deref()
                .is_some_and(|m| m.starts_with("video/"))
            {
                return Ok(self.unconfirmed(&claim, "the file it names is not a video"));
            }
            let state = match info.state.as_deref() {
                None | Some("ACTIVE" | "STATE_UNSPECIFIED") => JobState::Succeeded,
                Some("FAILED") => JobState::Failed,
                Some(other) => {
                    return Err(ConsumeError::NotReady(format!(
                        "the event says video.generated but the file is {other}"
                    )));
                }
            };
            let content_type = info
                .mime_type
                .clone()
                .unwrap_or_else(|| DEFAULT_VIDEO_TYPE.to_owned());
            (
                state,
                json!({"file_name": info.name, "uri": info.uri, "expiration_time": info.expiration_time}),
                None,
                vec![info.name.clone()],
                content_type,
            )
        } else {
            return Ok(self.unconfirmed(&claim, "the event names no operation or file to check"));
        };
        // Copied before the job is recorded SUCCEEDED, so the record (and the downstream event)
        // only ever names a whole copy; a failure leaves the job as it was and the message
        // retried.
        if api_state == JobState::Succeeded
            && let Some((stored, skipped)) = self
                .store_videos(&job.job_id, &sources, &content_type)
                .await?
        {
            output["stored"] = Value::Array(stored);
            if !skipped.is_empty() {
                output["not_stored"] = Value::Array(skipped);
            }
        }
        self.settle(&mut job, &claim, api_state, api_state.as_str());
        job.error = error;
        // Names and URIs come from the event and the API: bounded like any output, so the
        // record stays writable whatever their length.
        job.output = Some(bounded_output(output));
        self.record(store.as_ref(), job, api_state, deadline_ms)
            .await
    }

    /// Compares what the event claims with what the API says. When they agree the event is noted
    /// on the job; when they do not it is logged and counted (`EventsContradicted`) and nothing
    /// of it is recorded — the job follows the API either way.
    fn settle(&self, job: &mut JobRecord, claim: &EventClaim<'_>, api_state: JobState, api: &str) {
        let claimed = claimed_state(&claim.event.event_type);
        if claimed == Some(api_state) {
            let w = claim.envelope;
            job.last_event = Some(claim.event.event_type.as_str().to_owned());
            job.last_webhook_id = Some(w.webhook_id.clone());
            if let Some(metadata) = &w.user_metadata
                && !job.keep_user_metadata(metadata)
            {
                tracing::warn!(
                    job_id = %job.job_id,
                    bytes = job.user_metadata_omitted_bytes,
                    limit = crate::domain::jobs::MAX_USER_METADATA_BYTES,
                    "user_metadata too large to keep on the job record; only its size is kept"
                );
            }
            if claim.group.is_some() {
                job.job_group = claim.group.clone();
            }
            job.event_received_at_ms = Some(w.received_at_ms);
        } else {
            self.contradicted(claim, &format!("the Gemini API reports {api}"));
        }
        job.updated_at_ms = self.clock.now_ms();
    }

    /// What a failed API call means for the event: the API does not have the resource (404), will
    /// not let us read it (403, while our key demonstrably works) or the name cannot be asked
    /// about: the event is unconfirmed — counted, acknowledged, nothing recorded. Anything else
    /// (unreachable, 5xx, a key that no longer works) is retried.
    async fn refused(
        &self,
        claim: &EventClaim<'_>,
        error: GeminiError,
        what: &str,
    ) -> Result<Handled, ConsumeError> {
        let why = match &error {
            GeminiError::NotFound { .. } => format!("the Gemini API has no such {what}"),
            GeminiError::Invalid(_) => format!("the {what} it names cannot be asked about"),
            GeminiError::Fatal { status: 403, .. } if self.key_works().await => {
                format!("the Gemini API does not let this project read that {what}")
            }
            _ => return Err(error.into()),
        };
        Ok(self.unconfirmed(claim, &why))
    }

    /// Whether our API key works at all (one cheap list call, remembered for a minute): a 403
    /// with a working key means "not yours"; with a broken key every event must wait.
    async fn key_works(&self) -> bool {
        let now = self.clock.now_ms();
        let mut probe = self.key_probe.lock().await;
        if let Some((at, works)) = *probe
            && now.saturating_sub(at) < KEY_PROBE_TTL_MS
        {
            return works;
        }
        let Ok(answer) = within(self.gemini.list_batches(1, None)).await else {
            // Out of time: no verdict, nothing cached.
            return false;
        };
        let works = answer.is_ok();
        *probe = Some((now, works));
        works
    }

    /// An event about a job the API does not know (another project's, or made up): counted,
    /// acknowledged, nothing recorded. A forged event costs one API call.
    fn unconfirmed(&self, claim: &EventClaim<'_>, why: &str) -> Handled {
        self.contradicted(claim, why);
        Handled::Skipped {
            reason: format!("not confirmed: {why}"),
        }
    }

    fn contradicted(&self, claim: &EventClaim<'_>, why: &str) {
        let w = claim.envelope;
        tracing::warn!(
            event_type = claim.event.event_type.as_str(),
            signature_mode = ?w.signature_mode,
            bound = w.bound,
            reason = why,
            "the Gemini API contradicts this event; acting on the API's answer only"
        );
        self.metrics
            .set()
            .count(metric::EVENTS_CONTRADICTED, 1)
            .property("event_type", claim.event.event_type.as_str())
            .property("job_id", claim.event.job_id.as_deref().unwrap_or(""))
            .flush();
    }

    /// Moves a job to `state` (forward only) and stores it; a terminal state is then announced
    /// downstream (`announce`).
    pub(super) async fn record(
        &self,
        store: &dyn ResultsStore,
        mut job: JobRecord,
        state: JobState,
        deadline_ms: Option<i64>,
    ) -> Result<Handled, ConsumeError> {
        let job_id = job.job_id.clone();
        if !job.state.may_become(state) {
            tracing::info!(
                current = job.state.as_str(),
                event_state = state.as_str(),
                "job is already further along; event recorded as seen only"
            );
            return Ok(Handled::Skipped {
                reason: format!("job already {}", job.state.as_str()),
            });
        }
        job.state = state;
        if state.is_terminal() && job.completed_at_ms.is_none() {
            job.completed_at_ms = Some(job.updated_at_ms);
        }
        if !store.save_job(&job).await? {
            return Ok(Handled::Skipped {
                reason: "a newer state was stored concurrently".into(),
            });
        }
        let counter = match state {
            JobState::Succeeded => Some(metric::JOBS_SUCCEEDED),
            JobState::Failed => Some(metric::JOBS_FAILED),
            JobState::Expired => Some(metric::JOBS_EXPIRED),
            JobState::Cancelled => Some(metric::JOBS_CANCELLED),
            _ => None,
        };
        if let Some(counter) = counter {
            self.metrics
                .set()
                .count(counter, 1)
                .property("job_id", job_id.as_str())
                .flush();
        }
        match state {
            JobState::Failed | JobState::Expired | JobState::Cancelled => {
                tracing::warn!(state = state.as_str(), error = ?job.error, "job did not succeed");
            }
            _ => tracing::info!(state = state.as_str(), "job recorded"),
        }
        // After the state is durable: a failure here leaves the message for redelivery, which
        // finds the job finished and publishes then.
        self.announce(store, &job, deadline_ms).await?;
        Ok(Handled::Recorded { job_id, state })
    }
}

/// A queued event being checked against the API.
struct EventClaim<'a> {
    envelope: &'a WebhookEnvelope,
    event: &'a Event,
    /// Routing group from the envelope's (signed-first) `user_metadata`.
    group: Option<String>,
}

/// The job state an event type claims.
fn claimed_state(event_type: &EventType) -> Option<JobState> {
    Some(match event_type {
        EventType::BatchSucceeded | EventType::InteractionCompleted | EventType::VideoGenerated => {
            JobState::Succeeded
        }
        EventType::BatchFailed | EventType::InteractionFailed => JobState::Failed,
        EventType::BatchExpired => JobState::Expired,
        EventType::BatchCancelled | EventType::InteractionCancelled => JobState::Cancelled,
        EventType::InteractionRequiresAction => JobState::RequiresAction,
        EventType::Unknown(_) => return None,
    })
}

/// Largest output JSON kept on a job record; DynamoDB items stop at 400 KB. The summaries put
/// there stay far below it; this is the last guard.
const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// `output` itself when it is small enough for a job record, else a note saying it was left out.
fn bounded_output(output: Value) -> Value {
    let size = serde_json::to_vec(&output).map_or(usize::MAX, |v| v.len());
    if size <= MAX_OUTPUT_BYTES {
        output
    } else {
        json!({
            "status": output.get("status"),
            "omitted": format!("{size} bytes of outputs exceed the {MAX_OUTPUT_BYTES}-byte record limit"),
        })
    }
}
