//! The in-process consumer against moto (a DynamoDB results table, an SQS queue for
//! continuations) and the fake Gemini API, at a fixed manual clock: what the consume tests
//! (`consume_moto`, `consume_scale`, the attack suites) share.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::adapters::aws::sqs::SqsEventQueue;
use gemini_hooks::adapters::gemini::{GeminiClient, GeminiSettings, RetryPolicy};
use gemini_hooks::domain::envelope::{
    EventSummary, OutgoingMessage, QueueEnvelope, SignatureMode, WebhookEnvelope,
};
use gemini_hooks::domain::event::Event;
use gemini_hooks::domain::jobs::{JobRecord, ResultRow};
use gemini_hooks::ports::ResultsStore;
use gemini_hooks::ports::clock::ManualClock;
use gemini_hooks::usecases::consume::{ConsumeSettings, Consumer};
use gemini_hooks::usecases::routes::Routes;
use serde_json::Value;

use crate::fake_gemini::{FakeGemini, OutputSpec, operation_json};
use crate::moto;

/// The manual clock's time: deliveries were received a second before.
pub const T0_MS: i64 = 1_795_000_000_000;

/// A fake Gemini API, a fresh results table and events queue on moto, a manual clock.
pub struct ConsumeHarness {
    pub gemini: FakeGemini,
    pub ddb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub store: Arc<DynamoDbResultsStore>,
    pub clock: ManualClock,
}

impl ConsumeHarness {
    /// Table and queue names start with `prefix`.
    pub async fn new(prefix: &str) -> Self {
        let ddb = moto::dynamodb().await;
        let sqs = moto::sqs().await;
        let table = moto::unique_name(&format!("{prefix}-results"));
        moto::create_results_table(&ddb, &table).await;
        let queue =
            moto::create_queue(&sqs, &moto::unique_name(&format!("{prefix}-events")), 5, 30).await;
        Self {
            gemini: FakeGemini::start().await,
            store: Arc::new(DynamoDbResultsStore::new(ddb.clone(), table)),
            ddb,
            sqs,
            queue_url: queue.url,
            clock: ManualClock::at_ms(T0_MS),
        }
    }

    /// The Gemini client on the fake: quick retries, and `request_timeout` when given (else the
    /// client's own, 15 s).
    pub fn gemini_client(&self, request_timeout: Option<Duration>) -> Arc<GeminiClient> {
        let mut gs = GeminiSettings::new(FakeGemini::API_KEY);
        gs.base_url = self.gemini.base_url();
        gs.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        };
        if let Some(t) = request_timeout {
            gs.request_timeout = t;
        }
        Arc::new(GeminiClient::new(gs, reqwest::Client::new()))
    }

    /// A consumer with `routes`, Gemini calls cut at 5 s.
    pub fn consumer_with(&self, settings: ConsumeSettings, routes: Routes) -> Consumer {
        self.build(
            self.gemini_client(Some(Duration::from_secs(5))),
            routes,
            settings,
        )
    }

    /// The default consumer: this harness's table, default settings.
    pub fn consumer(&self) -> Consumer {
        self.consumer_with(
            ConsumeSettings::default(),
            Routes::single(self.store.clone()),
        )
    }

    /// A consumer writing to `store` (a wrapper of the table), with the client's own timeout, so
    /// only the invocation deadline bounds a hung call.
    pub fn consumer_for(
        &self,
        store: Arc<dyn ResultsStore>,
        settings: ConsumeSettings,
    ) -> Consumer {
        self.build(self.gemini_client(None), Routes::single(store), settings)
    }

    fn build(
        &self,
        gemini: Arc<GeminiClient>,
        routes: Routes,
        settings: ConsumeSettings,
    ) -> Consumer {
        Consumer::new(
            gemini,
            routes,
            Arc::new(SqsEventQueue::new(self.sqs.clone(), self.queue_url.clone())),
            Arc::new(self.clock.clone()),
            settings,
        )
    }

    /// A succeeded batch `batches/<id>` whose results file `files/<id>` holds `body`.
    pub fn batch_with_file(&self, id: &str, body: String) {
        let file = format!("files/{id}");
        self.gemini.put_file(&file, Bytes::from(body));
        self.gemini.put_operation(operation_json(
            &format!("batches/{id}"),
            "BATCH_STATE_SUCCEEDED",
            OutputSpec::File(file),
        ));
    }

    /// The messages on the queue (continuations, hand-overs), taken off it.
    pub async fn queued(&self) -> Vec<String> {
        moto::take_bodies(&self.sqs, &self.queue_url).await
    }

    pub async fn rows(&self, job_id: &str) -> Vec<ResultRow> {
        self.store
            .list_rows(job_id)
            .await
            .unwrap_or_else(|e| panic!("list_rows {job_id}: {e}"))
    }

    pub async fn job(&self, job_id: &str) -> JobRecord {
        match self.store.load_job(job_id).await {
            Ok(Some(j)) => j,
            other => panic!("job {job_id}: {other:?}"),
        }
    }
}

/// The queue message the receiver would have produced for `event` (its `user_metadata` from
/// the event), received a second before [`T0_MS`].
pub fn webhook_message(webhook_id: &str, event: &Value) -> OutgoingMessage {
    let parsed = Event::from_value(event, None).unwrap_or_else(|e| panic!("event: {e}"));
    QueueEnvelope::Webhook(WebhookEnvelope {
        webhook_id: webhook_id.to_owned(),
        received_at_ms: T0_MS - 1_000,
        signature_mode: SignatureMode::Static,
        bound: true,
        event: EventSummary::from(&parsed),
        raw_event: event.clone(),
        user_metadata: parsed.user_metadata.clone(),
    })
    .to_message()
    .unwrap_or_else(|e| panic!("envelope: {e}"))
}

/// The body of [`webhook_message`].
pub fn webhook_body(webhook_id: &str, event: &Value) -> String {
    webhook_message(webhook_id, event).body
}
