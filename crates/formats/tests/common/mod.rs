#![allow(dead_code)]

use carrierhub_formats::{
    open, FormatError, ReaderSpec, RecordData, RecordError, SourceFormat, SourceRecord, Value,
};
use std::path::{Path, PathBuf};

/// Everything a reader yields: its headers, the records (or record errors), and the
/// format error that ended it, if any.
pub struct Read {
    pub headers: Vec<String>,
    pub records: Vec<Result<SourceRecord, RecordError>>,
    pub error: Option<FormatError>,
}

impl Read {
    pub fn ok(&self) -> Vec<&SourceRecord> {
        self.records
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .collect()
    }

    pub fn errors(&self) -> Vec<&RecordError> {
        self.records
            .iter()
            .filter_map(|r| r.as_ref().err())
            .collect()
    }

    /// (record, line) of every item, records and errors alike.
    pub fn positions(&self) -> Vec<(u64, u64)> {
        self.records
            .iter()
            .map(|r| match r {
                Ok(r) => (r.position.record, r.position.line),
                Err(e) => (e.position.record, e.position.line),
            })
            .collect()
    }
}

pub fn read(spec: &ReaderSpec, path: &Path) -> Result<Read, FormatError> {
    let mut reader = open(spec, path)?;
    let headers = reader.headers().to_vec();
    let mut records = Vec::new();
    let mut error = None;
    let mut last_offset = 0;
    while let Some(item) = reader.next_record() {
        let offset = reader.byte_offset();
        assert!(offset >= last_offset, "byte_offset went back");
        last_offset = offset;
        match item {
            Ok(record) => records.push(record),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    Ok(Read {
        headers,
        records,
        error,
    })
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

pub fn spec(format: SourceFormat) -> ReaderSpec {
    ReaderSpec::for_format(format)
}

/// The row of a tabular record as text (null as "∅").
pub fn row_text(record: &SourceRecord) -> Vec<String> {
    match &record.data {
        RecordData::Row(values) => values
            .iter()
            .map(|v| v.as_text().map(|t| t.into_owned()).unwrap_or("∅".into()))
            .collect(),
        RecordData::Tree(_) => panic!("not a row"),
    }
}

pub fn row(record: &SourceRecord) -> &[Value] {
    match &record.data {
        RecordData::Row(values) => values,
        RecordData::Tree(_) => panic!("not a row"),
    }
}

pub fn tree(record: &SourceRecord) -> &Value {
    match &record.data {
        RecordData::Tree(value) => value,
        RecordData::Row(_) => panic!("not a tree"),
    }
}

pub fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

pub fn number(s: &str) -> Value {
    Value::Number(s.to_owned())
}

pub fn utf16le(text: &str, bom: bool) -> Vec<u8> {
    let mut out = if bom { vec![0xFF, 0xFE] } else { Vec::new() };
    out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    out
}

pub fn utf16be(text: &str, bom: bool) -> Vec<u8> {
    let mut out = if bom { vec![0xFE, 0xFF] } else { Vec::new() };
    out.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
    out
}
