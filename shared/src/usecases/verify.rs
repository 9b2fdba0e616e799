//! Verifies any Gemini delivery: static (Standard Webhooks HMAC) or dynamic (RS256 JWT), chosen by
//! the shape of the `webhook-signature` header. The rules are pure (`domain::verify`); this puts
//! them together with the key source of dynamic mode and the swappable static secrets.

use std::sync::{Arc, PoisonError, RwLock};

use http::HeaderMap;

use crate::domain::envelope::SignatureMode;
use crate::domain::verify::jwt::{self, JwtRules, VerifiedToken, looks_like_jwt};
use crate::domain::verify::standard::{SigningSecret, StandardVerifier};
use crate::domain::verify::{
    BODY_DIGEST_CLAIMS, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, VerifiedDelivery,
    VerifyError, canonical_json, constant_time_eq, sha256_hex, single_header, validate_id,
};
use crate::ports::keys::KeySource;

/// Dynamic mode: the claims policy and where the keys come from.
#[derive(Clone)]
pub struct DynamicVerifier {
    pub rules: JwtRules,
    pub keys: Arc<dyn KeySource>,
}

impl std::fmt::Debug for DynamicVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicVerifier")
            .field("rules", &self.rules)
            .field("keys", &self.keys.describe())
            .finish()
    }
}

impl DynamicVerifier {
    /// Verifies a compact JWS: the checks that need no key, then the key by `kid`, then the
    /// signature and the claims.
    pub async fn verify(&self, token: &str, now_secs: i64) -> Result<VerifiedToken, VerifyError> {
        let kid = jwt::kid_of(token)?;
        let key = self.keys.key(&kid, now_secs).await?;
        jwt::verify_signed(token, &key, &self.rules, now_secs)
    }
}

/// Verifies deliveries. Dynamic verification exists only when an audience is configured.
pub struct WebhookVerifier {
    /// Swappable so a refreshed secret list (Secrets Manager) applies without a restart.
    standard: Option<RwLock<Arc<StandardVerifier>>>,
    dynamic: Option<DynamicVerifier>,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("static_secrets", &self.standard().map(|s| s.secret_count()))
            .field("dynamic", &self.dynamic)
            .finish()
    }
}

impl WebhookVerifier {
    pub fn new(standard: Option<StandardVerifier>, dynamic: Option<DynamicVerifier>) -> Self {
        Self {
            standard: standard.map(|s| RwLock::new(Arc::new(s))),
            dynamic,
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

    /// Dynamic mode, when it is on.
    pub fn dynamic(&self) -> Option<&DynamicVerifier> {
        self.dynamic.as_ref()
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
            id_derived: false,
        })
    }

    async fn verify_dynamic(
        &self,
        headers: &HeaderMap,
        token: &str,
        body: &[u8],
        now_secs: i64,
    ) -> Result<VerifiedDelivery, VerifyError> {
        let dynamic = self
            .dynamic
            .as_ref()
            .ok_or(VerifyError::DynamicNotConfigured)?;
        let verified = dynamic.verify(token, now_secs).await?;
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
        let claims_are_event = claims.get("type").is_some_and(serde_json::Value::is_string);
        let (webhook_id, id_derived) = match single_header(headers, HEADER_ID)? {
            Some(id) => {
                validate_id(id)?;
                (id.to_owned(), false)
            }
            // Without a header the id is derived from what the event is, so Gemini's retry of
            // the same event (with a fresh token) is still recognised: the claims when they are
            // the event (less the per-token claims), else the token's `jti`, else the body.
            None if claims_are_event => (format!("claims:{}", event_claims_hash(claims)), true),
            None if verified.token_id.starts_with("jti:") => (verified.token_id.clone(), true),
            None => (format!("sha256:{}", sha256_hex(body)), true),
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
            id_derived,
        })
    }
}

/// SHA-256 of the event the claims carry: every claim but the ones that differ per token.
fn event_claims_hash(claims: &serde_json::Map<String, serde_json::Value>) -> String {
    let event: serde_json::Map<String, serde_json::Value> = claims
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "iat" | "exp" | "nbf" | "jti"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    sha256_hex(canonical_json(&serde_json::Value::Object(event)).as_bytes())
}
