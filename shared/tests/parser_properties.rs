//! Property tests (proptest) for the parsers that face the network, the same three the fuzz
//! targets in `fuzz/` cover (issue #6 item 4): the Standard Webhooks signature header and
//! timestamp, the event body, and results-file lines. They run in CI with proptest's default 256
//! cases per property; the fuzz targets are the long, coverage-guided version.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gemini_hooks::domain::envelope::{EventSummary, QueueEnvelope, SignatureMode, WebhookEnvelope};
use gemini_hooks::domain::event::{Event, EventError, MAX_EVENT_DEPTH};
use gemini_hooks::domain::results::{Line, LineSplitter, Outcome, parse_line, record_from_line};
use gemini_hooks::domain::verify::VerifyError;
use gemini_hooks::domain::verify::standard::{SigningSecret, StandardVerifier, sign};
use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use sha2::Sha256;

const NOW: i64 = 1_795_000_000;
const TOLERANCE: u64 = 300;
const KEY: [u8; 32] = [0x5a; 32];

fn secret() -> SigningSecret {
    SigningSecret::from_bytes(&KEY).unwrap()
}

fn verifier() -> StandardVerifier {
    StandardVerifier::new(vec![secret()], TOLERANCE)
}

/// `v1,<MAC>` over the timestamp *text*, as any sender holding the key could make.
fn sign_text(id: &str, ts: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&KEY).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Header entries a sender or proxy might add around the real one: other versions, broken
/// `v1` entries, bare words.
fn junk_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        "v[0-9a-z]{0,3},[A-Za-z0-9+/=]{0,48}",
        "v1,[A-Za-z0-9+/]{0,43}=?",
        "[!-~]{1,20}",
    ]
}

fn webhook_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:/-]{1,64}"
}

proptest! {
    /// A genuine signature verifies whatever junk entries surround it, in any order.
    #[test]
    fn signed_delivery_verifies_among_junk_entries(
        id in webhook_id(),
        ts in any::<i64>(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        before in proptest::collection::vec(junk_entry(), 0..6),
        after in proptest::collection::vec(junk_entry(), 0..6),
    ) {
        let mut entries = before;
        entries.push(sign(&secret(), &id, ts, &body));
        entries.extend(after);
        let header = entries.join(" ");
        prop_assert_eq!(verifier().verify_ignoring_timestamp(&id, &ts.to_string(), &header, &body), Ok(ts));
    }

    /// Changing the body, the id or the timestamp after signing always fails.
    #[test]
    fn any_tampering_fails(
        id in webhook_id(),
        ts in 0..i64::MAX,
        body in proptest::collection::vec(any::<u8>(), 1..512),
        flip in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let header = sign(&secret(), &id, ts, &body);
        let v = verifier();
        let mut tampered = body.clone();
        let at = flip.index(tampered.len());
        tampered[at] ^= 1 << bit;
        prop_assert!(v.verify_ignoring_timestamp(&id, &ts.to_string(), &header, &tampered).is_err());
        let other_id = format!("{id}x");
        prop_assert!(v.verify_ignoring_timestamp(&other_id, &ts.to_string(), &header, &body).is_err());
        prop_assert!(v.verify_ignoring_timestamp(&id, &(ts - 1).to_string(), &header, &body).is_err());
    }

    /// Arbitrary header text never verifies and never panics.
    #[test]
    fn arbitrary_signature_headers_are_refused(
        id in webhook_id(),
        header in "\\PC{0,300}",
        body in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        prop_assert!(verifier().verify(&id, &NOW.to_string(), &header, &body, NOW).is_err());
    }

    /// The replay window: accepted iff not before 1970 and within the tolerance either way.
    #[test]
    fn timestamp_window_holds_both_ways(
        offset in prop_oneof![-400i64..400, any::<i64>()],
    ) {
        let ts = NOW.saturating_add(offset);
        let id = "msg_window";
        let header = sign(&secret(), id, ts, b"{}");
        let verdict = verifier().verify(id, &ts.to_string(), &header, b"{}", NOW);
        let inside = ts >= 0 && NOW.abs_diff(ts) <= TOLERANCE;
        prop_assert_eq!(verdict.is_ok(), inside, "{:?}", verdict);
        if !inside && ts >= 0 {
            let expected_old = ts < NOW;
            let is_old = matches!(verdict, Err(VerifyError::TimestampTooOld { .. }));
            prop_assert_eq!(is_old, expected_old);
        }
    }

    /// Only plain decimal integers are timestamps, even when correctly signed as sent.
    #[test]
    fn non_decimal_timestamps_are_malformed(
        text in prop_oneof![
            "\\+[0-9]{1,12}",
            "[0-9]{1,5} [0-9]{1,5}",
            "[0-9]{1,10}\\.[0-9]{1,3}",
            "[0-9]\\.[0-9]{1,3}e[0-9]",
            "0x[0-9A-F]{1,8}",
            "[1-9][0-9]{19,29}",
            "-[1-9][0-9]{0,17}",
        ],
    ) {
        let id = "msg_ts";
        let header = sign_text(id, &text, b"{}");
        let verdict = verifier().verify(id, &text, &header, b"{}", NOW);
        prop_assert!(matches!(verdict, Err(VerifyError::MalformedHeader { .. })), "{text:?}: {verdict:?}");
    }
}

// ---- events -----------------------------------------------------------------------------------

/// Arbitrary JSON (bounded depth and size).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
        Just(Value::from("\u{FFFF}\u{FFFE}\u{0}\t")),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn event_type() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("batch.succeeded".to_owned()),
        Just("batch.completed".to_owned()),
        Just("batch.failed".to_owned()),
        Just("interaction.completed".to_owned()),
        Just("video.generated".to_owned()),
        "\\PC{0,24}",
    ]
}

fn round_trips(event: &Event, raw: Value) -> Result<(), TestCaseError> {
    let envelope = QueueEnvelope::Webhook(WebhookEnvelope {
        webhook_id: "msg_prop".into(),
        received_at_ms: NOW * 1000,
        signature_mode: SignatureMode::Static,
        bound: true,
        event: EventSummary::from(event),
        raw_event: raw,
        user_metadata: event.user_metadata.clone(),
    });
    let message = envelope.to_message().unwrap();
    let back = QueueEnvelope::from_body(&message.body).unwrap();
    prop_assert_eq!(&back, &envelope);
    if let QueueEnvelope::Webhook(w) = back {
        prop_assert_eq!(&w.event(), event);
    }
    Ok(())
}

proptest! {
    /// Arbitrary bytes never panic the event parser.
    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = Event::parse(&body, None);
    }

    /// Every event the receiver accepts becomes an envelope the consumer reads back unchanged
    /// (any type string, any data and metadata, characters SQS refuses included).
    #[test]
    fn accepted_events_survive_the_queue_envelope(
        kind in event_type(),
        data in proptest::collection::btree_map("\\PC{0,8}", json_value(), 0..6),
        extra in json_value(),
        metadata in json_value(),
    ) {
        let mut data: Map<String, Value> = data.into_iter().collect();
        data.insert("user_metadata".into(), json!({"job_group": "g", "m": metadata}));
        let raw = json!({"type": kind, "version": "v1", "data": data, "extra": extra});
        let body = serde_json::to_vec(&raw).unwrap();
        let (event, parsed) = Event::parse(&body, None).unwrap();
        prop_assert_eq!(&event.received_type, &kind);
        round_trips(&event, parsed)?;
    }

    /// Nesting is accepted up to the limit and refused beyond it, never crashing.
    #[test]
    fn nesting_limit_is_exact(levels in 0usize..200) {
        let body = format!(r#"{{"type":"batch.succeeded","x":{}0{}}}"#, "[".repeat(levels), "]".repeat(levels));
        match Event::parse(body.as_bytes(), None) {
            Ok((event, raw)) => {
                prop_assert!(levels < MAX_EVENT_DEPTH);
                round_trips(&event, raw)?;
            }
            Err(EventError::TooDeep { .. }) => prop_assert!(levels >= MAX_EVENT_DEPTH),
            Err(EventError::NotJson(_)) => prop_assert!(levels >= 127, "serde_json's own limit"),
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

// ---- results lines ----------------------------------------------------------------------------

/// Bytes that look like a results file: lines of JSON-ish text, blank lines, CR LF, garbage.
fn results_bytes() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        "[a-z]{1,8}".prop_map(
            |k| format!(r#"{{"key":"{k}","response":{{"candidates":[]}}}}"#).into_bytes()
        ),
        "[a-z]{1,8}"
            .prop_map(
                |k| format!(r#"{{"key":"{k}","error":{{"code":429,"message":"q"}}}}"#).into_bytes()
            ),
        Just(Vec::new()),
        Just(b"  \t ".to_vec()),
        Just(b"\r".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..80),
    ];
    proptest::collection::vec(line, 0..30).prop_map(|lines| lines.join(&b'\n'))
}

fn split(input: &[u8], chunks: &[usize], max: usize) -> (Vec<Line>, u64, u64) {
    let mut splitter = LineSplitter::new(0, 0, max);
    let mut lines = Vec::new();
    let mut rest = input;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        splitter.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(line) = splitter.next_line() {
            lines.push(line);
        }
    }
    while let Some(line) = splitter.finish() {
        lines.push(line);
    }
    (lines, splitter.offset(), splitter.line_count())
}

proptest! {
    /// Chunking never changes the lines, offsets or too-long verdicts; offsets end at the input
    /// length; every line maps to a record with a key and its own number.
    #[test]
    fn line_splitting_is_independent_of_chunking(
        input in results_bytes(),
        chunks in proptest::collection::vec(1usize..200, 1..8),
        max in prop_oneof![Just(1usize << 20), 1usize..64],
    ) {
        let whole = split(&input, &[input.len().max(1)], max);
        let chunked = split(&input, &chunks, max);
        prop_assert_eq!(&whole, &chunked);
        let (lines, offset, count) = whole;
        prop_assert_eq!(offset, input.len() as u64);
        prop_assert_eq!(count, input.split(|b| *b == b'\n').count() as u64 - u64::from(input.is_empty() || input.ends_with(b"\n")));
        let mut last = 0;
        for line in &lines {
            prop_assert!(line.end_offset > last);
            last = line.end_offset;
            let record = record_from_line(line);
            prop_assert!(!record.key.is_empty());
            prop_assert_eq!(record.line, line.number);
        }
    }

    /// Any bytes make a record (never a panic, never an empty key); well-formed lines keep
    /// their key and outcome.
    #[test]
    fn any_line_becomes_a_record(
        garbage in proptest::collection::vec(any::<u8>(), 0..512),
        key in "\\PC{1,24}",
        code in any::<i32>(),
        message in "\\PC{0,40}",
        n in 1u64..1_000_000,
    ) {
        let record = parse_line(&garbage, n);
        prop_assert!(!record.key.is_empty());
        prop_assert_eq!(record.line, n);

        let ok = json!({"key": key, "response": {"candidates": [{"content": {"parts": [{"text": message}]}}]}});
        let record = parse_line(ok.to_string().as_bytes(), n);
        prop_assert_eq!(&record.key, &key);
        match record.outcome {
            Outcome::Success(row) => prop_assert_eq!(row.text, message.clone()),
            other => prop_assert!(false, "{:?}", other),
        }
        let err = json!({"key": key, "error": {"code": code, "message": message}});
        let record = parse_line(err.to_string().as_bytes(), n);
        prop_assert_eq!(&record.key, &key);
        prop_assert_eq!(record.outcome, Outcome::Error { code: Some(i64::from(code)), message, status: None });
    }
}
