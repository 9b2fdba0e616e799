//! Videos: each generated video streamed from the Files API into the output store before its
//! job is recorded SUCCEEDED — Gemini deletes generated files after 48 hours.
//!
//! Memory stays at one part buffer (the store's) whatever the video's size: chunks go from the
//! download straight to the upload. A download that breaks resumes from the bytes already
//! passed on (`Range`), a few times; past that, or when the store fails, the upload is aborted
//! and the message retried, so nothing half-copied is ever named on the job record. Every call
//! is bounded by the message's cutoff: a video that cannot be copied within one invocation
//! fails its message each time (see the README for the size this allows).

use std::sync::Arc;

use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Consumer;
use super::error::ConsumeError;
use super::writes::within;
use crate::domain::gemini::normalize_file_name;
use crate::domain::outputs::video_key;
use crate::ports::gemini::GeminiError;
use crate::ports::metrics::metric;
use crate::ports::objects::{ObjectLocation, ObjectStore, ObjectUpload};

/// Downloads resumed within one message after a break, before the message is retried.
const MAX_RESUMES: u32 = 3;

/// Content type of a video the API gives no type for (Veo writes MP4).
pub(super) const DEFAULT_VIDEO_TYPE: &str = "video/mp4";

/// What one copy passed on.
struct Copied {
    bytes: u64,
    sha256: String,
}

impl Consumer {
    /// Copies each of `sources` (video URIs or `files/…` names) into the video store and
    /// returns what `output.stored` (and `output.not_stored`) should say; `None` when no store
    /// is configured (pointers only, as before).
    pub(super) async fn store_videos(
        &self,
        job_id: &str,
        sources: &[String],
        content_type: &str,
    ) -> Result<Option<(Vec<Value>, Vec<Value>)>, ConsumeError> {
        let Some(store) = &self.videos else {
            return Ok(None);
        };
        let (mut stored, mut skipped) = (Vec::new(), Vec::new());
        for (index, source) in sources.iter().enumerate() {
            // Only Files API names are fetched, from the configured API with our key: a URI
            // pointing anywhere else is never sent the key.
            let Some(file) = normalize_file_name(source) else {
                tracing::warn!(
                    index,
                    "a generated video is not a Files API file; not copied"
                );
                skipped.push(json!({"source": source, "reason": "not a Files API file"}));
                continue;
            };
            let key = video_key(job_id, index, content_type);
            let entry = self
                .copy_video(Arc::clone(store), &file, &key, content_type)
                .await?;
            stored.push(entry);
        }
        Ok(Some((stored, skipped)))
    }

    async fn copy_video(
        &self,
        store: Arc<dyn ObjectStore>,
        file: &str,
        key: &str,
        content_type: &str,
    ) -> Result<Value, ConsumeError> {
        let started = self.clock.now_ms();
        let mut upload = within(store.begin(key, content_type)).await??;
        let copied = match self.pump(file, upload.as_mut()).await {
            Ok(copied) => copied,
            Err(e) => {
                // Best effort: the lifecycle rule (S3) or the next start (files) covers the rest.
                match within(upload.abort()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(abort)) => tracing::warn!(error = %abort, "could not abort a copy"),
                    Err(_) => tracing::warn!("no time left to abort a copy"),
                }
                return Err(e);
            }
        };
        let object = within(upload.finish()).await??;
        if object.bytes != copied.bytes {
            return Err(ConsumeError::Objects(
                crate::ports::objects::ObjectError::Unavailable(format!(
                    "the store took {} of {} bytes",
                    object.bytes, copied.bytes
                )),
            ));
        }
        tracing::info!(
            file,
            bytes = copied.bytes,
            ms = self.clock.now_ms().saturating_sub(started),
            "video copied"
        );
        self.metrics.set().count(metric::VIDEOS_STORED, 1).flush();
        let mut entry = match &object.location {
            ObjectLocation::S3 { bucket, key } => json!({
                "store": "s3",
                "bucket": bucket,
                "key": key,
                "uri": format!("s3://{bucket}/{key}"),
            }),
            ObjectLocation::File { path } => json!({"store": "file", "path": path, "key": key}),
        };
        entry["bytes"] = json!(copied.bytes);
        entry["sha256"] = json!(copied.sha256);
        entry["content_type"] = json!(content_type);
        entry["source"] = json!(file);
        if let Some(etag) = object.etag {
            entry["etag"] = json!(etag);
        }
        Ok(entry)
    }

    /// Streams `file` into `upload`, resuming a broken download from the bytes already passed.
    async fn pump(
        &self,
        file: &str,
        upload: &mut dyn ObjectUpload,
    ) -> Result<Copied, ConsumeError> {
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        let mut resumes = 0;
        let mut stream = within(self.gemini.download(file, 0)).await??;
        loop {
            match within(stream.next()).await? {
                None => break,
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    offset += chunk.len() as u64;
                    within(upload.write(chunk)).await??;
                }
                Some(Err(GeminiError::Stream(reason))) if resumes < MAX_RESUMES => {
                    resumes += 1;
                    tracing::info!(file, offset, resumes, reason = %reason, "video download broke; resuming");
                    stream = within(self.gemini.download(file, offset)).await??;
                }
                Some(Err(e)) => return Err(e.into()),
            }
        }
        Ok(Copied {
            bytes: offset,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}
