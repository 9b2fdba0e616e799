//! Adapters of the [`KeySource`] port: Gemini's JWKS over HTTP ([`HttpJwks`]), cached across
//! invocations with refetches on an unknown `kid` rate limited and single-flight (so forged
//! `kid`s cannot turn the receiver into an amplifier against the JWKS endpoint), and a fixed key
//! set ([`StaticJwks`]: a JWKS file, or the local key of `gemini-hooks dev`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::DecodingKey;
use tokio::sync::{Mutex, RwLock};

use crate::domain::verify::VerifyError;
use crate::domain::verify::jwt::{KeySet, parse_jwks, printable};
use crate::ports::keys::KeySource;

/// Where Gemini's documented samples fetch the signing keys from.
pub const DEFAULT_JWKS_URL: &str =
    "https://generativelanguage.googleapis.com/.well-known/jwks.json";

/// Largest JWKS body we read; a key set is a few KiB, anything near this is not a key set.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// How the JWKS is fetched and cached (`WEBHOOK_JWKS_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    pub url: String,
    /// Minimum time between two fetches (unknown `kid`, proactive refresh or retry after a
    /// failure).
    pub min_refetch_interval_secs: u64,
    /// Age after which a cached key set is refreshed proactively; a smaller `Cache-Control:
    /// max-age` from the endpoint wins.
    pub cache_ttl_secs: u64,
    /// Whole-request bound on a fetch, body included.
    pub fetch_timeout: Duration,
}

impl JwksSettings {
    /// `url` with the defaults: refetch at most every 30 s, refresh after an hour, 5 s timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            min_refetch_interval_secs: 30,
            cache_ttl_secs: 3600,
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Keys from the last good JWKS, plus the bookkeeping for the refetch rate limit.
#[derive(Default)]
struct KeyCache {
    keys: KeySet,
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
    keys: KeySet,
    skipped: usize,
    max_age: Option<u64>,
}

/// The JWKS over HTTP, cached. Build one per process and share it: the cache is what keeps the
/// JWKS endpoint out of the request path.
pub struct HttpJwks {
    settings: JwksSettings,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Single-flight guard: held for the duration of a fetch so concurrent callers wait for its
    /// result instead of fetching again.
    fetch_lock: Mutex<()>,
}

impl std::fmt::Debug for HttpJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpJwks")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl HttpJwks {
    /// A key source with an empty cache; nothing is fetched until the first token arrives.
    pub fn new(settings: JwksSettings, http: reqwest::Client) -> Self {
        Self {
            settings,
            http,
            cache: RwLock::new(KeyCache::default()),
            fetch_lock: Mutex::new(()),
        }
    }

    /// The settings this source was built with.
    pub fn settings(&self) -> &JwksSettings {
        &self.settings
    }

    /// The key for `kid`: from the cache, or after a (rate-limited, single-flight) refetch.
    async fn cached_key(&self, kid: &str, now: i64) -> Result<Arc<DecodingKey>, VerifyError> {
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
                    jwks_url = %self.settings.url,
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
                    jwks_url = %self.settings.url,
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
            .get(&self.settings.url)
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

#[async_trait]
impl KeySource for HttpJwks {
    async fn key(&self, kid: &str, now_secs: i64) -> Result<Arc<DecodingKey>, VerifyError> {
        self.cached_key(kid, now_secs).await
    }

    fn describe(&self) -> String {
        self.settings.url.clone()
    }
}

/// A fixed key set: a JWKS document read once (a file, or the key `gemini-hooks dev` signs with).
/// No network, no cache to refresh.
#[derive(Clone)]
pub struct StaticJwks {
    keys: KeySet,
    source: String,
}

impl std::fmt::Debug for StaticJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticJwks")
            .field("keys", &self.keys.len())
            .field("source", &self.source)
            .finish()
    }
}

impl StaticJwks {
    /// Reads a JWKS document (`{"keys": [...]}`); `source` names it in logs and errors.
    pub fn from_json(document: &[u8], source: impl Into<String>) -> Result<Self, String> {
        let (keys, _) = parse_jwks(document)?;
        Ok(Self {
            keys,
            source: source.into(),
        })
    }
}

#[async_trait]
impl KeySource for StaticJwks {
    async fn key(&self, kid: &str, _now_secs: i64) -> Result<Arc<DecodingKey>, VerifyError> {
        self.keys
            .get(kid)
            .cloned()
            .ok_or_else(|| VerifyError::UnknownKeyId(printable(kid)))
    }

    fn describe(&self) -> String {
        self.source.clone()
    }
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
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::{Value, json};

    use crate::domain::verify::jwt::{
        self, DEFAULT_MAX_AGE_SECS, JwtRules, VerifiedToken, looks_like_jwt,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const NOW: i64 = 1_800_000_000;
    const AUD: &str = "https://hooks.example/gemini";

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
        json!({"exp": NOW + 3600, "iat": NOW, "aud": AUD, "type": "batch.succeeded", "data": {"id": "batches/1"}})
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

        fn settings(&self) -> Settings {
            let mut jwks = JwksSettings::new(self.url.clone());
            jwks.fetch_timeout = Duration::from_secs(3);
            Settings {
                jwks,
                rules: JwtRules::new(vec![AUD.to_owned()]),
            }
        }

        fn verifier(&self) -> Verifier {
            verifier(self.settings())
        }
    }

    /// Where keys come from and the claims policy, as the receiver puts them together.
    #[derive(Clone)]
    struct Settings {
        jwks: JwksSettings,
        rules: JwtRules,
    }

    /// The receiver's composition of a key source and the JWT rules.
    struct Verifier {
        keys: Arc<dyn KeySource>,
        rules: JwtRules,
    }

    impl Verifier {
        async fn verify(&self, token: &str, now: i64) -> Result<VerifiedToken, VerifyError> {
            let kid = jwt::kid_of(token)?;
            let key = self.keys.key(&kid, now).await?;
            jwt::verify_signed(token, &key, &self.rules, now)
        }
    }

    fn verifier(settings: Settings) -> Verifier {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Verifier {
            keys: Arc::new(HttpJwks::new(settings.jwks, http)),
            rules: settings.rules,
        }
    }

    /// Key `a` as `k1` from a fixed set: the claims rules need no HTTP server.
    fn static_verifier(rules: JwtRules) -> Verifier {
        let set = jwks(&[jwk(key_a(), "k1")]);
        Verifier {
            keys: Arc::new(StaticJwks::from_json(set.as_bytes(), "test set").unwrap()),
            rules,
        }
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
        assert_eq!(verified.claims.get("type"), Some(&json!("batch.succeeded")));
        assert_eq!(
            verified.claims.get("data"),
            Some(&json!({"id": "batches/1"}))
        );
        assert!(
            verified.token_id.starts_with("sha256:"),
            "no jti: the token's hash"
        );
        assert_eq!(
            verified.usable_until,
            NOW + 3600 + 60,
            "exp + leeway before iat + max age"
        );
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
        big["pad"] = json!("x".repeat(jwt::MAX_TOKEN_BYTES));
        let token = sign(key_a(), Some("k1"), &big);
        let err = verifier.verify(&token, NOW).await.unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::MalformedHeader {
                    header: crate::domain::verify::HEADER_SIGNATURE,
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
        settings.jwks.cache_ttl_secs = 600;
        let verifier = verifier(settings);
        let known = sign(key_a(), Some("k1"), &claims());
        let unknown = sign(key_b(), Some("k2"), &claims());
        verifier.verify(&known, NOW).await.unwrap();

        server.serve(Reply::Status(500));
        let err = verifier.verify(&unknown, NOW + 31).await.unwrap_err();
        assert_eq!(err, VerifyError::JwksUnavailable("HTTP status 500".into()));
        assert_eq!(
            err.class(),
            crate::domain::verify::FailureClass::Unavailable
        );
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
        settings.jwks.fetch_timeout = Duration::from_millis(300);
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
        let mut claims = json!({"exp": NOW + 300, "iat": NOW, "aud": AUD});
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
        let lenient = static_verifier(JwtRules::new(vec![AUD.to_owned()])); // 60 s leeway
        let mut strict_rules = JwtRules::new(vec![AUD.to_owned()]);
        strict_rules.leeway_secs = 0;
        strict_rules.future_tolerance_secs = 0;
        let strict = static_verifier(strict_rules);

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
                with(json!({"iat": NOW + 301})),
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
        let verifier = static_verifier(JwtRules::new(vec![AUD.to_owned()]));
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
    async fn audience_is_always_required() {
        let one = static_verifier(JwtRules::new(vec![AUD.to_owned()]));
        let mut rules = JwtRules::new(vec![AUD.to_owned()]);
        rules.audiences = vec!["first".into(), AUD.into()];
        let two = static_verifier(rules);
        let mut rules = JwtRules::new(vec![AUD.to_owned()]);
        rules.audiences.clear();
        let none = static_verifier(rules);
        let mismatch = Some(VerifyError::JwtClaimMismatch("aud"));

        let cases = [
            (with(json!({"aud": AUD})), None),
            (with(json!({"aud": ["other", AUD]})), None),
            (with(json!({"aud": "other"})), mismatch.clone()),
            (with(json!({"aud": ["other", "more"]})), mismatch.clone()),
            (with(json!({"aud": []})), mismatch.clone()),
            (with(json!({"aud": 5})), mismatch.clone()),
            (with(json!({"aud": null})), mismatch.clone()),
        ];
        for (claims, expected) in cases {
            let token = sign(key_a(), Some("k1"), &claims);
            assert_eq!(one.verify(&token, NOW).await.err(), expected, "{claims}");
            assert_eq!(two.verify(&token, NOW).await.err(), expected, "{claims}");
            // No configured audience accepts no token at all.
            assert_eq!(none.verify(&token, NOW).await.err(), mismatch, "{claims}");
        }
        let token = sign(key_a(), Some("k1"), &with(json!({"aud": "first"})));
        assert_eq!(two.verify(&token, NOW).await.err(), None);
    }

    #[tokio::test]
    async fn iat_is_required_and_bounds_the_token_age() {
        let verifier = static_verifier(JwtRules::new(vec![AUD.to_owned()]));
        let max = DEFAULT_MAX_AGE_SECS as i64;
        // A 3-day-old token with a 30-day exp: refused, however long it would stay "valid".
        let old = with(json!({"iat": NOW - 3 * 86_400, "exp": NOW + 30 * 86_400}));
        let token = sign(key_a(), Some("k1"), &old);
        assert_eq!(
            verifier.verify(&token, NOW).await.err(),
            Some(VerifyError::JwtTooOld {
                age_secs: 3 * 86_400,
                max_secs: DEFAULT_MAX_AGE_SECS
            })
        );
        let edge = sign(key_a(), Some("k1"), &with(json!({"iat": NOW - max})));
        let verified = verifier.verify(&edge, NOW).await.unwrap();
        assert_eq!(verified.usable_until, NOW, "iat + max age comes before exp");
        let over = sign(key_a(), Some("k1"), &with(json!({"iat": NOW - max - 1})));
        assert!(matches!(
            verifier.verify(&over, NOW).await,
            Err(VerifyError::JwtTooOld { .. })
        ));
        let missing = sign(key_a(), Some("k1"), &with(json!({"iat": null})));
        assert_eq!(
            verifier.verify(&missing, NOW).await.err(),
            Some(VerifyError::InvalidJwt("missing `iat` claim".into()))
        );
        // A jti identifies the token for single use.
        let with_jti = sign(key_a(), Some("k1"), &with(json!({"jti": "t-1"})));
        assert_eq!(
            verifier.verify(&with_jti, NOW).await.unwrap().token_id,
            "jti:t-1"
        );
    }

    #[tokio::test]
    async fn issuer_is_checked_only_when_configured() {
        let unset = static_verifier(JwtRules::new(vec![AUD.to_owned()]));
        let mut rules = JwtRules::new(vec![AUD.to_owned()]);
        rules.issuer = Some("https://generativelanguage.googleapis.com".into());
        let set = static_verifier(rules);
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
        let rendered = jwt::printable(&kid);
        assert_eq!(rendered.len(), 64);
        assert!(rendered.starts_with("k?x"));
    }
}
