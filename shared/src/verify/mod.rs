//! Delivery verification: Standard Webhooks HMAC for static webhooks ([`standard`]) and RS256
//! JWTs checked against a JWKS for dynamic webhooks ([`jwks`]). Both work on the raw body bytes,
//! before anything is parsed.

pub mod jwks;
pub mod standard;

/// Header carrying the delivery id (same on every retry).
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the attempt time, integer Unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying `v1,<base64>` entries (static) or a compact JWT (dynamic).
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// How the HTTP layer should answer a verification failure (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// 400: the request is malformed (missing or ill-formed headers).
    BadRequest,
    /// 401: the request is well-formed but not authentic or outside the replay window.
    Unauthorized,
    /// 503: we could not verify because a dependency (the JWKS endpoint) is failing.
    Unavailable,
}

/// Why a delivery failed verification. Messages never include secrets or signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    #[error("header `{header}` is malformed: {reason}")]
    MalformedHeader {
        header: &'static str,
        reason: String,
    },
    #[error("timestamp is {seconds} s older than the {tolerance} s replay window allows")]
    TimestampTooOld { seconds: u64, tolerance: u64 },
    #[error("timestamp is {seconds} s further in the future than the {tolerance} s window allows")]
    TimestampTooNew { seconds: u64, tolerance: u64 },
    #[error("the signature header has no `v1,` entry")]
    NoSupportedSignature,
    /// `secrets` is for logs and local diagnosis only: the message (what an unauthenticated
    /// caller sees) does not reveal how many secrets are configured.
    #[error("no signature matched")]
    NoMatchingSignature { secrets: usize },
    #[error("a static signature arrived but no signing secrets are configured")]
    StaticNotConfigured,
    #[error("a JWT signature arrived but dynamic verification is not configured")]
    DynamicNotConfigured,
    #[error("JWT rejected: {0}")]
    InvalidJwt(String),
    #[error("JWT algorithm `{0}` is not allowed (only RS256)")]
    DisallowedAlgorithm(String),
    #[error("JWT key id `{0}` is not in the JWKS")]
    UnknownKeyId(String),
    #[error("JWT has expired")]
    JwtExpired,
    #[error("JWT is not valid yet")]
    JwtNotYetValid,
    #[error("JWT was issued {age_secs} s ago; at most {max_secs} s is accepted")]
    JwtTooOld { age_secs: u64, max_secs: u64 },
    #[error("JWT claim `{0}` does not match the configured value")]
    JwtClaimMismatch(&'static str),
    #[error("the JWKS could not be fetched: {0}")]
    JwksUnavailable(String),
}

impl VerifyError {
    /// The HTTP class of this failure.
    pub fn class(&self) -> FailureClass {
        match self {
            Self::MissingHeader(_) | Self::MalformedHeader { .. } => FailureClass::BadRequest,
            Self::JwksUnavailable(_) => FailureClass::Unavailable,
            _ => FailureClass::Unauthorized,
        }
    }

    /// A short stable code for logs, metrics and the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::MalformedHeader { .. } => "malformed_header",
            Self::TimestampTooOld { .. } => "timestamp_too_old",
            Self::TimestampTooNew { .. } => "timestamp_too_new",
            Self::NoSupportedSignature => "no_supported_signature",
            Self::NoMatchingSignature { .. } => "signature_mismatch",
            Self::StaticNotConfigured => "static_not_configured",
            Self::DynamicNotConfigured => "dynamic_not_configured",
            Self::InvalidJwt(_) => "invalid_jwt",
            Self::DisallowedAlgorithm(_) => "jwt_algorithm",
            Self::UnknownKeyId(_) => "jwt_unknown_kid",
            Self::JwtExpired => "jwt_expired",
            Self::JwtNotYetValid => "jwt_not_yet_valid",
            Self::JwtTooOld { .. } => "jwt_too_old",
            Self::JwtClaimMismatch(_) => "jwt_claim_mismatch",
            Self::JwksUnavailable(_) => "jwks_unavailable",
        }
    }
}

use std::sync::{Arc, PoisonError, RwLock};

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::envelope::SignatureMode;
use jwks::{Claims, JwksVerifier, JwtSettings, looks_like_jwt};
use standard::{SigningSecret, StandardVerifier};

/// Longest `webhook-id` accepted; ids are opaque but short in every known sender.
pub const MAX_ID_LEN: usize = 256;

/// JWT claim names that, if a sender includes one, bind the token to the body bytes. Gemini
/// documents none, so a body is only ever *bound* through one of these when it is present and
/// matches; a mismatch is refused.
const BODY_DIGEST_CLAIMS: [&str; 3] = ["body_sha256", "payload_sha256", "body_hash"];

/// A delivery whose signature checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedDelivery {
    /// Idempotency key as the sender gave it: the `webhook-id` header, or for dynamic
    /// deliveries without one the JWT `jti` (`jti:<jti>`), or else `sha256:<hex of body>`.
    pub webhook_id: String,
    /// Attempt time in epoch seconds.
    pub timestamp: i64,
    pub mode: SignatureMode,
    /// Whether the body bytes are covered by the signature: always for static deliveries; for
    /// dynamic ones only through a matching body-digest claim.
    pub body_signed: bool,
    /// The verified token of a dynamic delivery.
    pub token: Option<jwks::VerifiedToken>,
}

impl VerifiedDelivery {
    /// Verified JWT claims of a dynamic delivery.
    pub fn claims(&self) -> Option<&Claims> {
        self.token.as_ref().map(|t| &t.claims)
    }
}

/// Verifies any Gemini delivery: static (HMAC) or dynamic (JWT), chosen by the shape of the
/// `webhook-signature` header. Dynamic verification exists only when an audience is configured.
pub struct WebhookVerifier {
    /// Swappable so a refreshed secret list (Secrets Manager) applies without a restart.
    standard: Option<RwLock<Arc<StandardVerifier>>>,
    jwt: Option<JwksVerifier>,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("static_secrets", &self.standard().map(|s| s.secret_count()))
            .field("dynamic", &self.jwt.is_some())
            .finish()
    }
}

impl WebhookVerifier {
    pub fn new(standard: Option<StandardVerifier>, jwt: Option<JwksVerifier>) -> Self {
        Self {
            standard: standard.map(|s| RwLock::new(Arc::new(s))),
            jwt,
        }
    }

    /// Replaces the static secrets (same tolerance). Returns `false`, changing nothing, when
    /// static verification was not configured at start-up.
    pub fn replace_static_secrets(&self, secrets: Vec<SigningSecret>) -> bool {
        let Some(lock) = &self.standard else {
            return false;
        };
        let mut current = lock.write().unwrap_or_else(PoisonError::into_inner);
        *current = Arc::new(StandardVerifier::new(secrets, current.tolerance_secs()));
        true
    }

    /// The static verifier in force now.
    fn standard(&self) -> Option<Arc<StandardVerifier>> {
        self.standard
            .as_ref()
            .map(|lock| Arc::clone(&lock.read().unwrap_or_else(PoisonError::into_inner)))
    }

    /// The dynamic-webhook settings, when dynamic mode is on.
    pub fn jwt_settings(&self) -> Option<&JwtSettings> {
        self.jwt.as_ref().map(JwksVerifier::settings)
    }

    /// Builds both verifiers from configuration. No network access happens here.
    pub fn from_config(config: &crate::config::VerifierConfig, http: reqwest::Client) -> Self {
        let standard = config
            .secrets
            .clone()
            .map(|secrets| StandardVerifier::new(secrets, config.tolerance_secs));
        let jwt = config
            .jwt
            .clone()
            .map(|settings| JwksVerifier::new(settings, http));
        Self::new(standard, jwt)
    }

    /// Verifies headers and raw body bytes at `now_secs`.
    pub async fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<VerifiedDelivery, VerifyError> {
        let signature = single_header(headers, HEADER_SIGNATURE)?
            .ok_or(VerifyError::MissingHeader(HEADER_SIGNATURE))?;
        if looks_like_jwt(signature) {
            return self
                .verify_dynamic(headers, signature, body, now_secs)
                .await;
        }
        let id = single_header(headers, HEADER_ID)?.ok_or(VerifyError::MissingHeader(HEADER_ID))?;
        validate_id(id)?;
        let timestamp = single_header(headers, HEADER_TIMESTAMP)?
            .ok_or(VerifyError::MissingHeader(HEADER_TIMESTAMP))?;
        let standard = self.standard().ok_or(VerifyError::StaticNotConfigured)?;
        let timestamp = standard.verify(id, timestamp, signature, body, now_secs)?;
        Ok(VerifiedDelivery {
            webhook_id: id.to_owned(),
            timestamp,
            mode: SignatureMode::Static,
            body_signed: true,
            token: None,
        })
    }

    async fn verify_dynamic(
        &self,
        headers: &HeaderMap,
        token: &str,
        body: &[u8],
        now_secs: i64,
    ) -> Result<VerifiedDelivery, VerifyError> {
        let jwt = self.jwt.as_ref().ok_or(VerifyError::DynamicNotConfigured)?;
        let verified = jwt.verify(token, now_secs).await?;
        let claims = &verified.claims;
        let digest_claim = BODY_DIGEST_CLAIMS
            .iter()
            .find_map(|name| claims.get(*name).and_then(serde_json::Value::as_str));
        let body_signed = match digest_claim {
            Some(expected) => {
                if !constant_time_eq(
                    expected.to_ascii_lowercase().as_bytes(),
                    sha256_hex(body).as_bytes(),
                ) {
                    return Err(VerifyError::JwtClaimMismatch("body digest"));
                }
                true
            }
            None => false,
        };
        // The webhook-id/-timestamp headers of a dynamic delivery are not signed: they serve
        // dedupe of Gemini's retries, never as proof of anything.
        let webhook_id = match single_header(headers, HEADER_ID)? {
            Some(id) => {
                validate_id(id)?;
                id.to_owned()
            }
            // Without a header: the token's `jti` if it has one, else the body itself, so a
            // retry of the same body with a fresh token is still recognised.
            None if verified.token_id.starts_with("jti:") => verified.token_id.clone(),
            None => format!("sha256:{}", sha256_hex(body)),
        };
        let timestamp = single_header(headers, HEADER_TIMESTAMP)?
            .and_then(|t| t.parse::<i64>().ok())
            .or_else(|| claims.get("iat").and_then(serde_json::Value::as_i64))
            .unwrap_or(now_secs);
        Ok(VerifiedDelivery {
            webhook_id,
            timestamp,
            mode: SignatureMode::Dynamic,
            body_signed,
            token: Some(verified),
        })
    }
}

/// The value of a header that must appear at most once. Header names are case-insensitive
/// (`HeaderMap` lowercases them). A repeated header is ambiguous, so it is malformed.
pub fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> Result<Option<&'a str>, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(VerifyError::MalformedHeader {
            header: name,
            reason: "header appears more than once".into(),
        });
    }
    let text = first.to_str().map_err(|_| VerifyError::MalformedHeader {
        header: name,
        reason: "header is not visible ASCII".into(),
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(VerifyError::MalformedHeader {
            header: name,
            reason: "header is empty".into(),
        });
    }
    Ok(Some(text))
}

fn validate_id(id: &str) -> Result<(), VerifyError> {
    let reason = if id.len() > MAX_ID_LEN {
        format!("longer than {MAX_ID_LEN} bytes")
    } else if id.contains(',') {
        "contains a comma (a repeated header joined by a proxy?)".to_owned()
    } else if id
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        "contains whitespace or control characters".to_owned()
    } else {
        return Ok(());
    };
    Err(VerifyError::MalformedHeader {
        header: HEADER_ID,
        reason,
    })
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
