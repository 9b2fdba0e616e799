//! Messages larger than the queue takes go to the payload store, and the queue carries a pointer
//! (the SQS extended-client pattern): no verified delivery under the body limit is refused for
//! size. The consumer resolves the pointer before handling the message.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::envelope::{OutgoingMessage, QueueEnvelope, StoredPayload};
use crate::domain::verify::sha256_hex;
use crate::ports::payloads::{PayloadError, PayloadStore};
use crate::ports::{EventQueue, QueueError};

/// An [`EventQueue`] that stores messages over `limit` bytes in `payloads` and enqueues a pointer.
pub struct OffloadingQueue {
    queue: Arc<dyn EventQueue>,
    payloads: Arc<dyn PayloadStore>,
    limit: usize,
}

impl OffloadingQueue {
    /// `limit` is the queue's own message limit (SQS: 256 KiB, attributes included).
    pub fn new(queue: Arc<dyn EventQueue>, payloads: Arc<dyn PayloadStore>, limit: usize) -> Self {
        Self {
            queue,
            payloads,
            limit,
        }
    }
}

#[async_trait]
impl EventQueue for OffloadingQueue {
    async fn enqueue(&self, message: &OutgoingMessage) -> Result<String, QueueError> {
        if message.size() <= self.limit {
            return self.queue.enqueue(message).await;
        }
        let stored = StoredPayload::for_message(message);
        // Stored first: the pointer is the commit point, and an orphaned payload only waits for
        // the bucket's expiry.
        self.payloads
            .put(&stored.key, message.body.as_bytes())
            .await
            .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        let pointer = stored
            .pointer_message(message)
            .map_err(|e| QueueError::Unavailable(format!("cannot encode the pointer: {e}")))?;
        tracing::info!(
            bytes = stored.bytes,
            key = %stored.key,
            "message larger than the queue takes: stored, pointer enqueued"
        );
        self.queue.enqueue(&pointer).await
    }
}

/// Why a stored payload could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The store failed: worth retrying.
    #[error("{0}")]
    Store(#[from] PayloadError),
    /// The payload is gone (handled and deleted, or expired): nothing left to do.
    #[error("payload {0} is gone")]
    Gone(String),
    /// What came back is not what was stored, or not an envelope.
    #[error("payload {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// Reads the message a pointer stands for.
pub async fn resolve(
    payloads: &dyn PayloadStore,
    stored: &StoredPayload,
) -> Result<QueueEnvelope, ResolveError> {
    let body = payloads
        .get(&stored.key)
        .await?
        .ok_or_else(|| ResolveError::Gone(stored.key.clone()))?;
    let corrupt = |reason: String| ResolveError::Corrupt {
        key: stored.key.clone(),
        reason,
    };
    if sha256_hex(&body) != stored.sha256 {
        return Err(corrupt("its SHA-256 is not the pointer's".into()));
    }
    let text = std::str::from_utf8(&body).map_err(|e| corrupt(format!("not UTF-8: {e}")))?;
    match QueueEnvelope::from_body(text) {
        Ok(QueueEnvelope::Stored(_)) => Err(corrupt("a pointer to a pointer".into())),
        Ok(envelope) => Ok(envelope),
        Err(e) => Err(corrupt(format!("not an envelope: {e}"))),
    }
}
