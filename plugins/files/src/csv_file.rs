//! CSV, streamed a record at a time. Cells are text unless the config hints
//! a type; an empty cell is null. Bytes that are not UTF-8 stop the read
//! with the file, line and column: guessing an encoding would corrupt data
//! silently.

use crate::cells::parse_cell;
use crate::config::{ColumnType, Config};
use csv::{ByteRecord, ErrorKind};
use sluice_sdk::prelude::*;
use std::fs::File;
use std::path::Path;

pub struct CsvReader {
    name: String,
    reader: csv::Reader<File>,
    columns: Vec<String>,
    hints: Vec<Option<ColumnType>>,
    record: ByteRecord,
}

impl CsvReader {
    pub fn open(path: &Path, name: &str, config: &Config) -> Result<Self, PluginError> {
        let file = File::open(path)
            .map_err(|e| PluginError::Permanent(format!("{name}: cannot open: {e}")))?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(config.delimiter_byte()?)
            .has_headers(config.has_header)
            .from_reader(file);
        // Without a header this peeks at the first record (it is still read
        // as data) only to count the columns.
        let first = reader
            .byte_headers()
            .map_err(|e| csv_error(name, e))?
            .clone();
        let columns = if config.has_header {
            header_names(name, &first)?
        } else {
            (1..=first.len()).map(|i| format!("column_{i}")).collect()
        };
        let hints = columns
            .iter()
            .map(|c| config.columns.get(c).copied())
            .collect();
        Ok(CsvReader {
            name: name.to_string(),
            reader,
            columns,
            hints,
            record: ByteRecord::new(),
        })
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn hints(&self) -> &[Option<ColumnType>] {
        &self.hints
    }

    pub fn next_batch(&mut self, max_rows: usize) -> Result<Option<Batch>, PluginError> {
        let mut rows = Vec::with_capacity(max_rows.min(64 * 1024));
        while rows.len() < max_rows {
            if !self
                .reader
                .read_byte_record(&mut self.record)
                .map_err(|e| csv_error(&self.name, e))?
            {
                break;
            }
            rows.push(self.convert()?);
        }
        Ok((!rows.is_empty()).then(|| Batch {
            columns: self.columns.clone(),
            rows,
        }))
    }

    fn convert(&self) -> Result<Row, PluginError> {
        let line = self.record.position().map_or(0, |p| p.line());
        self.record
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let at = || {
                    format!(
                        "{}:{line}:{} (column {:?})",
                        self.name,
                        i + 1,
                        self.columns[i]
                    )
                };
                let text =
                    utf8(cell).map_err(|why| PluginError::Permanent(format!("{}: {why}", at())))?;
                match self.hints[i] {
                    None if text.is_empty() => Ok(Value::Null),
                    None => Ok(Value::Text(text.to_string())),
                    Some(hint) => parse_cell(text, hint)
                        .map_err(|why| PluginError::Permanent(format!("{}: {why}", at()))),
                }
            })
            .collect()
    }
}

fn utf8(cell: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(cell).map_err(|e| {
        format!(
            "not valid UTF-8 (byte {} of the cell is 0x{:02x}); re-encode the file as UTF-8",
            e.valid_up_to() + 1,
            cell[e.valid_up_to()]
        )
    })
}

/// Column names from the header record: UTF-8, unique; a blank name
/// becomes `column_N`.
fn header_names(name: &str, header: &ByteRecord) -> Result<Vec<String>, PluginError> {
    let line = header.position().map_or(1, |p| p.line());
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    for (i, cell) in header.iter().enumerate() {
        let text = utf8(cell).map_err(|why| {
            PluginError::Permanent(format!("{name}:{line}:{} (header): {why}", i + 1))
        })?;
        let column = if text.trim().is_empty() {
            format!("column_{}", i + 1)
        } else {
            text.to_string()
        };
        if let Some(first) = names.iter().position(|n| *n == column) {
            return Err(PluginError::Permanent(format!(
                "{name}:{line}: column name {column:?} appears twice (columns {} and {}); rename one",
                first + 1,
                i + 1
            )));
        }
        names.push(column);
    }
    Ok(names)
}

fn csv_error(name: &str, e: csv::Error) -> PluginError {
    let line = e.position().map(|p| p.line());
    let at = line.map_or_else(|| name.to_string(), |l| format!("{name}:{l}"));
    match e.kind() {
        ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => PluginError::Permanent(format!(
            "{at}: expected {expected_len} fields like the first record, found {len}"
        )),
        ErrorKind::Io(io) => PluginError::Permanent(format!("{at}: read failed: {io}")),
        _ => PluginError::Permanent(format!("{at}: {e}")),
    }
}

/// The fields of a CSV file: its header (or `column_N`), typed by the hints.
pub fn discover(path: &Path, name: &str, config: &Config) -> Result<Vec<Field>, PluginError> {
    let reader = CsvReader::open(path, name, config)?;
    Ok(reader
        .columns()
        .iter()
        .zip(reader.hints())
        .map(|(column, hint)| Field {
            name: column.clone(),
            type_: hint.map_or(FieldType::Text, ColumnType::field_type),
            nullable: true,
            required: false,
            identifier: false,
        })
        .collect())
}
