//! `gemini-hooks verify` as a process: captured headers and body in files, an explanation of
//! the first failing check for every kind of failure, exit status 0 / 1 / 2.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gemini_hooks::domain::verify::sha256_hex;
use gemini_hooks::domain::verify::standard::{SigningSecret, sign};
use gemini_hooks_tests::delivery::{TEST_SECRET, batch_succeeded_body, test_secret};
use gemini_hooks_tests::jwt::{KEY_1_PEM, KEY_2_PEM, TestSigner};
use gemini_hooks_tests::local::{CliOutput, TempDir, run_cli};
use serde_json::json;

const T: i64 = 1_795_000_000;
const ID: &str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f1W";

struct Capture {
    dir: TempDir,
}

impl Capture {
    fn new(headers: &[(&str, &str)], body: &[u8]) -> Self {
        let dir = TempDir::new("cli-verify");
        let mut text = String::from("POST /webhooks/gemini HTTP/1.1\n");
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\n"));
        }
        text.push('\n');
        write(dir.join("headers.txt"), text.as_bytes());
        write(dir.join("body.json"), body);
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// `verify --headers … --body … --now <now> <extra>` with `secrets` in the environment.
    async fn verify(&self, now: i64, secrets: Option<&str>, extra: &[&str]) -> CliOutput {
        let now = now.to_string();
        let (h, b) = (self.path("headers.txt"), self.path("body.json"));
        let mut args = vec!["verify", "--headers", &h, "--body", &b, "--now", &now];
        args.extend_from_slice(extra);
        let env: Vec<(&str, &str)> = secrets
            .map(|s| vec![("WEBHOOK_SIGNING_SECRETS", s)])
            .unwrap_or_default();
        run_cli(&args, &env).await
    }
}

fn write(path: PathBuf, bytes: &[u8]) {
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn signed(body: &[u8], ts: i64) -> String {
    sign(&test_secret(), ID, ts, body)
}

fn static_capture(body: &[u8], ts: i64, signature: &str) -> Capture {
    let ts = ts.to_string();
    Capture::new(
        &[
            ("Webhook-Id", ID),
            ("Webhook-Timestamp", &ts),
            ("Webhook-Signature", signature),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

/// Fails the test if a secret or the signature leaked into the output.
fn assert_no_secrets(out: &CliOutput, signature: &str) {
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !all.contains(TEST_SECRET.trim_start_matches("whsec_")),
        "secret printed:\n{all}"
    );
    let sig = signature.trim_start_matches("v1,");
    if sig.len() > 8 {
        assert!(!all.contains(sig), "signature printed:\n{all}");
    }
}

#[tokio::test]
async fn valid_capture_verifies_and_names_the_secret() {
    let body = batch_succeeded_body("abc");
    let sig = signed(&body, T);
    let cap = static_capture(&body, T, &sig);
    let other = SigningSecret::generate().to_whsec();
    let out = cap
        .verify(T + 12, Some(&format!("{other},{TEST_SECRET}")), &[])
        .await
        .expect_code(0);
    assert!(
        out.stdout
            .contains("VERIFIED: static signature, secret #2 of 2"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("12 s ago, window ±300 s"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("batch.succeeded, job batches/abc"),
        "{}",
        out.stdout
    );
    assert_no_secrets(&out, &sig);

    // --secret works as well as the environment.
    let (h, b) = (cap.path("headers.txt"), cap.path("body.json"));
    run_cli(
        &[
            "verify",
            "--headers",
            &h,
            "--body",
            &b,
            "--now",
            &T.to_string(),
            "--secret",
            TEST_SECRET,
        ],
        &[],
    )
    .await
    .expect_code(0);
}

#[tokio::test]
async fn send_capture_round_trips_through_verify() {
    let dir = TempDir::new("cli-capture");
    let cap = dir.join("cap").to_string_lossy().into_owned();
    let env = [("WEBHOOK_SIGNING_SECRETS", TEST_SECRET)];
    let printed = run_cli(
        &["send", "batch.failed", "--dry-run", "--capture", &cap],
        &env,
    )
    .await
    .expect_code(0);
    assert!(
        printed.stdout.starts_with("webhook-id: msg_"),
        "{}",
        printed.stdout
    );
    let (h, b) = (format!("{cap}/headers.txt"), format!("{cap}/body"));
    let out = run_cli(&["verify", "--headers", &h, "--body", &b], &env)
        .await
        .expect_code(0);
    assert!(
        out.stdout.contains("event       batch.failed"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn missing_and_malformed_headers_are_named() {
    let body = batch_succeeded_body("abc");
    let sig = signed(&body, T);
    let ts = T.to_string();

    let cap = Capture::new(&[("webhook-id", ID), ("webhook-timestamp", &ts)], &body);
    let out = cap.verify(T, Some(TEST_SECRET), &[]).await.expect_code(1);
    assert!(
        out.stdout
            .contains("NOT VERIFIED: missing header `webhook-signature`"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Headers present: webhook-id, webhook-timestamp"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("answers 400 (missing_header)"),
        "{}",
        out.stdout
    );

    let cap = Capture::new(
        &[("webhook-timestamp", &ts), ("webhook-signature", &sig)],
        &body,
    );
    let out = cap.verify(T, Some(TEST_SECRET), &[]).await.expect_code(1);
    assert!(
        out.stdout.contains("missing header `webhook-id`"),
        "{}",
        out.stdout
    );

    let cap = Capture::new(
        &[
            ("webhook-id", ID),
            ("webhook-timestamp", "1795000000.5"),
            ("webhook-signature", &sig),
        ],
        &body,
    );
    let out = cap.verify(T, Some(TEST_SECRET), &[]).await.expect_code(1);
    assert!(
        out.stdout
            .contains("`webhook-timestamp` header is not an integer"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("must be whole Unix seconds"),
        "{}",
        out.stdout
    );

    let cap = Capture::new(
        &[
            ("webhook-id", ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", "v1a,abc v2,def"),
        ],
        &body,
    );
    let out = cap.verify(T, Some(TEST_SECRET), &[]).await.expect_code(1);
    assert!(out.stdout.contains("has no `v1,` entry"), "{}", out.stdout);
    assert!(out.stdout.contains("version(s) v1a, v2"), "{}", out.stdout);
}

#[tokio::test]
async fn timestamps_outside_the_window_say_by_how_much() {
    let body = batch_succeeded_body("abc");
    let sig = signed(&body, T);
    let cap = static_capture(&body, T, &sig);

    let out = cap
        .verify(T + 1_000, Some(TEST_SECRET), &[])
        .await
        .expect_code(1);
    let s = &out.stdout;
    assert!(s.contains("1000 s before now"), "{s}");
    assert!(s.contains("so it is 700 s too old"), "{s}");
    assert!(
        s.contains("Apart from the window, the signature is valid (secret #1 of 1)"),
        "{s}"
    );
    assert!(s.contains("answers 401 (timestamp_too_old)"), "{s}");

    let out = cap
        .verify(T - 400, Some(TEST_SECRET), &[])
        .await
        .expect_code(1);
    assert!(
        out.stdout.contains("so it is 100 s too far in the future"),
        "{}",
        out.stdout
    );

    // The same capture verifies when the window is not checked.
    cap.verify(T + 1_000, Some(TEST_SECRET), &["--ignore-timestamp"])
        .await
        .expect_code(0);
    cap.verify(T + 1_000, Some(TEST_SECRET), &["--tolerance", "2000"])
        .await
        .expect_code(0);
}

#[tokio::test]
async fn signature_mismatches_are_diagnosed() {
    let body = batch_succeeded_body("abc");

    // A re-serialised body: the signature matches the compact original.
    let sig = signed(&body, T);
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let pretty = serde_json::to_vec_pretty(&value).unwrap_or_default();
    let cap = static_capture(&pretty, T, &sig);
    let out = cap.verify(T, Some(TEST_SECRET), &[]).await.expect_code(1);
    assert!(
        out.stdout.contains("The body was probably re-serialised"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("compact JSON"), "{}", out.stdout);
    assert_no_secrets(&out, &sig);

    // The signer used the whole `whsec_…` text as the key (a known public bug).
    let raw = SigningSecret::from_bytes(TEST_SECRET.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let sig = sign(&raw, ID, T, &body);
    let out = static_capture(&body, T, &sig)
        .verify(T, Some(TEST_SECRET), &[])
        .await
        .expect_code(1);
    assert!(
        out.stdout.contains("read as the whole text as raw bytes"),
        "{}",
        out.stdout
    );

    // Nothing explains it: say what was tried.
    let sig = sign(&SigningSecret::generate(), ID, T, &body);
    let out = static_capture(&body, T, &sig)
        .verify(T, Some(&format!("{TEST_SECRET} not-a-secret")), &[])
        .await
        .expect_code(1);
    let s = &out.stdout;
    assert!(s.contains("NOT VERIFIED: no signature matched"), "{s}");
    assert!(
        s.contains("Tried 2 secret(s): 1 as `whsec_` + standard base64"),
        "{s}"
    );
    assert!(s.contains("Secret #2 is not a `whsec_` secret"), "{s}");
    assert!(s.contains("answers 401 (signature_mismatch)"), "{s}");
    assert_no_secrets(&out, &sig);

    // No secret at all.
    let out = static_capture(&body, T, &signed(&body, T))
        .verify(T, None, &[])
        .await
        .expect_code(1);
    assert!(
        out.stdout.contains("No signing secret was given"),
        "{}",
        out.stdout
    );
}

fn dynamic_capture(token: &str, body: &[u8]) -> Capture {
    let ts = T.to_string();
    Capture::new(
        &[
            ("webhook-id", ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", token),
        ],
        body,
    )
}

/// The audience the dynamic captures below are signed for.
const AUD: &str = "https://hooks.example/gemini";

#[tokio::test]
async fn dynamic_signatures_are_verified_and_explained() {
    let body = batch_succeeded_body("dyn");
    let signer = TestSigner::new("k1", KEY_1_PEM);
    let claims = json!({"iat": T, "exp": T + 300, "aud": AUD, "body_sha256": sha256_hex(&body)});
    let token = signer.sign(&claims);
    let cap = dynamic_capture(&token, &body);
    let key1 = cap.dir.join("k1.pem");
    write(key1.clone(), KEY_1_PEM.as_bytes());
    let key2 = cap.dir.join("k2.pem");
    write(key2.clone(), KEY_2_PEM.as_bytes());
    let jwks = cap.dir.join("jwks.json");
    write(
        jwks.clone(),
        json!({"keys": [signer.jwk()]}).to_string().as_bytes(),
    );
    let (k1, k2, jwks) = (
        key1.to_string_lossy().into_owned(),
        key2.to_string_lossy().into_owned(),
        jwks.to_string_lossy().into_owned(),
    );

    let out = cap
        .verify(T, None, &["--jwks", &jwks, "--audience", AUD])
        .await
        .expect_code(0);
    assert!(
        out.stdout
            .contains("VERIFIED: dynamic signature (RS256 JWT, kid k1)"),
        "{}",
        out.stdout
    );

    // --key derives the JWK (kid = thumbprint), so a token with kid k1 is unknown there.
    let out = cap
        .verify(T, None, &["--key", &k2, "--audience", AUD])
        .await
        .expect_code(1);
    assert!(
        out.stdout.contains("No key with this kid"),
        "{}",
        out.stdout
    );
    let out = cap
        .verify(T, None, &["--key", &k1, "--audience", AUD])
        .await
        .expect_code(1);
    assert!(
        out.stdout.contains("key id `k1` is not in the JWKS"),
        "{}",
        out.stdout
    );

    let out = cap
        .verify(T + 3_600, None, &["--jwks", &jwks, "--audience", AUD])
        .await
        .expect_code(1);
    assert!(out.stdout.contains("JWT has expired"), "{}", out.stdout);
    assert!(out.stdout.contains("It expired at"), "{}", out.stdout);

    let tampered = dynamic_capture(&token, &batch_succeeded_body("other"));
    write(
        tampered.dir.join("jwks.json"),
        json!({"keys": [signer.jwk()]}).to_string().as_bytes(),
    );
    let j = tampered.path("jwks.json");
    let out = tampered
        .verify(T, None, &["--jwks", &j, "--audience", AUD])
        .await
        .expect_code(1);
    assert!(
        out.stdout.contains("body digest does not match the body"),
        "{}",
        out.stdout
    );

    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let hs = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
    let out = dynamic_capture(&hs, &body)
        .verify(T, None, &["--jwks", &jwks, "--audience", AUD])
        .await
        .expect_code(1);
    assert!(
        out.stdout.contains("algorithm `HS256` is not allowed"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("RS256 only"), "{}", out.stdout);

    // Without an audience, dynamic verification is off: the receiver would refuse the token.
    let out = cap.verify(T, None, &["--jwks", &jwks]).await.expect_code(1);
    assert!(out.stdout.contains("`aud`"), "{}", out.stdout);
}

#[tokio::test]
async fn unreadable_inputs_are_usage_errors() {
    let cap = Capture::new(&[("webhook-id", ID)], b"{}");
    write(cap.dir.join("headers.txt"), b"this line has no colon\n");
    let out = cap.verify(T, Some(TEST_SECRET), &[]).await.expect_code(2);
    assert!(
        out.stderr.contains("expected `Name: value`"),
        "{}",
        out.stderr
    );
    // 1 means "not verified"; an input that cannot be read is a usage error.
    let out = run_cli(&["verify", "--body", "/nonexistent/body.json"], &[])
        .await
        .expect_code(2);
    assert!(
        out.stderr.contains("/nonexistent/body.json"),
        "{}",
        out.stderr
    );
}
