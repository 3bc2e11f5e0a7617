//! Streaming readers that turn a carrier's payload into positioned raw records.
//!
//! Architecture invariant: a reader never holds the whole payload in memory; it yields one
//! record at a time with its position (record number and line), so every later error can
//! point back to its source. A problem with one record is a [`RecordError`] and the stream
//! goes on; only a payload that cannot be read at all is a [`FormatError`].

mod delimited;
mod encoding;
mod sniff;

pub use delimited::{DelimitedOptions, DelimitedReader};
pub use encoding::TextEncoding;
pub use sniff::sniff_binary;

use serde::{Deserialize, Serialize};

/// Where a record sits in its source payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPosition {
    /// 1-based number of the data record (the header is not counted).
    pub record: u64,
    /// 1-based physical line on which the record starts.
    pub line: u64,
}

/// One record as the carrier sent it: decoded text values, in source column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub position: RecordPosition,
    pub values: Vec<String>,
}

/// A record that could not be read; the reader goes on with the next one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {} (line {}){}: {reason}", .position.record, .position.line, .column.as_ref().map(|c| format!(", column '{c}'")).unwrap_or_default())]
pub struct RecordError {
    pub position: RecordPosition,
    pub column: Option<String>,
    /// The raw value, when one column is at fault.
    pub value: Option<String>,
    pub reason: String,
}

/// The payload as a whole cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("cannot read the payload: {0}")]
    Io(#[from] std::io::Error),
    #[error("the payload is empty: no header row")]
    Empty,
    #[error("the payload does not look like delimited text: {0}")]
    NotText(String),
    #[error("unsupported encoding '{0}'; supported: utf-8, iso-8859-1, windows-1252")]
    UnknownEncoding(String),
    #[error("malformed delimited text at line {line}: {reason}")]
    Malformed { line: u64, reason: String },
}
