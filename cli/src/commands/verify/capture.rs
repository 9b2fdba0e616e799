//! The captured delivery: headers from a file of `Name: value` lines (or JSON) and flags, the
//! raw body, and the flags that say how to check it, read into one [`Input`].

use std::io::Write;

use gemini_hooks::config::{defaults, env};
use gemini_hooks::domain::verify::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::args::VerifyArgs;
use super::keys::{self, JwtInput};
use crate::support::error::CliError;
use crate::support::output::line;
use crate::support::util::{now_secs, read_input};

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

/// Reads the capture and the flags: the headers first, then the body (a note on stdout when the
/// receiver would refuse its size), then the JWT keys.
pub fn read(args: &VerifyArgs, out: &mut dyn Write) -> Result<Input, CliError> {
    let headers = collect_headers(args)?;
    let body = read_input(&args.body)?;
    let limit = defaults::MAX_BODY_BYTES;
    if body.len() > limit {
        line(
            out,
            &format!(
                "note: the body is {} bytes; the receiver's default limit is {limit} \
                 ({}) and would answer 413.",
                body.len(),
                env::WEBHOOK_MAX_BODY_BYTES
            ),
        )?;
    }
    Ok(Input {
        headers,
        body,
        secrets: args.secret.clone(),
        tolerance_secs: args.tolerance,
        now_secs: args.now.unwrap_or_else(now_secs),
        ignore_timestamp: args.ignore_timestamp,
        jwt: keys::jwt_input(args)?,
    })
}

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
}
