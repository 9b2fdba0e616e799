//! Reading a job's rows back a page at a time, whatever the store holds them:
//! `gemini-hooks results --job` and `gemini-hooks export` stream a job of any size through it,
//! with one page in memory.

use std::ops::ControlFlow;

use crate::domain::jobs::ResultRow;
use crate::ports::{ResultsStore, StoreError};

/// Rows per page: about one DynamoDB query (1 MB) of ordinary rows; a page of large rows ends
/// sooner ([`crate::ports::PAGE_BYTES`]).
pub const PAGE_ROWS: usize = 500;

/// Why reading stopped early.
#[derive(Debug, thiserror::Error)]
pub enum EachRowError<E> {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// What `each` returned.
    #[error(transparent)]
    Sink(E),
}

/// Calls `each` with every row of `job_id`, in row-id order (the same in every store), until
/// the rows run out or `each` breaks. Returns how many rows `each` was given.
pub async fn each_row<E>(
    store: &dyn ResultsStore,
    job_id: &str,
    page_rows: usize,
    mut each: impl FnMut(ResultRow) -> Result<ControlFlow<()>, E>,
) -> Result<u64, EachRowError<E>> {
    let mut given = 0u64;
    let mut after: Option<String> = None;
    loop {
        let page = store.rows_page(job_id, after.as_deref(), page_rows).await?;
        for row in page.rows {
            given += 1;
            if each(row).map_err(EachRowError::Sink)?.is_break() {
                return Ok(given);
            }
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(given),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::jobs::{JobRecord, RowStatus};
    use async_trait::async_trait;

    /// Rows in memory; pages through the port's default `rows_page`.
    struct Rows(Vec<ResultRow>);

    #[async_trait]
    impl ResultsStore for Rows {
        async fn load_job(&self, _: &str) -> Result<Option<JobRecord>, StoreError> {
            Ok(None)
        }
        async fn save_job(&self, _: &JobRecord) -> Result<bool, StoreError> {
            Ok(true)
        }
        async fn put_rows(&self, _: &[ResultRow]) -> Result<(), StoreError> {
            Ok(())
        }
        async fn delete_rows_before(&self, _: &str, _: i64) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn count_rows_before(&self, _: &str, _: i64) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn list_rows(&self, job_id: &str) -> Result<Vec<ResultRow>, StoreError> {
            Ok(self
                .0
                .iter()
                .filter(|r| r.job_id == job_id)
                .cloned()
                .collect())
        }
        async fn count_rows(&self, job_id: &str) -> Result<u64, StoreError> {
            Ok(self.list_rows(job_id).await?.len() as u64)
        }
        async fn list_jobs(&self, _limit: Option<usize>) -> Result<Vec<JobRecord>, StoreError> {
            Ok(Vec::new())
        }
    }

    fn row(key: &str, line: u64, keyless: bool) -> ResultRow {
        ResultRow {
            job_id: "batches/j".into(),
            key: key.into(),
            line,
            status: RowStatus::Ok,
            text: None,
            finish_reason: None,
            prompt_tokens: None,
            candidates_tokens: None,
            total_tokens: None,
            thoughts_tokens: None,
            model_version: None,
            response_json: None,
            error_code: None,
            error_message: None,
            keyless,
            ingested_at_ms: 0,
        }
    }

    fn store() -> Rows {
        let mut rows = vec![row("line-9", 9, true), row(&"k".repeat(2000), 4, false)];
        rows.extend((1..=7).rev().map(|i| row(&format!("k{i}"), i, false)));
        let mut other = row("k1", 1, false);
        other.job_id = "batches/other".into();
        rows.push(other);
        Rows(rows)
    }

    #[tokio::test]
    async fn every_row_once_in_row_id_order_whatever_the_page_size() {
        let s = store();
        let mut expected: Vec<String> = s
            .list_rows("batches/j")
            .await
            .unwrap()
            .iter()
            .map(ResultRow::row_id)
            .collect();
        expected.sort();
        assert_eq!(expected.len(), 9);
        for page in [1, 2, 3, 9, 10, 1000] {
            let mut seen = Vec::new();
            let n = each_row(&s, "batches/j", page, |r| {
                seen.push(r.row_id());
                Ok::<_, std::convert::Infallible>(ControlFlow::Continue(()))
            })
            .await
            .unwrap();
            assert_eq!((n, &seen), (9, &expected), "page of {page}");
        }
        // Key-less lines first, then request keys, then hashed long keys.
        assert!(expected[0].starts_with("LINE#") && expected[8].starts_with("RESULTH#"));
    }

    #[tokio::test]
    async fn stops_when_told_and_passes_the_sink_error_on() {
        let s = store();
        let mut seen = 0;
        let n = each_row(&s, "batches/j", 2, |_| {
            seen += 1;
            Ok::<_, std::convert::Infallible>(if seen == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })
        .await
        .unwrap();
        assert_eq!((n, seen), (3, 3));
        let err = each_row(&s, "batches/j", 2, |_| {
            Err::<ControlFlow<()>, _>("disk full")
        })
        .await
        .unwrap_err();
        assert!(matches!(err, EachRowError::Sink("disk full")), "{err:?}");
        assert_eq!(
            each_row(
                &s,
                "batches/none",
                2,
                |_| Ok::<_, std::convert::Infallible>(ControlFlow::Continue(()))
            )
            .await
            .unwrap(),
            0
        );
    }
}
