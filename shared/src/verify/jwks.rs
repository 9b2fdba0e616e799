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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const NOW: i64 = 1_800_000_000;

    // ---- keys and tokens -------------------------------------------------------------------

    struct TestKey {
        private_pem: String,
        public_pem: String,
        public_der: Vec<u8>,
        n: String,
        e: String,
    }

    /// PEM text (RFC 7468), 64-character lines.
    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut text = format!("-----BEGIN {label}-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            text.push_str(std::str::from_utf8(chunk).unwrap());
            text.push('\n');
        }
        text.push_str(&format!("-----END {label}-----\n"));
        text
    }

    fn generate() -> TestKey {
        let private = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = private.public_key();
        let pkcs8: Pkcs8V1Der<'static> = private.as_der().unwrap();
        let spki: PublicKeyX509Der<'static> = public.as_der().unwrap();
        TestKey {
            private_pem: pem("PRIVATE KEY", pkcs8.as_ref()),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
            // `as_ref` is the PKCS#1 `RSAPublicKey` DER.
            public_der: public.as_ref().to_vec(),
            n: URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            e: URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        }
    }

    /// Key generation is slow in debug builds: two keys per test process, shared.
    fn key_a() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(generate)
    }

    fn key_b() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(generate)
    }

    fn jwk(key: &TestKey, kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": key.n, "e": key.e})
    }

    fn jwks(keys: &[Value]) -> String {
        json!({ "keys": keys }).to_string()
    }

    fn claims() -> Value {
        json!({"exp": NOW + 3600, "iat": NOW, "type": "batch.succeeded", "data": {"id": "batches/1"}})
    }

    fn sign(key: &TestKey, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        let encoding = EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).unwrap();
        encode(&header, claims, &encoding).unwrap()
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn hand_token(header: &Value, claims: &Value, signature: &str) -> String {
        format!("{}.{}.{signature}", b64(header), b64(claims))
    }

    // ---- a tiny JWKS server ----------------------------------------------------------------

    #[derive(Clone)]
    enum Reply {
        Jwks(String),
        /// Body with no `content-length`, ended by closing the connection.
        Unsized(String),
        Status(u16),
        Hang,
    }

    struct ServerState {
        reply: Reply,
        delay: Duration,
        cache_control: Option<String>,
    }

    struct FakeJwks {
        url: String,
        hits: Arc<AtomicUsize>,
        state: Arc<std::sync::Mutex<ServerState>>,
    }

    impl FakeJwks {
        async fn start(body: String) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!(
                "http://{}/.well-known/jwks.json",
                listener.local_addr().unwrap()
            );
            let hits = Arc::new(AtomicUsize::new(0));
            let state = Arc::new(std::sync::Mutex::new(ServerState {
                reply: Reply::Jwks(body),
                delay: Duration::ZERO,
                cache_control: None,
            }));
            let (task_hits, task_state) = (Arc::clone(&hits), Arc::clone(&state));
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(answer(
                        socket,
                        Arc::clone(&task_hits),
                        Arc::clone(&task_state),
                    ));
                }
            });
            Self { url, hits, state }
        }

        fn serve(&self, reply: Reply) {
            self.state.lock().unwrap().reply = reply;
        }

        fn set_delay(&self, delay: Duration) {
            self.state.lock().unwrap().delay = delay;
        }

        fn set_cache_control(&self, value: &str) {
            self.state.lock().unwrap().cache_control = Some(value.to_owned());
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }

        fn settings(&self) -> JwtSettings {
            let mut settings = JwtSettings::new(self.url.clone());
            settings.fetch_timeout = Duration::from_secs(3);
            settings
        }

        fn verifier(&self) -> JwksVerifier {
            verifier(self.settings())
        }
    }

    fn verifier(settings: JwtSettings) -> JwksVerifier {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        JwksVerifier::new(settings, http)
    }

    async fn answer(
        mut socket: TcpStream,
        hits: Arc<AtomicUsize>,
        state: Arc<std::sync::Mutex<ServerState>>,
    ) {
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let (reply, delay, cache_control) = {
            let state = state.lock().unwrap();
            (
                state.reply.clone(),
                state.delay,
                state.cache_control.clone(),
            )
        };
        tokio::time::sleep(delay).await;
        let cache_control = cache_control
            .map(|value| format!("cache-control: {value}\r\n"))
            .unwrap_or_default();
        let response = match reply {
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Reply::Status(code) => {
                format!("HTTP/1.1 {code} Oops\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            }
            Reply::Jwks(body) => format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{cache_control}\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            ),
            Reply::Unsized(body) => format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{body}"
            ),
        };
        let _ = socket.write_all(response.as_bytes()).await;
        let _ = socket.shutdown().await;
    }

    async fn server_with_a() -> FakeJwks {
        FakeJwks::start(jwks(&[jwk(key_a(), "k1")])).await
    }

    // ---- shape -----------------------------------------------------------------------------

    #[test]
    fn looks_like_jwt_accepts_compact_jws_only() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2ln-_"));
        assert!(looks_like_jwt("  eyJh.eyJl.c2ln  "));
        assert!(
            looks_like_jwt("eyJh.eyJl."),
            "unsigned tokens take the JWT path"
        );
        assert!(!looks_like_jwt(
            "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="
        ));
        assert!(!looks_like_jwt("v1,a.b.c"));
        assert!(!looks_like_jwt("v1,abc v1,def"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt(".b.c"));
        assert!(!looks_like_jwt("a..c"));
        assert!(!looks_like_jwt("a+/.b.c"));
        assert!(!looks_like_jwt("a=.b.c"));
        assert!(!looks_like_jwt("a.b c.d"));
        assert!(!looks_like_jwt(""));
    }

    #[test]
    fn cache_control_max_age_is_read() {
        assert_eq!(cache_control_max_age("public, max-age=19800"), Some(19800));
        assert_eq!(
            cache_control_max_age("Max-Age = 5 , must-revalidate"),
            Some(5)
        );
        assert_eq!(cache_control_max_age("no-cache"), None);
        assert_eq!(cache_control_max_age("max-age=soon"), None);
    }

    // ---- signature and algorithm -----------------------------------------------------------

    #[tokio::test]
    async fn valid_token_verifies_and_keys_are_cached() {
        let server = server_with_a().await;
        let verifier = server.verifier();
        assert_eq!(server.hits(), 0, "no network at construction");

        let token = sign(key_a(), Some("k1"), &claims());
        let verified = verifier.verify(&token, NOW).await.unwrap();
        assert_eq!(verified.get("type"), Some(&json!("batch.succeeded")));
        assert_eq!(verified.get("data"), Some(&json!({"id": "batches/1"})));
        assert_eq!(server.hits(), 1);

        verifier.verify(&token, NOW + 1000).await.unwrap();
        assert_eq!(server.hits(), 1, "second verify uses the cache");
    }

    #[tokio::test]
    async fn foreign_key_with_the_same_kid_is_rejected() {
        let server = server_with_a().await;
        let token = sign(key_b(), Some("k1"), &claims());
        let err = server.verifier().verify(&token, NOW).await.unwrap_err();
        assert!(matches!(err, VerifyError::InvalidJwt(_)), "{err:?}");
    }

    #[tokio::test]
    async fn tampered_payload_is_rejected() {
        let server = server_with_a().await;
        let verifier = server.verifier();
        let token = sign(key_a(), Some("k1"), &claims());
        verifier.verify(&token, NOW).await.unwrap();

        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims();
        forged["data"]["id"] = json!("batches/evil");
        let tampered = format!("{}.{}.{}", parts[0], b64(&forged), parts[2]);
        let err = verifier.verify(&tampered, NOW).await.unwrap_err();
        assert_eq!(
            err,
            VerifyError::InvalidJwt("signature does not verify".into())
        );
    }

    #[tokio::test]
    async fn alg_none_and_other_algorithms_are_rejected_before_any_fetch() {
        let server = server_with_a().await;
        let verifier = server.verifier();
        let none = hand_token(&json!({"alg": "none", "kid": "k1"}), &claims(), "");
        assert_eq!(
            verifier.verify(&none, NOW).await.unwrap_err(),
            VerifyError::DisallowedAlgorithm("none".into())
        );
        for alg in [
            "HS256", "HS384", "HS512", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
            "ES384", "EdDSA", "rs256", "None",
        ] {
            let token = hand_token(&json!({"alg": alg, "kid": "k1"}), &claims(), "c2ln");
            assert_eq!(
                verifier.verify(&token, NOW).await.unwrap_err(),
                VerifyError::DisallowedAlgorithm(alg.into()),
                "{alg}"
            );
        }
        assert_eq!(
            server.hits(),
            0,
            "the algorithm is pinned before key lookup"
        );
    }

    #[tokio::test]
    async fn hs256_signed_with_the_rsa_public_key_is_rejected() {
        // The JWKS even offers the public key bytes as an `oct` key under another kid.
        let oct =
            json!({"kty": "oct", "kid": "k-oct", "k": URL_SAFE_NO_PAD.encode(&key_a().public_pem)});
        let server = FakeJwks::start(jwks(&[jwk(key_a(), "k1"), oct])).await;
        let verifier = server.verifier();
        verifier
            .verify(&sign(key_a(), Some("k1"), &claims()), NOW)
            .await
            .unwrap();

        let secrets: [&[u8]; 3] = [
            key_a().public_pem.as_bytes(),
            &key_a().public_der,
            key_a().n.as_bytes(),
        ];
        for secret in secrets {
            for kid in ["k1", "k-oct"] {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some(kid.to_owned());
                let token = encode(&header, &claims(), &EncodingKey::from_secret(secret)).unwrap();
                assert_eq!(
                    verifier.verify(&token, NOW).await.unwrap_err(),
                    VerifyError::DisallowedAlgorithm("HS256".into())
                );
            }
        }
        // And the `oct` entry never became a key, even for an RS256 token.
        let token = sign(key_a(), Some("k-oct"), &claims());
        assert_eq!(
            verifier.verify(&token, NOW).await.unwrap_err(),
            VerifyError::UnknownKeyId("k-oct".into())
        );
    }

    #[tokio::test]
    async fn jwks_entries_not_meant_for_rs256_signatures_are_never_used() {
        let labelled = |kid: &str, field: &str, value: Value| {
            let mut entry = jwk(key_a(), kid);
            entry[field] = value;
            entry
        };
        let mut no_labels = jwk(key_a(), "k-bare");
        no_labels.as_object_mut().unwrap().remove("use");
        no_labels.as_object_mut().unwrap().remove("alg");
        let set = jwks(&[
            jwk(key_a(), "k1"),
            labelled("k-enc", "use", json!("enc")),
            labelled("k-hs", "alg", json!("HS256")),
            labelled("k-rs384", "alg", json!("RS384")),
            labelled("k-ec", "kty", json!("EC")),
            labelled("k-sign-only", "key_ops", json!(["sign"])),
            labelled("k-verify", "key_ops", json!(["verify"])),
            json!({"kty": "RSA", "kid": 7, "n": key_a().n, "e": key_a().e}),
            json!({"kty": "RSA", "kid": "k-no-n", "e": key_a().e}),
            no_labels,
        ]);
        let server = FakeJwks::start(set).await;
        let verifier = server.verifier();
        for kid in ["k1", "k-verify", "k-bare"] {
            let token = sign(key_a(), Some(kid), &claims());
            verifier.verify(&token, NOW).await.unwrap();
        }
        for kid in ["k-enc", "k-hs", "k-rs384", "k-ec", "k-sign-only", "k-no-n"] {
            let token = sign(key_a(), Some(kid), &claims());
            assert_eq!(
                verifier.verify(&token, NOW).await.unwrap_err(),
                VerifyError::UnknownKeyId(kid.into()),
                "{kid}"
            );
        }
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn missing_kid_and_crit_header_are_invalid() {
        let server = server_with_a().await;
        let verifier = server.verifier();
        let token = sign(key_a(), None, &claims());
        assert_eq!(
            verifier.verify(&token, NOW).await.unwrap_err(),
            VerifyError::InvalidJwt("header has no `kid`".into())
        );
        let empty_kid = hand_token(&json!({"alg": "RS256", "kid": ""}), &claims(), "c2ln");
        assert!(matches!(
            verifier.verify(&empty_kid, NOW).await.unwrap_err(),
            VerifyError::InvalidJwt(_)
        ));
        let crit = hand_token(
            &json!({"alg": "RS256", "kid": "k1", "crit": ["b64"], "b64": false}),
            &claims(),
            "c2ln",
        );
        assert!(matches!(
            verifier.verify(&crit, NOW).await.unwrap_err(),
            VerifyError::InvalidJwt(_)
        ));
        assert_eq!(server.hits(), 0);
    }

    #[tokio::test]
    async fn garbage_tokens_are_invalid() {
        let server = server_with_a().await;
        let verifier = server.verifier();
        let not_object = hand_token(&json!(["RS256"]), &claims(), "c2ln");
        let no_alg = hand_token(&json!({"kid": "k1"}), &claims(), "c2ln");
        let alg_number = hand_token(&json!({"alg": 256, "kid": "k1"}), &claims(), "c2ln");
        for token in [
            "",
            "garbage",
            "a.b",
            "a.b.c.d",
            "!!!.???.***",
            "eyJhbGciOiJSUzI1NiJ9",
            "bm90IGpzb24.e30.c2ln",
            &not_object,
            &no_alg,
            &alg_number,
        ] {
            let err = verifier.verify(token, NOW).await.unwrap_err();
            assert!(
                matches!(err, VerifyError::InvalidJwt(_)),
                "{token:?}: {err:?}"
            );
        }
        assert_eq!(server.hits(), 0);

        // Well-signed, but the payload is not a claims object.
        let array = sign(key_a(), Some("k1"), &json!([1, 2]));
        assert!(matches!(
            verifier.verify(&array, NOW).await.unwrap_err(),
            VerifyError::InvalidJwt(_)
        ));
        // Signature segment that is not base64url.
        let token = sign(key_a(), Some("k1"), &claims());
        let bad_sig = format!("{token}!");
        assert!(matches!(
            verifier.verify(&bad_sig, NOW).await.unwrap_err(),
            VerifyError::InvalidJwt(_)
        ));
    }

    #[tokio::test]
    async fn oversized_token_is_a_malformed_header() {
        let server = server_with_a().await;
        let verifier = server.verifier();
        let mut big = claims();
        big["pad"] = json!("x".repeat(MAX_TOKEN_BYTES));
        let token = sign(key_a(), Some("k1"), &big);
        let err = verifier.verify(&token, NOW).await.unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::MalformedHeader {
                    header: HEADER_SIGNATURE,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(server.hits(), 0);
    }

    // ---- cache, refetch, failures ----------------------------------------------------------

    #[tokio::test]
    async fn unknown_kid_refetches_at_most_once_per_interval() {
        let server = server_with_a().await;
        let verifier = server.verifier();
        let t0 = NOW;
        verifier
            .verify(&sign(key_a(), Some("k1"), &claims()), t0)
            .await
            .unwrap();
        assert_eq!(server.hits(), 1);

        let ghost = sign(key_a(), Some("ghost"), &claims());
        assert_eq!(
            verifier.verify(&ghost, t0 + 31).await.unwrap_err(),
            VerifyError::UnknownKeyId("ghost".into())
        );
        assert_eq!(server.hits(), 2, "unknown kid refetches once");

        let ghost2 = sign(key_a(), Some("ghost2"), &claims());
        assert_eq!(
            verifier.verify(&ghost2, t0 + 40).await.unwrap_err(),
            VerifyError::UnknownKeyId("ghost2".into())
        );
        assert_eq!(server.hits(), 2, "no refetch within the interval");

        assert!(verifier.verify(&ghost2, t0 + 61).await.is_err());
        assert_eq!(server.hits(), 3, "allowed again after the interval");

        // Known kids are unaffected by all this.
        verifier
            .verify(&sign(key_a(), Some("k1"), &claims()), t0 + 62)
            .await
            .unwrap();
        assert_eq!(server.hits(), 3);
    }

    #[tokio::test]
    async fn key_rotation_new_kid_verifies_after_refetch_and_dropped_kid_is_revoked() {
        let server = server_with_a().await;
        let verifier = server.verifier();
        let old = sign(key_a(), Some("k1"), &claims());
        let new = sign(key_b(), Some("k2"), &claims());
        verifier.verify(&old, NOW).await.unwrap();

        server.serve(Reply::Jwks(jwks(&[jwk(key_b(), "k2")])));
        assert_eq!(
            verifier.verify(&new, NOW + 5).await.unwrap_err(),
            VerifyError::UnknownKeyId("k2".into()),
            "rate limit still holds"
        );
        assert_eq!(server.hits(), 1);

        verifier.verify(&new, NOW + 31).await.unwrap();
        assert_eq!(server.hits(), 2);
        assert_eq!(
            verifier.verify(&old, NOW + 32).await.unwrap_err(),
            VerifyError::UnknownKeyId("k1".into())
        );
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test]
    async fn jwks_failure_is_unavailable_but_cached_keys_keep_working() {
        let server = server_with_a().await;
        let mut settings = server.settings();
        settings.cache_ttl_secs = 600;
        let verifier = verifier(settings);
        let known = sign(key_a(), Some("k1"), &claims());
        let unknown = sign(key_b(), Some("k2"), &claims());
        verifier.verify(&known, NOW).await.unwrap();

        server.serve(Reply::Status(500));
        let err = verifier.verify(&unknown, NOW + 31).await.unwrap_err();
        assert_eq!(err, VerifyError::JwksUnavailable("HTTP status 500".into()));
        assert_eq!(err.class(), super::super::FailureClass::Unavailable);
        assert_eq!(server.hits(), 2);
        verifier.verify(&known, NOW + 31).await.unwrap();

        // Within the interval the failure is remembered, not retried.
        assert!(matches!(
            verifier.verify(&unknown, NOW + 40).await.unwrap_err(),
            VerifyError::JwksUnavailable(_)
        ));
        assert_eq!(server.hits(), 2);

        // Past the TTL the known key is due for a refresh; the refresh fails, the key still works.
        verifier.verify(&known, NOW + 700).await.unwrap();
        assert_eq!(server.hits(), 3);
        verifier.verify(&known, NOW + 701).await.unwrap();
        assert_eq!(server.hits(), 3, "failed refreshes are rate limited too");

        // Once the endpoint recovers, the next allowed refetch picks up the new key.
        server.serve(Reply::Jwks(jwks(&[jwk(key_a(), "k1"), jwk(key_b(), "k2")])));
        verifier.verify(&unknown, NOW + 731).await.unwrap();
        assert_eq!(server.hits(), 4);
    }

    #[tokio::test]
    async fn hanging_jwks_times_out_as_unavailable() {
        let server = server_with_a().await;
        server.serve(Reply::Hang);
        let mut settings = server.settings();
        settings.fetch_timeout = Duration::from_millis(300);
        let verifier = verifier(settings);
        let started = std::time::Instant::now();
        let err = verifier
            .verify(&sign(key_a(), Some("k1"), &claims()), NOW)
            .await
            .unwrap_err();
        assert!(matches!(err, VerifyError::JwksUnavailable(_)), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn bad_jwks_bodies_are_unavailable() {
        let huge = format!(
            "{{\"keys\": [], \"pad\": \"{}\"}}",
            "x".repeat(MAX_JWKS_BYTES)
        );
        let bodies = [
            Reply::Jwks("not json".into()),
            Reply::Jwks(json!({"keys": "nope"}).to_string()),
            Reply::Jwks(jwks(&[])),
            Reply::Jwks(
                json!({"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0"}]}).to_string(),
            ),
            Reply::Jwks(huge.clone()),
            Reply::Unsized(huge),
            Reply::Status(404),
        ];
        let token = sign(key_a(), Some("k1"), &claims());
        for reply in bodies {
            let server = FakeJwks::start(String::new()).await;
            server.serve(reply);
            let err = server.verifier().verify(&token, NOW).await.unwrap_err();
            assert!(matches!(err, VerifyError::JwksUnavailable(_)), "{err:?}");
            assert_eq!(server.hits(), 1);
        }
        // Sanity: the unsized path does deliver a normal-sized set.
        let server = FakeJwks::start(String::new()).await;
        server.serve(Reply::Unsized(jwks(&[jwk(key_a(), "k1")])));
        server.verifier().verify(&token, NOW).await.unwrap();
    }

    #[tokio::test]
    async fn cached_set_is_refreshed_after_max_age() {
        let server = server_with_a().await;
        server.set_cache_control("public, max-age=100");
        let verifier = server.verifier();
        let token = sign(key_a(), Some("k1"), &claims());
        verifier.verify(&token, NOW).await.unwrap();
        verifier.verify(&token, NOW + 99).await.unwrap();
        assert_eq!(server.hits(), 1);
        verifier.verify(&token, NOW + 100).await.unwrap();
        assert_eq!(server.hits(), 2, "max-age below the TTL wins");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_verifies_of_a_new_kid_fetch_once() {
        let server = server_with_a().await;
        server.set_delay(Duration::from_millis(200));
        let verifier = Arc::new(server.verifier());

        // Cold cache.
        let token = sign(key_a(), Some("k1"), &claims());
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (verifier, token) = (Arc::clone(&verifier), token.clone());
                tokio::spawn(async move { verifier.verify(&token, NOW).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(server.hits(), 1);

        // New kid after the interval.
        server.serve(Reply::Jwks(jwks(&[jwk(key_a(), "k1"), jwk(key_b(), "k2")])));
        let token = sign(key_b(), Some("k2"), &claims());
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (verifier, token) = (Arc::clone(&verifier), token.clone());
                tokio::spawn(async move { verifier.verify(&token, NOW + 31).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(server.hits(), 2);
    }

    // ---- claims ----------------------------------------------------------------------------

    fn with(extra: Value) -> Value {
        let mut claims = json!({"exp": NOW + 300});
        for (name, value) in extra.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    }

    #[tokio::test]
    async fn time_claims_are_checked_against_the_injected_clock() {
        let server = server_with_a().await;
        let lenient = server.verifier(); // 60 s leeway
        let mut strict_settings = server.settings();
        strict_settings.leeway_secs = 0;
        let strict = verifier(strict_settings);

        let cases: [(Value, Option<VerifyError>, Option<VerifyError>); 9] = [
            (with(json!({})), None, None),
            (
                with(json!({"exp": NOW - 61})),
                Some(VerifyError::JwtExpired),
                Some(VerifyError::JwtExpired),
            ),
            (
                with(json!({"exp": NOW - 59})),
                None,
                Some(VerifyError::JwtExpired),
            ),
            (with(json!({"exp": NOW})), None, None),
            (
                with(json!({"nbf": NOW + 61})),
                Some(VerifyError::JwtNotYetValid),
                Some(VerifyError::JwtNotYetValid),
            ),
            (
                with(json!({"nbf": NOW + 59})),
                None,
                Some(VerifyError::JwtNotYetValid),
            ),
            (
                with(json!({"iat": NOW + 61})),
                Some(VerifyError::JwtNotYetValid),
                Some(VerifyError::JwtNotYetValid),
            ),
            (
                with(json!({"iat": NOW + 1, "nbf": NOW - 10})),
                None,
                Some(VerifyError::JwtNotYetValid),
            ),
            (
                with(json!({"exp": (NOW as f64) - 0.5})),
                None,
                Some(VerifyError::JwtExpired),
            ),
        ];
        for (claims, lenient_err, strict_err) in cases {
            let token = sign(key_a(), Some("k1"), &claims);
            assert_eq!(
                lenient.verify(&token, NOW).await.err(),
                lenient_err,
                "lenient {claims}"
            );
            assert_eq!(
                strict.verify(&token, NOW).await.err(),
                strict_err,
                "strict {claims}"
            );
        }
    }

    #[tokio::test]
    async fn exp_is_required_and_must_be_a_number() {
        let server = server_with_a().await;
        let verifier = server.verifier();
        for claims in [
            with(json!({"exp": null})),
            with(json!({"exp": "never"})),
            with(json!({"exp": true})),
            with(json!({"nbf": "soon"})),
            with(json!({"iat": [1]})),
        ] {
            let token = sign(key_a(), Some("k1"), &claims);
            let err = verifier.verify(&token, NOW).await.unwrap_err();
            assert!(
                matches!(err, VerifyError::InvalidJwt(_)),
                "{claims}: {err:?}"
            );
        }
        // Absurdly large dates do not overflow.
        let token = sign(key_a(), Some("k1"), &with(json!({"exp": u64::MAX})));
        verifier.verify(&token, NOW).await.unwrap();
        let token = sign(key_a(), Some("k1"), &with(json!({"exp": i64::MIN})));
        assert_eq!(
            verifier.verify(&token, NOW).await.unwrap_err(),
            VerifyError::JwtExpired
        );
    }

    #[tokio::test]
    async fn audience_is_checked_only_when_configured() {
        let server = server_with_a().await;
        let unset = server.verifier();
        let mut settings = server.settings();
        settings.audience = Some("https://hooks.example/gemini".into());
        let set = verifier(settings);
        let mismatch = Some(VerifyError::JwtClaimMismatch("aud"));

        let cases = [
            (with(json!({"aud": "https://hooks.example/gemini"})), None),
            (
                with(json!({"aud": ["other", "https://hooks.example/gemini"]})),
                None,
            ),
            (with(json!({"aud": "other"})), mismatch.clone()),
            (with(json!({"aud": ["other", "more"]})), mismatch.clone()),
            (with(json!({"aud": []})), mismatch.clone()),
            (with(json!({"aud": 5})), mismatch.clone()),
            (with(json!({})), mismatch),
        ];
        for (claims, expected) in cases {
            let token = sign(key_a(), Some("k1"), &claims);
            assert_eq!(set.verify(&token, NOW).await.err(), expected, "{claims}");
            assert_eq!(unset.verify(&token, NOW).await.err(), None, "{claims}");
        }
    }

    #[tokio::test]
    async fn issuer_is_checked_only_when_configured() {
        let server = server_with_a().await;
        let unset = server.verifier();
        let mut settings = server.settings();
        settings.issuer = Some("https://generativelanguage.googleapis.com".into());
        let set = verifier(settings);
        let mismatch = Some(VerifyError::JwtClaimMismatch("iss"));

        let cases = [
            (
                with(json!({"iss": "https://generativelanguage.googleapis.com"})),
                None,
            ),
            (
                with(json!({"iss": "https://evil.example"})),
                mismatch.clone(),
            ),
            (
                with(json!({"iss": ["https://generativelanguage.googleapis.com"]})),
                mismatch.clone(),
            ),
            (with(json!({})), mismatch),
        ];
        for (claims, expected) in cases {
            let token = sign(key_a(), Some("k1"), &claims);
            assert_eq!(set.verify(&token, NOW).await.err(), expected, "{claims}");
            assert_eq!(unset.verify(&token, NOW).await.err(), None, "{claims}");
        }
    }

    #[test]
    fn errors_do_not_echo_the_token() {
        // Attacker-controlled header text is bounded and printable in messages.
        let kid = format!("k\n{}", "x".repeat(500));
        let rendered = printable(&kid);
        assert_eq!(rendered.len(), 64);
        assert!(rendered.starts_with("k?x"));
    }
}
