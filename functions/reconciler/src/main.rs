//! Reconciler Lambda (EventBridge schedule): wiring only. The rules live in `gemini_hooks`.

mod event_handler;

use gemini_hooks::adapters::telemetry::{LogFormat, init_logging};
use gemini_hooks::config::{Env, ReconcilerConfig};
use gemini_hooks::wiring;
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging(LogFormat::from_lambda_env());
    let config = ReconcilerConfig::from_env(&Env::process())
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let aws = wiring::aws_sdk_config(wiring::AwsTimeouts::RECONCILER).await;
    let reconciler = wiring::aws_reconciler(
        &config,
        &aws,
        wiring::http_client()?,
        wiring::Runtime::system(),
    )
    .await
    .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    tracing::info!(results_table = %config.results_table, routes = config.routes.len(), "reconciler configured");
    lambda_runtime::run(service_fn(|event| {
        event_handler::function_handler(&reconciler, event)
    }))
    .await
}
