//! DynamoDB's limits, one test each, on both emulators: what moto and dynalite
//! (`tests/src/dynalite.rs`) refuse as AWS does, what one of them lets through, and what neither
//! checks — and, for that last kind, that the results adapter never sends what AWS would refuse.
//! The numbers are the documented AWS ones (docs/RELIABILITY.md, "DynamoDB limits and the two
//! emulators"), written out here rather than taken from the crate, so a wrong constant there
//! cannot make its own test pass.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, PutRequest, ReturnValuesOnConditionCheckFailure, TimeToLiveSpecification,
    WriteRequest,
};
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::domain::event::JobKind;
use gemini_hooks::domain::jobs::{JobRecord, JobState, ResultRow, RowStatus};
use gemini_hooks::ports::ResultsStore;
use gemini_hooks_tests::{dynalite, moto};
use serde_json::{Value, json};

/// Sort (range) key, in UTF-8 bytes.
const SORT_KEY_MAX_BYTES: usize = 1024;
/// Partition (hash) key, in UTF-8 bytes.
const PARTITION_KEY_MAX_BYTES: usize = 2048;
/// One item: attribute names plus values.
const ITEM_MAX_BYTES: usize = 400 * 1024;
/// Nesting of maps and lists within an attribute.
const NESTING_MAX_DEPTH: usize = 32;
/// Largest and smallest positive magnitudes of a Number, and its significant digits.
const NUMBER_MAX: &str = "9.9999999999999999999999999999999999999E+125";
const NUMBER_MIN_POSITIVE: &str = "1E-130";
const NUMBER_MAX_DIGITS: usize = 38;

/// What an emulator answered to a request that reached it.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Accepted,
    Refused { code: String, message: String },
}

impl Answer {
    fn is_validation_error(&self, containing: &str) -> bool {
        matches!(self, Answer::Refused { code, message }
            if code == "ValidationException" && message.contains(containing))
    }
}

/// A service error becomes a refusal; anything else (connection, timeout) fails the test, so a
/// dead emulator never passes for a strict one.
fn answer<T, E>(r: Result<T, SdkError<E>>, backend: &str) -> Answer
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match r {
        Ok(_) => Answer::Accepted,
        Err(SdkError::ServiceError(e)) => Answer::Refused {
            code: e.err().code().unwrap_or_default().to_owned(),
            message: e.err().message().unwrap_or_default().to_owned(),
        },
        Err(e) => panic!("{backend} did not answer: {}", DisplayErrorContext(&e)),
    }
}

/// A results-shaped table (PK `pk`, SK `sk`) on one emulator.
struct Table {
    backend: &'static str,
    client: Client,
    name: String,
}

impl Table {
    async fn on_moto() -> Self {
        let client = moto::dynamodb().await;
        let name = moto::unique_name("limits");
        moto::create_results_table(&client, &name).await;
        Self {
            backend: "moto",
            client,
            name,
        }
    }

    async fn on_dynalite() -> Self {
        let client = dynalite::dynamodb();
        let name = moto::unique_name("limits");
        dynalite::create_results_table(&client, &name).await;
        Self {
            backend: "dynalite",
            client,
            name,
        }
    }

    async fn both() -> [Self; 2] {
        [Self::on_moto().await, Self::on_dynalite().await]
    }

    async fn put(&self, item: HashMap<String, AttributeValue>) -> Answer {
        answer(
            self.client
                .put_item()
                .table_name(&self.name)
                .set_item(Some(item))
                .send()
                .await,
            self.backend,
        )
    }

    async fn batch_put(&self, items: Vec<HashMap<String, AttributeValue>>) -> Answer {
        let requests = items
            .into_iter()
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .unwrap_or_else(|e| panic!("PutRequest: {e}"));
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        answer(
            self.client
                .batch_write_item()
                .request_items(&self.name, requests)
                .send()
                .await,
            self.backend,
        )
    }

    async fn get(&self, pk: &str, sk: &str) -> Option<HashMap<String, AttributeValue>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetItem on {}: {}", self.backend, DisplayErrorContext(&e)));
        out.item
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn item(pk: &str, sk: &str, extra: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))]);
    for (name, value) in extra {
        item.insert((*name).to_owned(), value.clone());
    }
    item
}

/// `depth` maps, one inside the other, around a string.
fn nested_maps(depth: usize) -> AttributeValue {
    let mut v = s("leaf");
    for _ in 0..depth {
        v = AttributeValue::M(HashMap::from([("a".to_owned(), v)]));
    }
    v
}

fn map_depth(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::M(m) => 1 + m.values().map(map_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `depth` JSON objects, one inside the other, around `leaf`.
fn nested_json(depth: usize, leaf: Value) -> Value {
    let mut v = leaf;
    for i in 0..depth {
        v = json!({ format!("level{}", depth - i): v });
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_write_naming_one_key_twice_is_refused_by_dynalite_and_by_aws_not_by_moto() {
    let first = item("p", "dup", &[("v", s("first"))]);
    let second = item("p", "dup", &[("v", s("second"))]);

    let dynalite = Table::on_dynalite().await;
    let refused = dynalite
        .batch_put(vec![first.clone(), second.clone()])
        .await;
    assert!(
        refused.is_validation_error("Provided list of item keys contains duplicates"),
        "{refused:?}"
    );
    assert_eq!(
        dynalite.get("p", "dup").await,
        None,
        "the whole call is refused"
    );

    // moto compares whole items, not keys: two rows of one key that differ (what two results
    // lines of one key are) go through, the last winning. Only byte-identical items are refused.
    let moto = Table::on_moto().await;
    assert_eq!(
        moto.batch_put(vec![first.clone(), second]).await,
        Answer::Accepted
    );
    assert_eq!(
        moto.get("p", "dup").await.and_then(|i| i.get("v").cloned()),
        Some(s("second"))
    );
    let identical = moto.batch_put(vec![first.clone(), first]).await;
    assert!(
        identical.is_validation_error("Provided list of item keys contains duplicates"),
        "{identical:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_limited_to_1024_bytes_for_the_sort_key_and_2048_for_the_partition_key() {
    for t in Table::both().await {
        let ascii_max = "k".repeat(SORT_KEY_MAX_BYTES);
        let ascii_over = "k".repeat(SORT_KEY_MAX_BYTES + 1);
        assert_eq!(
            t.put(item("p", &ascii_max, &[])).await,
            Answer::Accepted,
            "{}",
            t.backend
        );
        let over = t.put(item("p", &ascii_over, &[])).await;
        assert!(
            over.is_validation_error("range keys has exceeded the size limit of 1024 bytes"),
            "{}: {over:?}",
            t.backend
        );
        // The same refusal inside a BatchWriteItem, the call the results adapter makes.
        let over = t.batch_put(vec![item("p", &ascii_over, &[])]).await;
        assert!(
            over.is_validation_error("range keys has exceeded the size limit of 1024 bytes"),
            "{}: {over:?}",
            t.backend
        );
        let pk_max = "p".repeat(PARTITION_KEY_MAX_BYTES);
        let pk_over = "p".repeat(PARTITION_KEY_MAX_BYTES + 1);
        assert_eq!(
            t.put(item(&pk_max, "s", &[])).await,
            Answer::Accepted,
            "{}",
            t.backend
        );
        let over = t.put(item(&pk_over, "s", &[])).await;
        assert!(
            over.is_validation_error("Size of hashkey has exceeded the maximum size limit"),
            "{}: {over:?}",
            t.backend
        );
    }
}

/// AWS counts UTF-8 bytes: 512 two-byte characters fill a sort key. moto counts bytes too;
/// dynalite counts UTF-16 units (JavaScript string length), so it takes twice that in `é`. For
/// keys that are not ASCII, moto is the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sort_key_limit_counts_utf8_bytes_on_moto_and_utf16_units_on_dynalite() {
    let fills = "é".repeat(SORT_KEY_MAX_BYTES / 2);
    let over = format!("{fills}k");
    let dynalite_max = "é".repeat(SORT_KEY_MAX_BYTES);
    let dynalite_over = "é".repeat(SORT_KEY_MAX_BYTES + 1);
    assert_eq!(
        (fills.len(), over.len(), dynalite_max.len()),
        (1024, 1025, 2048)
    );
    let [moto, dynalite] = Table::both().await;
    for t in [&moto, &dynalite] {
        assert_eq!(
            t.put(item("p", &fills, &[])).await,
            Answer::Accepted,
            "{}",
            t.backend
        );
    }
    let refused = moto.put(item("p", &over, &[])).await;
    assert!(
        refused.is_validation_error("range keys has exceeded the size limit of 1024 bytes"),
        "{refused:?}"
    );
    assert_eq!(dynalite.put(item("p", &over, &[])).await, Answer::Accepted);
    assert_eq!(
        dynalite.put(item("p", &dynalite_max, &[])).await,
        Answer::Accepted,
        "2 048 bytes in 1 024 UTF-16 units"
    );
    let refused = dynalite.put(item("p", &dynalite_over, &[])).await;
    assert!(
        refused.is_validation_error("range keys has exceeded the size limit of 1024 bytes"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_beyond_38_digits_or_the_range_are_refused_by_dynalite_and_partly_by_moto() {
    let digits_max = "1".repeat(NUMBER_MAX_DIGITS);
    let digits_over = "1".repeat(NUMBER_MAX_DIGITS + 1);
    let within = [
        NUMBER_MAX.to_owned(),
        format!("-{NUMBER_MAX}"),
        NUMBER_MIN_POSITIVE.to_owned(),
        digits_max,
    ];
    for t in Table::both().await {
        for n in &within {
            assert_eq!(
                t.put(item("p", "n", &[("v", AttributeValue::N(n.clone()))]))
                    .await,
                Answer::Accepted,
                "{} refused {n}",
                t.backend
            );
        }
        // Both refuse what is far out of range (1e200: a valid JSON number and f64).
        let big = t
            .put(item("p", "n", &[("v", AttributeValue::N("1e200".into()))]))
            .await;
        assert!(big.is_validation_error("Number overflow"), "{big:?}");
        let tiny = t
            .put(item("p", "n", &[("v", AttributeValue::N("1E-131".into()))]))
            .await;
        assert!(tiny.is_validation_error("Number underflow"), "{tiny:?}");
    }
    // Just past the limits, only dynalite refuses as AWS does.
    let dynalite = Table::on_dynalite().await;
    let just_over = dynalite
        .put(item("p", "n", &[("v", AttributeValue::N("1E+126".into()))]))
        .await;
    assert!(
        just_over.is_validation_error("Number overflow"),
        "{just_over:?}"
    );
    let precise = dynalite
        .put(item(
            "p",
            "n",
            &[("v", AttributeValue::N(digits_over.clone()))],
        ))
        .await;
    assert!(
        precise.is_validation_error("more than 38 significant digits"),
        "{precise:?}"
    );
    let moto = Table::on_moto().await;
    for n in ["1E+126", digits_over.as_str()] {
        assert_eq!(
            moto.put(item("p", "n", &[("v", AttributeValue::N(n.to_owned()))]))
                .await,
            Answer::Accepted,
            "moto now refuses {n}: update docs/RELIABILITY.md"
        );
    }
}

/// Item size = the UTF-8 bytes of attribute names plus values; `pk`, `sk` and `v` here.
fn item_of_size(bytes: usize) -> HashMap<String, AttributeValue> {
    let fixed = "pk".len() + "p".len() + "sk".len() + "size".len() + "v".len();
    item("p", "size", &[("v", s(&"x".repeat(bytes - fixed)))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_are_limited_to_400_kb_on_both_emulators_each_counting_its_own_way() {
    let dynalite = Table::on_dynalite().await;
    assert_eq!(
        dynalite.put(item_of_size(ITEM_MAX_BYTES)).await,
        Answer::Accepted
    );
    let over = dynalite.put(item_of_size(ITEM_MAX_BYTES + 1)).await;
    assert!(
        over.is_validation_error("Item size has exceeded the maximum allowed size"),
        "{over:?}"
    );
    let over = dynalite
        .batch_put(vec![item_of_size(ITEM_MAX_BYTES + 1)])
        .await;
    assert!(
        over.is_validation_error("Item size has exceeded the maximum allowed size"),
        "{over:?}"
    );

    // moto refuses above its own estimate (405 000 bytes): stricter than AWS, never kinder.
    // The results adapter keeps items under 350 KiB, within both.
    let moto = Table::on_moto().await;
    assert_eq!(moto.put(item_of_size(350 * 1024)).await, Answer::Accepted);
    for size in [ITEM_MAX_BYTES, ITEM_MAX_BYTES + 1] {
        let refused = moto.put(item_of_size(size)).await;
        assert!(
            refused.is_validation_error("Item size has exceeded the maximum allowed size"),
            "{size}: {refused:?}"
        );
    }

    // dynalite counts a string's UTF-16 units, not its bytes: 409 602 bytes of `é` pass as
    // 204 801 units. moto counts bytes. The adapter counts bytes.
    let wide = item("p", "size", &[("v", s(&"é".repeat(204_801)))]);
    assert_eq!(dynalite.put(wide.clone()).await, Answer::Accepted);
    let refused = moto.put(wide).await;
    assert!(
        refused.is_validation_error("Item size has exceeded the maximum allowed size"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maps_nested_past_32_levels_are_accepted_by_both_emulators_though_aws_refuses_them() {
    for t in Table::both().await {
        for depth in [NESTING_MAX_DEPTH, NESTING_MAX_DEPTH + 1, 40] {
            let sk = format!("depth-{depth}");
            assert_eq!(
                t.put(item("p", &sk, &[("v", nested_maps(depth))])).await,
                Answer::Accepted,
                "{} now refuses depth {depth}: update docs/RELIABILITY.md",
                t.backend
            );
            let stored = t.get("p", &sk).await.and_then(|i| i.get("v").cloned());
            assert_eq!(stored.as_ref().map(map_depth), Some(depth), "{}", t.backend);
        }
    }
}

/// Neither emulator checks depth, and only dynalite checks numbers as AWS does, so the results
/// adapter must never turn free-form JSON into maps or numbers: `user_metadata` and `output` of
/// a job and a row's response reach DynamoDB as JSON text (`S`), and read back equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_results_adapter_stores_free_form_json_as_text_whatever_its_depth_or_numbers() {
    let metadata = nested_json(
        40,
        json!({"huge": 1e200, "precise": 1.234_567_890_123_456_7e125}),
    );
    let output = json!({"responses_file": "files/deep", "extra": nested_json(40, json!(-1e200))});
    let response = json!({"candidates": [{"content": {"parts": [{"text": "deep"}]}}],
                          "custom": nested_json(40, json!([1e200, 5e-324]))});
    for t in Table::both().await {
        let store = DynamoDbResultsStore::new(t.client.clone(), t.name.clone());
        let mut job = JobRecord::new("batches/deep", JobKind::Batch, 1);
        job.state = JobState::Succeeded;
        job.user_metadata = Some(metadata.clone());
        job.output = Some(output.clone());
        let saved = store.save_job(&job).await;
        assert!(
            matches!(saved, Ok(true)),
            "{}: save_job {saved:?}",
            t.backend
        );
        let row = ResultRow {
            job_id: "batches/deep".into(),
            key: "k".into(),
            line: 1,
            status: RowStatus::Ok,
            text: Some("deep".into()),
            finish_reason: None,
            prompt_tokens: None,
            candidates_tokens: None,
            total_tokens: None,
            thoughts_tokens: None,
            model_version: None,
            response_json: Some(response.to_string()),
            error_code: None,
            error_message: None,
            keyless: false,
            ingested_at_ms: 1,
        };
        store
            .put_rows(std::slice::from_ref(&row))
            .await
            .unwrap_or_else(|e| panic!("{}: put_rows {e}", t.backend));

        let record = t
            .get("JOB#batches/deep", "JOB")
            .await
            .unwrap_or_else(|| panic!("{}: no job item", t.backend));
        assert_eq!(record.get("user_metadata"), Some(&s(&metadata.to_string())));
        assert_eq!(record.get("output"), Some(&s(&output.to_string())));
        let stored_row = t
            .get("JOB#batches/deep", "RESULT#k")
            .await
            .unwrap_or_else(|| panic!("{}: no row item", t.backend));
        assert_eq!(
            stored_row.get("response_json"),
            Some(&s(&response.to_string()))
        );

        let loaded = store
            .load_job("batches/deep")
            .await
            .unwrap_or_else(|e| panic!("{}: load_job {e}", t.backend))
            .unwrap_or_else(|| panic!("{}: job missing", t.backend));
        assert_eq!(
            (loaded.user_metadata, loaded.output),
            (Some(metadata.clone()), Some(output.clone()))
        );
        let rows = store
            .list_rows("batches/deep")
            .await
            .unwrap_or_else(|e| panic!("{}: list_rows {e}", t.backend));
        assert_eq!(rows, vec![row], "{}", t.backend);
    }
}

/// The two differences the dynalite helpers work around (`tests/src/dynalite.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynalite_has_no_ttl_setting_and_returns_no_item_with_a_failed_condition() {
    let ttl = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(moto::TTL_ATTRIBUTE)
        .build()
        .unwrap_or_else(|e| panic!("TimeToLiveSpecification: {e}"));
    for t in Table::both().await {
        let enabled = answer(
            t.client
                .update_time_to_live()
                .table_name(&t.name)
                .time_to_live_specification(ttl.clone())
                .send()
                .await,
            t.backend,
        );
        let expected_ttl = if t.backend == "dynalite" {
            Answer::Refused {
                code: "UnknownOperationException".into(),
                message: String::new(),
            }
        } else {
            Answer::Accepted
        };
        assert_eq!(enabled, expected_ttl, "{}", t.backend);

        assert_eq!(
            t.put(item("p", "held", &[("v", s("old"))])).await,
            Answer::Accepted
        );
        let refused = t
            .client
            .put_item()
            .table_name(&t.name)
            .set_item(Some(item("p", "held", &[("v", s("new"))])))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let returned = match refused.map_err(SdkError::into_service_error) {
            Err(PutItemError::ConditionalCheckFailedException(e)) => {
                e.item().and_then(|i| i.get("v").cloned())
            }
            other => panic!("{}: expected a failed condition, got {other:?}", t.backend),
        };
        let expected_item = (t.backend == "moto").then(|| s("old"));
        assert_eq!(returned, expected_item, "{}", t.backend);
    }
}
