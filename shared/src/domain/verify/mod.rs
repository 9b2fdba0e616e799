//! Delivery verification rules: Standard Webhooks HMAC for static webhooks ([`standard`]) and
//! the RS256 JWT rules of dynamic webhooks ([`jwt`]). Both work on the raw body bytes, before
//! anything is parsed. Putting them together with a key source is the use case's job
//! (`usecases::verify::WebhookVerifier`).

pub mod jwt;
pub mod standard;

/// Header carrying the delivery id (same on every retry).
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the attempt time, integer Unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying `v1,<base64>` entries (static) or a compact JWT (dynamic).
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// How the HTTP layer should answer a verification failure (the contract in the README).
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

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::domain::envelope::SignatureMode;
use jwt::{Claims, VerifiedToken};

/// Longest `webhook-id` accepted; ids are opaque but short in every known sender.
pub const MAX_ID_LEN: usize = 256;

/// JWT claim names that, if a sender includes one, bind the token to the body bytes. Gemini
/// documents none, so a body is only ever *bound* through one of these when it is present and
/// matches; a mismatch is refused.
pub const BODY_DIGEST_CLAIMS: [&str; 3] = ["body_sha256", "payload_sha256", "body_hash"];

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
    pub token: Option<VerifiedToken>,
    /// Whether `webhook_id` was derived (from the claims, the `jti` or the body) rather than
    /// sent as a header; derived ids have their own dedupe namespace, so a header cannot take one.
    pub id_derived: bool,
}

impl VerifiedDelivery {
    /// Verified JWT claims of a dynamic delivery.
    pub fn claims(&self) -> Option<&Claims> {
        self.token.as_ref().map(|t| &t.claims)
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

pub fn validate_id(id: &str) -> Result<(), VerifyError> {
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

/// `value` as JSON text with every object's keys sorted: the same claims always hash the same.
pub fn canonical_json(value: &serde_json::Value) -> String {
    use serde_json::Value;
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    if let Some(v) = map.get(key) {
                        write(v, out);
                    }
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
