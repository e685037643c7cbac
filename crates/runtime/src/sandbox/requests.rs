//! A plugin's requested capabilities, made concrete. A spec may ask for
//! `${config.url}` or `dir:${config.path}`; with the config in hand these
//! become grant patterns the operator can compare with what they granted.

use super::policy::{Grants, NetGrant};

/// Substitute `${config.KEY}` (top-level keys of the JSON config; absent
/// keys use the schema's default when it has one) and turn URLs into
/// `scheme://host:port` patterns.
pub fn resolve_requests(
    requests: &[String],
    config: &serde_json::Value,
    schema: &serde_json::Value,
) -> Vec<Result<String, String>> {
    requests
        .iter()
        .map(|r| resolve_one(r, config, schema))
        .collect()
}

fn resolve_one(
    request: &str,
    config: &serde_json::Value,
    schema: &serde_json::Value,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = request;
    while let Some(start) = rest.find("${config.") {
        out.push_str(&rest[..start]);
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
            serde_json::Value::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if out.starts_with("dir:") {
        return Ok(out);
    }
    if NetGrant::parse(&out).is_ok() {
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
}
