//! Template and code must not drift (the README's configuration table): every environment variable a function's
//! configuration reads is defined for that function in `template.yaml`, and every variable the
//! template defines is read. Also: the template references only EMF metrics the code emits, and
//! builds each function from the binary of that name.
//!
//! `template.yaml` is read line by line by indentation (`gemini_hooks_tests::template`). The
//! extractor is tested on its own below so a parsing slip cannot make the real check pass
//! vacuously; a value written as `!If [Cond, …, !Ref AWS::NoValue]` (on one line or as a block
//! sequence) still defines its key: the code may read the variable, the template sets it when
//! the condition holds.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use gemini_hooks::config::{
    ConfigError, ConsumerConfig, Env, ReceiverConfig, ReconcilerConfig, env,
};
use gemini_hooks::ports::metrics::{NAMESPACE, metric};
use gemini_hooks_tests::delivery::TEST_SECRET;
use gemini_hooks_tests::template::{child_block, keys, lines, value_of, workspace_file};

// ---------------------------------------------------------------------------------------------
// What the code reads
// ---------------------------------------------------------------------------------------------

/// A valid value for every variable, so a config reads everything it ever reads.
fn plausible(name: &str) -> String {
    match name {
        env::WEBHOOK_SIGNING_SECRETS => TEST_SECRET.to_owned(),
        env::WEBHOOK_TOLERANCE_SECONDS => "300".to_owned(),
        env::WEBHOOK_MAX_BODY_BYTES => "1048576".to_owned(),
        env::DEDUPE_RETENTION_HOURS => "168".to_owned(),
        env::RESULTS_RETENTION_DAYS => "30".to_owned(),
        env::LATE_BATCH_HOURS => "6".to_owned(),
        env::WEBHOOK_JWT_MAX_AGE_SECONDS => "86700".to_owned(),
        env::CONSUMER_WRITES_IN_FLIGHT => "4".to_owned(),
        env::ROUTES => r#"{"exp": "results-exp"}"#.to_owned(),
        env::WEBHOOK_JWKS_URL | env::GEMINI_API_BASE_URL | env::QUEUE_URL => {
            "http://127.0.0.1:1/x".to_owned()
        }
        _ => "value".to_owned(),
    }
}

/// The variable names `load` looks up when every variable has a valid value.
fn names_read(load: impl Fn(&Env<'_>) -> Result<(), ConfigError>) -> BTreeSet<String> {
    let seen = RefCell::new(BTreeSet::new());
    let env = Env::from_fn(|name| {
        seen.borrow_mut().insert(name.to_owned());
        Some(plausible(name))
    });
    if let Err(e) = load(&env) {
        panic!("config must load from plausible values: {e}");
    }
    drop(env);
    seen.into_inner()
}

/// Binary name → (config type as spelled in its main.rs, names it reads).
fn code_reads() -> BTreeMap<&'static str, (&'static str, BTreeSet<String>)> {
    BTreeMap::from([
        (
            "receiver",
            (
                "ReceiverConfig::from_env",
                names_read(|e| ReceiverConfig::from_env(e).map(drop)),
            ),
        ),
        (
            "consumer",
            (
                "ConsumerConfig::from_env",
                names_read(|e| ConsumerConfig::from_env(e).map(drop)),
            ),
        ),
        (
            "reconciler",
            (
                "ReconcilerConfig::from_env",
                names_read(|e| ReconcilerConfig::from_env(e).map(drop)),
            ),
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// What the template defines
// ---------------------------------------------------------------------------------------------

/// A function resource as the template declares it.
#[derive(Debug, Default, PartialEq)]
struct FunctionDecl {
    logical_id: String,
    binary: Option<String>,
    build_method: Option<String>,
    variables: BTreeSet<String>,
}

/// Every `AWS::Serverless::Function` with its `Environment.Variables` keys (plus any from
/// `Globals.Function.Environment.Variables`, which SAM merges into each function).
fn functions(template: &str) -> Vec<FunctionDecl> {
    let all = lines(template);
    let global_vars: BTreeSet<String> = child_block(&all, 0, "Globals")
        .and_then(|g| child_block(&g, 2, "Function"))
        .and_then(|f| child_block(&f, 4, "Environment"))
        .and_then(|e| child_block(&e, 6, "Variables"))
        .map(|v| keys(&v).into_iter().collect())
        .unwrap_or_default();
    let resources = child_block(&all, 0, "Resources").unwrap_or_default();
    let mut out = Vec::new();
    for id in keys(&resources) {
        let Some(body) = child_block(&resources, 2, &id) else {
            continue;
        };
        if value_of(&body, "Type").as_deref() != Some("AWS::Serverless::Function") {
            continue;
        }
        let build = child_block(&body, 4, "Metadata");
        let props = child_block(&body, 4, "Properties").unwrap_or_default();
        let mut variables = global_vars.clone();
        if let Some(vars) =
            child_block(&props, 6, "Environment").and_then(|e| child_block(&e, 8, "Variables"))
        {
            variables.extend(keys(&vars));
        }
        out.push(FunctionDecl {
            logical_id: id.clone(),
            binary: build
                .as_ref()
                .and_then(|m| child_block(m, 6, "BuildProperties"))
                .and_then(|b| value_of(&b, "Binary")),
            build_method: build.as_ref().and_then(|m| value_of(m, "BuildMethod")),
            variables,
        });
    }
    out
}

/// Metric names the template uses in namespace `GeminiHooks`: alarm `MetricName`s in resources
/// that name the namespace, and dashboard metric rows and SEARCH expressions.
fn emf_metrics_used(template: &str) -> BTreeSet<String> {
    let all = lines(template);
    let resources = child_block(&all, 0, "Resources").unwrap_or_default();
    let mut used = BTreeSet::new();
    for id in keys(&resources) {
        let Some(body) = child_block(&resources, 2, &id) else {
            continue;
        };
        if body
            .iter()
            .any(|l| l.trim() == format!("Namespace: {NAMESPACE}"))
        {
            used.extend(
                body.iter()
                    .filter_map(|l| l.trim().strip_prefix("MetricName:"))
                    .map(|m| m.trim().to_owned()),
            );
        }
    }
    let quoted = format!("\"{NAMESPACE}\", \"");
    for line in template.lines() {
        for (i, _) in line.match_indices(&quoted) {
            let rest = &line[i + quoted.len()..];
            if let Some(end) = rest.find('"') {
                used.insert(rest[..end].to_owned());
            }
        }
        for (i, _) in line.match_indices("MetricName=\\\"") {
            let rest = &line[i + "MetricName=\\\"".len()..];
            if let Some(end) = rest.find("\\\"") {
                used.insert(rest[..end].to_owned());
            }
        }
    }
    used
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

#[test]
fn every_variable_the_code_reads_is_in_the_template_and_vice_versa() {
    let template = workspace_file("template.yaml");
    let declared: BTreeMap<String, FunctionDecl> = functions(&template)
        .into_iter()
        .filter_map(|f| f.binary.clone().map(|b| (b, f)))
        .collect();
    let reads = code_reads();
    assert_eq!(
        declared.keys().map(String::as_str).collect::<Vec<_>>(),
        reads.keys().copied().collect::<Vec<_>>(),
        "the template must build exactly the receiver, consumer and reconciler binaries"
    );
    let mut problems = Vec::new();
    for (binary, (config, read)) in &reads {
        let decl = &declared[*binary];
        for name in read.difference(&decl.variables) {
            problems.push(format!(
                "{binary}: the code reads {name}, the template ({}) does not set it",
                decl.logical_id
            ));
        }
        for name in decl.variables.difference(read) {
            problems.push(format!(
                "{binary}: the template ({}) sets {name}, the code never reads it",
                decl.logical_id
            ));
        }
        for name in read {
            if !env::ALL.contains(&name.as_str()) {
                problems.push(format!(
                    "{binary}: reads {name}, which is not defined in gemini_hooks::config::env"
                ));
            }
        }
        let main = workspace_file(&format!("functions/{binary}/src/main.rs"));
        if !main.contains(config) {
            problems.push(format!(
                "functions/{binary}/src/main.rs does not call {config}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "template/code drift:\n{}",
        problems.join("\n")
    );
}

#[test]
fn functions_are_built_with_cargo_lambda_from_their_binary() {
    let template = workspace_file("template.yaml");
    let fns = functions(&template);
    assert_eq!(fns.len(), 3, "{fns:?}");
    for f in &fns {
        assert_eq!(f.build_method.as_deref(), Some("rust-cargolambda"), "{f:?}");
        let binary = f.binary.as_deref().unwrap_or_default();
        let manifest = workspace_file(&format!("functions/{binary}/Cargo.toml"));
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "functions/{binary}/Cargo.toml must define bin `{binary}`"
        );
    }
    // Globals carry the runtime and architecture for all of them.
    let all = lines(&template);
    let globals = child_block(&all, 0, "Globals")
        .and_then(|g| child_block(&g, 2, "Function"))
        .unwrap_or_default();
    assert_eq!(
        value_of(&globals, "Runtime").as_deref(),
        Some("provided.al2023")
    );
    let arch = child_block(&globals, 4, "Architectures").unwrap_or_default();
    assert_eq!(
        arch.iter().map(|l| l.trim()).collect::<Vec<_>>(),
        ["- arm64"]
    );
}

#[test]
fn template_references_only_metrics_the_code_emits() {
    let used = emf_metrics_used(&workspace_file("template.yaml"));
    let unknown: Vec<&String> = used
        .iter()
        .filter(|m| !metric::ALL.contains(&m.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "unknown GeminiHooks metrics in the template: {unknown:?}"
    );
    // The alarms the issue asks for exist.
    for required in [
        metric::JOBS_FAILED,
        metric::JOBS_EXPIRED,
        metric::BATCHES_RECOVERED,
        metric::MESSAGES_FAILED,
        metric::DELIVERIES_REJECTED,
        metric::WEBHOOKS_DISABLED,
        metric::BATCHES_LATE,
    ] {
        assert!(used.contains(required), "{required} is not used: {used:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The extractor itself
// ---------------------------------------------------------------------------------------------

const SAMPLE: &str = r#"
Parameters:
  Secret:
    Type: String
Globals:
  Function:
    Runtime: provided.al2023
    Environment:
      Variables:
        SHARED: !Ref Secret
Resources:
  # a comment
  FnA:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: a
    Properties:
      Description: >-
        Variables: not a key
      Environment:
        Variables:
          ONE: !Ref Secret
          TWO: !GetAtt Table.Arn

          THREE: "x"
          FOUR: !If [HasFour, !Ref Secret, !Ref AWS::NoValue]
          FIVE: !If
            - HasFive
            - NOT_A_KEY: x
            - !Ref AWS::NoValue
      Events:
        Variables:
          NOT_ENV: 1
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      Environment:
        Variables:
          IGNORED: x
  FnB:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
  Alarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Namespace: GeminiHooks
      MetricName: JobsFailed
  Other:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Namespace: AWS/Lambda
      MetricName: Errors
Outputs:
  X:
    Value: !Sub '["GeminiHooks", "RowsIngested", "Function"] MetricName=\"MessagesFailed\" x'
"#;

#[test]
fn extractor_reads_function_variables_by_indentation() {
    let fns = functions(SAMPLE);
    let shared = |extra: &[&str]| -> BTreeSet<String> {
        extra
            .iter()
            .chain(["SHARED"].iter())
            .map(|s| (*s).to_owned())
            .collect()
    };
    assert_eq!(
        fns,
        vec![
            FunctionDecl {
                logical_id: "FnA".into(),
                binary: Some("a".into()),
                build_method: Some("rust-cargolambda".into()),
                variables: shared(&["ONE", "TWO", "THREE", "FOUR", "FIVE"]),
            },
            FunctionDecl {
                logical_id: "FnB".into(),
                binary: None,
                build_method: None,
                variables: shared(&[]),
            },
        ]
    );
    assert_eq!(
        emf_metrics_used(SAMPLE),
        BTreeSet::from([
            "JobsFailed".to_owned(),
            "MessagesFailed".to_owned(),
            "RowsIngested".to_owned()
        ])
    );
}

#[test]
fn names_read_records_conditional_reads_too() {
    let read = names_read(|e| ReceiverConfig::from_env(e).map(drop));
    for name in [
        env::WEBHOOK_SIGNING_SECRETS,
        env::WEBHOOK_SIGNING_SECRETS_ARN,
        env::WEBHOOK_JWKS_URL,
        env::WEBHOOK_JWT_AUDIENCE,
        env::WEBHOOK_JWT_ISSUER,
        env::DEDUPE_TABLE,
        env::QUEUE_URL,
    ] {
        assert!(read.contains(name), "{name} not recorded: {read:?}");
    }
    assert!(!read.contains(env::RESULTS_TABLE));
    let read = names_read(|e| ConsumerConfig::from_env(e).map(drop));
    for name in [env::GEMINI_API_KEY, env::GEMINI_API_KEY_ARN] {
        assert!(read.contains(name), "{name} not recorded: {read:?}");
    }
}
