//! The other resources a webhook event can name: an Interaction (`GET /v1beta/interactions/{id}`),
//! a Veo long-running operation (`GET /v1beta/models/{model}/operations/{id}`) and a Files API
//! file (`GET /v1beta/files/{id}`). The consumer reads them to confirm what an event claims.
//!
//! Like the batch model, parsing walks a `serde_json::Value` and degrades unknown or missing
//! fields to `None`.

use serde_json::Value;

use super::{DecodeError, RpcStatus};

/// Status of an Interaction (the Interactions API spells them in snake_case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InteractionStatus {
    InProgress,
    RequiresAction,
    Completed,
    Failed,
    Cancelled,
    /// Anything else, kept verbatim.
    Other(String),
}

impl InteractionStatus {
    pub fn parse(raw: &str) -> Self {
        match raw.trim().to_ascii_lowercase().as_str() {
            "in_progress" | "pending" | "running" => Self::InProgress,
            "requires_action" => Self::RequiresAction,
            "completed" | "succeeded" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" | "canceled" => Self::Cancelled,
            _ => Self::Other(raw.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::InProgress => "in_progress",
            Self::RequiresAction => "requires_action",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Other(s) => s,
        }
    }
}

/// An Interaction as far as the consumer uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub id: String,
    pub status: InteractionStatus,
    /// `outputs[]` as sent (model responses, or the pending function call).
    pub outputs: Option<Value>,
    pub usage: Option<Value>,
    pub error: Option<RpcStatus>,
}

impl Interaction {
    pub fn from_value(v: &Value) -> Result<Self, DecodeError> {
        let obj = v
            .as_object()
            .ok_or_else(|| DecodeError("interaction is not a JSON object".into()))?;
        let status = obj
            .get("status")
            .or_else(|| obj.get("state"))
            .and_then(Value::as_str)
            .map(InteractionStatus::parse)
            .ok_or_else(|| DecodeError("interaction has no `status`".into()))?;
        Ok(Self {
            id: obj
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            status,
            outputs: obj.get("outputs").filter(|o| !o.is_null()).cloned(),
            usage: obj.get("usage").filter(|u| !u.is_null()).cloned(),
            error: obj
                .get("error")
                .filter(|e| !e.is_null())
                .map(RpcStatus::from_value),
        })
    }
}

/// A video generation (`predictLongRunning`) operation.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoOperation {
    pub name: String,
    pub done: bool,
    pub error: Option<RpcStatus>,
    /// `response.generateVideoResponse.generatedSamples[].video.uri`.
    pub video_uris: Vec<String>,
}

impl VideoOperation {
    pub fn from_value(v: &Value) -> Result<Self, DecodeError> {
        let obj = v
            .as_object()
            .ok_or_else(|| DecodeError("operation is not a JSON object".into()))?;
        let samples = obj
            .get("response")
            .and_then(|r| {
                r.get("generateVideoResponse")
                    .or_else(|| r.get("generate_video_response"))
            })
            .and_then(|r| {
                r.get("generatedSamples")
                    .or_else(|| r.get("generated_samples"))
            })
            .and_then(Value::as_array);
        let video_uris = samples
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("video")?.get("uri")?.as_str().map(str::to_owned))
            .collect();
        Ok(Self {
            name: obj
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            done: obj.get("done").and_then(Value::as_bool).unwrap_or(false),
            error: obj
                .get("error")
                .filter(|e| !e.is_null())
                .map(RpcStatus::from_value),
            video_uris,
        })
    }
}

/// A Files API file's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct FileInfo {
    pub name: String,
    /// `ACTIVE`, `PROCESSING`, `FAILED` (or absent).
    pub state: Option<String>,
    pub uri: Option<String>,
    pub mime_type: Option<String>,
    pub expiration_time: Option<String>,
    /// `sizeBytes` (an int64, sent as a string).
    pub size_bytes: Option<u64>,
}

impl FileInfo {
    pub fn from_value(v: &Value) -> Result<Self, DecodeError> {
        let obj = v
            .as_object()
            .ok_or_else(|| DecodeError("file is not a JSON object".into()))?;
        let text = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| obj.get(*n).and_then(Value::as_str))
                .map(str::to_owned)
        };
        Ok(Self {
            name: text(&["name"]).unwrap_or_default(),
            state: text(&["state"]),
            uri: text(&["uri", "downloadUri", "download_uri"]),
            mime_type: text(&["mimeType", "mime_type"]),
            expiration_time: text(&["expirationTime", "expiration_time"]),
            size_bytes: ["sizeBytes", "size_bytes"]
                .iter()
                .find_map(|n| match obj.get(*n)? {
                    Value::String(s) => s.trim().parse().ok(),
                    Value::Number(n) => n.as_u64(),
                    _ => None,
                }),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn interaction_statuses_and_fields() {
        let i = Interaction::from_value(&json!({
            "id": "abc", "status": "requires_action",
            "outputs": [{"type": "function_call", "name": "lookup"}],
        }))
        .unwrap();
        assert_eq!(i.status, InteractionStatus::RequiresAction);
        assert_eq!(i.outputs.unwrap()[0]["name"], "lookup");
        for (raw, status) in [
            ("completed", InteractionStatus::Completed),
            ("in_progress", InteractionStatus::InProgress),
            ("FAILED", InteractionStatus::Failed),
            ("cancelled", InteractionStatus::Cancelled),
            ("paused", InteractionStatus::Other("paused".into())),
        ] {
            assert_eq!(InteractionStatus::parse(raw), status);
        }
        assert!(Interaction::from_value(&json!({"id": "x"})).is_err());
    }

    #[test]
    fn video_operation_reads_the_generated_samples() {
        let op = VideoOperation::from_value(&json!({
            "name": "models/veo-3/operations/o1", "done": true,
            "response": {"generateVideoResponse": {"generatedSamples": [
                {"video": {"uri": "https://generativelanguage.googleapis.com/v1beta/files/v1:download?alt=media"}}
            ]}}
        }))
        .unwrap();
        assert!(op.done);
        assert_eq!(op.video_uris.len(), 1);
        let running = VideoOperation::from_value(&json!({"name": "x"})).unwrap();
        assert!(!running.done && running.video_uris.is_empty());
    }
}
