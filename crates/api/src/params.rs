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
        Self::with_prefixes(values, allowed, &[])
    }

    /// Like [`Params::new`], also accepting any parameter that starts with one of `prefixes`
    /// (`extra.broker_code`).
    pub fn with_prefixes(
        values: HashMap<String, String>,
        allowed: &[&str],
        prefixes: &[&str],
    ) -> Result<Self, Problem> {
        let known = |k: &str| {
            allowed.contains(&k)
                || prefixes
                    .iter()
                    .any(|p| k.len() > p.len() && k.starts_with(p))
        };
        if let Some(unknown) = values.keys().find(|k| !known(k)) {
            let mut accepted = allowed.join(", ");
            for p in prefixes {
                accepted.push_str(&format!(", {p}KEY"));
            }
            return Err(Problem::bad_request(format!(
                "unknown query parameter '{unknown}'; this endpoint accepts: {accepted}"
            )));
        }
        Ok(Self { values })
    }

    /// The parameters that start with `prefix`, without it, sorted by name.
    pub fn prefixed(&self, prefix: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .values
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_owned(), v.clone())))
            .collect();
        out.sort();
        out
    }

    /// Whether `include=…` asks for `what` (a comma-separated list; unknown names are a 400).
    pub fn includes(&self, what: &str, known: &[&str]) -> Result<bool, Problem> {
        let Some(list) = self.text("include") else {
            return Ok(false);
        };
        let mut found = false;
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !known.contains(&item) {
                return Err(Problem::bad_request(format!(
                    "query parameter 'include': unknown '{item}'; it accepts: {}",
                    known.join(", ")
                )));
            }
            found |= item == what;
        }
        Ok(found)
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
    /// The instant of an as-of read: the `as_of` parameter, or the one a cursor of an as-of
    /// list carries (so following `next_cursor` stays at that instant). A cursor used with
    /// another instant than its list's is refused.
    pub fn as_of(&self) -> Result<Option<DateTime<Utc>>, Problem> {
        // Versions are timed to the microsecond: finer digits cannot tell versions apart.
        let given = self
            .text("as_of")
            .map(|v| {
                parse_as_of(&v)
                    .map(|t| DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t))
                    .map_err(|e| Problem::bad_request(format!("query parameter 'as_of': {e}")))
            })
            .transpose()?;
        let Some(cursor) = self.cursor()? else {
            return Ok(given);
        };
        match (given, cursor.as_of) {
            (given, None) if given.is_some() => Err(Problem::bad_request(
                "query parameter 'cursor' belongs to a list of the current versions, not one as of an instant",
            )),
            (Some(a), Some(b)) if a != b => Err(Problem::bad_request(format!(
                "query parameter 'cursor' belongs to the list as of {}, not as of {}",
                b.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                a.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ))),
            (given, from_cursor) => Ok(given.or(from_cursor)),
        }
    }

    fn cursor(&self) -> Result<Option<Cursor>, Problem> {
        self.text("cursor")
            .map(|c| Cursor::decode(&c).map_err(Problem::bad_request))
            .transpose()
    }

    pub fn page(&self) -> Result<PageRequest, Problem> {
        let limit = self.parsed::<u32>("limit")?.unwrap_or(50);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Problem::bad_request(format!(
                "query parameter 'limit' must be between 1 and {MAX_LIMIT}, not {limit}"
            )));
        }
        let after_id = self.cursor()?.map(|c| c.after_id);
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
