//! A fake Lambda Runtime API, so tests run the real function binaries exactly as Lambda does.
//!
//! The binaries are built with `lambda_runtime`/`lambda_http`; they read `AWS_LAMBDA_RUNTIME_API`,
//! long-poll `GET /2018-06-01/runtime/invocation/next`, and post the handler's outcome to
//! `…/invocation/{id}/response` or `…/invocation/{id}/error`. This server implements those
//! endpoints (plus `/runtime/init/error`) on `127.0.0.1:0`, so a test can invoke a function,
//! await its answer, and read what it logged — the whole main, config and runtime loop included,
//! which calling the handler directly would skip.

use std::collections::HashMap;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Function name the fake reports (ARN) and `spawn_function` sets; `extra_env` may override it.
pub const FUNCTION_NAME: &str = "gemini-hooks-test";
/// Memory size `spawn_function` advertises, matching the template's receiver.
pub const MEMORY_SIZE_MB: u32 = 256;
/// Lambda's synchronous response payload limit; larger bodies get 413 as on Lambda.
const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// Time `invoke` waits past the deadline for a response already on the wire. Lambda itself
/// would have stopped the function by then; the grace keeps tests from racing that edge.
const DEADLINE_GRACE: Duration = Duration::from_millis(500);

/// Why an invocation produced no response.
#[derive(Debug, Clone, PartialEq)]
pub enum InvokeError {
    /// The function posted to `/invocation/{id}/error`; the body (`errorType`, `errorMessage`).
    FunctionError(Value),
    /// The function posted to `/runtime/init/error` before answering.
    InitError(Value),
    /// No response or error within the deadline (plus a short grace): the function is hung,
    /// crashed, or was never started.
    Timeout,
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FunctionError(v) => write!(f, "function error: {v}"),
            Self::InitError(v) => write!(f, "init error: {v}"),
            Self::Timeout => f.write_str("invocation timed out"),
        }
    }
}

impl std::error::Error for InvokeError {}

struct Invocation {
    id: String,
    payload: Value,
    deadline_ms: u64,
}

struct Shared {
    queue_tx: mpsc::UnboundedSender<Invocation>,
    /// `/next` handlers take turns on the queue; one waits, the others wait for the lock.
    queue_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    /// Invocations still awaited by `invoke`; an id missing here was cancelled (timed out).
    waiters: Mutex<HashMap<String, oneshot::Sender<Result<Value, InvokeError>>>>,
    first_poll: OnceLock<Instant>,
    init_error: watch::Sender<Option<Value>>,
    function_arn: String,
}

/// A running fake Runtime API. Stops serving when dropped.
pub struct RuntimeApi {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    server: JoinHandle<()>,
}

impl RuntimeApi {
    /// Binds `127.0.0.1:0` and starts serving.
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn start() -> Self {
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue_tx,
            queue_rx: tokio::sync::Mutex::new(queue_rx),
            waiters: Mutex::new(HashMap::new()),
            first_poll: OnceLock::new(),
            init_error: watch::Sender::new(None),
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION_NAME}"),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .layer(DefaultBodyLimit::max(MAX_PAYLOAD_BYTES))
            .with_state(shared.clone());
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("fake Runtime API: cannot bind 127.0.0.1:0: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("fake Runtime API: no local address: {e}"),
        };
        let server = tokio::spawn(async move {
            // Only ends on an accept error; the test then sees timeouts.
            let _ = axum::serve(listener, app).await;
        });
        Self {
            shared,
            addr,
            server,
        }
    }

    /// `127.0.0.1:PORT`, the value for `AWS_LAMBDA_RUNTIME_API` (no scheme, as on Lambda).
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The function ARN sent in `Lambda-Runtime-Invoked-Function-Arn`.
    pub fn function_arn(&self) -> &str {
        &self.shared.function_arn
    }

    /// Queues one invocation of `payload` and waits for the function's response or error.
    ///
    /// The function sees `deadline` as `Lambda-Runtime-Deadline-Ms` (epoch ms from now); `invoke`
    /// gives up with [`InvokeError::Timeout`] shortly after it. A timed-out invocation that no
    /// function has picked up yet is withdrawn, so it cannot leak into a later invoke.
    pub async fn invoke(&self, payload: Value, deadline: Duration) -> Result<Value, InvokeError> {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.waiters).insert(id.clone(), tx);
        let deadline_ms = epoch_ms(SystemTime::now() + deadline);
        // The receiver lives in `shared`, so the send cannot fail while `self` exists.
        let _ = self.shared.queue_tx.send(Invocation {
            id: id.clone(),
            payload,
            deadline_ms,
        });
        let mut init = self.shared.init_error.subscribe();
        let outcome = tokio::select! {
            r = tokio::time::timeout(deadline + DEADLINE_GRACE, rx) => match r {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) | Err(_) => Err(InvokeError::Timeout),
            },
            v = init.wait_for(Option::is_some) => match v {
                Ok(v) => Err(InvokeError::InitError(v.clone().unwrap_or(Value::Null))),
                Err(_) => Err(InvokeError::Timeout),
            },
        };
        lock(&self.shared.waiters).remove(&id);
        outcome
    }

    /// When the function first called `/next`, i.e. finished its init (cold-start measurements).
    pub fn first_poll_at(&self) -> Option<Instant> {
        self.shared.first_poll.get().copied()
    }

    /// The body the function posted to `/runtime/init/error`, if any.
    pub fn init_error(&self) -> Option<Value> {
        self.shared.init_error.borrow().clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(s): State<Arc<Shared>>) -> Response {
    s.first_poll.get_or_init(Instant::now);
    let mut queue = s.queue_rx.lock().await;
    let inv = loop {
        let Some(inv) = queue.recv().await else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        // Skip invocations whose `invoke` already gave up.
        if lock(&s.waiters).contains_key(&inv.id) {
            break inv;
        }
    };
    drop(queue);
    let body = match serde_json::to_vec(&inv.payload) {
        Ok(b) => b,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let built = Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .header("Lambda-Runtime-Aws-Request-Id", &inv.id)
        .header("Lambda-Runtime-Deadline-Ms", inv.deadline_ms.to_string())
        .header("Lambda-Runtime-Invoked-Function-Arn", &s.function_arn)
        .header("Lambda-Runtime-Trace-Id", trace_id())
        .body(Body::from(body));
    built.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn response(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    // Buffered responses are JSON; anything else is kept as text so a test can still see it.
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    complete(&s, &id, Ok(value))
}

async fn error(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut value = parse_error_body(&body);
    if let (Some(obj), Some(kind)) = (
        value.as_object_mut(),
        headers
            .get("Lambda-Runtime-Function-Error-Type")
            .and_then(|v| v.to_str().ok()),
    ) {
        obj.entry("functionErrorType").or_insert(json!(kind));
    }
    complete(&s, &id, Err(InvokeError::FunctionError(value)))
}

async fn init_error(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    s.init_error.send_replace(Some(parse_error_body(&body)));
    accepted()
}

fn complete(s: &Shared, id: &str, outcome: Result<Value, InvokeError>) -> Response {
    match lock(&s.waiters).remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            accepted()
        }
        // Lambda answers 400 for a request id it is not waiting on (e.g. after a timeout).
        None => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "errorType": "InvalidRequestID",
                "errorMessage": "no invocation is waiting for this request id",
            })),
        )
            .into_response(),
    }
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

fn parse_error_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(body) }))
}

/// An X-Ray style trace header, random per invocation.
fn trace_id() -> String {
    let r = uuid::Uuid::new_v4().simple().to_string();
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=0",
        &r[..24],
        &r[16..]
    )
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Locks a std mutex, ignoring poisoning: the data is plain bookkeeping, still usable after a
/// panicking test thread.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Captured output of a spawned function.
#[derive(Default)]
struct Output {
    stdout: String,
    stderr: String,
    /// Both streams interleaved in arrival order.
    all: String,
}

/// A function binary running under a [`RuntimeApi`]. Killed when dropped.
pub struct FunctionProcess {
    child: Child,
    output: Arc<Mutex<Output>>,
    readers: Vec<JoinHandle<()>>,
}

/// Spawns `bin` under `api` with the environment Lambda provides (the variables
/// `lambda_runtime` 1.5 requires, log group/stream, JSON log format as in the template, region
/// defaults) plus `extra_env`, which wins over the defaults. The test process's environment is
/// inherited, so `AWS_ENDPOINT_URL` and the test credentials from `scripts/test.sh` reach the
/// function. stdout and stderr are captured; see [`FunctionProcess::logs`].
///
/// # Panics
/// If the binary cannot be started.
pub async fn spawn_function(
    bin: &Path,
    api: &RuntimeApi,
    extra_env: &[(&str, String)],
) -> FunctionProcess {
    let mut cmd = Command::new(bin);
    cmd.env("AWS_LAMBDA_RUNTIME_API", api.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME)
        .env(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            MEMORY_SIZE_MB.to_string(),
        )
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{FUNCTION_NAME}"),
        )
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            format!("2026/01/01/[$LATEST]{}", uuid::Uuid::new_v4().simple()),
        )
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("_HANDLER", "bootstrap");
    for key in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if std::env::var_os(key).is_none() {
            cmd.env(key, "us-east-1");
        }
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot start {}: {e}", bin.display()),
    };
    let output = Arc::new(Mutex::new(Output::default()));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(capture(out, output.clone(), false));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(capture(err, output.clone(), true));
    }
    FunctionProcess {
        child,
        output,
        readers,
    }
}

fn capture<R>(stream: R, output: Arc<Mutex<Output>>, is_stderr: bool) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut o = lock(&output);
            let own = if is_stderr {
                &mut o.stderr
            } else {
                &mut o.stdout
            };
            own.push_str(&line);
            own.push('\n');
            o.all.push_str(&line);
            o.all.push('\n');
        }
    })
}

impl FunctionProcess {
    /// Everything the function wrote so far, stdout and stderr interleaved by line.
    pub fn logs(&self) -> String {
        lock(&self.output).all.clone()
    }

    /// What the function wrote to stdout so far.
    pub fn stdout(&self) -> String {
        lock(&self.output).stdout.clone()
    }

    /// What the function wrote to stderr so far.
    pub fn stderr(&self) -> String {
        lock(&self.output).stderr.clone()
    }

    /// Waits until the logs contain `needle` (output is read asynchronously, so a line may
    /// arrive just after the invocation's response). Returns whether it appeared in time.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.logs().contains(needle) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The OS process id, if the process is still running.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the process, waits for it, and lets the log readers finish.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
        for r in self.readers.drain(..) {
            let _ = r.await;
        }
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

/// One SQS record as Lambda's event source mapping delivers it (receive count 1).
pub fn sqs_record(message_id: &str, body: &str, queue_arn: &str) -> Value {
    json!({
        "messageId": message_id,
        "receiptHandle": format!("rh-{message_id}"),
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795000000000",
                       "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1795000000001"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1"
    })
}

/// An SQS event of `bodies`, message ids `m-0`, `m-1`, …
pub fn sqs_event<S: AsRef<str>>(bodies: &[S], queue_arn: &str) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| sqs_record(&format!("m-{i}"), body.as_ref(), queue_arn))
        .collect();
    json!({ "Records": records })
}

/// The message ids a consumer's answer asks SQS to redeliver (`batchItemFailures`).
pub fn failed_ids(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["itemIdentifier"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
