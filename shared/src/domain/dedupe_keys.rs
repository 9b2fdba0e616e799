//! Keys of the dedupe table, one namespace per kind of claim.
//!
//! A static delivery is keyed by its `webhook-id` exactly as sent. Every other key carries a
//! space, which no accepted `webhook-id` can contain (verification refuses whitespace), so a
//! delivery can never occupy a dynamic delivery's id, a token's single-use claim or a
//! reconciler recovery — whoever signed it.

use crate::domain::envelope::SignatureMode;

/// The dedupe key of a verified delivery. Dynamic deliveries live apart from static ones: their
/// `webhook-id` is not signed, and any Gemini customer can obtain a valid token, so they must not
/// be able to pre-claim the ids of the project's own (static) webhook. Ids the receiver derived
/// (from the claims, the `jti` or the body, when no header came) live apart from ids sent as a
/// header, so a header cannot take the key a later header-less delivery derives.
pub fn delivery(mode: SignatureMode, webhook_id: &str, derived: bool) -> String {
    match (mode, derived) {
        (SignatureMode::Static, _) => webhook_id.to_owned(),
        (SignatureMode::Dynamic, false) => format!("dynamic {webhook_id}"),
        (SignatureMode::Dynamic, true) => format!("dynamic-derived {webhook_id}"),
        (SignatureMode::Synthetic, _) => format!("synthetic {webhook_id}"),
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

/// The consumer's claim on publishing the downstream event `event_id` (`domain::job_events`).
pub fn job_event(event_id: &str) -> String {
    format!("job-event {event_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_keys_contain_whitespace_and_static_keys_are_the_id() {
        assert_eq!(delivery(SignatureMode::Static, "msg_1", false), "msg_1");
        assert_ne!(
            delivery(SignatureMode::Dynamic, "jti:x", false),
            delivery(SignatureMode::Dynamic, "jti:x", true),
            "a header cannot take a derived id's key"
        );
        for key in [
            delivery(SignatureMode::Dynamic, "msg_1", false),
            delivery(SignatureMode::Dynamic, "msg_1", true),
            delivery(SignatureMode::Synthetic, "x", false),
            token("jti:abc"),
            recovery("batches/a", "SUCCEEDED"),
            job_event("batches/a#SUCCEEDED"),
        ] {
            assert!(key.contains(' '), "{key}");
        }
        assert_ne!(
            delivery(SignatureMode::Dynamic, "token", false),
            token(""),
            "namespaces do not overlap"
        );
    }
}
