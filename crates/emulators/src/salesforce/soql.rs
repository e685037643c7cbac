//! The SOQL subset the emulator answers: parsing and evaluation against stored
//! records.
//!
//! Grammar (keywords case-insensitive, as in SOQL):
//!
//! ```text
//! SELECT (COUNT() | field {, field}) FROM object
//!   [WHERE condition] [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST] {, …}]
//!   [LIMIT n] [OFFSET n]
//! condition := term {OR term};  term := factor {AND factor}
//! factor    := NOT factor | ( condition ) | field op literal
//!            | field [NOT] IN ( literal {, literal} )
//! op        := = | != | <> | < | <= | > | >=
//! literal   := 'text' (backslash escapes) | number | true | false | null
//! ```
//!
//! Hand-written: no maintained Rust crate parses SOQL, and `sqlparser` (used by
//! the Snowflake emulator) accepts a different language (no backslash escapes in
//! its ANSI dialects, SQL's `*`, joins) whose errors would not carry
//! Salesforce's `ERROR at Row:1:Column:N` positions. Relationship paths
//! (`Account.Name`), subqueries, date literals, `LIKE`, `GROUP BY` and
//! aggregate functions other than `COUNT()` are outside the subset and answer
//! `MALFORMED_QUERY` or `INVALID_FIELD`.

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// Which error code a query problem maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// `MALFORMED_QUERY`: the text does not parse.
    Malformed,
    /// `INVALID_FIELD`: a field the object does not have.
    InvalidField,
    /// `INVALID_TYPE`: an object that does not exist.
    InvalidType,
}

impl ErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Malformed => "MALFORMED_QUERY",
            ErrorKind::InvalidField => "INVALID_FIELD",
            ErrorKind::InvalidType => "INVALID_TYPE",
        }
    }
}

/// A query problem at a character offset of the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SoqlError {
    pub kind: ErrorKind,
    pub offset: usize,
    pub detail: String,
}

impl SoqlError {
    fn malformed(offset: usize, detail: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Malformed,
            offset,
            detail: detail.into(),
        }
    }

    /// Salesforce's message: the query's line, a caret under the column, the
    /// position, then the detail.
    pub fn message(&self, query: &str) -> String {
        let before: String = query.chars().take(self.offset).collect();
        let row = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        let line = query.lines().nth(row - 1).unwrap_or_default();
        format!(
            "\n{line}\n{caret:>width$}\nERROR at Row:{row}:Column:{column}\n{detail}",
            caret = "^",
            width = column,
            detail = self.detail
        )
    }
}

/// A literal value in a condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A field name and where it appears in the query (for error positions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldRef {
    pub name: String,
    pub offset: usize,
}

/// A WHERE condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Condition {
    Compare {
        field: FieldRef,
        op: CompareOp,
        value: Literal,
    },
    In {
        field: FieldRef,
        values: Vec<Literal>,
        negated: bool,
    },
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
}

/// What the SELECT list asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Selection {
    Count,
    Fields(Vec<FieldRef>),
}

/// One ORDER BY key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OrderKey {
    pub field: FieldRef,
    pub descending: bool,
    pub nulls_last: bool,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub selection: Selection,
    pub object: String,
    pub object_offset: usize,
    pub filter: Option<Condition>,
    pub order_by: Vec<OrderKey>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

impl Query {
    /// Every field the query names, for validation against the object.
    pub fn fields(&self) -> Vec<&FieldRef> {
        let mut out = Vec::new();
        if let Selection::Fields(fields) = &self.selection {
            out.extend(fields);
        }
        if let Some(filter) = &self.filter {
            filter.collect_fields(&mut out);
        }
        out.extend(self.order_by.iter().map(|k| &k.field));
        out
    }
}

impl Condition {
    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a FieldRef>) {
        match self {
            Condition::Compare { field, .. } | Condition::In { field, .. } => out.push(field),
            Condition::And(a, b) | Condition::Or(a, b) => {
                a.collect_fields(out);
                b.collect_fields(out);
            }
            Condition::Not(inner) => inner.collect_fields(out),
        }
    }

    /// Whether `record` (field name -> value, canonical names) satisfies this.
    pub fn matches(&self, record: &Map<String, Value>) -> bool {
        match self {
            Condition::Compare { field, op, value } => {
                compare_matches(record.get(&field.name), *op, value)
            }
            Condition::In {
                field,
                values,
                negated,
            } => {
                let stored = record.get(&field.name);
                let found = values
                    .iter()
                    .any(|v| compare_matches(stored, CompareOp::Eq, v));
                found != *negated
            }
            Condition::And(a, b) => a.matches(record) && b.matches(record),
            Condition::Or(a, b) => a.matches(record) || b.matches(record),
            Condition::Not(inner) => !inner.matches(record),
        }
    }

    /// Renames every field reference (to the object's canonical spelling).
    pub fn canonicalize(&mut self, canonical: &dyn Fn(&str) -> String) {
        match self {
            Condition::Compare { field, .. } | Condition::In { field, .. } => {
                field.name = canonical(&field.name)
            }
            Condition::And(a, b) | Condition::Or(a, b) => {
                a.canonicalize(canonical);
                b.canonicalize(canonical);
            }
            Condition::Not(inner) => inner.canonicalize(canonical),
        }
    }
}

fn is_null(value: Option<&Value>) -> bool {
    value.is_none_or(Value::is_null)
}

/// SOQL comparison: text compares case-insensitively, numbers numerically,
/// and only `=`/`!=` apply to null.
fn compare_matches(stored: Option<&Value>, op: CompareOp, literal: &Literal) -> bool {
    if *literal == Literal::Null || is_null(stored) {
        let both_null = *literal == Literal::Null && is_null(stored);
        return match op {
            CompareOp::Eq => both_null,
            CompareOp::Ne => !both_null,
            _ => false,
        };
    }
    let Some(ordering) = stored.and_then(|v| compare_value(v, literal)) else {
        return op == CompareOp::Ne;
    };
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
    }
}

fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Orders a stored (non-null) value against a literal; `None` when they cannot
/// be compared (e.g. text against a boolean).
fn compare_value(stored: &Value, literal: &Literal) -> Option<Ordering> {
    match literal {
        Literal::Text(text) => {
            let stored = match stored {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some(compare_text(&stored, text))
        }
        Literal::Number(n) => number_of(stored)?.partial_cmp(n),
        Literal::Bool(b) => match stored {
            Value::Bool(s) => Some(s.cmp(b)),
            Value::String(s) => s.parse::<bool>().ok().map(|s| s.cmp(b)),
            _ => None,
        },
        Literal::Null => None,
    }
}

/// Text order and equality ignore case, as SOQL's do. Record ids compare in
/// their 18-character form, so a 15-character id literal finds its record.
fn compare_text(stored: &str, literal: &str) -> Ordering {
    let literal = match (stored.len(), literal.len()) {
        (18, 15) => super::ids::normalize(literal).unwrap_or_else(|| literal.to_owned()),
        _ => literal.to_owned(),
    };
    stored.to_lowercase().cmp(&literal.to_lowercase())
}

/// Orders two stored values for ORDER BY (nulls handled by the caller).
pub(crate) fn order_values(a: &Value, b: &Value) -> Ordering {
    match (number_of_strict(a), number_of_strict(b)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => match (a, b) {
            (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
            _ => text_key(a).cmp(&text_key(b)),
        },
    }
}

fn number_of_strict(value: &Value) -> Option<f64> {
    value.as_f64()
}

fn text_key(value: &Value) -> String {
    match value {
        Value::String(s) => s.to_lowercase(),
        other => other.to_string(),
    }
}

/// Sorts rows by the ORDER BY keys (nulls first ascending, last descending,
/// unless NULLS FIRST/LAST says otherwise), stable for equal keys.
pub(crate) fn sort_rows(rows: &mut [Map<String, Value>], keys: &[OrderKey]) {
    rows.sort_by(|a, b| {
        for key in keys {
            let x = a.get(&key.field.name).filter(|v| !v.is_null());
            let y = b.get(&key.field.name).filter(|v| !v.is_null());
            let ordering = match (x, y) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) if key.nulls_last => Ordering::Greater,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) if key.nulls_last => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) if key.descending => order_values(y, x),
                (Some(x), Some(y)) => order_values(x, y),
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    });
}

// ---------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64),
    Symbol(&'static str),
    End,
}

#[derive(Debug, Clone)]
struct Spanned {
    token: Token,
    offset: usize,
    text: String,
}

fn tokenize(query: &str) -> Result<Vec<Spanned>, SoqlError> {
    let chars: Vec<char> = query.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let token = if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || "_.".contains(chars[i])) {
                i += 1;
            }
            Token::Word(chars[start..i].iter().collect())
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let number = text
                .parse()
                .map_err(|_| SoqlError::malformed(start, format!("unexpected token: '{text}'")))?;
            Token::Number(number)
        } else if c == '\'' {
            let (text, end) = string_literal(&chars, start)?;
            i = end;
            Token::Text(text)
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let symbol = ["!=", "<>", "<=", ">="]
                .into_iter()
                .find(|s| *s == two)
                .or_else(|| {
                    ["(", ")", ",", "=", "<", ">"]
                        .into_iter()
                        .find(|s| s.starts_with(c))
                })
                .ok_or_else(|| SoqlError::malformed(start, format!("unexpected token: '{c}'")))?;
            i += symbol.len();
            Token::Symbol(symbol)
        };
        out.push(Spanned {
            token,
            offset: start,
            text: chars[start..i].iter().collect(),
        });
    }
    out.push(Spanned {
        token: Token::End,
        offset: chars.len(),
        text: "<EOF>".to_owned(),
    });
    Ok(out)
}

/// A quoted string from `start` (the opening quote): the text and the offset
/// after the closing quote. SOQL escapes: `\'`, `\"`, `\\`, `\n`, `\r`, `\t`,
/// `\b`, `\f`, `\_`, `\%`.
fn string_literal(chars: &[char], start: usize) -> Result<(String, usize), SoqlError> {
    let mut text = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\'' => return Ok((text, i + 1)),
            '\\' => {
                let escaped = chars.get(i + 1).copied().ok_or_else(|| {
                    SoqlError::malformed(i, "unterminated escape sequence at the end of the query")
                })?;
                let unescaped = match escaped {
                    'n' => "\n".to_owned(),
                    'r' => "\r".to_owned(),
                    't' => "\t".to_owned(),
                    'b' => "\u{8}".to_owned(),
                    'f' => "\u{c}".to_owned(),
                    '\'' | '"' | '\\' => escaped.to_string(),
                    // LIKE wildcards stay escaped: they only mean something there.
                    '_' | '%' => format!("\\{escaped}"),
                    other => {
                        return Err(SoqlError::malformed(
                            i,
                            format!("Invalid string literal: invalid escape sequence '\\{other}'"),
                        ))
                    }
                };
                text.push_str(&unescaped);
                i += 2;
            }
            other => {
                text.push(other);
                i += 1;
            }
        }
    }
    Err(SoqlError::malformed(
        start,
        "unexpected token: unterminated string literal",
    ))
}

// ---------------------------------------------------------------------------
// Parser

struct Parser {
    tokens: Vec<Spanned>,
    pos: usize,
}

/// Parses `query` into the supported subset.
pub(crate) fn parse(query: &str) -> Result<Query, SoqlError> {
    let mut parser = Parser {
        tokens: tokenize(query)?,
        pos: 0,
    };
    let parsed = parser.query()?;
    parser.expect_end()?;
    Ok(parsed)
}

impl Parser {
    fn peek(&self) -> &Spanned {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> Spanned {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        token
    }

    fn unexpected(&self) -> SoqlError {
        let token = self.peek();
        SoqlError::malformed(token.offset, format!("unexpected token: '{}'", token.text))
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        matches!(&self.peek().token, Token::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.at_keyword(keyword);
        if found {
            self.advance();
        }
        found
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<(), SoqlError> {
        if self.eat_keyword(keyword) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let found = matches!(self.peek().token, Token::Symbol(s) if s == symbol);
        if found {
            self.advance();
        }
        found
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<(), SoqlError> {
        if self.eat_symbol(symbol) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn expect_end(&self) -> Result<(), SoqlError> {
        match self.peek().token {
            Token::End => Ok(()),
            _ => Err(self.unexpected()),
        }
    }

    /// A field or object name (not a reserved word).
    fn identifier(&mut self) -> Result<FieldRef, SoqlError> {
        match &self.peek().token {
            Token::Word(w) if !is_reserved(w) => {
                let name = w.clone();
                let offset = self.advance().offset;
                Ok(FieldRef { name, offset })
            }
            _ => Err(self.unexpected()),
        }
    }

    fn query(&mut self) -> Result<Query, SoqlError> {
        self.expect_keyword("SELECT")?;
        let selection = self.selection()?;
        self.expect_keyword("FROM")?;
        let object = self.identifier()?;
        let filter = if self.eat_keyword("WHERE") {
            Some(self.condition()?)
        } else {
            None
        };
        let order_by = if self.eat_keyword("ORDER") {
            self.expect_keyword("BY")?;
            self.order_keys()?
        } else {
            Vec::new()
        };
        let limit = if self.eat_keyword("LIMIT") {
            Some(self.count()?)
        } else {
            None
        };
        let offset = if self.eat_keyword("OFFSET") {
            Some(self.count()?)
        } else {
            None
        };
        Ok(Query {
            selection,
            object: object.name,
            object_offset: object.offset,
            filter,
            order_by,
            limit,
            offset,
        })
    }

    fn selection(&mut self) -> Result<Selection, SoqlError> {
        if self.at_keyword("COUNT")
            && self.tokens.get(self.pos + 1).map(|t| &t.token) == Some(&Token::Symbol("("))
        {
            self.advance();
            self.expect_symbol("(")?;
            self.expect_symbol(")")?;
            return Ok(Selection::Count);
        }
        let mut fields = vec![self.identifier()?];
        while self.eat_symbol(",") {
            fields.push(self.identifier()?);
        }
        Ok(Selection::Fields(fields))
    }

    fn order_keys(&mut self) -> Result<Vec<OrderKey>, SoqlError> {
        let mut keys = Vec::new();
        loop {
            let field = self.identifier()?;
            let descending = if self.eat_keyword("DESC") {
                true
            } else {
                self.eat_keyword("ASC");
                false
            };
            let nulls_last = if self.eat_keyword("NULLS") {
                if self.eat_keyword("LAST") {
                    true
                } else {
                    self.expect_keyword("FIRST")?;
                    false
                }
            } else {
                descending
            };
            keys.push(OrderKey {
                field,
                descending,
                nulls_last,
            });
            if !self.eat_symbol(",") {
                return Ok(keys);
            }
        }
    }

    fn count(&mut self) -> Result<usize, SoqlError> {
        match self.peek().token {
            Token::Number(n) if n >= 0.0 && n.fract() == 0.0 => {
                self.advance();
                Ok(n as usize)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn condition(&mut self) -> Result<Condition, SoqlError> {
        let mut left = self.term()?;
        while self.eat_keyword("OR") {
            let right = self.term()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Condition, SoqlError> {
        let mut left = self.factor()?;
        while self.eat_keyword("AND") {
            let right = self.factor()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Condition, SoqlError> {
        if self.eat_keyword("NOT") {
            return Ok(Condition::Not(Box::new(self.factor()?)));
        }
        if self.eat_symbol("(") {
            let inner = self.condition()?;
            self.expect_symbol(")")?;
            return Ok(inner);
        }
        let field = self.identifier()?;
        if self.eat_keyword("NOT") {
            self.expect_keyword("IN")?;
            return Ok(Condition::In {
                field,
                values: self.literal_list()?,
                negated: true,
            });
        }
        if self.eat_keyword("IN") {
            return Ok(Condition::In {
                field,
                values: self.literal_list()?,
                negated: false,
            });
        }
        let op = self.operator()?;
        let value = self.literal()?;
        Ok(Condition::Compare { field, op, value })
    }

    fn operator(&mut self) -> Result<CompareOp, SoqlError> {
        let op = match self.peek().token {
            Token::Symbol("=") => CompareOp::Eq,
            Token::Symbol("!=") | Token::Symbol("<>") => CompareOp::Ne,
            Token::Symbol("<") => CompareOp::Lt,
            Token::Symbol("<=") => CompareOp::Le,
            Token::Symbol(">") => CompareOp::Gt,
            Token::Symbol(">=") => CompareOp::Ge,
            _ => return Err(self.unexpected()),
        };
        self.advance();
        Ok(op)
    }

    fn literal_list(&mut self) -> Result<Vec<Literal>, SoqlError> {
        self.expect_symbol("(")?;
        let mut values = vec![self.literal()?];
        while self.eat_symbol(",") {
            values.push(self.literal()?);
        }
        self.expect_symbol(")")?;
        Ok(values)
    }

    fn literal(&mut self) -> Result<Literal, SoqlError> {
        let literal = match &self.peek().token {
            Token::Text(t) => Literal::Text(t.clone()),
            Token::Number(n) => Literal::Number(*n),
            Token::Word(w) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Token::Word(w) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Token::Word(w) if w.eq_ignore_ascii_case("null") => Literal::Null,
            _ => return Err(self.unexpected()),
        };
        self.advance();
        Ok(literal)
    }
}

/// Words that cannot name a field or object.
fn is_reserved(word: &str) -> bool {
    const RESERVED: &[&str] = &[
        "select", "from", "where", "and", "or", "not", "in", "order", "by", "limit", "offset",
        "asc", "desc", "nulls", "null", "true", "false", "group", "having", "like",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn field(name: &str, offset: usize) -> FieldRef {
        FieldRef {
            name: name.to_owned(),
            offset,
        }
    }

    #[test]
    fn parses_the_lookup_query_the_salesforce_plugin_sends() {
        let q = parse("SELECT Id, Ext__c FROM Contact WHERE Ext__c IN ('a','b\\'c')").unwrap();
        assert_eq!(
            q.selection,
            Selection::Fields(vec![field("Id", 7), field("Ext__c", 11)])
        );
        assert_eq!(q.object, "Contact");
        assert_eq!(
            q.filter,
            Some(Condition::In {
                field: field("Ext__c", 37),
                values: vec![Literal::Text("a".into()), Literal::Text("b'c".into())],
                negated: false,
            })
        );
    }

    #[test]
    fn parses_order_limit_offset_count_and_precedence() {
        let q = parse(
            "select Name from Account where Industry = 'Tech' and (NumberOfEmployees >= 10 or Phone = null) order by Name desc, Id limit 5 offset 2",
        )
        .unwrap();
        assert_eq!(q.limit, Some(5));
        assert_eq!(q.offset, Some(2));
        assert_eq!(q.order_by.len(), 2);
        assert!(q.order_by[0].descending && q.order_by[0].nulls_last);
        assert!(!q.order_by[1].descending && !q.order_by[1].nulls_last);
        assert!(matches!(q.filter, Some(Condition::And(_, _))));
        assert_eq!(
            parse("SELECT COUNT() FROM Contact").unwrap().selection,
            Selection::Count
        );
    }

    #[test]
    fn malformed_queries_point_at_the_offending_token() {
        let query = "SELECT Id FROM Account WHERE";
        let err = parse(query).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Malformed);
        assert_eq!(
            err.message(query),
            "\nSELECT Id FROM Account WHERE\n                            ^\nERROR at Row:1:Column:29\nunexpected token: '<EOF>'"
        );
        for bad in [
            "",
            "SELECT FROM Account",
            "SELECT Id Account",
            "SELECT Id FROM Account WHERE Name = 'open",
            "SELECT Id FROM Account LIMIT -1",
            "SELECT Id FROM Account WHERE Name IN ()",
            "SELECT Id FROM Account WHERE Name ~ 'x'",
            "SELECT Id FROM Account extra",
        ] {
            assert_eq!(parse(bad).unwrap_err().kind, ErrorKind::Malformed, "{bad}");
        }
    }

    #[test]
    fn conditions_follow_soql_semantics() {
        let r = record(json!({"Name": "Acme", "Employees": 12, "Active": true, "Phone": null}));
        let check = |where_: &str| {
            parse(&format!("SELECT Id FROM X WHERE {where_}"))
                .unwrap()
                .filter
                .unwrap()
                .matches(&r)
        };
        assert!(check("Name = 'ACME'"), "text equality ignores case");
        assert!(check("Name != 'Other'"));
        assert!(check("Employees = 12 AND Active = true"));
        assert!(check("Employees > 10 AND Employees <= 12"));
        assert!(!check("Employees < 12"));
        assert!(check("Phone = null"));
        assert!(check("Missing = null"));
        assert!(!check("Name = null"));
        assert!(check("Name != null"));
        assert!(check("Name IN ('x', 'acme')"));
        assert!(check("Name NOT IN ('x', 'y')"));
        assert!(check("Name = 'x' OR Employees = 12"));
        assert!(!check("NOT (Name = 'acme')"));
        assert!(!check("Phone > 1"), "null never orders");
    }

    #[test]
    fn sorting_puts_nulls_where_soql_does() {
        let mut rows: Vec<Map<String, Value>> = [json!({"N": "b"}), json!({}), json!({"N": "A"})]
            .into_iter()
            .map(record)
            .collect();
        let q = parse("SELECT N FROM X ORDER BY N").unwrap();
        sort_rows(&mut rows, &q.order_by);
        let names: Vec<Option<&str>> = rows
            .iter()
            .map(|r| r.get("N").and_then(Value::as_str))
            .collect();
        assert_eq!(names, vec![None, Some("A"), Some("b")]);
        let q = parse("SELECT N FROM X ORDER BY N DESC").unwrap();
        sort_rows(&mut rows, &q.order_by);
        let names: Vec<Option<&str>> = rows
            .iter()
            .map(|r| r.get("N").and_then(Value::as_str))
            .collect();
        assert_eq!(names, vec![Some("b"), Some("A"), None]);
    }
}
