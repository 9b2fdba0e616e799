//! Composition helpers for the binaries: build the use cases from configuration and AWS
//! clients, once, at start-up (never per request).

use std::sync::Arc;
use std::time::Duration;

use crate::clock::SystemClock;
use crate::config::ReceiverConfig;
use crate::receive::Receiver;
use crate::store::dynamodb::DynamoDbDedupeStore;
use crate::store::sqs::SqsEventQueue;
use crate::verify::WebhookVerifier;

/// Loads the AWS SDK configuration from the environment (honours `AWS_ENDPOINT_URL`).
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// The HTTP client for outbound calls (JWKS, Gemini API): rustls, bounded connect time.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("gemini-hooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The receiver use case on DynamoDB and SQS.
pub fn aws_receiver(
    config: &ReceiverConfig,
    aws: &aws_config::SdkConfig,
    http: reqwest::Client,
) -> Receiver {
    Receiver::new(
        Arc::new(WebhookVerifier::from_config(&config.verifier, http)),
        Arc::new(DynamoDbDedupeStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            config.dedupe_table.clone(),
        )),
        Arc::new(SqsEventQueue::new(
            aws_sdk_sqs::Client::new(aws),
            config.queue_url.clone(),
        )),
        Arc::new(SystemClock),
        config.limits,
    )
}
