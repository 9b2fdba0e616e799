//! The streamed, resumable results download: skips bytes the server sent unasked (a `Range`
//! ignored), and turns a stalled body into an error instead of a hang.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{CONTENT_RANGE, HeaderMap};

use super::http::describe;
use crate::ports::gemini::GeminiError;

/// `Content-Range: bytes S-E/T` → S.
pub(crate) fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let range = v.trim().strip_prefix("bytes")?.trim_start();
    range.split(['-', '/']).next()?.trim().parse().ok()
}

/// `Content-Range: bytes */T` (or `S-E/T`) → T.
pub(crate) fn content_range_total(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    v.rsplit_once('/')?.1.trim().parse().ok()
}

/// State of a download stream: skips unrequested bytes and turns silence into an error.
pub(crate) struct Download {
    pub(crate) inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    pub(crate) skip: u64,
    pub(crate) idle: Duration,
    pub(crate) done: bool,
}

impl Download {
    pub(crate) async fn next(mut self) -> Option<(Result<Bytes, GeminiError>, Self)> {
        if self.done {
            return None;
        }
        loop {
            let item = match tokio::time::timeout(self.idle, self.inner.next()).await {
                Err(_) => Err(GeminiError::Stream(format!(
                    "no data for {} ms",
                    self.idle.as_millis()
                ))),
                Ok(None) if self.skip > 0 => Err(GeminiError::Decode(
                    "the file is shorter than the requested offset".into(),
                )),
                Ok(None) => return None,
                Ok(Some(Err(e))) => Err(GeminiError::Stream(describe(&e))),
                Ok(Some(Ok(mut chunk))) => {
                    if self.skip > 0 {
                        let n = usize::try_from(self.skip)
                            .unwrap_or(usize::MAX)
                            .min(chunk.len());
                        chunk = chunk.slice(n..);
                        self.skip -= n as u64;
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    return Some((Ok(chunk), self));
                }
            };
            self.done = true;
            return Some((item, self));
        }
    }
}
