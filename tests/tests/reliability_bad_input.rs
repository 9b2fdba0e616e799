//! Issue #6 item 3: a catalog of hostile or broken deliveries through the HTTP contract
//! (`gemini_hooks::usecases::http::handle`, the function the Lambda handler and `gemini-hooks dev` both
//! call) with the real DynamoDB and SQS adapters on moto. Every case must get its exact status
//! and error code, must not panic (each runs in its own task, so a panic is a failed join), must
//! not echo its signature, and none may leave state behind: no dedupe item, no queue message.
//!
//! `receive_moto.rs::bad_input_rows_of_the_contract` holds one case per row of the HTTP contract; this
//! catalog goes wide instead (≥ 40 cases per the issue; 100 here). The few deliveries through
//! the real binary that only the Lambda transport can see (invalid base64, comma-joined
//! headers of function URLs) are at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod reliability_common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gemini_hooks::config::ReceiveLimits;
use gemini_hooks::domain::verify::standard::{SigningSecret, StandardVerifier, sign};
use gemini_hooks::ports::clock::ManualClock;
use gemini_hooks::usecases::http::{HttpReply, handle};
use gemini_hooks::usecases::receive::Receiver;
use gemini_hooks::usecases::verify::WebhookVerifier;
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::delivery::{TEST_SECRET, function_url_event, test_secret};
use gemini_hooks_tests::jwt::{JwksServer, KEY_1_PEM, KEY_2_PEM, TestSigner};
use gemini_hooks_tests::runtime_api::{RuntimeApi, spawn_function};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use jsonwebtoken::{Algorithm, EncodingKey};
use reliability_common::{AwsStack, now_secs, url_reply};
use serde_json::{Value, json};
use sha2::Sha256;

const T0: i64 = 1_795_000_000;
const AUDIENCE: &str = "https://hooks.example.com";
const ISSUER: &str = "https://generativelanguage.googleapis.com";
const MAX_BODY: usize = 256 * 1024;

/// Raw header lines: repeats allowed, any bytes.
type Headers = Vec<(&'static str, Vec<u8>)>;

/// One catalog entry: raw header lines (repeats allowed, any bytes), body, expected answer.
struct Case {
    name: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    method: Method,
    status: u16,
    code: &'static str,
}

fn case(
    name: impl Into<String>,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: &[u8],
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name: name.into(),
        headers,
        body: body.to_vec(),
        method: Method::POST,
        status,
        code,
    }
}

fn b(s: impl AsRef<str>) -> Vec<u8> {
    s.as_ref().as_bytes().to_vec()
}

/// A valid event body for job `id`.
fn event_body(id: &str) -> Vec<u8> {
    json!({"type": "batch.succeeded", "version": "v1", "data": {"id": id}})
        .to_string()
        .into_bytes()
}

/// `v1,<HMAC>` over `{id}.{timestamp text}.{body}` with `key` (raw key bytes), so a test can
/// sign any timestamp *text* the way a sender with the secret could.
fn sign_raw(key: &[u8], id: &str, ts: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn test_key() -> Vec<u8> {
    STANDARD
        .decode(TEST_SECRET.trim_start_matches("whsec_"))
        .unwrap()
}

/// Standard headers signed over the exact timestamp text `ts`.
fn signed(id: &str, ts: &str, body: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("webhook-id", b(id)),
        ("webhook-timestamp", b(ts)),
        ("webhook-signature", b(sign_raw(&test_key(), id, ts, body))),
        ("content-type", b("application/json")),
    ]
}

fn replace(
    headers: &[(&'static str, Vec<u8>)],
    name: &str,
    value: Vec<u8>,
) -> Vec<(&'static str, Vec<u8>)> {
    headers
        .iter()
        .map(|(k, v)| (*k, if *k == name { value.clone() } else { v.clone() }))
        .collect()
}

fn without(headers: &[(&'static str, Vec<u8>)], name: &str) -> Vec<(&'static str, Vec<u8>)> {
    headers
        .iter()
        .filter(|(k, _)| *k != name)
        .cloned()
        .collect()
}

fn value_of(headers: &[(&'static str, Vec<u8>)], name: &str) -> Vec<u8> {
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn header_map(headers: &[(&'static str, Vec<u8>)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let value = HeaderValue::from_bytes(v)
            .unwrap_or_else(|e| panic!("test bug: header {k} is not a valid HTTP value: {e}"));
        map.append(HeaderName::from_static(k), value);
    }
    map
}

// ---- JWT builders --------------------------------------------------------------------------

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISSUER, "aud": AUDIENCE, "iat": T0, "exp": T0 + 300, "jti": "j1"});
    if let (Value::Object(c), Value::Object(e)) = (&mut c, extra) {
        c.extend(e);
    }
    c
}

/// A compact JWS with this exact header JSON, signed with `key` under `alg` (or an empty
/// signature when `key` is `None`).
fn raw_token(header: &Value, claims: &Value, key: Option<(&EncodingKey, Algorithm)>) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = match key {
        Some((key, alg)) => jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap(),
        None => String::new(),
    };
    format!("{message}.{signature}")
}

fn rsa_key(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

/// The PEM of key 1's *public* half: what an attacker can download from the JWKS.
fn public_pem_of_key_1() -> String {
    gemini_hooks_tests::jwt::public_key_pem(KEY_1_PEM)
}

fn jwt_headers(id: &str, token: String) -> Vec<(&'static str, Vec<u8>)> {
    vec![("webhook-id", b(id)), ("webhook-signature", b(token))]
}

/// Every hostile or broken delivery, with the answer the contract promises.
fn catalog(signer: &TestSigner) -> Vec<Case> {
    let t0 = T0.to_string();
    let body = event_body("bad");
    let good = |id: &str| signed(id, &t0, &body);
    let mut cases = Vec::new();

    // -- headers -----------------------------------------------------------------------------
    let g = good("h01");
    cases.push(case(
        "missing webhook-id",
        without(&g, "webhook-id"),
        &body,
        400,
        "missing_header",
    ));
    let g = good("h02");
    cases.push(case(
        "missing webhook-timestamp",
        without(&g, "webhook-timestamp"),
        &body,
        400,
        "missing_header",
    ));
    let g = good("h03");
    cases.push(case(
        "missing webhook-signature",
        without(&g, "webhook-signature"),
        &body,
        400,
        "missing_header",
    ));
    cases.push(case(
        "no headers at all",
        vec![],
        &body,
        400,
        "missing_header",
    ));
    for (n, name) in ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .enumerate()
    {
        let mut g = good(&format!("h0{}", 5 + n));
        g.push((name, value_of(&g, name)));
        cases.push(case(
            format!("{name} sent twice (two header lines)"),
            g,
            &body,
            400,
            "malformed_header",
        ));
    }
    let g = good("h08");
    cases.push(case(
        "webhook-id comma-joined by a proxy",
        replace(&g, "webhook-id", b("h08,h08")),
        &body,
        400,
        "malformed_header",
    ));
    let g = good("h09");
    cases.push(case(
        "webhook-timestamp comma-joined",
        replace(&g, "webhook-timestamp", b(format!("{t0}, {t0}"))),
        &body,
        400,
        "malformed_header",
    ));
    let g = good("h10");
    cases.push(case(
        "two garbage signatures comma-joined",
        replace(&g, "webhook-signature", b("v1,AAAA=, v1,BBBB=")),
        &body,
        401,
        "signature_mismatch",
    ));
    let long_id = format!("h11{}", "x".repeat(254));
    cases.push(case(
        "webhook-id of 257 bytes",
        signed(&long_id, &t0, &body),
        &body,
        400,
        "malformed_header",
    ));
    let huge_id = format!("h12{}", "x".repeat(8 * 1024));
    cases.push(case(
        "webhook-id of 8 KiB",
        signed(&huge_id, &t0, &body),
        &body,
        400,
        "malformed_header",
    ));
    let g = good("h13");
    let padded = format!(
        "{} v1,{}",
        String::from_utf8_lossy(&value_of(&g, "webhook-signature")),
        "A".repeat(9 * 1024)
    );
    cases.push(case(
        "signature header over 8 KiB (valid entry inside)",
        replace(&g, "webhook-signature", b(padded)),
        &body,
        400,
        "malformed_header",
    ));
    let g = good("h14");
    let many = format!(
        "{} {}",
        "v2,x ".repeat(32),
        String::from_utf8_lossy(&value_of(&g, "webhook-signature"))
    );
    cases.push(case(
        "33 signature entries (valid one last)",
        replace(&g, "webhook-signature", b(many)),
        &body,
        400,
        "malformed_header",
    ));
    cases.push(case(
        "webhook-id empty",
        signed("", &t0, &body),
        &body,
        400,
        "malformed_header",
    ));
    let g = good("h16");
    cases.push(case(
        "webhook-id only spaces",
        replace(&g, "webhook-id", b("   ")),
        &body,
        400,
        "malformed_header",
    ));
    cases.push(case(
        "webhook-id with a space inside",
        signed("h17 x", &t0, &body),
        &body,
        400,
        "malformed_header",
    ));
    cases.push(case(
        "webhook-id with a tab inside",
        signed("h18\tx", &t0, &body),
        &body,
        400,
        "malformed_header",
    ));
    let g = good("h19");
    cases.push(case(
        "webhook-id with non-ASCII bytes",
        replace(&g, "webhook-id", b"h19\xe9\xff".to_vec()),
        &body,
        400,
        "malformed_header",
    ));
    let g = good("h20");
    cases.push(case(
        "webhook-signature with non-ASCII bytes",
        replace(&g, "webhook-signature", b"v1,\xc3\xa9".to_vec()),
        &body,
        400,
        "malformed_header",
    ));
    let g = good("h21");
    cases.push(case(
        "webhook-timestamp with non-ASCII digits",
        replace(&g, "webhook-timestamp", "١٧٩٥".as_bytes().to_vec()),
        &body,
        400,
        "malformed_header",
    ));

    // -- timestamps (each signed over exactly the text sent) ------------------------------------
    let ts_cases: [(&str, String, u16, &str); 15] = [
        (
            "stale by 301 s",
            (T0 - 301).to_string(),
            401,
            "timestamp_too_old",
        ),
        (
            "stale by a day",
            (T0 - 86_400).to_string(),
            401,
            "timestamp_too_old",
        ),
        (
            "301 s in the future",
            (T0 + 301).to_string(),
            401,
            "timestamp_too_new",
        ),
        ("negative", "-1".into(), 400, "malformed_header"),
        ("i64::MIN", i64::MIN.to_string(), 400, "malformed_header"),
        (
            "larger than i64",
            "99999999999999999999".into(),
            400,
            "malformed_header",
        ),
        ("i64::MAX", i64::MAX.to_string(), 401, "timestamp_too_new"),
        ("zero (1970)", "0".into(), 401, "timestamp_too_old"),
        (
            "milliseconds instead of seconds",
            (T0 * 1000).to_string(),
            401,
            "timestamp_too_new",
        ),
        (
            "space inside",
            format!("{} {}", &t0[..4], &t0[4..]),
            400,
            "malformed_header",
        ),
        ("plus sign", format!("+{t0}"), 400, "malformed_header"),
        ("fraction", format!("{t0}.0"), 400, "malformed_header"),
        ("exponent", "1.795e9".into(), 400, "malformed_header"),
        ("hexadecimal", format!("0x{T0:X}"), 400, "malformed_header"),
        ("empty", String::new(), 400, "malformed_header"),
    ];
    for (n, (name, ts, status, code)) in ts_cases.into_iter().enumerate() {
        let id = format!("t{n:02}");
        cases.push(case(
            format!("timestamp {name}"),
            signed(&id, &ts, &body),
            &body,
            status,
            code,
        ));
    }

    // -- signatures --------------------------------------------------------------------------
    let valid =
        |id: &str| String::from_utf8_lossy(&value_of(&good(id), "webhook-signature")).into_owned();
    let b64_of = |sig: &str| sig.trim_start_matches("v1,").to_owned();
    let other_secret = SigningSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    let sig_cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "truncated to 8 characters",
            valid("s00")[..8].to_owned(),
            401,
            "signature_mismatch",
        ),
        (
            "only the version `v1,`",
            "v1,".into(),
            401,
            "signature_mismatch",
        ),
        (
            "garbage base64",
            "v1,!!!not*base64!!!".into(),
            401,
            "signature_mismatch",
        ),
        (
            "unknown version v2 with a valid MAC",
            format!("v2,{}", b64_of(&valid("s03"))),
            401,
            "no_supported_signature",
        ),
        (
            "asymmetric v1a entry",
            format!("v1a,{}", b64_of(&valid("s04"))),
            401,
            "no_supported_signature",
        ),
        (
            "upper-case V1",
            format!("V1,{}", b64_of(&valid("s05"))),
            401,
            "no_supported_signature",
        ),
        (
            "no comma at all",
            "deadbeefdeadbeef".into(),
            401,
            "no_supported_signature",
        ),
        (
            "wrong secret",
            sign(&other_secret, "s07", T0, &body),
            401,
            "signature_mismatch",
        ),
        (
            "signed for another webhook-id",
            valid("s08-other"),
            401,
            "signature_mismatch",
        ),
        (
            "signed for another timestamp",
            sign_raw(&test_key(), "s09", &(T0 - 1).to_string(), &body),
            401,
            "signature_mismatch",
        ),
        (
            "MAC of 31 bytes",
            format!("v1,{}", STANDARD.encode([7u8; 31])),
            401,
            "signature_mismatch",
        ),
        (
            "hex instead of base64",
            format!(
                "v1,{}",
                hex_of(&STANDARD.decode(b64_of(&valid("s11"))).unwrap())
            ),
            401,
            "signature_mismatch",
        ),
        (
            "MAC keyed with the whsec_ text instead of its bytes",
            sign_raw(TEST_SECRET.as_bytes(), "s12", &t0, &body),
            401,
            "signature_mismatch",
        ),
        ("empty", String::new(), 400, "malformed_header"),
        ("only whitespace", "   ".into(), 400, "malformed_header"),
        (
            "valid MAC with padding removed",
            valid("s15").trim_end_matches('=').to_owned(),
            401,
            "signature_mismatch",
        ),
    ];
    for (n, (name, sig, status, code)) in sig_cases.into_iter().enumerate() {
        let id = format!("s{n:02}");
        let headers = replace(&good(&id), "webhook-signature", b(sig));
        cases.push(case(
            format!("signature {name}"),
            headers,
            &body,
            status,
            code,
        ));
    }
    let pretty =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
    cases.push(case(
        "body re-serialised after signing",
        good("s16"),
        &pretty,
        401,
        "signature_mismatch",
    ));
    let mut flipped = body.clone();
    flipped[10] ^= 0x20;
    cases.push(case(
        "one body byte changed after signing",
        good("s17"),
        &flipped,
        401,
        "signature_mismatch",
    ));

    // -- bodies (correctly signed, so only the body is wrong) ----------------------------------
    let deep = |levels: usize| {
        format!(
            r#"{{"type":"batch.succeeded","data":{{"id":"d"}},"x":{}1{}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
        .into_bytes()
    };
    let body_cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("empty", vec![], 400, "invalid_event"),
        (
            "not UTF-8",
            vec![0xff, 0xfe, 0x7b, 0x00, 0x80],
            400,
            "invalid_event",
        ),
        ("plain text", b("hello, webhook"), 400, "invalid_event"),
        (
            "100 000 nested arrays",
            "[".repeat(100_000).into_bytes(),
            400,
            "invalid_event",
        ),
        (
            "100 000 nested objects",
            r#"{"a":"#.repeat(40_000).into_bytes(),
            400,
            "invalid_event",
        ),
        (
            "event nested 65 levels deep",
            deep(64),
            400,
            "invalid_event",
        ),
        (
            "event nested 127 levels deep (fits serde_json, not the envelope)",
            deep(126),
            400,
            "invalid_event",
        ),
        (
            "number beyond f64 (1e999999)",
            b(r#"{"type":"batch.succeeded","data":{"id":"n","n":1e999999}}"#),
            400,
            "invalid_event",
        ),
        (
            "negative number beyond f64",
            b(r#"{"type":"batch.succeeded","data":{"id":"n","n":-1e400}}"#),
            400,
            "invalid_event",
        ),
        (
            "type is a huge number",
            b(r#"{"type":123456789012345678901234567890,"data":{}}"#),
            400,
            "invalid_event",
        ),
        (
            "top-level array",
            b(r#"[{"type":"batch.succeeded"}]"#),
            400,
            "invalid_event",
        ),
        ("top-level null", b("null"), 400, "invalid_event"),
        (
            "top-level string",
            b(r#""batch.succeeded""#),
            400,
            "invalid_event",
        ),
        ("no type", b(r#"{"data":{"id":"x"}}"#), 400, "invalid_event"),
        (
            "type is an object",
            b(r#"{"type":{"name":"batch.succeeded"}}"#),
            400,
            "invalid_event",
        ),
        (
            "data is a string",
            b(r#"{"type":"batch.succeeded","data":"batches/1"}"#),
            400,
            "invalid_event",
        ),
        (
            "data is an array",
            b(r#"{"type":"batch.succeeded","data":[1]}"#),
            400,
            "invalid_event",
        ),
        (
            "version is a number",
            b(r#"{"type":"batch.succeeded","version":1}"#),
            400,
            "invalid_event",
        ),
        (
            "timestamp is a number",
            b(r#"{"type":"batch.succeeded","timestamp":1795000000}"#),
            400,
            "invalid_event",
        ),
        (
            "trailing garbage",
            b(r#"{"type":"batch.succeeded"} trailing"#),
            400,
            "invalid_event",
        ),
        (
            "byte-order mark",
            [&b"\xef\xbb\xbf"[..], &event_body("bom")].concat(),
            400,
            "invalid_event",
        ),
        (
            "lone surrogate escape",
            b(r#"{"type":"batch.succeeded\ud800"}"#),
            400,
            "invalid_event",
        ),
        (
            "raw NUL inside a string",
            b"{\"type\":\"batch\x00succeeded\"}".to_vec(),
            400,
            "invalid_event",
        ),
        (
            "truncated JSON",
            event_body("cut")[..20].to_vec(),
            400,
            "invalid_event",
        ),
        (
            "duplicate root objects",
            b(r#"{"type":"a"}{"type":"b"}"#),
            400,
            "invalid_event",
        ),
    ];
    for (n, (name, body, status, code)) in body_cases.into_iter().enumerate() {
        let id = format!("b{n:02}");
        cases.push(case(
            format!("body {name}"),
            signed(&id, &t0, &body),
            &body,
            status,
            code,
        ));
    }
    let big = format!(
        r#"{{"type":"batch.succeeded","data":{{"id":"big","pad":"{}"}}}}"#,
        "p".repeat(MAX_BODY)
    )
    .into_bytes();
    cases.push(case(
        "body over the size limit (signed)",
        signed("b99", &t0, &big),
        &big,
        413,
        "payload_too_large",
    ));

    // -- dynamic (JWT) deliveries --------------------------------------------------------------
    let key1 = rsa_key(KEY_1_PEM);
    let key2 = rsa_key(KEY_2_PEM);
    let rs256 = |kid: &str| json!({"alg": "RS256", "typ": "JWT", "kid": kid});
    let hs_key = EncodingKey::from_secret(public_pem_of_key_1().as_bytes());
    let other_body_digest = gemini_hooks::domain::verify::sha256_hex(b"another body");
    let jwt_cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "alg none, no signature",
            raw_token(
                &json!({"alg": "none", "kid": "kid-1"}),
                &claims(json!({})),
                None,
            ),
            401,
            "jwt_algorithm",
        ),
        (
            "alg None (case games)",
            raw_token(
                &json!({"alg": "None", "kid": "kid-1"}),
                &claims(json!({})),
                None,
            ),
            401,
            "jwt_algorithm",
        ),
        (
            "HS256 keyed with the RSA public key (key confusion)",
            raw_token(
                &json!({"alg": "HS256", "kid": "kid-1"}),
                &claims(json!({})),
                Some((&hs_key, Algorithm::HS256)),
            ),
            401,
            "jwt_algorithm",
        ),
        (
            "RS512 with the right key",
            raw_token(
                &json!({"alg": "RS512", "kid": "kid-1"}),
                &claims(json!({})),
                Some((&key1, Algorithm::RS512)),
            ),
            401,
            "jwt_algorithm",
        ),
        (
            "PS256 with the right key",
            raw_token(
                &json!({"alg": "PS256", "kid": "kid-1"}),
                &claims(json!({})),
                Some((&key1, Algorithm::PS256)),
            ),
            401,
            "jwt_algorithm",
        ),
        (
            "foreign key with the trusted kid",
            raw_token(
                &rs256("kid-1"),
                &claims(json!({})),
                Some((&key2, Algorithm::RS256)),
            ),
            401,
            "invalid_jwt",
        ),
        (
            "foreign key embedded as jwk header",
            raw_token(
                &json!({"alg": "RS256", "kid": "kid-1", "jwk": TestSigner::new("kid-1", KEY_2_PEM).jwk()}),
                &claims(json!({})),
                Some((&key2, Algorithm::RS256)),
            ),
            401,
            "invalid_jwt",
        ),
        (
            "jku header pointing elsewhere",
            raw_token(
                &json!({"alg": "RS256", "kid": "kid-evil", "jku": "http://127.0.0.1:9/evil.json"}),
                &claims(json!({})),
                Some((&key2, Algorithm::RS256)),
            ),
            401,
            "jwt_unknown_kid",
        ),
        (
            "unknown kid",
            raw_token(
                &rs256("kid-unknown"),
                &claims(json!({})),
                Some((&key2, Algorithm::RS256)),
            ),
            401,
            "jwt_unknown_kid",
        ),
        (
            "no kid",
            raw_token(
                &json!({"alg": "RS256"}),
                &claims(json!({})),
                Some((&key1, Algorithm::RS256)),
            ),
            401,
            "invalid_jwt",
        ),
        (
            "crit header",
            raw_token(
                &json!({"alg": "RS256", "kid": "kid-1", "crit": ["exp"]}),
                &claims(json!({})),
                Some((&key1, Algorithm::RS256)),
            ),
            401,
            "invalid_jwt",
        ),
        (
            "signature stripped",
            {
                let t = signer.sign(&claims(json!({})));
                format!("{}.", &t[..t.rfind('.').unwrap()])
            },
            401,
            "invalid_jwt",
        ),
        (
            "signature of another token",
            {
                let a = signer.sign(&claims(json!({})));
                let c = signer.sign(&claims(json!({"jti": "other"})));
                format!(
                    "{}{}",
                    &a[..a.rfind('.').unwrap()],
                    &c[c.rfind('.').unwrap()..]
                )
            },
            401,
            "invalid_jwt",
        ),
        (
            "expired",
            signer.sign(&claims(json!({"iat": T0 - 900, "exp": T0 - 600}))),
            401,
            "jwt_expired",
        ),
        (
            "not valid yet (nbf)",
            signer.sign(&claims(json!({"nbf": T0 + 3600}))),
            401,
            "jwt_not_yet_valid",
        ),
        (
            "issued in the future (iat)",
            signer.sign(&claims(json!({"iat": T0 + 3600, "exp": T0 + 7200}))),
            401,
            "jwt_not_yet_valid",
        ),
        (
            "no exp",
            signer.sign(&json!({"iss": ISSUER, "aud": AUDIENCE, "iat": T0})),
            401,
            "invalid_jwt",
        ),
        (
            "exp is a string",
            signer.sign(&claims(json!({"exp": "never"}))),
            401,
            "invalid_jwt",
        ),
        (
            "wrong audience",
            signer.sign(&claims(json!({"aud": "https://evil.example"}))),
            401,
            "jwt_claim_mismatch",
        ),
        (
            "audience list without ours",
            signer.sign(&claims(
                json!({"aud": ["https://a.example", "https://b.example"]}),
            )),
            401,
            "jwt_claim_mismatch",
        ),
        (
            "wrong issuer",
            signer.sign(&claims(json!({"iss": "https://evil.example"}))),
            401,
            "jwt_claim_mismatch",
        ),
        (
            "body digest claim of another body",
            signer.sign(&claims(json!({"body_sha256": other_body_digest}))),
            401,
            "jwt_claim_mismatch",
        ),
        (
            "header is not base64url JSON",
            format!(
                "e30.{}.c2ln",
                URL_SAFE_NO_PAD.encode(claims(json!({})).to_string())
            ),
            401,
            "invalid_jwt",
        ),
        (
            "token over 16 KiB",
            signer.sign(&claims(json!({"pad": "p".repeat(17 * 1024)}))),
            400,
            "malformed_header",
        ),
    ];
    for (n, (name, token, status, code)) in jwt_cases.into_iter().enumerate() {
        cases.push(case(
            format!("JWT {name}"),
            jwt_headers(&format!("j{n:02}"), token),
            &body,
            status,
            code,
        ));
    }
    let verified = signer.sign(&claims(json!({"jti": "j99"})));
    cases.push(case(
        "JWT valid but the body is not an event",
        jwt_headers("j99", verified),
        b"<xml/>",
        400,
        "invalid_event",
    ));

    // -- method -----------------------------------------------------------------------------
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let mut c = case(
            format!("method {method}"),
            good("m00"),
            &body,
            405,
            "method_not_allowed",
        );
        c.method = method;
        cases.push(c);
    }
    cases
}

struct Harness {
    aws: AwsStack,
    receiver: Receiver,
    signer: TestSigner,
    _jwks: JwksServer,
}

async fn harness() -> Harness {
    let aws = AwsStack::new("bad", 30).await;
    let signer = TestSigner::new("kid-1", KEY_1_PEM);
    let jwks = JwksServer::start(&[&signer]).await;
    let mut jwt = gemini_hooks_tests::jwt::http_dynamic(jwks.url(), &[AUDIENCE]);
    jwt.rules.issuer = Some(ISSUER.into());
    let verifier = WebhookVerifier::new(
        Some(StandardVerifier::new(vec![test_secret()], 300)),
        Some(jwt),
    );
    let receiver = aws
        .receiver(
            Arc::new(verifier),
            Arc::new(ManualClock::at_secs(T0)),
            ReceiveLimits {
                max_body_bytes: MAX_BODY,
                retention_hours: 168,
            },
        )
        .await;
    Harness {
        aws,
        receiver,
        signer,
        _jwks: jwks,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_delivery_gets_its_4xx_and_changes_nothing() {
    let h = harness().await;
    let cases = catalog(&h.signer);
    assert!(cases.len() >= 40, "the issue asks for at least 40 cases");
    let mut failures = Vec::new();
    for c in &cases {
        let receiver = h.receiver.clone();
        let (method, headers, body) = (c.method.clone(), header_map(&c.headers), c.body.clone());
        let task =
            tokio::spawn(async move { handle(&receiver, &method, &headers, &body, None).await });
        let reply: HttpReply = match task.await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: PANICKED: {e}", c.name));
                continue;
            }
        };
        let answer: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        if reply.status != c.status || answer["error"] != c.code {
            failures.push(format!(
                "{}: expected {} {}, got {} {}",
                c.name, c.status, c.code, reply.status, reply.body
            ));
        }
        let signature =
            String::from_utf8_lossy(&value_of(&c.headers, "webhook-signature")).into_owned();
        if signature.trim().len() > 16 && reply.body.contains(signature.trim()) {
            failures.push(format!("{}: the answer echoes the signature", c.name));
        }
        if reply.body.len() > 1024 {
            failures.push(format!(
                "{}: answer of {} bytes echoes input",
                c.name,
                reply.body.len()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // No state change: not one dedupe item, not one message.
    let items = h.aws.dedupe_items().await;
    assert!(items.is_empty(), "dedupe items left behind: {items:?}");
    assert_eq!(h.aws.queue_depth().await, 0, "messages were enqueued");
    eprintln!(
        "bad-input catalog: {} cases, all answered as specified, no state change",
        cases.len()
    );
}

/// Control: the catalog's builders make deliveries that *are* accepted when nothing is wrong,
/// so a rejection above is caused by the one defect each case introduces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_builders_make_valid_deliveries_when_nothing_is_broken() {
    let h = harness().await;
    let t0 = T0.to_string();
    let body = event_body("ok");
    let token = h.signer.sign(&claims(json!({"jti": "ok"})));
    let leading_zero = format!("0{t0}");
    let good_sig = String::from_utf8_lossy(&value_of(
        &signed("ok-comma", &t0, &body),
        "webhook-signature",
    ))
    .into_owned();
    let controls: Vec<(&str, Headers)> = vec![
        ("standard", signed("ok-std", &t0, &body)),
        (
            "timestamp with a leading zero, signed as sent",
            signed("ok-zero", &leading_zero, &body),
        ),
        (
            "timestamp 300 s old (edge of the window)",
            signed("ok-edge", &(T0 - 300).to_string(), &body),
        ),
        (
            "signature comma-joined with a junk entry (function URL joining)",
            replace(
                &signed("ok-comma", &t0, &body),
                "webhook-signature",
                b(format!("v1,AAAA=, {good_sig}")),
            ),
        ),
        ("JWT", jwt_headers("ok-jwt", token)),
    ];
    for (name, headers) in &controls {
        let reply = handle(
            &h.receiver,
            &Method::POST,
            &header_map(headers),
            &body,
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
    }
    // One claim per delivery, plus the JWT's single-use claim on its token.
    assert_eq!(h.aws.dedupe_items().await.len(), controls.len() + 1);
    assert_eq!(h.aws.queue_depth().await, controls.len() as u64);
}

/// What only the Lambda transport can receive: a body flagged base64 that is not, and a body
/// signed over its base64 text instead of its bytes. `lambda_http` panics on invalid base64
/// (`lambda-events` `Body::from_maybe_encoded`); the runtime turns that into an invocation error, which a function
/// URL answers with 502, so the sender retries and nothing is stored. The process must survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_binary_survives_transport_level_garbage() {
    let aws = AwsStack::new("badbin", 30).await;
    let api = RuntimeApi::start().await;
    let _function = spawn_function(
        &bin_path("receiver"),
        &api,
        &[
            ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
            ("DEDUPE_TABLE", aws.table.clone()),
            ("QUEUE_URL", aws.queue.url.clone()),
        ],
    )
    .await;
    let t = now_secs();
    let body = event_body("bin");
    let headers: Vec<(String, String)> = signed("bin-1", &t.to_string(), &body)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), String::from_utf8(v).unwrap()))
        .collect();
    let deadline = Duration::from_secs(20);

    let mut event = function_url_event("POST", &headers, &body, true);
    event["body"] = json!("!!! this is not base64 !!!");
    let outcome = api.invoke(event, deadline).await;
    match &outcome {
        Ok(response) => {
            let (status, _, _) = url_reply(response);
            assert!((400..500).contains(&status), "{response}");
        }
        Err(e) => assert!(
            matches!(
                e,
                gemini_hooks_tests::runtime_api::InvokeError::FunctionError(_)
            ),
            "{e}"
        ),
    }

    // Signed over the base64 text, delivered as bytes: a signature mismatch, not a crash.
    let encoded = STANDARD.encode(&body);
    let wrong: Vec<(String, String)> = signed("bin-2", &t.to_string(), encoded.as_bytes())
        .into_iter()
        .map(|(k, v)| (k.to_owned(), String::from_utf8(v).unwrap()))
        .collect();
    let response = api
        .invoke(function_url_event("POST", &wrong, &body, true), deadline)
        .await
        .unwrap();
    let (status, answer, _) = url_reply(&response);
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("signature_mismatch")),
        "{response}"
    );

    // Function URLs join repeated headers with commas: a doubled id is refused.
    let mut joined = headers.clone();
    joined[0].1 = "bin-1,bin-1".to_owned();
    let response = api
        .invoke(function_url_event("POST", &joined, &body, false), deadline)
        .await
        .unwrap();
    let (status, answer, _) = url_reply(&response);
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("malformed_header")),
        "{response}"
    );

    assert!(aws.dedupe_items().await.is_empty());
    assert_eq!(aws.queue_depth().await, 0);

    // The process is still serving: a valid delivery is accepted afterwards.
    let response = api
        .invoke(function_url_event("POST", &headers, &body, false), deadline)
        .await
        .unwrap();
    assert_eq!(url_reply(&response).0, 200, "{response}");
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
