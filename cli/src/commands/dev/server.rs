//! The HTTP side of `dev`: every path answers like the receiver Lambda's function URL, through
//! the same [`handle`] and [`Receiver`] use case; `--local-jwks` also serves the local key's
//! JWKS at `/.well-known/jwks.json`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use gemini_hooks::usecases::http::{HttpReply, handle};
use gemini_hooks::usecases::receive::Receiver;
use http::{HeaderMap, Method, StatusCode};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::support::error::CliError;

/// Binds `addr` (`HOST:PORT`; a name such as `localhost` is resolved, IPv4 first) before the
/// verifier is configured, so the JWKS URL of `--local-jwks` (which names the port) is known.
pub async fn bind(addr: &str) -> Result<TcpListener, CliError> {
    let mut candidates: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| {
            CliError::Usage(format!(
                "--addr {addr}: {e} (expected HOST:PORT, e.g. 127.0.0.1:9000 or localhost:9000)"
            ))
        })?
        .collect();
    // `send` and the printed URLs default to 127.0.0.1, so prefer IPv4 when a name has both.
    candidates.sort_by_key(|a| !a.is_ipv4());
    let mut last = None;
    for candidate in candidates {
        match TcpListener::bind(candidate).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some((candidate, e)),
        }
    }
    Err(match last {
        Some((candidate, e)) => CliError::Failed(format!(
            "cannot listen on {candidate}: {e} (another program, or another `gemini-hooks dev` \
             with another --data-dir, may use the port: pass --addr)"
        )),
        None => CliError::Usage(format!("--addr {addr}: the name resolves to no address")),
    })
}

/// How long a client may take to send a request's headers (and, on a kept-alive connection, to
/// start the next request) before the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body: 408 after that.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones wait in the listen backlog, so a flood of
/// half-sent requests cannot hold every socket (each held one is cut by the timeouts above).
pub const MAX_CONNECTIONS: usize = 64;

/// Serves `receiver` (and the JWKS `local_jwks`, when given) on `listener` until `stop` turns
/// true; requests already being answered then finish.
pub(super) fn spawn(
    listener: TcpListener,
    receiver: Receiver,
    local_jwks: Option<Value>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut app = Router::new();
    if let Some(jwks) = local_jwks {
        let jwks = Arc::new(jwks);
        app = app.route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let jwks = Arc::clone(&jwks);
                async move { axum::Json((*jwks).clone()) }
            }),
        );
    }
    let app = app.fallback(receive).with_state(Arc::new(receiver));
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let graceful = GracefulShutdown::new();
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        tokio::pin!(stopped);
        loop {
            // Accept only with a free slot: the rest wait in the kernel's backlog.
            let slot = tokio::select! {
                () = &mut stopped => break,
                slot = Arc::clone(&slots).acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let (stream, _) = tokio::select! {
                () = &mut stopped => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %e, "could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let service = TowerToHyperService::new(app.clone());
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                // A client that stalls or goes away ends its own connection only.
                let _ = connection.await;
                drop(slot);
            });
        }
        graceful.shutdown().await;
    })
}

/// Reads the body up to `limit` bytes; `Err` is the answer to give instead.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, HttpReply> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(HttpReply::too_large(limit));
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| HttpReply::bad_body("the request body could not be read"))?;
        if buf.len() + chunk.len() > limit {
            return Err(HttpReply::too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn to_response(reply: HttpReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, reply.body).into_response();
    for (name, value) in reply.headers {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Every path answers like the function URL does.
async fn receive(
    State(receiver): State<Arc<Receiver>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limit = receiver.limits().max_body_bytes;
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, read_body(&headers, body, limit))
        .await
        .unwrap_or_else(|_| Err(HttpReply::body_timeout(BODY_READ_TIMEOUT.as_secs())));
    let bytes = match read {
        Ok(b) => b,
        Err(reply) => {
            tracing::info!(
                status = reply.status,
                "delivery rejected before verification"
            );
            return to_response(reply);
        }
    };
    to_response(handle(&receiver, &method, &headers, &bytes, None).await)
}
