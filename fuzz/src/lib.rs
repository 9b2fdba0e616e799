//! The checks behind the fuzz targets, one function per target, so they can also be replayed
//! from a plain binary or test. Each function must never panic on any input except through the
//! assertions below, which state properties the parsers promise.

use std::sync::OnceLock;

use gemini_hooks::domain::envelope::{EventSummary, QueueEnvelope, SignatureMode, WebhookEnvelope};
use gemini_hooks::domain::event::Event;
use gemini_hooks::domain::results::{Line, LineSplitter, parse_line, record_from_line};
use gemini_hooks::domain::verify::standard::{
    MAX_SIGNATURE_ENTRIES, MAX_SIGNATURE_HEADER_BYTES, SigningSecret, StandardVerifier, sign,
};
use gemini_hooks::domain::verify::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use gemini_hooks::usecases::verify::WebhookVerifier;
use http::{HeaderMap, HeaderValue};
use serde_json::Value;

/// Fixed "now" for every check (no wall clock, so a crash always reproduces).
pub const NOW: i64 = 1_795_000_000;
const TOLERANCE: u64 = 300;
/// The first Standard Webhooks reference secret.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn secret() -> &'static SigningSecret {
    static S: OnceLock<SigningSecret> = OnceLock::new();
    S.get_or_init(|| match SigningSecret::parse(SECRET) {
        Ok(s) => s,
        Err(e) => panic!("fixture secret: {e}"),
    })
}

fn standard() -> &'static StandardVerifier {
    static V: OnceLock<StandardVerifier> = OnceLock::new();
    V.get_or_init(|| StandardVerifier::new(vec![secret().clone()], TOLERANCE))
}

fn webhook_verifier() -> &'static WebhookVerifier {
    static V: OnceLock<WebhookVerifier> = OnceLock::new();
    V.get_or_init(|| WebhookVerifier::new(Some(standard().clone()), None))
}

/// Input: `id NUL timestamp NUL signature-header NUL body`.
///
/// Properties: nothing panics (parsing, header checks, HMAC); a delivery signed with the secret
/// verifies whatever junk entries precede its signature, as long as the header stays within
/// the documented bounds; a flipped body bit never verifies; the timestamp window holds.
pub fn signature(data: &[u8]) {
    let mut parts = data.splitn(4, |b| *b == 0);
    let id = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let ts = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let sig = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();
    let v = standard();

    // Arbitrary text straight into the verifier.
    let _ = v.verify(&id, &ts, &sig, body, NOW);
    let _ = v.verify_ignoring_timestamp(&id, &ts, &sig, body);

    // The same through the header layer (single-value checks, id rules, JWT-shape dispatch).
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (HEADER_ID, &id),
        (HEADER_TIMESTAMP, &ts),
        (HEADER_SIGNATURE, &sig),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    let _ = futures::executor::block_on(webhook_verifier().verify(&headers, body, NOW));

    // A genuine signature appended to arbitrary entries.
    let Ok(t) = ts.parse::<i64>() else { return };
    if id.is_empty() {
        return;
    }
    let canonical = t.to_string();
    let good = sign(secret(), &id, t, body);
    let header = format!("{sig} {good}");
    let within = header.len() <= MAX_SIGNATURE_HEADER_BYTES
        && header.split_ascii_whitespace().count() <= MAX_SIGNATURE_ENTRIES;
    let verdict = v.verify_ignoring_timestamp(&id, &canonical, &header, body);
    assert_eq!(verdict.is_ok(), within, "{verdict:?}");
    if within {
        assert_eq!(verdict, Ok(t));
    }

    // The window, both directions, pre-1970 refused.
    let in_window = t >= 0 && NOW.abs_diff(t) <= TOLERANCE;
    assert_eq!(
        v.verify(&id, &canonical, &good, body, NOW).is_ok(),
        in_window
    );

    // Any single changed body bit fails.
    if let Some(first) = body.first() {
        let mut tampered = body.to_vec();
        tampered[0] = first ^ 0x01;
        assert!(
            v.verify_ignoring_timestamp(&id, &canonical, &good, &tampered)
                .is_err()
        );
    }
}

/// Input: a webhook body.
///
/// Properties: nothing panics; whatever the receiver accepts becomes a queue envelope that the
/// consumer parses back to the same envelope and the same event; the same holds when the bytes
/// are a JSON object used as verified JWT claims.
pub fn event(data: &[u8]) {
    if let Ok((event, raw)) = Event::parse(data, None) {
        round_trip(&event, raw);
    }
    if let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(data)
        && let Ok((event, raw)) = Event::parse(b"", Some(&claims))
    {
        round_trip(&event, raw);
    }
}

fn round_trip(event: &Event, raw: Value) {
    let envelope = QueueEnvelope::Webhook(WebhookEnvelope {
        webhook_id: "msg_fuzz".to_owned(),
        received_at_ms: NOW * 1000,
        signature_mode: SignatureMode::Static,
        bound: true,
        event: EventSummary::from(event),
        raw_event: raw,
        user_metadata: event.user_metadata.clone(),
    });
    let message = match envelope.to_message() {
        Ok(m) => m,
        Err(e) => panic!("an accepted event must serialise: {e}"),
    };
    let back = match QueueEnvelope::from_body(&message.body) {
        Ok(b) => b,
        Err(e) => panic!("the consumer must read what the receiver queued: {e}"),
    };
    assert_eq!(back, envelope);
    if let QueueEnvelope::Webhook(w) = back {
        assert_eq!(&w.event(), event);
    }
}

/// Input: two configuration bytes (chunk size, line limit), then a results file.
///
/// Properties: nothing panics; cutting the stream into chunks of any size yields exactly the
/// lines (numbers, offsets, bytes, too-long flags) of reading it whole; offsets and numbers only
/// grow, the final offset is the input length; every line's bytes are what the input holds
/// there; every line becomes a record with a non-empty key and its own line number.
pub fn results(data: &[u8]) {
    let (config, input) = data.split_at(data.len().min(2));
    let chunk = 1 + usize::from(config.first().copied().unwrap_or(0));
    let max = match config.get(1) {
        Some(b) if b & 1 == 1 => 1 + usize::from(*b),
        _ => 1 << 20,
    };
    let whole = split(input, input.len().max(1), max);
    let chunked = split(input, chunk, max);
    assert_eq!(whole, chunked, "chunking changed the lines (chunk {chunk})");

    let (lines, offset, count) = whole;
    assert_eq!(offset, input.len() as u64);
    let (mut last_end, mut last_no) = (0u64, 0u64);
    for line in &lines {
        assert!(line.end_offset > last_end);
        assert!(line.number > last_no && line.number <= count);
        (last_end, last_no) = (line.end_offset, line.number);
        let end = usize::try_from(line.end_offset).unwrap_or(usize::MAX);
        let upto = &input[..end.min(input.len())];
        // The line ending: `\n`, `\r\n`, or at the very end a lone `\r`.
        let content = upto.strip_suffix(b"\n").unwrap_or(upto);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if line.too_long {
            assert!(content.len() > max);
        } else {
            assert!(line.bytes.len() <= max);
            assert!(content.ends_with(&line.bytes));
        }
        let record = record_from_line(line);
        assert!(!record.key.is_empty());
        assert_eq!(record.line, line.number);
    }
    let record = parse_line(input, 7);
    assert!(!record.key.is_empty());
    assert_eq!(record.line, 7);
}

type Split = (Vec<Line>, u64, u64);

fn split(input: &[u8], chunk: usize, max: usize) -> Split {
    let mut splitter = LineSplitter::new(0, 0, max);
    let mut lines = Vec::new();
    for piece in input.chunks(chunk) {
        splitter.push(piece);
        while let Some(line) = splitter.next_line() {
            lines.push(line);
        }
    }
    while let Some(line) = splitter.finish() {
        lines.push(line);
    }
    (lines, splitter.offset(), splitter.line_count())
}
