//! A DynamoDB stand-in for the benchmarks: a local HTTP endpoint that speaks just enough of the
//! DynamoDB JSON protocol (AWS JSON 1.0, `X-Amz-Target: DynamoDB_20120810.<Op>`) for the results
//! adapter and boto3's `batch_writer`, and answers **every request after a fixed latency**
//! (10 ms by default: DynamoDB's typical in-region latency), concurrently.
//!
//! It is not an emulator, and it checks nothing a test should check. It does not store rows:
//! `BatchWriteItem` is counted and answered `{"UnprocessedItems":{}}`. What it keeps:
//!
//! - the job records (`PutItem` of an item whose `sk` is `JOB`, stored unconditionally; condition
//!   expressions are accepted without being evaluated), so `GetItem` can return them;
//! - a 64-bit hash of each row's sort key per partition (items with a `status` attribute, the
//!   way the adapter's `count_rows` filters), so `Query` with `Select: COUNT` answers the number
//!   of distinct rows written for that `pk`.
//!
//! What it observes and reports ([`StandinStats`]): requests per operation, items per
//! `BatchWriteItem` call (total, largest), the largest request, how many calls were in flight at
//! once, and the calls DynamoDB itself would refuse: one naming a key twice, more than 25
//! requests, or a request body over 16 MiB.
//!
//! Why a stand-in and not moto behind a delaying proxy: moto parses, validates and stores every
//! item in Python, so at the request rates a pipelined writer reaches, moto's own CPU (on the same
//! 2 cores as the contenders) would become the bound and the latency would not be a fixed 10 ms.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use crate::BenchError;

/// DynamoDB's limits on one `BatchWriteItem` call.
pub const MAX_BATCH_REQUESTS: usize = 25;
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

const JOB_SK: &str = "JOB";
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
const TARGET_PREFIX: &str = "DynamoDB_20120810.";

/// A running stand-in; clones share the server and its counters.
#[derive(Clone)]
pub struct Standin {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

struct Shared {
    latency: Duration,
    inner: Mutex<Inner>,
    in_flight: AtomicU64,
    batch_in_flight: AtomicU64,
}

#[derive(Default)]
struct Inner {
    /// Job records by `pk`, as the last `PutItem` sent them.
    jobs: HashMap<String, Value>,
    /// Hashes of the sort keys of rows written, by `pk`.
    rows: HashMap<String, HashSet<u64>>,
    stats: StandinStats,
}

/// What the stand-in saw. Serialised as the JSON line the `stand-in` role prints at the end.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StandinStats {
    pub latency_ms: u64,
    /// Requests by operation name (`BatchWriteItem`, `GetItem`, `PutItem`, `Query`, …).
    pub requests: std::collections::BTreeMap<String, u64>,
    pub batch_write_calls: u64,
    /// Put and delete requests over all `BatchWriteItem` calls (rows and part items).
    pub items_written: u64,
    /// Of those, puts of items with a `status` attribute: rows (parts have none).
    pub rows_written: u64,
    pub max_items_per_call: u64,
    pub min_items_per_call: u64,
    pub request_bytes: u64,
    pub max_request_bytes: u64,
    /// Most requests of any kind being answered at once.
    pub max_in_flight: u64,
    /// Most `BatchWriteItem` calls being answered at once: 1 means strictly sequential writes.
    pub max_batch_writes_in_flight: u64,
    /// `BatchWriteItem` calls naming one key twice (DynamoDB refuses the whole call).
    pub duplicate_key_calls: u64,
    /// Keys named more than once within a call, over all calls.
    pub duplicate_keys: u64,
    /// The first such key, `pk / sk`.
    pub first_duplicate: Option<String>,
    /// Calls with more than 25 requests (DynamoDB refuses them).
    pub oversize_calls: u64,
    /// Calls whose body is over 16 MiB (DynamoDB refuses them).
    pub overweight_calls: u64,
    /// Requests the stand-in could not understand or does not serve (answered 400).
    pub refused: u64,
    pub first_refusal: Option<String>,
}

impl StandinStats {
    /// DynamoDB would have refused at least one call.
    pub fn violations(&self) -> u64 {
        self.duplicate_key_calls + self.oversize_calls + self.overweight_calls
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Standin {
    /// Binds 127.0.0.1 on a free port and serves on the current tokio runtime.
    pub async fn start(latency: Duration) -> Result<Self, BenchError> {
        let shared = Arc::new(Shared {
            latency,
            inner: Mutex::new(Inner::default()),
            in_flight: AtomicU64::new(0),
            batch_in_flight: AtomicU64::new(0),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(BenchError::io("the DynamoDB stand-in cannot bind"))?;
        let addr = listener
            .local_addr()
            .map_err(BenchError::io("the DynamoDB stand-in has no address"))?;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("DynamoDB stand-in stopped: {e}");
            }
        });
        Ok(Self { shared, addr })
    }

    /// `http://127.0.0.1:<port>`, the endpoint URL to give the SDKs.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> StandinStats {
        let mut stats = self.shared.lock().stats.clone();
        stats.latency_ms = u64::try_from(self.shared.latency.as_millis()).unwrap_or(u64::MAX);
        stats
    }
}

/// Decrements an in-flight counter when the request is answered (or dropped).
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicU64) -> (Self, u64) {
        let now = counter.fetch_add(1, Ordering::SeqCst) + 1;
        (Self(counter), now)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (_guard, now_in_flight) = InFlight::enter(&shared.in_flight);
    let op = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.strip_prefix(TARGET_PREFIX).unwrap_or(t).to_owned())
        .unwrap_or_default();
    let body = match axum::body::to_bytes(request.into_body(), usize::MAX).await {
        Ok(b) => b,
        Err(e) => return refuse(&shared, "SerializationException", &format!("body: {e}")),
    };
    // The latency runs from the moment the whole request is in, whatever our own work costs.
    let answer_at = tokio::time::Instant::now() + shared.latency;
    {
        let mut inner = shared.lock();
        *inner.stats.requests.entry(op.clone()).or_default() += 1;
        inner.stats.max_in_flight = inner.stats.max_in_flight.max(now_in_flight);
    }
    let batch_guard = (op == "BatchWriteItem").then(|| {
        let (guard, n) = InFlight::enter(&shared.batch_in_flight);
        let mut inner = shared.lock();
        inner.stats.max_batch_writes_in_flight = inner.stats.max_batch_writes_in_flight.max(n);
        guard
    });
    let answer = match op.as_str() {
        "BatchWriteItem" => batch_write(&shared, &body),
        "PutItem" => put_item(&shared, &body),
        "GetItem" => get_item(&shared, &body),
        "Query" => query(&shared, &body),
        other => Err((
            "UnknownOperationException",
            format!("the stand-in does not serve `{other}`"),
        )),
    };
    tokio::time::sleep_until(answer_at).await;
    drop(batch_guard);
    match answer {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err((kind, message)) => refuse(&shared, kind, &message),
    }
}

type Answer = Result<Value, (&'static str, String)>;

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response.headers_mut().insert(
        "x-amzn-requestid",
        HeaderValue::from_static("standin-request"),
    );
    response
}

fn refuse(shared: &Shared, kind: &str, message: &str) -> Response {
    {
        let mut inner = shared.lock();
        inner.stats.refused += 1;
        if inner.stats.first_refusal.is_none() {
            inner.stats.first_refusal = Some(format!("{kind}: {message}"));
        }
    }
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({
            "__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"),
            "message": message,
        }),
    )
}

fn invalid(what: &str, e: impl std::fmt::Display) -> (&'static str, String) {
    ("ValidationException", format!("{what}: {e}"))
}

// --- BatchWriteItem: parsed only as far as keys and whether an item is a row -------------------

#[derive(Deserialize)]
struct BatchWriteInput {
    #[serde(rename = "RequestItems")]
    request_items: HashMap<String, Vec<WriteRequest>>,
}

#[derive(Deserialize)]
struct WriteRequest {
    #[serde(rename = "PutRequest")]
    put: Option<PutRequest>,
    #[serde(rename = "DeleteRequest")]
    delete: Option<DeleteRequest>,
}

#[derive(Deserialize)]
struct PutRequest {
    #[serde(rename = "Item")]
    item: KeyAttributes,
}

#[derive(Deserialize)]
struct DeleteRequest {
    #[serde(rename = "Key")]
    key: KeyAttributes,
}

/// The key attributes of an item; every other attribute is skipped unparsed.
#[derive(Deserialize)]
struct KeyAttributes {
    pk: Option<StringAttribute>,
    sk: Option<StringAttribute>,
    status: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct StringAttribute {
    #[serde(rename = "S")]
    s: String,
}

fn hash_of(sk: &str) -> u64 {
    let mut h = DefaultHasher::new();
    sk.hash(&mut h);
    h.finish()
}

fn batch_write(shared: &Shared, body: &[u8]) -> Answer {
    let input: BatchWriteInput =
        serde_json::from_slice(body).map_err(|e| invalid("BatchWriteItem", e))?;
    // Everything is worked out before the lock is taken.
    let items: usize = input.request_items.values().map(Vec::len).sum();
    let items = u64::try_from(items).unwrap_or(u64::MAX);
    let bytes = u64::try_from(body.len()).unwrap_or(u64::MAX);
    let mut duplicates = 0u64;
    let mut first_duplicate = None;
    let mut rows_written = 0u64;
    // (pk, hash of sk, put or delete) of each row touched.
    let mut row_changes: Vec<(&str, u64, bool)> = Vec::new();
    for (table, requests) in &input.request_items {
        let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(requests.len());
        for request in requests {
            let (attrs, is_put) = match (&request.put, &request.delete) {
                (Some(put), _) => (&put.item, true),
                (None, Some(delete)) => (&delete.key, false),
                (None, None) => continue,
            };
            let pk = attrs.pk.as_ref().map_or("", |a| a.s.as_str());
            let sk = attrs.sk.as_ref().map_or("", |a| a.s.as_str());
            if !seen.insert((pk, sk)) {
                duplicates += 1;
                first_duplicate.get_or_insert_with(|| format!("{table}: {pk} / {sk}"));
            }
            if is_put && attrs.status.is_some() {
                rows_written += 1;
                row_changes.push((pk, hash_of(sk), true));
            } else if !is_put {
                row_changes.push((pk, hash_of(sk), false));
            }
        }
    }
    let mut inner = shared.lock();
    let s = &mut inner.stats;
    s.batch_write_calls += 1;
    s.items_written += items;
    s.rows_written += rows_written;
    s.max_items_per_call = s.max_items_per_call.max(items);
    s.min_items_per_call = if s.batch_write_calls == 1 {
        items
    } else {
        s.min_items_per_call.min(items)
    };
    s.request_bytes += bytes;
    s.max_request_bytes = s.max_request_bytes.max(bytes);
    if items > MAX_BATCH_REQUESTS as u64 {
        s.oversize_calls += 1;
    }
    if body.len() > MAX_BATCH_BYTES {
        s.overweight_calls += 1;
    }
    if duplicates > 0 {
        s.duplicate_key_calls += 1;
        s.duplicate_keys += duplicates;
        if s.first_duplicate.is_none() {
            s.first_duplicate = first_duplicate;
        }
    }
    for (pk, sk, put) in row_changes {
        if !inner.rows.contains_key(pk) {
            inner.rows.insert(pk.to_owned(), HashSet::new());
        }
        let Some(set) = inner.rows.get_mut(pk) else {
            continue;
        };
        if put {
            set.insert(sk);
        } else {
            set.remove(&sk);
        }
    }
    Ok(json!({"UnprocessedItems": {}}))
}

// --- Job records --------------------------------------------------------------------------------

fn string_attr<'a>(item: &'a Value, name: &str) -> Option<&'a str> {
    item.get(name)?.get("S")?.as_str()
}

fn put_item(shared: &Shared, body: &[u8]) -> Answer {
    let input: Value = serde_json::from_slice(body).map_err(|e| invalid("PutItem", e))?;
    let item = input
        .get("Item")
        .ok_or_else(|| invalid("PutItem", "no Item"))?;
    let pk = string_attr(item, "pk").ok_or_else(|| invalid("PutItem", "no string pk"))?;
    if string_attr(item, "sk") == Some(JOB_SK) {
        shared.lock().jobs.insert(pk.to_owned(), item.clone());
    }
    // Anything else (a row written one at a time) is accepted and forgotten.
    Ok(json!({}))
}

fn get_item(shared: &Shared, body: &[u8]) -> Answer {
    let input: Value = serde_json::from_slice(body).map_err(|e| invalid("GetItem", e))?;
    let key = input
        .get("Key")
        .ok_or_else(|| invalid("GetItem", "no Key"))?;
    let pk = string_attr(key, "pk").ok_or_else(|| invalid("GetItem", "no string pk"))?;
    if string_attr(key, "sk") != Some(JOB_SK) {
        return Ok(json!({}));
    }
    Ok(match shared.lock().jobs.get(pk) {
        Some(item) => json!({"Item": item}),
        None => json!({}),
    })
}

/// `Query` with `Select: COUNT` over one partition: the distinct rows written to it. The key
/// condition must be `pk = :<placeholder>` (the name may be a `#placeholder` for `pk`); filters
/// are taken to be `attribute_exists(status)` (the adapter's and the Python twin's), which is
/// what the row count already means.
fn query(shared: &Shared, body: &[u8]) -> Answer {
    let input: Value = serde_json::from_slice(body).map_err(|e| invalid("Query", e))?;
    if input.get("Select").and_then(Value::as_str) != Some("COUNT") {
        return Err(invalid(
            "Query",
            "the stand-in stores no rows and answers only Select COUNT",
        ));
    }
    let condition = input
        .get("KeyConditionExpression")
        .and_then(Value::as_str)
        .unwrap_or("");
    // `pk = :pk` (the adapter) or `#n0 = :v0` with `#n0` naming `pk` (boto3's builder).
    let names = input.get("ExpressionAttributeNames");
    let placeholder = condition
        .split_once('=')
        .filter(|(name, _)| {
            let name = name.trim();
            let name = if name.starts_with('#') {
                names
                    .and_then(|n| n.get(name))
                    .and_then(Value::as_str)
                    .unwrap_or(name)
            } else {
                name
            };
            name == "pk"
        })
        .map(|(_, value)| value.trim())
        .ok_or_else(|| invalid("Query", format!("unsupported key condition `{condition}`")))?;
    let pk = input
        .get("ExpressionAttributeValues")
        .and_then(|v| v.get(placeholder))
        .and_then(|v| v.get("S"))
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("Query", format!("no string value for {placeholder}")))?;
    let count = shared.lock().rows.get(pk).map_or(0, HashSet::len);
    Ok(json!({"Count": count, "ScannedCount": count}))
}

// --- The `stand-in` role of the benchmark binaries ----------------------------------------------

/// `<binary> stand-in [--latency-ms 10]`: serves, prints `READY <url>`, and when its stdin closes
/// prints its [`StandinStats`] as one JSON line and exits. Run as a process of its own so its
/// memory and CPU are not the measured process's.
#[allow(clippy::print_stdout)]
pub fn standin_role(args: &crate::Args) -> Result<(), BenchError> {
    use std::io::Write;
    let latency = Duration::from_millis(args.number("latency-ms", 10)?);
    let rt = crate::runtime()?;
    rt.block_on(async {
        let standin = Standin::start(latency).await?;
        println!("READY {}", standin.url());
        std::io::stdout()
            .flush()
            .map_err(BenchError::io("stdout"))?;
        crate::child::wait_for_stdin_close().await?;
        let stats = serde_json::to_string(&standin.stats())
            .map_err(|e| BenchError::Failed(format!("stand-in stats: {e}")))?;
        println!("{stats}");
        std::io::stdout().flush().map_err(BenchError::io("stdout"))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use gemini_hooks::domain::event::JobKind;
    use gemini_hooks::domain::jobs::{JobRecord, JobState, ResultRow, RowStatus};
    use gemini_hooks::ports::ResultsStore;

    fn row(job: &str, key: &str, line: u64) -> ResultRow {
        ResultRow {
            job_id: job.into(),
            key: key.into(),
            line,
            status: RowStatus::Ok,
            text: Some("t".into()),
            finish_reason: Some("STOP".into()),
            prompt_tokens: Some(1),
            candidates_tokens: None,
            total_tokens: None,
            thoughts_tokens: None,
            model_version: None,
            response_json: Some("{}".into()),
            error_code: None,
            error_message: None,
            keyless: false,
            ingested_at_ms: 1,
        }
    }

    /// The real results adapter, through the real SDK, gets the answers it expects.
    #[tokio::test]
    async fn the_results_adapter_works_against_the_standin() {
        let standin = Standin::start(Duration::from_millis(1)).await.unwrap();
        let client = crate::consumer::dynamodb_client(&standin.url()).await;
        let store = gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore::new(
            client, "results",
        );
        let job = "batches/standin-test";
        assert!(store.load_job(job).await.unwrap().is_none());
        let mut record = JobRecord::new(job.to_owned(), JobKind::Batch, 1);
        record.state = JobState::Ingesting;
        assert!(store.save_job(&record).await.unwrap());
        let loaded = store.load_job(job).await.unwrap().unwrap();
        assert_eq!(loaded.state, JobState::Ingesting);
        let rows: Vec<ResultRow> = (1..=60).map(|i| row(job, &format!("k{i}"), i)).collect();
        store.put_rows(&rows).await.unwrap();
        // The same keys again: still 60 distinct rows.
        store.put_rows(&rows[..10]).await.unwrap();
        assert_eq!(store.count_rows(job).await.unwrap(), 60);
        assert_eq!(store.count_rows("batches/other").await.unwrap(), 0);
        let stats = standin.stats();
        assert_eq!(stats.batch_write_calls, 4, "{stats:?}");
        assert_eq!(stats.items_written, 70);
        assert_eq!(stats.rows_written, 70);
        assert_eq!(stats.max_items_per_call, 25);
        assert_eq!(stats.min_items_per_call, 10);
        assert_eq!(stats.violations(), 0);
        assert_eq!(stats.refused, 0, "{:?}", stats.first_refusal);
    }

    fn batch_body(keys: &[&str]) -> String {
        let requests: Vec<Value> = keys
            .iter()
            .map(|k| {
                json!({"PutRequest": {"Item": {
                    "pk": {"S": "JOB#j"}, "sk": {"S": k}, "status": {"S": "ok"},
                    "big": {"B": "AAAA"}, "n": {"N": "1"}, "m": {"M": {"x": {"L": [{"S": "y"}]}}}
                }}})
            })
            .collect();
        json!({"RequestItems": {"t": requests}}).to_string()
    }

    #[tokio::test]
    async fn duplicate_keys_and_oversize_calls_are_reported() {
        let standin = Standin::start(Duration::from_millis(1)).await.unwrap();
        let http = reqwest::Client::new();
        let post = |body: String| {
            http.post(standin.url())
                .header("x-amz-target", "DynamoDB_20120810.BatchWriteItem")
                .header("content-type", CONTENT_TYPE)
                .body(body)
                .send()
        };
        let ok = post(batch_body(&["RESULT#a", "RESULT#b", "RESULT#a"]))
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.text().await.unwrap(), r#"{"UnprocessedItems":{}}"#);
        let many: Vec<String> = (0..26).map(|i| format!("RESULT#{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        post(batch_body(&many)).await.unwrap();
        let stats = standin.stats();
        assert_eq!(stats.duplicate_key_calls, 1);
        assert_eq!(stats.duplicate_keys, 1);
        assert_eq!(
            stats.first_duplicate.as_deref(),
            Some("t: JOB#j / RESULT#a")
        );
        assert_eq!(stats.oversize_calls, 1);
        assert_eq!(stats.violations(), 2);
        let refused = http
            .post(standin.url())
            .header("x-amz-target", "DynamoDB_20120810.Scan")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        assert_eq!(standin.stats().refused, 1);
    }

    /// Requests are held concurrently, not one after another: four requests held 1 s each are
    /// all in flight together.
    #[tokio::test]
    async fn the_latency_applies_to_requests_concurrently() {
        let standin = Standin::start(Duration::from_secs(1)).await.unwrap();
        let http = reqwest::Client::new();
        let calls = (0..4).map(|i| {
            http.post(standin.url())
                .header("x-amz-target", "DynamoDB_20120810.BatchWriteItem")
                .body(batch_body(&[&format!("RESULT#{i}")]))
                .send()
        });
        for r in futures::future::join_all(calls).await {
            assert_eq!(r.unwrap().status(), 200);
        }
        let stats = standin.stats();
        assert_eq!(stats.max_batch_writes_in_flight, 4, "{stats:?}");
        assert_eq!(stats.batch_write_calls, 4);
    }
}
