//! `gemini-hooks demo` and `--help` as a user sees them: the README's first command.

use gemini_hooks_tests::local::{TempDir, run_cli};
use serde_json::Value;

#[tokio::test]
async fn demo_shows_the_whole_story_and_leaves_an_inspectable_store() {
    let dir = TempDir::new("cli-demo");
    let data = dir.join("demo").to_string_lossy().into_owned();
    let out = run_cli(&["demo", "--data-dir", &data], &[])
        .await
        .expect_code(0);
    let s = &out.stdout;
    assert!(s.contains("SAMPLE DATA"), "{s}");
    for expected in [
        "-> 200 accepted",
        "-> 200 duplicate",
        "-> 401 signature_mismatch",
        "-> 401 timestamp_too_old",
        "-> 200 duplicate          same webhook-id, another body: the first stands",
    ] {
        assert!(s.contains(expected), "missing `{expected}` in\n{s}");
    }
    assert_eq!(s.matches("-> 200 accepted").count(), 2, "{s}");
    assert!(
        s.contains("queue now holds 0 message(s), 0 dead letter(s)"),
        "{s}"
    );
    assert!(
        s.contains("batches/demo-sample-succeeded    SUCCEEDED  8 rows (1 error, 1 malformed)"),
        "{s}"
    );
    assert!(s.contains("batches/demo-sample-failed       FAILED"), "{s}");
    assert!(s.contains("The capital of France is Paris."), "{s}");
    let printed_secret = s.match_indices("whsec_").any(|(i, _)| {
        s[i + 6..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    });
    assert!(
        !printed_secret,
        "the generated secret is never printed:\n{s}"
    );

    // The store it leaves is what `results` reads.
    let jobs = run_cli(&["results", "--data-dir", &data, "--json"], &[])
        .await
        .expect_code(0);
    let jobs: Value = serde_json::from_str(&jobs.stdout).unwrap_or_default();
    assert_eq!(jobs.as_array().map(Vec::len), Some(2), "{jobs}");
    let rows = run_cli(
        &[
            "results",
            "--data-dir",
            &data,
            "--job",
            "demo-sample-succeeded",
            "--json",
        ],
        &[],
    )
    .await
    .expect_code(0);
    let rows: Value = serde_json::from_str(&rows.stdout).unwrap_or_default();
    assert_eq!(rows["total_rows"], 8);
    assert_eq!(rows["job"]["job_group"], "demo");

    // A second run refuses to reuse a directory that already holds a store.
    let again = run_cli(&["demo", "--data-dir", &data], &[])
        .await
        .expect_code(2);
    assert!(
        again.stderr.contains("already holds a store"),
        "{}",
        again.stderr
    );
}

#[tokio::test]
async fn help_explains_every_command() {
    let out = run_cli(&["--help"], &[]).await.expect_code(0);
    for cmd in [
        "dev", "send", "verify", "results", "export", "redrive", "jwks", "secret", "demo",
    ] {
        assert!(
            out.stdout.contains(&format!("\n  {cmd} ")),
            "`{cmd}` missing from --help:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("WEBHOOK_SIGNING_SECRETS"),
        "{}",
        out.stdout
    );
    let send = run_cli(&["send", "--help"], &[]).await.expect_code(0);
    for flag in [
        "--duplicate",
        "--stale-timestamp",
        "--wrong-signature",
        "--dynamic",
        "--body",
        "--capture",
    ] {
        assert!(
            send.stdout.contains(flag),
            "{flag} missing from send --help"
        );
    }
    let secret = run_cli(&["secret"], &[]).await.expect_code(0);
    assert!(
        secret.stdout.trim().starts_with("whsec_"),
        "{}",
        secret.stdout
    );
    let other = run_cli(&["secret"], &[]).await.expect_code(0);
    assert_ne!(secret.stdout, other.stdout, "secrets must be random");
}

#[tokio::test]
async fn results_without_a_store_says_how_to_get_one() {
    let dir = TempDir::new("cli-nostore");
    let d = dir.join("empty").to_string_lossy().into_owned();
    let out = run_cli(&["results", "--data-dir", &d], &[])
        .await
        .expect_code(2);
    assert!(out.stderr.contains("no local store"), "{}", out.stderr);
    assert!(out.stderr.contains("gemini-hooks dev"), "{}", out.stderr);
    assert!(
        !dir.join("empty").exists(),
        "results must not create a store"
    );
}
