//! SQS adapter of the events queue.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::types::MessageAttributeValue;

use crate::domain::envelope::OutgoingMessage;
use crate::ports::{EventQueue, QueueError, check_size};

/// SQS's message size limit that every region accepts (256 KiB). Checked before sending so an
/// oversized envelope is a clear, non-retryable error rather than a generic failure.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// [`EventQueue`] on an SQS standard queue.
#[derive(Debug, Clone)]
pub struct SqsEventQueue {
    client: Client,
    queue_url: String,
}

impl SqsEventQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// The queue URL messages go to.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Makes a received message visible again after `seconds` (instead of the queue's whole
    /// visibility timeout), so a transient failure is retried with backoff.
    pub async fn delay_redelivery(
        &self,
        receipt_handle: &str,
        seconds: i32,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds.clamp(0, 43_200))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError::Unavailable(DisplayErrorContext(&e).to_string()))
    }
}

#[async_trait]
impl EventQueue for SqsEventQueue {
    async fn enqueue(&self, message: &OutgoingMessage) -> Result<String, QueueError> {
        let size = check_size(message, MAX_MESSAGE_BYTES)?;
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(&message.body);
        for (name, value) in &message.attributes {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| QueueError::Unavailable(e.to_string()))?;
            request = request.message_attributes(name, attribute);
        }
        match request.send().await {
            Ok(out) => Ok(out.message_id().unwrap_or_default().to_owned()),
            Err(err) => {
                let code = err.code().unwrap_or_default().to_owned();
                let message = DisplayErrorContext(&err).to_string();
                if code.contains("InvalidParameterValue") && message.contains("too long") {
                    Err(QueueError::TooLarge { bytes: size })
                } else {
                    Err(QueueError::Unavailable(message))
                }
            }
        }
    }
}
