//! The results tables of a deployed stack, from its CloudFormation outputs (template.yaml
//! `Outputs`): `ResultsTableName`, and `ResultsRoutes` (the `Routes` parameter) when the stack
//! routes job groups to tables of their own.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata};
use gemini_hooks::config::{Env, RouteTables, env, route_tables};

use crate::support::error::CliError;

/// The output naming the default results table.
pub const RESULTS_TABLE_OUTPUT: &str = "ResultsTableName";
/// The output holding the stack's `ROUTES` JSON (present only when routes are set).
pub const ROUTES_OUTPUT: &str = "ResultsRoutes";
/// The output naming the events queue (`reingest --stack` sends its request there).
pub const QUEUE_OUTPUT: &str = "EventsQueueUrl";

/// The tables a stack's consumer writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackTables {
    pub stack: String,
    /// The default results table.
    pub results: String,
    /// `job_group` → routed table.
    pub routes: RouteTables,
    /// The events queue the consumer reads (`EventsQueueUrl`).
    pub queue_url: Option<String>,
}

impl StackTables {
    /// Reads the outputs of `stack` (whose status is `status`).
    pub fn from_outputs(
        stack: &str,
        status: &str,
        outputs: &BTreeMap<String, String>,
    ) -> Result<Self, CliError> {
        let results = outputs
            .get(RESULTS_TABLE_OUTPUT)
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                CliError::Failed(format!(
                    "stack `{stack}` ({status}) has no output {RESULTS_TABLE_OUTPUT}: is it a \
                     gemini-hooks stack deployed from template.yaml? (or pass the table: --aws \
                     --table NAME)"
                ))
            })?
            .to_owned();
        let routes_json = outputs.get(ROUTES_OUTPUT).cloned();
        let routes = route_tables(&Env::from_fn(|name| {
            (name == env::ROUTES).then(|| routes_json.clone()).flatten()
        }))
        .map_err(|e| CliError::Failed(format!("stack `{stack}`, output {ROUTES_OUTPUT}: {e}")))?;
        Ok(Self {
            stack: stack.to_owned(),
            results,
            routes,
            queue_url: outputs
                .get(QUEUE_OUTPUT)
                .map(|q| q.trim().to_owned())
                .filter(|q| !q.is_empty()),
        })
    }

    /// The table `--table` names: the default without one, else a table of the stack by its
    /// name or by its job group.
    pub fn select(&self, table: Option<&str>) -> Result<&str, CliError> {
        let Some(wanted) = table else {
            return Ok(&self.results);
        };
        if wanted == self.results {
            return Ok(&self.results);
        }
        if let Some(t) = self.routes.values().find(|t| *t == wanted) {
            return Ok(t);
        }
        if let Some(t) = self.routes.get(wanted) {
            return Ok(t);
        }
        Err(CliError::Usage(format!(
            "stack `{}` has no results table `{wanted}`; its tables: {}",
            self.stack,
            self.describe_tables()
        )))
    }

    /// The routed tables, without the default, each once.
    pub fn routed(&self) -> Vec<&str> {
        let mut tables: Vec<&str> = self
            .routes
            .values()
            .map(String::as_str)
            .filter(|t| *t != self.results)
            .collect();
        tables.sort_unstable();
        tables.dedup();
        tables
    }

    fn describe_tables(&self) -> String {
        let mut all = vec![format!("{} (default)", self.results)];
        for (group, table) in &self.routes {
            all.push(format!("{table} (job_group {group})"));
        }
        all.join(", ")
    }
}

/// Reads the outputs of `stack` with DescribeStacks.
pub async fn describe(aws: &aws_config::SdkConfig, stack: &str) -> Result<StackTables, CliError> {
    let client = aws_sdk_cloudformation::Client::new(aws);
    let region = aws.region().map(ToString::to_string).unwrap_or_default();
    let out = match client.describe_stacks().stack_name(stack).send().await {
        Ok(out) => out,
        Err(e) => {
            // CloudFormation answers a missing stack with a ValidationError saying so.
            if e.code() == Some("ValidationError")
                && e.message().is_some_and(|m| m.contains("does not exist"))
            {
                return Err(CliError::Failed(format!(
                    "no CloudFormation stack `{stack}` in region {region} (check --stack, and \
                     AWS_REGION or the profile's region)"
                )));
            }
            return Err(CliError::Failed(format!(
                "cannot read the outputs of stack `{stack}` in region {region}: {}",
                DisplayErrorContext(&e)
            )));
        }
    };
    let Some(found) = out.stacks().first() else {
        return Err(CliError::Failed(format!(
            "no CloudFormation stack `{stack}` in region {region}"
        )));
    };
    let status = found
        .stack_status()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    let outputs: BTreeMap<String, String> = found
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect();
    StackTables::from_outputs(stack, &status, &outputs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn outputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn tables_come_from_the_results_and_routes_outputs() {
        let t = StackTables::from_outputs(
            "prod",
            "CREATE_COMPLETE",
            &outputs(&[
                ("ResultsTableName", "prod-Results-1"),
                (
                    "ResultsRoutes",
                    r#"{"exp": "prod-Results-1-exp", "b": "prod-Results-1-exp"}"#,
                ),
                ("ReceiverUrl", "https://x"),
            ]),
        )
        .unwrap();
        assert_eq!(t.results, "prod-Results-1");
        assert_eq!(t.routed(), ["prod-Results-1-exp"]);
        assert_eq!(t.select(None).unwrap(), "prod-Results-1");
        assert_eq!(t.select(Some("prod-Results-1")).unwrap(), "prod-Results-1");
        assert_eq!(
            t.select(Some("prod-Results-1-exp")).unwrap(),
            "prod-Results-1-exp"
        );
        assert_eq!(t.select(Some("exp")).unwrap(), "prod-Results-1-exp");
        let err = t.select(Some("other")).unwrap_err().to_string();
        assert_eq!(
            err,
            "stack `prod` has no results table `other`; its tables: prod-Results-1 (default), \
             prod-Results-1-exp (job_group b), prod-Results-1-exp (job_group exp)"
        );
        let plain = StackTables::from_outputs(
            "p",
            "UPDATE_COMPLETE",
            &outputs(&[("ResultsTableName", "t")]),
        )
        .unwrap();
        assert!(plain.routes.is_empty() && plain.routed().is_empty());
    }

    #[test]
    fn a_stack_without_the_outputs_is_a_clear_error() {
        let err =
            StackTables::from_outputs("web", "ROLLBACK_COMPLETE", &outputs(&[("BucketName", "b")]))
                .unwrap_err()
                .to_string();
        assert!(
            err.starts_with("stack `web` (ROLLBACK_COMPLETE) has no output ResultsTableName"),
            "{err}"
        );
        let err = StackTables::from_outputs(
            "web",
            "CREATE_COMPLETE",
            &outputs(&[("ResultsTableName", "t"), ("ResultsRoutes", "{not json")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("output ResultsRoutes") && err.contains("ROUTES"),
            "{err}"
        );
    }
}
