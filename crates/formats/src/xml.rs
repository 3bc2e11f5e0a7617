//! XML: each occurrence of the record element is one record.
//!
//! The payload is transcoded to UTF-8 as it is read (BOM, then the XML declaration's
//! `encoding`, then the mapping's `encoding`), and parsed event by event with quick-xml;
//! only the current record is held in memory. A DOCTYPE is refused outright: DTDs are where
//! entity declarations (and so "billion laughs" expansion and external entities) live, and
//! no carrier feed needs one. Only the predefined entities and character references are
//! resolved; any other `&name;` rejects its record.
//!
//! A record becomes a [`Value`] as documented on [`Value::Map`]: attributes are `@name`,
//! child elements are keys (a repeated child becomes a [`Value::List`]), an element with
//! only text is [`Value::Text`], and text beside attributes or children is `#text`. Names are
//! matched and stored by their local part (namespace prefixes are dropped; `xmlns`
//! attributes are left out).

use crate::encoding::{FieldDecoder, TextInfo, TextInput, TextOptions};
use crate::track::{excerpt, record_too_large, size, TrackState, Tracked};
use crate::{
    FormatError, Limits, RecordData, RecordError, RecordPosition, RecordReader, SourceRecord,
    TextEncoding, Value,
};
use quick_xml::events::{BytesStart, Event};
use std::io::{BufReader, Read};
use std::sync::{Arc, Mutex};

type Source<R> = BufReader<Tracked<TextInput<R>>>;

const BUFFER: usize = 64 * 1024;

/// Reads the records of an XML document.
pub struct XmlReader<R: Read> {
    reader: quick_xml::Reader<Source<R>>,
    track: Arc<Mutex<TrackState>>,
    text: TextInfo,
    decoder: FieldDecoder,
    limits: Limits,
    record_element: String,
    /// The record element's path, by local names.
    target: Vec<String>,
    /// The path must match from the root (it was written with a leading `/`).
    absolute: bool,
    /// Local names of the open elements outside records.
    stack: Vec<String>,
    buf: Vec<u8>,
    records: u64,
    /// Element names seen outside records (for the message when nothing matched).
    seen: Vec<String>,
    /// The record element's parent path was seen (an empty delivery, not a wrong path).
    parent_seen: bool,
    done: bool,
}

/// An element being built.
struct Frame {
    name: String,
    attributes: Vec<(String, Value)>,
    children: Vec<(String, Value)>,
    text: String,
}

impl Frame {
    fn new(name: String) -> Self {
        Self {
            name,
            attributes: Vec::new(),
            children: Vec::new(),
            text: String::new(),
        }
    }

    fn finish(self) -> (String, Value) {
        let value = if self.attributes.is_empty() && self.children.is_empty() {
            Value::Text(self.text)
        } else {
            let mut entries = self.attributes;
            entries.extend(self.children);
            if !self.text.trim().is_empty() {
                entries.push(("#text".to_owned(), Value::Text(self.text)));
            }
            Value::Map(entries)
        };
        (self.name, value)
    }

    fn add_child(&mut self, name: String, value: Value) {
        match self.children.iter_mut().find(|(k, _)| *k == name) {
            Some((_, Value::List(items))) => items.push(value),
            Some((_, existing)) => {
                let first = std::mem::replace(existing, Value::Null);
                *existing = Value::List(vec![first, value]);
            }
            None => self.children.push((name, value)),
        }
    }
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// The first problem of a record; the rest of it is skipped.
struct Problem {
    column: Option<String>,
    value: Option<String>,
    reason: String,
}

impl<R: Read> XmlReader<R> {
    pub fn new(
        source: R,
        record_element: &str,
        encoding: TextEncoding,
        limits: Limits,
    ) -> Result<Self, FormatError> {
        let trimmed = record_element.trim();
        let absolute = trimmed.starts_with('/');
        let target: Vec<String> = trimmed
            .trim_matches('/')
            .split('/')
            .map(|s| local(s.trim()).to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if target.is_empty() {
            return Err(FormatError::Layout(
                "an XML source needs record_element: the name (\"Policy\") or path (\"Bordereau/Policies/Policy\") of the element that is one record"
                    .to_owned(),
            ));
        }
        let (input, text) = TextInput::open(
            source,
            TextOptions {
                declared: encoding,
                xml: true,
            },
        )?;
        // The guard bounds one event (a text, a tag): a record's own size is checked
        // between events and only rejects that record.
        let (tracked, track) = Tracked::new(
            input,
            0,
            Some(limits.max_record_bytes as u64),
            BUFFER as u64,
        );
        let mut reader = quick_xml::Reader::from_reader(BufReader::with_capacity(BUFFER, tracked));
        let config = reader.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        config.trim_text(false);
        Ok(Self {
            reader,
            track,
            decoder: text.decoder,
            text,
            limits,
            record_element: trimmed.to_owned(),
            target,
            absolute,
            stack: Vec::new(),
            buf: Vec::with_capacity(4096),
            records: 0,
            seen: Vec::new(),
            parent_seen: false,
            done: false,
        })
    }

    pub fn byte_offset(&self) -> u64 {
        self.text
            .consumed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn line_at(&self, offset: u64) -> u64 {
        self.track.lock().expect("track state lock").line_at(offset)
    }

    /// After each event (which started at `start`): the guard measures from its end, and
    /// the newlines before its start are forgotten (so they do not pile up between
    /// records).
    fn mark(&self, start: u64) {
        let at = self.reader.buffer_position();
        let mut track = self.track.lock().expect("track state lock");
        track.set_mark(at);
        track.line_at(start);
    }

    fn matches(&self) -> bool {
        let n = self.target.len();
        if self.absolute {
            self.stack == self.target
        } else {
            self.stack.len() >= n && self.stack[self.stack.len() - n..] == self.target[..]
        }
    }

    /// The open elements end with the record element's parent path (so an empty
    /// delivery is not mistaken for a wrong path).
    fn parent_matches(&self) -> bool {
        let n = self.target.len() - 1;
        if n == 0 {
            return false;
        }
        if self.absolute {
            self.stack[..] == self.target[..n]
        } else {
            self.stack.len() >= n && self.stack[self.stack.len() - n..] == self.target[..n]
        }
    }

    fn xml_error(&self, e: quick_xml::Error) -> FormatError {
        let line = self.line_at(self.reader.error_position());
        match e {
            quick_xml::Error::Io(io) => match record_too_large(&io) {
                Some(too_large) => FormatError::Limit(format!(
                    "an XML tag or text near line {line} is larger than {}; the payload is not read further",
                    size(too_large.limit)
                )),
                None => FormatError::Io(std::io::Error::new(io.kind(), io.to_string())),
            },
            other => FormatError::Malformed {
                format: "XML",
                line,
                reason: other.to_string(),
            },
        }
    }

    fn doctype(&self, offset: u64) -> FormatError {
        FormatError::Limit(format!(
            "the XML has a DOCTYPE at line {}: DTDs and entity declarations are not accepted (entity expansion)",
            self.line_at(offset)
        ))
    }

    /// Attributes of a start tag into `frame`.
    fn attributes(&self, start: &BytesStart, frame: &mut Frame) -> Result<(), Problem> {
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| Problem {
                column: Some(frame.name.clone()),
                value: None,
                reason: format!("a malformed attribute: {e}"),
            })?;
            let key: &str = attribute.key.as_ref();
            if key == "xmlns" || key.starts_with("xmlns:") {
                continue;
            }
            let name = format!("@{}", local(key));
            let value = quick_xml::escape::unescape(&attribute.value).map_err(|e| Problem {
                column: Some(name.clone()),
                value: Some(excerpt(&attribute.value)),
                reason: entity_reason(&e.to_string()),
            })?;
            self.check_text(&value, &name)?;
            frame
                .attributes
                .push((name, Value::Text(value.into_owned())));
        }
        Ok(())
    }

    fn check_text(&self, text: &str, path: &str) -> Result<(), Problem> {
        if text.len() > self.limits.max_field_bytes {
            return Err(Problem {
                column: Some(path.to_owned()),
                value: Some(excerpt(text)),
                reason: format!(
                    "the value is {}; the largest accepted value is {}",
                    size(text.len() as u64),
                    size(self.limits.max_field_bytes as u64)
                ),
            });
        }
        self.decoder.check(text).map_err(|reason| Problem {
            column: Some(path.to_owned()),
            value: Some(excerpt(text)),
            reason,
        })
    }

    /// Reads one record whose start tag was just read (`empty`: it was `<X/>`).
    fn record(
        &mut self,
        start: BytesStart<'static>,
        empty: bool,
        start_offset: u64,
    ) -> Result<Result<SourceRecord, RecordError>, FormatError> {
        self.records += 1;
        let position = RecordPosition {
            record: self.records,
            line: self.line_at(start_offset),
        };
        let record_name = start_name(&start);
        let mut frames = vec![Frame::new(record_name.clone())];
        let mut problem = None;
        // After a problem the rest of the record is skipped: only its depth is followed.
        let mut skip_depth: usize = 0;
        if let Err(p) = self.attributes(&start, &mut frames[0]) {
            problem = Some(p);
            skip_depth = usize::from(!empty);
            frames.clear();
        }
        let mut result = None;
        if empty && problem.is_none() {
            result = frames.pop().map(Frame::finish);
        }
        let base_depth = self.stack.len();
        let max_depth = self.limits.max_depth;
        loop {
            if result.is_some() || (problem.is_some() && skip_depth == 0) {
                break;
            }
            let offset = self.reader.buffer_position();
            if problem.is_none() && offset - start_offset > self.limits.max_record_bytes as u64 {
                problem = Some(Problem {
                    column: None,
                    value: None,
                    reason: format!(
                        "the record is larger than {}, the largest accepted record",
                        size(self.limits.max_record_bytes as u64)
                    ),
                });
                skip_depth = frames.len();
                frames.clear();
            }
            self.buf.clear();
            let event = match self.reader.read_event_into(&mut self.buf) {
                Ok(event) => event.into_owned(),
                Err(e) => return Err(self.xml_error(e)),
            };
            self.mark(offset);
            match event {
                Event::DocType(_) => return Err(self.doctype(offset)),
                Event::Eof => {
                    return Err(FormatError::Malformed {
                        format: "XML",
                        line: self.line_at(self.reader.buffer_position()),
                        reason: format!(
                            "the document ends inside record {} (<{}> at line {})",
                            position.record, record_name, position.line
                        ),
                    })
                }
                _ if problem.is_some() => {
                    match event {
                        Event::Start(_) => skip_depth += 1,
                        Event::End(_) => skip_depth -= 1,
                        _ => {}
                    }
                    continue;
                }
                Event::Start(e) => {
                    if base_depth + frames.len() + 1 > max_depth {
                        problem = Some(depth_problem(&frames, max_depth));
                        skip_depth = frames.len() + 1;
                        frames.clear();
                        continue;
                    }
                    let mut frame = Frame::new(start_name(&e));
                    if let Err(p) = self.attributes(&e, &mut frame) {
                        problem = Some(p);
                        skip_depth = frames.len() + 1;
                        frames.clear();
                        continue;
                    }
                    frames.push(frame);
                }
                Event::Empty(e) => {
                    if base_depth + frames.len() + 1 > max_depth {
                        problem = Some(depth_problem(&frames, max_depth));
                        skip_depth = frames.len();
                        frames.clear();
                        continue;
                    }
                    let mut frame = Frame::new(start_name(&e));
                    if let Err(p) = self.attributes(&e, &mut frame) {
                        problem = Some(p);
                        skip_depth = frames.len();
                        frames.clear();
                        continue;
                    }
                    let (name, value) = frame.finish();
                    frames
                        .last_mut()
                        .expect("inside the record")
                        .add_child(name, value);
                }
                Event::End(_) => {
                    let (name, value) = frames.pop().expect("inside the record").finish();
                    match frames.last_mut() {
                        Some(parent) => parent.add_child(name, value),
                        None => result = Some((name, value)),
                    }
                }
                Event::Text(t) => frames
                    .last_mut()
                    .expect("inside the record")
                    .text
                    .push_str(&t),
                Event::CData(t) => frames
                    .last_mut()
                    .expect("inside the record")
                    .text
                    .push_str(&t),
                Event::GeneralRef(r) => match resolve_reference(&r) {
                    Ok(c) => frames.last_mut().expect("inside the record").text.push(c),
                    Err(reason) => {
                        problem = Some(Problem {
                            column: Some(path_of(&frames)),
                            value: None,
                            reason,
                        });
                        skip_depth = frames.len();
                        frames.clear();
                    }
                },
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
            }
            // A text that grows past the limit stops the record here, before it is all
            // buffered.
            if let Some(top) = frames.last() {
                if top.text.len() > self.limits.max_field_bytes {
                    problem = Some(Problem {
                        column: Some(path_of(&frames)),
                        value: Some(excerpt(&top.text)),
                        reason: format!(
                            "the value is over {}; the largest accepted value is {}",
                            size(top.text.len() as u64),
                            size(self.limits.max_field_bytes as u64)
                        ),
                    });
                    skip_depth = frames.len();
                    frames.clear();
                }
            }
        }
        if let Some(p) = problem {
            return Ok(Err(RecordError {
                position,
                column: p.column,
                value: p.value,
                reason: p.reason,
            }));
        }
        let (_, value) = result.expect("the record ended");
        // Texts are checked once complete (the mark of an invalid byte sequence).
        if let Err(p) = self.check_value(&value, &mut Vec::new(), &record_name) {
            return Ok(Err(RecordError {
                position,
                column: p.column,
                value: p.value,
                reason: p.reason,
            }));
        }
        Ok(Ok(SourceRecord {
            position,
            data: RecordData::Tree(value),
        }))
    }

    fn check_value(
        &self,
        value: &Value,
        path: &mut Vec<String>,
        record_name: &str,
    ) -> Result<(), Problem> {
        match value {
            Value::Text(t) if self.decoder.check(t).is_err() => {
                let shown = if path.is_empty() {
                    record_name.to_owned()
                } else {
                    path.join("/")
                };
                self.check_text(t, &shown)
            }
            Value::List(items) => items
                .iter()
                .try_for_each(|v| self.check_value(v, path, record_name)),
            Value::Map(entries) => entries.iter().try_for_each(|(k, v)| {
                path.push(k.clone());
                let r = self.check_value(v, path, record_name);
                path.pop();
                r
            }),
            _ => Ok(()),
        }
    }

    fn next_inner(&mut self) -> Result<Option<Result<SourceRecord, RecordError>>, FormatError> {
        loop {
            let offset = self.reader.buffer_position();
            self.buf.clear();
            let event = match self.reader.read_event_into(&mut self.buf) {
                Ok(event) => event.into_owned(),
                Err(e) => return Err(self.xml_error(e)),
            };
            self.mark(offset);
            match event {
                Event::Start(e) => {
                    let name = local(e.name().as_ref()).to_owned();
                    self.stack.push(name);
                    if self.parent_matches() {
                        self.parent_seen = true;
                    }
                    if self.matches() {
                        self.stack.pop();
                        return self.record(e, false, offset).map(Some);
                    }
                    if self.stack.len() > self.limits.max_depth {
                        return Err(FormatError::Limit(format!(
                            "the XML is nested deeper than {} levels at line {}, outside any record",
                            self.limits.max_depth,
                            self.line_at(offset)
                        )));
                    }
                    let last = self.stack.last().expect("pushed").clone();
                    if self.seen.len() < 20 && !self.seen.contains(&last) {
                        self.seen.push(last);
                    }
                }
                Event::Empty(e) => {
                    let name = local(e.name().as_ref()).to_owned();
                    self.stack.push(name);
                    if self.parent_matches() {
                        self.parent_seen = true;
                    }
                    let matched = self.matches();
                    self.stack.pop();
                    if matched {
                        return self.record(e, true, offset).map(Some);
                    }
                }
                Event::End(_) => {
                    self.stack.pop();
                }
                Event::DocType(_) => return Err(self.doctype(offset)),
                Event::Eof => {
                    if self.records == 0 && !self.parent_seen {
                        return Err(FormatError::Layout(format!(
                            "no element matches record_element = '{}'{}",
                            self.record_element,
                            if self.seen.is_empty() {
                                " (the document has no elements)".to_owned()
                            } else {
                                format!(
                                    "; the document's elements include: {}",
                                    self.seen.join(", ")
                                )
                            }
                        )));
                    }
                    return Ok(None);
                }
                _ => {}
            }
        }
    }
}

/// The path of the innermost open element, relative to the record.
fn path_of(frames: &[Frame]) -> String {
    if frames.len() <= 1 {
        return frames.first().map(|f| f.name.clone()).unwrap_or_default();
    }
    frames[1..]
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join("/")
}

fn depth_problem(frames: &[Frame], max_depth: usize) -> Problem {
    Problem {
        column: Some(path_of(frames)),
        value: None,
        reason: format!("elements nested deeper than {max_depth} levels"),
    }
}

fn resolve_reference(r: &quick_xml::events::BytesRef) -> Result<char, String> {
    match r.resolve_char_ref() {
        Ok(Some(c)) => Ok(c),
        Ok(None) => match &**r {
            "amp" => Ok('&'),
            "lt" => Ok('<'),
            "gt" => Ok('>'),
            "quot" => Ok('"'),
            "apos" => Ok('\''),
            other => Err(format!(
                "unknown entity '&{other};' (DTDs are not accepted, so only &amp; &lt; &gt; &quot; &apos; and character references like &#233; can be used)"
            )),
        },
        Err(e) => Err(format!("an invalid character reference '&{};': {e}", &**r)),
    }
}

fn start_name(start: &BytesStart) -> String {
    local(start.name().as_ref()).to_owned()
}

fn entity_reason(message: &str) -> String {
    if message.contains("unrecognized entity") {
        format!(
            "{message} (DTDs are not accepted, so only &amp; &lt; &gt; &quot; &apos; and character references can be used)"
        )
    } else {
        message.to_owned()
    }
}

impl<R: Read + Send> RecordReader for XmlReader<R> {
    fn headers(&self) -> &[String] {
        &[]
    }

    fn next_record(&mut self) -> Option<Result<Result<SourceRecord, RecordError>, FormatError>> {
        if self.done {
            return None;
        }
        match self.next_inner() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    fn byte_offset(&self) -> u64 {
        XmlReader::byte_offset(self)
    }
}
