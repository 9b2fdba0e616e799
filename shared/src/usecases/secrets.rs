//! Secrets read from a [`SecretSource`] (AWS Secrets Manager: the `*_ARN` variables) at cold start
//! and refreshed on a TTL, so a rotation during Gemini's 24-hour overlap needs no redeploy.
//!
//! A refresh that fails never fails a request: the last good value keeps being served and a
//! warning is logged. Values never appear in logs, errors or `Debug` output.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use crate::domain::verify::standard::parse_secret_list;
use crate::ports::clock::SharedClock;
use crate::ports::secrets::{SecretError, SecretSource};
use crate::usecases::verify::WebhookVerifier;

/// How long a fetched value is served before it is fetched again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// After a failed refresh, the next attempt waits at most this long (or the TTL, if shorter), so
/// an outage of Secrets Manager is not hammered by every request.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

struct Cached {
    value: Arc<str>,
    /// Epoch ms after which the next `get` fetches again.
    refresh_at_ms: i64,
}

/// A secret value cached for a TTL on an injected clock. Refreshes are single-flight: while one
/// caller fetches, the others are served the cached value without waiting.
pub struct RefreshingSecret {
    source: Arc<dyn SecretSource>,
    clock: SharedClock,
    ttl_ms: i64,
    cached: RwLock<Cached>,
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RefreshingSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshingSecret")
            .field("source", &self.source)
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl RefreshingSecret {
    /// Fetches the first value (cold start); a failure here is a start-up error.
    pub async fn load(
        source: Arc<dyn SecretSource>,
        clock: SharedClock,
        ttl: Duration,
    ) -> Result<Self, SecretError> {
        let value = source.fetch().await?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let refresh_at_ms = clock.now_ms().saturating_add(ttl_ms);
        Ok(Self {
            source,
            clock,
            ttl_ms,
            cached: RwLock::new(Cached {
                value: Arc::from(value),
                refresh_at_ms,
            }),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// The cached value, without refreshing.
    pub fn current(&self) -> Arc<str> {
        Arc::clone(&self.read().value)
    }

    /// The cached value, refetched first when it is older than the TTL. A new value is a new
    /// `Arc`, so callers can notice a change with `Arc::ptr_eq`.
    pub async fn get(&self) -> Arc<str> {
        if !self.due() {
            return self.current();
        }
        let Ok(_flight) = self.refreshing.try_lock() else {
            return self.current();
        };
        // Another caller may have refreshed between the check and the lock.
        if !self.due() {
            return self.current();
        }
        let now = self.clock.now_ms();
        match self.source.fetch().await {
            Ok(value) => {
                let mut cached = self.write();
                if *cached.value != *value {
                    cached.value = Arc::from(value);
                    tracing::info!(source = ?self.source, "secret refreshed: new value");
                }
                cached.refresh_at_ms = now.saturating_add(self.ttl_ms);
            }
            Err(e) => {
                let retry_ms = self
                    .ttl_ms
                    .min(i64::try_from(RETRY_AFTER_FAILURE.as_millis()).unwrap_or(i64::MAX));
                tracing::warn!(
                    source = ?self.source,
                    error = %e,
                    retry_in_ms = retry_ms,
                    "secret refresh failed; still serving the previous value"
                );
                self.write().refresh_at_ms = now.saturating_add(retry_ms);
            }
        }
        self.current()
    }

    fn due(&self) -> bool {
        self.clock.now_ms() >= self.read().refresh_at_ms
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cached> {
        self.cached.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cached> {
        self.cached.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps a [`WebhookVerifier`]'s static secret list in step with a [`RefreshingSecret`] holding
/// the `WEBHOOK_SIGNING_SECRETS` list. Cheap while the value is fresh (no parsing).
#[derive(Debug)]
pub struct SigningSecretsRefresh {
    secret: RefreshingSecret,
    applied: Mutex<Arc<str>>,
}

impl SigningSecretsRefresh {
    /// `secret`'s current value must already be in the verifier.
    pub fn new(secret: RefreshingSecret) -> Self {
        let applied = Mutex::new(secret.current());
        Self { secret, applied }
    }

    /// Refreshes the secret if due and, when its value changed, swaps the verifier's list. A
    /// list that does not parse is logged and ignored: the previous list stays in force.
    pub async fn refresh(&self, verifier: &WebhookVerifier) {
        let value = self.secret.get().await;
        {
            let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
            if Arc::ptr_eq(&applied, &value) {
                return;
            }
            *applied = Arc::clone(&value);
        }
        match parse_secret_list(&value) {
            Ok(list) => {
                let count = list.len();
                if verifier.replace_static_secrets(list) {
                    tracing::info!(static_secrets = count, "signing secrets replaced");
                } else {
                    tracing::error!("signing secrets refreshed but static verification is off");
                }
            }
            Err(e) => tracing::error!(
                error = %e,
                "refreshed signing secret list is invalid; keeping the previous list"
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ports::clock::ManualClock;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A source whose next answer the test sets; counts fetches; can be slowed down.
    #[derive(Default)]
    struct Scripted {
        next: Mutex<Option<Result<String, SecretError>>>,
        fetches: AtomicUsize,
        delay_ms: u64,
    }

    impl Scripted {
        fn answer(&self, r: Result<&str, SecretError>) {
            *self.next.lock().unwrap() = Some(r.map(str::to_owned));
        }
    }

    impl std::fmt::Debug for Scripted {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Scripted")
        }
    }

    #[async_trait]
    impl SecretSource for Scripted {
        async fn fetch(&self) -> Result<String, SecretError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            if self.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
            }
            self.next
                .lock()
                .unwrap()
                .clone()
                .unwrap_or(Err(SecretError::Empty))
        }
    }

    async fn loaded(source: &Arc<Scripted>, clock: &ManualClock) -> RefreshingSecret {
        RefreshingSecret::load(
            source.clone(),
            Arc::new(clock.clone()),
            Duration::from_secs(300),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn when_fresh_should_serve_cache_and_when_stale_should_refetch() {
        let source = Arc::new(Scripted::default());
        source.answer(Ok("one"));
        let clock = ManualClock::at_secs(1_800_000_000);
        let s = loaded(&source, &clock).await;
        source.answer(Ok("two"));
        clock.advance_ms(299_999);
        assert_eq!(&*s.get().await, "one");
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
        clock.advance_ms(1);
        assert_eq!(&*s.get().await, "two");
        assert_eq!(&*s.get().await, "two");
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn when_refresh_fails_should_keep_old_value_and_retry_later() {
        let source = Arc::new(Scripted::default());
        source.answer(Ok("one"));
        let clock = ManualClock::at_secs(1_800_000_000);
        let s = loaded(&source, &clock).await;
        source.answer(Err(SecretError::Unavailable("down".into())));
        clock.advance_ms(300_000);
        assert_eq!(&*s.get().await, "one");
        // Not retried on every request…
        assert_eq!(&*s.get().await, "one");
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
        // …but soon.
        source.answer(Ok("two"));
        clock.advance_ms(30_000);
        assert_eq!(&*s.get().await, "two");
    }

    #[tokio::test]
    async fn when_load_fails_should_error() {
        let source = Arc::new(Scripted::default());
        source.answer(Err(SecretError::Unavailable("no such secret".into())));
        let err = RefreshingSecret::load(
            source,
            Arc::new(ManualClock::at_secs(1)),
            Duration::from_secs(300),
        )
        .await
        .unwrap_err();
        assert_eq!(err, SecretError::Unavailable("no such secret".into()));
    }

    #[tokio::test]
    async fn concurrent_stale_gets_should_fetch_once() {
        let source = Arc::new(Scripted {
            delay_ms: 50,
            ..Scripted::default()
        });
        source.answer(Ok("one"));
        let clock = ManualClock::at_secs(1_800_000_000);
        let s = Arc::new(loaded(&source, &clock).await);
        source.answer(Ok("two"));
        clock.advance_ms(300_000);
        let gets: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.get().await })
            })
            .collect();
        for g in gets {
            let v = g.await.unwrap();
            assert!(&*v == "one" || &*v == "two");
        }
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
        assert_eq!(&*s.current(), "two");
    }

    #[test]
    fn debug_never_shows_the_value() {
        let source = Arc::new(Scripted::default());
        source.answer(Ok("super-secret-value"));
        let clock = ManualClock::at_secs(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let s = rt.block_on(loaded(&source, &clock));
        assert!(!format!("{s:?}").contains("super-secret-value"));
    }
}
