//! `gemini-hooks dev`: the receiver and the consumer as one local process on the SQLite store.
//!
//! The HTTP side answers through `gemini_hooks::usecases::http::handle` with the same `Receiver`
//! use case as the Lambda; the consumer side receives from the durable SQLite queue and calls
//! the same `Consumer` use case as the SQS-triggered Lambda. Only the adapters differ.
//!
//! - [`config`]: flags layered over the environment, read by the library's configuration;
//! - [`pipeline`]: the store and the use cases, built through `gemini_hooks::wiring`;
//! - [`server`]: the HTTP server (the function URL's answers, the local JWKS);
//! - [`worker`]: the consumer loop over the SQLite queue;
//! - [`notify`]: `--notify-url`, finished jobs' events POSTed from the store's outbox.

use std::io::Write;
use std::path::Path;

use crate::support::error::CliError;
use crate::support::lock::DataDirLock;
use crate::support::output::line;
use crate::support::util::now_ms;

mod args;
mod config;
mod notify;
mod pipeline;
mod server;
mod worker;

pub use args::{DevArgs, LONG_ABOUT};
pub use config::{ConsumerSetup, PipelineConfig};
pub use pipeline::Pipeline;
pub use server::bind;

/// Runs `gemini-hooks dev` until Ctrl-C / SIGTERM.
pub async fn run(args: DevArgs, out: &mut dyn Write) -> Result<(), CliError> {
    // The lock first: a second `dev` on this directory must say so, not fail on the port.
    let lock = DataDirLock::acquire(&args.data.data_dir)?;
    let listener = bind(&args.addr).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(format!("cannot read the bound address: {e}")))?;
    let config = PipelineConfig::read(&args, addr).await?;
    let summary = describe(&config, args.sample_gemini);
    let pipeline = Pipeline::start(listener, config, lock).await?;
    let shutdown = ShutdownSignal::install();
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

    shutdown.wait().await;
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
    if let Some(n) = &config.notify {
        // The secret is this machine's own (not a Gemini secret): printed so the local worker
        // at the URL can verify what it receives.
        lines.push(format!(
            "  notify     finished jobs' events to {}, signed with {} ({}{})",
            n.url,
            n.secret.to_whsec(),
            n.secret_path.display(),
            if n.created { ", new" } else { "" }
        ));
    }
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

/// Ctrl-C, or SIGTERM on Unix, listened for from [`ShutdownSignal::install`] on: a signal that
/// comes right after the "listening" line (a test, a supervisor) stops `dev` cleanly instead of
/// killing it with the default action.
pub struct ShutdownSignal {
    #[cfg(unix)]
    listeners: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl ShutdownSignal {
    pub fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listeners = signal(SignalKind::interrupt())
                .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
                .ok();
            Self { listeners }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Until the first Ctrl-C or SIGTERM.
    pub async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut int, mut term)) = self.listeners {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
