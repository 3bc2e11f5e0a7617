//! Streaming readers that turn a carrier's payload into positioned source records.
//!
//! Architecture invariant: a reader never holds the whole payload in memory; it yields one
//! record at a time with its position (record number and line), so every later error can
//! point back to its source. A problem with one record is a [`RecordError`] and the stream
//! goes on; only a payload that cannot be read at all is a [`FormatError`]. Every reader
//! enforces [`Limits`], so a hostile payload (a zip bomb, entity expansion, a 10 MB field,
//! JSON nested 100,000 deep) ends in a clear error with bounded memory, never a crash.
//!
//! [`open`] picks the reader for a [`ReaderSpec`]:
//!
//! | format | reader | one record is | memory |
//! |---|---|---|---|
//! | csv | [`DelimitedReader`] | a row (decoded per field) | one record (≤ `max_record_bytes`) |
//! | fixed | [`FixedReader`] | a line cut by the layout | one line (≤ `max_record_bytes`) |
//! | xlsx | [`SheetReader`] | a non-empty row | one row, plus the shared-strings table |
//! | xls | [`SheetReader`] | a non-empty row | the whole workbook (BIFF is not streamable) |
//! | json | [`JsonReader`] | an element of the array at `records` | one element (≤ `max_record_bytes`) |
//! | ndjson | [`NdjsonReader`] | a non-blank line | one line (≤ `max_record_bytes`) |
//! | xml | [`XmlReader`] | an occurrence of `record_element` | one record (≤ `max_record_bytes`) |
//!
//! Text payloads may be UTF-8, UTF-16 (transcoded as a stream), ISO-8859-1 or
//! Windows-1252; a byte-order mark always wins over the declared encoding.

mod delimited;
mod encoding;
mod fixed;
mod json;
mod open;
mod sheet;
mod sniff;
mod track;
mod value;
mod xml;

pub use delimited::{DelimitedFraming, DelimitedOptions, DelimitedReader};
pub use encoding::TextEncoding;
pub use fixed::FixedReader;
pub use json::{JsonReader, NdjsonReader};
pub use open::open;
pub use sheet::SheetReader;
pub use sniff::{sniff, sniff_binary};
pub use value::Value;
pub use xml::XmlReader;

use serde::{Deserialize, Serialize};

/// Where a record sits in its source payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPosition {
    /// 1-based number of the data record (headers are not counted), across all sheets.
    pub record: u64,
    /// 1-based physical line on which the record starts (for spreadsheets: the row number
    /// within its sheet).
    pub line: u64,
}

/// One record as the carrier sent it: decoded text values, in source column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub position: RecordPosition,
    pub values: Vec<String>,
}

/// The contents of one source record.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordData {
    /// Tabular formats (delimited, fixed-width, spreadsheets): one value per column of
    /// [`RecordReader::headers`], in that order.
    Row(Vec<Value>),
    /// Tree formats (JSON, NDJSON, XML): the record's value, usually a [`Value::Map`].
    Tree(Value),
}

/// One record read from a payload, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    pub position: RecordPosition,
    pub data: RecordData,
}

/// A record that could not be read; the reader goes on with the next one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {} (line {}){}: {reason}", .position.record, .position.line, .column.as_ref().map(|c| format!(", column '{c}'")).unwrap_or_default())]
pub struct RecordError {
    pub position: RecordPosition,
    pub column: Option<String>,
    /// The raw value, when one column is at fault (cut to a readable length).
    pub value: Option<String>,
    pub reason: String,
}

/// The payload as a whole cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("cannot read the payload: {0}")]
    Io(#[from] std::io::Error),
    #[error("the payload is empty: there is no header row or record to read")]
    Empty,
    #[error("the payload does not look like {expected}: {reason}")]
    NotText { expected: String, reason: String },
    #[error("unsupported encoding '{0}'; supported: utf-8, utf-16, utf-16le, utf-16be, iso-8859-1, windows-1252")]
    UnknownEncoding(String),
    #[error("malformed {format} at line {line}: {reason}")]
    Malformed {
        format: &'static str,
        line: u64,
        reason: String,
    },
    /// A limit of [`Limits`] was reached: the payload is refused rather than read further.
    #[error("refused: {0}")]
    Limit(String),
    /// The reader's options do not fit the payload (no such sheet, no array at the path…).
    #[error("{0}")]
    Layout(String),
}

/// The physical format of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// Delimited text: CSV, semicolon, tab, pipe.
    #[default]
    Csv,
    /// Fixed-width text with a layout of column ranges.
    Fixed,
    /// Office Open XML workbook.
    Xlsx,
    /// Legacy Excel 97-2003 workbook (BIFF8).
    Xls,
    /// A JSON document: an array of records, or records in an array under a path.
    Json,
    /// Newline-delimited JSON: one record per line.
    Ndjson,
    /// XML: each occurrence of a repeated element is a record.
    Xml,
}

impl SourceFormat {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Fixed => "fixed",
            Self::Xlsx => "xlsx",
            Self::Xls => "xls",
            Self::Json => "json",
            Self::Ndjson => "ndjson",
            Self::Xml => "xml",
        }
    }

    /// Tabular formats have a header of columns; tree formats are read by path.
    pub fn is_tabular(&self) -> bool {
        matches!(self, Self::Csv | Self::Fixed | Self::Xlsx | Self::Xls)
    }

    /// Spreadsheets carry typed cells (numbers, real dates).
    pub fn is_spreadsheet(&self) -> bool {
        matches!(self, Self::Xlsx | Self::Xls)
    }
}

impl std::str::FromStr for SourceFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" | "delimited" | "tsv" => Ok(Self::Csv),
            "fixed" | "fixed-width" | "fixed_width" => Ok(Self::Fixed),
            "xlsx" => Ok(Self::Xlsx),
            "xls" => Ok(Self::Xls),
            "json" => Ok(Self::Json),
            "ndjson" | "jsonl" | "json-lines" => Ok(Self::Ndjson),
            "xml" => Ok(Self::Xml),
            other => Err(format!(
                "source.format '{other}' is not supported; supported: csv, fixed, xlsx, xls, json, ndjson, xml"
            )),
        }
    }
}

/// One column of a fixed-width layout: characters `start ..= start + length - 1`, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedColumn {
    pub name: String,
    /// 1-based position of the column's first character.
    pub start: usize,
    /// Width in characters.
    pub length: usize,
}

/// Bounds every reader enforces; a payload beyond them is refused with a clear error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single field or cell, in bytes; a larger one rejects its record.
    pub max_field_bytes: usize,
    /// Largest single record (a JSON object, an XML element, a row), in bytes; a larger one
    /// rejects its record, or the payload when the record's end cannot be found.
    pub max_record_bytes: usize,
    /// Deepest nesting of JSON arrays/objects or XML elements.
    pub max_depth: usize,
    /// Largest total uncompressed size of a workbook's parts (zip bombs).
    pub max_uncompressed_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_field_bytes: 1 << 20,
            max_record_bytes: 16 << 20,
            max_depth: 64,
            max_uncompressed_bytes: 1 << 30,
        }
    }
}

/// How to read a payload: the `[source]` section of a mapping, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ReaderSpec {
    pub format: SourceFormat,
    /// Delimited text: the delimiter byte.
    pub delimiter: u8,
    /// Delimited text: the quote byte.
    pub quote: u8,
    /// Text formats: the declared encoding. A byte-order mark overrides it (UTF-8 and UTF-16
    /// marks are recognised and removed).
    pub encoding: TextEncoding,
    /// Tabular formats: the 1-based line (row, for spreadsheets) that holds the header;
    /// everything above it is skipped (titles, report dates). Fixed-width text has no
    /// header line: there `header_row = N` skips the first N lines, and the default is 0
    /// (see [`ReaderSpec::for_format`]; [`ReaderSpec::default`] is for CSV).
    pub header_row: usize,
    /// Tabular formats: this many data records at the end are dropped (total rows).
    pub footer_rows: usize,
    /// Spreadsheets: the sheets to read, in order; empty means the first sheet. Later
    /// sheets' columns are matched to the first sheet's header by name.
    pub sheets: Vec<String>,
    /// JSON: a JSON pointer (`/data/policies`) to the array of records; empty means the
    /// document itself is the array.
    pub records: String,
    /// XML: the element that is one record, by name (`Policy`) or path (`Bordereau/Policy`).
    pub record_element: String,
    /// Fixed-width: the layout.
    pub layout: Vec<FixedColumn>,
    pub limits: Limits,
}

impl Default for ReaderSpec {
    fn default() -> Self {
        Self {
            format: SourceFormat::Csv,
            delimiter: b',',
            quote: b'"',
            encoding: TextEncoding::Utf8,
            header_row: 1,
            footer_rows: 0,
            sheets: Vec::new(),
            records: String::new(),
            record_element: String::new(),
            layout: Vec::new(),
            limits: Limits::default(),
        }
    }
}

impl ReaderSpec {
    /// The defaults for `format`: as [`ReaderSpec::default`], except that fixed-width text
    /// has no header line (`header_row = 0`).
    pub fn for_format(format: SourceFormat) -> Self {
        Self {
            format,
            header_row: if format == SourceFormat::Fixed { 0 } else { 1 },
            ..Self::default()
        }
    }
}

/// A stream of records from one payload.
pub trait RecordReader: Send {
    /// Column names of a tabular payload, trimmed, in order; empty for tree formats.
    fn headers(&self) -> &[String];

    /// The next record. `None` ends the stream; `Some(Err(FormatError))` also ends it (the
    /// payload cannot be read further); `Some(Ok(Err(RecordError)))` is one unreadable
    /// record and the stream goes on.
    #[allow(clippy::type_complexity)]
    fn next_record(&mut self) -> Option<Result<Result<SourceRecord, RecordError>, FormatError>>;

    /// Bytes of the payload consumed so far, for progress reporting (an estimate for
    /// compressed workbooks).
    fn byte_offset(&self) -> u64;

    /// Delimited text only: when the header looks written with another usual delimiter.
    fn suspected_delimiter(&self) -> Option<u8> {
        None
    }

    /// Spreadsheets only: the sheet of the record (or record error) last returned, whose
    /// row its position's `line` is.
    fn sheet(&self) -> Option<&str> {
        None
    }
}
