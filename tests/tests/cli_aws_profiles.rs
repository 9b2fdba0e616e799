//! The CLI reaches AWS with the profiles operators actually use: `credential_process` and IAM
//! Identity Center (SSO). The Lambdas' slim aws-config features leave both out; the CLI turns
//! them on. Driven through the real binary against Secrets Manager on moto, with the profile in
//! a throw-away `AWS_CONFIG_FILE` and no credentials in the environment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use gemini_hooks::domain::verify::standard::SigningSecret;
use gemini_hooks_tests::local::{CliOutput, TempDir, run_cli};
use gemini_hooks_tests::moto;

/// Words aws-config uses when a profile needs a cargo feature that is not compiled in.
const FEATURE_MISSING: [&str; 2] = ["cargo feature", "FeatureNotEnabled"];

/// `gemini-hooks webhooks prune-secrets --arn <arn>` with only `profile` to find credentials:
/// the config file, the profile name and a home directory without any cached state.
async fn prune_with_profile(dir: &TempDir, config: &str, profile: &str, arn: &str) -> CliOutput {
    let config_file = dir.join("config");
    std::fs::write(&config_file, config).unwrap();
    let credentials_file = dir.join("credentials");
    std::fs::write(&credentials_file, "").unwrap();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL (moto): run the suite through scripts/test.sh");
    let (config_file, credentials_file, home) = (
        config_file.to_string_lossy().into_owned(),
        credentials_file.to_string_lossy().into_owned(),
        home.to_string_lossy().into_owned(),
    );
    run_cli(
        &["webhooks", "prune-secrets", "--arn", arn],
        &[
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_CONFIG_FILE", config_file.as_str()),
            ("AWS_SHARED_CREDENTIALS_FILE", credentials_file.as_str()),
            ("AWS_PROFILE", profile),
            ("HOME", home.as_str()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("GEMINI_API_KEY", "unused"),
        ],
    )
    .await
}

/// A Secrets Manager secret on moto holding two valid secrets (so a prune has work to do).
async fn two_secret_list() -> String {
    let sm = aws_sdk_secretsmanager::Client::new(&moto::sdk_config().await);
    let list = format!(
        "{},{}",
        SigningSecret::generate().to_whsec(),
        SigningSecret::generate().to_whsec()
    );
    sm.create_secret()
        .name(moto::unique_name("gemini-hooks-profiles"))
        .secret_string(list)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned()
}

fn assert_feature_present(out: &CliOutput) {
    for words in FEATURE_MISSING {
        assert!(
            !out.stderr.contains(words),
            "the CLI lacks an aws-config feature:\n{}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn a_credential_process_profile_provides_the_credentials() {
    let dir = TempDir::new("profile-process");
    let arn = two_secret_list().await;
    // The process proves it ran by leaving a marker; moto accepts any key pair.
    let marker = dir.join("process-ran");
    let script = dir.join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch '{}'\nprintf '%s' '{{\"Version\": 1, \"AccessKeyId\": \"AKIDPROCESS\", \"SecretAccessKey\": \"process-secret\"}}'\n",
            marker.display()
        ),
    )
    .unwrap();
    make_executable(&script);
    let config = format!(
        "[profile proc]\nregion = us-east-1\ncredential_process = {}\n",
        script.display()
    );
    let out = prune_with_profile(&dir, &config, "proc", &arn).await;
    assert_feature_present(&out);
    let out = out.expect_code(0);
    assert!(out.stdout.contains("kept"), "{}", out.stdout);
    assert!(marker.exists(), "the credential process never ran");
}

#[tokio::test]
async fn an_sso_profile_is_understood_and_asks_for_a_login() {
    let dir = TempDir::new("profile-sso");
    let arn = two_secret_list().await;
    let config = "[profile corp]\nsso_session = corp\nsso_account_id = 123456789012\n\
                  sso_role_name = Admin\nregion = us-east-1\n\n\
                  [sso-session corp]\nsso_start_url = https://example.awsapps.com/start\n\
                  sso_region = us-east-1\n";
    // No cached token in the fresh home directory: the SSO provider is reached and fails for
    // that reason, without the network, instead of refusing the profile.
    let out = prune_with_profile(&dir, config, "corp", &arn).await;
    assert_feature_present(&out);
    let out = out.expect_code(1);
    let lower = out.stderr.to_ascii_lowercase();
    assert!(
        lower.contains("sso") || lower.contains("token"),
        "expected an SSO token error:\n{}",
        out.stderr
    );
}

#[cfg(unix)]
fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(not(unix))]
fn make_executable(_: &Path) {}
