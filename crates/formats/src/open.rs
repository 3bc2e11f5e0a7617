//! Chooses the reader for a payload's format.

use crate::{
    DelimitedReader, FixedReader, FormatError, JsonReader, NdjsonReader, ReaderSpec, RecordData,
    RecordError, RecordReader, SheetReader, SourceFormat, SourceRecord, Value, XmlReader,
};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// Opens the payload at `path` for reading with `spec`. Reads as little as it must: the
/// header of a tabular payload, the way to the records of a tree payload.
///
/// A payload that is clearly not of the declared format (a PDF, a ZIP sent as CSV, an XLS
/// sent as XLSX) is refused with [`FormatError::NotText`] naming what it is.
pub fn open(spec: &ReaderSpec, path: &Path) -> Result<Box<dyn RecordReader>, FormatError> {
    if spec.format.is_spreadsheet() {
        return Ok(Box::new(SheetReader::open(spec, path)?));
    }
    let mut file = File::open(path)?;
    let mut prefix = Vec::with_capacity(8192);
    (&mut file).take(8192).read_to_end(&mut prefix)?;
    if let Some(what) = crate::sniff::identify(spec.format, &prefix) {
        return Err(FormatError::NotText {
            expected: crate::sniff::format_name(spec.format).to_owned(),
            reason: format!("it is {what}"),
        });
    }
    let source = BufReader::with_capacity(256 * 1024, std::io::Cursor::new(prefix).chain(file));
    Ok(match spec.format {
        SourceFormat::Csv => Box::new(DelimitedReader::from_spec(source, spec)?),
        SourceFormat::Fixed => Box::new(FixedReader::from_spec(source, spec)?),
        SourceFormat::Json => Box::new(JsonReader::new(
            source,
            &spec.records,
            spec.encoding,
            spec.limits,
        )?),
        SourceFormat::Ndjson => Box::new(NdjsonReader::new(source, spec.encoding, spec.limits)?),
        SourceFormat::Xml => Box::new(XmlReader::new(
            source,
            &spec.record_element,
            spec.encoding,
            spec.limits,
        )?),
        SourceFormat::Xlsx | SourceFormat::Xls => unreachable!("handled above"),
    })
}

impl<R: std::io::Read + Send> RecordReader for DelimitedReader<R> {
    fn headers(&self) -> &[String] {
        DelimitedReader::headers(self)
    }

    fn next_record(&mut self) -> Option<Result<Result<SourceRecord, RecordError>, FormatError>> {
        self.next().map(|item| {
            item.map(|record| {
                record.map(|raw| SourceRecord {
                    position: raw.position,
                    data: RecordData::Row(raw.values.into_iter().map(Value::Text).collect()),
                })
            })
        })
    }

    fn byte_offset(&self) -> u64 {
        DelimitedReader::byte_offset(self)
    }

    fn suspected_delimiter(&self) -> Option<u8> {
        DelimitedReader::suspected_delimiter(self)
    }
}
