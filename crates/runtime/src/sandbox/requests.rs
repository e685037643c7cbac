//! A plugin's requested capabilities, made concrete. A spec may ask for
//! `${config.url}` or `dir:${config.path}`; with the config in hand these
//! become grant patterns the operator can compare with what they granted.

use super::policy::{Grants, NetGrant};

/// Substitute `${config.KEY}` (top-level keys of the JSON config; absent
/// keys use the schema's default when it has one) and turn URLs into
/// `scheme://host:port` patterns. A key whose value is a list stands for one
/// request per element (none for an empty list), so a plugin can let the
/// operator say which hosts it needs (`${config.api_hosts}`).
pub fn resolve_requests(
    requests: &[String],
    config: &serde_json::Value,
    schema: &serde_json::Value,
) -> Vec<Result<String, String>> {
    requests
        .iter()
        .flat_map(|r| match expand(r, config, schema) {
            Ok(texts) => texts.into_iter().map(|t| to_pattern(r, t)).collect(),
            Err(e) => vec![Err(e)],
        })
        .collect()
}

/// The request with its placeholders filled: one text per element of a
/// list-valued key (a request may use one such key).
fn expand(
    request: &str,
    config: &serde_json::Value,
    schema: &serde_json::Value,
) -> Result<Vec<String>, String> {
    let mut outs = vec![String::new()];
    let mut rest = request;
    let mut listed = false;
    while let Some(start) = rest.find("${config.") {
        for out in &mut outs {
            out.push_str(&rest[..start]);
        }
        let after = &rest[start + "${config.".len()..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`{request}`: unclosed ${{config.…}}"))?;
        let key = &after[..end];
        let value = config
            .get(key)
            .or_else(|| schema.pointer(&format!("/properties/{key}/default")))
            .ok_or_else(|| format!("`{request}` needs config key `{key}`, which is not set"))?;
        match value {
            serde_json::Value::Array(items) if !listed => {
                listed = true;
                let base = outs.pop().unwrap_or_default();
                outs = items.iter().map(|i| format!("{base}{}", text(i))).collect();
            }
            serde_json::Value::Array(_) => {
                return Err(format!(
                    "`{request}` uses more than one list-valued config key"
                ))
            }
            other => {
                for out in &mut outs {
                    out.push_str(&text(other));
                }
            }
        }
        rest = &after[end + 1..];
    }
    for out in &mut outs {
        out.push_str(rest);
    }
    Ok(outs)
}

fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A filled-in request as a grant pattern.
fn to_pattern(request: &str, out: String) -> Result<String, String> {
    if out.starts_with("dir:") || NetGrant::parse(&out).is_ok() {
        return Ok(out);
    }
    Grants::pattern_for_url(&out).ok_or_else(|| {
        format!("`{request}` resolved to `{out}`, which is not a URL or grant pattern")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn substitutes_config_and_schema_defaults() {
        let schema = json!({"properties": {"port": {"default": 5432}}});
        let config =
            json!({"url": "https://hooks.example.com/in?x=1", "host": "db", "path": "/data"});
        let got = resolve_requests(
            &[
                "${config.url}".into(),
                "postgres://${config.host}:${config.port}".into(),
                "dir:${config.path}".into(),
            ],
            &config,
            &schema,
        );
        assert_eq!(got[0].as_deref(), Ok("https://hooks.example.com:443"));
        assert_eq!(got[1].as_deref(), Ok("postgres://db:5432"));
        assert_eq!(got[2].as_deref(), Ok("dir:/data"));
        let missing = resolve_requests(&["${config.nope}".into()], &config, &schema);
        assert!(missing[0].as_ref().unwrap_err().contains("`nope`"));
    }

    #[test]
    fn a_list_valued_key_is_one_request_per_element() {
        let schema =
            json!({"properties": {"hosts": {"default": ["https://*.a.com", "https://b.com/x"]}}});
        let got = resolve_requests(&["${config.hosts}".into()], &json!({}), &schema);
        assert_eq!(
            got,
            [
                Ok("https://*.a.com".to_string()),
                Ok("https://b.com:443".to_string())
            ]
        );
        let none = resolve_requests(&["${config.hosts}".into()], &json!({"hosts": []}), &schema);
        assert!(none.is_empty());
    }
}
