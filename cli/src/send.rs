//! `gemini-hooks send`: build a delivery the way Gemini sends it, sign it, POST it.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use gemini_hooks::domain::event::Event;
use gemini_hooks::domain::verify::standard::{SigningSecret, parse_secret_list, sign};
use gemini_hooks::domain::verify::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, sha256_hex};
use serde_json::{Value, json};

use crate::args::SendArgs;
use crate::error::CliError;
use crate::keys::LocalKey;
use crate::samples;
use crate::util::{now_secs, read_input, rfc3339, write_out};

/// How long a dynamic token is valid after its `iat` (Gemini does not document it).
const JWT_LIFETIME_SECS: i64 = 300;
/// `iss` of locally signed tokens, so nobody mistakes them for Gemini's.
const LOCAL_ISSUER: &str = "gemini-hooks-cli (local test key)";
/// `aud` of locally signed tokens, and the audience `dev --local-jwks` accepts by default
/// (dynamic mode needs one: a token for another audience is refused).
pub const LOCAL_AUDIENCE: &str = "gemini-hooks-local";
/// Most of an answer's body that is printed.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How a delivery is signed.
pub enum Signer {
    /// Standard Webhooks HMAC with a `whsec_` secret.
    Static(SigningSecret),
    /// An RS256 JWT from a local key.
    Dynamic {
        key: Box<LocalKey>,
        kid: String,
        audience: Option<String>,
        issuer: Option<String>,
    },
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mode())
    }
}

impl Signer {
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Static(_) => "static",
            Self::Dynamic { .. } => "dynamic",
        }
    }

    /// The `webhook-signature` value for this delivery. `forge` makes a well-formed signature
    /// that does not verify (another secret, or another token's RSA signature).
    pub fn signature(
        &self,
        id: &str,
        timestamp: i64,
        body: &[u8],
        forge: bool,
    ) -> Result<String, CliError> {
        match self {
            Self::Static(secret) => {
                let other;
                let secret = if forge {
                    other = SigningSecret::generate();
                    &other
                } else {
                    secret
                };
                Ok(sign(secret, id, timestamp, body))
            }
            Self::Dynamic {
                key,
                kid,
                audience,
                issuer,
            } => {
                let claims = json!({
                    "iss": issuer.as_deref().unwrap_or(LOCAL_ISSUER),
                    "aud": audience.as_deref().unwrap_or(LOCAL_AUDIENCE),
                    "iat": timestamp,
                    "exp": timestamp + JWT_LIFETIME_SECS,
                    "jti": id,
                    "body_sha256": sha256_hex(body),
                });
                let token = key.sign_jwt(kid, &claims)?;
                if !forge {
                    return Ok(token);
                }
                // A genuine RSA signature, but over other claims: only the signature check fails.
                let mut other_claims = claims.clone();
                other_claims["jti"] = json!(format!("{id}-forged"));
                let other = key.sign_jwt(kid, &other_claims)?;
                let (signed, _) = token.rsplit_once('.').unwrap_or((&token, ""));
                let (_, forged_sig) = other.rsplit_once('.').unwrap_or(("", ""));
                Ok(format!("{signed}.{forged_sig}"))
            }
        }
    }
}

/// One delivery, ready to send: exact body bytes and headers.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Delivery {
    /// Signs `body` as delivery `webhook_id` at `timestamp`.
    pub fn build(
        signer: &Signer,
        webhook_id: &str,
        timestamp: i64,
        body: Vec<u8>,
        forge: bool,
    ) -> Result<Self, CliError> {
        let signature = signer.signature(webhook_id, timestamp, &body, forge)?;
        Ok(Self {
            headers: vec![
                (HEADER_ID.to_owned(), webhook_id.to_owned()),
                (HEADER_TIMESTAMP.to_owned(), timestamp.to_string()),
                (HEADER_SIGNATURE.to_owned(), signature),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            body,
        })
    }

    /// `Name: value` lines, as `verify --headers` reads them.
    pub fn header_lines(&self) -> String {
        self.headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect()
    }
}

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Answer {
    /// `status` (or `error`) field of a JSON answer.
    pub fn outcome(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.get("status")
                    .or_else(|| v.get("error"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    }
}

/// POSTs a delivery.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    delivery: &Delivery,
) -> Result<Answer, CliError> {
    let mut request = client.post(url).body(delivery.body.clone());
    for (name, value) in &delivery.headers {
        request = request.header(name, value);
    }
    let response = request
        .send()
        .await
        .map_err(|e| CliError::Http(format!("POST {url} failed: {}", describe(&e))))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response
        .bytes()
        .await
        .map_err(|e| CliError::Http(format!("reading the answer from {url}: {}", describe(&e))))?;
    let shown = &bytes[..bytes.len().min(MAX_ANSWER_BYTES)];
    Ok(Answer {
        status,
        retry_after,
        body: String::from_utf8_lossy(shown).into_owned(),
    })
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "could not connect (is `gemini-hooks dev` running?)".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    }
}

/// The HTTP client of `send` and `demo`.
pub fn http_client(timeout_secs: u64) -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_secs.max(1)))
        .user_agent(concat!("gemini-hooks-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| CliError::Http(format!("cannot build the HTTP client: {e}")))
}

/// A fresh `webhook-id` in the `msg_…` style Standard Webhooks senders use.
pub fn new_webhook_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

/// The first secret of a `WEBHOOK_SIGNING_SECRETS`-style list.
pub fn first_secret(list: &str) -> Result<SigningSecret, CliError> {
    let mut secrets = parse_secret_list(list)
        .map_err(|e| CliError::Usage(format!("--secret / WEBHOOK_SIGNING_SECRETS: {e}")))?;
    Ok(secrets.swap_remove(0))
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
            },
            note,
        ));
    }
    match args
        .secret
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(list) => Ok((Signer::Static(first_secret(list)?), None)),
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

/// Runs `gemini-hooks send`.
pub async fn run(args: SendArgs, out: &mut dyn Write) -> Result<(), CliError> {
    reqwest::Url::parse(&args.url)
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
        return Ok(());
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
    let header = format!(
        "POST {}  {what}  webhook-id {id}  ({})\n",
        args.url,
        notes.join(", ")
    );
    write_out(out, header.as_bytes())?;
    let answer = post(&client, &args.url, &delivery).await?;
    print_answer(out, &answer)?;

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
    }
    Ok(())
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
    use gemini_hooks::domain::verify::VerifyError;
    use gemini_hooks::domain::verify::standard::StandardVerifier;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn static_delivery_verifies_and_forged_one_does_not() {
        let signer = Signer::Static(SigningSecret::parse(SECRET).unwrap());
        let verifier = StandardVerifier::new(vec![SigningSecret::parse(SECRET).unwrap()], 300);
        let body = br#"{"type":"batch.succeeded"}"#.to_vec();
        let good = Delivery::build(&signer, "msg_1", 1_000, body.clone(), false).unwrap();
        let sig = &good.headers[2].1;
        assert_eq!(good.headers[0], ("webhook-id".into(), "msg_1".into()));
        assert_eq!(
            verifier.verify("msg_1", "1000", sig, &body, 1_000),
            Ok(1_000)
        );
        let bad = Delivery::build(&signer, "msg_1", 1_000, body.clone(), true).unwrap();
        assert_eq!(
            verifier.verify("msg_1", "1000", &bad.headers[2].1, &body, 1_000),
            Err(VerifyError::NoMatchingSignature { secrets: 1 })
        );
        assert!(
            good.header_lines()
                .starts_with("webhook-id: msg_1\nwebhook-timestamp: 1000\n")
        );
    }

    #[test]
    fn answer_outcome_reads_status_or_error() {
        let a = Answer {
            status: 200,
            retry_after: None,
            body: r#"{"status":"duplicate"}"#.into(),
        };
        assert_eq!(a.outcome(), "duplicate");
        let b = Answer {
            status: 401,
            retry_after: None,
            body: r#"{"error":"signature_mismatch","message":"x"}"#.into(),
        };
        assert_eq!(b.outcome(), "signature_mismatch");
    }

    #[test]
    fn first_secret_names_the_setting_not_the_value() {
        let err = first_secret("whsec_!!notbase64!!").unwrap_err().to_string();
        assert!(err.contains("WEBHOOK_SIGNING_SECRETS"), "{err}");
        assert!(!err.contains("notbase64"), "{err}");
    }
}
