//! Downstream events: once a job's terminal state is durably recorded, its `Gemini Job Finished`
//! event (`domain::job_events`) is published, once per job and state.
//!
//! The job record cannot elect a single publisher: `save_job` accepts a record in the state
//! already stored, so two deliveries of one event both "record" it. The claim is therefore taken
//! in the dedupe table, as the receiver's and the reconciler's are (`usecases::enqueue_once`):
//! claim `job-event <job>#<state>` → publish → mark the claim complete, releasing it when the
//! publish failed so the redelivered message publishes. A replay or a redelivery finds the
//! claim complete and publishes nothing; one that finds a live claim is retried later. Only a
//! crash between the bus accepting the event and the claim being completed publishes twice
//! (after the lease): at least once, with the same `event_id` (README, "Downstream events").

use std::sync::Arc;

use super::Consumer;
use super::error::ConsumeError;
use super::writes::within;
use crate::domain::dedupe_keys;
use crate::domain::job_events::JobFinished;
use crate::domain::jobs::JobRecord;
use crate::domain::verify::sha256_hex;
use crate::ports::ids::{RandomIds, SharedIds};
use crate::ports::job_events::JobEventPublisher;
use crate::ports::metrics::metric;
use crate::ports::{DedupeStore, ResultsStore};
use crate::usecases::enqueue_once::{ClaimDecision, ClaimSpec, claim_once};

/// How long a claim is held when the caller has no deadline: far longer than one PutEvents.
const LEASE_MS: i64 = 60_000;
/// How long a published event's claim is remembered. Replays after that are still caught by
/// the job record's `notified_state`; the claim only has to outlive the races around the
/// state change itself (concurrent deliveries, redeliveries, continuations).
const CLAIM_RETENTION_SECS: i64 = 30 * 24 * 3600;

/// What publishing downstream events needs: the claims and the bus.
#[derive(Clone)]
pub struct Announcer {
    claims: Arc<dyn DedupeStore>,
    publisher: Arc<dyn JobEventPublisher>,
    ids: SharedIds,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer").finish_non_exhaustive()
    }
}

impl Announcer {
    /// Claims in `claims` (the dedupe table), publishes through `publisher`.
    pub fn new(claims: Arc<dyn DedupeStore>, publisher: Arc<dyn JobEventPublisher>) -> Self {
        Self {
            claims,
            publisher,
            ids: Arc::new(RandomIds),
        }
    }

    /// Draws claim owners from `ids` (random v4 UUIDs by default).
    pub fn with_ids(mut self, ids: SharedIds) -> Self {
        self.ids = ids;
        self
    }
}

impl Consumer {
    /// Publishes the downstream event of `job` if it is in a terminal state whose event was not
    /// published yet. `job` must be what `store` holds (just saved or just loaded). An error
    /// leaves the message for redelivery, which comes back here.
    pub(super) async fn announce(
        &self,
        store: &dyn ResultsStore,
        job: &JobRecord,
        deadline_ms: Option<i64>,
    ) -> Result<(), ConsumeError> {
        let Some(announcer) = &self.announcer else {
            return Ok(());
        };
        if job.notified_state == Some(job.state) {
            return Ok(());
        }
        let Some(event) = JobFinished::of(job, store.table_name()) else {
            return Ok(());
        };
        let key = dedupe_keys::job_event(&event.event_id);
        // The key already names the event; the hash only has to be the same on every attempt.
        let hash = sha256_hex(event.event_id.as_bytes());
        let owner = announcer.ids.new_id();
        let spec = ClaimSpec {
            id: &key,
            body_sha256: &hash,
            deadline_ms,
            lease_ms: LEASE_MS,
            retention_secs: CLAIM_RETENTION_SECS,
        };
        // Every call is bounded by the message's time (`writes::within`), as the rest of the
        // consumer's are: a hung call fails this message alone, before the invocation's deadline.
        match within(claim_once(
            announcer.claims.as_ref(),
            self.clock.as_ref(),
            &owner,
            &spec,
        ))
        .await??
        {
            ClaimDecision::Claimed(_) => {}
            ClaimDecision::Done => {
                self.mark_notified(store, job).await;
                return Ok(());
            }
            ClaimDecision::BodyMismatch => {
                // The hash is derived from the key, so only a foreign write to the dedupe table
                // gets here; publishing on top of it could duplicate, so nothing is published.
                tracing::warn!(event_id = %event.event_id, "the event's claim holds another hash; not published");
                return Ok(());
            }
            ClaimDecision::InFlight { retry_after_secs } => {
                return Err(ConsumeError::NotReady(format!(
                    "the downstream event {} is being published by another attempt (lease ends \
                     in {retry_after_secs} s)",
                    event.event_id
                )));
            }
        }
        // Out of time here, the claim stays leased: whether the bus took the event is unknown, so
        // the redelivery after the lease publishes it (same `event_id`), as after a crash.
        match within(announcer.publisher.publish(&event)).await? {
            Ok(bus_event_id) => {
                let completed = within(announcer.claims.complete(&key, &owner, &bus_event_id))
                    .await
                    .and_then(|r| r.map_err(ConsumeError::from));
                if let Err(e) = completed {
                    // Published: only a redelivery after the lease would publish it again.
                    tracing::warn!(error = %e, "published, but completing the event's claim failed");
                }
                self.metrics
                    .set()
                    .count(metric::EVENTS_PUBLISHED, 1)
                    .property("job_id", job.job_id.as_str())
                    .property("state", job.state.as_str())
                    .flush();
                tracing::info!(
                    event_id = %event.event_id,
                    bus_event_id = %bus_event_id,
                    "downstream event published"
                );
                self.mark_notified(store, job).await;
                Ok(())
            }
            Err(e) => {
                if !matches!(
                    within(announcer.claims.release(&key, &owner)).await,
                    Ok(Ok(()))
                ) {
                    tracing::warn!(
                        "releasing the event's claim failed; a retry takes over after the lease"
                    );
                }
                self.metrics
                    .set()
                    .count(metric::EVENT_PUBLISH_FAILURES, 1)
                    .property("job_id", job.job_id.as_str())
                    .flush();
                Err(e.into())
            }
        }
    }

    /// [`Self::announce`] for the job as `store` holds it now (after an ingest that saved it
    /// itself).
    pub(super) async fn announce_stored(
        &self,
        store: &dyn ResultsStore,
        job_id: &str,
        deadline_ms: Option<i64>,
    ) -> Result<(), ConsumeError> {
        if self.announcer.is_none() {
            return Ok(());
        }
        match within(store.load_job(job_id)).await?? {
            Some(job) => self.announce(store, &job, deadline_ms).await,
            None => Ok(()),
        }
    }

    /// Notes on the record that its event is out, so replays skip the claim. Best effort: the
    /// claim is what prevents a second event.
    async fn mark_notified(&self, store: &dyn ResultsStore, job: &JobRecord) {
        if job.notified_state == Some(job.state) {
            return;
        }
        let mut marked = job.clone();
        marked.notified_state = Some(job.state);
        if !matches!(within(store.save_job(&marked)).await, Ok(Ok(_))) {
            tracing::warn!("could not note the published event on the job record");
        }
    }
}
