//! Row writes: flushed by rows *and* bytes, several in flight at once (bounded), and the bytes
//! they hold counted against a budget shared by every message the consumer handles.
//!
//! Why this shape: one 25-row `BatchWriteItem` awaited at a time spends almost all its time
//! waiting on the network (~10 ms a call), so writes are pipelined; but a result line can be
//! megabytes, so what bounds memory is bytes, not rows. A write's bytes stay reserved until the
//! store has them; a message that cannot reserve more first sends what it holds, so reservations
//! never deadlock (every write in flight finishes or fails on its own).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::error::ConsumeError;
use super::rows::{count_rows, merge_duplicate_keys};
use crate::domain::jobs::{JobCounts, JobRecord, ResultRow};
use crate::ports::{ResultsStore, StoreError};

/// Bytes of rows held in memory (pending or in flight), shared by all messages of a consumer.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    permits: Arc<Semaphore>,
    total: usize,
}

impl ByteBudget {
    pub fn new(bytes: usize) -> Self {
        let total = bytes.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// What one row may reserve: its size, but never more than the whole budget (a row larger
    /// than the budget still goes through, alone).
    fn cost(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.clamp(1, self.total)).unwrap_or(u32::MAX)
    }

    fn try_reserve(&self, bytes: usize) -> Option<Reserved> {
        let n = self.cost(bytes);
        let permit = Arc::clone(&self.permits).try_acquire_many_owned(n).ok()?;
        permit.forget();
        Some(Reserved::new(self, n))
    }

    async fn reserve(&self, bytes: usize) -> Reserved {
        let n = self.cost(bytes);
        // The semaphore is never closed, so acquiring only waits.
        if let Ok(permit) = Arc::clone(&self.permits).acquire_many_owned(n).await {
            permit.forget();
            return Reserved::new(self, n);
        }
        Reserved::new(self, 0)
    }

    /// Bytes currently free (for tests and logs).
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// Bytes reserved from a [`ByteBudget`], returned when dropped (also when a write is aborted).
#[derive(Debug)]
struct Reserved {
    permits: Arc<Semaphore>,
    n: usize,
}

impl Reserved {
    fn new(budget: &ByteBudget, n: u32) -> Self {
        Self {
            permits: Arc::clone(&budget.permits),
            n: n as usize,
        }
    }

    fn absorb(&mut self, mut other: Self) {
        self.n += std::mem::take(&mut other.n);
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if self.n > 0 {
            self.permits.add_permits(self.n);
        }
    }
}

/// How [`RowWriter`] batches and pipelines.
#[derive(Debug, Clone, Copy)]
pub(super) struct WriteLimits {
    pub rows: usize,
    pub bytes: usize,
    pub in_flight: usize,
}

struct InFlight {
    ids: HashSet<String>,
    task: JoinHandle<Result<JobCounts, StoreError>>,
}

/// Pending rows of one message and its writes in flight.
pub(super) struct RowWriter {
    store: Arc<dyn ResultsStore>,
    budget: ByteBudget,
    limits: WriteLimits,
    pending: Vec<ResultRow>,
    pending_bytes: usize,
    held: Option<Reserved>,
    in_flight: VecDeque<InFlight>,
}

impl RowWriter {
    pub(super) fn new(
        store: Arc<dyn ResultsStore>,
        budget: ByteBudget,
        limits: WriteLimits,
    ) -> Self {
        Self {
            store,
            budget,
            limits: WriteLimits {
                rows: limits.rows.max(1),
                bytes: limits.bytes.max(1),
                in_flight: limits.in_flight.max(1),
            },
            pending: Vec::new(),
            pending_bytes: 0,
            held: None,
            in_flight: VecDeque::new(),
        }
    }

    /// Adds a row; sends a write when enough rows or bytes are pending. Completed writes are
    /// counted on `job`. Waits (until `cutoff` at most) when the byte budget or the writes in
    /// flight are at their bound.
    pub(super) async fn push(
        &mut self,
        row: ResultRow,
        job: &mut JobRecord,
        cutoff: Option<Instant>,
    ) -> Result<(), ConsumeError> {
        let bytes = row.approx_bytes();
        let reserved = match self.budget.try_reserve(bytes) {
            Some(r) => r,
            None => {
                // Send what this message holds first, so it never waits while holding bytes.
                self.submit(job, cutoff).await?;
                bounded(cutoff, self.budget.reserve(bytes)).await?
            }
        };
        match &mut self.held {
            Some(held) => held.absorb(reserved),
            None => self.held = Some(reserved),
        }
        self.pending.push(row);
        self.pending_bytes += bytes;
        if self.pending.len() >= self.limits.rows || self.pending_bytes >= self.limits.bytes {
            self.submit(job, cutoff).await?;
        }
        Ok(())
    }

    /// Sends the pending rows as one write (in the background), keeping at most
    /// `limits.in_flight` writes in flight.
    async fn submit(
        &mut self,
        job: &mut JobRecord,
        cutoff: Option<Instant>,
    ) -> Result<(), ConsumeError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut rows = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        // Lines merged away still count as written: `finish` compares what was written with
        // what is stored to count `duplicate_keys`.
        let merged = merge_duplicate_keys(&mut rows);
        let ids: HashSet<String> = rows.iter().map(ResultRow::row_id).collect();
        // A later line of a key must land after the earlier one: wait for any write in flight
        // that names one of these rows before sending them.
        while let Some(last) = self
            .in_flight
            .iter()
            .rposition(|w| !w.ids.is_disjoint(&ids))
        {
            for _ in 0..=last {
                self.complete_oldest(job, cutoff).await?;
            }
        }
        while self.in_flight.len() >= self.limits.in_flight {
            self.complete_oldest(job, cutoff).await?;
        }
        let store = Arc::clone(&self.store);
        let held = self.held.take();
        let task = tokio::spawn(async move {
            store.put_rows(&rows).await?;
            drop(held);
            let mut counts = JobCounts::default();
            count_rows(&mut counts, &rows);
            counts.rows_ingested += merged;
            Ok(counts)
        });
        self.in_flight.push_back(InFlight { ids, task });
        Ok(())
    }

    async fn complete_oldest(
        &mut self,
        job: &mut JobRecord,
        cutoff: Option<Instant>,
    ) -> Result<(), ConsumeError> {
        let Some(write) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let abort = write.task.abort_handle();
        let joined = match bounded(cutoff, write.task).await {
            Ok(joined) => joined,
            Err(e) => {
                abort.abort();
                return Err(e);
            }
        };
        let counts = match joined {
            Ok(result) => result?,
            Err(join) => {
                return Err(ConsumeError::Store(StoreError::Unavailable(format!(
                    "a row write did not finish: {join}"
                ))));
            }
        };
        add_counts(job, &counts);
        Ok(())
    }

    /// Sends everything pending and waits for every write: afterwards, every row pushed so far
    /// is stored and counted, so a checkpoint may cover it.
    pub(super) async fn drain(
        &mut self,
        job: &mut JobRecord,
        cutoff: Option<Instant>,
    ) -> Result<(), ConsumeError> {
        self.submit(job, cutoff).await?;
        while !self.in_flight.is_empty() {
            self.complete_oldest(job, cutoff).await?;
        }
        Ok(())
    }
}

impl Drop for RowWriter {
    /// A message that fails mid-way stops its writes (they are idempotent; its checkpoint
    /// covers none of them).
    fn drop(&mut self) {
        for write in &self.in_flight {
            write.task.abort();
        }
    }
}

fn add_counts(job: &mut JobRecord, counts: &JobCounts) {
    job.counts.rows_ingested += counts.rows_ingested;
    job.counts.error_rows += counts.error_rows;
    job.counts.malformed_rows += counts.malformed_rows;
}

/// `fut`, if it finishes before `cutoff` (none: no limit). Past the cutoff the call is dropped
/// and the message fails alone, so the invocation still answers before its deadline.
pub(super) async fn bounded<T>(
    cutoff: Option<Instant>,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, ConsumeError> {
    match cutoff {
        None => Ok(fut.await),
        Some(at) => tokio::time::timeout_at(at, fut).await.map_err(|_| {
            ConsumeError::OutOfTime(
                "a call did not finish before the invocation's deadline reserve".into(),
            )
        }),
    }
}

/// The time one message may take, set by `handle_message` for everything it calls.
#[derive(Debug, Clone, Copy)]
pub(super) struct TimeLeft {
    /// Ordinary calls (Gemini, store, queue, stream reads) must finish by then.
    pub cutoff: Instant,
    /// The hand-over (last writes, checkpoint, continuation) must finish by then; past it the
    /// whole message is dropped.
    pub last: Instant,
}

tokio::task_local! {
    static TIME_LEFT: TimeLeft;
}

/// Runs `fut` (one message) with `time` as its limits; without limits when `None`.
pub(super) async fn with_time_left<F: std::future::Future>(
    time: Option<TimeLeft>,
    fut: F,
) -> F::Output {
    match time {
        Some(t) => TIME_LEFT.scope(t, fut).await,
        None => fut.await,
    }
}

/// The current message's limits, if it has any.
pub(super) fn time_left() -> Option<TimeLeft> {
    TIME_LEFT.try_with(|t| *t).ok()
}

/// `fut` bounded by the current message's cutoff.
pub(super) async fn within<T>(
    fut: impl std::future::Future<Output = T>,
) -> Result<T, ConsumeError> {
    bounded(time_left().map(|t| t.cutoff), fut).await
}
