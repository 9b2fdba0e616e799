//! The dedupe lease on the `dedupe` table: the same claim rule as DynamoDB's condition
//! ([`ClaimRequest::may_take_over`]), decided inside one `IMMEDIATE` transaction.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::{SqliteStore, corrupt, db_err};
use crate::domain::dedupe::{ClaimOutcome, ClaimRequest, DedupeRecord, DedupeStatus};
use crate::ports::{DedupeStore, StoreError};

impl SqliteStore {
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

    /// Ends the lease of every PENDING claim at `now_ms` and returns how many. For a restart of
    /// the only process on this file (`dev` holds the data directory's lock): the previous
    /// process's claims died with it, and its messages are retried at once
    /// ([`Self::requeue_hidden`]), before their leases would have run out. Without this, a
    /// downstream event claimed just before a crash would be "in flight" for every retry of
    /// its message, into the dead letters.
    pub async fn expire_pending_claims(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.run(move |conn| {
            let n = conn
                .execute(
                    "UPDATE dedupe SET lease_until_ms = ?1 - 1
                     WHERE status = 'PENDING' AND lease_until_ms >= ?1",
                    params![now_ms],
                )
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_restart_ends_the_leases_of_the_previous_process() {
        let path = std::env::temp_dir().join(format!(
            "gemini-hooks-claims-{}.sqlite3",
            uuid::Uuid::new_v4()
        ));
        let store = SqliteStore::open(&path).unwrap();
        let claim = |owner: &str, now_ms: i64| ClaimRequest {
            webhook_id: "job-event batches/x#SUCCEEDED".into(),
            owner: owner.into(),
            body_sha256: "h".into(),
            now_ms,
            lease_until_ms: now_ms + 300_000,
            expires_at: now_ms / 1000 + 3600,
        };
        let t0 = 1_795_000_000_000;
        assert_eq!(
            store.claim(&claim("old", t0)).await.unwrap(),
            ClaimOutcome::Claimed
        );
        assert!(matches!(
            store.claim(&claim("new", t0 + 1_000)).await.unwrap(),
            ClaimOutcome::Existing(_)
        ));
        assert_eq!(store.expire_pending_claims(t0 + 1_000).await.unwrap(), 1);
        assert_eq!(
            store.claim(&claim("new", t0 + 1_000)).await.unwrap(),
            ClaimOutcome::Claimed
        );
        store
            .complete("job-event batches/x#SUCCEEDED", "new", "e1")
            .await
            .unwrap();
        assert_eq!(
            store.expire_pending_claims(t0 + 2_000).await.unwrap(),
            0,
            "completed claims are kept"
        );
        drop(store);
        let _ = std::fs::remove_file(path);
    }
}
