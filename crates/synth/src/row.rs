//! Writes one delimited row at a time in a carrier's conventions: quoting, text encoding,
//! dates and amounts exactly as that carrier's systems would print them.

use chrono::{Datelike, NaiveDate};

/// The order of day, month and year in a carrier's dates, and the separator between them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DateStyle {
    /// `%m/%d/%Y`
    MonthDayYear(u8),
    /// `%d.%m.%Y`, `%d/%m/%Y`
    DayMonthYear(u8),
    /// `%Y-%m-%d` (ISO 8601, as JSON and XML carry dates).
    Iso,
    /// `%Y%m%d`, as mainframe extracts write dates.
    Compact,
}

/// How a carrier's text files are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextEncoding {
    Utf8,
    /// ISO-8859-1: every character is one byte (the carrier's mainframe code page).
    Latin1,
    /// Windows-1252: one byte per character, with the typographic extras in 0x80–0x9F.
    Windows1252,
    /// UTF-16 little-endian with a byte-order mark, as Excel's "Unicode Text" export writes.
    Utf16Le,
}

/// How a carrier prints amounts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AmountStyle {
    pub decimal: u8,
    pub thousands: Option<u8>,
    /// US accounting style: negative amounts in parentheses rather than with a minus sign.
    pub negative_parens: bool,
}

/// Everything the writer needs to know about a file's physical format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TextStyle {
    pub delimiter: u8,
    pub encoding: TextEncoding,
    /// Windows-style line ends, as exported by the carrier's desktop tools.
    pub crlf: bool,
    pub date: DateStyle,
    pub amount: AmountStyle,
}

/// A reusable row buffer: fields are appended, then the row is taken as bytes.
pub(crate) struct RowWriter {
    style: TextStyle,
    delimiter: u8,
    buf: Vec<u8>,
    /// Byte offset at which each field of the current row starts.
    starts: Vec<usize>,
    scratch: String,
    /// The row re-encoded, for UTF-16 files (the row is assembled as UTF-8 in `buf`).
    wide: Vec<u8>,
}

impl RowWriter {
    pub(crate) fn new(style: TextStyle) -> Self {
        Self {
            style,
            delimiter: style.delimiter,
            buf: Vec::with_capacity(256),
            starts: Vec::with_capacity(16),
            scratch: String::with_capacity(32),
            wide: Vec::new(),
        }
    }

    /// Starts a row; `delimiter` is normally the file's, another one only for a defect row.
    pub(crate) fn begin(&mut self, delimiter: u8) {
        self.buf.clear();
        self.starts.clear();
        self.delimiter = delimiter;
    }

    pub(crate) fn text(&mut self, value: &str) {
        if !self.starts.is_empty() {
            self.buf.push(self.delimiter);
        }
        self.starts.push(self.buf.len());
        let needs_quotes = value
            .bytes()
            .any(|b| b == self.delimiter || b == b'"' || b == b'\n' || b == b'\r');
        if needs_quotes {
            self.buf.push(b'"');
        }
        for c in value.chars() {
            if c == '"' {
                self.buf.push(b'"');
            }
            self.push_char(c);
        }
        if needs_quotes {
            self.buf.push(b'"');
        }
    }

    fn push_char(&mut self, c: char) {
        match self.style.encoding {
            TextEncoding::Latin1 => {
                // Everything the generator writes for a Latin-1 carrier is in ISO-8859-1; a
                // character outside it would be a bug in the name tables.
                let b = u8::try_from(u32::from(c)).unwrap_or(b'?');
                debug_assert!(u32::from(c) <= 0xFF, "{c:?} is not ISO-8859-1");
                self.buf.push(b);
            }
            TextEncoding::Windows1252 => self.buf.push(windows_1252(c)),
            TextEncoding::Utf8 | TextEncoding::Utf16Le => {
                let mut utf8 = [0u8; 4];
                self.buf
                    .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }

    /// An Excel date serial (days since 1899-12-30), as a spreadsheet export writes a date
    /// column that lost its date format: `45747` is 2025-03-31.
    pub(crate) fn serial(&mut self, date: NaiveDate) {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        push_digits(&mut s, excel_serial(date), 1);
        self.text(&s);
        self.scratch = s;
    }

    /// An amount in cents after a currency symbol, as a spreadsheet's formatted export writes
    /// it: `£1,234.50`.
    pub(crate) fn amount_with_symbol(&mut self, symbol: &str, cents: i64) {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        s.push_str(symbol);
        write_amount(&mut s, cents, true, self.style.amount);
        self.text(&s);
        self.scratch = s;
    }

    pub(crate) fn date(&mut self, date: NaiveDate) {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        write_date(&mut s, date, self.style.date);
        self.text(&s);
        self.scratch = s;
    }

    /// An amount in minor units (cents), always with two decimals.
    pub(crate) fn amount(&mut self, cents: i64) {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        write_amount(&mut s, cents, true, self.style.amount);
        self.text(&s);
        self.scratch = s;
    }

    /// A whole amount (a limit or deductible), without decimals.
    pub(crate) fn whole(&mut self, units: i64) {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        write_amount(&mut s, units * 100, false, self.style.amount);
        self.text(&s);
        self.scratch = s;
    }

    pub(crate) fn end_row(&mut self) {
        if self.style.crlf {
            self.buf.push(b'\r');
        }
        self.buf.push(b'\n');
    }

    /// Cuts the row off `keep` bytes into field `field`, as an interrupted transfer would;
    /// no line end follows.
    pub(crate) fn cut_in_field(&mut self, field: usize, keep: usize) {
        let start = self.starts[field];
        self.buf.truncate(start + keep);
    }

    /// The row in the file's encoding.
    pub(crate) fn bytes(&mut self) -> &[u8] {
        if self.style.encoding != TextEncoding::Utf16Le {
            return &self.buf;
        }
        self.wide.clear();
        let text = std::str::from_utf8(&self.buf).expect("rows are assembled as UTF-8");
        for unit in text.encode_utf16() {
            self.wide.extend_from_slice(&unit.to_le_bytes());
        }
        &self.wide
    }

    /// What a file in this style starts with: the byte-order mark of a UTF-16 file.
    pub(crate) fn preamble(&self) -> &'static [u8] {
        match self.style.encoding {
            TextEncoding::Utf16Le => b"\xFF\xFE",
            _ => b"",
        }
    }
}

/// The Windows-1252 byte of `c`; the name tables only hold characters the code page has.
pub(crate) fn windows_1252(c: char) -> u8 {
    let mut utf8 = [0u8; 4];
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(c.encode_utf8(&mut utf8));
    debug_assert!(!unmappable, "{c:?} is not in Windows-1252");
    if unmappable || bytes.len() != 1 {
        b'?'
    } else {
        bytes[0]
    }
}

/// Days since 1899-12-30: Excel's serial number of a date after February 1900.
pub(crate) fn excel_serial(date: NaiveDate) -> u64 {
    const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1899, 12, 30) {
        Some(d) => d,
        None => panic!("valid date"),
    };
    (date - EPOCH).num_days().unsigned_abs()
}

/// The decimal digits of `value` as `buffer[start..]`, without allocating (this runs a few
/// million times for a large feed).
fn digits(value: u64) -> ([u8; 20], usize) {
    let mut buffer = [0u8; 20];
    let mut start = buffer.len();
    let mut n = value;
    loop {
        start -= 1;
        buffer[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return (buffer, start);
        }
    }
}

pub(crate) fn push_digits(out: &mut String, value: u64, width: usize) {
    let (buffer, start) = digits(value);
    for _ in buffer.len() - start..width {
        out.push('0');
    }
    out.extend(buffer[start..].iter().map(|&b| char::from(b)));
}

pub(crate) fn write_date(out: &mut String, date: NaiveDate, style: DateStyle) {
    let (first, second, sep) = match style {
        DateStyle::MonthDayYear(sep) => (date.month(), date.day(), sep),
        DateStyle::DayMonthYear(sep) => (date.day(), date.month(), sep),
        DateStyle::Iso | DateStyle::Compact => {
            push_digits(out, date.year().unsigned_abs().into(), 4);
            let sep = matches!(style, DateStyle::Iso).then_some('-');
            for part in [date.month(), date.day()] {
                out.extend(sep);
                push_digits(out, u64::from(part), 2);
            }
            return;
        }
    };
    push_digits(out, u64::from(first), 2);
    out.push(char::from(sep));
    push_digits(out, u64::from(second), 2);
    out.push(char::from(sep));
    push_digits(out, date.year().unsigned_abs().into(), 4);
}

/// `1234567` cents becomes `12,345.67`, `12.345,67` or `12345.67` depending on the style.
pub(crate) fn write_amount(out: &mut String, cents: i64, decimals: bool, style: AmountStyle) {
    let negative = cents < 0;
    if negative {
        out.push(if style.negative_parens { '(' } else { '-' });
    }
    let abs = cents.unsigned_abs();
    let (buffer, start) = digits(abs / 100);
    let len = buffer.len() - start;
    for (i, &b) in buffer[start..].iter().enumerate() {
        if i > 0 && (len - i) % 3 == 0 {
            if let Some(t) = style.thousands {
                out.push(char::from(t));
            }
        }
        out.push(char::from(b));
    }
    if decimals {
        out.push(char::from(style.decimal));
        push_digits(out, abs % 100, 2);
    }
    if negative && style.negative_parens {
        out.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: AmountStyle = AmountStyle {
        decimal: b'.',
        thousands: Some(b','),
        negative_parens: true,
    };
    const DE: AmountStyle = AmountStyle {
        decimal: b',',
        thousands: Some(b'.'),
        negative_parens: false,
    };

    fn amount(cents: i64, decimals: bool, style: AmountStyle) -> String {
        let mut s = String::new();
        write_amount(&mut s, cents, decimals, style);
        s
    }

    #[test]
    fn amounts_follow_the_carrier_conventions() {
        assert_eq!(amount(123_456, true, US), "1,234.56");
        assert_eq!(amount(-123_456, true, US), "(1,234.56)");
        assert_eq!(amount(-5, true, DE), "-0,05");
        assert_eq!(amount(10_000_000_000, false, DE), "100.000.000");
        assert_eq!(amount(99_900, true, DE), "999,00");
    }

    #[test]
    fn rows_quote_what_needs_quoting_and_encode_latin1() {
        let date = NaiveDate::from_ymd_opt(2025, 3, 7).unwrap();
        let mut w = RowWriter::new(TextStyle {
            delimiter: b',',
            encoding: TextEncoding::Latin1,
            crlf: true,
            date: DateStyle::MonthDayYear(b'/'),
            amount: US,
        });
        w.begin(b',');
        w.text("Müller, \"Jo\"");
        w.amount(123_456);
        w.date(date);
        w.end_row();
        assert_eq!(
            w.bytes(),
            b"\"M\xfcller, \"\"Jo\"\"\",\"1,234.56\",03/07/2025\r\n"
        );
        w.cut_in_field(2, 4);
        assert_eq!(w.bytes(), b"\"M\xfcller, \"\"Jo\"\"\",\"1,234.56\",03/0");
    }

    #[test]
    fn utf16_rows_carry_symbols_and_serials() {
        let mut w = RowWriter::new(TextStyle {
            delimiter: b'\t',
            encoding: TextEncoding::Utf16Le,
            crlf: true,
            date: DateStyle::DayMonthYear(b'/'),
            amount: US,
        });
        assert_eq!(w.preamble(), b"\xFF\xFE");
        w.begin(b'\t');
        w.amount_with_symbol("£", 123_450);
        w.serial(NaiveDate::from_ymd_opt(2025, 3, 31).unwrap());
        w.end_row();
        let units: Vec<u16> = w
            .bytes()
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(String::from_utf16(&units).unwrap(), "£1,234.50\t45747\r\n");
    }

    #[test]
    fn dates_in_every_style() {
        let date = NaiveDate::from_ymd_opt(2025, 3, 7).unwrap();
        let render = |style| {
            let mut s = String::new();
            write_date(&mut s, date, style);
            s
        };
        assert_eq!(render(DateStyle::Iso), "2025-03-07");
        assert_eq!(render(DateStyle::Compact), "20250307");
        assert_eq!(render(DateStyle::DayMonthYear(b'.')), "07.03.2025");
        assert_eq!(windows_1252('é'), 0xE9);
        assert_eq!(windows_1252('€'), 0x80);
    }
}
