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
    MalformedHeader { header: &'static str, reason: String },
    #[error("timestamp is {seconds} s older than the {tolerance} s replay window allows")]
    TimestampTooOld { seconds: u64, tolerance: u64 },
    #[error("timestamp is {seconds} s further in the future than the {tolerance} s window allows")]
    TimestampTooNew { seconds: u64, tolerance: u64 },
    #[error("the signature header has no `v1,` entry")]
    NoSupportedSignature,
    #[error("no signature matched any of the {secrets} configured secret(s)")]
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
            Self::JwtClaimMismatch(_) => "jwt_claim_mismatch",
            Self::JwksUnavailable(_) => "jwks_unavailable",
        }
    }
}
