//! Keys of the dedupe table, one namespace per kind of claim.
//!
//! A static delivery is keyed by its `webhook-id` exactly as sent. Every other key carries a
//! space, which no accepted `webhook-id` can contain (verification refuses whitespace), so a
//! delivery can never occupy a dynamic delivery's id, a token's single-use claim or a
//! reconciler recovery — whoever signed it.

use crate::domain::envelope::SignatureMode;

/// The dedupe key of a verified delivery. Dynamic deliveries live apart from static ones: their
/// `webhook-id` is not signed, and any Gemini customer can obtain a valid token, so they must not
/// be able to pre-claim the ids of the project's own (static) webhook.
pub fn delivery(mode: SignatureMode, webhook_id: &str) -> String {
    match mode {
        SignatureMode::Static => webhook_id.to_owned(),
        SignatureMode::Dynamic => format!("dynamic {webhook_id}"),
        SignatureMode::Synthetic => format!("synthetic {webhook_id}"),
    }
}

/// The single-use claim of a dynamic delivery's token (`jti:…` or `sha256:…`).
pub fn token(token_id: &str) -> String {
    format!("token {token_id}")
}

/// The reconciler's claim on recovering `batch` in `state`.
pub fn recovery(batch: &str, state: &str) -> String {
    format!("recovery {batch} {state}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_keys_contain_whitespace_and_static_keys_are_the_id() {
        assert_eq!(delivery(SignatureMode::Static, "msg_1"), "msg_1");
        for key in [
            delivery(SignatureMode::Dynamic, "msg_1"),
            delivery(SignatureMode::Synthetic, "x"),
            token("jti:abc"),
            recovery("batches/a", "SUCCEEDED"),
        ] {
            assert!(key.contains(' '), "{key}");
        }
        assert_ne!(
            delivery(SignatureMode::Dynamic, "token"),
            token(""),
            "namespaces do not overlap"
        );
    }
}
