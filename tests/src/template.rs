//! A reader for the few shapes of `template.yaml` the template tests look at.
//!
//! The template uses CloudFormation tags (`!Ref`, `!Sub`, `!If`), which generic YAML crates
//! reject, and the template is written in one consistent block style, so it is read line by
//! line by indentation. The tests that use this also test it on samples of their own, so a
//! parsing slip cannot make a real check pass vacuously.

use std::path::Path;

/// A file of the workspace, e.g. `template.yaml`.
///
/// # Panics
/// If the file cannot be read.
pub fn workspace_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Indentation of a line (spaces).
pub fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Significant lines (no blanks, no comments), keeping their original indentation.
pub fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
        .collect()
}

/// The lines under the mapping key `key` (at indentation `at`) within `block`, or `None`.
pub fn child_block<'a>(block: &[&'a str], at: usize, key: &str) -> Option<Vec<&'a str>> {
    let start = block.iter().position(|l| {
        indent(l) == at
            && l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest == ":" || rest.starts_with(": "))
    })?;
    Some(
        block[start + 1..]
            .iter()
            .take_while(|l| indent(l) > at)
            .copied()
            .collect(),
    )
}

/// The keys of a mapping block (those at its first line's indentation).
pub fn keys(block: &[&str]) -> Vec<String> {
    let Some(first) = block.first() else {
        return Vec::new();
    };
    let at = indent(first);
    block
        .iter()
        .filter(|l| indent(l) == at)
        .filter_map(|l| {
            l.trim_start()
                .split_once(':')
                .map(|(k, _)| k.trim().to_owned())
        })
        .collect()
}

/// The scalar value of `key:` among the direct children of `block`, without quotes.
pub fn value_of(block: &[&str], key: &str) -> Option<String> {
    let at = indent(block.first()?);
    block.iter().filter(|l| indent(l) == at).find_map(|l| {
        let (k, v) = l.trim_start().split_once(':')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The items of a block sequence (`- …` lines at the block's first indentation), each with
/// the lines that belong to it; the `- ` of the first line is replaced by two spaces, so an
/// item reads like a mapping block.
pub fn list_items(block: &[&str]) -> Vec<Vec<String>> {
    let Some(first) = block.first() else {
        return Vec::new();
    };
    let at = indent(first);
    let mut items: Vec<Vec<String>> = Vec::new();
    for l in block {
        if indent(l) == at && l.trim_start().starts_with("- ") {
            items.push(vec![l.replacen("- ", "  ", 1)]);
        } else if let Some(item) = items.last_mut() {
            item.push((*l).to_owned());
        }
    }
    items
}

/// One resource of `Resources`: its logical id, type and lines (the body under its id).
#[derive(Debug, Clone)]
pub struct Resource<'a> {
    pub id: String,
    pub kind: String,
    pub body: Vec<&'a str>,
}

impl Resource<'_> {
    /// A resource attribute or property block, e.g. `DeletionPolicy` or `Properties`.
    pub fn attribute(&self, key: &str) -> Option<String> {
        value_of(&self.body, key)
    }

    /// The `Properties` block.
    pub fn properties(&self) -> Vec<&str> {
        child_block(&self.body, 4, "Properties").unwrap_or_default()
    }
}

/// Every resource of the template, in order.
pub fn resources(template: &str) -> Vec<Resource<'_>> {
    let all = lines(template);
    let block = child_block(&all, 0, "Resources").unwrap_or_default();
    keys(&block)
        .into_iter()
        .filter_map(|id| {
            let body = child_block(&block, 2, &id)?;
            Some(Resource {
                kind: value_of(&body, "Type").unwrap_or_default(),
                id,
                body,
            })
        })
        .collect()
}

/// The raw text of resource `id`, comments inside it included, up to the next line at
/// resource level (a comment there introduces the next resource).
pub fn raw_resource<'a>(template: &'a str, id: &str) -> Option<&'a str> {
    let start = template.find(&format!("\n  {id}:\n"))? + 1;
    let rest = &template[start..];
    let mut end = 0;
    for (n, line) in rest.split_inclusive('\n').enumerate() {
        if n > 0 && !line.trim().is_empty() && indent(line) <= 2 {
            break;
        }
        end += line.len();
    }
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Parameters:
  P:
    Type: String
Resources:
  # about A
  A:
    Type: AWS::SQS::Queue
    # why
    DeletionPolicy: Retain
    Properties:
      Tags:
        - Key: k
          Value: v
        - Key: k2
          Value: v2
  B:
    Type: AWS::SNS::Topic
Outputs:
  O:
    Value: x
";

    #[test]
    fn reads_resources_attributes_and_lists() {
        let r = resources(SAMPLE);
        assert_eq!(
            r.iter()
                .map(|r| (r.id.as_str(), r.kind.as_str()))
                .collect::<Vec<_>>(),
            [("A", "AWS::SQS::Queue"), ("B", "AWS::SNS::Topic")]
        );
        assert_eq!(r[0].attribute("DeletionPolicy").as_deref(), Some("Retain"));
        assert_eq!(r[1].attribute("DeletionPolicy"), None);
        let tags = child_block(&r[0].properties(), 6, "Tags").unwrap_or_default();
        let items = list_items(&tags);
        assert_eq!(items.len(), 2);
        let item: Vec<&str> = items[1].iter().map(String::as_str).collect();
        assert_eq!(value_of(&item, "Key").as_deref(), Some("k2"));
        assert_eq!(value_of(&item, "Value").as_deref(), Some("v2"));
    }

    #[test]
    fn raw_resource_keeps_comments_and_stops_at_the_next_resource() {
        let a = raw_resource(SAMPLE, "A").unwrap_or_default();
        assert!(a.starts_with("  A:\n") && a.contains("# why"), "{a}");
        assert!(a.ends_with("Value: v2\n"), "{a}");
        assert!(!a.contains("B:"), "{a}");
        let b = raw_resource(SAMPLE, "B").unwrap_or_default();
        assert_eq!(b, "  B:\n    Type: AWS::SNS::Topic\n");
        assert!(raw_resource(SAMPLE, "C").is_none());
    }

    #[test]
    fn child_block_matches_whole_keys_only() {
        let all = lines("Outputs:\n  Ab:\n    Value: 1\n  A:\n    Value: 2\n");
        let a = child_block(&all, 2, "A").unwrap_or_default();
        assert_eq!(value_of(&a, "Value").as_deref(), Some("2"));
    }
}
