#!/usr/bin/env python3
"""Python equivalent of the Rust consumer's streamed ingest (issue 6 item 7), standard library only.

What it does, like the Rust side: GET the batch operation, take `response.responsesFile`, stream
the download (`x-goog-api-key`, `alt=media`) line by line with bounded memory, parse each line with
`json`, build the same row (key, concatenated text parts without thoughts, finish reason, token
usage, model version, the whole response re-serialised, or error code/message, or a malformed
row with its line number), and upsert rows keyed (job_id, key) into SQLite in batched
transactions, saving a job record with a checkpoint every 5 000 lines. `--store count` skips
SQLite and only counts, to compare with the Rust counting store.

The driver (`ingest` binary) passes the same server, file and batch size as to the Rust run, and
reads the one JSON line this prints. Timing starts before the first request and ends after the
last commit; interpreter start-up and imports are not counted (as Rust's process start is not).
"""

import argparse
import io
import json
import sqlite3
import sys
import time
import urllib.request

CHECKPOINT_EVERY_LINES = 5_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at_ms INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS result_rows (
    job_id TEXT NOT NULL, key TEXT NOT NULL, line INTEGER NOT NULL, status TEXT NOT NULL,
    text TEXT, finish_reason TEXT, prompt_tokens INTEGER, candidates_tokens INTEGER,
    total_tokens INTEGER, thoughts_tokens INTEGER, model_version TEXT, response_json TEXT,
    error_code INTEGER, error_message TEXT, user_metadata TEXT, ingested_at_ms INTEGER NOT NULL,
    PRIMARY KEY (job_id, key)
);
"""

UPSERT = """
INSERT INTO result_rows (job_id, key, line, status, text, finish_reason, prompt_tokens,
    candidates_tokens, total_tokens, thoughts_tokens, model_version, response_json, error_code,
    error_message, user_metadata, ingested_at_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (job_id, key) DO UPDATE SET
    line = excluded.line, status = excluded.status, text = excluded.text,
    finish_reason = excluded.finish_reason, prompt_tokens = excluded.prompt_tokens,
    candidates_tokens = excluded.candidates_tokens, total_tokens = excluded.total_tokens,
    thoughts_tokens = excluded.thoughts_tokens, model_version = excluded.model_version,
    response_json = excluded.response_json, error_code = excluded.error_code,
    error_message = excluded.error_message, user_metadata = excluded.user_metadata,
    ingested_at_ms = excluded.ingested_at_ms
"""


def status_kb(field):
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def int64(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v) if v.is_integer() and abs(v) < 9.0e15 else None
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            return None
    return None


def row_of(job_id, line_no, raw, now_ms):
    """One results line -> one row tuple (same rules as the Rust `parse_line`)."""
    def malformed(key, reason):
        return (job_id, key or f"line-{line_no}", line_no, "malformed", None, None, None, None,
                None, None, None, None, None, f"line {line_no}: {reason}", None, now_ms)

    try:
        obj = json.loads(raw)
    except ValueError:
        return malformed(None, "invalid JSON")
    if not isinstance(obj, dict):
        return malformed(None, "not a JSON object")
    key = obj.get("key")
    if isinstance(key, str):
        if not key:
            return malformed(None, "empty key")
    elif key is None:
        meta = obj.get("metadata")
        key = meta.get("key") if isinstance(meta, dict) else None
        key = key if isinstance(key, str) and key else None
    else:
        return malformed(None, "key is not a string")
    if key is None:
        return malformed(None, "missing key")
    error = obj.get("error")
    response = obj.get("response")
    if error is not None:
        if isinstance(error, dict):
            message = error.get("message")
            return (job_id, key, line_no, "error", None, None, None, None, None, None, None,
                    None, int64(error.get("code")), message if isinstance(message, str) else "",
                    None, now_ms)
        if isinstance(error, str):
            return (job_id, key, line_no, "error", None, None, None, None, None, None, None,
                    None, None, error, None, now_ms)
        return malformed(key, "error is neither an object nor a string")
    if "response" not in obj:
        return malformed(key, "neither response nor error")
    if response is None:
        return malformed(key, "response is null")
    if not isinstance(response, dict):
        return malformed(key, "response is not an object")
    candidates = response.get("candidates")
    first = candidates[0] if isinstance(candidates, list) and candidates else None
    first = first if isinstance(first, dict) else {}
    content = first.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    text = ""
    if isinstance(parts, list):
        text = "".join(p["text"] for p in parts if isinstance(p, dict) and p.get("thought") is not True
                       and isinstance(p.get("text"), str))
    usage = response.get("usageMetadata")
    usage = usage if isinstance(usage, dict) else {}
    finish = first.get("finishReason")
    model = response.get("modelVersion")
    return (job_id, key, line_no, "ok", text, finish if isinstance(finish, str) else None,
            int64(usage.get("promptTokenCount")), int64(usage.get("candidatesTokenCount")),
            int64(usage.get("totalTokenCount")), int64(usage.get("thoughtsTokenCount")),
            model if isinstance(model, str) else None,
            json.dumps(response, separators=(",", ":"), ensure_ascii=False), None, None, None, now_ms)


class CountingSink:
    def __init__(self):
        self.jobs = 0

    def put_rows(self, rows):
        pass

    def save_job(self, job_id, state, record):
        self.jobs += 1

    def close(self):
        pass


class SqliteSink:
    def __init__(self, path, synchronous):
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per batch.
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.executescript(SCHEMA)

    def put_rows(self, rows):
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany(UPSERT, rows)
        self.db.execute("COMMIT")

    def save_job(self, job_id, state, record):
        self.db.execute(
            "INSERT INTO jobs (job_id, state, updated_at_ms, record) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (job_id) DO UPDATE SET state = excluded.state, "
            "updated_at_ms = excluded.updated_at_ms, record = excluded.record",
            (job_id, state, int(time.time() * 1000), json.dumps(record)))

    def close(self):
        self.db.close()


def get_json(url, api_key):
    req = urllib.request.Request(url, headers={"x-goog-api-key": api_key})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def ingest(args, sink):
    job = get_json(f"{args.base_url}/v1beta/{args.job}", args.api_key)
    response = job.get("response") or {}
    file_name = response.get("responsesFile") or (job.get("metadata", {}).get("output") or {}).get("responsesFile")
    if not file_name:
        raise SystemExit("the batch has no results file")
    record = {"job_id": args.job, "state": "INGESTING", "file": file_name, "byte_offset": 0, "lines": 0}
    sink.save_job(args.job, "INGESTING", record)
    url = f"{args.base_url}/download/v1beta/{file_name}:download?alt=media"
    req = urllib.request.Request(url, headers={"x-goog-api-key": args.api_key})
    counts = {"ok": 0, "error": 0, "malformed": 0}
    line_no = 0
    offset = 0
    pending = []
    with urllib.request.urlopen(req, timeout=30) as resp:
        # A buffered reader over the response: C-speed line splitting, memory bounded by the
        # buffer plus one line.
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
            pending.append(row)
            if len(pending) >= args.batch:
                sink.put_rows(pending)
                pending.clear()
                now_ms = int(time.time() * 1000)
            if line_no % CHECKPOINT_EVERY_LINES == 0:
                if pending:
                    sink.put_rows(pending)
                    pending.clear()
                record.update(byte_offset=offset, lines=line_no, counts=counts)
                sink.save_job(args.job, "INGESTING", record)
    if pending:
        sink.put_rows(pending)
    record.update(state="SUCCEEDED", byte_offset=offset, lines=line_no, counts=counts)
    sink.save_job(args.job, "SUCCEEDED", record)
    return line_no, counts


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--job", required=True, help="batches/<id>")
    p.add_argument("--api-key", required=True)
    p.add_argument("--store", choices=["sqlite", "count"], default="sqlite")
    p.add_argument("--db", default="ingest-python.sqlite3")
    p.add_argument("--batch", type=int, default=500, help="rows per transaction")
    p.add_argument("--synchronous", default="FULL", help="SQLite synchronous pragma")
    p.add_argument("--lines", type=int, default=None, help="expected line count (checked)")
    args = p.parse_args()

    sink = SqliteSink(args.db, args.synchronous) if args.store == "sqlite" else CountingSink()
    rss_before = status_kb("VmRSS")
    cpu_before = time.process_time()
    started = time.perf_counter()
    lines, counts = ingest(args, sink)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_before
    rows = sum(counts.values())
    if args.store == "sqlite":
        stored = sink.db.execute("SELECT count(*) FROM result_rows WHERE job_id = ?", (args.job,)).fetchone()[0]
        if stored != rows:
            raise SystemExit(f"stored {stored} rows, ingested {rows}")
    sink.close()
    if args.lines is not None and rows != args.lines:
        raise SystemExit(f"ingested {rows} rows, expected {args.lines}")
    print(json.dumps({
        "impl": f"python/{args.store}", "lines": lines, "rows": rows, "ok": counts["ok"],
        "errors": counts["error"], "malformed": counts["malformed"], "seconds": seconds,
        "cpu_seconds": cpu_seconds, "rss_before_kb": rss_before, "vmhwm_kb": status_kb("VmHWM"),
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
