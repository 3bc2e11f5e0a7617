//! Fixed-width text: each line is one record, cut into columns by a layout of 1-based
//! character positions (counted in characters after decoding, not bytes).

use crate::encoding::{FieldDecoder, TextInfo, TextInput, TextOptions, MALFORMED};
use crate::track::{excerpt, size, Holdback, Line, LineReader};
use crate::{
    FixedColumn, FormatError, ReaderSpec, RecordData, RecordError, RecordPosition, RecordReader,
    SourceRecord, TextEncoding, Value,
};
use std::io::{BufReader, Read};

/// Reads fixed-width lines with a layout.
///
/// `header_row = N` skips the first N lines (the file has no header by default: the layout
/// names the columns). Blank lines carry no record. A line shorter than the layout leaves
/// the missing columns [`Value::Null`] (a column cut short keeps what is there); a line
/// with non-space content beyond the layout's last column is a [`RecordError`]. Values are
/// the raw characters of their columns, spaces included.
pub struct FixedReader<R: Read> {
    lines: LineReader<BufReader<TextInput<R>>>,
    text: TextInfo,
    layout: Layout,
    holdback: Holdback<Result<SourceRecord, RecordError>>,
    max_record_bytes: usize,
    done: bool,
}

struct Layout {
    decoder: FieldDecoder,
    headers: Vec<String>,
    /// 0-based first character and width of each column.
    columns: Vec<(usize, usize)>,
    /// Characters covered by the layout (the end of its last column).
    end: usize,
}

/// Checks a layout: names unique and non-empty, positions and widths at least 1.
pub(crate) fn check_layout(layout: &[FixedColumn]) -> Result<(), FormatError> {
    if layout.is_empty() {
        return Err(FormatError::Layout(
            "a fixed-width source needs a layout: [[source.layout]] name, start, length".to_owned(),
        ));
    }
    for (i, column) in layout.iter().enumerate() {
        if column.name.trim().is_empty() {
            return Err(FormatError::Layout(format!(
                "layout column {} has no name",
                i + 1
            )));
        }
        if column.start == 0 || column.length == 0 {
            return Err(FormatError::Layout(format!(
                "layout column '{}': start and length are 1-based character counts and must be at least 1 (start = {}, length = {})",
                column.name, column.start, column.length
            )));
        }
        if layout[..i]
            .iter()
            .any(|c| c.name.trim().eq_ignore_ascii_case(column.name.trim()))
        {
            return Err(FormatError::Layout(format!(
                "layout column '{}' is named twice",
                column.name
            )));
        }
    }
    Ok(())
}

impl<R: Read> FixedReader<R> {
    pub fn from_spec(source: R, spec: &ReaderSpec) -> Result<Self, FormatError> {
        Self::new(
            source,
            &spec.layout,
            spec.encoding,
            spec.header_row,
            spec.footer_rows,
            spec.limits.max_record_bytes,
        )
    }

    pub fn new(
        source: R,
        layout: &[FixedColumn],
        encoding: TextEncoding,
        skip_lines: usize,
        footer_rows: usize,
        max_record_bytes: usize,
    ) -> Result<Self, FormatError> {
        check_layout(layout)?;
        let (input, text) = TextInput::open(
            source,
            TextOptions {
                declared: encoding,
                xml: false,
            },
        )?;
        let mut lines =
            LineReader::new(BufReader::with_capacity(64 * 1024, input), max_record_bytes);
        for _ in 0..skip_lines {
            if lines.next_line()?.is_none() {
                break;
            }
        }
        let columns: Vec<(usize, usize)> = layout.iter().map(|c| (c.start - 1, c.length)).collect();
        let end = columns.iter().map(|(s, l)| s + l).max().unwrap_or(0);
        Ok(Self {
            lines,
            layout: Layout {
                decoder: text.decoder,
                headers: layout.iter().map(|c| c.name.trim().to_owned()).collect(),
                columns,
                end,
            },
            text,
            holdback: Holdback::new(footer_rows),
            max_record_bytes,
            done: false,
        })
    }

    pub fn headers(&self) -> &[String] {
        &self.layout.headers
    }

    pub fn byte_offset(&self) -> u64 {
        if self.text.transcoded {
            self.text
                .consumed
                .load(std::sync::atomic::Ordering::Relaxed)
        } else {
            self.text.bom_len + self.lines.offset()
        }
    }
}

impl Layout {
    /// The column that holds the 0-based character `at`, for an error message.
    fn column_at(&self, at: usize) -> Option<String> {
        self.columns
            .iter()
            .position(|(s, l)| at >= *s && at < s + l)
            .map(|i| self.headers[i].clone())
    }

    fn record(&self, line: u64, bytes: &[u8]) -> Result<SourceRecord, RecordError> {
        let position = RecordPosition { record: 0, line };
        let text = match self.decoder.decode(bytes) {
            Ok(text) => text,
            Err(reason) => {
                // Find the character where decoding failed, and its column.
                let at = match std::str::from_utf8(bytes) {
                    Err(e) => String::from_utf8_lossy(&bytes[..e.valid_up_to()])
                        .chars()
                        .count(),
                    Ok(s) => s
                        .find(MALFORMED)
                        .map(|i| s[..i].chars().count())
                        .unwrap_or(0),
                };
                return Err(RecordError {
                    position,
                    column: self.column_at(at),
                    value: Some(excerpt(&String::from_utf8_lossy(bytes))),
                    reason: format!("character {} of the line: {reason}", at + 1),
                });
            }
        };
        // Byte offset of each character, plus the end.
        let bounds: Vec<usize> = if text.is_ascii() {
            Vec::new()
        } else {
            text.char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(text.len()))
                .collect()
        };
        let chars = if text.is_ascii() {
            text.len()
        } else {
            bounds.len() - 1
        };
        let byte_at = |c: usize| if text.is_ascii() { c } else { bounds[c] };
        if chars > self.end {
            let rest = &text[byte_at(self.end)..];
            if !rest.trim().is_empty() {
                return Err(RecordError {
                    position,
                    column: None,
                    value: Some(excerpt(rest)),
                    reason: format!(
                        "the line is {chars} characters; the layout ends at {}",
                        self.end
                    ),
                });
            }
        }
        let values = self
            .columns
            .iter()
            .map(|&(start, length)| {
                if start >= chars {
                    Value::Null
                } else {
                    let stop = (start + length).min(chars);
                    Value::Text(text[byte_at(start)..byte_at(stop)].to_owned())
                }
            })
            .collect();
        Ok(SourceRecord {
            position,
            data: RecordData::Row(values),
        })
    }
}

impl<R: Read + Send> RecordReader for FixedReader<R> {
    fn headers(&self) -> &[String] {
        FixedReader::headers(self)
    }

    fn next_record(&mut self) -> Option<Result<Result<SourceRecord, RecordError>, FormatError>> {
        if self.done {
            return None;
        }
        loop {
            let item = match self.lines.next_line() {
                Err(e) => {
                    self.done = true;
                    return Some(Err(FormatError::Io(e)));
                }
                Ok(None) => {
                    self.done = true;
                    self.holdback.drop_footer();
                    return None;
                }
                Ok(Some(Line::TooLong { number, length })) => Err(RecordError {
                    position: RecordPosition {
                        record: 0,
                        line: number,
                    },
                    column: None,
                    value: None,
                    reason: format!(
                        "the line is {}; the largest accepted record is {}",
                        size(length),
                        size(self.max_record_bytes as u64)
                    ),
                }),
                Ok(Some(Line::Text { number, bytes })) => {
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    self.layout.record(number, bytes)
                }
            };
            if let Some(out) = self.holdback.push(item) {
                return Some(Ok(out));
            }
        }
    }

    fn byte_offset(&self) -> u64 {
        FixedReader::byte_offset(self)
    }
}
