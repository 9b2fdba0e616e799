//! `gemini-hooks`: the local pipeline (`dev`, `demo`), developer tools (`send`, `verify`,
//! `results`, `export`, `redrive`, `reingest`, `jwks`, `secret`) and webhook management (`webhooks`). This
//! file only wires: parse, set up logging, dispatch, exit.

mod commands;
mod support;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use commands::{
    Cli, Command, demo, dev, export, jwks, redrive, reingest, results, secret, send, verify,
    webhooks,
};
use gemini_hooks::adapters::telemetry::LogFormat;
use support::error::{CliError, EXIT_FAILURE, EXIT_USAGE};
use support::logging;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = runtime.block_on(run(cli, &mut out));
    let _ = out.flush();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli, out: &mut dyn Write) -> Result<u8, CliError> {
    match cli.command {
        Command::Dev(a) => {
            logging::init(log_format(a.log_json), "info");
            dev::run(a, out).await.map(|()| 0)
        }
        Command::Demo(a) => {
            logging::init(
                log_format(a.log_json),
                if a.verbose { "info" } else { "off" },
            );
            demo::run(a, out).await.map(|()| 0)
        }
        Command::Send(a) => {
            logging::init(LogFormat::Text, "warn");
            send::run(a, out).await
        }
        Command::Verify(a) => {
            logging::init(LogFormat::Text, "error");
            match verify::run(a, out).await {
                Ok(verified) => Ok(verify::exit_status(verified)),
                // 1 is the verdict "not verified"; whatever prevents a verdict (an unreadable
                // file, a bad key) is a usage error, as documented.
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(EXIT_USAGE)
                }
            }
        }
        Command::Results(a) => {
            logging::init(LogFormat::Text, "warn");
            results::run(a, out).await.map(|()| 0)
        }
        Command::Export(a) => {
            logging::init(LogFormat::Text, "warn");
            export::run(a, out).await.map(|()| 0)
        }
        Command::Redrive(a) => {
            logging::init(LogFormat::Text, "warn");
            redrive::run(a, out).await.map(|()| 0)
        }
        Command::Reingest(a) => {
            logging::init(LogFormat::Text, "warn");
            reingest::run(a, out).await.map(|()| 0)
        }
        Command::Jwks(a) => {
            logging::init(LogFormat::Text, "warn");
            jwks::run(a, out).map(|()| 0)
        }
        Command::Webhooks(c) => {
            logging::init(LogFormat::Text, "warn");
            webhooks::run(c, out).await.map(|()| 0)
        }
        Command::Secret => secret::run(out).map(|()| 0),
    }
}

fn log_format(json: bool) -> LogFormat {
    if json {
        LogFormat::Json
    } else {
        LogFormat::Text
    }
}
