//! The local pipeline: the SQLite store opened once, the receiver use case behind the HTTP
//! server, and (unless receive-only) the consumer use case behind the queue worker. The use
//! cases are built as the Lambdas build theirs, through `gemini_hooks::wiring` (verifier,
//! routes, Gemini API, runtime); only the adapters differ (SQLite for DynamoDB and SQS).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use gemini_hooks::adapters::aws::sqs::MAX_MESSAGE_BYTES as SQS_MAX_MESSAGE_BYTES;
use gemini_hooks::adapters::file_objects::FileObjectStore;
use gemini_hooks::adapters::file_payloads::FilePayloadStore;
use gemini_hooks::adapters::jwks::StaticJwks;
use gemini_hooks::adapters::sqlite::SqliteStore;
use gemini_hooks::ports::clock::SharedClock;
use gemini_hooks::ports::keys::KeySource;
use gemini_hooks::ports::payloads::PayloadStore;
use gemini_hooks::ports::{EventQueue, ResultsStore};
use gemini_hooks::usecases::consume::{Announcer, ConsumeSettings, Consumer};
use gemini_hooks::usecases::offload::OffloadingQueue;
use gemini_hooks::usecases::receive::Receiver;
use gemini_hooks::wiring::{self, Runtime};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::{ConsumerSetup, PipelineConfig};
use super::notify::Notifier;
use super::server;
use super::worker::Worker;
use crate::support::error::CliError;
use crate::support::layout::{store_path, table_path};
use crate::support::lock::DataDirLock;

/// Rows per SQLite transaction (DynamoDB's 25 would only slow SQLite down).
const LOCAL_ROWS_PER_WRITE: usize = 500;

/// A running local pipeline.
pub struct Pipeline {
    pub addr: SocketAddr,
    pub store: SqliteStore,
    /// Messages that were hidden by a previous run and are retried now.
    pub resumed: u64,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    consumer: Option<JoinHandle<()>>,
    notifier: Option<JoinHandle<()>>,
    /// Released when the pipeline is dropped, after it stopped.
    _lock: DataDirLock,
}

impl Pipeline {
    /// Opens the store and starts the HTTP server and (if configured) the consumer loop.
    /// `lock` is the data directory's lock, held for as long as the pipeline lives.
    pub async fn start(
        listener: TcpListener,
        config: PipelineConfig,
        lock: DataDirLock,
    ) -> Result<Self, CliError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| CliError::io(&config.data_dir, e))?;
        let runtime = Runtime::system();
        let clock = Arc::clone(&runtime.clock);
        let store = SqliteStore::open(store_path(&config.data_dir))?
            .with_max_receive_count(config.max_receive_count);
        let now = clock.now_ms();
        store.purge_expired_dedupe(now).await?;
        let resumed = store.requeue_hidden(now).await?;
        // Those messages are retried now: the claims the previous run held must not stall them.
        store.expire_pending_claims(now).await?;

        let http = wiring::http_client()
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
        // Like the Lambdas: a message over SQS's limit waits in the data directory and the queue
        // carries a pointer, so `dev` takes the same path large deliveries take on AWS.
        let payloads: Arc<dyn PayloadStore> = Arc::new(FilePayloadStore::new(&config.data_dir));
        let queue: Arc<dyn EventQueue> = Arc::new(OffloadingQueue::new(
            shared.clone(),
            Arc::clone(&payloads),
            SQS_MAX_MESSAGE_BYTES,
        ));
        let ids = Arc::clone(&runtime.ids);
        let receiver = Receiver::new(
            Arc::new(wiring::webhook_verifier(
                &config.verifier,
                http.clone(),
                keys,
            )),
            shared.clone(),
            queue,
            Arc::clone(&clock),
            config.limits,
        )
        .with_ids(runtime.ids);
        let consumer = match &config.consumer {
            None => None,
            Some(setup) => {
                // Generated videos are copied into `<data dir>/videos/…`, as the Lambda copies
                // them into its output bucket.
                let consumer =
                    build_consumer(setup, &config, shared.clone(), http, Arc::clone(&clock))?
                        .with_payloads(payloads)
                        .with_video_store(Arc::new(FileObjectStore::new(&config.data_dir)));
                // `--notify-url`: events are claimed in the store's dedupe table and queued in
                // its outbox, as the Lambda claims them in DynamoDB and puts them on the bus.
                Some(Arc::new(match &config.notify {
                    Some(_) => consumer.with_announcer(
                        Announcer::new(shared.clone(), shared.clone()).with_ids(ids),
                    ),
                    None => consumer,
                }))
            }
        };

        let addr = listener
            .local_addr()
            .map_err(|e| CliError::Failed(format!("cannot read the bound address: {e}")))?;
        let (shutdown, watch_rx) = watch::channel(false);
        let server = server::spawn(
            listener,
            receiver,
            config.local_jwks.clone(),
            watch_rx.clone(),
        );
        let consumer = consumer.map(|consumer| {
            let worker = Worker {
                store: store.clone(),
                consumer,
                visibility_ms: config.visibility_ms,
                concurrency: config.concurrency.max(1),
                clock: Arc::clone(&clock),
            };
            tokio::spawn(worker.run(watch_rx.clone()))
        });
        let notifier = config.notify.clone().map(|setup| {
            let notifier = Notifier {
                store: store.clone(),
                setup,
                clock,
            };
            tokio::spawn(notifier.run(watch_rx))
        });
        Ok(Self {
            addr,
            store,
            resumed,
            shutdown,
            server,
            consumer,
            notifier,
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
        if let Some(notifier) = self.notifier {
            let _ = notifier.await;
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
    let routes = wiring::routes(default_store, &setup.routes, |table| {
        if let Some(store) = opened.get(table) {
            return Ok::<_, CliError>(Arc::clone(store));
        }
        let store: Arc<dyn ResultsStore> = Arc::new(
            SqliteStore::open(table_path(&config.data_dir, table)?)?.with_table_name(table),
        );
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
        wiring::gemini_api(&setup.gemini, setup.api_key()?, http),
        routes,
        queue,
        clock,
        settings,
    ))
}
