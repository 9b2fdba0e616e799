//! One HTTP attempt and what it means: success, retry (429, 5xx, timeouts, connection failures)
//! or a final error, with Google's error message extracted from a bounded prefix of the body.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

use crate::ports::gemini::GeminiError;

/// How much of an error body is read to extract `error.message` (bodies are not kept).
const ERROR_BODY_LIMIT: usize = 8 * 1024;
/// Longest server error message carried into a [`GeminiError::Fatal`].
const ERROR_MESSAGE_LIMIT: usize = 200;

/// Whether a call may simply be sent again after an unclear outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Reads and idempotent writes: retried on 429, 5xx, timeouts and connection failures.
    Safe,
    /// Retried only when the server provably did not act on it: 429, or no connection at all.
    /// Any other unclear outcome is a [`GeminiError::Unconfirmed`].
    Unsafe,
}

/// Result of one attempt.
pub(crate) enum Step<T> {
    Done(T),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    Fail(GeminiError),
}

impl<T> Step<T> {
    /// The value, or this non-success step retyped for the caller's own result.
    pub(crate) fn into_done<U>(self) -> Result<T, Step<U>> {
        match self {
            Self::Done(v) => Ok(v),
            Self::Retry {
                reason,
                retry_after,
            } => Err(Step::Retry {
                reason,
                retry_after,
            }),
            Self::Fail(e) => Err(Step::Fail(e)),
        }
    }
}

/// Sorts a response into success, retry or failure; reads (a bounded prefix of) error bodies
/// only to extract Google's `error.message`.
pub(crate) async fn classify(resp: reqwest::Response, what: &str) -> Step<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Step::Done(resp);
    }
    if status == StatusCode::NOT_FOUND {
        return Step::Fail(GeminiError::NotFound {
            what: what.to_owned(),
        });
    }
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        return Step::Retry {
            reason: format!("HTTP {}", status.as_u16()),
            retry_after: retry_after(resp.headers()),
        };
    }
    let message = error_message(resp).await;
    Step::Fail(GeminiError::Fatal {
        status: status.as_u16(),
        message: format!("{what}: {message}"),
    })
}

pub(crate) fn send_error_step<T>(e: &reqwest::Error) -> Step<T> {
    if e.is_builder() {
        Step::Fail(GeminiError::Invalid(describe(e)))
    } else {
        Step::Retry {
            reason: describe(e),
            retry_after: None,
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is left to the backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// `STATUS: message` from Google's `{"error": {…}}`, shortened; the body is not kept.
async fn error_message(mut resp: reqwest::Response) -> String {
    let reason = resp
        .status()
        .canonical_reason()
        .unwrap_or("error")
        .to_owned();
    let mut buf = Vec::new();
    while buf.len() < ERROR_BODY_LIMIT {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    let Ok(v) = serde_json::from_slice::<Value>(&buf) else {
        return reason;
    };
    let status = v
        .pointer("/error/status")
        .and_then(Value::as_str)
        .unwrap_or(&reason);
    match v.pointer("/error/message").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => {
            let short: String = m.chars().take(ERROR_MESSAGE_LIMIT).collect();
            format!("{status}: {short}")
        }
        _ => status.to_owned(),
    }
}

/// A reqwest error as its kind and cause chain, without the URL.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else if e.is_body() {
        "body error"
    } else if e.is_decode() {
        "decode error"
    } else if e.is_builder() {
        "bad request"
    } else {
        "request error"
    };
    let mut out = kind.to_owned();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
