//! The batch resource as Gemini serves it: a `google.longrunning.Operation` whose `metadata` is
//! the batch and whose `response` is its output (docs/gemini.md §4).
//!
//! Parsing is deliberately tolerant (walking a `serde_json::Value` instead of strict derives):
//! the wire mixes int64-as-string counters, two state prefixes and a doubly nested output list,
//! and a field we cannot read must degrade to `None`, never reject the whole operation.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::DecodeError;

/// A batch job, flattened out of its Operation wrapper.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub struct BatchOperation {
    /// `batches/<id>`.
    pub name: String,
    /// Operation-level `done`; the state below is the finer signal.
    pub done: bool,
    pub state: BatchState,
    pub display_name: Option<String>,
    pub model: Option<String>,
    pub stats: BatchStats,
    pub create_time: Option<String>,
    pub update_time: Option<String>,
    pub end_time: Option<String>,
    /// Where the results are; `None` while running, and briefly even after success (ellmer #926).
    pub output: Option<BatchOutput>,
    /// Operation-level error: the whole batch failed.
    pub error: Option<RpcStatus>,
}

/// Lifecycle state. The wire says `BATCH_STATE_*`; SDKs and some docs say `JOB_STATE_*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BatchState {
    Unspecified,
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Expired,
    /// A state this code does not know, kept verbatim so it can be logged and stored.
    Other(String),
}

/// Request counters. int64 fields arrive as JSON strings, sometimes numbers, often absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStats {
    pub request_count: Option<i64>,
    pub successful_request_count: Option<i64>,
    pub failed_request_count: Option<i64>,
    pub pending_request_count: Option<i64>,
}

/// Where a finished batch put its results.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchOutput {
    /// A generated Files API file, `files/<id>`, to download as JSONL.
    File(String),
    /// Results returned inside the operation itself (inline-request batches).
    Inline(Vec<InlineResponse>),
}

/// One inline result: `{metadata: {key}, response | error}`.
#[derive(Debug, Clone, PartialEq)]
pub struct InlineResponse {
    /// `metadata.key` (inline results do not have the top-level `key` file lines have).
    pub key: Option<String>,
    /// The `GenerateContentResponse` (or `EmbedContentResponse`) as sent, as JSON text (never a
    /// tree: an operation may hold megabytes of them); `None` if absent/null.
    pub response: Option<String>,
    pub error: Option<RpcStatus>,
}

/// A `google.rpc.Status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcStatus {
    pub code: Option<i64>,
    pub message: String,
    pub status: Option<String>,
}

impl BatchState {
    /// Either prefix (or none), any case; unknown values become [`BatchState::Other`].
    pub fn parse(raw: &str) -> Self {
        let upper = raw.trim().to_ascii_uppercase();
        let bare = upper
            .strip_prefix("BATCH_STATE_")
            .or_else(|| upper.strip_prefix("JOB_STATE_"))
            .unwrap_or(&upper);
        match bare {
            "UNSPECIFIED" | "" => Self::Unspecified,
            "PENDING" | "QUEUED" => Self::Pending,
            "RUNNING" => Self::Running,
            "SUCCEEDED" => Self::Succeeded,
            "FAILED" => Self::Failed,
            "CANCELLED" | "CANCELED" => Self::Cancelled,
            "EXPIRED" => Self::Expired,
            _ => Self::Other(raw.to_owned()),
        }
    }

    /// Canonical prefix-free name (`"SUCCEEDED"`), stable for storage and metrics.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Unspecified => "UNSPECIFIED",
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
            Self::Other(s) => s,
        }
    }

    /// True once the batch can no longer change.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Expired
        )
    }

    /// Queued or being worked on: the states a batch that is late sits in.
    pub fn is_in_progress(&self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

impl std::fmt::Display for BatchState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for BatchState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for BatchState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Ok(Self::parse(&raw))
    }
}

impl BatchOperation {
    /// `createTime` as epoch milliseconds; `None` if absent or not RFC 3339.
    pub fn created_at_ms(&self) -> Option<i64> {
        let t = self.create_time.as_deref()?;
        chrono::DateTime::parse_from_rfc3339(t.trim())
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// Reads an Operation (or, tolerantly, a bare batch object). Only a missing `name` is fatal,
    /// because without it the result cannot be tied to a job.
    pub fn from_value(v: &Value) -> Result<Self, DecodeError> {
        let obj = v
            .as_object()
            .ok_or_else(|| DecodeError("operation is not a JSON object".into()))?;
        let empty = Map::new();
        let meta = obj
            .get("metadata")
            .and_then(Value::as_object)
            .unwrap_or(&empty);

        let name = str_field(obj, &["name"])
            .or_else(|| str_field(meta, &["name"]))
            .ok_or_else(|| DecodeError("operation has no `name`".into()))?;
        let done = obj.get("done").and_then(Value::as_bool).unwrap_or(false);
        let error = obj
            .get("error")
            .filter(|e| !e.is_null())
            .map(RpcStatus::from_value);
        let response = obj.get("response").filter(|r| !r.is_null());

        let mut state = str_field(meta, &["state"])
            .or_else(|| str_field(obj, &["state"]))
            .map_or(BatchState::Unspecified, |s| BatchState::parse(&s));
        // Without a state, LRO semantics still say how it ended: `done` + `error` failed,
        // `done` + `response` succeeded.
        if state == BatchState::Unspecified && done {
            if error.is_some() {
                state = BatchState::Failed;
            } else if response.is_some() {
                state = BatchState::Succeeded;
            }
        }

        let output = response
            .and_then(output_from)
            .or_else(|| meta.get("output").and_then(output_from));

        Ok(Self {
            name,
            done,
            state,
            display_name: str_field(meta, &["displayName", "display_name"]),
            model: str_field(meta, &["model"]),
            stats: meta
                .get("batchStats")
                .or_else(|| meta.get("batch_stats"))
                .map(BatchStats::from_value)
                .unwrap_or_default(),
            create_time: str_field(meta, &["createTime", "create_time"]),
            update_time: str_field(meta, &["updateTime", "update_time"]),
            end_time: str_field(meta, &["endTime", "end_time"]),
            output,
            error,
        })
    }

    /// The results file, if the output is file-based.
    pub fn responses_file(&self) -> Option<&str> {
        match &self.output {
            Some(BatchOutput::File(f)) => Some(f),
            _ => None,
        }
    }
}

/// An object's members, each kept as raw JSON text borrowed from the input.
type RawMembers<'a> = std::collections::BTreeMap<String, &'a RawValue>;

fn raw_members(raw: &RawValue) -> Option<RawMembers<'_>> {
    serde_json::from_str(raw.get()).ok()
}

/// `raw` as a tree (small parts of an operation only).
fn tree(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

impl BatchOperation {
    /// Reads an Operation from its bytes, like [`Self::from_value`], but without a tree of the
    /// inline results: everything else is small and read as before; each inline response stays
    /// the raw JSON text it was sent as, so memory follows the answer's size, not its shape.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, DecodeError> {
        let top: RawMembers<'_> = serde_json::from_slice(bytes)
            .map_err(|e| DecodeError(format!("operation is not a JSON object ({e})")))?;
        let mut outer = Map::new();
        // The output may sit in `response` or in `metadata.output`, each a file or a list.
        let mut response = (None, None);
        let mut meta_output = (None, None);
        for (name, raw) in &top {
            match name.as_str() {
                "response" => {
                    let (rest, list) = split_output(raw);
                    outer.insert(name.clone(), rest.clone());
                    response = (Some(rest), list);
                }
                "metadata" => {
                    let mut meta = Map::new();
                    for (field, value) in raw_members(raw).unwrap_or_default() {
                        if field == "output" {
                            let (rest, list) = split_output(value);
                            meta.insert(field, rest.clone());
                            meta_output = (Some(rest), list);
                        } else {
                            meta.insert(field, tree(value));
                        }
                    }
                    outer.insert(name.clone(), Value::Object(meta));
                }
                _ => {
                    outer.insert(name.clone(), tree(raw));
                }
            }
        }
        let mut op = Self::from_value(&Value::Object(outer))?;
        // The order of `from_value`: the response's file, its list, then metadata.output's.
        let output_of = |(rest, list): (Option<Value>, Option<Vec<&RawValue>>)| {
            rest.filter(|r| !r.is_null())
                .and_then(|r| output_from(&r))
                .or_else(|| {
                    list.map(|l| {
                        BatchOutput::Inline(l.into_iter().map(InlineResponse::from_raw).collect())
                    })
                })
        };
        op.output = output_of(response).or_else(|| output_of(meta_output));
        Ok(op)
    }
}

/// An output object (`response` or `metadata.output`) without its inline list, as a tree, and
/// the list's elements as raw text.
fn split_output(raw: &RawValue) -> (Value, Option<Vec<&RawValue>>) {
    let Some(members) = raw_members(raw) else {
        return (tree(raw), None);
    };
    let mut rest = Map::new();
    let mut list = None;
    for (field, value) in members {
        if matches!(field.as_str(), "inlinedResponses" | "inlined_responses") {
            // The wire nests the list twice; accept a single level too.
            list = serde_json::from_str::<Vec<&RawValue>>(value.get())
                .ok()
                .or_else(|| {
                    let inner = raw_members(value)?;
                    let nested = inner
                        .get("inlinedResponses")
                        .or_else(|| inner.get("inlined_responses"))?;
                    serde_json::from_str::<Vec<&RawValue>>(nested.get()).ok()
                });
        } else {
            rest.insert(field, tree(value));
        }
    }
    (Value::Object(rest), list)
}

impl InlineResponse {
    /// Reads one inline result from its raw text; the response is kept as that text.
    fn from_raw(raw: &RawValue) -> Self {
        let members = raw_members(raw).unwrap_or_default();
        let key = members
            .get("metadata")
            .map(|m| tree(m))
            .and_then(|m| m.get("key").and_then(Value::as_str).map(str::to_owned))
            .or_else(|| {
                members
                    .get("key")
                    .and_then(|k| serde_json::from_str::<String>(k.get()).ok())
            });
        Self {
            key,
            response: members
                .get("response")
                .map(|r| r.get().trim())
                .filter(|r| *r != "null")
                .map(str::to_owned),
            error: members
                .get("error")
                .map(|e| tree(e))
                .filter(|e| !e.is_null())
                .map(|e| RpcStatus::from_value(&e)),
        }
    }
}

impl TryFrom<Value> for BatchOperation {
    type Error = DecodeError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        Self::from_value(&v)
    }
}

impl BatchStats {
    /// Reads the counters, accepting strings or numbers; anything unreadable becomes `None`.
    pub fn from_value(v: &Value) -> Self {
        let get = |camel: &str, snake: &str| v.get(camel).or_else(|| v.get(snake)).and_then(int64);
        Self {
            request_count: get("requestCount", "request_count"),
            successful_request_count: get("successfulRequestCount", "successful_request_count"),
            failed_request_count: get("failedRequestCount", "failed_request_count"),
            pending_request_count: get("pendingRequestCount", "pending_request_count"),
        }
    }
}

impl RpcStatus {
    /// Reads a `google.rpc.Status`; a bare string is taken as the message.
    pub fn from_value(v: &Value) -> Self {
        if let Some(s) = v.as_str() {
            return Self {
                message: s.to_owned(),
                ..Self::default()
            };
        }
        Self {
            code: v.get("code").and_then(int64),
            message: v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            status: v.get("status").and_then(Value::as_str).map(str::to_owned),
        }
    }
}

impl InlineResponse {
    /// Reads one element of `inlinedResponses.inlinedResponses[]`.
    pub fn from_value(v: &Value) -> Self {
        let key = v
            .get("metadata")
            .and_then(|m| m.get("key"))
            .or_else(|| v.get("key"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Self {
            key,
            response: v
                .get("response")
                .filter(|r| !r.is_null())
                .map(Value::to_string),
            error: v
                .get("error")
                .filter(|e| !e.is_null())
                .map(RpcStatus::from_value),
        }
    }
}

/// Output from a `response` or `metadata.output` object: a file wins over inline results.
fn output_from(v: &Value) -> Option<BatchOutput> {
    let file = v
        .get("responsesFile")
        .or_else(|| v.get("responses_file"))
        .and_then(Value::as_str)
        .filter(|f| !f.trim().is_empty());
    if let Some(f) = file {
        return Some(BatchOutput::File(f.to_owned()));
    }
    let inlined = v
        .get("inlinedResponses")
        .or_else(|| v.get("inlined_responses"))?;
    // The wire nests the list twice; accept a single level too.
    let list = inlined
        .get("inlinedResponses")
        .or_else(|| inlined.get("inlined_responses"))
        .unwrap_or(inlined)
        .as_array()?;
    Some(BatchOutput::Inline(
        list.iter().map(InlineResponse::from_value).collect(),
    ))
}

fn str_field(obj: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| obj.get(*n).and_then(Value::as_str))
        .map(str::to_owned)
}

/// An int64 the proto3 JSON way: a number or a decimal string.
pub(crate) fn int64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Both readers of an operation, which must agree.
    fn op(v: Value) -> BatchOperation {
        let from_tree = BatchOperation::from_value(&v).unwrap();
        let from_bytes = BatchOperation::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(
            from_bytes, from_tree,
            "from_slice and from_value disagree on {v}"
        );
        from_tree
    }

    #[test]
    fn file_output_with_string_counts() {
        let o = op(json!({
            "name": "batches/abc",
            "metadata": {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
                "name": "batches/abc", "model": "models/gemini-2.5-flash", "displayName": "nightly",
                "createTime": "2026-05-04T10:00:00Z", "updateTime": "2026-05-04T11:00:00Z",
                "endTime": "2026-05-04T11:00:00Z", "state": "BATCH_STATE_SUCCEEDED",
                "batchStats": {"requestCount": "10", "successfulRequestCount": "9",
                               "failedRequestCount": "1", "pendingRequestCount": "0"},
                "output": {"responsesFile": "files/batch-xyz"}
            },
            "done": true,
            "response": {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput",
                         "responsesFile": "files/batch-xyz"}
        }));
        assert_eq!(o.name, "batches/abc");
        assert!(o.done);
        assert_eq!(o.state, BatchState::Succeeded);
        assert_eq!(o.display_name.as_deref(), Some("nightly"));
        assert_eq!(o.model.as_deref(), Some("models/gemini-2.5-flash"));
        assert_eq!(o.end_time.as_deref(), Some("2026-05-04T11:00:00Z"));
        assert_eq!(
            o.stats,
            BatchStats {
                request_count: Some(10),
                successful_request_count: Some(9),
                failed_request_count: Some(1),
                pending_request_count: Some(0)
            }
        );
        assert_eq!(o.output, Some(BatchOutput::File("files/batch-xyz".into())));
        assert_eq!(o.responses_file(), Some("files/batch-xyz"));
        assert_eq!(o.error, None);
    }

    #[test]
    fn counts_as_numbers_or_missing_or_garbage() {
        let o = op(
            json!({"name": "batches/a", "metadata": {"state": "BATCH_STATE_RUNNING",
            "batchStats": {"requestCount": 4, "successfulRequestCount": "x", "pendingRequestCount": 2.0}}}),
        );
        assert_eq!(o.stats.request_count, Some(4));
        assert_eq!(o.stats.successful_request_count, None);
        assert_eq!(o.stats.failed_request_count, None);
        assert_eq!(o.stats.pending_request_count, Some(2));
        let o = op(json!({"name": "batches/a", "metadata": {"state": "BATCH_STATE_PENDING"}}));
        assert_eq!(o.stats, BatchStats::default());
        assert_eq!(o.state, BatchState::Pending);
        assert!(!o.done);
        assert_eq!(o.output, None);
    }

    #[test]
    fn both_state_prefixes_and_unknown() {
        for (raw, want) in [
            ("BATCH_STATE_SUCCEEDED", BatchState::Succeeded),
            ("JOB_STATE_SUCCEEDED", BatchState::Succeeded),
            ("BATCH_STATE_FAILED", BatchState::Failed),
            ("JOB_STATE_FAILED", BatchState::Failed),
            ("BATCH_STATE_CANCELLED", BatchState::Cancelled),
            ("JOB_STATE_CANCELLED", BatchState::Cancelled),
            ("BATCH_STATE_EXPIRED", BatchState::Expired),
            ("JOB_STATE_EXPIRED", BatchState::Expired),
            ("BATCH_STATE_RUNNING", BatchState::Running),
            ("JOB_STATE_PENDING", BatchState::Pending),
            ("BATCH_STATE_UNSPECIFIED", BatchState::Unspecified),
            ("succeeded", BatchState::Succeeded),
        ] {
            let o = op(json!({"name": "batches/a", "metadata": {"state": raw}}));
            assert_eq!(o.state, want, "{raw}");
        }
        let o = op(json!({"name": "batches/a", "metadata": {"state": "BATCH_STATE_PAUSED"}}));
        assert_eq!(o.state, BatchState::Other("BATCH_STATE_PAUSED".into()));
        assert_eq!(o.state.as_str(), "BATCH_STATE_PAUSED");
        assert!(!o.state.is_terminal());
        assert!(BatchState::Expired.is_terminal());
        assert!(!BatchState::Running.is_terminal());
        assert_eq!(BatchState::Succeeded.as_str(), "SUCCEEDED");
    }

    #[test]
    fn inline_output_is_doubly_nested_and_keyed_by_metadata() {
        let o = op(json!({
            "name": "batches/in",
            "metadata": {"state": "BATCH_STATE_SUCCEEDED"},
            "done": true,
            "response": {"@type": "x.GenerateContentBatchOutput", "inlinedResponses": {"inlinedResponses": [
                {"metadata": {"key": "k1"}, "response": {"candidates": [{"content": {"parts": [{"text": "hi"}]}}]}},
                {"metadata": {"key": "k2"}, "error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}},
                {"response": null}
            ]}}
        }));
        let Some(BatchOutput::Inline(items)) = o.output else {
            panic!("expected inline output")
        };
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].key.as_deref(), Some("k1"));
        assert!(items[0].response.is_some());
        assert_eq!(items[0].error, None);
        assert_eq!(items[1].key.as_deref(), Some("k2"));
        assert_eq!(
            items[1].error,
            Some(RpcStatus {
                code: Some(400),
                message: "bad".into(),
                status: Some("INVALID_ARGUMENT".into())
            })
        );
        assert_eq!(items[2].key, None);
        assert_eq!(items[2].response, None);
    }

    #[test]
    fn embeddings_inline_responses() {
        let o = op(json!({
            "name": "batches/emb", "done": true,
            "metadata": {"state": "BATCH_STATE_SUCCEEDED"},
            "response": {"inlinedResponses": {"inlinedResponses": [
                {"metadata": {"key": "e1"}, "response": {"embedding": {"values": [0.25, -1.5, 3e-7]}}}
            ]}}
        }));
        let Some(BatchOutput::Inline(items)) = o.output else {
            panic!("expected inline output")
        };
        let emb: Value = serde_json::from_str(items[0].response.as_ref().unwrap()).unwrap();
        assert_eq!(emb["embedding"]["values"][1], json!(-1.5));
    }

    #[test]
    fn falls_back_to_metadata_output() {
        let o = op(json!({"name": "batches/m", "done": true,
            "metadata": {"state": "JOB_STATE_SUCCEEDED", "output": {"responsesFile": "files/m-1"}}}));
        assert_eq!(o.output, Some(BatchOutput::File("files/m-1".into())));
        let o = op(json!({"name": "batches/m", "done": true,
            "metadata": {"state": "BATCH_STATE_SUCCEEDED",
                         "output": {"inlinedResponses": {"inlinedResponses": [{"metadata": {"key": "a"}, "response": {}}]}}},
            "response": {"@type": "x"}}));
        assert!(matches!(o.output, Some(BatchOutput::Inline(ref v)) if v.len() == 1));
        // An empty file name is no output at all (the success-before-file race).
        let o = op(json!({"name": "batches/m", "done": true,
            "metadata": {"state": "BATCH_STATE_SUCCEEDED"}, "response": {"responsesFile": ""}}));
        assert_eq!(o.output, None);
    }

    #[test]
    fn whole_batch_error() {
        let o = op(json!({"name": "batches/f", "done": true,
            "metadata": {"state": "BATCH_STATE_FAILED"},
            "error": {"code": 3, "message": "input file is invalid", "details": []}}));
        assert_eq!(o.state, BatchState::Failed);
        assert_eq!(
            o.error,
            Some(RpcStatus {
                code: Some(3),
                message: "input file is invalid".into(),
                status: None
            })
        );
        assert_eq!(o.output, None);
        // No state at all: LRO semantics decide.
        let o =
            op(json!({"name": "batches/f", "done": true, "error": {"code": "13", "message": "x"}}));
        assert_eq!(o.state, BatchState::Failed);
        assert_eq!(o.error.unwrap().code, Some(13));
    }

    #[test]
    fn name_is_required_and_non_objects_rejected() {
        assert!(BatchOperation::from_value(&json!({"done": true})).is_err());
        assert!(BatchOperation::from_value(&json!([1])).is_err());
        let o = op(json!({"metadata": {"name": "batches/only-meta"}}));
        assert_eq!(o.name, "batches/only-meta");
        assert_eq!(o.state, BatchState::Unspecified);
    }

    #[test]
    fn serde_deserialize_goes_through_the_tolerant_parser() {
        let o: BatchOperation = serde_json::from_str(
            r#"{"name":"batches/s","metadata":{"state":"BATCH_STATE_EXPIRED"},"done":true}"#,
        )
        .unwrap();
        assert_eq!(o.state, BatchState::Expired);
        assert!(serde_json::from_str::<BatchOperation>("[]").is_err());
        let s: BatchState = serde_json::from_str(r#""JOB_STATE_RUNNING""#).unwrap();
        assert_eq!(s, BatchState::Running);
        assert_eq!(
            serde_json::to_string(&BatchState::Cancelled).unwrap(),
            r#""CANCELLED""#
        );
    }
}
