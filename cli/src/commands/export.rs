//! `gemini-hooks export --job ID`: every row of a job as JSON lines, from the local store or a
//! deployed results table, a page at a time (memory stays bounded whatever the job's size).
//! Each line is one row exactly as `results --json` shows it, whichever store it came from.

use std::fs::File;
use std::io::{BufWriter, ErrorKind, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use clap::Args;
use gemini_hooks::domain::jobs::ResultRow;
use gemini_hooks::usecases::read_rows::{PAGE_ROWS, each_row};
use indicatif::{ProgressBar, ProgressStyle};

use crate::commands::results::{read_error, require_job};
use crate::support::error::CliError;
use crate::support::source::SourceArgs;

pub const LONG_ABOUT: &str = "\
Write every row of a job as JSON lines (one row per line), to stdout or --out FILE.

Reads from the same places as `results`: the local data directory, --stack NAME (a deployed
stack's results table, from its CloudFormation outputs) or --aws --table NAME. Rows are read a
page at a time and written as they come, so memory stays small whatever the job's size; large
rows stored gzip-compressed or in parts are reassembled. Each line has the same fields whichever
store it came from (README, Read the results). On a terminal, a progress bar on stderr shows how
far it got; FILE appears only once the export is complete.

Examples:
  gemini-hooks export --job batches/abc > rows.jsonl
  gemini-hooks export --stack gemini-hooks --job batches/abc --out rows.jsonl";

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The job whose rows to export (e.g. batches/abc; the `batches/` prefix is optional).
    #[arg(long, value_name = "ID")]
    pub job: String,

    /// Write to FILE instead of stdout; FILE appears only once the export is complete.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub source: SourceArgs,
}

/// Output buffer: one write per 64 KiB, not per row.
const BUFFER_BYTES: usize = 64 * 1024;

/// Runs `gemini-hooks export`.
pub async fn run(args: ExportArgs, stdout: &mut dyn Write) -> Result<(), CliError> {
    let source = args.source.open().await?;
    let job = require_job(&source, &args.job).await?;
    let target = args.out.as_deref().filter(|p| *p != Path::new("-"));
    let mut file = match target {
        Some(path) => Some(Partial::create(path)?),
        None => None,
    };
    // A bar on a terminal only, and never drawn over the rows themselves.
    let show =
        std::io::stderr().is_terminal() && (file.is_some() || !std::io::stdout().is_terminal());
    let bar = progress(show, job.counts.rows_ingested);
    let mut reader_gone = false;
    let written = {
        let (sink, name): (&mut dyn Write, &Path) = match &mut file {
            Some(f) => (&mut f.file, f.partial.as_path()),
            None => (stdout, Path::new("<stdout>")),
        };
        let mut w = BufWriter::with_capacity(BUFFER_BYTES, sink);
        let mut written = 0u64;
        let mut line = Vec::with_capacity(4096);
        each_row(source.store(), &job.job_id, PAGE_ROWS, |row: ResultRow| {
            line.clear();
            serde_json::to_writer(&mut line, &row)
                .map_err(|e| CliError::Failed(format!("cannot encode row `{}`: {e}", row.key)))?;
            line.push(b'\n');
            match w.write_all(&line) {
                Ok(()) => {}
                // `export | head`: the reader is gone, so stop reading the table too.
                Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                    reader_gone = true;
                    return Ok(ControlFlow::Break(()));
                }
                Err(e) => return Err(CliError::io(name, e)),
            }
            written += 1;
            bar.inc(1);
            Ok(ControlFlow::Continue(()))
        })
        .await
        .map_err(|e| read_error(&source, e))?;
        match w.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => reader_gone = true,
            Err(e) => return Err(CliError::io(name, e)),
        }
        written
    };
    bar.finish_and_clear();
    if reader_gone {
        // `export | head`: the reader has what it wanted; a summary would only be noise.
        return Ok(());
    }
    let dest = match file {
        Some(f) => f.finish()?.display().to_string(),
        None => "stdout".to_owned(),
    };
    eprintln!(
        "exported {written} rows of {} from {} to {dest}",
        job.job_id,
        source.describe()
    );
    if job.state.is_terminal() && written != job.counts.rows_ingested {
        eprintln!(
            "warning: the job record counts {} rows (rows still being written, or expired by \
             the retention?)",
            job.counts.rows_ingested
        );
    }
    Ok(())
}

fn progress(show: bool, total: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let (bar, template) = if total > 0 {
        (
            ProgressBar::new(total),
            "{spinner} {pos}/{len} rows [{elapsed_precise}] {wide_bar} {eta}",
        )
    } else {
        (
            ProgressBar::new_spinner(),
            "{spinner} {pos} rows [{elapsed_precise}]",
        )
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// `--out FILE`, written as a hidden sibling and renamed into place once complete, so a failed
/// export never leaves a file that looks whole.
struct Partial {
    file: File,
    partial: PathBuf,
    target: PathBuf,
    done: bool,
}

impl Partial {
    fn create(target: &Path) -> Result<Self, CliError> {
        let name = target.file_name().ok_or_else(|| {
            CliError::Usage(format!("--out {}: not a file name", target.display()))
        })?;
        let partial = target.with_file_name(format!(".{}.partial", name.to_string_lossy()));
        let file = File::create(&partial).map_err(|e| CliError::io(&partial, e))?;
        Ok(Self {
            file,
            partial,
            target: target.to_path_buf(),
            done: false,
        })
    }

    fn finish(mut self) -> Result<PathBuf, CliError> {
        self.file
            .sync_all()
            .map_err(|e| CliError::io(&self.partial, e))?;
        std::fs::rename(&self.partial, &self.target).map_err(|e| CliError::io(&self.target, e))?;
        self.done = true;
        Ok(self.target.clone())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
