//! Editing one entry of `sluice.yaml` in place: what the server's
//! per-resource writes (`PUT /api/v1/models/{name}`, ...) do to a tenant's
//! project.
//!
//! Why text surgery and not "parse, change, print": the project is code a
//! team keeps in version control, with comments, an order and a layout of
//! its own. Printing a parsed tree would drop every comment and reflow the
//! whole file, so an API edit would show up as a rewrite of everything.
//! Here only the lines of the one entry change: they are found from the
//! positions the parser records (the entry's key) and the indentation of the
//! lines after it, and the new entry is printed by yaml-rust2's emitter in
//! block style at the same indentation. Everything else stays byte for
//! byte. A section written in flow style (`sources: { a: {...} }`) has no
//! lines of its own per entry; that edit is refused with a message saying
//! to apply the whole project instead.
//!
//! The result is text only: the caller validates it like any project.

use crate::yaml::{self, Node, NodeKind};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

/// The sections of `sluice.yaml` whose entries can be edited one by one.
pub const EDITABLE_SECTIONS: &[&str] =
    &["sources", "destinations", "transforms", "models", "syncs"];

/// Why an entry could not be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the project file does not parse ({message} at line {line}); fix it by applying the whole project")]
    Unparsable { line: usize, message: String },
    #[error("the project file's top level is not a mapping of sections; apply the whole project instead")]
    NotAMapping,
    #[error("`{section}` is not a section whose entries can be edited (one of: {})", EDITABLE_SECTIONS.join(", "))]
    UnknownSection { section: String },
    #[error("`{section}` is written in flow style (`{{ ... }}`) at line {line}; edit it by applying the whole project")]
    FlowStyle { section: String, line: usize },
    #[error("`{section}` holds no entry `{name}`")]
    NoSuchEntry { section: String, name: String },
    #[error("the entry must be a mapping (a JSON object), found {found}")]
    NotAnObject { found: &'static str },
}

/// Returns `text` with `section.name` set to `value` (added at the end of
/// the section, or of the file, when it is new), or removed when `value` is
/// `None`. Every other line is kept as it was.
pub fn set_entry(
    text: &str,
    section: &str,
    name: &str,
    value: Option<&serde_json::Value>,
) -> Result<String, EditError> {
    if !EDITABLE_SECTIONS.contains(&section) {
        return Err(EditError::UnknownSection {
            section: section.to_owned(),
        });
    }
    if let Some(v) = value.filter(|v| !v.is_object()) {
        return Err(EditError::NotAnObject {
            found: json_kind(v),
        });
    }
    let lines = Lines::new(text);
    let root = parse_root(text)?;
    let Some(section_node) = find_key(&root, section)? else {
        return match value {
            Some(v) => Ok(append_section(text, section, name, v)),
            None => Err(no_such_entry(section, name)),
        };
    };
    let (key, body) = section_node;
    if let (true, Some(v)) = (is_empty_flow(&lines, body), value) {
        // `syncs: {}` gaining its first entry becomes a block section.
        let block = format!(
            "{section}:\n{}",
            render_entry(name, v, key.pos.column - 1 + 2)
        );
        return Ok(lines.splice(key.pos.line, key.pos.line + 1, &block));
    }
    let entries = section_entries(&lines, section, key, body)?;
    let existing = entries.iter().find(|(k, _)| k.as_scalar() == Some(name));
    match (existing, value) {
        (Some((k, _)), Some(v)) => {
            let (start, end) = entry_lines(&lines, k);
            let indent = k.pos.column - 1;
            Ok(lines.splice(start, end, &render_entry(name, v, indent)))
        }
        (Some((k, _)), None) => {
            let (start, end) = entry_lines(&lines, k);
            Ok(lines.splice(start, end, ""))
        }
        (None, Some(v)) => {
            let (after, indent) = match entries.last() {
                Some((last, _)) => (entry_lines(&lines, last).1, last.pos.column - 1),
                // An empty section (`sources:`): right below its key.
                None => (key.pos.line + 1, key.pos.column - 1 + 2),
            };
            Ok(lines.splice(after, after, &render_entry(name, v, indent)))
        }
        (None, None) => Err(no_such_entry(section, name)),
    }
}

fn no_such_entry(section: &str, name: &str) -> EditError {
    EditError::NoSuchEntry {
        section: section.to_owned(),
        name: name.to_owned(),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The document's root; an empty file is an empty mapping.
fn parse_root(text: &str) -> Result<Option<Node>, EditError> {
    match yaml::parse(text) {
        Ok((root, _)) => Ok(root.filter(|r| !r.is_null())),
        Err(p) => Err(EditError::Unparsable {
            line: p.pos.line,
            message: p.message,
        }),
    }
}

/// The key and value of `name` in the root mapping.
fn find_key<'n>(
    root: &'n Option<Node>,
    name: &str,
) -> Result<Option<(&'n Node, &'n Node)>, EditError> {
    let Some(root) = root else { return Ok(None) };
    let NodeKind::Map(entries) = &root.kind else {
        return Err(EditError::NotAMapping);
    };
    Ok(entries
        .iter()
        .find(|(k, _)| k.as_scalar() == Some(name))
        .map(|(k, v)| (k, v)))
}

/// The entries of a block-style section; none for an empty one.
fn section_entries<'n>(
    lines: &Lines,
    section: &str,
    key: &Node,
    body: &'n Node,
) -> Result<&'n [(Node, Node)], EditError> {
    if body.is_null() {
        return Ok(&[]);
    }
    let flow = lines.char_at(body.pos) == Some('{');
    match &body.kind {
        NodeKind::Map(entries) if !flow && all_own_lines(lines, entries) => Ok(entries),
        _ => Err(EditError::FlowStyle {
            section: section.to_owned(),
            line: key.pos.line,
        }),
    }
}

/// `{}` on the section key's line.
fn is_empty_flow(lines: &Lines, body: &Node) -> bool {
    matches!(&body.kind, NodeKind::Map(e) if e.is_empty()) && lines.char_at(body.pos) == Some('{')
}

/// Whether each key starts its line (only spaces before it), as in block
/// style: then the entry's lines are its key's line and the more indented
/// ones after it.
fn all_own_lines(lines: &Lines, entries: &[(Node, Node)]) -> bool {
    entries.iter().all(|(k, _)| {
        lines
            .line(k.pos.line)
            .chars()
            .take(k.pos.column - 1)
            .all(|c| c == ' ')
    })
}

/// The 1-based line range `[start, end)` of the entry whose key is `key`:
/// its key's line and every following line indented deeper, less the
/// blank and comment lines at its end (those belong to what follows).
fn entry_lines(lines: &Lines, key: &Node) -> (usize, usize) {
    let start = key.pos.line;
    let key_indent = key.pos.column - 1;
    let mut end = start + 1;
    let mut last_content = start;
    while end <= lines.count() {
        let line = lines.line(end);
        let trimmed = line.trim_start_matches(' ');
        let is_content = !trimmed.is_empty() && !trimmed.starts_with('#');
        if is_content {
            if line.len() - trimmed.len() <= key_indent {
                break;
            }
            last_content = end;
        }
        end += 1;
    }
    (start, last_content + 1)
}

/// `name: value` in block style, every line indented by `indent` spaces,
/// ending with a newline.
fn render_entry(name: &str, value: &serde_json::Value, indent: usize) -> String {
    let mut entry = Hash::new();
    entry.insert(Yaml::String(name.to_owned()), to_yaml(value));
    let mut out = String::new();
    YamlEmitter::new(&mut out)
        .dump(&Yaml::Hash(entry))
        .expect("writing to a String cannot fail");
    let body = out.strip_prefix("---\n").unwrap_or(&out);
    let pad = " ".repeat(indent);
    body.lines().map(|l| format!("{pad}{l}\n")).collect()
}

fn to_yaml(value: &serde_json::Value) -> Yaml {
    use serde_json::Value as J;
    match value {
        J::Null => Yaml::Null,
        J::Bool(b) => Yaml::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        J::String(s) => Yaml::String(s.clone()),
        J::Array(items) => Yaml::Array(items.iter().map(to_yaml).collect()),
        J::Object(map) => {
            let mut hash = Hash::new();
            for (k, v) in map {
                hash.insert(Yaml::String(k.clone()), to_yaml(v));
            }
            Yaml::Hash(hash)
        }
    }
}

/// A new section with one entry, at the end of the file.
fn append_section(text: &str, section: &str, name: &str, value: &serde_json::Value) -> String {
    let mut out = text.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(section);
    out.push_str(":\n");
    out.push_str(&render_entry(name, value, 2));
    out
}

/// The file's lines, addressed from 1 as the parser's positions are, each
/// with its line ending, so that splicing keeps the rest byte for byte.
struct Lines<'t> {
    lines: Vec<&'t str>,
}

impl<'t> Lines<'t> {
    fn new(text: &'t str) -> Self {
        Lines {
            lines: text.split_inclusive('\n').collect(),
        }
    }

    fn count(&self) -> usize {
        self.lines.len()
    }

    /// Line `n` (1-based) without its line ending; empty past the end.
    fn line(&self, n: usize) -> &'t str {
        self.lines
            .get(n - 1)
            .map_or("", |l| l.trim_end_matches(['\n', '\r']))
    }

    /// The character at a parser position (its column counts characters).
    fn char_at(&self, pos: yaml::Pos) -> Option<char> {
        self.line(pos.line).chars().nth(pos.column - 1)
    }

    /// The text with lines `[start, end)` replaced by `with`. A last line
    /// without a newline gets one before text is put after it.
    fn splice(&self, start: usize, end: usize, with: &str) -> String {
        let mut out = String::new();
        for l in &self.lines[..start - 1] {
            out.push_str(l);
        }
        if !with.is_empty() && !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(with);
        for l in &self.lines[(end - 1).min(self.lines.len())..] {
            out.push_str(l);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PROJECT: &str = "\
# Our CRM syncs.
sources:
  warehouse:   # the analytics database
    plugin: postgres
    config: { host: 127.0.0.1 }

  files:
    plugin: files
destinations:
  crm:
    plugin: hubspot
    # keep this under the portal's limit
    rate_limit: { requests: 10, per_ms: 1000 }

# Models below.
models:
  users:
    source: warehouse
    query: |
      select id, email
      from users
    primary_key: id
syncs: {}
";

    fn model_json() -> serde_json::Value {
        json!({"source": "files", "object": "people.csv", "primary_key": ["id"]})
    }

    #[test]
    fn replacing_an_entry_changes_only_its_lines() {
        let out = set_entry(
            PROJECT,
            "sources",
            "warehouse",
            Some(&json!({"plugin": "mysql"})),
        )
        .unwrap();
        let expected = PROJECT.replace(
            "  warehouse:   # the analytics database\n    plugin: postgres\n    config: { host: 127.0.0.1 }\n",
            "  warehouse:\n    plugin: mysql\n",
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn a_block_scalar_and_trailing_comments_are_handled_by_indentation() {
        let out = set_entry(PROJECT, "models", "users", Some(&model_json())).unwrap();
        assert!(!out.contains("select id"), "{out}");
        assert!(out.contains("# Models below.\nmodels:\n  users:\n    object: people.csv\n    primary_key:\n      - id\n    source: files\nsyncs: {}\n"), "{out}");
        // The comment at the end of `crm` belongs to what follows.
        let out = set_entry(PROJECT, "destinations", "crm", None).unwrap();
        assert!(out.contains("destinations:\n\n# Models below.\n"), "{out}");
    }

    #[test]
    fn a_new_entry_goes_after_the_sections_last_at_its_indentation() {
        let out = set_entry(
            PROJECT,
            "sources",
            "s3",
            Some(&json!({"plugin": "files", "grants": []})),
        )
        .unwrap();
        assert!(out.contains("  files:\n    plugin: files\n  s3:\n    grants: []\n    plugin: files\ndestinations:"), "{out}");
    }

    #[test]
    fn a_missing_section_is_added_at_the_end_and_an_empty_one_filled() {
        let out = set_entry(
            "sources:\n  a: { plugin: files }",
            "models",
            "m",
            Some(&model_json()),
        )
        .unwrap();
        assert_eq!(out, "sources:\n  a: { plugin: files }\nmodels:\n  m:\n    object: people.csv\n    primary_key:\n      - id\n    source: files\n");
        let out = set_entry(
            "models:\nsyncs:\n",
            "models",
            "m",
            Some(&json!({"source": "a"})),
        )
        .unwrap();
        assert_eq!(out, "models:\n  m:\n    source: a\nsyncs:\n");
        let out = set_entry("", "models", "m", Some(&json!({"source": "a"}))).unwrap();
        assert_eq!(out, "models:\n  m:\n    source: a\n");
    }

    #[test]
    fn an_empty_flow_section_becomes_a_block_one_with_its_first_entry() {
        let value = json!({"model": "users", "destination": "crm"});
        let out = set_entry(PROJECT, "syncs", "s", Some(&value)).unwrap();
        assert!(
            out.ends_with(
                "    primary_key: id\nsyncs:\n  s:\n    destination: crm\n    model: users\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn removing_the_last_line_of_a_file_without_a_newline_keeps_the_rest() {
        let text = "sources:\n  a: { plugin: files }\n  b: { plugin: files }";
        assert_eq!(
            set_entry(text, "sources", "b", None).unwrap(),
            "sources:\n  a: { plugin: files }\n"
        );
        assert_eq!(
            set_entry(text, "sources", "a", None).unwrap(),
            "sources:\n  b: { plugin: files }"
        );
    }

    #[test]
    fn values_that_yaml_would_misread_are_quoted_and_read_back_as_given() {
        let value = json!({"plugin": "webhook", "config": {
            "url": "${HOOK_URL}", "port": "8080", "on": "yes", "empty": "", "colon": "a: b",
            "hash": "# not a comment", "multi": "line one\nline two", "n": 1.5, "big": 18446744073709551615u64,
        }});
        let out = set_entry("", "destinations", "d", Some(&value)).unwrap();
        let (root, problems) = yaml::parse(&out).unwrap();
        assert!(problems.is_empty());
        let back = yaml_to_json(&root.unwrap());
        assert_eq!(
            back["destinations"]["d"]["config"]["port"],
            json!("8080"),
            "{out}"
        );
        assert_eq!(
            back["destinations"]["d"],
            json!({"plugin": "webhook", "config": {
                "url": "${HOOK_URL}", "port": "8080", "on": "yes", "empty": "", "colon": "a: b",
                "hash": "# not a comment", "multi": "line one\nline two", "n": "1.5", "big": "18446744073709551615",
            }}),
            "{out}"
        );
    }

    /// The parsed tree as JSON, scalars as text except strings the emitter
    /// quoted, so the test sees what a quoted value came back as.
    fn yaml_to_json(node: &Node) -> serde_json::Value {
        match &node.kind {
            NodeKind::Scalar { value, .. } => serde_json::Value::String(value.clone()),
            NodeKind::Seq(items) => items.iter().map(yaml_to_json).collect(),
            NodeKind::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.as_scalar().unwrap().to_owned(), yaml_to_json(v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    #[test]
    fn flow_sections_unknown_sections_and_missing_entries_are_refused() {
        let flow = "sources: { a: { plugin: files } }\n";
        assert_eq!(
            set_entry(flow, "sources", "b", Some(&json!({}))),
            Err(EditError::FlowStyle {
                section: "sources".into(),
                line: 1
            })
        );
        assert!(matches!(
            set_entry(PROJECT, "limits", "x", None),
            Err(EditError::UnknownSection { .. })
        ));
        assert_eq!(
            set_entry(PROJECT, "models", "nope", None),
            Err(EditError::NoSuchEntry {
                section: "models".into(),
                name: "nope".into()
            })
        );
        assert_eq!(
            set_entry(PROJECT, "models", "m", Some(&json!([1]))),
            Err(EditError::NotAnObject { found: "a list" })
        );
        assert!(matches!(
            set_entry("a: [", "models", "m", None),
            Err(EditError::Unparsable { .. })
        ));
        assert_eq!(
            set_entry("- a\n", "models", "m", None),
            Err(EditError::NotAMapping)
        );
    }
}
