//! A tiny Gemini-compatible endpoint for `gemini-hooks demo` and `dev --sample-gemini`: it
//! serves SAMPLE batches the way the real API shapes them — a `google.longrunning.Operation`
//! from `GET /v1beta/batches/{id}` and the JSONL from
//! `GET /download/v1beta/files/{id}:download?alt=media`. Nothing here talks to Google.
//!
//! The demo's two batches are fixed. Any other `batches/sample-…` id (what `gemini-hooks send`
//! makes up) is a sample batch too, in the state its id names (`…-failed-…`, `…-expired-…`,
//! `…-cancelled-…`), else succeeded with the bundled results file.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::support::error::CliError;

/// The bundled results file: six answers, one error line, one truncated (malformed) line.
pub const SAMPLE_RESULTS: &str = include_str!("../../samples/batch-results.jsonl");
/// The API key the sample endpoint expects (it is not a real key).
pub const SAMPLE_API_KEY: &str = "sample-key-not-a-real-gemini-key";
pub const SUCCEEDED_BATCH: &str = "batches/demo-sample-succeeded";
pub const FAILED_BATCH: &str = "batches/demo-sample-failed";
const RESULTS_FILE: &str = "files/demo-sample-results";
/// Prefix of the made-up sample batch ids (`gemini-hooks send` without `--job`).
pub const SAMPLE_ID_PREFIX: &str = "batches/sample-";

struct Sample {
    operations: HashMap<String, Value>,
    files: HashMap<String, &'static str>,
}

fn operation(name: &str, state: &str, stats: Value, extra: Value) -> Value {
    let mut op = json!({
        "name": name,
        "metadata": {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
            "name": name,
            "model": "models/gemini-2.5-flash",
            "displayName": "gemini-hooks demo (SAMPLE DATA)",
            "createTime": "2026-11-22T10:00:00Z",
            "updateTime": "2026-11-22T11:00:00Z",
            "state": state,
            "batchStats": stats,
        },
        "done": true,
    });
    if let (Value::Object(op), Value::Object(extra)) = (&mut op, extra) {
        op.extend(extra);
    }
    op
}

fn succeeded_operation(name: &str) -> Value {
    operation(
        name,
        "BATCH_STATE_SUCCEEDED",
        json!({"requestCount": "8", "successfulRequestCount": "6", "failedRequestCount": "1"}),
        json!({"response": {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput",
            "responsesFile": RESULTS_FILE,
        }}),
    )
}

fn failed_operation(name: &str) -> Value {
    operation(
        name,
        "BATCH_STATE_FAILED",
        json!({"requestCount": "3"}),
        json!({"error": {"code": 3, "message": "SAMPLE: the input file contains invalid requests"}}),
    )
}

/// The sample batch behind a made-up `batches/sample-…` id: the state its id names.
fn made_up_operation(name: &str) -> Option<Value> {
    let rest = name.strip_prefix(SAMPLE_ID_PREFIX)?;
    let op = if rest.contains("failed") {
        failed_operation(name)
    } else if rest.contains("expired") {
        operation(
            name,
            "BATCH_STATE_EXPIRED",
            json!({"requestCount": "3"}),
            json!({}),
        )
    } else if rest.contains("cancelled") {
        operation(
            name,
            "BATCH_STATE_CANCELLED",
            json!({"requestCount": "3"}),
            json!({}),
        )
    } else {
        succeeded_operation(name)
    };
    Some(op)
}

fn sample() -> Sample {
    Sample {
        operations: HashMap::from([
            (
                SUCCEEDED_BATCH.to_owned(),
                succeeded_operation(SUCCEEDED_BATCH),
            ),
            (FAILED_BATCH.to_owned(), failed_operation(FAILED_BATCH)),
        ]),
        files: HashMap::from([(RESULTS_FILE.to_owned(), SAMPLE_RESULTS)]),
    }
}

fn api_error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": status.canonical_reason()}});
    (status, axum::Json(body)).into_response()
}

fn authorised(headers: &HeaderMap) -> bool {
    headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|k| k == SAMPLE_API_KEY)
}

async fn get_batch(
    State(s): State<Arc<Sample>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorised(&headers) {
        return api_error(StatusCode::FORBIDDEN, "API key not valid (sample endpoint)");
    }
    let name = format!("batches/{id}");
    match s
        .operations
        .get(&name)
        .cloned()
        .or_else(|| made_up_operation(&name))
    {
        Some(op) => axum::Json(op).into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            "batch not found (sample endpoint: it knows batches/sample-… ids only)",
        ),
    }
}

async fn download(
    State(s): State<Arc<Sample>>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Response {
    if !authorised(&headers) {
        return api_error(StatusCode::FORBIDDEN, "API key not valid (sample endpoint)");
    }
    let name = format!("files/{}", file.strip_suffix(":download").unwrap_or(&file));
    match s.files.get(&name) {
        // No Range support: the client skips what it already has when it gets a 200.
        Some(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/jsonl")],
            *body,
        )
            .into_response(),
        None => api_error(StatusCode::NOT_FOUND, "file not found (sample endpoint)"),
    }
}

/// Serves the sample endpoint on `127.0.0.1` (free port) until the process ends; returns its
/// base URL.
pub async fn start() -> Result<(String, SocketAddr), CliError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::Failed(format!("cannot start the sample Gemini endpoint: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(format!("cannot start the sample Gemini endpoint: {e}")))?;
    let app = Router::new()
        .route("/v1beta/batches/{id}", get(get_batch))
        .route("/download/v1beta/files/{file}", get(download))
        .with_state(Arc::new(sample()));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), addr))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use gemini_hooks::adapters::gemini::{GeminiClient, GeminiSettings};
    use gemini_hooks::domain::gemini::{BatchOutput, BatchState};
    use gemini_hooks::domain::results::parse_line;

    #[tokio::test]
    async fn the_real_client_reads_the_sample_batches_and_file() {
        let (base, _) = start().await.unwrap();
        let mut settings = GeminiSettings::new(SAMPLE_API_KEY);
        settings.base_url = base;
        let client = GeminiClient::new(settings, reqwest::Client::new());
        use gemini_hooks::ports::gemini::GeminiApi as _;

        let ok = client.get_batch(SUCCEEDED_BATCH).await.unwrap();
        assert_eq!(ok.state, BatchState::Succeeded);
        assert_eq!(ok.output, Some(BatchOutput::File(RESULTS_FILE.into())));
        let failed = client.get_batch(FAILED_BATCH).await.unwrap();
        assert_eq!(failed.state, BatchState::Failed);
        assert_eq!(failed.error.unwrap().code, Some(3));

        // A made-up sample id is a batch in the state it names.
        let made_up = client.get_batch("batches/sample-1a2b").await.unwrap();
        assert_eq!(made_up.state, BatchState::Succeeded);
        assert_eq!(made_up.output, Some(BatchOutput::File(RESULTS_FILE.into())));
        let made_up = client
            .get_batch("batches/sample-failed-1a2b")
            .await
            .unwrap();
        assert_eq!(made_up.state, BatchState::Failed);
        let made_up = client
            .get_batch("batches/sample-expired-1a2b")
            .await
            .unwrap();
        assert_eq!(made_up.state, BatchState::Expired);
        assert!(client.get_batch("batches/real-batch").await.is_err());

        let mut stream = client.download(RESULTS_FILE, 0).await.unwrap();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(bytes, SAMPLE_RESULTS.as_bytes());
        let lines: Vec<_> = SAMPLE_RESULTS.lines().collect();
        assert_eq!(lines.len(), 8);
        assert_eq!(parse_line(lines[0].as_bytes(), 1).key, "capital-france");
    }
}
