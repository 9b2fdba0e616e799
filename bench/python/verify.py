#!/usr/bin/env python3
"""The Python side of the verification benchmark (issue 6 item 5).

Reads the inputs the Rust `verify` binary wrote (`--dir`: inputs.json + bodies) and times, on the
very same bytes:
- `standardwebhooks.Webhook.verify(body, headers)` as a Flask/FastAPI receiver calls it (the
  library then also `json.loads` the body: that is its default and what users get);
- the same with `json_parse=False` (verification only, the like-for-like comparison);
- `hmac.new(key, id.ts.body, sha256).digest()`, Python's own floor.

Timing matches the Rust side: grow the call count until one sample lasts >= 0.2 s, take 7 samples,
report the median (and minimum) per call. Prints one JSON line per measurement.
"""

import argparse
import base64
import hashlib
import hmac
import json
import pathlib
import statistics
import time

from standardwebhooks.webhooks import Webhook

SAMPLES = 7
SAMPLE_TIME = 0.2


def time_op(fn):
    for _ in range(3):
        fn()
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t >= SAMPLE_TIME:
            break
        n *= 2
    per_call = []
    for _ in range(SAMPLES):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        per_call.append((time.perf_counter() - t) * 1e6 / n)
    return {"median_us": statistics.median(per_call), "min_us": min(per_call), "iterations": n,
            "samples": SAMPLES}


def main():
    p = argparse.ArgumentParser(description="standardwebhooks verification timing")
    p.add_argument("--dir", required=True)
    args = p.parse_args()
    d = pathlib.Path(args.dir)
    meta = json.loads((d / "inputs.json").read_text())
    wh = Webhook(meta["secret"])
    key = base64.b64decode(meta["secret"].removeprefix("whsec_"))
    msg_id, ts = meta["msg_id"], meta["timestamp"]
    import standardwebhooks
    version = getattr(standardwebhooks, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version
        version = dist_version("standardwebhooks")
    for case in meta["cases"]:
        body = (d / case["body_file"]).read_bytes()
        headers = {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": case["signature"]}
        # Sanity: both calls must accept the delivery, or we would time a rejection path.
        wh.verify(body, headers)
        wh.verify(body, headers, json_parse=False)
        expected = base64.b64decode(case["signature"].split(",", 1)[1])
        prefix = f"{msg_id}.{ts}.".encode()
        if hmac.new(key, prefix + body, hashlib.sha256).digest() != expected:
            raise SystemExit("raw HMAC differs from the signature")

        measurements = [
            (f"python standardwebhooks {version} verify()", lambda: wh.verify(body, headers)),
            (f"python standardwebhooks {version} verify(json_parse=False)",
             lambda: wh.verify(body, headers, json_parse=False)),
            ("python raw hmac.new(...).digest()",
             lambda: hmac.new(key, prefix + body, hashlib.sha256).digest()),
        ]
        for name, fn in measurements:
            r = time_op(fn)
            r.update(case=case["name"], impl=name)
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
