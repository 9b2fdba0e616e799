//! The Gemini client against the fake Gemini server: retries, error classes, ranged downloads
//! and the streaming results pipeline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use gemini_hooks::adapters::gemini::{GeminiClient, GeminiSettings, RetryPolicy};
use gemini_hooks::domain::gemini::{BatchOutput, BatchState};
use gemini_hooks::domain::results::{LineSplitter, Outcome, ResultRecord, record_from_line};
use gemini_hooks::ports::gemini::GeminiApi as _;
use gemini_hooks::ports::gemini::{ByteStream, GeminiError};
use gemini_hooks_tests::fake_gemini::{
    FakeGemini, Fault, OutputSpec, inline_error, inline_success, operation_json, sample_key,
    sample_line, sample_results, sample_text, with_stats,
};

const ATTEMPTS: u32 = 4;

fn settings(fake: &FakeGemini, key: &str) -> GeminiSettings {
    GeminiSettings {
        base_url: fake.base_url(),
        api_key: key.into(),
        retry: RetryPolicy {
            max_attempts: ATTEMPTS,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
        },
        request_timeout: Duration::from_millis(400),
    }
}

fn client(fake: &FakeGemini) -> GeminiClient {
    GeminiClient::new(settings(fake, FakeGemini::API_KEY), reqwest::Client::new())
}

async fn collect(mut s: ByteStream) -> Result<Vec<u8>, GeminiError> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn file_op(name: &str, file: &str) -> serde_json::Value {
    operation_json(name, "BATCH_STATE_SUCCEEDED", OutputSpec::File(file.into()))
}

#[tokio::test]
async fn get_batch_accepts_bare_prefixed_and_url_ids() {
    let fake = FakeGemini::start().await;
    fake.put_operation(with_stats(
        file_op("batches/abc", "files/batch-abc"),
        10,
        9,
        1,
    ));
    let c = client(&fake);
    for id in [
        "abc",
        "batches/abc",
        "https://generativelanguage.googleapis.com/v1beta/batches/abc",
    ] {
        let op = c.get_batch(id).await.unwrap();
        assert_eq!(op.name, "batches/abc");
        assert_eq!(op.state, BatchState::Succeeded);
        assert!(op.done);
        assert_eq!(op.output, Some(BatchOutput::File("files/batch-abc".into())));
        assert_eq!(op.stats.request_count, Some(10));
        assert_eq!(op.stats.failed_request_count, Some(1));
    }
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.path == "/v1beta/batches/abc"
        && r.method == "GET"
        && r.authorized
        && r.status == 200));
}

#[tokio::test]
async fn get_batch_reads_inline_and_metadata_outputs_and_batch_errors() {
    let fake = FakeGemini::start().await;
    fake.put_operation(operation_json(
        "inl",
        "BATCH_STATE_SUCCEEDED",
        OutputSpec::Inline(vec![
            inline_success("k1", "one"),
            inline_error("k2", 400, "bad"),
        ]),
    ));
    fake.put_operation(operation_json(
        "meta",
        "JOB_STATE_SUCCEEDED",
        OutputSpec::MetadataFile("files/batch-meta".into()),
    ));
    fake.put_operation(operation_json(
        "dead",
        "BATCH_STATE_FAILED",
        OutputSpec::Error(3, "input file is invalid".into()),
    ));
    fake.put_operation(operation_json(
        "run",
        "BATCH_STATE_RUNNING",
        OutputSpec::None,
    ));
    let c = client(&fake);

    let op = c.get_batch("inl").await.unwrap();
    let Some(BatchOutput::Inline(items)) = op.output else {
        panic!("expected inline output")
    };
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].key.as_deref(), Some("k1"));
    assert_eq!(items[1].error.as_ref().unwrap().code, Some(400));
    assert_eq!(op.stats.request_count, Some(2));

    let op = c.get_batch("meta").await.unwrap();
    assert_eq!(op.state, BatchState::Succeeded);
    assert_eq!(op.responses_file(), Some("files/batch-meta"));

    let op = c.get_batch("dead").await.unwrap();
    assert_eq!(op.state, BatchState::Failed);
    assert_eq!(op.error.unwrap().message, "input file is invalid");

    let op = c.get_batch("run").await.unwrap();
    assert!(!op.done && !op.state.is_terminal());
    assert_eq!(op.output, None);
}

#[tokio::test]
async fn list_batches_pages_through_everything_in_name_order() {
    let fake = FakeGemini::start().await;
    for id in ["e", "b", "d", "a", "c"] {
        fake.put_operation(operation_json(id, "BATCH_STATE_PENDING", OutputSpec::None));
    }
    let c = client(&fake);
    let mut names = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = c.list_batches(2, token.as_deref()).await.unwrap();
        sizes.push(page.operations.len());
        names.extend(page.operations.into_iter().map(|o| o.name));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(
        names,
        ["a", "b", "c", "d", "e"].map(|n| format!("batches/{n}"))
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].path, "/v1beta/batches?pageSize=2");
    assert!(reqs[1].path.contains("pageToken="));
}

#[tokio::test]
async fn retries_429_honouring_retry_after() {
    let fake = FakeGemini::start().await;
    fake.put_operation(file_op("r", "files/x"));
    fake.inject("/batches/r", vec![Fault::StatusWithRetryAfter(429, 1)]);
    let mut s = settings(&fake, FakeGemini::API_KEY);
    // Retry-After (1 s) is capped by max_delay; the jittered backoff alone would be ≤ 1 ms.
    s.retry.max_delay = Duration::from_millis(300);
    let c = GeminiClient::new(s, reqwest::Client::new());
    let t = Instant::now();
    let op = c.get_batch("r").await.unwrap();
    let elapsed = t.elapsed();
    assert_eq!(op.name, "batches/r");
    assert!(elapsed >= Duration::from_millis(280), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(950), "{elapsed:?}");
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 200]);
}

#[tokio::test]
async fn retries_500_twice_then_succeeds() {
    let fake = FakeGemini::start().await;
    fake.put_operation(file_op("f", "files/x"));
    fake.inject("/batches/f", vec![Fault::Status(500), Fault::Status(503)]);
    let op = client(&fake).get_batch("f").await.unwrap();
    assert_eq!(op.name, "batches/f");
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 503, 200]);
}

#[tokio::test]
async fn persistent_500_is_transient_after_max_attempts() {
    let fake = FakeGemini::start().await;
    fake.put_operation(file_op("f", "files/x"));
    fake.inject("/batches/f", vec![Fault::Status(500); 10]);
    let err = client(&fake).get_batch("f").await.unwrap_err();
    match &err {
        GeminiError::Transient { attempts, last, .. } => {
            assert_eq!(*attempts, ATTEMPTS);
            assert!(last.contains("500"), "{last}");
        }
        other => panic!("expected Transient, got {other:?}"),
    }
    assert!(err.is_transient());
    assert_eq!(fake.requests().len(), ATTEMPTS as usize);
}

#[tokio::test]
async fn slow_response_is_retried_then_becomes_transient() {
    let fake = FakeGemini::start().await;
    fake.put_operation(file_op("slow", "files/x"));
    fake.inject("/batches/slow", vec![Fault::Delay(Duration::from_secs(2))]);
    let c = client(&fake);
    let op = c.get_batch("slow").await.unwrap();
    assert_eq!(op.name, "batches/slow");
    assert_eq!(fake.requests().len(), 2);

    fake.clear_requests();
    fake.inject(
        "/batches/slow",
        vec![Fault::Delay(Duration::from_secs(2)); 10],
    );
    let t = Instant::now();
    let err = c.get_batch("slow").await.unwrap_err();
    assert!(
        matches!(err, GeminiError::Transient { attempts: ATTEMPTS, ref last, .. } if last.contains("timed out")),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(fake.requests().len(), ATTEMPTS as usize);
}

#[tokio::test]
async fn not_found_is_not_retried() {
    let fake = FakeGemini::start().await;
    let c = client(&fake);
    let err = c.get_batch("missing").await.unwrap_err();
    assert!(
        matches!(err, GeminiError::NotFound { ref what } if what == "batches/missing"),
        "{err:?}"
    );
    assert!(err.is_transient());
    let err = match c.download("files/batch-missing", 0).await {
        Err(e) => e,
        Ok(_) => panic!("download of a missing file succeeded"),
    };
    assert!(matches!(err, GeminiError::NotFound { .. }), "{err:?}");
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![404, 404]);
}

#[tokio::test]
async fn missing_or_wrong_api_key_is_fatal() {
    let fake = FakeGemini::start().await;
    fake.put_operation(file_op("a", "files/x"));
    let no_key = GeminiClient::new(settings(&fake, ""), reqwest::Client::new());
    let err = no_key.get_batch("a").await.unwrap_err();
    assert!(
        matches!(err, GeminiError::Fatal { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());

    let wrong = GeminiClient::new(
        settings(&fake, "wrong-key-do-not-log"),
        reqwest::Client::new(),
    );
    let err = wrong.get_batch("a").await.unwrap_err();
    assert!(
        matches!(err, GeminiError::Fatal { status: 400, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("wrong-key-do-not-log"));
    assert!(!format!("{err:?}").contains("wrong-key-do-not-log"));
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "fatal errors must not be retried");
    assert!(reqs.iter().all(|r| !r.authorized));
}

#[tokio::test]
async fn download_whole_file() {
    let fake = FakeGemini::start().await;
    let body = sample_results(400, 7, 0);
    fake.put_file("files/batch-full", Bytes::from(body.clone()));
    let c = client(&fake);
    for name in [
        "files/batch-full",
        "https://generativelanguage.googleapis.com/v1beta/files/batch-full",
    ] {
        let got = collect(c.download(name, 0).await.unwrap()).await.unwrap();
        assert_eq!(got, body.as_bytes());
    }
    let reqs = fake.requests();
    assert!(reqs.iter().all(|r| {
        r.path == "/download/v1beta/files/batch-full:download?alt=media"
            && r.range.is_none()
            && r.status == 200
    }));
}

#[tokio::test]
async fn download_from_offset_uses_range() {
    let fake = FakeGemini::start().await;
    let body = sample_results(300, 5, 0).into_bytes();
    fake.put_file("files/batch-r", Bytes::from(body.clone()));
    let c = client(&fake);
    let offset = 70_001u64;
    let got = collect(c.download("files/batch-r", offset).await.unwrap())
        .await
        .unwrap();
    assert_eq!(got, &body[offset as usize..]);
    let r = fake.requests().pop().unwrap();
    assert_eq!(r.range.as_deref(), Some("bytes=70001-"));
    assert_eq!(r.status, 206);

    // Resuming exactly at the end: nothing left, not an error.
    let len = body.len() as u64;
    assert!(
        collect(c.download("files/batch-r", len).await.unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(fake.requests().pop().unwrap().status, 416);
    // Past the end is a caller bug.
    let err = match c.download("files/batch-r", len + 10).await {
        Err(e) => e,
        Ok(_) => panic!("offset past the end was accepted"),
    };
    assert!(
        matches!(err, GeminiError::Fatal { status: 416, .. }),
        "{err:?}"
    );
    // A 416 that states no length is a refusal, not the end of the file: a resumed download
    // taking it for the end would store the results short.
    fake.inject("files/batch-r", vec![Fault::Status(416)]);
    let err = match c.download("files/batch-r", offset).await {
        Err(e) => e,
        Ok(_) => panic!("a 416 without a length was read as the end of the file"),
    };
    assert!(
        matches!(err, GeminiError::Stream(_)) && err.is_transient(),
        "{err:?}"
    );
    // At the end of the file such a 416 is the end, as the file's metadata (`sizeBytes`) shows.
    fake.put_resource(
        "files/batch-r",
        serde_json::json!({"name": "files/batch-r", "sizeBytes": len.to_string()}),
    );
    fake.inject("files/batch-r:download", vec![Fault::Status(416)]);
    let rest = collect(c.download("files/batch-r", len).await.unwrap())
        .await
        .unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn download_skips_prefix_when_server_ignores_range() {
    let fake = FakeGemini::start().await;
    let body = sample_results(300, 0, 0).into_bytes();
    fake.put_file("files/batch-ign", Bytes::from(body.clone()));
    fake.set_ignore_range(true);
    let c = client(&fake);
    for offset in [1u64, 65_535, 65_536, 100_003, body.len() as u64] {
        let got = collect(c.download("files/batch-ign", offset).await.unwrap())
            .await
            .unwrap();
        assert_eq!(got, &body[offset as usize..], "offset {offset}");
        let r = fake.requests().pop().unwrap();
        assert_eq!(r.range, Some(format!("bytes={offset}-")));
        assert_eq!(r.status, 200);
    }
}

#[tokio::test]
async fn download_retries_before_headers_but_not_mid_stream() {
    let fake = FakeGemini::start().await;
    let body = sample_results(500, 0, 0).into_bytes();
    fake.put_file("files/batch-cut", Bytes::from(body.clone()));
    fake.inject(
        "files/batch-cut",
        vec![Fault::Status(503), Fault::CutAfter(100_000)],
    );
    let c = client(&fake);
    let mut stream = c.download("files/batch-cut", 0).await.unwrap();
    let mut got = Vec::new();
    let mut err = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => got.extend_from_slice(&chunk),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("the cut must surface as an error");
    assert!(matches!(err, GeminiError::Stream(_)), "{err:?}");
    assert!(err.is_transient());
    assert!(stream.next().await.is_none(), "stream ends after an error");
    assert!(got.len() <= 100_000);
    assert_eq!(got, &body[..got.len()]);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 200]);

    // Resume where the good bytes ended.
    let rest = collect(
        c.download("files/batch-cut", got.len() as u64)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    got.extend_from_slice(&rest);
    assert_eq!(got, body);
}

/// Expected outcome class of sample line `i` (see `sample_line`).
fn expected_kind(i: u64, error_every: u64, malformed_every: u64) -> &'static str {
    if i.is_multiple_of(malformed_every) {
        "malformed"
    } else if i.is_multiple_of(error_every) {
        "error"
    } else {
        "success"
    }
}

fn kind(r: &ResultRecord) -> &'static str {
    match r.outcome {
        Outcome::Success(_) => "success",
        Outcome::Error { .. } => "error",
        Outcome::Malformed { .. } => "malformed",
    }
}

/// Downloads from `offset` and feeds the splitter; stops at the first stream error.
async fn ingest(
    c: &GeminiClient,
    file: &str,
    splitter: &mut LineSplitter,
    out: &mut Vec<(ResultRecord, u64)>,
) -> Result<(), GeminiError> {
    let mut stream = c.download(file, splitter.offset()).await?;
    while let Some(chunk) = stream.next().await {
        splitter.push(&chunk?);
        while let Some(line) = splitter.next_line() {
            out.push((record_from_line(&line), line.end_offset));
        }
    }
    while let Some(line) = splitter.finish() {
        out.push((record_from_line(&line), line.end_offset));
    }
    Ok(())
}

#[tokio::test]
async fn streams_a_1_5_mb_file_into_exact_records() {
    let fake = FakeGemini::start().await;
    let (n, e, m) = (2_800u64, 7u64, 50u64);
    let body = sample_results(n, e, m);
    assert!(body.len() > 1_500_000, "{}", body.len());
    fake.put_file("files/batch-big", Bytes::from(body));
    let c = client(&fake);

    let mut splitter = LineSplitter::new(0, 0, 1 << 20);
    let mut records = Vec::new();
    ingest(&c, "files/batch-big", &mut splitter, &mut records)
        .await
        .unwrap();
    assert_eq!(records.len() as u64, n);
    let count = |k: &str| records.iter().filter(|(r, _)| kind(r) == k).count() as u64;
    let want = |k: &str| (1..=n).filter(|i| expected_kind(*i, e, m) == k).count() as u64;
    assert_eq!(count("malformed"), n / m);
    assert_eq!(count("error"), want("error"));
    assert_eq!(count("success"), want("success"));
    for (i, (r, _)) in (1u64..).zip(&records) {
        assert_eq!(r.line, i);
        assert_eq!(kind(r), expected_kind(i, e, m), "line {i}");
        if let Outcome::Success(row) = &r.outcome {
            assert_eq!(r.key, sample_key(i));
            assert_eq!(row.text, sample_text(i));
        }
    }
}

#[tokio::test]
async fn cut_download_resumes_from_checkpoint_without_loss_or_duplicates() {
    let fake = FakeGemini::start().await;
    let n = 2_000u64;
    let body = sample_results(n, 9, 0);
    fake.put_file("files/batch-resume", Bytes::from(body.clone()));
    fake.inject(
        "files/batch-resume",
        vec![Fault::CutAfter(300_123), Fault::CutAfter(333_333)],
    );
    let c = client(&fake);

    let mut records = Vec::new();
    let mut checkpoint = (0u64, 0u64);
    let mut interruptions = 0;
    loop {
        // A fresh splitter per attempt, as a new invocation would build from its checkpoint.
        let mut splitter = LineSplitter::new(checkpoint.0, checkpoint.1, 1 << 20);
        let mut batch = Vec::new();
        let res = ingest(&c, "files/batch-resume", &mut splitter, &mut batch).await;
        for (r, end) in batch {
            checkpoint = (end, r.line);
            records.push(r);
        }
        match res {
            Ok(()) => break,
            Err(err) => {
                assert!(matches!(err, GeminiError::Stream(_)), "{err:?}");
                interruptions += 1;
            }
        }
    }
    assert_eq!(interruptions, 2);
    assert_eq!(checkpoint.0, body.len() as u64);
    let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
    let want: Vec<String> = (1..=n).map(sample_key).collect();
    assert_eq!(keys, want);
    let ranges: Vec<Option<String>> = fake.requests().into_iter().map(|r| r.range).collect();
    assert_eq!(ranges[0], None);
    assert!(ranges[1..].iter().all(Option::is_some));
}

fn generated(i: u64) -> String {
    sample_line(i, 11, 97)
}

#[tokio::test]
async fn generated_file_streams_and_honours_range() {
    let fake = FakeGemini::start().await;
    let n = 6_000u64;
    fake.put_generated_file("files/batch-gen", n, generated);
    // Sizing a generated file for a Range answer is a full generation pass: allow for debug builds.
    let mut s = settings(&fake, FakeGemini::API_KEY);
    s.request_timeout = Duration::from_secs(10);
    let c = GeminiClient::new(s, reqwest::Client::new());
    let full = collect(c.download("files/batch-gen", 0).await.unwrap())
        .await
        .unwrap();
    let mut expected = Vec::new();
    for i in 1..=n {
        expected.extend_from_slice(generated(i).as_bytes());
        expected.push(b'\n');
    }
    assert_eq!(full.len(), expected.len());
    assert!(full == expected);

    let offset = 1_234_567u64;
    assert!(offset < expected.len() as u64);
    let tail = collect(c.download("files/batch-gen", offset).await.unwrap())
        .await
        .unwrap();
    assert!(tail == expected[offset as usize..]);
    let r = fake.requests().pop().unwrap();
    assert_eq!(r.status, 206);
}

#[tokio::test]
async fn gs_uris_are_rejected_without_a_request() {
    let fake = FakeGemini::start().await;
    let err = match client(&fake).download("gs://bucket/results.jsonl", 0).await {
        Err(e) => e,
        Ok(_) => panic!("gs:// accepted"),
    };
    assert!(matches!(err, GeminiError::Invalid(_)), "{err:?}");
    assert!(fake.requests().is_empty());
}

/// A download redirected to another origin (a signed storage URL) is followed without the API
/// key, which must never leave the API's origin; a redirect within the origin keeps it.
#[tokio::test]
async fn a_download_redirected_elsewhere_is_followed_without_the_api_key() {
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(bool, Option<String>)>>>;
    let seen: Seen = Default::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/signed/video.mp4",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let log = log.clone();
            async move {
                let range = headers
                    .get("range")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if let Ok(mut l) = log.lock() {
                    l.push((headers.contains_key("x-goog-api-key"), range));
                }
                "video bytes"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let fake = FakeGemini::start().await;
    fake.put_file("files/vid", Bytes::from_static(b"not served"));
    fake.put_file("files/moved", Bytes::from_static(b"moved within the API"));
    let http = gemini_hooks::wiring::http_client().unwrap();
    let c = GeminiClient::new(settings(&fake, FakeGemini::API_KEY), http);

    fake.inject(
        "files/vid",
        vec![Fault::Redirect(format!(
            "http://{addr}/signed/video.mp4?sig=abc"
        ))],
    );
    let got = collect(c.download("files/vid", 0).await.unwrap())
        .await
        .unwrap();
    assert_eq!(got, b"video bytes");
    assert_eq!(
        seen.lock().map(|s| s.clone()).unwrap_or_default(),
        [(false, None)],
        "followed once, without the key"
    );

    // Within the API's origin the key goes along (the fake refuses a request without it).
    fake.inject(
        "files/vid",
        vec![Fault::Redirect(format!(
            "{}/download/v1beta/files/moved:download?alt=media",
            fake.base_url()
        ))],
    );
    let got = collect(c.download("files/vid", 0).await.unwrap())
        .await
        .unwrap();
    assert_eq!(got, b"moved within the API");
}
