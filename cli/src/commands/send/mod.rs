//! `gemini-hooks send`: build a delivery the way Gemini sends it, sign it, POST it.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use gemini_hooks::config::env;
use gemini_hooks::domain::event::Event;
use gemini_hooks::domain::verify::standard::{SigningSecret, parse_secret_list};
use serde_json::Value;

use crate::support::error::{CliError, EXIT_FAILURE};
use crate::support::keys::LocalKey;
use crate::support::output::write_out;
use crate::support::samples;
use crate::support::util::{now_secs, read_input, rfc3339};

mod args;
mod delivery;

pub use args::{LONG_ABOUT, SendArgs};
pub use delivery::{Answer, Delivery, Signer, http_client, is_local_host, new_webhook_id, post};

/// How long `send --dynamic` waits for a local `dev`'s JWKS before skipping the key check.
const JWKS_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The first secret of a `WEBHOOK_SIGNING_SECRETS`-style list; `source` names where the list
/// came from (the flag or the variable) for the error.
pub fn first_secret(list: &str, source: &str) -> Result<SigningSecret, CliError> {
    let mut secrets = parse_secret_list(list).map_err(|e| {
        CliError::Usage(format!(
            "{source}: {e}\n  hint: `gemini-hooks secret` prints a valid new one (use the same \
             value for `gemini-hooks dev`)"
        ))
    })?;
    Ok(secrets.swap_remove(0))
}

/// The secret list to sign with and where it came from: `--secret`, else the environment.
fn secret_input(flag: Option<&str>) -> Option<(String, &'static str)> {
    let set = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
    flag.and_then(set).map(|s| (s, "--secret")).or_else(|| {
        std::env::var(env::WEBHOOK_SIGNING_SECRETS)
            .ok()
            .as_deref()
            .and_then(set)
            .map(|s| (s, env::WEBHOOK_SIGNING_SECRETS))
    })
}

fn signer_for(args: &SendArgs) -> Result<(Signer, Option<String>), CliError> {
    if args.dynamic || args.key.is_some() {
        let (key, path, created) = LocalKey::resolve(args.key.as_deref(), &args.data.data_dir)?;
        let note = created.then(|| {
            format!(
                "generated a local signing key at {} (its JWKS: gemini-hooks jwks)",
                path.display()
            )
        });
        let kid = args.kid.clone().unwrap_or_else(|| key.kid().to_owned());
        return Ok((
            Signer::Dynamic {
                key: Box::new(key),
                kid,
                audience: args.audience.clone(),
                issuer: args.issuer.clone(),
                bind_body: args.bind_body,
            },
            note,
        ));
    }
    match secret_input(args.secret.as_deref()) {
        Some((list, source)) => Ok((Signer::Static(first_secret(&list, source)?), None)),
        // A forged delivery needs no real secret.
        None if args.wrong_signature => Ok((Signer::Static(SigningSecret::generate()), None)),
        None => Err(CliError::Usage(
            "no signing secret: pass --secret whsec_… or set WEBHOOK_SIGNING_SECRETS (the same \
             value `gemini-hooks dev` uses; `gemini-hooks secret` prints a new one), or use \
             --dynamic to sign with a local RSA key"
                .into(),
        )),
    }
}

/// The body to send, with the event type and job id to show.
fn body_for(args: &SendArgs) -> Result<(Vec<u8>, String, Option<String>), CliError> {
    if let Some(path) = &args.body {
        let body = read_input(path)?;
        let (event_type, job) = match Event::parse(&body, None) {
            Ok((e, _)) => (e.received_type, e.job_id),
            Err(_) => ("(body from file, not an event)".to_owned(), None),
        };
        return Ok((body, event_type, job));
    }
    let metadata = args
        .user_metadata
        .as_deref()
        .map(|text| {
            serde_json::from_str::<Value>(text)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| CliError::Usage("--user-metadata must be a JSON object".into()))
        })
        .transpose()?;
    let job = args
        .job
        .clone()
        .unwrap_or_else(|| samples::sample_job_id(&args.event_type));
    let event = samples::sample_event(
        &args.event_type,
        &job,
        metadata.as_ref(),
        &rfc3339(now_secs()),
    );
    let body = serde_json::to_vec(&event)
        .map_err(|e| CliError::Failed(format!("cannot encode the sample: {e}")))?;
    let job = samples::KNOWN_TYPES
        .contains(&args.event_type.as_str())
        .then_some(job);
    Ok((body, args.event_type.clone(), job))
}

fn write_capture(dir: &Path, delivery: &Delivery) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
    let headers = dir.join("headers.txt");
    std::fs::write(&headers, delivery.header_lines()).map_err(|e| CliError::io(&headers, e))?;
    let body = dir.join("body");
    std::fs::write(&body, &delivery.body).map_err(|e| CliError::io(&body, e))
}

/// Runs `gemini-hooks send`; the exit status is 0 only if every answer was 2xx.
pub async fn run(args: SendArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let url = reqwest::Url::parse(&args.url)
        .map_err(|e| CliError::Usage(format!("--url {}: {e}", args.url)))?;
    let (signer, note) = signer_for(&args)?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    let (body, event_type, job) = body_for(&args)?;
    let id = args.id.clone().unwrap_or_else(new_webhook_id);
    let stale = i64::try_from(args.stale_timestamp.unwrap_or(0)).unwrap_or(i64::MAX);
    let timestamp = now_secs().saturating_sub(stale);
    let delivery = Delivery::build(&signer, &id, timestamp, body.clone(), args.wrong_signature)?;

    if let Some(dir) = &args.capture {
        write_capture(dir, &delivery)?;
    }
    if args.dry_run {
        write_out(out, delivery.header_lines().as_bytes())?;
        write_out(out, b"\n")?;
        write_out(out, &delivery.body)?;
        return Ok(0);
    }

    let mut what = event_type.clone();
    if let Some(job) = &job {
        what.push_str(&format!("  job {job}"));
    }
    let mut notes = vec![format!("{} signature", signer.mode())];
    if args.wrong_signature {
        notes.push("deliberately WRONG signature".into());
    }
    if let Some(secs) = args.stale_timestamp {
        notes.push(format!("timestamp {secs} s in the past"));
    }
    let client = http_client(args.timeout)?;
    if let (Signer::Dynamic { kid, .. }, true) = (&signer, is_local(&url))
        && let Some(warning) = check_local_jwks(&client, &url, kid, &args).await
    {
        eprintln!("warning: {warning}");
    }
    let header = format!(
        "POST {}  {what}  webhook-id {id}  ({})\n",
        args.url,
        notes.join(", ")
    );
    write_out(out, header.as_bytes())?;
    let answer = post(&client, &args.url, &delivery).await?;
    print_answer(out, &answer)?;
    hint(&answer, &url, &signer);
    let mut all_ok = answer.is_success();

    if args.duplicate {
        // A Gemini retry: same id and body, a new attempt time, signed again.
        let again = Delivery::build(
            &signer,
            &id,
            now_secs().saturating_sub(stale),
            body,
            args.wrong_signature,
        )?;
        write_out(
            out,
            b"again, same webhook-id and body (as a Gemini retry)\n",
        )?;
        let answer = post(&client, &args.url, &again).await?;
        print_answer(out, &answer)?;
        all_ok &= answer.is_success();
    }
    Ok(if all_ok { 0 } else { EXIT_FAILURE })
}

fn is_local(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(is_local_host)
}

/// Compares the signing key with the JWKS a local `dev --local-jwks` serves; `Some` is a
/// warning: the receiver will refuse the token. Silent when no `dev` answers (the POST says
/// so) or when `--key`/`--kid` deliberately sign with something else.
async fn check_local_jwks(
    client: &reqwest::Client,
    url: &reqwest::Url,
    kid: &str,
    args: &SendArgs,
) -> Option<String> {
    if args.wrong_signature || args.kid.is_some() {
        return None;
    }
    let jwks_url = url.join("/.well-known/jwks.json").ok()?;
    let response = client
        .get(jwks_url.clone())
        .timeout(JWKS_CHECK_TIMEOUT)
        .send()
        .await
        .ok()?;
    let origin = url.origin().ascii_serialization();
    if !response.status().is_success() {
        return Some(format!(
            "the receiver at {origin} serves no local JWKS ({jwks_url} answers {}), so it \
             cannot verify a locally signed token: start `gemini-hooks dev --local-jwks`",
            response.status().as_u16()
        ));
    }
    let served: Value = response.json().await.ok()?;
    let kids: Vec<&str> = served
        .get("keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k.get("kid").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if kids.contains(&kid) {
        return None;
    }
    let source = args
        .key
        .as_ref()
        .map_or_else(|| LocalKey::default_path(&args.data.data_dir), Clone::clone);
    Some(format!(
        "this token is signed with the key in {} (kid {kid}), but the `gemini-hooks dev` at \
         {origin} verifies with kid {}: it uses another data directory. Pass the same \
         --data-dir to both (or --key with the key of dev's data directory)",
        source.display(),
        if kids.is_empty() {
            "(none)".to_owned()
        } else {
            kids.join(", ")
        }
    ))
}

/// What to do about an answer, when there is something to do (on stderr).
fn hint(answer: &Answer, url: &reqwest::Url, signer: &Signer) {
    let outcome = answer.outcome();
    let local = is_local(url);
    let text = match (answer.status, outcome.as_str(), signer) {
        (503, "jwks_unavailable", Signer::Dynamic { .. }) if local => Some(
            "the local `dev` tried to fetch Gemini's JWKS for this locally signed token: start \
             it with --local-jwks to verify against the data directory's key",
        ),
        (401, "dynamic_not_configured", Signer::Dynamic { .. }) if local => Some(
            "the local `dev` has dynamic (JWT) verification off: start it with --local-jwks \
             (it then accepts aud gemini-hooks-local, what `send --dynamic` signs for)",
        ),
        (401, "signature_mismatch", Signer::Static(_)) if local => Some(
            "the receiver has other secrets: use the same WEBHOOK_SIGNING_SECRETS (or \
             --secret) for `dev` and `send`",
        ),
        _ => None,
    };
    if let Some(text) = text {
        eprintln!("hint: {text}");
    }
}

fn print_answer(out: &mut dyn Write, answer: &Answer) -> Result<(), CliError> {
    let mut line = format!("  -> {} {}", answer.status, answer.body.trim());
    if let Some(r) = &answer.retry_after {
        line.push_str(&format!("  (retry-after: {r})"));
    }
    line.push('\n');
    write_out(out, line.as_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn first_secret_names_the_setting_not_the_value() {
        let err = first_secret("whsec_!!notbase64!!", "--secret")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--secret: "), "{err}");
        assert!(!err.contains("WEBHOOK_SIGNING_SECRETS"), "{err}");
        assert!(err.contains("gemini-hooks secret"), "{err}");
        assert!(!err.contains("notbase64"), "{err}");
    }
}
