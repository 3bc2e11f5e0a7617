//! JSON and NDJSON, streamed.
//!
//! A JSON payload is never parsed as a whole. A byte-level scanner (strings with escapes,
//! bracket depth as a counter, so any depth costs no stack) walks to the array at the
//! `records` pointer and finds each element's extent; only that element is buffered (at
//! most [`Limits::max_record_bytes`]) and parsed, by a small recursive-descent parser that
//! refuses nesting deeper than [`Limits::max_depth`] before it recurses. Numbers keep the
//! digits the payload wrote (never through `f64`). An element that does not parse is a
//! [`RecordError`] and the scanner goes on with the next one; a broken *structure* (between
//! elements) is a [`FormatError::Malformed`].

use crate::encoding::{FieldDecoder, TextInfo, TextInput, TextOptions};
use crate::track::{excerpt, size, Line, LineReader};
use crate::{
    FormatError, Limits, RecordData, RecordError, RecordPosition, RecordReader, SourceRecord,
    TextEncoding, Value,
};
use std::io::{self, BufReader, Read};

/// Bytes of a payload with the line of the next byte.
struct Scanner<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Bytes consumed before `buf[pos]`.
    offset: u64,
    /// 1-based line of the next byte.
    line: u64,
    /// Offset of the first byte of the current line.
    line_start: u64,
}

impl<R: Read> Scanner<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            pos: 0,
            end: 0,
            offset: 0,
            line: 1,
            line_start: 0,
        }
    }

    #[inline]
    fn peek(&mut self) -> io::Result<Option<u8>> {
        if self.pos < self.end {
            return Ok(Some(self.buf[self.pos]));
        }
        self.fill()
    }

    #[cold]
    fn fill(&mut self) -> io::Result<Option<u8>> {
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    self.pos = 0;
                    self.end = n;
                    return Ok(Some(self.buf[0]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Consumes the byte `peek` returned.
    #[inline]
    fn bump(&mut self) {
        if self.buf[self.pos] == b'\n' {
            self.line += 1;
            self.line_start = self.offset + 1;
        }
        self.pos += 1;
        self.offset += 1;
    }

    #[inline]
    fn next(&mut self) -> io::Result<Option<u8>> {
        let b = self.peek()?;
        if b.is_some() {
            self.bump();
        }
        Ok(b)
    }

    fn skip_ws(&mut self) -> io::Result<Option<u8>> {
        while let Some(b) = self.peek()? {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.bump();
            } else {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }
}

/// What a value that starts with `b` is, for messages.
fn kind_of(b: u8) -> &'static str {
    match b {
        b'{' => "an object",
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        b'-' | b'0'..=b'9' => "a number",
        _ => "not JSON",
    }
}

fn malformed(line: u64, reason: impl Into<String>) -> FormatError {
    FormatError::Malformed {
        format: "JSON",
        line,
        reason: reason.into(),
    }
}

/// Where the scanner stands between records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    First,
    Next,
    Done,
}

/// Reads the records of a JSON document: the array at a JSON pointer.
pub struct JsonReader<R: Read> {
    src: Scanner<TextInput<R>>,
    text: TextInfo,
    decoder: FieldDecoder,
    limits: Limits,
    /// Nesting depth of the records themselves (the array is one level above).
    record_depth: usize,
    state: State,
    records: u64,
    element: Vec<u8>,
}

/// What scanning one value found.
struct Scanned {
    /// Bytes of the value (all of them, even past the capture limit).
    length: u64,
}

impl<R: Read> JsonReader<R> {
    /// Opens the payload and walks to the array at `pointer` (`""`: the document itself).
    pub fn new(
        source: R,
        pointer: &str,
        encoding: TextEncoding,
        limits: Limits,
    ) -> Result<Self, FormatError> {
        let (input, text) = TextInput::open(
            source,
            TextOptions {
                declared: encoding,
                xml: false,
            },
        )?;
        let mut reader = Self {
            src: Scanner::new(input),
            decoder: text.decoder,
            text,
            limits,
            record_depth: 0,
            state: State::First,
            records: 0,
            element: Vec::new(),
        };
        let array_depth = reader.navigate(pointer)?;
        reader.record_depth = array_depth + 1;
        Ok(reader)
    }

    pub fn byte_offset(&self) -> u64 {
        if self.text.transcoded {
            self.text
                .consumed
                .load(std::sync::atomic::Ordering::Relaxed)
        } else {
            self.text.bom_len + self.src.offset
        }
    }

    /// Walks from the document's start to the `[` of the array at `pointer`, consuming it.
    /// Returns the array's depth (the document's root is depth 1).
    fn navigate(&mut self, pointer: &str) -> Result<usize, FormatError> {
        let segments: Vec<String> = if pointer.is_empty() || pointer == "/" {
            Vec::new()
        } else {
            pointer
                .strip_prefix('/')
                .unwrap_or(pointer)
                .split('/')
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect()
        };
        let shown = |n: usize| -> String {
            if n == 0 {
                "the document".to_owned()
            } else {
                format!("'/{}'", segments[..n].join("/"))
            }
        };
        let mut depth = 0;
        for (n, segment) in segments.iter().enumerate() {
            let Some(b) = self.src.skip_ws()? else {
                return Err(if n == 0 {
                    FormatError::Empty
                } else {
                    malformed(self.src.line, "the document ends early")
                });
            };
            match b {
                b'{' => {
                    self.src.bump();
                    depth += 1;
                    let mut keys: Vec<String> = Vec::new();
                    loop {
                        let line = self.src.line;
                        match self.src.skip_ws()? {
                            Some(b'}') => {
                                return Err(FormatError::Layout(format!(
                                "records = '{pointer}': the object at {} has no key '{segment}'{}",
                                shown(n),
                                if keys.is_empty() {
                                    " (it is empty)".to_owned()
                                } else {
                                    format!("; its keys: {}", keys.join(", "))
                                }
                            )))
                            }
                            Some(b'"') => {}
                            Some(other) => {
                                return Err(malformed(
                                    line,
                                    format!(
                                        "expected a key in quotes, found '{}'",
                                        char::from(other)
                                    ),
                                ))
                            }
                            None => {
                                return Err(malformed(line, "the document ends inside an object"))
                            }
                        }
                        let key = self.read_key()?;
                        match self.src.skip_ws()? {
                            Some(b':') => self.src.bump(),
                            _ => {
                                return Err(malformed(
                                    self.src.line,
                                    format!("expected ':' after the key '{}'", excerpt(&key)),
                                ))
                            }
                        }
                        if key == *segment {
                            break;
                        }
                        if keys.len() < 20 {
                            keys.push(format!("'{}'", excerpt(&key)));
                        }
                        self.skip_ws_then_value(None)?;
                        match self.src.skip_ws()? {
                            Some(b',') => self.src.bump(),
                            Some(b'}') => {}
                            _ => {
                                return Err(malformed(
                                    self.src.line,
                                    "expected ',' or '}' after an object member",
                                ))
                            }
                        }
                    }
                }
                b'[' => {
                    let Ok(index) = segment.parse::<usize>() else {
                        return Err(FormatError::Layout(format!(
                            "records = '{pointer}': {} is an array, and '{segment}' is not an index",
                            shown(n)
                        )));
                    };
                    self.src.bump();
                    depth += 1;
                    for i in 0..=index {
                        if self.src.skip_ws()? == Some(b']') {
                            return Err(FormatError::Layout(format!(
                                "records = '{pointer}': the array at {} has only {i} element{}",
                                shown(n),
                                if i == 1 { "" } else { "s" }
                            )));
                        }
                        if i == index {
                            break;
                        }
                        self.skip_ws_then_value(None)?;
                        match self.src.skip_ws()? {
                            Some(b',') => self.src.bump(),
                            Some(b']') => {}
                            _ => {
                                return Err(malformed(
                                    self.src.line,
                                    "expected ',' or ']' after an array element",
                                ))
                            }
                        }
                    }
                }
                other => {
                    return Err(FormatError::Layout(format!(
                        "records = '{pointer}': {} is {}, not an object or array",
                        shown(n),
                        kind_of(other)
                    )))
                }
            }
        }
        match self.src.skip_ws()? {
            Some(b'[') => {
                self.src.bump();
                Ok(depth + 1)
            }
            None if segments.is_empty() => Err(FormatError::Empty),
            None => Err(malformed(self.src.line, "the document ends early")),
            Some(other) => Err(FormatError::Layout(if segments.is_empty() {
                format!(
                    "the document is {}, not an array of records{}",
                    kind_of(other),
                    if other == b'{' {
                        "; set records to the JSON pointer of the array (\"/data/policies\")"
                    } else {
                        ""
                    }
                )
            } else {
                format!(
                    "records = '{pointer}': the value there is {}, not an array of records",
                    kind_of(other)
                )
            })),
        }
    }

    /// Reads an object key (the scanner is at its opening quote).
    fn read_key(&mut self) -> Result<String, FormatError> {
        let line = self.src.line;
        let mut raw = Vec::new();
        let limit = self.limits.max_field_bytes;
        self.scan_value(Some((&mut raw, limit)))?;
        if raw.len() > limit {
            return Err(FormatError::Limit(format!(
                "an object key at line {line} is longer than {}",
                size(limit as u64)
            )));
        }
        let mut parser = Parser::new(&raw, self.decoder, self.limits, line);
        parser.string().map_err(|e| malformed(line, e.message))
    }

    fn skip_ws_then_value(
        &mut self,
        capture: Option<(&mut Vec<u8>, usize)>,
    ) -> Result<Scanned, FormatError> {
        self.src.skip_ws()?;
        self.scan_value(capture)
    }

    /// Scans one value from the scanner's position, copying at most `limit` bytes of it
    /// into the capture buffer. Nesting is a counter: any depth is fine here.
    fn scan_value(
        &mut self,
        mut capture: Option<(&mut Vec<u8>, usize)>,
    ) -> Result<Scanned, FormatError> {
        let start_line = self.src.line;
        let mut length: u64 = 0;
        macro_rules! take {
            ($b:expr) => {{
                length += 1;
                if let Some((buf, limit)) = capture.as_mut() {
                    if buf.len() <= *limit {
                        buf.push($b);
                    }
                }
            }};
        }
        let Some(first) = self.src.peek()? else {
            return Err(malformed(
                start_line,
                "expected a value, found the end of the payload",
            ));
        };
        match first {
            b'{' | b'[' => {
                let mut depth: u64 = 0;
                loop {
                    let Some(b) = self.src.next()? else {
                        return Err(malformed(
                            self.src.line,
                            format!(
                                "the payload ends inside {} that starts at line {start_line}",
                                kind_of(first)
                            ),
                        ));
                    };
                    take!(b);
                    match b {
                        b'"' => self.scan_string_rest(&mut capture, &mut length, start_line)?,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            b'"' => {
                self.src.bump();
                take!(b'"');
                self.scan_string_rest(&mut capture, &mut length, start_line)?;
            }
            b',' | b']' | b'}' | b':' => {
                return Err(malformed(
                    start_line,
                    format!("expected a value, found '{}'", char::from(first)),
                ));
            }
            _ => {
                // A scalar: up to the next delimiter.
                while let Some(b) = self.src.peek()? {
                    if matches!(
                        b,
                        b',' | b']'
                            | b'}'
                            | b' '
                            | b'\t'
                            | b'\n'
                            | b'\r'
                            | b'{'
                            | b'['
                            | b'"'
                            | b':'
                    ) {
                        break;
                    }
                    self.src.bump();
                    take!(b);
                }
            }
        }
        Ok(Scanned { length })
    }

    /// The rest of a string after its opening quote.
    fn scan_string_rest(
        &mut self,
        capture: &mut Option<(&mut Vec<u8>, usize)>,
        length: &mut u64,
        start_line: u64,
    ) -> Result<(), FormatError> {
        let mut escaped = false;
        loop {
            let Some(b) = self.src.next()? else {
                return Err(malformed(
                    self.src.line,
                    format!(
                        "the payload ends inside a string (the value starts at line {start_line})"
                    ),
                ));
            };
            *length += 1;
            if let Some((buf, limit)) = capture.as_mut() {
                if buf.len() <= *limit {
                    buf.push(b);
                }
            }
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                return Ok(());
            }
        }
    }
}

impl<R: Read + Send> RecordReader for JsonReader<R> {
    fn headers(&self) -> &[String] {
        &[]
    }

    fn next_record(&mut self) -> Option<Result<Result<SourceRecord, RecordError>, FormatError>> {
        let result = self.next_inner();
        if matches!(result, Some(Err(_))) {
            self.state = State::Done;
        }
        result
    }

    fn byte_offset(&self) -> u64 {
        JsonReader::byte_offset(self)
    }
}

impl<R: Read> JsonReader<R> {
    fn next_inner(&mut self) -> Option<Result<Result<SourceRecord, RecordError>, FormatError>> {
        if self.state == State::Done {
            return None;
        }
        let step = (|| -> Result<bool, FormatError> {
            let line = self.src.line;
            match self.src.skip_ws()? {
                Some(b']') => {
                    self.src.bump();
                    Ok(false)
                }
                Some(b',') if self.state == State::Next => {
                    self.src.bump();
                    if self.src.skip_ws()? == Some(b']') {
                        return Err(malformed(
                            self.src.line,
                            format!("a ',' after record {} is followed by ']'", self.records),
                        ));
                    }
                    Ok(true)
                }
                Some(_) if self.state == State::First => Ok(true),
                Some(other) => Err(malformed(
                    self.src.line,
                    format!(
                        "expected ',' or ']' after record {}, found '{}'",
                        self.records,
                        char::from(other)
                    ),
                )),
                None => Err(malformed(
                    line,
                    "the payload ends inside the array of records (is it cut short?)",
                )),
            }
        })();
        match step {
            Err(e) => return Some(Err(e)),
            Ok(false) => {
                self.state = State::Done;
                return None;
            }
            Ok(true) => {}
        }
        self.state = State::Next;
        self.records += 1;
        let line = self.src.line;
        let column = (self.src.offset - self.src.line_start) as usize;
        let position = RecordPosition {
            record: self.records,
            line,
        };
        let limit = self.limits.max_record_bytes;
        let mut element = std::mem::take(&mut self.element);
        element.clear();
        let scanned = match self.scan_value(Some((&mut element, limit))) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let result = if scanned.length > limit as u64 {
            Err(RecordError {
                position,
                column: None,
                value: None,
                reason: format!(
                    "the record is {}; the largest accepted record is {}",
                    size(scanned.length),
                    size(limit as u64)
                ),
            })
        } else {
            Parser::new(&element, self.decoder, self.limits, line)
                .starting_at_column(column)
                .document(self.record_depth)
                .map(|value| SourceRecord {
                    position,
                    data: RecordData::Tree(value),
                })
                .map_err(|e| e.into_record_error(position))
        };
        // Keep the buffer unless one huge record inflated it.
        if element.capacity() <= 1 << 20 {
            self.element = element;
        }
        Some(Ok(result))
    }
}

/// Reads NDJSON: one JSON value per non-blank line.
pub struct NdjsonReader<R: Read> {
    lines: LineReader<BufReader<TextInput<R>>>,
    text: TextInfo,
    decoder: FieldDecoder,
    limits: Limits,
    records: u64,
    done: bool,
}

impl<R: Read> NdjsonReader<R> {
    pub fn new(source: R, encoding: TextEncoding, limits: Limits) -> Result<Self, FormatError> {
        let (input, text) = TextInput::open(
            source,
            TextOptions {
                declared: encoding,
                xml: false,
            },
        )?;
        Ok(Self {
            lines: LineReader::new(
                BufReader::with_capacity(64 * 1024, input),
                limits.max_record_bytes,
            ),
            decoder: text.decoder,
            text,
            limits,
            records: 0,
            done: false,
        })
    }
}

impl<R: Read + Send> RecordReader for NdjsonReader<R> {
    fn headers(&self) -> &[String] {
        &[]
    }

    fn next_record(&mut self) -> Option<Result<Result<SourceRecord, RecordError>, FormatError>> {
        if self.done {
            return None;
        }
        loop {
            let line = match self.lines.next_line() {
                Err(e) => {
                    self.done = true;
                    return Some(Err(FormatError::Io(e)));
                }
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Ok(Some(line)) => line,
            };
            match line {
                Line::TooLong { number, length } => {
                    self.records += 1;
                    return Some(Ok(Err(RecordError {
                        position: RecordPosition {
                            record: self.records,
                            line: number,
                        },
                        column: None,
                        value: None,
                        reason: format!(
                            "the line is {}; the largest accepted record is {}",
                            size(length),
                            size(self.limits.max_record_bytes as u64)
                        ),
                    })));
                }
                Line::Text { number, bytes } => {
                    if bytes
                        .iter()
                        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                    {
                        continue;
                    }
                    self.records += 1;
                    let position = RecordPosition {
                        record: self.records,
                        line: number,
                    };
                    let result = Parser::new(bytes, self.decoder, self.limits, number)
                        .document(1)
                        .map(|value| SourceRecord {
                            position,
                            data: RecordData::Tree(value),
                        })
                        .map_err(|e| e.into_record_error(position));
                    return Some(Ok(result));
                }
            }
        }
    }

    fn byte_offset(&self) -> u64 {
        if self.text.transcoded {
            self.text
                .consumed
                .load(std::sync::atomic::Ordering::Relaxed)
        } else {
            self.text.bom_len + self.lines.offset()
        }
    }
}

/// A problem in one JSON value.
#[derive(Debug)]
struct ParseError {
    message: String,
    /// The path of the member at fault, when one value (not the syntax) is the problem.
    path: Option<String>,
    line: u64,
    column: usize,
}

impl ParseError {
    fn into_record_error(self, position: RecordPosition) -> RecordError {
        match self.path {
            Some(path) => RecordError {
                position,
                column: Some(path),
                value: None,
                reason: self.message,
            },
            None => RecordError {
                position,
                column: None,
                value: None,
                reason: format!(
                    "invalid JSON at line {}, column {}: {}",
                    self.line, self.column, self.message
                ),
            },
        }
    }
}

/// Parses one buffered JSON value.
struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    decoder: FieldDecoder,
    limits: Limits,
    first_line: u64,
    /// 0-based column of the value's first byte on its first line.
    first_column: usize,
    path: Vec<String>,
}

impl<'a> Parser<'a> {
    fn new(bytes: &'a [u8], decoder: FieldDecoder, limits: Limits, first_line: u64) -> Self {
        Self {
            bytes,
            pos: 0,
            decoder,
            limits,
            first_line,
            first_column: 0,
            path: Vec::new(),
        }
    }

    fn starting_at_column(mut self, column: usize) -> Self {
        self.first_column = column;
        self
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> ParseError {
        let before = &self.bytes[..offset.min(self.bytes.len())];
        let newlines = before.iter().filter(|b| **b == b'\n').count();
        let column = match before.iter().rposition(|b| *b == b'\n') {
            Some(i) => offset - i,
            None => self.first_column + offset + 1,
        };
        ParseError {
            message: message.into(),
            path: None,
            line: self.first_line + newlines as u64,
            column,
        }
    }

    fn value_error(&self, message: impl Into<String>) -> ParseError {
        let mut e = self.error(self.pos, message);
        e.path = Some(if self.path.is_empty() {
            "(the record)".to_owned()
        } else {
            self.path.join("/")
        });
        e
    }

    fn ws(&mut self) {
        while self
            .bytes
            .get(self.pos)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.pos += 1;
        }
    }

    fn found(&self) -> String {
        match self.bytes.get(self.pos) {
            None => "the end of the record".to_owned(),
            Some(b) if b.is_ascii_graphic() => format!("'{}'", char::from(*b)),
            Some(b) => format!("byte 0x{b:02X}"),
        }
    }

    /// A whole value: nothing but whitespace may follow. `depth` is the value's nesting
    /// depth in the payload.
    fn document(&mut self, depth: usize) -> Result<Value, ParseError> {
        let value = self.value(depth)?;
        self.ws();
        if self.pos < self.bytes.len() {
            return Err(self.error(
                self.pos,
                format!("unexpected {} after the value", self.found()),
            ));
        }
        Ok(value)
    }

    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.ws();
        let Some(&b) = self.bytes.get(self.pos) else {
            return Err(self.error(self.pos, "expected a value, found the end of the record"));
        };
        match b {
            b'{' | b'[' if depth > self.limits.max_depth => Err(self.error(
                self.pos,
                format!(
                    "nested deeper than {} levels of arrays and objects",
                    self.limits.max_depth
                ),
            )),
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(Value::Text),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal("true", Value::Bool(true)),
            b'f' => self.literal("false", Value::Bool(false)),
            b'n' => self.literal("null", Value::Null),
            _ => Err(self.error(
                self.pos,
                format!("expected a value, found {}", self.found()),
            )),
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, ParseError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            let end = self.bytes[self.pos..]
                .iter()
                .position(|b| !b.is_ascii_alphanumeric())
                .map(|n| self.pos + n)
                .unwrap_or(self.bytes.len());
            Err(self.error(
                self.pos,
                format!(
                    "'{}' is not a JSON value (strings need quotes)",
                    excerpt(&String::from_utf8_lossy(
                        &self.bytes[self.pos..end.max(self.pos + 1)]
                    ))
                ),
            ))
        }
    }

    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        let bytes = self.bytes;
        let mut i = self.pos;
        let digits = |i: &mut usize| {
            let s = *i;
            while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - s
        };
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        let n = digits(&mut i);
        let bad = |p: &Parser, why: &str| {
            let end = bytes[start..]
                .iter()
                .position(|b| matches!(b, b',' | b']' | b'}' | b' ' | b'\n' | b'\r' | b'\t'))
                .map(|n| start + n)
                .unwrap_or(bytes.len());
            p.error(
                start,
                format!(
                    "'{}' is not a JSON number ({why})",
                    excerpt(&String::from_utf8_lossy(&bytes[start..end]))
                ),
            )
        };
        if n == 0 {
            return Err(bad(self, "a digit must follow '-'"));
        }
        if n > 1 && bytes[int_start] == b'0' {
            return Err(bad(self, "leading zeros are not allowed"));
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return Err(bad(self, "a digit must follow '.'"));
            }
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return Err(bad(self, "the exponent needs digits"));
            }
        }
        if bytes
            .get(i)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'.')
        {
            return Err(bad(self, "unexpected characters"));
        }
        self.pos = i;
        Ok(Value::Number(
            std::str::from_utf8(&bytes[start..i])
                .expect("ASCII")
                .to_owned(),
        ))
    }

    /// A string; `self.pos` is at its opening quote.
    fn string(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut run = self.pos;
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(self.error(open, "the string is not closed"));
            };
            match b {
                b'"' => {
                    self.flush(run, &mut out)?;
                    self.pos += 1;
                    break;
                }
                b'\\' => {
                    self.flush(run, &mut out)?;
                    self.escape(&mut out)?;
                    run = self.pos;
                }
                0..=0x1F => {
                    return Err(self.error(
                        self.pos,
                        format!("control character U+{b:04X} inside a string (it must be escaped)"),
                    ))
                }
                _ => self.pos += 1,
            }
        }
        if out.len() > self.limits.max_field_bytes {
            self.pos = open;
            return Err(self.value_error(format!(
                "the value is {}; the largest accepted value is {}",
                size(out.len() as u64),
                size(self.limits.max_field_bytes as u64)
            )));
        }
        Ok(out)
    }

    fn flush(&mut self, run: usize, out: &mut String) -> Result<(), ParseError> {
        if run < self.pos {
            match self.decoder.decode(&self.bytes[run..self.pos]) {
                Ok(text) => out.push_str(&text),
                Err(reason) => {
                    self.pos = run;
                    return Err(self.value_error(reason));
                }
            }
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self.bytes.get(self.pos..self.pos + 4);
        let value = digits
            .and_then(|d| std::str::from_utf8(d).ok())
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|d| u32::from_str_radix(d, 16).ok());
        match value {
            Some(v) => {
                self.pos += 4;
                Ok(v)
            }
            None => Err(self.error(self.pos, "\\u must be followed by four hex digits")),
        }
    }

    /// An escape sequence; `self.pos` is at the backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), ParseError> {
        let at = self.pos;
        self.pos += 1;
        let Some(&c) = self.bytes.get(self.pos) else {
            return Err(self.error(at, "the string is not closed"));
        };
        self.pos += 1;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&unit) {
                    if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                        return Err(self.error(
                            at,
                            "an unpaired surrogate (\\uD800-\\uDBFF without its low half)",
                        ));
                    }
                    self.pos += 2;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(self.error(
                            at,
                            "an unpaired surrogate (a high half not followed by a low half)",
                        ));
                    }
                    0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..0xE000).contains(&unit) {
                    return Err(self.error(at, "an unpaired surrogate (a low half alone)"));
                } else {
                    unit
                };
                char::from_u32(code).ok_or_else(|| self.error(at, "an invalid \\u escape"))?
            }
            other => {
                return Err(self.error(
                    at,
                    format!("'\\{}' is not a JSON escape", char::from(other)),
                ))
            }
        };
        out.push(ch);
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.pos += 1;
        let mut entries: Vec<(String, Value)> = Vec::new();
        let mut seen: Option<std::collections::HashSet<String>> = None;
        self.ws();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Value::Map(entries));
        }
        loop {
            self.ws();
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.error(
                    self.pos,
                    format!("expected a key in double quotes, found {}", self.found()),
                ));
            }
            let key_at = self.pos;
            let key = self.string()?;
            self.ws();
            if self.bytes.get(self.pos) != Some(&b':') {
                return Err(self.error(
                    self.pos,
                    format!(
                        "expected ':' after the key '{}', found {}",
                        excerpt(&key),
                        self.found()
                    ),
                ));
            }
            self.pos += 1;
            let duplicate = match &mut seen {
                Some(set) => !set.insert(key.clone()),
                None => {
                    let dup = entries.iter().any(|(k, _)| *k == key);
                    if entries.len() >= 16 {
                        let mut set: std::collections::HashSet<String> =
                            entries.iter().map(|(k, _)| k.clone()).collect();
                        set.insert(key.clone());
                        seen = Some(set);
                    }
                    dup
                }
            };
            if duplicate {
                return Err(self.error(
                    key_at,
                    format!("the key '{}' appears twice in one object", excerpt(&key)),
                ));
            }
            self.path.push(key);
            let value = self.value(depth + 1)?;
            let key = self.path.pop().expect("pushed above");
            entries.push((key, value));
            self.ws();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Map(entries));
                }
                _ => {
                    return Err(self.error(
                        self.pos,
                        format!(
                            "expected ',' or '}}' after a member, found {}",
                            self.found()
                        ),
                    ))
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.ws();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Value::List(items));
        }
        loop {
            self.path.push(items.len().to_string());
            let value = self.value(depth + 1)?;
            self.path.pop();
            items.push(value);
            self.ws();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::List(items));
                }
                _ => {
                    return Err(self.error(
                        self.pos,
                        format!(
                            "expected ',' or ']' after an element, found {}",
                            self.found()
                        ),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Value, ParseError> {
        Parser::new(
            text.as_bytes(),
            FieldDecoder::Direct(TextEncoding::Utf8),
            Limits::default(),
            1,
        )
        .document(1)
    }

    #[test]
    fn numbers_keep_their_digits() {
        let v = parse(r#"{"a": 1234.50, "b": -0.1e+10, "c": 12345678901234567890123}"#).unwrap();
        assert_eq!(v.get("a"), Some(&Value::Number("1234.50".into())));
        assert_eq!(v.get("b"), Some(&Value::Number("-0.1e+10".into())));
        assert_eq!(
            v.get("c"),
            Some(&Value::Number("12345678901234567890123".into()))
        );
    }

    #[test]
    fn strings_unescape() {
        let v = parse(r#"["a\"b\\c\u00e9\ud83d\ude00\n"]"#).unwrap();
        assert_eq!(v.index(0), Some(&Value::Text("a\"b\\cé😀\n".into())));
        assert!(parse(r#"["\ud83d"]"#).is_err());
        assert!(parse("[\"a\nb\"]").is_err());
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let e = parse("{\n  \"a\": 1,\n  \"b\" 2\n}").unwrap_err();
        assert_eq!((e.line, e.column), (3, 7), "{e:?}");
        assert!(e.message.contains("expected ':'"), "{}", e.message);
        for bad in [
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\":1} x",
            "{'a':1}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = parse(r#"{"a":1,"a":2}"#).unwrap_err();
        assert!(e.message.contains("twice"), "{}", e.message);
    }

    #[test]
    fn depth_is_limited_without_recursion_past_the_limit() {
        let deep = "[".repeat(100_000);
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nested deeper than 64"), "{}", e.message);
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(parse(&ok).is_ok());
        let too_deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(parse(&too_deep).is_err());
    }
}
