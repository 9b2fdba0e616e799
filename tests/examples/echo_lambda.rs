//! A minimal `lambda_runtime` function that proves the fake Runtime API end to end.
//!
//! Returns its payload under `echo` with the invocation context. Payload switches:
//! `"fail": true` returns an error, `"panic": true` panics (the runtime reports it as an
//! error), `"sleep_ms": N` delays the answer (timeouts). Logs go to stderr.

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn, tracing};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber_with_writer(std::io::stderr);
    tracing::info!("echo_lambda starting");
    lambda_runtime::run(service_fn(handle)).await
}

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, ctx) = event.into_parts();
    tracing::info!(request_id = %ctx.request_id, "echo invoked");
    if let Some(ms) = payload.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if payload.get("panic") == Some(&Value::Bool(true)) {
        panic!("echo_lambda asked to panic");
    }
    if payload.get("fail") == Some(&Value::Bool(true)) {
        tracing::warn!(request_id = %ctx.request_id, "failing on request");
        return Err("echo_lambda asked to fail".into());
    }
    Ok(json!({
        "echo": payload,
        "request_id": ctx.request_id,
        "deadline_ms": ctx.deadline,
        "function_arn": ctx.invoked_function_arn,
        "function_name": ctx.env_config.function_name,
        "memory_mb": ctx.env_config.memory,
    }))
}
