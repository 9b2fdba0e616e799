//! Verification benchmark (issue 6 item 5): one 1 KB and one 1 MB delivery verified with
//! [`StandardVerifier::verify`], against raw HMAC-SHA256 over the same signed bytes (the floor)
//! and against the Python `standardwebhooks` library on the same inputs in the same run.
//!
//! `verify [--dir target/bench/verify] [--python PATH --script bench/python/verify.py]`
//!
//! The inputs (secret, id, a fresh timestamp, bodies, signature headers) are written to `--dir`
//! first, so the Python script verifies byte-for-byte the same deliveries. Both sides use the same
//! timing scheme (autorange to ≥ 0.2 s per sample, 7 samples, median).

#![allow(clippy::print_stdout)] // a benchmark's job is to print its table

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gemini_hooks::domain::verify::standard::{
    DEFAULT_TOLERANCE_SECS, SigningSecret, StandardVerifier, sign,
};
use gemini_hooks_bench::{Args, BenchError, Timing, render_table, time_op};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SAMPLES: usize = 7;
const SAMPLE_TIME: Duration = Duration::from_millis(200);
const MSG_ID: &str = "msg_2mY7bench0verify0delivery0";

/// A fixed, realistic-looking 32-byte key (the benchmark's secret is not a secret).
fn key_bytes() -> Vec<u8> {
    (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect()
}

/// A `batch.succeeded` event padded (inside `user_metadata`) to exactly `size` bytes of JSON.
fn body_of(size: usize) -> Vec<u8> {
    let make = |pad: usize| {
        json!({
            "type": "batch.succeeded",
            "version": "v1",
            "timestamp": "2026-05-04T10:30:01.123456Z",
            "data": {
                "id": "batches/x7k2m9q4w1r8t5y3u6i0o2p4a",
                "output_file_uri": "files/batch-x7k2m9q4w1r8t5y3u6i0o2p4a",
                "user_metadata": {"job_group": "nightly-eval", "note": "n".repeat(pad)},
            },
        })
        .to_string()
        .into_bytes()
    };
    let base = make(0).len();
    let body = make(size.saturating_sub(base));
    debug_assert_eq!(body.len(), size.max(base));
    body
}

struct Case {
    name: &'static str,
    body: Vec<u8>,
    signature: String,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Writes the inputs the Python side reads.
fn write_inputs(
    dir: &Path,
    secret: &SigningSecret,
    ts: i64,
    cases: &[Case],
) -> Result<(), BenchError> {
    std::fs::create_dir_all(dir).map_err(BenchError::io(format!("creating {}", dir.display())))?;
    let mut listed = Vec::new();
    for c in cases {
        let file = format!("body-{}.json", c.name);
        std::fs::write(dir.join(&file), &c.body)
            .map_err(BenchError::io(format!("writing {file}")))?;
        listed.push(json!({"name": c.name, "body_file": file, "signature": c.signature}));
    }
    let meta = json!({
        "secret": secret.to_whsec(),
        "msg_id": MSG_ID,
        "timestamp": ts.to_string(),
        "cases": listed,
    });
    std::fs::write(dir.join("inputs.json"), meta.to_string())
        .map_err(BenchError::io("writing inputs.json"))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("verify: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), BenchError> {
    let args = Args::from_env()?;
    let dir = PathBuf::from(args.get_or("dir", "target/bench/verify"));
    let key = key_bytes();
    let secret = SigningSecret::from_bytes(&key)
        .map_err(|e| BenchError::Failed(format!("benchmark key: {e}")))?;
    let ts = now_secs();
    let cases: Vec<Case> = [("1KB", 1024), ("1MB", 1024 * 1024)]
        .into_iter()
        .map(|(name, size)| {
            let body = body_of(size);
            let signature = sign(&secret, MSG_ID, ts, &body);
            Case {
                name,
                body,
                signature,
            }
        })
        .collect();
    write_inputs(&dir, &secret, ts, &cases)?;
    let verifier = StandardVerifier::new(vec![secret.clone()], DEFAULT_TOLERANCE_SECS);
    let ts_text = ts.to_string();

    let mut results: Vec<(String, String, Timing)> = Vec::new();
    for c in &cases {
        // Sanity first: a benchmark of a verifier that rejects its input would measure nothing.
        verifier
            .verify(MSG_ID, &ts_text, &c.signature, &c.body, ts)
            .map_err(|e| BenchError::Failed(format!("{} did not verify: {e}", c.name)))?;
        let t = time_op(SAMPLES, SAMPLE_TIME, || {
            let r = verifier.verify(
                std::hint::black_box(MSG_ID),
                std::hint::black_box(&ts_text),
                std::hint::black_box(&c.signature),
                std::hint::black_box(&c.body),
                std::hint::black_box(ts),
            );
            std::hint::black_box(r.is_ok());
        });
        results.push((c.name.into(), "rust StandardVerifier::verify".into(), t));

        let expected = STANDARD
            .decode(c.signature.trim_start_matches("v1,"))
            .map_err(|e| BenchError::Failed(format!("own signature: {e}")))?;
        let floor = |key: &[u8]| -> Vec<u8> {
            // The floor: key schedule + MAC over `{id}.{ts}.{body}`, nothing else.
            match Hmac::<Sha256>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(MSG_ID.as_bytes());
                    mac.update(b".");
                    mac.update(ts_text.as_bytes());
                    mac.update(b".");
                    mac.update(&c.body);
                    mac.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        };
        if floor(&key) != expected {
            return Err(BenchError::Failed(format!(
                "raw HMAC of {} differs from sign()",
                c.name
            )));
        }
        let t = time_op(SAMPLES, SAMPLE_TIME, || {
            std::hint::black_box(floor(std::hint::black_box(&key)));
        });
        results.push((c.name.into(), "rust raw HMAC-SHA256 (hmac+sha2)".into(), t));
    }

    if let Some(python) = args.get("python") {
        let script = args.get_or("script", "bench/python/verify.py");
        let out = Command::new(python)
            .arg(script)
            .arg("--dir")
            .arg(&dir)
            .stderr(Stdio::inherit())
            .output()
            .map_err(BenchError::io("cannot start the Python verifier"))?;
        if !out.status.success() {
            return Err(BenchError::Failed(format!(
                "python verify failed ({})",
                out.status
            )));
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let timing = Timing {
                median_us: v["median_us"].as_f64().unwrap_or(f64::NAN),
                min_us: v["min_us"].as_f64().unwrap_or(f64::NAN),
                iterations: v["iterations"].as_u64().unwrap_or(0),
                samples: usize::try_from(v["samples"].as_u64().unwrap_or(0)).unwrap_or(0),
            };
            results.push((
                v["case"].as_str().unwrap_or("?").to_owned(),
                v["impl"].as_str().unwrap_or("?").to_owned(),
                timing,
            ));
        }
    }

    print_table(&results);
    Ok(())
}

fn print_table(results: &[(String, String, Timing)]) {
    let find = |case: &str, prefix: &str| {
        results
            .iter()
            .find(|(c, i, _)| c == case && i.starts_with(prefix))
            .map(|(_, _, t)| t.median_us)
    };
    let mut rows = Vec::new();
    for (case, implementation, t) in results {
        let ours = find(case, "rust StandardVerifier");
        let floor = find(case, "rust raw HMAC");
        let vs_floor = floor.map_or_else(String::new, |f| format!("{:.2}×", t.median_us / f));
        let vs_ours = ours.map_or_else(String::new, |o| format!("{:.1}×", t.median_us / o));
        rows.push(vec![
            case.clone(),
            implementation.clone(),
            format!("{:.2}", t.median_us),
            format!("{:.2}", t.min_us),
            vs_floor,
            vs_ours,
        ]);
    }
    println!(
        "\nVerification: median µs per call ({SAMPLES} samples of ≥ {} ms each); ratios use medians\n",
        SAMPLE_TIME.as_millis()
    );
    print!(
        "{}",
        render_table(
            &[
                "body",
                "implementation",
                "µs/op",
                "min µs/op",
                "÷ raw HMAC",
                "÷ ours"
            ],
            2,
            &rows
        )
    );
}
