//! The first hour of a new user, through the real `gemini-hooks` binary: `dev --sample-gemini`
//! with no key, `send` exit statuses and connection errors, hints for dynamic signing, dead
//! letters that say why and `redrive`, what `results` says when there are no jobs, errors that
//! name their source, `--addr localhost:PORT`, plain-text and JSON logs, one warning per failed
//! receive, one `dev` per data directory, and `verify` printing a token's claims.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use gemini_hooks::adapters::sqlite::SqliteStore;
use gemini_hooks_tests::delivery::{TEST_SECRET, batch_succeeded_body};
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, Fault, OutputSpec, operation_json, sample_results, with_stats,
};
use gemini_hooks_tests::jwt::{KEY_1_PEM, KEY_2_PEM, TestSigner};
use gemini_hooks_tests::local::{CliOutput, DevServer, TempDir, run_cli, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(40);
/// A secret list that is not valid (a 5-byte key).
const BAD_SECRET: &str = "whsec_c2hvcnQ=";

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

async fn send(url: &str, args: &[&str]) -> CliOutput {
    let mut all = vec!["send", "--url", url];
    all.extend_from_slice(args);
    run_cli(&all, &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)]).await
}

/// `results --job <id> --json` once the job reached `state`.
async fn wait_for_job(dir: &Path, job: &str, state: &str) -> Value {
    let d = s(dir);
    wait_until(&format!("{job} to be {state}"), WAIT, || {
        let d = d.clone();
        async move {
            let out = run_cli(&["results", "--data-dir", &d, "--job", job, "--json"], &[]).await;
            let v: Value = serde_json::from_str(&out.stdout).ok()?;
            (v["job"]["state"] == state).then_some(v)
        }
    })
    .await
}

/// The dead letters once there are `n` of them.
async fn wait_for_dead_letters(dir: &Path, n: usize) -> Vec<Value> {
    let d = s(dir);
    wait_until(&format!("{n} dead letter(s)"), WAIT, || {
        let d = d.clone();
        async move {
            let out = run_cli(
                &["results", "--data-dir", &d, "--dead-letters", "--json"],
                &[],
            )
            .await;
            let v: Value = serde_json::from_str(&out.stdout).ok()?;
            v.as_array().filter(|a| a.len() == n).cloned()
        }
    })
    .await
}

/// The job id `send` printed (`… job batches/sample-… …`).
fn sent_job(out: &CliOutput) -> String {
    out.stdout
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .unwrap_or_else(|| panic!("no job in\n{}", out.stdout))
        .to_owned()
}

fn fake_env(fake: &FakeGemini) -> Vec<(&'static str, String)> {
    vec![
        ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
        ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
        ("GEMINI_API_BASE_URL", fake.base_url()),
    ]
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A local port nothing listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"))
        .port();
    drop(listener);
    port
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_gemini_ingests_sample_rows_with_no_key() {
    let dir = TempDir::new("first-sample");
    // No GEMINI_API_KEY at all.
    let dev = DevServer::start(
        dir.path(),
        "dev.log",
        &["--sample-gemini"],
        &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)],
    )
    .await;
    assert!(
        dev.banner.contains("SAMPLE Gemini API at"),
        "{}",
        dev.banner
    );
    assert!(
        dev.banner.contains("nothing goes to Google"),
        "{}",
        dev.banner
    );

    let ok = send(&dev.url, &["batch.succeeded"]).await.expect_code(0);
    let job = sent_job(&ok);
    assert!(job.starts_with("batches/sample-"), "{job}");
    let v = wait_for_job(dir.path(), &job, "SUCCEEDED").await;
    assert_eq!(v["total_rows"], 8, "{v}");
    let texts: Vec<&str> = v["rows"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["text"].as_str()).collect())
        .unwrap_or_default();
    assert!(texts.contains(&"The capital of France is Paris."), "{v}");

    let failed = send(&dev.url, &["batch.failed"]).await.expect_code(0);
    let v = wait_for_job(dir.path(), &sent_job(&failed), "FAILED").await;
    assert_eq!(v["job"]["error"]["code"], "3", "{v}");

    // Its log went to a file: plain text, no colour codes.
    let log = dev.log();
    assert!(log.contains("delivery accepted"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in a log file:\n{log}"
    );
    assert_eq!(dev.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_exits_non_zero_on_refusals_and_tells_connection_failures_apart() {
    // A name that cannot resolve (RFC 2606 reserves .invalid).
    let out = send("http://gemini-hooks-test.invalid/", &[])
        .await
        .expect_code(1);
    assert!(
        out.stderr
            .contains("`gemini-hooks-test.invalid` does not resolve (DNS)"),
        "{}",
        out.stderr
    );
    // Nothing listening locally: `dev` is not running.
    let port = closed_port().await;
    let out = send(&format!("http://127.0.0.1:{port}/"), &[])
        .await
        .expect_code(1);
    assert!(
        out.stderr
            .contains(&format!("nothing is listening on 127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("is `gemini-hooks dev` running?"),
        "{}",
        out.stderr
    );

    // `dev --addr localhost:0` listens (IPv4 first) and answers under the name too.
    let dir = TempDir::new("first-send");
    let dev = DevServer::start_at(
        "localhost:0",
        dir.path(),
        "dev.log",
        &["--receive-only"],
        &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)],
    )
    .await;
    assert!(dev.url.starts_with("http://127.0.0.1:"), "{}", dev.url);
    let by_name = dev.url.replace("127.0.0.1", "localhost");
    let out = send(&by_name, &["--duplicate"]).await.expect_code(0);
    assert_eq!(out.stdout.matches("-> 200").count(), 2, "{}", out.stdout);

    let out = send(&dev.url, &["--wrong-signature"]).await.expect_code(1);
    assert!(out.stdout.contains("-> 401"), "{}", out.stdout);
    assert!(
        out.stderr.contains("same WEBHOOK_SIGNING_SECRETS"),
        "{}",
        out.stderr
    );
    // A retry of a refused delivery is refused too: still 1.
    send(&dev.url, &["--stale-timestamp", "900", "--duplicate"])
        .await
        .expect_code(1);
    dev.kill().await;
}

/// The claims of the JWT in a `send --dry-run` printout.
fn dry_run_claims(out: &CliOutput) -> Value {
    let token = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("webhook-signature: "))
        .unwrap_or_else(|| panic!("no signature in\n{}", out.stdout));
    let part = token.split('.').nth(1).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(part).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("claims ({e}): {token}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_send_signs_like_gemini_and_points_at_the_key_dev_uses() {
    let dev_dir = TempDir::new("first-dyn-dev");
    let other_dir = TempDir::new("first-dyn-other");
    write(&dev_dir.join("dynamic-signing-key.pem"), KEY_1_PEM);
    write(&other_dir.join("dynamic-signing-key.pem"), KEY_2_PEM);
    let (mine, other) = (s(dev_dir.path()), s(other_dir.path()));

    // The claims: iat, exp, jti, the local audience; a body digest only when asked.
    let dry = send(
        "http://127.0.0.1:1/",
        &["--dynamic", "--data-dir", &mine, "--dry-run"],
    )
    .await
    .expect_code(0);
    let claims = dry_run_claims(&dry);
    assert_eq!(claims["aud"], "gemini-hooks-local", "{claims}");
    for claim in ["iat", "exp", "jti"] {
        assert!(claims.get(claim).is_some(), "{claim} missing: {claims}");
    }
    assert!(claims.get("body_sha256").is_none(), "{claims}");
    let bound = send(
        "http://127.0.0.1:1/",
        &[
            "--dynamic",
            "--data-dir",
            &mine,
            "--dry-run",
            "--bind-body",
            "--audience",
            "x",
        ],
    )
    .await
    .expect_code(0);
    let claims = dry_run_claims(&bound);
    assert_eq!(claims["aud"], "x");
    assert!(claims["body_sha256"].is_string(), "{claims}");

    // `dev --local-jwks` accepts the default audience with its data directory's key...
    let dev = DevServer::start(
        dev_dir.path(),
        "dev.log",
        &["--receive-only", "--local-jwks"],
        &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)],
    )
    .await;
    assert!(
        dev.banner.contains("aud gemini-hooks-local"),
        "{}",
        dev.banner
    );
    let out = send(&dev.url, &["--dynamic", "--data-dir", &mine])
        .await
        .expect_code(0);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    // ...and `send` warns before signing with another directory's key.
    let out = send(&dev.url, &["--dynamic", "--data-dir", &other])
        .await
        .expect_code(1);
    assert!(
        out.stderr
            .contains("warning: this token is signed with the key in"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(&other), "{}", out.stderr);
    assert!(
        out.stderr.contains("it uses another data directory"),
        "{}",
        out.stderr
    );
    dev.kill().await;

    // A `dev` without --local-jwks tries the configured JWKS (here: nothing listens) and
    // answers 503 jwks_unavailable: `send` says what to do.
    let plain_dir = TempDir::new("first-dyn-plain");
    let jwks = format!("http://127.0.0.1:{}/jwks.json", closed_port().await);
    let dev = DevServer::start(
        plain_dir.path(),
        "dev.log",
        &["--receive-only"],
        &[
            ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET),
            ("WEBHOOK_JWT_AUDIENCE", "gemini-hooks-local"),
            ("WEBHOOK_JWKS_URL", &jwks),
        ],
    )
    .await;
    let out = send(&dev.url, &["--dynamic", "--data-dir", &mine])
        .await
        .expect_code(1);
    assert!(
        out.stdout.contains(r#"-> 503 {"error":"jwks_unavailable""#),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("serves no local JWKS"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hint:") && out.stderr.contains("--local-jwks"),
        "{}",
        out.stderr
    );
    dev.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_say_why_and_redrive_puts_them_back() {
    let fake = FakeGemini::start().await;
    let dir = TempDir::new("first-dlq");
    let d = s(dir.path());
    let env = fake_env(&fake);
    let dev = DevServer::start(
        dir.path(),
        "dev.log",
        &["--max-receive-count", "2", "--log-json"],
        &refs(&env),
    )
    .await;

    // Nothing yet: `results` says where things are instead of "No jobs yet".
    let empty = run_cli(&["results", "--data-dir", &d], &[])
        .await
        .expect_code(0);
    assert!(
        empty.stdout.contains("nothing queued either"),
        "{}",
        empty.stdout
    );

    // A signed event the consumer can never handle: the API refuses our key for its batch.
    fake.inject("/v1beta/batches/first-dlq", vec![Fault::Status(401); 10]);
    send(&dev.url, &["--job", "batches/first-dlq", "--id", "msg_dlq"])
        .await
        .expect_code(0);
    let dead = wait_for_dead_letters(dir.path(), 1).await;
    assert_eq!(dead[0]["receive_count"], 2, "{dead:?}");
    let last_error = dead[0]["last_error"].as_str().unwrap_or_default();
    assert!(last_error.starts_with("gemini_fatal: "), "{dead:?}");

    let table = run_cli(&["results", "--data-dir", &d, "--dead-letters"], &[])
        .await
        .expect_code(0)
        .stdout;
    assert!(
        table.contains("LAST ERROR") && table.contains("gemini_fatal: "),
        "{table}"
    );
    assert!(table.contains("gemini-hooks redrive"), "{table}");

    // `results` with no jobs names the dead letter and the routed tables it finds.
    drop(
        SqliteStore::open(dir.join("results-experiments.sqlite3"))
            .unwrap_or_else(|e| panic!("open: {e}")),
    );
    let summary = run_cli(&["results", "--data-dir", &d], &[])
        .await
        .expect_code(0)
        .stdout;
    assert!(summary.contains("1 dead letter(s)"), "{summary}");
    assert!(
        summary.contains("`results --table experiments`"),
        "{summary}"
    );
    assert!(!summary.contains("No jobs yet."), "{summary}");

    // An unknown id moves nothing; a redrive puts it back, and `dev` tries it again.
    let unknown = run_cli(&["redrive", "--data-dir", &d, "--id", "nope"], &[])
        .await
        .expect_code(2);
    assert!(
        unknown.stderr.contains("not a dead letter") && unknown.stderr.contains("nope"),
        "{}",
        unknown.stderr
    );
    let id = dead[0]["id"].as_str().unwrap_or_default().to_owned();
    let moved = run_cli(&["redrive", "--data-dir", &d, "--id", &id], &[])
        .await
        .expect_code(0);
    assert!(
        moved.stdout.contains("Moved 1 dead letter(s)"),
        "{}",
        moved.stdout
    );
    wait_until(
        "the redriven message to be received again",
        WAIT,
        || async {
            let log = dev.log();
            (log.matches("\"message dead-lettered after too many receives\"")
                .count()
                == 2)
                .then_some(())
        },
    )
    .await;
    let dead = wait_for_dead_letters(dir.path(), 1).await;
    assert_eq!(dead[0]["id"], id.as_str());

    // --log-json: every line is JSON, and `outcome` is always a plain code.
    let log = dev.log();
    let mut outcomes = Vec::new();
    for l in log.lines() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        if let Some(o) = v.get("outcome") {
            outcomes.push(o.clone());
        }
    }
    assert!(outcomes.contains(&json!("gemini_fatal")), "{log}");
    for o in &outcomes {
        let code = o.as_str().unwrap_or_default();
        assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "outcome {o} is not a plain code:\n{log}"
        );
    }
    dev.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_receive_logs_one_warning_not_one_per_retry() {
    let fake = FakeGemini::start().await;
    let file = "files/cli-flaky-results";
    fake.put_operation(with_stats(
        operation_json(
            "batches/cli-flaky",
            "BATCH_STATE_SUCCEEDED",
            OutputSpec::File(file.into()),
        ),
        3,
        3,
        0,
    ));
    fake.put_file(file, Bytes::from(sample_results(3, 10, 13)));
    // Every attempt of the first two receives fails (the client tries 5 times per receive).
    fake.inject("/v1beta/batches/cli-flaky", vec![Fault::Status(503); 10]);
    let dir = TempDir::new("first-warn");
    let env = fake_env(&fake);
    let dev = DevServer::start(
        dir.path(),
        "dev.log",
        &["--max-receive-count", "2"],
        &refs(&env),
    )
    .await;
    send(&dev.url, &["--job", "batches/cli-flaky"])
        .await
        .expect_code(0);
    let dead = wait_for_dead_letters(dir.path(), 1).await;
    assert!(
        dead[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{dead:?}"
    );
    assert_eq!(fake.requests_to("/v1beta/batches/cli-flaky").len(), 10);
    let log = dev.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    let per_receive = warnings
        .iter()
        .filter(|l| l.contains("message failed; it will be retried"))
        .count();
    assert_eq!(per_receive, 2, "one warning per failed receive:\n{log}");
    assert!(!log.contains("Gemini call failed"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
    dev.kill().await;
}

#[tokio::test]
async fn secret_errors_name_the_flag_or_the_variable_they_came_from() {
    let dir = TempDir::new("first-secret");
    let d = s(dir.path());
    let flag = run_cli(
        &[
            "send",
            "--url",
            "http://127.0.0.1:1/",
            "--secret",
            BAD_SECRET,
        ],
        &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)],
    )
    .await
    .expect_code(2);
    assert!(flag.stderr.contains("error: --secret: "), "{}", flag.stderr);
    assert!(
        flag.stderr.contains("gemini-hooks secret"),
        "{}",
        flag.stderr
    );
    let env = run_cli(
        &["send", "--url", "http://127.0.0.1:1/"],
        &[("WEBHOOK_SIGNING_SECRETS", BAD_SECRET)],
    )
    .await
    .expect_code(2);
    assert!(
        env.stderr.contains("error: WEBHOOK_SIGNING_SECRETS: "),
        "{}",
        env.stderr
    );

    let dev_flag = run_cli(
        &[
            "dev",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            &d,
            "--receive-only",
            "--secret",
            BAD_SECRET,
        ],
        &[("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)],
    )
    .await
    .expect_code(2);
    assert!(
        dev_flag.stderr.contains("error: --secret: "),
        "{}",
        dev_flag.stderr
    );
    assert!(
        dev_flag.stderr.contains("gemini-hooks secret"),
        "{}",
        dev_flag.stderr
    );
    let dev_env = run_cli(
        &[
            "dev",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            &d,
            "--receive-only",
        ],
        &[("WEBHOOK_SIGNING_SECRETS", BAD_SECRET)],
    )
    .await
    .expect_code(2);
    assert!(
        dev_env
            .stderr
            .contains("WEBHOOK_SIGNING_SECRETS is invalid"),
        "{}",
        dev_env.stderr
    );
    assert!(
        dev_env.stderr.contains("gemini-hooks secret"),
        "{}",
        dev_env.stderr
    );
    for out in [&flag, &env, &dev_flag, &dev_env] {
        assert!(
            !out.stderr.contains("c2hvcnQ"),
            "secret echoed: {}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dev_per_data_directory_is_enforced() {
    let dir = TempDir::new("first-lock");
    let d = s(dir.path());
    let env = [("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)];
    let first = DevServer::start(dir.path(), "dev-1.log", &["--receive-only"], &env).await;
    let second = run_cli(
        &[
            "dev",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            &d,
            "--receive-only",
        ],
        &env,
    )
    .await
    .expect_code(1);
    assert!(
        second
            .stderr
            .contains("is in use by another `gemini-hooks dev` (pid "),
        "{}",
        second.stderr
    );
    // `results` and `redrive` still work while it runs.
    run_cli(&["results", "--data-dir", &d], &[])
        .await
        .expect_code(0);
    run_cli(&["redrive", "--data-dir", &d], &[])
        .await
        .expect_code(0);
    // The lock dies with the process, however it ends.
    first.kill().await;
    let again = DevServer::start(dir.path(), "dev-2.log", &["--receive-only"], &env).await;
    assert_eq!(again.terminate().await, 0);
}

#[tokio::test]
async fn verify_prints_a_tokens_header_and_claims_but_never_its_signature() {
    const T: i64 = 1_795_000_000;
    let dir = TempDir::new("first-verify");
    let signer = TestSigner::new("k1", KEY_1_PEM);
    let token =
        signer.sign(&json!({"aud": "projects/my-project", "iat": T, "exp": T + 300, "jti": "j-1"}));
    let signature = token.rsplit('.').next().unwrap_or_default().to_owned();
    let ts = T.to_string();
    write(
        &dir.join("headers.txt"),
        &format!("webhook-id: msg_1\nwebhook-timestamp: {ts}\nwebhook-signature: {token}\n"),
    );
    std::fs::write(dir.join("body.json"), batch_succeeded_body("abc"))
        .unwrap_or_else(|e| panic!("write: {e}"));
    write(
        &dir.join("jwks.json"),
        &json!({"keys": [signer.jwk()]}).to_string(),
    );
    let (h, b, j) = (
        s(&dir.join("headers.txt")),
        s(&dir.join("body.json")),
        s(&dir.join("jwks.json")),
    );
    let base = [
        "verify",
        "--headers",
        &h,
        "--body",
        &b,
        "--jwks",
        &j,
        "--now",
        &ts,
    ];
    let mut with_audience = base.to_vec();
    with_audience.extend(["--audience", "projects/my-project"]);
    let configured = run_cli(&with_audience, &[]).await.expect_code(0);
    let line_of = |out: &CliOutput, prefix: &str| -> String {
        out.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_owned))
            .unwrap_or_else(|| panic!("no `{prefix}` line in\n{}", out.stdout))
    };
    let header: Value = serde_json::from_str(&line_of(&configured, "JWT header  "))
        .unwrap_or_else(|e| panic!("header line: {e}"));
    assert_eq!(
        (header["alg"].as_str(), header["kid"].as_str()),
        (Some("RS256"), Some("k1"))
    );
    let claims: Value = serde_json::from_str(&line_of(&configured, "JWT claims  "))
        .unwrap_or_else(|e| panic!("claims line: {e}"));
    assert_eq!(claims["aud"], "projects/my-project");
    assert_eq!(claims["jti"], "j-1");
    // Without an audience configured it says which one to configure.
    let unconfigured = run_cli(&base, &[]).await;
    assert!(
        unconfigured
            .stdout
            .contains("Its audience is projects/my-project"),
        "{}",
        unconfigured.stdout
    );
    assert!(
        unconfigured.stdout.contains("WEBHOOK_JWT_AUDIENCE"),
        "{}",
        unconfigured.stdout
    );
    for out in [&configured, &unconfigured] {
        assert!(
            !out.stdout.contains(&signature) && !out.stderr.contains(&signature),
            "signature printed:\n{}",
            out.stdout
        );
    }
}
