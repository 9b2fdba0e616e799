//! Behavioural contract of the state ports. Every adapter (DynamoDB on moto, SQLite) runs the
//! same functions, so local mode and AWS obey one set of rules.

use std::sync::Arc;

use gemini_hooks::domain::dedupe::{ClaimOutcome, ClaimRequest, DedupeStatus};
use gemini_hooks::ports::{DedupeStore, StoreError};

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

/// Runs every dedupe-lease rule (the `DedupeStore` port; README, "How it behaves") against
/// `store`. `prefix` keeps ids unique.
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

use gemini_hooks::domain::event::JobKind;
use gemini_hooks::domain::jobs::{JobRecord, JobState, ResultRow, RowStatus};
use gemini_hooks::ports::ResultsStore;
use serde_json::json;

fn job(id: &str, state: JobState, updated_at_ms: i64) -> JobRecord {
    let mut record = JobRecord::new(id, JobKind::Batch, NOW_MS);
    record.state = state;
    record.updated_at_ms = updated_at_ms;
    record.last_event = Some("batch.succeeded".to_owned());
    record.user_metadata = Some(json!({"job_group": "contract", "n": 1}));
    record.job_group = Some("contract".to_owned());
    record
}

fn row(job_id: &str, key: &str, line: u64, status: RowStatus) -> ResultRow {
    let ok = status == RowStatus::Ok;
    ResultRow {
        job_id: job_id.to_owned(),
        key: key.to_owned(),
        line,
        status,
        text: ok.then(|| format!("answer for {key}")),
        finish_reason: ok.then(|| "STOP".to_owned()),
        prompt_tokens: ok.then_some(12),
        candidates_tokens: ok.then_some(34),
        total_tokens: ok.then_some(46),
        thoughts_tokens: None,
        model_version: ok.then(|| "gemini-2.5-flash".to_owned()),
        response_json: ok
            .then(|| json!({"candidates": [{"content": {"parts": [{"text": key}]}}]}).to_string()),
        error_code: (status == RowStatus::Error).then_some(3),
        error_message: (!ok).then(|| format!("{key} failed")),
        keyless: false,
        ingested_at_ms: NOW_MS,
    }
}

async fn must_save(store: &dyn ResultsStore, record: &JobRecord, expected: bool, why: &str) {
    match store.save_job(record).await {
        Ok(saved) => assert_eq!(saved, expected, "{why}"),
        Err(e) => panic!("save_job failed ({why}): {e}"),
    }
}

async fn must_load(store: &dyn ResultsStore, job_id: &str) -> JobRecord {
    match store.load_job(job_id).await {
        Ok(Some(r)) => r,
        other => panic!("expected a stored job {job_id}, got {other:?}"),
    }
}

async fn must_list_rows(store: &dyn ResultsStore, job_id: &str) -> Vec<ResultRow> {
    store
        .list_rows(job_id)
        .await
        .unwrap_or_else(|e| panic!("list_rows({job_id}): {e}"))
}

/// Runs every rule of the results store (the `ResultsStore` port): forward-only job state,
/// idempotent rows keyed `(job_id, key)`, ordering of the listings. `prefix` keeps job ids
/// unique per run.
pub async fn results_store_contract(store: Arc<dyn ResultsStore>, prefix: &str) {
    let s = store.as_ref();
    let id = format!("batches/{prefix}-forward");

    // Absent job → None; the first save writes the whole record.
    assert_eq!(
        s.load_job(&id)
            .await
            .unwrap_or_else(|e| panic!("load: {e}")),
        None
    );
    let received = job(&id, JobState::Received, NOW_MS);
    must_save(s, &received, true, "first save").await;
    assert_eq!(
        must_load(s, &id).await,
        received,
        "record must round-trip unchanged"
    );

    // Same state again (a replay) is allowed and overwrites; forward moves are allowed.
    let mut again = received.clone();
    again.counts.rows_ingested = 7;
    must_save(s, &again, true, "same state replay").await;
    assert_eq!(must_load(s, &id).await.counts.rows_ingested, 7);
    let mut ingesting = job(&id, JobState::Ingesting, NOW_MS + 10);
    ingesting.checkpoint = Some(gemini_hooks::domain::jobs::Checkpoint {
        file: "files/batch-x".to_owned(),
        byte_offset: 1234,
        lines: 10,
    });
    must_save(s, &ingesting, true, "RECEIVED → INGESTING").await;

    // Backwards is refused and writes nothing.
    let running = job(&id, JobState::Running, NOW_MS + 20);
    must_save(s, &running, false, "INGESTING → RUNNING must be refused").await;
    assert_eq!(
        must_load(s, &id).await,
        ingesting,
        "a refused save must not write"
    );

    // Terminal states never replace one another.
    let mut done = job(&id, JobState::Succeeded, NOW_MS + 30);
    done.completed_at_ms = Some(NOW_MS + 30);
    done.output = Some(json!({"responsesFile": "files/batch-x"}));
    must_save(s, &done, true, "INGESTING → SUCCEEDED").await;
    must_save(
        s,
        &job(&id, JobState::Failed, NOW_MS + 40),
        false,
        "SUCCEEDED → FAILED",
    )
    .await;
    must_save(
        s,
        &job(&id, JobState::Ingesting, NOW_MS + 50),
        false,
        "SUCCEEDED → INGESTING",
    )
    .await;
    assert_eq!(must_load(s, &id).await, done);

    // Concurrent saves of different states: the furthest state wins, whatever the order.
    let race = format!("batches/{prefix}-race");
    let mut tasks = Vec::new();
    for (i, state) in [
        JobState::Running,
        JobState::Succeeded,
        JobState::Pending,
        JobState::Ingesting,
        JobState::Received,
        JobState::Running,
    ]
    .into_iter()
    .enumerate()
    {
        let store = Arc::clone(&store);
        let record = job(&race, state, NOW_MS + i64::try_from(i).unwrap_or(0));
        tasks.push(tokio::spawn(async move { store.save_job(&record).await }));
    }
    for t in tasks {
        match t.await {
            Ok(Ok(_)) => {}
            other => panic!("concurrent save failed: {other:?}"),
        }
    }
    assert_eq!(must_load(s, &race).await.state, JobState::Succeeded);

    // Rows: upsert by (job_id, key), listed in key order, isolated per job.
    let rows_job = format!("batches/{prefix}-rows");
    let other_job = format!("batches/{prefix}-other");
    let first = vec![
        row(&rows_job, "k-2", 2, RowStatus::Error),
        row(&rows_job, "k-1", 1, RowStatus::Ok),
        row(&rows_job, "k-3", 3, RowStatus::Malformed),
    ];
    s.put_rows(&first)
        .await
        .unwrap_or_else(|e| panic!("put_rows: {e}"));
    s.put_rows(&[row(&other_job, "k-1", 1, RowStatus::Ok)])
        .await
        .unwrap_or_else(|e| panic!("put_rows other: {e}"));
    s.put_rows(&[])
        .await
        .unwrap_or_else(|e| panic!("put_rows of nothing: {e}"));
    let listed = must_list_rows(s, &rows_job).await;
    let mut expected = first.clone();
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(listed, expected, "rows must round-trip, ordered by key");

    // A replay overwrites (same count), a changed row replaces the old one.
    let mut replay = first.clone();
    replay[0] = row(&rows_job, "k-2", 2, RowStatus::Ok);
    s.put_rows(&replay)
        .await
        .unwrap_or_else(|e| panic!("replay: {e}"));
    let listed = must_list_rows(s, &rows_job).await;
    assert_eq!(listed.len(), 3, "a replay must not duplicate rows");
    assert_eq!(listed[1], replay[0]);
    assert_eq!(must_list_rows(s, &other_job).await.len(), 1);
    assert!(
        must_list_rows(s, &format!("batches/{prefix}-none"))
            .await
            .is_empty()
    );

    // Many rows in one call (adapters chunk as their backend requires), and a large response.
    let many_job = format!("batches/{prefix}-many");
    let mut many: Vec<ResultRow> = (1..=260)
        .map(|i| row(&many_job, &format!("req-{i:04}"), i, RowStatus::Ok))
        .collect();
    many[7].text = Some("ü€ — ".repeat(4000));
    s.put_rows(&many)
        .await
        .unwrap_or_else(|e| panic!("put_rows many: {e}"));
    assert_eq!(must_list_rows(s, &many_job).await, many);

    // Rows written before a time go, with their parts; later ones stay.
    let prune_job = format!("batches/{prefix}-prune");
    let mut old_small = row(&prune_job, "old-small", 1, RowStatus::Ok);
    old_small.ingested_at_ms = NOW_MS - 10_000;
    let mut old_large = row(&prune_job, "old-large", 2, RowStatus::Ok);
    old_large.ingested_at_ms = NOW_MS - 10_000;
    // Incompressible, so DynamoDB stores it in parts.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: String = (0..900_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            char::from(b'!' + u8::try_from(seed % 90).unwrap_or(0))
        })
        .collect();
    old_large.response_json = Some(json!({"noise": noise}).to_string());
    let fresh = row(&prune_job, "fresh", 3, RowStatus::Ok);
    s.put_rows(&[old_small, old_large, fresh.clone()])
        .await
        .unwrap_or_else(|e| panic!("put_rows prune: {e}"));
    let removed = s
        .delete_rows_before(&prune_job, NOW_MS - 1)
        .await
        .unwrap_or_else(|e| panic!("delete_rows_before: {e}"));
    assert_eq!(removed, 2);
    assert_eq!(must_list_rows(s, &prune_job).await, [fresh]);
    assert_eq!(s.count_rows(&prune_job).await.ok(), Some(1));
    assert_eq!(
        s.delete_rows_before(&prune_job, NOW_MS - 1).await.ok(),
        Some(0),
        "nothing left to remove"
    );

    // Jobs are listed newest update first.
    let newest = format!("batches/{prefix}-newest");
    must_save(
        s,
        &job(&newest, JobState::Running, NOW_MS + 1_000_000),
        true,
        "newest",
    )
    .await;
    let listed: Vec<String> = s
        .list_jobs(None)
        .await
        .unwrap_or_else(|e| panic!("list_jobs: {e}"))
        .into_iter()
        .filter(|j| j.job_id.starts_with(&format!("batches/{prefix}-")))
        .map(|j| j.job_id)
        .collect();
    assert_eq!(
        listed.first(),
        Some(&newest),
        "newest job first: {listed:?}"
    );
    assert!(listed.contains(&id) && listed.contains(&race), "{listed:?}");
    // A limit keeps the newest, also when more jobs than it keeps while reading come first.
    let many: Vec<String> = (0..80)
        .map(|i| format!("batches/{prefix}-j{i:02}"))
        .collect();
    for (i, id) in many.iter().enumerate() {
        let at = NOW_MS + 2_000_000 + i64::try_from(i).unwrap_or(0);
        must_save(s, &job(id, JobState::Succeeded, at), true, "many").await;
    }
    let newest_three = s
        .list_jobs(Some(3))
        .await
        .unwrap_or_else(|e| panic!("list_jobs(3): {e}"));
    assert_eq!(
        newest_three
            .iter()
            .map(|j| j.job_id.as_str())
            .collect::<Vec<_>>(),
        [&many[79], &many[78], &many[77]]
    );
}
