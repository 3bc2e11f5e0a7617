//! Opaque cursors for keyset pagination: clients pass them back, never build them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The position after the last item of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub after_id: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1:{}", self.after_id))
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        let invalid = || format!("cursor '{text}' is not one this server issued");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let s = String::from_utf8(bytes).map_err(|_| invalid())?;
        let id = s
            .strip_prefix("v1:")
            .and_then(|n| n.parse::<i64>().ok())
            .ok_or_else(invalid)?;
        Ok(Self { after_id: id })
    }
}

/// A page of `items`, fetched with one row more than `limit` to tell whether a next page
/// exists; its cursor points after the last item kept.
pub(crate) fn page_of<T>(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> i64) -> crate::Page<T> {
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items
            .last()
            .map(|last| Cursor { after_id: id(last) }.encode())
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
        let c = Cursor { after_id: 42 };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("bm9wZQ").is_err());
        assert!(Cursor::decode("!!").is_err());
    }
}
