//! The local queue: SQS semantics (visibility timeouts, receive counts, dead letters after
//! `max_receive_count` receives, redrive) on the `queue` and `dead_letters` tables.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{MAX_MESSAGE_BYTES, SqliteStore, corrupt, db_err, to_u32};
use crate::domain::envelope::OutgoingMessage;
use crate::ports::{EventQueue, QueueError, StoreError, check_size};

/// A message handed to the local consumer; it stays invisible to other receives until its
/// visibility timeout ends, unless it is deleted or released first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMessage {
    pub id: String,
    pub body: String,
    pub attributes: Vec<(String, String)>,
    /// How many times it has been received, this time included (SQS `ApproximateReceiveCount`).
    pub receive_count: u32,
    pub enqueued_at_ms: i64,
}

/// A message that was received too often without being deleted (the local DLQ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub body: String,
    pub attributes: Vec<(String, String)>,
    pub receive_count: u32,
    pub enqueued_at_ms: i64,
    pub dead_lettered_at_ms: i64,
    /// Why its last receive failed (`code: message`), if the consumer said.
    pub last_error: Option<String>,
}

/// What [`SqliteStore::redrive`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redriven {
    /// Back on the queue, oldest first.
    pub moved: Vec<String>,
    /// Requested ids that are not dead letters; when there are any, nothing moved.
    pub unknown: Vec<String>,
}

/// Longest failure reason kept with a message; reasons are one-line summaries, this only
/// bounds a pathological one.
const MAX_ERROR_CHARS: usize = 2_000;

/// Queue depth, for logs and progress output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Waiting to be received now.
    pub visible: u64,
    /// Received and not yet deleted, or released with a delay.
    pub invisible: u64,
    pub dead_letters: u64,
}

fn attributes_json(attributes: &[(String, String)]) -> Result<String, StoreError> {
    serde_json::to_string(attributes).map_err(|e| corrupt(format!("message attributes: {e}")))
}

fn parse_attributes(text: &str) -> Result<Vec<(String, String)>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("stored message attributes: {e}")))
}

impl SqliteStore {
    /// Receives the oldest visible message and hides it for `visibility_ms`. A message already
    /// received `max_receive_count` times is moved to the dead letters instead (as SQS redrive
    /// does), and the next one is tried.
    pub async fn receive(
        &self,
        visibility_ms: i64,
        now_ms: i64,
    ) -> Result<Option<LocalMessage>, StoreError> {
        let max = i64::from(self.max_receive_count);
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let received = loop {
                let next = tx
                    .query_row(
                        "SELECT seq, id, body, attributes, enqueued_at_ms, receive_count, last_error
                         FROM queue WHERE visible_at_ms <= ?1 ORDER BY seq LIMIT 1",
                        params![now_ms],
                        |r| {
                            Ok((
                                (r.get::<_, i64>(0)?, r.get::<_, String>(1)?),
                                r.get::<_, String>(2)?,
                                r.get::<_, String>(3)?,
                                r.get::<_, i64>(4)?,
                                r.get::<_, i64>(5)?,
                                r.get::<_, Option<String>>(6)?,
                            ))
                        },
                    )
                    .optional()
                    .map_err(db_err)?;
                let Some(((seq, id), body, attributes, enqueued_at_ms, count, last_error)) = next
                else {
                    break None;
                };
                if count >= max {
                    tx.execute(
                        "INSERT INTO dead_letters (seq, id, body, attributes, enqueued_at_ms,
                             receive_count, dead_lettered_at_ms, last_error)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            seq,
                            id,
                            body,
                            attributes,
                            enqueued_at_ms,
                            count,
                            now_ms,
                            last_error
                        ],
                    )
                    .map_err(db_err)?;
                    tx.execute("DELETE FROM queue WHERE seq = ?1", params![seq])
                        .map_err(db_err)?;
                    tracing::warn!(
                        message_id = %id,
                        receive_count = count,
                        last_error = last_error.as_deref().unwrap_or(""),
                        "message dead-lettered after too many receives"
                    );
                    continue;
                }
                tx.execute(
                    "UPDATE queue SET receive_count = receive_count + 1, visible_at_ms = ?2
                     WHERE seq = ?1",
                    params![seq, now_ms.saturating_add(visibility_ms.max(0))],
                )
                .map_err(db_err)?;
                break Some(LocalMessage {
                    id,
                    body,
                    attributes: parse_attributes(&attributes)?,
                    receive_count: to_u32(count + 1, "receive count")?,
                    enqueued_at_ms,
                });
            };
            tx.commit().map_err(db_err)?;
            Ok(received)
        })
        .await
    }

    /// Deletes a handled message. Returns whether it was still on the queue.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            let n = conn
                .execute("DELETE FROM queue WHERE id = ?1", params![id])
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    /// Makes a received message visible again after `delay_ms` from `now_ms` (retry with
    /// backoff; SQS `ChangeMessageVisibility`). Returns whether it was still on the queue.
    pub async fn release(&self, id: &str, delay_ms: i64, now_ms: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let visible_at = now_ms.saturating_add(delay_ms.max(0));
        let n = self
            .run(move |conn| {
                conn.execute(
                    "UPDATE queue SET visible_at_ms = ?2 WHERE id = ?1",
                    params![id, visible_at],
                )
                .map_err(db_err)
            })
            .await?;
        if n > 0 && delay_ms <= 0 {
            self.enqueued.notify_one();
        }
        Ok(n > 0)
    }

    /// Like [`Self::release`], for a receive that failed: `error` (a one-line `code: message`)
    /// is kept with the message, and moves with it to the dead letters.
    pub async fn release_failed(
        &self,
        id: &str,
        delay_ms: i64,
        now_ms: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        let visible_at = now_ms.saturating_add(delay_ms.max(0));
        let n = self
            .run(move |conn| {
                conn.execute(
                    "UPDATE queue SET visible_at_ms = ?2, last_error = ?3 WHERE id = ?1",
                    params![id, visible_at, error],
                )
                .map_err(db_err)
            })
            .await?;
        if n > 0 && delay_ms <= 0 {
            self.enqueued.notify_one();
        }
        Ok(n > 0)
    }

    /// Every dead-lettered message, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.run(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT id, body, attributes, receive_count, enqueued_at_ms,
                         dead_lettered_at_ms, last_error
                     FROM dead_letters ORDER BY seq",
                )
                .map_err(db_err)?;
            let raw = stmt
                .query_map([], |r| {
                    Ok((
                        (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, Option<String>>(6)?,
                    ))
                })
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            raw.into_iter()
                .map(
                    |((id, body), attributes, count, enqueued_at_ms, dead_at, last_error)| {
                        Ok(DeadLetter {
                            id,
                            body,
                            attributes: parse_attributes(&attributes)?,
                            receive_count: to_u32(count, "receive count")?,
                            enqueued_at_ms,
                            dead_lettered_at_ms: dead_at,
                            last_error,
                        })
                    },
                )
                .collect()
        })
        .await
    }

    /// Moves dead letters back to the end of the queue, visible at `now_ms` with a fresh
    /// receive count (what an SQS redrive does). `ids`: only these, else all. If any of `ids`
    /// is not a dead letter, nothing moves. The last error stays with each message until a
    /// later failure overwrites it.
    pub async fn redrive(
        &self,
        ids: Option<Vec<String>>,
        now_ms: i64,
    ) -> Result<Redriven, StoreError> {
        let done = self
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                let all: Vec<String> = {
                    let mut stmt = tx
                        .prepare("SELECT id FROM dead_letters ORDER BY seq")
                        .map_err(db_err)?;
                    stmt.query_map([], |r| r.get::<_, String>(0))
                        .map_err(db_err)?
                        .collect::<Result<_, _>>()
                        .map_err(db_err)?
                };
                let chosen: Vec<String> = match ids {
                    None => all,
                    Some(wanted) => {
                        let unknown: Vec<String> = wanted
                            .iter()
                            .filter(|w| !all.contains(w))
                            .cloned()
                            .collect();
                        if !unknown.is_empty() {
                            // Read-only so far: dropping the transaction rolls it back.
                            return Ok(Redriven {
                                moved: Vec::new(),
                                unknown,
                            });
                        }
                        all.into_iter().filter(|id| wanted.contains(id)).collect()
                    }
                };
                for id in &chosen {
                    tx.execute(
                        "INSERT INTO queue (id, body, attributes, enqueued_at_ms, visible_at_ms,
                             receive_count, last_error)
                         SELECT id, body, attributes, enqueued_at_ms, ?2, 0, last_error
                         FROM dead_letters WHERE id = ?1",
                        params![id, now_ms],
                    )
                    .map_err(db_err)?;
                    tx.execute("DELETE FROM dead_letters WHERE id = ?1", params![id])
                        .map_err(db_err)?;
                }
                tx.commit().map_err(db_err)?;
                Ok(Redriven {
                    moved: chosen,
                    unknown: Vec::new(),
                })
            })
            .await?;
        if !done.moved.is_empty() {
            self.enqueued.notify_one();
        }
        Ok(done)
    }

    /// Queue depth at `now_ms`.
    pub async fn queue_stats(&self, now_ms: i64) -> Result<QueueStats, StoreError> {
        self.run(move |conn| {
            let (visible, invisible): (i64, i64) = conn
                .query_row(
                    "SELECT COALESCE(SUM(visible_at_ms <= ?1), 0),
                            COALESCE(SUM(visible_at_ms > ?1), 0)
                     FROM queue",
                    params![now_ms],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db_err)?;
            let dead: i64 = conn
                .query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))
                .map_err(db_err)?;
            Ok(QueueStats {
                visible: u64::try_from(visible).unwrap_or(0),
                invisible: u64::try_from(invisible).unwrap_or(0),
                dead_letters: u64::try_from(dead).unwrap_or(0),
            })
        })
        .await
    }

    /// Makes every hidden message visible at `now_ms` and returns how many. For a restart of
    /// the only consumer of this file: what the previous process held is retried now instead
    /// of after its visibility timeout (retries are idempotent, backoff delays are only lost).
    pub async fn requeue_hidden(&self, now_ms: i64) -> Result<u64, StoreError> {
        let n = self
            .run(move |conn| {
                conn.execute(
                    "UPDATE queue SET visible_at_ms = ?1 WHERE visible_at_ms > ?1",
                    params![now_ms],
                )
                .map_err(db_err)
            })
            .await?;
        if n > 0 {
            self.enqueued.notify_one();
        }
        Ok(n as u64)
    }
}

#[async_trait]
impl EventQueue for SqliteStore {
    async fn enqueue(&self, message: &OutgoingMessage) -> Result<String, QueueError> {
        check_size(message, MAX_MESSAGE_BYTES)?;
        let id = uuid::Uuid::new_v4().to_string();
        let body = message.body.clone();
        let attributes = attributes_json(&message.attributes)
            .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        let now_ms = self.clock.now_ms();
        let message_id = id.clone();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO queue (id, body, attributes, enqueued_at_ms, visible_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![message_id, body, attributes, now_ms],
            )
            .map_err(db_err)
        })
        .await
        .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        self.enqueued.notify_one();
        Ok(id)
    }
}
