//! Composition helpers for the binaries: build the use cases from configuration and AWS
//! clients, once, at start-up (never per request).

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{ApiKeySource, ConfigError, GeminiConfig, ReceiverConfig, env};
use crate::gemini::ApiKey;
use crate::receive::Receiver;
use crate::secrets::{DEFAULT_TTL, RefreshingSecret, SecretsManagerSource, SigningSecretsRefresh};
use crate::store::dynamodb::DynamoDbDedupeStore;
use crate::store::sqs::SqsEventQueue;
use crate::telemetry::Metrics;
use crate::verify::WebhookVerifier;
use crate::verify::standard::parse_secret_list;

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

/// Reads the secret `arn` (named by the variable `name`) for a cold start; a failure is a
/// start-up error naming the variable, never the value.
pub async fn load_secret(
    aws: &aws_config::SdkConfig,
    name: &'static str,
    arn: &str,
    clock: SharedClock,
) -> Result<RefreshingSecret, ConfigError> {
    let source = SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(aws), arn);
    RefreshingSecret::load(Arc::new(source), clock, DEFAULT_TTL)
        .await
        .map_err(|e| ConfigError::Secret {
            name,
            reason: e.to_string(),
        })
}

/// The Gemini API key: the configured value, or the secret read now (cold start).
pub async fn gemini_api_key(
    config: &GeminiConfig,
    aws: &aws_config::SdkConfig,
) -> Result<ApiKey, ConfigError> {
    match &config.api_key {
        ApiKeySource::Value(key) => Ok(key.clone()),
        ApiKeySource::SecretsManager { arn } => {
            let secret =
                load_secret(aws, env::GEMINI_API_KEY_ARN, arn, Arc::new(SystemClock)).await?;
            Ok(ApiKey::new(secret.current().to_string()))
        }
    }
}

/// The receiver use case on DynamoDB and SQS, with EMF metrics on stdout. With
/// `WEBHOOK_SIGNING_SECRETS_ARN` the secret list is read now and refreshed on a TTL of `clock`.
pub async fn aws_receiver(
    config: &ReceiverConfig,
    aws: &aws_config::SdkConfig,
    http: reqwest::Client,
    clock: SharedClock,
) -> Result<Receiver, ConfigError> {
    let mut verifier_config = config.verifier.clone();
    let mut refresh = None;
    if let Some(arn) = &config.signing_secrets_arn {
        let name = env::WEBHOOK_SIGNING_SECRETS_ARN;
        let secret = load_secret(aws, name, arn, Arc::clone(&clock)).await?;
        let list = parse_secret_list(&secret.current()).map_err(|e| ConfigError::Invalid {
            name,
            reason: format!("the secret's value: {e}"),
        })?;
        verifier_config.secrets = Some(list);
        refresh = Some(Arc::new(SigningSecretsRefresh::new(secret)));
    }
    let receiver = Receiver::new(
        Arc::new(WebhookVerifier::from_config(&verifier_config, http)),
        Arc::new(DynamoDbDedupeStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            config.dedupe_table.clone(),
        )),
        Arc::new(SqsEventQueue::new(
            aws_sdk_sqs::Client::new(aws),
            config.queue_url.clone(),
        )),
        clock,
        config.limits,
    )
    .with_metrics(Metrics::lambda_stdout("receiver"));
    Ok(match refresh {
        Some(r) => receiver.with_secrets_refresh(r),
        None => receiver,
    })
}

/// Results stores on DynamoDB: the default table plus one per `ROUTES` entry.
fn dynamodb_routes(
    aws: &aws_config::SdkConfig,
    results_table: &str,
    routes_json: Option<&str>,
) -> Result<crate::consume::Routes, crate::config::ConfigError> {
    use crate::store::dynamodb_results::DynamoDbResultsStore;

    let ddb = aws_sdk_dynamodb::Client::new(aws);
    let default = Arc::new(DynamoDbResultsStore::new(ddb.clone(), results_table));
    crate::consume::Routes::from_config(routes_json, default, |table| {
        Arc::new(DynamoDbResultsStore::new(ddb.clone(), table))
    })
}

/// The consume use case on DynamoDB (results, with `ROUTES`) and SQS (continuations), with EMF
/// metrics on stdout.
pub async fn aws_consumer(
    config: &crate::config::ConsumerConfig,
    aws: &aws_config::SdkConfig,
    http: reqwest::Client,
) -> Result<crate::consume::Consumer, crate::config::ConfigError> {
    use crate::consume::{ConsumeSettings, Consumer};

    let routes = dynamodb_routes(aws, &config.results_table, config.routes.as_deref())?;
    Ok(Consumer::new(
        crate::gemini::GeminiClient::new(
            config
                .gemini
                .settings(gemini_api_key(&config.gemini, aws).await?),
            http,
        ),
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
pub async fn aws_reconciler(
    config: &crate::config::ReconcilerConfig,
    aws: &aws_config::SdkConfig,
    http: reqwest::Client,
) -> Result<crate::reconcile::Reconciler, crate::config::ConfigError> {
    use crate::enqueue_once::EnqueueOnce;

    let routes = dynamodb_routes(aws, &config.results_table, config.routes.as_deref())?;
    let clock = Arc::new(SystemClock);
    Ok(crate::reconcile::Reconciler::new(
        crate::gemini::GeminiClient::new(
            config
                .gemini
                .settings(gemini_api_key(&config.gemini, aws).await?),
            http,
        ),
        routes,
        EnqueueOnce::new(
            Arc::new(DynamoDbDedupeStore::new(
                aws_sdk_dynamodb::Client::new(aws),
                config.dedupe_table.clone(),
            )),
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
