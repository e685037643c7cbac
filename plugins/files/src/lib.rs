//! `files`: a source that reads CSV, JSON Lines and Parquet files from a
//! directory the operator granted (a WASI preopen, `dir:/data` by default).
//! It is the embedded default source for a first run (`sluice demo` reads a
//! `customers.csv` through it).
//!
//! Objects are file names relative to the directory. Every format streams:
//! the reader keeps the file open and decodes at most `max_rows` rows per
//! `next`, so memory follows the batch size, not the file size.
//!
//! Type mapping:
//! - CSV: text, unless `columns` hints a type (text, integer, float,
//!   decimal, boolean, timestamp, date, json); an empty cell is null. A cell
//!   that does not parse as its hint fails the read, naming
//!   `file:line:column`, since a source has no per-row error channel. One
//!   config serves every file in the directory, so a hint naming a column a
//!   file lacks is ignored for that file. Hints do not apply to JSON Lines or
//!   Parquet, which carry their own types.
//! - JSON Lines: string → text, integer → integer (beyond i64 → decimal),
//!   other number → float, bool, null, object/array → json. Columns follow
//!   the order keys are first seen (see `jsonl_file`).
//! - Parquet: ints → integer (u64 beyond i64 → decimal), floats → float,
//!   decimals → decimal text, UTF8/enum byte arrays → text, JSON → json,
//!   UUID → text, other binary → bytes, timestamps (ms/µs/ns, UTC-adjusted
//!   or not) → timestamp µs (ns truncated), legacy INT96 → timestamp at ms
//!   precision (the crate's row API decodes it so), date → date, time →
//!   `HH:MM:SS[.ffffff]` text, groups/lists/maps → json (inside them,
//!   ns timestamps stay integers).
//!
//! Text that is not UTF-8 (CSV or JSON Lines) fails the read with file, line
//! and column rather than being decoded lossily: a silently altered key or
//! e-mail would be synced to the destination as if it were right.

mod cells;
mod config;
mod csv_file;
mod jsonl_file;
mod parquet_file;
mod paths;

pub use config::{ColumnType, Config, Format};
use sluice_sdk::prelude::*;

pub struct FilesSource;

/// An open read of one file.
pub enum FilesReader {
    Csv(csv_file::CsvReader),
    Jsonl(jsonl_file::JsonlReader),
    Parquet(parquet_file::ParquetReader),
}

impl Reader for FilesReader {
    fn next(&mut self, max_rows: u32) -> Result<Option<Batch>, PluginError> {
        if max_rows == 0 {
            // An empty batch is not an end, so honouring 0 would never finish.
            return Err(PluginError::Permanent(
                "next: max_rows must be at least 1".into(),
            ));
        }
        let max_rows = max_rows as usize;
        match self {
            FilesReader::Csv(r) => r.next_batch(max_rows),
            FilesReader::Jsonl(r) => r.next_batch(max_rows),
            FilesReader::Parquet(r) => r.next_batch(max_rows),
        }
    }
}

impl Source for FilesSource {
    type Reader = FilesReader;

    fn spec() -> PluginSpec {
        PluginSpec::new(
            "files",
            env!("CARGO_PKG_VERSION"),
            "Reads CSV, JSON Lines and Parquet files from a granted directory",
        )
        .capability("dir:${config.path}")
        .config_schema(config::schema())
    }

    fn check(config: &str) -> Result<(), PluginError> {
        let config = Config::parse(config)?;
        std::fs::read_dir(&config.path).map_err(|e| paths::dir_error(&config.path, &e))?;
        Ok(())
    }

    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        let config = Config::parse(config)?;
        let mut objects = Vec::new();
        for name in paths::list_files(&config.path)? {
            // Without a `format` override, files of other kinds are not objects.
            let Ok(format) = config.format_of(&name) else {
                continue;
            };
            let path = paths::resolve(&config.path, &name)?;
            let fields = match format {
                Format::Csv => csv_file::discover(&path, &name, &config)?,
                Format::Jsonl => jsonl_file::discover(&path, &name)?,
                Format::Parquet => parquet_file::discover(&path, &name)?,
            };
            objects.push(ObjectInfo {
                name,
                fields,
                modes: Vec::new(),
            });
        }
        Ok(objects)
    }

    fn read(config: &str, request: ReadRequest) -> Result<FilesReader, PluginError> {
        let config = Config::parse(config)?;
        let name = match request {
            ReadRequest::Object(name) => name,
            ReadRequest::Query(_) => {
                return Err(PluginError::Config(
                    "the files source reads objects (file names such as `customers.csv`), not SQL queries; \
                     give the model a table/object instead of a query"
                        .into(),
                ))
            }
        };
        // The name is checked before its extension, so an escape attempt is
        // reported as such whatever it ends with.
        let path = paths::resolve(&config.path, &name)?;
        let format = config.format_of(&name)?;
        Ok(match format {
            Format::Csv => FilesReader::Csv(csv_file::CsvReader::open(&path, &name, &config)?),
            Format::Jsonl => FilesReader::Jsonl(jsonl_file::JsonlReader::open(&path, &name)?),
            Format::Parquet => {
                FilesReader::Parquet(parquet_file::ParquetReader::open(&path, &name)?)
            }
        })
    }
}

sluice_sdk::export_source!(FilesSource);
