//! Spreadsheets (XLSX, XLS) read with calamine, row by row.
//!
//! **XLSX** is streamed: calamine's cell reader walks a worksheet's XML as it inflates it,
//! so memory does not grow with rows. What calamine loads whole when it opens the workbook
//! is the shared-strings table (limited to a quarter of [`Limits::max_uncompressed_bytes`]),
//! the styles and the workbook's relationships. Before
//! calamine sees the file, the zip's central directory is checked ([`check_zip`]): the
//! declared uncompressed sizes must add up to at most [`Limits::max_uncompressed_bytes`],
//! and no large part may claim an absurd compression ratio.
//!
//! Declared sizes can lie. zip 9 (`read/readers.rs`, `crc32.rs`: `Crc32Reader::with_size_limit`
//! set from `ZipFileData::make_reader` whenever the size is known, which it always is for an
//! archive opened through its central directory) fails a read with "File is larger than its
//! declared uncompressed size" as soon as an entry inflates past its declared size, and
//! reads of the compressed data are bounded by the declared compressed size. So no part can
//! yield more than its declared size, and what calamine can inflate is bounded by the sum
//! the check accepted.
//!
//! **XLS** (BIFF8) has no streaming reader: calamine reads the whole OLE2 file and a sheet
//! as one range. XLS files are small by construction (65,536 rows), but a sheet's range is
//! allocated over its used area.
//!
//! [`RecordReader::byte_offset`] is an estimate for workbooks: the file's size times the
//! share of rows read (by the sheets' declared dimensions).
//!
//! The reading runs on a thread of its own that owns the workbook (calamine's cell reader
//! borrows it) and hands rows over a bounded channel, so it never runs far ahead. A panic in
//! calamine on a hostile file ends the stream with an error instead of the process.

use crate::track::{excerpt, size, Holdback};
use crate::{
    FormatError, Limits, ReaderSpec, RecordData, RecordError, RecordPosition, RecordReader,
    SourceFormat, SourceRecord, Value,
};
use calamine::{Data, DataRef, Reader};
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// A part bigger than this with a compression ratio above [`MAX_RATIO`] is a zip bomb.
const RATIO_FLOOR: u64 = 100 * 1024 * 1024;
const MAX_RATIO: u64 = 1000;
/// The shared-strings table may use this fraction (1/n) of
/// [`Limits::max_uncompressed_bytes`].
const SHARED_STRINGS_SHARE: u64 = 4;

/// Refuses a zip whose parts declare more than the limit, or absurd compression.
pub(crate) fn check_zip<R: Read + Seek>(source: R, limits: &Limits) -> Result<(), FormatError> {
    let mut zip = zip::ZipArchive::new(source).map_err(|e| FormatError::NotText {
        expected: "an XLSX workbook".to_owned(),
        reason: format!("it is not a readable ZIP archive ({e})"),
    })?;
    let mut total: u64 = 0;
    let mut largest: (String, u64) = (String::new(), 0);
    let mut absurd: Option<(String, u64, u64)> = None;
    let mut strings: Option<(String, u64)> = None;
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| FormatError::NotText {
            expected: "an XLSX workbook".to_owned(),
            reason: format!("part {} of the ZIP archive cannot be read ({e})", i + 1),
        })?;
        let name = entry
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| format!("part {}", i + 1));
        let uncompressed = entry.size();
        let compressed = entry.compressed_size();
        if absurd.is_none()
            && uncompressed > RATIO_FLOOR
            && uncompressed / compressed.max(1) > MAX_RATIO
        {
            absurd = Some((name.clone(), uncompressed, compressed));
        }
        if name.eq_ignore_ascii_case("xl/sharedStrings.xml") {
            strings = Some((name.clone(), uncompressed));
        }
        if uncompressed > largest.1 {
            largest = (name, uncompressed);
        }
        total = total.saturating_add(uncompressed);
    }
    if total > limits.max_uncompressed_bytes {
        return Err(FormatError::Limit(format!(
            "the workbook's parts expand to {}, more than the {} accepted (the largest part, '{}', is {})",
            size(total),
            size(limits.max_uncompressed_bytes),
            largest.0,
            size(largest.1)
        )));
    }
    // The shared-strings table is the one part calamine holds in memory whole.
    let strings_limit = limits.max_uncompressed_bytes / SHARED_STRINGS_SHARE;
    if let Some((name, uncompressed)) = strings.filter(|(_, n)| *n > strings_limit) {
        return Err(FormatError::Limit(format!(
            "the workbook's shared-strings table '{name}' is {}; it is held in memory whole, and at most {} is accepted",
            size(uncompressed),
            size(strings_limit)
        )));
    }
    if let Some((name, uncompressed, compressed)) = absurd {
        return Err(FormatError::Limit(format!(
            "the workbook's part '{name}' declares {} uncompressed from {} compressed (a ratio of {}:1): a zip bomb?",
            size(uncompressed),
            size(compressed),
            uncompressed / compressed.max(1)
        )));
    }
    Ok(())
}

/// One cell, converted.
enum Cell {
    Empty,
    Value(Value),
    /// An error value such as `#N/A`.
    Error(String),
}

/// Renders a number in the shortest form that reads back the same; integers without `.0`.
fn number(f: f64) -> Value {
    if f == 0.0 {
        return Value::Number("0".to_owned());
    }
    Value::Number(format!("{f}"))
}

fn iso_datetime(s: &str) -> Value {
    use chrono::{NaiveDate, NaiveDateTime};
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(chrono::NaiveTime::MIN))
        })
        .map(Value::DateTime)
        .unwrap_or_else(|| Value::Text(s.to_owned()))
}

fn excel_datetime(dt: &calamine::ExcelDateTime) -> Value {
    if dt.is_duration() {
        // A duration (`[h]:mm:ss`): hours may pass 24.
        let total = (dt.as_f64() * 86_400.0).round() as i64;
        let sign = if total < 0 { "-" } else { "" };
        let t = total.abs();
        return Value::Text(format!(
            "{sign}{}:{:02}:{:02}",
            t / 3600,
            (t / 60) % 60,
            t % 60
        ));
    }
    match dt.as_datetime() {
        Some(d) => Value::DateTime(d),
        None => number(dt.as_f64()),
    }
}

fn cell_ref(cell: &DataRef<'_>) -> Cell {
    match cell {
        DataRef::Empty => Cell::Empty,
        DataRef::Int(i) => Cell::Value(Value::Number(i.to_string())),
        DataRef::Float(f) => Cell::Value(number(*f)),
        DataRef::String(s) if s.is_empty() => Cell::Empty,
        DataRef::String(s) => Cell::Value(Value::Text(s.clone())),
        DataRef::SharedString("") => Cell::Empty,
        DataRef::SharedString(s) => Cell::Value(Value::Text((*s).to_owned())),
        DataRef::Bool(b) => Cell::Value(Value::Bool(*b)),
        DataRef::DateTime(dt) => Cell::Value(excel_datetime(dt)),
        DataRef::DateTimeIso(s) => Cell::Value(iso_datetime(s)),
        DataRef::DurationIso(s) => Cell::Value(Value::Text(s.clone())),
        DataRef::Error(e) => Cell::Error(e.to_string()),
    }
}

fn cell_data(cell: &Data) -> Cell {
    match cell {
        Data::Empty => Cell::Empty,
        Data::Int(i) => Cell::Value(Value::Number(i.to_string())),
        Data::Float(f) => Cell::Value(number(*f)),
        Data::String(s) if s.is_empty() => Cell::Empty,
        Data::String(s) => Cell::Value(Value::Text(s.clone())),
        Data::Bool(b) => Cell::Value(Value::Bool(*b)),
        Data::DateTime(dt) => Cell::Value(excel_datetime(dt)),
        Data::DateTimeIso(s) => Cell::Value(iso_datetime(s)),
        Data::DurationIso(s) => Cell::Value(Value::Text(s.clone())),
        Data::Error(e) => Cell::Error(e.to_string()),
    }
}

/// `A`, `B`, … `Z`, `AA`… for a 0-based column.
fn column_letters(mut col: u32) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (col % 26) as u8);
        if col < 26 {
            break;
        }
        col = col / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII")
}

/// A row: its 0-based index, the sheet's last row index (for progress), and its cells
/// (0-based column, value) in column order.
struct Row<'a> {
    index: u32,
    last: u32,
    cells: &'a [(u32, Cell)],
}

/// What the producer needs from a workbook.
trait Book {
    fn sheet_names(&self) -> Vec<String>;
    /// Calls `f` for each row of `sheet` that has cells, in order, until it breaks.
    fn rows(
        &mut self,
        sheet: &str,
        f: &mut dyn FnMut(Row<'_>) -> ControlFlow<()>,
    ) -> Result<(), FormatError>;
}

fn workbook_error(format: SourceFormat, e: impl std::fmt::Display) -> FormatError {
    FormatError::NotText {
        expected: expected(format).to_owned(),
        reason: format!("it cannot be read as one ({e})"),
    }
}

fn expected(format: SourceFormat) -> &'static str {
    if format == SourceFormat::Xls {
        "an XLS workbook"
    } else {
        "an XLSX workbook"
    }
}

struct XlsxBook(calamine::Xlsx<BufReader<File>>);

impl Book for XlsxBook {
    fn sheet_names(&self) -> Vec<String> {
        self.0.sheet_names()
    }

    fn rows(
        &mut self,
        sheet: &str,
        f: &mut dyn FnMut(Row<'_>) -> ControlFlow<()>,
    ) -> Result<(), FormatError> {
        let mut reader =
            self.0
                .worksheet_cells_reader(sheet)
                .map_err(|e| FormatError::Malformed {
                    format: "XLSX",
                    line: 0,
                    reason: format!("sheet '{sheet}' cannot be read: {e}"),
                })?;
        let last = reader.dimensions().end.0;
        let mut current: Option<u32> = None;
        let mut cells: Vec<(u32, Cell)> = Vec::new();
        loop {
            match reader.next_cell() {
                Ok(Some(cell)) => {
                    let (row, col) = cell.get_position();
                    if current != Some(row) {
                        if let Some(index) = current {
                            if f(Row {
                                index,
                                last,
                                cells: &cells,
                            })
                            .is_break()
                            {
                                return Ok(());
                            }
                        }
                        cells.clear();
                        current = Some(row);
                    }
                    cells.push((col, cell_ref(cell.get_value())));
                }
                Ok(None) => break,
                Err(e) => {
                    let at = current
                        .map(|r| format!(" after row {}", r + 1))
                        .unwrap_or_default();
                    return Err(FormatError::Malformed {
                        format: "XLSX",
                        line: current.map(|r| u64::from(r) + 1).unwrap_or(0),
                        reason: format!("sheet '{sheet}'{at}: {e}"),
                    });
                }
            }
        }
        if let Some(index) = current {
            let _ = f(Row {
                index,
                last,
                cells: &cells,
            });
        }
        Ok(())
    }
}

struct XlsBook(calamine::Xls<BufReader<File>>);

impl Book for XlsBook {
    fn sheet_names(&self) -> Vec<String> {
        self.0.sheet_names()
    }

    fn rows(
        &mut self,
        sheet: &str,
        f: &mut dyn FnMut(Row<'_>) -> ControlFlow<()>,
    ) -> Result<(), FormatError> {
        let range = self
            .0
            .worksheet_range(sheet)
            .map_err(|e| FormatError::Malformed {
                format: "XLS",
                line: 0,
                reason: format!("sheet '{sheet}' cannot be read: {e}"),
            })?;
        let Some((row0, col0)) = range.start() else {
            return Ok(());
        };
        let last = range.end().map(|(r, _)| r).unwrap_or(row0);
        let mut cells = Vec::new();
        for (i, row) in range.rows().enumerate() {
            cells.clear();
            cells.extend(
                row.iter()
                    .enumerate()
                    .filter(|(_, d)| !matches!(d, Data::Empty))
                    .map(|(j, d)| (col0 + j as u32, cell_data(d))),
            );
            if cells.is_empty() {
                continue;
            }
            if f(Row {
                index: row0 + i as u32,
                last,
                cells: &cells,
            })
            .is_break()
            {
                break;
            }
        }
        Ok(())
    }
}

/// What the producer thread sends.
enum Message {
    Headers(Vec<String>),
    Item(
        Result<Result<SourceRecord, RecordError>, FormatError>,
        /// Estimated bytes of the payload consumed.
        u64,
        /// The sheet the record is on.
        Option<Arc<str>>,
    ),
    /// The last sheet is read.
    End,
}

/// Reads the records of a workbook's sheets; see the module documentation.
pub struct SheetReader {
    headers: Vec<String>,
    /// The sheet of the record last returned.
    sheet: Option<Arc<str>>,
    receiver: Receiver<Message>,
    offset: u64,
    file_len: u64,
    done: bool,
    format: SourceFormat,
}

impl SheetReader {
    pub fn open(spec: &ReaderSpec, path: &Path) -> Result<Self, FormatError> {
        let format = spec.format;
        if spec.header_row == 0 {
            return Err(FormatError::Layout(
                "header_row must be 1 or more for a workbook (the row that holds the column names)"
                    .to_owned(),
            ));
        }
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let mut prefix = [0u8; 8];
        let n = (&file).take(8).read(&mut prefix)?;
        if let Some(what) = crate::sniff::identify(format, &prefix[..n]) {
            return Err(FormatError::NotText {
                expected: expected(format).to_owned(),
                reason: format!("it is {what}"),
            });
        }
        let mut file = file;
        file.rewind()?;
        let book: Box<dyn Book + Send> = match format {
            SourceFormat::Xlsx => {
                check_zip(BufReader::new(&file), &spec.limits)?;
                file.rewind()?;
                let xlsx = calamine::Xlsx::new(BufReader::new(file))
                    .map_err(|e| workbook_error(format, e))?;
                Box::new(XlsxBook(xlsx))
            }
            SourceFormat::Xls => {
                let xls = calamine::Xls::new(BufReader::new(file))
                    .map_err(|e| workbook_error(format, e))?;
                Box::new(XlsBook(xls))
            }
            other => {
                return Err(FormatError::Layout(format!(
                    "'{}' is not a workbook format",
                    other.label()
                )))
            }
        };
        let (sender, receiver) = sync_channel(64);
        let job = Job {
            sheets: spec.sheets.clone(),
            header_row: spec.header_row as u32,
            footer_rows: spec.footer_rows,
            limits: spec.limits,
            file_len,
        };
        std::thread::Builder::new()
            .name("carrierhub-workbook".to_owned())
            .spawn(move || job.run(book, sender))?;
        match receiver.recv() {
            Ok(Message::Headers(headers)) => Ok(Self {
                headers,
                sheet: None,
                receiver,
                offset: 0,
                file_len,
                done: false,
                format,
            }),
            Ok(Message::Item(Err(e), _, _)) => Err(e),
            Ok(Message::Item(Ok(_), _, _) | Message::End) => unreachable!("headers come first"),
            Err(_) => Err(panicked(format)),
        }
    }
}

fn panicked(format: SourceFormat) -> FormatError {
    FormatError::Malformed {
        format: if format == SourceFormat::Xls {
            "XLS"
        } else {
            "XLSX"
        },
        line: 0,
        reason: "the workbook reader failed unexpectedly on this file".to_owned(),
    }
}

impl RecordReader for SheetReader {
    fn headers(&self) -> &[String] {
        &self.headers
    }

    fn next_record(&mut self) -> Option<Result<Result<SourceRecord, RecordError>, FormatError>> {
        if self.done {
            return None;
        }
        match self.receiver.recv() {
            Ok(Message::Item(item, offset, sheet)) => {
                self.offset = offset;
                self.sheet = sheet;
                if item.is_err() {
                    self.done = true;
                }
                Some(item)
            }
            Ok(Message::End) => {
                self.done = true;
                self.offset = self.file_len;
                None
            }
            Ok(Message::Headers(_)) => unreachable!("headers come once, first"),
            Err(_) => {
                // The producer always ends with `End` or an error: a closed channel
                // without one means it panicked.
                self.done = true;
                Some(Err(panicked(self.format)))
            }
        }
    }

    fn byte_offset(&self) -> u64 {
        self.offset
    }

    fn sheet(&self) -> Option<&str> {
        self.sheet.as_deref()
    }
}

/// The producer's settings.
struct Job {
    sheets: Vec<String>,
    header_row: u32,
    footer_rows: usize,
    limits: Limits,
    file_len: u64,
}

/// A sheet's columns mapped to the first sheet's header.
struct SheetPlan {
    name: String,
    /// Column (0-based) → index in the headers.
    columns: Vec<Option<usize>>,
    /// The sheet's own header names, by column (for messages).
    own: Vec<String>,
    /// Last row index (0-based), for progress.
    last: u32,
    /// False when the sheet has no header row (it is empty): it is skipped.
    present: bool,
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn header_text(cell: &Cell) -> String {
    match cell {
        Cell::Value(v) => v.as_text().map(|t| t.trim().to_owned()).unwrap_or_default(),
        Cell::Error(e) => e.clone(),
        Cell::Empty => String::new(),
    }
}

impl Job {
    fn run(self, mut book: Box<dyn Book + Send>, sender: SyncSender<Message>) {
        let plans = match self.plan(&mut *book) {
            Ok(plans) => plans,
            Err(e) => {
                let _ = sender.send(Message::Item(Err(e), 0, None));
                return;
            }
        };
        let headers = plans[0].own.clone();
        let mut width = headers.len();
        while width > 0 && headers[width - 1].is_empty() {
            width -= 1;
        }
        let headers: Vec<String> = headers[..width].to_vec();
        if sender.send(Message::Headers(headers.clone())).is_err() {
            return;
        }
        let total_rows: u64 = plans
            .iter()
            .filter(|p| p.present)
            .map(|p| u64::from(p.last) + 1)
            .sum::<u64>()
            .max(1);
        let mut rows_before: u64 = 0;
        let mut holdback = Holdback::new(self.footer_rows);
        for plan in plans.iter().filter(|p| p.present) {
            let sheet: Arc<str> = Arc::from(plan.name.as_str());
            let mut stopped = false;
            let result = book.rows(&plan.name, &mut |row| {
                if row.index < self.header_row {
                    return ControlFlow::Continue(());
                }
                if row.cells.iter().all(|(_, c)| matches!(c, Cell::Empty)) {
                    return ControlFlow::Continue(());
                }
                let item = self.record(plan, &headers, &row);
                let done = rows_before + u64::from(row.index) + 1;
                let estimate = self.file_len.saturating_mul(done.min(total_rows)) / total_rows;
                if let Some(out) = holdback.push(item) {
                    if sender
                        .send(Message::Item(Ok(out), estimate, Some(sheet.clone())))
                        .is_err()
                    {
                        stopped = true;
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            });
            if stopped {
                return;
            }
            if let Err(e) = result {
                let _ = sender.send(Message::Item(Err(e), self.file_len, Some(sheet.clone())));
                return;
            }
            holdback.drop_footer();
            rows_before += u64::from(plan.last) + 1;
        }
        let _ = sender.send(Message::End);
    }

    /// Resolves the sheets and reads each one's header.
    fn plan(&self, book: &mut dyn Book) -> Result<Vec<SheetPlan>, FormatError> {
        let names = book.sheet_names();
        if names.is_empty() {
            return Err(FormatError::Layout("the workbook has no sheets".to_owned()));
        }
        let wanted: Vec<String> = if self.sheets.is_empty() {
            vec![names[0].clone()]
        } else {
            let mut out = Vec::new();
            for wanted in &self.sheets {
                let found = names
                    .iter()
                    .find(|n| *n == wanted)
                    .or_else(|| {
                        names
                            .iter()
                            .find(|n| n.trim().eq_ignore_ascii_case(wanted.trim()))
                    })
                    .ok_or_else(|| {
                        FormatError::Layout(format!(
                            "the workbook has no sheet '{wanted}'; its sheets: {}",
                            names
                                .iter()
                                .map(|n| format!("'{n}'"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                out.push(found.clone());
            }
            out
        };
        let header_index = self.header_row - 1;
        let mut plans: Vec<SheetPlan> = Vec::new();
        for name in wanted {
            let mut own: Option<Vec<String>> = None;
            let mut last = 0;
            let mut saw_rows = false;
            book.rows(&name, &mut |row| {
                last = row.last;
                saw_rows = true;
                if row.index < header_index {
                    return ControlFlow::Continue(());
                }
                if row.index == header_index {
                    let width = row.cells.last().map(|(c, _)| *c as usize + 1).unwrap_or(0);
                    let mut names = vec![String::new(); width];
                    for (col, cell) in row.cells {
                        names[*col as usize] = header_text(cell);
                    }
                    own = Some(names);
                }
                ControlFlow::Break(())
            })?;
            let own_names = own.filter(|names| names.iter().any(|n| !n.is_empty()));
            match (plans.is_empty(), own_names) {
                (true, None) => {
                    return Err(if saw_rows {
                        FormatError::Layout(format!(
                            "sheet '{name}' has no header at row {} (header_row); is the header on another row?",
                            self.header_row
                        ))
                    } else {
                        FormatError::Empty
                    })
                }
                (true, Some(names)) => {
                    let columns = (0..names.len()).map(Some).collect();
                    plans.push(SheetPlan {
                        name,
                        columns,
                        own: names,
                        last,
                        present: true,
                    });
                }
                (false, None) if saw_rows => {
                    return Err(FormatError::Layout(format!(
                        "sheet '{name}' has rows but no header at row {} (header_row)",
                        self.header_row
                    )))
                }
                (false, None) => plans.push(SheetPlan {
                    name,
                    columns: Vec::new(),
                    own: Vec::new(),
                    last,
                    present: false,
                }),
                (false, Some(names)) => {
                    let first = &plans[0];
                    let wanted: Vec<String> = first.own.iter().map(|n| normalize(n)).collect();
                    let mut columns = Vec::with_capacity(names.len());
                    for (col, own_name) in names.iter().enumerate() {
                        if own_name.is_empty() {
                            columns.push(None);
                            continue;
                        }
                        let key = normalize(own_name);
                        match wanted.iter().position(|w| *w == key) {
                            Some(i) => columns.push(Some(i)),
                            None => {
                                return Err(FormatError::Layout(format!(
                                    "sheet '{name}' has the column '{own_name}' (cell {}{}), which the first sheet '{}' does not have; every sheet must have the first sheet's columns",
                                    column_letters(col as u32),
                                    self.header_row,
                                    first.name
                                )))
                            }
                        }
                    }
                    plans.push(SheetPlan {
                        name,
                        columns,
                        own: names,
                        last,
                        present: true,
                    });
                }
            }
        }
        Ok(plans)
    }

    fn record(
        &self,
        plan: &SheetPlan,
        headers: &[String],
        row: &Row<'_>,
    ) -> Result<SourceRecord, RecordError> {
        let line = u64::from(row.index) + 1;
        let position = RecordPosition { record: 0, line };
        let mut values = vec![Value::Null; headers.len()];
        let column_name = |i: usize, col: u32| -> String {
            match headers.get(i) {
                Some(h) if !h.is_empty() => h.clone(),
                _ => format!("column {}", column_letters(col)),
            }
        };
        for (col, cell) in row.cells {
            let cell_name = format!("{}{}", column_letters(*col), line);
            let target = plan
                .columns
                .get(*col as usize)
                .copied()
                .flatten()
                .filter(|i| *i < headers.len());
            let Some(i) = target else {
                if matches!(cell, Cell::Empty) {
                    continue;
                }
                return Err(RecordError {
                    position,
                    column: None,
                    value: match cell {
                        Cell::Value(v) => v.as_text().map(|t| excerpt(&t)),
                        Cell::Error(e) => Some(e.clone()),
                        Cell::Empty => None,
                    },
                    reason: format!(
                        "sheet '{}', cell {cell_name} has a value, but column {} has no header",
                        plan.name,
                        column_letters(*col)
                    ),
                });
            };
            match cell {
                Cell::Empty => {}
                Cell::Error(e) => {
                    return Err(RecordError {
                        position,
                        column: Some(column_name(i, *col)),
                        value: Some(e.clone()),
                        reason: format!("sheet '{}', cell {cell_name} is the error {e}", plan.name),
                    })
                }
                Cell::Value(Value::Text(t)) if t.len() > self.limits.max_field_bytes => {
                    return Err(RecordError {
                        position,
                        column: Some(column_name(i, *col)),
                        value: Some(excerpt(t)),
                        reason: format!(
                            "sheet '{}', cell {cell_name}: the value is {}; the largest accepted value is {}",
                            plan.name,
                            size(t.len() as u64),
                            size(self.limits.max_field_bytes as u64)
                        ),
                    })
                }
                Cell::Value(v) => values[i] = v.clone(),
            }
        }
        Ok(SourceRecord {
            position,
            data: RecordData::Row(values),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_render_shortest() {
        assert_eq!(number(1234.0), Value::Number("1234".into()));
        assert_eq!(number(1234.5), Value::Number("1234.5".into()));
        assert_eq!(
            number(0.1 + 0.2),
            Value::Number("0.30000000000000004".into())
        );
        assert_eq!(number(-0.0), Value::Number("0".into()));
    }

    #[test]
    fn column_letters_count_like_excel() {
        assert_eq!(column_letters(0), "A");
        assert_eq!(column_letters(25), "Z");
        assert_eq!(column_letters(26), "AA");
        assert_eq!(column_letters(701), "ZZ");
        assert_eq!(column_letters(702), "AAA");
    }
}
