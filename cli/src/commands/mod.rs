//! The commands, one module each, and the command line that selects them (clap derive). Each
//! command module holds its own flags (`Args`) and its `run`; helpers that several commands use
//! are in [`crate::support`].

pub mod demo;
pub mod dev;
pub mod export;
pub mod jwks;
pub mod redrive;
pub mod reingest;
pub mod results;
pub mod secret;
pub mod send;
pub mod verify;
pub mod webhooks;

use clap::{Parser, Subcommand};

const ABOUT: &str = "Receive Google Gemini API webhooks — on AWS, or on your laptop.";

const LONG_ABOUT: &str = "\
Receive Google Gemini API webhooks — on AWS, or on your laptop.

The same code that runs in the receiver and consumer Lambdas runs locally here, with an embedded
SQLite store instead of DynamoDB and SQS. No AWS account is needed.

Start here:
  gemini-hooks demo                  the whole story with sample data, in one command
  gemini-hooks dev                   the pipeline on http://127.0.0.1:9000/ (needs a signing secret)
  gemini-hooks dev --sample-gemini   the same, with a SAMPLE Gemini endpoint instead of a key
  gemini-hooks send batch.succeeded  a signed delivery to it; try --duplicate, --wrong-signature
  gemini-hooks verify --headers h.txt --body body.json
                                     why does this captured delivery fail verification?
  gemini-hooks results               what the consumer stored (--stack NAME: the deployed one)
  gemini-hooks export --job ID       every row of a job as JSON lines
  gemini-hooks reingest batches/ID   rewrite a finished batch's rows from its results again
  gemini-hooks webhooks create --uri URL
                                     register the receiver with Gemini (prints the secret once)

Configuration comes from the same environment variables as the Lambdas (WEBHOOK_SIGNING_SECRETS,
WEBHOOK_TOLERANCE_SECONDS, WEBHOOK_JWKS_URL, GEMINI_API_KEY, GEMINI_API_BASE_URL, ...).";

#[derive(Debug, Parser)]
#[command(name = "gemini-hooks", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline locally: receiver HTTP server + consumer on an embedded SQLite store.
    #[command(long_about = dev::LONG_ABOUT)]
    Dev(dev::DevArgs),
    /// Build, sign and POST a webhook delivery, including deliberate failures.
    #[command(long_about = send::LONG_ABOUT)]
    Send(send::SendArgs),
    /// Verify a captured delivery offline and explain the first check that fails.
    #[command(long_about = verify::LONG_ABOUT)]
    Verify(verify::VerifyArgs),
    /// List jobs, result rows and dead letters: local, or a deployed stack (--stack NAME).
    #[command(long_about = results::LONG_ABOUT)]
    Results(results::ResultsArgs),
    /// Every row of a job as JSON lines (stdout or --out FILE): local, or a deployed stack.
    #[command(long_about = export::LONG_ABOUT)]
    Export(export::ExportArgs),
    /// Move the local dead letters back to the queue (after fixing what made them fail).
    #[command(long_about = redrive::LONG_ABOUT)]
    Redrive(redrive::RedriveArgs),
    /// Download a finished batch's results again and rewrite its rows: local, or a deployed stack.
    #[command(long_about = reingest::LONG_ABOUT)]
    Reingest(reingest::ReingestArgs),
    /// Print the JWKS of the local key that `send --dynamic` signs with.
    Jwks(jwks::JwksArgs),
    /// Print a new random `whsec_` signing secret (for local use).
    Secret,
    /// The whole story in one command, with sample data: receive, dedupe, reject, ingest.
    #[command(long_about = demo::LONG_ABOUT)]
    Demo(demo::DemoArgs),
    /// Register and manage Gemini webhooks: create, list, get, rotate, ping, enable, delete.
    #[command(subcommand, long_about = webhooks::LONG_ABOUT)]
    Webhooks(webhooks::WebhooksCommand),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Flags that fall back to an environment variable name it through `config::env`, so
    /// every such name is one the Lambdas read too.
    #[test]
    fn flag_env_names_are_the_library_variables() {
        fn walk(cmd: &clap::Command, seen: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if let Some(name) = arg.get_env() {
                    let name = name.to_string_lossy().into_owned();
                    assert!(
                        gemini_hooks::config::env::ALL.contains(&name.as_str()),
                        "{} --{}: {name} is not a config::env name",
                        cmd.get_name(),
                        arg.get_id()
                    );
                    seen.push(name);
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, seen);
            }
        }
        let mut seen = Vec::new();
        walk(&Cli::command(), &mut seen);
        assert!(
            !seen.is_empty(),
            "verify reads its secrets and JWT policy from the environment"
        );
    }
}
