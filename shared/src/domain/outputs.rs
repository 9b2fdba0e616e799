//! The full outputs of the jobs that are not batches, as plain data: an interaction's outputs as
//! result rows with a bounded summary for its job record, and where a generated video is copied.
//!
//! Why rows: an interaction's outputs can be far larger than a job record may hold (a DynamoDB
//! item stops at 400 KB), while rows already carry any size (gzip, parts) and are read back by
//! `results` and `export` the same way on every store.

use serde_json::{Map, Value, json};

use crate::domain::jobs::{ResultRow, RowStatus};

/// Prefix of the row key of an interaction's `n`-th output (`output-0001`, 1-based).
pub const OUTPUT_KEY_PREFIX: &str = "output-";
/// Most pending function calls listed on the job record (all of them are rows anyway).
pub const MAX_SUMMARY_CALLS: usize = 16;
/// Largest `arguments` JSON of one pending call kept on the job record; larger arguments are
/// only in the call's row, and the summary notes their size.
pub const MAX_SUMMARY_ARGUMENT_BYTES: usize = 2 * 1024;
/// Largest `usage` JSON kept on the job record.
pub const MAX_SUMMARY_USAGE_BYTES: usize = 4 * 1024;

/// The row key of the `index`-th (0-based) output: four digits, and past 9 999 one `z` per
/// extra digit (`output-z10000`, `output-zz100000`), so keys sort in the outputs' order.
pub fn output_key(index: usize) -> String {
    let n = (index + 1).to_string();
    let wider = "z".repeat(n.len().saturating_sub(4));
    format!("{OUTPUT_KEY_PREFIX}{wider}{n:0>4}")
}

/// The text of a text output (`{"type": "text", "text": …}`), if it is one.
fn text_of(output: &Value) -> Option<String> {
    let kind = output.get("type").and_then(Value::as_str);
    let text = output.get("text").and_then(Value::as_str)?;
    matches!(kind, None | Some("text")).then(|| text.to_owned())
}

/// A pending function call found in one output.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionCall {
    /// The row holding the whole output.
    pub row_key: String,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: Option<Value>,
}

/// The function call an output is (`{"type": "function_call", "id", "name", "arguments"}`, or
/// the same fields nested under `function_call` / `functionCall`), if it is one.
fn call_of(index: usize, output: &Value) -> Option<FunctionCall> {
    let body = if output.get("type").and_then(Value::as_str) == Some("function_call") {
        output
    } else {
        output
            .get("function_call")
            .or_else(|| output.get("functionCall"))
            .filter(|v| v.is_object())?
    };
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    Some(FunctionCall {
        row_key: output_key(index),
        id: text("id"),
        name: text("name"),
        arguments: body
            .get("arguments")
            .or_else(|| body.get("args"))
            .filter(|a| !a.is_null())
            .cloned(),
    })
}

/// `outputs` as a list: an array as sent, a single object as one output, nothing else.
pub fn outputs_list(outputs: Option<&Value>) -> &[Value] {
    match outputs {
        Some(Value::Array(items)) => items,
        Some(v) if v.is_object() => std::slice::from_ref(v),
        _ => &[],
    }
}

/// One row per output: key [`output_key`], `response_json` the output's JSON text (never cut),
/// `text` its text when it is a text output.
pub fn interaction_rows(job_id: &str, outputs: &[Value], now_ms: i64) -> Vec<ResultRow> {
    outputs
        .iter()
        .enumerate()
        .map(|(i, output)| ResultRow {
            job_id: job_id.to_owned(),
            key: output_key(i),
            line: u64::try_from(i + 1).unwrap_or(u64::MAX),
            status: RowStatus::Ok,
            text: text_of(output),
            finish_reason: None,
            prompt_tokens: None,
            candidates_tokens: None,
            total_tokens: None,
            thoughts_tokens: None,
            model_version: None,
            response_json: Some(output.to_string()),
            error_code: None,
            error_message: None,
            keyless: false,
            ingested_at_ms: now_ms,
        })
        .collect()
}

/// Rows left over from an earlier, longer list of outputs (`stored` rows before, `now` rows
/// now): overwritten with a marker, since a row of an output that no longer exists must not
/// read as one that does.
pub fn superseded_rows(job_id: &str, now: usize, stored: usize, now_ms: i64) -> Vec<ResultRow> {
    (now..stored)
        .map(|i| ResultRow {
            job_id: job_id.to_owned(),
            key: output_key(i),
            line: u64::try_from(i + 1).unwrap_or(u64::MAX),
            status: RowStatus::Error,
            text: None,
            finish_reason: None,
            prompt_tokens: None,
            candidates_tokens: None,
            total_tokens: None,
            thoughts_tokens: None,
            model_version: None,
            response_json: None,
            error_code: None,
            error_message: Some(format!(
                "superseded: the interaction now has {now} output(s)"
            )),
            keyless: false,
            ingested_at_ms: now_ms,
        })
        .collect()
}

/// Every function call among `outputs`, in order.
pub fn function_calls(outputs: &[Value]) -> Vec<FunctionCall> {
    outputs
        .iter()
        .enumerate()
        .filter_map(|(i, o)| call_of(i, o))
        .collect()
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// The job record's `output` for an interaction: its status, how many outputs (rows) it has,
/// its usage, and — when it waits for the user — the pending calls, each bounded. Stays a few
/// KiB whatever the outputs hold.
pub fn interaction_summary(status: &str, outputs: &[Value], usage: Option<&Value>) -> Value {
    let mut summary = Map::new();
    summary.insert("status".into(), json!(status));
    summary.insert("outputs".into(), json!(outputs.len()));
    if !outputs.is_empty() {
        summary.insert(
            "rows".into(),
            json!({"first": output_key(0), "last": output_key(outputs.len() - 1)}),
        );
    }
    if let Some(usage) = usage {
        let bytes = json_len(usage);
        if bytes <= MAX_SUMMARY_USAGE_BYTES {
            summary.insert("usage".into(), usage.clone());
        } else {
            summary.insert("usage_omitted_bytes".into(), json!(bytes));
        }
    }
    if status == "requires_action" {
        let calls = function_calls(outputs);
        let listed: Vec<Value> = calls
            .iter()
            .take(MAX_SUMMARY_CALLS)
            .map(|c| {
                let mut call = json!({"row": c.row_key, "id": c.id, "name": c.name});
                if let Some(args) = &c.arguments {
                    let bytes = json_len(args);
                    if bytes <= MAX_SUMMARY_ARGUMENT_BYTES {
                        call["arguments"] = args.clone();
                    } else {
                        call["arguments_omitted_bytes"] = json!(bytes);
                    }
                }
                call
            })
            .collect();
        summary.insert("pending_calls".into(), Value::Array(listed));
        if calls.len() > MAX_SUMMARY_CALLS {
            summary.insert("pending_calls_total".into(), json!(calls.len()));
        }
    }
    Value::Object(summary)
}

#[cfg(test)]
mod key_order {
    use super::output_key;

    #[test]
    fn output_keys_sort_in_the_outputs_order() {
        let indexes = [
            0, 8, 9, 98, 998, 9_998, 9_999, 10_000, 99_999, 100_000, 1_000_000,
        ];
        let keys: Vec<String> = indexes.iter().map(|&i| output_key(i)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted, keys);
        assert_eq!(output_key(0), "output-0001");
        assert_eq!(output_key(9_998), "output-9999");
        assert_eq!(output_key(9_999), "output-z10000");
        assert_eq!(output_key(99_999), "output-zz100000");
    }
}

/// How many output rows an interaction summary says are stored (0 when none or unreadable).
pub fn summarized_outputs(output: Option<&Value>) -> usize {
    output
        .and_then(|o| o.get("outputs"))
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
}

/// The object key of a job's `index`-th (0-based) video: `<job id>/<n>.<ext>`. A job id is
/// checked plain before it gets here (`domain::event::is_usable_job_id`: `videos/` then plain
/// segments), so the key is too.
pub fn video_key(job_id: &str, index: usize, content_type: &str) -> String {
    let ext = match content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "video/mp4" => "mp4",
        "video/webm" => "webm",
        "video/quicktime" => "mov",
        _ => "bin",
    };
    format!("{}/{}.{ext}", job_id.trim_end_matches('/'), index + 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn outputs() -> Vec<Value> {
        vec![
            json!({"type": "thought", "signature": "abc"}),
            json!({"type": "text", "text": "Let me look that up."}),
            json!({"type": "function_call", "id": "call-1", "name": "get_weather",
                   "arguments": {"city": "Paris"}}),
        ]
    }

    #[test]
    fn one_row_per_output_with_text_for_text_outputs() {
        let rows = interaction_rows("interactions/i1", &outputs(), 7);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["output-0001", "output-0002", "output-0003"]
        );
        assert_eq!(rows[0].text, None);
        assert_eq!(rows[1].text.as_deref(), Some("Let me look that up."));
        let call: Value = serde_json::from_str(rows[2].response_json.as_deref().unwrap()).unwrap();
        assert_eq!(call["name"], "get_weather");
        assert!(rows.iter().all(|r| r.status == RowStatus::Ok && r.line > 0));
        // Row ids sort in output order (export reads them back in that order).
        let mut ids: Vec<String> = rows.iter().map(ResultRow::row_id).collect();
        let sorted = ids.clone();
        ids.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn summary_lists_pending_calls_bounded_and_counts_outputs() {
        let mut outs = outputs();
        outs.push(
            json!({"type": "function_call", "id": "call-2", "name": "upload",
                         "arguments": {"blob": "x".repeat(10_000)}}),
        );
        let s = interaction_summary("requires_action", &outs, Some(&json!({"total_tokens": 9})));
        assert_eq!(s["outputs"], 4);
        assert_eq!(s["rows"]["last"], "output-0004");
        assert_eq!(s["usage"]["total_tokens"], 9);
        let calls = s["pending_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["name"], "get_weather");
        assert_eq!(calls[0]["id"], "call-1");
        assert_eq!(calls[0]["arguments"]["city"], "Paris");
        assert_eq!(calls[0]["row"], "output-0003");
        assert!(calls[1].get("arguments").is_none());
        assert!(calls[1]["arguments_omitted_bytes"].as_u64().unwrap() > 10_000);
        assert!(serde_json::to_vec(&s).unwrap().len() < 4 * 1024);
        assert_eq!(summarized_outputs(Some(&s)), 4);

        // A completed interaction has nothing pending.
        let done = interaction_summary("completed", &outs, None);
        assert!(done.get("pending_calls").is_none());

        // Many calls: a bounded list and the total.
        let many: Vec<Value> = (0..40)
            .map(|i| json!({"type": "function_call", "id": format!("c{i}"), "name": "f"}))
            .collect();
        let s = interaction_summary("requires_action", &many, None);
        assert_eq!(
            s["pending_calls"].as_array().unwrap().len(),
            MAX_SUMMARY_CALLS
        );
        assert_eq!(s["pending_calls_total"], 40);
    }

    #[test]
    fn nested_call_shapes_and_odd_outputs_are_tolerated() {
        let calls = function_calls(&[
            json!({"functionCall": {"name": "f", "args": {"a": 1}}}),
            json!("not an object"),
        ]);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].arguments, Some(json!({"a": 1})));
        assert_eq!(
            outputs_list(Some(&json!({"type": "text", "text": "x"}))).len(),
            1
        );
        assert!(outputs_list(Some(&json!(3))).is_empty());
        assert!(outputs_list(None).is_empty());
    }

    #[test]
    fn rows_of_a_shorter_list_mark_the_rest_superseded() {
        let rows = superseded_rows("interactions/i", 1, 3, 0);
        assert_eq!(
            rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["output-0002", "output-0003"]
        );
        assert!(rows.iter().all(|r| r.status == RowStatus::Error));
        assert!(superseded_rows("interactions/i", 3, 3, 0).is_empty());
        assert!(superseded_rows("interactions/i", 4, 3, 0).is_empty());
    }

    #[test]
    fn video_keys() {
        assert_eq!(
            video_key("videos/models/veo-3/operations/o1", 0, "video/mp4"),
            "videos/models/veo-3/operations/o1/1.mp4"
        );
        assert_eq!(
            video_key("videos/f", 1, "video/webm; codecs=vp9"),
            "videos/f/2.webm"
        );
        assert_eq!(video_key("videos/f", 0, "application/x"), "videos/f/1.bin");
    }
}
