//! The [`ObjectStore`] port on S3: generated videos copied into the output bucket with a
//! multipart upload, one part in memory at a time. An object only appears once
//! `CompleteMultipartUpload` succeeds, so a copy that fails part-way never leaves a half video
//! under its key; the upload is aborted (and the bucket's lifecycle rule removes any upload an
//! abort could not reach).

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};

use super::s3_payloads::sdk_text;
use crate::ports::objects::{ObjectError, ObjectLocation, ObjectStore, ObjectUpload, StoredObject};

/// S3's smallest part (every part but the last).
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;
/// S3's most parts in one upload; with [`MIN_PART_BYTES`] parts, objects up to ~48 GiB.
const MAX_PARTS: usize = 10_000;

/// [`ObjectStore`] on one S3 bucket (`OUTPUT_BUCKET`).
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: Client,
    bucket: String,
    part_bytes: usize,
}

impl S3ObjectStore {
    /// Parts of [`MIN_PART_BYTES`]: the least memory a multipart copy can take.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            part_bytes: MIN_PART_BYTES,
        }
    }

    /// Parts of `bytes` (at least [`MIN_PART_BYTES`]).
    pub fn with_part_bytes(mut self, bytes: usize) -> Self {
        self.part_bytes = bytes.max(MIN_PART_BYTES);
        self
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

fn unavailable<E: std::error::Error + 'static>(what: &str, e: &E) -> ObjectError {
    ObjectError::Unavailable(format!("{what}: {}", sdk_text(e)))
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn begin(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<Box<dyn ObjectUpload>, ObjectError> {
        if key.is_empty() || key.starts_with('/') {
            return Err(ObjectError::BadKey(key.to_owned()));
        }
        Ok(Box::new(S3Upload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            content_type: content_type.to_owned(),
            part_bytes: self.part_bytes,
            buffer: BytesMut::new(),
            upload_id: None,
            parts: Vec::new(),
            bytes: 0,
        }))
    }
}

/// One object on its way into S3. The multipart upload is only created once a full part is
/// buffered: a video smaller than one part is a single `PutObject`.
struct S3Upload {
    client: Client,
    bucket: String,
    key: String,
    content_type: String,
    part_bytes: usize,
    buffer: BytesMut,
    /// Set once the multipart upload exists; taken when it is completed or aborted.
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    bytes: u64,
}

impl S3Upload {
    async fn upload_id(&mut self) -> Result<String, ObjectError> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type(&self.content_type)
            .send()
            .await
            .map_err(|e| unavailable("CreateMultipartUpload", &e))?;
        let id = out
            .upload_id()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ObjectError::Unavailable("S3 returned no upload id".into()))?
            .to_owned();
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    async fn send_part(&mut self, body: Bytes) -> Result<(), ObjectError> {
        if self.parts.len() >= MAX_PARTS {
            return Err(ObjectError::Unavailable(format!(
                "the object needs more than {MAX_PARTS} parts"
            )));
        }
        let upload_id = self.upload_id().await?;
        let number = i32::try_from(self.parts.len() + 1).unwrap_or(i32::MAX);
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| unavailable("UploadPart", &e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build(),
        );
        Ok(())
    }

    fn location(&self) -> ObjectLocation {
        ObjectLocation::S3 {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
        }
    }
}

#[async_trait]
impl ObjectUpload for S3Upload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError> {
        self.bytes += chunk.len() as u64;
        self.buffer.extend_from_slice(&chunk);
        while self.buffer.len() >= self.part_bytes {
            let part = self.buffer.split_to(self.part_bytes).freeze();
            self.send_part(part).await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<StoredObject, ObjectError> {
        let rest = std::mem::take(&mut self.buffer).freeze();
        if self.upload_id.is_none() {
            let out = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type(&self.content_type)
                .body(ByteStream::from(rest))
                .send()
                .await
                .map_err(|e| unavailable("PutObject", &e))?;
            return Ok(StoredObject {
                location: self.location(),
                bytes: self.bytes,
                etag: out.e_tag().map(str::to_owned),
            });
        }
        if !rest.is_empty() {
            self.send_part(rest).await?;
        }
        let upload_id = self.upload_id().await?;
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| unavailable("CompleteMultipartUpload", &e))?;
        self.upload_id = None;
        Ok(StoredObject {
            location: self.location(),
            bytes: self.bytes,
            etag: out.e_tag().map(str::to_owned),
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<(), ObjectError> {
        let Some(upload_id) = self.upload_id.take() else {
            return Ok(());
        };
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unavailable("AbortMultipartUpload", &e))
    }
}

impl Drop for S3Upload {
    /// An upload dropped mid-way (the message ran out of time) is aborted in the background; the
    /// bucket's `AbortIncompleteMultipartUpload` rule covers one that never gets there.
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let abort = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id);
        runtime.spawn(async move {
            if let Err(e) = abort.send().await {
                tracing::warn!(error = %sdk_text(&e), "could not abort an unfinished upload");
            }
        });
    }
}
