//! Who may see what: roles, the carrier and book scope every read is filtered by, API keys
//! and the audit log.
//!
//! Architecture invariant: scope is enforced in the store's queries. Every read method takes
//! the caller's [`Scope`] and returns only what it allows, so an object outside it is
//! indistinguishable from one that does not exist: absent from lists and counts, `None`
//! from a lookup by id.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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

impl AuditFilter {
    /// The page size when `limit` is 0 (as in `AuditFilter::default()`).
    pub const DEFAULT_LIMIT: u32 = 50;

    /// The page size to read: `limit`, or [`Self::DEFAULT_LIMIT`] when it is 0.
    pub fn page_limit(&self) -> u32 {
        if self.limit == 0 {
            Self::DEFAULT_LIMIT
        } else {
            self.limit
        }
    }

    /// The `before_id` of the page after the one whose `next_cursor` is `cursor`. Cursors are
    /// opaque ([`crate::Cursor`], as for every other list); a forged one is an error to show
    /// the caller.
    pub fn parse_cursor(cursor: &str) -> Result<i64, String> {
        let c = crate::Cursor::decode(cursor)?;
        match c.as_of {
            None => Ok(c.after_id),
            Some(_) => Err(format!("cursor '{cursor}' is not one of the audit log")),
        }
    }
}

impl NewApiKey {
    /// What the store refuses: an id not of the form keys are made with (it could never be
    /// presented, see [`parse_token`]), a hash that is not a lower-case hex SHA-256.
    pub(crate) fn check(&self) -> Result<(), crate::StoreError> {
        let id_ok =
            self.id.len() == KEY_ID_LEN && self.id.bytes().all(|b| ID_ALPHABET.contains(&b));
        if !id_ok {
            return Err(crate::StoreError::Invalid(format!(
                "API key id '{}' is not {KEY_ID_LEN} lower-case base32 characters",
                self.id
            )));
        }
        let hash_ok = self.secret_sha256.len() == 64
            && self
                .secret_sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hash_ok {
            return Err(crate::StoreError::Invalid(format!(
                "API key '{}': the secret's hash is not a lower-case hex SHA-256",
                self.id
            )));
        }
        Ok(())
    }
}

/// A key's scope or rate limits as the JSON the stores keep.
pub(crate) fn to_stored_json<T: Serialize>(
    value: &T,
    what: &str,
) -> Result<String, crate::StoreError> {
    serde_json::to_string(value)
        .map_err(|e| crate::StoreError::Invalid(format!("{what} cannot be written as JSON: {e}")))
}

/// A stored key's scope or rate limits (SQLite's JSON text), read back.
pub(crate) fn from_stored_json<T: serde::de::DeserializeOwned>(
    json: &str,
    what: &str,
) -> Result<T, crate::StoreError> {
    serde_json::from_str(json).map_err(|e| crate::StoreError::Corrupt(format!("{what}: {e}")))
}

/// A stored key's role, read back.
pub(crate) fn stored_role(text: &str) -> Result<Role, crate::StoreError> {
    text.parse()
        .map_err(|e| crate::StoreError::Corrupt(format!("API key role: {e}")))
}

/// A stored audit status, read back.
pub(crate) fn stored_status(status: i64) -> Result<u16, crate::StoreError> {
    u16::try_from(status)
        .map_err(|_| crate::StoreError::Corrupt(format!("audit entry status {status}")))
}

/// The status codes of a denied request: unauthenticated, forbidden, over its rate limit.
pub const DENIED_STATUSES: [u16; 3] = [401, 403, 429];

/// What every API key's text begins with, so that a leaked key is recognisable (and secret
/// scanners can look for it).
pub const TOKEN_PREFIX: &str = "chk_";
/// The length of a key's id: 12 characters of lower-case base32 (60 random bits), enough
/// that two keys never collide, short enough to read out.
pub const KEY_ID_LEN: usize = 12;
/// The bytes of a key's secret part: 256 random bits.
const SECRET_BYTES: usize = 32;
/// The length of the secret part: 32 bytes in base64url without padding.
const SECRET_TEXT_LEN: usize = 43;
/// RFC 4648 base32 in lower case: no character of it is `_`, which separates the parts.
const ID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A freshly generated API key. `token` is the only copy of the secret: show it to whoever
/// asked for the key once, then drop it; the store keeps `secret_sha256`.
#[derive(Clone)]
pub struct GeneratedKey {
    pub id: String,
    /// `chk_<id>_<secret>`: what the client sends (`Authorization: Bearer …`).
    pub token: String,
    /// Lower-case hex SHA-256 of `token`, for [`NewApiKey::secret_sha256`].
    pub secret_sha256: String,
}

impl fmt::Debug for GeneratedKey {
    /// Without the token, so that a key never ends up in a log by way of `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .field("secret_sha256", &self.secret_sha256)
            .finish()
    }
}

/// Makes API key material from the operating system's random source.
pub struct ApiKeySecret;

impl ApiKeySecret {
    /// A new key: a random id and a random 256-bit secret.
    ///
    /// # Panics
    /// When the operating system has no randomness to give, which leaves nothing safe to do.
    pub fn generate() -> GeneratedKey {
        let mut id_bytes = [0u8; KEY_ID_LEN];
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut id_bytes)
            .and_then(|()| getrandom::fill(&mut secret))
            .expect("the operating system's random source failed");
        // 32 symbols, so the low 5 bits of each byte are uniform.
        let id: String = id_bytes
            .iter()
            .map(|b| char::from(ID_ALPHABET[usize::from(b & 31)]))
            .collect();
        let token = format!(
            "{TOKEN_PREFIX}{id}_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        GeneratedKey {
            secret_sha256: token_sha256(&token),
            id,
            token,
        }
    }
}

/// Lower-case hex SHA-256 of a key's whole text, as the store keeps it.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The id a key's text names, when it has the form of a key (`chk_<id>_<secret>`); the key
/// is looked up by it, then checked with [`verify_token`]. Says nothing about whether the
/// secret is right.
pub fn parse_token(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == KEY_ID_LEN && id.bytes().all(|b| ID_ALPHABET.contains(&b));
    let secret_ok = secret.len() == SECRET_TEXT_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some(id)
}

/// Whether `token` is the text of `key`: its SHA-256 equals the stored hash, compared in
/// constant time (the time taken says nothing about how much of it matched). Checks only
/// the secret: whether the key may still be used is [`ApiKey::is_active`].
pub fn verify_token(key: &ApiKey, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Ok(stored) = hex::decode(&key.secret_sha256) else {
        return false;
    };
    let presented = Sha256::digest(token.as_bytes());
    stored.len() == presented.len() && bool::from(presented.as_slice().ct_eq(&stored))
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
    #[test]
    fn generated_keys_have_the_documented_form_and_verify() {
        let g = ApiKeySecret::generate();
        assert_eq!(g.id.len(), KEY_ID_LEN);
        assert!(g.id.bytes().all(|b| ID_ALPHABET.contains(&b)), "{}", g.id);
        assert!(
            g.token.starts_with(&format!("chk_{}_", g.id)),
            "{}",
            g.token
        );
        assert_eq!(g.token.len(), 4 + KEY_ID_LEN + 1 + SECRET_TEXT_LEN);
        assert_eq!(parse_token(&g.token), Some(g.id.as_str()));
        assert_eq!(g.secret_sha256, token_sha256(&g.token));
        assert_eq!(g.secret_sha256.len(), 64);
        assert!(!format!("{g:?}").contains(&g.token));

        let other = ApiKeySecret::generate();
        assert_ne!(g.id, other.id);
        assert_ne!(g.token, other.token);

        let key = ApiKey {
            id: g.id.clone(),
            secret_sha256: g.secret_sha256.clone(),
            role: Role::Analyst,
            scope: Scope::all(),
            description: None,
            created_at: Utc::now(),
            created_by: "test".into(),
            expires_at: None,
            revoked_at: None,
            rate_limits: BTreeMap::new(),
        };
        assert!(verify_token(&key, &g.token));
        assert!(!verify_token(&key, &other.token));
        // One character of the secret changed.
        let mut tampered = g.token.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(!verify_token(&key, &tampered));
        assert!(!verify_token(&key, ""));
        // A stored hash that is not hex matches nothing.
        let broken = ApiKey {
            secret_sha256: "zz".into(),
            ..key
        };
        assert!(!verify_token(&broken, &g.token));
    }

    #[test]
    fn only_key_shaped_text_names_an_id() {
        let secret = "A".repeat(SECRET_TEXT_LEN);
        assert_eq!(
            parse_token(&format!("chk_abcdefgh2345_{secret}")),
            Some("abcdefgh2345")
        );
        // The secret may hold `_` and `-` (base64url): the id ends at the first `_`.
        let with_underscore = format!("chk_abcdefgh2345_{}_-", "x".repeat(SECRET_TEXT_LEN - 2));
        assert_eq!(parse_token(&with_underscore), Some("abcdefgh2345"));
        for bad in [
            String::new(),
            "chk_".into(),
            format!("abc_abcdefgh2345_{secret}"),
            format!("chk_ABCDEFGH2345_{secret}"),
            format!("chk_abcdefgh234_{secret}"),
            format!("chk_abcdefgh2345_{}", &secret[1..]),
            format!("chk_abcdefgh2345_{secret}="),
            format!("chk_abcdefgh2345{secret}"),
        ] {
            assert_eq!(parse_token(&bad), None, "{bad}");
        }
    }

    #[test]
    fn audit_cursors_and_limits() {
        let page = crate::Cursor::after(17).encode();
        assert_eq!(AuditFilter::parse_cursor(&page), Ok(17));
        assert!(AuditFilter::parse_cursor("17").is_err());
        assert_eq!(
            AuditFilter::default().page_limit(),
            AuditFilter::DEFAULT_LIMIT
        );
        let f = AuditFilter {
            limit: 3,
            ..AuditFilter::default()
        };
        assert_eq!(f.page_limit(), 3);
    }
}
