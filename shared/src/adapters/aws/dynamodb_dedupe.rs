//! DynamoDB adapters.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use crate::domain::dedupe::{ClaimOutcome, ClaimRequest, DedupeRecord, DedupeStatus};
use crate::ports::{DedupeStore, StoreError};

/// Attribute names of the dedupe table (`domain/dedupe.rs`). The partition key is `webhook_id`.
pub mod attr {
    pub const WEBHOOK_ID: &str = "webhook_id";
    pub const STATUS: &str = "status";
    pub const OWNER: &str = "owner";
    pub const LEASE_UNTIL_MS: &str = "lease_until_ms";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const BODY_SHA256: &str = "body_sha256";
    pub const MESSAGE_ID: &str = "message_id";
}

/// Claim condition: absent, expired (TTL deletion lags by up to days, so expiry is checked here,
/// not left to DynamoDB), or PENDING with a dead lease.
const CLAIM_CONDITION: &str =
    "attribute_not_exists(#id) OR #exp < :now_s OR (#st = :pending AND #lease < :now_ms)";

/// [`DedupeStore`] on a DynamoDB table keyed by `webhook_id`.
#[derive(Debug, Clone)]
pub struct DynamoDbDedupeStore {
    client: Client,
    table: String,
}

impl DynamoDbDedupeStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

/// Flattens an SDK error into a loggable message (the SDK's `Display` only says "service error").
pub(crate) fn sdk_message<E, R>(e: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    DisplayErrorContext(e).to_string()
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &HashMap<String, AttributeValue>, key: &str) -> Result<String, StoreError> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| StoreError::Corrupt(format!("attribute `{key}` missing or not a string")))
}

fn get_n(item: &HashMap<String, AttributeValue>, key: &str) -> Result<i64, StoreError> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("attribute `{key}` missing or not a number")))
}

fn record_from_item(item: &HashMap<String, AttributeValue>) -> Result<DedupeRecord, StoreError> {
    let status = get_s(item, attr::STATUS)?;
    Ok(DedupeRecord {
        webhook_id: get_s(item, attr::WEBHOOK_ID)?,
        status: DedupeStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status `{status}`")))?,
        owner: get_s(item, attr::OWNER)?,
        lease_until_ms: get_n(item, attr::LEASE_UNTIL_MS)?,
        expires_at: get_n(item, attr::EXPIRES_AT)?,
        body_sha256: get_s(item, attr::BODY_SHA256)?,
    })
}

/// An owner-guarded write failed: its condition (another owner) or the store itself.
fn owner_error(condition_failed: bool, message: String) -> StoreError {
    if condition_failed {
        StoreError::NotOwner
    } else {
        StoreError::Unavailable(message)
    }
}

#[async_trait]
impl DedupeStore for DynamoDbDedupeStore {
    async fn claim(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(attr::WEBHOOK_ID, s(&req.webhook_id))
            .item(attr::STATUS, s(DedupeStatus::Pending.as_str()))
            .item(attr::OWNER, s(&req.owner))
            .item(attr::LEASE_UNTIL_MS, n(req.lease_until_ms))
            .item(attr::EXPIRES_AT, n(req.expires_at))
            .item(attr::BODY_SHA256, s(&req.body_sha256))
            .condition_expression(CLAIM_CONDITION)
            .expression_attribute_names("#id", attr::WEBHOOK_ID)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_names("#st", attr::STATUS)
            .expression_attribute_names("#lease", attr::LEASE_UNTIL_MS)
            .expression_attribute_values(":now_s", n(req.now_ms.div_euclid(1000)))
            .expression_attribute_values(":now_ms", n(req.now_ms))
            .expression_attribute_values(":pending", s(DedupeStatus::Pending.as_str()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(ClaimOutcome::Claimed),
            Err(err) => {
                let message = sdk_message(&err);
                match err.into_service_error() {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(ccf) => {
                        match ccf.item() {
                            Some(item) => Ok(ClaimOutcome::Existing(record_from_item(item)?)),
                            // Old DynamoDB-compatible stores may not return the item: read it.
                            None => self.read(&req.webhook_id).await?.map_or_else(
                                || Err(StoreError::Unavailable("claim conflicted but no record found".into())),
                                |r| Ok(ClaimOutcome::Existing(r)),
                            ),
                        }
                    }
                    _ => Err(StoreError::Unavailable(message)),
                }
            }
        }
    }

    async fn complete(
        &self,
        webhook_id: &str,
        owner: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::WEBHOOK_ID, s(webhook_id))
            .update_expression("SET #st = :enqueued, #msg = :msg")
            .condition_expression("#owner = :me")
            .expression_attribute_names("#st", attr::STATUS)
            .expression_attribute_names("#msg", attr::MESSAGE_ID)
            .expression_attribute_names("#owner", attr::OWNER)
            .expression_attribute_values(":enqueued", s(DedupeStatus::Enqueued.as_str()))
            .expression_attribute_values(":msg", s(message_id))
            .expression_attribute_values(":me", s(owner))
            .send()
            .await;
        result.map(|_| ()).map_err(|err| {
            let conflict = err
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception());
            owner_error(conflict, sdk_message(&err))
        })
    }

    async fn release(&self, webhook_id: &str, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(attr::WEBHOOK_ID, s(webhook_id))
            .condition_expression("#owner = :me AND #st = :pending")
            .expression_attribute_names("#owner", attr::OWNER)
            .expression_attribute_names("#st", attr::STATUS)
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":pending", s(DedupeStatus::Pending.as_str()))
            .send()
            .await;
        result.map(|_| ()).map_err(|err| {
            let conflict = err
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception());
            owner_error(conflict, sdk_message(&err))
        })
    }
}

impl DynamoDbDedupeStore {
    /// Strongly consistent read of one record (fallback when a conflict returns no item).
    pub async fn read(&self, webhook_id: &str) -> Result<Option<DedupeRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::WEBHOOK_ID, s(webhook_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(sdk_message(&e)))?;
        out.item().map(record_from_item).transpose()
    }
}
