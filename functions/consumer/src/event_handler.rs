//! SQS adapter: batch in, one use-case call, partial batch response out.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use gemini_hooks::adapters::aws::sqs::SqsEventQueue;
use gemini_hooks::usecases::consume::{Consumer, InboundMessage, retry_delay_secs};
use lambda_runtime::LambdaEvent;

/// What the handler needs, built once in `main`.
pub(crate) struct Deps {
    pub consumer: Arc<Consumer>,
    /// The events queue, to shorten the wait before a failed message is retried.
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
                    receipts.insert(id.clone(), (receipt, receive_count));
                }
                messages.push(InboundMessage {
                    id,
                    body: record.body.unwrap_or_default(),
                });
            }
        }
    }
    let failed = deps.consumer.handle_batch(messages, deadline_ms).await;
    let mut response = SqsBatchResponse::default();
    for id in failed {
        // Back off from 30 s instead of waiting out the queue's 15-minute visibility timeout.
        if let Some((receipt, count)) = receipts.get(&id)
            && let Err(e) = deps
                .queue
                .delay_redelivery(receipt, retry_delay_secs(*count))
                .await
        {
            tracing::warn!(message_id = %id, error = %e, "could not shorten the retry delay");
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}
