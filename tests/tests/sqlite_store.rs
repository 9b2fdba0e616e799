//! The SQLite store of local mode: the results-store contract, and the local queue's SQS-like
//! behaviour (visibility timeout, redelivery, dead letters, durability across reopening).

use std::sync::Arc;

use gemini_hooks::adapters::sqlite::{QueueStats, SqliteStore};
use gemini_hooks::domain::envelope::OutgoingMessage;
use gemini_hooks::ports::EventQueue;
use gemini_hooks::ports::clock::ManualClock;
use gemini_hooks_tests::contract;
use gemini_hooks_tests::local::TempDir;

const T0: i64 = 1_795_000_000_000;

fn open(dir: &TempDir) -> SqliteStore {
    match SqliteStore::open(dir.join("store.sqlite3")) {
        Ok(s) => s.with_clock(Arc::new(ManualClock::at_ms(T0))),
        Err(e) => panic!("open: {e}"),
    }
}

fn msg(body: &str) -> OutgoingMessage {
    OutgoingMessage {
        body: body.to_owned(),
        attributes: vec![
            ("message_kind".to_owned(), "webhook".to_owned()),
            ("event_type".to_owned(), "batch.succeeded".to_owned()),
        ],
    }
}

async fn enqueue(store: &SqliteStore, body: &str) -> String {
    store
        .enqueue(&msg(body))
        .await
        .unwrap_or_else(|e| panic!("enqueue: {e}"))
}

async fn receive(
    store: &SqliteStore,
    visibility_ms: i64,
    now_ms: i64,
) -> Option<gemini_hooks::adapters::sqlite::LocalMessage> {
    store
        .receive(visibility_ms, now_ms)
        .await
        .unwrap_or_else(|e| panic!("receive: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_results_store_obeys_the_contract() {
    let dir = TempDir::new("results-contract");
    contract::results_store_contract(Arc::new(open(&dir)), "sqlite").await;
}

#[tokio::test]
async fn received_message_is_hidden_until_its_visibility_timeout_ends() {
    let dir = TempDir::new("queue-visibility");
    let store = open(&dir);
    let id = enqueue(&store, r#"{"n":1}"#).await;

    let first = receive(&store, 30_000, T0)
        .await
        .unwrap_or_else(|| panic!("message must be visible"));
    assert_eq!(first.id, id);
    assert_eq!(first.body, r#"{"n":1}"#);
    assert_eq!(first.receive_count, 1);
    assert_eq!(first.attributes, msg("").attributes);
    assert_eq!(first.enqueued_at_ms, T0);

    assert_eq!(
        receive(&store, 30_000, T0 + 29_999).await,
        None,
        "still in flight"
    );
    let again = receive(&store, 30_000, T0 + 30_000)
        .await
        .unwrap_or_else(|| panic!("redelivered after the timeout"));
    assert_eq!((again.id.as_str(), again.receive_count), (id.as_str(), 2));

    assert!(
        store
            .delete(&id)
            .await
            .unwrap_or_else(|e| panic!("delete: {e}"))
    );
    assert!(
        !store
            .delete(&id)
            .await
            .unwrap_or_else(|e| panic!("delete: {e}")),
        "second delete finds nothing"
    );
    assert_eq!(
        receive(&store, 30_000, T0 + 120_000).await,
        None,
        "deleted messages never come back"
    );
}

#[tokio::test]
async fn released_message_comes_back_after_its_delay_in_order() {
    let dir = TempDir::new("queue-release");
    let store = open(&dir);
    let a = enqueue(&store, "a").await;
    let b = enqueue(&store, "b").await;

    let got = receive(&store, 60_000, T0)
        .await
        .unwrap_or_else(|| panic!("a"));
    assert_eq!(got.id, a, "oldest first");
    assert!(
        store
            .release(&a, 5_000, T0 + 10)
            .await
            .unwrap_or_else(|e| panic!("release: {e}"))
    );
    let got = receive(&store, 60_000, T0 + 20)
        .await
        .unwrap_or_else(|| panic!("b"));
    assert_eq!(got.id, b, "a is delayed, so b comes next");
    assert_eq!(receive(&store, 60_000, T0 + 5_009).await, None);
    let got = receive(&store, 60_000, T0 + 5_010)
        .await
        .unwrap_or_else(|| panic!("a again"));
    assert_eq!((got.id, got.receive_count), (a, 2));

    assert!(
        !store
            .release("no-such-id", 0, T0)
            .await
            .unwrap_or_else(|e| panic!("release: {e}"))
    );
}

#[tokio::test]
async fn message_is_dead_lettered_after_max_receives() {
    let dir = TempDir::new("queue-dlq");
    let store = open(&dir).with_max_receive_count(3);
    let poison = enqueue(&store, "poison").await;
    let good = enqueue(&store, "good").await;

    let mut now = T0;
    for expected in 1..=3 {
        let got = receive(&store, 1_000, now)
            .await
            .unwrap_or_else(|| panic!("receive {expected}"));
        assert_eq!(
            (got.id.as_str(), got.receive_count),
            (poison.as_str(), expected)
        );
        assert!(
            store
                .release(&poison, 0, now)
                .await
                .unwrap_or_else(|e| panic!("release: {e}"))
        );
        now += 1;
    }
    // The fourth receive moves it to the dead letters and hands out the next message instead.
    let got = receive(&store, 1_000, now)
        .await
        .unwrap_or_else(|| panic!("next message"));
    assert_eq!(got.id, good);
    let dead = store
        .dead_letters()
        .await
        .unwrap_or_else(|e| panic!("dead_letters: {e}"));
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].id.as_str(),
            dead[0].body.as_str(),
            dead[0].receive_count
        ),
        (poison.as_str(), "poison", 3)
    );
    assert_eq!(dead[0].dead_lettered_at_ms, now);
    assert_eq!(dead[0].attributes, msg("").attributes);
    assert!(
        store
            .delete(&good)
            .await
            .unwrap_or_else(|e| panic!("delete: {e}"))
    );
    assert_eq!(
        receive(&store, 1_000, now + 10_000).await,
        None,
        "a dead letter is never received again"
    );
    assert_eq!(
        store
            .queue_stats(now + 10_000)
            .await
            .unwrap_or_else(|e| panic!("stats: {e}")),
        QueueStats {
            visible: 0,
            invisible: 0,
            dead_letters: 1
        }
    );
}

#[tokio::test]
async fn queued_and_in_flight_work_survives_reopening_the_file() {
    let dir = TempDir::new("queue-reopen");
    let (waiting, in_flight) = {
        let store = open(&dir);
        let waiting = enqueue(&store, "waiting").await;
        let in_flight = enqueue(&store, "in-flight").await;
        let got = receive(&store, 30_000, T0)
            .await
            .unwrap_or_else(|| panic!("receive"));
        assert_eq!(got.id, waiting);
        assert!(
            store
                .release(&waiting, 0, T0)
                .await
                .unwrap_or_else(|e| panic!("release: {e}"))
        );
        let got = receive(&store, 30_000, T0 + 1)
            .await
            .unwrap_or_else(|| panic!("receive"));
        assert_eq!(got.id, waiting, "released message is first again");
        assert!(
            store
                .release(&waiting, 0, T0 + 1)
                .await
                .unwrap_or_else(|e| panic!("release: {e}"))
        );
        // Take the second one and "crash" while handling it.
        let _ = receive(&store, 30_000, T0 + 2).await;
        let got = receive(&store, 30_000, T0 + 3)
            .await
            .unwrap_or_else(|| panic!("receive"));
        assert_eq!(got.id, in_flight);
        (waiting, in_flight)
    };

    let store = open(&dir);
    assert_eq!(
        store
            .queue_stats(T0 + 4)
            .await
            .unwrap_or_else(|e| panic!("stats: {e}")),
        QueueStats {
            visible: 0,
            invisible: 2,
            dead_letters: 0
        },
    );
    let later = T0 + 60_000;
    let first = receive(&store, 30_000, later)
        .await
        .unwrap_or_else(|| panic!("after reopen"));
    assert_eq!(
        (first.id.as_str(), first.receive_count),
        (waiting.as_str(), 4),
        "receive counts persist"
    );
    let second = receive(&store, 30_000, later)
        .await
        .unwrap_or_else(|| panic!("after reopen"));
    assert_eq!(
        (second.id.as_str(), second.receive_count),
        (in_flight.as_str(), 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_consumers_never_receive_the_same_message_twice() {
    let dir = TempDir::new("queue-concurrent");
    let store = open(&dir);
    for i in 0..40 {
        enqueue(&store, &format!("m{i}")).await;
    }
    // A second connection to the same file, as a second process would have.
    let other = open(&dir);
    let mut tasks = Vec::new();
    for s in [store.clone(), other.clone(), store.clone(), other] {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(m) = s
                .receive(60_000, T0)
                .await
                .unwrap_or_else(|e| panic!("receive: {e}"))
            {
                got.push(m.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_else(|e| panic!("join: {e}")));
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!((total, all.len()), (40, 40), "each message exactly once");
}

#[tokio::test]
async fn requeue_hidden_makes_a_dead_process_s_messages_visible_now() {
    let dir = TempDir::new("queue-requeue");
    let store = open(&dir);
    let a = enqueue(&store, "a").await;
    let b = enqueue(&store, "b").await;
    assert!(receive(&store, 300_000, T0).await.is_some());
    assert!(
        store
            .release(&b, 60_000, T0)
            .await
            .unwrap_or_else(|e| panic!("release: {e}"))
    );
    assert_eq!(receive(&store, 300_000, T0 + 1).await, None, "both hidden");

    let reopened = open(&dir);
    assert_eq!(
        reopened
            .requeue_hidden(T0 + 2)
            .await
            .unwrap_or_else(|e| panic!("requeue: {e}")),
        2
    );
    let first = receive(&reopened, 300_000, T0 + 2)
        .await
        .unwrap_or_else(|| panic!("a"));
    assert_eq!((first.id.as_str(), first.receive_count), (a.as_str(), 2));
    let second = receive(&reopened, 300_000, T0 + 2)
        .await
        .unwrap_or_else(|| panic!("b"));
    assert_eq!(second.id, b);
    assert_eq!(
        reopened
            .requeue_hidden(T0 + 3)
            .await
            .unwrap_or_else(|e| panic!("requeue: {e}")),
        2,
        "received again, so hidden again"
    );
}

#[tokio::test]
async fn a_dead_letter_keeps_its_last_error_and_redrive_puts_it_back() {
    let dir = TempDir::new("queue-redrive");
    let store = open(&dir).with_max_receive_count(2);
    let poison = enqueue(&store, "poison").await;
    let other = enqueue(&store, "other").await;
    let failed = |n: u32| format!("poison: attempt {n} failed");
    for n in 1..=2 {
        let got = receive(&store, 1_000, T0 + i64::from(n))
            .await
            .unwrap_or_else(|| panic!("receive {n}"));
        assert_eq!(got.id, poison);
        let released = store
            .release_failed(&poison, 0, T0 + i64::from(n), &failed(n))
            .await
            .unwrap_or_else(|e| panic!("release_failed: {e}"));
        assert!(released);
    }
    // The next receive dead-letters it, with the reason of its last failure.
    let got = receive(&store, 1_000, T0 + 10).await.map(|m| m.id);
    assert_eq!(got.as_deref(), Some(other.as_str()));
    let dead = store
        .dead_letters()
        .await
        .unwrap_or_else(|e| panic!("dead_letters: {e}"));
    assert_eq!(
        (dead[0].receive_count, dead[0].last_error.clone()),
        (2, Some(failed(2)))
    );

    // An unknown id moves nothing, not even the known ones.
    let none = store
        .redrive(Some(vec![poison.clone(), "nope".to_owned()]), T0 + 20)
        .await
        .unwrap_or_else(|e| panic!("redrive: {e}"));
    assert_eq!(
        (none.moved.len(), none.unknown),
        (0, vec!["nope".to_owned()])
    );
    assert_eq!(dead_count(&store).await, 1);

    // Redriven: visible now, received again with a fresh count, body and attributes intact.
    let done = store
        .redrive(None, T0 + 20)
        .await
        .unwrap_or_else(|e| panic!("redrive: {e}"));
    assert_eq!(done.moved, vec![poison.clone()]);
    assert_eq!(dead_count(&store).await, 0);
    let again = receive(&store, 1_000, T0 + 20)
        .await
        .unwrap_or_else(|| panic!("the redriven message"));
    assert_eq!(
        (again.id.as_str(), again.body.as_str(), again.receive_count),
        (poison.as_str(), "poison", 1)
    );
    assert_eq!(again.attributes, msg("").attributes);
    let empty = store
        .redrive(None, T0 + 30)
        .await
        .unwrap_or_else(|e| panic!("redrive: {e}"));
    assert_eq!(empty, Default::default());
}

async fn dead_count(store: &SqliteStore) -> u64 {
    store
        .queue_stats(T0)
        .await
        .unwrap_or_else(|e| panic!("stats: {e}"))
        .dead_letters
}
