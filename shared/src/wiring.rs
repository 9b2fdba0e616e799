//! Composition helpers for the binaries: build the use cases from configuration and AWS
//! clients, once, at start-up (never per request).

use std::sync::Arc;
use std::time::Duration;

use crate::clock::SystemClock;
use crate::config::ReceiverConfig;
use crate::receive::Receiver;
use crate::store::dynamodb::DynamoDbDedupeStore;
use crate::store::sqs::SqsEventQueue;
use crate::telemetry::Metrics;
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

/// The receiver use case on DynamoDB and SQS, with EMF metrics on stdout.
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
    .with_metrics(Metrics::lambda_stdout("receiver"))
}

/// The consume use case on DynamoDB (results, with `ROUTES`) and SQS (continuations), with EMF
/// metrics on stdout.
pub fn aws_consumer(
    config: &crate::config::ConsumerConfig,
    aws: &aws_config::SdkConfig,
    http: reqwest::Client,
) -> Result<crate::consume::Consumer, crate::config::ConfigError> {
    use crate::consume::{ConsumeSettings, Consumer, Routes};
    use crate::store::dynamodb_results::DynamoDbResultsStore;

    let ddb = aws_sdk_dynamodb::Client::new(aws);
    let default = Arc::new(DynamoDbResultsStore::new(
        ddb.clone(),
        config.results_table.clone(),
    ));
    let routes = Routes::from_config(config.routes.as_deref(), default, |table| {
        Arc::new(DynamoDbResultsStore::new(ddb.clone(), table))
    })?;
    Ok(Consumer::new(
        crate::gemini::GeminiClient::new(config.gemini.settings(), http),
        routes,
        Arc::new(SqsEventQueue::new(
            aws_sdk_sqs::Client::new(aws),
            config.queue_url.clone(),
        )),
        Arc::new(SystemClock),
        ConsumeSettings::default(),
    )
    .with_metrics(Metrics::lambda_stdout("consumer")))
}

/// The reconcile use case: the consumer's results stores (with `ROUTES`), recovery ids claimed in
/// the dedupe table, synthetic events on the events queue, EMF metrics on stdout.
pub fn aws_reconciler(
    config: &crate::config::ReconcilerConfig,
    aws: &aws_config::SdkConfig,
    http: reqwest::Client,
) -> Result<crate::reconcile::Reconciler, crate::config::ConfigError> {
    use crate::consume::Routes;
    use crate::enqueue_once::EnqueueOnce;
    use crate::store::dynamodb_results::DynamoDbResultsStore;

    let ddb = aws_sdk_dynamodb::Client::new(aws);
    let default = Arc::new(DynamoDbResultsStore::new(
        ddb.clone(),
        config.results_table.clone(),
    ));
    let routes = Routes::from_config(config.routes.as_deref(), default, |table| {
        Arc::new(DynamoDbResultsStore::new(ddb.clone(), table))
    })?;
    let clock = Arc::new(SystemClock);
    Ok(crate::reconcile::Reconciler::new(
        crate::gemini::GeminiClient::new(config.gemini.settings(), http),
        routes,
        EnqueueOnce::new(
            Arc::new(DynamoDbDedupeStore::new(ddb, config.dedupe_table.clone())),
            Arc::new(SqsEventQueue::new(
                aws_sdk_sqs::Client::new(aws),
                config.queue_url.clone(),
            )),
            clock.clone(),
        ),
        clock,
        Metrics::lambda_stdout("reconciler"),
    ))
}
