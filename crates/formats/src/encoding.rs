//! Text encodings carriers actually use, decoded field by field so that one bad byte
//! rejects one record, not the file.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TextEncoding {
    #[default]
    Utf8,
    /// ISO-8859-1 proper: every byte is the code point of the same value.
    Latin1,
    Windows1252,
}

impl TextEncoding {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Utf8 => "utf-8",
            Self::Latin1 => "iso-8859-1",
            Self::Windows1252 => "windows-1252",
        }
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
            Self::Windows1252 => {
                let (text, had_errors) = encoding_rs::WINDOWS_1252
                    .decode_without_bom_handling_and_without_replacement(bytes)
                    .map(|t| (t, false))
                    .unwrap_or_else(|| (Default::default(), true));
                if had_errors {
                    Err("invalid Windows-1252 byte".to_owned())
                } else {
                    Ok(text.into_owned())
                }
            }
        }
    }
}

impl FromStr for TextEncoding {
    type Err = crate::FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(Self::Utf8),
            "iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" => Ok(Self::Latin1),
            "windows-1252" | "cp1252" => Ok(Self::Windows1252),
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
}
