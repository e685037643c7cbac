//! Request templates (minijinja, Jinja2 syntax): compiled once when a
//! writer opens, rendered per row or per group of rows. Undefined values
//! are errors, so a template naming a column the batch lacks says so
//! instead of sending an empty string.

use crate::config::{Per, RequestTemplate};
use minijinja::{Environment, UndefinedBehavior};
use sluice_sdk::prelude::*;
use std::collections::BTreeMap;

/// A request rendered for some rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub path: String,
    pub body: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

/// The templates of one write mode.
pub struct Templates {
    env: Environment<'static>,
    pub per: Per,
    pub method: String,
    pub content_type: String,
    pub max_rows: Option<usize>,
    has_body: bool,
    header_names: Vec<String>,
}

/// What a template sees besides the rows.
pub struct Target<'a> {
    pub object: &'a str,
    pub mode: &'a str,
    pub identifier: &'a str,
}

impl Templates {
    pub fn compile(
        mode: &str,
        request: &RequestTemplate,
        headers: &BTreeMap<String, String>,
    ) -> Result<Self, PluginError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Bodies are JSON or form text, never HTML.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        // `urlencode` (Jinja's) keeps `/`; an id inside a path segment
        // needs it escaped too.
        env.add_filter("segment", |value: String| {
            crate::auth::form_encode(&value).replace('+', "%20")
        });
        let add = |env: &mut Environment<'static>, name: String, source: &str, key: String| {
            env.add_template_owned(name, source.to_string())
                .map_err(|e| PluginError::Config(format!("`{key}` is not a valid template: {e}")))
        };
        add(
            &mut env,
            "path".into(),
            &request.path,
            format!("requests.{mode}.path"),
        )?;
        if let Some(body) = &request.body {
            add(
                &mut env,
                "body".into(),
                body,
                format!("requests.{mode}.body"),
            )?;
        }
        for (name, value) in headers {
            add(
                &mut env,
                format!("header:{name}"),
                value,
                format!("headers.{name}"),
            )?;
        }
        Ok(Templates {
            env,
            per: request.per,
            method: request.method.to_ascii_uppercase(),
            content_type: request.content_type.clone(),
            max_rows: request.max_rows,
            has_body: request.body.is_some(),
            header_names: headers.keys().cloned().collect(),
        })
    }

    /// Render the request for `rows` of `batch` (one row when per row).
    pub fn render(
        &self,
        batch: &Batch,
        rows: &[usize],
        target: &Target,
    ) -> Result<Rendered, String> {
        let json_rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|&i| serde_json::Value::Object(batch.row_json(i)))
            .collect();
        let context = match self.per {
            Per::Row => minijinja::context! {
                row => minijinja::Value::from_serialize(&json_rows[0]),
                object => target.object,
                mode => target.mode,
                identifier => target.identifier,
            },
            Per::Batch => minijinja::context! {
                rows => minijinja::Value::from_serialize(&json_rows),
                object => target.object,
                mode => target.mode,
                identifier => target.identifier,
            },
        };
        let render = |name: &str| -> Result<String, String> {
            let template = self.env.get_template(name).map_err(|e| e.to_string())?;
            template.render(&context).map_err(|e| describe(name, &e))
        };
        let path = render("path")?;
        let body = if self.has_body {
            let text = render("body")?;
            if self.content_type.contains("json") {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                    return Err(format!(
                        "the body template rendered invalid JSON ({e}); use `| tojson` for values: {}",
                        text.chars().take(200).collect::<String>()
                    ));
                }
            }
            Some(text.into_bytes())
        } else {
            None
        };
        let mut headers = Vec::with_capacity(self.header_names.len());
        for name in &self.header_names {
            headers.push((name.clone(), render(&format!("header:{name}"))?));
        }
        Ok(Rendered {
            path,
            body,
            headers,
        })
    }
}

/// A template error with its line, as minijinja reports it.
fn describe(name: &str, e: &minijinja::Error) -> String {
    let what = name
        .strip_prefix("header:")
        .map_or(name.to_string(), |h| format!("header `{h}`"));
    match e.line() {
        Some(line) => format!("the {what} template failed at line {line}: {e}"),
        None => format!("the {what} template failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        Batch {
            columns: vec!["id".into(), "email".into(), "ltv".into()],
            rows: vec![
                vec![
                    Value::Text("a/1".into()),
                    Value::Text("a@x.com".into()),
                    Value::Float(1.5),
                ],
                vec![Value::Text("b".into()), Value::Null, Value::Integer(2)],
            ],
        }
    }

    fn request(per: Per, path: &str, body: Option<&str>) -> RequestTemplate {
        RequestTemplate {
            per,
            method: "put".into(),
            path: path.into(),
            body: body.map(String::from),
            content_type: "application/json".into(),
            max_rows: None,
        }
    }

    const TARGET: Target = Target {
        object: "customers",
        mode: "upsert",
        identifier: "id",
    };

    #[test]
    fn a_row_renders_into_path_body_and_headers() {
        let headers = BTreeMap::from([("X-Object".to_string(), "{{ object }}".to_string())]);
        let t = Templates::compile(
            "upsert",
            &request(
                Per::Row,
                "/customers/{{ row.id | segment }}",
                Some(r#"{"email": {{ row.email | tojson }}, "ltv": {{ row.ltv }}}"#),
            ),
            &headers,
        )
        .unwrap();
        assert_eq!(t.method, "PUT");
        let r = t.render(&batch(), &[0], &TARGET).unwrap();
        assert_eq!(r.path, "/customers/a%2F1");
        let body: serde_json::Value = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"email": "a@x.com", "ltv": 1.5}));
        assert_eq!(
            r.headers,
            vec![("X-Object".to_string(), "customers".to_string())]
        );
        let r = t.render(&batch(), &[1], &TARGET).unwrap();
        assert!(String::from_utf8(r.body.unwrap())
            .unwrap()
            .contains("\"email\": null"));
    }

    #[test]
    fn a_batch_renders_its_rows() {
        let t = Templates::compile(
            "upsert",
            &request(Per::Batch, "/track", Some(r#"{"attributes": [{% for r in rows %}{"external_id": {{ r.id | tojson }}}{% if not loop.last %},{% endif %}{% endfor %}]}"#)),
            &BTreeMap::new(),
        )
        .unwrap();
        let r = t.render(&batch(), &[0, 1], &TARGET).unwrap();
        let body: serde_json::Value = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["attributes"][1]["external_id"], "b");
    }

    #[test]
    fn errors_name_the_template_and_what_was_wrong() {
        let bad = Templates::compile(
            "upsert",
            &request(Per::Row, "/{{ row.id ", None),
            &BTreeMap::new(),
        );
        assert!(format!("{:?}", bad.err().unwrap())
            .contains("`requests.upsert.path` is not a valid template"));

        let t = Templates::compile(
            "upsert",
            &request(Per::Row, "/{{ row.missing }}", None),
            &BTreeMap::new(),
        )
        .unwrap();
        let err = t.render(&batch(), &[0], &TARGET).unwrap_err();
        assert!(err.contains("the path template failed"), "{err}");
        assert!(err.contains("undefined"), "{err}");

        let t = Templates::compile(
            "upsert",
            &request(Per::Row, "/", Some("{\"email\": {{ row.email }}}")),
            &BTreeMap::new(),
        )
        .unwrap();
        let err = t.render(&batch(), &[0], &TARGET).unwrap_err();
        assert!(
            err.contains("invalid JSON") && err.contains("tojson"),
            "{err}"
        );
    }
}
