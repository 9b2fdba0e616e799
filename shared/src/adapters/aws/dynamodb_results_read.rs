//! Reading result rows back from the results table a page at a time, reassembled
//! ([`DynamoDbResultsStore`](super::dynamodb_results::DynamoDbResultsStore)'s `rows_page` and
//! `list_rows`).
//!
//! A job's items sort as `JOB` < `LINE#…` < `PART#…` < `RESULT#…` < `RESULTH#…`. Rows live in
//! three of those namespaces, which are read one after the other with a sort-key range each, so
//! the job record and the parts (up to 175 KB each) are never read while paging; rows therefore
//! come in row-id (byte) order, as SQLite returns them. The parts of a `gzip-parts` row are
//! fetched with the row, by their own prefix, so memory stays bounded by the page (which ends at
//! its row limit or at `PAGE_BYTES`, whichever comes first).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use super::dynamodb_dedupe::sdk_message;
use super::dynamodb_items::{KEY_PART_MARK, PART_PREFIX, gunzip, pk, value_of};
use super::dynamodb_results::LEGACY_PART_MARK;
use crate::domain::jobs::{ROW_HASH_PREFIX, ROW_KEY_PREFIX, ROW_LINE_PREFIX, ResultRow, RowStatus};
use crate::domain::results::{Outcome, parse_line};
use crate::domain::verify::sha256_hex;
use crate::ports::{PAGE_BYTES, RowPage, StoreError, page_bytes};

type Item = HashMap<String, AttributeValue>;

/// The row namespaces in sort-key order.
const SEGMENTS: [&str; 3] = [ROW_LINE_PREFIX, ROW_KEY_PREFIX, ROW_HASH_PREFIX];

/// Just above every sort key that starts with `prefix` (each prefix ends in `#`; `$` follows it).
fn segment_end(prefix: &str) -> String {
    format!("{}$", prefix.trim_end_matches('#'))
}

/// Up to `limit` rows of `job_id` after the row id `after`, in row-id order.
pub(super) async fn rows_page(
    client: &Client,
    table: &str,
    job_id: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<RowPage, StoreError> {
    let limit = limit.max(1);
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    for prefix in SEGMENTS {
        let end = segment_end(prefix);
        let start = match after {
            Some(a) if a >= end.as_str() => continue,
            Some(a) if a > prefix => a.to_owned(),
            _ => prefix.to_owned(),
        };
        let mut resume: Option<Item> = None;
        loop {
            let wanted = limit - rows.len();
            // One more than wanted: the range is inclusive and may start at `after` itself.
            let out = client
                .query()
                .table_name(table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", AttributeValue::S(pk(job_id)))
                .expression_attribute_values(":from", AttributeValue::S(start.clone()))
                .expression_attribute_values(":to", AttributeValue::S(end.clone()))
                .limit(i32::try_from(wanted + 1).unwrap_or(i32::MAX))
                .consistent_read(true)
                .set_exclusive_start_key(resume.take())
                .send()
                .await
                .map_err(|e| StoreError::Unavailable(sdk_message(&e)))?;
            for item in out.items() {
                let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned();
                let Some(sk) = sk else { continue };
                // Parts written before they had their own namespace sit under their row's key.
                if Some(sk.as_str()) == after || item.contains_key("chunk") {
                    continue;
                }
                let row = row_of(client, table, job_id, &sk, item).await?;
                bytes += page_bytes(&row);
                rows.push(row);
                if rows.len() == limit || bytes >= PAGE_BYTES {
                    return Ok(RowPage {
                        rows,
                        next_after: Some(sk),
                    });
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => resume = Some(k.clone()),
                _ => break,
            }
        }
    }
    Ok(RowPage {
        rows,
        next_after: None,
    })
}

/// A row item as the row, its response decompressed (and its parts fetched) as needed.
async fn row_of(
    client: &Client,
    table: &str,
    job_id: &str,
    sk: &str,
    item: &Item,
) -> Result<ResultRow, StoreError> {
    let encoding = item
        .get("response_encoding")
        .and_then(|v| v.as_s().ok())
        .cloned();
    let mut value = value_of(item);
    if let Value::Object(map) = &mut value {
        for storage_only in [
            "response_encoding",
            "response_gzip",
            "response_parts",
            "text_in_response",
            // Rows written before metadata lived on the job only.
            "user_metadata",
            "key_parts",
            "key_truncated_bytes",
            "error_message_truncated_bytes",
        ] {
            map.remove(storage_only);
        }
    }
    let mut row: ResultRow = serde_json::from_value(value)
        .map_err(|e| StoreError::Corrupt(format!("result row {sk}: {e}")))?;
    match encoding.as_deref() {
        Some("gzip") => {
            if let Some(AttributeValue::B(b)) = item.get("response_gzip") {
                row.response_json = Some(gunzip(b.as_ref())?);
            }
        }
        Some("gzip-parts") => {
            let expected = item
                .get("response_parts")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<usize>().ok());
            let owner = &sha256_hex(sk.as_bytes())[..32];
            let prefixes = [
                format!("{PART_PREFIX}{owner}#"),
                format!("{sk}{LEGACY_PART_MARK}"),
            ];
            let packed = parts(client, table, job_id, sk, &prefixes, expected).await?;
            row.response_json = Some(gunzip(&packed)?);
        }
        _ => {}
    }
    // A key too long for the item is whole in its own parts.
    let key_parts = item
        .get("key_parts")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<usize>().ok());
    if key_parts.is_some() {
        let owner = &sha256_hex(sk.as_bytes())[..32];
        let prefixes = [format!("{PART_PREFIX}{owner}{KEY_PART_MARK}")];
        let packed = parts(client, table, job_id, sk, &prefixes, key_parts).await?;
        row.key = gunzip(&packed)?;
    }
    // A large row's text was left out of the item: it is the response's, so derive it again.
    if row.text.is_none()
        && row.status == RowStatus::Ok
        && let Some(response) = row.response_json.as_deref()
    {
        let line = format!("{{\"key\":\"k\",\"response\":{response}}}");
        if let Outcome::Success(s) = parse_line(line.as_bytes(), 0).outcome {
            row.text = Some(s.text);
        }
    }
    Ok(row)
}

/// The concatenated chunks of the row `sk` under the first of `prefixes` that has any (for a
/// response `PART#<hash of sk>#nnnn`, or the legacy `<sk>#PART#nnnn`; for a key
/// `PART#<hash of sk>K#nnnn`), in part order; exactly `expected` of them when the row says how
/// many (a rewrite with fewer parts may leave stale ones behind).
async fn parts(
    client: &Client,
    table: &str,
    job_id: &str,
    sk: &str,
    prefixes: &[String],
    expected: Option<usize>,
) -> Result<Vec<u8>, StoreError> {
    for prefix in prefixes {
        let mut packed = Vec::new();
        let mut found = 0usize;
        let mut resume: Option<Item> = None;
        'pages: loop {
            let out = client
                .query()
                .table_name(table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", AttributeValue::S(pk(job_id)))
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(resume.take())
                .send()
                .await
                .map_err(|e| StoreError::Unavailable(sdk_message(&e)))?;
            for item in out.items() {
                if let Some(AttributeValue::B(b)) = item.get("chunk") {
                    packed.extend_from_slice(b.as_ref());
                    found += 1;
                    if Some(found) == expected {
                        break 'pages;
                    }
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => resume = Some(k.clone()),
                _ => break,
            }
        }
        if found == 0 {
            continue;
        }
        if expected.is_some_and(|n| n != found) {
            return Err(StoreError::Corrupt(format!(
                "row {sk} of {job_id}: {found} of {} parts found",
                expected.unwrap_or_default()
            )));
        }
        return Ok(packed);
    }
    Err(StoreError::Corrupt(format!(
        "missing parts of {sk} of {job_id}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_in_sort_key_order_and_their_ranges_do_not_overlap() {
        let mut sorted = SEGMENTS;
        sorted.sort_unstable();
        assert_eq!(sorted, SEGMENTS);
        for pair in SEGMENTS.windows(2) {
            assert!(segment_end(pair[0]).as_str() <= pair[1], "{pair:?}");
        }
        // Every id of a namespace is inside its range, whatever follows the prefix.
        for prefix in SEGMENTS {
            let end = segment_end(prefix);
            for id in [
                prefix.to_owned(),
                format!("{prefix}\u{10FFFF}"),
                format!("{prefix}~~"),
            ] {
                assert!(id.as_str() >= prefix && id < end, "{id} in {prefix}..{end}");
            }
        }
        // Parts and the job record are outside every range.
        for other in ["JOB", "PART#abc#0001"] {
            assert!(
                SEGMENTS
                    .iter()
                    .all(|p| !(other >= *p && other < segment_end(p).as_str())),
                "{other}"
            );
        }
    }
}
