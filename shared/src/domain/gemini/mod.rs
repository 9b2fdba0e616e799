//! The Gemini resources the code reads, as plain data: a batch (a `google.longrunning.Operation`
//! flattened, [`batch`]), and the interaction, video operation and file an event can name
//! ([`resources`]), a registered webhook's state ([`webhook`]), with the id normalisation every
//! entry point goes through (docs/gemini.md §3–7). Parsing is tolerant: a field we cannot read
//! degrades to `None`.

pub mod batch;
pub mod resources;
pub mod webhook;

pub use batch::{BatchOperation, BatchOutput, BatchState, BatchStats, InlineResponse, RpcStatus};
pub use resources::{FileInfo, Interaction, InteractionStatus, VideoOperation};
pub use webhook::{WebhookState, WebhookSummary};

/// A Gemini response we could not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Longest resource name the code asks the API about or stores (a batch id is ~40 characters;
/// DynamoDB partition keys stop at 2 048 bytes).
pub const MAX_NAME_LEN: usize = 512;

/// A plain resource id: letters, digits, `-`, `_`, `.` — so it cannot steer a request to another
/// path (`/`, `..`, `?`, `#`, `:` are all refused).
pub fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_NAME_LEN
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `<prefix><plain id>`, e.g. `batches/abc`: the canonical name of a batch or interaction.
pub fn is_name(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(is_plain_id)
}

/// `models/<model>/operations/<id>` or `operations/<id>`, each segment a plain id.
pub fn is_operation_name(name: &str) -> bool {
    let segments: Vec<&str> = name.split('/').collect();
    name.len() <= MAX_NAME_LEN
        && matches!(
            segments.as_slice(),
            ["operations", _] | ["models", _, "operations", _]
        )
        && segments.iter().all(|s| is_plain_id(s))
}

/// `abc`, `batches/abc` or `https://…/v1beta/batches/abc[:op|?q]` → `batches/abc`.
///
/// Webhook `data.id` may or may not carry the `batches/` prefix (docs/gemini.md §3), so every
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
