//! Where copies of generated videos go: an S3 bucket in the Lambdas (`OUTPUT_BUCKET`), the data
//! directory locally. Written as a stream, one part at a time, so a video of any size costs one
//! part buffer of memory; nothing is visible under the key until the upload finishes.

use async_trait::async_trait;
use bytes::Bytes;

/// Why an object could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// The store could not be reached or refused the call; a later attempt may succeed.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// The key cannot be stored (empty, escapes the store's root).
    #[error("not an object key: {0}")]
    BadKey(String),
}

/// Where a finished object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectLocation {
    S3 { bucket: String, key: String },
    File { path: String },
}

/// A finished object, as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub location: ObjectLocation,
    pub bytes: u64,
    /// The store's entity tag (S3), if it has one.
    pub etag: Option<String>,
}

/// One object being written. Dropping it without [`Self::finish`] leaves nothing under the key;
/// call [`Self::abort`] to also free what was uploaded so far.
#[async_trait]
pub trait ObjectUpload: Send {
    /// Appends `chunk`; the adapter sends a part whenever it holds a full one.
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError>;

    /// Sends the rest and makes the object visible under its key, whole.
    async fn finish(self: Box<Self>) -> Result<StoredObject, ObjectError>;

    /// Gives the upload up, freeing what was sent.
    async fn abort(self: Box<Self>) -> Result<(), ObjectError>;
}

/// A store of objects written as streams.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Starts writing `key` (replacing any object there once finished).
    async fn begin(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<Box<dyn ObjectUpload>, ObjectError>;
}
