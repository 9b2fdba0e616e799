//! The diagnosis: the library's own verdict ([`WebhookVerifier`], built by the composition root
//! as in the receiver), explained — which header is missing, how far outside the window the
//! timestamp is, what a JWT delivery's token says, and what a receiver would answer.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use gemini_hooks::config::VerifierConfig;
use gemini_hooks::domain::event::Event;
use gemini_hooks::domain::verify::jwt::looks_like_jwt;
use gemini_hooks::domain::verify::standard::{SigningSecret, StandardVerifier};
use gemini_hooks::domain::verify::{
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, VerifiedDelivery, VerifyError, single_header,
};
use gemini_hooks::usecases::http::reply;
use gemini_hooks::usecases::receive::ReceiveError;
use gemini_hooks::usecases::verify::WebhookVerifier;
use http::{HeaderMap, HeaderName};
use serde_json::Value;

use super::capture::Input;
use super::mismatch::explain_mismatch;
use crate::support::util::rfc3339;

/// A secret as given, with the key its `whsec_` reading yields (if any).
pub(super) struct GivenSecret {
    pub(super) text: String,
    pub(super) standard: Option<SigningSecret>,
}

fn given_secrets(list: Option<&str>) -> Vec<GivenSecret> {
    list.unwrap_or_default()
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|text| GivenSecret {
            text: text.to_owned(),
            standard: SigningSecret::parse(text).ok(),
        })
        .collect()
}

/// The outcome, as lines to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub verified: bool,
    pub headline: String,
    pub details: Vec<String>,
}

impl Report {
    fn ok(headline: String, details: Vec<String>) -> Self {
        Self {
            verified: true,
            headline,
            details,
        }
    }

    fn failed(headline: String, details: Vec<String>) -> Self {
        Self {
            verified: false,
            headline,
            details,
        }
    }
}

/// Verifies and explains.
pub async fn diagnose(input: &Input, http: reqwest::Client) -> Report {
    let given = given_secrets(input.secrets.as_deref());
    let usable: Vec<SigningSecret> = given.iter().filter_map(|g| g.standard.clone()).collect();
    // Dynamic mode is always on here (with the audiences given, possibly none), so a JWT
    // delivery is explained whatever the flags.
    let config = VerifierConfig {
        secrets: (!usable.is_empty()).then_some(usable),
        tolerance_secs: input.tolerance_secs,
        jwt: Some(input.jwt.config()),
    };
    let verifier: WebhookVerifier =
        gemini_hooks::wiring::webhook_verifier(&config, http, input.jwt.keys.fixed());

    // With --ignore-timestamp the window is checked at the delivery's own time: the signature
    // still covers the timestamp text, so nothing else changes.
    let now = if input.ignore_timestamp {
        single_header(&input.headers, HEADER_TIMESTAMP)
            .ok()
            .flatten()
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(input.now_secs)
    } else {
        input.now_secs
    };
    let signature = single_header(&input.headers, HEADER_SIGNATURE)
        .ok()
        .flatten()
        .map(str::to_owned);
    let dynamic = signature.as_deref().is_some_and(looks_like_jwt);

    let mut report = match verifier.verify(&input.headers, &input.body, now).await {
        Ok(verified) => explain_valid(input, &verified, &given, dynamic),
        Err(err) => {
            let mut report = explain_failure(input, &err, &given, dynamic, signature.as_deref());
            let answer = reply(&Err(ReceiveError::Verify(err.clone())));
            report.details.push(format!(
                "A receiver with this configuration answers {} ({}).",
                answer.status,
                err.code()
            ));
            report
        }
    };
    if dynamic {
        let configured = input.jwt.rules.audiences.join(", ");
        report.details.extend(token_contents(
            signature.as_deref(),
            (!configured.is_empty()).then_some(configured.as_str()),
        ));
    }
    report
}

/// The decoded header and claims of a JWT delivery (never its signature segment), and what
/// they mean for `WEBHOOK_JWT_AUDIENCE`: Gemini does not document its claims, so this is how
/// an operator finds the audience their deliveries carry.
fn token_contents(token: Option<&str>, configured: Option<&str>) -> Vec<String> {
    let compact = |v: Value| serde_json::to_string(&v).unwrap_or_default();
    let (header, claims) = (jwt_part(token, 0), jwt_part(token, 1));
    let mut lines = vec![
        format!(
            "JWT header  {}",
            header.map_or("(not base64url JSON)".to_owned(), compact)
        ),
        format!(
            "JWT claims  {}",
            claims
                .clone()
                .map_or("(not base64url JSON)".to_owned(), compact)
        ),
    ];
    let audiences: Vec<String> = match claims.as_ref().and_then(|c| c.get("aud")) {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    lines.push(match (audiences.as_slice(), configured) {
        ([], _) => "The token has no `aud` claim, so no WEBHOOK_JWT_AUDIENCE can match it.".into(),
        (auds, None) => format!(
            "Its audience is {}: a receiver accepts it only with WEBHOOK_JWT_AUDIENCE set to \
             that (--audience here); first check that the token is from your own job.",
            auds.join(", ")
        ),
        (auds, Some(want)) => format!(
            "Its audience is {}; configured (--audience / WEBHOOK_JWT_AUDIENCE): {want}.",
            auds.join(", ")
        ),
    });
    lines
}

fn explain_valid(
    input: &Input,
    verified: &VerifiedDelivery,
    given: &[GivenSecret],
    dynamic: bool,
) -> Report {
    let mut details = vec![format!("webhook-id  {}", verified.webhook_id)];
    let age = input.now_secs - verified.timestamp;
    let when = if age >= 0 {
        format!("{age} s ago")
    } else {
        format!("{} s in the future", -age)
    };
    details.push(format!(
        "timestamp   {} ({}), {when}, window ±{} s{}",
        verified.timestamp,
        rfc3339(verified.timestamp),
        input.tolerance_secs,
        if input.ignore_timestamp {
            " (not checked: --ignore-timestamp)"
        } else {
            ""
        }
    ));
    let how = if dynamic {
        let kid = jwt_part(signature_of(input).as_deref(), 0)
            .and_then(|h| h.get("kid").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        format!("dynamic signature (RS256 JWT, kid {kid})")
    } else {
        let matched = matching_secret(input, given);
        match matched {
            Some(i) => format!("static signature, secret #{i} of {}", given.len()),
            None => "static signature".to_owned(),
        }
    };
    match Event::parse(&input.body, verified.claims()) {
        Ok((event, _)) => {
            details.push(format!(
                "event       {}{}",
                event.received_type,
                event
                    .job_id
                    .map(|j| format!(", job {j}"))
                    .unwrap_or_default()
            ));
            Report::ok(format!("VERIFIED: {how}"), details)
        }
        Err(e) => {
            details.push(format!("but the body is not a Gemini event: {e}"));
            details.push("A receiver answers 400 (invalid_event).".into());
            Report::failed(
                format!("NOT ACCEPTED: {how} is valid, but the body is not an event"),
                details,
            )
        }
    }
}

fn signature_of(input: &Input) -> Option<String> {
    single_header(&input.headers, HEADER_SIGNATURE)
        .ok()
        .flatten()
        .map(str::to_owned)
}

/// 1-based index of the first secret whose signature is in the header.
fn matching_secret(input: &Input, given: &[GivenSecret]) -> Option<usize> {
    let (id, ts, sig) = static_parts(input)?;
    given
        .iter()
        .position(|g| {
            g.standard.as_ref().is_some_and(|s| {
                StandardVerifier::new(vec![s.clone()], 0)
                    .verify_ignoring_timestamp(&id, &ts, &sig, &input.body)
                    .is_ok()
            })
        })
        .map(|i| i + 1)
}

pub(super) fn static_parts(input: &Input) -> Option<(String, String, String)> {
    let get = |name| {
        single_header(&input.headers, name)
            .ok()
            .flatten()
            .map(str::to_owned)
    };
    Some((
        get(HEADER_ID)?,
        get(HEADER_TIMESTAMP)?,
        get(HEADER_SIGNATURE)?,
    ))
}

/// The decoded header (0) or claims (1) of a compact JWT, without verifying anything.
fn jwt_part(token: Option<&str>, index: usize) -> Option<Value> {
    let segment = token?.trim().split('.').nth(index)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .or_else(|_| URL_SAFE.decode(segment))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn present_headers(headers: &HeaderMap) -> String {
    let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
    names.dedup();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn explain_failure(
    input: &Input,
    err: &VerifyError,
    given: &[GivenSecret],
    dynamic: bool,
    signature: Option<&str>,
) -> Report {
    let headline = format!("NOT VERIFIED: {err}");
    let mut d = Vec::new();
    match err {
        VerifyError::MissingHeader(name) => {
            d.push(format!(
                "The delivery has no `{name}` header. Headers present: {}.",
                present_headers(&input.headers)
            ));
            d.push(
                "Every Gemini delivery carries webhook-id, webhook-timestamp and \
                 webhook-signature; if one is missing the capture is incomplete or a proxy \
                 dropped it."
                    .into(),
            );
        }
        VerifyError::MalformedHeader { header, reason } => {
            d.push(format!("The `{header}` header {reason}."));
            if *header == HEADER_TIMESTAMP {
                d.push("webhook-timestamp must be whole Unix seconds, e.g. 1795000000.".into());
            }
        }
        VerifyError::TimestampTooOld { seconds, tolerance }
        | VerifyError::TimestampTooNew { seconds, tolerance } => {
            explain_window(input, err, *seconds, *tolerance, given, &mut d);
        }
        VerifyError::NoSupportedSignature => {
            let versions: Vec<String> = signature
                .unwrap_or_default()
                .split_ascii_whitespace()
                .map(|e| {
                    e.split_once(',')
                        .map_or("(no version)", |(v, _)| v)
                        .to_owned()
                })
                .collect();
            d.push(format!(
                "The header holds {} entr{} with version(s) {}; Gemini signs with `v1,<base64>` \
                 entries (HMAC-SHA256).",
                versions.len(),
                if versions.len() == 1 { "y" } else { "ies" },
                if versions.is_empty() {
                    "none".to_owned()
                } else {
                    versions.join(", ")
                }
            ));
        }
        VerifyError::NoMatchingSignature { .. } => explain_mismatch(input, given, &mut d),
        VerifyError::StaticNotConfigured => {
            let unusable = given.iter().filter(|g| g.standard.is_none()).count();
            if unusable > 0 {
                d.push(format!(
                    "{unusable} secret(s) were given but none is a `whsec_` secret with a \
                     base64 key of at least 16 bytes."
                ));
                explain_mismatch(input, given, &mut d);
            } else {
                d.push(
                    "No signing secret was given: pass --secret whsec_… or set \
                     WEBHOOK_SIGNING_SECRETS."
                        .into(),
                );
            }
        }
        _ if dynamic => explain_jwt(input, err, signature, &mut d),
        _ => {}
    }
    Report::failed(headline, d)
}

fn explain_window(
    input: &Input,
    err: &VerifyError,
    outside: u64,
    tolerance: u64,
    given: &[GivenSecret],
    d: &mut Vec<String>,
) {
    let ts = single_header(&input.headers, HEADER_TIMESTAMP)
        .ok()
        .flatten()
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or_default();
    let distance = input.now_secs.abs_diff(ts);
    if matches!(err, VerifyError::TimestampTooOld { .. }) {
        d.push(format!(
            "The delivery was signed at {ts} ({}), {distance} s before now ({}). The window \
             allows {tolerance} s, so it is {outside} s too old.",
            rfc3339(ts),
            rfc3339(input.now_secs)
        ));
        d.push(
            "Gemini signs every retry with a fresh timestamp, so a genuine delivery is not this \
             old on arrival: this is a replay, a capture checked later, or a wrong clock."
                .into(),
        );
    } else {
        d.push(format!(
            "The delivery claims to be signed at {ts} ({}), {distance} s after now ({}). The \
             window allows {tolerance} s, so it is {outside} s too far in the future.",
            rfc3339(ts),
            rfc3339(input.now_secs)
        ));
        if ts > input.now_secs.saturating_mul(100) {
            d.push("The value looks like milliseconds; it must be seconds.".into());
        } else {
            d.push("The clock of this machine or of the sender is probably wrong.".into());
        }
    }
    d.push(
        "To check a capture made earlier, pass --now <unix seconds of the capture> or \
         --ignore-timestamp."
            .into(),
    );
    if signature_of(input).as_deref().is_some_and(looks_like_jwt) {
        return;
    }
    match matching_secret(input, given) {
        Some(i) => d.push(format!(
            "Apart from the window, the signature is valid (secret #{i} of {}).",
            given.len()
        )),
        None => {
            d.push("The signature would not match either:".into());
            let mut more = Vec::new();
            explain_mismatch(input, given, &mut more);
            d.extend(more.into_iter().map(|l| format!("  {l}")));
        }
    }
}

fn explain_jwt(input: &Input, err: &VerifyError, token: Option<&str>, d: &mut Vec<String>) {
    let header = jwt_part(token, 0).unwrap_or(Value::Null);
    let claims = jwt_part(token, 1).unwrap_or(Value::Null);
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    d.push(format!(
        "The webhook-signature is a JWT (dynamic webhook): alg {alg}, kid {kid}."
    ));
    let time = |name: &str| claims.get(name).and_then(Value::as_i64);
    match err {
        VerifyError::DisallowedAlgorithm(_) => d.push(
            "Gemini signs dynamic webhooks with RS256 only; any other algorithm is refused \
             before a key is looked up, so a token cannot choose how it is checked."
                .into(),
        ),
        VerifyError::UnknownKeyId(_) => d.push(format!(
            "No key with this kid is in {}. Was the token signed by another key \
             (a local test key vs Gemini's)? For a local key use --key FILE or --jwks FILE.",
            input.jwt.keys.describe()
        )),
        VerifyError::JwtExpired => {
            if let Some(exp) = time("exp") {
                d.push(format!(
                    "It expired at {exp} ({}), {} s before now; 60 s of clock skew are allowed.",
                    rfc3339(exp),
                    input.now_secs - exp
                ));
            }
            d.push("To check an old capture, pass --now <unix seconds of the capture>.".into());
        }
        VerifyError::JwtNotYetValid => {
            let t = time("nbf").or_else(|| time("iat")).unwrap_or_default();
            d.push(format!(
                "It is valid only from {t} ({}), {} s after now: a clock is wrong.",
                rfc3339(t),
                t - input.now_secs
            ));
        }
        VerifyError::JwtClaimMismatch(claim) if *claim == "body digest" => d.push(
            "The token's body digest does not match the body: the body was changed after \
             signing (probably re-serialised); verify the raw bytes exactly as received."
                .into(),
        ),
        VerifyError::JwtClaimMismatch(claim) => d.push(format!(
            "The token's `{claim}` is {}, which is not the configured value (--audience / \
             WEBHOOK_JWT_AUDIENCE, --issuer / WEBHOOK_JWT_ISSUER).",
            claims
                .get(*claim)
                .map_or("missing".to_owned(), Value::to_string)
        )),
        VerifyError::JwksUnavailable(reason) => d.push(format!(
            "{} could not be fetched ({reason}); offline, use --jwks FILE or --key FILE.",
            input.jwt.keys.describe()
        )),
        VerifyError::DynamicNotConfigured => {}
        _ => d.push(
            "The token is not a valid RS256 JWT signed by a key of the JWKS (wrong key, or \
             the token was altered)."
                .into(),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use gemini_hooks::domain::verify::jwt::JwtRules;
    use gemini_hooks::domain::verify::standard::sign;
    use http::HeaderValue;

    use crate::commands::verify::capture::parse_header_text;
    use crate::commands::verify::keys::{JwtInput, Keys};
    use crate::support::jsonfmt;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NOW: i64 = 1_795_000_000;
    const BODY: &[u8] = br#"{"type":"batch.succeeded","data":{"id":"batches/x"}}"#;

    fn headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
        let text = format!("webhook-id: {id}\nwebhook-timestamp: {ts}\nwebhook-signature: {sig}\n");
        let mut map = HeaderMap::new();
        for (k, v) in parse_header_text(&text).unwrap() {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(&v).unwrap(),
            );
        }
        map
    }

    fn input(headers: HeaderMap, body: &[u8], secrets: Option<&str>) -> Input {
        Input {
            headers,
            body: body.to_vec(),
            secrets: secrets.map(str::to_owned),
            tolerance_secs: 300,
            now_secs: NOW,
            ignore_timestamp: false,
            jwt: JwtInput {
                rules: JwtRules::new(vec![]),
                keys: Keys::Url("http://127.0.0.1:1/jwks.json".into()),
            },
        }
    }

    async fn run_diag(i: &Input) -> Report {
        diagnose(i, reqwest::Client::new()).await
    }

    fn secret() -> SigningSecret {
        SigningSecret::parse(SECRET).unwrap()
    }

    fn text(r: &Report) -> String {
        format!("{}\n{}", r.headline, r.details.join("\n"))
    }

    #[tokio::test]
    async fn when_valid_should_say_which_secret_and_event() {
        let sig = sign(&secret(), "msg_1", NOW - 12, BODY);
        let other = SigningSecret::generate().to_whsec();
        let r = run_diag(&input(
            headers("msg_1", NOW - 12, &sig),
            BODY,
            Some(&format!("{other},{SECRET}")),
        ))
        .await;
        assert!(r.verified, "{}", text(&r));
        assert!(r.headline.contains("secret #2 of 2"), "{}", text(&r));
        assert!(text(&r).contains("12 s ago"));
        assert!(text(&r).contains("batch.succeeded, job batches/x"));
    }

    #[tokio::test]
    async fn when_header_missing_should_name_it_and_list_present_ones() {
        let sig = sign(&secret(), "msg_1", NOW, BODY);
        let mut h = headers("msg_1", NOW, &sig);
        h.remove(HEADER_TIMESTAMP);
        let r = run_diag(&input(h, BODY, Some(SECRET))).await;
        assert!(!r.verified);
        assert!(
            r.headline.contains("missing header `webhook-timestamp`"),
            "{}",
            text(&r)
        );
        assert!(text(&r).contains("Headers present: webhook-id, webhook-signature"));
        assert!(text(&r).contains("answers 400"));
    }

    #[tokio::test]
    async fn when_stale_should_say_how_far_outside_and_that_signature_is_fine() {
        let sig = sign(&secret(), "msg_1", NOW - 1_000, BODY);
        let r = run_diag(&input(
            headers("msg_1", NOW - 1_000, &sig),
            BODY,
            Some(SECRET),
        ))
        .await;
        let t = text(&r);
        assert!(!r.verified);
        assert!(t.contains("1000 s before now"), "{t}");
        assert!(t.contains("700 s too old"), "{t}");
        assert!(
            t.contains("Apart from the window, the signature is valid (secret #1 of 1)"),
            "{t}"
        );
        assert!(t.contains("answers 401"), "{t}");

        let mut ignore = input(headers("msg_1", NOW - 1_000, &sig), BODY, Some(SECRET));
        ignore.ignore_timestamp = true;
        assert!(run_diag(&ignore).await.verified);
    }

    #[tokio::test]
    async fn when_future_milliseconds_should_say_so() {
        let ts = NOW * 1000;
        let sig = sign(&secret(), "msg_1", ts, BODY);
        let t = text(&run_diag(&input(headers("msg_1", ts, &sig), BODY, Some(SECRET))).await);
        assert!(t.contains("too far in the future"), "{t}");
        assert!(t.contains("looks like milliseconds"), "{t}");
    }

    #[tokio::test]
    async fn when_body_pretty_printed_should_say_reserialised() {
        let sig = sign(&secret(), "msg_1", NOW, BODY);
        let pretty = jsonfmt::pretty(BODY, 2).unwrap();
        let t = text(&run_diag(&input(headers("msg_1", NOW, &sig), &pretty, Some(SECRET))).await);
        assert!(t.contains("body was probably re-serialised"), "{t}");
        assert!(t.contains("compact JSON"), "{t}");
    }

    #[tokio::test]
    async fn when_signed_with_raw_secret_text_should_name_the_wrong_format() {
        let wrong = SigningSecret::from_bytes(SECRET.as_bytes()).unwrap();
        let sig = sign(&wrong, "msg_1", NOW, BODY);
        let t = text(&run_diag(&input(headers("msg_1", NOW, &sig), BODY, Some(SECRET))).await);
        assert!(
            t.contains("secret #1 read as the whole text as raw bytes"),
            "{t}"
        );
    }

    #[tokio::test]
    async fn when_nothing_matches_should_list_what_was_tried() {
        let sig = sign(&SigningSecret::generate(), "msg_1", NOW, BODY);
        let t = text(
            &run_diag(&input(
                headers("msg_1", NOW, &sig),
                BODY,
                Some(&format!("{SECRET} changeme")),
            ))
            .await,
        );
        assert!(t.contains("NOT VERIFIED: no signature matched"), "{t}");
        assert!(t.contains("carries 1 `v1` entry"), "{t}");
        assert!(t.contains("Tried 2 secret(s): 1 as `whsec_`"), "{t}");
        assert!(t.contains("Secret #2 is not a `whsec_` secret"), "{t}");
        assert!(!t.contains(SECRET), "never print a secret");
        assert!(!t.contains(&sig[3..]), "never print a signature");
    }

    #[tokio::test]
    async fn when_no_v1_entry_should_list_versions() {
        let t = text(
            &run_diag(&input(
                headers("msg_1", NOW, "v1a,abc v2,def"),
                BODY,
                Some(SECRET),
            ))
            .await,
        );
        assert!(t.contains("version(s) v1a, v2"), "{t}");
    }

    #[test]
    fn token_contents_show_header_and_claims_but_never_the_signature() {
        let b64 = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let token = format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(r#"{"alg":"RS256","kid":"k1"}"#),
            b64(r#"{"aud":"my-aud","iat":1}"#)
        );
        let lines = token_contents(Some(&token), None).join("\n");
        assert!(
            lines.contains(r#"JWT header  {"alg":"RS256","kid":"k1"}"#),
            "{lines}"
        );
        assert!(
            lines.contains(r#"JWT claims  {"aud":"my-aud","iat":1}"#),
            "{lines}"
        );
        assert!(lines.contains("Its audience is my-aud"), "{lines}");
        assert!(!lines.contains("c2lnbmF0dXJl"), "{lines}");
        let none = token_contents(Some("x.y.z"), Some("a")).join("\n");
        assert!(none.contains("(not base64url JSON)"), "{none}");
        assert!(none.contains("no `aud` claim"), "{none}");
    }

    #[tokio::test]
    async fn when_no_secret_should_say_how_to_give_one() {
        let sig = sign(&secret(), "msg_1", NOW, BODY);
        let t = text(&run_diag(&input(headers("msg_1", NOW, &sig), BODY, None)).await);
        assert!(t.contains("--secret whsec_"), "{t}");
    }
}
