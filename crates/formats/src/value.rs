//! Values as payloads carry them: text, numbers as written, spreadsheet dates, and the
//! nested lists and maps of JSON and XML.

use chrono::NaiveDateTime;
use std::borrow::Cow;

/// A value read from a payload, before any mapping.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Absent or JSON `null` or an empty cell.
    Null,
    /// Text, as decoded (delimited and fixed-width fields, XML text, JSON strings, text cells).
    Text(String),
    /// A number as the payload wrote it (`"1234.50"` from JSON keeps its digits); numeric
    /// spreadsheet cells are rendered in the shortest form that reads back the same.
    Number(String),
    Bool(bool),
    /// A spreadsheet cell formatted as a date (or date and time).
    DateTime(NaiveDateTime),
    List(Vec<Value>),
    /// An object (JSON) or element (XML), keys in source order. XML attributes are keys
    /// `@name`; an element's own text beside attributes or children is the key `#text`;
    /// a repeated child element becomes a [`Value::List`] under its name.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// The scalar as text: `None` for null, lists and maps. Dates are ISO 8601
    /// (`2025-03-31`, or `2025-03-31T12:30:00` with a time).
    pub fn as_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::Null | Value::List(_) | Value::Map(_) => None,
            Value::Text(s) | Value::Number(s) => Some(Cow::Borrowed(s)),
            Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Value::DateTime(d) => Some(Cow::Owned(if d.time() == chrono::NaiveTime::MIN {
                d.date().format("%Y-%m-%d").to_string()
            } else {
                d.format("%Y-%m-%dT%H:%M:%S").to_string()
            })),
        }
    }

    /// The member `key` of a map (exact match first, then ignoring ASCII case).
    pub fn get(&self, key: &str) -> Option<&Value> {
        let Value::Map(entries) = self else {
            return None;
        };
        entries
            .iter()
            .find(|(k, _)| k == key)
            .or_else(|| entries.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
            .map(|(_, v)| v)
    }

    /// Element `index` of a list. A non-list value is a list of itself (XML writes a
    /// child that happens to occur once without a list).
    pub fn index(&self, index: usize) -> Option<&Value> {
        match self {
            Value::List(items) => items.get(index),
            other if index == 0 => Some(other),
            _ => None,
        }
    }

    /// The items of a list; a single non-null value is one item, null is none.
    pub fn items(&self) -> &[Value] {
        match self {
            Value::List(items) => items,
            Value::Null => &[],
            other => std::slice::from_ref(other),
        }
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Text(_) => "text",
            Value::Number(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::DateTime(_) => "a date",
            Value::List(_) => "a list",
            Value::Map(_) => "an object",
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Text(s) => s.trim().is_empty(),
            _ => false,
        }
    }
}
