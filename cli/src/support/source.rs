//! Where `results` and `export` read: the local data directory (SQLite, as `dev` writes it), or
//! a deployed results table on DynamoDB, named directly or found through the stack's outputs.

use std::path::PathBuf;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use clap::Args;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::adapters::sqlite::SqliteStore;
use gemini_hooks::ports::{ResultsStore, StoreError};

use crate::support::args::DataDirArg;
use crate::support::error::CliError;
use crate::support::layout::{open_existing, routed_tables, store_path, table_path};
use crate::support::stack::{self, StackTables};

#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Read the deployed stack NAME: its results table comes from the CloudFormation outputs
    /// (AWS credentials and region as the AWS CLI finds them).
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,

    /// A results table. Locally: the table of a ROUTES group (its SQLite file in the data
    /// directory). With --stack: one of the stack's tables (by name or job group). With --aws:
    /// the DynamoDB table of that name.
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,

    /// Read the DynamoDB table --table instead of the local data directory.
    #[arg(long, requires = "table", conflicts_with = "stack")]
    pub aws: bool,

    #[command(flatten)]
    pub data: DataDirArg,
}

/// An opened results table.
pub enum Source {
    Local {
        store: SqliteStore,
        /// A ROUTES table's own file (it has no queue).
        routed: bool,
    },
    Aws {
        store: DynamoDbResultsStore,
        /// The stack it was found through.
        stack: Option<StackTables>,
    },
}

impl SourceArgs {
    /// True when reading DynamoDB.
    pub fn is_aws(&self) -> bool {
        self.aws || self.stack.is_some()
    }

    /// Opens the table these flags name; a missing store, stack or table is an error naming it.
    pub async fn open(&self) -> Result<Source, CliError> {
        if !self.is_aws() {
            return self.open_local();
        }
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let Some(region) = aws.region().map(ToString::to_string) else {
            return Err(CliError::Usage(
                "no AWS region: set AWS_REGION (or a region in the AWS profile)".into(),
            ));
        };
        let (table, stack) = match &self.stack {
            Some(name) => {
                let tables = stack::describe(&aws, name).await?;
                (
                    tables.select(self.table.as_deref())?.to_owned(),
                    Some(tables),
                )
            }
            None => match &self.table {
                Some(t) => (t.clone(), None),
                None => return Err(CliError::Usage("--aws needs --table NAME".into())),
            },
        };
        let client = aws_sdk_dynamodb::Client::new(&aws);
        if let Err(e) = client.describe_table().table_name(&table).send().await {
            let via = stack
                .as_ref()
                .map(|s| format!(" (named by stack `{}`)", s.stack))
                .unwrap_or_default();
            return Err(CliError::Failed(
                if e.code() == Some("ResourceNotFoundException") {
                    format!("no DynamoDB table `{table}`{via} in region {region}")
                } else {
                    format!(
                        "cannot read DynamoDB table `{table}`{via} in region {region}: {}",
                        DisplayErrorContext(&e)
                    )
                },
            ));
        }
        Ok(Source::Aws {
            store: DynamoDbResultsStore::new(client, table),
            stack,
        })
    }

    fn open_local(&self) -> Result<Source, CliError> {
        let data_dir = &self.data.data_dir;
        let Some(table) = &self.table else {
            return Ok(Source::Local {
                store: open_existing(store_path(data_dir))?,
                routed: false,
            });
        };
        let path: PathBuf = table_path(data_dir, table)?;
        if !path.is_file() {
            let known = routed_tables(data_dir);
            let known = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            return Err(CliError::Usage(format!(
                "no local table `{table}` in {} (local tables: {known}); for the deployed \
                 DynamoDB table of that name add --aws, or use --stack NAME",
                data_dir.display()
            )));
        }
        Ok(Source::Local {
            store: open_existing(path)?,
            routed: true,
        })
    }
}

impl Source {
    pub fn store(&self) -> &dyn ResultsStore {
        match self {
            Self::Local { store, .. } => store,
            Self::Aws { store, .. } => store,
        }
    }

    /// What is read, for messages: a file, or a table.
    pub fn describe(&self) -> String {
        match self {
            Self::Local { store, .. } => store.path().display().to_string(),
            Self::Aws { store, .. } => format!("DynamoDB table {}", store.table()),
        }
    }

    /// A store error, saying which store.
    pub fn error(&self, e: StoreError) -> CliError {
        match self {
            Self::Local { .. } => CliError::Store(e),
            Self::Aws { store, .. } => {
                CliError::Failed(format!("DynamoDB table {}: {e}", store.table()))
            }
        }
    }
}
