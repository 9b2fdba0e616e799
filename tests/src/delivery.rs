//! Building deliveries the way Gemini sends them: Standard Webhooks headers over exact bytes,
//! and Lambda function URL (payload 2.0) events around them.

use base64::Engine;
use gemini_hooks::domain::verify::standard::{SigningSecret, sign};
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

/// The first Standard Webhooks reference secret; tests sign with it.
pub const TEST_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A parsed [`TEST_SECRET`].
pub fn test_secret() -> SigningSecret {
    match SigningSecret::parse(TEST_SECRET) {
        Ok(s) => s,
        Err(e) => panic!("test secret must parse: {e}"),
    }
}

/// A realistic `batch.succeeded` body for job `batch_id`.
pub fn batch_succeeded_body(batch_id: &str) -> Vec<u8> {
    json!({
        "type": "batch.succeeded",
        "version": "v1",
        "timestamp": "2026-11-22T12:00:00Z",
        "data": {"id": batch_id, "output_file_uri": format!("files/{batch_id}-results")}
    })
    .to_string()
    .into_bytes()
}

/// Standard Webhooks headers for `body`, signed with `secret`.
pub fn signed_headers(
    secret: &SigningSecret,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    vec![
        ("webhook-id".to_owned(), id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
        (
            "webhook-signature".to_owned(),
            sign(secret, id, timestamp, body),
        ),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]
}

/// The same headers as an `http::HeaderMap`.
pub fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// A Lambda function URL request event (payload format 2.0) carrying `body`, base64-encoded
/// when `base64` is set (as AWS does for non-text content types).
pub fn function_url_event(
    method: &str,
    headers: &[(String, String)],
    body: &[u8],
    base64: bool,
) -> Value {
    let mut header_obj = serde_json::Map::new();
    for (k, v) in headers {
        header_obj.insert(k.to_ascii_lowercase(), Value::String(v.clone()));
    }
    header_obj.insert(
        "host".into(),
        Value::String("abc.lambda-url.us-east-1.on.aws".into()),
    );
    let body_text = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": header_obj,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc",
            "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc",
            "http": {
                "method": method,
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "Google-Webhooks"
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": "22/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1_795_000_000_000_i64
        },
        "body": body_text,
        "isBase64Encoded": base64
    })
}
