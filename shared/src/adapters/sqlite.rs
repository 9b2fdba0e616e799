//! SQLite adapters for local mode (`gemini-hooks dev`): one file holds the dedupe lease, a
//! durable queue with visibility timeouts and dead letters, job records and result rows.
//!
//! The rules are the ones the AWS adapters obey (the same contract tests run on both): a claim
//! succeeds if the id is absent, expired, or PENDING with a dead lease
//! ([`ClaimRequest::may_take_over`]), decided inside one `IMMEDIATE` transaction so concurrent
//! claims serialise; job state only moves forward ([`JobState::may_become`]); rows are upserted
//! by `(job_id, key)`.
//!
//! rusqlite is synchronous, so every call runs on tokio's blocking pool and async callers never
//! stall the runtime. One connection behind a mutex keeps it simple and correct; WAL mode lets
//! other processes (`gemini-hooks results`) read while `dev` writes, and the busy timeout makes
//! them wait instead of failing on a lock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use tokio::sync::Notify;

use crate::domain::dedupe::{ClaimOutcome, ClaimRequest, DedupeRecord, DedupeStatus};
use crate::domain::envelope::OutgoingMessage;
use crate::domain::jobs::{JobRecord, JobState, ResultRow, RowStatus};
use crate::ports::clock::{SharedClock, SystemClock};
use crate::ports::{DedupeStore, EventQueue, QueueError, ResultsStore, StoreError, check_size};

/// Layout version written to `schema_version`; a file from a newer layout is refused, one from
/// an older layout is migrated on open. 2: `last_error` on queued and dead-lettered messages.
pub const SCHEMA_VERSION: i64 = 2;
/// Receives after which a message is dead-lettered, like SQS `maxReceiveCount`.
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 5;
/// File name of the store inside a data directory.
pub const DB_FILE_NAME: &str = "gemini-hooks.sqlite3";
/// Largest message the local queue takes: the same limit as SQS, so local mode fails the same way.
pub const MAX_MESSAGE_BYTES: usize = super::aws::sqs::MAX_MESSAGE_BYTES;

/// How long a call waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dedupe (
    webhook_id     TEXT PRIMARY KEY,
    status         TEXT NOT NULL,
    owner          TEXT NOT NULL,
    lease_until_ms INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    body_sha256    TEXT NOT NULL,
    message_id     TEXT
);
CREATE TABLE IF NOT EXISTS queue (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    body           TEXT NOT NULL,
    attributes     TEXT NOT NULL,
    enqueued_at_ms INTEGER NOT NULL,
    visible_at_ms  INTEGER NOT NULL,
    receive_count  INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT
);
CREATE INDEX IF NOT EXISTS queue_visible ON queue (visible_at_ms);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq                 INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    body                TEXT NOT NULL,
    attributes          TEXT NOT NULL,
    enqueued_at_ms      INTEGER NOT NULL,
    receive_count       INTEGER NOT NULL,
    dead_lettered_at_ms INTEGER NOT NULL,
    last_error          TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id        TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    state         TEXT NOT NULL,
    job_group     TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    record        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_updated ON jobs (updated_at_ms);
CREATE TABLE IF NOT EXISTS result_rows (
    job_id            TEXT NOT NULL,
    key               TEXT NOT NULL,
    line              INTEGER NOT NULL,
    status            TEXT NOT NULL,
    text              TEXT,
    finish_reason     TEXT,
    prompt_tokens     INTEGER,
    candidates_tokens INTEGER,
    total_tokens      INTEGER,
    thoughts_tokens   INTEGER,
    model_version     TEXT,
    response_json     TEXT,
    error_code        INTEGER,
    error_message     TEXT,
    user_metadata     TEXT,
    ingested_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (job_id, key)
);
";

const UPSERT_ROW: &str = "
INSERT INTO result_rows (job_id, key, line, status, text, finish_reason, prompt_tokens,
    candidates_tokens, total_tokens, thoughts_tokens, model_version, response_json, error_code,
    error_message, user_metadata, ingested_at_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
ON CONFLICT (job_id, key) DO UPDATE SET
    line = excluded.line, status = excluded.status, text = excluded.text,
    finish_reason = excluded.finish_reason, prompt_tokens = excluded.prompt_tokens,
    candidates_tokens = excluded.candidates_tokens, total_tokens = excluded.total_tokens,
    thoughts_tokens = excluded.thoughts_tokens, model_version = excluded.model_version,
    response_json = excluded.response_json, error_code = excluded.error_code,
    error_message = excluded.error_message, user_metadata = excluded.user_metadata,
    ingested_at_ms = excluded.ingested_at_ms
";

const ROW_COLUMNS: &str = "job_id, key, line, status, text, finish_reason, prompt_tokens, \
    candidates_tokens, total_tokens, thoughts_tokens, model_version, response_json, error_code, \
    error_message, user_metadata, ingested_at_ms";

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

/// The embedded store: [`DedupeStore`], [`EventQueue`] (plus a local consumer API) and
/// [`ResultsStore`] on one SQLite file. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
    clock: SharedClock,
    max_receive_count: u32,
    enqueued: Arc<Notify>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("max_receive_count", &self.max_receive_count)
            .finish_non_exhaustive()
    }
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt(format!("{what} {v} does not fit a SQLite integer")))
}

fn to_u32(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(format!("stored {what} {v} is out of range")))
}

fn attributes_json(attributes: &[(String, String)]) -> Result<String, StoreError> {
    serde_json::to_string(attributes).map_err(|e| corrupt(format!("message attributes: {e}")))
}

fn parse_attributes(text: &str) -> Result<Vec<(String, String)>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("stored message attributes: {e}")))
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`: WAL journal, busy timeout, schema created
    /// idempotently. Fails if the file was written by a newer layout.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut conn = Connection::open(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        // FULL: an acknowledged delivery survives a power cut, not only a crash. Ingest batches
        // rows per transaction, so the extra sync per commit is cheap.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path),
            clock: Arc::new(SystemClock),
            max_receive_count: DEFAULT_MAX_RECEIVE_COUNT,
            enqueued: Arc::new(Notify::new()),
        })
    }

    /// Uses `clock` for enqueue and dead-letter times (tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Receives after which a message moves to the dead letters (at least 1).
    pub fn with_max_receive_count(mut self, max_receive_count: u32) -> Self {
        self.max_receive_count = max_receive_count.max(1);
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn max_receive_count(&self) -> u32 {
        self.max_receive_count
    }

    /// Signalled after every enqueue in this process, so a consumer loop can wait on it instead
    /// of polling tightly. Messages enqueued by other processes are only seen by polling.
    pub fn enqueued_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.enqueued)
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic mid-call drops its transaction, which rolls back: the connection is
            // consistent again, so a poisoned lock is safe to reuse.
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("sqlite task failed: {e}")))?
    }

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

    /// Deletes dedupe records that expired before `now_ms` (what DynamoDB's TTL does; expired
    /// records already count as absent, this only reclaims space). Returns how many.
    pub async fn purge_expired_dedupe(&self, now_ms: i64) -> Result<u64, StoreError> {
        let now_s = now_ms.div_euclid(1000);
        self.run(move |conn| {
            let n = conn
                .execute("DELETE FROM dedupe WHERE expires_at < ?1", params![now_s])
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }

    /// Number of rows stored for `job_id`.
    pub async fn row_count(&self, job_id: &str) -> Result<u64, StoreError> {
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
}

/// Creates the schema if missing and checks its version, in one transaction so two processes
/// opening a fresh file at once cannot both initialise it.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    tx.execute_batch(SCHEMA).map_err(db_err)?;
    let version: Option<i64> = tx
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .map_err(db_err)?;
    match version {
        None => {
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                params![SCHEMA_VERSION],
            )
            .map_err(db_err)?;
        }
        Some(1) => {
            // Version 1 had no failure reasons; `CREATE TABLE IF NOT EXISTS` leaves existing
            // tables as they are, so add the column to them.
            for table in ["queue", "dead_letters"] {
                if !has_column(&tx, table, "last_error")? {
                    tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN last_error TEXT"))
                        .map_err(db_err)?;
                }
            }
            tx.execute(
                "UPDATE schema_version SET version = ?1",
                params![SCHEMA_VERSION],
            )
            .map_err(db_err)?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(StoreError::Corrupt(format!(
                "the store has schema version {v}; this build understands up to {SCHEMA_VERSION} \
                 (written by a newer gemini-hooks?)"
            )));
        }
        Some(_) => {}
    }
    tx.commit().map_err(db_err)
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool, StoreError> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info({table})"))
        .map_err(db_err)?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(1))
        .map_err(db_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err)?;
    Ok(names.iter().any(|n| n == column))
}

fn dedupe_from_row(r: &Row<'_>) -> rusqlite::Result<(String, String, String, i64, i64, String)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

#[async_trait]
impl DedupeStore for SqliteStore {
    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let req = request.clone();
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let existing = tx
                .query_row(
                    "SELECT webhook_id, status, owner, lease_until_ms, expires_at, body_sha256
                     FROM dedupe WHERE webhook_id = ?1",
                    params![req.webhook_id],
                    dedupe_from_row,
                )
                .optional()
                .map_err(db_err)?;
            if let Some((webhook_id, status, owner, lease_until_ms, expires_at, body_sha256)) =
                existing
            {
                let record = DedupeRecord {
                    webhook_id,
                    status: DedupeStatus::parse(&status)
                        .ok_or_else(|| corrupt(format!("unknown dedupe status `{status}`")))?,
                    owner,
                    lease_until_ms,
                    expires_at,
                    body_sha256,
                };
                if !req.may_take_over(&record) {
                    // Read-only so far: dropping the transaction rolls it back.
                    return Ok(ClaimOutcome::Existing(record));
                }
            }
            tx.execute(
                "INSERT OR REPLACE INTO dedupe (webhook_id, status, owner, lease_until_ms,
                     expires_at, body_sha256, message_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
                params![
                    req.webhook_id,
                    DedupeStatus::Pending.as_str(),
                    req.owner,
                    req.lease_until_ms,
                    req.expires_at,
                    req.body_sha256
                ],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(ClaimOutcome::Claimed)
        })
        .await
    }

    async fn complete(
        &self,
        webhook_id: &str,
        owner: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        let (id, owner, msg) = (
            webhook_id.to_owned(),
            owner.to_owned(),
            message_id.to_owned(),
        );
        self.run(move |conn| {
            // Same condition as DynamoDB: the owner may complete, whatever the status.
            let n = conn
                .execute(
                    "UPDATE dedupe SET status = ?3, message_id = ?4
                     WHERE webhook_id = ?1 AND owner = ?2",
                    params![id, owner, DedupeStatus::Enqueued.as_str(), msg],
                )
                .map_err(db_err)?;
            if n == 0 {
                Err(StoreError::NotOwner)
            } else {
                Ok(())
            }
        })
        .await
    }

    async fn release(&self, webhook_id: &str, owner: &str) -> Result<(), StoreError> {
        let (id, owner) = (webhook_id.to_owned(), owner.to_owned());
        self.run(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM dedupe WHERE webhook_id = ?1 AND owner = ?2 AND status = ?3",
                    params![id, owner, DedupeStatus::Pending.as_str()],
                )
                .map_err(db_err)?;
            if n == 0 {
                Err(StoreError::NotOwner)
            } else {
                Ok(())
            }
        })
        .await
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

fn job_from_json(text: &str) -> Result<JobRecord, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("stored job record: {e}")))
}

fn opt_json(value: Option<&serde_json::Value>) -> Option<String> {
    value.map(serde_json::Value::to_string)
}

type RawRow = (
    (String, String, i64, String, Option<String>, Option<String>),
    (Option<i64>, Option<i64>, Option<i64>, Option<i64>),
    (Option<String>, Option<String>, Option<i64>, Option<String>),
    (Option<String>, i64),
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
        (user_metadata, ingested_at_ms),
    ) = raw;
    Ok(ResultRow {
        line: u64::try_from(line).map_err(|_| corrupt(format!("row line {line}")))?,
        status: RowStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("unknown row status `{status}`")))?,
        user_metadata: user_metadata
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| corrupt(format!("row user_metadata: {e}")))?,
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
                        row.key,
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
                        opt_json(row.user_metadata.as_ref()),
                        row.ingested_at_ms,
                    ])
                    .map_err(db_err)?;
                }
            }
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn list_rows(&self, job_id: &str) -> Result<Vec<ResultRow>, StoreError> {
        let job_id = job_id.to_owned();
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {ROW_COLUMNS} FROM result_rows WHERE job_id = ?1 ORDER BY key"
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

    async fn list_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.run(|conn| {
            let mut stmt = conn
                .prepare("SELECT record FROM jobs ORDER BY updated_at_ms DESC, job_id")
                .map_err(db_err)?;
            let texts = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            texts.iter().map(|t| job_from_json(t)).collect()
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::domain::event::JobKind;
    use crate::ports::clock::ManualClock;

    /// A database path in the temp dir; the file and its WAL companions go away on drop.
    struct TempDb(PathBuf);

    impl TempDb {
        fn new(name: &str) -> Self {
            Self(std::env::temp_dir().join(format!(
                "gemini-hooks-unit-{name}-{}.sqlite3",
                uuid::Uuid::new_v4()
            )))
        }
    }

    impl AsRef<Path> for TempDb {
        fn as_ref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = self.0.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
    }

    fn message(body: &str) -> OutgoingMessage {
        OutgoingMessage {
            body: body.to_owned(),
            attributes: vec![("event_type".into(), "batch.succeeded".into())],
        }
    }

    #[tokio::test]
    async fn when_opened_twice_schema_is_idempotent_and_versioned() {
        let path = TempDb::new("schema");
        drop(SqliteStore::open(&path).unwrap());
        let store = SqliteStore::open(&path).unwrap();
        let (count, version): (i64, i64) = store
            .run(|c| {
                c.query_row(
                    "SELECT COUNT(*), MAX(version) FROM schema_version",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db_err)
            })
            .await
            .unwrap();
        assert_eq!((count, version), (1, SCHEMA_VERSION));
        let mode: String = store
            .run(|c| {
                c.query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .map_err(db_err)
            })
            .await
            .unwrap();
        assert_eq!(mode.to_ascii_lowercase(), "wal");
    }

    #[tokio::test]
    async fn when_schema_is_version_1_open_should_add_the_failure_reasons_and_keep_the_data() {
        let path = TempDb::new("v1");
        {
            // The version 1 layout of the two queue tables, with one message in each.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER NOT NULL);
                 INSERT INTO schema_version (version) VALUES (1);
                 CREATE TABLE queue (
                     seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                     body TEXT NOT NULL, attributes TEXT NOT NULL,
                     enqueued_at_ms INTEGER NOT NULL, visible_at_ms INTEGER NOT NULL,
                     receive_count INTEGER NOT NULL DEFAULT 0);
                 CREATE TABLE dead_letters (
                     seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
                     attributes TEXT NOT NULL, enqueued_at_ms INTEGER NOT NULL,
                     receive_count INTEGER NOT NULL, dead_lettered_at_ms INTEGER NOT NULL);
                 INSERT INTO queue (id, body, attributes, enqueued_at_ms, visible_at_ms)
                     VALUES ('m1', '{}', '[]', 1, 1);
                 INSERT INTO dead_letters VALUES (7, 'd1', '{}', '[]', 1, 5, 2);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let version: i64 = store
            .run(|c| {
                c.query_row("SELECT version FROM schema_version", [], |r| r.get(0))
                    .map_err(db_err)
            })
            .await
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let dead = store.dead_letters().await.unwrap();
        assert_eq!(
            (dead[0].id.as_str(), dead[0].last_error.as_deref()),
            ("d1", None)
        );
        assert!(store.release_failed("m1", 0, 1, "poison: x").await.unwrap());
        drop(store);
        // Opening again is a no-op.
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.queue_stats(1).await.unwrap().visible, 1);
    }

    #[tokio::test]
    async fn when_schema_is_newer_open_should_refuse() {
        let path = TempDb::new("newer");
        let store = SqliteStore::open(&path).unwrap();
        store
            .run(|c| {
                c.execute("UPDATE schema_version SET version = 99", [])
                    .map_err(db_err)
            })
            .await
            .unwrap();
        drop(store);
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt(ref m) if m.contains("99")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn when_message_too_large_enqueue_should_refuse() {
        let db = TempDb::new("large");
        let store = SqliteStore::open(&db).unwrap();
        let err = store
            .enqueue(&message(&"x".repeat(MAX_MESSAGE_BYTES + 1)))
            .await
            .unwrap_err();
        assert!(matches!(err, QueueError::TooLarge { .. }));
    }

    #[tokio::test]
    async fn when_enqueued_signal_should_wake_a_waiter() {
        let db = TempDb::new("notify");
        let store = SqliteStore::open(&db)
            .unwrap()
            .with_clock(Arc::new(ManualClock::at_ms(1_000)));
        let signal = store.enqueued_signal();
        store.enqueue(&message("{}")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), signal.notified())
            .await
            .expect("an enqueue must leave a permit for the consumer");
    }

    #[tokio::test]
    async fn stored_job_round_trips_with_every_field() {
        let db = TempDb::new("job");
        let store = SqliteStore::open(&db).unwrap();
        let mut job = JobRecord::new("batches/x", JobKind::Batch, 5);
        job.user_metadata = Some(serde_json::json!({"job_group": "exp"}));
        job.job_group = Some("exp".into());
        job.state = JobState::Ingesting;
        assert!(store.save_job(&job).await.unwrap());
        assert_eq!(store.load_job("batches/x").await.unwrap(), Some(job));
        assert_eq!(store.load_job("batches/none").await.unwrap(), None);
    }
}
