//! Query parameters, parsed strictly: an unknown or malformed parameter is a 400 that names
//! it, never silently ignored.

use crate::problem::Problem;
use carrierhub_store::{parse_as_of, Cursor, PageRequest};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::str::FromStr;

pub const MAX_LIMIT: u32 = 500;

pub struct Params {
    values: HashMap<String, String>,
}

impl Params {
    pub fn new(values: HashMap<String, String>, allowed: &[&str]) -> Result<Self, Problem> {
        if let Some(unknown) = values.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Problem::bad_request(format!(
                "unknown query parameter '{unknown}'; this endpoint accepts: {}",
                allowed.join(", ")
            )));
        }
        Ok(Self { values })
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.values.get(name).filter(|v| !v.is_empty()).cloned()
    }

    pub fn parsed<T: FromStr>(&self, name: &str) -> Result<Option<T>, Problem>
    where
        T::Err: std::fmt::Display,
    {
        self.text(name)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|e| Problem::bad_request(format!("query parameter '{name}': {e}")))
            })
            .transpose()
    }

    /// `as_of`: the instant an as-of read describes (RFC 3339, or a date for midnight UTC).
    pub fn as_of(&self) -> Result<Option<DateTime<Utc>>, Problem> {
        self.text("as_of")
            .map(|v| {
                parse_as_of(&v)
                    .map_err(|e| Problem::bad_request(format!("query parameter 'as_of': {e}")))
            })
            .transpose()
    }

    pub fn page(&self) -> Result<PageRequest, Problem> {
        let limit = self.parsed::<u32>("limit")?.unwrap_or(50);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Problem::bad_request(format!(
                "query parameter 'limit' must be between 1 and {MAX_LIMIT}, not {limit}"
            )));
        }
        let after_id = self
            .text("cursor")
            .map(|c| Cursor::decode(&c).map_err(Problem::bad_request))
            .transpose()?
            .map(|c| c.after_id);
        Ok(PageRequest { after_id, limit })
    }
}

/// A numeric id from the path; anything else is simply not found.
pub fn path_id(kind: &str, raw: &str) -> Result<i64, Problem> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Problem::not_found(format!("no {kind} with id '{raw}'")))
}
