//! Plumbing shared by the text readers: physical line numbers, a guard that bounds how much
//! a parser may buffer for one record, a bounded line reader, footer hold-back, and the
//! wording of sizes in error messages.

use crate::{RecordError, RecordPosition};
use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::sync::{Arc, Mutex};

/// A parser below the guard buffered more than the limit for one record.
#[derive(Debug)]
pub(crate) struct RecordTooLarge {
    pub limit: u64,
}

impl std::fmt::Display for RecordTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a record is larger than {}", size(self.limit))
    }
}

impl std::error::Error for RecordTooLarge {}

/// The guard's error inside an `io::Error`, if that is what it is.
pub(crate) fn record_too_large(e: &io::Error) -> Option<&RecordTooLarge> {
    e.get_ref().and_then(|inner| inner.downcast_ref())
}

/// Newlines read but not yet passed, the lines skipped, and the guard's mark.
#[derive(Default)]
pub(crate) struct TrackState {
    /// Bytes handed to the parser so far (after skipped lines).
    offset: u64,
    /// Offsets of newlines handed to the parser and not yet passed.
    pending: VecDeque<u64>,
    /// Newlines passed (including the skipped lines).
    passed: u64,
    /// Lines still to skip before anything is handed to the parser.
    skip_lines: u64,
    /// Bytes skipped with those lines.
    pub skipped_bytes: u64,
    /// Lines actually skipped.
    pub skipped_lines: u64,
    /// Where the current record started (parser offset); the guard measures from there.
    mark: u64,
    limit: Option<u64>,
    /// Lines are counted only when asked for (the XML reader uses them).
    count_lines: bool,
}

impl TrackState {
    /// 1-based line on which a record ends, given the offset just past its terminator
    /// (a newline at `end - 1` is the record's own, not a line before it); forgets the
    /// newlines before.
    pub fn last_line_of_record(&mut self, end: u64) -> u64 {
        self.line_at(end.saturating_sub(1))
    }

    /// 1-based line of the byte at `offset`; offsets must not decrease between calls.
    pub fn line_at(&mut self, offset: u64) -> u64 {
        while self.pending.front().is_some_and(|&nl| nl < offset) {
            self.pending.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }

    /// A record starts at `offset`: the guard measures from here.
    pub fn set_mark(&mut self, offset: u64) {
        self.mark = offset;
    }
}

/// Counts newlines and guards record size between a payload and a parser.
pub(crate) struct Tracked<R> {
    inner: R,
    state: Arc<Mutex<TrackState>>,
    /// Slack for the parser's own read-ahead.
    slack: u64,
}

impl<R: Read> Tracked<R> {
    pub fn new(
        inner: R,
        skip_lines: u64,
        limit: Option<u64>,
        slack: u64,
    ) -> (Self, Arc<Mutex<TrackState>>) {
        let state = Arc::new(Mutex::new(TrackState {
            skip_lines,
            passed: 0,
            limit,
            count_lines: true,
            ..Default::default()
        }));
        (
            Self {
                inner,
                state: state.clone(),
                slack,
            },
            state,
        )
    }

    fn skip(&mut self, state: &mut TrackState) -> io::Result<()> {
        let mut byte = [0u8; 4096];
        while state.skip_lines > 0 {
            // Byte-wise up to the newline: the rest of the chunk must not be lost.
            let n = self.inner.read(&mut byte[..1])?;
            if n == 0 {
                state.skip_lines = 0;
                break;
            }
            state.skipped_bytes += 1;
            if byte[0] == b'\n' {
                state.skip_lines -= 1;
                state.skipped_lines += 1;
                state.passed += 1;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let state = self.state.clone();
        let mut state = state.lock().expect("track state lock");
        if state.skip_lines > 0 {
            self.skip(&mut state)?;
        }
        if let Some(limit) = state.limit {
            if state.offset.saturating_sub(state.mark) > limit + self.slack {
                return Err(io::Error::other(RecordTooLarge { limit }));
            }
        }
        let n = self.inner.read(buf)?;
        let start = state.offset;
        if state.count_lines {
            for (i, _) in buf[..n].iter().enumerate().filter(|(_, b)| **b == b'\n') {
                state.pending.push_back(start + i as u64);
            }
        }
        state.offset += n as u64;
        Ok(n)
    }
}

/// One physical line from a [`LineReader`].
pub(crate) enum Line<'a> {
    /// The line's bytes without its terminator (`\n` or `\r\n`).
    Text { number: u64, bytes: &'a [u8] },
    /// The line was longer than the limit; it was skipped without being buffered.
    TooLong { number: u64, length: u64 },
}

/// Reads physical lines, buffering at most `max` bytes of one line.
pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    max: usize,
    lines: u64,
    offset: u64,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            max,
            lines: 0,
            offset: 0,
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let mut length: u64 = 0;
        let mut saw_any = false;
        let mut newline = false;
        // The last two bytes of the line, for its terminator.
        let mut tail = [0u8; 2];
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                break;
            }
            saw_any = true;
            let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (&available[..=i], true),
                None => (available, false),
            };
            let room = (self.max + 2).saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            match chunk {
                [.., a, b] => tail = [*a, *b],
                [b] => tail = [tail[1], *b],
                [] => {}
            }
            length += chunk.len() as u64;
            let used = chunk.len();
            self.inner.consume(used);
            self.offset += used as u64;
            if done {
                newline = true;
                break;
            }
        }
        if !saw_any {
            return Ok(None);
        }
        self.lines += 1;
        let mut content = length;
        if newline {
            content -= 1;
            if length >= 2 && tail[0] == b'\r' {
                content -= 1;
            }
        }
        if content > self.max as u64 {
            return Ok(Some(Line::TooLong {
                number: self.lines,
                length: content,
            }));
        }
        self.buf.truncate(content as usize);
        Ok(Some(Line::Text {
            number: self.lines,
            bytes: &self.buf,
        }))
    }
}

/// Holds back the last `keep` records of a stream (footer rows, dropped at the end) and
/// numbers the records it releases, so numbers stay contiguous.
pub(crate) struct Holdback<T> {
    keep: usize,
    queue: VecDeque<T>,
    released: u64,
}

/// Something with a record position.
pub(crate) trait Positioned {
    fn position_mut(&mut self) -> &mut RecordPosition;
}

impl Positioned for RecordError {
    fn position_mut(&mut self) -> &mut RecordPosition {
        &mut self.position
    }
}

impl Positioned for crate::RawRecord {
    fn position_mut(&mut self) -> &mut RecordPosition {
        &mut self.position
    }
}

impl Positioned for crate::SourceRecord {
    fn position_mut(&mut self) -> &mut RecordPosition {
        &mut self.position
    }
}

impl<T: Positioned, E: Positioned> Positioned for Result<T, E> {
    fn position_mut(&mut self) -> &mut RecordPosition {
        match self {
            Ok(t) => t.position_mut(),
            Err(e) => e.position_mut(),
        }
    }
}

impl<T: Positioned> Holdback<T> {
    pub fn new(keep: usize) -> Self {
        Self {
            keep,
            queue: VecDeque::with_capacity(keep + 1),
            released: 0,
        }
    }

    /// Adds a record; returns the one that is now certainly not a footer, numbered.
    pub fn push(&mut self, item: T) -> Option<T> {
        self.queue.push_back(item);
        if self.queue.len() > self.keep {
            let mut out = self.queue.pop_front()?;
            self.released += 1;
            out.position_mut().record = self.released;
            Some(out)
        } else {
            None
        }
    }

    /// The stream (or sheet) ended: what is held back is the footer.
    pub fn drop_footer(&mut self) {
        self.queue.clear();
    }
}

/// A byte count for people: `10.0 MiB (10485760 bytes)`.
pub(crate) fn size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if b < KIB * KIB {
        format!("{:.1} KiB ({bytes} bytes)", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB ({bytes} bytes)", b / KIB / KIB)
    } else {
        format!("{:.2} GiB ({bytes} bytes)", b / KIB / KIB / KIB)
    }
}

/// A value cut to a readable length for an error message.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}… ({} more bytes)", &text[..at], text.len() - at),
    }
}

/// [`excerpt`] of raw bytes.
pub(crate) fn excerpt_bytes(bytes: &[u8]) -> String {
    const MAX: usize = 80;
    let head = &bytes[..bytes.len().min(400)];
    let text = String::from_utf8_lossy(head);
    match text.char_indices().nth(MAX) {
        None if head.len() == bytes.len() => text.into_owned(),
        None => format!("{text}… ({} more bytes)", bytes.len() - head.len()),
        Some((at, _)) => format!(
            "{}… ({} more bytes)",
            &text[..at],
            bytes.len().saturating_sub(at)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_and_counted() {
        let text = b"short\r\n0123456789abcdef\n\nlast";
        let mut reader = LineReader::new(&text[..], 8);
        let mut seen = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            seen.push(match line {
                Line::Text { number, bytes } => {
                    format!("{number}:{}", String::from_utf8_lossy(bytes))
                }
                Line::TooLong { number, length } => format!("{number}:too long {length}"),
            });
        }
        assert_eq!(seen, ["1:short", "2:too long 16", "3:", "4:last"]);
    }

    #[test]
    fn excerpts_are_short() {
        let long = "x".repeat(10_000);
        let cut = excerpt_bytes(long.as_bytes());
        assert!(cut.len() < 120 && cut.contains("9920 more bytes"), "{cut}");
        assert_eq!(excerpt("abc"), "abc");
        assert_eq!(size(10 << 20), "10.0 MiB (10485760 bytes)");
    }
}
