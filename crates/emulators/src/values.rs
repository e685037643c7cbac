//! Field value checks shared by both emulators: email syntax, numbers, dates,
//! lengths and option lists. Each returns the normalized value to store, or the
//! kind of problem, which each API turns into its own error code and message.

use chrono::{DateTime, NaiveDate};
use serde_json::{Number, Value};

use crate::schema::{FieldSpec, FieldType};

/// Why a value does not fit its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ValueProblem {
    InvalidEmail,
    WrongType,
    TooLong(usize),
    NotAnOption,
    MalformedId,
}

/// Checks `value` against `field` and returns the value to store. Null passes here;
/// required-ness is checked by the caller, which knows whether it is a create.
pub(crate) fn check_value(field: &FieldSpec, value: &Value) -> Result<Value, ValueProblem> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    match field.field_type {
        FieldType::Boolean => to_bool(value).map(Value::Bool),
        t if t.is_numeric() => to_number(value, t == FieldType::Int).map(Value::Number),
        FieldType::Date => text_of(value)
            .filter(|s| is_date(s))
            .map(Value::String)
            .ok_or(ValueProblem::WrongType),
        FieldType::DateTime => text_of(value)
            .filter(|s| is_datetime(s))
            .map(Value::String)
            .ok_or(ValueProblem::WrongType),
        _ => check_text(field, value),
    }
}

fn check_text(field: &FieldSpec, value: &Value) -> Result<Value, ValueProblem> {
    let text = text_of(value).ok_or(ValueProblem::WrongType)?;
    if let Some(max) = field.max_length {
        if text.chars().count() > max {
            return Err(ValueProblem::TooLong(max));
        }
    }
    if text.is_empty() {
        return Ok(Value::String(text));
    }
    match field.field_type {
        FieldType::Email if !is_valid_email(&text) => Err(ValueProblem::InvalidEmail),
        FieldType::Reference | FieldType::Id if !looks_like_record_id(&text) => {
            Err(ValueProblem::MalformedId)
        }
        FieldType::Picklist
            if !field.options.is_empty() && !field.options.iter().any(|o| o == &text) =>
        {
            Err(ValueProblem::NotAnOption)
        }
        _ => Ok(Value::String(text)),
    }
}

/// Text form of a scalar; objects and arrays have none.
pub(crate) fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn to_bool(value: &Value) -> Result<bool, ValueProblem> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ValueProblem::WrongType),
    }
}

fn to_number(value: &Value, integer: bool) -> Result<Number, ValueProblem> {
    let number = match value {
        Value::Number(n) => n.clone(),
        Value::String(s) => parse_number(s.trim()).ok_or(ValueProblem::WrongType)?,
        _ => return Err(ValueProblem::WrongType),
    };
    if integer && !(number.is_i64() || number.is_u64()) {
        return Err(ValueProblem::WrongType);
    }
    Ok(number)
}

fn parse_number(s: &str) -> Option<Number> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Number::from(i));
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .and_then(Number::from_f64)
}

fn is_date(s: &str) -> bool {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() || is_epoch_millis(s)
}

fn is_datetime(s: &str) -> bool {
    DateTime::parse_from_rfc3339(s).is_ok()
        || DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z").is_ok()
        || is_epoch_millis(s)
}

/// HubSpot accepts dates as epoch milliseconds.
fn is_epoch_millis(s: &str) -> bool {
    !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A Salesforce-style id: 15 or 18 alphanumeric characters; HubSpot ids are digits.
fn looks_like_record_id(s: &str) -> bool {
    let alnum = s.bytes().all(|b| b.is_ascii_alphanumeric());
    alnum && (s.len() == 15 || s.len() == 18 || s.bytes().all(|b| b.is_ascii_digit()))
}

/// Pragmatic email syntax check: one `@`, a dot-atom local part, and a domain of at
/// least two labels with an alphabetic top-level label of two or more letters.
pub fn is_valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    valid_local_part(local) && valid_domain(domain)
}

fn valid_local_part(local: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+/=?^_`{|}~.-";
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c))
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let Some(tld) = labels.last() else {
        return false;
    };
    labels.len() >= 2
        && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_syntax() {
        for good in [
            "a@b.co",
            "first.last+tag@sub.example.com",
            "x_y@ex-ample.org",
        ] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in [
            "",
            "plain",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            ".a@b.com",
            "a@b.c",
            "a@-b.com",
            "a@b.c0m",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn numbers_and_dates() {
        let f = FieldSpec::new("n", FieldType::Int);
        assert_eq!(check_value(&f, &Value::from("12")), Ok(Value::from(12)));
        assert_eq!(
            check_value(&f, &Value::from("1.5")),
            Err(ValueProblem::WrongType)
        );
        let d = FieldSpec::new("d", FieldType::Date);
        assert!(check_value(&d, &Value::from("2024-02-29")).is_ok());
        assert_eq!(
            check_value(&d, &Value::from("2023-02-29")),
            Err(ValueProblem::WrongType)
        );
    }
}
