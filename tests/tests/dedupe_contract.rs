//! The DynamoDB contracts (dedupe lease, results store) against both DynamoDB emulators — moto
//! and the stricter dynalite (`tests/src/dynalite.rs`) — and the dedupe contract against SQLite
//! (local mode).

use std::sync::Arc;

use gemini_hooks::adapters::aws::dynamodb_dedupe::DynamoDbDedupeStore;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
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
    let store = DynamoDbResultsStore::new(ddb, table);
    contract::results_store_contract(Arc::new(store), "ddb").await;
}

/// The results-store contract on dynalite, which refuses what real DynamoDB refuses and moto
/// accepts (two writes of one key in one `BatchWriteItem`, numbers just out of range).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynalite_results_store_obeys_the_contract() {
    let ddb = dynalite::dynamodb();
    let table = moto::unique_name("results");
    dynalite::create_results_table(&ddb, &table).await;
    let store = DynamoDbResultsStore::new(ddb, table);
    contract::results_store_contract(Arc::new(store), "dynalite").await;
}
