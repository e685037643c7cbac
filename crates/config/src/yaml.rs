//! A YAML node tree in which every node knows its line and column.
//!
//! Why yaml-rust2's event parser and not serde_yaml: `validate` must report
//! *every* problem with its position, including keys that are unknown and
//! values that are well-formed YAML but wrong. serde_yaml stops at the first
//! error and gives no positions for values it accepted, and it is deprecated.
//! yaml-rust2 is maintained, pure Rust, and its event stream carries a
//! marker for every scalar, sequence and mapping, from which this module
//! builds a small tree (`Node`). Anchors and aliases are resolved here;
//! duplicate keys are reported here.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in the project file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_marker(m: Marker) -> Self {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Pos {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    /// `plain` is false for quoted and block scalars, which are always
    /// strings; plain scalars may be null, booleans or numbers.
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in file order; keys are scalars.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
}

impl Node {
    /// The scalar's text when it is a scalar.
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// A plain scalar that YAML reads as null (`~`, `null`, or nothing).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { value, plain: true } if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// A word for "what this is" in messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } if self.is_null() => "null",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// A YAML-level problem: a syntax error (which ends parsing) or a
/// structural one found while building the tree.
#[derive(Debug, Clone)]
pub struct YamlProblem {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document. On a syntax error only that error is returned:
/// the parser cannot continue past it. Structural problems (duplicate keys,
/// non-scalar keys) are returned alongside the tree.
pub fn parse(text: &str) -> Result<(Option<Node>, Vec<YamlProblem>), YamlProblem> {
    let mut sink = Sink::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut sink, true).map_err(|e| YamlProblem {
        pos: Pos::from_marker(*e.marker()),
        message: format!("malformed YAML: {}", e.info()),
    })?;
    Builder::new(sink.events).document()
}

#[derive(Default)]
struct Sink {
    events: Vec<(Event, Marker)>,
}

impl MarkedEventReceiver for Sink {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.events.push((ev, mark));
    }
}

struct Builder {
    events: std::vec::IntoIter<(Event, Marker)>,
    anchors: HashMap<usize, Node>,
    problems: Vec<YamlProblem>,
}

impl Builder {
    fn new(events: Vec<(Event, Marker)>) -> Self {
        Builder {
            events: events.into_iter(),
            anchors: HashMap::new(),
            problems: Vec::new(),
        }
    }

    fn document(mut self) -> Result<(Option<Node>, Vec<YamlProblem>), YamlProblem> {
        let mut root = None;
        while let Some((ev, mark)) = self.events.next() {
            match ev {
                Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => {}
                Event::StreamEnd => break,
                ev if root.is_none() => root = Some(self.node(ev, mark)),
                _ => {
                    return Err(YamlProblem {
                        pos: Pos::from_marker(mark),
                        message: "the project file must hold a single YAML document".into(),
                    })
                }
            }
        }
        Ok((root, self.problems))
    }

    /// The next event inside a collection; `None` at the end of the stream
    /// (the parser only emits balanced streams, so that is never mid-node).
    fn next(&mut self) -> Option<(Event, Marker)> {
        self.events
            .next()
            .filter(|(ev, _)| !matches!(ev, Event::StreamEnd))
    }

    fn node(&mut self, ev: Event, mark: Marker) -> Node {
        let pos = Pos::from_marker(mark);
        let (node, anchor) = match ev {
            Event::Scalar(value, style, anchor, _) => {
                let plain = matches!(style, TScalarStyle::Plain);
                (
                    Node {
                        kind: NodeKind::Scalar { value, plain },
                        pos,
                    },
                    anchor,
                )
            }
            Event::SequenceStart(anchor, _) => (self.seq(pos), anchor),
            Event::MappingStart(anchor, _) => (self.map(pos), anchor),
            Event::Alias(id) => return self.alias(id, pos),
            _ => {
                let kind = NodeKind::Scalar {
                    value: String::new(),
                    plain: true,
                };
                (Node { kind, pos }, 0)
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        node
    }

    fn alias(&mut self, id: usize, pos: Pos) -> Node {
        match self.anchors.get(&id) {
            Some(n) => Node {
                kind: n.kind.clone(),
                pos,
            },
            None => {
                self.problem(pos, "alias refers to an unknown anchor".into());
                Node {
                    kind: NodeKind::Scalar {
                        value: String::new(),
                        plain: true,
                    },
                    pos,
                }
            }
        }
    }

    fn seq(&mut self, pos: Pos) -> Node {
        let mut items = Vec::new();
        loop {
            match self.next() {
                None | Some((Event::SequenceEnd, _)) => break,
                Some((ev, mark)) => items.push(self.node(ev, mark)),
            }
        }
        Node {
            kind: NodeKind::Seq(items),
            pos,
        }
    }

    fn map(&mut self, pos: Pos) -> Node {
        let mut entries: Vec<(Node, Node)> = Vec::new();
        let mut first_seen: HashMap<String, Pos> = HashMap::new();
        loop {
            let key = match self.next() {
                None | Some((Event::MappingEnd, _)) => break,
                Some((ev, mark)) => self.node(ev, mark),
            };
            let Some((ev, mark)) = self.next() else { break };
            let value = self.node(ev, mark);
            let Some(name) = key.as_scalar() else {
                self.problem(
                    key.pos,
                    format!("a key must be a plain name, found {}", key.describe()),
                );
                continue;
            };
            if let Some(first) = first_seen.get(name) {
                let msg = format!(
                    "duplicate key `{name}` (first defined at line {})",
                    first.line
                );
                self.problem(key.pos, msg);
                continue;
            }
            first_seen.insert(name.to_owned(), key.pos);
            entries.push((key, value));
        }
        Node {
            kind: NodeKind::Map(entries),
            pos,
        }
    }

    fn problem(&mut self, pos: Pos, message: String) {
        self.problems.push(YamlProblem { pos, message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let (root, problems) = parse("a:\n  b: 1\n").unwrap();
        assert!(problems.is_empty());
        let NodeKind::Map(top) = root.unwrap().kind else {
            panic!()
        };
        let NodeKind::Map(inner) = &top[0].1.kind else {
            panic!()
        };
        assert_eq!(inner[0].0.pos, Pos { line: 2, column: 3 });
        assert_eq!(inner[0].1.pos, Pos { line: 2, column: 6 });
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.message.starts_with("malformed YAML"), "{}", err.message);
        assert!(err.pos.line >= 1);
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let (_, problems) = parse("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].pos.line, 3);
        assert!(problems[0].message.contains("first defined at line 1"));
    }

    #[test]
    fn aliases_resolve() {
        let (root, _) = parse("x: &c {k: v}\ny: *c\n").unwrap();
        let NodeKind::Map(top) = root.unwrap().kind else {
            panic!()
        };
        assert!(matches!(top[1].1.kind, NodeKind::Map(_)));
        assert_eq!(top[1].1.pos.line, 2);
    }

    #[test]
    fn quoted_scalars_are_not_plain() {
        let (root, _) = parse("a: 'true'\nb: true\n").unwrap();
        let NodeKind::Map(top) = root.unwrap().kind else {
            panic!()
        };
        assert!(matches!(
            top[0].1.kind,
            NodeKind::Scalar { plain: false, .. }
        ));
        assert!(matches!(
            top[1].1.kind,
            NodeKind::Scalar { plain: true, .. }
        ));
    }
}
