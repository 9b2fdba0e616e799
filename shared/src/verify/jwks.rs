//! RS256 JWT verification against a JWKS (dynamic webhooks).
//!
//! Deliveries for per-job `webhook_config.uris` carry a bare compact JWS in `webhook-signature`,
//! signed RS256 with a key published in Gemini's JWKS and selected by `kid`
//! (gemini-facts §2). The algorithm is pinned before any key is looked up, so a token can never
//! choose how it is checked. Keys are cached for the life of the process (the verifier lives in
//! the Lambda's `main`), and refetches on an unknown `kid` are rate limited and single-flight, so
//! forged `kid`s cannot turn the receiver into an amplifier against the JWKS endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use super::{HEADER_SIGNATURE, VerifyError};

/// Where Gemini's documented samples fetch the signing keys from.
pub const DEFAULT_JWKS_URL: &str =
    "https://generativelanguage.googleapis.com/.well-known/jwks.json";

/// Longest token we are willing to parse; real ones are well under 2 KiB, and the bound keeps
/// base64/JSON work on hostile input small.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Largest JWKS body we read; a key set is a few KiB, anything near this is not a key set.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The only algorithm Gemini uses for dynamic webhooks.
const ALLOWED_ALG: &str = "RS256";

/// Verified claims (the JWT payload object).
pub type Claims = serde_json::Map<String, Value>;

/// Settings for dynamic-webhook verification (`WEBHOOK_JWKS_URL`, `WEBHOOK_JWT_AUDIENCE`,
/// `WEBHOOK_JWT_ISSUER`, DESIGN §3).
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// JWKS endpoint.
    pub jwks_url: String,
    /// Required `aud` (`WEBHOOK_JWT_AUDIENCE`); unchecked when `None` because Gemini does not
    /// document what it puts there.
    pub audience: Option<String>,
    /// Required `iss` (`WEBHOOK_JWT_ISSUER`); unchecked when `None`, same reason.
    pub issuer: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway_secs: u64,
    /// Minimum time between two JWKS fetches (unknown `kid`, proactive refresh or retry after
    /// a failure).
    pub min_refetch_interval_secs: u64,
    /// Age after which a cached key set is refreshed proactively; a smaller `Cache-Control:
    /// max-age` from the endpoint wins.
    pub cache_ttl_secs: u64,
    /// Whole-request bound on a JWKS fetch, body included.
    pub fetch_timeout: Duration,
}

impl JwtSettings {
    /// Settings for `jwks_url` with the defaults: 60 s leeway, refetch at most every 30 s,
    /// refresh after an hour, 5 s fetch timeout, no audience or issuer check.
    pub fn new(jwks_url: impl Into<String>) -> Self {
        Self {
            jwks_url: jwks_url.into(),
            audience: None,
            issuer: None,
            leeway_secs: 60,
            min_refetch_interval_secs: 30,
            cache_ttl_secs: 3600,
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self::new(DEFAULT_JWKS_URL)
    }
}

/// True when a signature header value is shaped like a compact JWS (three base64url segments,
/// no `v1,`). The signature segment may be empty so that unsigned (`alg: none`) tokens still
/// take the JWT path and are rejected there with a precise error.
pub fn looks_like_jwt(signature_header: &str) -> bool {
    let value = signature_header.trim();
    if value.starts_with("v1,") {
        return false;
    }
    let mut parts = value.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !header.is_empty()
        && !payload.is_empty()
        && is_base64url(header)
        && is_base64url(payload)
        && is_base64url(signature)
}

fn is_base64url(segment: &str) -> bool {
    segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Keys from the last good JWKS, plus the bookkeeping for the refetch rate limit.
#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// `now_secs` of the last successful fetch.
    fetched_at: Option<i64>,
    /// How long the current set counts as fresh.
    ttl_secs: u64,
    /// `now_secs` of the last fetch attempt, successful or not.
    last_attempt: Option<i64>,
    /// Why the last attempt failed, if it did; reported while the rate limit holds.
    last_failure: Option<String>,
}

impl KeyCache {
    fn may_fetch(&self, now: i64, interval: u64) -> bool {
        // `abs_diff`: a clock that jumped backwards must not freeze refetches until it catches up.
        self.last_attempt
            .is_none_or(|then| now.abs_diff(then) >= interval)
    }

    fn is_stale(&self, now: i64) -> bool {
        self.fetched_at
            .is_none_or(|then| now.abs_diff(then) >= self.ttl_secs)
    }
}

/// A freshly fetched key set.
struct Fetched {
    keys: HashMap<String, Arc<DecodingKey>>,
    skipped: usize,
    max_age: Option<u64>,
}

/// Verifies dynamic-webhook JWTs. Build one per process and share it: the key cache is what
/// keeps the JWKS endpoint out of the request path.
pub struct JwksVerifier {
    settings: JwtSettings,
    http: reqwest::Client,
    validation: Validation,
    cache: RwLock<KeyCache>,
    /// Single-flight guard: held for the duration of a fetch so concurrent callers wait for its
    /// result instead of fetching again.
    fetch_lock: Mutex<()>,
}

impl std::fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksVerifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl JwksVerifier {
    /// A verifier with an empty cache; nothing is fetched until the first token arrives.
    pub fn new(settings: JwtSettings, http: reqwest::Client) -> Self {
        // Signature only: time and audience rules are ours, against the injected clock.
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        Self {
            settings,
            http,
            validation,
            cache: RwLock::new(KeyCache::default()),
            fetch_lock: Mutex::new(()),
        }
    }

    /// The settings this verifier was built with.
    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// Verifies `token` (the `webhook-signature` value) and returns its claims. `now_secs` is
    /// the caller's clock, used for `exp`/`nbf`/`iat` and for the refetch rate limit.
    pub async fn verify(&self, token: &str, now_secs: i64) -> Result<Claims, VerifyError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::MalformedHeader {
                header: HEADER_SIGNATURE,
                reason: format!("longer than {MAX_TOKEN_BYTES} bytes"),
            });
        }
        let kid = pinned_kid(token)?;
        let key = self.key_for(&kid, now_secs).await?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map_err(|err| VerifyError::InvalidJwt(describe(&err).to_owned()))?
            .claims;
        self.check_claims(&claims, now_secs)?;
        Ok(claims)
    }

    /// Time, issuer and audience rules; only run on claims whose signature already verified.
    fn check_claims(&self, claims: &Claims, now: i64) -> Result<(), VerifyError> {
        let leeway = i64::try_from(self.settings.leeway_secs).unwrap_or(i64::MAX);
        let exp = numeric_date(claims, "exp")?
            .ok_or_else(|| VerifyError::InvalidJwt("missing `exp` claim".to_owned()))?;
        if exp.saturating_add(leeway) < now {
            return Err(VerifyError::JwtExpired);
        }
        for name in ["nbf", "iat"] {
            if numeric_date(claims, name)?.is_some_and(|t| t.saturating_sub(leeway) > now) {
                return Err(VerifyError::JwtNotYetValid);
            }
        }
        if let Some(expected) = &self.settings.issuer {
            let ok = matches!(claims.get("iss"), Some(Value::String(iss)) if iss == expected);
            if !ok {
                return Err(VerifyError::JwtClaimMismatch("iss"));
            }
        }
        if let Some(expected) = &self.settings.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => aud == expected,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expected)),
                _ => false,
            };
            if !ok {
                return Err(VerifyError::JwtClaimMismatch("aud"));
            }
        }
        Ok(())
    }

    /// The key for `kid`: from the cache, or after a (rate-limited, single-flight) refetch.
    async fn key_for(&self, kid: &str, now: i64) -> Result<Arc<DecodingKey>, VerifyError> {
        let (cached, stale) = {
            let cache = self.cache.read().await;
            (cache.keys.get(kid).cloned(), cache.is_stale(now))
        };
        if let Some(key) = cached {
            if !stale {
                return Ok(key);
            }
            // Stale but usable: one caller refreshes, everyone else goes on with what we have.
            if let Ok(_flight) = self.fetch_lock.try_lock() {
                let due = {
                    let cache = self.cache.read().await;
                    cache.is_stale(now)
                        && cache.may_fetch(now, self.settings.min_refetch_interval_secs)
                };
                if due {
                    // A failed refresh keeps the old keys (and is logged), so ignore it here.
                    let _ = self.refresh(now).await;
                }
            } else {
                return Ok(key);
            }
            // A successful refresh is authoritative: a kid it dropped is revoked.
            let cache = self.cache.read().await;
            return cache
                .keys
                .get(kid)
                .cloned()
                .ok_or_else(|| VerifyError::UnknownKeyId(printable(kid)));
        }

        let _flight = self.fetch_lock.lock().await;
        {
            let cache = self.cache.read().await;
            // Whoever held the lock before us may have fetched this kid already.
            if let Some(key) = cache.keys.get(kid) {
                return Ok(Arc::clone(key));
            }
            if !cache.may_fetch(now, self.settings.min_refetch_interval_secs) {
                return Err(match &cache.last_failure {
                    Some(reason) => VerifyError::JwksUnavailable(reason.clone()),
                    None => VerifyError::UnknownKeyId(printable(kid)),
                });
            }
        }
        self.refresh(now).await?;
        let cache = self.cache.read().await;
        cache
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| VerifyError::UnknownKeyId(printable(kid)))
    }

    /// Fetches the JWKS and replaces the cached keys on success. Callers hold `fetch_lock`.
    async fn refresh(&self, now: i64) -> Result<(), VerifyError> {
        let outcome = match tokio::time::timeout(self.settings.fetch_timeout, self.fetch()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "timed out after {} ms",
                self.settings.fetch_timeout.as_millis()
            )),
        };
        let mut cache = self.cache.write().await;
        cache.last_attempt = Some(now);
        match outcome {
            Ok(fetched) => {
                let ttl = fetched.max_age.map_or(self.settings.cache_ttl_secs, |age| {
                    age.min(self.settings.cache_ttl_secs)
                });
                tracing::info!(
                    jwks_url = %self.settings.jwks_url,
                    keys = fetched.keys.len(),
                    skipped = fetched.skipped,
                    ttl_secs = ttl,
                    "JWKS refreshed"
                );
                cache.keys = fetched.keys;
                cache.fetched_at = Some(now);
                cache.ttl_secs = ttl;
                cache.last_failure = None;
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(
                    jwks_url = %self.settings.jwks_url,
                    reason = %reason,
                    cached_keys = cache.keys.len(),
                    "JWKS fetch failed"
                );
                cache.last_failure = Some(reason.clone());
                Err(VerifyError::JwksUnavailable(reason))
            }
        }
    }

    /// One GET of the JWKS, body bounded by [`MAX_JWKS_BYTES`].
    async fn fetch(&self) -> Result<Fetched, String> {
        let mut response = self
            .http
            .get(&self.settings.jwks_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.settings.fetch_timeout)
            .send()
            .await
            .map_err(|err| format!("request failed: {}", err.without_url()))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(format!("HTTP status {}", status.as_u16()));
        }
        let too_large = || format!("body exceeds {MAX_JWKS_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err(too_large());
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .and_then(cache_control_max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| format!("reading body failed: {}", err.without_url()))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let (keys, skipped) = parse_jwks(&body)?;
        Ok(Fetched {
            keys,
            skipped,
            max_age,
        })
    }
}

/// Reads the JOSE header without trusting anything else in the token: rejects every `alg`
/// but RS256 (before any key is chosen, so neither `none` nor HMAC-with-a-public-key can get
/// in) and returns the `kid`. Parsed by hand because `jsonwebtoken::decode_header` cannot
/// represent `alg: none` and would hide it behind a generic JSON error.
fn pinned_kid(token: &str) -> Result<String, VerifyError> {
    let invalid = |reason: &str| VerifyError::InvalidJwt(reason.to_owned());
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("not a compact JWS (three dot-separated segments)"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| invalid("header is not base64url"))?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| invalid("header is not a JSON object"))?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg,
        _ => return Err(invalid("header has no `alg`")),
    };
    if alg != ALLOWED_ALG {
        return Err(VerifyError::DisallowedAlgorithm(printable(alg)));
    }
    // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
    if header.contains_key("crit") {
        return Err(invalid("header has a `crit` parameter"));
    }
    match header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => Ok(kid.clone()),
        _ => Err(invalid("header has no `kid`")),
    }
}

/// A NumericDate claim (RFC 7519 §2), which may be fractional; present but not a number is an
/// error rather than "absent", so a token cannot dodge a time check with `"exp": "never"`.
fn numeric_date(claims: &Claims, name: &str) -> Result<Option<i64>, VerifyError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    if let Some(secs) = value.as_i64() {
        return Ok(Some(secs));
    }
    if value.as_u64().is_some() {
        return Ok(Some(i64::MAX));
    }
    match value.as_f64() {
        // `as` saturates, and floor keeps fractional `exp` on the strict side.
        Some(secs) if secs.is_finite() => Ok(Some(secs.floor() as i64)),
        _ => Err(VerifyError::InvalidJwt(format!(
            "claim `{name}` is not a NumericDate"
        ))),
    }
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<Value>,
}

/// Usable RS256 keys by `kid`, and how many entries were skipped. Entries are parsed one by
/// one so a single odd key (new `kty`, bad field) cannot take the whole set down.
fn parse_jwks(body: &[u8]) -> Result<(HashMap<String, Arc<DecodingKey>>, usize), String> {
    let raw: RawJwks =
        serde_json::from_slice(body).map_err(|err| format!("invalid JWKS JSON: {err}"))?;
    let mut keys = HashMap::new();
    let mut skipped = 0;
    for entry in raw.keys {
        let usable = serde_json::from_value::<Jwk>(entry)
            .ok()
            .and_then(|jwk| usable_rs256_key(&jwk));
        match usable {
            Some((kid, key)) => {
                keys.entry(kid).or_insert_with(|| Arc::new(key));
            }
            None => skipped += 1,
        }
    }
    if keys.is_empty() {
        // Almost certainly a broken response; keep the keys we have instead of wiping them.
        return Err("JWKS holds no usable RS256 signing key".to_owned());
    }
    Ok((keys, skipped))
}

/// Only RSA keys meant for RS256 signatures: an `oct` or otherwise-labelled key must never
/// become a verification key (that is how HMAC key-confusion attacks start).
fn usable_rs256_key(jwk: &Jwk) -> Option<(String, DecodingKey)> {
    let kid = jwk.common.key_id.as_deref().filter(|kid| !kid.is_empty())?;
    if !matches!(jwk.algorithm, AlgorithmParameters::RSA(_)) {
        return None;
    }
    if jwk
        .common
        .key_algorithm
        .is_some_and(|alg| alg != KeyAlgorithm::RS256)
    {
        return None;
    }
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|usage| *usage != PublicKeyUse::Signature)
    {
        return None;
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid.to_owned(), key))
}

/// `max-age` from a `Cache-Control` value, if any.
fn cache_control_max_age(value: &str) -> Option<u64> {
    value.split(',').find_map(|directive| {
        let (name, secs) = directive.trim().split_once('=')?;
        if name.trim().eq_ignore_ascii_case("max-age") {
            secs.trim().trim_matches('"').parse().ok()
        } else {
            None
        }
    })
}

/// A fixed description of a `jsonwebtoken` failure; its own messages are not needed and this
/// keeps token fragments out of errors and logs.
fn describe(err: &jsonwebtoken::errors::Error) -> &'static str {
    match err.kind() {
        ErrorKind::InvalidSignature => "signature does not verify",
        ErrorKind::InvalidToken => "not a compact JWS",
        ErrorKind::Base64(_) => "a segment is not base64url",
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => "payload is not a JSON object",
        ErrorKind::InvalidAlgorithm => "algorithm does not match the key",
        ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => "the JWKS key is not usable",
        _ => "token rejected",
    }
}

/// Attacker-supplied header text made safe for an error message: bounded, printable ASCII.
fn printable(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}
