//! The composition root: the one place that builds use cases out of configuration and adapters,
//! once, at start-up (never per request). It receives the clock and the randomness it injects.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::aws::dynamodb_dedupe::DynamoDbDedupeStore;
use crate::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use crate::adapters::aws::eventbridge::EventBridgePublisher;
use crate::adapters::aws::s3_objects::S3ObjectStore;
use crate::adapters::aws::s3_payloads::S3PayloadStore;
use crate::adapters::aws::secrets_manager::SecretsManagerSource;
use crate::adapters::aws::sqs::MAX_MESSAGE_BYTES as SQS_MAX_MESSAGE_BYTES;
use crate::adapters::aws::sqs::SqsEventQueue;
use crate::adapters::gemini::{ApiKey, GeminiClient};
use crate::adapters::jwks::HttpJwks;
use crate::adapters::telemetry::emf_stdout;
use crate::config::{
    ApiKeySource, ConfigError, ConsumerConfig, GeminiConfig, ReceiverConfig, ReconcilerConfig,
    RouteTables, VerifierConfig, env,
};
use crate::domain::verify::standard::{StandardVerifier, parse_secret_list};
use crate::ports::clock::SharedClock;
use crate::ports::gemini::GeminiApi;
use crate::ports::ids::SharedIds;
use crate::ports::keys::KeySource;
use crate::ports::{EventQueue, ResultsStore};
use crate::usecases::consume::{Announcer, ConsumeSettings, Consumer};
use crate::usecases::enqueue_once::EnqueueOnce;
use crate::usecases::offload::OffloadingQueue;
use crate::usecases::receive::Receiver;
use crate::usecases::reconcile::Reconciler;
use crate::usecases::routes::Routes;
use crate::usecases::secrets::{DEFAULT_TTL, RefreshingSecret, SigningSecretsRefresh};
use crate::usecases::verify::{DynamicVerifier, WebhookVerifier};

/// The clock and randomness every use case gets: the system's in the binaries, fixed ones in
/// tests.
#[derive(Clone)]
pub struct Runtime {
    pub clock: SharedClock,
    pub ids: SharedIds,
}

impl Runtime {
    /// The wall clock and random v4 UUIDs.
    pub fn system() -> Self {
        Self {
            clock: Arc::new(crate::ports::clock::SystemClock),
            ids: Arc::new(crate::ports::ids::RandomIds),
        }
    }
}

/// Bounds on every AWS call a function makes, so a hung connection fails the call (and the
/// request or message it serves) instead of the whole invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    pub connect: Duration,
    /// One attempt (request sent, response read).
    pub attempt: Duration,
    /// The whole call, retries included.
    pub operation: Duration,
}

impl AwsTimeouts {
    /// The receiver answers within its 10 s timeout even if every call of the slowest path
    /// (token claim, payload upload, enqueue, completion: four in a row) used its whole
    /// operation budget; in-region calls take milliseconds.
    pub const RECEIVER: Self = Self {
        connect: Duration::from_secs(1),
        attempt: Duration::from_millis(1_500),
        operation: Duration::from_secs(2),
    };

    /// Consumer writes are also cut at the invocation's reserve (`ConsumeSettings`); one
    /// attempt stays under its deadline margin.
    pub const CONSUMER: Self = Self {
        connect: Duration::from_secs(2),
        attempt: Duration::from_secs(10),
        operation: Duration::from_secs(20),
    };

    /// The reconciler runs for minutes (300 s timeout) and makes few calls.
    pub const RECONCILER: Self = Self {
        connect: Duration::from_secs(2),
        attempt: Duration::from_secs(10),
        operation: Duration::from_secs(30),
    };

    fn config(self) -> aws_config::timeout::TimeoutConfig {
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }
}

/// Loads the AWS SDK configuration from the environment (honours `AWS_ENDPOINT_URL`), with
/// `timeouts` on every call.
pub async fn aws_sdk_config(timeouts: AwsTimeouts) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts.config())
        .load()
        .await
}

/// The HTTP client for outbound calls (JWKS, Gemini API): rustls, bounded connect time, and
/// redirects followed only within one origin. reqwest drops `Authorization` on a redirect to
/// another host but would send the Gemini key (`x-goog-api-key`) there: the client stops
/// instead, and the Gemini adapter follows such a redirect of a download itself, without it.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .last()
                .is_some_and(|prev| prev.origin() == attempt.url().origin());
            if attempt.previous().len() > 5 {
                attempt.error("more than 5 redirects")
            } else if same_origin {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("gemini-hooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The verifier of `config`; dynamic mode (when configured) takes its keys from `keys`, or from
/// the configured JWKS over HTTP.
pub fn webhook_verifier(
    config: &VerifierConfig,
    http: reqwest::Client,
    keys: Option<Arc<dyn KeySource>>,
) -> WebhookVerifier {
    let standard = config
        .secrets
        .clone()
        .map(|secrets| StandardVerifier::new(secrets, config.tolerance_secs));
    let dynamic = config.jwt.as_ref().map(|jwt| DynamicVerifier {
        rules: jwt.rules.clone(),
        keys: keys.unwrap_or_else(|| Arc::new(HttpJwks::new(jwt.jwks.clone(), http))),
    });
    WebhookVerifier::new(standard, dynamic)
}

/// The Gemini API over HTTP with `key`.
pub fn gemini_api(config: &GeminiConfig, key: ApiKey, http: reqwest::Client) -> Arc<dyn GeminiApi> {
    Arc::new(GeminiClient::new(config.settings(key), http))
}

/// Routes over the stores `make` builds for the default table and each routed table.
pub fn routes<E>(
    default: Arc<dyn ResultsStore>,
    tables: &RouteTables,
    mut make: impl FnMut(&str) -> Result<Arc<dyn ResultsStore>, E>,
) -> Result<Routes, E> {
    let groups = tables
        .iter()
        .map(|(group, table)| Ok((group.clone(), make(table)?)))
        .collect::<Result<Vec<_>, E>>()?;
    Ok(Routes::new(default, groups))
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
    clock: SharedClock,
) -> Result<ApiKey, ConfigError> {
    match &config.api_key {
        ApiKeySource::Value(key) => Ok(key.clone()),
        ApiKeySource::SecretsManager { arn } => {
            let secret = load_secret(aws, env::GEMINI_API_KEY_ARN, arn, clock).await?;
            Ok(ApiKey::new(secret.current().to_string()))
        }
    }
}

/// The receiver use case on DynamoDB and SQS, with EMF metrics on stdout. With
/// `WEBHOOK_SIGNING_SECRETS_ARN` the secret list is read now and refreshed on a TTL.
pub async fn aws_receiver(
    config: &ReceiverConfig,
    aws: &aws_config::SdkConfig,
    http: reqwest::Client,
    runtime: Runtime,
) -> Result<Receiver, ConfigError> {
    let mut verifier_config = config.verifier.clone();
    let mut refresh = None;
    if let Some(arn) = &config.signing_secrets_arn {
        let name = env::WEBHOOK_SIGNING_SECRETS_ARN;
        let secret = load_secret(aws, name, arn, Arc::clone(&runtime.clock)).await?;
        let list = parse_secret_list(&secret.current()).map_err(|e| ConfigError::Invalid {
            name,
            reason: format!("the secret's value: {e}"),
        })?;
        verifier_config.secrets = Some(list);
        refresh = Some(Arc::new(SigningSecretsRefresh::new(secret)));
    }
    let sqs: Arc<dyn EventQueue> = Arc::new(SqsEventQueue::new(
        aws_sdk_sqs::Client::new(aws),
        config.queue_url.clone(),
    ));
    let queue: Arc<dyn EventQueue> = match &config.payload_bucket {
        Some(bucket) => Arc::new(OffloadingQueue::new(
            sqs,
            Arc::new(S3PayloadStore::new(S3PayloadStore::client(aws), bucket)),
            SQS_MAX_MESSAGE_BYTES,
        )),
        None => sqs,
    };
    let receiver = Receiver::new(
        Arc::new(webhook_verifier(&verifier_config, http, None)),
        Arc::new(DynamoDbDedupeStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            config.dedupe_table.clone(),
        )),
        queue,
        runtime.clock,
        config.limits,
    )
    .with_ids(runtime.ids)
    .with_metrics(emf_stdout("receiver"));
    Ok(match refresh {
        Some(r) => receiver.with_secrets_refresh(r),
        None => receiver,
    })
}

/// Results stores on DynamoDB: the default table plus one per `ROUTES` entry, each writing with
/// `retention` (`RESULTS_RETENTION_DAYS`) by `clock`.
fn dynamodb_routes(
    aws: &aws_config::SdkConfig,
    results_table: &str,
    tables: &RouteTables,
    retention: Option<Duration>,
    clock: &SharedClock,
) -> Routes {
    let ddb = aws_sdk_dynamodb::Client::new(aws);
    let store = |table: &str| {
        DynamoDbResultsStore::new(ddb.clone(), table).with_retention(retention, Arc::clone(clock))
    };
    let default = Arc::new(store(results_table));
    let built: Result<Routes, std::convert::Infallible> =
        routes(default, tables, |table| Ok(Arc::new(store(table))));
    match built {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// The consume use case on DynamoDB (results, with `ROUTES`) and SQS (continuations), with EMF
/// metrics on stdout.
pub async fn aws_consumer(
    config: &ConsumerConfig,
    aws: &aws_config::SdkConfig,
    http: reqwest::Client,
    runtime: Runtime,
) -> Result<Consumer, ConfigError> {
    let key = gemini_api_key(&config.gemini, aws, Arc::clone(&runtime.clock)).await?;
    let consumer = Consumer::new(
        gemini_api(&config.gemini, key, http),
        dynamodb_routes(
            aws,
            &config.results_table,
            &config.routes,
            config.results_retention,
            &runtime.clock,
        ),
        Arc::new(SqsEventQueue::new(
            aws_sdk_sqs::Client::new(aws),
            config.queue_url.clone(),
        )),
        runtime.clock,
        ConsumeSettings {
            writes_in_flight: config.writes_in_flight,
            ..ConsumeSettings::default()
        },
    )
    .with_metrics(emf_stdout("consumer"));
    let consumer = match &config.events {
        Some(events) => consumer.with_announcer(
            Announcer::new(
                Arc::new(DynamoDbDedupeStore::new(
                    aws_sdk_dynamodb::Client::new(aws),
                    events.dedupe_table.clone(),
                )),
                Arc::new(EventBridgePublisher::new(
                    aws_sdk_eventbridge::Client::new(aws),
                    events.bus.clone(),
                )),
            )
            .with_ids(runtime.ids),
        ),
        None => consumer,
    };
    let consumer = match &config.output_bucket {
        Some(bucket) => consumer.with_video_store(Arc::new(S3ObjectStore::new(
            S3PayloadStore::client(aws),
            bucket,
        ))),
        None => {
            // Once per cold start: video jobs keep Gemini's links, which expire after 48 h.
            tracing::info!(
                variable = env::OUTPUT_BUCKET,
                "no output bucket: generated videos are not copied, only pointed at"
            );
            consumer
        }
    };
    Ok(match &config.payload_bucket {
        Some(bucket) => consumer.with_payloads(Arc::new(S3PayloadStore::new(
            S3PayloadStore::client(aws),
            bucket,
        ))),
        None => consumer,
    })
}

/// The reconcile use case: the consumer's results stores (with `ROUTES`), recovery ids claimed in
/// the dedupe table, synthetic events on the events queue, EMF metrics on stdout.
pub async fn aws_reconciler(
    config: &ReconcilerConfig,
    aws: &aws_config::SdkConfig,
    http: reqwest::Client,
    runtime: Runtime,
) -> Result<Reconciler, ConfigError> {
    let key = gemini_api_key(&config.gemini, aws, Arc::clone(&runtime.clock)).await?;
    let once = EnqueueOnce::new(
        Arc::new(DynamoDbDedupeStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            config.dedupe_table.clone(),
        )),
        Arc::new(SqsEventQueue::new(
            aws_sdk_sqs::Client::new(aws),
            config.queue_url.clone(),
        )),
        Arc::clone(&runtime.clock),
    )
    .with_ids(runtime.ids);
    Ok(Reconciler::new(
        gemini_api(&config.gemini, key, http),
        // The reconciler only reads results (it never writes a row or a job record).
        dynamodb_routes(
            aws,
            &config.results_table,
            &config.routes,
            None,
            &runtime.clock,
        ),
        once,
        runtime.clock,
        emf_stdout("reconciler"),
    )
    .with_late_batch_after(config.late_batch_after)
    .with_results_retention(config.results_retention))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message hands over when less than the margin is left; whatever single attempt is then
    /// running must still fit, or Lambda kills the whole batch.
    #[test]
    fn the_consumer_deadline_margin_covers_its_longest_single_attempt() {
        let margin = Duration::from_millis(
            u64::try_from(ConsumeSettings::default().deadline_margin_ms).unwrap_or(0),
        );
        let gemini = crate::adapters::gemini::GeminiSettings::new("k").request_timeout;
        let aws = AwsTimeouts::CONSUMER.attempt;
        assert!(
            margin > gemini && margin > aws,
            "{margin:?} vs {gemini:?}, {aws:?}"
        );
    }

    #[test]
    fn the_receivers_slowest_path_fits_its_timeout() {
        // template.yaml: ReceiverFunction Timeout 10 (s); four AWS calls in a row at most.
        assert!(AwsTimeouts::RECEIVER.operation * 4 < Duration::from_secs(10));
        assert!(AwsTimeouts::RECEIVER.attempt <= AwsTimeouts::RECEIVER.operation);
    }
}
