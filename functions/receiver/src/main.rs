//! Receiver Lambda (function URL): wiring only. The rules live in `gemini_hooks`.

mod http_handler;

use gemini_hooks::adapters::telemetry::{LogFormat, init_logging};
use gemini_hooks::config::{Env, ReceiverConfig};
use gemini_hooks::wiring;
use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging(LogFormat::from_lambda_env());
    // Configuration errors stop the cold start with a message naming the variable.
    let config = ReceiverConfig::from_env(&Env::process())
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let aws = wiring::aws_sdk_config(wiring::AwsTimeouts::RECEIVER).await;
    let receiver = wiring::aws_receiver(
        &config,
        &aws,
        wiring::http_client()?,
        wiring::Runtime::system(),
    )
    .await
    .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    tracing::info!(
        static_secrets = config.verifier.secrets.as_ref().map_or(0, Vec::len),
        secrets_from_arn = config.signing_secrets_arn.is_some(),
        dynamic = config.verifier.jwt.is_some(),
        jwks_url = config
            .verifier
            .jwt
            .as_ref()
            .map_or("", |j| j.jwks.url.as_str()),
        tolerance_secs = config.verifier.tolerance_secs,
        "receiver configured"
    );
    lambda_http::run(service_fn(|request| {
        http_handler::function_handler(&receiver, request)
    }))
    .await
}
