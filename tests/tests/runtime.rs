//! The runtime end to end with real components: loading, world detection,
//! the compile cache, transforms and destinations.

use sluice_tests as common;

use common::*;
use sluice_registry::builtin as plugins;
use sluice_runtime::cache::CacheOutcome;
use sluice_runtime::columns;
use sluice_runtime::plugin::{Plugin, PluginKind};
use sluice_runtime::{Batch, Value};

fn emails() -> Batch {
    Batch {
        columns: vec!["id".into(), "email".into()],
        rows: vec![
            vec![Value::Integer(1), text(" Foo@Example.COM ")],
            vec![Value::Integer(2), Value::Null],
        ],
    }
}

#[tokio::test]
async fn pii_hash_transforms_a_batch_inside_the_sandbox() {
    let rt = runtime();
    let plugin = Plugin::from_bytes(&rt.runtime, "pii-hash", plugins::PII_HASH).unwrap();
    assert_eq!(plugin.kind(), PluginKind::Transform);
    assert_eq!(plugin.wit_version(), "0.1.0");
    let mut instance = plugin.instantiate(&sandbox(&[])).await.unwrap();
    let spec = instance.spec().await.unwrap();
    assert_eq!(spec.name, "pii-hash");
    let t = instance
        .open_transformer(r#"{"fields":["email"]}"#)
        .await
        .unwrap();
    let out = instance.transform(&t, &emails()).await.unwrap();
    assert!(out.errors.is_empty());
    assert_eq!(
        out.batch.rows[0][1],
        text("321ba197033e81286fedb719d60d4ed5cecaed170733cb4a92013811afc0e3b6")
    );
    assert_eq!(out.batch.rows[1][1], Value::Null);
}

#[tokio::test]
async fn a_columnar_transform_takes_columns_and_rows_alike() {
    let rt = runtime();
    let plugin = Plugin::from_bytes(&rt.runtime, "field-map", plugins::FIELD_MAP).unwrap();
    assert_eq!(plugin.kind(), PluginKind::Transform);
    assert_eq!(plugin.world(), "columnar-transform");
    let mut instance = plugin.instantiate(&sandbox(&[])).await.unwrap();
    let t = instance
        .open_transformer(
            r#"{"fields":[{"from":"email","to":"Email","clean":["trim","lowercase"]},
                          {"from":"id","to":"Id","type":"text"}]}"#,
        )
        .await
        .unwrap();
    // Rows in, rows out: the host converts to columns and back.
    let rows = instance.transform(&t, &emails()).await.unwrap();
    assert_eq!(rows.batch.columns, vec!["Email", "Id"]);
    assert_eq!(
        rows.batch.rows,
        vec![
            vec![text("foo@example.com"), text("1")],
            vec![Value::Null, text("2")]
        ]
    );
    // Columns in, columns out: what a caller holding columns pays.
    let columns = columns::to_columns(&emails());
    let out = instance.transform_columns(&t, &columns).await.unwrap();
    assert_eq!(out.batch.rows, 2);
    assert_eq!(columns::to_rows(out.batch).unwrap(), rows.batch);
}

#[tokio::test]
async fn config_errors_come_back_typed_and_named() {
    let rt = runtime();
    let plugin = Plugin::from_bytes(&rt.runtime, "pii-hash", plugins::PII_HASH).unwrap();
    let mut instance = plugin.instantiate(&sandbox(&[])).await.unwrap();
    let err = instance
        .open_transformer(r#"{"felds":["email"]}"#)
        .await
        .err()
        .unwrap();
    let message = err.to_string();
    assert!(
        message.contains("plugin `pii-hash` failed in `open`"),
        "{message}"
    );
    assert!(
        message.contains("configuration error") && message.contains("felds"),
        "{message}"
    );
    // A contract error does not poison the instance.
    instance
        .open_transformer(r#"{"fields":["email"]}"#)
        .await
        .unwrap();
}

#[tokio::test]
async fn compiled_components_are_cached_by_digest() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime_with(|o| o.cache_dir = Some(cache.path().to_path_buf()));
    let first = Plugin::from_bytes(&rt.runtime, "field-map", plugins::FIELD_MAP).unwrap();
    assert_eq!(first.cache_outcome(), CacheOutcome::Compiled);
    let second = Plugin::from_bytes(&rt.runtime, "field-map", plugins::FIELD_MAP).unwrap();
    assert_eq!(second.cache_outcome(), CacheOutcome::Hit);
    assert_eq!(first.digest(), second.digest());
    // One entry, its MAC, and the installation's key.
    let mut cached: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    cached.sort();
    assert_eq!(cached.len(), 3, "{cached:?}");
    assert!(cached[0].ends_with(".cwasm") && cached[1].ends_with(".cwasm.mac"));
    assert_eq!(cached[2], "key");
    // A cache hit runs like a fresh compile.
    let mut instance = second.instantiate(&sandbox(&[])).await.unwrap();
    let t = instance
        .open_transformer(r#"{"fields":[{"from":"id","to":"Id","type":"text"}]}"#)
        .await
        .unwrap();
    let out = instance.transform(&t, &emails()).await.unwrap();
    assert_eq!(out.batch.columns, vec!["Id"]);
    assert_eq!(out.batch.rows[0][0], text("1"));
}

#[tokio::test]
async fn refuses_files_that_are_not_sluice_plugins() {
    let rt = runtime();
    let err = Plugin::from_bytes(&rt.runtime, "junk", b"not wasm at all")
        .err()
        .unwrap();
    assert!(err.to_string().contains("not a WebAssembly file"), "{err}");
    // A valid component that exports no Sluice world.
    let empty = wat_component();
    let err = Plugin::from_bytes(&rt.runtime, "empty", &empty)
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("not a Sluice plugin"),
        "{err:#}"
    );
}

/// The smallest valid component: `(component)` in binary form.
fn wat_component() -> Vec<u8> {
    vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]
}
