//! Text encodings carriers actually use.
//!
//! ASCII-compatible encodings (UTF-8, ISO-8859-1, Windows-1252) are decoded **field by
//! field** by the tabular readers, so one bad byte rejects one record (naming the column),
//! not the file. UTF-16 cannot be split into fields before it is decoded, so a UTF-16
//! payload is transcoded to UTF-8 *as a stream* ([`TextInput`]) and then read as UTF-8. The
//! XML reader needs valid UTF-8 throughout, so it transcodes every encoding.
//!
//! A transcoded stream is always valid UTF-8: an invalid sequence in the source becomes the
//! noncharacter U+FDD0 ([`MALFORMED`]), which the field decoder reports as an error of the
//! record (and column) it lands in. (A payload that genuinely contains U+FDD0, a
//! noncharacter that has no business in interchange, is reported the same way.)

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::{self, Read};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TextEncoding {
    #[default]
    Utf8,
    /// ISO-8859-1 proper: every byte is the code point of the same value.
    Latin1,
    Windows1252,
    /// UTF-16 with a byte-order mark; little-endian when there is none.
    Utf16,
    Utf16Le,
    Utf16Be,
}

/// Marks an invalid byte sequence in a transcoded stream (see the module documentation).
pub(crate) const MALFORMED: char = '\u{FDD0}';
const MALFORMED_UTF8: &[u8] = "\u{FDD0}".as_bytes();

impl TextEncoding {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Utf8 => "utf-8",
            Self::Latin1 => "iso-8859-1",
            Self::Windows1252 => "windows-1252",
            Self::Utf16 => "utf-16",
            Self::Utf16Le => "utf-16le",
            Self::Utf16Be => "utf-16be",
        }
    }

    /// True for the UTF-16 encodings, which are transcoded as a stream.
    pub fn is_utf16(&self) -> bool {
        matches!(self, Self::Utf16 | Self::Utf16Le | Self::Utf16Be)
    }

    /// Decodes one field. `Err` carries a description of the first invalid byte.
    pub fn decode(&self, bytes: &[u8]) -> Result<String, String> {
        match self {
            Self::Utf8 => std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| {
                format!(
                    "invalid UTF-8 (byte 0x{:02X} at offset {}); is the file encoded as ISO-8859-1 or Windows-1252?",
                    bytes[e.valid_up_to()],
                    e.valid_up_to()
                )
            }),
            Self::Latin1 => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
            Self::Windows1252 => encoding_rs::WINDOWS_1252
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(Cow::into_owned)
                .ok_or_else(|| "invalid Windows-1252 byte".to_owned()),
            Self::Utf16 | Self::Utf16Le => encoding_rs::UTF_16LE
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(Cow::into_owned)
                .ok_or_else(|| "invalid UTF-16 (little-endian)".to_owned()),
            Self::Utf16Be => encoding_rs::UTF_16BE
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(Cow::into_owned)
                .ok_or_else(|| "invalid UTF-16 (big-endian)".to_owned()),
        }
    }
}

impl FromStr for TextEncoding {
    type Err = crate::FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(Self::Utf8),
            "iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "latin-1" => Ok(Self::Latin1),
            "windows-1252" | "cp1252" => Ok(Self::Windows1252),
            "utf-16" | "utf16" => Ok(Self::Utf16),
            "utf-16le" | "utf16le" | "utf-16-le" => Ok(Self::Utf16Le),
            "utf-16be" | "utf16be" | "utf-16-be" => Ok(Self::Utf16Be),
            other => Err(crate::FormatError::UnknownEncoding(other.to_owned())),
        }
    }
}

impl TryFrom<String> for TextEncoding {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse().map_err(|e: crate::FormatError| e.to_string())
    }
}

impl From<TextEncoding> for String {
    fn from(value: TextEncoding) -> Self {
        value.label().to_owned()
    }
}

/// How the readers turn the bytes of one field (or one JSON string, one XML text) into
/// text, once the stream has been opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldDecoder {
    /// The bytes are the payload's own, in this ASCII-compatible encoding.
    Direct(TextEncoding),
    /// The stream was transcoded to UTF-8 from this encoding; [`MALFORMED`] marks the
    /// source's invalid sequences.
    Transcoded(&'static str),
}

impl FieldDecoder {
    pub(crate) fn decode<'a>(&self, bytes: &'a [u8]) -> Result<Cow<'a, str>, String> {
        match self {
            Self::Direct(TextEncoding::Utf8) | Self::Transcoded(_) => {
                match std::str::from_utf8(bytes) {
                    Ok(text) => self.check(text).map(|()| Cow::Borrowed(text)),
                    Err(_) => TextEncoding::Utf8.decode(bytes).map(Cow::Owned),
                }
            }
            Self::Direct(encoding) => {
                if bytes.is_ascii() {
                    // ASCII is the same in every supported direct encoding.
                    Ok(Cow::Borrowed(std::str::from_utf8(bytes).expect("ASCII")))
                } else {
                    encoding.decode(bytes).map(Cow::Owned)
                }
            }
        }
    }

    /// For text that is already UTF-8 (transcoded streams): fails when it holds the mark
    /// of an invalid sequence of the source.
    pub(crate) fn check(&self, text: &str) -> Result<(), String> {
        match self {
            Self::Transcoded(label) => match text.find(MALFORMED) {
                None => Ok(()),
                Some(at) => Err(format!(
                    "invalid {} byte sequence in the payload (at character {} of the value)",
                    label_name(label),
                    text[..at].chars().count() + 1
                )),
            },
            Self::Direct(_) => Ok(()),
        }
    }
}

fn label_name(label: &str) -> &'static str {
    match label {
        "utf-16le" => "UTF-16 (little-endian)",
        "utf-16be" => "UTF-16 (big-endian)",
        "windows-1252" => "Windows-1252",
        "iso-8859-1" => "ISO-8859-1",
        _ => "UTF-8",
    }
}

/// What a payload's first bytes say about its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    Utf8Bom,
    Utf16LeBom,
    Utf16BeBom,
    /// `<?` in UTF-16 without a mark (XML only).
    Utf16LeXml,
    Utf16BeXml,
    None,
}

fn detect(prefix: &[u8], xml: bool) -> Detected {
    if prefix.starts_with(b"\xEF\xBB\xBF") {
        Detected::Utf8Bom
    } else if prefix.starts_with(b"\xFF\xFE") {
        Detected::Utf16LeBom
    } else if prefix.starts_with(b"\xFE\xFF") {
        Detected::Utf16BeBom
    } else if xml && prefix.starts_with(b"<\0?\0") {
        Detected::Utf16LeXml
    } else if xml && prefix.starts_with(b"\0<\0?") {
        Detected::Utf16BeXml
    } else {
        Detected::None
    }
}

/// The `encoding` of an XML declaration at the start of `prefix`, if any.
fn xml_declared_encoding(prefix: &[u8]) -> Option<String> {
    if !prefix.starts_with(b"<?xml") {
        return None;
    }
    let end = prefix.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&prefix[5..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    Some(value[..value.find(quote)?].to_owned())
}

enum Transcoder {
    Rs(encoding_rs::Decoder),
    Latin1,
}

enum Mode {
    Plain,
    Transcode {
        transcoder: Transcoder,
        input: Box<[u8]>,
        in_start: usize,
        in_end: usize,
        out: Vec<u8>,
        out_pos: usize,
        source_eof: bool,
        finished: bool,
    },
}

/// Options for opening a text payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TextOptions {
    pub declared: TextEncoding,
    /// XML: recognise UTF-16 without a mark and the declaration's `encoding`, and transcode
    /// every encoding to UTF-8 (the XML parser needs UTF-8 throughout).
    pub xml: bool,
}

/// A payload's bytes with the byte-order mark removed and, where needed, transcoded to
/// UTF-8 as they are read (memory: two 64 KiB buffers).
pub(crate) struct TextInput<R> {
    inner: R,
    head: Vec<u8>,
    head_pos: usize,
    mode: Mode,
    consumed: Arc<AtomicU64>,
}

/// What [`TextInput::open`] found out.
#[derive(Debug, Clone)]
pub(crate) struct TextInfo {
    /// How to decode fields of the (possibly transcoded) stream.
    pub decoder: FieldDecoder,
    /// Bytes of the byte-order mark that were skipped.
    pub bom_len: u64,
    /// True when the stream is transcoded (its offsets are not the payload's).
    pub transcoded: bool,
    /// Bytes of the payload read from the source so far (includes read-ahead).
    pub consumed: Arc<AtomicU64>,
}

impl<R: Read> TextInput<R> {
    pub(crate) fn open(mut inner: R, options: TextOptions) -> io::Result<(Self, TextInfo)> {
        let want = if options.xml { 1024 } else { 4 };
        let mut head = Vec::with_capacity(want);
        (&mut inner).take(want as u64).read_to_end(&mut head)?;
        let consumed = Arc::new(AtomicU64::new(head.len() as u64));
        let detected = detect(&head, options.xml);
        let (bom_len, encoding) = match detected {
            Detected::Utf8Bom => (3, TextEncoding::Utf8),
            Detected::Utf16LeBom => (2, TextEncoding::Utf16Le),
            Detected::Utf16BeBom => (2, TextEncoding::Utf16Be),
            Detected::Utf16LeXml => (0, TextEncoding::Utf16Le),
            Detected::Utf16BeXml => (0, TextEncoding::Utf16Be),
            Detected::None => {
                let mut encoding = options.declared;
                if options.xml {
                    // The document's own declaration is more specific than the mapping's
                    // default. A UTF-16 declaration read as ASCII is wrong: ignore it.
                    if let Some(declared) = xml_declared_encoding(&head)
                        .and_then(|label| label.parse::<TextEncoding>().ok())
                        .filter(|e| !e.is_utf16())
                    {
                        encoding = declared;
                    }
                }
                if encoding == TextEncoding::Utf16 {
                    encoding = TextEncoding::Utf16Le;
                }
                (0, encoding)
            }
        };
        let transcode = encoding.is_utf16() || options.xml;
        let mode = if transcode {
            let transcoder = match encoding {
                TextEncoding::Latin1 => Transcoder::Latin1,
                TextEncoding::Windows1252 => {
                    Transcoder::Rs(encoding_rs::WINDOWS_1252.new_decoder_without_bom_handling())
                }
                TextEncoding::Utf16Be => {
                    Transcoder::Rs(encoding_rs::UTF_16BE.new_decoder_without_bom_handling())
                }
                TextEncoding::Utf16 | TextEncoding::Utf16Le => {
                    Transcoder::Rs(encoding_rs::UTF_16LE.new_decoder_without_bom_handling())
                }
                TextEncoding::Utf8 => {
                    Transcoder::Rs(encoding_rs::UTF_8.new_decoder_without_bom_handling())
                }
            };
            Mode::Transcode {
                transcoder,
                input: vec![0; 64 * 1024].into_boxed_slice(),
                in_start: 0,
                in_end: 0,
                out: Vec::with_capacity(64 * 1024 * 3 + 16),
                out_pos: 0,
                source_eof: false,
                finished: false,
            }
        } else {
            Mode::Plain
        };
        let decoder = if transcode {
            FieldDecoder::Transcoded(encoding.label())
        } else {
            FieldDecoder::Direct(encoding)
        };
        let input = Self {
            inner,
            head,
            head_pos: bom_len as usize,
            mode,
            consumed: consumed.clone(),
        };
        Ok((
            input,
            TextInfo {
                decoder,
                bom_len,
                transcoded: transcode,
                consumed,
            },
        ))
    }

    /// Source bytes: the peeked head first, then the inner reader.
    fn read_source(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.head_pos < self.head.len() {
            let n = (self.head.len() - self.head_pos).min(buf.len());
            buf[..n].copy_from_slice(&self.head[self.head_pos..self.head_pos + n]);
            self.head_pos += n;
            if self.head_pos == self.head.len() {
                self.head = Vec::new();
                self.head_pos = 0;
            }
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: Read> Read for TextInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if matches!(self.mode, Mode::Plain) {
            return self.read_source(buf);
        }
        loop {
            // Deliver what has been transcoded.
            if let Mode::Transcode { out, out_pos, .. } = &mut self.mode {
                if *out_pos < out.len() {
                    let n = (out.len() - *out_pos).min(buf.len());
                    buf[..n].copy_from_slice(&out[*out_pos..*out_pos + n]);
                    *out_pos += n;
                    return Ok(n);
                }
            }
            // Refill the input when it is used up.
            let (needs_input, finished) = match &self.mode {
                Mode::Transcode {
                    in_start,
                    in_end,
                    source_eof,
                    finished,
                    ..
                } => (in_start == in_end && !source_eof, *finished),
                Mode::Plain => unreachable!(),
            };
            if finished {
                return Ok(0);
            }
            if needs_input {
                let mut input = match &mut self.mode {
                    Mode::Transcode { input, .. } => std::mem::take(input),
                    Mode::Plain => unreachable!(),
                };
                let got = self.read_source(&mut input);
                let Mode::Transcode {
                    input: slot,
                    in_start,
                    in_end,
                    source_eof,
                    ..
                } = &mut self.mode
                else {
                    unreachable!()
                };
                *slot = input;
                let n = got?;
                *in_start = 0;
                *in_end = n;
                *source_eof = n == 0;
            }
            let Mode::Transcode {
                transcoder,
                input,
                in_start,
                in_end,
                out,
                out_pos,
                source_eof,
                finished,
            } = &mut self.mode
            else {
                unreachable!()
            };
            out.clear();
            *out_pos = 0;
            let src = &input[*in_start..*in_end];
            let last = *source_eof;
            match transcoder {
                Transcoder::Latin1 => {
                    for &b in src {
                        if b < 0x80 {
                            out.push(b);
                        } else {
                            let mut tmp = [0; 4];
                            out.extend_from_slice(char::from(b).encode_utf8(&mut tmp).as_bytes());
                        }
                    }
                    *in_start = *in_end;
                    if last {
                        *finished = true;
                    }
                }
                Transcoder::Rs(decoder) => {
                    let mut read_total = 0;
                    loop {
                        let want = decoder
                            .max_utf8_buffer_length_without_replacement(src.len() - read_total)
                            .unwrap_or(src.len() * 3 + 16)
                            .max(MALFORMED_UTF8.len());
                        let start = out.len();
                        out.resize(start + want, 0);
                        let (result, read, written) = decoder.decode_to_utf8_without_replacement(
                            &src[read_total..],
                            &mut out[start..],
                            last,
                        );
                        out.truncate(start + written);
                        read_total += read;
                        match result {
                            encoding_rs::DecoderResult::InputEmpty => break,
                            encoding_rs::DecoderResult::OutputFull => continue,
                            encoding_rs::DecoderResult::Malformed(_, _) => {
                                out.extend_from_slice(MALFORMED_UTF8);
                            }
                        }
                    }
                    *in_start = *in_end;
                    if last {
                        *finished = true;
                    }
                }
            }
            if out.is_empty() && *finished {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_decodes_every_byte() {
        assert_eq!(TextEncoding::Latin1.decode(b"M\xfcller").unwrap(), "Müller");
    }

    #[test]
    fn utf8_names_the_bad_byte() {
        let err = TextEncoding::Utf8.decode(b"M\xfcller").unwrap_err();
        assert!(err.contains("0xFC"), "{err}");
    }

    #[test]
    fn labels_round_trip() {
        for e in [
            TextEncoding::Utf8,
            TextEncoding::Latin1,
            TextEncoding::Windows1252,
            TextEncoding::Utf16,
            TextEncoding::Utf16Le,
            TextEncoding::Utf16Be,
        ] {
            assert_eq!(e.label().parse::<TextEncoding>().unwrap(), e);
        }
    }

    fn transcode(bytes: &[u8], declared: TextEncoding, xml: bool) -> (String, FieldDecoder) {
        let (mut input, info) = TextInput::open(bytes, TextOptions { declared, xml }).unwrap();
        let mut out = Vec::new();
        // Small reads exercise the buffering.
        let mut chunk = [0u8; 3];
        loop {
            let n = input.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        (String::from_utf8(out).unwrap(), info.decoder)
    }

    #[test]
    fn a_utf16_mark_wins_over_the_declaration() {
        let mut le = vec![0xFF, 0xFE];
        le.extend("a;ü\n".encode_utf16().flat_map(u16::to_le_bytes));
        let (text, decoder) = transcode(&le, TextEncoding::Windows1252, false);
        assert_eq!(text, "a;ü\n");
        assert_eq!(decoder, FieldDecoder::Transcoded("utf-16le"));
        let mut be = vec![0xFE, 0xFF];
        be.extend("€\n".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(transcode(&be, TextEncoding::Utf8, false).0, "€\n");
    }

    #[test]
    fn an_unpaired_surrogate_is_marked_and_reported() {
        let mut le: Vec<u8> = "ab".encode_utf16().flat_map(u16::to_le_bytes).collect();
        le.extend([0x00, 0xD8]); // a lone high surrogate
        le.extend("c".encode_utf16().flat_map(u16::to_le_bytes));
        let (text, decoder) = transcode(&le, TextEncoding::Utf16, false);
        assert!(text.contains(MALFORMED));
        let err = decoder.decode(text.as_bytes()).unwrap_err();
        assert!(err.contains("UTF-16"), "{err}");
    }

    #[test]
    fn xml_declarations_are_honoured() {
        let (text, _) = transcode(
            b"<?xml version=\"1.0\" encoding=\"windows-1252\"?><a>\x80</a>",
            TextEncoding::Utf8,
            true,
        );
        assert!(text.ends_with("<a>€</a>"), "{text}");
        let (text, _) = transcode(b"<a>\xfc</a>", TextEncoding::Latin1, true);
        assert_eq!(text, "<a>ü</a>");
        let le: Vec<u8> = "<?xml version=\"1.0\"?><a/>"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(
            transcode(&le, TextEncoding::Utf8, true).0,
            "<?xml version=\"1.0\"?><a/>"
        );
    }
}
