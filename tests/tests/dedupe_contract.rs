//! The DynamoDB contracts (dedupe lease, results store) against both DynamoDB emulators — moto
//! and the stricter dynalite (`tests/src/dynalite.rs`) — and the dedupe contract against SQLite
//! (local mode).

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use gemini_hooks::adapters::aws::dynamodb_dedupe::DynamoDbDedupeStore;
use gemini_hooks::adapters::aws::dynamodb_results::{DynamoDbResultsStore, JOBS_INDEX};
use gemini_hooks_tests::{contract, dynalite, moto};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_dedupe_store_obeys_the_contract() {
    let ddb = moto::dynamodb().await;
    let table = moto::unique_name("dedupe");
    moto::create_dedupe_table(&ddb, &table).await;
    contract::dedupe_store_contract(Arc::new(DynamoDbDedupeStore::new(ddb, table)), "ddb").await;
}

/// The same contract on dynalite. dynalite returns no item with a failed condition
/// (`ReturnValuesOnConditionCheckFailure` is ignored), so this run also covers the adapter's
/// fallback read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynalite_dedupe_store_obeys_the_contract() {
    let ddb = dynalite::dynamodb();
    let table = moto::unique_name("dedupe");
    dynalite::create_dedupe_table(&ddb, &table).await;
    contract::dedupe_store_contract(Arc::new(DynamoDbDedupeStore::new(ddb, table)), "dynalite")
        .await;
}

/// The same contract against the embedded SQLite store of local mode: one suite, two backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_dedupe_store_obeys_the_contract() {
    let dir = gemini_hooks_tests::local::TempDir::new("dedupe-contract");
    let store = gemini_hooks::adapters::sqlite::SqliteStore::open(dir.join("store.sqlite3"))
        .unwrap_or_else(|e| panic!("open: {e}"));
    contract::dedupe_store_contract(Arc::new(store), "sqlite").await;
}

/// The results-store contract (forward-only jobs, idempotent rows) against DynamoDB; the SQLite
/// run lives in `sqlite_store.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_results_store_obeys_the_contract() {
    let ddb = moto::dynamodb().await;
    let table = moto::unique_name("results");
    moto::create_results_table(&ddb, &table).await;
    let store = DynamoDbResultsStore::new(ddb.clone(), table.clone());
    contract::results_store_contract(Arc::new(store), "ddb").await;
    assert_jobs_indexed(&ddb, &table).await;
}

/// The jobs index holds the job records and nothing else (rows and parts have no
/// `updated_at_ms`), newest first.
async fn assert_jobs_indexed(ddb: &aws_sdk_dynamodb::Client, table: &str) {
    let out = ddb
        .query()
        .table_name(table)
        .index_name(JOBS_INDEX)
        .key_condition_expression("sk = :job")
        .expression_attribute_values(":job", AttributeValue::S("JOB".into()))
        .scan_index_forward(false)
        .send()
        .await
        .unwrap_or_else(|e| panic!("query the jobs index: {e:?}"));
    let times: Vec<i64> = out
        .items()
        .iter()
        .filter_map(|i| i.get("updated_at_ms")?.as_n().ok()?.parse().ok())
        .collect();
    assert!(times.len() > 80, "{} job records indexed", times.len());
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let scanned = ddb
        .scan()
        .table_name(table)
        .index_name(JOBS_INDEX)
        .send()
        .await
        .unwrap_or_else(|e| panic!("scan the jobs index: {e:?}"));
    assert!(
        scanned
            .items()
            .iter()
            .all(|i| i.get("sk").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("JOB")),
        "only job records"
    );
}

/// The same on a results table without the jobs index (a `ROUTES` table a user created
/// without it): jobs are listed by a scan, in the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_results_table_without_the_jobs_index_obeys_the_contract() {
    let ddb = moto::dynamodb().await;
    let table = moto::unique_name("results-noindex");
    moto::create_results_table_without_jobs_index(&ddb, &table).await;
    let store = DynamoDbResultsStore::new(ddb, table);
    contract::results_store_contract(Arc::new(store), "noindex").await;
}

/// The results-store contract on dynalite, which refuses what real DynamoDB refuses and moto
/// accepts (two writes of one key in one `BatchWriteItem`, numbers just out of range).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynalite_results_store_obeys_the_contract() {
    let ddb = dynalite::dynamodb();
    let table = moto::unique_name("results");
    dynalite::create_results_table(&ddb, &table).await;
    let store = DynamoDbResultsStore::new(ddb.clone(), table.clone());
    contract::results_store_contract(Arc::new(store), "dynalite").await;
    assert_jobs_indexed(&ddb, &table).await;
}
