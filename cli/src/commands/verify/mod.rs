//! `gemini-hooks verify`: verify a captured delivery offline and explain, in plain words, the
//! first check that fails.
//!
//! The verdict is the library's own ([`WebhookVerifier`], the same code as the receiver); this
//! module only adds the diagnosis around it: which header is missing, how far outside the window
//! the timestamp is, which secret formats were tried, whether the body was re-serialised.

use std::io::Write;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use gemini_hooks::adapters::jwks::{DEFAULT_JWKS_URL, HttpJwks, JwksSettings, StaticJwks};
use gemini_hooks::config::ReceiveLimits;
use gemini_hooks::domain::event::Event;
use gemini_hooks::domain::verify::jwt::JwtRules;
use gemini_hooks::domain::verify::jwt::looks_like_jwt;
use gemini_hooks::domain::verify::standard::{SigningSecret, StandardVerifier};
use gemini_hooks::domain::verify::{
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, VerifiedDelivery, VerifyError, single_header,
};
use gemini_hooks::ports::keys::KeySource;
use gemini_hooks::usecases::http::reply;
use gemini_hooks::usecases::receive::ReceiveError;
use gemini_hooks::usecases::verify::DynamicVerifier;
use gemini_hooks::usecases::verify::WebhookVerifier;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::support::error::{CliError, EXIT_FAILURE};
use crate::support::jsonfmt;
use crate::support::keys::public_jwk_from_pem;
use crate::support::output::line;
use crate::support::util::{now_secs, read_input, rfc3339};

mod args;

pub use args::{LONG_ABOUT, VerifyArgs};

/// Parses captured headers: `Name: value` lines (a leading request or status line, `#`
/// comments and anything after the first blank line are ignored), or a JSON object.
pub fn parse_header_text(text: &str) -> Result<Vec<(String, String)>, CliError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.starts_with('{') {
        let map: serde_json::Map<String, Value> = serde_json::from_str(trimmed)
            .map_err(|e| CliError::Usage(format!("headers file is not a JSON object: {e}")))?;
        let mut pairs = Vec::new();
        for (name, value) in map {
            match value {
                Value::String(s) => pairs.push((name, s)),
                Value::Array(items) => {
                    for item in items {
                        pairs.push((name.clone(), plain(&item)));
                    }
                }
                other => pairs.push((name, plain(&other))),
            }
        }
        return Ok(pairs);
    }
    let mut pairs = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let l = raw.trim_end_matches('\r');
        if l.trim().is_empty() {
            if pairs.is_empty() {
                continue;
            }
            break;
        }
        if l.trim_start().starts_with('#') {
            continue;
        }
        if pairs.is_empty() && (l.contains(" HTTP/") || l.starts_with("HTTP/")) {
            continue;
        }
        let Some((name, value)) = l.split_once(':') else {
            return Err(CliError::Usage(format!(
                "headers file line {}: expected `Name: value`",
                n + 1
            )));
        };
        pairs.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(pairs)
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Builds the header map from the file, then `-H` flags, then the dedicated flags (later wins).
fn collect_headers(args: &VerifyArgs) -> Result<HeaderMap, CliError> {
    let mut pairs = Vec::new();
    if let Some(path) = &args.headers {
        let bytes = read_input(path)?;
        pairs.extend(parse_header_text(&String::from_utf8_lossy(&bytes))?);
    }
    let mut overrides = Vec::new();
    for h in &args.header {
        let (name, value) = h.split_once(':').ok_or_else(|| {
            CliError::Usage(format!(
                "--header expects `Name: value`, got `{}`",
                h.trim()
            ))
        })?;
        overrides.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    for (name, value) in [
        (HEADER_ID, &args.id),
        (HEADER_TIMESTAMP, &args.timestamp),
        (HEADER_SIGNATURE, &args.signature),
    ] {
        if let Some(v) = value {
            overrides.push((name.to_owned(), v.clone()));
        }
    }
    let mut map = HeaderMap::new();
    for (name, value, replace) in pairs
        .into_iter()
        .map(|(n, v)| (n, v, false))
        .chain(overrides.into_iter().map(|(n, v)| (n, v, true)))
    {
        let header = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| CliError::Usage(format!("`{name}` is not a valid header name")))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| CliError::Usage(format!("the value of header `{name}` is not valid")))?;
        if replace {
            map.insert(header, value);
        } else {
            map.append(header, value);
        }
    }
    Ok(map)
}

/// A secret as given, with the key its `whsec_` reading yields (if any).
struct GivenSecret {
    text: String,
    standard: Option<SigningSecret>,
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

/// Everything `diagnose` needs; built from the arguments (or by tests).
pub struct Input {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub secrets: Option<String>,
    pub tolerance_secs: u64,
    pub now_secs: i64,
    pub ignore_timestamp: bool,
    pub jwt: JwtInput,
}

/// How dynamic deliveries are checked: the claims policy and where the keys are.
#[derive(Debug, Clone)]
pub struct JwtInput {
    pub rules: JwtRules,
    pub keys: Keys,
}

/// Where `verify` finds the JWT keys.
#[derive(Debug, Clone)]
pub enum Keys {
    /// A JWKS endpoint (`--jwks-url`, default Gemini's).
    Url(String),
    /// A fixed set read from a file (`--jwks FILE`, `--key FILE`): no network.
    Static(StaticJwks),
}

impl Keys {
    fn describe(&self) -> String {
        match self {
            Self::Url(url) => format!("the JWKS at {url}"),
            Self::Static(set) => set.describe(),
        }
    }
}

/// Verifies and explains.
pub async fn diagnose(input: &Input, http: reqwest::Client) -> Report {
    let given = given_secrets(input.secrets.as_deref());
    let usable: Vec<SigningSecret> = given.iter().filter_map(|g| g.standard.clone()).collect();
    let standard =
        (!usable.is_empty()).then(|| StandardVerifier::new(usable.clone(), input.tolerance_secs));
    let keys: Arc<dyn KeySource> = match &input.jwt.keys {
        Keys::Url(url) => Arc::new(HttpJwks::new(JwksSettings::new(url.clone()), http)),
        Keys::Static(set) => Arc::new(set.clone()),
    };
    let verifier = WebhookVerifier::new(
        standard,
        Some(DynamicVerifier {
            rules: input.jwt.rules.clone(),
            keys,
        }),
    );

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

fn static_parts(input: &Input) -> Option<(String, String, String)> {
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

/// Ways a key can be (mis)read from a secret's text.
fn key_readings(text: &str) -> Vec<(&'static str, Vec<u8>)> {
    let bare = text.strip_prefix("whsec_").unwrap_or(text);
    let mut readings = vec![
        ("the whole text as raw bytes", text.as_bytes().to_vec()),
        (
            "the part after `whsec_` as raw bytes",
            bare.as_bytes().to_vec(),
        ),
    ];
    if let Ok(bytes) = URL_SAFE_NO_PAD
        .decode(bare.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(bare))
    {
        readings.push(("URL-safe base64 instead of standard base64", bytes));
    }
    readings.dedup_by(|a, b| a.1 == b.1);
    readings
}

/// Body variants a tool could have produced from the bytes the sender signed.
fn body_variants(body: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    let mut push = |name, bytes: Option<Vec<u8>>| {
        if let Some(b) = bytes.filter(|b| b.as_slice() != body) {
            v.push((name, b));
        }
    };
    push("re-serialised as compact JSON", jsonfmt::compact(body));
    push(
        "re-serialised with `, ` and `: ` separators (Python's json.dumps)",
        jsonfmt::spaced(body),
    );
    push(
        "re-serialised pretty-printed with 2 spaces",
        jsonfmt::pretty(body, 2),
    );
    push(
        "re-serialised pretty-printed with 4 spaces",
        jsonfmt::pretty(body, 4),
    );
    push(
        "without its trailing newline",
        body.strip_suffix(b"\n")
            .map(|b| b.strip_suffix(b"\r").unwrap_or(b).to_vec()),
    );
    push("with a trailing newline", Some([body, b"\n"].concat()));
    push(
        "with CRLF line ends turned into LF",
        body.windows(2).any(|w| w == b"\r\n").then(|| {
            String::from_utf8_lossy(body)
                .replace("\r\n", "\n")
                .into_bytes()
        }),
    );
    v
}

fn explain_mismatch(input: &Input, given: &[GivenSecret], d: &mut Vec<String>) {
    let Some((id, ts, sig)) = static_parts(input) else {
        return;
    };
    let entries = sig
        .split_ascii_whitespace()
        .filter(|e| e.starts_with("v1,"))
        .count();
    let check = |key: &SigningSecret, body: &[u8]| {
        StandardVerifier::new(vec![key.clone()], 0)
            .verify_ignoring_timestamp(&id, &ts, &sig, body)
            .is_ok()
    };

    // 1. The body changed after signing (the most common cause): try re-serialisations.
    for (what, variant) in body_variants(&input.body) {
        for (i, g) in given.iter().enumerate() {
            if g.standard.as_ref().is_some_and(|k| check(k, &variant)) {
                d.push(format!(
                    "The body was probably re-serialised: the signature matches secret #{} \
                     over the body {what}, not over the bytes given. Something between the \
                     sender and this capture (a web framework parsing JSON, a proxy, a copy \
                     from a viewer) changed the bytes; verify the raw body exactly as received.",
                    i + 1
                ));
                return;
            }
        }
    }
    // 2. The signer read the secret wrongly.
    for (i, g) in given.iter().enumerate() {
        for (what, bytes) in key_readings(&g.text) {
            let Ok(key) = SigningSecret::from_bytes(&bytes) else {
                continue;
            };
            if check(&key, &input.body) {
                d.push(format!(
                    "The signature matches secret #{} read as {what}. Gemini (and this \
                     receiver) use the base64-decoded bytes after `whsec_`: whoever signed \
                     this read the secret wrongly. A real Gemini delivery never does.",
                    i + 1
                ));
                return;
            }
        }
    }
    // 3. Nothing matched: say exactly what was tried.
    let standard = given.iter().filter(|g| g.standard.is_some()).count();
    d.push(format!(
        "The signature header carries {entries} `v1` entr{}. Tried {} secret(s): {standard} as \
         `whsec_` + standard base64 (the correct reading); each also as raw text, without the \
         prefix, and as URL-safe base64; and the body as given, compact, spaced and \
         pretty-printed, with and without a trailing newline.",
        if entries == 1 { "y" } else { "ies" },
        given.len()
    ));
    for (i, g) in given.iter().enumerate() {
        if g.standard.is_none() {
            d.push(format!(
                "Secret #{} is not a `whsec_` secret with a base64 key of at least 16 bytes.",
                i + 1
            ));
        }
    }
    d.push(
        "Likely causes: the secret belongs to another webhook or was rotated (during rotation \
         configure both, comma separated), or the webhook-id, webhook-timestamp or body were \
         changed in transit."
            .into(),
    );
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

fn jwt_input(args: &VerifyArgs) -> Result<JwtInput, CliError> {
    let keys = if let Some(path) = &args.jwks {
        let text = read_input(path)?;
        let is_jwks = serde_json::from_slice::<Value>(&text)
            .ok()
            .is_some_and(|v| v.get("keys").is_some_and(Value::is_array));
        if !is_jwks {
            return Err(CliError::Usage(format!(
                "{}: not a JWKS (`{{\"keys\": [...]}}`)",
                path.display()
            )));
        }
        Keys::Static(
            StaticJwks::from_json(&text, format!("the JWKS file {}", path.display()))
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?,
        )
    } else if let Some(path) = &args.key {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
        let jwk = public_jwk_from_pem(&text)
            .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
        let set = serde_json::json!({ "keys": [jwk] }).to_string();
        Keys::Static(
            StaticJwks::from_json(set.as_bytes(), format!("the key {}", path.display()))
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?,
        )
    } else {
        Keys::Url(
            args.jwks_url
                .clone()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_JWKS_URL.to_owned()),
        )
    };
    let audiences = args
        .audience
        .iter()
        .flat_map(|a| a.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let mut rules = JwtRules::new(audiences);
    rules.issuer = args.issuer.clone().filter(|a| !a.trim().is_empty());
    rules.future_tolerance_secs = args.tolerance;
    Ok(JwtInput { rules, keys })
}

/// Runs `gemini-hooks verify`; returns whether the delivery verified.
pub async fn run(args: VerifyArgs, out: &mut dyn Write) -> Result<bool, CliError> {
    let headers = collect_headers(&args)?;
    let body = read_input(&args.body)?;
    let limit = ReceiveLimits::default().max_body_bytes;
    if body.len() > limit {
        line(
            out,
            &format!(
                "note: the body is {} bytes; the receiver's default limit is {limit} \
                 (WEBHOOK_MAX_BODY_BYTES) and would answer 413.",
                body.len()
            ),
        )?;
    }
    let input = Input {
        headers,
        body,
        secrets: args.secret.clone(),
        tolerance_secs: args.tolerance,
        now_secs: args.now.unwrap_or_else(now_secs),
        ignore_timestamp: args.ignore_timestamp,
        jwt: jwt_input(&args)?,
    };
    let http = gemini_hooks::wiring::http_client()
        .map_err(|e| CliError::Failed(format!("cannot build the HTTP client: {e}")))?;
    let report = diagnose(&input, http).await;
    line(out, &report.headline)?;
    for d in &report.details {
        line(out, &format!("  {d}"))?;
    }
    Ok(report.verified)
}

/// Exit status for a finished verification.
pub fn exit_status(verified: bool) -> u8 {
    if verified { 0 } else { EXIT_FAILURE }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use gemini_hooks::domain::verify::standard::sign;

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

    #[test]
    fn header_file_skips_request_line_comments_and_body() {
        let pairs = parse_header_text(
            "POST /hook HTTP/1.1\r\n# captured\r\nWebhook-Id: a\r\nX: b:c\r\n\r\n{\"body\": 1}\n",
        )
        .unwrap();
        assert_eq!(
            pairs,
            vec![
                ("Webhook-Id".into(), "a".into()),
                ("X".into(), "b:c".into())
            ]
        );
        let json = parse_header_text(r#"{"webhook-id": "a", "n": 5}"#).unwrap();
        assert!(json.contains(&("n".into(), "5".into())));
        assert!(parse_header_text("no colon here").is_err());
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
