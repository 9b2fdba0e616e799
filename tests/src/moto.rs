//! Helpers for tests that talk to the moto server started by `scripts/test.sh`.
//!
//! moto speaks the real AWS wire protocol, so the production adapters are exercised unchanged.
//! Each test creates its own uniquely named tables and queues, so tests can run in parallel
//! against one server without resetting it.

use std::fmt::Display;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};

/// Attribute holding the DynamoDB TTL (epoch seconds) on both tables (`TimeToLiveSpecification` in template.yaml).
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// Upper bound on `drain` rounds, so a queue that never empties cannot hang a test.
const DRAIN_MAX_ROUNDS: usize = 100;

/// AWS config from the default loader, which honours `AWS_ENDPOINT_URL` and the static test
/// credentials exported by `scripts/test.sh`.
///
/// # Panics
/// If `AWS_ENDPOINT_URL` is unset: without moto these tests would either fail obscurely or
/// reach real AWS, and they must never silently skip.
pub async fn sdk_config() -> SdkConfig {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none_or(|v| v.is_empty()) {
        panic!("AWS_ENDPOINT_URL is not set: run the suite through scripts/test.sh (moto server)");
    }
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// DynamoDB client for moto.
pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config().await)
}

/// SQS client for moto.
pub async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&sdk_config().await)
}

/// S3 client for moto, addressed as the receiver and consumer address their bucket.
pub async fn s3() -> aws_sdk_s3::Client {
    gemini_hooks::adapters::aws::s3_payloads::S3PayloadStore::client(&sdk_config().await)
}

/// EventBridge client for moto.
pub async fn eventbridge() -> aws_sdk_eventbridge::Client {
    aws_sdk_eventbridge::Client::new(&sdk_config().await)
}

/// Creates an event bus (the template's `JobEventBus`).
pub async fn create_event_bus(c: &aws_sdk_eventbridge::Client, name: &str) {
    sdk(
        c.create_event_bus().name(name).send().await,
        &format!("CreateEventBus {name}"),
    );
}

/// Creates a queue and a rule on `bus` that sends it every downstream event (`source` and
/// `detail-type` as a user's rule matches them, README "Downstream events"), so a test can
/// read what was published. Returns the queue URL.
pub async fn observe_job_events(
    eb: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    bus: &str,
) -> String {
    let queue = create_queue(sqs, &unique_name("observed"), 10, 30).await;
    let rule = unique_name("on-job-finished");
    let pattern = serde_json::json!({
        "source": [gemini_hooks::domain::job_events::SOURCE],
        "detail-type": [gemini_hooks::domain::job_events::DETAIL_TYPE],
    });
    sdk(
        eb.put_rule()
            .name(&rule)
            .event_bus_name(bus)
            .event_pattern(pattern.to_string())
            .send()
            .await,
        &format!("PutRule {rule}"),
    );
    let target = ok(
        aws_sdk_eventbridge::types::Target::builder()
            .id("observer")
            .arn(&queue.arn)
            .build(),
        "build Target",
    );
    let out = sdk(
        eb.put_targets()
            .rule(&rule)
            .event_bus_name(bus)
            .targets(target)
            .send()
            .await,
        &format!("PutTargets {rule}"),
    );
    assert_eq!(out.failed_entry_count(), 0, "PutTargets {rule}: {out:?}");
    queue.url
}

/// Every event delivered to an observing queue since the last call (received and deleted),
/// as the JSON EventBridge sent.
pub async fn take_events(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    for m in drain(sqs, url).await {
        if let Some(handle) = m.receipt_handle() {
            sdk(
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(handle)
                    .send()
                    .await,
                "DeleteMessage",
            );
        }
        let body = m.body().unwrap_or_default();
        match serde_json::from_str(body) {
            Ok(v) => events.push(v),
            Err(e) => panic!("an observed event is not JSON ({e}): {body}"),
        }
    }
    events
}

/// Creates a bucket (the template's `PayloadBucket`).
pub async fn create_bucket(c: &aws_sdk_s3::Client, name: &str) {
    sdk(
        c.create_bucket().bucket(name).send().await,
        &format!("CreateBucket {name}"),
    );
}

/// The keys in `bucket`.
pub async fn bucket_keys(c: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let out = sdk(
        c.list_objects_v2().bucket(bucket).send().await,
        &format!("ListObjectsV2 {bucket}"),
    );
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// `prefix` plus a random suffix, e.g. `dedupe-3f2a9c0d41b7`.
///
/// Valid as a DynamoDB table and an SQS queue name as long as `prefix` uses only
/// `[A-Za-z0-9_-]` and stays under 60 characters (queue names max out at 80, and
/// `create_queue` appends `-dlq`).
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// Key schema of the receiver's dedupe table (template.yaml): PK `webhook_id` (S).
pub const DEDUPE_KEYS: &[(&str, KeyType)] = &[("webhook_id", KeyType::Hash)];

/// Key schema of the results table (template.yaml): PK `pk` (S), SK `sk` (S).
pub const RESULTS_KEYS: &[(&str, KeyType)] = &[("pk", KeyType::Hash), ("sk", KeyType::Range)];

/// Upper bound on `DescribeTable` polls while a new table is CREATING (moto is ACTIVE at once;
/// dynalite, started with `--createTableMs 0`, too).
const ACTIVE_MAX_POLLS: usize = 200;

/// Creates the receiver's dedupe table as the template does: PK `webhook_id` (S),
/// on-demand billing, TTL on `expires_at`.
pub async fn create_dedupe_table(c: &aws_sdk_dynamodb::Client, name: &str) {
    create_keyed_table(c, name, DEDUPE_KEYS, false, "moto").await;
    enable_ttl(c, name, "moto").await;
}

/// Creates the results table as the template does: PK `pk` (S), SK `sk` (S), the jobs index,
/// on-demand billing, TTL on `expires_at`.
pub async fn create_results_table(c: &aws_sdk_dynamodb::Client, name: &str) {
    create_keyed_table(c, name, RESULTS_KEYS, true, "moto").await;
    enable_ttl(c, name, "moto").await;
}

/// A results table as a user may have created a `ROUTES` table: without the jobs index.
pub async fn create_results_table_without_jobs_index(c: &aws_sdk_dynamodb::Client, name: &str) {
    create_keyed_table(c, name, RESULTS_KEYS, false, "moto").await;
    enable_ttl(c, name, "moto").await;
}

/// The results table's index of job records (template.yaml `jobs-by-update`).
fn jobs_index() -> GlobalSecondaryIndex {
    let key = |name: &str, key_type: KeyType| {
        ok(
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build(),
            "build KeySchemaElement",
        )
    };
    ok(
        GlobalSecondaryIndex::builder()
            .index_name(gemini_hooks::adapters::aws::dynamodb_results::JOBS_INDEX)
            .key_schema(key("sk", KeyType::Hash))
            .key_schema(key("updated_at_ms", KeyType::Range))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build(),
        "build GlobalSecondaryIndex",
    )
}

/// `CreateTable` with string key attributes (and the jobs index of a results table, when
/// `jobs_index`) and on-demand billing, then waits until the table is ACTIVE. `backend` names
/// the emulator in failure messages.
pub(crate) async fn create_keyed_table(
    c: &aws_sdk_dynamodb::Client,
    name: &str,
    keys: &[(&str, KeyType)],
    with_jobs_index: bool,
    backend: &str,
) {
    let mut req = c
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    if with_jobs_index {
        req = req
            .attribute_definitions(ok(
                AttributeDefinition::builder()
                    .attribute_name("updated_at_ms")
                    .attribute_type(ScalarAttributeType::N)
                    .build(),
                "build AttributeDefinition",
            ))
            .global_secondary_indexes(jobs_index());
    }
    for (attr, key_type) in keys {
        req = req
            .attribute_definitions(ok(
                AttributeDefinition::builder()
                    .attribute_name(*attr)
                    .attribute_type(ScalarAttributeType::S)
                    .build(),
                "build AttributeDefinition",
            ))
            .key_schema(ok(
                KeySchemaElement::builder()
                    .attribute_name(*attr)
                    .key_type(key_type.clone())
                    .build(),
                "build KeySchemaElement",
            ));
    }
    sdk_on(req.send().await, &format!("CreateTable {name}"), backend);
    for _ in 0..ACTIVE_MAX_POLLS {
        let out = sdk_on(
            c.describe_table().table_name(name).send().await,
            &format!("DescribeTable {name}"),
            backend,
        );
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("table {name} on {backend} still not ACTIVE after {ACTIVE_MAX_POLLS} polls");
}

/// `UpdateTimeToLive` on [`TTL_ATTRIBUTE`], as the template declares.
pub(crate) async fn enable_ttl(c: &aws_sdk_dynamodb::Client, name: &str, backend: &str) {
    sdk_on(
        c.update_time_to_live()
            .table_name(name)
            .time_to_live_specification(ok(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build(),
                "build TimeToLiveSpecification",
            ))
            .send()
            .await,
        &format!("UpdateTimeToLive {name}"),
        backend,
    );
}

/// A queue created by [`create_queue`], with its dead-letter queue.
#[derive(Debug, Clone)]
pub struct TestQueue {
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
}

/// Creates `<name>-dlq` and `<name>` with a RedrivePolicy moving a message to the DLQ after
/// `max_receive_count` receives, and the given visibility timeout.
pub async fn create_queue(
    c: &aws_sdk_sqs::Client,
    name: &str,
    max_receive_count: u32,
    visibility_secs: u32,
) -> TestQueue {
    let dlq_name = format!("{name}-dlq");
    let dlq_url = queue_url(
        sdk(
            c.create_queue()
                .queue_name(&dlq_name)
                .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
                .send()
                .await,
            &format!("CreateQueue {dlq_name}"),
        )
        .queue_url(),
        &dlq_name,
    );
    let dlq_arn = queue_arn(c, &dlq_url).await;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count.to_string(),
    });
    let url = queue_url(
        sdk(
            c.create_queue()
                .queue_name(name)
                .attributes(
                    QueueAttributeName::VisibilityTimeout,
                    visibility_secs.to_string(),
                )
                .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
                .send()
                .await,
            &format!("CreateQueue {name}"),
        )
        .queue_url(),
        name,
    );
    let arn = queue_arn(c, &url).await;
    TestQueue { url, arn, dlq_url }
}

fn queue_url(url: Option<&str>, name: &str) -> String {
    match url {
        Some(u) => u.to_owned(),
        None => panic!("CreateQueue {name} returned no QueueUrl"),
    }
}

async fn queue_arn(c: &aws_sdk_sqs::Client, url: &str) -> String {
    let out = sdk(
        c.get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await,
        &format!("GetQueueAttributes {url}"),
    );
    match out
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
    {
        Some(arn) => arn.clone(),
        None => panic!("GetQueueAttributes {url} returned no QueueArn"),
    }
}

/// Receives every currently visible message (with all system and message attributes) until a
/// receive comes back empty. Nothing is deleted: received messages stay in flight for the
/// queue's visibility timeout, so a later receive will not see them again before that.
pub async fn drain(c: &aws_sdk_sqs::Client, url: &str) -> Vec<Message> {
    let mut all = Vec::new();
    for _ in 0..DRAIN_MAX_ROUNDS {
        let out = sdk(
            c.receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await,
            &format!("ReceiveMessage {url}"),
        );
        let batch = out.messages.unwrap_or_default();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
    panic!(
        "drain({url}): queue still not empty after {DRAIN_MAX_ROUNDS} rounds ({} messages)",
        all.len()
    );
}

/// Unwraps an SDK result, panicking with the full error context (Display alone says only
/// "service error").
fn sdk<T, E>(r: Result<T, E>, what: &str) -> T
where
    E: std::error::Error,
{
    sdk_on(r, what, "moto")
}

/// [`sdk`] for any emulator: `backend` names it in the panic message.
pub(crate) fn sdk_on<T, E>(r: Result<T, E>, what: &str, backend: &str) -> T
where
    E: std::error::Error,
{
    match r {
        Ok(v) => v,
        Err(e) => panic!(
            "{what} failed against {backend}: {}",
            DisplayErrorContext(&e)
        ),
    }
}

fn ok<T, E: Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Creates a CloudFormation stack whose template declares only `outputs` (around one
/// placeholder resource): what `--stack NAME` reads of a deployed template.yaml.
pub async fn create_output_stack(name: &str, outputs: &[(&str, &str)]) {
    let cfn = aws_sdk_cloudformation::Client::new(&sdk_config().await);
    let outputs: serde_json::Map<String, serde_json::Value> = outputs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::json!({"Value": v})))
        .collect();
    let template = serde_json::json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": outputs,
    });
    sdk(
        cfn.create_stack()
            .stack_name(name)
            .template_body(template.to_string())
            .send()
            .await,
        &format!("CreateStack {name}"),
    );
}

/// Every message on `url`, deleted from it: the bodies, in receive order.
pub async fn take_bodies(c: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    for m in drain(c, url).await {
        if let Some(handle) = m.receipt_handle() {
            // A leftover would only be received again by a later drain of the same test.
            let _ = c
                .delete_message()
                .queue_url(url)
                .receipt_handle(handle)
                .send()
                .await;
        }
        bodies.push(m.body().unwrap_or_default().to_owned());
    }
    bodies
}
