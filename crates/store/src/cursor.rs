//! Opaque cursors for keyset pagination: clients pass them back, never build them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use chrono::{DateTime, Utc};

/// The position after the last item of a page, and, for a list read as of an instant, that
/// instant: the next page is read as of the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub after_id: i64,
    pub as_of: Option<DateTime<Utc>>,
}

impl Cursor {
    pub fn after(after_id: i64) -> Self {
        Self {
            after_id,
            as_of: None,
        }
    }

    pub fn encode(&self) -> String {
        let text = match self.as_of {
            None => format!("v1:{}", self.after_id),
            Some(t) => format!("v1:{}@{}", self.after_id, t.timestamp_micros()),
        };
        URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        let invalid = || format!("cursor '{text}' is not one this server issued");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let s = String::from_utf8(bytes).map_err(|_| invalid())?;
        let rest = s.strip_prefix("v1:").ok_or_else(invalid)?;
        let (id, as_of) = match rest.split_once('@') {
            None => (rest, None),
            Some((id, micros)) => {
                let micros: i64 = micros.parse().map_err(|_| invalid())?;
                (
                    id,
                    Some(DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?),
                )
            }
        };
        Ok(Self {
            after_id: id.parse().map_err(|_| invalid())?,
            as_of,
        })
    }
}

/// A page of `items`, fetched with one row more than `limit` to tell whether a next page
/// exists; its cursor points after the last item kept.
pub(crate) fn page_of<T>(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> i64) -> crate::Page<T> {
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| Cursor::after(id(last)).encode())
    } else {
        None
    };
    crate::Page { items, next_cursor }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let c = Cursor::after(42);
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        let then = Cursor {
            after_id: 7,
            as_of: DateTime::from_timestamp_micros(1_764_547_200_123_456),
        };
        assert_eq!(Cursor::decode(&then.encode()).unwrap(), then);
        assert!(Cursor::decode("bm9wZQ").is_err());
        assert!(Cursor::decode("!!").is_err());
    }
}
