//! The fuzz targets' checks (`fuzz/src/lib.rs`) on stable Rust, in CI: every seed and every
//! saved reproducer under `fuzz/seeds/` and `fuzz/regressions/`, plus a seeded random-mutation
//! loop over them. `FUZZ_STABLE_ITERATIONS` (default 3 000 per target) raises the loop for a
//! long run without nightly, e.g.
//! `FUZZ_STABLE_ITERATIONS=10000000 cargo test --release -p gemini_hooks --test fuzz_checks_stable`.
//! The coverage-guided version is `cargo +nightly fuzz run <target>` (docs/RELIABILITY.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../fuzz/src/lib.rs"]
mod checks;

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 3] = [
    ("signature", checks::signature),
    ("event", checks::event),
    ("results_line", checks::results),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file under `fuzz/<kind>/<target>/`.
fn inputs(kind: &str, target: &str) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files
        .iter()
        .filter(|p| p.is_file())
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// One random edit of `input`: flip a bit, insert, delete, duplicate a span, or splice in
/// bytes that matter to these parsers.
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, pool: &[Vec<u8>]) {
    const TOKENS: [&[u8]; 14] = [
        b"\n", b"\r\n", b"\0", b" ", b",", b"v1,", b"{", b"}", b"[", b"]", b"\"", b"-", b"\\u",
        b"1e999",
    ];
    match rng.random_range(0..6) {
        0 if !input.is_empty() => {
            let at = rng.random_range(0..input.len());
            input[at] ^= 1 << rng.random_range(0..8);
        }
        1 => {
            let at = rng.random_range(0..=input.len());
            let token = TOKENS[rng.random_range(0..TOKENS.len())];
            input.splice(at..at, token.iter().copied());
        }
        2 if !input.is_empty() => {
            let from = rng.random_range(0..input.len());
            let to = (from + rng.random_range(1..16)).min(input.len());
            input.drain(from..to);
        }
        3 if !input.is_empty() => {
            let from = rng.random_range(0..input.len());
            let to = (from + rng.random_range(1..64)).min(input.len());
            let span = input[from..to].to_vec();
            let at = rng.random_range(0..=input.len());
            input.splice(at..at, span);
        }
        4 if !pool.is_empty() => {
            let other = &pool[rng.random_range(0..pool.len())];
            if !other.is_empty() {
                let from = rng.random_range(0..other.len());
                let at = rng.random_range(0..=input.len());
                input.splice(at..at, other[from..].iter().copied());
            }
        }
        _ => {
            let at = rng.random_range(0..=input.len());
            input.insert(at, rng.random());
        }
    }
    input.truncate(64 * 1024);
}

/// Runs `check`; on a panic, saves the input (to add under `fuzz/regressions/<target>/`) and
/// fails naming the file.
fn run_or_save(target: &str, check: Check, input: &[u8]) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(input)));
    if outcome.is_err() {
        let path = std::env::temp_dir().join(format!(
            "gemini-hooks-{target}-crash-{}",
            gemini_hooks::domain::verify::sha256_hex(input)
        ));
        std::fs::write(&path, input).unwrap();
        panic!("{target}: check failed; input saved to {}", path.display());
    }
}

#[test]
fn seeds_and_saved_reproducers_pass_every_check() {
    for (target, check) in TARGETS {
        let seeds = inputs("seeds", target);
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for input in seeds.iter().chain(&inputs("regressions", target)) {
            check(input);
        }
    }
}

#[test]
fn seeded_random_mutation_loop() {
    let iterations: u64 = std::env::var("FUZZ_STABLE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    for (n, (target, check)) in TARGETS.into_iter().enumerate() {
        let pool = inputs("seeds", target);
        let mut rng = StdRng::seed_from_u64(0x00f0_2200 + n as u64);
        let started = Instant::now();
        let mut input = Vec::new();
        for i in 0..iterations {
            // Restart from a seed now and then so edits do not drift into pure noise.
            if i % 64 == 0 {
                input = pool[rng.random_range(0..pool.len())].clone();
            }
            for _ in 0..rng.random_range(1..4) {
                mutate(&mut rng, &mut input, &pool);
            }
            run_or_save(target, check, &input);
        }
        eprintln!(
            "{target}: {iterations} mutated inputs in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}
