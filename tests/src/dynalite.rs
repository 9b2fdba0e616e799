//! Helpers for tests that talk to the dynalite server started by `scripts/test.sh`.
//!
//! dynalite (npm, pinned in `scripts/dynalite/package-lock.json`) is a second DynamoDB emulator,
//! stricter than moto where it matters here: it refuses two writes of one key inside one
//! `BatchWriteItem` (moto refuses only byte-identical items) and numbers just past DynamoDB's
//! range or beyond 38 significant digits (moto refuses only numbers far out of range). It is
//! kinder in one way: it measures keys and items in UTF-16 units, not UTF-8 bytes, so for text
//! that is not ASCII moto is the check. `tests/tests/dynamodb_limits.rs` has the evidence; the
//! DynamoDB contract tests run on both.
//!
//! Only tests that ask for a client here reach dynalite: its endpoint comes from
//! [`ENDPOINT_VAR`], never from `AWS_ENDPOINT_URL_DYNAMODB`, so every other test and every
//! spawned binary keeps using moto.
//!
//! Differences from moto that the helpers work around, each checked by a test in
//! `dynamodb_limits.rs`:
//! - dynalite 4.0.0 has no `UpdateTimeToLive` (it answers `UnknownOperationException`), so the
//!   tables here are created without the TTL setting. Nothing in the suite depends on it: TTL
//!   deletion lags by up to days on real DynamoDB, so the adapters check expiry themselves.
//! - dynalite ignores `ReturnValuesOnConditionCheckFailure`: a failed condition returns no item,
//!   so on dynalite the dedupe adapter takes its fallback path (a consistent `GetItem`).

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

use crate::moto::{self, DEDUPE_KEYS, RESULTS_KEYS};

/// The variable `scripts/test.sh` exports with dynalite's endpoint (`http://127.0.0.1:PORT`).
pub const ENDPOINT_VAR: &str = "DYNALITE_ENDPOINT_URL";

const BACKEND: &str = "dynalite";

/// dynalite's endpoint from [`ENDPOINT_VAR`].
///
/// # Panics
/// If the variable is unset or empty: a test that needs dynalite must fail, never skip.
pub fn endpoint() -> String {
    match std::env::var(ENDPOINT_VAR) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{ENDPOINT_VAR} is not set: run the suite through scripts/test.sh, which installs \
             dynalite into .dynalite/ (Node.js 20+ and npm needed) and starts it; or start \
             `node .dynalite/node_modules/dynalite/cli.js --port N` yourself and export \
             {ENDPOINT_VAR}=http://127.0.0.1:N"
        ),
    }
}

/// DynamoDB client for dynalite. Built from scratch (endpoint, region, dummy credentials), not
/// from the environment, so it cannot pick up moto's `AWS_ENDPOINT_URL` or real credentials.
pub fn dynamodb() -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, BACKEND))
        .endpoint_url(endpoint())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Creates the receiver's dedupe table with the template's shape: PK `webhook_id` (S),
/// on-demand billing. No TTL setting: dynalite has no `UpdateTimeToLive` (see the module doc).
pub async fn create_dedupe_table(c: &aws_sdk_dynamodb::Client, name: &str) {
    moto::create_keyed_table(c, name, DEDUPE_KEYS, false, BACKEND).await;
}

/// Creates the results table with the template's shape: PK `pk` (S), SK `sk` (S), the jobs
/// index, on-demand billing. No TTL setting: dynalite has no `UpdateTimeToLive` (see the module doc).
pub async fn create_results_table(c: &aws_sdk_dynamodb::Client, name: &str) {
    moto::create_keyed_table(c, name, RESULTS_KEYS, true, BACKEND).await;
}
