//! Recognises payloads that are not text at all, so the error says what was sent instead
//! of listing missing columns.

/// Given the first few KiB of a payload, says what it is when it is clearly not delimited text.
pub fn sniff_binary(prefix: &[u8]) -> Option<String> {
    let known: &[(&[u8], &str)] = &[
        (b"PK\x03\x04", "a ZIP archive (an XLSX workbook?)"),
        (b"\xD0\xCF\x11\xE0", "an OLE2 document (an XLS workbook?)"),
        (b"%PDF", "a PDF document"),
        (b"\x89PNG", "a PNG image"),
        (b"\xFF\xD8\xFF", "a JPEG image"),
        (b"\x1F\x8B", "a gzip archive"),
        (b"\xFF\xFE", "UTF-16 (little-endian) text"),
        (b"\xFE\xFF", "UTF-16 (big-endian) text"),
    ];
    if let Some((_, what)) = known.iter().find(|(magic, _)| prefix.starts_with(magic)) {
        return Some(format!("the payload is {what}, not delimited text"));
    }
    prefix.iter().position(|b| *b == 0).map(|offset| {
        format!(
            "the payload contains a NUL byte at offset {offset}: a binary file, not delimited text"
        )
    })
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
}
