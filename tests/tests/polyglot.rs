//! Plugins written in Python (componentize-py) and JavaScript
//! (componentize-js), run in the real host: the `normalise` transforms over a
//! batch with per-row errors, the `http-post` destinations against a local
//! receiver with a grant, and the same destinations without a grant.
//!
//! The components are built by `scripts/build-polyglot.sh` into
//! `target/polyglot/`; these tests fail (they do not skip) when they are
//! missing. Both languages implement the same plugins, so every test runs the
//! same assertions against each.

use sluice_tests as common;

use common::*;
use serde_json::json;
use sluice_runtime::bindings::types::{WriteMode, WriteTarget};
use sluice_runtime::plugin::{Plugin, PluginKind};
use sluice_runtime::FailureKind;
use sluice_runtime::{Batch, PluginError, RowResult, Value};
use std::path::PathBuf;
use std::sync::OnceLock;

/// A component built by the polyglot build script, loaded (and compiled)
/// once per test binary and shared by the tests that use it.
struct Component {
    file: &'static str,
    plugin: OnceLock<Plugin>,
}

impl Component {
    const fn new(file: &'static str) -> Self {
        Component {
            file,
            plugin: OnceLock::new(),
        }
    }

    fn get(&'static self) -> &'static Plugin {
        self.plugin.get_or_init(|| {
            let path = polyglot_dir().join(self.file);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{} is missing ({e}): build the Python and JavaScript plugins first with \
                     `bash scripts/build-polyglot.sh` (from the repository root; it installs \
                     componentize-py and componentize-js and writes target/polyglot/*.wasm)",
                    path.display()
                )
            });
            let name = self.file.trim_end_matches(".wasm");
            Plugin::from_bytes(&shared_runtime().runtime, name, &bytes)
                .unwrap_or_else(|e| panic!("loading {}: {e:#}", path.display()))
        })
    }
}

static PYTHON_NORMALISE: Component = Component::new("python-normalise.wasm");
static JS_NORMALISE: Component = Component::new("js-normalise.wasm");
static PYTHON_HTTP_POST: Component = Component::new("python-http-post.wasm");
static JS_HTTP_POST: Component = Component::new("js-http-post.wasm");

fn polyglot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/polyglot")
}

fn shared_runtime() -> &'static TestRuntime {
    static RUNTIME: OnceLock<TestRuntime> = OnceLock::new();
    RUNTIME.get_or_init(runtime)
}

fn int(i: i64) -> Value {
    Value::Integer(i)
}

// ------------------------------------------------------------ transforms

const NORMALISE_CONFIG: &str = r#"{"fields": [
    {"name": "email", "case": "lower", "required": true, "pattern": "^[^@ ]+@[^@ ]+$"},
    {"name": "country", "case": "upper"},
    {"name": "name", "case": "title"}
]}"#;

fn people() -> Batch {
    Batch {
        columns: vec!["id".into(), "email".into(), "country".into(), "name".into()],
        rows: vec![
            vec![
                int(1),
                text(" Foo@Example.COM "),
                text(" de"),
                text("ada lovelace"),
            ],
            vec![int(2), Value::Null, text("fr"), text("x")],
            vec![int(3), text("bob@example.com"), int(44), text("bob")],
            vec![int(4), text("not-an-email"), text("gb"), text("c")],
            vec![int(5), text("  "), text("us"), text("jean-luc picard")],
            vec![
                int(6),
                text("ZED@EXAMPLE.ORG"),
                Value::Null,
                text("mary-jane o'neil"),
            ],
        ],
    }
}

async fn normalise_transforms_a_batch(component: &'static Component, spec_name: &str) {
    let plugin = component.get();
    assert_eq!(plugin.kind(), PluginKind::Transform);
    assert_eq!(plugin.wit_version(), "0.1.0");
    let mut instance = plugin.instantiate(&sandbox(&[])).await.unwrap();
    let spec = instance.spec().await.unwrap();
    assert_eq!(spec.name, spec_name);
    assert!(spec.capabilities.is_empty(), "{:?}", spec.capabilities);
    let schema: serde_json::Value = serde_json::from_str(&spec.config_schema).unwrap();
    assert_eq!(schema["required"], json!(["fields"]));

    instance.check(NORMALISE_CONFIG).await.unwrap();
    let t = instance.open_transformer(NORMALISE_CONFIG).await.unwrap();
    let out = instance.transform(&t, &people()).await.unwrap();

    assert_eq!(out.batch.columns, people().columns);
    assert_eq!(
        out.batch.rows,
        vec![
            vec![
                int(1),
                text("foo@example.com"),
                text("DE"),
                text("Ada Lovelace")
            ],
            vec![
                int(6),
                text("zed@example.org"),
                Value::Null,
                text("Mary-Jane O'neil")
            ],
        ]
    );
    let errors: Vec<(u32, &str)> = out
        .errors
        .iter()
        .map(|e| (e.index, e.message.as_str()))
        .collect();
    assert_eq!(
        errors,
        vec![
            (1, "`email` is required but null"),
            (2, "`country` must be text, got integer"),
            (
                3,
                r#"`email` value "not-an-email" does not match /^[^@ ]+@[^@ ]+$/"#
            ),
            (4, "`email` is required but empty"),
        ]
    );

    // The transformer keeps working batch after batch.
    let again = instance.transform(&t, &people()).await.unwrap();
    assert_eq!(again.batch.rows, out.batch.rows);
}

async fn normalise_config_errors_are_typed(component: &'static Component) {
    let mut instance = component.get().instantiate(&sandbox(&[])).await.unwrap();

    let failure = instance
        .open_transformer(r#"{"fields": [{"name": "email", "case": "shout"}]}"#)
        .await
        .err()
        .expect("an unknown case must be refused");
    let Some(PluginError::Config(message)) = failure.plugin_error() else {
        panic!("expected a config error, got {failure}")
    };
    assert!(
        message.contains("`fields[0]`.case") && message.contains("shout"),
        "{message}"
    );

    let failure = instance.check(r#"{"felds": []}"#).await.unwrap_err();
    let Some(PluginError::Config(message)) = failure.plugin_error() else {
        panic!("expected a config error, got {failure}")
    };
    assert!(message.contains("`fields`"), "{message}");

    // A column the batch lacks is the config's fault, reported on transform.
    let t = instance
        .open_transformer(r#"{"fields": [{"name": "phone"}]}"#)
        .await
        .unwrap();
    let failure = instance.transform(&t, &people()).await.unwrap_err();
    let Some(PluginError::Config(message)) = failure.plugin_error() else {
        panic!("expected a config error, got {failure}")
    };
    assert!(message.contains("column `phone`"), "{message}");

    // Contract errors do not poison the instance.
    let t = instance.open_transformer(NORMALISE_CONFIG).await.unwrap();
    assert_eq!(
        instance
            .transform(&t, &people())
            .await
            .unwrap()
            .errors
            .len(),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_normalise_transforms_a_batch_with_row_errors() {
    normalise_transforms_a_batch(&PYTHON_NORMALISE, "py-normalise").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_normalise_transforms_a_batch_with_row_errors() {
    normalise_transforms_a_batch(&JS_NORMALISE, "js-normalise").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_normalise_config_errors_are_typed() {
    normalise_config_errors_are_typed(&PYTHON_NORMALISE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_normalise_config_errors_are_typed() {
    normalise_config_errors_are_typed(&JS_NORMALISE).await;
}

// ------------------------------------------- field-map in three languages

/// Every coercion, every clean-up, two constants, and three rows that must be
/// rejected (an unparsable decimal, a fractional float to integer, a word
/// that is not a boolean).
const FIELD_MAP_CONFIG: &str = r#"{"fields": [
    {"from": "id", "to": "external_id", "type": "text"},
    {"from": "email", "to": "Email", "clean": ["trim", "lowercase"]},
    {"from": "name", "to": "Name", "clean": ["trim", "uppercase"]},
    {"from": "ltv", "to": "LTV", "type": "float"},
    {"from": "score", "to": "Score", "type": "integer"},
    {"from": "active", "to": "Active", "type": "boolean"},
    {"from": "visits", "to": "Visits", "type": "text"},
    {"from": "tags", "to": "Tags", "type": "json"},
    {"from": "joined", "to": "Joined", "type": "text", "clean": ["uppercase"]},
    {"to": "Source", "constant": "sluice"},
    {"to": "Version", "constant": 2, "type": "text"},
    {"to": "Meta", "constant": {"z": 1, "a": [1.0, "x"]}}
]}"#;

fn field_map_input() -> Batch {
    use Value::{Boolean, Decimal, Float, Json, Null, Timestamp};
    let columns = [
        "id", "email", "name", "ltv", "score", "active", "visits", "tags", "joined",
    ];
    Batch {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows: vec![
            vec![
                int(1),
                text(" Ada@Example.COM "),
                text(" ada lovelace "),
                Decimal("48213.07".into()),
                text(" 42 "),
                text("yes"),
                Float(3.0),
                Json(r#"{"b": 1, "a": [1.50, true]}"#.into()),
                Timestamp(1_714_566_600_000_000),
            ],
            // Rejected: the decimal is not a number.
            vec![
                int(2),
                text("grace@example.org"),
                text("grace"),
                Decimal("n/a".into()),
                text("7"),
                text("true"),
                Float(0.5),
                Null,
                Null,
            ],
            vec![
                int(3),
                Null,
                text("straße"),
                text(" 12.5 "),
                text("-3"),
                text(" N "),
                Float(1e21),
                Json("not json".into()),
                Null,
            ],
            // Rejected: 2.5 is not a whole number.
            vec![
                int(4),
                text("x@y.z"),
                text("z"),
                Decimal("1".into()),
                Float(2.5),
                text("no"),
                Float(1.0),
                Null,
                Null,
            ],
            vec![
                int(5),
                text("  "),
                text(""),
                int(9),
                Float(4.0),
                int(0),
                Float(0.000015),
                int(5),
                Timestamp(1_714_566_600_000_001),
            ],
            // Rejected: "maybe" is not a boolean.
            vec![
                int(6),
                text("e@f.g"),
                text("eve"),
                Float(1.25),
                int(1),
                text("maybe"),
                Null,
                Boolean(false),
                Null,
            ],
        ],
    }
}

static PYTHON_FIELD_MAP: Component = Component::new("python-field-map.wasm");
static JS_FIELD_MAP: Component = Component::new("js-field-map.wasm");

fn rust_field_map() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        Plugin::from_bytes(
            &shared_runtime().runtime,
            "field-map",
            sluice_registry::builtin::FIELD_MAP,
        )
        .expect("load the embedded field-map")
    })
}

/// One transform of `field_map_input()`: output columns, rows, and the
/// rejected rows' (index, message).
async fn field_map_run(plugin: &Plugin) -> (Vec<String>, Vec<Vec<Value>>, Vec<(u32, String)>) {
    assert_eq!(plugin.kind(), PluginKind::Transform);
    let mut instance = plugin.instantiate(&sandbox(&[])).await.unwrap();
    let initial_memory = instance.linear_memory_bytes();
    assert!(initial_memory > 0, "{}: no linear memory", plugin.name());
    instance.check(FIELD_MAP_CONFIG).await.unwrap();
    let t = instance.open_transformer(FIELD_MAP_CONFIG).await.unwrap();
    let out = instance.transform(&t, &field_map_input()).await.unwrap();
    // The transformer keeps working batch after batch, with the same result.
    let again = instance.transform(&t, &field_map_input()).await.unwrap();
    assert_eq!(again, out, "{}: a second batch differs", plugin.name());
    assert!(instance.linear_memory_bytes() >= initial_memory);
    let errors = out
        .errors
        .into_iter()
        .map(|e| (e.index, e.message))
        .collect();
    (out.batch.columns, out.batch.rows, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_map_gives_the_same_rows_in_rust_python_and_javascript() {
    use Value::{Boolean, Float, Json, Null};
    let rust = field_map_run(rust_field_map()).await;

    // The Rust plugin is the reference; pin what it does, so the comparison
    // below cannot pass by all three doing nothing.
    let (columns, rows, errors) = &rust;
    assert_eq!(
        columns,
        &[
            "external_id",
            "Email",
            "Name",
            "LTV",
            "Score",
            "Active",
            "Visits",
            "Tags",
            "Joined",
            "Source",
            "Version",
            "Meta",
        ]
    );
    let meta = Json(r#"{"a":[1.0,"x"],"z":1}"#.into());
    assert_eq!(
        rows,
        &vec![
            vec![
                text("1"),
                text("ada@example.com"),
                text("ADA LOVELACE"),
                Float(48213.07),
                int(42),
                Boolean(true),
                text("3"),
                Json(r#"{"a":[1.5,true],"b":1}"#.into()),
                text("2024-05-01T12:30:00Z"),
                text("sluice"),
                text("2"),
                meta.clone(),
            ],
            vec![
                text("3"),
                Null,
                text("STRASSE"),
                Float(12.5),
                int(-3),
                Boolean(false),
                text("1000000000000000000000"),
                Json(r#""not json""#.into()),
                Null,
                text("sluice"),
                text("2"),
                meta.clone(),
            ],
            vec![
                text("5"),
                text(""),
                text(""),
                Float(9.0),
                int(4),
                Boolean(false),
                text("0.000015"),
                Json("5".into()),
                text("2024-05-01T12:30:00.000001Z"),
                text("sluice"),
                text("2"),
                meta,
            ],
        ]
    );
    assert_eq!(
        errors,
        &vec![
            (
                1,
                r#"field `LTV`: cannot convert Value::Decimal("n/a") to Float"#.to_string()
            ),
            (
                3,
                "field `Score`: cannot convert Value::Float(2.5) to Integer".to_string()
            ),
            (
                5,
                r#"field `Active`: cannot convert Value::Text("maybe") to Boolean"#.to_string()
            ),
        ]
    );

    for component in [&PYTHON_FIELD_MAP, &JS_FIELD_MAP] {
        let port = field_map_run(component.get()).await;
        assert_eq!(port.0, rust.0, "{}: output columns", component.file);
        for (i, (got, want)) in port.1.iter().zip(&rust.1).enumerate() {
            assert_eq!(got, want, "{}: output row {i}", component.file);
        }
        assert_eq!(
            port.1.len(),
            rust.1.len(),
            "{}: output rows",
            component.file
        );
        // Same rejected rows, with the same messages.
        assert_eq!(port.2, rust.2, "{}: rejected rows", component.file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_map_config_errors_are_the_same_in_rust_python_and_javascript() {
    let plugins = [rust_field_map(), PYTHON_FIELD_MAP.get(), JS_FIELD_MAP.get()];
    for plugin in plugins {
        let mut instance = plugin.instantiate(&sandbox(&[])).await.unwrap();
        let config_error = |failure: sluice_runtime::PluginFailure| match failure.plugin_error() {
            Some(PluginError::Config(message)) => message.clone(),
            _ => panic!("{}: expected a config error, got {failure}", plugin.name()),
        };

        // A rule with neither a source column nor a constant.
        let failure = instance
            .open_transformer(r#"{"fields": [{"to": "x"}]}"#)
            .await
            .err()
            .expect("a rule without `from` or `constant` must be refused");
        assert_eq!(
            config_error(failure),
            "fields[0] (x): needs `from` or `constant`",
            "{}",
            plugin.name()
        );

        // An unknown coercion names the variant.
        let failure = instance
            .check(r#"{"fields": [{"from": "a", "type": "date"}]}"#)
            .await
            .unwrap_err();
        let message = config_error(failure);
        assert!(
            message.starts_with("invalid config:") && message.contains("`date`"),
            "{}: {message}",
            plugin.name()
        );

        // A column the batch lacks fails the call, naming the column.
        let t = instance
            .open_transformer(r#"{"fields": [{"from": "phone"}]}"#)
            .await
            .unwrap();
        let failure = instance
            .transform(&t, &field_map_input())
            .await
            .unwrap_err();
        assert_eq!(
            config_error(failure),
            "column `phone` is not in the batch",
            "{}",
            plugin.name()
        );
    }
}

// ---------------------------------------------------------- destinations

fn target() -> WriteTarget {
    WriteTarget {
        object: "contacts".into(),
        mode: WriteMode::Upsert,
        identifier: "id".into(),
    }
}

fn contacts() -> Batch {
    Batch {
        columns: vec![
            "id".into(),
            "email".into(),
            "score".into(),
            "seen_at".into(),
            "born".into(),
            "tags".into(),
        ],
        rows: vec![
            vec![
                int(1),
                text("a@example.com"),
                Value::Decimal("12.50".into()),
                Value::Timestamp(1_714_566_600_000_000),
                Value::Date(19_844),
                Value::Json(r#"{"vip":true}"#.into()),
            ],
            vec![
                Value::Null,
                text("b@example.com"),
                Value::Float(1.5),
                Value::Null,
                Value::Null,
                Value::Null,
            ],
            vec![
                int(3),
                text("c@example.com"),
                Value::Float(0.5),
                Value::Null,
                Value::Boolean(true),
                Value::Json("[1,2]".into()),
            ],
        ],
    }
}

fn one_row() -> Batch {
    Batch {
        columns: vec!["id".into(), "email".into()],
        rows: vec![vec![int(9), text("z@example.com")]],
    }
}

async fn http_post_delivers_rows(component: &'static Component, spec_name: &str) {
    let plugin = component.get();
    assert_eq!(plugin.kind(), PluginKind::Destination);
    let hook = receiver().await;
    let mut instance = plugin
        .instantiate(&sandbox(&[&hook.grant()]))
        .await
        .unwrap();

    let spec = instance.spec().await.unwrap();
    assert_eq!(spec.name, spec_name);
    assert_eq!(spec.capabilities, vec!["${config.url}".to_string()]);
    assert_eq!(spec.batch_size, 500);
    let failure = instance
        .check(r#"{"url": "ftp://example.com"}"#)
        .await
        .unwrap_err();
    assert!(
        matches!(failure.plugin_error(), Some(PluginError::Config(m)) if m.contains("`url`")),
        "{failure}"
    );
    let objects = instance
        .discover("{\"url\": \"https://example.com\"}")
        .await
        .unwrap();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].modes.len(), 5);

    let config = json!({"url": hook.url, "headers": {"x-api-key": "k-123"}}).to_string();
    let writer = instance.open_writer(&config, &target()).await.unwrap();
    let results = instance.write(&writer, &contacts()).await.unwrap();
    assert_eq!(
        results,
        vec![
            RowResult::Accepted,
            RowResult::Rejected("row has no value for identifier `id`".into()),
            RowResult::Accepted,
        ]
    );
    {
        let requests = hook.requests.lock().unwrap();
        assert_eq!(requests.len(), 1, "one POST per batch");
        let request = &requests[0];
        assert_eq!(request.headers["x-api-key"], "k-123");
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(
            request.body,
            json!({
                "object": "contacts",
                "mode": "upsert",
                "identifier": "id",
                "rows": [
                    {"id": 1, "email": "a@example.com", "score": 12.5, "seen_at": "2024-05-01T12:30:00Z",
                     "born": "2024-05-01", "tags": {"vip": true}},
                    {"id": 3, "email": "c@example.com", "score": 0.5, "seen_at": null,
                     "born": true, "tags": [1, 2]},
                ]
            })
        );
    }

    // The receiver's statuses become per-row results (the SDKs'
    // `row_result()` / `rowResult()`), as in the Rust SDK's `to_error`.
    hook.script.lock().unwrap().extend([
        (429, Some("3")),
        (429, None),
        (503, Some("2")),
        (503, None),
        (400, None),
        (401, None),
    ]);
    let results = instance.write(&writer, &one_row()).await.unwrap();
    assert_eq!(results, vec![RowResult::RateLimited(3000)]);
    let results = instance.write(&writer, &one_row()).await.unwrap();
    assert_eq!(
        results,
        vec![RowResult::RateLimited(1000)],
        "no Retry-After: 1 s"
    );
    let results = instance.write(&writer, &one_row()).await.unwrap();
    assert_eq!(
        results,
        vec![RowResult::RateLimited(2000)],
        "503 with Retry-After"
    );
    let results = instance.write(&writer, &one_row()).await.unwrap();
    assert_eq!(
        results,
        vec![RowResult::Retryable("HTTP 503: status 503".into())]
    );
    let results = instance.write(&writer, &one_row()).await.unwrap();
    assert_eq!(
        results,
        vec![RowResult::Rejected("HTTP 400: status 400".into())]
    );
    let failure = instance.write(&writer, &one_row()).await.unwrap_err();
    assert!(
        matches!(failure.plugin_error(), Some(PluginError::Auth(m)) if m == "HTTP 401: status 401"),
        "{failure}"
    );
    // Scripted refusals are not recorded; the next write goes through, and
    // the quota the receiver reports reaches the host.
    assert!(instance.take_quota_hint().is_none());
    hook.response_headers.lock().unwrap().extend([
        ("x-ratelimit-remaining", "7"),
        ("x-ratelimit-limit", "100"),
        ("x-ratelimit-window-ms", "10000"),
    ]);
    let results = instance.write(&writer, &one_row()).await.unwrap();
    assert_eq!(results, vec![RowResult::Accepted]);
    let quota = instance
        .take_quota_hint()
        .expect("the plugin reported a quota");
    assert_eq!(
        (quota.remaining, quota.limit, quota.window_ms),
        (7, 100, 10_000)
    );
    {
        let requests = hook.requests.lock().unwrap();
        assert_eq!(requests.len(), 2);
        assert_eq!(
            requests[1].body["rows"],
            json!([{"id": 9, "email": "z@example.com"}])
        );
    }

    // A receiver slower than the plugin's timeout: retryable, not a hang.
    *hook.delay.lock().unwrap() = std::time::Duration::from_millis(1500);
    let config = json!({"url": hook.url, "timeout_ms": 200}).to_string();
    let slow = instance.open_writer(&config, &target()).await.unwrap();
    let started = std::time::Instant::now();
    match instance.write(&slow, &one_row()).await {
        // Python makes the rows retryable...
        Ok(results) => assert!(
            matches!(&results[..], [RowResult::Retryable(m)] if m.contains("timed out") || m.contains("Timeout")),
            "{results:?}"
        ),
        // ... JavaScript fails the call as retryable.
        Err(failure) => assert!(
            matches!(failure.plugin_error(), Some(PluginError::Retryable(m)) if m.contains("timed out")),
            "{failure}"
        ),
    }
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1400),
        "the timeout ended the request: {:?}",
        started.elapsed()
    );
}

async fn http_post_without_a_grant_is_denied(component: &'static Component, plugin_name: &str) {
    let hook = receiver().await;
    // Granted: something else entirely.
    let mut instance = component
        .get()
        .instantiate(&sandbox(&["https://api.example.com"]))
        .await
        .unwrap();
    let config = json!({"url": hook.url}).to_string();
    let writer = instance.open_writer(&config, &target()).await.unwrap();
    let failure = instance
        .write(&writer, &one_row())
        .await
        .expect_err("the write must be denied");
    let FailureKind::Denied(denial) = &failure.kind else {
        panic!("expected a network denial, got {failure}")
    };
    assert_eq!(denial.capability, "network (http)");
    assert!(denial.detail.contains("127.0.0.1"), "{denial}");
    let message = failure.to_string();
    assert!(
        message.contains(&format!("plugin `{plugin_name}` failed in `write`")),
        "{message}"
    );
    assert!(hook.requests.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_post_delivers_rows_and_maps_statuses() {
    http_post_delivers_rows(&PYTHON_HTTP_POST, "py-http-post").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_http_post_delivers_rows_and_maps_statuses() {
    http_post_delivers_rows(&JS_HTTP_POST, "js-http-post").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_post_without_a_grant_is_denied() {
    http_post_without_a_grant_is_denied(&PYTHON_HTTP_POST, "python-http-post").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_http_post_without_a_grant_is_denied() {
    http_post_without_a_grant_is_denied(&JS_HTTP_POST, "js-http-post").await;
}

/// A whole sync through plugins of three languages: the Rust `files` source,
/// a transform in one language and a destination in the other.
async fn polyglot_sync(transform: &str, destination: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/people.csv"),
        "id,email,name\n1, Ada@Example.COM ,ada lovelace\n2,not-an-email,bob\n3,zed@example.org,mary-jane o'neil\n",
    )
    .unwrap();
    let hook = receiver().await;
    let plugin = |file: &str| polyglot_dir().join(file).display().to_string();
    let yaml = format!(
        r#"
sources:
  files: {{ plugin: files, config: {{ path: /data, columns: {{ id: integer }} }}, grants: ["dir:data:/data"] }}
transforms:
  normalise:
    plugin: {}
    config: {{ fields: [{{ name: email, case: lower, required: true, pattern: "^[^@ ]+@[^@ ]+$" }}, {{ name: name, case: title }}] }}
destinations:
  hook: {{ plugin: {}, config: {{ url: "{}" }}, grants: ["{}"] }}
models:
  people: {{ source: files, object: people.csv, primary_key: id }}
syncs:
  people:
    model: people
    destination: hook
    object: contacts
    mode: upsert
    identifier: id
    transforms: [normalise]
"#,
        plugin(transform),
        plugin(destination),
        hook.url,
        hook.grant()
    );
    std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();
    let project = sluice_config::validate(dir.path()).unwrap_or_else(|d| panic!("{d:?}"));
    let store = std::sync::Mutex::new(sluice_state::SqliteStore::open_project(dir.path()).unwrap());
    let engine = sluice_engine::run::SyncEngine {
        project: &project,
        runtime: &shared_runtime().runtime,
        store: &store,
    };
    let report = engine.run("people", &Default::default()).await.unwrap();
    assert_eq!(
        (report.counts.ok, report.counts.rejected),
        (2, 1),
        "{transform} → {destination}: {:?}",
        report.error
    );
    // These destinations post `{object, mode, identifier, rows}` (no envelope).
    let rows: Vec<serde_json::Value> = hook
        .requests
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| r.body["rows"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        rows,
        vec![
            json!({"id": 1, "email": "ada@example.com", "name": "Ada Lovelace"}),
            json!({"id": 3, "email": "zed@example.org", "name": "Mary-Jane O'neil"}),
        ]
    );
    let ledger = sluice_state::StateStore::ledger(&*store.lock().unwrap(), "people").unwrap();
    assert!(
        ledger[0].message.contains("not-an-email"),
        "{}",
        ledger[0].message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_through_a_python_transform_into_a_javascript_destination() {
    polyglot_sync("python-normalise.wasm", "js-http-post.wasm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_through_a_javascript_transform_into_a_python_destination() {
    polyglot_sync("js-normalise.wasm", "python-http-post.wasm").await;
}
