//! The rules of a dynamic-webhook JWT, without any I/O: which tokens take the JWT path, the
//! pinned algorithm, the claims policy, and reading a JWKS document into keys. Where the keys come
//! from is the key-source port's business (an HTTP JWKS with a cache, or a static set).
//!
//! Gemini signs per-job (`webhook_config.uris`) deliveries RS256 with a key selected by `kid`
//! (docs/gemini.md §2). The algorithm is pinned before any key is looked up, so a token can never
//! choose how it is checked.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::{HEADER_SIGNATURE, VerifyError};

/// Longest token we are willing to parse; real ones are well under 2 KiB, and the bound keeps
/// base64/JSON work on hostile input small.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Longest `jti` used as a token's single-use id; a longer one is hashed with the token.
const MAX_JTI_LEN: usize = 256;

/// The only algorithm Gemini uses for dynamic webhooks.
const ALLOWED_ALG: &str = "RS256";

/// Verified claims (the JWT payload object).
pub type Claims = serde_json::Map<String, Value>;

/// The claims policy of dynamic webhooks (`WEBHOOK_JWT_AUDIENCE`, `WEBHOOK_JWT_ISSUER`,
/// `WEBHOOK_JWT_MAX_AGE_SECONDS`, the replay window).
///
/// Every Gemini customer's tokens are signed by the same JWKS, so a valid signature only proves
/// that *some* Gemini job produced the token (docs/RELIABILITY.md, "Threat model"). The
/// audience is therefore mandatory: with an empty [`Self::audiences`] no token verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRules {
    /// Accepted `aud` values; the token must carry one of them.
    pub audiences: Vec<String>,
    /// Required `iss`; unchecked when `None` because Gemini does not document what it puts there.
    pub issuer: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// How far in the future `iat` may lie (the replay window, `WEBHOOK_TOLERANCE_SECONDS`).
    pub future_tolerance_secs: u64,
    /// Oldest accepted `iat`, in seconds before now: Gemini retries for 24 h, so a token older
    /// than that plus the window is a replay however distant its `exp` is.
    pub max_age_secs: u64,
}

/// Default of `WEBHOOK_JWT_MAX_AGE_SECONDS`: Gemini's 24 h retry horizon plus the 300 s window.
pub const DEFAULT_MAX_AGE_SECS: u64 = 24 * 3600 + 300;

impl JwtRules {
    /// Rules accepting `audiences`, with the defaults: 60 s leeway on `exp`/`nbf`, `iat` at most
    /// 300 s ahead and [`DEFAULT_MAX_AGE_SECS`] old, no issuer check.
    pub fn new(audiences: Vec<String>) -> Self {
        Self {
            audiences,
            issuer: None,
            leeway_secs: 60,
            future_tolerance_secs: super::standard::DEFAULT_TOLERANCE_SECS,
            max_age_secs: DEFAULT_MAX_AGE_SECS,
        }
    }
}

/// A token whose signature and claims checked out, with what single use needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub claims: Claims,
    /// What identifies this token for single use: `jti:<jti>`, or `sha256:<hex of the token>`
    /// when it has no usable `jti`.
    pub token_id: String,
    /// Epoch seconds after which the token is refused anyway (its `exp` plus leeway, or its
    /// `iat` plus the maximum age, whichever is earlier): how long a single-use claim must last.
    pub usable_until: i64,
    /// Whether the token was minted for us alone (`aud` one value, ours). A token listing other
    /// audiences reached their endpoints too, and any of them could replay it here.
    pub audience_exclusive: bool,
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

/// The `kid` of `token`, after the checks that need no key: bounded size, a compact JWS, RS256
/// pinned, no `crit`.
pub fn kid_of(token: &str) -> Result<String, VerifyError> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::MalformedHeader {
            header: HEADER_SIGNATURE,
            reason: format!("longer than {MAX_TOKEN_BYTES} bytes"),
        });
    }
    pinned_kid(token)
}

/// Verifies `token`'s signature with `key` and its claims against `rules` at `now`.
pub fn verify_signed(
    token: &str,
    key: &DecodingKey,
    rules: &JwtRules,
    now: i64,
) -> Result<VerifiedToken, VerifyError> {
    let token = token.trim();
    // Signature only: time and audience rules are ours, against the injected clock.
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
        .map_err(|err| VerifyError::InvalidJwt(describe(&err).to_owned()))?
        .claims;
    let usable_until = check_claims(rules, &claims, now)?;
    let audience_exclusive = match claims.get("aud") {
        Some(Value::Array(auds)) => auds.len() == 1,
        _ => true,
    };
    let token_id = match claims.get("jti").and_then(Value::as_str) {
        Some(jti) if !jti.is_empty() && jti.len() <= MAX_JTI_LEN => format!("jti:{jti}"),
        _ => format!("sha256:{}", super::sha256_hex(token.as_bytes())),
    };
    Ok(VerifiedToken {
        claims,
        token_id,
        usable_until,
        audience_exclusive,
    })
}

/// Time, issuer and audience rules, run only on claims whose signature already verified.
/// Returns the epoch second after which the token is refused anyway.
fn check_claims(settings: &JwtRules, claims: &Claims, now: i64) -> Result<i64, VerifyError> {
    let secs = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let leeway = secs(settings.leeway_secs);
    let exp = numeric_date(claims, "exp")?
        .ok_or_else(|| VerifyError::InvalidJwt("missing `exp` claim".to_owned()))?;
    if exp.saturating_add(leeway) < now {
        return Err(VerifyError::JwtExpired);
    }
    if numeric_date(claims, "nbf")?.is_some_and(|t| t.saturating_sub(leeway) > now) {
        return Err(VerifyError::JwtNotYetValid);
    }
    // `iat` is what bounds a replay: without it a token is good for as long as its `exp`.
    let iat = numeric_date(claims, "iat")?
        .ok_or_else(|| VerifyError::InvalidJwt("missing `iat` claim".to_owned()))?;
    if iat.saturating_sub(secs(settings.future_tolerance_secs)) > now {
        return Err(VerifyError::JwtNotYetValid);
    }
    let age = now.saturating_sub(iat);
    if age > secs(settings.max_age_secs) {
        return Err(VerifyError::JwtTooOld {
            age_secs: u64::try_from(age).unwrap_or(u64::MAX),
            max_secs: settings.max_age_secs,
        });
    }
    if let Some(expected) = &settings.issuer {
        let ok = matches!(claims.get("iss"), Some(Value::String(iss)) if iss == expected);
        if !ok {
            return Err(VerifyError::JwtClaimMismatch("iss"));
        }
    }
    let accepted = |aud: &str| settings.audiences.iter().any(|a| a == aud);
    let ok = match claims.get("aud") {
        Some(Value::String(aud)) => accepted(aud),
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(accepted),
        _ => false,
    };
    if !ok {
        return Err(VerifyError::JwtClaimMismatch("aud"));
    }
    Ok(exp
        .saturating_add(leeway)
        .min(iat.saturating_add(secs(settings.max_age_secs))))
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

/// A key set by `kid`.
pub type KeySet = HashMap<String, Arc<DecodingKey>>;

/// Usable RS256 keys by `kid`, and how many entries were skipped. Entries are parsed one by
/// one so a single odd key (new `kty`, bad field) cannot take the whole set down.
pub fn parse_jwks(body: &[u8]) -> Result<(KeySet, usize), String> {
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
pub fn printable(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}
