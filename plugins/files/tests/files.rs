//! Native tests of the files source: fixtures are written to a temp
//! directory per test (Parquet ones with the `parquet` crate's writer).

use files::FilesSource;
use parquet::basic::Compression;
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type,
};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use sluice_sdk::prelude::*;
use std::path::Path;
use std::sync::Arc;
use tempfile::TempDir;

fn dir_with(files: &[(&str, &[u8])]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

fn config(dir: &TempDir, extra: &str) -> String {
    let path = serde_json::to_string(dir.path().to_str().unwrap()).unwrap();
    if extra.is_empty() {
        format!(r#"{{"path": {path}}}"#)
    } else {
        format!(r#"{{"path": {path}, {extra}}}"#)
    }
}

fn read_batches(config: &str, name: &str, max_rows: u32) -> Result<Vec<Batch>, PluginError> {
    let mut reader = FilesSource::read(config, ReadRequest::Object(name.into()))?;
    let mut batches = Vec::new();
    while let Some(batch) = reader.next(max_rows)? {
        assert!(
            batch.rows.len() <= max_rows as usize,
            "a batch exceeded max_rows"
        );
        assert!(
            batch.rows.iter().all(|r| r.len() == batch.columns.len()),
            "row width != columns"
        );
        batches.push(batch);
    }
    Ok(batches)
}

/// All rows of an object in one batch (columns of the last batch).
fn read_all(config: &str, name: &str) -> Batch {
    let batches = read_batches(config, name, 10_000).unwrap();
    let columns = batches
        .last()
        .map(|b| b.columns.clone())
        .unwrap_or_default();
    Batch {
        columns,
        rows: batches.into_iter().flat_map(|b| b.rows).collect(),
    }
}

fn read_err(config: &str, name: &str) -> String {
    match read_batches(config, name, 1000) {
        Ok(_) => panic!("reading {name} should fail"),
        Err(PluginError::Permanent(m) | PluginError::Config(m)) => m,
        Err(other) => panic!("unexpected error kind: {other:?}"),
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

// ---------------------------------------------------------------- CSV

#[test]
fn csv_cells_are_text_and_empty_cells_null() {
    let csv = "\u{feff}id,name,note\n1,Ada,\"likes, commas\"\n2,,\"two\nlines\"\n\n3,Émile,\n";
    let dir = dir_with(&[("customers.csv", csv.as_bytes())]);
    let batch = read_all(&config(&dir, ""), "customers.csv");
    assert_eq!(batch.columns, ["id", "name", "note"]);
    assert_eq!(
        batch.rows,
        vec![
            vec![text("1"), text("Ada"), text("likes, commas")],
            vec![text("2"), Value::Null, text("two\nlines")],
            vec![text("3"), text("Émile"), Value::Null],
        ]
    );
}

#[test]
fn csv_type_hints_parse_every_type() {
    let csv = "id,ltv,price,vip,signed_up,born,meta,name\n\
               7,12.5,-0.50,yes,2024-05-01T12:30:00Z,1990-02-03,\"{\"\"a\"\":1}\", Ada \n\
               8,,,,,,,\n";
    let dir = dir_with(&[("c.csv", csv.as_bytes())]);
    let hints = r#""columns": {"id": "integer", "ltv": "float", "price": "decimal", "vip": "boolean",
        "signed_up": "timestamp", "born": "date", "meta": "json", "name": "text", "absent": "integer"}"#;
    let batch = read_all(&config(&dir, hints), "c.csv");
    assert_eq!(
        batch.rows[0],
        vec![
            Value::Integer(7),
            Value::Float(12.5),
            Value::Decimal("-0.50".into()),
            Value::Boolean(true),
            Value::Timestamp(1_714_566_600_000_000),
            Value::Date(7_338),
            Value::Json(r#"{"a":1}"#.into()),
            text(" Ada "),
        ]
    );
    assert_eq!(batch.rows[1][0], Value::Integer(8));
    assert!(
        batch.rows[1][1..].iter().all(Value::is_null),
        "{:?}",
        batch.rows[1]
    );
}

#[test]
fn csv_bad_hinted_cell_names_file_line_and_column() {
    let csv = "id,ltv\n1,10.5\n2,lots\n";
    let dir = dir_with(&[("customers.csv", csv.as_bytes())]);
    let message = read_err(
        &config(&dir, r#""columns": {"ltv": "float"}"#),
        "customers.csv",
    );
    assert!(
        message.starts_with("customers.csv:3:2 (column \"ltv\"): \"lots\" is not a valid float"),
        "{message}"
    );
}

#[test]
fn csv_without_header_and_with_tabs() {
    let dir = dir_with(&[("t.tsv", b"a\t1\nb\t2\n")]);
    let cfg = config(
        &dir,
        r#""format": "csv", "delimiter": "\t", "has_header": false, "columns": {"column_2": "integer"}"#,
    );
    let batch = read_all(&cfg, "t.tsv");
    assert_eq!(batch.columns, ["column_1", "column_2"]);
    assert_eq!(
        batch.rows,
        vec![
            vec![text("a"), Value::Integer(1)],
            vec![text("b"), Value::Integer(2)]
        ]
    );
}

#[test]
fn csv_ragged_rows_and_duplicate_headers_are_errors_with_lines() {
    let dir = dir_with(&[
        ("ragged.csv", b"a,b\n1,2\n3\n"),
        ("dup.csv", b"a,b,a\n1,2,3\n"),
    ]);
    let cfg = config(&dir, "");
    assert_eq!(
        read_err(&cfg, "ragged.csv"),
        "ragged.csv:3: expected 2 fields like the first record, found 1"
    );
    let message = read_err(&cfg, "dup.csv");
    assert!(
        message.contains("dup.csv:1: column name \"a\" appears twice (columns 1 and 3)"),
        "{message}"
    );
}

#[test]
fn csv_non_utf8_fails_with_file_line_and_column() {
    let dir = dir_with(&[("latin1.csv", b"id,name\n1,Ada\n2,Ren\xe9e\n")]);
    let message = read_err(&config(&dir, ""), "latin1.csv");
    assert!(
        message.starts_with(
            "latin1.csv:3:2 (column \"name\"): not valid UTF-8 (byte 4 of the cell is 0xe9)"
        ),
        "{message}"
    );
}

// ---------------------------------------------------------------- JSON Lines

#[test]
fn jsonl_maps_types_and_keeps_first_seen_key_order() {
    let lines = concat!(
        r#"{"zeta": 1, "alpha": "x", "flag": true, "n": null}"#,
        "\n",
        "\n",
        r#"{"alpha": "y", "score": 2.5, "tags": ["a"], "obj": {"k": 1}, "big": 18446744073709551615}"#,
        "\r\n",
    );
    let dir = dir_with(&[("events.jsonl", lines.as_bytes())]);
    let batch = read_all(&config(&dir, ""), "events.jsonl");
    assert_eq!(
        batch.columns,
        ["zeta", "alpha", "flag", "n", "score", "tags", "obj", "big"]
    );
    assert_eq!(
        batch.rows,
        vec![
            vec![
                Value::Integer(1),
                text("x"),
                Value::Boolean(true),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null
            ],
            vec![
                Value::Null,
                text("y"),
                Value::Null,
                Value::Null,
                Value::Float(2.5),
                Value::Json(r#"["a"]"#.into()),
                Value::Json(r#"{"k":1}"#.into()),
                Value::Decimal("18446744073709551615".into()),
            ],
        ]
    );
}

#[test]
fn jsonl_key_first_seen_in_a_later_batch_extends_the_columns() {
    let dir = dir_with(&[("e.ndjson", b"{\"a\":1}\n{\"a\":2}\n{\"b\":3,\"a\":4}\n")]);
    let batches = read_batches(&config(&dir, ""), "e.ndjson", 2).unwrap();
    assert_eq!(batches[0].columns, ["a"]);
    assert_eq!(batches[1].columns, ["a", "b"]);
    assert_eq!(
        batches[1].rows,
        vec![vec![Value::Integer(4), Value::Integer(3)]]
    );
}

#[test]
fn jsonl_bad_lines_fail_with_file_and_line() {
    let dir = dir_with(&[
        ("array.jsonl", b"{\"a\":1}\n[1,2]\n"),
        ("broken.jsonl", b"{\"a\":1}\n{\"a\": }\n"),
        ("latin1.jsonl", b"{\"a\":\"ok\"}\n{\"a\":\"Ren\xe9e\"}\n"),
    ]);
    let cfg = config(&dir, "");
    let m = read_err(&cfg, "array.jsonl");
    assert!(
        m.starts_with("array.jsonl:2:") && m.contains("expected a JSON object"),
        "{m}"
    );
    let m = read_err(&cfg, "broken.jsonl");
    assert!(m.starts_with("broken.jsonl:2:7:"), "{m}");
    let m = read_err(&cfg, "latin1.jsonl");
    assert!(
        m.starts_with("latin1.jsonl:2:10: not valid UTF-8 (byte 0xe9)"),
        "{m}"
    );
}

// ---------------------------------------------------------------- Parquet

const TYPES_SCHEMA: &str = "message m {
    required int64 id;
    optional binary name (STRING);
    optional double score;
    optional float ratio;
    optional int32 amount (DECIMAL(9,2));
    optional int64 ts_ms (TIMESTAMP(MILLIS,true));
    optional int64 ts_ns (TIMESTAMP(NANOS,false));
    optional int32 day (DATE);
    optional boolean active;
    optional binary blob;
    optional group address { optional binary city (STRING); optional int32 zip; }
    optional group tags (LIST) { repeated group list { optional binary element (STRING); } }
}";

/// Two rows: one full, one null wherever the schema allows.
fn write_types_parquet(path: &Path) {
    let schema = Arc::new(parse_message_type(TYPES_SCHEMA).unwrap());
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut writer =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut column = 0;
    let opt = Some(&[1, 0][..]);
    while let Some(mut col) = group.next_column().unwrap() {
        match column {
            0 => col.typed::<Int64Type>().write_batch(&[1, 2], None, None),
            1 => col
                .typed::<ByteArrayType>()
                .write_batch(&[ByteArray::from("Ada")], opt, None),
            2 => col.typed::<DoubleType>().write_batch(&[0.25], opt, None),
            3 => col.typed::<FloatType>().write_batch(&[0.1], opt, None),
            4 => col.typed::<Int32Type>().write_batch(&[-1234], opt, None),
            5 => col
                .typed::<Int64Type>()
                .write_batch(&[1_714_566_600_123], opt, None),
            6 => col
                .typed::<Int64Type>()
                .write_batch(&[1_714_566_600_123_456_789], opt, None),
            7 => col.typed::<Int32Type>().write_batch(&[19_844], opt, None),
            8 => col.typed::<BoolType>().write_batch(&[true], opt, None),
            9 => col.typed::<ByteArrayType>().write_batch(
                &[ByteArray::from(vec![0xde, 0xad])],
                opt,
                None,
            ),
            // address.city, address.zip: row 2's address is null (level 0).
            10 => col.typed::<ByteArrayType>().write_batch(
                &[ByteArray::from("Paris")],
                Some(&[2, 0]),
                None,
            ),
            11 => col
                .typed::<Int32Type>()
                .write_batch(&[], Some(&[1, 0]), None),
            // tags: ["a", "b"], then null.
            12 => col.typed::<ByteArrayType>().write_batch(
                &[ByteArray::from("a"), ByteArray::from("b")],
                Some(&[3, 3, 0]),
                Some(&[0, 1, 0]),
            ),
            _ => unreachable!("the schema has 13 leaf columns"),
        }
        .unwrap();
        col.close().unwrap();
        column += 1;
    }
    group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_maps_physical_and_logical_types() {
    let dir = dir_with(&[]);
    write_types_parquet(&dir.path().join("types.parquet"));
    let batch = read_all(&config(&dir, ""), "types.parquet");
    assert_eq!(
        batch.columns,
        [
            "id", "name", "score", "ratio", "amount", "ts_ms", "ts_ns", "day", "active", "blob",
            "address", "tags"
        ]
    );
    assert_eq!(
        batch.rows[0],
        vec![
            Value::Integer(1),
            text("Ada"),
            Value::Float(0.25),
            Value::Float(0.1),
            Value::Decimal("-12.34".into()),
            Value::Timestamp(1_714_566_600_123_000),
            Value::Timestamp(1_714_566_600_123_456),
            Value::Date(19_844),
            Value::Boolean(true),
            Value::Bytes(vec![0xde, 0xad]),
            Value::Json(r#"{"city":"Paris","zip":null}"#.into()),
            Value::Json(r#"["a","b"]"#.into()),
        ]
    );
    let mut expected_nulls = vec![Value::Null; 12];
    expected_nulls[0] = Value::Integer(2);
    assert_eq!(batch.rows[1], expected_nulls);
}

/// The Parquet file the host's end-to-end test syncs through the sandbox
/// (`tests/tests/files_types.rs`), committed as
/// `tests/fixtures/every_type.parquet`: it must read back exactly as a file
/// written now by `write_types_parquet`. `SLUICE_WRITE_PARQUET_FIXTURE=1`
/// rewrites it.
#[test]
fn the_hosts_parquet_fixture_is_the_types_file() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/every_type.parquet");
    if std::env::var_os("SLUICE_WRITE_PARQUET_FIXTURE").is_some() {
        std::fs::create_dir_all(fixture.parent().unwrap()).unwrap();
        write_types_parquet(&fixture);
    }
    let dir = dir_with(&[("fixture.parquet", &std::fs::read(&fixture).unwrap())]);
    write_types_parquet(&dir.path().join("fresh.parquet"));
    let cfg = config(&dir, "");
    let (committed, fresh) = (
        read_all(&cfg, "fixture.parquet"),
        read_all(&cfg, "fresh.parquet"),
    );
    assert_eq!(committed.columns, fresh.columns);
    assert_eq!(committed.rows, fresh.rows);
}

#[test]
fn parquet_garbage_is_a_clear_error() {
    let dir = dir_with(&[("bad.parquet", b"this is not parquet at all")]);
    let message = read_err(&config(&dir, ""), "bad.parquet");
    assert!(
        message.starts_with("bad.parquet: not a readable Parquet file"),
        "{message}"
    );
}

/// `n` rows of (id, label) in row groups of at most 10,000 rows.
fn write_sequence_parquet(path: &Path, n: i64) {
    let schema = Arc::new(
        parse_message_type("message m { required int64 id; required binary label (STRING); }")
            .unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_max_row_group_row_count(Some(10_000))
            .build(),
    );
    let mut writer =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    let mut start = 0;
    while start < n {
        let end = (start + 10_000).min(n);
        let mut group = writer.next_row_group().unwrap();
        let mut col = group.next_column().unwrap().unwrap();
        col.typed::<Int64Type>()
            .write_batch(&(start..end).collect::<Vec<_>>(), None, None)
            .unwrap();
        col.close().unwrap();
        let mut col = group.next_column().unwrap().unwrap();
        let labels: Vec<ByteArray> = (start..end)
            .map(|i| ByteArray::from(format!("row-{i}").as_str()))
            .collect();
        col.typed::<ByteArrayType>()
            .write_batch(&labels, None, None)
            .unwrap();
        col.close().unwrap();
        group.close().unwrap();
        start = end;
    }
    writer.close().unwrap();
}

// ---------------------------------------------------------------- streaming

#[test]
fn streams_25000_rows_in_batches_of_1000_in_every_format() {
    const N: i64 = 25_000;
    let csv: String = std::iter::once("id,label\n".to_string())
        .chain((0..N).map(|i| format!("{i},row-{i}\n")))
        .collect();
    let jsonl: String = (0..N)
        .map(|i| format!("{{\"id\":{i},\"label\":\"row-{i}\"}}\n"))
        .collect();
    let dir = dir_with(&[("seq.csv", csv.as_bytes()), ("seq.jsonl", jsonl.as_bytes())]);
    write_sequence_parquet(&dir.path().join("seq.parquet"), N);
    let cfg = config(&dir, r#""columns": {"id": "integer"}"#);
    for name in ["seq.csv", "seq.jsonl", "seq.parquet"] {
        let batches = read_batches(&cfg, name, 1000).unwrap();
        assert_eq!(batches.len(), 25, "{name}");
        assert!(batches.iter().all(|b| b.rows.len() == 1000), "{name}");
        let rows: Vec<&Row> = batches.iter().flat_map(|b| &b.rows).collect();
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row[0], Value::Integer(i as i64), "{name} row {i}");
            assert_eq!(row[1], text(&format!("row-{i}")), "{name} row {i}");
        }
    }
}

#[test]
fn zero_max_rows_is_refused() {
    let dir = dir_with(&[("a.csv", b"x\n1\n")]);
    let mut reader =
        FilesSource::read(&config(&dir, ""), ReadRequest::Object("a.csv".into())).unwrap();
    assert!(matches!(reader.next(0), Err(PluginError::Permanent(_))));
}

// ---------------------------------------------------------------- paths

#[test]
fn object_names_cannot_escape_the_directory() {
    let outer = dir_with(&[
        ("secret.csv", b"s\n1\n"),
        ("data/ok.csv", b"a\n1\n"),
        ("data/sub/in.csv", b"b\n2\n"),
    ]);
    let root = outer.path().join("data");
    let cfg = format!(
        r#"{{"path": {}}}"#,
        serde_json::to_string(root.to_str().unwrap()).unwrap()
    );
    let cases = [
        ("../secret.csv", "`..` is not allowed"),
        ("sub/../../secret.csv", "`..` is not allowed"),
        ("/etc/passwd.csv", "absolute paths are not allowed"),
        ("", "the name is empty"),
        (".", "the name does not name a file"),
    ];
    for (name, why) in cases {
        match FilesSource::read(&cfg, ReadRequest::Object(name.into())) {
            Err(PluginError::Config(m)) => assert!(m.contains(why), "{name}: {m}"),
            Err(other) => panic!("{name}: wrong error {other:?}"),
            Ok(_) => panic!("{name}: should be refused"),
        }
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outer.path().join("secret.csv"), root.join("link.csv")).unwrap();
        match FilesSource::read(&cfg, ReadRequest::Object("link.csv".into())) {
            Err(PluginError::Config(m)) => assert!(m.contains("resolves outside"), "{m}"),
            Err(other) => panic!("wrong error {other:?}"),
            Ok(_) => panic!("a symlink out of the directory should be refused"),
        }
    }
    assert_eq!(read_all(&cfg, "sub/in.csv").rows, vec![vec![text("2")]]);
    assert_eq!(read_all(&cfg, "./ok.csv").rows, vec![vec![text("1")]]);
    assert!(read_err(&cfg, "missing.csv").contains("no file `missing.csv`"));
    assert!(read_err(&cfg, "sub.csv").contains("no file"));
    let m = match FilesSource::read(&cfg, ReadRequest::Object("sub".into())) {
        Err(e) => format!("{e:?}"),
        Ok(_) => panic!("a directory is not an object"),
    };
    assert!(
        m.contains("`sub` in") && m.contains("is not a regular file"),
        "{m}"
    );
}

#[test]
fn queries_are_refused_as_config_errors() {
    let dir = dir_with(&[]);
    match FilesSource::read(&config(&dir, ""), ReadRequest::Query("select 1".into())) {
        Err(PluginError::Config(m)) => {
            assert!(m.contains("reads objects") && m.contains("not SQL"), "{m}")
        }
        _ => panic!("a query must be a config error"),
    }
}

// ---------------------------------------------------------------- config, check, discover, spec

#[test]
fn config_is_strict() {
    let dir = dir_with(&[("notes.txt", b"a\n1\n")]);
    for (extra, needle) in [
        (r#""delimeter": ";""#, "unknown field `delimeter`"),
        (
            r#""delimiter": ";;""#,
            "`delimiter` must be one ASCII character",
        ),
        (r#""format": "xlsx""#, "unknown variant `xlsx`"),
        (r#""columns": {"a": "money"}"#, "unknown variant `money`"),
    ] {
        match FilesSource::check(&config(&dir, extra)) {
            Err(PluginError::Config(m)) => assert!(m.contains(needle), "{extra}: {m}"),
            other => panic!("{extra}: expected a config error, got {other:?}"),
        }
    }
    assert!(read_err(&config(&dir, ""), "notes.txt").contains("set `format`"));
    assert_eq!(
        read_all(&config(&dir, r#""format": "csv""#), "notes.txt").rows,
        vec![vec![text("1")]]
    );
}

#[test]
fn check_needs_a_readable_directory() {
    let dir = dir_with(&[]);
    FilesSource::check(&config(&dir, "")).unwrap();
    let missing = r#"{"path": "/definitely/not/here"}"#;
    match FilesSource::check(missing) {
        Err(PluginError::Config(m)) => assert!(m.contains("dir:/definitely/not/here"), "{m}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn discover_lists_readable_files_with_their_fields() {
    let dir = dir_with(&[
        ("customers.csv", b"id,email,ltv\n1,a@b.c,3.5\n"),
        (
            "events.jsonl",
            b"{\"id\":1,\"score\":1,\"tags\":[1]}\n{\"id\":2,\"score\":1.5,\"extra\":null}\n",
        ),
        ("archive/old.csv", b"x\n"),
        ("README.md", b"# not data\n"),
        (".hidden.csv", b"h\n"),
    ]);
    write_types_parquet(&dir.path().join("types.parquet"));
    let objects = FilesSource::discover(&config(
        &dir,
        r#""columns": {"id": "integer", "ltv": "float"}"#,
    ))
    .unwrap();
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "archive/old.csv",
            "customers.csv",
            "events.jsonl",
            "types.parquet"
        ]
    );
    let fields = |i: usize| -> Vec<(String, FieldType, bool)> {
        objects[i]
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.type_, f.nullable))
            .collect()
    };
    let f = |n: &str, t, nullable| (n.to_string(), t, nullable);
    assert_eq!(
        fields(1),
        [
            f("id", FieldType::Integer, true),
            f("email", FieldType::Text, true),
            f("ltv", FieldType::Float, true)
        ]
    );
    assert_eq!(
        fields(2),
        [
            f("id", FieldType::Integer, false),
            f("score", FieldType::Float, false),
            f("tags", FieldType::Json, true),
            f("extra", FieldType::Any, true),
        ]
    );
    let parquet = fields(3);
    assert_eq!(parquet[0], f("id", FieldType::Integer, false));
    let types: Vec<FieldType> = parquet.iter().map(|p| p.1).collect();
    assert_eq!(
        types,
        [
            FieldType::Integer,
            FieldType::Text,
            FieldType::Float,
            FieldType::Float,
            FieldType::Decimal,
            FieldType::Timestamp,
            FieldType::Timestamp,
            FieldType::Date,
            FieldType::Boolean,
            FieldType::Bytes,
            FieldType::Json,
            FieldType::Json,
        ]
    );
    assert!(objects.iter().all(|o| o.modes.is_empty()));
}

#[test]
fn spec_asks_for_the_configured_directory() {
    let spec = FilesSource::spec();
    assert_eq!(spec.name, "files");
    assert_eq!(spec.capabilities, ["dir:${config.path}"]);
    let schema: serde_json::Value = serde_json::from_str(&spec.config_schema).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["path"]["default"], "/data");
}
