//! Who may see what: roles, the carrier and book scope every read is filtered by, API keys
//! and the audit log.
//!
//! Architecture invariant: scope is enforced in the store's queries. Every read method takes
//! the caller's [`Scope`] and returns only what it allows, so an object outside it is
//! indistinguishable from one that does not exist: absent from lists and counts, `None`
//! from a lookup by id.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// What a caller may do. Which routes each role reaches is decided by the API; what data it
/// sees is decided by its [`Scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including keys and the audit log.
    Admin,
    /// Submissions, mappings, dead letters, and reads.
    Operator,
    /// Reads and queries.
    Analyst,
    /// A carrier's own system: submits its feeds and reads its own data.
    Carrier,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Analyst, Role::Carrier];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Analyst => "analyst",
            Role::Carrier => "carrier",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown role '{s}'; the roles are admin, operator, analyst, carrier")
            })
    }
}

/// The carriers and books (producer codes) a caller may see. `None` is no restriction; an
/// empty set allows nothing.
///
/// A book restriction admits a policy whose producer is one of the books, and the claims of
/// such policies. Submissions and their errors span books, so a caller restricted to books
/// sees none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carriers: Option<BTreeSet<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub books: Option<BTreeSet<String>>,
}

impl Scope {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only these carriers (all their books).
    pub fn carriers<I: IntoIterator<Item = S>, S: Into<String>>(carriers: I) -> Self {
        Self {
            carriers: Some(carriers.into_iter().map(Into::into).collect()),
            books: None,
        }
    }

    /// Also restricted to these books.
    pub fn with_books<I: IntoIterator<Item = S>, S: Into<String>>(mut self, books: I) -> Self {
        self.books = Some(books.into_iter().map(Into::into).collect());
        self
    }

    pub fn is_unrestricted(&self) -> bool {
        self.carriers.is_none() && self.books.is_none()
    }

    pub fn allows_carrier(&self, carrier: &str) -> bool {
        self.carriers.as_ref().is_none_or(|c| c.contains(carrier))
    }

    /// Whether a policy with this producer code is in the caller's books.
    pub fn allows_book(&self, producer: Option<&str>) -> bool {
        match &self.books {
            None => true,
            Some(books) => producer.is_some_and(|p| books.contains(p)),
        }
    }

    /// Whether objects that span books (submissions, their errors, mappings) are visible:
    /// only without a book restriction, and for an allowed carrier.
    pub fn allows_carrier_wide(&self, carrier: &str) -> bool {
        self.books.is_none() && self.allows_carrier(carrier)
    }

    /// The narrowest of two scopes: what both allow.
    pub fn intersect(&self, other: &Scope) -> Scope {
        fn both(
            a: &Option<BTreeSet<String>>,
            b: &Option<BTreeSet<String>>,
        ) -> Option<BTreeSet<String>> {
            match (a, b) {
                (None, None) => None,
                (Some(x), None) | (None, Some(x)) => Some(x.clone()),
                (Some(x), Some(y)) => Some(x.intersection(y).cloned().collect()),
            }
        }
        Scope {
            carriers: both(&self.carriers, &other.carriers),
            books: both(&self.books, &other.books),
        }
    }

    /// The carriers as a list for SQL (`None` when unrestricted).
    pub fn carrier_list(&self) -> Option<Vec<String>> {
        self.carriers.as_ref().map(|c| c.iter().cloned().collect())
    }

    /// The books as a list for SQL (`None` when unrestricted).
    pub fn book_list(&self) -> Option<Vec<String>> {
        self.books.as_ref().map(|b| b.iter().cloned().collect())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |s: &Option<BTreeSet<String>>| match s {
            None => "all".to_owned(),
            Some(s) => s.iter().cloned().collect::<Vec<_>>().join(","),
        };
        write!(
            f,
            "carriers={} books={}",
            list(&self.carriers),
            list(&self.books)
        )
    }
}

/// A request budget: at most `limit` requests per `window_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub limit: u32,
    pub window_secs: u32,
}

impl FromStr for RateLimit {
    type Err = String;

    /// `100/60` (100 per 60 seconds), `100/60s`, `100/1m`, `5/1h`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not a rate limit like 100/60s (requests per window)");
        let (limit, window) = s.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = limit.trim().parse().map_err(|_| bad())?;
        let window = window.trim();
        let (digits, unit) = match window.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => window.split_at(i),
            None => (window, "s"),
        };
        let n: u32 = digits.parse().map_err(|_| bad())?;
        let window_secs = match unit {
            "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            _ => return Err(bad()),
        };
        if limit == 0 || window_secs == 0 {
            return Err(format!("'{s}': the limit and the window must be positive"));
        }
        Ok(Self { limit, window_secs })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.limit, self.window_secs)
    }
}

/// A new API key. The secret itself is never stored: only its SHA-256 hash (the secret is
/// 256 random bits, so a fast hash is enough; it is compared in constant time).
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The public part of the key, which names it (`chk_<id>_<secret>`).
    pub id: String,
    /// Lower-case hex SHA-256 of the whole key text.
    pub secret_sha256: String,
    pub role: Role,
    pub scope: Scope,
    pub description: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Per route class (`reads`, `writes`, `uploads`, `queries`), overriding the role's.
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// Who created it (the admin's subject, or `cli`).
    pub created_by: String,
}

/// A stored API key, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKey {
    pub id: String,
    #[serde(skip)]
    pub secret_sha256: String,
    pub role: Role,
    pub scope: Scope,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub rate_limits: BTreeMap<String, RateLimit>,
}

impl ApiKey {
    /// Whether the key may be used at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }
}

/// One entry of the audit log: a write, a key change or a denied request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    /// Who: the key id or token subject (`anonymous` when unauthenticated).
    pub actor: String,
    /// The role the actor had, when known.
    pub role: Option<String>,
    /// What: `POST /v1/carriers/acme/submissions`, `key.create`, `denied` …
    pub action: String,
    /// The object acted on, when there is one (`submission:42`, `key:abc`).
    pub target: Option<String>,
    /// The HTTP status of the outcome.
    pub status: u16,
    /// From where: the client's address.
    pub client: Option<String>,
    pub request_id: Option<String>,
    /// Why a request was denied, or other details.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub entry: NewAuditEntry,
}

/// Which audit entries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// Only denied requests (status 401, 403, 429).
    pub denied_only: bool,
    /// Entries with an id below this (the cursor of the next page).
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_allow_what_they_name() {
        let all = Scope::all();
        assert!(all.allows_carrier("a") && all.allows_book(None));
        let a = Scope::carriers(["a"]);
        assert!(a.allows_carrier("a") && !a.allows_carrier("b"));
        assert!(a.allows_carrier_wide("a"));
        let book = Scope::carriers(["a"]).with_books(["AB12"]);
        assert!(book.allows_book(Some("AB12")));
        assert!(!book.allows_book(Some("ZZ")) && !book.allows_book(None));
        assert!(!book.allows_carrier_wide("a"));
        let nothing = Scope::carriers(Vec::<String>::new());
        assert!(!nothing.allows_carrier("a"));
        assert_eq!(
            Scope::carriers(["a", "b"]).intersect(&Scope::carriers(["b", "c"])),
            Scope::carriers(["b"])
        );
        assert_eq!(all.intersect(&book), book);
    }

    #[test]
    fn roles_and_limits_parse() {
        assert_eq!("Operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().is_err());
        let l: RateLimit = "100/1m".parse().unwrap();
        assert_eq!((l.limit, l.window_secs), (100, 60));
        assert_eq!("5/30".parse::<RateLimit>().unwrap().window_secs, 30);
        assert!("0/1m".parse::<RateLimit>().is_err());
        assert!("ten/1m".parse::<RateLimit>().is_err());
    }
}
