//! Batch results JSONL model and streaming parser.
//!
//! A results file is one JSON object per line: `{"key", "response"}` or `{"key", "error"}`
//! (docs/gemini.md §5). Files can be gigabytes, so [`LineSplitter`] cuts a byte stream into lines
//! with bounded memory and reports byte offsets for checkpoints, and [`parse_line`] turns one
//! line into one [`ResultRecord`] without ever failing: a bad line becomes a `Malformed` row, not
//! a failed job.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::domain::gemini::InlineResponse;
use crate::domain::gemini::batch::int64;

pub use super::lines::{Line, LineSplitter, TOO_LONG_PREFIX};

/// One result, keyed by the caller's request key.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRecord {
    /// The request key, or `line-<n>` (display only) when none was readable.
    pub key: String,
    /// No usable key: the row is stored by its line number, apart from request keys, so a
    /// replay still overwrites the same row.
    pub keyless: bool,
    /// 1-based line number in the file; for inline results, index + 1.
    pub line: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success(SuccessRow),
    /// The request failed (a `google.rpc.Status`).
    Error {
        code: Option<i64>,
        message: String,
        status: Option<String>,
    },
    /// The line was unusable; `reason` says why without quoting it.
    Malformed {
        reason: String,
    },
}

/// What a consumer stores for a successful request.
///
/// `finish_reason` is kept as sent: a `MAX_TOKENS`/`SAFETY` finish with empty text is still a
/// response, and judging it is the caller's business.
#[derive(Debug, Clone, PartialEq)]
pub struct SuccessRow {
    /// The text parts of the first candidate, concatenated; thought-summary parts excluded.
    pub text: String,
    pub finish_reason: Option<String>,
    pub usage: Usage,
    pub model_version: Option<String>,
    pub response_id: Option<String>,
    /// The whole response as the JSON text it arrived as, never truncated or re-serialised.
    pub response: String,
}

/// `usageMetadata` token counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: Option<i64>,
    pub candidates_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub thoughts_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
}

/// The key used when a line has no readable key.
pub fn synthetic_key(line_no: u64) -> String {
    format!("line-{line_no}")
}

/// Parses one results-file line. Never panics; garbage becomes [`Outcome::Malformed`].
///
/// Only what a row stores is read: the response is kept as the raw text it arrived as (never
/// parsed into a tree and written out again), and its text parts, finish reason, usage and
/// version are read through borrowed views. A response whose fields have unexpected types takes
/// the slower tree path, which reads the same fields leniently.
pub fn parse_line(line: &[u8], line_no: u64) -> ResultRecord {
    let malformed = |key: Option<String>, reason: &str| ResultRecord {
        keyless: key.is_none(),
        key: key.unwrap_or_else(|| synthetic_key(line_no)),
        line: line_no,
        outcome: Outcome::Malformed {
            reason: reason.to_owned(),
        },
    };
    let trimmed = line
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(line)
        .trim_ascii();
    if trimmed.first() != Some(&b'{') {
        // Still a JSON parse, so the reason says what kind of garbage it is.
        return match serde_json::from_slice::<serde::de::IgnoredAny>(trimmed) {
            Ok(_) => malformed(None, "not a JSON object"),
            Err(e) => malformed(None, &json_reason(&e)),
        };
    }
    let view: LineView<'_> = match serde_json::from_slice(trimmed) {
        Ok(v) => v,
        Err(e) => return malformed(None, &json_reason(&e)),
    };
    let key = match view.key.map(RawValue::get) {
        Some(raw) if raw.starts_with('"') => match serde_json::from_str::<Cow<'_, str>>(raw) {
            Ok(k) if !k.is_empty() => Some(k.into_owned()),
            _ => return malformed(None, "empty key"),
        },
        Some("null") | None => view
            .metadata
            .and_then(|m| serde_json::from_str::<MetadataView>(m.get()).ok())
            .and_then(|m| match m.key {
                Some(Value::String(k)) if !k.is_empty() => Some(k),
                _ => None,
            }),
        Some(_) => return malformed(None, "key is not a string"),
    };
    let Some(key) = key else {
        return malformed(None, "missing key");
    };
    let error = view
        .error
        .and_then(|e| serde_json::from_str::<Value>(e.get()).ok())
        .filter(|e| !e.is_null());
    let outcome = match (error, view.response.map(RawValue::get)) {
        (Some(e), _) => error_outcome(&e),
        (None, None) => malformed_outcome("neither response nor error"),
        (None, Some("null")) => malformed_outcome("response is null"),
        (None, Some(raw)) if raw.starts_with('{') => Outcome::Success(success_from_raw(raw)),
        (None, Some(_)) => malformed_outcome("response is not an object"),
    };
    ResultRecord {
        key,
        keyless: false,
        line: line_no,
        outcome,
    }
}

/// The error class and position only: a line's content stays out of messages.
fn json_reason(e: &serde_json::Error) -> String {
    format!(
        "invalid JSON ({:?} error at column {})",
        e.classify(),
        e.column()
    )
}

/// The top level of a results line, each field kept as raw text (a JSON `null` included, so a
/// null response is told apart from a missing one).
#[derive(Deserialize)]
struct LineView<'a> {
    #[serde(default, borrow, deserialize_with = "raw_field")]
    key: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw_field")]
    metadata: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw_field")]
    response: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw_field")]
    error: Option<&'a RawValue>,
}

fn raw_field<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct MetadataView {
    #[serde(default)]
    key: Option<Value>,
}

/// The parts of a `GenerateContentResponse` a row stores; everything else is skipped unread.
#[derive(Deserialize)]
struct ResponseView<'a> {
    #[serde(default, borrow)]
    candidates: Option<Vec<CandidateView<'a>>>,
    #[serde(default, rename = "usageMetadata")]
    usage: Option<UsageView>,
    #[serde(default, borrow, rename = "modelVersion")]
    model_version: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "responseId")]
    response_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CandidateView<'a> {
    #[serde(default, borrow)]
    content: Option<ContentView<'a>>,
    #[serde(default, borrow, rename = "finishReason")]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ContentView<'a> {
    #[serde(default, borrow)]
    parts: Option<Vec<PartView<'a>>>,
}

#[derive(Deserialize)]
struct PartView<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    thought: Option<bool>,
}

/// Token counts are int64, which JSON may carry as numbers or strings.
#[derive(Deserialize)]
struct UsageView {
    #[serde(default, rename = "promptTokenCount")]
    prompt: Option<Value>,
    #[serde(default, rename = "candidatesTokenCount")]
    candidates: Option<Value>,
    #[serde(default, rename = "totalTokenCount")]
    total: Option<Value>,
    #[serde(default, rename = "thoughtsTokenCount")]
    thoughts: Option<Value>,
    #[serde(default, rename = "cachedContentTokenCount")]
    cached: Option<Value>,
}

/// A success row from the raw response text (an object).
fn success_from_raw(raw: &str) -> SuccessRow {
    let Ok(view) = serde_json::from_str::<ResponseView<'_>>(raw) else {
        // Unexpected types somewhere: read the same fields leniently from the tree.
        return match serde_json::from_str::<Value>(raw) {
            Ok(tree) => success_row(&tree, raw.to_owned()),
            Err(_) => SuccessRow {
                text: String::new(),
                finish_reason: None,
                usage: Usage::default(),
                model_version: None,
                response_id: None,
                response: raw.to_owned(),
            },
        };
    };
    let first = view.candidates.as_ref().and_then(|c| c.first());
    let text = first
        .and_then(|c| c.content.as_ref())
        .and_then(|c| c.parts.as_ref())
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p.thought != Some(true))
                .filter_map(|p| p.text.as_deref())
                .collect::<String>()
        })
        .unwrap_or_default();
    let count = |v: Option<&Value>| v.and_then(int64);
    let usage = view.usage.as_ref();
    SuccessRow {
        text,
        finish_reason: first
            .and_then(|c| c.finish_reason.as_deref())
            .map(str::to_owned),
        usage: Usage {
            prompt_tokens: count(usage.and_then(|u| u.prompt.as_ref())),
            candidates_tokens: count(usage.and_then(|u| u.candidates.as_ref())),
            total_tokens: count(usage.and_then(|u| u.total.as_ref())),
            thoughts_tokens: count(usage.and_then(|u| u.thoughts.as_ref())),
            cached_tokens: count(usage.and_then(|u| u.cached.as_ref())),
        },
        model_version: view.model_version.map(Cow::into_owned),
        response_id: view.response_id.map(Cow::into_owned),
        response: raw.to_owned(),
    }
}

/// Turns one inline result (from the operation itself) into a record numbered `index + 1`.
pub fn from_inline(index: usize, r: &InlineResponse) -> ResultRecord {
    let line = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
    let given = r.key.clone().filter(|k| !k.is_empty());
    let keyless = given.is_none();
    let key = given.unwrap_or_else(|| synthetic_key(line));
    let outcome = if let Some(e) = &r.error {
        Outcome::Error {
            code: e.code,
            message: e.message.clone(),
            status: e.status.clone(),
        }
    } else if let Some(raw) = &r.response {
        // Parsed as a results line would be, from the raw text: the response stays that text.
        let line_text = format!("{{\"key\":\"k\",\"response\":{raw}}}");
        parse_line(line_text.as_bytes(), line).outcome
    } else {
        outcome_of(None, None)
    };
    ResultRecord {
        key,
        keyless,
        line,
        outcome,
    }
}

/// Record for any [`Line`]: parsed normally, or `Malformed` when it was too long to hold (its key
/// is still recovered when the line starts with it).
pub fn record_from_line(line: &Line) -> ResultRecord {
    if !line.too_long {
        return parse_line(&line.bytes, line.number);
    }
    let key = leading_key(&line.bytes);
    ResultRecord {
        keyless: key.is_none(),
        key: key.unwrap_or_else(|| synthetic_key(line.number)),
        line: line.number,
        outcome: Outcome::Malformed {
            reason: "line longer than the configured maximum".to_owned(),
        },
    }
}

/// The key of `{"key": "…", …` read from a prefix of a line.
fn leading_key(prefix: &[u8]) -> Option<String> {
    let rest = prefix
        .trim_ascii_start()
        .strip_prefix(b"{")?
        .trim_ascii_start();
    let rest = rest.strip_prefix(b"\"key\"")?.trim_ascii_start();
    let rest = rest.strip_prefix(b":")?;
    let mut de = serde_json::Deserializer::from_slice(rest);
    String::deserialize(&mut de).ok().filter(|k| !k.is_empty())
}

fn outcome_of(response: Option<&Value>, error: Option<&Value>) -> Outcome {
    match (error.filter(|e| !e.is_null()), response) {
        (Some(e), _) => error_outcome(e),
        (None, None) => malformed_outcome("neither response nor error"),
        (None, Some(Value::Null)) => malformed_outcome("response is null"),
        (None, Some(r @ Value::Object(_))) => Outcome::Success(success_row(r, r.to_string())),
        (None, Some(_)) => malformed_outcome("response is not an object"),
    }
}

/// The outcome of a non-null `error` (a `google.rpc.Status`, or a bare message).
fn error_outcome(error: &Value) -> Outcome {
    match error {
        Value::Object(e) => Outcome::Error {
            code: e.get("code").and_then(int64),
            message: e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            status: e.get("status").and_then(Value::as_str).map(str::to_owned),
        },
        Value::String(m) => Outcome::Error {
            code: None,
            message: m.clone(),
            status: None,
        },
        _ => malformed_outcome("error is neither an object nor a string"),
    }
}

fn malformed_outcome(reason: &str) -> Outcome {
    Outcome::Malformed {
        reason: reason.to_owned(),
    }
}

/// A success row read leniently from a parsed response; `raw` is its text as stored.
fn success_row(response: &Value, raw: String) -> SuccessRow {
    let first = response.pointer("/candidates/0");
    let text = first
        .and_then(|c| c.pointer("/content/parts"))
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<String>()
        })
        .unwrap_or_default();
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let usage = response.get("usageMetadata");
    let count = |name: &str| usage.and_then(|u| u.get(name)).and_then(int64);
    SuccessRow {
        text,
        finish_reason: s(first.and_then(|c| c.get("finishReason"))),
        usage: Usage {
            prompt_tokens: count("promptTokenCount"),
            candidates_tokens: count("candidatesTokenCount"),
            total_tokens: count("totalTokenCount"),
            thoughts_tokens: count("thoughtsTokenCount"),
            cached_tokens: count("cachedContentTokenCount"),
        },
        model_version: s(response.get("modelVersion")),
        response_id: s(response.get("responseId")),
        response: raw,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::domain::gemini::RpcStatus;
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    fn tree(raw: &str) -> Value {
        serde_json::from_str(raw).unwrap()
    }

    fn success(key: &str) -> String {
        json!({"key": key, "response": {
            "candidates": [{"content": {"parts": [{"text": "Hello, "}, {"text": "world"}], "role": "model"},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": 3, "totalTokenCount": 20,
                              "thoughtsTokenCount": 6, "cachedContentTokenCount": 0},
            "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"}})
        .to_string()
    }

    #[test]
    fn success_line() {
        let r = parse_line(success("k1").as_bytes(), 7);
        assert_eq!(r.key, "k1");
        assert_eq!(r.line, 7);
        let Outcome::Success(row) = r.outcome else {
            panic!("not a success: {:?}", r.outcome)
        };
        assert_eq!(row.text, "Hello, world");
        assert_eq!(row.finish_reason.as_deref(), Some("STOP"));
        assert_eq!(
            row.usage,
            Usage {
                prompt_tokens: Some(11),
                candidates_tokens: Some(3),
                total_tokens: Some(20),
                thoughts_tokens: Some(6),
                cached_tokens: Some(0)
            }
        );
        assert_eq!(row.model_version.as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(row.response_id.as_deref(), Some("resp-1"));
        assert_eq!(tree(&row.response)["candidates"][0]["index"], json!(0));
    }

    #[test]
    fn thoughts_and_non_text_parts_are_not_text() {
        let line = json!({"key": "k", "response": {"candidates": [{"content": {"parts": [
            {"text": "thinking...", "thought": true}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
            {"text": "answer"}]}, "finishReason": "STOP"}]}});
        let r = parse_line(line.to_string().as_bytes(), 1);
        let Outcome::Success(row) = r.outcome else {
            panic!()
        };
        assert_eq!(row.text, "answer");
        assert_eq!(
            tree(&row.response)["candidates"][0]["content"]["parts"][1]["inlineData"]["data"],
            "AAAA"
        );
    }

    #[test]
    fn blocked_response_is_kept_with_its_finish_reason() {
        let line = r#"{"key":"k","response":{"candidates":[{"finishReason":"SAFETY"}],"usageMetadata":{"promptTokenCount":"5"}}}"#;
        let Outcome::Success(row) = parse_line(line.as_bytes(), 1).outcome else {
            panic!()
        };
        assert_eq!(row.text, "");
        assert_eq!(row.finish_reason.as_deref(), Some("SAFETY"));
        assert_eq!(row.usage.prompt_tokens, Some(5));
        assert_eq!(row.usage.total_tokens, None);
    }

    #[test]
    fn the_response_is_kept_as_the_exact_text_it_arrived_as() {
        let raw = r#"{ "candidates" : [ {"content": {"parts": [{"text": "a\u00e9\n"}]}} ],
            "usageMetadata": {"totalTokenCount": 1.5e1}, "extra": [1, 2.50, {"z": null}] }"#;
        let line = format!(r#"{{"key": "k", "response": {raw}}}"#);
        let Outcome::Success(row) = parse_line(line.as_bytes(), 1).outcome else {
            panic!()
        };
        assert_eq!(row.response, raw);
        assert_eq!(row.text, "a\u{e9}\n");
        assert_eq!(row.usage.total_tokens, Some(15));
    }

    #[test]
    fn the_borrowed_view_reads_what_the_tree_reads() {
        let responses = [
            json!({"candidates": [{"content": {"parts": [{"text": "a"}, {"text": "t", "thought": true}, {"text": "b"}]}, "finishReason": "STOP"}, {"content": {"parts": [{"text": "second"}]}}], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": "4", "totalTokenCount": 7, "thoughtsTokenCount": 1, "cachedContentTokenCount": 2}, "modelVersion": "m", "responseId": "r"}),
            json!({"candidates": []}),
            json!({}),
            json!({"candidates": [{"content": {"role": "model"}}]}),
            // Unexpected types: the view refuses them and the tree path reads leniently.
            json!({"candidates": [{"content": {"parts": [{"text": 5}, {"text": "ok", "thought": "yes"}]}, "finishReason": 1}], "modelVersion": 2, "usageMetadata": {"totalTokenCount": true}}),
            json!({"candidates": {"not": "a list"}, "responseId": ["x"]}),
        ];
        for response in responses {
            let raw = response.to_string();
            assert_eq!(
                success_from_raw(&raw),
                success_row(&response, raw.clone()),
                "{raw}"
            );
        }
    }

    #[test]
    fn large_response_is_not_truncated() {
        let big = "x".repeat(3 * 1024 * 1024);
        let line = json!({"key": "big", "response": {"candidates": [{"content": {"parts": [{"text": big}]}}]}});
        let Outcome::Success(row) = parse_line(line.to_string().as_bytes(), 1).outcome else {
            panic!()
        };
        assert_eq!(row.text.len(), big.len());
    }

    #[test]
    fn error_line() {
        let r = parse_line(
            br#"{"key":"k2","error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[]}}"#,
            2,
        );
        assert_eq!(r.key, "k2");
        assert_eq!(
            r.outcome,
            Outcome::Error {
                code: Some(429),
                message: "quota".into(),
                status: Some("RESOURCE_EXHAUSTED".into())
            }
        );
        let r = parse_line(br#"{"key":"k3","error":"boom"}"#, 3);
        assert!(matches!(r.outcome, Outcome::Error { ref message, .. } if message == "boom"));
    }

    #[test]
    fn malformed_lines() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "line-4"),
            (b"[1,2,3]", "line-4"),
            (b"\"str\"", "line-4"),
            (br#"{"key":5,"response":{}}"#, "line-4"),
            (br#"{"key":"","response":{}}"#, "line-4"),
            (br#"{"response":{}}"#, "line-4"),
            (br#"{"key":"a"}"#, "a"),
            (br#"{"key":"b","response":null}"#, "b"),
            (br#"{"key":"c","response":[1]}"#, "c"),
            (br#"{"key":"d","error":5}"#, "d"),
            (br#"{"key":"e","response":{},"#, "line-4"),
            (b"\xff\xfe{}", "line-4"),
        ];
        for (line, key) in cases {
            let r = parse_line(line, 4);
            assert_eq!(&r.key, key, "{}", String::from_utf8_lossy(line));
            assert_eq!(r.line, 4);
            let Outcome::Malformed { reason } = &r.outcome else {
                panic!("{}: {:?}", String::from_utf8_lossy(line), r.outcome)
            };
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn malformed_reason_does_not_quote_content() {
        let r = parse_line(b"{\"key\": \"k\", \"response\": secret-token}", 1);
        let Outcome::Malformed { reason } = r.outcome else {
            panic!()
        };
        assert!(!reason.contains("secret"), "{reason}");
    }

    #[test]
    fn metadata_key_and_bom_and_crlf() {
        let r = parse_line(
            b"\xEF\xBB\xBF{\"metadata\":{\"key\":\"m\"},\"response\":{}}\r",
            1,
        );
        assert_eq!(r.key, "m");
        assert!(matches!(r.outcome, Outcome::Success(_)));
    }

    #[test]
    fn inline_records() {
        let ok = InlineResponse {
            key: Some("a".into()),
            response: Some(
                json!({"candidates": [{"content": {"parts": [{"text": "t"}]}}]}).to_string(),
            ),
            error: None,
        };
        let r = from_inline(0, &ok);
        assert_eq!((r.key.as_str(), r.line), ("a", 1));
        assert!(matches!(r.outcome, Outcome::Success(ref s) if s.text == "t"));

        let err = InlineResponse {
            key: None,
            response: None,
            error: Some(RpcStatus {
                code: Some(13),
                message: "internal".into(),
                status: None,
            }),
        };
        let r = from_inline(4, &err);
        assert_eq!((r.key.as_str(), r.line), ("line-5", 5));
        assert!(matches!(r.outcome, Outcome::Error { code: Some(13), .. }));

        let empty = InlineResponse {
            key: Some("z".into()),
            response: None,
            error: None,
        };
        assert!(matches!(
            from_inline(1, &empty).outcome,
            Outcome::Malformed { .. }
        ));

        let emb = InlineResponse {
            key: Some("e".into()),
            response: Some(json!({"embedding": {"values": [0.5, 1.0]}}).to_string()),
            error: None,
        };
        let Outcome::Success(row) = from_inline(2, &emb).outcome else {
            panic!()
        };
        assert_eq!(row.text, "");
        assert_eq!(tree(&row.response)["embedding"]["values"][0], json!(0.5));
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let alphabet = br#"{}[]":,\ keyresponseerror0123456789.-+eEtruefalsenull"#;
        for i in 0..600 {
            let len = rng.random_range(0..200);
            let bytes: Vec<u8> = if i % 2 == 0 {
                (0..len).map(|_| rng.random()).collect()
            } else {
                (0..len)
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                    .collect()
            };
            let r = parse_line(&bytes, i);
            assert_eq!(r.line, i);
            assert!(!r.key.is_empty());
            let mut s = LineSplitter::new(0, 0, 64);
            s.push(&bytes);
            while let Some(l) = s.finish() {
                let _ = record_from_line(&l);
            }
        }
        // Deep nesting must not blow the stack.
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse_line(deep.as_bytes(), 1).outcome,
            Outcome::Malformed { .. }
        ));
    }

    fn collect(data: &[u8], chunk: usize, max: usize) -> (Vec<Line>, u64, u64) {
        let mut s = LineSplitter::new(0, 0, max);
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            s.push(c);
            while let Some(l) = s.next_line() {
                out.push(l);
            }
        }
        while let Some(l) = s.finish() {
            out.push(l);
        }
        (out, s.offset(), s.line_count())
    }

    fn sample() -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(success("a").as_bytes());
        d.extend_from_slice(b"\r\n\n   \r\n");
        d.extend_from_slice(br#"{"key":"b","error":{"code":500,"message":"x"}}"#);
        d.extend_from_slice(b"\n");
        d.extend_from_slice(
            format!("{{\"key\":\"long\",\"pad\":\"{}\"}}\r\n", "y".repeat(300)).as_bytes(),
        );
        d.extend_from_slice(format!("{}\n", " ".repeat(250)).as_bytes());
        d.extend_from_slice(b"garbage\n");
        d.extend_from_slice(&b"z".repeat(201));
        d.extend_from_slice(b"\r\n");
        d.extend_from_slice(&b"w".repeat(200));
        d.extend_from_slice(b"\r\n");
        d.extend_from_slice(br#"{"key":"tail","response":{}}"#);
        d
    }

    #[test]
    fn splitter_is_independent_of_chunking() {
        let data = sample();
        let reference = collect(&data, data.len(), 200);
        let (lines, offset, count) = &reference;
        assert_eq!(*offset, data.len() as u64);
        assert_eq!(*count, 10);
        let summary: Vec<(u64, bool, usize)> = lines
            .iter()
            .map(|l| (l.number, l.too_long, l.bytes.len()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, true, 200), // the success line is longer than 200
                (4, false, 46),
                (5, true, 200),
                (6, true, 200), // 250 spaces: over-long wins over blank
                (7, false, 7),
                (8, true, 200),
                (9, false, 200), // exactly max, `\r` stripped
                (10, false, 28),
            ]
        );
        assert_eq!(lines[4].bytes, b"garbage");
        assert_eq!(lines[7].end_offset, data.len() as u64);
        assert!(lines.windows(2).all(|w| w[0].end_offset < w[1].end_offset));
        // end_offset points just past the '\n'.
        for l in &lines[..7] {
            assert_eq!(data[usize::try_from(l.end_offset).unwrap() - 1], b'\n');
        }
        for chunk in 1..=17 {
            assert_eq!(collect(&data, chunk, 200), reference, "chunk size {chunk}");
        }
        let big = collect(&data, 4096, 100_000);
        assert_eq!(big.0.len(), 7); // the 250-space line is now just blank
        assert!(big.0.iter().all(|l| !l.too_long));
        for chunk in 1..=17 {
            assert_eq!(collect(&data, chunk, 100_000), big, "chunk size {chunk}");
        }
    }

    #[test]
    fn too_long_line_keeps_memory_bounded_and_recovers_key() {
        let mut s = LineSplitter::new(0, 0, 1000);
        s.push(b"{\"key\":\"huge\",\"response\":\"");
        let mut peak = 0;
        for _ in 0..10_000 {
            s.push(&[b'a'; 997]);
            assert!(s.next_line().is_none());
            peak = peak.max(s.buffer_capacity());
        }
        s.push(b"\"}\n{\"key\":\"next\",\"response\":{}}\n");
        let l = s.next_line().unwrap();
        assert!(l.too_long);
        assert_eq!(l.number, 1);
        assert!(l.bytes.len() <= TOO_LONG_PREFIX);
        let rec = record_from_line(&l);
        assert_eq!(rec.key, "huge");
        assert!(matches!(rec.outcome, Outcome::Malformed { .. }));
        let n = s.next_line().unwrap();
        assert_eq!(n.number, 2);
        assert_eq!(record_from_line(&n).key, "next");
        assert!(peak < 4 * 1024, "buffer grew to {peak}");
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn resume_from_checkpoint_matches_a_full_run() {
        let data = sample();
        let (full, _, _) = collect(&data, 5, 100_000);
        let cp = &full[2];
        let rest = &data[usize::try_from(cp.end_offset).unwrap()..];
        let mut s = LineSplitter::new(cp.end_offset, cp.number, 100_000);
        s.push(rest);
        let mut resumed = Vec::new();
        while let Some(l) = s.finish() {
            resumed.push(l);
        }
        assert_eq!(resumed, full[3..].to_vec());
    }

    #[test]
    fn trailing_blank_and_empty_input() {
        let (lines, offset, count) = collect(b"", 3, 10);
        assert!(lines.is_empty());
        assert_eq!((offset, count), (0, 0));
        let (lines, offset, _) = collect(b"{}\n  \r\n \t", 2, 10);
        assert_eq!(lines.len(), 1);
        assert_eq!(offset, 9);
    }
}
