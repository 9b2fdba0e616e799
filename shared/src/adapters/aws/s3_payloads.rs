//! The [`PayloadStore`] port on S3: messages too large for SQS, in a bucket that the template
//! encrypts, closes to the public and expires.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;

use crate::ports::payloads::{PayloadError, PayloadStore};

/// [`PayloadStore`] on one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3PayloadStore {
    client: Client,
    bucket: String,
}

impl S3PayloadStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// An S3 client for `aws`. With an endpoint override (tests, emulators) buckets are addressed
    /// by path, which every S3-compatible endpoint understands; against AWS itself by host.
    pub fn client(aws: &aws_config::SdkConfig) -> Client {
        let overridden = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|u| !u.trim().is_empty()));
        let config = aws_sdk_s3::config::Builder::from(aws)
            .force_path_style(overridden)
            .build();
        Client::from_conf(config)
    }
}

/// An SDK error as text, with its causes (never a request or response body).
pub(super) fn sdk_text<E: std::error::Error + 'static>(e: &E) -> String {
    DisplayErrorContext(e).to_string()
}

fn unavailable<E: std::error::Error + 'static>(e: &E) -> PayloadError {
    PayloadError::Unavailable(sdk_text(e))
}

#[async_trait]
impl PayloadStore for S3PayloadStore {
    async fn put(&self, key: &str, body: &[u8]) -> Result<(), PayloadError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unavailable(&e))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PayloadError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.code() == Some("NoSuchKey") => return Ok(None),
            Err(e) => return Err(unavailable(&e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| PayloadError::Unavailable(format!("reading {key}: {e}")))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn delete(&self, key: &str) -> Result<(), PayloadError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unavailable(&e))
    }
}
