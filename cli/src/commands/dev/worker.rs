//! The consumer side of `dev`: a loop that receives from the durable SQLite queue, hands each
//! message to the same [`Consumer`] use case as the SQS-triggered Lambda, and deletes it, or
//! releases it for a retry (or the dead letters) when it failed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gemini_hooks::adapters::sqlite::{LocalMessage, SqliteStore};
use gemini_hooks::ports::ResultsStore;
use gemini_hooks::ports::clock::SharedClock;
use gemini_hooks::usecases::consume::{
    Consumer, Disposition, InboundMessage, RetrySchedule, job_of,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often the consumer looks at the queue when nothing woke it (other processes, delays).
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Messages still being handled this long after a shutdown signal are abandoned (and released).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A message handled for longer than this gets progress lines.
const PROGRESS_AFTER: Duration = Duration::from_secs(3);
/// At most one progress line per message this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How often running messages are looked at for progress.
const PROGRESS_CHECK: Duration = Duration::from_secs(1);

/// A message being handled.
struct InFlight {
    message_id: String,
    job_id: Option<String>,
    started: Instant,
    last_progress: Option<Instant>,
}

/// The consumer loop over the SQLite queue.
pub(super) struct Worker {
    pub(super) store: SqliteStore,
    pub(super) consumer: Arc<Consumer>,
    pub(super) visibility_ms: i64,
    pub(super) concurrency: usize,
    pub(super) clock: SharedClock,
}

impl Worker {
    /// Runs until `stop` turns true, then lets running messages finish (up to a grace period)
    /// and releases the rest for the next run.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let signal = self.store.enqueued_signal();
        let mut tasks: JoinSet<(Disposition, Option<String>)> = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, InFlight> = HashMap::new();
        let mut progress = tokio::time::interval(PROGRESS_CHECK);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *stop.borrow() {
                break;
            }
            while tasks.len() < self.concurrency {
                let now = self.clock.now_ms();
                match self.store.receive(self.visibility_ms, now).await {
                    Ok(Some(message)) => {
                        let flight = self.spawn(&mut tasks, message, now);
                        in_flight.insert(flight.0, flight.1);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the local queue");
                        break;
                    }
                }
            }
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    self.finish(done, &mut in_flight).await;
                }
                () = signal.notified() => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = progress.tick() => self.report_progress(&mut in_flight).await,
            }
        }
        // Shutting down: give running messages a moment, then release the rest for the next run.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline, tasks.join_next_with_id()).await {
                Ok(Some(done)) => self.finish(done, &mut in_flight).await,
                Ok(None) => break,
                Err(_) => {
                    tasks.abort_all();
                    break;
                }
            }
        }
        let now = self.clock.now_ms();
        for (_, flight) in in_flight.drain() {
            // Not a failure: the next run retries it at once, with its last error kept.
            if let Err(e) = self.store.release(&flight.message_id, 0, now).await {
                tracing::warn!(error = %e, message_id = %flight.message_id, "could not release an unfinished message");
            } else {
                tracing::info!(message_id = %flight.message_id, "unfinished message released for the next run");
            }
        }
    }

    fn spawn(
        &self,
        tasks: &mut JoinSet<(Disposition, Option<String>)>,
        message: LocalMessage,
        now: i64,
    ) -> (tokio::task::Id, InFlight) {
        let job_id = job_of(&message.body);
        let consumer = Arc::clone(&self.consumer);
        // Hand over to a continuation before the message becomes visible again, exactly as the
        // Lambda does before its timeout.
        let deadline = now.saturating_add(self.visibility_ms);
        let inbound = InboundMessage {
            id: message.id.clone(),
            body: message.body,
            receive_count: message.receive_count,
        };
        let handle = tasks.spawn(async move {
            consumer
                .process_reporting(&inbound, Some(deadline), RetrySchedule::LOCAL)
                .await
        });
        let started = Instant::now();
        (
            handle.id(),
            InFlight {
                message_id: message.id,
                job_id,
                started,
                last_progress: None,
            },
        )
    }

    async fn finish(
        &self,
        done: Result<(tokio::task::Id, (Disposition, Option<String>)), tokio::task::JoinError>,
        in_flight: &mut HashMap<tokio::task::Id, InFlight>,
    ) {
        let (task, outcome) = match done {
            Ok((task, outcome)) => (task, Ok(outcome)),
            Err(join) => (join.id(), Err(join)),
        };
        let Some(flight) = in_flight.remove(&task) else {
            return;
        };
        let now = self.clock.now_ms();
        let id = flight.message_id.as_str();
        // The use case logged and counted the failure; the queue only keeps the reason.
        let (disposition, reason) = match outcome {
            Ok(done) => done,
            Err(join) => (
                self.consumer.panicked(id, &join),
                Some(format!("panic: {join}")),
            ),
        };
        let result = match disposition {
            Disposition::Done => self.store.delete(id).await.map(|_| ()),
            failed => {
                let delay =
                    i64::try_from(failed.redelivery_delay().as_millis()).unwrap_or(i64::MAX);
                let reason = reason.unwrap_or_else(|| "failed".into());
                self.store
                    .release_failed(id, delay, now, &reason)
                    .await
                    .map(|_| ())
            }
        };
        if let Err(e) = result {
            tracing::error!(message_id = id, error = %e, "cannot update the local queue");
        }
    }

    async fn report_progress(&self, in_flight: &mut HashMap<tokio::task::Id, InFlight>) {
        for flight in in_flight.values_mut() {
            if flight.started.elapsed() < PROGRESS_AFTER
                || flight
                    .last_progress
                    .is_some_and(|t| t.elapsed() < PROGRESS_EVERY)
            {
                continue;
            }
            flight.last_progress = Some(Instant::now());
            let Some(job) = &flight.job_id else { continue };
            match ResultsStore::count_rows(&self.store, job).await {
                Ok(rows) => tracing::info!(
                    job_id = %job,
                    rows,
                    elapsed_s = flight.started.elapsed().as_secs(),
                    "still ingesting"
                ),
                Err(e) => tracing::debug!(error = %e, "progress: cannot count rows"),
            }
        }
    }
}
