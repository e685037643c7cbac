//! Strings and values read from the project file, with `${ENV_VAR}`
//! interpolation and redaction of whatever came from the environment.

use std::collections::BTreeMap;
use std::fmt;

/// What `Debug` and `Display` print instead of an interpolated value.
pub const REDACTED: &str = "<redacted>";

/// A string from the project file. If any part of it came from an
/// environment variable it is secret: `Debug` and `Display` print
/// `<redacted>`, and only [`Str::expose`] gives the text.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Str {
    value: String,
    secret: bool,
}

impl Str {
    /// A non-secret string.
    pub fn plain(value: impl Into<String>) -> Self {
        Str {
            value: value.into(),
            secret: false,
        }
    }

    /// A string that must never be printed.
    pub fn secret(value: impl Into<String>) -> Self {
        Str {
            value: value.into(),
            secret: true,
        }
    }

    /// The real text. Call this only to hand the value to its consumer (a
    /// plugin's config, a query), never to log it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn is_secret(&self) -> bool {
        self.secret
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            f.write_str(REDACTED)
        } else {
            fmt::Debug::fmt(&self.value, f)
        }
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secret { REDACTED } else { &self.value })
    }
}

/// A value of a plugin's `config:` mapping (or a mapping's `constant:`).
/// Typed like YAML 1.2's core schema; a scalar that used `${...}` is always
/// a (secret) string, so a secret never turns into a printable number.
#[derive(Clone, PartialEq, Debug)]
pub enum ConfigValue {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    String(Str),
    List(Vec<ConfigValue>),
    Map(BTreeMap<String, ConfigValue>),
}

impl ConfigValue {
    /// The JSON document handed to the plugin, secrets included. This is the
    /// one sanctioned way secrets leave the config.
    pub fn to_plugin_json(&self) -> serde_json::Value {
        self.to_json_with(&|s| s.expose().to_owned())
    }

    /// The JSON document to show (an API's answer): each secret string is
    /// `<redacted>`.
    pub fn to_shown_json(&self) -> serde_json::Value {
        self.to_json_with(&|s| s.to_string())
    }

    fn to_json_with(&self, string: &dyn Fn(&Str) -> String) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            ConfigValue::Null => J::Null,
            ConfigValue::Bool(b) => J::Bool(*b),
            ConfigValue::Integer(i) => J::from(*i),
            ConfigValue::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            ConfigValue::String(s) => J::String(string(s)),
            ConfigValue::List(items) => {
                J::Array(items.iter().map(|i| i.to_json_with(string)).collect())
            }
            ConfigValue::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.to_json_with(string)))
                    .collect(),
            ),
        }
    }

    /// Every secret string inside the value (what came from `${ENV}`).
    pub fn secret_values(&self, out: &mut Vec<String>) {
        match self {
            ConfigValue::String(s) if s.is_secret() => out.push(s.expose().to_owned()),
            ConfigValue::List(items) => items.iter().for_each(|i| i.secret_values(out)),
            ConfigValue::Map(m) => m.values().for_each(|v| v.secret_values(out)),
            _ => {}
        }
    }

    /// Whether the value or anything inside it is secret.
    pub fn contains_secret(&self) -> bool {
        match self {
            ConfigValue::String(s) => s.is_secret(),
            ConfigValue::List(items) => items.iter().any(Self::contains_secret),
            ConfigValue::Map(m) => m.values().any(Self::contains_secret),
            _ => false,
        }
    }
}

/// A failure to interpolate one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolationError {
    Missing(String),
    Unterminated,
    BadName(String),
}

impl fmt::Display for InterpolationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterpolationError::Missing(name) => write!(f, "environment variable `{name}` is not set"),
            InterpolationError::Unterminated => f.write_str("`${` without a closing `}`"),
            InterpolationError::BadName(name) => write!(
                f,
                "`${{{name}}}` is not a valid environment variable name (letters, digits and `_`, not starting with a digit)"
            ),
        }
    }
}

/// Replaces every `${NAME}` with the variable's value; `$${` stands for a
/// literal `${`. Returns all errors of the string, so two missing variables
/// are both reported.
pub fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Str, Vec<InterpolationError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut secret = false;
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else {
                errors.push(InterpolationError::Unterminated);
                break;
            };
            let name = &tail[..end];
            rest = &tail[end + 1..];
            if !valid_name(name) {
                errors.push(InterpolationError::BadName(name.to_owned()));
                continue;
            }
            match env(name) {
                Some(v) => {
                    out.push_str(&v);
                    secret = true;
                }
                None => errors.push(InterpolationError::Missing(name.to_owned())),
            }
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    out.push_str(rest);
    Ok(Str { value: out, secret })
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr3t".into()),
            "HOST" => Some("db".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_and_marks_secret() {
        let s = interpolate("Bearer ${TOKEN}", &env).unwrap();
        assert_eq!(s.expose(), "Bearer s3cr3t");
        assert!(s.is_secret());
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
    }

    #[test]
    fn plain_text_is_not_secret() {
        let s = interpolate("cost $5 and $${LITERAL}", &env).unwrap();
        assert_eq!(s.expose(), "cost $5 and ${LITERAL}");
        assert!(!s.is_secret());
        assert_eq!(format!("{s:?}"), "\"cost $5 and ${LITERAL}\"");
    }

    #[test]
    fn reports_every_error() {
        let errs = interpolate("${A} ${HOST} ${B} ${1x}", &env).unwrap_err();
        assert_eq!(
            errs,
            vec![
                InterpolationError::Missing("A".into()),
                InterpolationError::Missing("B".into()),
                InterpolationError::BadName("1x".into()),
            ]
        );
        assert_eq!(
            interpolate("${OPEN", &env).unwrap_err(),
            vec![InterpolationError::Unterminated]
        );
    }

    #[test]
    fn debug_of_nested_config_hides_secrets() {
        let mut m = BTreeMap::new();
        m.insert(
            "password".to_owned(),
            ConfigValue::String(Str::secret("hunter2")),
        );
        m.insert("user".to_owned(), ConfigValue::String(Str::plain("app")));
        let v = ConfigValue::Map(m);
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("app"));
        assert!(v.contains_secret());
        assert_eq!(v.to_plugin_json()["password"], "hunter2");
    }
}
