//! Why no static signature matched: the body as some tool would have re-serialised it, or a
//! secret read the wrong way, tried against the signature; else a list of what was tried.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use gemini_hooks::domain::verify::standard::{SigningSecret, StandardVerifier};

use super::capture::Input;
use super::diagnose::{GivenSecret, static_parts};
use crate::support::jsonfmt;

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

pub(super) fn explain_mismatch(input: &Input, given: &[GivenSecret], d: &mut Vec<String>) {
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
