//! The receiver's HTTP contract (the table in the README), independent of the transport: the Lambda function
//! URL handler and the local `gemini-hooks dev` server both answer through [`handle`].

use http::{HeaderMap, Method};
use serde_json::json;
use tracing::Instrument;

use crate::domain::verify::FailureClass;
use crate::ports::QueueError;
use crate::ports::metrics::{Metrics, metric};
use crate::usecases::receive::{Delivery, Receipt, ReceiveError, Receiver};

/// Seconds a sender should wait after a 503 (our own dependency failed).
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// A transport-neutral HTTP answer with a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl HttpReply {
    fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".to_owned())],
            body: body.to_string(),
        }
    }

    fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// 405 for anything but POST.
    pub fn method_not_allowed() -> Self {
        Self::json(
            405,
            json!({"error": "method_not_allowed", "message": "webhook deliveries must be POSTed"}),
        )
        .with_header("allow", "POST".to_owned())
    }

    /// 413 for a body over the limit (also used by transports that stop reading early).
    pub fn too_large(limit: usize) -> Self {
        Self::json(
            413,
            json!({"error": "payload_too_large", "message": format!("body exceeds the {limit}-byte limit")}),
        )
    }

    /// 400 for a body the transport could not decode (e.g. invalid base64).
    pub fn bad_body(message: &str) -> Self {
        Self::json(400, json!({"error": "invalid_body", "message": message}))
    }

    /// 408 for a body that did not arrive in time (transports that read it themselves).
    pub fn body_timeout(secs: u64) -> Self {
        Self::json(
            408,
            json!({"error": "request_timeout", "message": format!("the body did not arrive within {secs} s")}),
        )
        .with_header("connection", "close".to_owned())
    }
}

/// Maps a receive result to the HTTP contract. Error messages never contain secrets,
/// signatures or bodies; 5xx answers stay generic.
pub fn reply(result: &Result<Receipt, ReceiveError>) -> HttpReply {
    match result {
        Ok(Receipt::Accepted { webhook_id, .. }) => {
            HttpReply::json(200, json!({"status": "accepted", "webhook_id": webhook_id}))
        }
        Ok(Receipt::Duplicate { webhook_id } | Receipt::Conflicting { webhook_id }) => {
            HttpReply::json(
                200,
                json!({"status": "duplicate", "webhook_id": webhook_id}),
            )
        }
        Err(err) => {
            let code = err.code();
            let status = match err {
                ReceiveError::TooLarge { .. }
                | ReceiveError::Queue(QueueError::TooLarge { .. }) => 413,
                ReceiveError::Verify(v) => match v.class() {
                    FailureClass::BadRequest => 400,
                    FailureClass::Unauthorized => 401,
                    FailureClass::Unavailable => 503,
                },
                ReceiveError::NotAnEvent(_) => 400,
                ReceiveError::InFlight { .. } => 409,
                ReceiveError::TokenReplayed => 401,
                ReceiveError::Store(_) | ReceiveError::Queue(_) => 503,
                ReceiveError::Envelope(_) => 500,
            };
            // 401s go to whoever called: the code says which check failed, the message does not
            // describe how the receiver is configured (the details are in its logs).
            let message = if status >= 500 {
                "temporarily unable to accept the delivery; retry later".to_owned()
            } else if status == 401 {
                "the delivery could not be authenticated".to_owned()
            } else {
                err.to_string()
            };
            let reply = HttpReply::json(status, json!({"error": code, "message": message}));
            match err {
                ReceiveError::InFlight {
                    retry_after_secs, ..
                } => reply.with_header("retry-after", retry_after_secs.to_string()),
                _ if status == 503 => {
                    reply.with_header("retry-after", UNAVAILABLE_RETRY_AFTER_SECS.to_string())
                }
                _ => reply,
            }
        }
    }
}

/// Handles one HTTP request end to end and logs exactly one outcome line for it.
pub async fn handle(
    receiver: &Receiver,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    deadline_ms: Option<i64>,
) -> HttpReply {
    if method != Method::POST {
        record_metrics(receiver.metrics(), Err("method_not_allowed"), false);
        tracing::info!(
            status = 405,
            outcome = "method_not_allowed",
            "delivery rejected"
        );
        return HttpReply::method_not_allowed();
    }
    let span = tracing::info_span!(
        "delivery",
        webhook_id = tracing::field::Empty,
        event_type = tracing::field::Empty,
        job_id = tracing::field::Empty
    );
    async {
        let delivery = Delivery {
            headers,
            body,
            deadline_ms,
        };
        let result = receiver.receive(delivery).await;
        let reply = reply(&result);
        record_metrics(
            receiver.metrics(),
            result.as_ref().map_err(ReceiveError::code),
            matches!(result, Err(ReceiveError::Queue(_))),
        );
        match &result {
            Ok(Receipt::Accepted { .. }) => tracing::info!(status = reply.status, outcome = "accepted", "delivery accepted"),
            Ok(Receipt::Duplicate { .. }) => tracing::info!(status = reply.status, outcome = "duplicate", "duplicate delivery"),
            Ok(Receipt::Conflicting { .. }) => tracing::info!(status = reply.status, outcome = "conflicting", "duplicate delivery with another body"),
            Err(e) if reply.status >= 500 => {
                tracing::error!(status = reply.status, outcome = e.code(), error = %e, "delivery failed")
            }
            Err(e) => tracing::warn!(status = reply.status, outcome = e.code(), error = %e, "delivery rejected"),
        }
        reply
    }
    .instrument(span)
    .await
}

/// One EMF line per request: accepted, duplicate, or rejected with its error code as `Reason`
/// (plus an enqueue failure when the queue refused a claimed delivery).
fn record_metrics(metrics: &Metrics, outcome: Result<&Receipt, &str>, enqueue_failed: bool) {
    match outcome {
        Ok(Receipt::Accepted { .. }) => metrics.count(metric::DELIVERIES_ACCEPTED, 1),
        Ok(Receipt::Duplicate { .. }) => metrics.count(metric::DELIVERIES_DUPLICATE, 1),
        Ok(Receipt::Conflicting { .. }) => metrics.count(metric::DELIVERIES_CONFLICTING, 1),
        Err(code) => {
            let mut set = metrics
                .set()
                .reason(code)
                .count(metric::DELIVERIES_REJECTED, 1);
            if enqueue_failed {
                set = set.count(metric::ENQUEUE_FAILURES, 1);
            }
            set.flush();
        }
    }
}
