//! The HTTP adapter of the [`GeminiApi`] port: requests with the API key, retries with jittered
//! backoff ([`super::http`] classifies each attempt), and the streamed download
//! ([`super::download`]).

use std::future::Future;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, RANGE};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::download::{Download, content_range_start, content_range_total};
use super::http::{Replay, Step, classify, describe, send_error_step};
use super::settings::GeminiSettings;
use crate::domain::gemini::{
    BatchOperation, FileInfo, Interaction, VideoOperation, WebhookSummary, is_operation_name,
    is_plain_id, normalize_batch_id, normalize_file_name,
};
use crate::ports::gemini::{BatchPage, ByteStream, GeminiApi, GeminiError, WebhookSummaryPage};

/// Redirects to another origin followed by hand (without the key), per download.
const MAX_REDIRECTS: u32 = 5;
/// Header Gemini reads the API key from.
const API_KEY_HEADER: &str = "x-goog-api-key";
/// The WebhookService (all docs samples use `v1`, unlike the Batch API's `v1beta`).
pub(crate) const WEBHOOKS_PATH: &str = "/v1/webhooks";

/// Gemini Batch API client. Cheap to clone (the HTTP pool is shared).
#[derive(Debug, Clone)]
pub struct GeminiClient {
    settings: GeminiSettings,
    http: reqwest::Client,
}

impl GeminiClient {
    pub fn new(settings: GeminiSettings, http: reqwest::Client) -> Self {
        Self { settings, http }
    }

    pub fn settings(&self) -> &GeminiSettings {
        &self.settings
    }

    pub(crate) fn url(&self, path: &str) -> Result<Url, GeminiError> {
        let base = self.settings.base_url.trim_end_matches('/');
        Url::parse(&format!("{base}{path}"))
            .map_err(|e| GeminiError::Invalid(format!("bad base URL: {e}")))
    }

    fn request(&self, method: Method, url: Url, range_from: u64) -> reqwest::RequestBuilder {
        let key = self.settings.api_key.expose();
        let mut req = self.http.request(method, url);
        // An unset key is sent as no header, so Gemini answers with its clear 401.
        if !key.is_empty() {
            req = match HeaderValue::from_str(key) {
                Ok(mut v) => {
                    // Keeps the key out of any `Debug` of the request.
                    v.set_sensitive(true);
                    req.header(API_KEY_HEADER, v)
                }
                // Left to fail as a builder error (`GeminiError::Invalid`), which never echoes it.
                Err(_) => req.header(API_KEY_HEADER, key),
            };
        }
        if range_from > 0 {
            req.header(RANGE, format!("bytes={range_from}-"))
        } else {
            req
        }
    }

    /// Follows the redirects the HTTP client stopped at (those to another origin: the
    /// `http_client` the binaries wire stops there) without the API key: a file served from elsewhere (a
    /// signed storage URL) needs none, and the key must not leave the API's origin.
    async fn off_origin(
        &self,
        mut resp: reqwest::Response,
        offset: u64,
    ) -> Result<reqwest::Response, Step<reqwest::Response>> {
        let mut hops = 0;
        while resp.status().is_redirection() {
            let status = resp.status().as_u16();
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| resp.url().join(l).ok())
                .filter(|u| matches!(u.scheme(), "https" | "http"));
            let Some(next) = next else {
                return Err(Step::Fail(GeminiError::Fatal {
                    status,
                    message: "a redirect without a usable Location".into(),
                }));
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(Step::Fail(GeminiError::Fatal {
                    status,
                    message: format!("more than {MAX_REDIRECTS} redirects"),
                }));
            }
            let mut req = self.http.get(next);
            if offset > 0 {
                req = req.header(RANGE, format!("bytes={offset}-"));
            }
            resp = match tokio::time::timeout(self.settings.request_timeout, req.send()).await {
                Err(_) => {
                    return Err(Step::Retry {
                        reason: "timed out following a redirect".into(),
                        retry_after: None,
                    });
                }
                Ok(Err(e)) => return Err(send_error_step(&e)),
                Ok(Ok(r)) => r,
            };
        }
        Ok(resp)
    }

    /// GET a JSON document; each attempt (headers and body) is bounded by `request_timeout`.
    async fn get_json(&self, what: &str, url: Url) -> Result<Value, GeminiError> {
        self.call_json(Method::GET, what, url, None, Replay::Safe)
            .await
    }

    /// Sends `body` (if any) as JSON and reads a JSON answer; an empty answer reads as `{}`.
    /// Each attempt (headers and body) is bounded by `request_timeout`.
    pub(crate) async fn call_json(
        &self,
        method: Method,
        what: &str,
        url: Url,
        body: Option<&Value>,
        replay: Replay,
    ) -> Result<Value, GeminiError> {
        let answer = self.call_bytes(method, what, url, body, replay).await?;
        if answer.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(serde_json::Map::new()));
        }
        serde_json::from_slice::<Value>(&answer).map_err(|e| invalid_json(&e))
    }

    /// [`Self::call_json`]'s request, the answer's bytes as they came (for callers that parse
    /// only part of a large answer into a tree).
    async fn call_bytes(
        &self,
        method: Method,
        what: &str,
        url: Url,
        body: Option<&Value>,
        replay: Replay,
    ) -> Result<bytes::Bytes, GeminiError> {
        let timeout = self.settings.request_timeout;
        // Once an unsafe call may have reached the server, any unclear outcome is final.
        let unclear = |reason: String| match replay {
            Replay::Safe => Step::Retry {
                reason,
                retry_after: None,
            },
            Replay::Unsafe => Step::Fail(GeminiError::Unconfirmed {
                what: what.to_owned(),
                reason,
            }),
        };
        self.with_retries(what, || {
            let mut req = self.request(method.clone(), url.clone(), 0);
            if let Some(b) = body {
                req = req.json(b);
            }
            async move {
                let attempt = async {
                    let resp = match req.send().await {
                        Ok(r) => r,
                        // Without a connection nothing reached the server: safe to resend.
                        Err(e)
                            if replay == Replay::Unsafe && !e.is_connect() && !e.is_builder() =>
                        {
                            return unclear(describe(&e));
                        }
                        Err(e) => return send_error_step(&e),
                    };
                    let status = resp.status();
                    // 429 means "not done, come back later"; 5xx and 408 leave it open.
                    if replay == Replay::Unsafe
                        && (status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT)
                    {
                        return unclear(format!("HTTP {}", status.as_u16()));
                    }
                    let resp = match classify(resp, what).await.into_done() {
                        Ok(r) => r,
                        Err(step) => return step,
                    };
                    match resp.bytes().await {
                        Err(e) => unclear(format!("reading body: {}", describe(&e))),
                        Ok(body) => Step::Done(body),
                    }
                };
                tokio::time::timeout(timeout, attempt)
                    .await
                    .unwrap_or_else(|_| unclear("timed out".into()))
            }
        })
        .await
    }

    /// One page of `GET /v1/webhooks?page_size=&page_token=`: the raw webhook objects and the
    /// next page token. Shared by the port's summary and the CLI's full resources, so both read
    /// the list the same way.
    pub(crate) async fn webhooks_page(
        &self,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), GeminiError> {
        let mut url = self.url(WEBHOOKS_PATH)?;
        {
            let mut q = url.query_pairs_mut();
            if page_size > 0 {
                q.append_pair("page_size", &page_size.to_string());
            }
            if let Some(t) = page_token.filter(|t| !t.is_empty()) {
                q.append_pair("page_token", t);
            }
        }
        let mut body = self.get_json("webhooks list", url).await?;
        let webhooks = match body.get_mut("webhooks").map(Value::take) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(GeminiError::Decode("`webhooks` is not a list".into())),
        };
        let next_page_token = body
            .get("next_page_token")
            .or_else(|| body.get("nextPageToken"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok((webhooks, next_page_token))
    }

    async fn with_retries<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, GeminiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Step<T>>,
    {
        let policy = self.settings.retry;
        let attempts = policy.max_attempts.max(1);
        let mut last = String::new();
        for n in 1..=attempts {
            match attempt().await {
                Step::Done(v) => return Ok(v),
                Step::Fail(e) => return Err(e),
                Step::Retry {
                    reason,
                    retry_after,
                } => {
                    if n < attempts {
                        let delay = policy.delay(n, retry_after);
                        // Debug, not a warning: the caller reports the failure once, with the
                        // last reason and the number of attempts (`GeminiError::Transient`).
                        tracing::debug!(
                            resource = what,
                            attempt = n,
                            reason = %reason,
                            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            "Gemini call failed, retrying"
                        );
                        tokio::time::sleep(delay).await;
                    }
                    last = reason;
                }
            }
        }
        Err(GeminiError::Transient {
            what: what.to_owned(),
            attempts,
            last,
        })
    }
}

fn invalid_json(e: &serde_json::Error) -> GeminiError {
    GeminiError::Decode(format!(
        "invalid JSON ({:?} error at line {} column {})",
        e.classify(),
        e.line(),
        e.column()
    ))
}

#[async_trait]
impl GeminiApi for GeminiClient {
    /// `GET /v1beta/batches/<id>`; `id` may be `abc`, `batches/abc` or a full URL.
    async fn get_batch(&self, id: &str) -> Result<BatchOperation, GeminiError> {
        let name = normalize_batch_id(id);
        check_resource_id(&name, "batches/")?;
        let url = self.url(&format!("/v1beta/{name}"))?;
        // Parsed from the bytes: inline results stay raw text, never a tree per response (a few
        // MB of small JSON objects would take hundreds of MB as trees).
        let body = self
            .call_bytes(Method::GET, &name, url, None, Replay::Safe)
            .await?;
        Ok(BatchOperation::from_slice(&body)?)
    }

    /// `GET /v1beta/interactions/<id>`; `id` may carry the `interactions/` prefix.
    async fn get_interaction(&self, id: &str) -> Result<Interaction, GeminiError> {
        let id = id.trim();
        // Strip the prefix once: `interactions/interactions/x` is not `interactions/x`.
        let bare = id.strip_prefix("interactions/").unwrap_or(id);
        let name = format!("interactions/{bare}");
        check_resource_id(&name, "interactions/")?;
        let url = self.url(&format!("/v1beta/{name}"))?;
        Ok(Interaction::from_value(&self.get_json(&name, url).await?)?)
    }

    /// `GET /v1beta/<name>` of a long-running video operation
    /// (`models/<model>/operations/<id>` or `operations/<id>`).
    async fn get_video_operation(&self, name: &str) -> Result<VideoOperation, GeminiError> {
        let name = name.trim();
        check_operation_name(name)?;
        let url = self.url(&format!("/v1beta/{name}"))?;
        Ok(VideoOperation::from_value(
            &self.get_json(name, url).await?,
        )?)
    }

    /// `GET /v1beta/files/<id>`: a file's metadata.
    async fn get_file(&self, file: &str) -> Result<FileInfo, GeminiError> {
        let name = normalize_file_name(file)
            .ok_or_else(|| GeminiError::Invalid("not a Files API file reference".into()))?;
        let url = self.url(&format!("/v1beta/{name}"))?;
        Ok(FileInfo::from_value(&self.get_json(&name, url).await?)?)
    }

    /// `GET /v1/webhooks?page_size=&page_token=`, each webhook reduced to id, name, URI, state.
    async fn list_webhooks(
        &self,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<WebhookSummaryPage, GeminiError> {
        let (items, next_page_token) = self.webhooks_page(page_size, page_token).await?;
        Ok(WebhookSummaryPage {
            webhooks: items
                .iter()
                .map(WebhookSummary::from_value)
                .collect::<Result<_, _>>()?,
            next_page_token,
        })
    }

    /// `GET /v1beta/batches?pageSize=&pageToken=`.
    async fn list_batches(
        &self,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<BatchPage, GeminiError> {
        let mut url = self.url("/v1beta/batches")?;
        {
            let mut q = url.query_pairs_mut();
            if page_size > 0 {
                q.append_pair("pageSize", &page_size.to_string());
            }
            if let Some(t) = page_token.filter(|t| !t.is_empty()) {
                q.append_pair("pageToken", t);
            }
        }
        let body = self.get_json("batches list", url).await?;
        let operations = match body.get("operations") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(ops)) => ops
                .iter()
                .map(BatchOperation::from_value)
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(GeminiError::Decode("`operations` is not a list".into())),
        };
        let next_page_token = body
            .get("nextPageToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok(BatchPage {
            operations,
            next_page_token,
        })
    }

    /// Streams `GET /download/v1beta/<file>:download?alt=media` from byte `offset`.
    ///
    /// Uses `Range: bytes=<offset>-` when `offset > 0`; if the server ignores it and answers 200,
    /// the first `offset` bytes are skipped here. Only getting the response headers is retried;
    /// a break mid-body is a [`GeminiError::Stream`] so the caller resumes from its checkpoint.
    async fn download(&self, file: &str, offset: u64) -> Result<ByteStream, GeminiError> {
        let name = normalize_file_name(file)
            .ok_or_else(|| GeminiError::Invalid("not a Files API file reference".into()))?;
        let mut url = self.url(&format!("/download/v1beta/{name}:download"))?;
        url.query_pairs_mut().append_pair("alt", "media");
        let timeout = self.settings.request_timeout;

        let resp = self
            .with_retries(&name, || {
                let req = self.request(Method::GET, url.clone(), offset);
                let name = name.as_str();
                async move {
                    match tokio::time::timeout(timeout, req.send()).await {
                        Err(_) => Step::Retry {
                            reason: "timed out waiting for response headers".into(),
                            retry_after: None,
                        },
                        Ok(Err(e)) => send_error_step(&e),
                        Ok(Ok(resp)) => {
                            let resp = match self.off_origin(resp, offset).await {
                                Ok(resp) => resp,
                                Err(step) => return step,
                            };
                            if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE && offset > 0 {
                                Step::Done(resp)
                            } else {
                                classify(resp, name).await
                            }
                        }
                    }
                }
            })
            .await?;

        let skip = match resp.status() {
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // Resuming exactly at end of file is legitimate: nothing left to read. Only the
                // length the server states proves it: a 416 without one, or for a range inside
                // the file, is a refusal, and reading it as the end would cut the results short.
                return match content_range_total(resp.headers()) {
                    Some(total) if offset == total => Ok(Box::pin(futures::stream::empty())),
                    Some(total) if offset > total => Err(GeminiError::Fatal {
                        status: 416,
                        message: format!(
                            "offset {offset} is beyond the end of {name} ({total} bytes)"
                        ),
                    }),
                    Some(total) => Err(GeminiError::Stream(format!(
                        "the server refused bytes from {offset} of {name}, inside its {total} \
                         bytes (416)"
                    ))),
                    // The file's metadata says where it ends.
                    None => match self.get_file(&name).await.ok().and_then(|f| f.size_bytes) {
                        Some(size) if size == offset => Ok(Box::pin(futures::stream::empty())),
                        _ => Err(GeminiError::Stream(format!(
                            "the server refused bytes from {offset} of {name} (416) without \
                             stating its length: not taken as its end"
                        ))),
                    },
                };
            }
            StatusCode::PARTIAL_CONTENT => match content_range_start(resp.headers()) {
                None => 0,
                Some(start) if start <= offset => offset - start,
                Some(start) => {
                    return Err(GeminiError::Decode(format!(
                        "asked for bytes from {offset}, server sent from {start}"
                    )));
                }
            },
            _ => offset,
        };

        let state = Download {
            inner: Box::pin(resp.bytes_stream()),
            skip,
            idle: timeout,
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(state, Download::next)))
    }
}

/// Ids go into URL paths: only plain id characters, so nothing can walk to another endpoint.
/// `models/<model>/operations/<id>` or `operations/<id>` (so an event cannot steer the request
/// to another path).
pub(crate) fn check_operation_name(name: &str) -> Result<(), GeminiError> {
    if is_operation_name(name) {
        Ok(())
    } else {
        Err(GeminiError::Invalid(
            "not a long-running operation name".into(),
        ))
    }
}

/// `<prefix><plain id>`, the only shape of name put in a URL.
pub(crate) fn check_resource_id(name: &str, prefix: &str) -> Result<(), GeminiError> {
    let id = name.strip_prefix(prefix).unwrap_or(name);
    if is_plain_id(id) {
        Ok(())
    } else {
        Err(GeminiError::Invalid(format!(
            "`{prefix}` id has unexpected characters"
        )))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::adapters::gemini::settings::RetryPolicy;
    use reqwest::header::{CONTENT_RANGE, HeaderMap};
    use std::time::Duration;

    #[test]
    fn operation_names_are_checked_segment_by_segment() {
        for ok in ["operations/abc", "models/veo-3.0-generate/operations/a_b.c"] {
            assert!(check_operation_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "batches/x",
            "models/veo/operations/../x",
            "models/veo/operations/a/b",
            "operations/",
            "models/../operations/x",
            "files/x",
            "operations/a?x=1",
        ] {
            assert!(check_operation_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn api_key_debug_is_redacted() {
        let s = GeminiSettings::new("super-secret-key");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("super-secret-key"), "{dbg}");
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(p.backoff_cap(1), Duration::from_millis(100));
        assert_eq!(p.backoff_cap(2), Duration::from_millis(200));
        assert_eq!(p.backoff_cap(4), Duration::from_millis(800));
        assert_eq!(p.backoff_cap(5), Duration::from_secs(1));
        assert_eq!(p.backoff_cap(200), Duration::from_secs(1));
        for retry in 1..20 {
            assert!(p.backoff(retry) <= p.backoff_cap(retry));
        }
        // Full jitter actually varies.
        let samples: std::collections::HashSet<_> = (0..50).map(|_| p.backoff(5)).collect();
        assert!(samples.len() > 1);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(30))),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn transient_classes() {
        assert!(GeminiError::NotFound { what: "x".into() }.is_transient());
        assert!(
            GeminiError::Transient {
                what: "x".into(),
                attempts: 1,
                last: String::new()
            }
            .is_transient()
        );
        assert!(GeminiError::Stream("x".into()).is_transient());
        assert!(
            !GeminiError::Fatal {
                status: 401,
                message: String::new()
            }
            .is_transient()
        );
        assert!(!GeminiError::Decode("x".into()).is_transient());
        assert!(!GeminiError::Invalid("x".into()).is_transient());
    }

    #[test]
    fn content_range_parsing() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, "bytes 100-199/200".parse().unwrap());
        assert_eq!(content_range_start(&h), Some(100));
        assert_eq!(content_range_total(&h), Some(200));
        h.insert(CONTENT_RANGE, "bytes */42".parse().unwrap());
        assert_eq!(content_range_start(&h), None);
        assert_eq!(content_range_total(&h), Some(42));
    }

    #[test]
    fn ids_are_checked_before_going_into_a_path() {
        assert!(check_resource_id("batches/abc-1_2", "batches/").is_ok());
        assert!(check_resource_id("batches/..", "batches/").is_err());
        assert!(check_resource_id("batches/", "batches/").is_err());
        assert!(check_resource_id("batches/a%2f", "batches/").is_err());
        assert!(check_resource_id("batches/a b", "batches/").is_err());
    }
}
