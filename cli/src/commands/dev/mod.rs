//! `gemini-hooks dev`: the receiver and the consumer as one local process on the SQLite store.
//!
//! The HTTP side answers through [`gemini_hooks::usecases::http::handle`] with the same [`Receiver`] use
//! case as the Lambda; the consumer side receives from the durable SQLite queue and calls the
//! same [`Consumer`] use case as the SQS-triggered Lambda. Only the adapters differ.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use gemini_hooks::adapters::gemini::{DEFAULT_BASE_URL, GeminiClient, GeminiSettings};
use gemini_hooks::adapters::jwks::StaticJwks;
use gemini_hooks::adapters::sqlite::{LocalMessage, SqliteStore};
use gemini_hooks::config::{
    ConfigError, Env, ReceiveLimits, RouteTables, VerifierConfig, env, route_tables,
};
use gemini_hooks::domain::envelope::QueueEnvelope;
use gemini_hooks::domain::verify::standard::parse_secret_list;
use gemini_hooks::ports::clock::{SharedClock, SystemClock};
use gemini_hooks::ports::keys::KeySource;
use gemini_hooks::ports::{EventQueue, ResultsStore};
use gemini_hooks::usecases::consume::{ConsumeError, ConsumeSettings, Consumer, Handled};
use gemini_hooks::usecases::http::{HttpReply, handle};
use gemini_hooks::usecases::receive::Receiver;
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::support::args::LOCAL_AUDIENCE;
use crate::support::error::CliError;
use crate::support::keys::LocalKey;
use crate::support::layout::{store_path, table_path};
use crate::support::lock::DataDirLock;
use crate::support::output::line;
use crate::support::sample_gemini::{self, SAMPLE_API_KEY};
use crate::support::util::now_ms;

mod args;

pub use args::{DevArgs, LONG_ABOUT};

/// How often the consumer looks at the queue when nothing woke it (other processes, delays).
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// First retry delay after a retryable failure; doubles per receive, up to [`MAX_RETRY_DELAY`].
const BASE_RETRY_DELAY_MS: i64 = 2_000;
const MAX_RETRY_DELAY_MS: i64 = 60_000;
/// Messages still being handled this long after a shutdown signal are abandoned (and released).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A message handled for longer than this gets progress lines.
const PROGRESS_AFTER: Duration = Duration::from_secs(3);
/// At most one progress line per message this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How often running messages are looked at for progress.
const PROGRESS_CHECK: Duration = Duration::from_secs(1);
/// Rows per SQLite transaction (DynamoDB's 25 would only slow SQLite down).
const LOCAL_ROWS_PER_WRITE: usize = 500;

/// The consumer's side of the configuration.
#[derive(Debug, Clone)]
pub struct ConsumerSetup {
    pub gemini: GeminiSettings,
    pub routes: RouteTables,
}

/// Everything a local pipeline needs, already validated.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub data_dir: PathBuf,
    pub verifier: VerifierConfig,
    pub limits: ReceiveLimits,
    /// `None`: receive and queue only.
    pub consumer: Option<ConsumerSetup>,
    /// A JWKS to serve at `/.well-known/jwks.json` (`--local-jwks`).
    pub local_jwks: Option<Value>,
    pub visibility_ms: i64,
    pub max_receive_count: u32,
    pub concurrency: usize,
}

/// A running local pipeline.
pub struct Pipeline {
    pub addr: SocketAddr,
    pub store: SqliteStore,
    /// Messages that were hidden by a previous run and are retried now.
    pub resumed: u64,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    consumer: Option<JoinHandle<()>>,
    /// Released when the pipeline is dropped, after it stopped.
    _lock: DataDirLock,
}

/// Binds `addr` (`HOST:PORT`; a name such as `localhost` is resolved, IPv4 first) before the
/// verifier is configured, so the JWKS URL of `--local-jwks` (which names the port) is known.
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener, CliError> {
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
        match tokio::net::TcpListener::bind(candidate).await {
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

impl Pipeline {
    /// Opens the store and starts the HTTP server and (if configured) the consumer loop.
    /// `lock` is the data directory's lock, held for as long as the pipeline lives.
    pub async fn start(
        listener: tokio::net::TcpListener,
        config: PipelineConfig,
        lock: DataDirLock,
    ) -> Result<Self, CliError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| CliError::io(&config.data_dir, e))?;
        let clock: SharedClock = Arc::new(SystemClock);
        let store = SqliteStore::open(store_path(&config.data_dir))?
            .with_max_receive_count(config.max_receive_count);
        let now = clock.now_ms();
        store.purge_expired_dedupe(now).await?;
        let resumed = store.requeue_hidden(now).await?;

        let http = gemini_hooks::wiring::http_client()
            .map_err(|e| CliError::Failed(format!("cannot build the HTTP client: {e}")))?;
        let shared: Arc<SqliteStore> = Arc::new(store.clone());
        // `--local-jwks`: the data directory's key, verified in process (the JWKS endpoint is
        // served too, for anyone who wants to look).
        let keys: Option<Arc<dyn KeySource>> = match &config.local_jwks {
            Some(doc) => Some(Arc::new(
                StaticJwks::from_json(doc.to_string().as_bytes(), "the local dynamic-signing key")
                    .map_err(CliError::Failed)?,
            )),
            None => None,
        };
        let receiver = Receiver::new(
            Arc::new(gemini_hooks::wiring::webhook_verifier(
                &config.verifier,
                http.clone(),
                keys,
            )),
            shared.clone(),
            shared.clone(),
            Arc::clone(&clock),
            config.limits,
        );
        let consumer = match &config.consumer {
            None => None,
            Some(setup) => Some(Arc::new(build_consumer(
                setup,
                &config,
                shared.clone(),
                http,
                Arc::clone(&clock),
            )?)),
        };

        let addr = listener
            .local_addr()
            .map_err(|e| CliError::Failed(format!("cannot read the bound address: {e}")))?;
        let (shutdown, watch_rx) = watch::channel(false);
        let mut app = Router::new();
        if let Some(jwks) = config.local_jwks.clone() {
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
        let mut server_stop = watch_rx.clone();
        let server = tokio::spawn(async move {
            let stopped = async move {
                let _ = server_stop.wait_for(|stop| *stop).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        let consumer = consumer.map(|consumer| {
            let worker = Worker {
                store: store.clone(),
                consumer,
                visibility_ms: config.visibility_ms,
                concurrency: config.concurrency.max(1),
                clock,
            };
            tokio::spawn(worker.run(watch_rx))
        });
        Ok(Self {
            addr,
            store,
            resumed,
            shutdown,
            server,
            consumer,
            _lock: lock,
        })
    }

    /// Stops accepting deliveries, lets running messages finish (up to a grace period) and
    /// returns. Unfinished messages are released so the next run retries them at once.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        if let Some(consumer) = self.consumer {
            let _ = consumer.await;
        }
    }
}

fn build_consumer(
    setup: &ConsumerSetup,
    config: &PipelineConfig,
    default: Arc<SqliteStore>,
    http: reqwest::Client,
    clock: SharedClock,
) -> Result<Consumer, CliError> {
    // Every table ROUTES names is its own SQLite file; open them all up front so a bad one is
    // a start-up error, not a failure on the first message of that group.
    let default_store: Arc<dyn ResultsStore> = default.clone();
    let mut opened: HashMap<String, Arc<dyn ResultsStore>> = HashMap::new();
    let routes = gemini_hooks::wiring::routes(default_store, &setup.routes, |table| {
        if let Some(store) = opened.get(table) {
            return Ok::<_, CliError>(Arc::clone(store));
        }
        let store: Arc<dyn ResultsStore> =
            Arc::new(SqliteStore::open(table_path(&config.data_dir, table)?)?);
        opened.insert(table.to_owned(), Arc::clone(&store));
        Ok(store)
    })?;
    let visibility = config.visibility_ms.max(1_000);
    let settings = ConsumeSettings {
        rows_per_write: LOCAL_ROWS_PER_WRITE,
        max_concurrency: config.concurrency.max(1),
        deadline_margin_ms: ConsumeSettings::default()
            .deadline_margin_ms
            .min(visibility / 4),
        ..ConsumeSettings::default()
    };
    let queue: Arc<dyn EventQueue> = default;
    Ok(Consumer::new(
        std::sync::Arc::new(GeminiClient::new(setup.gemini.clone(), http)),
        routes,
        queue,
        clock,
        settings,
    ))
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
    let bytes = match read_body(&headers, body, limit).await {
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

/// A message being handled.
struct InFlight {
    message_id: String,
    receive_count: u32,
    job_id: Option<String>,
    started: Instant,
    last_progress: Option<Instant>,
}

/// The consumer loop over the SQLite queue.
struct Worker {
    store: SqliteStore,
    consumer: Arc<Consumer>,
    visibility_ms: i64,
    concurrency: usize,
    clock: SharedClock,
}

impl Worker {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let signal = self.store.enqueued_signal();
        let mut tasks: JoinSet<Result<Handled, ConsumeError>> = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, InFlight> = HashMap::new();
        let mut progress = tokio::time::interval(PROGRESS_CHECK);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *stop.borrow() {
                break;
            }
            while tasks.len() < self.concurrency {
                let now = self.clock.now_ms();
                match self.store.receive(self.visibility_ms, now).await {
                    Ok(Some(message)) => {
                        let flight = self.spawn(&mut tasks, message, now);
                        in_flight.insert(flight.0, flight.1);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the local queue");
                        break;
                    }
                }
            }
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    self.finish(done, &mut in_flight).await;
                }
                () = signal.notified() => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = progress.tick() => self.report_progress(&mut in_flight).await,
            }
        }
        // Shutting down: give running messages a moment, then release the rest for the next run.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline, tasks.join_next_with_id()).await {
                Ok(Some(done)) => self.finish(done, &mut in_flight).await,
                Ok(None) => break,
                Err(_) => {
                    tasks.abort_all();
                    break;
                }
            }
        }
        let now = self.clock.now_ms();
        for (_, flight) in in_flight.drain() {
            // Not a failure: the next run retries it at once, with its last error kept.
            if let Err(e) = self.store.release(&flight.message_id, 0, now).await {
                tracing::warn!(error = %e, message_id = %flight.message_id, "could not release an unfinished message");
            } else {
                tracing::info!(message_id = %flight.message_id, "unfinished message released for the next run");
            }
        }
    }

    fn spawn(
        &self,
        tasks: &mut JoinSet<Result<Handled, ConsumeError>>,
        message: LocalMessage,
        now: i64,
    ) -> (tokio::task::Id, InFlight) {
        let job_id = match QueueEnvelope::from_body(&message.body) {
            Ok(QueueEnvelope::Webhook(w)) => w.event.job_id,
            Ok(QueueEnvelope::Continuation(c)) => Some(c.job_id),
            Err(_) => None,
        };
        let consumer = Arc::clone(&self.consumer);
        // Hand over to a continuation before the message becomes visible again, exactly as the
        // Lambda does before its timeout.
        let deadline = now.saturating_add(self.visibility_ms);
        let body = message.body;
        let handle =
            tasks.spawn(async move { consumer.handle_message(&body, Some(deadline)).await });
        let started = Instant::now();
        (
            handle.id(),
            InFlight {
                message_id: message.id,
                receive_count: message.receive_count,
                job_id,
                started,
                last_progress: None,
            },
        )
    }

    async fn finish(
        &self,
        done: Result<(tokio::task::Id, Result<Handled, ConsumeError>), tokio::task::JoinError>,
        in_flight: &mut HashMap<tokio::task::Id, InFlight>,
    ) {
        let (task, outcome) = match done {
            Ok((task, outcome)) => (task, Ok(outcome)),
            Err(join) => (join.id(), Err(join)),
        };
        let Some(flight) = in_flight.remove(&task) else {
            return;
        };
        let now = self.clock.now_ms();
        let id = flight.message_id.as_str();
        let result = match outcome {
            Ok(Ok(_handled)) => self.store.delete(id).await.map(|_| ()),
            Ok(Err(e)) => {
                let delay = if e.is_retryable() {
                    let doublings = flight.receive_count.saturating_sub(1).min(16);
                    (BASE_RETRY_DELAY_MS << doublings).min(MAX_RETRY_DELAY_MS)
                } else {
                    0
                };
                let attempts_left = self
                    .store
                    .max_receive_count()
                    .saturating_sub(flight.receive_count);
                // The one line per failed receive: the Gemini client's own retries log at
                // debug level, and this carries their last reason.
                if e.is_retryable() {
                    tracing::warn!(
                        message_id = id,
                        job_id = flight.job_id.as_deref().unwrap_or(""),
                        outcome = e.code(),
                        error = %e,
                        retry_in_ms = delay,
                        attempts_left,
                        "message failed; it will be retried"
                    );
                } else {
                    tracing::error!(
                        message_id = id,
                        job_id = flight.job_id.as_deref().unwrap_or(""),
                        outcome = e.code(),
                        error = %e,
                        attempts_left,
                        "message cannot be handled; it goes to the dead letters after its last attempt"
                    );
                }
                let reason = format!("{}: {e}", e.code());
                self.store
                    .release_failed(id, delay, now, &reason)
                    .await
                    .map(|_| ())
            }
            Err(join) => {
                tracing::error!(message_id = id, outcome = "panic", error = %join, "message handler panicked");
                let reason = format!("panic: {join}");
                self.store
                    .release_failed(id, 0, now, &reason)
                    .await
                    .map(|_| ())
            }
        };
        if let Err(e) = result {
            tracing::error!(message_id = id, error = %e, "cannot update the local queue");
        }
    }

    async fn report_progress(&self, in_flight: &mut HashMap<tokio::task::Id, InFlight>) {
        for flight in in_flight.values_mut() {
            if flight.started.elapsed() < PROGRESS_AFTER
                || flight
                    .last_progress
                    .is_some_and(|t| t.elapsed() < PROGRESS_EVERY)
            {
                continue;
            }
            flight.last_progress = Some(Instant::now());
            let Some(job) = &flight.job_id else { continue };
            match self.store.row_count(job).await {
                Ok(rows) => tracing::info!(
                    job_id = %job,
                    rows,
                    elapsed_s = flight.started.elapsed().as_secs(),
                    "still ingesting"
                ),
                Err(e) => tracing::debug!(error = %e, "progress: cannot count rows"),
            }
        }
    }
}

/// Environment with `--secret` layered over `WEBHOOK_SIGNING_SECRETS` and, for `--local-jwks`,
/// the local JWKS URL over `WEBHOOK_JWKS_URL`.
fn layered_env(overrides: HashMap<&'static str, String>) -> Env<'static> {
    Env::from_fn(move |name| {
        overrides
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    })
}

/// Reads the consumer's variables (`GEMINI_API_KEY`, `GEMINI_API_BASE_URL`, `ROUTES`).
pub fn consumer_setup(env: &Env<'_>) -> Result<ConsumerSetup, CliError> {
    let key = env.required(env::GEMINI_API_KEY).map_err(|e| {
        CliError::Config(
            e,
            Some(
                "the consumer fetches batch results with it; run with --receive-only to only \
                 receive and queue"
                    .into(),
            ),
        )
    })?;
    let mut gemini = GeminiSettings::new(key);
    gemini.base_url = env.url(env::GEMINI_API_BASE_URL, DEFAULT_BASE_URL)?;
    Ok(ConsumerSetup {
        gemini,
        routes: route_tables(env)?,
    })
}

/// The consumer of `--sample-gemini`: the bundled sample endpoint, on a free local port.
async fn sample_consumer(env: &Env<'_>) -> Result<ConsumerSetup, CliError> {
    let (url, _) = sample_gemini::start().await?;
    let mut gemini = GeminiSettings::new(SAMPLE_API_KEY);
    gemini.base_url = url;
    Ok(ConsumerSetup {
        gemini,
        routes: route_tables(env)?,
    })
}

fn secrets_hint(e: ConfigError) -> CliError {
    let hint = match &e {
        ConfigError::Missing(_) | ConfigError::NoVerification => Some(
            "export WEBHOOK_SIGNING_SECRETS=$(gemini-hooks secret) — or pass --secret — and use \
             the same value with `gemini-hooks send`",
        ),
        ConfigError::Invalid { name, .. } if *name == env::WEBHOOK_SIGNING_SECRETS => Some(
            "`gemini-hooks secret` prints a valid new one (whsec_ + base64 of 24 to 64 random \
             bytes)",
        ),
        _ => None,
    };
    CliError::Config(e, hint.map(str::to_owned))
}

/// `--secret`, checked on its own so an error names the flag, not the variable it overrides.
fn secret_flag(flag: Option<&str>) -> Result<Option<String>, CliError> {
    let Some(secret) = flag.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    parse_secret_list(secret).map_err(|e| {
        CliError::Usage(format!(
            "--secret: {e}\n  hint: `gemini-hooks secret` prints a valid new one"
        ))
    })?;
    Ok(Some(secret.to_owned()))
}

/// Runs `gemini-hooks dev` until Ctrl-C / SIGTERM.
pub async fn run(args: DevArgs, out: &mut dyn Write) -> Result<(), CliError> {
    // The lock first: a second `dev` on this directory must say so, not fail on the port.
    let lock = DataDirLock::acquire(&args.data.data_dir)?;
    let listener = bind(&args.addr).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(format!("cannot read the bound address: {e}")))?;
    let mut overrides = HashMap::new();
    if let Some(secret) = secret_flag(args.secret.as_deref())? {
        overrides.insert(env::WEBHOOK_SIGNING_SECRETS, secret);
    }
    let local_jwks = if args.local_jwks {
        let (key, path, created) = LocalKey::resolve(None, &args.data.data_dir)?;
        if created {
            tracing::info!(path = %path.display(), "generated a local dynamic-signing key");
        }
        overrides.insert(
            env::WEBHOOK_JWKS_URL,
            format!("http://{addr}/.well-known/jwks.json"),
        );
        // Dynamic mode needs an audience; locally it is the one `send --dynamic` signs for,
        // unless the operator chose another.
        let audience_set =
            std::env::var(env::WEBHOOK_JWT_AUDIENCE).is_ok_and(|v| !v.trim().is_empty());
        if !audience_set {
            overrides.insert(env::WEBHOOK_JWT_AUDIENCE, LOCAL_AUDIENCE.to_owned());
        }
        Some(key.jwks(key.kid()))
    } else {
        None
    };
    let env = layered_env(overrides);
    let verifier = VerifierConfig::from_env(&env, None).map_err(secrets_hint)?;
    let limits = ReceiveLimits::from_env(&env)?;
    let consumer = if args.receive_only {
        None
    } else if args.sample_gemini {
        Some(sample_consumer(&env).await?)
    } else {
        Some(consumer_setup(&env)?)
    };
    let config = PipelineConfig {
        data_dir: args.data.data_dir.clone(),
        verifier,
        limits,
        consumer,
        local_jwks,
        visibility_ms: i64::try_from(args.visibility_timeout.saturating_mul(1000))
            .unwrap_or(i64::MAX),
        max_receive_count: args.max_receive_count,
        concurrency: args.concurrency,
    };
    let summary = describe(&config, args.sample_gemini);
    let pipeline = Pipeline::start(listener, config, lock).await?;
    let stats = pipeline.store.queue_stats(now_ms()).await?;
    line(
        out,
        &format!("gemini-hooks dev: listening on http://{}/", pipeline.addr),
    )?;
    line(
        out,
        &format!(
            "  store      {} ({} queued, {} dead letters{})",
            pipeline.store.path().display(),
            stats.visible + stats.invisible,
            stats.dead_letters,
            if pipeline.resumed > 0 {
                format!(", {} resumed from the last run", pipeline.resumed)
            } else {
                String::new()
            }
        ),
    )?;
    for l in summary {
        line(out, &l)?;
    }
    let send_url = if pipeline.addr.port() == 9000 && pipeline.addr.ip().is_loopback() {
        String::new()
    } else {
        format!(" --url http://{}/", pipeline.addr)
    };
    line(
        out,
        &format!(
            "  try        gemini-hooks send batch.succeeded{send_url}   (same \
             WEBHOOK_SIGNING_SECRETS); Ctrl-C stops"
        ),
    )?;
    out.flush()
        .map_err(|e| CliError::io(Path::new("<stdout>"), e))?;

    wait_for_shutdown_signal().await;
    tracing::info!("shutting down: no new deliveries; letting running messages finish");
    pipeline.stop().await;
    Ok(())
}

fn describe(config: &PipelineConfig, sample: bool) -> Vec<String> {
    let v = &config.verifier;
    let dynamic = match &v.jwt {
        Some(jwt) if config.local_jwks.is_some() => format!(
            "dynamic JWTs for aud {} against the local key",
            jwt.rules.audiences.join(",")
        ),
        Some(jwt) => format!(
            "dynamic JWTs for aud {} against {}",
            jwt.rules.audiences.join(","),
            jwt.jwks.url
        ),
        None => "dynamic JWTs off (no WEBHOOK_JWT_AUDIENCE; --local-jwks turns them on)".into(),
    };
    let mut lines = vec![format!(
        "  verifying  {} static secret(s), window ±{} s; {dynamic}",
        v.secrets.as_ref().map_or(0, Vec::len),
        v.tolerance_secs,
    )];
    lines.push(match &config.consumer {
        Some(c) => format!(
            "  consumer   {}Gemini API at {} ({} at once, visibility {} s, dead letter after {} receives)",
            if sample { "SAMPLE " } else { "" },
            c.gemini.base_url,
            config.concurrency,
            config.visibility_ms / 1000,
            config.max_receive_count
        ),
        None => "  consumer   off (--receive-only): deliveries are queued for a later run".into(),
    });
    if sample {
        lines.push(
            "  SAMPLE     bundled sample data, nothing goes to Google: every batches/sample-… id \
             is a sample batch (send picks one; -failed-/-expired-/-cancelled- in the id set \
             its state)"
                .into(),
        );
    }
    lines
}

/// Ctrl-C, or SIGTERM on Unix.
pub async fn wait_for_shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
