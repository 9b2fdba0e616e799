//! Where dynamic-webhook verification keys come from: Gemini's JWKS over HTTP (cached), or a fixed
//! set (a JWKS file, the local key of `gemini-hooks dev`). The JWT rules themselves are pure
//! (`domain::verify::jwt`).

use std::sync::Arc;

use async_trait::async_trait;
use jsonwebtoken::DecodingKey;

use crate::domain::verify::VerifyError;

/// A source of RS256 verification keys by `kid`.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// The key for `kid` at `now_secs` (the caller's clock, for caches). An unknown `kid` is
    /// [`VerifyError::UnknownKeyId`]; a source that cannot be reached is
    /// [`VerifyError::JwksUnavailable`].
    async fn key(&self, kid: &str, now_secs: i64) -> Result<Arc<DecodingKey>, VerifyError>;

    /// Where the keys come from (a URL, a file), for logs.
    fn describe(&self) -> String;
}
