//! Issue #6 item 1, the duplicate storm: 1 000 deliveries of 200 distinct webhook ids, each id
//! sent 5 times (every copy with a fresh timestamp and signature, as a sender's retries are), in
//! a seeded random order, by 32 concurrent senders spread over two receiver instances that share
//! one dedupe table and one queue → exactly 200 messages; the consumer then turns them into
//! exactly 200 jobs' worth of rows.
//!
//! Two shapes, both in the suite:
//! - through the real binaries: two fake Runtime APIs (two receiver deployments), each serving
//!   several `receiver` processes (execution environments, each one invocation at a time, as on
//!   Lambda), then the real `consumer` binary fed by a simulated SQS poller;
//! - in process: two `Receiver` use cases with their own AWS clients behind `http::handle`, so all
//!   32 senders really race on the conditional claim at once (a Lambda process never runs two
//!   invocations concurrently, so the binaries cap the race at the number of processes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod reliability_common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::config::ReceiveLimits;
use gemini_hooks::domain::jobs::JobState;
use gemini_hooks::domain::verify::standard::StandardVerifier;
use gemini_hooks::ports::ResultsStore;
use gemini_hooks::ports::clock::SystemClock;
use gemini_hooks::usecases::http::handle;
use gemini_hooks::usecases::receive::Receiver;
use gemini_hooks::usecases::verify::WebhookVerifier;
use gemini_hooks_tests::bins::bin_path;
use gemini_hooks_tests::delivery::{
    TEST_SECRET, batch_succeeded_body, function_url_event, header_map, signed_headers, test_secret,
};
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, OutputSpec, inline_success, operation_json, sample_key, sample_results,
};
use gemini_hooks_tests::moto;
use gemini_hooks_tests::runtime_api::{FunctionProcess, RuntimeApi, spawn_function};
use http::Method;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reliability_common::{AwsStack, failed_ids, item_s, now_secs, sqs_event, url_reply};
use serde_json::Value;

const IDS: usize = 200;
const COPIES: usize = 5;
const SENDERS: usize = 32;
const INSTANCES: usize = 2;
/// Execution environments (processes) per receiver instance.
const ENVIRONMENTS: usize = 3;
/// Lambda's default SQS batch size.
const SQS_BATCH: usize = 10;
const SEED: u64 = 0x6e6d_2026;

fn webhook_id(i: usize) -> String {
    format!("msg_storm_{i:03}")
}

fn batch_id(i: usize) -> String {
    format!("storm-{i:03}")
}

/// Every delivery of the storm: `(id index, receiver instance)`, each id `COPIES` times, in a
/// seeded random order with a random instance per delivery.
fn plan(seed: u64) -> Vec<(usize, usize)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut deliveries: Vec<(usize, usize)> = (0..IDS)
        .flat_map(|i| std::iter::repeat_n(i, COPIES))
        .map(|i| (i, 0))
        .collect();
    deliveries.shuffle(&mut rng);
    for d in &mut deliveries {
        d.1 = rng.random_range(0..INSTANCES);
    }
    deliveries
}

/// What one delivery got back: HTTP status and the `status`/`error` field of the answer.
type Outcome = (usize, u16, String);

/// Runs `plan` with `SENDERS` concurrent senders; `send(id index, instance)` performs one.
async fn storm<F, Fut>(plan: Vec<(usize, usize)>, send: F) -> Vec<Outcome>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (u16, String)> + Send,
{
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicUsize::new(0));
    let send = Arc::new(send);
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (plan, next, send) = (plan.clone(), next.clone(), send.clone());
        senders.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(i, instance)) = plan.get(n) else {
                    return out;
                };
                let (status, answer) = send(i, instance).await;
                out.push((i, status, answer));
            }
        }));
    }
    let mut outcomes = Vec::new();
    for s in senders {
        outcomes.extend(s.await.unwrap());
    }
    outcomes
}

/// Exactly one `accepted` per id; every other answer is `duplicate` or 409 (another request
/// holds the id right now; the sender retries later). Returns (accepted, duplicate, in flight).
fn check_outcomes(outcomes: &[Outcome]) -> (usize, usize, usize) {
    assert_eq!(outcomes.len(), IDS * COPIES);
    let mut accepted: BTreeMap<usize, usize> = BTreeMap::new();
    let (mut duplicate, mut in_flight) = (0, 0);
    for (i, status, answer) in outcomes {
        match (status, answer.as_str()) {
            (200, "accepted") => *accepted.entry(*i).or_default() += 1,
            (200, "duplicate") => duplicate += 1,
            (409, "in_flight") => in_flight += 1,
            other => panic!("delivery of {} got {other:?}", webhook_id(*i)),
        }
    }
    assert_eq!(accepted.len(), IDS, "every id accepted");
    assert!(
        accepted.values().all(|n| *n == 1),
        "an id accepted twice: {:?}",
        accepted.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    (IDS, duplicate, in_flight)
}

/// Exactly one message per id on the queue, and every dedupe record ENQUEUED with the id of
/// the message that carries it.
async fn check_queue_and_table(aws: &AwsStack) -> Vec<aws_sdk_sqs::types::Message> {
    let messages = aws.messages().await;
    let mut by_webhook: HashMap<String, String> = HashMap::new();
    for m in &messages {
        let body: Value = serde_json::from_str(m.body().unwrap_or_default()).unwrap();
        let id = body["webhook_id"].as_str().unwrap().to_owned();
        let previous = by_webhook.insert(id.clone(), m.message_id().unwrap().to_owned());
        assert!(previous.is_none(), "two messages for {id}");
    }
    assert_eq!(messages.len(), IDS, "exactly one message per distinct id");
    let expected: BTreeSet<String> = (0..IDS).map(webhook_id).collect();
    assert_eq!(
        by_webhook.keys().cloned().collect::<BTreeSet<_>>(),
        expected
    );

    let items = aws.dedupe_items().await;
    assert_eq!(items.len(), IDS);
    for item in &items {
        let id = item_s(item, "webhook_id").unwrap();
        assert_eq!(item_s(item, "status"), Some("ENQUEUED"), "{id}");
        assert_eq!(
            item_s(item, "message_id"),
            by_webhook.get(id).map(String::as_str),
            "{id}: the record names the message that was sent"
        );
    }
    messages
}

/// Rows each storm job's results hold: files for even ids, inline responses for odd ones.
fn expected_rows(i: usize) -> u64 {
    if i.is_multiple_of(2) {
        (i % 7 + 1) as u64
    } else {
        (i % 5 + 1) as u64
    }
}

fn fake_batches(gemini: &FakeGemini) {
    for i in 0..IDS {
        let name = format!("batches/{}", batch_id(i));
        let n = expected_rows(i);
        let output = if i.is_multiple_of(2) {
            let file = format!("files/{}-results", batch_id(i));
            gemini.put_file(&file, Bytes::from(sample_results(n, 3, 0)));
            OutputSpec::File(file)
        } else {
            OutputSpec::Inline(
                (1..=n)
                    .map(|k| inline_success(&sample_key(k), &format!("answer {i}/{k}")))
                    .collect(),
            )
        };
        gemini.put_operation(operation_json(&name, "BATCH_STATE_SUCCEEDED", output));
    }
}

async fn start_receivers(aws: &AwsStack) -> Vec<(RuntimeApi, Vec<FunctionProcess>)> {
    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        let api = RuntimeApi::start().await;
        let mut processes = Vec::new();
        for _ in 0..ENVIRONMENTS {
            processes.push(
                spawn_function(
                    &bin_path("receiver"),
                    &api,
                    &[
                        ("WEBHOOK_SIGNING_SECRETS", TEST_SECRET.to_owned()),
                        ("DEDUPE_TABLE", aws.table.clone()),
                        ("QUEUE_URL", aws.queue.url.clone()),
                    ],
                )
                .await,
            );
        }
        instances.push((api, processes));
    }
    instances
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storm_through_two_receiver_binaries_then_the_consumer_binary() {
    let aws = AwsStack::new("storm", 60).await;
    let instances = Arc::new(start_receivers(&aws).await);

    let started = Instant::now();
    let apis = instances.clone();
    let outcomes = storm(plan(SEED), move |i, instance| {
        let apis = apis.clone();
        async move {
            let body = batch_succeeded_body(&batch_id(i));
            let headers = signed_headers(&test_secret(), &webhook_id(i), now_secs(), &body);
            let response = apis[instance]
                .0
                .invoke(
                    function_url_event("POST", &headers, &body, false),
                    Duration::from_secs(60),
                )
                .await
                .unwrap_or_else(|e| panic!("receiver invocation: {e}"));
            let (status, answer, _) = url_reply(&response);
            let word = answer["status"].as_str().or(answer["error"].as_str());
            (status, word.unwrap_or_default().to_owned())
        }
    })
    .await;
    let storm_time = started.elapsed();
    let (accepted, duplicate, in_flight) = check_outcomes(&outcomes);

    // Every sender's later retry of every id is a plain duplicate.
    for i in 0..IDS {
        let body = batch_succeeded_body(&batch_id(i));
        let headers = signed_headers(&test_secret(), &webhook_id(i), now_secs(), &body);
        let response = instances[i % INSTANCES]
            .0
            .invoke(
                function_url_event("POST", &headers, &body, true),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        let (status, answer, _) = url_reply(&response);
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("duplicate"))
        );
    }
    let messages = check_queue_and_table(&aws).await;

    // The consumer, fed the way Lambda's SQS poller does: batches of 10, delete on success.
    let gemini = FakeGemini::start().await;
    fake_batches(&gemini);
    let ddb = moto::dynamodb().await;
    let results = moto::unique_name("storm-results");
    moto::create_results_table(&ddb, &results).await;
    let consumer_api = RuntimeApi::start().await;
    let _consumer = spawn_function(
        &bin_path("consumer"),
        &consumer_api,
        &[
            ("RESULTS_TABLE", results.clone()),
            ("ROUTES", String::new()),
            ("GEMINI_API_KEY", FakeGemini::API_KEY.to_owned()),
            ("GEMINI_API_BASE_URL", gemini.base_url()),
            ("QUEUE_URL", aws.queue.url.clone()),
        ],
    )
    .await;
    let consume_started = Instant::now();
    for batch in messages.chunks(SQS_BATCH) {
        let response = consumer_api
            .invoke(sqs_event(batch, &aws.queue.arn), Duration::from_secs(120))
            .await
            .unwrap_or_else(|e| panic!("consumer invocation: {e}"));
        assert!(failed_ids(&response).is_empty(), "{response}");
        aws.delete(batch).await;
    }
    // SQS is at-least-once: a batch delivered again changes nothing.
    let again = consumer_api
        .invoke(
            sqs_event(&messages[..SQS_BATCH], &aws.queue.arn),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert!(failed_ids(&again).is_empty(), "{again}");
    let consume_time = consume_started.elapsed();
    assert_eq!(
        aws.queue_depth().await,
        0,
        "the consumer enqueued nothing more"
    );

    let store = DynamoDbResultsStore::new(ddb, results);
    let mut total = 0;
    for i in 0..IDS {
        let job_id = format!("batches/{}", batch_id(i));
        let rows = store.list_rows(&job_id).await.unwrap();
        let keys: BTreeSet<String> = rows.iter().map(|r| r.key.clone()).collect();
        let expected: BTreeSet<String> = (1..=expected_rows(i)).map(sample_key).collect();
        assert_eq!(keys, expected, "{job_id}");
        assert_eq!(rows.len() as u64, expected_rows(i), "{job_id}");
        let job = store.load_job(&job_id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Succeeded, "{job_id}");
        assert_eq!(job.counts.rows_ingested, expected_rows(i), "{job_id}");
        assert_eq!(job.last_webhook_id.as_deref(), Some(webhook_id(i).as_str()));
        total += rows.len() as u64;
    }
    assert_eq!(total, (0..IDS).map(expected_rows).sum::<u64>());
    eprintln!(
        "storm (binaries, {INSTANCES} instances x {ENVIRONMENTS} environments, {SENDERS} senders): \
         {} deliveries in {:.1} s -> {accepted} accepted, {duplicate} duplicate, {in_flight} in flight (409); \
         {} messages; consumer: {IDS} jobs, {total} rows in {:.1} s",
        outcomes.len(),
        storm_time.as_secs_f64(),
        messages.len(),
        consume_time.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storm_in_process_32_senders_racing_on_two_receivers() {
    let aws = AwsStack::new("storm-ip", 60).await;
    let mut receivers: Vec<Receiver> = Vec::new();
    for _ in 0..INSTANCES {
        let verifier =
            WebhookVerifier::new(Some(StandardVerifier::new(vec![test_secret()], 300)), None);
        receivers.push(
            aws.receiver(
                Arc::new(verifier),
                Arc::new(SystemClock),
                ReceiveLimits::default(),
            )
            .await,
        );
    }
    let receivers = Arc::new(receivers);
    let started = Instant::now();
    let r = receivers.clone();
    let outcomes = storm(plan(SEED ^ 0xffff), move |i, instance| {
        let r = r.clone();
        async move {
            let body = batch_succeeded_body(&batch_id(i));
            let headers = signed_headers(&test_secret(), &webhook_id(i), now_secs(), &body);
            let reply = handle(
                &r[instance],
                &Method::POST,
                &header_map(&headers),
                &body,
                None,
            )
            .await;
            let answer: Value = serde_json::from_str(&reply.body).unwrap_or_default();
            let word = answer["status"].as_str().or(answer["error"].as_str());
            (reply.status, word.unwrap_or_default().to_owned())
        }
    })
    .await;
    let storm_time = started.elapsed();
    let (accepted, duplicate, in_flight) = check_outcomes(&outcomes);
    check_queue_and_table(&aws).await;
    eprintln!(
        "storm (in process, {INSTANCES} receivers, {SENDERS} senders): {} deliveries in {:.1} s -> \
         {accepted} accepted, {duplicate} duplicate, {in_flight} in flight (409)",
        outcomes.len(),
        storm_time.as_secs_f64()
    );
}
