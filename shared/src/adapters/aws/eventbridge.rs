//! EventBridge adapter of [`JobEventPublisher`]: one `PutEvents` entry per downstream event on
//! the configured bus (`EVENT_BUS_NAME`), `source` and `detail-type` as `domain::job_events`
//! defines them.

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::domain::job_events::{DETAIL_TYPE, JobFinished, SOURCE};
use crate::ports::job_events::{JobEventPublisher, PublishError};

/// Error codes (of the call or of the entry) that say the event itself is unacceptable; any
/// other failure may pass on a later attempt (a bus created late, throttling, permissions).
const REFUSED_CODES: [&str; 3] = ["ValidationException", "MalformedDetail", "InvalidArgument"];

/// [`JobEventPublisher`] on one EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    client: Client,
    bus: String,
}

impl EventBridgePublisher {
    /// Publishes on `bus` (a name or an ARN, as `PutEvents` accepts).
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    pub fn bus(&self) -> &str {
        &self.bus
    }
}

fn classify(code: Option<&str>, message: String) -> PublishError {
    if code.is_some_and(|c| REFUSED_CODES.contains(&c)) {
        PublishError::Refused(message)
    } else {
        PublishError::Unavailable(message)
    }
}

#[async_trait]
impl JobEventPublisher for EventBridgePublisher {
    async fn publish(&self, event: &JobFinished) -> Result<String, PublishError> {
        let detail = event
            .detail_json()
            .map_err(|e| PublishError::Refused(format!("detail: {e}")))?;
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(DETAIL_TYPE)
            .detail(detail)
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| {
                let code = e.code().map(str::to_owned);
                classify(
                    code.as_deref(),
                    format!("PutEvents on {}: {}", self.bus, DisplayErrorContext(&e)),
                )
            })?;
        // PutEvents answers 200 with per-entry failures; one entry was sent.
        let Some(result) = out.entries().first() else {
            return Err(PublishError::Unavailable(format!(
                "PutEvents on {} answered without entries",
                self.bus
            )));
        };
        if out.failed_entry_count() > 0 || result.error_code().is_some() {
            return Err(classify(
                result.error_code(),
                format!(
                    "PutEvents on {}: {} ({})",
                    self.bus,
                    result.error_code().unwrap_or("failed"),
                    result.error_message().unwrap_or("no message")
                ),
            ));
        }
        Ok(result.event_id().unwrap_or_default().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_malformed_event_is_refused_for_good() {
        for code in REFUSED_CODES {
            assert!(matches!(
                classify(Some(code), String::new()),
                PublishError::Refused(_)
            ));
        }
        for code in [
            Some("ResourceNotFoundException"),
            Some("ThrottlingException"),
            Some("AccessDeniedException"),
            None,
        ] {
            assert!(matches!(
                classify(code, String::new()),
                PublishError::Unavailable(_)
            ));
        }
    }
}
