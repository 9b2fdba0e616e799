//! Consumer Lambda (SQS, partial batch response): wiring only. The rules live in `gemini_hooks`.

mod event_handler;

use std::sync::Arc;

use gemini_hooks::adapters::aws::sqs::SqsEventQueue;
use gemini_hooks::adapters::telemetry::{LogFormat, init_logging};
use gemini_hooks::config::{ConsumerConfig, Env};
use gemini_hooks::wiring;
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging(LogFormat::from_lambda_env());
    let config = ConsumerConfig::from_env(&Env::process())
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let aws = wiring::aws_sdk_config(wiring::AwsTimeouts::CONSUMER).await;
    let deps = event_handler::Deps {
        consumer: Arc::new(
            wiring::aws_consumer(
                &config,
                &aws,
                wiring::http_client()?,
                wiring::Runtime::system(),
            )
            .await
            .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?,
        ),
        queue: SqsEventQueue::new(aws_sdk_sqs::Client::new(&aws), config.queue_url.clone()),
    };
    tracing::info!(results_table = %config.results_table, routes = config.routes.len(), "consumer configured");
    lambda_runtime::run(service_fn(|event| {
        event_handler::function_handler(&deps, event)
    }))
    .await
}
