//! Parquet through the `parquet` crate's row API: the footer is read once,
//! then rows stream a row group at a time and, inside a row group, a page at
//! a time per column. Nothing holds more than the pages being decoded.

use bytes::Bytes;
use parquet::basic::{ConvertedType, LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, FileReader, Length, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::Field as PqField;
use parquet::schema::types::{SchemaDescriptor, Type as PqType};
use sluice_sdk::prelude::*;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The file behind a lock, read at explicit offsets. The crate's own
/// `ChunkReader for File` duplicates the descriptor (`try_clone`), which
/// WASI does not offer; seeking before every read works everywhere.
struct SharedFile {
    file: Arc<Mutex<File>>,
    len: u64,
}

/// A reader over `SharedFile` with its own position.
struct FileCursor {
    file: Arc<Mutex<File>>,
    pos: u64,
}

fn poisoned() -> io::Error {
    io::Error::other("file lock poisoned by an earlier panic")
}

impl Read for FileCursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut file = self.file.lock().map_err(|_| poisoned())?;
        file.seek(SeekFrom::Start(self.pos))?;
        let n = file.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Length for SharedFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for SharedFile {
    type T = BufReader<FileCursor>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(BufReader::new(FileCursor {
            file: Arc::clone(&self.file),
            pos: start,
        }))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let mut buffer = vec![0; length];
        let mut file = self.file.lock().map_err(|_| poisoned())?;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buffer)?;
        Ok(Bytes::from(buffer))
    }
}

/// How a top-level column's values are finished after the row API decoded
/// them: the row API leaves a few logical types as their physical values.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Finish {
    AsIs,
    /// INT64 TIMESTAMP(NANOS) arrives as a plain integer.
    TimestampNanos,
    /// INT64 TIME(NANOS) arrives as a plain integer.
    TimeNanos,
    /// FIXED_LEN_BYTE_ARRAY(16) UUID arrives as bytes.
    Uuid,
    /// BYTE_ARRAY JSON arrives as text.
    Json,
}

/// The contract type and finishing step for one top-level schema field.
fn classify(field: &PqType) -> (FieldType, Finish) {
    let info = field.get_basic_info();
    if field.is_group() || (info.has_repetition() && info.repetition() == Repetition::REPEATED) {
        return (FieldType::Json, Finish::AsIs);
    }
    let logical = info.logical_type_ref();
    let nanos = |unit: &TimeUnit| matches!(unit, TimeUnit::NANOS);
    match (field.get_physical_type(), info.converted_type(), logical) {
        (Physical::BOOLEAN, _, _) => (FieldType::Boolean, Finish::AsIs),
        (_, ConvertedType::DECIMAL, _) => (FieldType::Decimal, Finish::AsIs),
        (_, ConvertedType::DATE, _) => (FieldType::Date, Finish::AsIs),
        (_, ConvertedType::TIME_MILLIS | ConvertedType::TIME_MICROS, _) => {
            (FieldType::Text, Finish::AsIs)
        }
        (_, ConvertedType::TIMESTAMP_MILLIS | ConvertedType::TIMESTAMP_MICROS, _) => {
            (FieldType::Timestamp, Finish::AsIs)
        }
        (Physical::INT64, _, Some(LogicalType::Timestamp(t))) if nanos(&t.unit) => {
            (FieldType::Timestamp, Finish::TimestampNanos)
        }
        (Physical::INT64, _, Some(LogicalType::Time(t))) if nanos(&t.unit) => {
            (FieldType::Text, Finish::TimeNanos)
        }
        (Physical::INT96, _, _) => (FieldType::Timestamp, Finish::AsIs),
        (Physical::INT32 | Physical::INT64, _, _) => (FieldType::Integer, Finish::AsIs),
        (Physical::FLOAT | Physical::DOUBLE, _, _) => (FieldType::Float, Finish::AsIs),
        (_, ConvertedType::JSON, _) => (FieldType::Json, Finish::Json),
        (_, ConvertedType::UTF8 | ConvertedType::ENUM, _) => (FieldType::Text, Finish::AsIs),
        (Physical::FIXED_LEN_BYTE_ARRAY, _, Some(LogicalType::Float16)) => {
            (FieldType::Float, Finish::AsIs)
        }
        (Physical::FIXED_LEN_BYTE_ARRAY, _, Some(LogicalType::Uuid)) => {
            (FieldType::Text, Finish::Uuid)
        }
        _ => (FieldType::Bytes, Finish::AsIs),
    }
}

/// The row API panics (`unimplemented!`) on a few physical/converted type
/// pairs; refuse those files up front with the column's name instead.
fn check_supported(schema: &SchemaDescriptor, name: &str) -> Result<(), PluginError> {
    for column in schema.columns() {
        use ConvertedType as C;
        let converted = column.converted_type();
        let ok = match column.physical_type() {
            Physical::BOOLEAN | Physical::INT96 | Physical::FLOAT | Physical::DOUBLE => true,
            Physical::INT32 => matches!(
                converted,
                C::NONE
                    | C::INT_8
                    | C::INT_16
                    | C::INT_32
                    | C::UINT_8
                    | C::UINT_16
                    | C::UINT_32
                    | C::DATE
                    | C::TIME_MILLIS
                    | C::DECIMAL
            ),
            Physical::INT64 => matches!(
                converted,
                C::NONE
                    | C::INT_64
                    | C::UINT_64
                    | C::TIME_MICROS
                    | C::TIMESTAMP_MILLIS
                    | C::TIMESTAMP_MICROS
                    | C::DECIMAL
            ),
            Physical::BYTE_ARRAY => matches!(
                converted,
                C::NONE | C::UTF8 | C::ENUM | C::JSON | C::BSON | C::DECIMAL
            ),
            Physical::FIXED_LEN_BYTE_ARRAY => matches!(converted, C::NONE | C::DECIMAL),
        };
        if !ok {
            return Err(PluginError::Permanent(format!(
                "{name}: column `{}` has physical type {} with annotation {}, which this plugin cannot read",
                column.path(),
                column.physical_type(),
                converted
            )));
        }
    }
    Ok(())
}

fn open_reader(path: &Path, name: &str) -> Result<SerializedFileReader<SharedFile>, PluginError> {
    let file = File::open(path)
        .map_err(|e| PluginError::Permanent(format!("{name}: cannot open: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| PluginError::Permanent(format!("{name}: cannot stat: {e}")))?
        .len();
    let shared = SharedFile {
        file: Arc::new(Mutex::new(file)),
        len,
    };
    let reader = SerializedFileReader::new(shared)
        .map_err(|e| parquet_error(name, "not a readable Parquet file", e))?;
    check_supported(reader.metadata().file_metadata().schema_descr(), name)?;
    Ok(reader)
}

fn parquet_error(name: &str, what: &str, e: ParquetError) -> PluginError {
    let message = e.to_string();
    // The crate names the missing codec; say what would work instead.
    let hint = if message.contains("Disabled feature at compile time") {
        " (this plugin reads uncompressed, snappy, gzip and lz4 Parquet; rewrite the file with one of those)"
    } else {
        ""
    };
    PluginError::Permanent(format!("{name}: {what}: {message}{hint}"))
}

/// The fields of a Parquet file, from its footer alone.
pub fn discover(path: &Path, name: &str) -> Result<Vec<Field>, PluginError> {
    let reader = open_reader(path, name)?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    Ok(schema
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| {
            let info = f.get_basic_info();
            Field {
                name: info.name().to_string(),
                type_: classify(f).0,
                nullable: !(info.has_repetition() && info.repetition() == Repetition::REQUIRED),
                required: false,
                identifier: false,
            }
        })
        .collect())
}

pub struct ParquetReader {
    name: String,
    columns: Vec<String>,
    finish: Vec<Finish>,
    rows: RowIter<'static>,
    rows_read: u64,
}

impl ParquetReader {
    pub fn open(path: &Path, name: &str) -> Result<Self, PluginError> {
        let reader = open_reader(path, name)?;
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let fields = schema.root_schema().get_fields();
        let columns = fields.iter().map(|f| f.name().to_string()).collect();
        let finish = fields.iter().map(|f| classify(f).1).collect();
        Ok(ParquetReader {
            name: name.to_string(),
            columns,
            finish,
            rows: RowIter::from_file_into(Box::new(reader)),
            rows_read: 0,
        })
    }

    pub fn next_batch(&mut self, max_rows: usize) -> Result<Option<Batch>, PluginError> {
        let mut rows = Vec::with_capacity(max_rows.min(64 * 1024));
        while rows.len() < max_rows {
            let Some(row) = self.rows.next() else { break };
            self.rows_read += 1;
            let row =
                row.map_err(|e| parquet_error(&self.name, &format!("row {}", self.rows_read), e))?;
            let values = row
                .into_columns()
                .into_iter()
                .zip(&self.finish)
                .map(|((_, field), finish)| finish_value(field, *finish))
                .collect();
            rows.push(values);
        }
        Ok((!rows.is_empty()).then(|| Batch {
            columns: self.columns.clone(),
            rows,
        }))
    }
}

fn finish_value(field: PqField, finish: Finish) -> Value {
    match (finish, field) {
        (Finish::TimestampNanos, PqField::Long(ns)) => Value::Timestamp(ns.div_euclid(1000)),
        (Finish::TimeNanos, PqField::Long(ns)) => Value::Text(time_text(ns.div_euclid(1000))),
        (Finish::Uuid, PqField::Bytes(b)) if b.len() == 16 => Value::Text(uuid_text(b.data())),
        (Finish::Json, PqField::Str(s)) => Value::Json(s),
        (_, field) => to_value(field),
    }
}

/// The contract value of one decoded Parquet field.
pub fn to_value(field: PqField) -> Value {
    match field {
        PqField::Null => Value::Null,
        PqField::Bool(b) => Value::Boolean(b),
        PqField::Byte(v) => Value::Integer(v.into()),
        PqField::Short(v) => Value::Integer(v.into()),
        PqField::Int(v) => Value::Integer(v.into()),
        PqField::Long(v) => Value::Integer(v),
        PqField::UByte(v) => Value::Integer(v.into()),
        PqField::UShort(v) => Value::Integer(v.into()),
        PqField::UInt(v) => Value::Integer(v.into()),
        // Above i64::MAX a u64 keeps its exact value as a decimal.
        PqField::ULong(v) => i64::try_from(v)
            .map(Value::Integer)
            .unwrap_or_else(|_| Value::Decimal(v.to_string())),
        PqField::Float16(v) => Value::Float(v.to_f64()),
        // Through the shortest decimal form, so 0.1f32 reads as 0.1, not 0.10000000149011612.
        PqField::Float(v) => Value::Float(v.to_string().parse().unwrap_or(v as f64)),
        PqField::Double(v) => Value::Float(v),
        PqField::Decimal(d) => Value::Decimal(decimal_text(d.data(), d.scale())),
        PqField::Str(s) => Value::Text(s),
        PqField::Bytes(b) => Value::Bytes(b.data().to_vec()),
        PqField::Date(d) => Value::Date(d),
        PqField::TimeMillis(ms) => Value::Text(time_text(i64::from(ms) * 1000)),
        PqField::TimeMicros(us) => Value::Text(time_text(us)),
        PqField::TimestampMillis(ms) => Value::Timestamp(ms.saturating_mul(1000)),
        PqField::TimestampMicros(us) => Value::Timestamp(us),
        nested @ (PqField::Group(_) | PqField::ListInternal(_) | PqField::MapInternal(_)) => {
            Value::Json(to_json(&nested).to_string())
        }
    }
}

/// Nested values as JSON; their leaves render like top-level values do
/// (`Value::to_json`: RFC 3339 timestamps, hex bytes, decimals as numbers).
fn to_json(field: &PqField) -> serde_json::Value {
    use serde_json::Value as J;
    match field {
        PqField::Group(row) => J::Object(
            row.get_column_iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        PqField::ListInternal(list) => J::Array(list.elements().iter().map(to_json).collect()),
        PqField::MapInternal(map) => {
            let string_keys = map
                .entries()
                .iter()
                .all(|(k, _)| matches!(k, PqField::Str(_)));
            if string_keys {
                J::Object(
                    map.entries()
                        .iter()
                        .filter_map(|(k, v)| match k {
                            PqField::Str(k) => Some((k.clone(), to_json(v))),
                            _ => None,
                        })
                        .collect(),
                )
            } else {
                // Keys that are not text cannot be JSON keys: keep them as pairs.
                J::Array(
                    map.entries()
                        .iter()
                        .map(|(k, v)| serde_json::json!({"key": to_json(k), "value": to_json(v)}))
                        .collect(),
                )
            }
        }
        leaf => to_value(leaf.clone()).to_json(),
    }
}

/// `HH:MM:SS[.ffffff]` for microseconds since midnight.
fn time_text(micros: i64) -> String {
    let (secs, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if frac == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}.{frac:06}")
    }
}

fn uuid_text(b: &[u8]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A big-endian two's-complement unscaled value and its scale, in plain
/// notation: `([0xfb, 0x2e], 2)` → `"-12.34"`.
pub fn decimal_text(be: &[u8], scale: i32) -> String {
    let negative = be.first().is_some_and(|b| b & 0x80 != 0);
    let digits = if be.len() <= 16 {
        let fill = if negative { 0xff } else { 0 };
        let mut buf = [fill; 16];
        buf[16 - be.len()..].copy_from_slice(be);
        i128::from_be_bytes(buf).unsigned_abs().to_string()
    } else {
        big_magnitude_digits(be, negative)
    };
    place_point(negative && digits != "0", &digits, scale)
}

/// Decimal digits of the magnitude of a long two's-complement number, by
/// schoolbook division by ten (only for values wider than 128 bits).
fn big_magnitude_digits(be: &[u8], negative: bool) -> String {
    let mut mag: Vec<u8> = be.to_vec();
    if negative {
        // Two's complement negation: invert, then add one.
        let mut carry = true;
        for byte in mag.iter_mut().rev() {
            *byte = !*byte;
            if carry {
                let (v, overflow) = byte.overflowing_add(1);
                *byte = v;
                carry = overflow;
            }
        }
    }
    let mut digits = Vec::new();
    while mag.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for byte in mag.iter_mut() {
            let cur = (rem << 8) | u32::from(*byte);
            *byte = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        return "0".into();
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

fn place_point(negative: bool, digits: &str, scale: i32) -> String {
    let sign = if negative { "-" } else { "" };
    if scale <= 0 {
        let zeros = if digits == "0" {
            0
        } else {
            scale.unsigned_abs() as usize
        };
        return format!("{sign}{digits}{}", "0".repeat(zeros));
    }
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_decimals_of_any_width() {
        assert_eq!(decimal_text(&(-1234i32).to_be_bytes(), 2), "-12.34");
        assert_eq!(decimal_text(&5i64.to_be_bytes(), 3), "0.005");
        assert_eq!(decimal_text(&0i32.to_be_bytes(), 2), "0.00");
        assert_eq!(decimal_text(&[0x01, 0x00], 0), "256");
        assert_eq!(decimal_text(&[0x07], -2), "700");
        let mut wide = vec![0xff; 20];
        wide[19] = 0x9c; // -100 in 160 bits
        assert_eq!(decimal_text(&wide, 1), "-10.0");
        let mut big = vec![0u8; 20];
        big[3] = 1; // 2^128
        assert_eq!(
            decimal_text(&big, 0),
            "340282366920938463463374607431768211456"
        );
    }

    #[test]
    fn names_the_codecs_it_can_read_when_one_is_missing() {
        let e = ParquetError::General("Disabled feature at compile time: zstd".into());
        match parquet_error("big.parquet", "row 1", e) {
            PluginError::Permanent(m) => {
                assert!(
                    m.starts_with(
                        "big.parquet: row 1: Parquet error: Disabled feature at compile time: zstd"
                    ),
                    "{m}"
                );
                assert!(m.contains("snappy, gzip and lz4"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn renders_times_and_uuids() {
        assert_eq!(time_text(3_723_000_000), "01:02:03");
        assert_eq!(time_text(3_723_000_042), "01:02:03.000042");
        assert_eq!(
            uuid_text(&[0xab; 16]),
            "abababab-abab-abab-abab-abababababab"
        );
    }
}
