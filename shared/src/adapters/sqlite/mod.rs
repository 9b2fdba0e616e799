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

use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::Notify;

use crate::ports::StoreError;
use crate::ports::clock::{SharedClock, SystemClock};

mod dedupe;
mod outbox;
mod queue;
mod results;

pub use outbox::{OutboxItem, OutboxStats};
pub use queue::{DeadLetter, LocalMessage, QueueStats, Redriven};

/// Layout version written to `schema_version`; a file from a newer layout is refused, one from
/// an older layout is migrated on open. 2: `last_error` on queued and dead-lettered messages.
pub const SCHEMA_VERSION: i64 = 3;
/// Receives after which a message is dead-lettered, like SQS `maxReceiveCount`.
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 5;
/// File name of the store inside a data directory.
pub const DB_FILE_NAME: &str = "gemini-hooks.sqlite3";
/// Largest message the local queue takes: the same limit as SQS, so local mode fails the same way.
pub const MAX_MESSAGE_BYTES: usize = crate::adapters::aws::sqs::MAX_MESSAGE_BYTES;

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
-- Downstream events waiting for (or done with) `dev --notify-url`. Added without a version
-- bump: older builds ignore the table, and this one creates it on open.
CREATE TABLE IF NOT EXISTS outbox (
    id              TEXT PRIMARY KEY,
    body            TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    delivered_at_ms INTEGER,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (delivered_at_ms, next_attempt_ms);
";

/// The result rows table (also used by the migration from version 2).
const ROWS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS result_rows (
    job_id            TEXT NOT NULL,
    row_id            TEXT NOT NULL,
    key               TEXT NOT NULL,
    keyless           INTEGER NOT NULL DEFAULT 0,
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
    ingested_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (job_id, row_id)
);
";

/// The embedded store: [`DedupeStore`], [`EventQueue`] (plus a local consumer API) and
/// [`ResultsStore`] on one SQLite file. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
    clock: SharedClock,
    max_receive_count: u32,
    enqueued: Arc<Notify>,
    /// The `ROUTES` table this file stands for (`None`: the data directory's default store).
    table: Option<Arc<str>>,
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
            table: None,
        })
    }

    /// Names the results table this file stands for (a `ROUTES` table in local mode), which
    /// downstream events report as where to read.
    pub fn with_table_name(mut self, table: &str) -> Self {
        self.table = Some(Arc::from(table));
        self
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
}

/// Creates the schema if missing and checks its version, in one transaction so two processes
/// opening a fresh file at once cannot both initialise it.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    tx.execute_batch(SCHEMA).map_err(db_err)?;
    let has_rows_table: bool = tx
        .query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'result_rows'",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    if !has_rows_table {
        tx.execute_batch(ROWS_TABLE).map_err(db_err)?;
    }
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
        Some(v @ (1 | 2)) => {
            // `CREATE TABLE IF NOT EXISTS` leaves existing tables as they are, so bring them up.
            if v == 1 {
                // Version 1 had no failure reasons.
                for table in ["queue", "dead_letters"] {
                    if !has_column(&tx, table, "last_error")? {
                        tx.execute_batch(&format!(
                            "ALTER TABLE {table} ADD COLUMN last_error TEXT"
                        ))
                        .map_err(db_err)?;
                    }
                }
            }
            if !has_column(&tx, "result_rows", "row_id")? {
                migrate_rows_to_row_ids(&tx)?;
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

/// Versions 1–2 keyed rows by `(job_id, key)` and copied `user_metadata` onto each: rows move to
/// `(job_id, row_id)` (every old row was request-keyed), the metadata stays on the job only.
fn migrate_rows_to_row_ids(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let long = crate::domain::jobs::MAX_SORT_KEY_BYTES - crate::domain::jobs::ROW_KEY_PREFIX.len();
    tx.execute_batch(&format!(
        "ALTER TABLE result_rows RENAME TO result_rows_v2;
         {create}
         INSERT INTO result_rows (job_id, row_id, key, keyless, line, status, text, finish_reason,
             prompt_tokens, candidates_tokens, total_tokens, thoughts_tokens, model_version,
             response_json, error_code, error_message, ingested_at_ms)
         SELECT job_id, '{prefix}' || key, key, 0, line, status, text, finish_reason,
             prompt_tokens, candidates_tokens, total_tokens, thoughts_tokens, model_version,
             response_json, error_code, error_message, ingested_at_ms
         FROM result_rows_v2 WHERE length(CAST(key AS BLOB)) <= {long};",
        create = ROWS_TABLE,
        prefix = crate::domain::jobs::ROW_KEY_PREFIX,
    ))
    .map_err(db_err)?;
    // Keys too long for a DynamoDB sort key are stored under their hash (computed here).
    let long_keys: Vec<(String, String)> = {
        let mut stmt = tx
            .prepare(&format!(
                "SELECT job_id, key FROM result_rows_v2 WHERE length(CAST(key AS BLOB)) > {long}"
            ))
            .map_err(db_err)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)?
    };
    for (job_id, key) in long_keys {
        let row_id = format!(
            "{}{}",
            crate::domain::jobs::ROW_HASH_PREFIX,
            crate::domain::verify::sha256_hex(key.as_bytes())
        );
        tx.execute(
            "INSERT INTO result_rows (job_id, row_id, key, keyless, line, status, text,
                 finish_reason, prompt_tokens, candidates_tokens, total_tokens, thoughts_tokens,
                 model_version, response_json, error_code, error_message, ingested_at_ms)
             SELECT job_id, ?3, key, 0, line, status, text, finish_reason, prompt_tokens,
                 candidates_tokens, total_tokens, thoughts_tokens, model_version, response_json,
                 error_code, error_message, ingested_at_ms
             FROM result_rows_v2 WHERE job_id = ?1 AND key = ?2",
            params![job_id, key, row_id],
        )
        .map_err(db_err)?;
    }
    tx.execute_batch("DROP TABLE result_rows_v2;")
        .map_err(db_err)?;
    Ok(())
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::domain::envelope::OutgoingMessage;
    use crate::domain::event::JobKind;
    use crate::domain::jobs::{JobRecord, JobState};
    use crate::ports::clock::ManualClock;
    use crate::ports::{EventQueue, QueueError, ResultsStore};

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
