//! Recognises payloads that are clearly not of the declared format, so the error says what
//! was sent instead of listing missing columns.

use crate::SourceFormat;

const ZIP: &[u8] = b"PK\x03\x04";
const EMPTY_ZIP: &[u8] = b"PK\x05\x06";
const OLE2: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";

/// How the format is named in messages (`the payload is a PDF document, not <this>`).
pub(crate) fn format_name(format: SourceFormat) -> &'static str {
    match format {
        SourceFormat::Csv => "delimited text",
        SourceFormat::Fixed => "fixed-width text",
        SourceFormat::Xlsx => "an XLSX workbook",
        SourceFormat::Xls => "an XLS workbook",
        SourceFormat::Json => "a JSON document",
        SourceFormat::Ndjson => "NDJSON (one JSON record per line)",
        SourceFormat::Xml => "an XML document",
    }
}

fn binary_kind(prefix: &[u8]) -> Option<&'static str> {
    let known: &[(&[u8], &str)] = &[
        (ZIP, "a ZIP archive (an XLSX workbook? then set format = \"xlsx\")"),
        (EMPTY_ZIP, "an empty ZIP archive"),
        (
            b"\xD0\xCF\x11\xE0",
            "an OLE2 document (an XLS workbook? then set format = \"xls\"; or a password-protected file)",
        ),
        (b"%PDF", "a PDF document"),
        (b"\x89PNG", "a PNG image"),
        (b"\xFF\xD8\xFF", "a JPEG image"),
        (b"\x1F\x8B", "a gzip archive"),
        (b"7z\xBC\xAF\x27\x1C", "a 7-Zip archive"),
        (b"Rar!", "a RAR archive"),
    ];
    known
        .iter()
        .find(|(magic, _)| prefix.starts_with(magic))
        .map(|(_, what)| *what)
}

/// True when the prefix starts with a UTF-16 byte-order mark, or looks like UTF-16 text
/// without one (every other byte NUL, the others ASCII).
fn looks_utf16(prefix: &[u8]) -> bool {
    if prefix.starts_with(b"\xFF\xFE") || prefix.starts_with(b"\xFE\xFF") {
        return true;
    }
    let sample = &prefix[..prefix.len().min(512) & !1];
    if sample.len() < 4 {
        return false;
    }
    // Mostly ASCII text has a NUL in every other byte; allow some other characters.
    let pairs = sample.len() / 2;
    let le = sample
        .chunks_exact(2)
        .filter(|p| p[1] == 0 && p[0] != 0)
        .count();
    let be = sample
        .chunks_exact(2)
        .filter(|p| p[0] == 0 && p[1] != 0)
        .count();
    let le = le * 4 >= pairs * 3;
    let be = be * 4 >= pairs * 3;
    le || be
}

/// The first character of a text payload, skipping a UTF-8 BOM and whitespace (UTF-16 is
/// read through its ASCII half).
fn first_char(prefix: &[u8]) -> Option<u8> {
    let body = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    let body = body
        .strip_prefix(b"\xFF\xFE")
        .or_else(|| body.strip_prefix(b"\xFE\xFF"))
        .unwrap_or(body);
    body.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0))
}

/// What the payload is, when it clearly is not `format` (`"a PDF document"`); `None` when
/// it may well be.
pub(crate) fn identify(format: SourceFormat, prefix: &[u8]) -> Option<String> {
    match format {
        SourceFormat::Xlsx => {
            if prefix.starts_with(ZIP) || prefix.is_empty() {
                return None;
            }
            if prefix.starts_with(OLE2) {
                return Some(
                    "an OLE2 document: a legacy XLS workbook (then set format = \"xls\"), or a password-protected workbook, which cannot be read"
                        .to_owned(),
                );
            }
            Some(
                binary_kind(prefix)
                    .map(str::to_owned)
                    .unwrap_or_else(|| text_kind(prefix)),
            )
        }
        SourceFormat::Xls => {
            if prefix.starts_with(OLE2) || prefix.is_empty() {
                return None;
            }
            if prefix.starts_with(ZIP) {
                return Some(
                    "a ZIP archive: an XLSX workbook (then set format = \"xlsx\")".to_owned(),
                );
            }
            Some(
                binary_kind(prefix)
                    .map(str::to_owned)
                    .unwrap_or_else(|| text_kind(prefix)),
            )
        }
        text => {
            if let Some(what) = binary_kind(prefix) {
                return Some(what.to_owned());
            }
            if looks_utf16(prefix) {
                return None;
            }
            if let Some(offset) = prefix.iter().position(|b| *b == 0) {
                return Some(format!(
                    "a binary file (it contains a NUL byte at offset {offset})"
                ));
            }
            let first = first_char(prefix);
            match (text, first) {
                (SourceFormat::Json, Some(b'{' | b'[')) | (SourceFormat::Json, None) => None,
                (SourceFormat::Json, Some(b'<')) => Some("XML or HTML, not JSON".to_owned()),
                (SourceFormat::Json, Some(c)) => Some(format!(
                    "text that does not start with '[' or '{{' (it starts with '{}')",
                    char::from(c)
                )),
                (SourceFormat::Xml, Some(b'<')) | (SourceFormat::Xml, None) => None,
                (SourceFormat::Xml, Some(b'{' | b'[')) => Some("JSON, not XML".to_owned()),
                (SourceFormat::Xml, Some(c)) => Some(format!(
                    "text that does not start with '<' (it starts with '{}')",
                    char::from(c)
                )),
                _ => None,
            }
        }
    }
}

/// A short description of a text payload sent as a workbook.
fn text_kind(prefix: &[u8]) -> String {
    match first_char(prefix) {
        Some(b'<') => {
            "XML or HTML text (an \"Excel\" export that is really a web page or XML spreadsheet? save it as XLSX)"
                .to_owned()
        }
        Some(b'{' | b'[') => "JSON text".to_owned(),
        _ if prefix.contains(&0) && !looks_utf16(prefix) => "an unrecognised binary file".to_owned(),
        _ => "text (a CSV file? then set format = \"csv\")".to_owned(),
    }
}

/// Given the first few KiB of a payload, says what it is when it is clearly not `format`:
/// `"the payload is a PDF document, not an XLSX workbook"`.
pub fn sniff(format: SourceFormat, prefix: &[u8]) -> Option<String> {
    identify(format, prefix)
        .map(|what| format!("the payload is {what}, not {}", format_name(format)))
}

/// Given the first few KiB of a payload, says what it is when it is clearly not delimited
/// text. (A UTF-16 payload is text: the readers transcode it.)
pub fn sniff_binary(prefix: &[u8]) -> Option<String> {
    sniff(SourceFormat::Csv, prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_payloads_are_named() {
        assert!(sniff_binary(b"PK\x03\x04rest").unwrap().contains("XLSX"));
        assert!(sniff_binary(b"a;b\n1;\0").unwrap().contains("offset 6"));
        assert_eq!(sniff_binary(b"a;b\n1;2\n"), None);
    }

    #[test]
    fn utf16_is_text_now() {
        assert_eq!(sniff_binary(b"\xFF\xFEa\0;\0b\0"), None);
        assert_eq!(sniff(SourceFormat::Xml, b"<\0?\0x\0m\0l\0"), None);
    }

    #[test]
    fn workbooks_are_checked_per_format() {
        assert_eq!(sniff(SourceFormat::Xlsx, b"PK\x03\x04rest"), None);
        assert_eq!(sniff(SourceFormat::Xls, OLE2), None);
        let wrong = sniff(SourceFormat::Xlsx, OLE2).unwrap();
        assert!(
            wrong.contains("XLS workbook") && wrong.ends_with("not an XLSX workbook"),
            "{wrong}"
        );
        assert!(sniff(SourceFormat::Xls, b"PK\x03\x04")
            .unwrap()
            .contains("\"xlsx\""));
        assert!(sniff(SourceFormat::Xlsx, b"policy;premium\n")
            .unwrap()
            .contains("CSV"));
        assert!(sniff(SourceFormat::Xlsx, b"%PDF-1.4")
            .unwrap()
            .contains("PDF"));
    }

    #[test]
    fn tree_formats_check_the_first_character() {
        assert_eq!(sniff(SourceFormat::Json, b"\xEF\xBB\xBF  [{}]"), None);
        assert!(sniff(SourceFormat::Json, b"<?xml").unwrap().contains("XML"));
        assert!(sniff(SourceFormat::Xml, b"{\"a\":1}")
            .unwrap()
            .contains("JSON"));
        assert_eq!(sniff(SourceFormat::Ndjson, b"{\"a\":1}\n"), None);
    }
}
