//! SQS adapter: batch in, one use-case call, partial batch response out.

use std::convert::Infallible;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use gemini_hooks::consume::{Consumer, InboundMessage};
use lambda_runtime::LambdaEvent;

/// Handles a batch; every failed message is reported by its id so only it is retried
/// (requires `ReportBatchItemFailures` on the event source mapping).
pub(crate) async fn function_handler(
    consumer: &Arc<Consumer>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Infallible> {
    let deadline_ms = i64::try_from(event.context.deadline).ok();
    let mut messages = Vec::with_capacity(event.payload.records.len());
    for record in event.payload.records {
        match record.message_id.filter(|id| !id.is_empty()) {
            // An empty itemIdentifier would fail the whole batch; SQS always sends an id.
            None => tracing::error!("SQS record without a message id; skipped"),
            Some(id) => messages.push(InboundMessage {
                id,
                body: record.body.unwrap_or_default(),
            }),
        }
    }
    let failed = consumer.handle_batch(messages, deadline_ms).await;
    let mut response = SqsBatchResponse::default();
    for id in failed {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}
