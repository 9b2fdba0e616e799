#!/usr/bin/env python3
"""Python twin of the Rust consumer's streamed ingest into DynamoDB (issue 11), with boto3.

What it does, call for call like the Rust consumer with its DynamoDB adapter: `GetItem` of the job
record, GET the batch operation, `PutItem` of the job as INGESTING, stream the results file line by
line (the same reader and the same per-line parsing as `ingest.py`: `row_of` is imported from it),
write each row as a DynamoDB item through boto3's `Table.batch_writer()` (25 items per
`BatchWriteItem`, duplicate keys within a buffer dropped with `overwrite_by_pkeys`, unprocessed
items re-sent), flush and `PutItem` a checkpoint every 5 000 lines, then `Query` with
`Select=COUNT` for the rows stored and `PutItem` the job as SUCCEEDED.

Items carry the attributes the Rust adapter writes (`pk = JOB#<job>`, `sk = RESULT#<key>` or
`LINE#<n>` for a line without a usable key, the row's fields, `response_encoding`). Rows here are
small (~620-byte lines), so the adapter's gzip and parts for rows over 350 KB are not mirrored.

The driver (`dynamodb` binary) passes the same file server and DynamoDB endpoint (the stand-in) as
to the Rust run and reads the one JSON line this prints. Timing starts before the first request and
ends after the last `PutItem`; interpreter start-up, imports and creating the boto3 resource are not
counted (as the Rust process's start and client construction are not).
"""

import argparse
import io
import json
import sys
import time
import urllib.request

import boto3

from ingest import CHECKPOINT_EVERY_LINES, get_json, row_of, status_kb

COLUMNS = ("job_id", "key", "line", "status", "text", "finish_reason", "prompt_tokens",
           "candidates_tokens", "total_tokens", "thoughts_tokens", "model_version",
           "response_json", "error_code", "error_message", "user_metadata", "ingested_at_ms")
KEYS = ["pk", "sk"]
STATE_RANK = {"INGESTING": 40, "SUCCEEDED": 100}  # JobState::rank


def item_of(job_id, row):
    """A row tuple of `ingest.row_of` -> the DynamoDB item the Rust adapter would write."""
    item = {name: value for name, value in zip(COLUMNS, row) if value is not None}
    line = item["line"]
    # `row_of` names a key-less line `line-<n>`; the adapter keeps such rows under LINE#<n>.
    keyless = item["status"] == "malformed" and item["key"] == f"line-{line}"
    item["keyless"] = keyless
    item["pk"] = f"JOB#{job_id}"
    item["sk"] = f"LINE#{line:012d}" if keyless else f"RESULT#{item['key']}"
    if "response_json" in item:
        item["response_encoding"] = "json"
    return item


def save_job(table, job_id, state, record):
    table.put_item(
        Item={"pk": f"JOB#{job_id}", "sk": "JOB", "job_id": job_id, "state": state,
              "state_rank": STATE_RANK[state], "updated_at_ms": int(time.time() * 1000),
              "record": json.dumps(record)},
        ConditionExpression="attribute_not_exists(pk) OR state_rank <= :rank",
        ExpressionAttributeValues={":rank": STATE_RANK[state]},
    )


def count_rows(table, job_id):
    count, start = 0, None
    while True:
        kwargs = {"ExclusiveStartKey": start} if start else {}
        # The adapter's `count_rows`, expression for expression.
        out = table.query(KeyConditionExpression="pk = :pk",
                          FilterExpression="attribute_exists(#status)",
                          ExpressionAttributeNames={"#status": "status"},
                          ExpressionAttributeValues={":pk": f"JOB#{job_id}"},
                          Select="COUNT", ConsistentRead=True, **kwargs)
        count += out["Count"]
        start = out.get("LastEvaluatedKey")
        if not start:
            return count


def ingest(args, table):
    table.get_item(Key={"pk": f"JOB#{args.job}", "sk": "JOB"}, ConsistentRead=True)
    job = get_json(f"{args.base_url}/v1beta/{args.job}", args.api_key)
    response = job.get("response") or {}
    file_name = response.get("responsesFile") or (job.get("metadata", {}).get("output") or {}).get("responsesFile")
    if not file_name:
        raise SystemExit("the batch has no results file")
    record = {"job_id": args.job, "state": "INGESTING", "file": file_name, "byte_offset": 0, "lines": 0}
    save_job(table, args.job, "INGESTING", record)
    url = f"{args.base_url}/download/v1beta/{file_name}:download?alt=media"
    req = urllib.request.Request(url, headers={"x-goog-api-key": args.api_key})
    counts = {"ok": 0, "error": 0, "malformed": 0}
    line_no = 0
    offset = 0
    # One writer per checkpoint interval: leaving it flushes everything buffered, so a checkpoint
    # only ever covers rows already written.
    writer = table.batch_writer(overwrite_by_pkeys=KEYS)
    with urllib.request.urlopen(req, timeout=30) as resp:
        reader = io.BufferedReader(resp, buffer_size=64 * 1024)
        now_ms = int(time.time() * 1000)
        for raw in reader:
            line_no += 1
            offset += len(raw)
            stripped = raw.removeprefix(b"\xef\xbb\xbf").strip()
            if not stripped:
                continue
            row = row_of(args.job, line_no, stripped, now_ms)
            counts[row[3]] += 1
            writer.put_item(Item=item_of(args.job, row))
            if line_no % CHECKPOINT_EVERY_LINES == 0:
                writer.__exit__(None, None, None)
                record.update(byte_offset=offset, lines=line_no, counts=counts)
                save_job(table, args.job, "INGESTING", record)
                writer = table.batch_writer(overwrite_by_pkeys=KEYS)
                now_ms = int(time.time() * 1000)
    writer.__exit__(None, None, None)
    stored = count_rows(table, args.job)
    record.update(state="SUCCEEDED", byte_offset=offset, lines=line_no, counts=counts, rows_ingested=stored)
    save_job(table, args.job, "SUCCEEDED", record)
    return line_no, counts, stored


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True, help="the fake Gemini API")
    p.add_argument("--job", required=True, help="batches/<id>")
    p.add_argument("--api-key", required=True)
    p.add_argument("--endpoint", required=True, help="DynamoDB endpoint URL (the stand-in)")
    p.add_argument("--table", required=True)
    p.add_argument("--lines", type=int, default=None, help="expected line count (checked)")
    args = p.parse_args()

    # Dummy credentials and a fixed region: nothing can reach real AWS.
    dynamodb = boto3.resource("dynamodb", endpoint_url=args.endpoint, region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
    table = dynamodb.Table(args.table)
    rss_before = status_kb("VmRSS")
    cpu_before = time.process_time()
    started = time.perf_counter()
    lines, counts, stored = ingest(args, table)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_before
    rows = sum(counts.values())
    vmhwm_kb = status_kb("VmHWM")
    if stored != rows:
        raise SystemExit(f"the endpoint counts {stored} rows, ingested {rows}")
    if args.lines is not None and rows != args.lines:
        raise SystemExit(f"ingested {rows} rows, expected {args.lines}")
    print(json.dumps({
        "impl": f"python/boto3 {boto3.__version__} batch_writer", "lines": lines, "rows": rows,
        "ok": counts["ok"], "errors": counts["error"], "malformed": counts["malformed"],
        "seconds": seconds, "cpu_seconds": cpu_seconds, "rss_before_kb": rss_before,
        "vmhwm_kb": vmhwm_kb,
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
