//! Parsing of the values carriers write: dates in their formats, decimals with their
//! separators. Pure functions, each error says what was expected.

use chrono::format::{Item, StrftimeItems};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::str::FromStr;

/// How a carrier writes numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalFormat {
    pub decimal_separator: char,
    pub thousands_separator: Option<char>,
}

impl Default for DecimalFormat {
    fn default() -> Self {
        Self {
            decimal_separator: '.',
            thousands_separator: None,
        }
    }
}

/// Parses `1.234,56`, `-12.5`, `(99.00)` (accounting negative) exactly.
pub fn parse_decimal(raw: &str, format: DecimalFormat) -> Result<Decimal, String> {
    let text = raw.trim();
    let (negative_parens, text) = match text.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
        Some(inner) => (true, inner.trim()),
        None => (false, text),
    };
    let mut normalised = String::with_capacity(text.len());
    let mut seen_decimal = false;
    for (i, c) in text.chars().enumerate() {
        match c {
            '0'..='9' => normalised.push(c),
            '-' | '+' if i == 0 && !negative_parens => normalised.push(c),
            c if c == format.decimal_separator && !seen_decimal => {
                seen_decimal = true;
                normalised.push('.');
            }
            c if Some(c) == format.thousands_separator && !seen_decimal => {}
            _ => {
                return Err(format!(
                    "'{raw}' is not a number written with decimal separator '{}'{}",
                    format.decimal_separator,
                    format
                        .thousands_separator
                        .map(|t| format!(" and thousands separator '{t}'"))
                        .unwrap_or_default()
                ))
            }
        }
    }
    if !normalised.chars().any(|c| c.is_ascii_digit()) {
        return Err(format!("'{raw}' is not a number"));
    }
    let value =
        Decimal::from_str(&normalised).map_err(|e| format!("'{raw}' is not a number: {e}"))?;
    Ok(if negative_parens { -value } else { value })
}

/// Parses a date in the first of `formats` (strftime syntax) that fits.
pub fn parse_date(raw: &str, formats: &[String]) -> Result<NaiveDate, String> {
    let text = raw.trim();
    for format in formats {
        if let Ok(date) = NaiveDate::parse_from_str(text, format) {
            return Ok(date);
        }
    }
    Err(format!(
        "'{raw}' is not a date in the format{} {}",
        if formats.len() > 1 { "s" } else { "" },
        formats.join(" or ")
    ))
}

/// The day an Excel serial number stands for, in the 1900 date system (`45747` is
/// 2025-03-31). Excel counts a 29 February 1900 that never was, so serials from 61 on are
/// counted from 1899-12-30; fractions (times of day) are dropped.
pub fn excel_serial_date(serial: &str) -> Result<NaiveDate, String> {
    let value: f64 = serial
        .trim()
        .parse()
        .map_err(|_| format!("'{serial}' is not an Excel serial date"))?;
    if !(1.0..=2_958_465.0).contains(&value) {
        return Err(format!(
            "'{serial}' is outside the range of Excel serial dates (1 to 2958465)"
        ));
    }
    let days = value.trunc() as u64;
    let base = if days >= 61 {
        NaiveDate::from_ymd_opt(1899, 12, 30)
    } else if days == 60 {
        return Err(format!(
            "'{serial}' is Excel's 29 February 1900, a day that does not exist"
        ));
    } else {
        NaiveDate::from_ymd_opt(1899, 12, 31)
    }
    .expect("valid base date");
    Ok(base + chrono::Days::new(days))
}

/// Currency symbols carriers write before or after amounts, with their ISO codes.
pub const CURRENCY_SYMBOLS: [(&str, &str); 5] = [
    ("£", "GBP"),
    ("€", "EUR"),
    ("$", "USD"),
    ("¥", "JPY"),
    ("CHF", "CHF"),
];

/// Removes a currency symbol or ISO code written before or after an amount
/// (`£1,234.50`, `1.234,50 €`, `EUR 12`).
pub fn strip_currency(raw: &str) -> &str {
    let text = raw.trim();
    for (symbol, _) in CURRENCY_SYMBOLS {
        if let Some(rest) = text.strip_prefix(symbol) {
            return rest.trim_start();
        }
        if let Some(rest) = text.strip_suffix(symbol) {
            return rest.trim_end();
        }
    }
    let b = text.as_bytes();
    let n = b.len();
    if n > 3 && b[..3].iter().all(u8::is_ascii_uppercase) && !b[3].is_ascii_alphabetic() {
        return text[3..].trim_start();
    }
    if n > 3 && b[n - 3..].iter().all(u8::is_ascii_uppercase) && !b[n - 4].is_ascii_alphabetic() {
        return text[..n - 3].trim_end();
    }
    text
}

/// Reads an amount as a carrier writes it: separators, a currency symbol or code, an
/// accounting negative, optionally a percentage and a scale factor.
pub fn parse_amount(
    raw: &str,
    format: DecimalFormat,
    percent: bool,
    scale: Option<Decimal>,
) -> Result<Decimal, String> {
    let trimmed = raw.trim();
    // An accounting negative may enclose the symbol: `(£12.00)`.
    let (parens, inner) = match trimmed.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
        Some(inner) => (true, inner.trim()),
        None => (false, trimmed),
    };
    let (negative, rest) = match inner.strip_prefix('-') {
        Some(r) => (true, r.trim_start()),
        None => (parens, inner),
    };
    if parens && inner.starts_with('-') {
        return Err(format!("'{raw}' has two signs"));
    }
    let mut text = strip_currency(rest);
    let mut is_percent = false;
    if let Some(t) = text.strip_suffix('%') {
        text = t.trim_end();
        is_percent = true;
    }
    if is_percent && !percent {
        return Err(format!(
            "'{raw}' is a percentage; add `percent = true` to read it as a fraction"
        ));
    }
    if negative && text.starts_with(['-', '+', '(']) {
        return Err(format!("'{raw}' has two signs"));
    }
    let v = parse_decimal(text, format).map_err(|e| {
        if text == trimmed {
            e
        } else {
            format!("{e} (read from '{raw}')")
        }
    })?;
    let mut v = if negative { -v } else { v };
    if percent {
        v /= Decimal::ONE_HUNDRED;
    }
    if let Some(s) = scale {
        v = v
            .checked_mul(s)
            .ok_or_else(|| format!("'{raw}' times {s} is too large"))?;
    }
    Ok(v)
}

/// Checks a strftime date format before any record is read.
pub(crate) fn check_date_format(format: &str) -> Result<(), String> {
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        return Err(format!("'{format}' is not a valid date format"));
    }
    let probe = NaiveDate::from_ymd_opt(2024, 12, 31).expect("valid date");
    let shown = probe.format(format).to_string();
    NaiveDate::parse_from_str(&shown, format)
        .map(|_| ())
        .map_err(|e| format!("date format '{format}' cannot read back a full date: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eu() -> DecimalFormat {
        DecimalFormat {
            decimal_separator: ',',
            thousands_separator: Some('.'),
        }
    }

    #[test]
    fn decimals_in_carrier_conventions() {
        assert_eq!(
            parse_decimal("1.234,56", eu()).unwrap(),
            Decimal::new(123456, 2)
        );
        assert_eq!(parse_decimal(" -7,5 ", eu()).unwrap(), Decimal::new(-75, 1));
        assert_eq!(
            parse_decimal("(99.00)", DecimalFormat::default()).unwrap(),
            Decimal::new(-9900, 2)
        );
        assert!(parse_decimal("12.5", eu()).unwrap() == Decimal::new(125, 0));
        assert!(parse_decimal("1,5", DecimalFormat::default()).is_err());
        assert!(parse_decimal("abc", eu()).is_err());
        assert!(parse_decimal("", eu()).is_err());
    }

    #[test]
    fn dates_try_each_format() {
        let formats = vec!["%d.%m.%Y".to_owned(), "%Y-%m-%d".to_owned()];
        assert_eq!(
            parse_date("2025-02-03", &formats).unwrap(),
            NaiveDate::from_ymd_opt(2025, 2, 3).unwrap()
        );
        let err = parse_date("31.02.2025", &formats).unwrap_err();
        assert!(err.contains("%d.%m.%Y or %Y-%m-%d"), "{err}");
    }

    #[test]
    fn date_formats_are_checked_up_front() {
        assert!(check_date_format("%d/%m/%Y").is_ok());
        assert!(check_date_format("%Q").is_err());
        assert!(check_date_format("%d/%m").is_err());
    }
}
