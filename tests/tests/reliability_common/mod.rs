//! Helpers shared by the `reliability_*` suites (issue #6 items 1–3): a moto dedupe table and
//! queue, receivers on them, state snapshots, and the Lambda SQS event a poller would send.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use gemini_hooks::adapters::aws::dynamodb_dedupe::DynamoDbDedupeStore;
use gemini_hooks::adapters::aws::sqs::SqsEventQueue;
use gemini_hooks::config::ReceiveLimits;
use gemini_hooks::ports::clock::SharedClock;
use gemini_hooks::usecases::receive::Receiver;
use gemini_hooks::usecases::verify::WebhookVerifier;
use gemini_hooks_tests::moto::{self, TestQueue};
use serde_json::{Value, json};

pub type Item = HashMap<String, AttributeValue>;

/// Wall-clock epoch seconds (for the real binaries, which use the system clock).
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Wall-clock epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// One dedupe table and one events queue (with its DLQ) on moto, named uniquely.
pub struct AwsStack {
    pub ddb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub table: String,
    pub queue_name: String,
    pub queue: TestQueue,
}

impl AwsStack {
    pub async fn new(prefix: &str, visibility_secs: u32) -> Self {
        let ddb = moto::dynamodb().await;
        let sqs = moto::sqs().await;
        let table = moto::unique_name(&format!("{prefix}-dedupe"));
        moto::create_dedupe_table(&ddb, &table).await;
        let queue_name = moto::unique_name(&format!("{prefix}-events"));
        let queue = moto::create_queue(&sqs, &queue_name, 5, visibility_secs).await;
        Self {
            ddb,
            sqs,
            table,
            queue_name,
            queue,
        }
    }

    /// A receive use case on this table and queue with its own, freshly configured AWS
    /// clients (as a separate process would have).
    pub async fn receiver(
        &self,
        verifier: Arc<WebhookVerifier>,
        clock: SharedClock,
        limits: ReceiveLimits,
    ) -> Receiver {
        let ddb = moto::dynamodb().await;
        let sqs = moto::sqs().await;
        Receiver::new(
            verifier,
            Arc::new(DynamoDbDedupeStore::new(ddb, self.table.clone())),
            Arc::new(SqsEventQueue::new(sqs, self.queue.url.clone())),
            clock,
            limits,
        )
    }

    /// Every item of the dedupe table (strongly consistent scan, all pages).
    pub async fn dedupe_items(&self) -> Vec<Item> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .ddb
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .unwrap_or_else(|e| panic!("scan {}: {e:?}", self.table));
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return items,
            }
        }
    }

    /// The dedupe item of `id`, if any.
    pub async fn dedupe_item(&self, id: &str) -> Option<Item> {
        self.ddb
            .get_item()
            .table_name(&self.table)
            .key("webhook_id", AttributeValue::S(id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get_item: {e:?}"))
            .item
    }

    /// Every visible message (left in flight, not deleted).
    pub async fn messages(&self) -> Vec<aws_sdk_sqs::types::Message> {
        moto::drain(&self.sqs, &self.queue.url).await
    }

    /// `ApproximateNumberOfMessages` + `…NotVisible`: everything on the queue, without receiving.
    pub async fn queue_depth(&self) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get_queue_attributes: {e:?}"));
        let attrs = out.attributes.unwrap_or_default();
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|a| {
            attrs
                .get(a)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_default()
        })
        .sum()
    }

    /// Deletes received messages (what Lambda does after a successful batch).
    pub async fn delete(&self, messages: &[aws_sdk_sqs::types::Message]) {
        for m in messages {
            if let Some(handle) = m.receipt_handle() {
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue.url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("delete_message: {e:?}"));
            }
        }
    }
}

/// A string attribute of a DynamoDB item.
pub fn item_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// A numeric attribute of a DynamoDB item.
pub fn item_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

/// The SQS event Lambda's poller sends the consumer for `messages`.
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let receives = m
                .attributes()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                })
                .cloned()
                .unwrap_or_else(|| "1".to_owned());
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": {"ApproximateReceiveCount": receives, "SentTimestamp": "1795000000000",
                               "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1795000000001"},
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// `(statusCode, parsed JSON body, headers)` of a function URL response.
pub fn url_reply(response: &Value) -> (u16, Value, Value) {
    let status = response["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(0);
    let body = response["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body, response["headers"].clone())
}

/// The message ids a consumer response reports as failed.
pub fn failed_ids(response: &Value) -> Vec<String> {
    let mut ids: Vec<String> = response["batchItemFailures"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}
