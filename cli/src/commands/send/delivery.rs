//! A delivery as Gemini sends it: the signature (static HMAC or a dynamic RS256 JWT), the
//! headers and exact body bytes, the POST and the answer, with plain-words explanations of a
//! failed connection. `demo` sends its deliveries with the same code.

use std::net::IpAddr;
use std::time::Duration;

use gemini_hooks::domain::verify::standard::{SigningSecret, sign};
use gemini_hooks::domain::verify::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, sha256_hex};
use serde_json::{Value, json};

use crate::support::error::CliError;
use crate::support::keys::LocalKey;

/// How long a dynamic token is valid after its `iat` (Gemini does not document it).
const JWT_LIFETIME_SECS: i64 = 300;
/// `iss` of locally signed tokens, so nobody mistakes them for Gemini's.
const LOCAL_ISSUER: &str = "gemini-hooks-cli (local test key)";

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
        audience: String,
        issuer: Option<String>,
        /// Add a `body_sha256` claim (Gemini documents none).
        bind_body: bool,
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
                bind_body,
            } => {
                // What a receiver can rely on (docs/gemini.md §2): issued-at, expiry, a
                // single-use id and the audience. The body stays unbound unless asked for.
                let mut claims = json!({
                    "iss": issuer.as_deref().unwrap_or(LOCAL_ISSUER),
                    "aud": audience,
                    "iat": timestamp,
                    "exp": timestamp + JWT_LIFETIME_SECS,
                    "jti": id,
                });
                if let (true, Value::Object(map)) = (*bind_body, &mut claims) {
                    map.insert("body_sha256".into(), json!(sha256_hex(body)));
                }
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
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

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
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            let why = match reqwest::Url::parse(url) {
                Ok(parsed) if e.is_connect() => connect_failure(&parsed, &e).await,
                _ => describe(&e),
            };
            return Err(CliError::Http(format!("POST {url} failed: {why}")));
        }
    };
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
    if e.is_timeout() {
        "no answer in time (--timeout)".to_owned()
    } else {
        error_chain(e)
    }
}

/// `e` and its sources, as one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Whether `host` (as in a URL, IPv6 in brackets) is this machine.
pub fn is_local_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why no connection was made, in the terms that tell the cases apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectFailure {
    /// The name does not resolve.
    Dns,
    /// Resolved (or an address), nothing accepted the connection.
    Refused,
}

/// The explanation of a failed connection to `url`.
async fn connect_failure(url: &reqwest::Url, e: &reqwest::Error) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    // reqwest reports a failed lookup as a connect error too; ask the resolver to tell them
    // apart (an IP address always "resolves").
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let resolves = tokio::net::lookup_host((bare, port))
        .await
        .is_ok_and(|mut addrs| addrs.next().is_some());
    let kind = if resolves {
        ConnectFailure::Refused
    } else {
        ConnectFailure::Dns
    };
    explain_connect(host, port, kind, &error_chain(e))
}

fn explain_connect(host: &str, port: u16, kind: ConnectFailure, cause: &str) -> String {
    match kind {
        ConnectFailure::Dns => format!(
            "the host name `{host}` does not resolve (DNS): check the --url for a typo, or \
             your network / VPN"
        ),
        ConnectFailure::Refused if is_local_host(host) => format!(
            "nothing is listening on {host}:{port}: is `gemini-hooks dev` running? Start it in \
             another terminal (it listens on 127.0.0.1:9000 unless --addr says otherwise), or \
             pass --url"
        ),
        ConnectFailure::Refused => format!(
            "could not connect to {host}:{port} ({cause}): check the --url, and that the \
             endpoint is deployed and reachable from this machine"
        ),
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
    fn connection_failures_say_which_kind() {
        let dns = explain_connect("nope.invalid", 443, ConnectFailure::Dns, "x");
        assert!(
            dns.contains("`nope.invalid` does not resolve (DNS)"),
            "{dns}"
        );
        let local = explain_connect("127.0.0.1", 9000, ConnectFailure::Refused, "x");
        assert!(
            local.contains("nothing is listening on 127.0.0.1:9000"),
            "{local}"
        );
        assert!(local.contains("is `gemini-hooks dev` running?"), "{local}");
        let remote = explain_connect("hooks.example.com", 443, ConnectFailure::Refused, "refused");
        assert!(
            remote.contains("could not connect to hooks.example.com:443 (refused)"),
            "{remote}"
        );
        assert!(!remote.contains("gemini-hooks dev"), "{remote}");
        for host in ["localhost", "127.0.0.1", "[::1]", "127.1.2.3"] {
            assert!(is_local_host(host), "{host}");
        }
        assert!(!is_local_host("example.com"));
        assert!(!is_local_host("10.0.0.1"));
    }

    #[test]
    fn dynamic_tokens_carry_iat_exp_jti_aud_and_a_digest_only_when_asked() {
        let key =
            LocalKey::from_pem(include_str!("../../../../tests/fixtures/test-rsa-1.pem")).unwrap();
        let signer = |bind_body| Signer::Dynamic {
            key: Box::new(
                LocalKey::from_pem(include_str!("../../../../tests/fixtures/test-rsa-1.pem"))
                    .unwrap(),
            ),
            kid: key.kid().to_owned(),
            audience: "aud-1".into(),
            issuer: None,
            bind_body,
        };
        let claims_of = |token: &str| -> Value {
            let part = token.split('.').nth(1).unwrap();
            serde_json::from_slice(
                &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part)
                    .unwrap(),
            )
            .unwrap()
        };
        let token = signer(false)
            .signature("msg_1", 1_000, b"{}", false)
            .unwrap();
        let claims = claims_of(&token);
        assert_eq!(claims["aud"], "aud-1");
        assert_eq!(claims["iat"], 1_000);
        assert_eq!(claims["exp"], 1_300);
        assert_eq!(claims["jti"], "msg_1");
        assert!(claims.get("body_sha256").is_none(), "{claims}");
        let token = signer(true)
            .signature("msg_1", 1_000, b"{}", false)
            .unwrap();
        assert_eq!(claims_of(&token)["body_sha256"], sha256_hex(b"{}"));
    }
}
