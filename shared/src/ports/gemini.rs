//! The Gemini API as the use cases see it: read a batch (a long-running Operation), list
//! batches, stream a results file, read the interaction, video operation or file an event
//! names, and list the registered webhooks' states (docs/gemini.md §4–7). The HTTP adapter is `adapters::gemini::GeminiClient`; tests use
//! in-process fakes.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::domain::gemini::{
    BatchOperation, DecodeError, FileInfo, Interaction, VideoOperation, WebhookSummary,
};

/// Results file download as a stream of chunks; never the whole file in memory.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, GeminiError>> + Send>>;

/// Why a Gemini call failed. Messages name the resource, never the key or response bodies.
#[derive(Debug, thiserror::Error)]
pub enum GeminiError {
    /// 404: not visible (yet). Not retried here: the consumer retries the message later, which
    /// covers the file appearing a little after the batch reports success.
    #[error("{what} not found")]
    NotFound { what: String },
    /// 429, 5xx, timeouts or connection failures, still failing after every attempt.
    #[error("{what}: still failing after {attempts} attempt(s), last: {last}")]
    Transient {
        what: String,
        attempts: u32,
        last: String,
    },
    /// Any other HTTP error (401, 403, 400…): retrying will not help.
    #[error("HTTP {status}: {message}")]
    Fatal { status: u16, message: String },
    /// A 2xx response we could not understand.
    #[error("could not decode the response: {0}")]
    Decode(String),
    /// The download broke mid-body; resume from the last checkpoint.
    #[error("download interrupted: {0}")]
    Stream(String),
    /// The request could not even be formed (bad base URL, unusable id, `gs://` file).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A call that must not run twice (creating a webhook, rotating its secret) may or may not
    /// have taken effect: the server answered 5xx, timed out or dropped the answer. Not retried,
    /// so a lost answer never turns into a second webhook or a second rotation.
    #[error("{what}: outcome unknown ({reason}); it may or may not have been applied")]
    Unconfirmed { what: String, reason: String },
}

impl GeminiError {
    /// Worth retrying later (by redelivering the message).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::NotFound { .. } | Self::Transient { .. } | Self::Stream(_)
        )
    }
}

/// One page of `GET /v1beta/batches`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPage {
    pub operations: Vec<BatchOperation>,
    /// `None` on the last page.
    pub next_page_token: Option<String>,
}

/// One page of `GET /v1/webhooks`, reduced to what the reconciler's early warning reads.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSummaryPage {
    pub webhooks: Vec<WebhookSummary>,
    /// `None` on the last page.
    pub next_page_token: Option<String>,
}

/// The Gemini API port.
#[async_trait]
pub trait GeminiApi: Send + Sync {
    /// `GET /v1beta/batches/<id>`; `id` may be `abc`, `batches/abc` or a full URL.
    async fn get_batch(&self, id: &str) -> Result<BatchOperation, GeminiError>;

    /// One page of `GET /v1beta/batches`.
    async fn list_batches(
        &self,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<BatchPage, GeminiError>;

    /// Streams a results file from byte `offset` (an HTTP `Range` request when `offset > 0`).
    async fn download(&self, file: &str, offset: u64) -> Result<ByteStream, GeminiError>;

    /// `GET /v1beta/interactions/<id>`.
    async fn get_interaction(&self, id: &str) -> Result<Interaction, GeminiError>;

    /// `GET /v1beta/<name>` of a video generation operation.
    async fn get_video_operation(&self, name: &str) -> Result<VideoOperation, GeminiError>;

    /// `GET /v1beta/files/<id>`: a file's metadata.
    async fn get_file(&self, file: &str) -> Result<FileInfo, GeminiError>;

    /// One page of `GET /v1/webhooks` (the WebhookService): id, name, URI and state of each
    /// registered webhook, never its secrets.
    async fn list_webhooks(
        &self,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<WebhookSummaryPage, GeminiError>;
}

impl From<DecodeError> for GeminiError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e.0)
    }
}
