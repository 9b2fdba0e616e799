//! Standard Webhooks (static) signing and verification.
//!
//! Gemini signs static-webhook deliveries the Standard Webhooks way: HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{raw body}`, keyed with the base64-decoded part of a
//! `whsec_…` secret, sent as space-separated `v1,<base64>` entries in `webhook-signature`.
//!
//! Choices made here, and why:
//! - Everything works on the raw body bytes (`&[u8]`), never a `String`: the sender signs bytes,
//!   and the reference Rust crates that format a `String` reject valid non-UTF-8 bodies.
//! - The timestamp is signed as the header text *exactly as received*, so a sender's formatting
//!   (leading zeros, say) can never make a genuine delivery fail, and nothing we re-format can
//!   make a forged one pass.
//! - Each configured secret's MAC is computed once per delivery and compared in constant time
//!   against every decoded `v1` entry, so header entries cost a base64 decode, not a hash.
//! - The signature header is bounded ([`MAX_SIGNATURE_HEADER_BYTES`], [`MAX_SIGNATURE_ENTRIES`])
//!   so a hostile header cannot make us do unbounded work.
//! - `now` is a parameter: no wall clock in here, so tests are deterministic.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::digest::{CtOutput, Output};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, VerifyError};

type HmacSha256 = Hmac<Sha256>;

/// Replay window the Standard Webhooks libraries and Gemini's docs use (5 minutes).
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;
/// Longest `webhook-signature` value we look at. Two or three rotation entries are ~50 bytes
/// each; anything near this size is hostile or broken.
pub const MAX_SIGNATURE_HEADER_BYTES: usize = 8 * 1024;
/// Most whitespace-separated entries we accept in `webhook-signature` (all versions counted).
pub const MAX_SIGNATURE_ENTRIES: usize = 32;
/// Fewest key bytes [`SigningSecret::parse`] accepts. Standard Webhooks secrets are 24–64
/// bytes; we allow down to 16 (128 bits) so a sender that deviates slightly is not locked out,
/// while placeholders such as `changeme` or `whsec_test` (which happen to be valid base64) are
/// refused at start-up instead of silently producing a useless key.
pub const MIN_SECRET_BYTES: usize = 16;

const SECRET_PREFIX: &str = "whsec_";
const SIGNATURE_VERSION: &str = "v1";
/// HMAC-SHA256 output length; a `v1` entry decoding to any other length cannot match.
const SIGNATURE_BYTES: usize = 32;

/// Standard alphabet, padding optional, non-zero trailing bits tolerated: as lenient as the
/// Python reference library about *padding*, but unlike it we still reject characters outside
/// the alphabet, so a mangled secret is a start-up error rather than a silently different key.
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A decoded HMAC key. Debug prints `SigningSecret(<redacted>)`.
///
/// The keyed HMAC state is prepared once at construction, so signing and verifying never have
/// to handle a key error.
#[derive(Clone)]
pub struct SigningSecret {
    bytes: Vec<u8>,
    keyed: HmacSha256,
}

/// Why a signing secret was refused. Never carries the secret text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// `""`, whitespace only, `whsec_` with nothing after it, or zero key bytes.
    #[error("the signing secret is empty")]
    Empty,
    /// Not standard-alphabet base64 after removing the optional `whsec_` prefix.
    #[error("the signing secret is not base64 (standard alphabet, optional `whsec_` prefix)")]
    InvalidBase64,
    /// Decodes to fewer than [`MIN_SECRET_BYTES`] bytes: almost certainly a placeholder.
    #[error("the signing secret decodes to {len} bytes; at least {min} are required")]
    TooShort { len: usize, min: usize },
    /// The HMAC implementation refused the key. HMAC-SHA256 accepts any key length, so this is
    /// not expected; it exists so such a refusal is a configuration error, not a panic.
    #[error("the signing secret cannot be used as an HMAC-SHA256 key")]
    Unusable,
}

impl SigningSecret {
    /// Parses `whsec_<base64>` or bare base64 (standard alphabet) as handed out by the sender.
    ///
    /// Policy: surrounding whitespace is trimmed (values pasted into env vars or Secrets Manager
    /// often carry a newline); padding may be complete, partial or missing, like the Python
    /// reference library; characters outside the base64 alphabet are rejected; the key must
    /// have at least [`MIN_SECRET_BYTES`] bytes.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let trimmed = text.trim();
        let encoded = trimmed.strip_prefix(SECRET_PREFIX).unwrap_or(trimmed);
        if encoded.is_empty() {
            return Err(SecretError::Empty);
        }
        // The decode error is dropped on purpose: it names the offending character.
        let bytes = LENIENT_STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::InvalidBase64)?;
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(if bytes.is_empty() {
                SecretError::Empty
            } else {
                SecretError::TooShort {
                    len: bytes.len(),
                    min: MIN_SECRET_BYTES,
                }
            });
        }
        Self::from_bytes(&bytes)
    }

    /// Uses `bytes` as the key as-is. Only emptiness is refused: this is for callers that hold
    /// real key material (tests, tooling); operator-supplied text goes through [`Self::parse`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        let keyed = HmacSha256::new_from_slice(bytes).map_err(|_| SecretError::Unusable)?;
        Ok(Self {
            bytes: bytes.to_vec(),
            keyed,
        })
    }

    /// A fresh 32-byte key from the thread-local CSPRNG (for the CLI that creates secrets).
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self {
            keyed: HmacSha256::new(&zero_padded_key(&bytes)),
            bytes: bytes.to_vec(),
        }
    }

    /// `whsec_<standard base64>`, the form senders and [`Self::parse`] use.
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.bytes))
    }
}

/// HMAC (RFC 2104) zero-pads keys shorter than the hash block, so a 32-byte key padded to the
/// 64-byte block is the same key; this lets `generate` use the infallible `KeyInit::new`.
fn zero_padded_key(bytes: &[u8; 32]) -> hmac::digest::Key<HmacSha256> {
    let mut key = hmac::digest::Key::<HmacSha256>::default();
    key[..bytes.len()].copy_from_slice(bytes);
    key
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// Why a secret list (`WEBHOOK_SIGNING_SECRETS`) was refused. Names the entry by position only.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretListError {
    /// Nothing but separators.
    #[error("no signing secrets given")]
    Empty,
    /// Entry `index` (1-based, counting non-empty entries) is not a usable secret.
    #[error("signing secret #{index} is invalid: {source}")]
    Invalid {
        index: usize,
        #[source]
        source: SecretError,
    },
}

/// Parses a list separated by commas and/or whitespace (env `WEBHOOK_SIGNING_SECRETS`; during
/// rotation it holds the old and the new secret). Empty entries (`a,,b`, trailing commas) are
/// skipped; the list as a whole must not be empty.
pub fn parse_secret_list(text: &str) -> Result<Vec<SigningSecret>, SecretListError> {
    let secrets = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(i, entry)| {
            SigningSecret::parse(entry).map_err(|source| SecretListError::Invalid {
                index: i + 1,
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if secrets.is_empty() {
        return Err(SecretListError::Empty);
    }
    Ok(secrets)
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, the `webhook-signature` entry a
/// sender would produce (for tests, the local CLI and fixtures).
pub fn sign(secret: &SigningSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac_of(&secret.keyed, msg_id, &timestamp.to_string(), body);
    format!("{SIGNATURE_VERSION},{}", STANDARD.encode(tag.as_bytes()))
}

/// HMAC over the signed content, fed piecewise so the body is never copied or re-encoded.
fn mac_of(key: &HmacSha256, msg_id: &str, timestamp: &str, body: &[u8]) -> CtOutput<HmacSha256> {
    let mut mac = key.clone();
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
}

/// Verifies static-webhook deliveries against one or more secrets (several during rotation).
#[derive(Clone)]
pub struct StandardVerifier {
    keys: Vec<HmacSha256>,
    tolerance_secs: u64,
}

impl fmt::Debug for StandardVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardVerifier")
            .field("secrets", &self.keys.len())
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

impl StandardVerifier {
    /// `tolerance_secs` is the replay window in each direction ([`DEFAULT_TOLERANCE_SECS`] is
    /// the usual value). With no secrets every delivery fails with
    /// [`VerifyError::StaticNotConfigured`].
    pub fn new(secrets: Vec<SigningSecret>, tolerance_secs: u64) -> Self {
        Self {
            keys: secrets.into_iter().map(|s| s.keyed).collect(),
            tolerance_secs,
        }
    }

    /// How many secrets are tried (for start-up logs).
    pub fn secret_count(&self) -> usize {
        self.keys.len()
    }

    /// The replay window in seconds.
    pub fn tolerance_secs(&self) -> u64 {
        self.tolerance_secs
    }

    /// Checks the timestamp window (`|now - ts| <= tolerance`, both directions), then the
    /// signatures. Returns the parsed timestamp. Timestamps before 1970 are refused here, like
    /// Svix does; `now_secs` is injected so there is no wall clock inside.
    pub fn verify(
        &self,
        msg_id: &str,
        timestamp: &str,
        signature_header: &str,
        body: &[u8],
        now_secs: i64,
    ) -> Result<i64, VerifyError> {
        self.ensure_configured()?;
        check_msg_id(msg_id)?;
        let ts = parse_timestamp(timestamp)?;
        if ts < 0 {
            return Err(malformed(HEADER_TIMESTAMP, "is before 1970"));
        }
        // The signature first: a caller without the secret learns nothing, not even the
        // window; a genuine but stale delivery still gets its precise timestamp error.
        self.check_signatures(msg_id, timestamp, signature_header, body)?;
        self.check_window(ts, now_secs)?;
        Ok(ts)
    }

    /// Like [`Self::verify`] without the window (and without the pre-1970 rule), for tooling
    /// that re-checks stored deliveries. The timestamp is still part of the signed content, so
    /// one that differs from the signed one still fails.
    pub fn verify_ignoring_timestamp(
        &self,
        msg_id: &str,
        timestamp: &str,
        signature_header: &str,
        body: &[u8],
    ) -> Result<i64, VerifyError> {
        self.ensure_configured()?;
        check_msg_id(msg_id)?;
        let ts = parse_timestamp(timestamp)?;
        self.check_signatures(msg_id, timestamp, signature_header, body)?;
        Ok(ts)
    }

    fn ensure_configured(&self) -> Result<(), VerifyError> {
        if self.keys.is_empty() {
            Err(VerifyError::StaticNotConfigured)
        } else {
            Ok(())
        }
    }

    fn check_window(&self, ts: i64, now_secs: i64) -> Result<(), VerifyError> {
        // abs_diff is exact over the whole i64 range, so no arithmetic here can overflow.
        let distance = now_secs.abs_diff(ts);
        if distance <= self.tolerance_secs {
            return Ok(());
        }
        let seconds = distance - self.tolerance_secs;
        let tolerance = self.tolerance_secs;
        Err(if ts < now_secs {
            VerifyError::TimestampTooOld { seconds, tolerance }
        } else {
            VerifyError::TimestampTooNew { seconds, tolerance }
        })
    }

    fn check_signatures(
        &self,
        msg_id: &str,
        timestamp: &str,
        signature_header: &str,
        body: &[u8],
    ) -> Result<(), VerifyError> {
        let candidates = parse_signature_header(signature_header)?;
        if !candidates.is_empty() {
            for key in &self.keys {
                let expected = mac_of(key, msg_id, timestamp, body);
                // `contains` uses CtOutput's `==`, which is constant time; stopping at the first match only reveals
                // which entry matched, which the sender already knows.
                if candidates.contains(&expected) {
                    return Ok(());
                }
            }
        }
        Err(VerifyError::NoMatchingSignature {
            secrets: self.keys.len(),
        })
    }
}

fn malformed(header: &'static str, reason: &str) -> VerifyError {
    VerifyError::MalformedHeader {
        header,
        reason: reason.to_owned(),
    }
}

fn check_msg_id(msg_id: &str) -> Result<(), VerifyError> {
    if msg_id.is_empty() {
        Err(malformed(HEADER_ID, "is empty"))
    } else {
        Ok(())
    }
}

/// Accepts exactly `-?[0-9]+` that fits an `i64`: no `+`, spaces, fractions or exponents, so
/// the parsed value and the signed text cannot disagree about what was meant.
fn parse_timestamp(text: &str) -> Result<i64, VerifyError> {
    if text.is_empty() {
        return Err(malformed(HEADER_TIMESTAMP, "is empty"));
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(
            HEADER_TIMESTAMP,
            "is not an integer number of seconds",
        ));
    }
    text.parse::<i64>()
        .map_err(|_| malformed(HEADER_TIMESTAMP, "is out of range"))
}

/// Extracts the decodable `v1` signatures. Entries are separated by any ASCII whitespace;
/// entries without a comma and versions other than `v1` are ignored; a `v1` entry that is not
/// standard padded base64 of 32 bytes is kept out (it simply cannot match). One trailing comma
/// on an entry is dropped, because HTTP layers comma-join repeated headers (`v1,a=, v1,b=`).
fn parse_signature_header(header: &str) -> Result<Vec<CtOutput<HmacSha256>>, VerifyError> {
    if header.len() > MAX_SIGNATURE_HEADER_BYTES {
        return Err(malformed(
            HEADER_SIGNATURE,
            "is longer than the 8 KiB limit",
        ));
    }
    let mut entries = 0usize;
    let mut saw_v1 = false;
    let mut candidates = Vec::new();
    for entry in header.split_ascii_whitespace() {
        entries += 1;
        if entries > MAX_SIGNATURE_ENTRIES {
            return Err(malformed(HEADER_SIGNATURE, "has more than 32 entries"));
        }
        let Some((version, signature)) = entry.split_once(',') else {
            continue;
        };
        if version != SIGNATURE_VERSION {
            continue;
        }
        saw_v1 = true;
        let signature = signature.strip_suffix(',').unwrap_or(signature);
        if let Some(candidate) = decode_signature(signature) {
            candidates.push(candidate);
        }
    }
    if entries == 0 {
        return Err(malformed(HEADER_SIGNATURE, "is empty"));
    }
    if !saw_v1 {
        return Err(VerifyError::NoSupportedSignature);
    }
    Ok(candidates)
}

fn decode_signature(signature: &str) -> Option<CtOutput<HmacSha256>> {
    let bytes = STANDARD.decode(signature).ok()?;
    if bytes.len() != SIGNATURE_BYTES {
        return None;
    }
    let tag = Output::<HmacSha256>::try_from(bytes.as_slice()).ok()?;
    Some(CtOutput::new(tag))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::domain::verify::FailureClass;

    // The Standard Webhooks reference vectors (the Go, JS, Python and Rust libraries' `sign` tests),
    // recomputed independently with Python's hmac.
    const V1_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const V1_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const V1_TS: i64 = 1_614_265_330;
    const V1_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const V1_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    const V2_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const V2_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const V2_TS: i64 = 1_649_367_553;
    const V2_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const V2_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    const TOL: u64 = DEFAULT_TOLERANCE_SECS;
    const NOW: i64 = 1_700_000_000;
    const ID: &str = "msg_2c7f0d2a";
    const BODY: &[u8] = br#"{"type":"batch.succeeded","data":{"id":"batches/123"}}"#;

    fn secret(text: &str) -> SigningSecret {
        SigningSecret::parse(text).unwrap()
    }

    /// A distinct, valid 32-byte key per `n`.
    fn key(n: u8) -> SigningSecret {
        SigningSecret::from_bytes(&[n; 32]).unwrap()
    }

    fn verifier_for(secrets: Vec<SigningSecret>) -> StandardVerifier {
        StandardVerifier::new(secrets, TOL)
    }

    /// Signs with the timestamp *text* given, the way an arbitrary sender could.
    fn sign_text(secret: &SigningSecret, msg_id: &str, timestamp: &str, body: &[u8]) -> String {
        let tag = mac_of(&secret.keyed, msg_id, timestamp, body);
        format!("v1,{}", STANDARD.encode(tag.as_bytes()))
    }

    /// The base64 part of a `v1,<b64>` entry.
    fn b64_part(entry: &str) -> &str {
        entry.strip_prefix("v1,").unwrap()
    }

    fn assert_malformed(result: Result<i64, VerifyError>, expected_header: &str) {
        match result {
            Err(ref e @ VerifyError::MalformedHeader { header, .. }) => {
                assert_eq!(header, expected_header, "wrong header in {e}");
                assert_eq!(e.class(), FailureClass::BadRequest);
                assert_eq!(e.code(), "malformed_header");
            }
            other => panic!("expected MalformedHeader({expected_header}), got {other:?}"),
        }
    }

    fn no_match(secrets: usize) -> Result<i64, VerifyError> {
        Err(VerifyError::NoMatchingSignature { secrets })
    }

    // ---- reference vectors (the cases the Standard Webhooks and Svix test suites check) ---------

    #[test]
    fn when_signing_reference_vector_1_should_reproduce_expected_header() {
        assert_eq!(sign(&secret(V1_SECRET), V1_ID, V1_TS, V1_BODY), V1_SIG);
    }

    #[test]
    fn when_signing_reference_vector_2_should_reproduce_expected_header() {
        assert_eq!(sign(&secret(V2_SECRET), V2_ID, V2_TS, V2_BODY), V2_SIG);
    }

    #[test]
    fn when_verifying_reference_vectors_should_return_their_timestamps() {
        let v1 = verifier_for(vec![secret(V1_SECRET)]);
        let v2 = verifier_for(vec![secret(V2_SECRET)]);
        assert_eq!(
            v1.verify(V1_ID, &V1_TS.to_string(), V1_SIG, V1_BODY, V1_TS),
            Ok(V1_TS)
        );
        assert_eq!(
            v2.verify(V2_ID, &V2_TS.to_string(), V2_SIG, V2_BODY, V2_TS),
            Ok(V2_TS)
        );
        // Each vector belongs to its own secret only.
        assert_eq!(
            v2.verify(V1_ID, &V1_TS.to_string(), V1_SIG, V1_BODY, V1_TS),
            no_match(1)
        );
    }

    #[test]
    fn when_secret_lacks_whsec_prefix_should_verify_same_as_prefixed() {
        let bare = V1_SECRET.strip_prefix("whsec_").unwrap();
        let verifier = verifier_for(vec![secret(bare)]);
        assert_eq!(
            verifier.verify(V1_ID, &V1_TS.to_string(), V1_SIG, V1_BODY, V1_TS),
            Ok(V1_TS)
        );
        assert_eq!(secret(bare).to_whsec(), V1_SECRET);
    }

    #[test]
    fn when_secret_round_trips_through_to_whsec_should_keep_the_same_key() {
        let parsed = secret(V2_SECRET);
        assert_eq!(parsed.to_whsec(), V2_SECRET);
        let again = secret(&parsed.to_whsec());
        assert_eq!(sign(&again, V2_ID, V2_TS, V2_BODY), V2_SIG);
    }

    // ---- missing and ill-formed pieces ----------------------------------------------------------

    #[test]
    fn when_msg_id_is_empty_should_reject_as_malformed_id() {
        let s = key(1);
        let header = sign(&s, "", NOW, BODY);
        let v = verifier_for(vec![s]);
        assert_malformed(
            v.verify("", &NOW.to_string(), &header, BODY, NOW),
            HEADER_ID,
        );
        assert_malformed(
            v.verify_ignoring_timestamp("", &NOW.to_string(), &header, BODY),
            HEADER_ID,
        );
    }

    #[test]
    fn when_timestamp_is_empty_should_reject_as_malformed_timestamp() {
        let s = key(1);
        let header = sign(&s, ID, NOW, BODY);
        let v = verifier_for(vec![s]);
        assert_malformed(v.verify(ID, "", &header, BODY, NOW), HEADER_TIMESTAMP);
        assert_malformed(
            v.verify_ignoring_timestamp(ID, "", &header, BODY),
            HEADER_TIMESTAMP,
        );
    }

    #[test]
    fn when_signature_header_is_empty_should_reject_as_malformed_signature() {
        let v = verifier_for(vec![key(1)]);
        for header in ["", " ", "\t \n"] {
            assert_malformed(
                v.verify(ID, &NOW.to_string(), header, BODY, NOW),
                HEADER_SIGNATURE,
            );
        }
    }

    #[test]
    fn when_timestamp_is_not_numeric_should_reject_as_malformed_timestamp() {
        let s = key(1);
        let header = sign_text(&s, ID, "hello", BODY);
        let v = verifier_for(vec![s]);
        assert_malformed(v.verify(ID, "hello", &header, BODY, NOW), HEADER_TIMESTAMP);
        assert_malformed(
            v.verify_ignoring_timestamp(ID, "hello", &header, BODY),
            HEADER_TIMESTAMP,
        );
    }

    #[test]
    fn when_timestamp_has_sign_spaces_fraction_or_exponent_should_reject_even_if_signed() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        let cases = [
            "+1700000000",
            " 1700000000",
            "1700000000 ",
            "1700000000.0",
            "1700000000.5",
            "1.7e9",
            "-",
            "--1",
            "-+1",
            "1-",
            "0x10",
            "1_700_000_000",
            "\u{0661}\u{0662}", // non-ASCII digits
        ];
        for text in cases {
            // Signed over the exact text, so only the grammar can be what rejects it.
            let header = sign_text(&s, ID, text, BODY);
            assert_malformed(v.verify(ID, text, &header, BODY, NOW), HEADER_TIMESTAMP);
            assert_malformed(
                v.verify_ignoring_timestamp(ID, text, &header, BODY),
                HEADER_TIMESTAMP,
            );
        }
    }

    #[test]
    fn when_timestamp_overflows_i64_should_reject_as_malformed() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        for text in [
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999999999",
        ] {
            let header = sign_text(&s, ID, text, BODY);
            assert_malformed(v.verify(ID, text, &header, BODY, NOW), HEADER_TIMESTAMP);
            assert_malformed(
                v.verify_ignoring_timestamp(ID, text, &header, BODY),
                HEADER_TIMESTAMP,
            );
        }
        // The extremes that do fit are parsed, not rejected.
        let max = i64::MAX.to_string();
        let header = sign(&s, ID, i64::MAX, BODY);
        assert_eq!(
            v.verify_ignoring_timestamp(ID, &max, &header, BODY),
            Ok(i64::MAX)
        );
    }

    // ---- wrong, garbage and partial signatures --------------------------------------------------

    #[test]
    fn when_signature_was_made_with_another_secret_should_report_no_match() {
        let header = sign(&key(2), ID, NOW, BODY);
        let v = verifier_for(vec![key(1)]);
        let result = v.verify(ID, &NOW.to_string(), &header, BODY, NOW);
        assert_eq!(result, no_match(1));
        let err = result.unwrap_err();
        assert_eq!(err.class(), FailureClass::Unauthorized);
        assert_eq!(err.code(), "signature_mismatch");
    }

    #[test]
    fn when_signature_is_garbage_base64_should_report_no_match() {
        let v = verifier_for(vec![key(1)]);
        for header in [
            "v1,!!!not-base64***",
            "v1,@@@@",
            "v1,g0hM9SsE-OTPJTGt_tmIKtSyZlE3uFJELVlNIOLJ1OE=", // URL-safe alphabet
            "v1,dGVzdA==",                                     // valid base64, wrong length
            "v1,v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ] {
            assert_eq!(
                v.verify(ID, &NOW.to_string(), header, BODY, NOW),
                no_match(1),
                "header {header:?}"
            );
        }
    }

    #[test]
    fn when_signature_entry_is_just_v1_comma_should_report_no_match() {
        let v = verifier_for(vec![key(1)]);
        assert_eq!(
            v.verify(ID, &NOW.to_string(), "v1,", BODY, NOW),
            no_match(1)
        );
    }

    #[test]
    fn when_signature_is_a_prefix_of_a_valid_one_should_report_no_match() {
        let v = verifier_for(vec![secret(V1_SECRET)]);
        let ts = V1_TS.to_string();
        // First 8 characters (as in the reference suites), and every other proper prefix.
        assert_eq!(
            v.verify(V1_ID, &ts, &V1_SIG[..8], V1_BODY, V1_TS),
            no_match(1)
        );
        for end in 3..V1_SIG.len() {
            assert_eq!(
                v.verify(V1_ID, &ts, &V1_SIG[..end], V1_BODY, V1_TS),
                no_match(1),
                "prefix of length {end}"
            );
        }
    }

    #[test]
    fn when_signature_has_extra_characters_should_report_no_match() {
        let v = verifier_for(vec![secret(V1_SECRET)]);
        let ts = V1_TS.to_string();
        for header in [
            format!("{V1_SIG}A"),
            format!("{V1_SIG}AAAA"),
            format!("{V1_SIG}="),
        ] {
            assert_eq!(v.verify(V1_ID, &ts, &header, V1_BODY, V1_TS), no_match(1));
        }
    }

    #[test]
    fn when_signature_lacks_its_padding_should_not_match_because_senders_pad() {
        let v = verifier_for(vec![secret(V1_SECRET)]);
        let unpadded = V1_SIG.strip_suffix('=').unwrap();
        assert_eq!(
            v.verify(V1_ID, &V1_TS.to_string(), unpadded, V1_BODY, V1_TS),
            no_match(1)
        );
    }

    #[test]
    fn when_body_or_id_differs_from_the_signed_one_should_report_no_match() {
        let s = key(1);
        let header = sign(&s, ID, NOW, BODY);
        let v = verifier_for(vec![s]);
        let ts = NOW.to_string();
        let mut altered = BODY.to_vec();
        altered[0] ^= 0x01;
        assert_eq!(v.verify(ID, &ts, &header, &altered, NOW), no_match(1));
        assert_eq!(v.verify("msg_other", &ts, &header, BODY, NOW), no_match(1));
        // Re-serialised JSON (extra space) is a different body.
        let reserialised = br#"{"type": "batch.succeeded","data":{"id":"batches/123"}}"#;
        assert_eq!(v.verify(ID, &ts, &header, reserialised, NOW), no_match(1));
        // Sanity: the untouched delivery passes.
        assert_eq!(v.verify(ID, &ts, &header, BODY, NOW), Ok(NOW));
    }

    // ---- the replay window ----------------------------------------------------------------------

    #[test]
    fn when_timestamp_is_tolerance_plus_one_old_should_be_too_old() {
        let s = key(1);
        let ts = NOW - (TOL as i64 + 1);
        let header = sign(&s, ID, ts, BODY);
        let v = verifier_for(vec![s]);
        let result = v.verify(ID, &ts.to_string(), &header, BODY, NOW);
        assert_eq!(
            result,
            Err(VerifyError::TimestampTooOld {
                seconds: 1,
                tolerance: TOL
            })
        );
        assert_eq!(result.unwrap_err().class(), FailureClass::Unauthorized);
    }

    #[test]
    fn when_timestamp_is_tolerance_plus_one_ahead_should_be_too_new() {
        let s = key(1);
        let ts = NOW + (TOL as i64 + 1);
        let header = sign(&s, ID, ts, BODY);
        let v = verifier_for(vec![s]);
        assert_eq!(
            v.verify(ID, &ts.to_string(), &header, BODY, NOW),
            Err(VerifyError::TimestampTooNew {
                seconds: 1,
                tolerance: TOL
            })
        );
    }

    #[test]
    fn when_timestamp_is_exactly_tolerance_old_or_ahead_should_pass() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        for ts in [NOW - TOL as i64, NOW + TOL as i64, NOW] {
            let header = sign(&s, ID, ts, BODY);
            assert_eq!(v.verify(ID, &ts.to_string(), &header, BODY, NOW), Ok(ts));
        }
    }

    #[test]
    fn when_outside_the_window_should_report_how_many_seconds_outside() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        let old = NOW - 1_000;
        let new = NOW + 1_000;
        assert_eq!(
            v.verify(ID, &old.to_string(), &sign(&s, ID, old, BODY), BODY, NOW),
            Err(VerifyError::TimestampTooOld {
                seconds: 1_000 - TOL,
                tolerance: TOL
            })
        );
        assert_eq!(
            v.verify(ID, &new.to_string(), &sign(&s, ID, new, BODY), BODY, NOW),
            Err(VerifyError::TimestampTooNew {
                seconds: 1_000 - TOL,
                tolerance: TOL
            })
        );
    }

    #[test]
    fn when_tolerance_is_zero_should_accept_only_the_exact_second() {
        let s = key(1);
        let v = StandardVerifier::new(vec![s.clone()], 0);
        let header = sign(&s, ID, NOW, BODY);
        assert_eq!(v.verify(ID, &NOW.to_string(), &header, BODY, NOW), Ok(NOW));
        assert_eq!(
            v.verify(ID, &NOW.to_string(), &header, BODY, NOW + 1),
            Err(VerifyError::TimestampTooOld {
                seconds: 1,
                tolerance: 0
            })
        );
        assert_eq!(
            v.verify(ID, &NOW.to_string(), &header, BODY, NOW - 1),
            Err(VerifyError::TimestampTooNew {
                seconds: 1,
                tolerance: 0
            })
        );
    }

    #[test]
    fn when_timestamps_and_clock_are_at_i64_extremes_should_not_overflow() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        let max = i64::MAX;
        let header = sign(&s, ID, max, BODY);
        assert_eq!(
            v.verify(ID, &max.to_string(), &header, BODY, NOW),
            Err(VerifyError::TimestampTooNew {
                seconds: (max - NOW) as u64 - TOL,
                tolerance: TOL
            })
        );
        assert_eq!(
            v.verify(ID, &max.to_string(), &header, BODY, i64::MIN),
            Err(VerifyError::TimestampTooNew {
                seconds: u64::MAX - TOL,
                tolerance: TOL
            })
        );
        let zero_header = sign(&s, ID, 0, BODY);
        assert_eq!(
            v.verify(ID, "0", &zero_header, BODY, i64::MAX),
            Err(VerifyError::TimestampTooOld {
                seconds: i64::MAX as u64 - TOL,
                tolerance: TOL
            })
        );
        // An unbounded window accepts anything from 1970 on.
        let wide = StandardVerifier::new(vec![s], u64::MAX);
        assert_eq!(wide.verify(ID, "0", &zero_header, BODY, i64::MAX), Ok(0));
        assert_eq!(
            wide.verify(ID, &max.to_string(), &header, BODY, i64::MIN),
            Ok(max)
        );
    }

    #[test]
    fn when_timestamp_is_stale_and_signature_bad_should_report_the_signature_first() {
        // A caller without the secret learns nothing about the window.
        let v = verifier_for(vec![key(1)]);
        let old = NOW - 10_000;
        let bad = sign(&key(2), ID, old, BODY);
        assert!(matches!(
            v.verify(ID, &old.to_string(), &bad, BODY, NOW),
            Err(VerifyError::NoMatchingSignature { .. })
        ));
        assert!(matches!(
            v.verify(ID, &old.to_string(), "v2,abc", BODY, NOW),
            Err(VerifyError::NoSupportedSignature)
        ));
        // A genuine but stale delivery still gets its precise error.
        let good = sign(&key(1), ID, old, BODY);
        assert!(matches!(
            v.verify(ID, &old.to_string(), &good, BODY, NOW),
            Err(VerifyError::TimestampTooOld { .. })
        ));
    }

    #[test]
    fn when_timestamp_is_malformed_and_signature_junk_should_report_the_timestamp_first() {
        let v = verifier_for(vec![key(1)]);
        assert_malformed(v.verify(ID, "hello", "", BODY, NOW), HEADER_TIMESTAMP);
        assert_malformed(v.verify(ID, "-5", "v2,abc", BODY, NOW), HEADER_TIMESTAMP);
    }

    // ---- ignoring the window --------------------------------------------------------------------

    #[test]
    fn when_window_is_ignored_should_accept_old_and_future_timestamps() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        for ts in [0, NOW - 10_000_000, NOW + 10_000_000] {
            let header = sign(&s, ID, ts, BODY);
            assert_eq!(
                v.verify_ignoring_timestamp(ID, &ts.to_string(), &header, BODY),
                Ok(ts)
            );
            assert!(v.verify(ID, &ts.to_string(), &header, BODY, NOW).is_err());
        }
    }

    #[test]
    fn when_timestamp_differs_from_the_signed_one_by_one_second_should_fail() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        let header = sign(&s, ID, NOW, BODY);
        for claimed in [NOW - 1, NOW + 1] {
            assert_eq!(
                v.verify_ignoring_timestamp(ID, &claimed.to_string(), &header, BODY),
                no_match(1)
            );
            // Inside the window too: the window never substitutes for the signature.
            assert_eq!(
                v.verify(ID, &claimed.to_string(), &header, BODY, NOW),
                no_match(1)
            );
        }
    }

    #[test]
    fn when_timestamp_is_negative_should_reject_in_verify_but_accept_when_ignoring_window() {
        let s = key(1);
        let v = StandardVerifier::new(vec![s.clone()], u64::MAX);
        let header = sign(&s, ID, -1, BODY);
        assert_malformed(v.verify(ID, "-1", &header, BODY, 0), HEADER_TIMESTAMP);
        assert_eq!(v.verify_ignoring_timestamp(ID, "-1", &header, BODY), Ok(-1));
        let min = i64::MIN.to_string();
        let header = sign(&s, ID, i64::MIN, BODY);
        assert_malformed(v.verify(ID, &min, &header, BODY, 0), HEADER_TIMESTAMP);
        assert_eq!(
            v.verify_ignoring_timestamp(ID, &min, &header, BODY),
            Ok(i64::MIN)
        );
    }

    #[test]
    fn when_timestamp_text_has_leading_zeros_should_sign_over_the_text_as_received() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        let text = format!("00{NOW}");
        let over_text = sign_text(&s, ID, &text, BODY);
        assert_eq!(v.verify(ID, &text, &over_text, BODY, NOW), Ok(NOW));
        // A signature over the canonical form does not cover the zero-padded text.
        let over_canonical = sign(&s, ID, NOW, BODY);
        assert_eq!(v.verify(ID, &text, &over_canonical, BODY, NOW), no_match(1));
    }

    // ---- several entries ------------------------------------------------------------------------

    #[test]
    fn when_one_of_four_entries_is_valid_including_v2_and_duplicates_should_pass() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        let valid = sign(&s, ID, NOW, BODY);
        let bad = sign(&key(2), ID, NOW, BODY);
        let v2 = format!("v2,{}", b64_part(&valid));
        for position in 0..4 {
            let mut entries = vec![bad.clone(), v2.clone(), bad.clone()];
            entries.insert(position, valid.clone());
            let header = entries.join(" ");
            assert_eq!(
                v.verify(ID, &NOW.to_string(), &header, BODY, NOW),
                Ok(NOW),
                "valid entry at {position}"
            );
        }
    }

    #[test]
    fn when_three_entries_are_all_invalid_should_fail() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        let valid = sign(&s, ID, NOW, BODY);
        let bad = sign(&key(2), ID, NOW, BODY);
        // The v2 entry carries the right MAC but under a version we must not honour.
        let header = format!("{bad} v2,{} {bad}", b64_part(&valid));
        assert_eq!(
            v.verify(ID, &NOW.to_string(), &header, BODY, NOW),
            no_match(1)
        );
    }

    #[test]
    fn when_no_entry_is_v1_should_report_no_supported_signature() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        let valid = sign(&s, ID, NOW, BODY);
        let b64 = b64_part(&valid);
        for header in [
            format!("v1a,{b64}"),
            format!("v2,{b64}"),
            format!("V1,{b64}"),
            format!(",{b64}"),
            b64.to_owned(),
            format!("v1{b64}"),
            format!("v1a,{b64} v2,{b64}"),
        ] {
            let result = v.verify(ID, &NOW.to_string(), &header, BODY, NOW);
            assert_eq!(result, Err(VerifyError::NoSupportedSignature), "{header:?}");
            assert_eq!(result.unwrap_err().code(), "no_supported_signature");
        }
    }

    #[test]
    fn when_some_entries_lack_a_comma_they_should_be_ignored() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        let valid = sign(&s, ID, NOW, BODY);
        let header = format!("garbage v1 {valid} trailing");
        assert_eq!(v.verify(ID, &NOW.to_string(), &header, BODY, NOW), Ok(NOW));
    }

    #[test]
    fn when_entries_are_separated_by_mixed_whitespace_should_verify() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        let valid = sign(&s, ID, NOW, BODY);
        let bad = sign(&key(2), ID, NOW, BODY);
        for header in [
            format!("{bad}  {valid}"),
            format!("{bad}\t{valid}"),
            format!("\t{valid}\t"),
            format!("  {bad} \t\n {valid}  "),
            format!("{valid}\r\n"),
            format!("{bad}\t\t{valid}  {bad}"),
        ] {
            assert_eq!(
                v.verify(ID, &NOW.to_string(), &header, BODY, NOW),
                Ok(NOW),
                "{header:?}"
            );
        }
    }

    #[test]
    fn when_repeated_headers_arrive_comma_joined_should_verify() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        let valid = sign(&s, ID, NOW, BODY);
        let bad = sign(&key(2), ID, NOW, BODY);
        for header in [format!("{bad}, {valid}"), format!("{valid}, {bad}")] {
            assert_eq!(
                v.verify(ID, &NOW.to_string(), &header, BODY, NOW),
                Ok(NOW),
                "{header:?}"
            );
        }
    }

    #[test]
    fn when_signature_header_exceeds_the_byte_limit_should_reject_as_malformed() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        let valid = sign(&s, ID, NOW, BODY);
        let at_limit = format!("{valid:<MAX_SIGNATURE_HEADER_BYTES$}");
        assert_eq!(at_limit.len(), MAX_SIGNATURE_HEADER_BYTES);
        assert_eq!(
            v.verify(ID, &NOW.to_string(), &at_limit, BODY, NOW),
            Ok(NOW)
        );
        let over = format!("{at_limit} ");
        assert_malformed(
            v.verify(ID, &NOW.to_string(), &over, BODY, NOW),
            HEADER_SIGNATURE,
        );
    }

    #[test]
    fn when_signature_header_has_too_many_entries_should_reject_as_malformed() {
        let s = key(1);
        let v = verifier_for(vec![s.clone()]);
        let valid = sign(&s, ID, NOW, BODY);
        let bad = sign(&key(2), ID, NOW, BODY);
        let mut entries = vec![bad; MAX_SIGNATURE_ENTRIES - 1];
        entries.push(valid);
        let at_limit = entries.join(" ");
        assert_eq!(
            v.verify(ID, &NOW.to_string(), &at_limit, BODY, NOW),
            Ok(NOW)
        );
        let over = format!("x {at_limit}");
        assert_malformed(
            v.verify(ID, &NOW.to_string(), &over, BODY, NOW),
            HEADER_SIGNATURE,
        );
    }

    // ---- secrets --------------------------------------------------------------------------------

    #[test]
    fn when_secret_is_empty_should_be_rejected() {
        for text in ["", "whsec_", "   ", " whsec_ \n"] {
            assert_eq!(
                SigningSecret::parse(text).unwrap_err(),
                SecretError::Empty,
                "{text:?}"
            );
        }
        assert_eq!(
            SigningSecret::from_bytes(&[]).unwrap_err(),
            SecretError::Empty
        );
    }

    #[test]
    fn when_secret_is_not_base64_should_be_rejected_without_echoing_it() {
        for text in [
            "whsec_not base64 at all!",
            "whsec_MfKQ9r8G-KYqrTwjUPD8_ILPZIo2LaLaSw", // URL-safe alphabet
            "whsec_********************************",
            "v1,MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", // pasted with a signature prefix
            "whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw===",
        ] {
            let err = SigningSecret::parse(text).unwrap_err();
            assert_eq!(err, SecretError::InvalidBase64, "{text:?}");
            let message = err.to_string();
            assert!(!message.contains("MfKQ") && !message.contains("***"));
        }
    }

    #[test]
    fn when_secret_decodes_to_fewer_than_the_minimum_bytes_should_be_rejected() {
        assert_eq!(
            SigningSecret::parse("changeme").unwrap_err(),
            SecretError::TooShort {
                len: 6,
                min: MIN_SECRET_BYTES
            }
        );
        let short = format!("whsec_{}", STANDARD.encode([7u8; MIN_SECRET_BYTES - 1]));
        assert_eq!(
            SigningSecret::parse(&short).unwrap_err(),
            SecretError::TooShort {
                len: MIN_SECRET_BYTES - 1,
                min: MIN_SECRET_BYTES
            }
        );
        let enough = format!("whsec_{}", STANDARD.encode([7u8; MIN_SECRET_BYTES]));
        assert!(SigningSecret::parse(&enough).is_ok());
        // from_bytes is for real key material and only refuses emptiness.
        assert!(SigningSecret::from_bytes(b"k").is_ok());
    }

    #[test]
    fn when_secret_padding_is_missing_should_decode_to_the_same_key() {
        // 24, 25 and 26 bytes encode with 0, 2 and 1 padding characters.
        for len in [24usize, 25, 26] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let padded = STANDARD.encode(&bytes);
            let pads = padded.len() - padded.trim_end_matches('=').len();
            let reference = SigningSecret::from_bytes(&bytes).unwrap();
            let expected = sign(&reference, ID, NOW, BODY);
            for missing in 0..=pads {
                let text = format!("whsec_{}", &padded[..padded.len() - missing]);
                let parsed = SigningSecret::parse(&text).unwrap();
                assert_eq!(parsed.to_whsec(), format!("whsec_{padded}"), "{text}");
                assert_eq!(sign(&parsed, ID, NOW, BODY), expected, "{text}");
            }
        }
    }

    #[test]
    fn when_secret_has_surrounding_whitespace_should_be_trimmed() {
        let s = secret(&format!("  {V1_SECRET}\r\n"));
        assert_eq!(sign(&s, V1_ID, V1_TS, V1_BODY), V1_SIG);
    }

    #[test]
    fn when_whsec_text_is_used_raw_as_the_key_should_not_verify() {
        let raw = SigningSecret::from_bytes(V1_SECRET.as_bytes()).unwrap();
        assert_ne!(sign(&raw, V1_ID, V1_TS, V1_BODY), V1_SIG);
        let v = verifier_for(vec![raw]);
        assert_eq!(
            v.verify(V1_ID, &V1_TS.to_string(), V1_SIG, V1_BODY, V1_TS),
            no_match(1)
        );
    }

    #[test]
    fn when_generating_secrets_should_give_distinct_32_byte_keys_that_round_trip() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert_ne!(a.to_whsec(), b.to_whsec());
        let encoded = a.to_whsec();
        let decoded = STANDARD
            .decode(encoded.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(decoded.len(), 32);
        // The generated key signs exactly like the same bytes loaded back from text.
        let reloaded = SigningSecret::parse(&encoded).unwrap();
        let from_bytes = SigningSecret::from_bytes(&decoded).unwrap();
        let header = sign(&a, ID, NOW, BODY);
        assert_eq!(sign(&reloaded, ID, NOW, BODY), header);
        assert_eq!(sign(&from_bytes, ID, NOW, BODY), header);
        assert_ne!(sign(&b, ID, NOW, BODY), header);
    }

    // ---- bodies ---------------------------------------------------------------------------------

    #[test]
    fn when_body_is_empty_should_verify() {
        let s = key(1);
        let header = sign(&s, ID, NOW, b"");
        let v = verifier_for(vec![s]);
        assert_eq!(v.verify(ID, &NOW.to_string(), &header, b"", NOW), Ok(NOW));
        assert_eq!(
            v.verify(ID, &NOW.to_string(), &header, b" ", NOW),
            no_match(1)
        );
    }

    #[test]
    fn when_body_is_not_utf8_should_verify() {
        // Not UTF-8: 0xff/0xfe never occur, 0x80 is a lone continuation byte, 0xc3 0x28 is
        // a broken two-byte sequence.
        let body: &[u8] = &[0xff, 0xfe, 0x00, 0x80, b'.', 0xc3, 0x28];
        let s = key(1);
        let header = sign(&s, ID, NOW, body);
        let v = verifier_for(vec![s]);
        assert_eq!(v.verify(ID, &NOW.to_string(), &header, body, NOW), Ok(NOW));
        let mut altered = body.to_vec();
        altered[6] = 0x29;
        assert_eq!(
            v.verify(ID, &NOW.to_string(), &header, &altered, NOW),
            no_match(1)
        );
    }

    // ---- rotation -------------------------------------------------------------------------------

    #[test]
    fn when_signed_with_either_rotated_secret_should_verify() {
        let (old, new) = (key(1), key(2));
        let v = verifier_for(vec![old.clone(), new.clone()]);
        assert_eq!(v.secret_count(), 2);
        for s in [&old, &new] {
            let header = sign(s, ID, NOW, BODY);
            assert_eq!(v.verify(ID, &NOW.to_string(), &header, BODY, NOW), Ok(NOW));
        }
        let stranger = sign(&key(3), ID, NOW, BODY);
        assert_eq!(
            v.verify(ID, &NOW.to_string(), &stranger, BODY, NOW),
            no_match(2)
        );
    }

    #[test]
    fn when_header_carries_one_entry_per_rotated_secret_should_verify() {
        let (old, new) = (key(1), key(2));
        let header = format!(
            "{} {}",
            sign(&old, ID, NOW, BODY),
            sign(&new, ID, NOW, BODY)
        );
        for secrets in [vec![old.clone()], vec![new.clone()], vec![old, new]] {
            let v = verifier_for(secrets);
            assert_eq!(v.verify(ID, &NOW.to_string(), &header, BODY, NOW), Ok(NOW));
        }
        let v = verifier_for(vec![key(3)]);
        assert_eq!(
            v.verify(ID, &NOW.to_string(), &header, BODY, NOW),
            no_match(1)
        );
    }

    #[test]
    fn when_verifier_has_no_secrets_should_report_static_not_configured() {
        let v = StandardVerifier::new(Vec::new(), TOL);
        assert_eq!(v.secret_count(), 0);
        let header = sign(&key(1), ID, NOW, BODY);
        assert_eq!(
            v.verify(ID, &NOW.to_string(), &header, BODY, NOW),
            Err(VerifyError::StaticNotConfigured)
        );
        assert_eq!(
            v.verify_ignoring_timestamp(ID, &NOW.to_string(), &header, BODY),
            Err(VerifyError::StaticNotConfigured)
        );
    }

    // ---- secret lists ---------------------------------------------------------------------------

    #[test]
    fn when_secret_list_uses_commas_newlines_or_mixed_separators_should_parse_all_in_order() {
        let a = V1_SECRET;
        let b = V2_SECRET;
        let c = V2_SECRET.strip_prefix("whsec_").unwrap();
        let cases = [
            (a.to_string(), 1),
            (format!("{a},{b}"), 2),
            (format!("{a}\n{b}"), 2),
            (format!("{a} {b}"), 2),
            (format!("{a}, {b}\n\t{c}"), 3),
            (format!("\n,{a},,\r\n {b} ,\n"), 2),
        ];
        for (text, count) in cases {
            let secrets = parse_secret_list(&text).unwrap();
            assert_eq!(secrets.len(), count, "{text:?}");
            assert_eq!(secrets[0].to_whsec(), a);
            if count > 1 {
                assert_eq!(secrets[1].to_whsec(), b);
            }
            if count > 2 {
                assert_eq!(secrets[2].to_whsec(), b);
            }
        }
    }

    #[test]
    fn when_secret_list_entry_is_invalid_should_name_its_index_but_not_its_text() {
        let err =
            parse_secret_list(&format!("{V1_SECRET}, whsec_bad!!secret, {V2_SECRET}")).unwrap_err();
        assert_eq!(
            err,
            SecretListError::Invalid {
                index: 2,
                source: SecretError::InvalidBase64
            }
        );
        let message = err.to_string();
        assert!(message.contains("#2"), "{message}");
        assert!(!message.contains("bad!!secret") && !message.contains("MfKQ"));

        // Index counts entries, not separators; the failing entry here is the third.
        let err =
            parse_secret_list(&format!(",,{V1_SECRET},\n\n{V2_SECRET} changeme")).unwrap_err();
        assert_eq!(
            err,
            SecretListError::Invalid {
                index: 3,
                source: SecretError::TooShort {
                    len: 6,
                    min: MIN_SECRET_BYTES
                }
            }
        );
        assert!(!err.to_string().contains("changeme"));
    }

    #[test]
    fn when_secret_list_is_empty_should_be_rejected() {
        for text in ["", "   ", ",,\n,", "\t\r\n"] {
            assert_eq!(
                parse_secret_list(text).unwrap_err(),
                SecretListError::Empty,
                "{text:?}"
            );
        }
    }

    // ---- redaction ------------------------------------------------------------------------------

    #[test]
    fn when_debug_printing_secrets_and_verifiers_should_redact_key_material() {
        let s = secret(V1_SECRET);
        assert_eq!(format!("{s:?}"), "SigningSecret(<redacted>)");
        assert_eq!(format!("{s:#?}"), "SigningSecret(<redacted>)");
        let list = parse_secret_list(&format!("{V1_SECRET},{V2_SECRET}")).unwrap();
        let listed = format!("{list:?}");
        assert!(
            !listed.contains("MfKQ") && !listed.contains("C2FV"),
            "{listed}"
        );
        let v = verifier_for(list);
        let shown = format!("{v:?}");
        assert_eq!(
            shown,
            "StandardVerifier { secrets: 2, tolerance_secs: 300 }"
        );
    }

    #[test]
    fn when_verification_fails_error_messages_should_not_echo_inputs() {
        let v = verifier_for(vec![secret(V1_SECRET)]);
        let ts = V1_TS.to_string();
        let b64 = b64_part(V1_SIG);
        let failures = [
            v.verify(V1_ID, &ts, V1_SIG, b"tampered-body", V1_TS),
            v.verify(V1_ID, "hello", V1_SIG, V1_BODY, V1_TS),
            v.verify(V1_ID, &ts, &format!("v2,{b64}"), V1_BODY, V1_TS),
            v.verify(V1_ID, &ts, V1_SIG, V1_BODY, V1_TS + 10_000),
        ];
        for failure in failures {
            let message = failure.unwrap_err().to_string();
            for secret_text in [b64, "MfKQ9r8G", "tampered-body", "hello", V1_ID] {
                assert!(!message.contains(secret_text), "{message}");
            }
        }
    }

    // ---- seeded round-trip fuzzing --------------------------------------------------------------

    #[test]
    fn when_random_deliveries_are_signed_should_round_trip_and_detect_tampering() {
        let mut rng = StdRng::seed_from_u64(0x5EED_0FB0_D1E5);
        for round in 0..400 {
            let mut key_bytes = vec![0u8; rng.random_range(1..=80)];
            rng.fill(&mut key_bytes[..]);
            let s = SigningSecret::from_bytes(&key_bytes).unwrap();
            let id: String = (0..rng.random_range(1..40))
                .map(|_| char::from(rng.random_range(b'!'..=b'~')))
                .collect();
            let ts: i64 = rng.random_range(0..=4_000_000_000);
            let mut body = vec![0u8; rng.random_range(0..1024)];
            rng.fill(&mut body[..]);
            let tolerance: u64 = rng.random_range(0..=600);
            let offset = rng.random_range(-(tolerance as i64)..=tolerance as i64);
            let now = ts + offset;

            let header = sign(&s, &id, ts, &body);
            let v = StandardVerifier::new(vec![key(0), s], tolerance);
            let ts_text = ts.to_string();
            assert_eq!(
                v.verify(&id, &ts_text, &header, &body, now),
                Ok(ts),
                "round {round}"
            );

            if !body.is_empty() {
                let mut tampered = body.clone();
                let at = rng.random_range(0..tampered.len());
                tampered[at] ^= 1 << rng.random_range(0..8);
                assert_eq!(
                    v.verify(&id, &ts_text, &header, &tampered, now),
                    no_match(2),
                    "round {round}"
                );
            }
            // Every signed piece counts: another id, timestamp or separator placement fails.
            let next_ts = (ts + 1).to_string();
            assert_eq!(
                v.verify_ignoring_timestamp(&id, &next_ts, &header, &body),
                no_match(2),
                "round {round}"
            );
            let mut shifted = b".".to_vec();
            shifted.extend_from_slice(&body);
            let (id_head, id_tail) = id.split_at(id.len() - 1);
            let mut moved = id_tail.as_bytes().to_vec();
            moved.extend_from_slice(&shifted);
            if id_head.is_empty() {
                assert!(
                    v.verify_ignoring_timestamp(id_head, &ts_text, &header, &body)
                        .is_err()
                );
            } else {
                // `{head}.{ts}.{tail}.{body}` is not `{head}{tail}.{ts}.{body}`.
                assert_eq!(
                    v.verify_ignoring_timestamp(id_head, &ts_text, &header, &moved),
                    no_match(2),
                    "round {round}"
                );
            }
            let mut truncated = body.clone();
            truncated.push(b'x');
            assert_eq!(
                v.verify_ignoring_timestamp(&id, &ts_text, &header, &truncated),
                no_match(2),
                "round {round}"
            );
        }
    }
}
