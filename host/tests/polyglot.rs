mod common;
use common::*;
use sluice::runtime::plugin::Plugin;
use sluice::{Batch, Value};

#[tokio::test]
async fn probe() {
    let rt = runtime();
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/polyglot/probe.wasm"
    ))
    .unwrap();
    let t0 = std::time::Instant::now();
    let plugin = Plugin::from_bytes(&rt.runtime, "probe", &bytes).unwrap();
    eprintln!("load {:?}", t0.elapsed());
    let t0 = std::time::Instant::now();
    let mut i = plugin.instantiate(&sandbox(&[])).await.unwrap();
    eprintln!("inst {:?}", t0.elapsed());
    eprintln!("{:?}", i.spec().await.unwrap());
    let t = i.open_transformer("{}").await.unwrap();
    let b = Batch {
        columns: vec!["a".into()],
        rows: vec![vec![Value::Integer(1)]],
    };
    eprintln!("{:?}", i.transform(&t, &b).await.unwrap());
}
