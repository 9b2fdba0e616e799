//! Gemini REST client for the Batch API: read a batch (a `google.longrunning.Operation`), list
//! batches, and stream a results file (gemini-facts §5); and for the WebhookService (§6).
//!
//! [`model`] turns the Operation JSON into [`BatchOperation`]; [`client`] does HTTP with retries
//! and classifies failures so the consumer can tell "retry later" from "give up";
//! [`webhooks`] registers and manages webhooks with the same HTTP conventions.

pub mod client;
pub mod model;
pub mod resources;
pub mod webhooks;

pub use client::{
    ApiKey, BatchPage, ByteStream, GeminiClient, GeminiError, GeminiSettings, RetryPolicy,
};
pub use model::{BatchOperation, BatchOutput, BatchState, BatchStats, InlineResponse, RpcStatus};
pub use resources::{FileInfo, Interaction, InteractionStatus, VideoOperation};
pub use webhooks::{
    CreatedWebhook, NewWebhook, RevocationBehavior, Rotation, Webhook, WebhookClient, WebhookPage,
    WebhookSecret, WebhookState,
};

/// Production endpoint of the Gemini Developer API.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// `abc`, `batches/abc` or `https://…/v1beta/batches/abc[:op|?q]` → `batches/abc`.
///
/// Webhook `data.id` may or may not carry the `batches/` prefix (gemini-facts §3), so every
/// entry point normalizes through here.
pub fn normalize_batch_id(id: &str) -> String {
    let s = id.trim();
    let tail = s.rsplit_once("batches/").map_or(s, |(_, t)| t);
    let end = tail.find(['/', '?', '#', ':']).unwrap_or(tail.len());
    format!("batches/{}", &tail[..end])
}

/// `files/x`, `x` or `https://…/v1beta/files/x[:download?…]` → `files/x`; `None` for `gs://`
/// and anything else that is not a Files API file.
///
/// Unlike the Python SDK's `[a-z0-9]+`, hyphens are kept: result files are named `batch-…`.
pub fn normalize_file_name(uri: &str) -> Option<String> {
    let s = uri.trim();
    let tail = if let Some((scheme, rest)) = s.split_once("://") {
        if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
            return None;
        }
        rest.split_once("/files/")?.1
    } else {
        s.strip_prefix("files/").unwrap_or(s)
    };
    let end = tail
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .unwrap_or(tail.len());
    let (id, rest) = tail.split_at(end);
    let clean_end = rest.is_empty() || rest.starts_with([':', '?', '#', '/']);
    (!id.is_empty() && clean_end).then(|| format!("files/{id}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn batch_ids() {
        assert_eq!(normalize_batch_id("abc"), "batches/abc");
        assert_eq!(normalize_batch_id("batches/abc"), "batches/abc");
        assert_eq!(normalize_batch_id(" batches/abc-1 "), "batches/abc-1");
        assert_eq!(
            normalize_batch_id("https://generativelanguage.googleapis.com/v1beta/batches/abc"),
            "batches/abc"
        );
        assert_eq!(
            normalize_batch_id("https://x/v1beta/batches/abc:cancel"),
            "batches/abc"
        );
        assert_eq!(normalize_batch_id("batch_123456"), "batches/batch_123456");
    }

    #[test]
    fn file_names() {
        assert_eq!(normalize_file_name("files/x").as_deref(), Some("files/x"));
        assert_eq!(
            normalize_file_name("files/batch-abc-123").as_deref(),
            Some("files/batch-abc-123")
        );
        assert_eq!(normalize_file_name("abc").as_deref(), Some("files/abc"));
        assert_eq!(
            normalize_file_name(
                "https://generativelanguage.googleapis.com/v1beta/files/batch-xyz-9"
            )
            .as_deref(),
            Some("files/batch-xyz-9")
        );
        assert_eq!(
            normalize_file_name(
                "https://generativelanguage.googleapis.com/download/v1beta/files/batch-q:download?alt=media"
            )
            .as_deref(),
            Some("files/batch-q")
        );
        assert_eq!(normalize_file_name("gs://bucket/results.jsonl"), None);
        assert_eq!(normalize_file_name("https://example.com/other/x"), None);
        assert_eq!(normalize_file_name("files/"), None);
        assert_eq!(normalize_file_name("files/a b"), None);
        assert_eq!(normalize_file_name("files/../x"), None);
        assert_eq!(normalize_file_name(""), None);
    }
}
