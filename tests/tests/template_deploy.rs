//! A first deploy into a fresh account must work and keep working: checks on `template.yaml`
//! (and the files around it) for the defects a linter does not see.
//!
//! - Alarms can notify: every topic an alarm acts on is encrypted with a key whose policy lets
//!   CloudWatch use it (never the AWS-managed `alias/aws/sns`), or is unencrypted with a reason.
//! - Data survives the stack: stateful resources carry explicit deletion and replacement
//!   policies; tables and queues are retained; every `Delete` says why.
//! - Defaults that deploy: no reserved concurrency by default; CloudFormation `Rules` refuse a
//!   stack whose receiver could verify nothing; dynamic (JWT) mode is on only with an audience.
//! - The README's shell variables come from stack outputs; `samconfig.toml` needs no beta
//!   features; SAM's build directory is ignored.
//!
//! Each check is also run on a broken sample, so it is known to fail when it should.

use std::collections::{BTreeMap, BTreeSet};

use gemini_hooks::config::env;
use gemini_hooks_tests::template::{
    Resource, child_block, keys, lines, list_items, raw_resource, resources, value_of,
    workspace_file,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The logical ids named by `!Ref X` in `text`.
fn refs(text: &str) -> Vec<String> {
    text.match_indices("!Ref ")
        .map(|(i, _)| {
            text[i + 5..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == ':')
                .collect()
        })
        .collect()
}

/// An alarm's actions (`AlarmActions`, `OKActions`, `InsufficientDataActions`), inline or as a
/// block sequence: the logical ids they reference.
fn alarm_action_refs(alarm: &Resource<'_>) -> Vec<String> {
    let props = alarm.properties();
    let mut out = Vec::new();
    for key in ["AlarmActions", "OKActions", "InsufficientDataActions"] {
        if let Some(inline) = value_of(&props, key) {
            out.extend(refs(&inline));
        }
        if let Some(block) = child_block(&props, 6, key) {
            out.extend(block.iter().flat_map(|l| refs(l)));
        }
    }
    out
}

/// The values of `key` in a block: inline (`Action: kms:*`, `Action: [a, b]`) or as a block
/// sequence (`- a` lines).
fn scalars(block: &[&str], key: &str, at: usize) -> Vec<String> {
    if let Some(v) = value_of(block, key).filter(|v| !v.is_empty()) {
        return v
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_owned())
            .collect();
    }
    child_block(block, at, key)
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(|s| s.trim().trim_matches('"').to_owned())
        .collect()
}

/// Whether the key policy of KMS key `key` lets CloudWatch alarms publish to a topic it
/// encrypts: an `Allow` statement for `cloudwatch.amazonaws.com` with `kms:Decrypt` and
/// `kms:GenerateDataKey*` (SNS docs: "compatibility with AWS services").
fn key_lets_cloudwatch_publish(key: &Resource<'_>) -> Result<(), String> {
    let props = key.properties();
    let statements = child_block(&props, 6, "KeyPolicy")
        .and_then(|p| child_block(&p, 8, "Statement"))
        .ok_or_else(|| format!("{}: no KeyPolicy.Statement", key.id))?;
    let ok = list_items(&statements).iter().any(|item| {
        let item: Vec<&str> = item.iter().map(String::as_str).collect();
        let service = child_block(&item, 12, "Principal")
            .map(|p| scalars(&p, "Service", 14))
            .unwrap_or_default();
        let actions = scalars(&item, "Action", 12);
        value_of(&item, "Effect").as_deref() == Some("Allow")
            && service.iter().any(|s| s == "cloudwatch.amazonaws.com")
            && actions.iter().any(|a| a == "kms:Decrypt")
            && actions.iter().any(|a| a == "kms:GenerateDataKey*")
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{}: no Allow statement gives cloudwatch.amazonaws.com kms:Decrypt and \
             kms:GenerateDataKey*",
            key.id
        ))
    }
}

/// Every problem that stops an alarm from notifying through its topic.
fn alarm_topic_problems(template: &str) -> Vec<String> {
    let all = resources(template);
    let by_id: BTreeMap<&str, &Resource<'_>> = all.iter().map(|r| (r.id.as_str(), r)).collect();
    let alarms: Vec<&Resource<'_>> = all
        .iter()
        .filter(|r| r.kind == "AWS::CloudWatch::Alarm")
        .collect();
    let mut problems = Vec::new();
    if alarms.is_empty() {
        problems.push("no alarms at all".to_owned());
    }
    let mut topics = BTreeSet::new();
    for alarm in &alarms {
        let targets = alarm_action_refs(alarm);
        if targets.is_empty() {
            problems.push(format!("{}: notifies nobody (no AlarmActions)", alarm.id));
        }
        topics.extend(targets);
    }
    for topic in &topics {
        let Some(t) = by_id.get(topic.as_str()) else {
            problems.push(format!(
                "alarm action {topic} is not a resource of the template"
            ));
            continue;
        };
        if t.kind != "AWS::SNS::Topic" {
            continue;
        }
        match t.properties().as_slice() {
            [] => problems.push(format!("{topic}: no properties")),
            props => match value_of(props, "KmsMasterKeyId") {
                None => {
                    let raw = raw_resource(template, topic).unwrap_or_default();
                    if !raw.contains('#') || !raw.to_ascii_lowercase().contains("unencrypted") {
                        problems.push(format!("{topic}: unencrypted without a comment saying why"));
                    }
                }
                Some(key) if key.contains("aws/sns") => problems.push(format!(
                    "{topic}: encrypted with the AWS-managed {key}, which CloudWatch alarms \
                     cannot use"
                )),
                Some(key) => {
                    let id = refs(&key)
                        .into_iter()
                        .next()
                        .or_else(|| {
                            key.strip_prefix("!GetAtt ")
                                .and_then(|k| k.split('.').next())
                                .map(str::to_owned)
                        })
                        .unwrap_or_default();
                    match by_id.get(id.as_str()) {
                        Some(k) if k.kind == "AWS::KMS::Key" => {
                            if let Err(e) = key_lets_cloudwatch_publish(k) {
                                problems.push(format!("{topic}: {e}"));
                            }
                        }
                        _ => problems.push(format!(
                            "{topic}: key {key} is not a KMS key of this template, so its \
                             policy cannot be checked"
                        )),
                    }
                }
            },
        }
    }
    problems
}

/// Types whose deletion loses data or breaks a redeploy, so their policies must be explicit.
const STATEFUL: &[&str] = &[
    "AWS::DynamoDB::Table",
    "AWS::SQS::Queue",
    "AWS::Logs::LogGroup",
    "AWS::KMS::Key",
    "AWS::S3::Bucket",
    "AWS::SecretsManager::Secret",
];
/// Types that hold the product or in-flight work: they must be retained.
const MUST_RETAIN: &[&str] = &["AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::S3::Bucket"];

fn deletion_policy_problems(template: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for r in resources(template) {
        if !STATEFUL.contains(&r.kind.as_str()) {
            continue;
        }
        for attribute in ["DeletionPolicy", "UpdateReplacePolicy"] {
            match r.attribute(attribute).as_deref() {
                None => problems.push(format!("{}: no {attribute}", r.id)),
                Some("Retain" | "RetainExceptOnCreate" | "Snapshot") => {}
                Some(_) if MUST_RETAIN.contains(&r.kind.as_str()) => {
                    problems.push(format!("{}: {attribute} must be Retain", r.id));
                }
                Some(_) => {
                    let raw = raw_resource(template, &r.id).unwrap_or_default();
                    let justified = raw
                        .lines()
                        .any(|l| l.trim_start().starts_with('#') && l.contains("Delete"));
                    if !justified {
                        problems.push(format!(
                            "{}: {attribute} Delete needs a comment saying why",
                            r.id
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// A scalar written inline or folded (`>-` with the text on the lines below), on one line.
fn text_of(block: &[&str], at: usize, key: &str) -> String {
    match value_of(block, key) {
        Some(v) if !v.is_empty() && !v.starts_with('>') && !v.starts_with('|') => v,
        _ => child_block(block, at, key)
            .unwrap_or_default()
            .iter()
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn parameter<'a>(all: &[&'a str], name: &str) -> Vec<&'a str> {
    child_block(all, 0, "Parameters")
        .and_then(|p| child_block(&p, 2, name))
        .unwrap_or_else(|| panic!("parameter {name} is missing"))
}

/// The parameters an `!Or` of `!Not [!Equals [!Ref P, ""]]` assertions requires one of, for
/// each rule, with its description.
fn rules_requiring_one_of(template: &str) -> Vec<(BTreeSet<String>, String)> {
    let all = lines(template);
    let Some(rules) = child_block(&all, 0, "Rules") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rule in keys(&rules) {
        let body = child_block(&rules, 2, &rule).unwrap_or_default();
        let assertions = child_block(&body, 4, "Assertions").unwrap_or_default();
        for item in list_items(&assertions) {
            let item: Vec<&str> = item.iter().map(String::as_str).collect();
            if value_of(&item, "Assert").as_deref() != Some("!Or") {
                continue;
            }
            let alternatives = child_block(&item, 8, "Assert").unwrap_or_default();
            let params: Option<BTreeSet<String>> = alternatives
                .iter()
                .map(|l| {
                    let inner = l
                        .trim()
                        .strip_prefix("- !Not [!Equals [!Ref ")?
                        .strip_suffix(", \"\"]]")?;
                    Some(inner.to_owned())
                })
                .collect();
            if let Some(params) = params {
                out.push((params, text_of(&item, 8, "AssertDescription")));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The checks on the real files
// ---------------------------------------------------------------------------------------------

#[test]
fn every_alarm_can_notify_through_its_topic() {
    let template = workspace_file("template.yaml");
    let problems = alarm_topic_problems(&template);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // And the key policy is scoped to this account (confused deputy).
    let key = raw_resource(&template, "AlarmTopicKey").unwrap_or_default();
    assert!(
        key.contains("aws:SourceAccount: !Ref AWS::AccountId"),
        "{key}"
    );
}

#[test]
fn stateful_resources_survive_deletion_and_replacement() {
    let template = workspace_file("template.yaml");
    let problems = deletion_policy_problems(&template);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The ones the issue names, so a rename cannot make the check above skip them.
    let by_id: BTreeMap<String, Resource<'_>> = resources(&template)
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    for id in [
        "ResultsTable",
        "DedupeTable",
        "EventsQueue",
        "EventsDeadLetterQueue",
    ] {
        let r = by_id
            .get(id)
            .unwrap_or_else(|| panic!("{id} is not in the template"));
        assert_eq!(
            r.attribute("DeletionPolicy").as_deref(),
            Some("Retain"),
            "{id}"
        );
        assert_eq!(
            r.attribute("UpdateReplacePolicy").as_deref(),
            Some("Retain"),
            "{id}"
        );
    }
}

#[test]
fn a_first_deploy_into_a_fresh_account_gets_working_defaults() {
    let template = workspace_file("template.yaml");
    let all = lines(&template);

    // No reservation: new accounts cannot reserve any concurrency.
    let reserved = parameter(&all, "ReceiverReservedConcurrency");
    assert_eq!(value_of(&reserved, "Default").as_deref(), Some("0"));

    // A receiver that could verify nothing cannot deploy.
    let rules = rules_requiring_one_of(&template);
    let wanted: BTreeSet<String> = ["SigningSecrets", "SigningSecretsArn", "JwtAudience"]
        .map(str::to_owned)
        .into();
    let rule = rules
        .iter()
        .find(|(params, _)| *params == wanted)
        .unwrap_or_else(|| panic!("no rule requires one of {wanted:?}: {rules:?}"));
    for name in &wanted {
        assert!(rule.1.contains(name), "AssertDescription must name {name}");
    }

    // Dynamic (JWT) verification is opt-in: off by default, the JWKS passed only with an
    // audience.
    let audience = parameter(&all, "JwtAudience");
    assert_eq!(value_of(&audience, "Default").as_deref(), Some(""));
    let description = text_of(&audience, 4, "Description");
    assert!(
        description.contains("Setting it is what turns dynamic verification on"),
        "{description}"
    );
    let conditions = child_block(&all, 0, "Conditions").unwrap_or_default();
    assert_eq!(
        value_of(&conditions, "HasJwtAudience").as_deref(),
        Some(r#"!Not [!Equals [!Ref JwtAudience, ""]]"#)
    );
    let receiver = resources(&template)
        .into_iter()
        .find(|r| r.id == "ReceiverFunction")
        .unwrap_or_else(|| panic!("no ReceiverFunction"));
    let variables = child_block(&receiver.properties(), 6, "Environment")
        .and_then(|e| child_block(&e, 8, "Variables"))
        .unwrap_or_default();
    assert_eq!(
        value_of(&variables, env::WEBHOOK_JWKS_URL).as_deref(),
        Some("!If [HasJwtAudience, !Ref JwksUrl, !Ref AWS::NoValue]")
    );
}

/// `NAME=$(stack_output OutputKey)` lines of the README.
fn readme_stack_variables(readme: &str) -> BTreeMap<String, String> {
    readme
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once("=$(stack_output ")?;
            let key = rest.strip_suffix(')')?;
            Some((name.to_owned(), key.to_owned()))
        })
        .collect()
}

/// Every `$NAME` / `${NAME}` the README uses.
fn readme_variables_used(readme: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in readme.match_indices('$') {
        let rest = readme[i + 1..].trim_start_matches('{');
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if name.len() > 1 {
            out.insert(name);
        }
    }
    out
}

#[test]
fn the_readme_takes_every_stack_name_it_uses_from_an_output() {
    let readme = workspace_file("README.md");
    let template = workspace_file("template.yaml");
    let all = lines(&template);
    let outputs: BTreeSet<String> = child_block(&all, 0, "Outputs")
        .map(|o| keys(&o).into_iter().collect())
        .unwrap_or_default();
    let from_outputs = readme_stack_variables(&readme);
    for (name, key) in &from_outputs {
        assert!(
            outputs.contains(key),
            "README sets {name} from output {key}, which template.yaml does not have"
        );
    }
    // Names of deployed things (functions, tables, queues, URLs) must come from an output,
    // unless they are configuration variables or the README computes them itself.
    let computed: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.trim().split_once("=$(").map(|(n, _)| n.to_owned()))
        .collect();
    let mut missing = Vec::new();
    for name in readme_variables_used(&readme) {
        let deployed = ["_FUNCTION", "_TABLE", "_URL", "_QUEUE"]
            .iter()
            .any(|s| name.ends_with(s));
        if deployed
            && !from_outputs.contains_key(&name)
            && !computed.contains(&name)
            && !env::ALL.contains(&name.as_str())
        {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "README uses {missing:?} without setting them from the stack outputs"
    );
    for name in [
        "CONSUMER_FUNCTION",
        "RECONCILER_FUNCTION",
        "RESULTS_TABLE",
        "DLQ_URL",
    ] {
        assert!(
            from_outputs.contains_key(name),
            "README must set {name} from an output"
        );
    }
}

#[test]
fn sam_needs_no_beta_features_and_its_build_dir_is_ignored() {
    let samconfig = workspace_file("samconfig.toml");
    let settings: Vec<&str> = lines(&samconfig)
        .into_iter()
        .filter(|l| l.contains("beta_features"))
        .collect();
    assert!(settings.is_empty(), "samconfig.toml: {settings:?}");
    let gitignore = workspace_file(".gitignore");
    assert!(
        gitignore.lines().any(|l| matches!(
            l.trim(),
            ".aws-sam" | ".aws-sam/" | "/.aws-sam" | "/.aws-sam/"
        )),
        ".gitignore must ignore .aws-sam/"
    );
}

// ---------------------------------------------------------------------------------------------
// The checks fail on broken templates
// ---------------------------------------------------------------------------------------------

const BROKEN: &str = r#"
Parameters:
  A:
    Type: String
Rules:
  Partial:
    Assertions:
      - Assert: !Or
          - !Not [!Equals [!Ref SigningSecrets, ""]]
          - !Not [!Equals [!Ref JwtAudience, ""]]
        AssertDescription: only two
Resources:
  ManagedTopic:
    Type: AWS::SNS::Topic
    Properties:
      KmsMasterKeyId: alias/aws/sns
  OwnTopic:
    Type: AWS::SNS::Topic
    Properties:
      KmsMasterKeyId: !Ref NarrowKey
  PlainTopic:
    Type: AWS::SNS::Topic
    Properties:
      DisplayName: x
  NarrowKey:
    Type: AWS::KMS::Key
    DeletionPolicy: Delete
    UpdateReplacePolicy: Retain
    Properties:
      KeyPolicy:
        Statement:
          - Effect: Allow
            Principal:
              Service: cloudwatch.amazonaws.com
            Action: kms:Decrypt
  Table:
    Type: AWS::DynamoDB::Table
    DeletionPolicy: Delete
    Properties:
      BillingMode: PAY_PER_REQUEST
  Logs:
    Type: AWS::Logs::LogGroup
    Properties:
      RetentionInDays: 1
  Quiet:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Namespace: AWS/SQS
  Loud:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmActions: [!Ref ManagedTopic]
      OKActions:
        - !Ref OwnTopic
        - !Ref PlainTopic
"#;

const FIXED_KEY: &str = r#"
Resources:
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      KmsMasterKeyId: !GetAtt Key.Arn
  Key:
    Type: AWS::KMS::Key
    Properties:
      KeyPolicy:
        Statement:
          - Effect: Allow
            Principal:
              AWS: root
            Action: kms:*
          - Effect: Allow
            Principal:
              Service:
                - cloudwatch.amazonaws.com
            Action:
              - kms:Decrypt
              - kms:GenerateDataKey*
  Alarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmActions: [!Ref Topic]
"#;

#[test]
fn alarm_topic_check_fails_on_the_managed_key_and_on_a_narrow_policy() {
    let problems = alarm_topic_problems(BROKEN);
    let has = |text: &str| problems.iter().any(|p| p.contains(text));
    assert!(has("Quiet: notifies nobody"), "{problems:?}");
    assert!(
        has("ManagedTopic: encrypted with the AWS-managed alias/aws/sns"),
        "{problems:?}"
    );
    assert!(
        has("OwnTopic: NarrowKey: no Allow statement"),
        "{problems:?}"
    );
    assert!(
        has("PlainTopic: unencrypted without a comment"),
        "{problems:?}"
    );
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert_eq!(alarm_topic_problems(FIXED_KEY), Vec::<String>::new());
}

#[test]
fn deletion_policy_check_fails_on_missing_and_unjustified_policies() {
    let problems = deletion_policy_problems(BROKEN);
    assert_eq!(
        problems,
        [
            "NarrowKey: DeletionPolicy Delete needs a comment saying why",
            "Table: DeletionPolicy must be Retain",
            "Table: no UpdateReplacePolicy",
            "Logs: no DeletionPolicy",
            "Logs: no UpdateReplacePolicy",
        ]
    );
}

#[test]
fn rule_reader_sees_which_parameters_an_assertion_requires() {
    let rules = rules_requiring_one_of(BROKEN);
    assert_eq!(
        rules,
        [(
            BTreeSet::from(["SigningSecrets".to_owned(), "JwtAudience".to_owned()]),
            "only two".to_owned()
        )]
    );
}

#[test]
fn readme_readers_find_outputs_and_uses() {
    let text = "```\nX_FUNCTION=$(stack_output XName)\nY=$(other)\naws --q \"$X_FUNCTION\" ${Z_URL}/$Y $1\n```";
    assert_eq!(
        readme_stack_variables(text),
        BTreeMap::from([("X_FUNCTION".to_owned(), "XName".to_owned())])
    );
    assert_eq!(
        readme_variables_used(text),
        BTreeSet::from(["X_FUNCTION".to_owned(), "Z_URL".to_owned()])
    );
}
