//! The local stand-in for the event bus: [`JobEventPublisher`] on the `outbox` table. Publishing
//! only queues the event durably (keyed by its delivery id, so publishing twice queues once);
//! `gemini-hooks dev --notify-url` delivers what is due, retrying with backoff, apart from the
//! consumer, so a slow or failing endpoint never holds up ingestion.

use async_trait::async_trait;
use rusqlite::params;

use super::{SqliteStore, db_err, to_u32};
use crate::domain::job_events::JobFinished;
use crate::ports::StoreError;
use crate::ports::job_events::{JobEventPublisher, PublishError};

/// A queued notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// The event's delivery id (`webhook-id`), the same on every attempt.
    pub id: String,
    /// The exact body to POST (the event envelope as JSON).
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
}

/// Counts of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    pub pending: u64,
    pub delivered: u64,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl SqliteStore {
    /// Up to `limit` undelivered notifications due at `now_ms`, oldest first.
    pub async fn due_notifications(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, body, attempts FROM outbox
                     WHERE delivered_at_ms IS NULL AND next_attempt_ms <= ?1
                     ORDER BY next_attempt_ms, created_at_ms LIMIT ?2",
                )
                .map_err(db_err)?;
            let raw = stmt
                .query_map(params![now_ms, limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            raw.into_iter()
                .map(|(id, body, attempts)| {
                    Ok(OutboxItem {
                        id,
                        body,
                        attempts: to_u32(attempts, "outbox attempts")?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Marks `id` delivered at `now_ms`.
    pub async fn notification_delivered(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            conn.execute(
                "UPDATE outbox SET delivered_at_ms = ?2, attempts = attempts + 1, last_error = NULL
                 WHERE id = ?1",
                params![id, now_ms],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    /// Counts a failed attempt at `id` and makes it due again at `next_attempt_ms`.
    pub async fn notification_failed(
        &self,
        id: &str,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        let (id, error) = (id.to_owned(), error.to_owned());
        self.run(move |conn| {
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3
                 WHERE id = ?1 AND delivered_at_ms IS NULL",
                params![id, next_attempt_ms, error],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    /// How many notifications wait, and how many were delivered.
    pub async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.run(|conn| {
            let (pending, delivered): (i64, i64) = conn
                .query_row(
                    "SELECT COUNT(*) - COUNT(delivered_at_ms), COUNT(delivered_at_ms) FROM outbox",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db_err)?;
            Ok(OutboxStats {
                pending: u64::try_from(pending).unwrap_or(0),
                delivered: u64::try_from(delivered).unwrap_or(0),
            })
        })
        .await
    }
}

#[async_trait]
impl JobEventPublisher for SqliteStore {
    async fn publish(&self, event: &JobFinished) -> Result<String, PublishError> {
        let now = self.clock.now_ms();
        let body = event
            .envelope(&rfc3339(now))
            .map_err(|e| PublishError::Refused(format!("event: {e}")))?
            .to_string();
        let id = event.delivery_id();
        let key = id.clone();
        self.run(move |conn| {
            // Already queued (published before the claim could be completed): one delivery.
            conn.execute(
                "INSERT INTO outbox (id, body, created_at_ms, next_attempt_ms)
                 VALUES (?1, ?2, ?3, ?3) ON CONFLICT (id) DO NOTHING",
                params![key, body, now],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
        .map_err(|e| PublishError::Unavailable(e.to_string()))?;
        Ok(id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::event::JobKind;
    use crate::domain::jobs::{JobRecord, JobState};
    use crate::ports::clock::ManualClock;

    fn store(label: &str) -> (SqliteStore, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "gemini-hooks-outbox-{label}-{}.sqlite3",
            uuid::Uuid::new_v4()
        ));
        let clock = ManualClock::at_ms(1_795_000_000_000);
        (
            SqliteStore::open(&path)
                .unwrap()
                .with_clock(Arc::new(clock)),
            path,
        )
    }

    fn event(id: &str) -> JobFinished {
        let mut job = JobRecord::new(id, JobKind::Batch, 0);
        job.state = JobState::Succeeded;
        JobFinished::of(&job, None).unwrap()
    }

    #[tokio::test]
    async fn publishing_twice_queues_once_and_failures_come_back_when_due() {
        let (store, path) = store("twice");
        let e = event("batches/o1");
        assert_eq!(store.publish(&e).await.unwrap(), e.delivery_id());
        assert_eq!(store.publish(&e).await.unwrap(), e.delivery_id());
        let due = store
            .due_notifications(1_795_000_000_000, 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].id.as_str(), due[0].attempts),
            (e.delivery_id().as_str(), 0)
        );
        let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
        assert_eq!(body["time"], "2026-11-18T11:06:40Z");
        assert_eq!(body["detail"]["event_id"], "batches/o1#SUCCEEDED");

        store
            .notification_failed(&due[0].id, 1_795_000_002_000, "refused")
            .await
            .unwrap();
        assert!(
            store
                .due_notifications(1_795_000_001_999, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let again = store
            .due_notifications(1_795_000_002_000, 10)
            .await
            .unwrap();
        assert_eq!(again[0].attempts, 1);
        store
            .notification_delivered(&again[0].id, 1_795_000_002_000)
            .await
            .unwrap();
        assert!(
            store
                .due_notifications(i64::MAX, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.outbox_stats().await.unwrap(),
            OutboxStats {
                pending: 0,
                delivered: 1
            }
        );
        drop(store);
        let _ = std::fs::remove_file(path);
    }
}
