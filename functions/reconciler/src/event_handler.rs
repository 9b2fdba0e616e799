//! Scheduled-event adapter: options from the event, one use-case call, a summary out.
//!
//! The payload is taken as plain JSON: an EventBridge schedule sends its event envelope (options
//! under `detail`), or, when the rule sets `Input`, exactly that JSON (options at the top level).

use gemini_hooks::usecases::reconcile::{ReconcileOptions, Reconciler, WebhookCheck};
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};

/// Why an invocation is reported as failed (Lambda's `Errors` metric; EventBridge retries it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandlerError {
    #[error(transparent)]
    Reconcile(#[from] gemini_hooks::usecases::reconcile::ReconcileError),
    #[error("{0} batches could not be reconciled; they are retried on the next run")]
    Incomplete(u64),
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match &e {
            HandlerError::Reconcile(gemini_hooks::usecases::reconcile::ReconcileError::Input(
                _,
            )) => "InvalidInput",
            HandlerError::Reconcile(_) => "ListFailed",
            HandlerError::Incomplete(_) => "Incomplete",
        };
        Self {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// Runs one reconcile pass for a scheduled (or manual) invocation.
pub(crate) async fn function_handler(
    reconciler: &Reconciler,
    event: LambdaEvent<Value>,
) -> Result<Value, HandlerError> {
    let options = ReconcileOptions::from_event(&event.payload)
        .inspect_err(|e| tracing::error!(error = %e, "invalid scheduled event"))?;
    let report = reconciler
        .run(&options)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "reconcile run failed"))?;
    tracing::info!(
        pages = report.pages,
        listed = report.listed,
        scanned = report.scanned,
        handled = report.handled,
        in_progress = report.in_progress,
        recovered = report.recovered.len(),
        already_recovered = report.already_recovered,
        failures = report.failures,
        truncated = report.truncated,
        late = report.late.len(),
        "reconcile run finished"
    );
    if report.failures > 0 {
        return Err(HandlerError::Incomplete(report.failures));
    }
    // A failed webhook check is in the summary (and its metric), never an invocation error: the
    // recoveries above still happened.
    let webhooks = match &report.webhooks {
        WebhookCheck::Checked { listed, disabled } => {
            json!({"listed": listed, "disabled": disabled, "check_failed": null})
        }
        WebhookCheck::Failed { reason } => {
            json!({"listed": null, "disabled": null, "check_failed": reason})
        }
    };
    Ok(json!({
        "pages": report.pages,
        "listed": report.listed,
        "scanned": report.scanned,
        "handled": report.handled,
        "in_progress": report.in_progress,
        "recovered": report.recovered,
        "already_recovered": report.already_recovered,
        "truncated": report.truncated,
        "late": report.late,
        "webhooks": webhooks,
    }))
}
