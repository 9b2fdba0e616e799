//! SQS adapter: batch in, one use-case call, partial batch response out.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use gemini_hooks::adapters::aws::sqs::SqsEventQueue;
use gemini_hooks::usecases::consume::{Consumer, InboundMessage, RetrySchedule};
use lambda_runtime::LambdaEvent;

/// What the handler needs, built once in `main`.
pub(crate) struct Deps {
    pub consumer: Arc<Consumer>,
    /// The events queue, to set when a failed message is handed out again.
    pub queue: SqsEventQueue,
}

/// Handles a batch; every failed message is reported by its id so only it is retried
/// (requires `ReportBatchItemFailures` on the event source mapping).
pub(crate) async fn function_handler(
    deps: &Deps,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Infallible> {
    let deadline_ms = i64::try_from(event.context.deadline).ok();
    let mut messages = Vec::with_capacity(event.payload.records.len());
    let mut receipts = HashMap::new();
    for record in event.payload.records {
        match record.message_id.filter(|id| !id.is_empty()) {
            // An empty itemIdentifier would fail the whole batch; SQS always sends an id.
            None => tracing::error!("SQS record without a message id; skipped"),
            Some(id) => {
                let receive_count = record
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|c| c.parse::<u32>().ok())
                    .unwrap_or(1);
                if let Some(receipt) = record.receipt_handle {
                    receipts.insert(id.clone(), receipt);
                }
                messages.push(InboundMessage {
                    id,
                    body: record.body.unwrap_or_default(),
                    receive_count,
                });
            }
        }
    }
    let results = deps
        .consumer
        .handle_batch(messages, deadline_ms, RetrySchedule::LAMBDA)
        .await;
    let mut response = SqsBatchResponse::default();
    for (id, disposition) in results {
        if !disposition.is_failure() {
            continue;
        }
        // A transient failure comes back after its backoff, poison at once (so it reaches the
        // DLQ after its last receive), instead of waiting out the 15-minute visibility timeout.
        let delay = i32::try_from(disposition.redelivery_delay().as_secs()).unwrap_or(i32::MAX);
        if let Some(receipt) = receipts.get(&id)
            && let Err(e) = deps.queue.delay_redelivery(receipt, delay).await
        {
            tracing::warn!(message_id = %id, error = %e, "could not set the retry delay");
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}
