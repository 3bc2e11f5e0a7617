//! Delimited text (CSV, semicolon, tab, pipe) read record by record.

use crate::{FormatError, RawRecord, RecordError, RecordPosition, TextEncoding};
use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};

/// Byte offsets of the newlines read so far but not yet passed by a record. The csv crate's
/// own line numbers skip blank lines, and lineage must point at the physical line.
#[derive(Default)]
struct NewlineIndex {
    offset: u64,
    pending: VecDeque<u64>,
    passed: u64,
}

impl NewlineIndex {
    /// 1-based line on which a record ends, given the offset just past its terminator
    /// (a newline at `end - 1` is the record's own, not a line before it); forgets the
    /// newlines before.
    fn last_line_of_record(&mut self, end: u64) -> u64 {
        let content_end = end.saturating_sub(1);
        while self.pending.front().is_some_and(|&nl| nl < content_end) {
            self.pending.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}

struct LineCounting<R> {
    inner: R,
    index: Arc<Mutex<NewlineIndex>>,
}

impl<R: Read> Read for LineCounting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut index = self.index.lock().expect("newline index lock");
        let start = index.offset;
        for (i, _) in buf[..n].iter().enumerate().filter(|(_, b)| **b == b'\n') {
            index.pending.push_back(start + i as u64);
        }
        index.offset += n as u64;
        Ok(n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelimitedOptions {
    pub delimiter: u8,
    pub quote: u8,
    pub encoding: TextEncoding,
}

impl Default for DelimitedOptions {
    fn default() -> Self {
        Self {
            delimiter: b',',
            quote: b'"',
            encoding: TextEncoding::Utf8,
        }
    }
}

/// Reads a header row, then yields one [`RawRecord`] per data row.
pub struct DelimitedReader<R: Read> {
    inner: csv::Reader<LineCounting<R>>,
    lines: Arc<Mutex<NewlineIndex>>,
    headers: Vec<String>,
    options: DelimitedOptions,
    buffer: csv::ByteRecord,
    records: u64,
    failed: bool,
}

const OTHER_DELIMITERS: &[u8] = b",;\t|";

fn delimiter_name(d: u8) -> String {
    match d {
        b'\t' => "tab".to_owned(),
        other => format!("'{}'", char::from(other)),
    }
}

impl<R: Read> DelimitedReader<R> {
    pub fn new(source: R, options: DelimitedOptions) -> Result<Self, FormatError> {
        let lines = Arc::new(Mutex::new(NewlineIndex::default()));
        let mut inner = csv::ReaderBuilder::new()
            .delimiter(options.delimiter)
            .quote(options.quote)
            .has_headers(false)
            .flexible(true)
            .from_reader(LineCounting {
                inner: source,
                index: lines.clone(),
            });
        let mut header = csv::ByteRecord::new();
        let got = inner
            .read_byte_record(&mut header)
            .map_err(|e| map_csv_error(e, 1))?;
        if !got || header.iter().all(|f| f.is_empty()) {
            return Err(FormatError::Empty);
        }
        let mut headers = Vec::with_capacity(header.len());
        for (i, raw) in header.iter().enumerate() {
            let raw = if i == 0 {
                raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
            } else {
                raw
            };
            if raw.contains(&0) {
                return Err(FormatError::NotText(
                    "the header row contains NUL bytes (a binary file, or UTF-16?)".to_owned(),
                ));
            }
            let name = options.encoding.decode(raw).map_err(|e| {
                FormatError::NotText(format!("header column {} is not text: {e}", i + 1))
            })?;
            headers.push(name.trim().to_owned());
        }
        Ok(Self {
            inner,
            lines,
            headers,
            options,
            buffer: csv::ByteRecord::new(),
            records: 0,
            failed: false,
        })
    }

    /// Bytes of the payload consumed so far; for progress reporting.
    pub fn byte_offset(&self) -> u64 {
        self.inner.position().byte()
    }

    /// The header row's column names, trimmed.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// When the header is one column that contains another usual delimiter, the file
    /// was almost certainly written with that delimiter.
    pub fn suspected_delimiter(&self) -> Option<u8> {
        if self.headers.len() != 1 {
            return None;
        }
        OTHER_DELIMITERS
            .iter()
            .copied()
            .filter(|d| *d != self.options.delimiter)
            .find(|d| self.headers[0].as_bytes().contains(d))
    }

    fn decode_record(&self, position: RecordPosition) -> Result<RawRecord, RecordError> {
        if self.buffer.len() != self.headers.len() {
            let mut reason = format!(
                "expected {} fields, found {}",
                self.headers.len(),
                self.buffer.len()
            );
            let line = self.buffer.as_slice();
            if let Some(d) = OTHER_DELIMITERS
                .iter()
                .find(|d| **d != self.options.delimiter && line.contains(d))
                .filter(|_| self.buffer.len() < self.headers.len())
            {
                reason.push_str(&format!(
                    " (the row contains {}; was it written with another delimiter than {}, or cut short?)",
                    delimiter_name(*d),
                    delimiter_name(self.options.delimiter)
                ));
            } else if self.buffer.len() < self.headers.len() {
                reason.push_str(" (the row is cut short)");
            }
            return Err(RecordError {
                position,
                column: None,
                value: None,
                reason,
            });
        }
        let mut values = Vec::with_capacity(self.buffer.len());
        for (i, raw) in self.buffer.iter().enumerate() {
            match self.options.encoding.decode(raw) {
                Ok(v) => values.push(v),
                Err(reason) => {
                    return Err(RecordError {
                        position,
                        column: Some(self.headers[i].clone()),
                        value: Some(String::from_utf8_lossy(raw).into_owned()),
                        reason,
                    })
                }
            }
        }
        Ok(RawRecord { position, values })
    }
}

fn map_csv_error(e: csv::Error, line: u64) -> FormatError {
    let line = e.position().map(|p| p.line()).unwrap_or(line);
    match e.into_kind() {
        csv::ErrorKind::Io(io) => FormatError::Io(io),
        other => FormatError::Malformed {
            line,
            reason: format!("{other:?}"),
        },
    }
}

impl<R: Read> Iterator for DelimitedReader<R> {
    type Item = Result<Result<RawRecord, RecordError>, FormatError>;

    /// `Err(FormatError)` ends the stream (the payload cannot be read further);
    /// `Ok(Err(RecordError))` is one unreadable record.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            match self.inner.read_byte_record(&mut self.buffer) {
                Ok(false) => return None,
                Ok(true) => {
                    // Blank lines carry no record.
                    if self.buffer.len() == 1 && self.buffer[0].iter().all(u8::is_ascii_whitespace)
                    {
                        continue;
                    }
                    self.records += 1;
                    // The csv crate's record positions include skipped blank lines, so the
                    // start line is derived from where the record ends.
                    let end = self.inner.position().byte();
                    let embedded = self
                        .buffer
                        .as_slice()
                        .iter()
                        .filter(|b| **b == b'\n')
                        .count();
                    let last = self
                        .lines
                        .lock()
                        .expect("newline index lock")
                        .last_line_of_record(end);
                    let line = last.saturating_sub(embedded as u64);
                    let position = RecordPosition {
                        record: self.records,
                        line,
                    };
                    return Some(Ok(self.decode_record(position)));
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(map_csv_error(e, 0)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        text: &[u8],
        options: DelimitedOptions,
    ) -> (Vec<String>, Vec<Result<RawRecord, RecordError>>) {
        let reader = DelimitedReader::new(text, options).unwrap();
        let headers = reader.headers().to_vec();
        (headers, reader.map(|r| r.unwrap()).collect())
    }

    #[test]
    fn reads_records_with_positions_and_skips_blank_lines() {
        let (headers, records) = read(
            b"\xEF\xBB\xBFa;b\n1;\"x;y\"\n\n2;3\n4;\"multi\nline\"\n\n\n5;6",
            DelimitedOptions {
                delimiter: b';',
                ..Default::default()
            },
        );
        assert_eq!(headers, ["a", "b"]);
        let ok: Vec<_> = records.into_iter().map(Result::unwrap).collect();
        assert_eq!(ok[0].values, ["1", "x;y"]);
        assert_eq!(ok[1].position, RecordPosition { record: 2, line: 4 });
        assert_eq!(ok[2].position, RecordPosition { record: 3, line: 5 });
        assert_eq!(ok[3].position, RecordPosition { record: 4, line: 9 });
    }

    #[test]
    fn a_row_with_the_wrong_delimiter_is_one_record_error() {
        let (_, records) = read(
            b"a;b;c\n1;2;3\n4,5,6\n7;8;9\n",
            DelimitedOptions {
                delimiter: b';',
                ..Default::default()
            },
        );
        assert!(records[0].is_ok() && records[2].is_ok());
        let err = records[1].as_ref().unwrap_err();
        assert_eq!(err.position.line, 3);
        assert!(err.reason.contains("','"), "{}", err.reason);
    }

    #[test]
    fn a_wrong_delimiter_for_the_whole_file_is_suspected_from_the_header() {
        let reader = DelimitedReader::new(
            &b"a,b,c\n1,2,3\n"[..],
            DelimitedOptions {
                delimiter: b';',
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(reader.suspected_delimiter(), Some(b','));
    }

    #[test]
    fn latin1_fields_decode_and_bad_utf8_names_its_column() {
        let (_, records) = read(
            b"name\nM\xfcller\n",
            DelimitedOptions {
                encoding: TextEncoding::Latin1,
                ..Default::default()
            },
        );
        assert_eq!(records[0].as_ref().unwrap().values, ["Müller"]);
        let (_, records) = read(b"name\nM\xfcller\n", DelimitedOptions::default());
        assert_eq!(
            records[0].as_ref().unwrap_err().column.as_deref(),
            Some("name")
        );
    }

    #[test]
    fn binary_and_empty_payloads_are_format_errors() {
        assert!(matches!(
            DelimitedReader::new(&b""[..], DelimitedOptions::default()),
            Err(FormatError::Empty)
        ));
        assert!(matches!(
            DelimitedReader::new(&b"\x89PNG\0\0\x01"[..], DelimitedOptions::default()),
            Err(FormatError::NotText(_))
        ));
    }
}
