//! How rows and job records become DynamoDB items and back: plain attributes for scalars, JSON
//! text for free-form JSON, and rows too large for an item compressed or split into parts
//! (the data model in `dynamodb_results.rs`).

use std::collections::HashMap;
use std::io::{Read, Write};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Number, Value};

use crate::domain::jobs::{JobRecord, ResultRow};
use crate::domain::verify::sha256_hex;
use crate::ports::StoreError;

pub(super) const PART_PREFIX: &str = "PART#";
/// Job record fields that hold free-form JSON: stored as JSON text.
pub(super) const JSON_TEXT_FIELDS: [&str; 3] = ["user_metadata", "output", "error"];
/// Keep items well under DynamoDB's 400 KB (attribute names and overhead count too).
pub(super) const ITEM_BUDGET: usize = 350 * 1024;

pub(super) fn pk(job_id: &str) -> String {
    format!("JOB#{job_id}")
}

/// JSON → DynamoDB attribute (numbers stay numbers, objects become maps).
pub fn to_attr(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_attr).collect()),
        Value::Object(o) => {
            AttributeValue::M(o.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect())
        }
    }
}

/// DynamoDB attribute → JSON.
pub fn from_attr(a: &AttributeValue) -> Value {
    match a {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => n
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| n.parse::<u64>().map(Value::from))
            .ok()
            .or_else(|| {
                n.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            })
            .unwrap_or(Value::Null),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::L(l) => Value::Array(l.iter().map(from_attr).collect()),
        AttributeValue::M(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), from_attr(v))).collect())
        }
        _ => Value::Null,
    }
}

pub(super) fn item_of(value: &Value) -> HashMap<String, AttributeValue> {
    match value {
        Value::Object(o) => o
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), to_attr(v)))
            .collect(),
        _ => HashMap::new(),
    }
}

pub(super) fn value_of(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .filter(|(k, _)| !matches!(k.as_str(), "pk" | "sk" | "state_rank"))
            .map(|(k, v)| (k.clone(), from_attr(v)))
            .collect::<Map<_, _>>(),
    )
}

/// A job record item as the record; JSON-text fields parsed back (records written before they
/// were text hold maps, which read the same).
pub(super) fn job_of(item: &HashMap<String, AttributeValue>) -> Result<JobRecord, StoreError> {
    let mut value = value_of(item);
    if let Value::Object(map) = &mut value {
        for field in JSON_TEXT_FIELDS {
            if let Some(Value::String(text)) = map.get(field) {
                let parsed: Value = serde_json::from_str(text)
                    .map_err(|e| StoreError::Corrupt(format!("job record `{field}`: {e}")))?;
                map.insert(field.to_owned(), parsed);
            }
        }
    }
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("job record: {e}")))
}

pub(super) fn gzip(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)
        .and_then(|()| enc.finish())
        .map_err(|e| StoreError::Corrupt(format!("gzip: {e}")))
}

pub(super) fn gunzip(bytes: &[u8]) -> Result<String, StoreError> {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .map_err(|e| StoreError::Corrupt(format!("gunzip: {e}")))?;
    Ok(out)
}

/// Longest `key` or `error_message` kept whole on a row item; beyond it the attribute keeps
/// its beginning and `<name>_truncated_bytes` says how long it was (the sort key still names the
/// row exactly, by hash). A response is never truncated: it is compressed or split instead.
const MAX_TEXT_ATTRIBUTE: usize = 64 * 1024;
/// Longest request key kept whole in the row item. A longer key (its sort key is already a
/// hash) keeps its beginning in `key`, for the console, and is stored whole, gzip-compressed, in
/// key part items `PART#<hash of the row id>K#nnnn` that reading puts back together: the full
/// key is what every reader sees.
const MAX_KEY_ATTRIBUTE: usize = 128 * 1024;
/// The marker between a row's part owner and a key part's number (response parts have `#`).
pub(super) const KEY_PART_MARK: &str = "K#";

/// The sort key of part `n` (1-based) of the response of the row `row_sk`.
pub(super) fn response_part_sk(row_sk: &str, n: usize) -> String {
    format!("{PART_PREFIX}{}#{n:04}", part_owner(row_sk))
}

/// The sort key of part `n` (1-based) of the request key of the row `row_sk`.
pub(super) fn key_part_sk(row_sk: &str, n: usize) -> String {
    format!("{PART_PREFIX}{}{KEY_PART_MARK}{n:04}", part_owner(row_sk))
}

/// What names a row's parts: the start of the hash of its sort key.
fn part_owner(row_sk: &str) -> String {
    sha256_hex(row_sk.as_bytes())[..32].to_owned()
}

/// The sort keys of every part the row item `item` (sort key `row_sk`) says it has.
pub(super) fn part_sks_of(row_sk: &str, item: &HashMap<String, AttributeValue>) -> Vec<String> {
    let count = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0)
    };
    let encoding = item.get("response_encoding").and_then(|v| v.as_s().ok());
    let response = if encoding.map(String::as_str) == Some("gzip-parts") {
        count("response_parts")
    } else {
        0
    };
    (1..=response)
        .map(|n| response_part_sk(row_sk, n))
        .chain((1..=count("key_parts")).map(|n| key_part_sk(row_sk, n)))
        .collect()
}

/// One part item: a chunk of a row's compressed response or key. It carries its row's write
/// time, so a re-ingest can tell a part left over from an earlier write from one just written.
fn part_item(
    row_pk: &str,
    sk: String,
    row_sk: &str,
    chunk: &[u8],
    ingested_at_ms: i64,
) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(row_pk.to_owned())),
        ("sk".to_owned(), AttributeValue::S(sk)),
        ("part_of".to_owned(), AttributeValue::S(row_sk.to_owned())),
        (
            "chunk".to_owned(),
            AttributeValue::B(Blob::new(chunk.to_vec())),
        ),
        (
            "ingested_at_ms".to_owned(),
            AttributeValue::N(ingested_at_ms.to_string()),
        ),
    ])
}

/// Items for one row: the row itself, plus part items when the response is too large.
///
/// Built field by field from the row (no intermediate JSON tree), and a response too large for
/// the item is compressed straight from the row's text, so a multi-megabyte row is not copied
/// over and over on its way to the request.
pub(super) fn row_items(
    row: &ResultRow,
) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
    let row_pk = pk(&row.job_id);
    let row_sk = row.row_id();
    let mut item: HashMap<String, AttributeValue> = HashMap::with_capacity(20);
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: i64| AttributeValue::N(v.to_string());
    item.insert("pk".into(), AttributeValue::S(row_pk.clone()));
    item.insert("sk".into(), AttributeValue::S(row_sk.clone()));
    item.insert("job_id".into(), s(&row.job_id));
    put_text_up_to(&mut item, "key", &row.key, MAX_KEY_ATTRIBUTE);
    item.insert("line".into(), AttributeValue::N(row.line.to_string()));
    item.insert("status".into(), s(row.status.as_str()));
    item.insert("keyless".into(), AttributeValue::Bool(row.keyless));
    item.insert("ingested_at_ms".into(), n(row.ingested_at_ms));
    let optional_numbers = [
        ("prompt_tokens", row.prompt_tokens),
        ("candidates_tokens", row.candidates_tokens),
        ("total_tokens", row.total_tokens),
        ("thoughts_tokens", row.thoughts_tokens),
        ("error_code", row.error_code),
    ];
    for (name, value) in optional_numbers {
        if let Some(v) = value {
            item.insert(name.into(), n(v));
        }
    }
    for (name, value) in [
        ("finish_reason", &row.finish_reason),
        ("model_version", &row.model_version),
    ] {
        if let Some(v) = value {
            put_text(&mut item, name, v);
        }
    }
    if let Some(message) = &row.error_message {
        put_text(&mut item, "error_message", message);
    }
    let base: usize = item.iter().map(|(k, v)| k.len() + attr_size(v)).sum();
    let text_len = row.text.as_ref().map_or(0, String::len);
    let response_len = row.response_json.as_ref().map_or(0, String::len);
    let inline = base + "text".len() + text_len + "response_json".len() + response_len;
    let mut items = Vec::new();
    match &row.response_json {
        Some(response) if inline > ITEM_BUDGET => {
            // The text is a copy of what is in the response; leave it out rather than risk the
            // limit.
            if row.text.is_some() {
                item.insert("text_in_response".into(), AttributeValue::Bool(true));
            }
            let packed = gzip(response.as_bytes())?;
            if packed.len() <= ITEM_BUDGET / 2 && base + packed.len() <= ITEM_BUDGET {
                item.insert("response_encoding".into(), AttributeValue::S("gzip".into()));
                item.insert("response_gzip".into(), AttributeValue::B(Blob::new(packed)));
            } else {
                let chunks = packed.len().div_ceil(ITEM_BUDGET / 2);
                item.insert(
                    "response_encoding".into(),
                    AttributeValue::S("gzip-parts".into()),
                );
                item.insert(
                    "response_parts".into(),
                    AttributeValue::N(chunks.to_string()),
                );
                for (i, chunk) in packed.chunks(ITEM_BUDGET / 2).enumerate() {
                    let sk = response_part_sk(&row_sk, i + 1);
                    items.push(part_item(&row_pk, sk, &row_sk, chunk, row.ingested_at_ms));
                }
            }
        }
        Some(response) => {
            if let Some(text) = &row.text {
                item.insert("text".into(), s(text));
            }
            item.insert("response_json".into(), s(response));
            item.insert("response_encoding".into(), AttributeValue::S("json".into()));
        }
        None => {
            if let Some(text) = &row.text {
                put_text(&mut item, "text", text);
            }
        }
    }
    if row.key.len() > MAX_KEY_ATTRIBUTE {
        let packed = gzip(row.key.as_bytes())?;
        let chunk_len = ITEM_BUDGET / 2;
        item.insert(
            "key_parts".into(),
            AttributeValue::N(packed.len().div_ceil(chunk_len).to_string()),
        );
        for (i, chunk) in packed.chunks(chunk_len).enumerate() {
            let sk = key_part_sk(&row_sk, i + 1);
            items.push(part_item(&row_pk, sk, &row_sk, chunk, row.ingested_at_ms));
        }
    }
    items.insert(0, item);
    Ok(items)
}

/// A text attribute, cut to [`MAX_TEXT_ATTRIBUTE`] bytes (at a character boundary) with its
/// full length noted when longer.
fn put_text(item: &mut HashMap<String, AttributeValue>, name: &str, value: &str) {
    put_text_up_to(item, name, value, MAX_TEXT_ATTRIBUTE);
}

fn put_text_up_to(
    item: &mut HashMap<String, AttributeValue>,
    name: &str,
    value: &str,
    limit: usize,
) {
    if value.len() <= limit {
        item.insert(name.to_owned(), AttributeValue::S(value.to_owned()));
        return;
    }
    let mut end = limit;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    item.insert(name.to_owned(), AttributeValue::S(value[..end].to_owned()));
    item.insert(
        format!("{name}_truncated_bytes"),
        AttributeValue::N(value.len().to_string()),
    );
}

fn attr_size(a: &AttributeValue) -> usize {
    match a {
        AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::L(l) => l.iter().map(attr_size).sum::<usize>() + 3,
        AttributeValue::M(m) => m.iter().map(|(k, v)| k.len() + attr_size(v)).sum::<usize>() + 3,
        _ => 1,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::jobs::RowStatus;

    fn row(response: String) -> ResultRow {
        ResultRow {
            job_id: "batches/x".into(),
            key: "k1".into(),
            line: 1,
            status: RowStatus::Ok,
            text: Some("t".into()),
            finish_reason: Some("STOP".into()),
            prompt_tokens: Some(1),
            candidates_tokens: None,
            total_tokens: None,
            thoughts_tokens: None,
            model_version: None,
            response_json: Some(response),
            error_code: None,
            error_message: None,
            keyless: false,
            ingested_at_ms: 1,
        }
    }

    #[test]
    fn when_row_is_small_should_store_plain_json() {
        let items = row_items(&row("{\"a\":1}".into())).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["response_encoding"].as_s().unwrap(), "json");
        assert_eq!(items[0]["sk"].as_s().unwrap(), "RESULT#k1");
    }

    #[test]
    fn when_row_is_large_but_compressible_should_gzip() {
        let big = format!("{{\"text\":\"{}\"}}", "a".repeat(600_000));
        let items = row_items(&row(big.clone())).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["response_encoding"].as_s().unwrap(), "gzip");
        let AttributeValue::B(b) = &items[0]["response_gzip"] else {
            panic!()
        };
        assert_eq!(gunzip(b.as_ref()).unwrap(), big);
    }

    #[test]
    fn when_row_is_large_and_incompressible_should_split_into_parts() {
        // xorshift noise over a 64-letter alphabet: gzip cannot shrink it below half.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let noise: String = (0..400_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(alphabet[(x % 64) as usize])
            })
            .collect();
        let items = row_items(&row(format!("{{\"t\":\"{noise}\"}}"))).unwrap();
        assert!(items.len() >= 2, "{}", items.len());
        assert_eq!(items[0]["response_encoding"].as_s().unwrap(), "gzip-parts");
        let owner = &sha256_hex(b"RESULT#k1")[..32];
        for (i, part) in items.iter().skip(1).enumerate() {
            assert_eq!(
                part["sk"].as_s().unwrap(),
                &format!("PART#{owner}#{:04}", i + 1)
            );
            assert_eq!(part["part_of"].as_s().unwrap(), "RESULT#k1");
            let size: usize = part.iter().map(|(k, v)| k.len() + attr_size(v)).sum();
            assert!(size < 400 * 1024);
        }
    }

    #[test]
    fn json_attribute_round_trip() {
        let v = serde_json::json!({"a": 1, "b": [true, "x", {"c": -2}], "d": 1.5});
        assert_eq!(from_attr(&to_attr(&v)), v);
    }
}
