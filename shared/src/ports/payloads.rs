//! Where a queue message too large for the queue is kept while the queue carries a pointer to
//! it (the SQS extended-client pattern): S3 in the Lambdas, files in the data directory locally.

use async_trait::async_trait;

/// Why a payload could not be stored or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload store unavailable: {0}")]
    Unavailable(String),
}

/// A store of opaque payloads by key. Keys are content hashes, so a put is idempotent.
#[async_trait]
pub trait PayloadStore: Send + Sync {
    async fn put(&self, key: &str, body: &[u8]) -> Result<(), PayloadError>;

    /// The payload, or `None` when it is gone (already handled and deleted, or expired).
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PayloadError>;

    /// Deletes the payload; deleting a missing one is not an error.
    async fn delete(&self, key: &str) -> Result<(), PayloadError>;
}
