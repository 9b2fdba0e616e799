//! Configuration of the Gemini HTTP client: the key, the base URL, timeouts and the backoff.

use std::time::Duration;

use rand::Rng;

use super::DEFAULT_BASE_URL;

/// The Gemini API key. `Debug` is redacted so settings can be logged safely.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The secret itself; only for the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl From<String> for ApiKey {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for ApiKey {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct GeminiSettings {
    /// Scheme and host, e.g. [`DEFAULT_BASE_URL`]; a trailing `/` is ignored.
    pub base_url: String,
    pub api_key: ApiKey,
    pub retry: RetryPolicy,
    /// Per attempt for JSON calls (headers and body); for downloads, the wait for headers and
    /// the longest silence between two chunks.
    pub request_timeout: Duration,
}

impl GeminiSettings {
    /// Production defaults around `api_key`.
    pub fn new(api_key: impl Into<ApiKey>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: api_key.into(),
            retry: RetryPolicy::default(),
            // Under the consumer's deadline margin, so one attempt fits in what is left.
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// Exponential backoff with full jitter (sleep uniformly in `[0, min(max, base·2^n)]`), so many
/// consumers hitting the same 429 spread out instead of retrying in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first; 0 is treated as 1.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Upper bound of the sleep before retry number `retry` (1 = the first retry).
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// A jittered sleep before retry number `retry`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = u64::try_from(self.backoff_cap(retry).as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::rng().random_range(0..=cap))
    }

    /// The server's `Retry-After` wins when present (capped by `max_delay`).
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        retry_after.map_or_else(|| self.backoff(retry), |d| d.min(self.max_delay))
    }
}
