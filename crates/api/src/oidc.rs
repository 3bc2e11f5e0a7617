//! OIDC bearer tokens: a JWT from the configured identity provider, checked against the keys
//! the provider publishes (its JWKS), becomes a [`Caller`].
//!
//! What a token must be: signed with an asymmetric algorithm of [`OidcConfig::algorithms`] by
//! the published key its header's `kid` names; issued by [`OidcConfig::issuer`] for
//! [`OidcConfig::audience`]; not expired, not before its `nbf`, not issued in the future (all
//! with [`OidcConfig::leeway_secs`]). Its claims then give the caller's subject, role and scope.
//!
//! The keys are fetched on first use and kept for [`OidcConfig::jwks_refresh_secs`]. A token
//! signed with a key the set does not have makes the set be fetched again (the provider
//! rotated its keys), at most once per [`OidcConfig::min_refetch_secs`], so that tokens with
//! made-up key ids cannot make this server hammer the provider. One fetch runs at a time:
//! concurrent requests that need new keys wait for it and share its result.

use crate::{AuthMethod, Caller};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use carrierhub_store::{Role, Scope};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// How long one fetch of the key set may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest key set read: a real one is a few kilobytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// The largest token looked at. Real tokens are one or two kilobytes; a header line this long
/// is refused by most proxies anyway.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The longest subject accepted: it names the caller in rate limits and the audit log.
const MAX_SUBJECT_CHARS: usize = 255;

/// How the API accepts OIDC bearer tokens. Only `issuer`, `audience` and `jwks_url` have no
/// default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The identity provider's issuer identifier, exactly as its tokens' `iss` spells it
    /// (e.g. `https://sso.example.com/realms/carrierhub`).
    pub issuer: String,
    /// This API's audience: a token's `aud` (a string or a list) must name it.
    pub audience: String,
    /// Where the provider publishes its signing keys (the `jwks_uri` of its discovery
    /// document). `https`, or `http` on a loopback address only: whoever can change these keys
    /// can sign any token.
    pub jwks_url: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "defaults::leeway_secs")]
    pub leeway_secs: u64,
    /// The signature algorithms accepted (JOSE names). `none` is never accepted, and neither
    /// are the HMAC algorithms (`HS256`, …): their key is a shared secret, and a provider's
    /// keys are public, so a token "signed" with one would prove nothing.
    #[serde(default = "defaults::algorithms")]
    pub algorithms: Vec<String>,
    /// How long a fetched key set is trusted before it is fetched again, in seconds. While
    /// the provider cannot be reached, the last key set stays in use.
    #[serde(default = "defaults::jwks_refresh_secs")]
    pub jwks_refresh_secs: u64,
    /// The least time between two fetches caused by tokens with an unknown key id, and
    /// between retries after a failed fetch, in seconds.
    #[serde(default = "defaults::min_refetch_secs")]
    pub min_refetch_secs: u64,
    /// The claim naming the caller (rate limits, audit log).
    #[serde(default = "defaults::subject_claim")]
    pub subject_claim: String,
    /// The claim holding the caller's role: a string or a list of strings. A dotted path
    /// reaches into nested claims (`realm_access.roles`); a claim whose own name has dots
    /// (`https://carrierhub.example/roles`) is found by its whole name first. With several
    /// values, the most privileged role among them wins (admin, then operator, analyst,
    /// carrier); values that name no role are ignored.
    #[serde(default = "defaults::role_claim")]
    pub role_claim: String,
    /// Claim values (group or role names of the provider) to CarrierHub roles. Empty: the
    /// values must be role names themselves (`admin`, `operator`, `analyst`, `carrier`).
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// The role of a token that carries none (the role claim is absent, or none of its values
    /// names a role). Without it such a token is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_role: Option<Role>,
    /// The claim listing the carriers the caller may see: a string or a list of strings,
    /// dotted like `role_claim`. Absent: every carrier, except for role `carrier`, which must
    /// be pinned to its carriers and is refused without them.
    #[serde(default = "defaults::carriers_claim")]
    pub carriers_claim: String,
    /// The claim listing the books (producer codes) the caller may see, like
    /// `carriers_claim`. Absent: every book.
    #[serde(default = "defaults::books_claim")]
    pub books_claim: String,
}

mod defaults {
    pub fn leeway_secs() -> u64 {
        60
    }
    pub fn algorithms() -> Vec<String> {
        ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]
            .map(String::from)
            .to_vec()
    }
    pub fn jwks_refresh_secs() -> u64 {
        3600
    }
    pub fn min_refetch_secs() -> u64 {
        30
    }
    pub fn subject_claim() -> String {
        "sub".into()
    }
    pub fn role_claim() -> String {
        "carrierhub_role".into()
    }
    pub fn carriers_claim() -> String {
        "carrierhub_carriers".into()
    }
    pub fn books_claim() -> String {
        "carrierhub_books".into()
    }
}

impl OidcConfig {
    /// The configuration for one provider, everything else at its default.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks_url: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: jwks_url.into(),
            leeway_secs: defaults::leeway_secs(),
            algorithms: defaults::algorithms(),
            jwks_refresh_secs: defaults::jwks_refresh_secs(),
            min_refetch_secs: defaults::min_refetch_secs(),
            subject_claim: defaults::subject_claim(),
            role_claim: defaults::role_claim(),
            roles: BTreeMap::new(),
            default_role: None,
            carriers_claim: defaults::carriers_claim(),
            books_claim: defaults::books_claim(),
        }
    }
}

/// An OIDC configuration that cannot work, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfigError(String);

impl fmt::Display for OidcConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OIDC configuration: {}", self.0)
    }
}

impl std::error::Error for OidcConfigError {}

/// Why a token was not turned into a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The token is refused (answer 401). The reason says what is wrong in a few words, fit
    /// for a problem's `detail` and the audit log; it never repeats the token's content.
    Invalid(String),
    /// The identity provider's keys could not be fetched, so the token could not be checked:
    /// the server's problem, not the caller's (answer 503). The cause is in the server's log.
    KeysUnavailable,
}

impl TokenError {
    fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid(reason.into())
    }

    /// The reason, as [`fmt::Display`] writes it.
    pub fn reason(&self) -> &str {
        match self {
            Self::Invalid(reason) => reason,
            Self::KeysUnavailable => "the identity provider's keys could not be fetched",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for TokenError {}

/// Verifies bearer tokens of one identity provider. Cheap to clone: clones share the key set.
#[derive(Clone)]
pub struct OidcVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: OidcConfig,
    algorithms: Vec<Algorithm>,
    jwks_url: reqwest::Url,
    http: reqwest::Client,
    /// The current key set. Read by every request, replaced after a fetch; never held across
    /// an await.
    keys: RwLock<Arc<KeySet>>,
    /// Held while fetching, so one fetch runs at a time.
    fetch: tokio::sync::Mutex<FetchState>,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<Key>,
    /// When it was fetched; `None` before the first successful fetch.
    fetched_at: Option<Instant>,
    /// Counts the successful fetches, so a request that waited for another one's fetch sees
    /// that it need not fetch again.
    generation: u64,
}

#[derive(Default)]
struct FetchState {
    /// The last fetch failed at this time: wait `min_refetch_secs` before the next try.
    failed_at: Option<Instant>,
    /// The last fetch caused by an unknown key id.
    unknown_kid_fetch_at: Option<Instant>,
}

/// Why the key set is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// There is none yet: requests wait for it.
    Missing,
    /// It is older than `jwks_refresh_secs`: one request fetches, the others go on with it.
    Expired,
    /// A token names a key it does not have.
    UnknownKid,
}

/// One usable signing key of the set.
struct Key {
    kid: Option<String>,
    /// The algorithm the JWK is restricted to (`alg`), if it is.
    alg: Option<Algorithm>,
    family: AlgorithmFamily,
    curve: Option<EllipticCurve>,
    decoding: DecodingKey,
}

impl Key {
    /// Whether a token signed with `alg` may be checked with this key.
    fn fits(&self, alg: Algorithm) -> bool {
        let curve_fits = match alg {
            Algorithm::ES256 => self.curve == Some(EllipticCurve::P256),
            Algorithm::ES384 => self.curve == Some(EllipticCurve::P384),
            Algorithm::EdDSA => self.curve == Some(EllipticCurve::Ed25519),
            _ => true,
        };
        self.family == alg.family() && self.alg.is_none_or(|a| a == alg) && curve_fits
    }
}

enum Pick<'a> {
    Key(&'a Key),
    /// No key has the token's `kid` (or, without a `kid`, no key fits its algorithm).
    Unknown,
    /// Keys have the token's `kid`, but none of them is for its algorithm.
    WrongAlgorithm,
    /// No `kid`, and several keys fit the algorithm.
    Ambiguous,
}

impl KeySet {
    fn has_keys(&self) -> bool {
        self.fetched_at.is_some()
    }

    fn is_fresh(&self, max_age: Duration) -> bool {
        self.fetched_at.is_some_and(|t| t.elapsed() < max_age)
    }

    fn pick(&self, kid: Option<&str>, alg: Algorithm) -> Pick<'_> {
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Pick::Unknown;
                }
                named
                    .find(|k| k.fits(alg))
                    .map_or(Pick::WrongAlgorithm, Pick::Key)
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (None, _) => Pick::Unknown,
                    (Some(key), None) => Pick::Key(key),
                    (Some(_), Some(_)) => Pick::Ambiguous,
                }
            }
        }
    }
}

/// The part of a token's header looked at before its signature.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl OidcVerifier {
    /// Checks the configuration. Nothing is fetched yet: the keys are fetched on first use.
    pub fn new(config: OidcConfig) -> Result<Self, OidcConfigError> {
        let bad = |message: String| Err(OidcConfigError(message));
        for (name, value) in [
            ("issuer", &config.issuer),
            ("audience", &config.audience),
            ("subject_claim", &config.subject_claim),
            ("role_claim", &config.role_claim),
            ("carriers_claim", &config.carriers_claim),
            ("books_claim", &config.books_claim),
        ] {
            if value.trim().is_empty() {
                return bad(format!("{name} must not be empty"));
            }
        }
        let jwks_url = match reqwest::Url::parse(&config.jwks_url) {
            Ok(url) => url,
            Err(e) => return bad(format!("jwks_url '{}' is not a URL: {e}", config.jwks_url)),
        };
        match jwks_url.scheme() {
            "https" => {}
            "http" if is_loopback(&jwks_url) => {}
            "http" => {
                return bad(format!(
                    "jwks_url '{jwks_url}' must be https: keys fetched over plain http could be \
                     replaced on the way (http is accepted on a loopback address only)"
                ))
            }
            other => {
                return bad(format!(
                    "jwks_url '{jwks_url}': scheme '{other}' is not http(s)"
                ))
            }
        }
        let mut algorithms = Vec::new();
        for name in &config.algorithms {
            let name = name.trim();
            if name.eq_ignore_ascii_case("none") {
                return bad("algorithm none is never accepted: it means an unsigned token".into());
            }
            let Ok(alg) = Algorithm::from_str(name) else {
                return bad(format!(
                    "unknown algorithm '{name}'; the algorithms are RS256, RS384, RS512, PS256, \
                     PS384, PS512, ES256, ES384 and EdDSA"
                ));
            };
            if alg.family() == AlgorithmFamily::Hmac {
                return bad(format!(
                    "algorithm {name} is never accepted: HMAC needs a shared secret, and the \
                     identity provider's keys are public"
                ));
            }
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        if algorithms.is_empty() {
            return bad("algorithms must name at least one algorithm".into());
        }
        if config.jwks_refresh_secs == 0 {
            return bad("jwks_refresh_secs must be positive".into());
        }
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| OidcConfigError(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                algorithms,
                jwks_url,
                http,
                keys: RwLock::new(Arc::new(KeySet::default())),
                fetch: tokio::sync::Mutex::new(FetchState::default()),
            }),
        })
    }

    /// The configuration it verifies with.
    pub fn config(&self) -> &OidcConfig {
        &self.inner.config
    }

    /// Verifies `token` (the text after `Bearer `) and returns its caller.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, TokenError> {
        let inner = &*self.inner;
        let (alg, kid) = inner.read_header(token)?;
        let mut set = inner.key_set().await?;
        // A request looks the key set up again at most once, whatever `min_refetch_secs` is.
        let mut looked_again = false;
        let key = loop {
            match set.pick(kid.as_deref(), alg) {
                Pick::Key(key) => break key,
                Pick::WrongAlgorithm => {
                    return Err(TokenError::invalid(
                        "the token's algorithm does not match its key",
                    ))
                }
                Pick::Ambiguous => {
                    return Err(TokenError::invalid(
                        "the token names no key (kid), and the identity provider has several",
                    ))
                }
                Pick::Unknown => {
                    let unknown = || Err(TokenError::invalid("token signed with an unknown key"));
                    if looked_again {
                        return unknown();
                    }
                    looked_again = true;
                    let seen = set.generation;
                    set = inner.refresh(Why::UnknownKid, seen).await?;
                    if set.generation == seen {
                        return unknown();
                    }
                }
            }
        };
        let config = &inner.config;
        let mut validation = Validation::new(alg);
        validation.leeway = config.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|e| TokenError::Invalid(refusal(e.kind())))?
            .claims;
        match claims.get("iat") {
            None => {}
            Some(Value::Number(iat)) => {
                let now = jsonwebtoken::get_current_timestamp();
                if iat
                    .as_f64()
                    .is_some_and(|iat| iat > now.saturating_add(config.leeway_secs) as f64)
                {
                    return Err(TokenError::invalid("token issued in the future"));
                }
            }
            Some(_) => return Err(TokenError::invalid("token claim iat is malformed")),
        }
        inner.caller(&claims)
    }
}

impl fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.inner.config.issuer)
            .field("audience", &self.inner.config.audience)
            .field("jwks_url", &self.inner.jwks_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// The token's algorithm, if accepted, and key id.
    fn read_header(&self, token: &str) -> Result<(Algorithm, Option<String>), TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::invalid("token too large"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::invalid(
                "token is not a JWT (three dot-separated parts)",
            ));
        };
        let header: RawHeader = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| TokenError::invalid("token header is malformed"))?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::invalid("algorithm none is not accepted"));
        }
        // Only a name it knows is repeated: the header is the caller's text.
        let Ok(alg) = Algorithm::from_str(&header.alg) else {
            return Err(TokenError::invalid(
                "the token's algorithm is not supported",
            ));
        };
        if !self.algorithms.contains(&alg) {
            return Err(TokenError::invalid(format!(
                "algorithm {alg:?} is not accepted"
            )));
        }
        if header.crit.is_some() {
            return Err(TokenError::invalid(
                "token has critical header parameters (crit), which are not supported",
            ));
        }
        Ok((alg, header.kid))
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A key set fit to check a token with: the current one while fresh, else a new one.
    async fn key_set(&self) -> Result<Arc<KeySet>, TokenError> {
        let current = self.snapshot();
        if current.is_fresh(Duration::from_secs(self.config.jwks_refresh_secs)) {
            return Ok(current);
        }
        let why = if current.has_keys() {
            Why::Expired
        } else {
            Why::Missing
        };
        self.refresh(why, current.generation).await
    }

    /// Fetches the key set unless another request did since the caller looked at generation
    /// `seen`, or the limits of `min_refetch_secs` forbid it. Returns the set to use: when it
    /// is still generation `seen`, nothing new was fetched.
    async fn refresh(&self, why: Why, seen: u64) -> Result<Arc<KeySet>, TokenError> {
        let mut state = if why == Why::Expired {
            // Another request is fetching: go on with the keys there are.
            match self.fetch.try_lock() {
                Ok(state) => state,
                Err(_) => return Ok(self.snapshot()),
            }
        } else {
            self.fetch.lock().await
        };
        let current = self.snapshot();
        if current.generation != seen {
            return Ok(current);
        }
        // Without a fetch, a request goes on with the old keys only when they merely aged.
        let without_fetch = |current: Arc<KeySet>| match why {
            Why::Expired => Ok(current),
            Why::Missing | Why::UnknownKid => Err(TokenError::KeysUnavailable),
        };
        let now = Instant::now();
        let min_gap = Duration::from_secs(self.config.min_refetch_secs);
        let recent = |at: Option<Instant>| at.is_some_and(|t| now.duration_since(t) < min_gap);
        if recent(state.failed_at) {
            return without_fetch(current);
        }
        if why == Why::UnknownKid {
            if recent(state.unknown_kid_fetch_at) {
                return Ok(current);
            }
            state.unknown_kid_fetch_at = Some(now);
        }
        match self.download().await {
            Ok(keys) => {
                state.failed_at = None;
                let set = Arc::new(KeySet {
                    keys,
                    fetched_at: Some(Instant::now()),
                    generation: current.generation + 1,
                });
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = set.clone();
                tracing::debug!(url = %self.jwks_url, keys = set.keys.len(), ?why, "fetched the identity provider's keys");
                Ok(set)
            }
            Err(error) => {
                state.failed_at = Some(Instant::now());
                tracing::warn!(url = %self.jwks_url, %error, ?why, "cannot fetch the identity provider's keys");
                without_fetch(current)
            }
        }
    }

    /// Fetches the key set and keeps its usable signing keys.
    async fn download(&self) -> Result<Vec<Key>, String> {
        let mut response = self
            .http
            .get(self.jwks_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("the server answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the key set is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        parse_key_set(&body)
    }

    /// The caller a verified token's claims describe.
    fn caller(&self, claims: &Map<String, Value>) -> Result<Caller, TokenError> {
        let config = &self.config;
        let subject = match claim(claims, &config.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => {
                return Err(TokenError::invalid(format!(
                    "token has no subject (claim {})",
                    config.subject_claim
                )))
            }
        };
        if subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(TokenError::invalid("token subject is too long"));
        }
        let values = match claim(claims, &config.role_claim) {
            Some(value) => strings(value, &config.role_claim)?,
            None => Vec::new(),
        };
        let role = values
            .iter()
            .filter_map(|value| {
                if config.roles.is_empty() {
                    Role::from_str(value).ok()
                } else {
                    config.roles.get(value.as_str()).copied()
                }
            })
            .min_by_key(|role| privilege(*role))
            .or(config.default_role)
            .ok_or_else(|| {
                TokenError::invalid(format!(
                    "token carries no CarrierHub role (claim {})",
                    config.role_claim
                ))
            })?;
        let set = |name: &str| -> Result<Option<BTreeSet<String>>, TokenError> {
            claim(claims, name)
                .map(|value| strings(value, name).map(|v| v.into_iter().collect()))
                .transpose()
        };
        let scope = Scope {
            carriers: set(&config.carriers_claim)?,
            books: set(&config.books_claim)?,
        };
        if role == Role::Carrier && scope.carriers.as_ref().is_none_or(BTreeSet::is_empty) {
            return Err(TokenError::invalid(format!(
                "role carrier needs the carriers it may see (claim {})",
                config.carriers_claim
            )));
        }
        Ok(Caller {
            subject: subject.clone(),
            role,
            scope,
            method: AuthMethod::Oidc,
            rate_limits: BTreeMap::new(),
        })
    }
}

/// Lower is more privileged: of several roles, a token gets the lowest.
fn privilege(role: Role) -> u8 {
    match role {
        Role::Admin => 0,
        Role::Operator => 1,
        Role::Analyst => 2,
        Role::Carrier => 3,
    }
}

/// The claim at `path`: its whole name first, then a dotted path into nested objects. A
/// claim that is `null` is absent.
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let found = claims.get(path).or_else(|| {
        let mut parts = path.split('.');
        let first = claims.get(parts.next()?)?;
        parts.try_fold(first, |value, part| value.as_object()?.get(part))
    });
    found.filter(|value| !value.is_null())
}

/// A claim that is a string or a list of strings.
fn strings(value: &Value, name: &str) -> Result<Vec<String>, TokenError> {
    let not_strings =
        || TokenError::invalid(format!("claim {name} is not a string or a list of strings"));
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(not_strings))
            .collect(),
        _ => Err(not_strings()),
    }
}

/// Whether the URL's host is this machine.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The signing keys of a JWKS document that can check tokens. Keys for encryption, symmetric
/// keys and keys of unknown types are left out; a set without one usable key is an error.
fn parse_key_set(body: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| format!("the key set is not a JWKS: {e}"))?;
    let keys: Vec<Key> = document
        .keys
        .into_iter()
        .filter_map(|value| {
            let jwk: Jwk = serde_json::from_value(value).ok()?;
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != PublicKeyUse::Signature)
            {
                return None;
            }
            let alg = match jwk.common.key_algorithm {
                Some(a) => Some(Algorithm::try_from(a).ok()?),
                None => None,
            };
            let (family, curve) = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => (AlgorithmFamily::Rsa, None),
                AlgorithmParameters::EllipticCurve(p) => {
                    (AlgorithmFamily::Ec, Some(p.curve.clone()))
                }
                AlgorithmParameters::OctetKeyPair(p) => {
                    (AlgorithmFamily::Ed, Some(p.curve.clone()))
                }
                _ => return None,
            };
            if alg.is_some_and(|a| a.family() != family) {
                return None;
            }
            Some(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                family,
                curve,
                decoding: DecodingKey::from_jwk(&jwk).ok()?,
            })
        })
        .collect();
    if keys.is_empty() {
        return Err("the key set has no signing key this server can use".into());
    }
    Ok(keys)
}

/// The reason given for a token `jsonwebtoken` refused.
fn refusal(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token expired".into(),
        ErrorKind::ImmatureSignature => "token not yet valid".into(),
        ErrorKind::InvalidIssuer => "token issued by another issuer".into(),
        ErrorKind::InvalidAudience => "token intended for another audience".into(),
        ErrorKind::InvalidSignature => "token signature is invalid".into(),
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not match its key".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("token lacks the claim {c}"),
        ErrorKind::InvalidClaimFormat(c) => format!("token claim {c} is malformed"),
        ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => "token signed with a key that cannot be used".into(),
        _ => "token is malformed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_are_found_by_name_then_by_dotted_path() {
        let claims = json!({
            "realm_access": {"roles": ["a", "b"]},
            "https://carrierhub.example/roles": "admin",
            "gone": null,
        });
        let claims = claims.as_object().unwrap();
        assert_eq!(
            claim(claims, "realm_access.roles"),
            Some(&json!(["a", "b"]))
        );
        assert_eq!(
            claim(claims, "https://carrierhub.example/roles"),
            Some(&json!("admin"))
        );
        assert_eq!(claim(claims, "realm_access.missing"), None);
        assert_eq!(claim(claims, "realm_access.roles.deeper"), None);
        assert_eq!(claim(claims, "gone"), None);
    }

    #[test]
    fn claim_values_are_a_string_or_strings() {
        assert_eq!(strings(&json!("x"), "c").unwrap(), vec!["x"]);
        assert_eq!(strings(&json!(["x", "y"]), "c").unwrap(), vec!["x", "y"]);
        assert_eq!(
            strings(&json!(["x", 1]), "c"),
            Err(TokenError::invalid(
                "claim c is not a string or a list of strings"
            ))
        );
        assert!(strings(&json!({"x": 1}), "c").is_err());
    }

    #[test]
    fn key_sets_keep_only_usable_signing_keys() {
        let rsa = json!({"kty": "RSA", "kid": "r", "use": "sig", "alg": "RS256",
            "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
            "e": "AQAB"});
        let enc = json!({"kty": "RSA", "kid": "e", "use": "enc", "n": rsa["n"], "e": "AQAB"});
        let oaep = json!({"kty": "RSA", "kid": "o", "alg": "RSA-OAEP", "n": rsa["n"], "e": "AQAB"});
        let secret = json!({"kty": "oct", "kid": "s", "k": "c2VjcmV0"});
        let odd = json!({"kty": "XYZ", "kid": "x"});
        let body = json!({"keys": [enc, oaep, secret, odd, rsa]}).to_string();
        let keys = parse_key_set(body.as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("r"));
        assert!(keys[0].fits(Algorithm::RS256) && !keys[0].fits(Algorithm::PS256));
        let only_secret = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string();
        assert!(parse_key_set(only_secret.as_bytes()).is_err());
        assert!(parse_key_set(b"<html>").is_err());
    }
}
