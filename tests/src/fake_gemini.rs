//! A fake Gemini Batch API on a real local HTTP server, with fault injection.
//!
//! It serves what the consumer reads: `GET /v1beta/batches/{id}`, `GET /v1beta/batches` (paged),
//! `GET /download/v1beta/files/{id}:download?alt=media` (with `Range`), and whatever other
//! resource a test puts under `GET /v1beta/<name>` (interactions, video operations, files). Faults are queued per
//! path substring and consumed one per matching request, so tests can script "429, then 500, then
//! fine". Every request is recorded with the status it got.
//!
//! It also serves the WebhookService (docs/gemini.md §7) under `/v1/webhooks`: create, list
//! (paged), get, patch (`update_mask` required), delete, `:ping` and `:rotateSigningSecret`, in
//! snake_case, with knobs for the enum spelling it accepts and for Gemini disabling a webhook
//! (`add_webhook` registers one in any state, e.g. for the reconciler's early warning).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};

/// Size of the chunks file bodies are sent in (so cuts and slow readers see several chunks).
const CHUNK: usize = 64 * 1024;

/// Handle to a running fake; clones share the same server and state.
#[derive(Clone)]
pub struct FakeGemini {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

/// A scripted misbehaviour for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a Google-style error body.
    Status(u16),
    /// Same, with `Retry-After: <secs>`.
    StatusWithRetryAfter(u16, u64),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer normally but drop the connection after this many body bytes.
    CutAfter(usize),
    /// Answer normally but stop for this long after this many body bytes (a stalled stream),
    /// then send the rest.
    Stall(usize, Duration),
    /// Answer `302 Found` with this `Location`.
    Redirect(String),
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// Path and query, e.g. `/v1beta/batches?pageSize=2`.
    pub path: String,
    pub range: Option<String>,
    /// Whether the correct `x-goog-api-key` was sent.
    pub authorized: bool,
    /// Status answered; 0 if the client went away before the answer.
    pub status: u16,
}

/// What [`operation_json`] puts in the output fields.
#[derive(Debug, Clone)]
pub enum OutputSpec {
    /// `response.responsesFile`, mirrored in `metadata.output`.
    File(String),
    /// `response.inlinedResponses.inlinedResponses` (items as given).
    Inline(Vec<Value>),
    /// Only `metadata.output.responsesFile`: the fallback path.
    MetadataFile(String),
    /// No output at all (running, or the success-before-file race).
    None,
    /// Operation-level `error {code, message}`: the whole batch failed.
    Error(i64, String),
}

#[derive(Clone)]
enum FileBody {
    Static(Bytes),
    Generated {
        lines: u64,
        generator: fn(u64) -> String,
        total: Arc<OnceLock<u64>>,
    },
}

#[derive(Default)]
struct Inner {
    operations: BTreeMap<String, Value>,
    /// Other resources by name (`interactions/x`, `models/m/operations/x`, `files/x`).
    resources: BTreeMap<String, Value>,
    files: HashMap<String, FileBody>,
    faults: Vec<(String, VecDeque<Fault>)>,
    requests: Vec<Recorded>,
    ignore_range: bool,
    /// Request bodies, index-aligned with `requests`.
    bodies: Vec<Bytes>,
    webhooks: BTreeMap<String, FakeWebhook>,
    webhook_enum_case: EnumCase,
    webhook_page_size: Option<usize>,
}

/// Which spelling of enum values (`revocation_behavior`, `state`) the fake WebhookService takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EnumCase {
    /// Either spelling, like a protobuf JSON parser that knows both.
    #[default]
    Any,
    /// Only `revoke_previous_secrets_after_h24` (the SDKs' spelling).
    Lower,
    /// Only `REVOKE_PREVIOUS_SECRETS_AFTER_H24` (the docs samples' spelling).
    Upper,
}

/// A signing secret held by the fake WebhookService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSecret {
    pub secret: String,
    /// Set on the previous secrets by a rotation with the 24-hour overlap.
    pub expire_time: Option<String>,
}

/// A webhook held by the fake WebhookService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeWebhook {
    pub id: String,
    pub name: Option<String>,
    pub uri: String,
    pub subscribed_events: Vec<String>,
    pub state: String,
    /// Oldest first; the last one is the newest.
    pub secrets: Vec<FakeSecret>,
    pub pings: u32,
    pub create_time: String,
    pub update_time: String,
}

#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FakeGemini {
    pub const API_KEY: &'static str = "test-gemini-key";

    /// Binds 127.0.0.1 on a free port and serves on the current tokio runtime.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("fake Gemini cannot bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fake Gemini has no address: {e}"));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake Gemini stopped: {e}");
            }
        });
        Self { shared, addr }
    }

    /// `http://127.0.0.1:<port>`, to use as the client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stores (or replaces) an operation under its `name` (`batches/x`).
    pub fn put_operation(&self, op: Value) {
        let name = op
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("operation without a name"))
            .to_owned();
        self.shared.lock().operations.insert(name, op);
    }

    /// Serves `value` at `GET /v1beta/<name>`: an interaction (`interactions/x`), a video
    /// operation (`models/veo/operations/x`) or a file's metadata (`files/x`).
    pub fn put_resource(&self, name: &str, value: Value) {
        self.shared.lock().resources.insert(name.to_owned(), value);
    }

    /// Stores a results file under `files/x`.
    pub fn put_file(&self, name: &str, body: Bytes) {
        self.shared
            .lock()
            .files
            .insert(file_key(name), FileBody::Static(body));
    }

    /// A file of `lines` lines, `generator(1..=lines)` each followed by `\n`, produced while
    /// streaming so million-line files cost no memory.
    pub fn put_generated_file(&self, name: &str, lines: u64, generator: fn(u64) -> String) {
        self.shared.lock().files.insert(
            file_key(name),
            FileBody::Generated {
                lines,
                generator,
                total: Arc::new(OnceLock::new()),
            },
        );
    }

    /// Queues faults for requests whose path+query contains `path_contains`.
    pub fn inject(&self, path_contains: &str, faults: Vec<Fault>) {
        self.shared
            .lock()
            .faults
            .push((path_contains.to_owned(), faults.into()));
    }

    /// Makes downloads ignore `Range` and answer 200 with the whole file (some proxies do).
    pub fn set_ignore_range(&self, ignore: bool) {
        self.shared.lock().ignore_range = ignore;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// Requests whose path+query contains `needle`.
    pub fn requests_to(&self, needle: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.contains(needle))
            .collect()
    }

    pub fn clear_requests(&self) {
        let mut inner = self.shared.lock();
        inner.requests.clear();
        inner.bodies.clear();
    }

    /// Bodies (as text) of the requests whose path+query contains `needle`, in arrival order.
    pub fn request_bodies_to(&self, needle: &str) -> Vec<String> {
        let inner = self.shared.lock();
        inner
            .requests
            .iter()
            .zip(&inner.bodies)
            .filter(|(r, _)| r.path.contains(needle))
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    /// A registered webhook, as the fake holds it (with its full secrets).
    pub fn webhook(&self, id: &str) -> Option<FakeWebhook> {
        self.shared.lock().webhooks.get(id).cloned()
    }

    /// Every registered webhook, by id.
    pub fn webhooks(&self) -> Vec<FakeWebhook> {
        self.shared.lock().webhooks.values().cloned().collect()
    }

    /// Sets a webhook's state as Gemini would, e.g. `disabled_due_to_failed_deliveries`.
    pub fn set_webhook_state(&self, id: &str, state: &str) {
        let mut inner = self.shared.lock();
        let Some(w) = inner.webhooks.get_mut(id) else {
            panic!("no fake webhook {id}");
        };
        w.state = state.to_owned();
    }

    /// Registers a webhook directly (as if created earlier, e.g. in the console) in `state`;
    /// returns its id. It gets a signing secret like any webhook, so tests can check that the
    /// secret never leaks.
    pub fn add_webhook(&self, name: Option<&str>, uri: &str, state: &str) -> String {
        let now = now_rfc3339();
        let hook = FakeWebhook {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: name.map(str::to_owned),
            uri: uri.to_owned(),
            subscribed_events: vec!["batch.succeeded".to_owned()],
            state: state.to_owned(),
            secrets: vec![FakeSecret {
                secret: new_secret(),
                expire_time: None,
            }],
            pings: 0,
            create_time: now.clone(),
            update_time: now,
        };
        let id = hook.id.clone();
        self.shared.lock().webhooks.insert(id.clone(), hook);
        id
    }

    /// Which enum spelling the WebhookService accepts (default: either).
    pub fn set_webhook_enum_case(&self, case: EnumCase) {
        self.shared.lock().webhook_enum_case = case;
    }

    /// Caps the page size of `GET /v1/webhooks`, so paging can be exercised with few webhooks.
    pub fn set_webhook_page_size(&self, n: usize) {
        self.shared.lock().webhook_page_size = Some(n.max(1));
    }
}

fn file_key(name: &str) -> String {
    if name.starts_with("files/") {
        name.to_owned()
    } else {
        format!("files/{name}")
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let key = headers.get("x-goog-api-key");
    let authorized = key.is_some_and(|k| k.as_bytes() == FakeGemini::API_KEY.as_bytes());

    let (index, fault) = {
        let mut inner = shared.lock();
        inner.requests.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            range: range.clone(),
            authorized,
            status: 0,
        });
        inner.bodies.push(body.clone());
        let fault = if authorized {
            inner
                .faults
                .iter_mut()
                .filter(|(needle, _)| path.contains(needle.as_str()))
                .find_map(|(_, queue)| queue.pop_front())
        } else {
            None
        };
        (inner.requests.len() - 1, fault)
    };

    let response = if key.is_none() {
        google_error(
            401,
            "Method doesn't allow unregistered callers. Please use an API key.",
        )
    } else if !authorized {
        google_error(400, "API key not valid. Please pass a valid API key.")
    } else {
        let (mut cut, mut stall) = (None, None);
        match fault {
            Some(Fault::Status(code)) => {
                return answer(&shared, index, google_error(code, "injected fault"));
            }
            Some(Fault::StatusWithRetryAfter(code, secs)) => {
                let mut r = google_error(code, "injected fault");
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                return answer(&shared, index, r);
            }
            Some(Fault::Redirect(location)) => {
                let r = Response::builder()
                    .status(StatusCode::FOUND)
                    .header(header::LOCATION, location)
                    .body(Body::empty())
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
                return answer(&shared, index, r);
            }
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            Some(Fault::CutAfter(n)) => cut = Some(n),
            Some(Fault::Stall(n, pause)) => stall = Some((n, pause)),
            None => {}
        }
        let r = if uri.path().starts_with(WEBHOOKS_PATH) {
            webhooks_route(&shared, &method, &uri, &body)
        } else {
            route(&shared, &method, &uri, range.as_deref()).await
        };
        match (cut, stall) {
            (Some(n), _) => cut_body(r, n),
            (None, Some((n, pause))) => stall_body(r, n, pause),
            (None, None) => r,
        }
    };
    answer(&shared, index, response)
}

fn answer(shared: &Shared, index: usize, response: Response) -> Response {
    if let Some(r) = shared.lock().requests.get_mut(index) {
        r.status = response.status().as_u16();
    }
    response
}

async fn route(shared: &Shared, method: &Method, uri: &Uri, range: Option<&str>) -> Response {
    if method != Method::GET {
        return google_error(405, "method not allowed");
    }
    let path = uri.path();
    if path == "/v1beta/batches" {
        return list(shared, uri);
    }
    if let Some(id) = path.strip_prefix("/v1beta/batches/") {
        let op = shared
            .lock()
            .operations
            .get(&format!("batches/{id}"))
            .cloned();
        return match op {
            Some(op) => json_response(&op),
            None => google_error(404, "Requested entity was not found."),
        };
    }
    if let Some(name) = path.strip_prefix("/v1beta/") {
        let resource = shared.lock().resources.get(name).cloned();
        return match resource {
            Some(r) => json_response(&r),
            None => google_error(404, "Requested entity was not found."),
        };
    }
    if let Some(rest) = path.strip_prefix("/download/v1beta/") {
        let Some(name) = rest.strip_suffix(":download") else {
            return google_error(404, "unknown download path");
        };
        if query_param(uri, "alt").as_deref() != Some("media") {
            return google_error(400, "only alt=media is supported by the fake");
        }
        let (file, ignore_range) = {
            let inner = shared.lock();
            (inner.files.get(name).cloned(), inner.ignore_range)
        };
        let Some(file) = file else {
            return google_error(404, "Requested entity was not found.");
        };
        let range = if ignore_range { None } else { range };
        return download(file, range).await;
    }
    google_error(404, "no such route in the fake")
}

// ---------------------------------------------------------------------------------------------
// WebhookService
// ---------------------------------------------------------------------------------------------

const WEBHOOKS_PATH: &str = "/v1/webhooks";

/// Events the fake accepts: the SDK enum plus the `*.cancelled` ones the docs still list.
const FAKE_SUBSCRIBABLE: &[&str] = &[
    "batch.succeeded",
    "batch.expired",
    "batch.failed",
    "batch.cancelled",
    "interaction.requires_action",
    "interaction.completed",
    "interaction.failed",
    "interaction.cancelled",
    "video.generated",
];

const REVOKE_AFTER_H24: &str = "revoke_previous_secrets_after_h24";
const REVOKE_IMMEDIATELY: &str = "revoke_previous_secrets_immediately";

fn webhooks_route(shared: &Shared, method: &Method, uri: &Uri, body: &[u8]) -> Response {
    let rest = &uri.path()[WEBHOOKS_PATH.len()..];
    let json_body = || -> Option<Value> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Some(json!({}));
        }
        serde_json::from_slice::<Value>(body)
            .ok()
            .filter(Value::is_object)
    };
    let bad_json = || google_error(400, "Invalid JSON payload received.");
    if rest.is_empty() {
        return match *method {
            Method::POST => match json_body() {
                Some(b) => create_webhook(shared, &b),
                None => bad_json(),
            },
            Method::GET => list_webhooks(shared, uri),
            _ => google_error(405, "method not allowed"),
        };
    }
    let Some(target) = rest.strip_prefix('/') else {
        return google_error(404, "no such route in the fake");
    };
    let (id, verb) = target.split_once(':').unwrap_or((target, ""));
    if id.is_empty() || id.contains('/') {
        return google_error(404, "no such route in the fake");
    }
    let mut inner = shared.lock();
    let case = inner.webhook_enum_case;
    let Some(hook) = inner.webhooks.get_mut(id) else {
        return google_error(404, "Requested entity was not found.");
    };
    match (method.clone(), verb) {
        (Method::GET, "") => json_response(&webhook_json(hook)),
        (Method::PATCH, "") => match json_body() {
            Some(b) => patch_webhook(hook, uri, &b, case),
            None => bad_json(),
        },
        (Method::DELETE, "") => {
            inner.webhooks.remove(id);
            json_response(&json!({}))
        }
        (Method::POST, "ping") => {
            hook.pings += 1;
            json_response(&json!({}))
        }
        (Method::POST, "rotateSigningSecret") => match json_body() {
            Some(b) => rotate_webhook_secret(hook, &b, case),
            None => bad_json(),
        },
        (_, "" | "ping" | "rotateSigningSecret") => google_error(405, "method not allowed"),
        _ => google_error(404, "no such route in the fake"),
    }
}

fn create_webhook(shared: &Shared, body: &Value) -> Response {
    let Some(uri) = body
        .get("uri")
        .and_then(Value::as_str)
        .filter(|u| !u.trim().is_empty())
    else {
        return google_error(400, "uri is required.");
    };
    let events = match events_of(body) {
        Ok(e) => e,
        Err(message) => return google_error(400, &message),
    };
    let now = now_rfc3339();
    let secret = new_secret();
    let hook = FakeWebhook {
        id: uuid::Uuid::new_v4().simple().to_string(),
        name: body.get("name").and_then(Value::as_str).map(str::to_owned),
        uri: uri.to_owned(),
        subscribed_events: events,
        state: "enabled".to_owned(),
        secrets: vec![FakeSecret {
            secret: secret.clone(),
            expire_time: None,
        }],
        pings: 0,
        create_time: now.clone(),
        update_time: now,
    };
    let mut out = webhook_json(&hook);
    out["new_signing_secret"] = json!(secret);
    shared.lock().webhooks.insert(hook.id.clone(), hook);
    json_response(&out)
}

/// `subscribed_events`: required, non-empty, every entry a known event; else the 400 message.
fn events_of(body: &Value) -> Result<Vec<String>, String> {
    let list = body
        .get("subscribed_events")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| "subscribed_events is required.".to_owned())?;
    list.iter()
        .enumerate()
        .map(|(i, e)| match e.as_str() {
            Some(s) if FAKE_SUBSCRIBABLE.contains(&s) => Ok(s.to_owned()),
            _ => Err(format!(
                "Invalid value at 'subscribed_events[{i}]' (TYPE_ENUM), {e}"
            )),
        })
        .collect()
}

fn list_webhooks(shared: &Shared, uri: &Uri) -> Response {
    let inner = shared.lock();
    let asked = query_param(uri, "page_size")
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(50);
    let page_size = inner.webhook_page_size.map_or(asked, |cap| asked.min(cap));
    let start = match query_param(uri, "page_token") {
        None => 0,
        Some(t) => match t
            .strip_prefix("after-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => n,
            None => return google_error(400, "Invalid page token."),
        },
    };
    let hooks: Vec<Value> = inner
        .webhooks
        .values()
        .skip(start)
        .take(page_size)
        .map(webhook_json)
        .collect();
    let mut body = json!({ "webhooks": hooks });
    if start + page_size < inner.webhooks.len() {
        body["next_page_token"] = json!(format!("after-{}", start + page_size));
    }
    json_response(&body)
}

fn patch_webhook(hook: &mut FakeWebhook, uri: &Uri, body: &Value, case: EnumCase) -> Response {
    let Some(mask) = query_param(uri, "update_mask").filter(|m| !m.is_empty()) else {
        return google_error(400, "update_mask is required.");
    };
    let mut updated = hook.clone();
    for field in mask.split(',').map(str::trim) {
        match field {
            "name" => updated.name = body.get("name").and_then(Value::as_str).map(str::to_owned),
            "uri" => match body.get("uri").and_then(Value::as_str) {
                Some(u) if !u.trim().is_empty() => u.clone_into(&mut updated.uri),
                _ => return google_error(400, "uri is required."),
            },
            "subscribed_events" => match events_of(body) {
                Ok(e) => updated.subscribed_events = e,
                Err(message) => return google_error(400, &message),
            },
            "state" => {
                let raw = body.get("state").and_then(Value::as_str).unwrap_or("");
                match enum_value(raw, case, &["enabled", "disabled"]) {
                    Some(s) => updated.state = s,
                    None => {
                        return google_error(
                            400,
                            &format!("Invalid value at 'webhook.state' (TYPE_ENUM), \"{raw}\""),
                        );
                    }
                }
            }
            other => {
                return google_error(400, &format!("Unknown field in update_mask: {other}"));
            }
        }
    }
    updated.update_time = now_rfc3339();
    *hook = updated;
    json_response(&webhook_json(hook))
}

fn rotate_webhook_secret(hook: &mut FakeWebhook, body: &Value, case: EnumCase) -> Response {
    let behavior = match body.get("revocation_behavior") {
        None | Some(Value::Null) => REVOKE_AFTER_H24.to_owned(),
        Some(v) => {
            let raw = v.as_str().unwrap_or("");
            match enum_value(raw, case, &[REVOKE_AFTER_H24, REVOKE_IMMEDIATELY]) {
                Some(b) => b,
                None => {
                    return google_error(
                        400,
                        &format!(
                            "Invalid value at 'revocation_behavior' (type.googleapis.com/google.ai.generativelanguage.v1.RotateSigningSecretRequest.RevocationBehavior), {v}"
                        ),
                    );
                }
            }
        }
    };
    if behavior == REVOKE_IMMEDIATELY {
        hook.secrets.clear();
    } else {
        let expiry = (chrono::Utc::now() + chrono::Duration::hours(24))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for old in hook.secrets.iter_mut().filter(|s| s.expire_time.is_none()) {
            old.expire_time = Some(expiry.clone());
        }
    }
    let secret = new_secret();
    hook.secrets.push(FakeSecret {
        secret: secret.clone(),
        expire_time: None,
    });
    hook.update_time = now_rfc3339();
    json_response(&json!({ "secret": secret }))
}

/// `raw` as the lowercase enum value if it is one of `allowed` in a spelling `case` accepts.
fn enum_value(raw: &str, case: EnumCase, allowed: &[&str]) -> Option<String> {
    let spelled_ok = match case {
        EnumCase::Any => true,
        EnumCase::Lower => raw == raw.to_ascii_lowercase(),
        EnumCase::Upper => raw == raw.to_ascii_uppercase(),
    };
    let lower = raw.to_ascii_lowercase();
    (spelled_ok && allowed.contains(&lower.as_str())).then_some(lower)
}

fn webhook_json(hook: &FakeWebhook) -> Value {
    let secrets: Vec<Value> = hook
        .secrets
        .iter()
        .map(|s| {
            let tail: String = s
                .secret
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let mut v = json!({ "truncated_secret": format!("whsec_...{tail}") });
            if let Some(t) = &s.expire_time {
                v["expire_time"] = json!(t);
            }
            v
        })
        .collect();
    let mut v = json!({
        "id": hook.id,
        "uri": hook.uri,
        "subscribed_events": hook.subscribed_events,
        "state": hook.state,
        "signing_secrets": secrets,
        "create_time": hook.create_time,
        "update_time": hook.update_time,
    });
    if let Some(n) = &hook.name {
        v["name"] = json!(n);
    }
    v
}

fn new_secret() -> String {
    gemini_hooks::domain::verify::standard::SigningSecret::generate().to_whsec()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn list(shared: &Shared, uri: &Uri) -> Response {
    let page_size = query_param(uri, "pageSize")
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(10)
        .min(1000);
    let start = match query_param(uri, "pageToken") {
        None => 0,
        Some(t) => match t
            .strip_prefix("after-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => n,
            None => return google_error(400, "Invalid page token."),
        },
    };
    let inner = shared.lock();
    let ops: Vec<Value> = inner
        .operations
        .values()
        .skip(start)
        .take(page_size)
        .cloned()
        .collect();
    let mut body = json!({ "operations": ops });
    if start + page_size < inner.operations.len() {
        body["nextPageToken"] = json!(format!("after-{}", start + page_size));
    }
    json_response(&body)
}

async fn download(file: FileBody, range: Option<&str>) -> Response {
    let from = range.and_then(parse_range_start);
    let total = match &file {
        FileBody::Static(b) => Some(b.len() as u64),
        // Only computed when a range needs it: a generated file's size costs a full pass.
        FileBody::Generated { .. } if from.is_none() => None,
        FileBody::Generated {
            lines,
            generator,
            total,
        } => Some(generated_total(*lines, *generator, total).await),
    };
    let mut builder = Response::builder().header(header::CONTENT_TYPE, "application/octet-stream");
    let start = match (from, total) {
        (Some(from), Some(total)) if from >= total => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{total}"))
                .body(Body::empty())
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
        (Some(from), Some(total)) => {
            builder = builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {from}-{}/{total}", total - 1),
                )
                .header(header::CONTENT_LENGTH, total - from);
            from
        }
        (_, total) => {
            if let Some(total) = total {
                builder = builder.header(header::CONTENT_LENGTH, total);
            }
            0
        }
    };
    builder
        .body(Body::from_stream(file_stream(file, start)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Size of a generated file, computed once off the async threads (it is a full generation pass).
async fn generated_total(lines: u64, generator: fn(u64) -> String, cache: &OnceLock<u64>) -> u64 {
    if let Some(t) = cache.get() {
        return *t;
    }
    let compute = move || {
        (1..=lines)
            .map(|i| generator(i).len() as u64 + 1)
            .sum::<u64>()
    };
    let t = tokio::task::spawn_blocking(compute)
        .await
        .unwrap_or_else(|e| panic!("generator panicked: {e}"));
    *cache.get_or_init(|| t)
}

/// `bytes=N-` or `bytes=N-M` → N (the fake always serves to the end of the file).
fn parse_range_start(v: &str) -> Option<u64> {
    v.trim()
        .strip_prefix("bytes=")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn file_stream(
    file: FileBody,
    start: u64,
) -> std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>> {
    match file {
        FileBody::Static(bytes) => {
            let from = usize::try_from(start)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let chunks: Vec<Result<Bytes, std::io::Error>> = (from..bytes.len())
                .step_by(CHUNK)
                .map(|i| Ok(bytes.slice(i..(i + CHUNK).min(bytes.len()))))
                .collect();
            Box::pin(futures::stream::iter(chunks))
        }
        FileBody::Generated {
            lines, generator, ..
        } => {
            let state = (1u64, start);
            Box::pin(futures::stream::unfold(
                state,
                move |(mut next, mut skip)| async move {
                    if next > lines {
                        return None;
                    }
                    let mut buf = Vec::with_capacity(CHUNK + 1024);
                    while next <= lines && buf.len() < CHUNK {
                        let mut line = generator(next).into_bytes();
                        line.push(b'\n');
                        next += 1;
                        let len = line.len() as u64;
                        if skip >= len {
                            skip -= len;
                            continue;
                        }
                        let from = usize::try_from(skip).unwrap_or(0);
                        skip = 0;
                        buf.extend_from_slice(&line[from..]);
                    }
                    Some((Ok(Bytes::from(buf)), (next, skip)))
                },
            ))
        }
    }
}

/// Passes `n` body bytes, then fails the body so the server drops the connection.
fn cut_body(response: Response, n: usize) -> Response {
    let (parts, body) = response.into_parts();
    let stream = futures::stream::unfold(
        (body.into_data_stream(), n, false),
        |(mut inner, left, done)| async move {
            if done {
                return None;
            }
            if left == 0 {
                // Let hyper flush what was sent, so the client really sees a mid-body cut and
                // not a failed request.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let err =
                    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "injected cut");
                return Some((Err(err), (inner, 0, true)));
            }
            match inner.next().await {
                None => None,
                Some(Err(e)) => Some((Err(std::io::Error::other(e)), (inner, 0, true))),
                Some(Ok(mut chunk)) => {
                    if chunk.len() > left {
                        chunk.truncate(left);
                    }
                    let left = left - chunk.len();
                    Some((Ok(chunk), (inner, left, false)))
                }
            }
        },
    );
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Where a stalled body is: bytes still to pass before the pause, the pause if not taken yet,
/// and the part of a chunk held back across it.
struct Stalling {
    inner: axum::body::BodyDataStream,
    left: usize,
    pause: Option<Duration>,
    carry: Option<Bytes>,
}

/// Passes `n` body bytes, waits `pause`, then passes the rest.
fn stall_body(response: Response, n: usize, pause: Duration) -> Response {
    let (parts, body) = response.into_parts();
    let state = Stalling {
        inner: body.into_data_stream(),
        left: n,
        pause: Some(pause),
        carry: None,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        if s.left == 0
            && let Some(pause) = s.pause.take()
        {
            tokio::time::sleep(pause).await;
        }
        if let Some(rest) = s.carry.take() {
            return Some((Ok(rest), s));
        }
        let chunk = match s.inner.next().await? {
            Ok(chunk) => chunk,
            Err(e) => return Some((Err(std::io::Error::other(e)), s)),
        };
        if s.pause.is_some() {
            if chunk.len() > s.left {
                s.carry = Some(chunk.slice(s.left..));
                let head = chunk.slice(..s.left);
                s.left = 0;
                return Some((Ok(head), s));
            }
            s.left -= chunk.len();
        }
        Some((Ok::<Bytes, std::io::Error>(chunk), s))
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

fn json_response(v: &Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        v.to_string(),
    )
        .into_response()
}

/// A `google.rpc.Status` error body with the given HTTP status.
fn google_error(code: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body =
        json!({"error": {"code": code, "message": message, "status": rpc_status_name(code)}});
    let mut r = json_response(&body);
    *r.status_mut() = status;
    r
}

fn rpc_status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ if code >= 500 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

/// First value of a query parameter, percent-decoded.
fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Builders shared by the test suites of several crates.
// ---------------------------------------------------------------------------------------------

/// A realistic batch Operation. `state` is used verbatim (`"BATCH_STATE_SUCCEEDED"`, or a
/// `JOB_STATE_*` spelling to test tolerance); `done` follows from it. Counts are JSON strings.
pub fn operation_json(name: &str, state: &str, output: OutputSpec) -> Value {
    let name = if name.starts_with("batches/") {
        name.to_owned()
    } else {
        format!("batches/{name}")
    };
    let terminal = ["SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"]
        .iter()
        .any(|s| state.ends_with(s));
    let mut metadata = json!({
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
        "name": name,
        "model": "models/gemini-2.5-flash",
        "displayName": format!("fake {name}"),
        "createTime": "2026-05-04T10:00:00.123456Z",
        "updateTime": "2026-05-04T10:30:00.654321Z",
        "state": state,
        "batchStats": {},
    });
    if terminal {
        metadata["endTime"] = json!("2026-05-04T10:30:00.654321Z");
    }
    let mut op = json!({ "name": name, "done": terminal });
    let output_type =
        "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput";
    match output {
        OutputSpec::File(f) => {
            op["response"] = json!({"@type": output_type, "responsesFile": f});
            metadata["output"] = json!({"responsesFile": f});
        }
        OutputSpec::MetadataFile(f) => {
            metadata["output"] = json!({"responsesFile": f});
        }
        OutputSpec::Inline(items) => {
            let ok = items.iter().filter(|i| i.get("response").is_some()).count();
            let failed = items.iter().filter(|i| i.get("error").is_some()).count();
            let mut stats = json!({
                "requestCount": items.len().to_string(),
                "successfulRequestCount": ok.to_string(),
                "pendingRequestCount": "0",
            });
            if failed > 0 {
                stats["failedRequestCount"] = json!(failed.to_string());
            }
            metadata["batchStats"] = stats;
            op["response"] =
                json!({"@type": output_type, "inlinedResponses": {"inlinedResponses": items}});
        }
        OutputSpec::None => {}
        OutputSpec::Error(code, message) => {
            op["error"] = json!({"code": code, "message": message, "details": []});
        }
    }
    op["metadata"] = metadata;
    op
}

/// Sets the batch's `createTime` (RFC 3339), e.g. to make a running batch late.
pub fn with_create_time(mut op: Value, create_time: &str) -> Value {
    op["metadata"]["createTime"] = json!(create_time);
    op
}

/// Sets `batchStats` the way Gemini does: int64 as strings, `failedRequestCount` absent when 0.
pub fn with_stats(mut op: Value, requests: i64, succeeded: i64, failed: i64) -> Value {
    let mut stats = json!({
        "requestCount": requests.to_string(),
        "successfulRequestCount": succeeded.to_string(),
        "pendingRequestCount": (requests - succeeded - failed).max(0).to_string(),
    });
    if failed > 0 {
        stats["failedRequestCount"] = json!(failed.to_string());
    }
    op["metadata"]["batchStats"] = stats;
    op
}

/// One inline result element: `{metadata: {key}, response}`.
pub fn inline_success(key: &str, text: &str) -> Value {
    json!({"metadata": {"key": key}, "response": response_json(key, text)})
}

/// One inline error element: `{metadata: {key}, error}`.
pub fn inline_error(key: &str, code: i64, message: &str) -> Value {
    json!({"metadata": {"key": key}, "error": rpc_error(code, message)})
}

/// A results-file success line (no trailing newline).
pub fn success_line(key: &str, text: &str) -> String {
    json!({"key": key, "response": response_json(key, text)}).to_string()
}

/// A results-file error line (no trailing newline).
pub fn error_line(key: &str, code: i64, message: &str) -> String {
    json!({"key": key, "error": rpc_error(code, message)}).to_string()
}

fn rpc_error(code: i64, message: &str) -> Value {
    let name = u16::try_from(code).map_or("UNKNOWN", rpc_status_name);
    json!({"code": code, "message": message, "status": name, "details": []})
}

/// A `GenerateContentResponse` with plausible usage numbers derived from the text.
fn response_json(key: &str, text: &str) -> Value {
    let candidates = i64::try_from(text.len() / 4 + 1).unwrap_or(i64::MAX);
    let prompt = 42;
    let thoughts = 17;
    json!({
        "candidates": [{
            "content": {"parts": [{"text": text}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": {
            "promptTokenCount": prompt,
            "candidatesTokenCount": candidates,
            "totalTokenCount": prompt + candidates + thoughts,
            "thoughtsTokenCount": thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": format!("resp-{key}"),
    })
}

/// `n` bytes standing for a generated video: deterministic and without a short period, so a
/// part lost, doubled or out of order changes the bytes (and their hash).
pub fn video_bytes(n: usize) -> Bytes {
    let mut out = Vec::with_capacity(n + 8);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < n {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    Bytes::from(out)
}

/// A finished Veo operation (`models/veo-3.0-generate-001/operations/<id>` style `name`) whose
/// generated samples are the given Files API files, as download URIs like Gemini's.
pub fn video_operation_json(name: &str, files: &[&str]) -> Value {
    let samples: Vec<Value> = files
        .iter()
        .map(|f| {
            let f = f.trim_start_matches("files/");
            json!({"video": {"uri": format!(
                "https://generativelanguage.googleapis.com/v1beta/files/{f}:download?alt=media"
            )}})
        })
        .collect();
    json!({
        "name": name,
        "done": true,
        "response": {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
            "generateVideoResponse": {"generatedSamples": samples}
        }
    })
}

/// An Interaction (`GET /v1beta/interactions/<id>`) with `status` and `outputs` as given.
pub fn interaction_json(id: &str, status: &str, outputs: Value) -> Value {
    json!({
        "id": id,
        "model": "gemini-2.5-flash",
        "status": status,
        "role": "model",
        "outputs": outputs,
        "usage": {"total_input_tokens": 21, "total_output_tokens": 34, "total_tokens": 55},
        "created": "2026-12-01T10:00:00Z",
        "updated": "2026-12-01T10:00:05Z",
    })
}

/// The request key of sample line `i`.
pub fn sample_key(i: u64) -> String {
    format!("req-{i}")
}

/// The text of sample success line `i` (so tests can check what was stored).
pub fn sample_text(i: u64) -> String {
    const FILLER: &str =
        "The quick brown fox jumps over the lazy dog while the batch keeps running. ";
    let mut t = format!("Answer to request {i}: ");
    while t.len() < 260 {
        t.push_str(FILLER);
    }
    t.truncate(260);
    t
}

/// Sample line `i` (1-based, no newline): malformed every `malformed_every`-th line, else an error
/// every `error_every`-th line, else a success of ~600 bytes. 0 disables a kind.
pub fn sample_line(i: u64, error_every: u64, malformed_every: u64) -> String {
    let key = sample_key(i);
    if malformed_every > 0 && i.is_multiple_of(malformed_every) {
        return match (i / malformed_every) % 5 {
            0 => format!(r#"{{"key":"{key}","response":{{"candidates":["#),
            1 => format!(r#"{{"key":"{key}","response":null}}"#),
            2 => format!(r#"{{"key":"{key}"}}"#),
            3 => "this is not JSON at all".to_owned(),
            _ => r#"{"key":17,"response":{}}"#.to_owned(),
        };
    }
    if error_every > 0 && i.is_multiple_of(error_every) {
        let (code, msg) = match (i / error_every) % 3 {
            0 => (429, "Resource has been exhausted (e.g. check quota)."),
            1 => (500, "An internal error has occurred."),
            _ => (400, "Request contains an invalid argument."),
        };
        return error_line(&key, code, msg);
    }
    success_line(&key, &sample_text(i))
}

/// `n` sample lines, each ending in `\n`.
pub fn sample_results(n: u64, error_every: u64, malformed_every: u64) -> String {
    let mut out = String::new();
    for i in 1..=n {
        out.push_str(&sample_line(i, error_every, malformed_every));
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn sample_lines_are_about_600_bytes() {
        let s = sample_line(1, 0, 0);
        assert!((500..700).contains(&s.len()), "{}", s.len());
        assert_eq!(sample_results(10, 0, 0).lines().count(), 10);
    }
}
