//! Delimited text (CSV, semicolon, tab, pipe) read record by record.
//!
//! Memory: the csv crate buffers one record. A guard below it refuses the payload when one
//! record grows past [`Limits::max_record_bytes`] (usually an unbalanced quote), so the
//! buffer stays bounded; a field past [`Limits::max_field_bytes`] rejects its record only.

use crate::encoding::{FieldDecoder, TextInfo, TextInput, TextOptions};
use crate::track::{excerpt_bytes, record_too_large, size, Holdback, TrackState, Tracked};
use crate::{
    FormatError, Limits, RawRecord, ReaderSpec, RecordError, RecordPosition, TextEncoding,
};
use std::io::Read;
use std::sync::{Arc, Mutex};

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

/// Where the header is, how many footer rows to drop, and the limits: the parts of a
/// [`ReaderSpec`] that frame the records of a delimited payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelimitedFraming {
    /// 1-based physical line of the header; the lines above it are skipped.
    pub header_row: usize,
    /// Data records dropped at the end (totals).
    pub footer_rows: usize,
    pub limits: Limits,
}

impl Default for DelimitedFraming {
    fn default() -> Self {
        Self {
            header_row: 1,
            footer_rows: 0,
            limits: Limits::default(),
        }
    }
}

/// Slack for the csv crate's own read-ahead when measuring one record.
const GUARD_SLACK: u64 = 64 * 1024;

/// Reads a header row, then yields one [`RawRecord`] per data row.
pub struct DelimitedReader<R: Read> {
    inner: csv::Reader<Tracked<TextInput<R>>>,
    track: Arc<Mutex<TrackState>>,
    text: TextInfo,
    decoder: FieldDecoder,
    headers: Vec<String>,
    options: DelimitedOptions,
    limits: Limits,
    buffer: csv::ByteRecord,
    holdback: Holdback<Result<RawRecord, RecordError>>,
    /// Data records read (before the footer hold-back), for error messages.
    read: u64,
    failed: bool,
    done: bool,
}

const OTHER_DELIMITERS: &[u8] = b",;\t|";

fn delimiter_name(d: u8) -> String {
    match d {
        b'\t' => "tab".to_owned(),
        other => format!("'{}'", char::from(other)),
    }
}

impl<R: Read> DelimitedReader<R> {
    /// The header on the first line, no footer, default limits.
    pub fn new(source: R, options: DelimitedOptions) -> Result<Self, FormatError> {
        Self::with_framing(source, options, DelimitedFraming::default())
    }

    /// Reads with the delimited-text settings of a [`ReaderSpec`].
    pub fn from_spec(source: R, spec: &ReaderSpec) -> Result<Self, FormatError> {
        Self::with_framing(
            source,
            DelimitedOptions {
                delimiter: spec.delimiter,
                quote: spec.quote,
                encoding: spec.encoding,
            },
            DelimitedFraming {
                header_row: spec.header_row,
                footer_rows: spec.footer_rows,
                limits: spec.limits,
            },
        )
    }

    pub fn with_framing(
        source: R,
        options: DelimitedOptions,
        framing: DelimitedFraming,
    ) -> Result<Self, FormatError> {
        if framing.header_row == 0 {
            return Err(FormatError::Layout(
                "header_row must be 1 or more for delimited text (the line that holds the column names)"
                    .to_owned(),
            ));
        }
        let limits = framing.limits;
        let (input, text) = TextInput::open(
            source,
            TextOptions {
                declared: options.encoding,
                xml: false,
            },
        )?;
        let skip = framing.header_row as u64 - 1;
        let (tracked, track) = Tracked::new(
            input,
            skip,
            Some(limits.max_record_bytes as u64),
            GUARD_SLACK,
        );
        let mut inner = csv::ReaderBuilder::new()
            .delimiter(options.delimiter)
            .quote(options.quote)
            .has_headers(false)
            .flexible(true)
            .from_reader(tracked);
        let mut header = csv::ByteRecord::new();
        let got = inner
            .read_byte_record(&mut header)
            .map_err(|e| map_csv_error(e, framing.header_row as u64, "the header row"))?;
        if !got || header.iter().all(|f| f.is_empty()) {
            let skipped = track.lock().expect("track state lock").skipped_lines;
            if skipped < skip {
                return Err(FormatError::Layout(format!(
                    "header_row is {}, but the payload has only {skipped} line{}",
                    framing.header_row,
                    if skipped == 1 { "" } else { "s" }
                )));
            }
            return Err(FormatError::Empty);
        }
        let decoder = text.decoder;
        let mut headers = Vec::with_capacity(header.len());
        for (i, raw) in header.iter().enumerate() {
            if raw.contains(&0) {
                return Err(FormatError::NotText {
                    expected: "delimited text".to_owned(),
                    reason: "the header row contains NUL bytes (a binary file, or UTF-16 without a byte-order mark? then set encoding = \"utf-16le\")"
                        .to_owned(),
                });
            }
            let name = decoder.decode(raw).map_err(|e| FormatError::NotText {
                expected: "delimited text".to_owned(),
                reason: format!("header column {} is not text: {e}", i + 1),
            })?;
            headers.push(name.trim().to_owned());
        }
        // The next record starts here.
        let end = inner.position().byte();
        track.lock().expect("track state lock").set_mark(end);
        Ok(Self {
            inner,
            track,
            text,
            decoder,
            headers,
            options,
            limits,
            buffer: csv::ByteRecord::new(),
            holdback: Holdback::new(framing.footer_rows),
            read: 0,
            failed: false,
            done: false,
        })
    }

    /// Bytes of the payload consumed so far; for progress reporting. (For UTF-16, which is
    /// transcoded as it is read, the bytes read from the payload, including read-ahead.)
    pub fn byte_offset(&self) -> u64 {
        if self.text.transcoded {
            return self
                .text
                .consumed
                .load(std::sync::atomic::Ordering::Relaxed);
        }
        let skipped = self.track.lock().expect("track state lock").skipped_bytes;
        self.text.bom_len + skipped + self.inner.position().byte()
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

    fn column_name(&self, index: usize) -> String {
        match self.headers.get(index) {
            Some(name) if !name.is_empty() => name.clone(),
            _ => format!("column {}", index + 1),
        }
    }

    fn decode_record(&self, position: RecordPosition) -> Result<RawRecord, RecordError> {
        let max = self.limits.max_field_bytes;
        if let Some((i, raw)) = self
            .buffer
            .iter()
            .enumerate()
            .find(|(_, raw)| raw.len() > max)
        {
            return Err(RecordError {
                position,
                column: Some(self.column_name(i)),
                value: Some(excerpt_bytes(raw)),
                reason: format!(
                    "the value is {}; the largest accepted value is {}",
                    size(raw.len() as u64),
                    size(max as u64)
                ),
            });
        }
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
            match self.decoder.decode(raw) {
                Ok(v) => values.push(v.into_owned()),
                Err(reason) => {
                    return Err(RecordError {
                        position,
                        column: Some(self.column_name(i)),
                        value: Some(excerpt_bytes(raw)),
                        reason,
                    })
                }
            }
        }
        Ok(RawRecord { position, values })
    }

    /// The physical line of the next record, for an error that stops the stream.
    fn next_line(&self) -> u64 {
        let mut track = self.track.lock().expect("track state lock");
        let end = self.inner.position().byte();
        track.line_at(end)
    }
}

fn map_csv_error(e: csv::Error, line: u64, what: &str) -> FormatError {
    // The csv crate's own line numbers skip blank lines and the lines above the header.
    match e.into_kind() {
        csv::ErrorKind::Io(io) => match record_too_large(&io) {
            Some(too_large) => FormatError::Limit(format!(
                "{what} starting at line {line} is larger than {} and its end was not found (an unbalanced quote?); the payload is not read further",
                size(too_large.limit)
            )),
            None => FormatError::Io(io),
        },
        other => FormatError::Malformed {
            format: "delimited text",
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
        if self.failed || self.done {
            return None;
        }
        loop {
            match self.inner.read_byte_record(&mut self.buffer) {
                Ok(false) => {
                    self.done = true;
                    self.holdback.drop_footer();
                    return None;
                }
                Ok(true) => {
                    // The csv crate's record positions include skipped blank lines, so the
                    // start line is derived from where the record ends.
                    let end = self.inner.position().byte();
                    let last = {
                        let mut track = self.track.lock().expect("track state lock");
                        track.set_mark(end);
                        track.last_line_of_record(end)
                    };
                    // Blank lines carry no record.
                    if self.buffer.len() == 1 && self.buffer[0].iter().all(u8::is_ascii_whitespace)
                    {
                        continue;
                    }
                    self.read += 1;
                    let embedded = self
                        .buffer
                        .as_slice()
                        .iter()
                        .filter(|b| **b == b'\n')
                        .count();
                    let line = last.saturating_sub(embedded as u64);
                    // The record number is given when the footer hold-back releases it.
                    let position = RecordPosition { record: 0, line };
                    let item = self.decode_record(position);
                    if let Some(out) = self.holdback.push(item) {
                        return Some(Ok(out));
                    }
                }
                Err(e) => {
                    self.failed = true;
                    let line = self.next_line();
                    let what = format!("record {}", self.read + 1);
                    return Some(Err(map_csv_error(e, line, &what)));
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
            Err(FormatError::NotText { .. })
        ));
    }
}
