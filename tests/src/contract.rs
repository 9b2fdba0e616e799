//! Behavioural contract of the state ports. Every adapter (DynamoDB on moto, SQLite) runs the
//! same functions, so local mode and AWS obey one set of rules.

use std::sync::Arc;

use gemini_hooks::store::{ClaimOutcome, ClaimRequest, DedupeStatus, DedupeStore, StoreError};

const NOW_MS: i64 = 1_795_000_000_000;

fn claim(id: &str, owner: &str, now_ms: i64) -> ClaimRequest {
    ClaimRequest {
        webhook_id: id.to_owned(),
        owner: owner.to_owned(),
        body_sha256: "a".repeat(64),
        now_ms,
        lease_until_ms: now_ms + 30_000,
        expires_at: now_ms / 1000 + 7 * 24 * 3600,
    }
}

async fn must_claim(store: &dyn DedupeStore, req: &ClaimRequest) {
    match store.claim(req).await {
        Ok(ClaimOutcome::Claimed) => {}
        other => panic!("expected Claimed for {}, got {other:?}", req.webhook_id),
    }
}

/// Runs every dedupe-lease rule of DESIGN §5 against `store`. `prefix` keeps ids unique.
pub async fn dedupe_store_contract(store: Arc<dyn DedupeStore>, prefix: &str) {
    let s = store.as_ref();

    // Absent → claimed; a second claim sees the first record, returned by the same call.
    let id = format!("{prefix}-basic");
    let first = claim(&id, "owner-1", NOW_MS);
    must_claim(s, &first).await;
    match s.claim(&claim(&id, "owner-2", NOW_MS + 1)).await {
        Ok(ClaimOutcome::Existing(rec)) => {
            assert_eq!(
                rec,
                first.record(),
                "existing record must be returned unchanged"
            );
        }
        other => panic!("expected Existing, got {other:?}"),
    }

    // Only the owner completes; completing makes later claims see ENQUEUED.
    assert_eq!(
        s.complete(&id, "owner-2", "m").await,
        Err(StoreError::NotOwner)
    );
    s.complete(&id, "owner-1", "msg-1")
        .await
        .unwrap_or_else(|e| panic!("complete: {e}"));
    match s.claim(&claim(&id, "owner-3", NOW_MS + 60_000)).await {
        Ok(ClaimOutcome::Existing(rec)) => assert_eq!(rec.status, DedupeStatus::Enqueued),
        other => panic!("expected Existing ENQUEUED, got {other:?}"),
    }
    // An ENQUEUED record cannot be released, even by its owner.
    assert_eq!(s.release(&id, "owner-1").await, Err(StoreError::NotOwner));

    // Release: only the owner; afterwards the id can be claimed again.
    let id = format!("{prefix}-release");
    must_claim(s, &claim(&id, "owner-1", NOW_MS)).await;
    assert_eq!(s.release(&id, "intruder").await, Err(StoreError::NotOwner));
    s.release(&id, "owner-1")
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
    must_claim(s, &claim(&id, "owner-2", NOW_MS + 1)).await;
    // The old owner lost the record: it can neither complete nor release it.
    assert_eq!(
        s.complete(&id, "owner-1", "m").await,
        Err(StoreError::NotOwner)
    );
    assert_eq!(s.release(&id, "owner-1").await, Err(StoreError::NotOwner));

    // Live lease → Existing PENDING; dead lease → taken over.
    let id = format!("{prefix}-lease");
    let holder = claim(&id, "holder", NOW_MS);
    must_claim(s, &holder).await;
    match s.claim(&claim(&id, "waiter", holder.lease_until_ms)).await {
        Ok(ClaimOutcome::Existing(rec)) => assert_eq!(rec.status, DedupeStatus::Pending),
        other => panic!("lease still alive at its last ms, expected Existing, got {other:?}"),
    }
    must_claim(s, &claim(&id, "taker", holder.lease_until_ms + 1)).await;
    assert_eq!(
        s.complete(&id, "holder", "m").await,
        Err(StoreError::NotOwner)
    );
    s.complete(&id, "taker", "m")
        .await
        .unwrap_or_else(|e| panic!("complete after takeover: {e}"));

    // ENQUEUED with a dead lease is still a duplicate until it expires.
    match s
        .claim(&claim(&id, "late", holder.lease_until_ms + 3_600_000))
        .await
    {
        Ok(ClaimOutcome::Existing(rec)) => assert_eq!(rec.status, DedupeStatus::Enqueued),
        other => panic!("expected Existing ENQUEUED, got {other:?}"),
    }

    // Expired but not yet deleted (TTL lags) counts as absent.
    let id = format!("{prefix}-expired");
    let old = claim(&id, "old", NOW_MS);
    must_claim(s, &old).await;
    s.complete(&id, "old", "m")
        .await
        .unwrap_or_else(|e| panic!("complete: {e}"));
    let after_expiry = (old.expires_at + 1) * 1000;
    must_claim(s, &claim(&id, "new", after_expiry)).await;
    // At exactly expires_at it is still remembered.
    let id = format!("{prefix}-expiry-edge");
    let edge = claim(&id, "a", NOW_MS);
    must_claim(s, &edge).await;
    s.complete(&id, "a", "m")
        .await
        .unwrap_or_else(|e| panic!("complete: {e}"));
    match s.claim(&claim(&id, "b", edge.expires_at * 1000)).await {
        Ok(ClaimOutcome::Existing(_)) => {}
        other => panic!("record at its expiry second must still count, got {other:?}"),
    }

    // Concurrency: many simultaneous claims of one id → exactly one winner.
    let id = format!("{prefix}-race");
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = Arc::clone(&store);
        let req = claim(&id, &format!("racer-{i}"), NOW_MS);
        tasks.push(tokio::spawn(async move { store.claim(&req).await }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(ClaimOutcome::Claimed)) => winners += 1,
            Ok(Ok(ClaimOutcome::Existing(_))) => {}
            other => panic!("claim failed: {other:?}"),
        }
    }
    assert_eq!(winners, 1, "exactly one concurrent claim may win");
}
