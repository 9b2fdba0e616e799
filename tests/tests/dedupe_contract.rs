//! The dedupe-lease contract against DynamoDB (moto server).

use std::sync::Arc;

use gemini_hooks::store::dynamodb::DynamoDbDedupeStore;
use gemini_hooks_tests::{contract, moto};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_dedupe_store_obeys_the_contract() {
    let ddb = moto::dynamodb().await;
    let table = moto::unique_name("dedupe");
    moto::create_dedupe_table(&ddb, &table).await;
    contract::dedupe_store_contract(Arc::new(DynamoDbDedupeStore::new(ddb, table)), "ddb").await;
}
